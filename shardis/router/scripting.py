"""Scripting on the router: where EVAL and friends run, and SCRIPT over every worker.

Scripts run as on a single Redis, whatever workers their keys live on (README "How scripts
run"):

* *Local mode* (``Plan(forward_to=...)``): all declared keys on one worker (or none: worker
  0): the worker runs the script between two commands of its batch, atomic for free.  Its
  reply slot is a :class:`ScriptReply`: if the script met another worker's key, the worker
  stopped it, undid its writes (its journal) and answered ``RETRY_GLOBAL``; the slot then runs
  it again globally and its sha1 is remembered (``global_shas``).  A script not yet seen to
  run locally on that worker holds its caller's next commands until it is answered, so none
  of them overtakes a retried script.
* *Global mode* (:func:`run_global`): declared keys on several workers, or a remembered sha1:
  every worker gated, ``__tx_begin`` everywhere (blocked clients wait for the end), the
  script on the worker of its first key with ``__script_global``; each call on another
  worker's keys comes to the router as a script call (``Router.script_call``) and runs there.

Ahead of every script the worker is told how many workers share the slots
(``__script_topology``, on the same link, so it arrives first): that is how it knows which
keys are local.  For a caller with ACL limits the same message carries the user's rules (its
ACL LIST line), which the worker checks each call against.

One script cache for the whole server, as on a single Redis: each worker compiles what it
runs, and the router keeps every script it has seen (sha1 -> body).  The first EVAL of a script
also loads it on every other worker (SCRIPT LOAD, in the same flush), SCRIPT LOAD and SCRIPT
FLUSH go to every worker, and a worker that restarted gets every known script again — so an
EVALSHA finds its script whichever worker its keys live on.  SCRIPT EXISTS asks every worker.
(With several routers, a SCRIPT FLUSH through one leaves the others' lists stale until they
next see SCRIPT LOAD; EVAL still runs everywhere.)
"""

from __future__ import annotations

from typing import Any

from shardis.commands import help_reply
from shardis.commands.scripting import (
    BUSY,
    BUSY_FUNCTION,
    NOSCRIPT,
    NOTBUSY,
    RETRY_GLOBAL,
    SCRIPT_HELP,
    parse_numkeys,
    sha1hex,
)
from shardis.errors import ReplyError, raise_if_error
from shardis.resp import OK, Raw
from shardis.router.client import Reply
from shardis.router.registry import Plan, coordinated, router_command
from shardis.router.security import script_rules


def script_plan(router: Any, args: list[bytes]) -> Plan:
    """Forward to the worker of all KEYS; Redis's argument errors first.  (FCALL: a bad
    numkeys goes to worker 0, which answers Redis's errors in Redis's order.)"""
    name = args[0].lower()
    is_function = name.startswith(b"fcall")
    by_sha = name.startswith(b"evalsha")
    if by_sha and len(args[1]) != 40:
        raise ReplyError(NOSCRIPT)
    if is_function:
        try:
            numkeys = parse_numkeys(args)
        except (ReplyError, ValueError):
            return Plan(forward_to=0)
    else:
        numkeys = parse_numkeys(args)
    keys = args[3 : 3 + numkeys]
    worker_of = router.worker_of
    worker = worker_of(keys[0]) if keys else 0
    workers = {worker_of(key) for key in keys} if numkeys > 1 else {worker}
    sha = _sha_of(args, router.body_shas)
    if not by_sha and not is_function:
        remember(router, args[1], sha, skip=worker)
    if len(workers) > 1 or sha in router.global_shas:
        return Plan(workers=router.all_workers, exclusive=True)  # see run_global
    send_topology(router, worker)
    return Plan(forward_to=worker,
                target=lambda client: ScriptReply(router, client, args, sha, worker),
                hold_client=(sha, worker) not in router.local_shas)


class _Ignored:
    """The reply slot of a message whose answer (OK) nobody needs."""

    __slots__ = ()

    def fill(self, data: bytes) -> None:
        pass


IGNORED = _Ignored()


