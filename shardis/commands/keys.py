"""Generic key commands: worker-side operations over one shard's keyspace.

Commands that span workers (DEL over many keys, KEYS, SCAN, RENAME across workers...) are
spread by the router according to their fan-out policy; what runs here is always one shard's
share.  ``__dump``/``__restore`` are internal commands the router uses to move a value between
workers (cross-shard RENAME and COPY); clients cannot call them.
"""

from __future__ import annotations

import marshal

from shardis import errors
from shardis.commands import Fanout, command, container, help_reply
from shardis.commands.strings import is_int_encodable, parse_int
from shardis.errors import ReplyError
from shardis.glob import compile_glob
from shardis.resp import OK, Status
from shardis.worker.keyspace import EMBSTR_INT, UNSHARED_INT, Keyspace
from shardis.worker.types import BY_NAME, value_type

# DEL / EXISTS / TOUCH ------------------------------------------------------------------------


@command("del", -2, "write", keys=(1, -1, 1), fanout=Fanout.SPLIT_SUM,
         acl="keyspace write slow", tips="request_policy:multi_shard response_policy:agg_sum")
def del_command(db: Keyspace, args: list[bytes]) -> object:
    return sum(db.delete(key) for key in args[1:])


@command("unlink", -2, "write fast", keys=(1, -1, 1), fanout=Fanout.SPLIT_SUM,
         acl="keyspace write fast", tips="request_policy:multi_shard response_policy:agg_sum")
def unlink_command(db: Keyspace, args: list[bytes]) -> object:
    return del_command(db, args)


@command("exists", -2, "readonly fast", keys=(1, -1, 1), fanout=Fanout.SPLIT_SUM,
         acl="keyspace read fast", tips="request_policy:multi_shard response_policy:agg_sum")
def exists_command(db: Keyspace, args: list[bytes]) -> object:
    return sum(db.stored(key) is not None for key in args[1:])


@command("touch", -2, "readonly fast", keys=(1, -1, 1), fanout=Fanout.SPLIT_SUM,
         acl="keyspace read fast", tips="request_policy:multi_shard response_policy:agg_sum")
def touch_command(db: Keyspace, args: list[bytes]) -> object:
    return sum(db.stored(key, access=True) is not None for key in args[1:])


# Whole keyspace ------------------------------------------------------------------------------


@command("keys", 2, "readonly", fanout=Fanout.ALL_CONCAT, acl="keyspace read slow dangerous",
         tips="request_policy:all_shards nondeterministic_output_order")
def keys_command(db: Keyspace, args: list[bytes]) -> object:
    keys = db.live_keys()
    if args[1] == b"*":
        return keys
    match = compile_glob(args[1])
    return [key for key in keys if match(key)]


@command("dbsize", 1, "readonly fast", fanout=Fanout.ALL_SUM, acl="keyspace read fast",
         group="server",
         tips="request_policy:all_shards response_policy:agg_sum")
def dbsize_command(db: Keyspace, args: list[bytes]) -> object:
    # Redis 7.0's DBSIZE counts an expired key until its active cycle reclaims it; here no
    # command ever sees an expired key, so the keys that are due go first: O(keys due), which
    # the active cycle keeps near zero (see shardis.worker.keyspace).
    if db.expires:
        db.expire_due()
    return len(db.data)


def _flush_generic(db: Keyspace, args: list[bytes]) -> object:
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        raise ReplyError(errors.SYNTAX)
    for key in list(db.data):
        db.touched.append(key)
    db.changed_server_state()  # a flush is a write even of nothing (AOF, client caching)
    db.clear()
    return OK


@command("flushdb", -1, "write", fanout=Fanout.ALL_OK, acl="keyspace write slow dangerous",
         group="server",
         tips="request_policy:all_shards response_policy:all_succeeded")
def flushdb_command(db: Keyspace, args: list[bytes]) -> object:
    return _flush_generic(db, args)


@command("flushall", -1, "write", fanout=Fanout.ALL_OK, acl="keyspace write slow dangerous",
         group="server",
         tips="request_policy:all_shards response_policy:all_succeeded")
def flushall_command(db: Keyspace, args: list[bytes]) -> object:
    """FLUSHDB of the current database (its effects as any write's: the AOF logs FLUSHALL
    once), and of every other one: their watched keys count as changed."""
    reply = _flush_generic(db, args)
    shard = db.shard  # type: ignore[attr-defined]
    for other in shard.keyspaces():
        if other is not db and other.data:
            for key, entry in other.watched.items():
                if key in other.data:
                    entry[1] += 1
            shard.stats.dirty += len(other.data)
            other.clear()
    return reply


