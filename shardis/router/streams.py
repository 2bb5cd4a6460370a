"""XREAD and XREADGROUP on the router: reply shape per protocol, reads over several workers,
and BLOCK on one worker or several; the XGROUP/XINFO HELP replies.

XREAD and XREADGROUP are coordinated commands (``shardis.commands.streams`` explains why).
Their plan never forwards the command whole, because the worker answers the RESP2 shape
(``[[key, entries]]``) and a RESP3 client must get a map; the operation asks the worker(s)
in RESP2 and reshapes.

Non-blocking reads over several workers: one read per worker with its keys, merged in the
command's key order.  XREADGROUP moves its groups on (last ID, PEL), so it must fail, as in
Redis, before it delivers anything: its plan gates the workers, and the operation first checks
every key (``__xrgcheck``: type, group, ID; the first error in key order is the answer), then
reads.

``BLOCK ms`` with every key on one worker reuses the blocking framework: the operation sends
``__block`` itself (the generic dispatch cannot, since it reads a timeout in seconds at a fixed
position) and registers a :class:`~shardis.router.blocking.BlockedRequest` with the
coordinator, so timeouts, ``__unblock``, served events and ``blocked_clients`` all work as for
BLPOP.  The request's client and reply are a stand-in (:class:`_BlockedSlot`) that resolves a
future: the reply slot itself belongs to the coordinated operation, which must stay the one
that fills it and lets the client go on.  The worker's attempt resolves ``$`` when the command
first runs, by rewriting the parked arguments.

``BLOCK`` over keys on several workers takes the coordinator's cross-worker road (that of
BLPOP over several workers): under a gate over all the workers, the read is tried once as the
synchronous read (:func:`_cross_read`; ``$`` is then resolved with ``__xlastid`` and the
request rewritten to its blocked form); if nothing is there the request is registered
*notify-only* on every worker.  A worker never serves it: a push to one of its keys only
notifies the router, which retries under the gate, key by key in the command's order, each
``__tryblock`` narrowed to one key; the first key with data answers and the request is
unregistered everywhere, still under the gate.  So no worker can deliver entries (which, for
XREADGROUP, moves the group and makes PEL entries) to a client already answered: a serve and
its answer are one gated step.  The one relaxation, as for BLPOP: between a push and the
retry, another client may take the entries (another consumer of the group), and the reader
waits on.  Inside MULTI a ``BLOCK`` read does not wait (as in Redis).
"""

from __future__ import annotations

import asyncio
from typing import Any

from shardis.commands import help_reply
from shardis.commands.streams import (
    XGROUP_HELP,
    XINFO_HELP,
    XReadArgs,
    blocked_form,
    is_xreadgroup,
    parse_xread,
    xread_narrowed,
    xread_subset,
)
from shardis.errors import ReplyError
from shardis.resp import NULL_ARRAY, Raw, encode
from shardis.router.blocking import BLOCKED_REPLY, BlockedRequest, cross_attempt
from shardis.router.registry import Plan, coordinated, router_command

NULL_ARRAY_RESP2 = b"*-1\r\n"


def _keys(args: list[bytes], parsed: XReadArgs) -> list[bytes]:
    return args[parsed.streams:parsed.streams + parsed.n]


def _xread_plan(router: Any, args: list[bytes]) -> Plan:
    parsed = parse_xread(args)  # Redis's option errors come before any key is looked at
    workers = frozenset(router.worker_of(key) for key in _keys(args, parsed))
    # A group read over several workers checks every key, then reads: one atomic step.  A
    # blocking one is gated by the blocking coordinator instead.
    exclusive = len(workers) > 1 and is_xreadgroup(args) and parsed.block_ms is None
    return Plan(workers=workers, exclusive=exclusive)


async def xread(router: Any, client: Any, args: list[bytes]) -> object:
    parsed = parse_xread(args)
    keys = _keys(args, parsed)
    workers = list(dict.fromkeys(router.worker_of(key) for key in keys))
    # Inside EXEC (queued commands do not become the client's last command) BLOCK never waits.
    blocking = parsed.block_ms is not None and client.last_command.lower() != b"exec"
    if len(workers) == 1:
        if blocking:
            data = await _block(router, client, args, keys, workers[0], parsed.block_ms or 0)
        else:
            data = await router.call(workers[0], args, 2, raw=True)
        return _for_client(data, client.proto)
    if blocking:
        data = await _block_across(router, client, args, keys, workers, parsed.block_ms or 0)
        return _for_client(data, client.proto)
    found = await _gather(router, args, parsed)
    if found is None:
        return NULL_ARRAY
    if client.proto == 3:
        return dict(found)
    return found


