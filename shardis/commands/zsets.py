"""Sorted-set commands: worker-side operations over one shard's keyspace (Redis's t_zset.c).

A sorted set is a :class:`ZSetValue`: a ``dict`` member -> score (O(1) ZSCORE, and the shared
sampling and SCAN helpers of ``hashes.py`` work on it as on a hash) plus a
``sortedcontainers.SortedList`` of ``(score, member)`` tuples for order, rank and ranges in
O(log n).  Python's tuple order is Redis's order: by score, then by member bytes (memcmp, then
length).  SortedList was chosen over a hand-written skiplist: it is maintained, pure Python and
faster than any Python skiplist (its B-tree-like list of lists keeps bisect in C).

The value remembers Redis 7.0's encoding: ``listpack`` while it has at most
``zset-max-listpack-entries`` (128, the real server's default) members none longer than
``zset-max-listpack-value`` (64) bytes, ``skiplist`` after that, never back; a zset *built* by
a command (ZUNIONSTORE, ZRANGESTORE...) gets ``listpack`` whenever it fits.

Scores are Python floats (C doubles), replied as doubles (RESP3 ``,``; RESP2 ``%.17g`` bulk).
Lex ranges assume, as Redis documents, that all members have the same score.

ZUNION, ZINTER, ZDIFF, ZINTERCARD and the *STORE forms are pure functions over the sources
(:func:`zunion_generic`...): the ops here run them when all keys are on this worker, the router
(``shardis.router.zsets``) over sources gathered with ``__zgather``, storing with ``__zstore``.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sortedcontainers import SortedList

from shardis import errors
from shardis.commands import Fanout, command, keys_after_numkeys
from shardis.commands.hashes import (
    collection_memory,
    commit,
    parse_collection_scan,
    parse_range_count,
    random_element,
    random_sample,
    scan_page,
    value_of_type,
)
from shardis.commands.keys import parse_cursor
from shardis.commands.sets import SetValue
from shardis.commands.strings import LLONG_MAX, parse_int
from shardis.errors import ReplyError
from shardis.floats import parse_double
from shardis.glob import compile_glob
from shardis.resp import NULL_ARRAY, Pairs, format_double
from shardis.worker.blocking import blocking_attempt, numkeys_narrowed
from shardis.worker.keyspace import Keyspace
from shardis.worker.types import (
    ValueType,
    register_listpack_packing,
    register_type,
)

#: Redis 7.0.15's defaults as the real server reports them (CONFIG GET zset-*).
ZSET_MAX_LISTPACK_ENTRIES = 128
ZSET_MAX_LISTPACK_VALUE = 64

NAN_SCORE = "ERR resulting score is not a number (NaN)"
NOT_FLOAT_RANGE = "ERR min or max is not a float"
NOT_LEX_RANGE = "ERR min or max not valid string range item"
WEIGHT_NOT_FLOAT = "ERR weight value is not a float"
COUNT_NOT_POSITIVE = "ERR count should be greater than 0"
LIMIT_ONLY_BY = (
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
)
WITHSCORES_NOT_BYLEX = "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
XX_AND_NX = "ERR XX and NX options at the same time are not compatible"
GT_LT_NX = "ERR GT, LT, and/or NX options at the same time are not compatible"
INCR_SINGLE_PAIR = "ERR INCR option supports a single increment-element pair"


class ZSetValue(dict):
    """member -> score, plus the ordered view, Redis's encoding and the sampling/SCAN caches.

    Every change must go through :meth:`put` and :meth:`remove`, which keep the order, the
    encoding and the sampling pool consistent with the dict.
    """

    __slots__ = ("listpack", "order", "pool", "scans")

    def __init__(self, items: Iterable[tuple[bytes, float]] = (), listpack: bool = True) -> None:
        super().__init__(items)
        self.order = SortedList((score, member) for member, score in self.items())
        self.listpack = listpack
        self.pool: list[bytes] | None = None
        self.scans: dict[int, list[bytes]] | None = None

    @classmethod
    def built(cls, items: Iterable[tuple[bytes, float]]) -> ZSetValue:
        """A zset made by a command (store, RENAME target...): listpack whenever it fits."""
        value = cls(items)
        value.listpack = fits_listpack(value)
        if value.listpack and any(score == 0 for score in value.values()):
            value = cls(((m, s or 0.0) for m, s in value.items()), listpack=True)
        return value

    def put(self, member: bytes, score: float) -> None:
        """Insert or move ``member``; converts to skiplist like Redis's ``zsetAdd``."""
        old = self.get(member)
        if old is not None:
            self.order.remove((old, member))
        else:
            self.pool = None  # the sampling pool must hold every member
            if self.listpack and (len(self) + 1 > ZSET_MAX_LISTPACK_ENTRIES
                                  or len(member) > ZSET_MAX_LISTPACK_VALUE):
                self.listpack = False
        if self.listpack and score == 0:
            score = 0.0  # a listpack keeps scores as text, where Redis writes -0 as "0"
        self[member] = score
        self.order.add((score, member))

    def remove(self, member: bytes) -> bool:
        score = self.pop(member, None)
        if score is None:
            return False
        self.order.remove((score, member))
        return True

    def remove_slice(self, start: int, stop: int) -> int:
        """Remove the members of ranks ``start..stop-1``; how many."""
        doomed = self.order[start:stop]
        del self.order[start:stop]
        for _, member in doomed:
            del self[member]
        return len(doomed)

    def rank(self, member: bytes) -> int | None:
        score = self.get(member)
        return None if score is None else self.order.bisect_left((score, member))


