"""BGREWRITEAOF, as Redis 7.0: a forked child writes the new base while the worker serves.

Replies (and their interplay with BGSAVE) are compared with a real redis-server; the folder a
rewrite leaves is checked with ``redis-check-aof``, loaded by a real Redis, and reloaded by
shardis; a worker killed in the middle of a rewrite comes back with its data; the batch
annotations a restarted worker resumes from survive a rewrite.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis

from shardis.persist.rdb import read_rdb
from tests.servers import free_port, start_redis, start_shardis
from tests.test_persistence_aof import kill9, snapshot, tag_on, wait_equal, wait_restarted
from tests.test_persistence_rdb import start_on


def pipelined(port: int, *commands: list[str]) -> list[bytes]:
    """Send every command in one write (Redis runs them in one event-loop turn), then read one
    reply line each (status and error replies only)."""
    payload = b"".join(
        b"*%d\r\n" % len(cmd) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in cmd)
        for cmd in commands)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"\r\n") < len(commands):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    return data.split(b"\r\n")[:len(commands)]


def persistence(client: redis.Redis) -> dict:
    return client.info("persistence")


def wait_idle(client: redis.Redis, timeout: float = 30.0) -> dict:
    """Until no BGSAVE or rewrite runs or waits; the INFO persistence fields then."""
    deadline = time.monotonic() + timeout
    while True:
        info = persistence(client)
        if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]
                or info["rdb_bgsave_in_progress"]):
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


def fill(client: redis.Redis, keys: int = 20_000) -> None:
    """Enough data that a child takes a while (the commands after a BGREWRITEAOF find it
    still running), a counter with a long history, and a few types and TTLs."""
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        pipe.set(f"key:{i}", "v" * 100)
    for _ in range(300):
        pipe.incr("counter")
    pipe.rpush("list", *range(100))
    pipe.hset("hash", mapping={"a": "1", "b": "2"})
    pipe.zadd("zset", {"a": 1.5, "b": 2.5})
    pipe.sadd("set", "x", "y")
    pipe.set("ttl", "later", ex=5000)
    pipe.execute()


def state(client: redis.Redis) -> tuple:
    """What :func:`fill` wrote (every value, in a few pipelined round trips)."""
    keys = sorted(client.keys("key:*"))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    pipe.get("counter").lrange("list", 0, -1).hgetall("hash").zrange("zset", 0, -1,
                                                                      withscores=True)
    pipe.smembers("set").pexpiretime("ttl").dbsize()
    return keys, pipe.execute()


SEQUENCES = [
    (["BGREWRITEAOF"], ["BGREWRITEAOF"]),
    (["BGSAVE"], ["BGREWRITEAOF"]),
    (["BGREWRITEAOF"], ["BGSAVE"], ["BGSAVE", "SCHEDULE"], ["BGREWRITEAOF"]),
]


def test_bgrewriteaof_and_bgsave_replies_as_redis(tmp_path):
    """Byte for byte the replies of Redis 7.0: started, already in progress, scheduled while
    a BGSAVE runs, BGSAVE refused (or scheduled with SCHEDULE) while a rewrite runs."""
    oracle = start_redis("--appendonly", "yes")
    ours = start_shardis(2, "--appendonly", "yes", "--save", "")
    try:
        clients = [redis.Redis(port=oracle.port), redis.Redis(port=ours.port)]
        for client in clients:
            fill(client, 60_000 if client is clients[0] else 20_000)
            wait_idle(client)
        for sequence in SEQUENCES:
            replies = []
            for client in clients:
                replies.append(pipelined(client.connection_pool.connection_kwargs["port"],
                                         *sequence))
                wait_idle(client)
            assert replies[1] == replies[0], sequence
        assert replies[0][0] == b"+Background append only file rewriting started"
        deadline = time.monotonic() + 30
        while persistence(clients[1])["rdb_saves"] < 2 * 2:  # the scheduled BGSAVE too
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = wait_idle(clients[1])
        assert info["aof_last_bgrewrite_status"] == "ok"
        assert info["aof_rewrites"] == 2 * 3  # 3 rewrites ran, on each of the 2 workers
        assert info["aof_last_cow_size"] > 0  # measured by the children
    finally:
        oracle.stop()
        ours.stop()


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_rewrite_compacts_and_the_folder_loads_here_and_in_redis(tmp_path, preamble):
    data = str(tmp_path / "data")
    os.makedirs(data)
    server = start_on(data, "--appendonly", "yes", "--save", "", "--aof-use-rdb-preamble",
                      preamble)
    try:
        client = redis.Redis(port=server.port)
        fill(client, 500)
        sizes_before = persistence(client)["aof_current_size"]
        assert client.bgrewriteaof()
        info = wait_idle(client)
        assert info["aof_rewrites"] == 2 and info["aof_last_bgrewrite_status"] == "ok"
        assert info["aof_current_size"] < sizes_before  # 300 INCRs are one value now
        client.incr("counter")
        client.set("after", "rewrite")
        expected = snapshot(client)
    finally:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=30)
    kind = "rdb" if preamble == "yes" else "aof"
    for index in (0, 1):
        folder = os.path.join(data, f"worker-{index}", "appendonlydir")
        with open(os.path.join(folder, "appendonly.aof.manifest")) as fh:
            manifest = fh.read()
        # The base the rewrite wrote, the incr file it started; the old files are gone.
        assert manifest == (f"file appendonly.aof.1.base.{kind} seq 1 type b\n"
                            "file appendonly.aof.2.incr.aof seq 2 type i\n")
        assert sorted(os.listdir(folder)) == [f"appendonly.aof.1.base.{kind}",
                                              "appendonly.aof.2.incr.aof",
                                              "appendonly.aof.manifest"]
        result = subprocess.run(["redis-check-aof", os.path.join(folder,
                                                                 "appendonly.aof.manifest")],
                                capture_output=True, text=True)
        assert result.returncode == 0 and "All AOF files and manifest are valid" in \
            result.stdout, result.stdout
    # The offline tools read a rewritten folder too (export-rdb replays the AOF).
    out = str(tmp_path / "export.rdb")
    exported = subprocess.run([sys.executable, "-m", "shardis", "export-rdb", "--dir", data,
                               out], capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert sorted(key for key, _, _ in read_rdb(out)) == sorted(expected)
    again = start_on(data, "--appendonly", "yes", "--save", "")
    try:
        ours = redis.Redis(port=again.port)
        assert wait_equal(ours, expected) == expected
        # A real Redis loads each worker's folder: together they are the whole dataset.
        merged: dict = {}
        for index in (0, 1):
            copy = str(tmp_path / f"redis-{index}")
            shutil.copytree(os.path.join(data, f"worker-{index}", "appendonlydir"),
                            os.path.join(copy, "appendonlydir"))
            oracle = start_redis("--appendonly", "yes", "--dir", copy)
            try:
                merged.update(snapshot(redis.Redis(port=oracle.port)))
            finally:
                oracle.stop()
        assert merged == expected
    finally:
        again.stop()


def test_bgrewriteaof_with_appendonly_no_writes_a_base_as_redis(tmp_path):
    """Redis rewrites with the AOF off too: a base and a manifest naming it, which a start
    with appendonly yes then loads."""
    data = str(tmp_path / "data")
    os.makedirs(data)
    server = start_on(data, "--save", "")
    try:
        client = redis.Redis(port=server.port)
        fill(client, 100)
        assert pipelined(server.port, ["BGREWRITEAOF"]) == [
            b"+Background append only file rewriting started"]
        info = wait_idle(client)
        assert info["aof_enabled"] == 0 and info["aof_rewrites"] == 2
        assert "aof_current_size" not in info  # as Redis: only with the AOF on
        expected = snapshot(client)
    finally:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=30)
    for index in (0, 1):
        folder = os.path.join(data, f"worker-{index}", "appendonlydir")
        assert sorted(os.listdir(folder)) == ["appendonly.aof.1.base.rdb",
                                              "appendonly.aof.manifest"]
    again = start_on(data, "--appendonly", "yes", "--save", "")
    try:
        assert wait_equal(redis.Redis(port=again.port), expected) == expected
    finally:
        again.stop()


def test_auto_rewrite_when_the_aof_grew(tmp_path):
    """auto-aof-rewrite-percentage / -min-size, Redis's rule: past the minimum size and
    grown by the percentage over the size after the last rewrite."""
    server = start_shardis(2, "--appendonly", "yes", "--save", "",
                           "--auto-aof-rewrite-min-size", "16kb",
                           "--auto-aof-rewrite-percentage", "100")
    try:
        client = redis.Redis(port=server.port)
        assert client.config_get("auto-aof-rewrite-*") == {
            "auto-aof-rewrite-min-size": "16384", "auto-aof-rewrite-percentage": "100"}
        client.set("small", "x")
        time.sleep(0.5)
        assert persistence(client)["aof_rewrites"] == 0  # below the minimum size
        for i in range(40):
            client.set(f"k{i}", "v" * 4000)  # ~80 KB over the 2 workers
        deadline = time.monotonic() + 10
        while persistence(client)["aof_rewrites"] < 2:
            assert time.monotonic() < deadline, persistence(client)
            time.sleep(0.05)
        info = wait_idle(client)
        assert info["aof_base_size"] > 0
        # Off: the same growth again starts nothing.
        client.config_set("auto-aof-rewrite-percentage", "0")
        for i in range(40):
            client.set(f"k{i}", "w" * 4000)
        time.sleep(0.5)
        assert persistence(client)["aof_rewrites"] == info["aof_rewrites"]
    finally:
        server.stop()


def test_a_worker_killed_during_a_rewrite_comes_back_with_its_data(tmp_path):
    """kill -9 right after BGREWRITEAOF: the manifest names the old files and the new incr
    file (the base is not installed yet), and the restarted worker loads all of it."""
    server = start_shardis(2, "--appendonly", "yes", "--save", "", "--appendfsync", "always",
                           "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port)
        fill(client, 20_000)
        tag = tag_on(0)
        client.set(f"{{{tag}}}before", "1")
        assert pipelined(server.port, ["BGREWRITEAOF"], ["INCR", "counter"]) == [
            b"+Background append only file rewriting started", b":301"]
        expected = state(client)
        old = kill9(server, 0)
        wait_restarted(server, 0, old, client, tag)
        assert state(client) == expected
        assert client.bgrewriteaof()  # and a rewrite after the restart works
        assert wait_idle(client)["aof_last_bgrewrite_status"] == "ok"
        assert state(client) == expected
    finally:
        server.stop()


def test_whoami_applied_survives_a_rewrite_and_a_restart(tmp_path):
    """The base a rewrite writes holds data only; the new incr file starts with every
    router's checkpoint, so a restarted worker still knows the last batch it holds."""
    import zmq

    from tests.test_worker_link import RouterPeer, start_worker, stop

    address = f"tcp://127.0.0.1:{free_port()}"
    flags = ("--dir", str(tmp_path), "--appendonly", "yes", "--save", "")

    def connect(identity: bytes) -> RouterPeer:
        return RouterPeer(address, identity)

    call = RouterPeer.call

    def rewrite(sock: zmq.Socket, seq: int) -> None:
        assert call(sock, seq, [b"__bgrewriteaof"]) == [
            b"+Background append only file rewriting started\r\n"]
        deadline = time.monotonic() + 10
        while b"aof_rewrite_in_progress\r\n:0\r\n" not in call(sock, seq, [b"__info"])[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)

    folder = tmp_path / "worker-0" / "appendonlydir"
    proc = start_worker(address, str(tmp_path / "w.log"), *flags)
    sock, other = connect(b"router-a"), connect(b"router-b")
    try:
        assert call(sock, 7, [b"INCR", b"n"]) == [b":1\r\n"]
        assert call(other, 3, [b"SET", b"x", b"y"]) == [b"+OK\r\n"]
        rewrite(sock, 8)
        assert (folder / "appendonly.aof.1.base.rdb").exists()
        stop(proc)  # no write after the rewrite: only the checkpoints say 7 and 3
        proc = start_worker(address, str(tmp_path / "w2.log"), *flags)
        assert call(sock, 9, [b"__whoami", b"applied"]) == [b"*2\r\n:0\r\n:7\r\n"]
        assert call(other, 4, [b"__whoami", b"applied"]) == [b"*2\r\n:0\r\n:3\r\n"]
        assert call(sock, 10, [b"INCRBY", b"n", b"5"]) == [b":6\r\n"]
        rewrite(sock, 11)
        assert call(sock, 12, [b"INCR", b"n"]) == [b":7\r\n"]
        stop(proc)
        proc = start_worker(address, str(tmp_path / "w3.log"), *flags)
        assert call(sock, 13, [b"__whoami", b"applied"]) == [b"*2\r\n:0\r\n:12\r\n"]
        assert call(other, 5, [b"__whoami", b"applied"]) == [b"*2\r\n:0\r\n:3\r\n"]
        assert call(sock, 14, [b"GET", b"n"], [b"GET", b"x"]) == [b"$1\r\n7\r\n",
                                                                  b"$1\r\ny\r\n"]
        assert sorted(os.listdir(folder)) == ["appendonly.aof.2.base.rdb",
                                              "appendonly.aof.3.incr.aof",
                                              "appendonly.aof.manifest"]
    finally:
        sock.close()
        other.close()
        stop(proc)


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_a_rewrite_holds_streams(tmp_path, preamble):
    data = str(tmp_path / "data")
    os.makedirs(data)
    server = start_on(data, "--appendonly", "yes", "--save", "", "--aof-use-rdb-preamble",
                      preamble)
    try:
        client = redis.Redis(port=server.port)
        client.set("plain", "1")
        client.xadd("events", {"a": "1"}, id="1-1")
        client.xadd("events", {"b": "2"}, id="2-1")
        assert client.bgrewriteaof()
        info = wait_idle(client)
        assert info["aof_last_bgrewrite_status"] == "ok", info
        client.xadd("events", {"c": "3"}, id="3-1")
        expected = snapshot(client)
    finally:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=30)
    again = start_on(data, "--appendonly", "yes", "--save", "")
    try:
        client = redis.Redis(port=again.port)
        assert wait_equal(client, expected) == expected
    finally:
        again.stop()


