"""Set behaviour through redis-py: cross-worker SMOVE and set algebra (atomicity included),
random sampling statistics, SSCAN over big sets, and sets moved between workers.

Byte-exact replies are the differential corpus's job (tests/test_diff_sets.py); these tests
check what a corpus cannot: concurrency, randomness and long iterations.
"""

from __future__ import annotations

import collections
import random
import threading

import redis

from shardis.slots import SlotMap
from tests.test_atomicity import keys_on_distinct_workers


def _client(server, protocol: int = 3) -> redis.Redis:
    return redis.Redis(port=server.port, protocol=protocol)


def _members(values) -> set[bytes]:
    return {bytes(v) for v in values}


# -- SMOVE across workers ---------------------------------------------------------------------
def test_smove_across_workers_is_never_seen_half_done(shardis_clean):
    """A member moving between two workers is always in exactly one of the sets for readers
    whose reads span both workers (SUNION/SINTER are gathered in one batch)."""
    source, target = keys_on_distinct_workers(2)
    members = [f"m{n}" for n in range(20)]
    client = _client(shardis_clean)
    client.sadd(source, *members)
    stop = threading.Event()
    torn: list[str] = []

    def mover() -> None:
        mover_client = _client(shardis_clean)
        for round_ in range(150):
            a, b = (source, target) if round_ % 2 == 0 else (target, source)
            for member in random.sample(members, 5):
                mover_client.smove(a, b, member)
        stop.set()

    def reader() -> None:
        reader_client = _client(shardis_clean, protocol=2)
        while not stop.is_set():
            union = reader_client.sunion(source, target)
            both = reader_client.sintercard(2, [source, target])
            if len(union) != len(members) or both:
                torn.append(f"union={len(union)} both={both}")

    threads = [threading.Thread(target=mover)] + [threading.Thread(target=reader)
                                                   for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not torn, torn[:5]
    assert client.scard(source) + client.scard(target) == len(members)


def test_smove_contention_moves_each_member_once(shardis_clean):
    """Eight clients pipeline SMOVEs of the same members: each member moves exactly once, so
    exactly one SMOVE per member answers 1 (the check and the move are one atomic step)."""
    source, target = keys_on_distinct_workers(2)
    members = [f"m{n}" for n in range(200)]
    _client(shardis_clean).sadd(source, *members)
    wins: list[int] = []
    barrier = threading.Barrier(8)

    def contender(seed: int) -> None:
        client = _client(shardis_clean)
        order = members[:]
        random.Random(seed).shuffle(order)
        pipe = client.pipeline(transaction=False)
        for member in order:
            pipe.smove(source, target, member)
        barrier.wait()
        wins.append(sum(pipe.execute()))

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(wins) == len(members), wins
    client = _client(shardis_clean)
    assert client.exists(source) == 0
    assert client.scard(target) == len(members)


def test_smove_empties_the_source_and_creates_the_target(shardis_clean):
    source, target = keys_on_distinct_workers(2)
    client = _client(shardis_clean)
    client.sadd(source, "only")
    client.expire(source, 100)
    assert client.smove(source, target, "only") == 1
    assert client.exists(source) == 0
    assert client.ttl(target) == -1
    assert client.type(target) == b"set"
    assert client.object("encoding", target) == b"hashtable"
    client.sadd(source, "7")
    assert client.smove(source, "{x}" + target, "7") == 1
    assert client.object("encoding", "{x}" + target) == b"intset"


# -- Set algebra across workers ---------------------------------------------------------------
def _random_sets(rng: random.Random, count: int) -> list[set[bytes]]:
    universe = [str(n).encode() for n in range(40)] + [f"s{n}".encode() for n in range(40)]
    return [set(rng.sample(universe, rng.randrange(0, 30))) for _ in range(count)]


def test_set_algebra_across_workers_matches_python_sets(shardis_clean):
    client = _client(shardis_clean)
    keys = keys_on_distinct_workers(3) + ["{t}one", "{t}two"]
    rng = random.Random(7)
    for _ in range(30):
        client.delete(*keys)
        sets = _random_sets(rng, len(keys))
        for key, members in zip(keys, sets):
            if members:
                client.sadd(key, *members)
        chosen = rng.sample(range(len(keys)), rng.randrange(1, len(keys) + 1))
        names = [keys[i] for i in chosen]
        picked = [sets[i] for i in chosen]
        union = set().union(*picked)
        inter = set.intersection(*picked)
        diff = picked[0].difference(*picked[1:])
        assert _members(client.sunion(names)) == union
        assert _members(client.sinter(names)) == inter
        assert _members(client.sdiff(names)) == diff
        assert client.sintercard(len(names), names) == len(inter)
        assert client.sintercard(len(names), names, limit=2) == min(len(inter), 2)
        # (storing into a source key is the differential corpus's case)
        outside = [key for key in keys if key not in names] + ["dest:elsewhere", "{t}dest"]
        destination = rng.choice(outside)
        assert client.sunionstore(destination, names) == len(union)
        assert _members(client.smembers(destination)) == union
        assert client.sinterstore(destination, names) == len(inter)
        assert client.exists(destination) == int(bool(inter))
        assert client.sdiffstore(destination, names) == len(diff)
        assert _members(client.smembers(destination)) == diff


def test_store_across_workers_sees_one_moment(shardis_clean):
    """SUNIONSTORE/SINTERSTORE over two workers while members move between them: the stored
    union always has every member, the stored intersection is always empty."""
    source, target = keys_on_distinct_workers(2)
    destination = keys_on_distinct_workers(3)[2]
    members = [str(n) for n in range(10)]
    client = _client(shardis_clean)
    client.sadd(source, *members)
    stop = threading.Event()
    wrong: list[str] = []

    def mover() -> None:
        mover_client = _client(shardis_clean)
        for round_ in range(300):
            a, b = (source, target) if round_ % 2 == 0 else (target, source)
            for member in members[:3]:
                mover_client.smove(a, b, member)
        stop.set()

    def storer() -> None:
        storer_client = _client(shardis_clean)
        while not stop.is_set():
            stored = storer_client.sunionstore(destination, [source, target])
            if stored != len(members):
                wrong.append(f"union stored {stored}")
            common = storer_client.sinterstore(destination + ":i", [source, target])
            if common:
                wrong.append(f"intersection stored {common}")

    threads = [threading.Thread(target=mover), threading.Thread(target=storer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not wrong, wrong[:5]


def test_store_replaces_the_destination_of_any_type(shardis_clean):
    a, b, c = keys_on_distinct_workers(3)
    client = _client(shardis_clean)
    client.sadd(a, "1", "2")
    client.sadd(b, "2", "3")
    client.set(c, "a string", ex=100)
    assert client.sunionstore(c, [a, b]) == 3
    assert client.type(c) == b"set"
    assert client.ttl(c) == -1
    assert client.smembers(c) == {b"1", b"2", b"3"}
    assert client.object("encoding", c) == b"intset"
    assert client.sinterstore(c, [a, "missing"]) == 0
    assert client.exists(c) == 0
    client.set(c, "x")
    try:
        client.sunion(a, c)
    except redis.ResponseError as exc:
        assert str(exc).startswith("WRONGTYPE")
    else:
        raise AssertionError("SUNION over a string key must fail")
    try:
        client.sunionstore("dest", [a, c])
    except redis.ResponseError as exc:
        assert str(exc).startswith("WRONGTYPE")
    assert client.exists("dest") == 0


# -- Randomness -------------------------------------------------------------------------------
def test_srandmember_negative_count_is_uniform(shardis_clean):
    client = _client(shardis_clean)
    members = [f"m{n}" for n in range(10)]
    client.sadd("s", *members)
    picks = collections.Counter(client.srandmember("s", -20000))
    assert set(picks) == {m.encode() for m in members}
    for count in picks.values():
        assert 1600 < count < 2400, picks


def test_srandmember_positive_count_is_distinct_and_covers_the_set(shardis_clean):
    client = _client(shardis_clean)
    client.sadd("big", *range(1000))
    seen: set[bytes] = set()
    for _ in range(200):
        sample = client.srandmember("big", 50)
        assert len(sample) == len(set(sample)) == 50
        seen.update(sample)
    assert len(seen) > 990
    assert len(set(client.srandmember("big", 900))) == 900


def test_sampling_stays_uniform_after_removals(shardis_clean):
    """The sampling pool keeps removed members as dead entries: they must never come back, and
    the live ones must stay equally likely."""
    client = _client(shardis_clean)
    client.sadd("s", *range(200))
    client.srandmember("s", -10)  # builds the pool
    client.srem("s", *range(0, 200, 2))
    picks = collections.Counter(client.srandmember("s", -50000))
    assert set(picks) == {str(n).encode() for n in range(1, 200, 2)}
    assert min(picks.values()) > 250 and max(picks.values()) < 750, picks
    client.sadd("s", "new")
    assert b"new" in set(client.srandmember("s", -5000))


def test_spop_drains_every_member_once(shardis_clean):
    client = _client(shardis_clean)
    client.sadd("s", *range(700))
    popped: list[bytes] = []
    popped += client.spop("s", 3)
    popped.append(client.spop("s"))
    popped += client.spop("s", 600)
    while client.exists("s"):
        popped.append(client.spop("s"))
    assert sorted(popped, key=int) == [str(n).encode() for n in range(700)]
    assert client.spop("s") is None


def test_spop_first_member_frequencies(shardis_clean):
    client = _client(shardis_clean)
    counts: collections.Counter = collections.Counter()
    for _ in range(1500):
        client.sadd("s", "a", "b", "c")
        counts[client.spop("s")] += 1
        client.delete("s")
    assert set(counts) == {b"a", b"b", b"c"}
    assert min(counts.values()) > 400, counts


# -- SSCAN ------------------------------------------------------------------------------------
def test_sscan_pages_through_a_big_set(shardis_clean):
    client = _client(shardis_clean)
    client.sadd("big", *(f"m{n}" for n in range(3000)))
    calls = 0
    seen: list[bytes] = []
    cursor = 0
    while True:
        cursor, page = client.sscan("big", cursor, count=100)
        calls += 1
        seen += page
        if cursor == 0:
            break
    assert calls > 10
    assert len(seen) == len(set(seen)) == 3000
    assert set(client.sscan_iter("big", match="m12*")) == {
        f"m{n}".encode() for n in range(3000) if str(n).startswith("12")
    }


def test_sscan_returns_members_present_throughout_despite_churn(shardis_clean):
    client = _client(shardis_clean)
    stable = {f"stable{n}".encode() for n in range(1000)}
    client.sadd("s", *stable)
    seen: set[bytes] = set()
    cursor = 0
    churn = 0
    while True:
        cursor, page = client.sscan("s", cursor, count=37)
        seen.update(page)
        client.sadd("s", *(f"churn{churn}-{n}" for n in range(5)))
        client.srem("s", *(f"churn{churn - 1}-{n}" for n in range(5)))
        churn += 1
        if cursor == 0:
            break
    assert stable <= seen


# -- Sets moved between workers, TYPE, SCAN TYPE ----------------------------------------------
def test_rename_and_copy_move_sets_between_workers(shardis_clean):
    a, b, c = keys_on_distinct_workers(3)
    assert SlotMap(3).worker_of(a.encode()) != SlotMap(3).worker_of(b.encode())
    client = _client(shardis_clean)
    client.sadd(a, "x", "y", "z")
    client.expire(a, 1000)
    client.rename(a, b)
    assert client.exists(a) == 0
    assert client.smembers(b) == {b"x", b"y", b"z"}
    assert 990 < client.ttl(b) <= 1000
    assert client.copy(b, c) == 1
    client.srem(c, "x")
    assert client.scard(b) == 3 and client.scard(c) == 2
    assert client.type(c) == b"set"
    client.set("plain", "v")
    client.hset("hash", "f", "v")
    assert set(client.scan_iter(_type="set")) == {b.encode(), c.encode()}
    assert isinstance(client.memory_usage(b), int)


def test_empty_sets_disappear(shardis_clean):
    client = _client(shardis_clean)
    client.sadd("s", "a", "b")
    client.srem("s", "a", "b")
    assert client.exists("s") == 0
    client.sadd("s", "a")
    assert client.spop("s") == b"a"
    assert client.exists("s") == 0
    client.sadd("s", "a", "b")
    client.spop("s", 5)
    assert client.exists("s") == 0
    assert client.keys("*") == []


# -- Random operations against real Redis ----------------------------------------------------
def test_random_set_operations_match_redis(shardis_clean, oracle_clean):
    """Random SADD/SREM/SMOVE/*STORE over keys on all workers, mostly integers: replies,
    contents and OBJECT ENCODING must match Redis after every step (member order exactly
    where Redis's encoding fixes it, i.e. for intsets)."""
    rng = random.Random(5)
    keys = keys_on_distinct_workers(3) + ["{t}a", "{t}b"]
    ours, theirs = _client(shardis_clean, 2), _client(oracle_clean, 2)

    def member() -> str:
        if rng.random() < 0.01:
            return rng.choice([f"s{rng.randrange(20)}", "01", "-0"])
        return str(rng.randrange(-20, 600))

    def step() -> tuple:
        kind = rng.randrange(7)
        if kind == 6:
            return ("DEL", rng.choice(keys))
        if kind <= 1:
            return ("SADD", rng.choice(keys), *(member() for _ in range(rng.randrange(1, 60))))
        if kind == 2:
            return ("SREM", rng.choice(keys), *(member() for _ in range(rng.randrange(1, 40))))
        if kind == 3:
            return ("SMOVE", rng.choice(keys), rng.choice(keys), member())
        store = rng.choice(["SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE"])
        return (store, rng.choice(keys), *rng.sample(keys, rng.randrange(1, 4)))

    for _ in range(400):
        command = step()
        assert ours.execute_command(*command) == theirs.execute_command(*command), command
        for key in keys:
            encoding = theirs.object("encoding", key)
            assert ours.object("encoding", key) == encoding, (command, key)
            if encoding == b"intset":
                assert ours.execute_command("SMEMBERS", key) == theirs.execute_command(
                    "SMEMBERS", key
                )
            else:
                assert ours.smembers(key) == theirs.smembers(key), (command, key)