def fits_listpack(value: ZSetValue) -> bool:
    return len(value) <= ZSET_MAX_LISTPACK_ENTRIES and all(
        len(member) <= ZSET_MAX_LISTPACK_VALUE for member in value)


def _zset_dump(value: object) -> object:
    assert isinstance(value, ZSetValue)
    return (value.listpack, list(value.items()))


def _zset_load(plain: object) -> ZSetValue:
    listpack, items = plain  # type: ignore[misc]
    return ZSetValue(items, listpack)


register_type(
    ZSetValue,
    ValueType(
        name=b"zset",
        encoding=lambda value: b"listpack" if value.listpack else b"skiplist",  # type: ignore[attr-defined]
        dump=_zset_dump,
        load=_zset_load,
        memory=lambda value, samples=5: collection_memory(value, sys.getsizeof, samples) * 2,
    ),
)


class PackedZSet(bytes):
    """A listpack zset at rest (see ``shardis.worker.types``): its members and their scores."""

    __slots__ = ()


register_listpack_packing(ZSetValue, PackedZSet)


# Parsing -------------------------------------------------------------------------------------
def parse_score(raw: bytes, message: str = errors.NOT_FLOAT) -> float:
    """``getDoubleFromObjectOrReply``: Redis's ``string2d`` (no NaN, no overflow)."""
    value = parse_double(raw)
    if value is None:
        raise ReplyError(message)
    return value


