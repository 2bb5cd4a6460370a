"""Lists through redis-py against a 3-worker shardis, and the worker ops on a bare keyspace.

What the differential corpus (tests/test_diff_lists.py) cannot show: LMOVE/RPOPLPUSH between
workers are atomic for other clients, LMPOP over several workers pops from the first list in
argument order even under concurrency, lists move between workers (RENAME, COPY) intact, and
every way of emptying a list deletes its key.
"""

from __future__ import annotations

import threading
from collections import deque

import pytest
import redis

from shardis.commands import lists
from shardis.slots import SlotMap
from shardis.worker.keyspace import Keyspace
from shardis.worker.types import value_type
from tests.resp_client import RawClient
from tests.test_atomicity import keys_on_distinct_workers


def _client(server, protocol: int = 3) -> redis.Redis:
    return redis.Redis(port=server.port, protocol=protocol)


def test_chosen_keys_really_span_workers():
    keys = keys_on_distinct_workers(3)
    assert len(SlotMap(3).workers_of(k.encode() for k in keys)) == 3


# Cross-worker LMOVE / RPOPLPUSH ------------------------------------------------------------
def _bounce_one_element(port: int, source: str, target: str, rounds: int, use_rpoplpush: bool,
                        stop: threading.Event) -> None:
    """Move the only element back and forth between two lists on different workers."""
    client = redis.Redis(port=port, protocol=2)
    try:
        for _ in range(rounds):
            for a, b in ((source, target), (target, source)):
                if use_rpoplpush:
                    assert client.rpoplpush(a, b) == b"token"
                else:
                    assert client.lmove(a, b, "LEFT", "RIGHT") == b"token"
    finally:
        stop.set()


@pytest.mark.parametrize("use_rpoplpush", [False, True], ids=["lmove", "rpoplpush"])
def test_cross_worker_move_is_never_seen_half_done(shardis_clean, use_rpoplpush):
    """One element bounces between two workers; the source disappears when emptied and the
    destination appears when created, so a torn move would show 0 or 2 keys to EXISTS."""
    source, target = keys_on_distinct_workers(2)
    port = shardis_clean.port
    _client(shardis_clean).rpush(source, "token")
    stop = threading.Event()
    torn: list[int] = []
    observations = [0]

    def reader() -> None:
        client = redis.Redis(port=port, protocol=2)
        while not stop.is_set():
            seen = client.exists(source, target)
            observations[0] += 1
            if seen != 1:
                torn.append(seen)

    threads = [threading.Thread(target=_bounce_one_element,
                                args=(port, source, target, 300, use_rpoplpush, stop))]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not torn, f"a reader saw a half-done move: {torn[:5]}"
    assert observations[0] > 50  # the readers really ran alongside
    client = _client(shardis_clean)
    assert client.lrange(source, 0, -1) == [b"token"] and client.exists(target) == 0


