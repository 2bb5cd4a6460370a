"""Review tests for the RESP request parser (``shardis.resp.RequestParser``).

The core property: feeding a valid request stream in *any* chunking yields the same commands as
one straightforward parse of the whole stream, with no error.  Redis recognises an inline
request at every request boundary (``processInputBuffer`` looks at the first byte of each
request), so mixed inline/multibulk pipelines are valid too.

A failing test here is a bug report; each test says what Redis 7.0.15 does.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest

from shardis.resp import RequestParser

# --- a straightforward reference parser (whole buffer, Redis's rules, valid input only) -------
_INLINE_TOKEN = re.compile(rb'"([^"]*)"|([^ \t"]+)')


def reference_split(line: bytes) -> list[bytes]:
    """Enough of ``sdssplitargs`` for the inline requests generated here."""
    args = []
    for quoted, bare in _INLINE_TOKEN.findall(line):
        args.append(quoted if not bare else bare)
    return args


def reference_parse(data: bytes) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] == b"*":
            newline = data.index(b"\r\n", pos)
            count = int(data[pos + 1 : newline])
            pos = newline + 2
            args = []
            for _ in range(max(count, 0)):
                assert data[pos : pos + 1] == b"$"
                newline = data.index(b"\r\n", pos)
                length = int(data[pos + 1 : newline])
                start = newline + 2
                args.append(data[start : start + length])
                assert data[start + length : start + length + 2] == b"\r\n"
                pos = start + length + 2
        else:
            newline = data.index(b"\n", pos)
            line = data[pos:newline]
            pos = newline + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            args = reference_split(line)
        if args:
            out.append(args)
    return out


# --- generators --------------------------------------------------------------------------------
_VALUE_BYTES = b"ab*$:+-_#%~>|0123456789\r\n \x00\xff"


def multibulk(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def random_value(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.05:
        return bytes(rng.choice(b"xyz") for _ in range(rng.randrange(4000, 6000)))
    return bytes(rng.choice(_VALUE_BYTES) for _ in range(rng.randrange(0, 12)))


def random_multibulk(rng: random.Random) -> bytes:
    return multibulk([b"CMD"] + [random_value(rng) for _ in range(rng.randrange(0, 4))])


def random_inline(rng: random.Random) -> bytes:
    tokens = []
    for _ in range(rng.randrange(1, 4)):
        word = "".join(rng.choice("abcXYZ019._-") for _ in range(rng.randrange(1, 6)))
        tokens.append(f'"{word} {word}"' if rng.random() < 0.2 else word)
    line = (" " * rng.randrange(1, 3)).join(tokens).encode()
    return line + rng.choice([b"\r\n", b"\n"])


def random_stream(rng: random.Random, inline: bool) -> bytes:
    parts = []
    for _ in range(rng.randrange(1, 8)):
        if inline and rng.random() < 0.4:
            parts.append(random_inline(rng))
        else:
            parts.append(random_multibulk(rng))
    return b"".join(parts)


def feed_chunks(data: bytes, cuts: list[int]) -> tuple[list[list[bytes]], str | None]:
    parser = RequestParser()
    commands: list[list[bytes]] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        if cut > previous:
            commands += parser.feed(data[previous:cut])
            previous = cut
    return commands, parser.error


def random_cuts(rng: random.Random, size: int) -> list[int]:
    return rng.sample(range(1, size), min(size - 1, rng.randrange(1, 6))) if size > 1 else []


def check_all_chunkings(data: bytes, rng: random.Random, tries: int) -> None:
    expected = reference_parse(data)
    for _ in range(tries):
        cuts = random_cuts(rng, len(data))
        got, error = feed_chunks(data, cuts)
        assert (got, error) == (expected, None), f"stream {data[:300]!r} cut at {sorted(cuts)}"


# --- properties that hold -------------------------------------------------------------------
def test_reference_parser_agrees_with_the_generator():
    assert reference_parse(b'*2\r\n$3\r\nGET\r\n$1\r\na\r\nSET  k "v w"\n*0\r\n\r\n') == [
        [b"GET", b"a"],
        [b"SET", b"k", b"v w"],
    ]


def test_random_multibulk_pipelines_split_at_random_points():
    rng = random.Random(1234)
    for _ in range(300):
        check_all_chunkings(random_stream(rng, inline=False), rng, tries=6)


def test_multibulk_pipeline_split_at_every_single_byte_boundary():
    data = (
        multibulk([b"SET", b"k", b"\r\n*1\r\n$3\r\n"])
        + multibulk([b"GET", b""])
        + multibulk([b"MSET", b"a", b"x" * 5000, b"b", b"$-1"])
        + multibulk([b"PING"])
    )
    expected = reference_parse(data)
    for cut in range(1, len(data)):
        assert feed_chunks(data, [cut]) == (expected, None), f"cut at {cut}"


def test_multibulk_pipeline_fed_byte_by_byte():
    rng = random.Random(7)
    data = b"".join(random_multibulk(rng) for _ in range(30))
    assert feed_chunks(data, list(range(1, len(data)))) == (reference_parse(data), None)


def test_inline_only_pipelines_split_anywhere():
    rng = random.Random(99)
    for _ in range(200):
        data = b"".join(random_inline(rng) for _ in range(rng.randrange(1, 6)))
        check_all_chunkings(data, rng, tries=5)


# --- bugs --------------------------------------------------------------------------------------
def test_random_mixed_inline_and_multibulk_pipelines_split_anywhere():
    """Redis accepts an inline request at any request boundary; shardis only when the read
    starts there.  Fails with 'Protocol error, got "P" as reply type byte' (connection closed)."""
    rng = random.Random(4321)
    for _ in range(300):
        check_all_chunkings(random_stream(rng, inline=True), rng, tries=6)


def test_inline_request_after_a_multibulk_completed_by_the_same_read():
    # Read 1 leaves half a request in hiredis (_partial); read 2 finishes it, then has an
    # inline PING: _feed's _partial branch sends everything to hiredis, with no fallback.
    parser = RequestParser()
    assert parser.feed(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI") == [[b"PING"]]
    assert parser.feed(b"NG\r\nPING\r\n") == [[b"PING"], [b"PING"]]  # Redis: +PONG x3
    assert parser.error is None


def test_fallback_parse_leaves_a_stale_partial_flag():
    # The fast path sets _partial=True, hiredis refuses the inline PING, the read is parsed
    # again by _parse_slowly, which completes it but never clears _partial: the next read
    # (a plain inline command) goes to hiredis and kills the connection.
    parser = RequestParser()
    assert parser.feed(b"*1\r\n$4\r\nPING\r\nPING\r\n") == [[b"PING"], [b"PING"]]
    assert parser.feed(b"PING\r\n") == [[b"PING"]]
    assert parser.error is None


def test_null_multibulk_then_inline_in_the_next_read():
    # Redis skips "*-1" (multibulk length <= 0) and then serves the inline PING.
    parser = RequestParser()
    assert parser.feed(b"*1\r\n$4\r\nPING\r\n*-1\r\n") == [[b"PING"]]
    assert parser.feed(b"PING\r\n") == [[b"PING"]]
    assert parser.error is None


@pytest.mark.parametrize("value", [b"x\n$600000000", b"x\n*3000000000"])
def test_value_that_ends_like_a_huge_header_is_not_a_protocol_error(value):
    # _check_pending_header looks at the last 32 bytes of the read with a regex; when a read
    # ends right after a *value* ending in "\n$<big>" it takes the value for a bulk header.
    request = multibulk([b"SET", b"k", value, b"NX"])
    cut = request.index(b"$2\r\nNX")
    assert feed_chunks(request, []) == ([[b"SET", b"k", value, b"NX"]], None)
    assert feed_chunks(request, [cut]) == ([[b"SET", b"k", value, b"NX"]], None)


def test_oversized_bulk_length_is_refused_in_a_large_read():
    # Redis refuses a bulk length > proto-max-bulk-len (512 MB) as soon as it reads the header.
    # shardis only checks the last 32 bytes of a read (and re-parses reads <= 4096 bytes), so
    # a header followed by some data in a big read is accepted and buffered (up to 1 GB).
    parser = RequestParser()
    parser.feed(b"*2\r\n$3\r\nGET\r\n$600000000\r\n" + b"a" * 5000)
    assert parser.error == "ERR Protocol error: invalid bulk length"


def test_huge_multibulk_count_does_not_stall_the_event_loop():
    # 14 bytes make hiredis build a 2e9-slot Python list (calloc, lazily mapped); discarding the
    # reader (the retry path of _feed, or the client disconnecting) walks every slot: ~4-5 s of
    # CPU on the router's only thread, for every such request.  Redis preallocates
    # min(count, 1024) slots.  (Run in a child process so that a failure costs 1.5 s, not 5.)
    code = (
        "import time\n"
        "from shardis.resp import RequestParser\n"
        "p = RequestParser()\n"
        "started = time.monotonic()\n"
        "p.feed(b'*2000000000\\r\\n')\n"
        "del p\n"
        "print(round(time.monotonic() - started, 3))\n"
    )
    assert run_with_timeout(code, 1.5) < 0.3


def test_inline_request_with_a_nul_byte_terminates():
    # split_inline: a NUL ends a token without being consumed, and the blank-skipping loop does
    # not skip NUL, so "GET \0" appends b"" forever: the router spins at 100% CPU with growing
    # memory and serves nobody.  (Redis stops at the NUL, as C's strchr/sdssplitargs do.)
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from shardis.resp import RequestParser\n"
        "RequestParser().feed(b'GET \\x00abc\\r\\n')\n"
        "print(0)\n"
    )
    assert run_with_timeout(code, 1.5) == 0


def run_with_timeout(code: str, timeout: float) -> float:
    """Run ``code`` in a child Python; its last stdout line as a number, or fail on timeout."""
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout}s:\n{code}")
    assert result.returncode == 0, result.stderr.decode()[-800:]
    return float(result.stdout.split()[-1])


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (b":5\r\n", "ERR Protocol error: expected '$', got ':'"),
        (b"*1\r\n$1\r\na\r\n", "ERR Protocol error: expected '$', got '*'"),
    ],
)
def test_error_text_does_not_depend_on_where_the_read_was_split(second, expected):
    # One read: the exact Python path gives Redis's text.  Split after an element, the rest goes
    # to hiredis only and the text becomes "invalid bulk length".
    first = b"*2\r\n$3\r\nGET\r\n"
    assert feed_chunks(first + second, [])[1] == expected
    assert feed_chunks(first + second, [len(first)])[1] == expected


# --- found by tests/test_codec_properties.py (a request above 64 KB used to stay in hiredis) ---
_BIG_SET = multibulk([b"SET", b"big", b"z" * 100_000])


def test_inline_request_after_a_large_request_in_the_same_read():
    # Redis 7.0.15 answers +OK then +PONG; shardis fed the rest of the read to hiredis, which
    # killed the connection with 'Protocol error, got "P" as reply type byte'.
    assert feed_chunks(_BIG_SET + b"PING\r\n", [70_000]) == (
        [[b"SET", b"big", b"z" * 100_000], [b"PING"]],
        None,
    )


def test_redis_error_text_after_a_large_request():
    # Redis: "expected '$', got 'X'"; hiredis's text used to leak out.
    stream = _BIG_SET[:-2] + b"\r\n*1\r\nX\r\n"
    assert feed_chunks(stream, [70_000])[1] == "ERR Protocol error: expected '$', got 'X'"


def test_giant_multibulk_count_after_a_large_request_allocates_nothing():
    # hiredis kept parsing after the large request and built a 2e9-slot list for
    # "*2000000000": VmPeak +16 GB and ~7 s of CPU freeing it, per request, on the router's
    # only thread.  Redis 7.0.15 accepts the count (<= INT_MAX) and waits for the arguments,
    # allocating nothing up front; shardis checks it like any request, in Python.
    code = (
        "from shardis.resp import RequestParser\n"
        f"big = {_BIG_SET[:-100_002]!r} + b'z' * 100_000 + b'\\r\\n'\n"
        "p = RequestParser()\n"
        "p.feed(big[:70_000])\n"
        "assert len(p.feed(big[70_000:] + b'*2000000000\\r\\n$1\\r\\na\\r\\n')) == 1\n"
        "assert p.error is None, p.error\n"
        "del p\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmPeak')][0].split()[1])\n"
    )
    assert run_with_timeout(code, 10) < 512 * 1024  # kB


def test_multibulk_count_beyond_int_max_is_refused():
    # redis-server 7.0.15: "*2147483647" waits for its arguments, "*2147483648" is refused.
    assert feed_chunks(b"*2147483647\r\n$4\r\nPING\r\n", [5]) == ([], None)
    assert feed_chunks(b"*2147483648\r\nPING\r\n", [5]) == (
        [],
        "ERR Protocol error: invalid multibulk length",
    )


def test_multibulk_count_beyond_int64_is_refused():
    # Redis's string2ll fails on it: "invalid multibulk length" (redis-server 7.0.15); the
    # count used to be taken as negative, i.e. an empty request, and the PING was served.
    assert feed_chunks(b"*-9999999999999999999\r\nPING\r\n", []) == (
        [],
        "ERR Protocol error: invalid multibulk length",
    )
