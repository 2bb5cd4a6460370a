"""Server commands on the router: COMMAND (answered from the command table), TIME, INFO
(summed over the workers), CONFIG."""

from __future__ import annotations

import inspect
import logging
import os
import platform
import time
from typing import Any

from shardis import REDIS_VERSION, __version__, errors
from shardis.commands import Command, all_commands, find, help_reply, lookup
from shardis.config import ConfigError, render
from shardis.config import lookup as config_lookup
from shardis.errors import ReplyError
from shardis.glob import glob_match
from shardis.notify import INVALID_CLASSES, format_flags, parse_flags
from shardis.resp import OK, SetReply, Status, Verbatim
from shardis.router.registry import DEFERRED, Plan, coordinated, router_command

log = logging.getLogger("shardis.router")

# COMMAND -------------------------------------------------------------------------------------


def _key_specs(spec: Command) -> list[dict]:
    if not spec.first_key:
        return []
    flags = ["RO", "access"] if "readonly" in spec.flags else ["RW", "update"]
    last = spec.last_key
    return [
        {
            b"flags": SetReply(Status(f.encode()) for f in flags),
            b"begin_search": {b"type": b"index", b"spec": {b"index": spec.first_key}},
            b"find_keys": {
                b"type": b"range",
                b"spec": {
                    b"lastkey": last - spec.first_key if last >= 0 else last,
                    b"keystep": spec.step,
                    b"limit": 0,
                },
            },
        }
    ]


def command_info(spec: Command) -> list:
    """One command's COMMAND INFO entry, Redis 7's ten fields."""
    return [
        spec.fullname.encode(),
        spec.arity,
        SetReply(Status(flag.encode()) for flag in spec.flags),
        spec.first_key,
        spec.last_key,
        spec.step,
        SetReply(Status(cat.encode()) for cat in spec.acl),
        SetReply(tip.encode() for tip in spec.tips),
        _key_specs(spec),
        [command_info(sub) for sub in _unique(spec.subcommands)],
    ]


def _unique(table: dict[bytes, Command]) -> list[Command]:
    seen: dict[int, Command] = {}
    for spec in table.values():
        seen.setdefault(id(spec), spec)
    return list(seen.values())


def public_commands() -> list[Command]:
    return [spec for spec in all_commands() if "internal" not in spec.flags]




@router_command("command")
def command(router: Any, client: Any, args: list[bytes]) -> object:
    return [command_info(spec) for spec in public_commands()]


@router_command("command|count")
def command_count(router: Any, client: Any, args: list[bytes]) -> object:
    return len(public_commands())


@router_command("command|info")
def command_info_cmd(router: Any, client: Any, args: list[bytes]) -> object:
    if len(args) == 2:
        return [command_info(spec) for spec in public_commands()]
    return [command_info(spec) if (spec := find(name)) else None for name in args[2:]]


@router_command("command|list")
def command_list(router: Any, client: Any, args: list[bytes]) -> object:
    names = [spec.fullname.encode() for spec in public_commands()]
    if len(args) == 2:
        return names
    if len(args) == 5 and args[2].upper() == b"FILTERBY":
        kind, value = args[3].upper(), args[4]
        if kind == b"PATTERN":
            return [n for n in names if glob_match(value, n, nocase=True)]
        if kind == b"ACLCAT":
            cat = b"@" + value.lower()
            return [s.fullname.encode() for s in public_commands()
                    if cat in (c.encode() for c in s.acl)]
        if kind == b"MODULE":
            return []
    raise ReplyError(errors.SYNTAX)


@router_command("command|docs")
def command_docs(router: Any, client: Any, args: list[bytes]) -> object:
    """Docs are not shipped: an empty map for every command, as the issue allows."""
    specs = public_commands() if len(args) == 2 else filter(None, map(find, args[2:]))
    return {spec.fullname.encode(): {b"group": spec.group.encode()} for spec in specs}


@router_command("command|getkeys")
def command_getkeys(router: Any, client: Any, args: list[bytes]) -> object:
    target = args[2:]
    try:
        spec = lookup(target)
    except ReplyError as exc:
        if exc.message.startswith("ERR wrong number"):
            raise ReplyError("ERR Invalid number of arguments specified for command") from None
        raise ReplyError("ERR Invalid command specified") from None
    keys = [target[i] for i in spec.key_indexes(target)]
    if not keys:
        raise ReplyError("ERR The command has no key arguments")
    return keys


COMMAND_HELP = [
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
]


@router_command("command|help")
def command_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(COMMAND_HELP)


_SHUTDOWN_FLAGS = (b"nosave", b"save", b"now", b"force", b"abort")


