"""Differential corpus: MULTI/EXEC/DISCARD/WATCH/UNWATCH, byte for byte against real Redis 7.0.

Keys ``W0``..``W2`` live on three different shardis workers, so transactions span workers.
Invariants under concurrency are in tests/test_transactions.py.
"""

from __future__ import annotations

from tests.differential import check, parametrize, script
from tests.test_diff_lists import W0, W1, W2

SCRIPTS = [
    script(
        "multi_exec_across_workers",
        ["MULTI"],
        ["SET", W0, "1"],
        ["INCR", W0],
        ["MSET", W1, "a", W2, "b"],
        ["MGET", W0, W1, W2, "missing"],
        ["DEL", W1, W2],
        ["EXISTS", W0, W1, W2],
        ["RPUSH", "list", "x", "y"],
        ["LPOP", "list"],
        ["EXEC"],
        ["GET", W0],
    ),
    script(
        "runtime_errors_do_not_roll_back",
        ["SET", "s", "text"],
        ["MULTI"],
        ["INCR", "s"],
        ["SET", W0, "v"],
        ["LPUSH", "s", "x"],
        ["GET", W0],
        ["EXEC"],
        ["GET", "s"],
    ),
    script(
        "queue_time_errors_abort",
        ["MULTI"],
        ["SET", W0, "1"],
        ["NOSUCHCOMMAND", "x"],
        ["GET"],
        ["EXEC"],
        ["EXISTS", W0],
        ["MULTI"],
        ["SET", W0, "1"],
        ["SET"],
        ["EXEC"],
        ["EXISTS", W0],
    ),
    script(
        "state_errors",
        ["EXEC"],
        ["DISCARD"],
        ["MULTI"],
        ["MULTI"],
        ["WATCH", W0],
        ["SET", W0, "1"],
        ["EXEC"],
        ["MULTI"],
        ["SET", W1, "1"],
        ["DISCARD"],
        ["EXISTS", W1],
        ["MULTI"],
        ["EXEC"],
        ["WATCH"],
        ["MULTI", "x"],
        ["EXEC", "x"],
    ),
    script(
        "watch_untouched_and_unwatch",
        ["SET", W0, "1"],
        ["WATCH", W0, W1],
        ["GET", W0],
        ["MULTI"],
        ["INCR", W0],
        ["EXEC"],
        ["WATCH", W2],
        ["UNWATCH"],
        ["SET", W2, "changed"],
        ["MULTI"],
        ["GET", W2],
        ["EXEC"],
    ),
    script(
        "watch_touched_by_same_client_fails",
        ["SET", W0, "1"],
        ["WATCH", W0],
        ["SET", W0, "2"],
        ["MULTI"],
        ["SET", W0, "3"],
        ["EXEC"],
        ["GET", W0],
        ["WATCH", W1],
        ["DEL", W1],
        ["MULTI"],
        ["GET", W1],
        ["EXEC"],
        ["SET", "e", "v", "PX", "1"],
        ["WATCH", "e"],
    ),
    script(
        "blocking_and_flush_inside_multi",
        ["MULTI"],
        ["BLPOP", W0, "0"],
        ["BRPOP", W0, W1, "0"],
        ["RPUSH", W2, "x"],
        ["BLPOP", W0, W1, W2, "0"],
        ["DBSIZE"],
        ["FLUSHALL"],
        ["DBSIZE"],
        ["EXEC"],
    ),
    script(
        "multi_in_resp3_and_hello_inside",
        ["MULTI"],
        ["HSET", "h", "f", "v"],
        ["HGETALL", "h"],
        ["PING"],
        ["ECHO", "hi"],
        ["EXEC"],
    ),
]


@parametrize(SCRIPTS)
def test_transactions(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
