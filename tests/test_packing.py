"""Small collections packed at rest (``shardis.worker.types``): the packed forms keep every
element, order, score and encoding; only values Redis keeps compact are packed; a shard packs
what a batch unpacked or stored, and everything that reads the keyspace whole (RDB, AOF
rewrite, MEMORY USAGE, DEBUG RELOAD) sees the values right."""

from __future__ import annotations

import math
import pathlib
import random
import subprocess
import sys
import time
from collections import deque

import pytest
import redis

from shardis.commands.hashes import HashValue, PackedHash
from shardis.commands.lists import PackedList
from shardis.commands.sets import PackedIntSet, SetValue
from shardis.commands.zsets import PackedZSet, ZSetValue
from shardis.worker.shard import LOOSE_LIMIT, Shard
from shardis.worker.types import (
    PACK_MAX_ENTRIES,
    packed_if_fits,
    unpacked,
)
from tests.resp_client import decode
from tests.servers import start_redis, start_shardis
from tests.test_memory import _random_command


def eager() -> Shard:
    """A shard that packs at the end of every batch (by default it waits for housekeeping,
    or for more than LOOSE_LIMIT unpacked values)."""
    shard = Shard(0)
    shard.loose_limit = 0
    return shard


def run(shard: Shard, *args: bytes) -> object:
    """One command as a batch of its own (so an eager shard packs at its end), decoded."""
    return decode(shard.execute_batch([(2, list(args))])[0])


# The packed forms -----------------------------------------------------------------------------
def test_a_hash_keeps_its_fields_in_order_and_binary_safe():
    fields = [(b"f%d" % i, bytes([i, 0, 255]) + b"\r\n") for i in range(20)]
    value = HashValue(reversed(fields))
    packed = packed_if_fits(value)
    assert type(packed) is PackedHash
    back = unpacked(packed)
    assert type(back) is HashValue and back.listpack
    assert list(back.items()) == list(value.items())


def test_a_zset_keeps_its_order_and_scores():
    items = [(b"a", -math.inf), (b"b", math.inf), (b"c", 0.0), (b"d", 1e-300),
             (b"e", -2.5), (b"\x00", 2.5)]
    value = ZSetValue(items)
    back = unpacked(packed_if_fits(value))
    assert type(back) is ZSetValue and back.listpack
    assert list(back.order) == list(value.order) and dict(back) == dict(value)


@pytest.mark.parametrize("members, width", [
    ([b"1", b"-5", b"32767", b"-32768"], b"h"),
    ([b"32768", b"3"], b"i"),
    ([b"-2147483649", b"0"], b"q"),
    ([b"-9223372036854775808", b"9223372036854775807"], b"q"),
])
def test_an_intset_takes_the_narrowest_width_that_holds_its_members(members, width):
    packed = packed_if_fits(SetValue(members))
    assert type(packed) is PackedIntSet and packed[:1] == width
    back = unpacked(packed)
    assert back == set(members) and back.intset


def test_a_list_keeps_its_order():
    value = deque([b"", b"x" * 64, b"\x00\xff", b"3"])
    back = unpacked(packed_if_fits(value))
    assert type(back) is deque and list(back) == list(value)


@pytest.mark.parametrize("value", [
    HashValue([(b"f", b"v")], listpack=False),  # a hashtable: HSCAN pages it
    SetValue([b"a"], intset=False),
    ZSetValue([(b"m", 1.0)], listpack=False),
    HashValue((b"f%d" % i, b"v") for i in range(PACK_MAX_ENTRIES + 1)),
    deque([b"x"] * (PACK_MAX_ENTRIES + 1)),
    deque(b"%064d" % i for i in range(PACK_MAX_ENTRIES)),  # packed: over PACK_MAX_BYTES
    b"a string",
], ids=["hashtable", "hashtable-set", "skiplist", "many-fields", "long-list", "big-list",
        "string"])
def test_only_what_redis_keeps_compact_and_small_is_packed(value):
    assert packed_if_fits(value) is value


