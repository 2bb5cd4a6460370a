"""The value types a keyspace holds, and what generic commands need to know about each.

A family module (lists, hashes, sets...) registers its Python class here with
:func:`register_type`; TYPE, SCAN TYPE, OBJECT ENCODING, MEMORY USAGE and RENAME/COPY (which
move values as ``dump``/``load`` plain data, a deep copy by construction) then work for it
without knowing the family.
Strings (``bytes``/``bytearray``) are registered by ``shardis.commands.strings``.
"""

from __future__ import annotations

import marshal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ValueType:
    #: what TYPE answers (``b"list"``).
    name: bytes
    #: OBJECT ENCODING: Redis 7.0's encoding name for this value (``b"quicklist"``).
    encoding: Callable[[object], bytes]
    #: a value -> plain data that ``marshal`` can carry to another worker, and back.
    dump: Callable[[object], object]
    load: Callable[[object], object]
    #: MEMORY USAGE: an honest estimate, in bytes, of what the value costs this process;
    #: ``memory(value, samples)`` extrapolates from ``samples`` elements (0: all of them),
    #: as MEMORY USAGE ... SAMPLES does, so that the default (5) is O(1).
    memory: Callable[[object, int], int] = lambda value, samples=5: sys.getsizeof(value)


#: Python class -> its ValueType.
TYPES: dict[type, ValueType] = {}
#: TYPE name -> ValueType, for ``__restore``.
BY_NAME: dict[bytes, ValueType] = {}


def register_type(python_type: type, value_type: ValueType) -> None:
    TYPES[python_type] = value_type
    BY_NAME[value_type.name] = value_type


def value_type(value: object) -> ValueType:
    """The registered type of a stored value (every stored value has one)."""
    return TYPES[type(value)]


# Packed values ---------------------------------------------------------------------------------
# A small collection at rest is one ``bytes`` object instead of a container of objects: a
# 10-field hash is ~270 bytes packed against ~1,230 as a dict of 20 bytes objects.  Commands
# never see the packed form: ``Keyspace.get``/``peek`` unpack a value when it is read (and keep
# the full value for the rest of the batch), and the shard packs again, at the end of each
# batch, every value it unpacked or that a command stored (``Keyspace.repack``).  The format is
# ``marshal`` of a tuple of the elements: packing and unpacking are one C call each
# (~2 us for 10 fields), where a hand-written listpack would be a Python loop per element.
# Only what Redis keeps in a compact encoding (a listpack hash or zset, an intset; lists up to
# the bounds below, Redis 7.0 reports every list as a quicklist) is packed, so HSCAN/SSCAN/
# ZSCAN, which answer those whole, never page through a value that is packed between calls.

#: A value with more elements stays full: unpacking costs O(elements) per batch that reads it.
PACK_MAX_ENTRIES = 128
#: Nor is a value whose packed form would be longer than this (a quicklist node's 8 KB).
PACK_MAX_BYTES = 8192

#: packed class -> the function that rebuilds the full value from it.
UNPACKERS: dict[type, Callable[[bytes], object]] = {}
#: full class -> the function that packs a value, or answers None when it must stay full.
PACKERS: dict[type, Callable[[Any], bytes | None]] = {}


def register_packing(full_type: type, packed_type: type, pack: Callable[[Any], bytes | None],
                     unpack: Callable[[bytes], object]) -> None:
    """Declare ``packed_type`` (a ``bytes`` subclass) the at-rest form of ``full_type``.  It
    answers TYPE as its full form does; MEMORY USAGE of it is its size."""
    PACKERS[full_type] = pack
    UNPACKERS[packed_type] = unpack
    full = TYPES[full_type]
    TYPES[packed_type] = replace(
        full, encoding=lambda value: full.encoding(unpack(value)),
        dump=lambda value: full.dump(unpack(value)),
        memory=lambda value, samples=5: sys.getsizeof(value))


def register_listpack_packing(full_type: type, packed_type: type) -> None:
    """Packing for a mapping that keeps Redis's ``listpack`` flag (a hash: field -> value, a
    zset: member -> score): its keys and values as two columns, while it is a listpack."""

    def pack(value: Any) -> bytes | None:
        if not value.listpack or len(value) > PACK_MAX_ENTRIES:
            return None
        return pack_elements(packed_type, (tuple(value), tuple(value.values())))

    def unpack(blob: bytes) -> object:
        return full_type(zip(*marshal.loads(blob)))

    register_packing(full_type, packed_type, pack, unpack)


def pack_elements(packed_type: type, elements: tuple) -> bytes | None:
    """``elements`` (a tuple of bytes, floats and such tuples) as one ``packed_type`` object,
    or None if too long.  marshal's version 2 is the fastest with binary floats (3 and 4
    add back-references, which cost a hash table per call and save nothing here)."""
    blob = marshal.dumps(elements, 2)
    return packed_type(blob) if len(blob) <= PACK_MAX_BYTES else None


def packed_if_fits(value: object) -> object:
    """The packed form of a full value where it has one and fits it; else the value."""
    pack = PACKERS.get(type(value))
    if pack is not None:
        packed = pack(value)
        if packed is not None:
            return packed
    return value


def unpacked(value: object) -> object:
    """The full form of a stored value (for whole-keyspace readers: RDB, AOF rewrite)."""
    unpack = UNPACKERS.get(type(value))
    return value if unpack is None else unpack(value)  # type: ignore[arg-type]
