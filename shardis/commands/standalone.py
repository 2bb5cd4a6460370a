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
