"""Redis 7 multi-part append-only file: manifest, writer and reader.

Layout (Redis 7.0, ``aof.c``): a folder ``appenddirname`` holding ``appendonly.aof.manifest``
plus the files it names — at most one base (``type b``, ``.base.aof`` in RESP or ``.base.rdb``),
history files (``type h``, left over from a rewrite, never loaded) and incr files (``type i``,
strictly increasing ``seq``, loaded in order after the base).  Only the last incr file is
appended to.  Files we write load in a real redis-server and pass ``redis-check-aof``, so an
operator can move data between Redis and shardis and use Redis's repair tool on ours.

The module is sans-IO where it can be: :func:`encode_command`, :func:`aof_commands` and
:class:`Manifest` touch no disk; :class:`AofWriter` owns one file descriptor and is driven by the
worker's batch loop (``append`` per command, ``flush`` once per batch, ``maybe_fsync`` on a tick).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

log = logging.getLogger(__name__)

BASE, HIST, INCR = "b", "h", "i"
MANIFEST_MAX_LINE = 1024  # Redis rejects longer manifest lines
LINE_MAX = 1024  # Redis reads '*N' / '$N' header lines with a 1024-byte fgets buffer
POLICIES = ("always", "everysec", "no")


class AofError(Exception):
    """Anything wrong with the AOF on disk: loading must stop (Redis exits)."""


class ManifestError(AofError):
    """The manifest breaks one of Redis 7.0's rules (``aofLoadManifestFromFile``)."""


class AofCorruptError(AofError):
    """A bad byte at ``offset`` of ``file``: only a human (or redis-check-aof) can decide."""

    def __init__(self, file: str, offset: int, reason: str) -> None:
        super().__init__(f"{reason} in AOF file {file} at offset {offset}")
        self.file = file
        self.offset = offset
        self.reason = reason


class AofTruncatedError(AofCorruptError):
    """A file ends inside a command and it may not be cut (not the last file, or not allowed)."""


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------

@dataclass
class AofInfo:
    """One manifest line: ``file NAME seq N type T``."""

    name: str
    seq: int
    type: str


@dataclass
class Manifest:
    """The manifest's three lists; ``dumps`` writes them in Redis's order: base, history, incr."""

    base: AofInfo | None = None
    history: list[AofInfo] = field(default_factory=list)
    incrs: list[AofInfo] = field(default_factory=list)
    base_seq: int = 0
    incr_seq: int = 0

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """Parse with Redis 7.0's rules, so a manifest Redis refuses is refused here too."""
        manifest = cls()
        lines = data.split(b"\n")
        if data == b"":
            raise ManifestError("Found an empty AOF manifest")
        for linenum, raw in enumerate(lines[:-1] if data.endswith(b"\n") else lines, 1):
            manifest._add_line(raw, linenum, complete=linenum < len(lines) or not raw)
        return manifest

    def _add_line(self, raw: bytes, linenum: int, complete: bool) -> None:
        """One line: comments skipped; a line with no newline is 'too long' (fgets semantics)."""
        if raw.startswith(b"#"):
            return
        if len(raw) + 1 > MANIFEST_MAX_LINE or not complete:
            raise ManifestError(f"The AOF manifest file contains too long line (line {linenum})")
        info = parse_manifest_line(raw.strip(b" \t\r"), linenum)
        if info.type == BASE:
            if self.base is not None:
                raise ManifestError(f"Found duplicate base file information (line {linenum})")
            self.base, self.base_seq = info, info.seq
        elif info.type == HIST:
            self.history.append(info)
        elif info.type == INCR:
            if info.seq <= self.incr_seq:
                raise ManifestError(f"Found a non-monotonic sequence number (line {linenum})")
            self.incrs.append(info)
            self.incr_seq = info.seq
        else:
            raise ManifestError(f"Unknown AOF file type (line {linenum})")

    def dumps(self) -> bytes:
        """The manifest text, as ``getAofManifestAsString`` formats it."""
        infos = ([self.base] if self.base else []) + self.history + self.incrs
        return b"".join(b"file %s seq %d type %s\n" % (_repr_name(i.name), i.seq, i.type.encode())
                        for i in infos)

    def loaded_files(self) -> list[AofInfo]:
        """Base then incr files: what a load replays (history files are never read)."""
        return ([self.base] if self.base else []) + list(self.incrs)

    def new_incr(self, prefix: str) -> AofInfo:
        """Append a fresh incr entry (``getNewIncrAofName``)."""
        self.incr_seq += 1
        info = AofInfo(f"{prefix}.{self.incr_seq}.incr.aof", self.incr_seq, INCR)
        self.incrs.append(info)
        return info

    def new_base(self, prefix: str, fmt: str = "aof") -> AofInfo:
        """Make a new base, demoting the old one to history (for a rewrite)."""
        if self.base is not None:
            self.history.insert(0, AofInfo(self.base.name, self.base.seq, HIST))
        self.base_seq += 1
        self.base = AofInfo(f"{prefix}.{self.base_seq}.base.{fmt}", self.base_seq, BASE)
        return self.base

    def incrs_to_history(self, keep_last: int = 1) -> None:
        """After a rewrite, the incr files it covered become history; the live one stays."""
        cut = len(self.incrs) - keep_last
        for info in reversed(self.incrs[:cut]):
            self.history.insert(0, AofInfo(info.name, info.seq, HIST))
        self.incrs = self.incrs[cut:]


