"""Scripts that run too long: past ``busy-reply-threshold`` the busy worker answers BUSY at
once, SCRIPT KILL stops a script that has not written (UNKILLABLE once it has), SHUTDOWN NOSAVE
stops everything, other workers keep serving, and a stuck worker never outlives its
supervisor.  The error texts are compared with a real redis-server in the same situation."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis

from shardis.slots import SlotMap
from tests.servers import start_redis, start_shardis

WORKERS = 2
LOOP = "local i = 0 while true do i = i + 1 end"
WRITE_THEN_LOOP = "redis.call('set', KEYS[1], 'x') " + LOOP


def key_on(worker: int, prefix: str = "k") -> str:
    slots = SlotMap(WORKERS)
    return next(f"{prefix}{n}" for n in range(10_000)
                if slots.worker_of(f"{prefix}{n}".encode()) == worker)


class Running:
    """A script running in a thread; ``outcome`` is its reply or its error text."""

    def __init__(self, port: int, source: str, *keys: str) -> None:
        self.outcome: object = None
        self.thread = threading.Thread(target=self._run, args=(port, source, keys), daemon=True)
        self.thread.start()

    def _run(self, port: int, source: str, keys: tuple[str, ...]) -> None:
        client = redis.Redis(port=port, protocol=2, socket_timeout=60)
        try:
            self.outcome = client.eval(source, len(keys), *keys)
        except (redis.ResponseError, redis.ConnectionError) as exc:
            self.outcome = str(exc)
        finally:
            client.close()

    def result(self, timeout: float = 20.0) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the script did not end"
        return self.outcome


def wait_busy(client: redis.Redis, key: str, timeout: float = 10.0) -> str:
    """Poll ``key``'s worker until it answers BUSY; returns the error text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.get(key)
        except redis.ResponseError as exc:
            if str(exc).startswith("BUSY"):
                return str(exc)
            raise
        time.sleep(0.05)
    raise AssertionError("the worker never became busy")


@pytest.fixture
def busy_shardis():
    server = start_shardis(WORKERS, "--lua-time-limit", "200")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def busy_redis():
    server = start_redis("--busy-reply-threshold", "200")
    yield server
    server.stop()


def kill_outcomes(port: int, key: str, script: str) -> tuple[str, str, object]:
    """(BUSY text, SCRIPT KILL's answer, what the script's caller got)."""
    client = redis.Redis(port=port, protocol=2)
    running = Running(port, script, key)
    busy = wait_busy(client, key)
    try:
        kill = client.script_kill()
    except redis.ResponseError as exc:
        kill = str(exc)
    if isinstance(kill, str) and kill.startswith("UNKILLABLE"):
        try:
            client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass
    outcome = running.result()
    client.close()
    return busy, kill, outcome


def test_script_kill_as_in_redis(busy_shardis, busy_redis):
    key = key_on(0)
    ours = kill_outcomes(busy_shardis.port, key, LOOP)
    theirs = kill_outcomes(busy_redis.port, key, LOOP)
    assert ours == theirs
    assert ours[1] is True
    assert "Script killed by user with SCRIPT KILL" in ours[2]  # type: ignore[operator]


def test_other_workers_keep_serving_and_commands_never_hang(busy_shardis):
    client = redis.Redis(port=busy_shardis.port, protocol=2, socket_timeout=5)
    busy_key, free_key = key_on(0), key_on(1)
    running = Running(busy_shardis.port, LOOP, busy_key)
    wait_busy(client, busy_key)
    for n in range(50):  # each answered at once: BUSY, or served by the other worker
        assert client.set(free_key, n)
        assert client.get(free_key) == str(n).encode()
        with pytest.raises(redis.ResponseError, match="^BUSY"):
            client.set(busy_key, n)
    with pytest.raises(redis.ResponseError, match="^BUSY"):
        client.mget(free_key, busy_key)
    assert client.ping()
    assert client.script_kill()
    assert "killed" in running.result()  # type: ignore[operator]
    assert client.set(busy_key, "back") and client.get(busy_key) == b"back"


def test_pcall_cannot_swallow_the_kill(busy_shardis):
    client = redis.Redis(port=busy_shardis.port, protocol=2)
    key = key_on(0)
    swallow = "while true do pcall(function() " + LOOP + " end) end"
    running = Running(busy_shardis.port, swallow, key)
    wait_busy(client, key)
    assert client.script_kill()
    assert "Script killed by user" in running.result()  # type: ignore[operator]


def test_a_loop_in_a_coroutine_is_killed(busy_shardis):
    client = redis.Redis(port=busy_shardis.port, protocol=2)
    key = key_on(0)
    running = Running(busy_shardis.port,
                      "local co = coroutine.wrap(function() " + LOOP + " end) co()", key)
    wait_busy(client, key)
    assert client.script_kill()
    assert "Script killed by user" in running.result()  # type: ignore[operator]


def test_script_kill_without_a_busy_script(busy_shardis):
    client = redis.Redis(port=busy_shardis.port, protocol=2)
    with pytest.raises(redis.ResponseError, match="^NOTBUSY No scripts in execution"):
        client.script_kill()


def test_unkillable_then_shutdown_nosave(busy_shardis, busy_redis):
    key = key_on(0)
    ours = kill_outcomes(busy_shardis.port, key, WRITE_THEN_LOOP)
    assert busy_shardis.proc.wait(timeout=20) == 0  # SHUTDOWN NOSAVE stopped it all
    redis_side = kill_outcomes(busy_redis.port, key, WRITE_THEN_LOOP)
    assert ours[:2] == redis_side[:2]
    assert ours[1].startswith("UNKILLABLE Sorry the script already executed write")  # type: ignore[union-attr]


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as fh:
        return [int(child) for child in fh.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("threshold", ["200", "0"])
def test_a_stuck_worker_never_outlives_its_supervisor(threshold):
    server = start_shardis(WORKERS, "--lua-time-limit", threshold)
    try:
        workers = _children(server.proc.pid)
        assert len(workers) == WORKERS
        running = Running(server.port, WRITE_THEN_LOOP, key_on(0))
        time.sleep(0.5)
        os.kill(server.proc.pid, signal.SIGKILL)  # no clean stop: only the kernel tells them
        server.proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(map(_alive, workers)):
            time.sleep(0.1)
        assert not any(map(_alive, workers)), "a worker outlived its supervisor"
        running.result()
    finally:
        for pid in _children(server.proc.pid) if _alive(server.proc.pid) else []:
            os.kill(pid, signal.SIGKILL)
        server.stop()
