"""Differential corpus: CONFIG GET, SET, RESETSTAT, REWRITE and HELP, byte for byte against
real Redis 7.0 (both started without a config file, with the test fixtures' options).

Replies listing several parameters are maps in Redis's hash order, which is its own: those are
compared sorted (:func:`sorted_`); a single parameter is compared exactly.  Every script puts
back what it changed, as the session's shardis serves the other tests too.  CONFIG SET of a
directive workers keep (``appendfsync``, ``loglevel``) is applied on every worker: a change
and its revert are checked by the replies, the workers' share in tests/test_config_file.py.
"""

from __future__ import annotations

import pytest

from tests.differential import check, parametrize, script, sorted_

SCRIPTS = [
    script(
        "config_get_patterns_and_aliases",
        ["CONFIG", "GET", "maxclients"],
        ["CONFIG", "GET", "MAXCLIENTS"],  # the name as given is the reply's key
        ["CONFIG", "GET", "MAXCLIENTS", "maxclients"],  # ... listed once
        ["CONFIG", "GET", "nosuch"],
        ["CONFIG", "GET", "nosuch*"],
        ["CONFIG", "GET", "lua-time-limit"],
        sorted_("CONFIG", "GET", "busy-reply-threshold", "lua-time-limit"),
        sorted_("CONFIG", "GET", "hash-max-*"),
        sorted_("CONFIG", "GET", "*ziplist*"),
        sorted_("CONFIG", "GET", "hash-max-ziplist-*", "hash-max-listpack-entries"),
        sorted_("CONFIG", "GET", "*-max-listpack-*", "zset-max-ziplist-value"),
        ["CONFIG", "GET", "set-max-*"],
        ["CONFIG", "GET", "list-max-ziplist-size"],
        sorted_("CONFIG", "GET", "timeout", "time*", "TIMEOUT"),
        sorted_("CONFIG", "GET", "appendfsync", "tls-auth-clients", "busy*"),
        ["CONFIG", "GET", "t?meout"],
        ["CONFIG", "GET", "[mn]axclients"],
        ["CONFIG", "GET", "loglevel"],
        ["CONFIG", "GET", "logfile"],
        ["CONFIG", "GET", "cluster-enabled"],
        ["CONFIG", "GET", "notify-keyspace-events"],
        ["CONFIG", "GET", "enable-debug-command"],
        ["CONFIG", "GET", "proto-max-bulk-len"],
        ["CONFIG", "GET"],
    ),
    script(
        "config_set_several_pairs_all_or_none",
        ["CONFIG", "SET", "timeout", "7", "maxclients", "500"],
        ["CONFIG", "GET", "timeout"],
        ["CONFIG", "GET", "maxclients"],
        # One bad value: nothing changes, the error names it.
        ["CONFIG", "SET", "timeout", "8", "maxclients", "0"],
        ["CONFIG", "SET", "maxclients", "9", "timeout", "x"],
        ["CONFIG", "SET", "timeout", "9", "busy-reply-threshold", "-1", "maxclients", "10"],
        ["CONFIG", "GET", "timeout"],
        ["CONFIG", "GET", "maxclients"],
        # Names are checked first, in order: the first problem wins over any bad value.
        ["CONFIG", "SET", "timeout", "x", "logfile", "y"],
        ["CONFIG", "SET", "logfile", "y", "nosuch", "1"],
        ["CONFIG", "SET", "nosuch", "1", "logfile", "y"],
        ["CONFIG", "SET", "timeout", "1", "TIMEOUT", "2"],
        ["CONFIG", "SET", "lua-time-limit", "1", "busy-reply-threshold", "2"],
        ["CONFIG", "GET", "lua-time-limit"],
        ["CONFIG", "SET", "lua-time-limit", "1", "LUA-TIME-LIMIT", "2"],
        ["CONFIG", "SET", "busy-reply-threshold", "5000"],
        ["CONFIG", "SET", "TIMEOUT", "x"],
        ["CONFIG", "SET", "LUA-TIME-LIMIT", "x"],
        ["CONFIG", "SET", "dir", "/tmp"],
        ["CONFIG", "SET", "dbfilename", "x.rdb"],
        ["CONFIG", "SET", "appenddirname", "x"],
        ["CONFIG", "SET", "aclfile", "x"],
        ["CONFIG", "SET", "timeout", "1", "maxclients"],
        ["CONFIG", "SET", "timeout"],
        ["CONFIG", "GET", "timeout"],
        ["CONFIG", "SET", "timeout", "0", "maxclients", "10000"],
        ["CONFIG", "GET", "timeout"],
        ["CONFIG", "GET", "maxclients"],
    ),
    script(
        "config_set_value_errors",
        ["CONFIG", "SET", "maxclients", "1e3"],
        ["CONFIG", "SET", "maxclients", " 5"],
        ["CONFIG", "SET", "protected-mode", "YES"],
        ["CONFIG", "GET", "protected-mode"],
        ["CONFIG", "SET", "protected-mode", "on"],
        ["CONFIG", "SET", "appendfsync", "sometimes"],
        ["CONFIG", "SET", "appendfsync", "EVERYSEC"],
        ["CONFIG", "GET", "appendfsync"],
        ["CONFIG", "SET", "proto-max-bulk-len", "1kb"],
        ["CONFIG", "SET", "proto-max-bulk-len", "2mb"],
        ["CONFIG", "GET", "proto-max-bulk-len"],
        ["CONFIG", "SET", "proto-max-bulk-len", "512MB"],
        ["CONFIG", "GET", "proto-max-bulk-len"],
        ["CONFIG", "SET", "proto-max-bulk-len", "lots"],
        ["CONFIG", "SET", "auto-aof-rewrite-min-size", ""],
        ["CONFIG", "GET", "auto-aof-rewrite-min-size"],
        ["CONFIG", "SET", "auto-aof-rewrite-min-size", "-1"],
        ["CONFIG", "SET", "auto-aof-rewrite-min-size", " 1mb"],
        ["CONFIG", "SET", "auto-aof-rewrite-min-size", "01MB"],
        ["CONFIG", "GET", "auto-aof-rewrite-min-size"],
        ["CONFIG", "SET", "auto-aof-rewrite-min-size", "64mb"],
        ["CONFIG", "SET", "save", "60  5"],
        ["CONFIG", "SET", "save", " 60 5"],
        ["CONFIG", "SET", "save", "60 5 "],
        ["CONFIG", "SET", "client-output-buffer-limit", "normal  0 0 0"],
        ["CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 +0"],
        ["CONFIG", "SET", "client-output-buffer-limit", "normal -1 0 0"],
        ["CONFIG", "SET", "save", "100"],
        ["CONFIG", "SET", "save", "0 1"],
        ["CONFIG", "SET", "save", "x 1"],
        ["CONFIG", "SET", "client-output-buffer-limit", "master 1 1 1"],
        ["CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 1 -1"],
        # The classes not named keep their current limits.
        ["CONFIG", "SET", "client-output-buffer-limit", "normal 1mb 512kb 10"],
        ["CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 2mb 60"],
        ["CONFIG", "GET", "client-output-buffer-limit"],
        ["CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0 pubsub 32mb 8mb 60"],
        ["CONFIG", "GET", "client-output-buffer-limit"],
        ["CONFIG", "SET", "notify-keyspace-events", "KEA"],
        ["CONFIG", "GET", "notify-keyspace-events"],
        ["CONFIG", "SET", "notify-keyspace-events", "Z"],
        ["CONFIG", "SET", "notify-keyspace-events", "gx$E"],
        ["CONFIG", "GET", "notify-keyspace-events"],
        ["CONFIG", "SET", "notify-keyspace-events", ""],
        ["CONFIG", "GET", "notify-keyspace-events"],
    ),
    script(
        "config_set_in_multi",
        ["MULTI"],
        ["CONFIG", "SET", "timeout", "x"],
        ["CONFIG", "SET", "timeout", "5", "maxclients", "100"],
        ["CONFIG", "GET", "timeout"],
        ["CONFIG", "SET", "logfile", "x"],
        ["EXEC"],
        ["CONFIG", "SET", "timeout", "0", "maxclients", "10000"],
        ["EVAL", "return redis.call('config', 'get', 'timeout')", "0"],
    ),
    script(
        "config_loglevel",
        ["CONFIG", "SET", "loglevel", "loud"],
        ["CONFIG", "SET", "loglevel", "VERBOSE"],
        ["CONFIG", "GET", "loglevel"],
        ["CONFIG", "SET", "loglevel", "debug", "loglevel", "notice"],
        ["CONFIG", "SET", "loglevel", "warning"],
        ["CONFIG", "GET", "loglevel"],
        ["CONFIG", "SET", "loglevel", "notice"],
        ["CONFIG", "GET", "loglevel"],
        ["CONFIG", "SET", "logfile", "/tmp/x.log"],
    ),
    script(
        "config_resetstat_rewrite_help",
        ["SET", "a", "1"],
        ["CONFIG", "RESETSTAT"],
        ["CONFIG", "RESETSTAT", "now"],
        ["CONFIG", "REWRITE"],
        ["CONFIG", "REWRITE", "now"],
        ["CONFIG", "HELP"],
        ["CONFIG", "NOSUCH"],
        ["CONFIG"],
    ),
]


