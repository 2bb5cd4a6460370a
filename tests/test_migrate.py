"""MIGRATE between shardis and real Redis 7.0, both ways: keys on several workers, TTLs, COPY,
REPLACE, KEYS, AUTH, and Redis's replies and errors (compared with Redis's own MIGRATE)."""

from __future__ import annotations

import pytest
import redis

from tests.differential import check, parametrize, script
from tests.servers import start_redis

SCRIPTS = [
    script(
        "migrate_argument_errors",
        ["SET", "a", "1"],
        ["MIGRATE", "127.0.0.1", "1", "missing", "0", "100"],
        ["MIGRATE", "127.0.0.1", "1", "a", "0", "x"],
        ["MIGRATE", "127.0.0.1", "1", "a", "x", "100"],
        ["MIGRATE", "127.0.0.1", "1", "a", "0", "100", "bogus"],
        ["MIGRATE", "127.0.0.1", "1", "a", "0", "100", "AUTH"],
        ["MIGRATE", "127.0.0.1", "1", "a", "0", "100", "AUTH2", "user"],
        ["MIGRATE", "127.0.0.1", "1", "a", "0", "100", "KEYS", "a"],
        ["MIGRATE", "127.0.0.1", "1", "", "0", "100", "KEYS", "missing1", "missing2"],
        ["MIGRATE", "127.0.0.1", "1", "a", "0", "100"],
        ["MIGRATE", "127.0.0.1", "1"],
        ["GET", "a"],
    ),
]


@parametrize(SCRIPTS)
def test_migrate_replies_as_redis(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)


@pytest.fixture
def target():
    server = start_redis()
    yield server
    server.stop()


def test_migrate_from_shardis_to_redis(shardis, target):
    source = redis.Redis(port=shardis.port)
    sink = redis.Redis(port=target.port)
    source.flushall()
    source.mset({"a": "1", "h": "2", "c": "3"})  # three workers
    source.expire("a", 1000)
    source.rpush("list", "x", "y")
    assert source.migrate("127.0.0.1", target.port, "a", 0, 1000) == b"OK"
    assert sink.get("a") == b"1" and 990 < sink.ttl("a") <= 1000
    assert not source.exists("a")
    assert source.execute_command("MIGRATE", "127.0.0.1", target.port, "", 3, 1000,
                                  "KEYS", "h", "c", "list", "missing") == b"OK"
    sink3 = redis.Redis(port=target.port, db=3)
    assert sink3.mget("h", "c") == [b"2", b"3"] and sink3.lrange("list", 0, -1) == [b"x", b"y"]
    assert source.exists("h", "c", "list") == 0
    assert source.migrate("127.0.0.1", target.port, "nothing", 0, 1000) == b"NOKEY"
    source.set("a", "again")
    with pytest.raises(redis.ResponseError, match="^Target instance replied with error: "
                                                  "BUSYKEY Target key name already exists"):
        source.migrate("127.0.0.1", target.port, "a", 0, 1000)
    assert source.get("a") == b"again"  # refused by the target: kept here
    assert source.migrate("127.0.0.1", target.port, "a", 0, 1000, copy=True,
                          replace=True) == b"OK"
    assert source.get("a") == b"again" and sink.get("a") == b"again"
    with pytest.raises(redis.ResponseError, match="AUTH"):
        source.migrate("127.0.0.1", target.port, "a", 0, 1000, auth="wrong")
    with pytest.raises(redis.ResponseError, match="IOERR error or timeout writing"):
        source.migrate("127.0.0.1", 1, "a", 0, 200)


def test_migrate_from_redis_to_shardis_in_another_database(shardis, target):
    sink = redis.Redis(port=shardis.port, db=5)
    sink.flushall()
    source = redis.Redis(port=target.port)
    source.hset("h", mapping={"f": "v"})
    source.set("s", "v", px=100_000)
    assert source.execute_command("MIGRATE", "127.0.0.1", shardis.port, "", 5, 1000,
                                  "KEYS", "h", "s") == b"OK"
    assert sink.hgetall("h") == {b"f": b"v"}
    assert 90_000 < sink.pttl("s") <= 100_000
    assert redis.Redis(port=shardis.port).exists("h", "s") == 0


@pytest.mark.parametrize("answer, expected", [
    (b"", "IOERR error or timeout reading to target instance"),            # closes at once
    (b"+OK\r\n", "IOERR error or timeout reading to target instance"),     # stops half-way
    (b"x" * 200_000, "IOERR error or timeout reading to target instance"),  # a line, no end
    (b"+OK\r\n-NOPE " + b"y" * 5000 + b"\r\n",
     "Target instance replied with error: NOPE"),                        # an oversized error
    (None, "IOERR error or timeout reading to target instance"),          # never answers
])
def test_a_hostile_target_gets_an_error_and_keeps_the_key(shardis, answer, expected):
    """Whatever a target answers (nothing, garbage, too much, too late), MIGRATE ends with
    Redis's error, the key stays here and the router keeps serving."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        if answer is not None:
            conn.sendall(answer)
            conn.close()
        else:
            threading.Event().wait(2)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    client = redis.Redis(port=shardis.port)
    client.set("hostile", "kept")
    with pytest.raises(redis.ResponseError, match=expected[:40]):
        client.migrate("127.0.0.1", listener.getsockname()[1], "hostile", 0, 500)
    listener.close()
    assert client.get("hostile") == b"kept"
    assert client.ping()
