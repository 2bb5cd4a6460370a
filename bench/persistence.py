"""Persistence: shardis vs a real redis-server, side by side, as ratios, in one run.

Run from the repository root with ``python -m bench.persistence`` (``--quick`` for a smoke
run, ``--keys N``, ``--workers N``, ``--requests N``); bench/README.md ("Persistence")
explains the output.

What it measures, on redis-server and on shardis (``--workers``, default 3), with the same
persistence settings on both (``--save ''`` always: no snapshot rule fires during a
measurement; Redis also gets ``--auto-aof-rewrite-percentage 0``, since shardis has no AOF
rewrite and both must replay the same kind of log):

1. **SET throughput** with the AOF off, ``appendfsync everysec`` and ``appendfsync always``:
   ``redis-benchmark -t set -r 100000 -c 50`` at ``-P 1`` and ``-P 16``, each mode on a fresh
   server, redis then shardis, mode after mode.  Reported: ops/s per server, shardis/redis,
   and each server's own everysec/off and always/off ratios (the targets are shardis's).
2. **SAVE and load** of ``--keys`` mixed keys (70% strings, a fifth of them integers; 10%
   hashes, 10% lists, 5% sets, 5% zsets of 5 elements; a tenth of the keys of every type with
   a TTL of a day), pipelined with generated RESP, the same bytes to both servers.  Then
   ``SAVE`` (client wall time), stop, restart on the same directory with the AOF off, and the
   load time three ways: the server's own ``DB loaded`` log line (in-process; for shardis the
   slowest worker, since workers load in parallel), the time from spawning the server to the
   last ``DB loaded`` line's timestamp (what the target is checked on: it includes starting
   the interpreter(s)), and the time until ``DBSIZE`` answers with every key (a client's
   view; polled, so +-50 ms).  The restarted server must hold the same ``keys=`` and
   ``expires=`` as before the stop.  The same with ``appendonly yes`` (fill, stop, restart):
   the AOF load (``--skip-aof`` skips it).
3. **BGSAVE stall**, on the restarted server of 2 (all keys loaded): a client thread sends
   GET and SET (alternately, random string keys, one request in flight) and times every
   reply, for a second before BGSAVE and until ``INFO persistence`` says the save finished.
   Reported: p50, p99 and max latency of the requests that were in flight during the BGSAVE,
   and the same before it.

Only ratios between servers of the same run mean anything (see bench/README.md).  Servers are
started and stopped as in bench/compare.py: our own children, on free ports, stopped by PID.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import gc
import os
import platform
import random
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.compare import (
    RANDOM_KEYS,
    BenchConfig,
    RespError,
    Server,
    call,
    encode_command,
    format_table,
    pipeline,
    read_reply,
    redis_version,
    run_benchmark,
    run_reported,
    running,
    shardis_version,
    start_redis,
    start_shardis,
    write_json,
)

DEFAULT_KEYS = 1_000_000
QUICK_KEYS = 50_000
DEFAULT_REQUESTS = 50_000
QUICK_REQUESTS = 5_000
DEFAULT_WORKERS = 3
#: The two redis-benchmark configurations; ``-P 16`` runs ``scale`` x the ``-n`` of ``-P 1``.
CONFIGS: tuple[BenchConfig, ...] = (
    BenchConfig("-c 50 -P 1", clients=50, pipeline=1, scale=1.0),
    BenchConfig("-c 50 -P 16", clients=50, pipeline=16, scale=5.0),
)
MODES: tuple[str, ...] = ("off", "everysec", "always")
#: Targets from the issue: shardis's own throughput with the AOF on, as a share of AOF off;
#: its load time as a multiple of Redis's; its worst latency during a BGSAVE.
TARGET_MODE_RATIO = {"everysec": 0.85, "always": 0.30}
TARGET_LOAD_RATIO = 3.0
TARGET_BGSAVE_MAX_MS = 50.0
#: No snapshot rule may fire in the middle of a measurement, on either server.
COMMON_FLAGS: tuple[str, ...] = ("--save", "")
#: Redis rewrites its AOF by itself once it doubled past 64 MB; shardis has no rewrite.  Off,
#: so that both replay a log of commands at restart.
REDIS_FLAGS: tuple[str, ...] = ("--auto-aof-rewrite-percentage", "0")
FILL_BATCH = 1_000
#: The mix: key index i -> type by i % 20 (14 strings, of which 3 integers; 2 hashes, 2
#: lists, 1 set, 1 zset); every tenth group of 20 keys has a TTL (10% of every type).
MIX_PERIOD = 20
STRING_SLOTS = 14
INT_SLOTS = 3
ELEMENTS = 5
TTL_SECONDS = 86_400
#: BGSAVE stall: latency samples this long before the BGSAVE and after it was seen finished
#: (a worker's GC after ``gc.unfreeze`` would show there); INFO polled this often.
BASELINE_S = 1.0
AFTER_S = 1.0
#: The worst requests during the BGSAVE kept in the JSON, with when they were sent.
WORST_KEPT = 10
POLL_S = 0.05
BGSAVE_TIMEOUT_S = 600.0
LOAD_TIMEOUT_S = 600.0
SEED = 20261206


# --------------------------------------------------------------------------------------------
# The servers: one way to start each, with persistence flags, on a fresh or an old directory
# --------------------------------------------------------------------------------------------


def mode_flags(mode: str) -> tuple[str, ...]:
    """Command-line directives for a persistence mode, the same for both servers."""
    if mode == "off":
        return (*COMMON_FLAGS, "--appendonly", "no")
    return (*COMMON_FLAGS, "--appendonly", "yes", "--appendfsync", mode)


@dataclass(frozen=True)
class Kind:
    """redis-server or shardis/N: how to start one with given flags, where its files are."""

    label: str
    workers: int | None

    def start(self, flags: tuple[str, ...], workdir: str | None = None) -> Server:
        if self.workers is None:
            return start_redis((*flags, *REDIS_FLAGS), workdir)
        return start_shardis(self.workers, flags, workdir)

    def data_dirs(self, server: Server) -> list[str]:
        """Where the server keeps dump.rdb and appendonlydir/: one dir, or one per worker."""
        if self.workers is None:
            return [server.workdir]
        return [os.path.join(server.workdir, "data", f"worker-{i}") for i in range(self.workers)]


def _bytes_under(paths: list[str], name: str) -> int:
    """Total size of ``name`` (a file, or a folder's files) in each of ``paths``."""
    total = 0
    for base in paths:
        target = Path(base) / name
        if target.is_file():
            total += target.stat().st_size
        elif target.is_dir():
            total += sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    return total


# --------------------------------------------------------------------------------------------
# The mixed data set
# --------------------------------------------------------------------------------------------


def mixed_key(index: int) -> bytes:
    return b"k:%09d" % index


def _is_plain_string(index: int) -> bool:
    """A string key that is not an integer and has no TTL: what the stall test reads and
    overwrites (an overwrite keeps its type, size and absence of TTL)."""
    return INT_SLOTS <= index % MIX_PERIOD < STRING_SLOTS and not _has_ttl(index)


def _has_ttl(index: int) -> bool:
    return (index // MIX_PERIOD) % 10 == 0


def string_value(index: int) -> bytes:
    """16 to 48 bytes, distinct per key."""
    return (b"val:%09d:" % index).ljust(16 + index % 33, b"x")


def _key_commands(index: int) -> list[bytes]:
    """The command(s) that create key ``index``; each answers a one-line reply."""
    key, slot = mixed_key(index), index % MIX_PERIOD
    ttl = _has_ttl(index)
    if slot < STRING_SLOTS:
        value = b"%d" % (index * 7919 % 1_000_003) if slot < INT_SLOTS else string_value(index)
        extra = (b"EX", b"%d" % TTL_SECONDS) if ttl else ()
        return [encode_command(b"SET", key, value, *extra)]
    kind = (slot - STRING_SLOTS) // 2 if slot < STRING_SLOTS + 4 else slot - STRING_SLOTS - 2
    elements = [b"e%d:%07d" % (n, index) for n in range(ELEMENTS)]
    if kind == 0:
        args = [b"HSET", key, *(a for n, e in enumerate(elements) for a in (b"f%d" % n, e))]
    elif kind == 1:
        args = [b"RPUSH", key, *elements]
    elif kind == 2:
        args = [b"SADD", key, *elements]
    else:
        args = [b"ZADD", key,
                *(a for n, e in enumerate(elements) for a in (b"%d.%d" % (index % 1000, n), e))]
    commands = [encode_command(*args)]
    if ttl:
        commands.append(encode_command(b"EXPIRE", key, b"%d" % TTL_SECONDS))
    return commands


def mixed_batches(keys: int) -> Iterator[tuple[bytes, int]]:
    for start in range(0, keys, FILL_BATCH):
        commands = [c for i in range(start, min(keys, start + FILL_BATCH))
                    for c in _key_commands(i)]
        yield b"".join(commands), len(commands)


def keyspace(port: int) -> dict[str, int]:
    """``keys`` and ``expires`` of db0 from INFO keyspace (0 and 0 when empty)."""
    match = re.search(r"db0:keys=(\d+),expires=(\d+)", call(port, "INFO", "keyspace"))
    return {"keys": int(match[1]), "expires": int(match[2])} if match else {"keys": 0,
                                                                          "expires": 0}


def expected_keyspace(keys: int) -> dict[str, int]:
    return {"keys": keys, "expires": sum(1 for i in range(keys) if _has_ttl(i))}


def fill(port: int, keys: int) -> dict[str, Any]:
    """Create ``keys`` mixed keys, pipelined on one connection; what the server then holds."""
    begin = time.monotonic()
    commands = errors = 0
    first_error = None
    for lines in pipeline(port, mixed_batches(keys)):
        commands += len(lines)
        for line in lines:
            if line[:1] == b"-":
                errors += 1
                first_error = first_error or line.decode(errors="replace")
    seconds = time.monotonic() - begin
    held = keyspace(port)
    return {"keys": keys, "commands": commands, "errors": errors, "first_error": first_error,
            "seconds": round(seconds, 3), "held": held,
            "verified": errors == 0 and held == expected_keyspace(keys)}


# --------------------------------------------------------------------------------------------
# Load time: restart on the same directory
# --------------------------------------------------------------------------------------------

#: redis-server: ``12345:M 06 Dec 2026 08:19:10.123 * DB loaded from disk: 0.456 seconds``
#: (``append only file`` for the AOF; its base and incr files have lines of their own).
REDIS_LOADED = re.compile(r"(\d\d \w{3} \d{4} \d\d:\d\d:\d\d)\.(\d{3}) \* DB loaded from "
                          r"(disk|append only file): ([\d.]+) seconds")
#: shardis, one line per worker (logfmt, UTC): ``ts=...Z ... role=worker-1 ... msg="DB loaded
#: from disk: N keys ... in 0.123 seconds"`` (``from append only file <dir>: N commands in``).
SHARDIS_LOADED = re.compile(r'ts=(\S+?)\.(\d{3})Z level=\w+ role=(worker-\d+) pid=\d+ '
                            r'msg="DB loaded from (disk|append only file)[^"]* in ([\d.]+) '
                            r'seconds[^"]*"')


def loaded_lines(server: Server, kind: Kind) -> list[tuple[str, float, float]]:
    """(who, seconds the load took by its own account, wall-clock time of the line) for each
    ``DB loaded`` line in the server's log."""
    text = server.log_tail(1 << 22)
    out = []
    if kind.workers is None:
        for stamp, ms, _, seconds in REDIS_LOADED.findall(text):
            wall = time.mktime(time.strptime(stamp, "%d %b %Y %H:%M:%S")) + int(ms) / 1000
            out.append(("redis", float(seconds), wall))
    else:
        for stamp, ms, who, _, seconds in SHARDIS_LOADED.findall(text):
            wall = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1000
            out.append((who, float(seconds), wall))
    return out


def timed_restart(kind: Kind, flags: tuple[str, ...], workdir: str,
                  expected: dict[str, int]) -> tuple[Server, dict[str, Any]]:
    """Start ``kind`` on ``workdir`` and time its load; the server (caller stops it) and the
    numbers.  ``serving_s``: until DBSIZE answers with every key (``_spawn`` returns once PING
    answers: for Redis after its load, for shardis when the router is up, which waits for the
    workers)."""
    loaders = kind.workers or 1
    wall0, begin = time.time(), time.monotonic()
    server = kind.start(flags, workdir)
    try:
        ping_s = time.monotonic() - begin
        deadline = begin + LOAD_TIMEOUT_S
        while True:
            with contextlib.suppress(RespError):
                size = call(server.port, "DBSIZE")
                # every key there, or every loader done and some keys missing (a bad load)
                if size == expected["keys"] or len(loaded_lines(server, kind)) >= loaders:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind.label} did not hold {expected['keys']:,} keys "
                                   f"{LOAD_TIMEOUT_S:.0f}s after start")
            time.sleep(0.01)
        serving_s = time.monotonic() - begin
        lines = loaded_lines(server, kind)
        held = keyspace(server.port)
    except BaseException:
        server.stop()
        raise
    return server, {
        "ping_s": round(ping_s, 3),
        "serving_s": round(serving_s, 3),
        # the slowest loader, by its own account (workers load in parallel)
        "load_s": max((s for _, s, _ in lines), default=None),
        # spawn -> the last "DB loaded" line: the interpreter start included
        "all_loaded_s": round(max(w for _, _, w in lines) - wall0, 3) if lines else None,
        "loaders": [{"who": who, "load_s": s, "at_s": round(w - wall0, 3)}
                    for who, s, w in lines],
        "held": held,
        "verified": held == expected,
    }