def parse_manifest_line(line: bytes, linenum: int) -> AofInfo:
    """Key/value pairs in any order; unknown keys ignored for forward compatibility (as Redis)."""
    argv = split_args(line)
    if argv is None or len(argv) < 6 or len(argv) % 2:
        raise ManifestError(f"Invalid AOF manifest file format (line {linenum})")
    name, seq, kind = None, 0, ""
    for key, value in zip(argv[::2], argv[1::2]):
        key = key.lower()
        if key == b"file":
            name = value.decode("utf-8", "surrogateescape")
            if "/" in name or "\\" in name:
                raise ManifestError(f"File can't be a path, just a filename (line {linenum})")
        elif key == b"seq":
            seq = _atoll(value)
        elif key == b"type":
            kind = value[:1].decode("latin-1")
    if not name or not seq or not kind:
        raise ManifestError(f"Invalid AOF manifest file format (line {linenum})")
    return AofInfo(name, seq, kind)


def _atoll(value: bytes) -> int:
    """C's atoll: leading number or 0 — Redis accepts ``seq 3x`` as 3, and so do we."""
    match = re.match(rb"\s*([+-]?\d+)", value)
    return int(match.group(1)) if match else 0


_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"a": b"\a"}
_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"(?=\s|$)|\'((?:[^\'\\]|\\\')*)\'(?=\s|$)|([^\s"\']+)',
                    re.S)


def split_args(line: bytes) -> list[bytes] | None:
    """``sdssplitargs``: words, "double quoted with \\xHH escapes" or 'single quoted'.

    None for unbalanced quotes, as Redis.
    """
    out: list[bytes] = []
    pos = 0
    while True:
        while pos < len(line) and line[pos:pos + 1].isspace():
            pos += 1
        if pos == len(line):
            return out
        match = _TOKEN.match(line, pos)
        if match is None:
            return None
        double, single, bare = match.groups()
        if double is not None:
            out.append(_unescape(double))
        elif single is not None:
            out.append(single.replace(b"\\'", b"'"))
        else:
            out.append(bare)
        pos = match.end()


def _unescape(body: bytes) -> bytes:
    r"""Undo ``sdscatrepr``: \xHH, \n, \r, \t, \b, \a, \\ and \"."""
    def sub(m: re.Match) -> bytes:
        esc = m.group(1)
        if len(esc) == 3:  # xHH; a lone \x (no two hex digits) is an "x", as sdssplitargs
            return bytes([int(esc[1:], 16)])
        return _ESCAPES.get(esc, esc)
    return re.sub(rb"\\(x[0-9a-fA-F]{2}|.)", sub, body, flags=re.S)


