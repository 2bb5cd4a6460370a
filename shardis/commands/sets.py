"""Set commands: worker-side operations over one shard's keyspace (Redis's t_set.c).

A set is a :class:`SetValue`, a Python ``set`` of bytes that remembers which encoding Redis 7.0
would use: ``intset`` while every member is a 64-bit integer in canonical form and there are at
most ``set-max-intset-entries``; ``hashtable`` after that, never back.  Redis lists an intset in
numeric order, so an intset replies sorted numerically and matches Redis byte for byte; a
hashtable's order is Redis's hash order, which nobody can rely on (compare such replies sorted).

SUNION, SINTER, SDIFF, SINTERCARD and the *STORE variants are computed by pure functions
(:func:`sinter_generic`...) over the sets involved: the ops below run them when every key is
on this worker, and the router (``shardis.router.sets``) runs the same functions over members
gathered from several workers with ``__sgather``, storing with ``__sstore``.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable

from shardis import errors
from shardis.commands import Fanout, command, keys_after_numkeys
from shardis.commands.hashes import (
    collection_memory,
    commit,
    parse_range_count,
    random_distinct,
    random_element,
    random_sample,
    scan_generic,
    value_of_type,
)
from shardis.commands.strings import LLONG_MAX, LLONG_MIN, is_int_encodable, parse_int
from shardis.errors import ReplyError
from shardis.resp import SetReply
from shardis.worker.keyspace import Keyspace
from shardis.worker.types import (
    PACK_MAX_ENTRIES,
    ValueType,
    register_packing,
    register_type,
)

#: Redis 7.0's default: an all-integer set stays an intset up to this many members.
SET_MAX_INTSET_ENTRIES = 512
#: SPOP with a count keeps the remaining members in a new set when they are this many times
#: fewer than the popped ones (Redis's SPOP_MOVE_STRATEGY_MUL); the encoding follows.
SPOP_MOVE_STRATEGY_MUL = 5


class SetValue(set):
    """A set value plus Redis's encoding and the caches of the shared helpers (see hashes.py).

    Every addition must go through :meth:`add_member`, which keeps the encoding and the
    sampling pool right.
    """

    __slots__ = ("intset", "pool", "scans")

    def __init__(self, members: Iterable[bytes] = (), intset: bool = True) -> None:
        super().__init__(members)
        self.intset = intset
        self.pool: list[bytes] | None = None
        self.scans: dict[int, list[bytes]] | None = None

    @classmethod
    def created_for(cls, first: bytes) -> SetValue:
        """Redis's ``setTypeCreate``: the first member decides the initial encoding."""
        return cls(intset=is_int_encodable(first))

    def add_member(self, member: bytes) -> bool:
        """Add ``member``; True if it is new.  Converts like Redis's ``setTypeAdd``."""
        if member in self:
            return False
        self.add(member)
        self.pool = None  # the sampling pool must hold every member
        if self.intset and (len(self) > SET_MAX_INTSET_ENTRIES or not is_int_encodable(member)):
            self.intset = False
        return True

    def in_order(self) -> list[bytes]:
        """The members in Redis's order: numeric for an intset, hash order otherwise."""
        return sorted(self, key=int) if self.intset else list(self)


def fits_intset(members: Iterable[bytes], size: int) -> bool:
    """Would Redis build an intset from these ``size`` members, added one by one?"""
    return size <= SET_MAX_INTSET_ENTRIES and all(is_int_encodable(m) for m in members)


def built_set(members: Iterable[bytes]) -> SetValue:
    """A new set holding ``members`` with the encoding Redis gives a set built member by
    member (SUNIONSTORE, SINTERSTORE, what SPOP leaves...)."""
    value = SetValue(members)
    value.intset = fits_intset(value, len(value))
    return value


def set_reply(value: SetValue) -> SetReply:
    """A set reply (``~`` in RESP3) in Redis's order for the value's encoding."""
    return SetReply(value.in_order())


def _set_dump(value: object) -> object:
    assert isinstance(value, SetValue)
    return (value.intset, list(value))


def _set_load(plain: object) -> SetValue:
    intset, members = plain  # type: ignore[misc]
    return SetValue(members, intset)


register_type(
    SetValue,
    ValueType(
        name=b"set",
        encoding=lambda value: b"intset" if value.intset else b"hashtable",  # type: ignore[attr-defined]
        dump=_set_dump,
        load=_set_load,
        memory=lambda value, samples=5: collection_memory(value, sys.getsizeof, samples),
    ),
)


class PackedIntSet(bytes):
    """An intset at rest (see ``shardis.worker.types``): its members."""

    __slots__ = ()


