"""The RESP codec: request parsing and reply encoding, RESP2 and RESP3.  Sans-IO.

Nothing here touches a socket (the h11 design): the router feeds bytes in and writes bytes out.

Requests come as multibulk arrays (parsed by ``hiredis.Reader``, in C) or as inline lines
(``PING``, ``SET a "b c"``, as typed into telnet), split with Redis's quoting rules.

Replies are plain Python values, encoded per connection protocol (2 or 3):

========================  =====================  ======================
Python value              RESP2                  RESP3
========================  =====================  ======================
``bytes``/``bytearray``   bulk string            bulk string
``Status``                simple string          simple string
``int``                   integer                integer
``bool``                  integer 1/0            boolean
``float``                 bulk ``%.17g``         double
``None``                  null bulk ``$-1``      null ``_``
``NULL_ARRAY``            null array ``*-1``     null ``_``
``list``/``tuple``        array                  array
``SetReply``              array                  set ``~``
``dict``                  flat array             map ``%``
``Verbatim``              bulk string            verbatim ``=``
``Push``                  array                  push ``>``
``Pairs``                 flat array             array of pairs
``Raw``                   (as encoded)           (as encoded)
``ReplyError``            error                  error
========================  =====================  ======================
"""

from __future__ import annotations

import math
import re
from itertools import chain

import hiredis

from shardis import errors
from shardis.errors import ReplyError

#: Bumped whenever the encoding of a reply type changes.
CODEC_VERSION = 1

#: Redis's ``client-query-buffer-limit`` default: a client with more unparsed input is closed.
MAX_QUERY_BUFFER = 1024 * 1024 * 1024
#: Redis's PROTO_INLINE_MAX_SIZE: an inline request without a newline beyond this is an error.
MAX_INLINE_SIZE = 64 * 1024


class Status(bytes):
    """A simple-string reply (``+OK``), as opposed to a bulk string."""

    __slots__ = ()


class SetReply(list):
    """An array that RESP3 sends as a set (``~``); a list so that order stays deterministic."""

    __slots__ = ()


class Pairs(list):
    """Field/value pairs (HRANDFIELD ... WITHVALUES): a flat array in RESP2, an array of
    two-element arrays in RESP3, as Redis sends them."""

    __slots__ = ()


class Raw(bytes):
    """A reply already encoded (an element of EXEC's array, from a worker): sent verbatim."""

    __slots__ = ()


class PushRaw(Raw):
    """Encoded pub/sub (un)subscribe confirmations: pushes, which CLIENT REPLY never drops."""

    __slots__ = ()


class Push(list):
    """An out-of-band push message (pub/sub); an array in RESP2."""

    __slots__ = ()


class HumanDouble(bytes):
    """A double already written as text (Redis's ``addReplyHumanLongDouble``: GEOPOS's
    coordinates): a double (``,``) in RESP3, a bulk string in RESP2."""

    __slots__ = ()


class Verbatim:
    """A verbatim string (``=``) in RESP3, e.g. INFO's ``txt`` text; a bulk string in RESP2."""

    __slots__ = ("fmt", "text")

    def __init__(self, text: bytes, fmt: bytes = b"txt") -> None:
        self.text = text
        self.fmt = fmt


class _NullArray:
    """RESP2's ``*-1`` (e.g. EXEC aborted by WATCH); plain null in RESP3."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY = _NullArray()
OK = Status(b"OK")
PONG = Status(b"PONG")

# Precomputed replies for the hot path.
OK_REPLY = b"+OK\r\n"
NULL_BULK = {2: b"$-1\r\n", 3: b"_\r\n"}
NULL_ARRAY_REPLY = {2: b"*-1\r\n", 3: b"_\r\n"}
EMPTY_ARRAY = b"*0\r\n"
_SMALL_INTS = [b":%d\r\n" % i for i in range(-1, 1024)]


def format_double(value: float) -> bytes:
    """Redis's ``%.17g`` text for a double, with ``inf``/``-inf`` spelled out."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


def encode_int(value: int) -> bytes:
    if -1 <= value < 1023:
        return _SMALL_INTS[value + 1]
    return b":%d\r\n" % value


def encode_bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def encode_error(message: str) -> bytes:
    return b"-" + message.encode("utf-8", "surrogateescape") + b"\r\n"


