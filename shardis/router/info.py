"""INFO on the router: Redis 7.0's sections, headings and field names, values summed over the
workers (``__info``) where shardis has them.

Clients such as redis-py's test tooling read fields by name (``cluster_enabled``...), so every
field Redis 7.0 prints by default is here.  A field shardis has no counterpart for carries the
value a Redis server in the same situation reports: replication as a master without
replicas, zero for counters shardis does not keep (net bytes, keyspace hits).

Commandstats, Errorstats and Latencystats come from the router's end-to-end timing of every
command (``shardis.router.stats``): a command's time includes its trip to the worker.
"""

from __future__ import annotations

import os
import platform
import resource
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from shardis import REDIS_VERSION, __version__
from shardis.config import CONFIG_FILE
from shardis.resp import Verbatim
from shardis.router import stats
from shardis.router.registry import Plan, coordinated

Fields = list[tuple[str, Any]]
Section = Callable[[Any, list], Fields]

#: Sections in the order Redis prints them, with their headings.
HEADINGS = {
    "server": "Server", "clients": "Clients", "memory": "Memory",
    "persistence": "Persistence", "stats": "Stats", "replication": "Replication",
    "cpu": "CPU", "modules": "Modules", "commandstats": "Commandstats",
    "errorstats": "Errorstats", "latencystats": "Latencystats", "cluster": "Cluster",
    "keyspace": "Keyspace", "shards": "Shards",
}
#: What ``INFO``/``INFO default`` prints; ``all`` and ``everything`` add commandstats and
#: latencystats; shardis's own Shards section is printed when asked for (``INFO shards``),
#: so that ``all`` and ``everything`` list Redis's sections only.
DEFAULT_SECTIONS = frozenset(HEADINGS) - {"commandstats", "latencystats", "shards"}

#: Fixed for the router's life, as Redis's run id and replication id are for the server's.
RUN_ID = secrets.token_hex(20)
REPL_ID = secrets.token_hex(20)


def wanted_sections(args: list[bytes]) -> set[str]:
    """The sections INFO's arguments select, as Redis 7.0 reads them: ``default``, ``all`` and
    ``everything`` expand, names are case-insensitive, unknown names select nothing."""
    names = {arg.lower().decode(errors="replace") for arg in args} or {"default"}
    if names & {"default", "all", "everything"}:
        names |= DEFAULT_SECTIONS
    if names & {"all", "everything"}:
        names |= {"commandstats", "latencystats"}
    return names


def _plan_info(router: Any, args: list[bytes]) -> Plan:
    return Plan(workers=router.all_workers)


@coordinated("info", _plan_info)
async def info(router: Any, client: Any, args: list[bytes]) -> object:
    """Ask every worker for its share, then print the selected sections in Redis's order."""
    replies = await router.call_all([b"__info"])
    shards = [s for s in replies if isinstance(s, dict)]
    wanted = wanted_sections(args[1:])
    sections = []
    for name, heading in HEADINGS.items():
        if name in wanted:
            lines = [f"# {heading}"]
            # Shards: one line per worker, a worker that did not answer included.
            source = replies if name == "shards" else shards
            lines += [f"{key}:{value}" for key, value in SECTIONS[name](router, source)]
            sections.append("\r\n".join(lines) + "\r\n")
    return Verbatim("\r\n".join(sections).encode())


def _total(shards: list[dict], field: bytes) -> Any:
    return sum(shard.get(field, 0) for shard in shards)


def _server(router: Any, shards: list[dict]) -> Fields:
    now = time.time()
    uptime = int(now - router.stats.started)
    return [
        ("redis_version", REDIS_VERSION),
        ("shardis_version", __version__),
        ("redis_git_sha1", "00000000"),
        ("redis_git_dirty", 0),
        ("redis_build_id", "0"),
        ("redis_mode", "standalone"),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
        ("monotonic_clock", "POSIX clock_gettime"),
        ("multiplexing_api", "epoll" if sys.platform == "linux" else "kqueue"),
        ("atomicvar_api", "none"),
        ("gcc_version", "0.0.0"),
        ("process_id", os.getpid()),
        ("process_supervised", "no"),
        ("run_id", RUN_ID),
        ("tcp_port", router.config.get("port", 6379)),
        ("server_time_usec", time.time_ns() // 1000),
        ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400),
        ("hz", 10),
        ("configured_hz", 10),
        ("lru_clock", int(now) & ((1 << 24) - 1)),
        ("executable", sys.executable),
        ("config_file", router.config.get(CONFIG_FILE) or ""),
        ("io_threads_active", 0),
        ("workers", len(router.links)),
        ("worker_pids", ",".join(str(s[b"process_id"]) for s in shards)),
    ]


