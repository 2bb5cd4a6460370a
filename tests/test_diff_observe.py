"""Differential corpus: SLOWLOG, LATENCY, INFO commandstats/errorstats, DEBUG OBJECT.

Against real Redis 7.0 where the content is deterministic: help texts, errors, empty replies,
the slow log's logged arguments (ids, times, durations and client ports are left out), the
commandstats counters (calls, rejected and failed; not the microseconds) and errorstats.
Keys are spread over the workers (``x``, ``y``, ``z`` live on workers 0, 1 and 2; ``{s}...``
share one).  Every script leaves the directives it changed as it found them: the servers are
shared with the rest of the session.
"""

from __future__ import annotations

import re

import hiredis
import pytest

from tests.differential import (
    check,
    cmd,
    normalized,
    parametrize,
    script,
    sorted_,
    type_only,
)
from tests.servers import start_redis, start_shardis


def _decode(reply: bytes) -> object:
    reader = hiredis.Reader()
    reader.feed(reply)
    return reader.gets()


def slowlog_arguments(reply: bytes) -> object:
    """SLOWLOG GET without what differs between servers: each entry's arguments and client
    name, and that the entry has Redis's six fields."""
    entries = _decode(reply)
    if not isinstance(entries, list):
        return entries
    return [(len(entry), entry[3], entry[5]) for entry in entries]


_STAT = re.compile(r"^cmdstat_(\S+):calls=(\d+),usec=\d+,usec_per_call=[\d.]+,"
                   r"rejected_calls=(\d+),failed_calls=(\d+)$")


def command_counters(reply: bytes) -> object:
    """INFO commandstats as {command: (calls, rejected, failed)} (order and time left out:
    Redis prints its commands in hash order)."""
    text = _decode(reply)
    if not isinstance(text, bytes):
        return text
    lines = text.decode().split("\r\n")
    counters = {}
    for line in lines[1:]:
        if line:
            match = _STAT.match(line)
            assert match, line
            counters[match[1]] = match.group(2, 3, 4)
    return lines[0], counters


_DEBUG_OBJECT = re.compile(rb"Value at:0x[0-9a-f]+ (refcount:\d+ encoding:\S+ "
                           rb"serializedlength:\d+) lru:\d+ lru_seconds_idle:\d+(.*)")


def debug_object_fields(reply: bytes) -> object:
    """DEBUG OBJECT without the address and the LRU clock."""
    match = _DEBUG_OBJECT.match(reply[1:])
    return reply if match is None else match.groups()


def _info_text(reply: bytes) -> bytes:
    """INFO's text whether a bulk (RESP2) or a verbatim string (RESP3)."""
    value = _decode(reply)
    return value if isinstance(value, bytes) else b""


def errorstats(reply: bytes) -> object:
    return _info_text(reply)


_PERCENTILES = re.compile(r"^latency_percentiles_usec_(\S+):((?:p[\d.]+=\d+\.\d{3},?)+)$")


def latency_percentiles(reply: bytes) -> object:
    """INFO latencystats as {command: percentile names} (the values are timings)."""
    lines = _info_text(reply).decode().split("\r\n")
    found = {}
    for line in lines[1:]:
        if line:
            match = _PERCENTILES.match(line)
            assert match, line
            found[match[1]] = [item.split("=")[0] for item in match[2].split(",")]
    return lines[0], found


SLOWLOG_OFF = ["CONFIG", "SET", "slowlog-log-slower-than", "-1"]
SLOWLOG_DEFAULT = ["CONFIG", "SET", "slowlog-log-slower-than", "10000"]