def encode(value: object, proto: int = 2) -> bytes:
    """Encode one reply for a connection speaking RESP ``proto`` (2 or 3)."""
    out: list[bytes] = []
    _encode_into(value, proto, out)
    return out[0] if len(out) == 1 else b"".join(out)


def _encode_into(value: object, proto: int, out: list[bytes]) -> None:
    kind = type(value)
    if kind is bytes or kind is bytearray:
        out.append(b"$%d\r\n%b\r\n" % (len(value), value))  # type: ignore[arg-type]
    elif kind is int:
        out.append(encode_int(value))  # type: ignore[arg-type]
    elif kind is Status:
        out.append(b"+" + value + b"\r\n")  # type: ignore[operator]
    elif value is None:
        out.append(NULL_BULK[proto])
    elif kind is list or kind is tuple:
        out.append(b"*%d\r\n" % len(value))  # type: ignore[arg-type]
        append = out.append
        for item in value:  # type: ignore[attr-defined]
            if type(item) is bytes:  # the common element (LRANGE, MGET...): no call per item
                append(b"$%d\r\n%b\r\n" % (len(item), item))
            else:
                _encode_into(item, proto, out)
    elif kind is ReplyError:
        out.append(encode_error(value.message))  # type: ignore[attr-defined]
    elif kind is bool:
        if proto == 3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if value else b":0\r\n")
    elif kind is float:
        text = format_double(value)  # type: ignore[arg-type]
        if proto == 3:
            out.append(b"," + text + b"\r\n")
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(text), text))
    elif kind is dict:
        prefix = b"%" if proto == 3 else b"*"
        count = len(value) if proto == 3 else 2 * len(value)  # type: ignore[arg-type]
        out.append(prefix + b"%d\r\n" % count)
        for key, item in value.items():  # type: ignore[attr-defined]
            _encode_into(key, proto, out)
            _encode_into(item, proto, out)
    elif kind is Raw or kind is PushRaw:
        out.append(value)  # type: ignore[arg-type]
    elif kind is Pairs:
        if proto == 3:
            out.append(b"*%d\r\n" % len(value))  # type: ignore[arg-type]
            for pair in value:  # type: ignore[attr-defined]
                _encode_into(list(pair), proto, out)
        else:
            out.append(b"*%d\r\n" % (2 * len(value)))  # type: ignore[arg-type]
            for pair in value:  # type: ignore[attr-defined]
                for item in pair:
                    _encode_into(item, proto, out)
    elif kind is SetReply or kind is Push:
        prefix = b"*" if proto == 2 else (b"~" if kind is SetReply else b">")
        out.append(prefix + b"%d\r\n" % len(value))  # type: ignore[arg-type]
        for item in value:  # type: ignore[attr-defined]
            _encode_into(item, proto, out)
    elif kind is Verbatim:
        text = value.text  # type: ignore[attr-defined]
        if proto == 3:
            out.append(b"=%d\r\n%b:%b\r\n" % (len(text) + 4, value.fmt, text))  # type: ignore[attr-defined]
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(text), text))
    elif value is NULL_ARRAY:
        out.append(NULL_ARRAY_REPLY[proto])
    elif kind is HumanDouble:
        head = b"," if proto == 3 else b"$%d\r\n" % len(value)  # type: ignore[arg-type]
        out.append(head + value + b"\r\n")  # type: ignore[operator]
    elif isinstance(value, bytes):
        out.append(b"$%d\r\n%b\r\n" % (len(value), value))
    else:
        raise TypeError(f"cannot encode {kind.__name__} as RESP")


