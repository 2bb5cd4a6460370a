"""Differential corpus: connection and server commands, inline and malformed requests.

Byte for byte against real Redis 7.0 (HELLO's connection id, CLIENT ID, TIME and COMMAND COUNT
are compared by shape only; COMMAND INFO by its leading fields).  CLIENT SETINFO is absent on
purpose: Redis 7.0.15 does not have it.  See tests/differential.py for the step kinds.
"""

from __future__ import annotations

from tests.differential import (
    check,
    cmd,
    command_info_fields,
    hello_without_id,
    normalized,
    parametrize,
    raw,
    script,
    type_only,
)


def hello(*args):
    return normalized(hello_without_id, "HELLO", *args)


def command_info(name):
    return normalized(command_info_fields, "COMMAND", "INFO", name)


#: Commands whose COMMAND INFO entry is compared (name, arity, flags, keys, ACL categories).
COMMAND_INFO_NAMES = [
    "get", "set", "mget", "mset", "msetnx", "getset", "getdel", "setnx", "setex", "psetex",
    "append", "strlen", "getrange", "substr", "setrange", "incr", "decr", "incrby", "decrby",
    "incrbyfloat", "lcs", "del", "unlink", "exists", "keys", "type", "rename", "renamenx",
    "copy", "randomkey", "scan", "touch", "dbsize", "flushdb", "flushall", "ttl", "object",
    "memory", "dump", "restore", "ping", "echo", "select", "hello", "client", "command", "time", "quit",
    "GET", "nosuchcommand",
]