# A shard packs after each batch ---------------------------------------------------------------
def test_values_are_packed_between_batches_and_full_within_one():
    shard = eager()
    replies = shard.execute_batch([
        (2, [b"HSET", b"h", b"a", b"1"]), (2, [b"HSET", b"h", b"b", b"2"]),
        (2, [b"RPUSH", b"l", b"x"]), (2, [b"SADD", b"s", b"7"]), (2, [b"ZADD", b"z", b"1", b"m"]),
    ])
    assert replies == [b":1\r\n"] * 5
    stored = shard.db.data
    assert [type(stored[k]) for k in (b"h", b"l", b"s", b"z")] == [
        PackedHash, PackedList, PackedIntSet, PackedZSet]
    assert run(shard, b"HGETALL", b"h") == [b"a", b"1", b"b", b"2"]
    assert run(shard, b"OBJECT", b"ENCODING", b"s") == b"intset"
    assert run(shard, b"TYPE", b"z") == "zset"
    assert type(stored[b"h"]) is PackedHash  # the read packed it again


def test_a_value_that_outgrows_its_compact_form_stays_full():
    shard = eager()
    run(shard, b"SADD", b"s", b"1")
    assert type(shard.db.data[b"s"]) is PackedIntSet
    run(shard, b"SADD", b"s", b"not-a-number")
    assert type(shard.db.data[b"s"]) is SetValue
    assert run(shard, b"OBJECT", b"ENCODING", b"s") == b"hashtable"
    run(shard, b"SREM", b"s", b"not-a-number")  # Redis never converts back: neither do we
    assert type(shard.db.data[b"s"]) is SetValue


def test_memory_usage_reports_the_packed_size():
    shard = eager()
    run(shard, b"HSET", b"h", *[part for i in range(10) for part in (b"f%d" % i, b"v%07d" % i)])
    packed = run(shard, b"MEMORY", b"USAGE", b"h")
    full = HashValue((b"f%d" % i, b"v%07d" % i) for i in range(10))
    as_dict = sys.getsizeof(full) + sum(map(sys.getsizeof, [*full, *full.values()]))
    assert isinstance(packed, int) and packed < 400 < as_dict


def test_the_running_memory_count_stays_exact_with_packing():
    """``used`` equals a count from scratch with a batch boundary (a repack) after each
    command, as with the commands run in one go (tests/test_memory.py)."""
    shard = eager()
    rng = random.Random(11)
    for step in range(4000):
        shard.execute_batch([(2, _random_command(rng))])
        if step % 400 == 0 or step == 3999:
            for db in shard.keyspaces():
                counted = db.memory()[0]
                db.recount()
                assert counted == db.used, (step, db.index)
    assert any(type(v).__name__.startswith("Packed")
               for db in shard.keyspaces() for v in db.data.values())


# End to end -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    server = start_shardis(2, "--enable-debug-command", "yes")
    yield server
    server.stop()


@pytest.fixture
def r(server):
    client = redis.Redis(port=server.port)
    client.flushall()
    yield client
    client.close()


SPREAD = ("h{1}", "l{2}", "s{3}", "z{4}")  # keys on several workers
TOGETHER = ("{p}h", "{p}l", "{p}s", "{p}z")  # all on one worker: one worker's RDB has them


def _fill(r: redis.Redis, keys: tuple[str, ...] = SPREAD) -> dict[str, object]:
    """One small value of each packed kind, and what it holds."""
    h, lst, s, z = keys
    r.hset(h, mapping={f"f{i}": f"v{i}" for i in range(10)})
    r.rpush(lst, *[f"e{i}" for i in range(10)])
    r.sadd(s, *range(-5, 5))
    r.zadd(z, {f"m{i}": i / 3 for i in range(10)})
    return _read(r, keys)


def _read(r: redis.Redis, keys: tuple[str, ...] = SPREAD) -> dict[str, object]:
    h, lst, s, z = keys
    return {"h": r.hgetall(h), "l": r.lrange(lst, 0, -1), "s": r.smembers(s),
            "z": r.zrange(z, 0, -1, withscores=True),
            "encodings": [r.object("encoding", k) for k in keys]}