# Reading one encoded reply back into reply values ----------------------------------------------
def parse_reply(data: bytes) -> object:
    """One encoded reply (RESP2 or RESP3, as a worker sent it) as the reply values a command
    returns: ``+`` Status, ``-`` ReplyError, ``:`` int, ``$`` bytes, ``*`` list, nulls None,
    ``,`` float, ``#`` bool, ``%`` dict, ``~`` SetReply, ``=`` Verbatim, ``(`` bytes.

    A script's ``redis.call`` on another worker's key gets its reply this way, so that it
    reaches Lua exactly as a local call's value does.  Raises ValueError on malformed input.
    """
    value, end = _parse_at(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after a reply")
    return value


def _parse_at(data: bytes, pos: int) -> tuple[object, int]:
    eol = data.index(b"\r\n", pos)
    kind, line, pos = data[pos:pos + 1], data[pos + 1:eol], eol + 2
    if kind == b"+":
        return Status(line), pos
    if kind == b"-":
        return ReplyError(line.decode("utf-8", "surrogateescape")), pos
    if kind == b":":
        return int(line), pos
    if kind in (b"$", b"=", b"("):
        if kind == b"(":
            return line, pos
        length = int(line)
        if length < 0:
            return None, pos
        text, pos = data[pos:pos + length], pos + length + 2
        if kind == b"=":
            return Verbatim(text[4:], text[:3]), pos
        return text, pos
    if kind == b"_":
        return None, pos
    if kind == b",":
        return float(line.replace(b"inf", b"Infinity")), pos
    if kind == b"#":
        return line == b"t", pos
    if kind in (b"*", b"~", b"%"):
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count * 2 if kind == b"%" else count):
            item, pos = _parse_at(data, pos)
            items.append(item)
        if kind == b"%":
            return Pairs(zip(items[::2], items[1::2])) if _unhashable(items[::2]) \
                else dict(zip(items[::2], items[1::2])), pos
        return (SetReply(items) if kind == b"~" else items), pos
    raise ValueError(f"unknown reply type {kind!r}")


def _unhashable(keys: list[object]) -> bool:
    return any(isinstance(key, (list, dict)) for key in keys)


