"""Consumer groups beyond the differential corpus: the pure parts (radix-tree node counts, read
counters, lag, the XREAD/XREADGROUP argument helpers), blocking XREADGROUP (Redis's FIFO
order, wake-up by XGROUP DESTROY and by the key going away, timeouts), XREAD/XREADGROUP BLOCK
over streams on several workers (served once, never to a client already answered, under
races), and a job-queue loop with redis-py (xreadgroup / xack / xautoclaim)."""

from __future__ import annotations

import struct
import threading
import time

import pytest
import redis

from shardis.commands.streams import (
    INVALID_ENTRIES_READ,
    StreamGroup,
    StreamValue,
    blocked_form,
    estimate_entries_read,
    group_lag,
    has_tombstones,
    parse_xread,
    rax_nodes,
    xread_keys,
    xread_narrowed,
    xread_subset,
)
from shardis.errors import ReplyError
from tests.resp_client import RawClient
from tests.test_atomicity import keys_on_distinct_workers
from tests.test_blocking import wait_blocked

A, B = keys_on_distinct_workers(2)


# Pure parts ------------------------------------------------------------------------------------
def key(ms: int, seq: int = 0) -> bytes:
    return struct.pack(">QQ", ms, seq)


def test_rax_nodes_counts_redis_radix_tree_nodes():
    assert rax_nodes([]) == 1  # the empty tree's head
    assert rax_nodes([key(5)]) == 2  # one compressed node for the 16 bytes, then the key
    assert rax_nodes([key(5, 1), key(5, 2)]) == 4  # 15 shared bytes, a fork, two keys
    assert rax_nodes([key(1 << 56), key(2 << 56)]) == 5  # a fork at the head, 2 x (chain, key)
    assert rax_nodes([key(1, 1), key(101, 1)]) == 6  # 7 shared bytes: chain, fork, 2 x 2
    # chain(7), fork, {chain(7), fork, 2 keys}, {chain, key}
    assert rax_nodes([key(1, 1), key(1, 2), key(300, 1)]) == 8
    assert rax_nodes([key(1, 1), key(1, 2), key(1, 3)]) == 5  # one fork with three keys


def _stream(ids: list[tuple[int, int]], deleted: list[tuple[int, int]] = ()) -> StreamValue:
    stream = StreamValue()
    for entry_id in ids:
        stream.append(entry_id, [b"f", b"v"])
    for entry_id in deleted:
        stream.delete(entry_id)
    return stream


def test_read_counter_estimates_as_redis():
    stream = _stream([(1, 0), (2, 0), (3, 0)])
    assert estimate_entries_read(StreamValue(), (9, 9)) == 0  # nothing ever added
    assert estimate_entries_read(stream, (3, 0)) == 3  # the last ID: entries_added
    assert estimate_entries_read(stream, (4, 0)) == INVALID_ENTRIES_READ  # the future
    assert estimate_entries_read(stream, (1, 0)) == 1  # the first entry
    assert estimate_entries_read(stream, (0, 5)) == 0  # before the first
    assert estimate_entries_read(stream, (2, 0)) == INVALID_ENTRIES_READ  # in the middle
    fragmented = _stream([(1, 0), (2, 0), (3, 0)], deleted=[(2, 0)])
    assert has_tombstones(fragmented, (1, 0))
    assert not has_tombstones(fragmented, (2, 1))
    assert estimate_entries_read(fragmented, (1, 0)) == INVALID_ENTRIES_READ
    trimmed = _stream([(1, 0), (2, 0), (3, 0)], deleted=[(1, 0)])
    assert not has_tombstones(trimmed, MIN := (0, 0)) and MIN == (0, 0)
    assert estimate_entries_read(trimmed, (2, 0)) == 2


def test_group_lag_as_redis():
    stream = _stream([(1, 0), (2, 0), (3, 0)])
    assert group_lag(stream, StreamGroup((1, 0), 1)) == 2  # a valid counter
    assert group_lag(stream, StreamGroup((0, 0), INVALID_ENTRIES_READ)) == 3  # estimated
    assert group_lag(stream, StreamGroup((2, 0), INVALID_ENTRIES_READ)) is None  # unknown
    assert group_lag(StreamValue(), StreamGroup((0, 0), INVALID_ENTRIES_READ)) == 0
    fragmented = _stream([(1, 0), (2, 0), (3, 0)], deleted=[(2, 0)])
    assert group_lag(fragmented, StreamGroup((1, 0), 1)) is None  # a tombstone ahead


