"""Functions on the router: FUNCTION over every worker (FCALL is planned like EVAL, see
``shardis.router.scripting``).

Every worker holds every library, so that an FCALL runs wherever its keys are.  The commands
that change the libraries (LOAD, DELETE, FLUSH, RESTORE) go to every worker, which all answer
alike (a library that fails to load fails everywhere); the first error, or the common reply,
is the answer.  The router then keeps the libraries' FUNCTION DUMP payload: a worker that
(re)connects gets it (``__functions_sync``, ahead of anything else for it), so one that
restarted without persistence has the server's libraries again before it runs an FCALL.
LIST and DUMP are answered by worker 0; STATS and KILL ask every worker (the one running a
function answers from inside it).
"""

from __future__ import annotations

from typing import Any

from shardis.commands import help_reply
from shardis.commands.functions import FUNCTION_HELP
from shardis.errors import raise_if_error
from shardis.resp import OK
from shardis.router.registry import Plan, coordinated, router_command
from shardis.router.scripting import all_workers_plan, kill_reply, no_gate_plan


async def _change_everywhere(router: Any, client: Any, args: list[bytes]) -> object:
    """A change of the libraries, on every worker; then the server's payload is refreshed."""
    replies = await router.call_all(args)
    for reply in replies:
        raise_if_error(reply)
    dump = await router.call(0, [b"FUNCTION", b"DUMP"])
    if isinstance(dump, bytes):
        router.functions_payload = dump
    return replies[0] if args[1].lower() == b"load" else OK  # the library's name, or OK


for _name in ("load", "delete", "flush", "restore"):
    coordinated(f"function|{_name}", all_workers_plan)(_change_everywhere)


def _worker_zero_plan(router: Any, args: list[bytes]) -> Plan:
    return Plan(forward_to=0)


@coordinated("function|list", _worker_zero_plan)
@coordinated("function|dump", _worker_zero_plan)
async def from_worker_zero(router: Any, client: Any, args: list[bytes]) -> object:
    """(Never awaited: the plan forwards these whole to worker 0.)"""
    return await router.call(0, args)


@coordinated("function|stats", no_gate_plan)
async def function_stats(router: Any, client: Any, args: list[bytes]) -> object:
    """Worker 0's counts, and the running function of whichever worker runs one."""
    replies = [raise_if_error(reply) for reply in await router.call_all(args)]
    stats = replies[0]
    for reply in replies:
        if isinstance(reply, dict) and reply.get(b"running_script") is not None:
            stats[b"running_script"] = reply[b"running_script"]
    return stats


@coordinated("function|kill", no_gate_plan)
async def function_kill(router: Any, client: Any, args: list[bytes]) -> object:
    """As SCRIPT KILL, for a function: the busy worker's answer, NOTBUSY from none."""
    return kill_reply(await router.call_all([b"__script_kill", b"function"]))


@router_command("function|help")
def function_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(FUNCTION_HELP)


def functions_sync(router: Any) -> list[list[bytes]]:
    """What a worker that (re)connected is sent: the server's libraries, once known."""
    if router.functions_payload is None:
        return []
    return [[b"__functions_sync", router.functions_payload]]
