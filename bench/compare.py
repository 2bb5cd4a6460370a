"""Compare shardis with a real redis-server: throughput, latency and memory, in one run.

Run from the repository root with ``python -m bench.compare`` (or ``python bench/compare.py``);
``--help`` lists the options and bench/README.md explains how to read the output.

Why it is built this way:

* Every server (redis-server, then shardis with each worker count) runs alone, one after the
  other, under the same redis-benchmark parameters: on a small machine the benchmark client
  competes with the servers for CPU, so only ratios measured in the same run mean anything.
* Servers are our own child processes on free loopback ports, in their own session (so a
  Ctrl-C in the terminal reaches us, not them) and are always stopped by PID with SIGTERM,
  then waited for, before the next one starts.  We check that a port is served by one of our
  processes before we ever connect to it: other people run servers on the same machine.
* Memory is measured on a fresh instance of each server, idle and after a fixed, known data
  set was loaded, so that the benchmark runs' leftovers do not blur it: a million small
  string keys fed by ``redis-cli --pipe`` (whose time is a target too), then one instance
  per collection data set (100,000 hashes, sets, integer sets, zsets, lists of 10 elements).
  Memory is the RSS summed over the server's processes (what ``ps`` shows) and the distinct
  physical pages they map (shared library pages once), per process and in all.
* Last comes a summary of issue #19's targets, met or missed, as a markdown table for the
  README's Performance section.
* Workloads that ``-t`` cannot express (a leaderboard, a bitmap) use redis-benchmark's
  custom-command mode, one command line per invocation, on keys that the script fills first,
  so that every server times the same command on the same data.
* CPU per command comes from /proc (utime + stime of every process of the server's tree,
  sampled right before and right after each redis-benchmark invocation, one test per
  invocation): unlike ops/s it is the work a command took, not how fast it got through a
  machine the client shares, and it says whether the router or the workers spent it.
* Everything measured goes to a JSON file next to the printed table, so that later runs can be
  compared with this one.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"

#: redis-benchmark ``-t`` names always run, and how ``--csv`` labels them.
BASE_TESTS: dict[str, str] = {
    "set": "SET",
    "get": "GET",
    "incr": "INCR",
    "mset": "MSET (10 keys)",
    "ping_mbulk": "PING_MBULK",
}
#: Tests run only where the server has the command (probed with COMMAND INFO), in
#: redis-benchmark's own order.  All of them work on one key each (``mylist``, ``myset``,
#: ``myhash``, ``myzset``).  RPUSH is there for the pops: redis-benchmark runs LPUSH, RPUSH,
#: LPOP, RPOP in that order with ``-n`` requests each, so without RPUSH the LPOPs would empty
#: the list and every RPOP would time a pop from a missing key.
EXTRA_TESTS: dict[str, str] = {
    "lpush": "LPUSH",
    "rpush": "RPUSH",
    "lpop": "LPOP",
    "rpop": "RPOP",
    "sadd": "SADD",
    "hset": "HSET",
    "zadd": "ZADD",
}
#: redis-benchmark's own order of the ``-t`` tests (src/redis-benchmark.c), whatever the order
#: given.  Each test runs in an invocation of its own, so that the server's CPU time can be
#: sampled around it (see :func:`measure_cpu`), and the invocations keep this order: the pops
#: need the pushes before them, and every test sees what it saw when they shared one run.
BENCHMARK_ORDER: tuple[str, ...] = (
    "ping_mbulk", "set", "get", "incr", "lpush", "rpush", "lpop", "rpop", "sadd", "hset",
    "zadd", "mset",
)


@dataclass(frozen=True)
class CustomTest:
    """A redis-benchmark custom-command test: ``redis-benchmark [options] <argv>``.

    redis-benchmark runs one such command line per invocation and labels its ``--csv`` row
    with the command line itself (``__rand_int__`` unexpanded); ``label`` is the shorter name
    shown in the table, whose legend prints the full command line.
    """

    name: str
    label: str
    argv: tuple[str, ...]

    @property
    def csv_label(self) -> str:
        return " ".join(self.argv)


#: The sorted-set and bitmap workloads of issue #7, in the order they run.  ``leaderboard``
#: and ``bitmap`` are filled before the first configuration (see :func:`prepare_custom_keys`).
#: SETBIT uses a fixed offset because ``SETBIT bitmap __rand_int__ 1`` cannot run on Redis:
#: ``__rand_int__`` expands to 12 zero-padded digits, and Redis 7.0 rejects an offset with
#: leading zeros ("ERR bit offset is not an integer or out of range") while 12 digits without
#: them are at least 10^11, beyond the 2^32-bit limit.  On a bitmap of full size SETBIT costs
#: the same whichever bit it sets, in Redis (a byte in place) as in shardis (a bytearray).
CUSTOM_TESTS: tuple[CustomTest, ...] = (
    CustomTest("zincrby", "ZINCRBY leaderboard",
               ("ZINCRBY", "leaderboard", "1", "member:__rand_int__")),
    CustomTest("zrange", "ZRANGE leaderboard 0 9",
               ("ZRANGE", "leaderboard", "0", "9", "WITHSCORES")),
    CustomTest("setbit", "SETBIT bitmap", ("SETBIT", "bitmap", "99999", "1")),
    CustomTest("bitcount", "BITCOUNT bitmap", ("BITCOUNT", "bitmap")),
)
CUSTOM_BY_NAME: dict[str, CustomTest] = {test.name: test for test in CUSTOM_TESTS}
#: Every test by name -> its ``--csv`` label (how results are keyed, in JSON too).
ALL_TESTS: dict[str, str] = ({**BASE_TESTS, **EXTRA_TESTS}
                             | {test.name: test.csv_label for test in CUSTOM_TESTS})
#: Every test by name -> its label in the printed table.
TEST_LABELS: dict[str, str] = ALL_TESTS | {test.name: test.label for test in CUSTOM_TESTS}
#: The command each test needs (``ping_mbulk`` needs PING, which every server has).
TEST_COMMAND: dict[str, str] = ({name: name for name in ALL_TESTS} | {"ping_mbulk": "ping"}
                                | {test.name: test.argv[0].lower() for test in CUSTOM_TESTS})

#: Random key space for ``-r``: large enough that keys spread over all slots and workers.
RANDOM_KEYS = 100_000
DEFAULT_REQUESTS = 50_000
QUICK_REQUESTS = 5_000
#: The strings data set, loaded with ``redis-cli --pipe`` (issue #19): ``SET key:%012d`` to
#: 16 x 'x', the data of ``redis-benchmark -t set -r <keys> -d 16`` but exactly ``keys`` keys.
DEFAULT_MEMORY_KEYS = 1_000_000
QUICK_MEMORY_KEYS = 100_000
MEMORY_VALUE_SIZE = 16
LOAD_BATCH = 1_000
#: After the strings load, the servers sit idle this long and memory is sampled again: a
#: router whose buffers grew during the load and never shrank shows there.
DEFAULT_SETTLE_S = 5.0
QUICK_SETTLE_S = 1.0
#: The collection data sets (issue #19): this many keys of 10 elements each, one data set per
#: type, each on a fresh server (see COLLECTION_SETS).
DEFAULT_COLLECTION_KEYS = 100_000
QUICK_COLLECTION_KEYS = 5_000
#: Seed of the sorted sets' scores (and of the leaderboard's bitmap bits): the same data for
#: every server.
ZSET_SEED = 7
#: Elements per pipelined batch of a collection load: 1,000 commands of 10 elements, ~130 KB.
COLLECTION_BATCH_ELEMENTS = 10_000
#: A fresh server's idle memory is sampled this long after it first answered PING.
IDLE_WAIT_S = 0.5
#: The leaderboard holds every member ZINCRBY can pick (``-r``), the bitmap every bit up to
#: the SETBIT offset, before any custom test runs; the bitmap gets this many bits set.
BITMAP_BITS = RANDOM_KEYS
BITMAP_SET_BITS = RANDOM_KEYS // 2
#: Generous safety nets, not measurements: a hung server must not hang the benchmark forever.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
BENCH_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class BenchConfig:
    """One redis-benchmark client configuration.

    ``scale`` multiplies the base request count: pipelined requests are cheap, and with a single
    client only one request is in flight, so the same ``-n`` would take wildly different times.
    """

    name: str
    clients: int
    pipeline: int
    scale: float

    def requests(self, base: int) -> int:
        return max(100, round(base * self.scale))


CONFIGS: tuple[BenchConfig, ...] = (
    BenchConfig("-c 50 -P 1", clients=50, pipeline=1, scale=1.0),
    BenchConfig("-c 50 -P 16", clients=50, pipeline=16, scale=5.0),
    BenchConfig("-c 1 -P 1", clients=1, pipeline=1, scale=0.2),
)

#: Targets from the project's issue; they are stated at 3 workers.
TARGET_WORKERS = 3


# --------------------------------------------------------------------------------------------
# Processes: starting, finding, measuring and stopping our servers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A port the kernel just found free on loopback (the server binds it right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (so ``[0]`` is field 3, the state),
    or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time) of a process, or None if it is gone.

    The start time tells a process from a later one that reused its PID.
    """
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[1]), int(fields[19]))


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, found through the ppid field of /proc/*/stat.

    shardis is a supervisor whose children are the router and the workers; memory must be
    counted over all of them.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _status_kib(pid: int, field_name: str, path: str = "status") -> int:
    """A ``Name:  N kB`` field of /proc/PID/status (or smaps_rollup), in KiB; 0 if absent."""
    try:
        text = Path(f"/proc/{pid}/{path}").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class MemorySample:
    """Memory of a process tree, three ways.

    ``rss_bytes``: the sum of the processes' RSS, which counts a page shared by several of
    them (the interpreter's and libraries' code, mapped by every Python process) once per
    process.  ``unique_bytes``: the physical pages mapped by any process of the tree, each
    counted once, from /proc/PID/pagemap (needs root to see page frame numbers; None
    otherwise): the RAM the server occupies, what the memory target is stated on.  For one
    process the two are equal.  ``pss_bytes``: PSS, which also splits pages shared with
    processes outside the tree (libc...), so it undercounts a little.
    """

    pids: list[int]
    rss_bytes: int
    pss_bytes: int
    unique_bytes: int | None


def sample_memory(root: int) -> MemorySample:
    pids = process_tree(root)
    rss = sum(_status_kib(pid, "VmRSS") for pid in pids) * 1024
    pss = sum(_status_kib(pid, "Pss", "smaps_rollup") for pid in pids) * 1024
    return MemorySample(pids, rss, pss, unique_resident_bytes(pids))


_PAGE = os.sysconf("SC_PAGE_SIZE")
_PRESENT = 1 << 63
_PFN_MASK = (1 << 55) - 1


def resident_frames(pid: int) -> set[int] | None:
    """The physical page frames a process has in RAM, from /proc/PID/pagemap.

    Without CAP_SYS_ADMIN the frame numbers read as 0 and pages cannot be told apart: None
    then, and None if the process is gone.
    """
    frames: set[int] = set()
    try:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for line in maps:
                if line.rstrip().endswith("[vsyscall]"):
                    continue
                start, end = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
                pagemap.seek(start // _PAGE * 8)
                entries = pagemap.read((end - start) // _PAGE * 8)
                frames.update(entry & _PFN_MASK for (entry,) in struct.iter_unpack("<Q", entries)
                              if entry & _PRESENT)
    except OSError:
        return None
    if frames and frames <= {0}:
        return None  # not allowed to see frame numbers
    return frames


def unique_resident_bytes(pids: list[int]) -> int | None:
    """Bytes of the distinct physical pages the processes map (pages in RAM, each once), or
    None when the frame numbers cannot be read (see :func:`resident_frames`)."""
    frames: set[int] = set()
    for pid in pids:
        own = resident_frames(pid)
        if own is None:
            return None
        frames |= own
    return len(frames) * _PAGE


def process_role(pid: int, root: int) -> str:
    """What a process of a server's tree is, from its command line: ``redis-server``,
    ``router`` (shardis's ``up`` process, which runs the router beside the supervisor) or
    ``worker N`` (``shardis worker --index N``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    if "--index" in argv[:-1]:
        return f"worker {argv[argv.index('--index') + 1]}"
    if pid == root and "shardis" in argv and "up" in argv:
        return "router"
    name = argv[0].split()[0] if argv and argv[0] else "?"
    return os.path.basename(name)


@dataclass
class ProcessMemory:
    """One process of a server: its RSS and ``own_bytes``, the resident pages that no other
    process of the same server maps (None without access to frame numbers)."""

    pid: int
    role: str
    rss_bytes: int
    own_bytes: int | None


@dataclass
class TreeMemory:
    """A server's memory at one moment, summed over its processes (``rss_bytes``, PSS) and as
    distinct resident pages (``unique_bytes``; None without access to frame numbers), with
    each process apart.  ``unique_bytes`` minus the processes' ``own_bytes`` is what they
    share (the interpreter's and libraries' pages, for shardis)."""

    rss_bytes: int
    pss_bytes: int
    unique_bytes: int | None
    processes: list[ProcessMemory]


def own_pages(frames: dict[int, set[int]]) -> dict[int, int]:
    """Per process, how many of its frames no other process of ``frames`` maps."""
    return {pid: len(pages.difference(*(other for key, other in frames.items() if key != pid)))
            for pid, pages in frames.items()}


def sample_tree(root: int) -> TreeMemory:
    """:class:`TreeMemory` of ``root``'s process tree, each process's pages read once."""
    pids = process_tree(root)
    frames = {pid: resident_frames(pid) for pid in pids}
    readable = {pid: pages for pid, pages in frames.items() if pages is not None}
    complete = len(readable) == len(pids)
    own = own_pages(readable) if complete else {}
    processes = [ProcessMemory(pid, process_role(pid, root), _status_kib(pid, "VmRSS") * 1024,
                               own[pid] * _PAGE if complete else None) for pid in pids]
    unique = len(set().union(*readable.values())) * _PAGE if complete else None
    return TreeMemory(sum(proc.rss_bytes for proc in processes),
                      sum(_status_kib(pid, "Pss", "smaps_rollup") for pid in pids) * 1024,
                      unique, sorted(processes, key=_role_order))


def _role_order(proc: ProcessMemory) -> tuple[int, str]:
    """The main process (redis-server, router) first, then the workers by index."""
    if proc.role.startswith("worker "):
        index = proc.role.split()[1]
        return 1, index.zfill(6) if index.isdigit() else index
    return 0, proc.role


#: utime and stime in /proc/PID/stat count clock ticks (USER_HZ, 100 on Linux: 10 ms each).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: A CPU delta below this many ticks is too coarse to read much into: +-1 tick of rounding at
#: each end of the run is then +-10% or more of it.  The table marks such figures.
CPU_MIN_TICKS = 20


@dataclass(frozen=True)
class CpuSample:
    """utime + stime, in clock ticks, of every process of a server's tree at one moment.

    Keyed by (PID, start time) so that a process that died and a later one that reused its PID
    are never subtracted from each other.  ``root`` is the server's own process: redis-server,
    or shardis's ``up`` process, which runs the router (the workers are its children).
    """

    root: int
    ticks: dict[tuple[int, int], int]


def sample_cpu(root: int) -> CpuSample:
    """CPU time so far of ``root`` and its descendants (all their threads: utime and stime of
    /proc/PID/stat are the whole process's)."""
    ticks = {}
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks[(pid, int(fields[19]))] = int(fields[11]) + int(fields[12])
    return CpuSample(root, ticks)


def cpu_delta(before: CpuSample, after: CpuSample, commands: int) -> dict[str, Any]:
    """The CPU the server spent between two samples, as JSON: ticks and microseconds per
    command of its main process (``main``: redis-server, shardis's router) and of the others
    summed (``children``: shardis's workers), over the processes present at *both* samples.

    A process that started or ended between the samples (a restarted worker, a BGSAVE child)
    has no CPU time at one end, so it is left out and listed under ``appeared``/``vanished``
    rather than counted with a guess; a child's time is not folded into its parent's utime.
    """
    common = before.ticks.keys() & after.ticks.keys()
    spent = {key: after.ticks[key] - before.ticks[key] for key in common}
    ticks = {"main": sum(t for (pid, _), t in spent.items() if pid == after.root),
             "children": sum(t for (pid, _), t in spent.items() if pid != after.root)}
    ticks["total"] = ticks["main"] + ticks["children"]
    per_tick_us = 1e6 / CLOCK_TICKS / max(commands, 1)
    return {
        "commands": commands,
        "clock_ticks_per_s": CLOCK_TICKS,
        "processes": len(common),
        "appeared": sorted(pid for pid, _ in after.ticks.keys() - common),
        "vanished": sorted(pid for pid, _ in before.ticks.keys() - common),
        "ticks": ticks,
        "us_per_command": {role: round(t * per_tick_us, 3) for role, t in ticks.items()},
        # which worker did the work: a one-key test keeps one busy and leaves the others idle
        "ticks_by_pid": {str(pid): spent[(pid, start)] for pid, start in sorted(common)},
    }


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:port, from /proc/net/tcp."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[1] == wanted and parts[3] == "0A":
                inodes.add(parts[9])
    return inodes


def listener_is_ours(port: int, root: int) -> bool:
    """True when a process of our server's tree owns the listening socket on ``port``.

    We only ever connect to a port after this says yes, so that a port that someone else's
    server grabbed in the meantime is never touched.
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                        return True
    return False


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM while a server is being stopped, then act on it.

    An interrupt in the middle of a stop would leave the server running; an interrupt that is
    simply ignored would make the benchmark go on.  So: remember it, finish the stop, raise.
    """
    pending: list[int] = []
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, _frame: pending.append(signum))
                for sig in watched}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        raise KeyboardInterrupt


@dataclass
class Server:
    """A server we started: its label, port, process and private directory."""

    label: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: str
    workers: int | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, "server.log")

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError), open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")[-chars:]
        return ""

    def wait_ready(self) -> None:
        """Wait until our process listens on the port, then until it answers PING."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with code {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if listener_is_ours(self.port, self.proc.pid):
                with contextlib.suppress(OSError, RespError):
                    if call(self.port, "PING") == "PONG":
                        return
            time.sleep(0.05)
        raise RuntimeError(f"{self.label} did not answer PING within {START_TIMEOUT_S:.0f}s:\n"
                           f"{self.log_tail()}")

    def stop(self, keep_dir: bool = False) -> list[int]:
        """SIGTERM by PID, wait; then kill whatever of its tree is left.  Returns the PIDs that
        had to be killed (empty when the server stopped cleanly, as it should).  The work dir
        is removed unless ``keep_dir`` (a restart on the same data, bench/persistence.py)."""
        with deferred_interrupts():
            tree = [(pid, _proc_stat(pid)) for pid in process_tree(self.proc.pid)]
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            leftovers = _kill_leftovers(tree)
            if not keep_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return leftovers


def _kill_leftovers(tree: list[tuple[int, tuple[int, int] | None]]) -> list[int]:
    """SIGKILL processes of a stopped server's tree that are still alive (same PID *and* same
    start time, so that we never kill a stranger that reused the PID)."""
    killed = []
    for pid, stat in tree:
        now = _proc_stat(pid)
        if stat is not None and now is not None and now[1] == stat[1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _spawn(label: str, argv: list[str], workdir: str, port: int, workers: int | None,
           env: dict[str, str] | None = None) -> Server:
    """Start a server in its own session with its output in its work dir; wait until ready.

    If anything goes wrong before it is ready (including Ctrl-C), it is stopped here, since
    the caller never gets a handle on it.
    """
    with open(os.path.join(workdir, "server.log"), "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                env=env, start_new_session=True)
    server = Server(label, port, proc, workdir, workers)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


#: redis-server's persistence settings unless a caller passes others: none at all.
REDIS_NO_PERSISTENCE: tuple[str, ...] = ("--save", "", "--appendonly", "no")


def start_redis(config: tuple[str, ...] = REDIS_NO_PERSISTENCE,
                workdir: str | None = None) -> Server:
    """redis-server with ``config`` (command-line directives); in ``workdir`` if given (to
    restart on the files of an earlier run), else in a new temporary directory."""
    port = free_port()
    workdir = workdir or tempfile.mkdtemp(prefix="bench-redis-")
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", *config,
            "--dir", workdir, "--daemonize", "no"]
    return _spawn("redis", argv, workdir, port, None)


def start_shardis(workers: int, config: tuple[str, ...] = (),
                  workdir: str | None = None) -> Server:
    """``python -m shardis up`` from this checkout (not whatever shardis is installed), with
    extra flags ``config``; data in ``workdir``/data, ``workdir`` as for :func:`start_redis`."""
    port = free_port()
    workdir = workdir or tempfile.mkdtemp(prefix="bench-shardis-")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "shardis", "up", "--workers", str(workers), "--port", str(port),
            "--bind", "127.0.0.1", "--dir", os.path.join(workdir, "data"), *config]
    return _spawn(f"shardis/{workers}", argv, workdir, port, workers, env)


@contextlib.contextmanager
def running(start: Any, *args: Any, keep_dir: bool = False) -> Iterator[Server]:
    """A started server that is always stopped (and checked for leftovers) at the end; its
    directory is removed then unless ``keep_dir`` (the caller removes it later)."""
    server = start(*args)
    try:
        yield server
    finally:
        leftovers = server.stop(keep_dir)
        if leftovers:
            print(f"warning: {server.label} left processes {leftovers} behind; killed them",
                  file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Talking to the servers: a minimal RESP2 client and a pipelined loader
# --------------------------------------------------------------------------------------------


class RespError(Exception):
    """An error reply (``-ERR ...``)."""


def encode_command(*args: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def read_reply(stream: io.BufferedReader) -> Any:
    """One RESP2 reply (plus RESP3 null, in case): nested lists, str, int or None."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("connection closed")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RespError(body.decode())
    if kind == b":":
        return int(body)
    if kind == b"_":
        return None
    if kind == b"$":
        size = int(body)
        return None if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(body)
        return None if size < 0 else [read_reply(stream) for _ in range(size)]
    raise OSError(f"unexpected reply {line[:40]!r}")


def call(port: int, *args: str) -> Any:
    """Send one command on a fresh connection; only ever used on our own servers' ports."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(encode_command(*args))
        with sock.makefile("rb") as stream:
            return read_reply(stream)


def supported_commands(port: int, commands: list[str]) -> dict[str, bool]:
    """COMMAND INFO a b c: a null entry means the server does not have that command."""
    reply = call(port, "COMMAND", "INFO", *commands)
    return {name: entry is not None for name, entry in zip(commands, reply)}


def _recv_lines(sock: socket.socket, carry: bytes) -> tuple[list[bytes], bytes]:
    """The complete reply lines that have arrived, and the partial line left over."""
    data = carry + sock.recv(1 << 16)
    if len(data) == len(carry):
        raise OSError("connection closed while loading")
    cut = data.rfind(b"\r\n")
    if cut < 0:
        return [], data
    return data[:cut].split(b"\r\n"), data[cut + 2:]


def pipeline(port: int, batches: Iterable[tuple[bytes, int]]) -> Iterator[list[bytes]]:
    """Send (encoded commands, how many) batches on one connection; yield reply lines as they
    arrive.

    Only for commands whose replies are one line each (``+OK``, ``:N``, ``-ERR``), so that a
    line is a reply and no RESP parsing is needed to keep up with a million of them.  At most
    two batches are in flight, so neither side's socket buffers can fill up and deadlock us.
    """
    pending, carry = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        for payload, commands in batches:
            sock.sendall(payload)
            pending += commands
            while pending > commands:  # until every earlier batch is answered
                lines, carry = _recv_lines(sock, carry)
                pending -= len(lines)
                yield lines
        while pending > 0:
            lines, carry = _recv_lines(sock, carry)
            pending -= len(lines)
            yield lines


def send_pipelined(port: int, batches: Iterable[tuple[bytes, int]],
                   expected: bytes) -> tuple[int, str | None, float]:
    """Pipeline ``batches``; (replies other than ``expected``, the first of them, seconds).

    Any other reply counts as an error, not only ``-ERR``: an HSET that answers ``:99`` for 100
    new fields did not store what we meant to measure.
    """
    errors, first_error = 0, None
    begin = time.monotonic()
    for lines in pipeline(port, batches):
        bad = [line for line in lines if line != expected]
        if bad and first_error is None:
            first_error = bad[0].decode(errors="replace")
        errors += len(bad)
    return errors, first_error, time.monotonic() - begin


@dataclass
class LoadResult:
    requested: int
    errors: int
    first_error: str | None
    seconds: float
    dbsize: int


def _set_batch(start: int, stop: int, value: bytes) -> bytes:
    tail = b"\r\n$%d\r\n%s\r\n" % (len(value), value)
    return b"".join(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d" % i + tail for i in range(start, stop))


def load_keys(port: int, count: int, value_size: int = MEMORY_VALUE_SIZE) -> LoadResult:
    """SET key:000000000000 .. key:<count-1> to ``value_size`` x's, pipelined on one connection.

    The same data as ``redis-benchmark -t set -r <count> -d 16`` but exactly ``count`` keys and
    half the requests (no duplicate random keys).
    """
    value = b"x" * value_size
    batches = ((_set_batch(start, min(count, start + LOAD_BATCH), value),
                min(count, start + LOAD_BATCH) - start) for start in range(0, count, LOAD_BATCH))
    errors, first_error, seconds = send_pipelined(port, batches, b"+OK")
    return LoadResult(count, errors, first_error, seconds, int(call(port, "DBSIZE")))


def pipe_protocol(count: int, value_size: int = MEMORY_VALUE_SIZE,
                  batch: int = 10_000) -> Iterator[bytes]:
    """The strings data set as the RESP that ``redis-cli --pipe`` sends: ``SET key:%012d
    <value_size x 'x'>`` for 0 .. count-1, in chunks of ``batch`` commands."""
    value = b"x" * value_size
    for start in range(0, count, batch):
        yield _set_batch(start, min(count, start + batch), value)


def write_pipe_file(path: Path, count: int, value_size: int = MEMORY_VALUE_SIZE) -> int:
    """Write :func:`pipe_protocol` to ``path`` once, for every server to be fed the same
    bytes; returns its size."""
    with open(path, "wb") as out:
        for chunk in pipe_protocol(count, value_size):
            out.write(chunk)
    return path.stat().st_size


def parse_pipe_output(text: str) -> tuple[int, int] | None:
    """(errors, replies) from redis-cli --pipe's last line, ``errors: 0, replies: 1000000``
    (the ECHO it appends to spot the last reply is not counted); None if it is missing."""
    for line in reversed(text.splitlines()):
        words = line.replace(",", " ").split()
        if len(words) == 4 and words[0] == "errors:" and words[2] == "replies:":
            with contextlib.suppress(ValueError):
                return int(words[1]), int(words[3])
    return None


@dataclass
class PipeLoadResult:
    """One ``redis-cli --pipe`` load: what it sent, how long it took, what it and the server
    said afterwards."""

    keys: int
    seconds: float
    exit_code: int | None
    errors: int | None
    replies: int | None
    dbsize: int
    output: str

    @property
    def verified(self) -> bool:
        """redis-cli saw every reply and no error, and DBSIZE holds every key."""
        return (self.exit_code == 0 and self.errors == 0 and self.replies == self.keys
                and self.dbsize == self.keys)


def pipe_load(port: int, path: Path, keys: int) -> PipeLoadResult:
    """``redis-cli -p PORT --pipe < path``, timed from start to exit (its start-up included,
    a few ms), then DBSIZE."""
    begin = time.monotonic()
    exit_code: int | None
    try:
        with open(path, "rb") as data:
            done = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
                                  stdin=data, capture_output=True, text=True,
                                  timeout=BENCH_TIMEOUT_S)
        exit_code, output = done.returncode, (done.stdout + done.stderr).strip()
    except subprocess.TimeoutExpired:
        exit_code, output = None, f"redis-cli --pipe did not finish within {BENCH_TIMEOUT_S:.0f}s"
    seconds = time.monotonic() - begin
    counts = parse_pipe_output(output)
    errors, replies = counts if counts else (None, None)
    return PipeLoadResult(keys, round(seconds, 3), exit_code, errors, replies,
                          int(call(port, "DBSIZE")), output[-500:])


def _text(prefix: bytes, number: int) -> bytes:
    """``prefix`` + 7 digits: 8 bytes that are not a number (Redis would store an all-digit
    value as an integer), distinct for numbers below 10^7."""
    return b"%s%07d" % (prefix, number % 10_000_000)


def hash_args(index: int, _rng: random.Random, fields: int = 10,
              name: bytes = b"f%d") -> list[bytes]:
    """``f0 v.. f1 v.. ... f9 v..``: short field names, distinct 8-byte values."""
    base = index * fields
    return [arg for n in range(fields) for arg in (name % n, _text(b"v", base + n))]


def member_args(index: int, _rng: random.Random, members: int = 10) -> list[bytes]:
    """10 distinct 8-byte members that are not integers (``m`` + 7 digits): SADD, RPUSH."""
    return [_text(b"m", index * members + n) for n in range(members)]


def integer_args(index: int, _rng: random.Random, members: int = 10) -> list[bytes]:
    """10 distinct 9-digit integers (100,000,000 + a running number): Redis keeps such a set
    as an intset of 32-bit integers."""
    return [b"%d" % (100_000_000 + index * members + n) for n in range(members)]


def zset_args(index: int, rng: random.Random, members: int = 10,
              name: bytes | None = None) -> list[bytes]:
    """``score member`` pairs: seeded floats in [0, 1000) with 4 decimals (Redis keeps a
    non-integer score as text in a listpack, ~17 bytes), 8-byte members (or ``name % n``)."""
    names = ([name % n for n in range(members)] if name
             else [_text(b"m", index * members + n) for n in range(members)])
    return [arg for member in names for arg in (b"%.4f" % (rng.random() * 1000), member)]


@dataclass(frozen=True)
class CollectionSet:
    """A collection data set for memory: ``keys`` keys ``<prefix>:%08d``, each written by one
    ``command`` of ``elements`` new elements (which answers ``:<elements>``), counted after
    the load with ``length_command`` (HLEN, SCARD, ZCARD, LLEN).

    ``keys_per`` scales the run's ``--collection-keys`` (stated for 10 elements a key) so
    that a data set of 100-element keys holds as many elements with a tenth of the keys.
    ``target`` is the issue's bound on shardis's bytes per element over Redis's, if any.
    """

    name: str
    label: str
    command: bytes
    length_command: bytes
    prefix: bytes
    elements: int
    arguments: Callable[[int, random.Random], list[bytes]]
    target: float | None = None
    keys_per: float = 1.0

    def key(self, index: int) -> bytes:
        return b"%s:%08d" % (self.prefix, index)

    def encode(self, index: int, rng: random.Random) -> bytes:
        return encode_command(self.command, self.key(index), *self.arguments(index, rng))

    def keys_for(self, collection_keys: int) -> int:
        return max(1, round(collection_keys * self.keys_per))


#: The collection data sets, in the order they run.  The first five are issue #19's (10
#: elements a key, each with its 2.5x bound); ``hash100`` and ``zset100`` are the earlier
#: runs' shapes (100 fields or members a key, as many elements in all), run on request only.
#: Every shape stays inside Redis 7.0's compact encodings' limits (``*-max-listpack-entries``
#: 128 or 512, values <= 64 bytes, ``set-max-intset-entries`` 512): a listpack for hashes,
#: zsets and the lists' quicklist nodes, an intset for the integer sets; Redis 7.0 has no
#: listpack for sets, so other sets are a hashtable.
COLLECTION_SETS: tuple[CollectionSet, ...] = (
    CollectionSet("hash", "hashes, 10 fields", b"HSET", b"HLEN", b"hash", 10, hash_args, 2.5),
    CollectionSet("set", "sets, 10 members", b"SADD", b"SCARD", b"set", 10, member_args, 2.5),
    CollectionSet("intset", "sets, 10 integers", b"SADD", b"SCARD", b"iset", 10, integer_args,
                  2.5),
    CollectionSet("zset", "zsets, 10 members", b"ZADD", b"ZCARD", b"zset", 10, zset_args, 2.5),
    CollectionSet("list", "lists, 10 elements", b"RPUSH", b"LLEN", b"list", 10, member_args,
                  2.5),
    CollectionSet("hash100", "hashes, 100 fields", b"HSET", b"HLEN", b"bighash", 100,
                  partial(hash_args, fields=100, name=b"f:%02d"), keys_per=0.1),
    CollectionSet("zset100", "zsets, 100 members", b"ZADD", b"ZCARD", b"bigzset", 100,
                  partial(zset_args, members=100, name=b"m:%02d"), keys_per=0.1),
)
COLLECTIONS_BY_NAME: dict[str, CollectionSet] = {spec.name: spec for spec in COLLECTION_SETS}
DEFAULT_COLLECTIONS: tuple[str, ...] = ("hash", "set", "intset", "zset", "list")


@dataclass
class CollectionLoadResult:
    """What a collection load asked for and what the server says it holds afterwards."""

    keys: int
    elements_per_key: int
    errors: int
    first_error: str | None
    seconds: float
    dbsize: int
    length_total: int
    length_min: int
    length_max: int
    encoding: str | None
    #: keys the server held before this load (earlier data sets, with ``--quick``)
    keys_before: int = 0

    @property
    def verified(self) -> bool:
        """Every command added all its elements, and DBSIZE and the lengths add up to exactly
        what was sent."""
        return (self.errors == 0 and self.dbsize == self.keys_before + self.keys
                and self.length_total == self.keys * self.elements_per_key
                and self.length_min == self.length_max == self.elements_per_key)


def _length_totals(port: int, command: bytes, key: Callable[[int], bytes],
                   keys: int) -> tuple[int, int, int]:
    """(sum, min, max) of ``command`` (HLEN, ZCARD...) over every key we loaded, pipelined."""
    batches = ((b"".join(encode_command(command, key(i))
                         for i in range(start, min(keys, start + LOAD_BATCH))),
                min(keys, start + LOAD_BATCH) - start) for start in range(0, keys, LOAD_BATCH))
    counts = [int(line[1:]) if line[:1] == b":" else -1
              for lines in pipeline(port, batches) for line in lines]
    return sum(counts), min(counts), max(counts)


def collection_batches(spec: CollectionSet, keys: int) -> Iterator[tuple[bytes, int]]:
    """The load of ``spec`` as (RESP, commands) batches of about COLLECTION_BATCH_ELEMENTS
    elements; the scores' generator is seeded here, so every server gets the same bytes."""
    rng = random.Random(ZSET_SEED)
    per_batch = max(1, COLLECTION_BATCH_ELEMENTS // spec.elements)
    for start in range(0, keys, per_batch):
        stop = min(keys, start + per_batch)
        yield b"".join(spec.encode(i, rng) for i in range(start, stop)), stop - start


def load_collection(port: int, spec: CollectionSet, keys: int) -> CollectionLoadResult:
    """``keys`` commands of ``spec``, pipelined; then DBSIZE, every key's length and OBJECT
    ENCODING of the first key, so that memory is divided by what was really stored."""
    keys_before = int(call(port, "DBSIZE"))
    errors, first_error, seconds = send_pipelined(port, collection_batches(spec, keys),
                                                  b":%d" % spec.elements)
    dbsize = int(call(port, "DBSIZE"))
    total, smallest, largest = _length_totals(port, spec.length_command, spec.key, keys)
    encoding = None
    with contextlib.suppress(RespError):
        encoding = call(port, "OBJECT", "ENCODING", spec.key(0).decode())
    return CollectionLoadResult(keys, spec.elements, errors, first_error, round(seconds, 3),
                                dbsize, total, smallest, largest, encoding, keys_before)


def prepare_custom_keys(port: int) -> dict[str, Any]:
    """Fill the keys the custom tests work on, the same way on every server.

    ``leaderboard`` gets every member ZINCRBY can pick (``member:%012d`` below ``-r``, integer
    points), so ZINCRBY always updates an existing player and ZRANGE reads the top of a full
    board rather than of whatever the earlier runs happened to add; ``bitmap`` gets its full
    size (BITMAP_BITS bits, 12,500 bytes) with a seeded half of its bits set, so BITCOUNT
    counts the same bytes however many SETBITs ran.  Returns what the server holds afterwards.
    """
    def leaderboard() -> Iterator[tuple[bytes, int]]:
        for start in range(0, RANDOM_KEYS, LOAD_BATCH):
            pairs = [arg for i in range(start, min(RANDOM_KEYS, start + LOAD_BATCH))
                     for arg in (b"%d" % (i * 7919 % 1_000_000), b"member:%012d" % i)]
            yield encode_command(b"ZADD", b"leaderboard", *pairs), 1

    bits = sorted(random.Random(ZSET_SEED).sample(range(BITMAP_BITS), BITMAP_SET_BITS))
    bits.append(BITMAP_BITS - 1)  # the bitmap's full size, set or not
    bitmap = ((b"".join(encode_command(b"SETBIT", b"bitmap", b"%d" % bit, b"1")
                        for bit in bits[start:start + LOAD_BATCH]),
               len(bits[start:start + LOAD_BATCH])) for start in range(0, len(bits), LOAD_BATCH))
    zadd_errors = sum(line[:1] == b"-" for lines in pipeline(port, leaderboard()) for line in lines)
    setbit_errors = sum(line[:1] == b"-" for lines in pipeline(port, bitmap) for line in lines)
    return {"leaderboard_zcard": call(port, "ZCARD", "leaderboard"),
            "bitmap_bytes": call(port, "STRLEN", "bitmap"),
            "bitmap_bitcount": call(port, "BITCOUNT", "bitmap"),
            "errors": zadd_errors + setbit_errors}


# --------------------------------------------------------------------------------------------
# redis-benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class BenchRun:
    """One redis-benchmark invocation: one server, one configuration, several tests."""

    config: str
    clients: int
    pipeline: int
    requests: int
    tests: list[str]
    command: list[str]
    seconds: float = 0.0
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    stderr: str = ""
    error: str | None = None
    #: which pass over the servers this run belongs to (``--rounds``), from 1.
    round: int = 1
    #: the server's CPU time over the run (:func:`cpu_delta`), when it was sampled.
    cpu: dict[str, Any] | None = None


def parse_csv(text: str) -> dict[str, dict[str, float]]:
    """redis-benchmark 7 ``--csv``: a header row, then one row per test, keyed by its label."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return {row["test"]: {key: float(value) for key, value in row.items() if key != "test"}
            for row in rows}


def _benchmark_command(port: int, config: BenchConfig, requests: int) -> list[str]:
    return ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(requests),
            "-r", str(RANDOM_KEYS), "-c", str(config.clients), "-P", str(config.pipeline), "--csv"]


def run_benchmark(port: int, tests: list[str], config: BenchConfig, requests: int) -> BenchRun:
    """The ``-t`` tests in one invocation (redis-benchmark runs them in its own order)."""
    command = _benchmark_command(port, config, requests) + ["-t", ",".join(tests)]
    return _execute(BenchRun(config.name, config.clients, config.pipeline, requests, tests,
                             command))


def run_custom(port: int, test: CustomTest, config: BenchConfig, requests: int) -> BenchRun:
    """One custom command line: redis-benchmark takes only one per invocation."""
    command = _benchmark_command(port, config, requests) + list(test.argv)
    return _execute(BenchRun(config.name, config.clients, config.pipeline, requests,
                             [test.name], command))


def measure_cpu(server: Server, bench: Callable[[], BenchRun]) -> BenchRun:
    """Run ``bench`` between two samples of the server's CPU time and keep the difference in
    ``run.cpu``, per command: redis-benchmark sends ``-n`` requests per test.

    The samples are taken right before redis-benchmark starts and right after it exited, so
    they include its connection set-up and its CONFIG GETs (a handful of commands) and
    whatever the server does by itself meanwhile (its timers), for Redis as for shardis.
    """
    before = sample_cpu(server.proc.pid)
    run = bench()
    run.cpu = cpu_delta(before, sample_cpu(server.proc.pid), run.requests * len(run.tests))
    return run


def _execute(run: BenchRun) -> BenchRun:
    """Run ``run.command`` and fill in its CSV rows, stderr, duration and error, if any."""
    command = run.command
    begin = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.error = f"redis-benchmark did not finish within {BENCH_TIMEOUT_S:.0f}s"
        return run
    finally:
        run.seconds = round(time.monotonic() - begin, 3)
    run.stderr = done.stderr.strip()
    if done.returncode != 0:
        run.error = f"redis-benchmark exited with code {done.returncode}"
    run.results = parse_csv(done.stdout)
    return run


# --------------------------------------------------------------------------------------------
# One server's part of the run
# --------------------------------------------------------------------------------------------


@dataclass
class ServerResult:
    label: str
    workers: int | None
    supported: dict[str, bool] = field(default_factory=dict)
    runs: list[BenchRun] = field(default_factory=list)
    #: the strings pass (:func:`measure_strings`): memory idle, loaded and settled, the load
    strings: dict[str, Any] | None = None
    #: collection data set name -> :func:`measure_collection` on a fresh instance
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    custom_keys: dict[str, Any] | None = None
    error: str | None = None


def benchmark_server(server: Server, base_requests: int, result: ServerResult,
                     round_number: int = 1) -> None:
    """Probe which tests the server can run, fill the custom tests' keys, then run every
    configuration back to back: each ``-t`` test, in redis-benchmark's order, then each custom
    test, every one in an invocation of its own with the server's CPU time sampled around
    it."""
    result.supported = supported_commands(server.port, sorted(set(TEST_COMMAND.values())))
    tests = [name for name in BENCHMARK_ORDER if result.supported[TEST_COMMAND[name]]]
    customs = [test for test in CUSTOM_TESTS if result.supported[TEST_COMMAND[test.name]]]
    if customs:
        keys = result.custom_keys = prepare_custom_keys(server.port)
        print(f"  {server.label:<10} filled: leaderboard {keys['leaderboard_zcard']:,} members, "
              f"bitmap {keys['bitmap_bytes']:,} bytes with {keys['bitmap_bitcount']:,} bits set"
              + (f" ({keys['errors']} error replies)" if keys["errors"] else ""), flush=True)
    for config in CONFIGS:
        requests = config.requests(base_requests)
        print(f"  {server.label:<10} {config.name:<12} -n {requests:<7} "
              f"{','.join(tests + [test.name for test in customs])}", flush=True)
        for name in tests:
            _record(result, measure_cpu(server, partial(run_benchmark, server.port, [name],
                                                        config, requests)), round_number)
        for test in customs:
            _record(result, measure_cpu(server, partial(run_custom, server.port, test, config,
                                                        requests)), round_number)


def _record(result: ServerResult, run: BenchRun, round_number: int) -> None:
    """Keep a run as soon as it is done (an interrupt must not lose it) and say if it failed."""
    run.round = round_number
    result.runs.append(run)
    if run.error:
        print(f"    {run.error}: {run.stderr[-500:]}", file=sys.stderr)


def _per_unit(idle: TreeMemory, loaded: TreeMemory, count: int) -> dict[str, float | None]:
    """Memory growth per key or element, by the RSS sum and by distinct resident pages."""
    def per(before: int | None, after: int | None) -> float | None:
        return None if count <= 0 or before is None or after is None else (after - before) / count

    return {"rss": per(idle.rss_bytes, loaded.rss_bytes),
            "unique": per(idle.unique_bytes, loaded.unique_bytes)}


def _idle_sample(server: Server) -> TreeMemory:
    """The fresh server's memory, once whatever it does right after answering its first PING
    has had IDLE_WAIT_S to finish."""
    time.sleep(IDLE_WAIT_S)
    return sample_tree(server.proc.pid)


def measure_strings(server: Server, pipe_file: Path, keys: int,
                    settle_s: float) -> dict[str, Any]:
    """Idle memory, a timed ``redis-cli --pipe`` of ``keys`` SETs, memory right after it and
    again after ``settle_s`` seconds of idleness (buffers that grew during the load and were
    or were not given back)."""
    idle = _idle_sample(server)
    load = pipe_load(server.port, pipe_file, keys)
    loaded = sample_tree(server.proc.pid)
    time.sleep(settle_s)
    settled = sample_tree(server.proc.pid)
    return {"idle": asdict(idle), "loaded": asdict(loaded), "settled": asdict(settled),
            "settle_s": settle_s, "load": asdict(load) | {"verified": load.verified},
            "bytes_per_key": _per_unit(idle, loaded, load.dbsize)}


def _load_and_measure(server: Server, spec: CollectionSet, keys: int,
                      idle: TreeMemory) -> tuple[dict[str, Any], TreeMemory]:
    """The pipelined load of ``spec`` and the memory after it: the growth from ``idle`` per
    element actually stored (the sum of the lengths), so a short load cannot pass for a
    small footprint.  Returns the measurement and the memory loaded."""
    load = load_collection(server.port, spec, keys)
    loaded = sample_tree(server.proc.pid)
    return {"idle": asdict(idle), "loaded": asdict(loaded),
            "load": asdict(load) | {"verified": load.verified},
            "bytes_per_element": _per_unit(idle, loaded, load.length_total)}, loaded


def measure_collection(server: Server, spec: CollectionSet, keys: int) -> dict[str, Any]:
    """Idle memory of the fresh server, then ``spec``'s load and its growth per element."""
    return _load_and_measure(server, spec, keys, _idle_sample(server))[0]


def measure_collections_together(server: Server,
                                 loads: list[tuple[CollectionSet, int]]) -> dict[str, Any]:
    """``--quick``'s shortcut: every data set into the same fresh server, one after another,
    each measured from the sample that ended the previous one (one server start instead of
    one per data set; the data sets' key prefixes differ).  Returns name -> measurement."""
    before = _idle_sample(server)
    measured = {}
    for spec, keys in loads:
        measured[spec.name], before = _load_and_measure(server, spec, keys, before)
    return measured


Plan = list[tuple[str, Any, tuple[Any, ...], int | None]]


#: shardis gets Redis's REDIS_NO_PERSISTENCE too (its AOF is off by default, its save rules
#: are Redis's defaults): otherwise a save rule fires a BGSAVE in the middle of a benchmark or
#: a load (forked children in the tree being measured) and every stop saves the data set.
SHARDIS_NO_PERSISTENCE: tuple[str, ...] = ("--save", "")


def server_plan(worker_counts: list[int]) -> Plan:
    """(label, start function, its arguments, workers) for redis first, then each shardis."""
    plan: Plan = [("redis", start_redis, (), None)]
    plan += [(f"shardis/{n}", start_shardis, (n, SHARDIS_NO_PERSISTENCE), n)
             for n in worker_counts]
    return plan


def run_all(args: argparse.Namespace, results: list[ServerResult]) -> None:
    """Throughput for every server first (back to back, so they see the same machine), then
    memory on fresh instances; either part may be skipped."""
    plan = server_plan(args.workers)
    results.extend(ServerResult(label, workers) for label, _, _, workers in plan)
    if not args.memory_only:
        run_throughput(args, plan, results)
    if not args.skip_memory:
        run_memory(args, plan, results)


def run_throughput(args: argparse.Namespace, plan: Plan, results: list[ServerResult]) -> None:
    """Every server in turn, ``--rounds`` times: redis-benchmark's tests, CPU sampled."""
    print(f"throughput: {len(plan)} servers x {len(CONFIGS)} configurations"
          + (f", {args.rounds} rounds" if args.rounds > 1 else ""), flush=True)
    for round_number in range(1, args.rounds + 1):
        if args.rounds > 1:
            print(f" round {round_number} of {args.rounds}", flush=True)
        for (label, start, start_args, _), result in zip(plan, results):
            try:
                with running(start, *start_args) as server:
                    benchmark_server(server, args.requests, result, round_number)
            except (RuntimeError, OSError, RespError) as exc:
                result.error = str(exc)
                print(f"  {label}: {exc}", file=sys.stderr)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / (1 << 20):.1f}"


def _strings_summary(mem: dict[str, Any]) -> str:
    load = mem["load"]
    return (f"{load['dbsize']:,} keys in {load['seconds']:.2f}s; RSS {_mib(mem['idle']['rss_bytes'])}"
            f" -> {_mib(mem['loaded']['rss_bytes'])} MiB, unique {_mib(mem['idle']['unique_bytes'])}"
            f" -> {_mib(mem['loaded']['unique_bytes'])} MiB"
            + ("" if load["verified"] else f" (NOT verified: {load['output'][-200:]!r})"))


def _collection_summary(mem: dict[str, Any]) -> str:
    load = mem["load"]
    keys = load["dbsize"] - load.get("keys_before", 0)
    return (f"{keys:,} keys, {load['length_total']:,} elements, {load['encoding']}, "
            f"in {load['seconds']:.2f}s" + ("" if load["verified"] else " (NOT what was sent)"))


def run_memory(args: argparse.Namespace, plan: Plan, results: list[ServerResult]) -> None:
    """The strings pass (idle, ``redis-cli --pipe``, settled), then each collection data set,
    every one on a fresh instance of each server."""
    with tempfile.TemporaryDirectory(prefix="bench-pipe-") as tmp:
        path = Path(tmp) / "strings.resp"
        size = write_pipe_file(path, args.memory_keys)
        print(f"memory: idle, then {args.memory_keys:,} SETs ({size / (1 << 20):.0f} MiB of RESP)"
              f" through redis-cli --pipe, then {args.settle:g}s idle, on a fresh instance of "
              "each server", flush=True)
        fresh_pass(plan, results,
                   partial(measure_strings, pipe_file=path, keys=args.memory_keys,
                           settle_s=args.settle),
                   lambda result, mem: setattr(result, "strings", mem), _strings_summary)
    loads = [(COLLECTIONS_BY_NAME[name], COLLECTIONS_BY_NAME[name].keys_for(args.collection_keys))
             for name in args.collections]
    if args.quick and loads:
        print(f"collection memory (--quick: all into one fresh instance of each server, one "
              f"after another): {', '.join(f'{spec.name} {keys:,} keys' for spec, keys in loads)}",
              flush=True)
        fresh_pass(plan, results, partial(measure_collections_together, loads=loads),
                   partial(_store_collections, names=[spec.name for spec, _ in loads]),
                   lambda measured: "; ".join(f"{name}: {_collection_summary(mem)}"
                                              for name, mem in measured.items()))
        return
    for spec, keys in loads:
        print(f"collection memory: {spec.label}: {keys:,} keys x {spec.elements} "
              f"({keys * spec.elements:,} elements, {spec.command.decode()}) on a fresh "
              "instance of each server", flush=True)
        fresh_pass(plan, results, partial(measure_collection, spec=spec, keys=keys),
                   partial(_store_collections, names=[spec.name]), _collection_summary)


def _store_collections(result: ServerResult, measured: dict[str, Any], names: list[str]) -> None:
    """Keep one data set's measurement (``names`` has one name), several (name -> each), or
    the error that stopped them (then recorded for each of ``names``)."""
    if "error" in measured:
        result.collections.update({name: measured for name in names})
    elif len(names) == 1 and names[0] not in measured:
        result.collections[names[0]] = measured
    else:
        result.collections.update(measured)


def fresh_pass(plan: Plan, results: list[ServerResult],
               measure: Callable[[Server], dict[str, Any]],
               store: Callable[[ServerResult, dict[str, Any]], None],
               summary: Callable[[dict[str, Any]], str]) -> None:
    """Run ``measure`` on a fresh instance of each server (one at a time) and ``store`` what
    it returns (or the error) in the server's result: memory must not include an earlier
    test's data."""
    for (label, start, start_args, _), result in zip(plan, results):
        try:
            with running(start, *start_args) as server:
                mem = measure(server)
            store(result, mem)
            print(f"  {label:<10} {summary(mem)}", flush=True)
        except (RuntimeError, OSError, RespError) as exc:
            store(result, {"error": str(exc)})
            print(f"  {label}: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Report: table and JSON
# --------------------------------------------------------------------------------------------


def _run_for(result: ServerResult, config: str, test: str | None = None) -> BenchRun | None:
    """The run of ``config`` that included ``test`` (any run of ``config`` if None)."""
    return next((run for run in result.runs
                 if run.config == config and (test is None or test in run.tests)), None)


def _cell(result: ServerResult, config: str, test: str) -> str | dict[str, float]:
    """The numbers for one test, or why there are none: "n/a" (the server lacks the command),
    "err" (the server or the benchmark failed) or "-" (not run: the run was interrupted)."""
    if result.supported and not result.supported.get(TEST_COMMAND[test], False):
        return "n/a"
    label = ALL_TESTS[test]
    rounds = [run.results[label] for run in result.runs
              if run.config == config and test in run.tests and label in run.results]
    if not rounds:
        return "err" if result.error or _run_for(result, config, test) else "-"
    # With --rounds, each number is its median over the rounds: one slow phase of a shared
    # machine then moves no ratio.
    return {key: statistics.median(numbers[key] for numbers in rounds) for key in rounds[0]}


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "-"


@dataclass(frozen=True)
class Target:
    """A bound on a shardis / redis ratio: ``>= goal`` (throughput) or ``<= goal`` (latency,
    memory, time).  A ratio equal to the goal meets it."""

    comparison: str
    goal: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.goal if self.comparison == ">=" else ratio <= self.goal

    def __str__(self) -> str:
        return f"{self.comparison} {self.goal:g}x"


#: Issue #19's targets ("performance round two"), for shardis at TARGET_WORKERS workers:
#: per configuration, the redis-benchmark figure compared and its bound, for every test.
THROUGHPUT_TARGETS: dict[str, tuple[str, Target]] = {
    "-c 50 -P 16": ("rps", Target(">=", 0.4)),
    "-c 50 -P 1": ("rps", Target(">=", 0.55)),
    "-c 1 -P 1": ("p50_latency_ms", Target("<=", 4.0)),
}
#: Total resident memory (distinct pages, idle included) after the strings load.
STRINGS_MEMORY_TARGET = Target("<=", 2.0)
#: The wall time of ``redis-cli --pipe`` of the strings data set.
PIPE_TIME_TARGET = Target("<=", 3.0)


def target_for(config: str, test: str) -> tuple[str, Target] | None:
    """(metric, target) that the issue asks of shardis at 3 workers, if any (the same for
    every test of a configuration)."""
    return THROUGHPUT_TARGETS.get(config)


def _target_status(ratio: float, target: Target) -> str:
    return f"{'ok' if target.met(ratio) else 'MISS'} ({target.comparison}{target.goal:g})"


def _server_cells(result: ServerResult, base: str | dict[str, float], config: str, test: str,
                  is_base: bool) -> list[str]:
    """ops/s, p50, p99, each followed by its ratio to redis; then the target check at 3
    workers.  Latency ratios above 1 and throughput ratios below 1 mean slower than redis."""
    cell = _cell(result, config, test)
    if isinstance(cell, str):
        return [cell]
    row = []
    for key in ("rps", "p50_latency_ms", "p99_latency_ms"):
        row.append(f"{cell[key]:,.0f}" if key == "rps" else f"{cell[key]:.3f}")
        row.append("" if is_base else _ratio(cell[key], base[key]) if isinstance(base, dict)
                   else "-")
    target = target_for(config, test)
    if result.workers == TARGET_WORKERS and target and isinstance(base, dict):
        metric, bound = target
        row.append(_target_status(cell[metric] / base[metric], bound) if base[metric] else "-")
    return row


def _collapse_unsupported(group: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """One "shardis/1,2,4  n/a" line instead of one per worker count for a missing command."""
    missing = [label for label, cells in group[1:] if cells == ["n/a"]]
    if len(missing) < 2:
        return group
    kept = [(label, cells) for label, cells in group if cells != ["n/a"]]
    counts = ",".join(label.split("/", 1)[1] for label in missing)
    return kept + [(f"shardis/{counts}", ["n/a"])]


def _grouped_rows(results: list[ServerResult], cell: Any, server_cells: Any) -> list[list[str]]:
    """One group of rows per test and configuration, a row per server (the first is the
    baseline ``cell`` gives, the others' ``server_cells`` compare with it): the throughput
    and CPU tables' shared layout."""
    rows = []
    for config in CONFIGS:
        if not any(_run_for(result, config.name) for result in results):
            continue  # interrupted before this configuration
        for test in ALL_TESTS:
            base = cell(results[0], config.name, test)
            group = [(result.label,
                      server_cells(result, base, config.name, test, result is results[0]))
                     for result in results]
            for i, (label, cells) in enumerate(_collapse_unsupported(group)):
                rows.append([TEST_LABELS[test] if i == 0 else "", config.name if i == 0 else "",
                             label, *cells])
    return rows


def _throughput_rows(results: list[ServerResult]) -> list[list[str]]:
    return _grouped_rows(results, _cell, _server_cells)


def _cpu_cell(result: ServerResult, config: str, test: str) -> str | dict[str, Any]:
    """The server's CPU per command for one test, or why there is none (as :func:`_cell`).

    With --rounds every figure is its median over the rounds (the ticks too, so the warning
    about coarse figures speaks of a typical round); ``changed`` says whether a process
    appeared or vanished during any of them (its CPU is then not counted).
    """
    if result.supported and not result.supported.get(TEST_COMMAND[test], False):
        return "n/a"
    label = ALL_TESTS[test]
    rounds = [run.cpu for run in result.runs if run.config == config and test in run.tests
              and label in run.results and run.cpu]
    if not rounds:
        return "err" if result.error or _run_for(result, config, test) else "-"
    return {
        "us_per_command": {role: statistics.median(cpu["us_per_command"][role] for cpu in rounds)
                           for role in rounds[0]["us_per_command"]},
        "ticks": {role: statistics.median(cpu["ticks"][role] for cpu in rounds)
                  for role in rounds[0]["ticks"]},
        "changed": any(cpu["appeared"] or cpu["vanished"] for cpu in rounds),
        "rounds": len(rounds),
    }


def _us(cell: dict[str, Any], role: str) -> str:
    """Microseconds per command, marked ``*`` when it rests on fewer than CPU_MIN_TICKS."""
    coarse = cell["ticks"][role] < CPU_MIN_TICKS
    return f"{cell['us_per_command'][role]:.2f}" + ("*" if coarse else "")


def _cpu_server_cells(result: ServerResult, base: str | dict[str, Any], config: str,
                      test: str, is_base: bool) -> list[str]:
    """main process (redis-server or the router) and its ratio to redis-server; the workers'
    sum; the total and its ratio to redis-server's total; a note if processes came or went."""
    cell = _cpu_cell(result, config, test)
    if isinstance(cell, str):
        return [cell]
    us = cell["us_per_command"]
    base_us = base["us_per_command"] if isinstance(base, dict) else None
    ratios = (["", ""] if is_base else ["-", "-"] if base_us is None
              else [_ratio(us["main"], base_us["total"]), _ratio(us["total"], base_us["total"])])
    workers = "" if result.workers is None else _us(cell, "children")
    note = "processes came or went" if cell["changed"] else ""
    return [_us(cell, "main"), ratios[0], workers, _us(cell, "total"), ratios[1], note]


def _cpu_rows(results: list[ServerResult]) -> list[list[str]]:
    """The CPU table: one group of rows per test and configuration, like the throughput's."""
    return _grouped_rows(results, _cpu_cell, _cpu_server_cells)


def cpu_table(results: list[ServerResult], rounds: int = 1) -> str:
    """The "CPU us/command" table with its legend and, when some figures are too coarse to
    trust, a warning that says how many and what to do about it."""
    header = ["CPU us/command", "config", "server", "main", "/redis", "workers", "total",
              "/redis", "note"]
    rows = _cpu_rows(results)
    legend = ("CPU us/command: utime+stime from /proc/PID/stat over each redis-benchmark run, "
              "divided by its commands;\nmain = redis-server, or shardis's router (the `up` "
              "process); workers = sum over shardis's workers; total = both;\n/redis = divided "
              "by redis-server's; only processes alive at both ends of a run are counted"
              + (f"; each figure is the median of {rounds} rounds" if rounds > 1 else ""))
    parts = [legend, format_table(header, rows, 3)]
    coarse = sum(value.endswith("*") for row in rows for value in row)
    if coarse:
        parts.append(f"warning: {coarse} figures marked * rest on fewer than {CPU_MIN_TICKS} "
                     f"clock ticks ({1000 / CLOCK_TICKS:g} ms each) of CPU in a run: too coarse "
                     "to compare; use a larger --requests")
    return "\n".join(parts)


def cpu_summary(results: list[ServerResult]) -> dict[str, Any]:
    """The CPU per command that the table shows (medians over rounds), for the JSON:
    server label -> configuration -> test -> figures."""
    return {result.label: {config.name: {test: cell for test in ALL_TESTS
                                         if isinstance(cell := _cpu_cell(result, config.name,
                                                                         test), dict)}
                           for config in CONFIGS}
            for result in results}


def _resident(tree: dict[str, Any]) -> int | None:
    """What the memory targets are stated on: distinct resident pages, or the RSS sum when
    the pages could not be told apart (not root)."""
    return tree.get("unique_bytes") or tree.get("rss_bytes")


def _per(per_unit: dict[str, float | None]) -> float | None:
    """Bytes per key or element by distinct pages, or by RSS when pages are unreadable."""
    return per_unit["unique"] if per_unit.get("unique") is not None else per_unit.get("rss")


def _div(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def _fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def _bytes(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _measured(mem: dict[str, Any] | None) -> bool:
    return bool(mem) and "error" not in mem


def _idle_rows(results: list[ServerResult]) -> list[list[str]]:
    """Per server, each process's RSS and the pages only it maps, then the sums: RSS of all
    processes and their distinct pages, each with its ratio to Redis's."""
    base = (results[0].strings or {}).get("idle") if _measured(results[0].strings) else None
    rows = []
    for result in results:
        if not _measured(result.strings):
            rows.append([result.label, "err" if result.strings else "-"])
            continue
        idle = result.strings["idle"]  # type: ignore[index]
        for i, proc in enumerate(idle["processes"]):
            rows.append([result.label if i == 0 else "", proc["role"], _mib(proc["rss_bytes"]),
                         _mib(proc["own_bytes"])])
        owns = [proc["own_bytes"] for proc in idle["processes"]]
        if len(owns) > 1 and idle["unique_bytes"] is not None and None not in owns:
            rows.append(["", "shared", "", _mib(idle["unique_bytes"] - sum(owns))])
        ratios = (["", ""] if result is results[0] or base is None else
                  [_fmt_ratio(_div(idle["rss_bytes"], base["rss_bytes"])),
                   _fmt_ratio(_div(idle["unique_bytes"], base["unique_bytes"]))])
        rows.append(["", f"all {len(idle['processes'])}", _mib(idle["rss_bytes"]),
                     _mib(idle["unique_bytes"]), *ratios])
    return rows


def _strings_rows(results: list[ServerResult]) -> list[list[str]]:
    """The strings pass: the --pipe time, memory loaded (idle included), bytes per key, each
    against Redis, and the targets for the shardis row at TARGET_WORKERS."""
    redis = results[0].strings if _measured(results[0].strings) else None
    rows = []
    for result in results:
        mem = result.strings
        if not _measured(mem):
            rows.append([result.label, "err" if mem else "-"])
            continue
        assert mem is not None
        load, loaded, per_key = mem["load"], mem["loaded"], mem["bytes_per_key"]
        row = [result.label, f"{load['dbsize']:,}", f"{load['seconds']:.2f}", "",
               _mib(loaded["rss_bytes"]), _mib(loaded["unique_bytes"]),
               _bytes(per_key["rss"]), _bytes(per_key["unique"]), "", "", "", ""]
        if redis is not None and result is not results[0]:
            row[3] = _fmt_ratio(_div(load["seconds"], redis["load"]["seconds"]))
            row[8] = _fmt_ratio(_div(_per(per_key), _per(redis["bytes_per_key"])))
            row[9] = _fmt_ratio(_div(loaded["rss_bytes"], redis["loaded"]["rss_bytes"]))
            row[10] = _fmt_ratio(_div(_resident(loaded), _resident(redis["loaded"])))
            if result.workers == TARGET_WORKERS:
                row[11] = _statuses((_div(_resident(loaded), _resident(redis["loaded"])),
                                     STRINGS_MEMORY_TARGET, "mem"),
                                    (_div(load["seconds"], redis["load"]["seconds"]),
                                     PIPE_TIME_TARGET, "time"))
        rows.append(row + ["ok" if load["verified"] else "MISMATCH"])
    return rows


def _statuses(*checks: tuple[float | None, Target, str]) -> str:
    """``mem ok (<=2) time MISS (<=3)``: several targets in one cell."""
    return " ".join(f"{name} {_target_status(ratio, target)}" for ratio, target, name in checks
                    if ratio is not None)


def _settle_rows(results: list[ServerResult]) -> list[list[str]]:
    """Memory right after the strings load and after the idle wait: the main process
    (redis-server, the router) alone, then all processes."""
    rows = []
    for result in results:
        mem = result.strings
        if not _measured(mem):
            continue
        assert mem is not None
        loaded, settled = mem["loaded"], mem["settled"]
        main = [next((proc["rss_bytes"] for proc in tree["processes"]
                      if not proc["role"].startswith("worker ")), None)
                for tree in (loaded, settled)]
        rows.append([result.label, _mib(main[0]), _mib(main[1]), _mib(loaded["rss_bytes"]),
                     _mib(settled["rss_bytes"]), _mib(loaded["unique_bytes"]),
                     _mib(settled["unique_bytes"])])
    return rows


def _collection_rows(results: list[ServerResult], collections: list[str]) -> list[list[str]]:
    """Per data set and server: what was stored, its encoding, bytes per element by RSS and by
    distinct pages against Redis's, the target check and the load check."""
    rows = []
    for name in collections:
        spec = COLLECTIONS_BY_NAME[name]
        redis = results[0].collections.get(name)
        redis = redis if _measured(redis) else None
        for i, result in enumerate(results):
            first = spec.label if i == 0 else ""
            mem = result.collections.get(name)
            if not _measured(mem):
                rows.append([first, result.label, "err" if mem else "-"])
                continue
            assert mem is not None
            load, per = mem["load"], mem["bytes_per_element"]
            row = [first, result.label, f"{load['dbsize'] - load.get('keys_before', 0):,}",
                   f"{load['length_total']:,}",
                   str(load["encoding"] or "?"), f"{load['seconds']:.2f}", _bytes(per["rss"]),
                   "", _bytes(per["unique"]), "", ""]
            if redis is not None and result is not results[0]:
                base = redis["bytes_per_element"]
                row[7] = _fmt_ratio(_div(per["rss"], base["rss"]))
                row[9] = _fmt_ratio(_div(per["unique"], base["unique"]))
                ratio = _div(_per(per), _per(base))
                if result.workers == TARGET_WORKERS and spec.target and ratio is not None:
                    row[10] = _target_status(ratio, Target("<=", spec.target))
            rows.append(row + ["ok" if load["verified"] else
                               f"MISMATCH ({load['errors']} bad replies, "
                               f"{spec.length_command.decode()} {load['length_min']}.."
                               f"{load['length_max']})"])
    return rows


def memory_tables(results: list[ServerResult], memory_keys: int, settle_s: float,
                  collections: list[str]) -> list[str]:
    """The memory part of the report: idle, strings, settle, collections, with legends."""
    together = any(mem.get("load", {}).get("keys_before") for result in results
                   for mem in result.collections.values())
    parts = []
    if any(_measured(result.strings) for result in results):
        parts += [
            "idle memory of a fresh server (MiB): RSS per process; unique = pages only that "
            "process maps; shared = pages\nseveral of them map (the interpreter's, the "
            "libraries'); all = RSS sum, and distinct pages (unique + shared)",
            format_table(["idle", "process", "RSS", "unique", "RSS /redis", "unique /redis"],
                         _idle_rows(results), 2),
            f"strings: {memory_keys:,} x SET key:%012d <{MEMORY_VALUE_SIZE} bytes> through "
            "`redis-cli --pipe` (s = its wall time); RSS and unique (distinct pages) MiB loaded,"
            "\nidle included; B/key = growth / DBSIZE; the targets: mem = unique / redis "
            f"{STRINGS_MEMORY_TARGET}, time = --pipe s / redis {PIPE_TIME_TARGET}",
            format_table(["strings", "keys", "pipe s", "/redis", "RSS MiB", "unique MiB",
                          "B/key RSS", "B/key uniq", "/redis", "RSS /redis", "unique /redis",
                          f"target@{TARGET_WORKERS}w", "load check"],
                         _strings_rows(results), 1),
            f"after the strings load, then after {settle_s:g}s idle (MiB): main = redis-server "
            "or the router alone; all = every process",
            format_table(["settle", "main loaded", "main idle", "RSS loaded", "RSS idle",
                          "unique loaded", "unique idle"], _settle_rows(results), 1),
        ]
    if collections and any(_measured(result.collections.get(name)) for result in results
                           for name in collections):
        parts += [
            ("collections (--quick: all in one fresh server, one after another)" if together
             else "collections: each data set on a fresh server")
            + "; keys = DBSIZE growth, elements = sum of the lengths (HLEN, SCARD, ZCARD, "
            "LLEN);\nencoding = OBJECT ENCODING of the first "
            "key; B/el = memory growth / elements, by RSS sum and by distinct pages (the "
            f"target's,\n{Target('<=', 2.5)} of Redis's for the issue's data sets)",
            format_table(["collection", "server", "keys", "elements", "encoding", "load s",
                          "B/el RSS", "/redis", "B/el uniq", "/redis", f"target@{TARGET_WORKERS}w",
                          "load check"], _collection_rows(results, collections), 2),
        ]
    return parts


# --------------------------------------------------------------------------------------------
# The summary: every target of issue #19 on one shardis, met or missed
# --------------------------------------------------------------------------------------------


@dataclass
class SummaryLine:
    """One line of the summary: a workload, shardis's and Redis's figures (text, with their
    unit), their ratio and the target, if the issue sets one."""

    workload: str
    shardis: str
    redis: str
    ratio: float | None
    target: Target | None = None

    @property
    def status(self) -> str:
        """``met``, ``missed``, or ``-`` (no target, or nothing measured)."""
        if self.target is None or self.ratio is None:
            return "-"
        return "met" if self.target.met(self.ratio) else "missed"


def summary_server(results: list[ServerResult]) -> ServerResult | None:
    """The shardis the summary speaks of: the one with TARGET_WORKERS workers, else the last."""
    shardis = [result for result in results[1:] if result.workers is not None]
    return next((result for result in shardis if result.workers == TARGET_WORKERS),
                shardis[-1] if shardis else None)


def _geomean(values: list[float]) -> float:
    """Geometric mean of ratios; 0 if one is 0 (a test that got nothing through)."""
    return 0.0 if min(values) <= 0 else statistics.geometric_mean(values)


def _checked(label: str, *measured: dict[str, Any]) -> str:
    """``label``, flagged when a load it rests on did not store exactly what was sent."""
    return label if all(mem["load"]["verified"] for mem in measured) else (
        f"{label} (load check FAILED)")


def throughput_summary(redis: ServerResult, shardis: ServerResult) -> list[SummaryLine]:
    """Per configuration: SET and GET, then every test that both servers ran, summed up as
    the geometric mean of the ratios (its line says how many tests meet the target and which
    is the worst)."""
    lines = []
    for config, (metric, target) in THROUGHPUT_TARGETS.items():
        unit = "ops/s" if metric == "rps" else "p50 ms"
        ratios: dict[str, float] = {}
        for test in ALL_TESTS:
            mine, base = _cell(shardis, config, test), _cell(redis, config, test)
            if isinstance(mine, dict) and isinstance(base, dict) and base[metric]:
                ratios[test] = mine[metric] / base[metric]
                if test in ("set", "get"):
                    fmt = "{:,.0f}" if metric == "rps" else "{:.3f}"
                    lines.append(SummaryLine(f"{TEST_LABELS[test]} `{config}`, {unit}",
                                             fmt.format(mine[metric]), fmt.format(base[metric]),
                                             ratios[test], target))
        if ratios:
            worst = (min if target.comparison == ">=" else max)(ratios, key=ratios.__getitem__)
            meeting = sum(target.met(ratio) for ratio in ratios.values())
            lines.append(SummaryLine(
                f"all {len(ratios)} tests `{config}`, {unit}, geometric mean ({meeting} of "
                f"{len(ratios)} meet the target; worst {TEST_LABELS[worst]} "
                f"{ratios[worst]:.2f}x)", "", "", _geomean(list(ratios.values())), target))
    return lines


def memory_summary(redis: ServerResult, shardis: ServerResult, memory_keys: int,
                   collections: list[str]) -> list[SummaryLine]:
    """Idle size, the strings data set (resident memory, bytes per key, --pipe time) and each
    collection data set's bytes per element, when measured on both servers."""
    lines = []
    if _measured(redis.strings) and _measured(shardis.strings):
        mine, base = shardis.strings, redis.strings
        assert mine is not None and base is not None
        keys = _checked(f"{memory_keys:,} keys", mine, base)
        for label, key in (("distinct pages", "unique_bytes"), ("RSS sum", "rss_bytes")):
            lines.append(SummaryLine(f"idle server, {label}, MiB", _mib(mine["idle"][key]),
                                     _mib(base["idle"][key]),
                                     _div(mine["idle"][key], base["idle"][key])))
        lines += [
            SummaryLine(f"{keys}: total resident memory (distinct pages, idle included), MiB",
                        _mib(_resident(mine["loaded"])), _mib(_resident(base["loaded"])),
                        _div(_resident(mine["loaded"]), _resident(base["loaded"])),
                        STRINGS_MEMORY_TARGET),
            SummaryLine(f"{keys}: RSS sum of all processes, MiB",
                        _mib(mine["loaded"]["rss_bytes"]), _mib(base["loaded"]["rss_bytes"]),
                        _div(mine["loaded"]["rss_bytes"], base["loaded"]["rss_bytes"])),
            SummaryLine(f"{keys}: bytes per key (growth)", _bytes(_per(mine["bytes_per_key"])),
                        _bytes(_per(base["bytes_per_key"])),
                        _div(_per(mine["bytes_per_key"]), _per(base["bytes_per_key"]))),
            SummaryLine(_checked(f"`redis-cli --pipe` of {memory_keys:,} SETs, seconds",
                                 mine, base),
                        f"{mine['load']['seconds']:.2f}", f"{base['load']['seconds']:.2f}",
                        _div(mine["load"]["seconds"], base["load"]["seconds"]),
                        PIPE_TIME_TARGET),
        ]
    for name in collections:
        spec = COLLECTIONS_BY_NAME[name]
        mine, base = shardis.collections.get(name), redis.collections.get(name)
        if _measured(mine) and _measured(base):
            assert mine is not None and base is not None
            mine_per, base_per = _per(mine["bytes_per_element"]), _per(base["bytes_per_element"])
            lines.append(SummaryLine(_checked(
                f"{spec.label}: bytes per element ({mine['load']['encoding']} / "
                f"{base['load']['encoding']})", mine, base), _bytes(mine_per), _bytes(base_per),
                _div(mine_per, base_per), Target("<=", spec.target) if spec.target else None))
    return lines


def build_summary(results: list[ServerResult], memory_keys: int | None,
                  collections: list[str]) -> tuple[ServerResult | None, list[SummaryLine]]:
    """The summary's shardis and its lines: throughput first (if run), then memory."""
    shardis = summary_server(results)
    if shardis is None:
        return None, []
    lines = throughput_summary(results[0], shardis)
    if memory_keys is not None:
        lines += memory_summary(results[0], shardis, memory_keys, collections)
    return shardis, lines


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_summary(label: str, lines: list[SummaryLine]) -> str:
    """The summary as a markdown table, "workload | shardis / redis | target | met?", to
    paste into the README's Performance section."""
    out = [f"| workload | {label} / redis | target | met? |", "|---|---|---|---|"]
    for line in lines:
        figures = f" ({line.shardis} / {line.redis})" if line.shardis or line.redis else ""
        ratio = "-" if line.ratio is None else f"{line.ratio:.2f}x"
        out.append(f"| {_markdown_cell(line.workload)} | {ratio}{figures} | "
                   f"{line.target or '-'} | {line.status} |")
    return "\n".join(out)


def custom_legend() -> str:
    """What the short labels of the custom tests stand for: the command lines that
    redis-benchmark ran (and labels its CSV rows with)."""
    width = max(len(test.label) for test in CUSTOM_TESTS)
    return "custom commands (redis-benchmark <options> <command line>):\n" + "\n".join(
        f"  {test.label:<{width}}  = {test.csv_label}" for test in CUSTOM_TESTS)


def format_table(header: list[str], rows: list[list[str]], labels: int) -> str:
    """Plain aligned columns, readable in a terminal and pasted in a PR: the first ``labels``
    columns and the last one (the target) left-aligned, the numbers right-aligned."""
    width = max([len(header), *(len(row) for row in rows)])
    cells = [row + [""] * (width - len(row)) for row in [header, *rows]]
    sizes = [max(len(row[i]) for row in cells) for i in range(width)]

    def line(row: list[str]) -> str:
        out = [value.ljust(size) if i < labels or i == width - 1 else value.rjust(size)
               for i, (value, size) in enumerate(zip(row, sizes))]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * size for size in sizes)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def render(results: list[ServerResult], memory_keys: int | None, settle_s: float = 0.0,
           collections: list[str] | None = None) -> str:
    """The report: throughput and latency per test and configuration, CPU per command, then
    memory (idle, strings, collections) when ``memory_keys`` is given, then the summary of
    the targets."""
    parts = []
    if any(result.runs for result in results):
        ratio = "/redis"
        header = ["test", "config", "server", "ops/s", ratio, "p50 ms", ratio, "p99 ms", ratio,
                  f"target@{TARGET_WORKERS}w"]
        parts += [format_table(header, _throughput_rows(results), 3), custom_legend()]
        rounds = max((run.round for result in results for run in result.runs), default=1)
        if rounds > 1:
            parts.insert(0, "throughput and latency: each number is the median of "
                         f"{rounds} rounds")
        if any(run.cpu for result in results for run in result.runs):
            parts.append(cpu_table(results, rounds))
    if memory_keys is not None:
        parts += memory_tables(results, memory_keys, settle_s, collections or [])
    shardis, lines = build_summary(results, memory_keys, collections or [])
    if shardis is not None and lines:
        note = ("" if shardis.workers == TARGET_WORKERS else
                f" (the targets are stated at {TARGET_WORKERS} workers)")
        parts.append(f"summary: issue #19's targets, {shardis.label}{note}; ratios are "
                     "shardis / redis, figures (shardis / redis) in brackets\n\n"
                     + markdown_summary(shardis.label, lines))
    return "\n\n".join(parts)


def redis_version() -> str:
    """``redis-server --version`` says ``Redis server v=7.0.15 sha=...``: keep the v= part."""
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip()


def shardis_version() -> str:
    """The version of this checkout's shardis, which is the one benchmarked."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import shardis

    return str(shardis.__version__)


def shardis_commit() -> str | None:
    """The checkout's commit (``+dirty`` when shardis/ has changes not committed): the version
    number does not move between the commits that a baseline is compared across; None
    outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--", "shardis") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_json(report: dict[str, Any], started: datetime, bench: str = "compare",
               indent: int = 2) -> Path:
    """``bench/results/<bench>-<UTC start>.json``, written whole or not at all."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{bench}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=indent) + "\n")
    tmp.replace(path)
    return path


#: The JSON's schema; bench/README.md says what each version added.
SCHEMA = 6


def build_report(args: argparse.Namespace, results: list[ServerResult], started: datetime,
                 load_before: tuple[float, float, float], complete: bool) -> dict[str, Any]:
    finished = datetime.now(timezone.utc)
    memory = not args.skip_memory
    shardis, lines = build_summary(results, args.memory_keys if memory else None,
                                   args.collections if memory else [])
    return {
        "schema": SCHEMA,
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
        "versions": {"redis_server": redis_version(), "shardis": shardis_version(),
                     "shardis_commit": shardis_commit()},
        "parameters": {
            "workers": args.workers,
            "quick": args.quick,
            "memory_only": args.memory_only,
            "base_requests": None if args.memory_only else args.requests,
            "rounds": args.rounds,
            "random_keys": RANDOM_KEYS,
            "configs": [asdict(config) | {"requests": config.requests(args.requests)}
                        for config in CONFIGS],
            "tests": ALL_TESTS,
            "custom_tests": [test.name for test in CUSTOM_TESTS],
            "custom_keys": {"leaderboard_members": RANDOM_KEYS, "bitmap_bits": BITMAP_BITS,
                            "bitmap_set_bits": BITMAP_SET_BITS},
            "memory_keys": args.memory_keys if memory else None,
            "memory_value_size": MEMORY_VALUE_SIZE,
            "idle_wait_s": IDLE_WAIT_S,
            "settle_s": args.settle if memory else None,
            "collection_keys": args.collection_keys if memory else None,
            "collections": {name: {"label": spec.label, "command": spec.command.decode(),
                                   "keys": spec.keys_for(args.collection_keys),
                                   "elements_per_key": spec.elements, "target": spec.target}
                            for name in (args.collections if memory else [])
                            for spec in [COLLECTIONS_BY_NAME[name]]},
            "score_seed": ZSET_SEED,
        },
        "targets": {
            "workers": TARGET_WORKERS,
            "throughput": {config: {"metric": metric, "comparison": target.comparison,
                                    "goal": target.goal}
                           for config, (metric, target) in THROUGHPUT_TARGETS.items()},
            "strings_resident": asdict(STRINGS_MEMORY_TARGET),
            "pipe_seconds": asdict(PIPE_TIME_TARGET),
        },
        "servers": [asdict(result) for result in results],
        "cpu_us_per_command": cpu_summary(results),
        "summary": {"server": shardis.label if shardis else None,
                    "lines": [asdict(line) | {"status": line.status} for line in lines]},
    }


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _worker_list(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2,4, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts must be positive integers")
    return counts


def _collection_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in COLLECTIONS_BY_NAME]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown data set(s) {', '.join(unknown)}; choose among "
            f"{', '.join(COLLECTIONS_BY_NAME)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Benchmark shardis against a real redis-server on this machine "
                    "(throughput, latency, CPU per command, memory) and check issue #19's "
                    "targets; see bench/README.md.")
    parser.add_argument("--workers", type=_worker_list, default=[1, 2, 4],
                        help="comma-separated shardis worker counts (default 1,2,4)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: -n based on {QUICK_REQUESTS}, {QUICK_MEMORY_KEYS:,} "
                             f"string keys and {QUICK_COLLECTION_KEYS:,} keys per collection "
                             f"for memory, {QUICK_SETTLE_S:g}s settle")
    parser.add_argument("--requests", type=int, metavar="N",
                        help=f"base -n per test (default {DEFAULT_REQUESTS}); "
                             + ", ".join(f"'{c.name}' uses N x {c.scale:g}" for c in CONFIGS))
    parser.add_argument("--memory-keys", type=int, metavar="N",
                        help="string keys to load with redis-cli --pipe for the memory test "
                             f"(default {DEFAULT_MEMORY_KEYS:,})")
    parser.add_argument("--collection-keys", type=int, metavar="N",
                        help="keys of 10 elements per collection data set (default "
                             f"{DEFAULT_COLLECTION_KEYS:,}; hash100 and zset100 use N/10 keys "
                             "of 100)")
    parser.add_argument("--collections", type=_collection_list,
                        default=list(DEFAULT_COLLECTIONS), metavar="LIST",
                        help="comma-separated collection data sets, among "
                             f"{','.join(COLLECTIONS_BY_NAME)} (default "
                             f"{','.join(DEFAULT_COLLECTIONS)}); empty: none")
    parser.add_argument("--settle", type=float, metavar="S",
                        help="seconds of idleness after the strings load before memory is "
                             f"sampled again (default {DEFAULT_SETTLE_S:g})")
    skip = parser.add_mutually_exclusive_group()
    skip.add_argument("--skip-memory", action="store_true",
                      help="skip every memory test (idle, strings, collections)")
    skip.add_argument("--memory-only", action="store_true",
                      help="skip the throughput and CPU tests: memory (and the --pipe time) "
                           "alone")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="run the throughput tests N times over all servers, in turn, and "
                             "report each number's median (default 1)")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write the summary's markdown table to FILE (it is always "
                             "printed last)")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.requests is None:
        args.requests = QUICK_REQUESTS if quick else DEFAULT_REQUESTS
    if args.memory_keys is None:
        args.memory_keys = QUICK_MEMORY_KEYS if quick else DEFAULT_MEMORY_KEYS
    if args.collection_keys is None:
        args.collection_keys = QUICK_COLLECTION_KEYS if quick else DEFAULT_COLLECTION_KEYS
    if args.settle is None:
        args.settle = QUICK_SETTLE_S if quick else DEFAULT_SETTLE_S
    if min(args.requests, args.memory_keys, args.collection_keys, args.rounds) < 1:
        parser.error("--requests, --rounds, --memory-keys and --collection-keys must be "
                     "positive")
    if args.settle < 0:
        parser.error("--settle must not be negative")
    return args


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM behaves like Ctrl-C, so that the finally blocks stop our servers."""
    raise KeyboardInterrupt


def run_reported(run_all: Any, report: Any) -> int:
    """What every benchmark's main does: check the tools, run (Ctrl-C and SIGTERM stop the
    servers and keep partial results), then ``report(results, started, load_before,
    complete)``, which prints the table and returns the JSON path."""
    missing = [tool for tool in ("redis-server", "redis-benchmark", "redis-cli")
               if not shutil.which(tool)]
    if missing:
        print(f"missing {', '.join(missing)} (apt-get install redis-server redis-tools)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(timezone.utc)
    load_before = os.getloadavg()
    results: list[Any] = []
    complete = False
    try:
        run_all(results)
        complete = True
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped; partial results below", file=sys.stderr)
    if results:
        print()
        path = report(results, started, load_before, complete)
        print(f"\nraw results: {path.relative_to(REPO_ROOT)}  "
              f"(load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}, "
              f"{os.cpu_count()} cores: compare ratios, not absolute numbers)")
    return 0 if complete else 130


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    memory = not args.skip_memory

    def report(results: list, started: datetime, load_before: tuple, complete: bool) -> Path:
        print(render(results, args.memory_keys if memory else None, args.settle,
                     args.collections if memory else []))
        data = build_report(args, results, started, load_before, complete)
        shardis, lines = build_summary(results, args.memory_keys if memory else None,
                                       args.collections if memory else [])
        if args.markdown and shardis is not None:
            args.markdown.write_text(markdown_summary(shardis.label, lines) + "\n")
        return write_json(data, started)

    return run_reported(lambda results: run_all(args, results), report)


if __name__ == "__main__":
    raise SystemExit(main())
