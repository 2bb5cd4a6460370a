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
* Memory is measured on a fresh instance of each server, after a fixed, known data set was
  loaded, so that the benchmark runs' leftovers do not blur it: once for a million small
  string keys, once (on yet another fresh instance) for a million small hash fields and once
  more for a million sorted-set members.
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
DEFAULT_MEMORY_KEYS = 1_000_000
QUICK_MEMORY_KEYS = 100_000
#: The memory data set mimics ``redis-benchmark -t set -d 16``: key:%012d -> 16 x 'x'.
MEMORY_VALUE_SIZE = 16
LOAD_BATCH = 1_000
#: The hash memory data set: hashes of 100 small fields (``f:00`` .. ``f:99``, 8-byte values),
#: the shape of a typical object-per-hash schema.  100 fields and 8-byte values stay far below
#: Redis 7.0's ``hash-max-listpack-entries`` (512) and ``-value`` (64), so Redis keeps every
#: hash in its compact listpack encoding, which is what it does for such hashes in practice.
DEFAULT_MEMORY_HASHES = 10_000
QUICK_MEMORY_HASHES = 1_000
HASH_FIELDS = 100
HASH_VALUE_SIZE = 8
#: HSETs (of HASH_FIELDS fields each) per pipelined batch: 10,000 fields, about 240 KB.
HASH_LOAD_BATCH = 100
#: The zset memory data set: many small sorted sets (a per-user or per-item top-100), members
#: ``m:00`` .. ``m:99`` with seeded pseudo-random float scores.  100 members of 4 bytes stay
#: below Redis 7.0's ``zset-max-listpack-entries`` (128) and ``-value`` (64): listpack, as for
#: such zsets in production.  One huge zset (skiplist) is what the leaderboard tests time.
DEFAULT_MEMORY_ZSETS = 10_000
QUICK_MEMORY_ZSETS = 1_000
ZSET_MEMBERS = 100
ZSET_LOAD_BATCH = 100
ZSET_SEED = 7
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


