"""A worker crash is a pause, not a loss (``appendonly yes``).

The router keeps each worker's batches in flight; when a worker dies, it holds them (and the
commands that arrive meanwhile), and when the restarted worker has loaded its AOF and said the
last batch of this router it holds (``__whoami applied``), it resends the rest in order.  So
with ``appendfsync everysec`` a kill -9 of a worker loses no acknowledged write, applies none
twice, leaves no cross-worker MSET half applied, and clients see a delay, not an error.
Without an AOF, or past worker-restart-timeout / worker-restart-buffer, commands for that
worker fail at once with a clear error (``CLUSTERDOWN worker N (address) is down...``); a
worker that keeps crashing never stops the others.  A router run alone (``shardis router``,
workers on other hosts) holds only the batches in flight: new commands for a worker that is
gone fail at once (``... is unreachable``), since nothing says when it comes back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis

from shardis.slots import SlotMap
from tests.servers import free_port, start_shardis, wait_for_port
from tests.test_persistence_aof import kill9, tag_on, worker_pids


class Writers:
    """Threads that INCR counters (each on its own connection, some pipelined) and MSET
    pairs across workers, counting what was acknowledged, until stopped."""

    def __init__(self, port: int, tags: list[str], threads: int = 4) -> None:
        self.port = port
        self.tags = tags
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.acked: dict[str, int] = {}
        self.pairs: dict[str, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.incr_loop, args=(n,)) for n in range(threads)]
        self.threads.append(threading.Thread(target=self.mset_loop))

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def incr_loop(self, n: int) -> None:
        client = redis.Redis(port=self.port, socket_timeout=60, retry=None)
        keys = [f"{{{tag}}}counter{n}" for tag in self.tags]
        try:
            while not self.stop.is_set():
                sent = keys if n % 2 else keys[:1]
                with client.pipeline(transaction=False) as pipe:
                    for key in sent:
                        pipe.incr(key)
                    results = pipe.execute(raise_on_error=False)
                with self.lock:
                    for key, result in zip(sent, results):
                        if isinstance(result, Exception):
                            self.errors.append(result)
                        else:
                            self.acked[key] = self.acked.get(key, 0) + 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def mset_loop(self) -> None:
        client = redis.Redis(port=self.port, socket_timeout=60, retry=None)
        a, b = (f"{{{tag}}}pair" for tag in self.tags)
        value = 0
        try:
            while not self.stop.is_set():
                value += 1
                client.mset({a: value, b: value})
                self.pairs["last"] = value
                got = client.mget(a, b)
                if got[0] != got[1]:
                    raise AssertionError(f"MSET half applied: {got}")
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)


def until_served(call, timeout: float = 20.0) -> object:
    """``call()``'s result once it stops failing with an error reply (a worker coming back)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (redis.ResponseError, redis.BusyLoadingError):
            assert time.monotonic() < deadline, "the worker never came back"
            time.sleep(0.1)


