"""Pub/sub on the router: which of this router's clients subscribe to what, and delivery.

Workers route messages (``shardis.worker.pubsub``: classic channels and patterns on the hub,
worker 0; sharded channels on their slot's worker) and push each message once to every router
with subscribers; the router fans it out to its clients.  Subscribing tells the channel's
worker that one more client of this router listens (``__sub``), before any later PUBLISH can
reach that worker, since both travel the same FIFO link.

A subscriber that does not read is disconnected once its pending output passes the pubsub
class of ``client-output-buffer-limit`` (Redis's 32mb 8mb 60 by default: see
``shardis.router.limits``); it never slows the publisher or others.
"""

from __future__ import annotations

from typing import Any

from shardis import errors
from shardis.commands.pubsub import CHANNEL, PATTERN, SHARD
from shardis.errors import ReplyError, raise_if_error
from shardis.notify import is_keyspace_channel
from shardis.resp import Push, PushRaw, encode
from shardis.router.client import PushReply
from shardis.router.registry import Plan, coordinated, router_command
from shardis.worker.aclhub import ACL_CHANGED

HUB = 0

_REPLY_NAMES = {
    CHANNEL: (b"subscribe", b"unsubscribe"),
    PATTERN: (b"psubscribe", b"punsubscribe"),
    SHARD: (b"ssubscribe", b"sunsubscribe"),
}
#: What a RESP2 client may send while subscribed.
SUBSCRIBED_MODE_COMMANDS = frozenset((b"subscribe", b"unsubscribe", b"psubscribe",
                                      b"punsubscribe", b"ssubscribe", b"sunsubscribe",
                                      b"ping", b"quit", b"reset"))


def subscribed_mode_error(name: bytes) -> str:
    return (f"ERR Can't execute '{errors.arg_text(name).lower()}': only (P|S)SUBSCRIBE / "
            "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")


class PubSubRouter:
    def __init__(self, router: Any) -> None:
        self.router = router
        #: kind -> name -> this router's subscribed clients (insertion-ordered).
        self.local: dict[bytes, dict[bytes, dict[Any, None]]] = {
            CHANNEL: {}, PATTERN: {}, SHARD: {}
        }

    def worker_for(self, kind: bytes, name: bytes) -> int:
        return self.router.worker_of(name) if kind == SHARD else HUB

    def _tell_worker(self, kind: bytes, name: bytes, delta: int) -> None:
        command = [b"__sub", kind, name, b"%d" % delta]
        if kind == PATTERN or (kind == CHANNEL and is_keyspace_channel(name)):
            # Keyspace notifications start on the worker that owns the key: patterns and
            # keyspace channels are known to every worker (the hub counts them for PUBLISH).
            for worker in range(len(self.router.links)):
                self.router.call(worker, command)
        else:
            self.router.call(self.worker_for(kind, name), command)

    def subscribe(self, client: Any, kind: bytes, names: list[bytes]) -> PushRaw:
        own = client.subscriptions[kind]
        replies = []
        for name in names:
            if name not in own:
                own[name] = None
                self.local[kind].setdefault(name, {})[client] = None
                self._tell_worker(kind, name, 1)
            replies.append(self._confirmation(client, kind, 0, name))
        client.subscribed = True
        return PushRaw(b"".join(replies))

    def unsubscribe(self, client: Any, kind: bytes, names: list[bytes]) -> PushRaw:
        own = client.subscriptions[kind]
        targets = names or list(own)
        if not targets:
            return PushRaw(self._confirmation(client, kind, 1, None))
        replies = []
        for name in targets:
            if name in own:
                del own[name]
                clients = self.local[kind].get(name, {})
                clients.pop(client, None)
                if not clients:
                    self.local[kind].pop(name, None)
                self._tell_worker(kind, name, -1)
            replies.append(self._confirmation(client, kind, 1, name))
        client.subscribed = any(client.subscriptions.values())
        return PushRaw(b"".join(replies))

    def _confirmation(self, client: Any, kind: bytes, which: int, name: bytes | None) -> bytes:
        if kind == SHARD:
            count = len(client.subscriptions[SHARD])
        else:
            count = len(client.subscriptions[CHANNEL]) + len(client.subscriptions[PATTERN])
        return encode(Push([_REPLY_NAMES[kind][which], name, count]), client.proto)

    def replay(self, worker: int) -> None:
        """Register again, on a restarted worker, the subscriptions that live on it."""
        for kind, names in self.local.items():
            for name, clients in names.items():
                everywhere = kind == PATTERN or (kind == CHANNEL and is_keyspace_channel(name))
                if everywhere or self.worker_for(kind, name) == worker:
                    command = [b"__sub", kind, name, b"%d" % len(clients)]
                    self.router.call(worker, command)

    def client_gone(self, client: Any) -> None:
        for kind in (CHANNEL, PATTERN, SHARD):
            if client.subscriptions[kind]:
                self.unsubscribe(client, kind, [])

    def deliver(self, entries: list[tuple]) -> None:
        """Messages pushed by a worker: hand each to this router's subscribed clients.  The hub
        also pushes ACL change notices (kind ``acl``: ``shardis.router.aclsync``)."""
        local = self.local
        router = self.router
        for kind, channel, pattern, message in entries:
            if kind == b"message" or kind == b"smessage":
                clients = local[SHARD if kind == b"smessage" else CHANNEL].get(channel, {})
                payload = [kind, channel, message]
            elif kind == b"pmessage":
                clients = local[PATTERN].get(pattern, {})
                payload = [kind, pattern, channel, message]
            else:
                if kind == ACL_CHANGED:  # the hub's, never a client's (PUBLISH makes messages)
                    router.aclsync.notified()
                continue
            for client in clients:
                if client.closed:
                    continue  # dropped for its output limit, its connection_lost yet to come
                client.replies.append(PushReply(client, encode(Push(payload), client.proto)))
                router.touched.add(client)
        router.schedule_client_flush()


