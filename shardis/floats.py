"""Redis's float parsing and INCRBYFLOAT arithmetic, reproduced bit for bit.

INCRBYFLOAT and HINCRBYFLOAT compute in C ``long double``, which on x86-64 is the x87 80-bit
extended format (64-bit significand with explicit leading bit, exponents -16382..16383,
subnormals down to 2**-16445), always rounding to nearest, ties to even.  Python floats are
doubles, so values are kept as exact :class:`fractions.Fraction` instances instead and rounded
to that format after every operation; ``math.inf``/``-math.inf`` stand for the infinities.  NaN
never needs representing: every path that would produce it is an error in Redis.

Parsing follows ``string2ld``/``string2d`` (``src/util.c``), i.e. glibc ``strtold``/``strtod``
plus Redis's checks:

* the whole input must be consumed: no leading or trailing spaces, no empty string;
* accepted syntax: optional sign, then decimal (``1``, ``1.``, ``.5``, ``1e-3``), hexadecimal
  (``0x1p3``, ``0x.8``, ``0X1P-2``; the binary exponent is optional) or ``inf``/``infinity``
  (any case); ``nan`` in any form is rejected;
* results that overflow to infinity are rejected, and so are results that *underflow to zero*;
  an exact zero (``0e-99999``) and a subnormal result are accepted;
* ``string2ld`` (not ``string2d``) rejects inputs of 5120 bytes or more.

Formatting follows ``ld2string(..., LD_STR_HUMAN)``: ``%.17Lf`` (the exact binary value rounded
half-even to 17 decimals, as glibc does), trailing zeros and then the dot removed, ``-0`` turned
into ``0``; infinities print as ``inf``/``-inf``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from shardis import errors
from shardis.errors import ReplyError

# HINCRBYFLOAT's own error texts (t_hash.c); not in errors.py yet.
HASH_VALUE_NOT_FLOAT = "ERR hash value is not a float"
INCREMENT_NAN_OR_INF = "ERR value is NaN or Infinity"

LongDouble = Fraction | float
"""An exact finite value (Fraction) or ``math.inf``/``-math.inf``."""

MAX_LONG_DOUBLE_CHARS = 5 * 1024  # string2ld's buffer: inputs must be strictly shorter


@dataclass(frozen=True)
class _BinaryFormat:
    precision: int  # significand bits, leading bit included
    min_exp: int  # exponent of the smallest normal number
    max_exp: int  # exponent of the largest finite number


_X87_EXTENDED = _BinaryFormat(precision=64, min_exp=-16382, max_exp=16383)
_DOUBLE = _BinaryFormat(precision=53, min_exp=-1022, max_exp=1023)
_ZERO = Fraction(0)

_NUMBER = re.compile(
    rb"(?P<sign>[+-]?)(?:"
    rb"(?P<inf>(?i:inf(?:inity)?))"
    rb"|0[xX](?P<hex>[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP](?P<hexp>[+-]?[0-9]+))?"
    rb"|(?P<dec>[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE](?P<dexp>[+-]?[0-9]+))?"
    rb")"
)
# Exponent magnitudes beyond this are clamped: they over/underflow either way, and clamping
# keeps int() away from multi-thousand-digit exponents.
_EXPONENT_CLAMP = 10**9
# Decimal/binary orders of magnitude beyond which a nonzero value surely over/underflows even
# the extended format, so no exact arithmetic is attempted (loose on purpose).
_DECIMAL_ORDER_LIMITS = (-4970, 4950)
_INT_STR_CHUNK = 4000  # stays under CPython's int/str conversion digit limit (4300)
_CHUNK_POWER = 10**_INT_STR_CHUNK


# Public API ----------------------------------------------------------------------------------


def incr_by_float(current: bytes | None, increment: bytes) -> bytes:
    """INCRBYFLOAT's new value for a string ``current`` (None when the key is missing).

    Redis checks, in this order: the stored value parses (``NOT_FLOAT``), the increment parses
    (``NOT_FLOAT``), the sum is finite (``NAN_OR_INF``; an ``inf`` operand always ends here).
    The type check (WRONGTYPE) comes before all of these and is the caller's.
    """
    value = _ZERO if current is None else parse_long_double(current)
    if value is None:
        raise ReplyError(errors.NOT_FLOAT)
    incr = parse_long_double(increment)
    if incr is None:
        raise ReplyError(errors.NOT_FLOAT)
    return _add_and_format(value, incr)


def hincr_by_float(current: bytes | None, increment: bytes) -> bytes:
    """HINCRBYFLOAT's new value for a hash field holding ``current`` (None when missing).

    Redis's order differs from INCRBYFLOAT: the increment is checked first (``NOT_FLOAT``, then
    ``INCREMENT_NAN_OR_INF`` for an infinite one), then the key's type (WRONGTYPE, the
    caller's job, so call this only after it), then the field (``HASH_VALUE_NOT_FLOAT``), then
    the sum (``NAN_OR_INF``).
    """
    incr = parse_long_double(increment)
    if incr is None:
        raise ReplyError(errors.NOT_FLOAT)
    if isinstance(incr, float):
        raise ReplyError(INCREMENT_NAN_OR_INF)
    value = _ZERO if current is None else parse_long_double(current)
    if value is None:
        raise ReplyError(HASH_VALUE_NOT_FLOAT)
    return _add_and_format(value, incr)


def parse_long_double(text: bytes) -> LongDouble | None:
    """``string2ld``: the x87 extended value of ``text``, or None where Redis says "not a float".

    Finite results are exact Fractions already rounded to the extended format.
    """
    if not 0 < len(text) < MAX_LONG_DOUBLE_CHARS:
        return None
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    return _convert(match, _X87_EXTENDED)


def parse_double(text: bytes) -> float | None:
    """``string2d``: ``text`` as a double, or None where Redis rejects it (no length limit)."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    if match["dec"] is not None:
        return _parse_decimal_double(text, match["dec"])
    value = _convert(match, _DOUBLE)
    if value is None:
        return None
    return math.copysign(float(value), -1.0 if match["sign"] == b"-" else 1.0)  # keep -0.0


