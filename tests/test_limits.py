"""Client limits against real servers: maxclients, timeout, proto-max-bulk-len,
client-query-buffer-limit, client-output-buffer-limit (normal and pubsub), and the router's
memory under a client that pipelines without reading.  Where the reply is observable, the
bytes are compared with a real redis-server started with the same directive."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tests.servers import Server, start_redis, start_shardis

MAX_CLIENTS_ERROR = b"-ERR max number of clients reached\r\n"
INVALID_BULK = b"-ERR Protocol error: invalid bulk length\r\n"


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _ping(sock: socket.socket) -> bytes:
    sock.sendall(b"PING\r\n")
    return sock.recv(64)


def _read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` (without sending anything) within ``within`` s."""
    sock.settimeout(within)
    try:
        return sock.recv(64) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _log(server: Server) -> str:
    with open(os.path.join(server.workdir, "shardis.log"), encoding="utf-8",
              errors="replace") as fh:
        return fh.read()


def _wait_for_log(server: Server, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in _log(server):
            return True
        time.sleep(0.1)
    return False


def _assert_fast(port: int) -> None:
    """A control client gets its reply at once (a generous bound: only a stall fails)."""
    client = redis.Redis(port=port, socket_timeout=5)
    assert client.ping() is True
    assert client.set("control", "ok") and client.get("control") == b"ok"
    client.close()


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[Server, Server]]:
    """shardis and redis-server started with the same directives (the test's param)."""
    args = request.param
    ours, theirs = start_shardis(1, *args), start_redis(*args)
    yield ours, theirs
    ours.stop()
    theirs.stop()


# maxclients ------------------------------------------------------------------------------------
@pytest.mark.parametrize("servers", [("--maxclients", "5")], indirect=True)
def test_maxclients_refuses_with_redis_error(servers):
    replies = []
    for server in servers:
        held = [_connect(server.port) for _ in range(5)]
        assert all(_ping(sock) == b"+PONG\r\n" for sock in held)
        extra = _connect(server.port)
        replies.append(_read_until_closed(extra))
        held.pop().close()
        time.sleep(0.3)  # the server notices the close
        again = _connect(server.port)
        assert _ping(again) == b"+PONG\r\n"
        for sock in [*held, again]:
            sock.close()
    assert replies[0] == replies[1] == MAX_CLIENTS_ERROR


def test_config_set_maxclients_takes_effect():
    server = start_shardis(1, "--maxclients", "2")
    try:
        control = redis.Redis(port=server.port, socket_timeout=5)
        assert control.ping()
        other = _connect(server.port)
        assert _ping(other) == b"+PONG\r\n"
        assert _read_until_closed(_connect(server.port)) == MAX_CLIENTS_ERROR
        assert control.config_set("maxclients", 3)
        assert control.config_get("maxclients") == {"maxclients": "3"}
        third = _connect(server.port)
        assert _ping(third) == b"+PONG\r\n"
        assert control.info("stats")["rejected_connections"] == 1
        other.close()
        third.close()
        control.close()
    finally:
        server.stop()


def test_maxclients_is_lowered_to_fit_the_open_files_limit():
    """With RLIMIT_NOFILE's hard limit at 512 and no way up, maxclients shrinks and the log
    says so (Redis's adjustOpenFilesLimit).  As root the limit can go up to fs.nr_open."""
    requested = 2_000_000_000

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))

    server = start_shardis(1, "--maxclients", str(requested), preexec_fn=low_limit)
    try:
        effective = int(redis.Redis(port=server.port).config_get("maxclients")["maxclients"])
        assert 0 < effective < requested
        assert f"maxclients has been reduced to {effective}" in _log(server)
    finally:
        server.stop()


