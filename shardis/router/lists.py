"""List commands that span workers: LMOVE/RPOPLPUSH between two workers, LMPOP over several.

When every key lives on one worker the command is forwarded whole and runs there as in Redis.
Otherwise the plan gates the workers involved (``exclusive``): no other command reaches them
until the operation ends, so its several round trips look like one step to every other client.
Parsing comes first, in the plan, so that syntax errors win over key errors as in Redis; the
steps then replay Redis's order of checks with public commands (LINDEX, LLEN, LPOP...), so no
internal helper is needed.
"""

from __future__ import annotations

from typing import Any

from shardis.commands.lists import LEFT, RIGHT, parse_lmpop, parse_position
from shardis.errors import raise_if_error
from shardis.resp import NULL_ARRAY
from shardis.router.keys import two_key_plan
from shardis.router.registry import Plan, coordinated

_POP = {LEFT: b"LPOP", RIGHT: b"RPOP"}
_PUSH = {LEFT: b"LPUSH", RIGHT: b"RPUSH"}
#: LINDEX index of the element a pop from that end takes.
_END = {LEFT: b"0", RIGHT: b"-1"}



# LMOVE / RPOPLPUSH ---------------------------------------------------------------------------
async def move_element(router: Any, source: bytes, target: bytes, wherefrom: int,
                       whereto: int) -> bytes | None:
    """LMOVE across two gated workers, in two round trips.

    First the element that would move (LINDEX) and the destination's type (LLEN), together;
    then the pop and the push, together.  Redis's order of checks holds: a missing source
    answers null whatever the destination is; a wrong-typed source or destination is
    WRONGTYPE with nothing moved.  The gate keeps both keys still between the two steps; only
    the source's TTL can run out meanwhile, and then the element leaves a key that is gone
    anyway, which is what Redis, running the command one step earlier, would have left.
    """
    source_worker, target_worker = router.worker_of(source), router.worker_of(target)
    peek = router.call(source_worker, [b"LINDEX", source, _END[wherefrom]])
    probe = router.call(target_worker, [b"LLEN", target])
    element, target_length = await peek, await probe
    if raise_if_error(element) is None:
        return None
    raise_if_error(target_length)
    pop = router.call(source_worker, [_POP[wherefrom], source])
    push = router.call(target_worker, [_PUSH[whereto], target, element])
    raise_if_error(await pop)
    raise_if_error(await push)
    return element


def lmove_plan(router: Any, args: list[bytes]) -> Plan:
    parse_position(args[3])  # syntax errors come before any key is looked at
    parse_position(args[4])
    return two_key_plan(router, args)


@coordinated("lmove", lmove_plan)
async def lmove(router: Any, client: Any, args: list[bytes]) -> object:
    wherefrom, whereto = parse_position(args[3]), parse_position(args[4])
    return await move_element(router, args[1], args[2], wherefrom, whereto)


@coordinated("rpoplpush", two_key_plan)
async def rpoplpush(router: Any, client: Any, args: list[bytes]) -> object:
    return await move_element(router, args[1], args[2], RIGHT, LEFT)


# LMPOP ---------------------------------------------------------------------------------------
def lmpop_plan(router: Any, args: list[bytes]) -> Plan:
    keys, _, _ = parse_lmpop(args)
    workers = frozenset(router.worker_of(key) for key in keys)
    if len(workers) == 1:
        return Plan(forward_to=next(iter(workers)))
    return Plan(workers=workers, exclusive=True)


@coordinated("lmpop", lmpop_plan)
async def lmpop(router: Any, client: Any, args: list[bytes]) -> object:
    """Measure every key at once (LLEN: 0 if missing, WRONGTYPE if not a list), then pop from
    the first list in argument order, as Redis does; a null array when all are empty.

    A key whose TTL ran out between the two steps pops nothing: the next list is tried.
    """
    keys, where, count = parse_lmpop(args)
    lengths = [router.call(router.worker_of(key), [b"LLEN", key]) for key in keys]
    for key, length in zip(keys, lengths):
        if not raise_if_error(await length):
            continue
        popped = await router.call(router.worker_of(key), [_POP[where], key, b"%d" % count])
        if raise_if_error(popped) is not None:
            return [key, popped]
    return NULL_ARRAY
