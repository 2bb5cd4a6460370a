"""Acceptance test (issue #15): three job-queue libraries run on shardis as their users run them.

dramatiq (redis broker), bullmq (the Python package) and saq each enqueue a few hundred jobs
and run them with the library's own worker, in this process (dramatiq's Worker threads,
bullmq's and saq's asyncio Workers), against ``shardis up --workers 3`` and, as the control,
the same test body against a real redis-server.  Their Lua scripts are what makes them hard:
dramatiq declares one key and builds the queue keys inside its script, bullmq declares 9-14
keys (on several workers) and uses cmsgpack, saq's enqueue script's keys share no hash tag.

Every run is recorded outside the server (a Counter under a lock), so "each job ran exactly
once" does not depend on what the server says.  Each library also goes through its retry path
(a job that fails once, then succeeds), delayed jobs, and a job that fails for good (dead
letter / failed set / failed status), and bullmq's QueueEvents must see every completion.
A test skips only when its library is not installed; a hung server fails it (``bounded``).
The last test is the shardis bug bullmq met first (a NOSCRIPT left a worker in global mode).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
from collections import Counter

import pytest
import redis

from tests.servers import Server, start_redis, start_shardis

JOBS = 300
#: every DELAYED-th job is delayed (scheduled) a little
DELAYED = 7
#: jobs with n % FLAKY == 1 fail on their first attempt, then succeed
FLAKY = 10
#: this many extra jobs always fail: they must end where the library puts failed jobs
DOOMED = 3
#: how long the worker gets to run everything (each test stays well within a minute)
DEADLINE = 40.0


@pytest.fixture(scope="module", params=["shardis", "redis"])
def server(request) -> Server:
    """``shardis up --workers 3``, or a real redis-server as the control."""
    server = start_shardis(workers=3) if request.param == "shardis" else start_redis()
    yield server
    server.stop()


@pytest.fixture
def queue_server(server: Server) -> Server:
    """The module's server, flushed; afterwards, shardis's log must show no new error."""
    client = redis.Redis(port=server.port, protocol=2)
    client.flushall()
    client.close()
    log = f"{server.workdir}/shardis.log"
    start = os.path.getsize(log) if server.name == "shardis" else 0
    yield server
    if server.name == "shardis":
        with open(log, "rb") as fh:
            fh.seek(start)
            lines = fh.read().decode(errors="replace").splitlines(True)
            bad = [line for line in lines if "level=error" in line or "Traceback" in line]
        assert not bad, "".join(bad[-20:])


def flaky(n: int) -> bool:
    return n % FLAKY == 1


def delayed(n: int) -> bool:
    return n % DELAYED == 0


class Runs:
    """What ran, kept in this process: attempts and successful runs per job, under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: Counter[int] = Counter()
        self.done: Counter[int] = Counter()

    def attempt(self, n: int) -> None:
        """One attempt at job ``n``: fails (raises) if it is the first attempt of a flaky job
        or any attempt of a doomed one (n < 0)."""
        with self.lock:
            self.attempts[n] += 1
            first = self.attempts[n] == 1
        if n < 0:
            raise RuntimeError(f"job {n} always fails")
        if flaky(n) and first:
            raise RuntimeError(f"job {n} fails on its first attempt")
        with self.lock:
            self.done[n] += 1

    def complete(self) -> bool:
        with self.lock:
            return len(self.done) == JOBS and all(self.attempts[-d] for d in range(1, DOOMED + 1))

    def check(self, doomed_attempts: int) -> None:
        with self.lock:
            assert set(self.done) == set(range(JOBS)), (
                f"jobs that never ran: {sorted(set(range(JOBS)) - set(self.done))[:20]}")
            twice = {n: c for n, c in self.done.items() if c != 1}
            assert not twice, f"jobs that ran more than once: {twice}"
            for n in range(JOBS):
                assert self.attempts[n] == (2 if flaky(n) else 1), (n, self.attempts[n])
            for d in range(1, DOOMED + 1):
                assert self.attempts[-d] == doomed_attempts, (-d, self.attempts[-d])