def unique_resident_bytes(pids: list[int]) -> int | None:
    """Bytes of the distinct physical pages the processes map (pages in RAM, each once).

    Reads each mapping's entries in /proc/PID/pagemap; without CAP_SYS_ADMIN the frame numbers
    read as 0 and pages cannot be told apart: then None.
    """
    frames: set[int] = set()
    try:
        for pid in pids:
            with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
                for line in maps:
                    if line.rstrip().endswith("[vsyscall]"):
                        continue
                    start, end = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
                    pagemap.seek(start // _PAGE * 8)
                    entries = pagemap.read((end - start) // _PAGE * 8)
                    for (entry,) in struct.iter_unpack("<Q", entries):
                        if entry & _PRESENT:
                            frames.add(entry & _PFN_MASK)
    except OSError:
        return None
    if frames and frames <= {0}:
        return None  # not allowed to see frame numbers
    return len(frames) * _PAGE


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


@dataclass
class HashLoadResult:
    """What the hash load asked for and what the server says it holds afterwards."""

    hashes: int
    fields_per_hash: int
    errors: int
    first_error: str | None
    seconds: float
    dbsize: int
    hlen_total: int
    hlen_min: int
    hlen_max: int
    encoding: str | None

    @property
    def verified(self) -> bool:
        """Every HSET succeeded and DBSIZE and the HLENs add up to exactly what was sent."""
        return (self.errors == 0 and self.dbsize == self.hashes
                and self.hlen_total == self.hashes * self.fields_per_hash
                and self.hlen_min == self.hlen_max == self.fields_per_hash)


def hash_key(index: int) -> bytes:
    return b"hash:%08d" % index


def _hset(index: int) -> bytes:
    """HSET hash:<index> f:00 v<7 digits> ... f:99 v<7 digits>: distinct 8-byte values that are
    not numbers (Redis's listpack would store a number as a small integer)."""
    base = index * HASH_FIELDS
    pairs = [arg for n in range(HASH_FIELDS)
             for arg in (b"f:%02d" % n, b"v%0*d" % (HASH_VALUE_SIZE - 1, (base + n) % 10_000_000))]
    return encode_command(b"HSET", hash_key(index), *pairs)


def _length_totals(port: int, command: bytes, key: Callable[[int], bytes],
                   keys: int) -> tuple[int, int, int]:
    """(sum, min, max) of ``command`` (HLEN, ZCARD) over every key we loaded, pipelined."""
    batches = ((b"".join(encode_command(command, key(i))
                         for i in range(start, min(keys, start + LOAD_BATCH))),
                min(keys, start + LOAD_BATCH) - start) for start in range(0, keys, LOAD_BATCH))
    counts = [int(line[1:]) if line[:1] == b":" else -1
              for lines in pipeline(port, batches) for line in lines]
    return sum(counts), min(counts), max(counts)


def _hlen_totals(port: int, hashes: int) -> tuple[int, int, int]:
    """(sum, min, max) of HLEN over every hash we loaded, pipelined."""
    return _length_totals(port, b"HLEN", hash_key, hashes)


def load_hashes(port: int, hashes: int) -> HashLoadResult:
    """``hashes`` x HSET of HASH_FIELDS fields each, pipelined; then DBSIZE, every HLEN and
    OBJECT ENCODING of the first hash, so that the memory per field is divided by what was
    really stored (and in which encoding)."""
    batches = ((b"".join(_hset(i) for i in range(start, min(hashes, start + HASH_LOAD_BATCH))),
                min(hashes, start + HASH_LOAD_BATCH) - start)
               for start in range(0, hashes, HASH_LOAD_BATCH))
    errors, first_error, seconds = send_pipelined(port, batches, b":%d" % HASH_FIELDS)
    dbsize = int(call(port, "DBSIZE"))
    total, smallest, largest = _hlen_totals(port, hashes)
    encoding = None
    with contextlib.suppress(RespError):
        encoding = call(port, "OBJECT", "ENCODING", hash_key(0).decode())
    return HashLoadResult(hashes, HASH_FIELDS, errors, first_error, round(seconds, 3), dbsize,
                          total, smallest, largest, encoding)


@dataclass
class ZsetLoadResult:
    """What the zset load asked for and what the server says it holds afterwards."""

    zsets: int
    members_per_zset: int
    errors: int
    first_error: str | None
    seconds: float
    dbsize: int
    zcard_total: int
    zcard_min: int
    zcard_max: int
    encoding: str | None

    @property
    def verified(self) -> bool:
        """Every ZADD added all its members and DBSIZE and the ZCARDs add up to what was sent."""
        return (self.errors == 0 and self.dbsize == self.zsets
                and self.zcard_total == self.zsets * self.members_per_zset
                and self.zcard_min == self.zcard_max == self.members_per_zset)


def zset_key(index: int) -> bytes:
    return b"zset:%08d" % index


def _zadd_batch(start: int, stop: int, rng: random.Random) -> bytes:
    """ZADD zset:<i> s m:00 ... s m:99 for i in [start, stop): scores are seeded uniform floats
    in [0, 1000) with 4 decimals, so Redis stores each as a float's text, not a small int."""
    members = [b"m:%02d" % n for n in range(ZSET_MEMBERS)]
    commands = []
    for index in range(start, stop):
        pairs = [arg for member in members
                 for arg in (b"%.4f" % (rng.random() * 1000), member)]
        commands.append(encode_command(b"ZADD", zset_key(index), *pairs))
    return b"".join(commands)


def load_zsets(port: int, zsets: int) -> ZsetLoadResult:
    """``zsets`` x ZADD of ZSET_MEMBERS members each, pipelined ZSET_LOAD_BATCH at a time; then
    DBSIZE, every ZCARD and OBJECT ENCODING of the first zset, so that the memory per member is
    divided by what was really stored.  The seed makes both servers get the same scores."""
    rng = random.Random(ZSET_SEED)
    batches = ((_zadd_batch(start, min(zsets, start + ZSET_LOAD_BATCH), rng),
                min(zsets, start + ZSET_LOAD_BATCH) - start)
               for start in range(0, zsets, ZSET_LOAD_BATCH))
    errors, first_error, seconds = send_pipelined(port, batches, b":%d" % ZSET_MEMBERS)
    dbsize = int(call(port, "DBSIZE"))
    total, smallest, largest = _length_totals(port, b"ZCARD", zset_key, zsets)
    encoding = None
    with contextlib.suppress(RespError):
        encoding = call(port, "OBJECT", "ENCODING", zset_key(0).decode())
    return ZsetLoadResult(zsets, ZSET_MEMBERS, errors, first_error, round(seconds, 3), dbsize,
                          total, smallest, largest, encoding)


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
    memory: dict[str, Any] | None = None
    hash_memory: dict[str, Any] | None = None
    zset_memory: dict[str, Any] | None = None
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


def _memory_fields(empty: MemorySample, loaded: MemorySample) -> dict[str, Any]:
    return {
        "processes": len(loaded.pids),
        "rss_empty": empty.rss_bytes,
        "rss_loaded": loaded.rss_bytes,
        "pss_empty": empty.pss_bytes,
        "pss_loaded": loaded.pss_bytes,
        "unique_empty": empty.unique_bytes,
        "unique_loaded": loaded.unique_bytes,
    }


def measure_memory(server: Server, keys: int) -> dict[str, Any]:
    """RSS (and PSS) of the whole process tree, empty and after loading ``keys`` keys."""
    empty = sample_memory(server.proc.pid)
    load = load_keys(server.port, keys)
    loaded = sample_memory(server.proc.pid)
    return _memory_fields(empty, loaded) | {
        "load": asdict(load),
        "bytes_per_key": ((loaded.rss_bytes - empty.rss_bytes) / load.dbsize
                          if load.dbsize else None),
    }


def measure_hash_memory(server: Server, hashes: int) -> dict[str, Any]:
    """The same for ``hashes`` hashes of HASH_FIELDS small fields, per field actually stored
    (the sum of HLEN), so that a short load cannot pass for a small footprint."""
    empty = sample_memory(server.proc.pid)
    load = load_hashes(server.port, hashes)
    loaded = sample_memory(server.proc.pid)
    return _memory_fields(empty, loaded) | {
        "load": asdict(load) | {"verified": load.verified},
        "bytes_per_field": ((loaded.rss_bytes - empty.rss_bytes) / load.hlen_total
                            if load.hlen_total > 0 else None),
    }


def measure_zset_memory(server: Server, zsets: int) -> dict[str, Any]:
    """The same for ``zsets`` sorted sets of ZSET_MEMBERS members, per member actually stored
    (the sum of ZCARD)."""
    empty = sample_memory(server.proc.pid)
    load = load_zsets(server.port, zsets)
    loaded = sample_memory(server.proc.pid)
    return _memory_fields(empty, loaded) | {
        "load": asdict(load) | {"verified": load.verified},
        "bytes_per_member": ((loaded.rss_bytes - empty.rss_bytes) / load.zcard_total
                             if load.zcard_total > 0 else None),
    }


def server_plan(worker_counts: list[int]) -> list[tuple[str, Any, tuple[Any, ...], int | None]]:
    """(label, start function, its arguments, workers) for redis first, then each shardis."""
    plan: list[tuple[str, Any, tuple[Any, ...], int | None]] = [("redis", start_redis, (), None)]
    plan += [(f"shardis/{n}", start_shardis, (n,), n) for n in worker_counts]
    return plan


def run_all(args: argparse.Namespace, results: list[ServerResult]) -> None:
    """Throughput for every server first (back to back, so they see the same machine), then
    memory on fresh instances."""
    plan = server_plan(args.workers)
    print(f"throughput: {len(plan)} servers x {len(CONFIGS)} configurations"
          + (f", {args.rounds} rounds" if args.rounds > 1 else ""), flush=True)
    results.extend(ServerResult(label, workers) for label, _, _, workers in plan)
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
    if args.skip_memory:
        return
    print(f"memory: loading {args.memory_keys:,} keys into a fresh instance of each server",
          flush=True)
    fresh_pass(plan, results, "memory", lambda server: measure_memory(server, args.memory_keys),
               lambda mem: f"{mem['load']['dbsize']:,} keys in {mem['load']['seconds']:.1f}s")
    fields = args.memory_hashes * HASH_FIELDS
    print(f"hash memory: loading {args.memory_hashes:,} hashes x {HASH_FIELDS} fields "
          f"({fields:,} fields) into a fresh instance of each server", flush=True)
    fresh_pass(plan, results, "hash_memory",
               lambda server: measure_hash_memory(server, args.memory_hashes),
               lambda mem: (f"{mem['load']['dbsize']:,} hashes, {mem['load']['hlen_total']:,} "
                            f"fields in {mem['load']['seconds']:.1f}s"
                            + ("" if mem["load"]["verified"] else " (NOT what was sent)")))
    members = args.memory_zsets * ZSET_MEMBERS
    print(f"zset memory: loading {args.memory_zsets:,} zsets x {ZSET_MEMBERS} members "
          f"({members:,} members) into a fresh instance of each server", flush=True)
    fresh_pass(plan, results, "zset_memory",
               lambda server: measure_zset_memory(server, args.memory_zsets),
               lambda mem: (f"{mem['load']['dbsize']:,} zsets, {mem['load']['zcard_total']:,} "
                            f"members in {mem['load']['seconds']:.1f}s"
                            + ("" if mem["load"]["verified"] else " (NOT what was sent)")))


def fresh_pass(plan: list[tuple[str, Any, tuple[Any, ...], int | None]],
               results: list[ServerResult], attribute: str,
               measure: Callable[[Server], dict[str, Any]],
               summary: Callable[[dict[str, Any]], str]) -> None:
    """Run ``measure`` on a fresh instance of each server (one at a time) and keep what it
    returns in ``result.<attribute>``: memory must not include an earlier test's data."""
    for (label, start, start_args, _), result in zip(plan, results):
        try:
            with running(start, *start_args) as server:
                setattr(result, attribute, measure(server))
            print(f"  {label:<10} {summary(getattr(result, attribute))}", flush=True)
        except (RuntimeError, OSError, RespError) as exc:
            setattr(result, attribute, {"error": str(exc)})
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


def target_for(config: str, test: str) -> tuple[str, str, float] | None:
    """(metric, comparison, ratio) that the issue asks of shardis at 3 workers, if any."""
    if config == "-c 50 -P 16":
        return ("rps", ">=", 0.6 if test in ("set", "get") else 0.5)
    if config == "-c 50 -P 1":
        return ("rps", ">=", 0.7)
    if config == "-c 1 -P 1":
        return ("p50_latency_ms", "<=", 3.0)
    return None


def _target_status(ratio: float, target: tuple[str, str, float]) -> str:
    _, comparison, goal = target
    met = ratio >= goal if comparison == ">=" else ratio <= goal
    return f"{'ok' if met else 'MISS'} ({comparison}{goal:g})"


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
        row.append(_target_status(cell[target[0]] / base[target[0]], target))
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


def _resident(mem: dict[str, Any]) -> int:
    """What the memory target is stated on: distinct resident pages, or the RSS sum when the
    pages could not be told apart (not root)."""
    return mem.get("unique_loaded") or mem["rss_loaded"]


def _memory_rows(results: list[ServerResult]) -> list[list[str]]:
    redis = results[0].memory or {}
    rows = []
    for result in results:
        mem = result.memory or {}
        if "rss_loaded" not in mem:
            rows.append([result.label, "err" if mem else "-"])
            continue
        mib = 1 << 20
        unique = mem.get("unique_loaded")
        row = [result.label, str(mem["processes"]), f"{mem['load']['dbsize']:,}",
               f"{mem['rss_empty'] / mib:.1f}", f"{mem['rss_loaded'] / mib:.1f}",
               f"{mem['pss_loaded'] / mib:.1f}", f"{unique / mib:.1f}" if unique else "-",
               f"{mem['bytes_per_key']:.0f}" if mem["bytes_per_key"] else "-"]
        if result is results[0] or "rss_loaded" not in redis:
            row += ["", "", ""]
        else:
            row += [_ratio(mem["bytes_per_key"] or 0, redis["bytes_per_key"] or 0),
                    _ratio(mem["rss_loaded"], redis["rss_loaded"]),
                    _ratio(_resident(mem), _resident(redis))]
        if result.workers == TARGET_WORKERS and "rss_loaded" in redis:
            row.append(_target_status(_resident(mem) / _resident(redis), ("", "<=", 2.0)))
        rows.append(row)
    return rows


def _collection_memory_rows(results: list[ServerResult], attribute: str, length: str,
                            unit: str) -> list[list[str]]:
    """Like :func:`_memory_rows`, per element (``unit``: field, member) of the hashes or zsets
    in ``result.<attribute>``, with the load check in place of a target (the issues set none
    for them): ``ok`` when DBSIZE and the ``length``s (hlen, zcard) match what was sent."""
    redis = getattr(results[0], attribute) or {}
    per = f"bytes_per_{unit}"
    rows = []
    for result in results:
        mem = getattr(result, attribute) or {}
        if "rss_loaded" not in mem:
            rows.append([result.label, "err" if mem else "-"])
            continue
        mib, load = 1 << 20, mem["load"]
        row = [result.label, str(mem["processes"]), f"{load['dbsize']:,}",
               f"{load[f'{length}_total']:,}", str(load["encoding"] or "?"),
               f"{mem['rss_empty'] / mib:.1f}", f"{mem['rss_loaded'] / mib:.1f}",
               f"{mem['pss_loaded'] / mib:.1f}", f"{mem[per]:.1f}" if mem[per] else "-"]
        if result is results[0] or "rss_loaded" not in redis:
            row += ["", ""]
        else:
            row += [_ratio(mem[per] or 0, redis[per] or 0),
                    _ratio(mem["rss_loaded"], redis["rss_loaded"])]
        row.append("ok" if load["verified"] else
                   f"MISMATCH ({load['errors']} bad replies, {length.upper()} "
                   f"{load[f'{length}_min']}..{load[f'{length}_max']})")
        rows.append(row)
    return rows


def _hash_memory_rows(results: list[ServerResult]) -> list[list[str]]:
    return _collection_memory_rows(results, "hash_memory", "hlen", "field")


def _zset_memory_rows(results: list[ServerResult]) -> list[list[str]]:
    return _collection_memory_rows(results, "zset_memory", "zcard", "member")


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


def render(results: list[ServerResult], memory_keys: int | None,
           memory_hashes: int | None = None, memory_zsets: int | None = None) -> str:
    """The one table: throughput and latency per test and configuration, then memory for
    small keys, for small hash fields and for small sorted-set members."""
    ratio = "/redis"
    header = ["test", "config", "server", "ops/s", ratio, "p50 ms", ratio, "p99 ms", ratio,
              f"target@{TARGET_WORKERS}w"]
    parts = [format_table(header, _throughput_rows(results), 3), custom_legend()]
    rounds = max((run.round for result in results for run in result.runs), default=1)
    if rounds > 1:
        parts.insert(0, f"throughput and latency: each number is the median of {rounds} rounds")
    if any(run.cpu for result in results for run in result.runs):
        parts.append(cpu_table(results, rounds))
    if memory_keys is not None and any(result.memory for result in results):
        mem_header = ["memory", "procs", "keys", "RSS empty MiB", "RSS MiB", "PSS MiB",
                      "unique MiB", "bytes/key", ratio, f"RSS {ratio}", f"unique {ratio}",
                      f"target@{TARGET_WORKERS}w"]
        parts.append(f"memory: {memory_keys:,} keys of {MEMORY_VALUE_SIZE} bytes; bytes/key = "
                     "(RSS loaded - RSS empty) / DBSIZE; shardis = sum over all its processes;\n"
                     "unique = resident pages of all its processes, each counted once (RSS "
                     "counts shared library pages once per process): the target's measure")
        parts.append(format_table(mem_header, _memory_rows(results), 1))
    if memory_hashes is not None and any(result.hash_memory for result in results):
        hash_header = ["hash memory", "procs", "hashes", "fields", "encoding", "RSS empty MiB",
                       "RSS MiB", "PSS MiB", "bytes/field", ratio, f"RSS {ratio}", "load check"]
        parts.append(f"hash memory: {memory_hashes:,} hashes x {HASH_FIELDS} fields "
                     f"(f:NN -> {HASH_VALUE_SIZE}-byte values); hashes = DBSIZE, fields = sum "
                     "of HLEN;\nbytes/field = (RSS loaded - RSS empty) / fields; shardis = sum "
                     "over all its processes")
        parts.append(format_table(hash_header, _hash_memory_rows(results), 1))
    if memory_zsets is not None and any(result.zset_memory for result in results):
        zset_header = ["zset memory", "procs", "zsets", "members", "encoding", "RSS empty MiB",
                       "RSS MiB", "PSS MiB", "bytes/member", ratio, f"RSS {ratio}",
                       "load check"]
        parts.append(f"zset memory: {memory_zsets:,} zsets x {ZSET_MEMBERS} members (m:NN, "
                     "float scores); zsets = DBSIZE, members = sum of ZCARD;\nbytes/member = "
                     "(RSS loaded - RSS empty) / members; shardis = sum over all its processes")
        parts.append(format_table(zset_header, _zset_memory_rows(results), 1))
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


def write_json(report: dict[str, Any], started: datetime, bench: str = "compare",
               indent: int = 2) -> Path:
    """``bench/results/<bench>-<UTC start>.json``, written whole or not at all."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{bench}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=indent) + "\n")
    tmp.replace(path)
    return path


def build_report(args: argparse.Namespace, results: list[ServerResult], started: datetime,
                 load_before: tuple[float, float, float], complete: bool) -> dict[str, Any]:
    finished = datetime.now(timezone.utc)
    return {
        "schema": 5,
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
            "workers": args.workers,
            "quick": args.quick,
            "base_requests": args.requests,
            "rounds": args.rounds,
            "random_keys": RANDOM_KEYS,
            "configs": [asdict(config) | {"requests": config.requests(args.requests)}
                        for config in CONFIGS],
            "tests": ALL_TESTS,
            "custom_tests": [test.name for test in CUSTOM_TESTS],
            "custom_keys": {"leaderboard_members": RANDOM_KEYS, "bitmap_bits": BITMAP_BITS,
                            "bitmap_set_bits": BITMAP_SET_BITS},
            "memory_keys": None if args.skip_memory else args.memory_keys,
            "memory_value_size": MEMORY_VALUE_SIZE,
            "memory_hashes": None if args.skip_memory else args.memory_hashes,
            "memory_hash_fields": HASH_FIELDS,
            "memory_hash_value_size": HASH_VALUE_SIZE,
            "memory_zsets": None if args.skip_memory else args.memory_zsets,
            "memory_zset_members": ZSET_MEMBERS,
            "memory_zset_seed": ZSET_SEED,
        },
        "servers": [asdict(result) for result in results],
        "cpu_us_per_command": cpu_summary(results),
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Benchmark shardis against a real redis-server on this machine "
                    "(throughput, latency, CPU per command, memory); see bench/README.md.")
    parser.add_argument("--workers", type=_worker_list, default=[1, 2, 4],
                        help="comma-separated shardis worker counts (default 1,2,4)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: -n based on {QUICK_REQUESTS}, "
                             f"{QUICK_MEMORY_KEYS:,} keys, {QUICK_MEMORY_HASHES:,} hashes and "
                             f"{QUICK_MEMORY_ZSETS:,} zsets for memory")
    parser.add_argument("--requests", type=int, metavar="N",
                        help=f"base -n per test (default {DEFAULT_REQUESTS}); "
                             + ", ".join(f"'{c.name}' uses N x {c.scale:g}" for c in CONFIGS))
    parser.add_argument("--memory-keys", type=int, metavar="N",
                        help=f"keys to load for the memory test (default {DEFAULT_MEMORY_KEYS:,})")
    parser.add_argument("--memory-hashes", type=int, metavar="N",
                        help=f"hashes of {HASH_FIELDS} fields to load for the hash memory test "
                             f"(default {DEFAULT_MEMORY_HASHES:,})")
    parser.add_argument("--memory-zsets", type=int, metavar="N",
                        help=f"zsets of {ZSET_MEMBERS} members to load for the zset memory test "
                             f"(default {DEFAULT_MEMORY_ZSETS:,})")
    parser.add_argument("--skip-memory", action="store_true",
                        help="skip the three memory tests (keys, hashes and zsets)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="run the throughput tests N times over all servers, in turn, and "
                             "report each number's median (default 1)")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS
    if args.memory_keys is None:
        args.memory_keys = QUICK_MEMORY_KEYS if args.quick else DEFAULT_MEMORY_KEYS
    if args.memory_hashes is None:
        args.memory_hashes = QUICK_MEMORY_HASHES if args.quick else DEFAULT_MEMORY_HASHES
    if args.memory_zsets is None:
        args.memory_zsets = QUICK_MEMORY_ZSETS if args.quick else DEFAULT_MEMORY_ZSETS
    if min(args.requests, args.memory_keys, args.memory_hashes, args.memory_zsets,
           args.rounds) < 1:
        parser.error("--requests, --rounds, --memory-keys, --memory-hashes and --memory-zsets "
                     "must be positive")
    return args


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM behaves like Ctrl-C, so that the finally blocks stop our servers."""
    raise KeyboardInterrupt


def run_reported(run_all: Any, report: Any) -> int:
    """What every benchmark's main does: check the tools, run (Ctrl-C and SIGTERM stop the
    servers and keep partial results), then ``report(results, started, load_before,
    complete)``, which prints the table and returns the JSON path."""
    missing = [tool for tool in ("redis-server", "redis-benchmark") if not shutil.which(tool)]
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
        print(render(results, args.memory_keys if memory else None,
                     args.memory_hashes if memory else None,
                     args.memory_zsets if memory else None))
        return write_json(build_report(args, results, started, load_before, complete), started)

    return run_reported(lambda results: run_all(args, results), report)


if __name__ == "__main__":
    raise SystemExit(main())
