"""Blocked commands on a worker (BLPOP and friends), served the moment their keys get data.

The router registers a blocked command here with a ticket (``__block``).  Like Redis's
``handleClientsBlockedOnKeys``, after every command that touched a key with waiters the shard
serves those waiters in FIFO order before running the next command, so a blocked client gets
the element before anybody else can take it; after a whole transaction or script, not in its
middle (``Shard.serve_blocked``).  The served reply travels back as an *event* with the
current batch's replies (see ``shardis.protocol``).

As in Redis 7.0, a waiter is served from the key that became ready, not from the first of its
keys with data: its command is *narrowed* to that key.  A ready key holding another type than
the waiter pops is skipped (the waiter keeps waiting); an error met while serving (BLMOVE's
destination holds another type) is the waiter's reply, and nothing moved.  A blocked XREADGROUP
whose key is deleted or replaced by another type gets Redis's UNBLOCKED error (its
``Blocker.gone``).  A waiter waits on its
*source* keys only: a push to BLMOVE's destination does not concern it.

A command whose keys live on several workers cannot be served by one of them alone (two
workers could serve it twice); it is registered *notify-only* on each: the first push to one of
its keys sends an event without a reply, and the router retries the command under a gate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shardis.errors import ReplyError
from shardis.resp import Status
from shardis.worker.types import TYPES

#: What ``__block`` answers when the command did not complete and now waits (never a real
#: reply of a blocking command, which is an array or null).
BLOCKED = Status(b"__BLOCKED")

#: command name (lower-case bytes) -> attempt(db, args): the reply, or None if it must wait.
ATTEMPTS: dict[bytes, Callable[[Any, list[bytes]], object | None]] = {}

Narrow = Callable[[list[bytes], bytes], list[bytes]]


def one_key_before_timeout(args: list[bytes], key: bytes) -> list[bytes]:
    """``BLPOP k1 k2 0`` narrowed to ``k2``: ``BLPOP k2 0`` (BRPOP, BZPOPMIN, BZPOPMAX)."""
    return [args[0], key, args[-1]]


def numkeys_narrowed(args: list[bytes], key: bytes) -> list[bytes]:
    """``BLMPOP timeout 2 k1 k2 LEFT ...`` narrowed to ``k2``: ``BLMPOP timeout 1 k2 LEFT ...``
    (BZMPOP too); numkeys was checked when the command blocked."""
    return [args[0], args[1], b"1", key, *args[3 + int(args[2]):]]


def unchanged(args: list[bytes], key: bytes) -> list[bytes]:
    """BLMOVE and BRPOPLPUSH: one source key already."""
    return args


@dataclass(frozen=True)
class Blocker:
    """How the worker serves one blocking command."""

    attempt: Callable[[Any, list[bytes]], object | None]
    #: the TYPE a ready key must hold for this command to be served from it.
    type_name: bytes
    #: the command reduced to one ready key.
    narrow: Narrow
    #: the keys it waits on (None: every key of its key spec).
    sources: Callable[[list[bytes]], list[bytes]] | None
    #: it consumes nothing (XREAD): one that cannot be served does not hold up the next.
    independent: bool
    #: the error a waiter gets when its key is deleted or replaced by another type (XREADGROUP:
    #: Redis's ``unblockDeletedStreamReadgroupClients``); None: it keeps waiting.
    gone: str | None = None


#: command name (lower-case bytes) -> its Blocker.
BLOCKERS: dict[bytes, Blocker] = {}


def blocking_attempt(name: str, type_name: bytes, narrow: Narrow = one_key_before_timeout,
                     sources: Callable[[list[bytes]], list[bytes]] | None = None,
                     independent: bool = False, gone: str | None = None) -> Callable:
    """Register how a blocking command tries to complete without waiting, and how the worker
    serves it from one ready key."""

    def register(attempt: Callable) -> Callable:
        ATTEMPTS[name.encode()] = attempt
        BLOCKERS[name.encode()] = Blocker(attempt, type_name, narrow, sources, independent,
                                          gone)
        return attempt

    return register


@dataclass(eq=False)
class Waiter:
    ticket: int
    proto: int
    args: list[bytes]
    keys: list[bytes]
    notify_only: bool
    blocker: Blocker = field(repr=False)
    #: the database the waiter's keys are in (its client's SELECT).
    db: int = 0


class BlockingRegistry:
    """Waiters per key, FIFO, and the events produced while a batch runs."""

    def __init__(self) -> None:
        #: (database, key) -> its waiters, FIFO.
        self.by_key: dict[tuple[int, bytes], deque[Waiter]] = {}
        self.by_ticket: dict[int, Waiter] = {}
        #: (database, key) that got data since the last serve, in order.
        self.ready: list[tuple[int, bytes]] = []
        #: the keyspace of the waiter being served (its effects are applied there).
        self.attempt_db: Any = None
        #: (ticket, reply or None) to send with the current batch's replies.
        self.events: list[tuple[int, bytes | None]] = []
        #: the (narrowed) command of the waiter being served: its effects are named after it.
        self.attempting: list[bytes] | None = None

    def __len__(self) -> int:
        return len(self.by_ticket)

    def register(self, waiter: Waiter) -> None:
        self.remove(waiter.ticket)
        self.by_ticket[waiter.ticket] = waiter
        for key in dict.fromkeys(waiter.keys):
            self.by_key.setdefault((waiter.db, key), deque()).append(waiter)

    def remove(self, ticket: int) -> bool:
        waiter = self.by_ticket.pop(ticket, None)
        if waiter is None:
            return False
        for key in dict.fromkeys(waiter.keys):
            entry = (waiter.db, key)
            queue = self.by_key.get(entry)
            if queue is not None:
                try:
                    queue.remove(waiter)
                except ValueError:
                    pass
                if not queue:
                    del self.by_key[entry]
        return True

    def note_touched(self, keys: list[bytes], db: int = 0) -> None:
        """Called with the keys a command changed in database ``db``: those with waiters
        become ready."""
        by_key = self.by_key
        for key in keys:
            if (db, key) in by_key:
                self.ready.append((db, key))

    def signal_all(self, dbs: tuple[int, ...]) -> None:
        """Every key with waiters in these databases may be ready (SWAPDB)."""
        self.ready += [entry for entry in self.by_key if entry[0] in dbs]

    def serve(self, keyspace: Callable[[int], Any],
              encode: Callable[[object, int], bytes]) -> None:
        """Serve waiters on ready keys, FIFO per key, until nothing more can be served.
        ``keyspace(n)`` is database n's keyspace.

        ``encode(reply, proto)`` also applies the attempt's effects, which may make more keys
        ready (BLMOVE pushes): the loop goes on until none is left.
        """
        while self.ready:
            db, key = self.ready.pop(0)
            self.attempt_db = keyspace(db)
            self.serve_key(self.attempt_db, (db, key), encode)

    def serve_key(self, db: Any, entry: tuple[int, bytes],
                  encode: Callable[[object, int], bytes]) -> None:
        """Serve ``entry``'s waiters in FIFO order, each from this key alone, as Redis's
        ``serveClientsBlockedOn*Key`` do: a waiter of another type than the key holds is
        passed over (it keeps waiting), so the one behind it may still be served."""
        key = entry[1]
        position = 0
        while True:
            queue = self.by_key.get(entry)
            if not queue or position >= len(queue):
                return
            waiter = queue[position]
            if waiter.notify_only:
                self.remove(waiter.ticket)
                self.events.append((waiter.ticket, None))
                continue
            value = db.get(key)
            blocker = waiter.blocker
            if value is None or TYPES[type(value)].name != blocker.type_name:
                if blocker.gone is not None:  # XREADGROUP: its stream is gone
                    self.remove(waiter.ticket)
                    self.events.append((waiter.ticket, encode(ReplyError(blocker.gone),
                                                              waiter.proto)))
                    continue
                position += 1  # Redis keeps it waiting; a waiter of this type may follow
                continue
            self.attempting = attempt = blocker.narrow(waiter.args, key)
            try:
                reply = blocker.attempt(db, attempt)
            except ReplyError as exc:
                reply = exc  # BLMOVE to a key of another type: the error is its answer
            if reply is None:
                if blocker.independent:
                    position += 1  # a reader consumes nothing: the next may be served
                    continue
                return  # the key has nothing (left) for this waiter
            self.remove(waiter.ticket)
            self.events.append((waiter.ticket, encode(reply, waiter.proto)))

    def take_events(self) -> list[tuple[int, bytes | None]]:
        events, self.events = self.events, []
        return events