class ProtocolError(Exception):
    """Malformed input: the connection gets this error text and is then closed, as in Redis."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolLimits:
    """``proto-max-bulk-len`` and ``client-query-buffer-limit``, shared by every parser of a
    router: CONFIG SET changes them here, and the next request of every client obeys."""

    __slots__ = ("max_bulk", "query_buffer", "big_bulk")

    def __init__(self, max_bulk: int = 512 * 1024 * 1024,
                 query_buffer: int = MAX_QUERY_BUFFER) -> None:
        self.query_buffer = query_buffer
        self.set_max_bulk(max_bulk)

    def set_max_bulk(self, value: int) -> None:
        self.max_bulk = value
        #: a bulk header that may be over ``max_bulk`` (as many digits or more): such a read
        #: goes to the Python parser, which checks it exactly.
        self.big_bulk = re.compile(rb"\$[1-9][0-9]{%d}" % (len(str(value)) - 1))


DEFAULT_LIMITS = ProtocolLimits()
#: ``RequestParser.error`` when the unparsed input passed ``client-query-buffer-limit``: Redis
#: closes such a client without a reply (and logs it).
QUERY_BUFFER_OVERFLOW = "query buffer overflow"


class RequestParser:
    """Turns a client's byte stream into commands (lists of bytes).

    Two parsers share the work.  hiredis (C) parses multibulk requests: the fast path.  A
    Python parser handles everything else exactly as Redis does: inline requests (``PING``,
    ``SET a "b c"``, as typed into telnet) at any request boundary, malformed input with
    Redis's error texts, and headers Redis refuses (``$04``, a length over 512 MB, more than
    :data:`MAX_MULTIBULK` arguments).  A read goes to hiredis unless a cheap check sends it to
    the Python parser; if hiredis fails, the read is parsed again in Python.

    hiredis never keeps state between reads: the unfinished request at the end of a read is
    continued by a :class:`_Request` (Python, headers checked like Redis, bulk bodies appended
    to a bytearray at C speed), so every request after it starts from a clean request boundary
    and gets every check again (an inline request, a giant ``*N`` that hiredis would allocate).
    """

    __slots__ = ("_reader", "_pending", "_request", "error", "limits", "limited")

    def __init__(self, limits: ProtocolLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._reader = hiredis.Reader()
        #: the start of an unfinished inline line (a bytearray: the pieces of a line sent in
        #: small reads are appended, not joined again at every read); or, in a limited parse,
        #: the unparsed rest of the input.
        self._pending: bytes | bytearray = b""
        #: the unfinished multibulk request at the end of the input so far.
        self._request: _Request | None = None
        #: set once input was malformed: the text of the error to send before closing.
        self.error: str | None = None
        #: an unauthenticated client: Redis's small limits, one request per call (see
        #: :meth:`_feed_limited`); the authenticated path never looks at it.
        self.limited = False

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Parse as many complete commands as ``data`` completes; keep the rest buffered.

        On malformed input, returns the commands parsed before the fault and sets
        :attr:`error`; like Redis, the connection answers those, then the error, then closes.
        """
        if self.error is not None or not (data or self.limited):
            return []
        commands: list[list[bytes]] = []
        try:
            if self.limited:
                self._feed_limited(data, commands)
            else:
                self._feed(data, commands)
        except ProtocolError as exc:
            self.error = exc.message
            self._request = None
            self._pending = b""
        return commands

    def _feed_limited(self, data: bytes, commands: list[list[bytes]]) -> None:
        """At most one request, with networking.c's unauthenticated limits; the rest of the
        input stays pending, to be parsed with or without limits once this one has run."""
        data = bytes(self._pending) + data
        self._pending = b""
        pos, end = 0, len(data)
        while pos < end and not commands:
            if self._request is None and data[pos] != 0x2A:  # an inline request
                newline = data.find(b"\n", pos)
                if newline < 0:
                    if end - pos > MAX_INLINE_SIZE:
                        raise ProtocolError(errors.PROTO_TOO_BIG_INLINE)
                    break
                args = split_inline(data[pos:newline])
                pos = newline + 1
                if args:
                    commands.append(args)
                continue
            request = self._request or _Request(self.limits, unauthenticated=True)
            next_pos = request.feed(data, pos, commands)
            if next_pos is None:
                self._request, pos = request, end
                break
            self._request, pos = None, next_pos
        self._pending = data[pos:]

    def take_pending(self) -> bytes:
        """The unparsed rest of the input (after a limited parse), now the caller's."""
        pending, self._pending = self._pending, b""
        return bytes(pending)

    def _feed(self, data: bytes, commands: list[list[bytes]]) -> None:
        if self._request is not None:
            pos = self._request.feed(data, 0, commands)
            if pos is None:
                return
            self._request = None
            if pos == len(data):
                return
            data = data[pos:]
        if self._pending:
            rest = self._continue_inline(data, commands)
            if not rest:
                return
            data = rest
        if data[0] == 0x2A and _suits_hiredis(data, self.limits.big_bulk):
            before = len(commands)
            try:
                done = self._drain(data, commands)
            except ProtocolError:
                # hiredis refused the read: parse it again in Python, from the start, for
                # Redis's behaviour (an inline request in a pipeline) or error text.
                del commands[before:]
                self._reader = hiredis.Reader()
            else:
                if done < len(data):
                    self._parse_slowly(data, commands, done)  # the unfinished request
                return
        self._parse_slowly(data, commands, 0)

    def _continue_inline(self, data: bytes, commands: list[list[bytes]]) -> bytes | None:
        """Continue the inline line cut by the end of an earlier read; return the input after it
        (None: the line is still unfinished).  Only the new bytes are searched and the line is
        joined once, when its newline comes: a line sent in small pieces costs O(bytes), not a
        copy and a scan of everything so far at every read."""
        pending = self._pending
        newline = data.find(b"\n")
        if newline < 0:
            if len(pending) + len(data) > MAX_INLINE_SIZE:
                raise ProtocolError(errors.PROTO_TOO_BIG_INLINE)
            pending += data  # type: ignore[operator]
            return None
        self._pending = b""
        args = split_inline(bytes(pending) + data[:newline])
        if args:
            commands.append(args)
        return data[newline + 1 :]

    def _drain(self, data: bytes, commands: list[list[bytes]]) -> int:
        """The fast path: hiredis parses every complete multibulk request in ``data``.

        Returns where the complete requests end: ``len(data)``, or the start of an unfinished
        request, which hiredis then forgets (it is parsed again by a :class:`_Request`).
        """
        reader = self._reader
        reader.feed(data)
        gets, has_data = reader.gets, reader.has_data
        got: list = []
        append = got.append
        exact = False
        try:
            while (command := gets()) is not False:
                append(command)
                if not has_data():
                    exact = True  # the read ended exactly after a request
                    break
        except hiredis.ProtocolError as exc:
            raise ProtocolError(_hiredis_error_text(str(exc))) from None
        except MemoryError:
            raise ProtocolError(errors.PROTO_INVALID_MULTIBULK) from None
        # What hiredis accepts and Redis does not, checked for the whole read at once (the
        # loops stay in C): a request that is not an array, an argument that is not a bulk.
        if got and (set(map(type, got)) != _LISTS
                    or not set(map(type, chain.from_iterable(got))) <= _BULKS):
            raise ProtocolError(errors.PROTO_INVALID_BULK)  # (parsed again in Python)
        empty = 0
        if not all(got):
            empty = len(got)
            got = [command for command in got if command]  # "*0": nothing to run...
            empty -= len(got)  # ...and 4 bytes each to count
        commands.extend(got)
        if exact:
            return len(data)
        self._reader = hiredis.Reader()
        return _wire_size(got, 0) + 4 * empty

    def _parse_slowly(self, data: bytes, commands: list[list[bytes]], pos: int) -> None:
        """Inline and multibulk requests, in Python, with Redis's checks and error texts."""
        end = len(data)
        while pos < end:
            if data[pos] != 0x2A:  # not '*': an inline request
                newline = data.find(b"\n", pos)
                if newline < 0:
                    if end - pos > MAX_INLINE_SIZE:
                        raise ProtocolError(errors.PROTO_TOO_BIG_INLINE)
                    self._pending = bytearray(data[pos:])
                    return
                args = split_inline(data[pos:newline])
                if args:
                    commands.append(args)
                pos = newline + 1
                continue
            request = _Request(self.limits)
            next_pos = request.feed(data, pos, commands)
            if next_pos is None:
                self._request = request
                return
            pos = next_pos


