"""Review tests for the router: reply order, gates, atomicity, backpressure, worker restarts.

Keys used below and their workers with 3 workers (checked by ``test_key_layout``):
``a``, ``b``, ``e`` -> worker 0; ``d`` -> worker 1; ``c`` -> worker 2.

Tests that stop (SIGSTOP) or kill a worker run on a private shardis, never on the shared one.
A failing test here is a bug report; each says what Redis 7.0.15 does.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from shardis.slots import SlotMap
from tests.resp_client import ConnectionClosed, RawClient, encode_command
from tests.servers import Server, start_shardis

KEYS_BY_WORKER = {0: ["a", "b", "e"], 1: ["d"], 2: ["c"]}


# --- helpers -----------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def worker_pid(server: Server, index: int) -> int:
    for pid in children(server.proc.pid):
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
        if b"worker" in argv and argv[argv.index(b"--index") + 1] == b"%d" % index:
            return pid
    raise LookupError(f"no worker {index}")


def ready_count(server: Server, index: int) -> int:
    with open(os.path.join(server.workdir, "shardis.log"), "rb") as fh:
        return fh.read().count(b"worker %d ready" % index)


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """Freeze a process (its socket stays open, nothing is answered); always thaw it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed meanwhile
            os.kill(pid, signal.SIGCONT)


def kill_and_wait_for_restart(server: Server, index: int, pid: int) -> None:
    before = ready_count(server, index)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while ready_count(server, index) == before:
        assert time.monotonic() < deadline, "the supervisor did not restart the worker"
        time.sleep(0.02)
    time.sleep(0.1)  # the router's DEALER reconnects to the new socket


def read_all(client: RawClient, timeout: float = 1.0) -> list[bytes]:
    """Every reply until the server closes the connection (or nothing comes for ``timeout``)."""
    replies = []
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while True:
            replies.append(client.read_reply(timeout))
    return replies


def reply_within(client: RawClient, timeout: float) -> bytes | None:
    try:
        return client.read_reply(timeout)
    except TimeoutError:
        return None


@pytest.fixture(scope="module")
def private() -> Iterator[Server]:
    server = start_shardis(workers=3)
    yield server
    server.stop()


@pytest.fixture
def fresh() -> Iterator[Server]:
    server = start_shardis(workers=3)
    yield server
    server.stop()


def test_key_layout():
    slots = SlotMap(3)
    for worker, keys in KEYS_BY_WORKER.items():
        assert {slots.worker_of(k.encode()) for k in keys} == {worker}


# --- reply ordering and protocol ---------------------------------------------------------------
@pytest.mark.parametrize(
    "pipeline",
    [
        [["MGET", "a", "c", "d"], ["HELLO", "3"]],
        [["HELLO", "3"], ["MGET", "a", "c", "d"], ["HELLO", "2"]],
        [["HELLO", "3"], ["MGET", "a", "c", "d"], ["RESET"]],
    ],
)
def test_split_reply_is_encoded_in_the_protocol_of_its_request(shardis_clean, oracle_clean,
                                                               pipeline):
    # Gather.done encodes the merged reply with client.proto *when the last part arrives*; a
    # HELLO/RESET later in the same pipeline has already switched it (core.py Gather.done).
    data = b"".join(encode_command(*cmd) for cmd in pipeline)
    replies = {}
    for name, server in (("shardis", shardis_clean), ("redis", oracle_clean)):
        with RawClient(server.port) as client:
            client.send_raw(data)
            replies[name] = client.read_replies(len(pipeline))
    mget = [i for i, cmd in enumerate(pipeline) if cmd[0] == "MGET"][0]
    assert replies["shardis"][mget] == replies["redis"][mget]


def test_single_and_coordinated_replies_keep_the_protocol_of_their_request(shardis_clean,
                                                                          oracle_clean):
    """The property that holds where the split one above fails: one-key commands capture the
    protocol at dispatch (the fast path refreshes it after HELLO), coordinated ones make the
    client wait, so a later HELLO/RESET cannot change how they are encoded."""
    pipeline = [["GET", "x"], ["HELLO", "3"], ["GET", "x"], ["RANDOMKEY"], ["HELLO", "2"],
                ["RANDOMKEY"], ["GET", "x"], ["HELLO", "3"], ["RENAME", "a", "d"], ["RESET"],
                ["GET", "x"]]
    data = b"".join(encode_command(*cmd) for cmd in pipeline)
    replies = []
    for server in (shardis_clean, oracle_clean):
        with RawClient(server.port) as client:
            client.send_raw(data)
            replies.append([r for cmd, r in zip(pipeline, client.read_replies(len(pipeline)))
                            if cmd[0] != "HELLO"])
    assert replies[0] == replies[1]


