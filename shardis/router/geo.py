"""GEO searches that store across workers: GEORADIUS/GEORADIUSBYMEMBER ... STORE|STOREDIST
and GEOSEARCHSTORE.

When the source and the destination live on one worker (or there is no destination) the
command is forwarded whole.  Otherwise both workers are gated; the source's worker runs the
whole command with ``__geosearch`` (so every argument error and WRONGTYPE comes from there, in
Redis's order) and answers what would be stored; the destination's worker then replaces the
destination with ``__georadiusstore``/``__geosearchstore`` (the zset store path of
``shardis.commands.zsets``, under the name of Redis's keyspace event), or deletes it when the
result is empty, as Redis does.
"""

from __future__ import annotations

from typing import Any

from shardis.commands.geo import georadius_keys, georadius_store_key
from shardis.errors import raise_if_error
from shardis.router.keys import two_key_plan
from shardis.router.registry import coordinated, keys_plan


def _georadius_keys(args: list[bytes]) -> list[bytes]:
    return [args[i] for i in georadius_keys(args)]


async def search_and_store(router: Any, args: list[bytes], source: bytes, destination: bytes,
                           store_command: bytes) -> object:
    """Under the gate: compute on the source's worker, write on the destination's."""
    request = [b"__geosearch", *args]
    flat = raise_if_error(await router.call(router.worker_of(source), request))
    write = [store_command, destination, *flat]  # type: ignore[misc]
    return raise_if_error(await router.call(router.worker_of(destination), write))


@coordinated("georadius", keys_plan(_georadius_keys, exclusive=True))
@coordinated("georadiusbymember", keys_plan(_georadius_keys, exclusive=True))
async def georadius_store(router: Any, client: Any, args: list[bytes]) -> object:
    """The keys span workers, so there is a destination (see ``georadius_keys``)."""
    stored = georadius_store_key(args)
    if stored is None:  # defensive: run it where the source is
        return raise_if_error(await router.call(router.worker_of(args[1]), args))
    return await search_and_store(router, args, args[1], args[stored], b"__georadiusstore")


@coordinated("geosearchstore", two_key_plan)
async def geosearchstore(router: Any, client: Any, args: list[bytes]) -> object:
    return await search_and_store(router, args, args[2], args[1], b"__geosearchstore")
