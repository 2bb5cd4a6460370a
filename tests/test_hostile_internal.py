"""Hostile input for the surfaces maxmemory and the multi-host links added: the internal
commands ``__maxmemory``, ``__oom``, ``__ping`` (and ``__info``, ``__lost_replies``), the
batch code's step bit, MEMORY USAGE/STATS/DOCTOR and the maxmemory directives.

Three kinds of attacker:

* a client of the router: internal commands must be as unknown to it as to Redis, however it
  names them (directly, queued in MULTI, from a script or a function, through COMMAND GETKEYS,
  ACL rules) and the ones the router sends itself (a ping every second, ``__oom`` before a
  write across workers, ``__maxmemory`` on CONFIG SET) must not show in MONITOR, SLOWLOG or
  INFO commandstats; compared byte for byte with real Redis 7.0, keys on several workers;
* a client's garbage arguments to MEMORY and CONFIG SET maxmemory*: Redis's exact errors;
* a peer on a worker's ZeroMQ link (anyone who reaches a worker's port): malformed internal
  commands and every u16 command code get an error per command, never a crash, and never a
  wrong change of state (a negative ``__maxmemory`` would evict every key).

COMMAND GETKEYS/GETKEYSANDFLAGS get hostile command lines too (the new key specs).  What
these tests found outside this suite's files is kept as known divergences (xfail scripts, or
``xfail(strict=True)``): each names the module where the fix belongs.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import zmq

from shardis import errors, protocol
from shardis.commands.memory import parse_share
from shardis.errors import ReplyError
from shardis.worker.evict import draw, time_limit_us
from shardis.worker.replylog import ReplyLog
from shardis.worker.shard import Shard
from tests.differential import (
    check,
    normalized,
    parametrize,
    script,
    sleep,
    sorted_,
    type_only,
)
from tests.resp_client import RawClient, decode
from tests.servers import Server, free_port, start_redis, start_shardis
from tests.test_atomicity import keys_on_distinct_workers
from tests.test_memory import _raw
from tests.test_worker_link import start_worker, stop

#: Three keys on three different workers of the session shardis, and two forced together.
A, B, C = keys_on_distinct_workers(3)
TOGETHER = ("{m}one", "{m}two")
BINARY = b"bin\x00\r\nkey\xff"
INTERNAL = ("__maxmemory", "__oom", "__ping", "__info", "__lost_replies")

LIBRARY = (
    "#!lua name=hostile\n"
    "redis.register_function('oom', function(k) return redis.call('__oom') end)\n"
    "redis.register_function('limit', function(k) return redis.pcall('__maxmemory', '1') end)\n"
    "redis.register_function('ping', function(k) return redis.pcall('__ping') end)\n"
)


def _unknown_everywhere() -> list[list[str]]:
    """Each internal command named every way a client can name a command."""
    steps: list[list[str]] = []
    for name in INTERNAL:
        steps += [
            [name], [name.upper()], [name, "1"], [name, A, B, C],
            ["MULTI"], [name, "0"], ["SET", A, "1"], ["EXEC"], ["GET", A],
            ["EVAL", f"return redis.call('{name}')", "0"],
            ["EVAL", f"return redis.pcall('{name}', '0')", "1", A],
            ["EVAL", f"return redis.pcall('{name}', KEYS[1])", "2", *TOGETHER],
            ["EVAL", f"#!lua\nreturn redis.pcall('{name}', '-1')", "0"],
            ["EVAL_RO", f"return redis.pcall('{name}')", "1", B],
            ["COMMAND", "GETKEYS", name, A],
            ["COMMAND", "GETKEYSANDFLAGS", name, "1"],
            ["COMMAND", "INFO", name, "get"],
            ["COMMAND", "DOCS", name],
            ["ACL", "SETUSER", "hostile", f"+{name}"],
            ["ACL", "SETUSER", "hostile", f"-{name}|x"],
            ["ACL", "DRYRUN", "default", name, "1"],
        ]
    return steps


INTERNAL_UNKNOWN = script(
    "internal-commands-unknown-to-clients",
    ["SET", A, "0"],
    ["FUNCTION", "LOAD", "REPLACE", LIBRARY],
    *_unknown_everywhere(),
    ["FCALL", "oom", "0"],
    ["FCALL", "limit", "1", C],
    ["FCALL", "ping", "2", *TOGETHER],
    ["FCALL_RO", "ping", "0"],
    ["COMMAND", "LIST", "FILTERBY", "PATTERN", "__*"],
    # the router's own config key (``shardis.config.SUPERVISED``) is no directive
    ["CONFIG", "GET", "__supervised__"], ["CONFIG", "SET", "__supervised__", "yes"],
    ["CONFIG", "GET", "__*"],
    ["COMMAND", "LIST", "FILTERBY", "PATTERN", "*oom*"],
    ["ACL", "SETUSER", "hostile", "on", "nopass", "+@all", "~*"],
    ["ACL", "DRYRUN", "hostile", "__oom"],
    ["ACL", "DRYRUN", "hostile", "__maxmemory", "0"],
    ["ACL", "DELUSER", "hostile"],
    ["GET", A],
    ["DBSIZE"],
    ["FUNCTION", "FLUSH"],
)

#: MEMORY's errors and reply shapes, every type, keys on three workers and a binary key.
MEMORY_HOSTILE = script(
    "memory-hostile-arguments",
    ["SET", A, "v"], ["RPUSH", B, "a", "b"], ["SADD", C, "a"], ["ZADD", "z", "1", "a"],
    ["HSET", "h", "f", "v"], ["XADD", "x", "1-1", "f", "v"], ["PFADD", "hll", "a"],
    ["SET", BINARY, "v"],
    *[type_only("MEMORY", "USAGE", key) for key in (A, B, C, "z", "h", "x", "hll", BINARY)],
    *[type_only("MEMORY", "USAGE", key, "SAMPLES", count)
      for key in (B, "h") for count in ("0", "1", "9223372036854775807")],
    ["MEMORY", "USAGE", A, "SAMPLES", "-1"],
    ["MEMORY", "USAGE", A, "SAMPLES", "-9223372036854775808"],
    ["MEMORY", "USAGE", A, "SAMPLES", "9223372036854775808"],
    ["MEMORY", "USAGE", A, "SAMPLES", "-0"],
    ["MEMORY", "USAGE", "missing", "SAMPLES", "-1"],
    ["MEMORY", "USAGE", "missing", "SAMPLES", "abc"],
    ["MEMORY", "USAGE", "missing", "SAMPLES"],
    ["MEMORY", "USAGE", "missing", "FOO"],
    ["MEMORY", "USAGE", "missing", "SAMPLES", "1", "SAMPLES", "x"],
    ["MEMORY", "USAGE", "missing", "SAMPLES", "1", "SAMPLES"],
    ["MEMORY", "USAGE", "missing", "SAMPLES", "5", "SAMPLES", "7"],
    *[["MEMORY", "USAGE", A, "samples", bad]
      for bad in ("1.5", " 1", "+1", "01", "", "1\x00", "0x1", "1e2")],
    ["MEMORY", "USAGE", "missing"],
    ["MEMORY", "USAGE", ""],
    ["MEMORY", "USAGE", b"bin\x00\r\nkey\xfe"],
    ["MEMORY", "USAGE"], ["MEMORY"], ["MEMORY", "usage"],
    ["MEMORY", "STATS", "x"], ["MEMORY", "DOCTOR", "x"], ["MEMORY", "HELP", "x"],
    ["MEMORY", "MALLOC-STATS", "x"], ["MEMORY", "PURGE", "x"], ["MEMORY", "PURGE"],
    ["MEMORY", "bogus"], ["MEMORY", "bogus", "x"], ["MEMORY", b"\x00\xff"],
    ["MEMORY", "HELP"], ["MEMORY", "help"],
    type_only("MEMORY", "STATS"), type_only("MEMORY", "DOCTOR"),
    ["MULTI"], ["MEMORY", "USAGE", A, "SAMPLES", "-1"], ["MEMORY", "USAGE", "missing"],
    ["MEMORY", "bogus"], ["EXEC"],
    ["MULTI"], ["MEMORY", "USAGE", "missing", "SAMPLES", "x"], ["MEMORY", "PURGE"], ["EXEC"],
    ["EVAL", "return redis.pcall('memory', 'usage', KEYS[1], 'samples', '-1')", "1", B],
    ["EVAL", "return redis.call('memory', 'usage', KEYS[1])", "1", "missing"],
    ["EVAL", "return redis.pcall('memory', 'purge')", "0"],
    ["COMMAND", "GETKEYS", "MEMORY", "USAGE", A, "SAMPLES", "-1"],
    ["COMMAND", "GETKEYS", "MEMORY", "USAGE"],
    ["COMMAND", "GETKEYSANDFLAGS", "MEMORY", "USAGE", A],
    ["COMMAND", "GETKEYS", "MEMORY", "STATS"],
    ["ACL", "SETUSER", "mem", "on", "nopass", "+memory|usage", f"~{A}"],
    ["ACL", "DRYRUN", "mem", "MEMORY", "USAGE", B],
    ["ACL", "DRYRUN", "mem", "MEMORY", "USAGE", A],
    ["ACL", "DRYRUN", "mem", "MEMORY", "STATS"],
    ["ACL", "DELUSER", "mem"],
)


def expired_keys(raw: bytes) -> bytes:
    """INFO stats' expired_keys line."""
    return next(line for line in decode(raw).splitlines() if line.startswith(b"expired_keys:"))


