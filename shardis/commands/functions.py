"""Redis 7 functions: FUNCTION LOAD / LIST / DELETE / FLUSH / DUMP / RESTORE / STATS / KILL and
FCALL / FCALL_RO — the table entries and the worker side (Redis's functions.c and
function_lua.c).

Every worker holds every library (the router sends each FUNCTION command to all of them, see
``shardis.router.functions``), so an FCALL runs where its keys are, like EVAL, in the same Lua
sandbox (:class:`~shardis.commands.scripting.ScriptEngine`): local mode on the worker of its
keys, global mode when they span workers.

A library is its code, ``#!lua name=<lib>`` first.  Loading it runs the code once with only
Redis's load API in sight (``redis.register_function``, ``redis.log``, the log levels and the
version; 500 ms at most); each ``register_function`` adds a :class:`Function` (its Lua callback,
flags and description).  A load that fails leaves the libraries as they were.

Persistence: a change of the libraries is a write (``Keyspace.changed_server_state``): it
counts as dirty and goes to the AOF as the command itself; SAVE writes each library's code as
an RDB ``FUNCTION2`` record, which loading replays (``restore_saved``).  DUMP payloads are
Redis's: ``FUNCTION2`` records, the RDB version and a CRC64, LZF-compressed strings included,
so a payload moves between shardis and Redis either way.
"""

from __future__ import annotations

import io
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from shardis.commands import COMMANDS, Fanout, command, container, keys_after_numkeys
from shardis.commands.scripting import (
    RO_WITH_WRITE_FLAG,
    LuaRaise,
    _lua_entry,
    engine_of,
)
from shardis.errors import ReplyError
from shardis.glob import glob_match
from shardis.persist import rdb
from shardis.persist.aof import split_args
from shardis.persist.dump import verify_payload
from shardis.resp import OK, SetReply, Status

S = "scripting"
#: Redis's script flags, in its order (``scripts_flags_def``): FUNCTION LIST shows them so.
FLAGS = (b"no-writes", b"allow-oom", b"allow-stale", b"no-cluster", b"allow-cross-slot-keys")
NO_WRITES, ALLOW_OOM = 1, 2
#: How long a library's code may run at load (Redis's LOAD_TIMEOUT_MS).
LOAD_TIMEOUT_S = 0.5
BAD_NAME = ("Library names can only contain letters, numbers, or underscores(_) and must be "
            "at least one character long")
_NAME = re.compile(rb"[A-Za-z0-9_]+\Z")
#: FUNCTION DUMP's record type (RDB_OPCODE_FUNCTION2) and 7.0-rc's older one.
OP_FUNCTION2, OP_FUNCTION = rdb.OP_FUNCTION2, rdb.OP_FUNCTION

FUNCTION_HELP = [
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME "
    "argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored "
    "using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a "
    "restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, "
    "abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
    "replace the old",
    "      libraries with the new libraries (notice that even on this option there is a "
    "chance of failure",
    "      in case of functions name collision with another library).",
]


@dataclass(eq=False)
class Function:
    """A registered function: its Lua callback, flags (bit i: ``FLAGS[i]``), description."""

    name: bytes
    callback: Any
    flags: int = 0
    description: bytes | None = None

    @property
    def read_only(self) -> bool:
        return bool(self.flags & NO_WRITES)

    @property
    def allow_oom(self) -> bool:
        return bool(self.flags & ALLOW_OOM)


@dataclass(eq=False)
class Library:
    """A loaded library: its full code (shebang included) and its functions."""

    name: bytes
    code: bytes
    functions: dict[bytes, Function] = field(default_factory=dict)


class Libraries:
    """One worker's libraries and the index of their functions by name."""

    def __init__(self) -> None:
        self.libraries: dict[bytes, Library] = {}
        self.functions: dict[bytes, Function] = {}
        #: the library whose code is running (FUNCTION LOAD): where register_function adds.
        self.loading: Library | None = None

    def link(self, library: Library) -> None:
        self.libraries[library.name] = library
        self.functions.update(library.functions)

    def unlink(self, library: Library) -> None:
        del self.libraries[library.name]
        for name in library.functions:
            del self.functions[name]

    def clear(self) -> None:
        self.libraries.clear()
        self.functions.clear()

    def codes(self) -> list[bytes]:
        return [library.code for library in self.libraries.values()]


def libraries_of(db: Any) -> Libraries:
    """The libraries of the worker whose keyspace is ``db`` (its script engine's)."""
    engine = engine_of(db)
    if engine.functions is None:
        engine.functions = Libraries()
    return engine.functions  # type: ignore[no-any-return]