def test_kill_9_under_load_while_rewrites_keep_running(tmp_path):
    """The crash-resume guarantee holds across rewrites: with an automatic rewrite every few
    KB, a worker killed under load comes back with no acknowledged write lost and none
    applied twice (its incr files start with every router's checkpoint)."""
    from tests.test_crash_resume import Writers, wait_new_worker

    server = start_shardis(2, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                           "--dir", str(tmp_path / "data"), "--auto-aof-rewrite-min-size",
                           "8kb", "--auto-aof-rewrite-percentage", "20")
    try:
        tags = [tag_on(0), tag_on(1)]
        with Writers(server.port, tags) as writers:
            time.sleep(1.0)
            for index in (0, 1, 0):
                old = kill9(server, index)
                wait_new_worker(server, index, old)
                time.sleep(1.0)
        assert not writers.errors, [str(e) for e in writers.errors[:3]]
        client = redis.Redis(port=server.port)
        for key, count in writers.acked.items():
            assert int(client.get(key)) == count, key
        a, b = (f"{{{tag}}}pair" for tag in tags)
        assert client.mget(a, b) == [str(writers.pairs["last"]).encode()] * 2
        info = wait_idle(client)
        assert info["aof_rewrites"] >= 4, info  # the restarted workers rewrote too
        assert info["aof_last_bgrewrite_status"] == "ok"
    finally:
        server.stop()


def test_a_key_that_expires_after_the_rewrite_stays_expired(tmp_path):
    """The base holds the key with its deadline; loaded after the deadline, the key is gone
    for clients, and expiry logs its DEL to the incr file (as Redis loads an AOF base)."""
    data = str(tmp_path / "data")
    os.makedirs(data)
    server = start_on(data, "--appendonly", "yes", "--save", "")
    try:
        client = redis.Redis(port=server.port)
        client.set("short", "x", px=1500)
        client.set("long", "y", ex=1000)
        assert client.bgrewriteaof()
        wait_idle(client)
    finally:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=30)
    time.sleep(1.6)
    again = start_on(data, "--appendonly", "yes", "--save", "")
    try:
        client = redis.Redis(port=again.port)
        assert client.get("short") is None and client.get("long") == b"y"
        assert client.dbsize() == 1
        assert 0 < client.ttl("long") <= 1000
    finally:
        again.stop()
