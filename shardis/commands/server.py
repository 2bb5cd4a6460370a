"""Connection and server commands.

Most of these are answered by the router alone (``Fanout.ROUTER``: PING, HELLO, CLIENT,
COMMAND...) and are implemented in ``shardis.router.server``; this module holds their table
entries and the worker-side commands the router sends: INFO's share (``__info``), and the
persistence commands every worker runs (``__save``, ``__bgsave``, ``__bgrewriteaof``,
``__shutdown``, ``__debug_reload``, ``__config_set``).
"""

from __future__ import annotations

import logging
import os
import resource
import time

from shardis.commands import Fanout, command, container
from shardis.errors import ReplyError
from shardis.persist.rdb import RdbError
from shardis.resp import OK, Status
from shardis.worker.keyspace import Keyspace
from shardis.worker.snapshot import load_rdb, prepare_shutdown

log = logging.getLogger("shardis.worker")

R = Fanout.ROUTER
CONN = "connection"

command("ping", -1, "fast", fanout=R, acl="fast connection", group=CONN,
        tips="request_policy:all_shards response_policy:all_succeeded")(None)
command("echo", 2, "loading stale fast", fanout=R, acl="fast connection", group=CONN)(None)
command("quit", -1, "noscript loading stale fast no_auth allow_busy", fanout=R,
        acl="fast connection", group=CONN)(None)
command("select", 2, "loading stale fast", fanout=R, acl="fast connection", group=CONN)(None)
command("hello", -1, "noscript loading stale fast no_auth allow_busy", fanout=R,
        acl="fast connection", group=CONN)(None)
command("reset", 1, "noscript loading stale fast no_auth allow_busy", fanout=R,
        acl="fast connection", group=CONN)(None)
command("auth", -2, "noscript loading stale fast no_auth allow_busy", fanout=R,
        acl="fast connection", group=CONN)(None)
# SHUTDOWN: every worker prepares (saves, fsyncs) first (shardis.router.server).
command("shutdown", -1, "admin noscript loading stale no_multi allow_busy",
        fanout=Fanout.COORDINATED, acl="admin slow dangerous", group="server")(None)
command("time", 1, "loading stale fast", fanout=R, acl="fast", group="server",
        tips="nondeterministic_output")(None)
command("info", -1, "loading stale", fanout=Fanout.COORDINATED, acl="slow dangerous",
        group="server",
        tips="nondeterministic_output request_policy:all_shards response_policy:special")(None)

container("client", group=CONN)
for _name, _arity, _flags, _acl in (
    ("setname", 3, "noscript loading stale", "slow connection"),
    ("getname", 2, "noscript loading stale", "slow connection"),
    ("id", 2, "noscript loading stale", "slow connection"),
    ("info", 2, "noscript loading stale", "slow connection"),
    ("list", -2, "admin noscript loading stale", "admin slow dangerous connection"),
    ("setinfo", 4, "noscript loading stale", "slow connection"),
    ("help", 2, "loading stale", "slow connection"),
    ("reply", 3, "noscript loading stale", "slow connection"),
    ("kill", -3, "admin noscript loading stale", "admin slow dangerous connection"),
    ("pause", -3, "admin noscript loading stale", "admin slow dangerous connection"),
    ("unpause", 2, "admin noscript loading stale", "admin slow dangerous connection"),
    ("no-evict", 3, "admin noscript loading stale", "admin slow dangerous connection"),
    ("unblock", -3, "admin noscript loading stale", "admin slow dangerous connection"),
    ("getredir", 2, "noscript loading stale", "slow connection"),
    ("trackinginfo", 2, "noscript loading stale", "slow connection"),
    ("tracking", -3, "noscript loading stale", "slow connection"),
    ("caching", 3, "noscript loading stale", "slow connection"),
):
    command(_name, _arity, _flags, fanout=R, acl=_acl, group=CONN, parent="client",
            tips="nondeterministic_output" if _name in ("info", "list") else "")(None)

