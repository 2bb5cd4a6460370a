"""Key expiry on every worker: the TTL commands, lazy expiry, active expiry, the clock.

Two kinds of tests:

* through a real shardis (3 workers) with short TTLs (50-200 ms; no test sleeps more than 2 s):
  lazy expiry, active expiry with no reads at all, TTL preservation rules, cross-worker RENAME
  and COPY with a TTL, the INFO counters;
* in-process, on a :class:`~shardis.worker.shard.Shard` with a fake clock: what each command sees
  of a key whose deadline has passed *before* active expiry reclaimed it (through a server the
  active cycle is usually faster than the test), the timing wheel against a brute-force model,
  the time budget, the index rebuild, and wall-clock jumps.

Byte-for-byte comparisons with Redis are in tests/test_diff_expiry.py.
"""

from __future__ import annotations

import random
import time

import pytest
import redis

from shardis.worker import keyspace as keyspace_module
from shardis.worker.keyspace import FINE_SHIFT, Keyspace
from shardis.worker.shard import Shard
from tests.resp_client import decode
from tests.test_atomicity import keys_on_distinct_workers

# -- through the server --------------------------------------------------------------------------


def wait_until(condition, timeout: float = 2.0, interval: float = 0.02) -> float:
    """Poll ``condition`` until it is true; returns the seconds it took (fails after timeout)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def keyspace_keys(client: redis.Redis) -> int:
    """INFO keyspace ``keys=``: keys not reclaimed yet.  INFO never reclaims a key itself."""
    return client.info("keyspace").get("db0", {}).get("keys", 0)


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


def test_expired_keys_are_invisible_to_every_read(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    names = [f"gone:{i}" for i in range(12)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.set(name, "v", px=60)
    pipe.set("stay", "v")
    pipe.execute()
    time.sleep(0.2)
    assert client.get(names[0]) is None
    assert client.exists(*names) == 0
    assert client.mget(names[1:4]) == [None, None, None]
    assert client.type(names[4]) == b"none"
    assert client.ttl(names[5]) == -2 and client.pttl(names[5]) == -2
    assert client.expiretime(names[6]) == -2
    assert client.object("encoding", names[7]) is None
    assert client.memory_usage(names[8]) is None
    assert client.keys("gone:*") == []
    assert list(client.scan_iter(match="gone:*")) == []
    assert client.randomkey() == b"stay"
    assert client.dbsize() == 1


def test_active_expiry_reclaims_keys_nobody_reads(shardis_clean):
    """Thousands of keys with 50-200 ms TTLs on every worker, never read: INFO keyspace and
    DBSIZE drop to 0 within 2 s."""
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    before = client.info("stats")["expired_keys"]
    rng = random.Random(5)
    pipe = client.pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"active:{i}", "v", px=rng.randint(50, 200))
    pipe.execute()
    info = client.info("keyspace")["db0"]
    assert info["keys"] > 0 and info["expires"] == info["keys"]
    took = wait_until(lambda: keyspace_keys(client) == 0 and client.dbsize() == 0)
    assert took < 2.0
    assert client.info("stats")["expired_keys"] - before == 3000
    assert client.info("keyspace") == {}


def test_active_expiry_leaves_live_keys_alone(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    pipe = client.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"short:{i}", "v", px=50)
        pipe.set(f"long:{i}", "v", ex=100)
        pipe.set(f"plain:{i}", "v")
    pipe.execute()
    wait_until(lambda: keyspace_keys(client) == 1000)
    info = client.info("keyspace")["db0"]
    assert info["expires"] == 500
    assert client.dbsize() == 1000
    assert client.exists(*[f"long:{i}" for i in range(500)]) == 500


def test_expire_in_the_past_deletes_without_counting_as_expired(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    before = client.info("stats")["expired_keys"]
    client.mset({"a": 1, "b": 2, "c": 3, "d": 4})
    assert client.expire("a", 0) is True
    assert client.pexpire("b", -1) is True
    assert client.expireat("c", 1) is True
    assert client.getex("d", exat=1) == b"4"
    assert client.dbsize() == 0
    assert client.info("stats")["expired_keys"] == before  # deleted, as Redis does: not expired


def test_set_clears_the_ttl_and_in_place_updates_keep_it(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.set("n", 1, ex=100)
    client.incr("n")
    client.append("n", "0")
    client.setrange("n", 0, "3")
    client.incrbyfloat("n", 1)
    assert client.ttl("n") > 0
    client.set("n", 5)
    assert client.ttl("n") == -1


def test_ttl_rules_with_short_ttls(shardis_clean):
    """What keeps a 200 ms TTL (the key still vanishes) and what clears it (the key stays)."""
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    kept = ["k:append", "k:incr", "k:setrange", "k:incrbyfloat", "k:keepttl", "k:setnx"]
    cleared = ["c:set", "c:getset", "c:mset", "c:persist", "c:getex"]
    for key in kept + cleared:
        client.set(key, "1", px=200)
    client.append("k:append", "2")
    client.incr("k:incr")
    client.setrange("k:setrange", 0, "9")
    client.incrbyfloat("k:incrbyfloat", 0.5)
    client.set("k:keepttl", "2", keepttl=True)
    client.setnx("k:setnx", "2")
    client.set("c:set", "2")
    client.getset("c:getset", "2")
    client.mset({"c:mset": "2"})
    client.persist("c:persist")
    client.getex("c:getex", persist=True)
    assert all(client.pttl(key) in range(-2, 201) and client.pttl(key) != -1 for key in kept)
    assert all(client.ttl(key) == -1 for key in cleared)
    time.sleep(0.4)
    assert client.exists(*kept) == 0
    assert client.exists(*cleared) == len(cleared)


def test_del_and_flush_remove_the_ttl(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    client.set("d", "1", px=100)
    client.delete("d")
    client.set("d", "2")
    client.set("f", "1", px=100)
    client.flushall()
    client.set("f", "2")
    client.set("d", "2")
    assert client.info("keyspace")["db0"]["expires"] == 0
    time.sleep(0.2)
    assert client.mget("d", "f") == [b"2", b"2"]


@pytest.mark.parametrize("command", ["rename", "renamenx", "copy"])
def test_cross_worker_move_carries_the_ttl(shardis_clean, command):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    src, dst = keys_on_distinct_workers(2)
    deadline = int(time.time() * 1000) + 100_000
    client.set(src, "v", pxat=deadline)
    assert getattr(client, command)(src, dst)
    assert client.pexpiretime(dst) == deadline
    # ... and a short one still runs out, on the new worker, with nobody reading it.
    client.delete(src, dst)
    before = client.info("stats")["expired_keys"]
    client.set(src, "v", px=200)
    getattr(client, command)(src, dst)
    assert client.pttl(dst) <= 200 and client.pttl(dst) != -1  # kept (or already run out)
    expected = 2 if command == "copy" else 1
    wait_until(lambda: client.info("stats")["expired_keys"] - before == expected)
    assert client.exists(src, dst) == 0


def test_cross_worker_rename_onto_a_key_with_a_ttl(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    src, dst = keys_on_distinct_workers(2)
    client.set(dst, "old", px=100)
    client.set(src, "new")
    client.rename(src, dst)
    assert client.ttl(dst) == -1
    time.sleep(0.2)
    assert client.get(dst) == b"new"


def test_info_keyspace_counts_expires_on_every_worker(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    keys = keys_on_distinct_workers(3)
    for key in keys:
        client.set(key, "v", ex=100)
    client.set("plain", "v")
    db0 = client.info("keyspace")["db0"]
    assert db0["keys"] == 4 and db0["expires"] == 3
    client.persist(keys[0])
    assert client.info("keyspace")["db0"]["expires"] == 2


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


# -- in process, with a fake clock ---------------------------------------------------------------


class FakeClock:
    """Stands in for the keyspace's monotonic and wall clocks."""

    def __init__(self) -> None:
        self.mono_ns = 10**15
        self.wall = 1_800_000_000_000  # Unix ms

    def advance(self, ms: int) -> None:
        self.mono_ns += ms * 1_000_000
        self.wall += ms


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(keyspace_module, "monotonic_ns", lambda: fake.mono_ns)
    monkeypatch.setattr(keyspace_module, "wall_ms", lambda: fake.wall)
    return fake