def test_protocol_error_in_a_later_read_keeps_the_commands_read_before(private, oracle_clean):
    # While the client waits for its RENAME (gate), GET d queues in its backlog.  The next read
    # is malformed and has no complete command: data_received calls protocol_error(), which
    # clears the backlog, so GET d is never run nor answered.  Redis answers it, then the error.
    first = encode_command("SET", "a", "1") + encode_command("RENAME", "a", "d")
    second = encode_command("GET", "d")
    bad = b"*1\r\n$x\r\n"
    with RawClient(oracle_clean.port) as client:
        for chunk in (first, second, bad):
            client.send_raw(chunk)
            time.sleep(0.02)
        expected = read_all(client)
    assert expected == [b"+OK\r\n", b"+OK\r\n", b"$1\r\n1\r\n",
                        b"-ERR Protocol error: invalid bulk length\r\n"]
    redis.Redis(port=private.port, protocol=2).flushall()
    with RawClient(private.port) as client:
        with stopped(worker_pid(private, 1)):
            for chunk in (first, second, bad):
                client.send_raw(chunk)
                time.sleep(0.05)
        assert read_all(client) == expected


def test_protocol_error_while_held_behind_a_gate_keeps_the_held_commands(private):
    # Client B's GET d is held (worker 1 is gated by A's RENAME), GET c waits in B's backlog.
    # B's next read is malformed: protocol_error() drops the backlog, writes the error and,
    # with no reply slot pending, closes at once; the held GET d is skipped on release.
    # Redis: B gets "$1 1" (A's RENAME came first), "$-1", then the error.
    redis.Redis(port=private.port, protocol=2).flushall()
    with RawClient(private.port) as owner, RawClient(private.port) as other:
        assert owner.call("SET", "a", "1") == b"+OK\r\n"
        with stopped(worker_pid(private, 1)):
            owner.send("RENAME", "a", "d")
            time.sleep(0.05)
            other.send_raw(encode_command("GET", "d") + encode_command("GET", "c"))
            time.sleep(0.05)
            other.send_raw(b"*1\r\n$x\r\n")
            time.sleep(0.05)
        assert read_all(owner, 0.5) == [b"+OK\r\n"]
        assert read_all(other) == [b"$1\r\n1\r\n", b"$-1\r\n",
                                   b"-ERR Protocol error: invalid bulk length\r\n"]


def test_held_command_keeps_its_clients_pipeline_in_order(private):
    """While worker 1 is gated, a client's GET d is held and its later commands wait behind it,
    even those for free workers; other clients' commands for free workers flow on."""
    redis.Redis(port=private.port, protocol=2).flushall()
    with (RawClient(private.port) as owner, RawClient(private.port) as other,
          RawClient(private.port) as bystander):
        assert owner.call("SET", "a", "1") == b"+OK\r\n"
        with stopped(worker_pid(private, 1)):
            owner.send("RENAME", "a", "d")
            time.sleep(0.05)
            other.send_raw(encode_command("SET", "c", "x") + encode_command("GET", "d")
                           + encode_command("SET", "c", "y") + encode_command("GET", "c"))
            assert other.read_reply(1.0) == b"+OK\r\n"
            assert reply_within(other, 0.2) is None  # GET d is held, the rest waits behind it
            assert bystander.call("GET", "c") == b"$1\r\nx\r\n"  # worker 2 is not gated
        assert owner.read_reply(1.0) == b"+OK\r\n"
        assert other.read_replies(3, 1.0) == [b"$1\r\n1\r\n", b"+OK\r\n", b"$1\r\ny\r\n"]


def test_quit_mid_pipeline_with_pending_split_and_coordinated_replies(shardis_clean,
                                                                      oracle_clean):
    pipeline = [
        ["MSET", "a", "1", "c", "2", "d", "3"],
        ["MGET", "a", "c", "d"],
        ["RENAME", "a", "d"],
        ["MSETNX", "b", "1", "c", "1"],
        ["GET", "d"],
        ["QUIT"],
        ["SET", "after", "quit"],
    ]
    data = b"".join(encode_command(*cmd) for cmd in pipeline)
    results = []
    for server in (shardis_clean, oracle_clean):
        with RawClient(server.port) as client:
            client.send_raw(data)
            replies = read_all(client)
            closed = client.is_closed()
        results.append((replies, closed, redis.Redis(port=server.port).exists("after")))
    assert results[0] == results[1]
    assert results[0][1] is True and results[0][2] == 0


