"""A shard: one keyspace, the command executor, and the one place where effects are applied.

Operations (``shardis.commands.*``) are pure functions of the keyspace and the arguments; they
report what they changed through the keyspace (:attr:`Keyspace.touched`).  :meth:`Shard.execute`
runs one command and then applies those effects in one spot: the dirty counter now, and WATCH
versions, the AOF (``shardis.worker.aoflog``: the write's effect, logged here and nowhere else)
and keyspace notifications.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shardis import errors
from shardis.commands import COMMANDS, load_families, lookup
from shardis.errors import ReplyError
from shardis.notify import EVICTED, EXPIRED, channel_messages, command_events
from shardis.resp import NULL_BULK, OK, OK_REPLY, encode, encode_error, encode_int
from shardis.worker.aclhub import AclHub
from shardis.worker.aoflog import AofLog
from shardis.worker.blocking import BlockingRegistry
from shardis.worker.evict import Evictor
from shardis.worker.keyspace import LFU_INIT_VAL, Keyspace
from shardis.worker.pubsub import PubSubRegistry
from shardis.worker.replylog import ReplyLog
from shardis.worker.tracking import Tracking

log = logging.getLogger("shardis.worker")

_BULK_HEADERS = [b"$%d\r\n" % length for length in range(1024)]
#: How many unpacked small values a database keeps between housekeeping passes.
LOOSE_LIMIT = 256

#: name -> (op, arity) for commands without subcommands: the executor's fast lookup.
PLAIN_OPS: dict[bytes, tuple] = {}


def _build_plain_ops() -> None:
    for name, spec in COMMANDS.items():
        if spec.op is not None and not spec.subcommands:
            PLAIN_OPS[name] = (spec.op, spec.arity)


def _spec_or_none(args: list[bytes]) -> object:
    try:
        return lookup(args, allow_internal=True)
    except ReplyError:
        return None


@dataclass
class ShardStats:
    """Counters the router sums into INFO."""

    commands: int = 0
    error_replies: int = 0
    dirty: int = 0


class Shard:
    """Executes batches of commands against one keyspace, in order."""

    def __init__(self, index: int = 0, databases: int = 16) -> None:
        load_families()
        if not PLAIN_OPS:
            _build_plain_ops()
        self.index = index
        self.stats = ShardStats()
        self.blocking = BlockingRegistry()
        self.pubsub = PubSubRegistry()
        #: how many databases there are (``databases``); their keyspaces, made on first use.
        self.databases = databases
        self.dbs: dict[int, Keyspace] = {}
        #: notify-keyspace-events and "log expiries" as every keyspace has them (new ones too).
        self.notify_flags = 0
        self.log_expired = False
        #: LFU counters instead of access times (a ``*-lfu`` maxmemory-policy), and knobs.
        self.lfu = False
        self.lfu_log_factor = 10
        self.lfu_decay_time = 1
        #: the keyspace of the database the current command runs in.
        self.db = self.keyspace(0)
        #: other databases the running command changed (``changed_elsewhere``).
        self.elsewhere: list[Keyspace] = []
        #: the command being executed (keyspace notifications name their event after it).
        self.current: list[bytes] | None = None
        #: serves the worker's link while a script is busy (set by the worker's server).
        self.while_busy: Callable[[], None] | None = None
        #: runs a script's command on another worker (``WorkerServer.remote_call``): only
        #: for a script in global mode, which the router runs with every worker gated.
        self.remote_call: Callable[[list[bytes], int], bytes] | None = None
        #: the worker was asked to stop: a running script is ended at its next hook.
        self.stopping = False
        #: a transaction is running here (``__tx_begin`` .. ``__tx_end``): blocked clients are
        #: served after it, not in its middle.
        self.deferring = False
        #: a script is running here (its commands come through ``run_inside``).
        self.in_script = False
        #: client-side caching: who read which keys (``shardis.worker.tracking``).
        self.tracking = Tracking(index)
        #: maxmemory: this worker's share, its policy, and eviction (``shardis.worker.evict``).
        self.evictor = Evictor(self)
        #: memory was over the limit with nothing to evict when the running command (a
        #: script) started: its first write that may grow memory is refused (Redis's
        #: ``pre_command_oom_state``).
        self.oom_at_start = False
        #: the server's ACL users, for every router (used on worker 0, the hub).
        self.aclhub = AclHub()
        #: the append-only file (``appendonly yes``), set by the worker once it has loaded.
        self.aof: AofLog | None = None
        #: with the AOF: the replies of recent write batches (``shardis.worker.replylog``).
        self.replies_log: ReplyLog | None = None
        #: RDB snapshots (``shardis.worker.snapshot.Snapshots``), set by the worker's server.
        self.snapshots: object | None = None
        #: expire keys in the background (DEBUG SET-ACTIVE-EXPIRE 0 turns it off).
        self.active_expire_enabled = True
        #: small values unpacked by reads stay so until housekeeping, or until a database has
        #: more than this many (``Keyspace.repack``): the values in use are not unpacked and
        #: packed again by every batch, and their memory stays bounded.
        self.loose_limit = LOOSE_LIMIT
        #: a router has MONITOR clients: report the commands scripts call (``[0 lua]`` lines).
        self.monitor_scripts = False
        #: the commands scripts called: name -> [calls, microseconds, failed calls].
        self.script_calls: dict[bytes, list[int]] = {}

    # Databases ------------------------------------------------------------------------------
    def keyspace(self, index: int) -> Keyspace:
        """Database ``index``'s keyspace (made on first use); Redis's error out of range."""
        db = self.dbs.get(index)
        if db is None:
            if not 0 <= index < self.databases:
                raise ReplyError(errors.DB_OUT_OF_RANGE)
            db = self.dbs[index] = Keyspace(index)
            db.stats = self.stats  # type: ignore[attr-defined]
            db.blocking = self.blocking  # type: ignore[attr-defined]
            db.shard = self  # type: ignore[attr-defined]  # scripts run commands through it
            db.pubsub = self.pubsub  # type: ignore[attr-defined]
            db.notify_flags = self.notify_flags
            db.log_expired = self.log_expired
            self._tracking_of(db)
        return db

    def keyspaces(self) -> list[Keyspace]:
        """The databases that exist so far, by number."""
        return [self.dbs[index] for index in sorted(self.dbs)]

    def set_access_tracking(self, maxmemory_policy: str | None = None,
                            lfu_log_factor: int | None = None,
                            lfu_decay_time: int | None = None) -> None:
        """``maxmemory-policy`` and the LFU knobs: under a ``*-lfu`` policy every keyspace
        keeps LFU counters (OBJECT FREQ) instead of access times (OBJECT IDLETIME)."""
        if maxmemory_policy is not None:
            self.lfu = maxmemory_policy.endswith("-lfu")
            self.evictor.policy = maxmemory_policy
            self.evictor.pool.clear()
        if lfu_log_factor is not None:
            self.lfu_log_factor = lfu_log_factor
        if lfu_decay_time is not None:
            self.lfu_decay_time = lfu_decay_time
        for db in self.dbs.values():
            self._tracking_of(db)

    def _tracking_of(self, db: Keyspace) -> None:
        if db.lfu != self.lfu:  # the other policy's data means nothing: start afresh
            fresh = db.lfu_minutes() << 8 | LFU_INIT_VAL if self.lfu else db.clock
            db.atime = dict.fromkeys(db.data, fresh)
        db.lfu = self.lfu
        db.lfu_log_factor = self.lfu_log_factor
        db.lfu_decay_time = self.lfu_decay_time

    def set_notify_flags(self, flags: int) -> None:
        self.notify_flags = flags
        for db in self.dbs.values():
            db.notify_flags = flags

    def set_log_expired(self, on: bool) -> None:
        """Keep (or stop keeping) the keys expiry reclaims, for the AOF's DELs."""
        self.log_expired = on
        for db in self.dbs.values():
            db.log_expired = on
            db.expired_log.clear()

    def swap(self, first: int, second: int) -> None:
        """SWAPDB on this shard: the two databases trade their data.  Clients stay on their
        database numbers: WATCHes stay with the number and count as changed (Redis's
        ``touchAllWatchedKeysInDb``), and blocked clients are served if their keys now have
        data."""
        number = self.db.index
        a, b = self.keyspace(first), self.keyspace(second)
        a.index, b.index = second, first
        self.dbs[first], self.dbs[second] = b, a
        a.watched, b.watched = b.watched, a.watched
        for db in (a, b):
            for key, entry in db.watched.items():
                if key in a.data or key in b.data:
                    entry[1] += 1
        self.db = self.dbs[number]
        self.blocking.signal_all((first, second))

    def execute_batch(self, batch: list[tuple[int, list[bytes]]]) -> list[bytes]:
        """Run every command of a batch in order; one encoded reply per command.

        Written as one loop with hoisted locals: it runs for every command the shard sees.
        A command's code is its reply's RESP version, plus its database above the two low
        bits (``shardis.protocol.command_code``): most are plain 2 or 3 in database 0.
        """
        db = self.db
        db.tick()
        index = db.index
        self.stats.commands += len(batch)
        plain_get = PLAIN_OPS.get
        touched = db.touched
        out: list[bytes] = []
        append = out.append
        limited = self.evictor.limit
        for proto, args in batch:
            step = False
            if proto ^ 2 > 1 or index:  # not a plain 2 or 3: another database, or a step
                wanted = proto >> 2
                step = not proto & 2
                proto = (proto & 1) | 2
                if wanted != index:
                    try:
                        db = self.select(wanted)
                    except ReplyError as exc:
                        append(self.encode_other(exc, proto))
                        continue
                    index, touched = wanted, db.touched
            if limited:
                refused = self.memory_check(args, step)
                if refused is not None:
                    append(self.encode_other(refused, proto))
                    continue
            entry = plain_get(args[0])
            if entry is not None:
                op, arity = entry
                argc = len(args)
                if not (argc == arity if arity > 0 else argc >= -arity):
                    entry = None
            if entry is None:
                append(self.execute(proto, args))
                db = self.db  # SWAPDB, a script's SELECT...: the current database again
                index, touched = db.index, db.touched
                continue
            try:
                reply = op(db, args)
            except ReplyError as exc:
                reply = exc
            except Exception as exc:  # a bug must not take the shard down with it
                reply = self.internal_error(args, exc)
            if touched:
                self.current = args  # the effects name their events after the command
                self.apply_effects(reply)
                if self.blocking.ready:
                    self.serve_blocked()
            kind = type(reply)
            if kind is bytes:
                append(b"".join((_BULK_HEADERS[len(reply)], reply, b"\r\n"))
                       if len(reply) < 1024 else b"$%d\r\n%b\r\n" % (len(reply), reply))
            elif reply is None:
                append(NULL_BULK[proto])
            elif reply is OK:
                append(OK_REPLY)
            elif kind is int:
                append(encode_int(reply))  # type: ignore[arg-type]
            else:
                append(self.encode_other(reply, proto))
        for keyspace in self.dbs.values():
            if len(keyspace.loose) > self.loose_limit:
                keyspace.repack()
        return out

    # maxmemory ----------------------------------------------------------------------------------
    def memory_check(self, args: list[bytes], step: bool = False) -> ReplyError | None:
        """Before a command under maxmemory (Redis's ``processCommand``): evict as the policy
        says; when memory stays over the limit, Redis's OOM error for a command that may grow
        it (``denyoom``; a script or function by its flags), None to run it.

        A ``step`` of an operation the router coordinates is neither refused nor preceded by
        evictions (the router decided for the whole command, and an eviction between two
        steps could take a key the operation already looked at); only a script sent as one
        is checked, as Redis checks EVAL."""
        if step and getattr(_spec_or_none(args), "oom_flags", None) is None:
            return None
        ok = self.evictor.perform()
        self.oom_at_start = not ok
        if ok:
            return None
        if self.may_grow_memory(args):
            return ReplyError(errors.OOM)
        return None

    def may_grow_memory(self, args: list[bytes]) -> bool:
        """Whether Redis refuses the command when out of memory: ``denyoom`` commands, and
        scripts with flags (a shebang, or a function) that are neither ``allow-oom`` nor
        ``no-writes`` (``scriptFlagsToCmdFlags``)."""
        try:
            spec = lookup(args, allow_internal=True)
        except ReplyError:
            return False  # the command's own error comes next
        if "denyoom" in spec.flags:
            return True
        oom_flags = getattr(spec, "oom_flags", None)  # EVAL*, FCALL*: the script's flags
        return oom_flags is not None and oom_flags(self.db, args)

    def evict(self, db: Keyspace, key: bytes) -> None:
        """Evict one key (``shardis.worker.evict``), its effects applied as an expiry's."""
        current, outer = self.db, self.current
        self.db, self.current = db, None
        db.evict(key)
        self.evictor.evicted_keys += 1
        self.apply_effects()
        self.db, self.current = current, outer

    def select(self, index: int) -> Keyspace:
        """Make database ``index`` the current one (for the commands that follow)."""
        db = self.keyspace(index)
        if db is not self.db:
            self.db = db
            db.tick()
        return db

    def execute(self, proto: int, args: list[bytes]) -> bytes:
        """One command by the general path: full lookup with Redis's errors, any reply type."""
        self.current = args
        db = self.db
        try:
            reply = lookup(args, allow_internal=True).op(db, args)  # type: ignore[misc]
        except ReplyError as exc:
            reply = exc
        except Exception as exc:  # a bug must not take the shard down with it
            reply = self.internal_error(args, exc)
        if db.touched:
            self.apply_effects(reply)
            if self.blocking.ready:
                self.serve_blocked()
        return self.encode_other(reply, proto)

    def run_inside(self, args: list[bytes], internal: bool = False) -> object:
        """Run one command from inside a script (``redis.call``) and return its reply value
        (a ReplyError for an error), not encoded: Lua converts it.

        Its effects are applied at once like any command's (WATCH versions, notifications,
        keys noted for blocked clients), but blocked clients are not served here: nothing may
        run in the middle of a script; the script's op serves them when it ends.  Scripting
        reaches the shard as ``keyspace.shard``.
        """
        outer, self.current = self.current, args
        if self.monitor_scripts and self.in_script:  # MONITOR (shardis.router.monitor)
            from shardis.commands.server import SCRIPT_MONITOR

            self.pubsub.pushes.setdefault(self.pubsub.peer, []).append(
                (SCRIPT_MONITOR, b"%d" % self.db.index, None, encode(args, 2)))
        spec = None
        started = time.perf_counter()
        try:
            spec = lookup(args, internal)
            reply = spec.op(self.db, args)  # type: ignore[misc]
        except ReplyError as exc:
            reply = exc
        except Exception as exc:  # a bug must not take the shard down with it
            reply = self.internal_error(args, exc)
        if spec is not None and not internal:  # INFO commandstats counts scripts' calls
            self.count_script_call(spec.fullname.encode(), started, type(reply) is ReplyError)
        if self.db.touched:
            self.apply_effects(reply)
        self.current = outer
        return reply

    def count_script_call(self, name: bytes, started: float, failed: bool) -> None:
        """A script's command: its calls, microseconds and failures, which the router adds
        to INFO commandstats (``__info``'s ``script_calls``)."""
        entry = self.script_calls.get(name)
        if entry is None:
            entry = self.script_calls[name] = [0, 0, 0]
        entry[0] += 1
        entry[1] += int((time.perf_counter() - started) * 1_000_000)
        entry[2] += failed

    def encode_other(self, reply: object, proto: int) -> bytes:
        if type(reply) is ReplyError:
            self.stats.error_replies += 1
            return encode_error(reply.message)  # type: ignore[union-attr]
        return encode(reply, proto)

    def internal_error(self, args: list[bytes], exc: Exception) -> ReplyError:
        log.exception("command %r failed", args[:1])
        name = args[0].decode(errors="replace")
        return ReplyError(f"ERR internal error in '{name}': {exc}")

    def housekeeping(self, budget_s: float = 0.025) -> None:
        """Background work between batches: small values used since the last time packed
        again, and active expiry of every database, within a time budget shared by the
        databases that have keys with a TTL."""
        self.current = None
        if self.evictor.limit and self.evictor.over_since is not None:
            self.evictor.perform()  # a round that ran out of time goes on (EVICT_RUNNING)
        for db in self.dbs.values():
            if db.loose:
                db.repack()
        if not self.active_expire_enabled:  # DEBUG SET-ACTIVE-EXPIRE 0
            return
        current = self.db
        timed = [db for db in self.dbs.values() if db.expires or db.touched]
        for db in timed:
            self.db = db
            if db.active_expire(budget_s / len(timed)) and db.touched:
                self.apply_effects()
        self.db = current

    def apply_effects(self, reply: object = None) -> None:
        """Apply what the last command reported: the single place for write side effects.

        ``reply`` is the command's reply: the AOF logs some writes by what they did (SPOP's
        members, a blocking pop's key) rather than by their arguments.
        """
        db = self.db
        touched = db.touched
        self.stats.dirty += len(touched)
        if self.aof is not None:
            self.aof.record(self.current, reply, touched, db.expired_log, db.now_ms,
                            db.propagated, db.index)
            if not db.notify_flags:
                db.expired_log.clear()
        if self.blocking.by_key:
            self.blocking.note_touched(touched, db.index)
        if db.watched:
            watched = db.watched
            quiet = db.quiet
            for key in touched:
                entry = watched.get(key)
                if entry is not None and not (quiet and key in quiet):
                    entry[1] += 1  # WATCH: this key changed since the watchers looked
        if db.notify_flags:
            self.notify(touched)
        if self.tracking.peers:
            self.tracking.after_command(self.current, touched, self.pubsub.pushes)
        touched.clear()
        if db.propagated is not None:
            db.propagated = None
        if db.quiet:
            db.quiet.clear()
        if db.events:
            db.events.clear()
        if self.elsewhere:
            self._apply_elsewhere(reply)

    def changed_elsewhere(self, db: Keyspace) -> None:
        """The running command also changed database ``db`` (MOVE, COPY ... DB): its effects
        there are applied after those in the current one (see ``apply_effects``)."""
        self.elsewhere.append(db)

    def _apply_elsewhere(self, reply: object) -> None:
        """The current command's effects in its other databases: WATCH, blocked clients,
        notifications, client caching — all but the AOF, which logs the command once."""
        current, aof = self.db, self.aof
        others, self.elsewhere = self.elsewhere, []
        self.aof = None
        try:
            for db in others:
                self.db = db
                if db.touched:
                    self.apply_effects(reply)
        finally:
            self.db, self.aof = current, aof

    def notify(self, touched: list[bytes]) -> None:
        """Keyspace notifications for what the current command (or expiry) changed."""
        db = self.db
        expired = set(db.expired_log)
        deadlines = set(db.deadline_log)
        db.expired_log.clear()
        db.deadline_log.clear()
        events: list[tuple[bytes, int, bytes]] = []
        args = self.current
        if args is not None:
            events = command_events(args, touched, expired, deadlines, db)
        if db.evicted_log:  # removed by the server like an expiry, but named for eviction
            evicted = db.evicted_log
            expired.difference_update(evicted)
            events += [(b"evicted", EVICTED, key) for key in evicted]
            db.evicted_log = []
        events += [(b"expired", EXPIRED, key) for key in expired]
        publish = self.pubsub.publish
        flags = db.notify_flags
        for event, cls, key in events:
            for channel, message in channel_messages(flags, event, cls, key, db.index):
                publish(channel, message, sharded=False)

    def serve_blocked(self) -> None:
        """Serve blocked commands whose keys just got data, before the next command runs.

        Redis serves them once the command that fed the keys has ended: after EXEC for a
        transaction, after the script for EVAL.  A script's commands (``run_inside``) never call
        this; inside a transaction (``deferring``) the ready keys wait for ``__tx_end``, so a
        waiter sees the transaction's end state (``LPUSH l a; DEL l`` leaves it blocked).
        """
        if not self.deferring:
            current = self.db
            self.blocking.serve(self.keyspace, self.after_blocked_attempt)
            self.db = current

    def begin_transaction(self) -> None:
        self.deferring = True
        if self.aof is not None:
            self.aof.begin_group()

    def end_transaction(self) -> None:
        self.deferring = False
        if self.aof is not None:
            self.aof.end_group()
        if self.blocking.ready:
            self.serve_blocked()

    def begin_script(self) -> None:
        """A script starts: its writes are one atomic group in the AOF."""
        self.in_script = True
        if self.aof is not None:
            self.aof.begin_group()

    def end_script(self) -> None:
        self.in_script = False
        if self.aof is not None:
            self.aof.end_group()

    def after_blocked_attempt(self, reply: object, proto: int) -> bytes:
        self.db = self.blocking.attempt_db  # the waiter's database: its effects are there
        if self.db.touched:
            # a served pop is a write like any other; its effects are named after the command
            # the waiter's attempt ran (narrowed to the ready key), not the one that fed it
            outer, self.current = self.current, self.blocking.attempting
            self.apply_effects(reply)
            self.current = outer
        return self.encode_other(reply, proto)
