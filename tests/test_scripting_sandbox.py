"""The Lua sandbox: no way out to Python or the machine, no way to change what another
client's script sees.  Escapes are tried against a real shardis; the sandbox's visible rules
(read-only globals and libraries, missing globals, bytecode refused) are compared byte for
byte with real Redis 7.0."""

from __future__ import annotations

import os
import tempfile

import pytest
import redis

from tests.differential import check, parametrize, script

#: The exploit reported against shardis: from redis.log to Python's os.system.
EXPLOIT = (
    "local T=redis.log.__self__.__class__.__class__ local g=redis.log.__func__.__globals__ "
    "local k=T(T.__dir__(T))(g) for i=0,99 do if tostring(k[i])=='logging' then "
    "return g[k[i]].os.system(ARGV[1]) end end"
)

#: Relatives of the exploit: each would reach a Python object's attributes, the Python
#: runtime, or the machine.  Each must fail or give nothing.
ESCAPES = [
    "return redis.call.__class__",
    "return redis.log.__globals__",
    "return redis.call.__call__",
    "return redis.sha1hex.__self__",
    "redis.call.__dict__ = 1",
    "return ().__class__.__base__.__subclasses__()",
    "return python.eval('1')",
    "return python.builtins.open('/etc/passwd')",
    "return getmetatable(redis.call).__index(redis.call, '__class__')",
    "return getmetatable(redis.call).__gc(redis.call)",
    "local ok, e = pcall(redis.log) return e.__traceback__",
    "local ok, e = xpcall(function() redis.log() end, function(e) return e end) "
    "return e.__traceback__.tb_frame",
    "local co = coroutine.create(function() redis.call('nosuch') end) "
    "local ok, e = coroutine.resume(co) return e.__class__",
    "return os.execute('true')",
    "return io.open('/etc/passwd')",
    "return require('os')",
    "return package.loadlib('libc.so.6', 'system')",
    "return debug.getregistry()",
    "return getfenv(0)",
    "return setfenv(1, {})",
    "return newproxy(true)",
    "return dofile('/etc/passwd')",
    "return loadfile('/etc/passwd')",
    "return loadstring(string.dump(function() return 1 end))()",
    "local done = false return load(function() if done then return nil end done = true "
    "return string.dump(function() return 1 end) end)()",
    "return getmetatable('').__index.rep.__self__",
]


def test_the_reported_exploit_fails(r):
    marker = os.path.join(tempfile.mkdtemp(prefix="sandbox-"), "pwned")
    with pytest.raises(redis.ResponseError) as info:
        r.eval(EXPLOIT, 0, f"touch {marker}")
    assert "attempt to index" in str(info.value)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("source", ESCAPES)
def test_escapes_fail(r, source):
    try:
        reply = r.eval(source, 0)
    except redis.ResponseError:
        return
    assert reply is None, f"{source!r} gave {reply!r}"


def test_the_worker_survives_the_escapes(r):
    for source in ESCAPES:
        try:
            r.eval(source, 0)
        except redis.ResponseError:
            pass
    assert r.eval("return redis.call('ping')", 0) == b"PONG"


@pytest.mark.parametrize("poison", [
    "redis.call = function() return 'pwned' end",
    "rawset(redis, 'call', function() return 'pwned' end)",
    "table.insert(redis, 'pwned')",
    "rawset(_G, 'ARGV2', 'pwned')",
    "getmetatable('').__index.upper = function() return 'pwned' end",
    "rawset(getmetatable(''), '__index', {upper = function() return 'pwned' end})",
    "setmetatable(string, {__index = function() return 'pwned' end})",
    "loadstring('redis = {call = function() return 1 end}')()",
    "table.sort(math, function() return true end)",
])
def test_no_script_changes_what_another_sees(r, poison):
    try:
        r.eval(poison, 0)
    except redis.ResponseError:
        pass
    assert r.eval("return redis.call('ping')", 0) == b"PONG"
    assert r.eval("return ('abc'):upper()", 0) == b"ABC"
    assert r.eval("return redis[1]", 0) is None
    assert r.eval("return type(math.floor)", 0) == b"function"


def test_memory_is_bounded(r):
    hog = ("local s = string.rep('x', 1024 * 1024) local t = {} "
           "for i = 1, 4096 do t[i] = s .. i end return #t")
    with pytest.raises(redis.ResponseError) as info:
        r.eval(hog, 0)
    assert "not enough memory" in str(info.value)
    assert r.eval("return #string.rep('x', 1000)", 0) == 1000


