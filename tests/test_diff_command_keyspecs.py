"""Key specs against real Redis 7.0.15: COMMAND INFO of every command, COMMAND GETKEYS and
GETKEYSANDFLAGS over a corpus of command lines, and the ACL key checks that use the same keys
and flags (``shardis.commands.getkeys``).

COMMAND INFO is compared entry by entry for every (sub)command shardis lists, in RESP2 and
RESP3: every field byte for byte, the key specs field included, except where shardis
deliberately differs (see :func:`compare_entries`).  GETKEYS, GETKEYSANDFLAGS and the ACL
scripts go through the differential harness (tests/differential.py), both protocols.
"""

from __future__ import annotations

import pytest

from tests.differential import check, children, parametrize, script, skip_reply
from tests.resp_client import RawClient, decode
from tests.test_atomicity import keys_on_distinct_workers
from tests.test_server import NOT_IN_REDIS_70

#: Three keys on three different shardis workers.
A, B, C = keys_on_distinct_workers(3)

FIELDS = ("name", "arity", "flags", "first key", "last key", "step", "acl categories", "tips",
          "key specs", "subcommands")


def info_entries(port: int, protocol: int, *args: str) -> dict[bytes, list[bytes]]:
    """COMMAND [INFO ...]'s entries as raw fields, by command name (null entries left out)."""
    with RawClient(port) as client:
        if protocol == 3:
            client.hello3()
        reply = client.call("COMMAND", *args)
    entries: dict[bytes, list[bytes]] = {}
    for entry in children(reply)[1]:
        parts = children(entry)
        if parts is not None:
            fields = parts[1]
            entries[decode(fields[0])] = fields
    return entries


def subentries(field: bytes) -> dict[bytes, bytes]:
    """A subcommands field as {full name: raw entry}."""
    return {decode(children(entry)[1][0]): entry for entry in children(field)[1]}


def compare_entries(name: bytes, ours: list[bytes], theirs: list[bytes],
                    redis_only: set[str]) -> list[str]:
    """The differences between two COMMAND INFO entries, as messages.

    Every field must be byte-identical except the subcommands (the tenth): Redis lists them in
    its dict's hash order, which is its own, so they are compared by name, each entry byte for
    byte; the ones shardis lacks (``redis_only``: MEMORY DOCTOR...) must be all that is missing.
    """
    problems = []
    for index, (mine, redis) in enumerate(zip(ours[:9], theirs[:9])):
        if mine != redis:
            problems.append(f"{name!r} {FIELDS[index]}: {mine!r} != {redis!r}")
    mine, redis = ours[9], theirs[9]
    if mine[:1] != redis[:1]:
        problems.append(f"{name!r} subcommands type: {mine[:1]!r} != {redis[:1]!r}")
    ours_subs, theirs_subs = subentries(mine), subentries(redis)
    for sub, entry in ours_subs.items():
        if sub.decode() in NOT_IN_REDIS_70:
            continue
        if entry != theirs_subs.get(sub):
            problems.append(f"{sub!r}: {entry!r} != {theirs_subs.get(sub)!r}")
    missing = {sub.decode() for sub in set(theirs_subs) - set(ours_subs)}
    if missing - redis_only:
        problems.append(f"{name!r} lacks subcommands {sorted(missing - redis_only)}")
    return problems


def listed(port: int) -> set[str]:
    with RawClient(port) as client:
        return {name.decode() for name in decode(client.call("COMMAND", "LIST"))}


@pytest.mark.parametrize("protocol", [2, 3])
def test_command_info_of_every_command_matches_redis(shardis, oracle, protocol):
    ours_listed = listed(shardis.port)
    redis_only = listed(oracle.port) - ours_listed
    names = sorted(ours_listed - NOT_IN_REDIS_70)
    ours = info_entries(shardis.port, protocol, "INFO", *names)
    theirs = info_entries(oracle.port, protocol, "INFO", *names)
    assert sorted(name.decode() for name in ours) == names
    problems = [problem for name in ours
                for problem in compare_entries(name, ours[name], theirs[name], redis_only)]
    assert problems == []


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("args", [(), ("INFO",)], ids=["COMMAND", "COMMAND-INFO"])
def test_all_commands_answer_as_redis(shardis, oracle, protocol, args):
    """COMMAND and COMMAND INFO without names: the same entries as naming each command (Redis
    sends them in its dict's order, so by name here)."""
    ours = info_entries(shardis.port, protocol, *args)
    theirs = info_entries(oracle.port, protocol, *args)
    redis_only = listed(oracle.port) - listed(shardis.port)
    assert {name.decode() for name in set(theirs) - set(ours)} <= redis_only
    problems = [problem for name in ours if name.decode() not in NOT_IN_REDIS_70
                for problem in compare_entries(name, ours[name], theirs[name], redis_only)]
    assert problems == []