SCRIPTS = [
    # -- PING / ECHO -----------------------------------------------------------------------
    script(
        "ping_echo",
        ["PING"],
        ["ping"],
        ["PING", "msg"],
        ["PING", ""],
        ["PING", "hello world"],
        ["PING", b"bin\x00\r\n"],
        ["PING", "a", "b"],
        ["ECHO", "hi"],
        ["ECHO", ""],
        ["ECHO", "\r\n"],
        ["ECHO", b"\x00\xff"],
        ["ECHO", "x" * 100_000],
        ["ECHO"],
        ["ECHO", "a", "b"],
    ),
    # -- SELECT ----------------------------------------------------------------------------
    script(
        "select_errors",
        ["SET", "k", "v"],
        ["SELECT", "0"],
        ["GET", "k"],
        ["SELECT", "abc"],
        ["SELECT", ""],
        ["SELECT", "1.5"],
        ["SELECT", "16"],
        ["SELECT", "-1"],
        ["SELECT", "9223372036854775808"],
        ["SELECT"],
        ["SELECT", "0", "1"],
        ["GET", "k"],
    ),
    script(
        "select_nonzero",
        ["SELECT", "1"],
        ["SELECT", "0"],
    ),
    # -- HELLO -----------------------------------------------------------------------------
    script(
        "hello_resp2",
        hello(),
        hello("2"),
        ["PING"],
        ["GET", "missing"],
        hello("2", "SETNAME", "conn-a"),
        ["CLIENT", "GETNAME"],
        hello("2", "setname", "lower"),
        ["CLIENT", "GETNAME"],
        hello("2", "SETNAME", "a", "SETNAME", "b"),
        ["CLIENT", "GETNAME"],
        hello("2", "SETNAME", ""),
        ["CLIENT", "GETNAME"],
        normalized(hello_without_id, "hello", "2"),
        protocols=(2,),
    ),
    script(
        "hello_switch_protocol",
        # Starts in the script's protocol; switches both ways.
        hello("3"),
        ["GET", "missing"],
        ["MGET", "missing", "missing2"],
        ["SET", "n", "1"],
        ["INCRBYFLOAT", "n", "1.5"],
        ["OBJECT", "ENCODING", "missing"],
        ["PING"],
        hello(),
        hello("2"),
        ["GET", "missing"],
        ["MGET", "missing"],
        hello(),
        hello("3", "SETNAME", "x"),
        ["CLIENT", "GETNAME"],
        ["HELLO", "3", "SETNAME", "a b"],
        ["CLIENT", "GETNAME"],
    ),
    script(
        "hello_errors",
        ["HELLO", "4"],
        ["HELLO", "1"],
        ["HELLO", "0"],
        ["HELLO", "-1"],
        ["HELLO", "abc"],
        ["HELLO", ""],
        ["HELLO", "3.0"],
        ["HELLO", "02"],
        ["HELLO", "9223372036854775808"],
        ["HELLO", "4", "SETNAME", "zz"],
        ["CLIENT", "GETNAME"],
        ["HELLO", "2", "FOO"],
        ["HELLO", "2", "SETNAME"],
        ["HELLO", "2", "AUTH"],
        ["HELLO", "3", "AUTH", "x"],
        ["HELLO", "2", "SETNAME", "a b"],
        ["HELLO", "2", "SETNAME", "a\nb"],
        ["HELLO", "2", "FOO", "SETNAME", "q"],
        ["CLIENT", "GETNAME"],
        ["HELLO", "2", "SETNAME", "q", "FOO"],
        ["CLIENT", "GETNAME"],
        ["PING"],
    ),
    # -- CLIENT ----------------------------------------------------------------------------
    script(
        "client_name_id",
        ["CLIENT", "GETNAME"],
        ["CLIENT", "SETNAME", "x"],
        ["CLIENT", "GETNAME"],
        ["client", "setname", "conn-1_ok:2"],
        ["CLIENT", "GETNAME"],
        ["CLIENT", "SETNAME", "a b"],
        ["CLIENT", "SETNAME", "a\nb"],
        ["CLIENT", "SETNAME", "a\r\nb"],
        ["CLIENT", "SETNAME", "\xe9"],
        ["CLIENT", "SETNAME", b"a\x00b"],
        ["CLIENT", "SETNAME", b"a\x7f"],
        ["CLIENT", "GETNAME"],
        ["CLIENT", "SETNAME", "!~"],
        ["CLIENT", "GETNAME"],
        ["CLIENT", "SETNAME", ""],
        ["CLIENT", "GETNAME"],
        type_only("CLIENT", "ID"),
        type_only("client", "id"),
        ["CLIENT", "ID", "x"],
        ["CLIENT", "SETNAME"],
        ["CLIENT", "SETNAME", "a", "b"],
        ["CLIENT", "GETNAME", "x"],
        ["CLIENT"],
        ["CLIENT", "FOO"],
        ["CLIENT", "foo", "bar"],
    ),
    # -- COMMAND ---------------------------------------------------------------------------
    script(
        "command_count_info",
        type_only("COMMAND", "COUNT"),
        ["COMMAND", "COUNT", "x"],
        ["COMMAND", "FOO"],
        *[command_info(name) for name in COMMAND_INFO_NAMES],
        normalized(command_info_fields, "COMMAND", "INFO", "get", "set", "mget"),
        normalized(command_info_fields, "COMMAND", "INFO", "nosuch", "get", "nosuch"),
    ),
    # -- TIME / DBSIZE ---------------------------------------------------------------------
    script(
        "time_dbsize",
        type_only("TIME"),
        type_only("time"),
        ["TIME", "x"],
        ["DBSIZE"],
        ["MSET", "a", "1", "b", "2", "user:1", "3", "{t}x", "4", "{t}y", "5"],
        ["DBSIZE"],
        ["DEL", "a"],
        ["DBSIZE"],
        ["DBSIZE", "x"],
    ),
    # -- QUIT ------------------------------------------------------------------------------
    script(
        "quit",
        ["SET", "k", "before-quit"],
        cmd("QUIT", closes=True),
        ["GET", "k"],
        cmd("quit", closes=True),
        cmd("QUIT", "extra", "args", closes=True),
        ["PING"],
    ),
    script(
        "quit_in_pipeline",
        raw(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n", replies=2,
            closes=True),
        ["PING"],
        raw(b"SET k v\r\nQUIT\r\nSET k w\r\n", replies=2, closes=True),
        ["GET", "k"],
    ),
    # -- inline commands -------------------------------------------------------------------
    script(
        "inline_commands",
        raw(b"PING\r\n"),
        raw(b"ping\r\n"),
        raw(b"PING\n"),
        raw(b"   PING   \r\n"),
        raw(b"\r\n\r\nPING\r\n"),
        raw(b'SET a "b c"\r\n'),
        raw(b"GET a\r\n"),
        ["GET", "a"],
        raw(b"ECHO 'x y'\r\n"),
        raw(b"ECHO   a   \r\n"),
        raw(b"ECHO a\tb\r\n"),
        raw(b'ECHO ""\r\n'),
        raw(b"ECHO ''\r\n"),
        raw(b'"ECHO" x\r\n'),
        raw(b'ECHO "a\\x41\\n"\r\n'),
        raw(b'ECHO "\\t\\r\\n\\\\\\""\r\n'),
        raw(b'ECHO "\\xzz"\r\n'),
        raw(b'ECHO "\\q"\r\n'),
        raw(b"ECHO '\\'x'\r\n"),
        raw(b"ECHO 'a\\nb'\r\n"),
        raw(b'SET "key with space" "value\\r\\n"\r\n'),
        ["GET", "key with space"],
        raw(b"MSET x 1 y 2 user:1 3\r\n"),
        raw(b"MGET x y user:1 nokey\r\n"),
        raw(b"INCR x\r\n"),
        raw(b"FOO bar\r\n"),
        raw(b"GET\r\n"),
        raw(b"gEt x\r\n"),
        raw(b"ECHO " + b"a" * 20_000 + b"\r\n"),
        raw(b"PING\r\n" * 5, replies=5),
    ),
    script(
        "inline_unbalanced_quotes",
        raw(b'ECHO "x y\r\n', closes=True),
        raw(b"ECHO 'x y\r\n", closes=True),
        raw(b'ECHO "a"b\r\n', closes=True),
        raw(b"ECHO 'a''b'\r\n", closes=True),
        raw(b'"unterminated\r\n', closes=True),
        raw(b'PING\r\nECHO "oops\r\nPING\r\n', replies=2, closes=True),
        ["PING"],
    ),
    script(
        "inline_too_big",
        raw(b"a" * 70_000, closes=True),
        ["PING"],
    ),
    # -- pipelining ------------------------------------------------------------------------
    script(
        "pipelined_raw",
        raw(
            b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n"
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
            b"*1\r\n$4\r\nPING\r\n",
            replies=3,
        ),
        raw(b"*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n$4\r\nPING\r\n", replies=3),
        raw(
            b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n" * 20
            + b"*2\r\n$3\r\nGET\r\n$1\r\nn\r\n",
            replies=21,
        ),
        raw(
            b"*3\r\n$3\r\nSET\r\n$6\r\nuser:1\r\n$1\r\nx\r\n"
            b"*3\r\n$3\r\nSET\r\n$4\r\n{t}a\r\n$1\r\ny\r\n"
            b"*4\r\n$4\r\nMGET\r\n$6\r\nuser:1\r\n$4\r\n{t}a\r\n$1\r\na\r\n"
            b"*2\r\n$3\r\nDEL\r\n$6\r\nuser:1\r\n"
            b"*3\r\n$6\r\nEXISTS\r\n$6\r\nuser:1\r\n$4\r\n{t}a\r\n"
            b"*1\r\n$3\r\nFOO\r\n"
            b"*1\r\n$6\r\nDBSIZE\r\n",
            replies=7,
        ),
        raw(b"*-1\r\n*1\r\n$4\r\nPING\r\n"),
        raw(b"*0\r\n*1\r\n$4\r\nPING\r\n"),
        raw(b" \r\n*1\r\n$4\r\nPING\r\n"),
        raw(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"),
    ),
    script(
        "split_request",
        # One request written in pieces: the server must wait for the rest.
        raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk", replies=0),
        raw(b"\r\n$5\r\nhel", replies=0),
        raw(b"lo\r\n"),
        ["GET", "k"],
        raw(b"*2\r\n$4\r\nECHO\r\n$10\r\n01234", replies=0),
        raw(b"56789\r\n*1\r\n$4\r\nPI", replies=1),
        raw(b"NG\r\n"),
        raw(b"ECHO hel", replies=0),
        raw(b"lo\r\n"),
    ),
    # -- malformed RESP: error reply, then the server closes the connection ----------------
    script(
        "malformed_bulk_length",
        raw(b"*1\r\n$abc\r\n", closes=True),
        raw(b"*1\r\n$-1\r\n", closes=True),
        raw(b"*1\r\n$04\r\nPING\r\n", closes=True),
        raw(b"*1\r\n$+4\r\nPING\r\n", closes=True),
        raw(b"*2\r\n$4\r\nECHO\r\n$\r\n", closes=True),
        raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$-5\r\n", closes=True),
        raw(b"*1\r\n$536870913\r\n", closes=True),
        ["EXISTS", "k"],
    ),
    script(
        "malformed_multibulk_length",
        raw(b"*abc\r\n", closes=True),
        raw(b"*\r\n", closes=True),
        raw(b"*01\r\n$4\r\nPING\r\n", closes=True),
        raw(b"*+1\r\n$4\r\nPING\r\n", closes=True),
        raw(b"*1 \r\n$4\r\nPING\r\n", closes=True),
        ["PING"],
    ),
    script(
        "malformed_expected_dollar",
        raw(b"*2\r\n$3\r\nfoo\r\n:1\r\n", closes=True),
        raw(b"*1\r\n+PING\r\n", closes=True),
        raw(b"*2\r\n$4\r\nECHO\r\n*1\r\n", closes=True),
        raw(b"*1\r\nPING\r\n", closes=True),
        ["PING"],
    ),
    script(
        "malformed_after_good_requests",
        raw(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$abc\r\n",
            replies=3, closes=True),
        ["GET", "k"],
        raw(b"PING\r\n*2\r\n$3\r\nfoo\r\n:1\r\n", replies=2, closes=True),
        ["PING"],
    ),
]


@parametrize(SCRIPTS)
def test_server(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