SCRIPTS = [
    script(
        "slowlog_errors_and_help",
        SLOWLOG_OFF,
        ["SLOWLOG", "RESET"],
        ["SLOWLOG", "LEN"],
        ["SLOWLOG", "GET"],
        ["SLOWLOG", "GET", "-1"],
        ["SLOWLOG", "GET", "0"],
        ["SLOWLOG", "GET", "abc"],
        ["SLOWLOG", "GET", "-2"],
        ["SLOWLOG", "GET", "1.5"],
        ["SLOWLOG", "GET", "99999999999999999999"],
        ["SLOWLOG", "GET", "1", "2"],
        ["SLOWLOG", "LEN", "x"],
        ["SLOWLOG", "RESET", "x"],
        ["SLOWLOG", "FOO"],
        ["SLOWLOG"],
        ["SLOWLOG", "HELP"],
        ["slowlog", "help"],
        ["SLOWLOG", "HELP", "x"],
        SLOWLOG_DEFAULT,
    ),
    script(
        "slowlog_entries",
        SLOWLOG_OFF,
        ["SLOWLOG", "RESET"],
        ["CONFIG", "SET", "slowlog-log-slower-than", "0"],
        ["MSET", "x", "1", "y", "2", "z", "3"],
        ["SET", "{s}" + "x" * 200, "v" * 129],
        ["RPUSH", "{s}list", *[str(i) for i in range(40)]],
        ["RPUSH", "{s}short", *[str(i) for i in range(31)]],
        ["CLIENT", "SETNAME", "observer"],
        ["GET", "a"],
        ["AUTH", "nosuchuser", "secret"],
        ["EVAL", "return 1", "0"],
        ["MULTI"],
        ["SET", "{s}k", "v"],
        ["GET", "{s}k"],
        ["EXEC"],
        SLOWLOG_OFF,
        normalized(slowlog_arguments, "SLOWLOG", "GET", "-1"),
        normalized(slowlog_arguments, "SLOWLOG", "GET", "3"),
        ["SLOWLOG", "RESET"],
        SLOWLOG_DEFAULT,
    ),
    script(
        "slowlog_max_len",
        SLOWLOG_OFF,
        ["SLOWLOG", "RESET"],
        ["CONFIG", "SET", "slowlog-max-len", "3"],
        ["CONFIG", "SET", "slowlog-log-slower-than", "0"],
        ["SET", "a", "1"],
        ["SET", "b", "2"],
        ["SET", "c", "3"],
        ["GET", "c"],
        SLOWLOG_OFF,
        ["SLOWLOG", "LEN"],
        normalized(slowlog_arguments, "SLOWLOG", "GET"),
        ["CONFIG", "SET", "slowlog-max-len", "1"],
        ["SLOWLOG", "LEN"],
        ["CONFIG", "SET", "slowlog-max-len", "128"],
        sorted_("CONFIG", "GET", "slowlog-*"),
        ["CONFIG", "SET", "slowlog-max-len", "-1"],
        ["CONFIG", "SET", "slowlog-log-slower-than", "-2"],
        ["CONFIG", "SET", "slowlog-log-slower-than", "x"],
        ["SLOWLOG", "RESET"],
        SLOWLOG_DEFAULT,
    ),
    script(
        "latency_without_events",
        ["CONFIG", "GET", "latency-monitor-threshold"],
        ["LATENCY", "LATEST"],
        ["LATENCY", "HISTORY", "command"],
        ["LATENCY", "RESET"],
        ["LATENCY", "RESET", "command", "fast-command"],
        ["LATENCY", "GRAPH", "command"],
        ["LATENCY", "DOCTOR"],
        ["LATENCY", "HISTOGRAM", "nosuchcommand"],
        ["LATENCY", "HELP"],
        ["LATENCY", "FOO"],
        ["LATENCY"],
        ["LATENCY", "HISTORY"],
        ["LATENCY", "LATEST", "x"],
        ["LATENCY", "GRAPH"],
        ["LATENCY", "DOCTOR", "x"],
    ),
    script(
        "latency_config",
        sorted_("CONFIG", "GET", "latency-tracking*"),
        ["CONFIG", "SET", "latency-tracking-info-percentiles", "50 99.99 100"],
        ["CONFIG", "GET", "latency-tracking-info-percentiles"],
        ["CONFIG", "SET", "latency-tracking-info-percentiles", "101"],
        ["CONFIG", "SET", "latency-tracking-info-percentiles", "abc"],
        ["CONFIG", "SET", "latency-tracking-info-percentiles", "50 99 99.9"],
        ["CONFIG", "SET", "latency-tracking", "maybe"],
        ["CONFIG", "SET", "latency-monitor-threshold", "-1"],
    ),
    script(
        "commandstats_script_calls",
        ["CONFIG", "RESETSTAT"],
        ["SET", "x", "v"],
        ["EVAL", "return redis.pcall('lpush', KEYS[1], 'x')", "1", "x"],
        ["EVAL", "return redis.call('lpush', KEYS[1], 'x')", "1", "y"],
        ["EVAL", "return redis.call('lpush', KEYS[1], 'x')", "1", "x"],
        ["EVAL", "redis.call('set', KEYS[1], 'a'); return redis.call('get', KEYS[1])", "1",
         "z"],
        ["EVAL", "return redis.error_reply('MYERR custom')", "0"],
        normalized(command_counters, "INFO", "commandstats"),
        normalized(errorstats, "INFO", "errorstats"),
        ["CONFIG", "RESETSTAT"],
        normalized(command_counters, "INFO", "commandstats"),
    ),
    script(
        "commandstats_counters",
        ["CONFIG", "RESETSTAT"],
        ["SET", "a", "1"],
        ["SET", "b", "x"],
        ["MGET", "x", "y", "z"],
        ["GET"],
        ["GET", "a", "b"],
        ["NOSUCHCOMMAND"],
        ["LPUSH", "a", "x"],
        ["INCR", "b"],
        ["CLIENT", "GETNAME"],
        ["CLIENT", "NOSUCH"],
        ["CONFIG", "GET", "maxmemory"],
        ["MULTI"],
        ["SET", "{s}k", "v"],
        ["LPUSH", "{s}k", "x"],
        ["GET", "{s}k"],
        ["EXEC"],
        ["MULTI"],
        ["GET"],
        ["EXEC"],
        ["WATCH", "{s}k"],
        ["SET", "{s}k", "changed"],
        ["MULTI"],
        ["INCR", "{s}k"],
        ["EXEC"],
        normalized(command_counters, "INFO", "commandstats"),
        normalized(errorstats, "INFO", "errorstats"),
        normalized(latency_percentiles, "INFO", "latencystats"),
        type_only("LATENCY", "HISTOGRAM", "mget", "client"),
        ["CONFIG", "SET", "latency-tracking-info-percentiles", "0 50.5 100"],
        normalized(latency_percentiles, "INFO", "latencystats"),
        ["CONFIG", "SET", "latency-tracking-info-percentiles", "50 99 99.9"],
        ["CONFIG", "RESETSTAT"],
        normalized(errorstats, "INFO", "errorstats"),
        normalized(command_counters, "INFO", "COMMANDSTATS"),
    ),
]


