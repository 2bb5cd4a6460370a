"""Differential corpus: ROLE, WAIT, LOLWUT, and the cluster, module and replication commands —
what a standalone Redis without replicas or modules answers — byte for byte against real
Redis 7.0, in RESP2 and RESP3."""

from __future__ import annotations

from tests.differential import check, parametrize, script

SCRIPTS = [
    script(
        "role_wait_lolwut",
        ["ROLE"],
        ["ROLE", "x"],
        ["WAIT", "0", "0"],
        ["WAIT", "-3", "5"],
        ["WAIT", "1", "150"],  # nobody acknowledges: 0 once the timeout has passed
        ["WAIT", "x", "0"],
        ["WAIT", "0", "-1"],
        ["WAIT", "0", "x"],
        ["WAIT", "0"],
        ["LOLWUT"],
        ["LOLWUT", "VERSION", "7"],
        ["LOLWUT", "VERSION", "x"],
        ["LOLWUT", "whatever"],
        ["MULTI"],
        ["ROLE"],
        ["EXEC"],
    ),
    script(
        "cluster_disabled_no_modules_no_replicas",
        ["CLUSTER", "INFO"],
        ["CLUSTER", "NODES"],
        ["CLUSTER", "HELP"],
        ["CLUSTER", "KEYSLOT", "k"],
        ["CLUSTER", "bogus"],
        ["CLUSTER"],
        ["CLUSTER", "KEYSLOT"],
        ["ASKING"],
        ["READONLY"],
        ["READWRITE"],
        ["MODULE", "LIST"],
        ["MODULE", "HELP"],
        ["MODULE", "LOAD", "/nonexistent.so"],
        ["MODULE", "LOADEX", "/nonexistent.so"],
        ["MODULE", "UNLOAD", "x"],
        ["MODULE", "bogus"],
        ["REPLICAOF", "NO", "ONE"],
        ["SLAVEOF", "no", "one"],
        ["REPLICAOF", "NO"],
        ["FAILOVER"],
        ["FAILOVER", "ABORT"],
        ["FAILOVER", "TIMEOUT", "100"],
        ["FAILOVER", "TIMEOUT", "0"],
        ["FAILOVER", "TIMEOUT", "x"],
        ["FAILOVER", "TO", "127.0.0.1", "x"],
        ["FAILOVER", "TO", "127.0.0.1", "6380", "FORCE", "TIMEOUT", "10"],
        ["FAILOVER", "FORCE", "FORCE"],
        ["FAILOVER", "bogus"],
        ["SET", "k", "v"],
        ["DUMP", "k"],
    ),
]


@parametrize(SCRIPTS)
def test_standalone(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)


MEMORY = script(
    "memory_help_purge_malloc_stats",
    ["MEMORY", "HELP"],
    ["MEMORY", "PURGE"],
    ["MEMORY", "PURGE", "x"],
    ["MEMORY", "HELP", "x"],
    ["MEMORY", "bogus"],
)


@parametrize([MEMORY])
def test_memory_commands(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)


def test_memory_malloc_stats_says_what_a_redis_without_jemalloc_says(shardis):
    import redis

    reply = redis.Redis(port=shardis.port).execute_command("MEMORY", "MALLOC-STATS")
    assert reply == b"Stats not supported for the current allocator"