def test_random_pipelines_answer_like_redis_byte_for_byte(shardis_clean, oracle_clean):
    """Per-client order over single, split, all-worker, coordinated and router commands."""
    rng = random.Random(2024)
    keys = ["a", "b", "c", "d", "e"]

    def key() -> str:
        return rng.choice(keys)

    makers = [
        lambda: ["SET", key(), str(rng.randrange(100))],
        lambda: ["GET", key()],
        lambda: ["INCR", key()],
        lambda: ["MGET", *rng.sample(keys, 3)],
        lambda: ["MSET", key(), "x", key(), "y"],
        lambda: ["MSETNX", key(), "n", key(), "m"],
        lambda: ["DEL", *rng.sample(keys, 2)],
        lambda: ["EXISTS", *rng.sample(keys, 3)],
        lambda: ["RENAME", key(), key()],
        lambda: ["RENAMENX", key(), key()],
        lambda: ["COPY", key(), key(), "REPLACE"],
        lambda: ["DBSIZE"],
        lambda: ["PING"],
        lambda: ["ECHO", "e"],
        lambda: ["LCS", key(), key()],
        lambda: ["NOSUCHCOMMAND"],
        lambda: ["GET"],
    ]
    pipeline = [rng.choice(makers)() for _ in range(600)]
    data = b"".join(encode_command(*cmd) for cmd in pipeline)
    results = []
    for server in (shardis_clean, oracle_clean):
        with RawClient(server.port) as client:
            for start in range(0, len(data), 997):  # odd-sized writes: requests split anywhere
                client.send_raw(data[start : start + 997])
            results.append(client.read_replies(len(pipeline)))
    for index, (mine, theirs) in enumerate(zip(*results)):
        assert mine == theirs, f"command {index} {pipeline[index]}"


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("protocol", [2, 3])
def test_random_string_and_key_commands_answer_like_redis(shardis_clean, oracle_clean, seed,
                                                          protocol):
    """Worker-side differential fuzz: odd integers, option mixes, TTLs far enough in the future
    to be deterministic, keys spread over the three workers (split and coordinated paths)."""
    rng = random.Random(seed)
    keys = ["a", "b", "c", "d", "e", "{t}x", "{t}y"]
    ints = ["0", "1000", "-1", "100", "9223372036854775807", "-9223372036854775808", "1.5",
            "abc", "", " 1", "01", "+1", "100000", "-100", "3e2"]
    values = ["", "x", "hello", "12", "-5", "1.5", "9223372036854775807", "0x10", "3.0e3",
              "inf", "nan", " 2"]

    def k() -> str:
        return rng.choice(keys)

    def i() -> str:
        return rng.choice(ints)

    def v() -> str:
        return rng.choice(values)

    def opts() -> list[str]:
        words = ["NX", "XX", "GET", "KEEPTTL", "EX", "PX", "EXAT", "PXAT", i(), "PERSIST"]
        return rng.sample(words, rng.randrange(3))

    makers = [
        lambda: ["SET", k(), v(), *opts()], lambda: ["GET", k()], lambda: ["GETEX", k(), *opts()],
        lambda: ["GETDEL", k()], lambda: ["GETSET", k(), v()], lambda: ["APPEND", k(), v()],
        lambda: ["STRLEN", k()], lambda: ["GETRANGE", k(), i(), i()],
        lambda: ["SETRANGE", k(), i(), v()], lambda: ["INCR", k()],
        lambda: ["DECRBY", k(), i()], lambda: ["INCRBYFLOAT", k(), rng.choice(ints + ["1e308"])],
        lambda: ["MGET", *rng.sample(keys, 3)], lambda: ["MSET", k(), v(), k(), v()],
        lambda: ["MSETNX", k(), v(), k(), v()], lambda: ["DEL", *rng.sample(keys, 2)],
        lambda: ["EXISTS", k(), k(), k()], lambda: ["RENAME", k(), k()],
        lambda: ["RENAMENX", k(), k()], lambda: ["COPY", k(), k(), *rng.sample(["REPLACE"], 1)],
        lambda: ["TYPE", k()], lambda: ["OBJECT", "ENCODING", k()],
        lambda: ["OBJECT", "REFCOUNT", k()], lambda: ["EXPIRE", k(), i(), rng.choice(["NX", "GT"])],
        lambda: ["PEXPIREAT", k(), i()], lambda: ["PERSIST", k()], lambda: ["TTL", k()],
        lambda: ["SETEX", k(), i(), v()], lambda: ["LCS", k(), k(), rng.choice(["LEN", "IDX"])],
        lambda: ["SET", k(), v(), rng.choice(["EX", "PX"]), "100000", *opts()],
        lambda: ["DBSIZE"],
    ]
    clients = []
    for server in (shardis_clean, oracle_clean):
        client = RawClient(server.port)
        if protocol == 3:
            client.hello3()
        clients.append(client)
    try:
        for _ in range(200):
            cmd = rng.choice(makers)()
            mine, theirs = (client.call(*cmd) for client in clients)
            assert mine == theirs, cmd
    finally:
        for client in clients:
            client.close()


