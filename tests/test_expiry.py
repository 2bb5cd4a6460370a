"""Key expiry on every worker: TTL commands and lazy expiry of short TTLs."""

import time

import redis


def test_short_ttls_expire_on_access(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.mset({f"e{i}": i for i in range(30)})
    for i in range(30):
        client.pexpire(f"e{i}", 100)
    client.set("keep", 1)
    assert client.exists(*[f"e{i}" for i in range(30)]) == 30
    time.sleep(0.25)
    assert client.mget([f"e{i}" for i in range(30)]) == [None] * 30
    assert client.dbsize() == 1
    assert client.keys("*") == [b"keep"]


def test_ttl_commands(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    assert client.ttl("none") == -2
    client.set("k", "v")
    assert client.ttl("k") == -1
    assert client.expire("k", 100) is True
    assert 99 <= client.ttl("k") <= 100
    assert 99_000 <= client.pttl("k") <= 100_000
    assert client.expire("k", 50, gt=True) is False
    assert client.expire("k", 50, lt=True) is True
    assert client.persist("k") is True
    assert client.ttl("k") == -1
    at = int(time.time()) + 1000
    assert client.expireat("k", at) is True
    assert client.expiretime("k") == at
    assert client.expire("k", -1) is True
    assert client.exists("k") == 0


def test_set_clears_ttl_and_incr_keeps_it(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.set("n", 1, ex=100)
    client.incr("n")
    client.append("n", "0")
    assert client.ttl("n") > 0
    client.set("n", 5)
    assert client.ttl("n") == -1
