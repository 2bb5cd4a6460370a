"""The router's connection to one worker: a ZeroMQ DEALER socket with an outbox and a FIFO.

Commands for the worker collect in the outbox during an event-loop iteration and leave as one
message when the router flushes (once per iteration).  The worker answers batches in order, so
the FIFO of in-flight batches tells which reply belongs to which waiting target.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from shardis import protocol
from shardis.linksec import KeyPair, make_curve_client

if TYPE_CHECKING:
    from shardis.router.core import Router


#: ZeroMQ heartbeats on every link: a ping this often, the link dropped after this long
#: without traffic from the worker.
HEARTBEAT_MS = 250
HEARTBEAT_TIMEOUT_MS = 1000


class WorkerLink:
    """One worker's DEALER socket.  With ``curve`` (the router's keys, the worker's public
    key) the link is encrypted and the worker authenticated; a link is *trusted* with CURVE or
    on ipc://, and then speaks the marshal encoding, else the strict one (``codec``)."""

    __slots__ = ("index", "address", "socket", "fd", "targets", "commands", "inflight", "router",
                 "seq", "monitor", "monitor_fd", "down", "verifying", "refused", "codec",
                 "encode_batch", "resumable", "down_error", "pending", "restart_timer",
                 "held_bytes", "counted", "unsent", "retry", "rtt_ms", "pinging")

    def __init__(self, router: Router, index: int, address: str, context: zmq.Context,
                 curve: tuple[KeyPair, bytes] | None = None,
                 identity: bytes | None = None) -> None:
        self.router = router
        self.index = index
        self.address = address
        self.codec = protocol.codec_for(curve is not None or address.startswith("ipc://"))
        self.encode_batch = self.codec.encode_batch
        sock = context.socket(zmq.DEALER)
        if curve is not None:
            make_curve_client(sock, *curve)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        # Heartbeats find a worker that vanished without closing its connection (a dead host,
        # a cut link) within about a second: the disconnect then fails (or holds) the
        # commands in flight instead of hanging.  ZeroMQ's I/O thread answers them, so a
        # worker busy with a long command (a script, DEBUG SLEEP) is not taken for gone.
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
        # Batches go to a live connection or nowhere: ZeroMQ must not keep what was sent to a
        # worker that died and hand it to the restarted one, ahead of (or without) the
        # batches lost with the connection — the router resends those itself, in order.
        sock.setsockopt(zmq.IMMEDIATE, 1)
        if identity is not None:
            # One id per router process, kept across reconnects: a worker's AOF remembers
            # the last batch of each router by it.
            sock.setsockopt(zmq.ROUTING_ID, identity)
        # Disconnect events tell us when a worker went away with batches in flight, handshakes
        # when it is (back) there.  The monitor comes before the connect: a worker already
        # listening completes the handshake in ZeroMQ's I/O thread at once, and an event from
        # before the monitor existed would be lost (the link would wait for it forever).
        self.monitor = sock.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
        )
        sock.connect(address)
        self.socket = sock
        self.fd = sock.getsockopt(zmq.FD)
        #: the worker dropped (or has not connected yet) and has not reconnected: its next
        #: handshake is checked (which shard is it?) before anything queued reaches it.
        self.down = True
        #: not (or not yet again) known to be the right shard: commands wait queued.
        self.verifying = True
        #: the error for every command to this link: the worker that answered here is another
        #: shard (a mis-ordered restart); cleared when a reconnect brings the right one.
        self.refused: str | None = None
        self.monitor_fd = self.monitor.getsockopt(zmq.FD)
        # A ZeroMQ FD only starts signalling once the socket's events have been read.
        sock.getsockopt(zmq.EVENTS)
        self.monitor.getsockopt(zmq.EVENTS)
        #: what waits for each queued command's reply: a client's Reply or a part target.
        self.targets: list[Any] = []
        self.commands: list[tuple[int, list[bytes]]] = []
        #: (sequence number, targets, commands) per batch sent and not yet answered.
        self.inflight: deque[tuple[int, list[Any], list[tuple[int, list[bytes]]]]] = deque()
        self.seq = 0
        #: the worker keeps an AOF: batches lost with its connection are held and resent
        #: when it is back (``Router.resume``), instead of failing.
        self.resumable = False
        #: while set, every command for this worker fails at once with this error: down
        #: without an AOF, past worker-restart-timeout, or still loading at start.
        self.down_error: str | None = None
        #: batches in flight when the connection dropped, waiting for the worker's return.
        self.pending: list[tuple[int, list[Any], list[tuple[int, list[bytes]]]]] = []
        self.restart_timer: Any = None
        #: bytes of commands held while down (worker-restart-buffer), counted up to
        #: ``counted`` commands of the queue.
        self.held_bytes = 0
        self.counted = 0
        #: frames ZeroMQ would not take yet (the connection's pipe is attached a moment after
        #: its handshake event), sent in order before anything newer; and their retry timer.
        self.unsent: deque[bytes] = deque()
        self.retry: Any = None
        #: round-trip time of the last PING the router sent (ms; None: none answered yet),
        #: and whether one is out (``Router.ping_links``).
        self.rtt_ms: float | None = None
        self.pinging = False

    def send(self, target: Any, proto: int, args: list[bytes]) -> None:
        """Queue a command; it leaves with the next flush."""
        self.targets.append(target)
        self.commands.append((proto, args))

    def flush(self) -> None:
        """Send everything queued as one message."""
        if self.commands:
            self._send_batch(*self.take_queued())

    def send_alone(self, target: Any, proto: int, args: list[bytes]) -> None:
        """Send one command now, as a batch of its own, ahead of whatever is queued."""
        self._send_batch([target], [(proto, args)])

    def take_queued(self) -> tuple[list[Any], list[tuple[int, list[bytes]]]]:
        """(targets, commands) queued and not sent yet; the queue is left empty."""
        queued = self.targets, self.commands
        self.targets, self.commands = [], []
        return queued

    def _send_batch(self, targets: list[Any], commands: list[tuple[int, list[bytes]]]) -> None:
        """A batch that cannot leave (no live connection) stays in flight: the drop that
        follows holds or fails it with the rest."""
        self.seq += 1
        self.inflight.append((self.seq, targets, commands))
        self.send_frame(self.encode_batch(self.seq, commands))

    def send_frame(self, frame: bytes) -> None:
        """Send now, or after the frames ZeroMQ has not taken yet (retried shortly)."""
        if self.unsent or not self._try_send(frame):
            self.unsent.append(frame)
            if self.retry is None:
                self.retry = self.router.loop.call_later(0.001, self.send_unsent)

    def _try_send(self, frame: bytes) -> bool:
        try:
            self.socket.send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def send_unsent(self) -> None:
        """Retry the frames ZeroMQ did not take; again later while it still does not (a
        connection that dropped instead clears them: ``drop_unsent``)."""
        self.retry = None
        unsent = self.unsent
        while unsent and self._try_send(unsent[0]):
            unsent.popleft()
        if unsent:
            self.retry = self.router.loop.call_later(0.005, self.send_unsent)
        self.router.on_link_readable(self)  # the sends may have consumed ZeroMQ's edge

    def drop_unsent(self) -> None:
        """The connection dropped: its unsent frames are batches in flight, held or failed
        with the rest; none may reach the next connection."""
        self.unsent.clear()
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None

    def resend(self, targets: list[Any], commands: list[tuple[int, list[bytes]]]) -> None:
        """Send a batch lost with a worker's last connection again (under a new number)."""
        self._send_batch(targets, commands)

    def requeue(self, queued: tuple[list[Any], list[tuple[int, list[bytes]]]]) -> None:
        """Put commands taken with :meth:`take_queued` back, after whatever was queued since."""
        self.targets += queued[0]
        self.commands += queued[1]

    def take_pending(self) -> list[tuple[int, list[Any], list[tuple[int, list[bytes]]]]]:
        """The batches in flight (moved aside until the worker says which it holds)."""
        self.pending.extend(self.inflight)
        self.inflight.clear()
        pending, self.pending = self.pending, []
        return pending

    def count_held(self) -> int:
        """Bytes of commands held for this worker while it is down (pending and queued)."""
        if not self.held_bytes:
            self.held_bytes = sum(_size(commands) for _, _, commands in self.inflight)
        self.held_bytes += _size(self.commands[self.counted:])
        self.counted = len(self.commands)
        return self.held_bytes

    def reset_held(self) -> None:
        self.held_bytes = self.counted = 0

    def targets_for(self, seq: int) -> tuple[list[Any], list[Any]]:
        """The targets of batch ``seq``, and those of earlier batches that were lost."""
        lost: list[Any] = []
        inflight = self.inflight
        while inflight and inflight[0][0] < seq:
            lost.extend(inflight.popleft()[1])
        if inflight and inflight[0][0] == seq:
            return inflight.popleft()[1], lost
        return [], lost

    def take_early(self, seq: int) -> list[Any]:
        """The targets of batch ``seq``, answered early (a busy worker): taken out of the FIFO
        wherever it stands; the batches ahead of it are still running, not lost."""
        for position, (number, targets, _) in enumerate(self.inflight):
            if number == seq:
                del self.inflight[position]
                return targets
        return []

    def receive_all(self) -> list[bytes]:
        """Every reply message waiting on the socket (ZeroMQ's FD is edge-triggered: drain it).

        Messages are one frame (``shardis.protocol``): plain ``recv``, no RCVMORE checks (a
        peer of another version sending several frames gets each refused by its header).
        """
        messages = []
        recv = self.socket.recv
        while True:
            try:
                messages.append(recv(zmq.NOBLOCK))
            except zmq.Again:
                return messages

    def connection_events(self) -> tuple[bool, bool]:
        """Drain the monitor: (the connection dropped, a dropped connection came back)."""
        dropped = back = False
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return dropped, back
            if event == zmq.EVENT_DISCONNECTED:
                dropped, self.down = True, True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED and self.down:
                back, self.down = True, False

    def take_inflight(self) -> list[Any]:
        """Every target still waiting on this worker (its connection dropped: they are lost)."""
        lost = [target for _, targets, _ in self.inflight for target in targets]
        self.inflight.clear()
        return lost

    def close(self) -> None:
        self.drop_unsent()
        if self.restart_timer is not None:
            self.restart_timer.cancel()
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)


def _size(commands: list[tuple[int, list[bytes]]]) -> int:
    return sum(len(arg) + 16 for _, args in commands for arg in args)