@pytest.fixture
def shard(clock) -> Shard:
    return Shard(0)


def run(shard: Shard, *args: str | bytes) -> object:
    """One command through the worker's executor, decoded (RESP2)."""
    raw = [a.encode() if isinstance(a, str) else a for a in args]
    return decode(shard.execute_batch([(2, raw)])[0])


def test_every_read_hides_a_key_whose_deadline_passed_before_active_expiry(shard, clock):
    """No active cycle runs here: each command meets the expired key itself."""
    names = [f"k{i}" for i in range(20)]
    for name in names:
        run(shard, "SET", name, "12", "PX", "100")
    run(shard, "SET", "live", "v")
    clock.advance(101)
    db = shard.db
    assert len(db.data) == 21  # nothing reclaimed yet
    assert run(shard, "GET", "k0") is None
    assert run(shard, "EXISTS", "k1", "live") == 1
    assert run(shard, "MGET", "k2", "live") == [None, b"v"]
    assert run(shard, "TYPE", "k3") == "none"
    assert run(shard, "TTL", "k4") == -2
    assert run(shard, "PEXPIRETIME", "k5") == -2
    assert run(shard, "OBJECT", "ENCODING", "k6") is None
    assert run(shard, "OBJECT", "IDLETIME", "k7") is None
    # Redis 7.0's MEMORY USAGE looks in the dict without expiring: a key nothing has
    # reclaimed yet is measured.
    assert isinstance(run(shard, "MEMORY", "USAGE", "k8"), int)
    assert run(shard, "STRLEN", "k9") == 0
    assert run(shard, "INCR", "k10") == 1
    assert run(shard, "TTL", "k10") == -1
    assert run(shard, "SETNX", "k11", "x") == 1
    assert run(shard, "EXPIRE", "k12", "100") == 0
    assert run(shard, "PERSIST", "k13") == 0
    assert run(shard, "GETEX", "k14", "PERSIST") is None
    assert run(shard, "TOUCH", "k15") == 0
    # DBSIZE never counts an expired key (it reclaims what is due first).
    assert run(shard, "DBSIZE") == len(db.data) == 3
    assert sorted(run(shard, "KEYS", "*")) == [b"k10", b"k11", b"live"]
    for name in names[16:]:
        run(shard, "SET", name, "v", "PXAT", str(clock.wall - 1))  # already expired
    _, _, found = run(shard, "__scan", "0", "0", "COUNT", "100")
    assert sorted(found) == [b"k10", b"k11", b"live"]
    run(shard, "DEL", "k10", "k11")
    run(shard, "SET", "k16", "v", "PXAT", str(clock.wall - 1))
    assert all(run(shard, "RANDOMKEY") == b"live" for _ in range(20))
    assert db.expired_keys >= 19


