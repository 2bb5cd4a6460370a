"""Blocking commands on the router: park the client, wake it, time it out, forget it.

One worker (every key on it): the command goes as ``__block``; the worker either completes it
at once or parks it in its registry and answers BLOCKED.  It then serves it itself, the moment
a push gives one of its keys data and before any other command runs (exactly Redis's order),
and the reply comes back as an event with some later batch.

Several workers: no single worker may serve it (two could, twice).  Under a gate over its
workers the router tries each key in argument order (``__tryblock``); if none has data it
registers the command *notify-only* on every worker, still under the gate, so no push slips in
between.  A push then only notifies; the router tries again under a gate.  Between the push and
that retry another client may take the element: the one relaxation of Redis's semantics, for
cross-worker blocking only.  A retry is the serving of a waiter, not a new command: as a Redis
waiter is never served from a key of another type (it keeps waiting), the retry leaves out the
source keys that now hold another type instead of answering WRONGTYPE (:func:`served_form`).
The notification comes after the whole command, transaction or script that fed the key (the
worker defers it like any serving), and the retry waits for the gate of a running EXEC.

XREAD and XREADGROUP over several workers take this road too, with an attempt of their own
(``shardis.router.streams``): the first try is the synchronous read over every stream, a
retry serves from the first stream with entries; an XREADGROUP retry is not spared the error
of a stream gone or a group destroyed (its waiter's ``gone``), as Redis answers it.

The timeout runs on the router; on expiry it unregisters the command everywhere and answers
nil, unless a worker served it first: the worker's answer to ``__unblock`` comes after any
event it sent, so the two cannot both win.  A client that disconnects is unregistered too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from shardis import errors
from shardis.commands import Command, lookup
from shardis.commands.lists import LEFT, RIGHT, parse_position
from shardis.errors import ReplyError
from shardis.floats import parse_long_double
from shardis.protocol import command_code
from shardis.resp import NULL_ARRAY, encode, encode_error
from shardis.router.client import CURRENT_DB, ClientConnection, Reply
from shardis.router.lists import lmpop, move_element
from shardis.worker.blocking import BLOCKERS

if TYPE_CHECKING:
    from shardis.router.core import Router

log = logging.getLogger("shardis.router")

#: The worker's BLOCKED answer, encoded (a status no blocking command ever replies).
BLOCKED_REPLY = b"+__BLOCKED\r\n"


def parse_timeout(raw: bytes) -> float:
    """Seconds to wait (0: forever), with Redis's checks and texts."""
    value = parse_long_double(raw)
    if value is None or (isinstance(value, float) and math.isinf(value)):
        raise ReplyError("ERR timeout is not a float or out of range")
    milliseconds = math.ceil(value * 1000)
    if milliseconds < 0:
        raise ReplyError("ERR timeout is negative")
    return milliseconds / 1000


class BlockedRequest:
    __slots__ = ("ticket", "client", "reply", "args", "proto", "db", "keys", "workers",
                 "timeout", "timer", "attempting", "notified", "expiring", "done")

    def __init__(self, ticket: int, client: ClientConnection, reply: Reply, args: list[bytes],
                 keys: list[bytes], workers: list[int], timeout: float) -> None:
        self.ticket = ticket
        self.client = client
        self.reply = reply
        self.args = args
        self.proto = client.proto
        #: the client's database (SELECT) when it blocked: its keys are there.
        self.db = client.db
        self.keys = keys
        self.workers = workers
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None
        self.attempting = False
        self.notified = False
        #: the timeout fired: no new attempt may pop anything for this request.
        self.expiring = False
        self.done = False


class StartTarget:
    """The answer to a one-worker ``__block``: completed at once, or parked."""

    __slots__ = ("coordinator", "request")

    def __init__(self, coordinator: BlockingCoordinator, request: BlockedRequest) -> None:
        self.coordinator = coordinator
        self.request = request

    def fill(self, data: bytes) -> None:
        if data == BLOCKED_REPLY:
            self.coordinator.park(self.request)
        else:
            self.coordinator.finish(self.request, data)


