"""Client-side caching on the router: CLIENT TRACKING / CACHING / GETREDIR / TRACKINGINFO and
the delivery of invalidation messages (Redis's tracking.c; the worker side, which produces
them where the writes happen, is ``shardis.worker.tracking``).

A tracking client's commands go one at a time through :func:`dispatch_tracked`:

* default mode: after a read-only command with keys (subject to OPTIN/OPTOUT and CLIENT
  CACHING), ``__track <id> <keys>`` goes to each worker of those keys, on the same link as
  the read and right after it, so the keys are registered before any later write;
* NOLOOP: a write is bracketed with ``__track_caller <id>`` / ``__track_caller 0`` on its
  workers, so that the invalidations it causes carry the writer and are dropped for it;
* BCAST: the prefixes are registered on every worker when tracking starts
  (``__track_prefix``), and dropped when it stops or the client leaves.

Invalidations come back as worker pushes (:func:`deliver`): in RESP3 a ``>2 invalidate
[keys]`` push on the client's own connection (or on the REDIRECT client's), in RESP2 only
through REDIRECT to a client in pub/sub mode, as a ``message`` on ``__redis__:invalidate``.
A flush sends a null ("every key").  Keys a client read are forgotten once invalidated, as in
Redis.

Differences from Redis: keys read by a transaction's commands (EXEC) or inside a script are
not tracked (only a client's own read commands), and a NOLOOP client's write that waited for
a gate may still invalidate its own keys.
"""

from __future__ import annotations

from typing import Any

from shardis import errors
from shardis.commands import lookup
from shardis.commands.strings import parse_int
from shardis.errors import ReplyError
from shardis.resp import NULL_ARRAY, OK, Push, SetReply, encode
from shardis.router.client import PushReply
from shardis.router.registry import router_command

INVALIDATE_CHANNEL = b"__redis__:invalidate"
_KINDS = (b"inval", b"bcast", b"tflush")


class TrackingState:
    """A client's CLIENT TRACKING settings."""

    __slots__ = ("redirect", "bcast", "optin", "optout", "noloop", "caching", "prefixes",
                 "broken")

    def __init__(self) -> None:
        self.redirect = 0
        self.bcast = self.optin = self.optout = self.noloop = False
        #: CLIENT CACHING YES (OPTIN) / NO (OPTOUT) given for the next command.
        self.caching = False
        self.prefixes: list[bytes] = []
        #: the REDIRECT client is gone.
        self.broken = False


def is_tracking_push(entries: list[tuple]) -> bool:
    return bool(entries) and entries[0][0] in _KINDS


# CLIENT TRACKING ---------------------------------------------------------------------------------
@router_command("client|tracking")
def client_tracking(router: Any, client: Any, args: list[bytes]) -> object:
    redirect, prefixes = 0, []
    options: set[bytes] = set()
    i = 3
    while i < len(args):
        option = args[i].lower()
        more = i < len(args) - 1
        if option == b"redirect" and more:
            i += 1
            if redirect:
                raise ReplyError("ERR A client can only redirect to a single other client")
            redirect = parse_int(args[i], errors.NOT_INTEGER)
            if redirect not in router.clients:
                raise ReplyError("ERR The client ID you want redirect to does not exist")
        elif option in (b"bcast", b"optin", b"optout", b"noloop"):
            options.add(option)
        elif option == b"prefix" and more:
            i += 1
            prefixes.append(args[i])
        else:
            raise ReplyError(errors.SYNTAX)
        i += 1
    mode = args[2].lower()
    if mode == b"on":
        _check_options(client.tracking, options, prefixes)
        _enable(router, client, redirect, options, prefixes)
    elif mode == b"off":
        disable(router, client)
    else:
        raise ReplyError(errors.SYNTAX)
    return OK


