"""Run the router: a uvloop event loop, a TCP server of :class:`ClientConnection`, the links."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Any

from shardis import errors

if TYPE_CHECKING:
    from shardis.linksec import RouterCurve

log = logging.getLogger("shardis.router")


async def serve(worker_addresses: list[str], host: str, port: int, config: dict[str, Any],
                ready: asyncio.Event | None = None, stop: asyncio.Event | None = None,
                curve: RouterCurve | None = None) -> None:
    """Serve clients until ``stop`` is set (by default: until SIGTERM or SIGINT).

    Listens on ``port`` (plain TCP, unless 0) and on ``tls-port`` (TLS, unless 0).  A TLS
    setup that cannot work, or no listener at all, raises SystemExit with the reason."""
    from shardis.router.core import Router

    tls_port = config.get("tls-port", 0)
    if not port and not tls_port:
        raise SystemExit("Configured to not listen anywhere, exiting.")
    tls = tls_listener(config) if tls_port else None
    router = Router(worker_addresses, config, curve)
    router.tls = tls
    router.limits.apply_maxclients()
    if not await check_worker_order(router):
        router.close()
        raise SystemExit(1)
    await router.aclsync.start()  # the server's users (worker 0's) before any client comes
    try:
        servers = await listen(router, host, port, tls_port, tls)
    except OSError:
        router.close()
        raise
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    router.on_shutdown = stop.set  # SHUTDOWN
    router.ping_links()  # and every second from now on
    log.info("router ready on %s (port %d, tls-port %d) with %d workers", host, port, tls_port,
             len(worker_addresses))
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for client in list(router.clients.values()):
            if client.transport is not None:
                client.transport.close()
        router.close()
        log.info("router stopped")


def tls_listener(config: dict[str, Any]) -> Any:
    """The TLS context holder, or SystemExit with Redis's reason (no traceback)."""
    from shardis.router.tls import TLSConfigError, TLSListener

    try:
        return TLSListener(config)
    except TLSConfigError as exc:
        raise SystemExit(f"Failed to configure TLS: {exc}") from None


async def listen(router: Any, host: str, port: int, tls_port: int,
                 tls: Any) -> list[asyncio.AbstractServer]:
    """The plain listener (unless port 0) and the TLS one (unless tls-port 0)."""
    from shardis.router.client import ClientConnection

    loop = asyncio.get_running_loop()
    servers = []
    try:
        if port:
            servers.append(await loop.create_server(
                lambda: ClientConnection(router), host=host, port=port, reuse_address=True,
                backlog=1024))
        if tls_port:
            servers.append(await loop.create_server(
                lambda: ClientConnection(router), host=host, port=tls_port, reuse_address=True,
                backlog=1024, ssl=tls.front, ssl_handshake_timeout=10.0))
    except OSError:
        for server in servers:
            server.close()
        raise
    return servers


async def check_worker_order(router: Any) -> bool:
    """Each worker must be the shard its place in --connect says: a mis-ordered list would
    send keys to the wrong shards.  False (and a log line) on a mismatch; a worker that does
    not answer in time is only warned about (it may start later)."""
    from shardis.router.core import WORKER_CHECK_SECONDS

    replies = [router.call(i, [b"__whoami"]) for i in range(len(router.links))]
    deadline = asyncio.get_running_loop().time() + WORKER_CHECK_SECONDS
    while not all(reply.done() for reply in replies) \
            and asyncio.get_running_loop().time() < deadline:
        for link in router.links:  # ZeroMQ's FDs are edge-triggered: look, do not only wait
            router.on_link_event(link)
            router.on_link_readable(link)
        await asyncio.wait([reply for reply in replies if not reply.done()], timeout=0.25)
    for index, reply in enumerate(replies):
        if not reply.done():
            log.warning("worker %d (%s) did not answer; starting anyway (its keys answer "
                        "-LOADING until it is there)", index, router.links[index].address)
            link = router.links[index]
            if link.verifying:
                link.down_error = errors.LOADING
                router.schedule_flush()
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
    try:
        uvloop.run(serve(worker_addresses, host, port, values, curve=curve))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            log.error("%s", exc.code)
            raise SystemExit(1) from None
        raise
