"""MONITOR: Redis 7.0's line format, every client's commands, its rules on what is shown.

Compared with a real Redis running the same commands (times and client ports left out),
and read through redis-py's ``monitor()``.
"""

from __future__ import annotations

import re
import socket
import time

import pytest
import redis

from shardis.router.monitor import monitor_line, quoted
from tests.resp_client import RawClient

LINE = re.compile(rb"^\+(\d+)\.(\d{6}) \[(\d+) ([^\]]+)\] (.*)$")


def test_quoting_is_sdscatrepr():
    assert quoted(b"set") == b'"set"'
    assert quoted(b'a "b"\\') == b'"a \\"b\\"\\\\"'
    assert quoted(b"\n\r\t\x07\x08") == b'"\\n\\r\\t\\a\\b"'
    assert quoted(b"\x00\xff\x7f") == b'"\\x00\\xff\\x7f"'
    assert quoted(b"") == b'""'


def test_line_format():
    line = monitor_line(1339518083.107412, 0, "127.0.0.1:60866", [b"set", b"k", b"v"])
    assert line == b'+1339518083.107412 [0 127.0.0.1:60866] "set" "k" "v"\r\n'
    assert monitor_line(5.000001, 3, "lua", [b"get", b"a"]).startswith(b"+5.000001 [3 lua] ")


