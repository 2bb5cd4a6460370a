"""The router's heart: dispatch by the command table, batching, merging, and atomicity.

Batching
    Every command parsed in one event-loop iteration, from every client, is queued on its
    worker's link; one callback per iteration (``call_soon``) sends each link's queue as one
    ZeroMQ message.  Replies come back one message per batch and fill the clients' reply slots;
    each client then gets one ``write`` for everything that became ready.

Atomicity across workers
    The router is the only path to the workers and each link is a FIFO that the worker executes
    in order.  So the order in which the router queues commands is a total order that every
    worker respects.  A multi-worker command whose parts are queued in the same iteration (MSET,
    MGET, DEL...) is therefore atomic: a command queued before it precedes all of its parts on
    every worker, one queued after it follows them all; no client can observe half of it.

    Operations that need several round trips (MSETNX's check-then-set, RENAME across workers)
    *gate* their workers: while gated, new commands that touch a gated worker are held in
    arrival order (their clients stop dispatching, so per-client order holds) and released when
    the operation ends.  Commands for other workers flow on.  The cost to single-shard traffic
    is one worker round trip of delay, only on the gated workers, only while such an operation
    runs.  A client's own commands never overtake one of its operations: while it waits, they
    queue in its backlog.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import hiredis
import zmq

from shardis import errors
from shardis.commands import COMMANDS, Command, Fanout, load_families, lookup
from shardis.commands.scripting import BUSY
from shardis.commands.server import SCRIPT_MONITOR
from shardis.config import SUPERVISED
from shardis.errors import ReplyError
from shardis.logs import RateLimitedLog
from shardis.protocol import EARLY_BIT, SCRIPT_CALL, command_code
from shardis.resp import OK_REPLY, PushRaw, Raw, encode, encode_error, encode_int
from shardis.router import security
from shardis.router.aclsync import AclSync
from shardis.router.blocking import BlockingCoordinator
from shardis.router.client import CURRENT_DB, ClientConnection, PushReply, Reply
from shardis.router.limits import ClientLimits
from shardis.router.links import WorkerLink
from shardis.router.monitor import Monitor
from shardis.router.pubsub import SUBSCRIBED_MODE_COMMANDS, PubSubRouter, subscribed_mode_error
from shardis.router.registry import COORDINATED, DEFERRED, ROUTER_COMMANDS, Plan, load_handlers
from shardis.router.stats import Observer, lookup_spec
from shardis.router.tracking import deliver as deliver_invalidations
from shardis.router.tracking import disable as disable_tracking
from shardis.router.tracking import dispatch_tracked, is_tracking_push
from shardis.router.transactions import NOT_QUEUED, QUEUED_REPLY, end_transaction
from shardis.slots import SLOT_MASK, SlotMap, hash_tag, xxh3

if TYPE_CHECKING:
    from shardis.linksec import RouterCurve

log = logging.getLogger("shardis.router")

#: How long the router waits for a worker to say which shard it is.
WORKER_CHECK_SECONDS = 20.0
_commands_get = COMMANDS.get


class RouterStats:
    __slots__ = ("commands", "error_replies", "connections_received", "started", "batches",
                 "rejected_connections")

    def __init__(self) -> None:
        self.commands = 0
        #: messages sent to workers: commands / batches is the batching the design relies on.
        self.batches = 0
        self.error_replies = 0
        self.connections_received = 0
        self.rejected_connections = 0
        self.started = time.time()


_DECODER = hiredis.Reader(replyError=ReplyError)


def decode_resp3(data: bytes) -> Any:
    """Decode one encoded RESP3 reply from a worker; errors come back as ReplyError values.

    One reader serves every call: each input is one complete reply, so it never keeps state.
    An input that is not one complete reply (a malformed worker message) gives a ReplyError,
    and a fresh reader, so that its leftovers cannot spoil the next decode.
    """
    global _DECODER
    try:
        _DECODER.feed(data)
        value = _DECODER.gets()
    except hiredis.ProtocolError:
        value = False
    if value is False and data != b"#f\r\n" or _DECODER.has_data():
        _DECODER = hiredis.Reader(replyError=ReplyError)
        return ReplyError("ERR malformed reply from a worker")
    return value


class FutureTarget:
    """Resolves an asyncio future with a worker's reply: decoded for coordinated operations,
    as encoded bytes (``raw``) when it goes to a client unchanged."""

    __slots__ = ("future", "raw")

    def __init__(self, future: asyncio.Future, raw: bool = False) -> None:
        self.future = future
        self.raw = raw

    def fill(self, data: bytes) -> None:
        if not self.future.done():
            self.future.set_result(data if self.raw else decode_resp3(data))


class Gather:
    """Collects the parts of a split or all-workers command, then merges them into the reply."""

    __slots__ = ("router", "reply", "proto", "parts", "remaining", "merge", "context")

    def __init__(self, router: Router, reply: Reply, count: int, merge: Any, context: Any) -> None:
        self.router = router
        self.reply = reply
        #: the protocol of the request: a later HELLO in the same pipeline must not change it.
        self.proto = reply.client.proto
        self.parts: list[Any] = [None] * count
        self.remaining = count
        self.merge = merge
        self.context = context

    def part(self, index: int) -> GatherPart:
        return GatherPart(self, index)

    def done(self) -> None:
        client = self.reply.client
        try:
            data = self.merge(self.parts, self.context, self.proto)
        except ReplyError as exc:
            data = encode_error(exc.message)
        except Exception as exc:  # parts a worker sent malformed: an error, not a dead router
            log.error("cannot merge the parts of a reply: %r", exc)
            data = encode_error("ERR malformed reply from a worker")
        if data[:1] == b"-":
            self.router.stats.error_replies += 1
        self.reply.data = data
        self.router.touched.add(client)


def _read_only(args: list[bytes]) -> bool:
    """Whether a command sent to a worker changes nothing (it may run twice)."""
    try:
        return "readonly" in lookup(args, allow_internal=True).flags
    except ReplyError:
        return False


class VerifyTarget(FutureTarget):
    """The shard check sent to a worker that (re)connected: never held or resent."""

    __slots__ = ()


def _script_call_args(encoded: bytes) -> list[bytes]:
    """The command of a script call (a RESP array of bulk strings), or ValueError."""
    reader = hiredis.Reader()
    reader.feed(encoded)
    args = reader.gets()
    if type(args) is not list or reader.has_data() or not args \
            or not all(type(arg) is bytes for arg in args):
        raise ValueError("a script call that is not a command")
    return args


class ScriptCallTarget:
    """A global script's call, run on another worker: its reply goes back to the script's
    worker at once, as a batch of sequence 0 that nothing answers."""

    __slots__ = ("link", "proto")

    def __init__(self, link: WorkerLink, proto: int) -> None:
        self.link = link
        self.proto = proto

    def fill(self, data: bytes) -> None:
        self.link.send_frame(self.link.encode_batch(0, [(self.proto, [data])]))


class GatherPart:
    __slots__ = ("gather", "index")

    def __init__(self, gather: Gather, index: int) -> None:
        self.gather = gather
        self.index = index

    def fill(self, data: bytes) -> None:
        gather = self.gather
        gather.parts[self.index] = data
        gather.remaining -= 1
        if gather.remaining == 0:
            gather.done()


# Merges: (raw RESP3 parts, context, client protocol) -> the encoded reply.  Errors pass through
# as they came; integers and OK need no decoding.
def _first_error(parts: list[bytes]) -> bytes | None:
    for part in parts:
        if part[:1] == b"-":
            return part
    return None


def merge_sum(parts: list[bytes], _context: Any, _proto: int) -> bytes:
    error = _first_error(parts)
    return error or encode_int(sum(int(part[1:-2]) for part in parts))


def merge_all_ok(parts: list[bytes], _context: Any, _proto: int) -> bytes:
    return _first_error(parts) or OK_REPLY


def merge_concat(parts: list[bytes], _context: Any, proto: int) -> bytes:
    error = _first_error(parts)
    if error is not None:
        return error
    return encode(list(itertools.chain.from_iterable(map(decode_resp3, parts))), proto)


def merge_by_position(parts: list[bytes], positions: list[list[int]], proto: int) -> bytes:
    """Put each part's array elements back where their keys were in the request (MGET)."""
    error = _first_error(parts)
    if error is not None:
        return error
    merged: list[Any] = [None] * sum(len(p) for p in positions)
    for part, where in zip(parts, positions):
        for index, value in zip(where, decode_resp3(part)):
            merged[index] = value
    return encode(merged, proto)


