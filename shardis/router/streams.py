"""XREAD on the router: reply shape per protocol, reads over several workers, and BLOCK.

XREAD is a coordinated command (``shardis.commands.streams`` explains why).  Its plan never
forwards the command whole, because the worker answers the RESP2 shape (``[[key, entries]]``)
and a RESP3 client must get a map; the operation asks the worker(s) in RESP2 and reshapes.

``BLOCK ms`` with every key on one worker reuses the blocking framework: the operation sends
``__block`` itself (the generic dispatch cannot, since it reads a timeout in seconds at a fixed
position) and registers a :class:`~shardis.router.blocking.BlockedRequest` with the
coordinator, so timeouts, ``__unblock``, served events and ``blocked_clients`` all work as for
BLPOP.  The request's client and reply are a stand-in (:class:`_BlockedSlot`) that resolves a
future: the reply slot itself belongs to the coordinated operation, which must stay the one
that fills it and lets the client go on.  The worker's attempt (``xread_attempt``) resolves
``$`` when the command first runs, by rewriting the parked arguments.

Limits: a ``BLOCK`` over keys on several workers is refused with an error (non-blocking reads
over several workers are gathered, in key order); inside MULTI a ``BLOCK`` read does not wait
(as in Redis).
"""

from __future__ import annotations

import asyncio
from typing import Any

from shardis.commands.streams import parse_xread, xread_keys
from shardis.errors import ReplyError
from shardis.resp import NULL_ARRAY, Raw
from shardis.router.registry import Plan, coordinated

#: The error for XREAD BLOCK whose streams live on several workers (not in Redis: there all
#: keys are local; Redis Cluster answers CROSSSLOT).
CROSS_WORKER_BLOCK = (
    "ERR XREAD BLOCK over streams on several shardis workers is not supported; "
    "use keys with one {hash tag}"
)
NULL_ARRAY_RESP2 = b"*-1\r\n"


def _xread_plan(router: Any, args: list[bytes]) -> Plan:
    parse_xread(args)  # Redis's option errors come before any key is looked at
    workers = frozenset(router.worker_of(args[i]) for i in xread_keys(args))
    return Plan(workers=workers)


@coordinated("xread", _xread_plan)
async def xread(router: Any, client: Any, args: list[bytes]) -> object:
    parsed = parse_xread(args)
    keys = [args[i] for i in xread_keys(args)]
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
        raise ReplyError(CROSS_WORKER_BLOCK)
    return await _gather(router, client, args, keys, workers, parsed.count)


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


async def _gather(router: Any, client: Any, args: list[bytes], keys: list[bytes],
                  workers: list[int], count: int) -> object:
    """A non-blocking XREAD over several workers: one XREAD per worker with its keys (all sent
    in the first step), merged in the command's key order.  An error answers the first
    erring worker's (in key order), which may differ from the key Redis would have named."""
    first = xread_keys(args).start
    ids = args[first + len(keys) :]
    by_worker: dict[int, list[int]] = {w: [] for w in workers}
    for j, key in enumerate(keys):
        by_worker[router.worker_of(key)].append(j)
    calls = {
        w: router.call(w, [args[0], b"COUNT", b"%d" % count, b"STREAMS",
                           *[keys[j] for j in js], *[ids[j] for j in js]], 2, raw=True)
        for w, js in by_worker.items()
    }
    from shardis.router.core import decode_resp3

    found: dict[bytes, object] = {}
    for worker in workers:
        data = await calls[worker]
        if data.startswith(b"-"):
            raise ReplyError(data[1:-2].decode(errors="replace"))
        if data != NULL_ARRAY_RESP2:
            for key, entries in decode_resp3(data):
                found[key] = entries
    if not found:
        return NULL_ARRAY
    ordered = {key: found[key] for key in dict.fromkeys(keys) if key in found}
    if client.proto == 3:
        return ordered
    return [[key, entries] for key, entries in ordered.items()]


class _BlockedSlot:
    """Stands in for both the client and the reply slot of a BlockedRequest made by XREAD.

    ``BlockingCoordinator.finish`` stores the reply here (resolving ``future``) and would
    resume the client: that is left to the coordinated operation, which owns the real slot.
    ``proto`` is 2: the worker encodes a served reply, and the timeout's null, in RESP2.
    """

    __slots__ = ("future", "waiting")

    proto = 2

    def __init__(self, future: asyncio.Future) -> None:
        self.future = future
        self.waiting = True

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


async def _block(router: Any, client: Any, args: list[bytes], keys: list[bytes], worker: int,
                 block_ms: int) -> bytes:
    """XREAD BLOCK on one worker through the blocking coordinator: the RESP2 reply (entries,
    or the null array on timeout)."""
    from shardis.router.blocking import BLOCKED_REPLY, BlockedRequest

    coordinator = router.blocking
    future: asyncio.Future = router.loop.create_future()
    slot = _BlockedSlot(future)
    request = BlockedRequest(next(coordinator._tickets), slot, slot, list(args),  # type: ignore[arg-type]
                             keys, [worker], block_ms / 1000)
    coordinator.requests[request.ticket] = request
    command = [b"__block", b"%d" % request.ticket, b"0", b"2", *args]
    data = await router.call(worker, command, 2, raw=True)
    if data == BLOCKED_REPLY:
        coordinator.park(request)
    else:
        coordinator.finish(request, data)
    while not future.done():
        await asyncio.wait((future,), timeout=1.0)
        if not future.done() and (client.closed or client.closing):
            # Gone while blocked: forget the request everywhere (client_gone cannot see it).
            request.done = True
            coordinator.requests.pop(request.ticket, None)
            if request.timer is not None:
                request.timer.cancel()
            coordinator.unregister(request)
            return NULL_ARRAY_RESP2
    return future.result()
