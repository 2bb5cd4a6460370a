"""Hosts on one machine: network namespaces joined by a bridge, for tests across a real
network stack (the recipe in the project's notes on real infrastructure).

A :class:`Topology` is one *run*: a switch namespace holding a bridge, and one namespace per
host, each joined to the bridge by a veth pair (``eth0`` in the host, ``v<tag><host>`` on the
bridge).  Hosts get TEST-NET-2 addresses (198.51.100.0/24); they exist only inside the run's
namespaces, so parallel runs (each with its own bridge) never see each other's traffic.
Cutting a host off is ``ip link set v... down`` on the bridge side: its own interface stays
up, its packets go nowhere, exactly like a pulled cable or a dead switch port.

How the test process talks to a host: it opens its sockets *inside* the host's namespace
(:func:`entered`: ``setns(2)`` on the calling thread only, for the ``socket()`` call, then
back).  A socket stays in the namespace it was created in, so the test's redis-py client
lives on a "client" host of the run and reaches the router over the bridge, and nothing is
configured in the machine's own namespace at all: no address, no route, no interface that
could collide with the machine's network or with another run.  (A veth with a host-side
address would need a subnet per run, and a route in the machine's table.)  Processes run
in a namespace with ``ip netns exec`` (it ``exec``s the command: the PID we get is the
process's own, and we stop it by that PID).

Names are unique per run: namespaces are ``shdnet-<pid>-<tag>-<host>`` (the pid of the
process that made them), interfaces ``v<tag><host>`` (15 characters at most).  Every
namespace, veth and process a run made goes when it is closed: :meth:`Topology.close` in a
``finally``, plus an ``atexit`` guard for an interpreter that exits without running it; and
a new run first removes what crashed runs left (:func:`sweep_stale`: namespaces of this
prefix whose maker is gone, or that are older than any run lasts).  A run killed outright
(SIGKILL, no ``finally``) leaves no process behind either: each gets SIGKILL when the test
process dies (``PR_SET_PDEATHSIG``).  Deleting a veth's namespace deletes the veth; a
process still inside a stale namespace (listed by ``ip netns pids``) was started there by a
run of this module, and is stopped first.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

PREFIX = "shdnet"
NETNS_DIR = Path("/run/netns")
SUBNET = "198.51.100"
#: a namespace of this prefix older than this is a leftover whatever its maker's pid says
#: (pids are reused): no run lives this long.
STALE_AFTER = 2 * 3600.0
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
IFNAMSIZ = 15
#: the nftables table of a one-way cut, in the host's own namespace.
NFT_TABLE = "shdnet_cut"

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """An ``ip`` command failed (its command line and stderr in the message)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip ARGS``; a failure raises :class:`NetnsError` saying what and why."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


@functools.cache
def unavailable() -> str | None:
    """Why namespaces cannot be used here (a skip reason), or None: they need root and
    iproute2, and a kernel/container that lets us add one (tried, then removed)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"{PREFIX}-{os.getpid()}-probe-{secrets.token_hex(2)}"
    try:
        ip("netns", "add", probe)
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    ip("netns", "del", probe, check=False)
    return None


@functools.cache
def nft_unavailable() -> str | None:
    """Why one-way cuts (:meth:`Topology.drop_sent`) cannot be made here, or None."""
    if shutil.which("nft") is None:
        return "nft (nftables) is not installed (apt-get install nftables)"
    return None


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def entered(netns: str) -> Iterator[None]:
    """The calling thread is in namespace ``netns`` inside the block (sockets made there
    stay there), and back in its own after it, also when the block raises."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / netns, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)  # failing here would leave the thread elsewhere: let it raise
    finally:
        os.close(own)


