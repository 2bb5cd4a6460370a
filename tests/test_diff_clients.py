"""Differential corpus for issue 13: the CLIENT family (REPLY, KILL, PAUSE, UNBLOCK, NO-EVICT,
GETREDIR, TRACKINGINFO, LIST/INFO fields) and the arity of every (sub)command, against Redis 7.0.

CLIENT REPLY OFF|SKIP suppress replies, so those steps are raw pipelines: the bytes read after
them are what both servers chose to send.
"""

from __future__ import annotations

import pytest

from tests.differential import check, cmd, normalized, parametrize, raw, script
from tests.resp_client import RawClient, decode, encode_command


def pipeline(*commands: list[str]) -> bytes:
    return b"".join(encode_command(*c) for c in commands)


def info_fields(reply: bytes) -> object:
    """CLIENT INFO / LIST: each line's field names in order, and the deterministic values."""
    value = decode(reply)
    text = bytes(value).decode() if isinstance(value, bytes) else str(value)
    keep = ("name", "flags", "db", "sub", "psub", "ssub", "multi", "cmd", "user", "resp")
    lines = []
    for line in text.splitlines():
        fields = [item.partition("=") for item in line.split(" ")]
        lines.append([(k, v if k in keep else None) for k, _, v in fields])
    return lines


