"""Hypothesis properties of the RESP codec (``shardis.resp``), against reference models.

The models here are written from Redis 7.0's C code (``processInlineBuffer``,
``processMultibulkBuffer``, ``sdssplitargs``, ``string2ll``), not from shardis: a property fails
when the parser and the model disagree.  Streams are fed in pieces chosen by hypothesis (1-byte
pieces included) because the parser keeps state across reads: the small-tail buffer, the
hiredis fast path and the large-request mode each see different cuts.

A multibulk count is refused above :data:`shardis.resp.MAX_MULTIBULK` (INT_MAX, as in Redis);
a large count is parsed in Python, so a few bytes cannot make hiredis allocate a giant list.

Documented deviations from Redis, built into the model:

* an inline line ends at a NUL byte (Redis's ``strchr`` stops there and the connection then
  waits for a newline it never sees, until 64 KB of input make it an error);

Where shardis is stricter than Redis (a header line ended by ``\\r`` plus any byte, which Redis
accepts) the parser may stop early, with an error: the "any bytes" property allows that.
"""

from __future__ import annotations

import re
import subprocess
import sys

import hiredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shardis.errors import ReplyError
from shardis.resp import (
    MAX_BULK_LENGTH,
    MAX_INLINE_SIZE,
    MAX_MULTIBULK,
    NULL_ARRAY,
    Pairs,
    Push,
    Raw,
    RequestParser,
    SetReply,
    Status,
    Verbatim,
    encode,
    format_double,
    split_inline,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- reference encoders -------------------------------------------------------------------------


def multibulk(args: list[bytes]) -> bytes:
    """The canonical RESP array of bulk strings for one command."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


_BARE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:{}$+@!#")


def inline_arg(arg: bytes, quote: str) -> bytes:
    """One argument of an inline request: bare when it can be, else quoted as ``quote`` asks."""
    if arg and all(c in _BARE for c in arg) and quote == "bare":
        return arg
    if quote == "single" and b"'" not in arg and b"\\" not in arg and b"\n" not in arg:
        if b"\r" not in arg and b"\0" not in arg:
            return b"'" + arg + b"'"
    out = bytearray(b'"')
    for c in arg:
        if 0x20 <= c < 0x7F and c not in b'"\\':
            out.append(c)
        else:
            out += b"\\x%02x" % c
    return bytes(out + b'"')


def inline_line(args: list[bytes], quotes: list[str], sep: bytes, eol: bytes) -> bytes:
    return sep.join(inline_arg(a, q) for a, q in zip(args, quotes)) + eol


# --- reference parser: Redis 7.0's processInputBuffer, whole stream at once ---------------------

_C_SPACE = frozenset(b" \t\n\v\f\r")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")


def ref_sdssplitargs(line: bytes) -> list[bytes] | None:
    """``sdssplitargs`` transliterated from sds.c; None where it returns NULL."""
    s = line.split(b"\0", 1)[0] + b"\0\0\0\0"  # a C string, with room to look ahead
    p, out = 0, []
    while True:
        while s[p] in _C_SPACE:
            p += 1
        if s[p] == 0:
            return out
        current, inq, insq, done = bytearray(), False, False, False
        while not done:
            c = s[p]
            if inq:
                if c == 0x5C and s[p + 1] == 0x78 and s[p + 2] in _HEXDIGITS and s[p + 3] in _HEXDIGITS:
                    current.append(int(s[p + 2 : p + 4], 16))
                    p += 3
                elif c == 0x5C and s[p + 1]:
                    p += 1
                    current.append(_ESCAPES.get(s[p], s[p]))
                elif c == 0x22:
                    if s[p + 1] and s[p + 1] not in _C_SPACE:
                        return None
                    done = True
                elif c == 0:
                    return None
                else:
                    current.append(c)
            elif insq:
                if c == 0x5C and s[p + 1] == 0x27:
                    p += 1
                    current.append(0x27)
                elif c == 0x27:
                    if s[p + 1] and s[p + 1] not in _C_SPACE:
                        return None
                    done = True
                elif c == 0:
                    return None
                else:
                    current.append(c)
            elif c in b" \n\r\t\0":
                done = True
            elif c == 0x22:
                inq = True
            elif c == 0x27:
                insq = True
            else:
                current.append(c)
            if s[p]:
                p += 1
        out.append(bytes(current))


def ref_string2ll(raw: bytes) -> int | None:
    """Redis's ``string2ll``: digits only, no leading zero, an optional '-', within int64."""
    if raw == b"0":
        return 0
    if not re.fullmatch(rb"-?[1-9][0-9]*", raw):
        return None
    value = int(raw)
    return value if -(2**63) <= value < 2**63 else None


class _Wait(Exception):
    """The model needs more input (Redis returns from processInputBuffer and waits)."""


class _Fail(Exception):
    """Redis would reply with this protocol error and close the connection."""


def _header_end(data: bytes, pos: int, too_big: str) -> int:
    """Index of the '\\r' ending a header: ``strchr``, so a NUL byte hides it."""
    cr, nul = data.find(b"\r", pos), data.find(b"\0", pos)
    if cr < 0 or 0 <= nul < cr:
        if len(data) - pos > MAX_INLINE_SIZE:
            raise _Fail("ERR Protocol error: " + too_big)
        raise _Wait
    if cr > len(data) - 2:  # the buffer must also hold the byte after '\r'
        raise _Wait
    return cr


def _ref_multibulk(data: bytes, pos: int) -> tuple[list[bytes], int]:
    cr = _header_end(data, pos, "too big mbulk count string")
    count = ref_string2ll(data[pos + 1 : cr])
    if count is None or count > MAX_MULTIBULK:
        raise _Fail("ERR Protocol error: invalid multibulk length")
    pos, args = cr + 2, []
    for _ in range(max(count, 0)):
        if pos >= len(data):
            raise _Wait
        cr = _header_end(data, pos, "too big bulk count string")
        if data[pos] != 0x24:
            raise _Fail(f"ERR Protocol error: expected '$', got '{chr(data[pos])}'")
        length = ref_string2ll(data[pos + 1 : cr])
        if length is None or length < 0 or length > MAX_BULK_LENGTH:
            raise _Fail("ERR Protocol error: invalid bulk length")
        pos = cr + 2
        if len(data) - pos < length + 2:
            raise _Wait
        args.append(data[pos : pos + length])
        pos += length + 2
    return args, pos


def _ref_inline(data: bytes, pos: int) -> tuple[list[bytes], int]:
    newline = data.find(b"\n", pos)
    if newline < 0:
        if len(data) - pos > MAX_INLINE_SIZE:
            raise _Fail("ERR Protocol error: too big inline request")
        raise _Wait
    line = data[pos:newline]
    if line.endswith(b"\r"):
        line = line[:-1]
    args = ref_sdssplitargs(line)
    if args is None:
        raise _Fail("ERR Protocol error: unbalanced quotes in request")
    return args, newline + 1


def reference_parse(data: bytes) -> tuple[list[list[bytes]], str | None]:
    """The commands Redis would run for ``data``, and the protocol error it would end with."""
    commands: list[list[bytes]] = []
    pos = 0
    try:
        while pos < len(data):
            parse = _ref_multibulk if data[pos] == 0x2A else _ref_inline
            args, pos = parse(data, pos)
            if args:
                commands.append(args)
    except _Wait:
        return commands, None
    except _Fail as exc:
        return commands, str(exc)
    return commands, None


# --- feeding in pieces ----------------------------------------------------------------------------

#: Every protocol error text Redis 7.0 sends ('$' and '?' stand for the offending byte).
REDIS_PROTOCOL_ERRORS = re.compile(
    r"ERR Protocol error: (unbalanced quotes in request|too big inline request|"
    r"invalid multibulk length|invalid bulk length|too big mbulk count string|"
    r"too big bulk count string|expected '\$', got '.')\Z",
    re.DOTALL,
)


def feed_in_pieces(data: bytes, cuts: list[int]) -> tuple[list[list[bytes]], str | None]:
    """Feed ``data`` cut at ``cuts``; once the parser reports an error it must yield nothing."""
    parser = RequestParser()
    commands: list[list[bytes]] = []
    previous = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if previous < cut <= len(data):
            failed_before = parser.error is not None
            got = parser.feed(data[previous:cut])
            assert not (failed_before and got), "commands after a protocol error"
            commands += got
            previous = cut
    return commands, parser.error


@st.composite
def cut_points(draw: st.DrawFn, size: int, boundaries: tuple[int, ...] = ()) -> list[int]:
    """Where to split a stream of ``size`` bytes: anywhere, every byte, runs of small reads, or
    a few bytes around request boundaries (a read then completes whole requests and ends
    inside the next one: the hiredis fast path hands over to the incremental parser)."""
    if size < 2:
        return []
    modes = ["anywhere", "every byte", "small reads"] + ["around requests"] * bool(boundaries)
    mode = draw(st.sampled_from(modes))
    if mode == "every byte" and size <= 3000:
        return list(range(1, size))
    if mode == "small reads":
        cuts, pos = [], 0
        while pos < size and len(cuts) < 400:
            pos += draw(st.integers(1, 40))
            cuts.append(pos)
        return cuts
    if mode == "around requests":
        near = st.tuples(st.sampled_from(boundaries), st.integers(-12, 12))
        return [max(1, min(size - 1, b + d)) for b, d in draw(st.lists(near, max_size=8))]
    return draw(st.lists(st.integers(1, size - 1), max_size=12))


def request_ends(requests: list[bytes]) -> tuple[int, ...]:
    """Offsets where each request of a pipeline ends."""
    ends, pos = [], 0
    for request in requests:
        pos += len(request)
        ends.append(pos)
    return tuple(ends)


# --- strategies ---------------------------------------------------------------------------------

#: A request above 64 KB: cut inside it, the parser is in large-request mode for what follows.
_BIG = multibulk([b"SET", b"big", b"z" * 100_000])

_TRICKY_ARGS = [b"", b"\r\n", b"\r", b"\n", b"\r\n*1\r\n$4\r\nPING\r\n", b"$-1", b"*-1\r\n",
                b"\x00", b"\xff\xfe", b"x\n$600000000", b"x\n*3000000000", b'"', b"'", b"\\"]

short_args = st.one_of(st.binary(max_size=24), st.sampled_from(_TRICKY_ARGS))
#: Mostly short, sometimes big: a value above 64 KB takes the parser's large-request mode.
args = st.one_of(
    short_args,
    short_args,
    short_args,
    st.integers(1_000, 140_000).map(lambda n: (b"v%d-" % n * 20000)[:n]),
)
commands = st.lists(st.lists(args, min_size=1, max_size=5), min_size=1, max_size=8)

inline_args = st.lists(st.binary(min_size=0, max_size=20), min_size=1, max_size=5)
quotes = st.lists(st.sampled_from(["bare", "double", "single"]), min_size=5, max_size=5)


@st.composite
def mixed_requests(draw: st.DrawFn) -> tuple[bytes, list[list[bytes]]]:
    """A pipeline of multibulk and inline requests, and the commands it holds."""
    stream, expected = [], []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            command = draw(st.lists(args, min_size=1, max_size=4))
            stream.append(multibulk(command))
        else:
            command = draw(inline_args)
            sep = draw(st.sampled_from([b" ", b"  ", b"\t", b" \t "]))
            eol = draw(st.sampled_from([b"\r\n", b"\n"]))
            stream.append(inline_line(command, draw(quotes), sep, eol))
        expected.append(command)
    return b"".join(stream), expected, request_ends(stream)


# --- properties: valid streams parse back exactly, however they are cut ---------------------------


@FAST
@given(cmds=commands, data=st.data())
@example(cmds=[[b"SET", b"k", b"x" * 70_000], [b"GET", b"k"]], data=None)
@example(  # hiredis completes the big request, the read ends 5 bytes into the next one
    cmds=[[b"SET", b"k", b"x" * 20_000], [b"GET", b"k"]], data=None
)
def test_multibulk_pipelines_parse_back_exactly(cmds, data):
    requests = [multibulk(c) for c in cmds]
    stream = b"".join(requests)
    ends = request_ends(requests)
    cuts = data.draw(cut_points(len(stream), ends)) if data is not None else [ends[0] + 5]
    assert feed_in_pieces(stream, cuts) == (cmds, None)


@FAST
@given(request=mixed_requests(), data=st.data())
@example(  # a large request finished by a read that also holds an inline request
    request=(_BIG + b"PING\r\n", [[b"SET", b"big", b"z" * 100_000], [b"PING"]], ()),
    data=None,
)
def test_inline_and_multibulk_pipelines_parse_back_exactly(request, data):
    stream, expected, ends = request
    cuts = data.draw(cut_points(len(stream), ends)) if data is not None else [40_000]
    assert feed_in_pieces(stream, cuts) == (expected, None)


_INLINE_TOKENS = [" ", "\t", "\v", "\r", "\0", '"', "'", "\\", "\\'", '\\"', "\\x41", "\\x4",
                  "\\xZZ", "\\n", "\\r", "\\t", "\\b", "\\a", "\\q", "a", "0f", "\xff"]
inline_lines = st.binary(max_size=40) | st.lists(
    st.sampled_from(_INLINE_TOKENS), max_size=16
).map(lambda tokens: "".join(tokens).encode("latin-1"))


@FAST
@given(line=inline_lines)
def test_inline_splitting_matches_sdssplitargs(line):
    line = b" " + line.replace(b"\n", b" ")  # one inline line, never taken for multibulk
    expected = ref_sdssplitargs(line)
    parser = RequestParser()
    got = parser.feed(line + b"\r\n")
    if expected is None:
        assert parser.error == "ERR Protocol error: unbalanced quotes in request"
    else:
        assert (got, parser.error) == ([expected] if expected else [], None)
        assert split_inline(line) == expected


# --- property: any bytes at all -------------------------------------------------------------------

_FRAGMENTS = [
    b"*", b"$", b"\r\n", b"\r", b"\n", b"\0", b" ", b'"', b"'", b"\\x4", b"PING", b"SET k v",
    b"*1\r\n", b"*2\r\n", b"*0\r\n", b"*-1\r\n", b"$3\r\nfoo\r\n", b"$-1\r\n", b"$0\r\n\r\n",
    b"*2000000000\r\n", b"*100000000\r\n", b"*1048577\r\n", b"*999999\r\n", b"$2000000000\r\n",
    b"$536870913\r\n", b"$99999999\r\n", b"*-9999999999999999999\r\n", b"$9223372036854775808\r\n",
    b":1\r\n", b"+OK\r\n", b"%1\r\n", b"$04\r\n", b"*01\r\n", b"*-0\r\n", b"$-0\r\n",
]


@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    """A valid pipeline with flipped, dropped, inserted and truncated bytes."""
    stream = bytearray(draw(mixed_requests())[0])
    for _ in range(draw(st.integers(1, 4))):
        if not stream:
            break
        at = draw(st.integers(0, len(stream) - 1))
        action = draw(st.sampled_from(["flip", "drop", "insert", "truncate"]))
        if action == "flip":
            stream[at] = draw(st.integers(0, 255))
        elif action == "drop":
            del stream[at : at + draw(st.integers(1, 8))]
        elif action == "insert":
            stream[at:at] = draw(st.sampled_from(_FRAGMENTS) | st.binary(max_size=6))
        else:
            del stream[at:]
    return bytes(stream)


any_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(_FRAGMENTS) | st.binary(max_size=6), max_size=20).map(b"".join),
    mutated_stream(),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from([b"", _BIG[:-5_000], _BIG]), stream=any_bytes, data=st.data())
