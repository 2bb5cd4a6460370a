"""MONITOR: every command the router runs, from every client, as Redis 7.0 shows it.

A line per command, sent as a status reply to each monitoring client when the command's
reply leaves (``Observer.replied``): ``+1339518083.107412 [0 127.0.0.1:60866] "set" "k" "v"``.
Redis's rules: a command refused before it ran (unknown, wrong arity, no permission) is not
shown, neither are administrative commands (CONFIG, SLOWLOG, MONITOR...); AUTH's and HELLO
AUTH's credentials are shown as ``(redacted)``; a transaction shows MULTI when it runs, then
at EXEC its commands, then EXEC (a transaction EXEC aborts shows MULTI and EXEC only).

The commands scripts call (Redis's ``[0 lua]`` lines) run inside a worker: while this
router has monitors, the workers report them (``__monitor_scripts``) in a push after the
script's reply, and they are shown after the script's own line, as Redis shows them.  Not
shown: a script's calls to another worker's keys (a script in global mode), its SELECTs and
the calls the router answers (``shardis.commands.scripting`` runs those itself).
"""

from __future__ import annotations

import time
from typing import Any

import hiredis

from shardis.commands import Command, lookup
from shardis.errors import ReplyError
from shardis.resp import OK
from shardis.router.registry import DEFERRED, router_command
from shardis.router.stats import lookup_spec, observer_of, redacted_args

_ESCAPES = {0x5C: b"\\\\", 0x22: b'\\"', 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t",
            0x07: b"\\a", 0x08: b"\\b"}
#: byte -> how sdscatrepr writes it.
_REPR = [_ESCAPES.get(byte, bytes([byte]) if 0x20 <= byte < 0x7F else b"\\x%02x" % byte)
         for byte in range(256)]


def quoted(arg: bytes) -> bytes:
    """sdscatrepr: the argument in double quotes, escaped as C does."""
    return b'"' + b"".join([_REPR[byte] for byte in arg]) + b'"'


def monitor_line(now: float, db: int, origin: str, args: list[bytes]) -> bytes:
    """One MONITOR line: ``+<sec>.<usec> [<db> <origin>] "arg" ...\\r\\n``."""
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    head = b"+%d.%06d [%d %s] " % (seconds, micros, db, origin.encode())
    return head + b" ".join(quoted(arg) for arg in args) + b"\r\n"


#: Redis 7.0's commands flagged may_replicate (refused to a MONITOR client with the writes
#: and reads); the table does not carry that flag for all of them.
MAY_REPLICATE = frozenset(("pfcount", "publish", "spublish", "eval", "evalsha", "fcall"))


def _elements(data: bytes) -> list:
    """An encoded array reply (EXEC's results, a script call's command), decoded (errors as
    ``hiredis.ReplyError``); [] if it is not one."""
    reader = hiredis.Reader()
    try:
        reader.feed(data)
        value = reader.gets()
    except hiredis.ProtocolError:
        return []
    return value if isinstance(value, list) else []


def shown(spec: Command) -> bool:
    """Whether Redis feeds the command to monitors: administrative ones are not shown."""
    return "admin" not in spec.flags