# Creating a library (functionsCreateWithLibraryCtx) -------------------------------------------
def parse_metadata(code: bytes) -> tuple[bytes, bytes]:
    """(library name, code to compile) from ``#!lua name=<name>``; Redis's errors."""
    if not code.startswith(b"#!"):
        raise ReplyError("ERR Missing library metadata")
    end = code.find(b"\n")
    if end < 0:
        raise ReplyError("ERR Invalid library metadata")
    parts = split_args(code[:end])
    if not parts:
        raise ReplyError("ERR Invalid library metadata")
    engine, name = parts[0][2:], None
    for part in parts[1:]:
        if part[:5].lower() == b"name=":
            if name is not None:
                raise ReplyError(
                    "ERR Invalid metadata value, name argument was given multiple times")
            name = part[5:]
            continue
        raise ReplyError("ERR Invalid metadata value given: " + _text(part))
    if name is None:
        raise ReplyError("ERR Library name was not given")
    if not _NAME.match(name):
        raise ReplyError("ERR " + BAD_NAME)
    if engine.lower() != b"lua":
        raise ReplyError(f"ERR Engine '{_text(engine)}' not found")
    return name, code[end:]


def create_library(db: Any, ctx: Libraries, code: bytes, replace: bool) -> bytes:
    """Load ``code`` into ``ctx`` (replacing a library of the same name if ``replace``); the
    library's name.  On error ``ctx`` is left as it was."""
    name, body = parse_metadata(code)
    old = ctx.libraries.get(name)
    if old is not None and not replace:
        raise ReplyError(f"ERR Library '{_text(name)}' already exists")
    if old is not None:
        ctx.unlink(old)
    try:
        library = Library(name, bytes(code))
        _run_library_code(db, ctx, library, body)
        if not library.functions:
            raise ReplyError("ERR No functions registered")
        for function_name in library.functions:
            if function_name in ctx.functions:
                raise ReplyError(f"ERR Function {_text(function_name)} already exists")
    except ReplyError:
        if old is not None:
            ctx.link(old)
        raise
    ctx.link(library)
    return name


def _run_library_code(db: Any, ctx: Libraries, library: Library, body: bytes) -> None:
    engine = engine_of(db)
    register = _lua_entry(lambda *values: _register(engine, ctx, values))
    api = engine.load_api(register, engine.lua.eval("redis.log"))
    engine.load_deadline = time.monotonic() + LOAD_TIMEOUT_S
    ctx.loading = library
    try:
        ok, error, compiling = engine.load_library(body, api)
    finally:
        ctx.loading = None
    if ok:
        return
    if compiling:
        raise ReplyError("ERR Error compiling function: " + _text(error or b""))
    if isinstance(error, bytes):
        message = "ERR " + _text(error)
    else:
        text = error[b"err"] if error is not None else None
        message = _text(text) if isinstance(text, bytes) else "ERR unknown error"
    raise ReplyError("ERR Error registering functions: " + message.replace("\r\n", " "))


def _register(engine: Any, ctx: Libraries, values: tuple) -> None:
    """``redis.register_function(name, callback)`` or ``redis.register_function{...}``."""
    library = ctx.loading
    if library is None:
        raise LuaRaise("redis.register_function can only be called on FUNCTION LOAD command")
    if not 1 <= len(values) <= 2:
        raise LuaRaise("wrong number of arguments to redis.register_function")
    function = (_named_args(engine, values[0]) if len(values) == 1
                else _positional_args(engine, *values))
    if not _NAME.match(function.name):
        raise LuaRaise(BAD_NAME)
    if function.name in library.functions:
        raise LuaRaise("Function already exists in the library")
    library.functions[function.name] = function


