"""Sorted-set behaviour through redis-py: cross-worker algebra and *STORE atomicity, blocking
pops (wake-up, timeout, keys on several workers), ZRANDMEMBER statistics, big-zset paging, and
zsets moved between workers.

Byte-exact replies are the differential corpus's job (tests/test_diff_zsets.py).
"""

from __future__ import annotations

import collections
import threading
import time

import redis

from tests.test_atomicity import keys_on_distinct_workers
from tests.test_blocking import wait_blocked


def _client(server, protocol: int = 3) -> redis.Redis:
    return redis.Redis(port=server.port, protocol=protocol, socket_timeout=10)




def _in_thread(fn, out: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread


# -- algebra and STORE across workers ----------------------------------------------------------
def test_cross_worker_algebra_matches_local_computation(shardis_clean):
    a, b, c = keys_on_distinct_workers(3)
    client = _client(shardis_clean, protocol=2)
    client.zadd(a, {"x": 1, "y": 2, "z": 3})
    client.zadd(b, {"y": 10, "z": 20, "w": 30})
    client.sadd(c, "z", "w")
    assert client.zunion([a, b, c], withscores=True) == [
        (b"x", 1.0), (b"y", 12.0), (b"z", 24.0), (b"w", 31.0)]
    assert client.zinter({a: 2, b: 1}, aggregate="MIN", withscores=True) == [
        (b"y", 4.0), (b"z", 6.0)]
    assert client.zdiff([a, b]) == [b"x"]
    assert client.zintercard(3, [a, b, c]) == 1
    assert client.zunionstore(c, [a, b], aggregate="MAX") == 4
    assert client.zrange(c, 0, -1, withscores=True) == [
        (b"x", 1.0), (b"y", 10.0), (b"z", 20.0), (b"w", 30.0)]
    assert client.type(c) == b"zset"


def test_zunionstore_across_workers_is_atomic(shardis_clean):
    """While members move between two zsets (ZADD/ZREM in MULTI on one worker each is not
    atomic across workers, so use one worker per key and ZUNIONSTORE under its gate): the
    stored union always has every member exactly once."""
    a, b, dst = keys_on_distinct_workers(3)
    members = {f"m{i}": i for i in range(30)}
    client = _client(shardis_clean)
    client.zadd(a, members)
    stop = threading.Event()
    torn: list[int] = []

    def writer() -> None:
        w = _client(shardis_clean)
        for _ in range(200):
            w.zadd(a, {"extra": 1})
            w.zrem(a, "extra")
        stop.set()

    def storer() -> None:
        s = _client(shardis_clean)
        while not stop.is_set():
            count = s.zunionstore(dst, [a, b])
            stored = s.zcard(dst)
            if count not in (30, 31) or stored not in (30, 31):
                torn.append(count)

    threads = [threading.Thread(target=writer), threading.Thread(target=storer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not torn


def test_zrangestore_and_zmpop_across_workers(shardis_clean):
    a, b, c = keys_on_distinct_workers(3)
    client = _client(shardis_clean, protocol=2)
    client.zadd(a, {"p": 1, "q": 2, "r": 3})
    assert client.zrangestore(b, a, 1, 2) == 2
    assert client.zrange(b, 0, -1, withscores=True) == [(b"q", 2.0), (b"r", 3.0)]
    assert client.zmpop(3, [c, b, a], max=True, count=5) == [b.encode(),
                                                          [[b"r", b"3"], [b"q", b"2"]]]
    assert client.exists(b) == 0
    assert client.zmpop(2, [c, b], min=True) is None


# -- blocking pops -----------------------------------------------------------------------------
def test_bzpopmin_wakes_up_on_zadd(shardis_clean):
    client = _client(shardis_clean)
    out: list = []
    thread = _in_thread(lambda: _client(shardis_clean).bzpopmin(["bz"], timeout=5), out)
    wait_blocked(client, 1)
    client.zadd("bz", {"b": 2, "a": 1})
    thread.join(timeout=10)
    assert out == [[b"bz", b"a", 1.0]]
    assert client.zrange("bz", 0, -1) == [b"b"]


def test_bzpopmax_times_out(shardis_clean):
    client = _client(shardis_clean, protocol=2)
    started = time.monotonic()
    assert client.bzpopmax(["nothing"], timeout=0.2) is None
    assert 0.15 <= time.monotonic() - started < 2


def test_blocking_zset_pops_across_workers(shardis_clean):
    a, b = keys_on_distinct_workers(2)
    client = _client(shardis_clean)
    out: list = []
    thread = _in_thread(lambda: _client(shardis_clean).bzpopmax([a, b], timeout=5), out)
    wait_blocked(client, 1)
    client.zadd(b, {"hi": 9, "lo": 1})
    thread.join(timeout=10)
    assert out == [[b.encode(), b"hi", 9.0]]
    out.clear()
    thread = _in_thread(
        lambda: _client(shardis_clean, protocol=2).bzmpop(5, 2, [a, b], min=True, count=3), out)
    thread.join(timeout=10)
    assert out == [[b.encode(), [[b"lo", b"1"]]]]
    out.clear()
    thread = _in_thread(
        lambda: _client(shardis_clean, protocol=2).bzmpop(5, 2, [a, b], max=True), out)
    wait_blocked(client, 1)
    client.zadd(a, {"x": 4})
    thread.join(timeout=10)
    assert out == [[a.encode(), [[b"x", b"4"]]]]


# -- randomness and paging ---------------------------------------------------------------------
def test_zrandmember_is_roughly_uniform(shardis_clean):
    client = _client(shardis_clean)
    client.zadd("r", {f"m{i}": i for i in range(10)})
    counts = collections.Counter(client.zrandmember("r", -5000))
    assert set(counts) == {f"m{i}".encode() for i in range(10)}
    assert all(350 < n < 650 for n in counts.values()), counts
    distinct = client.zrandmember("r", 5)
    assert len(set(distinct)) == 5
    pairs = client.zrandmember("r", -3, withscores=True)
    assert all(float(score) == int(member[1:]) for member, score in pairs)


def test_zscan_pages_a_big_zset_completely(shardis_clean):
    client = _client(shardis_clean)
    client.zadd("big", {f"m{i}": i for i in range(1000)})
    assert client.object("encoding", "big") == b"skiplist"
    seen = dict(client.zscan_iter("big", count=50))
    assert len(seen) == 1000 and seen[b"m999"] == 999.0


# -- generic commands on zsets across workers --------------------------------------------------
def test_rename_copy_type_scan_of_zsets_across_workers(shardis_clean):
    a, b, c = keys_on_distinct_workers(3)
    client = _client(shardis_clean)
    client.zadd(a, {"x" * 70: 1, "y": 2})
    client.rename(a, b)
    assert client.object("encoding", b) == b"skiplist"
    assert client.copy(b, c)
    client.zadd(c, {"z": 3})
    assert client.zcard(b) == 2 and client.zcard(c) == 3
    assert client.type(c) == b"zset"
    client.set("plain", "v")
    assert sorted(client.scan_iter(_type="zset")) == sorted([b.encode(), c.encode()])