_STRTOD = re.compile(
    rb"[+-]?(?:(?i:inf(?:inity)?)|0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)"
    rb"(?:[pP][+-]?[0-9]+)?|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)
_C_SPACE = b" \t\n\v\f\r"


def strtod_whole(raw: bytes) -> float | None:
    """A range bound as ``zslParseRange`` reads it: C ``strtod`` that must consume everything.

    Unlike ``string2d`` this accepts leading spaces, the empty string (0) and overflow.
    """
    text = raw.lstrip(_C_SPACE)
    if not text:
        return 0.0 if not raw else None
    if _STRTOD.fullmatch(text) is None:
        return None
    if b"x" in text or b"X" in text:
        value = parse_double(text)  # hex: exact via floats; overflow rejected (rare)
        return value
    return float(text)


@dataclass(frozen=True)
class ScoreRange:
    low: float
    low_ex: bool
    high: float
    high_ex: bool


def _score_bound(raw: bytes) -> tuple[float, bool]:
    exclusive = raw[:1] == b"("
    value = strtod_whole(raw[1:] if exclusive else raw)
    if value is None or math.isnan(value):
        raise ReplyError(NOT_FLOAT_RANGE)
    return value, exclusive


def parse_score_range(low: bytes, high: bytes) -> ScoreRange:
    return ScoreRange(*_score_bound(low), *_score_bound(high))


#: Lex bounds: ``b"-"``/``b"+"`` stand for minus and plus infinity, as Redis's shared strings.
MIN_LEX, MAX_LEX = object(), object()


@dataclass(frozen=True)
class LexRange:
    low: object
    low_ex: bool
    high: object
    high_ex: bool


def _lex_bound(raw: bytes) -> tuple[object, bool]:
    """``zslParseLexRangeItem``; C reads ``+``/``-`` as a NUL-terminated string."""
    head = raw[:1]
    if head in (b"+", b"-"):
        if len(raw) > 1 and raw[1] != 0:
            raise ReplyError(NOT_LEX_RANGE)
        return (MAX_LEX if head == b"+" else MIN_LEX), True
    if head in (b"(", b"["):
        return raw[1:], head == b"("
    raise ReplyError(NOT_LEX_RANGE)


def parse_lex_range(low: bytes, high: bytes) -> LexRange:
    return LexRange(*_lex_bound(low), *_lex_bound(high))


# Range lookups: half-open index ranges into ``value.order`` ---------------------------------
def _first_above(order: SortedList, score: float) -> int:
    """Index of the first element whose score is > ``score``."""
    if score == math.inf:
        return len(order)
    return order.bisect_left((math.nextafter(score, math.inf),))


def score_slice(value: ZSetValue, spec: ScoreRange) -> tuple[int, int]:
    order = value.order
    start = (_first_above(order, spec.low) if spec.low_ex
             else order.bisect_left((spec.low,)))
    stop = (order.bisect_left((spec.high,)) if spec.high_ex
            else _first_above(order, spec.high))
    return start, max(start, stop)


def _gte_min(member: bytes, spec: LexRange) -> bool:
    low = spec.low
    if low is MIN_LEX or low is MAX_LEX:
        return low is MIN_LEX
    return member > low if spec.low_ex else member >= low  # type: ignore[operator]


def _lte_max(member: bytes, spec: LexRange) -> bool:
    high = spec.high
    if high is MIN_LEX or high is MAX_LEX:
        return high is MAX_LEX
    return member < high if spec.high_ex else member <= high  # type: ignore[operator]


def _lex_key(bound: object) -> tuple[int, bytes]:
    if bound is MIN_LEX:
        return (0, b"")
    if bound is MAX_LEX:
        return (2, b"")
    return (1, bound)  # type: ignore[return-value]


def lex_range_empty(value: ZSetValue, spec: LexRange) -> bool:
    """``zslIsInLexRange`` negated: an inverted range, or one missing the zset's ends."""
    low, high = _lex_key(spec.low), _lex_key(spec.high)
    if low > high or (low == high and (spec.low_ex or spec.high_ex)):
        return True
    order = value.order
    return not order or not _gte_min(order[-1][1], spec) or not _lte_max(order[0][1], spec)


def lex_slice(value: ZSetValue, spec: LexRange, reverse: bool = False) -> tuple[int, int]:
    """Ranks ``[start, stop)`` of the members in the lex range.

    Redis defines lex ranges for members sharing one score: then this is a bisection.  With
    mixed scores it reproduces the listpack walk (first member past the low end, then on while
    inside the high end; from the tail when ``reverse``), in O(n).
    """
    order = value.order
    if lex_range_empty(value, spec):
        return 0, 0
    if order[0][0] == order[-1][0]:
        score = order[0][0]

        def position(bound: object, after_equal: bool) -> int:
            if bound is MIN_LEX:
                return 0
            if bound is MAX_LEX:
                return len(order)
            key = (score, bound)
            return order.bisect_right(key) if after_equal else order.bisect_left(key)

        start = position(spec.low, spec.low_ex)
        return start, max(start, position(spec.high, not spec.high_ex))
    members = [member for _, member in order]
    if reverse:
        end = next((i for i in range(len(members) - 1, -1, -1)
                    if _lte_max(members[i], spec)), -1)
        begin = end
        while begin >= 0 and _gte_min(members[begin], spec):
            begin -= 1
        return begin + 1, end + 1
    first = next((i for i, m in enumerate(members) if _gte_min(m, spec)), len(members))
    stop = first
    while stop < len(members) and _lte_max(members[stop], spec):
        stop += 1
    return first, stop


def rank_slice(length: int, start: int, end: int) -> tuple[int, int]:
    """Redis's sanitising of ``start``/``end`` ranks (inclusive, negative from the end)."""
    if start < 0:
        start += length
    if end < 0:
        end += length
    start = max(start, 0)
    if start > end or start >= length:
        return 0, 0
    return start, min(end, length - 1) + 1


def limited(start: int, stop: int, offset: int, count: int) -> tuple[int, int]:
    """Apply LIMIT to a half-open range: a negative offset skips everything (C's
    ``while (offset--)``), a negative count means all."""
    if offset < 0:
        return stop, stop
    start = min(start + offset, stop)
    if count >= 0:
        stop = min(stop, start + count)
    return start, stop


# Writes: ZADD / ZINCRBY ---------------------------------------------------------------------
@dataclass
class ZAddFlags:
    nx: bool = False
    xx: bool = False
    gt: bool = False
    lt: bool = False
    ch: bool = False
    incr: bool = False


def parse_zadd(args: list[bytes], incr: bool) -> tuple[ZAddFlags, list[tuple[float, bytes]]]:
    """Options, then the (score, member) pairs, with Redis's checks in Redis's order."""
    flags = ZAddFlags(incr=incr)
    j = 2
    while j < len(args):
        name = args[j].lower().decode("latin-1")
        if name not in ("nx", "xx", "ch", "incr", "gt", "lt"):
            break
        setattr(flags, name, True)
        j += 1
    rest = args[j:]
    if not rest or len(rest) % 2:
        raise ReplyError(errors.SYNTAX)
    if flags.nx and flags.xx:
        raise ReplyError(XX_AND_NX)
    if (flags.gt and flags.nx) or (flags.lt and flags.nx) or (flags.gt and flags.lt):
        raise ReplyError(GT_LT_NX)
    if flags.incr and len(rest) > 2:
        raise ReplyError(INCR_SINGLE_PAIR)
    pairs = [(parse_score(rest[i]), rest[i + 1]) for i in range(0, len(rest), 2)]
    return flags, pairs


def zset_add(value: ZSetValue, score: float, member: bytes, flags: ZAddFlags
             ) -> tuple[str, float]:
    """Redis's ``zsetAdd``: ("added" | "updated" | "same" | "nop", new score); NaN raises."""
    current = value.get(member)
    if current is not None:
        if flags.nx:
            return "nop", current
        if flags.incr:
            score += current
            if math.isnan(score):
                raise ReplyError(NAN_SCORE)
        if (flags.lt and score >= current) or (flags.gt and score <= current):
            return "nop", current
        if score != current:
            value.put(member, score)
            return "updated", score
        return "same", score
    if flags.xx:
        return "nop", score
    value.put(member, score)
    return "added", score


def zadd_generic(db: Keyspace, args: list[bytes], incr: bool) -> object:
    flags, pairs = parse_zadd(args, incr)
    key = args[1]
    value = value_of_type(db, key, ZSetValue)
    created = value is None
    if value is None:
        if flags.xx:
            return None if flags.incr else 0
        value = ZSetValue(listpack=len(pairs[0][1]) <= ZSET_MAX_LISTPACK_VALUE)
    added = updated = processed = 0
    score = 0.0
    try:
        for new, member in pairs:
            outcome, score = zset_add(value, new, member, flags)
            added += outcome == "added"
            updated += outcome == "updated"
            processed += outcome != "nop"
    finally:
        if added or updated:
            commit(db, key, value, created)
    if flags.incr:
        return score if processed else None
    return added + updated if flags.ch else added


@command("zadd", -4, "write denyoom fast", keys=(1, 1, 1), acl="write sortedset fast",
         group="sorted-set")
def zadd_command(db: Keyspace, args: list[bytes]) -> object:
    return zadd_generic(db, args, incr=False)


@command("zincrby", 4, "write denyoom fast", keys=(1, 1, 1), acl="write sortedset fast",
         group="sorted-set")
def zincrby_command(db: Keyspace, args: list[bytes]) -> object:
    return zadd_generic(db, args, incr=True)


# Writes: removals ----------------------------------------------------------------------------
@command("zrem", -3, "write fast", keys=(1, 1, 1), acl="write sortedset fast",
         group="sorted-set")
def zrem_command(db: Keyspace, args: list[bytes]) -> object:
    key = args[1]
    value = value_of_type(db, key, ZSetValue)
    if value is None:
        return 0
    removed = 0
    for member in args[2:]:
        removed += value.remove(member)
        if not value:
            break
    if removed:
        commit(db, key, value, created=False)
    return removed


def zremrange_generic(db: Keyspace, args: list[bytes],
                      find: Callable[[ZSetValue], tuple[int, int]]) -> int:
    """ZREMRANGEBY*: the range is parsed by the caller (errors before the key lookup)."""
    key = args[1]
    value = value_of_type(db, key, ZSetValue)
    if value is None:
        return 0
    start, stop = find(value)
    removed = value.remove_slice(start, stop)
    if removed:
        commit(db, key, value, created=False)
    return removed


@command("zremrangebyrank", 4, "write", keys=(1, 1, 1), acl="write sortedset slow",
         group="sorted-set")
def zremrangebyrank_command(db: Keyspace, args: list[bytes]) -> object:
    start, end = parse_int(args[2]), parse_int(args[3])
    return zremrange_generic(db, args, lambda value: rank_slice(len(value), start, end))


@command("zremrangebyscore", 4, "write", keys=(1, 1, 1), acl="write sortedset slow",
         group="sorted-set")
def zremrangebyscore_command(db: Keyspace, args: list[bytes]) -> object:
    spec = parse_score_range(args[2], args[3])
    return zremrange_generic(db, args, lambda value: score_slice(value, spec))


@command("zremrangebylex", 4, "write", keys=(1, 1, 1), acl="write sortedset slow",
         group="sorted-set")
def zremrangebylex_command(db: Keyspace, args: list[bytes]) -> object:
    spec = parse_lex_range(args[2], args[3])
    return zremrange_generic(db, args, lambda value: lex_slice(value, spec))


# Reads: single members and counts ------------------------------------------------------------
@command("zscore", 3, "readonly fast", keys=(1, 1, 1), acl="read sortedset fast",
         group="sorted-set")
def zscore_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], ZSetValue)
    return None if value is None else value.get(args[2])