def wait_new_worker(server, index: int, old: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while worker_pids(server).get(index) in (None, old):
        assert time.monotonic() < deadline, f"worker {index} was not restarted"
        time.sleep(0.05)


@pytest.fixture
def everysec(tmp_path):
    server = start_shardis(2, "--appendonly", "yes", "--appendfsync", "everysec",
                           "--dir", str(tmp_path / "data"), "--save", "")
    yield server
    server.stop()


def test_kill_9_of_a_worker_under_load_is_a_pause(everysec):
    tags = [tag_on(0), tag_on(1)]
    with Writers(everysec.port, tags) as writers:
        time.sleep(0.5)
        for index in (1, 0, 1):
            old = kill9(everysec, index)
            wait_new_worker(everysec, index, old)
            time.sleep(0.7)
    assert not writers.errors, [str(e) for e in writers.errors[:3]]
    client = redis.Redis(port=everysec.port)
    for key, count in writers.acked.items():
        assert int(client.get(key)) == count, key  # none lost, none applied twice
    assert sum(writers.acked.values()) > 100
    a, b = (f"{{{tag}}}pair" for tag in tags)
    assert client.mget(a, b) == [str(writers.pairs["last"]).encode()] * 2
    log = open(os.path.join(everysec.workdir, "shardis.log")).read()
    assert "holding its commands" in log and "is back:" in log


class Separate:
    """Two `shardis worker` processes with AOFs and a `shardis router`: a dead worker stays
    dead until the test starts it again."""

    def __init__(self, tmp_path, *router_flags: str, appendonly: bool = True) -> None:
        self.ports = [free_port() for _ in range(2)]
        self.data = str(tmp_path / "data")
        self.flags = ("--appendonly", "yes" if appendonly else "no", "--save", "")
        self.workers: dict[int, subprocess.Popen] = {}
        self.port = free_port()
        self.router = subprocess.Popen(
            [sys.executable, "-m", "shardis", "router", "--connect",
             ",".join(f"tcp://127.0.0.1:{p}" for p in self.ports), "--port", str(self.port),
             *router_flags], stderr=subprocess.PIPE, text=True)

    def start(self, index: int) -> None:
        self.workers[index] = subprocess.Popen(
            [sys.executable, "-m", "shardis", "worker", "--listen",
             f"tcp://127.0.0.1:{self.ports[index]}", "--index", str(index), "--dir", self.data,
             *self.flags])

    def kill(self, index: int) -> None:
        self.workers[index].kill()
        self.workers[index].wait()

    def __enter__(self) -> Separate:
        return self

    def __exit__(self, *_: object) -> None:
        self.router.terminate()
        self.log = self.router.communicate(timeout=20)[1]
        for proc in self.workers.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a test may have left it stopped
                proc.terminate()
            proc.wait(timeout=20)


def separate(tmp_path, *router_flags: str) -> Separate:
    """Both workers started, the router serving."""
    servers = Separate(tmp_path, *router_flags)
    servers.start(0)
    servers.start(1)
    wait_for_port(servers.port, servers.router)
    return servers


def _in_flight(client: redis.Redis, command: Any) -> tuple[threading.Thread, list[object]]:
    """Run ``command(client)`` in a thread; its result or error lands in the list."""
    results: list[object] = []

    def call() -> None:
        try:
            results.append(command(client))
        except redis.RedisError as exc:
            results.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, results


def test_a_router_alone_fails_new_commands_at_once_and_resends_those_in_flight(tmp_path):
    """Run alone (not by ``shardis up``), the router cannot know when a worker on another
    host comes back: once heartbeats say it is gone (about a second), commands for it fail at
    once, naming it (CLUSTERDOWN), while the other worker serves; a command that was in
    flight is held and answered when the worker is back (its AOF)."""
    key = f"{{{tag_on(1)}}}k"
    with separate(tmp_path, "--worker-restart-timeout", "20") as servers:
        client = redis.Redis(port=servers.port, socket_timeout=30, retry=None)
        assert client.set(key, "before")
        os.kill(servers.workers[1].pid, signal.SIGSTOP)  # a host that stops answering
        waiting, results = _in_flight(client, lambda c: c.incr(f"{key}n"))
        time.sleep(2.0)  # heartbeats: gone after about a second
        other = redis.Redis(port=servers.port, socket_timeout=5, retry=None)
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ClusterDownError) as down:
            other.get(key)
        assert time.monotonic() - started < 0.5  # at once, not after a wait
        assert str(down.value) == (f"worker 1 (tcp://127.0.0.1:{servers.ports[1]}) is "
                                   "unreachable")
        assert not results  # held, not failed
        assert other.set(f"{{{tag_on(0)}}}x", 1)  # the healthy worker serves meanwhile
        spanning = {f"{{{tag_on(0)}}}m": "new", f"{{{tag_on(1)}}}m": "new"}
        with pytest.raises(redis.exceptions.ClusterDownError):
            other.mset(spanning)  # across workers: all or nothing, so nothing
        assert other.get(f"{{{tag_on(0)}}}m") is None
        servers.kill(1)
        servers.start(1)
        waiting.join(timeout=20)
        assert results == [1]
        assert until_served(lambda: other.get(key)) == b"before"


