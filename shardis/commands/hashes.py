"""Hash commands: worker-side operations over one shard's keyspace (Redis's t_hash.c).

A hash is a :class:`HashValue`, a ``dict`` that keeps insertion order, which is exactly the
order of Redis's listpack encoding, so HGETALL, HKEYS, HSCAN... of a small hash answer in
Redis's order.  The dict also remembers which encoding Redis would use (``listpack`` until the
hash outgrows ``hash-max-listpack-entries``/``-value``; Redis never converts back).

The second half of this module holds what hashes and sets share: uniform random sampling in
O(1) amortised (HRANDFIELD, SRANDMEMBER, SPOP), cursor paging for HSCAN/SSCAN, and the read,
create and commit helpers.  ``shardis.commands.sets`` imports them.

HRANDFIELD ... WITHVALUES answers pairs nested in RESP3 and flat in RESP2: the op returns a
``resp.Pairs``, which the worker encodes in the client's protocol.
"""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from shardis import errors
from shardis.commands import command
from shardis.commands.keys import parse_cursor
from shardis.commands.strings import LLONG_MAX, LLONG_MIN, parse_int
from shardis.errors import ReplyError
from shardis.floats import hincr_by_float
from shardis.glob import compile_glob
from shardis.resp import OK, Pairs
from shardis.worker.keyspace import Keyspace
from shardis.worker.types import (
    ValueType,
    register_listpack_packing,
    register_type,
)

#: Redis 7.0 defaults (config.c; 512, not the 128 of older docs): a hash stays a listpack up
#: to this many fields...
HASH_MAX_LISTPACK_ENTRIES = 512
#: ...and while no field or value is longer than this.
HASH_MAX_LISTPACK_VALUE = 64
#: The largest count Redis accepts for HRANDFIELD/SRANDMEMBER (``-LONG_MAX..LONG_MAX``).
LONG_MAX = LLONG_MAX


class HashValue(dict):
    """A hash value: field -> value in insertion order, plus Redis's encoding and caches.

    ``pool`` and ``scans`` serve random sampling and SCAN paging (see the helpers below); every
    addition must go through :meth:`put`, which keeps the encoding and the pool right.
    """

    __slots__ = ("listpack", "pool", "scans")

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = (), listpack: bool = True) -> None:
        super().__init__(items)
        self.listpack = listpack
        self.pool: list[bytes] | None = None
        self.scans: dict[int, list[bytes]] | None = None

    def convert_if_long(self, strings: Iterable[bytes]) -> None:
        """Redis's ``hashTypeTryConversion``: one long argument makes the whole hash a table,
        checked before anything is written (so even when nothing ends up written)."""
        if self.listpack and any(len(s) > HASH_MAX_LISTPACK_VALUE for s in strings):
            self.listpack = False

    def put(self, field: bytes, value: bytes) -> bool:
        """Set ``field``; True if it is new.  Converts like Redis's ``hashTypeSet``."""
        if self.listpack and (
            len(field) > HASH_MAX_LISTPACK_VALUE or len(value) > HASH_MAX_LISTPACK_VALUE
        ):
            self.listpack = False
        new = field not in self
        self[field] = value
        if new:
            self.pool = None  # the sampling pool must hold every field
            if self.listpack and len(self) > HASH_MAX_LISTPACK_ENTRIES:
                self.listpack = False
        return new


def _hash_dump(value: object) -> object:
    assert isinstance(value, HashValue)
    return (value.listpack, list(value.items()))


def _hash_load(plain: object) -> HashValue:
    listpack, items = plain  # type: ignore[misc]
    return HashValue(items, listpack)


def _hash_memory(value: object, samples: int = 5) -> int:
    assert isinstance(value, HashValue)
    return collection_memory(value, lambda field: sys.getsizeof(field) +
                             sys.getsizeof(value[field]), samples)


register_type(
    HashValue,
    ValueType(
        name=b"hash",
        encoding=lambda value: b"listpack" if value.listpack else b"hashtable",  # type: ignore[attr-defined]
        dump=_hash_dump,
        load=_hash_load,
        memory=_hash_memory,
    ),
)


class PackedHash(bytes):
    """A listpack hash at rest (see ``shardis.worker.types``): its fields and values in order."""

    __slots__ = ()


register_listpack_packing(HashValue, PackedHash)


# Helpers shared with sets ---------------------------------------------------------------------
V = TypeVar("V", bound=Any)