# timeout ---------------------------------------------------------------------------------------
def test_idle_clients_are_closed_but_not_subscribers_or_blocked_ones():
    server = start_shardis(1, "--timeout", "1")
    try:
        idle = _connect(server.port)
        assert _ping(idle) == b"+PONG\r\n"
        subscriber = _connect(server.port)
        subscriber.sendall(b"SUBSCRIBE news\r\n")
        assert subscriber.recv(100).startswith(b"*3\r\n$9\r\nsubscribe")
        blocked = _connect(server.port)
        blocked.sendall(b"BLPOP nothing 0\r\n")
        busy = _connect(server.port)
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:  # busy keeps talking: never idle
            assert _ping(busy) == b"+PONG\r\n"
            time.sleep(0.25)
        assert _closed_by_server(idle, within=5)
        assert not _closed_by_server(subscriber, within=0.2)
        assert not _closed_by_server(blocked, within=0.2)
        assert _ping(busy) == b"+PONG\r\n"
        for sock in (subscriber, blocked, busy):
            sock.close()
    finally:
        server.stop()


# proto-max-bulk-len ----------------------------------------------------------------------------
@pytest.mark.parametrize("servers", [("--proto-max-bulk-len", "1mb")], indirect=True)
def test_bulk_over_proto_max_bulk_len_is_a_protocol_error(servers):
    for server in servers:
        ok = _connect(server.port)
        value = b"v" * (1024 * 1024)
        ok.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n" % (len(value), value))
        ok.settimeout(10)
        assert ok.recv(64) == b"+OK\r\n"
        ok.close()
        over = _connect(server.port)
        over.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n")
        assert _read_until_closed(over) == INVALID_BULK, server.name
        _assert_fast(server.port)


def test_proto_max_bulk_len_applies_to_later_headers_and_config_set():
    server = start_shardis(1, "--proto-max-bulk-len", "1mb")
    try:
        big = b"x" * 2_000_000
        # The first value is large enough for the parser to hand the request to hiredis; the
        # over-long header of the second comes in a later read.
        first = b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$100000\r\n" + b"y" * 100000 + b"\r\n"
        sock = _connect(server.port)
        sock.sendall(first)
        time.sleep(0.2)
        sock.sendall(b"$1\r\nb\r\n$%d\r\n%s\r\n" % (len(big), big))
        assert _read_until_closed(sock) == INVALID_BULK
        control = redis.Redis(port=server.port, socket_timeout=10)
        assert control.exists("a") == 0
        assert control.config_set("proto-max-bulk-len", "4mb")
        assert control.set("big", big) and control.strlen("big") == len(big)
        control.close()
    finally:
        server.stop()


