"""A shard's keyspace: a plain dict of values, a dict of deadlines, and the effects log.

Values are Python objects by type: ``bytes`` or ``bytearray`` for strings (``bytearray`` once
APPEND/SETRANGE has grown it in place, which is also what Redis calls a ``raw`` string).

Every mutation goes through :meth:`Keyspace.set`, :meth:`Keyspace.delete` or
:meth:`Keyspace.changed`, which record the key in :attr:`Keyspace.touched`.  Command code never
bumps WATCH versions, writes the AOF or counts dirty changes itself: the worker applies the
recorded effects in one place after each command (see ``shardis.worker.shard``).

Expiry
------
A key's deadline is an absolute Unix time in milliseconds in :attr:`Keyspace.expires`, as in
Redis: EXPIREAT/EXPIRETIME values go in and come out unchanged, and a deadline moves between
workers (cross-worker RENAME, COPY) as a plain number.  A key is expired when ``now > deadline``
(Redis's ``keyIsExpired``); a command that *sets* a deadline ``<= now`` deletes the key instead
(Redis's ``checkAlreadyExpired``).

*Lazy expiry.*  :meth:`Keyspace.get` and :meth:`Keyspace.peek` are the only ways commands
read a key, and both delete an expired key first, so no command sees one.  Whole-keyspace
reads reclaim what is due before they look (:meth:`Keyspace.live_keys`) or check each key
(SCAN).  DBSIZE, like Redis 7.0's, is ``len(data)``: O(1), and it counts an expired key until
it is reclaimed, which the active cycle below does within ~0.2 s of the deadline.

*Active expiry: a hierarchical timing wheel.*  Keys nobody reads again are found through
:class:`ExpiryIndex`, buckets of keys by deadline.  A deadline less than ~65 s away goes in a
fine bucket, 64 ms wide, which is reclaimed as a whole once its end has passed; a deadline
further away goes in a coarse bucket about 1/16 to 1/8 as wide as its distance from now, which
is re-sorted into finer buckets when its start arrives (a TTL under a minute is filed once, a
one-year TTL about six times).  The buckets are keyed by the time they are due and a small
heap of those times says which comes next.  Why this and not the alternatives:

* Redis's cycle walks the ``expires`` hash table from a cursor, 20 keys at a time, and stops
  as soon as fewer than 10% of a sample had expired.  A Python dict can neither be walked from
  a cursor while it changes nor sampled at random, and the early stop gives no deadline: in
  bench/expiry.py's storm (1M keys, TTLs of 1-10 s) Redis 7.0 runs 4.4 s behind with 400k
  expired keys still in memory, and with few keys due among many it can take an hour to get
  round to one.
* The previous design swept a snapshot of all keys with a TTL: every pass costs O(keys with a
  TTL) of CPU and 8 bytes per key, even when nothing is due, so a million keys with long TTLs
  keep a worker busy forever.
* A min-heap of ``(deadline, key)`` reclaims in exact order but costs a tuple per key (~64
  bytes, on top of ~100 for the key itself) and O(log n) per insert.

The wheel costs one list slot (8 bytes) per key, O(1) per insert, and CPU in proportion to the
keys that actually expire; a key is reclaimed at most 64 ms plus one housekeeping interval
after its deadline (the same storm through shardis: 0.3 s behind at worst, keyspace empty
0.12 s after the last deadline, 5% CPU in the busiest worker).  Entries are never removed when a deadline changes or a key goes away: a
stale entry is recognised when its bucket comes due (the key's current deadline is not in the
bucket's range) and dropped.  Should stale entries pile up (the same keys re-expired again and
again with long TTLs: more than twice as many entries as keys with a TTL), the index is rebuilt
in the background, a slice per housekeeping call, while the old one keeps working.

Each call of :meth:`Keyspace.active_expire` stops after its time budget (the worker gives it
25 ms every 100 ms: Redis's 25% CPU), checking the clock every 128 keys, and resumes in the
middle of a bucket next time, so commands never wait longer than that.

*Clock.*  ``now`` is read once per batch (Redis caches it per command) from a monotonic clock
anchored to Unix time when the keyspace is created: ``CLOCK_BOOTTIME``, which unlike
``CLOCK_MONOTONIC`` keeps counting while the machine is suspended, so TTLs do elapse then.  A
wall-clock step (an operator or NTP setting the time) therefore does not mass-expire keys (a
step forward) or keep them alive (a step back); instead the anchor is slewed toward the wall
clock by at most 1 ms per 100 ms, which absorbs NTP-sized corrections in seconds to minutes
and bounds the error of any TTL to 1% meanwhile.  Deadlines stay absolute Unix ms, so
EXPIREAT, EXPIRETIME and cross-worker moves keep their meaning.
"""

