"""``shardis export-rdb``, ``import-rdb`` and ``reshard``: the real CLI in subprocesses, with
real redis-server processes as the source and the judge of the files.

Round trips compare every key's type, value, absolute deadline (PEXPIRETIME) and, for
collections, OBJECT ENCODING, read with type-specific commands (no DUMP).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from shardis.persist import layout, tools
from shardis.persist.rdb import read_rdb
from shardis.slots import SlotMap
from tests.servers import free_port, wait_for_port
from tests.test_persistence_aof import snapshot

# --- processes ------------------------------------------------------------------------------------

def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardis", *args], capture_output=True,
                          text=True, timeout=timeout)


def ok(*args: str) -> subprocess.CompletedProcess:
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def refused(*args: str, says: str) -> subprocess.CompletedProcess:
    """The tool fails with exit code 1 and one clear line, no traceback."""
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert says in proc.stderr, proc.stderr
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def real_redis(data_dir: str, *extra: str) -> Iterator[redis.Redis]:
    """redis-server on ``data_dir`` (it loads ``dump.rdb`` from there if present)."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir,
         "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        client = redis.Redis(port=port, protocol=2)
        yield client
        client.close()
    finally:
        _stop(proc)


@contextlib.contextmanager
def shardis_up(data_dir: str, workers: int, *extra: str) -> Iterator[redis.Redis]:
    """``shardis up`` on ``data_dir`` (no save rules: the tests save when they mean to)."""
    port = free_port()
    log_path = os.path.join(os.path.dirname(data_dir), f"shardis-{port}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shardis", "up", "--workers", str(workers), "--port",
             str(port), "--dir", data_dir, "--save", "", *extra],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(port, proc)
        except RuntimeError:
            with open(log_path, "rb") as fh:
                sys.stderr.write(fh.read().decode(errors="replace")[-3000:])
            raise
        client = redis.Redis(port=port, protocol=2)
        yield client
        client.close()
    finally:
        _stop(proc)


# --- data -----------------------------------------------------------------------------------------

def populate(client: redis.Redis, prefix: str = "") -> None:
    """Every type, in each of the encodings Redis gives it, some keys with a TTL."""
    p = prefix
    pipe = client.pipeline(transaction=False)
    for i in range(120):
        pipe.set(f"{p}str:{i}", f"value-{i}")
    pipe.set(f"{p}bin", b"\x00\xff\r\n\x80 binary \x00")
    pipe.set(f"{p}int", "12345")
    pipe.set(f"{p}negint", "-7")
    pipe.set(f"{p}bigint", "98765432109876543210")
    pipe.set(f"{p}long", "abc" * 5000)  # LZF-compressed in the RDB
    pipe.set(f"{p}empty", "")
    pipe.set(f"{p}ttl:str", "soon", ex=5000)
    pipe.rpush(f"{p}list:small", "a", "b", 1, 2)
    pipe.rpush(f"{p}list:big", *[f"item-{i}" * 20 for i in range(600)])  # several nodes
    pipe.sadd(f"{p}set:ints", *range(-5, 50))  # intset
    pipe.sadd(f"{p}set:words", "alpha", "beta", "gamma")  # hashtable
    pipe.sadd(f"{p}set:bigints", *range(600))  # past set-max-intset-entries: hashtable
    pipe.hset(f"{p}hash:small", mapping={"a": "1", "b": "two", "c": b"\x00"})  # listpack
    pipe.hset(f"{p}hash:big", mapping={f"f{i}": f"v{i}" for i in range(200)})  # hashtable
    pipe.hset(f"{p}hash:longvalue", mapping={"x": "y" * 100})  # hashtable by value size
    pipe.zadd(f"{p}zset:small", {"a": 1.5, "b": -2, "c": 0, "inf": float("inf")})
    pipe.zadd(f"{p}zset:big", {f"m{i}": i / 7 for i in range(300)})  # skiplist
    pipe.rpush(f"{p}ttl:list", "x")
    pipe.pexpire(f"{p}ttl:list", 7_000_000)
    pipe.hset(f"{p}ttl:hash", "f", "v")
    pipe.expire(f"{p}ttl:hash", 9000)
    for i in range(10):  # hash tags: ten keys that must land on one worker
        pipe.set(f"{p}{{user:42}}:{i}", i)
    pipe.execute()


