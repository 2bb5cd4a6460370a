"""The MEMORY family on the workers: USAGE and PURGE, the worker's share of STATS and INFO
memory (``__info``'s ``memory``, from ``shardis.worker.evict``), and ``__maxmemory`` (the
share of maxmemory the router gives each worker).  The router answers HELP, MALLOC-STATS,
STATS and DOCTOR (``shardis.router.memory``)."""

from __future__ import annotations

import re

from shardis import errors
from shardis.commands import Fanout, command, container
from shardis.commands.strings import parse_int
from shardis.config import ULLONG_MAX
from shardis.errors import ReplyError
from shardis.resp import OK
from shardis.worker.keyspace import Keyspace, memory_of

container("memory", acl="slow", group="server")

MEMORY_HELP = [
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
]
command("help", 2, "loading stale", fanout=Fanout.ROUTER, acl="slow", group="server",
        parent="memory")(None)
#: MALLOC-STATS: Python's allocators are not jemalloc; Redis built without it says this.
command("malloc-stats", 2, "", fanout=Fanout.ROUTER, acl="slow", group="server",
        parent="memory",
        tips="nondeterministic_output request_policy:all_shards response_policy:special")(None)
NO_ALLOCATOR_STATS = b"Stats not supported for the current allocator"


@command("purge", 2, "", fanout=Fanout.ALL_OK, acl="slow", group="server", parent="memory",
         tips="request_policy:all_shards response_policy:all_succeeded")
def memory_purge_command(db: Keyspace, args: list[bytes]) -> object:
    """Give freed memory back: a full garbage collection, then glibc's ``malloc_trim``
    (Redis asks jemalloc to purge its dirty pages)."""
    purge_memory()
    return OK


def purge_memory() -> None:
    """Collect every generation, then hand glibc's free pages back to the system."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the collection is all there is


@command("usage", -3, "readonly", keys=(2, 2, 1), acl="read slow", parent="memory",
         group="server")
def memory_usage_command(db: Keyspace, args: list[bytes]) -> object:
    """MEMORY USAGE key [SAMPLES count]: elements sampled, 5 by default, 0 for all."""
    samples = 5
    j = 3
    while j < len(args):
        if args[j].upper() != b"SAMPLES" or j + 1 >= len(args):
            raise ReplyError(errors.SYNTAX)
        samples = parse_int(args[j + 1])
        if samples < 0:
            raise ReplyError(errors.SYNTAX)
        j += 2
    # Redis's dictFind: no access counted, and a key past its TTL that no one reclaimed yet
    # is measured, not expired (no "expired" event); the value as stored, packed or not (a
    # packed value's size is its packed size).
    value = db.data.get(args[2])
    return None if value is None else memory_of(args[2], value, samples)


_SPECIAL = "nondeterministic_output request_policy:all_shards response_policy:special"
command("stats", 2, "", fanout=Fanout.COORDINATED, acl="slow", group="server", parent="memory",
        tips=_SPECIAL)(None)
command("doctor", 2, "", fanout=Fanout.COORDINATED, acl="slow", group="server", parent="memory",
        tips=_SPECIAL)(None)


#: A share of maxmemory: a plain unsigned decimal (what ``worker_share`` formats).
_SHARE_RE = re.compile(rb"(?:0|[1-9][0-9]{0,19})\Z")


def parse_share(raw: bytes) -> int:
    """``__maxmemory``'s argument, or Redis's not-an-integer error: a peer's garbage (a sign,
    spaces, ``1_0``, beyond 64 bits) must not become a limit (a negative one would evict
    every key)."""
    if _SHARE_RE.match(raw):
        value = int(raw)
        if value <= ULLONG_MAX:
            return value
    raise ReplyError(errors.NOT_INTEGER)


@command("__maxmemory", 2, "admin internal", fanout=Fanout.SINGLE)
def shard_maxmemory_command(db: Keyspace, args: list[bytes]) -> object:
    """``__maxmemory <bytes>``: this worker's share of maxmemory (0: no limit)."""
    evictor = db.shard.evictor  # type: ignore[attr-defined]
    evictor.set_limit(parse_share(args[1]))
    if evictor.limit:
        evictor.perform()  # over the new limit: evict now, as CONFIG SET maxmemory does
    return OK


@command("__oom", -1, "readonly internal", fanout=Fanout.SINGLE)
def shard_oom_command(db: Keyspace, args: list[bytes]) -> object:
    """``__oom [command ...]``: 1 if this worker is over its share with nothing left to
    evict (EXEC asks before a transaction that may grow memory) and, with a command (a
    queued script or function, whose declared flags only a worker knows), that command may
    grow memory; 0 otherwise.  It evicts first, as Redis's ``performEvictions`` before any
    command."""
    shard = db.shard  # type: ignore[attr-defined]
    evictor = shard.evictor
    if not evictor.limit or evictor.perform():
        return 0
    return int(len(args) == 1 or shard.may_grow_memory(args[1:]))
