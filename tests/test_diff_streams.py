"""Differential corpus: stream commands (XADD, XRANGE, XREVRANGE, XLEN, XDEL, XTRIM and
non-blocking XREAD) byte for byte against real Redis 7.0, in RESP2 and RESP3.

Explicit IDs make most replies deterministic.  Auto-generated IDs (``*``) depend on the clock:
those steps compare replies with the IDs masked (:func:`ids_masked`).
Approximate trimming (``~``) removes whole listpack nodes in Redis; shardis models the nodes,
and the scripts below check the node boundaries with small entries (100 per node).
"""

from __future__ import annotations

import re

from tests.differential import check, normalized, parametrize, script
from tests.test_atomicity import keys_on_distinct_workers

#: Two stream keys on two different shardis workers (XREAD gathers across workers).
A, B = keys_on_distinct_workers(2)
U64 = "18446744073709551615"

_ID = re.compile(rb"\$\d+\r\n\d+-\d+\r\n")


def ids_masked(raw: bytes) -> bytes:
    """The reply with every bulk-string stream ID replaced by ``T-S``: auto-generated IDs
    differ between the servers (the clock; and the sequence, 0 or more, depends on whether two
    XADDs fell in the same millisecond); the rest of the reply must not."""
    return _ID.sub(b"$?\r\nT-S\r\n", raw)


def many(key: str, count: int, start: int = 1) -> list:
    """XADD steps for entries ``n-1`` (field ``f``, value ``n``): explicit IDs, so replies and
    node boundaries are the same on both servers."""
    return [["XADD", key, f"{n}-1", "f", str(n)] for n in range(start, start + count)]