def _clients(router: Any, shards: list[dict]) -> Fields:
    return [
        ("connected_clients", len(router.clients)),
        ("cluster_connections", 0),
        ("maxclients", router.config["maxclients"]),
        ("client_recent_max_input_buffer", 0),
        ("client_recent_max_output_buffer", 0),
        ("blocked_clients", len(router.blocking)),
        ("tracking_clients", router.tracking_clients),
        ("clients_in_timeout_table", 0),
    ]


#: Memory fields in Redis's order; those :func:`_memory` does not set are 0.
MEMORY_FIELDS = """
used_memory used_memory_human used_memory_rss used_memory_rss_human used_memory_peak
used_memory_peak_human used_memory_peak_perc used_memory_overhead used_memory_startup
used_memory_dataset used_memory_dataset_perc allocator_allocated allocator_active
allocator_resident total_system_memory total_system_memory_human used_memory_lua
used_memory_vm_eval used_memory_lua_human used_memory_scripts_eval number_of_cached_scripts
number_of_functions number_of_libraries used_memory_vm_functions used_memory_vm_total
used_memory_vm_total_human used_memory_functions used_memory_scripts used_memory_scripts_human
maxmemory maxmemory_human maxmemory_policy allocator_frag_ratio allocator_frag_bytes
allocator_rss_ratio allocator_rss_bytes rss_overhead_ratio rss_overhead_bytes
mem_fragmentation_ratio mem_fragmentation_bytes mem_not_counted_for_evict
mem_replication_backlog mem_total_replication_buffers mem_clients_slaves mem_clients_normal
mem_cluster_links mem_aof_buffer mem_allocator active_defrag_running lazyfree_pending_objects
lazyfreed_objects
""".split()


def _memory(router: Any, shards: list[dict]) -> Fields:
    """What the data and clients take (``shardis.router.memory`` says how it is counted)."""
    from shardis.router.memory import info_fields

    known = info_fields(router, shards)
    return [(name, known.get(name, "1.00" if name.endswith("_ratio") else 0))
            for name in MEMORY_FIELDS]


def _persistence(router: Any, shards: list[dict]) -> Fields:
    """Redis 7.0's fields in its order, combined over the workers (each persists its own
    keyspace: ``shardis.worker.snapshot``, ``shardis.worker.aoflog``): counts and sizes are
    summed, a job is in progress (or scheduled) if it is on any worker, the last save time is
    the oldest worker's (every worker has a snapshot at least that recent), a status is
    ``err`` if any worker's last one failed, durations are the longest.  Copy-on-write sizes
    are measured by each child (its Private_Dirty when done); the live ``current_cow_*`` and
    save-progress fields are not tracked (0)."""
    def field(name: str, combine: Any, default: Any) -> Any:
        values = [s[name.encode()] for s in shards if name.encode() in s]
        return combine(values) if values else default

    started = int(router.stats.started)
    rdb_ok = field("rdb_last_bgsave_ok", min, 1)
    aof_ok = field("aof_last_bgrewrite_ok", min, 1)
    enabled = bool(router.config.get("appendonly"))
    fields: Fields = [
        ("loading", 0), ("async_loading", 0), ("current_cow_peak", 0),
        ("current_cow_size", 0), ("current_cow_size_age", 0), ("current_fork_perc", "0.00"),
        ("current_save_keys_processed", 0), ("current_save_keys_total", 0),
        ("rdb_changes_since_last_save", field("rdb_changes_since_last_save", sum, 0)),
        ("rdb_bgsave_in_progress", field("rdb_bgsave_in_progress", max, 0)),
        ("rdb_last_save_time", field("rdb_last_save_time", min, started)),
        ("rdb_last_bgsave_status", "ok" if rdb_ok else "err"),
        ("rdb_last_bgsave_time_sec", field("rdb_last_bgsave_time_sec", max, -1)),
        ("rdb_current_bgsave_time_sec", field("rdb_current_bgsave_time_sec", max, -1)),
        ("rdb_saves", field("rdb_saves", sum, 0)),
        ("rdb_last_cow_size", field("rdb_last_cow_size", sum, 0)),
        ("rdb_last_load_keys_expired", field("rdb_last_load_keys_expired", sum, 0)),
        ("rdb_last_load_keys_loaded", field("rdb_last_load_keys_loaded", sum, 0)),
        ("aof_enabled", int(enabled)),
        ("aof_rewrite_in_progress", field("aof_rewrite_in_progress", max, 0)),
        ("aof_rewrite_scheduled", field("aof_rewrite_scheduled", max, 0)),
        ("aof_last_rewrite_time_sec", field("aof_last_rewrite_time_sec", max, -1)),
        ("aof_current_rewrite_time_sec", field("aof_current_rewrite_time_sec", max, -1)),
        ("aof_last_bgrewrite_status", "ok" if aof_ok else "err"),
        ("aof_rewrites", field("aof_rewrites", sum, 0)),
        ("aof_rewrites_consecutive_failures",
         field("aof_rewrites_consecutive_failures", max, 0)),
        ("aof_last_write_status", "ok"), ("aof_last_cow_size", field("aof_last_cow_size", sum, 0)),
        ("module_fork_in_progress", 0), ("module_fork_last_cow_size", 0),
    ]
    if enabled:
        fields += [
            ("aof_current_size", field("aof_current_size", sum, 0)),
            ("aof_base_size", field("aof_base_size", sum, 0)),
            ("aof_pending_rewrite", field("aof_rewrite_scheduled", max, 0)),
            ("aof_buffer_length", field("aof_buffer_length", sum, 0)),
            ("aof_pending_bio_fsync", 0), ("aof_delayed_fsync", 0),
        ]
    return fields