def state(client: redis.Redis) -> dict[bytes, tuple]:
    """:func:`snapshot` plus the encoding of every collection."""
    out = {}
    for key, (kind, value, deadline) in snapshot(client).items():
        encoding = None if kind == b"string" else client.object("encoding", key)
        out[key] = (kind, value, deadline, encoding)
    return out


def rdb_keys_by_worker(data_dir: str, workers: int) -> dict[int, list[bytes]]:
    out = {}
    for index in range(workers):
        path = os.path.join(data_dir, f"worker-{index}", "dump.rdb")
        out[index] = [key for key, _, _ in read_rdb(path)]
    return out


def assert_on_slot_owners(data_dir: str, workers: int) -> int:
    """Every worker's dump.rdb holds only keys whose slot that worker owns; keys counted."""
    slots = SlotMap(workers)
    by_worker = rdb_keys_by_worker(data_dir, workers)
    for index, keys in by_worker.items():
        assert all(slots.worker_of(key) == index for key in keys), index
    assert sum(1 for keys in by_worker.values() if keys) >= min(workers, 2)
    assert sorted(os.listdir(data_dir)) == sorted(
        [layout.MANIFEST] + [f"worker-{i}" for i in range(workers)])
    assert layout.read_worker_count(data_dir) == workers
    return sum(len(keys) for keys in by_worker.values())


def saved_redis(tmp_path, populate_with=populate, *extra: str) -> tuple[str, dict]:
    """A real Redis filled by ``populate_with`` and SAVEd: (its dump.rdb, its state)."""
    folder = tmp_path / "redis-src"
    folder.mkdir()
    with real_redis(str(folder), *extra) as source:
        populate_with(source)
        expected = state(source)
        source.save()
    return str(folder / "dump.rdb"), expected


def sleep_past(deadline_ms: int) -> None:
    """Sleep until the Unix time in ms ``deadline_ms`` has passed."""
    assert deadline_ms > 0
    time.sleep(max(0.0, deadline_ms / 1000 - time.time()) + 0.05)


def check_rdb(path: str) -> None:
    result = subprocess.run(["redis-check-rdb", path], capture_output=True, text=True)
    assert result.returncode == 0 and "RDB looks OK" in result.stdout, result.stdout


# --- round trips ------------------------------------------------------------------------------------

def test_import_serve_write_save_export_round_trip(tmp_path):
    """Redis -> import-rdb (3 workers) -> shardis serves the same keys -> more writes, SAVE,
    stop -> export-rdb -> redis-check-rdb -> a real Redis loads the same dataset."""
    rdb, expected = saved_redis(tmp_path)
    data = str(tmp_path / "data")
    proc = ok("import-rdb", rdb, "--dir", data, "--workers", "3", "--progress-every", "100")
    assert f"keys={len(expected)}" in proc.stdout
    assert 'msg="progress op=import-rdb keys=100 elapsed=' in proc.stderr
    assert assert_on_slot_owners(data, 3) == len(expected)

    with shardis_up(data, 3) as client:
        assert state(client) == expected
        populate(client, prefix="new:")
        client.delete("str:1", "list:small")
        client.set("int", "99")
        client.persist("ttl:str")
        client.zadd("zset:small", {"d": 4})
        after = state(client)
        client.save()
    assert len(after) == len(expected) * 2 - 2

    out = str(tmp_path / "export" / "all.rdb")
    os.makedirs(os.path.dirname(out))
    proc = ok("export-rdb", "--dir", data, out)
    assert f"keys={len(after)}" in proc.stdout
    assert "shard done worker=2 source=rdb" in proc.stderr
    check_rdb(out)
    with real_redis(os.path.dirname(out), "--dbfilename", "all.rdb") as loaded:
        assert state(loaded) == after


