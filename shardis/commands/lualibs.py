"""The Lua libraries Redis 7.0 bundles: ``bit``, ``struct``, ``cjson`` and ``cmsgpack``.

Each function is a Python function written after its C original in Redis 7.0.15's
``deps/lua/src`` (``lua_bit.c``, ``lua_struct.c``, ``lua_cjson.c`` with ``fpconv.c``,
``lua_cmsgpack.c``), down to its error texts and its C conversions (``(int64_t)`` of a double
out of range is INT64_MIN, as on x86-64).  They are Python functions rather than Lua code so
that, like the C functions, they keep their caller's frame in a tail call (errors then point
at the user's line) and so that ``bit`` and the float encodings are exact.

Safety (see ``shardis.commands.scripting``): every function reaches Lua through
``_lua_entry``; it receives plain values or lupa objects, returns only numbers, strings,
booleans, None, tables made with the runtime's constructors and the ``cjson.null`` sentinel
(a Lua userdata made by the sandbox), and raises only :class:`LuaError` (text).  Nesting
uses no C stack: the encoders and decoders stop at Redis's limits (cjson's depth 1000,
cmsgpack's 16 levels when packing, Lua's 8000 stack slots when unpacking), and a hostile
msgpack header declaring 2^32 elements allocates nothing before its bytes are there.  What
Python makes for Lua is checked against the interpreter's memory bound first
(:meth:`Libs.room`): lupa allocates it outside a protected call, where a failure would abort
the worker.  Long calls look up from their work as the Lua hook does (:meth:`Libs.tick`):
past busy-reply-threshold the worker answers BUSY and SCRIPT KILL ends the script.

Known differences: a ``-0`` given directly as an argument arrives as ``0`` (lupa converts integral numbers to
Python ints), so ``cjson.encode(-0)`` is ``0`` where Redis writes ``-0`` (a ``-0`` inside a
table is found and kept); everything is 10 to 50 times slower than Redis's C.
"""

from __future__ import annotations

import math
import re
import struct
import sys
from collections.abc import Callable
from typing import Any, NoReturn

MASK64 = (1 << 64) - 1
INT64_MIN = -(1 << 63)
INT_MIN = -(1 << 31)
INT_MAX = (1 << 31) - 1
#: LUAI_MAXCSTACK: how many slots a C function may use on the Lua stack.
MAXCSTACK = 8000
#: Memory kept free in the interpreter when Python makes Lua values (see ``Libs.room``).
MEMORY_MARGIN = 4 * 1024 * 1024
KILLED = b"Script killed by user with SCRIPT KILL..."


class LuaError(Exception):
    """A Lua error whose value is the string ``text`` (luaL_error in a C library)."""

    def __init__(self, text: bytes) -> None:
        super().__init__("script error")
        self.text = text


# Caller information, from the sandbox: (name, namewhat, "source:line: " or "").
CallerInfo = Callable[[], tuple[Any, Any, Any]]


def _text(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


# C conversions ---------------------------------------------------------------------------------
def c_int64(n: float) -> int:
    """``(int64_t)n`` (and ``(lua_Integer)``): truncation; NaN/out of range -> INT64_MIN."""
    if isinstance(n, int):
        return n if INT64_MIN <= n <= -INT64_MIN - 1 else INT64_MIN
    if n != n or not -9223372036854775808.0 <= n < 9223372036854775808.0:
        return INT64_MIN
    return int(n)


def c_int32(n: float) -> int:
    """``(int)n`` for a double: truncation; NaN/out of range -> INT_MIN (cvttsd2si)."""
    if n != n or not -2147483648.0 <= n < 2147483648.0:
        return INT_MIN
    return int(n)


def c_wrap32(n: int) -> int:
    """``(int)`` of a 64-bit integer: its low 32 bits, signed."""
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def c_uint64(n: float) -> int:
    """``(uint64_t)n`` for a double as gcc compiles it on x86-64."""
    if n != n:
        return 0
    if n < 9223372036854775808.0:
        return c_int64(n) & MASK64
    if n < 18446744073709551616.0:
        return int(n)
    return 0


def number_out(n: int) -> int | float:
    """A C integer pushed with lua_pushnumber: as Lua stores it (a double)."""
    return n if -(1 << 53) <= n <= 1 << 53 else float(n)


def fmt_g(n: float, precision: int = 14) -> bytes:
    """C's ``%.<precision>g`` (lua_Number to string, cjson's number format)."""
    if n != n:
        return b"-nan" if math.copysign(1.0, n) < 0 else b"nan"
    return (b"%%.%dg" % precision) % n


_STRTOD = re.compile(
    rb"[ \t\n\v\f\r]*([+-]?)(?:"
    rb"(0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    rb"|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    rb"|([iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
    rb"|([nN][aA][nN](?:\([0-9A-Za-z_]*\))?))"
)


def strtod(data: bytes, pos: int = 0) -> tuple[float, int]:
    """glibc's strtod at ``pos``: (value, end); end == pos when nothing converts."""
    match = _STRTOD.match(data, pos)
    if match is None:
        return 0.0, pos
    sign, hexa, dec, inf, _nan = match.groups()
    if hexa is not None:
        try:
            value = float.fromhex(hexa.decode())
        except OverflowError:
            value = math.inf
    elif dec is not None:
        value = float(dec)
    elif inf is not None:
        value = math.inf
    else:
        value = math.nan
    return (-value if sign == b"-" else value), match.end()


def str2number(data: bytes) -> float | None:
    """Lua 5.1's luaO_str2d on a string (read up to its first NUL): None if not a number."""
    data = data.split(b"\0", 1)[0]
    value, end = strtod(data)
    if end == 0 or data[end:].strip(b" \t\n\v\f\r"):
        return None
    return value


def type_name(value: object, libs: Libs) -> str:
    """Lua's type name for an argument; the Python functions of the ``redis`` table and of
    the libraries stand for C functions, so they are functions."""
    if value is None:
        return "nil"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, bytes):
        return "string"
    if libs.lupa.lua_type(value) is None:
        return "function"
    return _text(libs.lua_type(value)).decode()