class Monitor:
    """Feeds the monitoring clients (``Observer.monitors``)."""

    def __init__(self, router: Any) -> None:
        self.router = router
        #: client -> the commands of the EXEC it started (shown when EXEC's reply leaves).
        self.transactions: dict[Any, list[list[bytes]]] = {}

    def exec_started(self, client: Any) -> None:
        """EXEC is about to run ``client``'s queue: keep it for the lines and the stats."""
        queued = client.multi
        self.transactions[client] = [] if queued is None or client.multi_dirty \
            else list(queued)

    def exec_replied(self, reply: Any, now: float) -> None:
        """EXEC's reply left: its commands count as calls (failed ones, and their errors, as
        Redis counts them; each is given an equal share of the transaction's time), and show
        before EXEC."""
        queued = self.transactions.pop(reply.client, [])
        if not queued or reply.data in (b"*-1\r\n", b"_\r\n"):
            return  # aborted, or a WATCHed key changed: none of them ran
        observer = observer_of(self.router)
        results = _elements(reply.data) if reply.data[:1] in (b"*", b">") else []
        share = None if reply.started is None else (now - reply.started) / len(queued)
        for index, args in enumerate(queued):
            spec = lookup_spec(args)
            if spec is None:
                continue
            stat = observer.stat(spec)
            stat.calls += 1
            if share is not None:
                usec = observer.time(stat, share, 1)
                if 0 <= observer.slower_than <= usec:  # EXEC is not logged, its commands are
                    observer.log_entry(reply.client, args, usec)
            if index < len(results) and isinstance(results[index], hiredis.ReplyError):
                stat.failed += 1
                observer.count_error(b"-" + str(results[index]).encode() + b"\r\n")
            if observer.monitors and shown(spec):
                self.send(reply.client, args)

    def feed(self, reply: Any) -> None:
        """The command of ``reply`` ran: show it to every monitor."""
        if shown(reply.cmd) and reply.argv is not None:
            self.send(reply.client, reply.argv)

    def send(self, client: Any, args: list[bytes]) -> None:
        self.broadcast(monitor_line(time.time(), getattr(client, "db", 0), client.addr,
                                    redacted_args(args)))

    def broadcast(self, line: bytes) -> None:
        from shardis.router.client import PushReply

        router = self.router
        for monitor in list(observer_of(router).monitors):
            if monitor.closed:
                self.stop(monitor)
                continue
            monitor.replies.append(PushReply(monitor, line))
            router.touched.add(monitor)
        router.schedule_client_flush()

    def refuse(self, client: Any, args: list[bytes]) -> bool:
        """A monitoring client may not touch the keyspace (Redis flags it as a replica):
        True when ``args`` is refused with Redis's error."""
        try:
            spec = lookup(args)
        except ReplyError:
            return False  # unknown, wrong arity: the normal path answers first, as Redis
        if spec.name == "reset":  # RESET ends MONITOR (before it runs: no line for itself)
            self.stop(client)
            return False
        if spec.name not in MAY_REPLICATE and not {"write", "readonly"} & set(spec.flags):
            return False
        observer_of(self.router).rejected(spec)
        self.router.reply_error(client, "ERR Replica can't interact with the keyspace")
        return True

    def client_gone(self, client: Any) -> None:
        self.stop(client)
        self.transactions.pop(client, None)

    def start(self, client: Any) -> None:
        """``client`` monitors; the first monitor makes the workers report script calls."""
        monitors = observer_of(self.router).monitors
        if not monitors:
            self.tell_workers(True)
        monitors.add(client)

    def stop(self, client: Any) -> None:
        monitors = observer_of(self.router).monitors
        if client in monitors:
            monitors.discard(client)
            if not monitors:
                self.tell_workers(False)

    def tell_workers(self, on: bool, workers: Any = None) -> None:
        """``__monitor_scripts`` to the workers (their replies are not waited for)."""
        router = self.router
        for worker in range(len(router.links)) if workers is None else workers:
            router.call(worker, [b"__monitor_scripts", b"1" if on else b"0"])

    def worker_connected(self, worker: int) -> None:
        """A worker (re)started knows nothing of the monitors: tell it again."""
        if observer_of(self.router).monitors:
            self.tell_workers(True, [worker])

    def script_lines(self, entries: list[tuple]) -> None:
        """A worker's ``[db lua]`` lines: the commands a script called.  The replies already
        in (the script's own among them) are written first, so that its line comes before
        the lines of what it called, as in Redis."""
        router = self.router
        router.flush_clients()
        now = time.time()
        for _, db, _, encoded in entries:
            args = _elements(encoded)
            if args and all(type(arg) is bytes for arg in args):
                self.broadcast(monitor_line(now, int(db), "lua", args))


@router_command("monitor")
def monitor(router: Any, client: Any, args: list[bytes]) -> object:
    """The client becomes a monitor: OK, then a line for every command run from now on.
    RESET ends it (:meth:`Monitor.refuse`); meanwhile the client may not touch keys."""
    if client in router.monitor.transactions:  # run by EXEC
        raise ReplyError("ERR MONITOR isn't allowed for DENY BLOCKING client")
    if client in observer_of(router).monitors:
        return DEFERRED  # already monitoring: Redis ignores it, without a reply
    router.monitor.start(client)
    client.unrestricted = False  # its commands go through dispatch_guarded: refuse() above
    return OK
