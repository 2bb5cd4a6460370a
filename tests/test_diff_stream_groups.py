"""Differential corpus: stream consumer groups (XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM,
XAUTOCLAIM), XINFO and XSETID, byte for byte against real Redis 7.0.15, in RESP2 and RESP3.

Explicit IDs make replies deterministic, except the clock's share: delivery times, consumers'
seen times and idle times.  Those steps compare replies with the clock masked
(:func:`clock_masked`: every 13-digit integer, a Unix time in ms, becomes ``T``;
:func:`idle_masked`: the small idle times of XPENDING and XINFO CONSUMERS).  ``A`` and ``B``
live on two different shardis workers; ``{t}a``/``{t}b`` share one.
"""

from __future__ import annotations

import random
import re

from tests.differential import check, normalized, parametrize, script, sleep
from tests.test_atomicity import keys_on_distinct_workers

A, B = keys_on_distinct_workers(2)
U64 = "18446744073709551615"

_CLOCK = re.compile(rb":\d{13}\r\n")
_IDLE = re.compile(rb"(\$4\r\nidle\r\n|\+idle\r\n):\d+\r\n")


def clock_masked(raw: bytes) -> bytes:
    """The reply with each Unix time in milliseconds (an integer of 13 digits) masked."""
    return _CLOCK.sub(b":T\r\n", raw)


def idle_masked(raw: bytes) -> bytes:
    """XINFO CONSUMERS with the ``idle`` values masked (ms since the consumer was seen)."""
    return _IDLE.sub(lambda m: m.group(1) + b":I\r\n", raw)


_PENDING_ENTRY = re.compile(rb"(\*4\r\n\$\d+\r\n\d+-\d+\r\n\$\d+\r\n[^\r]*\r\n):\d+\r\n")


def pending_idle_masked(raw: bytes) -> bytes:
    """Extended XPENDING with each entry's idle time (its third element) masked."""
    return _PENDING_ENTRY.sub(lambda m: m.group(1) + b":I\r\n", raw)


def entries(key: str, count: int, start: int = 1) -> list:
    return [["XADD", key, f"{n}-1", "f", str(n)] for n in range(start, start + count)]


def full(key: str, *extra: str):
    return normalized(clock_masked, "XINFO", "STREAM", key, "FULL", *extra)


