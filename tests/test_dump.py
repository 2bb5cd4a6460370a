"""DUMP and RESTORE (issue 14): the payload codec alone, hostile payloads, and payloads moved
both ways between shardis and a real redis-server 7.0.15.
"""

from __future__ import annotations

import math
import random
import shutil
import struct
import time
from collections import deque

import pytest
import redis

import shardis.commands.strings  # noqa: F401  (registers the string type)
from shardis.commands.hashes import HashValue
from shardis.commands.sets import built_set
from shardis.commands.zsets import ZSetValue
from shardis.persist import dump
from shardis.persist.rdb import crc64
from tests.test_rdb import _entries, _from_redis, _plain

RNG = random.Random(1414)
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server (the oracle) is not installed")


def _seal(body: bytes, version: int = 10) -> bytes:
    """A payload around ``body`` (type byte + value) with a right footer."""
    data = body + struct.pack("<H", version)
    return data + struct.pack("<Q", crc64(data))


# The codec alone -----------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [(k, v) for k, v, _ in _entries()],
                         ids=[k.decode("latin-1") for k, _, _ in _entries()])
def test_payload_round_trip(key, value):
    payload = dump.dump_payload(value)
    assert payload[-10:-8] == b"\x0a\x00"
    assert dump.verify_payload(payload)
    assert _plain(dump.load_payload(payload)) == _plain(value)


def test_footer_checks():
    payload = dump.dump_payload(b"hello")
    assert dump.load_payload(_seal(payload[:-10], version=9)) == b"hello"
    for bad in (b"", b"short", payload[:-1], payload[:-8] + b"\x00" * 8,
                _seal(payload[:-10], version=11), payload[:3] + b"X" + payload[4:]):
        with pytest.raises(dump.DumpError, match="version or checksum"):
            dump.load_payload(bad)


@pytest.mark.parametrize("body", [
    b"", b"\x08", b"\x14", b"\xff", b"\x06\x00", b"\x07\x00",  # no type, unknown, module
    b"\x12\x00", b"\x02\x00", b"\x04\x00", b"\x05\x00",  # empty list, set, hash, zset
    b"\x00\x80\xff\xff\xff\xff",  # a 4 GB string in a tiny payload
    b"\x01\x81" + b"\xff" * 8,  # 2**64-1 list items
    b"\x00\xc3\x10\xff\xff\xff\xff\xff",  # LZF claiming to expand absurdly
    b"\x0b\x08\x04\x00\x00\x00\xff\xff\xff\x7f",  # intset of 2**31 members
    b"\x10\x06\xff\xff\xff\x7f\x02\x00",  # listpack header lying about its size
    b"\x02\x02\x01a\x01a",  # duplicate set member
])
def test_bad_values_are_bad_data_format(body):
    with pytest.raises(dump.DumpError) as info:
        dump.load_payload(_seal(body))
    assert info.value.message == dump.BAD_FORMAT


def test_redis_7_2_streams_and_cut_streams_are_bad_data_format():
    for body in (b"\x13\x00", b"\x0f\x00", b"\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00"):
        with pytest.raises(dump.DumpError) as info:
            dump.load_payload(_seal(body))
        assert info.value.message == dump.BAD_FORMAT


def test_fuzz_mutated_payloads_with_fixed_checksums():
    """Flip, insert, delete and overwrite bytes of real payloads, then fix the CRC: the loader
    must return a value or raise DumpError, never anything else, and fast."""
    payloads = [dump.dump_payload(v) for _, v, _ in _entries()]
    start = time.monotonic()
    for n in range(6000):
        body = bytearray(RNG.choice(payloads)[:-10])
        for _ in range(RNG.randrange(1, 4)):
            at = RNG.randrange(len(body)) if body else 0
            op = RNG.randrange(4)
            if op == 0 and body:
                body[at] ^= 1 << RNG.randrange(8)
            elif op == 1:
                body[at:at] = bytes(RNG.randrange(256) for _ in range(RNG.randrange(1, 5)))
            elif op == 2 and body:
                del body[at:at + RNG.randrange(1, 9)]
            elif body:
                body[at] = RNG.choice((0, 0x7F, 0x80, 0xC0, 0xC3, 0xFE, 0xFF))
        if n % 7 == 0:
            body = body[:RNG.randrange(len(body) + 1)]
        try:
            dump.load_payload(_seal(bytes(body)))
        except dump.DumpError as exc:
            assert exc.message == dump.BAD_FORMAT
    assert time.monotonic() - start < 60


def test_an_empty_stream_is_a_value():
    from shardis.commands.streams import StreamValue

    value = dump.load_payload(dump.dump_payload(StreamValue()))
    assert isinstance(value, StreamValue) and len(value) == 0


