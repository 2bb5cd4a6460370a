"""Bitmap commands: worker-side operations, modelled on Redis's bitops.c.

A bitmap is a string: bit 0 is the most significant bit of byte 0.  A command that writes bits
turns the value into a ``bytearray`` first (Redis's ``dbUnshareStringValue``: the key's encoding
becomes ``raw``) and grows it with zero bytes, so GET, STRLEN, APPEND and SETRANGE see the same
bytes.  Scanning commands never loop over bytes in Python: BITCOUNT sums ``int.bit_count`` over
big chunks, BITPOS finds the first interesting byte with a regular expression (C speed, stops
early) and BITOP combines whole strings as Python integers.

BITOP with its keys on several workers is coordinated by ``shardis.router.bitmaps``, which uses
:func:`parse_bitop` and :func:`bitop_result` from here and stores with ``__bitstore``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce
from operator import and_, or_, xor

from shardis import errors
from shardis.commands import Fanout, command
from shardis.commands.strings import MAX_STRING, parse_int
from shardis.errors import ReplyError
from shardis.worker.keyspace import Keyspace

StringValue = bytes | bytearray

#: BITCOUNT converts at most this many bytes to one integer at a time (bounds the memory).
POPCOUNT_CHUNK = 1 << 22
#: ``bytes.translate`` table that inverts every bit of a byte (BITOP NOT).
NOT_TABLE = bytes(255 - b for b in range(256))
#: The first byte holding a set bit / a clear bit (BITPOS 1 / BITPOS 0).
_HAS_ONE = re.compile(rb"[^\x00]")
_HAS_ZERO = re.compile(rb"[^\xff]")

_INT64 = 1 << 64


def c_string(raw: bytes) -> bytes:
    """An option as Redis's ``strcasecmp`` sees it: up to the first NUL, lower-cased."""
    return raw.split(b"\0", 1)[0].lower()


def parse_bit_offset(raw: bytes, hash_bits: int = 0) -> int:
    """Redis's ``getBitOffsetFromArgument``: a bit offset inside 512 MB.

    With ``hash_bits`` (BITFIELD), ``#N`` means ``N * hash_bits``; the product wraps like C's
    64-bit arithmetic does in Redis, so shardis accepts exactly the offsets Redis accepts.
    """
    use_hash = hash_bits > 0 and raw[:1] == b"#"
    offset = parse_int(raw[1:] if use_hash else raw, errors.BIT_OFFSET)
    if use_hash:
        offset = (offset * hash_bits + (1 << 63)) % _INT64 - (1 << 63)
    if offset < 0 or offset >> 3 >= MAX_STRING:
        raise ReplyError(errors.BIT_OFFSET)
    return offset


def writable_bitmap(db: Keyspace, key: bytes, size: int) -> tuple[bytearray, bool]:
    """Redis's ``lookupStringForBitCommand``: the string at ``key`` as a bytearray at least
    ``size`` bytes long (created or zero-padded), and whether it was created or grown."""
    value = db.get_string(key)
    if value is None:
        created = bytearray(size)
        db.set(key, created)
        return created, True
    if type(value) is bytes:
        value = bytearray(value)
        db.reencode(key, value)  # same bytes, same TTL: only the representation changes
    grown = len(value) < size
    if grown:
        value.extend(bytes(size - len(value)))  # type: ignore[union-attr]
    return value, grown  # type: ignore[return-value]


# Bit-range primitives ------------------------------------------------------------------------
def popcount(value: StringValue, first_bit: int, last_bit: int) -> int:
    """Set bits in the inclusive bit range (which lies inside ``value``)."""
    low, high = first_bit >> 3, last_bit >> 3
    view = memoryview(value)
    count = 0
    for start in range(low, high + 1, POPCOUNT_CHUNK):
        chunk = view[start : min(start + POPCOUNT_CHUNK, high + 1)]
        count += int.from_bytes(chunk, "little").bit_count()
    count -= (value[low] >> (8 - (first_bit & 7))).bit_count()
    count -= (value[high] & ((1 << (7 - (last_bit & 7))) - 1)).bit_count()
    return count


def first_bit(value: StringValue, bit: int, first: int, last: int) -> int:
    """Position of the first ``bit`` in the inclusive bit range, or -1.

    The regex finds the next byte that is not all ``1 - bit``; only the range's edge bytes
    can need a second look, so this loops at most three times.
    """
    low, high = first >> 3, last >> 3
    pattern = _HAS_ONE if bit else _HAS_ZERO
    pos = low
    while pos <= high:
        found = pattern.search(value, pos, high + 1)
        if found is None:
            return -1
        index = found.start()
        byte = value[index] if bit else value[index] ^ 0xFF
        if index == low:
            byte &= 0xFF >> (first & 7)
        if index == high:
            byte &= (0xFF << (7 - (last & 7))) & 0xFF
        if byte:
            return index * 8 + 8 - byte.bit_length()
        pos = index + 1
    return -1


