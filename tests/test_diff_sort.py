"""Differential corpus: SORT and SORT_RO, byte for byte against real Redis 7.0.

Most scripts run twice: with plain key names, which the three shardis workers share out (the
source, the BY/GET keys and the STORE destination then live on different workers, checked by
``test_keys_really_spread``: the router gates every worker and fetches the pattern keys), and
with every key in one ``{t}`` hash tag (all on one worker: the command is forwarded whole when
no pattern names a key).  A hashtable set comes in Redis's hash order, so unsorted replies from
one are compared sorted; everything SORT sorts is compared exactly.
"""

from __future__ import annotations

import random

from shardis.slots import SlotMap
from tests.differential import check, parametrize, script, sorted_
from tests.test_atomicity import keys_on_distinct_workers

WORKERS = 3
#: Keys on three different workers, and keys on B's worker.
A, B, C = keys_on_distinct_workers(3)
SET_B, STR_B, ZSET_B = (f"{{{B}}}{name}" for name in ("set", "str", "zset"))
#: A hash tag whose keys are on another worker than A's, and one on the same worker as A.
ELSEWHERE = "{" + B + "}"
SAME = "{" + A + "}"
LLONG_MAX = "9223372036854775807"
LLONG_MIN = "-9223372036854775808"


def weights_and_gets(p: str) -> list:
    """BY numeric/ALPHA weights (strings and hash fields), GET patterns, ties, missing keys."""
    return [
        ["RPUSH", f"{p}l", "3", "1", "2", "10", "7"],
        ["MSET", f"{p}w_1", "30", f"{p}w_2", "20", f"{p}w_3", "10", f"{p}w_10", "-5",
         f"{p}o_1", "one", f"{p}o_2", "two", f"{p}o_10", "ten"],
        ["HSET", f"{p}h_1", "f", "h1", "n", "5"],
        ["HSET", f"{p}h_3", "f", "h3", "n", "1"],
        ["HSET", f"{p}h_7", "f", "h7", "n", "1"],
        ["SORT", f"{p}l", "BY", f"{p}w_*"],
        ["SORT", f"{p}l", "BY", f"{p}w_*", "DESC"],
        ["SORT", f"{p}l", "BY", f"{p}w_*", "GET", "#", "GET", f"{p}o_*", "GET", f"{p}h_*->f"],
        ["SORT", f"{p}l", "BY", f"{p}h_*->n"],
        ["SORT", f"{p}l", "BY", f"{p}h_*->n", "DESC", "GET", f"{p}h_*->f"],
        ["SORT", f"{p}l", "BY", f"{p}o_*", "ALPHA"],
        ["SORT", f"{p}l", "BY", f"{p}o_*", "ALPHA", "DESC", "GET", f"{p}o_*"],
        ["SORT", f"{p}l", "BY", f"{p}h_*->f", "ALPHA"],
        ["SORT", f"{p}l", "BY", f"{p}o_*"],  # not numbers
        ["SORT", f"{p}l", "BY", f"{p}h_*->f"],
        ["SORT", f"{p}l", "BY", f"{p}h_*->nosuchfield"],
        ["SORT", f"{p}l", "BY", f"{p}nosuch_*"],
        ["SORT", f"{p}l", "BY", f"{p}nosuch_*", "ALPHA"],
        ["SORT", f"{p}l", "BY", f"{p}nosuch_*", "ALPHA", "DESC"],
        ["SORT", f"{p}l", "GET", f"{p}o_*"],
        ["SORT", f"{p}l", "GET", f"{p}o_*", "GET", f"{p}nothing"],
        ["SORT", f"{p}l", "GET", "#", "LIMIT", "1", "2"],
        ["SORT", f"{p}l", "BY", f"{p}w_*", "LIMIT", "1", "3", "GET", f"{p}o_*"],
        ["SORT", f"{p}l", "BY", "nosort", "GET", f"{p}o_*"],
        ["SORT", f"{p}l", "BY", "nosort", "DESC", "LIMIT", "1", "2", "GET", "#"],
        ["SORT_RO", f"{p}l", "BY", f"{p}w_*", "GET", f"{p}o_*"],
        # a pattern key of another type is missing: a list as weight, a string as a hash
        ["RPUSH", f"{p}w_7", "x"],
        ["SORT", f"{p}l", "BY", f"{p}w_*", "GET", f"{p}w_*"],
        ["SORT", f"{p}l", "BY", f"{p}o_*->f", "GET", f"{p}o_*->f", "GET", f"{p}l"],
    ]


