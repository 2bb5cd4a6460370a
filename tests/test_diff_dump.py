"""Differential corpus: DUMP and RESTORE, byte for byte against real Redis 7.0.15.

Payloads are written into the scripts as literals (made by ``shardis.persist.dump``, which
writes what Redis writes: the ``dump_bytes`` script checks that on both servers).
"""

from __future__ import annotations

import struct

import shardis.commands.strings  # noqa: F401  (registers the string type)
from shardis.commands.sets import built_set
from shardis.commands.streams import StreamConsumer, StreamGroup, StreamValue
from shardis.commands.zsets import ZSetValue
from shardis.persist.dump import dump_payload
from shardis.persist.rdb import crc64
from tests.differential import check, parametrize, script, skip_reply, sorted_, type_only

STR = dump_payload(b"hello")
INT = dump_payload(b"12345")
LIST = dump_payload(__import__("collections").deque([b"a", b"b", b"1"]))
INTSET = dump_payload(built_set([b"1", b"2", b"3"]))
ZSET = dump_payload(ZSetValue.built([(b"a", 1.0), (b"b", 2.5)]))


def _grouped_stream() -> bytes:
    """A stream payload with a group, a pending entry and two consumers (one idle)."""
    value = StreamValue()
    for i in range(1, 6):
        value.append((i, 0), [b"f", b"%d" % i])
    group = StreamGroup((3, 0), 3)
    group.pel[(2, 0)] = [1_700_000_000_000, 2, b"alice"]
    group.consumers[b"alice"] = StreamConsumer(1_700_000_000_001, [(2, 0)])
    group.consumers[b"bob"] = StreamConsumer(1_700_000_000_002)
    value.groups[b"g"] = group
    return dump_payload(value)


STREAM = _grouped_stream()


def seal(body: bytes, version: int = 10) -> bytes:
    data = body + struct.pack("<H", version)
    return data + struct.pack("<Q", crc64(data))


