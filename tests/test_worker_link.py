"""Hostile peers on the router <-> worker link: junk never crashes a worker or a router.

A real worker process gets junk from a DEALER (as anyone who reaches its tcp:// port could
send) and must still answer a real batch afterwards; a real router gets junk from a fake
worker (a ROUTER socket in this process) and must answer its clients with errors and go on.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
import redis
import zmq

from shardis import protocol
from shardis.resp import encode
from tests.servers import free_port, wait_for_port


def start_worker(address: str, log_path: str, *extra: str) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "shardis", "worker", "--listen", address,
                                 "--index", "0", *extra], stderr=log)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def dealer(context: zmq.Context, address: str) -> zmq.Socket:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(address)
    return sock


class RouterPeer:
    """A router as a worker sees it: a DEALER with a fixed id (a router keeps one across
    reconnects), speaking the strict codec; ``call`` sends one batch and returns its replies."""

    def __init__(self, address: str, identity: bytes) -> None:
        self.codec = protocol.codec_for(False)
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, identity)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 10_000)
        self.sock.connect(address)

    def call(self, seq: int, *commands: list[bytes]) -> list[bytes]:
        self.sock.send(self.codec.encode_batch(seq, [(2, args) for args in commands]))
        got_seq, replies, _ = self.codec.decode_replies(self.sock.recv())
        assert got_seq == seq
        return replies

    def close(self) -> None:
        self.sock.close()


def still_serves(sock: zmq.Socket, codec: protocol.Codec, seq: int, skip: int = 0) -> None:
    """A real batch on ``sock`` gets its replies (after up to ``skip`` other messages)."""
    sock.send(codec.encode_batch(seq, [(2, [b"SET", b"k", b"v"]), (3, [b"GET", b"k"])]))
    for _ in range(skip + 1):
        got = codec.decode_replies(sock.recv())
        if got[0] == seq:
            break
    assert got == (seq, [b"+OK\r\n", b"$1\r\nv\r\n"], ())


def _deep(depth: int) -> bytes:
    return b"[\x01\x00\x00\x00" * depth + b"N"


def _strict(count: int, layout_len: int, tail: bytes) -> bytes:
    return (protocol.BATCH_PREFIX + bytes(8) + count.to_bytes(4, "little")
            + layout_len.to_bytes(4, "little") + tail)


#: (name, frames): what a hostile peer may send.
JUNK: list[tuple[str, list[bytes]]] = [
    ("empty frame", [b""]),
    ("twenty bytes", [b"SHD\x03\x01" + bytes(8) + b"garbag"]),
    ("old version", [b"SHD\x02\x01" + bytes(8) + marshal.dumps([(2, [b"GET", b"k"])])]),
    ("many frames", [b"a", b"", b"b" * 1000]),
    ("valid batch plus a frame", [protocol.encode_batch(1, [(2, [b"PING"])]), b"more"]),
    ("huge frame", [os.urandom(20 * 1024 * 1024)]),
    ("huge counts", [_strict(2**32 - 1, 2**32 - 1, b"")]),
    ("proto 5", [_strict(1, 2, b"\x05" + (1).to_bytes(4, "little") + b"1sx")]),
    ("zero args", [_strict(1, 0, b"\x02" + bytes(4))]),
    ("int codes", [_strict(1, 2, b"\x02" + (1).to_bytes(4, "little") + b"1qxxxxxxxx")]),
    ("layout past end", [_strict(1, 4, b"\x02" + (1).to_bytes(4, "little") + b"999s")]),
    ("a call reply with no script waiting", [protocol.encode_batch(0, [(2, [b"+OK\r\n"])])]),
    ("marshal bomb", [protocol.M_BATCH_PREFIX + bytes(8) + b"(" + b"\xff\xff\xff\x7f"]),
    ("marshal code", [protocol.M_BATCH_PREFIX + bytes(8)
                      + marshal.dumps(compile("1", "x", "eval"))]),
]

#: marshal payloads of wrong shapes, for a trusted (ipc://) worker, which unmarshals.
MARSHAL_JUNK: list[tuple[str, object | bytes]] = [
    ("not a list", 42),
    ("list of ints", [1, 2]),
    ("wrong arity", [(2, [b"GET", b"k"], 3)]),
    ("proto 9", [(9, [b"GET", b"k"])]),
    ("args not a list", [(2, b"GET")]),
    ("empty args", [(2, [])]),
    ("ints for bytes", [(2, [7, 8])]),
    ("unhashable name", [(2, [[b"GET"], b"k"])]),
    ("code object", [(2, [compile("1", "x", "eval")])]),
    ("deep nesting", _deep(100_000)),
    ("bomb", b"[" + b"\xff\xff\xff\x0f"),
]


def _marshal_frame(payload: object | bytes) -> bytes:
    data = payload if isinstance(payload, bytes) else marshal.dumps(payload)
    return protocol.M_BATCH_PREFIX + bytes(8) + data


@pytest.fixture
def tcp_worker(tmp_path) -> Iterator[tuple[str, str]]:
    address = f"tcp://127.0.0.1:{free_port()}"
    log_path = str(tmp_path / "worker.log")
    proc = start_worker(address, log_path)
    try:
        yield address, log_path
        assert proc.poll() is None, "the worker died"
    finally:
        stop(proc)


def test_junk_to_a_tcp_worker_is_dropped_and_logged(tcp_worker) -> None:
    address, log_path = tcp_worker
    context = zmq.Context()
    sock = dealer(context, address)
    try:
        still_serves(sock, protocol.STRICT, 1)
        for index, (_, frames) in enumerate(JUNK):
            sock.send_multipart(frames)
            still_serves(sock, protocol.STRICT, 100 + index)
        assert not sock.poll(300), "junk got an answer"
    finally:
        sock.close()
        context.term()
    log = open(log_path).read()
    assert "dropped a malformed message" in log
    assert "reason=" in log and "Traceback" not in log
    assert "frames=3" in log  # the multi-frame message was dropped whole


def test_junk_from_another_peer_does_not_disturb_a_router(tcp_worker) -> None:
    """Junk interleaved from a second peer: the first peer's batches are all answered."""
    address, _ = tcp_worker
    context = zmq.Context()
    good, bad = dealer(context, address), dealer(context, address)
    try:
        for seq in range(1, 40):
            bad.send_multipart(JUNK[seq % len(JUNK)][1] if seq % len(JUNK) != 5 else [b"x"])
            still_serves(good, protocol.STRICT, seq)
    finally:
        good.close()
        bad.close()
        context.term()


