"""Pub/sub through the workers: exact replies (compared with real Redis), subscribed-mode rules,
ordering under load, patterns, sharded channels, slow subscribers."""

import threading
import time

import pytest
import redis

from tests.resp_client import RawClient


def _exchange(port: int, steps: list[tuple[str, bytes | None]], resp3: bool) -> list[bytes]:
    """Run (client, request) steps over two raw connections; collect every reply in order."""
    subscriber, publisher = RawClient(port), RawClient(port)
    if resp3:
        subscriber.hello3()
        publisher.hello3()
    clients = {"sub": subscriber, "pub": publisher}
    out = []
    try:
        for who, request in steps:
            client = clients[who]
            if request is not None:
                client.send_raw(request)
            out.append(client.read_reply())
    finally:
        subscriber.close()
        publisher.close()
    return out


STEPS = [
    ("sub", b"SUBSCRIBE news sport\r\n"), ("sub", None),
    ("sub", b"PSUBSCRIBE n*\r\n"),
    ("pub", b"PUBLISH news hello\r\n"),
    ("sub", None), ("sub", None),  # message + pmessage
    ("pub", b"PUBLISH other x\r\n"),
    ("pub", b"PUBSUB NUMSUB news sport none\r\n"),
    ("pub", b"PUBSUB NUMPAT\r\n"),
    ("sub", b"PING\r\n"),
    ("sub", b"PING hi\r\n"),
    ("sub", b"UNSUBSCRIBE sport\r\n"),
    ("sub", b"PUNSUBSCRIBE\r\n"),
    ("sub", b"UNSUBSCRIBE news\r\n"),
    ("sub", b"UNSUBSCRIBE\r\n"),
    ("sub", b"PUNSUBSCRIBE\r\n"),
    ("sub", b"SSUBSCRIBE {s}a {s}b\r\n"), ("sub", None),
    ("pub", b"SPUBLISH {s}a shard-msg\r\n"),
    ("sub", None),
    ("pub", b"PUBSUB SHARDNUMSUB {s}a {s}c\r\n"),
    ("sub", b"SUNSUBSCRIBE {s}a\r\n"),
    ("sub", b"SSUBSCRIBE x y\r\n"),
]


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_replies_match_redis(oracle_clean, shardis_clean, resp3):
    expected = _exchange(oracle_clean.port, STEPS, resp3)
    assert _exchange(shardis_clean.port, STEPS, resp3) == expected


def test_subscribed_mode_rules_resp2(shardis_clean):
    client = RawClient(shardis_clean.port)
    client.call("SUBSCRIBE", "c")
    assert client.call("GET", "x") == (
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
        b"RESET are allowed in this context\r\n")
    assert client.call("NOSUCH").startswith(b"-ERR unknown command")
    assert client.call("RESET") == b"+RESET\r\n"
    assert client.call("GET", "x") == b"$-1\r\n"
    client.close()


def test_resp3_clients_run_commands_while_subscribed(shardis_clean):
    client = RawClient(shardis_clean.port)
    client.hello3()
    client.call("SUBSCRIBE", "c")
    assert client.call("SET", "k", "v") == b"+OK\r\n"
    client.close()


def test_redis_py_pubsub_helper(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    pubsub = client.pubsub()
    pubsub.subscribe("events")
    pubsub.psubscribe("ev*")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
    assert client.publish("events", "one") == 2
    received = [pubsub.get_message(timeout=2) for _ in range(2)]
    assert {m["type"] for m in received} == {"message", "pmessage"}
    assert all(m["data"] == b"one" for m in received)
    pubsub.close()


def test_many_messages_to_many_subscribers_in_order(shardis_clean):
    port = shardis_clean.port
    total = 100_000
    subscribers = 10
    ready = threading.Barrier(subscribers + 1)
    results: list[list[bytes]] = [[] for _ in range(subscribers)]

    def listen(index: int) -> None:
        client = redis.Redis(port=port, socket_timeout=30)
        pubsub = client.pubsub()
        if index % 2:
            pubsub.psubscribe("load*")
        else:
            pubsub.subscribe("load")
        pubsub.get_message(timeout=5)
        ready.wait()
        while len(results[index]) < total:
            message = pubsub.get_message(timeout=10)
            if message is None:
                break
            results[index].append(message["data"])
        pubsub.close()

    threads = [threading.Thread(target=listen, args=(i,)) for i in range(subscribers)]
    for thread in threads:
        thread.start()
    ready.wait()
    publisher = redis.Redis(port=port)
    pipe = publisher.pipeline(transaction=False)
    counts = []
    for n in range(total):
        pipe.publish("load", str(n))
        if n % 500 == 499:
            counts += pipe.execute()
    for thread in threads:
        thread.join(timeout=120)
    assert set(counts) == {subscribers}
    expected = [str(n).encode() for n in range(total)]
    for received in results:
        assert received == expected


def test_a_subscriber_that_never_reads_is_disconnected_not_waited_for(shardis_clean):
    port = shardis_clean.port
    slow = RawClient(port)
    slow.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    slow.call("SUBSCRIBE", "flood")
    publisher = redis.Redis(port=port)
    payload = b"x" * 100_000
    started = time.monotonic()
    counts = []
    for _ in range(40):  # up to 200 MB for a reader that reads nothing
        pipe = publisher.pipeline(transaction=False)
        for _ in range(50):
            pipe.publish("flood", payload)
        counts += pipe.execute()
        if counts[-1] == 0:
            break
        time.sleep(0.05)  # let the router notice the dropped connection
    assert time.monotonic() - started < 60
    assert counts[0] == 1 and counts[-1] == 0  # dropped once over the limit
    assert len(counts) <= 20 * 50  # well before the publisher had to send 100 MB
    assert publisher.ping()
    slow.close()


def test_publish_load_with_redis_benchmark(shardis_clean):
    import shutil
    import subprocess

    if shutil.which("redis-benchmark") is None:
        pytest.skip("redis-tools is not installed")
    listener = RawClient(shardis_clean.port)
    listener.call("SUBSCRIBE", "bench")
    result = subprocess.run(
        ["redis-benchmark", "-p", str(shardis_clean.port), "-n", "20000", "-c", "20", "-P", "16",
         "-q", "--csv", "PUBLISH", "bench", "message"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()
    listener.close()
