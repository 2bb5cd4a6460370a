"""Bitmap behaviour: BITOP across workers (atomicity under concurrent writers included), the
512 MB limit, bitmaps as plain strings, and the bit primitives against naive models.

Byte-exact replies are the differential corpus's job (tests/test_diff_bitmaps.py); these tests
check what a corpus cannot: concurrency, big values, speed and randomised models.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis

from shardis.commands.bitmaps import (
    bitop_result,
    first_bit,
    popcount,
    read_field,
    write_field,
)
from shardis.slots import SlotMap
from tests.test_atomicity import keys_on_distinct_workers

#: The last bit offset inside Redis's 512 MB string limit.
LAST_BIT = 512 * 1024 * 1024 * 8 - 1


def _client(server, protocol: int = 3) -> redis.Redis:
    return redis.Redis(port=server.port, protocol=protocol)


def _bits(value: bytes) -> str:
    return "".join(f"{byte:08b}" for byte in value)


# -- BITOP across workers ---------------------------------------------------------------------
def test_bitop_keys_really_span_workers():
    keys = keys_on_distinct_workers(3)
    assert len({SlotMap(3).worker_of(key.encode()) for key in keys}) == 3


def test_bitop_across_workers_matches_a_python_model(shardis_clean):
    client = _client(shardis_clean)
    a, b, c = keys_on_distinct_workers(3)
    rng = random.Random(11)
    for _ in range(25):
        values = [rng.randbytes(rng.randrange(0, 40)) for _ in range(3)]
        for key, value in zip((a, b, c), values):
            client.delete(key)
            if value:
                client.set(key, value)
        longest = max(len(v) for v in values)
        padded = [int.from_bytes(v.ljust(longest, b"\0"), "big") for v in values]
        for op, combine in (("AND", lambda x, y: x & y), ("OR", lambda x, y: x | y),
                            ("XOR", lambda x, y: x ^ y)):
            destination = rng.choice([c, "bitop:dest", "{x}dest"])
            assert client.bitop(op, destination, a, b, c) == longest
            expected = padded[0]
            for number in padded[1:]:
                expected = combine(expected, number)
            if longest:
                assert client.get(destination) == expected.to_bytes(longest, "big")
                assert client.object("encoding", destination) == b"raw"
            else:
                assert client.exists(destination) == 0
            for key, value in zip((a, b, c), values):  # restore a source used as destination
                client.delete(key)
                if value:
                    client.set(key, value)


def test_bitop_across_workers_wrongtype_leaves_the_destination(shardis_clean):
    client = _client(shardis_clean)
    a, b, c = keys_on_distinct_workers(3)
    client.set(a, "abc")
    client.rpush(b, "element")
    client.set(c, "keep", ex=100)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.bitop("OR", c, a, b)
    assert client.get(c) == b"keep"
    assert client.ttl(c) > 0
    assert client.bitop("OR", c, a, "missing") == 3
    assert client.ttl(c) == -1  # the result replaces the key, TTL and all, as in Redis


def test_bitop_across_workers_is_atomic_under_concurrent_writers(shardis_clean):
    """Writers MSET both sources to one pattern at a time (MSET is atomic across workers); a
    BITOP OR over them must always see one moment: 0x0f.. or 0xf0.., never the torn 0xff.."""
    a, b, destination = keys_on_distinct_workers(3)
    low, high = b"\x0f" * 64, b"\xf0" * 64
    client = _client(shardis_clean)
    client.mset({a: low, b: low})
    stop = threading.Event()
    torn: list[bytes] = []

    def writer(seed: int) -> None:
        writer_client = _client(shardis_clean)
        rng = random.Random(seed)
        for _ in range(400):
            pattern = rng.choice((low, high))
            writer_client.mset({a: pattern, b: pattern})
            if rng.random() < 0.3:  # a bit flip lands atomically too
                writer_client.setbit(destination, 0, 1)

    def bitopper() -> None:
        bitop_client = _client(shardis_clean, protocol=2)
        while not stop.is_set():
            assert bitop_client.bitop("OR", destination, a, b) == 64
            result = bitop_client.get(destination)
            # (a concurrent SETBIT may have set the first bit since: 0x8f is fine too)
            if result[1:] not in (low[1:], high[1:]) or result[0] | 0x80 not in (0x8F, 0xF0):
                torn.append(result[:4])

    def reader() -> None:
        reader_client = _client(shardis_clean)
        while not stop.is_set():
            first, second = reader_client.mget(a, b)
            if first != second:
                torn.append(b"sources differ")

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    others = [threading.Thread(target=bitopper) for _ in range(2)] + [
        threading.Thread(target=reader)]
    for thread in writers + others:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in others:
        thread.join(timeout=60)
    assert not torn, torn[:5]
    final = client.mget(a, b)[0]
    assert client.bitop("OR", destination, a, b) == 64
    assert client.get(destination) == final


def test_bitop_across_workers_holds_writers_until_the_result_is_stored(shardis_clean):
    """A pipeline of BITOP then writes to its sources from another client: whatever order
    they arrive in, the result equals the sources at one moment (before or after a write)."""
    a, b, destination = keys_on_distinct_workers(3)
    client = _client(shardis_clean)
    other = _client(shardis_clean)
    for round_ in range(50):
        before = bytes([round_]) * 16
        after = bytes([round_ + 100]) * 16
        client.mset({a: before, b: before})
        pipe = client.pipeline(transaction=False)
        pipe.bitop("AND", destination, a, b)
        pipe.get(destination)
        thread = threading.Thread(target=other.mset, args=({a: after, b: after},))
        thread.start()
        length, result = pipe.execute()
        thread.join()
        assert length == 16
        assert result in (before, after)


# -- Big offsets and the 512 MB limit ---------------------------------------------------------
def test_setbit_large_offset_grows_the_string(r):
    assert r.setbit("big", 80_000_007, 1) == 0
    assert r.strlen("big") == 10_000_001
    assert r.getbit("big", 80_000_007) == 1
    assert r.getbit("big", 80_000_006) == 0
    assert r.bitcount("big") == 1
    assert r.bitpos("big", 1) == 80_000_007
    assert r.getrange("big", -1, -1) == b"\x01"
    assert r.object("encoding", "big") == b"raw"


def test_the_512mb_limit(r):
    """The last addressable bit works; one more, or growing the string past 512 MB with the
    string commands, answers Redis's errors.  (The worker allocates 512 MB of zeros.)"""
    with pytest.raises(redis.ResponseError, match="bit offset is not an integer or out of range"):
        r.setbit("huge", LAST_BIT + 1, 1)
    with pytest.raises(redis.ResponseError, match="bit offset is not an integer or out of range"):
        r.bitfield("huge").get("u8", LAST_BIT + 1).execute()
    assert r.exists("huge") == 0
    try:
        assert r.setbit("huge", LAST_BIT, 1) == 0
        assert r.strlen("huge") == 512 * 1024 * 1024
        assert r.getbit("huge", LAST_BIT) == 1
        assert r.bitcount("huge", -1, -1) == 1
        assert r.bitpos("huge", 1, -10) == LAST_BIT
        with pytest.raises(redis.ResponseError, match="string exceeds maximum allowed size"):
            r.append("huge", "x")
        with pytest.raises(redis.ResponseError, match="string exceeds maximum allowed size"):
            r.setrange("huge", 512 * 1024 * 1024, "x")
        assert r.setrange("huge", 0, "ab") == 512 * 1024 * 1024
        assert r.getrange("huge", 0, 2) == b"ab\x00"
    finally:
        r.delete("huge")


