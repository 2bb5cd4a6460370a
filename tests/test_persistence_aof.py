"""``appendonly yes``: every worker logs its writes and reloads them when it restarts.

A worker killed with SIGKILL is restarted by the supervisor and comes back with every write it
acknowledged (``appendfsync always``), TTLs included; the whole tree stopped and started on the
same ``--dir`` comes back too; the files pass ``redis-check-aof``; a corrupt file stops the
worker with the file and offset named.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import redis

from shardis.slots import SlotMap
from tests.servers import Server, free_port, start_shardis


def tag_on(worker: int, workers: int = 2) -> str:
    """A hash tag whose keys live on ``worker``."""
    slots = SlotMap(workers)
    for i in range(1000):
        tag = f"t{i}"
        if slots.worker_of(f"{{{tag}}}".encode()) == worker:
            return tag
    raise AssertionError("no tag found")


def worker_pids(server: Server) -> dict[int, int]:
    """index -> pid of the supervisor's worker processes."""
    pid = server.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        children = [int(p) for p in fh.read().split()]
    out = {}
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if b"worker" in argv and b"--index" in argv:
            out[int(argv[argv.index(b"--index") + 1])] = child
    return out


def snapshot(client: redis.Redis) -> dict[bytes, tuple]:
    """Every key: type, value and absolute deadline, as a client sees them."""
    out = {}
    for key in sorted(client.keys("*")):
        kind = client.type(key)
        if kind == b"string":
            value: object = client.get(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = sorted(client.smembers(key))
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            value = sorted(client.hgetall(key).items())
        elif kind == b"stream":
            value = client.xrange(key)
        else:
            value = None
        out[key] = (kind, value, client.execute_command("PEXPIRETIME", key))
    return out


def wait_restarted(server: Server, index: int, old_pid: int, client: redis.Redis,
                   tag: str, timeout: float = 15.0) -> None:
    """Until the supervisor has a new worker ``index`` and it answers for its keys."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = worker_pids(server).get(index)
        if pid is not None and pid != old_pid:
            try:
                client.exists(f"{{{tag}}}probe")
                return
            except redis.RedisError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"worker {index} did not come back")


def kill9(server: Server, index: int) -> int:
    pid = worker_pids(server)[index]
    os.kill(pid, signal.SIGKILL)
    return pid


def wait_equal(client: redis.Redis, expected: dict, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = snapshot(client)
        except redis.RedisError:
            seen = {}
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def write_everything(client: redis.Redis, tag: str) -> None:
    """Keys of every type, expiries, pops, SPOP, a script, a served blocking pop."""
    k = lambda name: f"{{{tag}}}{name}"  # noqa: E731
    client.set(k("s"), "v")
    client.set(k("ex"), "v", ex=1000)
    client.set(k("short"), "gone", px=150)
    client.set(k("lazy"), "gone", px=100)
    client.setex(k("setex"), 500, "v")
    client.set(k("e"), "x")
    client.expire(k("e"), 700)
    client.pexpire(k("e2"), 5)  # no such key: not a write
    client.set(k("past"), "x")
    client.expire(k("past"), -1)  # deleted at once
    client.incr(k("n"))
    client.incrbyfloat(k("f"), 1.1)
    client.append(k("s"), "w")
    client.setrange(k("s"), 5, "zz")
    client.setbit(k("bits"), 77, 1)
    client.rpush(k("l"), *"abcdefg")
    client.lpop(k("l"))
    client.rpop(k("l"), 2)
    client.lmove(k("l"), k("l2"), "LEFT", "RIGHT")
    client.sadd(k("set"), *[str(i) for i in range(20)])
    client.spop(k("set"))
    client.spop(k("set"), 5)
    client.sadd(k("iset"), 1, 2, 3)
    client.zadd(k("z"), {"a": 1, "b": 2.5, "c": -3})
    client.zincrby(k("z"), 0.25, "a")
    client.zpopmin(k("z"))
    client.hset(k("h"), mapping={"f1": "1", "f2": "2"})
    client.hincrbyfloat(k("h"), "f3", 2.5)
    client.hdel(k("h"), "f1")
    client.xadd(k("x"), {"a": "1"})
    client.xadd(k("x"), {"b": "2"}, maxlen=10, approximate=False)
    client.getex(k("s"), px=900_000)
    client.getdel(k("n"))
    client.eval("redis.call('SET', KEYS[1], 'from-script'); redis.call('INCR', KEYS[2]); "
                "return redis.call('SPOP', KEYS[3])", 3, k("scr"), k("scrn"), k("set"))
    client.copy(k("h"), k("hcopy"))
    with client.pipeline(transaction=True) as tx:
        tx.set(k("tx1"), "a").incr(k("tx2")).lpush(k("tx3"), "x").execute()
    # a blocking pop served later: the waiter's pop is logged, not the push that fed it
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(
        redis.Redis(port=client.connection_pool.connection_kwargs["port"]).blpop(k("bq"), 5)))
    waiter.start()
    time.sleep(0.3)
    client.rpush(k("bq"), "one", "two")
    waiter.join()
    assert got == [(k("bq").encode(), b"one")]
    got.clear()
    waiter = threading.Thread(target=lambda: got.append(
        redis.Redis(port=client.connection_pool.connection_kwargs["port"]).blmove(
            k("bq2"), k("bdst"), 5, "LEFT", "RIGHT")))
    waiter.start()
    time.sleep(0.3)
    client.rpush(k("bq2"), "m")
    waiter.join()
    assert got == [b"m"]
    client.blpop(k("l2"), 1)  # served at once
    time.sleep(0.2)
    assert client.get(k("lazy")) is None  # lazily expired: logged as DEL


@pytest.fixture
def aof_server():
    servers: list[Server] = []

    def start(*args: str) -> Server:
        server = start_shardis(2, "--appendonly", "yes", *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_kill_9_restart_and_full_restart_lose_no_acknowledged_write(aof_server, tmp_path):
    data = str(tmp_path / "data")
    server = aof_server("--appendfsync", "always", "--dir", data)
    client = redis.Redis(port=server.port)
    assert client.config_get("append*") == {"appendonly": "yes", "appendfsync": "always",
                                            "appenddirname": "appendonlydir"}
    with pytest.raises(redis.ResponseError, match="can't set immutable config"):
        client.config_set("appenddirname", "elsewhere")
    tags = [tag_on(0), tag_on(1)]
    for tag in tags:
        write_everything(client, tag)
    client.rename(f"{{{tags[0]}}}s", f"{{{tags[1]}}}moved")  # across workers: __restore
    expected = snapshot(client)
    assert len(expected) >= 30
    assert not any(b"short" in key or b"lazy" in key or b"past" in key for key in expected)
    for index in (0, 1):
        old = kill9(server, index)
        wait_restarted(server, index, old, client, tags[index])
    assert wait_equal(client, expected) == expected

    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=20)
    check = shutil.which("redis-check-aof")
    for index in (0, 1):
        manifest = os.path.join(data, f"worker-{index}", "appendonlydir",
                                "appendonly.aof.manifest")
        if check:
            result = subprocess.run([check, manifest], capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "is valid" in result.stdout
    again = aof_server("--appendfsync", "always", "--dir", data)
    assert wait_equal(redis.Redis(port=again.port), expected) == expected


def test_everysec_keeps_what_a_second_ago_was_written(aof_server, tmp_path):
    server = aof_server("--appendfsync", "everysec", "--dir", str(tmp_path))
    client = redis.Redis(port=server.port)
    tag = tag_on(1)
    client.mset({f"{{{tag}}}k{i}": i for i in range(50)})
    expected = snapshot(client)
    time.sleep(1.5)
    old = kill9(server, 1)
    wait_restarted(server, 1, old, client, tag)
    assert wait_equal(client, expected) == expected


def test_a_corrupt_aof_stops_the_worker_naming_file_and_offset(tmp_path):
    folder = tmp_path / "worker-0" / "appendonlydir"
    folder.mkdir(parents=True)
    (folder / "appendonly.aof.manifest").write_text("file appendonly.aof.1.incr.aof seq 1 type i\n")
    (folder / "appendonly.aof.1.incr.aof").write_bytes(
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n" b"+garbage\r\n" b"*1\r\n$4\r\nPING\r\n")
    sock = tempfile.mktemp(prefix="shardis-aof-", suffix=".sock")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-m", "shardis", "worker", "--listen", f"ipc://{sock}", "--dir",
         str(tmp_path), "--appendonly", "yes", "--appendfsync", "always"],
        capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode != 0
    assert "appendonly.aof.1.incr.aof at offset 27" in result.stderr, result.stderr
    assert "can't load its append only file" in result.stderr


def test_worker_flags_by_hand_and_bad_values(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "shardis", "worker", "--listen", f"ipc://{tmp_path}/w.sock",
         "--dir", str(tmp_path), "--appendfsync", "sometimes"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 1  # as redis-server: its fatal config report
    assert result.stderr.endswith(">>> 'appendfsync \"sometimes\"'\nargument(s) must be one "
                                  "of the following: everysec, always, no\n")


def test_appendonly_is_off_by_default(tmp_path):
    port = free_port()
    server = start_shardis(1, "--dir", str(tmp_path), port=port)
    try:
        client = redis.Redis(port=port)
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.set("k", "v")
    finally:
        server.stop()
    assert not any("appendonlydir" in dirs for _, dirs, _ in os.walk(tmp_path))


def test_stream_consumer_group_delivery_times_survive(aof_server, tmp_path):
    server = aof_server("--appendfsync", "always", "--dir", str(tmp_path))
    client = redis.Redis(port=server.port)
    tag = tag_on(0)
    stream = f"{{{tag}}}st"
    client.xadd(stream, {"a": "1"})
    client.xgroup_create(stream, "g", id="0")
    client.xreadgroup("g", "c", {stream: ">"})
    time.sleep(1.2)
    before = client.xpending_range(stream, "g", "-", "+", 10)[0]["time_since_delivered"]
    old = kill9(server, 0)
    wait_restarted(server, 0, old, client, tag)
    after = client.xpending_range(stream, "g", "-", "+", 10)[0]["time_since_delivered"]
    assert after >= before


def test_effect_translation_of_context_dependent_writes():
    from shardis.resp import Status
    from shardis.worker.aoflog import effect_commands

    now = 1_000_000
    assert effect_commands([b"BLMPOP", b"0", b"2", b"a", b"b", b"RIGHT", b"COUNT", b"5"],
                           [b"b", [b"x", b"y"]], now) == [[b"RPOP", b"b", b"2"]]
    assert effect_commands([b"BZMPOP", b"0", b"1", b"z", b"MIN", b"COUNT", b"2"],
                           [b"z", [[b"m1", 1.0], [b"m2", 2.0]]], now) == [
        [b"ZREM", b"z", b"m1", b"m2"]]
    assert effect_commands([b"BZPOPMAX", b"z", b"0"], [b"z", b"m", b"3"], now) == [
        [b"ZREM", b"z", b"m"]]
    assert effect_commands([b"__block", b"7", b"0", b"2", b"BRPOP", b"q", b"0"],
                           [b"q", b"v"], now) == [[b"RPOP", b"q"]]
    assert effect_commands([b"__block", b"7", b"0", b"2", b"BLMOVE", b"s", b"d", b"LEFT",
                            b"RIGHT", b"0"], b"v", now) == [[b"LMOVE", b"s", b"d", b"LEFT",
                                                             b"RIGHT"]]
    assert effect_commands([b"__tryblock", b"BLPOP", b"q", b"0"], Status(b"__BLOCKED"),
                           now) == []
    assert effect_commands([b"XADD", b"s", b"NOMKSTREAM", b"MAXLEN", b"~", b"10", b"LIMIT",
                            b"5", b"*", b"f", b"v"], b"5-1", now) == [
        [b"XADD", b"s", b"NOMKSTREAM", b"MAXLEN", b"~", b"10", b"LIMIT", b"5", b"5-1", b"f",
         b"v"]]
    assert effect_commands([b"XADD", b"s", b"12-*", b"f", b"v"], b"12-3", now) == [
        [b"XADD", b"s", b"12-3", b"f", b"v"]]
    assert effect_commands([b"SPOP", b"s", b"3"], [b"a", b"b"], now) == [
        [b"SREM", b"s", b"a", b"b"]]
    assert effect_commands([b"EXPIRE", b"k", b"10"], 1, now) == [
        [b"PEXPIREAT", b"k", b"1010000"]]


def test_a_data_dir_of_another_worker_count_is_refused(tmp_path):
    """Loading 2 workers' files into 3 workers would put keys where no reader looks."""
    from shardis.persist.layout import MANIFEST, read_worker_count

    server = start_shardis(2, "--appendonly", "yes", "--dir", str(tmp_path))
    try:
        redis.Redis(port=server.port).set("kept", "1")
    finally:
        server.stop()  # removes its own work dir, not --dir
    assert read_worker_count(str(tmp_path)) == 2
    proc = subprocess.run(
        [sys.executable, "-m", "shardis", "up", "--workers", "3", "--port", str(free_port()),
         "--appendonly", "yes", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "belongs to 2 workers, not 3" in proc.stderr + proc.stdout
    assert (tmp_path / MANIFEST).read_text() == "format 1\nworkers 2\n"


def test_a_manifest_without_data_binds_no_worker_count(tmp_path):
    """Only files can be mis-routed: an empty data dir takes any worker count."""
    from shardis.persist.layout import check_and_record, read_worker_count

    check_and_record(str(tmp_path), 2)
    check_and_record(str(tmp_path), 3)  # no worker wrote anything: allowed, re-recorded
    assert read_worker_count(str(tmp_path)) == 3
    (tmp_path / "worker-0").mkdir()
    (tmp_path / "worker-0" / "dump.rdb").write_bytes(b"x")
    from shardis.persist.layout import LayoutError

    with pytest.raises(LayoutError, match="belongs to 3 workers, not 2"):
        check_and_record(str(tmp_path), 2)
