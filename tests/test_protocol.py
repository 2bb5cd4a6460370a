"""The router <-> worker message format: round trips and refusals of foreign messages."""

import pytest

from shardis import protocol


def test_batch_round_trip() -> None:
    commands = [(2, [b"SET", b"k", b"\x00\r\n"]), (3, [b"GET", b"k"])]
    seq, decoded = protocol.decode_batch(protocol.encode_batch(7, commands))
    assert int.from_bytes(seq, "big") == 7
    assert decoded == commands


def test_replies_round_trip_with_and_without_events() -> None:
    seq = (12345).to_bytes(8, "big")
    assert protocol.decode_replies(protocol.encode_replies(seq, [b"+OK\r\n"])) == (
        12345, [b"+OK\r\n"], ())
    events = [(3, b":1\r\n"), (4, None)]
    number, replies, got = protocol.decode_replies(protocol.encode_replies(seq, [], events))
    assert (number, replies, list(got)) == (12345, [], events)


def test_push_is_told_apart_from_replies() -> None:
    frame = protocol.encode_push([(b"c", b"news", None, b"hello")])
    assert protocol.is_push(frame)
    assert not protocol.is_push(protocol.encode_replies(bytes(8), []))
    assert protocol.decode_push(frame) == [(b"c", b"news", None, b"hello")]


@pytest.mark.parametrize("frame", [
    b"",
    b"SHD",
    b"SHD\x01\x01" + bytes(8) + b"payload",  # version 1: two frames, another layout
    b"XYZ\x02\x01" + bytes(8),
    protocol.encode_replies(bytes(8), []),  # a reply where a batch is expected
])
def test_foreign_batches_are_refused(frame: bytes) -> None:
    with pytest.raises(protocol.ProtocolMismatch):
        protocol.decode_batch(frame)


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
        sock.send(protocol.encode_batch(9, [(2, [b"SET", b"k", b"v"]), (2, [b"GET", b"k"])]))
        assert protocol.decode_replies(sock.recv()) == (9, [b"+OK\r\n", b"$1\r\nv\r\n"], ())
    finally:
        sock.close()
        context.term()
        worker.kill()  # not terminate: a worker stuck in a bug must not outlive the test
        worker.wait(timeout=10)