class NetnsConnection(redis.connection.Connection):
    """A redis-py connection whose socket is made in a namespace (``netns=`` in the pool's
    arguments): reconnects land there too."""

    def __init__(self, *args, netns: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.netns = netns

    def _connect(self):  # noqa: ANN202 - redis-py's own signature
        with entered(self.netns):
            return super()._connect()


@dataclass
class Host:
    """One "machine": its namespace, its address and its port on the bridge."""

    name: str
    netns: str
    veth: str
    address: str


@dataclass
class Topology:
    """One run's switch, hosts and processes; :meth:`close` removes them all."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    workdir: Path = field(init=False)
    made: list[str] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self.switch = self.netns_name("sw")
        atexit.register(self.close)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.netns_name('')}"))
        self._add_netns(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def netns_name(self, host: str) -> str:
        return f"{PREFIX}-{os.getpid()}-{self.tag}-{host}"

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self.made.append(name)

    def add_host(self, name: str, octet: int) -> Host:
        """A host ``name`` at 198.51.100.``octet``, plugged into the bridge and up."""
        veth = f"v{self.tag}{name}"
        if len(veth) > IFNAMSIZ:
            raise ValueError(f"host name {name!r} makes interface name {veth!r} too long")
        host = Host(name, self.netns_name(name), veth, f"{SUBNET}.{octet}")
        self._add_netns(host.netns)
        # Both ends are made in their namespaces: nothing ever appears in the machine's own.
        ip("link", "add", veth, "netns", self.switch, "type", "veth",
           "peer", "name", "eth0", "netns", host.netns)
        ip("-n", self.switch, "link", "set", veth, "master", "br0", "up")
        ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.netns, "link", "set", "lo", "up")
        ip("-n", host.netns, "link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    def spawn(self, host: str, argv: list[str], log: str) -> subprocess.Popen:
        """Run ``argv`` on ``host`` (its output in ``workdir/log``); stopped by :meth:`close`."""
        with open(self.workdir / log, "wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.hosts[host].netns, *argv],
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self.procs.append(proc)
        return proc

    def run(self, host: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """Run ``argv`` on ``host`` to completion (output captured)."""
        return subprocess.run(["ip", "netns", "exec", self.hosts[host].netns, *argv],
                              capture_output=True, text=True, timeout=timeout)

    def log(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def cut(self, host: str) -> None:
        """Unplug ``host``: its bridge port goes down, its packets go nowhere."""
        ip("-n", self.switch, "link", "set", self.hosts[host].veth, "down")

    def restore(self, host: str) -> None:
        """Plug ``host`` back in."""
        ip("-n", self.switch, "link", "set", self.hosts[host].veth, "up")

    def drop_sent(self, host: str, port: int) -> None:
        """A one-way cut: ``host`` still receives, but what it sends from TCP ``port``
        (replies, acknowledgements) is dropped as it leaves (nftables, in its namespace)."""
        rules = (f"table inet {NFT_TABLE} {{\n chain out {{\n"
                 "  type filter hook output priority 0; policy accept;\n"
                 f"  tcp sport {port} drop\n }}\n}}\n")
        result = subprocess.run(["ip", "netns", "exec", self.hosts[host].netns, "nft", "-f", "-"],
                                input=rules, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise NetnsError(f"nft on {host}: {result.stderr.strip()}")

    def stop_dropping(self, host: str) -> None:
        """Undo :meth:`drop_sent`."""
        result = self.run(host, ["nft", "delete", "table", "inet", NFT_TABLE])
        if result.returncode != 0:
            raise NetnsError(f"nft on {host}: {result.stderr.strip()}")

    def client(self, host: str, address: str, port: int, **kwargs) -> redis.Redis:
        """A redis-py client on ``host`` (its sockets made in that namespace)."""
        pool = redis.ConnectionPool(connection_class=NetnsConnection,
                                    netns=self.hosts[host].netns, host=address, port=port,
                                    **kwargs)
        return redis.Redis(connection_pool=pool)

    def close(self) -> None:
        """Stop every process (by PID), delete every namespace (their veths go with them)
        and the work dir; safe to call twice (``atexit`` calls it again)."""
        if self.closed:
            return
        self.closed = True
        for proc in self.procs:  # all asked at once, then waited for
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            _stop(proc)
        for name in reversed(self.made):
            _remove_netns(name)
        shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.close)


def _die_with_parent() -> None:
    """In the child before ``exec``: SIGKILL when the test process dies, however it dies
    (kept across ``ip netns exec``'s exec): a killed run leaves no server running."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _remove_netns(name: str) -> None:
    """Stop what still runs in namespace ``name`` (only a run of this module starts
    processes there), then delete it."""
    listed = ip("netns", "pids", name, check=False).stdout.split()
    for pid in map(int, listed):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    ip("netns", "del", name, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(now: float | None = None) -> list[str]:
    """Remove what crashed runs left: namespaces (and work dirs) of our prefix whose maker
    (the pid in the name) is gone, or that are older than :data:`STALE_AFTER`.  Returns the
    namespaces' names."""
    now = time.time() if now is None else now
    removed = []
    for entry in _entries(NETNS_DIR):
        if _stale(entry, now):
            _remove_netns(entry.name)
            removed.append(entry.name)
    for entry in _entries(Path(tempfile.gettempdir())):
        if entry.is_dir() and _stale(entry, now):
            shutil.rmtree(entry, ignore_errors=True)
    return removed


def _entries(directory: Path) -> list[Path]:
    """The entries of ``directory`` named like a run's (``shdnet-<pid>-<tag>-...``)."""
    if not directory.is_dir():
        return []
    return [entry for entry in directory.iterdir()
            if entry.name.startswith(f"{PREFIX}-") and entry.name.split("-")[1].isdigit()
            and len(entry.name.split("-")) >= 4]


def _stale(entry: Path, now: float) -> bool:
    maker = int(entry.name.split("-")[1])
    try:
        age = now - entry.stat().st_mtime
    except FileNotFoundError:
        return False
    return (maker != os.getpid() and not _alive(maker)) or age > STALE_AFTER


def python_argv(*args: str) -> list[str]:
    """``python -m shardis ARGS`` with this interpreter (the tests' PYTHONPATH is inherited
    through ``ip netns exec``)."""
    return [sys.executable, "-m", "shardis", *args]


# shardis across the hosts ------------------------------------------------------------------
WORKER_PORT = 7000
ROUTER_PORT = 6379
ROUTER_OCTET = 2
CLIENT_OCTET = 3
#: workers are at 198.51.100.11, .12, ...
WORKER_OCTET = 11


@dataclass
class Cluster:
    """``shardis router`` on host "router", ``shardis worker`` K on host "wK", CURVE keys
    in ``keys`` (``wK.pub``/``.key``, ``router.pub``/``.key``), and a "client" host the
    test talks from."""

    topology: Topology
    workers: int
    keys: Path
    worker_addresses: list[str]
    router_address: str
    router: subprocess.Popen | None = None
    worker_procs: list[subprocess.Popen] = field(default_factory=list)

    def client(self, **kwargs) -> redis.Redis:
        """A redis-py client on the client host, connected to the router over the bridge."""
        kwargs.setdefault("socket_timeout", 10)
        kwargs.setdefault("socket_connect_timeout", 5)
        return self.topology.client("client", self.router_address, ROUTER_PORT, **kwargs)

    def logs(self) -> str:
        """Every process's log tail, for an assertion message."""
        names = ["router.log", *(f"w{k}.log" for k in range(self.workers))]
        return "\n".join(f"--- {name}\n{self.topology.log(name)[-3000:]}" for name in names)


def keygen(keys: Path, name: str) -> None:
    result = subprocess.run(python_argv("keygen", str(keys / name)), capture_output=True,
                            text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"shardis keygen {name}: {result.stderr}")


def start_cluster(topology: Topology, workers: int = 3, worker_args: tuple[str, ...] = (),
                  router_args: tuple[str, ...] = (), timeout: float = 30.0) -> Cluster:
    """Hosts, keys and processes for a router and ``workers`` workers (each a CURVE server
    admitting only the router's key); returns once the router answers for every worker."""
    keys = topology.workdir / "keys"
    keys.mkdir()
    for name in ["router", *(f"w{k}" for k in range(workers))]:
        keygen(keys, name)
    (keys / "routers").write_text((keys / "router.pub").read_text())
    topology.add_host("router", ROUTER_OCTET)
    topology.add_host("client", CLIENT_OCTET)
    addresses = []
    for k in range(workers):
        host = topology.add_host(f"w{k}", WORKER_OCTET + k)
        addresses.append(f"tcp://{host.address}:{WORKER_PORT}")
    cluster = Cluster(topology, workers, keys, addresses, topology.hosts["router"].address)
    for k in range(workers):
        cluster.worker_procs.append(_start_worker(cluster, k, worker_args))
    cluster.router = _start_router(cluster, router_args)
    _wait_ready(cluster, timeout)
    return cluster


def _start_worker(cluster: Cluster, index: int, extra: tuple[str, ...]) -> subprocess.Popen:
    data = cluster.topology.workdir / f"w{index}-data"
    data.mkdir(exist_ok=True)
    keys = cluster.keys
    return cluster.topology.spawn(f"w{index}", python_argv(
        "worker", "--index", str(index), "--listen", cluster.worker_addresses[index],
        "--dir", str(data),
        "--curve-public-key-file", str(keys / f"w{index}.pub"),
        "--curve-secret-key-file", str(keys / f"w{index}.key"),
        "--curve-authorized-keys", str(keys / "routers"), *extra), f"w{index}.log")


def _start_router(cluster: Cluster, extra: tuple[str, ...]) -> subprocess.Popen:
    data = cluster.topology.workdir / "router-data"
    data.mkdir(exist_ok=True)
    keys = cluster.keys
    server_keys = ",".join(str(keys / f"w{k}.pub") for k in range(cluster.workers))
    # protected-mode: the client comes from another host, and there is no password.
    return cluster.topology.spawn("router", python_argv(
        "router", "--connect", ",".join(cluster.worker_addresses),
        "--curve-public-key-file", str(keys / "router.pub"),
        "--curve-secret-key-file", str(keys / "router.key"),
        "--curve-server-key", server_keys,
        "--bind", cluster.router_address, "--port", str(ROUTER_PORT), "--dir", str(data),
        "--protected-mode", "no", *extra), "router.log")


def _wait_ready(cluster: Cluster, timeout: float) -> None:
    """Until a key of every worker can be written through the router (every link is up)."""
    from shardis.slots import SlotMap

    slots = SlotMap(cluster.workers)
    probes = [next(f"ready:{n}" for n in range(1000) if slots.worker_of(b"ready:%d" % n) == k)
              for k in range(cluster.workers)]
    client = cluster.client(socket_timeout=2, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            dead = [p for p in [cluster.router, *cluster.worker_procs] if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a shardis process exited early\n{cluster.logs()}")
            try:
                if all(client.set(key, "1") for key in probes):
                    client.delete(*probes)
                    return
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the router did not serve every worker within {timeout}s"
                                   f"\n{cluster.logs()}")
            time.sleep(0.1)
    finally:
        client.close()
