"""Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP): their table entries, how each tries to complete without
waiting, and the internal commands the router uses to park and release them on a worker.

Sent plainly (inside MULTI, as Redis does) a blocking command never waits: it answers nil.
The router sends it wrapped in ``__block``, which parks it in the shard's registry when it
cannot complete (see ``shardis.worker.blocking`` and ``shardis.router.blocking``).
"""

from __future__ import annotations

from collections import deque

from shardis import errors
from shardis.commands import COMMANDS, Fanout, command, keys_after_numkeys, lookup
from shardis.commands.lists import (
    LEFT,
    RIGHT,
    lmove_generic,
    mpop_generic,
    parse_lmpop,
    parse_position,
)
from shardis.errors import ReplyError
from shardis.resp import NULL_ARRAY
from shardis.worker.blocking import (
    ATTEMPTS,
    BLOCKED,
    BLOCKERS,
    Waiter,
    blocking_attempt,
    numkeys_narrowed,
    unchanged,
)
from shardis.worker.keyspace import Keyspace


def pop_first_nonempty(db: Keyspace, keys: list[bytes], left: bool) -> list[bytes] | None:
    """[key, element] from the first non-empty list among ``keys``; WRONGTYPE as Redis checks
    it, key by key, until one has data."""
    for key in keys:
        value = db.get(key)
        if value is None:
            continue
        if type(value) is not deque:
            raise ReplyError(errors.WRONGTYPE)
        element = value.popleft() if left else value.pop()
        if value:
            db.changed(key)
        else:
            db.delete(key)
        return [key, element]
    return None


@blocking_attempt("blpop", b"list")
def blpop_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    return pop_first_nonempty(db, args[1:-1], left=True)


@blocking_attempt("brpop", b"list")
def brpop_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    return pop_first_nonempty(db, args[1:-1], left=False)


@command("blpop", -3, "write noscript blocking", keys=(1, -2, 1), fanout=Fanout.BLOCKING,
         acl="write list slow blocking", group="list", timeout_arg=-1)
def blpop_command(db: Keyspace, args: list[bytes]) -> object:
    reply = blpop_attempt(db, args)
    return NULL_ARRAY if reply is None else reply


@command("brpop", -3, "write noscript blocking", keys=(1, -2, 1), fanout=Fanout.BLOCKING,
         acl="write list slow blocking", group="list", timeout_arg=-1)
def brpop_command(db: Keyspace, args: list[bytes]) -> object:
    reply = brpop_attempt(db, args)
    return NULL_ARRAY if reply is None else reply


def source_only(args: list[bytes]) -> list[bytes]:
    """BLMOVE and BRPOPLPUSH wait for their source; their destination is no concern."""
    return [args[1]]


@blocking_attempt("blmove", b"list", unchanged, source_only)
def blmove_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    wherefrom, whereto = parse_position(args[3]), parse_position(args[4])
    return lmove_generic(db, args[1], args[2], wherefrom, whereto)


@blocking_attempt("brpoplpush", b"list", unchanged, source_only)
def brpoplpush_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    return lmove_generic(db, args[1], args[2], RIGHT, LEFT)


@blocking_attempt("blmpop", b"list", numkeys_narrowed)
def blmpop_attempt(db: Keyspace, args: list[bytes]) -> object | None:
    keys, where, count = parse_lmpop(args, numkeys_index=2)
    reply = mpop_generic(db, keys, where, count)
    return None if reply is NULL_ARRAY else reply


@command("blmove", 6, "write denyoom noscript blocking", keys=(1, 2, 1), fanout=Fanout.BLOCKING,
         acl="write list slow blocking", group="list", timeout_arg=-1)
def blmove_command(db: Keyspace, args: list[bytes]) -> object:
    return blmove_attempt(db, args)  # None: nil, the non-blocking answer


@command("brpoplpush", 4, "write denyoom noscript blocking", keys=(1, 2, 1),
         fanout=Fanout.BLOCKING, acl="write list slow blocking", group="list", timeout_arg=-1)
def brpoplpush_command(db: Keyspace, args: list[bytes]) -> object:
    return brpoplpush_attempt(db, args)


@command("blmpop", -5, "write blocking movablekeys", fanout=Fanout.BLOCKING,
         acl="write list slow blocking", group="list", timeout_arg=1,
         key_finder=keys_after_numkeys(2))
def blmpop_command(db: Keyspace, args: list[bytes]) -> object:
    reply = blmpop_attempt(db, args)
    return NULL_ARRAY if reply is None else reply


# Internal: router -> worker --------------------------------------------------------------------


@command("__block", -6, "write internal", fanout=Fanout.SINGLE)
def internal_block_command(db: Keyspace, args: list[bytes]) -> object:
    """``__block ticket notify_only(0|1) proto command...``.

    Runs the command's attempt (unless notify-only); if it cannot complete, parks it under the
    ticket on every key it names and answers BLOCKED.  Attempt and parking happen in one step,
    so no push can slip in between.
    """
    ticket, notify_only, proto = int(args[1]), args[2] == b"1", int(args[3])
    inner = args[4:]
    spec = lookup(inner)
    blocker = BLOCKERS[spec.name.encode()]
    if not notify_only:
        reply = blocker.attempt(db, inner)
        if reply is not None:
            return reply
    if blocker.sources is None:
        keys = [inner[i] for i in spec.key_indexes(inner)]
    else:
        keys = blocker.sources(inner)
    db.blocking.register(Waiter(ticket, proto, inner, keys, notify_only, blocker,  # type: ignore[attr-defined]
                                db.index))
    return BLOCKED


@command("__tryblock", -2, "write internal", fanout=Fanout.SINGLE)
def internal_try_command(db: Keyspace, args: list[bytes]) -> object:
    """``__tryblock command...``: the attempt alone; BLOCKED when it would have to wait."""
    inner = args[1:]
    reply = ATTEMPTS[lookup(inner).name.encode()](db, inner)
    return BLOCKED if reply is None else reply


def _attempt_denies_oom(db: Keyspace, args: list[bytes]) -> bool:
    """``Shard.may_grow_memory`` for ``__block``/``__tryblock``: the wrapped command's
    ``denyoom`` (BLMOVE, BRPOPLPUSH) refuses its attempt out of memory, as Redis refuses the
    command; a notify-only registration attempts nothing."""
    if args[0].lower() == b"__tryblock":
        inner = args[1:]
    elif args[2] == b"1":
        return False
    else:
        inner = args[4:]
    try:
        return "denyoom" in lookup(inner).flags
    except ReplyError:
        return False  # its own error comes next


for _name in (b"__block", b"__tryblock"):
    COMMANDS[_name].oom_flags = _attempt_denies_oom  # type: ignore[attr-defined]


@command("__unblock", 2, "write internal", fanout=Fanout.SINGLE)
def internal_unblock_command(db: Keyspace, args: list[bytes]) -> object:
    """``__unblock ticket``: 1 if it was still parked here (and no longer is), else 0."""
    return int(db.blocking.remove(int(args[1])))  # type: ignore[attr-defined]
