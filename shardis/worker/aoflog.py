"""A worker's append-only file: what each write is logged as, loading at startup, rewriting.

:class:`AofLog` is driven from two places only: :meth:`Shard.apply_effects` (``record``: the
effects of the command just run) and the worker's loop (``flush`` once per batch before its
replies leave, ``tick`` for ``everysec``, ``close`` on stop).  Files are Redis 7's multi-part
layout (``shardis.persist.aof``) in ``DIR/worker-<index>/<appenddirname>/``; a base file may
be RDB (``.base.rdb``, loaded through the RDB reader) or RESP (``.base.aof``).

:class:`AofRewriter` is BGREWRITEAOF (and the automatic rewrite, and ``CONFIG SET appendonly
yes``): between two batches the log switches to a new incr file that starts with every
router's checkpoint annotation, a forked child writes the keyspace as it was at the fork as
the new base, and when the child is reaped one manifest write makes the base current (the old
base and incr files become history, then are deleted).  A crash at any step leaves a folder
that loads.

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
* XREADGROUP, XCLAIM and XAUTOCLAIM (served at once or to a waiting client) -> what Redis
  propagates for them, which the op reports in ``Keyspace.propagated``: one
  ``XCLAIM key group consumer 0 id TIME ms RETRYCOUNT n FORCE JUSTID LASTID id`` per pending
  entry made, moved or dropped, ``XGROUP SETID ... ENTRIESREAD n`` for a NOACK read and
  ``XGROUP CREATECONSUMER`` for the consumer a NOACK read created (nothing for a re-read of a
  consumer's history, as in Redis);
* each router batch that changed something is preceded by an annotation
  ``#SHD:<router id>:<seq>:<bytes>`` (skipped by Redis and ``redis-check-aof``): a restarted
  worker knows the last batch it holds of each router, and the router resends the rest;
* a script's writes are logged one by one as they run (``Shard.run_inside``), and a script's
  or a transaction's writes are wrapped in MULTI/EXEC, so a torn tail drops all of them (a
  transaction's share that spans several batches is one group per batch: what a reply
  acknowledged is never held back by a later EXEC);
* the router's internal writes (``__restore``, ``__sstore``, ``__zstore``, ``__bitstore``) are
  logged as they are: their arguments carry absolute values and deadlines.

Not covered yet, or not exactly as Redis:

* MULTI/EXEC groups are per worker: a transaction over keys of several workers is atomic in
  each worker's file, not across them;
* ``aof-load-truncated`` is always on (a torn tail of the last file is cut with a warning);
* a BGREWRITEAOF is answered "started" before its fork, which comes once the batch's writes
  are in the old incr file: a fork that then fails is logged and shows in INFO
  (``aof_last_bgrewrite_status:err``), not in that reply; likewise CONFIG SET appendonly yes
  answers OK before the rewrite that creates the AOF runs;
* the base's RDB preamble carries ``aof-base:0`` (Redis writes 1; only its log reads it);
* a worker that crashes after ``CONFIG SET appendonly yes`` and before that first rewrite is
  done is restarted by ``shardis up`` with ``appendonly yes`` and loads the folder as it was
  (Redis, whose config file still says ``no``, would load its RDB).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from typing import BinaryIO

from shardis.persist.aof import (
    ANNOTATION,
    AofDir,
    AofError,
    AofWriter,
    Manifest,
    aof_commands,
    batch_annotation,
    encode_command,
    fsync_dir,
    parse_batch_annotation,
)
from shardis.persist.rdb import RdbError
from shardis.protocol import command_code
from shardis.resp import Status
from shardis.worker.snapshot import Child, load_rdb, write_rdb
from shardis.worker.types import unpacked

log = logging.getLogger("shardis.worker")

#: Loading logs its progress every this many commands.
PROGRESS_EVERY = 100_000
#: Commands replayed per ``execute_batch`` while loading.
LOAD_CHUNK = 1024
#: Redis's temporary incr file (``getTempIncrAofName``): "temp-" + appendfilename + ".incr".
TEMP_INCR_PREFIX = "temp-"
#: Routers whose last batch the AOF remembers (each router process has an id of its own).
MAX_ORIGINS = 64

#: Internal commands that change no data (connections, ACLs, blocking bookkeeping).
NOT_DATA = frozenset((b"__sub", b"__notify", b"__watch", b"__unwatch", b"__tx_begin",
                      b"__tx_end", b"__unblock", b"__acl_sync", b"__acl_set",
                      b"__save", b"__bgsave", b"__bgrewriteaof", b"__shutdown",
                      b"__debug_reload", b"__config_set"))
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


def _database_number(text: bytes, shard: object) -> int:
    """An AOF's ``SELECT n``: a database this server has, or the file is unusable."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number < shard.databases:  # type: ignore[attr-defined]
        raise AofError(f"SELECT {text!r}: the server has databases 0 to "
                       f"{shard.databases - 1} (--databases)")  # type: ignore[attr-defined]
    return number


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
    if name == b"__FUNCTIONS_SYNC":  # the server's libraries, given to a restarted worker
        return [[b"FUNCTION", b"RESTORE", args[1], b"FLUSH"]]
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
    b"GETDEL", b"RESTORE", b"RESTORE-ASKING", b"SPOP", b"XADD", b"XCLAIM", b"XAUTOCLAIM", *BLOCKING) for name in (upper, upper.lower()))


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
        #: the manifest as on disk (kept in memory, as Redis's ``server.aof_manifest``).
        self.manifest = Manifest()
        #: switched on at run time, the first rewrite not done: the writer's file is a
        #: temporary incr file no manifest names yet.
        self.waiting = False

    def load(self, shard: object) -> int:
        """Replay the folder through the shard (no logging, no replies); commands replayed
        (a ``.base.rdb`` base is loaded through the RDB reader first, its keys not counted).

        Raises ``AofError`` (with file and offset) on a corrupt file: the caller must exit.
        """
        started = time.monotonic()
        count = 0
        chunk: list[tuple[int, list[bytes]]] = []
        execute_batch = shard.execute_batch  # type: ignore[attr-defined]
        db = 0  # each file's first command comes after its SELECT

        def load_rdb_part(fh: BinaryIO, name: str) -> None:
            try:
                loaded, expired = load_rdb(shard.db, fh, name,  # type: ignore[attr-defined]
                                           skip_expired=False)
            except RdbError as exc:
                raise AofError(f"bad RDB preamble in the AOF file {name}: {exc}") from None
            log.info("loaded the RDB base %s of the AOF: %d keys (%d expired skipped)",
                     name, loaded, expired)

        for args in self.dir.read(truncate_tail=True, annotations=True, rdb=load_rdb_part):
            if args[0] == ANNOTATION:
                self.note_annotation(args[1])
                continue
            name = bytes(args[0]).upper()
            if name == b"SELECT" and len(args) == 2:
                db = _database_number(args[1], shard)
                continue
            if name in (b"MULTI", b"EXEC"):
                continue
            chunk.append((command_code(2, db), args))
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
        self.manifest, self.writer = self.dir.open_for_append(self.policy)
        self.waiting = False
        self.write_checkpoints()
        remove_leftovers(self.dir, self.manifest)

    def switch_incr(self) -> None:
        """A rewrite starts: what comes next goes to a new incr file (named in the manifest
        at once, after the old ones: a crash before the rewrite ends loads old + new), which
        starts with every router's checkpoint.  ``waiting`` (the AOF being switched on):
        a temporary incr file instead, named in the manifest only when the base is there."""
        old = self.writer
        if self.waiting:
            path = self.dir.file_path(TEMP_INCR_PREFIX + self.dir.filename + ".incr")
            try:
                os.unlink(path)  # a failed attempt's: the new child's base covers it
            except FileNotFoundError:
                pass
            self.writer = AofWriter(path, self.policy)
        else:
            manifest = copy.deepcopy(self.manifest)  # changed only once it is on disk
            self.writer = self.dir.start_new_incr(manifest, self.policy)
            self.manifest = manifest
        if old is not None:
            old.close()
        self.write_checkpoints()

    def start_waiting(self) -> None:
        """``CONFIG SET appendonly yes``: log to a temporary incr file until the rewrite that
        writes the base from memory is done (Redis's AOF_WAIT_REWRITE)."""
        os.makedirs(self.dir.path, exist_ok=True)
        self.manifest = self.dir.load_manifest() or Manifest()
        self.waiting = True
        self.switch_incr()

    def size(self) -> tuple[int, int]:
        """(base size, base + incr sizes) on disk, with what the writer holds unwritten."""
        if self.waiting:
            return 0, self.writer.size() if self.writer is not None else 0
        base, total = self.dir.sizes(self.manifest)
        return base, total + (sum(map(len, self.writer.buf)) if self.writer else 0)

    def write_checkpoints(self) -> None:
        """A new (empty) incr file starts with every router's last batch: the base file a
        rewrite writes holds data only, and the old incr files that held them go away."""
        writer = self.writer
        if writer is not None and self.applied and writer.size() == 0:
            writer.write_annotations(batch_annotation(origin, seq, 0)
                                     for origin, seq in self.applied.items())

    def record(self, args: Sequence[bytes] | None, reply: object, touched: list[bytes],
               expired: list[bytes], now_ms: int,
               propagated: list[list[bytes]] | None = None, db: int = 0) -> None:
        """Log what the current command (or expiry, ``args`` None) changed in database
        ``db``; ``propagated``, when the op reported it (``Keyspace.propagated``), is logged
        in its place."""
        writer = self.writer
        if writer is None:
            return
        if not expired and args is not None and _logged_as_received(args):
            # The common write (INCR, HSET, RPUSH, plain SET...): its own bytes, at once.
            if self.depth and not self.open:
                self.open = True
                writer.append([[b"MULTI"]], db)
            writer.append_encoded(encode_command(args), db)
            return
        commands = [[b"DEL", key] for key in expired]
        if args is not None and len(touched) > len(expired):
            name = args[0]
            if propagated is not None:
                commands += propagated
            elif not (name[:2] == b"__" and bytes(name).lower() in NOT_DATA):
                commands += effect_commands(args, reply, now_ms)
        if not commands:
            return
        if self.depth and not self.open:
            self.open = True
            writer.append([[b"MULTI"]], db)
        writer.append(commands, db)

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
                self.writer.append([[b"EXEC"]], None)

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
                writer.append([[b"EXEC"]], None)
            origin = self.origin
            if writer.flush(time.monotonic(), origin) and origin is not None:
                self.remember(*origin)

    def tick(self) -> None:
        if self.writer is not None:
            self.writer.maybe_fsync(time.monotonic())

    def fsync(self) -> None:
        """Write what is buffered and fsync it now (a SHUTDOWN, whatever ``appendfsync``)."""
        if self.writer is not None:
            if self.open:
                self.writer.append([[b"EXEC"]], None)
                self.open = False
            self.writer.flush()
            self.writer.wait_fsync()
            os.fsync(self.writer.fd)
            self.writer.unsynced = False

    def set_policy(self, policy: str) -> None:
        """CONFIG SET appendfsync: from the next batch on."""
        self.policy = policy
        if self.writer is not None:
            self.writer.policy = policy

    def close(self) -> None:
        if self.writer is not None:
            if self.open:
                self.writer.append([[b"EXEC"]], None)
                self.open = False
            self.writer.close()
            self.writer = None


