"""Where pub/sub channels live: on workers, which makes the design work with many routers.

Classic channels and patterns all live on one hub worker (worker 0): every PUBLISH goes
through it, so messages from one publisher reach every subscriber in publish order, whichever
router they are connected to.  Sharded channels (SSUBSCRIBE/SPUBLISH) live on the worker that
owns the channel's slot, like keys, and are ordered per channel, as in Redis Cluster.

A worker does not know clients: it counts, per router (its ZeroMQ identity), how many client
subscriptions that router holds for each channel and pattern.  PUBLISH answers the sum (every
receiving subscriber of the whole server) and queues one message per interested router, which
fans it out to its own clients.
"""

from __future__ import annotations

from shardis.glob import glob_match

CHANNEL, PATTERN, SHARD = b"c", b"p", b"s"


class PubSubRegistry:
    def __init__(self) -> None:
        #: the router that sent the batch being executed (set by the worker's server loop).
        self.peer = b""
        self.tables: dict[bytes, dict[bytes, dict[bytes, int]]] = {
            CHANNEL: {}, PATTERN: {}, SHARD: {}
        }
        #: router identity -> messages to push to it after the current batch.
        self.pushes: dict[bytes, list[tuple]] = {}

    def subscribe(self, kind: bytes, name: bytes, delta: int) -> None:
        """Add ``delta`` (+1/-1) client subscriptions of the current router to ``name``."""
        table = self.tables[kind]
        peers = table.setdefault(name, {})
        count = peers.get(self.peer, 0) + delta
        if count > 0:
            peers[self.peer] = count
        else:
            peers.pop(self.peer, None)
            if not peers:
                del table[name]

    def forget_peer(self, peer: bytes) -> None:
        for table in self.tables.values():
            for name in [n for n, peers in table.items() if peer in peers]:
                del table[name][peer]
                if not table[name]:
                    del table[name]

    def publish(self, channel: bytes, message: bytes, sharded: bool) -> int:
        """Queue the message for every interested router; the number of receiving clients."""
        receivers = 0
        table = self.tables[SHARD if sharded else CHANNEL]
        kind = b"smessage" if sharded else b"message"
        for peer, count in table.get(channel, {}).items():
            receivers += count
            self.pushes.setdefault(peer, []).append((kind, channel, None, message))
        if not sharded:
            for pattern, peers in self.tables[PATTERN].items():
                if glob_match(pattern, channel):
                    for peer, count in peers.items():
                        receivers += count
                        self.pushes.setdefault(peer, []).append(
                            (b"pmessage", channel, pattern, message))
        return receivers

    def counts(self, kind: bytes, name: bytes) -> int:
        return sum(self.tables[kind].get(name, {}).values())

    def names(self, kind: bytes, pattern: bytes | None) -> list[bytes]:
        return [n for n in self.tables[kind] if pattern is None or glob_match(pattern, n)]

    def take_pushes(self) -> dict[bytes, list[tuple]]:
        pushes, self.pushes = self.pushes, {}
        return pushes
