"""shardis.glob against a table of corner cases and against a real redis-server (KEYS, PUBLISH,
FUNCTION LIST LIBRARYNAME for the case-insensitive variant)."""

from __future__ import annotations

import random

import pytest
import redis

from shardis.glob import compile_glob, glob_match

CASES: list[tuple[bytes, bytes, bool]] = [
    # literals, '?', '*'
    (b"", b"", True),
    (b"", b"a", False),
    (b"a", b"", False),
    (b"abc", b"abc", True),
    (b"abc", b"abd", False),
    (b"abc", b"ab", False),
    (b"ab", b"abc", False),
    (b"a?c", b"abc", True),
    (b"a?c", b"ac", False),
    (b"?", b"\x00", True),
    (b"*", b"", False),  # stringmatchlen never enters its loop for an empty subject
    (b"**", b"", False),
    (b"*", b"anything", True),
    (b"a*", b"a", True),
    (b"a**", b"a", True),
    (b"a*?", b"a", False),
    (b"a*b", b"ab", True),
    (b"a*b", b"axxb", True),
    (b"a*b", b"axxbc", False),
    (b"*b", b"b", True),
    (b"*b*", b"abc", True),
    (b"*a*b*c*", b"xaxbxcx", True),
    (b"*a*b*c*", b"xcxbxax", False),
    (b"a*a*a*a*a*a*a*a*b", b"a" * 60, False),
    (b"*?", b"a", True),
    (b"*??", b"a", False),
    # escapes outside sets
    (b"\\*", b"*", True),
    (b"\\*", b"a", False),
    (b"a\\?c", b"a?c", True),
    (b"a\\?c", b"abc", False),
    (b"\\", b"\\", True),  # a trailing lone backslash is literal
    (b"a\\", b"a\\", True),
    (b"\\\\", b"\\", True),
    (b"\\a", b"a", True),
    # sets
    (b"[abc]", b"b", True),
    (b"[abc]", b"d", False),
    (b"[^abc]", b"d", True),
    (b"[^abc]", b"a", False),
    (b"[a-c]", b"b", True),
    (b"[c-a]", b"b", True),  # reversed range
    (b"[a-c]", b"d", False),
    (b"[]", b"]", False),  # ']' right after '[' closes an empty set
    (b"[]a]", b"]a]", False),
    (b"[]a]", b"a]", False),
    (b"[^]", b"x", True),
    (b"[^]a", b"xa", True),
    (b"[\\]]", b"]", True),
    (b"[\\-]", b"-", True),
    (b"[a\\-c]", b"b", False),
    (b"[-a]", b"-", True),
    (b"[a-]", b"]", True),  # the range a..] swallows the ']'; the set is then unterminated
    (b"[a-]", b"_", True),
    (b"[a-]x", b"a", True),  # 'x' became part of the unterminated set
    (b"[abc", b"b", True),
    (b"[abc", b"bc", False),
    (b"[", b"[", False),
    (b"[", b"", False),
    (b"[^", b"x", True),
    (b"[\\", b"\\", True),
    (b"a[", b"a", False),
    (b"[a-c-e]", b"-", True),
    (b"[a-c-e]", b"d", False),
    (b"[^a-c]", b"b", False),
    # signed char ranges: bytes >= 0x80 sort below 0x00
    (b"[\x00-\xff]", b"a", False),
    (b"[\x00-\xff]", b"\xff", True),
    (b"[\x00-\xff]", b"\x00", True),
    (b"[\x80-\x7f]", b"a", True),
    (b"[\x80-\x7f]", b"\xc8", True),
    (b"[a-\xc8]", b"\xd0", True),
    (b"[a-\xc8]", b"\x10", True),
    (b"[a-\xc8]", b"b", False),
    # binary safety
    (b"a\x00b", b"a\x00b", True),
    (b"a?b", b"a\x00b", True),
    (b"[\x00]", b"\x00", True),
    (b"*\x00", b"xyz\x00", True),
    (b"\xff*", b"\xff\xfe", True),
]

NOCASE_CASES: list[tuple[bytes, bytes, bool]] = [
    (b"ABC", b"abc", True),
    (b"abc", b"ABC", True),
    (b"a?C", b"AbC", True),
    (b"\\A", b"a", True),  # escapes outside sets still fold case
    (b"[\\A]", b"a", False),  # ...but escapes inside sets do not
    (b"[\\A]", b"A", True),
    (b"[A]", b"a", True),
    (b"[^A]", b"a", False),
    (b"[a-c]", b"B", True),
    (b"[Z-a]", b"z", False),  # ends fold to 'z'..'a': an empty range
    (b"[Z-a]", b"[", False),
    (b"[Z-a]", b"Z", False),
    (b"[A-z]", b"[", False),  # 'A' folds to 'a' first, so '[' (91) is outside 97..122
    (b"[A-z]", b"Q", True),
    (b"[\xc8-a]", b"a", False),  # glibc tolower maps -56 to 200: the range becomes 200..97
    (b"[\xc8-a]", b"\xd0", False),
    (b"[\xc8-\xd0]", b"\xc9", True),
    (b"\xc8", b"\xc8", True),
    (b"*Z", b"xyzz", True),
]


@pytest.mark.parametrize(("pattern", "string", "expected"), CASES)
def test_table(pattern: bytes, string: bytes, expected: bool) -> None:
    assert glob_match(pattern, string) is expected
    assert compile_glob(pattern)(string) is expected


@pytest.mark.parametrize(("pattern", "string", "expected"), NOCASE_CASES)
def test_table_nocase(pattern: bytes, string: bytes, expected: bool) -> None:
    assert glob_match(pattern, string, nocase=True) is expected
    assert compile_glob(pattern, nocase=True)(string) is expected