def test_a_log_flood_is_rate_limited(tcp_worker) -> None:
    address, log_path = tcp_worker
    context = zmq.Context()
    sock = dealer(context, address)
    try:
        for _ in range(500):
            sock.send(b"junk")
        still_serves(sock, protocol.STRICT, 1)
    finally:
        sock.close()
        context.term()
    lines = [line for line in open(log_path) if "dropped a malformed message" in line]
    assert 1 <= len(lines) <= 20


def test_wrong_shapes_to_a_trusted_worker_do_not_crash_it(tmp_path) -> None:
    """An ipc:// worker unmarshals (its peers are trusted) and does not check every argument's
    type (that would cost per argument): a wrong shape may get an answer, but never kills it."""
    address = f"ipc://{tmp_path}/w.sock"
    proc = start_worker(address, str(tmp_path / "worker.log"))
    context = zmq.Context()
    sock = dealer(context, address)
    try:
        for index, (_, payload) in enumerate(MARSHAL_JUNK):
            sock.send(_marshal_frame(payload))
            still_serves(sock, protocol.MARSHAL, index + 1, skip=1)
        sock.send(protocol.encode_batch(1, [(2, [b"PING"])]))  # the strict encoding: refused
        still_serves(sock, protocol.MARSHAL, 99)
        assert proc.poll() is None
    finally:
        sock.close()
        context.term()
        stop(proc)