# client-query-buffer-limit ---------------------------------------------------------------------
@pytest.mark.parametrize("servers", [("--client-query-buffer-limit", "1mb")], indirect=True)
def test_query_buffer_over_the_limit_closes_without_reply(servers):
    for server in servers:
        sock = _connect(server.port)
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n")
        try:
            for _ in range(30):
                sock.sendall(b"z" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _read_until_closed(sock) == b"", server.name
        _assert_fast(server.port)
    assert _wait_for_log(servers[0], "Closing client that reached max query buffer length")


def test_query_buffer_limit_counts_unfinished_requests_only():
    """Long pipelines and values just under the limit pass: only an unfinished request
    counts, however many complete ones came before it in the same reads."""
    server = start_shardis(1, "--client-query-buffer-limit", "1mb")
    try:
        client = redis.Redis(port=server.port, socket_timeout=20)
        pipe = client.pipeline(transaction=False)
        for index in range(20000):  # ~2.6 MB of requests, sent at once
            pipe.set(f"key:{index}", b"p" * 100)
        assert all(pipe.execute())
        value = b"u" * 1_000_000
        assert client.set("almost", value) and client.strlen("almost") == len(value)
        assert client.dbsize() == 20001
        client.close()
    finally:
        server.stop()


# client-output-buffer-limit --------------------------------------------------------------------
VALUE = b"v" * 10_000
GETS = 200_000


def _flood_without_reading(port: int, stop: threading.Event) -> socket.socket:
    """A client that sends GETs of a 10 KB value and never reads, from a thread."""
    sock = _connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 1000

    def send() -> None:
        try:
            for _ in range(GETS // 1000):
                if stop.is_set():
                    return
                sock.sendall(request)
        except OSError:
            pass

    threading.Thread(target=send, daemon=True).start()
    return sock


def test_a_client_that_does_not_read_gets_backpressure_not_memory():
    """Normal clients have no output limit by default: the router stops reading such a
    client rather than growing; once it leaves, the memory is back near its baseline."""
    server = start_shardis(1)
    try:
        redis.Redis(port=server.port).set("big", VALUE)
        baseline = _rss_kb(server.proc.pid)
        stop = threading.Event()
        sock = _flood_without_reading(server.port, stop)
        peak = baseline
        for _ in range(30):
            time.sleep(0.1)
            peak = max(peak, _rss_kb(server.proc.pid))
        _assert_fast(server.port)
        assert not _closed_by_server(sock, within=0.1)  # still connected: just not read
        stop.set()
        sock.close()
        time.sleep(1.0)
        after = _rss_kb(server.proc.pid)
        _assert_fast(server.port)
        assert peak - baseline < 200_000, (baseline, peak)  # bounded, never 2 GB of replies
        assert after - baseline < 50_000, (baseline, peak, after)
    finally:
        server.stop()


@pytest.mark.parametrize(
    "servers", [("--client-output-buffer-limit", "normal 1mb 0 0")], indirect=True)
def test_normal_hard_limit_disconnects_a_client_that_does_not_read(servers):
    for server in servers:
        redis.Redis(port=server.port).set("big", VALUE)
        stop = threading.Event()
        sock = _flood_without_reading(server.port, stop)
        time.sleep(1.0)
        _assert_fast(server.port)
        stop.set()
        # It was dropped at the limit: what it can still read is far less than it asked for.
        assert len(_read_until_closed(sock, timeout=10)) < 10 * 1024 * 1024, server.name
    assert _wait_for_log(servers[0], "scheduled to be closed ASAP for overcoming of output "
                                     "buffer limits")


def _flood_channel(port: int, seconds: float, size: int = 65536) -> int:
    publisher = redis.Redis(port=port, socket_timeout=10)
    payload = b"m" * size
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        pipe = publisher.pipeline(transaction=False)
        for _ in range(16):
            pipe.publish("flood", payload)
        assert all(isinstance(n, int) for n in pipe.execute())
        sent += 16
    publisher.close()
    return sent


def _slow_subscriber(port: int) -> socket.socket:
    sock = _connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"SUBSCRIBE flood\r\n")
    assert sock.recv(100).startswith(b"*3\r\n$9\r\nsubscribe")
    return sock


def test_pubsub_default_hard_limit_drops_a_subscriber_that_does_not_read():
    server = start_shardis(1)
    try:
        slow = _slow_subscriber(server.port)
        _flood_channel(server.port, seconds=4.0)  # ~hundreds of MB offered: past 32 MB
        _assert_fast(server.port)
        counts = redis.Redis(port=server.port).pubsub_numsub("flood")
        assert counts == [(b"flood", 0)]
        assert _wait_for_log(server, "scheduled to be closed ASAP for overcoming of output "
                                     "buffer limits")
        slow.close()
    finally:
        server.stop()


def test_pubsub_soft_limit_counts_after_its_seconds():
    server = start_shardis(1, "--client-output-buffer-limit", "pubsub 0 256kb 1")
    try:
        slow = _slow_subscriber(server.port)
        reader = _connect(server.port)
        reader.sendall(b"SUBSCRIBE flood\r\n")
        assert reader.recv(100).startswith(b"*3\r\n$9\r\nsubscribe")
        received = bytearray()
        message = b"m" * 65536

        def read_all() -> None:
            reader.settimeout(20)
            while received.count(message) < 300 and (chunk := reader.recv(1 << 20)):
                received.extend(chunk)

        thread = threading.Thread(target=read_all, daemon=True)
        thread.start()
        publisher = redis.Redis(port=server.port)
        pipe = publisher.pipeline(transaction=False)
        for _ in range(300):  # ~20 MB: past what the kernel buffers; no hard limit
            pipe.publish("flood", message)
        pipe.execute()
        # Over the soft limit for more than its second: dropped by the sweep.
        deadline = time.monotonic() + 10
        while publisher.pubsub_numsub("flood") != [(b"flood", 1)]:
            assert time.monotonic() < deadline, "the slow subscriber was never dropped"
            time.sleep(0.2)
        thread.join(timeout=30)
        assert received.count(message) == 300  # the reading subscriber got everything
        slow.close()
        reader.close()
    finally:
        server.stop()


def test_limits_are_config_settable():
    server = start_shardis(1)
    try:
        client = redis.Redis(port=server.port, decode_responses=True)
        assert client.config_set("client-output-buffer-limit", "normal 2mb 1mb 10")
        assert client.config_get("client-output-buffer-limit")["client-output-buffer-limit"] \
            == "normal 2097152 1048576 10 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        assert client.config_set("timeout", 5) and client.config_set("maxclients", 50)
        assert client.info("clients")["maxclients"] == 50
        assert client.config_set("client-query-buffer-limit", "2mb")
    finally:
        server.stop()


def test_output_limit_closes_do_not_disturb_the_router():
    """Clients dropped at their limit leave nothing behind (checked by a full sweep)."""
    server = start_shardis(1, "--client-output-buffer-limit", "normal 64kb 0 0")
    try:
        redis.Redis(port=server.port).set("big", VALUE)
        for _ in range(5):
            stop = threading.Event()
            sock = _flood_without_reading(server.port, stop)
            time.sleep(0.3)
            stop.set()
            _read_until_closed(sock)
        client = redis.Redis(port=server.port)
        assert client.info("clients")["connected_clients"] == 1
        assert subprocess.run(["redis-cli", "-p", str(server.port), "ping"],
                              capture_output=True, timeout=10).stdout == b"PONG\n"
    finally:
        server.stop()


# The parser's side of the two input limits ------------------------------------------------------
def _feed_in_chunks(parser, data: bytes, size: int) -> list[list[bytes]]:
    commands = []
    for start in range(0, len(data), size):
        commands += parser.feed(data[start:start + size])
    return commands


def test_parser_limits_whatever_the_read_sizes():
    from shardis.resp import QUERY_BUFFER_OVERFLOW, ProtocolLimits, RequestParser

    limits = ProtocolLimits(max_bulk=1024 * 1024, query_buffer=2 * 1024 * 1024)
    ok = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n" + b"a" * 1048576 + b"\r\n"
    too_long = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n" + b"a" * 1048577 + b"\r\n"
    for size in (7, 4096, 65536, 300_000, len(ok) + 10):
        parser = RequestParser(limits)
        assert _feed_in_chunks(parser, ok * 3, size) == [[b"SET", b"k", b"a" * 1048576]] * 3
        assert parser.error is None
        parser = RequestParser(limits)
        _feed_in_chunks(parser, too_long, size)
        assert parser.error == "ERR Protocol error: invalid bulk length", size
    endless = b"*2\r\n$3\r\nGET\r\n$100000000\r\n" + b"b" * (3 * 1024 * 1024)
    for size in (65536, 1 << 20):
        parser = RequestParser(ProtocolLimits(query_buffer=2 * 1024 * 1024))
        assert _feed_in_chunks(parser, endless, size) == []
        assert parser.error is QUERY_BUFFER_OVERFLOW
    limits.set_max_bulk(2 * 1024 * 1024)  # CONFIG SET: the next requests obey
    assert _feed_in_chunks(RequestParser(limits), too_long, 65536) == [
        [b"SET", b"k", b"a" * 1048577]]
