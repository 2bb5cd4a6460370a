"""Expiry storm: shardis vs a real redis-server, side by side, in one run.

Run from the repository root with ``python -m bench.expiry`` (``--quick`` for a smoke run,
``--keys N``, ``--workers N``); bench/README.md ("Expiry storm") explains the output.

What it measures, on each server (redis-server first, then shardis), each phase on a fresh
instance:

1. **drain**: load ``--keys`` keys (``ttl:%012d``, 16-byte values) with random TTLs of 1-10 s
   (``SET k v PX ttl``, pipelined, at most two batches in flight), then *no client reads at
   all*: only ``INFO keyspace`` every 20 ms (INFO reclaims nothing, on either server) and RSS
   of the process tree every 100 ms, until ``keys=`` is 0.  Reported: how long after the last
   deadline the keyspace was empty, the reclaim lag (below), the largest number of keys that
   were expired but not reclaimed, peak RSS, and the CPU the server used meanwhile.
2. **GET, no TTL**: 100,000 persistent keys (``key:%012d``, the keyspace of ``redis-benchmark
   -r 100000``) plus ``--keys`` ``ttl:`` keys *without* TTL; then ``redis-benchmark -t get -r
   100000 -c 50 -P 16`` in chunks of about one second, for about as long as a storm lasts.
3. **GET, storm**: the same, but the ``ttl:`` keys get their 1-10 s TTLs, and the GET chunks
   run until the last of them is due: the GETs never touch an expiring key, so any slowdown is
   the cost of active expiry (and of the memory it frees) to normal commands.

The GET phases run in the order no TTL, storm, storm, no TTL (each on a fresh server), and
each kind is summarised over its two phases: on a shared machine, load that comes and goes
during the run then weighs on both kinds alike.

Reclaim lag: with the deadlines known to the loader (send time of a key's batch + its TTL),
the number of keys reclaimed by time t (keys sent - ``keys=``) says which deadline the
reclaimer has reached, if it reclaims in deadline order: the lag is t minus that deadline.
That is exact for shardis's timing wheel (it reclaims bucket by bucket in deadline order, to
within 64 ms) and a lower bound for Redis, whose cycle samples keys in hash order: one
unlucky key can wait longer than the average says.  The largest backlog (keys expired and not
yet reclaimed) is exact for both.

Only ratios between servers of the same run mean anything: redis-benchmark, the loader and the
servers share the machine's cores (see bench/README.md).  Servers are started and stopped as
in bench/compare.py: our own children, on free ports, stopped by PID.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import os
import platform
import random
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.compare import (
    BENCH_TIMEOUT_S,
    RespError,
    Server,
    call,
    encode_command,
    format_table,
    load_keys,
    parse_csv,
    process_tree,
    read_reply,
    redis_version,
    run_reported,
    running,
    sample_memory,
    shardis_version,
    start_redis,
    start_shardis,
    write_json,
)

DEFAULT_KEYS = 1_000_000
QUICK_KEYS = 100_000
TTL_MIN_MS = 1_000
TTL_MAX_MS = 10_000
VALUE = b"x" * 16
LOAD_BATCH = 1_000
#: The keys the GET benchmark reads: redis-benchmark's ``key:__rand_int__`` with ``-r``.
HOT_KEYS = 100_000
GET_CLIENTS = 50
GET_PIPELINE = 16
#: Each GET chunk is sized to take about this long (calibrated on the no-TTL phase).
CHUNK_SECONDS = 1.0
INFO_INTERVAL_S = 0.02
RSS_EVERY = 5  # RSS is sampled on every 5th INFO poll: every 100 ms
#: Give up waiting for an empty keyspace this long after the last deadline.
DRAIN_TIMEOUT_S = 60.0
#: Targets from the project's issue.
TARGET_LAG_S = 2.0
TARGET_GET_RATIO = 0.9
SEED = 20261126


# --------------------------------------------------------------------------------------------
# Loading keys with TTLs
# --------------------------------------------------------------------------------------------


@dataclass
class Load:
    """A pipelined load: how long it took and when each batch was sent (monotonic s)."""

    keys: int
    seconds: float
    errors: int
    first_error: str | None
    batch_sent: list[float] = field(default_factory=list, repr=False)


def _ttl_batch(start: int, stop: int, ttls: list[int] | None) -> bytes:
    head = b"*5\r\n$3\r\nSET\r\n$16\r\nttl:%012d\r\n$16\r\n" + VALUE + b"\r\n$2\r\nPX\r\n"
    if ttls is None:
        plain = b"*3\r\n$3\r\nSET\r\n$16\r\nttl:%012d\r\n$16\r\n" + VALUE + b"\r\n"
        return b"".join(plain % i for i in range(start, stop))
    parts = []
    for i in range(start, stop):
        ttl = b"%d" % ttls[i]
        parts.append(head % i + b"$%d\r\n%s\r\n" % (len(ttl), ttl))
    return b"".join(parts)


def load_ttl_keys(port: int, count: int, ttls: list[int] | None) -> Load:
    """SET ttl:000000000000 .. with ``PX ttls[i]`` (or no TTL when ``ttls`` is None)."""
    errors, first_error, pending, carry = 0, None, 0, b""
    sent: list[float] = []
    begin = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        for start in range(0, count, LOAD_BATCH):
            stop = min(count, start + LOAD_BATCH)
            payload = _ttl_batch(start, stop, ttls)
            sent.append(time.monotonic())
            sock.sendall(payload)
            pending += stop - start
            while pending > LOAD_BATCH or (stop == count and pending > 0):
                data = carry + sock.recv(1 << 16)
                if len(data) == len(carry):
                    raise OSError("connection closed while loading")
                cut = data.rfind(b"\r\n") + 2
                complete, carry = data[:cut], data[cut:]
                lines = complete.count(b"\r\n")
                bad = lines - complete.count(b"+OK\r\n")
                if bad and first_error is None:
                    first_error = next(line for line in complete.split(b"\r\n")
                                       if not line.startswith(b"+OK")).decode(errors="replace")
                errors += bad
                pending -= lines
    return Load(count, time.monotonic() - begin, errors, first_error, sent)


def deadlines_of(load: Load, ttls: list[int]) -> list[float]:
    """Each key's deadline on our monotonic clock: its batch's send time + its TTL, sorted."""
    out = [load.batch_sent[i // LOAD_BATCH] + ttls[i] / 1000 for i in range(load.keys)]
    out.sort()
    return out


# --------------------------------------------------------------------------------------------
# Watching a server: INFO keyspace, RSS, CPU
# --------------------------------------------------------------------------------------------

_KEYS_RE = re.compile(rb"db0:keys=(\d+)")


def cpu_seconds(root: int) -> dict[int, float]:
    """utime + stime of every process of a server's tree, by PID (from /proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in process_tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{pid}/stat").read_text()
            fields = raw[raw.rindex(")") + 2:].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