def _repr_name(name: str) -> bytes:
    """Quote a file name the way ``sdscatrepr`` does when it has spaces, quotes or control bytes."""
    raw = name.encode("utf-8", "surrogateescape")
    if all(0x21 <= c <= 0x7E and c not in b'"\\\'' for c in raw):
        return raw
    out = bytearray(b'"')
    for c in raw:
        ch = bytes([c])
        if ch in b'\\"':
            out += b"\\" + ch
        elif ch in b"\n\r\t\a\b":
            out += b"\\" + {b"\n": b"n", b"\r": b"r", b"\t": b"t", b"\a": b"a", b"\b": b"b"}[ch]
        elif 0x20 <= c <= 0x7E:
            out += ch
        else:
            out += b"\\x%02x" % c
    return bytes(out + b'"')


# ---------------------------------------------------------------------------------------------
# Folder: manifest on disk, incr files
# ---------------------------------------------------------------------------------------------

def fsync_dir(path: str) -> None:
    """A rename or a new file is durable only once its directory is fsynced (``fsyncFileDir``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AofDir:
    """The ``appenddirname`` folder under the server's ``dir``."""

    def __init__(self, dir: str, dirname: str = "appendonlydir",
                 filename: str = "appendonly.aof") -> None:
        self.path = os.path.join(dir, dirname)
        self.filename = filename
        self.manifest_path = os.path.join(self.path, filename + ".manifest")

    def file_path(self, name: str) -> str:
        return os.path.join(self.path, name)

    def load_manifest(self) -> Manifest | None:
        """The manifest, or None if there is none yet (a fresh server)."""
        try:
            with open(self.manifest_path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ManifestError(f"can't open the AOF manifest {self.manifest_path}: {exc}") from exc
        return Manifest.parse(data)

    def write_manifest(self, manifest: Manifest) -> None:
        """Atomic replace, as ``writeAofManifestFile``: temp file, fsync, rename, fsync dir."""
        tmp = os.path.join(self.path, "temp-" + self.filename + ".manifest")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, manifest.dumps())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.manifest_path)
        fsync_dir(self.path)

    def open_for_append(self, policy: str = "everysec") -> tuple[Manifest, AofWriter]:
        """Open the last incr file (creating folder, manifest and file on a fresh start)."""
        os.makedirs(self.path, exist_ok=True)
        manifest = self.load_manifest() or Manifest()
        if manifest.incrs:
            return manifest, AofWriter(self.file_path(manifest.incrs[-1].name), policy)
        return manifest, self.start_new_incr(manifest, policy)

    def start_new_incr(self, manifest: Manifest, policy: str = "everysec") -> AofWriter:
        """Switch to a new incr file (a rewrite starts one): file first, then the manifest.

        The file is created before the manifest names it, so a crash in between leaves an
        unreferenced empty file rather than a manifest naming a missing file (fatal in Redis).
        """
        info = manifest.new_incr(self.filename)
        writer = AofWriter(self.file_path(info.name), policy)
        os.fsync(writer.fd)
        self.write_manifest(manifest)
        return writer

    def write_base(self, manifest: Manifest, commands: Iterable[Sequence[bytes]]) -> AofInfo:
        """Write a RESP base file (a rewrite's output), durable before the manifest names it."""
        info = manifest.new_base(self.filename)
        tmp = self.file_path("temp-rewriteaof-" + info.name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for command in commands:
                _write_all(fd, encode_command(command))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.file_path(info.name))
        return info

    def rewrite(self, manifest: Manifest, writer: AofWriter,
                commands: Iterable[Sequence[bytes]]) -> AofWriter:
        """Replace everything logged so far by ``commands`` (a dump of the keyspace).

        Redis 7's order, done synchronously: new writes go to a new incr file first, then the
        base is written and made durable, then one manifest update makes it current (old
        base and incr files become history), and only then are the history files deleted.
        A crash at any step leaves a manifest that loads the old or the new state, never a mix.
        """
        writer.close()
        new_writer = self.start_new_incr(manifest, writer.policy)
        self.write_base(manifest, commands)
        manifest.incrs_to_history(keep_last=1)
        self.write_manifest(manifest)
        self.delete_history(manifest)
        return new_writer

    def delete_history(self, manifest: Manifest) -> None:
        """Drop history files (never loaded), then forget them in the manifest."""
        for info in manifest.history:
            try:
                os.unlink(self.file_path(info.name))
            except FileNotFoundError:
                pass
        manifest.history.clear()
        self.write_manifest(manifest)

    def read(self, truncate_tail: bool = True, annotations: bool = False,
             rdb: RdbLoader | None = None) -> Iterator[list[bytes]]:
        """The commands of base + incr files in manifest order (see :func:`read_aof_file`);
        ``rdb`` loads a file that starts with an RDB preamble (a ``.base.rdb``)."""
        manifest = self.load_manifest()
        if manifest is None:
            return
        files = manifest.loaded_files()
        for index, info in enumerate(files):
            last = index == len(files) - 1
            yield from read_aof_file(self.file_path(info.name), info.name,
                                     truncate_tail=truncate_tail and last,
                                     annotations=annotations, rdb=rdb)

    def sizes(self, manifest: Manifest) -> tuple[int, int]:
        """(base file size, base + incr files size): Redis's ``aof_current_size``."""
        base = total = 0
        for info in manifest.loaded_files():
            try:
                size = os.stat(self.file_path(info.name)).st_size
            except OSError:
                continue
            total += size
            if info.type == BASE:
                base = size
        return base, total


