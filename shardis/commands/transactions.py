"""Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH — table entries and the worker side of
WATCH.  The router queues and runs transactions (``shardis.router.transactions``).

WATCH on a worker: a watched key carries a version that the shard bumps whenever a command
changes the key (the effects hook, ``Shard.apply_effects``), expiry and FLUSHALL included.  The
router keeps the versions it saw at WATCH time and compares them at EXEC, under the gate.
"""

from __future__ import annotations

from shardis.commands import Fanout, command
from shardis.worker.keyspace import Keyspace

R = Fanout.ROUTER
TX = "transactions"

command("multi", 1, "noscript loading stale fast allow_busy", fanout=R,
        acl="fast transaction", group=TX)(None)
command("exec", 1, "noscript loading stale skip_slowlog", fanout=R,
        acl="slow transaction", group=TX)(None)
command("discard", 1, "noscript loading stale fast allow_busy", fanout=R,
        acl="fast transaction", group=TX)(None)
command("watch", -2, "noscript loading stale fast allow_busy", keys=(1, -1, 1), fanout=R,
        acl="fast transaction", group=TX)(None)
command("unwatch", 1, "noscript loading stale fast allow_busy", fanout=R,
        acl="fast transaction", group=TX)(None)


def _versions(db: Keyspace, keys: list[bytes]) -> list[int]:
    for key in keys:
        db.peek(key)  # an expired key is reclaimed now...
    # ...and its version is bumped when the shard applies this command's effects, just after:
    # count those pending bumps in.
    pending = db.touched
    return [db.watched[key][1] + pending.count(key) if key in db.watched else -1 for key in keys]


@command("__watch", -2, "write internal", fanout=Fanout.SINGLE)
def internal_watch_command(db: Keyspace, args: list[bytes]) -> object:
    """``__watch key...`` -> the keys' versions; each key gains one watcher."""
    for key in args[1:]:
        entry = db.watched.setdefault(key, [0, 0])
        entry[0] += 1
    return _versions(db, args[1:])


@command("__unwatch", -2, "write internal", fanout=Fanout.SINGLE)
def internal_unwatch_command(db: Keyspace, args: list[bytes]) -> object:
    """``__unwatch key...``: each key loses one watcher; unwatched keys keep no version."""
    for key in args[1:]:
        entry = db.watched.get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] <= 0:
                del db.watched[key]
    return len(args) - 1


@command("__watch_versions", -2, "readonly internal", fanout=Fanout.SINGLE)
def internal_watch_versions_command(db: Keyspace, args: list[bytes]) -> object:
    return _versions(db, args[1:])


@command("__tx_begin", 1, "write internal", fanout=Fanout.SINGLE)
def internal_tx_begin_command(db: Keyspace, args: list[bytes]) -> object:
    """A transaction's part starts on this worker: blocked clients wait for ``__tx_end``."""
    db.shard.begin_transaction()  # type: ignore[attr-defined]
    return 1


@command("__tx_end", 1, "write internal", fanout=Fanout.SINGLE)
def internal_tx_end_command(db: Keyspace, args: list[bytes]) -> object:
    """Every worker of the transaction has run its part: serve the clients it made ready."""
    db.shard.end_transaction()  # type: ignore[attr-defined]
    return 1
