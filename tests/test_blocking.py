"""Blocking pops (BLPOP, BRPOP): wake-up order, timeouts, keys on several workers, clients that
go away while blocked, and a producer/consumer run that loses and duplicates nothing."""

import threading
import time

import redis

from tests.resp_client import RawClient
from tests.test_atomicity import keys_on_distinct_workers


def test_blpop_returns_at_once_when_data_is_there(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.rpush("q", "a", "b")
    assert client.blpop(["empty", "q"], timeout=1) == (b"q", b"a")
    assert client.brpop(["q"], timeout=1) == (b"q", b"b")
    assert client.exists("q") == 0


def test_blpop_times_out_with_a_null_array(shardis_clean):
    raw = RawClient(shardis_clean.port)
    started = time.monotonic()
    assert raw.call("BLPOP", "nothing", "0.2") == b"*-1\r\n"
    assert 0.15 <= time.monotonic() - started < 1.5
    raw.hello3()
    assert raw.call("BLPOP", "nothing", "0.1") == b"_\r\n"
    raw.close()


def test_timeout_errors(shardis_clean):
    raw = RawClient(shardis_clean.port)
    assert raw.call("BLPOP", "k", "abc") == b"-ERR timeout is not a float or out of range\r\n"
    assert raw.call("BLPOP", "k", "-1") == b"-ERR timeout is negative\r\n"
    assert raw.call("BLPOP", "k") == b"-ERR wrong number of arguments for 'blpop' command\r\n"
    raw.close()


def _blpop_in_thread(port: int, keys: list[str], timeout: float, out: list) -> threading.Thread:
    def run() -> None:
        out.append(redis.Redis(port=port, socket_timeout=10).blpop(keys, timeout=timeout))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_blocked(client: redis.Redis, count: int) -> None:
    deadline = time.monotonic() + 5
    while client.info("clients")["blocked_clients"] < count:
        assert time.monotonic() < deadline, "clients did not block"
        time.sleep(0.01)


def test_a_push_wakes_blocked_clients_in_fifo_order(shardis_clean):
    port = shardis_clean.port
    client = redis.Redis(port=port)
    results: list[list] = [[] for _ in range(3)]
    threads = []
    for i in range(3):
        threads.append(_blpop_in_thread(port, ["fifo"], 5, results[i]))
        wait_blocked(client, i + 1)
    client.rpush("fifo", "1", "2", "3")
    for thread in threads:
        thread.join(timeout=5)
    assert [r[0] for r in results] == [(b"fifo", b"1"), (b"fifo", b"2"), (b"fifo", b"3")]
    assert client.info("clients")["blocked_clients"] == 0


def test_the_blocked_client_gets_the_element_before_anyone_else(shardis_clean):
    port = shardis_clean.port
    client = redis.Redis(port=port)
    result: list = []
    thread = _blpop_in_thread(port, ["first"], 5, result)
    wait_blocked(client, 1)
    pipe = client.pipeline(transaction=False)
    pipe.rpush("first", "x")
    pipe.lpop("first")  # Redis serves the blocked client before this command runs
    assert pipe.execute() == [1, None]
    thread.join(timeout=5)
    assert result == [(b"first", b"x")]


def test_blocking_on_keys_of_several_workers(shardis_clean):
    port = shardis_clean.port
    client = redis.Redis(port=port)
    a, b, c = keys_on_distinct_workers(3)
    result: list = []
    thread = _blpop_in_thread(port, [a, b, c], 5, result)
    wait_blocked(client, 1)
    client.rpush(c, "from-c")
    thread.join(timeout=5)
    assert result == [(c.encode(), b"from-c")]
    client.rpush(b, "b1")
    client.rpush(a, "a1")
    assert client.blpop([a, b, c], timeout=1) == (a.encode(), b"a1")  # argument order wins
    assert client.info("clients")["blocked_clients"] == 0


def test_a_client_that_disconnects_while_blocked_is_forgotten(shardis_clean):
    port = shardis_clean.port
    client = redis.Redis(port=port)
    raw = RawClient(port)
    raw.send("BLPOP", "gone", "0")
    wait_blocked(client, 1)
    raw.close()
    deadline = time.monotonic() + 5
    while client.info("clients")["blocked_clients"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    client.rpush("gone", "kept")
    assert client.lrange("gone", 0, -1) == [b"kept"]


def test_commands_pipelined_after_a_blocking_one_wait_for_it(shardis_clean):
    raw = RawClient(shardis_clean.port)
    raw.send("BLPOP", "later", "0.2")
    raw.send("SET", "after", "1")
    assert raw.read_reply() == b"*-1\r\n"
    assert raw.read_reply() == b"+OK\r\n"
    raw.close()


def test_producers_and_consumers_lose_and_duplicate_nothing(shardis_clean):
    port = shardis_clean.port
    queues = keys_on_distinct_workers(3)
    total = 10_000
    received: list[bytes] = []
    lock = threading.Lock()

    def consume() -> None:
        client = redis.Redis(port=port, socket_timeout=20)
        while True:
            item = client.blpop(queues, timeout=2)
            if item is None:
                return
            with lock:
                received.append(item[1])

    def produce(offset: int) -> None:
        client = redis.Redis(port=port)
        for i in range(offset, total, 5):
            client.rpush(queues[i % 3], str(i))

    consumers = [threading.Thread(target=consume) for _ in range(5)]
    producers = [threading.Thread(target=produce, args=(i,)) for i in range(5)]
    for thread in consumers + producers:
        thread.start()
    for thread in producers + consumers:
        thread.join(timeout=60)
    assert sorted(int(x) for x in received) == list(range(total))
