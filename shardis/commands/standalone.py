"""What a standalone Redis without replicas answers: ROLE and WAIT (a server with no replica
has nothing to wait for), and LOLWUT.  Table entries only: the router answers them
(``shardis.router.standalone``)."""

from __future__ import annotations

from shardis.commands import Fanout, command

command("role", 1, "noscript loading stale fast", fanout=Fanout.ROUTER,
        acl="admin fast dangerous", group="server")(None)
command("wait", 3, "noscript", fanout=Fanout.COORDINATED, acl="slow connection",
        group="generic", tips="request_policy:all_shards response_policy:agg_min")(None)
command("lolwut", -1, "readonly fast", fanout=Fanout.ROUTER, acl="read fast",
        group="server")(None)

# Cluster, replication and modules: shardis is one standalone server that loads no module, so
# these answer what such a Redis answers (cluster support disabled, no replicas, MODULE not
# enabled); see ``shardis.router.standalone``.
_R = Fanout.ROUTER
command("asking", 1, "fast", fanout=_R, acl="fast connection", group="cluster")(None)
command("readonly", 1, "loading stale fast", fanout=_R, acl="fast connection",
        group="cluster")(None)
command("readwrite", 1, "loading stale fast", fanout=_R, acl="fast connection",
        group="cluster")(None)
command("cluster", -2, fanout=_R, acl="slow", group="cluster")(None)
_ADMIN = "admin slow dangerous"
for _name, _arity, _flags, _acl, _tips in (
    ("replicas", 3, "admin stale", _ADMIN, "nondeterministic_output"),
    ("slots", 2, "stale", "slow", "nondeterministic_output"),
    ("myid", 2, "stale", "slow", ""),
    ("addslotsrange", -4, "admin stale no_async_loading", _ADMIN, ""),
    ("delslotsrange", -4, "admin stale no_async_loading", _ADMIN, ""),
    ("replicate", 3, "admin stale no_async_loading", _ADMIN, ""),
    ("getkeysinslot", 4, "stale", "slow", "nondeterministic_output"),
    ("reset", -2, "admin noscript stale", _ADMIN, ""),
    ("saveconfig", 2, "admin stale no_async_loading", _ADMIN, ""),
    ("links", 2, "stale", "slow", "nondeterministic_output"),
    ("forget", 3, "admin stale no_async_loading", _ADMIN, ""),
    ("delslots", -3, "admin stale no_async_loading", _ADMIN, ""),
    ("meet", -4, "admin stale no_async_loading", _ADMIN, ""),
    ("shards", 2, "stale", "slow", "nondeterministic_output"),
    ("count-failure-reports", 3, "admin stale", _ADMIN, "nondeterministic_output"),
    ("slaves", 3, "admin stale", _ADMIN, "nondeterministic_output"),
    ("addslots", -3, "admin stale no_async_loading", _ADMIN, ""),
    ("countkeysinslot", 3, "stale", "slow", ""),
    ("info", 2, "stale", "slow", "nondeterministic_output"),
    ("flushslots", 2, "admin stale no_async_loading", _ADMIN, ""),
    ("failover", -2, "admin stale no_async_loading", _ADMIN, ""),
    ("bumpepoch", 2, "admin stale no_async_loading", _ADMIN, "nondeterministic_output"),
    ("set-config-epoch", 3, "admin stale no_async_loading", _ADMIN, ""),
    ("nodes", 2, "stale", "slow", "nondeterministic_output"),
    ("help", 2, "loading stale", "slow", ""),
    ("keyslot", 3, "stale", "slow", ""),
    ("setslot", -4, "admin stale no_async_loading", _ADMIN, ""),
):
    command(_name, _arity, _flags, fanout=_R, acl=_acl, group="cluster", parent="cluster",
            tips=_tips)(None)

command("module", -2, fanout=_R, acl="slow", group="server")(None)
for _name, _arity, _flags, _acl, _tips in (
    ("help", 2, "loading stale", "slow", ""),
    ("list", 2, "admin noscript", _ADMIN, "nondeterministic_output_order"),
    ("loadex", -3, "admin noscript no_async_loading", _ADMIN, ""),
    ("unload", 3, "admin noscript no_async_loading", _ADMIN, ""),
    ("load", -3, "admin noscript no_async_loading", _ADMIN, ""),
):
    command(_name, _arity, _flags, fanout=_R, acl=_acl, group="server", parent="module",
            tips=_tips)(None)

command("replicaof", 3, "admin noscript stale no_async_loading", fanout=_R, acl=_ADMIN,
        group="server")(None)
command("slaveof", 3, "admin noscript stale no_async_loading", fanout=_R, acl=_ADMIN,
        group="server")(None)
command("failover", -1, "admin noscript stale", fanout=_R, acl=_ADMIN, group="server")(None)
command("sync", 1, "admin noscript no_async_loading no_multi", fanout=_R, acl=_ADMIN,
        group="server")(None)
command("psync", -3, "admin noscript no_async_loading no_multi", fanout=_R, acl=_ADMIN,
        group="server")(None)
command("replconf", -1, "admin noscript loading stale allow_busy", fanout=_R, acl=_ADMIN,
        group="server")(None)