SANDBOX = [
    script(
        "globals_are_read_only",
        ["EVAL", "redis.call = nil", "0"],
        ["EVAL", "rawset(_G, 'x', 1)", "0"],
        ["EVAL", "x = 1", "0"],
        ["EVAL", "_G.x = 1", "0"],
        ["EVAL", "return x", "0"],
        ["EVAL", "setmetatable(_G, nil)", "0"],
        ["EVAL", "local t = {} t.x = 1 return t.x", "0"],
        ["EVAL", "local function f() return 2 end return f()", "0"],
        ["EVAL", "return type(_G)", "0"],
    ),
    script(
        "libraries_are_read_only",
        ["EVAL", "string.upper = nil", "0"],
        ["EVAL", "table.insert = 1", "0"],
        ["EVAL", "math.pi = 3", "0"],
        ["EVAL", "rawset(string, 'x', 1)", "0"],
        ["EVAL", "getmetatable('').__index = {}", "0"],
        ["EVAL", "local m = getmetatable('') m.x = 1", "0"],
        ["EVAL", "return type(getmetatable('').__index)", "0"],
        ["EVAL", "return ('abc'):upper()", "0"],
        ["EVAL", "return rawget(redis, 'call') ~= nil", "0"],
        ["EVAL", "local n = 0 for k, v in pairs(string) do n = n + 1 end return n", "0"],
        ["EVAL", "local n = 0 for k, v in pairs(table) do n = n + 1 end return n", "0"],
        ["EVAL", "return table.concat({'a', 'b'}, '-')", "0"],
        ["EVAL", "local t = {3, 1, 2} table.sort(t) table.insert(t, 4) return t", "0"],
    ),
    script(
        "missing_globals",
        *[["EVAL", f"return type({name})", "0"] for name in (
            "os", "io", "require", "package", "getfenv", "setfenv", "newproxy", "dofile",
            "loadfile", "print", "module", "python")],
        *[["EVAL", f"return type({name})", "0"] for name in (
            "coroutine", "gcinfo", "collectgarbage", "unpack", "select", "rawget", "rawequal",
            "load", "loadstring", "error", "pcall", "xpcall", "tostring", "tonumber", "next")],
        ["EVAL", "return _VERSION", "0"],
    ),
    script(
        "bytecode_is_refused",
        ["EVAL", "local f, e = loadstring(string.dump(function() return 1 end)) return e",
         "0"],
        ["EVAL", "return loadstring(string.dump(function() return 1 end))", "0"],
        ["EVAL", "return type(loadstring('return 1'))", "0"],
        ["EVAL", "return loadstring('return 1 + 1')()", "0"],
        ["EVAL", "return type(string.dump)", "0"],
    ),
    script(
        "errors_reach_scripts_as_tables",
        ["EVAL", "local co = coroutine.create(function() redis.call('nosuch') end) "
                 "local ok, e = coroutine.resume(co) return type(e)", "0"],
        ["EVAL", "local ok, e = xpcall(function() redis.call('nosuch') end, "
                 "function(e) return type(e) end) return e", "0"],
        ["EVAL", "local ok, e = xpcall(function() redis.call('nosuch') end, "
                 "function(e) return e.err end) return e", "0"],
        ["EVAL", "return {pcall(redis.call, 'nosuch')}", "0"],
        ["EVAL", "return tostring(getmetatable(redis))", "0"],
    ),
]


@parametrize(SANDBOX)
def test_sandbox_matches_redis(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)


def test_errors_raised_inside_coroutines_leave_the_worker_sound(r):
    """A Python error raised into a coroutine must not keep Lua objects bound to that
    coroutine alive after Lua collected it (that was a use-after-free: a segfault later)."""
    churn = (
        "for i = 1, 30 do "
        "  local co = coroutine.create(function() redis.call('get', {}) end) "
        "  coroutine.resume(co) "
        "  co = coroutine.create(function() redis.call('nosuch') end) "
        "  coroutine.resume(co) "
        "  pcall(function() return redis.call.x end) "
        "end "
        "collectgarbage() return 1"
    )
    for _ in range(60):
        assert r.eval(churn, 0) == 1
    assert r.eval("return redis.call('ping')", 0) == b"PONG"