#: The only types a parsed request and its arguments may have (:meth:`RequestParser._drain`).
_LISTS = {list}
_BULKS = {bytes}


def _wire_size(commands: list[list[bytes]], start: int) -> int:
    """Bytes of ``commands[start:]`` as hiredis read them: canonical headers (its string2ll
    refuses any other spelling), whatever two bytes end each bulk.  This runs for every read
    that ends inside a request, so the loops stay in C: ``repr`` of a list of n lengths is
    their digits plus 2n characters ("[", "]" and n - 1 ", ")."""
    done = commands[start:] if start else commands
    if not done:
        return 0
    counts = list(map(len, done))
    sizes = list(map(len, chain.from_iterable(done)))
    total = len(repr(counts)) + len(counts)
    return total + len(repr(sizes)) + 3 * len(sizes) + sum(sizes) if sizes else total


#: Redis's limit on a multibulk count (INT_MAX; more is "invalid multibulk length").  hiredis
#: would allocate a list of the declared size up front, so a count of 7+ digits never reaches it
#: (:data:`_BIG_HEADERS`): the Python :class:`_Request` appends arguments as they arrive.
MAX_MULTIBULK = 2**31 - 1
#: Redis's proto-max-bulk-len default.
MAX_BULK_LENGTH = 512 * 1024 * 1024


#: networking.c: an unauthenticated client may send at most 10 arguments of 16 KB each.
UNAUTHENTICATED_ARGS = 10
UNAUTHENTICATED_BULK = 16384


