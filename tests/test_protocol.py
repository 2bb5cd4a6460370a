"""The router <-> worker message format: round trips and refusals of foreign messages."""

import marshal
import random

import pytest

from shardis import protocol

CODECS = [protocol.STRICT, protocol.MARSHAL]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_batch_round_trip(codec) -> None:
    commands = [(2, [b"SET", b"k", b"\x00\r\n"]), (3, [b"GET", b"k"]), (2, [b"x" * 5000, b""])]
    seq, decoded = codec.decode_batch(codec.encode_batch(7, commands))
    assert int.from_bytes(seq, "big") == 7
    assert decoded == commands
    assert codec.decode_batch(codec.encode_batch(8, []))[1] == []


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_replies_round_trip_with_and_without_events(codec) -> None:
    seq = (12345).to_bytes(8, "big")
    assert codec.decode_replies(codec.encode_replies(seq, [b"+OK\r\n"])) == (
        12345, [b"+OK\r\n"], ())
    events = [(3, b":1\r\n"), (4, None), (2**63, b""), (-1, None)]
    number, replies, got = codec.decode_replies(codec.encode_replies(seq, [b"$0\r\n\r\n"], events))
    assert (number, replies, list(got)) == (12345, [b"$0\r\n\r\n"], events)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_push_is_told_apart_from_replies(codec) -> None:
    entries = [(b"message", b"news", None, b"hello"), (b"pmessage", b"n", b"", b"")]
    frame = codec.encode_push(entries)
    assert frame.startswith(codec.push_prefix)
    assert not codec.encode_replies(bytes(8), []).startswith(codec.push_prefix)
    assert codec.decode_push(frame) == entries


def test_strict_decoders_refuse_marshal_messages_unread() -> None:
    """A trusted link's encoding is refused by its header on an untrusted one: marshal never
    sees the bytes (here a payload declaring a 2**31-element tuple: 16 GB if unmarshalled)."""
    bomb = b"(" + (2**31 - 1).to_bytes(4, "little")
    for prefix, decode in ((protocol.M_BATCH_PREFIX, protocol.decode_batch),
                           (protocol.M_REPLIES_PREFIX, protocol.decode_replies),
                           (protocol.M_PUSH_PREFIX, protocol.decode_push)):
        with pytest.raises(protocol.ProtocolError):
            decode(prefix + bytes(8) + bomb)


def _mutations(frame: bytes, rng: random.Random):
    for _ in range(300):
        data = bytearray(frame)
        for _ in range(rng.randint(1, 4)):
            choice = rng.random()
            position = rng.randrange(len(data) + 1)
            if choice < 0.5 and data:
                data[min(position, len(data) - 1)] = rng.randrange(256)
            elif choice < 0.75:
                del data[position : position + rng.randint(1, 8)]
            else:
                data[position:position] = bytes(rng.randrange(256) for _ in range(4))
        yield bytes(data)


def test_strict_decoders_raise_only_protocol_errors_on_mutated_frames() -> None:
    """Whatever the bytes, a strict decoder returns the documented shapes or raises
    ProtocolError: never another exception, never a huge allocation."""
    rng = random.Random(12)
    batch = protocol.encode_batch(5, [(2, [b"SET", b"key", b"value"]), (3, [b"GET", b"key"])])
    replies = protocol.encode_replies(bytes(8), [b"+OK\r\n", b"$1\r\nv\r\n"], [(9, None)])
    push = protocol.encode_push([(b"message", b"c", None, b"m")])
    checks = 0
    for frame, decode in ((batch, protocol.decode_batch), (replies, protocol.decode_replies),
                          (push, protocol.decode_push)):
        for mutated in _mutations(frame, rng):
            try:
                result = decode(mutated)
            except protocol.ProtocolError:
                continue
            checks += 1
            if decode is protocol.decode_batch:
                for code, args in result[1]:  # code: proto | db << 2, a step: bit 1 clear
                    assert 0 <= code >> 2 < protocol.MAX_DATABASES
                    assert args and all(type(a) is bytes for a in args)
            elif decode is protocol.decode_replies:
                assert all(type(r) is bytes for r in result[1])
                assert all(type(t) is int for t, _ in result[2])
    assert checks  # some mutations (inside values) still decode: the shape checks ran


@pytest.mark.parametrize("frame", [
    b"",
    b"SHD",
    b"SHD\x01\x01" + bytes(8) + b"payload",  # version 1: two frames, another layout
    b"XYZ\x02\x01" + bytes(8),
    protocol.encode_replies(bytes(8), []),  # a reply where a batch is expected
    protocol.BATCH_PREFIX + bytes(8) + (2**32 - 1).to_bytes(4, "little") + bytes(4),
    protocol.BATCH_PREFIX + bytes(8) + (1).to_bytes(4, "little") + (3).to_bytes(4, "little")
    + b"\x02" + (1).to_bytes(4, "little") + b"99999999999s",
    protocol.encode_batch(1, [(2, [b"GET", b"k"])]).replace(b"3s1s", b"3s1i"),
    protocol.encode_batch(1, [(2, [b"GET", b"k"])])[:-1],
    protocol.encode_batch(1, [(2, [b"GET", b"k"])]) + b"x",
    protocol.M_BATCH_PREFIX + bytes(8) + marshal.dumps([(2, [b"GET"])]),  # marshal, untrusted
])
def test_foreign_batches_are_refused(frame: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_batch(frame)


@pytest.mark.parametrize("payload", [
    marshal.dumps(7), marshal.dumps((1, 2, 3)), b"\xff", b"", b"[" + (2**31).to_bytes(4, "little"),
])
def test_marshal_decoders_raise_protocol_errors_for_bad_payloads(payload: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.m_decode_batch(protocol.M_BATCH_PREFIX + bytes(8) + payload)
    with pytest.raises(protocol.ProtocolError):
        protocol.m_decode_replies(protocol.M_REPLIES_PREFIX + bytes(8) + payload)


def test_worker_drops_a_foreign_multiframe_message_and_stays_in_step(tmp_path) -> None:
    """A peer of another version (two frames per message) must not desynchronise the worker's
    reading of identity and message frames: the next proper batch is answered."""
    import subprocess
    import sys

    import zmq

    address = f"ipc://{tmp_path}/w.sock"
    worker = subprocess.Popen([sys.executable, "-m", "shardis", "worker", "--listen", address,
                               "--index", "0"], stderr=subprocess.DEVNULL)
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        sock.send_multipart([b"SHD\x01\x01" + bytes(8), b"a version 1 payload"])
        codec = protocol.MARSHAL  # an ipc:// link is trusted
        sock.send(codec.encode_batch(9, [(2, [b"SET", b"k", b"v"]), (2, [b"GET", b"k"])]))
        assert codec.decode_replies(sock.recv()) == (9, [b"+OK\r\n", b"$1\r\nv\r\n"], ())
    finally:
        sock.close()
        context.term()
        worker.kill()  # not terminate: a worker stuck in a bug must not outlive the test
        worker.wait(timeout=10)
