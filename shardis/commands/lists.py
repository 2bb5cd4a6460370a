"""List commands: worker-side operations over one shard's keyspace.

Modelled on Redis's t_list.c.  A list is a :class:`collections.deque` of ``bytes`` (O(1) at
both ends, like the quicklist); an empty list never stays in the keyspace: the command that
empties it deletes the key.  Shared logic follows Redis's ``...Generic`` functions:
``push_generic`` (LPUSH/RPUSH/LPUSHX/RPUSHX), ``pop_generic`` (LPOP/RPOP), ``mpop_generic``
(LMPOP), ``lmove_generic`` (LMOVE/RPOPLPUSH).

What runs here always has all its keys on this shard.  LMOVE/RPOPLPUSH between two workers and
LMPOP over keys on several workers are coordinated by ``shardis.router.lists``, which reuses the
parsing helpers of this module so that errors come in Redis's order.

Redis checks arguments and key types in a precise order, and the replies show it (LINDEX and
LSET look the key up before parsing the index, LRANGE parses before the lookup...): each
command below keeps its C counterpart's order.
"""

from __future__ import annotations

import marshal
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice

from shardis import errors
from shardis.commands import Fanout, command, keys_after_numkeys
from shardis.commands.strings import LLONG_MAX, LLONG_MIN, parse_int
from shardis.errors import ReplyError
from shardis.resp import NULL_ARRAY, OK
from shardis.worker.keyspace import Keyspace
from shardis.worker.types import (
    PACK_MAX_ENTRIES,
    ValueType,
    pack_elements,
    register_packing,
    register_type,
)

#: Redis's LIST_HEAD / LIST_TAIL: which end a command works on.
LEFT, RIGHT = 0, 1

RANK_ZERO = (
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
    "or use negative to start from the end of the list"
)
COUNT_NEGATIVE = "ERR COUNT can't be negative"
MAXLEN_NEGATIVE = "ERR MAXLEN can't be negative"
COUNT_NOT_POSITIVE = "ERR count should be greater than 0"

# The value type ------------------------------------------------------------------------------
def list_memory(value: object, samples: int = 5) -> int:
    """The deque and its elements; long lists are estimated from the first ``samples``
    elements (0: all), in O(1) by default."""
    size = sys.getsizeof(value)
    count = len(value)  # type: ignore[arg-type]
    if count:
        sample = list(islice(value, samples or None))  # type: ignore[call-overload]
        size += sum(map(sys.getsizeof, sample)) * count // len(sample)
    return size


register_type(
    deque,
    ValueType(
        name=b"list",
        encoding=lambda value: b"quicklist",  # Redis 7.0 has no other list encoding
        dump=list,
        load=deque,  # type: ignore[arg-type]
        memory=list_memory,
    ),
)


class PackedList(bytes):
    """A short list at rest (see ``shardis.worker.types``): its elements."""

    __slots__ = ()


def _pack_list(value: deque) -> bytes | None:
    return pack_elements(PackedList, tuple(value)) if len(value) <= PACK_MAX_ENTRIES else None


def _unpack_list(blob: bytes) -> deque:
    return deque(marshal.loads(blob))


register_packing(deque, PackedList, _pack_list, _unpack_list)


# Helpers -------------------------------------------------------------------------------------
def list_or_error(db: Keyspace, key: bytes) -> deque[bytes] | None:
    """The list at ``key`` or None; WRONGTYPE if the key holds another type (``checkType``)."""
    value = db.get(key)
    if value is None or type(value) is deque:
        return value  # type: ignore[return-value]
    raise ReplyError(errors.WRONGTYPE)


def parse_range_int(raw: bytes, low: int, high: int, message: str) -> int:
    """Redis's ``getRangeLongFromObjectOrReply`` with a message: the same error for text that
    is not an integer and for an integer out of ``[low, high]``."""
    value = parse_int(raw, message)
    if not low <= value <= high:
        raise ReplyError(message)
    return value


