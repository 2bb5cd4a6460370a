"""HyperLogLog: the codec's pure functions, then end to end against real Redis.

The codec edits sparse HLLs on a list of opcodes (``SparseEdit``); here a literal port of
Redis's byte-level ``hllSparseSet`` (:func:`reference_sparse_set`) checks it on random edit
sequences, corrupt strings included.  The bulk register functions are checked against
one-register-at-a-time loops, and the hash and estimator against a real Redis (PFDEBUG GETREG,
PFCOUNT of crafted strings).  The end-to-end tests cover what differential scripts cannot
compare: keyspace events, WATCH, values moved between the two servers.
"""

from __future__ import annotations

import random
import time

import pytest
import redis

from shardis.commands.hyperloglog import (
    HLL_DENSE_SIZE,
    HLL_REGISTERS,
    HLL_SPARSE_MAX_BYTES,
    INVALID,
    PROMOTE,
    SparseEdit,
    decode_sparse,
    dense_get,
    dense_set,
    estimate,
    histogram,
    internal_pfstore_command,
    max_registers,
    murmurhash64a,
    new_hll,
    pack_dense,
    parse_opcodes,
    pattern_of,
    pfadd_command,
    pfcount_command,
    registers_of,
    sparse_registers,
    unpack_dense,
)
from shardis.errors import ReplyError
from shardis.worker.keyspace import Keyspace
from tests.servers import start_redis, start_shardis
from tests.test_atomicity import keys_on_distinct_workers
from tests.test_busy_scripts import LOOP, WORKERS, key_on, kill_outcomes
from tests.test_persistence_aof import kill9, tag_on, wait_restarted

HEADER_SPARSE = b"HYLL\x01" + bytes(11)


# A literal port of Redis's hllSparseSet, bytes in, bytes out ---------------------------------
def _span(body: bytes, p: int) -> tuple[int, int]:
    """(registers covered, opcode length) of the opcode at ``p`` (NUL past the end)."""
    b = body[p]
    if b & 0xC0 == 0:
        return (b & 0x3F) + 1, 1
    if b & 0xC0 == 0x40:
        second = body[p + 1] if p + 1 < len(body) else 0
        return ((b & 0x3F) << 8 | second) + 1, 2
    return (b & 3) + 1, 1


def reference_sparse_set(hll: bytes, index: int, count: int) -> tuple[int, bytes]:
    """Redis's ``hllSparseSet`` on the string: (outcome, new string); the outcome is 1, 0,
    INVALID or PROMOTE (the string is then unchanged)."""
    if count > 32:
        return PROMOTE, hll
    header, body = bytearray(hll[:16]), bytearray(hll[16:]) + b"\0"  # sds's terminator
    end = len(body) - 1
    p, first, prev, span = 0, 0, None, 0
    while p < end:
        span, oplen = _span(body, p)
        if index <= first + span - 1:
            break
        prev = p
        p += oplen
        first += span
    if span == 0 or p >= end:
        return INVALID, hll
    b = body[p]
    is_zero, is_xzero, is_val = b & 0xC0 == 0, b & 0xC0 == 0x40, bool(b & 0x80)
    runlen = _span(body, p)[0]
    if is_val and ((b >> 2) & 0x1F) + 1 >= count:
        return 0, hll
    if (is_val or is_zero) and runlen == 1:
        body[p] = ((count - 1) << 2) | 0x80
    else:
        seq = bytearray()
        last = first + span - 1

        def run(length: int) -> bytes:
            if is_val:
                return bytes([((((b >> 2) & 0x1F)) << 2 | (length - 1)) | 0x80])
            if length > 64:
                return bytes([((length - 1) >> 8) | 0x40, (length - 1) & 0xFF])
            return bytes([length - 1])

        if index != first:
            seq += run(index - first)
        seq.append(((count - 1) << 2) | 0x80)
        if index != last:
            seq += run(last - index)
        oldlen = 2 if is_xzero else 1
        delta = len(seq) - oldlen
        if delta > 0 and 16 + end + delta > HLL_SPARSE_MAX_BYTES:
            return PROMOTE, hll
        body[p:p + oldlen] = seq
        end += delta
    p = prev if prev is not None else 0
    scan = 5
    while p < end and scan:
        scan -= 1
        if body[p] & 0xC0 == 0x40:
            p += 2
            continue
        if body[p] & 0xC0 == 0:
            p += 1
            continue
        if p + 1 < end and body[p + 1] & 0x80:
            v1, v2 = ((body[p] >> 2) & 0x1F) + 1, ((body[p + 1] >> 2) & 0x1F) + 1
            length = (body[p] & 3) + 1 + (body[p + 1] & 3) + 1
            if v1 == v2 and length <= 4:
                del body[p]
                body[p] = ((v1 - 1) << 2 | (length - 1)) | 0x80
                end -= 1
                continue
        p += 1
    header[15] |= 0x80
    return 1, bytes(header + body[:end])