@command("zmscore", -3, "readonly fast", keys=(1, 1, 1), acl="read sortedset fast",
         group="sorted-set")
def zmscore_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], ZSetValue)
    if value is None:
        return [None] * (len(args) - 2)
    return [value.get(member) for member in args[2:]]


@command("zcard", 2, "readonly fast", keys=(1, 1, 1), acl="read sortedset fast",
         group="sorted-set")
def zcard_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], ZSetValue)
    return 0 if value is None else len(value)


def count_generic(db: Keyspace, key: bytes,
                  find: Callable[[ZSetValue], tuple[int, int]]) -> int:
    value = value_of_type(db, key, ZSetValue)
    if value is None:
        return 0
    start, stop = find(value)
    return stop - start


@command("zcount", 4, "readonly fast", keys=(1, 1, 1), acl="read sortedset fast",
         group="sorted-set")
def zcount_command(db: Keyspace, args: list[bytes]) -> object:
    spec = parse_score_range(args[2], args[3])
    return count_generic(db, args[1], lambda value: score_slice(value, spec))


@command("zlexcount", 4, "readonly fast", keys=(1, 1, 1), acl="read sortedset fast",
         group="sorted-set")
def zlexcount_command(db: Keyspace, args: list[bytes]) -> object:
    spec = parse_lex_range(args[2], args[3])
    return count_generic(db, args[1], lambda value: lex_slice(value, spec))


def rank_generic(db: Keyspace, args: list[bytes], reverse: bool) -> int | None:
    value = value_of_type(db, args[1], ZSetValue)
    rank = None if value is None else value.rank(args[2])
    if rank is None or not reverse:
        return rank
    return len(value) - 1 - rank  # type: ignore[arg-type]


@command("zrank", 3, "readonly fast", keys=(1, 1, 1), acl="read sortedset fast",
         group="sorted-set")
def zrank_command(db: Keyspace, args: list[bytes]) -> object:
    return rank_generic(db, args, reverse=False)


@command("zrevrank", 3, "readonly fast", keys=(1, 1, 1), acl="read sortedset fast",
         group="sorted-set")
def zrevrank_command(db: Keyspace, args: list[bytes]) -> object:
    return rank_generic(db, args, reverse=True)


# ZRANGE and friends ---------------------------------------------------------------------------
RANK, SCORE, LEX, AUTO = "rank", "score", "lex", "auto"


@dataclass
class RangeQuery:
    """A parsed ``zrangeGenericCommand`` request."""

    key: bytes
    kind: str
    reverse: bool
    withscores: bool
    bounds: object  # (start, end) ranks, a ScoreRange or a LexRange
    offset: int = 0
    limit: int = -1


def parse_zrange(args: list[bytes], first: int, store: bool, kind: str = AUTO,
                 reverse: bool | None = None) -> RangeQuery:
    """Options after ``<src> <min> <max>`` at ``first``, then the range, as Redis checks them.

    ``kind``/``reverse``: fixed by the command (ZRANGEBYSCORE...), or AUTO/None for ZRANGE.
    """
    withscores, offset, limit = False, 0, -1
    j = first + 3
    while j < len(args):
        opt = args[j].lower()
        if not store and opt == b"withscores":
            withscores = True
        elif opt == b"limit" and len(args) - j - 1 >= 2:
            offset, limit = parse_int(args[j + 1]), parse_int(args[j + 2])
            j += 2
        elif reverse is None and opt == b"rev":
            reverse = True
        elif kind == AUTO and opt in (b"bylex", b"byscore"):
            kind = LEX if opt == b"bylex" else SCORE
        else:
            raise ReplyError(errors.SYNTAX)
        j += 1
    reverse = bool(reverse)
    kind = RANK if kind == AUTO else kind
    if limit != -1 and kind == RANK:
        raise ReplyError(LIMIT_ONLY_BY)
    if withscores and kind == LEX:
        raise ReplyError(WITHSCORES_NOT_BYLEX)
    low, high = args[first + 1], args[first + 2]
    if reverse and kind != RANK:
        low, high = high, low
    bounds: object
    if kind == RANK:
        bounds = (parse_int(low), parse_int(high))
    elif kind == SCORE:
        bounds = parse_score_range(low, high)
    else:
        bounds = parse_lex_range(low, high)
    return RangeQuery(args[first], kind, reverse, withscores, bounds, offset, limit)


