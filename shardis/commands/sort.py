"""SORT and SORT_RO (Redis's sort.c): the pure sorting logic and the worker-side ops.

SORT is split into pure steps, shared by the worker op (everything on one worker) and the
router (``shardis.router.sort``: the source and the keys its BY/GET patterns name live on
several workers):

1. :func:`parse_sort` reads the options left to right, with Redis's errors in Redis's order
   (syntax, LIMIT integers, the ACL refusals of BY/GET patterns), before any key is read.
2. :func:`read_source` takes the collection to sort from the keyspace (WRONGTYPE unless a list,
   set or sorted set; a missing key sorts as an empty list), in its natural order.
3. :func:`sort_window` sorts it (or not: ``BY nosort``) and cuts the LIMIT window, given the
   BY weights; :func:`project` turns the window into the reply (GET patterns).
4. :func:`store_sorted` writes the STORE destination.

The keys a pattern names are known only once the source is read.  Steps 3 and 4 see them
through a lookup function (:data:`Lookup`): the worker reads its own keyspace, the router
fetches them from their workers first (``__sortfetch``), then runs the same functions.
:func:`lookup_requests` says which (key, field) pairs a pattern needs, as Redis's
``lookupKeyByPattern`` builds them.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from shardis import errors
from shardis.commands import COMMANDS, Fanout, command
from shardis.commands.hashes import HashValue
from shardis.commands.sets import SetValue
from shardis.commands.strings import parse_int
from shardis.commands.zsets import ZSetValue
from shardis.errors import ReplyError
from shardis.worker.keyspace import STRING_TYPES, Keyspace

SCORE_NOT_DOUBLE = "ERR One or more scores can't be converted into double"
BY_DENIED = "ERR BY option of SORT denied due to insufficient ACL permissions."
GET_DENIED = "ERR GET option of SORT denied due to insufficient ACL permissions."

LIST, SET, ZSET = b"list", b"set", b"zset"

#: (key, field) a pattern names for one element; field b"" means "the string at key".
Request = tuple[bytes, bytes]
#: pattern, element -> the value the pattern names for that element, or None.
Lookup = Callable[[bytes, bytes], bytes | None]


# Options -------------------------------------------------------------------------------------
@dataclass
class SortOptions:
    """What the arguments ask for, as ``sortCommandGeneric`` leaves its locals after parsing."""

    desc: bool = False
    alpha: bool = False
    limit_start: int = 0
    limit_count: int = -1
    #: the last BY pattern (None: sort by the elements themselves).
    by: bytes | None = None
    #: a BY without ``*`` was seen: do not sort.  Sticky, as in Redis: a later BY pattern
    #: with ``*`` does not undo it.
    dontsort: bool = False
    gets: list[bytes] = field(default_factory=list)
    #: the last STORE destination.
    store: bytes | None = None

    def lookup_patterns(self) -> list[bytes]:
        """The patterns that name keys (BY when it sorts, GET but ``#``)."""
        used = [self.by] if self.by is not None and not self.dontsort else []
        return [pattern for pattern in used + self.gets if dereferences(pattern)]

    def needs_lookups(self) -> bool:
        """Whether the patterns name keys at all (else the source's worker can do it alone)."""
        return bool(self.lookup_patterns())


def _cstr(raw: bytes) -> bytes:
    """What C string functions see of ``raw``: up to its first NUL byte."""
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def _is_hash_sign(pattern: bytes) -> bool:
    """``GET #`` (C compares ``spat[0]=='#' && spat[1]=='\\0'``, so ``#\\0...`` counts)."""
    return pattern[:1] == b"#" and (len(pattern) == 1 or pattern[1] == 0)


def dereferences(pattern: bytes) -> bool:
    """Whether ``pattern`` names a key for each element (not ``#``, and it has a ``*``)."""
    return not _is_hash_sign(pattern) and b"*" in _cstr(pattern)


def fixed_slot_key(pattern: bytes) -> bytes | None:
    """A key in the same slot as every key ``pattern`` names, when that slot does not depend
    on the element: a non-empty ``{tag}`` complete before the ``*`` (the hash-tag rule takes
    the first ``{`` and the first ``}`` after it).  None otherwise."""
    star = _cstr(pattern).find(b"*")
    if star < 0:
        return None
    prefix = pattern[:star]
    opening = prefix.find(b"{")
    if opening < 0:
        return None
    closing = prefix.find(b"}", opening + 1)
    return prefix[: closing + 1] if closing > opening + 1 else None


def _parse_long(raw: bytes) -> int:
    return parse_int(raw, errors.NOT_INTEGER)


def parse_sort(args: list[bytes], readonly: bool, full_key_access: bool = True) -> SortOptions:
    """The options of ``SORT key [...]``; Redis's first error, in Redis's order.

    ``full_key_access``: the caller may read every key (Redis refuses BY/GET patterns
    otherwise, since the keys they name cannot be checked in advance).  SORT_RO does not know
    STORE: it is a syntax error there.
    """
    opts = SortOptions()
    j = 2
    argc = len(args)
    while j < argc:
        word = _cstr(args[j]).lower()  # strcasecmp: up to a NUL, ASCII case only
        left = argc - j - 1
        if word == b"asc":
            opts.desc = False
        elif word == b"desc":
            opts.desc = True
        elif word == b"alpha":
            opts.alpha = True
        elif word == b"limit" and left >= 2:
            opts.limit_start = _parse_long(args[j + 1])
            opts.limit_count = _parse_long(args[j + 2])
            j += 2
        elif not readonly and word == b"store" and left >= 1:
            opts.store = args[j + 1]
            j += 1
        elif word == b"by" and left >= 1:
            _parse_by(opts, args[j + 1], full_key_access)
            j += 1
        elif word == b"get" and left >= 1:
            if not full_key_access:
                raise ReplyError(GET_DENIED)
            opts.gets.append(args[j + 1])
            j += 1
        else:
            raise ReplyError(errors.SYNTAX)
        j += 1
    return opts


def _parse_by(opts: SortOptions, pattern: bytes, full_key_access: bool) -> None:
    opts.by = pattern
    if b"*" not in _cstr(pattern):
        opts.dontsort = True  # a constant: nothing to sort by
    elif not full_key_access:
        raise ReplyError(BY_DENIED)


def sort_store_key(args: list[bytes]) -> range:
    """COMMAND GETKEYS for SORT (Redis's ``sortGetKeys``): the source, then the last STORE
    destination if any, found by skipping LIMIT's two arguments and GET's and BY's one.

    Returned as a range (what key finders return): ``range(1, pos + 1, pos - 1)`` is 1, pos.
    """
    store = 0
    skips = {b"limit": 2, b"get": 1, b"by": 1}
    i = 2
    while i < len(args):
        word = _cstr(args[i]).lower()
        if word in skips:
            i += skips[word]
        elif word == b"store" and i + 1 < len(args):
            store = i + 1
        i += 1
    return range(1, store + 1, store - 1) if store else range(1, 2)


# Pattern lookups -----------------------------------------------------------------------------
def pattern_request(pattern: bytes, element: bytes) -> Request | None:
    """The (key, field) ``pattern`` names for ``element`` (Redis's ``lookupKeyByPattern``):
    the first ``*`` replaced by the element; ``->field`` after it (a non-empty one) reads a
    hash field.  None for ``#`` (the element itself) and for a pattern with no ``*``."""
    text = _cstr(pattern)
    star = text.find(b"*")
    if _is_hash_sign(pattern) or star < 0:
        return None
    arrow = text.find(b"->", star + 1)
    if arrow >= 0 and arrow + 2 < len(pattern) and pattern[arrow + 2] != 0:
        return pattern[:star] + element + pattern[star + 1 : arrow], pattern[arrow + 2 :]
    return pattern[:star] + element + pattern[star + 1 :], b""


def read_request(db: Keyspace, request: Request) -> bytes | None:
    """The value a request names in ``db``: a string for a plain key, a hash field for
    ``->field``; a key of another type counts as missing, as in Redis."""
    key, hash_field = request
    value = db.get(key)
    if hash_field:
        return value.get(hash_field) if type(value) is HashValue else None
    return bytes(value) if isinstance(value, STRING_TYPES) else None


def lookup_in(values: Callable[[Request], bytes | None]) -> Lookup:
    """A :data:`Lookup` over a function from requests to values."""

    def lookup(pattern: bytes, element: bytes) -> bytes | None:
        if _is_hash_sign(pattern):
            return element
        request = pattern_request(pattern, element)
        return None if request is None else values(request)

    return lookup


def lookup_requests(patterns: Iterable[bytes], elements: Iterable[bytes]) -> list[Request]:
    """Every distinct request ``patterns`` make for ``elements`` (what the router fetches)."""
    out: dict[Request, None] = {}
    patterns = [p for p in patterns if dereferences(p)]
    for element in elements:
        for pattern in patterns:
            request = pattern_request(pattern, element)
            if request is not None:
                out[request] = None
    return list(out)


# The source ----------------------------------------------------------------------------------
@dataclass
class Source:
    """The collection to sort: its kind and elements in natural order (a list's order, a
    sorted set's score order, a set's own iteration order)."""

    kind: bytes
    elements: list[bytes]


def read_source(db: Keyspace, key: bytes) -> Source:
    """The source at ``key``: WRONGTYPE for a string, hash or stream; empty list if missing."""
    value = db.get(key)
    if value is None:
        return Source(LIST, [])
    kind = type(value)
    if kind is deque:
        return Source(LIST, list(value))  # type: ignore[call-overload]
    if kind is SetValue:
        return Source(SET, value.in_order())  # type: ignore[attr-defined]
    if kind is ZSetValue:
        value.listpack = False  # type: ignore[attr-defined]  # Redis converts it for SORT
        db.converted(key)
        return Source(ZSET, [member for _, member in value.order])  # type: ignore[attr-defined]
    raise ReplyError(errors.WRONGTYPE)


# Sorting -------------------------------------------------------------------------------------
_SPACES = b" \t\n\v\f\r"
_NUMBER = re.compile(
    rb"[+-]?(?:(?P<inf>(?i:inf(?:inity)?))"
    rb"|(?P<hex>0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    rb"|(?P<dec>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?))"
)
_TINY = 2.2250738585072014e-308  # DBL_MIN: below it a result is subnormal


