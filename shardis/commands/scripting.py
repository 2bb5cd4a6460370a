"""Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT — the table entries and the
worker side.

Engine
    Real Lua through ``lupa``.  Redis embeds Lua 5.1, so we use ``lupa.lua51`` when the installed
    lupa provides it (lupa 2.x wheels do) and fall back to lupa's default runtime otherwise;
    lupa is imported by the first script a process runs.  Every worker has its own interpreter and
    its own sha1 -> script cache (:class:`ScriptEngine`), like every node of a Redis Cluster.

Where a script runs
    On the worker of its first key (``shardis.router.scripting`` decides and explains the
    modes).  ``redis.call`` runs a command on that worker's keyspace through the shard's
    general path (:meth:`Shard.run_inside`), so effects, WATCH versions and keyspace
    notifications apply as for any command; clients blocked on keys the script fed are served
    right after the script, never in the middle of it (Redis's order).  A command on another
    worker's keys: in *global mode* (``__script_global``: the router gated every worker) it
    runs there through the router (``WorkerServer.remote_call``; a multi-key command over
    several workers is split and merged, ``_split_call``); in *local mode* the script is
    stopped, what it wrote is put back from its journal (the keys it wrote, as they were), and
    the router runs it again globally (``RETRY_GLOBAL``).  To know which keys are local the
    worker must know how many workers there are: the router sends ``__script_topology
    <count>`` ahead of every EVAL (same link, so it arrives first).

Conversions follow ``script_lua.c`` exactly (both directions, RESP2 and ``redis.setresp(3)``),
and error replies follow Redis 7.0's format (``ERR user_script:1: ... script: <sha>, on
@user_script:1.``), built by an error handler written like Redis's ``__redis__err__handler``.

Libraries
    Redis's bundled ``cjson``, ``cmsgpack``, ``bit`` and ``struct`` are Python functions
    written after their C code (``shardis.commands.lualibs``), exposed like the ``redis``
    functions (through ``_lua_entry``) and read-only like every library.  The sandbox gives
    them what a C function would know: their name and the caller's line for argument errors
    (``caller``, which follows a running coroutine), and ``cjson.null``, a userdata printing
    as Redis's NULL lightuserdata.

Differences from Redis that remain (also in the report of the change that added this):

* The sandbox (see ``_BOOTSTRAP``) makes globals and libraries read-only with proxies, as
  Redis 7 does with its patched Lua: ``#`` and ``unpack`` on a library table see nothing.
  The ``redis`` and library functions are Python callables; the sandbox's ``type`` and
  ``tostring`` show them as C functions (``function``, ``function: 0x...``), but being Lua
  functions themselves, ``return type()`` (no argument, in a tail call) reports its error
  without the caller's line.
* A ``-0`` passed straight to a Python function arrives as ``0`` (lupa converts integral
  numbers to ints): ``cjson.encode(-0)`` is ``0`` (Redis: ``-0``); inside a table it is kept.
* A global script (keys on several workers) waiting for a call on another worker runs no
  Lua meanwhile, so SCRIPT KILL and BUSY replies wait for that call (one round trip); and
  SCRIPT KILL, gated like every command while a global script holds every worker, reaches it
  only between scripts.
* ``debug`` reads as nil instead of failing as an undefined global (lupa's error path looks
  it up), and a Lua error that is not a string or table says less than Redis's
  "Error running script" text.
* ``math.random`` is Lua's own, not Redis's deterministic one.
* Router-only commands (CLIENT, CONFIG, INFO...) cannot be called from a script; PING, ECHO
  and TIME are answered by the worker.  Commands over all keys (DBSIZE, KEYS, FLUSHALL) see
  only the script's worker, as on a Redis Cluster node.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from shardis import errors
from shardis.commands import COMMANDS, Command, Fanout, command, container, keys_after_numkeys
from shardis.commands.keys import dump_value
from shardis.commands.lualibs import Libs, LuaError
from shardis.commands.strings import parse_int
from shardis.errors import ReplyError
from shardis.resp import (
    NULL_ARRAY,
    OK,
    HumanDouble,
    Pairs,
    Push,
    Raw,
    SetReply,
    Status,
    Verbatim,
    format_double,
    parse_reply,
)
from shardis.slots import SlotMap

log = logging.getLogger("shardis.worker")

#: lupa's module, imported by the first script a worker runs (see ``_load_lupa``).
_lupa: Any = None


def _load_lupa() -> Any:
    """Import lupa on first use: the Lua runtime costs ~4.5 MB of resident memory in every
    process that imports it, and the router and most workers never run a script."""
    global _lupa
    if _lupa is None:
        try:  # Redis embeds Lua 5.1: use the same language when lupa ships it.
            import lupa.lua51 as module
        except ImportError:  # pragma: no cover - depends on the installed lupa
            import lupa as module  # type: ignore[no-redef]
        _lupa = module
    return _lupa

S = "scripting"
NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."
NON_LOCAL_KEY = "Script attempted to access a non local key in a cluster node"
NUMKEYS_NEGATIVE = "ERR Number of keys can't be negative"
NOTBUSY = "NOTBUSY No scripts in execution right now."
UNKILLABLE = (
    "UNKILLABLE Sorry the script already executed write commands against the dataset. You "
    "can either wait the script termination or kill the server in a hard way using the "
    "SHUTDOWN NOSAVE command."
)
#: A full Lua garbage collection every this many scripts, or when the heap passes this size.
GC_PERIOD = 50
GC_HEAP_BYTES = 64 * 1024 * 1024
#: A script that met another worker's key on a worker it ran alone on: undone, to run again
#: with every worker gated (the router intercepts this reply; a client never sees it).
RETRY_GLOBAL = "SHARDISGLOBAL the script touched keys of another worker: run it globally"
#: A script's command whose keys are on several workers (a multi-worker script runs each
#: command on the worker of its keys).
SPLIT_CALL = ("ERR shardis: a command called from a script must have all its keys on one "
              "worker (split it, or use a {hash tag})")
BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
#: BUSY while a function (FCALL) runs.
BUSY_FUNCTION = ("BUSY Redis is busy running a script. You can only call FUNCTION KILL or "
                 "SHUTDOWN NOSAVE.")
RO_WITH_WRITE_FLAG = "ERR Can not execute a script with write flag using *_ro command."
NUMKEYS_TOO_BIG = "ERR Number of keys can't be greater than number of args"
#: Bound of a worker's Lua heap (scripts, their data and the script cache): past it a script
#: fails with Lua's "not enough memory" instead of taking the worker's memory.
LUA_MAX_MEMORY = 512 * 1024 * 1024
LLONG_MIN = -(1 << 63)
LLONG_MAX = (1 << 63) - 1

#: Redis's text minus SCRIPT DEBUG, which shardis does not have.
SCRIPT_HELP = [
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
]

#: Redis's shebang flags (``#!lua flags=no-writes,...``) that shardis knows.
SHEBANG_FLAGS = frozenset(
    (b"no-writes", b"allow-oom", b"allow-stale", b"no-cluster", b"allow-cross-slot-keys")
)


def sha1hex(body: bytes) -> str:
    import hashlib  # here, not at the top: _hashlib maps OpenSSL (~3 MB) into every process

    return hashlib.sha1(body).hexdigest()


def parse_numkeys(args: list[bytes]) -> int:
    """EVAL's numkeys with Redis's checks and errors, in Redis's order."""
    numkeys = parse_int(args[2])
    if numkeys > len(args) - 3:
        raise ReplyError(NUMKEYS_TOO_BIG)
    if numkeys < 0:
        raise ReplyError(NUMKEYS_NEGATIVE)
    return numkeys


