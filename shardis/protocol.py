"""The router <-> worker message format (one module, versioned).

Transport: ZeroMQ.  Each worker binds a ROUTER socket; each router connects one DEALER socket
per worker.  A message is one frame (ZeroMQ's ROUTER adds and strips the peer's identity)::

    header + payload       header = b"SHD" + version byte + kind byte + sequence (8 bytes)

One frame, not a header frame and a payload frame: every frame costs pyzmq a ``recv``/``send``
call and a RCVMORE check, a few microseconds each, per message, at both ends.

``BATCH`` (router -> worker): a list of commands, each ``(code, args)`` where ``code`` is
``proto | db << 2``: the RESP version the reply must be encoded in (2 or 3) and the database the
command runs in (SELECT; 0 for most clients, so a code is usually just 2 or 3), and ``args`` the
command, a non-empty list of bytes (see :func:`command_code`).  A *step* of an operation the
router coordinates (``Router.call``: SMOVE's SREM then SADD on two workers) has bit 1 clear
(its low bits 0 or 1 for RESP2 or 3): the router decided for the whole command, so the worker
does not refuse the step under maxmemory (a refused SADD after its SREM would lose the member).
Every u16 is a valid code: a database out of range is that command's error, not the batch's.
A batch holds every command the router parsed for that worker in one event-loop iteration,
from all clients, in arrival order.

``REPLIES`` (worker -> router): one encoded RESP reply (bytes) per command of the batch, in
order, under the batch's sequence number, and the blocking events (``[(ticket, reply or None),
...]``, usually empty): a blocked command the worker served while running this batch (its
encoded reply), or a key a notify-only waiter was waiting for that received data (None); see
``shardis.worker.blocking``.

*Early* replies (worker -> router): a ``REPLIES`` message whose sequence number has its top bit
set (:data:`EARLY_BIT`) answers a batch that arrived while the worker was busy running a script
past ``busy-reply-threshold``: the worker answers it at once (BUSY errors, SCRIPT KILL's
outcome) from inside the script, ahead of the batch that runs the script.  The router takes
that batch out of its FIFO wherever it stands; the batches before it are not lost, only still
running.

``PUSH`` (worker -> router, unsolicited): pub/sub messages for that router's subscribers,
``[(kind, channel, pattern or None, message), ...]``; see ``shardis.worker.pubsub``.  Batches
are answered in the order they arrive, so the router matches replies to batches with a FIFO;
the sequence number tells it when a batch was lost (a worker died with it) so that those
commands get an error instead of someone else's replies.

*Script calls* (global scripts, ``shardis.router.scripting``): a worker running a script in
global mode sends a ``PUSH`` with one entry ``(SCRIPT_CALL, proto, None, command as a RESP
array)``: a ``redis.call`` on a key of another worker.  The router runs it there and answers
with a ``BATCH`` of sequence number 0 (:data:`CALL_REPLY_SEQ`; router batches start at 1)
holding one "command" whose only argument is the reply, encoded in ``proto``.  Nothing answers
that batch; a worker that gets one while no script waits drops it.

Payload layout (counts and lengths are little-endian u32; a *layout* is ASCII text)::

    BATCH    ncommands layoutlen | code per command (u16) | argc per command | layout | args
    REPLIES  layoutlen nfields | layout | len per field | replies | fields
    PUSH     0 nfields | len per field | fields

A *layout* gives the lengths of a run of byte strings as a ``struct`` format, ``3s10s5s``: one
``Struct.unpack_from`` then cuts them all out of the frame in C.  A *field* may be None (length
``0xFFFFFFFF``): REPLIES' fields are its blocking events, two per event (the ticket in decimal,
the reply or None); PUSH's are four per message.

Two encodings share this layout and differ in the kind byte:

- the *strict* one above (kinds 1-3), for links to peers nobody authenticated (tcp:// without
  CURVE).  Every count and length is checked against the frame's size before anything is
  allocated, and a decoded message can only hold the shapes above: a malformed message raises
  :class:`ProtocolError` and nothing else.
- ``marshal`` (kinds 17-19: the same structures, marshalled), for trusted links only: ipc://
  (the socket file's permissions decide who connects) and tcp:// with CURVE, where the worker
  admits only listed router keys and the router checks the worker's key.  ``marshal.loads``
  trusts its input (five hostile bytes declaring a 2**31-element tuple cost 16 GB and 40 s
  before failing; it builds code objects), so it never sees an unauthenticated peer's bytes;
  but it is faster, on the path every command takes: the strict codec costs 1.5-6x marshal's
  time to decode and 4-6x to encode (``python -m bench.protocol_codec``; ~0.2 us more per
  argument on each side on a 2-core VM, where a worker spends ~0.9 us per command).

Each end picks one encoding per link from its configuration (:func:`codec_for`), and refuses
messages of the other as :class:`ProtocolError`.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from itertools import accumulate, chain, islice
from operator import itemgetter
from struct import Struct, pack, unpack_from
from struct import error as StructError
from typing import Any, NamedTuple

VERSION = 5
#: A PUSH entry kind: a script's call for another worker (see the module docstring).
SCRIPT_CALL = b"scall"
#: The sequence bytes of a batch that carries a script call's reply.
CALL_REPLY_SEQ = bytes(8)
MAGIC = b"SHD"

BATCH = 1
REPLIES = 2
PUSH = 3

BATCH_PREFIX = MAGIC + bytes([VERSION, BATCH])
REPLIES_PREFIX = MAGIC + bytes([VERSION, REPLIES])
PUSH_PREFIX = MAGIC + bytes([VERSION, PUSH])
#: added to a kind for its marshal encoding.
MARSHALLED = 16
#: set in a REPLIES message's sequence number: an early reply (see the module docstring).
EARLY_BIT = 1 << 63
_PREFIX_LEN = len(BATCH_PREFIX)
_HEADER_LEN = _PREFIX_LEN + 8

_COUNTS = Struct("<II")
_BODY = _HEADER_LEN + _COUNTS.size
#: the length of a None field.
_NONE = 0xFFFFFFFF
_NO_EVENTS = ()
#: The databases a code can name: ``databases`` may not exceed this (``shardis.config``).
MAX_DATABASES = 1 << 14
_LAYOUT_CHARS = b"0123456789s"
#: the layout text of each short length, looked up instead of formatted (per argument).
_LENGTH_TEXT = [b"%ds" % length for length in range(4096)]

_first = itemgetter(0)
_second = itemgetter(1)


class ProtocolError(ValueError):
    """A message that is not this format: another version, or malformed (a foreign peer)."""


#: The former name: a peer speaking another version is one kind of protocol error.
ProtocolMismatch = ProtocolError


# Encoding ------------------------------------------------------------------------------------
def command_code(proto: int, db: int, step: bool = False) -> int:
    """A command's code in a batch: the reply's RESP version, the database it runs in, and
    whether it is a step of a coordinated operation (see the module doc)."""
    return (proto & ~2 if step else proto) | db << 2


def decode_code(code: int) -> tuple[int, int, bool]:
    """(RESP version, database, step) of a command code."""
    return (code & 1) | 2, code >> 2, not code & 2


def encode_batch(seq: int, commands: list[tuple[int, list[bytes]]]) -> bytes:
    arglists = list(map(_second, commands))
    flat = list(chain.from_iterable(arglists))
    count = len(commands)
    layout = _layout(flat)
    return b"".join(chain(
        (BATCH_PREFIX, seq.to_bytes(8, "big"), _COUNTS.pack(count, len(layout)),
         pack(f"<{count}H", *map(_first, commands)), pack(f"<{count}I", *map(len, arglists)),
         layout),
        flat))


def encode_replies(
    seq: bytes, replies: list[bytes], events: list[tuple[int, bytes | None]] | None = None
) -> bytes:
    """The replies of a batch, and the blocking events it caused (if any)."""
    layout = _layout(replies)
    if not events:
        return b"".join(chain(
            (REPLIES_PREFIX, seq, _COUNTS.pack(len(layout), 0), layout), replies))
    fields: list[bytes | None] = []
    for ticket, data in events:
        fields += (b"%d" % ticket, data)
    return b"".join(chain(
        (REPLIES_PREFIX, seq, _COUNTS.pack(len(layout), len(fields)), layout,
         _field_lengths(fields)),
        replies, filter(None, fields)))


def encode_push(entries: list[tuple]) -> bytes:
    """Pub/sub messages for one router: ``[(kind, channel, pattern or None, message), ...]``."""
    fields = list(chain.from_iterable(entries))
    return b"".join(chain(
        (PUSH_PREFIX, bytes(8), _COUNTS.pack(0, len(fields)), _field_lengths(fields)),
        filter(None, fields)))


def _layout(items: list[bytes]) -> bytes:
    """The layout text of ``items`` (``3s10s``), by table lookups while they are short."""
    try:
        return b"".join(map(_LENGTH_TEXT.__getitem__, map(len, items)))
    except IndexError:
        return b"".join([b"%ds" % len(item) for item in items])


def _field_lengths(fields: list[bytes | None]) -> bytes:
    return pack(f"<{len(fields)}I", *[_NONE if f is None else len(f) for f in fields])


def early_seq(seq: bytes) -> bytes:
    """The sequence bytes of a batch answered early (a busy worker)."""
    return bytes([seq[0] | 0x80]) + seq[1:]


# Decoding ------------------------------------------------------------------------------------
def decode_batch(frame: bytes) -> tuple[bytes, list[tuple[int, list[bytes]]]]:
    """(sequence bytes, commands); the sequence goes back unchanged with the replies.

    Raises :class:`ProtocolError` for anything that is not a well-formed batch.
    """
    count, layout_len = _counts(frame, BATCH_PREFIX)
    start = _BODY + count * 6 + layout_len
    if start > len(frame):
        raise ProtocolError(f"batch of {count} commands: longer than its frame")
    protos = unpack_from(f"<{count}H", frame, _BODY)
    argcs = unpack_from(f"<{count}I", frame, _BODY + count * 2)
    flat = _split(frame, frame[start - layout_len : start], start, len(frame))
    if count and min(argcs) == 0 or sum(argcs) != len(flat):
        raise ProtocolError("batch: argument counts do not add up")
    bounds = list(accumulate(argcs, initial=0))
    arglists = map(flat.__getitem__, map(slice, bounds, islice(bounds, 1, None)))
    return frame[_PREFIX_LEN:_HEADER_LEN], list(zip(protos, arglists))


def decode_replies(
    frame: bytes,
) -> tuple[int, list[bytes], tuple[tuple[int, bytes | None], ...]]:
    """(sequence number, replies, blocking events); :class:`ProtocolError` if malformed."""
    layout_len, nfields = _counts(frame, REPLIES_PREFIX)
    start = _BODY + layout_len + nfields * 4
    if start > len(frame):
        raise ProtocolError(f"replies with {nfields} event fields: longer than its frame")
    seq = int.from_bytes(frame[_PREFIX_LEN:_HEADER_LEN], "big")
    layout = frame[_BODY : _BODY + layout_len]
    if not nfields:
        return seq, _split(frame, layout, start, len(frame)), _NO_EVENTS
    if nfields % 2:
        raise ProtocolError("replies: an event without its reply")
    replies = _split(frame, layout, start, None)
    lengths = unpack_from(f"<{nfields}I", frame, _BODY + layout_len)
    fields = _fields(frame, lengths, start + sum(map(len, replies)))
    events = []
    for ticket, data in zip(fields[::2], fields[1::2]):
        try:
            events.append((int(ticket[:21]), data))  # type: ignore[index]
        except (TypeError, ValueError):
            raise ProtocolError(f"replies: bad blocking ticket {ticket!r}") from None
    return seq, replies, tuple(events)


def is_push(frame: bytes) -> bool:
    return frame[:_PREFIX_LEN] == PUSH_PREFIX


def decode_push(frame: bytes) -> list[tuple]:
    """The pub/sub entries of a PUSH; :class:`ProtocolError` if malformed."""
    _, nfields = _counts(frame, PUSH_PREFIX)
    if nfields * 4 > len(frame) - _BODY or nfields % 4:
        raise ProtocolError(f"push of {nfields} fields: longer than its frame")
    fields = _fields(frame, unpack_from(f"<{nfields}I", frame, _BODY), _BODY + nfields * 4)
    entries = list(zip(fields[::4], fields[1::4], fields[2::4], fields[3::4]))
    for kind, channel, _, message in entries:
        if kind is None or channel is None or message is None:
            raise ProtocolError("push: a message without kind, channel or payload")
    return entries


def _counts(frame: bytes, prefix: bytes) -> tuple[int, int]:
    if frame[:_PREFIX_LEN] != prefix or len(frame) < _BODY:
        raise ProtocolError(
            f"unexpected message header {bytes(frame[:_HEADER_LEN])!r}, expected {prefix!r}+seq"
        )
    return _COUNTS.unpack_from(frame, _HEADER_LEN)


def _split(frame: bytes, layout: bytes, start: int, end: int | None) -> list[bytes]:
    """The byte strings ``layout`` describes, from ``start``; they must end at ``end`` (when
    given) and fit in the frame.  The layout is checked to hold only lengths (``struct`` would
    take other codes: ints, padding) before ``struct`` compiles it."""
    if layout.translate(None, _LAYOUT_CHARS):
        raise ProtocolError("message layout holds other than lengths")
    try:
        cutter = Struct(b"<" + layout)
    except StructError as exc:
        raise ProtocolError(f"bad message layout: {exc}") from None
    stop = start + cutter.size
    if stop > len(frame) if end is None else stop != end:
        raise ProtocolError("message lengths do not add up to its size")
    return list(cutter.unpack_from(frame, start))


def _fields(frame: bytes, lengths: tuple[int, ...], start: int) -> list[bytes | None]:
    """The fields from ``start`` to the end of the frame (rare messages: a plain loop)."""
    fields: list[bytes | None] = []
    position = start
    for length in lengths:
        if length == _NONE:
            fields.append(None)
        else:
            fields.append(frame[position : position + length])
            position += length
    if position != len(frame):
        raise ProtocolError("message lengths do not add up to its size")
    return fields


# The marshal encoding (trusted links) ---------------------------------------------------------
M_BATCH_PREFIX = MAGIC + bytes([VERSION, MARSHALLED + BATCH])
M_REPLIES_PREFIX = MAGIC + bytes([VERSION, MARSHALLED + REPLIES])
M_PUSH_PREFIX = MAGIC + bytes([VERSION, MARSHALLED + PUSH])
# marshal format 4 is stable across CPython 3.4+ (it is marshal's own format, not the link's
# VERSION: the two change independently).
_MARSHAL_VERSION = 4


def m_encode_batch(seq: int, commands: list[tuple[int, list[bytes]]]) -> bytes:
    return M_BATCH_PREFIX + seq.to_bytes(8, "big") + marshal.dumps(commands, _MARSHAL_VERSION)


def m_decode_batch(frame: bytes) -> tuple[bytes, list[tuple[int, list[bytes]]]]:
    commands = _unmarshal(frame, M_BATCH_PREFIX)
    if type(commands) is not list:
        raise ProtocolError(f"batch: a {type(commands).__name__}, not a list")
    return frame[_PREFIX_LEN:_HEADER_LEN], commands


def m_encode_replies(
    seq: bytes, replies: list[bytes], events: list[tuple[int, bytes | None]] | None = None
) -> bytes:
    return M_REPLIES_PREFIX + seq + marshal.dumps((replies, events or ()), _MARSHAL_VERSION)


def m_decode_replies(
    frame: bytes,
) -> tuple[int, list[bytes], tuple[tuple[int, bytes | None], ...]]:
    payload = _unmarshal(frame, M_REPLIES_PREFIX)
    if type(payload) is not tuple or len(payload) != 2:
        raise ProtocolError("replies: not a (replies, events) pair")
    return int.from_bytes(frame[_PREFIX_LEN:_HEADER_LEN], "big"), payload[0], payload[1]


def m_encode_push(entries: list[tuple]) -> bytes:
    return M_PUSH_PREFIX + bytes(8) + marshal.dumps(entries, _MARSHAL_VERSION)


def m_decode_push(frame: bytes) -> list[tuple]:
    entries = _unmarshal(frame, M_PUSH_PREFIX)
    if type(entries) is not list:
        raise ProtocolError("push: not a list")
    return entries


def _unmarshal(frame: bytes, prefix: bytes) -> Any:
    if frame[:_PREFIX_LEN] != prefix or len(frame) < _HEADER_LEN:
        raise ProtocolError(
            f"unexpected message header {bytes(frame[:_HEADER_LEN])!r}, expected {prefix!r}+seq"
        )
    try:
        return marshal.loads(memoryview(frame)[_HEADER_LEN:])
    except (ValueError, EOFError, TypeError) as exc:
        raise ProtocolError(f"bad marshal payload: {exc}") from None


# Choosing one -------------------------------------------------------------------------------
class Codec(NamedTuple):
    """One encoding's functions; a link uses one codec for everything it sends and receives."""

    name: str
    encode_batch: Callable[[int, list[tuple[int, list[bytes]]]], bytes]
    decode_batch: Callable[[bytes], tuple[bytes, list[tuple[int, list[bytes]]]]]
    encode_replies: Callable[..., bytes]
    decode_replies: Callable[[bytes], tuple[int, list[bytes], Any]]
    encode_push: Callable[[list[tuple]], bytes]
    decode_push: Callable[[bytes], list[tuple]]
    push_prefix: bytes


STRICT = Codec("strict", encode_batch, decode_batch, encode_replies, decode_replies,
               encode_push, decode_push, PUSH_PREFIX)
MARSHAL = Codec("marshal", m_encode_batch, m_decode_batch, m_encode_replies, m_decode_replies,
                m_encode_push, m_decode_push, M_PUSH_PREFIX)


def codec_for(trusted: bool) -> Codec:
    """``marshal`` for a trusted link (ipc://, or CURVE-authenticated), else the strict one."""
    return MARSHAL if trusted else STRICT
