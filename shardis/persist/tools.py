"""Offline data tools: ``shardis export-rdb``, ``import-rdb`` and ``reshard``.

They move data between a shardis data dir (``DIR/worker-<i>/``, one shard per worker, see
``shardis.persist.layout``) and one Redis RDB file, or between worker counts.  They work on a
*stopped* server's files: a tool holds a ``flock`` on DIR exclusively (running workers hold
it shared, see ``layout.lock_for_worker``), so it never reads files a live worker is appending to, and no worker starts on a
dir while a tool rewrites it.

What a shard holds is what its worker would load at start: the AOF folder when there is one
(``appendonly yes`` data; the base and incr files replayed into a :class:`Shard`, as the
worker replays them), else ``dump.rdb``, streamed key by key.  Keys whose TTL has passed are
dropped, as a loading master drops them.  A key found on a worker that does not own its slot
(which a server never writes) stops the tool: the worker count is wrong (see
:func:`dataset`).

A data dir's worker count comes from its manifest; workers run by hand (``shardis worker``,
as in deploy/) write none, and then the tools take it from ``--workers`` or the folders.

Everything written goes to a temporary name, is fsynced and renamed into place, so a crash
leaves the previous files; ``reshard`` swaps whole layouts in a recoverable order (see
:func:`reshard`).  Every type the RDB codec carries moves, streams included.

The RESIZEDB hint of files written here is 0 (the key count is not known before the keys are
streamed); Redis treats it as a sizing hint only.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from shardis.persist import layout
from shardis.persist.aof import (
    AofCorruptError,
    AofDir,
    AofError,
    AofTruncatedError,
    encode_command,
    fsync_dir,
    read_aof_file,
)
from shardis.persist.rdb import RdbError, RdbReader, RdbWriter
from shardis.slots import SlotMap
from shardis.worker.types import unpacked

log = logging.getLogger("shardis.tools")

Entry = tuple[bytes, object, "int | None"]

#: Progress lines come every this many keys (and once per shard).
PROGRESS_EVERY = 100_000
DBFILENAME = "dump.rdb"
APPENDDIRNAME = "appendonlydir"
AOF_FILENAME = "appendonly.aof"
SOURCES = ("auto", "aof", "rdb")
#: ``reshard``'s staging folder (the new layout) and the old layout's resting place.
STAGING, RETIRED = "reshard.new", "reshard.old"
_BUFFER = 1 << 20
_REPLAY_CHUNK = 1024


class ToolError(Exception):
    """A failure the user can act on: the CLI prints the message and exits with 1."""


@dataclass(frozen=True)
class Files:
    """A worker's file names, as the server's ``--dbfilename`` / ``--appenddirname`` set them."""

    dbfilename: str = DBFILENAME
    appenddirname: str = APPENDDIRNAME


@dataclass
class Summary:
    """What a tool did, for its last log line."""

    keys: int = 0
    expired: int = 0
    other_dbs: int = 0
    per_worker: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def line(self, what: str) -> str:
        return (f"{what} done keys={self.keys} expired_dropped={self.expired} "
                f"other_db_keys_skipped={self.other_dbs} "
                f"per_worker={','.join(map(str, self.per_worker)) or '-'} "
                f"elapsed={time.monotonic() - self.started:.2f}s")


class Progress:
    """Counts keys and logs ``progress`` every :data:`PROGRESS_EVERY` of them."""

    def __init__(self, what: str, every: int | None = None) -> None:
        self.what, self.every = what, every or PROGRESS_EVERY
        self.count = 0
        self.started = time.monotonic()

    def tick(self) -> None:
        self.count += 1
        if self.count % self.every == 0:
            log.info("progress op=%s keys=%d elapsed=%.2fs", self.what, self.count,
                     time.monotonic() - self.started)


# Reading a data dir -----------------------------------------------------------------------------
def worker_count(data_dir: str, given: int | None = None) -> int:
    """How many workers the data in ``data_dir`` belongs to: ``given`` (``--workers``), which
    must agree with the manifest if there is one; else the manifest; else the folders (workers
    run by hand, as in deploy/, write no manifest: a last worker that never wrote a file
    would be missed, so the tools then check every key's slot, see :func:`dataset`)."""
    if not os.path.isdir(data_dir):
        raise ToolError(f"{data_dir} is not a directory")
    try:
        layout.check_no_reshard(data_dir)
        recorded = layout.read_worker_count(data_dir)
    except layout.LayoutError as exc:
        raise ToolError(str(exc)) from None
    indexes = [int(name[7:]) for name in os.listdir(data_dir)
               if name.startswith("worker-") and name[7:].isdigit()]
    if given is not None:
        if given < 1:
            raise ToolError("--workers must be at least 1")
        if recorded is not None and recorded != given:
            raise ToolError(f"{data_dir} holds the data of {recorded} workers (its "
                            f"shardis.manifest), not {given}")
        recorded = given
    if recorded is None:
        if not indexes:
            raise ToolError(f"{data_dir} holds no shardis data (no shardis.manifest, no "
                            "worker-<index> folders)")
        return max(indexes) + 1
    beyond = [i for i in indexes if i >= recorded]
    if beyond:
        raise ToolError(f"{data_dir}/worker-{beyond[0]} is beyond the data's {recorded} "
                        "workers: the dir is inconsistent")
    return recorded


def shard_source(worker_dir: str, source: str = "auto", files: Files = Files()) -> str | None:
    """Which file a worker would load: ``"aof"``, ``"rdb"`` or None (it starts empty).

    ``auto`` is the AOF when its manifest exists (the data of an ``appendonly yes`` server,
    which ignores dump.rdb), else dump.rdb; ``aof`` / ``rdb`` force one (a server that ran
    with appendonly yes and later with no has both, and only its operator knows which is
    newer)."""
    has_aof = os.path.exists(os.path.join(worker_dir, files.appenddirname,
                                          AOF_FILENAME + ".manifest"))
    has_rdb = os.path.exists(os.path.join(worker_dir, files.dbfilename))
    if source in ("auto", "aof") and has_aof:
        return "aof"
    if source in ("auto", "rdb") and has_rdb:
        return "rdb"
    return None


def read_shard(worker_dir: str, index: int, kind: str, now_ms: int, summary: Summary,
               files: Files = Files()) -> Iterator[Entry]:
    """The live keys of one shard (``kind`` from :func:`shard_source`), expired ones counted
    in ``summary`` and left out."""
    entries = (_replay_aof(worker_dir, index, files.appenddirname) if kind == "aof"
               else _stream_rdb(os.path.join(worker_dir, files.dbfilename)))
    for key, value, expire_ms in entries:
        if expire_ms is not None and expire_ms <= now_ms:
            summary.expired += 1
            continue
        yield key, value, expire_ms


def _stream_rdb(path: str, skip_other_dbs: bool = False,
                summary: Summary | None = None) -> Iterator[Entry]:
    try:
        with open(path, "rb", buffering=_BUFFER) as fh:
            reader = RdbReader(fh, skip_other_dbs)
            yield from reader
            if summary is not None:
                summary.other_dbs += reader.skipped
            if reader.functions:
                log.warning("function libraries not imported count=%d file=%s (shardis has "
                            "no FUNCTION)", len(reader.functions), path)
    except RdbError as exc:
        raise ToolError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from None


def _replay_aof(worker_dir: str, index: int, appenddirname: str) -> Iterator[Entry]:
    """Replay the AOF into a fresh :class:`Shard`, as the worker does at start, without
    touching the files: a torn tail of the last file is left out (a starting worker would
    cut it off the file) rather than cut."""
    from shardis.worker.shard import Shard

    folder = AofDir(worker_dir, appenddirname)
    shard = Shard(index)
    chunk: list[tuple[int, list[bytes]]] = []
    try:
        manifest = folder.load_manifest()
        files = manifest.loaded_files() if manifest else []
        for position, info in enumerate(files):
            try:
                for args in read_aof_file(folder.file_path(info.name), info.name):
                    if bytes(args[0]).upper() not in (b"MULTI", b"EXEC", b"SELECT"):
                        chunk.append((2, args))
                    if len(chunk) >= _REPLAY_CHUNK:
                        shard.execute_batch(chunk)
                        chunk = []
            except AofTruncatedError as exc:
                if position != len(files) - 1:
                    raise
                log.warning("torn last command ignored file=%s offset=%d (the file is left "
                            "as it is)", exc.file, exc.offset)
        if chunk:
            shard.execute_batch(chunk)
    except AofCorruptError as exc:
        raise ToolError(f"{folder.path}: {exc} (repair it with redis-check-aof --fix "
                        f"{folder.manifest_path})") from None
    except AofError as exc:
        raise ToolError(f"{folder.path}: {exc}") from None
    db = shard.db
    db.tick()
    for key, value in db.data.items():
        yield key, unpacked(value), db.expires.get(key)


def dataset(data_dir: str, source: str, summary: Summary, count: int,
            files: Files = Files()) -> Iterator[Entry]:
    """Every live key of the ``count`` shards of a stopped server, one shard at a time
    (memory: one shard replayed from its AOF, or one key streamed from its RDB).

    A key on a worker that does not own its slot for ``count`` workers stops the tool: a
    server never writes one, so the count is wrong (folders copied from another layout, or
    a last worker without files when no manifest says the count), and going on would drop
    or duplicate keys."""
    slots = SlotMap(count)
    now_ms = int(time.time() * 1000)
    for index in range(count):
        worker_dir = os.path.join(data_dir, f"worker-{index}")
        kind = shard_source(worker_dir, source, files)
        started, keys = time.monotonic(), 0
        log.info("shard start worker=%d source=%s", index, kind or "none")
        if kind is None:
            continue
        _warn_if_rdb_newer(worker_dir, kind, source, files)
        for key, value, expire_ms in read_shard(worker_dir, index, kind, now_ms, summary,
                                                files):
            if slots.worker_of(key) != index:
                raise ToolError(
                    f"key {key[:200]!r} in {worker_dir} belongs to worker "
                    f"{slots.worker_of(key)} of {count}, not {index}: the data was not "
                    f"written for {count} workers (give the right count with --workers)")
            keys += 1
            yield key, value, expire_ms
        log.info("shard done worker=%d source=%s keys=%d elapsed=%.2fs", index, kind, keys,
                 time.monotonic() - started)


def _warn_if_rdb_newer(worker_dir: str, kind: str, source: str, files: Files) -> None:
    """Both files exist and dump.rdb is the newer: the server may have run with appendonly
    no since; say how to pick it."""
    if source != "auto" or kind != "aof":
        return
    rdb = os.path.join(worker_dir, files.dbfilename)
    folder = os.path.join(worker_dir, files.appenddirname)
    try:
        newest_aof = max(os.path.getmtime(os.path.join(folder, n)) for n in os.listdir(folder))
        if os.path.getmtime(rdb) > newest_aof:
            log.warning("%s is newer than the AOF in %s: the AOF is used (as a server with "
                        "appendonly yes would); pass --source rdb to use the snapshot",
                        rdb, folder)
    except (OSError, ValueError):
        pass


# Writing ------------------------------------------------------------------------------------------
class RdbOut:
    """One RDB file being written under a temporary name; :meth:`commit` makes it durable and
    renames it into place, :meth:`abort` removes it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.temp = os.path.join(os.path.dirname(path) or ".",
                                 f"temp-{os.getpid()}-{os.path.basename(path)}")
        self.fh: BinaryIO = open(self.temp, "wb", buffering=_BUFFER)
        self.writer = RdbWriter(self.fh)
        self.writer.begin(0, 0)
        self.keys = 0

    def add(self, key: bytes, value: object, expire_ms: int | None) -> None:
        try:
            self.writer.key(key, value, expire_ms)
        except RdbError:
            kind = type(value).__name__.removesuffix("Value").lower()
            raise ToolError(f"key {key[:200]!r} is a {kind}, which shardis's RDB codec cannot "
                            "write yet") from None
        self.keys += 1

    def commit(self) -> None:
        self.writer.end()
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.temp, self.path)
        fsync_dir(os.path.dirname(self.path) or ".")

    def abort(self) -> None:
        self.fh.close()
        try:
            os.unlink(self.temp)
        except OSError:
            pass


class AofBaseOut:
    """A worker's AOF folder whose base file restores every key (``RESTORE key ttl payload
    ABSTTL``, the payload as DUMP makes it), so a worker started with ``appendonly yes``
    loads the data; the worker adds its incr file at start, as after a rewrite."""

    def __init__(self, worker_dir: str, appenddirname: str = APPENDDIRNAME) -> None:
        from shardis.persist.aof import Manifest

        self.folder = AofDir(worker_dir, appenddirname, AOF_FILENAME)
        os.makedirs(self.folder.path, exist_ok=True)
        self.manifest = Manifest()
        self.info = self.manifest.new_base(AOF_FILENAME)
        self.fh = open(self.folder.file_path(self.info.name), "wb", buffering=_BUFFER)

    def add(self, key: bytes, value: object, expire_ms: int | None) -> None:
        from shardis.persist.dump import DumpError, dump_payload

        try:
            payload = dump_payload(value)
        except DumpError:
            kind = type(value).__name__.removesuffix("Value").lower()
            raise ToolError(f"key {key[:200]!r} is a {kind}, which shardis cannot write to an "
                            "AOF base yet") from None
        ttl = [b"%d" % expire_ms, payload, b"ABSTTL"] if expire_ms is not None else [b"0", payload]
        self.fh.write(encode_command([b"RESTORE", key, *ttl]))

    def commit(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        self.folder.write_manifest(self.manifest)

    def abort(self) -> None:
        self.fh.close()


class WorkerOut:
    """The files of one new worker: dump.rdb, and the AOF folder with ``appendonly``."""

    def __init__(self, worker_dir: str, appendonly: bool, files: Files = Files()) -> None:
        os.makedirs(worker_dir, exist_ok=True)
        self.parts: list[RdbOut | AofBaseOut] = [
            RdbOut(os.path.join(worker_dir, files.dbfilename))]
        if appendonly:
            self.parts.append(AofBaseOut(worker_dir, files.appenddirname))

    @property
    def keys(self) -> int:
        return self.parts[0].keys  # type: ignore[union-attr]

    def add(self, key: bytes, value: object, expire_ms: int | None) -> None:
        for part in self.parts:
            part.add(key, value, expire_ms)

    def commit(self) -> None:
        for part in self.parts:
            part.commit()

    def abort(self) -> None:
        for part in self.parts:
            part.abort()


def split_into(entries: Iterator[Entry], base_dir: str, workers: int, appendonly: bool,
               summary: Summary, what: str, files: Files = Files()) -> None:
    """Write ``entries`` as ``base_dir/worker-<i>/`` files, each key where its slot lives."""
    slots = SlotMap(workers)
    outs: list[WorkerOut] = []
    try:
        for index in range(workers):
            outs.append(WorkerOut(os.path.join(base_dir, f"worker-{index}"), appendonly, files))
        progress = Progress(what)
        for key, value, expire_ms in entries:
            outs[slots.worker_of(key)].add(key, value, expire_ms)
            progress.tick()
        for out in outs:
            out.commit()
    except BaseException:
        for out in outs:
            out.abort()
        raise
    summary.per_worker = [out.keys for out in outs]
    summary.keys = sum(summary.per_worker)


# The tools ----------------------------------------------------------------------------------------
def export_rdb(data_dir: str, out_path: str, source: str = "auto", force: bool = False,
               workers: int | None = None, files: Files = Files()) -> Summary:
    """Merge every shard of the stopped server at ``data_dir`` into one RDB v10 file
    (``workers``: the data's worker count when no manifest records it)."""
    if os.path.exists(out_path) and not force:
        raise ToolError(f"{out_path} exists: pass --force to replace it")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out_path))):
        raise ToolError(f"the folder of {out_path} does not exist")
    summary = Summary()
    count = worker_count(data_dir, workers)
    summary.per_worker = [0] * count
    with _tool_lock(data_dir):
        try:
            out = RdbOut(out_path)
        except OSError as exc:
            raise ToolError(f"cannot write {out_path}: {exc.strerror}") from None
        try:
            progress = Progress("export-rdb")
            slots = SlotMap(count)
            for key, value, expire_ms in dataset(data_dir, source, summary, count, files):
                out.add(key, value, expire_ms)
                summary.per_worker[slots.worker_of(key)] += 1
                progress.tick()
            out.commit()
        except BaseException:
            out.abort()
            raise
    summary.keys = out.keys
    return summary


