"""Client limits on the router, as Redis 7.0 applies them (``networking.c``, ``timeout.c``).

``maxclients``
    A connection over the limit gets ``-ERR max number of clients reached`` and is closed.  At
    startup the open-files limit is raised to fit ``maxclients`` plus the descriptors the router
    needs for itself (Redis reserves 32; the router adds its ZeroMQ links); if the system will
    not, ``maxclients`` is lowered with a warning, as Redis does.
``timeout``
    Clients idle that many seconds are closed by a once-a-second sweep (no timer per client);
    like Redis, blocked clients (here: any client waiting for an operation) and pub/sub
    subscribers are never timed out.
``client-output-buffer-limit``
    The pending output of a client is what its transport could not hand to the kernel.  It is
    only looked at once it passes the transport's high-water mark (then ``pause_writing``
    fires), so clients that read their replies cost nothing.  A class (normal, pubsub) with no
    limit keeps backpressure: a normal client that does not read stops being read.
``proto-max-bulk-len``, ``client-query-buffer-limit``
    Checked by the request parser against one shared :class:`ProtocolLimits`.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import TYPE_CHECKING, Any

from shardis import errors
from shardis.resp import ProtocolLimits
from shardis.router.server import on_config_set

if TYPE_CHECKING:
    from shardis.router.client import ClientConnection
    from shardis.router.core import Router

log = logging.getLogger("shardis.router")

#: Redis's CONFIG_MIN_RESERVED_FDS: listeners, log files and such.
RESERVED_FDS = 32
#: What one worker link costs the router: the ZeroMQ socket, its monitor pair, their
#: mailboxes and the connection itself, with room to spare.
FDS_PER_WORKER = 8
#: How often idle clients and soft output limits are looked at (Redis: clientsCron, ~1 s).
SWEEP_SECONDS = 1.0
#: asyncio's default high-water mark of a transport's write buffer.
HIGH_WATER = 64 * 1024


def reserved_fds(workers: int) -> int:
    return RESERVED_FDS + FDS_PER_WORKER * workers


def raise_open_files_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE to ``wanted`` if possible; returns the limit we end up with (the
    highest the system allows, found by bisection: Redis steps down 16 at a time)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if _try_limit(wanted, hard):
        return wanted
    low, high = soft, wanted  # low is known to work, high known to fail
    while high - low > 1:
        middle = (low + high) // 2
        if _try_limit(middle, hard):
            low = middle
        else:
            high = middle
    _try_limit(low, hard)
    return low


def _try_limit(value: int, hard: int) -> bool:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (value, max(value, hard)))
    except (ValueError, OSError):
        return False
    return True


def fit_maxclients(requested: int, workers: int) -> int:
    """The maxclients the open-files limit allows (raising it first), with Redis's logs."""
    reserved = reserved_fds(workers)
    wanted = requested + reserved
    before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = raise_open_files_limit(wanted)
    if limit >= wanted:
        if limit > before:
            log.info("Increased maximum number of open files to %d (it was originally set "
                     "to %d).", limit, before)
        return requested
    if limit <= reserved:
        raise SystemExit(f"Your current 'ulimit -n' of {limit} is not enough for the server "
                         f"to start. Please increase your open file limit to at least {wanted}.")
    effective = limit - reserved
    log.warning("You requested maxclients of %d requiring at least %d max file descriptors.",
                requested, wanted)
    log.warning("Server can't set maximum open files to %d: the system allows %d.", wanted,
                limit)
    log.warning("Current maximum open files is %d. maxclients has been reduced to %d to "
                "compensate for low ulimit. If you need higher maxclients increase "
                "'ulimit -n'.", limit, effective)
    return effective


