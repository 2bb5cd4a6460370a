"""CONFIG SET of the persistence directives while running, as Redis 7.0: the router checks
the value, every worker applies it (``__config_set``), CONFIG GET tells the truth, and a
worker ``shardis up`` restarts later starts with the current value."""

from __future__ import annotations

import os
import time

import pytest
import redis

from tests.servers import start_redis, start_shardis
from tests.test_persistence_aof import (
    kill9,
    snapshot,
    tag_on,
    wait_equal,
    wait_restarted,
    worker_pids,
)

SETS = [
    ["appendfsync", "always"], ["appendfsync", "sometimes"], ["save", "100 10"],
    ["save", "100"], ["save", "100 10 x"], ["save", ""],
    ["auto-aof-rewrite-percentage", "50"], ["auto-aof-rewrite-percentage", "-5"],
    ["auto-aof-rewrite-min-size", "1mb"], ["auto-aof-rewrite-min-size", "lots"],
    ["aof-use-rdb-preamble", "no"], ["aof-use-rdb-preamble", "maybe"],
    ["dbfilename", "other.rdb"], ["dir", "/tmp"], ["appenddirname", "elsewhere"],
    ["appendonly", "perhaps"],
]
GETS = ["appendfsync", "save", "auto-aof-rewrite-*", "aof-use-rdb-preamble", "dbfilename",
        "appendonly", "appenddirname", "enable-protected-configs", "enable-debug-command"]


def replies(client: redis.Redis, commands: list[list[str]]) -> list:
    out = []
    for args in commands:
        try:
            out.append(client.execute_command(*args))
        except redis.ResponseError as exc:
            out.append(str(exc))
    return out


def test_config_set_persistence_replies_as_redis():
    oracle = start_redis()
    ours = start_shardis(2)
    try:
        seen = []
        for server in (oracle, ours):
            client = redis.Redis(port=server.port)
            seen.append(replies(client, [["CONFIG", "SET", *pair] for pair in SETS])
                        + replies(client, [["CONFIG", "GET", name] for name in GETS]))
        assert seen[1] == seen[0]
    finally:
        oracle.stop()
        ours.stop()


def restarted_worker_argv(server, index: int, client: redis.Redis) -> list[str]:
    old = kill9(server, index)
    wait_restarted(server, index, old, client, tag_on(index))
    with open(f"/proc/{worker_pids(server)[index]}/cmdline", "rb") as fh:
        return fh.read().decode().split("\0")


def test_save_and_appendfsync_reach_the_workers_and_restarted_ones(tmp_path):
    server = start_shardis(2, "--save", "", "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port)
        client.config_set("save", "1 1")
        client.config_set("appendfsync", "always")
        assert client.config_get("save") == {"save": "1 1"}
        client.mset({f"k{i}": i for i in range(20)})  # keys on both workers
        deadline = time.monotonic() + 10
        paths = [os.path.join(str(tmp_path), f"worker-{i}", "dump.rdb") for i in range(2)]
        while not all(map(os.path.exists, paths)):
            assert time.monotonic() < deadline, "the new save rule did not save"
            time.sleep(0.1)
        argv = restarted_worker_argv(server, 1, client)
        assert argv[argv.index("--save") + 1] == "1 1"
        assert argv[argv.index("--appendfsync") + 1] == "always"
        client.config_set("auto-aof-rewrite-percentage", "7")
        assert argv[argv.index("--auto-aof-rewrite-percentage") + 1] == "100"  # before
        with open(f"/proc/{restarted_worker_pid(server, 1, client)}/cmdline", "rb") as fh:
            argv = fh.read().decode().split("\0")
        assert argv[argv.index("--auto-aof-rewrite-percentage") + 1] == "7"
    finally:
        server.stop()


def restarted_worker_pid(server, index: int, client: redis.Redis) -> int:
    old = kill9(server, index)
    wait_restarted(server, index, old, client, tag_on(index))
    return worker_pids(server)[index]


def test_appendonly_switched_on_and_off_while_running(tmp_path):
    """``appendonly yes``: a rewrite creates each worker's AOF from memory, then writes are
    logged (a worker killed afterwards comes back with everything); ``no``: logging stops."""
    server = start_shardis(2, "--save", "", "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port)
        client.mset({f"before{i}": i for i in range(50)})
        client.rpush("list", *range(10))
        assert client.config_set("appendonly", "yes")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.incr("before1")
        deadline = time.monotonic() + 10
        while True:
            info = client.info("persistence")
            if info["aof_rewrites"] == 2 and not info["aof_rewrite_in_progress"]:
                break
            assert time.monotonic() < deadline, info
            time.sleep(0.05)
        assert info["aof_enabled"] == 1 and info["aof_last_bgrewrite_status"] == "ok"
        client.mset({f"after{i}": i for i in range(50)})
        for index in (0, 1):
            folder = os.path.join(str(tmp_path), f"worker-{index}", "appendonlydir")
            assert sorted(os.listdir(folder)) == ["appendonly.aof.1.base.rdb",
                                                  "appendonly.aof.1.incr.aof",
                                                  "appendonly.aof.manifest"]
        expected = snapshot(client)
        for index in (0, 1):  # restarted with --appendonly yes: it loads the AOF
            argv = restarted_worker_argv(server, index, client)
            assert argv[argv.index("--appendonly") + 1] == "yes"
        assert wait_equal(client, expected) == expected
        assert client.config_set("appendonly", "no")
        incr = os.path.join(str(tmp_path), "worker-0", "appendonlydir",
                            "appendonly.aof.1.incr.aof")
        time.sleep(0.2)
        size = os.path.getsize(incr)
        client.mset({f"later{i}": i for i in range(50)})
        time.sleep(0.2)
        assert os.path.getsize(incr) == size  # not logged any more
        assert "aof_current_size" not in client.info("persistence")
    finally:
        server.stop()


def test_dbfilename_is_protected_unless_enable_protected_configs(tmp_path):
    server = start_shardis(2, "--save", "", "--dir", str(tmp_path),
                           "--enable-protected-configs", "yes")
    try:
        client = redis.Redis(port=server.port)
        assert client.config_set("dbfilename", "renamed.rdb")
        with pytest.raises(redis.ResponseError, match="can't be a path"):
            client.config_set("dbfilename", "a/b.rdb")
        with pytest.raises(redis.ResponseError, match="can't set immutable config"):
            client.config_set("dir", "/tmp")  # each worker's folder is fixed
        client.set("k", "v")
        assert client.save()
        assert os.path.exists(os.path.join(str(tmp_path), "worker-0", "renamed.rdb"))
        assert not os.path.exists(os.path.join(str(tmp_path), "worker-0", "dump.rdb"))
    finally:
        server.stop()
