"""Acceptance test: the job queue rq runs against shardis.

300 jobs, some scheduled a second ahead (``enqueue_in``), some depending on other jobs
(``depends_on``), run by an rq worker in burst mode with its scheduler.  Every job must run
exactly once, dependents after what they depend on, and every result must be stored (rq keeps
results in a stream: XADD ... MAXLEN ~ 10, read back with XREVRANGE).  A burst ends as soon as
the queue is empty, before the scheduled jobs are due, so the worker is run in bursts until
everything is done, bounded in time.
"""

from __future__ import annotations

import sys
import textwrap
import time
from datetime import timedelta

import pytest
import redis

rq = pytest.importorskip("rq", reason="rq is not installed (pip install '.[test]')")

JOBS = 300
#: every DELAYED-th job is scheduled with enqueue_in, every DEPENDENT-th depends on the one before
DELAYED = 10
DEPENDENT = 7

HELPER = '''
"""Jobs for tests/test_rq.py (written by the test): record each run in shardis."""

import redis


def record(port: int, n: int) -> int:
    connection = redis.Redis(port=port)
    connection.incr(f"ran:{n}")
    connection.rpush("order", n)
    return n * 2
'''


@pytest.fixture
def jobs_module(tmp_path, monkeypatch):
    """A module the worker can import the job function from, as rq requires."""
    (tmp_path / "rq_jobs_helper.py").write_text(textwrap.dedent(HELPER))
    monkeypatch.syspath_prepend(str(tmp_path))
    import rq_jobs_helper

    yield rq_jobs_helper
    sys.modules.pop("rq_jobs_helper", None)


def test_rq_runs_every_job_exactly_once(shardis_clean, jobs_module):
    from rq import Queue, SimpleWorker
    from rq.job import JobStatus

    port = shardis_clean.port
    connection = redis.Redis(port=port)
    queue = Queue("default", connection=connection)
    jobs = []
    for n in range(JOBS):
        if n % DELAYED == 0:
            job = queue.enqueue_in(timedelta(seconds=1), jobs_module.record, port, n)
        elif n % DEPENDENT == 0:
            job = queue.enqueue(jobs_module.record, port, n, depends_on=jobs[n - 1])
        else:
            job = queue.enqueue(jobs_module.record, port, n)
        jobs.append(job)

    # SimpleWorker is rq's Worker without a fork per job: the same queue, scheduler and result
    # protocol, 1,000 forks less (the forking Worker passes too, in ~47 s here against ~28 s).
    worker = SimpleWorker([queue], connection=connection)
    deadline = time.monotonic() + 45
    while True:
        worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
        done = sum(1 for n in range(JOBS) if connection.exists(f"ran:{n}"))
        if done == JOBS or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    counts = connection.mget([f"ran:{n}" for n in range(JOBS)])
    missing = [n for n, c in enumerate(counts) if c is None]
    twice = [n for n, c in enumerate(counts) if c is not None and int(c) != 1]
    assert not missing, f"{len(missing)} jobs never ran, e.g. {missing[:10]}"
    assert not twice, f"jobs that ran more than once: {twice[:10]}"

    order = [int(n) for n in connection.lrange("order", 0, -1)]
    assert sorted(order) == list(range(JOBS))
    position = {n: i for i, n in enumerate(order)}
    for n in range(JOBS):
        if n % DELAYED and n % DEPENDENT == 0:
            assert position[n - 1] < position[n], f"job {n} ran before its dependency"

    for n, job in enumerate(jobs):
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED, (n, job.get_status())
        assert job.return_value() == n * 2
    latest = jobs[1].latest_result()
    assert latest is not None and latest.return_value == 2
    assert connection.xlen(f"rq:results:{jobs[1].id}") == 1
