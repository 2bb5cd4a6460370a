"""Run the router: a uvloop event loop, a TCP server of :class:`ClientConnection`, the links."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shardis.linksec import RouterCurve

log = logging.getLogger("shardis.router")


async def serve(worker_addresses: list[str], host: str, port: int, config: dict[str, Any],
                ready: asyncio.Event | None = None, stop: asyncio.Event | None = None,
                curve: RouterCurve | None = None) -> None:
    """Serve clients until ``stop`` is set (by default: until SIGTERM or SIGINT)."""
    from shardis.router.client import ClientConnection
    from shardis.router.core import Router

    router = Router(worker_addresses, config, curve)
    loop = asyncio.get_running_loop()
    if not await check_worker_order(router):
        router.close()
        raise SystemExit(1)
    server = await loop.create_server(
        lambda: ClientConnection(router), host=host, port=port, reuse_address=True, backlog=1024
    )
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    router.on_shutdown = stop.set  # SHUTDOWN
    log.info("router ready on %s:%d with %d workers", host, port, len(worker_addresses))
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.close()
        for client in list(router.clients.values()):
            if client.transport is not None:
                client.transport.close()
        router.close()
        log.info("router stopped")


async def check_worker_order(router: Any) -> bool:
    """Each worker must be the shard its place in --connect says: a mis-ordered list would
    send keys to the wrong shards.  False (and a log line) on a mismatch; a worker that does
    not answer in time is only warned about (it may start later)."""
    from shardis.router.core import WORKER_CHECK_SECONDS

    replies = [router.call(i, [b"__whoami"]) for i in range(len(router.links))]
    await asyncio.wait(replies, timeout=WORKER_CHECK_SECONDS)
    for index, reply in enumerate(replies):
        if not reply.done():
            log.warning("worker %d (%s) did not answer; starting anyway", index,
                        router.links[index].address)
            continue
        if reply.result() != index:
            log.error("worker at %s is shard %s but is listed at position %d in --connect; "
                      "fix the order", router.links[index].address, reply.result(), index)
            return False
    return True


def run_router(worker_addresses: list[str], host: str, port: int,
               config: dict[str, Any] | None = None, curve: RouterCurve | None = None) -> None:
    """Entry point of the router process."""
    import uvloop

    from shardis.config import defaults

    values = {**defaults(), "bind": host, "port": port, **(config or {})}
    uvloop.run(serve(worker_addresses, host, port, values, curve=curve))
