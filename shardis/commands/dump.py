"""DUMP and RESTORE: a key's value in Redis's serialization format (``shardis.persist.dump``).

Both are one-key commands run by the worker that owns the key.  RESTORE changes the keyspace
only through :class:`~shardis.worker.keyspace.Keyspace` writes, so WATCH, keyspace
notifications (``restore``; ``del`` when REPLACE meets an already-past deadline) and blocked
clients see it as any other write.  The order of checks is Redis 7.0's ``restoreCommand``:
options, then BUSYKEY, then the TTL, then the payload's footer, then its value.
"""

from __future__ import annotations

from shardis.commands import command
from shardis.commands.strings import parse_int
from shardis.errors import ReplyError
from shardis.persist.dump import DumpError, dump_payload, load_payload
from shardis.resp import OK
from shardis.worker.keyspace import Keyspace

BUSYKEY = "BUSYKEY Target key name already exists."
INVALID_TTL = "ERR Invalid TTL value, must be >= 0"
INVALID_IDLETIME = "ERR Invalid IDLETIME value, must be >= 0"
INVALID_FREQ = "ERR Invalid FREQ value, must be >= 0 and <= 255"
_SYNTAX = "ERR syntax error"


@command("dump", 2, "readonly", keys=(1, 1, 1), acl="keyspace read slow",
         tips="nondeterministic_output")
def dump_command(db: Keyspace, args: list[bytes]) -> object:
    value = db.get(args[1])
    if value is None:
        return None
    try:
        return dump_payload(value)
    except DumpError as exc:
        raise ReplyError(exc.message) from None


def _wrap64(n: int) -> int:
    """``n`` as a C ``long long`` after overflow (Redis adds the TTL to the time unchecked)."""
    return (n + (1 << 63)) % (1 << 64) - (1 << 63)


#: Redis keeps an object's last access in 24 bits of seconds (``LRU_CLOCK_MAX``).
LRU_CLOCK_MAX = (1 << 24) - 1


def lru_idle(idle: int, now_s: int) -> int:
    """The idle time OBJECT IDLETIME then reports in Redis for RESTORE ... IDLETIME ``idle``:
    ``objectSetLRUOrLFU`` stores ``now - idle`` in the 24-bit wrapping LRU clock (so idle
    times beyond ~194 days wrap), and ``estimateObjectIdleTime`` unwraps it."""
    ms = _wrap64(idle * 1000)  # Redis scales by the clock resolution, unchecked
    idle = -(-ms // 1000) if ms < 0 else ms // 1000  # C division truncates toward zero
    clock = now_s & LRU_CLOCK_MAX
    lru = clock - idle
    if lru < 0:
        lru += LRU_CLOCK_MAX
    lru &= LRU_CLOCK_MAX  # stored in a 24-bit unsigned field
    return clock - lru if clock >= lru else clock + LRU_CLOCK_MAX - lru


@command("restore-asking", -4, "write denyoom asking", keys=(1, 1, 1),
         acl="keyspace write slow dangerous", group="server")  # no cluster: RESTORE itself
@command("restore", -4, "write denyoom", keys=(1, 1, 1), acl="keyspace write slow dangerous")
def restore_command(db: Keyspace, args: list[bytes]) -> object:
    """``RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]``."""
    replace = absttl = False
    idle = freq = -1
    j = 4
    while j < len(args):
        opt = args[j].upper()
        more = len(args) - j - 1
        if opt == b"REPLACE":
            replace = True
        elif opt == b"ABSTTL":
            absttl = True
        elif opt == b"IDLETIME" and more >= 1 and freq == -1:
            idle = parse_int(args[j + 1])
            if idle < 0:
                raise ReplyError(INVALID_IDLETIME)
            j += 1
        elif opt == b"FREQ" and more >= 1 and idle == -1:
            freq = parse_int(args[j + 1])
            if not 0 <= freq <= 255:
                raise ReplyError(INVALID_FREQ)
            j += 1
        else:
            raise ReplyError(_SYNTAX)
        j += 1
    key = args[1]
    if not replace and db.get(key) is not None:
        raise ReplyError(BUSYKEY)
    ttl = parse_int(args[2])
    if ttl < 0:
        raise ReplyError(INVALID_TTL)
    try:
        value = load_payload(args[3])
    except DumpError as exc:
        raise ReplyError(exc.message) from None
    if replace:
        db.delete(key)
    if ttl and not absttl:
        ttl = _wrap64(ttl + db.now_ms)
    if ttl and ttl <= db.now_ms:
        return OK  # already expired: Redis creates nothing (a replaced key is just deleted)
    db.set(key, value)
    if ttl:
        db.set_deadline(key, ttl)
    # Each applies under its own policy (Redis's objectSetLRUOrLFU): IDLETIME under LRU,
    # FREQ under LFU; the other is checked and ignored.
    if db.lfu:
        if freq >= 0:
            db.lfu_set(key, freq)
    elif idle >= 0:
        db.atime[key] = db.clock - lru_idle(idle, db.clock)
    return OK
