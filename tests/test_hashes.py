"""Hash behaviour through redis-py: HSCAN over big hashes (with churn), HRANDFIELD statistics
and reply shapes in both protocols, HINCRBYFLOAT against real Redis on random input, and hashes
moved between workers.

Byte-exact replies are the differential corpus's job (tests/test_diff_hashes.py).
"""

from __future__ import annotations

import collections
import random

import redis

from tests.test_atomicity import keys_on_distinct_workers


def _client(server, protocol: int = 3) -> redis.Redis:
    return redis.Redis(port=server.port, protocol=protocol)


def _raw(client: redis.Redis, *args: object) -> object:
    """A command's reply without redis-py's per-command reshaping."""
    return client.execute_command(*args, NEVER_DECODE=True)


# -- HSCAN ------------------------------------------------------------------------------------
def test_hscan_pages_through_a_big_hash(shardis_clean):
    client = _client(shardis_clean)
    fields = {f"f{n}": str(n) for n in range(3000)}
    client.hset("big", mapping=fields)
    assert client.object("encoding", "big") == b"hashtable"
    calls, cursor = 0, 0
    seen: list[tuple[bytes, bytes]] = []
    while True:
        cursor, page = client.hscan("big", cursor, count=100)
        calls += 1
        seen += page.items()
        if cursor == 0:
            break
    assert calls > 10
    assert len(seen) == 3000
    assert dict(seen) == {k.encode(): v.encode() for k, v in fields.items()}
    matched = dict(client.hscan_iter("big", match="f29*"))
    assert set(matched) == {f"f{n}".encode() for n in range(3000) if str(n).startswith("29")}


def test_hscan_returns_fields_present_throughout_despite_churn(shardis_clean):
    client = _client(shardis_clean)
    stable = {f"stable{n}": "v" for n in range(1000)}
    client.hset("h", mapping=stable)
    seen: set[bytes] = set()
    cursor, churn = 0, 0
    while True:
        cursor, page = client.hscan("h", cursor, count=41)
        seen.update(page)
        client.hset("h", mapping={f"churn{churn}-{n}": "x" for n in range(5)})
        client.hdel("h", *(f"churn{churn - 1}-{n}" for n in range(5)))
        churn += 1
        if cursor == 0:
            break
    assert {k.encode() for k in stable} <= seen


def test_hscan_restarts_when_the_key_is_replaced(shardis_clean):
    """A cursor into a value that was replaced restarts the iteration: fields may come twice,
    never go missing."""
    client = _client(shardis_clean)
    client.hset("h", mapping={f"f{n}": "v" for n in range(600)})
    cursor, first = client.hscan("h", 0, count=50)
    assert cursor != 0
    client.delete("h")
    client.hset("h", mapping={f"g{n}": "v" for n in range(600)})
    seen = set(first)
    while True:
        cursor, page = client.hscan("h", cursor, count=50)
        seen.update(page)
        if cursor == 0:
            break
    assert {f"g{n}".encode() for n in range(600)} <= seen


# -- HRANDFIELD -------------------------------------------------------------------------------
def test_hrandfield_negative_count_is_uniform(shardis_clean):
    client = _client(shardis_clean)
    client.hset("h", mapping={f"f{n}": n for n in range(8)})
    picks = collections.Counter(client.hrandfield("h", -16000))
    assert len(picks) == 8
    for count in picks.values():
        assert 1600 < count < 2400, picks


def test_hrandfield_positive_count_is_distinct(shardis_clean):
    client = _client(shardis_clean)
    client.hset("big", mapping={f"f{n}": n for n in range(1000)})
    seen: set[bytes] = set()
    for _ in range(100):
        sample = client.hrandfield("big", 100)
        assert len(set(sample)) == 100
        seen.update(sample)
    assert len(seen) > 990


def test_hrandfield_withvalues_shape_per_protocol(shardis_clean):
    """RESP3: an array of [field, value] pairs; RESP2: one flat array.  Values match fields."""
    for protocol in (2, 3):
        client = _client(shardis_clean, protocol)
        client.hset("h", mapping={"a": "1", "b": "2", "c": "3"})
        for count in (2, -7, 3, 10):
            reply = _raw(client, "HRANDFIELD", "h", count, "WITHVALUES")
            if protocol == 3:
                pairs = reply
                assert all(isinstance(pair, list) and len(pair) == 2 for pair in pairs)
            else:
                assert all(isinstance(item, bytes) for item in reply)
                pairs = list(zip(reply[::2], reply[1::2]))
            expected = min(count, 3) if count > 0 else -count
            assert len(pairs) == expected
            for field, value in pairs:
                assert {b"a": b"1", b"b": b"2", b"c": b"3"}[field] == value
        client.delete("h")


