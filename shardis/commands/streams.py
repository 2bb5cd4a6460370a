"""Stream commands: worker-side operations over one shard's keyspace (Redis's t_stream.c).

A stream is a :class:`StreamValue`: entries ordered by ID ``ms-seq`` (a sorted list of
``(ms, seq)`` tuples plus a dict of their field/value lists), the stream's ``last_id`` (which,
as in Redis, survives the deletion of the entries: XADD must still go above it) and a model
of Redis's radix-tree *nodes*.  The nodes exist only because approximate trimming
(``MAXLEN ~``/``MINID ~``, which redis-py sends by default: ``xadd(..., maxlen=10)`` is
``MAXLEN ~ 10``) removes whole nodes and nothing else: to trim what Redis trims, shardis must
know where Redis would have cut its listpacks.  A node takes entries until it holds
``stream-node-max-entries`` (100) entries, deleted ones included, or its listpack would reach
``stream-node-max-bytes`` (4096); the byte size is the listpack's, computed exactly as Redis
encodes it (the RDB writer writes the nodes as they are cut here).

XREAD replies ``[[key, entries], ...]`` in RESP2 and a map in RESP3, a shape no reply type of
``shardis.resp`` has, and ops do not know the client's protocol: the worker always answers the
RESP2 shape and the router (``shardis.router.streams``) reshapes it for RESP3 clients.  XREAD
is therefore a coordinated command on the router, which also implements ``BLOCK`` (its
timeout is in milliseconds and its position varies, so the generic blocking dispatch, which
reads seconds at a fixed index, cannot start it).

Consumer groups (XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM...) and XINFO/XSETID are not
implemented as commands, but a stream keeps the groups an RDB file or a RESTORE payload brings
(:class:`StreamGroup`: last ID, entries read, pending entries, consumers), so that SAVE, DUMP,
RENAME and COPY carry them on unchanged.  A node also keeps its *tombstones*: entries deleted
(XDEL, exact XTRIM) while the node lives on, which Redis keeps flagged in its listpack; the RDB
writer needs them to write the node as Redis does.
"""

from __future__ import annotations

import re
import sys
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any

from shardis import errors
from shardis.commands import Fanout, command
from shardis.commands.strings import LLONG_MAX, parse_int
from shardis.errors import ReplyError
from shardis.resp import NULL_ARRAY
from shardis.worker.blocking import blocking_attempt
from shardis.worker.keyspace import Keyspace
from shardis.worker.types import ValueType, register_type

StreamID = tuple[int, int]

U64_MAX = (1 << 64) - 1
MIN_ID: StreamID = (0, 0)
MAX_ID: StreamID = (U64_MAX, U64_MAX)
#: Redis 7.0 defaults of ``stream-node-max-entries`` and ``stream-node-max-bytes``.
NODE_MAX_ENTRIES = 100
NODE_MAX_BYTES = 4096
#: The LIMIT of an approximate trim without one: 100 nodes' worth (t_stream.c).
DEFAULT_APPROX_LIMIT = 100 * NODE_MAX_ENTRIES
#: How many entries a blocked XREAD without COUNT gets when it is served (Redis's
#: XREAD_BLOCKED_DEFAULT_COUNT): the first, synchronous try has no limit.
XREAD_BLOCKED_DEFAULT_COUNT = 1000

INVALID_ID = "ERR Invalid stream ID specified as stream command argument"
XADD_ID_TOO_SMALL = (
    "ERR The ID specified in XADD is equal or smaller than the target stream top item"
)
XADD_ID_ZERO = "ERR The ID specified in XADD must be greater than 0-0"
XADD_EXHAUSTED = "ERR The stream has exhausted the last possible ID, unable to add more items"
TRIM_BOTH = "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
UNBALANCED_XREAD = (
    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."
)


