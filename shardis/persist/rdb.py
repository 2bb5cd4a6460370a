"""An RDB (Redis's snapshot format) codec: read any file Redis 7.0 writes, write version 10.

DUMP/RESTORE use it for one value (``shardis.persist.dump``); SAVE/BGSAVE and loading at
start-up (``shardis.worker.snapshot``) use :class:`RdbReader` and :class:`RdbWriter`.  The
reader streams: it yields one key at a time, so a large file never has to fit in memory twice.

Choices, and why:

* shardis has database 0 only.  Keys of another database raise :class:`RdbError` unless the
  reader is made with ``skip_other_dbs=True`` (then they are parsed, counted in ``skipped``
  and logged once): silently dropping data is worse than a clear refusal.
* Streams are read (STREAM_LISTPACKS of 5.0-6.2 and STREAM_LISTPACKS_2 of 7.0) and written
  (STREAM_LISTPACKS_2) node by node as Redis keeps them, consumer groups included; Redis
  7.2's STREAM_LISTPACKS_3, module values and module aux data are refused with
  :class:`RdbError` naming the type (modules do not exist in shardis).  A stream's recorded
  first ID is not kept: shardis writes its first entry's ID (0-0 when empty), which is what
  Redis records for every stream it builds itself.  Function libraries
  (``FUNCTION2``) are kept, verbatim, in ``RdbReader.functions``.
* Empty collections (which old or corrupt files may hold) are skipped and counted in
  ``empty_skipped``, as Redis 7.0 skips them; an empty stream is a key, as in Redis.
* Expiry times are yielded as read; dropping keys that are already expired is the loader's
  decision (Redis drops them on a master and keeps them on a replica).
* Anything malformed raises :class:`RdbError` with the file offset; declared lengths are
  checked against what the file holds before anything is allocated for them.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import BinaryIO

import crcmod
import lzf

from shardis.commands.hashes import HASH_MAX_LISTPACK_ENTRIES, HASH_MAX_LISTPACK_VALUE, HashValue
from shardis.commands.sets import SetValue, built_set
from shardis.commands.streams import (
    MIN_ID,
    StreamConsumer,
    StreamGroup,
    StreamID,
    StreamValue,
    _Node,
    estimate_entries_read,
)
from shardis.commands.zsets import ZSET_MAX_LISTPACK_ENTRIES, ZSetValue
from shardis.persist import packs
from shardis.persist.packs import BlobError, as_int

log = logging.getLogger(__name__)

#: Redis's CRC-64/Jones (reflected, init 0, no final xor); ``crc64(data, crc)`` continues.
crc64 = crcmod.mkCrcFun(0x1AD93D23594C935A9, initCrc=0, rev=True, xorOut=0)

RDB_VERSION = 10
REDIS_VERSION = b"7.0.15"

(TYPE_STRING, TYPE_LIST, TYPE_SET, TYPE_ZSET, TYPE_HASH, TYPE_ZSET_2, TYPE_MODULE,
 TYPE_MODULE_2) = range(8)
TYPE_HASH_ZIPMAP, TYPE_LIST_ZIPLIST, TYPE_SET_INTSET, TYPE_ZSET_ZIPLIST = 9, 10, 11, 12
TYPE_HASH_ZIPLIST, TYPE_LIST_QUICKLIST, TYPE_STREAM_LISTPACKS = 13, 14, 15
TYPE_HASH_LISTPACK, TYPE_ZSET_LISTPACK, TYPE_LIST_QUICKLIST_2 = 16, 17, 18
TYPE_STREAM_LISTPACKS_2 = 19
#: Redis 7.2's stream encoding (consumers gain an active-time): not readable by Redis 7.0.
TYPE_STREAM_LISTPACKS_3 = 21
OP_FUNCTION2, OP_FUNCTION, OP_MODULE_AUX, OP_IDLE, OP_FREQ = 245, 246, 247, 248, 249
OP_AUX, OP_RESIZEDB, OP_EXPIRETIME_MS, OP_EXPIRETIME, OP_SELECTDB, OP_EOF = range(250, 256)

_ENC_INT8, _ENC_INT16, _ENC_INT32, _ENC_LZF = range(4)
_QUICKLIST_PLAIN, _QUICKLIST_PACKED = 1, 2
#: Redis's list-max-listpack-size default (-2): a quicklist node holds up to 8 KB.
_QUICKLIST_NODE_BYTES = 8192
#: Redis's estimate of an entry's cost beyond its length, and a listpack's header and end.
_SIZE_ESTIMATE_OVERHEAD, _LISTPACK_OVERHEAD = 8, 7
#: Reads larger than this are done in pieces, so a lying length cannot allocate much.
_CHUNK = 1 << 20
#: The reader's block size.
_BLOCK = 1 << 18
#: The fast path of the reader parses a string key when this many bytes are in the block
#: (enough for an expiry and a key and value of 63 bytes each).
_FAST_ROOM = 9 + 1 + 64 + 64
_INT16, _INT32, _INT64 = (struct.Struct(f) for f in ("<h", "<i", "<q"))
#: an INT8-encoded string's text, by its byte.
_INT_TEXT = [b"%d" % (n - 256 if n >= 128 else n) for n in range(256)]
#: LZF cannot expand more than this (a 3-byte back-reference copies at most 264 bytes).
_LZF_MAX_RATIO = 90

SET_MAX_INTSET_ENTRIES = 512

Entry = tuple[bytes, object, "int | None"]


class RdbError(Exception):
    """The file is not an RDB this reader accepts; ``offset`` is where reading stopped."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at file offset {offset})")
        self.offset = offset


