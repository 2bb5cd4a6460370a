"""Server commands on the router: COMMAND (answered from the command table), TIME, SHUTDOWN,
SAVE and the like (INFO is in ``shardis.router.info``, CONFIG in ``shardis.router.config``)."""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from typing import Any

from shardis import errors
from shardis.commands import COMMANDS, Command, all_commands, find, getkeys, help_reply
from shardis.errors import ReplyError
from shardis.glob import glob_match
from shardis.resp import OK, SetReply, Status
from shardis.router import debug as debug_extras
from shardis.router.registry import DEFERRED, Plan, coordinated, router_command

log = logging.getLogger("shardis.router")

SHUTDOWN_ERROR = "ERR Errors trying to SHUTDOWN. Check logs."

# COMMAND -------------------------------------------------------------------------------------


def _search_reply(kind: str, spec: dict) -> dict:
    return {b"type": kind.encode(), b"spec": spec}


def _begin_search_reply(begin: tuple) -> dict:
    if begin[0] == "index":
        return _search_reply("index", {b"index": begin[1]})
    if begin[0] == "keyword":
        return _search_reply("keyword", {b"keyword": begin[1].encode(), b"startfrom": begin[2]})
    return _search_reply("unknown", {})


def _find_keys_reply(find: tuple) -> dict:
    if find[0] == "range":
        return _search_reply("range", {b"lastkey": find[1], b"keystep": find[2],
                                       b"limit": find[3]})
    if find[0] == "keynum":
        return _search_reply("keynum", {b"keynumidx": find[1], b"firstkey": find[2],
                                        b"keystep": find[3]})
    return _search_reply("unknown", {})


def key_flags_reply(bits: int) -> SetReply:
    """Key-spec flags as Redis's ``addReplyFlagsForKeyArgs``: a set of status replies."""
    return SetReply(Status(name.encode()) for name in getkeys.flag_names(bits))


@functools.cache
def key_specs_reply(fullname: str) -> SetReply:
    """COMMAND INFO's key specs field, Redis's ``addReplyCommandKeySpecs``: a set of maps
    (notes first when there are some, then flags, begin_search, find_keys) from Redis's own
    key specs (``shardis.commands.keyspecs``)."""
    entries = []
    for spec in getkeys.key_specs(fullname):
        entry: dict = {b"notes": spec.notes.encode()} if spec.notes is not None else {}
        entry[b"flags"] = key_flags_reply(spec.flags)
        entry[b"begin_search"] = _begin_search_reply(spec.begin)
        entry[b"find_keys"] = _find_keys_reply(spec.find)
        entries.append(entry)
    return SetReply(entries)


