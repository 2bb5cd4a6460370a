"""A minimal raw RESP client over a plain socket, for byte-exact tests.

:class:`RawClient` sends requests and returns each reply as the *exact bytes* the server wrote,
so two servers can be compared byte for byte.  It understands every RESP2 and RESP3 reply type
(``+ - : $ * _ , # ! = ( % ~ > |``, nested, plus RESP3 streamed strings and aggregates) only as
far as needed to find where one reply ends.  :func:`decode` turns those bytes into Python values
for the tests that need an unordered or structural comparison.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

DEFAULT_TIMEOUT = 5.0

_LINE_TYPES = frozenset(b"+-:_,#(")
_BULK_TYPES = frozenset(b"$!=")
_AGGREGATE_TYPES = frozenset(b"*~>%|")


class ProtocolError(Exception):
    """The server sent bytes that are not a RESP reply."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection before a complete reply arrived."""


class _Incomplete(Exception):
    """Not enough bytes buffered yet for one complete reply."""


def encode_command(*args: bytes | str | int | float) -> bytes:
    """The multibulk request (``*N\\r\\n$len\\r\\narg\\r\\n...``) for ``args``."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = to_bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def to_bytes(arg: bytes | bytearray | str | int | float) -> bytes:
    if isinstance(arg, (bytes, bytearray)):
        return bytes(arg)
    if isinstance(arg, str):
        return arg.encode("utf-8")
    if isinstance(arg, (int, float)):
        return str(arg).encode("ascii")
    raise TypeError(f"cannot send {type(arg).__name__} as a RESP argument")


def reply_end(buf: bytes | bytearray, pos: int = 0) -> int:
    """Index just past the complete reply that starts at ``pos``.

    Raises :class:`_Incomplete` when ``buf`` holds only part of it and :class:`ProtocolError`
    when the bytes are not RESP.
    """
    if pos >= len(buf):
        raise _Incomplete
    kind = buf[pos]
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        raise _Incomplete
    line = bytes(buf[pos + 1 : eol])
    nxt = eol + 2
    if kind in _LINE_TYPES:
        return nxt
    if kind in _BULK_TYPES:
        if line == b"?":  # RESP3 streamed string: ;len chunks ended by ;0
            while True:
                eol = buf.find(b"\r\n", nxt)
                if eol < 0:
                    raise _Incomplete
                if buf[nxt] != ord(";"):
                    raise ProtocolError(f"bad streamed string chunk at {nxt}: {bytes(buf[nxt:eol])!r}")
                size = _int(buf[nxt + 1 : eol])
                nxt = eol + 2
                if size == 0:
                    return nxt
                nxt = _bulk_end(buf, nxt, size)
        size = _int(line)
        if size < 0:
            return nxt
        return _bulk_end(buf, nxt, size)
    if kind in _AGGREGATE_TYPES:
        per_entry = 2 if kind in b"%|" else 1
        if line == b"?":  # RESP3 streamed aggregate, ended by ".\r\n"
            while True:
                if nxt >= len(buf):
                    raise _Incomplete
                if buf[nxt] == ord("."):
                    if len(buf) < nxt + 3:
                        raise _Incomplete
                    return nxt + 3
                for _ in range(per_entry):
                    nxt = reply_end(buf, nxt)
        count = _int(line)
        for _ in range(max(count, 0) * per_entry):
            nxt = reply_end(buf, nxt)
        if kind == ord("|"):  # an attribute is followed by the reply it describes
            nxt = reply_end(buf, nxt)
        return nxt
    raise ProtocolError(f"unknown RESP type byte {bytes([kind])!r} in {bytes(buf[pos:pos + 64])!r}")


def _bulk_end(buf: bytes | bytearray, start: int, size: int) -> int:
    end = start + size + 2
    if len(buf) < end:
        raise _Incomplete
    if buf[end - 2 : end] != b"\r\n":
        raise ProtocolError(f"bulk of {size} bytes not followed by CRLF: {bytes(buf[end - 2:end])!r}")
    return end


def _int(raw: bytes | bytearray) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ProtocolError(f"bad length {bytes(raw)!r}") from None


def split_replies(data: bytes) -> list[bytes]:
    """Split a buffer holding several complete replies into one bytes object per reply."""
    out = []
    pos = 0
    while pos < len(data):
        try:
            end = reply_end(data, pos)
        except _Incomplete:
            raise ProtocolError(f"incomplete reply at {pos}: {data[pos:pos + 64]!r}") from None
        out.append(data[pos:end])
        pos = end
    return out


class RawClient:
    """One TCP connection; replies come back as the exact bytes the server sent."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()

    # -- sending ---------------------------------------------------------------------------
    def send(self, *args: bytes | str | int | float) -> None:
        self.send_raw(encode_command(*args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- receiving -------------------------------------------------------------------------
    def read_reply(self, timeout: float | None = None) -> bytes:
        """The exact bytes of the next complete reply (raises TimeoutError, ConnectionClosed)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        while True:
            try:
                end = reply_end(self._buf)
            except _Incomplete:
                pass
            else:
                reply = bytes(self._buf[:end])
                del self._buf[:end]
                return reply
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(
                    f"no complete reply within {self.sock.gettimeout()}s; "
                    f"buffered {bytes(self._buf[:200])!r}"
                ) from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ConnectionClosed(
                    f"connection closed; buffered {bytes(self._buf[:200])!r}"
                )
            self._buf += chunk

    def read_replies(self, count: int, timeout: float | None = None) -> list[bytes]:
        return [self.read_reply(timeout) for _ in range(count)]

    def call(self, *args: bytes | str | int | float) -> bytes:
        self.send(*args)
        return self.read_reply()

    def pipeline(self, commands: Iterable[Iterable[bytes | str | int]]) -> list[bytes]:
        """Send all commands in one write, then read one reply per command."""
        commands = [list(cmd) for cmd in commands]
        self.send_raw(b"".join(encode_command(*cmd) for cmd in commands))
        return self.read_replies(len(commands))

    def hello3(self) -> None:
        """Switch the connection to RESP3 (the HELLO reply is read and discarded)."""
        reply = self.call("HELLO", "3")
        if not reply.startswith(b"%"):
            raise ProtocolError(f"HELLO 3 failed: {reply!r}")

    def is_closed(self, timeout: float = 1.0) -> bool:
        """True when the server has closed the connection (EOF within ``timeout``).

        Unread buffered data, or data arriving, means the connection is still open.
        """
        if self._buf:
            return False
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not chunk:
            return True
        self._buf += chunk
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- decoding ----------------------------------------------------------------------------------
class RespError(str):
    """An error reply (``-`` or ``!``), e.g. ``RespError('ERR syntax error')``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"RespError({str(self)!r})"


class Verbatim(bytes):
    """A RESP3 verbatim string; the bytes are the text, ``fmt`` the 3-letter format."""

    fmt: bytes = b"txt"


class Push(list):
    """A RESP3 push message."""


class Attributed:
    """A reply that came with a RESP3 attribute (``|``)."""

    def __init__(self, attributes: object, value: object) -> None:
        self.attributes = attributes
        self.value = value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Attributed)
            and self.attributes == other.attributes
            and self.value == other.value
        )

    def __repr__(self) -> str:
        return f"Attributed({self.attributes!r}, {self.value!r})"


