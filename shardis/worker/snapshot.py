"""RDB snapshots of one worker: SAVE, BGSAVE, the ``save`` rules, and loading at start.

Each worker writes its own keyspace to ``DIR/worker-<index>/<dbfilename>`` (``dump.rdb``), an
RDB version 10 file that ``redis-check-rdb`` accepts and a Redis 7.0 server loads.  A file is
always written to a temporary name, fsynced and renamed over the old one, so a crash leaves
either the previous snapshot or the new one, never half of one.

* SAVE writes in the worker's loop (commands wait, as in Redis).
* BGSAVE forks: the child writes the keyspace as it was at the fork and ``os._exit``s; the
  worker goes on serving and reaps the child on its housekeeping tick (``waitpid(WNOHANG)``).
  ``gc.freeze()`` before the fork moves every object into the permanent generation, so the
  parent's garbage collector does not write to (and copy) every page while the child runs.
* The ``save`` rules (``3600 1 300 100 60 10000``: after N seconds if at least M changes) are
  checked on the housekeeping tick against the changes made since the last successful save.
* Every type is written, streams (with their consumer groups) included, as Redis 7.0.15
  writes it.
"""

from __future__ import annotations

import gc
import logging
import os
import time

from shardis.errors import ReplyError
from shardis.persist.rdb import RdbError, RdbReader, RdbWriter

log = logging.getLogger("shardis.worker")

#: A loading worker logs its progress every this many keys.
PROGRESS_EVERY = 100_000
#: After a failed background save, the save rules wait this long before trying again (Redis's
#: CONFIG_BGSAVE_RETRY_DELAY).
RETRY_DELAY_S = 5
#: Buffer of the file being written.
_BUFFER = 1 << 20


def write_snapshot(db: object, path: str) -> int:
    """Write the keyspace ``db`` to ``path`` atomically; the number of keys written.

    Raises ``OSError`` (or :class:`RdbError` for a value the codec cannot write, which no
    stored type is); the temporary file is removed either way and the old snapshot is left as
    it was.
    """
    data, expires = db.data, db.expires  # type: ignore[attr-defined]
    folder = os.path.dirname(path) or "."
    temp = os.path.join(folder, f"temp-{os.getpid()}.rdb")
    try:
        with open(temp, "wb", buffering=_BUFFER) as fh:
            writer = RdbWriter(fh)
            writer.begin(len(data), len(expires))
            key_out = writer.key
            get_expire = expires.get
            for key, value in data.items():
                key_out(key, value, get_expire(key))
            writer.end()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return len(data)