def store_across(p: str) -> list:
    """STORE: the destination replaced (TTL and type gone), or deleted by an empty result."""
    return [
        ["RPUSH", f"{p}src", "b", "a", "c"],
        ["SET", f"{p}dst", "old", "EX", "100"],
        ["SORT", f"{p}src", "ALPHA", "STORE", f"{p}dst"],
        ["TYPE", f"{p}dst"],
        ["TTL", f"{p}dst"],
        ["OBJECT", "ENCODING", f"{p}dst"],
        ["LRANGE", f"{p}dst", "0", "-1"],
        ["MSET", f"{p}v_a", "AA", f"{p}v_b", "BB"],
        ["SORT", f"{p}src", "ALPHA", "DESC", "GET", f"{p}v_*", "GET", "#", "STORE", f"{p}dst"],
        ["LRANGE", f"{p}dst", "0", "-1"],
        ["SORT", f"{p}src", "ALPHA", "LIMIT", "0", "0", "STORE", f"{p}dst"],
        ["EXISTS", f"{p}dst"],
        ["SORT", f"{p}src", "ALPHA", "LIMIT", "0", "0", "STORE", f"{p}dst"],
        ["SORT", f"{p}nosuch", "STORE", f"{p}dst"],
        ["SORT", f"{p}src", "ALPHA", "STORE", f"{p}one", "STORE", f"{p}two"],
        ["EXISTS", f"{p}one", f"{p}two"],
        ["SORT", f"{p}src", "ALPHA", "STORE", f"{p}src"],
        ["LRANGE", f"{p}src", "0", "-1"],
        ["SADD", f"{p}set", "z", "y", "x", "10", "9"],
        ["SORT", f"{p}set", "BY", "nosort", "STORE", f"{p}dst"],  # sorted ALPHA anyway
        ["LRANGE", f"{p}dst", "0", "-1"],
        ["SORT", f"{p}set", "BY", "nosort", "LIMIT", "1", "2", "STORE", f"{p}dst"],
        ["LRANGE", f"{p}dst", "0", "-1"],
        ["SET", f"{p}n_x", "3"],
        ["SET", f"{p}n_y", "1"],
        ["SORT", f"{p}set", "BY", f"{p}n_*", "STORE", f"{p}dst"],
        ["LRANGE", f"{p}dst", "0", "-1"],
        ["SORT", f"{p}set", "BY", f"{p}n_*", "LIMIT", "0", "3", "GET", "#", "STORE", f"{p}dst"],
        ["LRANGE", f"{p}dst", "0", "-1"],
        ["SORT", f"{p}src", "GET", f"{p}nope_*", "ALPHA", "STORE", f"{p}dst"],
        ["LRANGE", f"{p}dst", "0", "-1"],
        ["SORT", f"{p}set", "ALPHA", "STORE", f"{p}dst"],
        ["LRANGE", f"{p}dst", "0", "-1"],
        ["SORT", f"{p}set", "STORE", f"{p}dst"],
        ["EXISTS", f"{p}dst"],
        ["LRANGE", f"{p}dst", "0", "-1"],
    ]


def _both(name: str, build, **kwargs):
    """The script with keys spread over the workers and with every key in one hash tag."""
    return [script(f"{name}_spread", *build(""), **kwargs),
            script(f"{name}_tagged", *build("{t}"), **kwargs)]