# --- atomicity and gates -----------------------------------------------------------------------
def test_cross_worker_rename_is_never_seen_half_done(shardis_clean):
    """A value bounces between a (worker 0) and d (worker 1); MGET a d must always see it in
    exactly one place: the gate holds the MGET while the move is between its two steps."""
    port = shardis_clean.port
    redis.Redis(port=port).set("a", "v")
    stop = threading.Event()
    torn: list[list] = []

    def mover() -> None:
        client = redis.Redis(port=port, protocol=2)
        for _ in range(150):
            client.rename("a", "d")
            client.rename("d", "a")
        stop.set()

    def reader() -> None:
        client = redis.Redis(port=port, protocol=2)
        while not stop.is_set():
            pipe = client.pipeline(transaction=False)
            for _ in range(20):
                pipe.mget("a", "d")
            for values in pipe.execute():
                if sorted(values, key=lambda v: v is None) != [b"v", None]:
                    torn.append(values)

    threads = [threading.Thread(target=mover)] + [threading.Thread(target=reader)
                                                  for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not torn, torn[:3]


def test_gates_are_released_when_clients_vanish_mid_operation(shardis_clean):
    port = shardis_clean.port
    redis.Redis(port=port).mset({"a": "1", "c": "1"})
    for i in range(40):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            encode_command("RENAME", "a", "d") + encode_command("RENAME", "d", "a")
            + encode_command("MSETNX", "b", str(i), "c", "x")
            + encode_command("GET", "a") * 50
        )
        sock.close()
    with RawClient(port, timeout=1) as client:
        assert client.call("MGET", "a", "b", "c", "d").startswith(b"*4\r\n")
        assert client.call("INFO", "clients").startswith(b"$")
        assert client.call("DBSIZE") in (b":2\r\n", b":3\r\n")


def test_connect_disconnect_churn_leaves_no_clients_behind(shardis_clean):
    port = shardis_clean.port
    control = redis.Redis(port=port, protocol=2)
    baseline = control.info("clients")["connected_clients"]
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(encode_command("MGET", "a", "c", "d") * 20
                     + encode_command("RENAME", "x", "d") + encode_command("GET", "c") * 20)
        sock.close()
    deadline = time.monotonic() + 1.5
    while control.info("clients")["connected_clients"] != baseline:
        assert time.monotonic() < deadline, "closed connections are still registered"
        time.sleep(0.05)


def test_scan_returns_every_key_present_throughout_with_many_scans_open(shardis_clean,
                                                                       oracle_clean):
    """Redis guarantees that SCAN returns every element present for the whole iteration.
    A shard keeps at most 64 SCAN snapshots (commands/keys.py _MAX_SNAPSHOTS); once a cursor's
    snapshot is evicted, the next page takes a *new* snapshot and goes on at the old offset,
    so keys deleted meanwhile shift the list and live keys are skipped."""
    slots = SlotMap(3)
    tag = next(t for t in (f"t{i}" for i in range(100)) if slots.worker_of(t.encode()) == 0)
    keys = [f"{{{tag}}}k{i}".encode() for i in range(60)]
    missing = {}
    for name, server in (("shardis", shardis_clean), ("redis", oracle_clean)):
        client = redis.Redis(port=server.port, protocol=2)
        client.mset({k: "v" for k in keys})
        cursor, page = client.scan(0, count=10)
        for _ in range(70):  # other iterations start (and are abandoned)
            client.scan(0, count=1)
        client.delete(*page)  # keys already returned go away
        seen = set(page)
        while cursor != 0:
            cursor, more = client.scan(cursor, count=10)
            seen.update(more)
        missing[name] = sorted(set(keys) - seen)
    assert missing == {"shardis": [], "redis": []}


# --- worker restarts ---------------------------------------------------------------------------
def test_command_lost_with_a_restarted_worker_is_answered(private):
    # Regression test (holds since 644f060, ZeroMQ monitor): before, a batch lost with a dead
    # worker was only detected when a *later* batch to that worker was answered, so a client
    # alone on that worker waited forever.  Expected: "ERR worker 1 connection lost".
    with RawClient(private.port) as client:
        pid = worker_pid(private, 1)
        with stopped(pid):
            client.send("GET", "d")
            time.sleep(0.05)
            kill_and_wait_for_restart(private, 1, pid)
        assert reply_within(client, 1.0) is not None, "no reply to a command lost with a worker"


