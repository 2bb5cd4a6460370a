"""The compact blobs inside RDB values: listpack, ziplist, intset and zipmap.

Redis stores small collections as these blobs verbatim, so an RDB reader must parse all of
them (a 7.0 file has listpacks and intsets; older files have ziplists and zipmaps) and a
writer must build the ones Redis 7.0 writes (listpack, intset).  Parsing is bounds-checked:
a corrupt blob raises :class:`BlobError` with the position inside the blob.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable

_INT_TEXT = re.compile(rb"(?:0|-?[1-9][0-9]{0,18})\Z")
LLONG_MIN, LLONG_MAX = -(2**63), 2**63 - 1


class BlobError(ValueError):
    """A malformed blob; ``pos`` is the offset inside the blob."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


def as_int(text: bytes) -> int | None:
    """``text`` as Redis's ``string2ll`` reads it (canonical, 64-bit), else None."""
    if len(text) > 20 or not _INT_TEXT.match(text):
        return None
    number = int(text)
    return number if LLONG_MIN <= number <= LLONG_MAX else None


class _Cursor:
    """Reads a blob front to back; every read checks that the bytes are there."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BlobError(f"entry of {n} bytes runs past the end of the blob", self.pos)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def byte(self) -> int:
        return self.take(1)[0]


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


# Listpack -----------------------------------------------------------------------------------
_LP_HEADER = struct.Struct("<IH")
_LP_FIXED = {0xF1: struct.Struct("<h"), 0xF3: struct.Struct("<i"), 0xF4: struct.Struct("<q")}
#: a 7-bit unsigned listpack integer as text.
_SMALL_TEXT = [b"%d" % n for n in range(128)]


def listpack_entries(data: bytes) -> list[bytes]:
    """Every entry of a listpack as bytes (integers as their decimal text).

    The common entries (7-bit integers, strings of up to 63 bytes, 13-bit integers, whose
    back-length is one byte) are parsed inline; the others through :func:`_lp_entry`.
    Every entry, back-length included, must end before the end marker."""
    size = len(data)
    if size < 7:
        raise BlobError(f"listpack of {size} bytes is shorter than its header", 0)
    total, count = _LP_HEADER.unpack_from(data)
    if total != size:
        raise BlobError(f"listpack header says {total} bytes, blob has {size}", 0)
    end = size - 1
    if data[end] != 0xFF:
        raise BlobError("listpack has no end marker", end)
    entries: list[bytes] = []
    append = entries.append
    pos = 6
    small = _SMALL_TEXT
    cur: _Cursor | None = None
    while pos < end:
        b = data[pos]
        if b < 0x80:
            value, n = small[b], 1
        elif b < 0xC0:
            n = 1 + (b & 0x3F)
            value = data[pos + 1:pos + n]
        elif b < 0xE0:
            n = 2
            raw = ((b & 0x1F) << 8) | data[pos + 1]
            value = b"%d" % (raw - 8192 if raw >= 4096 else raw)
        elif b == 0xF2:
            n = 4
            raw = int.from_bytes(data[pos + 1:pos + 4], "little")
            value = b"%d" % (raw - 0x1000000 if raw >= 0x800000 else raw)
        elif b in _LP_FIXED:
            fixed = _LP_FIXED[b]
            n = 1 + fixed.size
            if pos + n >= end:
                raise BlobError("listpack entry runs past the end", pos)
            value = b"%d" % fixed.unpack_from(data, pos + 1)[0]
        else:
            if b == 0xFF:
                raise BlobError("listpack has bytes after its end marker", pos)
            if cur is None:
                cur = _Cursor(data[:end])
            cur.pos = pos
            value = _lp_entry(cur)
            n = cur.pos - pos
            _lp_check_backlen(cur, n)
            pos = cur.pos
            append(value)
            continue
        # n < 65 here, so the back-length is the one byte n.
        if pos + n >= end or data[pos + n] != n:
            raise BlobError("listpack entry runs past the end or has a wrong back-length",
                            pos)
        pos += n + 1
        append(value)
    if count != 0xFFFF and count != len(entries):
        raise BlobError(f"listpack header says {count} entries, found {len(entries)}", 4)
    return entries


def _lp_entry(cur: _Cursor) -> bytes:
    """One entry's value (encoding byte and data; the back-length is checked by the caller)."""
    b = cur.byte()
    if b < 0x80:
        return b"%d" % b
    if b & 0xC0 == 0x80:
        return cur.take(b & 0x3F)
    if b & 0xE0 == 0xC0:
        return b"%d" % _signed(((b & 0x1F) << 8) | cur.byte(), 13)
    if b & 0xF0 == 0xE0:
        return cur.take(((b & 0x0F) << 8) | cur.byte())
    fixed = {0xF1: "<h", 0xF3: "<i", 0xF4: "<q"}
    if b in fixed:
        return b"%d" % cur.unpack(fixed[b])
    if b == 0xF2:
        return b"%d" % _signed(int.from_bytes(cur.take(3), "little"), 24)
    if b == 0xF0:
        return cur.take(cur.unpack("<I"))
    raise BlobError(f"listpack entry has unknown encoding 0x{b:02x}", cur.pos - 1)