def value_of_type(db: Keyspace, key: bytes, kind: type[V]) -> V | None:
    """The value at ``key`` if it is a ``kind``, None if missing; WRONGTYPE otherwise."""
    value = db.get(key)
    if value is None or type(value) is kind:
        return value
    raise ReplyError(errors.WRONGTYPE)


def value_for_write(db: Keyspace, key: bytes, kind: type[V]) -> tuple[V, bool]:
    """(value, created): a new empty ``kind`` when missing, stored later by :func:`commit`.

    Storing only after the change means a command that fails half-way leaves no empty key.
    """
    value = value_of_type(db, key, kind)
    if value is None:
        return kind(), True
    return value, False


def commit(db: Keyspace, key: bytes, value: Any, created: bool) -> None:
    """Report a change to ``value``: store it if new, delete the key if it became empty."""
    if not value:
        if not created:
            db.delete(key)
    elif created:
        db.set(key, value)
    else:
        db.changed(key)


def collection_memory(value: Any, entry_size: Any, samples: int = 5) -> int:
    """Container size plus its entries, extrapolated from the first ``samples`` entries (0:
    all), as MEMORY USAGE does: exact for small values, O(1) for big ones by default."""
    size = sys.getsizeof(value)
    if not value:
        return size
    sampled = [entry_size(entry) for entry in itertools.islice(value, samples or None)]
    return size + sum(sampled) * len(value) // len(sampled)


def random_element(value: Any) -> bytes:
    """A uniformly random member (or field) of a non-empty set or hash, O(1) amortised.

    Python sets and dicts cannot be indexed, so a list of the members (``value.pool``) is kept:
    every addition drops it, removals leave dead entries that are skipped, and it is rebuilt
    once half of it is dead.  Each live member is in the pool exactly once: the pick is
    uniform, in two tries on average.
    """
    pool = value.pool
    if pool is None or len(pool) > 2 * len(value):
        pool = value.pool = list(value)
    size = len(pool)
    while True:
        element = pool[random.randrange(size)]
        if element in value:
            return element


def random_elements(value: Any, count: int) -> list[bytes]:
    """``count`` independent uniform picks, repetitions allowed (a negative count in Redis)."""
    pool = value.pool
    if pool is None or len(pool) != len(value):
        pool = value.pool = list(value)
    return random.choices(pool, k=count)


def random_distinct(value: Any, count: int) -> list[bytes]:
    """``count`` distinct random members, ``0 < count < len(value)``, in random order.

    Like Redis: when the sample is a large part of the value, draw from a full copy; otherwise
    pick at random and drop repeats.
    """
    if count * 3 > len(value):
        return random.sample(list(value), count)
    chosen: dict[bytes, None] = {}
    while len(chosen) < count:
        chosen[random_element(value)] = None
    return list(chosen)


def random_sample(value: Any, count: int, whole: Callable[[], list[bytes]]) -> list[bytes]:
    """HRANDFIELD's and SRANDMEMBER's cases for a nonzero count: a negative count (or 1)
    picks with repetitions, a count covering the value returns ``whole()`` (all of it in
    Redis's order), a smaller one distinct members."""
    if count < 0 or count == 1:
        return random_elements(value, abs(count))
    if count >= len(value):
        return whole()
    return random_distinct(value, count)


def parse_range_count(raw: bytes) -> int:
    """HRANDFIELD/SRANDMEMBER's count: an integer in ``-LONG_MAX..LONG_MAX``."""
    count = parse_int(raw)
    if count < -LONG_MAX:
        raise ReplyError(errors.out_of_range(-LONG_MAX, LONG_MAX))
    return count


# HSCAN/SSCAN: a small (listpack/intset) value is returned whole with cursor 0, as in Redis.  A
# big one is paged through a snapshot of its member list, taken when the iteration starts and
# kept on the value (a few per value, least recently used dropped): every member present for
# the whole iteration is returned once; members added meanwhile may or may not be.  The cursor
# is ``snapshot id << 32 | offset``.  A cursor whose snapshot is gone (evicted, or the key was
# replaced) restarts the iteration: members come again rather than go missing, which is what
# Redis guarantees too.
_SNAPSHOTS_PER_VALUE = 8
_OFFSET_BITS = 32
_snapshot_ids = itertools.count(1)


def parse_collection_scan(args: list[bytes]) -> tuple[int, bytes | None]:
    """(count, pattern) from HSCAN/SSCAN's options; no TYPE here (that is SCAN's alone)."""
    count, pattern = 10, None
    j = 3
    while j < len(args):
        opt = args[j].upper()
        if j + 1 >= len(args) or opt not in (b"COUNT", b"MATCH"):
            raise ReplyError(errors.SYNTAX)
        if opt == b"COUNT":
            count = parse_int(args[j + 1])
            if count < 1:
                raise ReplyError(errors.SYNTAX)
        else:
            pattern = args[j + 1]
        j += 2
    return count, pattern