def command_info(spec: Command) -> list:
    """One command's COMMAND INFO entry, Redis 7's ten fields (``may_replicate`` is hidden,
    as Redis hides it).  Like Redis's ``addReplyCommandSubCommands``, a command without
    subcommands answers an empty set for them, one with subcommands an array."""
    subcommands = _unique(spec.subcommands)
    return [
        spec.fullname.encode(),
        spec.arity,
        SetReply(Status(flag.encode()) for flag in spec.flags if flag != "may_replicate"),
        spec.first_key,
        spec.last_key,
        spec.step,
        SetReply(Status(cat.encode()) for cat in spec.acl),
        SetReply(tip.encode() for tip in spec.tips),
        key_specs_reply(spec.fullname),
        [command_info(sub) for sub in subcommands] if subcommands else SetReply(),
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


def listed_commands() -> list[Command]:
    """What COMMAND LIST lists, as Redis 7.0: every command, each followed by its
    subcommands (``config``, ``config|get``...).  COMMAND COUNT counts the commands only."""
    listed = []
    for spec in public_commands():
        listed.append(spec)
        listed += [sub for sub in _unique(spec.subcommands) if "internal" not in sub.flags]
    return listed


@router_command("command|list")
def command_list(router: Any, client: Any, args: list[bytes]) -> object:
    listed = listed_commands()
    if len(args) == 2:
        return [spec.fullname.encode() for spec in listed]
    if len(args) == 5 and args[2].upper() == b"FILTERBY":
        kind, value = args[3].upper(), args[4]
        if kind == b"PATTERN":
            return [spec.fullname.encode() for spec in listed
                    if glob_match(value, spec.fullname.encode(), nocase=True)]
        if kind == b"ACLCAT":
            category = "@" + value.lower().decode(errors="replace")
            return [spec.fullname.encode() for spec in listed if category in spec.acl]
        if kind == b"MODULE":
            return []
    raise ReplyError(errors.SYNTAX)


def _docs(spec: Command) -> dict:
    """A command's COMMAND DOCS entry.  Summaries, arguments and history are not shipped: the
    group, and for a container its subcommands' entries, as Redis nests them."""
    entry: dict = {b"group": spec.group.encode()}
    subcommands = [sub for sub in _unique(spec.subcommands) if "internal" not in sub.flags]
    if subcommands:
        entry[b"subcommands"] = {sub.fullname.encode(): _docs(sub) for sub in subcommands}
    return entry


@router_command("command|docs")
def command_docs(router: Any, client: Any, args: list[bytes]) -> object:
    specs = public_commands() if len(args) == 2 else filter(None, map(find, args[2:]))
    return {spec.fullname.encode(): _docs(spec) for spec in specs}


def _getkeys_target(target: list[bytes]) -> Command | None:
    """Redis's ``lookupCommand`` for COMMAND GETKEYS: the (sub)command named, without
    checking arity; None if there is none (internal commands are not there)."""
    spec = COMMANDS.get(target[0]) or COMMANDS.get(target[0].lower())
    if spec is None or "internal" in spec.flags:
        return None
    if spec.subcommands and len(target) > 1:
        spec = spec.subcommands.get(target[1]) or spec.subcommands.get(target[1].lower())
        if spec is None or "internal" in spec.flags:
            return None
    return spec


def command_keys(target: list[bytes]) -> list[getkeys.KeyRef]:
    """Redis's ``getKeysSubcommandImpl``: the keys of the command line ``target`` with their
    flags, or its error (the command is looked up, then must have keys, then its arity)."""
    spec = _getkeys_target(target)
    if spec is None:
        raise ReplyError("ERR Invalid command specified")
    if not getkeys.has_keys(spec.fullname):
        raise ReplyError("ERR The command has no key arguments")
    if not spec.arity_ok(len(target)):
        raise ReplyError("ERR Invalid number of arguments specified for command")
    keys = getkeys.get_keys(spec.fullname, target)
    if not keys and "no_mandatory_keys" not in spec.flags:
        raise ReplyError("ERR Invalid arguments specified for command")
    return keys


@router_command("command|getkeys")
def command_getkeys(router: Any, client: Any, args: list[bytes]) -> object:
    target = args[2:]
    return [target[key.pos] for key in command_keys(target)]


@router_command("command|getkeysandflags")
def command_getkeysandflags(router: Any, client: Any, args: list[bytes]) -> object:
    """Each key with its flags, ``[[key, {flag...}], ...]`` (flags a set of status replies)."""
    target = args[2:]
    return [[target[key.pos], key_flags_reply(key.flags)] for key in command_keys(target)]


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
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
]


@router_command("command|help")
def command_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(COMMAND_HELP)


_SHUTDOWN_FLAGS = (b"nosave", b"save", b"now", b"force", b"abort")


def _shutdown_flags(args: list[bytes]) -> set[bytes]:
    flags = {arg.lower() for arg in args[1:]}
    if (any(flag not in _SHUTDOWN_FLAGS for flag in flags)
            or (b"abort" in flags and len(flags) > 1) or {b"nosave", b"save"} <= flags):
        raise ReplyError(errors.SYNTAX)
    return flags


def _shutdown_plan(router: Any, args: list[bytes]) -> Plan:
    flags = _shutdown_flags(args)
    if flags == {b"abort"}:
        raise ReplyError("ERR No shutdown in progress.")
    return Plan(workers=router.all_workers)