def parse_position(raw: bytes) -> int:
    """LEFT or RIGHT (any case), else a syntax error."""
    word = raw.upper()
    if word == b"LEFT":
        return LEFT
    if word == b"RIGHT":
        return RIGHT
    raise ReplyError(errors.SYNTAX)


def clip_range(start: int, end: int, length: int) -> tuple[int, int] | None:
    """LRANGE/LTRIM index arithmetic: negative indexes from the end; None for an empty range."""
    if start < 0:
        start = max(length + start, 0)
    if end < 0:
        end += length
    if start > end or start >= length:
        return None
    return start, min(end, length - 1)


def slice_list(items: deque[bytes], start: int, end: int) -> list[bytes]:
    """``items[start:end + 1]``, walking from whichever end of the deque is closer."""
    if start <= len(items) - 1 - end:
        return list(islice(items, start, end + 1))
    tail_skip = len(items) - 1 - end
    chunk = list(islice(reversed(items), tail_skip, tail_skip + end - start + 1))
    chunk.reverse()
    return chunk


def store_new_list(db: Keyspace, key: bytes) -> deque[bytes]:
    """Create an empty list at a missing key (Redis's ``dbAdd`` of a new quicklist)."""
    items: deque[bytes] = deque()
    db.set(key, items)
    return items


def removed_elements(db: Keyspace, key: bytes, items: deque[bytes]) -> None:
    """After elements left a list: delete the key once empty, else report the change
    (Redis's ``listElementsRemoved``)."""
    if items:
        db.changed(key)
    else:
        db.delete(key)


# Push ----------------------------------------------------------------------------------------
def push_generic(db: Keyspace, key: bytes, elements: list[bytes], where: int,
                 only_existing: bool) -> int:
    """LPUSH, RPUSH and, with ``only_existing``, LPUSHX/RPUSHX; the new length."""
    items = list_or_error(db, key)
    if items is None:
        if only_existing:
            return 0
        items = store_new_list(db, key)
    else:
        db.changed(key)
    if where == LEFT:
        items.extendleft(elements)
    else:
        items.extend(elements)
    return len(items)


@command("lpush", -3, "write denyoom fast", keys=(1, 1, 1), acl="write list fast", group="list")
def lpush_command(db: Keyspace, args: list[bytes]) -> object:
    return push_generic(db, args[1], args[2:], LEFT, only_existing=False)


@command("rpush", -3, "write denyoom fast", keys=(1, 1, 1), acl="write list fast", group="list")
def rpush_command(db: Keyspace, args: list[bytes]) -> object:
    return push_generic(db, args[1], args[2:], RIGHT, only_existing=False)


@command("lpushx", -3, "write denyoom fast", keys=(1, 1, 1), acl="write list fast",
         group="list")
def lpushx_command(db: Keyspace, args: list[bytes]) -> object:
    return push_generic(db, args[1], args[2:], LEFT, only_existing=True)


@command("rpushx", -3, "write denyoom fast", keys=(1, 1, 1), acl="write list fast",
         group="list")
def rpushx_command(db: Keyspace, args: list[bytes]) -> object:
    return push_generic(db, args[1], args[2:], RIGHT, only_existing=True)


# Pop -----------------------------------------------------------------------------------------
def pop_range(db: Keyspace, key: bytes, items: deque[bytes], where: int,
              count: int) -> list[bytes]:
    """Pop up to ``count`` elements from one end, in popping order; deletes an emptied key."""
    pop = items.popleft if where == LEFT else items.pop
    popped = [pop() for _ in range(min(count, len(items)))]
    removed_elements(db, key, items)
    return popped


