"""Issue 13, protocol: request streams as real clients cut them, each checked against Redis.

* ``redis-cli --pipe`` ends its stream with an empty inline line and an ECHO: Redis ignores
  empty inline lines anywhere in a stream, whatever the read boundaries.
* A request sent in small pieces costs O(bytes) in total, not a re-parse per piece.
* A multibulk may declare up to INT_MAX arguments (SADD with 1.1M members works), yet a
  declared count allocates nothing until the arguments arrive.
* A big request cut across reads, followed by inline requests or garbage ("protocol desync"),
  parses exactly as in Redis: same replies, same error, same close.

The live tests send the same bytes to redis-server 7.0.15 (the oracle) and to shardis.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import pytest
import redis

from shardis.resp import RequestParser
from tests.servers import Server


def multibulk(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def feed_cuts(data: bytes, cuts: list[int]) -> tuple[list[list[bytes]], str | None]:
    """Feed ``data`` to a fresh parser in pieces ending at ``cuts``."""
    parser, commands, start = RequestParser(), [], 0
    for cut in [*cuts, len(data)]:
        commands += parser.feed(data[start:cut])
        start = cut
    return commands, parser.error


# --- 1. empty inline lines between and after multibulk requests ---------------------------------

_SET = [b"SET", b"k", b"v"]
_ECHO = [b"ECHO", b"0123456789abcdefghij"]  # redis-cli --pipe's last command: 20 random bytes


@pytest.mark.parametrize("blank", [b"\r\n", b"\n", b"\r\n\n", b"\n\r\n"])
def test_empty_lines_between_and_after_requests_at_every_pair_of_cuts(blank):
    stream = multibulk(*_SET) + blank + multibulk(*_ECHO) + blank + multibulk(*_SET) + blank
    expected = [_SET, _ECHO, _SET]
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1):
            assert feed_cuts(stream, [first, second]) == (expected, None), (first, second)


def test_empty_line_after_a_big_request_cut_anywhere_near_it():
    # The shape of redis-cli --pipe's input past 64 KB: the request before the "\r\n" ends in a
    # later read than it started.
    big = multibulk(b"SET", b"big", b"x" * 70_000)
    stream = big + b"\r\n" + multibulk(*_ECHO)
    expected = [[b"SET", b"big", b"x" * 70_000], _ECHO]
    cuts = list(range(0, 40)) + list(range(len(big) - 30, len(stream) + 1))
    for cut in cuts:
        assert feed_cuts(stream, [cut]) == (expected, None), cut
        assert feed_cuts(stream, [cut // 2, cut]) == (expected, None), cut


def _pipe_file(path, count: int) -> None:
    with open(path, "wb") as out:
        out.write(b"".join(multibulk(b"SET", b"key:%d" % i, b"value:%d" % i)
                           for i in range(count)))


def test_redis_cli_pipe_loads_100000_commands(tmp_path, oracle_clean: Server,
                                               shardis_clean: Server):
    path = tmp_path / "load.resp"
    _pipe_file(path, 100_000)
    outputs = []
    for server in (oracle_clean, shardis_clean):
        with open(path, "rb") as stdin:
            result = subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"],
                                    stdin=stdin, capture_output=True, timeout=120)
        outputs.append((result.returncode, result.stdout.splitlines()[-1:]))
        assert redis.Redis(port=server.port).get("key:99999") == b"value:99999"
    assert outputs[0] == outputs[1] == (0, [b"errors: 0, replies: 100000"])


# --- 2. a request in small pieces costs O(bytes) ------------------------------------------------


def _feed_time(request: bytes, piece: int) -> float:
    """The time to parse ``request`` fed ``piece`` bytes at a time."""
    parser, commands = RequestParser(), []
    started = time.perf_counter()
    for start in range(0, len(request), piece):
        commands += parser.feed(request[start : start + piece])
    elapsed = time.perf_counter() - started
    assert len(commands) == 1 and parser.error is None
    return elapsed


_SHAPES = {
    "inline": lambda n: b"SET k " + b"x" * n + b"\r\n",
    "one bulk": lambda n: multibulk(b"SET", b"k", b"x" * n),
    "many bulks": lambda n: multibulk(b"SADD", b"k", *[b"m%05d" % i for i in range(n // 12)]),
}


@pytest.mark.parametrize("shape", list(_SHAPES))
def test_a_request_in_20_byte_pieces_costs_linear_time(shape):
    # A quadratic parser (each piece re-joins or re-scans what came before) takes ~16 times as
    # long for 4 times the bytes; a linear one ~4 times.  The bound is generous for noise.
    # Alternated, best of five each: the machine is shared and noisy.
    make = _SHAPES[shape]
    small_request, large_request = make(15_750), make(63_000)
    small = large = float("inf")
    for _ in range(5):
        small = min(small, _feed_time(small_request, 20))
        large = min(large, _feed_time(large_request, 20))
    assert large / small < 8, (small, large)


async def _slow_sender(port: int, index: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = multibulk(b"SET", b"slow:%d" % index, b"v" * 63_000)
    for start in range(0, len(request), 20):
        writer.write(request[start : start + 20])
        await writer.drain()
        await asyncio.sleep(0.0005)
    reply = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return reply


async def _control_pings(port: int, done: asyncio.Event) -> float:
    """PING every 10 ms until ``done``; the worst latency seen."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    worst = 0.0
    while not done.is_set():
        started = time.perf_counter()
        writer.write(b"PING\r\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b"+PONG\r\n"
        worst = max(worst, time.perf_counter() - started)
        await asyncio.sleep(0.01)
    writer.close()
    return worst


async def _slow_clients_and_a_pinger(port: int) -> tuple[list[bytes], float]:
    done = asyncio.Event()
    pinger = asyncio.ensure_future(_control_pings(port, done))
    replies = await asyncio.gather(*(_slow_sender(port, i) for i in range(20)))
    done.set()
    return list(replies), await pinger


@pytest.mark.parametrize("server_name", ["oracle", "shardis"])
def test_slow_senders_do_not_stall_a_control_client(server_name, request):
    server = request.getfixturevalue(server_name)
    replies, worst = asyncio.run(_slow_clients_and_a_pinger(server.port))
    print(f"{server_name}: worst control PING latency {worst * 1000:.1f} ms")
    assert replies == [b"+OK\r\n"] * 20
    assert worst < 2.0


# --- 3. more than 1,048,576 arguments ------------------------------------------------------------

_MEMBERS = 1_100_000


def _send_and_read(port: int, payload: bytes, replies: int, timeout: float = 30) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(payload)
        sock.settimeout(timeout)
        data = b""
        while data.count(b"\r\n") < replies:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_sadd_with_more_than_a_million_members(oracle_clean: Server, shardis_clean: Server):
    members = [b"m%d" % i for i in range(_MEMBERS)]
    payload = multibulk(b"SADD", b"bigset", *members) + multibulk(b"SCARD", b"bigset")
    del members
    for server in (oracle_clean, shardis_clean):
        started = time.perf_counter()
        got = _send_and_read(server.port, payload, 2)
        print(f"{server.name}: SADD of {_MEMBERS} members in {time.perf_counter() - started:.1f}s")
        assert got == b":%d\r\n:%d\r\n" % (_MEMBERS, _MEMBERS)
        redis.Redis(port=server.port).delete("bigset")


def test_counts_up_to_int_max_wait_for_their_arguments_and_beyond_are_refused(
        oracle: Server, shardis: Server):
    for server in (oracle, shardis):
        assert _exchange(server.port, [b"*2147483647\r\n$4\r\nPING\r\n"], idle=0.3) == (b"", False)
        assert _exchange(server.port, [b"*2147483648\r\n"]) == (
            b"-ERR Protocol error: invalid multibulk length\r\n", True)


# --- 4. big requests cut across reads, then inline requests or garbage ---------------------------


#: The last piece of each case: once its reply came, nothing more will (no idle wait).
_SENTINEL = b"ECHO END-OF-CASE\r\n"
_SENTINEL_REPLY = b"$11\r\nEND-OF-CASE\r\n"


def _exchange(port: int, pieces: list[bytes], idle: float = 1.0) -> tuple[bytes, bool]:
    """Send ``pieces`` as separate reads; everything answered (until the server closed, went
    idle, or answered :data:`_SENTINEL`), and whether the server closed."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:
                break
            time.sleep(0.02)
        sock.settimeout(idle)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return data, False
            except ConnectionResetError:
                return data, True
            if not chunk:
                return data, True
            data += chunk
            if data.endswith(_SENTINEL_REPLY):
                return data, False


_BIG = b"z" * 70_000
_BIG_SET = multibulk(b"SET", b"big", _BIG)
_DESYNC_CASES = {
    # a big request, then inline requests in the same stream
    "big then inline": _BIG_SET + b"PING\r\nECHO \"a b\"\r\n\n",
    "big, empty line, multibulk, inline": _BIG_SET + b"\r\n" + multibulk(b"GET", b"big")[:-4]
    + b"ig\r\n" + b"STRLEN big\r\n",
    # the body is one byte longer than declared: Redis skips 2 bytes ("z\r"), then "\nPING"
    "body longer than declared": _BIG_SET[:-2] + b"z\r\nPING\r\n",
    # a partial bulk, then what the client meant as the next requests: swallowed by the bulk
    "partial bulk then requests": b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$70010\r\n" + _BIG
    + b"PING\r\nECHO hi\r\nGET k\r\n",
    # garbage where a bulk header should be: Redis's error, then the close
    "garbage after a big bulk": _BIG_SET[:-2] + b"\r\n*2\r\n$3\r\nGET\r\nXYZ\r\nPING\r\n",
    "garbage inside a big request": b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n" + b"$70000\r\n" + _BIG[:100]
    + b"\r\n" + b"xyzzy\r\n" * 11_000 + b"*1\r\n$4\r\nPING\r\n" + b"?" * 1_000 + b"\r\n",
    "bad bulk length after a big request": _BIG_SET + b"*1\r\n$-5\r\nPING\r\n",
}


def _cut_points(stream: bytes) -> list[list[int]]:
    """One read; a cut inside the first header; inside the big body; a few bytes before and
    after the end of the big request; and all of these together."""
    end = _BIG_SET_END if len(stream) > _BIG_SET_END else len(stream) // 2
    cuts = [[], [3], [40_000], [end - 1], [end + 3]]
    return [*cuts, sorted({c[0] for c in cuts[1:]})]


_BIG_SET_END = len(_BIG_SET)


@pytest.mark.parametrize("case", list(_DESYNC_CASES))
def test_big_request_then_inline_or_garbage_like_redis(case, oracle_clean: Server,
                                                       shardis_clean: Server):
    stream = _DESYNC_CASES[case]
    for cuts in _cut_points(stream):
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])] + [_SENTINEL]
        expected = _exchange(oracle_clean.port, pieces)
        assert _exchange(shardis_clean.port, pieces) == expected, cuts
    assert redis.Redis(port=shardis_clean.port).ping() is True  # other clients unaffected
