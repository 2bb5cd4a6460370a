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


def test_scripts_on_keys_of_several_workers_run_as_on_one_redis(r):
    a, b = keys_on_two_workers()
    r.set(b, "bee")
    assert r.eval("return 1", 2, a, b) == 1
    assert r.eval("redis.call('set', KEYS[1], 'x'); return redis.call('get', KEYS[2])",
                  2, a, b) == b"bee"
    # Undeclared keys of another worker: the script is run again with every worker gated.
    assert r.eval("return redis.call('get', ARGV[1])", 1, a, b) == b"bee"
    assert r.eval("return redis.pcall('get', ARGV[1])", 1, a, b) == b"bee"
    # It wrote before it met the other worker's key: undone, then run once, globally.
    r.delete(a)
    for n in range(1, 4):
        body = f"redis.call('incr', KEYS[1]); redis.call('rpush', KEYS[1]..'l', {n}); " \
               "return redis.call('get', ARGV[1])"
        assert r.eval(body, 1, a, b) == b"bee"
        assert r.get(a) == str(n).encode()
        assert r.lrange(f"{a}l", 0, -1) == [str(i).encode() for i in range(1, n + 1)]
    # Multi-key commands over several workers inside a script.
    assert r.eval("redis.call('mset', KEYS[1], 1, KEYS[2], 2); "
                  "return {redis.call('mget', KEYS[2], KEYS[1], 'missing'), "
                  "redis.call('exists', KEYS[1], KEYS[2]), redis.call('del', KEYS[1], KEYS[2])}",
                  2, a, b) == [[b"2", b"1", None], 2, 2]
    # Keys sharing a hash tag live on one worker.
    assert r.eval("redis.call('set', KEYS[1], 1); return redis.call('set', KEYS[2], 2)",
                  2, "{tag}a", "{tag}b") == b"OK"
    assert r.mget("{tag}a", "{tag}b") == [b"1", b"2"]


def test_a_retried_script_keeps_its_callers_order(r):
    """The first run of a script that reaches another worker's keys is retried globally;
    the commands its caller pipelined behind it wait for it."""
    a, b = keys_on_two_workers()
    body = "redis.call('incr', ARGV[1]); return redis.call('get', ARGV[1])"
    with r.pipeline(transaction=False) as pipe:
        pipe.eval(body + " -- fresh", 1, a, b).get(b).incr(b)
        assert pipe.execute() == [b"1", b"1", 2]


def test_transfers_between_workers_keep_the_total(r):
    """Clients move amounts between accounts on different workers with a script while
    readers sum every account with a script and with MULTI: the total never changes."""
    accounts = [f"acct:{n}" for n in range(12)]
    assert len({WORKERS.worker_of(a.encode()) for a in accounts}) > 1
    r.mset({account: 100 for account in accounts})
    move = ("local from = tonumber(redis.call('get', KEYS[1])); "
            "if from < tonumber(ARGV[1]) then return 0 end; "
            "redis.call('decrby', KEYS[1], ARGV[1]); redis.call('incrby', KEYS[2], ARGV[1]); "
            "return 1")
    total = ("local sum = 0; for _, key in ipairs(KEYS) do "
             "sum = sum + tonumber(redis.call('get', key)) end; return sum")
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []
    port = r.connection_pool.connection_kwargs["port"]

    def mover(seed: int) -> None:
        import random

        rng = random.Random(seed)
        client = redis.Redis(port=port)
        try:
            while not stop.is_set():
                src, dst = rng.sample(accounts, 2)
                client.eval(move, 2, src, dst, rng.randint(1, 30))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader() -> None:
        client = redis.Redis(port=port)
        try:
            while not stop.is_set():
                seen.append(client.eval(total, len(accounts), *accounts))
                with client.pipeline(transaction=True) as tx:
                    seen.append(sum(int(v) for v in tx.mget(accounts).execute()[0]))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=mover, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors[:3]
    assert len(seen) > 10 and set(seen) == {1200}
    assert sum(int(v) for v in r.mget(accounts)) == 1200


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


def test_scripts_over_several_workers_inside_multi(r):
    a, b = keys_on_two_workers()
    r.set(b, "bee")
    with r.pipeline(transaction=True) as tx:
        tx.set(a, "1")
        tx.eval("redis.call('incr', KEYS[1]); return redis.call('get', KEYS[2])", 2, a, b)
        tx.eval("redis.call('incr', KEYS[1]); return redis.call('get', ARGV[1])", 1, a, b)
        tx.get(a)
        assert tx.execute() == [True, b"bee", b"bee", b"3"]


def test_script_kill_reaches_a_global_script(r):
    """A global script holds every worker's gate; past the busy threshold other commands get
    BUSY and SCRIPT KILL reaches it, and the server serves again."""
    a, b = keys_on_two_workers()
    port = r.connection_pool.connection_kwargs["port"]
    r.config_set("busy-reply-threshold", 200)
    try:
        outcome: list[object] = []

        def run() -> None:
            try:
                outcome.append(redis.Redis(port=port).eval(
                    "redis.call('get', KEYS[2]); while true do end", 2, a, b))
            except redis.RedisError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.6)
        # Past the threshold, commands for the workers it holds get BUSY, as on Redis.
        with pytest.raises(ResponseError, match="^BUSY Redis is busy running a script"):
            r.get(a)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert r.script_kill() is True
                break
            except ResponseError as exc:  # NOTBUSY until the script is past the threshold
                assert "NOTBUSY" in str(exc) and time.monotonic() < deadline
                time.sleep(0.1)
        thread.join(timeout=10)
        assert "Script killed by user with SCRIPT KILL" in str(outcome[0])
        assert r.set(a, 1)  # every worker serves again
        assert r.ping()
    finally:
        r.config_set("busy-reply-threshold", 5000)