@example(prefix=b"", stream=b"*-9999999999999999999\r\nPING\r\n", data=None)
@example(prefix=_BIG[:-5_000], stream=b"z" * 4998 + b"\r\nPING\r\n", data=None)
@example(prefix=_BIG[:-5_000], stream=b"z" * 4998 + b"\r\n*1\r\n$2000000000\r\n", data=None)
def test_any_bytes_yield_a_prefix_of_redis_commands_or_a_redis_error(prefix, stream, data):
    whole = prefix + stream
    cuts = [len(prefix)] + (data.draw(cut_points(len(whole))) if data is not None else [])
    got, error = feed_in_pieces(whole, cuts)
    expected, expected_error = reference_parse(whole)
    assert got == expected[: len(got)], "a command Redis would not run"
    if error is None:
        assert (got, expected_error) == (expected, None), "no error, yet commands went missing"
    else:
        assert REDIS_PROTOCOL_ERRORS.match(error), f"not a Redis error text: {error!r}"
        if expected_error is not None and got == expected and not _c_string_quirks(whole):
            assert error.split(", got")[0] == expected_error.split(", got")[0]


def _c_string_quirks(data: bytes) -> bool:
    """A NUL byte or a '\\r' not followed by '\\n': Redis's header search (``strchr`` for
    '\\r') then fails differently from shardis's, which refuses such a header at once."""
    return b"\0" in data or re.search(rb"\r(?!\n)", data) is not None


