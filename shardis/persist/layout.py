"""The data directory's own small manifest: how many workers its data belongs to.

Keys are spread over workers by slot, so each worker's files hold the keys of *its* slots
for one worker count.  Started with another ``--workers``, the same files would load into
workers that do not own those keys: reads would miss them and writes would duplicate them.
``DIR/shardis.manifest`` records the worker count and the layout's format version; a start
with another count is refused before any worker loads anything.
"""

from __future__ import annotations

import os
import re

MANIFEST = "shardis.manifest"
FORMAT_VERSION = 1
_WORKER_DIR = re.compile(r"worker-(\d+)\Z")


class LayoutError(Exception):
    """The data directory belongs to another layout; the message says what to do."""


def check_and_record(data_dir: str, workers: int) -> None:
    """Refuse a data dir whose files were made for another worker count; record ours for the
    next start.  A dir without data files takes any count (an old manifest alone binds
    nothing: there is nothing to mis-route)."""
    holding = _count_worker_dirs(data_dir)
    recorded = read_worker_count(data_dir) if holding else None
    if recorded is None:
        recorded = holding or None
    if recorded is not None and recorded != workers:
        raise LayoutError(
            f"the data in {data_dir} belongs to {recorded} workers, not {workers}: start "
            f"with --workers {recorded} (changing the worker count of existing data is not "
            "supported yet)")
    _write(data_dir, workers)


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


def _write(data_dir: str, workers: int) -> None:
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, MANIFEST)
    temp = path + ".tmp"
    with open(temp, "w", encoding="ascii") as fh:
        fh.write(f"format {FORMAT_VERSION}\nworkers {workers}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