def test_a_deadline_equal_to_now_is_still_alive(shard, clock):
    """Redis: a key is expired when now > deadline; setting a deadline <= now deletes it."""
    run(shard, "SET", "k", "v", "PXAT", str(clock.wall + 5))
    clock.advance(5)
    assert run(shard, "GET", "k") == b"v"
    assert run(shard, "PTTL", "k") == 0
    clock.advance(1)
    assert run(shard, "GET", "k") is None
    run(shard, "SET", "k", "v")
    assert run(shard, "PEXPIREAT", "k", str(clock.wall)) == 1
    assert run(shard, "EXISTS", "k") == 0


def test_reads_that_are_not_an_access_leave_the_idle_time_alone(shard, clock):
    run(shard, "SET", "k", "v", "EX", "100")
    clock.advance(5000)
    for args in (("EXISTS", "k"), ("TYPE", "k"), ("TTL", "k"), ("PTTL", "k"),
                 ("EXPIRETIME", "k"), ("OBJECT", "ENCODING", "k"), ("MEMORY", "USAGE", "k"),
                 ("RANDOMKEY",), ("__scan", "0", "0"), ("KEYS", "*"), ("DBSIZE",)):
        run(shard, *args)
    assert run(shard, "OBJECT", "IDLETIME", "k") == 5
    run(shard, "EXPIRE", "k", "200")  # a write is an access
    assert run(shard, "OBJECT", "IDLETIME", "k") == 0