@router_command("shutdown")
def shutdown(router: Any, client: Any, args: list[bytes]) -> object:
    """SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]: stop serving (with ``shardis up``, the
    workers stop too).  Nothing is saved yet, so every mode stops at once; like Redis, the
    client gets no reply, only the closed connection."""
    flags = [arg.lower() for arg in args[1:]]
    if (any(flag not in _SHUTDOWN_FLAGS for flag in flags) or len(set(flags)) != len(flags)
            or {b"nosave", b"save"} <= set(flags) or (b"abort" in flags and len(flags) > 1)):
        raise ReplyError(errors.SYNTAX)
    if flags == [b"abort"]:
        raise ReplyError("ERR No shutdown in progress.")
    log.warning("User requested shutdown... event=shutdown client_id=%d addr=%s",
                client.id, client.addr)
    client.closing = True
    if router.on_shutdown is not None:
        router.loop.call_soon(router.on_shutdown)
    return DEFERRED


@router_command("time")
def time_(router: Any, client: Any, args: list[bytes]) -> object:
    now = time.time_ns() // 1000
    return [b"%d" % (now // 1_000_000), b"%d" % (now % 1_000_000)]


# CONFIG --------------------------------------------------------------------------------------
def config_table(router: Any) -> dict[bytes, bytes]:
    """The parameters CONFIG GET reports: every directive of ``shardis.config``, and fixed
    ones that describe what shardis does."""
    config = router.config
    table = {name.encode(): value.encode() for name, value in render(config).items()}
    table.update({
        b"databases": b"1",
        b"save": b"",
        b"appendonly": b"no",
        b"maxmemory": b"0",
        b"maxmemory-policy": b"noeviction",
        b"notify-keyspace-events": format_flags(config.get("notify-keyspace-events", 0)),
        b"cluster-enabled": b"no",
    })
    return table


@router_command("config|get")
def config_get(router: Any, client: Any, args: list[bytes]) -> object:
    table = config_table(router)
    found: dict[bytes, bytes] = {}
    for pattern in args[2:]:
        for name, value in table.items():
            if glob_match(pattern, name, nocase=True):
                found[name] = value
    return found


#: directive name -> what must happen when CONFIG SET changes it (``handler(router, value)``,
#: which may be a coroutine function), registered by the modules that use the directive (see
#: :func:`on_config_set`).
CONFIG_HOOKS: dict[str, Any] = {}


def on_config_set(name: str) -> Any:
    """Register ``handler(router, value)`` to run after CONFIG SET changes ``name``."""
    def register(handler: Any) -> Any:
        CONFIG_HOOKS[name] = handler
        return handler
    return register


def _config_set_failed(name: bytes, reason: str) -> ReplyError:
    return ReplyError(f"ERR CONFIG SET failed (possibly related to argument "
                      f"'{name.decode(errors='replace')}') - {reason}")


def parse_config_set(args: list[bytes]) -> dict[str, Any]:
    """CONFIG SET's pairs, checked as Redis checks them (all or nothing): directive -> value."""
    if len(args) < 4 or len(args) % 2:
        raise ReplyError(errors.wrong_arity("config|set"))
    changes: dict[str, Any] = {}
    for raw_name, raw_value in zip(args[2::2], args[3::2]):
        text_name = raw_name.decode(errors="replace").lower()
        if text_name == "notify-keyspace-events":
            flags = parse_flags(raw_value)
            if flags is None:
                raise ReplyError(INVALID_CLASSES)
            directive_name, value = text_name, flags
        else:
            directive = config_lookup(text_name)
            if directive is None:
                raise ReplyError("ERR Unknown option or number of arguments for CONFIG SET - "
                                 f"'{raw_name.decode(errors='replace')}'")
            if not directive.mutable:
                raise _config_set_failed(raw_name, "can't set immutable config")
            try:
                value = directive.parse(raw_value.decode(errors="replace"))
            except ConfigError as exc:
                raise _config_set_failed(raw_name, str(exc)) from None
            directive_name = directive.name
        if directive_name in changes:
            raise _config_set_failed(raw_name, "duplicate parameter")
        changes[directive_name] = value
    return changes


def _config_set_plan(router: Any, args: list[bytes]) -> Plan:
    parse_config_set(args)
    return Plan(workers=router.all_workers)


@coordinated("config|set", _config_set_plan)
async def config_set(router: Any, client: Any, args: list[bytes]) -> object:
    """Router-side directives change at once; notify-keyspace-events reaches every worker."""
    changes = parse_config_set(args)
    for name, value in changes.items():
        router.config[name] = value
        hook = CONFIG_HOOKS.get(name)
        if hook is not None:
            done = hook(router, value)
            if inspect.isawaitable(done):  # requirepass: stored for every router first
                await done
    if "notify-keyspace-events" in changes:
        flags = changes["notify-keyspace-events"]
        for reply in await router.call_all([b"__notify", b"%d" % flags]):
            if type(reply) is ReplyError:
                raise reply
    return OK


@router_command("config|resetstat")
def config_resetstat(router: Any, client: Any, args: list[bytes]) -> object:
    router.stats.commands = 0
    router.stats.error_replies = 0
    router.stats.connections_received = 0
    router.stats.rejected_connections = 0
    return OK


@router_command("config|help")
def config_help(router: Any, client: Any, args: list[bytes]) -> object:
    lines = [
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET <pattern>",
        "    Return parameters matching the glob-like <pattern> and their values.",
        "SET <directive> <value>",
        "    Set the configuration <directive> to <value>.",
        "RESETSTAT",
        "    Reset statistics reported by the INFO command.",
    ]
    return help_reply(lines)


# INFO ----------------------------------------------------------------------------------------
_DEFAULT_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication",
                     "cpu", "keyspace")


def _plan_info(router: Any, args: list[bytes]) -> Plan:
    return Plan(workers=router.all_workers)


@coordinated("info", _plan_info)
async def info(router: Any, client: Any, args: list[bytes]) -> object:
    shards = await router.call_all([b"__info"])
    wanted = {a.lower().decode(errors="replace") for a in args[1:]} or {"default"}
    if wanted & {"all", "everything", "default"}:
        wanted = set(_DEFAULT_SECTIONS)
    sections = []
    for name in _DEFAULT_SECTIONS:
        if name in wanted:
            fields = _SECTIONS[name](router, shards)
            lines = [f"# {name.capitalize()}"]
            lines += [f"{key}:{value}" for key, value in fields]
            sections.append("\r\n".join(lines) + "\r\n")
    return Verbatim("\r\n".join(sections).encode())


def _total(shards: list[dict], field: bytes) -> Any:
    return sum(shard[field] for shard in shards if isinstance(shard, dict))


def _server(router: Any, shards: list[dict]) -> list[tuple[str, Any]]:
    uptime = int(time.time() - router.stats.started)
    return [
        ("redis_version", REDIS_VERSION),
        ("shardis_version", __version__),
        ("redis_mode", "standalone"),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", 64),
        ("multiplexing_api", "epoll"),
        ("process_id", os.getpid()),
        ("tcp_port", router.config.get("port", 6379)),
        ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400),
        ("workers", len(router.links)),
        ("worker_pids", ",".join(str(s[b"process_id"]) for s in shards)),
    ]