def test_concurrent_cross_worker_moves_lose_and_duplicate_nothing(shardis_clean):
    left, right = keys_on_distinct_workers(2)
    port = shardis_clean.port
    elements = [f"e{n}".encode() for n in range(200)]
    _client(shardis_clean).rpush(left, *elements)

    def mover(source: str, target: str, how: str) -> None:
        client = redis.Redis(port=port, protocol=2)
        for _ in range(400):
            if how == "lmove":
                client.lmove(source, target, "RIGHT", "LEFT")
            else:
                client.rpoplpush(source, target)

    threads = [threading.Thread(target=mover, args=(left, right, "lmove")),
               threading.Thread(target=mover, args=(right, left, "rpoplpush")),
               threading.Thread(target=mover, args=(left, right, "rpoplpush"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    client = _client(shardis_clean)
    together = client.lrange(left, 0, -1) + client.lrange(right, 0, -1)
    assert sorted(together) == sorted(elements)


def test_cross_worker_move_errors_leave_both_keys_alone(shardis_clean):
    client = _client(shardis_clean)
    source, target = keys_on_distinct_workers(2)
    client.rpush(source, "a", "b")
    client.set(target, "string", ex=100)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.lmove(source, target, "LEFT", "LEFT")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        client.lmove(source, target, "UP", "LEFT")
    assert client.lrange(source, 0, -1) == [b"a", b"b"]
    assert client.get(target) == b"string" and client.ttl(target) > 90
    client.delete(source)
    assert client.lmove(source, target, "LEFT", "LEFT") is None  # missing source wins


def test_cross_worker_move_keeps_the_ttls_where_they_are(shardis_clean):
    client = _client(shardis_clean)
    source, target = keys_on_distinct_workers(2)
    client.rpush(source, "a", "b")
    client.expire(source, 200)
    client.rpush(target, "x")
    client.expire(target, 100)
    assert client.lmove(source, target, "RIGHT", "LEFT") == b"b"
    assert client.lrange(target, 0, -1) == [b"b", b"x"]
    assert 190 < client.ttl(source) <= 200 and 90 < client.ttl(target) <= 100


def test_commands_pipelined_after_a_cross_worker_move_see_it(shardis_clean):
    client = _client(shardis_clean, protocol=2)
    source, target = keys_on_distinct_workers(2)
    pipe = client.pipeline(transaction=False)
    pipe.rpush(source, "a", "b")
    pipe.lmove(source, target, "LEFT", "RIGHT")
    pipe.rpoplpush(source, target)
    pipe.lrange(target, 0, -1)
    pipe.exists(source)
    pipe.rpoplpush(source, target)
    assert pipe.execute() == [2, b"a", b"b", [b"b", b"a"], 0, None]


# LMPOP across workers ----------------------------------------------------------------------
def test_lmpop_pops_from_the_first_list_in_argument_order(shardis_clean):
    client = _client(shardis_clean)
    k0, k1, k2 = keys_on_distinct_workers(3)
    client.rpush(k2, "c1", "c2")
    client.rpush(k1, "b1", "b2", "b3")
    assert client.lmpop(3, k0, k2, k1, direction="LEFT") == [k2.encode(), [b"c1"]]
    assert client.lmpop(3, k0, k1, k2, direction="RIGHT", count=2) == [k1.encode(),
                                                                        [b"b3", b"b2"]]
    assert client.lmpop(2, k1, k2, direction="LEFT", count=10) == [k1.encode(), [b"b1"]]
    assert client.exists(k1) == 0
    assert client.lmpop(2, k0, k1, direction="LEFT") is None
    client.set(k0, "string")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.lmpop(2, k0, k2, direction="LEFT")
    assert client.lmpop(2, k2, k0, direction="LEFT") == [k2.encode(), [b"c2"]]
    with pytest.raises(redis.ResponseError, match="numkeys should be greater than 0"):
        client.execute_command("LMPOP", 0, k0, "LEFT")


@pytest.mark.parametrize(("protocol", "null"), [(2, b"*-1\r\n"), (3, b"_\r\n")])
def test_null_shapes_across_workers(shardis_clean, protocol, null):
    """LMPOP and LPOP with a count answer a null *array*, LMOVE a null bulk string."""
    keys = keys_on_distinct_workers(3)
    with RawClient(shardis_clean.port) as raw:
        if protocol == 3:
            raw.hello3()
        assert raw.call("LMPOP", 3, *keys, "LEFT") == null
        assert raw.call("LPOP", keys[0], 2) == null
        null_bulk = b"$-1\r\n" if protocol == 2 else b"_\r\n"
        assert raw.call("LMOVE", keys[0], keys[1], "LEFT", "LEFT") == null_bulk
        assert raw.call("RPOPLPUSH", keys[0], keys[1]) == null_bulk


def test_concurrent_lmpop_drains_every_element_once_in_order(shardis_clean):
    keys = keys_on_distinct_workers(3)
    port = shardis_clean.port
    client = _client(shardis_clean)
    for key in keys:
        client.rpush(key, *[f"{key}/{n:04d}" for n in range(300)])
    popped: list[tuple[int, bytes, list[bytes]]] = []
    lock = threading.Lock()

    def drainer(me: int) -> None:
        own = redis.Redis(port=port, protocol=2)
        while True:
            reply = own.lmpop(3, *keys, direction="LEFT", count=7)
            if reply is None:
                return
            with lock:
                popped.append((me, reply[0], reply[1]))

    threads = [threading.Thread(target=drainer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    by_key: dict[bytes, list[bytes]] = {}
    for _, key, elements in popped:
        assert all(e.startswith(key + b"/") for e in elements)
        by_key.setdefault(key, []).extend(elements)
    for key in keys:
        got = by_key[key.encode()]
        assert sorted(got) == [f"{key}/{n:04d}".encode() for n in range(300)]
    # A drainer's own pops are sequential: once it pops from a later key, the earlier ones
    # were empty, and nothing refills them.
    order = {key.encode(): index for index, key in enumerate(keys)}
    for drainer in range(4):
        seen = [order[key] for who, key, _ in popped if who == drainer]
        assert seen == sorted(seen)
    assert client.dbsize() == 0


# Generic key commands on lists -------------------------------------------------------------
def test_type_encoding_memory_and_scan_type(shardis_clean):
    client = _client(shardis_clean)
    keys = keys_on_distinct_workers(3)
    for key in keys:
        client.rpush(key, "a", "b")
    client.set("plain", "v")
    assert {client.type(k) for k in keys} == {b"list"}
    assert client.object("encoding", keys[0]) == b"quicklist"
    usage = client.memory_usage(keys[0])
    assert isinstance(usage, int) and usage > 0
    client.rpush(keys[0], *[b"x" * 100] * 1000)
    assert client.memory_usage(keys[0]) > usage + 100_000
    assert set(client.scan_iter(_type="list")) == {k.encode() for k in keys}
    assert set(client.scan_iter(_type="string")) == {b"plain"}


def test_rename_and_copy_move_lists_between_workers(shardis_clean):
    client = _client(shardis_clean)
    source, target, third = keys_on_distinct_workers(3)
    client.rpush(source, "a", b"bin\x00\r\n", "3")
    client.expire(source, 100)
    assert client.rename(source, target)
    assert client.lrange(target, 0, -1) == [b"a", b"bin\x00\r\n", b"3"]
    assert 90 < client.ttl(target) <= 100 and client.exists(source) == 0
    assert client.copy(target, third)
    client.rpush(third, "only-in-copy")
    client.lset(target, 0, "only-in-original")
    assert client.lrange(third, 0, -1) == [b"a", b"bin\x00\r\n", b"3", b"only-in-copy"]
    assert client.lrange(target, 0, -1) == [b"only-in-original", b"bin\x00\r\n", b"3"]
    assert client.object("encoding", third) == b"quicklist"
    assert client.type(third) == b"list"


@pytest.mark.parametrize(
    "empty_it",
    [
        ["LPOP", "{k}"],
        ["RPOP", "{k}", "5"],
        ["LMPOP", "1", "{k}", "LEFT", "COUNT", "2"],
        ["LREM", "{k}", "0", "a"],
        ["LTRIM", "{k}", "5", "10"],
        ["LMOVE", "{k}", "{other}", "LEFT", "LEFT"],
        ["RPOPLPUSH", "{k}", "{other}"],
    ],
    ids=lambda args: args[0].lower(),
)
def test_emptied_lists_disappear(shardis_clean, empty_it):
    client = _client(shardis_clean)
    key, other = keys_on_distinct_workers(2)
    count = 1 if empty_it[0] in ("LPOP", "LMOVE", "RPOPLPUSH") else 2
    client.rpush(key, *["a"] * count)
    client.expire(key, 100)
    client.execute_command(*[a.format(k=key, other=other) for a in empty_it])
    assert client.exists(key) == 0
    assert client.type(key) == b"none"
    assert client.ttl(key) == -2
    client.rpush(key, "fresh")
    assert client.ttl(key) == -1  # a new list: the old TTL did not survive


# Worker ops on a bare keyspace --------------------------------------------------------------
def _run(db: Keyspace, *args: str | bytes) -> object:
    raw = [a.encode() if isinstance(a, str) else a for a in args]
    from shardis.commands import lookup

    return lookup(raw).op(db, raw)  # type: ignore[misc]


def test_ops_report_every_change_to_the_keyspace():
    db = Keyspace()
    _run(db, "RPUSH", "l", "a", "b", "c")
    assert db.touched == [b"l"]
    db.touched.clear()
    for args in (["LSET", "l", "0", "x"], ["LINSERT", "l", "AFTER", "x", "y"],
                 ["LREM", "l", "1", "y"], ["LTRIM", "l", "0", "-1"], ["LPOP", "l"]):
        _run(db, *args)
        assert db.touched == [b"l"], args
        db.touched.clear()
    for args in (["LREM", "l", "0", "nope"], ["LINSERT", "l", "AFTER", "nope", "y"],
                 ["LRANGE", "l", "0", "-1"], ["LPOS", "l", "b"], ["LLEN", "l"]):
        _run(db, *args)
        assert db.touched == [], args
    _run(db, "RPOP", "l", "10")
    assert b"l" not in db.data and db.touched == [b"l"]


@pytest.mark.parametrize("length", [1, 2, 7, 64, 200])
def test_slice_and_trim_walk_from_either_end_correctly(length):
    """Both walk from the closer end of the deque; the result must not depend on which."""
    items = [str(n).encode() for n in range(length)]
    for start in range(length):
        for end in range(start, length):
            assert lists.slice_list(deque(items), start, end) == items[start : end + 1]
            trimmed = deque(items)
            lists.trim_to(trimmed, start, end)
            assert list(trimmed) == items[start : end + 1]


def test_clip_range_is_redis_index_arithmetic():
    assert lists.clip_range(0, -1, 5) == (0, 4)
    assert lists.clip_range(-100, 2, 5) == (0, 2)
    assert lists.clip_range(3, 100, 5) == (3, 4)
    assert lists.clip_range(-1, -3, 5) is None
    assert lists.clip_range(5, 10, 5) is None
    assert lists.clip_range(0, -6, 5) is None
    assert lists.clip_range(0, 0, 0) is None


def test_the_list_type_dumps_and_loads_plain_data():
    kind = value_type(deque([b"a", b"b"]))
    assert kind.name == b"list" and kind.encoding(deque()) == b"quicklist"
    plain = kind.dump(deque([b"a", b"\x00"]))
    assert plain == [b"a", b"\x00"] and type(plain) is list
    assert kind.load(plain) == deque([b"a", b"\x00"])
    small, big = deque([b"x"] * 10), deque([b"x"] * 10_000)
    assert 0 < kind.memory(small) < kind.memory(big)
    assert kind.memory(deque()) > 0