#: MEMORY USAGE finds a key as Redis's ``dictFind`` does: one past its TTL that nothing
#: reclaimed yet (active expiry off) is measured and stays: not counted as expired.
MEMORY_USAGE_EXPIRED = script(
    "memory-usage-of-a-key-past-its-ttl",
    ["DEBUG", "SET-ACTIVE-EXPIRE", "0"],
    ["CONFIG", "RESETSTAT"],
    ["SET", A, "v", "PX", "1"], ["RPUSH", B, "a"], ["PEXPIRE", B, "1"],
    sleep(0.05),
    type_only("MEMORY", "USAGE", A), type_only("MEMORY", "USAGE", B, "SAMPLES", "0"),
    normalized(expired_keys, "INFO", "stats"),
    ["GET", A], ["LPOP", B],
    normalized(expired_keys, "INFO", "stats"),
    ["DEBUG", "SET-ACTIVE-EXPIRE", "1"],
)


def stats_counts(raw: bytes) -> object:
    """MEMORY STATS's deterministic part: its fields in order, the databases it lists and
    keys.count (the byte counts are the servers' own)."""
    value = decode(raw)
    if isinstance(value, list):  # RESP2: a flat list of names and values
        value = dict(zip(value[::2], value[1::2]))
    return list(value), value[b"keys.count"]