# The value -------------------------------------------------------------------------------------
class _Node:
    """One of Redis's listpack nodes: where it starts, what it holds, how big it is."""

    __slots__ = ("master", "fields", "live", "slots", "nbytes", "last", "dead")

    def __init__(self, master: StreamID, fields: list[bytes]) -> None:
        self.master = master
        #: the master entry's field names (later entries with the same fields store only
        #: their values).
        self.fields = fields[::2]
        self.live = 0
        #: live + deleted entries: Redis counts both against stream-node-max-entries.
        self.slots = 0
        #: the listpack's exact size, as Redis's ``lpBytes`` (header and end, the master entry
        #: ``count, deleted, num-fields, fields..., 0``; count and deleted stay below 128).
        self.nbytes = 7 + 2 + 2 + _int_size(len(self.fields)) + sum(
            _lp_size(f) for f in self.fields) + 2
        self.last = master
        #: deleted entries still in Redis's listpack: (id, fields), in deletion order.
        self.dead: list[tuple[StreamID, list[bytes]]] = []


def _lp_size(element: bytes) -> int:
    """Bytes one element takes in a listpack, as ``lpAppend`` encodes it (integer-looking
    strings as integers), back-length included."""
    if len(element) <= 20 and _STRICT_INT.match(element):
        value = int(element)
        if -(1 << 63) <= value < (1 << 63):
            return _int_size(value)
    size = len(element)
    total = size + (1 if size < 64 else 2 if size < 4096 else 5)
    return total + (1 if total <= 127 else 2 if total < 16383 else 3 if total < 2097151
                    else 4 if total < 268435455 else 5)


def _int_size(value: int) -> int:
    """Bytes an integer takes in a listpack (``lpAppendInteger``), back-length included; a
    value outside 64 bits wraps as the C ``uint64_t`` difference of two IDs does."""
    if not -(1 << 63) <= value < (1 << 63):
        value = (value + (1 << 63)) % (1 << 64) - (1 << 63)
    if 0 <= value <= 127:
        return 2
    if -4096 <= value <= 4095:
        return 3
    if -32768 <= value <= 32767:
        return 4
    if -8388608 <= value <= 8388607:
        return 5
    return 6 if -(1 << 31) <= value < (1 << 31) else 10


_STRICT_INT = re.compile(rb"(?:0|-?[1-9][0-9]*)\Z")


class StreamConsumer:
    """A consumer of a group: when it was last seen (ms) and the IDs it has pending."""

    __slots__ = ("seen_time", "pel")

    def __init__(self, seen_time: int, pel: list[StreamID] | None = None) -> None:
        self.seen_time = seen_time
        #: pending IDs, ascending; each is also in the group's PEL, owned by this consumer.
        self.pel: list[StreamID] = pel or []


class StreamGroup:
    """A consumer group as Redis's ``streamCG`` keeps it (``entries_read`` -1: unknown)."""

    __slots__ = ("last_id", "entries_read", "pel", "consumers")

    def __init__(self, last_id: StreamID, entries_read: int) -> None:
        self.last_id = last_id
        self.entries_read = entries_read
        #: pending ID -> [delivery time (ms), delivery count, owning consumer's name].
        self.pel: dict[StreamID, list[Any]] = {}
        self.consumers: dict[bytes, StreamConsumer] = {}