def test_active_expiry_reclaims_at_most_one_bucket_after_the_deadline(clock):
    db = Keyspace()
    base = clock.wall
    for i in range(1000):
        db.set(b"k%d" % i, b"v")
        db.set_deadline(b"k%d" % i, base + 50 + i)
    db.touched.clear()
    for step in range(0, 1200, 10):
        clock.advance(10)
        db.active_expire(1.0)
        now = db.now_ms
        remaining = [when for when in db.expires.values() if when < now - (1 << FINE_SHIFT)]
        assert not remaining, f"at +{step} ms, keys expired more than 64 ms ago are left"
    assert not db.data and db.expired_keys == 1000


def test_far_deadlines_are_filed_coarsely_and_reclaimed_on_time(clock):
    db = Keyspace()
    spans = [70_000, 3_600_000, 86_400_000 * 30, 86_400_000 * 365 * 50]
    for i, span in enumerate(spans):
        db.set(b"k%d" % i, b"v")
        db.set_deadline(b"k%d" % i, clock.wall + span)
    assert len(db._index.buckets) == 4
    start = clock.wall
    for i, span in enumerate(spans):
        clock.advance(start + span - clock.wall - 1)
        db.active_expire(1.0)
        assert b"k%d" % i in db.data  # filed into finer buckets on the way, not reclaimed
        clock.advance(200)
        db.active_expire(1.0)
        assert b"k%d" % i not in db.data
    assert db._index.entries == 0


def test_wheel_matches_a_brute_force_model(clock):
    """Random writes, deadline changes, deletes and clock steps; after each active cycle no key
    is more than one fine bucket late, and live_keys leaves no expired key."""
    rng = random.Random(1234)
    db = Keyspace()
    keys = [b"key:%d" % i for i in range(300)]
    for round_ in range(400):
        for _ in range(20):
            key = rng.choice(keys)
            op = rng.random()
            now = db.now_ms
            if op < 0.3:
                db.set(key, b"v", keep_ttl=rng.random() < 0.3)
            elif op < 0.65:
                if db.get(key) is not None:
                    db.set_deadline(key, now + rng.choice([-5, 0, 1, 30, 200, 5000, 90_000]))
            elif op < 0.75:
                db.persist(key)
            elif op < 0.85:
                db.delete(key)
            else:
                db.get(key)
        clock.advance(rng.choice([1, 10, 50, 300, 2000]))
        db.active_expire(1.0)
        now = db.now_ms
        late = [k for k, when in db.expires.items() if when < now - (1 << FINE_SHIFT)]
        assert not late, f"round {round_}: {late[:3]} not reclaimed"
        assert db._deadline_sum == sum(db.expires.values())
        assert set(db.expires) <= set(db.data)
        if round_ % 10 == 0:
            live = db.live_keys()
            assert all(db.expires.get(k, now) >= now for k in live)
            assert sorted(live) == sorted(db.data)