class Args:
    """A C library function's arguments and the lauxlib checks on them."""

    __slots__ = ("values", "libs")

    def __init__(self, libs: Libs, values: tuple) -> None:
        self.libs = libs
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def error(self, message: bytes) -> NoReturn:
        """luaL_error: the message after the caller's position."""
        raise LuaError(_text(self.libs.caller()[2]) + message)

    def argerror(self, narg: int, extramsg: bytes) -> NoReturn:
        name, namewhat, where = self.libs.caller()
        if namewhat == b"method":
            narg -= 1
            if narg == 0:
                raise LuaError(b"%scalling '%s' on bad self (%s)"
                               % (_text(where), _text(name), extramsg))
        raise LuaError(b"%sbad argument #%d to '%s' (%s)"
                       % (_text(where), narg, _text(name) if name else b"?", extramsg))

    def typename(self, narg: int) -> str:
        if narg > len(self.values):
            return "no value"
        return type_name(self.values[narg - 1], self.libs)

    def typeerror(self, narg: int, expected: str) -> NoReturn:
        self.argerror(narg, f"{expected} expected, got {self.typename(narg)}".encode())

    def get(self, narg: int) -> object:
        return self.values[narg - 1] if narg <= len(self.values) else None

    def tonumber(self, narg: int) -> float | None:
        value = self.get(narg)
        if value is True or value is False:
            return None
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, bytes):
            return str2number(value)
        return None

    def number(self, narg: int) -> float:
        """luaL_checknumber."""
        value = self.tonumber(narg)
        if value is None:
            self.typeerror(narg, "number")
        return value

    def integer(self, narg: int) -> int:
        """luaL_checkinteger."""
        value = self.tonumber(narg)
        if value is None:
            self.typeerror(narg, "number")
        return c_int64(value) if value else 0

    def opt_integer(self, narg: int, default: int) -> int:
        if self.get(narg) is None:
            return default
        return self.integer(narg)

    def lstring(self, narg: int) -> bytes:
        """luaL_checklstring: a string, or a number as Lua writes it."""
        value = self.get(narg)
        if isinstance(value, bytes):
            return value
        if isinstance(value, (int, float)) and value is not True and value is not False:
            return fmt_g(value)
        self.typeerror(narg, "string")

    def cstring(self, narg: int) -> bytes:
        """luaL_checkstring read as a C string (up to its first NUL)."""
        return self.lstring(narg).split(b"\0", 1)[0]


class Libs:
    """One interpreter's libraries; ``caller`` and ``is_null`` come from the sandbox."""

    def __init__(self, lua: Any, lupa: Any, entry: Callable[[Callable], Callable]) -> None:
        self.lua = lua
        self.lupa = lupa
        self.entry = entry
        self.caller: CallerInfo = lambda: (None, None, b"")
        self.is_null: Callable[[object], bool] = lambda value: False
        #: whether ``table[key]`` is -0 (lupa hands Python -0.0 as the int 0)
        self.negative_zero: Callable[[object, object], bool] = lua.execute(
            "local rawget = rawget\n"
            "return function(t, k) local v = rawget(t, k) return v == 0 and 1 / v < 0 end")
        self.null: Any = None
        self.lua_type = lua.eval("type")
        #: the engine's check for a busy script (SCRIPT KILL, BUSY replies), as the Lua hook
        #: calls it: long encodings and decodings call it too
        self.interrupt: Callable[[], bool] = lambda: False
        self.ticks = 0
        #: the interpreter's memory bound (None: none)
        self.max_memory: int | None = lua.get_max_memory()
        self.json = JsonConfig()

    def room(self, need: int) -> None:
        """Fail as Lua does ("not enough memory") unless ``need`` more bytes fit in the
        interpreter's bound.  Tables and strings made from Python are allocated outside any
        protected call: a failed allocation there would abort the worker, so it must never
        happen."""
        if self.max_memory and (self.lua.get_memory_used() or 0) + need + MEMORY_MARGIN \
                > self.max_memory:
            raise LuaError(b"not enough memory")

    def tick(self) -> None:
        """Every 4096 values encoded or decoded (counted by the callers in ``ticks``), what
        the Lua hook does."""
        if self.interrupt():
            raise LuaError(KILLED)

    def output_room(self) -> int:
        """How many bytes a string made in Python may take (it is copied into Lua)."""
        if not self.max_memory:
            return 1 << 62
        return self.max_memory - (self.lua.get_memory_used() or 0) - MEMORY_MARGIN

    def results(self, values: tuple) -> tuple:
        """Room for the strings among ``values`` before lupa copies them into Lua."""
        self.room(sum(len(v) + 64 for v in values if isinstance(v, bytes)))
        return values

    def new_table(self) -> Any:
        self.room(256)
        return self.lua.table()

    def store(self, table: Any, count: int, key: object, value: object) -> None:
        """``table[key] = value`` for a table holding ``count`` entries: room first for the
        table doubling its parts and for the strings."""
        if self.max_memory:
            need = 80 * count + 256 + MEMORY_MARGIN
            if type(key) is bytes:
                need += len(key)
            if type(value) is bytes:
                need += len(value)
            if self.lua.get_memory_used() + need > self.max_memory:
                raise LuaError(b"not enough memory")
        table[key] = value

    def reset(self) -> None:
        """SCRIPT FLUSH: Redis makes a new interpreter, so cjson's settings start over."""
        self.json.__init__()  # type: ignore[misc]

    def tables(self) -> dict[bytes, Any]:
        """The library tables (before the sandbox protects them)."""
        lua, entry = self.lua, self.entry

        def table(functions: dict[bytes, Callable[[Args], object]],
                  extra: dict[bytes, bytes]) -> Any:
            made = lua.table()
            for name, function in functions.items():
                made[name] = entry(self._bind(function))
            for name, value in extra.items():
                made[name] = value
            return made

        return {
            b"bit": table(BIT_FUNCTIONS, {}),
            b"struct": table({b"pack": struct_pack, b"unpack": struct_unpack,
                              b"size": struct_size}, {}),
            b"cjson": self.cjson_table(self.json),
            b"cmsgpack": table(
                {b"pack": mp_pack, b"unpack": mp_unpack, b"unpack_one": mp_unpack_one,
                 b"unpack_limit": mp_unpack_limit},
                {b"_NAME": b"cmsgpack", b"_VERSION": b"lua-cmsgpack 0.4.0",
                 b"_COPYRIGHT": b"Copyright (C) 2012, Salvatore Sanfilippo",
                 b"_DESCRIPTION": b"MessagePack C implementation for Lua"},
            ),
        }

    def cjson_table(self, config: JsonConfig) -> Any:
        self.room(4096)
        made = self.lua.table()
        for name, function in JSON_FUNCTIONS.items():
            made[name] = self.entry(self._bind(function, config))
        made[b"new"] = self.entry(self._bind(json_new))
        if self.null is not None:
            made[b"null"] = self.null
        made[b"_NAME"] = b"cjson"
        made[b"_VERSION"] = b"2.1.0"
        return made

    def _bind(self, function: Callable, *bound: object) -> Callable:
        def call(*values: object) -> object:
            return function(Args(self, values), *bound)

        return call