def sort_score(raw: bytes) -> float | None:
    """A weight as SORT reads it: glibc ``strtod`` over the C string, which must be used up;
    None (the command fails) for NaN, junk, or an ERANGE result (overflow, or an underflow:
    a nonzero value that is not exactly representable as a normal double).

    Unlike Redis's other float parsing, leading spaces pass, and the empty string is 0.
    """
    text = _cstr(raw)
    if not text:
        return 0.0  # no conversion, but the end pointer is at the terminator
    body = text.lstrip(_SPACES)
    match = _NUMBER.fullmatch(body)
    if match is None:
        return None  # nan, junk, trailing bytes, or spaces only
    if match["inf"] is not None:
        return -math.inf if body[:1] == b"-" else math.inf
    try:
        value = float.fromhex(body.decode()) if match["hex"] else float(body)
    except OverflowError:
        return None
    if math.isinf(value):
        return None
    if abs(value) < _TINY and not _exact(body, value, bool(match["hex"])):
        return None
    return value


#: Longest tiny number checked for exactness: an exact subnormal double needs at most ~770
#: significant digits; longer spellings (padding zeros) are taken as inexact.
_EXACT_CHECK_LIMIT = 2048


def _exact(body: bytes, value: float, is_hex: bool) -> bool:
    """Whether the number ``body`` is exactly ``value``, a tiny (subnormal or zero) result:
    glibc sets ERANGE for an inexact one.  Bounded work whatever the exponent's size."""
    digits = body.lstrip(b"+-")
    mantissa = re.split(rb"[pP]" if is_hex else rb"[eE]", digits[2:] if is_hex else digits)[0]
    if not value:
        return not mantissa.strip(b"0.")  # an exact zero, or a nonzero value lost to underflow
    if len(body) > _EXACT_CHECK_LIMIT:
        return False
    if is_hex:
        whole, _, fraction = mantissa.partition(b".")
        exponent_text = digits[2 + len(mantissa) + 1 :] or b"0"
        exact = Fraction(int(whole + fraction or b"0", 16)) * Fraction(2) ** (
            int(exponent_text) - 4 * len(fraction))
    else:
        exact = Fraction(digits.decode())
    return exact == abs(Fraction(value))


