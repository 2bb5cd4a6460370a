"""Transactions across workers: atomic as seen by other clients, WATCH as optimistic locking."""

import random
import threading

import redis

from tests.resp_client import RawClient
from tests.test_atomicity import keys_on_distinct_workers

ACCOUNTS = [f"balance:{i}" for i in range(10)]


def test_accounts_really_span_all_workers():
    from shardis.slots import SlotMap

    assert len({SlotMap(3).worker_of(a.encode()) for a in ACCOUNTS}) == 3


def test_transfers_never_change_the_total_seen_by_readers(shardis_clean):
    port = shardis_clean.port
    redis.Redis(port=port).mset({a: 1000 for a in ACCOUNTS})
    total = 1000 * len(ACCOUNTS)
    stop = threading.Event()
    seen_totals: list[int] = []
    errors: list[BaseException] = []

    def transfer(seed: int) -> None:
        try:
            rng = random.Random(seed)
            client = redis.Redis(port=port, protocol=2)
            for _ in range(100):
                source, target = rng.sample(ACCOUNTS, 2)
                amount = rng.randrange(1, 50)
                pipe = client.pipeline(transaction=True)
                pipe.decrby(source, amount)
                pipe.incrby(target, amount)
                pipe.execute()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        try:
            client = redis.Redis(port=port, protocol=2)
            while not stop.is_set():
                pipe = client.pipeline(transaction=True)
                for account in ACCOUNTS:
                    pipe.get(account)
                seen_totals.append(sum(int(v) for v in pipe.execute()))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=transfer, args=(i,)) for i in range(20)]
    readers = [threading.Thread(target=read) for _ in range(5)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in readers:
        thread.join(timeout=30)
    assert not errors
    assert seen_totals and set(seen_totals) == {total}
    final = redis.Redis(port=port).mget(ACCOUNTS)
    assert sum(int(v) for v in final) == total


def test_watch_optimistic_increments_end_with_the_exact_count(shardis_clean):
    port = shardis_clean.port
    redis.Redis(port=port).set("counter", 0)
    errors: list[BaseException] = []

    def increment() -> None:
        try:
            client = redis.Redis(port=port, protocol=2)
            for _ in range(50):
                while True:
                    with client.pipeline() as pipe:
                        try:
                            pipe.watch("counter")
                            value = int(pipe.get("counter"))
                            pipe.multi()
                            pipe.set("counter", value + 1)
                            pipe.execute()
                            break
                        except redis.WatchError:
                            continue
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=increment) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert redis.Redis(port=port).get("counter") == b"1000"


def test_exec_fails_when_a_watched_key_on_another_worker_changes(shardis_clean):
    port = shardis_clean.port
    a, b, c = keys_on_distinct_workers(3)
    watcher = RawClient(port)
    other = redis.Redis(port=port)
    assert watcher.call("WATCH", a, b) == b"+OK\r\n"
    other.set(b, "changed")
    assert watcher.call("MULTI") == b"+OK\r\n"
    assert watcher.call("SET", c, "1") == b"+QUEUED\r\n"
    assert watcher.call("EXEC") == b"*-1\r\n"
    assert other.exists(c) == 0
    # Expiry counts as a change too.
    other.set(a, "v", px=50)
    assert watcher.call("WATCH", a) == b"+OK\r\n"
    import time

    time.sleep(0.1)
    watcher.call("MULTI")
    watcher.call("SET", c, "1")
    assert watcher.call("EXEC") == b"*-1\r\n"
    # FLUSHALL too.
    other.set(a, "v")
    watcher.call("WATCH", a)
    other.flushall()
    watcher.call("MULTI")
    watcher.call("PING")
    assert watcher.call("EXEC") == b"*-1\r\n"
    watcher.close()


def test_transaction_with_a_cross_worker_rename_inside(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    a, b = keys_on_distinct_workers(2)
    pipe = client.pipeline(transaction=True)
    pipe.set(a, "v")
    pipe.rename(a, b)
    pipe.get(b)
    pipe.exists(a)
    assert pipe.execute() == [True, True, b"v", 0]


def test_disconnect_in_the_middle_of_multi_leaves_no_state(shardis_clean):
    port = shardis_clean.port
    raw = RawClient(port)
    raw.call("WATCH", "k")
    raw.call("MULTI")
    raw.call("SET", "k", "1")
    raw.close()
    client = redis.Redis(port=port)
    assert client.exists("k") == 0
    assert client.set("k", "2")


def test_multi_heavy_pipelines_run_without_errors(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    for round_ in range(20):
        pipe = client.pipeline(transaction=True)
        for i in range(200):
            pipe.incr(f"heavy:{i % 30}")
            pipe.set(f"heavy:s:{i}", round_)
        results = pipe.execute()
        assert len(results) == 400
    assert sum(int(v) for v in client.mget([f"heavy:{i}" for i in range(30)])) == 20 * 200