# bit -------------------------------------------------------------------------------------------
def tobit(n: float) -> int:
    """The low 32 bits of ``n + 2^52 + 2^51`` as a double (unsigned)."""
    return struct.unpack("<Q", struct.pack("<d", n + 6755399441055744.0))[0] & 0xFFFFFFFF


def _barg(args: Args, narg: int) -> int:
    value = args.tonumber(narg)
    bits = tobit(value if value is not None else 0)
    if bits == 0 and value is None:
        args.typeerror(narg, "number")
    return bits


def _bret(bits: int) -> int:
    bits &= 0xFFFFFFFF
    return bits - (1 << 32) if bits >= 1 << 31 else bits


def _bit_fold(op: Callable[[int, int], int]) -> Callable[[Args], int]:
    def function(args: Args) -> int:
        bits = _barg(args, 1)
        for narg in range(len(args), 1, -1):
            bits = op(bits, _barg(args, narg))
        return _bret(bits)

    return function


def _bit_shift(op: Callable[[int, int], int]) -> Callable[[Args], int]:
    def function(args: Args) -> int:
        bits = _barg(args, 1)
        return _bret(op(bits, _barg(args, 2) & 31))

    return function


def _sar(b: int, n: int) -> int:
    return (b - (1 << 32) if b >= 1 << 31 else b) >> n


def bit_tohex(args: Args) -> bytes:
    bits = _barg(args, 1)
    n = 8 if len(args) < 2 else _bret(_barg(args, 2))
    digits = "0123456789abcdef"
    if n < 0:
        n, digits = -n, digits.upper()
    n = min(n, 8)
    out = []
    for _ in range(n):
        out.append(digits[bits & 15])
        bits >>= 4
    return "".join(reversed(out)).encode()


BIT_FUNCTIONS: dict[bytes, Callable[[Args], object]] = {
    b"tobit": lambda args: _bret(_barg(args, 1)),
    b"bnot": lambda args: _bret(~_barg(args, 1)),
    b"band": _bit_fold(lambda a, b: a & b),
    b"bor": _bit_fold(lambda a, b: a | b),
    b"bxor": _bit_fold(lambda a, b: a ^ b),
    b"lshift": _bit_shift(lambda b, n: b << n),
    b"rshift": _bit_shift(lambda b, n: b >> n),
    b"arshift": _bit_shift(_sar),
    b"rol": _bit_shift(lambda b, n: (b << n) | (b >> (32 - n))),
    b"ror": _bit_shift(lambda b, n: (b << (32 - n)) | (b >> n)),
    b"bswap": lambda args: _bret(int.from_bytes(_barg(args, 1).to_bytes(4, "little"), "big")),
    b"tohex": bit_tohex,
}


# struct ----------------------------------------------------------------------------------------
MAXINTSIZE = 32
MAXALIGN = 8
_SIZES = {ord("b"): 1, ord("B"): 1, ord("h"): 2, ord("H"): 2, ord("l"): 8, ord("L"): 8,
          ord("T"): 8, ord("f"): 4, ord("d"): 8, ord("x"): 1}
_INTEGERS = frozenset(b"bBhHlLTiI")
_DIGITS = frozenset(b"0123456789")


class _Format:
    """A struct format being read, with its header (endianness and alignment)."""

    __slots__ = ("fmt", "pos", "little", "align", "args")

    def __init__(self, args: Args, fmt: bytes) -> None:
        self.args = args
        self.fmt = fmt
        self.pos = 0
        self.little = True
        self.align = 1

    def getnum(self, default: int) -> int:
        fmt = self.fmt
        if self.pos >= len(fmt) or fmt[self.pos] not in _DIGITS:
            return default
        a = 0
        while self.pos < len(fmt) and fmt[self.pos] in _DIGITS:
            digit = fmt[self.pos] - 48
            if a > INT_MAX // 10 or a * 10 > INT_MAX - digit:
                self.args.error(b"integral size overflow")
            a = a * 10 + digit
            self.pos += 1
        return a

    def optsize(self, opt: int) -> int:
        size = _SIZES.get(opt)
        if size is not None:
            return size
        if opt == 99:  # c
            return self.getnum(1)
        if opt in (105, 73):  # i I
            size = self.getnum(4)
            if size > MAXINTSIZE:
                self.args.error(b"integral size %d is larger than limit of %d"
                                % (size, MAXINTSIZE))
            return size
        return 0

    def toalign(self, length: int, opt: int, size: int) -> int:
        if size == 0 or opt == 99:
            return 0
        size = min(size, self.align)
        return (size - (length & (size - 1))) & (size - 1)

    def control(self, opt: int) -> None:
        if opt == 32:
            return
        if opt == 62:
            self.little = False
        elif opt == 60:
            self.little = True
        elif opt == 33:
            a = self.getnum(MAXALIGN)
            if not (a > 0 and a & (a - 1) == 0):
                self.args.error(b"alignment %d is not a power of 2" % a)
            self.align = a
        else:
            self.args.argerror(1, b"invalid format option '%c'" % opt)

    def next(self) -> tuple[int, int] | None:
        if self.pos >= len(self.fmt):
            return None
        opt = self.fmt[self.pos]
        self.pos += 1
        libs = self.args.libs
        libs.ticks += 1
        if not libs.ticks & 4095:
            libs.tick()
        return opt, self.optsize(opt)


def _pack_float(value: float, little: bool) -> bytes:
    try:
        return struct.pack("<f" if little else ">f", value)
    except OverflowError:
        return struct.pack("<f" if little else ">f", math.copysign(math.inf, value))


