"""Databases end to end: blocked clients and keyspace notifications per database, SWAPDB's
wake-ups, ``--databases``, and persistence of every database (AOF after kill -9, RDB files
that redis-check-rdb and real Redis accept).  Replies are compared with Redis in
``tests/test_diff_databases.py``."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
import redis

from shardis import protocol
from tests.servers import start_redis, start_shardis
from tests.test_persistence_aof import kill9, tag_on, wait_restarted


def blpop_in_thread(port: int, db: int, *keys: str, timeout: float = 5) -> dict:
    """BLPOP in database ``db`` from a thread; its outcome lands in the returned dict."""
    outcome: dict = {}

    def run() -> None:
        outcome["reply"] = redis.Redis(port=port, db=db).blpop(list(keys), timeout)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    outcome["thread"] = thread
    time.sleep(0.3)
    return outcome


@pytest.mark.parametrize("keys", [("q",), ("{a}q", "other-worker-key")])
def test_blocked_clients_wait_in_their_database(shardis, keys):
    client = redis.Redis(port=shardis.port)
    client.flushall()
    waiting = blpop_in_thread(shardis.port, 2, *keys)
    client.rpush(keys[0], "in-db-0")
    redis.Redis(port=shardis.port, db=1).rpush(keys[0], "in-db-1")
    time.sleep(0.3)
    assert "reply" not in waiting  # not woken by another database's push
    redis.Redis(port=shardis.port, db=2).rpush(keys[-1], "in-db-2")
    waiting["thread"].join(5)
    assert waiting["reply"] == (keys[-1].encode(), b"in-db-2")
    assert client.lrange(keys[0], 0, -1) == [b"in-db-0"]


@pytest.mark.parametrize("make", [lambda: start_shardis(3), start_redis],
                         ids=["shardis", "redis"])
def test_swapdb_serves_clients_blocked_in_the_swapped_database(make):
    server = make()
    try:
        redis.Redis(port=server.port, db=1).rpush("q", "from-db-1")
        waiting = blpop_in_thread(server.port, 0, "q")
        assert redis.Redis(port=server.port).swapdb(0, 1)
        waiting["thread"].join(5)
        assert waiting["reply"] == (b"q", b"from-db-1")
    finally:
        server.stop()


def test_keyspace_notifications_name_their_database(shardis):
    client = redis.Redis(port=shardis.port)
    client.config_set("notify-keyspace-events", "KEA")
    try:
        pubsub = client.pubsub()
        pubsub.psubscribe("__key*@*")
        pubsub.get_message(timeout=1)
        db3 = redis.Redis(port=shardis.port, db=3)
        db3.set("k", "v")
        db3.move("k", 5)
        seen = []
        deadline = time.monotonic() + 3
        while len(seen) < 6 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                seen.append((message["channel"], message["data"]))
        assert seen == [
            (b"__keyspace@3__:k", b"set"), (b"__keyevent@3__:set", b"k"),
            (b"__keyspace@3__:k", b"move_from"), (b"__keyevent@3__:move_from", b"k"),
            (b"__keyspace@5__:k", b"move_to"), (b"__keyevent@5__:move_to", b"k"),
        ]
        pubsub.close()
    finally:
        client.config_set("notify-keyspace-events", "")


def test_databases_directive():
    server = start_shardis(2, "--databases", "4")
    try:
        client = redis.Redis(port=server.port, db=3)
        client.set("k", "v")
        assert client.config_get("databases") == {"databases": "4"}
        with pytest.raises(redis.ResponseError, match="DB index is out of range"):
            client.execute_command("SELECT", "4")
        with pytest.raises(redis.ResponseError, match="DB index is out of range"):
            client.move("k", 4)
        with pytest.raises(redis.ResponseError, match="can't set immutable config"):
            client.config_set("databases", "8")
    finally:
        server.stop()


def fill(port: int) -> dict:
    """Keys in databases 0, 1 and 9, on every worker; what a reader should find."""
    expected = {}
    for db in (0, 1, 9):
        client = redis.Redis(port=port, db=db)
        for name in ("a", "h", "c", "{t1}x", "{t7}y"):
            client.set(name, f"{name}@{db}")
            expected[(db, name)] = f"{name}@{db}".encode()
        client.rpush("list", db)
        expected[(db, "list")] = [str(db).encode()]
    redis.Redis(port=port, db=9).expire("a", 1000)
    return expected


def read_back(port: int, expected: dict) -> dict:
    found = {}
    for db, name in expected:
        client = redis.Redis(port=port, db=db)
        found[(db, name)] = client.lrange(name, 0, -1) if name == "list" else client.get(name)
    return found


def test_every_database_survives_a_worker_crash_with_the_aof(tmp_path):
    server = start_shardis(2, "--appendonly", "yes", "--appendfsync", "always")
    try:
        expected = fill(server.port)
        client = redis.Redis(port=server.port)
        for index in (0, 1):
            old = kill9(server, index)
            wait_restarted(server, index, old, client, tag_on(index, 2))
        assert read_back(server.port, expected) == expected
        assert 0 < redis.Redis(port=server.port, db=9).ttl("a") <= 1000
        check = subprocess.run(
            ["redis-check-aof", os.path.join(server.workdir, "worker-0", "appendonlydir",
                                             "appendonly.aof.manifest")],
            capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    finally:
        server.stop()


def test_every_database_in_the_rdb_and_real_redis_reads_it(tmp_path):
    directory = str(tmp_path)
    server = start_shardis(1, "--dir", directory)
    try:
        expected = fill(server.port)
        redis.Redis(port=server.port).save()
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=20)
    rdb_file = os.path.join(directory, "worker-0", "dump.rdb")
    check = subprocess.run(["redis-check-rdb", rdb_file], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    again = start_shardis(1, "--dir", directory)
    try:
        assert read_back(again.port, expected) == expected
        info = redis.Redis(port=again.port).info("keyspace")
        assert set(info) == {"db0", "db1", "db9"}
    finally:
        again.stop()
    real = start_redis(rdb=rdb_file)
    try:
        assert read_back(real.port, expected) == expected
    finally:
        real.stop()


def test_command_codes_carry_the_database():
    commands = [(protocol.command_code(3, 0), [b"GET", b"k"]),
                (protocol.command_code(2, 15), [b"SET", b"k", b"v"]),
                (protocol.command_code(3, protocol.MAX_DATABASES - 1), [b"PING"]),
                (protocol.command_code(2, 3, step=True), [b"SADD", b"s", b"m"])]
    for codec in (protocol.STRICT, protocol.MARSHAL):
        _, decoded = codec.decode_batch(codec.encode_batch(7, commands))
        assert [(code, list(args)) for code, args in decoded] == commands
    assert [protocol.decode_code(code) for code, _ in commands] == [
        (3, 0, False), (2, 15, False), (3, protocol.MAX_DATABASES - 1, False), (2, 3, True)]


def test_a_batch_naming_a_database_the_worker_lacks_gets_an_error_for_that_command():
    """A peer's code past ``databases`` (the strict codec carries up to 16383) fails alone:
    the commands around it run in their own databases."""
    from shardis.worker.shard import Shard

    shard = Shard(0, databases=4)
    replies = shard.execute_batch([
        (protocol.command_code(2, 3), [b"SET", b"k", b"three"]),
        (protocol.command_code(2, 9), [b"SET", b"k", b"nine"]),
        (protocol.command_code(2, protocol.MAX_DATABASES - 1), [b"GET", b"k"]),
        (protocol.command_code(2, 3), [b"GET", b"k"]),
        (protocol.command_code(3, 0), [b"GET", b"k"]),
    ])
    assert replies == [b"+OK\r\n", b"-ERR DB index is out of range\r\n",
                       b"-ERR DB index is out of range\r\n", b"$5\r\nthree\r\n", b"_\r\n"]
    assert sorted(shard.dbs) == [0, 3]
