"""When blocked clients are served: after the whole command, transaction or script (issue 13).

Two clients against a real redis-server (the oracle) and against shardis with 3 workers: one
blocks, the other runs a transaction, a script or plain commands; then a last push (the
*sentinel*) releases a waiter that stayed blocked.  What the waiter received, what the other
client got and what the keys hold at the end must be the same on both.  Joins have generous
timeouts: they detect a hang, they measure no speed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import redis

from shardis.slots import SlotMap

SLOTS = SlotMap(3)  # the shardis fixture runs 3 workers
HANG = 20.0  # seconds: a waiter still blocked after this is hung


def on_worker(worker: int, stem: str) -> str:
    """A key named after ``stem`` that lives on ``worker``."""
    return next(f"{stem}:{i}" for i in range(1000)
                if SLOTS.worker_of(f"{stem}:{i}".encode()) == worker)


def value_of(exc_or_value: object) -> object:
    if isinstance(exc_or_value, Exception):
        return f"error: {exc_or_value}"
    return exc_or_value


@dataclass
class Scenario:
    """``setup`` runs first; the waiter sends ``blocking``; then ``multi`` runs as one
    transaction (or ``plain`` as separate commands); ``after`` runs once the waiter ... may
    have been served (the sentinel pushes); ``keys`` are compared at the end."""

    blocking: list
    keys: list[str]
    setup: list[list] = field(default_factory=list)
    multi: list[list] = field(default_factory=list)
    plain: list[list] = field(default_factory=list)
    after: list[list] = field(default_factory=list)


def wait_blocked(client: redis.Redis, count: int) -> None:
    deadline = time.monotonic() + HANG
    while client.info("clients")["blocked_clients"] < count:
        assert time.monotonic() < deadline, "the waiter did not block"
        time.sleep(0.01)


def snapshot(client: redis.Redis, keys: list[str]) -> list:
    state = []
    for key in keys:
        kind = client.type(key)
        dump = {
            b"list": lambda k: client.lrange(k, 0, -1),
            b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            b"stream": lambda k: client.xrange(k),
            b"string": lambda k: client.get(k),
        }.get(kind, lambda k: None)(key)
        state.append((key, kind, dump))
    return state


def run_commands(client: redis.Redis, commands: list[list]) -> list:
    out = []
    for command in commands:
        try:
            out.append(client.execute_command(*command))
        except redis.ResponseError as exc:
            out.append(exc)
    return [value_of(reply) for reply in out]


def run_multi(client: redis.Redis, commands: list[list]) -> list:
    pipe = client.pipeline(transaction=True)
    for command in commands:
        pipe.execute_command(*command)
    return [value_of(reply) for reply in pipe.execute(raise_on_error=False)]


def start_waiter(port: int, command: list) -> tuple[threading.Thread, list, redis.Redis]:
    waiter = redis.Redis(port=port, protocol=2, socket_timeout=HANG)
    received: list = []

    def block() -> None:
        try:
            received.append(waiter.execute_command(*command))
        except Exception as exc:  # the reply to compare, errors included
            received.append(exc)

    thread = threading.Thread(target=block, daemon=True)
    thread.start()
    return thread, received, waiter


def play(port: int, scenario: Scenario) -> tuple:
    """The scenario on one server: (what each waiter got, the other client's replies, the
    keys at the end).  Waiters block one after the other, in the order given."""
    client = redis.Redis(port=port, protocol=2, socket_timeout=HANG)
    client.flushall()
    run_commands(client, scenario.setup)
    commands = scenario.blocking if isinstance(scenario.blocking[0], list) else [scenario.blocking]
    waiters = []
    for command in commands:
        blocked = client.info("clients")["blocked_clients"]  # a hung earlier test leaves some
        waiters.append(start_waiter(port, command))
        wait_blocked(client, blocked + 1)
    replies = run_multi(client, scenario.multi) if scenario.multi else []
    replies += run_commands(client, scenario.plain)
    replies += run_commands(client, scenario.after)
    received = []
    for thread, got, connection in waiters:
        thread.join(HANG)
        assert not thread.is_alive(), "a waiter hangs"
        received.append(value_of(got[0]))
        connection.close()
    state = snapshot(client, scenario.keys)
    client.close()
    return received, replies, state


def check(oracle, shardis, scenario: Scenario) -> None:
    expected = play(oracle.port, scenario)
    assert play(shardis.port, scenario) == expected


W0, W1 = 0, 1
L, M = on_worker(W0, "l"), on_worker(W1, "m")  # a list on each of two workers
T, S = "{t}a", "{t}b"  # two keys on one worker


# Transactions: the waiter sees EXEC's end state --------------------------------------------
TRANSACTIONS = {
    "push-then-del": Scenario(["BLPOP", L, 0], [L], multi=[["LPUSH", L, "a"], ["DEL", L]],
                              after=[["LPUSH", L, "z"]]),
    "push-del-set": Scenario(["BLPOP", L, 0], [L],
                             multi=[["LPUSH", L, "a"], ["DEL", L], ["SET", L, "x"]],
                             after=[["DEL", L], ["LPUSH", L, "z"]]),
    "three-pushes": Scenario(["BLPOP", L, 0], [L],
                             multi=[["LPUSH", L, "a"], ["LPUSH", L, "b"], ["LPUSH", L, "c"]]),
    "brpop-three-pushes": Scenario(["BRPOP", L, 0], [L],
                                   multi=[["LPUSH", L, "a"], ["LPUSH", L, "b"],
                                          ["RPUSH", L, "c"]]),
    "ready-key-order": Scenario(["BLPOP", T, S, 0], [T, S],
                                multi=[["LPUSH", S, "x"], ["LPUSH", T, "y"]]),
    "blmpop": Scenario(["BLMPOP", 0, 2, T, S, "LEFT", "COUNT", 5], [T, S],
                       multi=[["LPUSH", S, "x"], ["RPUSH", S, "y"], ["LPUSH", T, "z"]]),
    "blmpop-deleted": Scenario(["BLMPOP", 0, 1, L, "RIGHT"], [L],
                               multi=[["LPUSH", L, "a"], ["DEL", L]],
                               after=[["LPUSH", L, "z"]]),
    "brpoplpush": Scenario(["BRPOPLPUSH", T, S, 0], [T, S],
                           multi=[["LPUSH", T, "a"], ["LPUSH", T, "b"], ["RPUSH", T, "c"]]),
    "blmove-deleted": Scenario(["BLMOVE", T, S, "LEFT", "RIGHT", 0], [T, S],
                               multi=[["LPUSH", T, "a"], ["DEL", T]],
                               after=[["LPUSH", T, "z"]]),
    "bzpopmin": Scenario(["BZPOPMIN", "z", 0], ["z"],
                         multi=[["ZADD", "z", 1, "a"], ["ZADD", "z", 0, "b"]]),
    "bzpopmax-deleted": Scenario(["BZPOPMAX", "z", 0], ["z"],
                                 multi=[["ZADD", "z", 1, "a"], ["DEL", "z"]],
                                 after=[["ZADD", "z", 2, "b"]]),
    "bzmpop": Scenario(["BZMPOP", 0, 1, "z", "MAX", "COUNT", 2], ["z"],
                       multi=[["ZADD", "z", 1, "a"], ["ZADD", "z", 3, "b", 2, "c"]]),
    "xread": Scenario(["XREAD", "BLOCK", 0, "STREAMS", "s", "$"], ["s"],
                      multi=[["XADD", "s", "1-1", "f", "v"], ["XADD", "s", "1-2", "f", "w"]]),
    "xread-deleted": Scenario(["XREAD", "BLOCK", 0, "STREAMS", "s", "$"], ["s"],
                              multi=[["XADD", "s", "1-1", "f", "v"], ["DEL", "s"]],
                              after=[["XADD", "s", "2-1", "f", "z"]]),
    "xread-two-streams": Scenario(["XREAD", "BLOCK", 0, "STREAMS", T, S, "$", "$"], [T, S],
                                  multi=[["XADD", S, "1-1", "f", "v"],
                                         ["XADD", T, "1-1", "f", "w"]]),
    "across-workers": Scenario(["BLPOP", L, 0], [L, M],
                               multi=[["LPUSH", L, "a"], ["SET", M, "x"], ["DEL", L],
                                      ["DEL", M]],
                               after=[["LPUSH", L, "z"]]),
    "waiter-across-workers": Scenario(["BLPOP", L, M, 0], [L, M],
                                      multi=[["LPUSH", L, "a"], ["DEL", L]],
                                      after=[["LPUSH", M, "z"]]),
    "waiter-across-workers-served": Scenario(["BLPOP", L, M, 0], [L, M],
                                             multi=[["LPUSH", M, "a"], ["LPUSH", M, "b"]]),
    "lmove-across-workers-then-del": Scenario(["BLPOP", M, 0], [L, M], setup=[["RPUSH", L, "a"]],
                                              multi=[["LMOVE", L, M, "LEFT", "LEFT"],
                                                     ["DEL", M]],
                                              after=[["LPUSH", M, "z"]]),
    "push-then-lmove-away": Scenario(["BLPOP", M, 0], [L, M],
                                     multi=[["RPUSH", M, "a"], ["LMOVE", M, L, "LEFT", "LEFT"]],
                                     after=[["LPUSH", M, "z"]]),
    "rename-across-workers": Scenario(["BLPOP", M, 0], [L, M], setup=[["RPUSH", L, "a", "b"]],
                                      multi=[["RENAME", L, M], ["RPUSH", M, "c"]]),
    "blmove-chain": Scenario(["BLMOVE", T, S, "RIGHT", "LEFT", 0], [T, S],
                             multi=[["RPUSH", T, "a", "b"], ["LPUSH", S, "x"], ["DEL", S]]),
    "blmove-feeds-a-blpop": Scenario([["BLMOVE", T, S, "RIGHT", "LEFT", 0], ["BLPOP", S, 0]],
                                     [T, S], multi=[["RPUSH", T, "a", "b"], ["RPUSH", T, "c"]]),
    "blmove-feeds-a-blpop-then-del": Scenario(
        [["BLMOVE", T, S, "RIGHT", "LEFT", 0], ["BLPOP", S, 0]], [T, S],
        multi=[["RPUSH", T, "a"], ["LPUSH", S, "x"], ["DEL", T]],
        after=[["RPUSH", T, "z"]]),
    "fifo-two-waiters": Scenario([["BLPOP", L, 0], ["BLPOP", L, 0]], [L],
                                 multi=[["RPUSH", L, "a"], ["RPUSH", L, "b", "c"]]),
    "list-and-zset-waiters": Scenario([["BZPOPMIN", T, 0], ["BLPOP", T, 0]], [T],
                                      multi=[["RPUSH", T, "a"], ["SET", "other", "x"]],
                                      after=[["DEL", T], ["ZADD", T, 1, "m"]]),
    "script-in-transaction": Scenario(
        ["BLPOP", L, 0], [L],
        multi=[["EVAL", "redis.call('lpush', KEYS[1], 'a')", 1, L], ["DEL", L]],
        after=[["LPUSH", L, "z"]]),
}


@pytest.mark.parametrize("name", TRANSACTIONS)
def test_transactions_wake_waiters_after_exec(oracle, shardis, name):
    check(oracle, shardis, TRANSACTIONS[name])


# Scripts: the waiter sees the script's end state ---------------------------------------------
PUSH_DEL = "redis.call('lpush', KEYS[1], 'a'); redis.call('del', KEYS[1])"
PUSH_THREE = "for _, v in ipairs({'a', 'b', 'c'}) do redis.call('lpush', KEYS[1], v) end"
SCRIPTS = {
    "push-then-del": Scenario(["BLPOP", L, 0], [L], plain=[["EVAL", PUSH_DEL, 1, L]],
                              after=[["LPUSH", L, "z"]]),
    "three-pushes": Scenario(["BLPOP", L, 0], [L], plain=[["EVAL", PUSH_THREE, 1, L]]),
    "bzpopmin": Scenario(["BZPOPMIN", "z", 0], ["z"], plain=[[
        "EVAL", "redis.call('zadd', KEYS[1], 1, 'a'); redis.call('zadd', KEYS[1], 0, 'b')",
        1, "z"]]),
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_wake_waiters_after_the_script(oracle, shardis, name):
    check(oracle, shardis, SCRIPTS[name])


# Wrong types: sources skip (keep waiting), destinations answer WRONGTYPE ---------------------
def _wrong_types(source: str, target: str) -> dict[str, Scenario]:
    return {
        "brpoplpush-target": Scenario(["BRPOPLPUSH", source, target, 0], [source, target],
                                      setup=[["SET", target, "x"]],
                                      plain=[["LPUSH", source, "a"]]),
        "blmove-target": Scenario(["BLMOVE", source, target, "LEFT", "LEFT", 0],
                                  [source, target], setup=[["SET", target, "x"]],
                                  plain=[["RPUSH", source, "a", "b"]]),
        "blmove-target-zset": Scenario(["BLMOVE", source, target, "RIGHT", "LEFT", 0],
                                       [source, target], setup=[["ZADD", target, 1, "m"]],
                                       multi=[["LPUSH", source, "a"]]),
        "brpoplpush-source-becomes-string": Scenario(
            ["BRPOPLPUSH", source, target, 0], [source, target],
            plain=[["SET", source, "x"], ["DEL", source], ["LPUSH", source, "a"]]),
        "blpop-key-becomes-string": Scenario(
            ["BLPOP", source, target, 0], [source, target],
            plain=[["SET", source, "x"], ["LPUSH", target, "z"]]),
        "blpop-key-becomes-zset": Scenario(
            ["BLPOP", source, 0], [source],
            plain=[["ZADD", source, 1, "m"], ["DEL", source], ["RPUSH", source, "z"]]),
        "bzpopmin-key-becomes-list": Scenario(
            ["BZPOPMIN", source, target, 0], [source, target],
            plain=[["LPUSH", source, "x"], ["ZADD", target, 1, "z"]]),
        "blmpop-key-becomes-string": Scenario(
            ["BLMPOP", 0, 2, source, target, "LEFT"], [source, target],
            plain=[["SET", source, "x"], ["LPUSH", target, "z"]]),
        "xread-key-becomes-list": Scenario(
            ["XREAD", "BLOCK", 0, "STREAMS", source, target, "$", "$"], [source, target],
            plain=[["LPUSH", source, "x"], ["XADD", target, "1-1", "f", "v"]]),
    }


WRONG_TYPES = {f"one-worker-{k}": v for k, v in _wrong_types(T, S).items()}
# (XREAD BLOCK over keys on several workers is refused: shardis's documented limit.)
WRONG_TYPES.update({f"two-workers-{k}": v for k, v in _wrong_types(L, M).items()
                    if not k.startswith("xread")})


@pytest.mark.parametrize("name", WRONG_TYPES)
def test_wrong_types_while_blocked(oracle, shardis, name):
    check(oracle, shardis, WRONG_TYPES[name])


def _blmove_then_blpop_on_its_destination(port: int) -> list:
    client = redis.Redis(port=port, socket_timeout=HANG)
    client.flushall()
    first = redis.Redis(port=port, socket_timeout=HANG)
    second = redis.Redis(port=port, socket_timeout=HANG)
    got: list = []
    one = threading.Thread(target=lambda: got.append(first.blmove(T, S, 1)), daemon=True)
    one.start()
    wait_blocked(client, 1)
    two = threading.Thread(target=lambda: got.append(list(second.blpop([S], 0))), daemon=True)
    two.start()
    wait_blocked(client, 2)
    client.lpush(S, "x")
    for thread in (two, one):
        thread.join(HANG)
        assert not thread.is_alive(), "a waiter hangs"
    return got


def test_a_waiter_on_the_destination_is_not_held_up_by_blmove(oracle, shardis):
    """BLMOVE waits on its source only: a BLPOP queued behind it on its destination key is
    served by a push there (BLMOVE then times out)."""
    expected = _blmove_then_blpop_on_its_destination(oracle.port)
    assert expected == [[S.encode(), b"x"], None]
    assert _blmove_then_blpop_on_its_destination(shardis.port) == expected


# Wrong types when the command does not wait: Redis's checks, in its order -------------------
def _immediate(source: str, target: str) -> dict[str, tuple[list, list]]:
    """name -> (setup, command): answered at once (WRONGTYPE, or served from a later key)."""
    return {
        "brpoplpush-target": ([["RPUSH", source, "a"], ["SET", target, "x"]],
                              ["BRPOPLPUSH", source, target, 1]),
        "brpoplpush-source": ([["SET", source, "x"], ["SET", target, "y"]],
                              ["BRPOPLPUSH", source, target, 1]),
        "blmove-target-hash": ([["RPUSH", source, "a"], ["HSET", target, "f", "v"]],
                               ["BLMOVE", source, target, "LEFT", "RIGHT", 1]),
        "blmove-source-zset": ([["ZADD", source, 1, "m"]],
                               ["BLMOVE", source, target, "LEFT", "RIGHT", 1]),
        "blpop-first-key-string": ([["SET", source, "x"], ["RPUSH", target, "a"]],
                                   ["BLPOP", source, target, 1]),
        "blpop-second-key-string": ([["RPUSH", source, "a"], ["SET", target, "x"]],
                                    ["BLPOP", source, target, 1]),
        "bzpopmax-first-key-list": ([["RPUSH", source, "a"], ["ZADD", target, 1, "m"]],
                                    ["BZPOPMAX", source, target, 1]),
        "blmpop-first-key-set": ([["SADD", source, "a"], ["RPUSH", target, "a"]],
                                 ["BLMPOP", 1, 2, source, target, "LEFT"]),
        "bzmpop-second-key-string": ([["ZADD", source, 1, "m"], ["SET", target, "x"]],
                                     ["BZMPOP", 1, 2, source, target, "MIN"]),
    }


IMMEDIATE = {f"one-worker-{k}": v for k, v in _immediate(T, S).items()}
IMMEDIATE.update({f"two-workers-{k}": v for k, v in _immediate(L, M).items()})


def _answer_at_once(port: int, setup: list, command: list, keys: list[str]) -> tuple:
    client = redis.Redis(port=port, protocol=2, socket_timeout=HANG)
    client.flushall()
    run_commands(client, setup)
    reply = run_commands(client, [command])
    state = snapshot(client, keys)
    client.close()
    return reply, state


@pytest.mark.parametrize("name", IMMEDIATE)
def test_wrong_types_without_waiting(oracle, shardis, name):
    setup, command = IMMEDIATE[name]
    keys = [T, S] if name.startswith("one") else [L, M]
    expected = _answer_at_once(oracle.port, setup, command, keys)
    assert _answer_at_once(shardis.port, setup, command, keys) == expected