_MERGES = {
    Fanout.SPLIT_CONCAT: merge_by_position,
    Fanout.SPLIT_SUM: merge_sum,
    Fanout.SPLIT_ALL_OK: merge_all_ok,
    Fanout.ALL_SUM: merge_sum,
    Fanout.ALL_CONCAT: merge_concat,
    Fanout.ALL_OK: merge_all_ok,
}


async def fan_out_checked(router: Router, client: ClientConnection, args: list[bytes]) -> object:
    """A write split across workers (MSET...) under maxmemory, run as a coordinated
    operation: ``Router._coordinate`` refuses it before any part when one of its workers is
    out of memory; the parts then go as steps, which no worker refuses on its own."""
    spec = lookup_spec(args)
    groups = router.split_by_worker(args, spec)
    requests = [router.call(worker, sub_args, raw=True) for worker, (sub_args, _) in groups.items()]
    parts = [await request for request in requests]
    return Raw(_MERGES[spec.fanout](parts, [where for _, where in groups.values()], client.proto))


#: How often each link's round trip is measured (``Router.ping_links``).
PING_SECONDS = 1.0


class Router:
    """Routes commands from client connections to worker links."""

    def __init__(self, worker_addresses: list[str], config: dict[str, Any] | None = None,
                 curve: RouterCurve | None = None) -> None:
        load_families()
        load_handlers()
        from shardis.config import defaults

        #: every directive's current value (``shardis.config``), by its redis.conf name.
        self.config = {**defaults(), **(config or {})}
        self.loop = asyncio.get_event_loop()
        self.context = zmq.Context.instance()
        #: the worker running a global script (``shardis.router.scripting.run_global``),
        #: and whether it has run past busy-reply-threshold (gated commands get BUSY).
        self.script_worker: int | None = None
        self.script_busy = False
        #: what gated commands get then (SCRIPT KILL's BUSY, or FUNCTION KILL's for FCALL).
        self.busy_error = BUSY
        #: scripts known to touch other workers' keys (they run global at once), and scripts
        #: that ran on one worker (their callers may pipeline past them).
        self.global_shas: set[str] = set()
        self.local_shas: set[tuple[str, int]] = set()
        #: the sha1 of script bodies EVAL sends again and again (bounded).
        self.body_shas: dict[bytes, str] = {}
        #: every script this router has seen, sha1 -> body (``shardis.router.scripting``).
        self.scripts: dict[str, bytes] = {}
        #: the function libraries' FUNCTION DUMP payload, once a FUNCTION command changed
        #: them (``shardis.router.functions``): given to every worker that reconnects.
        self.functions_payload: bytes | None = None
        #: clients with CLIENT TRACKING on (INFO's tracking_clients).
        self.tracking_clients = 0
        #: this router's id on every worker link (workers' AOFs remember its batches by it).
        self.identity = os.urandom(8)
        self.links = [
            WorkerLink(self, index, address, self.context,
                       None if curve is None else (curve.keys, curve.server_keys[index]),
                       self.identity)
            for index, address in enumerate(worker_addresses)
        ]
        self.all_workers = frozenset(range(len(self.links)))
        #: the next ``ping_links`` (started once the router serves: ``start_pinging``).
        self.ping_timer: asyncio.TimerHandle | None = None
        self.slots = SlotMap(len(self.links))
        #: the slot -> worker table itself, for the fast path (resharding rewrites it in place).
        self.owners = self.slots.owners
        self.stats = RouterStats()
        #: per-command statistics, SLOWLOG, LATENCY (``shardis.router.stats``) and MONITOR.
        self.observer = Observer(self)
        self.monitor = Monitor(self)
        #: malformed messages from workers: logged, at most a few lines per interval.
        self.malformed_log = RateLimitedLog(log)
        self.clients: dict[int, ClientConnection] = {}
        self.touched: set[ClientConnection] = set()
        self.flush_scheduled = False
        self.clients_flush_scheduled = False
        #: workers gated by a running multi-step operation, and what waits for them.
        self.gates: set[int] = set()
        self.held: list[tuple[ClientConnection, list[bytes]]] = []
        #: futures of operations that wait for gates to open (retried blocking commands).
        self.gate_waiters: list[asyncio.Future] = []
        self._client_ids = itertools.count(1)
        self.blocking = BlockingCoordinator(self)
        self.pubsub = PubSubRouter(self)
        #: stops the server (SHUTDOWN); set by whoever runs the router.
        self.on_shutdown: Any = None
        self.limits = ClientLimits(self)
        #: the TLS listener's context holder (``shardis.router.tls``), when tls-port is set.
        self.tls: Any = None
        self.limits.start()
        #: the users (``shardis.router.acl``): requirepass, then the ACL file.
        self.acl = security.create_store(self.config)
        #: the users are the server's: kept on worker 0, changes heard from other routers.
        self.aclsync = AclSync(self)
        #: the active CLIENT PAUSE (``shardis.router.clients.ClientPause``), if any.
        self.pause: Any = None
        #: the client whose coordinated command is being planned (Redis's current_client).
        self.current_client: ClientConnection | None = None
        for link in self.links:
            self.loop.add_reader(link.fd, self.on_link_readable, link)
            self.loop.add_reader(link.monitor_fd, self.on_link_event, link)
            # A handshake that completed before the readers were added left its event queued
            # without waking the (edge-triggered) FD: without this drain, that link's later
            # events (a restarted worker) would never be seen.
            self.loop.call_soon(self.on_link_event, link)

    # Clients --------------------------------------------------------------------------------
    def next_client_id(self) -> int:
        return next(self._client_ids)

    def client_connected(self, client: ClientConnection) -> None:
        self.clients[client.id] = client
        self.stats.connections_received += 1

    def client_disconnected(self, client: ClientConnection) -> None:
        self.clients.pop(client.id, None)
        self.touched.discard(client)
        self.blocking.client_gone(client)
        end_transaction(self, client)
        self.pubsub.client_gone(client)
        disable_tracking(self, client)
        self.monitor.client_gone(client)

    # Dispatch -------------------------------------------------------------------------------
    def dispatch_all(self, client: ClientConnection, commands: list[list[bytes]],
                     checked: bool = False, unpaused: bool = False,
                     tracked: bool = False) -> int:
        """Route the commands of one read in order; returns how many were dispatched (fewer
        when the client started waiting or closing: the rest is for its backlog).

        The common case (a plain one-key command whose worker is not gated) is written out
        inline with hoisted locals: it runs for every GET and SET.  A client that is not
        ``unrestricted`` (not authenticated, or a user with ACL limits) goes through
        :meth:`dispatch_guarded` instead, which checks each command first.  During a CLIENT
        PAUSE, :class:`~shardis.router.clients.ClientPause` sees each command first
        (``unpaused``: it did already).
        """
        if not client.unrestricted and not checked:
            return self.dispatch_guarded(client, commands)
        if self.pause is not None and not unpaused:
            return self.pause.dispatch(client, commands)
        if client.tracking is not None and not tracked:
            return dispatch_tracked(self, client, commands)
        if client.multi is not None:
            return self.dispatch_in_multi(client, commands)
        if client.subscribed and client.proto == 2:
            return self.dispatch_subscribed(client, commands)
        get_spec = _commands_get
        owners = self.owners
        links = self.links
        gates = self.gates
        proto = client.proto
        code = proto | client.db << 2  # shardis.protocol.command_code
        queue_reply = client.replies.append
        fast = 0
        for index, args in enumerate(commands):
            spec = get_spec(args[0])
            if spec is None:
                arity_ok = False
            else:
                argc, arity = len(args), spec.arity
                arity_ok = argc == arity if arity > 0 else argc >= -arity
            if arity_ok and spec.single_key:  # type: ignore[union-attr]
                key = args[spec.single_key]  # type: ignore[union-attr]
                if b"{" in key:
                    key = hash_tag(key)
                worker = owners[xxh3(key) & SLOT_MASK]
                if not gates or worker not in gates:
                    reply = Reply(client, None, spec, args)
                    queue_reply(reply)
                    link = links[worker]
                    link.targets.append(reply)
                    link.commands.append((code, args))
                    fast += 1
                    continue
            if arity_ok and spec.router_plain:  # type: ignore[union-attr]
                # A command the router answers itself, already resolved: no lookup() again.
                self.stats.commands += 1
                client.last_command = args[0]
                self.run_router_command(client, spec, args)
            else:
                self.dispatch_generic(client, args)
            if client.waiting or client.closing:
                self._count_fast(client, commands, fast)
                return index + 1
            if client.subscribed and client.proto == 2:  # RESP2 subscribed mode from here
                self._count_fast(client, commands, fast)
                return index + 1 + self.dispatch_subscribed(client, commands[index + 1 :])
            if client.multi is not None:  # MULTI: what follows is queued
                self._count_fast(client, commands, fast)
                return index + 1 + self.dispatch_in_multi(client, commands[index + 1 :])
            if not client.unrestricted and index + 1 < len(commands):  # e.g. now a MONITOR
                self._count_fast(client, commands, fast)
                return index + 1 + self.dispatch_guarded(client, commands[index + 1 :])
            proto = client.proto  # HELLO may have switched it, SELECT the database
            code = proto | client.db << 2
        self._count_fast(client, commands, fast)
        return len(commands)

    def dispatch_guarded(self, client: ClientConnection, commands: list[list[bytes]]) -> int:
        """One command at a time: NOAUTH / NOPERM (``security.refuse``), else the normal path."""
        for index, args in enumerate(commands):
            if client in self.observer.monitors and self.monitor.refuse(client, args):
                pass  # a MONITOR client may not touch the keyspace
            elif not security.refuse(self, client, args):
                if not self.dispatch_all(client, [args], checked=True):
                    return index  # held by CLIENT PAUSE: it waits in the backlog
            else:
                self.observer.rejected(lookup_spec(args))  # NOAUTH, NOPERM: rejected_calls
            if client.waiting or client.closing:
                return index + 1
            if client.unrestricted:  # AUTH or an ACL change lifted the checks
                rest = commands[index + 1 :]
                return index + 1 + (self.dispatch_all(client, rest) if rest else 0)
        return len(commands)

    def dispatch_in_multi(self, client: ClientConnection, commands: list[list[bytes]]) -> int:
        """Between MULTI and EXEC: queue commands (QUEUED), or flag the transaction on an
        unknown command or a wrong arity; EXEC, DISCARD, MULTI, WATCH, QUIT, RESET act now."""
        for index, args in enumerate(commands):
            name = args[0].lower()
            if name in NOT_QUEUED:
                try:
                    lookup(args)
                except ReplyError:  # e.g. EXEC with arguments
                    if name != b"exec":
                        client.multi_dirty = True
                    self.dispatch_generic(client, args)  # answers the error (EXEC: aborts)
                    if client.multi is None:
                        rest = commands[index + 1 :]
                        return index + 1 + (self.dispatch_all(client, rest) if rest else 0)
                    continue
                self.dispatch_generic(client, args)
                if client.waiting or client.closing:
                    return index + 1
                if client.multi is None:  # DISCARD or RESET: back to plain dispatch
                    rest = commands[index + 1 :]
                    return index + 1 + (self.dispatch_all(client, rest) if rest else 0)
                continue
            try:
                lookup(args)
            except ReplyError as exc:
                client.multi_dirty = True
                self.reject(client, args, exc.message)
                continue
            client.multi.append(args)  # type: ignore[union-attr]
            client.reply_now(QUEUED_REPLY)
        return len(commands)

    def dispatch_subscribed(self, client: ClientConnection, commands: list[list[bytes]]) -> int:
        """A RESP2 client with subscriptions may only send pub/sub commands, PING, QUIT, RESET."""
        for index, args in enumerate(commands):
            if args[0].lower() in SUBSCRIBED_MODE_COMMANDS:
                self.dispatch_generic(client, args)
            else:
                try:
                    spec = lookup(args)
                except ReplyError as exc:
                    self.reject(client, args, exc.message)
                else:  # Redis names a subcommand in full: 'client|reply'
                    self.observer.rejected(spec)
                    self.reply_error(client, subscribed_mode_error(spec.fullname.encode()))
            if client.waiting or client.closing:
                return index + 1
            if not client.subscribed or client.proto != 2:
                rest = commands[index + 1 :]
                return index + 1 + (self.dispatch_all(client, rest) if rest else 0)
        return len(commands)

    def _count_fast(self, client: ClientConnection, commands: list, fast: int) -> None:
        if fast:
            self.stats.commands += fast
            client.last_command = commands[-1][0]
            self.schedule_flush()

    def dispatch(self, client: ClientConnection, args: list[bytes]) -> None:
        """Route one command (a backlog or held command being replayed)."""
        if not self.dispatch_all(client, [args]):
            client.backlog.appendleft(args)  # held again, by CLIENT PAUSE

    def dispatch_generic(self, client: ClientConnection, args: list[bytes]) -> None:
        """Every other case: name resolution with Redis's errors, then by fan-out policy."""
        try:
            spec = lookup(args)
        except ReplyError as exc:
            if args[0].lower() == b"exec":  # Redis answers a rejected EXEC this way, always
                end_transaction(self, client)
                reason = exc.message.removeprefix("ERR ")
                self.reject(client, args, f"{errors.EXECABORT_BECAUSE}{reason}")
            else:
                self.reject(client, args, exc.message)
            return
        client.last_command = spec.fullname.encode()  # CLIENT LIST's cmd=client|list
        fanout = spec.fanout
        if fanout is Fanout.SINGLE:
            worker = self.slots.worker_of(args[spec.first_key]) if spec.first_key else 0
            if self.gates and worker in self.gates:
                self.hold(client, args)
                return
            self.stats.commands += 1
            reply = Reply(client, None, spec, args)
            client.replies.append(reply)
            self.links[worker].send(reply, command_code(client.proto, client.db), args)
            self.schedule_flush()
        elif fanout is Fanout.ROUTER:
            self.stats.commands += 1
            self.run_router_command(client, spec, args)
        elif fanout is Fanout.COORDINATED:
            self.run_coordinated(client, spec, args)
        elif fanout is Fanout.BLOCKING:
            waiting = len(client.replies)
            self.blocking.start(client, spec, args)
            if len(client.replies) == waiting + 1:  # it started: counted, not timed
                reply = client.replies[-1]
                reply.cmd, reply.argv, reply.started = spec, args, None
        else:
            self.fan_out(client, spec, args)

    def reply_error(self, client: ClientConnection, message: str) -> None:
        self.stats.error_replies += 1
        client.reply_now(encode_error(message))

    def reject(self, client: ClientConnection, args: list[bytes], message: str) -> None:
        """A command refused before it ran (unknown, wrong arity): the error, and the
        rejected_calls of the command when it is one (a wrong arity)."""
        if message.startswith("ERR wrong number") or message.startswith("EXECABORT"):
            self.observer.rejected(lookup_spec(args))
        self.reply_error(client, message)

    def reply_failed(self, client: ClientConnection, spec: Command, args: list[bytes],
                     message: str) -> None:
        """A command that ran and failed: its error counts as its failed call."""
        self.stats.error_replies += 1
        client.replies.append(Reply(client, encode_error(message), spec, args))

    def hold(self, client: ClientConnection, args: list[bytes]) -> None:
        """Park a command that touches a gated worker; its client waits until release.  Past
        busy-reply-threshold of a global script (which gates every worker) it gets BUSY at
        once instead, as a busy Redis answers."""
        if self.script_busy:
            self.reply_error(client, self.busy_error)
            return
        self.held.append((client, args))
        client.waiting = True

    def global_script_busy(self) -> None:
        """A global script ran past busy-reply-threshold: what waits for the gates it holds
        gets BUSY, and so does what comes until it ends (SCRIPT KILL still reaches it)."""
        self.script_busy = True
        held, self.held = self.held, []
        for client, _ in held:
            if client.closed:
                continue
            self.reply_error(client, self.busy_error)
            client.waiting = False
            client.resume()

    def schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush_next_iteration)

    def _flush_next_iteration(self) -> None:
        # One more loop iteration (a non-blocking poll) before sending: under load it gathers
        # the requests of the clients that became readable meanwhile, so each worker message
        # carries more commands; idle, it costs a few microseconds.
        self.loop.call_soon(self.flush_links)

    def flush_links(self) -> None:
        """Send each worker its batch for this iteration (one message per worker)."""
        self.flush_scheduled = False
        for link in self.links:
            if link.commands:
                if link.down_error is not None:
                    self.fail_targets(link.take_queued()[0], link.down_error)
                    self.schedule_client_flush()
                    continue
                if link.verifying:
                    # Sent once the worker has said which shard it is (and what it holds).
                    if link.restart_timer is not None and \
                            link.count_held() > self.config["worker-restart-buffer"]:
                        self.give_up(link, "the commands waiting for it passed "
                                           "worker-restart-buffer")
                    continue
                if link.refused is not None:
                    self.fail_targets(link.take_queued()[0], link.refused)
                    self.schedule_client_flush()
                    continue
                self.stats.batches += 1
                self.observer.batch_sent(len(link.commands))  # the metrics' batch sizes
                link.flush()
                if self.observer.latency_threshold:  # LATENCY's worker-batch event
                    self.observer.batch_flushed(link.index, link.seq)
                # ZeroMQ's FD may have consumed its edge during the send: look for replies now.
                self.on_link_readable(link)

    def run_router_command(self, client: ClientConnection, spec: Command, args: list[bytes]) -> None:
        handler = ROUTER_COMMANDS[spec.fullname]
        if spec.name == "exec":
            self.monitor.exec_started(client)  # its commands show (and count) with its reply
        try:
            value = handler(self, client, args)
        except ReplyError as exc:
            self.reply_failed(client, spec, args, exc.message)
            return
        if value is not DEFERRED:
            if type(value) is PushRaw:  # (un)subscribe confirmations: CLIENT REPLY keeps them
                client.replies.append(PushReply(client, value, spec, args))
            else:
                client.replies.append(Reply(client, encode(value, client.proto), spec, args))

    def fan_out(self, client: ClientConnection, spec: Command, args: list[bytes]) -> None:
        """SPLIT_* and ALL_* commands: send the shares, merge the parts when all are back."""
        fanout = spec.fanout
        if fanout in (Fanout.ALL_SUM, Fanout.ALL_CONCAT, Fanout.ALL_OK):
            groups = {worker: (args, None) for worker in range(len(self.links))}
        else:
            step = spec.step
            if step > 1 and (len(args) - spec.first_key) % step:
                self.reply_error(client, errors.wrong_arity(spec.fullname))
                return
            groups = self.split_by_worker(args, spec)
        if len(groups) > 1 and "write" in spec.flags:  # all of its parts run, or none
            down = next((self.links[w].down_error for w in groups
                         if self.links[w].down_error is not None), None)
            if down is not None:
                self.reply_error(client, down)
                return
            if "denyoom" in spec.flags and self.config.get("maxmemory"):
                self.start_operation(client, args, groups, True, fan_out_checked)
                return
        if self.gates and not self.gates.isdisjoint(groups):
            self.hold(client, args)
            return
        self.stats.commands += 1
        reply = Reply(client, None, spec, args)
        client.replies.append(reply)
        if len(groups) == 1 and fanout not in (Fanout.ALL_SUM, Fanout.ALL_CONCAT):
            (worker,) = groups
            self.links[worker].send(reply, command_code(client.proto, client.db), args)
        else:
            positions = [where for _, where in groups.values()]
            gather = Gather(self, reply, len(groups), _MERGES[fanout], positions)
            code = command_code(3, client.db)
            for index, (worker, (sub_args, _)) in enumerate(groups.items()):
                self.links[worker].send(gather.part(index), code, sub_args)
        self.schedule_flush()

    def split_by_worker(
        self, args: list[bytes], spec: Command
    ) -> dict[int, tuple[list[bytes], list[int]]]:
        """Group a multi-key command's keys (with their values, for MSET) by worker.

        Returns ``{worker: (sub-command, positions of its keys among the request's keys)}``.
        Runs for every key of every MSET/MGET/DEL: the slot lookup is inlined.
        """
        step = spec.step
        owners = self.owners
        name = args[0]
        groups: dict[int, tuple[list[bytes], list[int]]] = {}
        get_group = groups.get
        for position, index in enumerate(spec.key_indexes(args)):
            key = args[index]
            worker = owners[xxh3(hash_tag(key) if b"{" in key else key) & SLOT_MASK]
            group = get_group(worker)
            if group is None:
                group = groups[worker] = ([name], [])
            if step == 1:
                group[0].append(key)
            else:
                group[0].extend(args[index : index + step])
            group[1].append(position)
        return groups

    # Coordinated operations -----------------------------------------------------------------
    def run_coordinated(self, client: ClientConnection, spec: Command, args: list[bytes]) -> None:
        plan_fn, operation = COORDINATED[spec.fullname]
        self.current_client = client  # for plans that act for the caller (scripts: its ACL)
        try:
            plan: Plan = plan_fn(self, args)
        except ReplyError as exc:
            self.reply_failed(client, spec, args, exc.message)
            return
        if plan.forward_to is None:
            self.start_operation(client, args, plan.workers, plan.exclusive, operation)
            return
        if self.gates and plan.forward_to in self.gates:
            self.hold(client, args)
            return
        self.stats.commands += 1
        reply = Reply(client) if plan.target is None else plan.target(client)
        reply.cmd, reply.argv = spec, args
        client.replies.append(reply)
        if plan.hold_client:
            client.waiting = True
        self.links[plan.forward_to].send(reply, command_code(client.proto, client.db), args)
        self.schedule_flush()

    def start_operation(self, client: ClientConnection, args: list[bytes], workers: Any,
                        exclusive: bool, operation: Any) -> None:
        """Run ``await operation(router, client, args)`` for this client's next reply, over
        ``workers`` (gated for the whole operation when ``exclusive``), holding the command
        while another operation gates one of them."""
        if self.gates and not self.gates.isdisjoint(workers):
            self.hold(client, args)
            return
        self.stats.commands += 1
        reply = Reply(client, None, lookup_spec(args), args)
        client.replies.append(reply)
        gated = frozenset(workers) if exclusive else frozenset()
        self.gates.update(gated)
        client.waiting = True
        self.loop.create_task(self._coordinate(client, reply, operation, args, gated,
                                               workers))

    async def _coordinate(
        self,
        client: ClientConnection,
        reply: Reply,
        operation: Any,
        args: list[bytes],
        gated: frozenset[int],
        workers: Any = (),
    ) -> None:
        CURRENT_DB.set(client.db)  # this task acts in the client's database
        try:
            if reply.cmd is not None and "write" in reply.cmd.flags:
                down = next((self.links[w].down_error for w in workers
                             if self.links[w].down_error is not None), None)
                if down is not None:  # all or nothing: no step where one cannot run
                    raise ReplyError(down)
            if workers and self.config.get("maxmemory") and reply.cmd is not None \
                    and "denyoom" in reply.cmd.flags and await self.out_of_memory(workers):
                raise ReplyError(errors.OOM)
            value = await operation(self, client, args)
        except ReplyError as exc:
            value = exc
        except Exception as exc:  # never leave a gate closed or a client hanging
            log.exception("coordinated %r failed", args[:1])
            value = ReplyError(f"ERR internal error: {exc}")
        finally:
            self.gates.difference_update(gated)
        if type(value) is ReplyError:
            self.stats.error_replies += 1
        reply.data = encode(value, client.proto)
        client.waiting = False
        if gated:
            self.release_held()
        client.resume()
        client.flush()

    async def out_of_memory(self, workers: Any) -> bool:
        """Whether one of ``workers`` is over its share of maxmemory with nothing left to
        evict (``__oom``): a command that may grow memory and spans workers is refused before
        any of its steps, as a worker refuses one of its own keys."""
        requests = [self.call(worker, [b"__oom"]) for worker in workers]
        return any([await request == 1 for request in requests])

    def release_held(self) -> None:
        """Re-dispatch held commands in arrival order (some may be held again), and wake the
        operations waiting for a gate to open."""
        waiters, self.gate_waiters = self.gate_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)
        held, self.held = self.held, []
        for client, args in held:
            if client.closed:
                continue
            client.waiting = False
            self.dispatch(client, args)
            client.resume()

    async def acquire_gates(self, workers: Any) -> None:
        """Close the gates of ``workers`` once no other operation holds any of them."""
        while not self.gates.isdisjoint(workers):
            future = self.loop.create_future()
            self.gate_waiters.append(future)
            await future
        self.gates.update(workers)

    def call(self, worker: int, args: list[bytes], proto: int = 3,
             raw: bool = False, db: int | None = None) -> asyncio.Future:
        """Send one command to a worker on behalf of a coordinated operation: its reply,
        decoded (from RESP3), or ``raw`` as encoded in ``proto``.  It runs in database
        ``db``, by default the one of the client the operation acts for (``CURRENT_DB``)."""
        future = self.loop.create_future()
        code = command_code(proto, CURRENT_DB.get() if db is None else db, step=True)
        self.links[worker].send(FutureTarget(future, raw), code, args)
        self.schedule_flush()
        return future

    async def call_all(self, args: list[bytes]) -> list[Any]:
        return await asyncio.gather(*(self.call(w, args) for w in range(len(self.links))))

    def worker_of(self, key: bytes) -> int:
        return self.slots.worker_of(key)

    # Replies from workers -------------------------------------------------------------------
    def on_link_readable(self, link: WorkerLink) -> None:
        messages = link.receive_all()
        if messages:
            self.deliver(link, messages)

    def deliver(self, link: WorkerLink, messages: list[bytes]) -> None:
        """Hand each reply of each message to what waits for it, then write to the clients.

        A message that does not decode, or holds another number of replies than its batch had
        commands, is logged and dropped (its batch's commands get an error): a worker of another
        version, or a hostile peer on an unauthenticated link, must not crash the router or
        leave clients waiting.  Filling a target never raises (see ``FutureTarget.fill`` and
        ``Gather.done``), so the loop itself is not guarded per reply.
        """
        codec = link.codec
        decode_replies = codec.decode_replies
        push_prefix = codec.push_prefix
        for frame in messages:
            if frame[:5] == push_prefix:
                try:
                    entries = codec.decode_push(frame)
                    if entries and entries[0][0] == SCRIPT_CALL:
                        self.script_call(link, entries)
                    elif is_tracking_push(entries):
                        deliver_invalidations(self, entries)
                    elif entries and entries[0][0] == SCRIPT_MONITOR:
                        self.monitor.script_lines(entries)
                    else:
                        self.pubsub.deliver(entries)
                except Exception as exc:  # ProtocolError, or a trusted peer's bad shape
                    self.malformed(link, frame, exc)
                continue
            try:
                seq, replies, events = decode_replies(frame)
            except Exception as exc:
                # It stood where the oldest batch's replies belong (batches are answered in
                # order): that batch fails now rather than waiting forever.
                self.malformed(link, frame, exc)
                if link.inflight:
                    self.fail_targets(link.inflight.popleft()[1],
                                      f"ERR worker {link.index} sent a malformed reply")
                continue
            if seq & EARLY_BIT:
                targets, lost = link.take_early(seq ^ EARLY_BIT), None
            else:
                targets, lost = link.targets_for(seq)
                if self.observer.latency_threshold:  # LATENCY's worker-batch event
                    self.observer.batch_answered(link.index, seq)
            if lost:
                log.error("worker %d lost %d commands (restarted?)", link.index, len(lost))
                self.fail_targets(lost, f"ERR worker {link.index} restarted; command lost")
            self.fill_replies(link, frame, targets, replies, events)
        self.schedule_client_flush()

    def fill_replies(self, link: WorkerLink, frame: bytes, targets: list[Any],
                     replies: list[bytes], events: list[tuple[int, bytes | None]]) -> None:
        """Hand a batch's replies to its targets, and its blocking events to the waiters."""
        if len(replies) != len(targets) and targets:
            self.malformed(link, frame, f"{len(replies)} replies to {len(targets)} commands")
            self.fail_targets(targets, f"ERR worker {link.index} sent a malformed reply")
            return
        touched = self.touched
        try:
            for target, data in zip(targets, replies):
                if type(target) is Reply:
                    target.data = data
                    touched.add(target.client)
                else:
                    target.fill(data)
            for ticket, data in events:
                self.blocking.on_event(ticket, data)
        except Exception as exc:  # a trusted peer's reply of a wrong type
            self.malformed(link, frame, exc)
            self.fail_targets(targets, f"ERR worker {link.index} sent a malformed reply")

    def script_call(self, link: WorkerLink, entries: list[tuple]) -> None:
        """A global script on ``link``'s worker calls a command on another worker's keys:
        run it there (every worker is gated for that script: nothing else interleaves) and
        send the reply back as a batch of sequence 0 (``shardis.protocol``).  Accepted only
        from the worker running the global script, and only for a command a script may call
        whose keys all live on one other worker."""
        if link.index != self.script_worker or len(entries) != 1:
            raise ValueError("a script call from a worker that runs no global script")
        _, proto_text, db_text, encoded = entries[0]
        target = ScriptCallTarget(link, 3 if proto_text == b"3" else 2)
        try:
            db = int(db_text or b"0")
            if not 0 <= db < self.config.get("databases", 16):
                raise ValueError(f"no database {db}")
            args = _script_call_args(encoded)
            spec = lookup(args)
            owners = {self.worker_of(args[i]) for i in spec.key_indexes(args)}
            if "noscript" in spec.flags or len(owners) != 1 or link.index in owners:
                raise ReplyError("ERR shardis: not a call a script may make on another worker")
        except (ReplyError, ValueError) as exc:
            # The script waits for an answer: it gets an error, never silence.
            target.fill(encode_error(getattr(exc, "message", None) or f"ERR {exc}"))
            return
        self.links[owners.pop()].send(target, command_code(target.proto, db), args)
        self.schedule_flush()

    def malformed(self, link: WorkerLink, frame: bytes, reason: object) -> None:
        self.malformed_log.error("dropped a malformed message worker=%d bytes=%d head=%s "
                                 "reason=%s", link.index, len(frame), bytes(frame[:16]).hex(),
                                 str(reason).replace(" ", "_")[:200])

    def on_link_event(self, link: WorkerLink) -> None:
        dropped, back = link.connection_events()
        if dropped:
            # Whatever connects here next is asked which shard it is before it gets commands
            # (those sent in the instant before this event may still reach it first).
            link.verifying = True
            self.on_link_readable(link)  # replies that arrived before the drop still count
            self.worker_dropped(link)
        if back:
            self.observer.worker_connected(link.index)  # the metrics' restarts
            self.monitor.worker_connected(link.index)
            self.loop.create_task(self.verify_and_restore(link))

    def worker_dropped(self, link: WorkerLink) -> None:
        """A worker's connection dropped (it died, or its host stopped answering heartbeats).

        With an AOF its batches in flight are held: resent when it is back (``resume``; those
        it had logged answer from its reply log), or failed after worker-restart-timeout.
        New commands for it wait too under ``shardis up``, whose supervisor restarts a dead
        worker at once (a crash is a pause); a router run alone cannot know when a worker on
        another host comes back, so they fail at once, naming the worker (Redis Cluster's
        CLUSTERDOWN), while every other worker keeps serving.  Without an AOF the batches in
        flight fail too."""
        timeout = self.config["worker-restart-timeout"]
        link.drop_unsent()
        link.pinging = False
        checks = [t for _, targets, _ in link.inflight for t in targets
                  if type(t) is VerifyTarget]
        self.fail_targets(checks, "ERR connection lost")  # a check in progress starts again
        if link.resumable and timeout > 0:
            link.pending.extend(batch for batch in link.inflight
                                if not any(type(t) is VerifyTarget for t in batch[1]))
            link.inflight.clear()
            if link.restart_timer is None:
                log.warning("worker %d disconnected with %d batches in flight: holding its "
                            "commands for up to %ds until it is back", link.index,
                            len(link.pending), timeout)
                link.restart_timer = self.loop.call_later(
                    timeout, self.give_up, link,
                    f"it did not come back within worker-restart-timeout ({timeout}s)")
            if not self.config.get(SUPERVISED):
                link.down_error = self.down_message(link, "is unreachable")
                self.fail_targets(link.take_queued()[0], link.down_error)
                self.flush_clients()
            return
        lost = link.take_inflight()
        link.down_error = self.down_message(link, "is down")
        if lost:
            log.error("worker %d disconnected with %d commands in flight", link.index,
                      len(lost))
            self.fail_targets(lost, f"ERR worker {link.index} connection lost")
        self.flush_clients()

    @staticmethod
    def down_message(link: WorkerLink, what: str) -> str:
        """The error of a command for a worker that is down: Redis Cluster's CLUSTERDOWN
        family (its slots are not served), naming the worker and where it was."""
        return f"CLUSTERDOWN worker {link.index} ({link.address}) {what}"

    def give_up(self, link: WorkerLink, reason: str) -> None:
        """Stop holding commands for a worker that is down: they fail, and so does every
        command for it until it is back."""
        if not link.verifying:
            return
        message = self.down_message(link, f"is down: {reason}")
        log.error("worker %d is down and %s: failing its commands", link.index, reason)
        link.down_error = message
        self.stop_holding(link)
        held = [t for _, targets, _ in link.take_pending() for t in targets]
        self.fail_targets(held + link.take_queued()[0], message)
        self.flush_clients()

    def stop_holding(self, link: WorkerLink) -> None:
        if link.restart_timer is not None:
            link.restart_timer.cancel()
            link.restart_timer = None
        link.reset_held()

    async def verify_and_restore(self, link: WorkerLink) -> None:
        """A worker reconnected: before anything queued reaches it, ask which shard it is (a
        worker restarted with another --index, or a shuffled address, would otherwise take
        keys of other slots) and which of this router's batches its AOF holds.  The right
        one gets the batches it lost resent (``resume``) and its state back; a wrong one
        gets nothing: every command for it fails until a reconnect brings the right one."""
        link.verifying = True
        reply = await self.ask(link, [b"__whoami", b"applied"])
        if reply is None:
            log.warning("worker %d (%s) did not say which shard it is; using it anyway",
                        link.index, link.address)
            reply = [link.index, None]
        if isinstance(reply, ReplyError):
            return  # the connection dropped again: the next reconnect verifies again
        shard, applied = reply if isinstance(reply, list) else (reply, None)
        link.down_error = None
        if shard != link.index:
            log.error("worker at %s is shard %s but is listed at position %d; refusing its "
                      "slots' commands until the right worker connects there", link.address,
                      shard, link.index)
            link.refused = errors.CLUSTERDOWN_UNSERVED
            self.stop_holding(link)
            held = [t for _, targets, _ in link.take_pending() for t in targets]
            self.fail_targets(held, link.refused)
            self.flush_clients()
        else:
            link.refused = None
            self.reload_scripts(link)
            if not await self.resume(link, applied):
                return  # dropped again meanwhile: held until the next reconnect
            queued = link.take_queued()
            self.restore_worker_state(link.index)
            link.requeue(queued)  # what clients sent meanwhile goes after the state
        link.verifying = False
        self.schedule_flush()

    def reload_scripts(self, link: WorkerLink) -> None:
        """A worker that (re)connected gets every script the server knows, before anything
        resent or new can call one by its sha1 (one script cache for the whole server), and
        the function libraries."""
        from shardis.router.functions import functions_sync

        loads = [(3, [b"SCRIPT", b"LOAD", body]) for body in self.scripts.values()]
        loads += [(3, command) for command in functions_sync(self)]
        if loads:
            link.resend([FutureTarget(self.loop.create_future()) for _ in loads], loads)

    async def ask(self, link: WorkerLink, args: list[bytes]) -> Any:
        """One command to a worker being verified, ahead of anything queued: its decoded
        reply, a ReplyError if the connection dropped, None if it did not answer in time."""
        future = self.loop.create_future()
        link.send_alone(VerifyTarget(future), 3, args)
        deadline = self.loop.time() + WORKER_CHECK_SECONDS
        while not future.done() and self.loop.time() < deadline:
            # ZeroMQ's FD is edge-triggered and a send (the unsent frames' retries too) may
            # consume the edge of a reply that arrived: look at the socket now and then
            # rather than trust the edge alone.
            self.on_link_readable(link)
            await asyncio.wait([future], timeout=0.25)
        return future.result() if future.done() else None

    async def resume(self, link: WorkerLink, applied: int | None) -> bool:
        """Finish, in order and before anything new, the batches lost with the worker's last
        connection.  ``applied`` is the last one its AOF holds (None: it has no AOF, so they
        fail).  Those it holds ran: their replies come from its reply log (a read-only batch
        not recorded there runs again; a write whose reply is gone fails).  The others are
        sent again.  False if the connection dropped meanwhile (everything is held again)."""
        link.resumable = applied is not None
        pending = link.take_pending()
        self.stop_holding(link)
        if not pending:
            return True
        if applied is None:
            self.fail_targets([t for _, targets, _ in pending for t in targets],
                              f"ERR worker {link.index} connection lost")
            self.flush_clients()
            return True
        ran = [batch for batch in pending if batch[0] <= applied]
        rerun = []
        if ran:
            messages = await self.ask(link, [b"__lost_replies", *(b"%d" % b[0] for b in ran)])
            if not isinstance(messages, list) or len(messages) != len(ran):
                link.pending[:0] = pending
                return False
            rerun = self.recover_replies(link, ran, messages)
        resent = rerun + [batch for batch in pending if batch[0] > applied]
        for _, targets, commands in resent:
            link.resend(targets, commands)
        log.info("worker %d is back: %d batches resent, %d had run (replies recovered)",
                 link.index, len(resent), len(ran) - len(rerun))
        return True

    def recover_replies(self, link: WorkerLink, ran: list[Any],
                        messages: list[bytes | None]) -> list[Any]:
        """Deliver the recorded replies of batches that ran; the read-only ones without a
        record are returned (to run again: they changed nothing)."""
        rerun = []
        for batch, message in zip(ran, messages):
            _, targets, commands = batch
            if message is not None:
                try:
                    _, replies, events = link.codec.decode_replies(message)
                except Exception as exc:
                    self.malformed(link, message, exc)
                    self.fail_targets(targets, f"ERR worker {link.index} sent a malformed reply")
                    continue
                self.fill_replies(link, message, targets, replies, events)
            elif all(_read_only(args) for _, args in commands):
                rerun.append(batch)
            else:
                self.fail_targets(targets, f"ERR worker {link.index} ran this command but its "
                                           "reply was lost")
        self.flush_clients()
        return rerun

    def restore_worker_state(self, worker: int) -> None:
        """A worker came back (restarted, empty): give it again what routers keep on workers:
        the notification classes, this router's pub/sub subscriptions and parked commands, and
        (worker 0) the server's ACL users."""
        log.info("worker %d connected: restoring subscriptions and blocked commands", worker)
        from shardis.router.memory import restore_share

        restore_share(self, worker)
        flags = self.config.get("notify-keyspace-events", 0)
        if flags:
            self.call(worker, [b"__notify", b"%d" % flags])
        self.pubsub.replay(worker)
        self.blocking.replay(worker)
        if worker == 0:
            self.aclsync.worker_back()  # the hub: a restarted one gets the ACL users back

    def fail_targets(self, targets: list[Any], message: str) -> None:
        data = encode_error(message)
        for target in targets:
            self.stats.error_replies += 1
            if type(target) is Reply:
                target.data = data
                self.touched.add(target.client)
            else:
                target.fill(data)

    def schedule_client_flush(self) -> None:
        # Once per loop iteration, like the worker batches: a client whose replies come back
        # from several workers in the same iteration gets them in one write.
        if not self.clients_flush_scheduled:
            self.clients_flush_scheduled = True
            self.loop.call_soon(self.flush_clients)

    def flush_clients(self) -> None:
        self.clients_flush_scheduled = False
        touched = self.touched
        while touched:
            touched.pop().flush()

    # Lifecycle ------------------------------------------------------------------------------
    # Link round trips --------------------------------------------------------------------------
    def ping_links(self) -> None:
        """Every PING_SECONDS, a ``__ping`` to each worker that is up, timed: each link's round-trip
        time (INFO shards' ``rtt_ms``, the metrics).  It waits behind the commands queued at
        the worker before it, as theirs do: the time a command takes to get there and back."""
        self.ping_timer = self.loop.call_later(PING_SECONDS, self.ping_links)
        for link in self.links:
            if link.verifying:
                self.on_link_event(link)  # a (re)connection whose event's edge was missed
            self.on_link_readable(link)  # a reply whose ZeroMQ edge a send consumed
            if link.pinging or link.verifying or link.down_error is not None \
                    or link.refused is not None:
                continue
            link.pinging = True
            started = time.perf_counter()
            self.call(link.index, [b"__ping"], db=0).add_done_callback(
                lambda future, link=link, started=started: self._pinged(link, started, future))

    @staticmethod
    def _pinged(link: WorkerLink, started: float, future: asyncio.Future) -> None:
        link.pinging = False
        if not future.cancelled() and future.result() == b"PONG":
            link.rtt_ms = (time.perf_counter() - started) * 1000

    def close(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
        self.limits.stop()
        self.observer.close()
        for link in self.links:
            self.loop.remove_reader(link.fd)
            self.loop.remove_reader(link.monitor_fd)
            link.close()