from __future__ import annotations

import heapq
import logging
import random
import sys
import time
from sys import getsizeof

from shardis import errors
from shardis.errors import ReplyError
from shardis.worker.types import PACKERS, UNPACKERS, packed_if_fits, value_type

log = logging.getLogger("shardis.worker")

STRING_TYPES = (bytes, bytearray)

#: ``string_hints`` values: facts about a string's Redis encoding that its bytes do not tell.
EMBSTR_INT = 1  # integer-looking text that Redis stores as embstr (INCRBYFLOAT's result)
UNSHARED_INT = 2  # small integer that Redis did not take from its shared pool (COPY's result)

#: Fine buckets are 2**FINE_SHIFT ms wide (64 ms).
FINE_SHIFT = 6
#: Deadlines less than this many ms away go straight into a fine bucket.
FINE_SPAN = 1 << 16
#: A coarse bucket is 2**(bit_length(distance) - LEVEL_BITS) ms wide: 1/16..1/8 of the distance.
LEVEL_BITS = 4
#: Entries handled between two looks at the clock.
CHUNK = 128
#: Rebuild the index when it holds more than 2 x (keys with a TTL) + this many entries.
COMPACT_SLACK = 65_536
#: Largest slew of the clock anchor toward wall time: 1 ms per SLEW_DIVISOR ms elapsed.
SLEW_DIVISOR = 100
#: How often (ms) the clock anchor is compared with wall time.
SYNC_INTERVAL_MS = 1000

try:
    _CLOCK_ID = time.CLOCK_BOOTTIME
except AttributeError:  # not Linux
    _CLOCK_ID = time.CLOCK_MONOTONIC


#: A new key's LFU counter (Redis's LFU_INIT_VAL): new keys are not evicted at once.
LFU_INIT_VAL = 5

#: What :meth:`Keyspace.changed_server_state` records in ``touched``: no key, never equal to one.
SERVER_STATE: bytes = object()  # type: ignore[assignment]

#: A ``bytes`` object's header (``sys.getsizeof(b"")``): a string key costs two of them.
BYTES_HEADER = sys.getsizeof(b"")
#: A string key's two bytes objects' headers: ``payload_of`` is its lengths plus this.
STRING_KEY_BYTES = 2 * BYTES_HEADER
#: What a key costs in its tables (``data``, ``atime``) beyond the key and value objects:
#: MEMORY USAGE adds it to a key's own bytes, as Redis adds its dictEntry.
PER_KEY_OVERHEAD = 48
#: What a deadline costs in ``expires`` beyond the table: the int object (Unix ms needs 32
#: bytes) and its slot in the timing wheel.
DEADLINE_BYTES = 32 + 8


def payload_of(key: bytes, value: object, samples: int = 5) -> int:
    """The bytes the key and value objects take (``used_memory_dataset``'s share of a key).

    A string is ``len`` arithmetic (a ``bytes`` object is its header plus its length); other
    values ask their type's ``memory`` estimate, which samples big collections (O(1))."""
    if type(value) is bytes:
        return len(key) + len(value) + STRING_KEY_BYTES
    return sys.getsizeof(key) + value_type(value).memory(value, samples)


def memory_of(key: bytes, value: object, samples: int = 5) -> int:
    """MEMORY USAGE: what a key costs, its share of the tables included."""
    return payload_of(key, value, samples) + PER_KEY_OVERHEAD


def wall_ms() -> int:
    """Unix time in milliseconds, like Redis's ``mstime()``."""
    return time.time_ns() // 1_000_000


def monotonic_ns() -> int:
    """The monotonic clock expiry measures time with (counts suspended time too)."""
    return time.clock_gettime_ns(_CLOCK_ID)


