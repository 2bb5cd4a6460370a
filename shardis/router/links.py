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


class WorkerLink:
    """One worker's DEALER socket.  With ``curve`` (the router's keys, the worker's public
    key) the link is encrypted and the worker authenticated; a link is *trusted* with CURVE or
    on ipc://, and then speaks the marshal encoding, else the strict one (``codec``)."""

    __slots__ = ("index", "address", "socket", "fd", "targets", "commands", "inflight", "router",
                 "seq", "monitor", "monitor_fd", "down", "verifying", "refused", "codec",
                 "encode_batch")

    def __init__(self, router: Router, index: int, address: str, context: zmq.Context,
                 curve: tuple[KeyPair, bytes] | None = None) -> None:
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
        # a cut link): the disconnect then fails the commands in flight instead of hanging.
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
        sock.connect(address)
        self.socket = sock
        self.fd = sock.getsockopt(zmq.FD)
        # Disconnect events tell us when a worker went away with batches in flight.
        self.monitor = sock.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
        )
        #: the worker dropped (or has not connected yet) and has not reconnected: its next
        #: handshake is checked (which shard is it?) before anything queued reaches it.
        self.down = True
        #: a worker reconnected and has not said yet which shard it is: commands wait queued.
        self.verifying = False
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
        #: (sequence number, targets) per batch sent and not yet answered.
        self.inflight: deque[tuple[int, list[Any]]] = deque()
        self.seq = 0

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
        self.seq += 1
        self.inflight.append((self.seq, targets))
        self.socket.send(self.encode_batch(self.seq, commands))

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
        for position, (number, targets) in enumerate(self.inflight):
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
        lost = [target for _, targets in self.inflight for target in targets]
        self.inflight.clear()
        return lost

    def close(self) -> None:
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)
