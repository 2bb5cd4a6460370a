"""A shard: one keyspace, the command executor, and the one place where effects are applied.

Operations (``shardis.commands.*``) are pure functions of the keyspace and the arguments; they
report what they changed through the keyspace (:attr:`Keyspace.touched`).  :meth:`Shard.execute`
runs one command and then applies those effects in one spot: the dirty counter now, and WATCH
versions, the AOF (``shardis.worker.aoflog``: the write's effect, logged here and nowhere else)
and keyspace notifications.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from shardis.commands import COMMANDS, load_families, lookup
from shardis.errors import ReplyError
from shardis.notify import EXPIRED, channel_messages, command_events
from shardis.resp import NULL_BULK, OK, OK_REPLY, encode, encode_error, encode_int
from shardis.worker.aclhub import AclHub
from shardis.worker.aoflog import AofLog
from shardis.worker.blocking import BlockingRegistry
from shardis.worker.keyspace import Keyspace
from shardis.worker.pubsub import PubSubRegistry
from shardis.worker.replylog import ReplyLog
from shardis.worker.tracking import Tracking

log = logging.getLogger("shardis.worker")

_BULK_HEADERS = [b"$%d\r\n" % length for length in range(1024)]

#: name -> (op, arity) for commands without subcommands: the executor's fast lookup.
PLAIN_OPS: dict[bytes, tuple] = {}


def _build_plain_ops() -> None:
    for name, spec in COMMANDS.items():
        if spec.op is not None and not spec.subcommands:
            PLAIN_OPS[name] = (spec.op, spec.arity)


@dataclass
class ShardStats:
    """Counters the router sums into INFO."""

    commands: int = 0
    error_replies: int = 0
    dirty: int = 0


class Shard:
    """Executes batches of commands against one keyspace, in order."""

    def __init__(self, index: int = 0) -> None:
        load_families()
        if not PLAIN_OPS:
            _build_plain_ops()
        self.index = index
        self.db = Keyspace()
        self.stats = ShardStats()
        self.db.stats = self.stats  # type: ignore[attr-defined]
        self.blocking = BlockingRegistry()
        self.db.blocking = self.blocking  # type: ignore[attr-defined]
        self.db.shard = self  # type: ignore[attr-defined]  # scripts run commands through it
        self.pubsub = PubSubRegistry()
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
        self.db.pubsub = self.pubsub  # type: ignore[attr-defined]
        #: client-side caching: who read which keys (``shardis.worker.tracking``).
        self.tracking = Tracking(index)
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

    def execute_batch(self, batch: list[tuple[int, list[bytes]]]) -> list[bytes]:
        """Run every command of a batch in order; one encoded reply per command.

        Written as one loop with hoisted locals: it runs for every command the shard sees.
        """
        db = self.db
        db.tick()
        self.stats.commands += len(batch)
        plain_get = PLAIN_OPS.get
        touched = db.touched
        out: list[bytes] = []
        append = out.append
        for proto, args in batch:
            entry = plain_get(args[0])
            if entry is None:
                append(self.execute(proto, args))
                continue
            op, arity = entry
            argc = len(args)
            if not (argc == arity if arity > 0 else argc >= -arity):
                append(self.execute(proto, args))
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
        return out

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
        try:
            reply = lookup(args, internal).op(self.db, args)  # type: ignore[misc]
        except ReplyError as exc:
            reply = exc
        except Exception as exc:  # a bug must not take the shard down with it
            reply = self.internal_error(args, exc)
        if self.db.touched:
            self.apply_effects(reply)
        self.current = outer
        return reply

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
        """Background work between batches: active expiry, within a time budget."""
        self.current = None
        if not self.active_expire_enabled:  # DEBUG SET-ACTIVE-EXPIRE 0
            return
        if self.db.active_expire(budget_s) and self.db.touched:
            self.apply_effects()

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
                            db.propagated)
            if not db.notify_flags:
                db.expired_log.clear()
        if self.blocking.by_key:
            self.blocking.note_touched(touched)
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
        db.propagated = None
        db.quiet.clear()
        db.events.clear()

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
        events += [(b"expired", EXPIRED, key) for key in expired]
        publish = self.pubsub.publish
        flags = db.notify_flags
        for event, cls, key in events:
            for channel, message in channel_messages(flags, event, cls, key):
                publish(channel, message, sharded=False)

    def serve_blocked(self) -> None:
        """Serve blocked commands whose keys just got data, before the next command runs.

        Redis serves them once the command that fed the keys has ended: after EXEC for a
        transaction, after the script for EVAL.  A script's commands (``run_inside``) never call
        this; inside a transaction (``deferring``) the ready keys wait for ``__tx_end``, so a
        waiter sees the transaction's end state (``LPUSH l a; DEL l`` leaves it blocked).
        """
        if not self.deferring:
            self.blocking.serve(self.db, self.after_blocked_attempt)

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
        if self.db.touched:
            # a served pop is a write like any other; its effects are named after the command
            # the waiter's attempt ran (narrowed to the ready key), not the one that fed it
            outer, self.current = self.current, self.blocking.attempting
            self.apply_effects(reply)
            self.current = outer
        return self.encode_other(reply, proto)
