"""DUMP/RESTORE payloads in Redis's serialization format (``createDumpPayload`` and
``verifyDumpPayload`` of Redis 7.0's cluster.c).

A payload is the value as one RDB entry without its key::

    RDB type byte | value as RDB writes it | RDB version (2 bytes LE) | CRC64 (8 bytes LE)

where the CRC64 (Redis's Jones polynomial) covers everything before it.  :func:`dump_payload`
writes version 10 exactly as Redis 7.0.15 does (so a payload from shardis restores into Redis
and the other way round); :func:`load_payload` accepts payloads of RDB versions up to 10.

The payload comes from a client, so :func:`load_payload` must survive anything: every way a
payload can be wrong ends in :class:`DumpError` with Redis's error text, never another
exception, and the RDB reader checks each declared length against the bytes that are actually
there before allocating for it (the payload itself is bounded by ``proto-max-bulk-len``).
Differences from Redis, all on payloads Redis would also consider corrupt or cannot produce:

* Redis 7.0 by default (``sanitize-dump-payload no``) checks only the headers of ziplists,
  listpacks and intsets and may accept a payload whose insides are corrupt (and crash later);
  shardis checks them completely and answers ``ERR Bad data format``.
* Streams are checked as Redis's deep sanitization checks them, and more (IDs in order,
  length and last ID true to the entries, a PEL entry owned by exactly one consumer).
* Bytes left over between the value and the footer are ignored, as Redis ignores them.
"""

from __future__ import annotations

import io
import struct

from shardis.persist import rdb
from shardis.persist.packs import BlobError

#: Redis's RESTORE errors (cluster.c ``restoreCommand``).
BAD_CHECKSUM = "ERR DUMP payload version or checksum are wrong"
BAD_FORMAT = "ERR Bad data format"

_FOOTER = 10  # 2 bytes of RDB version, 8 of CRC64
#: The value types Redis's ``rdbIsObjectType`` accepts (0-7, 9-19; 8 was never used).
_OBJECT_TYPES = frozenset(range(0, 8)) | frozenset(range(9, 20))


class DumpError(Exception):
    """A payload that cannot be dumped or restored; ``message`` is the reply error text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def dump_payload(value: object) -> bytes:
    """The DUMP payload of a stored value (any type shardis stores)."""
    kind, body = rdb.RdbWriter(io.BytesIO()).value(value)
    data = bytes([kind]) + body + struct.pack("<H", rdb.RDB_VERSION)
    return data + struct.pack("<Q", rdb.crc64(data))


def verify_payload(payload: bytes) -> bool:
    """Redis's ``verifyDumpPayload``: long enough, RDB version <= 10, CRC64 right."""
    if len(payload) < _FOOTER:
        return False
    version = struct.unpack_from("<H", payload, len(payload) - _FOOTER)[0]
    if version > rdb.RDB_VERSION:
        return False
    crc = struct.unpack_from("<Q", payload, len(payload) - 8)[0]
    return rdb.crc64(payload[:-8]) == crc


def load_payload(payload: bytes) -> object:
    """The value a DUMP payload holds; :class:`DumpError` with Redis's text if it is bad."""
    payload = bytes(payload)
    if not verify_payload(payload):
        raise DumpError(BAD_CHECKSUM)
    # Redis reads the value from the whole payload, footer included (it stops where the value
    # ends): a value cut short may run into the footer bytes, and is then caught as corrupt.
    reader = rdb.RdbReader(io.BytesIO(payload))
    try:
        kind = reader.byte()
        if kind not in _OBJECT_TYPES:
            raise DumpError(BAD_FORMAT)
        value = reader.value(kind)
    except DumpError:
        raise
    except (rdb.RdbError, BlobError, ValueError, OverflowError, MemoryError, IndexError,
            KeyError, struct.error):
        raise DumpError(BAD_FORMAT) from None
    if rdb.is_empty_collection(value):
        raise DumpError(BAD_FORMAT)  # Redis 7.0: an empty collection is a load error
    return value