@command("randomkey", 1, "readonly", fanout=Fanout.COORDINATED, acl="keyspace read slow",
         tips="request_policy:all_shards nondeterministic_output")
def randomkey_command(db: Keyspace, args: list[bytes]) -> object:
    return db.random_key()


@command("__randomkey", 1, "readonly internal", fanout=Fanout.SINGLE)
def sized_randomkey_command(db: Keyspace, args: list[bytes]) -> object:
    """[live key count, a random key]: the router picks a shard weighted by its size."""
    key = db.random_key()
    return [len(db.data), key]


# SCAN ----------------------------------------------------------------------------------------
# A shard's SCAN walks a snapshot of its key list taken when the iteration reaches the shard, so
# every key present throughout the iteration is returned; keys created meanwhile may or may not
# be.  Snapshots are kept per id in a small LRU (each costs 8 bytes per key of the shard); a
# cursor whose snapshot was evicted restarts its shard, returning keys again rather than missing
# any, which is what Redis guarantees too.
_MAX_SNAPSHOTS = 16


def parse_cursor(raw: bytes) -> int:
    """Redis parses cursors with ``strtoul``: an optional sign, digits (none means 0), and a
    negative number wraps around 2**64; nothing else may follow."""
    digits = raw[1:] if raw[:1] in (b"+", b"-") else raw
    if digits and not digits.isdigit():
        raise ReplyError("ERR invalid cursor")
    value = int(digits or b"0")
    if value >= 1 << 64:
        raise ReplyError("ERR invalid cursor")
    return (-value) % (1 << 64) if raw[:1] == b"-" else value


def parse_scan_options(args: list[bytes], first: int) -> tuple[int, bytes | None, bytes | None]:
    """(count, match pattern, type name) from SCAN's options, with Redis's errors."""
    count, pattern, type_name = 10, None, None
    j = first
    while j < len(args):
        opt = args[j].upper()
        if j + 1 >= len(args):
            raise ReplyError(errors.SYNTAX)
        if opt == b"COUNT":
            count = parse_int(args[j + 1])
            if count < 1:
                raise ReplyError(errors.SYNTAX)
        elif opt == b"MATCH":
            pattern = args[j + 1]
        elif opt == b"TYPE":
            type_name = args[j + 1]
        else:
            raise ReplyError(errors.SYNTAX)
        j += 2
    return count, pattern, type_name


@command("scan", -2, "readonly", fanout=Fanout.COORDINATED, acl="keyspace read slow",
         tips="nondeterministic_output request_policy:special")
def scan_command(db: Keyspace, args: list[bytes]) -> object:
    raise ReplyError("ERR SCAN is coordinated by the router")


@command("__scan", -3, "readonly internal", fanout=Fanout.SINGLE)
def shard_scan_command(db: Keyspace, args: list[bytes]) -> object:
    """``__scan snapshot offset [options]`` -> [snapshot, next offset (0 = done), keys]."""
    snapshot_id = int(args[1])
    offset = int(args[2])
    count, pattern, type_name = parse_scan_options(args, 3)
    snapshots = db.scan_snapshots
    keys = snapshots.pop(snapshot_id, None) if snapshot_id else None
    if keys is None:
        if snapshot_id:
            # The snapshot was evicted: start this worker over.  SCAN may return a key twice,
            # never miss one that is present throughout.
            offset = 0
        db.scan_counter += 1
        snapshot_id = db.scan_counter
        keys = list(db.data)
    end = offset + count
    found = []
    match = compile_glob(pattern) if pattern is not None and pattern != b"*" else None
    for key in keys[offset:end]:
        value = db.peek(key)  # expired keys are skipped (and reclaimed); not an access
        if value is None:
            continue
        if match is not None and not match(key):
            continue
        if type_name is not None and type_name.lower() != type_of(value):
            continue
        found.append(key)
    if end >= len(keys):
        return [snapshot_id, 0, found]
    snapshots[snapshot_id] = keys
    while len(snapshots) > _MAX_SNAPSHOTS:
        snapshots.pop(next(iter(snapshots)))
    return [snapshot_id, end, found]


# One key -------------------------------------------------------------------------------------
def type_of(value: object) -> bytes:
    """Redis's type name for a stored value (``string``, ``list``, ``hash``...)."""
    return value_type(value).name


@command("type", 2, "readonly fast", keys=(1, 1, 1), acl="keyspace read fast")
def type_command(db: Keyspace, args: list[bytes]) -> object:
    value = db.stored(args[1])
    return Status(b"none" if value is None else type_of(value))