# The router side ------------------------------------------------------------------------------
class FakeWorker(threading.Thread):
    """A ROUTER socket that answers ``__whoami``, ``__acl_sync`` and ``__ping`` like shard 0
    and every other batch with ``answer(seq, commands)``: a list of frames to send back."""

    def __init__(self, address: str, answer: Callable[[bytes, list], list[bytes]]) -> None:
        super().__init__(daemon=True)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(address)
        self.answer = answer
        self.running = True

    def run(self) -> None:
        while self.running:
            if not self.socket.poll(100):
                continue
            identity, frame = self.socket.recv_multipart()
            seq, commands = protocol.decode_batch(frame)
            if commands and commands[0][1][0] in (b"__whoami", b"__acl_sync", b"__ping"):
                frames = [protocol.encode_replies(seq, [_startup_reply(args)
                                                        for _, args in commands])]
            else:
                frames = self.answer(seq, commands)
            self.socket.send_multipart([identity, *frames])
        self.socket.close()
        self.context.term()


def _startup_reply(args: list[bytes]) -> bytes:
    """What shard 0 answers to a starting router: its index, and (as the ACL hub) the ACL
    state the router offered (``__acl_sync version loads text``)."""
    if args[0] == b"__acl_sync":
        return encode([int(args[1]), int(args[2]), args[3]], 3)
    if args[0] == b"__ping":  # the router's round-trip probe, once a second
        return b"+PONG\r\n"
    return b":0\r\n"


def _replies(seq: bytes, replies: list[bytes]) -> bytes:
    return protocol.encode_replies(seq, replies)


#: (command, frames the fake worker answers with, what the client must get)
ROUTER_JUNK = [
    ([b"GET", b"k"], lambda seq: [b"garbage"], "malformed"),
    ([b"GET", b"k"], lambda seq: [_replies(seq, [])], "malformed"),
    ([b"GET", b"k"], lambda seq: [_replies(seq, [b"a", b"b"])], "malformed"),
    ([b"GET", b"k"], lambda seq: [_replies(seq, [b"$1\r\nv\r\n"]).replace(b"7s", b"7q")],
     "malformed"),
    ([b"GET", b"k"], lambda seq: [b"x", b"y"], "malformed"),
    ([b"GET", b"k"], lambda seq: [protocol.PUSH_PREFIX + bytes(16) + b"junk",
                                  _replies(seq, [b"$1\r\nv\r\n"])], b"v"),
    ([b"GET", b"k"], lambda seq: [protocol.M_REPLIES_PREFIX + seq + b"(\xff\xff\xff\x7f"],
     "malformed"),
    ([b"DBSIZE"], lambda seq: [_replies(seq, [b"+notanumber\r\n"])], "malformed"),
    ([b"KEYS", b"*"], lambda seq: [_replies(seq, [b"*3\r\n:1\r\n"])], "malformed"),
    # A script call from a worker that runs no global script: refused (never run anywhere),
    # logged, and the reply after it still counts.
    ([b"GET", b"k"], lambda seq: [protocol.encode_push([(protocol.SCRIPT_CALL, b"2", None,
                                                         encode([b"SET", b"x", b"1"], 2))]),
                                  _replies(seq, [b"$1\r\nv\r\n"])], b"v"),
    ([b"GET", b"k"], lambda seq: [protocol.encode_push([(protocol.SCRIPT_CALL, b"9", None,
                                                         b"*1\r\n$999999\r\n")]),
                                  _replies(seq, [b"$1\r\nv\r\n"])], b"v"),
    ([b"GET", b"k"], lambda seq: [_replies(seq, [b"$1\r\nv\r\n"])], b"v"),
]