class StreamValue:
    """A stream: sorted IDs, their entries, the last ID ever added, and the node model."""

    __slots__ = ("ids", "entries", "nodes", "last_id", "max_deleted", "added", "groups")

    def __init__(self) -> None:
        self.ids: list[StreamID] = []
        #: ID -> flat [field, value, field, value...].
        self.entries: dict[StreamID, list[bytes]] = {}
        self.nodes: list[_Node] = []
        self.last_id: StreamID = MIN_ID
        self.max_deleted: StreamID = MIN_ID
        #: entries ever added (Redis's entries_added).
        self.added = 0
        #: consumer groups by name.
        self.groups: dict[bytes, StreamGroup] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, new_id: StreamID, fields: list[bytes]) -> None:
        """Add an entry above ``last_id``, into the last node or a new one as Redis would."""
        node = self.nodes[-1] if self.nodes else None
        total = sum(len(item) for item in fields)
        if node is None or node.nbytes + total >= NODE_MAX_BYTES or node.slots >= NODE_MAX_ENTRIES:
            node = _Node(new_id, fields)
            self.nodes.append(node)
        names = fields[::2]
        same = names == node.fields
        # flags, ms and seq deltas, [num-fields, fields,] values, lp-count: exact sizes.
        size = 2 + _int_size(new_id[0] - node.master[0]) + _int_size(new_id[1] - node.master[1])
        size += sum(_lp_size(v) for v in fields[1::2])
        if same:
            size += _int_size(len(names) + 3)
        else:
            size += _int_size(len(names)) + sum(_lp_size(f) for f in names)
            size += _int_size(2 * len(names) + 4)
        node.nbytes += size
        node.live += 1
        node.slots += 1
        node.last = new_id
        self.ids.append(new_id)
        self.entries[new_id] = fields
        self.last_id = new_id
        self.added += 1

    def delete(self, entry_id: StreamID) -> bool:
        """XDEL one ID: True if it was there.  A node left with no live entry goes away."""
        if entry_id not in self.entries:
            return False
        fields = self.entries.pop(entry_id)
        del self.ids[bisect_left(self.ids, entry_id)]
        index = bisect_right([n.master for n in self.nodes], entry_id) - 1
        node = self.nodes[index]
        node.live -= 1
        if node.live == 0:
            del self.nodes[index]
        else:
            node.dead.append((entry_id, fields))
        if entry_id > self.max_deleted:
            self.max_deleted = entry_id
        return True

    def _drop_first(self, count: int) -> None:
        for entry_id in self.ids[:count]:
            del self.entries[entry_id]
        del self.ids[:count]

    def trim(self, maxlen: int | None, minid: StreamID | None, approx: bool, limit: int) -> int:
        """Redis's ``streamTrim``: whole nodes first; within a node only when exact."""
        deleted = 0
        while self.nodes:
            if maxlen is not None and len(self.ids) <= maxlen:
                break
            node = self.nodes[0]
            if limit and deleted + node.live > limit:
                break
            if maxlen is not None:
                remove_node = len(self.ids) - node.live >= maxlen
            else:
                remove_node = node.last < minid  # type: ignore[operator]
            if remove_node:
                self._drop_first(node.live)
                deleted += node.live
                del self.nodes[0]
                continue
            if approx:
                break
            # Exact: mark entries of this node deleted, from its start.
            count = 0
            for entry_id in self.ids[: node.live]:
                if maxlen is not None:
                    if len(self.ids) - count <= maxlen:
                        break
                elif entry_id >= minid:  # type: ignore[operator]
                    break
                count += 1
            node.dead.extend((i, self.entries[i]) for i in self.ids[:count])
            self._drop_first(count)
            node.live -= count
            deleted += count
            break
        return deleted

    def range(self, start: StreamID, end: StreamID, count: int, rev: bool) -> list:
        """Entries with ``start <= id <= end`` as ``[id, [field, value...]]``, at most
        ``count`` of them (0: all), from the end when ``rev``."""
        if start > end:
            return []
        low = bisect_left(self.ids, start)
        high = bisect_right(self.ids, end)
        if rev:
            chosen = self.ids[max(low, high - count) if count else low : high][::-1]
        else:
            chosen = self.ids[low : min(high, low + count) if count else high]
        entries = self.entries
        return [[format_id(i), list(entries[i])] for i in chosen]


def _stream_dump(value: object) -> object:
    assert isinstance(value, StreamValue)
    nodes = [(n.master, n.fields, n.live, n.slots, n.nbytes, n.last, n.dead)
             for n in value.nodes]
    groups = [(name, g.last_id, g.entries_read, list(g.pel.items()),
               [(c, k.seen_time, k.pel) for c, k in g.consumers.items()])
              for name, g in value.groups.items()]
    return (value.ids, [value.entries[i] for i in value.ids], nodes, value.last_id,
            value.max_deleted, value.added, groups)


def _stream_load(plain: object) -> StreamValue:
    ids, entries, nodes, last_id, max_deleted, added, groups = plain  # type: ignore[misc]
    value = StreamValue()
    value.ids = [tuple(i) for i in ids]
    value.entries = dict(zip(value.ids, [list(e) for e in entries]))
    for master, fields, live, slots, nbytes, last, dead in nodes:
        node = _Node(tuple(master), [])
        node.fields, node.live, node.slots, node.nbytes = list(fields), live, slots, nbytes
        node.last = tuple(last)
        node.dead = [(tuple(i), list(f)) for i, f in dead]
        value.nodes.append(node)
    value.last_id, value.max_deleted, value.added = tuple(last_id), tuple(max_deleted), added
    for name, group_last, entries_read, pel, consumers in groups:
        group = StreamGroup(tuple(group_last), entries_read)
        group.pel = {tuple(i): list(nack) for i, nack in pel}
        group.consumers = {c: StreamConsumer(seen, [tuple(i) for i in cpel])
                           for c, seen, cpel in consumers}
        value.groups[name] = group
    return value


