"""SORT and SORT_RO across workers.

The plan parses the options first (syntax and ACL errors come before any key is read, as in
Redis), then:

* every key it can touch is on the source's worker: the command is forwarded whole there,
  and runs as in Redis.  That is when no pattern names a key (no BY pattern with ``*`` in
  use, no GET pattern other than ``#``), or each pattern pins its keys to one slot with a hash
  tag before its ``*`` (``{u}w_*``), on that worker; and the STORE destination, if any, too;
* otherwise every worker involved is gated: all of them when a pattern's keys can be
  anywhere (they are known only once the source is read), so that the operation sees one
  moment of the dataset and nobody sees the destination half-written.  Under the gate: read the source (``__sortread``), fetch the BY
  weights with one ``__sortfetch`` per worker (all sent before the first wait), sort with the
  worker's own functions, fetch the GET values of the window the same way, and reply or
  replace the destination (``__sortstore``).
"""

from __future__ import annotations

from typing import Any

from shardis.commands.sort import (
    Request,
    SortOptions,
    Source,
    fixed_slot_key,
    full_key_access,
    lookup_in,
    lookup_requests,
    parse_sort,
    project,
    sort_window,
    source_from_read,
)
from shardis.errors import raise_if_error
from shardis.router.registry import Plan, coordinated


def _options(client: Any, args: list[bytes]) -> SortOptions:
    """The options, checked for ``client`` (its ACL user: BY/GET patterns need every key)."""
    user = None if client is None else getattr(client, "user", None)
    readonly = args[0].lower() == b"sort_ro"
    return parse_sort(args, readonly, full_key_access(user, args))


def _pattern_workers(router: Any, opts: SortOptions) -> frozenset[int] | None:
    """The workers the patterns' keys can be on: all of them, unless every pattern pins its
    keys to one slot with a hash tag before the ``*`` (``{user}w_*``)."""
    workers = set()
    for pattern in opts.lookup_patterns():
        slot_key = fixed_slot_key(pattern)
        if slot_key is None:
            return None
        workers.add(router.worker_of(slot_key))
    return frozenset(workers)


def sort_plan(router: Any, args: list[bytes]) -> Plan:
    opts = _options(router.current_client, args)  # the client being planned for
    source = router.worker_of(args[1])
    workers = {source}
    if opts.store is not None:
        workers.add(router.worker_of(opts.store))
    pattern_workers = _pattern_workers(router, opts)
    if pattern_workers is None:
        return Plan(workers=frozenset(range(len(router.links))), exclusive=True)
    workers |= pattern_workers
    if len(workers) == 1:
        return Plan(forward_to=source)
    return Plan(workers=frozenset(workers), exclusive=True)


async def fetch_values(router: Any, requests: list[Request]) -> dict[Request, bytes | None]:
    """The value of each request, read with one ``__sortfetch`` per worker, all sent before
    the first wait."""
    by_worker: dict[int, list[Request]] = {}
    for request in requests:
        by_worker.setdefault(router.worker_of(request[0]), []).append(request)
    calls = {
        worker: router.call(worker, [b"__sortfetch", *(part for req in reqs for part in req)])
        for worker, reqs in by_worker.items()
    }
    found: dict[Request, bytes | None] = {}
    for worker, call in calls.items():
        found.update(zip(by_worker[worker], raise_if_error(await call)))  # type: ignore[arg-type]
    return found


async def _lookup_of(router: Any, patterns: list[bytes], elements: list[bytes]) -> Any:
    """A lookup function over the values ``patterns`` name for ``elements``, prefetched."""
    values = await fetch_values(router, lookup_requests(patterns, elements))
    return lookup_in(values.__getitem__)


@coordinated("sort", sort_plan)
@coordinated("sort_ro", sort_plan)
async def sort(router: Any, client: Any, args: list[bytes]) -> object:
    """Under the gate: read the source, fetch the BY weights, sort, fetch the GET values of
    the window, then reply or store."""
    opts = _options(client, args)
    reply = await router.call(router.worker_of(args[1]), [b"__sortread", args[1]])
    source: Source = source_from_read(raise_if_error(reply))  # type: ignore[arg-type]
    sorting_by = [opts.by] if opts.by is not None and not opts.dontsort else []
    weights = await _lookup_of(router, sorting_by, source.elements)
    window = sort_window(source, opts, weights)
    items = project(window, opts.gets, await _lookup_of(router, opts.gets, window))
    if opts.store is None:
        return items
    stored = [b"" if item is None else item for item in items]
    request = [b"__sortstore", opts.store, *stored]
    return raise_if_error(await router.call(router.worker_of(opts.store), request))
