"""Keyspace notifications (``notify-keyspace-events``): classes, and what each command emits.

Workers emit them from the one place where effects are applied (``Shard.apply_effects``): for
each key the command changed, an event named after the command (Redis's names: INCR emits
``incrby``, LMOVE ``lpop``/``rpush``...), in the class of the command's family; ``expired``
for keys reclaimed by expiry; ``del`` when a command emptied a collection.  The messages go to
``__keyspace@<db>__:<key>`` and ``__keyevent@<db>__:<event>`` through the pub/sub registry of the
worker that owns the key (keyspace subscriptions are registered on every worker).
"""

from __future__ import annotations

KEYSPACE, KEYEVENT = 1 << 0, 1 << 1
GENERIC, STRING, LIST, SET, HASH, ZSET = 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
EXPIRED, EVICTED, STREAM, KEY_MISS, MODULE, NEW = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 13, 1 << 14
ALL = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE

_CHARS = {
    "A": ALL, "g": GENERIC, "$": STRING, "l": LIST, "s": SET, "h": HASH, "z": ZSET, "x": EXPIRED,
    "e": EVICTED, "K": KEYSPACE, "E": KEYEVENT, "t": STREAM, "m": KEY_MISS, "d": MODULE,
    "n": NEW,
}
INVALID_CLASSES = (
    "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid "
    "event class character. Use 'Ag$lshzxeKEtmdn'."
)


def parse_flags(text: bytes) -> int | None:
    """Redis's ``keyspaceEventsStringToFlags``; None for an invalid character."""
    flags = 0
    for char in text.decode("latin-1"):
        flag = _CHARS.get(char)
        if flag is None:
            return None
        flags |= flag
    return flags


def format_flags(flags: int) -> bytes:
    """Redis's ``keyspaceEventsFlagsToString``: the canonical spelling CONFIG GET answers."""
    out = ""
    if flags & ALL == ALL:
        out += "A"
    else:
        for char in "g$lshzxetdn":
            if flags & _CHARS[char]:
                out += char
    for char in "KEm":
        if flags & _CHARS[char]:
            out += char
    return out.encode()


_GROUP_CLASSES = {"string": STRING, "list": LIST, "set": SET, "hash": HASH,
                  "sorted-set": ZSET, "bitmap": STRING, "hyperloglog": STRING,
                  "geo": ZSET, "stream": STREAM, "generic": GENERIC}
#: Commands whose event is not their own name (Redis's notifyKeyspaceEvent calls).
_EVENT_NAMES = {
    b"incr": b"incrby", b"decr": b"incrby", b"decrby": b"incrby", b"setnx": b"set",
    b"setex": b"set", b"psetex": b"set", b"getset": b"set", b"mset": b"set", b"msetnx": b"set",
    b"unlink": b"del", b"getdel": b"del", b"pexpire": b"expire", b"expireat": b"expire",
    b"pexpireat": b"expire", b"getex": b"expire", b"zincrby": b"zincr", b"hmset": b"hset",
    b"hsetnx": b"hset", b"zremrangebyscore": b"zrembyscore", b"zremrangebyrank": b"zrembyrank",
    b"zremrangebylex": b"zrembylex", b"copy": b"copy_to", b"restore": b"restore",
    b"restore-asking": b"restore",
    b"bitop": b"set", b"__restore": b"set", b"__sstore": b"sinterstore",
    b"pfmerge": b"pfadd", b"__pfstore": b"pfadd",
    b"sort": b"sortstore", b"__sortstore": b"sortstore",
    b"geoadd": b"zadd", b"georadius": b"georadiusstore", b"georadiusbymember": b"georadiusstore",
    b"__georadiusstore": b"georadiusstore", b"__geosearchstore": b"geosearchstore",
}
#: Commands that emit no event named after them, only those their op reports in
#: ``Keyspace.events``: none for PFCOUNT writing its cached cardinality or PFDEBUG turning an
#: HLL dense (Redis signals the key, notifies nothing); ``xgroup-createconsumer`` for
#: XREADGROUP, XCLAIM, XAUTOCLAIM; ``move_from`` and ``move_to`` (in its two databases) for MOVE.
_SILENT = frozenset((b"pfcount", b"pfdebug", b"xreadgroup", b"xack", b"xclaim", b"xautoclaim",
                     b"move"))
#: Events of another class than their command's group (SORT is generic; sortstore is a list
#: event).
_EVENT_CLASSES = {b"sortstore": LIST}
#: Events Redis does not emit when the command deleted the key, only ``del``: commands that
#: store a result at a destination (deleted when the result is empty: sort.c, geo.c), and
#: RESTORE ... REPLACE with a deadline already past.
_NOT_ON_DELETE = {b"sortstore", b"georadiusstore", b"geosearchstore", b"restore"}


def event_for(command: bytes, group: str) -> tuple[bytes, int]:
    """(event name, class) that ``command`` emits for a key it changed."""
    name = command.lower()
    event = _EVENT_NAMES.get(name, name)
    return event, _EVENT_CLASSES.get(event) or _GROUP_CLASSES.get(group, GENERIC)


def channel_messages(flags: int, event: bytes, cls: int, key: bytes,
                     db: int = 0) -> list[tuple[bytes, bytes]]:
    """The (channel, message) pairs one event in database ``db`` produces under ``flags``."""
    if not flags & cls:
        return []
    out = []
    if flags & KEYSPACE:
        out.append((b"__keyspace@%d__:%b" % (db, key), event))
    if flags & KEYEVENT:
        out.append((b"__keyevent@%d__:%b" % (db, event), key))
    return out


def is_keyspace_channel(name: bytes) -> bool:
    return name.startswith((b"__keyspace@", b"__keyevent@"))


def command_events(args: list[bytes], touched: list[bytes], expired: set[bytes],
                   deadlines: set[bytes], db: object) -> list[tuple[bytes, int, bytes]]:
    """(event, class, key) for each key a command changed, in the order it changed them."""
    from shardis.commands import COMMANDS

    name = args[0].lower()
    spec = COMMANDS.get(name)
    event, cls = event_for(name, spec.group if spec else "generic")
    if name in _SILENT:
        return [(op_event, cls, key) for op_event, key in db.events]  # type: ignore[attr-defined]
    if name == b"xgroup" and len(args) > 1:
        event = b"xgroup-" + args[1].lower()  # xgroup-create, xgroup-setid...
    events: list[tuple[bytes, int, bytes]] = []
    for key in dict.fromkeys(k for k in touched if k not in expired and type(k) is not object):
        if name in (b"rename", b"renamenx"):
            events.append((b"rename_from" if key == args[1] else b"rename_to", GENERIC, key))
            continue
        if event in _NOT_ON_DELETE and db.peek(key) is None:  # type: ignore[attr-defined]
            events.append((b"del", GENERIC, key))
            continue
        if event != b"expire" or key not in deadlines or db.peek(key) is not None:  # type: ignore[attr-defined]
            events.append((event, cls, key))
        if key in deadlines and event not in (b"expire", b"restore"):
            events.append((b"expire", GENERIC, key))  # SET ... EX, SETEX, GETEX
        if db.peek(key) is None and event not in (b"del", b"expire"):  # type: ignore[attr-defined]
            events.append((b"del", GENERIC, key))  # the command emptied a collection
    return events
