"""Bad input gets a Redis-style error and never crashes a process or stalls other clients."""

import socket
import time

import redis

from tests.resp_client import RawClient


def _read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _still_serving(port: int) -> None:
    client = redis.Redis(port=port, protocol=2)
    assert client.ping() is True
    client.close()


def test_malformed_bulk_length_errors_and_closes(shardis):
    sock = socket.create_connection(("127.0.0.1", shardis.port))
    sock.sendall(b"*1\r\n$4\r\nPING\r\n*1\r\n$abc\r\n")
    data = _read_until_closed(sock)
    assert data.startswith(b"+PONG\r\n-ERR Protocol error")
    _still_serving(shardis.port)


def test_non_bulk_argument_errors_and_closes(shardis):
    sock = socket.create_connection(("127.0.0.1", shardis.port))
    sock.sendall(b"*2\r\n$3\r\nGET\r\n:1\r\n")
    assert _read_until_closed(sock).startswith(b"-ERR Protocol error")
    _still_serving(shardis.port)


def test_unbalanced_quotes_inline(shardis):
    sock = socket.create_connection(("127.0.0.1", shardis.port))
    sock.sendall(b'SET a "b\r\n')
    assert _read_until_closed(sock) == b"-ERR Protocol error: unbalanced quotes in request\r\n"


def test_huge_declared_lengths_do_not_allocate_or_crash(shardis):
    for request in (b"*2147483647\r\n", b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2147483647\r\nabc"):
        sock = socket.create_connection(("127.0.0.1", shardis.port))
        sock.sendall(request)
        time.sleep(0.1)
        sock.close()
    _still_serving(shardis.port)


def test_vanishing_clients_mid_pipeline(shardis_clean):
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", shardis_clean.port))
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nv\r\n$1\r\n1\r\n" * 500 + b"*2\r\n$3\r\nGET")
        sock.close()
    _still_serving(shardis_clean.port)
    assert redis.Redis(port=shardis_clean.port).get("v") in (b"1", None)


def test_binary_keys_and_values(shardis_clean):
    client = RawClient(shardis_clean.port)
    key = b"k\r\n\x00\xff{tag}"
    value = b"\x00\r\n$-1\r\n*1\r\n"
    assert client.call(b"SET", key, value) == b"+OK\r\n"
    assert client.call(b"GET", key) == b"$%d\r\n%s\r\n" % (len(value), value)
    assert client.call(b"EXISTS", key) == b":1\r\n"
    client.close()


def test_errors_do_not_break_the_connection(shardis_clean):
    client = RawClient(shardis_clean.port)
    assert client.call("GET") == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert client.call("NOSUCH", "a").startswith(b"-ERR unknown command 'NOSUCH'")
    assert client.call("__dump", "a").startswith(b"-ERR unknown command '__dump'")
    assert client.call("SET", "n", "x") == b"+OK\r\n"
    assert client.call("INCR", "n") == b"-ERR value is not an integer or out of range\r\n"
    assert client.call("PING") == b"+PONG\r\n"
    client.close()


def test_large_values_round_trip(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    big = b"x" * (8 * 1024 * 1024)
    assert client.set("big", big)
    assert client.get("big") == big
    assert client.strlen("big") == len(big)