def range_items(value: ZSetValue, query: RangeQuery) -> list[tuple[float, bytes]]:
    """The (score, member) items the query selects, in reply order."""
    order = value.order
    if query.kind == RANK:
        start, stop = rank_slice(len(value), *query.bounds)  # type: ignore[misc]
        if query.reverse:
            start, stop = len(value) - stop, len(value) - start
    else:
        if query.kind == SCORE:
            start, stop = score_slice(value, query.bounds)  # type: ignore[arg-type]
        else:
            start, stop = lex_slice(value, query.bounds, query.reverse)  # type: ignore[arg-type]
        if query.offset > 0 and query.offset >= len(value):
            return []
        if query.reverse:
            low, high = limited(len(order) - stop, len(order) - start, query.offset,
                                query.limit)
            start, stop = len(order) - high, len(order) - low
        else:
            start, stop = limited(start, stop, query.offset, query.limit)
    items = order[start:stop]
    if query.reverse:
        items.reverse()
    return items


def range_reply(items: list[tuple[float, bytes]], withscores: bool) -> object:
    if withscores:
        return Pairs((member, score) for score, member in items)
    return [member for _, member in items]


def zrange_generic(db: Keyspace, args: list[bytes], kind: str = AUTO,
                   reverse: bool | None = None) -> object:
    query = parse_zrange(args, 1, False, kind, reverse)
    value = value_of_type(db, query.key, ZSetValue)
    if value is None:
        return []
    return range_reply(range_items(value, query), query.withscores)


@command("zrange", -4, "readonly", keys=(1, 1, 1), acl="read sortedset slow",
         group="sorted-set")
def zrange_command(db: Keyspace, args: list[bytes]) -> object:
    return zrange_generic(db, args)


@command("zrevrange", -4, "readonly", keys=(1, 1, 1), acl="read sortedset slow",
         group="sorted-set")
def zrevrange_command(db: Keyspace, args: list[bytes]) -> object:
    return zrange_generic(db, args, RANK, True)


@command("zrangebyscore", -4, "readonly", keys=(1, 1, 1), acl="read sortedset slow",
         group="sorted-set")
def zrangebyscore_command(db: Keyspace, args: list[bytes]) -> object:
    return zrange_generic(db, args, SCORE, False)


@command("zrevrangebyscore", -4, "readonly", keys=(1, 1, 1), acl="read sortedset slow",
         group="sorted-set")
def zrevrangebyscore_command(db: Keyspace, args: list[bytes]) -> object:
    return zrange_generic(db, args, SCORE, True)


@command("zrangebylex", -4, "readonly", keys=(1, 1, 1), acl="read sortedset slow",
         group="sorted-set")
def zrangebylex_command(db: Keyspace, args: list[bytes]) -> object:
    return zrange_generic(db, args, LEX, False)


@command("zrevrangebylex", -4, "readonly", keys=(1, 1, 1), acl="read sortedset slow",
         group="sorted-set")
def zrevrangebylex_command(db: Keyspace, args: list[bytes]) -> object:
    return zrange_generic(db, args, LEX, True)


def zrangestore_items(db: Keyspace, args: list[bytes]) -> list[tuple[float, bytes]]:
    """What ZRANGESTORE would store: its range of the source (empty if missing)."""
    query = parse_zrange(args, 2, True)
    value = value_of_type(db, query.key, ZSetValue)
    return [] if value is None else range_items(value, query)


def store_zset(db: Keyspace, key: bytes, items: Iterable[tuple[bytes, float]]) -> int:
    """Replace ``key`` by a zset built from ``items`` (no TTL), or delete it if empty;
    returns the cardinality, the *STORE commands' reply."""
    result = ZSetValue.built(items)
    if result:
        db.set(key, result)
    else:
        db.delete(key)
    return len(result)


@command("zrangestore", -5, "write denyoom", keys=(1, 2, 1), fanout=Fanout.COORDINATED,
         acl="write sortedset slow", group="sorted-set")
def zrangestore_command(db: Keyspace, args: list[bytes]) -> object:
    items = zrangestore_items(db, args)
    return store_zset(db, args[1], ((member, score) for score, member in items))


# ZPOPMIN / ZPOPMAX / ZMPOP / BZPOP* ---------------------------------------------------------
MIN, MAX = 0, 1


def pop_items(db: Keyspace, key: bytes, value: ZSetValue, where: int, count: int
              ) -> list[list]:
    """Pop up to ``count`` lowest (MIN) or highest (MAX) members: ``[[member, score], ...]``."""
    order = value.order
    count = min(count, len(order))
    items = order[:count] if where == MIN else order[len(order) - count:][::-1]
    for _, member in items:
        value.remove(member)
    commit(db, key, value, created=False)
    return [[member, score] for score, member in items]


@command("zpopmin", -2, "write fast", keys=(1, 1, 1), acl="write sortedset fast",
         group="sorted-set")
def zpopmin_command(db: Keyspace, args: list[bytes]) -> object:
    return zpop_generic(db, args, MIN)


