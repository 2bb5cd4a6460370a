"""The value types a keyspace holds, and what generic commands need to know about each.

A family module (lists, hashes, sets...) registers its Python class here with
:func:`register_type`; TYPE, SCAN TYPE, OBJECT ENCODING, MEMORY USAGE and RENAME/COPY (which
move values as ``dump``/``load`` plain data, a deep copy by construction) then work for it
without knowing the family.
Strings (``bytes``/``bytearray``) are registered by ``shardis.commands.strings``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass


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