# ---------------------------------------------------------------------------------------------
# Batch annotations: which router batch a worker's AOF holds last
# ---------------------------------------------------------------------------------------------

#: The pseudo command name annotations are yielded under (not a valid RESP command name).
ANNOTATION = b"#"
_BATCH = re.compile(rb"SHD:([0-9a-f]{1,64}):(\d{1,20}):(\d{1,20})\Z")


def batch_annotation(origin: bytes, seq: int, length: int) -> bytes:
    """``#SHD:<router id>:<seq>:<bytes>``: the next ``bytes`` of the file are what batch
    ``seq`` of router ``origin`` changed (``length`` 0: a checkpoint carried into a new file).

    Redis's loader and ``redis-check-aof`` skip annotation lines, so files stay theirs.
    """
    return b"#SHD:%s:%d:%d\r\n" % (origin.hex().encode(), seq, length)


def parse_batch_annotation(text: bytes) -> tuple[bytes, int, int] | None:
    """(router id, seq, bytes) of a batch annotation's text, or None for another annotation."""
    match = _BATCH.match(text)
    if match is None or len(match.group(1)) % 2:
        return None
    return bytes.fromhex(match.group(1).decode()), int(match.group(2)), int(match.group(3))


def batch_bytes(text: bytes) -> int:
    parsed = parse_batch_annotation(text)
    return 0 if parsed is None else parsed[2]


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (disk full, signals): loop until all is out."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------

#: ``*N`` and N bulk strings as one format, for the short commands most writes are.
_COMMAND_FORMATS = [b"*%d\r\n" % n + b"$%d\r\n%b\r\n" * n for n in range(9)]


def encode_command(args: Sequence[bytes]) -> bytes:
    """RESP multibulk, as ``catAppendOnlyGenericCommand``."""
    count = len(args)
    if count == 3:  # SET key value, HDEL key field, LPUSH key element...
        a, b, c = args
        return _COMMAND_FORMATS[3] % (len(a), a, len(b), b, len(c), c)
    if count == 2:
        a, b = args
        return _COMMAND_FORMATS[2] % (len(a), a, len(b), b)
    if count == 4:
        a, b, c, d = args
        return _COMMAND_FORMATS[4] % (len(a), a, len(b), b, len(c), c, len(d), d)
    if count < 9:
        flat: list[object] = []
        for arg in args:
            flat.append(len(arg))
            flat.append(arg)
        return _COMMAND_FORMATS[count] % tuple(flat)
    parts = [b"*%d\r\n" % count]
    for arg in args:
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