def _lua_string(engine: Any, value: object) -> bytes | None:
    """``lua_isstring`` + ``lua_tostring``: strings, and numbers as Lua prints them."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return engine._tostring(value)  # type: ignore[no-any-return]
    return None


def _positional_args(engine: Any, name: object, callback: object) -> Function:
    text = _lua_string(engine, name)
    if text is None:
        raise LuaRaise("first argument to redis.register_function must be a string")
    if not engine.is_function(callback):
        raise LuaRaise("second argument to redis.register_function must be a function")
    return Function(text, callback)


def _named_args(engine: Any, table: object) -> Function:
    if _lua_type(table) != "table":
        raise LuaRaise("calling redis.register_function with a single argument is only "
                       "applicable to Lua table (representing named arguments).")
    name = description = callback = None
    flags = 0
    for key, value in table.items():  # type: ignore[attr-defined]
        word = _lua_string(engine, key)
        if word is None:
            raise LuaRaise("named argument key given to redis.register_function is not a "
                           "string")
        word = word.lower()
        if word == b"function_name":
            name = _lua_string(engine, value)
            if name is None:
                raise LuaRaise("function_name argument given to redis.register_function "
                               "must be a string")
        elif word == b"description":
            description = _lua_string(engine, value)
            if description is None:
                raise LuaRaise("description argument given to redis.register_function must "
                               "be a string")
        elif word == b"callback":
            if not engine.is_function(value):
                raise LuaRaise("callback argument given to redis.register_function must be "
                               "a function")
            callback = value
        elif word == b"flags":
            if _lua_type(value) != "table":
                raise LuaRaise("flags argument to redis.register_function must be a table "
                               "representing function flags")
            flags = _read_flags(engine, value)
        else:
            raise LuaRaise("unknown argument given to redis.register_function")
    if name is None:
        raise LuaRaise("redis.register_function must get a function name argument")
    if callback is None:
        raise LuaRaise("redis.register_function must get a callback argument")
    return Function(name, callback, flags, description)


def _read_flags(engine: Any, table: Any) -> int:
    flags, index = 0, 1
    while True:
        value = table[index]
        if value is None:
            return flags
        text = _lua_string(engine, value)
        lowered = text.lower() if text is not None else None
        if lowered not in FLAGS:
            raise LuaRaise("unknown flag given")
        flags |= 1 << FLAGS.index(lowered)  # type: ignore[arg-type]
        index += 1


# Dump and restore -----------------------------------------------------------------------------
def dump_libraries(ctx: Libraries) -> bytes:
    """FUNCTION DUMP: a FUNCTION2 record per library, the RDB version, the CRC64."""
    writer = rdb.RdbWriter(io.BytesIO())
    data = b"".join(bytes([OP_FUNCTION2]) + writer.string(code) for code in ctx.codes())
    data += struct.pack("<H", rdb.RDB_VERSION)
    return data + struct.pack("<Q", rdb.crc64(data))


def payload_codes(payload: bytes) -> list[bytes]:
    """The library codes of a FUNCTION DUMP payload; Redis's errors for a bad one."""
    payload = bytes(payload)
    if not verify_payload(payload):
        raise ReplyError("ERR DUMP payload version or checksum are wrong")
    reader = rdb.RdbReader(io.BytesIO(payload[:-10]))
    codes = []
    try:
        while reader.pos < len(payload) - 10:
            kind = reader.byte()
            if kind == OP_FUNCTION2:
                codes.append(reader.string())
            elif kind == OP_FUNCTION:
                codes.append(_old_format_code(reader))
            else:
                raise ReplyError("ERR given type is not a function")
    except (rdb.RdbError, ValueError, struct.error, EOFError):
        raise ReplyError("ERR failed loading the given functions payload") from None
    return codes


def _old_format_code(reader: Any) -> bytes:
    """7.0-rc1/rc2's record (name, engine, description, code) as a 7.0 library code."""
    name, engine = reader.string(), reader.string()
    if reader.count():
        reader.string()
    return b"#!%b name=%b\n%b" % (engine, name, reader.string())


def restore_libraries(db: Any, ctx: Libraries, codes: list[bytes], policy: bytes) -> None:
    """FUNCTION RESTORE with ``policy`` (flush, append, replace): the payload's libraries
    load into a scratch set first, then join ``ctx`` as ``libraryJoin`` does."""
    scratch = Libraries()
    for code in codes:
        create_library(db, scratch, code, replace=False)
    if policy == b"flush":
        ctx.clear()
        for library in scratch.libraries.values():
            ctx.link(library)
        return
    replaced = []
    for name in scratch.libraries:
        old = ctx.libraries.get(name)
        if old is not None:
            if policy != b"replace":
                _relink(ctx, replaced)
                raise ReplyError(f"ERR Library {_text(name)} already exists")
            ctx.unlink(old)
            replaced.append(old)
    for function_name in scratch.functions:
        if function_name in ctx.functions:
            _relink(ctx, replaced)
            raise ReplyError(f"ERR Function {_text(function_name)} already exists")
    for library in scratch.libraries.values():
        ctx.link(library)