container("acl", group="server")
for _name, _arity, _admin in (
    ("cat", -2, False), ("deluser", -3, True), ("dryrun", -4, True), ("genpass", -2, False),
    ("getuser", 3, True), ("list", 2, True), ("load", 2, True), ("log", -2, True),
    ("save", 2, True), ("setuser", -3, True), ("users", 2, True), ("whoami", 2, False),
):
    # Changes are stored on worker 0 for every router (shardis.router.aclsync): coordinated.
    shared = _name in ("deluser", "load", "setuser")
    command(_name, _arity, ("admin " if _admin else "") + "noscript loading stale",
            fanout=Fanout.COORDINATED if shared else R,
            acl="admin slow dangerous" if _admin else "slow", group="server",
            parent="acl")(None)
command("help", 2, "loading stale", fanout=R, acl="slow", group="server", parent="acl")(None)

# Bare COMMAND is valid too, hence arity -1 for the container.
container("command", arity=-1, flags="loading stale", acl="slow connection", group="server",
          tips="nondeterministic_output_order")
for _name, _arity in (("count", 2), ("info", -2), ("docs", -2), ("list", -2), ("help", 2),
                      ("getkeys", -4), ("getkeysandflags", -4)):
    command(_name, _arity, "loading stale", fanout=R, acl="slow connection", group="server",
            parent="command",
            tips="nondeterministic_output_order" if _name in ("info", "docs", "list") else "")(None)

container("config", group="server")
command("get", -3, "admin noscript loading stale", fanout=R, acl="admin slow dangerous",
        group="server", parent="config")(None)
command("set", -4, "admin noscript loading stale", fanout=Fanout.COORDINATED,
        acl="admin slow dangerous", group="server", parent="config",
        tips="request_policy:all_nodes response_policy:all_succeeded")(None)
command("resetstat", 2, "admin noscript loading stale", fanout=R,
        acl="admin slow dangerous", group="server", parent="config")(None)
command("help", 2, "loading stale", fanout=R, acl="slow", group="server", parent="config")(None)

# Snapshots: the router sends these to every worker in one flush (shardis.router.server).
command("save", 1, "admin noscript no_async_loading no_multi", fanout=Fanout.COORDINATED,
        acl="admin slow dangerous", group="server")(None)
command("bgsave", -1, "admin noscript no_async_loading", fanout=Fanout.COORDINATED,
        acl="admin slow dangerous", group="server")(None)
command("lastsave", 1, "loading stale fast", fanout=Fanout.COORDINATED,
        acl="admin fast dangerous", group="server", tips="nondeterministic_output")(None)
command("bgrewriteaof", 1, "admin noscript no_async_loading", fanout=Fanout.COORDINATED,
        acl="admin slow dangerous", group="server")(None)
# DEBUG: RELOAD (and HELP) only, refused unless enable-debug-command allows it.
command("debug", -2, "admin noscript loading stale", fanout=Fanout.COORDINATED,
        acl="admin slow dangerous", group="server")(None)

# SLOWLOG, LATENCY, MONITOR: the router keeps these (shardis.router.stats, .monitor).
container("slowlog", group="server")
_NODES = "request_policy:all_nodes"
for _name, _arity, _tips in (
    ("get", -2, f"{_NODES} nondeterministic_output"),
    ("len", 2, f"{_NODES} response_policy:agg_sum nondeterministic_output"),
    ("reset", 2, f"{_NODES} response_policy:all_succeeded"),
):
    command(_name, _arity, "admin loading stale", fanout=R, acl="admin slow dangerous",
            group="server", parent="slowlog", tips=_tips)(None)
command("help", 2, "loading stale", fanout=R, acl="slow", group="server",
        parent="slowlog")(None)

container("latency", group="server")
command("help", 2, "loading stale", fanout=R, acl="slow", group="server",
        parent="latency")(None)
_SPECIAL = "nondeterministic_output request_policy:all_nodes response_policy:special"
for _name, _arity, _tips in (
    ("histogram", -2, _SPECIAL), ("doctor", 2, _SPECIAL), ("graph", 3, _SPECIAL),
    ("reset", -2, f"{_NODES} response_policy:all_succeeded"), ("latest", 2, _SPECIAL),
    ("history", 3, _SPECIAL),
):
    command(_name, _arity, "admin noscript loading stale", fanout=R,
            acl="admin slow dangerous", group="server", parent="latency", tips=_tips)(None)