class Watcher(threading.Thread):
    """Polls ``INFO keyspace`` (and RSS) on one connection until stopped."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.samples: list[tuple[float, int]] = []  # (monotonic s, keys=)
        self.rss: list[tuple[float, int]] = []
        self.stopping = threading.Event()
        self.error: str | None = None

    def keys_now(self) -> int:
        return self.samples[-1][1] if self.samples else -1

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as sock:
                stream = sock.makefile("rb")
                request = encode_command("INFO", "keyspace")
                polls = 0
                while not self.stopping.is_set():
                    sock.sendall(request)
                    text = read_reply(stream)
                    now = time.monotonic()
                    match = _KEYS_RE.search(text.encode() if isinstance(text, str) else text)
                    self.samples.append((now, int(match.group(1)) if match else 0))
                    if polls % RSS_EVERY == 0:
                        self.rss.append((now, sample_memory(self.server.proc.pid).rss_bytes))
                    polls += 1
                    self.stopping.wait(INFO_INTERVAL_S)
        except (OSError, RespError) as exc:
            self.error = str(exc)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def wait_for(self, keys: int, until: float) -> float | None:
        """Wait until a sample shows ``keys=`` <= ``keys``; the sample's time, or None."""
        while time.monotonic() < until and self.is_alive():
            if self.samples and self.samples[-1][1] <= keys:
                return self.samples[-1][0]
            time.sleep(INFO_INTERVAL_S / 2)
        return None