def _relink(ctx: Libraries, libraries: list[Library]) -> None:
    for library in libraries:
        ctx.link(library)


def restore_saved(db: Any, codes: list[bytes]) -> None:
    """Libraries read from an RDB file (at start, DEBUG RELOAD): loaded, replacing any of
    the same name, as Redis loads them."""
    if not codes:
        return
    ctx = libraries_of(db)
    for code in codes:
        create_library(db, ctx, code, replace=True)


def saved_codes(db: Any) -> list[bytes]:
    """The codes SAVE writes: empty, without building a Lua runtime, when none was loaded."""
    from shardis.commands.scripting import existing_engine

    engine = existing_engine(db)
    if engine is None or engine.functions is None:
        return []
    return engine.functions.codes()  # type: ignore[no-any-return]


def _lua_type(value: object) -> str | None:
    from shardis.commands import scripting

    return scripting._lupa.lua_type(value)  # type: ignore[no-any-return]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


# Table entries --------------------------------------------------------------------------------
_C = Fanout.COORDINATED
_FCALL_FLAGS = "noscript stale skip_monitor no_mandatory_keys movablekeys"


def fcall_generic(db: Any, args: list[bytes], read_only: bool) -> object:
    """FCALL / FCALL_RO: Redis's checks in its order, then the function runs as EVAL does."""
    engine = engine_of(db)
    global_mode, engine.global_mode = engine.global_mode, False  # for this call only
    function = libraries_of(db).functions.get(args[1])
    if function is None:
        raise ReplyError("ERR Function not found")
    try:
        numkeys = int(args[2])
    except ValueError:
        raise ReplyError("ERR Bad number of keys provided") from None
    if numkeys > len(args) - 3:
        raise ReplyError("ERR Number of keys can't be greater than number of args")
    if numkeys < 0:
        raise ReplyError("ERR Number of keys can't be negative")
    if read_only and not function.read_only:
        raise ReplyError(RO_WITH_WRITE_FLAG)
    label = _text(function.name)
    engine.allow_oom = function.allow_oom
    return engine.execute(engine._run_function, function.callback, args, numkeys, global_mode,
                          read_only or function.read_only, label, label, function.name)


@command("fcall", -3, _FCALL_FLAGS, fanout=_C, acl="slow scripting", group=S,
         key_finder=keys_after_numkeys(2))
def fcall_command(db: Any, args: list[bytes]) -> object:
    return fcall_generic(db, args, read_only=False)


@command("fcall_ro", -3, "readonly " + _FCALL_FLAGS, fanout=_C, acl="slow scripting",
         group=S, key_finder=keys_after_numkeys(2))
def fcall_ro_command(db: Any, args: list[bytes]) -> object:
    return fcall_generic(db, args, read_only=True)


def _function_denies_oom(db: Any, args: list[bytes]) -> bool:
    """FCALL*'s share of ``Shard.may_grow_memory`` (``scriptFlagsToCmdFlags``)."""
    function = libraries_of(db).functions.get(args[1])
    return function is not None and not function.flags & (ALLOW_OOM | NO_WRITES)


for _name in (b"fcall", b"fcall_ro"):
    COMMANDS[_name].oom_flags = _function_denies_oom  # type: ignore[attr-defined]


container("function", -2, acl="slow", group=S)
command("help", 2, "loading stale", fanout=Fanout.ROUTER, acl="slow scripting", group=S,
        parent="function")(None)
command("kill", 2, "noscript allow_busy", fanout=_C, acl="slow scripting", group=S,
        parent="function", tips="request_policy:all_shards response_policy:one_succeeded")(None)

_ALL = "request_policy:all_shards response_policy:all_succeeded"


@command("load", -3, "write denyoom noscript", fanout=_C, acl="write slow scripting", group=S,
         parent="function", tips=_ALL)
def function_load_command(db: Any, args: list[bytes]) -> object:
    replace = False
    position = 2
    while position < len(args) - 1:
        option = args[position]
        position += 1
        if option.lower() == b"replace":
            replace = True
            continue
        raise ReplyError("ERR Unknown option given: " + _text(option))
    name = create_library(db, libraries_of(db), args[position], replace)
    db.changed_server_state()
    return name


@command("delete", 3, "write noscript", fanout=_C, acl="write slow scripting", group=S,
         parent="function", tips=_ALL)
def function_delete_command(db: Any, args: list[bytes]) -> object:
    ctx = libraries_of(db)
    library = ctx.libraries.get(args[2])
    if library is None:
        raise ReplyError("ERR Library not found")
    ctx.unlink(library)
    db.changed_server_state()
    return OK