@parametrize(SCRIPTS)
def test_observe(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)


# DEBUG: servers of their own, with enable-debug-command -----------------------------------
@pytest.fixture(scope="module")
def debug_oracle():
    server = start_redis("--enable-debug-command", "yes")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def debug_shardis():
    server = start_shardis(3, "--enable-debug-command", "yes")
    yield server
    server.stop()


DEBUG_SCRIPTS = [
    script(
        "debug_object",
        ["SET", "a", "bar"],
        ["SET", "b", "12345"],
        ["SET", "c", "x" * 100],
        ["RPUSH", "{s}list", "a", "b", "c"],
        ["RPUSH", "{s}long", *["y" * 200] * 100],
        ["HSET", "{s}hash", "f", "v"],
        ["SADD", "{s}set", "1", "2", "3"],
        ["ZADD", "{s}zset", "1", "m"],
        normalized(debug_object_fields, "DEBUG", "OBJECT", "a"),
        normalized(debug_object_fields, "DEBUG", "OBJECT", "b"),
        normalized(debug_object_fields, "DEBUG", "OBJECT", "c"),
        normalized(debug_object_fields, "DEBUG", "OBJECT", "{s}list"),
        normalized(debug_object_fields, "DEBUG", "OBJECT", "{s}long"),
        normalized(debug_object_fields, "DEBUG", "OBJECT", "{s}hash"),
        normalized(debug_object_fields, "DEBUG", "OBJECT", "{s}set"),
        normalized(debug_object_fields, "DEBUG", "OBJECT", "{s}zset"),
        ["DEBUG", "OBJECT", "nosuchkey"],
        ["DEBUG", "OBJECT"],
        ["DEBUG", "OBJECT", "a", "b"],
    ),
    script(
        "debug_sleep_and_active_expire",
        ["DEBUG", "SLEEP", "0"],
        ["DEBUG", "SLEEP", "0.01"],
        ["DEBUG", "SLEEP", "x"],
        ["DEBUG", "SLEEP"],
        ["DEBUG", "SET-ACTIVE-EXPIRE", "0"],
        ["SET", "a", "1", "PX", "1"],
        cmd("DEBUG", "SLEEP", "0.2"),
        ["DEBUG", "SET-ACTIVE-EXPIRE", "1"],
        ["DEBUG", "SET-ACTIVE-EXPIRE"],
        ["GET", "a"],
        ["DEBUG", "NOSUCH"],
    ),
]


@parametrize(DEBUG_SCRIPTS)
def test_debug(debug_oracle, debug_shardis, script, protocol):
    check(debug_oracle, debug_shardis, script, protocol)