def test_xreadgroup_arguments():
    args = [b"XREADGROUP", b"GROUP", b"streams", b"c", b"COUNT", b"2", b"NOACK",
            b"BLOCK", b"5", b"STREAMS", b"k1", b"k2", b">", b">"]
    assert [args[i] for i in xread_keys(args)] == [b"k1", b"k2"]  # "streams" is the group
    parsed = parse_xread(args)
    assert (parsed.group, parsed.consumer, parsed.noack, parsed.count, parsed.block_ms) == (
        b"streams", b"c", True, 2, 5)
    blocked = blocked_form(args, parsed, [b">", b">"])
    assert blocked == [b"XREADGROUP", b"GROUP", b"streams", b"c", b"COUNT", b"2", b"NOACK",
                       b"STREAMS", b"k1", b"k2", b">", b">"]
    assert parse_xread(blocked).block_ms is None  # a waiter's form: no BLOCK
    assert xread_narrowed(blocked, b"k2") == [*blocked[:8], b"k2", b">"]
    assert xread_subset(args, [b"k2"]) == [*args[:10], b"k2", b">"]
    with pytest.raises(ReplyError, match="Missing GROUP option for XREADGROUP"):
        parse_xread([b"XREADGROUP", b"STREAMS", b"k", b">"])
    assert xread_keys([b"XREAD", b"STREAMS", b"k"]) == range(0)  # odd: a syntax error
    plain = [b"XREAD", b"STREAMS", b"k", b"$"]
    assert blocked_form(plain, parse_xread(plain), [b"7-1"]) == [
        b"XREAD", b"COUNT", b"1000", b"STREAMS", b"k", b"7-1"]


# Blocking XREADGROUP ----------------------------------------------------------------------------
class Reader:
    """A raw client running one command in a thread (its reply kept as bytes)."""

    def __init__(self, port: int, *args: str | bytes, protocol: int = 2) -> None:
        self.client = RawClient(port)
        if protocol == 3:
            self.client.call("HELLO", "3")
        self.reply: bytes | None = None
        self.thread = threading.Thread(target=self._run, args=(args,))
        self.thread.start()

    def _run(self, args: tuple) -> None:
        self.reply = self.client.call(*args)

    def result(self, timeout: float = 10) -> bytes:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the reader was never answered"
        self.client.close()
        assert self.reply is not None
        return self.reply

    def waiting(self) -> bool:
        return self.thread.is_alive()


def _blocked(client: redis.Redis, count: int) -> None:
    wait_blocked(client, count)


def test_xreadgroup_block_serves_waiters_in_fifo_order(r, shardis_clean):
    port = shardis_clean.port
    r.xgroup_create("s", "g", id="$", mkstream=True)
    first = Reader(port, "XREADGROUP", "GROUP", "g", "c1", "BLOCK", "0", "STREAMS", "s", ">")
    _blocked(r, 1)
    second = Reader(port, "XREADGROUP", "GROUP", "g", "c2", "BLOCK", "0", "STREAMS", "s", ">")
    _blocked(r, 2)
    r.xadd("s", {"f": "1"}, id="1-1")
    assert first.result() == b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n" \
                             b"$1\r\nf\r\n$1\r\n1\r\n"
    time.sleep(0.1)
    assert second.waiting()  # the group moved on: nothing new for it
    r.xadd("s", {"f": "2"}, id="2-1")
    assert b"2-1" in second.result()
    pending = r.xpending_range("s", "g", "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(b"1-1", b"c1"),
                                                                  (b"2-1", b"c2")]


def test_xreadgroup_block_is_woken_by_destroy_and_by_the_key_going(r, shardis_clean):
    port = shardis_clean.port
    for ending, error in (
        (lambda: r.xgroup_destroy("s", "g"),
         b"-NOGROUP the consumer group this client was blocked on no longer exists\r\n"),
        (lambda: r.delete("s"), b"-UNBLOCKED the stream key no longer exists\r\n"),
        (lambda: r.set("s", "x"), b"-UNBLOCKED the stream key no longer exists\r\n"),
    ):
        r.delete("s")
        r.xgroup_create("s", "g", id="$", mkstream=True)
        reader = Reader(port, "XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s",
                        ">")
        _blocked(r, 1)
        ending()
        assert reader.result() == error