def test_past_worker_restart_timeout_commands_in_flight_fail_then_all_work_again(tmp_path):
    key = f"{{{tag_on(1)}}}k"
    with separate(tmp_path, "--worker-restart-timeout", "1") as servers:
        client = redis.Redis(port=servers.port, socket_timeout=10, retry=None)
        assert client.set(key, "kept")
        os.kill(servers.workers[1].pid, signal.SIGSTOP)
        started = time.monotonic()
        waiting, results = _in_flight(client, lambda c: c.get(key))
        waiting.join(timeout=10)
        assert time.monotonic() - started < 5  # ~1 s to notice, 1 s held
        assert str(results[0]) == (f"worker 1 (tcp://127.0.0.1:{servers.ports[1]}) is down: "
                                   "it did not come back within worker-restart-timeout (1s)")
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ClusterDownError, match="worker 1 .* is down"):
            client.get(key)  # fails fast now
        assert time.monotonic() - started < 0.5
        servers.kill(1)
        servers.start(1)
        assert until_served(lambda: client.get(key)) == b"kept"


def test_commands_held_past_worker_restart_buffer_fail(tmp_path):
    """Under ``shardis up`` commands wait for a worker being restarted, up to
    worker-restart-buffer bytes: past it they fail (a worker that cannot start: a corrupt
    AOF keeps it down)."""
    data = tmp_path / "data"
    server = start_shardis(2, "--appendonly", "yes", "--dir", str(data), "--save", "",
                           "--worker-restart-buffer", "1mb")
    try:
        client = redis.Redis(port=server.port, socket_timeout=20, retry=None)
        key = f"{{{tag_on(1)}}}big"
        assert client.set(key, "x")
        _corrupt_aof(data / "worker-1" / "appendonlydir")
        os.kill(worker_pids(server)[1], signal.SIGKILL)
        time.sleep(0.5)
        with client.pipeline(transaction=False) as pipe:
            for i in range(20):
                pipe.set(f"{key}{i}", b"x" * 100_000)
            results = pipe.execute(raise_on_error=False)
        assert all(isinstance(r, redis.ResponseError) for r in results)
        assert "worker-restart-buffer" in str(results[-1])
    finally:
        server.stop()


def _corrupt_aof(aof_dir) -> None:
    """Corruption in the middle of the incr file: the worker cannot start any more."""
    incr = next(p for p in aof_dir.iterdir() if p.name.endswith(".incr.aof"))
    with open(incr, "r+b") as fh:
        fh.seek(fh.read().index(b"$3\r\nSET"))
        fh.write(b"!!")


def test_a_worker_that_keeps_crashing_does_not_stop_the_others(tmp_path):
    data = tmp_path / "data"
    server = start_shardis(2, "--appendonly", "yes", "--dir", str(data), "--save", "",
                           "--worker-restart-timeout", "1")
    try:
        client = redis.Redis(port=server.port, socket_timeout=10, retry=None)
        healthy, broken = f"{{{tag_on(0)}}}k", f"{{{tag_on(1)}}}k"
        assert client.set(healthy, "fine") and client.set(broken, "x")
        _corrupt_aof(data / "worker-1" / "appendonlydir")
        for _ in range(7):  # more than the old limit of 5 exits in 30 s
            pid = worker_pids(server).get(1)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        time.sleep(3)
        assert server.proc.poll() is None, "the server stopped"
        assert client.get(healthy) == b"fine"
        with pytest.raises(redis.exceptions.ClusterDownError, match="worker 1 .* is down"):
            client.get(broken)
        log = open(os.path.join(server.workdir, "shardis.log")).read()
        assert "exits in 5 minutes" in log
    finally:
        server.stop()