# The Lua side: the sandbox, the error handler and Redis's pcall, loaded under the chunk name
# "=shardis" so the error handler can skip these frames and point at the user's line, as Redis
# does.
#
# The sandbox, as sealed as Redis 7.0's (which patches Lua with read-only tables; plain Lua
# 5.1 needs proxies):
#
# * The running thread's globals become an empty proxy ``P`` (``setfenv(0, P)``): every chunk
#   compiled afterwards (user scripts, and ``loadstring`` inside them) reads globals through
#   it and can never write one ("Attempt to modify a readonly table"); reading an undefined
#   global fails as in Redis.  The real globals table stays a local of this chunk.
# * The libraries (``redis``, ``string``, ``table``, ``math``, ``coroutine``) are read-only
#   proxies too, and so is the strings' metatable: nothing a script does can leak into
#   another client's script.
# * The C functions that write into a table given to them (``rawset``, ``setmetatable``,
#   ``table.insert``/``remove``/``sort``) refuse a proxy; ``rawget``, ``next``, ``pairs`` and
#   ``ipairs`` see through one, so reading works as in Redis.
# * No ``os``, ``io``, ``debug``, ``require``, ``package``, ``getfenv``/``setfenv``,
#   ``newproxy``, ``dofile``, ``loadfile``, ``print``, ``python``; ``loadstring`` and ``load``
#   refuse bytecode (it could break the VM's invariants).
# * Python objects: the ``redis`` API functions are Python callables (so that a user's
#   ``return redis.call(...)`` keeps its frame for error positions), but the runtime's
#   attribute filter refuses every attribute (see ``_no_attributes``), their metatable is
#   hidden, and errors raised in Python reach scripts as Lua tables or strings, never as
#   Python objects (``pcall``, ``xpcall`` and ``coroutine.resume`` convert them).
_BOOTSTRAP = r"""
local redis_api, unwrap, interrupt, libs = ...
local dbg = debug
local globals = _G
local lua_type, lua_tostring, lua_error = type, tostring, error
local lua_rawset, lua_rawget, lua_next = rawset, rawget, next
local lua_setmetatable, lua_getmetatable = setmetatable, getmetatable
local lua_pairs, lua_ipairs, lua_unpack, lua_maxn = pairs, ipairs, unpack, table.maxn
local lua_pcall, lua_xpcall, lua_loadstring, lua_setfenv = pcall, xpcall, loadstring, setfenv
local table_insert, table_remove, table_sort, table_concat = table.insert, table.remove,
                                                              table.sort, table.concat
local co_resume = coroutine.resume
local lua_newproxy, lua_select = newproxy, select
local READONLY = 'Attempt to modify a readonly table'

-- read-only proxy -> the real table behind it (weak keys: proxies live as long as used)
local real_of = lua_setmetatable({}, {__mode = 'k'})

local function deny_write() lua_error(READONLY, 2) end

local function protect(t)
  local proxy = {}
  real_of[proxy] = t
  lua_setmetatable(proxy, {__index = t, __newindex = deny_write, __metatable = false})
  return proxy
end

local function writable(t)
  if real_of[t] then lua_error(READONLY, 0) end
  return t
end

-- An error raised by one of the Python functions of the redis table reaches Lua as a Python
-- object; scripts get the Lua table it carries ({err=...}), or its text.
local function as_lua(err)
  if lua_type(err) == 'userdata' then
    local t = unwrap(err)
    if t ~= nil then return t end
    return lua_tostring(err)
  end
  return err
end

-- Redis 7's pcall: an error that is a table {err=...} comes back as its message.
local function redis_pcall(f, ...)
  local result = {lua_pcall(f, ...)}
  if not result[1] then
    local err = as_lua(result[2])
    if lua_type(err) == 'table' and lua_type(err.err) == 'string' then
      return false, err.err
    end
    return false, err
  end
  return lua_unpack(result, 1, lua_maxn(result))
end

local function redis_xpcall(f, handler)
  return lua_xpcall(f, function(err) return handler(as_lua(err)) end)
end

-- The coroutines being resumed, innermost last: a library function's argument errors name
-- it as the running coroutine's frame shows it.
local running = {}
local function tracked_resume(co, ...)
  running[#running + 1] = co
  local result = {co_resume(co, ...)}
  running[#running] = nil
  return result
end

local function redis_resume(co, ...)
  local result = tracked_resume(co, ...)
  if not result[1] then result[2] = as_lua(result[2]) end
  return lua_unpack(result, 1, lua_maxn(result))
end

-- Redis compiles chunks as text only: bytecode fails as the parser sees it.
local function text_loadstring(chunk, name)
  if lua_type(chunk) == 'string' and chunk:byte(1) == 27 then
    local shown = name or chunk:match('^[^%z\n\r]*')
    return nil, '[string "' .. shown .. '"]:1: unexpected symbol near \'char(27)\''
  end
  return lua_loadstring(chunk, name)
end

local function text_load(reader, name)
  if lua_type(reader) ~= 'function' then
    lua_error("bad argument #1 to '?' (function expected, got " .. lua_type(reader) .. ")", 2)
  end
  local pieces = {}
  while true do
    local piece = reader()
    if piece == nil or piece == '' then break end
    if lua_type(piece) ~= 'string' then return nil, 'reader function must return a string' end
    pieces[#pieces + 1] = piece
  end
  return text_loadstring(table_concat(pieces), name or '=(load)')
end

-- __redis__err__handler: where the error happened (skipping one C frame) and a table error.
local function err_handler(err)
  local info = dbg.getinfo(2, 'nSl')
  local level = 2
  if info and info.what == 'C' then
    level = 3
    info = dbg.getinfo(level, 'nSl')
  end
  while info and info.source == '=shardis' do  -- the sandbox's wrappers: C in Redis
    level = level + 1
    info = dbg.getinfo(level, 'nSl')
  end
  err = as_lua(err)
  if lua_type(err) ~= 'table' then
    err = {err = 'ERR ' .. lua_tostring(err)}
  end
  if info then
    err.source = info.source
    err.line = info.currentline
  end
  return err
end

-- Every HOOK_COUNT instructions the worker looks up from the script (Redis's
-- luaMaskCountHook): past busy-reply-threshold it answers other commands with BUSY, and a
-- SCRIPT KILL (or the worker stopping) ends the script.  Once killed, every line raises
-- again, so the script cannot swallow the error with pcall.
local HOOK_COUNT = 100000
local KILLED = {err = 'ERR Script killed by user with SCRIPT KILL...'}
local function killer()
  local caller = dbg.getinfo(2, 'S')
  if caller and caller.source ~= '=shardis' then lua_error(KILLED) end
end
local function hook()
  if interrupt() then
    dbg.sethook(killer, 'l')
    killer()
  end
end
-- Coroutines get the hook too (Lua 5.1 threads do not inherit debug.sethook's function).
local co_create = coroutine.create
local function hooked_create(f)
  local co = co_create(f)
  dbg.sethook(co, hook, '', HOOK_COUNT)
  return co
end
local function hooked_wrap(f)
  local co = hooked_create(f)
  return function(...)
    local result = tracked_resume(co, ...)
    if not result[1] then lua_error(as_lua(result[2]), 2) end
    return lua_unpack(result, 2, lua_maxn(result))
  end
end

local function run(f, keys, argv)
  for i = #running, 1, -1 do running[i] = nil end  -- left by a resume that failed midway
  lua_rawset(globals, 'KEYS', keys)
  lua_rawset(globals, 'ARGV', argv)
  dbg.sethook(hook, '', HOOK_COUNT)
  local ok, result = lua_xpcall(f, err_handler)
  dbg.sethook()
  return ok, result
end

local function compile(body)
  return lua_loadstring(body, '@user_script')
end

-- The libraries scripts see, each behind a read-only proxy.
local function copy(t)
  local c = {}
  for k, v in lua_pairs(t) do c[k] = v end
  return c
end
local tablelib = copy(table)
tablelib.insert = function(t, ...) return table_insert(writable(t), ...) end
tablelib.remove = function(t, ...) return table_remove(writable(t), ...) end
tablelib.sort = function(t, ...) return table_sort(writable(t), ...) end
local colib = copy(coroutine)
colib.resume = redis_resume
colib.create = hooked_create
colib.wrap = hooked_wrap
local stringlib = protect(string)

local safe = {
  redis = protect(redis_api), string = stringlib, table = protect(tablelib),
  math = protect(math), coroutine = protect(colib),
  pcall = redis_pcall, xpcall = redis_xpcall, loadstring = text_loadstring, load = text_load,
  rawset = function(t, k, v) return lua_rawset(writable(t), k, v) end,
  rawget = function(t, k) return lua_rawget(real_of[t] or t, k) end,
  next = function(t, k) return lua_next(real_of[t] or t, k) end,
  pairs = function(t) local r = real_of[t] if r then return lua_next, r, nil end
                      return lua_pairs(t) end,
  ipairs = function(t) return lua_ipairs(real_of[t] or t) end,
  setmetatable = function(t, mt) return lua_setmetatable(writable(t), mt) end,
  getmetatable = function(v)
    if real_of[v] or lua_type(v) == 'userdata' then return nil end
    return lua_getmetatable(v)
  end,
}
for name, value in lua_pairs(safe) do lua_rawset(globals, name, value) end
for _, name in lua_ipairs({'print', 'dofile', 'loadfile', 'debug', 'os', 'io', 'package',
                           'require', 'module', 'python', 'getfenv', 'setfenv', 'newproxy'}) do
  lua_rawset(globals, name, nil)
end

-- Strings' methods ("x"):upper() go through the read-only string library; the metatable
-- itself shows as a read-only proxy.
local string_mt = lua_getmetatable('')
string_mt.__index = stringlib
string_mt.__metatable = protect(string_mt)

-- The libraries (Python functions, see shardis.commands.lualibs), read-only like the others.
-- cjson.null is a userdata that prints as Redis's NULL lightuserdata does.
local null = lua_newproxy(true)
local null_mt = lua_getmetatable(null)
null_mt.__tostring = function() return 'userdata: (nil)' end
null_mt.__metatable = false
lua_rawset(libs.cjson, 'null', null)
for name, lib in lua_pairs(libs) do lua_rawset(globals, name, protect(lib)) end
local function is_null(value) return value == null end

-- For a library function's errors (luaL_argerror, luaL_where): its name as its caller sees
-- it, and the caller's "source:line: ".  Called from Python while the function runs.
local py_call = lua_rawget(lua_getmetatable(redis_api.call), '__call')
local function caller()
  local co = running[#running]
  local info, at
  if co then
    info, at = dbg.getinfo(co, 0, 'nf'), dbg.getinfo(co, 1, 'Sl')
  else
    info, at = dbg.getinfo(2, 'nf'), dbg.getinfo(3, 'Sl')
  end
  local name, namewhat, where = nil, nil, ''
  if info and info.func == py_call then name, namewhat = info.name, info.namewhat end
  if at and at.currentline > 0 then where = at.short_src .. ':' .. at.currentline .. ': ' end
  return name, namewhat, where
end

-- The Python functions (redis.*, the libraries) stand for Redis's C functions: type() says
-- 'function' and tostring() 'function: 0x...', as for a C function, never Python's repr.
local py_mt = lua_getmetatable(redis_api.call)
local dbg_getmetatable, lua_match = dbg.getmetatable, string.match
local function is_python(v)
  return lua_type(v) == 'userdata' and dbg_getmetatable(v) == py_mt
end
local function value_expected()  -- luaL_checkany's error, named as the caller calls it
  local info = dbg.getinfo(2, 'n')
  lua_error("bad argument #1 to '" .. (info and info.name or '?') .. "' (value expected)", 3)
end
lua_rawset(globals, 'type', function(...)
  if lua_select('#', ...) == 0 then value_expected() end
  local v = ...
  if is_python(v) then return 'function' end
  return lua_type(v)
end)
lua_rawset(globals, 'tostring', function(...)
  if lua_select('#', ...) == 0 then value_expected() end
  local v = ...
  if is_python(v) then
    return 'function: ' .. (lua_match(lua_tostring(v), ' at (0x%x+)>$') or 'builtin')
  end
  return lua_tostring(v)
end)

-- The Python objects' metatable (shared by all of them) is out of reach.
lua_rawset(py_mt, '__metatable', false)

-- Globals: reads of undefined names fail as in Redis; every write fails.
local proxy_globals = protect(globals)
lua_rawset(globals, '_G', proxy_globals)
lua_setmetatable(globals, {
  __index = function(_, name)
    if name == 'debug' then return nil end  -- lupa's own error path looks it up
    lua_error("Script attempted to access nonexistent global variable '"
              .. lua_tostring(name) .. "'", 2)
  end,
})
lua_setfenv(0, proxy_globals)

-- Functions (FUNCTION LOAD, FCALL).  A library's code runs once, at load, seeing only
-- Redis's load API (``redis.register_function``, ``redis.log``, the log levels and the
-- version); the functions it registers keep its environment, which reads the ordinary
-- globals once the load is over (Redis swaps its globals' __index the same way).  KEYS and
-- ARGV are EVAL's: a function gets its keys and arguments as parameters.
local loading = nil  -- the load API while a library's code runs
local function nonexistent(name)
  lua_error("Script attempted to access nonexistent global variable '"
            .. lua_tostring(name) .. "'", 3)
end
local function_env = lua_setmetatable({}, {
  __index = function(_, name)
    local value
    if loading then
      value = lua_rawget(loading, name)
    elseif name ~= 'KEYS' and name ~= 'ARGV' then
      value = lua_rawget(globals, name)
    end
    if value == nil and name ~= 'debug' then nonexistent(name) end
    return value
  end,
  __newindex = deny_write,
  __metatable = false,
})
local function load_api(register, log)
  local api = {register_function = register, log = log,
               LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
               REDIS_VERSION = redis_api.REDIS_VERSION,
               REDIS_VERSION_NUM = redis_api.REDIS_VERSION_NUM}
  lua_setmetatable(api, {__index = function(_, name) nonexistent(name) end})
  return {redis = protect(api)}
end
local LOAD_TIMEOUT = {err = 'ERR FUNCTION LOAD timeout'}
local function load_hook()
  if interrupt(true) then lua_error(LOAD_TIMEOUT) end
end
-- (true) or (false, error): compile a library's code and run it with ``api`` in sight.
local function load_library(body, api)
  local chunk, message = lua_loadstring(body, '@user_function')
  if not chunk then return false, message, true end
  lua_setfenv(chunk, function_env)
  loading = api
  dbg.sethook(load_hook, '', HOOK_COUNT)
  local ok, err = lua_pcall(chunk)
  dbg.sethook()
  loading = nil
  if not ok then return false, as_lua(err), false end
  return true, nil, false
end
local function run_function(f, keys, args)
  for i = #running, 1, -1 do running[i] = nil end
  dbg.sethook(hook, '', HOOK_COUNT)
  local ok, result = lua_xpcall(function() return f(keys, args) end, err_handler)
  dbg.sethook()
  return ok, result
end
local function is_function(value) return lua_type(value) == 'function' end
return run, compile, caller, is_null, null, load_api, load_library, run_function, is_function
"""