def import_rdb(in_path: str, data_dir: str, workers: int, skip_other_dbs: bool = False,
               appendonly: bool = False, files: Files = Files()) -> Summary:
    """Split the RDB file at ``in_path`` (database 0) into a new data dir for ``workers``."""
    if workers < 1:
        raise ToolError("--workers must be at least 1")
    if not os.path.isfile(in_path):
        raise ToolError(f"{in_path} is not a file")
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ToolError(f"{data_dir} exists and is not a directory")
    if os.path.isdir(data_dir) and os.listdir(data_dir):
        raise ToolError(f"{data_dir} is not empty: import-rdb writes into a new or empty dir "
                        "only")
    summary = Summary()
    now_ms = int(time.time() * 1000)

    def live() -> Iterator[Entry]:
        for key, value, expire_ms in _stream_rdb(in_path, skip_other_dbs, summary):
            if expire_ms is not None and expire_ms <= now_ms:
                summary.expired += 1
                continue
            yield key, value, expire_ms

    os.makedirs(data_dir, exist_ok=True)
    with _tool_lock(data_dir):
        try:
            split_into(live(), data_dir, workers, appendonly, summary, "import-rdb", files)
        except BaseException:
            _remove_worker_dirs(data_dir, workers)
            raise
        layout.write_manifest(data_dir, workers)
    return summary


