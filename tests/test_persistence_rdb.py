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


# Stopping: SIGTERM and SHUTDOWN save as Redis does ------------------------------------------
def stopped(server: Server, timeout: float = 30.0) -> int:
    """Wait for the server process to exit (without removing its dir); its exit code."""
    return server.proc.wait(timeout=timeout)


@pytest.mark.parametrize("rules", ["default", "none"])
def test_sigterm_saves_when_save_rules_exist(tmp_path, rules):
    """As Redis: SIGTERM to ``shardis up`` writes every worker's dump.rdb first when save
    rules are set; a start with appendonly no then loads them.  Without rules: no file."""
    workdir = str(tmp_path)
    args = () if rules == "default" else ("--save", "")
    server = start_on(workdir, *args)
    client = redis.Redis(port=server.port)
    fill(client)
    expected = snapshot(client)
    server.proc.send_signal(signal.SIGTERM)
    assert stopped(server) == 0
    exists = [os.path.exists(dump_path(server, i)) for i in range(2)]
    if rules == "none":
        assert exists == [False, False]
        return
    assert exists == [True, True]
    for index in range(2):
        check_rdb(dump_path(server, index))
    again = start_on(workdir, "--appendonly", "no")
    try:
        assert snapshot(redis.Redis(port=again.port)) == expected
    finally:
        again.stop()


def test_sigterm_to_a_standalone_worker_saves(tmp_path):
    import zmq

    from shardis import protocol
    from tests.test_worker_link import dealer, start_worker

    address = f"tcp://127.0.0.1:{free_port()}"
    proc = start_worker(address, str(tmp_path / "w.log"), "--dir", str(tmp_path))
    sock = dealer(zmq.Context.instance(), address)
    codec = protocol.codec_for(False)
    try:
        sock.send(codec.encode_batch(1, [(2, [b"SET", b"k", b"v"])]))
        assert codec.decode_replies(sock.recv())[1] == [b"+OK\r\n"]
    finally:
        sock.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert read_rdb(str(tmp_path / "worker-0" / "dump.rdb")) == [(b"k", b"v", None)]


def test_shutdown_nosave_saves_nothing_and_save_saves_without_rules(tmp_path):
    workdir = str(tmp_path / "a")
    os.makedirs(workdir)
    server = start_on(workdir)  # default save rules
    client = redis.Redis(port=server.port)
    client.mset({f"k{i}": i for i in range(20)})
    with pytest.raises(redis.ConnectionError):
        client.execute_command("SHUTDOWN", "NOSAVE")
    assert stopped(server) == 0
    assert not any(os.path.exists(dump_path(server, i)) for i in range(2))

    workdir = str(tmp_path / "b")
    os.makedirs(workdir)
    server = start_on(workdir, "--save", "")
    client = redis.Redis(port=server.port)
    client.mset({f"k{i}": i for i in range(20)})
    expected = snapshot(client)
    with pytest.raises(redis.ConnectionError):
        client.execute_command("SHUTDOWN", "SAVE")
    assert stopped(server) == 0
    again = start_on(workdir, "--save", "")
    try:
        assert snapshot(redis.Redis(port=again.port)) == expected
    finally:
        again.stop()


def test_shutdown_errors_as_redis(tmp_path):
    """A SHUTDOWN that cannot save fails (the server goes on), FORCE stops anyway; ABORT
    and bad flags: Redis's errors.  The failing save: dump.rdb is a directory."""
    oracle = start_redis("--save", "3600 1")
    ours = start_on(str(tmp_path))
    try:
        clients = {"redis": redis.Redis(port=oracle.port), "shardis": redis.Redis(port=ours.port)}
        blocked = {"redis": [os.path.join(oracle.workdir, "dump.rdb")],
                   "shardis": [dump_path(ours, i) for i in range(2)]}
        seen: dict[str, list] = {}
        for name, client in clients.items():
            client.mset({f"k{i}": i for i in range(20)})
            for path in blocked[name]:
                os.makedirs(os.path.join(path, "x"))
            seen[name] = []
            for args in (["SHUTDOWN"], ["SHUTDOWN", "SAVE"], ["SHUTDOWN", "ABORT"],
                         ["SHUTDOWN", "NOSAVE", "SAVE"], ["SHUTDOWN", "ABORT", "NOW"],
                         ["SHUTDOWN", "BOGUS"], ["SHUTDOWN", "NOW"]):
                try:
                    seen[name].append(client.execute_command(*args))
                except redis.ResponseError as exc:
                    seen[name].append(str(exc))
            assert client.get("k1") == b"1"  # still serving
        assert seen["shardis"] == seen["redis"]
        assert seen["redis"][0] == "Errors trying to SHUTDOWN. Check logs."
        for server, client in ((oracle, clients["redis"]), (ours, clients["shardis"])):
            with pytest.raises(redis.ConnectionError):
                client.execute_command("SHUTDOWN", "FORCE")
            assert stopped(server) == 0
    finally:
        oracle.stop()
        ours.stop()


def test_debug_reload_as_redis(tmp_path):
    """DEBUG is refused unless enable-debug-command allows it (Redis 7.0's text); DEBUG
    RELOAD saves, empties and loads every worker's dump.rdb; NOSAVE loads the file as is."""
    oracle = start_redis()
    ours = start_shardis(2, "--save", "")
    try:
        texts = []
        for server in (oracle, ours):
            with pytest.raises(redis.ResponseError) as refused:
                redis.Redis(port=server.port).execute_command("DEBUG", "RELOAD")
            texts.append(str(refused.value))
        assert texts[0] == texts[1]
        assert "enable-debug-command" in texts[0]
    finally:
        oracle.stop()
        ours.stop()
    oracle = start_redis("--enable-debug-command", "yes")
    ours = start_on(str(tmp_path), "--save", "", "--enable-debug-command", "yes")
    try:
        seen: dict[str, list] = {}
        for name, server in (("redis", oracle), ("shardis", ours)):
            client = redis.Redis(port=server.port)
            fill(client)
            expected = snapshot(client)
            out = seen[name] = []
            out.append(client.execute_command("DEBUG", "RELOAD"))
            out.append(snapshot(client) == expected)
            client.set("s1", "changed")
            client.delete("list")
            out.append(client.execute_command("DEBUG", "RELOAD", "NOSAVE"))
            out.append(snapshot(client) == expected)  # back to the file's content
            for args in (["DEBUG", "RELOAD", "BOGUS"], ["DEBUG", "NOSUCH"], ["DEBUG"]):
                try:
                    out.append(client.execute_command(*args))
                except redis.ResponseError as exc:
                    out.append(str(exc))
        assert seen["shardis"] == seen["redis"]
        assert seen["redis"][:4] == [b"OK", True, b"OK", True]
        check_rdb(dump_path(ours, 0))
    finally:
        oracle.stop()
        ours.stop()