def struct_pack(args: Args) -> bytes:
    form = _Format(args, args.cstring(1))
    args.values += (None,)  # b_pack pushes a nil after the arguments
    limit = args.libs.output_room()
    out = bytearray()
    narg = 2
    total = 0
    while (item := form.next()) is not None:
        opt, size = item
        toalign = form.toalign(total, opt, size)
        total += toalign
        if len(out) + toalign + size > limit:
            raise LuaError(b"not enough memory")
        out += b"\0" * toalign
        if opt in _INTEGERS:
            n = args.number(narg)
            narg += 1
            value = c_int64(n) & MASK64 if n < 0 else c_uint64(n)
            raw = value.to_bytes(8, "little")[:size].ljust(size, b"\0")
            out += raw if form.little else raw[::-1]
        elif opt == 120:  # x
            out += b"\0"
        elif opt == 102:  # f
            out += _pack_float(args.number(narg), form.little)
            narg += 1
        elif opt == 100:  # d
            out += struct.pack("<d" if form.little else ">d", float(args.number(narg)))
            narg += 1
        elif opt in (99, 115):  # c s
            text = args.lstring(narg)
            narg += 1
            if size == 0:
                size = len(text)
            if len(text) < size:
                args.argerror(narg, b"string too short")
            if len(out) + size > limit:
                raise LuaError(b"not enough memory")
            out += text[:size]
            if opt == 115:
                out += b"\0"
                size += 1
        else:
            form.control(opt)
        total += size
    return bytes(out)


def _getinteger(raw: bytes, little: bool, signed: bool, size: int) -> int | float:
    value = int.from_bytes(raw, "little" if little else "big") & MASK64
    if not signed:
        return number_out(value)
    mask = (MASK64 << ((size * 8 - 1) & 63)) & MASK64
    if value & mask:
        value |= mask
    return number_out(value - (1 << 64) if value >= 1 << 63 else value)


def struct_unpack(args: Args) -> tuple:
    form = _Format(args, args.cstring(1))
    data = args.lstring(2)
    ld = len(data)
    pos = args.opt_integer(3, 1) & MASK64
    if pos == 0:
        args.argerror(3, b"offset must be 1 or greater")
    pos -= 1
    results: list[object] = []
    top = len(args)
    while (item := form.next()) is not None:
        opt, size = item
        pos = (pos + form.toalign(pos, opt, size)) & MASK64
        if not (size <= ld and pos <= ld - size):
            args.argerror(2, b"data string too short")
        if top + len(results) + 2 > MAXCSTACK:
            args.error(b"stack overflow (too many results)")
        if opt in _INTEGERS:
            results.append(_getinteger(data[pos:pos + size], form.little, opt > 96, size))
        elif opt == 120:
            pass
        elif opt == 102:
            results.append(struct.unpack("<f" if form.little else ">f", data[pos:pos + 4])[0])
        elif opt == 100:
            results.append(struct.unpack("<d" if form.little else ">d", data[pos:pos + 8])[0])
        elif opt == 99:
            if size == 0:
                last = results[-1] if results else None
                if isinstance(last, bytes):
                    last = str2number(last)
                if not isinstance(last, (int, float)):
                    args.error(b"format 'c0' needs a previous size")
                size = c_uint64(last)
                results.pop()
                if not (size <= ld and pos <= ld - size):
                    args.argerror(2, b"data string too short")
            results.append(data[pos:pos + size])
        elif opt == 115:
            end = data.find(b"\0", pos)
            if end < 0:
                args.error(b"unfinished string in data")
            size = end - pos + 1
            results.append(data[pos:end])
        else:
            form.control(opt)
        pos += size
    results.append(number_out(c_int64(pos + 1) if pos + 1 < 1 << 63 else pos + 1 - (1 << 64)))
    return args.libs.results(tuple(results))


def struct_size(args: Args) -> int:
    form = _Format(args, args.cstring(1))
    pos = 0
    while (item := form.next()) is not None:
        opt, size = item
        pos += form.toalign(pos, opt, size)
        if opt == 115:
            args.argerror(1, b"option 's' has no fixed size")
        elif opt == 99 and size == 0:
            args.argerror(1, b"option 'c0' has no fixed size")
        if not (48 <= opt <= 57 or 65 <= opt <= 90 or 97 <= opt <= 122):
            form.control(opt)
        pos += size
    return pos


# cjson -----------------------------------------------------------------------------------------
class JsonConfig:
    """json_config_t with its defaults."""

    def __init__(self) -> None:
        self.sparse_convert = 0
        self.sparse_ratio = 2
        self.sparse_safe = 10
        self.encode_max_depth = 1000
        self.decode_max_depth = 1000
        self.encode_invalid_numbers = 0
        self.decode_invalid_numbers = 1
        self.keep_buffer = 1
        self.precision = 14


_ESCAPES = {i: b"\\u%04x" % i for i in range(32)}
_ESCAPES.update({8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r", 34: b'\\"',
                 47: b"\\/", 92: b"\\\\", 127: b"\\u007f"})
#: the bytes written as they are (deleted to find the others at C speed)
_PLAIN = bytes(b for b in range(256) if b not in _ESCAPES)


def json_string(text: bytes) -> bytes:
    """json_append_string: quoted, with char2escape's escapes."""
    present = set(text.translate(None, _PLAIN))
    if not present:
        return b'"' + text + b'"'
    if 92 in present:  # first: the other escapes bring backslashes
        text = text.replace(b"\\", b"\\\\")
        present.discard(92)
    for byte in present:
        text = text.replace(bytes((byte,)), _ESCAPES[byte])
    return b'"' + text + b'"'


def _json_arg_init(args: Args, count: int) -> None:
    if len(args) > count:
        args.argerror(count + 1, b"found too many arguments")


def _json_integer_option(args: Args, narg: int, current: int, low: int, high: int) -> int:
    if args.get(narg) is None:
        return current
    value = c_wrap32(args.integer(narg))
    if not low <= value <= high:
        args.argerror(1, b"expected integer between %d and %d" % (low, high))
    return value


def _json_enum_option(args: Args, narg: int, current: int,
                      options: tuple[bytes, ...] = (b"off", b"on")) -> tuple[int, object]:
    value = args.get(narg)
    if value is not None:
        if value is True or value is False:
            current = int(value)
        else:
            text = args.cstring(narg)
            if text not in options:
                args.argerror(narg, b"invalid option '%s'" % text)
            current = options.index(text)
    return current, (bool(current) if current in (0, 1) else options[current])


def json_cfg_encode_sparse_array(args: Args, cfg: JsonConfig) -> tuple:
    _json_arg_init(args, 3)
    cfg.sparse_convert, convert = _json_enum_option(args, 1, cfg.sparse_convert)
    cfg.sparse_ratio = _json_integer_option(args, 2, cfg.sparse_ratio, 0, INT_MAX)
    cfg.sparse_safe = _json_integer_option(args, 3, cfg.sparse_safe, 0, INT_MAX)
    return convert, cfg.sparse_ratio, cfg.sparse_safe


