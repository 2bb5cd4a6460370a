"""CLIENT subcommands that act on connections: REPLY, KILL, PAUSE/UNPAUSE, UNBLOCK, NO-EVICT,
GETREDIR and TRACKINGINFO, with Redis 7.0's rules and error texts.

CLIENT PAUSE lives here too (:class:`ClientPause`): while one is active the router's dispatch
asks it about every command (``Router.dispatch_all`` checks ``router.pause`` once per read);
a command it holds stops its client, as a gated command does, and the command and everything
after it wait in the client's backlog until UNPAUSE or the timeout.
"""

from __future__ import annotations

import time
from typing import Any

from shardis import errors
from shardis.commands import Command, lookup
from shardis.commands.strings import parse_int
from shardis.errors import ReplyError
from shardis.resp import OK
from shardis.router import security
from shardis.router.pubsub import SUBSCRIBED_MODE_COMMANDS as SUBSCRIBED_MODE
from shardis.router.registry import DEFERRED, router_command

#: Commands without the write flag that Redis 7.0 marks may-replicate: a WRITE pause holds them.
MAY_REPLICATE = frozenset({"eval", "evalsha", "fcall", "publish", "spublish", "pfcount"})
#: Redis's ``long long``: a pause end past it overflows (Redis then does not pause at all).
LLONG_MAX = 2**63 - 1
CLIENT_TYPES = (b"normal", b"slave", b"replica", b"pubsub", b"master")


# CLIENT REPLY ----------------------------------------------------------------------------------
@router_command("client|reply")
def client_reply(router: Any, client: Any, args: list[bytes]) -> object:
    """OFF and SKIP have no reply of their own; ON's OK is sent (it turns replies back on)."""
    mode = args[2].lower()
    if mode not in (b"on", b"off", b"skip"):
        raise ReplyError(errors.SYNTAX)
    client.set_reply_mode(mode)
    return OK if mode == b"on" else DEFERRED


# CLIENT KILL -----------------------------------------------------------------------------------
class KillFilter:
    """The filters of ``CLIENT KILL <filter> <value> ...``; the old form is ``ADDR`` alone
    without SKIPME (a client may kill itself that way)."""

    def __init__(self) -> None:
        self.id = 0
        self.kind: bytes | None = None
        self.addr: bytes | None = None
        self.laddr: bytes | None = None
        self.user: Any = None
        self.skipme = True

    def parse(self, router: Any, options: list[bytes]) -> None:
        """Redis's order: each option in turn, its error at once."""
        for i in range(0, len(options), 2):
            option = options[i].lower()
            if i + 1 >= len(options):
                raise ReplyError(errors.SYNTAX)
            value = options[i + 1]
            if option == b"id":
                self.id = parse_int(value, "ERR client-id should be greater than 0")
                if self.id < 1:
                    raise ReplyError("ERR client-id should be greater than 0")
            elif option == b"type":
                self.kind = client_type(value)
            elif option == b"addr":
                self.addr = value
            elif option == b"laddr":
                self.laddr = value
            elif option == b"user":
                self.user = router.acl.users.get(value)
                if self.user is None:
                    raise ReplyError(f"ERR No such user '{errors.arg_text(value)}'")
            elif option == b"skipme" and value.lower() in (b"yes", b"no"):
                self.skipme = value.lower() == b"yes"
            else:
                raise ReplyError(errors.SYNTAX)

    def matches(self, target: Any, caller: Any) -> bool:
        return not (
            (self.addr is not None and target.addr.encode() != self.addr)
            or (self.laddr is not None and target.laddr.encode() != self.laddr)
            or (self.kind is not None and type_of(target) != self.kind)
            or (self.id and target.id != self.id)
            or (self.user is not None and target.user is not self.user)
            or (target is caller and self.skipme)
        )


def client_type(name: bytes) -> bytes:
    """A TYPE option's value, normalized (``replica`` is ``slave``), or Redis's error."""
    kind = name.lower()
    if kind not in CLIENT_TYPES:
        raise ReplyError(f"ERR Unknown client type '{errors.arg_text(name)}'")
    return b"slave" if kind == b"replica" else kind


def type_of(client: Any) -> bytes:
    """Redis's getClientType: a client with subscriptions is ``pubsub`` (any protocol)."""
    return b"pubsub" if client.subscribed else b"normal"


@router_command("client|kill")
def client_kill(router: Any, client: Any, args: list[bytes]) -> object:
    wanted = KillFilter()
    if len(args) == 3:
        wanted.addr, wanted.skipme = args[2], False
    else:
        wanted.parse(router, args[2:])
    killed = 0
    for target in [c for c in router.clients.values() if wanted.matches(c, client)]:
        killed += 1
        if target is client:
            client.closing = True  # after this reply, as Redis's CLIENT_CLOSE_AFTER_REPLY
        else:
            router.clients.pop(target.id, None)  # gone for a CLIENT LIST pipelined after this
            target.close_now()
    if len(args) > 3:
        return killed
    if not killed:
        raise ReplyError("ERR No such client")
    return OK


