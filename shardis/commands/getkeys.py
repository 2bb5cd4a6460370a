"""Which arguments of a command line are keys, and how the command uses each one.

This is Redis 7.0's ``getKeysFromCommandWithSpecs`` (src/db.c) over Redis's own key specs
(``shardis.commands.keyspecs``, generated from its JSON command files): COMMAND GETKEYS and
GETKEYSANDFLAGS answer from it, and the ACL key checks take each key's flags from it, so that
all three agree with Redis, quirks included (a keyword search that never looks at the last
argument, ``atoi`` where the key specs use a strict parse, a getkeys function that marks its
keys with no flags).

The router routes with the table's own key finders (``Command.key_indexes``), which may see
more keys than Redis's getkeys (the STORE destination that GEORADIUS really writes): routing
must find every key the command touches, while these functions must find what Redis reports.
All functions here are pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

from shardis.commands.keyspecs import GETKEYS_FUNCTIONS, KEY_SPECS

# Key-spec flags, as Redis's CMD_KEY_* bits; FLAG_NAMES is addReplyFlagsForKeyArgs's order.
RO, RW, OW, RM = 1 << 0, 1 << 1, 1 << 2, 1 << 3
ACCESS, UPDATE, INSERT, DELETE = 1 << 4, 1 << 5, 1 << 6, 1 << 7
NOT_KEY, INCOMPLETE, VARIABLE_FLAGS = 1 << 8, 1 << 9, 1 << 10

FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (RO, "RO"), (RW, "RW"), (OW, "OW"), (RM, "RM"), (ACCESS, "access"), (UPDATE, "update"),
    (INSERT, "insert"), (DELETE, "delete"), (NOT_KEY, "not_key"), (INCOMPLETE, "incomplete"),
    (VARIABLE_FLAGS, "variable_flags"),
)
_FLAG_BITS = {name: bit for bit, name in FLAG_NAMES}


def flag_bits(text: str) -> int:
    """``"RW access update"`` -> the CMD_KEY_* bits."""
    bits = 0
    for name in text.split():
        bits |= _FLAG_BITS[name]
    return bits


def flag_names(bits: int) -> list[str]:
    """The names of ``bits`` in the order COMMAND INFO and GETKEYSANDFLAGS write them."""
    return [name for bit, name in FLAG_NAMES if bits & bit]


@dataclass(frozen=True)
class KeySpec:
    """One of Redis's key specs (see ``shardis.commands.keyspecs`` for the tuple forms)."""

    flags: int
    begin: tuple
    find: tuple
    notes: str | None = None


class KeyRef(NamedTuple):
    """A key argument: its index in the command line and the key-spec flags Redis gives it."""

    pos: int
    flags: int


@cache
def key_specs(fullname: str) -> tuple[KeySpec, ...]:
    """Redis's key specs of a command by full name (``set``, ``object|encoding``); () if none."""
    return tuple(KeySpec(flag_bits(flags), begin, find, notes)
                 for flags, begin, find, notes in KEY_SPECS.get(fullname, ()))


def _all_flags(specs: tuple[KeySpec, ...], inverted: bool) -> int:
    """Redis's ``getAllKeySpecsFlags``: the flags some spec has (inverted: some spec lacks)."""
    bits = 0
    for spec in specs:
        bits |= ~spec.flags if inverted else spec.flags
    return bits


@cache
def has_keys(fullname: str) -> bool:
    """Redis's ``doesCommandHaveKeys``: a getkeys function, or a spec that is not NOT_KEY."""
    return fullname in GETKEYS_FUNCTIONS or bool(_all_flags(key_specs(fullname), True) & NOT_KEY)


# C string helpers: Redis compares arguments with strcasecmp and parses them with atoi, both of
# which stop at the first NUL byte.
def _cstr(arg: bytes) -> bytes:
    return arg.partition(b"\0")[0]


def _is(arg: bytes, word: bytes) -> bool:
    """``strcasecmp(arg, word) == 0``."""
    return _cstr(arg).lower() == word


def _int32(value: int) -> int:
    """C's conversion to a 32-bit ``int`` (wrapping)."""
    return (value + 2**31) % 2**32 - 2**31


_ATOI = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]*)")


def atoi(arg: bytes) -> int:
    """C's ``atoi`` as glibc has it: ``(int) strtol(arg, NULL, 10)``, saturating at the long
    range before the cast."""
    match = _ATOI.match(arg)
    digits = match.group(1) if match else b""
    try:
        value = int(digits)
    except ValueError:
        return 0
    return _int32(max(-(2**63), min(2**63 - 1, value)))


_STRING2LL = re.compile(rb"(?:0|-?[1-9][0-9]*)\Z")


def string2ll(arg: bytes) -> int | None:
    """Redis's strict ``string2ll``: the value, or None when it does not parse."""
    if not _STRING2LL.match(arg):
        return None
    value = int(arg)
    return value if -(2**63) <= value < 2**63 else None