def test_worker_restart_during_a_gated_operation_does_not_deadlock(fresh):
    # Regression test (holds since 644f060): RENAME a d gates workers 0 and 1 and waits for
    # worker 1, which dies.  With loss detected only by a later batch to worker 1, and every
    # command for workers 0 and 1 held behind the gate, nothing was ever sent again: the gate
    # leaked and both workers were unavailable for good (GET, MGET, INFO, FLUSHALL... hung).
    with RawClient(fresh.port) as owner:
        assert owner.call("SET", "a", "1") == b"+OK\r\n"
        pid = worker_pid(fresh, 1)
        with stopped(pid):
            owner.send("RENAME", "a", "d")
            time.sleep(0.05)
            kill_and_wait_for_restart(fresh, 1, pid)
        with RawClient(fresh.port) as other:
            other.send("GET", "b")  # worker 0: not even touched by the dead worker
            assert reply_within(other, 1.0) is not None, "worker 0 is stuck behind a leaked gate"
        assert reply_within(owner, 0.5) is not None, "the RENAME is never answered"


# --- backpressure and memory -------------------------------------------------------------------
def test_backpressure_survives_a_coordinated_command(shardis_clean):
    """A client that does not read its replies must stop being read (pause_writing ->
    pause_reading).  ClientConnection.resume() calls resume_reading() whenever its backlog is
    short, also while the transport is still paused for writing: after any coordinated command
    (MSETNX here) the router reads and buffers that client's replies without bound."""
    port = shardis_clean.port
    control = redis.Redis(port=port, protocol=2)
    hog = socket.create_connection(("127.0.0.1", port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = b"x" * 1_000_000
    try:
        hog.sendall(
            encode_command("SET", "big", big) + encode_command("GET", "big") * 10
            + encode_command("MSETNX", "a", "1", "c", "1")
        )
        time.sleep(0.3)  # 10 MB of replies pending: the router has paused reading this client
        hog.sendall(encode_command("GET", "big") * 20 + encode_command("SET", "marker", "1"))
        time.sleep(0.5)
        assert control.get("marker") is None, (
            "the router went on reading (and buffering 20 MB of replies for) a client whose "
            "writes are paused"
        )
    finally:
        hog.close()


def test_expired_keys_are_reclaimed_without_being_accessed(shardis_clean, oracle_clean):
    """Redis's active expiry frees keys nobody reads again; shardis only expires on access, so
    a cache workload (SET k v EX n, never read) grows without bound.  INFO keyspace shows it."""
    for server in (shardis_clean, oracle_clean):
        client = redis.Redis(port=server.port, protocol=2)
        pipe = client.pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"ttl:{i}", "v", px=20)
        pipe.execute()
    time.sleep(0.6)
    oracle_keys = redis.Redis(port=oracle_clean.port, protocol=2).info("keyspace")
    shardis_keys = redis.Redis(port=shardis_clean.port, protocol=2).info("keyspace")
    assert oracle_keys == {}
    assert shardis_keys == oracle_keys


def test_lcs_of_a_short_and_a_long_string_is_not_quadratic():
    # _walk_back tests one bit with (rows[i] >> (j - 1)) & 1: O(len(b)) per step, up to
    # len(a) + len(b) steps.  LCS of 1 byte vs 1 MB takes ~15 s (Redis: milliseconds for the
    # 1 x 1M table); when the keys are on two workers it runs in the router and freezes every
    # client.  (Child process: a failure costs 1.5 s.)
    import subprocess
    import sys

    # Linear, not quadratic: 4x the length must cost about 4x the time, not 16x (a ratio of
    # best-of-3 times, so a loaded machine does not make it flaky; no absolute time limit).
    code = (
        "import time\n"
        "from shardis.lcs import lcs\n"
        "def best(n):\n"
        "    times = []\n"
        "    for _ in range(3):\n"
        "        started = time.perf_counter()\n"
        "        lcs(b'x', bytes(n), want_idx=True)\n"
        "        times.append(time.perf_counter() - started)\n"
        "    return min(times)\n"
        "print(best(300_000) / best(75_000))\n"
    )
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("LCS of 1 byte vs 300 KB takes seconds: quadratic")
    assert float(result.stdout) < 8, f"time ratio for 4x the length: {result.stdout!r}"