@command("flush", -2, "write noscript", fanout=_C, acl="write slow scripting", group=S,
         parent="function", tips=_ALL)
def function_flush_command(db: Any, args: list[bytes]) -> object:
    if len(args) > 3:
        raise ReplyError("ERR unknown subcommand or wrong number of arguments for 'FLUSH'. "
                         "Try FUNCTION HELP.")
    if len(args) == 3 and args[2].lower() not in (b"sync", b"async"):
        raise ReplyError("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    libraries_of(db).clear()
    db.changed_server_state()
    return OK


@command("restore", -3, "write denyoom noscript", fanout=_C, acl="write slow scripting",
         group=S, parent="function", tips=_ALL)
def function_restore_command(db: Any, args: list[bytes]) -> object:
    if len(args) > 4:
        raise ReplyError("ERR unknown subcommand or wrong number of arguments for 'RESTORE'. "
                         "Try FUNCTION HELP.")
    policy = args[3].lower() if len(args) == 4 else b"append"
    if policy not in (b"append", b"replace", b"flush"):
        raise ReplyError("ERR Wrong restore policy given, value should be either FLUSH, "
                         "APPEND or REPLACE.")
    restore_libraries(db, libraries_of(db), payload_codes(args[2]), policy)
    db.changed_server_state()
    return OK


@command("dump", 2, "noscript", fanout=_C, acl="slow scripting", group=S, parent="function")
def function_dump_command(db: Any, args: list[bytes]) -> object:
    return dump_libraries(libraries_of(db))


@command("list", -2, "noscript", fanout=_C, acl="slow scripting", group=S, parent="function",
         tips="nondeterministic_output_order")
def function_list_command(db: Any, args: list[bytes]) -> object:
    with_code, pattern = False, None
    position = 2
    while position < len(args):
        option = args[position]
        if not with_code and option.lower() == b"withcode":
            with_code = True
        elif pattern is None and option.lower() == b"libraryname":
            if position >= len(args) - 1:
                raise ReplyError("ERR library name argument was not given")
            position += 1
            pattern = args[position]
        else:
            raise ReplyError("ERR Unknown argument " + _text(option))
        position += 1
    out = []
    for library in libraries_of(db).libraries.values():
        if pattern is not None and not glob_match(pattern, library.name, nocase=True):
            continue
        entry: dict[bytes, object] = {
            b"library_name": library.name, b"engine": b"LUA",
            b"functions": [_function_entry(f) for f in library.functions.values()],
        }
        if with_code:
            entry[b"library_code"] = library.code
        out.append(entry)
    return out


def _function_entry(function: Function) -> dict[bytes, object]:
    return {b"name": function.name, b"description": function.description,
            b"flags": SetReply(Status(flag) for i, flag in enumerate(FLAGS)
                               if function.flags & (1 << i))}


@command("stats", 2, "noscript allow_busy", fanout=_C, acl="slow scripting", group=S,
         parent="function",
         tips="nondeterministic_output request_policy:all_shards response_policy:special")
def function_stats_command(db: Any, args: list[bytes]) -> object:
    return _stats(libraries_of(db), None)


def _stats(ctx: Libraries, running: object) -> dict[bytes, object]:
    return {b"running_script": running,
            b"engines": {b"LUA": {b"libraries_count": len(ctx.libraries),
                                  b"functions_count": len(ctx.functions)}}}


def busy_stats(engine: Any) -> object:
    """FUNCTION STATS heard while a script is busy (the worker answers from inside it): the
    running function, or BUSY for an EVAL script, as Redis."""
    from shardis.commands.scripting import BUSY

    if engine.function_name is None:
        raise ReplyError(BUSY)
    running = {b"name": engine.function_name, b"command": engine.running_args,
               b"duration_ms": int((time.monotonic() - engine.started) * 1000)}
    return _stats(engine.functions or Libraries(), running)


@command("__functions_sync", 2, "internal", fanout=Fanout.SINGLE)
def internal_functions_sync_command(db: Any, args: list[bytes]) -> object:
    """``__functions_sync <FUNCTION DUMP payload>``: a worker that (re)connected gets the
    server's libraries, if its own differ (it restarted without them): 1 if it changed."""
    ctx = libraries_of(db)
    if dump_libraries(ctx) == args[1]:
        return 0
    restore_libraries(db, ctx, payload_codes(args[1]), b"flush")
    db.changed_server_state()
    return 1