# CLIENT PAUSE / UNPAUSE ------------------------------------------------------------------------
class ClientPause:
    """An active CLIENT PAUSE: which commands it holds, the clients it stopped, its timer."""

    def __init__(self, router: Any, end_ms: int, write_only: bool) -> None:
        self.router = router
        self.end_ms = end_ms
        self.write_only = write_only
        self.clients: list[Any] = []
        self.timer = router.loop.call_later(max(end_ms - now_ms(), 0) / 1000, self.end)

    def extend(self, end_ms: int, write_only: bool) -> None:
        """Redis keeps the later end and the stricter mode (ALL over WRITE)."""
        self.write_only = self.write_only and write_only
        if end_ms > self.end_ms:
            self.end_ms = end_ms
            self.timer.cancel()
            self.timer = self.router.loop.call_later((end_ms - now_ms()) / 1000, self.end)

    def holds(self, client: Any, args: list[bytes]) -> bool:
        """Whether this command waits: Redis answers unknown commands, arity and auth errors
        at once; ALL holds every other command, WRITE the ones that may write."""
        try:
            spec = lookup(args)
        except ReplyError:
            return False
        if security.auth_required(self.router, client):
            return False
        if client.subscribed and client.proto == 2 and args[0].lower() not in SUBSCRIBED_MODE:
            return False  # refused at once in RESP2 subscribed mode, as Redis checks first
        return not self.write_only or may_write(client, spec)

    def dispatch(self, client: Any, commands: list[list[bytes]]) -> int:
        """``Router.dispatch_all`` while paused: up to the first held command (which stays
        for the backlog, with those after it)."""
        router = self.router
        for index, args in enumerate(commands):
            if self.holds(client, args):
                client.waiting = True
                self.clients.append(client)
                return index
            router.dispatch_all(client, [args], checked=True, unpaused=True)
            if client.waiting or client.closing or router.pause is not self:
                return index + 1
        return len(commands)

    def end(self) -> None:
        """UNPAUSE or the timeout: the stopped clients go on, in the order they stopped."""
        self.timer.cancel()
        if self.router.pause is self:
            self.router.pause = None
        for client in self.clients:
            if not client.closed:
                client.waiting = False
                client.resume()
                client.flush()


def may_write(client: Any, spec: Command) -> bool:
    """Redis 7.0's ``is_may_replicate_command``: write or may-replicate commands, and an EXEC
    whose queue holds one."""
    if spec.is_write or spec.fullname in MAY_REPLICATE:
        return True
    if spec.fullname == "exec" and client.multi:
        for queued in client.multi:
            try:
                inner = lookup(queued)
            except ReplyError:
                continue
            if inner.is_write or inner.fullname in MAY_REPLICATE:
                return True
    return False


def now_ms() -> int:
    return int(time.time() * 1000)


def optional_mode(args: list[bytes], choices: tuple[bytes, ...], error: str) -> bytes | None:
    """The optional last argument of CLIENT PAUSE / CLIENT UNBLOCK (lowercased), checked with
    Redis's errors; None when absent."""
    if len(args) > 4:
        raise ReplyError(errors.subcommand_syntax(args))
    if len(args) < 4:
        return None
    mode = args[3].lower()
    if mode not in choices:
        raise ReplyError(error)
    return mode


@router_command("client|pause")
def client_pause(router: Any, client: Any, args: list[bytes]) -> object:
    mode = optional_mode(args, (b"write", b"all"), "ERR CLIENT PAUSE mode must be WRITE or ALL")
    write_only = mode == b"write"
    timeout = parse_int(args[2], "ERR timeout is not an integer or out of range")
    if timeout < 0:
        raise ReplyError("ERR timeout is negative")
    start = now_ms()
    if timeout > LLONG_MAX - start:
        return OK  # Redis's end time overflows: the pause is over before it starts
    if router.pause is None:
        router.pause = ClientPause(router, start + timeout, write_only)
    else:
        router.pause.extend(start + timeout, write_only)
    return OK


@router_command("client|unpause")
def client_unpause(router: Any, client: Any, args: list[bytes]) -> object:
    if router.pause is not None:
        router.pause.end()
    return OK


# CLIENT UNBLOCK, NO-EVICT (GETREDIR, TRACKINGINFO: shardis.router.tracking) ----------------------------------------------
UNBLOCKED = b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"


@router_command("client|unblock")
def client_unblock(router: Any, client: Any, args: list[bytes]) -> object:
    reason = optional_mode(args, (b"timeout", b"error"),
                           "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    as_error = reason == b"error"
    target = parse_int(args[2], errors.NOT_INTEGER)
    return int(router.blocking.unblock(target, UNBLOCKED if as_error else None))


@router_command("client|no-evict")
def client_no_evict(router: Any, client: Any, args: list[bytes]) -> object:
    """Nothing is evicted here; the flag shows in CLIENT LIST (``e``), as in Redis."""
    value = args[2].lower()
    if value not in (b"on", b"off"):
        raise ReplyError(errors.SYNTAX)
    client.no_evict = value == b"on"
    return OK