#: Stats fields in Redis's order; those :func:`_stats` does not set are 0 (counters shardis
#: does not keep) or 0.00 (rates).
STATS_FIELDS = """
total_connections_received total_commands_processed instantaneous_ops_per_sec
total_net_input_bytes total_net_output_bytes total_net_repl_input_bytes
total_net_repl_output_bytes instantaneous_input_kbps instantaneous_output_kbps
instantaneous_input_repl_kbps instantaneous_output_repl_kbps rejected_connections sync_full
sync_partial_ok sync_partial_err expired_keys expired_stale_perc
expired_time_cap_reached_count expire_cycle_cpu_milliseconds evicted_keys evicted_clients
total_eviction_exceeded_time current_eviction_exceeded_time keyspace_hits keyspace_misses
pubsub_channels pubsub_patterns pubsubshard_channels latest_fork_usec total_forks
migrate_cached_sockets slave_expires_tracked_keys active_defrag_hits active_defrag_misses
active_defrag_key_hits active_defrag_key_misses total_active_defrag_time
current_active_defrag_time tracking_total_keys tracking_total_items tracking_total_prefixes
unexpected_error_replies total_error_replies dump_payload_sanitizations
total_reads_processed total_writes_processed io_threaded_reads_processed
io_threaded_writes_processed reply_buffer_shrinks reply_buffer_expands
""".split()


def _stats(router: Any, shards: list[dict]) -> Fields:
    stats = router.stats
    known: dict[str, Any] = {
        "total_connections_received": stats.connections_received,
        "total_commands_processed": stats.commands,
        "rejected_connections": stats.rejected_connections,
        "expired_keys": _total(shards, b"expired_keys"),
        "expire_cycle_cpu_milliseconds": _total(shards, b"expire_cycle_cpu_milliseconds"),
        "total_error_replies": stats.error_replies + _total(shards, b"error_replies"),
        **_eviction(shards),
    }
    fields = [(name, known.get(name, "0.00" if _is_rate(name) else 0))
              for name in STATS_FIELDS]
    return [*fields, ("shardis_worker_batches", stats.batches)]


def _worker_used(shard: dict) -> int:
    memory = shard.get(b"memory", {})
    return memory.get(b"dataset", 0) + memory.get(b"overhead", 0)


def _eviction(shards: list[dict]) -> dict[str, int]:
    """evicted_keys and the time workers spent over their share of maxmemory (ms)."""
    reports = [shard[b"memory"] for shard in shards if b"memory" in shard]
    return {
        "evicted_keys": sum(report[b"evicted_keys"] for report in reports),
        "total_eviction_exceeded_time": sum(
            report[b"exceeded_ms"] + report[b"current_exceeded_ms"] for report in reports),
        "current_eviction_exceeded_time": max(
            (report[b"current_exceeded_ms"] for report in reports), default=0),
    }


def _is_rate(name: str) -> bool:
    return name.endswith("_kbps") or name == "expired_stale_perc"


def _replication(router: Any, shards: list[dict]) -> Fields:
    """A master without replicas or a backlog (shardis does not replicate)."""
    return [
        ("role", "master"), ("connected_slaves", 0), ("master_failover_state", "no-failover"),
        ("master_replid", REPL_ID), ("master_replid2", "0" * 40), ("master_repl_offset", 0),
        ("second_repl_offset", -1), ("repl_backlog_active", 0),
        ("repl_backlog_size", 1048576), ("repl_backlog_first_byte_offset", 0),
        ("repl_backlog_histlen", 0),
    ]