class Monitor:
    """A raw MONITOR connection: the lines it received, without time and port."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.buffer = b""
        assert self._line() == b"+OK"

    def _line(self, timeout: float = 5.0) -> bytes:
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def lines_until(self, marker: bytes) -> list[bytes]:
        """Lines (``[db] "args"...``) up to the one with ``marker`` (a PING's argument)."""
        out = []
        while True:
            match = LINE.match(self._line())
            assert match, "not a MONITOR line"
            origin = b"lua" if match[4] == b"lua" else b"client"
            shown = b"[%s %s] %s" % (match[3], origin, match[5])
            if marker in shown:
                return out
            out.append(shown)

    def close(self) -> None:
        self.sock.close()


def _run(port: int, commands: list[list[str]], marker: str) -> list[bytes]:
    """Run ``commands`` on one raw connection (a failed AUTH must not make a client library
    reconnect), then a transaction; the MONITOR lines seen meanwhile."""
    monitor = Monitor(port)
    try:
        with RawClient(port) as client:
            for args in commands:
                client.call(*args)
            for args in (["MULTI"], ["SET", "{t}x", "1"], ["GET", "{t}x"], ["INCR", "a"],
                         ["EXEC"], ["PING", marker]):
                client.call(*args)
        return monitor.lines_until(marker.encode())
    finally:
        monitor.close()


COMMANDS = [
    ["SET", "a", "1"],  # keys on different workers
    ["SET", "b", "2"],
    ["MGET", "a", "b", "c"],
    ["SET", "sp ace", 'q"uote\n\x00'],
    ["GET"],  # refused: not shown
    ["NOSUCHCOMMAND", "x"],  # refused: not shown
    ["LPUSH", "a", "x"],  # ran and failed: shown
    ["CONFIG", "GET", "maxmemory"],  # admin: not shown
    ["SLOWLOG", "LEN"],  # admin: not shown
    ["AUTH", "nosuchuser", "secret"],  # shown, redacted
    ["HELLO", "2", "AUTH", "default", "wrong"],
    ["CLIENT", "GETNAME"],
    ["EVAL", "return redis.call('get', KEYS[1])", "1", "a"],  # and its [0 lua] line
    ["EVAL", "redis.call('set', KEYS[1], 'x'); return redis.call('get', KEYS[1])", "1",
     "{t}k"],
    ["EVAL_RO", "return redis.pcall('incr', KEYS[1])", "1", "{t}k"],
    ["DEL", "a", "b", "c"],
    ["SELECT", "3"],  # the lines that follow show database 3
    ["SET", "a", "in 3"],
    ["SELECT", "0"],
]


def test_monitor_shows_what_redis_shows(shardis_clean, oracle_clean):
    ours = _run(shardis_clean.port, COMMANDS, "end-of-test")
    theirs = _run(oracle_clean.port, COMMANDS, "end-of-test")
    assert ours == theirs


def test_monitor_with_redis_py_sees_every_client(shardis_clean):
    port = shardis_clean.port
    watcher = redis.Redis(port=port)
    with watcher.monitor() as monitor:
        first, second = redis.Redis(port=port, protocol=2), redis.Redis(port=port, protocol=2)
        first.set("a", "1")
        second.set("b", "2")
        first.client_setname("first")
        second.execute_command("PING", "done")
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            event = monitor.next_command()
            seen.append(event)
            if event["command"] == "PING done":
                break
    # redis-py connects lazily: each client's handshake shows first.
    ours = [event for event in seen if not event["command"].startswith(("HELLO", "CLIENT SETINFO"))]
    commands = [event["command"] for event in ours]
    assert commands[-4:] == ["SET a 1", "SET b 2", "CLIENT SETNAME first", "PING done"]
    addresses = {event["client_port"] for event in ours[-4:]}
    assert len(addresses) == 2
    assert all(event["db"] == 0 and event["client_type"] == "tcp" for event in seen)
    assert all(abs(event["time"] - time.time()) < 30 for event in seen)
    first.close()
    second.close()
    watcher.close()


def test_a_closed_monitor_is_forgotten(shardis_clean):
    monitor = Monitor(shardis_clean.port)
    monitor.close()
    client = redis.Redis(port=shardis_clean.port)
    for _ in range(3):
        assert client.set("k", "v")
    assert client.ping()
    client.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_monitor_lines_are_status_replies_in_both_protocols(shardis_clean, protocol):
    client = redis.Redis(port=shardis_clean.port, protocol=protocol)
    with client.monitor() as monitor:
        other = redis.Redis(port=shardis_clean.port)
        other.set("k", "v")
        event = monitor.next_command()
        while event["command"] != "SET k v":
            event = monitor.next_command()
        other.close()
    client.close()


def _exchange(port: int, requests: list[bytes]) -> list[bytes]:
    """Send each request, one at a time, and read its reply line (MONITOR lines skipped)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(5)
    buffer = b""
    replies = []
    try:
        for request in requests:
            sock.sendall(request)
            while True:
                while b"\r\n" not in buffer:
                    buffer += sock.recv(65536)
                line, buffer = buffer.split(b"\r\n", 1)
                if LINE.match(line):
                    continue  # a MONITOR line
                if line.startswith(b"*"):  # EXEC's array of one element
                    while b"\r\n" not in buffer:
                        buffer += sock.recv(65536)
                    element, buffer = buffer.split(b"\r\n", 1)
                    line += b" " + element
                if line.startswith(b"$") and line != b"$-1":
                    while b"\r\n" not in buffer:
                        buffer += sock.recv(65536)
                    value, buffer = buffer.split(b"\r\n", 1)
                    line += b" " + value
                replies.append(line)
                break
    finally:
        sock.close()
    return replies


MONITOR_CLIENT = [b"SET a v\r\n", b"MONITOR\r\n", b"GET a\r\n", b"SET a b\r\n", b"PING\r\n",
                  b"EVAL \"return 1\" 0\r\n", b"GET\r\n", b"RESET\r\n", b"GET a\r\n"]


def test_a_monitor_may_not_touch_keys_until_reset(shardis_clean, oracle_clean):
    """Redis flags a MONITOR client as a replica: key commands are refused; RESET ends it."""
    ours = _exchange(shardis_clean.port, MONITOR_CLIENT)
    assert ours == _exchange(oracle_clean.port, MONITOR_CLIENT)
    assert b"-ERR Replica can't interact with the keyspace" in ours
    assert ours[-1] == b"$1 v"


def test_monitor_inside_multi_is_refused_as_redis(shardis_clean, oracle_clean):
    requests = [b"MULTI\r\n", b"MONITOR\r\n", b"EXEC\r\n", b"SET a 1\r\n"]
    ours = _exchange(shardis_clean.port, requests)
    assert ours == _exchange(oracle_clean.port, requests)
    assert ours[2] == b"*1 -ERR MONITOR isn't allowed for DENY BLOCKING client"