SCRIPTS = [
    script(
        "dump_bytes",
        ["DUMP", "nokey"],
        ["SET", "s", "hello"],
        ["DUMP", "s"],
        ["SET", "i", "12345"],
        ["DUMP", "i"],
        ["SET", "big", "abc" * 100],
        ["DUMP", "big"],
        ["RPUSH", "l", "a", "b", "1", "-70000", "x" * 100],
        ["DUMP", "l"],
        ["SADD", "is", "1", "2", "3", "-5"],
        ["DUMP", "is"],
        ["HSET", "h", "f", "v", "n", "1"],
        ["DUMP", "h"],
        ["ZADD", "z", "1", "a", "2.5", "b", "-inf", "c"],
        ["DUMP", "z"],
        ["APPEND", "ap", "12"],
        ["APPEND", "ap", "3"],
        ["DUMP", "ap"],
        ["APPEND", "ap2", "x" * 30],
        ["DUMP", "ap2"],
        ["SET", "neg", "-2147483649"],
        ["DUMP", "neg"],
        # compresses into len - 4 bytes only with a byte more room than Redis gives LZF
        ["SET", "edge", "ababbbbaababbabbaabaaaaba"],
        ["DUMP", "edge"],
        ["DUMP"],
        ["DUMP", "a", "b"],
    ),
    script(
        "restore_round_trips",
        ["RESTORE", "s", "0", STR],
        ["GET", "s"],
        ["OBJECT", "ENCODING", "s"],
        ["RESTORE", "i", "0", INT],
        ["OBJECT", "ENCODING", "i"],
        ["OBJECT", "REFCOUNT", "i"],
        ["RESTORE", "i5", "0", dump_payload(b"5")],
        ["OBJECT", "REFCOUNT", "i5"],
        ["RESTORE", "long", "0", dump_payload(b"y" * 50)],
        ["OBJECT", "ENCODING", "long"],
        ["RESTORE", "l", "0", LIST],
        ["LRANGE", "l", "0", "-1"],
        ["RESTORE", "is", "0", INTSET],
        ["OBJECT", "ENCODING", "is"],
        sorted_("SMEMBERS", "is"),
        ["RESTORE", "z", "0", ZSET],
        ["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        ["OBJECT", "ENCODING", "z"],
        ["TTL", "z"],
        ["DUMP", "z"],
        ["RESTORE", "{x}t", "100000", STR],
        ["TTL", "{x}t"],
        ["RESTORE", "{x}a", "4102444800000", STR, "ABSTTL"],
        ["PEXPIRETIME", "{x}a"],
        ["RESTORE", "{x}p", "1", STR, "ABSTTL"],
        ["EXISTS", "{x}p"],
        ["RESTORE", "s", "1", INT, "ABSTTL", "REPLACE"],
        ["EXISTS", "s"],
        ["RESTORE", "o", "9223372036854775807", STR],
        ["EXISTS", "o"],
        ["RESTORE", "o", "9223372036854775807", STR, "ABSTTL"],
        ["PEXPIRETIME", "o"],
        ["RESTORE", "i2", "0", STR, "IDLETIME", "100", "REPLACE"],
        type_only("OBJECT", "IDLETIME", "i2"),  # exact values: tests/test_dump.py
        ["RESTORE", "f", "0", STR, "FREQ", "10"],
        ["RESTORE", "f", "0", LIST, "REPLACE", "replace", "absttl", "IdleTime", "0"],
        ["TYPE", "f"],
        skip_reply("DBSIZE"),
    ),
    script(
        "stream_dump_bytes",
        *[["XADD", "st", f"{i}-{i % 4}", "f", str(i), "g", "v" * (i % 30)] for i in range(1, 240)],
        ["XADD", "st", "300-0", "other", "fields"],
        ["DUMP", "st"],
        ["XDEL", "st", "7-3", "8-0", "150-2", "151-3"],
        ["DUMP", "st"],
        ["XTRIM", "st", "MINID", "30"],
        ["DUMP", "st"],
        ["XTRIM", "st", "MAXLEN", "~", "100"],
        ["DUMP", "st"],
        ["XTRIM", "st", "MAXLEN", "90"],
        ["DUMP", "st"],
        *[["XADD", "big", f"{i}-0", "k", "w" * 1300] for i in range(1, 7)],
        ["DUMP", "big"],
        ["XADD", "one", "1-1", "f", "v"],
        ["XDEL", "one", "1-1"],
        ["DUMP", "one"],
        ["XADD", "mm", "MAXLEN", "0", "5-5", "f", "v"],
        ["DUMP", "mm"],
        ["XADD", "lz", "5-1", "12", "xxxxxxxxxx"],
        ["DUMP", "lz"],
    ),
    script(
        "stream_restore",
        ["RESTORE", "st", "0", STREAM],
        ["XRANGE", "st", "-", "+"],
        ["DUMP", "st"],
        ["TYPE", "st"],
        ["XADD", "st", "6-0", "f", "6"],
        ["DUMP", "st"],
        ["RESTORE", "c", "0", STREAM[:20] + STREAM[21:]],
        ["RESTORE", "c", "0", seal(STREAM[:30])],
        ["RESTORE", "c", "0", seal(b"\x13\x01\x0f" + b"k" * 15 + STREAM[20:-10])],
        ["RESTORE", "c", "0", seal(b"\x13\x01\x10" + b"\x00" * 16 + b"\x07\x07\x00\x00\x00"
                                   b"\x00\x00\xff")],
        ["EXISTS", "c"],
    ),
    script(
        "dump_restore_in_scripts_and_transactions",
        ["SET", "s", "hello"],
        ["EVAL", "return redis.call('DUMP', KEYS[1])", "1", "s"],
        ["EVAL", "return redis.call('RESTORE', KEYS[1], 0, ARGV[1])", "1", "{s}2", STR],
        ["EVAL", "return redis.pcall('RESTORE', KEYS[1], 0, ARGV[1])", "1", "{s}2", STR],
        ["EVAL", "return redis.pcall('RESTORE', KEYS[1], 0, 'x')", "1", "{s}3"],
        ["GET", "{s}2"],
        ["MULTI"],
        ["RESTORE", "m", "0", LIST],
        ["RESTORE", "m", "0", LIST],
        ["DUMP", "m"],
        ["EXEC"],
        ["LRANGE", "m", "0", "-1"],
    ),
    script(
        "restore_errors",
        ["SET", "k", "v"],
        ["RESTORE", "k", "0", STR],
        ["RESTORE", "k", "-1", STR],
        ["RESTORE", "n", "-1", STR],
        ["RESTORE", "n", "abc", STR],
        ["RESTORE", "n", "0", "garbage"],
        ["RESTORE", "n", "0", ""],
        ["RESTORE", "n", "0", STR[:-1]],
        ["RESTORE", "n", "0", STR[:-1] + bytes([STR[-1] ^ 1])],
        ["RESTORE", "n", "0", seal(STR[:-10], version=11)],
        ["RESTORE", "n", "0", seal(STR[:-10], version=9)],
        ["GET", "n"],
        ["RESTORE", "e", "0", seal(b"\x12\x00")],
        ["RESTORE", "e", "0", seal(b"\x08\x00")],
        ["RESTORE", "e", "0", seal(b"\x14\x00")],
        ["RESTORE", "e", "0", seal(b"\x00\x80\xff\xff\xff\xff")],
        ["RESTORE", "e", "0", seal(b"\x02\x02\x01a\x01a")],
        ["RESTORE", "e", "0", seal(b"")],
        ["RESTORE", "e", "0", STR, "BOGUS"],
        ["RESTORE", "e", "0", STR, "IDLETIME"],
        ["RESTORE", "e", "0", STR, "IDLETIME", "-1"],
        ["RESTORE", "e", "0", STR, "IDLETIME", "x"],
        ["RESTORE", "e", "0", STR, "FREQ", "256"],
        ["RESTORE", "e", "0", STR, "FREQ", "-1"],
        ["RESTORE", "e", "0", STR, "FREQ"],
        ["RESTORE", "e", "0", STR, "IDLETIME", "1", "FREQ", "1"],
        ["RESTORE", "e", "0", STR, "FREQ", "1", "IDLETIME", "1"],
        ["RESTORE", "k", "0", "garbage", "BOGUS"],
        ["RESTORE", "k", "x", "garbage"],
        ["RESTORE", "k", "0", "garbage", "REPLACE"],
        ["GET", "k"],
        ["EXISTS", "e"],
        ["RESTORE", "k", "0"],
        ["RESTORE"],
    ),
]


@parametrize(SCRIPTS)
def test_dump_restore(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
