"""Expiry commands: EXPIRE and friends, TTL and friends, PERSIST (Redis's expire.c).

Deadlines are absolute Unix times in milliseconds, stored per key in the shard's keyspace;
expired keys vanish on access (``Keyspace.get``/``peek``) or through the keyspace's active
expiry (see ``shardis.worker.keyspace`` for the engine and the clock).

Checked against Redis 7.0.15 by tests/test_diff_expiry.py.  Details that matter: options are
parsed before the number and both before the key is looked up; options compare as C strings
(``"nx\0junk"`` is NX); a deadline ``<= now`` deletes the key and answers 1; TTL rounds to the
nearest second (so does EXPIRETIME); TTL/EXPIRETIME do not count as an access.
"""

from __future__ import annotations

from shardis import errors
from shardis.commands import command
from shardis.commands.strings import LLONG_MAX, LLONG_MIN, parse_int
from shardis.errors import ReplyError
from shardis.worker.keyspace import Keyspace

_NX, _XX, _GT, _LT = 1, 2, 4, 8
_OPTIONS = {b"NX": _NX, b"XX": _XX, b"GT": _GT, b"LT": _LT}


def parse_expire_options(args: list[bytes]) -> int:
    """NX/XX/GT/LT after the number, with Redis's errors (in Redis's order)."""
    flags = 0
    for raw in args[3:]:
        if b"\0" in raw:
            raw = raw.split(b"\0", 1)[0]  # Redis compares with strcasecmp: a C string
        flag = _OPTIONS.get(raw.upper())
        if flag is None:
            raise ReplyError(f"ERR Unsupported option {errors.arg_text(raw)}")
        flags |= flag
    if flags & _NX and flags & (_XX | _GT | _LT):
        raise ReplyError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if flags & _GT and flags & _LT:
        raise ReplyError("ERR GT and LT options at the same time are not compatible")
    return flags


def expire_generic(db: Keyspace, args: list[bytes], base_ms: int, in_seconds: bool) -> int:
    """EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: ``base_ms`` is now for relative forms, else 0."""
    key = args[1]
    flags = parse_expire_options(args)
    when = parse_int(args[2])
    name = args[0].decode(errors="replace").lower()
    if in_seconds:
        if when > LLONG_MAX // 1000 or when < -(-LLONG_MIN // 1000):
            raise ReplyError(errors.INVALID_EXPIRE.format(name))
        when *= 1000
    if when > LLONG_MAX - base_ms:
        raise ReplyError(errors.INVALID_EXPIRE.format(name))
    when += base_ms
    if db.get(key) is None:
        return 0
    current = db.deadline(key)
    if flags & _NX and current is not None:
        return 0
    if flags & _XX and current is None:
        return 0
    if flags & _GT and (current is None or when <= current):
        return 0
    if flags & _LT and current is not None and when >= current:
        return 0
    if when <= db.now_ms:
        db.delete(key)
    else:
        db.set_deadline(key, when)
    return 1


@command("expire", -3, "write fast", keys=(1, 1, 1), acl="keyspace write fast")
def expire_command(db: Keyspace, args: list[bytes]) -> object:
    return expire_generic(db, args, db.now_ms, in_seconds=True)


@command("pexpire", -3, "write fast", keys=(1, 1, 1), acl="keyspace write fast")
def pexpire_command(db: Keyspace, args: list[bytes]) -> object:
    return expire_generic(db, args, db.now_ms, in_seconds=False)


@command("expireat", -3, "write fast", keys=(1, 1, 1), acl="keyspace write fast")
def expireat_command(db: Keyspace, args: list[bytes]) -> object:
    return expire_generic(db, args, 0, in_seconds=True)


@command("pexpireat", -3, "write fast", keys=(1, 1, 1), acl="keyspace write fast")
def pexpireat_command(db: Keyspace, args: list[bytes]) -> object:
    return expire_generic(db, args, 0, in_seconds=False)


def ttl_generic(db: Keyspace, key: bytes, in_ms: bool, absolute: bool) -> int:
    """TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 missing, -1 no deadline; seconds are rounded."""
    if db.peek(key) is None:
        return -2
    deadline = db.deadline(key)
    if deadline is None:
        return -1
    ttl = max(deadline if absolute else deadline - db.now_ms, 0)
    return ttl if in_ms else (ttl + 500) // 1000


@command("ttl", 2, "readonly fast", keys=(1, 1, 1), acl="keyspace read fast",
         tips="nondeterministic_output")
def ttl_command(db: Keyspace, args: list[bytes]) -> object:
    return ttl_generic(db, args[1], in_ms=False, absolute=False)


@command("pttl", 2, "readonly fast", keys=(1, 1, 1), acl="keyspace read fast",
         tips="nondeterministic_output")
def pttl_command(db: Keyspace, args: list[bytes]) -> object:
    return ttl_generic(db, args[1], in_ms=True, absolute=False)


@command("expiretime", 2, "readonly fast", keys=(1, 1, 1), acl="keyspace read fast")
def expiretime_command(db: Keyspace, args: list[bytes]) -> object:
    return ttl_generic(db, args[1], in_ms=False, absolute=True)


@command("pexpiretime", 2, "readonly fast", keys=(1, 1, 1), acl="keyspace read fast")
def pexpiretime_command(db: Keyspace, args: list[bytes]) -> object:
    return ttl_generic(db, args[1], in_ms=True, absolute=True)


@command("persist", 2, "write fast", keys=(1, 1, 1), acl="keyspace write fast")
def persist_command(db: Keyspace, args: list[bytes]) -> object:
    if db.get(args[1]) is None:
        return 0
    return int(db.persist(args[1]))
