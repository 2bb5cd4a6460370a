"""The RDB codec against real Redis 7.0: our files load in redis-server and pass
redis-check-rdb, Redis's own dumps read back into the same data, and corrupt input gives
:class:`RdbError` (never another exception)."""

from __future__ import annotations

import io
import math
import os
import random
import shutil
import struct
import subprocess
import time
from collections import deque

import pytest
import redis

import shardis.commands.strings  # noqa: F401  (registers the string type)
from shardis.commands.hashes import HashValue
from shardis.commands.sets import SetValue, built_set
from shardis.commands.zsets import ZSetValue
from shardis.persist import packs, rdb
from shardis.persist.rdb import (
    OP_EOF,
    OP_SELECTDB,
    RdbError,
    RdbReader,
    RdbWriter,
    crc64,
    encode_length,
    read_rdb,
    write_rdb,
)
from shardis.worker.types import unpacked
from tests.servers import start_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server (the oracle) is not installed")

NOW_MS = int(time.time() * 1000)
RNG = random.Random(14)


def _entries() -> list[tuple[bytes, object, int | None]]:
    """One key of every type and Redis 7.0 encoding, with and without expiry."""
    noise = bytes(RNG.randrange(256) for _ in range(300))
    return [
        (b"str", b"hello", None), (b"empty", b"", None), (b"int", b"12345", None),
        (b"neg", b"-7", NOW_MS + 500_000_000), (b"bigint", b"123456789012", None),
        (b"zero-lead", b"0123", None), (b"lzf", b"abc" * 100, NOW_MS + 900_000_000),
        (b"noise", noise, None), (b"bin\x00key", b"\x00\xff\r\n", None),
        (b"list", deque([b"a", b"1", b"-5000", b"70000", b"9" * 19, b"y" * 100]), None),
        (b"biglist", deque(b"item-%d" % i for i in range(5000)), NOW_MS + 800_000_000),
        (b"hugeitem", deque([b"h" * 20000, b"small"]), None),
        (b"intset", built_set([b"1", b"2", b"-70000", b"9999999999"]), None),
        (b"set", built_set([b"a", b"b", b"1"]), None),
        (b"bigset", built_set(b"%d" % i for i in range(600)), None),
        (b"hash", HashValue([(b"f", b"v"), (b"n", b"12"), (b"neg", b"-1")]), None),
        (b"bighash", HashValue([(b"f%d" % i, b"v%d" % i) for i in range(600)], False), None),
        (b"longhash", HashValue([(b"f", b"v" * 100)], listpack=False), None),
        (b"zset", ZSetValue.built([(b"a", 1.5), (b"b", -2.0), (b"c", math.inf),
                                   (b"d", -math.inf), (b"e", 0.0), (b"f", 1e300),
                                   (b"g", 1 / 3)]), NOW_MS + 700_000_000),
        (b"bigzset", ZSetValue.built([(b"m%d" % i, i / 7) for i in range(300)]), None),
        (b"longzset", ZSetValue.built([(b"x" * 100, 2.0), (b"y", 3.0)]), None),
    ]


def _plain(value: object) -> object:
    """A value as plain, comparable data (and its encoding flag, so encodings are compared);
    a packed value as its full form (``shardis.worker.types``)."""
    value = unpacked(value)
    if isinstance(value, deque):
        return list(value)
    if isinstance(value, SetValue):
        return ("intset" if value.intset else "hashtable", set(value))
    if isinstance(value, HashValue):
        return ("listpack" if value.listpack else "hashtable", dict(value))
    if isinstance(value, ZSetValue):
        return ("listpack" if value.listpack else "skiplist",
                [(m, s) for s, m in value.order])
    return bytes(value)  # type: ignore[arg-type]


def _from_redis(client: redis.Redis, key: bytes) -> object:
    """What Redis holds at ``key``, in :func:`_plain`'s shape."""
    kind = client.type(key)
    encoding = client.object("encoding", key).decode()
    if kind == b"string":
        return client.get(key)
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"set":
        return (encoding, client.smembers(key))
    if kind == b"hash":
        return (encoding, client.hgetall(key))
    return (encoding, client.zrange(key, 0, -1, withscores=True))