class AofWriter:
    """Appends to one incr file: one ``write`` per batch, fsync per the ``appendfsync`` policy.

    ``always``: ``flush`` writes and fsyncs before returning, so replies sent after it are
    durable — group commit, one fsync per batch however many commands it holds.
    ``everysec``: ``flush`` writes; ``maybe_fsync(now)`` (called from the worker's loop) fsyncs
    at most once a second, and only if something was written since, in a background thread as
    Redis does (its bio thread): an fsync can take tens of milliseconds on a busy disk, and the
    worker keeps serving meanwhile.  ``no``: the OS decides.
    """

    def __init__(self, path: str, policy: str = "everysec") -> None:
        if policy not in POLICIES:
            raise ValueError(f"appendfsync must be one of {POLICIES}, not {policy!r}")
        self.path = path
        self.policy = policy
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.buf: list[bytes] = []
        #: the database the file's last SELECT chose (None: none yet; Redis starts each
        #: opened file's first write with SELECT).
        self.selected: int | None = None
        self.unsynced = False
        self.last_fsync = 0.0
        #: the background fsync of ``everysec`` (one at a time), and the error it met.
        self.syncer: threading.Thread | None = None
        self.sync_error: OSError | None = None

    def append(self, commands: Iterable[Sequence[bytes]], db: int | None = 0) -> None:
        """Buffer commands (already translated by :func:`aof_commands`) of database ``db``
        (None: whichever is selected, for MULTI/EXEC); no IO."""
        if db != self.selected and (db is not None or self.selected is None):
            self._select(db or 0)
        self.buf.extend(encode_command(args) for args in commands)

    def append_encoded(self, data: bytes, db: int = 0) -> None:
        """Buffer one command already encoded (:func:`encode_command`); no IO."""
        if db != self.selected:
            self._select(db)
        self.buf.append(data)

    def _select(self, db: int) -> None:
        self.buf.append(encode_command([b"SELECT", b"%d" % db]))
        self.selected = db

    def flush(self, now: float = 0.0, origin: tuple[bytes, int] | None = None) -> bool:
        """Write the batch's buffer in one go; with ``always`` also fsync it.  With ``origin``
        (router id, batch seq) the write starts with that batch's annotation.  True if
        anything was written.

        A failed or partial write is cut back so the file never ends inside a command we
        may later append after (Redis does the same ``ftruncate``), then the error propagates.
        """
        if not self.buf:
            return False
        data = b"".join(self.buf)
        if origin is not None:
            data = batch_annotation(origin[0], origin[1], len(data)) + data
        size = os.fstat(self.fd).st_size
        try:
            _write_all(self.fd, data)
        except OSError:
            os.ftruncate(self.fd, size)
            raise
        self.buf.clear()
        self.unsynced = True
        if self.policy == "always":
            self._fsync(now)
        return True

    def size(self) -> int:
        return os.fstat(self.fd).st_size + sum(map(len, self.buf))

    def write_annotations(self, lines: Iterable[bytes]) -> None:
        """Annotation lines written at once (a new file's checkpoints), outside any batch."""
        data = b"".join(lines)
        if data:
            _write_all(self.fd, data)
            self.unsynced = True

    def maybe_fsync(self, now: float) -> bool:
        """``everysec``: start an fsync if a second has passed since the last one (not while
        the previous one still runs: Redis postpones too); True if it started one.  Raises
        the error a background fsync met (the caller stops the worker, as for a write)."""
        if self.sync_error is not None:
            raise self.sync_error
        if self.policy != "everysec" or not self.unsynced or now - self.last_fsync < 1.0:
            return False
        if self.syncer is not None and self.syncer.is_alive():
            return False
        self.unsynced = False
        self.last_fsync = now
        self.syncer = threading.Thread(target=self._background_fsync, name="aof-fsync",
                                       daemon=True)
        self.syncer.start()
        return True

    def _background_fsync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            self.sync_error = exc

    def wait_fsync(self) -> None:
        """Wait for the background fsync, if one runs (before the fd may be closed)."""
        if self.syncer is not None:
            self.syncer.join()
            self.syncer = None

    def _fsync(self, now: float) -> None:
        os.fsync(self.fd)
        self.unsynced = False
        self.last_fsync = now

    def close(self) -> None:
        """Flush what is buffered and fsync it (a clean shutdown loses nothing)."""
        self.wait_fsync()
        self.flush()
        if self.unsynced:
            os.fsync(self.fd)
        os.close(self.fd)


