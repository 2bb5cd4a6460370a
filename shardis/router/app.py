"""Run the router: a uvloop event loop, a TCP server of :class:`ClientConnection`, the links."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

log = logging.getLogger("shardis.router")


async def serve(worker_addresses: list[str], host: str, port: int, config: dict[str, Any],
                ready: asyncio.Event | None = None) -> None:
    from shardis.router.client import ClientConnection
    from shardis.router.core import Router

    router = Router(worker_addresses, config)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ClientConnection(router), host=host, port=port, reuse_address=True, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
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


def run_router(worker_addresses: list[str], host: str, port: int,
               config: dict[str, Any] | None = None) -> None:
    """Entry point of the router process."""
    import uvloop

    uvloop.run(serve(worker_addresses, host, port, config or {"bind": host, "port": port}))