class Snapshots:
    """The snapshot state of one worker (what INFO persistence reports)."""

    def __init__(self, dir: str, filename: str = "dump.rdb",
                 rules: list[tuple[int, int]] | None = None) -> None:
        self.dir = dir
        self.path = os.path.join(dir, filename)
        self.rules = list(rules or [])
        #: Unix time of the last successful save (Redis starts it at the server's start).
        self.lastsave = int(time.time())
        self.last_try = 0.0
        self.saves = 0
        self.last_status_ok = True
        self.last_bgsave_time_sec = -1
        #: the child of the running BGSAVE, when it started, the dirty count it covers.
        self.child_pid = 0
        self.child_started = 0.0
        self.dirty_at_fork = 0
        self.loaded_keys = 0
        self.loaded_expired = 0

    # Saving -----------------------------------------------------------------------------------
    def save(self, shard: object) -> None:
        """SAVE: write now; ReplyError when it cannot."""
        if self.child_pid:
            raise ReplyError("ERR Background save already in progress")
        self.last_try = time.time()
        try:
            os.makedirs(self.dir, exist_ok=True)
            count = write_snapshot(shard.db, self.path)  # type: ignore[attr-defined]
        except (RdbError, OSError) as exc:
            self.last_status_ok = False
            log.warning("Error saving DB on disk: %s", exc)
            raise ReplyError(f"ERR {exc}") from None
        self.done(shard, shard.stats.dirty)  # type: ignore[attr-defined]
        log.info("DB saved on disk: %d keys in %s", count, self.path)

    def done(self, shard: object, covered: int) -> None:
        stats = shard.stats  # type: ignore[attr-defined]
        stats.dirty = max(stats.dirty - covered, 0)
        self.lastsave = int(time.time())
        self.saves += 1
        self.last_status_ok = True

    def bgsave(self, shard: object) -> None:
        """BGSAVE: fork a child that writes the file; ReplyError if one is running."""
        if self.child_pid:
            raise ReplyError("ERR Background save already in progress")
        os.makedirs(self.dir, exist_ok=True)
        self.last_try = time.time()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as exc:
            gc.unfreeze()
            self.last_status_ok = False
            raise ReplyError(f"ERR Can't save in background: fork: {exc}") from None
        if pid == 0:  # the child: write and leave without running any of the parent's cleanup
            code = 1
            try:
                write_snapshot(shard.db, self.path)  # type: ignore[attr-defined]
                code = 0
            except BaseException as exc:  # noqa: BLE001 - the child must always _exit
                try:
                    log.warning("Background saving error: %s", exc)
                except BaseException:  # noqa: BLE001
                    pass
            os._exit(code)
        self.child_pid = pid
        self.child_started = time.monotonic()
        self.dirty_at_fork = shard.stats.dirty  # type: ignore[attr-defined]
        log.info("Background saving started by pid %d", pid)

    def reap(self, shard: object, block: bool = False) -> None:
        """If the BGSAVE child has ended, record how it went."""
        if not self.child_pid:
            return
        try:
            pid, status = os.waitpid(self.child_pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.child_pid, 1 << 8
        if pid == 0:
            return
        self.child_pid = 0
        gc.unfreeze()
        self.last_bgsave_time_sec = round(time.monotonic() - self.child_started)
        if os.waitstatus_to_exitcode(status) == 0:
            self.done(shard, self.dirty_at_fork)
            log.info("Background saving terminated with success")
        else:
            self.last_status_ok = False
            log.warning("Background saving error")

    def tick(self, shard: object) -> None:
        """Housekeeping: reap a finished child, then apply the save rules."""
        if self.child_pid:
            self.reap(shard)
            return
        if not self.rules:
            return
        dirty = shard.stats.dirty  # type: ignore[attr-defined]
        if not dirty:
            return
        now = time.time()
        if not self.last_status_ok and now - self.last_try <= RETRY_DELAY_S:
            return
        for seconds, changes in self.rules:
            if dirty >= changes and now - self.lastsave > seconds:
                log.info("%d changes in %d seconds. Saving...", changes, seconds)
                try:
                    self.bgsave(shard)
                except ReplyError as exc:
                    log.warning("%s", exc.message)
                return

    def info(self, shard: object) -> dict[bytes, object]:
        running = bool(self.child_pid)
        return {
            b"rdb_changes_since_last_save": shard.stats.dirty,  # type: ignore[attr-defined]
            b"rdb_bgsave_in_progress": int(running),
            b"rdb_last_save_time": self.lastsave,
            b"rdb_last_bgsave_ok": int(self.last_status_ok),
            b"rdb_last_bgsave_time_sec": self.last_bgsave_time_sec,
            b"rdb_current_bgsave_time_sec":
                round(time.monotonic() - self.child_started) if running else -1,
            b"rdb_saves": self.saves,
            b"rdb_last_load_keys_expired": self.loaded_expired,
            b"rdb_last_load_keys_loaded": self.loaded_keys,
        }

    def close(self, shard: object) -> None:
        """At shutdown: wait for a running child so no snapshot is left half-written."""
        if self.child_pid:
            self.reap(shard, block=True)

    # Loading ----------------------------------------------------------------------------------
    def load(self, shard: object) -> int:
        """Load ``dump.rdb`` if there is one (keys already expired are skipped); keys loaded.

        Raises :class:`RdbError` on a corrupt file: the caller must exit.
        """
        if not os.path.exists(self.path):
            return 0
        started, cpu = time.monotonic(), time.process_time()
        db = shard.db  # type: ignore[attr-defined]
        db.tick()
        with open(self.path, "rb", buffering=_BUFFER) as fh:
            gc_was_on = gc.isenabled()
            gc.disable()  # loading makes no cycles; collections would only rescan the keys
            try:
                loaded, expired = _fill(db, RdbReader(fh), self.path)
            finally:
                if gc_was_on:
                    gc.enable()
        db.touched.clear()
        db.deadline_log.clear()
        shard.stats.dirty = 0  # type: ignore[attr-defined]
        self.loaded_keys, self.loaded_expired = loaded, expired
        log.info("DB loaded from disk: %d keys (%d expired skipped) from %s in %.3f seconds "
                 "(%.3f s of CPU)", loaded, expired, self.path, time.monotonic() - started,
                 time.process_time() - cpu)
        return loaded


def _fill(db: object, entries: RdbReader, path: str) -> tuple[int, int]:
    """Store every entry of an RDB in ``db`` (keys already expired are skipped); (keys
    loaded, keys expired).

    This runs before the worker serves anyone: no client watches a key, none is blocked and
    no notification can be due, so ``Keyspace.set``'s bookkeeping reduces to the value and
    its access time, which the reader stores itself for the small keys without a TTL that
    it parses in place (``RdbReader.into``) and this loop for the others; a key the file holds twice goes
    through ``Keyspace.set``, which replaces it as before."""
    data, atime = db.data, db.atime  # type: ignore[attr-defined]
    clock, now = db.clock, db.now_ms  # type: ignore[attr-defined]
    set_deadline = db.set_deadline  # type: ignore[attr-defined]
    entries.into(data, atime, clock)
    start = len(data)
    expired = 0
    progress = start + PROGRESS_EVERY
    for key, value, expire_ms in entries:
        if expire_ms is not None:
            if expire_ms <= now:
                expired += 1
                continue
            if key in data:
                db.set(key, value)  # type: ignore[attr-defined]
            else:
                data[key] = value
                atime[key] = clock
            set_deadline(key, expire_ms)
        elif key in data:
            db.set(key, value)  # type: ignore[attr-defined]
        else:
            data[key] = value
            atime[key] = clock
        if len(data) >= progress:
            progress += PROGRESS_EVERY
            log.info("loading %s: %d keys so far", path, len(data) - start)
            db.touched.clear()  # type: ignore[attr-defined]
    return len(data) - start, expired
