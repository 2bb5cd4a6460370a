"""Scripting through redis-py against a real shardis (3 workers): the Lock helper, which is
Lua run with EVALSHA, scripts on one worker, and what scripts do to other features (WATCH,
blocked clients).  Byte-level comparisons with Redis are in tests/test_diff_scripting.py."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.exceptions import LockError, LockNotOwnedError, NoScriptError, ResponseError

from shardis.slots import SlotMap

WORKERS = SlotMap(3)  # the shardis fixture runs 3 workers


def keys_on_two_workers() -> tuple[str, str]:
    """Two keys that live on different workers."""
    first = "k0"
    for n in range(1, 1000):
        other = f"k{n}"
        if WORKERS.worker_of(other.encode()) != WORKERS.worker_of(first.encode()):
            return first, other
    raise AssertionError("no two keys on different workers")


def test_lock_acquire_release(r):
    lock = r.lock("resource", timeout=10)
    assert lock.acquire(blocking=False)
    assert lock.locked() and lock.owned()
    assert not r.lock("resource").acquire(blocking=False)
    lock.release()
    assert not lock.locked()


def test_lock_blocking_acquire_from_two_threads(r, shardis):
    holder = r.lock("shared", timeout=5)
    assert holder.acquire()
    results: list[tuple[bool, float]] = []

    def contender() -> None:
        client = redis.Redis(port=shardis.port)
        started = time.monotonic()
        got = client.lock("shared", timeout=5, blocking_timeout=3, sleep=0.02).acquire()
        results.append((got, time.monotonic() - started))
        client.close()

    thread = threading.Thread(target=contender)
    thread.start()
    time.sleep(0.3)
    holder.release()
    thread.join(5)
    assert results and results[0][0] is True
    assert 0.2 < results[0][1] < 3

    # A blocking acquire that times out.
    stuck = r.lock("shared", blocking_timeout=0.3, sleep=0.05)
    started = time.monotonic()
    assert stuck.acquire() is False
    assert 0.25 < time.monotonic() - started < 2


def test_lock_extend_and_reacquire(r):
    lock = r.lock("ext", timeout=2)
    assert lock.acquire()
    assert lock.extend(10)
    assert 10_000 < r.pttl("ext") <= 12_000
    assert lock.extend(5, replace_ttl=True)
    assert 4_000 < r.pttl("ext") <= 5_000
    assert lock.reacquire()
    assert 1_000 < r.pttl("ext") <= 2_000
    lock.release()


def test_lock_not_owned(r):
    lock = r.lock("gone", timeout=10)
    assert lock.acquire()
    r.delete("gone")
    with pytest.raises(LockNotOwnedError):
        lock.release()
    assert lock.acquire()
    r.set("gone", "someone else")
    with pytest.raises(LockNotOwnedError):
        lock.extend(5)
    with pytest.raises(LockNotOwnedError):
        lock.reacquire()
    unlocked = r.lock("never")
    with pytest.raises(LockError):
        unlocked.release()


def test_lock_scripts_work_after_script_flush(r):
    """redis-py keeps the sha: after SCRIPT FLUSH it gets NOSCRIPT and loads it again."""
    lock = r.lock("flushed", timeout=10)
    assert lock.acquire()
    r.script_flush()
    lock.release()
    assert not r.exists("flushed")


def test_script_on_keys_of_two_workers_is_refused(r):
    a, b = keys_on_two_workers()
    # redis-py turns CROSSSLOT into ClusterCrossSlotError (a ResponseError).
    with pytest.raises(ResponseError, match="Keys in request don't hash to the same slot"):
        r.eval("return 1", 2, a, b)
    # Undeclared keys are checked when the script touches them.
    with pytest.raises(ResponseError, match="non local key in a cluster node"):
        r.eval("return redis.call('get', ARGV[1])", 1, a, b)
    assert r.eval("return redis.pcall('get', ARGV[1])['err']", 1, a, b) == (
        b"ERR Script attempted to access a non local key in a cluster node"
    )
    # Keys sharing a hash tag live on one worker.
    assert r.eval("redis.call('set', KEYS[1], 1); return redis.call('set', KEYS[2], 2)",
                  2, "{tag}a", "{tag}b") == b"OK"
    assert r.mget("{tag}a", "{tag}b") == [b"1", b"2"]


def test_evalsha_with_keys_on_any_worker_after_script_load(r):
    sha = r.script_load("return redis.call('incr', KEYS[1])")
    for n in range(20):
        assert r.evalsha(sha, 1, f"counter{n}") == 1
    assert r.script_exists(sha, "0" * 40) == [True, False]


def test_eval_caches_on_its_worker(r):
    sha = "7f923f79fe76194c868d7e1d0820de36700eb649"  # sha1("return 2")
    r.script_flush()
    with pytest.raises(NoScriptError):
        r.evalsha(sha, 0)
    assert r.eval("return 2", 0) == 2
    assert r.evalsha(sha, 0) == 2
    assert r.script_exists(sha) == [True]


def test_scripts_see_effects_of_previous_commands(r):
    pipe = r.pipeline(transaction=False)
    pipe.set("seen", "before")
    pipe.eval("return redis.call('get', KEYS[1])", 1, "seen")
    pipe.append("seen", "+after")
    pipe.eval("return redis.call('get', KEYS[1])", 1, "seen")
    assert pipe.execute() == [True, b"before", 12, b"before+after"]


def test_watch_is_invalidated_by_a_script_write(r, shardis):
    pipe = r.pipeline()
    pipe.watch("watched")
    other = redis.Redis(port=shardis.port)
    other.eval("return redis.call('set', KEYS[1], 'changed')", 1, "watched")
    other.close()
    pipe.multi()
    pipe.set("watched", "mine")
    with pytest.raises(redis.WatchError):
        pipe.execute()
    assert r.get("watched") == b"changed"


def test_blocked_client_is_served_after_a_script_pushes(r, shardis):
    results: list[object] = []

    def waiter() -> None:
        client = redis.Redis(port=shardis.port)
        results.append(client.blpop(["{q}jobs"], timeout=5))
        client.close()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)
    # The script pushes two and pops one: the waiter is served after the script, with the
    # element that is left.
    assert r.eval("redis.call('rpush', KEYS[1], 'a', 'b'); return redis.call('lpop', KEYS[1])",
                  1, "{q}jobs") == b"a"
    thread.join(5)
    assert [list(item) for item in results] == [[b"{q}jobs", b"b"]]


def test_script_errors_reach_the_client(r):
    with pytest.raises(ResponseError, match=r"user_script:1: boom script: "):
        r.eval("error('boom')", 0)
    with pytest.raises(ResponseError, match="Write commands are not allowed from read-only"):
        r.eval_ro("return redis.call('set', KEYS[1], 'x')", 1, "ro")
    assert r.eval_ro("return redis.call('exists', KEYS[1])", 1, "ro") == 0


def test_script_debug_yes_and_sync_are_refused_no_is_ok(r):
    """shardis has no Lua debugger: YES/SYNC would start one (redis-cli --ldb), so they are
    refused; scripts still run normally afterwards."""
    for mode in ("YES", "sync"):
        with pytest.raises(ResponseError, match="no Lua debugger"):
            r.execute_command("SCRIPT", "DEBUG", mode)
    assert r.execute_command("SCRIPT", "DEBUG", "NO") in (b"OK", "OK", True)
    assert r.eval("return 1", 0) == 1


def test_one_script_cache_for_the_whole_server(tmp_path):
    """EVAL on one worker, EVALSHA with keys on every other worker: found, as on one Redis;
    SCRIPT FLUSH forgets it everywhere; a restarted worker gets the known scripts back."""
    import hashlib
    import os
    import signal

    from tests.servers import start_shardis
    from tests.test_persistence_aof import worker_pids

    server = start_shardis(3, "--save", "", "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port, socket_timeout=10)
        slots = SlotMap(3)
        keys = [next(f"k{i}" for i in range(100) if slots.worker_of(f"k{i}".encode()) == w)
                for w in range(3)]
        body = "return redis.call('INCR', KEYS[1])"
        assert client.eval(body, 1, keys[0]) == 1
        sha = hashlib.sha1(body.encode()).hexdigest()
        for key in keys[1:]:
            assert client.evalsha(sha, 1, key) == 1
        assert client.script_exists(sha) == [True]
        assert client.script_flush() is True
        for key in keys:
            with pytest.raises(NoScriptError):
                client.evalsha(sha, 1, key)
        assert client.script_load(body) == sha
        pid = worker_pids(server)[2]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            try:
                assert client.evalsha(sha, 1, keys[2]) == 1  # empty again, script known
                break
            except redis.ResponseError as exc:
                assert "is down" in str(exc) or "connection lost" in str(exc)
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        server.stop()
