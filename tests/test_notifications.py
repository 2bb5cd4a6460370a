"""Keyspace notifications (notify-keyspace-events), compared with real Redis as multisets:
events of keys on different workers may interleave differently, each key's own stay ordered."""

import re
import socket
import time

import pytest

from tests.resp_client import RawClient

COMMANDS = [b"SET a 1", b"INCR a", b"APPEND a x", b"RPUSH l 1 2", b"LPOP l", b"RPOP l",
            b"HSET h f v", b"SADD s m", b"ZADD z 1 m", b"DEL a", b"SET e v PX 50",
            b"EXPIRE h 100", b"RENAME h h2", b"MSET m1 1 m2 2", b"SETEX x 10 v",
            b"SETBIT bits 7 1", b"LMOVE l2 l3 LEFT RIGHT", b"GETDEL m1"]
_MESSAGE = re.compile(rb"\*4\r\n\$8\r\npmessage\r\n\$\d+\r\n[^\r]*\r\n\$\d+\r\n([^\r]*)\r\n"
                      rb"\$\d+\r\n([^\r]*)\r\n")


def _events(port: int, flags: str) -> list[tuple[bytes, bytes]]:
    control = RawClient(port)
    assert control.call("FLUSHALL") == b"+OK\r\n"
    assert control.call("CONFIG", "SET", "notify-keyspace-events", flags) == b"+OK\r\n"
    subscriber = socket.create_connection(("127.0.0.1", port))
    subscriber.sendall(b"PSUBSCRIBE __key*@0__:*\r\n")
    subscriber.recv(100)
    for command in COMMANDS:
        control.send_raw(command + b"\r\n")
        control.read_reply()
    time.sleep(0.6)  # e expires (50 ms) and is reclaimed by the active cycle
    subscriber.settimeout(0.3)
    data = b""
    try:
        while True:
            chunk = subscriber.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    control.call("CONFIG", "SET", "notify-keyspace-events", "")
    control.close()
    subscriber.close()
    return _MESSAGE.findall(data)


@pytest.mark.parametrize("flags", ["KEA", "Kg$", "El", "Ex", "KA"])
def test_events_match_redis(oracle_clean, shardis_clean, flags):
    expected = _events(oracle_clean.port, flags)
    assert sorted(_events(shardis_clean.port, flags)) == sorted(expected)
    assert expected or flags == "El"


def test_config_get_and_errors_match_redis(oracle_clean, shardis_clean):
    for port in (oracle_clean.port, shardis_clean.port):
        client = RawClient(port)
        assert client.call("CONFIG", "SET", "notify-keyspace-events", "Q") == (
            b"-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - "
            b"Invalid event class character. Use 'Ag$lshzxeKEtmdn'.\r\n")
        client.call("CONFIG", "SET", "notify-keyspace-events", "EKA")
        assert client.call("CONFIG", "GET", "notify-keyspace-events") == (
            b"*2\r\n$22\r\nnotify-keyspace-events\r\n$3\r\nAKE\r\n")
        client.call("CONFIG", "SET", "notify-keyspace-events", "")
        client.close()
