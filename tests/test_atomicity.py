"""Multi-worker commands are atomic as seen by other clients.

Keys are chosen on different workers (checked with the slot map), writers update them together
and readers check that they never see a mix of two writes.
"""

import threading

import redis

from shardis.slots import SlotMap


def keys_on_distinct_workers(count: int, workers: int = 3) -> list[str]:
    slots = SlotMap(workers)
    chosen: dict[int, str] = {}
    i = 0
    while len(chosen) < min(count, workers):
        key = f"acct:{i}"
        chosen.setdefault(slots.worker_of(key.encode()), key)
        i += 1
    keys = list(chosen.values())
    while len(keys) < count:
        keys.append(f"extra:{len(keys)}")
    return keys


def test_keys_really_span_workers():
    keys = keys_on_distinct_workers(3)
    assert len({SlotMap(3).worker_of(k.encode()) for k in keys}) == 3


def test_mset_is_never_seen_half_applied(shardis_clean):
    keys = keys_on_distinct_workers(6)
    port = shardis_clean.port
    redis.Redis(port=port).mset({k: 0 for k in keys})
    stop = threading.Event()
    torn: list[list[bytes]] = []

    def writer() -> None:
        client = redis.Redis(port=port, protocol=2)
        for round_ in range(1, 400):
            client.mset({k: round_ for k in keys})
        stop.set()

    def reader() -> None:
        client = redis.Redis(port=port, protocol=2)
        while not stop.is_set():
            values = client.mget(keys)
            if len(set(values)) != 1:
                torn.append(values)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader)
                                                    for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not torn, f"a reader saw a half-applied MSET: {torn[:3]}"


def test_msetnx_is_all_or_nothing_under_contention(shardis_clean):
    port = shardis_clean.port
    keys = keys_on_distinct_workers(3)
    results: dict[int, bool] = {}

    def contender(index: int) -> None:
        client = redis.Redis(port=port, protocol=2)
        # Each contender owns a private key plus the shared ones: at most one can win.
        mapping = {k: index for k in keys}
        mapping[f"private:{index}"] = index
        results[index] = client.msetnx(mapping)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1
    client = redis.Redis(port=port, protocol=2)
    winner = str(winners[0]).encode()
    assert client.mget(keys) == [winner] * len(keys)
    assert client.exists(*[f"private:{i}" for i in range(20)]) == 1


def test_msetnx_reads_see_all_or_nothing(shardis_clean):
    port = shardis_clean.port
    keys = keys_on_distinct_workers(3)
    stop = threading.Event()
    partial: list[list] = []

    def writer() -> None:
        client = redis.Redis(port=port, protocol=2)
        for round_ in range(200):
            names = [f"{k}:{round_}" for k in keys]
            assert client.msetnx({n: 1 for n in names})
        stop.set()

    def reader() -> None:
        client = redis.Redis(port=port, protocol=2)
        round_ = 0
        while not stop.is_set() and round_ < 200:
            values = client.mget([f"{k}:{round_}" for k in keys])
            if len(set(values)) != 1:
                partial.append(values)
            if values[0] is not None:
                round_ += 1

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not partial


def test_cross_worker_rename_moves_value_and_ttl(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    source, target = keys_on_distinct_workers(2)
    client.set(source, "payload", ex=100)
    assert client.rename(source, target)
    assert client.get(target) == b"payload"
    assert client.exists(source) == 0
    assert 95 <= client.ttl(target) <= 100
    assert client.renamenx(target, source) is True
    client.set(target, "taken")
    assert client.renamenx(source, target) is False
    assert client.copy(source, target) is False
    assert client.copy(source, target, replace=True) is True
    assert client.get(target) == b"payload"


def test_pipelined_commands_after_a_coordinated_one_see_its_effect(shardis_clean):
    client = redis.Redis(port=shardis_clean.port, protocol=2)
    a, b = keys_on_distinct_workers(2)
    pipe = client.pipeline(transaction=False)
    pipe.set(a, "1")
    pipe.rename(a, b)
    pipe.get(b)
    pipe.exists(a)
    pipe.msetnx({a: "x", b: "y"})
    pipe.get(a)
    assert pipe.execute() == [True, True, b"1", 0, False, None]
