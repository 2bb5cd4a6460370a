"""The worker process: a ZeroMQ ROUTER socket in front of one :class:`Shard`.

The loop is a plain poll loop (no asyncio needed: a worker only ever waits on its socket).  On
each wake-up it drains every queued batch without blocking, executes it and answers each batch
with one message, so a burst from the router costs one wake-up.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from collections import deque

import zmq
from zmq import NOBLOCK, SNDMORE

from shardis import protocol
from shardis.errors import ReplyError
from shardis.linksec import KeyAuthenticator, WorkerCurve, make_curve_server
from shardis.logs import RateLimitedLog
from shardis.persist.aof import AofError
from shardis.persist.rdb import RdbError
from shardis.protocol import CALL_REPLY_SEQ
from shardis.resp import OK, encode, encode_error, encode_int
from shardis.worker.aoflog import AofLog, AofRewriter
from shardis.worker.replylog import ReplyLog
from shardis.worker.shard import Shard
from shardis.worker.snapshot import Snapshots, prepare_shutdown

log = logging.getLogger("shardis.worker")

#: How often the worker does housekeeping (active expiry) and notices shutdown, in ms.
POLL_INTERVAL_MS = 100
#: Housekeeping may take this share of each interval (Redis's active expiry takes 25%).
HOUSEKEEPING_BUDGET_S = POLL_INTERVAL_MS / 1000 * 0.25


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the supervising process dies: no orphan workers."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class WorkerServer:
    """Binds ``address`` and serves one shard until :meth:`stop`.

    With ``curve``, only the listed routers complete a handshake.  The link is *trusted* on
    ipc:// or with CURVE (its peers are authenticated): it then speaks the faster marshal
    encoding; otherwise the strict one (``shardis.protocol``), and every message's frame count
    is checked too.  Either way a malformed message is logged (rate-limited) and dropped.
    """

    def __init__(self, address: str, index: int = 0, curve: WorkerCurve | None = None,
                 aof: AofLog | None = None, snapshots: Snapshots | None = None,
                 rewriter: AofRewriter | None = None, databases: int = 16) -> None:
        self.address = address
        self.shard = Shard(index, databases)
        #: RDB snapshots (SAVE, BGSAVE, save rules); loaded at start unless the AOF is on.
        self.snapshots = snapshots
        self.shard.snapshots = snapshots
        #: BGREWRITEAOF and the automatic rewrite (with appendonly yes or no, as Redis).
        self.rewriter = rewriter
        self.shard.rewriter = rewriter  # type: ignore[attr-defined]
        #: CONFIG SET of a persistence directive, forwarded by the router (``__config_set``).
        self.shard.apply_config = self.apply_config  # type: ignore[attr-defined]
        #: ``appendonly`` switched at run time: done between batches (see :meth:`between`).
        self.switch_aof: bool | None = None
        #: the ``appendfsync`` a log switched on at run time gets.
        self.appendfsync = aof.policy if aof is not None else "everysec"
        #: the stats dirty count when a SHUTDOWN prepared this stop (None: none did).
        self.shard.shutdown_dirty = None  # type: ignore[attr-defined]
        #: ``appendonly yes``: loaded before the socket is bound, then appended to.
        self.aof = aof
        if aof is not None:
            self.load_aof(aof)
        elif snapshots is not None:
            snapshots.load(self.shard)
        self.running = False
        self.context = zmq.Context.instance()
        self.trusted = curve is not None or address.startswith("ipc://")
        self.codec = protocol.codec_for(self.trusted)
        self.malformed = RateLimitedLog(log)
        self.authenticator: KeyAuthenticator | None = None
        if curve is not None:
            self.authenticator = KeyAuthenticator(self.context, curve.authorized)
            self.authenticator.start()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        # The router bounds what it sends; the worker must never drop a batch.
        self.socket.setsockopt(zmq.SNDHWM, 0)
        self.socket.setsockopt(zmq.RCVHWM, 0)
        # A router keeps its id across reconnects (the AOF remembers its batches by it): a
        # reconnect takes the id over from a connection this side has not seen drop yet.
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if curve is not None:
            make_curve_server(self.socket, curve)
        self.socket.bind(address)
        self.shard.while_busy = self.serve_while_busy
        self.shard.remote_call = self.remote_call
        #: messages read while a script waited for a remote call's reply: served next.
        self.backlog: deque[tuple[bytes, bytes]] = deque()

    def load_aof(self, aof: AofLog) -> None:
        """Replay the AOF (no logging, no replies: nobody is connected yet), then append."""
        shard = self.shard
        aof.load(shard)
        shard.stats.dirty = 0
        shard.stats.commands = 0
        shard.set_log_expired(True)  # from now on expiries are logged as DEL
        aof.open_for_append()
        shard.aof = aof
        shard.replies_log = ReplyLog(os.path.dirname(aof.dir.path))
        if self.rewriter is not None:
            self.rewriter.base_size = aof.size()[1]  # Redis: aof_rewrite_base_size at load

    def flush_aof(self) -> None:
        """Write (``always``: and fsync) what the batch logged, before its replies leave.  A
        failed write stops the worker, as Redis does: no reply may acknowledge a lost write."""
        try:
            self.shard.aof.flush()  # type: ignore[union-attr]
        except OSError as exc:
            log.critical("can't write the append only file: %s; exiting", exc)
            raise SystemExit(1) from exc

    # Persistence changes between batches --------------------------------------------------------
    def apply_config(self, name: str, text: bytes) -> None:
        """``__config_set name value``: a persistence directive changed by CONFIG SET (the
        router checked the value); ``appendonly`` switches between batches."""
        from shardis.config import WORKER_DIRECTIVES, ConfigError, lookup

        directive = lookup(name)
        if directive is None or (directive.name not in WORKER_DIRECTIVES
                                 and directive.worker_apply is None):
            raise ReplyError(f"ERR a worker does not keep the directive '{name}'")
        try:
            value = directive.parse(text.decode(errors="replace"))
        except ConfigError as exc:
            raise ReplyError(f"ERR CONFIG SET failed (possibly related to argument "
                             f"'{name}') - {exc}") from None
        if directive.worker_apply is not None:  # loglevel: applies itself
            directive.worker_apply(value)
            return
        snapshots, rewriter, aof = self.snapshots, self.rewriter, self.shard.aof
        name = directive.name
        if name in ("maxmemory-policy", "lfu-log-factor", "lfu-decay-time"):
            self.shard.set_access_tracking(**{name.replace("-", "_"): value})
        elif name == "maxmemory-samples":
            self.shard.evictor.samples = value
        elif name == "maxmemory-eviction-tenacity":
            self.shard.evictor.tenacity = value
        elif name == "save" and snapshots is not None:
            snapshots.rules = list(value)
        elif name == "dbfilename" and snapshots is not None:
            snapshots.filename = value
        elif name == "appendfsync":
            self.appendfsync = value
            if aof is not None:
                aof.set_policy(value)
        elif name == "appendonly":
            self.switch_aof = None if bool(value) == (aof is not None) else bool(value)
        elif rewriter is not None:
            if name == "aof-use-rdb-preamble":
                rewriter.rdb_preamble = bool(value)
            elif name == "auto-aof-rewrite-percentage":
                rewriter.percentage = value
            elif name == "auto-aof-rewrite-min-size":
                rewriter.min_size = value

    def between_batches(self) -> None:
        """What must happen once a batch's writes are in their file and before the next batch
        runs: switching the AOF on or off, starting a rewrite BGREWRITEAOF accepted."""
        if self.switch_aof is not None:
            on, self.switch_aof = self.switch_aof, None
            if on:
                self.start_aof()
            else:
                self.stop_aof()
        if self.rewriter is not None and self.rewriter.pending:
            self.rewriter.after_batch(self.shard)

    def start_aof(self) -> None:
        """``CONFIG SET appendonly yes`` (Redis's ``startAppendOnly``): writes go to a
        temporary incr file while a rewrite writes the base from memory; the rewrite's end
        makes both current.  If a BGSAVE runs, the rewrite waits for it (scheduled)."""
        shard, rewriter = self.shard, self.rewriter
        if rewriter is None or shard.aof is not None:
            return
        if rewriter.running():
            log.warning("AOF was enabled but there is already an AOF rewriting in background. "
                        "Stopping background AOF and starting a rewrite now.")
            rewriter.kill(shard)
        folder = rewriter.folder
        aof = AofLog(os.path.dirname(folder.path), os.path.basename(folder.path),
                     self.appendfsync)
        try:
            aof.start_waiting()
        except OSError as exc:
            log.warning("Redis needs to enable the AOF but can't open its file: %s", exc)
            return
        shard.set_log_expired(True)
        shard.aof = aof
        self.aof = aof
        if shard.replies_log is None:
            shard.replies_log = ReplyLog(os.path.dirname(folder.path))
        if self.snapshots is not None and self.snapshots.running():
            log.warning("AOF was enabled but there is already another background operation. "
                        "An AOF background was scheduled to start when possible.")
            rewriter.scheduled = True
        else:
            rewriter.start(shard)

    def stop_aof(self) -> None:
        """``CONFIG SET appendonly no`` (Redis's ``stopAppendOnly``): the log is flushed,
        fsynced and closed; a running rewrite is killed."""
        shard, aof = self.shard, self.shard.aof
        if aof is None:
            return
        if self.rewriter is not None:
            self.rewriter.kill(shard)
            self.rewriter.scheduled = False
        waiting = aof.waiting
        path = aof.writer.path if aof.writer is not None else None
        aof.close()
        if waiting and path is not None:
            try:
                os.unlink(path)  # the temporary incr file no manifest names
            except OSError:
                pass
        shard.aof = None
        self.aof = None
        shard.set_log_expired(False)
        if shard.replies_log is not None:
            shard.replies_log.close()
            shard.replies_log = None

    def fsync_aof(self) -> None:
        """``everysec``'s fsync (in the background); one that failed stops the worker."""
        try:
            self.shard.aof.tick()  # type: ignore[union-attr]
        except OSError as exc:
            log.critical("can't fsync the append only file: %s; exiting", exc)
            raise SystemExit(1) from exc

    def stop(self, *_: object) -> None:
        self.running = False
        self.shard.stopping = True  # a script running now ends at its next hook

    def serve_while_busy(self) -> None:
        """Called from inside a script that runs past busy-reply-threshold: answer every batch
        waiting on the link at once (``EARLY`` replies), BUSY for each command except SCRIPT
        KILL and the router's shard check.  Nothing is queued for later: a busy worker holds
        no backlog, whatever the clients send meanwhile."""
        from shardis.commands.scripting import engine_of

        sock = self.socket
        backlog = self.backlog
        while True:
            if backlog:  # what came while a global script waited for a remote call
                identity, frame = backlog.popleft()
            else:
                try:
                    identity = sock.recv(NOBLOCK)
                except zmq.Again:
                    return
                frame = sock.recv()
                if not self.trusted and sock.rcvmore:
                    self.drop(identity, frame, "a message of several frames")
                    continue
            try:
                seq, batch = self.codec.decode_batch(frame)
                if seq == CALL_REPLY_SEQ:
                    raise ValueError("a remote call's reply with no call waiting")
                engine = engine_of(self.shard.db)
                replies = [self.busy_reply(engine, args, protocol.decode_code(code)[0])
                           for code, args in batch]
                message = self.codec.encode_replies(protocol.early_seq(seq), replies)
            except Exception as exc:  # malformed, or well-formed but of a wrong shape
                self.drop(identity, frame, str(exc) or type(exc).__name__)
                continue
            sock.send(identity, SNDMORE)
            sock.send(message)

    def remote_call(self, args: list[bytes], proto: int) -> bytes:
        """Run ``args`` on the worker owning its keys, for the script running here in global
        mode (every worker gated by the router for it): ask the router, which forwards it,
        and wait for the reply (a batch of sequence 0 from that router, holding the reply
        encoded in ``proto``).  Whatever else arrives meanwhile waits in the backlog."""
        peer = self.shard.pubsub.peer
        self.socket.send(peer, SNDMORE)
        db = b"%d" % self.shard.db.index  # the database the script's call runs in
        self.socket.send(self.codec.encode_push([(protocol.SCRIPT_CALL, b"%d" % proto, db,
                                                  encode(list(args), 2))]))
        while True:
            if not self.socket.poll(POLL_INTERVAL_MS):
                if self.shard.stopping:
                    raise ReplyError("ERR the worker is stopping")
                continue
            identity = self.socket.recv()
            frame = self.socket.recv()
            if identity == peer and not (not self.trusted and self.socket.rcvmore):
                try:
                    seq, batch = self.codec.decode_batch(frame)
                except Exception:  # noqa: BLE001 - not a batch: the main loop drops it
                    seq, batch = b"", []
                if seq == protocol.CALL_REPLY_SEQ and len(batch) == 1 and batch[0][1]:
                    return batch[0][1][0]
            self.backlog.append((identity, frame))

    def busy_reply(self, engine: object, args: list[bytes], proto: int = 2) -> bytes:
        from shardis.commands.scripting import BUSY, BUSY_FUNCTION

        name = args[0].lower() if args and isinstance(args[0], bytes) else b""
        try:
            if name == b"__script_kill":
                return encode(engine.kill(len(args) > 1), 2)  # type: ignore[attr-defined]
            if name == b"function" and len(args) == 2 and args[1].lower() == b"stats":
                from shardis.commands.functions import busy_stats

                return encode(busy_stats(engine), proto)
            if name == b"__whoami" and len(args) == 1:
                return encode_int(self.shard.index)
            if name == b"__shutdown" and b"nosave" in (a.lower() for a in args[1:]):
                # SHUTDOWN NOSAVE stops a server busy with a script, as in Redis.
                prepare_shutdown(self.shard, save=False, force=True, fsync_aof=False)
                return encode(OK, 2)
        except ReplyError as exc:
            return encode_error(exc.message)
        return encode_error(BUSY if engine.function_name is None  # type: ignore[attr-defined]
                            else BUSY_FUNCTION)

    def serve_forever(self) -> None:
        self.running = True
        sock = self.socket
        recv, send = sock.recv, sock.send
        execute_batch = self.shard.execute_batch
        decode_batch = self.codec.decode_batch
        encode_replies = self.codec.encode_replies
        check_frames = not self.trusted
        log.info("worker %d ready on %s (pid %d, %s link encoding)", self.shard.index,
                 self.address, os.getpid(), self.codec.name)
        housekeeping = self.shard.housekeeping
        blocking = self.shard.blocking
        pubsub = self.shard.pubsub
        next_housekeeping = time.monotonic()
        shard = self.shard
        snapshots = self.snapshots
        rewriter = self.rewriter
        while self.running:
            now = time.monotonic()
            if now >= next_housekeeping:
                housekeeping(HOUSEKEEPING_BUDGET_S)
                if snapshots is not None:
                    snapshots.tick(shard)
                next_housekeeping = now + POLL_INTERVAL_MS / 1000
                aof = shard.aof
                if aof is not None:
                    self.flush_aof()  # expired keys' DELs
                    self.fsync_aof()
                if rewriter is not None:
                    rewriter.tick(shard)
                if pubsub.pushes:  # keyspace notifications of keys that expired
                    self.send_pushes()
            if not self.backlog and not sock.poll(POLL_INTERVAL_MS):
                continue
            # Drain what is queued; the identity frame is read by itself and the message frame
            # after it (recv_multipart would check RCVMORE per frame: microseconds per message,
            # paid only on untrusted links, where a peer may send several frames).
            backlog = self.backlog
            while True:
                if backlog:
                    identity, frame = backlog.popleft()
                else:
                    try:
                        identity = recv(NOBLOCK)
                    except zmq.Again:
                        break
                    frame = recv()
                    if check_frames and sock.rcvmore:
                        self.drop(identity, frame, "a message of several frames")
                        continue
                try:
                    seq, batch = decode_batch(frame)
                    if seq == CALL_REPLY_SEQ:
                        raise ValueError("a remote call's reply with no script waiting")
                    pubsub.peer = identity
                    replies = execute_batch(batch)
                    events = blocking.take_events() if blocking.events else None
                    message = encode_replies(seq, replies, events)
                except Exception as exc:  # malformed, or well-formed but of a wrong shape
                    self.drop(identity, frame, str(exc) or type(exc).__name__)
                    continue
                aof = shard.aof
                if aof is not None:
                    # Group commit: the replies leave after the write, which is annotated
                    # with the batch's origin (a restart resumes after it); the reply is on
                    # disk first, for a router that loses it with this process.
                    if aof.has_writes():
                        shard.replies_log.append(identity, seq, message)  # type: ignore[union-attr]
                    aof.origin = (identity, int.from_bytes(seq, "big"))
                    self.flush_aof()
                    aof.origin = None
                send(identity, SNDMORE)
                send(message)
                if pubsub.pushes:
                    self.send_pushes()
                if self.switch_aof is not None or (rewriter is not None and rewriter.pending):
                    self.between_batches()
        self.close()

    def drop(self, identity: bytes, frame: bytes, reason: str) -> None:
        """Log (rate-limited) and drop a malformed message, with the frames that follow it."""
        frames = 2
        while self.socket.rcvmore:
            self.socket.recv()
            frames += 1
        self.malformed.error("dropped a malformed message peer=%s frames=%d bytes=%d head=%s "
                             "reason=%s", identity.hex(), frames, len(frame),
                             bytes(frame[:16]).hex(), reason.replace(" ", "_")[:200])

    def send_pushes(self) -> None:
        """Pub/sub messages and keyspace notifications, one message per router that wants some."""
        encode_push = self.codec.encode_push
        for peer, entries in self.shard.pubsub.take_pushes().items():
            self.socket.send(peer, SNDMORE)
            self.socket.send(encode_push(entries))

    def close(self) -> None:
        """Stop (SIGTERM, SIGINT, the supervisor gone): as Redis on SIGTERM, save ``dump.rdb``
        when save rules are set, unless a SHUTDOWN already prepared this stop and nothing
        changed since; a failed save is logged and the worker stops anyway."""
        shard = self.shard
        snapshots = self.snapshots
        save = (snapshots is not None and bool(snapshots.rules)
                and shard.shutdown_dirty != shard.stats.dirty)  # type: ignore[attr-defined]
        try:
            prepare_shutdown(shard, save=save, force=True)
        except ReplyError:
            pass
        if shard.aof is not None:
            shard.aof.close()
            shard.aof = None
            self.aof = None
        if self.shard.replies_log is not None:
            self.shard.replies_log.close()
        self.socket.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()
        if self.address.startswith("ipc://"):
            try:
                os.unlink(self.address[len("ipc://") :])
            except OSError:
                pass


def run_worker(address: str, index: int = 0, supervised: bool = False,
               curve: WorkerCurve | None = None, data_dir: str = ".",
               appendonly: bool = False, appendfsync: str = "everysec",
               appenddirname: str = "appendonlydir", dbfilename: str = "dump.rdb",
               save: list[tuple[int, int]] | None = None, aof_use_rdb_preamble: bool = True,
               auto_aof_rewrite_percentage: int = 100,
               auto_aof_rewrite_min_size: int = 64 * 1024 * 1024, databases: int = 16,
               maxmemory_policy: str = "noeviction", maxmemory_samples: int = 5,
               maxmemory_eviction_tenacity: int = 10, lfu_log_factor: int = 10,
               lfu_decay_time: int = 1) -> int:
    """Entry point of a worker process; its exit code (1: the AOF or RDB could not be loaded).

    The worker's files live in ``data_dir/worker-<index>/``: the AOF folder ``appenddirname``
    (``appendonly``) and the snapshot ``dbfilename``, loaded at start when the AOF is off.
    """
    if supervised:
        _die_with_parent()
    aof = None
    own_dir = os.path.join(data_dir, f"worker-{index}")
    if appendonly:
        aof = AofLog(own_dir, appenddirname, appendfsync)
    snapshots = Snapshots(own_dir, dbfilename, save)
    rewriter = AofRewriter(own_dir, appenddirname, aof_use_rdb_preamble,
                           auto_aof_rewrite_percentage, auto_aof_rewrite_min_size)
    try:
        server = WorkerServer(address, index, curve, aof, snapshots, rewriter, databases)
        server.shard.set_access_tracking(maxmemory_policy, lfu_log_factor, lfu_decay_time)
        server.shard.evictor.samples = maxmemory_samples
        server.shard.evictor.tenacity = maxmemory_eviction_tenacity
    except RdbError as exc:
        log.critical("worker %d can't load its RDB file %s: %s; exiting", index,
                     snapshots.path, exc)
        return 1
    except AofError as exc:
        log.critical("worker %d can't load its append only file: %s; exiting (fix it with "
                     "redis-check-aof --fix %s)", index, exc, aof.dir.manifest_path if aof else "")
        return 1
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    started = time.monotonic()
    try:
        server.serve_forever()
    finally:
        log.info("worker %d stopped after %.1fs", index, time.monotonic() - started)
    return 0