@coordinated("shutdown", _shutdown_plan)
async def shutdown(router: Any, client: Any, args: list[bytes]) -> object:
    """SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT], as Redis's ``prepareForShutdown`` on
    every worker at once: each flushes and fsyncs its AOF and, with save rules (or SAVE, and
    not NOSAVE), writes its ``dump.rdb``.  A worker that cannot save (or whose AOF, switched
    on at run time, has no base yet) fails the SHUTDOWN with Redis's error and everything goes
    on serving, unless FORCE.  Then the router stops (with ``shardis up``, the workers too: a
    worker that prepared does not save again when it is told to stop).  Like Redis, a
    successful SHUTDOWN has no reply, only the closed connection."""
    flags = _shutdown_flags(args)
    save = b"save" in flags or (bool(router.config.get("save")) and b"nosave" not in flags)
    request = [b"__shutdown", b"save" if save else b"nosave"]
    if b"force" in flags:
        request.append(b"force")
    replies = await router.call_all(request)
    errors_seen = [reply for reply in replies if type(reply) is ReplyError]
    busy = [reply for reply in errors_seen if reply.message.startswith("BUSY")]
    if busy:
        raise busy[0]
    # Without a save, only a worker's own refusal counts (one that is down has nothing to
    # flush); with one, a worker that could not save is a failure too.
    failed = [reply for reply in errors_seen if save or reply.message == SHUTDOWN_ERROR]
    if failed and b"force" not in flags:
        log.warning("Errors trying to shut down the server. Check the logs for more "
                    "information. event=shutdown_failed")
        raise ReplyError(SHUTDOWN_ERROR)
    log.warning("User requested shutdown... event=shutdown client_id=%d addr=%s",
                client.id, client.addr)
    client.closing = True
    if router.on_shutdown is not None:
        router.loop.call_soon(router.on_shutdown)
    return DEFERRED


# SAVE, BGSAVE, LASTSAVE, BGREWRITEAOF, DEBUG RELOAD ------------------------------------------
# Each worker snapshots its own keyspace (``shardis.worker.snapshot``).  The router sends the
# request to every worker in the same flush, so the files form one consistent cut: no command
# of this router runs on one worker between two workers' snapshots.
def _all_workers_plan(router: Any, args: list[bytes]) -> Plan:
    return Plan(workers=router.all_workers)


def _bgsave_plan(router: Any, args: list[bytes]) -> Plan:
    if len(args) > 2 or (len(args) == 2 and args[1].lower() != b"schedule"):
        raise ReplyError(errors.SYNTAX)
    return Plan(workers=router.all_workers)


@coordinated("save", _all_workers_plan)
async def save(router: Any, client: Any, args: list[bytes]) -> object:
    """SAVE: every worker writes ``DIR/worker-<i>/dump.rdb``; OK once all have."""
    for reply in await router.call_all([b"__save"]):
        if type(reply) is ReplyError:
            raise reply
    return OK


def _background_reply(replies: list[Any]) -> object:
    """One reply for a background job every worker was asked to start: the error when no
    worker took it, else "scheduled" if a worker will start it later, else the first reply."""
    errors_seen = [reply for reply in replies if type(reply) is ReplyError]
    if len(errors_seen) == len(replies):
        raise errors_seen[0]
    taken = [reply for reply in replies if type(reply) is not ReplyError]
    scheduled = [reply for reply in taken if bytes(reply).endswith(b"scheduled")]
    return Status(bytes(scheduled[0] if scheduled else taken[0]))


@coordinated("bgsave", _bgsave_plan)
async def bgsave(router: Any, client: Any, args: list[bytes]) -> object:
    """BGSAVE [SCHEDULE]: every worker forks a child that writes its snapshot (or, while it
    rewrites its AOF, schedules one with SCHEDULE, as Redis).  The error of a worker that
    could not start one is the reply when no worker started one."""
    return _background_reply(await router.call_all([b"__bgsave", *args[1:]]))


@coordinated("bgrewriteaof", _all_workers_plan)
async def bgrewriteaof(router: Any, client: Any, args: list[bytes]) -> object:
    """BGREWRITEAOF: every worker rewrites its AOF in a forked child (``AofRewriter``)."""
    return _background_reply(await router.call_all([b"__bgrewriteaof"]))