def _check_options(state: TrackingState | None, options: set[bytes],
                   prefixes: list[bytes]) -> None:
    """Redis's checks, in its order."""
    bcast = b"bcast" in options
    if not bcast and prefixes:
        raise ReplyError("ERR PREFIX option requires BCAST mode to be enabled")
    if state is not None and state.bcast != bcast:
        raise ReplyError("ERR You can't switch BCAST mode on/off before disabling tracking "
                         "for this client, and then re-enabling it with a different mode.")
    if bcast and options & {b"optin", b"optout"}:
        raise ReplyError("ERR OPTIN and OPTOUT are not compatible with BCAST")
    if {b"optin", b"optout"} <= options:
        raise ReplyError("ERR You can't specify both OPTIN mode and OPTOUT mode")
    if state is not None and ((b"optin" in options and state.optout)
                              or (b"optout" in options and state.optin)):
        raise ReplyError("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking "
                         "for this client, and then re-enabling it with a different mode.")
    if bcast:
        _check_prefix_collisions(state.prefixes if state is not None else [], prefixes)


def _check_prefix_collisions(existing: list[bytes], prefixes: list[bytes]) -> None:
    def overlap(a: bytes, b: bytes) -> bool:
        return a.startswith(b) or b.startswith(a)

    for i, prefix in enumerate(prefixes):
        for old in existing:
            if overlap(old, prefix):
                raise ReplyError(
                    f"ERR Prefix '{_text(prefix)}' overlaps with an existing prefix "
                    f"'{_text(old)}'. Prefixes for a single client must not overlap.")
        for other in prefixes[i + 1:]:
            if overlap(prefix, other):
                raise ReplyError(
                    f"ERR Prefix '{_text(prefix)}' overlaps with another provided prefix "
                    f"'{_text(other)}'. Prefixes for a single client must not overlap.")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")  # %s stops at a NUL


def _enable(router: Any, client: Any, redirect: int, options: set[bytes],
            prefixes: list[bytes]) -> None:
    state = client.tracking
    if state is None:
        state = client.tracking = TrackingState()
        router.tracking_clients += 1
    state.redirect = redirect
    state.broken = False
    state.bcast = b"bcast" in options
    state.optin, state.optout = b"optin" in options, b"optout" in options
    state.noloop = b"noloop" in options
    if state.bcast:
        new = [p for p in (prefixes or [b""]) if p not in state.prefixes]
        if new:
            state.prefixes += new
            for worker in range(len(router.links)):
                router.call(worker, [b"__track_prefix", b"%d" % client.id, b"on", *new])


def disable(router: Any, client: Any) -> None:
    """CLIENT TRACKING OFF (also RESET, and a client leaving)."""
    state = client.tracking
    if state is None:
        return
    client.tracking = None
    router.tracking_clients -= 1
    if state.prefixes:
        for worker in range(len(router.links)):
            router.call(worker, [b"__track_prefix", b"%d" % client.id, b"off"])


@router_command("client|caching")
def client_caching(router: Any, client: Any, args: list[bytes]) -> object:
    state = client.tracking
    if state is None:
        raise ReplyError("ERR CLIENT CACHING can be called only when the client is in "
                         "tracking mode with OPTIN or OPTOUT mode enabled")
    option = args[2].lower()
    if option == b"yes":
        if not state.optin:
            raise ReplyError("ERR CLIENT CACHING YES is only valid when tracking is enabled "
                             "in OPTIN mode.")
    elif option == b"no":
        if not state.optout:
            raise ReplyError("ERR CLIENT CACHING NO is only valid when tracking is enabled "
                             "in OPTOUT mode.")
    else:
        raise ReplyError(errors.SYNTAX)
    state.caching = True
    return OK


@router_command("client|getredir")
def client_getredir(router: Any, client: Any, args: list[bytes]) -> object:
    return client.tracking.redirect if client.tracking is not None else -1


@router_command("client|trackinginfo")
def client_trackinginfo(router: Any, client: Any, args: list[bytes]) -> object:
    state = client.tracking
    if state is None:
        return {b"flags": SetReply([b"off"]), b"redirect": -1, b"prefixes": []}
    flags = [b"on"]
    if state.bcast:
        flags.append(b"bcast")
    if state.optin:
        flags += [b"optin"] + ([b"caching-yes"] if state.caching else [])
    if state.optout:
        flags += [b"optout"] + ([b"caching-no"] if state.caching else [])
    if state.noloop:
        flags.append(b"noloop")
    if state.broken:
        flags.append(b"broken_redirect")
    return {b"flags": SetReply(flags), b"redirect": state.redirect,
            b"prefixes": sorted(state.prefixes)}