def pop_generic(db: Keyspace, args: list[bytes], where: int) -> object:
    """LPOP/RPOP ``key [count]``: a bulk string without count, an array with one.

    Without count a missing key is a null bulk; with count it is a null *array* (``*-1`` in
    RESP2), even for count 0, because the key is looked up before count 0 takes its short cut.
    """
    if len(args) > 3:
        raise ReplyError(errors.wrong_arity("lpop" if where == LEFT else "rpop"))
    if len(args) == 2:
        items = list_or_error(db, args[1])
        return None if items is None else pop_range(db, args[1], items, where, 1)[0]
    count = parse_range_int(args[2], 0, LLONG_MAX, errors.NOT_POSITIVE)
    items = list_or_error(db, args[1])
    if items is None:
        return NULL_ARRAY
    if count == 0:
        return []
    return pop_range(db, args[1], items, where, count)


@command("lpop", -2, "write fast", keys=(1, 1, 1), acl="write list fast", group="list")
def lpop_command(db: Keyspace, args: list[bytes]) -> object:
    return pop_generic(db, args, LEFT)


@command("rpop", -2, "write fast", keys=(1, 1, 1), acl="write list fast", group="list")
def rpop_command(db: Keyspace, args: list[bytes]) -> object:
    return pop_generic(db, args, RIGHT)


def parse_lmpop(args: list[bytes], numkeys_index: int = 1) -> tuple[list[bytes], int, int]:
    """``numkeys key... LEFT|RIGHT [COUNT n]`` -> (keys, where, count), with Redis's errors.

    ``numkeys_index`` is 2 for BLMPOP (after its timeout).  Shared with the router, which must
    find the keys (and report parse errors) before it can route.
    """
    numkeys = parse_range_int(args[numkeys_index], 1, LLONG_MAX,
                              errors.NUMKEYS_NOT_POSITIVE)
    where_index = numkeys_index + numkeys + 1
    if where_index >= len(args):
        raise ReplyError(errors.SYNTAX)
    where = parse_position(args[where_index])
    count = -1
    j = where_index + 1
    while j < len(args):
        if count == -1 and args[j].upper() == b"COUNT" and j + 1 < len(args):
            count = parse_range_int(args[j + 1], 1, LLONG_MAX, COUNT_NOT_POSITIVE)
            j += 2
        else:
            raise ReplyError(errors.SYNTAX)
    return args[numkeys_index + 1 : where_index], where, max(count, 1)


def mpop_generic(db: Keyspace, keys: list[bytes], where: int, count: int) -> object:
    """Pop from the first key holding a list: ``[key, [elements]]``; a null array if none.

    A key of another type before the first list is WRONGTYPE; after it, it is never looked at.
    """
    for key in keys:
        items = list_or_error(db, key)
        if items:
            return [key, pop_range(db, key, items, where, count)]
    return NULL_ARRAY


@command("lmpop", -4, "write movablekeys", fanout=Fanout.COORDINATED, acl="write list slow",
         group="list", key_finder=keys_after_numkeys(1))
def lmpop_command(db: Keyspace, args: list[bytes]) -> object:
    keys, where, count = parse_lmpop(args)
    return mpop_generic(db, keys, where, count)


# Move ----------------------------------------------------------------------------------------
def lmove_generic(db: Keyspace, source: bytes, target: bytes, wherefrom: int,
                  whereto: int) -> bytes | None:
    """Pop from ``source``, push onto ``target`` (the same list rotates); the moved element.

    The destination's type is checked before anything moves, as in Redis.
    """
    items = list_or_error(db, source)
    if items is None:
        return None
    destination = list_or_error(db, target)
    value = items.popleft() if wherefrom == LEFT else items.pop()
    if destination is None:
        destination = store_new_list(db, target)
    else:
        db.changed(target)
    if whereto == LEFT:
        destination.appendleft(value)
    else:
        destination.append(value)
    removed_elements(db, source, items)
    return value


@command("lmove", 5, "write denyoom", keys=(1, 2, 1), fanout=Fanout.COORDINATED,
         acl="write list slow", group="list")
