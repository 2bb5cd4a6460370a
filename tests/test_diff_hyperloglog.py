"""Differential corpus: HyperLogLog commands, byte for byte against real Redis 7.0.

An HLL is a string whose bytes are Redis's own encoding, so every script GETs the values it
built: the sparse opcodes (which depend on the order registers were set in), the promotion to
dense, the cached cardinality in the header.  Keys ``A``, ``B``, ``C`` live on three
different shardis workers (PFCOUNT gathers them, PFMERGE gathers under a gate and stores with
``__pfstore``); ``{t}...`` keys share one worker (forwarded whole).  Crafted strings (a dense
HLL with chosen registers, mangled headers, corrupt sparse runs) are written with SET.
See tests/differential.py for the step kinds.
"""

from __future__ import annotations

from shardis.commands.hyperloglog import pack_dense
from tests.differential import check, cmd, non_string, parametrize, script
from tests.test_atomicity import keys_on_distinct_workers

#: Three keys on three different shardis workers.
A, B, C = keys_on_distinct_workers(3)
HEADER_SPARSE = b"HYLL\x01" + bytes(10) + b"\x80"
HEADER_DENSE = b"HYLL\x00" + bytes(10) + b"\x80"


def elements(count: int, prefix: str = "e", start: int = 0) -> list[str]:
    return [f"{prefix}{n}" for n in range(start, start + count)]


def pfadd(key: str, count: int, prefix: str = "e", start: int = 0) -> list:
    return ["PFADD", key, *elements(count, prefix, start)]


def dense_with(registers: dict[int, int], cached: bytes = b"") -> bytes:
    """A dense HLL string with these registers set (cache invalid unless ``cached``)."""
    regs = bytearray(16384)
    for index, value in registers.items():
        regs[index] = value
    header = b"HYLL\x00\x00\x00\x00" + cached if cached else HEADER_DENSE
    return header + pack_dense(bytes(regs))


#: A valid sparse HLL written by hand: Z:100 v:3,2 Z:16282.
HAND_SPARSE = HEADER_SPARSE + b"\x40\x63" + bytes([0x80 | (2 << 2) | 1]) + b"\x7f\x99"
#: Runs covering 16383 registers only: corrupt.
SHORT_SPARSE = HEADER_SPARSE + bytes([0x40 | (16382 >> 8), 16382 & 0xFF])
#: Runs covering more than 16384 registers: corrupt.
LONG_SPARSE = HEADER_SPARSE + b"\x7f\xff" + b"\x00"
#: A header and no opcodes at all.
EMPTY_SPARSE = HEADER_SPARSE
#: A trailing XZERO cut after its first byte (Redis reads the NUL terminator as the second).
CUT_SPARSE = HEADER_SPARSE + b"\x7f"
#: A valid HLL with a valid cached cardinality of 12345 and registers that say otherwise.
CACHED = HEADER_SPARSE[:8] + (12345).to_bytes(8, "little") + b"\x7f\xff"