class ScriptReply(Reply):
    """The reply slot of a script sent to one worker (local mode).  If the script met another
    worker's key there, the worker undid it and answered ``RETRY_GLOBAL``: it runs again in
    global mode, into this same slot, and its sha1 runs global from now on.  Until a script
    has once run locally on that worker, its caller's next commands wait for its reply, so
    that none of them can run before a retried script.  (A script that ran locally before on
    that worker and, with other arguments, reaches another worker's keys is still retried
    correctly, but its caller's pipelined commands may already have run.)"""

    __slots__ = ("router", "args", "sha", "worker")

    def __init__(self, router: Any, client: Any, args: list[bytes], sha: str,
                 worker: int) -> None:
        super().__init__(client)
        self.router = router
        self.args = args
        self.sha = sha
        self.worker = worker

    def fill(self, data: bytes) -> None:
        router, client = self.router, self.client
        if data.startswith(_RETRY_REPLY):
            router.global_shas.add(self.sha)
            client.waiting = True
            router.loop.create_task(_retry_global(router, self))
            return
        if len(router.local_shas) > MAX_KNOWN_SHAS:
            router.local_shas.clear()
        router.local_shas.add((self.sha, self.worker))
        self.data = data
        router.touched.add(client)
        if client.waiting and not client.closed:
            router.loop.call_soon(_release, client)


#: Bound of the router's set of scripts seen running on one worker.
MAX_KNOWN_SHAS = 10_000
_RETRY_REPLY = b"-" + RETRY_GLOBAL.split(" ", 1)[0].encode()


def _release(client: Any) -> None:
    client.waiting = False
    client.resume()


async def _retry_global(router: Any, reply: ScriptReply) -> None:
    """Run a script again in global mode, with every worker gated, into its reply slot."""
    workers = router.all_workers
    await router.acquire_gates(workers)
    await router._coordinate(reply.client, reply, run_global, reply.args, frozenset(workers))


def send_topology(router: Any, worker: int, *more: list[bytes]) -> None:
    """Ahead of a script on ``worker`` (same link: it arrives first): the worker count, the
    busy threshold and the caller's ACL rules (``__script_topology``), then ``more``."""
    threshold = router.config.get("busy-reply-threshold", 5000)
    topology = [b"__script_topology", b"%d" % len(router.links), b"%d" % threshold]
    caller = router.current_client
    rules = script_rules(caller) if caller is not None else None
    link = router.links[worker]
    link.send(IGNORED, 3, topology if rules is None else [*topology, rules])
    for command in more:
        link.send(IGNORED, 3, command)
    router.schedule_flush()


async def run_global(router: Any, client: Any, args: list[bytes],
                     bracket: bool = True) -> object:
    """A script whose keys live on several workers, with every worker gated for it: it runs
    on the worker of its first key, and each command it calls on another worker's keys runs
    there through the router (``Router.script_call``), one round trip each.  Nothing else
    runs meanwhile, so it is as atomic as on one Redis; clients blocked on keys it fed are
    served once it has ended (``__tx_begin``/``__tx_end`` on every worker, unless
    ``bracket`` is off: inside EXEC, whose own brackets hold)."""
    worker = router.worker_of(args[3]) if parse_numkeys(args) else 0
    router.current_client = client
    router.busy_error = BUSY_FUNCTION if args[0].lower().startswith(b"fcall") else BUSY
    send_topology(router, worker)
    begun = await router.call_all([b"__tx_begin"]) if bracket else []
    router.script_worker = worker
    threshold = router.config.get("busy-reply-threshold", 5000)
    busy = router.loop.call_later(threshold / 1000, router.global_script_busy) \
        if threshold > 0 else None
    try:
        # The flag goes in the same batch as its script, right before it: nothing can come
        # between them (not even a failed __tx_begin) and find the flag set.
        router.call(worker, [b"__script_global"])
        reply = await router.call(worker, args, client.proto, raw=True)
    finally:
        if busy is not None:
            busy.cancel()
        router.script_worker = None
        router.script_busy = False
        if begun and all(type(b) is int for b in begun):
            await router.call_all([b"__tx_end"])
    return Raw(reply)


SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
for _name in SCRIPT_COMMANDS:
    coordinated(_name, script_plan)(run_global)


async def run_in_transaction(router: Any, client: Any, args: list[bytes], proto: int) -> bytes:
    """A script inside MULTI/EXEC (EXEC gated every worker for it): on its worker, or
    globally at once if it must or once it turns out it must.  Its reply, encoded."""
    plan = script_plan(router, args)
    if plan.forward_to is not None:
        data = await router.call(plan.forward_to, args, proto, raw=True)
        if not data.startswith(_RETRY_REPLY):
            return data
        router.global_shas.add(_sha_of(args))
    saved, client.proto = client.proto, proto
    try:
        return bytes(await run_global(router, client, args, bracket=False))
    finally:
        client.proto = saved