def rename_generic(db: Keyspace, args: list[bytes], nx: bool) -> object:
    src, dst = args[1], args[2]
    value = db.get(src)
    if value is None:
        raise ReplyError(errors.NO_SUCH_KEY)
    if src == dst:
        return 0 if nx else OK
    deadline = db.deadline(src)
    hint = db.string_hints.get(src)
    if db.get(dst) is not None:
        if nx:
            return 0
        db.delete(dst)
    db.delete(src)
    db.set(dst, value)
    if deadline is not None:
        db.set_deadline(dst, deadline)
    if hint is not None:
        db.string_hints[dst] = hint
    return 1 if nx else OK


@command("rename", 3, "write", keys=(1, 2, 1), fanout=Fanout.COORDINATED,
         acl="keyspace write slow")
def rename_command(db: Keyspace, args: list[bytes]) -> object:
    return rename_generic(db, args, nx=False)


@command("renamenx", 3, "write fast", keys=(1, 2, 1), fanout=Fanout.COORDINATED,
         acl="keyspace write fast")
def renamenx_command(db: Keyspace, args: list[bytes]) -> object:
    return rename_generic(db, args, nx=True)


def parse_copy_options(args: list[bytes], current: int, databases: int) -> tuple[bool, int]:
    """COPY's options, checked in Redis's order: (REPLACE, the destination's database)."""
    replace = False
    target = current
    j = 3
    while j < len(args):
        opt = args[j].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and j + 1 < len(args):
            target = parse_int(args[j + 1])
            if not 0 <= target < databases:
                raise ReplyError(errors.DB_OUT_OF_RANGE)
            j += 1
        else:
            raise ReplyError(errors.SYNTAX)
        j += 1
    if args[1] == args[2] and target == current:
        raise ReplyError(errors.SAME_OBJECT)
    return replace, target


@command("copy", -3, "write denyoom", keys=(1, 2, 1), fanout=Fanout.COORDINATED,
         acl="keyspace write slow")
def copy_command(db: Keyspace, args: list[bytes]) -> object:
    shard = db.shard  # type: ignore[attr-defined]
    replace, target_db = parse_copy_options(args, db.index, shard.databases)
    target = shard.keyspace(target_db)
    value = db.get(args[1])
    if value is None:
        return 0
    if target.get(args[2]) is not None and not replace:
        return 0
    payload = dump_value(db, args[1])
    copied = restore_value(target, args[2], payload, replace=True,  # type: ignore[arg-type]
                           copy=True)
    if target is not db:
        db.changed_server_state()  # nothing changed here, but the command is a write
        shard.changed_elsewhere(target)
    return copied


@command("move", 3, "write fast", keys=(1, 1, 1), acl="keyspace write fast")
def move_command(db: Keyspace, args: list[bytes]) -> object:
    """MOVE key db: to another database of the same worker (a key's slot does not depend on
    its database)."""
    shard = db.shard  # type: ignore[attr-defined]
    number = parse_int32(args[2])
    if not 0 <= number < shard.databases:
        raise ReplyError(errors.DB_OUT_OF_RANGE)
    if number == db.index:
        raise ReplyError(errors.SAME_OBJECT)
    key = args[1]
    target = shard.keyspace(number)
    if db.get(key) is None or target.get(key) is not None:
        return 0
    restore_value(target, key, dump_value(db, key), replace=True,  # type: ignore[arg-type]
                  copy=False)
    db.delete(key)
    db.events.append((b"move_from", key))
    target.events.append((b"move_to", key))
    shard.changed_elsewhere(target)
    return 1


@command("swapdb", 3, "write fast", fanout=Fanout.COORDINATED, acl="keyspace write fast dangerous",
         group="server")
def swapdb_command(db: Keyspace, args: list[bytes]) -> object:
    """SWAPDB on one worker (the router gates every worker and sends it to each)."""
    shard = db.shard  # type: ignore[attr-defined]
    first, second = parse_swapdb(args, shard.databases)
    shard.swap(first, second)
    db.changed_server_state()  # a write: the AOF logs it, the dirty counter counts it
    return OK


def parse_int32(raw: bytes, message: str | None = None) -> int:
    """Redis's ``getIntFromObjectOrReply``: a 32-bit integer; ``message`` replaces both of
    its errors (not an integer, out of range)."""
    number = parse_int(raw, message or errors.NOT_INTEGER)
    low, high = -(1 << 31), (1 << 31) - 1
    if not low <= number <= high:
        raise ReplyError(message or errors.out_of_range(low, high))
    return number


def parse_swapdb(args: list[bytes], databases: int) -> tuple[int, int]:
    first = parse_int32(args[1], "ERR invalid first DB index")
    second = parse_int32(args[2], "ERR invalid second DB index")
    if not (0 <= first < databases and 0 <= second < databases):
        raise ReplyError(errors.DB_OUT_OF_RANGE)
    return first, second


