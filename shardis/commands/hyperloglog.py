"""HyperLogLog commands and codec: Redis 7.0's hyperloglog.c, byte for byte.

An HLL is a plain string (TYPE string, GET returns it) laid out as Redis lays it out, so that
GET, DUMP, SET of a copied value and every estimate agree with a real Redis:

* a 16-byte header: ``HYLL``, the encoding (0 dense, 1 sparse), three unused bytes, and the
  cached cardinality (8 bytes little endian; the top bit of the last byte set = invalid);
* *dense*: 16384 registers of 6 bits packed from the least significant bit of each byte
  (12288 bytes);
* *sparse*: run-length opcodes, ZERO ``00xxxxxx`` (1-64 zero registers), XZERO
  ``01xxxxxx yyyyyyyy`` (1-16384 zero registers), VAL ``1vvvvvxx`` (1-4 registers of value
  1-32).  A new HLL is sparse; it turns dense when a register needs a value above 32 or the
  string would grow past ``hll-sparse-max-bytes`` (3000).

The sparse encoding of an HLL depends on the order its registers were set in (Redis edits the
opcodes in place and only merges neighbours it happens to look at), so :class:`SparseEdit`
replays Redis's ``hllSparseSet`` step by step, on a list of opcodes rather than on the string
so that each step costs a bisection and a list splice (and a PFADD of one element opens only
the few opcodes around its register).  Dense registers are read and written in bulk with
``bytes.translate`` and big-integer arithmetic (the 16384 registers of a PFCOUNT or PFMERGE
never go through a Python loop), and one at a time for PFADD.

Corrupt strings (written with SET) get Redis's errors at the moment Redis finds them, and
what Redis changes before that is changed too; they never cost more memory than their size
(runs are summed before registers are built, a body too long to be valid is not expanded).
One corner is not reproduced: a sparse body ending in half an XZERO makes Redis read bytes
past the string once it has been edited (after a SET, the NUL terminator is read, as here).

The values are kept as ``bytearray`` (Redis's ``raw`` strings: Redis unshares an HLL before
it edits it) and edited in place; commands call ``db.changed`` when Redis signals the change.
Cross-worker PFCOUNT and PFMERGE gather the strings with ``__pfgather`` and merge them in the
router (``shardis.router.hyperloglog``), and PFMERGE writes its destination with
``__pfstore``, which runs the same code as a local PFMERGE.
"""

from __future__ import annotations

import math
import random
import re
import struct
from bisect import bisect_right
from itertools import accumulate

from shardis import errors
from shardis.commands import Fanout, command
from shardis.commands.hashes import commit
from shardis.errors import ReplyError
from shardis.resp import OK, Status
from shardis.worker.keyspace import Keyspace

HLL_P = 14
HLL_Q = 64 - HLL_P
HLL_REGISTERS = 1 << HLL_P
HLL_P_MASK = HLL_REGISTERS - 1
HLL_BITS = 6
HLL_REGISTER_MAX = (1 << HLL_BITS) - 1
HLL_HDR_SIZE = 16
HLL_DENSE_BYTES = HLL_REGISTERS * HLL_BITS // 8
HLL_DENSE_SIZE = HLL_HDR_SIZE + HLL_DENSE_BYTES
HLL_DENSE, HLL_SPARSE = 0, 1
HLL_MAX_ENCODING = 1
MAGIC = b"HYLL"
#: Redis's ``hll-sparse-max-bytes`` default (header included).
HLL_SPARSE_MAX_BYTES = 3000
SPARSE_VAL_MAX_VALUE = 32
SPARSE_VAL_MAX_LEN = 4
SPARSE_ZERO_MAX_LEN = 64
SPARSE_XZERO_MAX_LEN = 16384
HLL_ALPHA_INF = 0.721347520444481703680  # 0.5 / ln(2)
HASH_SEED = 0xADC83B19
#: Byte 15 (the last of the cached cardinality): its top bit marks the cache invalid.
CACHE_FLAG_BYTE = 15

INVALID_HLL = "WRONGTYPE Key is not a valid HyperLogLog string value."
INVALIDOBJ = "INVALIDOBJ Corrupted HLL object detected"
PFDEBUG_NO_KEY = "ERR The specified key does not exist"
PFDEBUG_NOT_SPARSE = "ERR HLL encoding is not sparse"

_M64 = (1 << 64) - 1
_MURMUR_M = 0xC6A4A7935BD1E995
_UNSIGNED_LONG_LONG = struct.Struct("<Q")


# Hashing -------------------------------------------------------------------------------------
def murmurhash64a(data: bytes | bytearray, seed: int = HASH_SEED) -> int:
    """Redis's MurmurHash64A (endian-neutral: blocks read little endian)."""
    m = _MURMUR_M
    length = len(data)
    h = (seed ^ (length * m)) & _M64
    blocks = length & ~7
    for (k,) in _UNSIGNED_LONG_LONG.iter_unpack(data[:blocks]):
        k = (k * m) & _M64
        k ^= k >> 47
        k = (k * m) & _M64
        h = ((h ^ k) * m) & _M64
    if length & 7:
        h = ((h ^ int.from_bytes(data[blocks:], "little")) * m) & _M64
    h ^= h >> 47
    h = (h * m) & _M64
    return h ^ (h >> 47)