def read_field(value: StringValue, offset: int, bits: int, signed: bool) -> int:
    """The ``bits``-wide integer at bit ``offset``; bits past the end read as 0."""
    low, high = offset >> 3, (offset + bits - 1) >> 3
    chunk = value[low : high + 1]
    number = int.from_bytes(chunk, "big") << (8 * (high + 1 - low - len(chunk)))
    number = (number >> (7 - ((offset + bits - 1) & 7))) & ((1 << bits) - 1)
    if signed and number >> (bits - 1):
        number -= 1 << bits
    return number


def write_field(buffer: bytearray, offset: int, bits: int, number: int) -> None:
    """Store the low ``bits`` bits of ``number`` at bit ``offset`` (the buffer is big enough)."""
    low, high = offset >> 3, (offset + bits - 1) >> 3
    shift = 7 - ((offset + bits - 1) & 7)
    mask = ((1 << bits) - 1) << shift
    current = int.from_bytes(buffer[low : high + 1], "big")
    current = (current & ~mask) | ((number << shift) & mask)
    buffer[low : high + 1] = current.to_bytes(high + 1 - low, "big")


# SETBIT / GETBIT -----------------------------------------------------------------------------
@command("setbit", 4, "write denyoom", keys=(1, 1, 1), acl="write bitmap slow", group="bitmap")
def setbit_command(db: Keyspace, args: list[bytes]) -> object:
    offset = parse_bit_offset(args[2])
    on = parse_int(args[3], errors.BIT_VALUE)
    if on & ~1:
        raise ReplyError(errors.BIT_VALUE)
    key = args[1]
    buffer, grown = writable_bitmap(db, key, (offset >> 3) + 1)
    index, shift = offset >> 3, 7 - (offset & 7)
    old = (buffer[index] >> shift) & 1
    if old != on:
        buffer[index] ^= 1 << shift
    if grown or old != on:
        db.changed(key)
    return old


@command("getbit", 3, "readonly fast", keys=(1, 1, 1), acl="read bitmap fast", group="bitmap")
def getbit_command(db: Keyspace, args: list[bytes]) -> object:
    offset = parse_bit_offset(args[2])
    value = db.get_string(args[1])
    index = offset >> 3
    if value is None or index >= len(value):
        return 0
    return (value[index] >> (7 - (offset & 7))) & 1


# BITCOUNT / BITPOS ---------------------------------------------------------------------------
def parse_unit(raw: bytes) -> bool:
    """True for BIT, False for BYTE (the range unit of BITCOUNT and BITPOS)."""
    unit = c_string(raw)
    if unit == b"bit":
        return True
    if unit == b"byte":
        return False
    raise ReplyError(errors.SYNTAX)


def clamp_range(start: int, end: int, total: int) -> tuple[int, int]:
    """Redis's index arithmetic: negatives count from the end, then clip to [0, total - 1]."""
    if start < 0:
        start = max(total + start, 0)
    if end < 0:
        end = max(total + end, 0)
    return start, min(end, total - 1)


def bit_range(start: int, end: int, in_bits: bool) -> tuple[int, int]:
    """A clamped BYTE or BIT range as an inclusive range of bits."""
    return (start, end) if in_bits else (start * 8, end * 8 + 7)


@command("bitcount", -2, "readonly", keys=(1, 1, 1), acl="read bitmap slow", group="bitmap")
def bitcount_command(db: Keyspace, args: list[bytes]) -> object:
    value = db.get_string(args[1])
    if value is None:
        return 0  # before any argument is looked at, as in Redis
    argc = len(args)
    if argc == 2:
        return popcount(value, 0, len(value) * 8 - 1) if value else 0
    if argc > 5 or argc == 3:
        raise ReplyError(errors.SYNTAX)
    start, end = parse_int(args[2]), parse_int(args[3])
    if start < 0 and end < 0 and start > end:
        return 0  # Redis answers this before it looks at the unit
    in_bits = argc == 5 and parse_unit(args[4])
    start, end = clamp_range(start, end, len(value) * (8 if in_bits else 1))
    if start > end:
        return 0
    return popcount(value, *bit_range(start, end, in_bits))


