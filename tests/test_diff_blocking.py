"""Differential corpus: blocking list commands, byte for byte against real Redis 7.0.

When data is there the command answers at once; on empty keys a short timeout answers nil;
errors (timeouts, arity, wrong types, bad directions) come before any waiting.  Waiting itself,
wake-up order and clients leaving are tested in tests/test_blocking.py.  Keys ``W0``..``W2``
live on three different shardis workers.
"""

from __future__ import annotations

from tests.differential import check, parametrize, script
from tests.test_diff_lists import W0, W1, W2

SCRIPTS = [
    script(
        "blpop_brpop_with_data",
        ["RPUSH", W0, "a", "b", "c"],
        ["RPUSH", W2, "z"],
        ["BLPOP", W1, W0, "1"],
        ["BRPOP", W1, W0, "1"],
        ["BLPOP", W1, W2, W0, "0"],
        ["BLPOP", W0, "0.5"],
        ["EXISTS", W0],
        ["RPUSH", "{t}a", "x"],
        ["BRPOP", "{t}b", "{t}a", "1"],
    ),
    script(
        "blocking_timeouts_on_empty_keys",
        ["BLPOP", W0, "0.05"],
        ["BRPOP", W0, W1, W2, "0.05"],
        ["BLMOVE", W0, W1, "LEFT", "RIGHT", "0.05"],
        ["BRPOPLPUSH", W0, W1, "0.05"],
        ["BLMPOP", "0.05", "2", W0, W1, "LEFT"],
        ["EXISTS", W0, W1],
    ),
    script(
        "blocking_errors",
        ["BLPOP", W0, "abc"],
        ["BLPOP", W0, "-1"],
        ["BLPOP", W0],
        ["BLMOVE", W0, W1, "UP", "LEFT", "0"],
        ["BLMOVE", W0, W1, "LEFT", "RIGHT", "x"],
        ["BRPOPLPUSH", W0, W1],
        ["BLMPOP", "0", "0", W0, "LEFT"],
        ["BLMPOP", "0", "1", W0, "MIDDLE"],
        ["BLMPOP", "0", "1", W0, "LEFT", "COUNT", "0"],
        ["SET", "str", "v"],
        ["BLPOP", "str", "0"],
        ["BLMOVE", "str", W1, "LEFT", "LEFT", "0"],
        ["RPUSH", W1, "x"],
        ["BLMOVE", W1, "str", "LEFT", "LEFT", "0"],
        ["LRANGE", W1, "0", "-1"],
    ),
    script(
        "blmove_brpoplpush_with_data",
        ["RPUSH", W0, "1", "2", "3"],
        ["BLMOVE", W0, W1, "LEFT", "RIGHT", "0"],
        ["BLMOVE", W0, W0, "RIGHT", "LEFT", "0"],
        ["BRPOPLPUSH", W0, W2, "0"],
        ["LRANGE", W0, "0", "-1"],
        ["LRANGE", W1, "0", "-1"],
        ["LRANGE", W2, "0", "-1"],
        ["RPUSH", "{t}s", "a", "b"],
        ["BLMOVE", "{t}s", "{t}d", "RIGHT", "RIGHT", "0"],
        ["LRANGE", "{t}d", "0", "-1"],
    ),
    script(
        "blmpop_with_data",
        ["RPUSH", W1, "a", "b", "c"],
        ["RPUSH", W2, "x"],
        ["BLMPOP", "0", "3", W0, W1, W2, "LEFT"],
        ["BLMPOP", "0", "3", W0, W1, W2, "RIGHT", "COUNT", "5"],
        ["BLMPOP", "0", "3", W0, W1, W2, "LEFT", "COUNT", "2"],
        ["EXISTS", W0, W1, W2],
    ),
]


@parametrize(SCRIPTS)
def test_blocking(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