# Between shardis and Redis -------------------------------------------------------------------
def _fill(client: redis.Redis, key: bytes, value: object) -> None:
    """Store ``value`` in ``client`` with the commands a user would use."""
    if isinstance(value, (bytes, bytearray)):
        client.set(key, value)
    elif isinstance(value, deque):
        items = list(value)
        for i in range(0, len(items), 1000):
            client.rpush(key, *items[i:i + 1000])
    elif isinstance(value, HashValue):
        client.hset(key, mapping=dict(value))
    elif isinstance(value, ZSetValue):
        client.zadd(key, {m: s for s, m in value.order})
    else:
        client.sadd(key, *value)


CASES = [(k, v) for k, v, _ in _entries()] + [
    (b"bigintset", built_set(b"%d" % i for i in range(500))),
    (b"longstr", b"x" * 70_000),
    (b"rand", bytes(RNG.randrange(256) for _ in range(5000))),
    (b"fltzset", ZSetValue.built([(b"a", 0.1), (b"b", -1e-300), (b"c", 2.5e15)])),
    (b"bighash2", HashValue([(b"f%d" % i, b"v" * 70) for i in range(200)], False)),
]


@pytest.fixture
def pair(shardis_clean, oracle_clean):
    ours = redis.Redis(port=shardis_clean.port, protocol=2)
    theirs = redis.Redis(port=oracle_clean.port, protocol=2)
    yield ours, theirs
    ours.close()
    theirs.close()


@needs_redis
@pytest.mark.parametrize("key, value", CASES, ids=[k.decode("latin-1") for k, _ in CASES])
def test_dump_moves_both_ways_between_shardis_and_redis(pair, key, value):
    ours, theirs = pair
    _fill(ours, key, value)
    _fill(theirs, key, value)
    # Redis -> shardis: the same value and encoding.
    assert ours.restore(b"from-redis", 0, theirs.dump(key)) == b"OK"
    assert _from_redis(ours, b"from-redis") == _from_redis(theirs, key)
    # shardis -> Redis.
    assert theirs.restore(b"from-shardis", 0, ours.dump(key)) == b"OK"
    assert _from_redis(theirs, b"from-shardis") == _from_redis(ours, key)
    # Deterministically ordered values are written byte for byte as Redis writes them.
    if not (isinstance(value, (HashValue, set)) or type(value).__name__ == "SetValue"):
        assert ours.dump(key) == theirs.dump(key)


@needs_redis
def test_ttl_idletime_and_absttl(pair):
    ours, theirs = pair
    payload = theirs.dump(b"k") or (theirs.set(b"k", b"v") and theirs.dump(b"k"))
    for client in pair:
        client.restore(b"rel", 5000, payload)
        assert 4000 < client.pttl(b"rel") <= 5000
        at = int(time.time() * 1000) + 60_000
        client.restore(b"abs", at, payload, absttl=True)
        assert client.pexpiretime(b"abs") == at
        client.restore(b"idle", 0, payload, idletime=1000)
        assert 1000 <= client.object("idletime", b"idle") <= 1001
    # Idle times beyond the 24-bit LRU clock wrap as in Redis.
    for idle in (0, 86_400 * 200, 2**24 + 5, 2**40, 2**62):
        seen = []
        for client in pair:
            client.restore(b"idle", 0, payload, idletime=idle, replace=True)
            seen.append(client.object("idletime", b"idle"))
        assert abs(seen[0] - seen[1]) <= 2, (idle, seen)
        assert client.execute_command("RESTORE", "past", 1, payload, "ABSTTL") == b"OK"
        assert client.exists(b"past") == 0


def _restore_events(port: int) -> list[tuple[bytes, bytes]]:
    client = redis.Redis(port=port, protocol=2)
    client.flushall()
    client.config_set("notify-keyspace-events", "KEA")
    try:
        client.set(b"src", b"v")
        payload = client.dump(b"src")
        sub = client.pubsub()
        sub.psubscribe("__key*__:*")
        sub.get_message(timeout=1)
        client.restore(b"dst", 5000, payload)  # restore (no expire event, as Redis)
        client.restore(b"dst", 0, payload, replace=True)
        client.restore(b"dst", 1, payload, replace=True, absttl=True)  # del
        client.restore(b"gone", 1, payload, absttl=True)  # nothing
        client.restore(b"end", 0, payload)
        got = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            msg = sub.get_message(timeout=0.2)
            if msg and msg["type"] == "pmessage":
                got.append((msg["channel"], msg["data"]))
                if msg["data"] == b"end":
                    break
        sub.close()
        return got
    finally:
        client.config_set("notify-keyspace-events", "")
        client.close()


@needs_redis
def test_restore_events_match_redis(shardis_clean, oracle_clean):
    ours = _restore_events(shardis_clean.port)
    assert ours == _restore_events(oracle_clean.port)
    assert [event for _, event in ours[::2]] == [b"restore", b"restore", b"del", b"restore"]