#: blocking command name -> its cross-worker attempt (default: the first key with data, in
#: argument order, tried with ``__tryblock`` one key at a time: BLPOP, BRPOP, BZPOPMIN...).
CrossAttempt = Callable[["BlockingCoordinator", BlockedRequest], Awaitable[bytes | None]]
CROSS_ATTEMPTS: dict[bytes, CrossAttempt] = {}


def cross_attempt(*names: str) -> Callable[[CrossAttempt], CrossAttempt]:
    """Register how a blocking command is tried once across workers (under their gate)."""

    def register(attempt: CrossAttempt) -> CrossAttempt:
        for name in names:
            CROSS_ATTEMPTS[name.encode()] = attempt
        return attempt

    return register


async def _pop_first_key_with_data(coordinator: BlockingCoordinator,
                                   request: BlockedRequest) -> bytes | None:
    args, router = request.args, coordinator.router
    for key in request.keys:
        single = [args[0], key, args[-1]]
        data = await coordinator.call_raw(router.worker_of(key), [b"__tryblock", *single],
                                          request)
        if data != BLOCKED_REPLY:
            return data
    return None


@cross_attempt("blmove", "brpoplpush")
async def _move_element(coordinator: BlockingCoordinator, request: BlockedRequest) -> bytes | None:
    args = request.args
    if args[0].lower() == b"blmove":
        wherefrom, whereto = parse_position(args[3]), parse_position(args[4])
    else:
        wherefrom, whereto = RIGHT, LEFT
    element = await move_element(coordinator.router, args[1], args[2], wherefrom, whereto)
    return None if element is None else encode(element, request.proto)


@cross_attempt("blmpop")
async def _mpop(coordinator: BlockingCoordinator, request: BlockedRequest) -> bytes | None:
    reply = await lmpop(coordinator.router, request.client, [b"LMPOP", *request.args[2:]])
    return None if reply is NULL_ARRAY else encode(reply, request.proto)


def sources_of(args: list[bytes], keys: list[bytes]) -> list[bytes]:
    """The keys a blocking command pops from (BLMOVE's destination is not one)."""
    return [args[1]] if args[0].lower() in (b"blmove", b"brpoplpush") else keys


def with_sources(args: list[bytes], sources: list[bytes]) -> list[bytes]:
    """The command with only ``sources`` as its source keys (a non-empty subset)."""
    name = args[0].lower()
    if name in (b"blmove", b"brpoplpush"):
        return args
    if name == b"xread":
        from shardis.commands.streams import xread_subset

        return xread_subset(args, sources)
    if name in (b"blmpop", b"bzmpop"):
        return [args[0], args[1], b"%d" % len(sources), *sources, *args[3 + int(args[2]):]]
    return [args[0], *sources, args[-1]]


async def served_form(router: Router, request: BlockedRequest) -> BlockedRequest | None:
    """The request as a retry may serve it: without the source keys that hold another type
    than the command pops (one TYPE per key, all sent at once); None if no key is left."""
    type_reply = b"+%s\r\n" % BLOCKERS[request.args[0].lower()].type_name
    sources = sources_of(request.args, request.keys)
    types = [router.call(router.worker_of(key), [b"TYPE", key], 2, raw=True, db=request.db)
             for key in sources]
    kept = [key for key, kind in zip(sources, types)
            if await kind in (type_reply, b"+none\r\n")]
    if not kept:
        return None
    args = with_sources(request.args, kept)
    keys = kept if args is not request.args else request.keys
    return BlockedRequest(request.ticket, request.client, request.reply, args, keys,
                          request.workers, request.timeout)


