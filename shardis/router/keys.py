"""Key commands that span workers: RENAME/RENAMENX/COPY across workers, RANDOMKEY, SCAN."""

from __future__ import annotations

import random
from typing import Any

from shardis import errors
from shardis.commands import help_reply
from shardis.commands.keys import (
    OBJECT_HELP,
    parse_copy_options,
    parse_cursor,
    parse_scan_options,
    parse_swapdb,
)
from shardis.errors import ReplyError, raise_if_error
from shardis.resp import OK
from shardis.router.registry import Plan, coordinated, router_command


def two_key_plan(router: Any, args: list[bytes]) -> Plan:
    """Forward when both keys live on one worker; otherwise gate both for a multi-step move."""
    source, target = router.worker_of(args[1]), router.worker_of(args[2])
    if source == target:
        return Plan(forward_to=source)
    return Plan(workers=frozenset((source, target)), exclusive=True)



async def move_value(router: Any, args: list[bytes], nx: bool, keep_source: bool,
                     replace: bool, target_db: int | None = None) -> Any:
    """Copy ``args[1]`` to ``args[2]`` on another worker (in database ``target_db``, by
    default the client's); the gate makes it atomic."""
    source_key, target_key = args[1], args[2]
    source, target = router.worker_of(source_key), router.worker_of(target_key)
    payload, exists = await _gather(
        router.call(source, [b"__dump", source_key]),
        router.call(target, [b"EXISTS", target_key], db=target_db),
    )
    raise_if_error(payload)
    if payload is None:
        return None
    if raise_if_error(exists) and (nx or not replace):
        return 0
    mode = b"copy" if keep_source else b"move"
    restore = router.call(target, [b"__restore", target_key, payload, b"1", mode],
                          db=target_db)
    if keep_source:
        raise_if_error(await restore)
    else:
        restored, _ = await _gather(restore, router.call(source, [b"DEL", source_key]))
        raise_if_error(restored)
    return 1


async def _gather(*futures: Any) -> list[Any]:
    return [await future for future in futures]


async def rename_generic(router: Any, args: list[bytes], nx: bool) -> object:
    """RENAME and RENAMENX across two workers (the plan gated both)."""
    moved = await move_value(router, args, nx=nx, keep_source=False, replace=not nx)
    if moved is None:
        raise ReplyError(errors.NO_SUCH_KEY)
    return moved if nx else OK


@coordinated("rename", two_key_plan)
async def rename(router: Any, client: Any, args: list[bytes]) -> object:
    return await rename_generic(router, args, nx=False)


@coordinated("renamenx", two_key_plan)
async def renamenx(router: Any, client: Any, args: list[bytes]) -> object:
    return await rename_generic(router, args, nx=True)


def _copy_options(router: Any, client: Any, args: list[bytes]) -> tuple[bool, int]:
    return parse_copy_options(args, client.db, router.config.get("databases", 16))


def copy_plan(router: Any, args: list[bytes]) -> Plan:
    _copy_options(router, router.current_client, args)  # option errors first, as in Redis
    return two_key_plan(router, args)


@coordinated("copy", copy_plan)
async def copy(router: Any, client: Any, args: list[bytes]) -> object:
    replace, target_db = _copy_options(router, client, args)
    moved = await move_value(router, args, nx=False, keep_source=True, replace=replace,
                             target_db=target_db)
    return moved or 0


def _swapdb_plan(router: Any, args: list[bytes]) -> Plan:
    parse_swapdb(args, router.config.get("databases", 16))
    return Plan(workers=router.all_workers, exclusive=True)


@coordinated("swapdb", _swapdb_plan)
async def swapdb(router: Any, client: Any, args: list[bytes]) -> object:
    """Every worker swaps, with every worker gated: no command sees the swap half done."""
    for reply in await router.call_all(args):
        raise_if_error(reply)
    return OK


def all_workers_plan(router: Any, args: list[bytes]) -> Plan:
    return Plan(workers=router.all_workers)


@coordinated("randomkey", all_workers_plan)
async def randomkey(router: Any, client: Any, args: list[bytes]) -> object:
    """Pick a worker with probability proportional to its size, then its random key."""
    samples = [s for s in await router.call_all([b"__randomkey"]) if type(s) is list]
    weights = [count for count, _ in samples]
    if not any(weights):
        return None
    count, key = random.choices(samples, weights=weights)[0]
    return key


# SCAN: the cursor packs the worker index, the worker's snapshot id and the offset in it.
_WORKER_SHIFT = 54
_SNAPSHOT_SHIFT = 32
_SNAPSHOT_MASK = (1 << (_WORKER_SHIFT - _SNAPSHOT_SHIFT)) - 1
_OFFSET_MASK = (1 << _SNAPSHOT_SHIFT) - 1


def scan_plan(router: Any, args: list[bytes]) -> Plan:
    cursor = parse_cursor(args[1])
    parse_scan_options(args, 2)
    worker = cursor >> _WORKER_SHIFT
    if worker >= len(router.links):
        worker = 0
    return Plan(workers=frozenset(range(worker, len(router.links))))


@coordinated("scan", scan_plan)
async def scan(router: Any, client: Any, args: list[bytes]) -> object:
    """One page: the worker in the cursor, then the next ones while the page is short."""
    cursor = parse_cursor(args[1])
    count, _, _ = parse_scan_options(args, 2)
    worker = cursor >> _WORKER_SHIFT
    snapshot = (cursor >> _SNAPSHOT_SHIFT) & _SNAPSHOT_MASK
    offset = cursor & _OFFSET_MASK
    found: list[bytes] = []
    while worker < len(router.links):
        request = [b"__scan", b"%d" % snapshot, b"%d" % offset, *args[2:]]
        snapshot, offset, keys = raise_if_error(await router.call(worker, request))
        found.extend(keys)
        if offset:
            next_cursor = worker << _WORKER_SHIFT | snapshot << _SNAPSHOT_SHIFT | offset
            return [b"%d" % next_cursor, found]
        worker += 1
        snapshot = 0
        if len(found) >= count and worker < len(router.links):
            return [b"%d" % (worker << _WORKER_SHIFT), found]
    return [b"0", found]


@router_command("object|help")
def object_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(OBJECT_HELP)