class ClientLimits:
    """The router's view of every per-client limit; one per router."""

    def __init__(self, router: Router) -> None:
        self.router = router
        config = router.config
        self.protocol = ProtocolLimits(config["proto-max-bulk-len"],
                                       config["client-query-buffer-limit"])
        #: clients whose output is over the high-water mark with a limit to watch.
        self.watched: set[ClientConnection] = set()
        self.output: dict[str, tuple[int, int, int]] = {}
        self.high_water = HIGH_WATER
        self.set_output_limits(config["client-output-buffer-limit"])
        self.sweeper: asyncio.TimerHandle | None = None
        #: the maxclients in force (CONFIG SET falls back to it when the system refuses more).
        self.maxclients: int = config["maxclients"]

    # maxclients -----------------------------------------------------------------------------
    def apply_maxclients(self) -> None:
        """At startup: make the open-files limit fit ``maxclients`` (or lower it)."""
        config = self.router.config
        config["maxclients"] = fit_maxclients(config["maxclients"], len(self.router.links))
        self.maxclients = config["maxclients"]

    def admit(self, client: ClientConnection) -> bool:
        """A new connection: False (and Redis's error, then close) over ``maxclients``."""
        router = self.router
        if len(router.clients) < router.config["maxclients"]:
            if self.high_water != HIGH_WATER:
                client.transport.set_write_buffer_limits(high=self.high_water)  # type: ignore
            return True
        router.stats.rejected_connections += 1
        client.transport.write(MAX_CLIENTS_REPLY)  # type: ignore[union-attr]
        client.transport.close()  # type: ignore[union-attr]
        return False

    def query_buffer_overflow(self, client: ClientConnection) -> None:
        """Redis closes such a client without a reply; the log says why."""
        log.warning("Closing client that reached max query buffer length: %s (limit %d)",
                    describe(client), self.protocol.query_buffer)
        client.close_now()

    # Output buffers -------------------------------------------------------------------------
    def set_output_limits(self, limits: dict[str, tuple[int, int, int]]) -> None:
        """Take new limits; a limit under the high-water mark lowers the mark, so that
        ``pause_writing`` still tells us when to look."""
        self.output = dict(limits)
        sizes = [size for name in ("normal", "pubsub") for size in self.output[name][:2] if size]
        high_water = min([HIGH_WATER, *sizes])
        if high_water != self.high_water:
            self.high_water = high_water
            for client in list(self.router.clients.values()):
                if client.transport is not None and not client.closed:
                    client.transport.set_write_buffer_limits(high=high_water)

    def output_class(self, client: ClientConnection) -> str:
        return "pubsub" if client.subscribed else "normal"

    def backpressure(self, client: ClientConnection) -> bool:
        """Whether a client that does not read stops being read, rather than being limited:
        normal clients without a limit (Redis would let their output grow without bound)."""
        hard, soft, _ = self.output["normal"]
        return not client.subscribed and not hard and not soft

    def watch(self, client: ClientConnection) -> None:
        self.watched.add(client)
        self.check_output(client)

    def unwatch(self, client: ClientConnection) -> None:
        self.watched.discard(client)

    def check_output(self, client: ClientConnection, now: float | None = None) -> bool:
        """Disconnect ``client`` if its pending output passes its class's limits (hard at
        once, soft after its seconds).  Returns whether it was disconnected."""
        transport = client.transport
        if transport is None or client.closed:
            self.watched.discard(client)
            return True
        if not self.over_limit(client, transport.get_write_buffer_size(), now):
            return False
        log.warning("Client %s scheduled to be closed ASAP for overcoming of output buffer "
                    "limits.", describe(client))
        self.watched.discard(client)
        client.close_now()
        return True

    def over_limit(self, client: ClientConnection, pending: int, now: float | None) -> bool:
        """Redis's checkClientOutputBufferLimits: the soft limit counts once it has held
        continuously for more than its seconds."""
        hard, soft, seconds = self.output[self.output_class(client)]
        if hard and pending >= hard:
            return True
        if not soft or pending < soft:
            client.soft_limit_since = None
            return False
        now = time.monotonic() if now is None else now
        if client.soft_limit_since is None:
            client.soft_limit_since = now
            return False
        return now - client.soft_limit_since > seconds

    # The sweep ------------------------------------------------------------------------------
    def start(self) -> None:
        self.sweeper = self.router.loop.call_later(SWEEP_SECONDS, self.sweep)

    def stop(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()

    def sweep(self) -> None:
        """Once a second: idle clients, and soft output limits of clients that stopped
        receiving (no flush comes to check them)."""
        now = time.monotonic()
        try:
            idle = self.router.config["timeout"]
            if idle:
                self.close_idle(now, idle)
            for client in list(self.watched):
                self.check_output(client, now)
        finally:
            self.start()

    def close_idle(self, now: float, idle: int) -> None:
        for client in list(self.router.clients.values()):
            if client.waiting or client.subscribed or client.closed:
                continue  # blocked or subscribed: Redis never times these out
            if now - client.last_active > idle:
                log.debug("Closing idle client %s", describe(client))
                client.close_now()


MAX_CLIENTS_REPLY = b"-" + errors.MAX_CLIENTS.encode() + b"\r\n"


def describe(client: Any) -> str:
    """The client as Redis's logs show it (CLIENT LIST's line)."""
    from shardis.router.connection import client_info_line

    return client_info_line(client, time.monotonic())


# CONFIG SET ------------------------------------------------------------------------------------
@on_config_set("maxclients")
def _maxclients_changed(router: Any, value: int) -> None:
    effective = fit_maxclients(value, len(router.links))
    if effective < value:
        router.config["maxclients"] = router.limits.maxclients
        raise errors.ReplyError(
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - The "
            "operating system is not able to handle the specified number of clients, try "
            f"with {effective}")
    router.limits.maxclients = value


@on_config_set("proto-max-bulk-len")
def _max_bulk_changed(router: Any, value: int) -> None:
    router.limits.protocol.set_max_bulk(value)


@on_config_set("client-query-buffer-limit")
def _query_buffer_changed(router: Any, value: int) -> None:
    router.limits.protocol.query_buffer = value


@on_config_set("client-output-buffer-limit")
def _output_limits_changed(router: Any, value: dict) -> None:
    router.limits.set_output_limits(value)