class ExpiryIndex:
    """Keys bucketed by deadline: the timing wheel behind active expiry (see the module doc).

    A bucket id is ``due << 6 | shift``: ``due`` is the Unix ms at which the bucket must be
    looked at, ``shift`` its width as a power of two.  A fine bucket (``shift == FINE_SHIFT``)
    holds deadlines in ``[due - 64, due)`` and is due when they have all passed; a coarse one
    holds ``[due, due + 2**shift)`` and is due when the first of them could.  Ids sort by due
    time, so ``heap[0]`` is always the next bucket to handle.
    """

    __slots__ = ("buckets", "heap", "entries")

    def __init__(self) -> None:
        self.buckets: dict[int, list[bytes]] = {}
        self.heap: list[int] = []
        #: entries in all buckets, stale ones included.
        self.entries = 0

    def add(self, key: bytes, when: int, now: int) -> None:
        """File ``key`` under deadline ``when`` (Unix ms), as seen from ``now``."""
        delta = when - now
        if delta < FINE_SPAN:
            bid = ((((when >> FINE_SHIFT) + 1) << FINE_SHIFT) << 6) | FINE_SHIFT
        else:
            shift = delta.bit_length() - LEVEL_BITS
            bid = (((when >> shift) << shift) << 6) | shift
        bucket = self.buckets.get(bid)
        if bucket is None:
            self.buckets[bid] = [key]
            heapq.heappush(self.heap, bid)
        else:
            bucket.append(key)
        self.entries += 1

    def run(self, keyspace: Keyspace, now: int, stop_ns: int | None) -> int:
        """Handle every bucket due at ``now``, until ``perf_counter_ns() >= stop_ns``.

        Returns how many keys were reclaimed.  A bucket is consumed from its end, a chunk at a
        time, so an interrupted bucket resumes where it stopped.  The reclaiming is
        :meth:`Keyspace._expire` inlined: this loop is where a million keys go.
        """
        heap = self.heap
        buckets = self.buckets
        expires = keyspace.expires
        deadline_of = expires.get
        data = keyspace.data
        take = data.pop
        uncount = keyspace._uncount
        forget_atime = keyspace.atime.pop
        hints = keyspace.string_hints
        touched = keyspace.touched.append
        clock = time.perf_counter_ns
        reclaimed = 0
        while heap and heap[0] >> 6 <= now:
            bid = heap[0]
            shift = bid & 63
            if shift == FINE_SHIFT:
                high = bid >> 6
                low = high - (1 << FINE_SHIFT)
            else:
                low = bid >> 6
                high = low + (1 << shift)
            bucket = buckets[bid]
            while bucket:
                chunk = bucket[-CHUNK:]
                del bucket[-CHUNK:]
                self.entries -= len(chunk)
                count = 0
                total = 0
                for key in chunk:
                    when = deadline_of(key)
                    if when is None or not low <= when < high:
                        continue  # stale: the key went away or has another deadline now
                    if when < now:
                        uncount(key, take(key))
                        del expires[key]
                        forget_atime(key, None)
                        if hints:
                            hints.pop(key, None)
                        touched(key)
                        if keyspace.notify_flags or keyspace.log_expired:
                            keyspace.expired_log.append(key)
                        count += 1
                        total += when
                    else:
                        self.add(key, when, now)  # a coarse bucket: into a finer one
                keyspace.expired_keys += count
                keyspace._deadline_sum -= total
                reclaimed += count
                if stop_ns is not None and bucket and clock() >= stop_ns:
                    return reclaimed
            heapq.heappop(heap)
            del buckets[bid]
            if stop_ns is not None and clock() >= stop_ns:
                break
        return reclaimed

    def run_current(self, keyspace: Keyspace, now: int) -> int:
        """Reclaim the expired keys of the fine bucket that ``now`` falls in (not due yet as a
        whole): with :meth:`run`, this leaves no expired key behind."""
        high = ((now >> FINE_SHIFT) + 1) << FINE_SHIFT
        bucket = self.buckets.get(high << 6 | FINE_SHIFT)
        if not bucket:
            return 0
        low = high - (1 << FINE_SHIFT)
        expires = keyspace.expires
        keep = []
        reclaimed = 0
        for key in bucket:
            when = expires.get(key)
            if when is None or not low <= when < high:
                continue
            if when < now:
                keyspace._expire(key)
                reclaimed += 1
            else:
                keep.append(key)
        self.entries -= len(bucket) - len(keep)
        bucket[:] = keep
        return reclaimed