#: keys.count and the db.N entries sum every worker's databases (keys on three workers, in
#: databases 0 and 3).
MEMORY_STATS_COUNTS = script(
    "memory-stats-counts-every-database",
    normalized(stats_counts, "MEMORY", "STATS"),
    ["MSET", A, "1", B, "2", C, "3"],
    ["SELECT", "3"], ["SET", A, "x"], ["RPUSH", B, "a"], ["SELECT", "0"],
    normalized(stats_counts, "MEMORY", "STATS"),
    ["FLUSHALL"],
)

#: Command lines whose keys COMMAND GETKEYS/GETKEYSANDFLAGS find from Redis's key specs
#: (``shardis.commands.getkeys``): counts negative, huge, not numbers, past the end; options
#: repeated or missing their argument; internal commands.
GETKEYS_TARGETS: list[list[str]] = [
    [], [""], ["\x00"], ["get"], ["GET", "k"], ["get", "k", "x"], ["set", "k"],
    ["EVAL", "s", "-1"], ["EVAL", "s", "0"], ["EVAL", "s", "1"], ["EVAL", "s", "2", "a"],
    ["EVAL", "s", "x", "a"], ["EVAL", "s", "99999999999999999999", "a"],
    ["EVAL", "s", "1", "a", "b"], ["EVALSHA_RO", "s", "1", "a"], ["FCALL", "f", "-5", "a"],
    ["FCALL_RO", "f", "2", "a", "b"], ["ZUNIONSTORE", "d", "0", "a"],
    ["ZUNIONSTORE", "d", "-1", "a"], ["ZUNIONSTORE", "d", "2", "a"],
    ["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"], ["ZUNIONSTORE", "d", "x", "a"],
    ["ZUNION", "2", "a", "b"], ["ZDIFF", "1", "a", "WITHSCORES"], ["ZINTERCARD", "3", "a", "b"],
    ["SINTERCARD", "2", "a", "b", "LIMIT", "1"], ["SINTERCARD", "0", "a"],
    ["LMPOP", "0", "a", "LEFT"], ["LMPOP", "5", "a", "LEFT"], ["BLMPOP", "0", "1", "a", "LEFT"],
    ["BLMPOP", "x", "1", "a", "LEFT"], ["BZMPOP", "1", "2", "a", "b", "MIN"],
    ["XREAD", "STREAMS", "a", "0"], ["XREAD", "STREAMS", "a", "b", "0"],
    ["XREAD", "COUNT", "1", "STREAMS", "a", "b", "0", "0"], ["XREAD", "a"], ["XREAD", "STREAMS"],
    ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", ">"], ["XREADGROUP", "GROUP", "g", "c", "a"],
    ["MIGRATE", "h", "1", "", "0", "5", "KEYS", "a", "b"], ["MIGRATE", "h", "1", "k", "0", "5"],
    ["MIGRATE", "h", "1", "", "0", "5"], ["SORT", "a", "BY", "w*", "GET", "o*", "STORE", "d"],
    ["SORT", "a", "STORE"], ["SORT", "a", "STORE", "d", "STORE", "e"], ["SORT_RO", "a", "BY", "x"],
    ["GEORADIUS", "a", "0", "0", "1", "km", "STORE", "d"],
    ["GEORADIUSBYMEMBER", "a", "m", "1", "km", "STORE", "d", "STOREDIST", "e"],
    ["OBJECT", "ENCODING", "a"], ["OBJECT", "HELP"], ["MEMORY", "USAGE", "a"],
    ["MEMORY", "USAGE", "a", "SAMPLES", "-1"], ["MEMORY", "STATS"], ["XINFO", "STREAM", "a"],
    ["PING"], ["PUBLISH", "c", "m"], ["MSET", "a", "1", "b"], ["MSETNX", "a"], ["DEL"],
    ["BITFIELD_RO", "a"], ["LCS", "a", "b"], ["SMOVE", "a", "b", "m"], ["COPY", "a", "b"],
    ["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"], ["PFDEBUG", "GETREG", "a"], ["SPUBLISH", "c", "m"],
    ["__oom"], ["__maxmemory", "1"], ["__tryblock", "BLPOP", "a", "0"], ["__dump", "a"],
]

GETKEYS_HOSTILE = script(
    "getkeys-hostile-command-lines",
    *[[*prefix, *target] for target in GETKEYS_TARGETS
      for prefix in (["COMMAND", "GETKEYS"], ["COMMAND", "GETKEYSANDFLAGS"])],
)

_MAXMEMORY_VALUES = (
    "-1", "abc", "", "1x", "18446744073709551615", "18446744073709551616",
    "99999999999999999999999", "1gb", "1GB", "1.5gb", "1k", "1kb", " 5", "+5", "0x10", "-0",
    "17179869184g", "17179869183g", "00", "1e3", "5b", "5 ", "-1gb",
)

def maxmemory_lines(raw: bytes) -> list[bytes]:
    """INFO memory's maxmemory lines (the rest are the servers' own numbers)."""
    return [line for line in decode(raw).splitlines() if line.startswith(b"maxmemory")]


