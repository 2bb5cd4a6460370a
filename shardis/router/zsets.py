"""Sorted-set commands that span workers.

When every key of a command lives on one worker the command is forwarded whole.  Otherwise:

* ZUNION, ZINTER, ZDIFF, ZINTERCARD read their sources with one ``__zgather`` per worker, all
  sent in the first step (one batch: one moment of every worker, like MGET), and compute the
  result here with the functions the workers use.  Redis checks the sources' types before
  parsing the options, so the options are parsed after the gather.
* ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE and ZRANGESTORE gate every worker involved, read, then
  replace the destination with ``__zstore``: nobody sees the sources change in between or the
  destination half-written.
* ZMPOP gates its workers and pops from the first non-empty zset in key order, like LMPOP;
  BZMPOP's cross-worker attempt is that ZMPOP.  BZPOPMIN/BZPOPMAX use the default attempt
  (each key in order with ``__tryblock``).
"""

from __future__ import annotations

from typing import Any

from shardis.commands.zsets import (
    Source,
    algebra_reply,
    intercard_reply,
    parse_numkeys,
    parse_zmpop,
    source_from_gather,
    store_result,
)
from shardis.errors import raise_if_error
from shardis.resp import NULL_ARRAY, encode, format_double
from shardis.router.blocking import BlockedRequest, BlockingCoordinator, cross_attempt
from shardis.router.keys import two_key_plan
from shardis.router.registry import coordinated, keys_plan


async def gather_sources(router: Any, keys: list[bytes]) -> list[Source]:
    """The sources at ``keys`` (None for a missing key), one request per worker, all sent
    before the first wait; WRONGTYPE if any key is neither a zset nor a set."""
    by_worker: dict[int, list[bytes]] = {}
    for key in keys:
        by_worker.setdefault(router.worker_of(key), []).append(key)
    requests = {w: router.call(w, [b"__zgather", *ks]) for w, ks in by_worker.items()}
    found: dict[bytes, Source] = {}
    for worker, request in requests.items():
        entries = raise_if_error(await request)
        for key, entry in zip(by_worker[worker], entries):  # type: ignore[call-overload]
            found[key] = source_from_gather(entry)
    return [found[key] for key in keys]


def _name(args: list[bytes]) -> str:
    return args[0].lower().decode("latin-1")


# ZUNION / ZINTER / ZDIFF / ZINTERCARD ---------------------------------------------------------
def _read_keys(args: list[bytes]) -> list[bytes]:
    return parse_numkeys(args, 1, _name(args))


_read_plan = keys_plan(_read_keys, exclusive=False)
_OPS = {"zunion": "union", "zinter": "inter", "zdiff": "diff",
        "zunionstore": "union", "zinterstore": "inter", "zdiffstore": "diff"}


@coordinated("zunion", _read_plan)
@coordinated("zinter", _read_plan)
@coordinated("zdiff", _read_plan)
async def algebra(router: Any, client: Any, args: list[bytes]) -> object:
    sources = await gather_sources(router, _read_keys(args))
    return algebra_reply(args, sources, _OPS[_name(args)])


@coordinated("zintercard", _read_plan)
async def zintercard(router: Any, client: Any, args: list[bytes]) -> object:
    return intercard_reply(args, await gather_sources(router, _read_keys(args)))


# Z*STORE / ZRANGESTORE ------------------------------------------------------------------------
def _store_keys(args: list[bytes]) -> list[bytes]:
    return [args[1], *parse_numkeys(args, 2, _name(args))]  # the destination's worker too


async def store(router: Any, destination: bytes, items: list[tuple[bytes, float]]) -> object:
    """Replace ``destination`` on its worker by a zset of ``items`` (delete if none)."""
    flat = [part for member, score in items for part in (member, format_double(score))]
    request = [b"__zstore", destination, *flat]
    return raise_if_error(await router.call(router.worker_of(destination), request))


@coordinated("zunionstore", keys_plan(_store_keys, exclusive=True))
@coordinated("zinterstore", keys_plan(_store_keys, exclusive=True))
@coordinated("zdiffstore", keys_plan(_store_keys, exclusive=True))
async def algebra_store(router: Any, client: Any, args: list[bytes]) -> object:
    """Under the gate: gather the sources, compute, replace the destination."""
    sources = await gather_sources(router, _store_keys(args)[1:])
    result = store_result(args, sources, _OPS[_name(args)])
    return await store(router, args[1], list(result.items()))


@coordinated("zrangestore", two_key_plan)
async def zrangestore(router: Any, client: Any, args: list[bytes]) -> object:
    """Under the gate: read the range on the source's worker (argument errors and WRONGTYPE
    come from there, in Redis's order), then store it on the destination's."""
    source = router.worker_of(args[2])
    flat = raise_if_error(await router.call(source, [b"__zrangeread", *args[1:]]))
    items = [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]  # type: ignore[index, arg-type]
    return await store(router, args[1], items)


# ZMPOP / BZMPOP ------------------------------------------------------------------------------
def _zmpop_keys(args: list[bytes]) -> list[bytes]:
    return parse_zmpop(args)[0]


@coordinated("zmpop", keys_plan(_zmpop_keys, exclusive=True))
async def zmpop(router: Any, client: Any, args: list[bytes]) -> object:
    """Measure every key at once (ZCARD: 0 if missing, WRONGTYPE if not a zset), then pop from
    the first non-empty zset in argument order, as Redis does; a null array when all are
    empty.  The pop runs as a one-key ZMPOP on its worker, which answers Redis's reply."""
    keys, where, count = parse_zmpop(args)
    side = b"MIN" if where == 0 else b"MAX"
    sizes = [router.call(router.worker_of(key), [b"ZCARD", key]) for key in keys]
    for key, size in zip(keys, sizes):
        if not raise_if_error(await size):
            continue
        request = [b"ZMPOP", b"1", key, side, b"COUNT", b"%d" % count]
        popped = raise_if_error(await router.call(router.worker_of(key), request))
        if popped is not None:
            return popped
    return NULL_ARRAY


@cross_attempt("bzmpop")
async def _bzmpop(coordinator: BlockingCoordinator, request: BlockedRequest) -> bytes | None:
    reply = await zmpop(coordinator.router, request.client, [b"ZMPOP", *request.args[2:]])
    return None if reply is NULL_ARRAY else encode(reply, request.proto)
