"""HyperLogLog commands whose keys span workers: PFCOUNT of several keys, PFMERGE.

When every key lives on one worker the command is forwarded whole.  Otherwise:

* PFCOUNT reads the strings with one ``__pfgather`` per worker, all sent in the first step (so
  they see one moment of every worker, like MGET), then checks and merges them here in key
  order, with the workers' own functions, so the first bad key is the one Redis names.  It
  caches nothing: Redis only caches the cardinality of a single key.
* PFMERGE gates every worker involved (the destination's too), gathers the same way (the
  destination first: Redis merges it as a source), merges, and sends the registers to the
  destination's worker with ``__pfstore``, which writes them as a local PFMERGE would (the
  destination's encoding and header follow Redis's rules there).
"""

from __future__ import annotations

from typing import Any

from shardis.commands.hyperloglog import (
    as_signed,
    estimate,
    merge_values,
    value_from_gather,
)
from shardis.errors import raise_if_error
from shardis.resp import OK
from shardis.router.registry import coordinated, keys_plan


async def gather_values(router: Any, keys: list[bytes]) -> list[object]:
    """The values at ``keys`` as :func:`merge_values` takes them, one request per worker,
    all sent before the first wait."""
    by_worker: dict[int, list[bytes]] = {}
    for key in keys:
        by_worker.setdefault(router.worker_of(key), []).append(key)
    requests = {w: router.call(w, [b"__pfgather", *ks]) for w, ks in by_worker.items()}
    found: dict[bytes, object] = {}
    for worker, request in requests.items():
        entries = raise_if_error(await request)
        for key, entry in zip(by_worker[worker], entries):  # type: ignore[call-overload]
            found[key] = value_from_gather(entry)
    return [found[key] for key in keys]


def _keys(args: list[bytes]) -> list[bytes]:
    return args[1:]


@coordinated("pfcount", keys_plan(_keys, exclusive=False))
async def pfcount(router: Any, client: Any, args: list[bytes]) -> object:
    registers, _ = merge_values(await gather_values(router, args[1:]))  # type: ignore[arg-type]
    return as_signed(estimate(registers))


@coordinated("pfmerge", keys_plan(_keys, exclusive=True))
async def pfmerge(router: Any, client: Any, args: list[bytes]) -> object:
    """Under the gate: gather the destination and the sources, merge, store."""
    destination = args[1]
    values = await gather_values(router, args[1:])
    registers, use_dense = merge_values(values)  # type: ignore[arg-type]
    store = [b"__pfstore", destination, b"1" if use_dense else b"0", registers]
    raise_if_error(await router.call(router.worker_of(destination), store))
    return OK  # a worker's status reply reaches the router as a plain string
