"""Router-side command implementations, by full name (``ping``, ``client|setname``).

Two kinds, matching the table's fan-out policies:

* ``@router_command(name)``: ``fn(router, client, args) -> reply`` answered at once by the
  router (``Fanout.ROUTER``).
* ``@coordinated(name, plan)``: ``async fn(router, client, args) -> reply`` that talks to the
  workers through ``router.call``.  ``plan(router, args)`` runs first, synchronously, and returns
  a :class:`Plan`: forward the command whole to one worker (the common case, e.g. RENAME of two
  keys on one worker), or run the coroutine over a set of workers, gating them when the
  coroutine needs several round trips that must look atomic (see ``shardis.router.core``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

RouterFn = Callable[[Any, Any, list], Any]
CoordinatedFn = Callable[[Any, Any, list], Awaitable[Any]]


@dataclass(frozen=True)
class Plan:
    """How a coordinated command will run.

    ``forward_to``: send the command whole to this worker and stop there.
    ``workers``: the workers the coroutine will touch.
    ``exclusive``: gate those workers for the whole coroutine (multi-step atomic operations);
    a non-exclusive coroutine must send all its requests in its first step.
    """

    forward_to: int | None = None
    workers: frozenset[int] = frozenset()
    exclusive: bool = False
    #: with ``forward_to``: makes the reply slot (a Reply subclass that sees the worker's
    #: reply first: scripts); and whether the client's next commands wait for that reply.
    target: Callable[[Any], Any] | None = None
    hold_client: bool = False


PlanFn = Callable[[Any, list], Plan]

#: What a router command returns when it has started an operation that will fill the reply
#: itself (EXEC, WATCH: they need the client's state, which plans do not see).
DEFERRED = object()

def keys_plan(keys_of: Callable[[list], list], exclusive: bool) -> PlanFn:
    """A plan over the workers of ``keys_of(args)`` (which may raise the argument errors Redis
    gives before looking at any key): forward when they are all on one worker."""

    def plan(router: Any, args: list) -> Plan:
        workers = frozenset(router.worker_of(key) for key in keys_of(args))
        if len(workers) == 1:
            return Plan(forward_to=next(iter(workers)))
        return Plan(workers=workers, exclusive=exclusive)

    return plan


ROUTER_COMMANDS: dict[str, RouterFn] = {}
COORDINATED: dict[str, tuple[PlanFn, CoordinatedFn]] = {}


def router_command(*names: str) -> Callable[[RouterFn], RouterFn]:
    def register(fn: RouterFn) -> RouterFn:
        for name in names:
            ROUTER_COMMANDS[name] = fn
        return fn

    return register


def coordinated(name: str, plan: PlanFn) -> Callable[[CoordinatedFn], CoordinatedFn]:
    def register(fn: CoordinatedFn) -> CoordinatedFn:
        COORDINATED[name] = (plan, fn)
        return fn

    return register


def load_handlers() -> None:
    """Import every router-side family module so that its handlers are registered."""
    from shardis.router import (  # noqa: F401
        bitmaps,
        clients,
        config,
        connection,
        functions,
        geo,
        hyperloglog,
        info,
        keys,
        lists,
        memory,
        migrate,
        monitor,
        pubsub,
        scripting,
        security,
        server,
        sets,
        sort,
        standalone,
        stats,
        streams,
        strings,
        tracking,
        transactions,
        zsets,
    )
