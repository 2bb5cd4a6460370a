"""Differential corpus: Redis 7 functions (FUNCTION *, FCALL, FCALL_RO), byte for byte against
real Redis 7.0, in RESP2 and RESP3.

Every script starts with FUNCTION FLUSH (FLUSHALL keeps the libraries).  Libraries here
register one function each where FUNCTION LIST shows them: Redis lists a library's functions
in its hash table's order, which a random seed decides.  With 3 workers the keys ``a``, ``h``
and ``c`` live on three different workers, so ``fcall_across_workers`` runs globally.
"""

from __future__ import annotations

from tests.differential import check, parametrize, script, sorted_

LIB = """#!lua name=mylib
local function set(keys, args) return redis.call('SET', keys[1], args[1]) end
redis.register_function('myset', set)
redis.register_function{function_name='myget', flags={'no-writes'}, description='reads',
  callback=function(keys, args) return redis.call('GET', keys[1]) end}
redis.register_function('boom', function(keys, args) return error('bad thing') end)
redis.register_function('boom2', function(keys, args) return redis.call('nosuch') end)
redis.register_function('usekeys', function(keys, args) return KEYS end)
redis.register_function('incrall', function(keys, args)
  local out = {}
  for i, key in ipairs(keys) do out[i] = redis.call('INCR', key) end
  return out
end)
redis.register_function('echo', function(keys, args) return {keys, args} end)
redis.register_function('resp3', function(keys, args)
  redis.setresp(3)
  return redis.call('HGETALL', keys[1])
end)
redis.register_function('writes_ro', function(keys, args) return redis.call('SET', keys[1], 1) end)
redis.register_function{function_name='ro_writer', flags={'no-writes'},
  callback=function(keys, args) return redis.call('SET', keys[1], 1) end}
"""

ONE = """#!lua name=one
redis.register_function{function_name='f1', description='the first',
  flags={'allow-oom', 'NO-WRITES', 'allow-cross-slot-keys', 'allow-stale', 'no-cluster'},
  callback=function() return 1 end}
"""
TWO = "#!lua name=two\nredis.register_function('f2', function() return 2 end)\n"
TWO_AGAIN = "#!lua name=two\nredis.register_function('f2b', function() return 22 end)\n"
ONE_DUMP = bytes.fromhex(
    "f5c340ba40d21f23216c7561206e616d653d6f6e650a72656469732e72656769737465725f6675066e6374"
    "696f6e7bc008005f60290c276631272c2064657363726970401f1f3d27746865206669727374272c0a2020"
    "666c6167733d7b27616c6c6f772d6f6f006d202e09274e4f2d575249544553400c80190e63726f73732d73"
    "6c6f742d6b657973e00118047374616c65400e056e6f2d636c75408c01277d405900632038046261636b3d"
    "c0911028292072657475726e203120656e647d0a0a00c39b43651765f706")
CLASH = "#!lua name=three\nredis.register_function('f1', function() return 3 end)\n"


def load_errors(*bodies: str) -> list[list[str]]:
    return [["FUNCTION", "LOAD", body] for body in bodies]


