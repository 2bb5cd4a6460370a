"""Client-side caching on the worker: which clients read which keys (Redis's tracking.c).

Invalidations are produced where the write happens: only the worker that owns a key sees
every change of it (commands, scripts, expiry, eviction).  The router tells it what a
tracking client read (``__track <client id> <key>...``, sent right after the read on the same
link, so it is in place before any later write) and which prefixes a BCAST client follows
(``__track_prefix``, on every worker).  After each command the worker checks the keys it
changed (:meth:`Tracking.invalidate`, called from ``Shard.apply_effects``) and queues push
entries for the routers of the clients concerned, which deliver them (``shardis.router.
tracking``):

* ``(b"inval", b"<client id> <writer id>", None, key)``: a key a client read has changed; the
  entry is forgotten, as in Redis (a client reads the key again to be told again);
* ``(b"bcast", b"<client id> <writer id>", prefix, key)``: a key under a BCAST prefix;
* ``(b"tflush", b"", None, b"")``: FLUSHALL/FLUSHDB: every key is invalid (from worker 0
  only, so each router hears it once).

The writer id is the client whose command made the change, when the router said so
(``__track_caller``, around the writes of a NOLOOP client): the router drops invalidations of
a NOLOOP client's own writes.  Clients are known only by (router, id); a client that stopped
tracking or left is dropped lazily, by the router, when an invalidation reaches it (Redis
does the same).
"""

from __future__ import annotations

#: ``touched`` entries that are no key (see ``Keyspace.changed_server_state``).
_NOT_KEYS = (object,)
_FLUSHES = (b"flushall", b"flushdb")


class Tracking:
    """One worker's tracking table (key -> router -> client ids) and prefix table."""

    def __init__(self, shard_index: int) -> None:
        self.shard_index = shard_index
        self.keys: dict[bytes, dict[bytes, set[int]]] = {}
        #: BCAST prefix -> router -> client ids.
        self.prefixes: dict[bytes, dict[bytes, set[int]]] = {}
        #: routers that ever registered anything (FLUSHALL tells each of them).
        self.peers: set[bytes] = set()
        #: the client whose commands run now, when the router said (NOLOOP clients).
        self.writer = b"0"

    @property
    def active(self) -> bool:
        return bool(self.keys or self.prefixes)

    def remember(self, peer: bytes, client_id: int, keys: list[bytes]) -> None:
        self.peers.add(peer)
        for key in keys:
            self.keys.setdefault(key, {}).setdefault(peer, set()).add(client_id)

    def follow(self, peer: bytes, client_id: int, prefixes: list[bytes]) -> None:
        self.peers.add(peer)
        for prefix in prefixes:
            self.prefixes.setdefault(prefix, {}).setdefault(peer, set()).add(client_id)

    def unfollow(self, peer: bytes, client_id: int) -> None:
        for prefix in list(self.prefixes):
            clients = self.prefixes[prefix].get(peer)
            if clients is not None:
                clients.discard(client_id)
                if not clients:
                    del self.prefixes[prefix][peer]
                    if not self.prefixes[prefix]:
                        del self.prefixes[prefix]

    def forget_peer(self, peer: bytes) -> None:
        """A router gone: its clients' entries go."""
        for table in (self.keys, self.prefixes):
            for name in [n for n, peers in table.items() if peer in peers]:
                del table[name][peer]
                if not table[name]:
                    del table[name]
        self.peers.discard(peer)

    def after_command(self, args: list[bytes] | None, touched: list[bytes],
                      pushes: dict[bytes, list[tuple]]) -> None:
        """Queue the invalidations of what the command (or expiry: ``args`` None) changed."""
        if args is not None and bytes(args[0]).lower() in _FLUSHES:
            self.keys.clear()  # FLUSHALL/FLUSHDB: one "everything" message instead
            if self.shard_index == 0:
                for peer in self.peers:
                    pushes.setdefault(peer, []).append((b"tflush", b"", None, b""))
            return
        writer = self.writer
        keys, prefixes = self.keys, self.prefixes
        for key in dict.fromkeys(touched):
            if type(key) in _NOT_KEYS:
                continue
            readers = keys.pop(key, None) if keys else None
            if readers:
                for peer, ids in readers.items():
                    queue = pushes.setdefault(peer, [])
                    for client_id in ids:
                        queue.append((b"inval", b"%d %b" % (client_id, writer), None, key))
            if prefixes:
                for prefix, followers in prefixes.items():
                    if key.startswith(prefix):
                        for peer, ids in followers.items():
                            queue = pushes.setdefault(peer, [])
                            for client_id in ids:
                                queue.append((b"bcast", b"%d %b" % (client_id, writer),
                                              prefix, key))