def _limits(opts: SortOptions, length: int) -> tuple[int, int]:
    """(start, end), inclusive: Redis's LIMIT clamping (negative and huge values included)."""
    start = min(max(opts.limit_start, 0), length)
    count = min(max(opts.limit_count, -1), length)
    end = length - 1 if count < 0 else start + count - 1
    if start >= length:
        start, end = length - 1, length - 2
    if end >= length:
        end = length - 1
    return start, end


def sort_window(source: Source, opts: SortOptions, lookup: Lookup, in_script: bool = False
                ) -> list[bytes]:
    """The elements of the reply, in order, before GET: sorted as asked, cut to LIMIT.

    Redis's special cases: a list or sorted set that is not sorted keeps its natural order
    (reversed by DESC); a set that is not sorted comes in its own order, DESC or not, except
    that with STORE or from a script it is sorted ALPHA (by the elements) so that replicas and
    the AOF see the same result.  A weight that is not a number fails the command even when
    the window is empty.
    """
    elements = source.elements
    dontsort, alpha, by = opts.dontsort, opts.alpha, opts.by
    if dontsort and source.kind == SET and (opts.store is not None or in_script):
        dontsort, alpha, by = False, True, None
    start, end = _limits(opts, len(elements))
    if dontsort:
        if source.kind != SET and opts.desc:
            elements = elements[::-1]
        return elements[start : end + 1] if end >= start else []
    key = _sort_key(elements, alpha, by, opts.store is not None, lookup)
    if end < start:
        return []
    if by is not None and (start != 0 or end != len(elements) - 1):
        keyed = [(key(element), element) for element in elements]
        if _has_ties(keyed):
            pqsort(keyed, opts.desc, start, end)
            return [element for _, element in keyed[start : end + 1]]
    return sorted(elements, key=key, reverse=opts.desc)[start : end + 1]