def pattern_of(element: bytes | bytearray) -> tuple[int, int]:
    """Redis's ``hllPatLen``: (register index, length of the ``000..1`` run + 1 ending it)."""
    hash_ = murmurhash64a(element)
    rest = (hash_ >> HLL_P) | (1 << HLL_Q)  # the loop ends at bit Q at the latest
    return hash_ & HLL_P_MASK, (rest & -rest).bit_length()


# Dense registers -----------------------------------------------------------------------------
def dense_get(hll: bytes | bytearray, index: int) -> int:
    """Register ``index`` of a dense HLL string (header included)."""
    byte = HLL_HDR_SIZE + index * HLL_BITS // 8
    shift = index * HLL_BITS & 7
    b1 = hll[byte + 1] if byte + 1 < len(hll) else 0  # past the end: sds's NUL terminator
    return ((hll[byte] >> shift) | (b1 << (8 - shift))) & HLL_REGISTER_MAX


def dense_set(hll: bytearray, index: int, value: int) -> None:
    """Redis's ``HLL_DENSE_SET_REGISTER``."""
    byte = HLL_HDR_SIZE + index * HLL_BITS // 8
    shift = index * HLL_BITS & 7
    hll[byte] = (hll[byte] & ~(HLL_REGISTER_MAX << shift) | (value << shift)) & 0xFF
    if byte + 1 < len(hll):
        rshift = 8 - shift
        hll[byte + 1] = (hll[byte + 1] & ~(HLL_REGISTER_MAX >> rshift) | (value >> rshift)) & 0xFF


def dense_raise(hll: bytearray, index: int, count: int) -> int:
    """Redis's ``hllDenseSet``: 1 if register ``index`` grew to ``count``, else 0."""
    if count > dense_get(hll, index):
        dense_set(hll, index, count)
        return 1
    return 0


def _table(fn: object) -> bytes:
    return bytes(fn(b) & 0xFF for b in range(256))  # type: ignore[operator]


_LOW6 = _table(lambda b: b & 63)
_SHR6 = _table(lambda b: b >> 6)
_SHR4 = _table(lambda b: b >> 4)
_SHR2 = _table(lambda b: b >> 2)
_LOW4_SHL2 = _table(lambda b: (b & 15) << 2)
_LOW2_SHL4 = _table(lambda b: (b & 3) << 4)
_SHL6 = _table(lambda b: b << 6)
_LOW4_SHL4 = _table(lambda b: (b & 15) << 4)
_SHL2 = _table(lambda b: b << 2)


def _or(a: bytes, b: bytes) -> bytes:
    """Bytewise OR of two equal-length strings (in C, through big integers)."""
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(len(a), "little")


def unpack_dense(body: bytes | bytearray) -> bytes:
    """The 16384 registers (one byte each) of a dense body: every 3 bytes hold 4 registers,
    ``r0 = b0 & 63``, ``r1 = b0 >> 6 | (b1 & 15) << 2``, ``r2 = b1 >> 4 | (b2 & 3) << 4``,
    ``r3 = b2 >> 2``; done a column at a time."""
    body = bytes(body)
    b0, b1, b2 = body[0::3], body[1::3], body[2::3]
    out = bytearray(HLL_REGISTERS)
    out[0::4] = b0.translate(_LOW6)
    out[1::4] = _or(b0.translate(_SHR6), b1.translate(_LOW4_SHL2))
    out[2::4] = _or(b1.translate(_SHR4), b2.translate(_LOW2_SHL4))
    out[3::4] = b2.translate(_SHR2)
    return bytes(out)


def pack_dense(registers: bytes | bytearray) -> bytes:
    """The dense body holding ``registers`` (values 0-63): the inverse of
    :func:`unpack_dense`."""
    registers = bytes(registers)
    r0, r1, r2, r3 = registers[0::4], registers[1::4], registers[2::4], registers[3::4]
    out = bytearray(HLL_DENSE_BYTES)
    out[0::3] = _or(r0, r1.translate(_SHL6))
    out[1::3] = _or(r1.translate(_SHR2), r2.translate(_LOW4_SHL4))
    out[2::3] = _or(r2.translate(_SHR4), r3.translate(_SHL2))
    return bytes(out)


_HIGH_BITS = int.from_bytes(b"\x80" * HLL_REGISTERS, "little")


