"""Worker side of CONFIG: ``__resetstat`` (CONFIG RESETSTAT's share of each worker), and the
CONFIG REWRITE entry of the command table (answered by the router, ``shardis.router.config``).
"""

from __future__ import annotations

from shardis.commands import Fanout, command
from shardis.commands import server as _server  # noqa: F401  (registers the CONFIG container)
from shardis.resp import OK
from shardis.worker.keyspace import Keyspace

command("rewrite", 2, "admin noscript loading stale", fanout=Fanout.ROUTER,
        acl="admin slow dangerous", group="server", parent="config")(None)


@command("__resetstat", 1, "readonly internal", fanout=Fanout.SINGLE)
def shard_resetstat_command(db: Keyspace, args: list[bytes]) -> object:
    """The worker's counters INFO sums (commands run, error replies, expired keys and the
    time active expiry took), back to zero as Redis's ``resetServerStats``; the dirty count
    is not a statistic (it drives saves) and stays."""
    stats = db.stats  # type: ignore[attr-defined]
    stats.commands = 0
    stats.error_replies = 0
    shard = db.shard  # type: ignore[attr-defined]
    for keyspace in shard.keyspaces():
        keyspace.expired_keys = 0
        keyspace.expire_cycle_ns = 0
    shard.script_calls.clear()  # commandstats' share of the commands scripts called
    shard.evictor.evicted_keys = 0
    shard.evictor.exceeded_ms = 0
    return OK