def reclaim_stats(samples: list[tuple[float, int]], load: Load,
                  deadlines: list[float]) -> dict[str, float]:
    """Reclaim lag (in-order estimate) and the largest backlog of expired, unreclaimed keys."""
    max_lag = 0.0
    max_backlog = 0
    for t, keys in samples:
        sent = min(load.keys, bisect.bisect_right(load.batch_sent, t) * LOAD_BATCH)
        if sent < load.keys and t < load.batch_sent[-1]:
            continue  # still loading: "sent" is too rough to tell reclaimed from in flight
        reclaimed = max(sent - keys, 0)
        expired = bisect.bisect_right(deadlines, t)
        max_backlog = max(max_backlog, keys - (sent - expired))
        if reclaimed < len(deadlines) and deadlines[reclaimed] < t:
            max_lag = max(max_lag, t - deadlines[reclaimed])
    return {"max_reclaim_lag_s": round(max_lag, 3), "max_expired_not_reclaimed": max_backlog}


def _downsample(points: list[tuple[float, int]], start: float, most: int = 600) -> list[list]:
    step = max(1, len(points) // most)
    return [[round(t - start, 3), v] for t, v in points[::step]]


# --------------------------------------------------------------------------------------------
# The three phases
# --------------------------------------------------------------------------------------------


def drain_phase(server: Server, keys: int, ttls: list[int]) -> dict[str, Any]:
    """Load keys with TTLs, then no reads: how long until active expiry has reclaimed them."""
    empty = sample_memory(server.proc.pid)
    watcher = Watcher(server)
    watcher.start()
    try:
        load = load_ttl_keys(server.port, keys, ttls)
        cpu_before = cpu_seconds(server.proc.pid)
        after_load = time.monotonic()
        deadlines = deadlines_of(load, ttls)
        last = deadlines[-1]
        empty_at = watcher.wait_for(0, last + DRAIN_TIMEOUT_S)
        cpu_after = cpu_seconds(server.proc.pid)
        finished = time.monotonic()
    finally:
        watcher.stop()
    cpu = {pid: cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after}
    window = max(finished - after_load, 1e-9)
    result: dict[str, Any] = {
        "load_seconds": round(load.seconds, 3),
        "load_errors": load.errors,
        "load_first_error": load.first_error,
        "load_ops_per_s": round(keys / load.seconds),
        "empty_after_last_deadline_s": (None if empty_at is None
                                        else round(empty_at - last, 3)),
        "keys_left_at_timeout": None if empty_at is not None else watcher.keys_now(),
        "rss_empty": empty.rss_bytes,
        "rss_peak": max((v for _, v in watcher.rss), default=0),
        "cpu_percent_total": round(100 * sum(cpu.values()) / window, 1),
        "cpu_percent_busiest_process": round(100 * max(cpu.values(), default=0) / window, 1),
        "watch_error": watcher.error,
        "series_keys": _downsample(watcher.samples, load.batch_sent[0]),
        "series_rss": _downsample(watcher.rss, load.batch_sent[0]),
        "first_deadline_s": round(deadlines[0] - load.batch_sent[0], 3),
        "last_deadline_s": round(last - load.batch_sent[0], 3),
    }
    result.update(reclaim_stats(watcher.samples, load, deadlines))
    return result


@dataclass
class Chunk:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    error: str | None = None


def get_chunk(port: int, requests: int) -> Chunk:
    command = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "get", "-n",
               str(requests), "-r", str(HOT_KEYS), "-c", str(GET_CLIENTS), "-P",
               str(GET_PIPELINE), "--csv"]
    begin = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Chunk(requests, time.monotonic() - begin, 0, 0, 0, 0, "timeout")
    seconds = time.monotonic() - begin
    row = parse_csv(done.stdout).get("GET")
    if done.returncode != 0 or row is None:
        return Chunk(requests, seconds, 0, 0, 0, 0,
                     f"redis-benchmark exited {done.returncode}: {done.stderr[-300:]}")
    return Chunk(requests, round(seconds, 3), row["rps"], row["p50_latency_ms"],
                 row["p99_latency_ms"], row["max_latency_ms"])