def _stream_memory(value: object) -> int:
    assert isinstance(value, StreamValue)
    size = sys.getsizeof(value) + sys.getsizeof(value.ids) + sys.getsizeof(value.entries)
    for fields in value.entries.values():
        size += sys.getsizeof(fields) + sum(sys.getsizeof(f) for f in fields) + 64
    return size + 64 * len(value.nodes)


register_type(
    StreamValue,
    ValueType(name=b"stream", encoding=lambda value: b"stream", dump=_stream_dump,
              load=_stream_load, memory=_stream_memory),
)


# IDs --------------------------------------------------------------------------------------------
def format_id(entry_id: StreamID) -> bytes:
    return b"%d-%d" % entry_id


_STRTOULL = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)\Z")


def _string2ull(text: bytes) -> int | None:
    """Redis's ``string2ull``: strict ``string2ll`` (negatives refused), else ``strtoull``
    (spaces, a sign and leading zeros accepted; a minus wraps around)."""
    if _STRICT_INT.match(text) and len(text) <= 20:
        value = int(text)
        if -(1 << 63) <= value < (1 << 63):
            return value if value >= 0 else None
    match = _STRTOULL.match(text)
    if match is None:
        return None
    value = int(match.group(2))
    if value > U64_MAX:
        return None
    return (-value) % (1 << 64) if match.group(1) == b"-" else value


def parse_id(raw: bytes, missing_seq: int = 0, strict: bool = False,
             seq_star: bool = False) -> tuple[StreamID, bool]:
    """Redis's ``streamGenericParseIDOrReply``: (id, seq_given).  ``strict`` refuses ``-`` and
    ``+``; ``seq_star`` accepts XADD's ``ms-*`` (seq_given False)."""
    if len(raw) > 127:
        raise ReplyError(INVALID_ID)
    text = raw.split(b"\0", 1)[0]  # Redis reads it as a C string
    if text in (b"-", b"+"):
        if strict:
            raise ReplyError(INVALID_ID)
        return (MIN_ID if text == b"-" else MAX_ID), True
    ms_text, dash, seq_text = text.partition(b"-")
    ms = _string2ull(ms_text)
    if ms is None:
        raise ReplyError(INVALID_ID)
    if not dash:
        return (ms, missing_seq), True
    if seq_star and seq_text == b"*":
        return (ms, 0), False
    seq = _string2ull(seq_text)
    if seq is None:
        raise ReplyError(INVALID_ID)
    return (ms, seq), True


def _incr(entry_id: StreamID) -> StreamID | None:
    ms, seq = entry_id
    if seq < U64_MAX:
        return ms, seq + 1
    return (ms + 1, 0) if ms < U64_MAX else None


def _decr(entry_id: StreamID) -> StreamID | None:
    ms, seq = entry_id
    if seq > 0:
        return ms, seq - 1
    return (ms - 1, U64_MAX) if ms > 0 else None


def stream_of(db: Keyspace, key: bytes) -> StreamValue | None:
    value = db.get(key)
    if value is None or type(value) is StreamValue:
        return value
    raise ReplyError(errors.WRONGTYPE)


# XADD / XTRIM -----------------------------------------------------------------------------------
@dataclass
class TrimArgs:
    """What XADD's and XTRIM's options say (``streamAddTrimArgs``)."""

    maxlen: int | None = None
    minid: StreamID | None = None
    approx: bool = False
    limit: int = 0
    nomkstream: bool = False
    id_index: int = 0  # XADD: where the ID is



def _trim_strategy(args: list[bytes], i: int, more: int, parsed: Any) -> int:
    """MAXLEN or MINID (only one of them) and its ``=``/``~``: the index of the threshold's
    predecessor, so that ``args[result + 1]`` is the threshold."""
    if parsed.maxlen is not None or parsed.minid is not None:
        raise ReplyError(TRIM_BOTH)
    parsed.approx = False
    if more >= 2 and args[i + 1] in (b"~", b"="):
        parsed.approx = args[i + 1] == b"~"
        i += 1
    return i