def test_reshard_3_to_5_to_2_keeps_every_key_where_its_slot_lives(tmp_path):
    rdb, expected = saved_redis(tmp_path)
    data = str(tmp_path / "data")
    ok("import-rdb", rdb, "--dir", data, "--workers", "3")
    for workers in (5, 2):
        proc = ok("reshard", "--dir", data, "--workers", str(workers))
        assert f"keys={len(expected)}" in proc.stdout
        assert "reshard committing from=" in proc.stderr
        assert assert_on_slot_owners(data, workers) == len(expected)
        with shardis_up(data, workers) as client:
            assert state(client) == expected
    # The old count is refused now, with a pointer to the tool.
    proc = subprocess.run([sys.executable, "-m", "shardis", "up", "--workers", "3", "--port",
                           str(free_port()), "--dir", data], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1
    assert "shardis reshard" in proc.stdout + proc.stderr


def test_appendonly_data_exports_and_reshards_from_the_aof(tmp_path):
    """With appendonly yes the AOF is the data (dump.rdb would be stale): export and reshard
    read it, and reshard writes AOF folders a restarted appendonly server loads."""
    data = str(tmp_path / "data")
    with shardis_up(data, 3, "--appendonly", "yes") as client:
        populate(client)
        client.save()  # a snapshot now, then more writes that only the AOF has
        client.delete("str:7")
        client.rpush("list:small", "after-save")
        expected = state(client)
        client.set("volatile", "x", px=1500)  # the last write: stopping takes well under 1.5 s
        deadline = client.execute_command("PEXPIRETIME", "volatile")
    sleep_past(deadline)  # "volatile" expires on disk: the tools drop it
    out = str(tmp_path / "aof.rdb")
    proc = ok("export-rdb", "--dir", data, out)
    assert "source=aof" in proc.stderr and "expired_dropped=1" in proc.stdout
    check_rdb(out)
    shutil.copy(out, tmp_path / "dump.rdb")
    with real_redis(str(tmp_path)) as loaded:
        assert state(loaded) == expected

    # --source rdb: the snapshot taken before the last writes.
    ok("export-rdb", "--dir", data, out, "--source", "rdb", "--force")
    from_snapshot = {key: value for key, value, _ in read_rdb(out)}
    assert b"str:7" in from_snapshot and list(from_snapshot[b"list:small"])[-1] == b"2"

    proc = ok("reshard", "--dir", data, "--workers", "2")
    assert "appendonly=yes" in proc.stderr
    for index in range(2):
        manifest = os.path.join(data, f"worker-{index}", "appendonlydir",
                                "appendonly.aof.manifest")
        check = subprocess.run(["redis-check-aof", manifest], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
        assert sorted(os.listdir(os.path.dirname(manifest))) == [
            "appendonly.aof.1.base.aof", "appendonly.aof.manifest"]  # compacted
    with shardis_up(data, 2, "--appendonly", "yes") as client:
        assert state(client) == expected
        client.set("after-reshard", "1")  # the worker appends to an incr file after the base
    with shardis_up(data, 2, "--appendonly", "yes") as client:
        assert client.get("after-reshard") == b"1"
        assert len(client.keys("*")) == len(expected) + 1


def test_import_for_an_appendonly_server(tmp_path):
    """import-rdb --appendonly yes, or reshard to the same count with --appendonly yes, give
    an appendonly server its data (without, it would start empty: dump.rdb is ignored)."""
    rdb, expected = saved_redis(tmp_path)
    data = str(tmp_path / "data")
    ok("import-rdb", rdb, "--dir", data, "--workers", "2", "--appendonly", "yes")
    with shardis_up(data, 2, "--appendonly", "yes") as client:
        assert state(client) == expected
    # The AOF folder is Redis's format: a real Redis with appendonly yes loads a whole import.
    single = str(tmp_path / "single")
    ok("import-rdb", rdb, "--dir", single, "--workers", "1", "--appendonly", "yes")
    os.unlink(os.path.join(single, "worker-0", "dump.rdb"))  # the AOF alone holds the data
    with real_redis(os.path.join(single, "worker-0"), "--appendonly", "yes") as loaded:
        assert state(loaded) == expected
    snapshots_only = str(tmp_path / "rdb-only")
    ok("import-rdb", rdb, "--dir", snapshots_only, "--workers", "2")
    assert not os.path.exists(os.path.join(snapshots_only, "worker-0", "appendonlydir"))
    ok("reshard", "--dir", snapshots_only, "--workers", "2", "--appendonly", "yes")
    with shardis_up(snapshots_only, 2, "--appendonly", "yes") as client:
        assert state(client) == expected


def test_streams_move_both_ways(tmp_path):
    """Streams (with their ids and last id) go through export-rdb and import-rdb."""
    data = str(tmp_path / "data")
    with shardis_up(data, 2, "--appendonly", "yes") as client:
        client.set("plain", "1")
        client.xadd("events", {"f": "v"}, id="5-1")
        expected = state(client)
    out = str(tmp_path / "out.rdb")
    proc = run_cli("export-rdb", "--dir", data, out)
    assert proc.returncode == 0, proc.stderr
    check_rdb(out)
    shutil.copy(out, tmp_path / "dump.rdb")
    with real_redis(str(tmp_path)) as loaded:
        assert state(loaded) == expected

    folder = tmp_path / "src"
    folder.mkdir()
    with real_redis(str(folder)) as source:
        source.xadd("events", {"f": "v"}, id="5-1")
        source.set("plain", "1")
        source.save()
        expected = state(source)
    target = str(tmp_path / "imported")
    proc = run_cli("import-rdb", str(folder / "dump.rdb"), "--dir", target, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    with shardis_up(target, 2) as client:
        assert state(client) == expected


def test_expired_keys_and_other_databases(tmp_path):
    """Keys past their TTL are dropped; keys of db 1 refuse the file unless skipped."""
    def fill(client: redis.Redis) -> None:
        client.set("kept", "1")
        client.set("gone", "x", px=1000)
        client.select(1)
        client.set("db1", "elsewhere")
        client.select(0)

    folder = tmp_path / "src"
    folder.mkdir()
    with real_redis(str(folder)) as source:
        fill(source)
        source.save()
        deadline = source.execute_command("PEXPIRETIME", "gone")
    sleep_past(deadline)
    rdb = str(folder / "dump.rdb")
    refused("import-rdb", rdb, "--dir", str(tmp_path / "a"), "--workers", "2",
            says="database 1")
    assert not os.path.exists(tmp_path / "a" / "worker-0")
    proc = ok("import-rdb", rdb, "--dir", str(tmp_path / "b"), "--workers", "2",
              "--skip-other-dbs")
    assert "keys=1 expired_dropped=1" in proc.stdout and "other_db_keys_skipped=1" in proc.stdout


# --- refusals ------------------------------------------------------------------------------------

def test_user_errors_are_one_line_and_exit_1(tmp_path):
    rdb, _ = saved_redis(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    refused("import-rdb", rdb, "--dir", str(data), "--workers", "2", says="is not empty")
    refused("import-rdb", str(tmp_path / "nope.rdb"), "--dir", str(tmp_path / "d2"),
            "--workers", "2", says="is not a file")
    refused("import-rdb", rdb, "--dir", str(tmp_path / "d3"), "--workers", "0",
            says="at least 1")
    refused("export-rdb", "--dir", str(tmp_path / "missing"), str(tmp_path / "o.rdb"),
            says="is not a directory")
    refused("export-rdb", "--dir", str(data), str(tmp_path / "o.rdb"), says="no shardis data")
    refused("reshard", "--dir", str(tmp_path / "missing"), "--workers", "2",
            says="is not a directory")
    good = str(tmp_path / "good")
    ok("import-rdb", rdb, "--dir", good, "--workers", "2")
    (tmp_path / "exists.rdb").write_bytes(b"keep me")
    refused("export-rdb", "--dir", good, str(tmp_path / "exists.rdb"), says="--force")
    assert (tmp_path / "exists.rdb").read_bytes() == b"keep me"
    ok("export-rdb", "--dir", good, str(tmp_path / "exists.rdb"), "--force")
    check_rdb(str(tmp_path / "exists.rdb"))


def test_a_corrupt_rdb_is_refused_with_its_offset(tmp_path):
    rdb, _ = saved_redis(tmp_path)
    raw = bytearray(open(rdb, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(bytes(raw))
    proc = refused("import-rdb", str(bad), "--dir", str(tmp_path / "d"), "--workers", "2",
                   says="offset")
    assert str(bad) in proc.stderr
    assert not os.path.exists(tmp_path / "d" / "worker-0")  # nothing half-imported is left
    # The same corruption inside a worker's dump.rdb stops export and reshard.
    data = tmp_path / "data"
    ok("import-rdb", rdb, "--dir", str(data), "--workers", "1")
    shutil.copy(bad, data / "worker-0" / "dump.rdb")
    refused("export-rdb", "--dir", str(data), str(tmp_path / "o.rdb"), says="offset")
    assert not os.path.exists(tmp_path / "o.rdb")
    refused("reshard", "--dir", str(data), "--workers", "2", says="offset")
    assert layout.read_worker_count(str(data)) == 1
    assert os.listdir(data / "worker-0") == ["dump.rdb"]


def test_a_running_servers_dir_is_refused(tmp_path):
    data = str(tmp_path / "data")
    with shardis_up(data, 2) as client:
        client.set("k", "v")
        client.save()
        refused("export-rdb", "--dir", data, str(tmp_path / "o.rdb"), says="stop it first")
        refused("reshard", "--dir", data, "--workers", "3", says="stop it first")
        assert client.get("k") == b"v"
    proc = ok("export-rdb", "--dir", data, str(tmp_path / "o.rdb"))  # stopped: lock gone
    assert "keys=1 " in proc.stdout


def test_a_worker_does_not_start_while_a_tool_holds_the_dir(tmp_path):
    """The lock is the directory's own (flock): no file is created for it."""
    data = str(tmp_path / "data")
    os.mkdir(data)
    fd = layout.lock_for_tool(data)
    try:
        proc = run_cli("worker", "--listen", f"tcp://127.0.0.1:{free_port()}", "--dir", data,
                       timeout=30)
        assert proc.returncode == 1
        assert "being rewritten by a shardis tool" in proc.stderr
    finally:
        os.close(fd)
    assert os.listdir(data) == []


def test_an_interrupted_reshard_leaves_a_usable_layout(tmp_path, monkeypatch):
    """A crash before the commit point keeps the old layout; after it, the server refuses to
    start until reshard is run again, which completes the swap."""
    rdb, expected = saved_redis(tmp_path)
    data = str(tmp_path / "data")
    ok("import-rdb", rdb, "--dir", data, "--workers", "3")
    before = rdb_keys_by_worker(data, 3)

    class Crash(Exception):
        pass

    def crash(*_: object, **__: object) -> None:
        raise Crash

    # 1. Crash while the new layout is being written: the old one is untouched.
    monkeypatch.setattr(tools.layout, "write_manifest", crash)
    with pytest.raises(Crash):
        tools.reshard(data, 4)
    monkeypatch.undo()
    assert rdb_keys_by_worker(data, 3) == before and layout.read_worker_count(data) == 3

    # 2. Crash in the middle of the swap (the commit, then one old folder moved aside).
    real_replace, calls = os.replace, []

    def replace_then_crash(src: str, dst: str) -> None:
        if calls or dst.endswith(layout.RESHARD_STATE):  # counting from the commit point
            calls.append(src)
        if len(calls) == 3:
            raise Crash
        real_replace(src, dst)

    monkeypatch.setattr(tools.os, "replace", replace_then_crash)
    with pytest.raises(Crash):
        tools.reshard(data, 4)
    monkeypatch.undo()
    assert os.path.exists(os.path.join(data, layout.RESHARD_STATE))
    proc = subprocess.run([sys.executable, "-m", "shardis", "up", "--workers", "4", "--port",
                           str(free_port()), "--dir", data], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1 and "did not finish" in proc.stdout + proc.stderr
    ok("reshard", "--dir", data, "--workers", "4")  # finishes the swap (4 -> 4)
    assert assert_on_slot_owners(data, 4) == len(expected)
    with shardis_up(data, 4) as client:
        assert state(client) == expected


def test_the_worker_count_of_a_dir_without_manifest(tmp_path):
    """Workers run by hand write no manifest: the count comes from --workers or the folders,
    and a key outside its worker's slots (a wrong count) stops the tool instead of being
    dropped or duplicated."""
    rdb, expected = saved_redis(tmp_path)
    data = tmp_path / "data"
    ok("import-rdb", rdb, "--dir", str(data), "--workers", "3")
    kept = rdb_keys_by_worker(str(data), 3)
    (data / layout.MANIFEST).unlink()
    shutil.rmtree(data / "worker-2")  # as if worker 2's folder had not been copied
    out = str(tmp_path / "o.rdb")
    refused("export-rdb", "--dir", str(data), out, says="not written for 2 workers")
    assert not os.path.exists(out)
    proc = ok("export-rdb", "--dir", str(data), out, "--workers", "3")
    assert f"keys={len(kept[0]) + len(kept[1])} " in proc.stdout
    assert sorted(key for key, _, _ in read_rdb(out)) == sorted(kept[0] + kept[1])
    ok("reshard", "--dir", str(data), "--workers", "2", "--from-workers", "3")
    assert assert_on_slot_owners(str(data), 2) == len(kept[0]) + len(kept[1])
    refused("export-rdb", "--dir", str(data), out, "--force", "--workers", "3",
            says="holds the data of 2 workers")


def test_an_aof_is_read_without_being_changed(tmp_path):
    """A torn last command is left out (as a starting worker would) but not cut off the file;
    a corrupt byte stops the tool with the file, the offset and the repair command."""
    data = str(tmp_path / "data")
    with shardis_up(data, 1, "--appendonly", "yes") as client:
        client.set("a", "1")
        client.rpush("l", "x", "y")
    folder = os.path.join(data, "worker-0", "appendonlydir")
    (incr,) = [n for n in os.listdir(folder) if n.endswith(".incr.aof")]
    path = os.path.join(folder, incr)
    with open(path, "ab") as fh:
        fh.write(b"*3\r\n$3\r\nSET\r\n$1\r\nb")
    size = os.path.getsize(path)
    out = str(tmp_path / "o.rdb")
    proc = ok("export-rdb", "--dir", data, out)
    assert "torn last command ignored" in proc.stderr and "keys=2 " in proc.stdout
    assert os.path.getsize(path) == size
    assert sorted(key for key, _, _ in read_rdb(out)) == [b"a", b"l"]

    raw = bytearray(open(path, "rb").read())
    raw[raw.index(b"$1\r\na") + 1] = ord("x")  # "$x": not a length
    open(path, "wb").write(bytes(raw))
    proc = refused("export-rdb", "--dir", data, out, "--force", says="offset")
    assert incr in proc.stderr and "redis-check-aof --fix" in proc.stderr
