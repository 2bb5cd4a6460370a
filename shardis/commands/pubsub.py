"""Pub/sub: table entries, and the worker side (channel counts per router, PUBLISH).

The router keeps which of its clients subscribe to what (``shardis.router.pubsub``); workers
keep counts per router and route messages (``shardis.worker.pubsub``).
"""

from __future__ import annotations

from shardis.commands import Fanout, command, container
from shardis.worker.keyspace import Keyspace
from shardis.worker.pubsub import CHANNEL, PATTERN, SHARD

R = Fanout.ROUTER
PS = "pubsub"

command("subscribe", -2, "pubsub noscript loading stale", fanout=R, acl="pubsub slow",
        group=PS)(None)
command("unsubscribe", -1, "pubsub noscript loading stale", fanout=R, acl="pubsub slow",
        group=PS)(None)
command("psubscribe", -2, "pubsub noscript loading stale", fanout=R, acl="pubsub slow",
        group=PS)(None)
command("punsubscribe", -1, "pubsub noscript loading stale", fanout=R, acl="pubsub slow",
        group=PS)(None)
command("ssubscribe", -2, "pubsub noscript loading stale", keys=(1, -1, 1), fanout=R,
        acl="pubsub slow", group=PS)(None)
command("sunsubscribe", -1, "pubsub noscript loading stale", keys=(1, -1, 1), fanout=R,
        acl="pubsub slow", group=PS)(None)


@command("publish", 3, "pubsub loading stale fast", acl="pubsub fast", group=PS)
def publish_command(db: Keyspace, args: list[bytes]) -> object:
    """Routed to the hub worker (a command without keys goes to worker 0)."""
    return db.pubsub.publish(args[1], args[2], sharded=False)  # type: ignore[attr-defined]


@command("spublish", 3, "pubsub loading stale fast", keys=(1, 1, 1), acl="pubsub fast",
         group=PS)
def spublish_command(db: Keyspace, args: list[bytes]) -> object:
    return db.pubsub.publish(args[1], args[2], sharded=True)  # type: ignore[attr-defined]


container("pubsub", group=PS)
for _name, _arity in (("channels", -2), ("numsub", -2), ("numpat", 2), ("shardchannels", -2),
                      ("shardnumsub", -2)):
    command(_name, _arity, "pubsub loading stale", fanout=Fanout.COORDINATED,
            acl="pubsub slow", group=PS, parent="pubsub")(None)
command("help", 2, "loading stale", fanout=R, acl="slow", group=PS, parent="pubsub")(None)


@command("__sub", 4, "write internal", fanout=Fanout.SINGLE)
def internal_sub_command(db: Keyspace, args: list[bytes]) -> object:
    """``__sub c|p|s name delta``: the sending router's subscriptions to ``name`` change."""
    db.pubsub.subscribe(args[1], args[2], int(args[3]))  # type: ignore[attr-defined]
    return 1


@command("__pubsub_names", -2, "readonly internal", fanout=Fanout.SINGLE)
def internal_names_command(db: Keyspace, args: list[bytes]) -> object:
    """``__pubsub_names c|s [pattern]``: active channels."""
    pattern = args[2] if len(args) > 2 else None
    return db.pubsub.names(args[1], pattern)  # type: ignore[attr-defined]


@command("__pubsub_counts", -2, "readonly internal", fanout=Fanout.SINGLE)
def internal_counts_command(db: Keyspace, args: list[bytes]) -> object:
    """``__pubsub_counts c|s name...``: subscribers per channel; ``p`` alone: patterns."""
    registry = db.pubsub  # type: ignore[attr-defined]
    if args[1] == PATTERN:
        return len(registry.tables[PATTERN])
    return [registry.counts(args[1], name) for name in args[2:]]


@command("__notify", 2, "write internal", fanout=Fanout.SINGLE)
def internal_notify_command(db: Keyspace, args: list[bytes]) -> object:
    """``__notify flags``: this worker's notify-keyspace-events classes (an integer)."""
    shard = db.shard  # type: ignore[attr-defined]
    shard.set_notify_flags(int(args[1]))
    if not shard.notify_flags and not shard.log_expired:
        for keyspace in shard.keyspaces():
            keyspace.expired_log.clear()
    return 1


__all__ = ["CHANNEL", "SHARD"]