def reshard(data_dir: str, workers: int, source: str = "auto", appendonly: bool | None = None,
            from_workers: int | None = None, files: Files = Files()) -> Summary:
    """Rewrite a stopped server's data dir for ``workers`` workers.

    The procedure, so that a crash at any point leaves a usable layout:

    1. Build the new layout in ``DIR/reshard.new/`` (worker folders, manifest); the old one
       stays untouched.  A crash here: the old layout is used, the next run clears the
       staging folder.
    2. Write ``DIR/reshard.state`` (fsynced, atomic): the commit point.  From here on the
       server refuses to start (``layout.check_no_reshard``) until the swap is complete.
    3. Move the old ``worker-*`` folders and manifest into ``DIR/reshard.old/``, mark the
       state ``move``, move the new ones into place, delete ``reshard.state``, then
       ``reshard.old``.  Every step is a rename that the next run of the tool repeats or
       skips (:func:`finish_reshard`), so a crash here ends with the new layout once the
       tool is run again.

    ``appendonly``: whether to write AOF folders too (None: if any old shard was AOF data);
    ``from_workers``: the data's worker count when no manifest records it.
    """
    if workers < 1:
        raise ToolError("--workers must be at least 1")
    if not os.path.isdir(data_dir):
        raise ToolError(f"{data_dir} is not a directory")
    with _tool_lock(data_dir):
        finish_reshard(data_dir)
        old = worker_count(data_dir, from_workers)
        if appendonly is None:
            appendonly = any(
                shard_source(os.path.join(data_dir, f"worker-{i}"), source, files) == "aof"
                for i in range(old))
        summary = Summary()
        staging = os.path.join(data_dir, STAGING)
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        try:
            split_into(dataset(data_dir, source, summary, old, files), staging, workers,
                       appendonly, summary, "reshard", files)
            layout.write_manifest(staging, workers)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(staging)
        _write_state(data_dir, "commit")
        log.info("reshard committing from=%d to=%d appendonly=%s", old, workers,
                 "yes" if appendonly else "no")
        finish_reshard(data_dir)
    return summary