def max_registers(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    """Per-register maximum of two register arrays (values below 128): SWAR on big ints.

    In each byte lane ``(a | 0x80) - b`` cannot borrow from the next lane and keeps its top
    bit exactly when ``a >= b``; that bit, spread to a whole-lane mask, picks ``a`` or ``b``.
    """
    x, y = int.from_bytes(a, "little"), int.from_bytes(b, "little")
    ge = (((x | _HIGH_BITS) - y) & _HIGH_BITS) >> 7
    mask = (ge << 8) - ge
    return ((x & mask) | (y & ~mask)).to_bytes(HLL_REGISTERS, "little")


# Sparse opcodes ------------------------------------------------------------------------------
# An opcode is handled as one int, its *code*: the byte itself for ZERO (0-63) and VAL
# (128-255), ``256 + n`` for XZERO (``n`` = run length - 1).  Codes index flat tables (spans,
# bytes, registers) and a run of one-byte opcodes converts to codes at C speed.
XZERO_BASE = 256
#: XZERO (two bytes), or a run of one-byte opcodes (ZERO/VAL).
_CHUNK = re.compile(rb"[\x40-\x7f][\x00-\xff]|[^\x40-\x7f]+")
#: code -> number of registers it covers (codes 64-127 are never made).
SPAN = [b + 1 if b < 0x40 else (b & 3) + 1 for b in range(256)] + \
    list(range(1, SPARSE_XZERO_MAX_LEN + 1))
#: code -> its bytes.
OPCODE_BYTES = [bytes([b]) for b in range(256)] + \
    [bytes([0x40 | (n >> 8), n & 0xFF]) for n in range(SPARSE_XZERO_MAX_LEN)]
#: one-byte code -> the registers it stands for.
_REGISTERS_OF = [bytes(b + 1) if b < 0x40 else bytes([((b >> 2) & 0x1F) + 1]) * ((b & 3) + 1)
                 for b in range(256)]


def zero_code(length: int) -> int:
    """ZERO for 1-64 registers, XZERO above (Redis's choice when it splits a zero run)."""
    return XZERO_BASE + length - 1 if length > SPARSE_ZERO_MAX_LEN else length - 1


def val_code(value: int, length: int) -> int:
    return ((value - 1) << 2 | (length - 1)) | 0x80


def val_value(code: int) -> int:
    return ((code >> 2) & 0x1F) + 1


def is_val(code: int) -> bool:
    return 0x80 <= code < XZERO_BASE


def parse_opcodes(body: bytes | bytearray) -> tuple[list[int], bool]:
    """The opcode codes of a sparse body, and whether the last is an XZERO cut after its
    first byte: Redis then reads sds's NUL terminator as its second byte, and so do we (the
    terminator is given back when the body is written out, see :meth:`SparseEdit.body`)."""
    codes: list[int] = []
    for chunk in _CHUNK.findall(bytes(body) + b"\0"):
        if 0x40 <= chunk[0] < 0x80:
            codes.append(XZERO_BASE + ((chunk[0] & 0x3F) << 8 | chunk[1]))
        else:
            codes.extend(chunk)
    if codes[-1] >= XZERO_BASE:
        return codes, True
    codes.pop()  # the terminator we added, read as a ZERO: not part of the body
    return codes, False


#: A valid sparse body has at most 16384 opcodes of at most 2 bytes: a longer one is corrupt.
MAX_VALID_SPARSE_BODY = 2 * HLL_REGISTERS
#: Opcodes an edit can read: up to the one holding register 16383 (the 16384th at worst),
#: the five the merge step scans from the one before it, and the one it compares with.
EDIT_WINDOW = HLL_REGISTERS + 8


def sparse_registers(codes: list[int]) -> bytes | None:
    """The registers of a sparse HLL, or None if its runs do not cover exactly 16384
    registers (Redis's validity check in ``hllSparseToDense``, ``hllMerge``, ``hllCount``).
    The runs are summed first: corrupt XZEROs may stand for far more than 16384 zeros."""
    if sum(map(SPAN.__getitem__, codes)) != HLL_REGISTERS:
        return None
    table = _REGISTERS_OF
    registers = b"".join([table[c] if c < XZERO_BASE else bytes(c - XZERO_BASE + 1)
                          for c in codes])
    return registers if len(registers) == HLL_REGISTERS else None


def decode_sparse(codes: list[int]) -> bytes:
    """PFDEBUG DECODE's text: ``z:len``, ``Z:len``, ``v:value,len``."""
    parts = []
    for code in codes:
        span = SPAN[code]
        if code >= XZERO_BASE:
            parts.append(f"Z:{span}")
        elif code >= 0x80:
            parts.append(f"v:{val_value(code)},{span}")
        else:
            parts.append(f"z:{span}")
    return " ".join(parts).encode()


def _byte_length(codes: list[int]) -> int:
    return len(codes) + sum(1 for code in codes if code >= XZERO_BASE)


#: one-byte opcode -> registers covered (0 for an XZERO's first byte: see :func:`_locate`).
_SPAN_OF_BYTE = bytes(b + 1 if b < 0x40 else 0 if b < 0x80 else (b & 3) + 1 for b in range(256))


def _locate(body: bytes, index: int) -> tuple[int, int] | None:
    """Where an edit of register ``index`` starts reading: (byte offset, first register) of
    the opcode before the one holding it (of that one if it is the first); None if the runs
    end before.  Runs of one-byte opcodes are summed at C speed, XZEROs one by one."""
    first = 0
    previous: tuple[int, int] | None = None
    for match in _CHUNK.finditer(body + b"\0"):  # the NUL: sds's terminator
        chunk = match.group()
        if 0x40 <= chunk[0] < 0x80:
            span = ((chunk[0] & 0x3F) << 8 | chunk[1]) + 1
            if index < first + span:
                return previous or (match.start(), first)
            previous = (match.start(), first)
            first += span
            continue
        spans = chunk.translate(_SPAN_OF_BYTE)
        total = sum(spans)
        if index < first + total:
            ends = list(accumulate(spans))
            k = bisect_right(ends, index - first)
            if match.start() + k >= len(body):
                return None  # the terminator, not an opcode
            if k:
                return match.start() + k - 1, first + (ends[k - 2] if k > 1 else 0)
            return previous or (match.start(), first)
        previous = (match.end() - 1, first + total - spans[-1])
        first += total
    return None


#: hllSparseSet outcomes besides 0/1 (unchanged/changed).
INVALID, PROMOTE = -1, 2


class SparseEdit:
    """A sparse HLL opened for a sequence of Redis's ``hllSparseSet`` calls.

    ``codes[i]`` covers the registers from ``ends[i-1]`` (``base`` for the first) to
    ``ends[i] - 1``; an edit splits or merges opcodes without moving any other register
    boundary, so ``ends`` stays sorted and locating a register is a bisection.
    ``length`` is the string's length, which decides promotion to dense.

    The opcodes may be a window of the body, between an opaque ``prefix`` and ``tail``:

    * :meth:`around` opens just the few opcodes one edit can touch (a PFADD of one element
      then costs a C-speed scan, not a parse of the whole body);
    * a (corrupt) body longer than :data:`EDIT_WINDOW` opcodes is opened as that many
      opcodes, since no edit reads past them.
    """

    __slots__ = ("header", "prefix", "base", "codes", "ends", "tail", "cut", "length")

    def __init__(self, hll: bytes | bytearray) -> None:
        body = hll[HLL_HDR_SIZE:]
        if len(body) > 2 * EDIT_WINDOW + 2:
            codes = parse_opcodes(body[:2 * EDIT_WINDOW + 2])[0][:EDIT_WINDOW]  # all whole
            self._open(hll, b"", 0, codes, bytes(body[_byte_length(codes):]), False)
        else:
            codes, cut = parse_opcodes(body)
            self._open(hll, b"", 0, codes, b"", cut)

    def _open(self, hll: bytes | bytearray, prefix: bytes, base: int, codes: list[int],
              tail: bytes, cut: bool) -> None:
        self.header = bytearray(hll[:HLL_HDR_SIZE])
        self.prefix, self.base, self.codes, self.tail, self.cut = prefix, base, codes, tail, cut
        self.ends = list(accumulate(map(SPAN.__getitem__, codes), initial=base))[1:]
        self.length = len(hll)

    @classmethod
    def around(cls, hll: bytes | bytearray, index: int) -> SparseEdit:
        """The HLL opened on the opcodes an edit of register ``index`` can touch: the one
        before the opcode holding it, that one, and the next ten (Redis's merge step looks
        at five at most).  The whole body when the register is past the runs' end."""
        body = bytes(hll[HLL_HDR_SIZE:])
        found = _locate(body, index) if len(body) <= 2 * EDIT_WINDOW + 2 else None
        if found is None:
            return cls(hll)
        start, base = found
        window = body[start:start + 26]
        edit = cls.__new__(cls)
        if start + 26 >= len(body):
            codes, cut = parse_opcodes(window)
            edit._open(hll, body[:start], base, codes, b"", cut)
        else:
            codes = parse_opcodes(window)[0][:12]  # whole opcodes (26 bytes hold 13 at least)
            edit._open(hll, body[:start], base, codes, body[start + _byte_length(codes):],
                       False)
        return edit

    def body(self) -> bytes:
        joined = b"".join(map(OPCODE_BYTES.__getitem__, self.codes))
        return self.prefix + (joined[:-1] if self.cut else joined + self.tail)

    def value(self) -> bytes:
        return bytes(self.header) + self.body()

    def registers(self) -> bytes | None:
        if not self.prefix and not self.tail:
            return sparse_registers(self.codes)
        body = self.body()
        if len(body) > MAX_VALID_SPARSE_BODY:
            return None
        return sparse_registers(parse_opcodes(body)[0])

    def set(self, index: int, count: int) -> int:
        """Raise register ``index`` to ``count``: 1 if changed, 0 if it was not lower,
        :data:`INVALID` for a corrupt HLL, :data:`PROMOTE` when Redis would turn dense (the
        caller converts, and sets the register there)."""
        if count > SPARSE_VAL_MAX_VALUE:
            return PROMOTE
        codes, ends = self.codes, self.ends
        i = bisect_right(ends, index)
        if i >= len(codes):
            return INVALID  # the runs end before this register
        code = codes[i]
        first = ends[i - 1] if i else self.base
        span = ends[i] - first
        if is_val(code):
            if val_value(code) >= count:
                return 0
            if span == 1:
                codes[i] = val_code(count, 1)
                return self._updated(i)
        elif code < 0x40 and span == 1:
            codes[i] = val_code(count, 1)
            return self._updated(i)
        seq, seq_ends = self._split(code, first, first + span - 1, index, count)
        delta = sum(2 if c >= XZERO_BASE else 1 for c in seq) - (2 if code >= XZERO_BASE else 1)
        if delta > 0 and self.length + delta > HLL_SPARSE_MAX_BYTES:
            return PROMOTE
        codes[i:i + 1] = seq
        ends[i:i + 1] = seq_ends
        self.length += delta
        return self._updated(i)

    @staticmethod
    def _split(code: int, first: int, last: int, index: int,
               count: int) -> tuple[list[int], list[int]]:
        """The 1-3 opcodes replacing ``code`` (registers first..last) once register
        ``index`` is ``count``: Redis's case D."""
        seq: list[int] = []
        seq_ends: list[int] = []
        value = val_value(code) if is_val(code) else 0
        if index != first:
            seq.append(val_code(value, index - first) if value else zero_code(index - first))
            seq_ends.append(index)
        seq.append(val_code(count, 1))
        seq_ends.append(index + 1)
        if index != last:
            seq.append(val_code(value, last - index) if value else zero_code(last - index))
            seq_ends.append(last + 1)
        return seq, seq_ends

    def _updated(self, i: int) -> int:
        """Redis's step 4: merge equal adjacent VAL opcodes, scanning up to 5 opcodes from
        the one before the edit; then invalidate the cached cardinality."""
        codes, ends = self.codes, self.ends
        k = i - 1 if i else 0
        budget = 5
        while k < len(codes) and budget:
            budget -= 1
            code = codes[k]
            if not is_val(code):
                k += 1
                continue
            if k + 1 < len(codes) and is_val(codes[k + 1]):
                value = val_value(code)
                if value == val_value(codes[k + 1]):
                    length = SPAN[code] + SPAN[codes[k + 1]]
                    if length <= SPARSE_VAL_MAX_LEN:
                        codes[k:k + 2] = [val_code(value, length)]
                        del ends[k]
                        self.length -= 1
                        continue
            k += 1
        self.header[CACHE_FLAG_BYTE] |= 0x80
        return 1

    def to_dense(self) -> bytearray | None:
        """Redis's ``hllSparseToDense``: the dense string (header copied, encoding dense),
        or None if the runs are corrupt."""
        registers = self.registers()
        if registers is None:
            return None
        header = bytearray(self.header)
        header[4] = HLL_DENSE
        return header + pack_dense(registers)


# The HLL value -------------------------------------------------------------------------------
def new_hll() -> bytearray:
    """Redis's ``createHLLObject``: sparse, one XZERO covering all 16384 registers."""
    return bytearray(MAGIC + bytes([HLL_SPARSE]) + bytes(11) +
                     OPCODE_BYTES[zero_code(HLL_REGISTERS)])


def is_valid_hll(value: bytes | bytearray) -> bool:
    """Redis's ``isHLLObjectOrReply`` checks once the value is known to be a string."""
    return (
        len(value) >= HLL_HDR_SIZE
        and value[:4] == MAGIC
        and value[4] <= HLL_MAX_ENCODING
        and (value[4] != HLL_DENSE or len(value) == HLL_DENSE_SIZE)
    )


def hll_or_error(value: object) -> bytes | bytearray:
    """``value`` (a live key's) if it is a valid HLL; WRONGTYPE otherwise (Redis's two
    texts: another type, or a string that is not an HLL)."""
    if type(value) is not bytes and type(value) is not bytearray:
        raise ReplyError(errors.WRONGTYPE)
    if not is_valid_hll(value):  # type: ignore[arg-type]
        raise ReplyError(INVALID_HLL)
    return value  # type: ignore[return-value]


def registers_of(hll: bytes | bytearray) -> bytes:
    """The registers of a valid HLL; INVALIDOBJ for a sparse one with corrupt runs."""
    if hll[4] == HLL_DENSE:
        return unpack_dense(hll[HLL_HDR_SIZE:])
    body = hll[HLL_HDR_SIZE:]
    registers = None
    if len(body) <= MAX_VALID_SPARSE_BODY:
        registers = sparse_registers(parse_opcodes(body)[0])
    if registers is None:
        raise ReplyError(INVALIDOBJ)
    return registers


# Estimation ----------------------------------------------------------------------------------
def hll_sigma(x: float) -> float:
    """Ertl's sigma (arXiv:1702.01284), as Redis computes it."""
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if previous == z:
            return z


def hll_tau(x: float) -> float:
    """Ertl's tau (arXiv:1702.01284), as Redis computes it."""
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1 - x) ** 2 * y
        if previous == z:
            return z / 3