def test_without_an_aof_a_dead_workers_commands_fail_fast(tmp_path):
    server = start_shardis(2, "--save", "", "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port, socket_timeout=10, retry=None)
        key = f"{{{tag_on(1)}}}k"
        pid = worker_pids(server)[1]
        os.kill(pid, signal.SIGSTOP)
        results: list[object] = []

        def call() -> None:
            try:
                results.append(client.get(key))
            except redis.RedisError as exc:
                results.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=10)
        assert str(results[0]) == "worker 1 connection lost"
        assert SlotMap(2).worker_of(key.encode()) == 1
    finally:
        server.stop()


def test_a_restarted_worker_knows_the_last_batch_it_holds_and_its_replies(tmp_path):
    """The worker side of a resume, deterministically: a router (a DEALER with a fixed id)
    sends batches; the worker is killed; the restarted one says the last batch of that router
    its AOF holds and hands back the recorded replies of write batches, byte for byte."""
    import hiredis

    from shardis import protocol
    from tests.test_worker_link import RouterPeer, start_worker, stop

    address = f"tcp://127.0.0.1:{free_port()}"
    flags = ("--dir", str(tmp_path), "--appendonly", "yes", "--save", "")
    codec = protocol.codec_for(False)

    def connect(identity: bytes) -> RouterPeer:
        return RouterPeer(address, identity)

    call = RouterPeer.call

    proc = start_worker(address, str(tmp_path / "w.log"), *flags)
    sock = connect(b"router-a")
    other = connect(b"router-b")
    try:
        assert call(sock, 1, [b"__whoami", b"applied"]) == [b"*2\r\n:0\r\n:0\r\n"]
        assert call(sock, 7, [b"INCR", b"n"], [b"GET", b"n"]) == [b":1\r\n", b"$1\r\n1\r\n"]
        assert call(sock, 8, [b"GET", b"n"]) == [b"$1\r\n1\r\n"]  # read-only: not logged
        assert call(sock, 9, [b"INCRBY", b"n", b"5"]) == [b":6\r\n"]
        assert call(other, 3, [b"SET", b"x", b"y"]) == [b"+OK\r\n"]
        stop(proc)
        proc = start_worker(address, str(tmp_path / "w2.log"), *flags)
        assert call(sock, 10, [b"__whoami", b"applied"]) == [b"*2\r\n:0\r\n:9\r\n"]
        assert call(other, 4, [b"__whoami", b"applied"]) == [b"*2\r\n:0\r\n:3\r\n"]
        lost = call(sock, 11, [b"__lost_replies", b"7", b"8", b"9"])[0]
        reader = hiredis.Reader()
        reader.feed(lost)
        recorded = reader.gets()
        # 7 and 9 are recorded (the replies as the router would have had them); 8 is not.
        assert recorded[1] is None
        assert codec.decode_replies(recorded[0])[1:] == ([b":1\r\n", b"$1\r\n1\r\n"], ())
        assert codec.decode_replies(recorded[2])[1:] == ([b":6\r\n"], ())
        assert call(sock, 12, [b"__lost_replies", b"9"]) == [b"*1\r\n$-1\r\n"]  # taken once
        assert call(sock, 14, [b"__lost_replies", b"x"], [b"__whoami", b"nope"]) == [
            b"-ERR value is not an integer or out of range\r\n", b"-ERR syntax error\r\n"]
        assert call(sock, 13, [b"GET", b"n"]) == [b"$1\r\n6\r\n"]
    finally:
        sock.close()
        other.close()
        stop(proc)