command("monitor", 1, "admin noscript loading stale", fanout=R, acl="admin slow dangerous",
        group="server")(None)

_STARTED = time.time()


def _snapshots(db: Keyspace) -> object:
    snapshots = db.shard.snapshots  # type: ignore[attr-defined]
    if snapshots is None:
        raise ReplyError("ERR this worker has no snapshot directory")
    return snapshots


@command("__save", 1, "write internal", fanout=Fanout.SINGLE)
def shard_save_command(db: Keyspace, args: list[bytes]) -> object:
    """Write this worker's ``dump.rdb`` now (``shardis.worker.snapshot``)."""
    _snapshots(db).save(db.shard)  # type: ignore[attr-defined]
    return OK


@command("__bgsave", -1, "write internal", fanout=Fanout.SINGLE)
def shard_bgsave_command(db: Keyspace, args: list[bytes]) -> object:
    """``__bgsave [schedule]``: start writing this worker's ``dump.rdb`` in a forked child
    (the status reply: started, or scheduled while an AOF rewrite runs)."""
    schedule = len(args) > 1 and args[1].lower() == b"schedule"
    return Status(_snapshots(db).bgsave(db.shard, schedule).encode())  # type: ignore[attr-defined]


@command("__bgrewriteaof", 1, "write internal", fanout=Fanout.SINGLE)
def shard_bgrewriteaof_command(db: Keyspace, args: list[bytes]) -> object:
    """Rewrite this worker's AOF in a forked child (``shardis.worker.aoflog.AofRewriter``);
    the fork happens once this batch's writes are in the current incr file."""
    rewriter = db.shard.rewriter  # type: ignore[attr-defined]
    if rewriter is None:
        raise ReplyError("ERR this worker has no AOF directory")
    return Status(rewriter.request(db.shard).encode())  # type: ignore[attr-defined]


@command("__shutdown", -2, "write internal", fanout=Fanout.SINGLE)
def shard_shutdown_command(db: Keyspace, args: list[bytes]) -> object:
    """``__shutdown save|nosave [force]``: SHUTDOWN's work on this worker (save, fsync the
    AOF); the process stops when told to (SIGTERM), without saving again."""
    flags = {arg.lower() for arg in args[1:]}
    prepare_shutdown(db.shard, save=b"save" in flags,  # type: ignore[attr-defined]
                     force=b"force" in flags)
    return OK


@command("__debug_reload", -1, "write internal", fanout=Fanout.SINGLE)
def shard_debug_reload_command(db: Keyspace, args: list[bytes]) -> object:
    """``__debug_reload [merge] [noflush] [nosave]``: DEBUG RELOAD on this worker: save
    ``dump.rdb``, empty the keyspace, load the file back (Redis's ``debugCommand``)."""
    shard = db.shard  # type: ignore[attr-defined]
    snapshots = _snapshots(db)
    options = {arg.lower() for arg in args[1:]}
    if b"nosave" not in options:
        try:
            snapshots.save(shard)  # type: ignore[attr-defined]
        except ReplyError:
            raise ReplyError("ERR") from None
    keyspaces = shard.keyspaces()
    before = [list(keyspace.data) if keyspace.watched else [] for keyspace in keyspaces]
    if b"noflush" not in options and b"merge" not in options:
        for keyspace in keyspaces:
            keyspace.clear()
    try:
        with open(snapshots.path, "rb") as fh:  # type: ignore[attr-defined]
            load_rdb(db, fh, snapshots.path)  # type: ignore[attr-defined]
    except (OSError, RdbError) as exc:
        log.warning("DEBUG RELOAD: %s", exc)
        raise ReplyError("ERR Error trying to load the RDB dump") from None
    for keyspace, keys in zip(keyspaces, before):
        for key in keys + list(keyspace.watched):
            entry = keyspace.watched.get(key)
            if entry is not None:
                entry[1] += 1  # WATCH: the reload replaced every key
    log.warning("DB reloaded by DEBUG RELOAD")
    return OK


