"""Many clients and long pipelines: exact totals, replies in order, nobody stalls."""

import socket
import threading

import redis

from tests.resp_client import RawClient


def test_fifty_clients_increment_same_and_different_keys(shardis_clean):
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            client = redis.Redis(port=shardis_clean.port, protocol=2)
            pipe = client.pipeline(transaction=False)
            for _ in range(1000):
                pipe.incr("shared")
                pipe.incr(f"own:{index}")
            pipe.execute()
            client.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    client = redis.Redis(port=shardis_clean.port)
    assert client.get("shared") == b"50000"
    assert client.mget([f"own:{i}" for i in range(50)]) == [b"1000"] * 50


def test_unpipelined_clients_in_parallel(shardis_clean):
    def work() -> None:
        client = redis.Redis(port=shardis_clean.port, protocol=2)
        for _ in range(200):
            client.incr("plain")
        client.close()

    threads = [threading.Thread(target=work) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert redis.Redis(port=shardis_clean.port).get("plain") == b"4000"


def test_ten_thousand_pipelined_commands_answer_in_order(shardis_clean):
    sock = socket.create_connection(("127.0.0.1", shardis_clean.port))
    request = b"".join(
        b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(k), k)
        for k in (b"k%d" % i for i in range(5000))
    ) + b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k)
                 for k in (b"k%d" % i for i in range(5000)))
    sock.sendall(request)
    expected = b"+OK\r\n" * 5000 + b"".join(
        b"$%d\r\n%s\r\n" % (len(k), k) for k in (b"k%d" % i for i in range(5000))
    )
    received = b""
    sock.settimeout(30)
    while len(received) < len(expected):
        chunk = sock.recv(1 << 20)
        assert chunk, "connection closed early"
        received += chunk
    assert received == expected
    sock.close()


def test_a_client_that_never_reads_does_not_stall_others(shardis_clean):
    hog = socket.create_connection(("127.0.0.1", shardis_clean.port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = b"x" * 100_000
    hog.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n%s\r\n" % (len(big), big))
    hog.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 300)  # 30 MB of replies it won't read
    other = RawClient(shardis_clean.port)
    for i in range(100):
        assert other.call("SET", f"o{i}", "v") == b"+OK\r\n"
    other.close()
    hog.close()