def test_a_bgsave_during_cross_worker_msets_is_one_consistent_cut(tmp_path):
    """BGSAVE goes to every worker in the same flush: no cross-worker MSET (or transaction)
    is half inside the snapshot, whichever worker forks first."""
    from shardis.persist.rdb import read_rdb

    data = tmp_path / "data"
    server = start_shardis(3, "--save", "", "--dir", str(data))
    tags = [tag_on(i, 3) for i in range(3)]
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        client = redis.Redis(port=server.port)
        value = 0
        try:
            while not stop.is_set():
                value += 1
                client.mset({f"{{{tag}}}w{n}": value for tag in tags})
                with client.pipeline(transaction=True) as tx:
                    for tag in tags:
                        tx.set(f"{{{tag}}}t{n}", value)
                    tx.execute()
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    try:
        for thread in threads:
            thread.start()
        client = redis.Redis(port=server.port)
        for _ in range(5):
            time.sleep(0.2)
            assert client.bgsave()
            while client.info("persistence")["rdb_bgsave_in_progress"]:
                time.sleep(0.02)
            values: dict[bytes, bytes] = {}
            for index in range(3):
                path = data / f"worker-{index}" / "dump.rdb"
                values.update((key, value) for key, value, _ in read_rdb(str(path)))
            for n in range(3):
                for name in (b"w%d" % n, b"t%d" % n):
                    seen = {values.get(b"{%s}%s" % (tag.encode(), name)) for tag in tags}
                    assert len(seen) == 1, (name, seen)  # all or nothing
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        server.stop()
    assert not failures


def test_a_worker_not_there_at_start_answers_loading_until_it_is(tmp_path):
    """The router starts without a worker that has not connected after its check (a worker
    loading a big file binds only when loaded): that worker's keys answer -LOADING, as a
    loading Redis does, the others are served, and once it connects it serves."""
    with Separate(tmp_path, appendonly=False) as servers:
        servers.start(0)
        wait_for_port(servers.port, servers.router, timeout=60)
        client = redis.Redis(port=servers.port, socket_timeout=10, retry=None)
        assert client.set(f"{{{tag_on(0)}}}k", 1)
        with pytest.raises(redis.BusyLoadingError, match="loading the dataset"):
            client.get(f"{{{tag_on(1)}}}k")
        servers.start(1)
        assert until_served(lambda: client.set(f"{{{tag_on(1)}}}k", 2))
    assert "its keys answer -LOADING" in servers.log


def test_kill_9_of_the_whole_tree_under_always_loses_no_acknowledged_write(tmp_path):
    """Every worker and the supervisor killed at once (no clean close of anything): what was
    acknowledged under ``appendfsync always`` is all there when started again."""
    from tests.test_persistence_aof import snapshot, wait_equal, write_everything

    data = str(tmp_path / "data")
    flags = ("--appendonly", "yes", "--appendfsync", "always", "--dir", data, "--save", "")
    server = start_shardis(2, *flags)
    try:
        client = redis.Redis(port=server.port)
        for index in (0, 1):
            write_everything(client, tag_on(index))
        expected = snapshot(client)
        for pid in worker_pids(server).values():
            os.kill(pid, signal.SIGKILL)
        server.proc.kill()
        server.proc.wait(timeout=10)
    finally:
        server.stop()
    again = start_shardis(2, *flags)
    try:
        assert wait_equal(redis.Redis(port=again.port), expected) == expected
    finally:
        again.stop()


def test_a_torn_or_garbled_reply_log_loses_only_its_bad_tail(tmp_path):
    """The reply log is read at start from files a crash may have cut anywhere: complete
    records load, a torn or nonsensical tail is ignored, nothing raises."""
    from shardis.worker.replylog import ReplyLog

    log = ReplyLog(str(tmp_path))
    log.append(b"r1", (5).to_bytes(8, "big"), b"reply-5")
    log.append(b"r1", (6).to_bytes(8, "big"), b"reply-6")
    log.close()
    path = tmp_path / "replies-0"
    whole = path.read_bytes()
    for tail in (whole[:-3], whole + b"\xff" * 7, whole + b"\x05\x00\x00\x00\x40xyz",
                 whole + b"\xff\xff\xff\x7f\x01r"):
        path.write_bytes(tail)
        reread = ReplyLog(str(tmp_path))
        got = reread.take(b"r1", [5, 6])
        assert got[0] == b"reply-5" and got[1] in (b"reply-6", None)
        reread.close()
    path.write_bytes(b"\x00" * 3)
    assert ReplyLog(str(tmp_path)).take(b"r1", [5]) == [None]