SCRIPTS = [
    # -- numbers -----------------------------------------------------------------------------
    script(
        "numeric_list",
        ["RPUSH", "l", "3", "1", "2", "10", "-4", "1.5", "1e3", "-0", "0"],
        ["SORT", "l"],
        ["SORT", "l", "DESC"],
        ["SORT", "l", "ASC"],
        ["SORT", "l", "desc", "asc"],
        ["sort", "l", "LiMiT", "0", "3"],
        ["SORT", "l", "LIMIT", "2", "3", "DESC"],
        ["SORT", "nokey"],
        ["SORT", "nokey", "LIMIT", "0", "5"],
        ["SORT_RO", "l"],
        ["SORT_RO", "l", "DESC", "LIMIT", "1", "1"],
        ["RPUSH", "big", LLONG_MAX, LLONG_MIN, "9007199254740993", "9007199254740992"],
        ["SORT", "big"],
        ["SORT", "big", "DESC"],
    ),
    script(
        "numeric_parsing_like_strtod",
        ["RPUSH", "l", " 1", "1e3", "0x10", "", "inf", "-inf", "+2", ".5", "5.", "1E2",
         "0X1p1", "-Infinity", "1e-300", "2.2250738585072014e-308"],
        ["SORT", "l"],
        ["SORT", "l", "DESC"],
        # (Redis never clears errno before strtod: after an ERANGE, every later weight fails
        # until some other call resets errno, so these come before the out-of-range ones)
        ["RPUSH", "ok", "7\x00junk", "3"],
        ["SORT", "ok"],
        ["RPUSH", "sub", "0x1p-1074", "1", "-0x1p-1074", "0e-99999999999", "0x0p-9999999"],
        ["SORT", "sub"],
        ["RPUSH", "bad1", "1", "1 "],
        ["SORT", "bad1"],
        ["RPUSH", "bad2", "abc"],
        ["SORT", "bad2"],
        ["SORT", "bad2", "LIMIT", "0", "0"],
        ["SORT", "bad2", "BY", "nosort"],
        ["SORT", "bad2", "ALPHA"],
        ["RPUSH", "bad3", "nan"],
        ["SORT", "bad3"],
        ["RPUSH", "bad4", "1e400"],
        ["SORT", "bad4"],
        ["RPUSH", "bad5", "1e-310"],
        ["SORT", "bad5"],
        ["RPUSH", "bad6", "   "],
        ["SORT", "bad6"],
        ["RPUSH", "bad7", "-"],
        ["SORT", "bad7"],
        ["RPUSH", "bad8", "0x"],
        ["SORT", "bad8"],
        ["RPUSH", "bad9", "-nan"],
        ["SORT", "bad9"],
        ["RPUSH", "bad10", "1e-99999999999"],
        ["SORT", "bad10"],
        ["RPUSH", "bad11", "0x1.8p-1074"],
        ["SORT", "bad11"],
    ),
    script(
        "numeric_ties_by_element_bytes",
        ["RPUSH", "l", "1.0", "1", "01", "+1", "1e0", "0", "-0", "0.0"],
        ["SORT", "l"],
        ["SORT", "l", "DESC"],
        ["SORT", "l", "LIMIT", "1", "3"],
        ["RPUSH", "dup", "2", "1", "2", "1", "2"],
        ["SORT", "dup"],
        ["SORT", "dup", "DESC"],
    ),
    # -- ALPHA ---------------------------------------------------------------------------------
    script(
        "alpha",
        ["RPUSH", "l", "banana", "apple", "Cherry", "apple", "", "10", "9", "b\xff", "b\x7f",
         "\xc3\xa9", "z"],
        ["SORT", "l", "ALPHA"],
        ["SORT", "l", "ALPHA", "DESC"],
        ["SORT", "l", "alpha", "LIMIT", "2", "4"],
        ["SORT", "l"],
        ["RPUSH", "nul", "a\x00c", "a\x00b", "a", "a\x00a", "b"],
        ["SORT", "nul", "ALPHA"],
        ["SORT", "nul", "ALPHA", "DESC"],
        ["SORT", "nul", "ALPHA", "STORE", "nulsorted"],
        ["LRANGE", "nulsorted", "0", "-1"],
    ),
    # -- LIMIT -----------------------------------------------------------------------------------
    script(
        "limit_edges",
        ["RPUSH", "l", "5", "4", "3", "2", "1"],
        ["SORT", "l", "LIMIT", "0", "0"],
        ["SORT", "l", "LIMIT", "0", "-1"],
        ["SORT", "l", "LIMIT", "0", "-100"],
        ["SORT", "l", "LIMIT", "-3", "2"],
        ["SORT", "l", "LIMIT", "-3", "-1"],
        ["SORT", "l", "LIMIT", "3", "100"],
        ["SORT", "l", "LIMIT", "4", "1"],
        ["SORT", "l", "LIMIT", "5", "1"],
        ["SORT", "l", "LIMIT", "6", "1"],
        ["SORT", "l", "LIMIT", LLONG_MAX, LLONG_MAX],
        ["SORT", "l", "LIMIT", LLONG_MIN, LLONG_MIN],
        ["SORT", "l", "LIMIT", "1", LLONG_MAX],
        ["SORT", "l", "LIMIT", "1", "2", "LIMIT", "0", "1"],
        ["SORT", "l", "BY", "nosort", "LIMIT", "1", "2"],
        ["SORT", "l", "BY", "nosort", "DESC", "LIMIT", "1", "2"],
        ["SORT", "l", "BY", "nosort", "LIMIT", "9", "2"],
        ["SORT", "l", "BY", "nosort", "LIMIT", "0", "0"],
        ["SORT", "l", "BY", "nosort", "DESC", "LIMIT", "-1", LLONG_MAX],
        ["SORT", "nokey", "BY", "nosort", "LIMIT", "1", "2"],
        ["SORT", "l", "LIMIT", "1", "2", "STORE", "dst"],
        ["LRANGE", "dst", "0", "-1"],
        ["SORT", "l", "LIMIT", "1"],
        ["SORT", "l", "LIMIT"],
        ["SORT", "l", "LIMIT", "x", "1"],
        ["SORT", "l", "LIMIT", "1", "1.5"],
        ["SORT", "l", "LIMIT", "1", "9223372036854775808"],
        ["SORT", "l", "LIMIT", " 1", "1"],
    ),
    # -- BY / nosort -----------------------------------------------------------------------------
    script(
        "nosort_keeps_natural_order",
        ["RPUSH", "l", "c", "a", "b"],
        ["SORT", "l", "BY", "nosort"],
        ["SORT", "l", "BY", "nosort", "DESC"],
        ["SORT", "l", "BY", "nosort", "ALPHA", "DESC"],
        ["SORT", "l", "BY", "constant-without-star"],
        ["SORT", "l", "BY", "nosort", "BY", "w_*"],  # a BY without * sticks
        ["SORT", "l", "BY", "w_*", "BY", "nosort", "GET", "#"],
        ["SORT", "l", "BY", "w\x00*"],  # the * after a NUL is not seen
        ["ZADD", "z", "3", "c", "1", "a", "2", "b", "2", "bb", "-1", "z"],
        ["SORT", "z", "BY", "nosort"],
        ["SORT", "z", "BY", "nosort", "DESC"],
        ["SORT", "z", "BY", "nosort", "LIMIT", "1", "3"],
        ["SORT", "z", "BY", "nosort", "DESC", "LIMIT", "1", "3"],
        ["SORT", "z", "BY", "nosort", "DESC", "LIMIT", "4", "3"],
        ["SORT", "z", "ALPHA"],
        ["SORT", "z", "ALPHA", "DESC", "LIMIT", "0", "2"],
        ["SADD", "ints", "5", "3", "-1", "10"],
        ["SORT", "ints", "BY", "nosort"],
        ["SORT", "ints", "BY", "nosort", "DESC", "LIMIT", "1", "2"],
        ["SORT", "ints"],
        ["SORT", "ints", "DESC"],
        ["SADD", "strs", "pear", "fig", "kiwi"],
        sorted_("SORT", "strs", "BY", "nosort"),
        ["SORT", "strs", "ALPHA"],
        ["SORT", "strs"],
        ["SORT", "strs", "BY", "nosort", "STORE", "out"],
        ["LRANGE", "out", "0", "-1"],
    ),
    script(
        "zset_becomes_skiplist",
        ["ZADD", "z", "1", "a", "2", "b"],
        ["OBJECT", "ENCODING", "z"],
        ["SORT_RO", "z", "BY", "nosort"],
        ["OBJECT", "ENCODING", "z"],
        ["ZADD", "z2", "1", "a"],
        ["SORT", "z2", "LIMIT", "x", "y"],
        ["OBJECT", "ENCODING", "z2"],
        ["SORT", "z2", "ALPHA"],
        ["OBJECT", "ENCODING", "z2"],
        ["ZADD", "z2", "0", "c"],
        ["ZRANGE", "z2", "0", "-1", "WITHSCORES"],
    ),
    # -- errors ----------------------------------------------------------------------------------
    script(
        "errors",
        ["SORT"],
        ["SORT_RO"],
        ["SET", "str", "x"],
        ["HSET", "h", "f", "v"],
        ["SORT", "str"],
        ["SORT", "h"],
        ["SORT_RO", "str", "ALPHA"],
        ["SORT", "str", "NOSUCHOPTION"],
        ["SORT", "nokey", "NOSUCHOPTION"],
        ["SORT", "nokey", "STORE"],
        ["SORT", "nokey", "BY"],
        ["SORT", "nokey", "GET"],
        ["SORT_RO", "nokey", "STORE", "dst"],
        ["SORT_RO", "str", "STORE", "dst"],
        ["SORT", "str", "STORE", "dst"],
        ["EXISTS", "dst"],
        ["SORT", "str", "LIMIT", "0", "x"],
        ["XADD", "stream", "1-1", "f", "v"],
        ["SORT", "stream"],
        ["SORT", "str", "BY", "w_*", "GET", "o_*"],
        ["RPUSH", "l", "1"],
        ["SORT", "l", "BY", "w_*", "NOSUCH"],
        ["SORT", "l", "DESC\x00junk", "LIMIT\x00", "0", "1", "ALPHA\x00x"],
        ["COMMAND", "GETKEYS", "SORT", "l", "STORE\x00x", "d"],
        ["SORT", "l", "GET", "o_*", "LIMIT", "1"],
    ),
    # -- patterns --------------------------------------------------------------------------------
    script(
        "pattern_shapes",
        ["RPUSH", "l", "a", "b"],
        ["MSET", "k_a", "1", "k_b", "2", "k_a_b", "x", "k_a->f", "arrow-a", "k_b->f",
         "arrow-b", "aa", "first-star-a", "*", "star"],
        ["HSET", "k_a", "f", "nope"],  # not a hash? a string: k_a is a string
        ["HSET", "hh_a", "f", "HA", "f->g", "HAG", "", "empty"],
        ["SORT", "l", "BY", "nosort", "GET", "k_*"],
        ["SORT", "l", "BY", "nosort", "GET", "k_*->"],  # empty field: a plain key
        ["SORT", "l", "BY", "nosort", "GET", "hh_*->f"],
        ["SORT", "l", "BY", "nosort", "GET", "hh_*->f->g"],
        ["SORT", "l", "BY", "nosort", "GET", "hh_->f*"],  # arrow before the star: a key name
        ["SORT", "l", "BY", "nosort", "GET", "*a"],
        ["SORT", "l", "BY", "nosort", "GET", "**"],
        ["SORT", "l", "BY", "nosort", "GET", "*"],
        ["SORT", "l", "BY", "nosort", "GET", "k_*_b"],
        ["SORT", "l", "BY", "nosort", "GET", "#", "GET", "##", "GET", "#*"],
        ["SORT", "l", "BY", "nosort", "GET", "k_a"],
        ["SORT", "l", "BY", "nosort", "GET", "#\x00x"],
        ["SORT", "l", "BY", "nosort", "GET", "k_\x00*"],
        ["SORT", "l", "BY", "nosort", "GET", "hh_*->f\x00x"],
        ["SORT", "l", "BY", "nosort", "GET", "hh_*->\x00f"],
    ),
    script(
        "alpha_by_ties_and_limit_like_pqsort",
        ["RPUSH", "l", *[str(n) for n in range(1, 61)]],
        ["MSET", "t_5", "m", "t_6", "m", "t_7", "a", "t_50", "z"],
        ["SORT", "l", "BY", "x_*", "ALPHA", "LIMIT", "0", "5"],
        ["SORT", "l", "BY", "x_*", "ALPHA", "LIMIT", "40", "50"],
        ["SORT", "l", "BY", "x_*", "ALPHA", "DESC", "LIMIT", "0", "7"],
        ["SORT", "l", "BY", "x_*", "ALPHA"],
        ["SORT", "l", "BY", "t_*", "ALPHA", "LIMIT", "50", "20"],
        ["SORT", "l", "BY", "t_*", "ALPHA", "DESC", "LIMIT", "0", "10"],
        ["SORT", "l", "BY", "t_*", "ALPHA", "DESC"],
        ["SORT", "l", "BY", "t_*", "LIMIT", "55", "10"],
        ["SORT", "l", "BY", "t_*", "ALPHA", "LIMIT", "3", "4", "STORE", "dst"],
        ["LRANGE", "dst", "0", "-1"],
        ["RPUSH", "small", "e", "d", "c", "b", "a"],
        ["SORT", "small", "BY", "x_*", "ALPHA", "LIMIT", "1", "2"],
        ["SORT", "small", "BY", "x_*", "LIMIT", "1", "2"],
    ),
    *_both("weights_and_gets", weights_and_gets),
    script(
        "patterns_pinned_to_another_worker",
        # the patterns' hash tag puts all their keys on B's worker: A's and B's are gated
        ["RPUSH", A, "3", "1", "2"],
        ["MSET", f"{ELSEWHERE}w_1", "9", f"{ELSEWHERE}w_2", "5", f"{ELSEWHERE}w_3", "7",
         f"{ELSEWHERE}o_1", "one", f"{SAME}w_1", "1", f"{SAME}w_2", "3", f"{SAME}w_3", "2"],
        ["SORT", A, "BY", f"{ELSEWHERE}w_*", "GET", "#", "GET", f"{ELSEWHERE}o_*"],
        ["SORT", A, "BY", f"{SAME}w_*", "GET", f"{ELSEWHERE}w_*"],
        ["SORT", A, "BY", f"{SAME}w_*", "GET", f"{SAME}w_*", "STORE", C],
        ["LRANGE", C, "0", "-1"],
        ["SORT", A, "BY", f"{SAME}w_*", "DESC", "STORE", f"{SAME}dst"],
        ["LRANGE", f"{SAME}dst", "0", "-1"],
        ["SORT_RO", A, "BY", f"{SAME}w_*", "LIMIT", "1", "1", "GET", "#"],
    ),
    *_both("store", store_across),
    # -- transactions and scripts ----------------------------------------------------------------
    script(
        "in_multi",
        ["RPUSH", "l", "2", "1", "3"],
        ["MSET", "w_1", "3", "w_2", "2", "w_3", "1"],
        ["MULTI"],
        ["SORT", "l", "BY", "w_*", "GET", "w_*"],
        ["SORT", "l", "STORE", "dst"],
        ["SORT", "l", "LIMIT", "x"],
        ["LRANGE", "dst", "0", "-1"],
        ["EXEC"],
    ),
    script(
        "from_scripts",
        ["SADD", "{s}set", "c", "a", "b", "10", "2"],
        ["EVAL", "return redis.call('sort', KEYS[1], 'by', 'nosort')", "1", "{s}set"],
        ["EVAL", "return redis.call('sort', KEYS[1], 'by', 'nosort', 'limit', 1, 2)", "1",
         "{s}set"],
        ["EVAL", "return redis.call('sort_ro', KEYS[1], 'alpha', 'desc')", "1", "{s}set"],
        ["RPUSH", "l", "2", "1", "3"],
        ["MSET", "w_1", "3", "w_2", "2", "w_3", "1", "g_1", "x", "g_3", "z"],
        ["EVAL", "return redis.call('sort', KEYS[1], 'by', 'w_*', 'get', 'g_*', 'get', '#')",
         "1", "l"],
        ["EVAL", "return redis.call('sort', KEYS[1], 'by', 'nosort', 'desc')", "1", "l"],
        ["EVAL", "return redis.pcall('sort', KEYS[1], 'limit', 'x')", "1", "l"],
    ),
    script(
        "from_functions",
        # FCALL is a script too (CLIENT_SCRIPT): a set BY nosort is sorted ALPHA there
        ["FUNCTION", "FLUSH"],
        ["FUNCTION", "LOAD", "#!lua name=sortlib\n"
         "redis.register_function('s', function(keys, args) "
         "return redis.call('sort', keys[1], unpack(args)) end)\n"
         "redis.register_function{function_name='sro', flags={'no-writes'}, "
         "callback=function(keys, args) return redis.call('sort_ro', keys[1], unpack(args)) end}"],
        ["SADD", "{f}set", "c", "a", "b", "10", "2"],
        ["FCALL", "s", "1", "{f}set", "BY", "nosort"],
        ["FCALL_RO", "sro", "1", "{f}set", "BY", "nosort", "DESC", "LIMIT", "1", "2"],
        ["RPUSH", "l", "2", "1", "3"],
        ["MSET", "w_1", "3", "w_2", "2", "w_3", "1"],
        ["FCALL", "s", "1", "l", "BY", "w_*", "GET", "w_*"],
        ["FCALL", "s", "1", "l", "BY", "w_*", "STORE", "{f}dst"],
        ["FCALL_RO", "sro", "1", "l", "BY", "w_*", "STORE", "{f}dst"],
        ["LRANGE", "{f}dst", "0", "-1"],
        ["FUNCTION", "FLUSH"],
    ),
    script(
        "from_global_scripts",
        # the script runs on A's worker; the source, the STORE key and the pattern keys are on
        # others: SORT runs in the script's context, reading and writing over there
        ["RPUSH", B, "1", "2", "3"],
        ["MSET", "w_1", "3", "w_2", "2", "w_3", "1", "o_1", "x", C, "old"],
        ["SADD", SET_B, "b", "a", "c", "10"],
        ["SET", STR_B, "x"],
        ["EVAL", "return redis.call('sort', KEYS[2], 'by', 'w_*', 'get', 'o_*', 'get', '#')",
         "2", A, B],
        ["EVAL", "return redis.pcall('sort', KEYS[2], 'by', 'w_*', 'store', KEYS[3])", "3", A, B,
         C],
        ["LRANGE", C, "0", "-1"],
        ["TYPE", C],
        ["EVAL", "return redis.pcall('sort', KEYS[1], 'desc', 'store', KEYS[2])", "2", B, C],
        ["LRANGE", C, "0", "-1"],
        ["EVAL", "return redis.pcall('sort', KEYS[2], 'by', 'nosort')", "2", A, SET_B],
        ["EVAL", "return redis.pcall('sort_ro', KEYS[2], 'by', 'nosort', 'limit', 1, 2)", "2",
         A, SET_B],
        ["EVAL", "return redis.pcall('sort', KEYS[2], 'by', 'nosort', 'store', KEYS[1])", "2", A,
         SET_B],
        ["LRANGE", A, "0", "-1"],
        ["EVAL", "return redis.pcall('sort', KEYS[2])", "2", A, STR_B],
        ["EVAL", "return redis.pcall('sort', KEYS[2], 'limit')", "2", A, STR_B],
        ["EVAL", "return redis.pcall('sort', KEYS[2], 'limit', 0, 0, 'store', KEYS[1])", "2", A,
         "nosuch"],
        ["EXISTS", A],
        ["EVAL", "return redis.pcall('sort', KEYS[2], 'store', KEYS[3])", "3", A, "nosuch", C],
        ["EXISTS", C],
        ["ZADD", ZSET_B, "2", "b", "1", "a"],
        ["EVAL", "return redis.pcall('sort', KEYS[2], 'by', 'nosort', 'desc')", "2", A, ZSET_B],
        ["OBJECT", "ENCODING", ZSET_B],
    ),
    script(
        "acl_patterns_need_every_key",
        ["RPUSH", "k:l", "2", "1"],
        ["ACL", "SETUSER", "sortlim", "on", "nopass", "+@all", "~k:*"],
        ["ACL", "SETUSER", "sortread", "on", "nopass", "+@all", "%R~*"],
        ["ACL", "SETUSER", "sortsplit", "on", "nopass", "+@all", "%R~k:*", "%W~w:*"],
        ["AUTH", "sortlim", "x"],
        ["SORT", "k:l"],
        ["SORT", "k:l", "BY", "nosort"],
        ["SORT", "k:l", "BY", "k:w_*"],
        ["SORT", "k:l", "GET", "#"],
        ["SORT", "k:l", "GET", "k:o_*", "BY", "k:w_*"],
        ["SORT", "k:l", "NOSUCH", "BY", "k:w_*"],
        ["SORT", "k:l", "BY", "k:w_*", "NOSUCH"],
        ["SORT_RO", "k:l", "BY", "k:w_*"],
        ["EVAL", "return redis.pcall('sort', KEYS[1], 'get', '#')", "1", "k:l"],
        ["AUTH", "sortread", "x"],
        ["SORT_RO", "k:l", "BY", "k:w_*", "GET", "#"],
        ["SORT", "k:l", "BY", "k:w_*", "GET", "#"],
        ["SORT", "k:l", "STORE", "k:dst"],
        ["AUTH", "sortsplit", "x"],
        ["SORT", "k:l", "STORE", "w:dst"],
        ["SORT", "k:l", "STORE", "k:dst"],
        ["SORT", "w:l"],
        ["SORT_RO", "k:l", "ALPHA"],
        ["LRANGE", "w:dst", "0", "-1"],
        ["AUTH", "default", "x"],
        ["ACL", "DELUSER", "sortlim", "sortread", "sortsplit"],
    ),
    # -- metadata --------------------------------------------------------------------------------
    script(
        "command_info_with_key_specs",
        ["COMMAND", "INFO", "sort", "sort_ro"],
        # RESP3 differs for every command: Redis answers key specs as a set, shardis's
        # COMMAND INFO (shardis/router/server.py) as an array
        protocols=(2,),
    ),
    script(
        "command_getkeys",
        ["COMMAND", "GETKEYS", "SORT", "k"],
        ["COMMAND", "GETKEYS", "SORT", "k", "STORE", "d"],
        ["COMMAND", "GETKEYS", "SORT", "k", "STORE", "d", "LIMIT", "0", "1", "STORE", "e"],
        ["COMMAND", "GETKEYS", "SORT", "k", "GET", "store", "BY", "store", "STORE", "x"],
        ["COMMAND", "GETKEYS", "SORT", "k", "STORE"],
        ["COMMAND", "GETKEYS", "SORT_RO", "k", "STORE", "d"],
    ),
]


