"""maxmemory on a worker: how much it holds, and evicting keys by policy (Redis's evict.c).

The router divides ``maxmemory`` among the workers (``__maxmemory``: each gets its share);
a worker compares its own ``used_memory`` with its share before each command, as Redis does
before each command, and evicts while it is over: keys chosen by ``maxmemory-policy``, from
samples of ``maxmemory-samples`` keys per database kept in a pool of the 16 best candidates
(Redis's approximated LRU/LFU/TTL).  A command that may grow memory (``denyoom``) is refused
with Redis's ``-OOM`` error when nothing can be evicted (``noeviction``, or no key with a TTL
under a ``volatile-*`` policy).

What ``used_memory`` counts, and why: the keys and values (``Keyspace.used``: a string's
bytes objects exactly, other values by their type's ``memory`` estimate, the number MEMORY
USAGE gives less its table share) and the tables that hold them (``sys.getsizeof`` of each
dict: their real allocation).  Not counted: the interpreter itself (code, modules: ~20 MB of
RSS per process that no eviction can free), and memory freed but kept by the allocator (RSS
does not shrink when keys go; ``used_memory_rss`` shows it, as Redis's does).

Sampling: a Python dict cannot give a random key in O(1), so each database keeps a list of
its keys (``sample_pool``), taken in O(keys) when it runs out and reused: evicted keys are
skipped when drawn, keys added since are only drawn after the next refill.  Those are the
keys an LRU or LFU policy would pick last anyway.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from shardis.worker.keyspace import Keyspace

#: Redis's EVPOOL_SIZE: the candidates kept between two evictions.
POOL_SIZE = 16


def time_limit_us(tenacity: int) -> int:
    """``evictionTimeLimitUs``: how long one round of evictions may take."""
    if tenacity <= 10:
        return 50 * tenacity  # 500 us at the default tenacity of 10
    if tenacity < 100:
        return int(500 * 1.15 ** (tenacity - 10))
    return 2 ** 63  # no limit


class Evictor:
    """One worker's memory limit, policy and eviction state."""

    def __init__(self, shard: Any) -> None:
        self.shard = shard
        #: this worker's share of maxmemory in bytes; 0: no limit.
        self.limit = 0
        self.policy = "noeviction"
        self.samples = 5
        self.tenacity = 10
        #: [score, db, key], best (highest score) last: Redis's EvictionPoolLRU.
        self.pool: list[list[Any]] = []
        self.evicted_keys = 0
        #: when memory went over the limit and stayed (ms, monotonic); None: under it.
        self.over_since: float | None = None
        self.exceeded_ms = 0
        self._next_db = 0

    # Measuring --------------------------------------------------------------------------------
    def used(self) -> int:
        """This worker's used_memory: every database's keys, values and tables."""
        total = 0
        for db in self.shard.dbs.values():
            dataset, overhead = db.memory()
            total += dataset + overhead
        return total

    def report(self) -> dict[bytes, object]:
        """This worker's share of INFO memory and MEMORY STATS."""
        dataset = overhead = 0
        databases = []
        for db in self.shard.keyspaces():
            keys, tables = db.memory()
            dataset += keys
            overhead += tables
            if db.data:
                main = sys.getsizeof(db.data) + sys.getsizeof(db.atime)
                databases.append([db.index, main, tables - main])
        return {b"dataset": dataset, b"overhead": overhead, b"limit": self.limit,
                b"evicted_keys": self.evicted_keys, b"exceeded_ms": self.exceeded_ms,
                b"current_exceeded_ms": self.current_exceeded_ms(), b"databases": databases}

    def set_limit(self, limit: int) -> None:
        """``__maxmemory``: this worker's share of maxmemory (0: none)."""
        self.limit = limit
        if not limit:
            self.shard.oom_at_start = False
            self._note_over(False)

    # Evicting ---------------------------------------------------------------------------------
    def perform(self) -> bool:
        """``performEvictions``: evict until under the limit or out of time; False when over
        it with nothing left to evict (the caller refuses commands that may grow memory).

        No limit is never over it: a batch that started limited checks each of its commands,
        and ``__maxmemory 0`` may come first (CONFIG SET maxmemory 0 beside a client's
        writes), after which "over 0" would evict every key or refuse every write."""
        if not self.limit:
            return True
        used = self.used()
        if used <= self.limit:
            self._note_over(False)
            return True
        self._note_over(True)
        if self.policy == "noeviction":
            return False
        stop = time.perf_counter_ns() + time_limit_us(self.tenacity) * 1000
        evicted = 0
        while used > self.limit:
            picked = self._pick()
            if picked is None:
                return False
            db, key = picked
            before = db.used
            self.shard.evict(db, key)
            used -= before - db.used
            evicted += 1
            if evicted % 16 == 0:
                if time.perf_counter_ns() > stop:
                    return True  # still over: housekeeping carries on (EVICT_RUNNING)
                used = self.used()  # tables shrink too, now and then
        return True

    def _note_over(self, over: bool) -> None:
        """Time spent over the limit (INFO stats' ``total_eviction_exceeded_time``): it
        starts at the first check found over and ends at the first found under.  The clock
        is read only then: under a limit this runs before every command."""
        if over:
            if self.over_since is None:
                self.over_since = time.monotonic()
        elif self.over_since is not None:
            self.exceeded_ms += int((time.monotonic() - self.over_since) * 1000)
            self.over_since = None

    def current_exceeded_ms(self) -> int:
        """How long memory has been over the limit so far (0: it is not)."""
        return 0 if self.over_since is None else int((time.monotonic() - self.over_since) * 1000)

    def _pick(self) -> tuple[Keyspace, bytes] | None:
        policy = self.policy
        volatile = policy.startswith("volatile-")
        dbs = [db for db in self.shard.keyspaces() if (db.expires if volatile else db.data)]
        if not dbs:
            return None
        if policy.endswith("-random"):
            self._next_db += 1
            db = dbs[self._next_db % len(dbs)]
            key = draw(db, volatile, 1)
            return (db, key[0]) if key else None
        pool = self.pool
        while True:
            for db in dbs:
                self._populate(db, volatile)
            if not pool:
                return None
            while pool:
                _, db, key = pool.pop()
                if key in (db.expires if volatile else db.data) and self.shard.dbs.get(
                        db.index) is db:
                    return db, key
            # every candidate was a ghost (deleted meanwhile): sample again

    def _populate(self, db: Keyspace, volatile: bool) -> None:
        """``evictionPoolPopulate``: score ``maxmemory-samples`` keys, keep the best 16."""
        score = self._scorer(db)
        pool = self.pool
        for key in draw(db, volatile, self.samples):
            idle = score(key)
            k = 0
            while k < len(pool) and pool[k][0] < idle:
                k += 1
            if len(pool) < POOL_SIZE:
                pool.insert(k, [idle, db, key])
            elif k:
                pool.insert(k, [idle, db, key])
                del pool[0]  # full: the worst candidate makes room

    def _scorer(self, db: Keyspace) -> Any:
        """The policy's score of a key: higher is a better candidate."""
        if self.policy.endswith("-lru"):
            clock, atime = db.clock, db.atime
            return lambda key: clock - atime.get(key, clock)
        if self.policy.endswith("-lfu"):
            return lambda key: 255 - db.lfu_counter(key)
        expires = db.expires  # volatile-ttl: the sooner the deadline, the better
        return lambda key: -expires[key]


def draw(db: Keyspace, volatile: bool, count: int) -> list[bytes]:
    """Up to ``count`` random keys of ``db`` (with a TTL if ``volatile``), distinct.

    A key drawn twice is dropped from the pool like a ghost (it is picked already); the
    picks are checked in a set: ``maxmemory-samples`` may be anything up to 2^31-1, and a
    list's membership test made a large one quadratic in the keys of the database."""
    table = db.expires if volatile else db.data
    pool = db.sample_pool(volatile)
    picked: list[bytes] = []
    chosen: set[bytes] = set()
    misses = 0
    while len(picked) < count and len(picked) < len(table):
        if not pool or misses > 2 * count + 8:
            pool = db.sample_pool(volatile, refill=True)
            misses = 0
            if not pool:
                break
        position = int(random.random() * len(pool))
        key = pool[position]
        if key in table and key not in chosen:
            picked.append(key)
            chosen.add(key)
        else:
            misses += 1
            pool[position] = pool[-1]  # a ghost: drop it in O(1)
            pool.pop()
    return picked