def test_debug_reload_keeps_packed_values(r):
    before = _fill(r)
    assert before["encodings"] == [b"listpack", b"quicklist", b"intset", b"listpack"]
    assert r.execute_command("DEBUG", "RELOAD") in (b"OK", True)
    assert _read(r) == before


def test_an_rdb_with_packed_values_passes_redis_check_rdb_and_loads_in_redis(r, server):
    before = _fill(r, TOGETHER)
    r.save()
    files = [path for path in pathlib.Path(server.workdir).rglob("*.rdb")
             if path.stat().st_size > 100]
    assert len(files) == 1, files  # the one worker that has the keys
    check = subprocess.run(["redis-check-rdb", str(files[0])], capture_output=True, text=True)
    assert "RDB looks OK" in check.stdout, check.stdout
    oracle = start_redis(rdb=str(files[0]))
    try:
        client = redis.Redis(port=oracle.port)
        assert _read(client, TOGETHER) == before
        client.close()
    finally:
        oracle.stop()


def test_a_blocked_pop_is_served_from_a_packed_list(r, server):
    r.rpush("queue", "first")
    other = redis.Redis(port=server.port)
    try:
        assert other.blpop(["queue"], timeout=1) == (b"queue", b"first")
        pusher = redis.Redis(port=server.port)
        pusher.rpush("queue", "a", "b")
        time.sleep(0.05)
        assert other.blpop(["queue"], timeout=1) == (b"queue", b"a")
        assert r.lrange("queue", 0, -1) == [b"b"]
        pusher.close()
    finally:
        other.close()


def test_scans_of_packed_values_answer_whole(r):
    _fill(r)
    assert r.hscan("h{1}", 0, count=2)[0] == 0
    assert r.sscan("s{3}", 0, count=2)[0] == 0
    assert r.zscan("z{4}", 0, count=2)[0] == 0


def test_a_read_that_converts_the_encoding_is_not_undone():
    """SORT makes a listpack zset a skiplist without writing (as Redis): the packed form the
    read started from must not come back."""
    shard = eager()
    run(shard, b"ZADD", b"z", b"1", b"a", b"2", b"b")
    assert run(shard, b"SORT", b"z", b"ALPHA") == [b"a", b"b"]
    assert run(shard, b"OBJECT", b"ENCODING", b"z") == b"skiplist"
    assert type(shard.db.data[b"z"]) is ZSetValue


def test_a_value_only_read_gets_its_packed_form_back_unchanged():
    shard = eager()
    run(shard, b"HSET", b"h", b"f", b"v")
    before = shard.db.data[b"h"]
    assert run(shard, b"HGET", b"h", b"f") == b"v"
    assert shard.db.data[b"h"] is before
    run(shard, b"HSET", b"h", b"f", b"w")
    assert shard.db.data[b"h"] is not before
    assert run(shard, b"HGET", b"h", b"f") == b"w"


def test_values_in_use_stay_unpacked_until_housekeeping_or_the_limit():
    shard = Shard(0)
    run(shard, b"HSET", b"h", b"f", b"v")
    assert type(shard.db.data[b"h"]) is HashValue
    shard.housekeeping()
    assert type(shard.db.data[b"h"]) is PackedHash
    for i in range(LOOSE_LIMIT + 1):
        run(shard, b"RPUSH", b"l%d" % i, b"x")
    assert not shard.db.loose  # over the limit: packed at the end of that batch
    assert all(type(shard.db.data[b"l%d" % i]) is PackedList for i in range(LOOSE_LIMIT + 1))


def test_exists_type_and_touch_leave_a_packed_value_packed():
    shard = Shard(0)
    run(shard, b"HSET", b"h", b"f", b"v")
    shard.housekeeping()
    packed = shard.db.data[b"h"]
    assert type(packed) is PackedHash
    assert run(shard, b"EXISTS", b"h", b"nosuch") == 1
    assert run(shard, b"TYPE", b"h") == "hash"
    assert run(shard, b"TOUCH", b"h") == 1
    assert shard.db.data[b"h"] is packed and not shard.db.loose
