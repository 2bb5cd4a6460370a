"""The router <-> worker message format (one module, versioned).

Transport: ZeroMQ.  Each worker binds a ROUTER socket; each router connects one DEALER socket
per worker.  A message is one frame (ZeroMQ's ROUTER adds and strips the peer's identity)::

    header + payload       header = b"SHD" + version byte + kind byte + sequence (8 bytes)

One frame, not a header frame and a payload frame: every frame costs pyzmq a ``recv``/``send``
call and a RCVMORE check, a few microseconds each, per message, at both ends.

``BATCH`` (router -> worker): payload is ``marshal`` of a list of commands, each a tuple
``(proto, args)`` where ``proto`` is the RESP version the reply must be encoded in (2 or 3) and
``args`` the command as a list of bytes.  A batch holds every command the router parsed for that
worker in one event-loop iteration, from all clients, in arrival order.

``REPLIES`` (worker -> router): payload is ``marshal`` of ``(replies, events)``: one encoded
RESP reply (bytes) per command of the batch, in order, under the batch's sequence number, and
the blocking events (``[(ticket, reply or None), ...]``, usually empty): a blocked command the
worker served while running this batch (its encoded reply), or a key a notify-only waiter was
waiting for that received data (None); see ``shardis.worker.blocking``.

``EARLY`` (worker -> router): like ``REPLIES``, but for a batch that arrived while the worker
was busy running a script past ``busy-reply-threshold``: the worker answers it at once (BUSY
errors, SCRIPT KILL's outcome) from inside the script, ahead of the batch that runs the script.
The router takes that batch out of its FIFO wherever it stands; the batches before it are not
lost, only still running.

``PUSH`` (worker -> router, unsolicited): pub/sub messages for that router's subscribers,
``marshal`` of ``[(kind, channel, pattern or None, message), ...]``; see
``shardis.worker.pubsub``.  Batches are
answered in the order they arrive, so the router matches replies to batches with a FIFO; the
sequence number tells it when a batch was lost (a worker died with it) so that those commands
get an error instead of someone else's replies.

The router asks for RESP3 when it must merge parts itself (MGET across workers, INFO...) and
decodes them with hiredis.  ``marshal`` (C speed) is safe here because both ends are shardis
processes of the same version: the header's version byte is checked on every message.
"""

from __future__ import annotations

import marshal

VERSION = 2
MAGIC = b"SHD"

BATCH = 1
REPLIES = 2
PUSH = 3
EARLY = 4

BATCH_PREFIX = MAGIC + bytes([VERSION, BATCH])
REPLIES_PREFIX = MAGIC + bytes([VERSION, REPLIES])
PUSH_PREFIX = MAGIC + bytes([VERSION, PUSH])
EARLY_PREFIX = MAGIC + bytes([VERSION, EARLY])
_PREFIX_LEN = len(BATCH_PREFIX)

# marshal format 4 is stable across CPython 3.4+.
_MARSHAL_VERSION = 4


class ProtocolMismatch(Exception):
    """A peer speaks another version of this format."""


_HEADER_LEN = _PREFIX_LEN + 8


def encode_batch(seq: int, commands: list[tuple[int, list[bytes]]]) -> bytes:
    return BATCH_PREFIX + seq.to_bytes(8, "big") + marshal.dumps(commands, _MARSHAL_VERSION)


def decode_batch(frame: bytes) -> tuple[bytes, list[tuple[int, list[bytes]]]]:
    """(sequence bytes, commands); the sequence goes back unchanged with the replies."""
    _check(frame, BATCH_PREFIX)
    return frame[_PREFIX_LEN:_HEADER_LEN], marshal.loads(memoryview(frame)[_HEADER_LEN:])


def encode_replies(
    seq: bytes, replies: list[bytes], events: list[tuple[int, bytes | None]] | None = None
) -> bytes:
    """The replies of a batch, and the blocking events it caused (if any)."""
    return REPLIES_PREFIX + seq + marshal.dumps((replies, events or ()), _MARSHAL_VERSION)


def encode_early_replies(seq: bytes, replies: list[bytes]) -> bytes:
    """The replies of a batch answered while an earlier batch still runs (a busy script)."""
    return EARLY_PREFIX + seq + marshal.dumps((replies, ()), _MARSHAL_VERSION)


def is_early(frame: bytes) -> bool:
    return frame[:_PREFIX_LEN] == EARLY_PREFIX


def decode_replies(frame: bytes) -> tuple[int, list[bytes], tuple[tuple[int, bytes | None], ...]]:
    """A ``REPLIES`` or ``EARLY`` message: (sequence, replies, blocking events)."""
    _check(frame, EARLY_PREFIX if is_early(frame) else REPLIES_PREFIX)
    replies, events = marshal.loads(memoryview(frame)[_HEADER_LEN:])
    return int.from_bytes(frame[_PREFIX_LEN:_HEADER_LEN], "big"), replies, events


def encode_push(entries: list[tuple]) -> bytes:
    """Pub/sub messages for one router: ``[(kind, channel, pattern or None, message), ...]``."""
    return PUSH_PREFIX + bytes(8) + marshal.dumps(entries, _MARSHAL_VERSION)


def is_push(frame: bytes) -> bool:
    return frame[:_PREFIX_LEN] == PUSH_PREFIX


def decode_push(frame: bytes) -> list[tuple]:
    return marshal.loads(memoryview(frame)[_HEADER_LEN:])


def _check(frame: bytes, prefix: bytes) -> None:
    if frame[:_PREFIX_LEN] != prefix or len(frame) < _HEADER_LEN:
        raise ProtocolMismatch(
            f"unexpected message header {bytes(frame[:_HEADER_LEN])!r}, expected {prefix!r}+seq"
        )