#: Integer widths of a packed intset, narrowest first, as Redis's intset encodings: the
#: blob is the ``array`` typecode, then the members at that width.
_INT_WIDTHS = ((b"h", -(1 << 15), 1 << 15), (b"i", -(1 << 31), 1 << 31), (b"q", LLONG_MIN, LLONG_MAX + 1))


def _pack_set(value: SetValue) -> bytes | None:
    if not value.intset or len(value) > PACK_MAX_ENTRIES:
        return None
    numbers = [int(member) for member in value]
    low, high = min(numbers), max(numbers)
    for code, least, limit in _INT_WIDTHS:
        if low >= least and high < limit:
            return PackedIntSet(code + array(code.decode(), numbers).tobytes())
    return None  # not reached: an intset's members are 64-bit integers


def _unpack_set(blob: bytes) -> SetValue:
    numbers = array(blob[:1].decode(), blob[1:])
    return SetValue([b"%d" % number for number in numbers])


register_packing(SetValue, PackedIntSet, _pack_set, _unpack_set)


# Writes --------------------------------------------------------------------------------------
@command("sadd", -3, "write denyoom fast", keys=(1, 1, 1), acl="write set fast", group="set")
def sadd_command(db: Keyspace, args: list[bytes]) -> object:
    return add_members(db, args[1], value_of_type(db, args[1], SetValue), args[2:])


def add_members(db: Keyspace, key: bytes, value: SetValue | None, members: list[bytes]) -> int:
    """SADD to ``value``, the set at ``key`` (None: create it, and the first member decides
    its encoding); returns how many members are new.  SMOVE adds its member this way too."""
    created = value is None
    if value is None:
        value = SetValue.created_for(members[0])
    added = 0
    for member in members:
        added += value.add_member(member)
    if added:
        commit(db, key, value, created)
    return added


@command("srem", -3, "write fast", keys=(1, 1, 1), acl="write set fast", group="set")
def srem_command(db: Keyspace, args: list[bytes]) -> object:
    key = args[1]
    value = value_of_type(db, key, SetValue)
    if value is None:
        return 0
    removed = 0
    for member in args[2:]:
        if member in value:
            value.discard(member)
            removed += 1
            if not value:
                break
    if removed:
        commit(db, key, value, created=False)
    return removed


@command("smove", 4, "write fast", keys=(1, 2, 1), fanout=Fanout.COORDINATED,
         acl="write set fast", group="set")
def smove_command(db: Keyspace, args: list[bytes]) -> object:
    """Both keys on this worker (the router coordinates the other case)."""
    source_key, target_key, member = args[1], args[2], args[3]
    source = db.get(source_key)
    if source is None:
        return 0
    target = db.get(target_key)
    if type(source) is not SetValue or (target is not None and type(target) is not SetValue):
        raise ReplyError(errors.WRONGTYPE)
    if source_key == target_key:
        return int(member in source)
    if member not in source:
        return 0
    source.discard(member)
    commit(db, source_key, source, created=False)
    add_members(db, target_key, target, [member])
    return 1


def _spop_count(raw: bytes) -> int:
    count = parse_int(raw, errors.NOT_POSITIVE)
    if count < 0:
        raise ReplyError(errors.NOT_POSITIVE)
    return count


@command("spop", -2, "write fast", keys=(1, 1, 1), acl="write set fast", group="set",
         tips="nondeterministic_output")
def spop_command(db: Keyspace, args: list[bytes]) -> object:
    if len(args) > 3:
        raise ReplyError(errors.SYNTAX)
    count = _spop_count(args[2]) if len(args) == 3 else None
    key = args[1]
    value = value_of_type(db, key, SetValue)
    if value is None:
        return None if count is None else SetReply()
    if count is None:
        member = random_element(value)
        value.discard(member)
        commit(db, key, value, created=False)
        return member
    if count == 0:
        return SetReply()
    return spop_with_count(db, key, value, count)


def spop_with_count(db: Keyspace, key: bytes, value: SetValue, count: int) -> SetReply:
    """Redis's three SPOP cases; the last one replaces the value by a new set of the members
    that stay, so its encoding is decided afresh (an all-integer hashtable becomes an intset).
    """
    remaining = len(value) - count
    if remaining <= 0:
        db.delete(key)
        return set_reply(built_set(value))
    if remaining * SPOP_MOVE_STRATEGY_MUL > count:
        popped = random_distinct(value, count)
        value.difference_update(popped)
        db.changed(key)
        return SetReply(popped)
    kept = built_set(random_distinct(value, remaining))
    value.difference_update(kept)
    db.set(key, kept, keep_ttl=True)
    return set_reply(value)