class _Request:
    """One multibulk request parsed incrementally, in Python, across any number of reads.

    Nothing is allocated from a declared size: arguments are appended as they arrive and a
    bulk body grows with the bytes received, so ``*2000000000`` or ``$500000000`` cost a few
    bytes until the data itself comes; the bytes received are bounded by
    ``client-query-buffer-limit`` and each bulk by ``proto-max-bulk-len`` (``limits``).
    """

    __slots__ = ("count", "args", "header", "body", "need", "size", "limits", "unauthenticated")

    def __init__(self, limits: ProtocolLimits, unauthenticated: bool = False) -> None:
        self.limits = limits
        #: Redis's limits before AUTH: at most 10 arguments of 16 KB each.
        self.unauthenticated = unauthenticated
        #: arguments still expected; None until the ``*N`` line is read.
        self.count: int | None = None
        self.args: list[bytes] = []
        #: the start of a header line cut by the end of a read (appended to, never re-joined).
        self.header: bytes | bytearray = b""
        #: the bulk being received (with its trailing two bytes), or None between bulks.
        self.body: bytearray | None = None
        #: bytes still missing from ``body``.
        self.need = 0
        #: bytes of the arguments received whole (``args``).
        self.size = 0

    def feed(self, data: bytes, pos: int, commands: list[list[bytes]]) -> int | None:
        """Consume ``data[pos:]`` up to the end of this request: where it ended, or None."""
        end = len(data)
        while True:
            if self.body is not None:
                pos = self._take_body(data, pos)
                if self.body is not None:
                    return None
            if self.count == 0:
                if self.args:
                    commands.append(self.args)
                return pos
            if pos >= end:
                return None
            if self.count and not self.header and not self.unauthenticated:
                before = pos
                pos = self._take_bulks(data, pos)
                if pos != before:
                    continue
            if self.count is not None and not self.header and data[pos] != 0x24:  # '$'
                got = chr(data[pos]) if 32 <= data[pos] < 127 else "?"
                raise ProtocolError(errors.PROTO_EXPECTED_DOLLAR.format(got))
            line, pos = self._header_line(data, pos)
            if line is None:
                return None
            if self.count is None:
                self._start(line)
            else:
                pos = self._start_bulk(line, data, pos)

    def _take_bulks(self, data: bytes, pos: int) -> int:
        """The fast loop over whole, canonically written bulks in ``data[pos:]``: one regex match
        and one slice per argument (SADD with a million members is parsed here).  Stops at the
        first bulk it cannot take whole, which the general code then handles."""
        match, end, max_bulk = _BULK_HEADER.match, len(data), self.limits.max_bulk
        args, count, size = self.args, self.count, self.size
        while count and (header := match(data, pos)) is not None:
            length = int(header[1])
            start = header.end()
            stop = start + length
            if stop + 2 > end or length > max_bulk:
                break
            args.append(data[start:stop])
            size += length
            count -= 1
            pos = stop + 2  # Redis skips the two bytes after a bulk without looking at them
        self.count, self.size = count, size
        if size > self.limits.query_buffer:
            raise ProtocolError(QUERY_BUFFER_OVERFLOW)
        return pos

    def _header_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """The next CRLF-ended header line (without ``*``/``$``) and where it ends.

        A header cut by the end of a read is kept in :attr:`header` and only the new bytes are
        searched, so a header sent a byte at a time costs O(bytes)."""
        header = self.header
        if header and header[-1] == 0x0D and data[pos : pos + 1] == b"\n":  # CR | LF
            self.header = b""
            return bytes(header[1:-1]), pos + 1
        newline = data.find(b"\r\n", pos)
        if newline >= 0:
            if not header:
                return data[pos + 1 : newline], newline + 2
            self.header = b""
            return bytes(header[1:]) + data[pos:newline], newline + 2
        if len(header) + len(data) - pos > MAX_INLINE_SIZE:
            what = "mbulk" if self.count is None else "bulk"
            raise ProtocolError(f"ERR Protocol error: too big {what} count string")
        if header:
            header += memoryview(data)[pos:]  # type: ignore[operator]
        else:
            self.header = bytearray(data[pos:])
        return None, len(data)

    def _start(self, line: bytes) -> None:
        count = _header_number(line)
        if count is None or count > MAX_MULTIBULK:
            raise ProtocolError(errors.PROTO_INVALID_MULTIBULK)
        if self.unauthenticated and count > UNAUTHENTICATED_ARGS:
            raise ProtocolError(errors.PROTO_UNAUTH_MULTIBULK)
        self.count = max(count, 0)

    def _start_bulk(self, line: bytes, data: bytes, pos: int) -> int:
        """Check a bulk header; take the bulk at once if ``data[pos:]`` holds all of it (one
        slice: the common case of a request with many small arguments), else start
        :attr:`body`.  Returns where parsing goes on."""
        length = _header_number(line)
        if length is None or length < 0 or length > self.limits.max_bulk:
            raise ProtocolError(errors.PROTO_INVALID_BULK)
        if self.unauthenticated and length > UNAUTHENTICATED_BULK:
            raise ProtocolError(errors.PROTO_UNAUTH_BULK)
        stop = pos + length
        if stop + 2 > len(data):
            self.body = bytearray()
            self.need = length + 2
            return pos
        self.size += length
        if self.size > self.limits.query_buffer:
            raise ProtocolError(QUERY_BUFFER_OVERFLOW)
        self.args.append(data[pos:stop])
        self.count -= 1  # type: ignore[operator]
        return stop + 2  # Redis skips the two bytes after a bulk without looking at them

    def _take_body(self, data: bytes, pos: int) -> int:
        """Append what ``data[pos:]`` holds of the current bulk; finish it when complete."""
        body = self.body
        assert body is not None
        take = min(self.need, len(data) - pos)
        if take:
            body += memoryview(data)[pos : pos + take]
            if self.size + len(body) > self.limits.query_buffer:
                raise ProtocolError(QUERY_BUFFER_OVERFLOW)
        self.need -= take
        if self.need == 0:
            del body[-2:]  # Redis skips the two bytes after a bulk without looking at them
            self.size += len(body)
            self.args.append(bytes(body))
            self.body = None
            self.count -= 1  # type: ignore[operator]
        return pos + take


