"""Bitmap commands that span workers: BITOP with its keys on several workers.

When the destination and every source live on one worker, BITOP is forwarded whole.  Otherwise
every involved worker is gated (the destination's too, since it is written), the sources are
read with one GET each, all sent in the first step so that they leave in one batch round, the
result is computed here with the workers' own function, and ``__bitstore`` replaces the
destination.  The gate is what makes it atomic: no command reaches those workers between the
reads and the write, so nobody sees sources that changed meanwhile or a half-done BITOP.
"""

from __future__ import annotations

from typing import Any

from shardis.commands.bitmaps import bitop_result, parse_bitop
from shardis.errors import raise_if_error
from shardis.router.registry import Plan, coordinated


def bitop_plan(router: Any, args: list[bytes]) -> Plan:
    """Argument errors first (as in Redis, before any key is read), then where it runs."""
    parse_bitop(args)
    workers = frozenset(router.worker_of(key) for key in args[2:])
    if len(workers) == 1:
        return Plan(forward_to=next(iter(workers)))
    return Plan(workers=workers, exclusive=True)


@coordinated("bitop", bitop_plan)
async def bitop(router: Any, client: Any, args: list[bytes]) -> object:
    """Gather, compute, store: the plan gated every worker involved."""
    name = parse_bitop(args)
    destination = args[2]
    reads = [router.call(router.worker_of(key), [b"GET", key]) for key in args[3:]]
    values = [await read for read in reads]  # every read answered before any error is raised
    sources = [raise_if_error(value) for value in values]
    result = bitop_result(name, sources)  # type: ignore[arg-type]
    store = [b"__bitstore", destination, bytes(result)]
    return raise_if_error(await router.call(router.worker_of(destination), store))