def _lp_check_backlen(cur: _Cursor, entry_len: int) -> None:
    expected = _lp_backlen(entry_len)
    if cur.take(len(expected)) != expected:
        raise BlobError("listpack entry has a wrong back-length", cur.pos - len(expected))


def _lp_backlen(n: int) -> bytes:
    """Redis's ``lpEncodeBacklen``: ``n`` in 7-bit groups, most significant first, every
    group but the first flagged with 0x80 (so it reads right to left).  The number of groups
    follows Redis's thresholds, which are one short of the 7-bit limits (16383 takes three
    bytes, not two)."""
    if n <= 127:
        return bytes([n])
    size = 2 if n < 16383 else 3 if n < 2097151 else 4 if n < 268435455 else 5
    groups = [(n >> (7 * i)) & 0x7F for i in range(size - 1, -1, -1)]
    groups[0] = n >> (7 * (size - 1))
    return bytes([groups[0]] + [g | 0x80 for g in groups[1:]])


def lp_encode_entry(item: bytes) -> bytes:
    """One listpack entry as Redis's ``lpAppend`` writes it: integers in the smallest integer
    encoding, other strings with a 6-, 12- or 32-bit length."""
    number = as_int(item)
    if number is not None:
        body = _lp_int(number)
    elif len(item) < 64:
        body = bytes([0x80 | len(item)]) + item
    elif len(item) < 4096:
        body = bytes([0xE0 | (len(item) >> 8), len(item) & 0xFF]) + item
    else:
        body = b"\xf0" + struct.pack("<I", len(item)) + item
    return body + _lp_backlen(len(body))


def _lp_int(n: int) -> bytes:
    if 0 <= n <= 127:
        return bytes([n])
    if -4096 <= n <= 4095:
        n &= 0x1FFF
        return bytes([0xC0 | (n >> 8), n & 0xFF])
    if -(2**15) <= n < 2**15:
        return b"\xf1" + struct.pack("<h", n)
    if -(2**23) <= n < 2**23:
        return b"\xf2" + (n & 0xFFFFFF).to_bytes(3, "little")
    if -(2**31) <= n < 2**31:
        return b"\xf3" + struct.pack("<i", n)
    return b"\xf4" + struct.pack("<q", n)


def listpack_from_entries(entries: list[bytes]) -> bytes:
    """A listpack of pre-encoded entries (see :func:`lp_encode_entry`)."""
    body = b"".join(entries)
    count = len(entries) if len(entries) < 0xFFFF else 0xFFFF
    return struct.pack("<IH", 6 + len(body) + 1, count) + body + b"\xff"


def build_listpack(items: Iterable[bytes]) -> bytes:
    return listpack_from_entries([lp_encode_entry(item) for item in items])


# Ziplist (RDB files before 7.0) -------------------------------------------------------------
def ziplist_entries(data: bytes) -> list[bytes]:
    """Every entry of a ziplist as bytes (integers as their decimal text)."""
    cur = _Cursor(data)
    total, _tail, count = cur.unpack("<I"), cur.unpack("<I"), cur.unpack("<H")
    if total != len(data):
        raise BlobError(f"ziplist header says {total} bytes, blob has {len(data)}", 0)
    entries: list[bytes] = []
    while True:
        if cur.pos >= len(data):
            raise BlobError("ziplist has no end marker", cur.pos)
        if data[cur.pos] == 0xFF:
            break
        if cur.byte() == 0xFE:
            cur.take(4)  # a previous-entry length of 254 or more
        entries.append(_zl_entry(cur))
    if count != 0xFFFF and count != len(entries):
        raise BlobError(f"ziplist header says {count} entries, found {len(entries)}", 8)
    return entries