def bounded(scenario, timeout: float = DEADLINE + 15):
    """``scenario()``'s value, run in a daemon thread: a server that stops answering fails the
    test after ``timeout`` seconds instead of hanging it (the fixture then stops the server)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = scenario()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="job-queue-scenario")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"the scenario did not finish within {timeout:.0f}s (server hung?)")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, AssertionError):
            raise error
        # As text: pytest re-parsing the library's frames, with its threads still running,
        # can hit CPython 3.11's "AST constructor recursion depth mismatch" (INTERNALERROR).
        pytest.fail("the scenario failed:\n" + "".join(traceback.format_exception(error)),
                    pytrace=False)
    return outcome["value"]


# --------------------------------------------------------------------------------- dramatiq


def test_dramatiq(queue_server: Server):
    pytest.importorskip("dramatiq", reason="dramatiq is not installed (pip install '.[test]')")
    import dramatiq
    from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker

    # Maintenance (dead workers' messages requeued, dead letters expired) on one dispatch in
    # ten instead of one in a thousand, so its branch of dispatch.lua runs too.
    broker = RedisBroker(host=queue_server.host, port=queue_server.port,
                         maintenance_chance=MAINTENANCE_SCALE // 10)
    runs = Runs()

    def work(n: int) -> None:
        runs.attempt(n)

    # Two queues: their keys (dramatiq:<queue>, .msgs, .DQ, .XQ) land on different workers.
    # Retries go through the delay queue (backoff), as do delayed messages.
    retry = {"max_retries": 3, "min_backoff": 10, "max_backoff": 50}
    actors = [
        dramatiq.actor(work, broker=broker, actor_name=f"work_{name}", queue_name=name, **retry)
        for name in ("alpha", "beta")
    ]
    doomed = dramatiq.actor(work, broker=broker, actor_name="doomed", queue_name="alpha",
                            max_retries=1, min_backoff=10, max_backoff=20)

    def scenario() -> None:
        # The worker runs while the jobs are sent, as in production: its scripts and the
        # producer's interleave.
        worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
        worker.start()
        try:
            for n in range(JOBS):
                actor = actors[n % 2]
                if delayed(n):
                    actor.send_with_options(args=(n,), delay=300)
                else:
                    actor.send(n)
            for d in range(1, DOOMED + 1):
                doomed.send(-d)
            deadline = time.monotonic() + DEADLINE
            client = broker.client
            # Done when every job ran and the doomed ones are dead-lettered (alpha.XQ).
            while time.monotonic() < deadline and not (
                    runs.complete() and client.zcard("dramatiq:alpha.XQ") == DOOMED):
                time.sleep(0.05)
            time.sleep(0.3)  # anything that would run twice gets its chance
        finally:
            worker.stop(timeout=10_000)
            broker.close()

    bounded(scenario)
    runs.check(doomed_attempts=2)
    client = redis.Redis(port=queue_server.port, socket_timeout=10)
    assert client.zcard("dramatiq:alpha.XQ") == DOOMED
    for name in ("alpha", "beta"):
        assert client.llen(f"dramatiq:{name}") == 0
        assert client.zcard(f"dramatiq:{name}.DQ") == 0
    client.close()


# ----------------------------------------------------------------------------------- bullmq


def test_bullmq(queue_server: Server):
    pytest.importorskip("bullmq", reason="bullmq is not installed (pip install '.[test]')")
    from bullmq import Queue, QueueEvents, Worker

    runs = Runs()
    completed_events: set[str] = set()

    async def process(job, token):
        runs.attempt(job.data["n"])
        return job.data["n"] * 2

    async def scenario() -> dict:
        connection = f"redis://{queue_server.host}:{queue_server.port}"
        queue = Queue("jobs", {"connection": connection})
        # What a producer watches: the queue's event stream (XREAD BLOCK), from its start.
        events = QueueEvents("jobs", {"connection": connection, "lastEventId": "0-0",
                                      "blockingTimeout": 500})
        events.on("completed", lambda args, _id: completed_events.add(args["jobId"]))
        # Two workers on the queue, as two processes would be, running while jobs arrive.
        workers = [Worker("jobs", process, {"connection": connection, "concurrency": 8})
                   for _ in range(2)]
        try:
            retry = {"attempts": 3, "backoff": {"type": "fixed", "delay": 50}}
            half = JOBS // 2
            # Half one by one (delayed ones among them), half in bulk.
            for n in range(half):
                await queue.add("job", {"n": n}, {**retry, **({"delay": 300} if delayed(n) else {})})
            await queue.addBulk([{"name": "job", "data": {"n": n}, "opts": retry}
                                 for n in range(half, JOBS)])
            for d in range(1, DOOMED + 1):
                await queue.add("doomed", {"n": -d}, {"attempts": 2})
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                counts = await queue.getJobCounts()
                if (runs.complete() and counts["completed"] == JOBS
                        and counts["failed"] == DOOMED and len(completed_events) == JOBS):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            return await queue.getJobCounts()
        finally:
            for worker in workers:
                await worker.close()
            await events.close()
            await queue.close()

    counts = bounded(lambda: asyncio.run(scenario()))
    runs.check(doomed_attempts=2)
    assert counts == {"active": 0, "completed": JOBS, "delayed": 0, "failed": DOOMED,
                      "prioritized": 0, "waiting": 0, "waiting-children": 0}, counts
    assert len(completed_events) == JOBS


# -------------------------------------------------------------------------------------- saq


def test_saq(queue_server: Server):
    pytest.importorskip("saq", reason="saq is not installed (pip install '.[test]')")
    from saq import Queue, Status, Worker

    runs = Runs()

    async def work(ctx, *, n: int) -> int:
        runs.attempt(n)
        return n * 2

    async def scenario() -> list:
        queue = Queue.from_url(f"redis://{queue_server.host}:{queue_server.port}", name="jobs")
        await queue.connect()
        worker = Worker(queue, functions=[("work", work)], concurrency=8,
                        timers={"schedule": 1})
        worker.SIGNALS = ()  # it runs in a thread (bounded): no signal handlers there
        task = asyncio.create_task(worker.start())
        try:
            # The worker sweeps the active list once when it starts (then every minute): a job
            # it has just moved there, not yet marked active, would be swept and run again (a
            # race of saq's, on Redis as well).  So jobs are enqueued once that sweep is done.
            for _ in range(1000):
                if await queue.redis.exists("saq:jobs:sweep"):
                    break
                await asyncio.sleep(0.01)
            for n in range(JOBS):
                options = {}
                if delayed(n):
                    options["scheduled"] = int(time.time()) + 1
                    # saq retries a scheduled job without retry_delay twice over (queued at once
                    # *and* due in the schedule, on Redis as well): give those a delay.
                    options["retry_delay"] = 0.1
                await queue.enqueue("work", n=n, retries=3, **options)
            doomed = [await queue.enqueue("work", n=-d, retries=2) for d in range(1, DOOMED + 1)]
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline and not runs.complete():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            for job in doomed:
                await job.refresh()
            return [job.status for job in doomed] + [await queue.count("incomplete")]
        finally:
            await worker.stop()
            task.cancel()
            await queue.disconnect()

    *statuses, incomplete = bounded(lambda: asyncio.run(scenario()))
    runs.check(doomed_attempts=2)
    assert statuses == [Status.FAILED] * DOOMED
    assert incomplete == 0


# ----------------------------------------------------------------- what bullmq met on shardis


def test_noscript_of_a_global_script_leaves_no_global_flag(queue_server: Server):
    """bullmq (redis-py's ``register_script``) sends EVALSHA first and loads the script on
    NOSCRIPT.  Its scripts declare keys on several workers, so that first EVALSHA ran in
    global mode and failed before running: the worker kept its ``__script_global`` flag, and
    the next script there -- another client's, sent to that worker alone -- sent its call on
    another worker's key to the router as if gated; the router dropped it ("a script call from
    a worker that runs no global script") and that worker hung for good.  On Redis (and now on
    shardis) the second script just runs."""
    from shardis.slots import SlotMap

    slots = SlotMap(3)
    names = (f"key:{i}".encode() for i in range(1000))
    by_worker: dict[int, bytes] = {}
    while len(by_worker) < 3:
        key = next(names)
        by_worker.setdefault(slots.worker_of(key), key)
    first, other = by_worker[0], by_worker[1]

    def scenario() -> object:
        client = redis.Redis(port=queue_server.port, protocol=2)
        try:
            client.set(other, "there")
            with pytest.raises(redis.ResponseError, match="NOSCRIPT|No matching script"):
                client.evalsha("0" * 40, 2, first, other)
            # One key, on worker 0; it reads a key of worker 1 it did not declare.
            return client.eval("return {redis.call('exists', KEYS[1]), redis.call('get', ARGV[1])}",
                               1, first, other)
        finally:
            client.close()

    assert bounded(scenario, timeout=20) == [0, b"there"]
