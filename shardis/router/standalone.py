"""ROLE, WAIT and LOLWUT on the router: shardis presents itself as one standalone Redis
without replicas.

* ROLE: ``master``, replication offset 0, no replicas.
* WAIT numreplicas timeout: no replica ever acknowledges, so the answer is 0 — at once when
  ``numreplicas`` is 0 or less, else after ``timeout`` milliseconds (0: until the client
  leaves), as a Redis with no replicas does.
* LOLWUT [VERSION v]: Redis 7.0's default output, the version line (its versions 5 and 6
  draw random art; shardis answers them with the same line).
"""

from __future__ import annotations

import asyncio
from typing import Any

from shardis import REDIS_VERSION, errors
from shardis.commands.strings import parse_int
from shardis.errors import ReplyError
from shardis.resp import Verbatim
from shardis.router.registry import Plan, coordinated, router_command


@router_command("role")
def role(router: Any, client: Any, args: list[bytes]) -> object:
    return [b"master", 0, []]


def _wait_args(args: list[bytes]) -> tuple[int, int]:
    replicas = parse_int(args[1], errors.NOT_INTEGER)
    timeout = parse_int(args[2], "ERR timeout is not an integer or out of range")
    if timeout < 0:
        raise ReplyError("ERR timeout is negative")
    return replicas, timeout


def _wait_plan(router: Any, args: list[bytes]) -> Plan:
    _wait_args(args)  # errors at once, in Redis's order
    return Plan(workers=frozenset())


@coordinated("wait", _wait_plan)
async def wait(router: Any, client: Any, args: list[bytes]) -> object:
    """0 replicas acknowledged, after the timeout when some were asked for."""
    replicas, timeout = _wait_args(args)
    if replicas <= 0:
        return 0
    deadline = router.loop.time() + timeout / 1000 if timeout else None
    while not client.closed:
        left = None if deadline is None else deadline - router.loop.time()
        if left is not None and left <= 0:
            break
        await asyncio.sleep(min(left, 1.0) if left is not None else 1.0)
    return 0


@router_command("lolwut")
def lolwut(router: Any, client: Any, args: list[bytes]) -> object:
    if len(args) >= 3 and args[1].lower() == b"version":
        parse_int(args[2], errors.NOT_INTEGER)
    return Verbatim(b"Redis ver. %s\n" % REDIS_VERSION.encode(), b"txt")