def _subscription_command(kind: bytes, subscribing: bool) -> Any:
    """The router handler of one of the six (P|S)(UN)SUBSCRIBE commands."""

    def handler(router: Any, client: Any, args: list[bytes]) -> object:
        pubsub: PubSubRouter = router.pubsub
        change = pubsub.subscribe if subscribing else pubsub.unsubscribe
        return change(client, kind, args[1:])

    return handler


for _kind, (_subscribe, _unsubscribe) in _REPLY_NAMES.items():
    router_command(_subscribe.decode())(_subscription_command(_kind, True))
    router_command(_unsubscribe.decode())(_subscription_command(_kind, False))


# PUBSUB introspection --------------------------------------------------------------------------
def _at_most_pattern(args: list[bytes]) -> None:
    """CHANNELS and SHARDCHANNELS take one optional pattern; Redis's handler refuses more."""
    if len(args) > 3:
        raise ReplyError(errors.subcommand_syntax(args))


def _hub_plan(router: Any, args: list[bytes]) -> Plan:
    return Plan(workers=frozenset((HUB,)))


def _all_plan(router: Any, args: list[bytes]) -> Plan:
    return Plan(workers=router.all_workers)


def _channels_plan(router: Any, args: list[bytes]) -> Plan:
    _at_most_pattern(args)
    return _hub_plan(router, args)


def _shardchannels_plan(router: Any, args: list[bytes]) -> Plan:
    _at_most_pattern(args)
    return _all_plan(router, args)


@coordinated("pubsub|channels", _channels_plan)
async def pubsub_channels(router: Any, client: Any, args: list[bytes]) -> object:
    return raise_if_error(await router.call(HUB, [b"__pubsub_names", CHANNEL, *args[2:3]]))


@coordinated("pubsub|numsub", _hub_plan)
async def pubsub_numsub(router: Any, client: Any, args: list[bytes]) -> object:
    counts = raise_if_error(await router.call(HUB, [b"__pubsub_counts", CHANNEL, *args[2:]]))
    return [item for pair in zip(args[2:], counts) for item in pair]  # type: ignore[arg-type]


@coordinated("pubsub|numpat", _hub_plan)
async def pubsub_numpat(router: Any, client: Any, args: list[bytes]) -> object:
    return raise_if_error(await router.call(HUB, [b"__pubsub_counts", PATTERN]))


@coordinated("pubsub|shardchannels", _shardchannels_plan)
async def pubsub_shardchannels(router: Any, client: Any, args: list[bytes]) -> object:
    names = await router.call_all([b"__pubsub_names", SHARD, *args[2:3]])
    return [name for part in names for name in raise_if_error(part)]  # type: ignore[union-attr]


@coordinated("pubsub|shardnumsub", _all_plan)
async def pubsub_shardnumsub(router: Any, client: Any, args: list[bytes]) -> object:
    reply: list[Any] = []
    for channel in args[2:]:
        counts = await router.call(router.worker_of(channel),
                                   [b"__pubsub_counts", SHARD, channel])
        reply += [channel, raise_if_error(counts)[0]]  # type: ignore[index]
    return reply


@router_command("pubsub|help")
def pubsub_help(router: Any, client: Any, args: list[bytes]) -> object:
    from shardis.commands import help_reply

    return help_reply([
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "SHARDCHANNELS [<pattern>]",
        "    Return the currently active shard level channels matching a <pattern> (default: '*').",
        "SHARDNUMSUB [<shardchannel> ...]",
        "    Return the number of subscribers for the specified shard level channel(s)",
    ])