def edit_sequence(start: bytes, steps: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
    """Apply ``steps`` with SparseEdit, stopping at the first promotion or error."""
    edit = SparseEdit(start)
    out = []
    for index, count in steps:
        outcome = edit.set(index, count)
        out.append((outcome, edit.value() if outcome in (0, 1) else b""))
        if outcome not in (0, 1):
            break
    return out


def reference_sequence(start: bytes, steps: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
    value = start
    out = []
    for index, count in steps:
        outcome, value = reference_sparse_set(value, index, count)
        out.append((outcome, value if outcome in (0, 1) else b""))
        if outcome not in (0, 1):
            break
    return out


@pytest.mark.parametrize("seed", range(12))
def test_sparse_edits_match_redis_byte_level_algorithm(seed):
    rng = random.Random(seed)
    spread = rng.choice([16384, 2000, 300, 40])
    base = rng.randrange(16384 - spread + 1)
    steps = [(base + rng.randrange(spread), rng.choice([1, 1, 2, 3, 4, 5, 31, 32, 33]))
             for _ in range(rng.choice([10, 200, 2000]))]
    assert edit_sequence(bytes(new_hll()), steps) == reference_sequence(bytes(new_hll()), steps)


@pytest.mark.parametrize("body", [
    b"",  # no opcodes
    b"\x7f\xfe",  # runs one register short
    b"\x7f\xff\x00",  # one register too many
    b"\x00" * 20 + b"\x7f\xeb",  # ZEROs then an XZERO
    b"\x40\x10\x84\x85\x7f\xff",  # VALs in the middle, too long overall
    b"\x00" * 40000,  # 40000 one-register ZEROs: edited through a window, the rest kept
    b"\x84\x00\x40\x01" * 9000,  # VALs, ZEROs, XZEROs, far too many
    b"\x00" * 32785 + b"\x7f\xff" * 100,  # the window ends in the middle of XZEROs
])
def test_sparse_edits_of_corrupt_strings_match_redis(body):
    rng = random.Random(body)
    steps = [(rng.randrange(16384), rng.randrange(1, 10)) for _ in range(50)]
    start = HEADER_SPARSE + body
    assert edit_sequence(start, steps) == reference_sequence(start, steps)


def test_huge_corrupt_sparse_values_are_refused_without_expanding_them():
    huge = HEADER_SPARSE + b"\x7f\xff" * 100_000  # 1.6 billion zero registers
    with pytest.raises(ReplyError, match="INVALIDOBJ"):
        registers_of(huge)
    assert sparse_registers(parse_opcodes(b"\x7f\xff" * 1000)[0]) is None
    edit = SparseEdit(huge)
    assert edit.set(3, 2) == PROMOTE and edit.to_dense() is None
    assert edit.value() == huge


def test_cut_xzero_reads_the_terminator_and_gives_it_back():
    """A string ending in half an XZERO: Redis reads the byte past the end, the NUL
    terminator right after a SET (later edits make it read beyond the string, memory that
    is not part of the value: not reproduced)."""
    codes, cut = parse_opcodes(b"\x40\x63\x89\x7f")
    assert cut and decode_sparse(codes) == b"Z:100 v:3,2 Z:16129"
    assert SparseEdit(HEADER_SPARSE + b"\x40\x63\x89\x7f").value() == \
        HEADER_SPARSE + b"\x40\x63\x89\x7f"
    assert parse_opcodes(b"\x7f\xff") == ([256 + 16383], False)


def test_new_hll_is_redis_empty_sparse():
    assert bytes(new_hll()) == b"HYLL\x01" + bytes(11) + b"\x7f\xff"
    assert decode_sparse(parse_opcodes(new_hll()[16:])[0]) == b"Z:16384"
    assert sparse_registers(parse_opcodes(new_hll()[16:])[0]) == bytes(HLL_REGISTERS)


def test_sparse_registers_checks_the_runs_cover_every_register():
    assert sparse_registers(parse_opcodes(b"\x7f\xfe")[0]) is None
    assert sparse_registers(parse_opcodes(b"\x7f\xff\x00")[0]) is None
    registers = sparse_registers(parse_opcodes(b"\x40\x63\x89\x7f\x99")[0])
    assert registers is not None and registers[100:102] == b"\x03\x03"
    assert registers.count(0) == HLL_REGISTERS - 2


def test_promotion_at_the_size_limit_and_for_large_values():
    edit = SparseEdit(bytes(new_hll()))
    assert edit.set(5, 33) == PROMOTE
    assert edit.set(5, 32) == 1
    # fill every other register: each split grows the string until the limit
    index = 0
    while (outcome := edit.set(index, 1 + index % 7)) == 1:
        index += 2
    assert outcome == PROMOTE and edit.length <= HLL_SPARSE_MAX_BYTES
    dense = edit.to_dense()
    assert dense is not None and len(dense) == HLL_DENSE_SIZE and dense[4] == 0
    assert dense_get(dense, 5) == 32 and dense_get(dense, 2) == 3


# Dense registers -----------------------------------------------------------------------------
def test_bulk_register_access_matches_one_at_a_time():
    rng = random.Random(7)
    registers = bytes(rng.randrange(64) for _ in range(HLL_REGISTERS))
    hll = bytearray(HLL_DENSE_SIZE)
    for index, value in enumerate(registers):
        dense_set(hll, index, value)
    assert pack_dense(registers) == hll[16:]
    assert unpack_dense(hll[16:]) == registers
    assert [dense_get(hll, i) for i in range(HLL_REGISTERS)] == list(registers)
    dense_set(hll, 16383, 0)  # the last register: the byte past the end is not touched
    assert len(hll) == HLL_DENSE_SIZE and dense_get(hll, 16382) == registers[16382]


def test_max_registers_is_per_register():
    rng = random.Random(3)
    a = bytes(rng.randrange(64) for _ in range(HLL_REGISTERS))
    b = bytes(rng.randrange(64) for _ in range(HLL_REGISTERS))
    assert max_registers(a, b) == bytes(map(max, a, b))
    assert max_registers(a, bytes(HLL_REGISTERS)) == a


def test_histogram_counts_every_value():
    rng = random.Random(5)
    registers = bytes(rng.choice([0, 1, 2, 50, 51, 63]) for _ in range(HLL_REGISTERS))
    assert histogram(registers) == [registers.count(v) for v in range(64)]


@pytest.mark.parametrize("element, hash_, pattern", [
    (b"", 0xD8DFEA6585BC9732, (5938, 2)),
    (b"a", 0x53D2470A9B43B1A7, (12711, 2)),
    (b"hello", 0x0F656F01EECFE400, (9216, 1)),  # PFDEBUG GETREG in Redis: register 9216 = 1
    (b"12345678", 0x95EBB86389132953, (10579, 3)),  # one whole block
    (b"123456789abcdefgh", 0xAD1CB3E99CED07A6, (1958, 3)),  # two blocks and a tail
])
def test_murmurhash_pinned_values(element, hash_, pattern):
    assert murmurhash64a(element) == hash_
    assert pattern_of(element) == pattern


def test_estimates_of_simple_register_sets():
    assert estimate(bytes(HLL_REGISTERS)) == 0
    assert estimate(bytes([60]) * HLL_REGISTERS) == 1 << 63  # Redis's llroundl of infinity
    assert estimate(b"\x01" + bytes(HLL_REGISTERS - 1)) == 1


# Against real Redis ----------------------------------------------------------------------------
def test_hash_and_registers_match_redis(oracle_clean):
    client = redis.Redis(port=oracle_clean.port)
    rng = random.Random(11)
    elements = [b"", b"a", b"1234567", b"12345678", b"123456789", b"\x00\xff" * 9,
                *(rng.randbytes(rng.randrange(40)) for _ in range(30))]
    for element in elements:
        client.delete("h")
        client.pfadd("h", element)
        registers = client.execute_command("PFDEBUG", "GETREG", "h")
        index, count = pattern_of(element)
        assert [(i, v) for i, v in enumerate(registers) if v] == [(index, count)]


def test_estimator_matches_redis_on_crafted_registers(oracle_clean):
    client = redis.Redis(port=oracle_clean.port)
    rng = random.Random(13)
    for _ in range(25):
        top = rng.choice([3, 10, 25, 52, 63])
        zeros = rng.random()
        registers = bytes(0 if rng.random() < zeros else rng.randrange(1, top + 1)
                          for _ in range(HLL_REGISTERS))
        client.set("d", b"HYLL\x00" + bytes(10) + b"\x80" + pack_dense(registers))
        expected = estimate(registers)
        assert client.pfcount("d") == (expected - (1 << 64) if expected >> 63 else expected)


# End to end: what a script cannot compare --------------------------------------------------------
def _events(client: redis.Redis, actions) -> list[tuple[bytes, bytes]]:
    """The keyevent notifications ``actions(client)`` causes, in order (collected until
    none has come for a second)."""
    client.config_set("notify-keyspace-events", "KEA")
    pubsub = client.pubsub()
    pubsub.psubscribe("__keyevent@0__:*")
    pubsub.get_message(timeout=1)
    try:
        actions(client)
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
            if message is None:
                break
            if message["type"] == "pmessage":
                seen.append((message["channel"].split(b":", 1)[1], message["data"]))
        return seen
    finally:
        pubsub.close()
        client.config_set("notify-keyspace-events", "")


def test_keyspace_events_as_redis(shardis_clean, oracle_clean):
    a, b, c = keys_on_distinct_workers(3)

    def actions(client: redis.Redis) -> None:
        client.pfadd(a, "x", "y")
        client.pfadd(a, "x")  # nothing changes: no event
        client.pfcount(a)  # writes the cache: no event
        client.pfadd(b, "z")
        client.pfcount(a, b)
        client.pfmerge(c, a, b)  # across workers: a "pfadd" for the destination
        client.pfmerge("{t}x", "{t}y")
        client.execute_command("PFDEBUG", "TODENSE", c)
        client.delete(a)

    ours = _events(redis.Redis(port=shardis_clean.port), actions)
    theirs = _events(redis.Redis(port=oracle_clean.port), actions)
    assert ours == theirs
    assert (b"pfadd", c.encode()) in ours


def test_pfcount_that_writes_the_cache_touches_watch(r):
    r.pfadd("h", "a")
    with r.pipeline() as pipe:
        pipe.watch("h")
        r.pfcount("h")  # the cache was stale: written, the key counts as modified
        pipe.multi()
        pipe.get("h")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    with r.pipeline() as pipe:
        pipe.watch("h")
        r.pfcount("h")  # the cache is valid now: nothing written
        pipe.multi()
        pipe.pfcount("h")
        assert pipe.execute() == [1]


def test_values_move_between_redis_and_shardis(r, oracle_clean):
    theirs = redis.Redis(port=oracle_clean.port)
    theirs.pfadd("big", *(f"e{n}" for n in range(5000)))
    theirs.pfadd("small", "a", "b")
    for key in ("big", "small"):
        r.set(key, theirs.get(key))
        assert r.pfcount(key) == theirs.pfcount(key)
        r.pfadd(key, "more")
        theirs.pfadd(key, "more")
        assert r.get(key) == theirs.get(key)
        r.restore(key + "2", 0, theirs.dump(key))
        assert r.pfcount(key + "2") == theirs.pfcount(key)
    a, b, _ = keys_on_distinct_workers(3)
    r.pfadd(a, *(f"a{n}" for n in range(300)))
    r.pfadd(b, *(f"b{n}" for n in range(300)))
    theirs.set(a, r.get(a))
    theirs.set(b, r.get(b))
    assert r.pfcount(a, b) == theirs.pfcount(a, b)
    r.pfmerge(a, b)
    theirs.pfmerge(a, b)
    assert r.get(a) == theirs.get(a)


def test_pfselftest_passes(r):
    assert r.execute_command("PFSELFTEST") in (b"OK", "OK", True)


def test_aof_replays_hll_writes_byte_for_byte(tmp_path):
    """PFADD, the cache a PFCOUNT writes, a cross-worker PFMERGE (``__pfstore``) and the
    dense conversion of PFDEBUG are all logged: killed workers come back with the same
    bytes."""
    server = start_shardis(2, "--appendonly", "yes", "--appendfsync", "always",
                           "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port)
        tags = [tag_on(0), tag_on(1)]
        a, b = (f"{{{tag}}}" for tag in tags)
        client.pfadd(a + "h", *(f"a{n}" for n in range(200)))
        client.pfadd(b + "h", *(f"b{n}" for n in range(3000)))
        client.pfcount(a + "h")
        client.pfmerge(a + "m", a + "h", b + "h")  # across workers
        client.pfmerge(b + "m", b + "h")
        client.pfadd(b + "s", "x")
        client.execute_command("PFDEBUG", "TODENSE", b + "s")
        keys = [a + "h", b + "h", a + "m", b + "m", b + "s"]
        expected = [client.get(key) for key in keys]
        for index, tag in enumerate(tags):
            old = kill9(server, index)
            wait_restarted(server, index, old, client, tag)
        assert [client.get(key) for key in keys] == expected
    finally:
        server.stop()


# Worker ops on a real keyspace: what they report as changed ----------------------------------
def test_ops_report_changes_as_redis_signals_them():
    db = Keyspace()
    assert pfadd_command(db, [b"PFADD", b"h", b"a"]) == 1
    assert db.touched == [b"h"] and type(db.get(b"h")) is bytearray
    db.touched.clear()
    assert pfadd_command(db, [b"PFADD", b"h", b"a"]) == 0
    assert db.touched == []  # nothing changed: not signalled
    assert pfcount_command(db, [b"PFCOUNT", b"h"]) == 1
    assert db.touched == [b"h"]  # the cache was written
    db.touched.clear()
    assert pfcount_command(db, [b"PFCOUNT", b"h"]) == 1
    assert pfcount_command(db, [b"PFCOUNT", b"h", b"nokey"]) == 1
    assert db.touched == []
    db.set(b"s", b"HYLL\x01" + bytes(10) + b"\x00\x7f\xff")  # a valid cache of 0
    db.touched.clear()
    assert pfcount_command(db, [b"PFCOUNT", b"s"]) == 0
    assert db.touched == [] and type(db.get(b"s")) is bytearray  # unshared all the same


def test_pfstore_refuses_malformed_registers():
    db = Keyspace()
    for registers in (b"", bytes(100), bytes([64]) + bytes(HLL_REGISTERS - 1)):
        with pytest.raises(ReplyError):
            internal_pfstore_command(db, [b"__pfstore", b"d", b"0", registers])
    assert db.get(b"d") is None
    registers = bytes([3]) + bytes(HLL_REGISTERS - 1)
    internal_pfstore_command(db, [b"__pfstore", b"d", b"1", registers])
    assert unpack_dense(db.get(b"d")[16:]) == registers


def test_a_script_that_ran_pfcount_can_still_be_killed():
    """PFCOUNT is may_replicate, not a write: after it (even when it wrote the cache) a
    busy script is still killable, as in Redis."""
    server = start_shardis(WORKERS, "--lua-time-limit", "200")
    busy_redis = start_redis("--busy-reply-threshold", "200")
    try:
        key = key_on(0)
        script = "redis.call('PFCOUNT', KEYS[1]) " + LOOP
        for port in (server.port, busy_redis.port):
            redis.Redis(port=port).pfadd(key, "a", "b")
        ours = kill_outcomes(server.port, key, script)
        theirs = kill_outcomes(busy_redis.port, key, script)
        assert ours == theirs and ours[1] is True
    finally:
        server.stop()
        busy_redis.stop()


def _random_sparse(rng: random.Random) -> bytes:
    edit = SparseEdit(bytes(new_hll()))
    spread = rng.choice([16384, 3000, 200])
    base = rng.randrange(16384 - spread + 1)
    for _ in range(rng.choice([0, 1, 5, 50, 400, 1500])):
        if edit.set(base + rng.randrange(spread), rng.randrange(1, 33)) == PROMOTE:
            break
    return edit.value()


@pytest.mark.parametrize("seed", range(10))
def test_an_edit_opened_around_its_register_equals_a_full_one(seed):
    rng = random.Random(seed)
    for _ in range(60):
        value = _random_sparse(rng)
        if rng.random() < 0.2:  # corrupt: cut, shortened or lengthened
            value = value[:rng.randrange(16, len(value) + 1)] + rng.randbytes(rng.randrange(3))
        index, count = rng.randrange(16384), rng.randrange(1, 34)
        full, around = SparseEdit(value), SparseEdit.around(value, index)
        outcome = full.set(index, count)
        assert around.set(index, count) == outcome
        assert around.value() == full.value()
        assert around.registers() == full.registers()
        if outcome == PROMOTE:
            assert around.to_dense() == full.to_dense()


def test_a_single_edit_opens_a_few_opcodes_only():
    value = _random_sparse(random.Random(1))
    while len(value) < 1000:
        value = _random_sparse(random.Random(len(value)))
    edit = SparseEdit.around(value, 16383)
    assert edit.prefix and len(edit.codes) <= 13
    assert SparseEdit.around(value, 0).prefix == b""
