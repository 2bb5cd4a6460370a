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

Consumer groups (:class:`StreamGroup`: last delivered ID, entries read, the pending entries
list, consumers) are kept as Redis's ``streamCG``, and travel with the value through SAVE, DUMP,
RENAME and COPY.  XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM, XINFO and XSETID
follow t_stream.c check for check: the read counter and lag as 7.0 computes them
(:func:`estimate_entries_read`, :func:`group_lag`), XINFO's ``radix-tree-nodes`` counted on
the node model (:func:`rax_nodes`).  What Redis propagates for a delivery (``XCLAIM ... TIME
... RETRYCOUNT ... FORCE JUSTID LASTID``, ``XGROUP SETID ... ENTRIESREAD``, ``XGROUP
CREATECONSUMER``) is reported in ``Keyspace.propagated`` so that the AOF logs it in place of
the command; group changes are reported with ``Keyspace.changed_quietly``, since Redis
signals none of them to WATCH.  XREADGROUP is coordinated on the router like XREAD (reply
shape, reads over several workers, BLOCK); a blocked XREADGROUP is served by the worker from
the key that became ready, in Redis's order, and gets Redis's errors when its group is
destroyed or its key goes away.  A node also keeps its *tombstones*: entries deleted
(XDEL, exact XTRIM) while the node lives on, which Redis keeps flagged in its listpack; the RDB
writer needs them to write the node as Redis does.
"""

from __future__ import annotations

import re
import struct
import sys
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import islice
from typing import Any

from shardis import errors
from shardis.commands import Fanout, command, container
from shardis.commands.strings import LLONG_MAX, parse_int
from shardis.errors import ReplyError
from shardis.resp import NULL_ARRAY, OK
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


def _stream_memory(value: object, samples: int = 5) -> int:
    """The tables, the entries extrapolated from the first ``samples`` (0: all), the groups'
    pending entries and consumers counted."""
    assert isinstance(value, StreamValue)
    size = sys.getsizeof(value) + sys.getsizeof(value.ids) + sys.getsizeof(value.entries)
    entries = value.entries
    if entries:
        sampled = [sys.getsizeof(fields) + sum(sys.getsizeof(f) for f in fields) + 64
                   for fields in islice(entries.values(), samples or None)]
        size += sum(sampled) * len(entries) // len(sampled)
    for name, group in value.groups.items():  # a PEL entry: its dict slot, list, ID tuple
        size += 128 + len(name) + 160 * len(group.pel)
        size += sum(96 + len(c) + 8 * len(k.pel) for c, k in group.consumers.items())
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
    """XREAD's (and XREADGROUP's) options, parsed as ``xreadCommand`` does before it looks at
    any key."""

    block_ms: int | None
    count: int
    #: index of the first key; the keys are ``args[streams:streams + n]``, their IDs follow.
    streams: int
    n: int
    #: XREADGROUP's GROUP name and consumer (None for XREAD), and NOACK.
    group: bytes | None = None
    consumer: bytes = b""
    noack: bool = False


def is_xreadgroup(args: list[bytes]) -> bool:
    """Redis tells the two commands apart by the length of the name the client typed."""
    return len(args[0]) == 10


def parse_xread(args: list[bytes], in_script: bool = False) -> XReadArgs:
    """XREAD's and XREADGROUP's option loop, with Redis's errors in Redis's order (shared by
    router and worker).

    BLOCK's value is parsed but not checked against the clock (``timeout is out of range``
    needs ``now``, which only the router's use of it cares about)."""
    group_read = is_xreadgroup(args)
    block_ms: int | None = None
    count = 0
    group: bytes | None = None
    consumer = b""
    noack = False
    streams = 0
    argc = len(args)
    i = 1
    while i < argc:
        more = argc - i - 1
        opt = args[i].lower()
        if opt == b"block" and more:
            if in_script:
                raise ReplyError(f"ERR {_text(args[0])} command is not allowed with BLOCK "
                                 "option from scripts")
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
            if (argc - streams) % 2:
                raise ReplyError(UNBALANCED_XREAD)
            break
        elif opt == b"group" and more >= 2:
            if not group_read:
                raise ReplyError("ERR The GROUP option is only supported by XREADGROUP. "
                                 "You called XREAD instead.")
            group, consumer = args[i + 1], args[i + 2]
            i += 2
        elif opt == b"noack":
            if not group_read:
                raise ReplyError("ERR The NOACK option is only supported by XREADGROUP. "
                                 "You called XREAD instead.")
            noack = True
        else:
            raise ReplyError(errors.SYNTAX)
        i += 1
    if not streams:
        raise ReplyError(errors.SYNTAX)
    if group_read and group is None:
        raise ReplyError("ERR Missing GROUP option for XREADGROUP")
    return XReadArgs(block_ms, count, streams, (argc - streams) // 2, group, consumer, noack)


def xread_keys(args: list[bytes]) -> range:
    """XREAD's and XREADGROUP's key positions (``movablekeys``), found as Redis's
    ``xreadGetKeys`` finds them: options skipped up to the first STREAMS, then half of the
    rest (none on a syntax error or an odd count)."""
    i = 1
    while i < len(args):
        opt = args[i].lower()
        if opt in (b"block", b"count"):
            i += 2
        elif opt == b"group":
            i += 3
        elif opt == b"noack":
            i += 1
        elif opt == b"streams":
            rest = len(args) - i - 1
            if not rest or rest % 2:
                return range(0)
            return range(i + 1, i + 1 + rest // 2)
        else:
            break
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
    parsed = parse_xread(args, in_script(db))
    ids = _xread_ids(db, args, parsed)
    reply = _xread_serve(db, args, parsed, ids, parsed.count)
    return NULL_ARRAY if reply is None else reply


def in_script(db: Keyspace) -> bool:
    """Whether the command runs from a script (which may not BLOCK, as in Redis)."""
    return bool(getattr(db.shard, "in_script", False))


def xread_narrowed(args: list[bytes], key: bytes) -> list[bytes]:
    """A parked XREAD or XREADGROUP (in the form its first attempt rewrote it to) narrowed to
    one stream: a served read answers with that stream alone (Redis 7.0)."""
    parsed = parse_xread(args)
    first, n = parsed.streams, parsed.n
    j = args.index(key, first, first + n)
    return [*args[:first], key, args[j + n]]


def blocked_form(args: list[bytes], parsed: XReadArgs, ids: list[bytes]) -> list[bytes]:
    """The command a parked read becomes once its first attempt found nothing: no BLOCK (so
    later attempts know they serve a waiter), COUNT made explicit (Redis's default for a
    served blocked read when none was given) and the IDs resolved."""
    first, n = parsed.streams, parsed.n
    count = parsed.count or XREAD_BLOCKED_DEFAULT_COUNT
    head = [args[0]]
    if parsed.group is not None:
        head += [b"GROUP", parsed.group, parsed.consumer]
    head += [b"COUNT", b"%d" % count]
    if parsed.noack:
        head.append(b"NOACK")
    return [*head, b"STREAMS", *args[first:first + n], *ids]


@blocking_attempt("xread", b"stream", xread_narrowed, independent=True)
def xread_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    """The blocking framework's attempt.  The first (synchronous) try reads with the given
    COUNT; when it finds nothing, it rewrites ``args`` *in place* (the list the worker's
    ``Waiter`` keeps and every later attempt gets) to :func:`blocked_form`: ``$`` becomes the
    stream's last ID of this moment, so entries added later are "new"."""
    parsed = parse_xread(args)
    if parsed.block_ms is None:
        return _served_read(db, args, parsed)
    ids = _xread_ids(db, args, parsed)
    reply = _xread_serve(db, args, parsed, ids, parsed.count)
    if reply is not None:
        return reply
    args[:] = blocked_form(args, parsed, [format_id(i) for i in ids])
    return None


def _served_read(db: Keyspace, args: list[bytes], parsed: XReadArgs) -> list | None:
    """Serving a parked XREAD (narrowed to the ready key), as ``serveClientsBlockedOnStreamKey``
    does: as soon as the stream's last ID passed the reader's, even if the entries past it are
    gone (``MULTI; XADD; XDEL; EXEC`` serves an empty list); a key of another type is skipped."""
    first, n = parsed.streams, parsed.n
    for j in range(n):
        key = args[first + j]
        stream = db.get(key)
        if type(stream) is not StreamValue:
            continue
        after = parse_id(args[first + n + j], strict=True)[0]
        if stream.last_id > after:
            start = _incr(after)
            assert start is not None
            return [[key, stream.range(start, MAX_ID, parsed.count, rev=False)]]
    return None


@command("__xlastid", -2, "readonly internal", keys=(1, -1, 1), group="stream")
def xlastid_command(db: Keyspace, args: list[bytes]) -> object:
    """``__xlastid key...``: each stream's last ID (0-0 when missing), for a cross-worker
    ``XREAD BLOCK`` resolving ``$`` under its gate."""
    out = []
    for key in args[1:]:
        stream = stream_of(db, key)
        out.append(format_id(stream.last_id if stream is not None else MIN_ID))
    return out


# Consumer groups: state ---------------------------------------------------------------------
#: Redis's SCG_INVALID_ENTRIES_READ.
INVALID_ENTRIES_READ = -1
BUSYGROUP = "BUSYGROUP Consumer Group name already exists"
XGROUP_NO_KEY = (
    "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want "
    "to use the MKSTREAM option to create an empty stream automatically.")
XREADGROUP_DOLLAR = (
    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history "
    "of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ "
    "ID would just return an empty result set.")
BLOCKED_NOGROUP = "NOGROUP the consumer group this client was blocked on no longer exists"
BLOCKED_GONE = "UNBLOCKED the stream key no longer exists"


def _text(raw: bytes) -> str:
    """A name inside an error, as Redis's ``%s`` and ``addReplyErrorFormat`` render it."""
    return errors.arg_text(raw).replace("\r", " ").replace("\n", " ")


def nogroup(key: bytes, group: bytes, suffix: str = "") -> ReplyError:
    """XPENDING/XCLAIM/XAUTOCLAIM's (and, with a suffix, XREADGROUP's) NOGROUP error."""
    return ReplyError(f"NOGROUP No such key '{_text(key)}' or consumer group '{_text(group)}'"
                      + suffix)


def nogroup_for_key(group: bytes, key: bytes) -> ReplyError:
    """XGROUP's and XINFO CONSUMERS' NOGROUP error (group first)."""
    return ReplyError(f"NOGROUP No such consumer group '{_text(group)}' for key name "
                      f"'{_text(key)}'")


def has_tombstones(s: StreamValue, start: StreamID, end: StreamID = MAX_ID) -> bool:
    """Redis's ``streamRangeHasTombstones``: may a deleted entry lie in ``[start, end]``?"""
    if not s.ids or s.max_deleted == MIN_ID or s.ids[0] > s.max_deleted:
        return False
    return start <= s.max_deleted <= end


def estimate_entries_read(s: StreamValue, entry_id: StreamID) -> int:
    """Redis's ``streamEstimateDistanceFromFirstEverEntry``: the logical read counter of
    ``entry_id``, or -1 when it cannot be known (fragmentation, an ID in the middle)."""
    if not s.added:
        return 0
    if not s.ids and entry_id <= s.last_id:
        return s.added
    if entry_id == s.last_id:
        return s.added
    if entry_id > s.last_id:
        return INVALID_ENTRIES_READ
    first = s.ids[0] if s.ids else MIN_ID
    if s.max_deleted == MIN_ID or s.max_deleted < first:
        if entry_id < first:
            return s.added - len(s.ids)
        if entry_id == first:
            return s.added - len(s.ids) + 1
    return INVALID_ENTRIES_READ


def group_lag(s: StreamValue, group: StreamGroup) -> int | None:
    """Redis's ``streamReplyWithCGLag``: entries not yet delivered to the group, or None."""
    if not s.added:
        return 0
    if group.entries_read != INVALID_ENTRIES_READ and not has_tombstones(s, group.last_id):
        return s.added - group.entries_read
    entries_read = estimate_entries_read(s, group.last_id)
    return None if entries_read == INVALID_ENTRIES_READ else s.added - entries_read


def rax_nodes(keys: list[bytes]) -> int:
    """How many nodes Redis's radix tree has for ``keys`` (the 16-byte big-endian master IDs of
    a stream's listpacks): a chain of single-child steps is one compressed node, a fork is a
    node of its own, every key ends in a node, and an empty tree still has its head."""
    if not keys:
        return 1
    return _rax_count(sorted(keys), 0)


def _rax_count(keys: list[bytes], depth: int) -> int:
    """Nodes under a position ``depth`` bytes down that ``keys`` (sorted, same length, sharing
    their first ``depth`` bytes) all pass through."""
    size = len(keys[0])
    if depth == size:
        return 1  # the key's own (leaf) node
    if len(keys) == 1:
        return 2  # one compressed node for the rest, then the leaf
    first, last = keys[0], keys[-1]
    common = 0
    while depth + common < size and first[depth + common] == last[depth + common]:
        common += 1
    nodes = 1 if common else 0
    depth += common
    nodes += 1  # the fork
    start = 0
    for end in range(1, len(keys) + 1):
        if end == len(keys) or keys[end][depth] != keys[start][depth]:
            nodes += _rax_count(keys[start:end], depth + 1)
            start = end
    return nodes


def stream_rax_nodes(s: StreamValue) -> int:
    """``radix-tree-nodes`` of XINFO STREAM."""
    return rax_nodes([struct.pack(">QQ", *node.master) for node in s.nodes])


def _propagate(db: Keyspace, key: bytes, command: list[bytes]) -> None:
    """Record a command the AOF logs in place of the current one (Redis's ``alsoPropagate``
    for consumer-group state: the op alone knows the delivery times and counts it set).  The
    key is reported changed once, so the shard applies the effects and logs them."""
    if db.propagated is None:
        db.propagated = []
    if not db.propagated or db.touched[-1:] != [key]:
        db.changed_quietly(key)
    db.propagated.append(command)


def _propagate_claim(db: Keyspace, key: bytes, gname: bytes, group: StreamGroup,
                     entry_id: StreamID, nack: list) -> None:
    """Redis's ``streamPropagateXCLAIM``: an idempotent XCLAIM that recreates the entry's
    pending state (owner, delivery time and count) and the group's last ID."""
    _propagate(db, key, [b"XCLAIM", key, gname, nack[2], b"0", format_id(entry_id), b"TIME",
                         b"%d" % nack[0], b"RETRYCOUNT", b"%d" % nack[1], b"FORCE", b"JUSTID",
                         b"LASTID", format_id(group.last_id)])


def _propagate_group_id(db: Keyspace, key: bytes, gname: bytes, group: StreamGroup) -> None:
    """Redis's ``streamPropagateGroupID``: XGROUP SETID with the group's read counter."""
    _propagate(db, key, [b"XGROUP", b"SETID", key, gname, format_id(group.last_id),
                         b"ENTRIESREAD", b"%d" % group.entries_read])


def _consumer(db: Keyspace, group: StreamGroup, name: bytes,
              refresh: bool = True) -> tuple[StreamConsumer, bool]:
    """(consumer, created): Redis's ``streamLookupConsumer`` (seen time refreshed), else
    ``streamCreateConsumer``."""
    consumer = group.consumers.get(name)
    if consumer is not None:
        if refresh:
            consumer.seen_time = db.now_ms
        return consumer, False
    consumer = group.consumers[name] = StreamConsumer(db.now_ms)
    return consumer, True


def _new_consumer_noted(db: Keyspace, key: bytes) -> None:
    """A consumer created by XREADGROUP, XCLAIM or XAUTOCLAIM: Redis notifies
    ``xgroup-createconsumer`` and counts a change, and propagates nothing for it unless the
    caller does (an empty ``propagated``: the command itself is never logged)."""
    db.events.append((b"xgroup-createconsumer", key))
    if db.propagated is None:
        db.propagated = []
    db.changed_quietly(key)


def _claimer(db: Keyspace, key: bytes, group: StreamGroup, name: bytes) -> StreamConsumer:
    """XCLAIM's and XAUTOCLAIM's consumer, created (and noted) when missing."""
    consumer, created = _consumer(db, group, name)
    if created:
        _new_consumer_noted(db, key)
    return consumer


def _unown(group: StreamGroup, entry_id: StreamID, owner: bytes | None) -> None:
    """Take ``entry_id`` out of its owner's PEL (the group's entry stays)."""
    consumer = group.consumers.get(owner) if owner is not None else None
    if consumer is not None:
        pel = consumer.pel
        index = bisect_left(pel, entry_id)
        if index < len(pel) and pel[index] == entry_id:
            del pel[index]


def _own(consumer: StreamConsumer, entry_id: StreamID) -> None:
    pel = consumer.pel
    index = bisect_left(pel, entry_id)
    if index == len(pel) or pel[index] != entry_id:
        pel.insert(index, entry_id)


def _drop_nack(group: StreamGroup, entry_id: StreamID) -> None:
    nack = group.pel.pop(entry_id)
    _unown(group, entry_id, nack[2])


@dataclass
class GroupRead:
    """One stream of an XREADGROUP: where, which group, as which consumer, how."""

    db: Keyspace
    key: bytes
    stream: StreamValue
    gname: bytes
    group: StreamGroup
    cname: bytes
    noack: bool

    def consumer(self) -> StreamConsumer:
        consumer, created = _consumer(self.db, self.group, self.cname)
        if created:
            _new_consumer_noted(self.db, self.key)
        if created and self.noack:  # Redis's streamPropagateConsumerCreation
            _propagate(self.db, self.key, [b"XGROUP", b"CREATECONSUMER", self.key, self.gname,
                                           self.cname])
        return consumer

    def deliver(self, start: StreamID, count: int) -> list:
        """Redis's ``streamReplyWithRange`` with a group: new entries from ``start``, the
        group's last ID and read counter moved on, PEL entries made (unless NOACK), each
        propagated as an XCLAIM (or the last ID as XGROUP SETID under NOACK)."""
        consumer = self.consumer()
        s, group, now = self.stream, self.group, self.db.now_ms
        out: list = []
        moved = False
        ids = s.ids
        index = bisect_left(ids, start)
        while index < len(ids) and (not count or len(out) < count):
            entry_id = ids[index]
            index += 1
            if entry_id > group.last_id:
                if group.entries_read != INVALID_ENTRIES_READ and not has_tombstones(s, entry_id):
                    group.entries_read += 1
                elif s.added:
                    group.entries_read = estimate_entries_read(s, entry_id)
                group.last_id = entry_id
                moved = self.noack
            out.append([format_id(entry_id), list(s.entries[entry_id])])
            if not self.noack:
                nack = group.pel.get(entry_id)
                if nack is not None:
                    _unown(group, entry_id, nack[2])
                nack = group.pel[entry_id] = [now, 1, self.cname]
                _own(consumer, entry_id)
                _propagate_claim(self.db, self.key, self.gname, group, entry_id, nack)
        if moved:
            _propagate_group_id(self.db, self.key, self.gname, group)
        return out

    def history(self, start: StreamID, count: int) -> list:
        """Redis's ``streamReplyWithRangeFromConsumerPEL``: the consumer's own pending entries
        from ``start`` (a deleted one as ``[id, nil]``), each delivered once more.  Redis
        propagates nothing for these, and neither do we."""
        consumer = self.consumer()
        pel, now = consumer.pel, self.db.now_ms
        out: list = []
        index = bisect_left(pel, start)
        while index < len(pel) and (not count or len(out) < count):
            entry_id = pel[index]
            index += 1
            fields = self.stream.entries.get(entry_id)
            if fields is None:
                out.append([format_id(entry_id), NULL_ARRAY])
                continue
            out.append([format_id(entry_id), list(fields)])
            nack = self.group.pel[entry_id]
            nack[0] = now
            nack[1] += 1
        return out


# XREADGROUP -------------------------------------------------------------------------------------
def _group_reads(db: Keyspace, args: list[bytes],
                 parsed: XReadArgs) -> list[tuple[GroupRead, StreamID | None]]:
    """Each key's read and ID (None for ``>``), checked key by key in Redis's order: type,
    group, then the ID."""
    assert parsed.group is not None
    out = []
    first, n = parsed.streams, parsed.n
    for j in range(n):
        key = args[first + j]
        stream = stream_of(db, key)
        group = stream.groups.get(parsed.group) if stream is not None else None
        if stream is None or group is None:
            raise nogroup(key, parsed.group, " in XREADGROUP with GROUP option")
        raw = args[first + n + j]
        if raw == b"$":
            raise ReplyError(XREADGROUP_DOLLAR)
        after = None if raw == b">" else parse_id(raw, strict=True)[0]
        if after == MAX_ID:
            after = None  # Redis marks ">" with this very ID: the two read alike
        out.append((GroupRead(db, key, stream, parsed.group, group, parsed.consumer,
                              parsed.noack), after))
    return out


def _xreadgroup_serve(reads: list[tuple[GroupRead, StreamID | None]], count: int) -> list | None:
    """The synchronous serving of ``xreadCommand``: history for explicit IDs (even empty),
    new entries for ``>`` when the stream has some past the group's last ID."""
    out = []
    for read, after in reads:
        if after is not None:
            out.append([read.key, read.history(_incr(after) or MIN_ID, count)])
            continue
        stream, last = read.stream, read.group.last_id
        if stream.ids and stream.ids[-1] > last:
            out.append([read.key, read.deliver(_incr(last) or MIN_ID, count)])
    return out or None


@command("xreadgroup", -7, "write blocking movablekeys", fanout=Fanout.COORDINATED,
         acl="write stream slow blocking", group="stream", key_finder=xread_keys)
def xreadgroup_command(db: Keyspace, args: list[bytes]) -> object:
    """XREADGROUP without waiting (the router implements BLOCK, as for XREAD); RESP2 shape."""
    parsed = parse_xread(args, in_script(db))
    reply = _xreadgroup_serve(_group_reads(db, args, parsed), parsed.count)
    return NULL_ARRAY if reply is None else reply


@command("__xrgcheck", 4, "readonly internal", keys=(1, 1, 1), group="stream")
def xrgcheck_command(db: Keyspace, args: list[bytes]) -> object:
    """``__xrgcheck key group id``: XREADGROUP's checks of one key (type, group, ID) and no
    more, so that a read over several workers fails, as in Redis, before it delivers
    anything anywhere."""
    _group_reads(db, [b"XREADGROUP", b"GROUP", args[2], b"", b"STREAMS", args[1], args[3]],
                 XReadArgs(None, 0, 5, 1, args[2], b""))
    return OK


def _served_group_read(db: Keyspace, args: list[bytes], parsed: XReadArgs) -> object | None:
    """Serving a parked XREADGROUP (narrowed to one key), as ``serveClientsBlockedOnStreamKey``
    does: an error if the key or the group went away, entries past the group's last ID."""
    assert parsed.group is not None
    key = args[parsed.streams]
    stream = db.get(key)
    if type(stream) is not StreamValue:
        raise ReplyError(BLOCKED_GONE)
    group = stream.groups.get(parsed.group)
    if group is None:
        raise ReplyError(BLOCKED_NOGROUP)
    if stream.last_id <= group.last_id:
        return None
    read = GroupRead(db, key, stream, parsed.group, group, parsed.consumer, parsed.noack)
    return [[key, read.deliver(_incr(group.last_id) or MIN_ID, parsed.count)]]


@blocking_attempt("xreadgroup", b"stream", xread_narrowed, independent=True, gone=BLOCKED_GONE)
def xreadgroup_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    """The first try serves synchronously or rewrites ``args`` to :func:`blocked_form` (every
    ID is ``>`` then: an explicit one is always served at once); later tries serve a waiter
    from the one key that became ready."""
    parsed = parse_xread(args)
    if parsed.block_ms is None:
        if parsed.n == 1:
            return _served_group_read(db, args, parsed)
        for key in args[parsed.streams:parsed.streams + parsed.n]:
            reply = _served_group_read(db, xread_narrowed(args, key), parsed_one(parsed))
            if reply is not None:
                return reply
        return None
    reply = _xreadgroup_serve(_group_reads(db, args, parsed), parsed.count)
    if reply is not None:
        return reply
    args[:] = blocked_form(args, parsed, [b">"] * parsed.n)
    return None


def parsed_one(parsed: XReadArgs) -> XReadArgs:
    """``parsed`` for the command narrowed to one of its keys."""
    return XReadArgs(parsed.block_ms, parsed.count, parsed.streams, 1, parsed.group,
                     parsed.consumer, parsed.noack)


# XGROUP -----------------------------------------------------------------------------------------
container("xgroup", acl="slow", group="stream")


@dataclass
class XGroupArgs:
    """What ``xgroupCommand`` has resolved before it dispatches: the stream (None when
    missing: CREATE ... MKSTREAM), the group (None when missing), the options."""

    stream: StreamValue | None
    group: StreamGroup | None
    mkstream: bool
    entries_read: int


def _xgroup_options(args: list[bytes]) -> tuple[bool, int]:
    """CREATE's MKSTREAM and CREATE's/SETID's ENTRIESREAD, parsed from argument 5 on."""
    sub = args[1].lower()
    create, setid = sub == b"create", sub == b"setid"
    mkstream = False
    entries_read = INVALID_ENTRIES_READ
    i = 5
    while i < len(args):
        opt = args[i].lower()
        if create and opt == b"mkstream":
            mkstream = True
            i += 1
        elif (create or setid) and opt == b"entriesread" and i + 1 < len(args):
            entries_read = parse_int(args[i + 1])
            if entries_read < 0 and entries_read != INVALID_ENTRIES_READ:
                raise ReplyError("ERR value for ENTRIESREAD must be positive or -1")
            i += 2
        else:
            raise ReplyError(errors.subcommand_syntax(args))
    return mkstream, entries_read


def xgroup_args(db: Keyspace, args: list[bytes], needs_group: bool) -> XGroupArgs:
    """``xgroupCommand``'s checks, in its order: options, key type, key existence (unless
    MKSTREAM), and the group for the subcommands that need it."""
    mkstream, entries_read = _xgroup_options(args)
    stream = stream_of(db, args[2])
    group = stream.groups.get(args[3]) if stream is not None else None
    if not mkstream:
        if stream is None:
            raise ReplyError(XGROUP_NO_KEY)
        if group is None and needs_group:
            raise nogroup_for_key(args[3], args[2])
    return XGroupArgs(stream, group, mkstream, entries_read)


@command("create", -5, "write denyoom", keys=(2, 2, 1), acl="write stream slow",
         parent="xgroup", group="stream")
def xgroup_create_command(db: Keyspace, args: list[bytes]) -> object:
    parsed = xgroup_args(db, args, needs_group=False)
    if len(args) > 8:
        raise ReplyError(errors.subcommand_syntax(args))
    stream = parsed.stream
    if args[4] == b"$":
        last = stream.last_id if stream is not None else MIN_ID
    else:
        last = parse_id(args[4], strict=True)[0]
    key = args[2]
    if stream is None:
        stream = StreamValue()
        db.set(key, stream)
    if args[3] in stream.groups:
        raise ReplyError(BUSYGROUP)
    stream.groups[args[3]] = StreamGroup(last, parsed.entries_read)
    db.changed_quietly(key)
    return OK


@command("setid", -5, "write", keys=(2, 2, 1), acl="write stream slow", parent="xgroup",
         group="stream")
def xgroup_setid_command(db: Keyspace, args: list[bytes]) -> object:
    parsed = xgroup_args(db, args, needs_group=True)
    if len(args) not in (5, 7):
        raise ReplyError(errors.subcommand_syntax(args))
    stream, group = parsed.stream, parsed.group
    assert stream is not None and group is not None
    group.last_id = stream.last_id if args[4] == b"$" else parse_id(args[4])[0]
    group.entries_read = parsed.entries_read
    db.changed_quietly(args[2])
    return OK


@command("destroy", 4, "write", keys=(2, 2, 1), acl="write stream slow", parent="xgroup",
         group="stream")
def xgroup_destroy_command(db: Keyspace, args: list[bytes]) -> object:
    """A destroyed group's blocked readers get NOGROUP: the key is reported changed, so its
    waiters are tried and find no group."""
    parsed = xgroup_args(db, args, needs_group=False)
    if parsed.group is None:
        return 0
    assert parsed.stream is not None
    del parsed.stream.groups[args[3]]
    db.changed_quietly(args[2])
    return 1


@command("createconsumer", 5, "write denyoom", keys=(2, 2, 1), acl="write stream slow",
         parent="xgroup", group="stream")
def xgroup_createconsumer_command(db: Keyspace, args: list[bytes]) -> object:
    group = xgroup_args(db, args, needs_group=True).group
    assert group is not None
    if args[4] in group.consumers:
        return 0
    group.consumers[args[4]] = StreamConsumer(db.now_ms)
    db.changed_quietly(args[2])
    return 1


@command("delconsumer", 5, "write", keys=(2, 2, 1), acl="write stream slow", parent="xgroup",
         group="stream")
def xgroup_delconsumer_command(db: Keyspace, args: list[bytes]) -> object:
    """The consumer's pending entries leave the group's PEL too; answers how many there were."""
    group = xgroup_args(db, args, needs_group=True).group
    assert group is not None
    consumer = group.consumers.pop(args[4], None)
    if consumer is None:
        return 0
    for entry_id in consumer.pel:
        del group.pel[entry_id]
    db.changed_quietly(args[2])
    return len(consumer.pel)


XGROUP_HELP = [
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
]

command("help", 2, "loading stale", acl="stream slow", parent="xgroup", group="stream",
        fanout=Fanout.ROUTER)(None)


# XACK / XPENDING --------------------------------------------------------------------------------
@command("xack", -4, "write fast", keys=(1, 1, 1), acl="write stream fast", group="stream")
def xack_command(db: Keyspace, args: list[bytes]) -> object:
    stream = stream_of(db, args[1])
    group = stream.groups.get(args[2]) if stream is not None else None
    if group is None:
        return 0
    ids = [parse_id(raw, strict=True)[0] for raw in args[3:]]  # all or nothing
    acknowledged = 0
    for entry_id in ids:
        if entry_id in group.pel:
            _drop_nack(group, entry_id)
            acknowledged += 1
    if acknowledged:
        db.changed_quietly(args[1])
    return acknowledged


def _group_or_nogroup(db: Keyspace, key: bytes, gname: bytes) -> tuple[StreamValue, StreamGroup]:
    stream = stream_of(db, key)
    group = stream.groups.get(gname) if stream is not None else None
    if stream is None or group is None:
        raise nogroup(key, gname)
    return stream, group


def _interval_start(raw: bytes) -> StreamID:
    start, exclusive = _interval(raw, 0)
    if exclusive:
        bumped = _incr(start)
        if bumped is None:
            raise ReplyError("ERR invalid start ID for the interval")
        start = bumped
    return start


def _interval_end(raw: bytes) -> StreamID:
    end, exclusive = _interval(raw, U64_MAX)
    if exclusive:
        lowered = _decr(end)
        if lowered is None:
            raise ReplyError("ERR invalid end ID for the interval")
        end = lowered
    return end


@command("xpending", -3, "readonly", keys=(1, 1, 1), acl="read stream slow", group="stream",
         tips="nondeterministic_output")
def xpending_command(db: Keyspace, args: list[bytes]) -> object:
    argc = len(args)
    if argc != 3 and not 6 <= argc <= 9:
        raise ReplyError(errors.SYNTAX)
    if argc == 3:
        return _pending_summary(*_group_or_nogroup(db, args[1], args[2]))
    i = 3
    min_idle = 0
    if args[3].lower() == b"idle":
        min_idle = parse_int(args[4])
        if argc < 8:
            raise ReplyError(errors.SYNTAX)
        i = 5
    count = max(parse_int(args[i + 2]), 0)
    start = _interval_start(args[i])
    end = _interval_end(args[i + 1])
    cname = args[i + 3] if i + 3 < argc else None
    _, group = _group_or_nogroup(db, args[1], args[2])
    if cname is not None:
        consumer = group.consumers.get(cname)
        if consumer is None:
            return []
        ids: list[StreamID] = consumer.pel
    else:
        ids = sorted(group.pel)
    now = db.now_ms
    out = []
    for entry_id in ids[bisect_left(ids, start):]:
        if not count or entry_id > end:
            break
        delivered, deliveries, owner = group.pel[entry_id]
        if min_idle and now - delivered < min_idle:
            continue
        count -= 1
        out.append([format_id(entry_id), owner, max(now - delivered, 0), deliveries])
    return out


def _pending_summary(stream: StreamValue, group: StreamGroup) -> list:
    if not group.pel:
        return [0, None, None, NULL_ARRAY]
    owners = [[name, b"%d" % len(c.pel)] for name, c in sorted(group.consumers.items())
              if c.pel]
    return [len(group.pel), format_id(min(group.pel)), format_id(max(group.pel)), owners]


# XCLAIM / XAUTOCLAIM ----------------------------------------------------------------------------
@dataclass
class ClaimArgs:
    """XCLAIM's IDs and options (``-1``: not given), as ``xclaimCommand`` parses them."""

    ids: list[StreamID]
    delivery_time: int = -1
    retry_count: int = -1
    force: bool = False
    justid: bool = False
    last_id: StreamID = MIN_ID


def _claim_option(args: list[bytes], j: int, parsed: ClaimArgs, now: int) -> int:
    """One XCLAIM option at ``args[j]``: the index of the next one."""
    opt = args[j].lower()
    more = len(args) - 1 - j
    if opt == b"force":
        parsed.force = True
    elif opt == b"justid":
        parsed.justid = True
    elif opt == b"idle" and more:
        j += 1
        parsed.delivery_time = now - parse_int(
            args[j], "ERR Invalid IDLE option argument for XCLAIM")
    elif opt == b"time" and more:
        j += 1
        parsed.delivery_time = parse_int(args[j], "ERR Invalid TIME option argument for XCLAIM")
    elif opt == b"retrycount" and more:
        j += 1
        parsed.retry_count = parse_int(
            args[j], "ERR Invalid RETRYCOUNT option argument for XCLAIM")
    elif opt == b"lastid" and more:
        j += 1
        parsed.last_id = parse_id(args[j], strict=True)[0]
    else:
        raise ReplyError(f"ERR Unrecognized XCLAIM option '{_text(args[j])}'")
    return j + 1


def parse_xclaim(args: list[bytes], now: int) -> ClaimArgs:
    """IDs as long as they parse, then options (an ID that does not parse is taken for one)."""
    parsed = ClaimArgs([])
    j = 5
    while j < len(args):
        try:
            parsed.ids.append(parse_id(args[j], strict=True)[0])
        except ReplyError:
            break
        j += 1
    while j < len(args):
        j = _claim_option(args, j, parsed, now)
    return parsed


def _claim(group: StreamGroup, consumer: StreamConsumer, cname: bytes, entry_id: StreamID,
           nack: list) -> None:
    """Give a pending entry to ``consumer`` (its count and time are the caller's to set)."""
    if nack[2] != cname:
        _unown(group, entry_id, nack[2])
        nack[2] = cname
        _own(consumer, entry_id)


@command("xclaim", -6, "write fast", keys=(1, 1, 1), acl="write stream fast", group="stream",
         tips="nondeterministic_output")
def xclaim_command(db: Keyspace, args: list[bytes]) -> object:
    key, gname, cname = args[1], args[2], args[3]
    stream, group = _group_or_nogroup(db, key, gname)
    min_idle = max(parse_int(args[4], "ERR Invalid min-idle-time argument for XCLAIM"), 0)
    now = db.now_ms
    parsed = parse_xclaim(args, now)
    propagate_last = False
    if parsed.last_id > group.last_id:
        group.last_id = parsed.last_id
        propagate_last = True
    delivery_time = parsed.delivery_time
    if delivery_time < 0 or delivery_time > now:
        delivery_time = now
    consumer: StreamConsumer | None = None
    out: list = []
    for entry_id in parsed.ids:
        nack = group.pel.get(entry_id)
        fields = stream.entries.get(entry_id)
        if fields is None:
            if nack is not None:  # pending but deleted from the stream: cleared, propagated
                _propagate_claim(db, key, gname, group, entry_id, nack)
                propagate_last = False
                _drop_nack(group, entry_id)
            continue
        if nack is None:
            if not parsed.force:
                continue
            nack = group.pel[entry_id] = [now, 1, None]
        if nack[2] is not None and min_idle and now - nack[0] < min_idle:
            continue
        if consumer is None:
            consumer = _claimer(db, key, group, cname)
        _claim(group, consumer, cname, entry_id, nack)
        nack[0] = delivery_time
        if parsed.retry_count >= 0:
            nack[1] = parsed.retry_count
        elif not parsed.justid:
            nack[1] += 1
        out.append(format_id(entry_id) if parsed.justid else [format_id(entry_id), list(fields)])
        _propagate_claim(db, key, gname, group, entry_id, nack)
        propagate_last = False
    if propagate_last:
        _propagate_group_id(db, key, gname, group)
    return out


#: XAUTOCLAIM's COUNT limit: LONG_MAX / max(sizeof(streamID), attempts factor).
XAUTOCLAIM_MAX_COUNT = LLONG_MAX // 16


def _xautoclaim_options(args: list[bytes]) -> tuple[int, bool]:
    count, justid = 100, False
    j = 6
    while j < len(args):
        opt = args[j].lower()
        if opt == b"count" and j + 1 < len(args):
            count = parse_int(args[j + 1], "ERR COUNT must be > 0")
            if not 1 <= count <= XAUTOCLAIM_MAX_COUNT:
                raise ReplyError("ERR COUNT must be > 0")
            j += 1
        elif opt == b"justid":
            justid = True
        else:
            raise ReplyError(errors.SYNTAX)
        j += 1
    return count, justid


@command("xautoclaim", -6, "write fast", keys=(1, 1, 1), acl="write stream fast",
         group="stream", tips="nondeterministic_output")
def xautoclaim_command(db: Keyspace, args: list[bytes]) -> object:
    """Claims idle pending entries from ``start``, at most COUNT (deleted entries found on the
    way count too, and are dropped from the PEL), trying at most 10 * COUNT of them: the
    next ID to start from (0-0 at the end), the claimed entries, the deleted IDs."""
    key, gname, cname = args[1], args[2], args[3]
    min_idle = max(parse_int(args[4], "ERR Invalid min-idle-time argument for XAUTOCLAIM"), 0)
    start = _interval_start(args[5])
    count, justid = _xautoclaim_options(args)
    stream, group = _group_or_nogroup(db, key, gname)
    now = db.now_ms
    pending = sorted(group.pel)
    index = bisect_left(pending, start)
    attempts = count * 10
    consumer: StreamConsumer | None = None
    claimed: list = []
    deleted: list[bytes] = []
    while attempts and count and index < len(pending):
        attempts -= 1
        entry_id = pending[index]
        index += 1
        nack = group.pel[entry_id]
        fields = stream.entries.get(entry_id)
        if fields is None:
            _propagate_claim(db, key, gname, group, entry_id, nack)
            _drop_nack(group, entry_id)
            deleted.append(format_id(entry_id))
            count -= 1
            continue
        if min_idle and now - nack[0] < min_idle:
            continue
        if consumer is None:
            consumer = _claimer(db, key, group, cname)
        _claim(group, consumer, cname, entry_id, nack)
        nack[0] = now
        if not justid:
            nack[1] += 1
        claimed.append(format_id(entry_id) if justid else [format_id(entry_id), list(fields)])
        count -= 1
        _propagate_claim(db, key, gname, group, entry_id, nack)
    cursor = format_id(pending[index]) if index < len(pending) else b"0-0"
    return [cursor, claimed, deleted]


# XINFO ------------------------------------------------------------------------------------------
container("xinfo", acl="slow", group="stream")


def _info_stream_of(db: Keyspace, key: bytes) -> StreamValue:
    stream = stream_of(db, key)
    if stream is None:
        raise ReplyError(errors.NO_SUCH_KEY)
    return stream


def _entry_or_none(stream: StreamValue, rev: bool) -> list | None:
    found = stream.range(MIN_ID, MAX_ID, 1, rev)
    return found[0] if found else None


def _stream_head(stream: StreamValue) -> dict:
    """The fields XINFO STREAM starts with, with and without FULL."""
    return {
        b"length": len(stream),
        b"radix-tree-keys": len(stream.nodes),
        b"radix-tree-nodes": stream_rax_nodes(stream),
        b"last-generated-id": format_id(stream.last_id),
        b"max-deleted-entry-id": format_id(stream.max_deleted),
        b"entries-added": stream.added,
        b"recorded-first-entry-id": format_id(stream.ids[0] if stream.ids else MIN_ID),
    }


def _full_count(args: list[bytes]) -> int | None:
    """XINFO STREAM's options: None without FULL, else FULL's COUNT (10 by default; 0: all)."""
    options = args[3:]
    if not options:
        return None
    if len(options) not in (1, 3) or options[0].lower() != b"full":
        raise ReplyError(errors.subcommand_syntax(args))
    if len(options) == 1:
        return 10
    if options[1].lower() != b"count":
        raise ReplyError(errors.subcommand_syntax(args))
    count = parse_int(options[2])
    return 10 if count < 0 else count


@command("stream", -3, "readonly", keys=(2, 2, 1), acl="read stream slow", parent="xinfo",
         group="stream")
def xinfo_stream_command(db: Keyspace, args: list[bytes]) -> object:
    stream = _info_stream_of(db, args[2])
    count = _full_count(args)
    info = _stream_head(stream)
    if count is None:
        info[b"groups"] = len(stream.groups)
        info[b"first-entry"] = _entry_or_none(stream, rev=False)
        info[b"last-entry"] = _entry_or_none(stream, rev=True)
        return info
    info[b"entries"] = stream.range(MIN_ID, MAX_ID, count, rev=False)
    info[b"groups"] = [_full_group(stream, name, stream.groups[name], count)
                       for name in sorted(stream.groups)]
    return info


def _limited(ids: list[StreamID], count: int) -> list[StreamID]:
    return ids[:count] if count else ids


def _full_group(stream: StreamValue, name: bytes, group: StreamGroup, count: int) -> dict:
    pel = group.pel
    return {
        b"name": name,
        b"last-delivered-id": format_id(group.last_id),
        b"entries-read": _entries_read(group),
        b"lag": group_lag(stream, group),
        b"pel-count": len(pel),
        b"pending": [[format_id(i), pel[i][2], pel[i][0], pel[i][1]]
                     for i in _limited(sorted(pel), count)],
        b"consumers": [{
            b"name": cname,
            b"seen-time": consumer.seen_time,
            b"pel-count": len(consumer.pel),
            b"pending": [[format_id(i), pel[i][0], pel[i][1]]
                         for i in _limited(consumer.pel, count)],
        } for cname, consumer in sorted(group.consumers.items())],
    }


def _entries_read(group: StreamGroup) -> int | None:
    return None if group.entries_read == INVALID_ENTRIES_READ else group.entries_read


@command("groups", 3, "readonly", keys=(2, 2, 1), acl="read stream slow", parent="xinfo",
         group="stream")
def xinfo_groups_command(db: Keyspace, args: list[bytes]) -> object:
    stream = _info_stream_of(db, args[2])
    return [{
        b"name": name,
        b"consumers": len(group.consumers),
        b"pending": len(group.pel),
        b"last-delivered-id": format_id(group.last_id),
        b"entries-read": _entries_read(group),
        b"lag": group_lag(stream, group),
    } for name, group in sorted(stream.groups.items())]


@command("consumers", 4, "readonly", keys=(2, 2, 1), acl="read stream slow", parent="xinfo",
         group="stream", tips="nondeterministic_output")
def xinfo_consumers_command(db: Keyspace, args: list[bytes]) -> object:
    stream = _info_stream_of(db, args[2])
    group = stream.groups.get(args[3])
    if group is None:
        raise nogroup_for_key(args[3], args[2])
    now = db.now_ms
    return [{b"name": name, b"pending": len(consumer.pel),
             b"idle": max(now - consumer.seen_time, 0)}
            for name, consumer in sorted(group.consumers.items())]


XINFO_HELP = [
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
]

command("help", 2, "loading stale", acl="stream slow", parent="xinfo", group="stream",
        fanout=Fanout.ROUTER)(None)


# XSETID -----------------------------------------------------------------------------------------
def _xsetid_options(args: list[bytes], new_last: StreamID) -> tuple[int, StreamID]:
    entries_added = -1
    max_deleted = MIN_ID
    i = 3
    while i < len(args):
        opt = args[i].lower()
        more = len(args) - 1 - i
        if opt == b"entriesadded" and more:
            entries_added = parse_int(args[i + 1])
            if entries_added < 0:
                raise ReplyError("ERR entries_added must be positive")
        elif opt == b"maxdeletedid" and more:
            max_deleted = parse_id(args[i + 1], strict=True)[0]
            if new_last < max_deleted:
                raise ReplyError("ERR The ID specified in XSETID is smaller than the provided "
                                 "max_deleted_entry_id")
        else:
            raise ReplyError(errors.SYNTAX)
        i += 2
    return entries_added, max_deleted


@command("xsetid", -3, "write denyoom fast", keys=(1, 1, 1), acl="write stream fast",
         group="stream")
def xsetid_command(db: Keyspace, args: list[bytes]) -> object:
    new_last = parse_id(args[2], strict=True)[0]
    entries_added, max_deleted = _xsetid_options(args, new_last)
    stream = stream_of(db, args[1])
    if stream is None:
        raise ReplyError(errors.NO_SUCH_KEY)
    if stream.ids:
        if new_last < stream.ids[-1]:
            raise ReplyError("ERR The ID specified in XSETID is smaller than the target stream "
                             "top item")
        if entries_added != -1 and len(stream.ids) > entries_added:
            raise ReplyError("ERR The entries_added specified in XSETID is smaller than the "
                             "target stream length")
    stream.last_id = new_last
    if entries_added != -1:
        stream.added = entries_added
    if max_deleted != MIN_ID:
        stream.max_deleted = max_deleted
    db.changed_quietly(args[1])
    return OK


def xread_subset(args: list[bytes], keys: list[bytes]) -> list[bytes]:
    """The read (its options as given) over ``keys`` only, a subset of its keys in their
    order: one worker's share of a read over several, or a waiter's keys that still hold a
    stream."""
    parsed = parse_xread(args)
    first, n = parsed.streams, parsed.n
    wanted = set(keys)
    chosen = [j for j in range(n) if args[first + j] in wanted]
    return [*args[:first], *[args[first + j] for j in chosen],
            *[args[first + n + j] for j in chosen]]