def _header_number(raw: bytes) -> int | None:
    """Redis's strict ``string2ll``: no leading zeros, no sign but ``-``, no spaces, int64."""
    if not _STRICT_INT.match(raw):
        return None
    value = int(raw)
    return value if -(2**63) <= value < 2**63 else None


_STRICT_INT = re.compile(rb"(?:0|-?[1-9][0-9]{0,18})\Z")
#: A bulk header as :func:`_header_number` accepts it, a non-negative length.
_BULK_HEADER = re.compile(rb"\$(0|[1-9][0-9]{0,18})\r\n")


#: Requests hiredis would accept but Redis refuses (a non-bulk element, a zero-padded length);
#: a small read containing these bytes takes the exact Python path (values may contain them too,
#: which only costs speed).  Larger reads (pipelines) skip this scan, which would cost more than
#: parsing them: there hiredis's leniency about these two non-canonical forms is accepted.
_STRICT_READ = 512
_ODD_HEADERS = re.compile(rb"[*$]0[0-9]|\r\n[+:\-_,#(!=%~>|]")

#: A multibulk count of 7+ digits or a bulk length of 9+ digits: the Python parser checks them.
_BIG_HEADERS = re.compile(rb"\*[1-9][0-9]{6}")
def _suits_hiredis(data: bytes, big_bulk: re.Pattern) -> bool:
    """Cheap checks that send a read to the exact Python parser instead of hiredis."""
    if len(data) <= _STRICT_READ and _ODD_HEADERS.search(data):
        return False
    return _BIG_HEADERS.search(data) is None and big_bulk.search(data) is None


def _hiredis_error_text(text: str) -> str:
    if "length" in text.lower() and "bulk" in text.lower() and "multi" not in text.lower():
        return errors.PROTO_INVALID_BULK
    if "multi" in text.lower():
        return errors.PROTO_INVALID_MULTIBULK
    return "ERR Protocol error: " + text


_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = b"0123456789abcdefABCDEF"


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline request like Redis's ``sdssplitargs``: quotes, escapes and ``\\xHH``."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if b"\0" in line:
        line = line[: line.index(b"\0")]  # Redis splits a C string: it ends at a NUL byte
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\n\r\v\f":
            i += 1
        if i >= n:
            return args
        current = bytearray()
        in_double = in_single = False
        while True:
            if in_double:
                if i >= n:
                    raise ProtocolError(errors.PROTO_UNBALANCED_QUOTES)
                c = line[i]
                if (
                    c == 0x5C
                    and i + 3 < n
                    and line[i + 1] == ord("x")
                    and line[i + 2] in _HEX
                    and line[i + 3] in _HEX
                ):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in b" \t\n\r\v\f":
                        raise ProtocolError(errors.PROTO_UNBALANCED_QUOTES)
                    in_double = False
                    i += 1
                    break
                else:
                    current.append(c)
            elif in_single:
                if i >= n:
                    raise ProtocolError(errors.PROTO_UNBALANCED_QUOTES)
                c = line[i]
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    current.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in b" \t\n\r\v\f":
                        raise ProtocolError(errors.PROTO_UNBALANCED_QUOTES)
                    in_single = False
                    i += 1
                    break
                else:
                    current.append(c)
            else:
                if i >= n:
                    break
                c = line[i]
                if c in b" \n\r\t\0":
                    break
                if c == 0x22:
                    in_double = True
                elif c == 0x27:
                    in_single = True
                else:
                    current.append(c)
            i += 1
        args.append(bytes(current))