def _has_ties(keyed: list[tuple[object, bytes]]) -> bool:
    """Whether different elements compare equal: only then does the order Redis's pqsort
    leaves them in show (else any correct sort gives its window, and Python's is faster)."""
    return len({key for key, _ in keyed}) < len(set(keyed))


def pqsort(items: list[tuple[object, bytes]], desc: bool, left: int, right: int) -> None:
    """Redis's partial quicksort (pqsort.c, Bentley & McIlroy's qsort that skips the parts
    outside ``left..right``), in place over (key, element) pairs.  Reproduced step by step:
    it is not stable, and SORT ... BY ... LIMIT shows in which order it leaves equal keys."""
    sign = -1 if desc else 1

    def cmp(i: int, j: int) -> int:
        a, b = items[i][0], items[j][0]
        return sign * ((a > b) - (a < b))  # type: ignore[operator]

    _pqsort(items, cmp, 0, len(items), left, right)


def _swap(items: list, i: int, j: int) -> None:
    items[i], items[j] = items[j], items[i]


def _med3(cmp: Callable[[int, int], int], a: int, b: int, c: int) -> int:
    if cmp(a, b) < 0:
        return b if cmp(b, c) < 0 else (c if cmp(a, c) < 0 else a)
    return b if cmp(b, c) > 0 else (a if cmp(a, c) < 0 else c)


def _pqsort(items: list, cmp: Callable[[int, int], int], a: int, n: int, left: int,
            right: int) -> None:
    """pqsort.c's loop; its recursion into the left part is a stack here (the parts are
    disjoint, so the order they are done in changes nothing), which no input can overflow."""
    pending = [(a, n)]
    while pending:
        a, n = pending.pop()
        while n >= 7:
            _choose_pivot(items, cmp, a, n)
            pa, pb, pc, pd = _partition(items, cmp, a, n)
            pn = a + n
            r = min(pa - a, pb - pa)
            for k in range(r):
                _swap(items, a + k, pb - r + k)
            r = min(pd - pc, pn - pd - 1)
            for k in range(r):
                _swap(items, pb + k, pn - r + k)
            r = pb - pa
            if r > 1 and _overlaps(a, a + r - 1, left, right):
                pending.append((a, r))
            r = pd - pc
            a, n = pn - r, r
            if r <= 1 or not _overlaps(a, a + r - 1, left, right):
                n = 0
        _insertion_sort(items, cmp, a, n)