def test_the_reference_model_agrees_with_redis_on_known_cases():
    """Texts checked against redis-server 7.0.15 by hand (see tests/test_parser.py)."""
    assert reference_parse(b"*1\r\n$4\r\nPING\r\n*-1\r\nPING\r\n") == ([[b"PING"]] * 2, None)
    assert reference_parse(b"*1\rX$4\r\nPING\r\n") == ([[b"PING"]], None)
    assert reference_parse(b"*-0\r\n")[1] == "ERR Protocol error: invalid multibulk length"
    assert reference_parse(b"*1\r\n\x01\r\n")[1] == "ERR Protocol error: expected '$', got '\x01'"
    assert reference_parse(b'SET a "b\r\n')[1] == "ERR Protocol error: unbalanced quotes in request"
    assert reference_parse(b"*-9999999999999999999\r\n")[1].endswith("invalid multibulk length")


# --- memory: declared sizes allocate nothing ------------------------------------------------------

_GIANT_DECLARATIONS = [
    b"*2000000000\r\n",
    b"*2147483647\r\n",
    b"*1048576\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000000\r\nabc",
    b"*1\r\n*2000000000\r\n",
    b"*2\r\n$3\r\nGET\r\n*100000000\r\n",
]


def test_giant_declared_lengths_do_not_allocate():
    """Each giant declaration, alone and right after a large request, in a fresh child Python:
    its peak virtual size (VmPeak) must stay far below what one such declaration would map."""
    code = (
        "from shardis.resp import RequestParser\n"
        f"big, giants = {_BIG[:-100_002]!r} + b'z' * 100_000 + b'\\r\\n', {_GIANT_DECLARATIONS!r}\n"
        "cases = [[g] for g in giants] + [[big[:-5000], big[-5000:] + g * n]\n"
        "                                 for g in giants for n in (1, 2)]\n"
        "for feeds in cases:\n"
        "    parser = RequestParser()\n"
        "    for chunk in feeds:\n"
        "        parser.feed(chunk)\n"
        "    del parser\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmPeak')][0].split()[1])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-800:]
    peak_kb = int(result.stdout.split()[-1])
    assert peak_kb < 512 * 1024, f"VmPeak {peak_kb} kB"


# --- the reply encoder, checked by hiredis -------------------------------------------------------

_scalars = st.one_of(
    st.binary(max_size=30),
    st.binary(max_size=10).map(lambda b: Status(b.replace(b"\r", b"").replace(b"\n", b""))),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.just(NULL_ARRAY),
    st.binary(max_size=30).map(Verbatim),
    st.text(max_size=10).map(lambda t: ReplyError("ERR " + t.replace("\r", "").replace("\n", ""))),
)
_keys = st.one_of(st.binary(max_size=10), st.integers(-1000, 1000))


def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.lists(children, max_size=4).map(SetReply),
        st.lists(children, max_size=4).map(Push),
        st.dictionaries(_keys, children, max_size=4),
        st.lists(st.tuples(children, children), max_size=3).map(Pairs),
        children.map(lambda v: Raw(encode(v, 3))),
    )


