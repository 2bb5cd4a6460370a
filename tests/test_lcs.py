"""shardis.lcs against a cell-by-cell port of Redis's table walk and against real redis-server."""

from __future__ import annotations

import random

import pytest
import redis

from shardis.lcs import (
    LCS_LEN_AND_IDX,
    LCS_NOT_STRINGS,
    LCS_TOO_MUCH_MEMORY,
    lcs,
    table_too_big,
)


def reference_lcs(a: bytes, b: bytes, want_idx: bool, min_match_len: int = 0):
    """The obvious full-table version of lcsCommand, to check the bit-parallel one."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    chars, matches, current = bytearray(), [], None
    i, j = len(a), len(b)
    while i > 0 and j > 0:
        if a[i - 1] == b[j - 1]:
            chars.append(a[i - 1])
            if current is None:
                current = [i - 1, i - 1, j - 1, j - 1]
            else:
                current[0], current[2] = current[0] - 1, current[2] - 1
            i, j = i - 1, j - 1
            done = current[0] == 0 or current[2] == 0
        else:
            if table[i - 1][j] > table[i][j - 1]:
                i -= 1
            else:
                j -= 1
            done = current is not None
        if done:
            size = current[1] - current[0] + 1
            if want_idx and size >= min_match_len:
                matches.append(((current[0], current[1]), (current[2], current[3]), size))
            current = None
    return bytes(reversed(chars)), table[-1][-1], matches


CASES = [
    # (a, b, min_match_len, lcs string, length, matches)
    (b"ohmytext", b"mynewtext", 0, b"mytext", 6, [((4, 7), (5, 8), 4), ((2, 3), (0, 1), 2)]),
    (b"ohmytext", b"mynewtext", 4, b"mytext", 6, [((4, 7), (5, 8), 4)]),
    (b"", b"abc", 0, b"", 0, []),
    (b"abc", b"", 0, b"", 0, []),
    (b"abc", b"xyz", 0, b"", 0, []),
    (b"abc", b"abc", 0, b"abc", 3, [((0, 2), (0, 2), 3)]),
    (b"aaa", b"a", 0, b"a", 1, [((2, 2), (0, 0), 1)]),
    # on a tie the walk moves left (j - 1): from (ab, ba) it reaches (ab, b) and keeps 'b'
    (b"ab", b"ba", 0, b"b", 1, [((1, 1), (0, 0), 1)]),
    (b"ba", b"ab", 0, b"a", 1, [((1, 1), (0, 0), 1)]),
    (b"a\x00b", b"\x00b\xff", 0, b"\x00b", 2, [((1, 2), (0, 1), 2)]),
]


@pytest.mark.parametrize(("a", "b", "min_len", "string", "length", "matches"), CASES)
def test_cases(a: bytes, b: bytes, min_len: int, string: bytes, length: int, matches) -> None:
    assert lcs(a, b, True, min_len) == (string, length, matches)
    assert lcs(a, b, False, min_len) == (string, length, [])


def test_negative_min_match_len_keeps_everything() -> None:
    assert lcs(b"ohmytext", b"mynewtext", True, -3) == lcs(b"ohmytext", b"mynewtext", True, 0)


def test_matches_reference_on_random_inputs() -> None:
    rng = random.Random(99)
    for _ in range(600):
        alphabet = rng.choice([b"ab", b"abc", b"acgt", bytes(range(256))])
        a = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        b = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        min_len = rng.choice([0, 1, 2, 3, 4])
        assert lcs(a, b, True, min_len) == reference_lcs(a, b, True, min_len), (a, b, min_len)


def test_large_inputs_are_fast_enough() -> None:
    rng = random.Random(1)
    a = bytes(rng.choice(b"acgt") for _ in range(3000))
    b = bytes(rng.choice(b"acgt") for _ in range(3000))
    string, length, matches = lcs(a, b, True)
    assert len(string) == length > 1800
    assert sum(size for _, _, size in matches) == length


def test_table_too_big() -> None:
    assert not table_too_big(11584, 11584)
    assert table_too_big(11585, 11585)
    assert not table_too_big(511, 511, 1024 * 1024)
    assert table_too_big(512, 511, 1024 * 1024)


# Differential tests against redis-server ------------------------------------------------------


def _call(client: redis.Redis, *args: bytes | str | int) -> object:
    """The raw reply, or ("error", full error text) -- redis-py strips the "ERR " prefix."""
    try:
        return client.execute_command(*args)
    except redis.ResponseError as exc:
        code = getattr(exc, "status_code", None)
        return ("error", f"{code} {exc}" if code else str(exc))


def _idx_reply(matches, length: int, with_len: bool) -> list:
    """The RESP2 reply of LCS ... IDX as redis-py returns it raw."""
    items = []
    for (a_start, a_end), (b_start, b_end), size in matches:
        item = [[a_start, a_end], [b_start, b_end]]
        items.append(item + [size] if with_len else item)
    return [b"matches", items, b"len", length]


def _pairs() -> list[tuple[bytes, bytes]]:
    rng = random.Random(2024)
    pairs = []
    for index in range(200):
        if index % 20 == 19:
            alphabet = bytes(range(256))
        else:
            alphabet = rng.choice([b"ab", b"abc", b"xyz", b"acgt", b"a\x00\xff"])
        a = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        b = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        pairs.append((a, b))
    return pairs


def test_lcs_matches_redis(oracle_clean) -> None:
    client = redis.Redis(port=oracle_clean.port, protocol=2)
    client.response_callbacks.clear()
    rng = random.Random(5)
    for a, b in _pairs():
        client.mset({"k1": a, "k2": b})
        min_len = rng.choice([0, 0, 1, 2, 3, 4, 6])
        string, length, matches = lcs(a, b, True, min_len)
        reply = _call(client, "LCS", "k1", "k2", "IDX", "MINMATCHLEN", min_len, "WITHMATCHLEN")
        assert reply == _idx_reply(matches, length, True), (a, b, min_len)
        assert _call(client, "LCS", "k1", "k2", "IDX") == _idx_reply(
            lcs(a, b, True)[2], length, False)
        assert _call(client, "LCS", "k1", "k2") == string
        assert _call(client, "LCS", "k1", "k2", "LEN") == length
    client.close()


def test_lcs_error_texts_match_redis(oracle_clean) -> None:
    client = redis.Redis(port=oracle_clean.port, protocol=2)
    client.response_callbacks.clear()
    client.set("s", "abc")
    client.rpush("list", "x")
    assert _call(client, "LCS", "s", "list", "BOGUS") == ("error", LCS_NOT_STRINGS)
    assert _call(client, "LCS", "s", "s", "LEN", "IDX") == ("error", LCS_LEN_AND_IDX)
    assert _call(client, "LCS", "s", "missing", "IDX") == [b"matches", [], b"len", 0]
    client.close()


def test_table_limit_matches_redis(oracle_clean) -> None:
    client = redis.Redis(port=oracle_clean.port, protocol=2)
    client.response_callbacks.clear()
    limit = 1024 * 1024
    client.config_set("proto-max-bulk-len", limit)
    try:
        for a_len, b_len in [(511, 511), (512, 511), (511, 512), (1000, 200), (100, 2600)]:
            client.mset({"k1": b"a" * a_len, "k2": b"a" * b_len})
            reply = _call(client, "LCS", "k1", "k2", "LEN")
            too_big = table_too_big(a_len, b_len, limit)
            assert reply == (("error", LCS_TOO_MUCH_MEMORY) if too_big else min(a_len, b_len))
    finally:
        client.config_set("proto-max-bulk-len", 512 * 1024 * 1024)
        client.close()