SCRIPTS = [
    script(
        "client_reply",
        raw(pipeline(["CLIENT", "REPLY", "SKIP"], ["ECHO", "skipped"], ["ECHO", "sent"]), 1),
        raw(pipeline(["CLIENT", "REPLY", "SKIP"], ["CLIENT", "REPLY", "SKIP"], ["ECHO", "a"],
                     ["ECHO", "b"]), 1),
        raw(pipeline(["CLIENT", "REPLY", "SKIP"], ["NOSUCH"], ["GET"], ["ECHO", "c"]), 2),
        raw(pipeline(["CLIENT", "REPLY", "OFF"], ["SET", "k", "1"], ["CLIENT", "REPLY", "SKIP"],
                     ["INCR", "k"], ["CLIENT", "REPLY", "FOO"], ["CLIENT", "REPLY", "ON"],
                     ["GET", "k"]), 2),
        raw(pipeline(["CLIENT", "REPLY", "SKIP"], ["CLIENT", "REPLY", "ON"], ["ECHO", "d"]), 2),
        raw(pipeline(["CLIENT", "REPLY", "OFF"], ["RESET"], ["PING"]), 2),
        raw(pipeline(["CLIENT", "REPLY", "SKIP"], ["RESET"], ["PING"]), 1),
        raw(pipeline(["CLIENT", "NO-EVICT", "on"], ["RESET"]), 2),
        normalized(info_fields, "CLIENT", "INFO"),
        ["CLIENT", "REPLY", "foo"],
        ["CLIENT", "REPLY"],
        ["CLIENT", "REPLY", "on", "x"],
        ["client", "reply", "On"],
    ),
    script(
        # Pub/sub confirmations and messages are pushed even while replies are off.
        "client_reply_pubsub",
        raw(pipeline(["CLIENT", "REPLY", "OFF"], ["SUBSCRIBE", "ch"], ["PING"],
                     ["UNSUBSCRIBE", "ch"], ["ECHO", "x"], ["CLIENT", "REPLY", "ON"]), 3),
        protocols=(2,),
    ),
    script(
        "client_kill_errors",
        ["CLIENT", "KILL"],
        ["CLIENT", "KILL", "1.2.3.4:5"],
        ["CLIENT", "KILL", "ID"],
        ["CLIENT", "KILL", "ID", "x"],
        ["CLIENT", "KILL", "ID", "0"],
        ["CLIENT", "KILL", "ID", "-3"],
        ["CLIENT", "KILL", "ID", "99999999999999999999"],
        ["CLIENT", "KILL", "ID", "999999"],
        ["CLIENT", "KILL", "ID", "999999", "ID"],
        ["CLIENT", "KILL", "FOO", "bar"],
        ["CLIENT", "KILL", "ADDR", "x", "SKIPME", "maybe"],
        ["CLIENT", "KILL", "MAXAGE", "100"],
        ["CLIENT", "KILL", "TYPE", "foo"],
        ["CLIENT", "KILL", "TYPE", "pubsub"],
        ["CLIENT", "KILL", "TYPE", "master"],
        ["CLIENT", "KILL", "type", "Replica"],
        ["CLIENT", "KILL", "USER", "nouser"],
        ["CLIENT", "KILL", "USER", "default", "TYPE", "nope"],
        ["CLIENT", "KILL", "ADDR", "1.2.3.4:5", "LADDR", "1.1.1.1:1"],
        ["CLIENT", "KILL", "SKIPME", "yes", "USER", "default"],
        ["PING"],
    ),
    script(
        "client_kill_self",
        cmd("CLIENT", "KILL", "SKIPME", "no", "ID", "999999"),
        raw(pipeline(["CLIENT", "KILL", "SKIPME", "no", "TYPE", "normal"], ["PING"]), 1,
            closes=True),
        ["PING"],
    ),
    script(
        "client_pause_errors",
        ["CLIENT", "PAUSE"],
        ["CLIENT", "PAUSE", "x"],
        ["CLIENT", "PAUSE", "-1"],
        ["CLIENT", "PAUSE", "1.5"],
        ["CLIENT", "PAUSE", "10", "foo"],
        ["CLIENT", "PAUSE", "x", "foo"],
        ["CLIENT", "PAUSE", "10", "all", "x"],
        ["CLIENT", "PAUSE", "99999999999999999999"],
        ["CLIENT", "PAUSE", "0"],
        ["CLIENT", "PAUSE", "0", "write"],
        ["CLIENT", "UNPAUSE", "x"],
        ["CLIENT", "UNPAUSE"],
        ["PING"],
    ),
    script(
        "client_misc",
        ["CLIENT", "NO-EVICT"],
        ["CLIENT", "NO-EVICT", "maybe"],
        ["CLIENT", "NO-EVICT", "on"],
        normalized(info_fields, "CLIENT", "INFO"),
        ["CLIENT", "NO-EVICT", "OFF"],
        ["CLIENT", "UNBLOCK"],
        ["CLIENT", "UNBLOCK", "x"],
        ["CLIENT", "UNBLOCK", "999"],
        ["CLIENT", "UNBLOCK", "999", "foo"],
        ["CLIENT", "UNBLOCK", "x", "foo"],
        ["CLIENT", "UNBLOCK", "999", "TIMEOUT"],
        ["CLIENT", "UNBLOCK", "999", "error"],
        ["CLIENT", "UNBLOCK", "1", "2", "3"],
        ["CLIENT", "GETREDIR"],
        ["CLIENT", "GETREDIR", "x"],
        ["CLIENT", "TRACKINGINFO"],
    ),
    script(
        "client_info_fields",
        normalized(info_fields, "CLIENT", "INFO"),
        ["CLIENT", "SETNAME", "me"],
        normalized(info_fields, "CLIENT", "INFO"),
        ["MULTI"],
        ["SET", "a", "1"],
        ["CLIENT", "INFO"],
        ["DISCARD"],
        normalized(info_fields, "CLIENT", "LIST", "ID", "999999"),
        ["CLIENT", "LIST", "TYPE", "foo"],
        ["CLIENT", "LIST", "TYPE", "pubsub"],
        ["CLIENT", "LIST", "TYPE", "master"],
        ["CLIENT", "LIST", "ID"],
        ["CLIENT", "LIST", "ID", "x"],
        ["CLIENT", "LIST", "foo", "bar"],
    ),
    script(
        "client_info_subscribed",
        raw(pipeline(["SUBSCRIBE", "a", "b"], ["PSUBSCRIBE", "p*"]), 3),
        raw(encode_command("PING"), 1),
        protocols=(2,),
    ),
    script(
        "pubsub_subcommand_arity",
        ["PUBSUB", "CHANNELS", "a", "b"],
        ["PUBSUB", "SHARDCHANNELS", "a", "b"],
        ["PUBSUB", "CHANNELS", "nomatch*"],
        ["PUBSUB", "NUMPAT", "x"],
        ["PUBSUB", "NUMSUB"],
        ["PUBSUB", "SHARDNUMSUB"],
        ["PUBSUB"],
    ),
]


