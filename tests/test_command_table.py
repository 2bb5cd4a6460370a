"""COMMAND LIST, COUNT and DOCS against real Redis 7.0: subcommands (``config|get``) are listed,
filtered and documented as Redis does, for the commands shardis has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.resp_client import RawClient, decode
from tests.test_server import NOT_IN_REDIS_70


def call(port: int, *args: str) -> object:
    with RawClient(port) as client:
        return decode(client.call(*args))


def names(port: int, *args: str) -> set[str]:
    return {name.decode() for name in call(port, "COMMAND", "LIST", *args)}


def pairs(flat: list) -> dict:
    """A RESP2 map (a flat list of key, value...) as a dict."""
    return {key.decode(): value for key, value in zip(flat[::2], flat[1::2])}


def test_command_list_includes_subcommands_as_redis(shardis, oracle):
    ours, theirs = names(shardis.port), names(oracle.port)
    assert {"config", "config|get", "client|id", "command|list"} <= ours
    assert ours - NOT_IN_REDIS_70 <= theirs
    # Redis lists every subcommand of a command: shardis lists all those it has.
    for name in {n for n in theirs & ours if "|" not in n}:
        subs = {n for n in theirs if n.startswith(name + "|")}
        assert subs & ours == {n for n in ours - NOT_IN_REDIS_70 if n.startswith(name + "|")}


def test_command_count_counts_commands_not_subcommands(shardis, oracle):
    for server in (shardis, oracle):
        listed = names(server.port)
        assert call(server.port, "COMMAND", "COUNT") == len({n for n in listed if "|" not in n})


@pytest.mark.parametrize("kind, value", [
    ("PATTERN", "config*"), ("PATTERN", "*|*"), ("PATTERN", "C?IENT|*"), ("PATTERN", "get*"),
    ("ACLCAT", "admin"), ("ACLCAT", "read"), ("ACLCAT", "WRITE"), ("ACLCAT", "connection"),
    ("ACLCAT", "slow"), ("ACLCAT", "scripting"), ("ACLCAT", "pubsub"), ("ACLCAT", "nosuch"),
    ("MODULE", "nosuch"),
])
def test_command_list_filterby_as_redis(shardis, oracle, kind, value):
    ours = names(shardis.port, "FILTERBY", kind, value) - NOT_IN_REDIS_70
    theirs = names(oracle.port, "FILTERBY", kind, value)
    assert ours == theirs & names(shardis.port)


def test_command_list_syntax_errors_as_redis(shardis, oracle):
    for args in (["x"], ["FILTERBY"], ["FILTERBY", "PATTERN"], ["FILTERBY", "foo", "x"]):
        assert call(shardis.port, "COMMAND", "LIST", *args) == \
            call(oracle.port, "COMMAND", "LIST", *args)


def test_command_docs_groups_and_subcommands_as_redis(shardis, oracle):
    ours = pairs(call(shardis.port, "COMMAND", "DOCS"))
    theirs = pairs(call(oracle.port, "COMMAND", "DOCS"))
    for name, flat in ours.items():
        if name in NOT_IN_REDIS_70:
            continue
        doc, redis_doc = pairs(flat), pairs(theirs[name])
        assert doc["group"] == redis_doc["group"], name
        subs = pairs(doc.get("subcommands", []))
        redis_subs = pairs(redis_doc.get("subcommands", []))
        assert set(subs) - NOT_IN_REDIS_70 <= set(redis_subs), name
        for sub, sub_flat in subs.items():
            if sub not in NOT_IN_REDIS_70:
                assert pairs(sub_flat)["group"] == pairs(redis_subs[sub])["group"], sub


def test_command_docs_and_info_take_subcommand_names(shardis, oracle):
    docs = pairs(call(shardis.port, "COMMAND", "DOCS", "config|get", "CLIENT|ID", "nosuch"))
    assert set(docs) == {"config|get", "client|id"}
    assert set(pairs(call(oracle.port, "COMMAND", "DOCS", "config|get", "CLIENT|ID",
                          "nosuch"))) == set(docs)


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_missing_commands() -> set[str]:
    """The commands README's "does not have" list names (``CLIENT KILL`` -> ``client|kill``)."""
    text = README.read_text()
    start = text.index("<!-- missing-commands:start -->")
    block = text[start:text.index("<!-- missing-commands:end -->", start)]
    return {name.lower().replace(" ", "|") for name in re.findall(r"`([A-Z_ -]+)`", block)}


def test_readme_lists_exactly_the_redis_commands_shardis_lacks(shardis, oracle):
    theirs, ours = names(oracle.port), names(shardis.port)
    missing = theirs - ours
    # A command missing entirely stands for its subcommands.
    expected = {name for name in missing if name.partition("|")[0] not in missing - {name}}
    listed = readme_missing_commands()
    assert sorted(listed - expected) == [], "README lists commands shardis has (or Redis lacks)"
    assert sorted(expected - listed) == [], "commands missing from README's list"
