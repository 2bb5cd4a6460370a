"""CLIENT PAUSE/UNPAUSE, KILL, UNBLOCK and LIST across connections, over raw sockets.

Every test runs against Redis 7.0 (the oracle) and shardis alike (the ``server`` fixture): the
assertions are Redis's behaviour, so a test that passes on the oracle and fails on shardis is
a divergence.  Pauses are short; a held command is one whose reply does not come within a
fraction of the pause and does come after it.
"""

from __future__ import annotations

import time

import pytest

from tests.resp_client import RawClient, decode

#: A pause long enough to tell held from answered, short enough for the suite.
PAUSE_MS = 600


@pytest.fixture(params=["oracle", "shardis"])
def server(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def conns(server):
    opened: list[RawClient] = []

    def connect() -> RawClient:
        client = RawClient(server.port, timeout=5)
        opened.append(client)
        return client

    yield connect
    with RawClient(server.port) as admin:
        admin.call("CLIENT", "UNPAUSE")  # a failed test must not leave the server paused
    for client in opened:
        client.close()


def held(client: RawClient, *args: str) -> bool:
    """Send a command: True if its reply waits (for the pause), False if it comes at once."""
    client.send(*args)
    try:
        client.read_reply(timeout=PAUSE_MS / 4000)
    except TimeoutError:
        return True
    return False


def client_id(client: RawClient) -> int:
    return int(client.call("CLIENT", "ID")[1:-2])


@pytest.mark.parametrize(("mode", "command", "waits"), [
    ("ALL", ["GET", "k"], True),
    ("ALL", ["PING"], True),
    ("ALL", ["CLIENT", "UNPAUSE"], True),
    ("ALL", ["NOSUCH"], False),
    ("ALL", ["GET"], False),
    ("WRITE", ["GET", "k"], False),
    ("WRITE", ["SET", "k", "v"], True),
    ("WRITE", ["EVAL", "return 1", "0"], True),
    ("WRITE", ["EVAL_RO", "return 1", "0"], False),
    ("WRITE", ["PUBLISH", "c", "m"], True),
    ("WRITE", ["PING"], False),
    ("WRITE", ["CLIENT", "ID"], False),
])
def test_pause_holds_what_redis_holds(conns, mode, command, waits):
    admin, other = conns(), conns()
    assert admin.call("CLIENT", "PAUSE", str(PAUSE_MS), mode) == b"+OK\r\n"
    assert held(other, *command) is waits
    if waits:
        other.read_reply(timeout=PAUSE_MS / 1000 + 2)  # released by the timeout


def test_pause_all_holds_the_pausing_client_too(conns):
    admin = conns()
    admin.call("CLIENT", "PAUSE", str(PAUSE_MS), "ALL")
    assert held(admin, "PING")
    assert admin.read_reply(timeout=3) == b"+PONG\r\n"


def test_unpause_releases_in_order(conns):
    admin, writer = conns(), conns()
    admin.call("CLIENT", "PAUSE", "20000", "WRITE")
    writer.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
                    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n")
    with pytest.raises(TimeoutError):
        writer.read_reply(timeout=0.3)  # GET waits behind the held SET: order is kept
    started = time.monotonic()
    assert admin.call("CLIENT", "UNPAUSE") == b"+OK\r\n"
    assert writer.read_replies(3, timeout=3) == [b"+OK\r\n", b"$1\r\n1\r\n", b":2\r\n"]
    assert time.monotonic() - started < 2


def test_pause_keeps_the_stricter_mode_and_later_end(conns):
    admin, other = conns(), conns()
    admin.call("CLIENT", "PAUSE", str(PAUSE_MS), "ALL")
    admin.send("CLIENT", "PAUSE", "10", "WRITE")  # held itself (ALL), then keeps ALL
    assert held(other, "GET", "k")
    assert admin.read_reply(timeout=3) == b"+OK\r\n"
    other.read_reply(timeout=3)


def address_of(client: RawClient) -> str:
    info = decode(client.call("CLIENT", "INFO")).decode()  # type: ignore[union-attr]
    return info.split(" addr=")[1].split(" ")[0]


def test_kill_by_id_and_old_form(conns):
    me, victim, victim2 = conns(), conns(), conns()
    assert me.call("CLIENT", "KILL", "ID", str(client_id(victim))) == b":1\r\n"
    assert victim.is_closed(timeout=2)
    address = address_of(victim2)
    assert me.call("CLIENT", "KILL", address) == b"+OK\r\n"
    assert victim2.is_closed(timeout=2)
    assert me.call("CLIENT", "KILL", address) == b"-ERR No such client\r\n"
    assert me.call("PING") == b"+PONG\r\n"


def test_kill_type_pubsub_and_skipme(conns):
    me, subscriber, plain = conns(), conns(), conns()
    subscriber.call("SUBSCRIBE", "news")
    assert me.call("CLIENT", "KILL", "TYPE", "pubsub") == b":1\r\n"
    assert subscriber.is_closed(timeout=2)
    assert plain.call("PING") == b"+PONG\r\n"
    assert me.call("CLIENT", "KILL", "ID", str(client_id(me))) == b":0\r\n"  # SKIPME yes
    listed = decode(me.call("CLIENT", "LIST", "TYPE", "pubsub"))
    assert listed == b""


def test_kill_filters_combine(conns):
    me, other = conns(), conns()
    address = address_of(other)
    assert me.call("CLIENT", "KILL", "USER", "default", "ADDR", address, "TYPE", "pubsub") \
        == b":0\r\n"
    assert me.call("CLIENT", "KILL", "USER", "default", "ADDR", address) == b":1\r\n"
    assert other.is_closed(timeout=2)
    assert me.call("CLIENT", "KILL", "ADDR", address_of(me), "SKIPME", "no") == b":1\r\n"
    assert me.is_closed(timeout=2)


@pytest.mark.parametrize(("reason", "reply"), [
    ([], b"*-1\r\n"),
    (["TIMEOUT"], b"*-1\r\n"),
    (["ERROR"], b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"),
])
@pytest.mark.parametrize("keys", [["nolist-unblock"], ["nolist-a", "nolist-b", "nolist-c"]],
                         ids=["one-key", "keys-on-several-workers"])
def test_unblock(conns, reason, reply, keys):
    me, blocked = conns(), conns()
    target = client_id(blocked)
    blocked.send("BLPOP", *keys, "0")
    deadline = time.monotonic() + 3
    while b"flags=b" not in me.call("CLIENT", "LIST", "ID", str(target)):
        assert time.monotonic() < deadline, "BLPOP never blocked"
        time.sleep(0.02)
    assert me.call("CLIENT", "UNBLOCK", str(target), *reason) == b":1\r\n"
    assert blocked.read_reply(timeout=3) == reply
    assert me.call("CLIENT", "UNBLOCK", str(target)) == b":0\r\n"
    assert blocked.call("PING") == b"+PONG\r\n"


def test_pause_answers_subscribed_mode_refusals_at_once(conns):
    admin, subscriber = conns(), conns()
    subscriber.call("SUBSCRIBE", "ch")
    admin.call("CLIENT", "PAUSE", str(PAUSE_MS), "ALL")
    assert not held(subscriber, "GET", "k")  # the RESP2 subscribed-mode error, not a wait
    assert held(subscriber, "PING")
    subscriber.read_reply(timeout=3)


def test_pause_holds_queued_writes_and_exec(conns):
    admin, writer = conns(), conns()
    writer.call("DEL", "pause-counter")
    assert writer.call("MULTI") == b"+OK\r\n"
    assert writer.call("GET", "k") == b"+QUEUED\r\n"
    admin.call("CLIENT", "PAUSE", str(PAUSE_MS), "WRITE")
    assert not held(writer, "EXEC")  # a read-only transaction runs
    writer.call("MULTI")
    assert held(writer, "INCR", "pause-counter")  # Redis holds a write even when it is only queued
    assert writer.read_reply(timeout=3) == b"+QUEUED\r\n"
    assert writer.call("EXEC") == b"*1\r\n:1\r\n"


def test_reset_ends_client_reply_off_after_earlier_writes(conns):
    """RESET turns CLIENT REPLY OFF off even when other replies were flushed meanwhile."""
    client = conns()
    client.send("CLIENT", "REPLY", "OFF")
    time.sleep(0.1)
    client.send("PING")  # dropped, and its (empty) write happens before RESET arrives
    time.sleep(0.1)
    client.send("RESET")
    client.send("PING")
    assert client.read_reply() == b"+RESET\r\n"
    assert client.read_reply() == b"+PONG\r\n"
