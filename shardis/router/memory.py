"""MEMORY on the router (HELP, MALLOC-STATS, STATS, DOCTOR), INFO memory's numbers, and
``maxmemory``: the server's limit, divided equally among the workers (``__maxmemory``).

How memory is counted (the README's "Memory" says the same to users): ``used_memory`` is
what the data and the clients take, not what the processes take.  Each worker counts its
keys and values (a string's bytes objects exactly; a collection by its type's estimate,
the number MEMORY USAGE gives) and measures the tables that hold them
(``shardis.worker.evict``); the router adds its clients' output buffers.  The interpreters
themselves (~20 MB resident each, which no eviction could free) and memory the allocator
keeps after keys go are in ``used_memory_rss`` (the processes' resident sets, summed), so
``mem_fragmentation_ratio`` is rss over used, as Redis's.
"""

from __future__ import annotations

import os
from typing import Any

from shardis.commands import help_reply
from shardis.commands.memory import MEMORY_HELP, NO_ALLOCATOR_STATS
from shardis.commands.server import _rss_bytes
from shardis.resp import Verbatim
from shardis.router.registry import Plan, coordinated, router_command
from shardis.router.server import on_config_set

#: router (by id) -> the highest used_memory seen: sampled when INFO, MEMORY STATS or
#: DOCTOR gather the workers' counts (a worker's own peak would not add up: the workers'
#: peaks need not be at the same time).
_PEAK: dict[int, int] = {}


@router_command("memory|help")
def memory_help(router: Any, client: Any, args: list[bytes]) -> object:
    """MEMORY HELP: Redis's lines, answered by the router (no worker involved)."""
    return help_reply(MEMORY_HELP)


@router_command("memory|malloc-stats")
def memory_malloc_stats(router: Any, client: Any, args: list[bytes]) -> object:
    """MEMORY MALLOC-STATS: what Redis built without jemalloc answers (Python's allocators
    have no such report)."""
    return NO_ALLOCATOR_STATS