coordinated("xread", _xread_plan)(xread)
coordinated("xreadgroup", _xread_plan)(xread)


def _for_client(data: bytes, proto: int) -> object:
    """A worker's RESP2 XREAD reply as the client's protocol wants it."""
    if data.startswith(b"-"):
        raise ReplyError(data[1:-2].decode(errors="replace"))
    if proto == 2:
        return Raw(data)
    if data == NULL_ARRAY_RESP2:
        return NULL_ARRAY
    from shardis.router.core import decode_resp3

    return {key: entries for key, entries in decode_resp3(data)}


def _raise_if_error(data: bytes) -> None:
    if data.startswith(b"-"):
        raise ReplyError(data[1:-2].decode(errors="replace"))


def _by_worker(router: Any, keys: list[bytes]) -> dict[int, list[bytes]]:
    by_worker: dict[int, list[bytes]] = {}
    for key in keys:
        by_worker.setdefault(router.worker_of(key), []).append(key)
    return by_worker


async def _check_groups(router: Any, args: list[bytes], parsed: XReadArgs) -> None:
    """XREADGROUP's per-key checks, all sent at once, the first error in key order raised."""
    assert parsed.group is not None
    keys = _keys(args, parsed)
    ids = args[parsed.streams + parsed.n:]
    checks = [router.call(router.worker_of(key), [b"__xrgcheck", key, parsed.group, raw], 2,
                          raw=True) for key, raw in zip(keys, ids)]
    for check in checks:
        _raise_if_error(await check)


async def _gather(router: Any, args: list[bytes], parsed: XReadArgs) -> list | None:
    """A non-blocking read over several workers: one read per worker with its keys (all sent
    in one step), merged in the command's key order as ``[[key, entries], ...]``; None when no
    stream had anything.  An XREAD error answers the first erring worker's (in key order),
    which may differ from the key Redis would have named; XREADGROUP checks first."""
    if parsed.group is not None:
        await _check_groups(router, args, parsed)
    keys = _keys(args, parsed)
    by_worker = _by_worker(router, keys)
    calls = {w: router.call(w, xread_subset(args, ks), 2, raw=True) for w, ks in by_worker.items()}
    from shardis.router.core import decode_resp3

    found: dict[bytes, object] = {}
    for worker in dict.fromkeys(router.worker_of(key) for key in keys):
        data = await calls[worker]
        _raise_if_error(data)
        if data != NULL_ARRAY_RESP2:
            for key, entries in decode_resp3(data):
                # a deleted entry of a consumer's history is [id, null array], which decoding
                # turned into None
                found[key] = [[i, NULL_ARRAY if f is None else f] for i, f in entries]
    if not found:
        return None
    return [[key, found[key]] for key in dict.fromkeys(keys) if key in found]


class _BlockedSlot:
    """Stands in for both the client and the reply slot of a BlockedRequest made by XREAD.

    ``BlockingCoordinator.finish`` stores the reply here (resolving ``future``) and would
    resume the client: that is left to the coordinated operation, which owns the real slot.
    ``proto`` is 2: the worker encodes a served reply, and the timeout's null, in RESP2.
    """

    __slots__ = ("future", "waiting", "id", "db")

    proto = 2

    def __init__(self, future: asyncio.Future, client_id: int, db: int = 0) -> None:
        self.future = future
        self.waiting = True
        #: the real client's id (CLIENT UNBLOCK finds the request by it) and database.
        self.id = client_id
        self.db = db

    @property
    def data(self) -> bytes | None:
        return self.future.result() if self.future.done() else None

    @data.setter
    def data(self, value: bytes) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def resume(self) -> None:
        """The operation, not the coordinator, lets the real client go on."""

    def flush(self) -> None:
        """Nothing to write: the operation's reply slot is written with the client's."""