def test_key_specs_field_is_a_set_of_maps_in_resp3(shardis):
    """The shape Redis's addReplyCommandKeySpecs gives, checked on its own (a regression to
    arrays would be caught above too, but this names it)."""
    fields = info_entries(shardis.port, 3, "INFO", "xread")[b"xread"]
    assert fields[8].startswith(b"~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n")
    assert fields[9] == b"~0\r\n"


# -- COMMAND GETKEYS / GETKEYSANDFLAGS -------------------------------------------------------
#: Command lines covering every key-spec shape (index or keyword begin, range with a fixed,
#: negative or limited end, keynum), every getkeys function, the fallbacks from a spec to its
#: function, and the errors.
LINES: list[list[str | bytes]] = [
    # index + range, fixed and to the end, with a step
    ["GET", A], ["APPEND", A, "v"], ["GETEX", A, "PX", "1"], ["GETDEL", A], ["STRLEN", A],
    ["DEL", A, B, C], ["UNLINK", A, B], ["EXISTS", A, B, A], ["TOUCH", A], ["MGET", A, B, C],
    ["MSET", A, "1", B, "2"], ["MSET", A, "1", B], ["MSETNX", A, "1", B, "2"],
    ["WATCH", A, B], ["TYPE", A], ["EXPIRE", A, "10"], ["PERSIST", A], ["TTL", A],
    ["SINTER", A, B], ["SUNIONSTORE", C, A, B], ["SDIFFSTORE", C, A], ["SMOVE", A, B, "m"],
    ["LPUSH", A, "x"], ["RPOPLPUSH", A, B], ["LMOVE", A, B, "LEFT", "RIGHT"],
    ["BLMOVE", A, B, "LEFT", "RIGHT", "0"], ["BRPOPLPUSH", A, B, "0"], ["COPY", A, B],
    ["RENAME", A, B], ["RENAMENX", A, B], ["BITOP", "AND", C, A, B], ["BITCOUNT", A],
    ["PFMERGE", C, A, B], ["PFCOUNT", A, B], ["PFADD", A, "x"], ["LCS", A, B],
    ["HSET", A, "f", "v"], ["ZADD", A, "1", "m"], ["ZRANGESTORE", C, A, "0", "1"],
    ["GEOADD", A, "1", "1", "m"], ["GEOSEARCHSTORE", C, A, "FROMLONLAT", "1", "1", "BYRADIUS",
                                   "1", "m"],
    ["XADD", A, "*", "f", "v"], ["XCLAIM", A, "g", "c", "0", "0-1"], ["XSETID", A, "1-1"],
    ["DUMP", A], ["RESTORE", A, "0", "x"], ["GETRANGE", A, "0", "1"], ["SETRANGE", A, "0", "x"],
    ["INCR", A], ["SETNX", A, "v"], ["SETEX", A, "10", "v"], ["GETSET", A, "v"],
    # range ending before the last argument
    ["BLPOP", A, B, "0"], ["BRPOP", A, "0"], ["BZPOPMIN", A, B, "0"], ["BZPOPMAX", A, "0"],
    # subcommands with keys at index 2
    ["OBJECT", "ENCODING", A], ["OBJECT", "FREQ", A], ["MEMORY", "USAGE", A],
    ["XINFO", "STREAM", A], ["XINFO", "GROUPS", A], ["XGROUP", "CREATE", A, "g", "$"],
    ["XGROUP", "CREATECONSUMER", A, "g", "c"], ["PFDEBUG", "GETREG", A],
    # keyword begin: STREAMS, with a limit of 2 (half the rest)
    ["XREAD", "STREAMS", A, B, "0", "0"], ["XREAD", "COUNT", "1", "STREAMS", A, "0"],
    ["XREAD", "BLOCK", "0", "STREAMS", A, B, C, "0", "0", "0"],
    ["XREAD", "STREAMS", A, "0", "0"], ["XREAD", "STREAMS", "STREAMS", "0"],
    ["XREAD", "streams", A, "$"], ["XREAD", "COUNT", "STREAMS", "STREAMS", A, "0"],
    ["XREADGROUP", "GROUP", "g", "c", "STREAMS", A, B, ">", ">"],
    ["XREADGROUP", "GROUP", "streams", "c", "STREAMS", A, ">"],
    ["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "NOACK", "STREAMS", A, ">"],
    # keynum: numkeys parsed strictly by the specs, else with atoi by the getkeys function
    ["ZUNIONSTORE", C, "2", A, B], ["ZUNIONSTORE", C, "2", A, B, "WEIGHTS", "1", "2"],
    ["ZUNIONSTORE", C, "0", A], ["ZUNIONSTORE", C, "-1", A], ["ZUNIONSTORE", C, "3", A, B],
    ["ZUNIONSTORE", C, "2abc", A, B], ["ZUNIONSTORE", C, " 1", A],
    ["ZINTERSTORE", C, "1", A], ["ZDIFFSTORE", C, "2", A, B], ["ZINTER", "2", A, B],
    ["ZUNION", "1", A, "WITHSCORES"], ["ZDIFF", "2", A, B], ["ZINTERCARD", "2", A, B],
    ["ZINTER", "x", A], ["SINTERCARD", "2", A, B, "LIMIT", "1"], ["SINTERCARD", "9", A],
    ["LMPOP", "2", A, B, "LEFT"], ["LMPOP", "1x", A, "LEFT"], ["BLMPOP", "0", "2", A, B, "LEFT"],
    ["ZMPOP", "1", A, "MIN"], ["BZMPOP", "0", "1", A, "MIN"], ["BZMPOP", "0", "01", A, "MIN"],
    ["EVAL", "return 1", "2", A, B, "arg"], ["EVAL", "return 1", "0"],
    ["EVAL", "return 1", "0", "arg"], ["EVAL", "return 1", "3", A], ["EVAL", "s", "-1", A],
    ["EVAL", "s", "4294967297", A], ["EVAL", "s", "9223372036854775808", A],
    ["EVAL", "s", "+1", A], ["EVALSHA", "x" * 40, "1", A], ["EVAL_RO", "s", "1", A],
    ["EVALSHA_RO", "x", "1", A], ["FCALL", "f", "2", A, B], ["FCALL_RO", "f", "0"],
    ["FCALL", "f", "1"],
    # getkeys functions deciding the flags per call
    ["SET", A, "v"], ["SET", A, "v", "GET"], ["SET", A, "v", "NX", "get"],
    ["SET", A, "v", b"GET\x00junk"], ["SET", A, "v", "GETX"], ["SET", A, "GET", "v"],
    ["BITFIELD", A, "GET", "u8", "0"], ["BITFIELD", A, "SET", "u8", "0", "1"],
    ["BITFIELD", A, "OVERFLOW", "SAT", "GET", "u8", "0"], ["BITFIELD", A, "GET", "u8"],
    ["BITFIELD", A], ["BITFIELD", A, "INCRBY", "u8", "0", "1", "GET", "u8", "0"],
    ["BITFIELD_RO", A, "GET", "u8", "0"],
    ["SORT", A], ["SORT", A, "STORE", B], ["SORT", A, "BY", "x", "STORE", B, "LIMIT", "0", "1",
                                            "STORE", C],
    ["SORT", A, "GET", "store", "BY", "store", "STORE", B], ["SORT", A, "STORE"],
    ["SORT", A, b"STORE\x00x", B], ["SORT", A, "LIMIT", "STORE", B, "STORE", C],
    ["SORT_RO", A, "STORE", B],
    ["MIGRATE", "h", "1", A, "0", "10"], ["MIGRATE", "h", "1", "", "0", "10", "KEYS", A, B],
    ["MIGRATE", "h", "1", A, "0", "10", "KEYS", B], ["MIGRATE", "h", "1", "", "0", "10", "KEYS"],
    ["MIGRATE", "h", "1", "", "0", "10", "COPY", "AUTH", "keys", "KEYS", A],
    ["MIGRATE", "h", "1", "", "0", "10", "AUTH2", "u", "keys", "KEYS", A],
    ["MIGRATE", "h", "1", "", "0", "10", "REPLACE", "KEYS", A, "KEYS"],
    ["GEORADIUS", A, "1", "2", "3", "m"], ["GEORADIUS", A, "1", "2", "3", "m", "STORE", B],
    ["GEORADIUS", A, "1", "2", "3", "m", "STOREDIST", B, "STORE", C],
    ["GEORADIUS", A, "1", "2", "3", "m", "STORE", B, "STORE", C],
    ["GEORADIUS", A, "1", "2", "3", "m", "STORE"], ["GEORADIUS_RO", A, "1", "2", "3", "m"],
    ["GEORADIUSBYMEMBER", A, "x", "3", "m", "COUNT", "1", "STORE", B],
    # mixed case names
    ["gEt", A], ["object", "encoding", A], ["Xread", "StReAmS", A, "0"],
    # errors: unknown, no keys, arity, nothing found
    ["NOSUCH", A], ["PING", A], ["CONFIG", "GET", "x"], ["CONFIG", "NOSUCH", "x"],
    ["OBJECT", "NOSUCH", A], ["OBJECT", "ENCODING"], ["GET", A, B], ["LMOVE", A, B],
    ["XREAD", A, "0"], ["SPUBLISH", "ch", "m"], ["SSUBSCRIBE", "ch"], ["PUBLISH", "ch", "m"],
    ["__dump", A], ["CLIENT", "KILL", "x"], ["EXEC", "x"], ["MULTI", "x"],
]

SCRIPTS = [
    script("getkeys", *[["COMMAND", "GETKEYS", *line] for line in LINES]),
    script("getkeysandflags", *[["COMMAND", "GETKEYSANDFLAGS", *line] for line in LINES]),
    script(
        "getkeys_errors",
        ["COMMAND", "GETKEYS"],
        ["COMMAND", "GETKEYS", "GET"],
        ["COMMAND", "GETKEYSANDFLAGS"],
        ["COMMAND", "GETKEYSANDFLAGS", "GET"],
        ["COMMAND", "getkeysandflags", "get", A],
        ["COMMAND", "HELP"],
        ["COMMAND", "HELP", "x"],
    ),
]


@parametrize(SCRIPTS)
def test_command_getkeys(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)


# -- the ACL key checks use the same keys and flags -------------------------------------------
W, R = "w:" + A, "r:" + B  # a write-only and a read-only key, on different workers

ACL_SCRIPTS = [
    script(
        "acl_dryrun_key_flags",
        ["ACL", "SETUSER", "kf", "on", "nopass", "+@all", "%W~w:*", "%R~r:*", "~rw:*"],
        # only written (OW, RM, insert, delete): write permission is enough
        ["ACL", "DRYRUN", "kf", "SET", W, "v"], ["ACL", "DRYRUN", "kf", "SET", R, "v"],
        ["ACL", "DRYRUN", "kf", "DEL", W], ["ACL", "DRYRUN", "kf", "LPUSH", W, "x"],
        ["ACL", "DRYRUN", "kf", "SETEX", W, "10", "v"],
        # read too (access): SET with GET, INCR, GETDEL
        ["ACL", "DRYRUN", "kf", "SET", W, "v", "GET"], ["ACL", "DRYRUN", "kf", "INCR", W],
        ["ACL", "DRYRUN", "kf", "GETDEL", W], ["ACL", "DRYRUN", "kf", "GET", W],
        ["ACL", "DRYRUN", "kf", "GET", R], ["ACL", "DRYRUN", "kf", "SET", "rw:1", "v", "GET"],
        # neither (RO without access): EXISTS, TYPE, TTL on a write-only key
        ["ACL", "DRYRUN", "kf", "EXISTS", W, R], ["ACL", "DRYRUN", "kf", "TYPE", W],
        ["ACL", "DRYRUN", "kf", "TTL", W], ["ACL", "DRYRUN", "kf", "EXISTS", "other"],
        # per key: sources read, destination written
        ["ACL", "DRYRUN", "kf", "COPY", R, W], ["ACL", "DRYRUN", "kf", "COPY", W, R],
        ["ACL", "DRYRUN", "kf", "SUNIONSTORE", W, R, "r:2"],
        ["ACL", "DRYRUN", "kf", "ZUNIONSTORE", W, "2", R, "r:2"],
        ["ACL", "DRYRUN", "kf", "ZUNIONSTORE", W, "2x", R, "r:2"],
        ["ACL", "DRYRUN", "kf", "LMOVE", R, W, "LEFT", "LEFT"],
        ["ACL", "DRYRUN", "kf", "SORT", R, "STORE", W], ["ACL", "DRYRUN", "kf", "SORT", W],
        ["ACL", "DRYRUN", "kf", "BITFIELD", R, "GET", "u8", "0"],
        ["ACL", "DRYRUN", "kf", "BITFIELD", R, "SET", "u8", "0", "1"],
        ["ACL", "DRYRUN", "kf", "GEORADIUS", R, "1", "1", "1", "m", "STORE", W],
        ["ACL", "DRYRUN", "kf", "XREAD", "STREAMS", R, W, "0", "0"],
        ["ACL", "DRYRUN", "kf", "EVAL", "return 1", "1", R],
        ["ACL", "DRYRUN", "kf", "EVAL", "return 1", "0"],
        ["ACL", "DELUSER", "kf"],
    ),
    script(
        "acl_key_flags_over_workers",
        ["SET", R, "1"], ["RPUSH", "r:list", "3", "1", "2"],
        ["ACL", "SETUSER", "kfw", "on", ">p", "+@all", "%W~w:*", "%R~r:*"],
        ["AUTH", "kfw", "p"],
        ["SET", W, "v"], ["MSET", W, "1", "w:2", "2"], ["GET", W], ["GET", R], ["SET", R, "x"],
        ["COPY", R, W, "REPLACE"], ["SORT", "r:list", "STORE", W], ["EXISTS", W, R],
        ["DEL", W, "w:2"], ["DEL", R],
        ["AUTH", "default", "x"],
        ["GET", W], ["LRANGE", W, "0", "-1"],
        skip_reply("ACL", "LOG", "RESET"),
        ["ACL", "DELUSER", "kfw"],
    ),
]


@parametrize(ACL_SCRIPTS)
def test_acl_key_checks_use_the_key_flags(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
