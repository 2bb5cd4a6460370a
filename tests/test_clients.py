"""Real client libraries against a real shardis: redis-py sync (RESP3 by default in redis-py 8,
and RESP2), redis.asyncio, for every command family of the core."""

import asyncio

import pytest
import redis
import redis.asyncio


def exercise(client: redis.Redis) -> None:
    """One pass over strings, keys and server commands; raises on any surprise."""
    assert client.ping() is True
    assert client.set("s:1", "v1") is True
    assert client.get("s:1") == b"v1"
    assert client.set("s:1", "v2", nx=True) is None
    assert client.getset("s:1", "v3") == b"v1"
    assert client.append("s:1", "x") == 3
    assert client.strlen("s:1") == 3
    assert client.getrange("s:1", 0, 1) == b"v3"
    assert client.setrange("s:1", 5, "z") == 6
    assert client.get("s:1") == b"v3x\x00\x00z"
    assert client.incr("n") == 1
    assert client.incrby("n", 10) == 11
    assert client.decrby("n", 2) == 9
    assert client.incrbyfloat("f", 1.5) == 1.5
    assert client.mset({"m:1": "a", "m:2": "b", "m:3": "c", "m:4": "d"}) is True
    assert client.mget("m:1", "m:2", "missing", "m:3", "m:4") == [b"a", b"b", None, b"c", b"d"]
    assert client.msetnx({"x:1": "1", "x:2": "2", "x:3": "3"}) is True
    assert client.msetnx({"x:3": "3", "x:4": "4"}) is False
    assert client.exists("m:1", "m:2", "m:1", "nope") == 3
    assert sorted(client.keys("m:*")) == [b"m:1", b"m:2", b"m:3", b"m:4"]
    assert client.type("m:1") == b"string"
    assert client.rename("m:1", "renamed") is True
    assert client.get("renamed") == b"a"
    assert client.copy("renamed", "copied") is True
    assert client.object("encoding", "n") == b"int"
    assert isinstance(client.memory_usage("renamed"), int)
    assert client.delete("m:2", "m:3", "m:4") == 3
    assert client.dbsize() == len(client.keys("*"))
    scanned = set(client.scan_iter(count=3))
    assert scanned == set(client.keys("*"))
    assert client.randomkey() in scanned
    assert client.echo("hi") == b"hi"
    assert isinstance(client.time()[0], int)
    info = client.info()
    assert info["redis_version"] == "7.0.15"
    assert client.client_setname("tester") is True
    assert client.client_getname() in ("tester", b"tester")
    assert isinstance(client.client_id(), int)
    assert client.lcs("s:1", "renamed") in (b"", "")


@pytest.mark.parametrize("protocol", [None, 2, 3], ids=["default", "resp2", "resp3"])
def test_redis_py_sync(shardis_clean, protocol):
    kwargs = {} if protocol is None else {"protocol": protocol}
    client = redis.Redis(port=shardis_clean.port, **kwargs)
    try:
        exercise(client)
    finally:
        client.close()


def test_default_client_negotiates_resp3(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    try:
        hello = client.execute_command("HELLO", "3")
        assert hello[b"proto"] == 3 if b"proto" in hello else hello["proto"] == 3
    finally:
        client.close()


def test_redis_py_asyncio(shardis_clean):
    async def run() -> None:
        client = redis.asyncio.Redis(port=shardis_clean.port)
        try:
            assert await client.ping() is True
            await client.mset({f"a:{i}": i for i in range(50)})
            values = await client.mget([f"a:{i}" for i in range(50)])
            assert values == [str(i).encode() for i in range(50)]
            results = await asyncio.gather(*(client.incr("counter") for _ in range(50)))
            assert sorted(results) == list(range(1, 51))
            assert await client.delete(*[f"a:{i}" for i in range(50)]) == 50
            assert await client.dbsize() == 1
        finally:
            await client.aclose()

    asyncio.run(run())


def test_pipeline_and_transactions_are_not_needed_for_plain_pipelines(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    pipe = client.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"p:{i}", i)
        pipe.get(f"p:{i}")
    results = pipe.execute()
    assert results[1::2] == [str(i).encode() for i in range(100)]
    client.close()