def _expiry(client: redis.Redis, key: bytes) -> int | None:
    at = client.pexpiretime(key)
    return None if at == -1 else at


def _rdb_bytes(entries, compress: bool = True) -> bytes:
    buf = io.BytesIO()
    write_rdb(buf, entries, compress)
    return buf.getvalue()


# (1) our file in real Redis -----------------------------------------------------------------
def test_our_file_passes_redis_check_rdb_and_loads_in_redis(tmp_path):
    entries = _entries()
    (tmp_path / "dump.rdb").write_bytes(_rdb_bytes(entries))
    check = subprocess.run(["redis-check-rdb", str(tmp_path / "dump.rdb")],
                           capture_output=True, text=True, timeout=20)
    assert check.returncode == 0 and "RDB looks OK" in check.stdout, check.stdout
    server = start_redis("--dir", str(tmp_path), "--dbfilename", "dump.rdb")
    try:
        client = redis.Redis(port=server.port)
        assert client.dbsize() == len(entries)
        for key, value, expire in entries:
            assert _from_redis(client, key) == _plain(value), key
            assert _expiry(client, key) == expire, key
    finally:
        server.stop()


# (2) Redis's file in our reader -------------------------------------------------------------
def _fill(client: redis.Redis, entries) -> None:
    """Build the entries in Redis with ordinary commands (so Redis picks the encodings)."""
    for key, value, expire in entries:
        if isinstance(value, (bytes, bytearray)):
            client.set(key, value)
        elif isinstance(value, deque):
            client.rpush(key, *value)
        elif isinstance(value, SetValue):
            client.sadd(key, *value)
        elif isinstance(value, HashValue):
            client.hset(key, mapping=dict(value))
        else:
            client.zadd(key, dict(value))
        if expire is not None:
            client.pexpireat(key, expire)


def test_redis_dump_reads_back_identically():
    entries = _entries()
    server = start_redis("--rdbcompression", "yes")
    try:
        client = redis.Redis(port=server.port)
        _fill(client, entries)
        client.function_load("#!lua name=lib\nredis.register_function('f', function() "
                             "return 1 end)")
        expected = {key: (_from_redis(client, key), _expiry(client, key))
                    for key, _, _ in entries}
        client.save()
        with open(os.path.join(server.workdir, "dump.rdb"), "rb") as fh:
            dump = fh.read()
    finally:
        server.stop()
    reader = RdbReader(io.BytesIO(dump))
    got = {key: (_plain(value), expire) for key, value, expire in reader}
    assert got == expected
    # only hash tables may differ (a 3-member set matches Redis's order by chance: Python's
    # string hashing is seeded per process)
    assert set(_records_not_in(dump, entries)) - {b"set"} == {b"bigset", b"bighash"}
    assert reader.aux[b"redis-ver"] == b"7.0.15" and reader.version == 10
    assert len(reader.functions) == 1 and b"name=lib" in reader.functions[0]


def _records_not_in(dump: bytes, entries) -> list[bytes]:
    """Keys whose record (type, key, value) as our writer makes it is not, byte for byte, in
    Redis's dump.  Only hash tables may differ: their order is Redis's dict order."""
    writer = RdbWriter(io.BytesIO())
    missing = []
    for key, value, _ in entries:
        kind, body = writer.value(value)
        if bytes([kind]) + writer.string(key) + body not in dump:
            missing.append(key)
    return missing


# (3) round trip -----------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_round_trip(compress):
    entries = _entries()
    data = _rdb_bytes(entries, compress)
    got = list(RdbReader(io.BytesIO(data)))
    assert [(k, type(v), _plain(v), e) for k, v, e in got] == [
        (k, type(v), _plain(v), e) for k, v, e in entries]


def test_read_rdb_opens_a_path(tmp_path):
    (tmp_path / "d.rdb").write_bytes(_rdb_bytes([(b"k", b"v", None)]))
    assert read_rdb(tmp_path / "d.rdb") == [(b"k", b"v", None)]


def test_writer_refuses_a_value_it_cannot_write():
    with pytest.raises(RdbError, match="cannot write"):
        _rdb_bytes([(b"k", object(), None)])


