"""MULTI/EXEC/DISCARD/WATCH/UNWATCH on the router: transactions over any workers, atomic.

Between MULTI and EXEC the router queues a client's commands (``Router.dispatch_in_multi``),
answering QUEUED, or an error that makes EXEC answer EXECABORT (unknown command, wrong arity).

EXEC gates every worker the transaction touches (its commands' keys, the watched keys; all
workers for KEYS, DBSIZE...): no other client's command reaches them until it ends, so it is
atomic however many round trips it takes.  It first compares the watched keys' versions with
those seen at WATCH time (nil if any changed), then runs the queued commands in order:
one-worker and split commands are sent at once (each worker executes its share in order), a
multi-step command (RENAME across workers, *STORE...) runs to its end before later commands
are sent.  Runtime errors are answered in place, as in Redis; nothing rolls back.  Blocking
commands inside MULTI do not block.

Blocked clients are served after EXEC, not in its middle (Redis serves them once the command
that fed their keys has ended, and EXEC is that command): ``MULTI; LPUSH l a; DEL l; EXEC``
leaves a ``BLPOP l`` waiter blocked, and ``LPUSH l a; LPUSH l b`` hands it ``b``.  Each worker
the transaction involves gets ``__tx_begin`` ahead of its share (same link, so it arrives
first): from then on it notes the keys that become ready but serves nobody.  Only when every
worker has answered every command of the transaction does each get ``__tx_end``, which serves
the ready keys against the transaction's end state.  So no waiter anywhere sees a state in
which one worker has run its part and another not yet: exactly what a Redis client can
observe, an EXEC with no visible middle.  The gate stays closed until ``__tx_end`` is queued,
and a link delivers in order, so every later command of any client runs after the waiters were
served, as in Redis.  Cross-worker waiters (router-coordinated, notify-and-retry) get their
notification from ``__tx_end`` too, and their retry waits for the gate, i.e. for EXEC's end.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shardis import errors
from shardis.commands import Fanout, lookup
from shardis.errors import ReplyError, raise_if_error
from shardis.resp import NULL_ARRAY, OK, Raw, encode, encode_error
from shardis.router.registry import COORDINATED, DEFERRED, ROUTER_COMMANDS, router_command
from shardis.router.scripting import SCRIPT_COMMANDS, run_in_transaction
from shardis.router.security import exec_denial

QUEUED_REPLY = b"+QUEUED\r\n"
#: Commands that act at once inside MULTI instead of being queued (as in Redis).
NOT_QUEUED = frozenset((b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"))


@router_command("multi")
def multi(router: Any, client: Any, args: list[bytes]) -> object:
    if client.multi is not None:
        raise ReplyError("ERR MULTI calls can not be nested")
    client.multi = []
    client.multi_dirty = False
    return OK


@router_command("discard")
def discard(router: Any, client: Any, args: list[bytes]) -> object:
    if client.multi is None:
        raise ReplyError("ERR DISCARD without MULTI")
    end_transaction(router, client)
    return OK


@router_command("unwatch")
def unwatch(router: Any, client: Any, args: list[bytes]) -> object:
    release_watches(router, client)
    return OK


def end_transaction(router: Any, client: Any) -> None:
    """Leave MULTI (DISCARD, EXEC, RESET): drop the queue and every watch."""
    client.multi = None
    client.multi_dirty = False
    release_watches(router, client)


def release_watches(router: Any, client: Any) -> None:
    if not client.watched:
        return
    by_worker = _by_worker(router, client.watched)
    client.watched = {}
    for (db, worker), keys in by_worker.items():
        router.call(worker, [b"__unwatch", *keys], db=db)


def _by_worker(router: Any, entries: Any) -> dict[tuple[int, int], list[bytes]]:
    """Watched (database, key) entries grouped by database and worker."""
    by_worker: dict[tuple[int, int], list[bytes]] = {}
    for db, key in entries:
        by_worker.setdefault((db, router.worker_of(key)), []).append(key)
    return by_worker


# WATCH ---------------------------------------------------------------------------------------
@router_command("watch")
def watch(router: Any, client: Any, args: list[bytes]) -> object:
    if client.multi is not None:
        raise ReplyError("ERR WATCH inside MULTI is not allowed")
    workers = {router.worker_of(key) for key in args[1:]}
    router.start_operation(client, args, workers, False, _watch)
    return DEFERRED


async def _watch(router: Any, client: Any, args: list[bytes]) -> object:
    """The keys' versions, kept as the client's (database, key) watches."""
    db = client.db
    entries = [(db, key) for key in dict.fromkeys(args[1:]) if (db, key) not in client.watched]
    by_worker = _by_worker(router, entries)
    requests = {w: router.call(w, [b"__watch", *ks]) for (_, w), ks in by_worker.items()}
    for worker, request in requests.items():
        versions = raise_if_error(await request)
        keys = by_worker[(db, worker)]
        client.watched.update(zip(((db, key) for key in keys), versions))  # type: ignore[arg-type]
    return OK


async def watches_hold(router: Any, watched: dict[tuple[int, bytes], int]) -> bool:
    """True if no watched key changed since WATCH (compared under EXEC's gate)."""
    by_worker = _by_worker(router, watched)
    requests = {place: router.call(place[1], [b"__watch_versions", *ks], db=place[0])
                for place, ks in by_worker.items()}
    for (db, _), request in requests.items():
        versions = raise_if_error(await request)
        keys = by_worker[(db, _)]
        for key, version in zip(keys, versions):  # type: ignore[arg-type]
            if watched[(db, key)] != version:
                return False
    return True


# EXEC ----------------------------------------------------------------------------------------
@router_command("exec")
def exec_(router: Any, client: Any, args: list[bytes]) -> object:
    if client.multi is None:
        raise ReplyError("ERR EXEC without MULTI")
    workers = set(involved_workers(router, client.multi))
    workers.update(router.worker_of(key) for _, key in client.watched)
    router.start_operation(client, args, workers, True, _exec)
    return DEFERRED


def involved_workers(router: Any, queued: list[list[bytes]]) -> set[int]:
    workers: set[int] = set()
    for args in queued:
        spec = lookup(args)
        fanout = spec.fanout
        if fanout in (Fanout.ALL_SUM, Fanout.ALL_CONCAT, Fanout.ALL_OK):
            return set(range(len(router.links)))
        if spec.fullname in SCRIPT_COMMANDS:
            return set(range(len(router.links)))  # a script may turn out to need every worker
        if fanout is Fanout.COORDINATED:
            try:
                plan = COORDINATED[spec.fullname][0](router, args)
            except ReplyError:
                continue  # it will fail in place at EXEC
            if plan.forward_to is not None:
                workers.add(plan.forward_to)
            else:
                workers.update(plan.workers)
        else:
            workers.update(router.worker_of(args[i]) for i in spec.key_indexes(args))
    return workers


async def _exec(router: Any, client: Any, args: list[bytes]) -> object:
    queued, dirty, watched = client.multi, client.multi_dirty, dict(client.watched)
    client.multi = None
    client.multi_dirty = False
    try:
        if await _out_of_memory(router, queued):
            raise ReplyError(EXEC_OOM)
        if dirty:
            raise ReplyError(errors.EXECABORT)
        if watched and not await watches_hold(router, watched):
            return NULL_ARRAY
        return await _run_deferring_wakeups(router, client, queued)
    finally:
        release_watches(router, client)  # after the check: the versions must still be kept


#: EXEC of commands that may grow memory while out of memory (Redis's ``execCommandAbort``).
EXEC_OOM = "EXECABORT Transaction discarded because of: " + errors.OOM


def _may_grow_memory(args: list[bytes]) -> bool:
    try:
        return "denyoom" in lookup(args).flags
    except ReplyError:
        return False  # refused when queued: the transaction is aborted anyway


def _runs_a_script(args: list[bytes]) -> bool:
    """EVAL*, FCALL*: whether they may grow memory depends on the script's declared flags."""
    try:
        return getattr(lookup(args), "oom_flags", None) is not None
    except ReplyError:
        return False


async def _out_of_memory(router: Any, queued: list[list[bytes]]) -> bool:
    """Under maxmemory, a transaction with a command that may grow memory is refused as a
    whole when a worker it involves is out of memory once it evicted what it could (Redis
    checks before EXEC runs, for the whole server).  A queued script or function counts by
    its declared flags (``getCommandFlags``), which the workers know: they are asked about
    it.  Asked under EXEC's gate: no command runs between the answer and the transaction."""
    if not router.config.get("maxmemory"):
        return False
    workers = involved_workers(router, queued)
    if any(map(_may_grow_memory, queued)):
        return await router.out_of_memory(workers)
    scripts = [args for args in queued if _runs_a_script(args)]
    requests = [router.call(worker, [b"__oom", *args]) for args in scripts for worker in workers]
    return any([await request == 1 for request in requests])


async def _run_deferring_wakeups(router: Any, client: Any, queued: list[list[bytes]]) -> object:
    """Run the transaction with its workers serving no blocked client until all have run
    their part (see the module docstring).  ``__tx_end`` is queued, not awaited: the link's
    order puts it before anything sent after EXEC."""
    workers = sorted(involved_workers(router, queued))
    for worker in workers:
        router.call(worker, [b"__tx_begin"])
    try:
        return await _run_transaction(router, client, queued)
    finally:
        for worker in workers:
            router.call(worker, [b"__tx_end"])


async def _run_transaction(router: Any, client: Any, queued: list[list[bytes]]) -> object:
    proto = client.proto
    pending: list[Any] = []
    for command in queued:
        step = run_queued(router, client, command, proto)
        if asyncio.iscoroutine(step):
            pending.append(await step)  # a multi-step command ends before later ones start
        else:
            pending.append(step)
    return [Raw(await item if isinstance(item, asyncio.Future) else item) for item in pending]


def run_queued(router: Any, client: Any, args: list[bytes], proto: int) -> Any:
    """Start one queued command: a future of its encoded reply, the encoded reply itself, or
    a coroutine (multi-step commands) to await before anything else is sent."""
    denied = exec_denial(client, args, router)
    if denied is not None:
        router.stats.error_replies += 1
        return encode_error(denied)
    spec = lookup(args)
    fanout = spec.fanout
    if fanout is Fanout.SINGLE or fanout is Fanout.BLOCKING:
        keys = spec.key_indexes(args)
        workers = {router.worker_of(args[i]) for i in keys}
        if len(workers) <= 1:
            worker = workers.pop() if workers else 0
            return router.call(worker, args, proto, raw=True)  # blocking ones answer nil at once
        return _encoded(_blocking_once(router, client, args), proto)
    if fanout is Fanout.ROUTER:
        try:
            return encode(ROUTER_COMMANDS[spec.fullname](router, client, args), proto)
        except ReplyError as exc:
            return encode_error(exc.message)
    if spec.fullname in SCRIPT_COMMANDS:
        router.current_client = client
        return _script_step(router, client, args, proto)
    if fanout is Fanout.COORDINATED:
        plan_fn, operation = COORDINATED[spec.fullname]
        router.current_client = client
        try:
            plan = plan_fn(router, args)
        except ReplyError as exc:
            return encode_error(exc.message)
        if plan.forward_to is not None:
            return router.call(plan.forward_to, args, proto, raw=True)
        return _encoded(operation(router, client, args), proto)
    return _split(router, spec, args, proto)


async def _script_step(router: Any, client: Any, args: list[bytes], proto: int) -> bytes:
    try:
        return await run_in_transaction(router, client, args, proto)
    except ReplyError as exc:
        return encode_error(exc.message)


async def _encoded(step: Any, proto: int) -> bytes:
    try:
        return encode(await step, proto)
    except ReplyError as exc:
        return encode_error(exc.message)


async def _blocking_once(router: Any, client: Any, args: list[bytes]) -> object:
    """A blocking command over several workers inside MULTI: one try, nil if it would wait."""
    from shardis.router.blocking import BlockedRequest

    spec = lookup(args)
    keys = [args[i] for i in spec.key_indexes(args)]
    workers = list(dict.fromkeys(router.worker_of(key) for key in keys))
    request = BlockedRequest(0, client, None, args, keys, workers, 0.0)  # type: ignore[arg-type]
    data = await router.blocking.cross_attempt(request)
    return NULL_ARRAY if data is None else Raw(data)


def _split(router: Any, spec: Any, args: list[bytes], proto: int) -> asyncio.Future:
    """A split or all-workers command inside EXEC: parts sent now, merged when all are back."""
    from shardis.router.core import _MERGES

    if spec.fanout in (Fanout.ALL_SUM, Fanout.ALL_CONCAT, Fanout.ALL_OK):
        groups = {worker: (args, None) for worker in range(len(router.links))}
    else:
        if spec.step > 1 and (len(args) - spec.first_key) % spec.step:
            future = router.loop.create_future()
            future.set_result(encode_error(errors.wrong_arity(spec.fullname)))
            return future
        groups = router.split_by_worker(args, spec)
    parts = [router.call(worker, sub, 3, raw=True) for worker, (sub, _) in groups.items()]
    positions = [where for _, where in groups.values()]
    merge = _MERGES[spec.fanout]

    async def merged() -> bytes:
        return merge([await part for part in parts], positions, proto)

    return asyncio.ensure_future(merged())
