"""Redis glob-style pattern matching (``stringmatchlen`` in Redis 7.0 ``src/util.c``).

Used by KEYS, SCAN/HSCAN/SSCAN/ZSCAN ``MATCH`` and PSUBSCRIBE, so it must agree with Redis on
every byte string, including the corner cases Redis never documented:

* ``*`` matches any run of bytes, ``?`` any single byte, ``\\x`` the byte ``x``; a trailing lone
  backslash is a literal backslash.
* ``[...]`` is a set: ``[^...]`` negates, ``\\x`` inside is a literal ``x``, ``a-z`` is a range
  whose ends may be given in either order (``[z-a]`` == ``[a-z]``).  A ``]`` right after ``[`` (or
  ``[^``) closes the set, so ``[]`` matches nothing and ``[^]`` any byte.  An unterminated set
  runs to the end of the pattern (``[ab`` matches ``a``); a ``-`` whose right end would be the
  closing ``]`` swallows it (``[a-]`` is the range ``]``..``a``, then the set is unterminated).
* Range ends and bytes compare as C ``char``, which is signed on x86-64: bytes >= 0x80 sort
  *below* ``\\x00``, so ``[\\x00-\\xff]`` is the range -1..0: it matches only ``\\xff``
  and ``\\x00``.
* With ``nocase``, letters compare through glibc's C-locale ``tolower``, which maps the negative
  chars -128..-2 to 128..254 (but -1, i.e. 0xff, to itself).  That only matters for ranges
  whose ends are high bytes, but it is reproduced.  Escaped bytes inside a set stay
  case-sensitive even with ``nocase``; escaped bytes outside a set do not.
* The empty string matches only the empty pattern: Redis's loop never runs, so even ``*`` does
  not match ``b""``.  KEYS and the SCAN family never reach ``stringmatchlen`` for the exact
  pattern ``*`` (they treat it as "all keys", empty key included) -- callers must keep that
  shortcut themselves.  PSUBSCRIBE has no such shortcut: ``*`` does not match the channel ``""``.

Redis matches with backtracking recursion (plus an early exit).  Here a pattern is first turned
into tokens (each non-``*`` token is the set of bytes it accepts -- bracket parsing never
depends on the subject string, so this is exact), then split at the stars into fixed-length
segments.  Matching places the first segment at the start, the last at the end, and every
middle segment at its leftmost possible position, which for globs is equivalent to full
backtracking and runs in near-linear time however many stars the pattern has.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

Matcher = Callable[[bytes], bool]

_STAR = None  # the token for a run of '*'
_ALL_BYTES = frozenset(range(256))
_BACKSLASH, _STAR_CHAR, _QUESTION, _LBRACKET = 0x5C, 0x2A, 0x3F, 0x5B
_RBRACKET, _CARET, _DASH = 0x5D, 0x5E, 0x2D
# Patterns up to this size are cached by glob_match; larger ones are compiled per call so a
# huge pattern never stays pinned in memory.
_CACHEABLE_PATTERN_LEN = 4096


def glob_match(pattern: bytes, string: bytes, nocase: bool = False) -> bool:
    """True if ``string`` matches the Redis glob ``pattern`` (``stringmatchlen`` semantics)."""
    if len(pattern) <= _CACHEABLE_PATTERN_LEN:
        return _compile_cached(pattern, nocase)(string)
    return compile_glob(pattern, nocase)(string)


def compile_glob(pattern: bytes, nocase: bool = False) -> Matcher:
    """Return a function equivalent to ``glob_match(pattern, s, nocase)`` for any ``s``.

    KEYS and SCAN match one pattern against many keys, so the parsing and the choice of a fast
    path (plain equality, ``startswith``, ``endswith``, ``in``) happen once here.
    """
    tokens = _tokenize(pattern, nocase)
    if not tokens:
        return _is_empty
    if any(token is not _STAR and not token for token in tokens):
        return _never  # a set that accepts no byte can never be passed
    segments = _split_at_stars(tokens)
    if len(segments) == 1:
        return _Segment(segments[0]).full_matcher()
    head, *middle, tail = (_Segment(tokens) for tokens in segments)
    return _star_matcher(head, middle, tail)


@functools.lru_cache(maxsize=512)
def _compile_cached(pattern: bytes, nocase: bool) -> Matcher:
    return compile_glob(pattern, nocase)


def _is_empty(string: bytes) -> bool:
    return not string


def _never(string: bytes) -> bool:
    return False


# Tokenizing ----------------------------------------------------------------------------------


def _tokenize(pattern: bytes, nocase: bool) -> list[frozenset[int] | None]:
    """Split ``pattern`` into ``_STAR`` and sets of accepted bytes, exactly as Redis walks it."""
    tokens: list[frozenset[int] | None] = []
    size = len(pattern)
    pos = 0
    while pos < size:
        char = pattern[pos]
        if char == _STAR_CHAR:
            while pos + 1 < size and pattern[pos + 1] == _STAR_CHAR:
                pos += 1
            tokens.append(_STAR)
        elif char == _QUESTION:
            tokens.append(_ALL_BYTES)
        elif char == _LBRACKET:
            token, pos = _parse_set(pattern, pos + 1, nocase)
            tokens.append(token)
        else:
            if char == _BACKSLASH and size - pos >= 2:
                pos += 1
            tokens.append(_literal(pattern[pos], nocase))
        pos += 1
    return tokens


def _parse_set(pattern: bytes, pos: int, nocase: bool) -> tuple[frozenset[int], int]:
    """Parse a ``[...]`` body starting at ``pos``; return the set and the position of its end.

    The returned position is the closing ``]`` or, for an unterminated set, the last byte of
    the pattern; like Redis, the caller then steps one past it.
    """
    size = len(pattern)
    negate = pos < size and pattern[pos] == _CARET
    if negate:
        pos += 1
    accepted: set[int] = set()
    while True:
        remaining = size - pos
        if remaining >= 2 and pattern[pos] == _BACKSLASH:
            pos += 1
            accepted.add(pattern[pos])  # exact byte, even with nocase
        elif remaining >= 1 and pattern[pos] == _RBRACKET:
            break
        elif remaining == 0:
            pos -= 1
            break
        elif remaining >= 3 and pattern[pos + 1] == _DASH:
            accepted.update(_range(pattern[pos], pattern[pos + 2], nocase))
            pos += 2
        else:
            accepted.update(_literal(pattern[pos], nocase))
        pos += 1
    if negate:
        return _ALL_BYTES - accepted, pos
    return frozenset(accepted), pos


def _signed(byte: int) -> int:
    """The value of ``byte`` as a C ``char`` on x86-64 (signed)."""
    return byte - 256 if byte >= 128 else byte


def _c_tolower(value: int) -> int:
    """glibc ``tolower`` in the C locale, for a signed char value (-128..127)."""
    if 65 <= value <= 90:
        return value + 32
    if -128 <= value <= -2:
        return value + 256
    return value


def _fold(byte: int) -> int:
    return _c_tolower(_signed(byte))


def _fold_groups() -> dict[int, frozenset[int]]:
    """For each folded value, the bytes that fold to it (``a`` -> {a, A}, most -> themselves)."""
    groups: dict[int, set[int]] = {}
    for byte in range(256):
        groups.setdefault(_fold(byte), set()).add(byte)
    return {folded: frozenset(members) for folded, members in groups.items()}


_FOLD_GROUPS = _fold_groups()


def _literal(byte: int, nocase: bool) -> frozenset[int]:
    """Bytes equal to ``byte`` (under ``tolower`` when ``nocase``)."""
    if nocase:
        return _FOLD_GROUPS[_fold(byte)]
    return frozenset((byte,))


def _range(first: int, last: int, nocase: bool) -> frozenset[int]:
    """Bytes inside the set range ``first-last``: swap in signed order, then fold if nocase."""
    low, high = sorted((_signed(first), _signed(last)))
    if nocase:
        low, high = _c_tolower(low), _c_tolower(high)
        return frozenset(b for b in range(256) if low <= _fold(b) <= high)
    return frozenset(b for b in range(256) if low <= _signed(b) <= high)


def _split_at_stars(tokens: list[frozenset[int] | None]) -> list[list[frozenset[int]]]:
    """Fixed-length runs between stars; the first/last are empty if the pattern starts/ends
    with a star.  Consecutive stars were merged, so every middle run is non-empty."""
    segments: list[list[frozenset[int]]] = [[]]
    for token in tokens:
        if token is _STAR:
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


# Matching ------------------------------------------------------------------------------------


class _Segment:
    """A fixed-length run of tokens: plain bytes when every token is a single byte, else a
    compiled regex of byte classes (no quantifiers, so ``re`` cannot backtrack badly)."""

    __slots__ = ("length", "literal", "regex")

    def __init__(self, tokens: Sequence[frozenset[int]]) -> None:
        self.length = len(tokens)
        self.literal: bytes | None = None
        self.regex: re.Pattern[bytes] | None = None
        if all(len(token) == 1 for token in tokens):
            self.literal = bytes(next(iter(token)) for token in tokens)
        else:
            self.regex = re.compile(b"".join(_byte_class(token) for token in tokens), re.DOTALL)

    def at(self, string: bytes, pos: int) -> bool:
        if self.literal is not None:
            return string.startswith(self.literal, pos)
        return self.regex.match(string, pos) is not None

    def find(self, string: bytes, start: int, end: int) -> int:
        if self.literal is not None:
            return string.find(self.literal, start, end)
        found = self.regex.search(string, start, end)
        return -1 if found is None else found.start()

    def full_matcher(self) -> Matcher:
        if self.literal is not None:
            literal = self.literal
            return lambda string: string == literal
        regex = self.regex
        return lambda string: regex.fullmatch(string) is not None


def _byte_class(token: frozenset[int]) -> bytes:
    if len(token) == 256:
        return b"."
    if len(token) == 1:
        return b"\\x%02x" % next(iter(token))
    runs: list[bytes] = []
    for low, high in _runs(sorted(token)):
        runs.append(b"\\x%02x" % low if low == high else b"\\x%02x-\\x%02x" % (low, high))
    return b"[" + b"".join(runs) + b"]"


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _star_matcher(head: _Segment, middle: list[_Segment], tail: _Segment) -> Matcher:
    """Matcher for a pattern with at least one star, with fast paths for the common shapes."""
    fast = _literal_star_matcher(head, middle, tail)
    if fast is not None:
        return fast
    min_len = head.length + tail.length + sum(segment.length for segment in middle)

    def match(string: bytes) -> bool:
        size = len(string)
        if size == 0 or size < min_len:
            return False
        if head.length and not head.at(string, 0):
            return False
        if tail.length and not tail.at(string, size - tail.length):
            return False
        pos, end = head.length, size - tail.length
        for segment in middle:
            found = segment.find(string, pos, end)
            if found < 0:
                return False
            pos = found + segment.length
        return True

    return match


def _literal_star_matcher(head: _Segment, middle: list[_Segment], tail: _Segment
                          ) -> Matcher | None:
    """``*``, ``abc*``, ``*abc`` and ``*abc*`` as plain bytes operations, else None."""
    if len(middle) > 1 or head.regex is not None or tail.regex is not None:
        return None
    if middle and (middle[0].regex is not None or head.length or tail.length):
        return None
    if middle:
        needle = middle[0].literal
        return lambda string: needle in string
    prefix, suffix = head.literal, tail.literal
    if not prefix and not suffix:
        return bool  # '*' matches every non-empty string
    if not suffix:
        return lambda string: string.startswith(prefix)
    if not prefix:
        return lambda string: string.endswith(suffix)
    min_len = len(prefix) + len(suffix)
    return lambda string: (len(string) >= min_len and string.startswith(prefix)
                           and string.endswith(suffix))