def parse_add_or_trim(args: list[bytes], xadd: bool) -> TrimArgs:
    """Redis's ``streamParseAddOrTrimArgsOrReply``, same order of checks and texts."""
    parsed = TrimArgs()
    limit_given = False
    argc = len(args)
    i = 2
    while i < argc:
        more = argc - 1 - i
        opt = args[i].lower()
        if xadd and args[i] == b"*":
            break
        if opt == b"maxlen" and more:
            i = _trim_strategy(args, i, more, parsed)
            maxlen = parse_int(args[i + 1])
            if maxlen < 0:
                raise ReplyError("ERR The MAXLEN argument must be >= 0.")
            parsed.maxlen = maxlen
            i += 2
        elif opt == b"minid" and more:
            i = _trim_strategy(args, i, more, parsed)
            parsed.minid = parse_id(args[i + 1], strict=True)[0]
            i += 2
        elif opt == b"limit" and more:
            limit = parse_int(args[i + 1])
            if limit < 0:
                raise ReplyError("ERR The LIMIT argument must be >= 0.")
            parsed.limit = limit
            limit_given = True
            i += 2
        elif xadd and opt == b"nomkstream":
            parsed.nomkstream = True
            i += 1
        elif xadd:
            break  # the ID (or a syntax error, reported as an invalid ID)
        else:
            raise ReplyError(errors.SYNTAX)
    parsed.id_index = i
    strategy = parsed.maxlen is not None or parsed.minid is not None
    if parsed.limit and not strategy:
        raise ReplyError(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy")
    if not xadd and not strategy:
        raise ReplyError("ERR syntax error, XTRIM must be called with a trimming strategy")
    if limit_given:
        if not parsed.approx:
            raise ReplyError("ERR syntax error, LIMIT cannot be used without the special ~ option")
    elif parsed.approx:
        parsed.limit = DEFAULT_APPROX_LIMIT
    else:
        parsed.limit = 0
    return parsed


def _trim(stream: StreamValue, parsed: TrimArgs) -> int:
    if parsed.maxlen is None and parsed.minid is None:
        return 0
    return stream.trim(parsed.maxlen, parsed.minid, parsed.approx, parsed.limit)


@command("xadd", -5, "write denyoom fast", keys=(1, 1, 1), acl="write stream fast",
         group="stream", tips="nondeterministic_output")
def xadd_command(db: Keyspace, args: list[bytes]) -> object:
    parsed = parse_add_or_trim(args, xadd=True)
    idpos = parsed.id_index
    if idpos >= len(args):
        raise ReplyError(errors.wrong_arity("xadd"))
    id_given = args[idpos] != b"*"
    wanted: StreamID = MIN_ID
    seq_given = True
    if id_given:
        wanted, seq_given = parse_id(args[idpos], strict=True, seq_star=True)
    fields = args[idpos + 1 :]
    if len(fields) < 2 or len(fields) % 2:
        raise ReplyError(errors.wrong_arity("xadd"))
    if id_given and seq_given and wanted == MIN_ID:
        raise ReplyError(XADD_ID_ZERO)
    key = args[1]
    stream = stream_of(db, key)
    created = stream is None
    if stream is None:
        if parsed.nomkstream:
            return None
        stream = StreamValue()
    last = stream.last_id
    if last == MAX_ID:
        raise ReplyError(XADD_EXHAUSTED)
    if not id_given:
        now = db.now_ms
        new_id = (now, 0) if now > last[0] else _incr(last)
    elif not seq_given:
        if wanted[0] == last[0]:
            if last[1] == U64_MAX:
                raise ReplyError(XADD_ID_TOO_SMALL)
            new_id = (last[0], last[1] + 1)
        else:
            new_id = wanted
    else:
        new_id = wanted
    if new_id is None or new_id <= last:
        raise ReplyError(XADD_ID_TOO_SMALL)
    stream.append(new_id, list(fields))
    _trim(stream, parsed)
    if created:
        db.set(key, stream)
    else:
        db.changed(key)
    return format_id(new_id)


@command("xtrim", -4, "write", keys=(1, 1, 1), acl="write stream slow", group="stream",
         tips="nondeterministic_output")
def xtrim_command(db: Keyspace, args: list[bytes]) -> object:
    parsed = parse_add_or_trim(args, xadd=False)
    stream = stream_of(db, args[1])
    if stream is None:
        return 0
    deleted = _trim(stream, parsed)
    if deleted:
        db.changed(args[1])
    return deleted


@command("xdel", -3, "write fast", keys=(1, 1, 1), acl="write stream fast", group="stream")
def xdel_command(db: Keyspace, args: list[bytes]) -> object:
    stream = stream_of(db, args[1])
    if stream is None:
        return 0
    ids = [parse_id(raw, strict=True)[0] for raw in args[2:]]
    deleted = sum(stream.delete(entry_id) for entry_id in ids)
    if deleted:
        db.changed(args[1])  # an emptied stream stays, as in Redis
    return deleted


@command("xlen", 2, "readonly fast", keys=(1, 1, 1), acl="read stream fast", group="stream")
def xlen_command(db: Keyspace, args: list[bytes]) -> object:
    stream = stream_of(db, args[1])
    return 0 if stream is None else len(stream)


# XRANGE / XREVRANGE ----------------------------------------------------------------------------
def _interval(raw: bytes, missing_seq: int) -> tuple[StreamID, bool]:
    """``streamParseIntervalIDOrReply``: (id, exclusive)."""
    if len(raw) > 1 and raw[:1] == b"(":
        return parse_id(raw[1:], missing_seq, strict=True)[0], True
    return parse_id(raw, missing_seq)[0], False


def xrange_generic(db: Keyspace, args: list[bytes], rev: bool) -> object:
    start_raw, end_raw = (args[3], args[2]) if rev else (args[2], args[3])
    start, start_ex = _interval(start_raw, 0)
    if start_ex:
        bumped = _incr(start)
        if bumped is None:
            raise ReplyError("ERR invalid start ID for the interval")
        start = bumped
    end, end_ex = _interval(end_raw, U64_MAX)
    if end_ex:
        lowered = _decr(end)
        if lowered is None:
            raise ReplyError("ERR invalid end ID for the interval")
        end = lowered
    count = -1
    j = 4
    while j < len(args):
        if args[j].lower() == b"count" and j + 1 < len(args):
            count = max(parse_int(args[j + 1]), 0)
            j += 2
        else:
            raise ReplyError(errors.SYNTAX)
    stream = stream_of(db, args[1])
    if stream is None:
        return []
    if count == 0:
        return NULL_ARRAY
    return stream.range(start, end, max(count, 0), rev)


@command("xrange", -4, "readonly", keys=(1, 1, 1), acl="read stream slow", group="stream")
def xrange_command(db: Keyspace, args: list[bytes]) -> object:
    return xrange_generic(db, args, rev=False)


@command("xrevrange", -4, "readonly", keys=(1, 1, 1), acl="read stream slow", group="stream")
def xrevrange_command(db: Keyspace, args: list[bytes]) -> object:
    return xrange_generic(db, args, rev=True)


# XREAD ------------------------------------------------------------------------------------------
@dataclass
class XReadArgs:
    """XREAD's options, parsed as ``xreadCommand`` does before it looks at any key."""

    block_ms: int | None
    count: int
    #: index of the first key; the keys are ``args[streams:streams + n]``, their IDs follow.
    streams: int
    n: int


def parse_xread(args: list[bytes]) -> XReadArgs:
    """XREAD's option loop, with Redis's errors in Redis's order (shared by router and worker).

    BLOCK's value is parsed but not checked against the clock (``timeout is out of range``
    needs ``now``, which only the router's use of it cares about)."""
    block_ms: int | None = None
    count = 0
    argc = len(args)
    i = 1
    while i < argc:
        more = argc - i - 1
        opt = args[i].lower()
        if opt == b"block" and more:
            i += 1
            block_ms = parse_int(args[i], "ERR timeout is not an integer or out of range")
            if block_ms < 0:
                raise ReplyError("ERR timeout is negative")
            if block_ms > LLONG_MAX - time.time_ns() // 1_000_000:
                raise ReplyError("ERR timeout is out of range")
        elif opt == b"count" and more:
            i += 1
            count = max(parse_int(args[i]), 0)
        elif opt == b"streams" and more:
            streams = i + 1
            total = argc - streams
            if total % 2:
                raise ReplyError(UNBALANCED_XREAD)
            return XReadArgs(block_ms, count, streams, total // 2)
        elif opt == b"group" and more >= 2:
            raise ReplyError(
                "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.")
        elif opt == b"noack":
            raise ReplyError(
                "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.")
        else:
            raise ReplyError(errors.SYNTAX)
        i += 1
    raise ReplyError(errors.SYNTAX)


def xread_keys(args: list[bytes]) -> range:
    """XREAD's key positions (``movablekeys``): after the first STREAMS, half of the rest,
    as Redis's key spec finds them (a keyword search from argument 1)."""
    for i in range(1, len(args)):
        if args[i].lower() == b"streams":
            first = i + 1
            return range(first, first + (len(args) - first) // 2)
    return range(0)


def _xread_ids(db: Keyspace, args: list[bytes], parsed: XReadArgs) -> list[StreamID]:
    """Each key's ID, checking each key's type first, key by key, as Redis does; ``$`` is the
    stream's last ID (0-0 for a missing key)."""
    ids: list[StreamID] = []
    first, n = parsed.streams, parsed.n
    for j in range(n):
        stream = stream_of(db, args[first + j])
        raw = args[first + n + j]
        if raw == b"$":
            ids.append(stream.last_id if stream is not None else MIN_ID)
        elif raw == b">":
            raise ReplyError(
                "ERR The > ID can be specified only when calling XREADGROUP using the "
                "GROUP <group> <consumer> option.")
        else:
            ids.append(parse_id(raw, strict=True)[0])
    return ids


def _xread_serve(db: Keyspace, args: list[bytes], parsed: XReadArgs, ids: list[StreamID],
                 count: int) -> list | None:
    """``[[key, entries], ...]`` for the streams with entries above their ID; None if none."""
    out = []
    first = parsed.streams
    for j, after in enumerate(ids):
        stream = stream_of(db, args[first + j])
        if not stream or stream.ids[-1] <= after:
            continue
        start = _incr(after)
        assert start is not None
        out.append([args[first + j], stream.range(start, MAX_ID, count, rev=False)])
    return out or None


@command("xread", -4, "readonly blocking movablekeys", fanout=Fanout.COORDINATED,
         acl="read stream slow blocking", group="stream", key_finder=xread_keys)
def xread_command(db: Keyspace, args: list[bytes]) -> object:
    """The read itself, never waiting (the router implements BLOCK; inside MULTI and scripts
    BLOCK answers like a timeout when there is nothing, as Redis does in MULTI).  RESP2 shape
    always: the router reshapes it for RESP3 clients."""
    parsed = parse_xread(args)
    ids = _xread_ids(db, args, parsed)
    reply = _xread_serve(db, args, parsed, ids, parsed.count)
    return NULL_ARRAY if reply is None else reply


def xread_narrowed(args: list[bytes], key: bytes) -> list[bytes]:
    """A parked XREAD (``XREAD COUNT n STREAMS k1 k2 id1 id2``, rewritten by its first
    attempt) narrowed to one stream: a served read answers with that stream alone (Redis
    7.0)."""
    n = (len(args) - 4) // 2
    j = args.index(key, 4, 4 + n)
    return [*args[:4], key, args[j + n]]


@blocking_attempt("xread", b"stream", xread_narrowed, independent=True)
def xread_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    """The blocking framework's attempt.  The first (synchronous) try reads with the given
    COUNT; when it finds nothing, it rewrites ``args`` *in place* (the list the worker's
    ``Waiter`` keeps and every later attempt gets): ``$`` becomes the stream's last ID of this
    moment, so entries added later are "new", and a missing COUNT becomes Redis's default for a
    served blocked read (1000).  A rewritten command starts with ``XREAD COUNT n``."""
    parsed = parse_xread(args)
    ids = _xread_ids(db, args, parsed)
    reply = _xread_serve(db, args, parsed, ids, parsed.count)
    if reply is not None:
        return reply
    first, n = parsed.streams, parsed.n
    count = parsed.count or XREAD_BLOCKED_DEFAULT_COUNT
    args[:] = [args[0], b"COUNT", b"%d" % count, b"STREAMS", *args[first : first + n],
               *[format_id(i) for i in ids]]
    return None