def _zl_entry(cur: _Cursor) -> bytes:
    b = cur.byte()
    kind = b >> 6
    if kind == 0:
        return cur.take(b & 0x3F)
    if kind == 1:
        return cur.take(((b & 0x3F) << 8) | cur.byte())
    if b == 0x80:
        return cur.take(cur.unpack(">I"))
    fixed = {0xC0: "<h", 0xD0: "<i", 0xE0: "<q", 0xFE: "<b"}
    if b in fixed:
        return b"%d" % cur.unpack(fixed[b])
    if b == 0xF0:
        return b"%d" % _signed(int.from_bytes(cur.take(3), "little"), 24)
    if 0xF1 <= b <= 0xFD:
        return b"%d" % ((b & 0x0F) - 1)
    raise BlobError(f"ziplist entry has unknown encoding 0x{b:02x}", cur.pos - 1)


# Intset -------------------------------------------------------------------------------------
_INTSET_FORMATS = {2: "h", 4: "i", 8: "q"}
_INTSET_HEADER = struct.Struct("<II")


#: unpackers of small intsets, by (width, count): most intsets are small.
_INTSET_UNPACK: dict[tuple[int, int], Callable[[bytes, int], tuple[int, ...]]] = {}


def intset_members(data: bytes) -> list[int]:
    if len(data) < 8:
        raise BlobError(f"intset of {len(data)} bytes is shorter than its header", 0)
    width, count = _INTSET_HEADER.unpack_from(data)
    if width not in _INTSET_FORMATS:
        raise BlobError(f"intset has unknown integer width {width}", 0)
    if 8 + width * count != len(data):
        raise BlobError(f"intset of {count} x {width} bytes does not fit {len(data)}", 4)
    unpack = _INTSET_UNPACK.get((width, count))
    if unpack is None:
        unpack = struct.Struct(f"<{count}{_INTSET_FORMATS[width]}").unpack_from
        if count <= 64:
            _INTSET_UNPACK[width, count] = unpack
    members = list(unpack(data, 8))
    if count > 1 and (members != sorted(members) or len(set(members)) != count):
        raise BlobError("intset members are not strictly increasing", 8)
    return members


def build_intset(members: Iterable[int]) -> bytes:
    """An intset as Redis keeps it: sorted, every member in the narrowest width that fits all."""
    ordered = sorted(members)
    width = 2
    for n in (ordered[0], ordered[-1]) if ordered else ():
        if not -(2**15) <= n < 2**15:
            width = max(width, 4 if -(2**31) <= n < 2**31 else 8)
    body = struct.pack(f"<{len(ordered)}{_INTSET_FORMATS[width]}", *ordered)
    return struct.pack("<II", width, len(ordered)) + body


# Zipmap (hashes in RDB files before 2.6) ----------------------------------------------------
def zipmap_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    cur = _Cursor(data)
    cur.byte()  # the element count (saturates at 254, so it is not trusted)
    pairs: list[tuple[bytes, bytes]] = []
    while True:
        if cur.pos >= len(data):
            raise BlobError("zipmap has no end marker", cur.pos)
        if data[cur.pos] == 0xFF:
            return pairs
        field = cur.take(_zm_len(cur))
        size = _zm_len(cur)
        free = cur.byte()
        value = cur.take(size)
        cur.take(free)
        pairs.append((field, value))


def _zm_len(cur: _Cursor) -> int:
    b = cur.byte()
    if b < 254:
        return b
    if b == 254:
        return cur.unpack("<I")
    raise BlobError("zipmap entry length runs into the end marker", cur.pos - 1)


# Stream listpacks ---------------------------------------------------------------------------
#: Flags of a stream entry inside its listpack (stream.h).
STREAM_FLAG_DELETED, STREAM_FLAG_SAMEFIELDS = 1, 2
_U64 = 1 << 64
#: An entry of a stream node: (id, flat [field, value, ...], deleted).
StreamEntry = tuple[tuple[int, int], list[bytes], bool]


def lp_encode_int(n: int) -> bytes:
    """One integer listpack entry, as ``lpAppendInteger`` writes it."""
    body = _lp_int(n)
    return body + _lp_backlen(len(body))


def _wrap_signed(n: int) -> int:
    """A C ``uint64_t`` difference handed to ``lpAppendInteger`` (an ``int64_t``)."""
    n %= _U64
    return n - _U64 if n >= 1 << 63 else n


