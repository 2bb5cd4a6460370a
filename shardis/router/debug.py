"""DEBUG SLEEP, DEBUG OBJECT and DEBUG SET-ACTIVE-EXPIRE: what tests and operators use.

Gated by ``enable-debug-command`` with DEBUG RELOAD (``shardis.router.server``), which hands
these subcommands to :data:`SUBCOMMANDS`: ``name -> (plan, run)``.

* SLEEP <seconds>: every worker stops that long (``__debug_sleep``), so the whole server
  does, as Redis's ``debug sleep`` stops Redis; the router itself goes on reading.
* OBJECT <key>: Redis's line (``Value at:... refcount:1 encoding:embstr serializedlength:4
  lru:... lru_seconds_idle:0``, and ``ql_*`` fields for lists) from the key's worker; the
  address is the value's id, the serialized length its RDB encoding's, as Redis's.
* SET-ACTIVE-EXPIRE <0|1>: background expiry off or on, on every worker (keys still expire
  when they are accessed).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from shardis.commands.dump import LRU_CLOCK_MAX
from shardis.errors import ReplyError
from shardis.resp import OK, Status
from shardis.router.registry import Plan


def _c_double(text: bytes) -> float:
    """C's atof: the longest leading number, 0 when there is none (Redis sleeps 0 then)."""
    for end in range(len(text), 0, -1):
        try:
            return max(float(text[:end]), 0.0)
        except ValueError:
            continue
    return 0.0


def _c_atoi(text: bytes) -> int:
    """C's atoi: an optional sign and the leading digits, 0 when there are none."""
    match = re.match(rb"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def _all_plan(router: Any, args: list[bytes]) -> Plan:
    _arity(args, 3)
    return Plan(workers=router.all_workers)


def _key_plan(router: Any, args: list[bytes]) -> Plan:
    _arity(args, 3)
    return Plan(workers=frozenset({router.worker_of(args[2])}))


def _arity(args: list[bytes], count: int) -> None:
    if len(args) != count:
        raise ReplyError("ERR unknown subcommand or wrong number of arguments for "
                         f"'{args[1].decode(errors='replace')}'. Try DEBUG HELP.")


async def _sleep(router: Any, client: Any, args: list[bytes]) -> object:
    seconds = _c_double(args[2])
    if seconds:
        await _all_ok(router, [b"__debug_sleep", repr(seconds).encode()])
    return OK


async def _object(router: Any, client: Any, args: list[bytes]) -> object:
    reply = await router.call(router.worker_of(args[2]), [b"__debug_object", args[2]])
    if type(reply) is ReplyError:
        raise reply
    return Status(reply)


async def _active_expire(router: Any, client: Any, args: list[bytes]) -> object:
    enabled = _c_atoi(args[2]) != 0
    await _all_ok(router, [b"__debug_active_expire", b"1" if enabled else b"0"])
    return OK


async def _all_ok(router: Any, request: list[bytes]) -> None:
    for reply in await router.call_all(request):
        if type(reply) is ReplyError:
            raise reply


Run = Callable[[Any, Any, list], Awaitable[object]]
SUBCOMMANDS: dict[bytes, tuple[Callable[[Any, list], Plan], Run]] = {
    b"sleep": (_all_plan, _sleep),
    b"object": (_key_plan, _object),
    b"set-active-expire": (_all_plan, _active_expire),
}

#: DEBUG HELP's entries for these, in Redis's order around RELOAD.
HELP_OBJECT = [
    "OBJECT <key>",
    "    Show low level info about `key` and associated value.",
]
HELP_AFTER_RELOAD = [
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
]


# DEBUG OBJECT, on the worker ---------------------------------------------------------------
def debug_object_line(db: Any, key: bytes, value: object) -> bytes:
    """``debugCommand``'s OBJECT line for ``value`` (run on the key's worker)."""
    from shardis.commands.keys import encoding_of, object_refcount_command
    from shardis.persist.dump import dump_payload

    encoding = encoding_of(db, key, value)
    refcount = object_refcount_command(db, [b"OBJECT", b"REFCOUNT", key])
    # The DUMP payload is the type byte, the RDB body, 2 bytes of version and 8 of CRC.
    serialized = len(dump_payload(value)) - 11
    idle = db.idle_seconds(key)
    lru = (db.clock - idle) & LRU_CLOCK_MAX
    line = (b"Value at:0x%x refcount:%d encoding:%s serializedlength:%d lru:%d "
            b"lru_seconds_idle:%d" % (id(value), refcount if refcount else 1, encoding,
                                      serialized, lru, idle))
    if encoding == b"quicklist" and isinstance(value, deque):
        line += quicklist_fields(value)
    return line


def quicklist_fields(items: deque) -> bytes:
    """The ``ql_*`` fields: nodes filled as Redis fills them, their listpacks' sizes."""
    from shardis.persist import packs
    from shardis.persist.rdb import quicklist_nodes

    nodes = quicklist_nodes(items)
    uncompressed = sum(len(packs.listpack_from_entries(node)) for node in nodes)
    average = len(items) / len(nodes) if nodes else 0.0
    return (b" ql_nodes:%d ql_avg_node:%.2f ql_listpack_max:-2 ql_compressed:0 "
            b"ql_uncompressed_size:%d" % (len(nodes), average, uncompressed))
