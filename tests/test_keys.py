"""Key commands across workers: SCAN's guarantee, KEYS, RANDOMKEY, DEL/EXISTS fan-out."""

import random
import threading

import redis


def test_scan_returns_every_key_present_throughout(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    stable = {f"stable:{i}".encode() for i in range(2000)}
    client.mset({k: 1 for k in stable})
    client.mset({f"churn:{i}": 1 for i in range(500)})
    stop = threading.Event()

    def churn() -> None:
        other = redis.Redis(port=shardis_clean.port, protocol=2)
        rng = random.Random(7)
        while not stop.is_set():
            other.delete(f"churn:{rng.randrange(500)}")
            other.set(f"new:{rng.randrange(10_000)}", 1)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        seen: list[bytes] = []
        cursor = 0
        calls = 0
        while True:
            cursor, keys = client.scan(cursor, count=50)
            seen.extend(keys)
            calls += 1
            if cursor == 0:
                break
    finally:
        stop.set()
        thread.join()
    assert stable <= set(seen)
    assert calls > 3  # the iteration really was paged
    stable_seen = [k for k in seen if k.startswith(b"stable:")]
    assert len(stable_seen) == len(set(stable_seen))  # and returned each once


def test_scan_match_and_type_filters(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.mset({f"user:{i}": i for i in range(100)})
    client.mset({f"other:{i}": i for i in range(100)})
    assert set(client.scan_iter(match="user:*", count=7)) == {
        f"user:{i}".encode() for i in range(100)
    }
    assert len(set(client.scan_iter(_type="string"))) == 200
    assert set(client.scan_iter(_type="list")) == set()


def test_scan_cursor_zero_on_a_small_keyspace_finishes_in_one_call(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.mset({"a": 1, "b": 2, "c": 3})
    cursor, keys = client.scan(0)
    assert cursor == 0 and sorted(keys) == [b"a", b"b", b"c"]


def test_keys_dbsize_and_del_span_all_workers(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    names = [f"k{i}" for i in range(300)]
    client.mset({n: 1 for n in names})
    assert client.dbsize() == 300
    assert sorted(client.keys("k*")) == sorted(n.encode() for n in names)
    assert client.exists(*names, *names[:10]) == 310
    assert client.delete(*names[:150]) == 150
    assert client.unlink(*names) == 150
    assert client.dbsize() == 0


def test_randomkey_covers_every_worker(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.mset({f"r{i}": 1 for i in range(30)})
    seen = {client.randomkey() for _ in range(300)}
    assert len(seen) > 20
    client.flushall()
    assert client.randomkey() is None


def test_flushdb_and_flushall_empty_every_worker(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.mset({f"f{i}": 1 for i in range(100)})
    assert client.flushdb() is True
    assert client.dbsize() == 0
    client.mset({f"f{i}": 1 for i in range(100)})
    assert client.flushall(asynchronous=True) is True
    assert client.dbsize() == 0