def _json_int_setting(field: str, low: int, high: int) -> Callable[[Args, JsonConfig], int]:
    def function(args: Args, cfg: JsonConfig) -> int:
        _json_arg_init(args, 1)
        value = _json_integer_option(args, 1, getattr(cfg, field), low, high)
        setattr(cfg, field, value)
        return value

    return function


def _json_enum_setting(field: str, options: tuple[bytes, ...] = (b"off", b"on")
                       ) -> Callable[[Args, JsonConfig], object]:
    def function(args: Args, cfg: JsonConfig) -> object:
        _json_arg_init(args, 1)
        value, shown = _json_enum_option(args, 1, getattr(cfg, field), options)
        setattr(cfg, field, value)
        return shown

    return function


class _Encoder:
    __slots__ = ("cfg", "libs", "out", "args", "limit")

    def __init__(self, args: Args, cfg: JsonConfig) -> None:
        self.args = args
        self.libs = args.libs
        self.cfg = cfg
        self.out = bytearray()
        self.limit = self.libs.output_room()

    def grown(self, more: int = 0) -> None:
        if len(self.out) + more > self.limit:
            raise LuaError(b"not enough memory")

    def fail(self, kind: str, reason: str) -> NoReturn:
        self.args.error(f"Cannot serialise {kind}: {reason}".encode())

    def number(self, value: float) -> bytes:
        mode = self.cfg.encode_invalid_numbers
        if isinstance(value, float) and (value != value or value in (math.inf, -math.inf)):
            if mode == 0:
                self.fail("number", "must not be NaN or Inf")
            if mode == 2:
                return b"null"
            if value != value:
                return b"nan"
        return fmt_g(value, self.cfg.precision)

    def value(self, value: object, depth: int, top: int) -> None:
        libs = self.libs
        libs.ticks += 1
        if not libs.ticks & 4095:
            libs.tick()
        out = self.out
        if isinstance(value, bytes):
            self.grown(len(value))
            out += json_string(value)
            self.grown()
        elif value is True:
            out += b"true"
        elif value is False:
            out += b"false"
        elif isinstance(value, (int, float)):
            out += self.number(value)
        elif value is None:
            out += b"null"
        else:
            kind = self.libs.lupa.lua_type(value)
            if kind == "table":
                self.table(value, depth + 1, top)
            elif kind == "userdata" and self.libs.is_null(value):
                out += b"null"
            else:
                self.fail(type_name(value, self.libs), "type not supported")

    def table(self, table: Any, depth: int, top: int) -> None:
        cfg = self.cfg
        if depth > cfg.encode_max_depth or top + 3 > MAXCSTACK:
            self.args.error(b"Cannot serialise, excessive nesting (%d)" % depth)
        items = list(table.items())
        length = self.array_length(items)
        out = self.out
        if length > 0:
            values = {k: v for k, v in items}
            out += b"["
            for index in range(1, length + 1):
                if index > 1:
                    out += b","
                    self.grown()
                value = values.get(index)
                if value == 0 and type(value) is int and self.libs.negative_zero(table, index):
                    value = -0.0
                self.value(value, depth, top + 1)
            out += b"]"
            return
        out += b"{"
        for count, (key, value) in enumerate(items):
            if count:
                out += b","
                self.grown()
            if isinstance(key, bytes):
                out += json_string(key)
                out += b":"
            elif isinstance(key, (int, float)) and not isinstance(key, bool):
                out += b'"' + self.number(key) + b'":'
            else:
                self.fail(type_name(key, self.libs), "table key must be a number or string")
            if value == 0 and type(value) is int and self.libs.negative_zero(table, key):
                value = -0.0
            self.value(value, depth, top + 2)
        out += b"}"

    def array_length(self, items: list[tuple[object, object]]) -> int:
        cfg = self.cfg
        largest = 0
        count = 0
        for key, _ in items:
            if (isinstance(key, (int, float)) and not isinstance(key, bool) and key >= 1
                    and (key == math.inf or math.floor(key) == key)):
                if key > largest:
                    largest = c_int32(key) if isinstance(key, float) else (
                        key if key <= INT_MAX else INT_MIN)
                count += 1
                continue
            return -1
        if (cfg.sparse_ratio > 0 and largest > c_wrap32(count * cfg.sparse_ratio)
                and largest > cfg.sparse_safe):
            if not cfg.sparse_convert:
                self.fail("table", "excessively sparse array")
            return -1
        return largest


def json_encode(args: Args, cfg: JsonConfig) -> bytes:
    if len(args) != 1:
        args.argerror(1, b"expected 1 argument")
    encoder = _Encoder(args, cfg)
    with _deep_recursion():
        encoder.value(args.get(1), 0, 1)
    encoder.grown(64)
    return bytes(encoder.out)


class _deep_recursion:
    """Room for Python recursion as deep as the Lua stack allows (8000 levels)."""

    def __enter__(self) -> None:
        self.limit = sys.getrecursionlimit()
        if self.limit < 20000:
            sys.setrecursionlimit(20000)

    def __exit__(self, *exc: object) -> None:
        sys.setrecursionlimit(self.limit)


(T_OBJ_BEGIN, T_OBJ_END, T_ARR_BEGIN, T_ARR_END, T_STRING, T_NUMBER, T_BOOLEAN, T_NULL,
 T_COLON, T_COMMA, T_END, T_WHITESPACE, T_ERROR, T_UNKNOWN) = range(14)
_TOKEN_NAMES = ("T_OBJ_BEGIN", "T_OBJ_END", "T_ARR_BEGIN", "T_ARR_END", "T_STRING", "T_NUMBER",
                "T_BOOLEAN", "T_NULL", "T_COLON", "T_COMMA", "T_END", "T_WHITESPACE",
                "T_ERROR", "T_UNKNOWN")
_CH2TOKEN = [T_ERROR] * 256
for _ch, _token in ((b"{", T_OBJ_BEGIN), (b"}", T_OBJ_END), (b"[", T_ARR_BEGIN),
                    (b"]", T_ARR_END), (b",", T_COMMA), (b":", T_COLON), (b"\0", T_END),
                    (b" ", T_WHITESPACE), (b"\t", T_WHITESPACE), (b"\n", T_WHITESPACE),
                    (b"\r", T_WHITESPACE)):
    _CH2TOKEN[_ch[0]] = _token
for _ch in b"fiInNt\"+-0123456789":
    _CH2TOKEN[_ch] = T_UNKNOWN
_ESCAPE2CHAR = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b",
                ord("t"): b"\t", ord("n"): b"\n", ord("f"): b"\f", ord("r"): b"\r"}