# -- Bitmaps are strings ----------------------------------------------------------------------
def test_string_commands_see_the_bitmap_bytes(r):
    rng = random.Random(3)
    model = bytearray()
    for _ in range(300):
        choice = rng.randrange(4)
        if choice == 0:
            offset, bit = rng.randrange(0, 400), rng.randrange(2)
            if offset // 8 >= len(model):
                model.extend(bytes(offset // 8 + 1 - len(model)))
            old = (model[offset // 8] >> (7 - offset % 8)) & 1
            model[offset // 8] = (model[offset // 8] & ~(1 << (7 - offset % 8))) | (
                bit << (7 - offset % 8))
            assert r.setbit("k", offset, bit) == old
        elif choice == 1:
            tail = rng.randbytes(rng.randrange(1, 4))
            model += tail
            assert r.append("k", tail) == len(model)
        elif choice == 2:
            offset, patch = rng.randrange(0, 60), rng.randbytes(rng.randrange(1, 5))
            if offset + len(patch) > len(model):
                model.extend(bytes(offset + len(patch) - len(model)))
            model[offset : offset + len(patch)] = patch
            assert r.setrange("k", offset, patch) == len(model)
        else:
            bits, offset = rng.randrange(1, 20), rng.randrange(0, 300)
            expected = int(_bits(bytes(model)).ljust(offset + bits, "0")[offset:offset + bits], 2)
            assert r.bitfield("k").get(f"u{bits}", offset).execute() == [expected]
        assert r.get("k") == bytes(model)
        assert r.strlen("k") == len(model)
        assert r.bitcount("k") == _bits(bytes(model)).count("1")


def test_object_encoding_is_raw_after_bit_writes(r):
    r.set("small", "12")
    assert r.object("encoding", "small") == b"int"
    r.getbit("small", 3)
    r.bitcount("small")
    r.bitfield("small").get("u8", 0).execute()
    assert r.object("encoding", "small") == b"int"  # reads leave the encoding alone
    r.setbit("small", 3, 1)  # unchanged bit: Redis still unshares the value
    assert r.object("encoding", "small") == b"raw"
    assert r.get("small") == b"12"
    r.set("e", "abc")
    assert r.object("encoding", "e") == b"embstr"
    r.bitfield("e").set("u8", 0, 97).execute()
    assert r.object("encoding", "e") == b"raw"
    r.setbit("fresh", 0, 1)
    assert r.object("encoding", "fresh") == b"raw"


def test_bitcount_and_bitpos_over_a_megabyte_are_fast(r):
    value = random.Random(5).randbytes(1 << 20)
    r.set("mb", value)
    r.setbit("zeros", (1 << 23) - 1, 1)
    started = time.perf_counter()
    for _ in range(20):
        assert r.bitcount("mb") == int.from_bytes(value, "big").bit_count()
        assert r.bitcount("mb", 3, -5, "bit") >= 0
        assert r.bitpos("zeros", 1) == (1 << 23) - 1
        assert r.bitop("XOR", "{mb}x", "zeros") == 1 << 20
    # A byte-by-byte Python loop takes ~0.1 s per megabyte: 80 of them would take seconds.
    assert time.perf_counter() - started < 4


# -- The primitives against naive models ------------------------------------------------------
def _naive_popcount(value: bytes, first: int, last: int) -> int:
    return _bits(value)[first : last + 1].count("1")


def _naive_first_bit(value: bytes, bit: int, first: int, last: int) -> int:
    found = _bits(value)[first : last + 1].find(str(bit))
    return -1 if found < 0 else first + found


def test_popcount_and_first_bit_match_a_naive_model():
    rng = random.Random(1)
    for _ in range(2000):
        value = bytes(rng.choice((0, 255, rng.randrange(256))) for _ in range(rng.randrange(1, 12)))
        first = rng.randrange(len(value) * 8)
        last = rng.randrange(first, len(value) * 8)
        assert popcount(value, first, last) == _naive_popcount(value, first, last)
        for bit in (0, 1):
            assert first_bit(value, bit, first, last) == _naive_first_bit(value, bit, first, last)


def test_read_and_write_field_match_a_naive_model():
    rng = random.Random(2)
    for _ in range(2000):
        buffer = bytearray(rng.randbytes(12))
        bits = rng.randrange(1, 65)
        offset = rng.randrange(0, 96 - bits + 1)
        text = _bits(bytes(buffer))
        unsigned = int(text[offset : offset + bits], 2)
        signed = unsigned - (1 << bits) if unsigned >> (bits - 1) else unsigned
        assert read_field(buffer, offset, bits, signed=False) == unsigned
        assert read_field(buffer, offset, bits, signed=True) == signed
        number = rng.randrange(1 << bits)
        write_field(buffer, offset, bits, number)
        expected = text[:offset] + format(number, f"0{bits}b") + text[offset + bits :]
        assert _bits(bytes(buffer)) == expected
    assert read_field(b"\xff", 4, 16, signed=False) == 0xF000  # past the end reads zeros


def test_bitop_result_matches_a_byte_loop():
    rng = random.Random(4)
    for _ in range(300):
        sources = [rng.choice((None, b"", rng.randbytes(rng.randrange(0, 70)))) for _ in range(3)]
        longest = max((len(s) for s in sources if s), default=0)
        padded = [(s or b"").ljust(longest, b"\0") for s in sources]
        assert bitop_result(b"and", sources) == bytes(
            x & y & z for x, y, z in zip(*padded))
        assert bitop_result(b"or", sources) == bytes(x | y | z for x, y, z in zip(*padded))
        assert bitop_result(b"xor", sources) == bytes(x ^ y ^ z for x, y, z in zip(*padded))
        assert bitop_result(b"not", sources[:1]) == bytes(255 - x for x in (sources[0] or b""))
