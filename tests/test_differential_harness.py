"""Self-tests of the differential harness: it must catch real differences and tolerate only
the ones its comparison modes allow.  Runs against two real redis-servers (not shardis), plus
pure unit tests of the RESP client.
"""

from __future__ import annotations

import pytest

from tests.differential import (
    DifferentialMismatch,
    cmd,
    command_info_fields,
    compare,
    hello_without_id,
    raw,
    run_script,
    scan_all,
    script,
    shape,
    sorted_,
    target_supports,
    type_only,
)
from tests.resp_client import (
    Attributed,
    Push,
    RawClient,
    RespError,
    Verbatim,
    _Incomplete,
    decode,
    encode_command,
    reply_end,
    split_replies,
)
from tests.servers import start_redis


@pytest.fixture(scope="module")
def other_redis():
    server = start_redis()
    yield server
    server.stop()


def run(oracle, other, the_script, protocol=2, **kwargs):
    run_script(the_script, oracle.port, other.port, protocol, target_name="other", **kwargs)


# -- the harness against real servers ----------------------------------------------------------
SIMPLE = script(
    "simple",
    ["SET", "a", "1"],
    ["INCR", "a"],
    ["MGET", "a", "x"],
    ["DBSIZE"],
    ["GET", "x"],
)


@pytest.mark.parametrize("protocol", [2, 3])
def test_identical_servers_pass(oracle, other_redis, protocol):
    run(oracle, other_redis, SIMPLE, protocol)


@pytest.mark.parametrize("protocol", [2, 3])
def test_preset_key_mismatch_is_reported(oracle, other_redis, protocol):
    with pytest.raises(DifferentialMismatch) as info:
        run(oracle, other_redis, SIMPLE, protocol, target_setup=[["SET", "x", "planted"]])
    message = str(info.value)
    assert "script 'simple'" in message
    assert f"RESP{protocol}" in message
    assert "step 3 of 5" in message  # MGET a x is the first step that sees x
    assert "command: MGET a x" in message
    null = "$-1" if protocol == 2 else "_"
    assert null in message and "planted" in message
    # the preceding commands and what they returned
    assert "1. SET a 1" in message and "2. INCR a" in message and ":2" in message


def test_flush_before_each_script(oracle, other_redis):
    with RawClient(other_redis.port) as client:
        client.call("SET", "leftover", "1")
    run(oracle, other_redis, script("flushed", ["DBSIZE"], ["GET", "leftover"]))


def test_sorted_mode_ignores_order_only(oracle, other_redis):
    keys = script(
        "keys",
        ["MSET", *[f"key:{n}" for n in range(50) for _ in (0, 1)]],
        sorted_("KEYS", "*"),
    )
    run(oracle, other_redis, keys)
    with pytest.raises(DifferentialMismatch, match="mode sorted"):
        run(oracle, other_redis, keys, target_setup=[["SET", "key:extra", "1"]])


def test_exact_mode_rejects_reordered_keys():
    a = b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n"
    b = b"*2\r\n$1\r\ny\r\n$1\r\nx\r\n"
    assert compare("exact", a, b)[0] is False
    assert compare("sorted", a, b)[0] is True


def test_type_only_mode(oracle, other_redis):
    the_script = script("random", ["SET", "a", "1"], type_only("RANDOMKEY"), type_only("TIME"))
    run(oracle, other_redis, the_script)
    empty = script("random-empty", type_only("RANDOMKEY"))
    with pytest.raises(DifferentialMismatch, match="mode type_only"):
        run(oracle, other_redis, empty, target_setup=[["SET", "x", "1"]])


def test_scan_all_compares_key_sets(oracle, other_redis):
    the_script = script(
        "scan",
        ["MSET", *[x for n in range(200) for x in (f"k{n}", str(n))]],
        scan_all(count=7),
        scan_all(match="k1*"),
    )
    run(oracle, other_redis, the_script)
    with pytest.raises(DifferentialMismatch, match="SCAN key sets differ"):
        run(oracle, other_redis, the_script, target_setup=[["SET", "k1-extra", "1"]])


def test_expected_close_is_checked(oracle, other_redis):
    run(oracle, other_redis, script("closes", raw(b"*1\r\n$x\r\n", closes=True), ["PING"]))
    with pytest.raises(DifferentialMismatch, match="should be closed"):
        run(
            oracle,
            other_redis,
            script("stays-open", raw(b"PING\r\n", closes=True)),
            timeout=0.5,
        )


def test_quit_reconnects_and_keeps_going(oracle, other_redis):
    run(
        oracle,
        other_redis,
        script("quit", ["SET", "k", "v"], cmd("QUIT", closes=True), ["GET", "k"]),
        protocol=3,
    )


def test_script_error_when_redis_sends_fewer_replies(oracle, other_redis):
    with pytest.raises(DifferentialMismatch, match="script error"):
        run(oracle, other_redis, script("bad", raw(b"PING\r\n", replies=2)), timeout=0.3)


def test_connection_ids_never_line_up(oracle, other_redis):
    # An exact comparison of a connection id must fail every time, not only when the two
    # servers happen to have served a different number of connections.
    with pytest.raises(DifferentialMismatch):
        run(oracle, other_redis, script("id", ["CLIENT", "ID"]))
    run(oracle, other_redis, script("id-shape", type_only("CLIENT", "ID")))