# Tracking reads and NOLOOP writes ------------------------------------------------------------
def dispatch_tracked(router: Any, client: Any, commands: list[list[bytes]]) -> int:
    """A tracking client's commands, one at a time (see the module docstring); returns how
    many were dispatched, as ``Router.dispatch_all``."""
    for index, args in enumerate(commands):
        state = client.tracking
        try:
            spec = lookup(args)
        except ReplyError:
            spec = None
        write = spec is not None and state is not None and state.noloop and spec.is_write
        workers = _key_workers(router, spec, args) if write else []
        for worker in workers:
            router.call(worker, [b"__track_caller", b"%d" % client.id])
        if not router.dispatch_all(client, [args], tracked=True):
            return index
        for worker in workers:
            router.call(worker, [b"__track_caller", b"0"])
        state = client.tracking
        if state is not None and spec is not None:
            _after(router, client, state, spec, args)
        if client.waiting or client.closing:
            return index + 1
        if client.tracking is None:
            rest = commands[index + 1:]
            return index + 1 + (router.dispatch_all(client, rest) if rest else 0)
    return len(commands)


def _key_workers(router: Any, spec: Any, args: list[bytes]) -> list[int]:
    keys = spec.key_indexes(args)
    if not keys:
        return list(range(len(router.links)))
    return sorted({router.worker_of(args[i]) for i in keys})


def _after(router: Any, client: Any, state: TrackingState, spec: Any,
           args: list[bytes]) -> None:
    """Remember the keys of a read (default mode); CLIENT CACHING lasts one command."""
    caching = state.caching
    if client.multi is None and spec.fullname.partition("|")[0] != "client":
        state.caching = False  # (Redis's resetClient: CLIENT CACHING lasts one command)
    if state.bcast or "readonly" not in spec.flags or spec.group == "pubsub":
        return
    if (state.optin and not caching) or (state.optout and caching):
        return
    by_worker: dict[int, list[bytes]] = {}
    for position in spec.key_indexes(args):
        key = args[position]
        by_worker.setdefault(router.worker_of(key), []).append(key)
    for worker, keys in by_worker.items():
        router.call(worker, [b"__track", b"%d" % client.id, *keys])


# Delivering invalidations --------------------------------------------------------------------
def deliver(router: Any, entries: list[tuple]) -> None:
    """A worker's invalidations: to each client still tracking, or to its REDIRECT client."""
    messages: dict[tuple[int, bytes | None], list[bytes]] = {}
    for kind, ids, prefix, key in entries:
        if kind == b"tflush":
            for client in list(router.clients.values()):
                if client.tracking is not None:
                    _send(router, client, None)
            continue
        client_id, _, writer = ids.partition(b" ")
        client = router.clients.get(int(client_id))
        if client is None or client.tracking is None:
            continue
        state = client.tracking
        if (kind == b"bcast") != state.bcast:
            continue  # a stale entry from before a mode change
        if state.noloop and writer == client_id:
            continue
        if kind == b"inval":
            _send(router, client, [key])
        else:
            messages.setdefault((client.id, prefix), []).append(key)
    for (client_id, _), keys in messages.items():
        client = router.clients.get(client_id)
        if client is not None:
            _send(router, client, keys)
    router.schedule_client_flush()


def _send(router: Any, client: Any, keys: list[bytes] | None) -> None:
    """``sendTrackingMessage``: the keys (None: all) to the client or its REDIRECT."""
    state = client.tracking
    target, redirected = client, False
    if state.redirect:
        target = router.clients.get(state.redirect)
        if target is None:
            state.broken = True
            if client.proto > 2:
                _push(router, client, Push([b"tracking-redir-broken", state.redirect]))
            return
        redirected = True
    payload = NULL_ARRAY if keys is None else keys
    if target.proto > 2:
        _push(router, target, Push([b"invalidate", payload]))
    elif redirected and target.subscribed:
        data = b"".join([b"*3\r\n$7\r\nmessage\r\n$20\r\n", INVALIDATE_CHANNEL, b"\r\n",
                         b"$-1\r\n" if keys is None else encode(keys, 2)])
        target.replies.append(PushReply(target, data))
        router.touched.add(target)


def _push(router: Any, client: Any, message: Push) -> None:
    if client.closed:
        return
    client.replies.append(PushReply(client, encode(message, client.proto)))
    router.touched.add(client)
