"""A bounded fuzz run against a live shardis: hostile clients must not hurt anyone else.

One shardis (router + 3 workers) of its own is started for this test.  For ~18 s, fuzz
connections (8 at a time, at most 300) send malformed, truncated, giant-declared, random and mutated input,
vanish mid-request or mid-bulk, or pipeline a lot without reading, while a control client runs
SET/GET of unique values and checks every reply.  Then: every process is still the one that
was started, the control client saw no error, no wrong value and no command slower than
:data:`STALL` seconds, and the router's memory is back near its warmed-up baseline.

The run is reproducible: ``SHARDIS_FUZZ_SEED`` (printed) picks every random choice, though
thread scheduling still varies.  Latency is reported, not asserted (beyond the stall bound).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.resp_client import RawClient, encode_command
from tests.servers import Server, start_shardis

SEED = int(os.environ.get("SHARDIS_FUZZ_SEED", "20261206"))
#: The fuzz run's budget: new connections open until this many seconds or connections.
FUZZ_SECONDS = 18.0
MAX_CONNECTIONS = 300
CONCURRENT = 8
#: Wall-clock budget of one fuzz connection (it stops sending when it runs out).
PER_CONNECTION = 2.0
#: Any single control command slower than this is a stall: a failure.
STALL = 5.0
#: Router RSS allowed above the warmed-up baseline once every fuzz connection is gone.  The run
#: pushes ~1 GB through the router (10 MB pieces of bulks, floods); a retained buffer of even one
#: declared 100 MB bulk, or the 16 GB list that ``*2000000000`` once mapped, is far above this.
RSS_MARGIN = 64 * 1024 * 1024


# --- processes --------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc (children of every thread)."""
    found = [pid]
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                children = [int(c) for c in fh.read().split()]
        except OSError:
            continue
        for child in children:
            found += process_tree(child)
    return found


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[Server]:
    """A shardis of its own: what this test does to it must not reach other tests."""
    server = start_shardis(workers=3)
    try:
        yield server
    finally:
        server.stop()


# --- the control client -----------------------------------------------------------------------


