"""String commands that span workers: MSETNX (check, then set, under a gate) and LCS."""

from __future__ import annotations

from typing import Any

from shardis import errors
from shardis.commands.strings import lcs_reply
from shardis.errors import ReplyError
from shardis.lcs import LCS_NOT_STRINGS
from shardis.router.registry import Plan, coordinated


def msetnx_plan(router: Any, args: list[bytes]) -> Plan:
    if len(args) % 2 == 0:
        raise ReplyError(errors.wrong_arity("msetnx"))
    workers = frozenset(router.worker_of(args[j]) for j in range(1, len(args), 2))
    if len(workers) == 1:
        return Plan(forward_to=next(iter(workers)))
    return Plan(workers=workers, exclusive=True)


@coordinated("msetnx", msetnx_plan)
async def msetnx(router: Any, client: Any, args: list[bytes]) -> object:
    """All or nothing: the gate keeps every involved worker still between check and set."""
    groups: dict[int, list[bytes]] = {}
    for j in range(1, len(args), 2):
        groups.setdefault(router.worker_of(args[j]), []).extend(args[j : j + 2])
    existing = [router.call(worker, [b"EXISTS", *pairs[::2]]) for worker, pairs in groups.items()]
    counts = [await future for future in existing]
    for count in counts:
        if type(count) is ReplyError:
            raise count
    if any(counts):
        return 0
    writes = [router.call(worker, [b"MSET", *pairs]) for worker, pairs in groups.items()]
    for future in writes:
        result = await future
        if type(result) is ReplyError:
            raise result
    return 1


def lcs_plan(router: Any, args: list[bytes]) -> Plan:
    first, second = router.worker_of(args[1]), router.worker_of(args[2])
    if first == second:
        return Plan(forward_to=first)
    # Both reads leave in the same batch round, so they see one consistent moment.
    return Plan(workers=frozenset((first, second)))


@coordinated("lcs", lcs_plan)
async def lcs(router: Any, client: Any, args: list[bytes]) -> object:
    first = router.call(router.worker_of(args[1]), [b"__dump", args[1]])
    second = router.call(router.worker_of(args[2]), [b"__dump", args[2]])
    values = []
    for future in (first, second):
        payload = await future
        if type(payload) is ReplyError:
            raise ReplyError(LCS_NOT_STRINGS)
        values.append(_string_or_marker(payload))
    return lcs_reply(values[0], values[1], args)


def _string_or_marker(payload: bytes | None) -> object:
    """A ``__dump`` payload's string, or a non-string marker (LCS then says which error)."""
    import marshal

    if payload is None:
        return None
    name, _variant, plain, _deadline, _hint = marshal.loads(payload)
    return plain if name == b"string" else object()