@command("srandmember", -2, "readonly", keys=(1, 1, 1), acl="read set slow", group="set",
         tips="nondeterministic_output")
def srandmember_command(db: Keyspace, args: list[bytes]) -> object:
    if len(args) > 3:
        raise ReplyError(errors.SYNTAX)
    count = parse_range_count(args[2]) if len(args) == 3 else None
    value = value_of_type(db, args[1], SetValue)
    if count is None:
        return None if value is None else random_element(value)
    if value is None or count == 0:
        return []
    return random_sample(value, count, value.in_order)


# Reads ---------------------------------------------------------------------------------------
@command("smembers", 2, "readonly", keys=(1, 1, 1), acl="read set slow", group="set",
         tips="nondeterministic_output_order")
def smembers_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], SetValue)
    return SetReply() if value is None else set_reply(value)


@command("sismember", 3, "readonly fast", keys=(1, 1, 1), acl="read set fast", group="set")
def sismember_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], SetValue)
    return int(value is not None and args[2] in value)


@command("smismember", -3, "readonly fast", keys=(1, 1, 1), acl="read set fast", group="set")
def smismember_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], SetValue)
    if value is None:
        return [0] * (len(args) - 2)
    return [int(member in value) for member in args[2:]]


@command("scard", 2, "readonly fast", keys=(1, 1, 1), acl="read set fast", group="set")
def scard_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], SetValue)
    return 0 if value is None else len(value)


def _intset_members(value: SetValue) -> list[bytes] | None:
    return value.in_order() if value.intset else None


@command("sscan", -3, "readonly", keys=(1, 1, 1), acl="read set slow", group="set",
         tips="nondeterministic_output")
def sscan_command(db: Keyspace, args: list[bytes]) -> object:
    return scan_generic(db, args, SetValue, _intset_members)


# Set algebra ---------------------------------------------------------------------------------
#: The sets of a command's source keys, in key order; None for a missing key.
Sources = list[SetValue | None]
#: (sources) -> the result as a new set whose encoding is the one Redis gives it.
SetOp = Callable[[Sources], SetValue]


def sinter_generic(sets: Sources) -> SetValue:
    """SINTER: empty if any key is missing."""
    if not sets or any(value is None for value in sets):
        return SetValue()
    ordered = sorted(sets, key=len)  # type: ignore[arg-type]
    return built_set(ordered[0].intersection(*ordered[1:]))  # type: ignore[union-attr]


def sunion_generic(sets: Sources) -> SetValue:
    return built_set(set().union(*(value for value in sets if value is not None)))


def sdiff_generic(sets: Sources) -> SetValue:
    """SDIFF, with the encoding Redis's choice of algorithm leaves on the result.

    Redis estimates the work of its two algorithms; the second starts from a copy of the whole
    first set, so the result is a hashtable whenever that first set would not fit an intset,
    even if what is left would.
    """
    first = sets[0]
    if first is None:
        return SetValue()
    present = [value for value in sets if value is not None]
    result = built_set(first.difference(*present[1:]))
    algorithm_one_work = len(first) * len(present) // 2
    algorithm_two_work = sum(len(value) for value in present)
    if result and algorithm_one_work > algorithm_two_work:
        result.intset = fits_intset(first, len(first))
    return result


SET_OPS: dict[bytes, SetOp] = {
    b"sinter": sinter_generic,
    b"sinterstore": sinter_generic,
    b"sunion": sunion_generic,
    b"sunionstore": sunion_generic,
    b"sdiff": sdiff_generic,
    b"sdiffstore": sdiff_generic,
}


def sets_at(db: Keyspace, keys: list[bytes]) -> Sources:
    """The sets at ``keys``; WRONGTYPE if any key holds another type (Redis checks them all,
    so a wrong type wins over a missing key wherever it is)."""
    return [value_of_type(db, key, SetValue) for key in keys]


def store_set(db: Keyspace, key: bytes, result: SetValue) -> int:
    """Replace ``key`` by ``result`` (no TTL, like SET), or delete it if the result is empty;
    returns the cardinality, the *STORE commands' reply."""
    if result:
        db.set(key, result)
    else:
        db.delete(key)
    return len(result)