replies = st.recursive(_scalars, _containers, max_leaves=20)


def expected_decoding(value: object, proto: int) -> object:
    """What hiredis returns for ``value`` encoded in RESP ``proto``, from the codec's table."""
    if isinstance(value, Raw):
        return _RAW_MARK  # compared separately: Raw replies are pre-encoded RESP3
    if value is None or value is NULL_ARRAY:
        return None
    if isinstance(value, bool):
        return value if proto == 3 else int(value)
    if isinstance(value, float):
        return value if proto == 3 else format_double(value)
    if isinstance(value, Verbatim):
        return value.text
    if isinstance(value, (Pairs)):
        if proto == 3:
            return [[expected_decoding(a, 3), expected_decoding(b, 3)] for a, b in value]
        return [expected_decoding(x, 2) for pair in value for x in pair]
    if isinstance(value, dict):
        if proto == 3:
            return {k: expected_decoding(v, 3) for k, v in value.items()}
        return [expected_decoding(x, 2) for kv in value.items() for x in kv]
    if isinstance(value, (list, tuple)):
        return [expected_decoding(x, proto) for x in value]
    if isinstance(value, ReplyError):
        return ("error", value.message)
    return value  # bytes, Status (bytes), int


_RAW_MARK = object()


def normalise(decoded: object, expected: object) -> object:
    """hiredis's value, shaped for comparison with :func:`expected_decoding` (Raw left alone)."""
    if expected is _RAW_MARK:
        return _RAW_MARK
    if isinstance(decoded, hiredis.ReplyError):
        return ("error", str(decoded))
    if isinstance(decoded, list) and isinstance(expected, list) and len(decoded) == len(expected):
        return [normalise(d, e) for d, e in zip(decoded, expected)]
    if isinstance(decoded, dict) and isinstance(expected, dict):
        return {k: normalise(v, expected.get(k)) for k, v in decoded.items()}
    return decoded


@settings(max_examples=400, deadline=None)
@given(value=replies, proto=st.sampled_from([2, 3]))
@example(value={b"k": [1.5, Verbatim(b"x\r\ny")]}, proto=3)
def test_encoded_replies_decode_back_with_hiredis(value, proto):
    reader = hiredis.Reader()
    reader.feed(encode(value, proto))
    decoded = reader.gets()
    expected = expected_decoding(value, proto)
    assert normalise(decoded, expected) == expected
    assert reader.gets() is False and not reader.has_data(), "bytes left over after one reply"
