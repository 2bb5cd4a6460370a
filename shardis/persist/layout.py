"""The data directory's own small manifest: how many workers its data belongs to.

Keys are spread over workers by slot, so each worker's files hold the keys of *its* slots
for one worker count.  Started with another ``--workers``, the same files would load into
workers that do not own those keys: reads would miss them and writes would duplicate them.
``DIR/shardis.manifest`` records the worker count and the layout's format version; a start
with another count is refused before any worker loads anything.

A ``flock`` on the data directory itself tells the offline tools (``shardis export-rdb``,
``reshard``: ``shardis.persist.tools``) whether a server uses it: every worker holds a shared
lock while it runs, and a tool takes it exclusively, so a tool never reads files that a live
worker is writing, and no worker starts while a tool rewrites the dir.  Locking the
directory (not a lock file) creates nothing, even in a read-only dir, and flock locks die
with their process: a crashed server leaves no stale lock behind.
``DIR/reshard.state`` exists only while ``shardis reshard`` swaps layouts: a start is refused
until the tool has finished (running it again finishes the swap).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re

log = logging.getLogger("shardis.layout")

MANIFEST = "shardis.manifest"
RESHARD_STATE = "reshard.state"
FORMAT_VERSION = 1
_WORKER_DIR = re.compile(r"worker-(\d+)\Z")
#: the lock a worker holds for its whole life (kept referenced so it is never closed).
_held: list[int] = []


class LayoutError(Exception):
    """The data directory belongs to another layout; the message says what to do."""


def check_and_record(data_dir: str, workers: int) -> None:
    """Refuse a data dir whose files were made for another worker count; record ours for the
    next start.  A dir without data files takes any count (an old manifest alone binds
    nothing: there is nothing to mis-route)."""
    check_no_reshard(data_dir)
    holding = _count_worker_dirs(data_dir)
    recorded = read_worker_count(data_dir) if holding else None
    if recorded is None:
        recorded = holding or None
    if recorded is not None and recorded != workers:
        raise LayoutError(
            f"the data in {data_dir} belongs to {recorded} workers, not {workers}: start "
            f"with --workers {recorded}, or change the data's worker count with "
            f"`shardis reshard --dir {data_dir} --workers {workers}` (server stopped)")
    write_manifest(data_dir, workers)


def check_no_reshard(data_dir: str) -> None:
    """Refuse a dir whose layout swap (``shardis reshard``) was interrupted: its worker
    folders may be half old, half new until the tool has finished."""
    if os.path.exists(os.path.join(data_dir, RESHARD_STATE)):
        raise LayoutError(
            f"{data_dir} is in the middle of a `shardis reshard` that did not finish: run "
            f"`shardis reshard --dir {data_dir} --workers N` again to complete it")


def lock_for_worker(data_dir: str) -> None:
    """A worker's start: hold a shared lock on ``DIR`` until the process ends.

    Raises :class:`LayoutError` while a tool holds the dir (or a reshard is unfinished).  On a
    file system without flock (some network mounts) the worker starts unlocked: the lock is
    advisory, its absence must not keep a server down."""
    check_no_reshard(data_dir)
    try:
        os.makedirs(data_dir, exist_ok=True)  # the worker writes its files there anyway
        fd = _open_lock(data_dir)
    except OSError:
        return  # not ours to lock (no access): the worker will say what it cannot do
    locked = _flock(fd, fcntl.LOCK_SH)
    if locked is False:
        raise LayoutError(f"{data_dir} is being rewritten by a shardis tool (export-rdb, "
                          "import-rdb or reshard): start the server once it has finished")
    if locked:
        _held.append(fd)


def _flock(fd: int, mode: int) -> bool | None:
    """Take ``mode`` without waiting: True; False if another process holds it; None where the
    file system has no flock (logged).  The fd is closed unless locked."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        os.close(fd)
        return False
    except OSError as exc:
        os.close(fd)
        log.warning("cannot lock the data dir (%s): make sure no tool and no second server "
                    "uses it", exc.strerror)
        return None


def lock_for_tool(data_dir: str) -> int:
    """An offline tool's start: the exclusive lock (an fd to close when done, -1 where
    flock does not work), or :class:`LayoutError` if a server still runs on the dir."""
    try:
        fd = _open_lock(data_dir)
    except OSError as exc:
        raise LayoutError(f"cannot open {data_dir}: {exc.strerror}") from None
    locked = _flock(fd, fcntl.LOCK_EX)
    if locked is False:
        raise LayoutError(f"a shardis server (or another tool) is using {data_dir}: stop it "
                          "first (the tools work on a stopped server's files)")
    return fd if locked else -1


def _open_lock(data_dir: str) -> int:
    return os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def read_worker_count(data_dir: str) -> int | None:
    path = os.path.join(data_dir, MANIFEST)
    try:
        with open(path, encoding="ascii") as fh:
            fields = dict(line.split(None, 1) for line in fh.read().splitlines() if line.strip())
        if int(fields["format"]) > FORMAT_VERSION:
            raise LayoutError(f"{path} is of a newer shardis (format {fields['format']})")
        return int(fields["workers"])
    except FileNotFoundError:
        return None
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise LayoutError(f"{path} is not a shardis data manifest ({exc})") from None


def _count_worker_dirs(data_dir: str) -> int:
    """Data written before the manifest existed: one folder per worker that wrote files."""
    try:
        names = os.listdir(data_dir)
    except FileNotFoundError:
        return 0
    return sum(1 for name in names if _WORKER_DIR.match(name)
               and os.listdir(os.path.join(data_dir, name)))


def write_manifest(data_dir: str, workers: int) -> None:
    """Record ``workers`` atomically (temp file, fsync, rename)."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, MANIFEST)
    temp = path + ".tmp"
    with open(temp, "w", encoding="ascii") as fh:
        fh.write(f"format {FORMAT_VERSION}\nworkers {workers}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
