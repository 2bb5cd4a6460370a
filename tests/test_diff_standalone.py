"""Differential corpus: ROLE, WAIT and LOLWUT — what a standalone Redis without replicas
answers — byte for byte against real Redis 7.0, in RESP2 and RESP3."""

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
]


@parametrize(SCRIPTS)
def test_standalone(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