SCRIPTS = [
    script(
        "fcall_basics",
        ["FUNCTION", "FLUSH"],
        ["FUNCTION", "LOAD", LIB],
        ["FCALL", "myset", "1", "k", "v"],
        ["FCALL", "myget", "1", "k"],
        ["FCALL_RO", "myget", "1", "k"],
        ["FCALL_RO", "myset", "1", "k", "v"],
        ["FCALL", "ro_writer", "1", "k"],
        ["FCALL", "boom", "0"],
        ["FCALL", "boom2", "0"],
        ["FCALL", "usekeys", "0"],
        ["FCALL", "echo", "2", "a", "b", "x", "y", "z"],
        ["FCALL", "echo", "0"],
        ["HSET", "h", "f", "v"],
        ["FCALL", "resp3", "1", "h"],
        ["FCALL", "nosuch", "0"],
        ["FCALL", "nosuch", "x"],
        ["FCALL", "myget", "x", "k"],
        ["FCALL", "myget", "-1", "k"],
        ["FCALL", "myget", "3", "k"],
        ["FCALL"],
        ["FCALL", "myget"],
        ["FCALL_RO", "writes_ro", "1", "k"],
        ["GET", "k"],
    ),
    script(
        "fcall_across_workers",
        ["FUNCTION", "FLUSH"],
        ["FUNCTION", "LOAD", LIB],
        ["FCALL", "incrall", "3", "a", "h", "c"],
        ["FCALL", "incrall", "3", "a", "h", "c"],
        ["FCALL", "myset", "1", "h", "x"],
        ["FCALL", "myget", "1", "h"],
        ["MGET", "a", "h", "c"],
        ["MULTI"],
        ["FCALL", "incrall", "2", "a", "c"],
        ["FCALL", "myget", "1", "a"],
        ["EXEC"],
    ),
    script(
        "function_load_and_list",
        ["FUNCTION", "FLUSH"],
        ["FUNCTION", "LOAD", ONE],
        ["FUNCTION", "LOAD", ONE],
        ["FUNCTION", "LIST"],
        ["FUNCTION", "LIST", "WITHCODE"],
        ["FUNCTION", "LIST", "LIBRARYNAME", "O*"],
        ["FUNCTION", "LIST", "withcode", "libraryname", "nomatch*"],
        ["FUNCTION", "LOAD", "REPLACE", ONE],
        ["FUNCTION", "LOAD", TWO],
        ["FUNCTION", "LOAD", CLASH],
        sorted_("FUNCTION", "LIST"),
        ["FCALL", "f1", "0"],
        ["FCALL_RO", "f1", "0"],
        ["FCALL", "f2", "0"],
        ["FUNCTION", "LOAD", "REPLACE", TWO_AGAIN],
        ["FCALL", "f2", "0"],
        ["FCALL", "f2b", "0"],
        ["FUNCTION", "STATS"],
        ["FUNCTION", "DELETE", "two"],
        ["FUNCTION", "DELETE", "two"],
        ["FCALL", "f2b", "0"],
        ["FUNCTION", "LIST"],
        ["FUNCTION", "FLUSH", "ASYNC"],
        ["FUNCTION", "LIST"],
        ["FUNCTION", "STATS"],
    ),
    script(
        "function_load_errors",
        ["FUNCTION", "FLUSH"],
        *load_errors(
            "return 1",
            "#!lua",
            "#!lua\nx",
            "#!js name=x\nx",
            "#!lua name=x name=y\nx",
            "#!lua name=x foo=y\nx",
            "#!lua name=\nx",
            "#!lua name=a-b\nx",
            "#!lua name=t\nlocal = 1",
            "#!lua name=t\nreturn 1",
            "#!lua name=t\nlocal x = string.len('a')",
            "#!lua name=t\nredis.register_function('a1')",
            "#!lua name=t\nredis.register_function('a-1', function() return 1 end)",
            "#!lua name=t\nredis.register_function('a', function() end)\n"
            "redis.register_function('a', function() end)",
            "#!lua name=t\nredis.register_function{function_name='a1', "
            "callback=function() return 1 end, flags={'bogus'}}",
            "#!lua name=t\nredis.register_function{function_name='a1', "
            "callback=function() return 1 end, foo=1}",
            "#!lua name=t\nredis.register_function{callback=function() return 1 end}",
            "#!lua name=t\nredis.register_function{function_name='x'}",
            "#!lua name=t\nredis.register_function{function_name='x', callback=1}",
            "#!lua name=t\nredis.register_function{function_name={}, callback=1}",
            "#!lua name=t\nredis.register_function{function_name='x', "
            "callback=function() end, flags=1}",
            "#!lua name=t\nredis.register_function{[1]='x'}",
            "#!lua name=t\nredis.register_function(1, 2)",
            "#!lua name=t\nredis.register_function({}, function() end)",
            "#!lua name=t\nredis.register_function('a', function() end, 3)",
            "#!lua name=t\nredis.register_function()",
            "#!lua name=t\nerror('x')",
            "#!lua name=t\nredis.call('set', 'a', 'b')",
            "#!lua name=t\nx = 5",
            "#!lua name=t\nredis.log(redis.LOG_WARNING, 'loading')\n"
            "redis.register_function('v', function() return redis.REDIS_VERSION end)",
            "#!lua NAME=u\nredis.register_function(7, function() return 7 end)",
            "#!lua name=t\nwhile true do end",
        ),
        ["FCALL", "7", "0"],
        ["FUNCTION", "LOAD", "foo", "bar"],
        ["FUNCTION", "LOAD", "REPLACE"],
        ["FUNCTION", "LOAD", "replace", "replace", "x"],
        ["FUNCTION", "LOAD"],
        ["FUNCTION", "DELETE", "nope"],
        ["FUNCTION", "DELETE"],
        ["FUNCTION", "LIST", "LIBRARYNAME"],
        ["FUNCTION", "LIST", "foo"],
        ["FUNCTION", "LIST", "withcode", "withcode"],
        ["FUNCTION", "LIST", "libraryname", "x*", "libraryname", "y"],
        ["FUNCTION", "FLUSH", "bogus"],
        ["FUNCTION", "FLUSH", "a", "b"],
        ["FUNCTION", "KILL"],
        ["FUNCTION", "KILL", "x"],
        ["FUNCTION", "STATS", "x"],
        ["FUNCTION"],
        ["FUNCTION", "bogus"],
        ["FUNCTION", "HELP"],
    ),
    script(
        "function_dump_restore",
        ["FUNCTION", "FLUSH"],
        ["FUNCTION", "DUMP"],
        ["FUNCTION", "LOAD", ONE],
        ["FUNCTION", "DUMP"],
        ["FUNCTION", "RESTORE", "xyz"],
        ["FUNCTION", "RESTORE", "xyz", "bogus"],
        ["FUNCTION", "RESTORE", "a", "b", "c"],
        # ONE's DUMP payload as Redis 7.0 makes it (its code LZF-compressed)
        ["FUNCTION", "RESTORE", ONE_DUMP],
        ["FUNCTION", "RESTORE", ONE_DUMP],
        ["FUNCTION", "RESTORE", ONE_DUMP, "APPEND"],
        ["FUNCTION", "RESTORE", ONE_DUMP, "replace"],
        ["FCALL", "f1", "0"],
        ["FUNCTION", "LOAD", TWO],
        ["FUNCTION", "RESTORE", ONE_DUMP, "FLUSH"],
        ["FCALL", "f2", "0"],
        ["FUNCTION", "LIST"],
        ["FUNCTION", "LOAD", CLASH],
        ["FUNCTION", "DELETE", "one"],
        ["FUNCTION", "LOAD", CLASH],
        ["FUNCTION", "RESTORE", ONE_DUMP, "REPLACE"],
        ["FUNCTION", "RESTORE", ONE_DUMP[:-1] + b"x"],
        ["FUNCTION", "RESTORE", b"\x01" + ONE_DUMP[1:]],
        ["FUNCTION", "DELETE", "one"],
        ["FUNCTION", "LOAD", TWO],
        ["FUNCTION", "DUMP"],
        ["FUNCTION", "FLUSH"],
        ["FCALL", "f2", "0"],
    ),
]


@parametrize(SCRIPTS)
def test_functions(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