def lmove_command(db: Keyspace, args: list[bytes]) -> object:
    wherefrom = parse_position(args[3])
    whereto = parse_position(args[4])
    return lmove_generic(db, args[1], args[2], wherefrom, whereto)


@command("rpoplpush", 3, "write denyoom", keys=(1, 2, 1), fanout=Fanout.COORDINATED,
         acl="write list slow", group="list")
def rpoplpush_command(db: Keyspace, args: list[bytes]) -> object:
    return lmove_generic(db, args[1], args[2], RIGHT, LEFT)


# Read ----------------------------------------------------------------------------------------
@command("llen", 2, "readonly fast", keys=(1, 1, 1), acl="read list fast", group="list")
def llen_command(db: Keyspace, args: list[bytes]) -> object:
    items = list_or_error(db, args[1])
    return 0 if items is None else len(items)


@command("lrange", 4, "readonly", keys=(1, 1, 1), acl="read list slow", group="list")
def lrange_command(db: Keyspace, args: list[bytes]) -> object:
    start = parse_int(args[2])
    end = parse_int(args[3])
    items = list_or_error(db, args[1])
    if items is None:
        return []
    bounds = clip_range(start, end, len(items))
    return [] if bounds is None else slice_list(items, *bounds)


@command("lindex", 3, "readonly", keys=(1, 1, 1), acl="read list slow", group="list")
def lindex_command(db: Keyspace, args: list[bytes]) -> object:
    items = list_or_error(db, args[1])
    if items is None:
        return None
    index = parse_int(args[2])
    if -len(items) <= index < len(items):
        return items[index]
    return None


def parse_lpos_options(args: list[bytes]) -> tuple[int, int, int]:
    """LPOS's ``RANK r COUNT n MAXLEN m`` -> (rank, count, maxlen); count -1 means not given."""
    rank, count, maxlen = 1, -1, 0
    j = 3
    while j < len(args):
        opt = args[j].upper()
        if j + 1 >= len(args):
            raise ReplyError(errors.SYNTAX)
        if opt == b"RANK":
            rank = parse_int(args[j + 1])
            if rank == 0:
                raise ReplyError(RANK_ZERO)
        elif opt == b"COUNT":
            count = parse_range_int(args[j + 1], 0, LLONG_MAX, COUNT_NEGATIVE)
        elif opt == b"MAXLEN":
            maxlen = parse_range_int(args[j + 1], 0, LLONG_MAX, MAXLEN_NEGATIVE)
        else:
            raise ReplyError(errors.SYNTAX)
        j += 2
    return rank, count, maxlen


def _wrap64(value: int) -> int:
    """C's ``long`` arithmetic, wrapping around: LPOS's rank LLONG_MIN depends on it."""
    return (value - LLONG_MIN) % 2**64 + LLONG_MIN


def lpos_matches(items: deque[bytes], element: bytes, rank: int, count: int,
                 maxlen: int) -> list[int]:
    """Indexes of the matches LPOS reports: from the ``rank``-th match on, at most ``count``
    (0: all; -1: just the first), within the first ``maxlen`` elements scanned (0: all).

    Redis negates a negative rank in C, so RANK -9223372036854775808 stays negative: every match
    qualifies and the COUNT limit never triggers.  ``_wrap64`` reproduces that.
    """
    if rank == 1 and count == -1 and not maxlen:
        try:  # the plain ``LPOS key element``: deque.index scans in C
            return [items.index(element)]
        except ValueError:
            return []
    from_tail = rank < 0
    if from_tail:
        rank = _wrap64(-rank)
    length = len(items)
    walk: Iterable[bytes] = reversed(items) if from_tail else items
    if maxlen:
        walk = islice(walk, maxlen)
    found: list[int] = []
    matches = 0
    for index, item in enumerate(walk):
        if item != element:
            continue
        matches += 1
        if matches < rank:
            continue
        found.append(length - index - 1 if from_tail else index)
        if count == -1 or (count and _wrap64(matches - rank + 1) >= count):
            break
    return found


