"""Functions end to end: libraries on every worker, persistence (AOF, RDB that real Redis
reads, a worker restarted without persistence), busy functions (FUNCTION KILL, STATS, BUSY),
and what a hostile library or payload can reach.  Replies are compared with Redis in
``tests/test_diff_functions.py``."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
import redis

from shardis.slots import SlotMap
from tests.servers import start_redis, start_shardis
from tests.test_persistence_aof import kill9, tag_on, wait_restarted

LIB = """#!lua name=lib
redis.register_function('setget', function(keys, args)
  redis.call('SET', keys[1], args[1])
  return redis.call('GET', keys[1])
end)
redis.register_function{function_name='get', flags={'no-writes'},
  callback=function(keys) return redis.call('GET', keys[1]) end}
"""
SPIN = """#!lua name=spin
redis.register_function{function_name='spin', flags={'no-writes'},
  callback=function() while true do end end}
redis.register_function('spin_after_write', function(keys)
  redis.call('SET', keys[1], 'x')
  while true do end
end)
"""


def keys_on_each_worker(workers: int) -> list[str]:
    """One key per worker."""
    slots = SlotMap(workers)
    found: dict[int, str] = {}
    for i in range(1000):
        found.setdefault(slots.worker_of(f"k{i}".encode()), f"k{i}")
    return [found[w] for w in range(workers)]


@pytest.fixture
def server():
    server = start_shardis(3)
    yield server
    server.stop()


def test_libraries_live_on_every_worker(server):
    client = redis.Redis(port=server.port)
    assert client.function_load(LIB) == b"lib"
    for n, key in enumerate(keys_on_each_worker(3)):
        assert client.fcall("setget", 1, key, n) == str(n).encode()
        assert client.fcall_ro("get", 1, key) == str(n).encode()
    client.function_delete("lib")
    for key in keys_on_each_worker(3):
        with pytest.raises(redis.ResponseError, match="Function not found"):
            client.fcall("get", 1, key)


def test_a_worker_restarted_without_persistence_gets_the_libraries_back(server):
    client = redis.Redis(port=server.port)
    client.function_load(LIB)
    tag = tag_on(1, 3)
    old = kill9(server, 1)
    wait_restarted(server, 1, old, client, tag)
    assert client.fcall("setget", 1, f"{{{tag}}}k", "v") == b"v"
    assert client.function_dump() == redis.Redis(port=server.port).function_dump()


def test_libraries_survive_a_worker_crash_with_the_aof(tmp_path):
    server = start_shardis(2, "--appendonly", "yes", "--appendfsync", "always")
    try:
        client = redis.Redis(port=server.port)
        client.function_load(LIB)
        tag = tag_on(0, 2)
        old = kill9(server, 0)
        wait_restarted(server, 0, old, client, tag)
        # the router resyncs too; the worker's own AOF must hold the library as well
        with open(os.path.join(server.workdir, "worker-0", "appendonlydir",
                               "appendonly.aof.1.incr.aof"), "rb") as fh:
            assert b"register_function" in fh.read()
        assert client.fcall("setget", 1, f"{{{tag}}}k", "v") == b"v"
    finally:
        server.stop()


def test_saved_libraries_load_at_start_and_in_real_redis(tmp_path):
    directory = str(tmp_path)
    server = start_shardis(2, "--dir", directory)
    try:
        client = redis.Redis(port=server.port)
        client.function_load(LIB)
        client.set("a", "1")
        client.save()
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=20)
    rdb_file = os.path.join(directory, "worker-0", "dump.rdb")
    check = subprocess.run(["redis-check-rdb", rdb_file], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    again = start_shardis(2, "--dir", directory)
    try:
        client = redis.Redis(port=again.port)
        assert client.fcall("setget", 1, "b", "2") == b"2"
        assert client.function_list()[0][1] == b"lib"  # RESP2: [library_name, lib, ...]
    finally:
        again.stop()
    real = start_redis(rdb=rdb_file)
    try:
        assert redis.Redis(port=real.port).fcall("setget", 1, "x", "y") == b"y"
    finally:
        real.stop()


def test_aof_rewrite_keeps_the_libraries():
    server = start_shardis(1, "--appendonly", "yes", "--aof-use-rdb-preamble", "no")
    try:
        client = redis.Redis(port=server.port)
        client.function_load(LIB)
        client.bgrewriteaof()
        deadline = time.monotonic() + 20
        while client.info("persistence")["aof_rewrite_in_progress"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.3)
        folder = os.path.join(server.workdir, "worker-0", "appendonlydir")
        bases = [name for name in os.listdir(folder) if ".base." in name]
        with open(os.path.join(folder, bases[0]), "rb") as fh:
            assert b"FUNCTION" in fh.read()
        old = kill9(server, 0)
        wait_restarted(server, 0, old, client, tag_on(0, 1))
        assert client.fcall("setget", 1, "k", "v") == b"v"
    finally:
        server.stop()


class Running(threading.Thread):
    def __init__(self, port: int, *args: object) -> None:
        super().__init__(daemon=True)
        self.port, self.args, self.outcome = port, args, None
        self.start()

    def run(self) -> None:
        try:
            self.outcome = redis.Redis(port=self.port).fcall(*self.args)
        except redis.RedisError as exc:
            self.outcome = str(exc)


def wait_busy(client: redis.Redis, key: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.get(key)
        except redis.ResponseError as exc:
            return str(exc)
        time.sleep(0.05)
    raise AssertionError("never busy")


@pytest.mark.parametrize("make_server", [
    lambda: start_shardis(2, "--busy-reply-threshold", "200"),
    lambda: start_redis("--busy-reply-threshold", "200"),
], ids=["shardis", "redis"])
def test_function_kill_stats_and_busy_as_redis(make_server):
    server = make_server()
    try:
        client = redis.Redis(port=server.port, socket_timeout=10, protocol=3)
        client.function_load(SPIN)
        key = "{x}k"
        running = Running(server.port, "spin", 1, key)
        busy = wait_busy(client, key)
        assert busy == ("BUSY Redis is busy running a script. You can only call FUNCTION KILL or "
                        "SHUTDOWN NOSAVE.")
        stats = client.function_stats()
        assert stats[b"running_script"][b"name"] == b"spin"
        assert stats[b"running_script"][b"command"] == [b"FCALL", b"spin", b"1", key.encode()]
        with pytest.raises(redis.ResponseError, match="FUNCTION KILL"):
            client.script_kill()
        assert client.function_kill() == b"OK"
        running.join(10)
        assert "Script killed by user with SCRIPT KILL" in running.outcome
        assert client.function_stats()[b"running_script"] is None
        with pytest.raises(redis.ResponseError, match="NOTBUSY"):
            client.function_kill()
        running = Running(server.port, "spin_after_write", 1, key)
        wait_busy(client, key)
        with pytest.raises(redis.ResponseError, match="UNKILLABLE"):
            client.function_kill()
        try:
            client.shutdown(nosave=True)  # what stops a server busy with a written script
        except redis.ConnectionError:
            pass
    finally:
        server.stop()


# Hostile libraries and payloads ----------------------------------------------------------------
@pytest.mark.parametrize("code", [
    "os.execute('touch /tmp/shardis-pwned')",
    "io.open('/etc/passwd')",
    "require('os')",
    "loadstring(string.dump(function() end))",
    "getfenv(1)",
    "debug.getinfo(1)",
    "setmetatable(_G, nil)",
    "rawset(redis, 'call', print)",
    "redis.register_function = nil",
])
def test_library_code_reaches_nothing_at_load(shardis, code):
    client = redis.Redis(port=shardis.port)
    body = f"#!lua name=evil\n{code}\nredis.register_function('e', function() return 1 end)"
    with pytest.raises(redis.ResponseError, match="Error registering functions"):
        client.function_load(body)
    assert not os.path.exists("/tmp/shardis-pwned")
    assert client.ping()


@pytest.mark.parametrize("code", [
    "return os.execute('touch /tmp/shardis-pwned')",
    "return io.open('/etc/passwd')",
    "return loadstring(string.dump(function() end))()",
    "return debug",
    "return KEYS",
    "return saved.register_function('x', function() end)",
    "x_global = 1",
])
def test_function_code_reaches_nothing_at_call(shardis, code):
    client = redis.Redis(port=shardis.port)
    client.function_flush()
    body = ("#!lua name=evil\nlocal saved = redis\n"
            f"redis.register_function('e', function(keys, args) {code} end)")
    client.function_load(body)
    try:
        reply = client.fcall("e", 0)
    except redis.ResponseError as exc:
        reply = str(exc)
    assert reply is None or isinstance(reply, str), reply
    assert not os.path.exists("/tmp/shardis-pwned")
    client.function_flush()
    assert client.ping()


def test_a_library_that_spins_at_load_times_out_and_the_server_serves_on(shardis):
    client = redis.Redis(port=shardis.port)
    started = time.monotonic()
    with pytest.raises(redis.ResponseError, match="FUNCTION LOAD timeout"):
        client.function_load("#!lua name=spin\nwhile true do end")
    assert time.monotonic() - started < 5
    assert client.ping()
    assert client.function_list(library="spin") == []


def test_restore_payloads_that_lie_are_refused(shardis):
    from shardis.persist import rdb

    client = redis.Redis(port=shardis.port)
    client.function_flush()

    def payload(body: bytes) -> bytes:
        data = body + b"\x0a\x00"
        return data + rdb.crc64(data).to_bytes(8, "little")

    cases = [
        payload(b"\xf5\x80\xff\xff\xff\xff"),          # a 4 GB string, cut short
        payload(b"\xf5\x05ab"),                          # a string cut short
        payload(b"\x00\x01a\x01b"),                      # a key, not a function
        payload(b"\xf5\x05hello"),                       # not a library
        payload(b"\xf5\xc3\x05\x40\x00garbage"),        # LZF that does not decompress
        payload(b"\xf5" + rdb.RdbWriter(None).string(  # type: ignore[arg-type]
            b"#!lua name=x\nos.execute('touch /tmp/shardis-pwned')")),
    ]
    for case in cases:
        with pytest.raises(redis.ResponseError):
            client.function_restore(case)
    assert client.function_list() == []
    assert not os.path.exists("/tmp/shardis-pwned")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command("__functions_sync", b"x")