def test_active_expiry_keeps_to_its_time_budget_and_resumes(clock):
    db = Keyspace()
    for i in range(60_000):
        db.set(b"k%d" % i, b"v")
        db.set_deadline(b"k%d" % i, clock.wall + 10)
    db.touched.clear()
    clock.advance(100)
    calls = 0
    while db.data:
        started = time.process_time()
        reclaimed = db.active_expire(0.002)
        elapsed = time.process_time() - started
        db.touched.clear()
        calls += 1
        assert reclaimed > 0
        assert elapsed < 0.02  # 2 ms budget, the clock is read every 128 keys
    assert calls > 1 and db.expired_keys == 60_000


def test_stale_index_entries_are_shed_by_a_background_rebuild(clock, monkeypatch):
    monkeypatch.setattr(keyspace_module, "COMPACT_SLACK", 100)
    db = Keyspace()
    keys = [b"k%d" % i for i in range(200)]
    for key in keys:
        db.set(key, b"v")
    for n in range(10):  # a cache refreshing long TTLs: every refresh leaves a stale entry
        for key in keys:
            db.set_deadline(key, clock.wall + 3_600_000 + n * 1000)
    assert db._index.entries == 2000
    clock.advance(10)
    db.active_expire(1.0)  # starts the rebuild
    db.active_expire(1.0)  # and finishes it within the budget
    assert db._old_index is None and db._index.entries == 200
    for key in keys[:100]:
        db.set_deadline(key, clock.wall + 500)
    clock.advance(1000)
    db.active_expire(1.0)
    assert len(db.data) == 100


def test_a_rebuild_in_progress_still_expires_everything(clock):
    db = Keyspace()
    for i in range(5000):
        key = b"k%d" % i
        db.set(key, b"v")
        db.set_deadline(key, clock.wall + 100_000)
        db.set_deadline(key, clock.wall + 200 + i % 300)
    db._start_rebuild()
    db._continue_rebuild(0)  # one slice only
    assert db._old_index is not None
    clock.advance(600)
    db.tick()
    db.expire_due()
    assert not db.data


def test_no_keys_with_a_ttl_left_means_an_empty_index(clock):
    db = Keyspace()
    for i in range(100):
        db.set(b"k%d" % i, b"v")
        db.set_deadline(b"k%d" % i, clock.wall + 100_000)
    for i in range(100):
        db.persist(b"k%d" % i)
    db.active_expire(0.01)
    assert db._index.entries == 0 and not db._index.buckets


def test_avg_ttl_is_exact(clock):
    db = Keyspace()
    assert db.avg_ttl() == 0
    for i, ttl in enumerate((1000, 2000, 6000)):
        db.set(b"k%d" % i, b"v")
        db.set_deadline(b"k%d" % i, clock.wall + ttl)
    assert db.avg_ttl() == 3000
    db.set(b"k2", b"w")  # clears its TTL
    assert db.avg_ttl() == 1500
    clock.advance(500)
    db.tick()
    assert db.avg_ttl() == 1000


def test_a_wall_clock_jump_does_not_mass_expire_keys(clock):
    db = Keyspace()
    db.set(b"k", b"v")
    db.set_deadline(b"k", clock.wall + 10_000)
    clock.wall += 3_600_000  # someone sets the clock an hour ahead
    for _ in range(5):
        clock.advance(1000)
        db.active_expire(0.01)
    assert db.get(b"k") == b"v"
    clock.advance(5500)
    db.active_expire(0.01)
    assert db.get(b"k") is None  # 10 s of real time (plus 1% slew): expired on time
    before = db.now_ms
    clock.wall -= 7_200_000  # and now two hours back
    for _ in range(3):
        clock.advance(1000)
        db.active_expire(0.01)
        assert db.now_ms >= before + 990  # 1% slew at most, never backwards
        before = db.now_ms


def test_a_small_wall_clock_offset_is_slewed_away(clock):
    db = Keyspace()
    clock.wall += 150  # an NTP correction
    for _ in range(20):
        clock.advance(1000)
        db.active_expire(0.01)
    assert db.now_ms == clock.wall