@command("zpopmax", -2, "write fast", keys=(1, 1, 1), acl="write sortedset fast",
         group="sorted-set")
def zpopmax_command(db: Keyspace, args: list[bytes]) -> object:
    return zpop_generic(db, args, MAX)


def zpop_generic(db: Keyspace, args: list[bytes], where: int) -> object:
    """ZPOPMIN/ZPOPMAX: flat ``[member, score]`` without a count; with one, pairs (flat in
    RESP2, nested in RESP3)."""
    if len(args) > 3:
        raise ReplyError(errors.SYNTAX)
    count = None
    if len(args) == 3:
        count = parse_int(args[2], errors.NOT_POSITIVE)
        if count < 0:
            raise ReplyError(errors.NOT_POSITIVE)
    key = args[1]
    value = value_of_type(db, key, ZSetValue)
    if value is None or count == 0:
        return []
    popped = pop_items(db, key, value, where, 1 if count is None else count)
    if count is None:
        return popped[0]
    return Pairs(tuple(pair) for pair in popped)


def parse_zmpop(args: list[bytes], numkeys_index: int = 1) -> tuple[list[bytes], int, int]:
    """(keys, MIN|MAX, count) from ``ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]``."""
    numkeys = parse_int(args[numkeys_index], errors.NUMKEYS_NOT_POSITIVE)
    if numkeys < 1:
        raise ReplyError(errors.NUMKEYS_NOT_POSITIVE)
    where_index = numkeys_index + numkeys + 1
    if where_index >= len(args):
        raise ReplyError(errors.SYNTAX)
    where = {b"min": MIN, b"max": MAX}.get(args[where_index].lower())
    if where is None:
        raise ReplyError(errors.SYNTAX)
    count = -1
    j = where_index + 1
    while j < len(args):
        if count == -1 and args[j].lower() == b"count" and j + 1 < len(args):
            count = parse_int(args[j + 1], COUNT_NOT_POSITIVE)
            if count < 1:
                raise ReplyError(COUNT_NOT_POSITIVE)
            j += 2
        else:
            raise ReplyError(errors.SYNTAX)
    keys = args[numkeys_index + 1: where_index]
    return keys, where, 1 if count == -1 else count


def mpop_generic(db: Keyspace, keys: list[bytes], where: int, count: int) -> object:
    """``[key, [[member, score], ...]]`` from the first non-empty zset; NULL_ARRAY if none;
    WRONGTYPE for a wrong key met before one with data."""
    for key in keys:
        value = value_of_type(db, key, ZSetValue)
        if value is not None:
            return [key, pop_items(db, key, value, where, count)]
    return NULL_ARRAY


@command("zmpop", -4, "write movablekeys", fanout=Fanout.COORDINATED,
         acl="write sortedset slow", group="sorted-set", key_finder=keys_after_numkeys(1))
def zmpop_command(db: Keyspace, args: list[bytes]) -> object:
    keys, where, count = parse_zmpop(args)
    return mpop_generic(db, keys, where, count)


def bzpop_attempt(db: Keyspace, keys: list[bytes], where: int) -> list | None:
    """[key, member, score] from the first non-empty zset, or None to wait."""
    reply = mpop_generic(db, keys, where, 1)
    if reply is NULL_ARRAY:
        return None
    key, popped = reply  # type: ignore[misc]
    return [key, *popped[0]]


@blocking_attempt("bzpopmin", b"zset")
def bzpopmin_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    return bzpop_attempt(db, args[1:-1], MIN)


@blocking_attempt("bzpopmax", b"zset")
def bzpopmax_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    return bzpop_attempt(db, args[1:-1], MAX)


@blocking_attempt("bzmpop", b"zset", numkeys_narrowed)
def bzmpop_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    keys, where, count = parse_zmpop(args, numkeys_index=2)
    reply = mpop_generic(db, keys, where, count)
    return None if reply is NULL_ARRAY else reply


@command("bzpopmin", -3, "write noscript blocking fast", keys=(1, -2, 1),
         fanout=Fanout.BLOCKING, acl="write sortedset fast blocking", group="sorted-set",
         timeout_arg=-1)
def bzpopmin_command(db: Keyspace, args: list[bytes]) -> object:
    reply = bzpopmin_attempt(db, args)
    return NULL_ARRAY if reply is None else reply


@command("bzpopmax", -3, "write noscript blocking fast", keys=(1, -2, 1),
         fanout=Fanout.BLOCKING, acl="write sortedset fast blocking", group="sorted-set",
         timeout_arg=-1)
def bzpopmax_command(db: Keyspace, args: list[bytes]) -> object:
    reply = bzpopmax_attempt(db, args)
    return NULL_ARRAY if reply is None else reply


@command("bzmpop", -5, "write blocking movablekeys", fanout=Fanout.BLOCKING,
         acl="write sortedset slow blocking", group="sorted-set", timeout_arg=1,
         key_finder=keys_after_numkeys(2))
def bzmpop_command(db: Keyspace, args: list[bytes]) -> object:
    reply = bzmpop_attempt(db, args)
    return NULL_ARRAY if reply is None else reply


# ZRANDMEMBER / ZSCAN --------------------------------------------------------------------------
def parse_zrandmember(args: list[bytes]) -> tuple[int | None, bool]:
    """(count or None, WITHSCORES), all checked before the key lookup as in Redis."""
    if len(args) < 3:
        return None, False
    count = parse_range_count(args[2])
    if len(args) > 4 or (len(args) == 4 and args[3].lower() != b"withscores"):
        raise ReplyError(errors.SYNTAX)
    withscores = len(args) == 4
    if withscores and abs(count) > LLONG_MAX // 2:
        raise ReplyError(errors.OUT_OF_RANGE)
    return count, withscores