# getKeysUsingKeySpecs -----------------------------------------------------------------------
class _InvalidSpec(Exception):
    """A spec that cannot find its keys in this command line (unknown, incomplete, bad numkeys
    or out of range): Redis then falls back to the command's getkeys function."""


def _begin(spec: KeySpec, args: list[bytes]) -> int:
    """The index the spec's keys start from; 0 when its keyword is absent."""
    kind = spec.begin[0]
    if kind == "index":
        return spec.begin[1]
    if kind != "keyword":
        raise _InvalidSpec
    keyword, startfrom = spec.begin[1].lower().encode(), spec.begin[2]
    argc = len(args)
    start = startfrom if startfrom > 0 else argc + startfrom
    end = argc - 1 if startfrom > 0 else 1  # as Redis: the end index itself is never looked at
    i = start
    while i != end:
        if i >= argc or i < 1:
            break
        if _is(args[i], keyword):
            return i + 1
        i = i + 1 if start <= end else i - 1
    return 0


def _span(spec: KeySpec, args: list[bytes], first: int) -> tuple[int, int, int]:
    """(first, last, step) of the spec's keys, from where its search began."""
    argc = len(args)
    kind = spec.find[0]
    if kind == "range":
        _, lastkey, step, limit = spec.find
        if lastkey >= 0:
            return first, first + lastkey, step
        if not limit:
            return first, argc + lastkey, step
        return first, first + ((argc - first) // limit + lastkey), step
    if kind == "keynum":
        _, keynumidx, firstkey, step = spec.find
        if keynumidx >= argc:
            raise _InvalidSpec
        numkeys = string2ll(args[first + keynumidx]) if first + keynumidx < argc else None
        if numkeys is None or numkeys < 0:
            raise _InvalidSpec
        first += firstkey
        return first, _int32(first + _int32(numkeys) - 1), step
    raise _InvalidSpec


def keys_using_specs(specs: tuple[KeySpec, ...], args: list[bytes]) -> list[KeyRef] | None:
    """Redis's ``getKeysUsingKeySpecs`` (NOT_KEY specs skipped): the keys, or None when a spec
    is invalid for this command line."""
    keys: list[KeyRef] = []
    argc = len(args)
    try:
        for spec in specs:
            if spec.flags & NOT_KEY:
                continue
            first = _begin(spec, args)
            if not first:
                continue
            first, last, step = _span(spec, args, first)
            if last >= argc or last < first or first >= argc:
                raise _InvalidSpec
            keys += [KeyRef(i, spec.flags) for i in range(first, last + 1, step)]
            if spec.flags & INCOMPLETE:
                raise _InvalidSpec
    except _InvalidSpec:
        return None
    return keys


# The getkeys functions (src/db.c) -----------------------------------------------------------
def _generic(store: int, count_at: int, first: int, step: int,
             args: list[bytes]) -> list[KeyRef]:
    """``genericGetKeys``: ``numkeys`` keys read with atoi, then the destination; no flags.
    (A line too short for its numkeys has no keys: arity checks normally come first.)"""
    if count_at >= len(args):
        return []
    num = atoi(args[count_at])
    if num < 1 or num > int((len(args) - first) / step):
        return []
    keys = [KeyRef(first + i * step, 0) for i in range(num)]
    return keys + [KeyRef(store, 0)] if store else keys


def _numkeys_at(store: int, count_at: int, first: int) -> Callable[[list[bytes]], list[KeyRef]]:
    return lambda args: _generic(store, count_at, first, 1, args)


def sort_ro_keys(args: list[bytes]) -> list[KeyRef]:
    """``sortROGetKeys``: the sorted key only."""
    return [KeyRef(1, RO | ACCESS)]


_SORT_SKIP = ((b"limit", 2), (b"get", 1), (b"by", 1))


def sort_keys(args: list[bytes]) -> list[KeyRef]:
    """``sortGetKeys``: the sorted key and the last STORE destination, skipping the arguments
    of LIMIT, GET and BY (a STORE with nothing after it is ignored)."""
    keys = [KeyRef(1, RO | ACCESS)]
    store = None
    i = 2
    while i < len(args):
        for name, skip in _SORT_SKIP:
            if _is(args[i], name):
                i += skip
                break
            if _is(args[i], b"store") and i + 1 < len(args):
                store = KeyRef(i + 1, OW | UPDATE)
                break
        i += 1
    return keys + [store] if store else keys


_MIGRATE_SKIP = ((b"copy", 0), (b"replace", 0), (b"auth", 1), (b"auth2", 2))


def migrate_keys(args: list[bytes]) -> list[KeyRef]:
    """``migrateGetKeys``: the key argument, or with KEYS (and an empty key argument) every
    argument after it."""
    first, num = 3, 1
    i = 6
    while len(args) > 6 and i < len(args):
        if _is(args[i], b"keys"):
            if args[3]:
                num = 0  # a syntax error, which MIGRATE itself reports
            else:
                first, num = i + 1, len(args) - i - 1
            break
        for name, skip in _MIGRATE_SKIP:
            if _is(args[i], name):
                i += skip
                break
        i += 1
    return [KeyRef(first + i, RW | ACCESS | DELETE) for i in range(num)]


def georadius_keys(args: list[bytes]) -> list[KeyRef]:
    """``georadiusGetKeys``: the source and the last STORE/STOREDIST destination; no flags."""
    stored = -1
    i = 5
    while i < len(args):
        if (_is(args[i], b"store") or _is(args[i], b"storedist")) and i + 1 < len(args):
            stored = i + 1
            i += 1
        i += 1
    return [KeyRef(1, 0)] + ([KeyRef(stored, 0)] if stored != -1 else [])


_XREAD_SKIP = {b"block": 1, b"count": 1, b"group": 2, b"noack": 0}


def xread_keys(args: list[bytes]) -> list[KeyRef]:
    """``xreadGetKeys``: the first half of what follows STREAMS, after the options; no flags."""
    streams = -1
    i = 1
    while i < len(args):
        word = _cstr(args[i]).lower()
        if word == b"streams":
            streams = i
            break
        if word not in _XREAD_SKIP:
            break
        i += 1 + _XREAD_SKIP[word]
    num = len(args) - streams - 1 if streams != -1 else 0
    if streams == -1 or num == 0 or num % 2:
        return []
    return [KeyRef(i, 0) for i in range(streams + 1, len(args) - num // 2)]


def set_keys(args: list[bytes]) -> list[KeyRef]:
    """``setGetKeys``: with a GET option the key is read too."""
    if any(_is(arg, b"get") for arg in args[3:]):
        return [KeyRef(1, RW | ACCESS | UPDATE)]
    return [KeyRef(1, OW | UPDATE)]


def bitfield_keys(args: list[bytes]) -> list[KeyRef]:
    """``bitfieldGetKeys``: read-only when every operation is a well-formed GET (or OVERFLOW)."""
    readonly = True
    i = 2
    while i < len(args):
        rest = len(args) - i - 1
        if _is(args[i], b"get") and rest >= 2:
            i += 2
        elif (_is(args[i], b"set") or _is(args[i], b"incrby")) and rest >= 3:
            readonly = False
            break
        elif _is(args[i], b"overflow") and rest >= 1:
            i += 1
        else:
            readonly = False  # a syntax error: Redis assumes the worst
            break
        i += 1
    return [KeyRef(1, RO | ACCESS if readonly else RW | ACCESS | UPDATE)]


#: Redis's getkeys functions by their C name (``GETKEYS_FUNCTIONS`` names them per command).
FUNCTIONS: dict[str, Callable[[list[bytes]], list[KeyRef]]] = {
    "sintercardGetKeys": _numkeys_at(0, 1, 2),
    "zunionInterDiffStoreGetKeys": _numkeys_at(1, 2, 3),
    "zunionInterDiffGetKeys": _numkeys_at(0, 1, 2),
    "evalGetKeys": _numkeys_at(0, 2, 3),
    "functionGetKeys": _numkeys_at(0, 2, 3),
    "lmpopGetKeys": _numkeys_at(0, 1, 2),
    "blmpopGetKeys": _numkeys_at(0, 2, 3),
    "zmpopGetKeys": _numkeys_at(0, 1, 2),
    "bzmpopGetKeys": _numkeys_at(0, 2, 3),
    "sortROGetKeys": sort_ro_keys,
    "sortGetKeys": sort_keys,
    "migrateGetKeys": migrate_keys,
    "georadiusGetKeys": georadius_keys,
    "xreadGetKeys": xread_keys,
    "setGetKeys": set_keys,
    "bitfieldGetKeys": bitfield_keys,
}


@cache
def _specs_reliable(fullname: str) -> bool:
    """Some spec is a real key (not NOT_KEY) and none has VARIABLE_FLAGS."""
    specs = key_specs(fullname)
    return bool(_all_flags(specs, True) & NOT_KEY) and not _all_flags(specs, False) & VARIABLE_FLAGS


def get_keys(fullname: str, args: list[bytes]) -> list[KeyRef]:
    """Redis's ``getKeysFromCommandWithSpecs``: the key specs when they are reliable (some key
    is not NOT_KEY, no VARIABLE_FLAGS) and valid for this line, else the getkeys function.

    ``args`` is the whole command line (the name first), already arity-checked.
    """
    specs = key_specs(fullname)
    if _specs_reliable(fullname):
        keys = keys_using_specs(specs, args)
        if keys is not None:
            return keys
    function = GETKEYS_FUNCTIONS.get(fullname)
    return FUNCTIONS[function](args) if function else []
