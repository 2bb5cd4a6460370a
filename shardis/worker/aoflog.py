"""A worker's append-only file: what each write is logged as, loading at startup.

:class:`AofLog` is driven from two places only: :meth:`Shard.apply_effects` (``record``: the
effects of the command just run) and the worker's loop (``flush`` once per batch before its
replies leave, ``tick`` for ``everysec``, ``close`` on stop).  Files are Redis 7's multi-part
layout (``shardis.persist.aof``) in ``DIR/worker-<index>/<appenddirname>/``.

Writes are logged by their *effect* wherever replaying the arguments would not give the same
dataset:

* relative expiries become absolute (``aof_commands``: PEXPIREAT, ``SET ... PXAT``);
* keys deleted because their TTL ran out (lazily or by active expiry) are logged as ``DEL``;
* a blocking pop that completed (at once, or served later to a waiting client, or through
  ``__block``/``__tryblock``) is logged as the non-blocking command it amounted to:
  BLPOP/BRPOP -> LPOP/RPOP key, BLMOVE -> LMOVE, BRPOPLPUSH -> RPOPLPUSH, BLMPOP -> LPOP/RPOP
  key count, BZPOPMIN/BZPOPMAX/BZMPOP -> ZREM key member...;
* SPOP -> SREM key of the members it removed;
* XADD with an auto-generated id (``*`` or ``ms-*``) -> XADD with the id it got;
* each router batch that changed something is preceded by an annotation
  ``#SHD:<router id>:<seq>:<bytes>`` (skipped by Redis and ``redis-check-aof``): a restarted
  worker knows the last batch it holds of each router, and the router resends the rest;
* a script's writes are logged one by one as they run (``Shard.run_inside``), and a script's
  or a transaction's writes are wrapped in MULTI/EXEC, so a torn tail drops all of them (a
  transaction's share that spans several batches is one group per batch: what a reply
  acknowledged is never held back by a later EXEC);
* the router's internal writes (``__restore``, ``__sstore``, ``__zstore``, ``__bitstore``) are
  logged as they are: their arguments carry absolute values and deadlines.

Not covered yet (replay is close but not exact):

* XREADGROUP/XCLAIM/XAUTOCLAIM are logged as received: the pending entries' delivery times and
  counts are those of the replay, not of the original run (Redis logs XCLAIM ... TIME);
* MULTI/EXEC groups are per worker: a transaction over keys of several workers is atomic in
  each worker's file, not across them;
* no AOF rewrite yet (BGREWRITEAOF): the incr file grows without bound;
* ``aof-load-truncated`` is always on (a torn tail of the last file is cut with a warning);
* CONFIG SET of the three directives is refused while running (restart to change them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from shardis.persist.aof import (
    ANNOTATION,
    AofDir,
    AofWriter,
    aof_commands,
    batch_annotation,
    encode_command,
    parse_batch_annotation,
)
from shardis.resp import Status

log = logging.getLogger("shardis.worker")

#: Loading logs its progress every this many commands.
PROGRESS_EVERY = 100_000
#: Commands replayed per ``execute_batch`` while loading.
LOAD_CHUNK = 1024
#: Routers whose last batch the AOF remembers (each router process has an id of its own).
MAX_ORIGINS = 64

#: Internal commands that change no data (connections, ACLs, blocking bookkeeping).
NOT_DATA = frozenset((b"__sub", b"__notify", b"__watch", b"__unwatch", b"__tx_begin",
                      b"__tx_end", b"__unblock", b"__acl_sync", b"__acl_set"))
_BLOCKED = b"__BLOCKED"


def _members(items: object) -> list[bytes]:
    return [item[0] if isinstance(item, (list, tuple)) else item  # type: ignore[misc]
            for item in items]  # type: ignore[attr-defined]


def _blocking_effect(name: bytes, args: Sequence[bytes], reply: object) -> list[list[bytes]]:
    """What a completed blocking command did, as a deterministic command."""
    if name in (b"BLPOP", b"BRPOP"):
        return [[b"LPOP" if name == b"BLPOP" else b"RPOP", reply[0]]]  # type: ignore[index]
    if name == b"BLMOVE":
        return [[b"LMOVE", *args[1:5]]]
    if name == b"BRPOPLPUSH":
        return [[b"RPOPLPUSH", args[1], args[2]]]
    if name == b"BLMPOP":
        numkeys = int(args[2])
        where = bytes(args[3 + numkeys]).upper()
        key, elements = reply  # type: ignore[misc]
        return [[b"LPOP" if where == b"LEFT" else b"RPOP", key, b"%d" % len(elements)]]
    if name in (b"BZPOPMIN", b"BZPOPMAX"):
        return [[b"ZREM", reply[0], reply[1]]]  # type: ignore[index]
    if name == b"BZMPOP":
        key, items = reply  # type: ignore[misc]
        return [[b"ZREM", key, *_members(items)]]
    return [list(args)]  # XREAD / XREADGROUP: see the module doc


BLOCKING = frozenset((b"BLPOP", b"BRPOP", b"BLMOVE", b"BRPOPLPUSH", b"BLMPOP", b"BZPOPMIN",
                      b"BZPOPMAX", b"BZMPOP", b"XREAD", b"XREADGROUP"))


def effect_commands(args: Sequence[bytes], reply: object, now_ms: int) -> list[list[bytes]]:
    """What to log for ``args``, which changed the dataset and answered ``reply``."""
    name = bytes(args[0]).upper()
    if name in (b"__BLOCK", b"__TRYBLOCK"):
        if reply is None or (type(reply) is Status and reply == _BLOCKED):
            return []  # parked: it changed nothing yet
        inner = args[4:] if name == b"__BLOCK" else args[1:]
        return effect_commands(inner, reply, now_ms)
    if name in BLOCKING:
        if reply is None or not isinstance(reply, (list, bytes, bytearray)):
            return []
        return _blocking_effect(name, args, reply)
    if name == b"SPOP":
        if isinstance(reply, (bytes, bytearray)):
            return [[b"SREM", args[1], bytes(reply)]]
        if isinstance(reply, (list, tuple, set, frozenset)) and reply:
            return [[b"SREM", args[1], *reply]]
        return []
    if name == b"XADD" and isinstance(reply, (bytes, bytearray)):
        return [_xadd(args, bytes(reply))]
    return aof_commands(args, now_ms)


def _xadd(args: Sequence[bytes], new_id: bytes) -> list[bytes]:
    """XADD with the id the entry got in place of ``*`` / ``ms-*``."""
    i = 2
    while i < len(args):
        opt = bytes(args[i]).upper()
        if opt == b"NOMKSTREAM":
            i += 1
        elif opt in (b"MAXLEN", b"MINID"):
            i += 2 + (bytes(args[i + 1]) in (b"=", b"~"))
        elif opt == b"LIMIT":
            i += 2
        else:
            break
    return [*args[:i], new_id, *args[i + 1:]]


#: Commands logged otherwise than as received (by their effect, or with absolute times):
#: ``aof_commands`` and ``effect_commands`` translate them.  Exact names as clients send them
#: (upper or lower case); another spelling takes the general path, which gives the same.
_TRANSLATED = frozenset(name for upper in (
    b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT", b"SET", b"SETEX", b"PSETEX", b"GETEX",
    b"GETDEL", b"RESTORE", b"SPOP", b"XADD", *BLOCKING) for name in (upper, upper.lower()))


def _logged_as_received(args: Sequence[bytes]) -> bool:
    """Whether ``args`` is logged exactly as received (no translation, not internal)."""
    name = args[0]
    if name in _TRANSLATED:
        return len(args) == 3 and (name == b"SET" or name == b"set")  # SET key value
    return name[:2] != b"__"


class AofLog:
    """The worker's AOF: records effects into the writer, wraps atomic groups in MULTI/EXEC."""

    def __init__(self, dir: str, dirname: str = "appendonlydir",
                 policy: str = "everysec") -> None:
        self.dir = AofDir(dir, dirname)
        self.policy = policy
        self.writer: AofWriter | None = None
        #: nesting of atomic groups (transaction, script) being run.
        self.depth = 0
        #: MULTI written for the current group.
        self.open = False
        #: router id -> sequence number of the last batch of that router whose changes the
        #: file holds: a restarted worker tells the router, which resends what came after
        #: (``Router.resume``).  Kept in the file as batch annotations (``#SHD:...``).
        self.applied: dict[bytes, int] = {}
        #: (router id, seq) of the batch being run, set by the worker's loop.
        self.origin: tuple[bytes, int] | None = None

    def load(self, shard: object) -> int:
        """Replay the folder through the shard (no logging, no replies); commands replayed.

        Raises ``AofError`` (with file and offset) on a corrupt file: the caller must exit.
        """
        started = time.monotonic()
        count = 0
        chunk: list[tuple[int, list[bytes]]] = []
        execute_batch = shard.execute_batch  # type: ignore[attr-defined]
        for args in self.dir.read(truncate_tail=True, annotations=True):
            if args[0] == ANNOTATION:
                self.note_annotation(args[1])
                continue
            if bytes(args[0]).upper() in (b"MULTI", b"EXEC", b"SELECT"):
                continue
            chunk.append((2, args))
            count += 1
            if len(chunk) >= LOAD_CHUNK:
                execute_batch(chunk)
                chunk = []
            if count % PROGRESS_EVERY == 0:
                log.info("loading the AOF of %s: %d commands so far", self.dir.path, count)
        if chunk:
            execute_batch(chunk)
        if count:
            log.info("DB loaded from append only file %s: %d commands in %.3f seconds",
                     self.dir.path, count, time.monotonic() - started)
        return count

    def note_annotation(self, text: bytes) -> None:
        parsed = parse_batch_annotation(text)
        if parsed is not None:
            self.remember(parsed[0], parsed[1])

    def remember(self, origin: bytes, seq: int) -> None:
        """``origin``'s last batch in the file is ``seq`` (the oldest routers are forgotten)."""
        applied = self.applied
        applied.pop(origin, None)
        applied[origin] = seq
        if len(applied) > MAX_ORIGINS:
            del applied[next(iter(applied))]

    def open_for_append(self) -> None:
        _, self.writer = self.dir.open_for_append(self.policy)
        self.write_checkpoints()

    def write_checkpoints(self) -> None:
        """A new (empty) incr file starts with every router's last batch: the base file a
        rewrite writes holds data only, and the old incr files that held them go away."""
        writer = self.writer
        if writer is not None and self.applied and writer.size() == 0:
            writer.write_annotations(batch_annotation(origin, seq, 0)
                                     for origin, seq in self.applied.items())

    def record(self, args: Sequence[bytes] | None, reply: object, touched: list[bytes],
               expired: list[bytes], now_ms: int) -> None:
        """Log what the current command (or expiry, ``args`` None) changed."""
        writer = self.writer
        if writer is None:
            return
        if not expired and args is not None and _logged_as_received(args):
            # The common write (INCR, HSET, RPUSH, plain SET...): its own bytes, at once.
            if self.depth and not self.open:
                self.open = True
                writer.append([[b"MULTI"]])
            writer.append_encoded(encode_command(args))
            return
        commands = [[b"DEL", key] for key in expired]
        if args is not None and len(touched) > len(expired):
            name = args[0]
            if not (name[:2] == b"__" and bytes(name).lower() in NOT_DATA):
                commands += effect_commands(args, reply, now_ms)
        if not commands:
            return
        if self.depth and not self.open:
            self.open = True
            writer.append([[b"MULTI"]])
        writer.append(commands)

    def has_writes(self) -> bool:
        """Whether the batch being run logged something (its flush will write)."""
        return self.writer is not None and bool(self.writer.buf)

    def begin_group(self) -> None:
        self.depth += 1

    def end_group(self) -> None:
        self.depth = max(self.depth - 1, 0)
        if not self.depth and self.open:
            self.open = False
            if self.writer is not None:
                self.writer.append([[b"EXEC"]])

    def flush(self) -> None:
        """The batch's records go out (and with ``always`` are fsynced) before its replies.

        A group still open is closed here and reopened by its next write: a transaction's
        share may span batches (``__tx_end`` comes in a later one), and what a reply
        acknowledged must never wait for a later EXEC to count.
        """
        writer = self.writer
        if writer is not None:
            if self.open:
                self.open = False
                writer.append([[b"EXEC"]])
            origin = self.origin
            if writer.flush(time.monotonic(), origin) and origin is not None:
                self.remember(*origin)

    def tick(self) -> None:
        if self.writer is not None:
            self.writer.maybe_fsync(time.monotonic())

    def close(self) -> None:
        if self.writer is not None:
            if self.open:
                self.writer.append([[b"EXEC"]])
                self.open = False
            self.writer.close()
            self.writer = None