#: INFO memory's maxmemory_human at each unit's edges, up to 2^64-1 (Redis's bytesToHuman
#: prints bytes again past 1024 P; maxmemory itself is printed signed, -1 for 2^64-1).
MAXMEMORY_HUMAN = script(
    "maxmemory-human-at-every-unit",
    *[step for value in ("1023", "1024", "1048575", "1073741824", "1099511627776",
                         "1125899906842624", "1152921504606846975", "1152921504606846976",
                         "9223372036854775807", "9223372036854775808", "18446744073709551615")
      for step in (["CONFIG", "SET", "maxmemory", value],
                   normalized(maxmemory_lines, "INFO", "memory"))],
    ["CONFIG", "SET", "maxmemory", "0"],
)

#: CONFIG SET of the maxmemory directives with out-of-range and garbage values; each value
#: that Redis takes is read back, then the defaults come back.
CONFIG_HOSTILE = script(
    "config-set-maxmemory-hostile",
    *[step for value in _MAXMEMORY_VALUES
      for step in (["CONFIG", "SET", "maxmemory", value], ["CONFIG", "GET", "maxmemory"])],
    ["CONFIG", "SET", "maxmemory", "0"],
    *[step for value in ("bogus", "", "ALLKEYS-LRU", "allkeys-lru ", "1", "volatile-lfu",
                         "\x00noeviction")
      for step in (["CONFIG", "SET", "maxmemory-policy", value],
                   ["CONFIG", "GET", "maxmemory-policy"])],
    ["CONFIG", "SET", "maxmemory-policy", "volatile-lru", "maxmemory-policy", "allkeys-lfu"],
    *[step for name in ("maxmemory-samples", "maxmemory-eviction-tenacity")
      for value in ("0", "-1", "1", "100", "101", "2147483647", "2147483648", "abc", "1.5", "",
                    "5k", "99999999999999999999", "5\x00", " 5")
      for step in (["CONFIG", "SET", name, value], ["CONFIG", "GET", name])],
    ["CONFIG", "SET", "maxmemory", "5", "maxmemory-policy", "bad"],
    ["CONFIG", "SET", "maxmemory-samples", "3", "maxmemory-eviction-tenacity", "500"],
    ["CONFIG", "SET", "maxmemory", "7", "maxmemory", "8"],
    sorted_("CONFIG", "GET", "maxmemory*"),
    ["CONFIG", "SET", "maxmemory", "0", "maxmemory-policy", "noeviction",
     "maxmemory-samples", "5", "maxmemory-eviction-tenacity", "10"],
    sorted_("CONFIG", "GET", "maxmemory*"),
)

#: Redis parses a memory value or an enum as a C string: what follows a NUL is ignored.
#: shardis reads the whole argument (a ``shardis.config`` matter, shared by every directive).
CONFIG_NUL = script(
    "config-set-maxmemory-nul-truncated",
    ["CONFIG", "SET", "maxmemory", "5\x00abc"],
    ["CONFIG", "SET", "maxmemory-policy", "allkeys-lru\x00x"],
    ["CONFIG", "GET", "maxmemory"], ["CONFIG", "GET", "maxmemory-policy"],
    ["CONFIG", "SET", "appendonly", "no\x00yes"],
    ["CONFIG", "SET", "maxmemory", "0", "maxmemory-policy", "noeviction"],
)


#: Out of memory, Redis refuses every command queued in MULTI but EXEC, DISCARD, QUIT and
#: RESET (``processCommand``'s ``reject_cmd_on_oom``: queuing may take memory), and flags
#: the transaction; shardis queues them (``shardis.router.transactions``).
OOM_QUEUED = script(
    "oom-refuses-what-multi-queues",
    ["SET", A, "v"],
    ["CONFIG", "SET", "maxmemory", "1"],
    ["MULTI"], ["GET", A], ["SET", B, "1"], ["EXEC"], ["GET", B],
    ["CONFIG", "SET", "maxmemory", "0"],
    divergence="queued commands are not refused when out of memory",
)

#: Redis splits a shebang into options at whitespace, ``\r`` included, then flags at commas.
ALLOW_OOM_SHEBANG = script(
    "allow-oom-shebang-with-trailing-space",
    ["SET", A, "v"],
    ["CONFIG", "SET", "maxmemory", "1"],
    ["EVAL", "#!lua flags=allow-oom \nreturn redis.call('set', KEYS[1], 'z')", "1", A],
    ["EVAL", "#!lua flags=allow-oom\r\nreturn redis.call('set', KEYS[1], 'y')", "1", A],
    ["EVAL", "#!lua flags=no-writes flags=allow-oom\nreturn redis.call('get', KEYS[1])",
     "1", A],
    ["CONFIG", "SET", "maxmemory", "0"],
)


#: Out of memory, Redis refuses EVAL of a script whose shebang allows writes before it
#: reads numkeys or compiles the body (``evalGetCommandFlags`` parses the shebang alone);
#: shardis checks numkeys first (the router routes by the keys), and compiles the body to
#: find the flags (``_script_denies_oom``), so a body that does not compile answers its error.
OOM_EVAL_COMPILE = script(
    "oom-before-eval-compile-errors",
    ["SET", A, "v"],
    ["CONFIG", "SET", "maxmemory", "1"],
    ["EVAL", "#!lua\nsyntax error(", "0"],
    ["EVAL", "#!lua flags=no-writes\nsyntax error(", "0"],
    ["EVAL", "#!lua flags=allow-oom\nsyntax error(", "0"],
    ["EVAL", "#!lua flags=bogus\nreturn 1", "0"],
    ["EVAL", "syntax error(", "0"],
    ["CONFIG", "SET", "maxmemory", "0"],
)

