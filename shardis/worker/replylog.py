"""The replies of a worker's recent write batches, kept on disk beside its AOF.

A worker killed after its AOF write but before the batch's reply left (still in ZeroMQ's queue
or its socket) restarts holding the batch: the router must not run it again, and its client
must still get the reply it would have had.  So each batch that changed data has its reply
message written here *before* the AOF write: after a restart, every batch the AOF holds has its
reply on disk, and the router asks for the ones it never received (``__lost_replies``).

Two files, ``replies-0`` and ``replies-1`` in the worker's folder, used in turn: when the
current one passes :data:`FILE_LIMIT` the other is emptied and written next, so the newest
records (what may still be in flight) always survive.  A record::

    u32 length of what follows | u8 router id length | router id | u64 seq | reply message

The message is the encoded REPLIES message the router would have received.  Nothing here is
fsynced: it guards a process crash (the page cache survives); on a host crash the AOF's own
fsync policy decides what is lost, and a reply that is gone is reported as lost.
"""

from __future__ import annotations

import logging
import os
import struct

log = logging.getLogger("shardis.worker")

#: Size at which the log switches to its other file.
FILE_LIMIT = 8 * 1024 * 1024
_HEAD = struct.Struct("<IB")
_SEQ = struct.Struct(">Q")
#: The highest sequence number a record can hold: a larger one asked for (a peer's junk)
#: must not mark every later reply as handed back.
_SEQ_MAX = (1 << 64) - 1


class ReplyLog:
    """Appends reply records; loads what two files hold at start (``recorded``)."""

    def __init__(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        self.paths = [os.path.join(folder, f"replies-{i}") for i in (0, 1)]
        #: (router id, seq) -> reply message, read at start; taken by ``take``.
        self.recorded: dict[tuple[bytes, int], bytes] = {}
        #: router id -> the highest seq asked for: a reply is handed back once.
        self.taken: dict[bytes, int] = {}
        for path in self.paths:
            self._load(path)
        sizes = [_size(path) for path in self.paths]
        self.current = 0 if sizes[0] <= sizes[1] else 1
        self.fd = os.open(self.paths[self.current], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                          0o644)
        self.written = sizes[self.current]

    def _load(self, path: str) -> None:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return
        offset = 0
        while offset + _HEAD.size <= len(data):
            length, id_length = _HEAD.unpack_from(data, offset)
            end = offset + 4 + length
            start = offset + _HEAD.size
            if length < 1 + id_length + 8 or end > len(data):
                break  # a torn last record
            origin = data[start:start + id_length]
            seq = _SEQ.unpack_from(data, start + id_length)[0]
            if seq > self.taken.get(origin, -1):
                self.recorded[(origin, seq)] = data[start + id_length + 8:end]
            offset = end

    def append(self, origin: bytes, seq: bytes, message: bytes) -> None:
        """Record batch ``seq`` (its 8 sequence bytes) of router ``origin`` and its reply."""
        record = b"".join((_HEAD.pack(1 + len(origin) + 8 + len(message), len(origin)),
                           origin, seq, message))
        if self.written + len(record) > FILE_LIMIT and self.written:
            self._switch()
        view = memoryview(record)
        while view:
            view = view[os.write(self.fd, view):]
        self.written += len(record)

    def _switch(self) -> None:
        os.close(self.fd)
        self.current ^= 1
        self.fd = os.open(self.paths[self.current],
                          os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        self.written = 0

    def take(self, origin: bytes, seqs: list[int]) -> list[bytes | None]:
        """The recorded replies of ``origin``'s batches ``seqs`` (None: not recorded).  Asked
        once per reconnection: that router's other records are dropped from memory.

        After a restart they were loaded at start; a worker that stayed up while its link
        was cut wrote them since, so what is missing is read from the files again."""
        if any((origin, seq) not in self.recorded for seq in seqs):
            for path in self.paths:
                self._load(path)
        found = [self.recorded.get((origin, seq)) for seq in seqs]
        self.recorded = {key: value for key, value in self.recorded.items()
                         if key[0] != origin}
        asked = [seq for seq in seqs if seq <= _SEQ_MAX]  # a record's seq is a u64
        if asked:
            self.taken[origin] = max(self.taken.get(origin, -1), *asked)
        return found

    def close(self) -> None:
        os.close(self.fd)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