def decode(raw: bytes) -> object:
    """Python value of one complete raw reply.

    ``+`` -> str, ``-``/``!`` -> :class:`RespError`, ``:``/``(`` -> int, ``$`` -> bytes,
    null bulk/array and ``_`` -> None, ``,`` -> float, ``#`` -> bool, ``=`` -> :class:`Verbatim`,
    ``*`` -> list, ``~`` -> set (list when an element is unhashable), ``%`` -> dict (list of
    pairs when a key is unhashable), ``>`` -> :class:`Push`, ``|`` -> :class:`Attributed`.
    """
    value, end = _decode(raw, 0)
    if end != len(raw):
        raise ProtocolError(f"{len(raw) - end} trailing bytes after the reply: {raw[end:][:64]!r}")
    return value


def _decode(buf: bytes, pos: int) -> tuple[object, int]:
    kind = chr(buf[pos])
    eol = buf.index(b"\r\n", pos)
    line = buf[pos + 1 : eol]
    nxt = eol + 2
    if kind == "+":
        return line.decode("utf-8", "surrogateescape"), nxt
    if kind == "-":
        return RespError(line.decode("utf-8", "surrogateescape")), nxt
    if kind in ":(":
        return int(line), nxt
    if kind == "_":
        return None, nxt
    if kind == ",":
        return float(line), nxt
    if kind == "#":
        return line == b"t", nxt
    if kind in "$!=":
        if line == b"?":
            chunks = []
            while True:
                eol = buf.index(b"\r\n", nxt)
                size = int(buf[nxt + 1 : eol])
                nxt = eol + 2
                if size == 0:
                    break
                chunks.append(buf[nxt : nxt + size])
                nxt += size + 2
            data = b"".join(chunks)
        else:
            size = int(line)
            if size < 0:
                return None, nxt
            data = buf[nxt : nxt + size]
            nxt += size + 2
        if kind == "!":
            return RespError(data.decode("utf-8", "surrogateescape")), nxt
        if kind == "=":
            value = Verbatim(data[4:])
            value.fmt = data[:3]
            return value, nxt
        return data, nxt
    if kind in "*~>%|":
        per_entry = 2 if kind in "%|" else 1
        items: list = []
        if line == b"?":
            while buf[nxt] != ord("."):
                item, nxt = _decode(buf, nxt)
                items.append(item)
            nxt += 3
        else:
            count = int(line)
            if count < 0:
                return None, nxt
            for _ in range(count * per_entry):
                item, nxt = _decode(buf, nxt)
                items.append(item)
        if kind == "*":
            return items, nxt
        if kind == ">":
            return Push(items), nxt
        if kind == "~":
            try:
                return set(items), nxt
            except TypeError:
                return items, nxt
        pairs = list(zip(items[::2], items[1::2]))
        try:
            mapping: object = dict(pairs)
        except TypeError:
            mapping = pairs
        if kind == "|":
            value, nxt = _decode(buf, nxt)
            return Attributed(mapping, value), nxt
        return mapping, nxt
    raise ProtocolError(f"unknown RESP type byte {kind!r}")