#: The router reads numkeys to route EVAL, before any worker is asked about memory.
OOM_EVAL_ORDER = script(
    "oom-before-eval-argument-errors",
    ["SET", A, "v"],
    ["CONFIG", "SET", "maxmemory", "1"],
    ["EVAL", "#!lua\nreturn 1", "-1"],
    ["EVAL", "#!lua\nreturn 1", "x"],
    ["EVAL", "#!lua\nreturn 1", "3", A],
    ["CONFIG", "SET", "maxmemory", "0"],
    divergence="EVAL's numkeys errors come before OOM (the router checks them to route)",
)

#: BLMOVE and BRPOPLPUSH are ``denyoom``: Redis refuses them out of memory; shardis sends
#: them as ``__block``/``__tryblock``, which the worker's check judges by the wrapped command.
OOM_BLOCKING = script(
    "oom-refuses-blocking-moves",
    ["RPUSH", "{l}src", "x", "y"], ["RPUSH", C, "x", "y"],
    ["CONFIG", "SET", "maxmemory", "1"],
    ["BLMOVE", "{l}src", "{l}dst", "LEFT", "RIGHT", "0.01"],
    ["BRPOPLPUSH", C, A, "0.01"],
    ["CONFIG", "SET", "maxmemory", "0"],
    ["LRANGE", "{l}src", "0", "-1"], ["LRANGE", C, "0", "-1"],
)


#: An EXEC that ``processCommand`` rejects (ACL here; also OOM, NOAUTH...) is answered by
#: ``rejectCommand`` as ``execCommandAbort``: EXECABORT naming the error, even outside MULTI;
#: shardis's ACL check answers the plain NOPERM (``shardis.router.security``).
EXEC_REJECTED = script(
    "exec-rejected-by-acl-is-an-execabort",
    ["ACL", "SETUSER", "hostile-lim", "on", ">pw", "+get", "~*"],
    ["AUTH", "hostile-lim", "pw"],
    ["MULTI"], ["GET", A], ["EXEC"],
    ["AUTH", "default", "any"],
    ["ACL", "DELUSER", "hostile-lim"],
    ["ACL", "SETUSER", "hostile-lim", "on", ">pw", "+get", "+multi", "+watch", "~*"],
    ["AUTH", "hostile-lim", "pw"],
    ["WATCH", A], ["MULTI"], ["GET", A], ["EXEC"], ["EXEC"], ["DISCARD"],
    ["AUTH", "default", "any"],
    ["ACL", "DELUSER", "hostile-lim"],
)


@pytest.fixture
def maxmemory_reset(shardis, oracle) -> Iterator[None]:
    """Whatever a script leaves (it stops at its first difference), the shared servers get
    their defaults back: maxmemory's directives, no users of this suite's own."""
    yield
    for server in (shardis, oracle):
        with RawClient(server.port) as client:
            client.call("CONFIG", "SET", "maxmemory", "0", "maxmemory-policy", "noeviction",
                        "maxmemory-samples", "5", "maxmemory-eviction-tenacity", "10")
            client.call("ACL", "DELUSER", "hostile-lim", "hostile", "mem")


@parametrize([INTERNAL_UNKNOWN, MEMORY_HOSTILE, MEMORY_STATS_COUNTS, GETKEYS_HOSTILE,
              MAXMEMORY_HUMAN, CONFIG_HOSTILE, CONFIG_NUL, OOM_QUEUED, ALLOW_OOM_SHEBANG,
              OOM_BLOCKING, OOM_EVAL_COMPILE, OOM_EVAL_ORDER, EXEC_REJECTED])
def test_hostile_client_input_as_redis(oracle, shardis, maxmemory_reset, script, protocol):
    check(oracle, shardis, script, protocol)


@pytest.fixture(scope="module")
def debug_pair() -> Iterator[tuple[Server, Server]]:
    """Redis and shardis that take DEBUG (SET-ACTIVE-EXPIRE: a key stays past its TTL)."""
    servers = (start_redis("--enable-debug-command", "yes"),
               start_shardis(3, "--enable-debug-command", "yes"))
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.parametrize("protocol", [2, 3])
def test_memory_usage_of_a_key_past_its_ttl_as_redis(debug_pair, protocol):
    check(*debug_pair, MEMORY_USAGE_EXPIRED, protocol)


# What the router sends on its own is not a client's command ------------------------------------


def _monitor_lines(sock: socket.socket) -> list[bytes]:
    """What a MONITOR connection received, each line without its timestamp and client."""
    sock.settimeout(0.5)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return [line.split(b"] ", 1)[-1] for line in data.split(b"\r\n") if line]