def test_restore_wakes_watchers_and_blocked_clients(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    try:
        client.set(b"src", b"v")
        payload = client.dump(b"src")
        # WATCH sees a RESTORE.
        pipe = client.pipeline()
        pipe.watch(b"w")
        client.restore(b"w", 0, payload)
        pipe.multi()
        pipe.set(b"w", b"x")
        with pytest.raises(redis.WatchError):
            pipe.execute()
        # A blocked BLPOP is served by a RESTOREd list.
        client.rpush(b"l", b"a")
        lpayload = client.dump(b"l")
        client.delete(b"l")
        import threading

        out = []
        waiter = threading.Thread(target=lambda: out.append(
            redis.Redis(port=shardis_clean.port, protocol=2).blpop([b"bl"], timeout=5)))
        waiter.start()
        time.sleep(0.3)
        client.restore(b"bl", 0, lpayload)
        waiter.join(6)
        assert out == [(b"bl", b"a")]
    finally:
        client.close()


@needs_redis
def test_hostile_payloads_answer_as_redis(pair):
    """Mutated real payloads with fixed checksums: shardis answers OK or Bad data format, and
    where Redis rejects one, shardis does too (Redis may accept insides it does not check)."""
    ours, theirs = pair
    for key, value, _ in _entries()[:12]:
        _fill(theirs, key, value)
    payloads = [theirs.dump(k) for k, _, _ in _entries()[:12]]
    for _ in range(300):
        body = bytearray(RNG.choice(payloads)[:-10])
        at = RNG.randrange(len(body))
        body[at] ^= 1 << RNG.randrange(8)
        payload = _seal(bytes(body))
        answers = []
        for client in pair:
            try:
                answers.append(client.restore(b"fz", 0, payload, replace=True))
            except redis.ResponseError as exc:
                answers.append(str(exc))
        assert answers[0] in (b"OK", "Bad data format"), answers
        if answers[1] == "Bad data format":
            assert answers[0] == "Bad data format", (bytes(body), answers)
        assert ours.ping()
    assert theirs.ping()


def test_zset_scores_keep_their_bits():
    value = ZSetValue.built([(b"a", math.pi), (b"b", -0.0), (b"c", 1e-310)])
    back = dump.load_payload(dump.dump_payload(value))
    assert [(m, struct.pack("<d", s)) for s, m in back.order] == \
        [(m, struct.pack("<d", s)) for s, m in value.order]


def test_aof_logs_restore_with_an_absolute_ttl():
    from shardis.persist.aof import aof_commands

    now = 1_000_000
    assert aof_commands([b"RESTORE", b"k", b"0", b"p"], now) == [[b"RESTORE", b"k", b"0", b"p"]]
    assert aof_commands([b"RESTORE", b"k", b"500", b"p", b"REPLACE"], now) == \
        [[b"RESTORE", b"k", b"1000500", b"p", b"REPLACE", b"ABSTTL"]]
    assert aof_commands([b"RESTORE", b"k", b"2000000", b"p", b"absttl"], now) == \
        [[b"RESTORE", b"k", b"2000000", b"p", b"absttl"]]
    assert aof_commands([b"RESTORE", b"k", b"5", b"p", b"ABSTTL", b"REPLACE"], now) == \
        [[b"DEL", b"k"]]


@needs_redis
def test_streams_move_both_ways(pair):
    """A stream DUMPed by either server RESTOREs into the other, byte for byte the same."""
    ours, theirs = pair
    for client in pair:
        client.delete(b"st", b"st2")
        for i in range(1, 150):
            client.xadd(b"st", {b"f": b"%d" % i, b"g": b"v" * (i % 9)}, id=b"%d-1" % i)
        client.xdel(b"st", b"3-1", b"77-1")
    payload = theirs.dump(b"st")
    assert ours.dump(b"st") == payload
    ours.restore(b"st2", 0, payload)
    theirs.restore(b"st2", 0, ours.dump(b"st"))
    for client in pair:
        assert client.xrange(b"st2") == client.xrange(b"st")
        assert client.dump(b"st2") == payload


@needs_redis
def test_listpack_back_lengths_at_redis_thresholds(pair):
    """Entries of 16382, 16383 and 16384 bytes: Redis's ``lpEncodeBacklen`` takes three bytes
    from 16383 on (not from 16384), so the payloads match byte for byte and cross both ways."""
    ours, theirs = pair
    rng = random.Random(16383)
    items = [bytes(rng.randrange(256) for _ in range(n)) for n in (16377, 16378, 16379)]
    for client in pair:
        client.delete(b"bl")
        client.rpush(b"bl", *items)
    payload = theirs.dump(b"bl")
    assert ours.dump(b"bl") == payload
    ours.restore(b"bl2", 0, payload)
    theirs.restore(b"bl3", 0, ours.dump(b"bl"))
    assert ours.lrange(b"bl2", 0, -1) == items == theirs.lrange(b"bl3", 0, -1)