_NOT_BLANK = re.compile(rb"[^ \t\n\r]")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _decode_hex4(data: bytes, pos: int) -> int:
    chunk = data[pos:pos + 4]
    if len(chunk) < 4 or any(c not in _HEX for c in chunk):
        return -1
    return int(chunk, 16)


def _is_invalid_number(data: bytes, p: int) -> bool:
    if data[p] == 43:  # +
        return True
    if data[p] == 45:  # -
        p += 1
    if data[p] == 48:  # 0
        ch2 = data[p + 1]
        return (ch2 | 0x20) == ord("x") or 48 <= ch2 <= 57
    if data[p] <= 57:
        return False
    head = data[p:p + 3].lower()
    return head in (b"inf", b"nan")


class _Decoder:
    __slots__ = ("data", "ptr", "cfg", "depth", "args", "libs", "quote", "backslash", "nul")

    def __init__(self, args: Args, cfg: JsonConfig, data: bytes) -> None:
        self.args = args
        self.libs = args.libs
        self.cfg = cfg
        self.data = data + b"\0"
        self.ptr = 0
        self.depth = 0
        # where the next quote, backslash and NUL are (strings); the sentinel NUL at worst
        self.quote = self.backslash = self.nul = -1

    def token(self) -> tuple[int, object, int]:
        """(type, value, index) of the next token (json_next_token)."""
        data = self.data
        ch = data[self.ptr]
        kind = _CH2TOKEN[ch]
        if kind == T_WHITESPACE:  # a run of blanks skipped at C speed
            self.ptr = _NOT_BLANK.search(data, self.ptr).start()
            ch = data[self.ptr]
            kind = _CH2TOKEN[ch]
        index = self.ptr
        if kind == T_ERROR:
            return T_ERROR, "invalid token", index
        if kind == T_END:
            return T_END, None, index
        if kind != T_UNKNOWN:
            self.ptr += 1
            return kind, None, index
        if ch == 34:
            return self.string()
        if ch == 45 or 48 <= ch <= 57:
            if not self.cfg.decode_invalid_numbers and _is_invalid_number(data, self.ptr):
                return T_ERROR, "invalid number", index
            return self.number()
        if data.startswith(b"true", self.ptr):
            self.ptr += 4
            return T_BOOLEAN, True, index
        if data.startswith(b"false", self.ptr):
            self.ptr += 5
            return T_BOOLEAN, False, index
        if data.startswith(b"null", self.ptr):
            self.ptr += 4
            return T_NULL, None, index
        if self.cfg.decode_invalid_numbers and _is_invalid_number(data, self.ptr):
            return self.number()
        return T_ERROR, "invalid token", index

    def number(self) -> tuple[int, object, int]:
        index = self.ptr
        value, end = strtod(self.data, self.ptr)
        if end == self.ptr:
            return T_ERROR, "invalid number", index
        self.ptr = end
        return T_NUMBER, value, index

    def string(self) -> tuple[int, object, int]:
        data = self.data
        index = self.ptr
        self.ptr += 1
        out = bytearray()
        quote, backslash, nul = self.quote, self.backslash, self.nul
        while True:
            ptr = self.ptr
            if quote < ptr:
                quote = data.find(b'"', ptr)
                if quote < 0:
                    quote = len(data)
            if backslash < ptr:
                backslash = data.find(b"\\", ptr)
                if backslash < 0:
                    backslash = len(data)
            if nul < ptr:
                nul = data.find(b"\0", ptr)
            end = min(quote, backslash, nul)
            out += data[ptr:end]
            self.ptr = end
            ch = data[end]
            if ch == 34:
                break
            if ch == 0:
                self.quote, self.backslash, self.nul = quote, backslash, nul
                return T_ERROR, "unexpected end of string", self.ptr
            libs = self.libs
            libs.ticks += 1
            if not libs.ticks & 4095:
                libs.tick()
            escaped = data[self.ptr + 1]
            if escaped == 117:  # u
                if self.unicode_escape(out):
                    continue
                return T_ERROR, "invalid unicode escape code", self.ptr
            char = _ESCAPE2CHAR.get(escaped)
            if char is None:
                return T_ERROR, "invalid escape code", self.ptr
            out += char
            self.ptr += 2
        self.quote, self.backslash, self.nul = quote, backslash, nul
        self.ptr += 1
        return T_STRING, bytes(out), index

    def unicode_escape(self, out: bytearray) -> bool:
        data = self.data
        codepoint = _decode_hex4(data, self.ptr + 2)
        if codepoint < 0:
            return False
        length = 6
        if codepoint & 0xF800 == 0xD800:
            if codepoint & 0x400:
                return False
            if data[self.ptr + 6:self.ptr + 8] != b"\\u":
                return False
            low = _decode_hex4(data, self.ptr + 8)
            if low < 0 or low & 0xFC00 != 0xDC00:
                return False
            codepoint = (((codepoint & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000
            length = 12
        out += _utf8(codepoint)
        self.ptr += length
        return True

    def throw(self, expected: str, token: tuple[int, object, int]) -> NoReturn:
        kind, value, index = token
        found = value if kind == T_ERROR else _TOKEN_NAMES[kind]
        self.args.error(f"Expected {expected} but found {found} at character {index + 1}"
                        .encode())

    def descend(self, slots: int, top: int) -> None:
        self.depth += 1
        if self.depth <= self.cfg.decode_max_depth and top + slots <= MAXCSTACK:
            return
        self.args.error(b"Found too many nested data structures (%d) at character %d"
                        % (self.depth, self.ptr))

    def value(self, token: tuple[int, object, int], top: int) -> object:
        libs = self.libs
        libs.ticks += 1
        if not libs.ticks & 4095:
            libs.tick()
        kind = token[0]
        if kind in (T_STRING, T_NUMBER, T_BOOLEAN):
            return token[1]
        if kind == T_NULL:
            return self.libs.null
        if kind == T_OBJ_BEGIN:
            return self.obj(top)
        if kind == T_ARR_BEGIN:
            return self.array(top)
        self.throw("value", token)

    def obj(self, top: int) -> Any:
        self.descend(3, top)
        table = self.libs.new_table()
        count = 0
        token = self.token()
        if token[0] == T_OBJ_END:
            self.depth -= 1
            return table
        while True:
            if token[0] != T_STRING:
                self.throw("object key string", token)
            key = token[1]
            token = self.token()
            if token[0] != T_COLON:
                self.throw("colon", token)
            self.libs.store(table, count, key, self.value(self.token(), top + 2))
            count += 1
            token = self.token()
            if token[0] == T_OBJ_END:
                self.depth -= 1
                return table
            if token[0] != T_COMMA:
                self.throw("comma or object end", token)
            token = self.token()

    def array(self, top: int) -> Any:
        self.descend(2, top)
        table = self.libs.new_table()
        token = self.token()
        if token[0] == T_ARR_END:
            self.depth -= 1
            return table
        index = 1
        while True:
            self.libs.store(table, index, index, self.value(token, top + 1))
            index += 1
            token = self.token()
            if token[0] == T_ARR_END:
                self.depth -= 1
                return table
            if token[0] != T_COMMA:
                self.throw("comma or array end", token)
            token = self.token()


def _utf8(codepoint: int) -> bytes:
    if codepoint <= 0x7F:
        return bytes((codepoint,))
    if codepoint <= 0x7FF:
        return bytes(((codepoint >> 6) | 0xC0, (codepoint & 0x3F) | 0x80))
    if codepoint <= 0xFFFF:
        return bytes(((codepoint >> 12) | 0xE0, ((codepoint >> 6) & 0x3F) | 0x80,
                      (codepoint & 0x3F) | 0x80))
    return bytes(((codepoint >> 18) | 0xF0, ((codepoint >> 12) & 0x3F) | 0x80,
                  ((codepoint >> 6) & 0x3F) | 0x80, (codepoint & 0x3F) | 0x80))


def json_decode(args: Args, cfg: JsonConfig) -> object:
    if len(args) != 1:
        args.argerror(1, b"expected 1 argument")
    data = args.lstring(1)
    if len(data) >= 2 and (data[0] == 0 or data[1] == 0):
        args.error(b"JSON parser does not support UTF-16 or UTF-32")
    decoder = _Decoder(args, cfg, data)
    with _deep_recursion():
        value = decoder.value(decoder.token(), 1)
    token = decoder.token()
    if token[0] != T_END:
        decoder.throw("the end", token)
    return args.libs.results((value,))[0]


def json_new(args: Args) -> Any:
    return args.libs.cjson_table(JsonConfig())


JSON_FUNCTIONS: dict[bytes, Callable[..., object]] = {
    b"encode": json_encode,
    b"decode": json_decode,
    b"encode_sparse_array": json_cfg_encode_sparse_array,
    b"encode_max_depth": _json_int_setting("encode_max_depth", 1, INT_MAX),
    b"decode_max_depth": _json_int_setting("decode_max_depth", 1, INT_MAX),
    b"encode_number_precision": _json_int_setting("precision", 1, 14),
    b"encode_keep_buffer": _json_enum_setting("keep_buffer"),
    b"encode_invalid_numbers": _json_enum_setting("encode_invalid_numbers",
                                                  (b"off", b"on", b"null")),
    b"decode_invalid_numbers": _json_enum_setting("decode_invalid_numbers"),
}


# cmsgpack --------------------------------------------------------------------------------------
MP_MAX_NESTING = 16


class _Packer:
    __slots__ = ("out", "libs", "limit")

    def __init__(self, libs: Libs) -> None:
        self.libs = libs
        self.out = bytearray()
        self.limit = libs.output_room()

    def grown(self, more: int = 0) -> None:
        if len(self.out) + more > self.limit:
            raise LuaError(b"not enough memory")

    def value(self, value: object, level: int) -> None:
        libs = self.libs
        libs.ticks += 1
        if not libs.ticks & 4095:
            libs.tick()
        out = self.out
        if isinstance(value, bytes):
            n = len(value)
            self.grown(n + 5)
            if n < 32:
                out.append(0xA0 | n)
            elif n <= 0xFF:
                out += b"\xd9" + bytes((n,))
            elif n <= 0xFFFF:
                out += b"\xda" + n.to_bytes(2, "big")
            else:
                out += b"\xdb" + (n & 0xFFFFFFFF).to_bytes(4, "big")
            out += value
        elif value is True:
            out.append(0xC3)
        elif value is False:
            out.append(0xC2)
        elif isinstance(value, (int, float)):
            self.number(value)
        elif (level < MP_MAX_NESTING and value is not None
              and self.libs.lupa.lua_type(value) == "table"):
            self.table(value, level)
        else:
            out.append(0xC0)

    def number(self, n: float) -> None:
        if isinstance(n, int) or (not math.isinf(n) and c_int64(n) == n):
            self.integer(c_int64(n))
            return
        single = struct.pack(">f", n) if abs(n) <= 3.4028234663852886e38 else None
        if single is not None and struct.unpack(">f", single)[0] == n:
            self.out += b"\xca" + single
        elif math.isinf(n):
            self.out += b"\xca" + struct.pack(">f", n)
        else:
            self.out += b"\xcb" + struct.pack(">d", n)

    def integer(self, n: int) -> None:
        out = self.out
        if n >= 0:
            if n <= 127:
                out.append(n)
            elif n <= 0xFF:
                out += b"\xcc" + bytes((n,))
            elif n <= 0xFFFF:
                out += b"\xcd" + n.to_bytes(2, "big")
            elif n <= 0xFFFFFFFF:
                out += b"\xce" + n.to_bytes(4, "big")
            else:
                out += b"\xcf" + n.to_bytes(8, "big")
        elif n >= -32:
            out.append(n & 0xFF)
        elif n >= -128:
            out += b"\xd0" + (n & 0xFF).to_bytes(1, "big")
        elif n >= -32768:
            out += b"\xd1" + (n & 0xFFFF).to_bytes(2, "big")
        elif n >= -2147483648:
            out += b"\xd2" + (n & 0xFFFFFFFF).to_bytes(4, "big")
        else:
            out += b"\xd3" + (n & MASK64).to_bytes(8, "big")

    def table(self, table: Any, level: int) -> None:
        items = list(table.items())
        largest = count = 0
        array = True
        for key, _ in items:
            if (not isinstance(key, (int, float)) or isinstance(key, bool) or key <= 0
                    or math.isinf(key) or c_int32(key) != key):
                array = False
                break
            largest = max(largest, int(key))
            count += 1
        if array and largest == count:
            values = dict(items)
            self.header(count, 0x90, b"\xdc", b"\xdd")
            for index in range(1, count + 1):
                self.value(values.get(index), level + 1)
                self.grown()
            return
        self.header(len(items), 0x80, b"\xde", b"\xdf")
        for key, value in items:
            self.value(key, level + 1)
            self.value(value, level + 1)
            self.grown()

    def header(self, n: int, fix: int, b16: bytes, b32: bytes) -> None:
        if n <= 15:
            self.out.append(fix | n)
        elif n <= 0xFFFF:
            self.out += b16 + n.to_bytes(2, "big")
        else:
            self.out += b32 + (n & 0xFFFFFFFF).to_bytes(4, "big")


def mp_pack(args: Args) -> bytes:
    if len(args) == 0:
        args.argerror(0, b"MessagePack pack needs input.")
    if len(args) * 2 > MAXCSTACK:
        args.argerror(0, b"Too many arguments for MessagePack pack.")
    packer = _Packer(args.libs)
    for value in args.values:
        packer.value(value, 0)
        packer.grown(64)
    return bytes(packer.out)


class _MpEof(Exception):
    pass


class _MpBadFormat(Exception):
    pass


_STACK_MESSAGE = (b"stack overflow (too many return values at once; "
                  b"use unpack_one or unpack_limit instead.)")


class _Unpacker:
    __slots__ = ("data", "pos", "args", "libs")

    def __init__(self, args: Args, data: bytes, pos: int) -> None:
        self.args = args
        self.libs = args.libs
        self.data = data
        self.pos = pos

    def need(self, n: int) -> None:
        if len(self.data) - self.pos < n:
            raise _MpEof

    def value(self, top: int) -> object:
        libs = self.libs
        libs.ticks += 1
        if not libs.ticks & 4095:
            libs.tick()
        self.need(1)
        if top + 1 > MAXCSTACK:
            self.args.error(_STACK_MESSAGE)
        data, p = self.data, self.pos
        c = data[p]
        if c <= 0x7F:
            self.pos += 1
            return c
        if c >= 0xE0:
            self.pos += 1
            return c - 256
        if 0xA0 <= c <= 0xBF:
            return self.raw(1, c & 0x1F)
        if 0x90 <= c <= 0x9F:
            self.pos += 1
            return self.array(c & 0xF, top)
        if 0x80 <= c <= 0x8F:
            self.pos += 1
            return self.hash(c & 0xF, top)
        if c == 0xC0:
            self.pos += 1
            return None
        if c == 0xC2 or c == 0xC3:
            self.pos += 1
            return c == 0xC3
        fixed = _MP_FIXED.get(c)
        if fixed is not None:
            size, form = fixed
            self.need(1 + size)
            value = struct.unpack(form, data[p + 1:p + 1 + size])[0]
            self.pos += 1 + size
            if c == 0xCF:  # lua_pushinteger((lua_Integer)uint64)
                value = value - (1 << 64) if value >= 1 << 63 else value
            return number_out(value) if isinstance(value, int) else value
        if c == 0xD9:
            self.need(2)
            return self.raw(2, data[p + 1])
        if c == 0xDA:
            self.need(3)
            return self.raw(3, int.from_bytes(data[p + 1:p + 3], "big"))
        if c == 0xDB:
            self.need(5)
            return self.raw(5, int.from_bytes(data[p + 1:p + 5], "big"))
        if c in (0xDC, 0xDE):
            self.need(3)
            n = int.from_bytes(data[p + 1:p + 3], "big")
            self.pos += 3
            return self.array(n, top) if c == 0xDC else self.hash(n, top)
        if c in (0xDD, 0xDF):
            self.need(5)
            n = int.from_bytes(data[p + 1:p + 5], "big")
            self.pos += 5
            return self.array(n, top) if c == 0xDD else self.hash(n, top)
        raise _MpBadFormat

    def raw(self, header: int, length: int) -> bytes:
        self.need(header + length)
        start = self.pos + header
        self.pos = start + length
        return self.data[start:start + length]

    def array(self, n: int, top: int) -> Any:
        if top + 2 > MAXCSTACK:
            self.args.error(b"stack overflow (in function mp_decode_to_lua_array)")
        table = self.libs.new_table()
        for index in range(1, n + 1):
            # Each element takes a byte at least: a huge count ends at the input's end.
            self.libs.store(table, index, index, self.value(top + 2))
        return table

    def hash(self, n: int, top: int) -> Any:
        table = self.libs.new_table()
        for count in range(n):
            key = self.value(top + 1)
            value = self.value(top + 2)
            if key is None:
                raise LuaError(b"table index is nil")
            if isinstance(key, float) and key != key:
                raise LuaError(b"table index is NaN")
            self.libs.store(table, count, key, value)
        return table


_MP_FIXED = {0xCC: (1, ">B"), 0xD0: (1, ">b"), 0xCD: (2, ">H"), 0xD1: (2, ">h"),
             0xCE: (4, ">I"), 0xD2: (4, ">i"), 0xCF: (8, ">Q"), 0xD3: (8, ">q"),
             0xCA: (4, ">f"), 0xCB: (8, ">d")}


def _mp_unpack_full(args: Args, limit: int, offset: int, top: int) -> tuple:
    data = args.lstring(1)
    length = len(data)
    decode_all = not limit and not offset
    if offset < 0 or limit < 0:
        args.error(b"Invalid request to unpack with offset of %d and limit of %d."
                   % (c_wrap32(offset), c_wrap32(length)))
    if offset > length:
        args.error(b"Start offset %d greater than input length %d."
                   % (c_wrap32(offset), c_wrap32(length)))
    if decode_all:
        limit = INT_MAX
    unpacker = _Unpacker(args, data, offset)
    results: list[object] = []
    with _deep_recursion():
        try:
            while unpacker.pos < length and len(results) < limit:
                results.append(unpacker.value(top + len(results)))
        except _MpEof:
            args.error(b"Missing bytes in input.")
        except _MpBadFormat:
            args.error(b"Bad data format in input.")
    if not decode_all:
        if top + len(results) + 1 > MAXCSTACK:
            args.error(b"stack overflow (in function mp_unpack_full)")
        left = length - unpacker.pos
        return args.libs.results((-1 if left == 0 else unpacker.pos, *results))
    return args.libs.results(tuple(results))


def mp_unpack(args: Args) -> tuple:
    return _mp_unpack_full(args, 0, 0, max(len(args), 1))


def mp_unpack_one(args: Args) -> tuple:
    offset = args.opt_integer(2, 0)
    return _mp_unpack_full(args, 1, offset, 1)


def mp_unpack_limit(args: Args) -> tuple:
    limit = args.integer(2)
    offset = args.opt_integer(3, 0)
    return _mp_unpack_full(args, limit, offset, 1)