_SINGLE_BYTES = [bytes((value,)) for value in range(64)]


def histogram(registers: bytes) -> list[int]:
    """How many registers hold each value 0-63.  Values are small (a register is about
    log2 of the cardinality), so counting stops once every register is accounted for."""
    hist = [0] * 64
    left = len(registers)
    for value, needle in enumerate(_SINGLE_BYTES):
        if not left:
            break
        found = registers.count(needle)  # a bytes needle: C's fast path
        hist[value] = found
        left -= found
    return hist


def estimate(registers: bytes) -> int:
    """Redis's ``hllCount`` (the improved estimator of 7.0) over raw registers, as the
    uint64 Redis computes: ``llroundl`` of a non-finite or too large estimate gives 2**63,
    as the x86-64 conversion does."""
    m = float(HLL_REGISTERS)
    hist = histogram(registers)
    z = m * hll_tau((m - hist[HLL_Q + 1]) / m)
    for j in range(HLL_Q, 0, -1):
        z += hist[j]
        z *= 0.5
    z += m * hll_sigma(hist[0] / m)
    numerator = HLL_ALPHA_INF * m * m
    e = numerator / z if z else math.inf
    if not math.isfinite(e) or e >= 2.0**63:
        return 1 << 63
    whole = math.floor(e)
    return whole + 1 if e - whole >= 0.5 else whole


