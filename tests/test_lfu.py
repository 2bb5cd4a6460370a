"""OBJECT FREQ under an LFU maxmemory-policy (``maxmemory-policy *-lfu``, ``lfu-log-factor``,
``lfu-decay-time``), byte for byte against real Redis 7.0 on servers of their own (the policy
is server-wide).  The first accesses of a key are deterministic (a counter at or below
LFU_INIT_VAL always goes up), later ones are probabilistic as in Redis.  (Redis shares the objects of small integers
between keys, and their counters with them: a key holding "1" shows a shared, meaningless
counter there; shardis keeps one per key.)"""

from __future__ import annotations

import pytest
import redis

from tests.differential import check, script, sorted_
from tests.servers import start_redis, start_shardis

LFU = script(
    "lfu",
    ["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"],
    ["CONFIG", "GET", "maxmemory-policy"],
    ["SET", "k", "v"],
    ["OBJECT", "FREQ", "k"],
    ["GET", "k"],
    ["OBJECT", "FREQ", "k"],
    ["OBJECT", "IDLETIME", "k"],
    ["OBJECT", "FREQ", "missing"],
    ["MSET", "a", "x1", "h", "x2", "c", "x3"],
    ["OBJECT", "FREQ", "h"],
    ["RESTORE", "r", "0", bytes.fromhex("000176090012d9ab6a8b0b7f61"), "FREQ", "100"],
    ["OBJECT", "FREQ", "r"],
    ["RESTORE", "r2", "0", bytes.fromhex("000176090012d9ab6a8b0b7f61"), "IDLETIME", "100"],
    ["OBJECT", "FREQ", "r2"],
    ["CONFIG", "SET", "lfu-log-factor", "0"],
    ["CONFIG", "SET", "lfu-decay-time", "0"],
    sorted_("CONFIG", "GET", "lfu-*"),  # Redis's order is its dict's
    ["CONFIG", "SET", "lfu-log-factor", "-1"],
    ["CONFIG", "SET", "maxmemory-policy", "bogus"],
    ["CONFIG", "SET", "maxmemory-policy", "volatile-lru"],
    ["OBJECT", "FREQ", "k"],
    protocols=(2,),
)


@pytest.fixture(scope="module")
def servers():
    pair = start_redis(), start_shardis(3)
    yield pair
    for server in pair:
        server.stop()


def test_object_freq_under_lfu_as_redis(servers):
    check(servers[0], servers[1], LFU, 2)


def test_lfu_counters_grow_logarithmically_and_decay():
    server = start_shardis(1, "--maxmemory-policy", "allkeys-lfu", "--lfu-log-factor", "0")
    try:
        client = redis.Redis(port=server.port)
        client.set("k", "v")
        for _ in range(300):
            client.get("k")  # factor 0: every access counts, up to 255
        assert client.object("freq", "k") == 255
        client.config_set("lfu-log-factor", "10")
        client.set("hot", "v")
        for _ in range(1000):
            client.get("hot")
        assert 10 < client.object("freq", "hot") < 40  # log(1000)-ish, as Redis
    finally:
        server.stop()