# Older encodings (ziplist, zipmap, seconds expiry) ------------------------------------------
def _file(body: bytes, version: int = 10) -> bytes:
    data = b"REDIS%04d" % version + body + bytes([OP_EOF])
    return data + struct.pack("<Q", crc64(data))


def _ziplist(items: list[bytes]) -> bytes:
    """A ziplist of short strings, small ints (immediate) and an int16, by hand."""
    body = b""
    prev = 0
    for item in items:
        number = packs.as_int(item)
        if number is not None and 0 <= number <= 12:
            entry = bytes([prev, 0xF1 + number])
        elif number is not None:
            entry = bytes([prev, 0xC0]) + struct.pack("<h", number)
        else:
            entry = bytes([prev, len(item)]) + item
        body += entry
        prev = len(entry)
    return struct.pack("<IIH", 11 + len(body), 10 + len(body) - prev, len(items)) + body + b"\xff"


def test_old_encodings():
    w = RdbWriter(io.BytesIO())
    zl = _ziplist([b"one", b"1", b"two", b"-300"])
    body = (bytes([10]) + w.string(b"zl") + w.string(zl)                  # LIST_ZIPLIST
            + bytes([13]) + w.string(b"hz") + w.string(zl)                # HASH_ZIPLIST
            + bytes([12]) + w.string(b"zz") + w.string(zl)                # ZSET_ZIPLIST
            + bytes([14]) + w.string(b"ql") + encode_length(1) + w.string(zl)  # QUICKLIST v1
            + bytes([253]) + struct.pack("<i", 2_000_000_000)             # EXPIRETIME (s)
            + bytes([3]) + w.string(b"z1") + encode_length(2)              # ZSET, text scores
            + w.string(b"a") + b"\x032.5" + w.string(b"b") + b"\xfe")
    got = {k: (_plain(v), e) for k, v, e in RdbReader(io.BytesIO(_file(body, 9)))}
    assert got == {
        b"zl": ([b"one", b"1", b"two", b"-300"], None),
        b"hz": (("listpack", {b"one": b"1", b"two": b"-300"}), None),
        b"zz": (("listpack", [(b"two", -300.0), (b"one", 1.0)]), None),
        b"ql": ([b"one", b"1", b"two", b"-300"], None),
        b"z1": (("listpack", [(b"a", 2.5), (b"b", math.inf)]), 2_000_000_000_000),
    }


def test_other_databases_refused_or_skipped():
    w = RdbWriter(io.BytesIO())
    body = (bytes([0]) + w.string(b"k0") + w.string(b"v")
            + bytes([OP_SELECTDB]) + encode_length(3) + bytes([0]) + w.string(b"k3")
            + w.string(b"v"))
    with pytest.raises(RdbError, match="database 3"):
        list(RdbReader(io.BytesIO(_file(body))))
    reader = RdbReader(io.BytesIO(_file(body)), skip_other_dbs=True)
    assert list(reader) == [(b"k0", b"v", None)] and reader.skipped == 1


def test_redis_7_2_streams_are_refused_clearly():
    with pytest.raises(RdbError, match=r"stream of Redis 7.2 \(STREAM_LISTPACKS_3\)\) is not"):
        list(RdbReader(io.BytesIO(_file(bytes([21]) + b"\x01k"))))


# (4) corrupt input --------------------------------------------------------------------------
def _read_all(data: bytes) -> None:
    list(RdbReader(io.BytesIO(data)))


def test_every_truncation_is_an_rdb_error():
    data = _rdb_bytes([(k, v, e) for k, v, e in _entries() if k != b"biglist"])
    for cut in range(0, len(data), 7):
        with pytest.raises(RdbError):
            _read_all(data[:cut])


def test_flipped_bytes_are_rdb_errors():
    data = bytearray(_rdb_bytes(_entries()[:12]))
    for _ in range(300):
        bad = bytearray(data)
        bad[RNG.randrange(9, len(bad))] ^= 1 << RNG.randrange(8)
        with pytest.raises(RdbError):
            _read_all(bytes(bad))


def test_checksum_mismatch_names_the_offset():
    data = bytearray(_rdb_bytes([(b"k", b"value", None)]))
    data[-1] ^= 0xFF
    with pytest.raises(RdbError, match="CRC64 mismatch") as info:
        _read_all(bytes(data))
    assert info.value.offset == len(data) - 8