def as_signed(card: int) -> int:
    """The uint64 cardinality as ``addReplyLongLong`` shows it."""
    return card - (1 << 64) if card >= 1 << 63 else card


def count_cached(hll: bytearray) -> tuple[int, bool]:
    """Single-key PFCOUNT on a valid HLL: (cardinality, whether the cache was written)."""
    if not hll[CACHE_FLAG_BYTE] & 0x80:
        return int.from_bytes(hll[8:16], "little"), False
    card = estimate(registers_of(hll))
    hll[8:16] = card.to_bytes(8, "little")
    return card, True


# Editing values in a keyspace ----------------------------------------------------------------
def unshared(db: Keyspace, key: bytes, value: bytes | bytearray) -> bytearray:
    """Redis's ``dbUnshareStringValue``: the value as a bytearray to edit in place."""
    if type(value) is bytearray:
        return value
    copy = bytearray(value)
    db.reencode(key, copy)
    return copy


class HllEdit:
    """An HLL value being edited by one command: in place when dense, through a
    :class:`SparseEdit` when sparse (written back by :meth:`commit`)."""

    __slots__ = ("value", "sparse")

    def __init__(self, value: bytearray, only: int | None = None) -> None:
        """``only``: the one register the command will set, if it sets one (a sparse HLL is
        then opened around it only)."""
        self.value = value
        self.sparse = None
        if value[4] == HLL_SPARSE:
            self.sparse = SparseEdit(value) if only is None else SparseEdit.around(value, only)

    def add(self, element: bytes) -> int:
        """Redis's ``hllAdd``: 1 if a register grew, 0 if not, -1 for a corrupt HLL."""
        index, count = pattern_of(element)
        return self.set(index, count)

    def set(self, index: int, count: int) -> int:
        """Redis's ``hllSparseSet``/``hllDenseSet`` (promoting as Redis does)."""
        if self.sparse is None:
            return dense_raise(self.value, index, count)
        outcome = self.sparse.set(index, count)
        if outcome != PROMOTE:
            return outcome
        if not self.to_dense():
            return INVALID
        return dense_raise(self.value, index, count)

    def to_dense(self) -> bool:
        """Convert a sparse HLL (False if its runs are corrupt); already dense: True."""
        if self.sparse is None:
            return True
        dense = self.sparse.to_dense()
        if dense is None:
            return False
        self.value[:] = dense
        self.sparse = None
        return True

    def invalidate_cache(self) -> None:
        header = self.value if self.sparse is None else self.sparse.header
        header[CACHE_FLAG_BYTE] |= 0x80

    def commit(self) -> None:
        if self.sparse is not None:
            self.value[:] = self.sparse.value()