@command("bitpos", -3, "readonly", keys=(1, 1, 1), acl="read bitmap slow", group="bitmap")
def bitpos_command(db: Keyspace, args: list[bytes]) -> object:
    bit = parse_int(args[2])
    if bit not in (0, 1):
        raise ReplyError(errors.BIT_ARGUMENT)
    value = db.get_string(args[1])
    if value is None:
        return -1 if bit else 0  # a missing key is an infinite run of zeros
    start, end, in_bits, end_given = parse_bitpos_range(args, len(value))
    if start > end:
        return -1
    first, last = bit_range(start, end, in_bits)
    found = first_bit(value, bit, first, last)
    if found >= 0 or bit or end_given:
        return found
    return last + 1  # looking for a 0 with no end given: the string is zero-padded


def parse_bitpos_range(args: list[bytes], length: int) -> tuple[int, int, bool, bool]:
    """BITPOS's ``[start [end [BIT|BYTE]]]``, clamped: (start, end, in bits, end given).

    The unit is parsed before the end, as in Redis (it decides the default end too).
    """
    argc = len(args)
    if argc == 3:
        return 0, length - 1, False, False
    if argc > 6:
        raise ReplyError(errors.SYNTAX)
    start = parse_int(args[3])
    in_bits = argc == 6 and parse_unit(args[5])
    end = parse_int(args[4]) if argc >= 5 else length - 1
    start, end = clamp_range(start, end, length * (8 if in_bits else 1))
    return start, end, in_bits, argc >= 5


# BITOP ---------------------------------------------------------------------------------------
_BITOPS = {b"and": and_, b"or": or_, b"xor": xor, b"not": None}


def parse_bitop(args: list[bytes]) -> bytes:
    """The operation's name (``and``, ``or``, ``xor``, ``not``), with Redis's argument errors.

    Run by the router before any key is read, so the errors come first, as in Redis.
    """
    name = c_string(args[1])
    if name not in _BITOPS:
        raise ReplyError(errors.SYNTAX)
    if name == b"not" and len(args) != 4:
        raise ReplyError(errors.BITOP_NOT_ONE_KEY)
    return name


def bitop_result(name: bytes, sources: list[StringValue | None]) -> bytearray:
    """The operation over the sources (None: a missing key, read as an empty string), as long
    as the longest source; shorter sources are zero-padded, as in Redis."""
    longest = max((len(source) for source in sources if source), default=0)
    if not longest:
        return bytearray()
    if name == b"not":
        return bytearray(sources[0].translate(NOT_TABLE))  # type: ignore[union-attr]
    numbers = [int.from_bytes(source or b"", "little") for source in sources]
    return bytearray(reduce(_BITOPS[name], numbers).to_bytes(longest, "little"))


def store_bitop_result(db: Keyspace, key: bytes, result: bytearray) -> int:
    """Replace ``key`` by the result (a ``raw`` string, TTL cleared) or delete it if empty."""
    if result:
        db.set(key, result)
    else:
        db.delete(key)
    return len(result)


@command("bitop", -4, "write denyoom", keys=(2, -1, 1), fanout=Fanout.COORDINATED,
         acl="write bitmap slow", group="bitmap")
def bitop_command(db: Keyspace, args: list[bytes]) -> object:
    """All keys on this worker (the router forwarded the command whole)."""
    name = parse_bitop(args)
    sources = [db.get_string(key) for key in args[3:]]
    return store_bitop_result(db, args[2], bitop_result(name, sources))


@command("__bitstore", 3, "write internal", keys=(1, 1, 1))
def internal_bitstore_command(db: Keyspace, args: list[bytes]) -> object:
    """``__bitstore key value``: a cross-worker BITOP's result; an empty value deletes."""
    return store_bitop_result(db, args[1], bytearray(args[2]))


# BITFIELD ------------------------------------------------------------------------------------
_GET, _SET, _INCRBY = 0, 1, 2
_WRAP, _SAT, _FAIL = 0, 1, 2
_SUBCOMMANDS = {b"get": (_GET, 2), b"set": (_SET, 3), b"incrby": (_INCRBY, 3)}
_OVERFLOWS = {b"wrap": _WRAP, b"sat": _SAT, b"fail": _FAIL}


@dataclass(frozen=True, slots=True)
class FieldOp:
    """One GET/SET/INCRBY of a BITFIELD call, with the OVERFLOW mode in force at its place."""

    opcode: int
    signed: bool
    bits: int
    offset: int
    number: int
    overflow: int


