"""Blocked commands on a worker (BLPOP and friends), served the moment their keys get data.

The router registers a blocked command here with a ticket (``__block``).  Like Redis's
``handleClientsBlockedOnKeys``, after every command that touched a key with waiters the shard
serves those waiters in FIFO order before running the next command, so a blocked client gets
the element before anybody else can take it.  The served reply travels back as an *event*
with the current batch's replies (see ``shardis.protocol``).

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

#: What ``__block`` answers when the command did not complete and now waits (never a real
#: reply of a blocking command, which is an array or null).
BLOCKED = Status(b"__BLOCKED")

#: command name (lower-case bytes) -> attempt(db, args): the reply, or None if it must wait.
ATTEMPTS: dict[bytes, Callable[[Any, list[bytes]], object | None]] = {}


#: attempts that consume nothing (XREAD): a waiter that cannot be served does not hold up the
#: ones queued behind it.
INDEPENDENT: set[Callable] = set()


def blocking_attempt(name: str, independent: bool = False) -> Callable:
    """Register how a blocking command tries to complete without waiting."""

    def register(attempt: Callable) -> Callable:
        ATTEMPTS[name.encode()] = attempt
        if independent:
            INDEPENDENT.add(attempt)
        return attempt

    return register


@dataclass(eq=False)
class Waiter:
    ticket: int
    proto: int
    args: list[bytes]
    keys: list[bytes]
    notify_only: bool
    attempt: Callable[[Any, list[bytes]], object | None] = field(repr=False)


class BlockingRegistry:
    """Waiters per key, FIFO, and the events produced while a batch runs."""

    def __init__(self) -> None:
        self.by_key: dict[bytes, deque[Waiter]] = {}
        self.by_ticket: dict[int, Waiter] = {}
        #: keys that got data since the last serve, in order.
        self.ready: list[bytes] = []
        #: (ticket, reply or None) to send with the current batch's replies.
        self.events: list[tuple[int, bytes | None]] = []

    def __len__(self) -> int:
        return len(self.by_ticket)

    def register(self, waiter: Waiter) -> None:
        self.remove(waiter.ticket)
        self.by_ticket[waiter.ticket] = waiter
        for key in dict.fromkeys(waiter.keys):
            self.by_key.setdefault(key, deque()).append(waiter)

    def remove(self, ticket: int) -> bool:
        waiter = self.by_ticket.pop(ticket, None)
        if waiter is None:
            return False
        for key in dict.fromkeys(waiter.keys):
            queue = self.by_key.get(key)
            if queue is not None:
                try:
                    queue.remove(waiter)
                except ValueError:
                    pass
                if not queue:
                    del self.by_key[key]
        return True

    def note_touched(self, keys: list[bytes]) -> None:
        """Called with the keys a command changed: those with waiters become ready."""
        by_key = self.by_key
        for key in keys:
            if key in by_key:
                self.ready.append(key)

    def serve(self, db: Any, encode: Callable[[object, int], bytes]) -> None:
        """Serve waiters on ready keys, FIFO per key, until nothing more can be served.

        ``encode(reply, proto)`` also applies the attempt's effects, which may make more keys
        ready (BLMOVE pushes): the loop goes on until none is left.
        """
        while self.ready:
            key = self.ready.pop(0)
            position = 0
            while True:
                queue = self.by_key.get(key)
                if not queue or position >= len(queue):
                    break
                waiter = queue[position]
                if waiter.notify_only:
                    self.remove(waiter.ticket)
                    self.events.append((waiter.ticket, None))
                    continue
                try:
                    reply = waiter.attempt(db, waiter.args)
                except ReplyError:
                    reply = None  # e.g. the key now holds another type: Redis keeps waiting
                if reply is None:
                    if waiter.attempt in INDEPENDENT:
                        position += 1  # a reader consumes nothing: the next may be served
                        continue
                    break  # the key has nothing (left) for this waiter
                self.remove(waiter.ticket)
                self.events.append((waiter.ticket, encode(reply, waiter.proto)))

    def take_events(self) -> list[tuple[int, bytes | None]]:
        events, self.events = self.events, []
        return events