DEBUG_HELP = [
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    *debug_extras.HELP_OBJECT,
    "RELOAD [option ...]",
    "    Save the RDB on disk and reload it back to memory. Available options:",
    "    * MERGE: Merge the content of the RDB instead of flushing it (implies NOFLUSH).",
    "    * NOSAVE: the database will be loaded from an existing RDB file.",
    "    * NOFLUSH: the current database will not be flushed before loading.",
    "    Examples:",
    "    * DEBUG RELOAD: verify that the server is able to persist, flush and reload",
    "      the database.",
    "    * DEBUG RELOAD NOSAVE: replace the current database with the contents of an",
    "      existing RDB file.",
    "    * DEBUG RELOAD NOSAVE NOFLUSH MERGE: add the contents of an existing RDB",
    "      file to the database.",
    *debug_extras.HELP_AFTER_RELOAD,
]


def protected_allowed(setting: str, client: Any) -> bool:
    """Redis's ``allowProtectedAction``: ``yes``, or ``local`` for a loopback client."""
    if setting == "yes":
        return True
    if setting != "local" or client is None:
        return False
    host = str(client.addr).rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DEBUG_NOT_ALLOWED = ('ERR DEBUG command not allowed. If the enable-debug-command option is set to '
                     '"local", you can run it from a local connection, otherwise you need to set '
                     'this option in the configuration file, and then restart the server.')


def _debug_plan(router: Any, args: list[bytes]) -> Plan:
    if router.config.get("enable-debug-command", "no") == "no":
        raise ReplyError(DEBUG_NOT_ALLOWED)
    sub = args[1].lower()
    if sub == b"help" and len(args) == 2:
        return Plan()
    if sub in debug_extras.SUBCOMMANDS:  # SLEEP, OBJECT, SET-ACTIVE-EXPIRE
        return debug_extras.SUBCOMMANDS[sub][0](router, args)
    if sub != b"reload":
        raise ReplyError("ERR unknown subcommand or wrong number of arguments for "
                         f"'{args[1].decode(errors='replace')}'. Try DEBUG HELP.")
    for option in args[2:]:
        if option.lower() not in (b"merge", b"noflush", b"nosave"):
            raise ReplyError("ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE "
                             "options.")
    return Plan(workers=router.all_workers)


@coordinated("debug", _debug_plan)
async def debug(router: Any, client: Any, args: list[bytes]) -> object:
    """DEBUG RELOAD [MERGE] [NOFLUSH] [NOSAVE] (and DEBUG HELP): every worker saves its
    ``dump.rdb``, empties its keyspace and loads the file back, as Redis; no other DEBUG
    subcommand exists in shardis.  Refused unless ``enable-debug-command`` allows it."""
    if not protected_allowed(router.config.get("enable-debug-command", "no"), client):
        raise ReplyError(DEBUG_NOT_ALLOWED)
    if args[1].lower() == b"help":
        return help_reply(DEBUG_HELP)
    if args[1].lower() in debug_extras.SUBCOMMANDS:
        return await debug_extras.SUBCOMMANDS[args[1].lower()][1](router, client, args)
    for reply in await router.call_all([b"__debug_reload", *args[2:]]):
        if type(reply) is ReplyError:
            raise reply
    return OK


@coordinated("lastsave", _all_workers_plan)
async def lastsave(router: Any, client: Any, args: list[bytes]) -> object:
    """LASTSAVE: when every worker had a snapshot at least that recent (the oldest of the
    workers' last successful saves)."""
    replies = await router.call_all([b"__lastsave"])
    times = [reply for reply in replies if type(reply) is int]
    if not times:
        raise next(reply for reply in replies if type(reply) is ReplyError)
    return min(times)


@router_command("time")
def time_(router: Any, client: Any, args: list[bytes]) -> object:
    now = time.time_ns() // 1000
    return [b"%d" % (now // 1_000_000), b"%d" % (now % 1_000_000)]


# CONFIG --------------------------------------------------------------------------------------
# The CONFIG commands are in ``shardis.router.config``; modules that act on a directive
# register here what must happen when CONFIG SET changes it.

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


#: ``listener(name, value)`` called after CONFIG SET changed a directive workers keep
#: (``WORKER_DIRECTIVES``): ``shardis up``'s supervisor keeps the value for the workers it
#: restarts later.
WORKER_CONFIG_LISTENERS: list[Any] = []