def _request(router: Any, client: Any, args: list[bytes], keys: list[bytes],
             workers: list[int], block_ms: int) -> tuple[BlockedRequest, asyncio.Future]:
    coordinator = router.blocking
    future: asyncio.Future = router.loop.create_future()
    slot = _BlockedSlot(future, client.id, client.db)
    request = BlockedRequest(next(coordinator._tickets), slot, slot, list(args),  # type: ignore[arg-type]
                             keys, workers, block_ms / 1000)
    coordinator.requests[request.ticket] = request
    return request, future


async def _block(router: Any, client: Any, args: list[bytes], keys: list[bytes], worker: int,
                 block_ms: int) -> bytes:
    """A BLOCK read on one worker through the blocking coordinator: the RESP2 reply (entries,
    an error, or the null array on timeout)."""
    coordinator = router.blocking
    request, future = _request(router, client, args, keys, [worker], block_ms)
    command = [b"__block", b"%d" % request.ticket, b"0", b"2", *args]
    data = await router.call(worker, command, 2, raw=True)
    if data == BLOCKED_REPLY:
        coordinator.park(request)
    else:
        coordinator.finish(request, data)
    return await _wait(router, client, request, future)


async def _block_across(router: Any, client: Any, args: list[bytes], keys: list[bytes],
                        workers: list[int], block_ms: int) -> bytes:
    """A BLOCK read over several workers: the coordinator's gated attempt, notify-only
    registration and gated retries (see the module doc)."""
    request, future = _request(router, client, args, keys, workers, block_ms)
    await router.acquire_gates(workers)
    # gated: its first try, which attempt_across must not take for a waiter's retry
    await router.blocking.attempt_across(request, gated=True)
    return await _wait(router, client, request, future)


async def _wait(router: Any, client: Any, request: BlockedRequest,
                future: asyncio.Future) -> bytes:
    """The request's reply, once served, timed out or unblocked; a client that left meanwhile
    is forgotten everywhere (``client_gone`` cannot see it: its client is the stand-in)."""
    coordinator = router.blocking
    while not future.done():
        await asyncio.wait((future,), timeout=1.0)
        if not future.done() and (client.closed or client.closing):
            request.done = True
            coordinator.requests.pop(request.ticket, None)
            if request.timer is not None:
                request.timer.cancel()
            coordinator.unregister(request)
            return NULL_ARRAY_RESP2
    return future.result()


@cross_attempt("xread", "xreadgroup")
async def _cross_read(coordinator: Any, request: BlockedRequest) -> bytes | None:
    """One gated try of a read over several workers.  The first try (its command still has
    BLOCK) is the synchronous read over every key; finding nothing, it rewrites the request to
    its blocked form.  A retry serves the waiter from the first of its keys with something, in
    the command's order, narrowed to that key as a served Redis waiter is."""
    router = coordinator.router
    args = request.args
    parsed = parse_xread(args)
    keys = _keys(args, parsed)
    if parsed.block_ms is not None:
        found = await _gather(router, args, parsed)
        if found is not None:
            return encode(found, 2)
        ids = [b">"] * parsed.n if parsed.group is not None else await _resolved_ids(
            router, args, parsed)
        args[:] = blocked_form(args, parsed, ids)
        return None
    for key in keys:
        data = await coordinator.call_raw(router.worker_of(key),
                                          [b"__tryblock", *xread_narrowed(args, key)],
                                          request, 2)
        if data != BLOCKED_REPLY:
            return data
    return None


async def _resolved_ids(router: Any, args: list[bytes], parsed: XReadArgs) -> list[bytes]:
    """XREAD's IDs with ``$`` replaced by the stream's last ID of this (gated) moment."""
    keys = _keys(args, parsed)
    ids = list(args[parsed.streams + parsed.n:])
    wanted = [key for key, raw in zip(keys, ids) if raw == b"$"]
    if not wanted:
        return ids
    last: dict[bytes, bytes] = {}
    for worker, ks in _by_worker(router, wanted).items():
        reply = await router.call(worker, [b"__xlastid", *ks])
        if isinstance(reply, ReplyError):
            raise reply
        last.update(zip(ks, reply))
    return [last[key] if raw == b"$" else raw for key, raw in zip(keys, ids)]


@router_command("xgroup|help")
def xgroup_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(XGROUP_HELP)


@router_command("xinfo|help")
def xinfo_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(XINFO_HELP)