@pytest.mark.parametrize("body", [
    bytes([0]) + b"\x01k" + b"\x81" + b"\x7f" + b"\xff" * 7,            # 2**63-byte string
    bytes([1]) + b"\x01k" + b"\x81" + b"\xff" * 8,                      # 2**64-element list
    bytes([0]) + b"\x01k" + b"\xc3" + b"\x01" + b"\x80\x40\x00\x00\x00" + b"a",  # LZF bomb
    bytes([16]) + b"\x01k" + b"\x0a" + struct.pack("<IH", 9999, 1) + b"\x01\x01\xff\xff",
    bytes([11]) + b"\x01k" + b"\x0c" + struct.pack("<II", 2, 3) + b"\x00" * 4,  # short intset
    bytes([7]) + b"\x01k",                                               # module value
    b"\xf7",                                                             # module aux
])
def test_lying_lengths_and_unknown_data_are_rdb_errors(body):
    with pytest.raises(RdbError):
        _read_all(_file(body))


def test_bad_magic_and_future_version():
    with pytest.raises(RdbError, match="magic"):
        _read_all(b"NOTREDIS0")
    with pytest.raises(RdbError, match="version 11"):
        _read_all(b"REDIS0011")


def test_corruption_behind_a_valid_checksum_is_an_rdb_error_or_a_clean_read():
    """With the checksum recomputed, the parser itself meets the damage: it may read
    something (a flipped letter is still a string) but must fail only with RdbError."""
    data = _rdb_bytes(_entries()[:12])[:-8]
    failures = 0
    for _ in range(400):
        bad = bytearray(data)
        for _ in range(RNG.randrange(1, 4)):
            bad[RNG.randrange(9, len(bad))] = RNG.randrange(256)
        try:
            _read_all(bytes(bad) + struct.pack("<Q", crc64(bytes(bad))))
        except RdbError:
            failures += 1
    assert failures > 0


def test_encodings_after_loading_follow_redis(tmp_path):
    """A file from a Redis with larger listpack limits, loaded by a default Redis: what
    each value's encoding becomes there is what our reader gives it."""
    writer_server = start_redis("--hash-max-listpack-value", "1000",
                                "--zset-max-listpack-value", "1000",
                                "--zset-max-listpack-entries", "1000")
    try:
        client = redis.Redis(port=writer_server.port)
        client.hset(b"h", mapping={b"f": b"v" * 100})
        client.zadd(b"zlong", {b"m" * 100: 1})
        client.zadd(b"zmany", {b"m%d" % i: i for i in range(200)})
        client.save()
        shutil.copy(os.path.join(writer_server.workdir, "dump.rdb"), tmp_path / "dump.rdb")
    finally:
        writer_server.stop()
    ours = {key: _plain(value) for key, value, _ in read_rdb(tmp_path / "dump.rdb")}
    loader = start_redis("--dir", str(tmp_path), "--dbfilename", "dump.rdb")
    try:
        client = redis.Redis(port=loader.port)
        assert ours == {key: _from_redis(client, key) for key in ours}
        assert ours[b"h"][0] == "listpack" and ours[b"zmany"][0] == "skiplist"
    finally:
        loader.stop()