def _observe(port: int) -> dict[str, object]:
    """Commands that make the router send internal ones (CONFIG SET maxmemory, writes and
    EXEC across workers under maxmemory, MEMORY STATS, a second of pings), and what MONITOR,
    SLOWLOG and INFO commandstats then show."""
    with RawClient(port) as client, socket.create_connection(("127.0.0.1", port)) as monitor:
        client.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
        client.call("SLOWLOG", "RESET")
        client.call("CONFIG", "RESETSTAT")
        _raw(monitor, b"MONITOR")
        steps = [
            client.call("CONFIG", "SET", "maxmemory", "1gb"),
            client.call("MSET", A, "1", B, "2", C, "3"),
            client.call("SADD", "s" + A, "1"),
            client.call("SUNIONSTORE", C + "x", "s" + A, B),
            client.call("MULTI"), client.call("SET", A, "x"), client.call("SET", B, "y"),
            client.call("EXEC"),
        ]
        client.call("MEMORY", "STATS")  # its numbers are the servers' own
        time.sleep(1.3)  # the router's link probes
        steps.append(client.call("CONFIG", "SET", "maxmemory", "0"))
        slowlog = decode(client.call("SLOWLOG", "GET", "100"))
        stats = decode(client.call("INFO", "commandstats"))
        lines = _monitor_lines(monitor)
        client.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")
    names = sorted(line.split(b":")[0] for line in stats.splitlines()
                   if line.startswith(b"cmdstat_"))
    return {"replies": steps, "monitor": lines, "stats": names,
            "slowlog": [entry[3] for entry in reversed(slowlog)]}


def test_the_routers_own_internal_commands_are_not_shown(oracle, shardis, maxmemory_reset):
    seen = _observe(shardis.port)
    assert seen == _observe(oracle.port)
    assert not any(b"__" in line for line in seen["monitor"])  # type: ignore[union-attr]


FUNCTIONS = (b"#!lua name=queued\n"
             b"redis.register_function('w', function(k) return 1 end)\n")


@pytest.mark.parametrize("queued", [
    [b"EVAL", b"#!lua\nreturn 1", b"0"], [b"FCALL", b"w", b"0"],
    [b"EVAL", b"#!lua flags=allow-oom\nreturn 1", b"0"], [b"EVAL", b"return 1", b"0"]])
def test_exec_refused_for_a_queued_script_that_may_write(oracle, shardis, maxmemory_reset,
                                                          queued):
    """A script or function whose declared flags allow writes counts as ``denyoom`` for the
    whole transaction (``getCommandFlags``): memory ran out after it was queued, EXEC is
    aborted as a whole by Redis."""
    replies = []
    for server in (oracle, shardis):
        with RawClient(server.port) as admin, \
                socket.create_connection(("127.0.0.1", server.port)) as sock:
            admin.call("FUNCTION", "LOAD", "REPLACE", FUNCTIONS)
            steps = [_raw(sock, b"MULTI"), _raw(sock, *queued)]
            admin.call("CONFIG", "SET", "maxmemory", "1")
            steps.append(_raw(sock, b"EXEC"))
            admin.call("CONFIG", "SET", "maxmemory", "0")
            admin.call("FUNCTION", "FLUSH")
        replies.append(steps)
    assert replies[1] == replies[0]


# A hostile peer on a worker's link ---------------------------------------------------------------
class Peer:
    """A router as a worker sees it (a DEALER speaking the strict codec); ``batch`` sends
    commands with the codes given and returns the encoded replies."""

    def __init__(self, address: str) -> None:
        self.codec = protocol.codec_for(False)
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 20_000)
        self.sock.connect(address)
        self.seq = 0

    def batch(self, *commands: tuple[int, list[bytes]]) -> list[bytes]:
        self.seq += 1
        self.sock.send(self.codec.encode_batch(self.seq, list(commands)))
        seq, replies, _ = self.codec.decode_replies(self.sock.recv())
        assert seq == self.seq
        return replies

    def run(self, *commands: list[bytes]) -> list[bytes]:
        """Commands as a client's (RESP2, database 0, not steps)."""
        return self.batch(*[(2, args) for args in commands])

    def memory(self) -> dict:
        """The worker's ``__info`` memory share (its limit, evicted keys...)."""
        return decode(self.batch((3, [b"__info"]))[0])[b"memory"]


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> Iterator[str]:
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = start_worker(address, str(tmp_path_factory.mktemp("worker") / "worker.log"))
    try:
        yield address
        assert proc.poll() is None, "the worker died"
    finally:
        stop(proc)


@pytest.fixture
def peer(worker: str) -> Iterator[Peer]:
    peer = Peer(worker)
    peer.run([b"FLUSHALL"], [b"__maxmemory", b"0"],
             [b"__config_set", b"maxmemory-policy", b"allkeys-lru"])
    yield peer
    peer.run([b"__maxmemory", b"0"], [b"__config_set", b"maxmemory-policy", b"noeviction"])
    peer.sock.close()


NOT_INTEGER = b"-%s\r\n" % errors.NOT_INTEGER.encode()
GARBAGE_SHARES = [b"-1", b"-0", b"abc", b"", b" 5", b"5 ", b"+5", b"1_0", b"0x10", b"1e3",
                  b"01", b"\xff\x00", b"5\x00", b"18446744073709551616",
                  b"99999999999999999999999", b"-18446744073709551615"]


def test_garbage_maxmemory_from_a_peer_is_refused_and_changes_nothing(peer):
    """Python's ``int()`` took ``-1`` (a limit every key is over: all evicted under
    allkeys-lru), ``1_0`` and `` 5``; each is now Redis's not-an-integer error."""
    peer.run(*[[b"SET", b"k%d" % i, b"v"] for i in range(50)])
    for garbage in GARBAGE_SHARES:
        assert peer.run([b"__maxmemory", garbage], [b"DBSIZE"]) == [NOT_INTEGER, b":50\r\n"]
    assert peer.memory()[b"limit"] == 0
    assert peer.memory()[b"evicted_keys"] == 0
    assert peer.run([b"__maxmemory", b"18446744073709551615"], [b"DBSIZE"],
                    [b"__maxmemory", b"0"]) == [b"+OK\r\n", b":50\r\n", b"+OK\r\n"]