# ---------------------------------------------------------------------------------------------
# BGREWRITEAOF
# ---------------------------------------------------------------------------------------------

ALREADY = "ERR Background append only file rewriting already in progress"
CANT = ("ERR Can't execute an AOF background rewriting. Please check the server logs for more "
        "information.")
#: Redis's aofRewriteLimited: after this many failures in a row, automatic rewrites wait
#: 1, 2, 4... up to 60 minutes (BGREWRITEAOF still runs at once).
LIMIT_THRESHOLD = 3
LIMIT_MAX_MINUTES = 60


def write_base(db: object, path: str, rdb_preamble: bool) -> None:
    """The child's work: the keyspace as it was at the fork, in ``path`` (fsynced).

    ``aof-use-rdb-preamble yes``: an RDB file (a ``.base.rdb``); ``no``: RESP commands, one
    ``RESTORE key ttl payload [ABSTTL]`` per key (a Redis server loads those too).
    """
    from shardis.persist.dump import dump_payload

    with open(path, "wb", buffering=1 << 20) as fh:
        if rdb_preamble:
            write_rdb(db, fh)
        else:
            from shardis.commands.functions import saved_codes

            expires = db.expires  # type: ignore[attr-defined]
            for code in saved_codes(db):  # Redis's rewriteFunctions
                fh.write(encode_command([b"FUNCTION", b"LOAD", code]))
            fh.write(encode_command([b"SELECT", b"0"]))
            for key, value in db.data.items():  # type: ignore[attr-defined]
                payload = dump_payload(unpacked(value))
                deadline = expires.get(key)
                ttl = [b"0"] if deadline is None else [b"%d" % deadline]
                fh.write(encode_command([b"RESTORE", key, *ttl, payload,
                                         *([b"ABSTTL"] if deadline is not None else [])]))
        fh.flush()
        os.fsync(fh.fileno())