@command("__config_set", 3, "write internal", fanout=Fanout.SINGLE)
def shard_config_set_command(db: Keyspace, args: list[bytes]) -> object:
    """``__config_set directive value``: CONFIG SET of a directive the worker keeps."""
    db.shard.apply_config(args[1].decode(errors="replace"), args[2])  # type: ignore[attr-defined]
    return OK


@command("__debug_object", 2, "readonly internal", keys=(1, 1, 1), fanout=Fanout.SINGLE)
def shard_debug_object_command(db: Keyspace, args: list[bytes]) -> object:
    """DEBUG OBJECT's line for a key of this worker (``shardis.router.debug``)."""
    from shardis.router.debug import debug_object_line

    key = args[1]
    value = db.peek(key)
    if value is None:
        raise ReplyError("ERR no such key")
    return Status(debug_object_line(db, key, value))


@command("__debug_sleep", 2, "readonly internal", fanout=Fanout.SINGLE)
def shard_debug_sleep_command(db: Keyspace, args: list[bytes]) -> object:
    """DEBUG SLEEP on this worker: it stops for that long, as Redis's server does."""
    time.sleep(float(args[1]))
    return OK


@command("__debug_active_expire", 2, "write internal", fanout=Fanout.SINGLE)
def shard_debug_active_expire_command(db: Keyspace, args: list[bytes]) -> object:
    """DEBUG SET-ACTIVE-EXPIRE: whether this worker expires keys in the background."""
    db.shard.active_expire_enabled = args[1] != b"0"  # type: ignore[attr-defined]
    return OK


#: The push (``shardis.protocol``) that carries a command a script called to the router that
#: ran the script, for its MONITOR clients: ``(SCRIPT_MONITOR, db, None, RESP array)``.
SCRIPT_MONITOR = b"mline"


@command("__monitor_scripts", 2, "readonly internal", fanout=Fanout.SINGLE)
def shard_monitor_scripts_command(db: Keyspace, args: list[bytes]) -> object:
    """``__monitor_scripts 1|0``: report (or stop reporting) the commands scripts call, for
    the routers' MONITOR clients (``shardis.router.monitor``)."""
    db.shard.monitor_scripts = args[1] == b"1"  # type: ignore[attr-defined]
    return OK


@command("__lastsave", 1, "readonly internal", fanout=Fanout.SINGLE)
def shard_lastsave_command(db: Keyspace, args: list[bytes]) -> object:
    return _snapshots(db).lastsave  # type: ignore[attr-defined]


@command("__ping", 1, "readonly internal fast", fanout=Fanout.SINGLE)
def shard_ping_command(db: Keyspace, args: list[bytes]) -> object:
    """The router's round-trip probe (``Router.ping_links``): PING is answered by the router
    itself, this one by the worker."""
    return b"PONG"


@command("__whoami", -1, "readonly internal", fanout=Fanout.SINGLE)
def shard_whoami_command(db: Keyspace, args: list[bytes]) -> object:
    """This worker's shard index: the router checks it against its --connect order.

    ``__whoami applied`` -> ``[index, seq]``: also the last batch of the asking router that
    the worker's AOF holds (0: none yet), or ``[index, nil]`` without an AOF: after a restart
    the router resends the batches past ``seq`` (``Router.resume``), or fails them.
    """
    shard = db.shard  # type: ignore[attr-defined]
    if len(args) == 1:
        return shard.index
    if len(args) != 2 or args[1].lower() != b"applied":
        raise ReplyError("ERR syntax error")
    if shard.aof is None:
        return [shard.index, None]
    return [shard.index, shard.aof.applied.get(shard.pubsub.peer, 0)]