def test_wrong_arity_to_internal_commands_from_a_peer(peer):
    replies = peer.run([b"__maxmemory"], [b"__maxmemory", b"1", b"2"], [b"__oom", b"x"],
                       [b"__ping", b"x"], [b"__info", b"x"], [b"__lost_replies"],
                       [b"__lost_replies", b"abc"], [b"__oom"], [b"__ping"])
    assert replies == [
        b"-ERR wrong number of arguments for '__maxmemory' command\r\n",
        b"-ERR wrong number of arguments for '__maxmemory' command\r\n",
        b":0\r\n",  # "would command x be refused": no limit, no command x
        b"-ERR wrong number of arguments for '__ping' command\r\n",
        b"-ERR wrong number of arguments for '__info' command\r\n",
        b"-ERR wrong number of arguments for '__lost_replies' command\r\n",
        b"*1\r\n$-1\r\n",  # no AOF, no reply log: nothing recorded, whatever is asked
        b":0\r\n", b"$4\r\nPONG\r\n",
    ]


def test_maxmemory_0_ahead_of_writes_in_one_batch_neither_evicts_nor_refuses(peer):
    """A batch that starts under a limit checks each of its commands; ``__maxmemory 0``
    (CONFIG SET maxmemory 0) in the same batch as a client's writes lifts it for them: they
    must not be measured against a limit of 0 (every key evicted, or every write refused)."""
    peer.run(*[[b"SET", b"k%d" % i, b"v" * 100] for i in range(200)])
    peer.run([b"__maxmemory", b"%d" % (1 << 30)])
    assert peer.run([b"__maxmemory", b"0"], [b"SET", b"new", b"v"], [b"DBSIZE"]) == [
        b"+OK\r\n", b"+OK\r\n", b":201\r\n"]
    peer.run([b"__config_set", b"maxmemory-policy", b"noeviction"], [b"__maxmemory", b"1"])
    assert peer.run([b"__maxmemory", b"0"], [b"SET", b"more", b"v"], [b"DBSIZE"]) == [
        b"+OK\r\n", b"+OK\r\n", b":202\r\n"]
    assert peer.memory()[b"evicted_keys"] == 0


def test_oom_asked_about_hostile_commands_answers_and_changes_nothing(peer):
    """``__oom <command>`` (EXEC asks it about a queued script) from a peer: whatever the
    command (missing, malformed, internal, wrapped), an integer, and nothing runs."""
    peer.run([b"SET", b"kept", b"v" * 100], [b"__config_set", b"maxmemory-policy", b"noeviction"],
             [b"__maxmemory", b"1"])
    try:
        replies = peer.run(
            [b"__oom", b"EVAL"], [b"__oom", b"EVAL", b"#!lua\nreturn 1", b"x"],
            [b"__oom", b"EVALSHA", b"\xff", b"0"], [b"__oom", b"FCALL", b"nosuch", b"0"],
            [b"__oom", b"__oom", b"__oom"], [b"__oom", b"\xff\x00"],
            [b"__oom", b"__block", b"1", b"0", b"2", b"BLMOVE", b"a"],
            [b"__oom", b"__tryblock", b"BLMOVE", b"a", b"b", b"LEFT", b"RIGHT", b"0"],
            [b"__oom", b"SET", b"a", b"b"], [b"__oom", b"GET", b"a"])
        assert replies == [b":0\r\n", b":1\r\n", b":0\r\n", b":0\r\n", b":0\r\n",
                           b":0\r\n", b":0\r\n", b":1\r\n", b":1\r\n", b":0\r\n"]
        assert peer.run([b"EXISTS", b"a", b"b", b"kept"]) == [b":1\r\n"]
    finally:
        peer.run([b"__maxmemory", b"0"], [b"DEL", b"kept"])


def _expected(code: int) -> bytes:
    """GET k's reply for a command code: k holds "v" in database 0 only."""
    database, resp3 = code >> 2, code & 1
    if database >= 16:
        return b"-%s\r\n" % errors.DB_OUT_OF_RANGE.encode()
    if database == 0:
        return b"$1\r\nv\r\n"
    return b"_\r\n" if resp3 else b"$-1\r\n"


def test_every_command_code_gets_its_own_reply(peer):
    """All 65536 u16 codes in one batch (a database out of range, the step bit on a command
    no router coordinates): each command its own reply, and the worker serves on."""
    peer.run([b"SET", b"k", b"v"])
    codes = range(1 << 16)
    replies = peer.batch(*[(code, [b"GET", b"k"]) for code in codes])
    assert replies == [_expected(code) for code in codes]
    assert peer.run([b"GET", b"k"]) == [b"$1\r\nv\r\n"]


