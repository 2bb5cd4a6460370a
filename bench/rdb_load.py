"""Loading an RDB at start: real Redis vs shardis's workers (run by hand; not a test).

1. Fills a real redis-server with ``--keys`` mixed small keys (strings, integers, strings
   with a TTL, small hashes, lists, sets, sorted sets) through ``redis-cli --pipe``, SAVEs.
2. Starts redis-server on that dump.rdb ``--rounds`` times and reads its "DB loaded from disk:
   X seconds" log line.
3. Splits the file by slot into one dump.rdb per worker (``DIR/worker-<i>/dump.rdb``, with
   shardis's own reader and writer), starts ``shardis up --workers N`` on it ``--rounds``
   times and reads each worker's "DB loaded from disk: ... in X seconds" line: the workers
   load in parallel, so shardis's time is the slowest worker's.
4. Prints both (medians) and the ratios, of wall time and of CPU time (on a shared machine
   the wall time of either side depends on who else runs; the CPU time much less; with more
   workers than cores, the workers also share cores with each other);  ``--profile`` also
   loads worker 0's file in this process under cProfile and prints the top functions.

    python -m bench.rdb_load                      # 1M keys, 2 and 4 workers, 3 rounds
    python -m bench.rdb_load --keys 200000 --workers 2 --rounds 1 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from shardis.persist.rdb import RdbReader, RdbWriter  # noqa: E402
from shardis.slots import SlotMap  # noqa: E402
from tests.servers import free_port, wait_for_port  # noqa: E402

_REDIS_LOADED = re.compile(r"DB loaded from disk: ([0-9.]+) seconds")
#: (older workers do not log their CPU time: it is then reported as nan)
_WORKER_LOADED = re.compile(
    r"DB loaded from disk: (\d+) keys .* in ([0-9.]+) seconds(?: \(([0-9.]+) s of CPU\))?")


def _resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def protocol(keys: int) -> bytes:
    """The commands that make ``keys`` keys: 60% short strings, 10% integers, 10% strings
    with a TTL, 5% each of 3-field hashes, 3-item lists, 3-member int sets and zsets."""
    out = []
    for i in range(keys):
        kind = i % 20
        key = b"key:%d" % i
        if kind < 12:
            out.append(_resp(b"SET", key, b"value-%d-abcdefgh" % i))
        elif kind < 14:
            out.append(_resp(b"SET", key, b"%d" % (i * 7919)))
        elif kind < 16:
            out.append(_resp(b"SET", key, b"ttl-%d" % i, b"EX", b"%d" % (100_000 + i)))
        elif kind == 16:
            out.append(_resp(b"HSET", key, b"a", b"1", b"b", b"two", b"c", b"%d" % i))
        elif kind == 17:
            out.append(_resp(b"RPUSH", key, b"x", b"y", b"%d" % i))
        elif kind == 18:
            out.append(_resp(b"SADD", key, b"1", b"2", b"%d" % (i % 1000 + 3)))
        else:
            out.append(_resp(b"ZADD", key, b"1", b"a", b"2.5", b"b", b"3", b"%d" % i))
    return b"".join(out)


def _redis(folder: str, logfile: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", folder, "--dbfilename", "dump.rdb",
         "--logfile", logfile, "--databases", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc, timeout=120)
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_dump(folder: str, keys: int) -> str:
    proc, port = _redis(folder, os.path.join(folder, "fill.log"))
    try:
        subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=protocol(keys),
                       check=True, capture_output=True)
        subprocess.run(["redis-cli", "-p", str(port), "SAVE"], check=True, capture_output=True)
    finally:
        _stop(proc)
    return os.path.join(folder, "dump.rdb")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_load_seconds(folder: str) -> tuple[float, float]:
    """(wall, CPU) seconds redis-server took to load: its own log line, and its CPU time
    once it answers (start-up included, which is a few milliseconds)."""
    logfile = os.path.join(folder, "load.log")
    if os.path.exists(logfile):
        os.unlink(logfile)
    proc, _ = _redis(folder, logfile)
    cpu = _cpu_seconds(proc.pid)
    _stop(proc)
    with open(logfile) as fh:
        match = _REDIS_LOADED.search(fh.read())
    assert match, "redis-server did not log its load time"
    return float(match.group(1)), cpu


def split(path: str, folder: str, workers: int) -> list[int]:
    """One dump.rdb per worker in ``folder``, with the keys of that worker's slots."""
    slots = SlotMap(workers)
    parts: list[list] = [[] for _ in range(workers)]
    with open(path, "rb") as fh:
        for key, value, expire in RdbReader(fh):
            parts[slots.worker_of(key)].append((key, value, expire))
    for index, part in enumerate(parts):
        own = os.path.join(folder, f"worker-{index}")
        os.makedirs(own, exist_ok=True)
        with open(os.path.join(own, "dump.rdb"), "wb") as fh:
            writer = RdbWriter(fh)
            writer.begin(len(part), sum(1 for _, _, e in part if e is not None))
            for key, value, expire in part:
                writer.key(key, value, expire)
            writer.end()
    return [len(p) for p in parts]