def merge_values(values: list[bytes | bytearray | None]) -> tuple[bytes, bool]:
    """Redis's merge loop of PFCOUNT (several keys) and PFMERGE over the values at their
    keys, in key order (None: missing, an empty HLL): (max registers, whether any is
    dense).  The first bad value raises its error, as Redis stops at it."""
    merged = bytes(HLL_REGISTERS)
    any_dense = False
    for value in values:
        if value is None:
            continue
        hll = hll_or_error(value)
        any_dense = any_dense or hll[4] == HLL_DENSE
        merged = max_registers(merged, registers_of(hll))
    return merged, any_dense


_NONZERO = re.compile(rb"[^\x00]")


def store_merged(db: Keyspace, key: bytes, registers: bytes, use_dense: bool) -> object:
    """PFMERGE's write: raise the registers of the HLL at ``key`` (created if missing) to
    ``registers``, dense first if ``use_dense``; always a change and a ``pfadd`` event."""
    existing = db.get(key)
    if existing is None:
        value = new_hll()
    else:
        value = unshared(db, key, hll_or_error(existing))
    edit = HllEdit(value)
    if use_dense and not edit.to_dense():
        raise ReplyError(INVALIDOBJ)
    if edit.sparse is not None:
        for match in _NONZERO.finditer(registers):  # in register order, as Redis
            edit.set(match.start(), registers[match.start()])  # Redis ignores the outcome
            if edit.sparse is None:  # promoted: the rest is a dense max
                break
    if edit.sparse is None:
        current = unpack_dense(value[HLL_HDR_SIZE:])
        value[HLL_HDR_SIZE:] = pack_dense(max_registers(current, registers))
    edit.invalidate_cache()
    edit.commit()
    commit(db, key, value, created=existing is None)
    return OK