def random_script(seed: int, p: str = ""):
    """Random SORTs over lists, small integer sets (whose order Redis and shardis share,
    ties included), sorted sets and hashtable sets with weights, GETs, LIMIT, DESC, ALPHA and STORE: the combinations.
    ``p``: a prefix for every key and pattern (a hash tag: all on one worker)."""
    rng = random.Random(seed)
    words = ["1", "2", "10", "-3", "1.5", "a", "b", "B", "", "1e2", "0x1f", "ab", "a\x00b"]
    steps: list = []
    elements = [rng.choice(words[:8]) for _ in range(rng.randrange(0, 30))]
    if elements:
        steps.append(["RPUSH", f"{p}l", *elements])
    steps.append(["SADD", f"{p}s", *(str(rng.randrange(-20, 60)) for _ in range(25))])
    # (no NUL: ALPHA compares up to it, and what ties keeps a hashtable set's own order)
    steps.append(["SADD", f"{p}hs", *(rng.choice(words[:-1]) + str(rng.randrange(9))
                                      for _ in range(20))])
    zset = [str(rng.randrange(-20, 60)) for _ in range(20)]
    steps.append(["ZADD", f"{p}z", *(w for m in zset for w in (str(rng.randrange(5)), m))])
    for element in sorted(set(elements) | {str(n) for n in range(-20, 60)}):
        if rng.random() < 0.6:
            steps.append(["SET", f"{p}w_{element}", rng.choice(words[:10])])
        if rng.random() < 0.4:
            steps.append(["HSET", f"{p}h_{element}", "f", rng.choice(words)])
    for _ in range(30):
        source = rng.choice([f"{p}l", f"{p}s", f"{p}z", f"{p}hs"])
        hashed = source.endswith(("z", "hs"))  # Redis loads these in its hash-table order
        command = ["SORT", source]
        options = []
        by = rng.random() < 0.5
        store = rng.random() < 0.3
        if by:
            patterns = [f"{p}w_*", f"{p}h_*->f", f"{p}x_*"]
            if not source.endswith("hs") or store:  # else: a hashtable set's own order
                patterns.append("nosort")
            options.append(["BY", rng.choice(patterns)])
        # (not ALPHA BY there: equal weights keep Redis's hash-table order)
        if rng.random() < 0.5 and not (by and hashed):
            options.append(["ALPHA"])
        if rng.random() < 0.4:
            options.append([rng.choice(["ASC", "DESC"])])
        if rng.random() < 0.5:
            options.append(["LIMIT", str(rng.randrange(-2, 30)), str(rng.randrange(-2, 30))])
        for _ in range(rng.randrange(3)):
            options.append(["GET", rng.choice(["#", f"{p}w_*", f"{p}h_*->f", f"{p}nope_*"])])
        if store:
            options.append(["STORE", f"{p}dst"])
        rng.shuffle(options)
        steps.append(command + [word for option in options for word in option])
        if store:
            steps.append(["LRANGE", f"{p}dst", "0", "-1"])
    return script(f"random_{seed}{'_tagged' if p else ''}", *steps)


RANDOM_SCRIPTS = [random_script(seed) for seed in range(12)] + [
    random_script(seed, "{t}") for seed in range(12, 18)]


@parametrize(RANDOM_SCRIPTS)
def test_random_sorts(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)


def test_keys_really_spread():
    """The plain names of the cross-worker scripts land on several workers."""
    slots = SlotMap(WORKERS)
    assert slots.worker_of(ELSEWHERE.encode()) != slots.worker_of(A.encode())
    assert slots.worker_of(SAME.encode()) == slots.worker_of(A.encode())
    for names in (["l", "w_1", "w_2", "w_3", "w_10", "o_1", "h_1"],
                  ["src", "dst", "v_a", "v_b", "set", "n_x"]):
        assert len({slots.worker_of(name.encode()) for name in names}) == WORKERS
    assert len({slots.worker_of(f"{{t}}{name}".encode()) for name in ("l", "w_1", "dst")}) == 1


@parametrize(SCRIPTS)
def test_sort(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
