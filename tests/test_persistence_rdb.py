"""RDB snapshots per worker: SAVE, BGSAVE, LASTSAVE, the ``save`` rules, loading at start.

Every worker writes ``DIR/worker-<i>/dump.rdb``; the files pass ``redis-check-rdb`` and a real
redis-server loads them; the tree stopped and started again on the same ``--dir`` has its keys
back, TTLs included; a BGSAVE does not stop the replies of a client that keeps writing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis

from shardis.config import ConfigError, parse_save, render
from shardis.persist.rdb import read_rdb
from tests.servers import Server, free_port, start_redis, start_shardis, wait_for_port
from tests.test_persistence_aof import snapshot


def dump_path(server: Server, index: int, workdir: str | None = None) -> str:
    return os.path.join(workdir or server.workdir, f"worker-{index}", "dump.rdb")


def check_rdb(path: str) -> None:
    result = subprocess.run(["redis-check-rdb", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RDB looks OK" in result.stdout


def fill(client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"s{i}", f"value-{i}")
    pipe.set("ttl", "soon", ex=1000)
    pipe.rpush("list", *range(50))
    pipe.hset("hash", mapping={"a": "1", "b": "x" * 100})
    pipe.sadd("ints", 1, 2, 3)
    pipe.sadd("words", "a", "b", "c")
    pipe.zadd("zset", {"a": 1.5, "b": -2})
    pipe.set("big", "y" * 100_000)
    pipe.execute()


def start_on(workdir: str, *args: str) -> Server:
    """``shardis up`` on an existing data dir (the Server's stop removes it)."""
    port = free_port()
    log = open(os.path.join(workdir, "shardis-2.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "shardis", "up", "--workers", "2", "--port",
                             str(port), "--dir", workdir, *args], stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    wait_for_port(port, proc)
    return Server("shardis", port, proc, workdir)


def test_save_directives_parse_and_print_as_redis():
    assert render({})["save"] == "3600 1 300 100 60 10000"
    assert render({})["dbfilename"] == "dump.rdb"
    assert parse_save("") == []
    assert parse_save("1 1 20 300") == [(1, 1), (20, 300)]
    for bad in ("1", "a 1", "0 1", "1 -1"):
        with pytest.raises(ConfigError):
            parse_save(bad)


def test_save_files_check_load_in_redis_and_restart(tmp_path):
    server = start_shardis(2, "--save", "")
    workdir = server.workdir
    try:
        client = redis.Redis(port=server.port)
        assert client.config_get("save") == {"save": ""}
        fill(client)
        expected = snapshot(client)
        before = client.lastsave()
        time.sleep(1.05)
        assert client.save() is True
        assert client.lastsave() > before
        info = client.info("persistence")
        assert info["rdb_changes_since_last_save"] == 0
        assert info["rdb_last_bgsave_status"] == "ok"
        # each file passes redis-check-rdb and a real redis-server loads its keys
        seen: dict = {}
        for index in range(2):
            path = dump_path(server, index)
            check_rdb(path)
            oracle = start_redis("--dir", os.path.dirname(path), "--dbfilename", "dump.rdb")
            try:
                got = snapshot(redis.Redis(port=oracle.port))
            finally:
                oracle.proc.send_signal(signal.SIGKILL)  # no save on the way out
                oracle.stop()
            assert got and not set(got) & set(seen)
            seen.update(got)
        assert seen == expected
        # the whole tree stopped and started again on the same dir: keys and TTLs back
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=15)
        server = start_on(workdir, "--save", "")
        client = redis.Redis(port=server.port)
        assert snapshot(client) == expected
        info = client.info("persistence")
        assert info["rdb_last_load_keys_loaded"] == len(expected)
        # a stream is saved too, and comes back
        client.xadd("stream", {"f": "v"}, id="1-1")
        assert client.save()
        for index in range(2):
            check_rdb(dump_path(server, index))
        expected = snapshot(client)
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=15)
        server = start_on(workdir, "--save", "")
        assert snapshot(redis.Redis(port=server.port)) == expected
    finally:
        server.stop()


def test_bgsave_while_a_client_keeps_writing(capsys):
    server = start_shardis(2, "--save", "")
    try:
        client = redis.Redis(port=server.port)
        pipe = client.pipeline(transaction=False)
        for i in range(100_000):
            pipe.set(f"key:{i}", f"value-{i}")
            if i % 10_000 == 9_999:
                pipe.execute()
        stop = threading.Event()
        latencies: list[float] = []

        def writer() -> None:
            other = redis.Redis(port=server.port)
            n = 0
            while not stop.is_set():
                started = time.monotonic()
                other.set(f"live:{n}", n)
                latencies.append(time.monotonic() - started)
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.2)
        assert client.bgsave() is True
        with pytest.raises(redis.ResponseError, match="already in progress"):
            client.bgsave()
        deadline = time.monotonic() + 20
        while client.info("persistence")["rdb_bgsave_in_progress"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)
        stop.set()
        thread.join()
        info = client.info("persistence")
        assert info["rdb_last_bgsave_status"] == "ok"
        worst = max(latencies)
        with capsys.disabled():
            print(f"\nBGSAVE of 100k keys: {len(latencies)} writes meanwhile, "
                  f"max latency {worst * 1000:.1f} ms")
        assert worst < 2.0  # replies never stopped (a generous bound: no hang)
        keys = set()
        for index in range(2):
            check_rdb(dump_path(server, index))
            keys |= {key for key, _, _ in read_rdb(dump_path(server, index))}
        assert {f"key:{i}".encode() for i in range(100_000)} <= keys
    finally:
        server.stop()


def test_save_rules_trigger_a_background_save():
    server = start_shardis(2, "--save", "1 1")
    try:
        client = redis.Redis(port=server.port)
        assert client.config_get("save") == {"save": "1 1"}
        client.mset({f"k{i}": i for i in range(20)})  # keys on both workers
        deadline = time.monotonic() + 10
        while not all(os.path.exists(dump_path(server, i)) for i in range(2)):
            assert time.monotonic() < deadline, "no snapshot after the save rule was met"
            time.sleep(0.1)
        while client.info("persistence")["rdb_changes_since_last_save"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for index in range(2):
            check_rdb(dump_path(server, index))
    finally:
        server.stop()


def test_appendonly_wins_over_dump_rdb_and_the_worker_count_is_checked():
    server = start_shardis(2, "--save", "")
    workdir = server.workdir
    try:
        client = redis.Redis(port=server.port)
        client.set("from-rdb", 1)
        client.save()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=15)
        # snapshots of 2 workers: a start with 3 is refused before any worker loads them
        refused = subprocess.run(
            [sys.executable, "-m", "shardis", "up", "--workers", "3", "--port", str(free_port()),
             "--dir", workdir, "--save", ""], capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1
        assert "belongs to 2 workers" in refused.stdout + refused.stderr
        server = start_on(workdir, "--save", "", "--appendonly", "yes")
        assert redis.Redis(port=server.port).get("from-rdb") is None
    finally:
        server.stop()