class Control(threading.Thread):
    """SET then GET of unique values, every reply checked, until told to stop."""

    def __init__(self, port: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.latencies: list[float] = []

    def run(self) -> None:
        try:
            client = RawClient(self.port, timeout=STALL)
        except OSError as exc:
            self.failures.append(f"connect: {exc!r}")
            return
        with client.sock:
            index = 0
            while not self.stop.is_set() and not self.failures:
                index += 1
                self.round_trip(client, index)

    def round_trip(self, client: RawClient, index: int) -> None:
        key = b"control:{%d}:%d" % (index % 64, index)
        value = self.rng.randbytes(self.rng.choice([1, 30, 300, 3000]))
        for args, expected in (
            ((b"SET", key, value), b"+OK\r\n"),
            ((b"GET", key), b"$%d\r\n%b\r\n" % (len(value), value)),
        ):
            started = time.monotonic()
            try:
                reply = client.call(*args)
            except Exception as exc:  # a timeout (stall), a closed connection...
                self.failures.append(f"{args[0]!r} {key!r}: {exc!r}")
                return
            self.latencies.append(time.monotonic() - started)
            if reply != expected:
                self.failures.append(f"{args[0]!r} {key!r}: {reply[:200]!r}")
                return


# --- fuzz connections -------------------------------------------------------------------------

_VALID = [
    [b"SET", b"fz:a", b"1"], [b"GET", b"fz:a"], [b"INCR", b"fz:n"], [b"MSET", b"fz:b", b"x",
    b"fz:c", b"y"], [b"MGET", b"fz:a", b"fz:b", b"fz:c"], [b"DEL", b"fz:zz"], [b"PING"],
    [b"LPUSH", b"fz:l", b"v"], [b"HSET", b"fz:h", b"f", b"v"], [b"ECHO", b"\r\n\x00"],
]
_GIANT = [
    b"*2000000000\r\n", b"*100000000\r\n", b"*2147483647\r\n", b"*1048576\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000000\r\n", b"*2\r\n$3\r\nGET\r\n$536870912\r\n",
    b"*-9999999999999999999\r\n", b"$2000000000\r\n", b"*1\r\n*2000000000\r\n",
]


def valid_pipeline(rng: random.Random, count: int) -> bytes:
    return b"".join(encode_command(*rng.choice(_VALID)) for _ in range(count))


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        if not buf:
            break
        at = rng.randrange(len(buf))
        roll = rng.random()
        if roll < 0.4:
            buf[at] = rng.randrange(256)
        elif roll < 0.6:
            del buf[at : at + rng.randrange(1, 10)]
        elif roll < 0.8:
            buf[at:at] = rng.choice(_GIANT + [b"\r\n", b"*", b"$", b'"', b"\x00"])
        else:
            del buf[at:]
    return bytes(buf)


def big_request(size: int) -> bytes:
    return encode_command(b"SET", b"fz:big", b"b" * size)


def scenario_random_bytes(rng: random.Random) -> list[bytes]:
    return [rng.randbytes(rng.randrange(1, 4096)) for _ in range(rng.randrange(1, 4))]


def scenario_mutated(rng: random.Random) -> list[bytes]:
    return [mutate(rng, valid_pipeline(rng, rng.randrange(1, 50)))]


def scenario_giant(rng: random.Random) -> list[bytes]:
    giant = rng.choice(_GIANT)
    if rng.random() < 0.5:  # after a large request, in the read that completes it
        request = big_request(300_000)  # its first read must exceed 64 KB (loopback MSS)
        return [request[:200_000], request[200_000:] + giant]
    return [giant, rng.randbytes(rng.randrange(0, 2000))]


def scenario_vanish_mid_bulk(rng: random.Random) -> list[bytes]:
    declared = rng.choice([10_000_000, 100_000_000, 500_000_000])
    head = b"*3\r\n$3\r\nSET\r\n$6\r\nfz:big\r\n$%d\r\n" % declared
    return [head] + [b"q" * 1_000_000 for _ in range(rng.randrange(1, 10))]


def scenario_vanish_mid_request(rng: random.Random) -> list[bytes]:
    data = valid_pipeline(rng, rng.randrange(1, 200)) + big_request(rng.randrange(1, 300_000))
    return [data[: rng.randrange(1, len(data))]]


def scenario_flood_without_reading(rng: random.Random) -> list[bytes]:
    chunk = valid_pipeline(rng, 5_000)
    return [chunk] * rng.randrange(5, 15)


def scenario_inline(rng: random.Random) -> list[bytes]:
    lines = [b'SET fz:i "a\\x41 b"\r\n', b"PING\r\n", b'ECHO "unbalanced\r\n', b"GET 'x\r\n",
             b"  \r\n", b"x" * 70_000, b"MGET " + b"k " * 20_000 + b"\r\n"]
    return [b"".join(rng.choice(lines) for _ in range(rng.randrange(1, 6)))]


def scenario_byte_by_byte(rng: random.Random) -> list[bytes]:
    data = mutate(rng, valid_pipeline(rng, 3)) if rng.random() < 0.5 else valid_pipeline(rng, 3)
    return [data[i : i + 1] for i in range(len(data))]


SCENARIOS: list[Callable[[random.Random], list[bytes]]] = [
    scenario_random_bytes, scenario_mutated, scenario_giant, scenario_vanish_mid_bulk,
    scenario_vanish_mid_request, scenario_flood_without_reading, scenario_inline,
    scenario_byte_by_byte,
]


def fuzz_connection(port: int, seed: int) -> str:
    """One hostile connection; returns the scenario's name (for the report)."""
    rng = random.Random(seed)
    scenario = rng.choice(SCENARIOS)
    pieces = scenario(rng)
    reads = rng.random() < 0.5  # half the clients never read a reply
    deadline = time.monotonic() + PER_CONNECTION
    sock = socket.create_connection(("127.0.0.1", port), timeout=PER_CONNECTION)
    try:
        sock.settimeout(0.5)
        for piece in pieces:
            if time.monotonic() > deadline:
                break
            try:
                sock.sendall(piece)
            except OSError:
                break  # the server closed us (protocol error) or stopped reading: fine
            if len(pieces) < 20:  # let each piece be its own read, as the scenario means
                time.sleep(0.02)
            if reads:
                drain(sock)
        if reads:
            drain(sock, until=min(deadline, time.monotonic() + 0.3))
        # Vanish with a reset, or half the time close cleanly -- except a flooder: its clean
        # close leaves MBs of commands in flight that the router still runs (a known router
        # issue, reported with issue 12: it is not what this run measures).
        if rng.random() < 0.5 or scenario is scenario_flood_without_reading:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    return scenario.__name__


def drain(sock: socket.socket, until: float = 0.0) -> None:
    """Read whatever replies are there (until ``until``, or what is ready now)."""
    sock.settimeout(0.01)
    try:
        while True:
            if not sock.recv(1 << 20):
                return
            if time.monotonic() > until:
                return
    except OSError:
        return
    finally:
        sock.settimeout(0.5)


# --- the test ---------------------------------------------------------------------------------


def warm_up(port: int) -> None:
    """Traffic like the fuzz run's, minus the hostility, so the baseline has warm arenas."""
    client = RawClient(port)
    with client.sock:
        for i in range(300):
            assert client.call(b"SET", b"warm:%d" % i, b"w" * (i * 100)) == b"+OK\r\n"
        for size in (1_000_000, 10_000_000):
            assert client.call(b"SET", b"warm:big", b"b" * size) == b"+OK\r\n"
            assert client.call(b"DEL", b"warm:big") == b":1\r\n"
        client.send_raw(valid_pipeline(random.Random(0), 5_000))
        for _ in range(5_000):
            client.read_reply()


def run_fuzz_connections(port: int, until: float) -> list[str]:
    """Fuzz connections, :data:`CONCURRENT` at a time, until ``until`` or the connection cap;
    connection ``i`` always gets the same seed, whichever thread runs it."""
    rng = random.Random(SEED)
    seeds = [rng.randrange(2**32) for _ in range(MAX_CONNECTIONS)]
    names: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while time.monotonic() < until:
            with lock:
                if len(names) >= MAX_CONNECTIONS:
                    return
                index = len(names)
                names.append("")
            names[index] = fuzz_connection(port, seeds[index])

    with ThreadPoolExecutor(CONCURRENT) as pool:
        for future in [pool.submit(worker) for _ in range(CONCURRENT)]:
            future.result()
    return names


def settled_rss(pid: int, limit: int, seconds: float) -> int:
    """The router's RSS once it is at or below ``limit``, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        current = rss(pid)
        if current <= limit or time.monotonic() > deadline:
            return current
        time.sleep(0.25)


def test_fuzz_clients_do_not_hurt_the_server_or_other_clients(fuzz_server: Server) -> None:
    print(f"\nfuzz seed {SEED} (set SHARDIS_FUZZ_SEED to repeat)")
    port, proc = fuzz_server.port, fuzz_server.proc
    warm_up(port)
    pids = process_tree(proc.pid)
    assert len(pids) == 4, f"expected the router and 3 workers, got {pids}"
    baseline = {pid: rss(pid) for pid in pids}

    control = Control(port, SEED)
    control.start()
    started = time.monotonic()
    names = run_fuzz_connections(port, until=started + FUZZ_SECONDS)
    fuzz_seconds = time.monotonic() - started
    peak = {pid: rss(pid) for pid in pids}
    after = settled_rss(proc.pid, baseline[proc.pid] + RSS_MARGIN, seconds=10)
    time.sleep(0.5)  # the control client keeps going while memory settles
    control.stop.set()
    control.join(timeout=2 * STALL)

    latencies = sorted(control.latencies)
    print(f"fuzz: {len(names)} connections in {fuzz_seconds:.1f}s: "
          + ", ".join(f"{n.removeprefix('scenario_')}={names.count(n)}" for n in sorted(set(names))))
    if latencies:
        print(f"control: {len(latencies)} commands, median {latencies[len(latencies) // 2]*1e3:.1f}"
              f" ms, p99 {latencies[int(len(latencies) * 0.99)]*1e3:.1f} ms,"
              f" max {latencies[-1]*1e3:.1f} ms")
    for pid in pids:
        role = "router" if pid == proc.pid else "worker"
        print(f"{role} {pid}: RSS baseline {baseline[pid] >> 20} MB, at end of fuzzing "
              f"{peak[pid] >> 20} MB" + (f", settled {after >> 20} MB" if pid == proc.pid else ""))

    assert proc.poll() is None, "the router died"
    assert process_tree(proc.pid) == pids, "a process died (the supervisor restarted it)"
    assert not control.is_alive(), "the control client is stuck"
    assert control.failures == [], control.failures
    assert latencies and latencies[-1] < STALL
    assert after <= baseline[proc.pid] + RSS_MARGIN, (
        f"router RSS {after >> 20} MB, baseline {baseline[proc.pid] >> 20} MB"
    )
    check = RawClient(port)
    with check.sock:
        assert check.call(b"PING") == b"+PONG\r\n"