def _overlaps(low: int, high: int, left: int, right: int) -> bool:
    return not ((left < low and right < low) or (left > high and right > high))


def _insertion_sort(items: list, cmp: Callable[[int, int], int], a: int, n: int) -> None:
    for pm in range(a + 1, a + n):
        pl = pm
        while pl > a and cmp(pl - 1, pl) > 0:
            _swap(items, pl, pl - 1)
            pl -= 1


def _choose_pivot(items: list, cmp: Callable[[int, int], int], a: int, n: int) -> None:
    """Move the pivot (median of three, or of nine past 40 items) to ``a``."""
    pm = a + n // 2
    if n > 7:
        pl, pn = a, a + n - 1
        if n > 40:
            d = n // 8
            pl = _med3(cmp, pl, pl + d, pl + 2 * d)
            pm = _med3(cmp, pm - d, pm, pm + d)
            pn = _med3(cmp, pn - 2 * d, pn - d, pn)
        pm = _med3(cmp, pl, pm, pn)
    _swap(items, a, pm)


def _partition(items: list, cmp: Callable[[int, int], int], a: int, n: int
               ) -> tuple[int, int, int, int]:
    """Bentley-McIlroy three-way partition around ``items[a]``: equal keys go to both ends."""
    pa = pb = a + 1
    pc = pd = a + n - 1
    while True:
        while pb <= pc:
            result = cmp(pb, a)
            if result > 0:
                break
            if result == 0:
                _swap(items, pa, pb)
                pa += 1
            pb += 1
        while pb <= pc:
            result = cmp(pc, a)
            if result < 0:
                break
            if result == 0:
                _swap(items, pc, pd)
                pd -= 1
            pc -= 1
        if pb > pc:
            return pa, pb, pc, pd
        _swap(items, pb, pc)
        pb += 1
        pc -= 1


def _sort_key(elements: list[bytes], alpha: bool, by: bytes | None, storing: bool,
              lookup: Lookup) -> Callable[[bytes], object]:
    """Redis's ``sortCompare`` as a key function (Python's sort is stable, like glibc's
    merge-sort qsort: ties keep the source's order).

    Numeric: by score, equal scores by the elements' bytes; a weight that is not a number
    fails the command.  ALPHA: by the elements, or by the BY values with missing ones first;
    bytewise (``memcmp``) with STORE, else ``strcoll``, which in the C/C.UTF-8 locale
    compares the C strings (up to a NUL byte).
    """
    if alpha:
        if by is None:
            return (lambda element: element) if storing else _cstr
        weights = {}
        for element in elements:
            value = lookup(by, element)
            if value is not None and not storing:
                value = _cstr(value)
            weights[element] = (0, b"") if value is None else (1, value)
        return weights.__getitem__
    scores = {}
    for element in elements:
        weight = element if by is None else lookup(by, element)
        score = 0.0 if weight is None else sort_score(weight)
        if score is None:
            raise ReplyError(SCORE_NOT_DOUBLE)
        scores[element] = (score, element)
    return scores.__getitem__


def project(window: list[bytes], gets: list[bytes], lookup: Lookup) -> list[bytes | None]:
    """The reply: the window's elements, or for each the value of each GET pattern."""
    if not gets:
        return list(window)
    return [lookup(pattern, element) for element in window for pattern in gets]


def store_sorted(db: Keyspace, key: bytes, items: list[bytes | None]) -> int:
    """STORE: replace ``key`` by a list of the items (a missing GET value stored as an empty
    string), no TTL; delete it when there are none.  The reply: how many."""
    if items:
        db.set(key, deque(b"" if item is None else item for item in items))
    else:
        db.delete(key)
    return len(items)