def test_the_step_bit_under_maxmemory(peer):
    """Over the limit with nothing to evict: a client's write is refused, a step of a
    coordinated operation is not (the router decided for the whole), a script sent as a
    step is still checked, as Redis checks EVAL; a step in another database too."""
    peer.run([b"__config_set", b"maxmemory-policy", b"noeviction"], [b"SET", b"k", b"v"],
             [b"__maxmemory", b"1"])
    oom = b"-%s\r\n" % errors.OOM.encode()
    step2, step3 = protocol.command_code(2, 0, step=True), protocol.command_code(3, 5, step=True)
    replies = peer.batch(
        (2, [b"SET", b"a", b"v"]), (step2, [b"SET", b"b", b"v"]),
        (step3, [b"SET", b"c", b"v"]), (3 | 5 << 2, [b"SET", b"d", b"v"]),
        (step2, [b"EVAL", b"#!lua\nreturn redis.call('set', KEYS[1], 'x')", b"1", b"e"]),
        (step2, [b"GET", b"k"]), (2, [b"GET", b"k"]))
    assert replies == [oom, b"+OK\r\n", b"+OK\r\n", oom, oom, b"$1\r\nv\r\n", b"$1\r\nv\r\n"]
    assert protocol.decode_code(step3) == (3, 5, True)


# Pure parts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", GARBAGE_SHARES)
def test_parse_share_refuses_garbage(garbage):
    with pytest.raises(ReplyError) as raised:
        parse_share(garbage)
    assert raised.value.message == errors.NOT_INTEGER


def test_parse_share_takes_every_unsigned_64_bit_value():
    for text in (b"0", b"1", b"1048576", b"9223372036854775808", b"18446744073709551615"):
        assert parse_share(text) == int(text)


def _seq(number: int) -> bytes:
    return number.to_bytes(8, "big")


def test_reply_log_hands_a_reply_back_once_and_reads_what_was_written_since(tmp_path):
    """A worker that stayed up while its link was cut: what it recorded since it started is
    read from the files when asked; each reply once, another router's records untouched."""
    log = ReplyLog(str(tmp_path))
    log.append(b"r1", _seq(1), b"one")
    log.append(b"r2", _seq(1), b"other")
    log.append(b"r1", _seq(2), b"two")
    assert log.take(b"r1", [2, 1, 3]) == [b"two", b"one", None]
    assert log.take(b"r1", [1, 2]) == [None, None]  # handed back already
    log.append(b"r1", _seq(4), b"four")
    assert log.take(b"r1", [4]) == [b"four"]
    assert log.take(b"r2", [1]) == [b"other"]
    assert log.take(b"r1", []) == []
    log.close()


def test_reply_log_survives_hostile_sequence_numbers(tmp_path):
    """``__lost_replies`` parses any integer: negative or beyond 64 bits, nothing raises, and
    a number no record can hold does not mark the later replies as handed back."""
    log = ReplyLog(str(tmp_path))
    log.append(b"r1", _seq(7), b"seven")
    assert log.take(b"r1", [-1, 1 << 70]) == [None, None]
    assert log.take(b"r1", [7]) == [b"seven"]
    log.close()


def _shard_with_keys(count: int, policy: str = "allkeys-lru") -> Shard:
    shard = Shard(0)
    shard.set_access_tracking(maxmemory_policy=policy)
    for i in range(count):
        shard.execute(2, [b"SET", b"k%d" % i, b"v" * 50])
    return shard


def test_no_limit_is_never_over_it():
    shard = _shard_with_keys(100)
    assert shard.evictor.perform() is True
    assert len(shard.db.data) == 100 and shard.evictor.evicted_keys == 0
    assert shard.evictor.over_since is None


def test_time_over_the_limit_is_counted_from_first_over_to_first_under():
    shard = _shard_with_keys(10, "noeviction")
    evictor = shard.evictor
    evictor.set_limit(1)
    assert evictor.perform() is False  # over, nothing may go
    time.sleep(0.05)
    assert evictor.perform() is False
    assert evictor.current_exceeded_ms() >= 50 and evictor.exceeded_ms == 0
    evictor.set_limit(1 << 40)
    assert evictor.perform() is True
    assert evictor.current_exceeded_ms() == 0 and evictor.exceeded_ms >= 50


def test_eviction_time_limit_is_redis_formula():
    """``evictionTimeLimitUs``: 50 us per step up to 10, then 15% more per step, no limit at
    100."""
    assert [time_limit_us(t) for t in (0, 1, 10)] == [0, 50, 500]
    assert time_limit_us(11) == int(500 * 1.15) and time_limit_us(99) == int(500 * 1.15 ** 89)
    assert time_limit_us(100) > 1 << 62


def test_draw_skips_keys_gone_since_the_pool_was_taken():
    shard = _shard_with_keys(50)
    db = shard.db
    db.sample_pool(False, refill=True)
    for i in range(40):
        shard.execute(2, [b"DEL", b"k%d" % i])
    picked = draw(db, False, 20)
    assert sorted(picked) == sorted(db.data)  # the 10 left, each once, no ghost
    assert draw(db, True, 5) == []  # none has a TTL


def test_a_huge_sample_count_stays_linear():
    """CONFIG SET maxmemory-samples 2147483647 is valid (Redis takes it): a draw then takes
    every key of the database, in time linear in the keys (it was quadratic: minutes for
    50,000 keys, a worker that answered nothing meanwhile)."""
    shard = _shard_with_keys(50_000)
    started = time.perf_counter()
    picked = draw(shard.db, False, 2_147_483_647)
    assert len(picked) == len(set(picked)) == 50_000
    assert time.perf_counter() - started < 5
