"""A shard's keyspace: a plain dict of values, a dict of deadlines, and the effects log.

Values are Python objects by type: ``bytes`` or ``bytearray`` for strings (``bytearray`` once
APPEND/SETRANGE has grown it in place, which is also what Redis calls a ``raw`` string).

Every mutation goes through :meth:`Keyspace.set`, :meth:`Keyspace.delete` or
:meth:`Keyspace.changed`, which record the key in :attr:`Keyspace.touched`.  Command code never
bumps WATCH versions, writes the AOF or counts dirty changes itself: the worker applies the
recorded effects in one place after each command (see ``shardis.worker.shard``).
"""

from __future__ import annotations

import random
import time

from shardis import errors
from shardis.errors import ReplyError

STRING_TYPES = (bytes, bytearray)

#: ``string_hints`` values: facts about a string's Redis encoding that its bytes do not tell.
EMBSTR_INT = 1  # integer-looking text that Redis stores as embstr (INCRBYFLOAT's result)
UNSHARED_INT = 2  # small integer that Redis did not take from its shared pool (COPY's result)


def wall_ms() -> int:
    """Unix time in milliseconds, like Redis's ``mstime()``."""
    return time.time_ns() // 1_000_000


class Keyspace:
    """One database of one shard."""

    __slots__ = (
        "data",
        "expires",
        "touched",
        "now_ms",
        "expired_keys",
        "atime",
        "clock",
        "scan_snapshots",
        "scan_counter",
        "stats",
        "blocking",
        "string_hints",
        "_random_pool",
        "_sweep",
        "_sweep_pos",
    )

    def __init__(self) -> None:
        self.data: dict[bytes, object] = {}
        #: key -> absolute Unix deadline in ms, only for keys with a TTL.
        self.expires: dict[bytes, int] = {}
        #: keys changed by the command being executed; drained by the shard after each command.
        self.touched: list[bytes] = []
        #: the clock, read once per batch like Redis caches ``mstime()`` per command.
        self.now_ms = wall_ms()
        self.expired_keys = 0
        #: key -> LRU clock (seconds) of its last access, for OBJECT IDLETIME.
        self.atime: dict[bytes, int] = {}
        self.clock = self.now_ms // 1000
        #: SCAN snapshots of the key list, by id (see ``commands.keys``).
        self.scan_snapshots: dict[int, list[bytes]] = {}
        self.scan_counter = 0
        self._random_pool: list[bytes] = []
        #: the shard's counters (``ShardStats``), for the worker's share of INFO.
        self.stats: object = None
        #: the shard's blocked commands (``BlockingRegistry``), for ``__block``/``__unblock``.
        self.blocking: object = None
        #: key -> EMBSTR_INT / UNSHARED_INT, for OBJECT ENCODING/REFCOUNT; rarely non-empty.
        self.string_hints: dict[bytes, int] = {}
        #: active expiry walks a snapshot of the keys with a deadline, a slice per cycle.
        self._sweep: list[bytes] = []
        self._sweep_pos = 0

    def tick(self) -> None:
        """Advance the cached clocks; called once per batch."""
        self.now_ms = now = wall_ms()
        clock = now // 1000
        if clock != self.clock:
            self.clock = clock  # one int object per second, shared by every atime entry

    def __len__(self) -> int:
        return len(self.data)

    # Reads ------------------------------------------------------------------------------------
    def get(self, key: bytes) -> object | None:
        """The live value of ``key``, deleting it first if its deadline has passed."""
        expires = self.expires
        if expires and key in expires and expires[key] <= self.now_ms:
            self._expire(key)
            return None
        value = self.data.get(key)
        if value is not None:
            self.atime[key] = self.clock
        return value

    def peek(self, key: bytes) -> object | None:
        """Like :meth:`get` without counting as an access (OBJECT, TYPE, EXISTS)."""
        expires = self.expires
        if expires and key in expires and expires[key] <= self.now_ms:
            self._expire(key)
            return None
        return self.data.get(key)

    def idle_seconds(self, key: bytes) -> int:
        return max(self.clock - self.atime.get(key, self.clock), 0)

    def get_string(self, key: bytes) -> bytes | bytearray | None:
        """The string at ``key`` or None; WRONGTYPE if the key holds another type."""
        value = self.get(key)
        if value is None or type(value) is bytes or type(value) is bytearray:
            return value  # type: ignore[return-value]
        raise ReplyError(errors.WRONGTYPE)

    def exists(self, key: bytes) -> bool:
        return self.get(key) is not None

    def deadline(self, key: bytes) -> int | None:
        """Absolute deadline (Unix ms) of a live key, or None."""
        return self.expires.get(key)

    def live_keys(self) -> list[bytes]:
        """All keys that have not expired (expired ones are reclaimed on the way)."""
        if self.expires:
            now = self.now_ms
            for key in [k for k, when in self.expires.items() if when <= now]:
                self._expire(key)
        return list(self.data)

    def random_key(self) -> bytes | None:
        """A uniformly random live key; O(1) amortised through a lazily rebuilt key sample."""
        for _ in range(3):
            pool = self._random_pool
            if not pool:
                if not self.data:
                    return None
                pool = self._random_pool = list(self.data)
            for _ in range(8):
                key = pool[random.randrange(len(pool))]
                if self.get(key) is not None:
                    return key
            self._random_pool = []
        keys = self.live_keys()
        return random.choice(keys) if keys else None

    # Writes -----------------------------------------------------------------------------------
    def set(self, key: bytes, value: object, keep_ttl: bool = False) -> None:
        """Store ``value``; like Redis's ``setKey``, this clears the TTL unless ``keep_ttl``."""
        self.data[key] = value
        self.atime[key] = self.clock
        if not keep_ttl and self.expires:
            self.expires.pop(key, None)
        if self.string_hints:
            self.string_hints.pop(key, None)
        self.touched.append(key)

    def changed(self, key: bytes) -> None:
        """Report an in-place change of the value at ``key`` (a bytearray grown, a list pushed)."""
        self.touched.append(key)

    def delete(self, key: bytes) -> bool:
        """Remove ``key`` if live; True if it was there."""
        if self.get(key) is None:
            return False
        del self.data[key]
        self.atime.pop(key, None)
        if self.expires:
            self.expires.pop(key, None)
        if self.string_hints:
            self.string_hints.pop(key, None)
        self.touched.append(key)
        return True

    def set_deadline(self, key: bytes, when_ms: int) -> None:
        self.expires[key] = when_ms
        self.touched.append(key)

    def persist(self, key: bytes) -> bool:
        if self.expires.pop(key, None) is None:
            return False
        self.touched.append(key)
        return True

    def clear(self) -> int:
        """FLUSHDB: drop everything; returns how many keys there were."""
        count = len(self.data)
        self.data = {}
        self.expires = {}
        self.atime = {}
        self.string_hints = {}
        self._random_pool = []
        return count

    def active_expire(self, budget_s: float) -> int:
        """Reclaim expired keys nobody reads, for at most ``budget_s`` seconds.

        Like Redis's active expire cycle, it is bounded in time so that commands keep flowing;
        unlike Redis it does not sample at random (a dict cannot) but walks a snapshot of the
        keys that have a deadline, one slice per call, so a whole pass takes a few cycles and
        every expired key is found within one pass.
        """
        if not self.expires:
            self._sweep = []
            return 0
        stop = time.perf_counter() + budget_s
        self.tick()
        expires = self.expires
        now = self.now_ms
        reclaimed = 0
        if self._sweep_pos >= len(self._sweep):
            self._sweep = list(expires)
            self._sweep_pos = 0
        sweep = self._sweep
        while self._sweep_pos < len(sweep):
            start = self._sweep_pos
            self._sweep_pos = start + 256
            for key in sweep[start : start + 256]:
                when = expires.get(key)
                if when is not None and when <= now:
                    self._expire(key)
                    reclaimed += 1
            if time.perf_counter() >= stop:
                break
        return reclaimed

    def _expire(self, key: bytes) -> None:
        del self.data[key]
        del self.expires[key]
        self.atime.pop(key, None)
        self.string_hints.pop(key, None)
        self.expired_keys += 1
        self.touched.append(key)