def scan_page(value: Any, cursor: int, count: int) -> tuple[int, list[bytes]]:
    """(next cursor, members or fields) of a big value for one HSCAN/SSCAN call; see above.

    A value that fits in one page is returned whole from cursor 0 without a snapshot, as
    Redis's small hash tables are.
    """
    if cursor == 0 and len(value) <= count:
        return 0, list(value)
    scans = value.scans
    if scans is None:
        scans = value.scans = {}
    snapshot_id, offset = cursor >> _OFFSET_BITS, cursor & ((1 << _OFFSET_BITS) - 1)
    snapshot = scans.pop(snapshot_id, None)
    if snapshot is None:
        snapshot_id = next(_snapshot_ids) % (1 << 31) or 1
        snapshot = list(value)
        offset = 0
    end = offset + count
    page = [member for member in snapshot[offset:end] if member in value]
    if end >= len(snapshot):
        return 0, page
    scans[snapshot_id] = snapshot
    while len(scans) > _SNAPSHOTS_PER_VALUE:
        scans.pop(next(iter(scans)))
    return snapshot_id << _OFFSET_BITS | end, page


def scan_generic(
    db: Keyspace, args: list[bytes], kind: type, whole: Callable[[Any], list[bytes] | None]
) -> object:
    """HSCAN and SSCAN.  ``whole(value)``: all members in Redis's order when Redis returns a
    small encoding whole, else None (paged).

    Redis's order of checks: cursor, key (a missing key is an empty scan, whatever the
    options), type, options.
    """
    cursor = parse_cursor(args[2])
    value = value_of_type(db, args[1], kind)
    if value is None:
        return [b"0", []]
    count, pattern = parse_collection_scan(args)
    page = whole(value)
    if page is None:
        cursor, page = scan_page(value, cursor, count)
    else:
        cursor = 0
    if pattern is not None and pattern != b"*":
        match = compile_glob(pattern)
        page = [member for member in page if match(member)]
    if kind is HashValue:
        page = [item for field in page for item in (field, value[field])]
    return [b"%d" % cursor, page]


# Writes --------------------------------------------------------------------------------------
def hset_generic(db: Keyspace, args: list[bytes], name: str) -> int:
    """HSET and HMSET: set every pair; returns how many fields are new."""
    if len(args) % 2:
        raise ReplyError(errors.wrong_arity(name))
    key = args[1]
    value, created = value_for_write(db, key, HashValue)
    value.convert_if_long(args[2:])
    added = 0
    for j in range(2, len(args), 2):
        added += value.put(args[j], args[j + 1])
    commit(db, key, value, created)
    return added


@command("hset", -4, "write denyoom fast", keys=(1, 1, 1), acl="write hash fast", group="hash")
def hset_command(db: Keyspace, args: list[bytes]) -> object:
    return hset_generic(db, args, "hset")


@command("hmset", -4, "write denyoom fast", keys=(1, 1, 1), acl="write hash fast",
         group="hash")
def hmset_command(db: Keyspace, args: list[bytes]) -> object:
    hset_generic(db, args, "hmset")
    return OK


@command("hsetnx", 4, "write denyoom fast", keys=(1, 1, 1), acl="write hash fast",
         group="hash")
def hsetnx_command(db: Keyspace, args: list[bytes]) -> object:
    key, field, new = args[1], args[2], args[3]
    value, created = value_for_write(db, key, HashValue)
    if field in value:
        return 0
    value.convert_if_long((field, new))
    value.put(field, new)
    commit(db, key, value, created)
    return 1


@command("hdel", -3, "write fast", keys=(1, 1, 1), acl="write hash fast", group="hash")
def hdel_command(db: Keyspace, args: list[bytes]) -> object:
    key = args[1]
    value = value_of_type(db, key, HashValue)
    if value is None:
        return 0
    deleted = 0
    for field in args[2:]:
        if value.pop(field, None) is not None:
            deleted += 1
            if not value:
                break
    if deleted:
        commit(db, key, value, created=False)
    return deleted


@command("hincrby", 4, "write denyoom fast", keys=(1, 1, 1), acl="write hash fast",
         group="hash")