def sort_reply(db: Keyspace, source: Source, opts: SortOptions, lookup: Lookup,
               in_script: bool = False) -> object:
    """Everything after reading the source: sort, GET, reply or STORE."""
    window = sort_window(source, opts, lookup, in_script)
    items = project(window, opts.gets, lookup)
    if opts.store is None:
        return items
    return store_sorted(db, opts.store, items)


# The commands --------------------------------------------------------------------------------
def full_key_access(user: object, args: list[bytes]) -> bool:
    """Redis's ``ACLUserCheckCmdWithUnrestrictedKeyAccess``: ``user`` (None: unrestricted)
    may run the command and read any key (``allkeys``, or a ``*`` pattern with read access)."""
    if user is None:
        return True
    from shardis.commands import lookup
    from shardis.router.acl import OK, READ

    if user.check(lookup(args), args)[0] != OK:  # type: ignore[attr-defined]
        return False
    return user.allkeys or any(  # type: ignore[attr-defined]
        p.pattern == b"*" and p.flags & READ for p in user.patterns)  # type: ignore[attr-defined]


def running_engine(db: Keyspace) -> object:
    """The script engine of this worker if a script is running (SORT is then called from a
    script: Redis's ``CLIENT_SCRIPT``), else None."""
    from shardis.commands import scripting

    engine = scripting.existing_engine(db)
    if engine is None or engine.db is not db or not engine.running:
        return None
    return engine


def script_values(engine: object, local: Callable[[Request], bytes | None]
                  ) -> Callable[[Request], bytes | None]:
    """Pattern lookups from a script: a key of this worker is read here; another worker's key
    stops a local-mode script (the router runs it again in global mode, where every worker is
    gated) or, in global mode, is read there with GET / HGET (WRONGTYPE: missing, as in
    ``lookupKeyByPattern``)."""
    index = engine.shard.index  # type: ignore[attr-defined]
    worker_of = engine.slots.worker_of  # type: ignore[attr-defined]

    def values(request: Request) -> bytes | None:
        key, hash_field = request
        if worker_of(key) == index:
            return local(request)
        if not engine.global_mode or engine.shard.remote_call is None:  # type: ignore[attr-defined]
            from shardis.commands.scripting import RETRY_GLOBAL

            text = engine._stop_for_global()[1]  # type: ignore[attr-defined]
            raise ReplyError(text if text == RETRY_GLOBAL else "ERR " + text)
        call = [b"HGET", key, hash_field] if hash_field else [b"GET", key]
        reply = engine._remote(call)  # type: ignore[attr-defined]
        return reply if isinstance(reply, bytes) else None

    return values


def sort_generic(db: Keyspace, args: list[bytes], readonly: bool) -> object:
    """SORT with every key it names on this worker (the router coordinates the other cases);
    from a script, keys of other workers are reached through the script's engine."""
    engine = running_engine(db)
    user = None if engine is None else engine.acl_user  # type: ignore[attr-defined]
    opts = parse_sort(args, readonly, full_key_access(user, args))
    source = read_source(db, args[1])
    if engine is not None and opts.needs_lookups():
        return _sort_in_script(engine, source, opts)

    def values(request: Request) -> bytes | None:
        return read_request(db, request)

    return sort_reply(db, source, opts, lookup_in(values), in_script=engine is not None)


def script_sort(engine: object, args: list[bytes]) -> object:
    """SORT from a global script whose source or STORE key is on another worker (every
    worker is gated for the script): sorted here, in the script's context, with the source
    read from its worker (TYPE, then SORT ... BY nosort: its natural order)."""
    readonly = _cstr(args[0]).lower() == b"sort_ro"
    opts = parse_sort(args, readonly, full_key_access(engine.acl_user, args))  # type: ignore[attr-defined]
    return _sort_in_script(engine, _script_source(engine, args[1]), opts)