def summarize(chunks: list[Chunk]) -> dict[str, Any]:
    good = [c for c in chunks if c.error is None and c.rps]
    if not good:
        return {"rps": 0, "p50_ms": 0, "p99_ms": 0, "max_ms": 0, "chunks": len(chunks)}
    requests = sum(c.requests for c in good)
    busy = sum(c.requests / c.rps for c in good)
    return {
        "rps": round(requests / busy),
        "p50_ms": round(sorted(c.p50_ms for c in good)[len(good) // 2], 3),
        "p99_ms": round(max(c.p99_ms for c in good), 3),
        "max_ms": round(max(c.max_ms for c in good), 3),
        "chunks": len(chunks),
    }


def get_phase(server: Server, keys: int, ttls: list[int] | None, chunk_requests: int | None,
              chunks: int) -> dict[str, Any]:
    """Hot keys + ``keys`` ttl: keys (with TTLs or not), then GET chunks.

    The first phase of a server calibrates the chunk size (``chunk_requests`` None).  Without
    TTLs, ``chunks`` chunks run; with TTLs, chunks run until the last deadline has passed.
    Nothing else talks to the server meanwhile (no INFO polling: it would cost the router).
    """
    load_keys(server.port, HOT_KEYS)
    load = load_ttl_keys(server.port, keys, ttls)
    if chunk_requests is None:
        probe = get_chunk(server.port, 20_000)
        chunk_requests = max(1_000, int(probe.rps * CHUNK_SECONDS))
    runs: list[Chunk] = []
    if ttls is None:
        for _ in range(chunks):
            runs.append(get_chunk(server.port, chunk_requests))
    else:
        last = max(load.batch_sent[i // LOAD_BATCH] + ttls[i] / 1000 for i in range(keys))
        while time.monotonic() < last or not runs:
            runs.append(get_chunk(server.port, chunk_requests))
    info = call(server.port, "INFO", "keyspace")
    match = _KEYS_RE.search(info.encode())
    return {
        "ttls": ttls is not None,
        "load_seconds": round(load.seconds, 3),
        "load_errors": load.errors,
        "chunk_requests": chunk_requests,
        "summary": summarize(runs),
        "chunks": [asdict(c) for c in runs],
        "keys_at_end": int(match.group(1)) if match else 0,
    }


def combine(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary over several phases of the same kind (all their chunks)."""
    chunks = [Chunk(**c) for phase in phases for c in phase["chunks"]]
    return summarize(chunks)


# --------------------------------------------------------------------------------------------
# Driving the run
# --------------------------------------------------------------------------------------------


@dataclass
class ServerRun:
    label: str
    workers: int | None
    drain: dict[str, Any] | None = None
    #: GET phases in the order they ran: no TTLs, storm, storm, no TTLs (ABBA, so that a
    #: machine getting busier or quieter during the run weighs on both kinds alike).
    get_phases: list[dict[str, Any]] = field(default_factory=list)
    get_plain: dict[str, Any] | None = None
    get_storm: dict[str, Any] | None = None
    error: str | None = None


#: The GET phases of one server, in order: True = with TTLs (a storm).
GET_ORDER = (False, True, True, False)


def storm_chunks(ttls: list[int]) -> int:
    """How many one-second GET chunks a no-TTL phase runs: about as long as a storm's GET
    window (the storm phase runs until its last deadline, whatever its load took)."""
    return max(2, round(max(ttls) / 1000 * 0.6))


def run_server(label: str, start: Any, start_args: tuple, keys: int, ttls: list[int],
               result: ServerRun) -> None:
    print(f"{label}: drain ({keys:,} keys, TTL {TTL_MIN_MS // 1000}-{TTL_MAX_MS // 1000} s, "
          "no reads)", flush=True)
    with running(start, *start_args) as server:
        result.drain = drain_phase(server, keys, ttls)
    drain = result.drain
    print(f"  loaded in {drain['load_seconds']:.1f}s; empty "
          f"{drain['empty_after_last_deadline_s']}s after the last deadline; "
          f"max lag {drain['max_reclaim_lag_s']}s", flush=True)
    chunk = None
    for storm in GET_ORDER:
        print(f"{label}: GET {'during the expiry storm' if storm else 'without TTLs'}",
              flush=True)
        with running(start, *start_args) as server:
            phase = get_phase(server, keys, ttls if storm else None, chunk,
                              storm_chunks(ttls))
        chunk = phase["chunk_requests"]
        result.get_phases.append(phase)
        print(f"  {phase['summary']['rps']:,} GET/s", flush=True)
    result.get_plain = combine([p for p in result.get_phases if not p["ttls"]])
    result.get_storm = combine([p for p in result.get_phases if p["ttls"]])


def run_all(args: argparse.Namespace, results: list[ServerRun]) -> None:
    rng = random.Random(SEED)
    ttls = [rng.randint(TTL_MIN_MS, TTL_MAX_MS) for _ in range(args.keys)]
    plan: list[tuple[str, Any, tuple, int | None]] = [("redis", start_redis, (), None)]
    plan.append((f"shardis/{args.workers}", start_shardis, (args.workers,), args.workers))
    for label, start, start_args, workers in plan:
        result = ServerRun(label, workers)
        results.append(result)
        try:
            run_server(label, start, start_args, args.keys, ttls, result)
        except (RuntimeError, OSError, RespError) as exc:
            result.error = str(exc)
            print(f"  {label}: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _mib(value: int | None) -> str:
    return "-" if not value else f"{value / 2**20:,.0f}"


def _num(value: Any, fmt: str = "{:,.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _rows(results: list[ServerRun]) -> list[list[str]]:
    def cells(pick: Any, fmt: str = "{:,.2f}") -> list[str]:
        out = []
        for result in results:
            try:
                out.append(_num(pick(result), fmt))
            except (TypeError, KeyError):
                out.append("-")
        return out

    def ratio(pick: Any) -> str:
        try:
            base, value = pick(results[0]), pick(results[-1])
            return f"{value / base:.2f}" if base else "-"
        except (TypeError, KeyError, IndexError):
            return "-"

    def storm_ratio(result: ServerRun) -> float:
        return result.get_storm["rps"] / result.get_plain["rps"]

    def lag(result: ServerRun) -> float:
        return result.drain["max_reclaim_lag_s"]

    rows = [
        ["load: SET PX, pipelined", "s"] + cells(lambda r: r.drain["load_seconds"])
        + [ratio(lambda r: r.drain["load_seconds"]), ""],
        ["empty after last deadline", "s"]
        + cells(lambda r: r.drain["empty_after_last_deadline_s"])
        + ["", _check(results[-1], lambda r: r.drain["empty_after_last_deadline_s"], "<=",
                      TARGET_LAG_S)],
        ["max reclaim lag (in-order est.)", "s"] + cells(lag)
        + ["", _check(results[-1], lag, "<=", TARGET_LAG_S)],
        ["max expired, not reclaimed", "keys"]
        + cells(lambda r: r.drain["max_expired_not_reclaimed"], "{:,.0f}") + ["", ""],
        ["CPU while draining, all procs", "%"]
        + cells(lambda r: r.drain["cpu_percent_total"], "{:.0f}") + ["", ""],
        ["CPU while draining, busiest proc", "%"]
        + cells(lambda r: r.drain["cpu_percent_busiest_process"], "{:.0f}") + ["", ""],
        ["RSS empty", "MiB"] + [_mib(r.drain and r.drain["rss_empty"]) for r in results]
        + [ratio(lambda r: r.drain["rss_empty"]), ""],
        ["RSS peak (drain)", "MiB"] + [_mib(r.drain and r.drain["rss_peak"]) for r in results]
        + [ratio(lambda r: r.drain["rss_peak"]), ""],
        ["GET -c 50 -P 16, no TTLs", "ops/s"]
        + cells(lambda r: r.get_plain["rps"], "{:,.0f}")
        + [ratio(lambda r: r.get_plain["rps"]), ""],
        ["GET -c 50 -P 16, storm", "ops/s"]
        + cells(lambda r: r.get_storm["rps"], "{:,.0f}")
        + [ratio(lambda r: r.get_storm["rps"]), ""],
        ["GET storm / no TTLs", "ratio"] + cells(storm_ratio)
        + ["", _check(results[-1], storm_ratio, ">=", TARGET_GET_RATIO)],
        ["GET p50, no TTLs / storm", "ms"]
        + [_pair(r, "p50_ms") for r in results] + ["", ""],
        ["GET p99, no TTLs / storm", "ms"]
        + [_pair(r, "p99_ms") for r in results] + ["", ""],
        ["GET max, no TTLs / storm", "ms"]
        + [_pair(r, "max_ms") for r in results] + ["", ""],
    ]
    return rows


def _pair(result: ServerRun, key: str) -> str:
    try:
        return f"{result.get_plain[key]:.2f} / {result.get_storm[key]:.2f}"
    except (TypeError, KeyError):
        return "-"


def _check(result: ServerRun, pick: Any, comparison: str, goal: float) -> str:
    try:
        value = pick(result)
    except (TypeError, KeyError):
        return "-"
    if value is None:
        return "MISS (never empty)"
    met = value <= goal if comparison == "<=" else value >= goal
    return f"{'ok' if met else 'MISS'} ({comparison}{goal:g})"


def render(results: list[ServerRun], keys: int) -> str:
    labels = [r.label for r in results]
    ratio_label = f"{labels[-1].split('/')[0]}/{labels[0]}" if len(labels) > 1 else ""
    header = ["expiry storm", "unit", *labels, ratio_label, "target"]
    title = (f"{keys:,} keys, TTL uniform {TTL_MIN_MS // 1000}-{TTL_MAX_MS // 1000} s, "
             f"{len(VALUE)}-byte values; GET on {HOT_KEYS:,} other keys")
    return title + "\n\n" + format_table(header, _rows(results), 2)


def build_report(args: argparse.Namespace, results: list[ServerRun], started: datetime,
                 load_before: tuple[float, float, float], complete: bool) -> dict[str, Any]:
    finished = datetime.now(timezone.utc)
    return {
        "schema": 1,
        "bench": "expiry",
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
            "ttl_ms": [TTL_MIN_MS, TTL_MAX_MS],
            "value_size": len(VALUE),
            "hot_keys": HOT_KEYS,
            "get_clients": GET_CLIENTS,
            "get_pipeline": GET_PIPELINE,
            "info_interval_s": INFO_INTERVAL_S,
            "seed": SEED,
        },
        "targets": {"max_reclaim_lag_s": TARGET_LAG_S, "get_storm_ratio": TARGET_GET_RATIO},
        "servers": [asdict(result) for result in results],
    }


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.expiry",
        description="Expiry storm: keys with 1-10 s TTLs, against redis-server and shardis "
                    "(reclaim time, memory, GET throughput); see bench/README.md.")
    parser.add_argument("--keys", type=int, metavar="N",
                        help=f"keys with a TTL (default {DEFAULT_KEYS:,}; --quick "
                             f"{QUICK_KEYS:,})")
    parser.add_argument("--quick", action="store_true", help="smoke run with fewer keys")
    parser.add_argument("--workers", type=int, default=3, help="shardis workers (default 3)")
    args = parser.parse_args(argv)
    if args.keys is None:
        args.keys = QUICK_KEYS if args.quick else DEFAULT_KEYS
    if args.keys < LOAD_BATCH or args.workers < 1:
        parser.error(f"--keys must be at least {LOAD_BATCH} and --workers at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def report(results: list, started: datetime, load_before: tuple, complete: bool) -> Path:
        print(render(results, args.keys))
        return write_json(build_report(args, results, started, load_before, complete), started,
                          "expiry", indent=1)

    return run_reported(lambda results: run_all(args, results), report)


if __name__ == "__main__":
    raise SystemExit(main())
