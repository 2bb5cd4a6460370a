"""One client connection on the router: an ``asyncio.Protocol`` around a RESP parser.

Replies leave in request order: every command gets a :class:`Reply` slot, appended to the
connection's queue when the command is dispatched; workers fill slots as their batches come
back, and :meth:`ClientConnection.flush` writes the ready prefix of the queue in one ``write``.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from shardis import errors
from shardis.resp import QUERY_BUFFER_OVERFLOW, RequestParser, encode_error
from shardis.router import security

#: The database of the client an asynchronous operation (a coordinated command, a blocked
#: command's retry) acts for: ``Router.call`` sends its commands there.  Each operation runs
#: in its own task, which sets it first.
CURRENT_DB: contextvars.ContextVar[int] = contextvars.ContextVar("shardis_db", default=0)

if TYPE_CHECKING:
    from shardis.router.core import Router

#: Commands a client may queue while it waits (blocked or held) before we stop reading it.
MAX_BACKLOG = 10_000
#: Most replies a client may have due (dispatched, not yet written) before its next commands
#: wait in the backlog: what a client that pipelines without reading can make us hold.
MAX_INFLIGHT = 1024
#: Backlog marker: the input turned malformed here; answer what came before, then the error.
PROTOCOL_ERROR: list[bytes] = []


class Reply:
    """The slot for one command's reply; ``data`` is the encoded reply once known.

    ``cmd`` and ``argv``: the command that will have run when the reply leaves (None for
    replies no command owns: errors of refused commands, QUEUED, pushes), and ``started``:
    when the router read it (None: not timed).  ``shardis.router.stats`` aggregates them in
    :meth:`ClientConnection.flush`.
    """

    __slots__ = ("client", "data", "cmd", "argv", "started")

    def __init__(self, client: ClientConnection, data: bytes | None = None,
                 cmd: Any = None, argv: list[bytes] | None = None) -> None:
        self.client = client
        self.data = data
        self.cmd = cmd
        self.argv = argv
        self.started = client.parsed_at


class PushReply(Reply):
    """A pub/sub message: CLIENT REPLY OFF|SKIP never drops it (Redis 7.0 pushes it anyway)."""

    __slots__ = ()


class ReplyMode(Reply):
    """A CLIENT REPLY ON|OFF|SKIP marker in the reply queue: it writes nothing; it switches
    the filter of :meth:`ClientConnection.flush_filtered` at its place in the order."""

    __slots__ = ("mode",)

    def __init__(self, client: ClientConnection, mode: bytes) -> None:
        super().__init__(client, b"")
        self.mode = mode


class ClientConnection(asyncio.Protocol):
    def __init__(self, router: Router) -> None:
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(router.limits.protocol)
        self.replies: deque[Reply] = deque()
        #: commands received while ``waiting`` (an operation of ours is in flight or held).
        self.backlog: deque[list[bytes]] = deque()
        self.waiting = False
        self.closed = False
        self.closing = False
        self.reading_paused = False
        #: the transport's buffer is over its high-water mark: the client is not reading.
        self.writing_paused = False
        #: ...and it gets backpressure (no output limit for its class): nothing runs for it.
        self.output_blocked = False
        #: refused at connection time (maxclients): never registered with the router.
        self.rejected = False
        self.resuming = False
        self.proto = 2
        #: commands queued since MULTI (None outside MULTI), and whether EXEC must abort.
        self.multi: list[list[bytes]] | None = None
        self.multi_dirty = False
        #: WATCHed key -> the version its worker reported.
        self.watched: dict[tuple[int, bytes], int] = {}  # (database, key) -> version
        #: pub/sub: kind (channel, pattern, shard channel) -> names, in subscription order.
        self.subscriptions: dict[bytes, dict[bytes, None]] = {b"c": {}, b"p": {}, b"s": {}}
        #: any subscription at all (RESP2 clients then accept only pub/sub commands).
        self.subscribed = False
        #: when pending output first passed its class's soft limit (None: below it).
        self.soft_limit_since: float | None = None
        self.name: bytes | None = None
        self.lib_name: bytes | None = None
        self.lib_ver: bytes | None = None
        self.id = router.next_client_id()
        self.created = time.monotonic()
        self.last_active = self.created
        #: when the router read this client's latest commands (their replies' ``started``).
        self.parsed_at = self.created
        self.last_command = b"NULL"
        self.addr = "?:0"
        self.laddr = "?:0"
        #: the socket's file descriptor, for CLIENT LIST.
        self.fd = -1
        #: CLIENT REPLY's state as of the last reply written: b"on", b"off" or b"skip".
        self.reply_mode = b"on"
        #: CLIENT REPLY was used: replies go through :meth:`flush_filtered`.
        self.reply_filtered = False
        #: CLIENT NO-EVICT (no eviction here: kept for CLIENT LIST's ``e`` flag).
        self.no_evict = False
        #: the database SELECT chose (0 to ``databases`` - 1).
        self.db = 0
        #: CLIENT TRACKING settings (``shardis.router.tracking.TrackingState``), None: off.
        self.tracking: Any = None
        #: who this client is (``shardis.router.security``): set when the connection is made.
        self.user: Any = None
        self.authenticated = False
        #: no ACL check needed for any command: the dispatch fast path is taken.
        self.unrestricted = False

    # asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.addr = f"{peer[0]}:{peer[1]}"
        if isinstance(local, tuple):
            self.laddr = f"{local[0]}:{local[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
        if not self.router.limits.admit(self):
            self.rejected = self.closed = self.closing = True
            return
        if not security.client_connected(self.router, self):
            # Protected mode: Redis writes the reason as a raw error line and closes.
            self.rejected = self.closing = True
            transport.write(encode_error(errors.DENIED_PROTECTED))  # type: ignore[attr-defined]
            transport.close()
            return
        self.router.client_connected(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        # The start of every command of this read, for its statistics (shardis.router.stats).
        self.parsed_at = self.last_active = time.monotonic()
        if not self.authenticated:
            if security.auth_required(self.router, self):
                self.unauthenticated_data(data)
                return
            if self.parser.limited:  # the password went away (CONFIG SET requirepass "")
                self.parser.limited = False
                data = self.parser.take_pending() + data
        commands = self.parser.feed(data)
        if not commands:
            if self.parser.error is not None:
                if self.waiting:
                    # Earlier commands still wait in the backlog: they go first, then the error.
                    self.backlog.append(PROTOCOL_ERROR)
                else:
                    self.protocol_error(self.parser.error)
            return
        if (self.waiting or self.backlog or self.output_blocked
                or len(commands) + len(self.replies) > MAX_INFLIGHT):
            # Queued behind an operation, or throttled: too many replies are due already.
            self.backlog.extend(commands)
            self.limit_backlog()
            if not self.waiting:
                self.resume()
        else:
            done = self.router.dispatch_all(self, commands)
            if done < len(commands) and not self.closing:
                self.backlog.extend(commands[done:])
                self.limit_backlog()
        if self.parser.error is not None:
            self.backlog.append(PROTOCOL_ERROR)
            if not self.waiting:
                self.resume()
        self.flush()

    def unauthenticated_data(self, data: bytes) -> None:
        """Before AUTH, Redis's small request limits apply (at most 10 arguments of 16 KB), and
        the requests are parsed one at a time: after a successful AUTH the rest of the read is
        parsed without the limits, as Redis does."""
        parser = self.parser
        parser.limited = True
        commands = parser.feed(data)
        while commands and not self.closing:
            self.router.dispatch_all(self, commands)
            self.flush()
            if self.closing or not security.auth_required(self.router, self):
                break
            commands = parser.feed(b"")
        if self.closing:
            return
        if parser.error is not None:
            self.protocol_error(parser.error)
            return
        if not security.auth_required(self.router, self):
            parser.limited = False
            rest = parser.take_pending()
            if rest:
                self.data_received(rest)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.backlog.clear()
        self.replies.clear()
        if not self.rejected:
            self.router.client_disconnected(self)

    def pause_writing(self) -> None:
        """The transport holds more output than its high-water mark: the client is not reading.

        Without an output limit for its class, it gets backpressure: we stop reading and
        running its requests until it reads (no memory grows).  With one, it runs on as in
        Redis, and is disconnected once its pending output passes the limit."""
        self.writing_paused = True
        if self.router.limits.backpressure(self):
            self.output_blocked = True
            self.pause_reading()
        else:
            self.router.limits.watch(self)

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.soft_limit_since = None
        self.router.limits.unwatch(self)
        if self.output_blocked:
            self.output_blocked = False
            if self.backlog and not self.waiting:
                self.resume()
            elif len(self.backlog) < MAX_BACKLOG // 2:
                self.resume_reading()

    # Helpers --------------------------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.output_blocked:
            return  # resume_writing will resume reading
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def limit_backlog(self) -> None:
        if len(self.backlog) > MAX_BACKLOG:
            self.pause_reading()

    def reply_now(self, data: bytes) -> None:
        """Queue an already-encoded reply behind the pending ones."""
        self.replies.append(Reply(self, data))

    def flush(self) -> None:
        """Write every reply at the head of the queue that is ready, in one write."""
        replies = self.replies
        if not replies or replies[0].data is None:
            return
        done = []
        while replies and replies[0].data is not None:
            done.append(replies.popleft())
        self.router.observer.replied(done)  # statistics, slow log, MONITOR
        if self.closed or self.transport is None:
            return
        self.transport.write(b"".join([reply.data for reply in done])  # type: ignore[misc]
                             if len(done) > 1 else done[0].data)  # type: ignore[arg-type]
        if self.closing and not replies:
            self.transport.close()
        elif self.writing_paused or self.backlog:
            self.after_write()

    def set_reply_mode(self, mode: bytes) -> None:
        """CLIENT REPLY: queue the switch in reply order.  From the first use on, this client
        flushes through :meth:`flush_filtered` (an instance attribute: the plain ``flush`` of
        every other client stays as it is)."""
        self.replies.append(ReplyMode(self, mode))
        self.reply_filtered = True
        self.flush = self.flush_filtered  # type: ignore[method-assign]

    def flush_filtered(self) -> None:
        """:meth:`flush` for a client that used CLIENT REPLY: drops the replies Redis drops
        (OFF: until ON; SKIP: the next command's), never pub/sub messages."""
        replies = self.replies
        ready = []
        done = []
        while replies and replies[0].data is not None:
            reply = replies.popleft()
            done.append(reply)
            if type(reply) is ReplyMode:
                # A SKIP or OFF marker stands for a command without a reply: it ends a SKIP.
                # SKIP while OFF changes nothing (Redis sets SKIP_NEXT only when not OFF).
                # RESET turns OFF off, but its own reply still obeys a pending SKIP.
                mode = reply.mode  # type: ignore[attr-defined]
                if mode == b"reset":
                    mode = b"skip" if self.reply_mode == b"skip" else b"on"
                if mode != b"skip" or self.reply_mode != b"off":
                    self.reply_mode = mode
            elif type(reply) is PushReply or self.reply_mode == b"on":
                ready.append(reply.data)
            elif self.reply_mode == b"skip":
                self.reply_mode = b"on"
        self.router.observer.replied([r for r in done if type(r) is not ReplyMode])
        if self.closed or self.transport is None:
            return
        if ready:
            self.transport.write(b"".join(ready))  # type: ignore[arg-type]
        if self.closing and not replies:
            self.transport.close()
        elif self.writing_paused or self.backlog:
            self.after_write()

    def after_write(self) -> None:
        """Off the fast path: output over the high-water mark meets the output limits, and
        a throttled backlog goes on once enough replies are out."""
        if self.writing_paused and not self.output_blocked:
            limits = self.router.limits
            if limits.backpressure(self):  # CONFIG SET removed its class's limit meanwhile
                self.output_blocked = True
                limits.unwatch(self)
                self.pause_reading()
            else:
                limits.check_output(self)
        if (self.backlog and not self.waiting and not self.output_blocked
                and len(self.replies) <= MAX_INFLIGHT // 2):
            self.resume()

    def close_now(self) -> None:
        """Drop the connection at once, pending output included (a limit was passed)."""
        self.closing = self.closed = True
        self.backlog.clear()
        self.replies.clear()
        if self.transport is not None:
            self.transport.abort()

    def protocol_error(self, message: str) -> None:
        """Malformed input: reply with the error once pending replies are out, then close."""
        if message is QUERY_BUFFER_OVERFLOW:
            self.router.limits.query_buffer_overflow(self)
            return
        self.router.stats.error_replies += 1
        self.reply_now(encode_error(message))
        self.closing = True
        self.backlog.clear()
        self.flush()

    def resume(self) -> None:
        """Dispatch what queued up while this client waited or was throttled, in chunks that
        keep at most :data:`MAX_INFLIGHT` replies due, until it waits again."""
        if self.resuming:
            return  # a flush below wants to resume: this loop goes on by itself
        self.resuming = True
        try:
            while self.can_dispatch():
                if self.backlog[0] is PROTOCOL_ERROR:
                    self.backlog.clear()
                    self.protocol_error(self.parser.error or "ERR Protocol error")
                    break
                self.dispatch_chunk()
                self.flush()
                if len(self.replies) > MAX_INFLIGHT // 2:
                    break  # the flush of the replies to come resumes
        finally:
            self.resuming = False
        if len(self.backlog) < MAX_BACKLOG // 2:
            self.resume_reading()
        self.flush()

    def can_dispatch(self) -> bool:
        return (bool(self.backlog) and not self.waiting and not self.closing and not self.closed
                and not self.output_blocked)

    def dispatch_chunk(self) -> None:
        """The next commands of the backlog, up to a protocol error or the in-flight cap."""
        backlog = self.backlog
        chunk = []
        room = max(MAX_INFLIGHT - len(self.replies), 1)
        while backlog and len(chunk) < room and backlog[0] is not PROTOCOL_ERROR:
            chunk.append(backlog.popleft())
        # Timed from now: Redis times a command's execution, not its wait in the backlog (a
        # pipeline that outruns the workers waits there for seconds).
        self.parsed_at = time.monotonic()
        done = self.router.dispatch_all(self, chunk)
        if done < len(chunk) and not self.closing:
            backlog.extendleft(reversed(chunk[done:]))