def test_target_supports(oracle):
    assert target_supports(oracle.port, "GET")
    assert target_supports(oracle.port, "RPUSH")
    assert not target_supports(oracle.port, "NOSUCHCOMMAND")


def test_normalizers():
    hello2 = (
        b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n"
        b":2\r\n$2\r\nid\r\n:%d\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n"
        b"$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    )
    assert hello_without_id(hello2 % 5) == hello_without_id(hello2 % 1234)
    assert hello_without_id(hello2 % 5) != hello_without_id(
        (hello2 % 5).replace(b"7.0.15", b"7.0.16")
    )
    info_a = (
        b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
        b"*3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*0\r\n*0\r\n"
    )
    info_b = info_a.replace(b"+readonly\r\n+fast", b"+fast\r\n+readonly").replace(
        b"*0\r\n*0\r\n*0\r\n", b"*1\r\n$3\r\ntip\r\n*0\r\n*0\r\n"
    )
    assert command_info_fields(info_a) == command_info_fields(info_b)
    assert command_info_fields(info_a) != command_info_fields(info_a.replace(b":2", b":-2"))


def test_shape():
    assert shape(b"$-1\r\n") != shape(b"$1\r\nx\r\n")
    assert shape(b":1\r\n") == shape(b":12345\r\n")
    assert shape(b"*2\r\n$1\r\n1\r\n$2\r\n22\r\n") == shape(b"*2\r\n$3\r\n333\r\n$1\r\n4\r\n")
    assert shape(b"*2\r\n$1\r\n1\r\n$2\r\n22\r\n") != shape(b"*1\r\n$1\r\n1\r\n")
    assert shape(b"-ERR a\r\n") != shape(b"-ERR b\r\n")
    assert shape(b"_\r\n") != shape(b"$-1\r\n")


# -- RESP client units ---------------------------------------------------------------------
COMPLETE_REPLIES = [
    b"+OK\r\n",
    b"-ERR x\r\n",
    b":-12\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"$4\r\na\r\nb\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
    b"_\r\n",
    b",3.14\r\n",
    b",inf\r\n",
    b"#t\r\n",
    b"!5\r\nERR x\r\n",
    b"=8\r\ntxt:abcd\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"%2\r\n$1\r\na\r\n:1\r\n+b\r\n*1\r\n_\r\n",
    b"~2\r\n+a\r\n+b\r\n",
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n",
    b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
    b"$?\r\n;4\r\nHell\r\n;2\r\no!\r\n;0\r\n",
    b"*?\r\n:1\r\n:2\r\n.\r\n",
    b"%?\r\n+a\r\n:1\r\n.\r\n",
]


@pytest.mark.parametrize("reply", COMPLETE_REPLIES)
def test_reply_end_finds_exact_boundaries(reply):
    assert reply_end(reply + b"+NEXT\r\n") == len(reply)
    for cut in range(len(reply)):
        with pytest.raises(_Incomplete):
            reply_end(reply[:cut])


def test_split_replies():
    assert split_replies(b"".join(COMPLETE_REPLIES)) == COMPLETE_REPLIES


def test_decode_values():
    assert decode(b"+OK\r\n") == "OK"
    assert decode(b"-ERR x\r\n") == RespError("ERR x")
    assert isinstance(decode(b"!5\r\nERR x\r\n"), RespError)
    assert decode(b"$-1\r\n") is None and decode(b"_\r\n") is None and decode(b"*-1\r\n") is None
    assert decode(b"$4\r\na\r\nb\r\n") == b"a\r\nb"
    assert decode(b",3.5\r\n") == 3.5
    assert decode(b"#f\r\n") is False
    assert decode(b"(12345678901234567890\r\n") == 12345678901234567890
    verbatim = decode(b"=8\r\ntxt:abcd\r\n")
    assert isinstance(verbatim, Verbatim) and verbatim == b"abcd" and verbatim.fmt == b"txt"
    assert decode(b"%2\r\n$1\r\na\r\n:1\r\n+b\r\n*1\r\n_\r\n") == {b"a": 1, "b": [None]}
    assert decode(b"~2\r\n+a\r\n+b\r\n") == {"a", "b"}
    assert isinstance(decode(b">1\r\n+x\r\n"), Push)
    assert decode(b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n") == Attributed({"ttl": 3}, b"v")
    assert decode(b"$?\r\n;4\r\nHell\r\n;2\r\no!\r\n;0\r\n") == b"Hello!"
    assert decode(b"*?\r\n:1\r\n:2\r\n.\r\n") == [1, 2]


def test_encode_command():
    assert encode_command("SET", b"k\r\n", 5) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n5\r\n"


def test_raw_client_reads_exact_bytes(oracle):
    with RawClient(oracle.port) as client:
        client.call("SET", "big", b"x" * 300_000)
        reply = client.call("GET", "big")
        assert reply == b"$300000\r\n" + b"x" * 300_000 + b"\r\n"
        assert client.pipeline([["PING"], ["ECHO", "a"], ["DEL", "big"]]) == [
            b"+PONG\r\n",
            b"$1\r\na\r\n",
            b":1\r\n",
        ]
        client.hello3()
        assert client.call("GET", "missing") == b"_\r\n"
        assert client.call("QUIT") == b"+OK\r\n"
        assert client.is_closed()