def parse_field_type(raw: bytes) -> tuple[bool, int]:
    """``i1``..``i64`` or ``u1``..``u63``: (signed, bits).  The width is read as a C string."""
    sign = raw[:1]
    if sign not in (b"i", b"u"):
        raise ReplyError(errors.BITFIELD_TYPE)
    width = raw[1:].split(b"\0", 1)[0]
    bits = parse_int(width, errors.BITFIELD_TYPE)
    if bits < 1 or bits > (64 if sign == b"i" else 63):
        raise ReplyError(errors.BITFIELD_TYPE)
    return sign == b"i", bits


def parse_bitfield(args: list[bytes]) -> list[FieldOp]:
    """Every subcommand, checked before anything is executed (Redis's order of errors)."""
    ops: list[FieldOp] = []
    overflow = _WRAP
    j, argc = 2, len(args)
    while j < argc:
        name = c_string(args[j])
        remaining = argc - j - 1
        if name == b"overflow" and remaining >= 1:
            overflow = _OVERFLOWS.get(c_string(args[j + 1]), -1)
            if overflow < 0:
                raise ReplyError(errors.BITFIELD_OVERFLOW)
            j += 2
            continue
        opcode, needed = _SUBCOMMANDS.get(name, (-1, 0))
        if opcode < 0 or remaining < needed:
            raise ReplyError(errors.SYNTAX)
        signed, bits = parse_field_type(args[j + 1])
        offset = parse_bit_offset(args[j + 2], bits)
        number = parse_int(args[j + 3]) if opcode != _GET else 0
        ops.append(FieldOp(opcode, signed, bits, offset, number, overflow))
        j += needed + 1
    return ops


def field_limits(op: FieldOp) -> tuple[int, int]:
    """The smallest and largest number the op's field can hold."""
    if op.signed:
        return -(1 << (op.bits - 1)), (1 << (op.bits - 1)) - 1
    return 0, (1 << op.bits) - 1


def fit_field(op: FieldOp, number: int) -> int | None:
    """``number`` made to fit the field by the op's OVERFLOW mode; None when FAIL refuses."""
    low, high = field_limits(op)
    if low <= number <= high:
        return number
    if op.overflow == _FAIL:
        return None
    if op.overflow == _SAT:
        return high if number > high else low
    wrapped = number & ((1 << op.bits) - 1)
    if op.signed and wrapped > high:
        wrapped -= 1 << op.bits
    return wrapped


def run_field_write(buffer: bytearray, op: FieldOp) -> tuple[object, bool]:
    """SET or INCRBY: (the reply, whether the bits changed).

    SET's value is a C ``int64``; for an unsigned field Redis reads it as ``uint64``, so a
    negative value overflows upwards (``OVERFLOW SAT SET u8 0 -1`` stores 255).
    """
    old = read_field(buffer, op.offset, op.bits, op.signed)
    if op.opcode == _INCRBY:
        new = fit_field(op, old + op.number)
    else:
        new = fit_field(op, op.number if op.signed else op.number % _INT64)
    if new is None:
        return None, False
    write_field(buffer, op.offset, op.bits, new)
    return (new if op.opcode == _INCRBY else old), new != old


def bitfield_generic(db: Keyspace, args: list[bytes], read_only: bool) -> object:
    """BITFIELD and BITFIELD_RO.  Every subcommand is parsed before the key is touched, so a
    bad one changes nothing; only GETs read without creating the key or re-encoding it, and
    with any write the string is grown once, to the farthest bit written, before the first
    op runs (a GET after a SET in one call sees the SET)."""
    ops = parse_bitfield(args)
    writes = [op for op in ops if op.opcode != _GET]
    key = args[1]
    if not writes:
        value: StringValue = db.get_string(key) or b""
        return [read_field(value, op.offset, op.bits, op.signed) for op in ops]
    if read_only:
        raise ReplyError(errors.BITFIELD_RO_GET_ONLY)
    highest = max(op.offset + op.bits - 1 for op in writes)
    buffer, changed = writable_bitmap(db, key, (highest >> 3) + 1)
    replies: list[object] = []
    for op in ops:
        if op.opcode == _GET:
            replies.append(read_field(buffer, op.offset, op.bits, op.signed))
            continue
        reply, modified = run_field_write(buffer, op)
        replies.append(reply)
        changed = changed or modified
    if changed:
        db.changed(key)
    return replies


@command("bitfield", -2, "write denyoom", keys=(1, 1, 1), acl="write bitmap slow",
         group="bitmap")
def bitfield_command(db: Keyspace, args: list[bytes]) -> object:
    return bitfield_generic(db, args, read_only=False)


@command("bitfield_ro", -2, "readonly fast", keys=(1, 1, 1), acl="read bitmap fast",
         group="bitmap")
def bitfield_ro_command(db: Keyspace, args: list[bytes]) -> object:
    return bitfield_generic(db, args, read_only=True)