def _cpu(router: Any, shards: list[dict]) -> Fields:
    """CPU of the router and the workers; each runs its commands on its main thread (the
    children of background saves are not counted)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    system = f"{usage.ru_stime + _total(shards, b'used_cpu_sys'):.6f}"
    user = f"{usage.ru_utime + _total(shards, b'used_cpu_user'):.6f}"
    return [
        ("used_cpu_sys", system), ("used_cpu_user", user),
        ("used_cpu_sys_children", "0.000000"), ("used_cpu_user_children", "0.000000"),
        ("used_cpu_sys_main_thread", system), ("used_cpu_user_main_thread", user),
    ]


def _empty(router: Any, shards: list[dict]) -> Fields:
    """Modules: none can be loaded."""
    return []


def _commandstats(router: Any, shards: list[dict]) -> Fields:
    return stats.commandstats(router, shards)


def _errorstats(router: Any, shards: list[dict]) -> Fields:
    return stats.errorstats(router)


def _latencystats(router: Any, shards: list[dict]) -> Fields:
    return stats.latencystats(router)


def _cluster(router: Any, shards: list[dict]) -> Fields:
    return [("cluster_enabled", 0)]


def _keyspace(router: Any, shards: list[dict]) -> Fields:
    """One line per database with keys: counts summed over workers, the average TTL
    weighted by each worker's keys with a TTL."""
    totals: dict[int, list[int]] = {}
    for shard in shards:
        for number, keys, expires, avg_ttl in shard.get(b"databases", []):
            total = totals.setdefault(number, [0, 0, 0])
            total[0] += keys
            total[1] += expires
            total[2] += avg_ttl * expires
    return [(f"db{number}", f"keys={keys},expires={expires},"
                            f"avg_ttl={weighted // expires if expires else 0}")
            for number, (keys, expires, weighted) in sorted(totals.items())]


def _shards(router: Any, replies: list) -> Fields:
    """shardis's own section: per worker, its slots, keys (every database), keys with a TTL,
    resident memory, commands per second since the previous INFO shards, pid, link state,
    round-trip time, reconnects and last snapshot time."""
    observer = router.observer
    now = time.monotonic()
    fields = []
    for index, link in enumerate(router.links):
        shard = replies[index] if index < len(replies) else None
        state = ("down" if link.down_error is not None or link.refused is not None
                 else "starting" if link.verifying else "up")
        if not isinstance(shard, dict):
            fields.append((f"shard{index}", f"slots={_slot_ranges(router, index)},"
                                            f"state={'down' if state == 'up' else state},"
                                            f"reconnects={_reconnects(router, index)}"))
            continue
        databases = shard.get(b"databases", [])
        commands = shard.get(b"commands", 0)
        last = observer.shard_samples.get(index)
        observer.shard_samples[index] = (now, commands)
        rate = (commands - last[1]) / (now - last[0]) if last and now > last[0] else 0.0
        fields.append((f"shard{index}", ",".join([
            f"slots={_slot_ranges(router, index)}",
            f"keys={sum(d[1] for d in databases)}",
            f"expires={sum(d[2] for d in databases)}",
            f"used_memory={_worker_used(shard)}",
            f"maxmemory={shard.get(b'memory', {}).get(b'limit', 0)}",
            f"evicted_keys={shard.get(b'memory', {}).get(b'evicted_keys', 0)}",
            f"used_memory_rss={shard.get(b'used_memory_rss', 0)}",
            f"ops_per_sec={max(rate, 0.0):.2f}",
            f"pid={shard.get(b'process_id', 0)}",
            f"state={state}",
            f"rtt_ms={link.rtt_ms or 0:.3f}",
            f"reconnects={_reconnects(router, index)}",
            f"last_save={shard.get(b'rdb_last_save_time', 0)}",
        ])))
    return fields


def _reconnects(router: Any, worker: int) -> int:
    """How many times the link came back after its first connection (a worker restarted, or
    its host was unreachable for a while: the router cannot tell the two apart)."""
    return max(router.observer.worker_connects.get(worker, 0) - 1, 0)


def _slot_ranges(router: Any, worker: int) -> str:
    """The worker's slots as ``0-5460`` ranges, comma-free (``0-99;200-299``)."""
    ranges: list[str] = []
    start = previous = None
    for slot in router.slots.slots_of(worker):
        if previous is not None and slot == previous + 1:
            previous = slot
            continue
        if start is not None:
            ranges.append(f"{start}-{previous}" if start != previous else f"{start}")
        start = previous = slot
    if start is not None:
        ranges.append(f"{start}-{previous}" if start != previous else f"{start}")
    return ";".join(ranges) or "none"


SECTIONS: dict[str, Section] = {
    "server": _server, "clients": _clients, "memory": _memory, "persistence": _persistence,
    "stats": _stats, "replication": _replication, "cpu": _cpu, "modules": _empty,
    "commandstats": _commandstats, "errorstats": _errorstats, "latencystats": _latencystats,
    "cluster": _cluster, "keyspace": _keyspace, "shards": _shards,
}