def dump_value(db: Keyspace, key: bytes) -> bytes | None:
    """A live key's value and deadline, serialised for another worker (None if missing).

    The payload is ``(type name, variant, plain data, deadline, string hint)``; the variant
    keeps a string's encoding (``raw`` for a bytearray) across the move.
    """
    value = db.get(key)
    if value is None:
        return None
    kind = value_type(value)
    variant = "raw" if type(value) is bytearray else ""
    plain = kind.dump(value)
    return marshal.dumps((kind.name, variant, plain, db.deadline(key), db.string_hints.get(key)), 4)


def restore_value(db: Keyspace, key: bytes, payload: bytes, replace: bool, copy: bool) -> int:
    """Store a value made by :func:`dump_value`; 0 if the key exists and not ``replace``.

    ``copy``: the value is a new object (COPY), not the same one moved (RENAME).
    """
    if not replace and db.get(key) is not None:
        return 0
    name, variant, plain, deadline, hint = marshal.loads(payload)
    value = BY_NAME[name].load(plain)
    if variant == "raw":
        value = bytearray(value)  # type: ignore[arg-type]
    db.delete(key)
    db.set(key, value)
    if deadline is not None:
        db.set_deadline(key, deadline)
    if copy and hint is None and name == b"string":
        hint = UNSHARED_INT  # a copy is a new object: Redis does not take it from its pool
    if hint is not None:
        db.string_hints[key] = hint
    return 1


@command("__dump", 2, "readonly internal", keys=(1, 1, 1))
def internal_dump_command(db: Keyspace, args: list[bytes]) -> object:
    return dump_value(db, args[1])


@command("__restore", 5, "write internal", keys=(1, 1, 1))
def internal_restore_command(db: Keyspace, args: list[bytes]) -> object:
    """``__restore key payload replace(0|1) copy|move``."""
    return restore_value(db, args[1], args[2], replace=args[3] == b"1", copy=args[4] == b"copy")


# OBJECT and MEMORY ---------------------------------------------------------------------------
container("object", acl="slow")
#: Redis shares the integers 0..9999 and reports them with this refcount.
SHARED_REFCOUNT = 2147483647


def encoding_of(db: Keyspace, key: bytes, value: object) -> bytes:
    """Redis 7.0's encoding name for what we store."""
    if type(value) is bytearray:
        return b"raw"
    if type(value) is bytes:
        if is_int_encodable(value) and db.string_hints.get(key) != EMBSTR_INT:
            return b"int"
        return b"embstr" if len(value) <= 44 else b"raw"
    return value_type(value).encoding(value)


def _object_value_or_nil(db: Keyspace, key: bytes) -> object | None:
    return db.peek(key)


@command("encoding", 3, "readonly", keys=(2, 2, 1), acl="keyspace read slow", parent="object",
         tips="nondeterministic_output")
def object_encoding_command(db: Keyspace, args: list[bytes]) -> object:
    value = _object_value_or_nil(db, args[2])
    return None if value is None else encoding_of(db, args[2], value)


@command("refcount", 3, "readonly", keys=(2, 2, 1), acl="keyspace read slow", parent="object",
         tips="nondeterministic_output")
def object_refcount_command(db: Keyspace, args: list[bytes]) -> object:
    value = _object_value_or_nil(db, args[2])
    if value is None:
        return None
    if (
        encoding_of(db, args[2], value) == b"int"
        and 0 <= int(value) < 10000  # type: ignore[call-overload]
        and db.string_hints.get(args[2]) != UNSHARED_INT
    ):
        return SHARED_REFCOUNT
    return 1


@command("idletime", 3, "readonly", keys=(2, 2, 1), acl="keyspace read slow", parent="object",
         tips="nondeterministic_output")
def object_idletime_command(db: Keyspace, args: list[bytes]) -> object:
    if _object_value_or_nil(db, args[2]) is None:
        return None
    if db.lfu:
        raise ReplyError(errors.LRU_NOT_SELECTED)
    return db.idle_seconds(args[2])


@command("freq", 3, "readonly", keys=(2, 2, 1), acl="keyspace read slow", parent="object",
         tips="nondeterministic_output")
def object_freq_command(db: Keyspace, args: list[bytes]) -> object:
    if _object_value_or_nil(db, args[2]) is None:
        return None
    if not db.lfu:
        raise ReplyError(errors.LFU_NOT_SELECTED)
    return db.lfu_counter(args[2])


OBJECT_HELP = [
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
]


@command("help", 2, "loading stale", acl="keyspace slow", parent="object",
         fanout=Fanout.ROUTER)
def object_help_command(db: Keyspace, args: list[bytes]) -> object:
    return help_reply(OBJECT_HELP)