def test_a_router_survives_a_worker_answering_junk(tmp_path) -> None:
    script = iter(ROUTER_JUNK)
    current: list = []

    def answer(seq: bytes, commands: list) -> list[bytes]:
        return current[0](seq)

    worker_address = f"tcp://127.0.0.1:{free_port()}"
    fake = FakeWorker(worker_address, answer)
    fake.start()
    port = free_port()
    log_path = tmp_path / "router.log"
    with open(log_path, "wb") as log:
        router = subprocess.Popen([sys.executable, "-m", "shardis", "router", "--connect",
                                   worker_address, "--port", str(port)], stderr=log)
    try:
        wait_for_port(port, router)
        client = redis.Redis(port=port, protocol=2, socket_timeout=10)
        for command, frames, expected in script:
            current[:] = [frames]
            if expected == "malformed":
                with pytest.raises(redis.ResponseError, match="malformed reply"):
                    client.execute_command(*command)
            else:
                assert client.execute_command(*command) == expected
            assert client.ping() is True
        assert router.poll() is None
        client.close()
    finally:
        fake.running = False
        fake.join(timeout=5)
        router.kill()
        router.wait(timeout=10)
    log = log_path.read_text()
    assert "dropped a malformed message worker=0" in log and "Traceback" not in log
    assert "a_script_call_from_a_worker_that_runs_no_global_script" in log


def test_frames_zeromq_refuses_are_sent_later_in_order():
    """With ZMQ_IMMEDIATE a DEALER refuses a send until its connection's pipe is attached,
    which happens a moment after the handshake event the router reacts to: such a frame must
    wait (in order), not vanish — the shard check sent at that moment once never arrived."""
    import asyncio

    from shardis.router.links import WorkerLink

    class FakeRouter:
        loop = asyncio.new_event_loop()

    context = zmq.Context.instance()
    address = f"tcp://127.0.0.1:{free_port()}"
    link = WorkerLink(FakeRouter(), 0, address, context)  # type: ignore[arg-type]
    codec = protocol.codec_for(False)
    try:
        for seq in (1, 2, 3):  # nobody listens yet: ZeroMQ takes none of them
            link.send_alone(None, 2, [b"PING", b"%d" % seq])
        assert len(link.unsent) == 3
        server = context.socket(zmq.ROUTER)
        server.setsockopt(zmq.LINGER, 0)
        server.bind(address)
        got = []
        deadline = FakeRouter.loop.time() + 10
        while len(got) < 3 and FakeRouter.loop.time() < deadline:
            FakeRouter.loop.run_until_complete(asyncio.sleep(0.01))
            while server.poll(0):
                _, frame = server.recv_multipart()
                got.append(codec.decode_batch(frame)[1][0][1][1])
        assert got == [b"1", b"2", b"3"] and not link.unsent
        server.close()
    finally:
        link.drop_unsent()
        link.close()
        FakeRouter.loop.close()


def test_a_worker_already_listening_is_seen_connecting():
    """A worker that listens before the router starts (one with nothing to load) completes the
    handshake in ZeroMQ's I/O thread the moment the router connects: the link's monitor must
    exist by then, or the handshake event is lost and the link waits for it forever (the
    "did not answer PING within 20 s" startup failures)."""
    import time

    from shardis.router.links import WorkerLink

    class FakeRouter:
        loop = None

    context = zmq.Context.instance()
    missed = 0
    for attempt in range(100):
        address = f"ipc:///tmp/shardis-test-listening-{os.getpid()}-{attempt}.sock"
        server = context.socket(zmq.ROUTER)
        server.setsockopt(zmq.LINGER, 0)
        server.bind(address)
        link = WorkerLink(FakeRouter(), 0, address, context)  # type: ignore[arg-type]
        try:
            deadline = time.monotonic() + 5
            back = False
            while not back and time.monotonic() < deadline:
                back = link.connection_events()[1]
                time.sleep(0.001)
            missed += not back
        finally:
            link.close()
            server.close()
    assert missed == 0
