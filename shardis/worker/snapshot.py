"""RDB snapshots of one worker: SAVE, BGSAVE, the ``save`` rules, loading at start, saving
at shutdown.

Each worker writes its own keyspace to ``DIR/worker-<index>/<dbfilename>`` (``dump.rdb``), an
RDB version 10 file that ``redis-check-rdb`` accepts and a Redis 7.0 server loads.  A file is
always written to a temporary name, fsynced and renamed over the old one, so a crash leaves
either the previous snapshot or the new one, never half of one.

* SAVE writes in the worker's loop (commands wait, as in Redis).
* BGSAVE forks (:class:`Child`, shared with the AOF rewrite): the child writes the keyspace as
  it was at the fork and ``os._exit``s; the worker goes on serving and reaps the child on its
  housekeeping tick (``waitpid(WNOHANG)``).  ``gc.freeze()`` before the fork moves every
  object into the permanent generation, so the parent's garbage collector does not write to
  (and copy) every page while the child runs.  The child sends its copy-on-write size (its
  Private_Dirty) back through a pipe (INFO's ``rdb_last_cow_size``).  One child at a time, as
  Redis: while an AOF rewrite runs, BGSAVE is refused (or scheduled with SCHEDULE).
* Stopping (:func:`prepare_shutdown`, Redis's ``prepareForShutdown``): SHUTDOWN (through
  ``__shutdown``) and SIGTERM kill a running child, fsync the AOF, and save when save rules
  are set (or SAVE, and not NOSAVE).  DEBUG RELOAD saves, empties and loads (commands.server).
* The ``save`` rules (``3600 1 300 100 60 10000``: after N seconds if at least M changes) are
  checked on the housekeeping tick against the changes made since the last successful save.
* Every type is written, streams (with their consumer groups) included, as Redis 7.0.15
  writes it.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import struct
import time

from shardis.errors import ReplyError
from shardis.persist.rdb import RdbError, RdbReader, RdbWriter
from shardis.worker.types import packed_if_fits, unpacked

log = logging.getLogger("shardis.worker")

#: A loading worker logs its progress every this many keys.
PROGRESS_EVERY = 100_000
#: After a failed background save, the save rules wait this long before trying again (Redis's
#: CONFIG_BGSAVE_RETRY_DELAY).
RETRY_DELAY_S = 5
#: Buffer of the file being written.
_BUFFER = 1 << 20


def write_rdb(db: object, fh: object) -> int:
    """Write the keyspace ``db`` (and its shard's other databases, those with keys) as an
    RDB stream to ``fh``; the number of keys written.

    Raises :class:`RdbError` for a value the codec cannot write (which no stored type is).
    """
    from shardis.commands.functions import saved_codes

    shard = db.shard  # type: ignore[attr-defined]
    keyspaces = shard.keyspaces() if shard is not None else [db]
    writer = RdbWriter(fh)  # type: ignore[arg-type]
    written = 0
    for keyspace in keyspaces:  # database 0 first: a shard always has it
        data, expires = keyspace.data, keyspace.expires
        if keyspace.index == 0:
            writer.begin(len(data), len(expires), functions=saved_codes(db))
        elif not data:
            continue  # as Redis: an empty database is not in the file
        else:
            writer.select(keyspace.index, len(data), len(expires))
        key_out = writer.key
        get_expire = expires.get
        for key, value in data.items():
            key_out(key, unpacked(value), get_expire(key))
        written += len(data)
    writer.end()
    return written


def write_durably(path: str, temp: str, fill: object) -> int:
    """``fill(fh)`` into ``temp``, fsync, rename over ``path``, fsync the folder; what
    ``fill`` returned.  On any error the temporary file is removed and ``path`` left as it was.
    """
    folder = os.path.dirname(path) or "."
    try:
        with open(temp, "wb", buffering=_BUFFER) as fh:
            result = fill(fh)  # type: ignore[operator]
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
    return result  # type: ignore[no-any-return]


def write_snapshot(db: object, path: str) -> int:
    """Write the keyspace ``db`` to ``path`` atomically; the number of keys written.

    Raises ``OSError`` (or :class:`RdbError` for a value the codec cannot write, which no
    stored type is); the temporary file is removed either way and the old snapshot is left as
    it was.
    """
    temp = os.path.join(os.path.dirname(path) or ".", f"temp-{os.getpid()}.rdb")
    return write_durably(path, temp, lambda fh: write_rdb(db, fh))


def load_rdb(db: object, fh: object, name: str, skip_expired: bool = True) -> tuple[int, int]:
    """Load an RDB stream into the keyspace ``db``; (keys loaded, keys skipped as expired).
    Keys already expired are skipped, except in an AOF's base (``skip_expired`` False, as
    Redis's RDBFLAGS_AOF_PREAMBLE): the incr files that follow were logged while those keys
    still existed, and expiry removes them afterwards (logging their DEL).  ``fh`` is left
    right after the RDB (an old AOF's commands may follow it).  Raises :class:`RdbError` on
    a corrupt file."""
    db.tick()  # type: ignore[attr-defined]
    gc_was_on = gc.isenabled()
    gc.disable()  # loading makes no cycles; collections would only rescan the keys
    shard = db.shard  # type: ignore[attr-defined]
    if shard is not None:
        db = shard.keyspace(0)  # the file's first keys are database 0's
    keyspaces = shard.keyspaces if shard is not None else lambda: [db]
    reader = RdbReader(fh, databases=shard.databases if shard is not None else 0)  # type: ignore[arg-type]
    before = sum(len(keyspace.data) for keyspace in keyspaces())
    try:
        _, expired = _fill(db, reader, name, skip_expired)
    finally:
        if gc_was_on:
            gc.enable()
    loaded = sum(len(keyspace.data) for keyspace in keyspaces()) - before
    for keyspace in keyspaces():
        keyspace.touched.clear()
        keyspace.deadline_log.clear()
        keyspace.recount()  # the reader filled the tables directly
    if reader.functions:
        from shardis.commands.functions import restore_saved

        try:
            restore_saved(db, reader.functions)
        except ReplyError as exc:
            raise RdbError(f"a function library does not load: {exc.message}", 0) from None
    db.touched.clear()  # type: ignore[attr-defined]
    db.deadline_log.clear()  # type: ignore[attr-defined]
    return loaded, expired


def _fill(db: object, entries: RdbReader, path: str,
          skip_expired: bool = True) -> tuple[int, int]:
    """Store every entry of an RDB in ``db`` (keys already expired are skipped unless
    ``skip_expired`` is False); (keys loaded, keys expired).

    At a worker's start nobody is served yet: no client watches a key, none is blocked and
    no notification can be due, so ``Keyspace.set``'s bookkeeping reduces to the value and
    its access time, which the reader stores itself for the small keys without a TTL that
    it parses in place (``RdbReader.into``) and this loop for the others; a key the file
    holds twice, or one already there (DEBUG RELOAD NOFLUSH), goes through ``Keyspace.set``,
    which replaces it as before.  (DEBUG RELOAD signals the watchers of the keys itself.)"""
    shard = db.shard  # type: ignore[attr-defined]
    data, atime = db.data, db.atime  # type: ignore[attr-defined]
    clock, now = db.clock, db.now_ms  # type: ignore[attr-defined]
    set_deadline = db.set_deadline  # type: ignore[attr-defined]
    entries.into(data, atime, clock)
    start = len(data)
    expired = 0
    progress = start + PROGRESS_EVERY
    number = 0
    for key, value, expire_ms in entries:
        if entries.db != number:  # the file's next database (database 0's come first)
            number = entries.db
            db = shard.keyspace(number)
            data, atime = db.data, db.atime  # type: ignore[attr-defined]
            set_deadline = db.set_deadline  # type: ignore[attr-defined]
        if expire_ms is not None:
            if skip_expired and expire_ms <= now:
                expired += 1
                continue
            if key in data:
                db.set(key, value)  # type: ignore[attr-defined]
            else:
                data[key] = packed_if_fits(value)
                atime[key] = clock
            set_deadline(key, expire_ms)
        elif key in data:
            db.set(key, value)  # type: ignore[attr-defined]
        else:
            data[key] = packed_if_fits(value)
            atime[key] = clock
        if len(data) >= progress:
            progress += PROGRESS_EVERY
            log.info("loading %s: %d keys so far", path, len(data) - start)
            db.touched.clear()  # type: ignore[attr-defined]
    return len(data) - start, expired


# Forked children -----------------------------------------------------------------------------
def private_dirty_bytes() -> int:
    """This process's Private_Dirty memory (``/proc/self/smaps_rollup``): in a forked child,
    the pages copied since the fork, as Redis's ``zmalloc_get_private_dirty``.  0 if unknown."""
    try:
        with open("/proc/self/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Private_Dirty:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Child:
    """A forked child doing one background job (a BGSAVE or an AOF rewrite).

    The child reports its copy-on-write size (its Private_Dirty at the end) through a pipe,
    as Redis's child does (``sendChildCowInfo``); the parent reads it when it reaps the child.
    ``gc.freeze()`` before the fork moves every object into the permanent generation, so the
    parent's garbage collector does not write to (and copy) every page while the child runs.
    """

    def __init__(self, pid: int, pipe: int) -> None:
        self.pid = pid
        self.pipe = pipe
        self.started = time.monotonic()

    @classmethod
    def fork(cls, work: object, what: str) -> Child:
        """Run ``work()`` in a child; OSError if the fork fails."""
        read_fd, write_fd = os.pipe()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            gc.unfreeze()
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # the child: work and leave without running any of the parent's cleanup
            code = 1
            try:
                os.close(read_fd)
                work()  # type: ignore[operator]
                os.write(write_fd, struct.pack("<q", private_dirty_bytes()))
                code = 0
            except BaseException as exc:  # noqa: BLE001 - the child must always _exit
                try:
                    log.warning("%s error: %s", what, exc)
                except BaseException:  # noqa: BLE001
                    pass
            os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        return cls(pid, read_fd)

    def reap(self, block: bool = False) -> tuple[bool, int] | None:
        """None while the child runs; then (it succeeded, its copy-on-write bytes)."""
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 1 << 8
        if pid == 0:
            return None
        cow = 0
        try:
            data = os.read(self.pipe, 8)
            if len(data) == 8:
                cow = struct.unpack("<q", data)[0]
        except OSError:
            pass
        os.close(self.pipe)
        gc.unfreeze()
        ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        return ok, cow

    def kill(self) -> None:
        """Stop the child and wait for it (a shutdown, or the AOF switched off)."""
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
        self.reap(block=True)

    def elapsed(self) -> int:
        return round(time.monotonic() - self.started)


def aof_child_running(shard: object) -> bool:
    """An AOF rewrite runs, or was accepted in this batch (it forks once the batch is done)."""
    rewriter = getattr(shard, "rewriter", None)
    return rewriter is not None and (rewriter.running() or rewriter.pending)


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
        self.last_cow_size = 0
        #: the child of the running BGSAVE and the dirty count it covers.
        self.child: Child | None = None
        self.dirty_at_fork = 0
        #: BGSAVE SCHEDULE while an AOF rewrite runs: started when it ends.
        self.scheduled = False
        self.loaded_keys = 0
        self.loaded_expired = 0

    @property
    def filename(self) -> str:
        return os.path.basename(self.path)

    @filename.setter
    def filename(self, name: str) -> None:
        self.path = os.path.join(self.dir, name)

    # Saving -----------------------------------------------------------------------------------
    def save(self, shard: object) -> None:
        """SAVE: write now; ReplyError when it cannot."""
        if self.child is not None:
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

    def bgsave(self, shard: object, schedule: bool = False) -> str:
        """BGSAVE [SCHEDULE]: fork a child that writes the file; the status reply, or
        ReplyError (one is running, an AOF rewrite runs and no SCHEDULE, the fork failed)."""
        if self.child is not None:
            raise ReplyError("ERR Background save already in progress")
        if aof_child_running(shard):
            if schedule:
                self.scheduled = True
                return "Background saving scheduled"
            raise ReplyError("ERR Another child process is active (AOF?): can't BGSAVE right "
                             "now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever "
                             "possible.")
        self.start(shard)
        return "Background saving started"

    def start(self, shard: object) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self.last_try = time.time()
        db, path = shard.db, self.path  # type: ignore[attr-defined]
        try:
            self.child = Child.fork(lambda: write_snapshot(db, path), "Background saving")
        except OSError as exc:
            self.last_status_ok = False
            log.warning("Can't save in background: fork: %s", exc)
            raise ReplyError("ERR") from None
        self.scheduled = False
        self.dirty_at_fork = shard.stats.dirty  # type: ignore[attr-defined]
        log.info("Background saving started by pid %d", self.child.pid)

    def running(self) -> bool:
        return self.child is not None

    def reap(self, shard: object, block: bool = False) -> None:
        """If the BGSAVE child has ended, record how it went."""
        child = self.child
        if child is None:
            return
        result = child.reap(block)
        if result is None:
            return
        self.child = None
        self.last_bgsave_time_sec = child.elapsed()
        ok, self.last_cow_size = result
        if ok:
            self.done(shard, self.dirty_at_fork)
            log.info("Background saving terminated with success")
        else:
            self.last_status_ok = False
            log.warning("Background saving error")

    def tick(self, shard: object) -> None:
        """Housekeeping: reap a finished child, then a scheduled BGSAVE, then the save rules."""
        if self.child is not None:
            self.reap(shard)
            return
        if aof_child_running(shard):
            return
        now = time.time()
        may_retry = self.last_status_ok or now - self.last_try > RETRY_DELAY_S
        if self.scheduled and may_retry:
            self._start_logged(shard)
            return
        dirty = shard.stats.dirty  # type: ignore[attr-defined]
        if not self.rules or not dirty or not may_retry:
            return
        for seconds, changes in self.rules:
            if dirty >= changes and now - self.lastsave > seconds:
                log.info("%d changes in %d seconds. Saving...", changes, seconds)
                self._start_logged(shard)
                return

    def _start_logged(self, shard: object) -> None:
        try:
            self.start(shard)
        except ReplyError:
            pass

    def info(self, shard: object) -> dict[bytes, object]:
        child = self.child
        return {
            b"rdb_changes_since_last_save": shard.stats.dirty,  # type: ignore[attr-defined]
            b"rdb_bgsave_in_progress": int(child is not None),
            b"rdb_last_save_time": self.lastsave,
            b"rdb_last_bgsave_ok": int(self.last_status_ok),
            b"rdb_last_bgsave_time_sec": self.last_bgsave_time_sec,
            b"rdb_current_bgsave_time_sec": child.elapsed() if child is not None else -1,
            b"rdb_saves": self.saves,
            b"rdb_last_cow_size": self.last_cow_size,
            b"rdb_last_load_keys_expired": self.loaded_expired,
            b"rdb_last_load_keys_loaded": self.loaded_keys,
        }

    def kill_child(self) -> None:
        """At shutdown (as Redis's ``killRDBChild``): the final save, if any, is synchronous
        and the child must not overwrite it later; its temporary file is removed."""
        child = self.child
        if child is None:
            return
        log.warning("There is a child saving an .rdb. Killing it!")
        child.kill()
        self.child = None
        try:
            os.unlink(os.path.join(self.dir, f"temp-{child.pid}.rdb"))
        except OSError:
            pass

    # Loading ----------------------------------------------------------------------------------
    def load(self, shard: object) -> int:
        """Load ``dump.rdb`` if there is one (keys already expired are skipped); keys loaded.

        Raises :class:`RdbError` on a corrupt file: the caller must exit.
        """
        if not os.path.exists(self.path):
            return 0
        started, cpu = time.monotonic(), time.process_time()
        with open(self.path, "rb", buffering=_BUFFER) as fh:
            loaded, expired = load_rdb(shard.db, fh, self.path)  # type: ignore[attr-defined]
        shard.stats.dirty = 0  # type: ignore[attr-defined]
        self.loaded_keys, self.loaded_expired = loaded, expired
        log.info("DB loaded from disk: %d keys (%d expired skipped) from %s in %.3f seconds "
                 "(%.3f s of CPU)", loaded, expired, self.path, time.monotonic() - started,
                 time.process_time() - cpu)
        return loaded


#: The reply of a SHUTDOWN that could not save (Redis's ``replyToClientsBlockedOnShutdown``).
SHUTDOWN_ERROR = "ERR Errors trying to SHUTDOWN. Check logs."


def prepare_shutdown(shard: object, save: bool, force: bool, fsync_aof: bool = True) -> None:
    """Redis's ``prepareForShutdown`` for one worker: kill a BGSAVE child, refuse (unless
    ``force``) while the AOF switched on at run time has no base yet, kill a rewrite child,
    flush and fsync the AOF, then save ``dump.rdb`` if ``save``.  ReplyError
    :data:`SHUTDOWN_ERROR` when the stop must not happen (the worker keeps serving).
    ``fsync_aof`` False: called from inside a running script, whose writes so far must not
    reach the file as if it had ended (the stop's close writes what is whole)."""
    snapshots = shard.snapshots  # type: ignore[attr-defined]
    rewriter = getattr(shard, "rewriter", None)
    aof = shard.aof  # type: ignore[attr-defined]
    if snapshots is not None:
        snapshots.kill_child()
    if rewriter is not None and (rewriter.running() or rewriter.pending):
        if aof is not None and aof.waiting:
            if not force:
                log.warning("Writing initial AOF, can't exit.")
                raise ReplyError(SHUTDOWN_ERROR)
            log.warning("Writing initial AOF. Exit anyway.")
        rewriter.kill(shard)
    if aof is not None and fsync_aof:
        log.info("Calling fsync() on the AOF file.")
        try:
            aof.fsync()
        except OSError as exc:
            log.warning("Fail to fsync the AOF file: %s.", exc)
    if save and snapshots is not None:
        log.info("Saving the final RDB snapshot before exiting.")
        try:
            snapshots.save(shard)
        except ReplyError:
            if not force:
                log.warning("Error trying to save the DB, can't exit.")
                raise ReplyError(SHUTDOWN_ERROR) from None
            log.warning("Error trying to save the DB. Exit anyway.")
    shard.shutdown_dirty = shard.stats.dirty  # type: ignore[attr-defined]
