"""Scripting on the router: where EVAL and friends run, and SCRIPT over every worker.

A script runs on ONE worker, as in Redis Cluster, so that it is atomic without gating
anything: all its KEYS must live on one worker, which gets the command whole
(``Plan(forward_to=...)``); a script without keys runs on worker 0.  Keys on several workers
are refused with Redis Cluster's CROSSSLOT error: a script could touch them in any order and
interleave with other clients between its commands, which is exactly what scripts promise not
to do.  (Redis Cluster is stricter — one slot; shardis asks for one worker.)

Ahead of every script the worker is told how many workers share the slots
(``__script_topology``, on the same link, so it arrives first): that is how it refuses a
``redis.call`` on a key of another worker.  For a caller with ACL limits the same message
carries the user's rules (its ACL LIST line), which the worker checks each call against.

One script cache for the whole server, as on a single Redis: each worker compiles what it
runs, and the router keeps every script it has seen (sha1 -> body).  The first EVAL of a script
also loads it on every other worker (SCRIPT LOAD, in the same flush), SCRIPT LOAD and SCRIPT
FLUSH go to every worker, and a worker that restarted gets every known script again — so an
EVALSHA finds its script whichever worker its keys live on.  SCRIPT EXISTS asks every worker.
(With several routers, a SCRIPT FLUSH through one leaves the others' lists stale until they
next see SCRIPT LOAD; EVAL still runs everywhere.)
"""

from __future__ import annotations

from typing import Any

from shardis.commands import help_reply
from shardis.commands.scripting import (
    CROSSSLOT,
    NOSCRIPT,
    NOTBUSY,
    SCRIPT_HELP,
    parse_numkeys,
    sha1hex,
)
from shardis.errors import ReplyError, raise_if_error
from shardis.resp import OK
from shardis.router.registry import Plan, coordinated, router_command
from shardis.router.security import script_rules


def script_plan(router: Any, args: list[bytes]) -> Plan:
    """Forward to the worker of all KEYS; Redis's argument errors first."""
    by_sha = args[0].lower().startswith(b"evalsha")
    if by_sha and len(args[1]) != 40:
        raise ReplyError(NOSCRIPT)
    numkeys = parse_numkeys(args)
    workers = {router.worker_of(key) for key in args[3 : 3 + numkeys]}
    if len(workers) > 1:
        raise ReplyError(CROSSSLOT)
    worker = workers.pop() if workers else 0
    if not by_sha:
        remember(router, args[1], skip=worker)
    threshold = router.config.get("busy-reply-threshold", 5000)
    topology = [b"__script_topology", b"%d" % len(router.links), b"%d" % threshold]
    caller = router.current_client
    rules = script_rules(caller) if caller is not None else None
    router.call(worker, topology if rules is None else [*topology, rules])
    return Plan(forward_to=worker)


async def _never(router: Any, client: Any, args: list[bytes]) -> object:  # pragma: no cover
    raise ReplyError("ERR internal error: scripts are always forwarded")


for _name in ("eval", "evalsha", "eval_ro", "evalsha_ro"):
    coordinated(_name, script_plan)(_never)


def all_workers_plan(router: Any, args: list[bytes]) -> Plan:
    return Plan(workers=router.all_workers)


def remember(router: Any, body: bytes, skip: int | None = None) -> None:
    """A script seen for the first time: kept, and loaded on every worker but ``skip`` (the
    one about to run it).  Its compile error, if any, is the EVAL's to report."""
    sha = sha1hex(body)
    if sha in router.scripts:
        return
    router.scripts[sha] = body
    for worker in range(len(router.links)):
        if worker != skip:
            router.call(worker, [b"SCRIPT", b"LOAD", body])


@coordinated("script|load", all_workers_plan)
async def script_load(router: Any, client: Any, args: list[bytes]) -> object:
    """Every worker compiles and caches the script; they all answer the same sha1 (or the
    same compile error)."""
    replies = await router.call_all(args)
    for reply in replies:
        raise_if_error(reply)
    router.scripts[replies[0].decode()] = args[2]
    return replies[0]


@coordinated("script|flush", all_workers_plan)
async def script_flush(router: Any, client: Any, args: list[bytes]) -> object:
    """Every worker empties its cache (or all answer the same argument error), and so does
    the router's list."""
    for reply in await router.call_all(args):
        raise_if_error(reply)
    router.scripts.clear()
    return OK


@coordinated("script|exists", all_workers_plan)
async def script_exists(router: Any, client: Any, args: list[bytes]) -> object:
    """1 for a script that any worker has (see the module docstring)."""
    replies = [raise_if_error(reply) for reply in await router.call_all(args)]
    return [int(any(found)) for found in zip(*replies)]  # type: ignore[call-overload]


@router_command("script|help")
def script_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(SCRIPT_HELP)


#: SCRIPT DEBUG YES/SYNC's error: shardis has no Lua debugger (Redis's LDB).
NO_DEBUGGER = "ERR SCRIPT DEBUG YES/SYNC is not supported: shardis has no Lua debugger"


@router_command("script|debug")
def script_debug(router: Any, client: Any, args: list[bytes]) -> object:
    """Checked as Redis checks it; NO is what every client already has (OK), YES and SYNC
    are refused: answering OK would promise a debugging session (redis-cli --ldb) that never
    comes."""
    mode = args[2].lower()
    if mode == b"no":
        return OK
    if mode in (b"yes", b"sync"):
        raise ReplyError(NO_DEBUGGER)
    raise ReplyError("ERR Use SCRIPT DEBUG YES/SYNC/NO")


@coordinated("script|kill", all_workers_plan)
async def script_kill(router: Any, client: Any, args: list[bytes]) -> object:
    """Every worker is asked; a worker running a script past busy-reply-threshold answers
    from inside it (OK, or UNKILLABLE once it wrote), the others NOTBUSY."""
    replies = await router.call_all([b"__script_kill"])
    for wanted in (None, "UNKILLABLE"):
        for reply in replies:
            if wanted is None and type(reply) is not ReplyError:
                return reply
            if wanted and type(reply) is ReplyError and reply.message.startswith(wanted):
                raise reply
    raise ReplyError(NOTBUSY)