SCRIPTS = [
    script(
        "xadd_explicit_ids",
        ["XADD", "s", "1-1", "a", "1"],
        ["XADD", "s", "1-1", "a", "1"],
        ["XADD", "s", "1-0", "a", "1"],
        ["XADD", "s", "1-*", "b", "2"],
        ["XADD", "s", "2", "c", "3"],
        ["XADD", "s", "2-*", "c", "3"],
        ["XADD", "s", "1-*", "c", "3"],
        ["XADD", "s", "0-0", "c", "3"],
        ["XADD", "new", "0-*", "c", "3"],
        ["XADD", "zero", "0-0", "c", "3"],
        ["EXISTS", "zero"],
        ["XADD", "s", "3-1", "f1", "v1", "f2", "v2", "f1", "v3"],
        ["XRANGE", "s", "-", "+"],
        ["XLEN", "s"],
        ["TYPE", "s"],
        ["OBJECT", "ENCODING", "s"],
    ),
    script(
        "xadd_errors",
        ["XADD", "s", "1-1", "a"],
        ["XADD", "s", "1-1", "a", "1", "b"],
        ["XADD", "s", "abc", "a", "1"],
        ["XADD", "s", "1-x", "a", "1"],
        ["XADD", "s", "-", "a", "1"],
        ["XADD", "s", "+", "a", "1"],
        ["XADD", "s", "-1", "a", "1"],
        ["XADD", "s", "1--1", "a", "1"],
        ["XADD", "s", "18446744073709551616-1", "a", "1"],
        ["XADD", "s", "MAXLEN", "-1", "*", "a", "1"],
        ["XADD", "s", "MAXLEN", "x", "*", "a", "1"],
        ["XADD", "s", "MAXLEN", "1", "MINID", "1", "*", "a", "1"],
        ["XADD", "s", "LIMIT", "10", "*", "a", "1"],
        ["XADD", "s", "MAXLEN", "1", "LIMIT", "10", "*", "a", "1"],
        ["XADD", "s", "MAXLEN", "~", "1", "LIMIT", "-1", "*", "a", "1"],
        ["XADD", "s", "MINID", "+", "*", "a", "1"],
        ["XADD", "s", "NOMKSTREAM", "*", "a", "1"],
        ["EXISTS", "s"],
        ["XADD", "s", "NOMKSTREAM"],
        ["XADD", "s", "*"],
        ["SET", "str", "x"],
        ["XADD", "str", "1-1", "a", "1"],
        ["XADD", "s", f"{U64}-{U64}", "a", "1"],
        ["XADD", "s", "*", "a", "1"],
        ["XADD", "s", f"{U64}-*", "a", "1"],
        ["XLEN", "s"],
    ),
    script(
        "xadd_auto_ids",
        normalized(ids_masked, "XADD", "s", "*", "a", "1"),
        normalized(ids_masked, "XADD", "s", "MAXLEN", "1", "*", "b", "2"),
        ["XLEN", "s"],
        normalized(ids_masked, "XRANGE", "s", "-", "+"),
        ["XADD", "t", "5-5", "a", "1"],
        ["XADD", "t", "5-*", "a", "1"],
        ["XADD", "t", "4-*", "a", "1"],
    ),
    script(
        "xadd_trimming",
        *many("s", 10),
        ["XADD", "s", "MAXLEN", "5", "11-1", "f", "11"],
        ["XLEN", "s"],
        ["XRANGE", "s", "-", "+", "COUNT", "1"],
        ["XADD", "s", "MAXLEN", "~", "2", "12-1", "f", "12"],
        ["XLEN", "s"],
        ["XADD", "s", "MINID", "9", "13-1", "f", "13"],
        ["XRANGE", "s", "-", "+"],
        ["XADD", "s", "MAXLEN", "=", "0", "14-1", "f", "14"],
        ["XLEN", "s"],
        ["EXISTS", "s"],
        ["XADD", "s", "14-1", "f", "x"],
        ["XADD", "s", "15-1", "f", "15"],
    ),
    script(
        "xadd_approximate_nodes",
        *many("s", 250),
        ["XADD", "s", "MAXLEN", "~", "120", "251-1", "f", "251"],
        ["XLEN", "s"],
        ["XRANGE", "s", "-", "+", "COUNT", "1"],
        ["XTRIM", "s", "MAXLEN", "~", "10"],
        ["XLEN", "s"],
        ["XTRIM", "s", "MINID", "~", "230"],
        ["XTRIM", "s", "MINID", "~", "260"],
        ["XLEN", "s"],
    ),
    script(
        "xtrim",
        *many("s", 20),
        ["XTRIM", "s", "MAXLEN", "15"],
        ["XTRIM", "s", "MAXLEN", "=", "12"],
        ["XTRIM", "s", "MINID", "15"],
        ["XTRIM", "s", "MINID", "=", "16-1"],
        ["XTRIM", "s", "MAXLEN", "~", "1"],
        ["XTRIM", "s", "MAXLEN", "~", "1", "LIMIT", "2"],
        ["XTRIM", "s", "MAXLEN", "~", "1", "LIMIT", "0"],
        ["XLEN", "s"],
        ["XTRIM", "s"],
        ["XTRIM", "s", "FOO", "1"],
        ["XTRIM", "s", "MAXLEN", "1", "LIMIT", "1"],
        ["XTRIM", "s", "MAXLEN", "-1"],
        ["XTRIM", "s", "MINID", "x"],
        ["XTRIM", "missing", "MAXLEN", "1"],
        ["XTRIM", "missing", "MAXLEN", "x"],
        ["SET", "str", "x"],
        ["XTRIM", "str", "MAXLEN", "1"],
        ["XTRIM", "s", "MAXLEN", "0"],
        ["XLEN", "s"],
        ["EXISTS", "s"],
    ),
    script(
        "xdel",
        *many("s", 5),
        ["XDEL", "s", "2-1", "2-1", "4-1", "9-9"],
        ["XDEL", "s", "x"],
        ["XDEL", "s", "1-1", "x"],
        ["XRANGE", "s", "-", "+"],
        ["XDEL", "missing", "x"],
        ["XDEL", "s", "1-1", "3-1", "5-1"],
        ["XLEN", "s"],
        ["EXISTS", "s"],
        ["XADD", "s", "5-1", "f", "again"],
        ["XADD", "s", "6", "f", "again"],
        ["XRANGE", "s", "-", "+"],
        ["SET", "str", "x"],
        ["XDEL", "str", "1-1"],
    ),
    script(
        "xrange_xrevrange",
        *many("s", 6),
        ["XADD", "s", "3-2", "g", "x"],
        ["XRANGE", "s", "-", "+"],
        ["XRANGE", "s", "2", "3"],
        ["XRANGE", "s", "2-1", "3-1"],
        ["XRANGE", "s", "(2-1", "(3-2"],
        ["XRANGE", "s", "(2", "+"],
        ["XRANGE", "s", "-", "+", "COUNT", "2"],
        ["XRANGE", "s", "-", "+", "COUNT", "0"],
        ["XRANGE", "s", "-", "+", "COUNT", "-5"],
        ["XRANGE", "s", "-", "+", "COUNT", "x"],
        ["XRANGE", "s", "-", "+", "COUNT"],
        ["XRANGE", "s", "-", "+", "FOO", "1"],
        ["XRANGE", "s", "5", "2"],
        ["XRANGE", "s", "(-", "+"],
        ["XRANGE", "s", "(", "+"],
        ["XRANGE", "s", f"({U64}-{U64}", "+"],
        ["XRANGE", "s", "-", "(0-0"],
        ["XRANGE", "s", "x", "+"],
        ["XREVRANGE", "s", "+", "-"],
        ["XREVRANGE", "s", "+", "-", "COUNT", "1"],
        ["XREVRANGE", "s", "3", "2"],
        ["XREVRANGE", "s", "(4-1", "(1-1", "COUNT", "2"],
        ["XREVRANGE", "s", "-", "+"],
        ["XRANGE", "missing", "-", "+"],
        ["XRANGE", "missing", "-", "+", "COUNT", "0"],
        ["XREVRANGE", "missing", "+", "-"],
        ["SET", "str", "x"],
        ["XRANGE", "str", "-", "+"],
        ["XLEN", "str"],
        ["XLEN", "missing"],
    ),
    script(
        "xread_nonblocking",
        ["XADD", A, "1-1", "a", "1"],
        ["XADD", A, "2-1", "a", "2"],
        ["XADD", B, "1-5", "b", "1"],
        ["XREAD", "STREAMS", A, "0"],
        ["XREAD", "STREAMS", A, "1-1"],
        ["XREAD", "STREAMS", A, "2-1"],
        ["XREAD", "STREAMS", A, "$"],
        ["XREAD", "COUNT", "1", "STREAMS", A, "0-0"],
        ["XREAD", "COUNT", "-1", "STREAMS", A, "0-0"],
        ["XREAD", "STREAMS", A, B, "0", "0"],
        ["XREAD", "STREAMS", B, A, "0", "1-1"],
        ["XREAD", "STREAMS", A, B, "$", "1-4"],
        ["XREAD", "COUNT", "1", "STREAMS", A, B, "0", "0"],
        ["XREAD", "STREAMS", "missing", "0"],
        ["XREAD", "STREAMS", "missing", "$"],
        ["XREAD", "BLOCK", "10", "STREAMS", A, "0"],
    ),
    script(
        "xread_errors",
        ["XADD", "s", "1-1", "a", "1"],
        ["SET", "str", "x"],
        ["XREAD", "STREAMS", "s"],
        ["XREAD", "STREAMS", "s", "t", "0"],
        ["XREAD", "COUNT", "1", "s", "0"],
        ["XREAD", "COUNT", "x", "STREAMS", "s", "0"],
        ["XREAD", "BLOCK", "x", "STREAMS", "s", "0"],
        ["XREAD", "BLOCK", "-1", "STREAMS", "s", "0"],
        ["XREAD", "BLOCK", "1.5", "STREAMS", "s", "0"],
        ["XREAD", "GROUP", "g", "c", "STREAMS", "s", "0"],
        ["XREAD", "NOACK", "STREAMS", "s", "0"],
        ["XREAD", "FOO", "STREAMS", "s", "0"],
        ["XREAD", "COUNT", "1", "BLOCK"],
        ["XREAD", "STREAMS", "s", "x"],
        ["XREAD", "STREAMS", "s", ">"],
        ["XREAD", "STREAMS", "s", "-"],
        ["XREAD", "STREAMS", "str", "0"],
        ["XREAD", "STREAMS", "s", "str", "0", "x"],
        ["XREAD", "STREAMS", "str", "s", "x", "0"],
        ["XREAD", "s"],
    ),
    script(
        "stream_keys",
        ["XADD", "s", "1-1", "a", "1"],
        ["RENAME", "s", "r"],
        ["XRANGE", "r", "-", "+"],
        ["COPY", "r", "c"],
        ["XADD", "c", "2-1", "b", "2"],
        ["XLEN", "r"],
        ["XLEN", "c"],
        ["XADD", "c", "1-5", "b", "2"],
        ["TYPE", "c"],
        ["GET", "c"],
        ["LPUSH", "c", "x"],
        ["DEL", "c"],
        ["SCAN", "0", "TYPE", "stream"],
    ),
]


@parametrize(SCRIPTS)
def test_streams(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