class Keyspace:
    """One database of one shard."""

    __slots__ = (
        "data",
        "expires",
        "touched",
        "propagated",
        "quiet",
        "events",
        "now_ms",
        "expired_keys",
        "atime",
        "clock",
        "scan_snapshots",
        "scan_counter",
        "stats",
        "blocking",
        "shard",
        "pubsub",
        "notify_flags",
        "expired_log",
        "log_expired",
        "deadline_log",
        "watched",
        "string_hints",
        "expire_cycle_ns",
        "_random_pool",
        "_deadline_sum",
        "_index",
        "_old_index",
        "_rebuild",
        "_rebuild_pos",
        "_mono_anchor",
        "_wall_anchor",
        "_last_sync",
        "_clock_warned",
        "index",
        "lfu",
        "lfu_log_factor",
        "lfu_decay_time",
        "used",
        "sizes",
        "resized",
        "evicted_log",
        "_samples",
        "loose",
    )

    def __init__(self, index: int = 0) -> None:
        #: the database number (SELECT) this keyspace is.
        self.index = index
        #: under a ``*-lfu`` maxmemory-policy, ``atime`` holds LFU data (see ``lfu_touch``).
        self.lfu = False
        self.lfu_log_factor = 10
        self.lfu_decay_time = 1
        self.data: dict[bytes, object] = {}
        #: key -> absolute Unix deadline in ms, only for keys with a TTL.
        self.expires: dict[bytes, int] = {}
        #: keys changed by the command being executed; drained by the shard after each command.
        self.touched: list[bytes] = []
        #: commands the AOF logs in place of the current command, when only the op knows
        #: what it did (XREADGROUP's deliveries as XCLAIM ... TIME); None: log the command
        #: as usual.  Drained with ``touched``.
        self.propagated: list[list[bytes]] | None = None
        #: keys of ``touched`` changed in a way Redis does not signal (``changed_quietly``).
        self.quiet: set[bytes] = set()
        #: (event, key) a command that emits no event of its own name emitted (XREADGROUP's
        #: ``xgroup-createconsumer``): notified in place of the command's.  Drained with
        #: ``touched``.
        self.events: list[tuple[bytes, bytes]] = []
        #: Unix ms on the monotonic time line (see the module doc); read once per batch.
        self._mono_anchor = self._last_sync = monotonic_ns()
        self._wall_anchor = wall_ms()
        self._clock_warned = False
        self.now_ms = self._wall_anchor
        #: keys reclaimed because their TTL ran out (lazily or actively): INFO's expired_keys.
        self.expired_keys = 0
        #: time spent in active expiry, in ns (INFO's expire_cycle_cpu_milliseconds).
        self.expire_cycle_ns = 0
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
        #: the shard that owns this keyspace (scripts run commands through it).
        self.shard: object = None
        #: the shard's pub/sub registry (``PubSubRegistry``), for PUBLISH and ``__sub``.
        self.pubsub: object = None
        #: notify-keyspace-events classes (``shardis.notify``), and keys expiry reclaimed since
        #: the last effects were applied (only kept while notifications are on).
        self.notify_flags = 0
        self.expired_log: list[bytes] = []
        #: keep ``expired_log`` without notifications too (the AOF logs expiries as DEL).
        self.log_expired = False
        #: keys given a deadline by the current command (SET EX emits "expire" too).
        self.deadline_log: list[bytes] = []
        #: WATCHed keys: key -> [watchers, version]; the shard bumps the version of a key
        #: whenever a command changes it (see ``Shard.apply_effects``).
        self.watched: dict[bytes, list[int]] = {}
        #: key -> EMBSTR_INT / UNSHARED_INT, for OBJECT ENCODING/REFCOUNT; rarely non-empty.
        self.string_hints: dict[bytes, int] = {}
        #: sum of all deadlines, so that the average TTL is O(1) (INFO keyspace avg_ttl).
        self._deadline_sum = 0
        #: the timing wheel; while it is being rebuilt, the previous one keeps working too.
        self._index = ExpiryIndex()
        self._old_index: ExpiryIndex | None = None
        self._rebuild: list[bytes] = []
        self._rebuild_pos = 0
        #: Memory accounting (INFO memory, maxmemory): the sum of ``payload_of`` over every
        #: key.  A string's or a packed value's share is recomputed from its bytes when it
        #: goes (``_uncount``); a value that changes in place (a collection, a bytearray)
        #: keeps the share it was counted with in ``sizes``, and ``resized`` lists those
        #: changed since, counted again by ``settle`` (once per key however many changes, and
        #: only when someone looks).  An unpacked value is counted as its packed form until it
        #: changes.
        self.used = 0
        self.sizes: dict[bytes, int] = {}
        self.resized: set[bytes] = set()
        #: keys evicted since the effects were applied (their events say "evicted").
        self.evicted_log: list[bytes] = []
        #: eviction's lists of keys to sample from: [all keys, keys with a TTL].
        self._samples: list[list[bytes]] = [[], []]
        #: keys whose value may be a full collection that fits its packed form, unpacked by a
        #: read or stored by a command since the last :meth:`repack`: key -> the packed value
        #: it was unpacked from, None once changed (``set``, ``changed``) or new.
        self.loose: dict[bytes, bytes | None] = {}

    def tick(self) -> None:
        """Advance the cached clocks; called once per batch."""
        now = self._wall_anchor + (monotonic_ns() - self._mono_anchor) // 1_000_000
        if now > self.now_ms:  # never backwards, whatever the slewing did
            self.now_ms = now
            clock = now // 1000
            if clock != self.clock:
                self.clock = clock  # one int object per second, shared by every atime entry

    def __len__(self) -> int:
        return len(self.data)

    # Reads ------------------------------------------------------------------------------------
    def get(self, key: bytes) -> object | None:
        """The live value of ``key``, deleting it first if its deadline has passed."""
        expires = self.expires
        if expires and key in expires and expires[key] < self.now_ms:
            self._expire(key)
            return None
        value = self.data.get(key)
        if value is not None:
            if self.lfu:
                self.atime[key] = self.lfu_touched(key)
            else:
                self.atime[key] = self.clock
            if type(value) in UNPACKERS:
                return self._unpack(key, value)
        return value

    def _unpack(self, key: bytes, value: object) -> object:
        """The full form of a packed value, stored in its place until :meth:`repack`."""
        full = UNPACKERS[type(value)](value)
        self.data[key] = full
        self.loose[key] = value  # type: ignore[assignment]
        self.sizes[key] = getsizeof(key) + getsizeof(value)  # its share until it changes
        return full

    def repack(self) -> None:
        """Pack again the values unpacked or stored since the last call, where they fit
        (``shardis.worker.types``): the shard calls this at housekeeping, and after a batch
        that left more than ``Shard.loose_limit`` unpacked.  A value only read gets its packed
        form back as it was; the others are packed anew.  A packed value's
        share of ``used`` is its size, like a string's: nothing is kept in ``sizes``."""
        data, sizes, resized = self.data, self.sizes, self.resized
        used = self.used
        for key, was in self.loose.items():
            value = data.get(key)
            if type(value) in PACKERS:
                packed = was if was is not None else packed_if_fits(value)
                if packed is not value:
                    data[key] = packed
                    used += getsizeof(key) + getsizeof(packed) - sizes.pop(key, 0)
                    resized.discard(key)
        self.used = used
        self.loose.clear()

    # LFU (Redis's evict.c): per key, (minutes of the last decrement << 8) | log counter.
    def lfu_minutes(self) -> int:
        return (self.now_ms // 60_000) & 0xFFFF

    def lfu_counter(self, key: bytes) -> int:
        """``LFUDecrAndReturn``: the key's counter, less one per ``lfu-decay-time`` minutes
        since it was last decremented (OBJECT FREQ's answer; nothing is stored)."""
        data = self.atime.get(key, LFU_INIT_VAL)
        counter = data & 0xFF
        if self.lfu_decay_time:
            now, last = self.lfu_minutes(), data >> 8
            elapsed = now - last if now >= last else 65535 - last + now
            counter = max(counter - elapsed // self.lfu_decay_time, 0)
        return counter

    def lfu_touched(self, key: bytes) -> int:
        """``updateLFU``: the decayed counter, incremented with Redis's logarithmic
        probability."""
        counter = self.lfu_counter(key)
        if counter < 255:
            base = max(counter - LFU_INIT_VAL, 0)
            if random.random() < 1.0 / (base * self.lfu_log_factor + 1):
                counter += 1
        return self.lfu_minutes() << 8 | counter

    def lfu_set(self, key: bytes, counter: int) -> None:
        """RESTORE ... FREQ: the counter given, as of now."""
        self.atime[key] = self.lfu_minutes() << 8 | counter

    def peek(self, key: bytes) -> object | None:
        """Like :meth:`get` without counting as an access (OBJECT, TTL, SCAN)."""
        value = self.stored(key)
        if type(value) in UNPACKERS:
            return self._unpack(key, value)
        return value

    def stored(self, key: bytes, access: bool = False) -> object | None:
        """The live value as it is stored, packed or not, for what needs no more than its
        type (EXISTS, TYPE, TOUCH): nothing is unpacked.  ``access``: counts as a read."""
        expires = self.expires
        if expires and key in expires and expires[key] < self.now_ms:
            self._expire(key)
            return None
        value = self.data.get(key)
        if access and value is not None:
            self.atime[key] = self.lfu_touched(key) if self.lfu else self.clock
        return value

    def idle_seconds(self, key: bytes) -> int:
        return max(self.clock - self.atime.get(key, self.clock), 0)

    def get_string(self, key: bytes) -> bytes | bytearray | None:
        """The string at ``key`` or None; WRONGTYPE if the key holds another type."""
        value = self.get(key)
        if value is None or type(value) is bytes or type(value) is bytearray:
            return value  # type: ignore[return-value]
        raise ReplyError(errors.WRONGTYPE)

    def deadline(self, key: bytes) -> int | None:
        """Absolute deadline (Unix ms) of a live key, or None."""
        return self.expires.get(key)

    def live_keys(self) -> list[bytes]:
        """All keys that have not expired (expired ones are reclaimed on the way).

        O(keys) for the list, plus O(keys due) to reclaim them through the expiry index.
        """
        if self.expires:
            self.expire_due()
        return list(self.data)

    def random_key(self) -> bytes | None:
        """A uniformly random live key; O(1) amortised through a lazily rebuilt key sample.

        Like Redis's RANDOMKEY it does not count as an access to the key it returns.
        """
        for _ in range(3):
            pool = self._random_pool
            if not pool:
                if not self.data:
                    return None
                pool = self._random_pool = list(self.data)
            for _ in range(8):
                key = pool[random.randrange(len(pool))]
                if self.peek(key) is not None:
                    return key
            self._random_pool = []
        keys = self.live_keys()
        return random.choice(keys) if keys else None

    def avg_ttl(self) -> int:
        """Average TTL in ms of the keys that have one (INFO keyspace ``avg_ttl``); exact."""
        count = len(self.expires)
        if not count:
            return 0
        return max(self._deadline_sum // count - self.now_ms, 0)

    # Writes -----------------------------------------------------------------------------------
    def set(self, key: bytes, value: object, keep_ttl: bool = False) -> None:
        """Store ``value``; like Redis's ``setKey``, this clears the TTL unless ``keep_ttl``.
        Under LFU a replaced value keeps its key's counter (``dbSetValue``), a new key starts
        at LFU_INIT_VAL."""
        data = self.data
        old = data.get(key)
        if self.lfu:
            if old is None:
                self.atime[key] = self.lfu_minutes() << 8 | LFU_INIT_VAL
        else:
            self.atime[key] = self.clock
        data[key] = value
        # the accounting (see ``used``), its common cases first: a string new or replacing one
        if type(value) is bytes:
            if old is None:
                self.used += len(key) + len(value) + STRING_KEY_BYTES
            elif type(old) is bytes:
                self.used += len(value) - len(old)
            else:
                self._uncount(key, old)
                self.used += len(key) + len(value) + STRING_KEY_BYTES
        else:
            if old is not None:
                self._uncount(key, old)
            self.sizes[key] = 0
            self.resized.add(key)
            self.loose[key] = None
        if not keep_ttl and self.expires:
            self._forget_deadline(key)
        if self.string_hints:
            self.string_hints.pop(key, None)
        self.touched.append(key)

    def reencode(self, key: bytes, value: object) -> None:
        """Swap the stored object for an equal one (a string becoming a bytearray before it is
        edited in place): not a change, so nothing is reported."""
        self._uncount(key, self.data[key])
        self.data[key] = value
        self.sizes[key] = 0
        self.resized.add(key)

    def converted(self, key: bytes) -> None:
        """The value at ``key`` changed its encoding in place, not its contents (SORT makes a
        listpack zset a skiplist): nothing to report, but the packed form it was read from
        no longer says what it is."""
        self.loose[key] = None

    def changed_quietly(self, key: bytes) -> None:
        """Report a change Redis makes without ``signalModifiedKey`` (a stream's consumer
        groups): logged and counted like any change, but WATCH does not see it.  A key also
        reported by ``changed``/``set`` in the same command is not quiet."""
        if key not in self.touched:
            self.quiet.add(key)
        self.touched.append(key)
        self.resized.add(key)
        self.loose[key] = None

    def changed(self, key: bytes) -> None:
        """Report an in-place change of the value at ``key`` (a bytearray grown, a list pushed)."""
        self.touched.append(key)
        self.resized.add(key)
        self.loose[key] = None
        if self.quiet:
            self.quiet.discard(key)

    def changed_server_state(self) -> None:
        """Report a change outside the keys (the function libraries): a write like any other
        for the AOF and the dirty counter, with no key to watch or notify."""
        self.touched.append(SERVER_STATE)

    def delete(self, key: bytes) -> bool:
        """Remove ``key`` if live; True if it was there."""
        if self.get(key) is None:
            return False
        self._uncount(key, self.data.pop(key))
        self.atime.pop(key, None)
        if self.expires:
            self._forget_deadline(key)
        if self.string_hints:
            self.string_hints.pop(key, None)
        self.touched.append(key)
        return True

    def _uncount(self, key: bytes, value: object) -> None:
        """Take a value that goes (or is replaced) out of the memory accounting."""
        if type(value) is bytes:
            self.used -= len(key) + len(value) + STRING_KEY_BYTES
        elif type(value) in UNPACKERS:
            self.used -= getsizeof(key) + getsizeof(value)
        else:
            self.used -= self.sizes.pop(key, 0)
            self.resized.discard(key)  # (a key set anew right after is added back)

    def settle(self) -> None:
        """Count again the values changed in place since the last call (see ``used``)."""
        if not self.resized:
            return
        data, sizes = self.data, self.sizes
        for key in self.resized:
            value = data.get(key)
            if value is None or type(value) is bytes or type(value) in UNPACKERS:
                continue  # gone (already uncounted), or replaced by a string or packed (counted)
            size = payload_of(key, value)
            self.used += size - sizes.get(key, 0)
            sizes[key] = size
        self.resized.clear()

    def recount(self) -> None:
        """Count every key from scratch: after a load filled ``data`` directly."""
        self.sizes = {}
        self.resized = set(key for key, value in self.data.items()
                           if type(value) is not bytes and type(value) not in UNPACKERS)
        self.used = sum(len(key) + len(value) + STRING_KEY_BYTES
                        for key, value in self.data.items() if type(value) is bytes)
        self.used += sum(getsizeof(key) + getsizeof(value)
                         for key, value in self.data.items() if type(value) in UNPACKERS)
        self.settle()

    def memory(self) -> tuple[int, int]:
        """(dataset, overhead) bytes: the keys and values (``used``), and the tables that hold
        them, measured as they are (``sys.getsizeof`` of a dict is its allocation): O(1)."""
        self.settle()
        getsizeof = sys.getsizeof
        wheel = self._index.entries + (self._old_index.entries if self._old_index else 0)
        overhead = (getsizeof(self.data) + getsizeof(self.atime) + getsizeof(self.expires)
                    + getsizeof(self.sizes) + DEADLINE_BYTES * len(self.expires) + 8 * wheel)
        return self.used, overhead

    def sample_pool(self, volatile: bool, refill: bool = False) -> list[bytes]:
        """Keys to draw eviction samples from (``shardis.worker.evict.draw``): a list of the
        keys (``volatile``: those with a TTL) taken when asked to ``refill``, O(keys); the
        caller drops the keys that went since as it meets them."""
        if refill:
            self._samples[volatile] = list(self.expires if volatile else self.data)
        return self._samples[volatile]

    def evict(self, key: bytes) -> None:
        """Remove ``key`` for maxmemory (``shardis.worker.evict``): reported like an expiry
        (the AOF logs a DEL, WATCH and client caching see a change), named "evicted"."""
        self._uncount(key, self.data.pop(key))
        self._forget_deadline(key)
        self.atime.pop(key, None)
        if self.string_hints:
            self.string_hints.pop(key, None)
        self.touched.append(key)
        if self.notify_flags or self.log_expired:
            self.expired_log.append(key)
        if self.notify_flags:
            self.evicted_log.append(key)

    def _forget_deadline(self, key: bytes) -> None:
        when = self.expires.pop(key, None)
        if when is not None:
            self._deadline_sum -= when

    def set_deadline(self, key: bytes, when_ms: int) -> None:
        """Give an existing key the absolute deadline ``when_ms`` (Unix ms).

        A deadline that has already passed is stored as it is (Redis does the same for
        SET ... PXAT in the past): the key is then expired on its next access or by the next
        active cycle.  Commands that must delete at once (EXPIRE in the past) call delete.
        """
        old = self.expires.get(key)
        self.expires[key] = when_ms
        self.touched.append(key)
        if self.notify_flags:
            self.deadline_log.append(key)
        if old is None:
            self._deadline_sum += when_ms
        elif old == when_ms:
            return  # its index entry is still right
        else:
            self._deadline_sum += when_ms - old
        self._index.add(key, when_ms, self.now_ms)

    def persist(self, key: bytes) -> bool:
        when = self.expires.pop(key, None)
        if when is None:
            return False
        self._deadline_sum -= when
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
        self._deadline_sum = 0
        self.used = 0
        self.sizes = {}
        self.resized = set()
        self._samples = [[], []]
        self.loose = {}
        self._reset_index()
        return count

    # Expiry -----------------------------------------------------------------------------------
    def expire_due(self) -> int:
        """Reclaim every key whose deadline has passed, with no time limit; returns how many.

        O(keys due): for whole-keyspace reads (KEYS, RANDOMKEY's fallback) that must not see
        an expired key.  Uses the batch's clock, like every command.
        """
        now = self.now_ms
        reclaimed = 0
        for index in (self._old_index, self._index):
            if index is not None:
                reclaimed += index.run(self, now, None)
                reclaimed += index.run_current(self, now)
        return reclaimed

    def active_expire(self, budget_s: float) -> int:
        """Reclaim expired keys nobody reads, for at most ``budget_s`` seconds; returns how
        many.  Called by the worker between batches (see the module doc for the design)."""
        started = time.perf_counter_ns()
        self.tick()
        self._sync_clock()
        if not self.expires:
            if self._index.entries or self._old_index is not None:
                self._reset_index()  # every entry is stale: drop them in O(1)
            return 0
        stop = started + int(budget_s * 1e9)
        now = self.now_ms
        reclaimed = 0
        if self._old_index is not None:
            reclaimed += self._old_index.run(self, now, stop)
        reclaimed += self._index.run(self, now, stop)
        if self._old_index is not None:
            self._continue_rebuild(stop)
        elif self._index.entries > 2 * len(self.expires) + COMPACT_SLACK:
            self._start_rebuild()
        self.expire_cycle_ns += time.perf_counter_ns() - started
        return reclaimed

    def _expire(self, key: bytes) -> None:
        self._uncount(key, self.data.pop(key))
        self._deadline_sum -= self.expires.pop(key)
        self.atime.pop(key, None)
        if self.string_hints:
            self.string_hints.pop(key, None)
        self.expired_keys += 1
        self.touched.append(key)
        if self.notify_flags or self.log_expired:
            self.expired_log.append(key)

    def _reset_index(self) -> None:
        self._index = ExpiryIndex()
        self._old_index = None
        self._rebuild = []
        self._rebuild_pos = 0

    def _start_rebuild(self) -> None:
        """Start over with an empty index, to shed stale entries; the old one keeps reclaiming
        until every key with a TTL has been filed again (:meth:`_continue_rebuild`)."""
        self._old_index = self._index
        self._index = ExpiryIndex()
        self._rebuild = list(self.expires)
        self._rebuild_pos = 0

    def _continue_rebuild(self, stop_ns: int) -> None:
        """File the next slices of the keys with a TTL into the new index, within the budget.

        Keys given a deadline since the rebuild started are in the new index already (through
        :meth:`set_deadline`); once every older key is too, the old index is dropped.
        """
        keys = self._rebuild
        expires = self.expires
        add = self._index.add
        now = self.now_ms
        pos = self._rebuild_pos
        while pos < len(keys):
            for key in keys[pos : pos + CHUNK * 8]:
                when = expires.get(key)
                if when is not None:
                    add(key, when, now)
            pos += CHUNK * 8
            if time.perf_counter_ns() >= stop_ns:
                break
        self._rebuild_pos = pos
        if pos >= len(keys):
            self._old_index = None
            self._rebuild = []
            self._rebuild_pos = 0

    def _sync_clock(self) -> None:
        """Slew the monotonic time line toward wall time, at most 1 ms per SLEW_DIVISOR ms."""
        mono = monotonic_ns()
        elapsed = (mono - self._last_sync) // 1_000_000
        if elapsed < SYNC_INTERVAL_MS:
            return
        self._last_sync = mono
        offset = wall_ms() - (self._wall_anchor + (mono - self._mono_anchor) // 1_000_000)
        if not offset:
            return
        limit = max(elapsed // SLEW_DIVISOR, 1)
        if abs(offset) <= limit:
            self._clock_warned = False
        elif abs(offset) > 10 * limit and not self._clock_warned:
            self._clock_warned = True  # once per excursion, not once per second
            log.warning("wall clock is %d ms %s the expiry clock; following it at %d ms/s",
                        abs(offset), "ahead of" if offset > 0 else "behind",
                        1000 // SLEW_DIVISOR)
        self._wall_anchor += max(-limit, min(limit, offset))