def test_xreadgroup_block_times_out_and_resp3_gets_a_map(r, shardis_clean):
    port = shardis_clean.port
    r.xgroup_create("s", "g", id="$", mkstream=True)
    assert Reader(port, "XREADGROUP", "GROUP", "g", "c", "BLOCK", "50", "STREAMS", "s",
                  ">").result() == b"*-1\r\n"
    reader = Reader(port, "XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">",
                    protocol=3)
    _blocked(r, 1)
    r.xadd("s", {"f": "1"}, id="1-1")
    assert reader.result().startswith(b"%1\r\n$1\r\ns\r\n*1\r\n")


# Blocking over several workers ------------------------------------------------------------------
def _two_streams(r: redis.Redis) -> None:
    for name in (A, B):
        r.xgroup_create(name, "g", id="$", mkstream=True)


def test_xreadgroup_block_over_several_workers(r, shardis_clean):
    port = shardis_clean.port
    _two_streams(r)
    reader = Reader(port, "XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", A, B,
                    ">", ">")
    _blocked(r, 1)
    r.xadd(B, {"f": "1"}, id="1-1")
    reply = reader.result()
    assert reply.startswith(b"*1\r\n*2\r\n$%d\r\n%s\r\n" % (len(B), B.encode()))
    assert r.xpending(B, "g")["pending"] == 1
    assert r.xpending(A, "g")["pending"] == 0
    # an error of one stream answers: the group destroyed, the key gone
    reader = Reader(port, "XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", A, B,
                    ">", ">")
    _blocked(r, 1)
    r.xgroup_destroy(B, "g")
    assert reader.result() == \
        b"-NOGROUP the consumer group this client was blocked on no longer exists\r\n"
    r.xgroup_create(B, "g", id="$")
    reader = Reader(port, "XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", A, B,
                    ">", ">")
    _blocked(r, 1)
    r.delete(A)
    assert reader.result() == b"-UNBLOCKED the stream key no longer exists\r\n"


def test_xread_block_over_several_workers_resolves_dollar(r, shardis_clean):
    port = shardis_clean.port
    r.xadd(A, {"old": "1"}, id="1-1")
    reader = Reader(port, "XREAD", "BLOCK", "0", "STREAMS", A, B, "$", "$", protocol=3)
    _blocked(r, 1)
    r.xadd(A, {"new": "1"}, id="2-1")
    reply = reader.result()
    assert reply.startswith(b"%1\r\n") and b"2-1" in reply and b"1-1" not in reply
    # a timeout, and a reader that leaves: forgotten everywhere
    assert Reader(port, "XREAD", "BLOCK", "30", "STREAMS", A, B, "$", "$").result() == \
        b"*-1\r\n"


def test_a_cross_worker_reader_that_leaves_gets_nothing_delivered(r, shardis_clean):
    port = shardis_clean.port
    _two_streams(r)
    raw = RawClient(port)
    raw.send("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", A, B, ">", ">")
    _blocked(r, 1)
    raw.close()
    deadline = time.monotonic() + 5
    while r.info("clients")["blocked_clients"]:
        assert time.monotonic() < deadline, "the blocked XREADGROUP was not forgotten"
        time.sleep(0.05)
    r.xadd(A, {"f": "1"}, id="1-1")
    time.sleep(0.1)
    assert r.xpending(A, "g")["pending"] == 0  # nobody was served