# ---------------------------------------------------------------------------------------------
# Translation to absolute-time commands
# ---------------------------------------------------------------------------------------------

_EXPIRE_UNIT = {b"EXPIRE": (1000, True), b"PEXPIRE": (1, True),
                b"EXPIREAT": (1000, False), b"PEXPIREAT": (1, False)}
_SET_UNIT = {b"EX": (1000, True), b"PX": (1, True), b"EXAT": (1000, False), b"PXAT": (1, False)}


def aof_commands(args: Sequence[bytes], now_ms: int) -> list[list[bytes]]:
    """What to log for a command that changed the dataset, as Redis 7.0 propagates it.

    Relative times become absolute so replaying later does not extend TTLs:
    EXPIRE/PEXPIRE/EXPIREAT -> PEXPIREAT (or DEL when already past, as ``expireGenericCommand``);
    SET ... EX/PX/EXAT/PXAT, SETEX, PSETEX -> ``SET key value PXAT ms`` (one atomic command, so
    a cut tail can never leave the value without its TTL); SET ... GET drops GET;
    GETEX EX/PX/EXAT/PXAT -> PEXPIREAT, GETEX PERSIST -> PERSIST; GETDEL -> DEL;
    RESTORE with a relative TTL -> RESTORE ... ABSTTL (DEL when already past).
    Everything else is logged as received.  Not translated here, because it needs the reply or
    the context: SPOP, XADD ``*``, blocking pops, scripts and expired keys are translated by the
    worker (``shardis.worker.aoflog``), which calls this for the rest.  INCRBYFLOAT and
    HINCRBYFLOAT are logged as received: replaying them on the same state gives the same
    result here (Redis logs SET with the result instead).
    The caller must not log a command that changed nothing (SET NX on an existing key).
    """
    name = bytes(args[0]).upper()
    if name in _EXPIRE_UNIT:
        return [_expire(args, now_ms, *_EXPIRE_UNIT[name])]
    if name == b"SET":
        return [_set(args, now_ms)]
    if name in (b"SETEX", b"PSETEX"):
        when = now_ms + int(args[2]) * (1000 if name == b"SETEX" else 1)
        return [[b"SET", args[1], args[3], b"PXAT", b"%d" % when]]
    if name == b"GETEX":
        return _getex(args, now_ms)
    if name == b"GETDEL":
        return [[b"DEL", args[1]]]
    if name in (b"RESTORE", b"RESTORE-ASKING"):
        return [_restore([b"RESTORE", *args[1:]], now_ms)]
    return [list(args)]


def _restore(args: Sequence[bytes], now_ms: int) -> list[bytes]:
    """RESTORE with a relative TTL -> absolute TTL plus ABSTTL (Redis's ``restoreCommand``);
    DEL when the deadline is already past (it only changed anything if REPLACE deleted)."""
    ttl = int(args[2])
    absttl = any(bytes(a).upper() == b"ABSTTL" for a in args[4:])
    when = ttl if absttl else ttl + now_ms
    if ttl and when <= now_ms:
        return [b"DEL", args[1]]
    if not ttl or absttl:
        return list(args)
    return [b"RESTORE", args[1], b"%d" % when, *args[3:], b"ABSTTL"]