@command("zrandmember", -2, "readonly", keys=(1, 1, 1), acl="read sortedset slow",
         group="sorted-set", tips="nondeterministic_output")
def zrandmember_command(db: Keyspace, args: list[bytes]) -> object:
    count, withscores = parse_zrandmember(args)
    value = value_of_type(db, args[1], ZSetValue)
    if count is None:
        return None if value is None else random_element(value)
    if value is None or count == 0:
        return []
    members = random_sample(value, count, lambda: [m for _, m in value.order])
    if withscores:
        return Pairs((member, value[member]) for member in members)
    return members


@command("zscan", -3, "readonly", keys=(1, 1, 1), acl="read sortedset slow",
         group="sorted-set", tips="nondeterministic_output")
def zscan_command(db: Keyspace, args: list[bytes]) -> object:
    """A listpack zset comes whole, in order, with cursor 0 (as in Redis); a skiplist one is
    paged like HSCAN.  Scores are bulk strings (``%.17g``) in both protocols."""
    cursor = parse_cursor(args[2])
    value = value_of_type(db, args[1], ZSetValue)
    if value is None:
        return [b"0", []]
    count, pattern = parse_collection_scan(args)
    if value.listpack:
        cursor, page = 0, [member for _, member in value.order]
    else:
        cursor, page = scan_page(value, cursor, count)
    if pattern is not None and pattern != b"*":
        match = compile_glob(pattern)
        page = [member for member in page if match(member)]
    flat = [item for member in page for item in (member, format_double(value[member]))]
    return [b"%d" % cursor, flat]


# Algebra: ZUNION / ZINTER / ZDIFF / ZINTERCARD and *STORE -------------------------------------
#: A source: member -> score (a set's members score 1), or None for a missing key.
Source = dict | None
SUM, AGG_MIN, AGG_MAX = "sum", "min", "max"


@dataclass
class AlgebraQuery:
    keys: list[bytes]
    weights: list[float]
    aggregate: str = SUM
    withscores: bool = False
    limit: int = 0


def parse_numkeys(args: list[bytes], index: int, name: str) -> list[bytes]:
    """The source keys of ``... numkeys key [key ...]``; errors as ``zunionInterDiff...``."""
    numkeys = parse_int(args[index])
    if numkeys < 1:
        raise ReplyError(f"ERR at least 1 input key is needed for '{name}' command")
    if numkeys > len(args) - index - 1:
        raise ReplyError(errors.SYNTAX)
    return args[index + 1: index + 1 + numkeys]


def parse_algebra_options(args: list[bytes], index: int, op: str, store: bool,
                          card: bool) -> AlgebraQuery:
    """Everything after the keys; called once the sources' types are known (Redis checks
    WRONGTYPE first)."""
    keys = parse_numkeys(args, index, args[0].lower().decode("latin-1"))
    query = AlgebraQuery(keys, [1.0] * len(keys))
    j = index + 1 + len(keys)
    while j < len(args):
        opt, remaining = args[j].lower(), len(args) - j
        weighted = op != "diff" and not card
        if weighted and opt == b"weights" and remaining >= len(keys) + 1:
            query.weights = [parse_score(raw, WEIGHT_NOT_FLOAT)
                             for raw in args[j + 1: j + 1 + len(keys)]]
            j += 1 + len(keys)
        elif weighted and opt == b"aggregate" and remaining >= 2:
            name = args[j + 1].lower()
            if name not in (b"sum", b"min", b"max"):
                raise ReplyError(errors.SYNTAX)
            query.aggregate = name.decode()
            j += 2
        elif not store and not card and opt == b"withscores":
            query.withscores = True
            j += 1
        elif card and opt == b"limit" and remaining >= 2:
            query.limit = parse_int(args[j + 1], errors.LIMIT_NEGATIVE)
            if query.limit < 0:
                raise ReplyError(errors.LIMIT_NEGATIVE)
            j += 2
        else:
            raise ReplyError(errors.SYNTAX)
    return query


def _aggregate(target: float, value: float, how: str) -> float:
    """``zunionInterAggregate``: a NaN sum (inf + -inf) counts as 0."""
    if how == SUM:
        total = target + value
        return 0.0 if math.isnan(total) else total
    if how == AGG_MIN:
        return value if value < target else target
    return value if value > target else target


def _weighted(score: float, weight: float) -> float:
    value = weight * score
    return 0.0 if math.isnan(value) else value


def _by_size(sources: list[Source], weights: list[float]) -> list[tuple[dict, float]]:
    """Sources with their weights, smallest first (Redis sorts them by cardinality)."""
    pairs = [(src or {}, weight) for src, weight in zip(sources, weights)]
    return sorted(pairs, key=lambda pair: len(pair[0]))


def zunion_generic(sources: list[Source], query: AlgebraQuery) -> dict[bytes, float]:
    result: dict[bytes, float] = {}
    for src, weight in _by_size(sources, query.weights):
        for member, score in src.items():
            value = _weighted(score, weight)
            if member in result:
                result[member] = _aggregate(result[member], value, query.aggregate)
            else:
                result[member] = value
    return result


def zinter_generic(sources: list[Source], query: AlgebraQuery) -> dict[bytes, float]:
    ordered = _by_size(sources, query.weights)
    (first, first_weight), rest = ordered[0], ordered[1:]
    result: dict[bytes, float] = {}
    for member, score in first.items():
        total = _weighted(score, first_weight)
        for src, weight in rest:
            other = src.get(member)
            if other is None:
                break
            total = _aggregate(total, other * weight, query.aggregate)
        else:
            result[member] = total
            if query.limit and len(result) >= query.limit:
                break
    return result