SCRIPTS = [
    script(
        "xgroup_create",
        ["XGROUP", "CREATE", "s", "g", "$"],
        ["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"],
        ["TYPE", "s"],
        ["XLEN", "s"],
        ["XGROUP", "CREATE", "s", "g", "$"],
        ["XADD", "s", "1-1", "a", "1"],
        ["XGROUP", "CREATE", "s", "g2", "0"],
        ["XGROUP", "CREATE", "s", "g3", "$", "ENTRIESREAD", "1"],
        ["XGROUP", "CREATE", "s", "g4", "0-1", "MKSTREAM", "ENTRIESREAD", "-1"],
        ["XGROUP", "CREATE", "s", "g5", "0", "ENTRIESREAD", "-2"],
        ["XGROUP", "CREATE", "s", "g5", "0", "ENTRIESREAD", "x"],
        ["XGROUP", "CREATE", "s", "g5", "0", "ENTRIESREAD"],
        ["XGROUP", "CREATE", "s", "g5", "0", "FOO"],
        ["XGROUP", "CREATE", "s", "g5", "x"],
        ["XGROUP", "CREATE", "s", "g5", "-"],
        ["XGROUP", "CREATE", "s", "g5", "+"],
        ["XGROUP", "CREATE", "s", "g5", "0", "MKSTREAM", "MKSTREAM", "MKSTREAM", "MKSTREAM"],
        ["XGROUP", "CREATE", "nokey", "g", "x", "MKSTREAM"],
        ["EXISTS", "nokey"],
        ["XGROUP", "CREATE", "s"],
        ["XGROUP", "CREATE", "s", "g"],
        ["XGROUP", "FOO", "s", "g"],
        ["XGROUP"],
        ["SET", "str", "x"],
        ["XGROUP", "CREATE", "str", "g", "$"],
        ["XGROUP", "CREATE", "str", "g", "$", "MKSTREAM"],
        ["XINFO", "GROUPS", "s"],
    ),
    script(
        "xgroup_setid_destroy_consumers",
        ["XADD", "s", "1-1", "a", "1"],
        ["XADD", "s", "2-1", "a", "2"],
        ["XGROUP", "SETID", "s", "g", "0"],
        ["XGROUP", "SETID", "nokey", "g", "0"],
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XGROUP", "SETID", "s", "g", "1-1"],
        ["XINFO", "GROUPS", "s"],
        ["XGROUP", "SETID", "s", "g", "$", "ENTRIESREAD", "2"],
        ["XINFO", "GROUPS", "s"],
        ["XGROUP", "SETID", "s", "g", "-"],
        ["XINFO", "GROUPS", "s"],
        ["XGROUP", "SETID", "s", "g", "+"],
        ["XINFO", "GROUPS", "s"],
        ["XGROUP", "SETID", "s", "g", "x"],
        ["XGROUP", "SETID", "s", "g", "0", "MKSTREAM"],
        ["XGROUP", "SETID", "s", "g", "0", "ENTRIESREAD", "1", "X"],
        ["XGROUP", "SETID", "s", "g", "0", "ENTRIESREAD", "1", "ENTRIESREAD", "2"],
        ["XGROUP", "CREATECONSUMER", "s", "g", "c"],
        ["XGROUP", "CREATECONSUMER", "s", "g", "c"],
        ["XGROUP", "CREATECONSUMER", "s", "nog", "c"],
        ["XGROUP", "CREATECONSUMER", "nokey", "g", "c"],
        ["XGROUP", "CREATECONSUMER", "s", "g"],
        ["XGROUP", "CREATECONSUMER", "s", "g", "c", "x"],
        ["XGROUP", "DELCONSUMER", "s", "g", "nobody"],
        ["XGROUP", "DELCONSUMER", "s", "nog", "c"],
        ["XGROUP", "SETID", "s", "g", "0"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
        ["XGROUP", "DELCONSUMER", "s", "g", "c"],
        ["XPENDING", "s", "g"],
        ["XGROUP", "DESTROY", "s", "g"],
        ["XGROUP", "DESTROY", "s", "g"],
        ["XGROUP", "DESTROY", "nokey", "g"],
        ["XGROUP", "DESTROY", "s"],
        ["XINFO", "GROUPS", "s"],
    ),
    script(
        "xgroup_help",
        ["XGROUP", "HELP"],
        ["XGROUP", "HELP", "x"],
        ["XINFO", "HELP"],
        ["XINFO", "HELP", "x"],
        ["XINFO", "FOO"],
        ["XINFO", "FOO", "s"],
    ),
    script(
        "xreadgroup_basics",
        *entries("s", 3),
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XREADGROUP", "GROUP", "g", "alice", "COUNT", "1", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "0"],
        ["XREADGROUP", "GROUP", "g", "bob", "COUNT", "1", "STREAMS", "s", "0"],
        ["XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", "2-1"],
        ["XREADGROUP", "GROUP", "g", "carol", "STREAMS", "s", "0"],
        ["XPENDING", "s", "g"],
        ["XACK", "s", "g", "1-1", "9-9"],
        ["XACK", "s", "g", "1-1"],
        ["XACK", "s", "nog", "1-1"],
        ["XACK", "nokey", "g", "1-1"],
        ["XACK", "s", "g", "2-1", "x"],
        ["XPENDING", "s", "g"],
        ["XDEL", "s", "2-1"],
        ["XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", "0"],
        ["XADD", "s", "4-1", "f", "4"],
        ["XREADGROUP", "GROUP", "g", "dave", "NOACK", "STREAMS", "s", ">"],
        ["XPENDING", "s", "g"],
        ["XINFO", "GROUPS", "s"],
        normalized(idle_masked, "XINFO", "CONSUMERS", "s", "g"),
        full("s"),
    ),
    script(
        "xreadgroup_errors",
        ["XADD", "s", "1-1", "a", "1"],
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "x", ">"],
        ["XREADGROUP", "STREAMS", "s", ">", "x", "y"],
        ["XREADGROUP", "COUNT", "1", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "nokey", ">"],
        ["XREADGROUP", "GROUP", "nog", "c", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "$"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "x"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "-"],
        ["XREADGROUP", "GROUP", "g", "c", "COUNT", "x", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "-1", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "x", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "FOO", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "NOACK"],
        ["XREADGROUP", "GROUP", "g", "STREAMS", "s", ">"],
        ["XREAD", "GROUP", "g", "c", "STREAMS", "s", ">"],
        ["XREAD", "NOACK", "STREAMS", "s", ">"],
        ["SET", "str", "x"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "str", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "str", ">", ">"],
        ["XPENDING", "s", "g"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "nokey", ">", ">"],
        ["XPENDING", "s", "g"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "s", ">", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", f"{U64}-{U64}"],
    ),
    script(
        "xreadgroup_several_workers",
        ["XADD", A, "1-1", "a", "1"],
        ["XADD", B, "1-2", "b", "1"],
        ["XADD", B, "1-3", "b", "2"],
        ["XGROUP", "CREATE", A, "g", "0"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", A, B, ">", ">"],
        ["XPENDING", A, "g"],
        ["XGROUP", "CREATE", B, "g", "0"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", B, A, ">", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", B, A, "0", "0"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", A, B, ">", "x"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", A, B, ">", "$"],
        ["XADD", A, "2-1", "a", "2"],
        ["XREADGROUP", "GROUP", "g", "d", "STREAMS", B, A, ">", ">"],
        ["XREADGROUP", "GROUP", "g", "d", "NOACK", "STREAMS", A, B, ">", ">"],
        ["XPENDING", A, "g"],
        ["XPENDING", B, "g"],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", A, B, ">", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", "{t}a", "{t}b", ">", ">"],
        ["XREAD", "BLOCK", "10", "STREAMS", A, B, "$", "$"],
        ["XREAD", "BLOCK", "10", "STREAMS", A, B, "0", "$"],
        ["XREADGROUP", "GROUP", "nog", "c", "BLOCK", "10", "STREAMS", A, B, ">", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", A, B, ">", "$"],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", A, B, "0", ">"],
        ["XADD", A, "3-1", "a", "3"],
        ["XADD", B, "3-1", "b", "3"],
        ["MULTI"],
        ["XREADGROUP", "GROUP", "g", "m", "BLOCK", "0", "STREAMS", A, B, ">", ">"],
        ["XREADGROUP", "GROUP", "g", "m", "BLOCK", "0", "STREAMS", A, B, ">", ">"],
        ["XREADGROUP", "GROUP", "g", "m", "STREAMS", A, B, "0", "x"],
        ["XREAD", "BLOCK", "0", "STREAMS", A, B, "$", "$"],
        ["EXEC"],
        ["XPENDING", A, "g"],
        ["XPENDING", B, "g"],
    ),
    script(
        "xreadgroup_entries_read_and_lag",
        *entries("s", 5),
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XGROUP", "CREATE", "s", "h", "$"],
        ["XGROUP", "CREATE", "s", "i", "2-1"],
        ["XINFO", "GROUPS", "s"],
        ["XREADGROUP", "GROUP", "g", "c", "COUNT", "2", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "i", "c", "COUNT", "1", "STREAMS", "s", ">"],
        ["XINFO", "GROUPS", "s"],
        ["XDEL", "s", "4-1"],
        ["XINFO", "GROUPS", "s"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
        ["XINFO", "GROUPS", "s"],
        ["XADD", "s", "6-1", "f", "6"],
        ["XINFO", "GROUPS", "s"],
        ["XTRIM", "s", "MAXLEN", "2"],
        ["XINFO", "GROUPS", "s"],
        ["XDEL", "s", "1-1"],
        ["XDEL", "s", "5-1", "6-1"],
        ["XINFO", "GROUPS", "s"],
        ["XINFO", "STREAM", "s"],
        ["XGROUP", "SETID", "s", "h", "0", "ENTRIESREAD", "0"],
        ["XINFO", "GROUPS", "s"],
        ["XSETID", "s", "9-9", "ENTRIESADDED", "100", "MAXDELETEDID", "7-7"],
        ["XINFO", "GROUPS", "s"],
        ["XINFO", "STREAM", "s"],
    ),
    script(
        "xpending_forms",
        *entries("s", 4),
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XPENDING", "s", "g"],
        ["XPENDING", "s", "g", "-", "+", "10"],
        ["XREADGROUP", "GROUP", "g", "b", "COUNT", "2", "STREAMS", "s", ">"],
        ["XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">"],
        ["XPENDING", "s", "g"],
        normalized(pending_idle_masked, "XPENDING", "s", "g", "-", "+", "10"),
        normalized(pending_idle_masked, "XPENDING", "s", "g", "-", "+", "2"),
        normalized(pending_idle_masked, "XPENDING", "s", "g", "(1-1", "(4-1", "10"),
        normalized(pending_idle_masked, "XPENDING", "s", "g", "2", "3", "10", "a"),
        normalized(pending_idle_masked, "XPENDING", "s", "g", "-", "+", "10", "b"),
        ["XPENDING", "s", "g", "-", "+", "10", "nobody"],
        ["XPENDING", "s", "g", "-", "+", "0"],
        ["XPENDING", "s", "g", "-", "+", "-5"],
        ["XPENDING", "s", "g", "IDLE", "1000000", "-", "+", "10"],
        normalized(pending_idle_masked, "XPENDING", "s", "g", "IDLE", "0", "-", "+", "10"),
        ["XPENDING", "s", "g", "IDLE", "x", "-", "+", "10"],
        ["XPENDING", "s", "g", "IDLE", "10", "-", "+"],
        ["XPENDING", "s", "g", "-", "+"],
        ["XPENDING", "s", "g", "-"],
        ["XPENDING", "s", "g", "-", "+", "x"],
        ["XPENDING", "s", "g", "x", "+", "10"],
        ["XPENDING", "s", "g", "-", "x", "10"],
        ["XPENDING", "s", "g", "(-", "+", "10"],
        ["XPENDING", "s", "g", f"({U64}-{U64}", "+", "10"],
        ["XPENDING", "s", "g", "-", "(0-0", "10"],
        normalized(pending_idle_masked, "XPENDING", "s", "g", "-", "+", "10", "a", "extra"),
        ["XPENDING", "s", "g", "-", "+", "10", "a", "b", "c", "d"],
        ["XPENDING", "s", "nog"],
        ["XPENDING", "nokey", "g"],
        ["XPENDING", "nokey", "g", "-", "+", "x"],
        ["SET", "str", "x"],
        ["XPENDING", "str", "g"],
    ),
    script(
        "xclaim_forms",
        *entries("s", 4),
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">"],
        ["XCLAIM", "s", "g", "b", "0", "1-1"],
        ["XCLAIM", "s", "g", "b", "1000000", "2-1"],
        ["XCLAIM", "s", "g", "b", "0", "2-1", "JUSTID"],
        ["XCLAIM", "s", "g", "b", "0", "3-1", "9-9", "TIME", "1000", "RETRYCOUNT", "7"],
        full("s"),
        ["XCLAIM", "s", "g", "c", "0", "4-1", "IDLE", "5000", "JUSTID"],
        normalized(pending_idle_masked, "XPENDING", "s", "g", "-", "+", "10"),
        ["XCLAIM", "s", "g", "c", "0", "4-1", "IDLE", "-5", "RETRYCOUNT", "0", "JUSTID"],
        ["XACK", "s", "g", "1-1"],
        ["XCLAIM", "s", "g", "d", "0", "1-1"],
        ["XCLAIM", "s", "g", "d", "0", "1-1", "FORCE"],
        ["XCLAIM", "s", "g", "d", "0", "9-9", "FORCE"],
        ["XDEL", "s", "2-1"],
        ["XCLAIM", "s", "g", "d", "0", "2-1", "3-1", "JUSTID"],
        ["XCLAIM", "s", "g", "d", "0", "3-1", "LASTID", "8-8", "JUSTID", "TIME", "2000"],
        ["XINFO", "GROUPS", "s"],
        ["XCLAIM", "s", "g", "d", "0", "LASTID", "9-1"],
        ["XINFO", "GROUPS", "s"],
        full("s"),
        ["XCLAIM", "s", "g", "d", "x", "1-1"],
        ["XCLAIM", "s", "g", "d", "-100", "1-1", "JUSTID"],
        ["XCLAIM", "s", "g", "d", "0", "1-1", "IDLE", "x"],
        ["XCLAIM", "s", "g", "d", "0", "1-1", "TIME", "x"],
        ["XCLAIM", "s", "g", "d", "0", "1-1", "RETRYCOUNT", "x"],
        ["XCLAIM", "s", "g", "d", "0", "1-1", "LASTID", "x"],
        ["XCLAIM", "s", "g", "d", "0", "1-1", "BOGUS"],
        ["XCLAIM", "s", "g", "d", "0", "-"],
        ["XCLAIM", "s", "g", "d", "0", "1-1", "IDLE"],
        ["XCLAIM", "s", "nog", "d", "x", "1-1"],
        ["XCLAIM", "nokey", "g", "d", "0", "1-1"],
        ["XCLAIM", "s", "g", "d", "0"],
        ["SET", "str", "x"],
        ["XCLAIM", "str", "g", "d", "0", "1-1"],
    ),
    script(
        "xautoclaim_forms",
        *entries("s", 6),
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">"],
        ["XAUTOCLAIM", "s", "g", "b", "0", "0", "COUNT", "2"],
        ["XAUTOCLAIM", "s", "g", "b", "0", "(2-1", "COUNT", "1", "JUSTID"],
        ["XAUTOCLAIM", "s", "g", "b", "1000000", "0"],
        ["XDEL", "s", "4-1", "5-1"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "3-1", "COUNT", "2"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "0"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "0", "JUSTID"],
        full("s"),
        ["XAUTOCLAIM", "s", "g", "c", "x", "0"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "x"],
        ["XAUTOCLAIM", "s", "g", "c", "0", f"({U64}-{U64}"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "0", "COUNT", "0"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "0", "COUNT", "x"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "0", "COUNT", "576460752303423488"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "0", "COUNT"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "0", "FOO"],
        ["XAUTOCLAIM", "s", "nog", "c", "0", "0"],
        ["XAUTOCLAIM", "nokey", "g", "c", "0", "0"],
        ["XAUTOCLAIM", "nokey", "g", "c", "x", "0"],
        ["SET", "str", "x"],
        ["XAUTOCLAIM", "str", "g", "c", "0", "0"],
    ),
    script(
        "xautoclaim_attempts_limit",
        *entries("s", 30),
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XREADGROUP", "GROUP", "g", "a", "COUNT", "25", "STREAMS", "s", ">"],
        ["XCLAIM", "s", "g", "a", "0", "1-1", "2-1", "JUSTID", "TIME", "1"],
        ["XAUTOCLAIM", "s", "g", "b", "1000000", "0", "COUNT", "1", "JUSTID"],
        ["XAUTOCLAIM", "s", "g", "b", "1000000", "3-1", "COUNT", "1", "JUSTID"],
        ["XAUTOCLAIM", "s", "g", "b", "1000000", "13-1", "COUNT", "1", "JUSTID"],
    ),
    script(
        "xinfo_stream",
        ["XINFO", "STREAM", "nokey"],
        ["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"],
        ["XINFO", "STREAM", "s"],
        full("s"),
        *entries("s", 3),
        ["XINFO", "STREAM", "s"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
        full("s"),
        full("s", "COUNT", "1"),
        full("s", "COUNT", "0"),
        full("s", "COUNT", "-3"),
        ["XINFO", "STREAM", "s", "FULL", "COUNT"],
        ["XINFO", "STREAM", "s", "FULL", "COUNT", "x"],
        ["XINFO", "STREAM", "s", "FULL", "FOO", "1"],
        ["XINFO", "STREAM", "s", "FOO"],
        ["XINFO", "STREAM", "s", "FULL", "COUNT", "1", "x"],
        ["XINFO", "STREAM"],
        ["XDEL", "s", "1-1", "2-1", "3-1"],
        ["XINFO", "STREAM", "s"],
        ["XINFO", "CONSUMERS", "s", "nog"],
        ["XINFO", "CONSUMERS", "nokey", "g"],
        ["XINFO", "GROUPS", "nokey"],
        ["SET", "str", "x"],
        ["XINFO", "STREAM", "str"],
        ["XINFO", "GROUPS", "str"],
        ["XINFO", "CONSUMERS", "str", "g"],
    ),
    script(
        "xinfo_radix_tree",
        *entries("s", 150),
        ["XINFO", "STREAM", "s"],
        *entries("s", 150, 151),
        ["XINFO", "STREAM", "s"],
        ["XTRIM", "s", "MAXLEN", "~", "120"],
        ["XINFO", "STREAM", "s"],
        ["XADD", "t", "1-1", "f", "x" * 5000],
        ["XADD", "t", "1-2", "f", "x" * 5000],
        ["XADD", "t", "1-3", "f", "x" * 5000],
        ["XADD", "t", "256-0", "f", "x" * 5000],
        ["XADD", "t", "65536-0", "f", "x" * 5000],
        ["XINFO", "STREAM", "t"],
        ["XDEL", "t", "1-2"],
        ["XINFO", "STREAM", "t"],
        ["XDEL", "t", "1-1", "1-3"],
        ["XINFO", "STREAM", "t"],
        ["XDEL", "t", "256-0", "65536-0"],
        ["XINFO", "STREAM", "t"],
    ),
    script(
        "xsetid_forms",
        ["XSETID", "nokey", "1-1"],
        ["XADD", "s", "5-5", "a", "1"],
        ["XSETID", "s", "5-4"],
        ["XSETID", "s", "5-5"],
        ["XSETID", "s", "9"],
        ["XINFO", "STREAM", "s"],
        ["XSETID", "s", "10-0", "ENTRIESADDED", "0"],
        ["XSETID", "s", "10-0", "ENTRIESADDED", "-1"],
        ["XSETID", "s", "10-0", "ENTRIESADDED", "x"],
        ["XSETID", "s", "10-0", "MAXDELETEDID", "11-0"],
        ["XSETID", "s", "10-0", "MAXDELETEDID", "x"],
        ["XSETID", "s", "10-0", "FOO", "1"],
        ["XSETID", "s", "10-0", "ENTRIESADDED"],
        ["XSETID", "s", "x"],
        ["XSETID", "s", "-"],
        ["XSETID", "s", "10-0", "ENTRIESADDED", "7", "MAXDELETEDID", "3-3"],
        ["XINFO", "STREAM", "s"],
        ["XADD", "s", "9-9", "a", "1"],
        ["XADD", "s", "10-1", "a", "1"],
        ["XDEL", "s", "5-5"],
        ["XSETID", "s", "0-1"],
        ["XDEL", "s", "10-1"],
        ["XSETID", "s", "0-1"],
        ["XINFO", "STREAM", "s"],
        ["SET", "str", "x"],
        ["XSETID", "str", "1-1"],
    ),
    script(
        "groups_follow_the_key",
        *entries("{t}s", 3),
        ["XGROUP", "CREATE", "{t}s", "g", "0"],
        ["XREADGROUP", "GROUP", "g", "c", "COUNT", "2", "STREAMS", "{t}s", ">"],
        ["XCLAIM", "{t}s", "g", "d", "0", "1-1", "TIME", "1234", "RETRYCOUNT", "5", "JUSTID"],
        ["RENAME", "{t}s", "{t}r"],
        full("{t}r"),
        ["COPY", "{t}r", "{t}c"],
        ["XACK", "{t}c", "g", "1-1"],
        ["XPENDING", "{t}c", "g"],
        ["XPENDING", "{t}r", "g"],
        ["RENAME", "{t}r", A],
        full(A),
        ["COPY", A, B],
        full(B),
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", B, ">"],
        ["XPENDING", B, "g"],
        ["XPENDING", A, "g"],
        ["DEL", A],
        ["XINFO", "GROUPS", B],
        ["DEBUG", "RELOAD"],
        full(B),
        full("{t}c"),
    ),
    script(
        "xreadgroup_in_multi",
        ["XADD", "s", "1-1", "a", "1"],
        ["XGROUP", "CREATE", "s", "g", "$"],
        ["MULTI"],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"],
        ["XADD", "s", "2-1", "a", "2"],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"],
        ["EXEC"],
        ["XPENDING", "s", "g"],
    ),
    script(
        "group_changes_are_not_seen_by_watch",
        ["XADD", "s", "1-1", "a", "1"],
        ["WATCH", "s"],
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XGROUP", "CREATECONSUMER", "s", "g", "c"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
        ["XCLAIM", "s", "g", "d", "0", "1-1", "JUSTID"],
        ["XAUTOCLAIM", "s", "g", "e", "0", "0", "JUSTID"],
        ["XACK", "s", "g", "1-1"],
        ["XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS", "s", "0"],
        ["XGROUP", "SETID", "s", "g", "0"],
        ["XGROUP", "DELCONSUMER", "s", "g", "c"],
        ["XGROUP", "DESTROY", "s", "g"],
        ["XSETID", "s", "5-5"],
        ["MULTI"],
        ["PING"],
        ["EXEC"],
        ["WATCH", "n"],
        ["XGROUP", "CREATE", "n", "g", "$", "MKSTREAM"],
        ["MULTI"],
        ["PING"],
        ["EXEC"],
        ["WATCH", "s"],
        ["XADD", "s", "6-1", "a", "1"],
        ["MULTI"],
        ["PING"],
        ["EXEC"],
    ),
    script(
        "block_from_scripts",
        ["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"],
        ["EVAL", "return redis.call('XREADGROUP','GROUP','g','c','BLOCK','0','STREAMS',"
                 "KEYS[1],'>')", "1", "s"],
        ["EVAL", "return redis.pcall('xread','COUNT','1','BLOCK','0','STREAMS',KEYS[1],'0')",
         "1", "s"],
        ["EVAL", "return redis.pcall('XREAD','COUNT','x','BLOCK','0','STREAMS',KEYS[1],'0')",
         "1", "s"],
        ["EVAL", "redis.call('XADD',KEYS[1],'1-1','a','1') "
                 "return redis.call('XREADGROUP','GROUP','g','c','STREAMS',KEYS[1],'>')",
         "1", "s"],
    ),
    script(
        "idle_times",
        ["XADD", "s", "1-1", "a", "1"],
        ["XGROUP", "CREATE", "s", "g", "0"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
        sleep(0.2),
        ["XPENDING", "s", "g", "IDLE", "150", "-", "+", "10", "x"],
        ["XAUTOCLAIM", "s", "g", "d", "150", "0", "JUSTID"],
        ["XAUTOCLAIM", "s", "g", "e", "150", "0", "JUSTID"],
        ["XCLAIM", "s", "g", "e", "150", "1-1", "JUSTID"],
        ["XPENDING", "s", "g", "IDLE", "150", "-", "+", "10"],
    ),
]


def clock_and_idle_masked(raw: bytes) -> bytes:
    return pending_idle_masked(clock_masked(raw))


def random_group_steps(seed: int, steps: int = 300) -> list:
    """A seeded random walk over the group commands (and the stream writes that move groups'
    counters: XADD, XDEL, XTRIM), every reply compared with the clock masked."""
    rng = random.Random(seed)
    top = 0
    consumers = ["c1", "c2", "c3"]

    def some_id() -> str:
        return f"{rng.randint(0, top + 1)}-{rng.randint(0, 1)}"

    def group() -> str:
        return rng.choice("gh")

    out = []
    for _ in range(steps):
        roll = rng.random()
        if roll < 0.25:
            top += 1
            op = ["XADD", "s", f"{top}-1", "f", str(top)]
        elif roll < 0.3:
            op = ["XDEL", "s", some_id(), some_id()]
        elif roll < 0.33:
            op = ["XTRIM", "s", "MAXLEN", str(rng.randint(0, 10))]
        elif roll < 0.36:
            op = ["XGROUP", "CREATE", "s", group(), rng.choice(["0", "$", some_id()]),
                  "MKSTREAM"]
        elif roll < 0.5:
            op = ["XREADGROUP", "GROUP", group(), rng.choice(consumers), "COUNT",
                  str(rng.randint(0, 3)), *(["NOACK"] if rng.random() < 0.2 else []),
                  "STREAMS", "s", rng.choice([">", ">", "0", some_id()])]
        elif roll < 0.6:
            op = ["XACK", "s", group(), some_id(), some_id()]
        elif roll < 0.7:
            op = ["XCLAIM", "s", group(), rng.choice(consumers), "0", some_id(), some_id(),
                  *rng.choice([[], ["JUSTID"], ["FORCE"], ["RETRYCOUNT", "3"],
                               ["LASTID", some_id()], ["TIME", "1000"]])]
        elif roll < 0.8:
            op = ["XAUTOCLAIM", "s", group(), rng.choice(consumers), "0", some_id(), "COUNT",
                  str(rng.randint(1, 4)), *rng.choice([[], ["JUSTID"]])]
        elif roll < 0.85:
            op = ["XGROUP", "SETID", "s", group(), rng.choice(["0", "$", some_id()]),
                  *rng.choice([[], ["ENTRIESREAD", str(rng.randint(-1, 5))]])]
        elif roll < 0.88:
            op = ["XGROUP", rng.choice(["DELCONSUMER", "CREATECONSUMER"]), "s", group(),
                  rng.choice(consumers)]
        elif roll < 0.9:
            op = ["XGROUP", "DESTROY", "s", group()]
        elif roll < 0.95:
            op = ["XPENDING", "s", group(),
                  *rng.choice([[], ["-", "+", "10"],
                               ["IDLE", "0", "-", "+", "5", rng.choice(consumers)]])]
        else:
            op = rng.choice([["XINFO", "STREAM", "s", "FULL"], ["XINFO", "GROUPS", "s"],
                             ["XINFO", "STREAM", "s"]])
        out.append(normalized(clock_and_idle_masked, *op))
    return out


SCRIPTS += [script(f"random_walk_{seed}", *random_group_steps(seed)) for seed in (1, 2, 3)]


@parametrize(SCRIPTS)
def test_stream_groups(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