def _sha_of(args: list[bytes], known: dict[bytes, str] | None = None) -> str:
    """The sha1 a script runs under (``fcall:<name>`` for a function: what the router
    remembers it by); ``known`` caches it for bodies sent again and again."""
    name = args[0].lower()
    if name.startswith(b"fcall"):
        return "fcall:" + args[1].decode("latin-1")
    if name.startswith(b"evalsha"):
        return args[1].decode("latin-1").lower()
    if known is None:
        return sha1hex(args[1])
    sha = known.get(args[1])
    if sha is None:
        if len(known) > MAX_KNOWN_SHAS:
            known.clear()
        sha = known[args[1]] = sha1hex(args[1])
    return sha


def all_workers_plan(router: Any, args: list[bytes]) -> Plan:
    return Plan(workers=router.all_workers)


def remember(router: Any, body: bytes, sha: str, skip: int | None = None) -> None:
    """A script seen for the first time: kept, and loaded on every worker but ``skip`` (the
    one about to run it).  Its compile error, if any, is the EVAL's to report."""
    if sha in router.scripts:
        return
    router.scripts[sha] = body
    for worker in range(len(router.links)):
        if worker != skip:
            router.call(worker, [b"SCRIPT", b"LOAD", body])


@coordinated("script|load", all_workers_plan)
async def script_load(router: Any, client: Any, args: list[bytes]) -> object:
    """Every worker compiles and caches the script; they all answer the same sha1 (or the
    same compile error)."""
    replies = await router.call_all(args)
    for reply in replies:
        raise_if_error(reply)
    router.scripts[replies[0].decode()] = args[2]
    return replies[0]


@coordinated("script|flush", all_workers_plan)
async def script_flush(router: Any, client: Any, args: list[bytes]) -> object:
    """Every worker empties its cache (or all answer the same argument error), and so does
    the router's list."""
    for reply in await router.call_all(args):
        raise_if_error(reply)
    router.scripts.clear()
    return OK


@coordinated("script|exists", all_workers_plan)
async def script_exists(router: Any, client: Any, args: list[bytes]) -> object:
    """1 for a script that any worker has (see the module docstring)."""
    replies = [raise_if_error(reply) for reply in await router.call_all(args)]
    return [int(any(found)) for found in zip(*replies)]  # type: ignore[call-overload]


@router_command("script|help")
def script_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(SCRIPT_HELP)


#: SCRIPT DEBUG YES/SYNC's error: shardis has no Lua debugger (Redis's LDB).
NO_DEBUGGER = "ERR SCRIPT DEBUG YES/SYNC is not supported: shardis has no Lua debugger"


@router_command("script|debug")
def script_debug(router: Any, client: Any, args: list[bytes]) -> object:
    """Checked as Redis checks it; NO is what every client already has (OK), YES and SYNC
    are refused: answering OK would promise a debugging session (redis-cli --ldb) that never
    comes."""
    mode = args[2].lower()
    if mode == b"no":
        return OK
    if mode in (b"yes", b"sync"):
        raise ReplyError(NO_DEBUGGER)
    raise ReplyError("ERR Use SCRIPT DEBUG YES/SYNC/NO")


def no_gate_plan(router: Any, args: list[bytes]) -> Plan:
    """Sent past every gate: a global script holds every worker's gate, and SCRIPT KILL is
    what must still reach it."""
    return Plan(workers=frozenset())


@coordinated("script|kill", no_gate_plan)
async def script_kill(router: Any, client: Any, args: list[bytes]) -> object:
    """Every worker is asked; a worker running a script past busy-reply-threshold answers
    from inside it (OK, or UNKILLABLE once it wrote), the others NOTBUSY."""
    return kill_reply(await router.call_all([b"__script_kill"]))


def kill_reply(replies: list[object]) -> object:
    """SCRIPT KILL's or FUNCTION KILL's answer from every worker's: the busy worker's (OK,
    UNKILLABLE, or BUSY when the running script is of the other kind), else NOTBUSY."""
    for reply in replies:
        if type(reply) is not ReplyError:
            return OK  # (decoded, the status would go back as a bulk string)
    for reply in replies:
        if not reply.message.startswith("NOTBUSY"):  # type: ignore[attr-defined]
            raise reply  # type: ignore[misc]
    raise ReplyError(NOTBUSY)