def test_hrandfield_errors_come_back_through_the_router(shardis_clean):
    client = _client(shardis_clean)
    client.set("s", "v")
    for args in (("s", 2, "WITHVALUES"), ("h", "x", "WITHVALUES")):
        try:
            _raw(client, "HRANDFIELD", *args)
        except redis.ResponseError as exc:
            assert str(exc).startswith(("WRONGTYPE", "value is not an integer"))
        else:
            raise AssertionError(f"HRANDFIELD {args} should fail")


# -- HINCRBYFLOAT against Redis -----------------------------------------------------------------
def test_hincrbyfloat_matches_redis_on_random_increments(shardis_clean, oracle_clean):
    rng = random.Random(11)
    ours, theirs = _client(shardis_clean, 2), _client(oracle_clean, 2)
    for step in range(300):
        field = f"f{step % 7}"
        mantissa = rng.choice(["1", "0.1", "3.14159", "2.5e10", "7e-5", "123456789.987654321"])
        increment = ("-" if rng.random() < 0.4 else "") + mantissa
        assert ours.hincrbyfloat("h", field, increment) == theirs.hincrbyfloat(
            "h", field, increment
        ), (field, increment)
    assert ours.hgetall("h") == theirs.hgetall("h")


def test_big_hash_contents_match_redis(shardis_clean, oracle_clean):
    ours, theirs = _client(shardis_clean, 2), _client(oracle_clean, 2)
    for client in (ours, theirs):
        client.hset("h", mapping={f"f{n}": "x" * (n % 70) for n in range(800)})
        client.hdel("h", *(f"f{n}" for n in range(0, 800, 3)))
        client.hincrby("h", "counter", 5)
    assert ours.hgetall("h") == theirs.hgetall("h")
    assert ours.object("encoding", "h") == theirs.object("encoding", "h")


# -- Hashes moved between workers, TYPE, SCAN TYPE, empty hashes -------------------------------
def test_rename_and_copy_move_hashes_between_workers(shardis_clean):
    a, b, c = keys_on_distinct_workers(3)
    client = _client(shardis_clean)
    client.hset(a, mapping={"x": "1", "long": "v" * 100})
    client.expire(a, 1000)
    client.rename(a, b)
    assert client.exists(a) == 0
    assert client.hgetall(b) == {b"x": b"1", b"long": b"v" * 100}
    assert client.object("encoding", b) == b"hashtable"
    assert 990 < client.ttl(b) <= 1000
    assert client.copy(b, c) == 1
    client.hdel(c, "long")
    assert client.hlen(b) == 2 and client.hlen(c) == 1
    assert client.object("encoding", c) == b"hashtable"
    assert client.type(c) == b"hash"
    client.sadd("set", "m")
    assert set(client.scan_iter(_type="hash")) == {b.encode(), c.encode()}
    assert isinstance(client.memory_usage(b), int)


def test_empty_hashes_disappear(shardis_clean):
    client = _client(shardis_clean)
    client.hset("h", mapping={"a": "1", "b": "2"})
    client.hdel("h", "a", "b")
    assert client.exists("h") == 0
    client.hsetnx("h", "a", "1")
    client.hdel("h", "a")
    client.hincrby("h", "n", 1)
    client.hdel("h", "n")
    assert client.keys("*") == []


def test_random_hash_operations_match_redis(shardis_clean, oracle_clean):
    """Random HSET/HDEL/HSETNX/HINCRBY with fields and values around the listpack limits
    (64 bytes, 512 fields): replies, OBJECT ENCODING and contents must match Redis after every
    step, in order while Redis keeps a listpack."""
    rng = random.Random(3)
    ours, theirs = _client(shardis_clean, 2), _client(oracle_clean, 2)

    def text() -> str:
        """Mostly short; now and then exactly at or just past the 64-byte limit."""
        if rng.random() < 0.02:
            return "x" * rng.choice([64, 65])
        return "v" * rng.randrange(20) + str(rng.randrange(100))

    def field() -> str:
        return f"f{rng.randrange(700)}" if rng.random() < 0.99 else text()

    def step() -> tuple:
        kind = rng.randrange(12)
        key = rng.choice(["h1", "h2"])
        if kind == 0:
            return ("DEL", key)
        if kind <= 5:
            pairs = [item for _ in range(rng.randrange(1, 120)) for item in (field(), text())]
            return ("HSET", key, *pairs)
        if kind <= 8:
            return ("HDEL", key, *(field() for _ in range(rng.randrange(1, 150))))
        if kind == 9:
            return ("HSETNX", key, field(), text())
        return ("HINCRBY", key, f"n{rng.randrange(5)}", rng.randrange(-9, 9))

    for _ in range(500):
        command = step()
        assert ours.execute_command(*command) == theirs.execute_command(*command), command
        for key in ("h1", "h2"):
            encoding = theirs.object("encoding", key)
            assert ours.object("encoding", key) == encoding, (command, key)
            mine, redis_ = ours.hgetall(key), theirs.hgetall(key)
            assert mine == redis_
            if encoding == b"listpack":
                assert list(mine) == list(redis_), (command, key)