def _expire(args: Sequence[bytes], now_ms: int, unit: int, relative: bool) -> list[bytes]:
    """PEXPIREAT key abs-ms [flags]; DEL when the deadline is already past."""
    when = int(args[2]) * unit + (now_ms if relative else 0)
    if when <= now_ms:
        return [b"DEL", args[1]]
    return [b"PEXPIREAT", args[1], b"%d" % when, *args[3:]]


def _set(args: Sequence[bytes], now_ms: int) -> list[bytes]:
    """SET with an expiry option -> SET key value PXAT ms; otherwise drop GET only."""
    rest = list(args[3:])
    for i, opt in enumerate(rest[:-1]):
        unit = _SET_UNIT.get(bytes(opt).upper())
        if unit is not None:
            when = int(rest[i + 1]) * unit[0] + (now_ms if unit[1] else 0)
            return [b"SET", args[1], args[2], b"PXAT", b"%d" % when]
    return [b"SET", args[1], args[2], *(a for a in rest if bytes(a).upper() != b"GET")]


def _getex(args: Sequence[bytes], now_ms: int) -> list[list[bytes]]:
    """GETEX is a write only with an option; it logs as the expire command it amounts to."""
    if len(args) < 3:
        return []
    opt = bytes(args[2]).upper()
    if opt == b"PERSIST":
        return [[b"PERSIST", args[1]]]
    unit, relative = _SET_UNIT[opt]
    when = int(args[3]) * unit + (now_ms if relative else 0)
    return [[b"PEXPIREAT", args[1], b"%d" % when]] if when > now_ms else [[b"DEL", args[1]]]


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------

class _Truncated(Exception):
    """Internal: EOF inside a command."""


#: ``loader(fh, name)``: load the RDB stream at ``fh``'s position, leave ``fh`` after it.
RdbLoader = Callable[[BinaryIO, str], None]


def read_aof_file(path: str, name: str, truncate_tail: bool = False,
                  annotations: bool = False,
                  rdb: RdbLoader | None = None) -> Iterator[list[bytes]]:
    """Yield the commands of one AOF file; ``#`` annotation lines are skipped, or with
    ``annotations`` yielded as ``[ANNOTATION, text without '#' and CRLF]``.  A file that starts
    with an RDB preamble (``REDIS``) is handed to ``rdb`` first (without one, its keys are
    yielded as ``RESTORE key ttl payload [ABSTTL]`` commands), and what follows it is read as
    commands, as Redis's ``loadSingleAppendOnlyFile``.

    A batch annotation (:func:`batch_annotation`) announces how many bytes its batch takes: a
    batch cut short by the end of the file is a torn tail from its annotation on, so a batch
    is loaded whole or not at all (Redis, which skips annotations, cuts per command).

    A transaction is yielded whole (MULTI ... EXEC, each command in turn) only once its EXEC is
    read, so a MULTI left open at EOF is reverted as Redis does.  EOF inside a command: with
    ``truncate_tail`` (``aof-load-truncated yes``, last file only) the file is cut back to the
    end of the last complete command with a warning; otherwise :class:`AofTruncatedError`.
    Bad bytes raise :class:`AofCorruptError` with file and offset.  Commands already yielded
    before an error were valid; the caller must abort the load anyway, as Redis exits.
    """
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise AofError(f"can't open the append only file {name}: {exc}") from exc
    with fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            start = 0
            if fh.read(5) == b"REDIS":
                fh.seek(0)
                # Redis 7: a .base.rdb, or an old single file's RDB preamble.
                if rdb is not None:
                    rdb(fh, name)
                else:
                    yield from _rdb_as_commands(fh, name)
                start = fh.tell()
            else:
                fh.seek(0)
            valid = yield from _read_commands(fh, name, size, annotations, start)
        except OSError as exc:
            raise AofError(f"error reading the append only file {name}: {exc}") from exc
    if valid < size:
        _cut_tail(path, name, valid, truncate_tail)