# maxmemory -----------------------------------------------------------------------------------
def worker_share(router: Any) -> int:
    """Each worker's share of maxmemory (0: no limit)."""
    total = router.config.get("maxmemory", 0)
    return max(total // len(router.links), 1) if total else 0


@on_config_set("maxmemory")
async def _set_maxmemory(router: Any, value: int) -> None:
    """Every worker gets its new share and evicts at once if it is over it."""
    await router.call_all([b"__maxmemory", b"%d" % worker_share(router)])


def restore_share(router: Any, worker: int) -> None:
    """A worker (re)connected: it gets its share before anything else it runs."""
    share = worker_share(router)
    if share:
        router.call(worker, [b"__maxmemory", b"%d" % share])


# Counting ------------------------------------------------------------------------------------
def totals(router: Any, shards: list[dict]) -> dict[str, Any]:
    """The server's memory from the workers' ``__info`` shares: bytes of each kind."""
    reports = [shard[b"memory"] for shard in shards if b"memory" in shard]
    clients = sum(_output_buffer(client) for client in router.clients.values())
    dataset = sum(report[b"dataset"] for report in reports)
    tables = sum(report[b"overhead"] for report in reports)
    scripts = sum(len(body) for body in router.scripts.values())
    functions = len(router.functions_payload or b"")
    used = dataset + tables + clients + scripts + functions
    peak = _PEAK[id(router)] = max(_PEAK.get(id(router), 0), used)
    databases: dict[int, list[int]] = {}
    for report in reports:
        for number, main, expires in report[b"databases"]:
            entry = databases.setdefault(number, [0, 0])
            entry[0] += main
            entry[1] += expires
    return {
        "used": used, "peak": peak, "dataset": dataset, "overhead": used - dataset,
        "clients": clients, "scripts": scripts, "functions": functions,
        "databases": dict(sorted(databases.items())),
        "rss": _rss_bytes() + sum(shard.get(b"used_memory_rss", 0) for shard in shards),
        "keys": sum(db[1] for shard in shards for db in shard.get(b"databases", [])),
    }


def _output_buffer(client: Any) -> int:
    """What a client's transport holds unsent (Redis's output buffer), 0 once closed."""
    transport = getattr(client, "transport", None)
    if transport is None or client.closed:
        return 0
    try:
        return transport.get_write_buffer_size()
    except (AttributeError, RuntimeError):
        return 0


def info_fields(router: Any, shards: list[dict]) -> dict[str, Any]:
    """INFO memory's numbers (``shardis.router.info`` prints them in Redis's order)."""
    memory = totals(router, shards)
    used, peak, rss = memory["used"], memory["peak"], memory["rss"]
    limit = router.config.get("maxmemory", 0)
    system = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    known: dict[str, Any] = {
        "used_memory": used, "used_memory_rss": rss, "used_memory_peak": peak,
        "used_memory_peak_perc": f"{100 * used / peak if peak else 0:.2f}%",
        "used_memory_overhead": memory["overhead"], "used_memory_startup": 0,
        "used_memory_dataset": memory["dataset"],
        "used_memory_dataset_perc": f"{_percent(memory['dataset'], used):.2f}%",
        "allocator_allocated": used, "allocator_active": used, "allocator_resident": rss,
        "total_system_memory": system, "used_memory_scripts_eval": memory["scripts"],
        "number_of_cached_scripts": len(router.scripts),
        "used_memory_functions": memory["functions"],
        "used_memory_scripts": memory["scripts"] + memory["functions"],
        "maxmemory": limit, "maxmemory_policy": router.config.get("maxmemory-policy"),
        "allocator_frag_ratio": "1.00", "allocator_rss_ratio": f"{_ratio(rss, used):.2f}",
        "allocator_rss_bytes": rss - used, "rss_overhead_ratio": "1.00",
        "mem_fragmentation_ratio": f"{_ratio(rss, used):.2f}",
        "mem_fragmentation_bytes": rss - used, "mem_clients_normal": memory["clients"],
        "mem_allocator": "libc",
    }
    for name in ("used_memory", "used_memory_rss", "used_memory_peak", "total_system_memory",
                 "used_memory_scripts", "maxmemory"):
        known[f"{name}_human"] = human(known[name])
    if limit >= 1 << 63:  # Redis prints the unsigned maxmemory with %lld (its _human: unsigned)
        known["maxmemory"] = limit - (1 << 64)
    known["used_memory_lua_human"] = known["used_memory_vm_total_human"] = "0B"
    return known


def _percent(part: float, whole: float) -> float:
    """``part`` as a percentage of ``whole``; 0 when there is no whole (Redis's 0/0)."""
    return 100 * part / whole if whole else 0.0


def _ratio(part: float, whole: float) -> float:
    """``part / whole``; 0 when there is no whole."""
    return part / whole if whole else 0.0


def human(size: float) -> str:
    """Redis's bytes-to-human: 913.09K, 11.81M (bytes without decimals, and from 1024 P on:
    a maxmemory near 2^64 is shown in bytes, as Redis does)."""
    if size < 1024 or size >= 1024 ** 6:
        return f"{int(size)}B"
    for unit in ("K", "M", "G", "T", "P"):
        size /= 1024
        if size < 1024 or unit == "P":
            break
    return f"{size:.2f}{unit}"


# MEMORY STATS and DOCTOR ---------------------------------------------------------------------
def _plan_all(router: Any, args: list[bytes]) -> Plan:
    """STATS and DOCTOR ask every worker, ungated (they read, and need no atomicity)."""
    return Plan(workers=router.all_workers)


async def _gathered(router: Any) -> dict[str, Any]:
    """The server's memory counts from every worker's ``__info`` (a worker that is down
    answers an error and is left out, as INFO leaves it out)."""
    replies = await router.call_all([b"__info"])
    return totals(router, [reply for reply in replies if isinstance(reply, dict)])


@coordinated("memory|stats", _plan_all)
async def memory_stats(router: Any, client: Any, args: list[bytes]) -> object:
    """Redis 7.0's MEMORY STATS fields in its order, from the same counts as INFO memory."""
    memory = await _gathered(router)
    used, rss, keys = memory["used"], memory["rss"], memory["keys"]
    overhead = used - memory["dataset"]
    reply: dict[bytes, object] = {
        b"peak.allocated": memory["peak"], b"total.allocated": used,
        b"startup.allocated": 0, b"replication.backlog": 0, b"clients.slaves": 0,
        b"clients.normal": memory["clients"], b"cluster.links": 0, b"aof.buffer": 0,
        b"lua.caches": memory["scripts"], b"functions.caches": memory["functions"],
    }
    for number, (main, expires) in memory["databases"].items():
        reply[b"db.%d" % number] = {b"overhead.hashtable.main": main,
                                    b"overhead.hashtable.expires": expires,
                                    b"overhead.hashtable.slot-to-keys": 0}  # cluster mode's
    reply.update({
        b"overhead.total": overhead, b"keys.count": keys,
        b"keys.bytes-per-key": used // keys if keys else 0,
        b"dataset.bytes": memory["dataset"],
        b"dataset.percentage": _percent(memory["dataset"], used),
        b"peak.percentage": _percent(used, memory["peak"]),
        b"allocator.allocated": used, b"allocator.active": used, b"allocator.resident": rss,
        b"allocator-fragmentation.ratio": 1.0, b"allocator-fragmentation.bytes": 0,
        b"allocator-rss.ratio": _ratio(rss, used), b"allocator-rss.bytes": rss - used,
        b"rss-overhead.ratio": 1.0, b"rss-overhead.bytes": 0,
        b"fragmentation": _ratio(rss, used), b"fragmentation.bytes": rss - used,
    })
    return reply


#: MEMORY DOCTOR below this much used memory (Redis: 5 MB).
DOCTOR_EMPTY_BYTES = 5 * 1024 * 1024

DOCTOR_EMPTY = (
    "Hi Sam, this instance is empty or is using very little memory, my issues detector can't "
    "be used in these conditions. Please, leave for your mission on Earth and fill it with "
    "some data. The new Sam and I will be back to our programming as soon as I finished "
    "rebooting.\n")
DOCTOR_FINE = ("Hi Sam, I can't find any memory issue in your instance. I can only account "
               "for what occurs on this base.\n")


@coordinated("memory|doctor", _plan_all)
async def memory_doctor(router: Any, client: Any, args: list[bytes]) -> object:
    """Redis's ``getMemoryDoctorReport``, for the issues shardis can have: a peak far above
    today's use, big client buffers; allocator fragmentation is not measured (RSS over used
    is the interpreters, not fragmentation, so it is not reported as an issue)."""
    memory = await _gathered(router)
    used = memory["used"]
    if used < DOCTOR_EMPTY_BYTES:
        return Verbatim(DOCTOR_EMPTY.encode())
    issues = []
    if memory["peak"] / used > 1.5:
        issues.append(
            " * Peak memory: In the past this instance used more than 150% the memory that is "
            "currently using. The allocator is normally not able to release memory after a "
            "peak, so you can expect to see a big fragmentation ratio, however this is "
            "actually harmless and is only due to the memory peak, and if the Redis instance "
            "Resident Set Size (RSS) is currently bigger than expected, the memory will be "
            "used as soon as you fill the Redis instance with more data. If the memory peak "
            "was only occasional and you want to try to reclaim memory, please try the "
            "MEMORY PURGE command, otherwise the only other option is to shutdown and restart "
            "the instance.\n\n")
    clients = len(router.clients)
    if clients and memory["clients"] / clients > 200 * 1024:
        issues.append(
            " * Big client buffers: The clients output buffers in this instance are greater "
            "than 200K per client (on average). This may result from different causes, like "
            "Pub/Sub clients subscribed to channels bot not receiving data fast enough, so "
            "that data piles on the Redis instance output buffer, or clients sending commands "
            "with large replies or very large sequences of commands in the same pipeline. "
            "Please use the CLIENT LIST command in order to investigate the issue if it "
            "causes problems in your instance, or to understand better why certain clients "
            "are using a big amount of memory.\n\n")
    if len(router.scripts) > 1000:
        issues.append(
            " * Many scripts: There seem to be many cached scripts in this instance (more "
            "than 1000). This may be because scripts are generated and `EVAL`ed, instead of "
            "being parameterized (with KEYS and ARGV), `SCRIPT LOAD`ed and `EVALSHA`ed. "
            "Unless `SCRIPT FLUSH` is called periodically, the scripts' caches may end up "
            "consuming most of your memory.\n\n")
    if not issues:
        return Verbatim(DOCTOR_FINE.encode())
    return Verbatim(("Sam, I detected a few issues in this Redis instance memory implants:\n\n"
                     + "".join(issues)
                     + "I'm here to keep you safe, Sam. I want to help you.\n").encode())