SCRIPTS = [
    # -- PFADD / PFCOUNT on one key ---------------------------------------------------------
    script(
        "pfadd_sparse_bytes",
        ["PFADD", "h", "a", "b", "c"],
        ["GET", "h"],
        ["PFADD", "h", "a"],
        ["PFADD", "h"],
        ["PFADD", "empty"],
        ["GET", "empty"],
        ["PFCOUNT", "empty"],
        ["GET", "empty"],
        ["PFCOUNT", "h"],
        ["GET", "h"],
        ["PFADD", "h", "d"],
        ["GET", "h"],
        ["PFCOUNT", "h"],
        ["PFCOUNT", "nokey"],
        ["TYPE", "h"],
        ["OBJECT", "ENCODING", "h"],
        ["STRLEN", "h"],
        ["PFDEBUG", "ENCODING", "h"],
        ["PFDEBUG", "DECODE", "h"],
        ["EXISTS", "nokey"],
    ),
    script(
        "pfadd_many_calls_sparse_edits",
        *[pfadd("h", 7, start=n) for n in range(0, 700, 7)],
        ["GET", "h"],
        ["PFDEBUG", "DECODE", "h"],
        ["PFCOUNT", "h"],
        ["GET", "h"],
    ),
    script(
        "pfadd_promotes_to_dense",
        pfadd("h", 5000),
        ["PFDEBUG", "ENCODING", "h"],
        ["GET", "h"],
        ["PFCOUNT", "h"],
        ["GET", "h"],
        ["DUMP", "h"],
        pfadd("h", 20000, "x"),
        ["PFCOUNT", "h"],
        ["PFADD", "h", "x1"],
        ["GET", "h"],
        *[pfadd("g", 300, prefix=f"p{n}-") for n in range(10)],
        ["PFDEBUG", "ENCODING", "g"],
        ["GET", "g"],
        ["PFCOUNT", "g"],
    ),
    script(
        "pfadd_binary_and_long_elements",
        ["PFADD", "h", b"\x00", b"\xff\x00\r\n", "", "x" * 1000, "12345678", "1234567"],
        ["GET", "h"],
        ["PFCOUNT", "h"],
    ),
    # -- several keys, several workers --------------------------------------------------------
    script(
        "pfcount_keys_across_workers",
        pfadd(A, 100, "a"),
        pfadd(B, 3000, "b"),
        pfadd(C, 50, "a"),
        ["PFCOUNT", A, B],
        ["PFCOUNT", A, C],
        ["PFCOUNT", A, B, C, "nokey"],
        ["PFCOUNT", "nokey", "nokey2"],
        ["GET", A],  # a several-key PFCOUNT writes no cache
        ["GET", B],
        ["PFCOUNT", A, A],
        pfadd("{t}1", 100, "a"),
        pfadd("{t}2", 200, "c"),
        ["PFCOUNT", "{t}1", "{t}2"],
        ["GET", "{t}1"],
    ),
    script(
        "pfmerge_across_workers",
        pfadd(A, 100, "a"),
        pfadd(B, 200, "b"),
        ["PFMERGE", C, A, B],
        ["GET", C],
        ["PFDEBUG", "ENCODING", C],
        ["PFCOUNT", C],
        ["PFMERGE", A, B],  # the destination is a source too
        ["GET", A],
        pfadd(B, 4000, "d"),
        ["PFMERGE", C, B],  # a dense source: the destination turns dense
        ["PFDEBUG", "ENCODING", C],
        ["GET", C],
        ["PFMERGE", A, "nokey"],
        ["GET", A],
        ["PFMERGE", "nokey3", "nokey", "nokey2"],
        ["GET", "nokey3"],
        ["PFMERGE", A],
        ["GET", A],
    ),
    script(
        "pfmerge_one_worker",
        pfadd("{t}a", 100, "a"),
        pfadd("{t}b", 200, "b"),
        ["PFMERGE", "{t}c", "{t}a", "{t}b"],
        ["GET", "{t}c"],
        ["PFMERGE", "{t}a", "{t}b", "{t}c"],
        ["GET", "{t}a"],
        pfadd("{t}d", 3000, "d"),
        ["PFMERGE", "{t}a", "{t}d"],
        ["GET", "{t}a"],
    ),
    script(
        "pfmerge_sparse_destination_promotes",
        pfadd(A, 1500, "a"),
        pfadd(B, 1500, "b"),
        ["PFDEBUG", "ENCODING", A],
        ["PFMERGE", C, A, B],  # sparse sources, too many registers for 3000 bytes
        ["PFDEBUG", "ENCODING", C],
        ["GET", C],
        ["SET", B, dense_with({5: 40, 16383: 63, 0: 1})],
        ["PFMERGE", "{x}", A],
        ["PFDEBUG", "ENCODING", "{x}"],
        ["SET", "dense", dense_with({7: 33})],
        ["PFADD", "sparse", "a"],
        ["PFMERGE", "sparse", "dense"],  # a dense source: dense destination
        ["GET", "sparse"],
    ),
    script(
        "pfmerge_keeps_ttl_and_counts",
        pfadd(A, 10, "a"),
        ["EXPIRE", A, "1000"],
        pfadd(B, 10, "b"),
        ["PFMERGE", A, B],
        ["TTL", A],
        ["PFCOUNT", A],
        ["TTL", A],
        ["PFADD", A, "zz"],
        ["TTL", A],
    ),
    # -- crafted values -------------------------------------------------------------------------
    script(
        "crafted_dense_registers",
        ["SET", "d", dense_with({0: 1, 1: 2, 2: 3, 3: 4, 16383: 50, 100: 51, 200: 63})],
        ["PFCOUNT", "d"],
        ["GET", "d"],
        ["PFDEBUG", "ENCODING", "d"],
        ["OBJECT", "ENCODING", "d"],
        ["SET", "all60", dense_with(dict.fromkeys(range(16384), 60))],
        ["PFCOUNT", "all60"],  # an estimate Redis cannot round: LLONG_MIN
        ["GET", "all60"],
        ["PFCOUNT", "all60"],
        ["SET", "cached", dense_with({1: 1}, cached=(777).to_bytes(8, "little"))],
        ["PFCOUNT", "cached"],
        ["PFADD", "cached", "a", "b"],
        ["GET", "cached"],
        ["PFCOUNT", "cached"],
        ["SET", "hand", HAND_SPARSE],
        ["PFDEBUG", "DECODE", "hand"],
        ["PFCOUNT", "hand"],
        ["PFADD", "hand", "a", "b", "c"],
        ["GET", "hand"],
        ["SET", "c2", CACHED],
        ["PFCOUNT", "c2"],
        ["PFADD", "c2", "x"],
        ["GET", "c2"],
    ),
    script(
        "corrupt_values",
        ["SET", "short", SHORT_SPARSE],
        ["PFCOUNT", "short"],
        ["PFADD", "short", "a"],  # register beyond the runs
        ["PFDEBUG", "DECODE", "short"],
        ["PFDEBUG", "TODENSE", "short"],
        ["PFDEBUG", "GETREG", "short"],
        ["PFMERGE", "m", "short"],
        ["EXISTS", "m"],
        ["PFCOUNT", "short", "nokey"],
        ["SET", "long", LONG_SPARSE],
        ["PFCOUNT", "long"],
        ["PFADD", "long", *elements(50)],
        ["GET", "long"],
        ["PFCOUNT", "long", "long"],
        ["SET", "empty", EMPTY_SPARSE],
        ["PFADD", "empty", "a"],
        ["PFCOUNT", "empty"],
        ["PFDEBUG", "DECODE", "empty"],
        ["SET", "huge", HEADER_SPARSE + b"\x00" * 40000],  # one-register ZEROs, far too many
        ["PFADD", "huge", *elements(30)],  # edits that do not grow it succeed
        ["GET", "huge"],
        ["PFCOUNT", "huge"],
        ["PFADD", "huge", "x"],
        ["SET", "xzeros", HEADER_SPARSE + b"\x7f\xff" * 5000],
        ["PFCOUNT", "xzeros"],
        ["PFADD", "xzeros", "a"],
        ["PFMERGE", "m2", "xzeros"],
        ["SET", "cut", CUT_SPARSE],
        ["PFDEBUG", "DECODE", "cut"],
        ["PFCOUNT", "cut"],
        ["SET", A, SHORT_SPARSE],
        ["PFCOUNT", B, A],
        ["PFMERGE", C, B, A],
        ["EXISTS", C],
    ),
    script(
        "not_an_hll",
        ["SET", "s", "hello"],
        ["PFADD", "s", "a"],
        ["PFCOUNT", "s"],
        ["PFMERGE", "s", "x"],
        ["PFMERGE", "x", "s"],
        ["EXISTS", "x"],
        ["PFDEBUG", "ENCODING", "s"],
        ["SET", "i", "123"],
        ["PFADD", "i", "a"],
        ["SET", "short", "HYLL\x01"],
        ["PFCOUNT", "short"],
        ["SET", "enc", b"HYLL\x02" + bytes(11) + b"\x7f\xff"],
        ["PFCOUNT", "enc"],
        ["SET", "dense", b"HYLL\x00" + bytes(11) + bytes(100)],
        ["PFCOUNT", "dense"],
        ["SET", "magic", b"HYLX\x01" + bytes(11) + b"\x7f\xff"],
        ["PFADD", "magic", "a"],
        non_string("l"),
        ["PFADD", "l", "a"],
        ["PFCOUNT", "l"],
        ["PFCOUNT", "l", "s"],
        ["PFCOUNT", "s", "l"],
        ["PFMERGE", "l", "x"],
        ["PFDEBUG", "GETREG", "l"],
        ["PFADD", "ok", "a"],
        ["SET", A, "foo"],
        non_string(B),
        ["PFCOUNT", "nokey", A, B],
        ["PFCOUNT", B, A],
        ["PFMERGE", C, B, A],
        ["PFMERGE", A, C],
    ),
    # -- PFDEBUG, PFSELFTEST, arity -----------------------------------------------------------
    script(
        "pfdebug",
        ["PFADD", "h", "a", "b", "c"],
        ["PFDEBUG", "ENCODING", "h"],
        ["PFDEBUG", "decode", "h"],
        ["PFDEBUG", "GETREG", "h"],  # turns it dense
        ["PFDEBUG", "ENCODING", "h"],
        ["GET", "h"],
        ["PFDEBUG", "DECODE", "h"],
        ["PFDEBUG", "TODENSE", "h"],
        ["PFADD", "g", "x"],
        ["PFDEBUG", "todense", "g"],
        ["GET", "g"],
        ["PFDEBUG", "NOSUCH", "g"],
        ["PFDEBUG", "NOSUCH", "nokey"],
        ["PFDEBUG", "GETREG", "nokey"],
        ["PFDEBUG", b"get\x00reg", "g"],
        ["PFDEBUG", "ENCODING"],
        ["PFDEBUG", "ENCODING", "g", "extra"],
    ),
    script(
        "pf_arity_and_selftest",
        ["PFADD"],
        ["PFCOUNT"],
        ["PFMERGE"],
        ["PFDEBUG"],
        ["PFSELFTEST", "x"],
        ["PFSELFTEST"],
    ),
    script(
        "object_encoding_follows_redis_unsharing",
        # a short HLL written by SET is embstr; the commands that edit or cache in place
        # unshare it first (raw), the ones that only read leave it
        ["SET", "e", b"HYLL\x01" + bytes(10) + b"\x80\x7f\xff"],
        ["OBJECT", "ENCODING", "e"],
        ["PFCOUNT", "e", "e"],
        ["OBJECT", "ENCODING", "e"],
        ["PFMERGE", "x", "e"],
        ["OBJECT", "ENCODING", "e"],
        ["PFCOUNT", "e"],
        ["OBJECT", "ENCODING", "e"],
        ["GET", "e"],
        ["SET", "e2", b"HYLL\x01" + bytes(10) + b"\x00\x7f\xff"],
        ["PFCOUNT", "e2"],  # a valid cache: nothing written, the value is unshared anyway
        ["OBJECT", "ENCODING", "e2"],
        ["SET", "e3", b"HYLL\x01" + bytes(10) + b"\x00\x7f\xff"],
        ["PFADD", "e3"],
        ["OBJECT", "ENCODING", "e3"],
        ["SET", "e4", b"HYLL\x01" + bytes(10) + b"\x00\x7f\xff"],
        ["PFDEBUG", "ENCODING", "e4"],
        ["OBJECT", "ENCODING", "e4"],
        ["PFADD", "new", "a"],
        ["OBJECT", "ENCODING", "new"],
        ["PFMERGE", "new2"],
        ["OBJECT", "ENCODING", "new2"],
        ["GET", "new2"],
    ),
    script(
        "pf_in_scripts",
        # a script's multi-key call must have its keys on one shardis worker (as for every
        # coordinated command): {t} keys; single-key calls go anywhere
        ["EVAL", "return redis.call('PFADD', KEYS[1], 'a', 'b', 'c')", "1", A],
        ["EVAL", "return redis.call('PFADD', KEYS[1], 'c', 'd')", "1", B],
        ["EVAL", "redis.call('PFADD', KEYS[1], 'a', 'b'); redis.call('PFADD', KEYS[2], 'c'); "
                 "return redis.call('PFCOUNT', KEYS[1], KEYS[2])", "2", "{t}1", "{t}2"],
        ["EVAL", "redis.call('PFMERGE', KEYS[3], KEYS[1], KEYS[2]); "
                 "return redis.call('GET', KEYS[3])", "3", "{t}1", "{t}2", "{t}3"],
        ["EVAL", "return redis.call('PFCOUNT', KEYS[1])", "1", "{t}3"],
        ["EVAL", "return {redis.call('PFCOUNT', KEYS[1]), redis.call('PFCOUNT', KEYS[2])}",
         "2", A, B],
        ["EVAL", "return redis.pcall('PFADD', KEYS[1], 'x')", "1", "nokey"],
        ["SET", "s", "x"],
        ["EVAL", "return redis.pcall('PFADD', KEYS[1], 'x')", "1", "s"],
        ["EVAL", "return redis.call('PFDEBUG', 'ENCODING', KEYS[1])", "1", A],
        ["EVAL", "#!lua flags=no-writes\nreturn redis.call('PFCOUNT', KEYS[1])", "1", A],
        ["EVAL", "#!lua flags=no-writes\nreturn redis.pcall('PFADD', KEYS[1], 'z')", "1", A],
        ["GET", A],
    ),
    script(
        "pf_acl_category",
        cmd("ACL", "CAT", "hyperloglog", mode="sorted"),
        ["COMMAND", "GETKEYS", "PFMERGE", "d", "s1", "s2"],
        ["COMMAND", "GETKEYS", "PFCOUNT", "a", "b"],
        ["COMMAND", "GETKEYS", "PFDEBUG", "GETREG", "k"],
    ),
    script(
        "pf_in_transaction",
        ["MULTI"],
        ["PFADD", A, "a", "b"],
        ["PFADD", B, "c"],
        ["PFCOUNT", A, B],
        ["PFMERGE", C, A, B],
        ["PFCOUNT", C],
        ["GET", C],
        ["EXEC"],
        ["PFADD", "h", "a"],
        ["MULTI"],
        ["GET", "h"],  # the reply is the value as it was here, though it is edited in place
        ["PFADD", "h", "b"],
        ["GET", "h"],
        ["PFCOUNT", "h"],
        ["GET", "h"],
        ["PFADD", "h", *elements(3000)],
        ["GET", "h"],
        ["EXEC"],
    ),
]


@parametrize(SCRIPTS)
def test_hyperloglog(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