# Commands ------------------------------------------------------------------------------------
@command("pfadd", -2, "write denyoom fast", keys=(1, 1, 1), acl="write hyperloglog fast",
         group="hyperloglog")
def pfadd_command(db: Keyspace, args: list[bytes]) -> object:
    key = args[1]
    existing = db.get(key)
    if existing is None:
        value = new_hll()
        updated = 1
    else:
        value = unshared(db, key, hll_or_error(existing))
        updated = 0
    patterns = [pattern_of(element) for element in args[2:]]
    edit = HllEdit(value, patterns[0][0] if len(patterns) == 1 else None)
    for index, count in patterns:
        outcome = edit.set(index, count)
        if outcome < 0:
            edit.commit()  # what was done stays, unsignalled, as in Redis
            raise ReplyError(INVALIDOBJ)
        updated += outcome
    if updated:
        edit.invalidate_cache()
        edit.commit()
        commit(db, key, value, created=existing is None)
    return 1 if updated else 0


@command("pfcount", -2, "readonly may_replicate", keys=(1, -1, 1), fanout=Fanout.COORDINATED,
         acl="read hyperloglog slow", group="hyperloglog")
def pfcount_command(db: Keyspace, args: list[bytes]) -> object:
    """One key: the cached cardinality, computed and cached if stale (a change Redis
    propagates, though the command counts as read-only).  Several keys (all on this worker):
    the cardinality of their union, nothing cached.  ``may_replicate`` (hidden from COMMAND
    INFO, as in Redis) keeps it out of read-only scripts."""
    if len(args) > 2:
        return as_signed(estimate(merge_values([db.get(key) for key in args[1:]])[0]))
    key = args[1]
    existing = db.get(key)
    if existing is None:
        return 0
    value = unshared(db, key, hll_or_error(existing))
    card, written = count_cached(value)
    if written:
        db.changed(key)
    return as_signed(card)


@command("pfmerge", -2, "write denyoom", keys=(1, -1, 1), fanout=Fanout.COORDINATED,
         acl="write hyperloglog slow", group="hyperloglog")
def pfmerge_command(db: Keyspace, args: list[bytes]) -> object:
    """All keys on this worker.  The destination is a source too (Redis merges from
    ``argv[1]``)."""
    registers, use_dense = merge_values([db.get(key) for key in args[1:]])
    return store_merged(db, args[1], registers, use_dense)


@command("pfdebug", 3, "write denyoom admin", keys=(2, 2, 1),
         acl="write hyperloglog admin slow dangerous", group="hyperloglog")
def pfdebug_command(db: Keyspace, args: list[bytes]) -> object:
    """GETREG, DECODE, ENCODING, TODENSE.  GETREG and TODENSE turn a sparse HLL dense (Redis
    propagates that, without signalling the key)."""
    key = args[2]
    existing = db.get(key)
    if existing is None:
        raise ReplyError(PFDEBUG_NO_KEY)
    value = unshared(db, key, hll_or_error(existing))
    sub = args[1].split(b"\0", 1)[0].lower()  # Redis compares it as a C string
    if sub == b"getreg":
        _todense_or_error(db, key, value)
        return list(unpack_dense(value[HLL_HDR_SIZE:]))
    if sub == b"decode":
        if value[4] != HLL_SPARSE:
            raise ReplyError(PFDEBUG_NOT_SPARSE)
        return decode_sparse(parse_opcodes(value[HLL_HDR_SIZE:])[0])
    if sub == b"encoding":
        return Status(b"dense" if value[4] == HLL_DENSE else b"sparse")
    if sub == b"todense":
        return 1 if _todense_or_error(db, key, value) else 0
    name = errors.arg_text(args[1]).replace("\r", " ").replace("\n", " ")
    raise ReplyError(f"ERR Unknown PFDEBUG subcommand '{name}'")