def zdiff_generic(sources: list[Source], query: AlgebraQuery) -> dict[bytes, float]:
    first = sources[0] or {}
    others = [src for src in sources[1:] if src]
    return {m: s for m, s in first.items() if not any(m in src for src in others)}


ALGEBRA: dict[str, Callable[[list[Source], AlgebraQuery], dict[bytes, float]]] = {
    "union": zunion_generic,
    "inter": zinter_generic,
    "diff": zdiff_generic,
}


def source_of(value: object) -> Source:
    """A source from a stored value: zsets as they are, sets with score 1; WRONGTYPE else."""
    if value is None or type(value) is ZSetValue:
        return value  # type: ignore[return-value]
    if type(value) is SetValue:
        return dict.fromkeys(value, 1.0)
    raise ReplyError(errors.WRONGTYPE)


def sources_at(db: Keyspace, keys: list[bytes]) -> list[Source]:
    return [source_of(db.get(key)) for key in keys]


def sorted_result(result: dict[bytes, float]) -> list[tuple[float, bytes]]:
    return sorted((score, member) for member, score in result.items())


def algebra_reply(args: list[bytes], sources: list[Source], op: str) -> object:
    """ZUNION/ZINTER/ZDIFF (numkeys at 1) over the sources of its keys."""
    query = parse_algebra_options(args, 1, op, store=False, card=False)
    return range_reply(sorted_result(ALGEBRA[op](sources, query)), query.withscores)


def intercard_reply(args: list[bytes], sources: list[Source]) -> int:
    query = parse_algebra_options(args, 1, "inter", store=False, card=True)
    return len(zinter_generic(sources, query))


def store_result(args: list[bytes], sources: list[Source], op: str) -> dict[bytes, float]:
    """Z*STORE (numkeys at 2): the result to store at ``args[1]``."""
    query = parse_algebra_options(args, 2, op, store=True, card=False)
    return ALGEBRA[op](sources, query)


def algebra_keys(args: list[bytes]) -> list[int]:
    """Key positions of ZUNION/ZINTER/ZDIFF/ZINTERCARD: numkeys at 1."""
    return list(keys_after_numkeys(1)(args))


def store_keys(args: list[bytes]) -> list[int]:
    """Key positions of Z*STORE: the destination, then numkeys (at 2) sources."""
    return [1, *keys_after_numkeys(2)(args)]


def _algebra_command(name: str, op: str) -> None:
    @command(name, -3, "readonly movablekeys", fanout=Fanout.COORDINATED,
             acl="read sortedset slow", group="sorted-set", key_finder=algebra_keys)
    def run(db: Keyspace, args: list[bytes]) -> object:
        keys = parse_numkeys(args, 1, name)
        return algebra_reply(args, sources_at(db, keys), op)


def _store_command(name: str, op: str) -> None:
    @command(name, -4, "write denyoom movablekeys", keys=(1, 1, 1), fanout=Fanout.COORDINATED,
             acl="write sortedset slow", group="sorted-set", key_finder=store_keys)
    def run(db: Keyspace, args: list[bytes]) -> object:
        keys = parse_numkeys(args, 2, name)
        return store_zset(db, args[1], store_result(args, sources_at(db, keys), op).items())


for _name, _op in (("zunion", "union"), ("zinter", "inter"), ("zdiff", "diff")):
    _algebra_command(_name, _op)
    _store_command(_name + "store", _op)


@command("zintercard", -3, "readonly movablekeys", fanout=Fanout.COORDINATED,
         acl="read sortedset slow", group="sorted-set", key_finder=algebra_keys)
def zintercard_command(db: Keyspace, args: list[bytes]) -> object:
    keys = parse_numkeys(args, 1, "zintercard")
    return intercard_reply(args, sources_at(db, keys))


# Internal commands for the router's cross-worker operations -----------------------------------
@command("__zgather", -2, "readonly internal", keys=(1, -1, 1))
def internal_zgather_command(db: Keyspace, args: list[bytes]) -> object:
    """``__zgather key [key ...]`` -> per key ``[present(0|1), [member, score, ...]]`` (sets
    as scores of 1); WRONGTYPE if any key holds another type."""
    out = []
    for src in sources_at(db, args[1:]):
        flat = [] if src is None else [item for pair in src.items() for item in pair]
        out.append([0 if src is None else 1, flat])
    return out


def source_from_gather(entry: list) -> Source:
    """Rebuild a source from one ``__zgather`` entry (on the router)."""
    present, flat = entry
    if not present:
        return None
    return {flat[i]: float(flat[i + 1]) for i in range(0, len(flat), 2)}


@command("__zrangeread", -5, "readonly internal", keys=(2, 2, 1))
def internal_zrangeread_command(db: Keyspace, args: list[bytes]) -> object:
    """``__zrangeread <ZRANGESTORE args without its name>``: ``[member, score, ...]`` of what
    ZRANGESTORE would store, for the router to store on another worker."""
    items = zrangestore_items(db, [b"zrangestore", *args[1:]])
    return [item for score, member in items for item in (member, score)]


@command("__zstore", -2, "write internal", keys=(1, 1, 1))
def internal_zstore_command(db: Keyspace, args: list[bytes]) -> object:
    """``__zstore key [member score ...]``: replace ``key`` by this zset (delete it if
    empty); returns the cardinality."""
    flat = args[2:]
    return store_zset(db, args[1], ((flat[i], float(flat[i + 1]))
                                    for i in range(0, len(flat), 2)))