def _sort_in_script(engine: object, source: Source, opts: SortOptions) -> object:
    """Sort for a script, the pattern keys read from their workers (:func:`script_values`).

    A STORE on this worker goes through ``__sortstore``, so that the AOF logs the list, not a
    SORT whose replay would not reach the other workers' keys; a STORE on another worker is
    written there as DEL + RPUSH.
    """
    db: Keyspace = engine.db  # type: ignore[attr-defined]

    def local(request: Request) -> bytes | None:
        return read_request(db, request)

    lookup = lookup_in(script_values(engine, local))
    items = project(sort_window(source, opts, lookup, in_script=True), opts.gets, lookup)
    if opts.store is None:
        return items
    stored = [b"" if item is None else item for item in items]
    if _is_local(engine, opts.store):
        reply = engine.shard.run_inside(  # type: ignore[attr-defined]
            [b"__sortstore", opts.store, *stored], internal=True)
        if type(reply) is ReplyError:
            raise reply
        return reply
    _remote_or_raise(engine, [b"DEL", opts.store])
    if stored:
        _remote_or_raise(engine, [b"RPUSH", opts.store, *stored])
    return len(stored)


def _is_local(engine: object, key: bytes) -> bool:
    return engine.slots.worker_of(key) == engine.shard.index  # type: ignore[attr-defined]


def _remote_or_raise(engine: object, call: list[bytes]) -> object:
    reply = engine._remote(call)  # type: ignore[attr-defined]
    if isinstance(reply, ReplyError):
        raise reply
    return reply


def _script_source(engine: object, key: bytes) -> Source:
    """The source for :func:`script_sort`, from this worker or from its own."""
    if _is_local(engine, key):
        return read_source(engine.db, key)  # type: ignore[attr-defined]
    kind = bytes(_remote_or_raise(engine, [b"TYPE", key]))  # type: ignore[arg-type]
    if kind == b"none":
        return Source(LIST, [])
    if kind not in (LIST, SET, ZSET):
        raise ReplyError(errors.WRONGTYPE)
    elements = _remote_or_raise(engine, [b"SORT", key, b"BY", b"nosort"])
    return Source(kind, list(elements))  # type: ignore[call-overload]


_ACL = "write set sortedset list slow dangerous"


@command("sort", -2, "write denyoom movablekeys", keys=(1, 1, 1), fanout=Fanout.COORDINATED,
         acl=_ACL, key_finder=sort_store_key)
def sort_command(db: Keyspace, args: list[bytes]) -> object:
    return sort_generic(db, args, readonly=False)


@command("sort_ro", -2, "readonly movablekeys", keys=(1, 1, 1), fanout=Fanout.COORDINATED,
         acl="read set sortedset list slow dangerous")
def sort_ro_command(db: Keyspace, args: list[bytes]) -> object:
    return sort_generic(db, args, readonly=True)


# Internal commands for the router's cross-worker SORT -----------------------------------------
_KIND_CODES = {LIST: 0, SET: 1, ZSET: 2}
_CODE_KINDS = {code: kind for kind, code in _KIND_CODES.items()}


@command("__sortread", 2, "readonly internal", keys=(1, 1, 1))
def internal_sortread_command(db: Keyspace, args: list[bytes]) -> object:
    """``__sortread key`` -> ``[kind code, [element ...]]``; WRONGTYPE as SORT gives it."""
    source = read_source(db, args[1])
    return [_KIND_CODES[source.kind], source.elements]


def source_from_read(reply: list) -> Source:
    """Rebuild a source from a ``__sortread`` reply (on the router)."""
    code, elements = reply
    return Source(_CODE_KINDS[code], list(elements))


@command("__sortfetch", -3, "readonly internal", keys=(1, -1, 2))
def internal_sortfetch_command(db: Keyspace, args: list[bytes]) -> object:
    """``__sortfetch key field [key field ...]`` -> the value of each (None if missing or of
    another type); an empty field reads the string at key."""
    pairs = args[1:]
    return [read_request(db, (pairs[i], pairs[i + 1])) for i in range(0, len(pairs) - 1, 2)]


@command("__sortstore", -2, "write internal", keys=(1, 1, 1), group="list")
def internal_sortstore_command(db: Keyspace, args: list[bytes]) -> object:
    """``__sortstore key [item ...]``: replace ``key`` by this list (delete it if none)."""
    return store_sorted(db, args[1], list(args[2:]))


COMMANDS[b"sort"].script_handler = script_sort  # type: ignore[attr-defined]
COMMANDS[b"sort_ro"].script_handler = script_sort  # type: ignore[attr-defined]