def format_long_double_human(value: LongDouble) -> bytes:
    """``ld2string(LD_STR_HUMAN)`` of an extended value (as produced by this module)."""
    if isinstance(value, float):
        return b"inf" if value > 0 else b"-inf"
    scaled = round(abs(value) * 10**17)  # Fraction rounding is half-even, like glibc printf
    whole, fraction = divmod(scaled, 10**17)
    text = _int_to_decimal(whole) + b".%017d" % fraction
    text = text.rstrip(b"0").rstrip(b".")
    if value < 0 and text != b"0":
        return b"-" + text
    return text  # "-0" (a negative value rounding to zero) is printed as "0"


def add_long_doubles(left: LongDouble, right: LongDouble) -> LongDouble | None:
    """``left + right`` in extended precision; None where C would get NaN (inf + -inf)."""
    if isinstance(left, float) or isinstance(right, float):
        if isinstance(left, float) and isinstance(right, float) and left != right:
            return None
        return left if isinstance(left, float) else right
    return _round(left + right, _X87_EXTENDED)


# Arithmetic ----------------------------------------------------------------------------------


def _add_and_format(value: LongDouble, incr: LongDouble) -> bytes:
    total = add_long_doubles(value, incr)
    if total is None or isinstance(total, float):
        raise ReplyError(errors.NAN_OR_INF)
    return format_long_double_human(total)


def _round(value: Fraction, fmt: _BinaryFormat) -> LongDouble:
    """Round an exact value to ``fmt``, to nearest with ties to even, overflowing to inf."""
    if not value:
        return _ZERO
    num, den = abs(value.numerator), value.denominator
    exponent = num.bit_length() - den.bit_length()  # floor(log2(value)) or one more
    if (exponent >= 0 and num < den << exponent) or (exponent < 0 and num << -exponent < den):
        exponent -= 1
    quantum = max(exponent, fmt.min_exp) - fmt.precision + 1  # weight of the last bit
    if quantum >= 0:
        den <<= quantum
    else:
        num <<= -quantum
    significand, remainder = divmod(num, den)
    if 2 * remainder > den or (2 * remainder == den and significand & 1):
        significand += 1
    if significand.bit_length() + quantum > fmt.max_exp + 1:
        return -math.inf if value < 0 else math.inf
    if value < 0:
        significand = -significand
    if quantum >= 0:
        return Fraction(significand << quantum)
    return Fraction(significand, 1 << -quantum)


# Parsing -------------------------------------------------------------------------------------