def remove_leftovers(folder: AofDir, manifest: Manifest) -> None:
    """At start (as Redis's ``aofDelHistoryFiles``): history files a crash left behind, and
    the temporary files of a rewrite or of an AOF being switched on that never finished
    (only this worker writes in its folder)."""
    if manifest.history:
        folder.delete_history(manifest)
    try:
        names = os.listdir(folder.path)
    except OSError:
        return
    for name in names:
        if name.startswith("temp-rewriteaof-") or name == f"temp-{folder.filename}.incr":
            try:
                os.unlink(folder.file_path(name))
            except OSError:
                pass


class AofRewriter:
    """BGREWRITEAOF of one worker, as Redis 7.0's ``rewriteAppendOnlyFileBackground``.

    Start (between two batches, so a batch's writes all go to one file): the AOF switches to
    a new incr file, then a forked child writes the new base from the keyspace as it was at
    the fork, while the worker keeps serving and logging to the new incr file.  When the
    child is reaped (housekeeping tick): the base is renamed into place, one manifest write
    makes it current (old base and incr files become history), then history files are
    deleted.  A crash at any step leaves a manifest that loads.  With ``appendonly no`` the
    rewrite writes a base and a manifest only (as Redis).  Also the automatic rule
    (``auto-aof-rewrite-percentage`` / ``-min-size``) and ``CONFIG SET appendonly yes``
    (a rewrite creates the AOF from memory, then it is logged to).
    """

    def __init__(self, dir: str, dirname: str = "appendonlydir", rdb_preamble: bool = True,
                 percentage: int = 100, min_size: int = 64 * 1024 * 1024) -> None:
        self.folder = AofDir(dir, dirname)
        self.rdb_preamble = rdb_preamble
        self.percentage = percentage
        self.min_size = min_size
        self.child: Child | None = None
        #: BGREWRITEAOF accepted during this batch: the fork comes after the batch's flush.
        self.pending = False
        #: asked while a BGSAVE ran (or switching the AOF on failed): started when possible.
        self.scheduled = False
        self.rewrites = 0
        self.consecutive_failures = 0
        self.last_status_ok = True
        self.last_time_sec = -1
        self.last_cow_size = 0
        #: aof_rewrite_base_size: the AOF's size after the last rewrite (or at load).
        self.base_size = 0
        self.limit_delay_minutes = 0
        self.limit_until = 0.0
        self.temp_base = ""

    def running(self) -> bool:
        return self.child is not None

    # Starting ---------------------------------------------------------------------------------
    def request(self, shard: object) -> str:
        """BGREWRITEAOF: the status reply, or ReplyError."""
        from shardis.errors import ReplyError

        if self.child is not None or self.pending:
            raise ReplyError(ALREADY)
        snapshots = shard.snapshots  # type: ignore[attr-defined]
        if snapshots is not None and snapshots.running():
            self.scheduled = True
            self.consecutive_failures = 0
            return "Background append only file rewriting scheduled"
        try:
            os.makedirs(self.folder.path, exist_ok=True)
        except OSError as exc:
            log.warning("Can't open or create append-only dir %s: %s", self.folder.path, exc)
            self.last_status_ok = False
            raise ReplyError(CANT) from None
        self.pending = True
        return "Background append only file rewriting started"

    def after_batch(self, shard: object) -> None:
        """The worker's loop, once the batch's writes are flushed: start what was asked."""
        if self.pending:
            self.pending = False
            self.start(shard)

    def start(self, shard: object) -> bool:
        """Switch the AOF to a new incr file, then fork the child that writes the base."""
        aof: AofLog | None = shard.aof  # type: ignore[attr-defined]
        self.scheduled = False
        self.pending = False
        if self.child is not None:
            return False  # one child at a time (Redis's hasActiveChildProcess)
        try:
            os.makedirs(self.folder.path, exist_ok=True)
            if aof is not None:
                aof.flush()
                aof.switch_incr()
        except OSError as exc:
            log.warning("Can't open a new AOF incr file for the rewrite: %s", exc)
            self.last_status_ok = False
            self.scheduled = aof is not None and aof.waiting
            return False
        self.rewrites += 1
        db, rdb_preamble = shard.db, self.rdb_preamble  # type: ignore[attr-defined]
        folder = self.folder

        def work() -> None:
            write_base(db, folder.file_path(f"temp-rewriteaof-bg-{os.getpid()}.aof"),
                       rdb_preamble)

        try:
            self.child = Child.fork(work, "AOF rewrite")
        except OSError as exc:
            log.warning("Can't rewrite append only file in background: fork: %s", exc)
            self.last_status_ok = False
            self.scheduled = aof is not None and aof.waiting
            return False
        log.info("Background append only file rewriting started by pid %d", self.child.pid)
        return True

    # Ending -----------------------------------------------------------------------------------
    def reap(self, shard: object, block: bool = False) -> None:
        child = self.child
        if child is None:
            return
        result = child.reap(block)
        if result is None:
            return
        self.child = None
        self.last_time_sec = child.elapsed()
        ok, cow = result
        temp = self.folder.file_path(f"temp-rewriteaof-bg-{child.pid}.aof")
        aof: AofLog | None = shard.aof  # type: ignore[attr-defined]
        if ok:
            self.last_cow_size = cow
            try:
                self.install(aof, temp)
            except (OSError, AofError) as exc:
                log.warning("Background AOF rewrite failed to install the new base: %s", exc)
                ok = False
        else:
            log.warning("Background AOF rewrite terminated with error")
        if ok:
            self.last_status_ok = True
            self.consecutive_failures = 0
            log.info("Background AOF rewrite finished successfully")
        else:
            self.last_status_ok = False
            self.consecutive_failures += 1
            if aof is not None and aof.waiting:
                self.scheduled = True  # the AOF is not on until a rewrite made its base
        try:
            os.unlink(temp)
        except OSError:
            pass

    def install(self, aof: AofLog | None, temp: str) -> None:
        """Redis's ``backgroundRewriteDoneHandler``: the base, then the manifest, then the
        history files go.  The in-memory manifest changes only once the new one is on disk."""
        folder = self.folder
        if aof is not None:
            current = aof.manifest
        else:
            current = folder.load_manifest() or Manifest()
        manifest = copy.deepcopy(current)
        base = manifest.new_base(folder.filename, "rdb" if self.rdb_preamble else "aof")
        os.replace(temp, folder.file_path(base.name))
        waiting = aof is not None and aof.waiting
        # The incr file being written stays current; the ones the base covers become history.
        manifest.incrs_to_history(keep_last=1 if aof is not None and not waiting else 0)
        if waiting:
            incr = manifest.new_incr(folder.filename)
            os.replace(aof.writer.path, folder.file_path(incr.name))  # type: ignore[union-attr]
            aof.writer.path = folder.file_path(incr.name)  # type: ignore[union-attr]
        fsync_dir(folder.path)
        folder.write_manifest(manifest)
        if aof is not None:
            aof.manifest = manifest
            if waiting:
                aof.waiting = False
                log.info("the AOF is on: its first base is written")
        folder.delete_history(manifest)
        if aof is not None:
            self.base_size = aof.size()[1]

    def kill(self, shard: object) -> None:
        """Stop a running rewrite (shutdown, ``appendonly no``): the files stay as they were."""
        child = self.child
        self.pending = False
        if child is None:
            return
        log.warning("Killing running AOF rewrite child: %d", child.pid)
        child.kill()
        self.child = None
        self.last_time_sec = child.elapsed()
        try:
            os.unlink(self.folder.file_path(f"temp-rewriteaof-bg-{child.pid}.aof"))
        except OSError:
            pass

    # Housekeeping -----------------------------------------------------------------------------
    def limited(self) -> bool:
        """Redis's ``aofRewriteLimited``: back off automatic rewrites that keep failing."""
        if self.consecutive_failures < LIMIT_THRESHOLD:
            self.limit_delay_minutes, self.limit_until = 0, 0.0
            return False
        now = time.time()
        if self.limit_until:
            if now < self.limit_until:
                return True
            self.limit_until = 0.0
            return False
        self.limit_delay_minutes = min(max(self.limit_delay_minutes * 2, 1), LIMIT_MAX_MINUTES)
        self.limit_until = now + self.limit_delay_minutes * 60
        log.warning("Background AOF rewrite has repeatedly failed and triggered the limit, will "
                    "retry in %d minutes", self.limit_delay_minutes)
        return True

    def tick(self, shard: object) -> None:
        """Reap a finished child; start a scheduled rewrite, or one the growth rule asks for."""
        if self.child is not None:
            self.reap(shard)
            return
        snapshots = shard.snapshots  # type: ignore[attr-defined]
        if snapshots is not None and snapshots.running():
            return
        if self.scheduled and not self.limited():
            self.start(shard)
            return
        aof: AofLog | None = shard.aof  # type: ignore[attr-defined]
        if aof is None or aof.waiting or not self.percentage:
            return
        current = aof.size()[1]
        if current <= self.min_size:
            return
        growth = current * 100 // (self.base_size or 1) - 100
        if growth >= self.percentage and not self.limited():
            log.info("Starting automatic rewriting of AOF on %d%% growth", growth)
            self.start(shard)

    def info(self, shard: object) -> dict[bytes, object]:
        aof: AofLog | None = shard.aof  # type: ignore[attr-defined]
        child = self.child
        fields: dict[bytes, object] = {
            b"aof_rewrite_in_progress": int(child is not None),
            b"aof_rewrite_scheduled": int(self.scheduled),
            b"aof_last_rewrite_time_sec": self.last_time_sec,
            b"aof_current_rewrite_time_sec": child.elapsed() if child is not None else -1,
            b"aof_last_bgrewrite_ok": int(self.last_status_ok),
            b"aof_rewrites": self.rewrites,
            b"aof_rewrites_consecutive_failures": self.consecutive_failures,
            b"aof_last_cow_size": self.last_cow_size,
        }
        if aof is not None:
            fields[b"aof_current_size"] = aof.size()[1]
            fields[b"aof_base_size"] = self.base_size
            fields[b"aof_buffer_length"] = (sum(map(len, aof.writer.buf))
                                            if aof.writer is not None else 0)
        return fields