# (5) the fast paths agree with the general ones ----------------------------------------------
def _mixed_entries(n: int, seed: int) -> list:
    """Strings of every shape the reader's fast path takes or declines (6-bit and longer
    keys and values, INT8/16/32 values, integers too big for them, LZF), with and without
    expiry, between collections; enough of them to cross several read blocks."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = b"k%d" % i + b"x" * rng.choice((0, 1, 50, 62, 63, 64, 100))
        shape = rng.randrange(11)
        if shape == 0:
            value: object = b"%d" % rng.randrange(-128, 128)
        elif shape == 1:
            value = b"%d" % rng.randrange(-(2**15), 2**15)
        elif shape == 2:
            value = b"%d" % rng.randrange(-(2**31), 2**31)
        elif shape == 3:
            value = b"%d" % rng.randrange(2**31, 2**40)
        elif shape == 4:
            value = b"v" * rng.choice((0, 1, 62, 63, 64, 65, 300))
        elif shape == 5:
            value = deque([b"a", b"%d" % i, b"-70000", b"y" * 70, b"z" * 5000])
        elif shape == 6:
            value = HashValue([(b"f", b"%d" % -i), (b"g", b"2147483648")])
        elif shape == 7:
            value = built_set([b"%d" % n for n in rng.sample(range(-5, 10**6), 3)])
        elif shape == 8:
            value = ZSetValue.built([(b"m%d" % n, rng.choice((0.0, -0.0, 2.5, -math.inf, float(n))))
                                     for n in range(rng.randrange(1, 4))])
        else:
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        expire = rng.choice((None, None, 2_000_000_000_000 + i, -5))
        out.append((key, value, expire))
    return out


def test_fast_path_agrees_with_the_general_path(monkeypatch):
    entries = _mixed_entries(12_000, 5)
    data = _rdb_bytes(entries)
    assert len(data) > rdb._BLOCK
    fast = list(RdbReader(io.BytesIO(data)))
    monkeypatch.setattr(rdb, "_FAST_ROOM", 1 << 62)  # the fast path never has room
    slow = list(RdbReader(io.BytesIO(data)))
    assert [(k, _plain(v), e) for k, v, e in fast] == [(k, _plain(v), e) for k, v, e in slow]
    assert [(k, _plain(v), e) for k, v, e in fast] == [(k, _plain(v), e) for k, v, e in entries]


def test_a_flip_inside_a_fast_read_string_is_a_checksum_error():
    data = bytearray(_rdb_bytes(_mixed_entries(3000, 6)))
    for at in (len(data) // 3, len(data) // 2, len(data) - 40):
        flipped = bytearray(data)
        flipped[at] ^= 0x20
        with pytest.raises(RdbError):
            _read_all(bytes(flipped))


def test_the_reader_leaves_the_file_right_after_the_rdb():
    data = _rdb_bytes(_mixed_entries(200, 7))
    fh = io.BytesIO(data + b"after")
    list(RdbReader(fh))
    assert fh.read() == b"after"


def test_listpack_entries_of_every_encoding_and_their_errors():
    items = [b"0", b"127", b"128", b"-1", b"4095", b"-4096", b"4096", b"32767", b"-32768",
             b"8388607", b"-8388608", b"8388608", b"2147483647", b"-2147483648",
             b"2147483648", b"9223372036854775807", b"-9223372036854775808", b"", b"a" * 63,
             b"b" * 64, b"c" * 4095, b"d" * 4096, b"12a", b"007"]
    blob = packs.build_listpack(items)
    assert packs.listpack_entries(blob) == items
    for cut in range(7, len(blob) - 1, 97):
        bad = blob[:cut] + b"\xff"
        with pytest.raises(packs.BlobError):
            packs.listpack_entries(struct.pack("<I", len(bad)) + bad[4:])


def test_bulk_loading_into_a_keyspace(tmp_path):
    """A worker's load at start: plain strings stored by the reader itself, the rest by the
    loader; expired keys skipped; a key met twice ends as its last entry says."""
    from shardis.worker.shard import Shard
    from shardis.worker.snapshot import Snapshots

    entries = _mixed_entries(3000, 8)
    entries += [(b"k7", b"again", None), (b"k8", b"again-ttl", 4_000_000_000_000),
                (b"dup", b"first", 4_000_000_000_000), (b"dup", b"second", None)]
    (tmp_path / "dump.rdb").write_bytes(_rdb_bytes(entries))
    shard = Shard(0)
    snapshots = Snapshots(str(tmp_path))
    loaded = snapshots.load(shard)
    expected: dict = {}
    for key, value, expire in entries:
        expected.pop(key, None)
        if expire is None or expire > 0:
            expected[key] = (_plain(value), expire)
    db = shard.db
    assert loaded == len(expected) == len(db.data)
    assert snapshots.loaded_expired == sum(1 for _, _, e in entries if e is not None and e < 0)
    assert {k: (_plain(v), db.expires.get(k)) for k, v in db.data.items()} == expected
    assert set(db.atime) == set(db.data) and not db.touched