def _convert(match: re.Match[bytes], fmt: _BinaryFormat) -> LongDouble | None:
    """Value of a syntactically valid number in ``fmt``, None if it over/underflows."""
    negative = match["sign"] == b"-"
    if match["inf"] is not None:
        return -math.inf if negative else math.inf
    if match["hex"] is not None:
        exact = _hex_value(match["hex"], match["hexp"], fmt)
    else:
        exact = _decimal_value(match["dec"], match["dexp"])
    if exact is None:
        return None  # far out of range
    if not exact:
        return _ZERO  # an exact zero is fine; only a nonzero value rounding to 0 is an error
    rounded = _round(-exact if negative else exact, fmt)
    if isinstance(rounded, float) or not rounded:
        return None
    return rounded


def _hex_value(digits: bytes, exponent_text: bytes | None, fmt: _BinaryFormat
               ) -> Fraction | None:
    whole, _, fraction = digits.partition(b".")
    significand = int(whole + fraction or b"0", 16)
    exponent = _exponent(exponent_text) - 4 * len(fraction)
    if not significand:
        return _ZERO
    order = significand.bit_length() + exponent  # value < 2**order
    if order > fmt.max_exp + 2 or order < fmt.min_exp - fmt.precision - 2:
        return None
    if order <= fmt.min_exp:
        significand = _glibc_subnormal_hex_quirk(significand, fmt)
    if exponent >= 0:
        return Fraction(significand << exponent)
    return Fraction(significand, 1 << -exponent)


def _glibc_subnormal_hex_quirk(significand: int, fmt: _BinaryFormat) -> int:
    """Reproduce glibc's (2.36) rounding of hexadecimal input to a subnormal result.

    When glibc's ``round_and_return`` denormalizes, it drops the first bit beyond the
    significand (the old rounding bit) instead of folding it into the sticky bits, so it rounds
    as if that bit were zero.  E.g. ``0x1.00000000000018p-1023`` gives 2**-1023 instead of
    2**-1023 + 2**-1074, and ``0x1.0000000000000001p-16446`` gives 0, which Redis then rejects.
    Decimal input takes another glibc path and is rounded correctly.
    """
    dropped = significand.bit_length() - 1 - fmt.precision
    if dropped >= 0:
        significand &= ~(1 << dropped)
    return significand


def _decimal_value(digits: bytes, exponent_text: bytes | None) -> Fraction | None:
    whole, _, fraction = digits.partition(b".")
    significant = (whole + fraction).lstrip(b"0")
    if not significant:
        return _ZERO
    exponent = _exponent(exponent_text) - len(fraction)
    order = len(significant) + exponent  # value < 10**order
    if not _DECIMAL_ORDER_LIMITS[0] <= order <= _DECIMAL_ORDER_LIMITS[1]:
        return None
    significand = _decimal_to_int(significant)
    if exponent >= 0:
        return Fraction(significand * 10**exponent)
    return Fraction(significand, 10**-exponent)


def _parse_decimal_double(text: bytes, digits: bytes) -> float | None:
    """CPython's float() rounds decimal input correctly, exactly like glibc strtod."""
    value = float(text)
    if math.isinf(value):
        return None  # overflow (the literal 'inf' never gets here)
    if not value and digits.strip(b"0.") != b"":
        return None  # nonzero input that underflowed to zero
    return value


def _exponent(text: bytes | None) -> int:
    if text is None:
        return 0
    sign = -1 if text.startswith(b"-") else 1
    magnitude = text.lstrip(b"+-").lstrip(b"0")
    if len(magnitude) > 10:
        return sign * _EXPONENT_CLAMP
    return sign * min(int(magnitude or b"0"), _EXPONENT_CLAMP)


def _decimal_to_int(digits: bytes) -> int:
    """int(digits) for any length, without tripping CPython's int/str digit limit."""
    if len(digits) <= _INT_STR_CHUNK:
        return int(digits)
    high, low = digits[:-_INT_STR_CHUNK], digits[-_INT_STR_CHUNK:]
    return _decimal_to_int(high) * 10**_INT_STR_CHUNK + int(low)


def _int_to_decimal(number: int) -> bytes:
    """The decimal digits of a non-negative int of any size (see ``_decimal_to_int``)."""
    if number < _CHUNK_POWER:
        return b"%d" % number
    high, low = divmod(number, _CHUNK_POWER)
    return _int_to_decimal(high) + str(low).zfill(_INT_STR_CHUNK).encode()