def test_case_sensitive_by_default() -> None:
    assert not glob_match(b"ABC", b"abc")
    assert not glob_match(b"[A-C]", b"b")


def test_many_stars_do_not_blow_up() -> None:
    pattern = b"*a" * 200 + b"*b"
    assert not glob_match(pattern, b"a" * 10_000)
    assert glob_match(pattern, b"a" * 10_000 + b"b")


def test_huge_pattern_is_not_cached_but_works() -> None:
    pattern = b"?" * 5000 + b"*"
    assert glob_match(pattern, b"x" * 5001)
    assert not glob_match(pattern, b"x" * 4999)


# Differential tests against redis-server ------------------------------------------------------

KEY_ALPHABET = [b"a", b"b", b"c", b"A", b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"\x00",
                b"\xff", b"\xc8", b"x"]
PATTERN_ALPHABET = [b"a", b"b", b"c", b"*", b"?", b"[", b"]", b"^", b"-", b"\\"]
FIXED_PATTERNS = [
    b"*", b"**", b"?", b"??", b"*?", b"a*", b"*a", b"*a*", b"[abc]*", b"[^abc]*", b"[a-c]",
    b"[c-a]*", b"[]*", b"[^]*", b"[", b"[^", b"[a-]", b"[a-]*", b"[\\]]*", b"\\**", b"*\\",
    b"\\", b"[\\", b"*[", b"[*", b"\\[*", b"*]", b"[\x00-\xff]*", b"[\x80-\x7f]", b"*\x00*",
    b"\xff*", b"*\\\\*", b"[-]", b"[^-]?", b"a[", b"", b"*a*b*c*", b"[\\^]*", b"[[]*",
]


def _random_bytes(rng: random.Random, alphabet: list[bytes], low: int, high: int) -> bytes:
    return b"".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _tricky_keys() -> set[bytes]:
    rng = random.Random(20240607)
    keys = {_random_bytes(rng, KEY_ALPHABET, 0, 6) for _ in range(450)}
    keys |= {b"", b"[", b"]", b"\\", b"*", b"?", b"^", b"-", b"abc", b"a\\", b"[abc]"}
    return keys


def _patterns() -> list[bytes]:
    rng = random.Random(4242)
    randomized = [_random_bytes(rng, PATTERN_ALPHABET, 1, 8) for _ in range(110)]
    return FIXED_PATTERNS + randomized


def test_keys_matches_redis(oracle_clean) -> None:
    client = redis.Redis(port=oracle_clean.port, protocol=2)
    keys = _tricky_keys()
    assert len(keys) > 300
    client.mset({key: b"1" for key in keys})
    for pattern in _patterns():
        got = set(client.keys(pattern))
        # KEYS answers the exact pattern '*' without stringmatchlen (the empty key included).
        ours = {key for key in keys if pattern == b"*" or glob_match(pattern, key)}
        compiled = compile_glob(pattern)
        assert ours == {key for key in keys if pattern == b"*" or compiled(key)}
        assert got == ours, pattern
    client.close()


def test_publish_empty_channel_matches_redis(oracle) -> None:
    """PSUBSCRIBE has no '*' shortcut: only the empty pattern matches the empty channel."""
    client = redis.Redis(port=oracle.port, protocol=2)
    patterns = [b"*", b"**", b"", b"?", b"[^", b"\\"]
    pubsub = client.pubsub()
    try:
        for pattern in patterns:
            pubsub.psubscribe(pattern)
            pubsub.get_message(timeout=1.0)  # the subscribe confirmation
            expected = int(glob_match(pattern, b""))
            assert client.publish(b"", b"x") == expected, pattern
            pubsub.punsubscribe(pattern)
            pubsub.get_message(timeout=1.0)
    finally:
        pubsub.close()
        client.close()


LIBRARY_NAMES = ["abc", "ABC", "aBc", "Zz", "zZ", "a_Z", "_", "__", "x9", "Xy", "q", "Q",
                 "azAZ09", "m_m", "Test_Lib", "hello", "HELLO", "a", "A", "z", "Z", "n0", "_z"]
NOCASE_PATTERNS = [
    b"*", b"a*", b"A*", b"*Z", b"?", b"[Z-a]", b"[A-z]*", b"[_-a]*", b"[\\A]*", b"[\\a]*",
    b"\\A*", b"[^a-z]*", b"[a-Z]*", b"[\xc8-a]*", b"[a-\xc8]*", b"[\x80-\x7f]*", b"*_*",
    b"[Q]", b"[^Q]", b"hel*", b"HEL*", b"test_lib", b"[x-Y]?", b"*[0-9]", b"[z-_]*",
]


def test_nocase_matches_redis_function_list(oracle) -> None:
    """FUNCTION LIST LIBRARYNAME is the one command matching user input with nocase=1."""
    client = redis.Redis(port=oracle.port, protocol=2)
    client.response_callbacks.clear()
    try:
        client.execute_command("FUNCTION", "FLUSH")
        for index, name in enumerate(LIBRARY_NAMES):
            code = f"#!lua name={name}\nredis.register_function('f{index}', function() end)"
            client.execute_command("FUNCTION", "LOAD", code)
        for pattern in NOCASE_PATTERNS:
            reply = client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", pattern)
            got = {entry[1].decode() for entry in reply}
            ours = {name for name in LIBRARY_NAMES if glob_match(pattern, name.encode(), True)}
            assert got == ours, pattern
    finally:
        client.execute_command("FUNCTION", "FLUSH")
        client.close()