class BlockingCoordinator:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.requests: dict[int, BlockedRequest] = {}
        self._tickets = itertools.count(1)

    def __len__(self) -> int:
        return len(self.requests)

    # Starting ----------------------------------------------------------------------------------
    def start(self, client: ClientConnection, spec: Command, args: list[bytes]) -> None:
        router = self.router
        try:
            timeout = parse_timeout(args[spec.timeout_arg])
        except ReplyError as exc:
            router.reply_error(client, exc.message)
            return
        keys = [args[i] for i in spec.key_indexes(args)]
        workers = list(dict.fromkeys(router.worker_of(key) for key in keys))
        if router.gates and not router.gates.isdisjoint(workers):
            router.hold(client, args)
            return
        router.stats.commands += 1
        reply = Reply(client)
        client.replies.append(reply)
        client.waiting = True
        request = BlockedRequest(next(self._tickets), client, reply, args, keys, workers,
                                 timeout)
        self.requests[request.ticket] = request
        if len(workers) == 1:
            command = [b"__block", b"%d" % request.ticket, b"0", b"%d" % request.proto, *args]
            router.links[workers[0]].send(StartTarget(self, request),
                                          command_code(request.proto, request.db), command)
            router.schedule_flush()
        else:
            router.gates.update(workers)
            router.loop.create_task(self.attempt_across(request, gated=True))

    def call_raw(self, worker: int, args: list[bytes], request: BlockedRequest,
                 proto: int | None = None) -> asyncio.Future:
        """``args`` for ``request`` on ``worker``: in its database, its reply encoded in its
        protocol (or ``proto``)."""
        return self.router.call(worker, args, proto or request.proto, raw=True, db=request.db)

    # Waiting -----------------------------------------------------------------------------------
    def park(self, request: BlockedRequest) -> None:
        if request.done or request.timer is not None or not request.timeout:
            return
        request.timer = self.router.loop.call_later(request.timeout, self.on_timeout, request)

    async def attempt_across(self, request: BlockedRequest, gated: bool) -> None:
        """Try the keys in order under a gate; register notify-only everywhere if none has
        data.  ``gated``: the caller already closed the gate (at dispatch time)."""
        router = self.router
        CURRENT_DB.set(request.db)  # this task acts in the waiter's database
        request.attempting = True
        workers = request.workers
        try:
            if not gated:
                await router.acquire_gates(workers)
            if request.done or request.expiring:
                return  # timed out (or finished) while we waited for the gate: pop nothing
            try:
                if gated and await self.out_of_memory(request):
                    raise ReplyError(errors.OOM)
                data = await self.cross_attempt(request, retry=not gated)
            except ReplyError as exc:
                data = encode_error(exc.message)
            if data is not None:
                self.unregister(request)
                self.finish(request, data)
                return
            command = [b"__block", b"%d" % request.ticket, b"1", b"%d" % request.proto,
                       *request.args]
            for future in [self.call_raw(w, command, request) for w in workers]:
                await future
            self.park(request)
        except Exception:  # never leave the gate closed or the client hanging
            log.exception("blocking attempt failed")
            self.finish(request, b"-ERR internal error while blocking\r\n")
        finally:
            request.attempting = False
            router.gates.difference_update(workers)
            router.release_held()
        if request.notified and not request.done and not request.expiring:
            request.notified = False
            router.loop.create_task(self.attempt_across(request, gated=False))

    async def out_of_memory(self, request: BlockedRequest) -> bool:
        """A ``denyoom`` blocking command (BLMOVE, BRPOPLPUSH) over workers one of which is
        out of memory is refused before its first attempt, as Redis's ``processCommand``
        refuses it; a waiter served later is not asked again (Redis serves it)."""
        router = self.router
        return (bool(router.config.get("maxmemory"))
                and "denyoom" in lookup(request.args).flags
                and await router.out_of_memory(request.workers))

    async def cross_attempt(self, request: BlockedRequest, retry: bool = False) -> bytes | None:
        """The command once, without waiting, over its workers (gated): the encoded reply, or
        None when it would have to wait.  A ``retry`` serves a waiter: keys of another type
        are left out (see :func:`served_form`)."""
        if retry and BLOCKERS[request.args[0].lower()].gone is None:
            # (a waiter that gets an error when its key goes, XREADGROUP, is not spared it)
            served = await served_form(self.router, request)
            if served is None:
                return None
            request = served
        attempt = CROSS_ATTEMPTS.get(request.args[0].lower(), _pop_first_key_with_data)
        return await attempt(self, request)

    # Waking ------------------------------------------------------------------------------------
    def on_event(self, ticket: int, data: bytes | None) -> None:
        """A worker served a parked command (``data``) or saw a push for a notify-only one."""
        request = self.requests.get(ticket)
        if request is None or request.done:
            if data is not None:
                # Served for a client that disconnected meanwhile: the element is gone with it
                # (Redis, single-threaded, cannot meet this race).
                log.warning("a blocked command was served after its client left; reply dropped")
            return
        if data is not None:
            self.finish(request, data)
        elif request.expiring:
            return
        elif request.attempting:
            request.notified = True
        else:
            self.router.loop.create_task(self.attempt_across(request, gated=False))

    def on_timeout(self, request: BlockedRequest) -> None:
        request.timer = None
        if not request.done:
            self.router.loop.create_task(self.expire(request))

    def blocked_ids(self) -> set[int]:
        """The clients waiting in a blocking command (CLIENT LIST's ``b`` flag)."""
        return {request.client.id for request in self.requests.values() if not request.done}

    def unblock(self, client_id: int, error: bytes | None) -> bool:
        """CLIENT UNBLOCK: end the client's blocked command as its timeout would, or with
        ``error``; False when that client is not blocked."""
        for request in self.requests.values():
            if request.client.id == client_id and not request.done and not request.expiring:
                if request.timer is not None:
                    request.timer.cancel()
                    request.timer = None
                self.router.loop.create_task(self.expire(request, error))
                return True
        return False

    async def expire(self, request: BlockedRequest, data: bytes | None = None) -> None:
        """The timeout (or CLIENT UNBLOCK): unregister, then answer nil (or ``data``)."""
        request.expiring = True
        while request.attempting:
            await asyncio.sleep(0.001)
        if request.done:
            return
        # A served reply, if any, arrives before the answer to __unblock: wait for those.
        for future in self.unregister(request):
            await future
        if not request.done:
            self.finish(request, data or encode(NULL_ARRAY, request.proto))

    # Ending ------------------------------------------------------------------------------------
    def finish(self, request: BlockedRequest, data: bytes) -> None:
        if request.done:
            return
        request.done = True
        self.requests.pop(request.ticket, None)
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        client = request.client
        if data.startswith(b"-"):
            self.router.stats.error_replies += 1
        request.reply.data = data
        client.waiting = False
        self.router.touched.add(client)
        self.router.schedule_client_flush()
        client.resume()

    def unregister(self, request: BlockedRequest) -> list[asyncio.Future]:
        command = [b"__unblock", b"%d" % request.ticket]
        return [self.router.call(worker, command, 2, raw=True, db=request.db)
                for worker in request.workers]

    def replay(self, worker: int) -> None:
        """Park again, on a restarted worker, the commands that waited there."""
        for request in list(self.requests.values()):
            if worker not in request.workers or request.done or request.attempting:
                continue
            notify_only = b"1" if len(request.workers) > 1 else b"0"
            command = [b"__block", b"%d" % request.ticket, notify_only, b"%d" % request.proto,
                       *request.args]
            if notify_only == b"0":
                self.router.links[worker].send(StartTarget(self, request),
                                               command_code(request.proto, request.db),
                                               command)
                self.router.schedule_flush()
            else:
                self.call_raw(worker, command, request)

    def client_gone(self, client: ClientConnection) -> None:
        for request in [r for r in self.requests.values() if r.client is client]:
            request.done = True
            self.requests.pop(request.ticket, None)
            if request.timer is not None:
                request.timer.cancel()
            self.unregister(request)