def parse_sintercard(args: list[bytes]) -> tuple[list[bytes], int]:
    """(keys, limit; 0 = none) from ``SINTERCARD numkeys key [key ...] [LIMIT limit]``."""
    numkeys = parse_int(args[1], errors.NUMKEYS_NOT_POSITIVE)
    if numkeys < 1:
        raise ReplyError(errors.NUMKEYS_NOT_POSITIVE)
    if numkeys > len(args) - 2:
        raise ReplyError(errors.NUMKEYS_TOO_BIG)
    limit = 0
    j = 2 + numkeys
    while j < len(args):
        if args[j].upper() != b"LIMIT" or j + 1 >= len(args):
            raise ReplyError(errors.SYNTAX)
        limit = parse_int(args[j + 1], errors.LIMIT_NEGATIVE)
        if limit < 0:
            raise ReplyError(errors.LIMIT_NEGATIVE)
        j += 2
    return args[2 : 2 + numkeys], limit


def sintercard_reply(sets: Sources, limit: int) -> int:
    cardinality = len(sinter_generic(sets))
    return min(cardinality, limit) if limit else cardinality


@command("sunion", -2, "readonly", keys=(1, -1, 1), fanout=Fanout.COORDINATED,
         acl="read set slow", group="set", tips="nondeterministic_output_order")
def sunion_command(db: Keyspace, args: list[bytes]) -> object:
    return set_reply(sunion_generic(sets_at(db, args[1:])))


@command("sinter", -2, "readonly", keys=(1, -1, 1), fanout=Fanout.COORDINATED,
         acl="read set slow", group="set", tips="nondeterministic_output_order")
def sinter_command(db: Keyspace, args: list[bytes]) -> object:
    return set_reply(sinter_generic(sets_at(db, args[1:])))


@command("sdiff", -2, "readonly", keys=(1, -1, 1), fanout=Fanout.COORDINATED,
         acl="read set slow", group="set", tips="nondeterministic_output_order")
def sdiff_command(db: Keyspace, args: list[bytes]) -> object:
    return set_reply(sdiff_generic(sets_at(db, args[1:])))


def store_generic(db: Keyspace, args: list[bytes], op: SetOp) -> int:
    """SUNIONSTORE, SINTERSTORE, SDIFFSTORE with every key on this worker."""
    return store_set(db, args[1], op(sets_at(db, args[2:])))


@command("sunionstore", -3, "write denyoom", keys=(1, -1, 1), fanout=Fanout.COORDINATED,
         acl="write set slow", group="set")
def sunionstore_command(db: Keyspace, args: list[bytes]) -> object:
    return store_generic(db, args, sunion_generic)


@command("sinterstore", -3, "write denyoom", keys=(1, -1, 1), fanout=Fanout.COORDINATED,
         acl="write set slow", group="set")
def sinterstore_command(db: Keyspace, args: list[bytes]) -> object:
    return store_generic(db, args, sinter_generic)


@command("sdiffstore", -3, "write denyoom", keys=(1, -1, 1), fanout=Fanout.COORDINATED,
         acl="write set slow", group="set")
def sdiffstore_command(db: Keyspace, args: list[bytes]) -> object:
    return store_generic(db, args, sdiff_generic)


@command("sintercard", -3, "readonly movablekeys", fanout=Fanout.COORDINATED,
         acl="read set slow", group="set", key_finder=keys_after_numkeys(1))
def sintercard_command(db: Keyspace, args: list[bytes]) -> object:
    keys, limit = parse_sintercard(args)
    return sintercard_reply(sets_at(db, keys), limit)


# Internal commands for the router's cross-worker set algebra ----------------------------------
#: ``__sgather`` codes for a key: missing, an intset, a hashtable.
MISSING, INTSET, HASHTABLE = 0, 1, 2


@command("__sgather", -2, "readonly internal", keys=(1, -1, 1))
def internal_sgather_command(db: Keyspace, args: list[bytes]) -> object:
    """``__sgather key [key ...]`` -> ``[[code, members], ...]``; WRONGTYPE if any key is not
    a set (the router then answers WRONGTYPE, as Redis would)."""
    out = []
    for value in sets_at(db, args[1:]):
        if value is None:
            out.append([MISSING, []])
        else:
            out.append([INTSET if value.intset else HASHTABLE, list(value)])
    return out


def set_from_gather(entry: list) -> SetValue | None:
    """Rebuild a source set from one ``__sgather`` entry (on the router)."""
    code, members = entry
    return None if code == MISSING else SetValue(members, code == INTSET)


@command("__sstore", -3, "write internal", keys=(1, 1, 1))
def internal_sstore_command(db: Keyspace, args: list[bytes]) -> object:
    """``__sstore key intset(0|1) [member ...]``: replace ``key`` by this set (delete it if
    no members); returns the cardinality."""
    return store_set(db, args[1], SetValue(args[3:], intset=args[2] == b"1"))