def _todense_or_error(db: Keyspace, key: bytes, value: bytearray) -> bool:
    """Make a sparse HLL dense in place; True if it was sparse."""
    if value[4] == HLL_DENSE:
        return False
    edit = HllEdit(value)
    if not edit.to_dense():
        raise ReplyError(INVALIDOBJ)
    db.changed(key)
    return True


# PFSELFTEST ----------------------------------------------------------------------------------
#: Redis runs 1000 register cycles and 10M additions (seconds of C); we run the same checks on
#: fewer, to stay a fraction of a second of Python.
SELFTEST_REGISTER_CYCLES = 3
SELFTEST_LAST_CHECKPOINT = 10_000


@command("pfselftest", 1, "admin", acl="hyperloglog admin slow dangerous", group="hyperloglog")
def pfselftest_command(db: Keyspace, args: list[bytes]) -> object:
    """Redis's self-test of the register packing and of the estimator's error bounds, with
    the dense and the sparse encodings fed the same elements."""
    failure = _selftest_registers() or _selftest_estimates()
    if failure:
        raise ReplyError(f"ERR TESTFAILED {failure}")
    return OK


def _selftest_registers() -> str | None:
    rng = random.Random()
    hll = bytearray(HLL_DENSE_SIZE)
    for _ in range(SELFTEST_REGISTER_CYCLES):
        expected = bytes(rng.randrange(64) for _ in range(HLL_REGISTERS))
        for index, value in enumerate(expected):
            dense_set(hll, index, value)
        for index, value in enumerate(expected):
            got = dense_get(hll, index)
            if got != value:
                return f"Register {index} should be {value} but is {got}"
        if unpack_dense(hll[HLL_HDR_SIZE:]) != expected or \
                pack_dense(expected) != hll[HLL_HDR_SIZE:]:
            return "bulk register access disagrees"
    return None


def _selftest_estimates() -> str | None:
    dense = bytearray(MAGIC + bytes(12)) + bytes(HLL_DENSE_BYTES)
    sparse = HllEdit(new_hll())
    relerr = 1.04 / math.sqrt(HLL_REGISTERS)
    seed = random.getrandbits(64)
    checkpoint = 1
    for j in range(1, SELFTEST_LAST_CHECKPOINT + 1):
        element = _UNSIGNED_LONG_LONG.pack(j ^ seed)
        index, count = pattern_of(element)
        dense_raise(dense, index, count)
        sparse.set(index, count)
        if j != checkpoint:
            continue
        if j < HLL_SPARSE_MAX_BYTES // 2 and sparse.sparse is None:
            return "sparse encoding not used"
        card = estimate(unpack_dense(dense[HLL_HDR_SIZE:]))
        sparse.commit()
        if card != estimate(registers_of(sparse.value)):
            return "dense/sparse disagree"
        maxerr = 1 if j == 10 else math.ceil(relerr * 6 * checkpoint)
        if abs(checkpoint - card) > maxerr:
            return f"Too big error. card:{checkpoint} abserr:{abs(checkpoint - card)}"
        checkpoint *= 10
    return None


# Cross-worker support ------------------------------------------------------------------------
#: ``__pfgather`` codes for a key: missing, a string (sent along), another type.
MISSING, STRING, OTHER = 0, 1, 2


@command("__pfgather", -2, "readonly internal", keys=(1, -1, 1))
def internal_pfgather_command(db: Keyspace, args: list[bytes]) -> object:
    """``__pfgather key [key ...]`` -> ``[[code, string], ...]``: the router checks and merges
    them in key order, so that the first bad key is the one Redis reports."""
    out: list[list] = []
    for key in args[1:]:
        value = db.get(key)
        if value is None:
            out.append([MISSING, b""])
        elif type(value) is bytes or type(value) is bytearray:
            out.append([STRING, bytes(value)])
        else:
            out.append([OTHER, b""])
    return out


def value_from_gather(entry: list) -> object:
    """One ``__pfgather`` entry as :func:`merge_values` takes it (another type stands as an
    object that fails the string check)."""
    code, data = entry
    if code == MISSING:
        return None
    return data if code == STRING else object()


@command("__pfstore", 4, "write internal", keys=(1, 1, 1), group="hyperloglog")
def internal_pfstore_command(db: Keyspace, args: list[bytes]) -> object:
    """``__pfstore key use_dense(0|1) registers``: a cross-worker PFMERGE's write (the
    router merged the sources, this key's value among them, under the gate)."""
    registers = args[3]
    if len(registers) != HLL_REGISTERS or max(registers) > HLL_REGISTER_MAX:
        raise ReplyError(errors.SYNTAX)
    return store_merged(db, args[1], bytes(registers), args[2] == b"1")
