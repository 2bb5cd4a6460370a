"""INFO's shape against real Redis 7.0: the same section headings, in the same order, and the
same field names in each section, for every way of choosing sections.  Values differ (they
describe two different servers); the fields shardis adds or leaves out are listed with why."""

from __future__ import annotations

import time

import pytest
import redis

from tests.resp_client import RawClient, decode

#: Fields shardis prints that Redis does not: shardis's own, prefixed or about its workers.
SHARDIS_ONLY = {
    "Server": {"shardis_version", "workers", "worker_pids"},
    "Stats": {"shardis_worker_batches"},
}
#: Sections Redis prints that shardis leaves out: counting calls and latency per command
#: would cost every command on the router's fast paths.  (Errorstats is printed, but with no
#: per-prefix lines: shardis counts error replies in total only; see ``variable_fields``.)
LEFT_OUT_SECTIONS = {"Commandstats", "Latencystats"}


def info_shape(port: int, *sections: str) -> list[tuple[str, set[str]]]:
    """[(heading, field names)] in the order the server prints them."""
    with RawClient(port) as client:
        text = decode(client.call("INFO", *sections)).decode()
    shape: list[tuple[str, set[str]]] = []
    for line in text.split("\r\n"):
        if line.startswith("# "):
            shape.append((line[2:], set()))
        elif line:
            shape[-1][1].add(line.partition(":")[0])
    return shape


def variable_fields(heading: str, names: set[str]) -> set[str]:
    """Field names that depend on history, not on the server: per-error-prefix counts."""
    return set() if heading == "Errorstats" else names


def comparable(shape: list[tuple[str, set[str]]], ours: bool) -> list[tuple[str, set[str]]]:
    out = []
    for heading, names in shape:
        if heading in LEFT_OUT_SECTIONS:
            continue
        extra = SHARDIS_ONLY.get(heading, set()) if ours else set()
        out.append((heading, variable_fields(heading, names - extra)))
    return out


@pytest.fixture
def same_keyspace(shardis_clean, oracle_clean):
    """One key with a TTL on both, so that Keyspace has its db0 line on both."""
    for server in (shardis_clean, oracle_clean):
        redis.Redis(port=server.port).set("info:k", "v", ex=100)
    return shardis_clean, oracle_clean


@pytest.mark.parametrize("sections", [
    (), ("all",), ("everything",), ("default",), ("server", "clients"), ("nosuchsection",),
    ("CPU", "cluster"), ("keyspace", "server"), ("default", "errorstats"),
    ("commandstats",), ("modules",),
], ids=lambda s: "-".join(s) or "none")
def test_info_sections_and_fields_match_redis(same_keyspace, sections):
    shardis, oracle = same_keyspace
    ours = comparable(info_shape(shardis.port, *sections), ours=True)
    theirs = comparable(info_shape(oracle.port, *sections), ours=False)
    assert [h for h, _ in ours] == [h for h, _ in theirs]
    assert ours == theirs


def test_info_unknown_section_is_empty(shardis):
    with RawClient(shardis.port) as client:
        assert decode(client.call("INFO", "nosuchsection")) == b""


def test_info_values_a_client_reads(same_keyspace):
    info = redis.Redis(port=same_keyspace[0].port).info("everything")
    assert info["cluster_enabled"] == 0
    assert info["role"] == "master" and info["aof_enabled"] == 0
    assert info["db0"] == {"keys": 1, "expires": 1, "avg_ttl": info["db0"]["avg_ttl"]}
    assert 0 < info["db0"]["avg_ttl"] <= 100_000
    assert info["used_memory_peak"] >= info["used_memory"] > 0
    assert len(info["run_id"]) == 40


def persistence_fields(port: int) -> list[str]:
    """INFO persistence's field names, in the order printed."""
    with RawClient(port) as client:
        text = decode(client.call("INFO", "persistence")).decode()
    return [line.partition(":")[0] for line in text.split("\r\n")[1:] if line]


@pytest.mark.parametrize("appendonly", ["no", "yes"])
def test_info_persistence_fields_and_order_match_redis(appendonly):
    """The exact list of Redis 7.0 (with the aof_current_size... block when the AOF is on),
    and values that say what the workers did."""
    from tests.servers import start_redis, start_shardis

    oracle = start_redis("--appendonly", appendonly)
    ours = start_shardis(2, "--appendonly", appendonly)
    try:
        assert persistence_fields(ours.port) == persistence_fields(oracle.port)
        client = redis.Redis(port=ours.port)
        client.mset({f"k{i}": "v" * 1000 for i in range(200)})
        assert client.bgsave()
        assert client.bgrewriteaof()
        deadline = time.monotonic() + 20
        while True:
            info = client.info("persistence")
            if info["rdb_saves"] == 2 and info["aof_rewrites"] == 2 and not (
                    info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]
                    or info["rdb_bgsave_in_progress"]):
                break
            assert time.monotonic() < deadline, info
            time.sleep(0.05)
        assert info["rdb_last_bgsave_status"] == info["aof_last_bgrewrite_status"] == "ok"
        assert info["rdb_last_cow_size"] > 0 and info["aof_last_cow_size"] > 0
        assert info["rdb_changes_since_last_save"] == 0
        assert info["aof_enabled"] == (appendonly == "yes")
        if appendonly == "yes":
            assert info["aof_current_size"] >= info["aof_base_size"] > 0
        assert persistence_fields(ours.port) == persistence_fields(oracle.port)
    finally:
        oracle.stop()
        ours.stop()