@command("__lost_replies", -2, "readonly internal", fanout=Fanout.SINGLE)
def shard_lost_replies_command(db: Keyspace, args: list[bytes]) -> object:
    """``__lost_replies seq...``: the recorded reply messages of the asking router's batches
    that the AOF holds but whose replies never reached it (nil: not recorded)."""
    shard = db.shard  # type: ignore[attr-defined]
    if shard.replies_log is None:
        return [None] * (len(args) - 1)
    try:
        seqs = [int(arg) for arg in args[1:]]
    except ValueError:
        raise ReplyError("ERR value is not an integer or out of range") from None
    return shard.replies_log.take(shard.pubsub.peer, seqs)


@command("__acl_sync", 4, "write internal", fanout=Fanout.SINGLE)
def acl_sync_command(db: Keyspace, args: list[bytes]) -> object:
    """``__acl_sync version loads text``: a router offers its ACL state and watches changes;
    the reply is the state it must use (``shardis.worker.aclhub``)."""
    return db.shard.aclhub.sync(  # type: ignore[attr-defined]
        db.pubsub.peer, int(args[1]), int(args[2]), args[3],  # type: ignore[attr-defined]
        db.pubsub.pushes)  # type: ignore[attr-defined]


@command("__acl_get", 1, "readonly internal", fanout=Fanout.SINGLE)
def acl_get_command(db: Keyspace, args: list[bytes]) -> object:
    """The ACL state: ``[version, loads, text]``, nil when no router offered one yet."""
    return db.shard.aclhub.reply()  # type: ignore[attr-defined]


@command("__acl_set", 4, "write internal", fanout=Fanout.SINGLE)
def acl_set_command(db: Keyspace, args: list[bytes]) -> object:
    """``__acl_set expected-version loads text``: compare-and-set of the ACL state."""
    return db.shard.aclhub.compare_and_set(  # type: ignore[attr-defined]
        db.pubsub.peer, int(args[1]), int(args[2]), args[3],  # type: ignore[attr-defined]
        db.pubsub.pushes)  # type: ignore[attr-defined]


@command("__info", 1, "readonly internal", fanout=Fanout.SINGLE)
def shard_info_command(db: Keyspace, args: list[bytes]) -> object:
    """This shard's counters, summed by the router into INFO.

    ``keys`` counts keys not reclaimed yet, like Redis's INFO keyspace; ``avg_ttl`` is this
    shard's exact average TTL in ms over its ``expires`` keys (combine shards weighted by
    ``expires``); ``expire_cycle_cpu_milliseconds`` is the time active expiry has taken.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    snapshots = db.shard.snapshots  # type: ignore[attr-defined]
    persistence = snapshots.info(db.shard) if snapshots is not None else {}
    rewriter = getattr(db.shard, "rewriter", None)  # type: ignore[attr-defined]
    if rewriter is not None:
        persistence.update(rewriter.info(db.shard))  # type: ignore[attr-defined]
    keyspaces = db.shard.keyspaces()  # type: ignore[attr-defined]
    return {
        **persistence,
        b"keys": len(db.data),
        b"expires": len(db.expires),
        b"avg_ttl": db.avg_ttl(),
        # every database's (number, keys, expires, avg_ttl), for INFO keyspace
        b"databases": [[k.index, len(k.data), len(k.expires), k.avg_ttl()]
                       for k in keyspaces if k.data],
        b"expired_keys": sum(k.expired_keys for k in keyspaces),
        b"expire_cycle_cpu_milliseconds": sum(k.expire_cycle_ns for k in keyspaces) // 1_000_000,
        b"error_replies": db.stats.error_replies,  # type: ignore[attr-defined]
        b"commands": db.stats.commands,  # type: ignore[attr-defined]  # INFO shards' ops/s
        # the commands scripts called, for INFO commandstats: name -> [calls, usec, failed]
        b"script_calls": db.shard.script_calls,  # type: ignore[attr-defined]
        b"process_id": os.getpid(),
        b"used_memory_rss": _rss_bytes(),
        b"memory": db.shard.evictor.report(),  # type: ignore[attr-defined]
        b"used_cpu_sys": usage.ru_stime,
        b"used_cpu_user": usage.ru_utime,
    }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
