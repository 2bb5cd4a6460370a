"""Streams beyond the differential corpus: XREAD BLOCK (wake-up, timeout, ``$``, BLOCK 0,
RESP3, MULTI, a client leaving while blocked, keys on several workers) and stream values
through the generic key commands (TYPE, OBJECT ENCODING, RENAME and COPY across workers)."""

from __future__ import annotations

import threading
import time

import redis

from tests.resp_client import RawClient
from tests.test_atomicity import keys_on_distinct_workers
from tests.test_blocking import wait_blocked

A, B = keys_on_distinct_workers(2)


def _xread_in_thread(port: int, streams: dict, block: int, out: list,
                     protocol: int = 2) -> threading.Thread:
    def run() -> None:
        client = redis.Redis(port=port, protocol=protocol, socket_timeout=10)
        out.append(client.xread(streams, block=block))

    thread = threading.Thread(target=run)
    thread.start()
    return thread




def test_xread_block_is_woken_by_xadd_and_dollar_means_new_only(shardis_clean):
    port = shardis_clean.port
    client = redis.Redis(port=port)
    client.xadd("s", {"old": "1"}, id="1-1")
    out: list = []
    thread = _xread_in_thread(port, {"s": "$"}, 0, out)  # BLOCK 0: forever
    wait_blocked(client, 1)
    client.xadd("s", {"new": "2"}, id="2-1")
    thread.join(5)
    assert out == [[[b"s", [(b"2-1", {b"new": b"2"})]]]]
    assert client.info("clients")["blocked_clients"] == 0


def test_xread_block_on_a_missing_key_and_resp3_map(shardis_clean):
    port = shardis_clean.port
    client = redis.Redis(port=port)
    out: list = []
    thread = _xread_in_thread(port, {"later": "$"}, 5000, out, protocol=3)
    wait_blocked(client, 1)
    client.xadd("later", {"f": "v"}, id="7-7")
    thread.join(5)
    assert out == [{b"later": [[(b"7-7", {b"f": b"v"})]]}]


def test_xread_block_returns_at_once_when_data_is_there(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.xadd("s", {"a": "1"}, id="1-1")
    started = time.monotonic()
    assert client.xread({"s": "0-0"}, block=5000) == [[b"s", [(b"1-1", {b"a": b"1"})]]]
    assert time.monotonic() - started < 1


def test_xread_block_times_out_with_a_null_array(shardis_clean):
    raw = RawClient(shardis_clean.port)
    started = time.monotonic()
    assert raw.call("XREAD", "BLOCK", "200", "STREAMS", "none", "$") == b"*-1\r\n"
    assert 0.15 <= time.monotonic() - started < 1.5
    raw.hello3()
    assert raw.call("XREAD", "BLOCK", "100", "STREAMS", "none", "0") == b"_\r\n"
    raw.close()


def test_xread_block_ignores_entries_not_above_its_id(shardis_clean):
    port = shardis_clean.port
    client = redis.Redis(port=port)
    client.xadd("s", {"a": "1"}, id="5-1")
    out: list = []
    thread = _xread_in_thread(port, {"s": "10-0"}, 3000, out)
    wait_blocked(client, 1)
    client.xdel("s", "5-1")  # a change, but nothing new above 10-0: still blocked
    time.sleep(0.1)
    assert client.info("clients")["blocked_clients"] == 1
    client.xadd("s", {"b": "2"}, id="11-1")
    thread.join(5)
    assert out == [[[b"s", [(b"11-1", {b"b": b"2"})]]]]


def test_xread_block_inside_multi_does_not_wait(shardis_clean):
    raw = RawClient(shardis_clean.port)
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("XREAD", "BLOCK", "0", "STREAMS", "none", "$") == b"+QUEUED\r\n"
    assert raw.call("EXEC") == b"*1\r\n*-1\r\n"
    raw.close()


def test_client_leaving_while_blocked_is_forgotten(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    raw = RawClient(shardis_clean.port)
    raw.send("XREAD", "BLOCK", "0", "STREAMS", "gone", "$")
    wait_blocked(client, 1)
    raw.close()
    deadline = time.monotonic() + 5
    while client.info("clients")["blocked_clients"]:
        assert time.monotonic() < deadline, "the blocked XREAD was not forgotten"
        time.sleep(0.05)
    client.xadd("gone", {"f": "v"})  # nobody left to serve: the entry stays
    assert client.xlen("gone") == 1


def test_xread_over_several_workers(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.xadd(A, {"a": "1"}, id="1-1")
    client.xadd(B, {"b": "1"}, id="1-2")
    assert client.xread({B: "0", A: "0"}) == [
        [B.encode(), [(b"1-2", {b"b": b"1"})]],
        [A.encode(), [(b"1-1", {b"a": b"1"})]],
    ]
    raw = RawClient(shardis_clean.port)
    # BLOCK over several workers waits like any other (tests/test_streams_groups.py has more)
    assert raw.call("XREAD", "BLOCK", "10", "STREAMS", A, B, "$", "$") == b"*-1\r\n"
    raw.close()


def test_stream_values_through_key_commands(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.xadd(A, {"a": "1"}, id="1-1")
    client.xadd(A, {"b": "2"}, id="2-1")
    client.xdel(A, "2-1")
    assert client.type(A) == b"stream"
    assert client.object("encoding", A) == b"stream"
    assert client.memory_usage(A) > 0
    assert client.copy(A, B)  # across workers
    assert client.xrange(B) == [(b"1-1", {b"a": b"1"})]
    try:
        client.xadd(B, {"c": "3"}, id="2-1")  # the last ID (2-1) travelled with the value
    except redis.ResponseError as exc:
        assert "equal or smaller" in str(exc)
    else:
        raise AssertionError("XADD below the copied stream's last ID was accepted")
    client.delete(B)
    client.rename(A, B)
    assert client.exists(A) == 0
    assert client.xlen(B) == 1
    client.xadd(B, {"c": "3"}, id="3-1")
    assert [entry_id for entry_id, _ in client.xrange(B)] == [b"1-1", b"3-1"]
    assert client.scan(0, _type="stream", count=1000)[1] == [B.encode()]