def build_stream_node(master: tuple[int, int], fields: list[bytes],
                      entries: list[StreamEntry]) -> bytes:
    """A stream node's listpack as Redis's ``streamAppendItem`` (and XDEL/XTRIM marking
    entries deleted) leaves it: the master entry ``count, deleted, num-fields, fields..., 0``,
    then per entry ``flags, ms-diff, seq-diff, [num-fields, field, value... | values...],
    lp-count`` (values only when the entry has the master's fields, in order)."""
    live = sum(1 for _, _, dead in entries if not dead)
    out = [lp_encode_int(live), lp_encode_int(len(entries) - live), lp_encode_int(len(fields))]
    out.extend(lp_encode_entry(f) for f in fields)
    out.append(lp_encode_int(0))
    for (ms, seq), flat, dead in entries:
        names = flat[::2]
        same = names == fields
        flags = (STREAM_FLAG_DELETED if dead else 0) | (STREAM_FLAG_SAMEFIELDS if same else 0)
        out.append(lp_encode_int(flags))
        out.append(lp_encode_int(_wrap_signed(ms - master[0])))
        out.append(lp_encode_int(_wrap_signed(seq - master[1])))
        if same:
            out.extend(lp_encode_entry(v) for v in flat[1::2])
            count = len(names) + 3
        else:
            out.append(lp_encode_int(len(names)))
            out.extend(lp_encode_entry(item) for item in flat)
            count = 2 * len(names) + 4
        out.append(lp_encode_int(count))
    return listpack_from_entries(out)


class _Items:
    """The elements of a stream listpack, read in order with bounds and type checks."""

    def __init__(self, items: list[bytes]) -> None:
        self.items = items
        self.pos = 0

    def take(self) -> bytes:
        if self.pos >= len(self.items):
            raise BlobError("stream listpack ends inside an entry", self.pos)
        self.pos += 1
        return self.items[self.pos - 1]

    def int(self, low: int = LLONG_MIN) -> int:
        text = self.take()
        number = as_int(text)
        if number is None or number < low:
            raise BlobError(f"stream listpack element {self.pos - 1} is not a valid integer",
                            self.pos - 1)
        return number

    def many(self, n: int) -> list[bytes]:
        if self.pos + n > len(self.items):
            raise BlobError("stream listpack ends inside an entry", self.pos)
        self.pos += n
        return self.items[self.pos - n:self.pos]


def stream_node_entries(data: bytes, master: tuple[int, int]
                        ) -> tuple[list[bytes], list[StreamEntry]]:
    """(master fields, entries) of a stream node's listpack, checked as Redis's deep
    ``streamValidateListpackIntegrity`` does and more: the counts in the master entry match
    the entries' flags, every lp-count is right, and IDs increase from the master ID."""
    items = _Items(listpack_entries(data))
    if not items.items:
        raise BlobError("empty listpack inside a stream", 0)
    live, deleted, nfields = items.int(0), items.int(0), items.int(0)
    fields = items.many(nfields)
    if items.int() != 0:
        raise BlobError("stream master entry has no zero terminator", items.pos - 1)
    entries: list[StreamEntry] = []
    previous = None
    for _ in range(live + deleted):
        entry = _stream_entry(items, master, fields)
        if entry[0] < master or (previous is not None and entry[0] <= previous):
            raise BlobError("stream listpack IDs are not in ascending order", items.pos)
        previous = entry[0]
        entries.append(entry)
    if items.pos != len(items.items):
        raise BlobError("stream listpack has elements after its last entry", items.pos)
    if sum(1 for _, _, dead in entries if dead) != deleted:
        raise BlobError("stream master entry counts do not match the entry flags", 0)
    if not entries:
        raise BlobError("stream listpack has no entries", 0)
    return fields, entries


def _stream_entry(items: _Items, master: tuple[int, int], fields: list[bytes]) -> StreamEntry:
    flags = items.int(0)
    if flags > STREAM_FLAG_DELETED | STREAM_FLAG_SAMEFIELDS:
        raise BlobError(f"stream entry has unknown flags {flags}", items.pos - 1)
    entry_id = ((master[0] + items.int()) % _U64, (master[1] + items.int()) % _U64)
    if flags & STREAM_FLAG_SAMEFIELDS:
        values = items.many(len(fields))
        flat = [item for pair in zip(fields, values) for item in pair]
        expected = len(fields) + 3
    else:
        n = items.int(0)
        flat = list(items.many(2 * n))
        expected = 2 * n + 4
    if items.int() != expected:
        raise BlobError("stream entry has a wrong lp-count", items.pos - 1)
    return entry_id, flat, bool(flags & STREAM_FLAG_DELETED)
