"""A shard: one keyspace, the command executor, and the one place where effects are applied.

Operations (``shardis.commands.*``) are pure functions of the keyspace and the arguments; they
report what they changed through the keyspace (:attr:`Keyspace.touched`).  :meth:`Shard.execute`
runs one command and then applies those effects in one spot: the dirty counter now, and WATCH
versions, the AOF and keyspace notifications as those features arrive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shardis.commands import COMMANDS, load_families, lookup
from shardis.errors import ReplyError
from shardis.resp import OK, OK_REPLY, encode, encode_error, encode_int
from shardis.worker.keyspace import Keyspace

log = logging.getLogger("shardis.worker")


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
        self.index = index
        self.db = Keyspace()
        self.stats = ShardStats()
        self.db.stats = self.stats  # type: ignore[attr-defined]

    def execute_batch(self, batch: list[tuple[int, list[bytes]]]) -> list[bytes]:
        """Run every command of a batch in order; one encoded reply per command."""
        self.db.tick()
        execute = self.execute
        return [execute(proto, args) for proto, args in batch]

    def execute(self, proto: int, args: list[bytes]) -> bytes:
        db = self.db
        self.stats.commands += 1
        try:
            spec = COMMANDS.get(args[0])
            if spec is None or spec.subcommands or not spec.arity_ok(len(args)):
                spec = lookup(args, allow_internal=True)
            reply = spec.op(db, args)  # type: ignore[misc]
        except ReplyError as exc:
            reply = exc
        except Exception as exc:  # a bug must not take the shard down with it
            log.exception("command %r failed", args[:1])
            reply = ReplyError(f"ERR internal error in '{args[0].decode(errors='replace')}': {exc}")
        if db.touched:
            self.apply_effects()
        kind = type(reply)
        if kind is bytes:
            return b"$%d\r\n%b\r\n" % (len(reply), reply)
        if reply is OK:
            return OK_REPLY
        if kind is int:
            return encode_int(reply)  # type: ignore[arg-type]
        if kind is ReplyError:
            self.stats.error_replies += 1
            return encode_error(reply.message)  # type: ignore[union-attr]
        return encode(reply, proto)

    def apply_effects(self) -> None:
        """Apply what the last command reported: the single place for write side effects."""
        touched = self.db.touched
        self.stats.dirty += len(touched)
        touched.clear()
