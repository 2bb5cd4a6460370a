"""The router <-> worker message format (one module, versioned).

Transport: ZeroMQ.  Each worker binds a ROUTER socket; each router connects one DEALER socket
per worker.  A message is two frames::

    [header, payload]      header = b"SHD" + version byte + kind byte + sequence (8 bytes)

``BATCH`` (router -> worker): payload is ``marshal`` of a list of commands, each a tuple
``(proto, args)`` where ``proto`` is the RESP version the reply must be encoded in (2 or 3) and
``args`` the command as a list of bytes.  A batch holds every command the router parsed for that
worker in one event-loop iteration, from all clients, in arrival order.

``REPLIES`` (worker -> router): payload is ``marshal`` of a list with one encoded RESP reply
(bytes) per command of the batch, in order, under the batch's sequence number.  An optional
third frame carries blocking events, ``marshal`` of ``[(ticket, reply or None), ...]``: a
blocked command the worker served while running this batch (its encoded reply), or a key a
notify-only waiter was waiting for that received data (None); see ``shardis.worker.blocking``.

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

VERSION = 1
MAGIC = b"SHD"

BATCH = 1
REPLIES = 2
PUSH = 3

BATCH_PREFIX = MAGIC + bytes([VERSION, BATCH])
REPLIES_PREFIX = MAGIC + bytes([VERSION, REPLIES])
PUSH_PREFIX = MAGIC + bytes([VERSION, PUSH])
_PREFIX_LEN = len(BATCH_PREFIX)

# marshal format 4 is stable across CPython 3.4+.
_MARSHAL_VERSION = 4


class ProtocolMismatch(Exception):
    """A peer speaks another version of this format."""


def encode_batch(seq: int, commands: list[tuple[int, list[bytes]]]) -> list[bytes]:
    return [BATCH_PREFIX + seq.to_bytes(8, "big"), marshal.dumps(commands, _MARSHAL_VERSION)]


def decode_batch(frames: list[bytes]) -> tuple[bytes, list[tuple[int, list[bytes]]]]:
    """(sequence bytes, commands); the sequence goes back unchanged with the replies."""
    header = frames[0]
    _check(header, BATCH_PREFIX)
    return header[_PREFIX_LEN:], marshal.loads(frames[1])


def encode_replies(
    seq: bytes, replies: list[bytes], events: list[tuple[int, bytes | None]] | None = None
) -> list[bytes]:
    """The replies of a batch, plus blocking events when there are any (a third frame)."""
    frames = [REPLIES_PREFIX + seq, marshal.dumps(replies, _MARSHAL_VERSION)]
    if events:
        frames.append(marshal.dumps(events, _MARSHAL_VERSION))
    return frames


def decode_replies(frames: list[bytes]) -> tuple[int, list[bytes], list[tuple[int, bytes | None]]]:
    header = frames[0]
    _check(header, REPLIES_PREFIX)
    events = marshal.loads(frames[2]) if len(frames) > 2 else []
    return int.from_bytes(header[_PREFIX_LEN:], "big"), marshal.loads(frames[1]), events


def encode_push(entries: list[tuple]) -> list[bytes]:
    """Pub/sub messages for one router: ``[(kind, channel, pattern or None, message), ...]``."""
    return [PUSH_PREFIX + bytes(8), marshal.dumps(entries, _MARSHAL_VERSION)]


def is_push(frames: list[bytes]) -> bool:
    return frames[0][:_PREFIX_LEN] == PUSH_PREFIX


def decode_push(frames: list[bytes]) -> list[tuple]:
    return marshal.loads(frames[1])


def _check(header: bytes, prefix: bytes) -> None:
    if header[:_PREFIX_LEN] != prefix or len(header) != _PREFIX_LEN + 8:
        raise ProtocolMismatch(f"unexpected message header {header!r}, expected {prefix!r}+seq")
