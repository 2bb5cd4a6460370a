"""CONFIG on the router: GET, SET, RESETSTAT, REWRITE and HELP, as Redis 7.0's ``config.c``.

The router holds every directive's value (``router.config``, parsed by ``shardis.config``).
CONFIG SET checks every pair before changing anything (all or none, with Redis's error for
the first bad one), then applies them: router-side at once (with the hooks modules registered
through ``shardis.router.server.on_config_set``), on every worker for the directives workers
keep (``__config_set``, sent under the gate so no command runs between two workers' changes)
and ``loglevel``.  CONFIG REWRITE writes the file the server started with.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from shardis import config as directives
from shardis import errors
from shardis.commands import help_reply
from shardis.errors import ReplyError
from shardis.glob import glob_match
from shardis.logs import set_level
from shardis.resp import OK
from shardis.router.registry import Plan, coordinated, router_command
from shardis.router.server import (
    CONFIG_HOOKS,
    WORKER_CONFIG_LISTENERS,
    on_config_set,
    protected_allowed,
)

log = logging.getLogger("shardis.router")

#: Parameters CONFIG GET shows with a fixed value (what shardis does), until the modules that
#: honour them register them as directives (``shardis.config.register``).
FIXED = {"maxmemory-clients": "0"}

#: ``reset(router)`` run by CONFIG RESETSTAT: modules with statistics of their own add theirs.
RESETSTAT_HOOKS: list[Any] = []

NO_CONFIG_FILE = "ERR The server is running without a config file"


def config_table(router: Any) -> dict[str, str]:
    """Every parameter CONFIG GET knows (aliases too) and its value as Redis prints it."""
    table = {name: value for name, value in FIXED.items() if directives.lookup(name) is None}
    table.update(directives.render(router.config))
    return table


def config_get_reply(table: dict[str, str], patterns: list[bytes]) -> dict[bytes, bytes]:
    """``configGetCommand``: each pattern without ``*?[`` is looked up (the name as given is
    the reply's key), the others are matched against every name; a name is listed once."""
    found: dict[str, tuple[bytes, bytes]] = {}
    lowered = {name.lower(): name for name in table}
    for pattern in patterns:
        text = pattern.decode("latin-1")
        if not directives.has_glob(text):
            name = lowered.get(text.lower())
            if name is not None and text.lower() not in found:
                found[text.lower()] = (pattern, table[name].encode())
            continue
        for name, value in table.items():
            if name not in found and glob_match(pattern, name.encode(), nocase=True):
                found[name] = (name.encode(), value.encode())
    return dict(found.values())


@router_command("config|get")
def config_get(router: Any, client: Any, args: list[bytes]) -> object:
    return config_get_reply(config_table(router), args[2:])


def _pairs(args: list[bytes]) -> list[tuple[str, str]]:
    if len(args) % 2:
        raise ReplyError(errors.SYNTAX)
    return [(name.decode(errors="replace"), value.decode("utf-8", "surrogateescape"))
            for name, value in zip(args[2::2], args[3::2])]


def _checked(router: Any, args: list[bytes], protected_ok: bool) -> dict[str, Any]:
    try:
        return directives.check_set(_pairs(args), protected_ok, router.config)
    except directives.SetError as exc:
        raise ReplyError(str(exc)) from None


def _config_set_plan(router: Any, args: list[bytes]) -> Plan:
    """Checked before the gate (a refused CONFIG SET gates nothing); ``local`` protected
    configs are decided with the client (:func:`config_set`)."""
    setting = router.config.get("enable-protected-configs", "no")
    _checked(router, args, setting in ("yes", "local"))
    return Plan(workers=router.all_workers)


@coordinated("config|set", _config_set_plan)
async def config_set(router: Any, client: Any, args: list[bytes]) -> object:
    """CONFIG SET name value [name value ...]: all checked, then all applied."""
    setting = router.config.get("enable-protected-configs", "no")
    changes = _checked(router, args, protected_allowed(setting, client))
    for name, value in changes.items():
        if name in directives.forwarded():
            await _forward(router, name, value)
    for name, value in changes.items():
        router.config[name] = value
        hook = CONFIG_HOOKS.get(name)
        if hook is not None:
            done = hook(router, value)
            if inspect.isawaitable(done):  # requirepass: stored for every router first
                await done
    return OK


async def _forward(router: Any, name: str, value: Any) -> None:
    """One directive to every worker; the supervisor remembers it for restarted workers."""
    text = directives.DIRECTIVES[name].format(value).encode()
    for reply in await router.call_all([b"__config_set", name.encode(), text]):
        if type(reply) is ReplyError:
            raise reply
    for listener in WORKER_CONFIG_LISTENERS:
        listener(name, value)


@on_config_set("loglevel")
def _set_loglevel(router: Any, value: str) -> None:
    """The router's own logs (the workers got ``__config_set loglevel``)."""
    set_level(value)


@on_config_set("notify-keyspace-events")
async def _notify_workers(router: Any, flags: int) -> None:
    """notify-keyspace-events: every worker emits (or stops emitting) the events."""
    for reply in await router.call_all([b"__notify", b"%d" % flags]):
        if type(reply) is ReplyError:
            raise reply


@router_command("config|resetstat")
def config_resetstat(router: Any, client: Any, args: list[bytes]) -> object:
    """CONFIG RESETSTAT: the router's counters and every worker's (``__resetstat``, queued
    ahead of the client's next commands), and those of modules that registered a reset."""
    stats = router.stats
    stats.commands = stats.error_replies = 0
    stats.connections_received = stats.rejected_connections = 0
    for worker in range(len(router.links)):
        router.call(worker, [b"__resetstat"]).add_done_callback(_ignore)
    for reset in RESETSTAT_HOOKS:
        reset(router)
    return OK


def _ignore(future: Any) -> None:
    if not future.cancelled():
        future.exception()  # a worker that is down has nothing to reset


@router_command("config|rewrite")
def config_rewrite(router: Any, client: Any, args: list[bytes]) -> object:
    """CONFIG REWRITE: the config file the server started with, rewritten in place."""
    path = router.config.get(directives.CONFIG_FILE)
    if not path:
        raise ReplyError(NO_CONFIG_FILE)
    try:
        directives.rewrite_file(path, router.config)
    except OSError as exc:
        log.warning("CONFIG REWRITE failed: %s", exc.strerror)
        raise ReplyError(f"ERR Rewriting config file: {exc.strerror}") from None
    log.warning("CONFIG REWRITE executed with success.")
    return OK


CONFIG_HELP = [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
]


@router_command("config|help")
def config_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(CONFIG_HELP)
