"""Set (and hash) commands that span workers, plus HRANDFIELD's reply shape.

When every key of a command lives on one worker the command is forwarded whole.  Otherwise:

* SUNION, SINTER, SDIFF, SINTERCARD read the sets with one ``__sgather`` per worker, all sent
  in the first step (so they leave in one batch and see one moment of every worker, like MGET),
  and compute the result here with the same functions the workers use.
* SUNIONSTORE, SINTERSTORE, SDIFFSTORE gate every worker involved, gather the same way, then
  replace the destination with ``__sstore``: nobody sees the sources change in between or the
  destination half-written.
* SMOVE gates both workers: check (types, membership), then SREM and SADD.

HRANDFIELD ... WITHVALUES answers nested pairs in RESP3 and a flat array in RESP2, which a
worker op cannot tell apart; the worker answers pairs and this module flattens them for RESP2.
"""

from __future__ import annotations

from typing import Any

from shardis import errors
from shardis.commands.sets import (
    SET_OPS,
    Sources,
    parse_sintercard,
    set_from_gather,
    set_reply,
    sintercard_reply,
)
from shardis.errors import ReplyError, raise_if_error
from shardis.router.registry import coordinated, keys_plan


async def gather_sets(router: Any, keys: list[bytes]) -> Sources:
    """The sets at ``keys`` (None for a missing key), read with one request per worker, all
    sent before the first wait; WRONGTYPE if any key holds another type."""
    by_worker: dict[int, list[bytes]] = {}
    for key in keys:
        by_worker.setdefault(router.worker_of(key), []).append(key)
    requests = {w: router.call(w, [b"__sgather", *ks]) for w, ks in by_worker.items()}
    found: dict[bytes, Any] = {}
    for worker, request in requests.items():
        entries = raise_if_error(await request)
        for key, entry in zip(by_worker[worker], entries):
            found[key] = set_from_gather(entry)
    return [found[key] for key in keys]


# SUNION / SINTER / SDIFF ---------------------------------------------------------------------
def _source_keys(args: list[bytes]) -> list[bytes]:
    return args[1:]


_read_plan = keys_plan(_source_keys, exclusive=False)


@coordinated("sunion", _read_plan)
@coordinated("sinter", _read_plan)
@coordinated("sdiff", _read_plan)
async def algebra(router: Any, client: Any, args: list[bytes]) -> object:
    op = SET_OPS[args[0].lower()]
    return set_reply(op(await gather_sets(router, args[1:])))



# SUNIONSTORE / SINTERSTORE / SDIFFSTORE ------------------------------------------------------
def _store_keys(args: list[bytes]) -> list[bytes]:
    return args[1:]  # the destination too: its worker is written


_store_plan = keys_plan(_store_keys, exclusive=True)


@coordinated("sunionstore", _store_plan)
@coordinated("sinterstore", _store_plan)
@coordinated("sdiffstore", _store_plan)
async def algebra_store(router: Any, client: Any, args: list[bytes]) -> object:
    """Under the gate: gather the sources, compute, replace the destination."""
    destination = args[1]
    result = SET_OPS[args[0].lower()](await gather_sets(router, args[2:]))
    request = [b"__sstore", destination, b"1" if result.intset else b"0", *result]
    return raise_if_error(await router.call(router.worker_of(destination), request))



# SINTERCARD ----------------------------------------------------------------------------------
def _sintercard_keys(args: list[bytes]) -> list[bytes]:
    return parse_sintercard(args)[0]  # argument errors are the plan's, before any key


@coordinated("sintercard", keys_plan(_sintercard_keys, exclusive=False))
async def sintercard(router: Any, client: Any, args: list[bytes]) -> object:
    keys, limit = parse_sintercard(args)
    return sintercard_reply(await gather_sets(router, keys), limit)


# SMOVE ---------------------------------------------------------------------------------------
def _smove_keys(args: list[bytes]) -> list[bytes]:
    return args[1:3]


@coordinated("smove", keys_plan(_smove_keys, exclusive=True))
async def smove(router: Any, client: Any, args: list[bytes]) -> object:
    """Across two workers, both gated: Redis's checks, then the move."""
    source_key, target_key, member = args[1], args[2], args[3]
    source, target = router.worker_of(source_key), router.worker_of(target_key)
    checks = (
        router.call(source, [b"TYPE", source_key]),
        router.call(source, [b"SISMEMBER", source_key, member]),
        router.call(target, [b"TYPE", target_key]),
    )
    source_type, is_member, target_type = [await check for check in checks]
    if source_type == b"none":
        return 0
    if source_type != b"set" or target_type not in (b"none", b"set"):
        raise ReplyError(errors.WRONGTYPE)
    if not raise_if_error(is_member):
        return 0
    removed = router.call(source, [b"SREM", source_key, member])
    added = router.call(target, [b"SADD", target_key, member])
    raise_if_error(await removed)
    raise_if_error(await added)
    return 1