def shardis_load_seconds(folder: str, workers: int) -> list[tuple[float, float]]:
    """Each worker's logged (wall, CPU) load time, for one start of ``shardis up``."""
    port = free_port()
    logfile = os.path.join(folder, "shardis.log")
    env = dict(os.environ, PYTHONPATH=ROOT)
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shardis", "up", "--workers", str(workers), "--port",
             str(port), "--dir", folder, "--save", ""], stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=ROOT)
    try:
        wait_for_port(port, proc, timeout=600)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with open(logfile) as fh:
                times = [(float(m.group(2)), float(m.group(3) or "nan"))
                         for m in _WORKER_LOADED.finditer(fh.read())]
            if len(times) == workers:
                return times
            time.sleep(0.2)
        raise RuntimeError("the workers did not all log their load")
    finally:
        _stop(proc)


def profile(folder: str) -> None:
    from shardis.worker.shard import Shard
    from shardis.worker.snapshot import Snapshots

    shard = Shard(0)
    snapshots = Snapshots(os.path.join(folder, "worker-0"))
    profiler = cProfile.Profile()
    profiler.enable()
    snapshots.load(shard)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--workers", default="2,4", help="worker counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--keep", help="work in this folder and keep it (reuses its dump)")
    args = parser.parse_args()
    folder = args.keep or tempfile.mkdtemp(prefix="rdb-load-")
    os.makedirs(folder, exist_ok=True)
    try:
        source = os.path.join(folder, "redis")
        os.makedirs(source, exist_ok=True)
        path = os.path.join(source, "dump.rdb")
        if not os.path.exists(path):
            make_dump(source, args.keys)
        runs = [redis_load_seconds(source) for _ in range(args.rounds)]
        redis_s = statistics.median(wall for wall, _ in runs)
        redis_cpu = statistics.median(cpu for _, cpu in runs)
        print(f"redis-server: {args.keys} keys loaded in {redis_s:.3f} s, {redis_cpu:.3f} s "
              f"of CPU ({os.path.getsize(path) / 1e6:.1f} MB; median of {args.rounds})")
        for workers in (int(w) for w in args.workers.split(",")):
            target = os.path.join(folder, f"shardis-{workers}")
            if not os.path.isdir(target):
                counts = split(path, target, workers)
            else:
                counts = []
            rounds = [shardis_load_seconds(target, workers) for _ in range(args.rounds)]
            wall = statistics.median(max(w for w, _ in r) for r in rounds)
            cpu = statistics.median(max(c for _, c in r) for r in rounds)
            per_worker = ", ".join(f"{w:.3f}/{c:.3f}" for w, c in rounds[-1])
            print(f"shardis {workers} workers {counts or ''}: slowest worker {wall:.3f} s, "
                  f"{cpu:.3f} s of CPU (last round, wall/CPU per worker: {per_worker}); "
                  f"ratio {wall / redis_s:.2f}x wall, {cpu / redis_cpu:.2f}x CPU")
            if args.profile:
                profile(target)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