@parametrize(SCRIPTS)
def test_clients(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)


def client_info(port: int, setup: list[list[str]], proto: int) -> list:
    """The CLIENT INFO fields (normalized) of a connection after ``setup``."""
    with RawClient(port) as client:
        if proto == 3:
            client.hello3()
        for command in setup:
            client.call(*command)
        return info_fields(client.call("CLIENT", "INFO"))


SUBSCRIBED = [["SUBSCRIBE", "a", "b"], ["PSUBSCRIBE", "p*"], ["SSUBSCRIBE", "s"]]
NO_EVICT = [["CLIENT", "NO-EVICT", "on"], ["CLIENT", "SETNAME", "n"]]


# RESP2 subscribed mode refuses CLIENT INFO: subscriptions are seen in RESP3 only.
@pytest.mark.parametrize(("setup", "proto"), [
    pytest.param([], 2, id="plain-resp2"), pytest.param([], 3, id="plain-resp3"),
    pytest.param(SUBSCRIBED, 3, id="subscribed-resp3"),
    pytest.param(NO_EVICT, 2, id="no-evict-resp2"),
])
def test_client_info_fields_match_redis(oracle, shardis, setup, proto):
    assert client_info(shardis.port, setup, proto) == client_info(oracle.port, setup, proto)


def command_arities(port: int) -> dict[str, int]:
    """Every (sub)command's arity from COMMAND, by its full name."""
    with RawClient(port) as client:
        entries = decode(client.call("COMMAND"))
    arities: dict[str, int] = {}

    def walk(items: list) -> None:
        for entry in items:
            arities[bytes(entry[0]).decode()] = entry[1]
            if len(entry) > 9 and entry[9]:
                walk(entry[9])

    walk(entries)  # type: ignore[arg-type]
    return arities


def test_every_arity_matches_redis(oracle, shardis):
    """Each (sub)command shardis has declares Redis's arity (CLIENT SETINFO is Redis 7.2's)."""
    ours = command_arities(shardis.port)
    theirs = command_arities(oracle.port)
    assert len(ours) > 200  # subcommands included: the walk saw the whole table
    ours.pop("client|setinfo", None)
    wrong = {name: (arity, theirs.get(name)) for name, arity in ours.items()
             if theirs.get(name) != arity}
    assert wrong == {}


def help_lines(port: int) -> list[str]:
    with RawClient(port) as client:
        return [str(line) for line in decode(client.call("CLIENT", "HELP"))]


def test_client_help_is_redis_text(oracle, shardis):
    """Our CLIENT HELP is Redis's, in its order, less the subcommands we lack (CACHING,
    TRACKING) and plus Redis 7.2's SETINFO."""
    ours = [line for line in help_lines(shardis.port)
            if "SETINFO" not in line and "LIB-" not in line and "meta attr" not in line]
    theirs = iter(help_lines(oracle.port))
    assert all(line in theirs for line in ours)  # a subsequence: same text, same order
    assert any(line.startswith("PAUSE") for line in ours)



def fresh_connection_fields(port: int) -> list:
    """How CLIENT LIST shows a connection that has sent nothing yet (``cmd=NULL``); ids are
    given in connection order, so it is the observer's id less one."""
    with RawClient(port), RawClient(port) as observer:
        fresh_id = int(observer.call("CLIENT", "ID")[1:-2]) - 1
        return info_fields(observer.call("CLIENT", "LIST", "ID", str(fresh_id)))


def test_fresh_connection_listed_as_redis(oracle, shardis):
    fields = fresh_connection_fields(shardis.port)
    assert fields and ("cmd", "NULL") in fields[0]
    assert fields == fresh_connection_fields(oracle.port)