def finish_reshard(data_dir: str) -> None:
    """Complete (or clean up after) a reshard that stopped midway; idempotent.

    ``reshard.state`` says how far the swap got: ``commit`` (old layout files may still be
    in DIR: every layout file there is old, nothing new has moved yet), then ``move`` (the
    old ones are all in ``reshard.old``: what is in DIR now is new)."""
    staging = os.path.join(data_dir, STAGING)
    retired = os.path.join(data_dir, RETIRED)
    state_path = os.path.join(data_dir, layout.RESHARD_STATE)
    try:
        with open(state_path, encoding="ascii") as fh:
            state = fh.readline().strip()
    except FileNotFoundError:
        shutil.rmtree(staging, ignore_errors=True)  # never committed: the old layout stands
        shutil.rmtree(retired, ignore_errors=True)
        return
    log.info("reshard swapping layouts dir=%s state=%s", data_dir, state)
    if state == "commit":
        os.makedirs(retired, exist_ok=True)
        for name in os.listdir(data_dir):
            if _is_layout_file(name):
                os.replace(os.path.join(data_dir, name), os.path.join(retired, name))
        fsync_dir(retired)
        _write_state(data_dir, "move")
    for name in os.listdir(staging) if os.path.isdir(staging) else []:
        os.replace(os.path.join(staging, name), os.path.join(data_dir, name))
    fsync_dir(data_dir)
    os.unlink(state_path)
    fsync_dir(data_dir)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)


def _is_layout_file(name: str) -> bool:
    return name == layout.MANIFEST or (name.startswith("worker-") and name[7:].isdigit())


def _write_state(data_dir: str, state: str) -> None:
    path = os.path.join(data_dir, layout.RESHARD_STATE)
    temp = path + ".tmp"
    with open(temp, "w", encoding="ascii") as fh:
        fh.write(state + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
    fsync_dir(data_dir)


def _remove_worker_dirs(data_dir: str, workers: int) -> None:
    for index in range(workers):
        shutil.rmtree(os.path.join(data_dir, f"worker-{index}"), ignore_errors=True)


class _tool_lock:
    """``with _tool_lock(dir):`` the exclusive lock of :func:`layout.lock_for_tool`."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.fd = -1

    def __enter__(self) -> None:
        try:
            self.fd = layout.lock_for_tool(self.data_dir)
        except layout.LayoutError as exc:
            raise ToolError(str(exc)) from None

    def __exit__(self, *_: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