# Reading ------------------------------------------------------------------------------------
def _small_length(buf: bytes, at: int) -> tuple[int, int]:
    """A 6- or 14-bit length at ``buf[at]``: (length, end); (-1, at) for another encoding."""
    first = buf[at]
    if first < 0x40:
        return first, at + 1
    if first < 0x80:
        return ((first & 0x3F) << 8) | buf[at + 1], at + 2
    return -1, at


def _fast_lzf(buf: bytes, at: int) -> tuple[bytes, int] | None:
    """An LZF string's (text, end) at ``buf[at:]`` (after its 0xC3 byte) for the fast path,
    or None when its lengths are not small or the block does not hold it (the general path
    then reads it, and reports any corruption with its offset)."""
    clen, at = _small_length(buf, at)
    if clen <= 0:
        return None
    size, at = _small_length(buf, at)
    end = at + clen
    if size <= 0 or end > len(buf) or size > clen * _LZF_MAX_RATIO + 64:
        return None
    try:
        out = lzf.decompress(buf[at:end], size)
    except ValueError:
        return None
    if out is None or len(out) != size:
        return None
    return out, end


class RdbReader:
    """Iterate ``(key, value, expire_at_ms or None)`` over an RDB stream.

    Values are shardis's in-memory types (bytes, deque, HashValue, SetValue, ZSetValue,
    StreamValue) with the encoding Redis 7.0 would give them once loaded.  ``aux`` holds the
    aux fields, ``functions`` the function libraries; both are complete once iteration ends.
    The file is read ahead in blocks; at the end its position is put back right after the
    RDB if it can seek.
    """

    def __init__(self, fh: BinaryIO, skip_other_dbs: bool = False,
                 databases: int = 0) -> None:
        self.fh = fh
        self.skip_other_dbs = skip_other_dbs
        #: with ``databases`` > 0, keys of every database below it are read (a worker
        #: loading its file: :attr:`db` says which database the entry just yielded is in);
        #: otherwise only database 0's (the offline tools).
        self.databases = databases
        self.version = 0
        self.aux: dict[bytes, bytes] = {}
        self.functions: list[bytes] = []
        self.skipped = 0
        self.empty_skipped = 0
        self._db = 0
        #: The file is read in blocks of _BLOCK bytes: ``_buf`` holds the current one from
        #: file offset ``_base``, ``_off`` is the reading position in it, and the checksum
        #: covers the file up to ``_base + _crc_from`` (the rest is folded in lazily), so a
        #: small item costs one slice, not a file read and a CRC call.
        self._buf = b""
        self._off = 0
        self._base = 0
        self._crc = 0
        self._crc_from = 0
        self._into: dict | None = None
        self._stamps: dict = {}
        self._stamp: object = None

    def into(self, data: dict, stamps: dict, stamp: object) -> None:
        """Bulk loading: iteration then stores the keys without an expiry that its fast path
        parses (small strings and collections: most keys, usually) itself, ``data[key] =
        value`` and ``stamps[key] = stamp``, and yields only the others, and any key already
        in ``data`` (the caller decides what a key met twice means).  Saves the caller a loop
        step per key."""
        self._into, self._stamps, self._stamp = data, stamps, stamp

    @property
    def pos(self) -> int:
        """The file offset of the next byte to read."""
        return self._base + self._off

    @property
    def crc(self) -> int:
        """CRC64 of everything read so far."""
        self._crc = crc64(self._buf[self._crc_from:self._off], self._crc)
        self._crc_from = self._off
        return self._crc

    # Low level: every byte goes through read() (or the fast path of _entries, which moves
    # _off the same way), which keeps the offset and, lazily, the checksum.
    def read(self, n: int) -> bytes:
        off = self._off
        end = off + n
        if n >= 0 and end <= len(self._buf):
            self._off = end
            return self._buf[off:end]
        return self._read_slow(n)

    def _read_slow(self, n: int) -> bytes:
        """``n`` bytes that run past the current block: read on, in pieces of at most _CHUNK
        so that a lying length allocates no more than the file holds."""
        if n < 0:
            raise RdbError(f"negative length {n}", self.pos)
        self._fold()
        parts, have = [self._buf], len(self._buf)
        while have < n:
            part = self.fh.read(max(min(n - have, _CHUNK), _BLOCK))
            if not part:
                break
            parts.append(part)
            have += len(part)
        self._buf = b"".join(parts)
        if have < n:
            raise RdbError(f"file ends inside a {n}-byte item", self.pos + have)
        self._off = n
        return self._buf[:n]

    def _fold(self) -> None:
        """Drop the consumed part of the block (after adding it to the checksum)."""
        self.crc  # noqa: B018 - folds the consumed bytes into the checksum
        self._base += self._off
        self._buf = self._buf[self._off:]
        self._off = self._crc_from = 0

    def _give_back(self) -> None:
        """At the end: put the file position right after the RDB when the file can seek."""
        unread = len(self._buf) - self._off
        if unread and self.fh.seekable():
            self.fh.seek(-unread, os.SEEK_CUR)

    def byte(self) -> int:
        return self.read(1)[0]

    def length(self) -> tuple[int, bool]:
        """A length, or (for a string) an encoding number flagged True."""
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte(), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            return struct.unpack(">I", self.read(4))[0], False
        if first == 0x81:
            return struct.unpack(">Q", self.read(8))[0], False
        raise RdbError(f"unknown length encoding 0x{first:02x}", self.pos - 1)

    def count(self) -> int:
        n, encoded = self.length()
        if encoded:
            raise RdbError("an encoded string where a length belongs", self.pos - 1)
        return n

    def string(self) -> bytes:
        n, encoded = self.length()
        if not encoded:
            return self.read(n)
        if n == _ENC_INT8:
            return b"%d" % struct.unpack("<b", self.read(1))[0]
        if n == _ENC_INT16:
            return b"%d" % struct.unpack("<h", self.read(2))[0]
        if n == _ENC_INT32:
            return b"%d" % struct.unpack("<i", self.read(4))[0]
        if n == _ENC_LZF:
            return self._lzf()
        raise RdbError(f"unknown string encoding {n}", self.pos - 1)

    def _lzf(self) -> bytes:
        start = self.pos
        clen, size = self.count(), self.count()
        if size > clen * _LZF_MAX_RATIO + 64 or (size == 0) != (clen == 0):
            raise RdbError(f"LZF string of {clen} bytes cannot expand to {size}", start)
        data = self.read(clen)
        try:
            out = lzf.decompress(data, size) if size else b""
        except ValueError as exc:
            raise RdbError(f"corrupt LZF data: {exc}", start) from None
        if out is None or len(out) != size:
            raise RdbError("corrupt LZF data: wrong decompressed length", start)
        return out

    # The file -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Entry]:
        try:
            yield from self._entries()
        except RdbError:
            raise
        except (ValueError, OverflowError, MemoryError, struct.error) as exc:
            raise RdbError(f"corrupt file: {exc}", self.pos) from None

    def _entries(self) -> Iterator[Entry]:
        self._header()
        expire: int | None = None
        while True:
            if self._db == 0:
                expire = yield from self._fast_run(expire)
            op = self.byte()
            if op == OP_EOF:
                self._trailer()
                return
            if op == OP_EXPIRETIME_MS:
                expire = struct.unpack("<q", self.read(8))[0]
            elif op == OP_EXPIRETIME:
                expire = struct.unpack("<i", self.read(4))[0] * 1000
            elif op >= OP_FUNCTION2:
                self._opcode(op)
            else:
                if op not in _VALUE_READERS:
                    raise RdbError(f"value type {op} ({_type_name(op)}) is not supported",
                                   self.pos - 1)
                key = self.string()
                value = self.value(op)
                if self._db != 0 and not self.databases:
                    self.skipped += 1
                elif is_empty_collection(value):
                    self.empty_skipped += 1  # as Redis: an empty collection is no key
                else:
                    yield key, value, expire
                expire = None

    def _fast_run(self, expire: int | None) -> Generator[Entry, None, int | None]:
        """The fast path: the run of small keys at the reading position, parsed in place in
        the block with no call per string: plain strings (6-bit key and value lengths, or an
        integer value) and small collections kept as one blob, with or without an expiry in
        ms.  Loading small keys gets several times faster.  Every length is checked against
        the block (_FAST_ROOM bytes are there, or the blob's end is checked); whatever this
        does not take, from its first byte, is left to the general path.  ``expire`` is an
        expiry the general path read for the next key; returns it if no key was taken."""
        into, stamps, stamp = self._into, self._stamps, self._stamp
        buf, off = self._buf, self._off
        limit = len(buf) - _FAST_ROOM
        while off <= limit:
            start, when = off, expire
            op = buf[off]
            if op == OP_EXPIRETIME_MS and when is None:
                when = _INT64.unpack_from(buf, off + 1)[0]
                off += 9
                op = buf[off]
            klen = buf[off + 1]
            if klen >= 64:
                off = start
                break
            kend = off + 2 + klen
            vlen = buf[kend]
            if op != TYPE_STRING:
                parsed = self._fast_blob(buf, op, kend)
                if parsed is None:
                    off = start
                    break
                value, vend = parsed
            elif vlen < 64:
                vend = kend + 1 + vlen
                value = buf[kend + 1:vend]
            elif vlen == 0xC0:
                vend = kend + 2
                value = _INT_TEXT[buf[kend + 1]]
            elif vlen == 0xC1:
                vend = kend + 3
                value = b"%d" % _INT16.unpack_from(buf, kend + 1)[0]
            elif vlen == 0xC2:
                vend = kend + 5
                value = b"%d" % _INT32.unpack_from(buf, kend + 1)[0]
            elif vlen == 0xC3:  # LZF, with 6- or 14-bit lengths (strings up to 16 KB)
                parsed_lzf = _fast_lzf(buf, kend + 1)
                if parsed_lzf is None:
                    off = start
                    break
                value, vend = parsed_lzf
            else:
                off = start
                break
            key = buf[off + 2:kend]
            off = vend
            expire = None
            if when is None and into is not None and key not in into:
                into[key] = value
                stamps[key] = stamp
                continue
            self._off = off
            yield key, value, when
        self._off = off
        return expire

    def _fast_blob(self, buf: bytes, op: int, at: int) -> tuple[object, int] | None:
        """(value, end) of a small collection kept as one blob at ``buf[at:]`` (listpack,
        intset, a one-node quicklist; 6- or 14-bit length, or LZF with such lengths), or None
        if it is not one (or is empty: the general path counts those)."""
        build = _BLOB_VALUES.get(op)
        if build is None:
            return None
        if op == TYPE_LIST_QUICKLIST_2:
            if buf[at] != 1 or buf[at + 1] != _QUICKLIST_PACKED:
                return None
            at += 2
        blen = buf[at]
        if blen < 64:
            start = at + 1
        elif blen < 128:
            start = at + 2
            blen = ((blen & 0x3F) << 8) | buf[at + 1]
        elif blen == 0xC3:  # an LZF-compressed blob (what Redis writes for most of them)
            parsed = _fast_lzf(buf, at + 1)
            if parsed is None:
                return None
            blob, end = parsed
            start = at
        else:
            return None
        if blen != 0xC3:
            end = start + blen
            if end > len(buf):
                return None
            blob = buf[start:end]
        try:
            value = build(blob)
        except BlobError as exc:
            raise RdbError(f"corrupt {_type_name(op)} value: {exc} (blob offset {exc.pos})",
                           self._base + at) from None
        return (value, end) if value else None

    def _header(self) -> None:
        magic = self.read(9)
        if magic[:5] != b"REDIS" or not magic[5:].isdigit():
            raise RdbError("not an RDB file (no REDIS magic)", 0)
        self.version = int(magic[5:])
        if not 1 <= self.version <= RDB_VERSION:
            raise RdbError(f"RDB version {self.version} is not supported (1..10 are)", 5)

    def _trailer(self) -> None:
        if self.version >= 5:
            expected = self.crc
            at = self.pos
            stored = struct.unpack("<Q", self.read(8))[0]
            if stored and stored != expected:
                raise RdbError(f"CRC64 mismatch: file says {stored:#x}, data is {expected:#x}",
                               at)
        self._give_back()

    def _opcode(self, op: int) -> None:
        if op == OP_AUX:
            name = self.string()
            self.aux[name] = self.string()
        elif op == OP_SELECTDB:
            self._select(self.count())
        elif op == OP_RESIZEDB:
            self.count(), self.count()  # sizing hints only
        elif op == OP_IDLE:
            self.count()
        elif op == OP_FREQ:
            self.byte()
        elif op == OP_FUNCTION2:
            self.functions.append(self.string())
        else:
            name = "FUNCTION (7.0 rc)" if op == OP_FUNCTION else "MODULE_AUX"
            raise RdbError(f"{name} data is not supported", self.pos - 1)

    @property
    def db(self) -> int:
        """The database of the entries being read."""
        return self._db

    def _select(self, db: int) -> None:
        if self.databases:
            if db >= self.databases:
                raise RdbError(f"database {db}: the server has databases 0 to "
                               f"{self.databases - 1} (--databases)", self.pos)
            self._db = db
            return
        if db != 0 and not self.skip_other_dbs:
            raise RdbError(f"database {db}: shardis has database 0 only", self.pos)
        if db != 0 and self._db == 0:
            log.warning("RDB has keys in database %d: shardis has database 0 only, "
                        "skipping them", db)
        self._db = db

    # Values -----------------------------------------------------------------------------------
    def value(self, kind: int) -> object:
        start = self.pos
        reader = _VALUE_READERS.get(kind)
        if reader is None:
            raise RdbError(f"value type {kind} ({_type_name(kind)}) is not supported", start - 1)
        try:
            return reader(self)
        except BlobError as exc:
            raise RdbError(f"corrupt {_type_name(kind)} value: {exc} (blob offset {exc.pos})",
                           start) from None

    def strings(self, n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield self.string()

    def double_text(self) -> float:
        """The old ZSET score: a length byte with 253/254/255 for nan/inf/-inf, or text."""
        n = self.byte()
        special = {253: math.nan, 254: math.inf, 255: -math.inf}
        if n in special:
            return special[n]
        return _score(self.read(n))


def _type_name(kind: int) -> str:
    names = {TYPE_STREAM_LISTPACKS: "stream", TYPE_STREAM_LISTPACKS_2: "stream",
             TYPE_STREAM_LISTPACKS_3: "stream of Redis 7.2 (STREAM_LISTPACKS_3)",
             TYPE_MODULE: "module", TYPE_MODULE_2: "module"}
    return names.get(kind, f"type {kind}")


def is_empty_collection(value: object) -> bool:
    """An empty list, set, hash or sorted set: no key for Redis 7.0 (an empty stream is one)."""
    return not isinstance(value, (bytes, bytearray, StreamValue)) and not value


def _score(text: bytes) -> float:
    try:
        score = float(text)
    except ValueError:
        raise BlobError(f"score {text[:40]!r} is not a number", 0) from None
    if math.isnan(score):
        raise BlobError("score is NaN", 0)
    return score


def _read_string(r: RdbReader) -> bytes:
    return r.string()


def _read_list(r: RdbReader) -> deque:
    return deque(r.strings(r.count()))


def _read_list_ziplist(r: RdbReader) -> deque:
    return deque(packs.ziplist_entries(r.string()))


def _read_quicklist(r: RdbReader, version: int) -> deque:
    items: deque = deque()
    for _ in range(r.count()):
        container = r.count() if version == 2 else _QUICKLIST_PACKED
        blob = r.string()
        if container == _QUICKLIST_PLAIN:
            items.append(blob)
        elif container != _QUICKLIST_PACKED:
            raise BlobError(f"unknown quicklist container {container}", 0)
        else:
            # Redis skips empty nodes too (an all-empty list is then an empty key, below).
            items.extend(packs.listpack_entries(blob) if version == 2
                         else packs.ziplist_entries(blob))
    return items


def _set_value(members: list[bytes]) -> SetValue:
    """A set with Redis 7.0's encoding after loading: intset if it fits one."""
    value = built_set(members)
    if len(value) != len(members):
        raise BlobError("duplicate set member", 0)
    return value


def _read_set(r: RdbReader) -> SetValue:
    return _set_value(list(r.strings(r.count())))


def _intset_value(blob: bytes) -> SetValue:
    """A set from an intset: Redis 7.0 keeps it an intset unless it has more members than
    set-max-intset-entries (its members are strictly increasing: no duplicates)."""
    members = packs.intset_members(blob)
    value = SetValue([b"%d" % n for n in members])
    value.intset = len(members) <= SET_MAX_INTSET_ENTRIES
    return value


def _read_intset(r: RdbReader) -> SetValue:
    return _intset_value(r.string())


def _hash_value(pairs: list[tuple[bytes, bytes]], check_lengths: bool = True) -> HashValue:
    """A hash with the encoding Redis 7.0 gives it after loading: a listpack if it has few
    enough fields and (except when it was a listpack in the file) no long string."""
    value = HashValue(pairs)
    if len(value) != len(pairs):
        raise BlobError("duplicate hash field", 0)
    value.listpack = len(value) <= HASH_MAX_LISTPACK_ENTRIES and (not check_lengths or all(
        len(f) <= HASH_MAX_LISTPACK_VALUE and len(v) <= HASH_MAX_LISTPACK_VALUE
        for f, v in pairs))
    return value


def _pairs(entries: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(entries) % 2:
        raise BlobError("odd number of entries in a field/value blob", 0)
    return list(zip(entries[::2], entries[1::2]))


def _read_hash(r: RdbReader) -> HashValue:
    n = r.count()
    return _hash_value([(r.string(), r.string()) for _ in range(n)])


def _read_hash_blob(parse: Callable[[bytes], list[bytes]],
                    check_lengths: bool) -> Callable[[RdbReader], HashValue]:
    return lambda r: _hash_value(_pairs(parse(r.string())), check_lengths)


def _hash_listpack_value(blob: bytes) -> HashValue:
    """A hash from a listpack (:func:`_hash_value` without its long-string rule: a listpack
    in the file stays one while it has few enough fields), built without per-pair steps."""
    entries = packs.listpack_entries(blob)
    if len(entries) % 2:
        raise BlobError("odd number of entries in a field/value blob", 0)
    value = HashValue(zip(entries[::2], entries[1::2]))
    if 2 * len(value) != len(entries):
        raise BlobError("duplicate hash field", 0)
    value.listpack = len(value) <= HASH_MAX_LISTPACK_ENTRIES
    return value


def _zset_value(items: list[tuple[bytes, float]], from_blob: bool = False) -> ZSetValue:
    """A zset with the encoding Redis 7.0 gives it after loading: a skiplist from the file
    becomes a listpack if it fits one; a listpack stays one unless it has too many members."""
    if len({member for member, _ in items}) != len(items):
        raise BlobError("duplicate sorted-set member", 0)
    if not from_blob:
        return ZSetValue.built(items)
    if len(items) > ZSET_MAX_LISTPACK_ENTRIES:
        return ZSetValue(items, listpack=False)
    return ZSetValue(((m, s or 0.0) for m, s in items), listpack=True)


def _read_zset(r: RdbReader, binary: bool) -> ZSetValue:
    items = []
    for _ in range(r.count()):
        member = r.string()
        score = struct.unpack("<d", r.read(8))[0] if binary else r.double_text()
        if math.isnan(score):
            raise BlobError("score is NaN", 0)
        items.append((member, score))
    return _zset_value(items)


def _read_zset_blob(parse: Callable[[bytes], list[bytes]]) -> Callable[[RdbReader], ZSetValue]:
    return lambda r: _zset_value([(m, _score(s)) for m, s in _pairs(parse(r.string()))], True)


def _zset_listpack_value(blob: bytes) -> ZSetValue:
    """:func:`_zset_value` of a listpack's member/score pairs, without per-pair steps."""
    entries = packs.listpack_entries(blob)
    if len(entries) % 2:
        raise BlobError("odd number of entries in a field/value blob", 0)
    members = entries[::2]
    try:
        scores = list(map(float, entries[1::2]))
    except ValueError:
        raise BlobError("a score is not a number", 0) from None
    if any(map(math.isnan, scores)):
        raise BlobError("score is NaN", 0)
    if len(set(members)) != len(members):
        raise BlobError("duplicate sorted-set member", 0)
    if len(members) > ZSET_MAX_LISTPACK_ENTRIES:
        return ZSetValue(zip(members, scores), listpack=False)
    return ZSetValue(zip(members, [s or 0.0 for s in scores]), listpack=True)


def _list_listpack_value(blob: bytes) -> deque:
    """A list held in one quicklist node."""
    return deque(packs.listpack_entries(blob))


# Streams ------------------------------------------------------------------------------------
_U64 = 1 << 64


def _raw_id(r: RdbReader) -> StreamID:
    """A stream ID as Redis keeps it in a radix tree key: 128 bits, big-endian."""
    return struct.unpack(">QQ", r.read(16))  # type: ignore[return-value]


def _length_id(r: RdbReader) -> StreamID:
    return r.count(), r.count()


def _corrupt(r: RdbReader, message: str) -> RdbError:
    """A stream that cannot be right, at the reader's current offset."""
    return RdbError(f"corrupt stream value: {message}", r.pos)


def _read_stream(r: RdbReader, kind: int) -> StreamValue:
    """Redis 7.0's ``rdbLoadObject`` for STREAM_LISTPACKS(_2), with every check of its deep
    sanitization and those the stream's structure relies on (IDs in order across nodes, the
    length and the last ID true to the entries)."""
    value = StreamValue()
    highest: StreamID | None = None
    for _ in range(r.count()):
        key = r.string()
        if len(key) != 16:
            raise _corrupt(r, "stream node key is not the size of a stream ID")
        master: StreamID = struct.unpack(">QQ", key)  # type: ignore[assignment]
        if highest is not None and master <= highest:  # nodes must not overlap either
            raise _corrupt(r, "stream nodes are not in ascending ID order")
        highest = _load_node(value, master, r.string())
    length = r.count()
    value.last_id = _length_id(r)
    if kind == TYPE_STREAM_LISTPACKS_2:
        _length_id(r)  # the first ID: always the first live entry's (or 0-0) in shardis
        value.max_deleted = _length_id(r)
        value.added = r.count()
    else:
        value.added = length
    if length != len(value.ids):
        raise _corrupt(r, f"stream length {length} but {len(value.ids)} entries")
    if highest is not None and value.last_id < highest:
        raise _corrupt(r, "stream last ID is below its entries")
    for _ in range(r.count()):
        name = r.string()
        if name in value.groups:
            raise _corrupt(r, "duplicated consumer group name")
        value.groups[name] = _read_group(r, kind, value)
    return value


def _load_node(value: StreamValue, master: StreamID, blob: bytes) -> StreamID:
    """Add one listpack node to ``value`` as Redis would hold it; its highest ID."""
    fields, entries = packs.stream_node_entries(blob, master)  # IDs ascending, >= master
    node = _Node(master, [])
    node.fields = fields
    node.nbytes = len(blob)
    node.slots = len(entries)
    node.last = entries[-1][0]
    for entry_id, flat, dead in entries:
        if dead:
            node.dead.append((entry_id, flat))
        else:
            value.ids.append(entry_id)
            value.entries[entry_id] = flat
    node.live = node.slots - len(node.dead)
    value.nodes.append(node)
    return node.last


def _read_group(r: RdbReader, kind: int, stream: StreamValue) -> StreamGroup:
    last_id = _length_id(r)
    if kind == TYPE_STREAM_LISTPACKS_2:
        entries_read = r.count()
        if entries_read >= 1 << 63:
            entries_read -= _U64  # a C long long saved as unsigned: -1 is "unknown"
    else:
        entries_read = estimate_entries_read(stream, last_id)  # not in the file before 7.0
    group = StreamGroup(last_id, entries_read)
    for _ in range(r.count()):
        entry_id = _raw_id(r)
        delivery_time = struct.unpack("<q", r.read(8))[0]
        if entry_id in group.pel:
            raise _corrupt(r, "duplicated global PEL entry in a consumer group")
        group.pel[entry_id] = [delivery_time, r.count(), None]
    for _ in range(r.count()):
        name = r.string()
        if name in group.consumers:
            raise _corrupt(r, "duplicate stream consumer")
        consumer = StreamConsumer(struct.unpack("<q", r.read(8))[0])
        for _ in range(r.count()):
            entry_id = _raw_id(r)
            nack = group.pel.get(entry_id)
            if nack is None:
                raise _corrupt(r, "consumer entry not found in the group's global PEL")
            if nack[2] is not None:
                raise _corrupt(r, "PEL entry owned by two consumers (or twice by one)")
            nack[2] = name
            consumer.pel.append(entry_id)
        consumer.pel.sort()
        group.consumers[name] = consumer
    if any(nack[2] is None for nack in group.pel.values()):
        raise _corrupt(r, "stream group PEL entry without a consumer")
    return group


_VALUE_READERS = {
    TYPE_STRING: _read_string,
    TYPE_LIST: _read_list,
    TYPE_SET: _read_set,
    TYPE_ZSET: lambda r: _read_zset(r, binary=False),
    TYPE_HASH: _read_hash,
    TYPE_ZSET_2: lambda r: _read_zset(r, binary=True),
    TYPE_HASH_ZIPMAP: lambda r: _hash_value(packs.zipmap_pairs(r.string()), True),
    TYPE_LIST_ZIPLIST: _read_list_ziplist,
    TYPE_SET_INTSET: _read_intset,
    TYPE_ZSET_ZIPLIST: _read_zset_blob(packs.ziplist_entries),
    TYPE_HASH_ZIPLIST: _read_hash_blob(packs.ziplist_entries, True),
    TYPE_LIST_QUICKLIST: lambda r: _read_quicklist(r, 1),
    TYPE_HASH_LISTPACK: lambda r: _hash_listpack_value(r.string()),
    TYPE_ZSET_LISTPACK: lambda r: _zset_listpack_value(r.string()),
    TYPE_LIST_QUICKLIST_2: lambda r: _read_quicklist(r, 2),
    TYPE_STREAM_LISTPACKS: lambda r: _read_stream(r, TYPE_STREAM_LISTPACKS),
    TYPE_STREAM_LISTPACKS_2: lambda r: _read_stream(r, TYPE_STREAM_LISTPACKS_2),
}


#: The value types the reader's fast path builds from one blob, and how.
_BLOB_VALUES: dict[int, Callable[[bytes], object]] = {
    TYPE_HASH_LISTPACK: _hash_listpack_value,
    TYPE_ZSET_LISTPACK: _zset_listpack_value,
    TYPE_SET_INTSET: _intset_value,
    TYPE_LIST_QUICKLIST_2: _list_listpack_value,
}


def read_rdb(path: str | os.PathLike, skip_other_dbs: bool = False) -> list[Entry]:
    """Every entry of the RDB file at ``path`` (convenience for tests and small files)."""
    with open(path, "rb") as fh:
        return list(RdbReader(fh, skip_other_dbs))


# Writing ------------------------------------------------------------------------------------
class RdbWriter:
    """Write an RDB version 10 stream as Redis 7.0.15 does: :meth:`begin`, :meth:`key` for
    each key, :meth:`end`.  ``compress`` is Redis's ``rdbcompression`` (LZF for strings over
    20 bytes that shrink)."""

    def __init__(self, fh: BinaryIO, compress: bool = True) -> None:
        self.fh = fh
        self.compress = compress
        self.crc = 0

    def write(self, data: bytes) -> None:
        self.crc = crc64(data, self.crc)
        self.fh.write(data)

    def begin(self, keys: int, expires: int, used_mem: int = 0,
              functions: Iterable[bytes] = ()) -> None:
        """Magic, aux fields, the function libraries' codes, SELECTDB 0 and the RESIZEDB hint
        (key and expiry counts); other databases follow with :meth:`select`."""
        self.write(b"REDIS%04d" % RDB_VERSION)
        aux = [(b"redis-ver", REDIS_VERSION), (b"redis-bits", b"64"),
               (b"ctime", b"%d" % int(time.time())), (b"used-mem", b"%d" % used_mem),
               (b"aof-base", b"0")]
        for name, value in aux:
            self.write(bytes([OP_AUX]) + self.string(name) + self.string(value))
        for code in functions:
            self.write(bytes([OP_FUNCTION2]) + self.string(code))
        self.select(0, keys, expires)

    def select(self, db: int, keys: int, expires: int) -> None:
        """SELECTDB and the RESIZEDB hint: the keys that follow are database ``db``'s."""
        self.write(bytes([OP_SELECTDB]) + encode_length(db))
        self.write(bytes([OP_RESIZEDB]) + encode_length(keys) + encode_length(expires))

    def key(self, key: bytes, value: object, expire_ms: int | None = None) -> None:
        if expire_ms is not None:
            self.write(bytes([OP_EXPIRETIME_MS]) + struct.pack("<q", expire_ms))
        kind, body = self.value(value)
        self.write(bytes([kind]) + self.string(key) + body)

    def end(self) -> None:
        self.write(bytes([OP_EOF]))
        self.fh.write(struct.pack("<Q", self.crc))

    def string(self, data: bytes) -> bytes:
        """Redis's ``rdbSaveRawString``: small integers as integers, LZF when it pays."""
        if len(data) <= 11:
            number = as_int(bytes(data))
            if number is not None and -(2**31) <= number < 2**31:
                return _int_string(number)
        if self.compress and len(data) > 20:
            # Redis gives lzf_compress an output buffer of len - 4 bytes; python-lzf hands
            # liblzf max_len + 1, so max_len is len - 5 (liblzf's bound checks are
            # conservative: with a byte more, some strings compress that Redis leaves raw).
            packed = lzf.compress(bytes(data), len(data) - 5)
            if packed:
                return (bytes([0xC0 | _ENC_LZF]) + encode_length(len(packed))
                        + encode_length(len(data)) + packed)
        return encode_length(len(data)) + bytes(data)

    def value(self, value: object) -> tuple[int, bytes]:
        """(RDB type, encoded value) for a shardis value, in the encoding Redis 7.0 writes."""
        if isinstance(value, (bytes, bytearray)):
            return TYPE_STRING, self.string(value)
        if isinstance(value, deque):
            return TYPE_LIST_QUICKLIST_2, self._quicklist(value)
        if isinstance(value, SetValue):
            return self._set(value)
        if isinstance(value, HashValue):
            return self._hash(value)
        if isinstance(value, ZSetValue):
            return self._zset(value)
        if isinstance(value, StreamValue):
            return TYPE_STREAM_LISTPACKS_2, self._stream(value)
        raise RdbError(f"cannot write a {type(value).__name__} value")

    def _quicklist(self, items: Iterable[bytes]) -> bytes:
        """Nodes filled as RPUSH fills them (:func:`quicklist_nodes`), so a list built by
        RPUSH is written byte for byte as Redis writes it."""
        nodes = quicklist_nodes(items)
        out = [encode_length(len(nodes))]
        for node in nodes:
            out.append(encode_length(_QUICKLIST_PACKED))
            out.append(self.string(packs.listpack_from_entries(node)))
        return b"".join(out)

    def _set(self, value: SetValue) -> tuple[int, bytes]:
        if value.intset:
            blob = packs.build_intset(int(member) for member in value)
            return TYPE_SET_INTSET, self.string(blob)
        return TYPE_SET, encode_length(len(value)) + b"".join(self.string(m) for m in value)

    def _hash(self, value: HashValue) -> tuple[int, bytes]:
        if value.listpack:
            flat = [item for pair in value.items() for item in pair]
            return TYPE_HASH_LISTPACK, self.string(packs.build_listpack(flat))
        body = b"".join(self.string(f) + self.string(v) for f, v in value.items())
        return TYPE_HASH, encode_length(len(value)) + body

    def _zset(self, value: ZSetValue) -> tuple[int, bytes]:
        if value.listpack:
            flat = [item for score, member in value.order
                    for item in (member, score_text(score))]
            return TYPE_ZSET_LISTPACK, self.string(packs.build_listpack(flat))
        # Redis writes a skiplist from its tail, so loading inserts at the head in O(1).
        body = b"".join(self.string(member) + struct.pack("<d", score)
                        for score, member in reversed(value.order))
        return TYPE_ZSET_2, encode_length(len(value)) + body

    def _stream(self, value: StreamValue) -> bytes:
        """Redis 7.0.15's ``rdbSaveObject`` for a stream: the nodes (key: master ID, 128 bits
        big-endian; value: the listpack), length, last, first and max-deleted IDs,
        entries_added, then the groups with their PELs and consumers, each in name/ID order
        (the order of Redis's radix trees)."""
        out = [encode_length(len(value.nodes))]
        ids, entries = value.ids, value.entries
        start = 0
        for node in value.nodes:
            live = [(i, entries[i], False) for i in ids[start:start + node.live]]
            start += node.live
            merged = sorted(live + [(i, f, True) for i, f in node.dead])
            blob = packs.build_stream_node(node.master, node.fields, merged)
            out.append(self.string(struct.pack(">QQ", *node.master)))
            out.append(self.string(blob))
        first = ids[0] if ids else MIN_ID
        for number in (len(ids), *value.last_id, *first, *value.max_deleted, value.added,
                       len(value.groups)):
            out.append(encode_length(number))
        for name in sorted(value.groups):
            out.append(self.string(name))
            out.append(self._group(value.groups[name]))
        return b"".join(out)

    def _group(self, group: StreamGroup) -> bytes:
        out = [encode_length(group.last_id[0]), encode_length(group.last_id[1]),
               encode_length(group.entries_read % _U64), encode_length(len(group.pel))]
        for entry_id in sorted(group.pel):
            delivery_time, count, _ = group.pel[entry_id]
            out.append(struct.pack(">QQ", *entry_id) + struct.pack("<q", delivery_time))
            out.append(encode_length(count))
        out.append(encode_length(len(group.consumers)))
        for name in sorted(group.consumers):
            consumer = group.consumers[name]
            out.append(self.string(name) + struct.pack("<q", consumer.seen_time))
            out.append(encode_length(len(consumer.pel)))
            out.extend(struct.pack(">QQ", *entry_id) for entry_id in consumer.pel)
        return b"".join(out)


def quicklist_nodes(items: Iterable[bytes]) -> list[list[bytes]]:
    """A list's quicklist nodes (their listpack entries) as RPUSH fills them
    (``_quicklistNodeAllowInsert`` with the default fill of -2): RDB's and DEBUG OBJECT's."""
    nodes: list[list[bytes]] = [[]]
    size = _LISTPACK_OVERHEAD
    for item in items:
        entry = packs.lp_encode_entry(item)
        if nodes[-1] and size + len(item) + _SIZE_ESTIMATE_OVERHEAD > _QUICKLIST_NODE_BYTES:
            nodes.append([])
            size = _LISTPACK_OVERHEAD
        nodes[-1].append(entry)
        size += len(entry)
    return [node for node in nodes if node]


def write_rdb(fh: BinaryIO, entries: Iterable[Entry], compress: bool = True) -> None:
    """Write ``(key, value, expire_ms or None)`` entries as a complete RDB stream."""
    entries = list(entries)
    writer = RdbWriter(fh, compress)
    writer.begin(len(entries), sum(1 for _, _, exp in entries if exp is not None))
    for key, value, expire in entries:
        writer.key(key, value, expire)
    writer.end()


def encode_length(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    if n < 1 << 32:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def _int_string(n: int) -> bytes:
    if -128 <= n < 128:
        return bytes([0xC0 | _ENC_INT8]) + struct.pack("<b", n)
    if -(2**15) <= n < 2**15:
        return bytes([0xC0 | _ENC_INT16]) + struct.pack("<h", n)
    return bytes([0xC0 | _ENC_INT32]) + struct.pack("<i", n)


def score_text(score: float) -> bytes:
    """Redis's ``d2string``: how a listpack zset keeps a score."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    if score == 0:
        return b"-0" if math.copysign(1.0, score) < 0 else b"0"
    if score.is_integer() and -(2**63) < score < 2**63:
        return b"%d" % int(score)
    return b"%.17g" % score