def _clients(router: Any, shards: list[dict]) -> list[tuple[str, Any]]:
    return [
        ("connected_clients", len(router.clients)),
        ("maxclients", router.config["maxclients"]),
        ("blocked_clients", len(router.blocking)),
    ]


def _memory(router: Any, shards: list[dict]) -> list[tuple[str, Any]]:
    from shardis.commands.server import _rss_bytes

    rss = _rss_bytes() + _total(shards, b"used_memory_rss")
    return [
        ("used_memory", rss),
        ("used_memory_human", _human(rss)),
        ("used_memory_rss", rss),
        ("used_memory_rss_human", _human(rss)),
        ("maxmemory", 0),
        ("maxmemory_policy", "noeviction"),
    ]


def _persistence(router: Any, shards: list[dict]) -> list[tuple[str, Any]]:
    return [("loading", 0), ("rdb_changes_since_last_save", 0), ("aof_enabled", 0)]


def _stats(router: Any, shards: list[dict]) -> list[tuple[str, Any]]:
    stats = router.stats
    return [
        ("total_connections_received", stats.connections_received),
        ("total_commands_processed", stats.commands),
        ("rejected_connections", stats.rejected_connections),
        ("expired_keys", _total(shards, b"expired_keys")),
        ("total_error_replies", stats.error_replies + _total(shards, b"error_replies")),
        ("shardis_worker_batches", stats.batches),
    ]


def _replication(router: Any, shards: list[dict]) -> list[tuple[str, Any]]:
    return [("role", "master"), ("connected_slaves", 0)]


def _cpu(router: Any, shards: list[dict]) -> list[tuple[str, Any]]:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    system = usage.ru_stime + _total(shards, b"used_cpu_sys")
    user = usage.ru_utime + _total(shards, b"used_cpu_user")
    return [("used_cpu_sys", f"{system:.6f}"), ("used_cpu_user", f"{user:.6f}")]


def _keyspace(router: Any, shards: list[dict]) -> list[tuple[str, Any]]:
    keys = _total(shards, b"keys")
    if not keys:
        return []
    expires = _total(shards, b"expires")
    weighted = sum(s[b"avg_ttl"] * s[b"expires"] for s in shards if isinstance(s, dict))
    avg_ttl = weighted // expires if expires else 0
    return [("db0", f"keys={keys},expires={expires},avg_ttl={avg_ttl}")]


_SECTIONS = {
    "server": _server,
    "clients": _clients,
    "memory": _memory,
    "persistence": _persistence,
    "stats": _stats,
    "replication": _replication,
    "cpu": _cpu,
    "keyspace": _keyspace,
}


def _human(size: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.2f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size:.2f}G"