@command("lpos", -3, "readonly", keys=(1, 1, 1), acl="read list slow", group="list")
def lpos_command(db: Keyspace, args: list[bytes]) -> object:
    rank, count, maxlen = parse_lpos_options(args)
    items = list_or_error(db, args[1])
    if items is None:
        return None if count == -1 else []
    found = lpos_matches(items, args[2], rank, count, maxlen)
    if count != -1:
        return found
    return found[0] if found else None


# Update --------------------------------------------------------------------------------------
@command("lset", 4, "write denyoom", keys=(1, 1, 1), acl="write list slow", group="list")
def lset_command(db: Keyspace, args: list[bytes]) -> object:
    items = list_or_error(db, args[1])
    if items is None:
        raise ReplyError(errors.NO_SUCH_KEY)
    index = parse_int(args[2])
    if not -len(items) <= index < len(items):
        raise ReplyError(errors.INDEX_OUT_OF_RANGE)
    items[index] = args[3]
    db.changed(args[1])
    return OK


@command("linsert", 5, "write denyoom", keys=(1, 1, 1), acl="write list slow", group="list")
def linsert_command(db: Keyspace, args: list[bytes]) -> object:
    where = args[2].upper()
    if where not in (b"BEFORE", b"AFTER"):
        raise ReplyError(errors.SYNTAX)
    items = list_or_error(db, args[1])
    if items is None:
        return 0
    try:
        index = items.index(args[3])
    except ValueError:
        return -1
    items.insert(index + 1 if where == b"AFTER" else index, args[4])
    db.changed(args[1])
    return len(items)


def _without_matches(walk: Iterator[bytes], element: bytes, limit: int) -> tuple[list[bytes], int]:
    """The elements of ``walk`` minus the first ``limit`` matches (0: all), and how many went."""
    kept: list[bytes] = []
    removed = 0
    for item in walk:
        if item == element and (not limit or removed < limit):
            removed += 1
        else:
            kept.append(item)
    return kept, removed


@command("lrem", 4, "write", keys=(1, 1, 1), acl="write list slow", group="list")
def lrem_command(db: Keyspace, args: list[bytes]) -> object:
    """Count > 0 removes from the head, < 0 from the tail, 0 removes every match."""
    limit = parse_int(args[2])
    key = args[1]
    items = list_or_error(db, key)
    if items is None:
        return 0
    from_tail = limit < 0
    kept, removed = _without_matches(reversed(items) if from_tail else iter(items), args[3],
                                     abs(limit))
    if removed:
        if from_tail:
            kept.reverse()
        items.clear()
        items.extend(kept)
        removed_elements(db, key, items)
    return removed


@command("ltrim", 4, "write", keys=(1, 1, 1), acl="write list slow", group="list")
def ltrim_command(db: Keyspace, args: list[bytes]) -> object:
    start = parse_int(args[2])
    end = parse_int(args[3])
    key = args[1]
    items = list_or_error(db, key)
    if items is None:
        return OK
    bounds = clip_range(start, end, len(items))
    if bounds is None:
        items.clear()
    else:
        trim_to(items, *bounds)
    removed_elements(db, key, items)
    return OK


def trim_to(items: deque[bytes], start: int, end: int) -> None:
    """Keep ``items[start:end + 1]`` in place: pop from the ends when that removes fewer
    elements than it keeps (the capped-list ``LPUSH`` + ``LTRIM 0 99`` idiom), else rebuild."""
    head, tail = start, len(items) - 1 - end
    if head + tail <= end - start + 1:
        for _ in range(head):
            items.popleft()
        for _ in range(tail):
            items.pop()
        return
    kept = slice_list(items, start, end)
    items.clear()
    items.extend(kept)