@pytest.mark.parametrize("keys", [(A, B), ("{q}a", "{q}b")], ids=["several", "one-worker"])
def test_blocked_group_readers_get_each_entry_exactly_once(r, shardis_clean, keys):
    """Readers of one group blocked on two streams, entries pushed to both from another
    thread: every entry is delivered once, to one reader, and the PEL says who."""
    port = shardis_clean.port
    for name in keys:
        r.xgroup_create(name, "g", id="$", mkstream=True)
    total = 60
    got: dict[str, list[bytes]] = {}
    lock = threading.Lock()

    def reader(name: str) -> None:
        client = redis.Redis(port=port, socket_timeout=10)
        mine = got.setdefault(name, [])
        while True:
            reply = client.xreadgroup("g", name, {k: ">" for k in keys}, count=3, block=1500)
            if not reply:
                return
            with lock:
                for _stream, items in reply:
                    mine.extend(entry_id for entry_id, _ in items)

    threads = [threading.Thread(target=reader, args=(f"c{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_blocked(r, 4)
    producer = redis.Redis(port=port)
    for n in range(total):
        producer.xadd(keys[n % 2], {"n": str(n)}, id=f"{n + 1}-{n % 2}")
    for thread in threads:
        thread.join(30)
    delivered = [entry_id for ids in got.values() for entry_id in ids]
    assert len(delivered) == total and len(set(delivered)) == total
    owners = {}
    for name in keys:
        for p in r.xpending_range(name, "g", "-", "+", total):
            owners[p["message_id"]] = p["consumer"].decode()
    assert owners == {entry_id: name for name, ids in got.items() for entry_id in ids}


# A job queue -------------------------------------------------------------------------------------
def test_job_queue_loop_with_redis_py(r, shardis_clean):
    """Producers push jobs; workers read them in a group and ack; one worker dies holding
    jobs, which another takes over with XAUTOCLAIM; in the end every job is done once and
    nothing is pending."""
    port = shardis_clean.port
    queue = "jobs"
    r.xgroup_create(queue, "workers", id="0", mkstream=True)
    for n in range(30):
        r.xadd(queue, {"job": str(n)})
    crashed = redis.Redis(port=port)
    taken = crashed.xreadgroup("workers", "crasher", {queue: ">"}, count=5)
    assert len(taken[0][1]) == 5  # read, never acknowledged
    done: list[bytes] = []

    def work(name: str) -> None:
        client = redis.Redis(port=port, socket_timeout=10)
        while True:
            reply = client.xreadgroup("workers", name, {queue: ">"}, count=4, block=300)
            if not reply:
                return
            for entry_id, fields in reply[0][1]:
                done.append(fields[b"job"])
                client.xack(queue, "workers", entry_id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    time.sleep(0.05)
    cursor = "0-0"
    rescuer = redis.Redis(port=port)
    while True:
        cursor, claimed, deleted = rescuer.xautoclaim(queue, "workers", "rescuer",
                                                      min_idle_time=20, start_id=cursor,
                                                      count=2)
        for entry_id, fields in claimed:
            done.append(fields[b"job"])
            rescuer.xack(queue, "workers", entry_id)
        assert deleted == []
        if cursor in (b"0-0", "0-0"):
            break
    assert sorted(int(job) for job in done) == list(range(30))
    assert r.xpending(queue, "workers")["pending"] == 0
    consumers = {c["name"]: c["pending"] for c in r.xinfo_consumers(queue, "workers")}
    assert consumers[b"crasher"] == 0 and consumers[b"rescuer"] == 0


# AOF ---------------------------------------------------------------------------------------------
def _group_state(client: redis.Redis, key: str) -> bytes:
    """XINFO STREAM FULL as raw bytes, consumers' seen times masked (a replay's XCLAIM and
    XGROUP CREATECONSUMER see their consumers anew, in Redis too), and so are the groups'
    read counters and lags: Redis propagates a delivery as XCLAIM ... LASTID, which moves the
    last ID and not the counter, so its replay does not restore the counter either."""
    import re

    raw = RawClient(client.connection_pool.connection_kwargs["port"])
    try:
        reply = raw.call("XINFO", "STREAM", key, "FULL", "COUNT", "0")
    finally:
        raw.close()
    reply = re.sub(rb"(\$9\r\nseen-time\r\n):\d+", rb"\1:T", reply)
    return re.sub(rb"(\$12\r\nentries-read\r\n|\$3\r\nlag\r\n)(:\d+|\$-1)", rb"\1:N", reply)


def test_aof_replay_restores_group_state_with_delivery_times_and_counts(tmp_path):
    from tests.servers import start_shardis
    from tests.test_persistence_aof import kill9, tag_on, wait_restarted

    server = start_shardis(2, "--appendonly", "yes", "--appendfsync", "always", "--dir",
                           str(tmp_path))
    try:
        client = redis.Redis(port=server.port)
        tag = tag_on(0)
        s = f"{{{tag}}}s"
        for n in range(1, 9):
            client.xadd(s, {"n": str(n)}, id=f"{n}-1")
        client.xgroup_create(s, "g", id="0")
        client.xgroup_create(s, "quiet", id="0")
        client.xgroup_createconsumer(s, "g", "idle-one")
        client.xreadgroup("g", "a", {s: ">"}, count=3)
        client.xreadgroup("quiet", "n", {s: ">"}, count=2, noack=True)
        raw = RawClient(server.port)
        raw.call("XCLAIM", s, "g", "b", "0", "2-1", "TIME", "1234", "RETRYCOUNT", "9")
        time.sleep(0.05)
        client.xautoclaim(s, "g", "c", min_idle_time=10, start_id="3-1", count=1)
        client.xack(s, "g", "1-1")
        client.xdel(s, "3-1")
        client.xautoclaim(s, "g", "c", min_idle_time=0, start_id="0")  # drops deleted 3-1
        raw.call("XCLAIM", s, "g", "d", "0", "LASTID", "5-1")
        raw.call("XCLAIM", s, "g", "d", "0", "6-1", "FORCE", "JUSTID")
        raw.close()
        client.xreadgroup("g", "f", {s: ">"})  # 6-1 to 8-1 (6-1 taken from d)
        reader = Reader(server.port, "XREADGROUP", "GROUP", "g", "e", "BLOCK", "0",
                        "STREAMS", s, ">")
        _blocked(client, 1)
        client.xadd(s, {"n": "9"}, id="9-1")
        assert b"9-1" in reader.result()  # served by the worker, logged as XCLAIM
        client.xgroup_delconsumer(s, "g", "b")
        before = _group_state(client, s)
        old = kill9(server, 0)
        wait_restarted(server, 0, old, client, tag)
        assert _group_state(client, s) == before
    finally:
        server.stop()


# Keyspace notifications --------------------------------------------------------------------------
def _group_events(port: int) -> list[str]:
    client = redis.Redis(port=port)
    client.flushall()
    client.config_set("notify-keyspace-events", "KEA")
    listener = client.pubsub()
    listener.psubscribe("__key*@0__:*")
    time.sleep(0.2)
    raw = RawClient(port)
    try:
        for args in (
            ("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"), ("XGROUP", "CREATE", "s", "h", "$"),
            ("XADD", "s", "1-1", "a", "1"), ("XGROUP", "CREATECONSUMER", "s", "g", "c"),
            ("XREADGROUP", "GROUP", "g", "new", "STREAMS", "s", ">"),
            ("XREADGROUP", "GROUP", "g", "new", "STREAMS", "s", "0"),
            ("XREADGROUP", "GROUP", "g", "hist", "STREAMS", "s", "0"),
            ("XCLAIM", "s", "g", "other", "0", "1-1", "JUSTID"),
            ("XAUTOCLAIM", "s", "g", "third", "0", "0"), ("XACK", "s", "g", "1-1"),
            ("XSETID", "s", "5-5"), ("XGROUP", "SETID", "s", "g", "0"),
            ("XREADGROUP", "GROUP", "g", "noack", "NOACK", "STREAMS", "s", ">"),
            ("XGROUP", "DELCONSUMER", "s", "g", "c"), ("XGROUP", "DESTROY", "s", "g"),
        ):
            raw.call(*args)
        time.sleep(0.3)
        events = []
        while (message := listener.get_message(timeout=0.1)) is not None:
            if message["type"] == "pmessage":
                events.append(f"{message['channel'].decode()} {message['data'].decode()}")
        return events
    finally:
        raw.close()
        listener.close()
        client.config_set("notify-keyspace-events", "")


def test_group_commands_notify_as_redis(oracle, shardis_clean):
    ours = _group_events(shardis_clean.port)
    assert ours == _group_events(oracle.port)
    assert "__keyevent@0__:xgroup-createconsumer s" in ours


def test_waiters_served_when_the_last_id_passes_even_with_the_entries_gone(r, shardis_clean):
    """Redis serves a blocked reader once the stream's last ID passed its own, with what is
    there: ``MULTI; XADD; XDEL; EXEC`` answers both kinds of reader with an empty list."""
    port = shardis_clean.port
    r.xadd("s", {"a": "1"}, id="1-1")
    r.xgroup_create("s", "g", id="$")
    plain = Reader(port, "XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    _blocked(r, 1)
    grouped = Reader(port, "XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">")
    _blocked(r, 2)
    with r.pipeline(transaction=True) as tx:
        tx.xadd("s", {"a": "2"}, id="5-1")
        tx.xdel("s", "5-1")
        tx.execute()
    assert plain.result() == grouped.result() == b"*1\r\n*2\r\n$1\r\ns\r\n*0\r\n"
    assert r.xinfo_groups("s")[0]["last-delivered-id"] == b"1-1"


# DUMP / RESTORE with real Redis ------------------------------------------------------------------
def _build_groups(raw: RawClient, key: str) -> None:
    for n in range(1, 8):
        raw.call("XADD", key, f"{n}-1", "f", str(n))
    raw.call("XGROUP", "CREATE", key, "g", "0")
    raw.call("XGROUP", "CREATE", key, "quiet", "$", "ENTRIESREAD", "7")
    raw.call("XREADGROUP", "GROUP", "g", "a", "COUNT", "4", "STREAMS", key, ">")
    raw.call("XCLAIM", key, "g", "b", "0", "2-1", "3-1", "TIME", "1234", "RETRYCOUNT", "5")
    raw.call("XGROUP", "CREATECONSUMER", key, "g", "idle")
    raw.call("XDEL", key, "3-1")
    raw.call("XACK", key, "g", "1-1")


def test_groups_cross_dump_and_restore_with_redis(oracle, shardis_clean):
    """A stream with groups DUMPed by one server RESTOREs on the other to the same state (the
    PEL's delivery times and counts, consumers' seen times: all in the payload), and each
    server's DUMP of it is the same bytes."""
    theirs, ours = RawClient(oracle.port), RawClient(shardis_clean.port)
    try:
        theirs.call("FLUSHALL")
        _build_groups(theirs, "built")
        from tests.resp_client import decode

        payload = decode(theirs.call("DUMP", "built"))
        assert ours.call("RESTORE", A, "0", payload) == b"+OK\r\n"
        state = theirs.call("XINFO", "STREAM", "built", "FULL")
        assert ours.call("XINFO", "STREAM", A, "FULL") == state
        assert decode(ours.call("DUMP", A)) == payload
        back = decode(ours.call("DUMP", A))
        assert theirs.call("RESTORE", "back", "0", back) == b"+OK\r\n"
        assert theirs.call("XINFO", "STREAM", "back", "FULL") == state
    finally:
        theirs.close()
        ours.close()


@pytest.mark.parametrize("keys", [(A, B), ("{q}a", "{q}b")], ids=["several", "one-worker"])
def test_timeouts_racing_entries_never_lose_a_delivery(r, shardis_clean, keys):
    """A reader whose BLOCK runs out just as an entry comes: either it gets the entry (and
    owns it in the PEL) or it times out and the entry stays undelivered, never both or
    neither."""
    import random

    port = shardis_clean.port
    for name in keys:
        r.xgroup_create(name, "g", id="$", mkstream=True)
    rng = random.Random(5)
    received = 0
    for n in range(1, 31):
        reader = Reader(port, "XREADGROUP", "GROUP", "g", "r", "BLOCK", "15", "STREAMS",
                        *keys, ">", ">")
        time.sleep(rng.uniform(0.005, 0.03))
        r.xadd(keys[n % 2], {"n": str(n)}, id=f"{n}-1")
        reply = reader.result()
        if reply != b"*-1\r\n":
            received += reply.count(b"\r\n$1\r\nn\r\n")
        # whatever the reader did not get, another consumer takes now
        r.xreadgroup("g", "sweeper", {name: ">" for name in keys})
    owned = sum(r.xpending(name, "g")["pending"] for name in keys)
    assert owned == 30
    mine = sum(len(r.xpending_range(name, "g", "-", "+", 100, consumername="r"))
               for name in keys)
    assert mine == received