@parametrize(SCRIPTS)
def test_config_matches_redis(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)


#: Directives whose value the two test servers' command lines set differently.
STARTED_APART = {"bind", "port", "dir", "save", "appendonly", "workers", "cluster-enabled"}


def shared_names(oracle) -> list[str]:
    """Every shardis directive (and alias) real Redis 7.0 has too."""
    import redis

    from shardis import config

    theirs = redis.Redis(port=oracle.port, decode_responses=True).config_get("*")
    return [name for name in config.names() if name in theirs]


def test_every_shared_directive_has_redis_s_default(oracle, shardis):
    """CONFIG GET of each directive both servers have (not set on their command lines)."""
    import redis

    names = [name for name in shared_names(oracle) if name not in STARTED_APART]
    assert len(names) > 30
    theirs = redis.Redis(port=oracle.port, decode_responses=True)
    ours = redis.Redis(port=shardis.port, decode_responses=True)
    assert {name: ours.config_get(name) for name in names} == {
        name: theirs.config_get(name) for name in names}


def test_every_shared_directive_refuses_what_redis_refuses(oracle, shardis):
    """CONFIG SET of values each directive refuses (out of range, not a number, not a
    choice): the same error from both, and nothing changed."""
    import redis

    from shardis import config

    bad: list[tuple[str, str]] = []
    for name in shared_names(oracle):
        directive = config.lookup(name)
        if not directive.mutable:  # port, tls-port: immutable in shardis (see the README)
            continue
        if directive.kind in ("int", "memory"):
            bad += [(name, str(directive.low - 1)), (name, "12abc"),
                    (name, str(directive.high + 1))]
        elif directive.kind in ("bool", "enum"):
            bad.append((name, "maybe-not"))
    assert len(bad) >= 30
    theirs = redis.Redis(port=oracle.port, decode_responses=True)
    ours = redis.Redis(port=shardis.port, decode_responses=True)

    def error(client, name: str, value: str) -> str:
        try:
            client.config_set(name, value)
        except redis.ResponseError as exc:
            return str(exc)
        return "accepted"

    assert [error(ours, *pair) for pair in bad] == [error(theirs, *pair) for pair in bad]


def test_a_config_file_line_is_refused_as_redis_server_refuses_it(oracle, tmp_path):
    """Each shared directive with a bad value in a config file (immutable ones too): shardis's
    loader reports it in redis-server's very words."""
    import shutil
    import subprocess

    from shardis import config

    lines: list[str] = []
    for name in shared_names(oracle):
        directive = config.lookup(name)
        if directive.kind in ("int", "memory"):
            lines += [f"{name} {directive.low - 1}", f"{name} 12abc", f"{name} 1 2"]
            if directive.high < config.ULLONG_MAX:  # past it, memtoull saturates: accepted
                lines.append(f"{name} {directive.high + 1}")
        elif directive.kind in ("bool", "enum"):
            lines += [f"{name} maybe-not", f"{name} yes no"]
    assert len(lines) >= 50
    path = tmp_path / "bad.conf"
    for line in lines:
        path.write_text(f"# one bad line\n{line}\n")
        theirs = subprocess.run([shutil.which("redis-server"), str(path)],
                                capture_output=True, text=True, timeout=30)
        with pytest.raises(config.ConfigFileError) as caught:
            config.load(str(path), [])
        assert (caught.value.report(), 1) == (theirs.stderr, theirs.returncode), line