def _rdb_as_commands(fh: BinaryIO, name: str) -> Iterator[list[bytes]]:
    """The keys of an RDB preamble as commands: ``RESTORE key ttl payload [ABSTTL]`` (for a
    reader that replays commands and has no use for the keys themselves)."""
    from shardis.persist.dump import dump_payload
    from shardis.persist.rdb import RdbError, RdbReader

    try:
        for key, value, expire_ms in RdbReader(fh):
            ttl = [b"0"] if expire_ms is None else [b"%d" % expire_ms]
            yield [b"RESTORE", key, *ttl, dump_payload(value),
                   *([b"ABSTTL"] if expire_ms is not None else [])]
    except RdbError as exc:
        raise AofError(f"bad RDB preamble in the AOF file {name}: {exc}") from None


def _read_commands(fh, name: str, size: int, annotations: bool,
                   start: int = 0) -> Iterator[list[bytes]]:
    """Yield commands; return the offset after the last complete one (transactions whole)."""
    valid = start
    multi: list[list[bytes]] | None = None
    while True:
        try:
            args = _read_one(fh, name, size)
        except _Truncated:
            return valid
        if args is None:
            return valid
        if args[0] == ANNOTATION:
            length = batch_bytes(args[1])
            if length > size - fh.tell():
                return valid  # a torn batch: cut from its annotation on
            if annotations:
                yield args
            if not length and multi is None:
                valid = fh.tell()  # a whole batch's annotation counts once its batch does
            continue
        cmd = args[0].upper()
        if cmd == b"MULTI":
            multi = []
        if multi is None:
            yield args
            valid = fh.tell()
            continue
        multi.append(args)
        if cmd == b"EXEC":
            yield from multi
            multi = None
            valid = fh.tell()


def _read_one(fh, name: str, size: int) -> list[bytes] | None:
    """One command; None at a clean EOF, ``[ANNOTATION, text]`` for an annotation line."""
    offset = fh.tell()
    line = fh.readline(LINE_MAX)
    if not line:
        return None
    if line.startswith(b"#"):
        if line.endswith(b"\n"):
            return [ANNOTATION, line[1:].rstrip(b"\r\n")]
        if len(line) < LINE_MAX:
            raise _Truncated
        raise AofCorruptError(name, offset, "Bad file format: annotation line too long")
    argc = _header(line, b"*", name, offset)
    if argc < 1:
        raise AofCorruptError(name, offset, "Bad file format: empty command")
    args = []
    for _ in range(argc):
        offset = fh.tell()
        length = _header(fh.readline(LINE_MAX), b"$", name, offset)
        if length > size - fh.tell():
            raise _Truncated  # a declared length past EOF: never allocate it
        data = fh.read(length + 2)
        if len(data) < length + 2:
            raise _Truncated
        if data[-2:] != b"\r\n":
            raise AofCorruptError(name, fh.tell() - 2, "Bad file format: expected CRLF")
        args.append(data[:-2])
    return args


_HEADER = re.compile(rb"(-?\d{1,19})\r\n\Z")


def _header(line: bytes, kind: bytes, name: str, offset: int) -> int:
    """Parse ``*N\\r\\n`` or ``$N\\r\\n``; EOF mid-line is truncation, anything else corruption."""
    if not line.endswith(b"\n"):
        if len(line) < LINE_MAX:
            raise _Truncated
        raise AofCorruptError(name, offset, "Bad file format: header line too long")
    match = _HEADER.match(line, 1)
    if line[:1] != kind or match is None:
        raise AofCorruptError(name, offset, f"Bad file format: expected '{kind.decode()}' header")
    value = int(match.group(1))
    if value < 0:
        raise AofCorruptError(name, offset, "Bad file format: negative length")
    return value


def _cut_tail(path: str, name: str, valid: int, allowed: bool) -> None:
    """``aof-load-truncated yes``: cut the incomplete tail of the last file, loudly."""
    if not allowed:
        raise AofTruncatedError(name, valid, "Unexpected end of file")
    log.warning("!!! Warning: short read while loading the AOF file %s: truncating it at "
                "offset %d !!!", name, valid)
    try:
        os.truncate(path, valid)
    except OSError as exc:
        raise AofError(f"error truncating the AOF file {name}: {exc}") from exc