# --------------------------------------------------------------------------------------------
# BGSAVE stall
# --------------------------------------------------------------------------------------------


class LatencyProbe(threading.Thread):
    """GET and SET, alternately, one at a time on one connection, on random plain string
    keys: (send time, latency in ms) of every reply, until :meth:`stop`."""

    def __init__(self, port: int, keys: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        rng = random.Random(SEED)
        plain = [i for i in range(min(keys, 200_000)) if _is_plain_string(i)]
        picks = [rng.choice(plain) for _ in range(4096)]
        self.requests = [encode_command(b"GET", mixed_key(i)) if n % 2 == 0
                         else encode_command(b"SET", mixed_key(i), string_value(i))
                         for n, i in enumerate(picks)]
        self.samples: list[tuple[float, float]] = []
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        requests, samples, clock = self.requests, self.samples, time.perf_counter
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                stream = sock.makefile("rb")
                n = 0
                while not self._halt.is_set():
                    request = requests[n % len(requests)]
                    n += 1
                    sent = clock()
                    sock.sendall(request)
                    read_reply(stream)
                    samples.append((sent, (clock() - sent) * 1000))
        except (OSError, RespError) as exc:
            self.error = str(exc)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _persistence_info(port: int) -> dict[str, str]:
    return dict(line.split(":", 1) for line in call(port, "INFO", "persistence").splitlines()
                if ":" in line)


def _latency_summary(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"requests": 0}
    ordered = sorted(latencies)
    return {"requests": len(ordered), "p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "max_ms": round(ordered[-1], 3)}


def bgsave_stall(server: Server) -> dict[str, Any]:
    """Latency of GET/SET before and during a BGSAVE; how long the BGSAVE took."""
    before = int(_persistence_info(server.port).get("rdb_saves", "0"))
    probe = LatencyProbe(server.port, int(call(server.port, "DBSIZE")))
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no collection of ours in the middle of a timed request
    probe.start()
    try:
        time.sleep(BASELINE_S)
        begin = time.perf_counter()
        reply = call(server.port, "BGSAVE")
        answered = time.perf_counter()
        deadline = begin + BGSAVE_TIMEOUT_S
        while True:
            info = _persistence_info(server.port)
            if (info.get("rdb_bgsave_in_progress") == "0"
                    and int(info.get("rdb_saves", "0")) > before):
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"BGSAVE still running after {BGSAVE_TIMEOUT_S:.0f}s")
            time.sleep(POLL_S)
        end = time.perf_counter()
        time.sleep(AFTER_S)
    finally:
        probe.stop()
        if gc_was_enabled:
            gc.enable()
    during = [(sent, ms) for sent, ms in probe.samples
              if sent < end and sent + ms / 1000 > begin]
    baseline = [ms for sent, ms in probe.samples if sent + ms / 1000 <= begin]
    after = [ms for sent, ms in probe.samples if sent >= end]
    worst = sorted(during, key=lambda sample: -sample[1])[:WORST_KEPT]
    stats = {}
    with contextlib.suppress(RespError):
        stats = dict(line.split(":", 1) for line in call(server.port, "INFO", "stats")
                     .splitlines() if ":" in line)
    return {"reply": reply, "bgsave_reply_ms": round((answered - begin) * 1000, 3),
            "bgsave_s": round(end - begin, 3), "status": info.get("rdb_last_bgsave_status"),
            "latest_fork_usec": int(stats.get("latest_fork_usec", "0") or 0),
            "probe_error": probe.error, "during": _latency_summary([ms for _, ms in during]),
            "before": _latency_summary(baseline), "after": _latency_summary(after),
            # the slowest requests during the save: [seconds after BGSAVE was sent, ms]
            "worst": [[round(sent - begin, 3), round(ms, 3)] for sent, ms in worst],
            "over_target": sum(ms > TARGET_BGSAVE_MAX_MS for _, ms in during)}


# --------------------------------------------------------------------------------------------
# The phases
# --------------------------------------------------------------------------------------------


@dataclass
class ServerRun:
    label: str
    workers: int | None
    #: one entry per (mode, config): ops/s and latencies of redis-benchmark's SET row.
    throughput: list[dict[str, Any]] = field(default_factory=list)
    rdb: dict[str, Any] | None = None
    bgsave: dict[str, Any] | None = None
    aof: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


def throughput_phase(kind: Kind, result: ServerRun, mode: str, requests: int,
                     round_number: int = 1) -> None:
    with running(kind.start, mode_flags(mode)) as server:
        for config in CONFIGS:
            n = config.requests(requests)
            run = run_benchmark(server.port, ["set"], config, n)
            row = run.results.get("SET", {})
            result.throughput.append({
                "mode": mode, "config": config.name, "requests": n, "seconds": run.seconds,
                "rps": row.get("rps"), "p50_ms": row.get("p50_latency_ms"),
                "p99_ms": row.get("p99_latency_ms"), "max_ms": row.get("max_latency_ms"),
                "error": run.error, "command": run.command, "round": round_number})
            status = f"{row['rps']:,.0f} SET/s" if row else f"error: {run.error}"
            print(f"  {kind.label:<10} {mode:<9} {config.name:<12} -n {n:<7} {status}",
                  flush=True)
        result.throughput[-1]["aof_bytes"] = _bytes_under(kind.data_dirs(server),
                                                           "appendonlydir")


def _restart_phase(kind: Kind, flags: tuple[str, ...], keys: int, save: bool,
                   after: Callable[[Server], None] | None = None) -> dict[str, Any]:
    """Fill a fresh server, SAVE if ``save``, stop it, restart it on the same directory with
    ``flags`` and time the load; then ``after(server)`` on the restarted server."""
    workdir = tempfile.mkdtemp(prefix=f"bench-persist-{kind.label.split('/')[0]}-")
    out: dict[str, Any] = {}
    try:
        with running(kind.start, flags, workdir, keep_dir=True) as server:
            out["fill"] = load = fill(server.port, keys)
            print(f"  {kind.label:<10} filled {load['held']['keys']:,} keys "
                  f"({load['held']['expires']:,} with TTL) in {load['seconds']:.1f}s"
                  + ("" if load["verified"] else f" NOT AS SENT: {load}"), flush=True)
            if save:
                begin = time.monotonic()
                out["save_reply"] = call(server.port, "SAVE")
                out["save_s"] = round(time.monotonic() - begin, 3)
            dirs = kind.data_dirs(server)
        out["rdb_bytes"] = _bytes_under(dirs, "dump.rdb")
        out["aof_bytes"] = _bytes_under(dirs, "appendonlydir")
        server, out["load"] = timed_restart(kind, flags, workdir, load["held"])
        with running(lambda: server):
            load = out["load"]
            print(f"  {kind.label:<10} " + (f"SAVE {out['save_s']:.2f}s, " if save else "")
                  + f"restart: load {_num(load['load_s'], '{:.2f}')}s (log), all loaded "
                  f"{_num(load['all_loaded_s'], '{:.2f}')}s, DBSIZE right after "
                  f"{load['serving_s']:.2f}s since start"
                  + ("" if load["verified"] else f" NOT THE SAME KEYS: {load['held']}"),
                  flush=True)
            if after is not None:
                after(server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def rdb_phase(kind: Kind, result: ServerRun, keys: int, stall: bool) -> None:
    def after(server: Server) -> None:
        result.bgsave = stall = bgsave_stall(server)
        print(f"  {kind.label:<10} BGSAVE {stall['bgsave_s']:.2f}s: GET/SET during it "
              f"p99 {_num(stall['during'].get('p99_ms'))} ms, max "
              f"{_num(stall['during'].get('max_ms'))} ms "
              f"({stall['during']['requests']:,} requests); worst [s after BGSAVE, ms]: "
              f"{stall['worst'][:3]}", flush=True)

    result.rdb = _restart_phase(kind, mode_flags("off"), keys, True, after if stall else None)


def aof_phase(kind: Kind, result: ServerRun, keys: int) -> None:
    result.aof = _restart_phase(kind, mode_flags("everysec"), keys, False)


def _guarded(result: ServerRun, label: str, step: Callable[..., None], *args: Any) -> None:
    """Run ``step(*args)``, one phase; a server that fails is reported and the run goes on."""
    try:
        step(*args)
    except (RuntimeError, OSError, RespError) as exc:
        result.errors.append(str(exc))
        print(f"  {label}: {exc}", file=sys.stderr)


def run_all(args: argparse.Namespace, results: list[ServerRun]) -> None:
    kinds = [Kind("redis", None), Kind(f"shardis/{args.workers}", args.workers)]
    results.extend(ServerRun(kind.label, kind.workers) for kind in kinds)
    if not args.skip_throughput:
        print(f"SET throughput: {len(MODES)} modes x {len(kinds)} servers, -n {args.requests} "
              f"(-P 1) / {CONFIGS[1].requests(args.requests)} (-P 16)"
              + (f", {args.rounds} rounds" if args.rounds > 1 else ""), flush=True)
        for round_number in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f" round {round_number} of {args.rounds}", flush=True)
            for mode in MODES:
                for kind, result in zip(kinds, results):
                    _guarded(result, kind.label, throughput_phase, kind, result, mode,
                             args.requests, round_number)
    if not args.skip_rdb:
        print(f"RDB: {args.keys:,} mixed keys, SAVE, restart, load"
              + ("" if args.skip_bgsave else ", BGSAVE stall"), flush=True)
        for kind, result in zip(kinds, results):
            _guarded(result, kind.label, rdb_phase, kind, result, args.keys,
                     not args.skip_bgsave)
    if not args.skip_aof:
        print(f"AOF: {args.keys:,} mixed keys with appendonly yes, restart, load", flush=True)
        for kind, result in zip(kinds, results):
            _guarded(result, kind.label, aof_phase, kind, result, args.keys)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _num(value: Any, fmt: str = "{:,.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _dig(result: ServerRun, path: str) -> Any:
    """``result.<a>[b][c]`` for ``path`` "a.b.c"; None where anything is missing."""
    first, *rest = path.split(".")
    value: Any = getattr(result, first)
    for part in rest:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _rps(result: ServerRun, mode: str, config: str) -> float | None:
    """SET/s of a mode and configuration; with ``--rounds``, the median over the rounds."""
    values = [row["rps"] for row in result.throughput
              if row["mode"] == mode and row["config"] == config and row["rps"]]
    return statistics.median(values) if values else None


def _mode_ratio(result: ServerRun, mode: str, config: str) -> float | None:
    value, base = _rps(result, mode, config), _rps(result, "off", config)
    return value / base if value and base else None


def _ratio(value: Any, base: Any) -> str:
    return f"{value / base:.2f}" if value is not None and base else "-"


def _check(value: Any, comparison: str, goal: float) -> str:
    if value is None:
        return "-"
    met = value <= goal if comparison == "<=" else value >= goal
    return f"{'ok' if met else 'MISS'} ({comparison}{goal:g})"


def _rows(results: list[ServerRun]) -> list[list[str]]:
    redis, shardis = results[0], results[-1]
    rows: list[list[str]] = []

    def row(name: str, unit: str, values: list[Any], fmt: str, ratio: bool = True,
            target: str = "") -> None:
        rows.append([name, unit, *(_num(v, fmt) for v in values),
                     _ratio(values[-1], values[0]) if ratio else "", target])

    names = {"off": "appendonly no", "everysec": "appendfsync everysec",
             "always": "appendfsync always"}
    for config in CONFIGS if any(r.throughput for r in results) else ():
        for mode in MODES:
            row(f"SET {config.name}, {names[mode]}", "ops/s",
                [_rps(r, mode, config.name) for r in results], "{:,.0f}")
    for config in CONFIGS if any(r.throughput for r in results) else ():
        for mode in MODES[1:]:
            value = _mode_ratio(shardis, mode, config.name)
            row(f"  {mode} / off, {config.name}", "ratio",
                [_mode_ratio(r, mode, config.name) for r in results], "{:.2f}", False,
                _check(value, ">=", TARGET_MODE_RATIO[mode]))
    mib = 1 / 2**20

    def mb(path: str) -> list[Any]:
        return [(_dig(r, path) or 0) * mib or None for r in results]

    if any(r.rdb for r in results):
        keys = _dig(redis, "rdb.fill.keys") or _dig(shardis, "rdb.fill.keys")
        row(f"fill {_num(keys, '{:,}')} mixed keys", "s", [_dig(r, "rdb.fill.seconds")
                                                           for r in results], "{:.2f}")
        row("SAVE", "s", [_dig(r, "rdb.save_s") for r in results], "{:.2f}")
        row("RDB size (sum of files)", "MiB", mb("rdb.rdb_bytes"), "{:.1f}")
        row("RDB load, in-process (log)", "s", [_dig(r, "rdb.load.load_s") for r in results],
            "{:.2f}")
        loaded = [_dig(r, "rdb.load.all_loaded_s") for r in results]
        row("RDB start -> all loaded (log)", "s", loaded, "{:.2f}", True,
            _check(loaded[-1] / loaded[0] if None not in loaded and loaded[0] else None, "<=",
                   TARGET_LOAD_RATIO))
        row("RDB start -> DBSIZE complete", "s",
            [_dig(r, "rdb.load.serving_s") for r in results], "{:.2f}")
        rows.append(["RDB reload: same keys/expires", ""]
                    + [{True: "ok", False: "NO"}.get(_dig(r, "rdb.load.verified"), "-")
                       for r in results] + ["", ""])
    stalls = (("before", "bgsave.before"), ("during", "bgsave.during"),
              (f"{AFTER_S:g} s after", "bgsave.after"))
    if any(r.bgsave for r in results):
        row("BGSAVE duration", "s", [_dig(r, "bgsave.bgsave_s") for r in results], "{:.2f}")
    for label, path in stalls if any(r.bgsave for r in results) else ():
        row(f"GET/SET {label} BGSAVE: p50", "ms", [_dig(r, f"{path}.p50_ms") for r in results],
            "{:.3f}")
        row(f"GET/SET {label} BGSAVE: p99", "ms", [_dig(r, f"{path}.p99_ms") for r in results],
            "{:.3f}")
        maxima = [_dig(r, f"{path}.max_ms") for r in results]
        row(f"GET/SET {label} BGSAVE: max", "ms", maxima, "{:.3f}", True,
            _check(maxima[-1], "<=", TARGET_BGSAVE_MAX_MS) if label == "during" else "")
        row(f"GET/SET {label} BGSAVE: requests", "", [_dig(r, f"{path}.requests")
                                                     for r in results], "{:,}", False)
        if label == "during":
            row(f"  of which > {TARGET_BGSAVE_MAX_MS:g} ms", "", [_dig(r, "bgsave.over_target")
                                                                for r in results], "{:,}",
                False)
    if any(r.aof for r in results):
        row("AOF fill (appendfsync everysec)", "s", [_dig(r, "aof.fill.seconds")
                                                     for r in results], "{:.2f}")
        row("AOF size (sum of files)", "MiB", mb("aof.aof_bytes"), "{:.1f}")
        row("AOF load, in-process (log)", "s", [_dig(r, "aof.load.load_s") for r in results],
            "{:.2f}")
        row("AOF start -> all loaded (log)", "s", [_dig(r, "aof.load.all_loaded_s")
                                                   for r in results], "{:.2f}")
        row("AOF start -> DBSIZE complete", "s", [_dig(r, "aof.load.serving_s")
                                                  for r in results], "{:.2f}")
        rows.append(["AOF reload: same keys/expires", ""]
                    + [{True: "ok", False: "NO"}.get(_dig(r, "aof.load.verified"), "-")
                       for r in results] + ["", ""])
    return rows


def render(results: list[ServerRun]) -> str:
    labels = [r.label for r in results]
    header = ["persistence", "unit", *labels, "shardis/redis", "target"]
    rounds = max((row.get("round", 1) for r in results for row in r.throughput), default=1)
    parts = [f"SET ops/s: the median of {rounds} rounds"] if rounds > 1 else []
    parts.append(format_table(header, _rows(results), 2))
    for result in results:
        parts += [f"{result.label}: {error}" for error in result.errors]
    return "\n".join(parts)


def build_report(args: argparse.Namespace, results: list[ServerRun], started: datetime,
                 load_before: tuple[float, float, float], complete: bool) -> dict[str, Any]:
    finished = datetime.now(timezone.utc)
    return {
        "schema": 1,
        "bench": "persistence",
        "complete": complete,
        "started_utc": started.isoformat(),
        "finished_utc": finished.isoformat(),
        "duration_s": round((finished - started).total_seconds(), 1),
        "machine": {
            "cpu_count": os.cpu_count(),
            "loadavg_before": list(load_before),
            "loadavg_after": list(os.getloadavg()),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {"redis_server": redis_version(), "shardis": shardis_version()},
        "parameters": {
            "keys": args.keys,
            "workers": args.workers,
            "quick": args.quick,
            "requests": args.requests,
            "random_keys": RANDOM_KEYS,
            "configs": [asdict(c) | {"requests": c.requests(args.requests)} for c in CONFIGS],
            "modes": {mode: list(mode_flags(mode)) for mode in MODES},
            "redis_extra_flags": list(REDIS_FLAGS),
            "mix": {"period": MIX_PERIOD, "string_slots": STRING_SLOTS, "int_slots": INT_SLOTS,
                    "hash_slots": 2, "list_slots": 2, "set_slots": 1, "zset_slots": 1,
                    "elements": ELEMENTS, "ttl_share": 0.1, "ttl_s": TTL_SECONDS},
            "bgsave_baseline_s": BASELINE_S,
            "skip_throughput": args.skip_throughput,
            "skip_aof": args.skip_aof,
            "skip_rdb": args.skip_rdb,
            "skip_bgsave": args.skip_bgsave,
            "rounds": args.rounds,
        },
        "targets": {"everysec_over_off": TARGET_MODE_RATIO["everysec"],
                    "always_over_off": TARGET_MODE_RATIO["always"],
                    "load_over_redis": TARGET_LOAD_RATIO,
                    "bgsave_max_ms": TARGET_BGSAVE_MAX_MS},
        "servers": [asdict(result) for result in results],
    }


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.persistence",
        description="Persistence against redis-server and shardis: SET throughput with the "
                    "AOF off/everysec/always, SAVE and load time of mixed keys (RDB and AOF), "
                    "latency during BGSAVE; see bench/README.md.")
    parser.add_argument("--keys", type=int, metavar="N",
                        help=f"mixed keys for SAVE/load/BGSAVE (default {DEFAULT_KEYS:,}; "
                             f"--quick {QUICK_KEYS:,})")
    parser.add_argument("-n", "--requests", type=int, metavar="N",
                        help=f"SET requests at -P 1 (default {DEFAULT_REQUESTS:,}; --quick "
                             f"{QUICK_REQUESTS:,}); -P 16 runs N x {CONFIGS[1].scale:g}")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer keys and requests")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"shardis workers (default {DEFAULT_WORKERS})")
    parser.add_argument("--skip-throughput", action="store_true", help="no SET throughput")
    parser.add_argument("--skip-aof", action="store_true", help="no AOF fill and load")
    parser.add_argument("--skip-rdb", action="store_true",
                        help="no SAVE, RDB load and BGSAVE stall")
    parser.add_argument("--skip-bgsave", action="store_true", help="no BGSAVE stall")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="run the SET throughput N times over all modes and servers, in "
                             "turn, and report each ops/s as its median (default 1)")
    args = parser.parse_args(argv)
    if args.keys is None:
        args.keys = QUICK_KEYS if args.quick else DEFAULT_KEYS
    if args.requests is None:
        args.requests = QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS
    if args.keys < MIX_PERIOD or min(args.requests, args.workers, args.rounds) < 1:
        parser.error(f"--keys must be at least {MIX_PERIOD}; --requests, --workers and "
                     "--rounds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def report(results: list, started: datetime, load_before: tuple, complete: bool) -> Path:
        print(render(results))
        return write_json(build_report(args, results, started, load_before, complete), started,
                          "persistence", indent=1)

    return run_reported(lambda results: run_all(args, results), report)


if __name__ == "__main__":
    raise SystemExit(main())
