"""ROLE, WAIT, LOLWUT, and the cluster, replication and module commands on the router:
shardis presents itself as one standalone Redis that has no replica, follows no master,
loads no module and has cluster support disabled.

* ROLE: ``master``, replication offset 0, no replicas.
* WAIT numreplicas timeout: no replica ever acknowledges, so the answer is 0 — at once when
  ``numreplicas`` is 0 or less, else after ``timeout`` milliseconds (0: until the client
  leaves), as a Redis with no replicas does.
* LOLWUT [VERSION v]: Redis 7.0's default output, the version line (its versions 5 and 6
  draw random art; shardis answers them with the same line).
* CLUSTER (every subcommand), ASKING, READONLY, READWRITE: cluster support is disabled.
* MODULE LIST is empty; LOAD, LOADEX, UNLOAD are refused as with Redis's default
  ``enable-module-command no``.
* REPLICAOF/SLAVEOF NO ONE: OK (a master already); FAILOVER: no replica to fail over to.
  Following a master (REPLICAOF host port) and SYNC/PSYNC are refused: shardis does not
  replicate.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shardis import REDIS_VERSION, errors
from shardis.commands.strings import parse_int
from shardis.errors import ReplyError
from shardis.resp import OK, Verbatim
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


# Cluster, replication, modules ---------------------------------------------------------------
CLUSTER_DISABLED = "ERR This instance has cluster support disabled"
#: MODULE LOAD/LOADEX/UNLOAD with Redis's default ``enable-module-command no``.
MODULE_NOT_ALLOWED = (
    'ERR MODULE command not allowed. If the enable-module-command option is set to "local", '
    "you can run it from a local connection, otherwise you need to set this option in the "
    "configuration file, and then restart the server.")
#: What shardis cannot do: follow another server, or be followed.
NO_REPLICATION = "ERR shardis does not replicate: it has no replicas and follows no master"


def _cluster_disabled(router: Any, client: Any, args: list[bytes]) -> object:
    raise ReplyError(CLUSTER_DISABLED)


for _name in ("asking", "readonly", "readwrite"):
    router_command(_name)(_cluster_disabled)


def _register_cluster_subcommands() -> None:
    from shardis.commands import COMMANDS, load_families

    load_families()
    for spec in set(COMMANDS[b"cluster"].subcommands.values()):
        router_command(spec.fullname)(_cluster_disabled)


_register_cluster_subcommands()

MODULE_HELP = [
    "MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LIST",
    "    Return a list of loaded modules.",
    "LOAD <path> [<arg> ...]",
    "    Load a module library from <path>, passing to it any optional arguments.",
    "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
    "    Load a module library from <path>, while passing it module configurations and "
    "optional arguments.",
    "UNLOAD <name>",
    "    Unload a module.",
]


@router_command("module|help")
def module_help(router: Any, client: Any, args: list[bytes]) -> object:
    from shardis.commands import help_reply

    return help_reply(MODULE_HELP)


@router_command("module|list")
def module_list(router: Any, client: Any, args: list[bytes]) -> object:
    return []


@router_command("module|load", "module|loadex", "module|unload")
def module_change(router: Any, client: Any, args: list[bytes]) -> object:
    raise ReplyError(MODULE_NOT_ALLOWED)


@router_command("replicaof", "slaveof")
def replicaof(router: Any, client: Any, args: list[bytes]) -> object:
    """``NO ONE``: already a master, OK; following a master is what shardis cannot do."""
    if args[1].lower() == b"no" and args[2].lower() == b"one":
        return OK
    raise ReplyError(NO_REPLICATION)


@router_command("failover")
def failover(router: Any, client: Any, args: list[bytes]) -> object:
    """Redis's checks in its order, for a master with no replica."""
    if len(args) == 2 and args[1].lower() == b"abort":
        raise ReplyError("ERR No failover in progress.")
    timeout, host, force = 0, None, False
    j = 1
    while j < len(args):
        option = args[j].lower()
        if option == b"timeout" and j + 1 < len(args) and not timeout:
            timeout = parse_int(args[j + 1], errors.NOT_INTEGER)
            if timeout <= 0:
                raise ReplyError("ERR FAILOVER timeout must be greater than 0")
            j += 1
        elif option == b"to" and j + 2 < len(args) and host is None:
            parse_int(args[j + 2], errors.NOT_INTEGER)
            host = args[j + 1]
            j += 2
        elif option == b"force" and not force:
            force = True
        else:
            raise ReplyError(errors.SYNTAX)
        j += 1
    raise ReplyError("ERR FAILOVER requires connected replicas.")


@router_command("sync", "psync", "replconf")
def sync(router: Any, client: Any, args: list[bytes]) -> object:
    raise ReplyError(NO_REPLICATION)