class LuaRaise(Exception):
    """Raised by a Python function of the ``redis`` table to raise a Lua error ``{err=...}``
    made from ``text``, as Redis's C functions do with lua_error.

    It carries text, never a Lua object: lupa keeps the last exception raised into Lua (and
    its traceback's frames) alive until the next one, and a Lua object made while a
    coroutine called Python is bound to that coroutine's state; freeing it after the
    coroutine was collected would touch freed memory.  The table is made when Lua asks
    for it (``ScriptEngine._unwrap``)."""

    def __init__(self, text: str) -> None:
        super().__init__("script error")
        self.text = text


class _Failure:
    """An error outcome of ``redis.call``/``pcall`` as plain Python (see :class:`LuaRaise`)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _lua_entry(function: Callable[..., object]) -> Callable[..., object]:
    """Wrap a Python function of the ``redis`` table so that what reaches Lua as an error
    holds no Lua object: the LuaRaise is raised again from a frame whose arguments (which
    may be Lua tables bound to a coroutine) are gone, outside any ``except`` (no context
    chained to it); any other exception is a bug, logged and turned into a script error."""

    def entry(*values: object) -> object:
        kind: type[Exception] = LuaRaise
        text: Any
        try:
            return function(*values)
        except LuaRaise as exc:
            text = exc.text
        except LuaError as exc:  # a library's error: a plain string for Lua (luaL_error)
            kind, text = LuaError, exc.text
        except MemoryError:  # lupa's LuaMemoryError too: the bound of the Lua heap
            kind, text = LuaError, b"not enough memory"
        except Exception:
            log.exception("script API call failed event=script_api_error")
            text = "internal error in the scripting API"
        del values
        raise kind(text)

    return entry


def _no_attributes(obj: object, name: object, is_setting: bool) -> object:
    """lupa's attribute filter: a script may call the ``redis`` API's Python functions but
    read or write no attribute of any Python object (``redis.call.__class__``,
    ``__globals__``... would lead to the interpreter and from there to the machine)."""
    raise AttributeError("attempt to index a function value")


class Script:
    """A compiled script and its shebang flags."""

    __slots__ = ("body", "function", "read_only", "shebang", "allow_oom")

    def __init__(self, body: bytes, function: Any, read_only: bool, shebang: bool,
                 allow_oom: bool = False) -> None:
        self.body = body
        self.function = function
        #: ``#!lua flags=no-writes``: writes are refused as in EVAL_RO.
        self.read_only = read_only
        #: declared flags with a shebang (Redis refuses EVAL_RO for such a script with writes).
        self.shebang = shebang
        #: ``allow-oom``: may write when memory is over maxmemory.
        self.allow_oom = allow_oom

    def denies_oom(self) -> bool:
        """Refused as a whole when out of memory: declared flags, neither ``allow-oom`` nor
        ``no-writes`` (a script without a shebang is checked command by command)."""
        return self.shebang and not (self.allow_oom or self.read_only)


class ScriptEngine:
    """One worker's Lua interpreter and script cache, and the state of the running script."""

    @property
    def db(self) -> Any:
        """The keyspace of the database the script's commands run in now."""
        return self.shard.db

    def __init__(self, shard: Any) -> None:
        self.shard = shard
        self.scripts: dict[str, Script] = {}
        #: how many workers there are (from the router's ``__script_topology``), for the
        #: non-local key check; 1 until told (a lone shard owns every key).
        self.slots = SlotMap(1)
        self.lua = _load_lupa().LuaRuntime(
            encoding=None, register_eval=False, register_builtins=False,
            unpack_returned_tuples=True, attribute_filter=_no_attributes,
            max_memory=LUA_MAX_MEMORY,
        )
        self._collect = self.lua.eval("function() collectgarbage('collect') end")
        #: scripts run since the last full collection (``_after_script``).
        self.since_collect = 0
        loader = self.lua.eval("loadstring")
        self._tostring = self.lua.eval("tostring")
        bootstrap = loader(_BOOTSTRAP.encode(), b"=shardis")
        if isinstance(bootstrap, tuple):  # pragma: no cover - (nil, message): a bug above
            raise RuntimeError(bootstrap[1])
        #: Redis's bundled libraries (cjson, cmsgpack, bit, struct).
        self.libs = Libs(self.lua, _lupa, _lua_entry)
        (self._run, self._compile, self.libs.caller, self.libs.is_null, self.libs.null,
         self.load_api, self.load_library, self._run_function,
         self.is_function) = bootstrap(self._redis_table(), _lua_entry(self._unwrap),
                                       _lua_entry(self._interrupt),
                                       self.lua.table_from(self.libs.tables()))
        #: the function libraries (``shardis.commands.functions.Libraries``), made on first use.
        self.functions: Any = None
        #: the monotonic time a library's load must end by (FUNCTION LOAD's 500 ms).
        self.load_deadline = 0.0
        #: the function being run (FCALL), None for EVAL: names BUSY and the kill rules.
        self.function_name: bytes | None = None
        #: the command running the script (FUNCTION STATS shows a running function's).
        self.running_args: list[bytes] = []
        self.libs.interrupt = self._interrupt
        #: busy-reply-threshold in seconds (from the router's ``__script_topology``).
        self.busy_after = 5.0
        # State of the script being run.
        #: the caller's ACL user (None: unrestricted), from ``__script_topology``.
        self.acl_user: Any = None
        self.resp = 2
        self.read_only = False
        self.started = 0.0
        #: past busy-reply-threshold: other commands get BUSY, SCRIPT KILL is heard.
        self.busy = False
        #: the script ran a write command: SCRIPT KILL can no longer stop it (UNKILLABLE).
        self.wrote = False
        #: the running script or function declared ``allow-oom``.
        self.allow_oom = False
        #: SCRIPT KILL (or the worker stopping) asked the script to end.
        self.killed = False
        #: the next script runs in global mode (``__script_global``): the router gated every
        #: worker for it, and a command on another worker's keys runs there (``remote_call``).
        self.global_mode = False
        #: local mode: each key the script wrote, as it was before (``dump_value``; None: it
        #: did not exist), to undo the script if it meets another worker's key; None once a
        #: write cannot be undone that way (a command without keys, e.g. FLUSHDB).
        self.journal: dict[tuple[int, bytes], bytes | None] | None = {}
        #: the script met another worker's key in local mode: it is stopped, undone, and the
        #: router runs it again in global mode (``RETRY_GLOBAL``).
        self.retry_global = False
        #: a script is running (commands can tell they are called from one: Redis's
        #: CLIENT_SCRIPT flag, which SORT looks at).
        self.running = False

    # Cache -------------------------------------------------------------------------------------
    def load(self, body: bytes) -> str:
        """Compile and cache ``body`` (if new); its sha1.  Raises Redis's compile errors."""
        sha = sha1hex(body)
        if sha in self.scripts:
            return sha
        read_only, shebang, skip = parse_shebang(body)
        allow_oom = _allows_oom(body, shebang, skip)
        # The shebang line is skipped but its newline kept: line numbers stay the user's.
        function = self._compile(body[skip:])
        if isinstance(function, tuple):  # loadstring's (nil, message)
            message = function[1]
            text = message.decode("utf-8", "surrogateescape") if message else ""
            raise ReplyError(f"ERR Error compiling script (new function): {text}")
        self.scripts[sha] = Script(body, function, read_only, shebang, allow_oom)
        return sha

    def flush(self) -> None:
        self.scripts.clear()
        self.libs.reset()

    # Running -----------------------------------------------------------------------------------
    def eval(self, args: list[bytes], by_sha: bool, read_only: bool) -> object:
        # ``__script_global`` is for this script only, even one that fails before it runs
        # (NOSCRIPT...): a flag left set would make the next script on this worker, a local
        # one, send its calls to the router as if gated, and wait forever for the answer.
        global_mode, self.global_mode = self.global_mode, False
        if by_sha and len(args[1]) != 40:
            raise ReplyError(NOSCRIPT)
        numkeys = parse_numkeys(args)
        if by_sha:
            script = self.scripts.get(args[1].decode("latin-1").lower())
            if script is None:
                raise ReplyError(NOSCRIPT)
            sha = args[1].decode("latin-1").lower()
        else:
            sha = self.load(args[1])
            script = self.scripts[sha]
        if read_only and script.shebang and not script.read_only:
            raise ReplyError(RO_WITH_WRITE_FLAG)
        self.allow_oom = script.allow_oom
        return self.execute(self._run, script.function, args, numkeys, global_mode,
                            read_only or script.read_only, sha, f"f_{sha}", None)

    def execute(self, runner: Any, function: Any, args: list[bytes], numkeys: int,
                global_mode: bool, read_only: bool, label: str, long_label: str,
                function_name: bytes | None) -> object:
        """Run a script (EVAL: ``runner`` is ``_run``) or a function (FCALL:
        ``_run_function``) over the keys and arguments of ``args``: the one path both take.
        ``label`` names it in error positions, ``long_label`` in "Error running script"."""
        keys = self.lua.table_from(args[3 : 3 + numkeys])
        argv = self.lua.table_from(args[3 + numkeys :])
        self.resp = 2
        self.read_only = read_only
        self.function_name = function_name
        self.running_args = args
        self.started = time.monotonic()
        self.busy = self.wrote = self.killed = self.retry_global = False
        self.journal = {}
        self.global_mode = global_mode
        caller_db = self.shard.db
        self.shard.begin_script()
        self.running = True
        try:
            ok, result = runner(function, keys, argv)
            if self.retry_global:
                self.shard.db = caller_db
                self._undo()
        finally:
            self.shard.db = caller_db  # a SELECT inside the script is the script's alone
            self.running = False
            self.global_mode = False
            self.function_name = None
            self.shard.end_script()
            if self.busy:
                log.warning("slow script finished event=script_done script=%s seconds=%.3f "
                            "killed=%s", label, time.monotonic() - self.started, self.killed)
            self.busy = False
            self._after_script()
            shard = self.shard
            if shard.blocking.ready:
                shard.serve_blocked()  # clients blocked on keys the script fed, after it
        if self.retry_global:
            raise ReplyError(RETRY_GLOBAL)
        if not ok:
            raise ReplyError(_script_error(result, label, long_label))
        return lua_to_reply(result, self.resp)

    def _after_script(self) -> None:
        """A full garbage collection between scripts every GC_PERIOD scripts (Redis's
        LUA_GC_CYCLE_PERIOD), after a killed script, or when the heap is large: a script that
        left millions of dead tables behind must not make the next one pay for them in the
        middle of an allocation, where no hook runs (no BUSY, no SCRIPT KILL)."""
        self.since_collect += 1
        if self.killed or self.since_collect >= GC_PERIOD or \
                (self.lua.get_memory_used() or 0) > GC_HEAP_BYTES:
            self.since_collect = 0
            self._collect()

    def _undo(self) -> None:
        """Put back every key the script wrote, as it was before the script (logged like any
        write: the AOF replays the script's writes, then this)."""
        shard = self.shard
        run = shard.run_inside
        for (number, key), payload in (self.journal or {}).items():
            shard.select(number)
            if payload is None:
                run([b"DEL", key])
            else:
                run([b"__restore", key, payload, b"1", b"copy"], internal=True)

    def _stop_for_global(self) -> tuple[bool, object]:
        """Local mode met another worker's key: stop the script (every later call fails,
        the hook ends it) and have the router run it again in global mode — unless a write
        cannot be undone, then the call fails as on a Redis Cluster node."""
        if self.journal is None:
            return False, NON_LOCAL_KEY
        self.retry_global = self.killed = True
        return False, RETRY_GLOBAL

    def _note_write(self, spec: Command, args: list[bytes]) -> None:
        """Local mode: remember how the keys this write touches were (``journal``)."""
        journal = self.journal
        if journal is None:
            return
        positions = spec.key_indexes(args)
        if not positions:
            self.journal = None  # FLUSHDB, SWAPDB...: nothing to put back by key
            return
        db = self.db
        for position in positions:
            entry = (db.index, args[position])
            if entry not in journal:
                journal[entry] = dump_value(db, args[position])

    # Busy scripts --------------------------------------------------------------------------
    def _interrupt(self, loading: bool = False) -> bool:
        """Called by the Lua hook every 100,000 instructions: True ends the script (or, with
        ``loading``, a library's code past FUNCTION LOAD's time limit).

        Past busy-reply-threshold the worker serves its link from here (``while_busy``):
        every other command is answered BUSY at once, SCRIPT KILL is heard.  Running Python
        here also lets a SIGTERM handler run, so a stuck script never keeps its worker alive.
        """
        if loading:
            return time.monotonic() > self.load_deadline or self.shard.stopping
        if self.killed:
            return True
        if not self.busy:
            if self.busy_after <= 0 or time.monotonic() - self.started < self.busy_after:
                return self.shard.stopping
            self.busy = True
            log.warning("slow script event=script_busy worker=%d threshold_ms=%d",
                        self.shard.index, int(self.busy_after * 1000))
        serve = self.shard.while_busy
        if serve is not None:
            serve()
        if self.shard.stopping:
            self.killed = True
        return self.killed

    def kill(self, by_function_kill: bool = False) -> object:
        """SCRIPT KILL (or FUNCTION KILL) heard while a script is busy: each kills its own
        kind only (Redis's ``scriptKill``)."""
        if not self.busy:
            raise ReplyError(NOTBUSY)
        if self.wrote:
            raise ReplyError(UNKILLABLE)
        running_function = self.function_name is not None
        if running_function != by_function_kill:
            raise ReplyError(BUSY_FUNCTION if running_function else BUSY)
        self.killed = True
        log.warning("Lua script killed by user with SCRIPT KILL. event=script_killed worker=%d",
                    self.shard.index)
        return OK

    # The redis table: Python functions, so that they are C functions for Lua (a user's
    # ``return redis.call(...)`` keeps its frame, and errors point at the user's line).
    def _redis_table(self) -> Any:
        lua = self.lua
        table = lua.table_from({
            b"call": _lua_entry(self._call),
            b"pcall": _lua_entry(self._pcall),
            b"sha1hex": _lua_entry(self._sha1hex),
            b"error_reply": _lua_entry(self._error_reply),
            b"status_reply": _lua_entry(self._status_reply),
            b"log": _lua_entry(self._log),
            b"setresp": _lua_entry(self._setresp),
            b"set_repl": _lua_entry(self._set_repl),
            b"replicate_commands": lambda *a: True,
            b"breakpoint": _lua_entry(lambda *a: False),  # no debugger (LDB) session, ever
            b"debug": _lua_entry(lambda *a: None),
            b"acl_check_cmd": _lua_entry(self._acl_check_cmd),
            b"LOG_DEBUG": 0, b"LOG_VERBOSE": 1, b"LOG_NOTICE": 2, b"LOG_WARNING": 3,
            b"REPL_NONE": 0, b"REPL_AOF": 1, b"REPL_SLAVE": 2, b"REPL_REPLICA": 2,
            b"REPL_ALL": 3, b"REDIS_VERSION": b"7.0.15", b"REDIS_VERSION_NUM": 0x07000F,
        })
        return table

    def error_table(self, text: str) -> Any:
        """luaPushErrorBuff: ``-CODE msg`` keeps its code, ``msg`` gets ERR; CR/LF trimmed."""
        code, message = "ERR", text
        if text.startswith("-"):
            head, space, rest = text[1:].partition(" ")
            code, message = (head, rest) if space else ("ERR", text[1:])
        message = message.strip("\r\n")
        raw = f"{code} {message}".encode("utf-8", "surrogateescape")
        return self.lua.table_from({b"err": raw})

    def _unwrap(self, error: object) -> object:
        """The Lua error table a Python error carries (None for other values)."""
        if isinstance(error, LuaRaise):
            return self.error_table(error.text)
        if isinstance(error, LuaError):
            return error.text
        return None

    def _raise(self, text: str) -> None:
        raise LuaRaise(text)

    def _call(self, *values: object) -> object:
        """``redis.call``: a command's reply, or a raised error."""
        outcome = self._generic(values)
        if type(outcome) is _Failure:
            raise LuaRaise(outcome.text)
        return outcome

    def _pcall(self, *values: object) -> object:
        """``redis.pcall``: a command's reply, or its error as a table."""
        outcome = self._generic(values)
        if type(outcome) is _Failure:
            return self.error_table(outcome.text)
        return outcome

    def _generic(self, values: tuple) -> object:
        """Run the command ``values`` names: its reply as a Lua value, or a :class:`_Failure`."""
        if not values:
            return _Failure("Please specify at least one argument for this redis lib call")
        args: list[bytes] = []
        for value in values:
            if isinstance(value, bytes):
                args.append(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                args.append(b"%.17g" % value)
            else:
                return _Failure("Lua redis lib command arguments must be strings or integers")
        ok, outcome = self._pycall(args)
        return outcome if ok else _Failure(outcome)  # type: ignore[arg-type]

    def _sha1hex(self, *values: object) -> bytes:
        if len(values) != 1:
            self._raise("wrong number of arguments")
        value = values[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = self._tostring(value)
        return _lua_sha1(value if isinstance(value, bytes) else b"")

    def _error_reply(self, *values: object) -> Any:
        if len(values) != 1 or not isinstance(values[0], bytes):
            return self.error_table("wrong number or type of arguments")
        text = values[0].decode("utf-8", "surrogateescape")
        return self.error_table(text if text.startswith("-") else "-" + text)

    def _status_reply(self, *values: object) -> Any:
        if len(values) != 1 or not isinstance(values[0], bytes):
            return self.error_table("wrong number or type of arguments")
        return self.lua.table_from({b"ok": values[0]})

    def _log(self, *values: object) -> None:
        if len(values) < 2:
            self._raise("redis.log() requires two arguments or more.")
        level = _lua_tonumber(values[0])
        if level is None:
            self._raise("First argument must be a number (log level).")
        if not 0 <= int(level) <= 3:  # type: ignore[arg-type]
            self._raise("Invalid debug level.")
        parts = [v if isinstance(v, bytes) else b"%.14g" % v for v in values[1:]
                 if isinstance(v, (bytes, int, float)) and not isinstance(v, bool)]
        _lua_log(int(level), b" ".join(parts))  # type: ignore[arg-type]

    def _setresp(self, *values: object) -> None:
        if len(values) != 1:
            self._raise("redis.setresp() requires one argument.")
        resp = _lua_tonumber(values[0])
        if resp is None or int(resp) not in (2, 3):
            self._raise("RESP version must be 2 or 3.")
        self.resp = int(resp)  # type: ignore[arg-type]

    def _set_repl(self, *values: object) -> None:
        if len(values) != 1:
            self._raise("redis.set_repl() requires two arguments.")
        flags = _lua_tonumber(values[0]) or 0
        if lua_number_to_int(flags) & ~3:  # PROPAGATE_AOF|PROPAGATE_REPL
            self._raise("Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or "
                        "REPL_NONE.")

    def _acl_check_cmd(self, *values: object) -> bool:
        """``redis.acl_check_cmd(command, args...)``: may the caller run it?"""
        if not values:
            self._raise("Please specify at least one argument for this redis lib call")
        args: list[bytes] = []
        for value in values:
            if isinstance(value, bytes):
                args.append(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                args.append(b"%.17g" % value)
            else:
                self._raise("Lua redis lib command arguments must be strings or integers")
        spec = _resolve(args)
        if spec is None:
            self._raise("Invalid command passed to redis.acl_check_cmd()")
        if self.acl_user is None:
            return True
        return not self.acl_user.check(spec, args)[0]

    def _select(self, args: list[bytes]) -> object:
        """SELECT inside a script: its later commands run in that database (the caller's
        stays as it was: ``execute`` puts it back)."""
        try:
            number = int(args[1])
        except ValueError:
            return ReplyError(errors.NOT_INTEGER)
        try:
            self.shard.select(number)
        except ReplyError as exc:
            return exc
        return OK

    def _remote(self, args: list[bytes]) -> object:
        """``args`` run on the worker of its keys (global mode), its reply as a value."""
        return parse_reply(self.shard.remote_call(args, self.resp))  # type: ignore[misc]

    def _split_call(self, spec: Command, args: list[bytes]) -> object:
        """A multi-key command (MGET, MSET, DEL...) whose keys are on several workers, in
        global mode: each worker's share runs there, merged as the router merges them."""
        if spec.fanout not in _SPLIT:
            return ReplyError(SPLIT_CALL)
        index = self.shard.index
        step = max(spec.step, 1)
        groups: dict[int, tuple[list[bytes], list[int]]] = {}
        for position, key_index in enumerate(spec.key_indexes(args)):
            worker = self.slots.worker_of(args[key_index])
            group = groups.setdefault(worker, ([args[0]], []))
            group[0].extend(args[key_index : key_index + step])
            group[1].append(position)
        parts = []
        for worker, (sub_args, positions) in groups.items():
            reply = self.shard.run_inside(sub_args) if worker == index else self._remote(sub_args)
            parts.append((positions, reply))
        return _merge_split(spec.fanout, parts, len(spec.key_indexes(args)))

    def _pycall(self, args: list[bytes]) -> tuple[bool, object]:
        """Run one command for the script: (True, Lua value) or (False, error text), where an
        error text starting with ``-`` carries its own code (Redis's luaPushError rules)."""
        spec = _resolve(args)
        if spec is None:
            return False, "Unknown Redis command called from script"
        if not spec.arity_ok(len(args)):
            return False, "Wrong number of args calling Redis command from script"
        if "noscript" in spec.flags:
            return False, "This Redis command is not allowed from script"
        if self.acl_user is not None:
            denied = self.acl_user.check(spec, args)[0]
            if denied:
                reason = errors.SCRIPT_ACL_REASONS[{1: 0, 2: 1}.get(denied, 2)]
                return False, "The user executing the script " + reason
        if "write" in spec.flags or "may_replicate" in spec.flags:
            if self.read_only:
                return False, "Write commands are not allowed from read-only scripts."
        if (self.shard.oom_at_start and not self.wrote and not self.allow_oom
                and "denyoom" in spec.flags):
            return False, "-" + errors.OOM  # Redis's scriptVerifyOOM: before the first write
        # only a write makes the script unkillable (PFCOUNT, may_replicate, does not)
        self.wrote = self.wrote or "write" in spec.flags
        if self.retry_global:
            return False, RETRY_GLOBAL
        index = self.shard.index
        worker_of = self.slots.worker_of
        owners = {worker_of(args[position]) for position in spec.key_indexes(args)}
        if owners and owners != {index}:
            if not self.global_mode or self.shard.remote_call is None:
                return self._stop_for_global()
            handler = getattr(spec, "script_handler", None)  # SORT: shardis.commands.sort
            if handler is not None:
                reply = _handled(handler, self, args)
            elif len(owners) > 1:
                reply = self._split_call(spec, args)
            else:
                reply = self._remote(args)
        elif spec.fullname == "select":
            reply = self._select(args)
        elif spec.op is None:
            reply = _router_only(spec, args)
        else:
            if not self.global_mode and "write" in spec.flags:
                self._note_write(spec, args)
            reply = self.shard.run_inside(args)
        if type(reply) is ReplyError:
            return False, "-" + reply.message
        return True, reply_to_lua(self.lua, reply, self.resp)


_SPLIT = (Fanout.SPLIT_CONCAT, Fanout.SPLIT_SUM, Fanout.SPLIT_ALL_OK)


def _handled(handler: Any, engine: ScriptEngine, args: list[bytes]) -> object:
    """A command's own way to run from a global script over keys of several workers."""
    try:
        return handler(engine, args)
    except ReplyError as exc:
        return exc


def _merge_split(fanout: Fanout, parts: list[tuple[list[int], object]], count: int) -> object:
    """The parts of a command split by worker, merged as the router merges them."""
    for _, reply in parts:
        if type(reply) is ReplyError:
            return reply
    if fanout is Fanout.SPLIT_SUM:
        return sum(reply for _, reply in parts)  # type: ignore[misc]
    if fanout is Fanout.SPLIT_ALL_OK:
        return OK
    merged: list[object] = [None] * count
    for positions, reply in parts:
        for position, item in zip(positions, reply):  # type: ignore[call-overload]
            merged[position] = item
    return merged


def _lua_tonumber(value: object) -> float | None:
    """Lua's lua_isnumber/lua_tonumber: numbers, and strings that read as numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, bytes):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _resolve(args: list[bytes]) -> Command | None:
    """The (sub)command ``args`` name, as Redis's lookupCommand finds it; None if unknown."""
    name = args[0]
    spec = COMMANDS.get(name) or COMMANDS.get(name.lower())
    if spec is None or "internal" in spec.flags:
        return None
    if spec.subcommands and len(args) >= 2:
        return spec.subcommands.get(args[1]) or spec.subcommands.get(args[1].lower())
    return spec


def _router_only(spec: Command, args: list[bytes]) -> object:
    """The few router-side commands a script may call, answered by the worker."""
    name = spec.fullname
    if name == "ping":
        return Status(b"PONG") if len(args) == 1 else args[1]
    if name == "echo":
        return args[1]
    if name == "time":
        now = time.time_ns() // 1000
        return [b"%d" % (now // 1_000_000), b"%d" % (now % 1_000_000)]
    return ReplyError(f"ERR shardis cannot run '{name}' from a script")


def _lua_sha1(text: bytes) -> bytes:
    return sha1hex(text).encode()


def _lua_log(level: int, text: bytes) -> None:
    """redis.log: to the worker's log, at the matching level."""
    logging.getLogger("shardis.script").log(
        (logging.DEBUG, logging.INFO, logging.INFO, logging.WARNING)[level],
        "%s", text.decode("utf-8", "replace"),
    )


def parse_shebang(body: bytes) -> tuple[bool, bool, int]:
    """(no-writes, has a shebang, bytes to skip) for ``#!lua flags=...``; Redis's errors."""
    if not body.startswith(b"#!"):
        return False, False, 0
    end = body.find(b"\n")
    if end < 0:
        raise ReplyError("ERR Invalid script shebang")
    parts = body[:end].split()
    if not parts:
        raise ReplyError("ERR Invalid engine in script shebang")
    if parts[0] != b"#!lua":
        raise ReplyError(f"ERR Unexpected engine in script shebang: {errors.arg_text(parts[0])}")
    read_only = False
    for part in parts[1:]:
        if not part.startswith(b"flags="):
            raise ReplyError(f"ERR Unknown lua shebang option: {errors.arg_text(part)}")
        for flag in part[6:].split(b","):
            if flag and flag not in SHEBANG_FLAGS:
                raise ReplyError(
                    f"ERR Unexpected flag in script shebang: {errors.arg_text(flag)}"
                )
            read_only = read_only or flag == b"no-writes"
    return read_only, True, end


# Conversions ---------------------------------------------------------------------------------
def reply_to_lua(lua: Any, value: object, resp: int) -> object:
    """A command's reply as Lua sees it, as if encoded in RESP ``resp`` and parsed back by
    Redis's redisProtocolToLuaType (nil bulk -> false, status -> {ok=...}, ...)."""
    kind = type(value)
    if kind is bytes or kind is bytearray:
        return bytes(value)  # type: ignore[arg-type]
    if kind is int:
        return value
    if kind is Status:
        return lua.table_from({b"ok": bytes(value)})  # type: ignore[arg-type]
    if value is None or value is NULL_ARRAY:
        return False if resp == 2 else None
    if kind is bool:
        return int(value) if resp == 2 else value  # type: ignore[arg-type]
    if kind is float:
        if resp == 2:
            return format_double(value)  # type: ignore[arg-type]
        return lua.table_from({b"double": value})
    if kind is ReplyError:
        return lua.table_from({b"err": value.message.encode()})  # type: ignore[attr-defined]
    if kind is dict:
        if resp == 2:
            flat = [x for pair in value.items() for x in pair]  # type: ignore[attr-defined]
            return _array(lua, flat, resp)
        inner = lua.table()
        for key, item in value.items():  # type: ignore[attr-defined]
            inner[reply_to_lua(lua, key, resp)] = reply_to_lua(lua, item, resp)
        return lua.table_from({b"map": inner})
    if kind is Pairs:
        if resp == 2:
            return _array(lua, [x for pair in value for x in pair], resp)  # type: ignore[attr-defined]
        return _array(lua, [list(pair) for pair in value], resp)  # type: ignore[attr-defined]
    if kind is SetReply and resp == 3:
        inner = lua.table()
        for item in value:  # type: ignore[attr-defined]
            inner[reply_to_lua(lua, item, resp)] = True
        return lua.table_from({b"set": inner})
    if kind in (list, tuple, SetReply, Push):
        return _array(lua, value, resp)  # type: ignore[arg-type]
    if kind is Verbatim:
        if resp == 2:
            return value.text  # type: ignore[attr-defined]
        inner = lua.table_from({b"string": value.text, b"format": value.fmt})  # type: ignore[attr-defined]
        return lua.table_from({b"verbatim_string": inner})
    if kind is HumanDouble and resp == 3:
        return lua.table_from({b"double": float(value)})  # type: ignore[arg-type]
    if kind is Raw or isinstance(value, bytes):
        return bytes(value)  # type: ignore[arg-type]
    return None


def _array(lua: Any, items: Any, resp: int) -> Any:
    table = lua.table()
    for index, item in enumerate(items, 1):
        converted = reply_to_lua(lua, item, resp)
        if converted is not None:  # a RESP3 null inside an array leaves a hole, as in Redis
            table[index] = converted
    return table


def lua_number_to_int(number: float) -> int:
    """``(long long)lua_tonumber()``: truncation; NaN and out-of-range give LLONG_MIN (x86)."""
    if isinstance(number, int):
        return number if LLONG_MIN <= number <= LLONG_MAX else LLONG_MIN
    if math.isnan(number) or math.isinf(number) or not LLONG_MIN <= number < 2.0**63:
        return LLONG_MIN
    return int(number)


def lua_to_reply(value: object, resp: int) -> object:
    """A script's return value as a reply value (luaReplyToRedisReply).

    ``resp`` is the script's own protocol (``redis.setresp``): with 2, true is 1 and false
    is a null; with 3 they are booleans.
    """
    kind = _lupa.lua_type(value)
    if kind is None:  # a Python value: nil, boolean, number or string
        if value is None:
            return None
        if value is True or value is False:
            if resp == 2:
                return 1 if value else None
            return value
        if isinstance(value, (int, float)):
            return lua_number_to_int(value)
        if isinstance(value, bytes):
            return value
        return None
    if kind != "table":
        return None
    table: Any = value
    err = table[b"err"]
    if isinstance(err, bytes):
        return ReplyError(_one_line(err).removeprefix("-"))
    ok = table[b"ok"]
    if isinstance(ok, bytes):
        return Status(ok.replace(b"\r", b" ").replace(b"\n", b" "))
    double = table[b"double"]
    if isinstance(double, (int, float)) and not isinstance(double, bool):
        return float(double)
    big = table[b"big_number"]
    if isinstance(big, bytes):
        return big.replace(b"\r", b" ").replace(b"\n", b" ")
    verbatim = table[b"verbatim_string"]
    if _lupa.lua_type(verbatim) == "table":
        fmt, text = verbatim[b"format"], verbatim[b"string"]
        if isinstance(fmt, bytes) and isinstance(text, bytes):
            return Verbatim(text, fmt[:3])
    mapping = table[b"map"]
    if _lupa.lua_type(mapping) == "table":
        return {_hashable(lua_to_reply(k, resp)): lua_to_reply(v, resp)
                for k, v in mapping.items()}
    members = table[b"set"]
    if _lupa.lua_type(members) == "table":
        return SetReply(lua_to_reply(k, resp) for k in members.keys())
    out = []
    index = 1
    while True:
        item = table[index]
        if item is None:
            break
        out.append(lua_to_reply(item, resp))
        index += 1
    return out


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _one_line(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape").replace("\r", " ").replace("\n", " ")


def _script_error(error: Any, label: str, long_label: str) -> str:
    """Redis 7.0's reply for a failed script: the message, then where it failed."""
    if _lupa.lua_type(error) != "table":
        text = error.decode("utf-8", "surrogateescape") if isinstance(error, bytes) else ""
        return _one_line(f"ERR Error running script {long_label}, {text[:100]}".encode())
    message = error[b"err"]
    text = _one_line(message) if isinstance(message, bytes) else ""
    source, line = error[b"source"], error[b"line"]
    if source is not None and line is not None:
        where = source.decode("utf-8", "surrogateescape") if isinstance(source, bytes) else ""
        text += f" script: {label}, on {where}:{int(line)}."
    return text.removeprefix("-")


# Engines, one per shard ----------------------------------------------------------------------
_ENGINES: dict[int, ScriptEngine] = {}


def engine_of(db: Any) -> ScriptEngine:
    """The engine of the shard whose keyspace is ``db`` (created on first use): one per
    shard, whatever database its scripts run in."""
    shard = db.shard
    engine = _ENGINES.get(id(shard))
    if engine is None or engine.shard is not shard:
        engine = _ENGINES[id(shard)] = ScriptEngine(shard)
    return engine


def existing_engine(db: Any) -> ScriptEngine | None:
    """The engine of ``db``'s shard if it has one (without making a Lua runtime)."""
    shard = getattr(db, "shard", None)
    engine = _ENGINES.get(id(shard))
    return engine if engine is not None and engine.shard is shard else None


# Table entries -------------------------------------------------------------------------------
_EVAL_FLAGS = "noscript stale skip_monitor no_mandatory_keys movablekeys"
_C = Fanout.COORDINATED


@command("eval", -3, _EVAL_FLAGS, fanout=_C, acl="slow scripting", group=S,
         key_finder=keys_after_numkeys(2))
def eval_command(db: Any, args: list[bytes]) -> object:
    return engine_of(db).eval(args, by_sha=False, read_only=False)


@command("evalsha", -3, _EVAL_FLAGS, fanout=_C, acl="slow scripting", group=S,
         key_finder=keys_after_numkeys(2))
def evalsha_command(db: Any, args: list[bytes]) -> object:
    return engine_of(db).eval(args, by_sha=True, read_only=False)


@command("eval_ro", -3, "readonly " + _EVAL_FLAGS, fanout=_C, acl="slow scripting", group=S,
         key_finder=keys_after_numkeys(2))
def eval_ro_command(db: Any, args: list[bytes]) -> object:
    return engine_of(db).eval(args, by_sha=False, read_only=True)


@command("evalsha_ro", -3, "readonly " + _EVAL_FLAGS, fanout=_C, acl="slow scripting",
         group=S, key_finder=keys_after_numkeys(2))
def evalsha_ro_command(db: Any, args: list[bytes]) -> object:
    return engine_of(db).eval(args, by_sha=True, read_only=True)


def _allows_oom(body: bytes, shebang: bool, skip: int) -> bool:
    """``allow-oom`` among the flags of the shebang line ``body[:skip]`` (options split at
    whitespace, flags at commas, as Redis's ``evalExtractShebangFlags``)."""
    return shebang and any(b"allow-oom" in part[6:].split(b",")
                           for part in body[:skip].split()[1:])


def _script_denies_oom(db: Any, args: list[bytes]) -> bool:
    """EVAL*'s share of ``Shard.may_grow_memory``: the script's declared flags decide.  A
    script not cached yet is judged by its shebang alone, as Redis's ``evalGetCommandFlags``:
    out of memory, a script that does not compile gets the OOM error first."""
    engine = engine_of(db)
    if args[0].lower().startswith(b"evalsha"):
        script = engine.scripts.get(args[1].decode("latin-1").lower())
        return script is not None and script.denies_oom()
    script = engine.scripts.get(sha1hex(args[1]))
    if script is not None:
        return script.denies_oom()
    try:
        read_only, shebang, skip = parse_shebang(args[1])
    except ReplyError:
        return False  # a shebang Redis cannot read: the command's flags, its own error next
    return shebang and not (read_only or _allows_oom(args[1], shebang, skip))


for _name in (b"eval", b"evalsha", b"eval_ro", b"evalsha_ro"):
    COMMANDS[_name].oom_flags = _script_denies_oom  # type: ignore[attr-defined]


container("script", -2, acl="slow", group=S)
command("help", 2, "loading stale", fanout=Fanout.ROUTER,
        acl="slow scripting", group=S, parent="script")(None)
command("debug", 3, "noscript", fanout=Fanout.ROUTER, acl="slow scripting", group=S,
        parent="script")(None)
command("kill", 2, "noscript allow_busy", fanout=_C, acl="slow scripting", group=S,
        parent="script", tips="request_policy:all_shards response_policy:one_succeeded")(None)


@command("load", 3, "noscript stale", fanout=_C, acl="slow scripting", group=S,
         parent="script", tips="request_policy:all_nodes response_policy:all_succeeded")
def script_load_command(db: Any, args: list[bytes]) -> object:
    return engine_of(db).load(args[2]).encode()


@command("exists", -3, "noscript", fanout=_C, acl="slow scripting", group=S, parent="script",
         tips="request_policy:all_shards response_policy:agg_logical_and")
def script_exists_command(db: Any, args: list[bytes]) -> object:
    scripts = engine_of(db).scripts
    return [int(sha.decode("latin-1").lower() in scripts) for sha in args[2:]]


@command("flush", -2, "noscript", fanout=_C, acl="slow scripting", group=S,
         parent="script", tips="request_policy:all_nodes response_policy:all_succeeded")
def script_flush_command(db: Any, args: list[bytes]) -> object:
    if len(args) > 3 or (len(args) == 3 and args[2].lower() not in (b"sync", b"async")):
        raise ReplyError("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    engine_of(db).flush()
    return OK


@command("__script_topology", -2, "internal", fanout=Fanout.SINGLE)
def internal_script_topology_command(db: Any, args: list[bytes]) -> object:
    """``__script_topology <workers> [<busy-reply-threshold ms> [<acl line>]]``: how many
    workers share the slots, when a running script makes the worker busy (the router sends it
    ahead of every script, so a restarted worker learns it again before it needs it), and the
    caller's ACL rules when it has limits (checked in ``_pycall``)."""
    count = int(args[1])
    engine = engine_of(db)
    engine.acl_user = _acl_user(args[3]) if len(args) > 3 else None
    if engine.slots.worker_count != count:
        engine.slots = SlotMap(count)
    if len(args) > 2:
        engine.busy_after = int(args[2]) / 1000
    return OK


@command("__script_global", 1, "internal", fanout=Fanout.SINGLE)
def internal_script_global_command(db: Any, args: list[bytes]) -> object:
    """The next script on this link runs in global mode (the router gated every worker)."""
    engine_of(db).global_mode = True
    return OK


@command("__script_kill", -1, "internal", fanout=Fanout.SINGLE)
def internal_script_kill_command(db: Any, args: list[bytes]) -> object:
    """SCRIPT KILL (``__script_kill``) or FUNCTION KILL (``__script_kill function``)
    reaching a worker that runs no script (a busy one answers it from inside the script:
    ``ScriptEngine.kill``)."""
    raise ReplyError(NOTBUSY)


_ACL_USERS: dict[bytes, Any] = {}


def _acl_user(line: bytes) -> Any:
    """The user an ACL LIST line describes, rebuilt once per distinct line."""
    user = _ACL_USERS.get(line)
    if user is None:
        from shardis.router.acl import user_from_line

        if len(_ACL_USERS) > 256:
            _ACL_USERS.clear()
        user = _ACL_USERS[line] = user_from_line(line)
    return user