def hincrby_command(db: Keyspace, args: list[bytes]) -> object:
    key, field = args[1], args[2]
    increment = parse_int(args[3])
    value, created = value_for_write(db, key, HashValue)
    current = value.get(field)
    old = 0 if current is None else parse_int(current, errors.HASH_NOT_INTEGER)
    result = old + increment
    if not LLONG_MIN <= result <= LLONG_MAX:
        raise ReplyError(errors.OVERFLOW)
    value.put(field, b"%d" % result)
    commit(db, key, value, created)
    return result


@command("hincrbyfloat", 4, "write denyoom fast", keys=(1, 1, 1), acl="write hash fast",
         group="hash")
def hincrbyfloat_command(db: Keyspace, args: list[bytes]) -> object:
    key, field, increment = args[1], args[2], args[3]
    hincr_by_float(None, increment)  # the increment's errors come before WRONGTYPE in Redis
    value, created = value_for_write(db, key, HashValue)
    result = hincr_by_float(value.get(field), increment)
    value.put(field, result)
    commit(db, key, value, created)
    return result


# Reads ---------------------------------------------------------------------------------------
@command("hget", 3, "readonly fast", keys=(1, 1, 1), acl="read hash fast", group="hash")
def hget_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], HashValue)
    return None if value is None else value.get(args[2])


@command("hmget", -3, "readonly fast", keys=(1, 1, 1), acl="read hash fast", group="hash")
def hmget_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], HashValue)
    if value is None:
        return [None] * (len(args) - 2)
    get = value.get
    return [get(field) for field in args[2:]]


@command("hexists", 3, "readonly fast", keys=(1, 1, 1), acl="read hash fast", group="hash")
def hexists_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], HashValue)
    return int(value is not None and args[2] in value)


@command("hlen", 2, "readonly fast", keys=(1, 1, 1), acl="read hash fast", group="hash")
def hlen_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], HashValue)
    return 0 if value is None else len(value)


@command("hstrlen", 3, "readonly fast", keys=(1, 1, 1), acl="read hash fast", group="hash")
def hstrlen_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], HashValue)
    found = None if value is None else value.get(args[2])
    return 0 if found is None else len(found)


@command("hgetall", 2, "readonly", keys=(1, 1, 1), acl="read hash slow", group="hash",
         tips="nondeterministic_output_order")
def hgetall_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], HashValue)
    return {} if value is None else dict(value)


@command("hkeys", 2, "readonly", keys=(1, 1, 1), acl="read hash slow", group="hash",
         tips="nondeterministic_output_order")
def hkeys_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], HashValue)
    return [] if value is None else list(value)


@command("hvals", 2, "readonly", keys=(1, 1, 1), acl="read hash slow", group="hash",
         tips="nondeterministic_output_order")
def hvals_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], HashValue)
    return [] if value is None else list(value.values())


def _listpack_fields(value: HashValue) -> list[bytes] | None:
    return list(value) if value.listpack else None


@command("hscan", -3, "readonly", keys=(1, 1, 1), acl="read hash slow", group="hash",
         tips="nondeterministic_output")
def hscan_command(db: Keyspace, args: list[bytes]) -> object:
    return scan_generic(db, args, HashValue, _listpack_fields)


# HRANDFIELD ----------------------------------------------------------------------------------
def parse_hrandfield(args: list[bytes]) -> tuple[int | None, bool]:
    """(count or None, WITHVALUES) with Redis's checks, which all precede the key lookup."""
    if len(args) < 3:
        return None, False
    count = parse_range_count(args[2])
    if len(args) > 4 or (len(args) == 4 and args[3].lower() != b"withvalues"):
        raise ReplyError(errors.SYNTAX)
    with_values = len(args) == 4
    if with_values and abs(count) > LONG_MAX // 2:  # C division truncates: no floor here
        raise ReplyError(errors.OUT_OF_RANGE)
    return count, with_values


@command("hrandfield", -2, "readonly", keys=(1, 1, 1), acl="read hash slow", group="hash",
         tips="nondeterministic_output")
def hrandfield_command(db: Keyspace, args: list[bytes]) -> object:
    """Redis's cases: no count (one field or nil), count 0, a negative count (repeats allowed),
    a count covering the hash (all of it, in order), a smaller count (distinct fields)."""
    count, with_values = parse_hrandfield(args)
    value = value_of_type(db, args[1], HashValue)
    if count is None:
        return None if value is None else random_element(value)
    if value is None or count == 0:
        return []
    fields = random_sample(value, count, lambda: list(value))
    if with_values:
        return Pairs((field, value[field]) for field in fields)
    return fields
