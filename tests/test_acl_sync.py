"""ACL users shared by every router: two (or three) routers in front of the same workers.

Workers and routers run as separate processes on free loopback ports (``shardis worker`` and
``shardis router``, the multi-host topology), started here and stopped by PID.  A change made on
one router reaches the other through worker 0 (``shardis.router.aclsync``): the other router
applies it within a round trip to worker 0, so checks on it poll for a short while.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.resp_client import RawClient
from tests.servers import free_port, wait_for_port

WAIT = 5.0


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "shardis", *args], stderr=out)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


class Cluster:
    """Two workers and the routers started on them; everything stopped by PID at the end."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.addresses = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
        self.workers = [self.start_worker(i) for i in range(2)]
        self.routers: list[tuple[int, subprocess.Popen, Path]] = []

    def start_worker(self, index: int) -> subprocess.Popen:
        return spawn(["worker", "--listen", self.addresses[index], "--index", str(index)],
                     self.dir / f"w{index}.log")

    def start_router(self, *extra: str) -> int:
        port = free_port()
        log = self.dir / f"router-{port}.log"
        proc = spawn(["router", "--connect", ",".join(self.addresses), "--port", str(port),
                      *extra], log)
        wait_for_port(port, proc)
        self.routers.append((port, proc, log))
        return port

    def log_of(self, port: int) -> str:
        return next(log for p, _, log in self.routers if p == port).read_text()

    def close(self) -> None:
        for _, proc, _ in self.routers:
            stop(proc)
        for proc in self.workers:
            stop(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("aclsync"))
    try:
        cluster.a = cluster.start_router()  # type: ignore[attr-defined]
        cluster.b = cluster.start_router()  # type: ignore[attr-defined]
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def a(cluster) -> Iterator[redis.Redis]:
    client = redis.Redis(port=cluster.a, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture
def b(cluster) -> Iterator[redis.Redis]:
    client = redis.Redis(port=cluster.b, socket_timeout=10)
    yield client
    client.close()


def eventually(check: Callable[[], object], timeout: float = WAIT) -> object:
    """``check()``'s first true value, trying again while it is false or raises."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {check}")
        time.sleep(0.01)


def can_auth(port: int, user: str, password: str) -> bool:
    client = RawClient(port)
    try:
        reply = client.call("AUTH", user, password)
    finally:
        client.close()
    assert reply in (b"+OK\r\n", b"-WRONGPASS invalid username-password pair or user is "
                     b"disabled.\r\n"), reply
    return reply == b"+OK\r\n"


# Users reach every router -------------------------------------------------------------------
def test_a_user_created_on_one_router_logs_in_on_the_other(cluster, a, b) -> None:
    assert a.acl_setuser("alice", enabled=True, passwords=["+pw1"], keys=["app:*"],
                         commands=["+@all"])
    eventually(lambda: can_auth(cluster.b, "alice", "pw1"))
    assert "alice" in b.acl_users()
    assert a.acl_list() == b.acl_list()
    alice_b = redis.Redis(port=cluster.b, username="alice", password="pw1")
    assert alice_b.set("app:1", "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        alice_b.set("other", "x")
    alice_b.close()


def test_a_connected_client_of_the_other_router_loses_permissions(cluster, a, b) -> None:
    a.acl_setuser("bob", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])
    eventually(lambda: can_auth(cluster.b, "bob", "pw"))
    bob = RawClient(cluster.b)
    assert bob.call("AUTH", "bob", "pw") == b"+OK\r\n"
    assert bob.call("SET", "k", "v") == b"+OK\r\n"  # unrestricted: the router's fast path
    assert a.acl_setuser("bob", commands=["-set"])
    eventually(lambda: bob.call("SET", "k", "v").startswith(b"-NOPERM"))
    assert bob.call("GET", "k") == b"$1\r\nv\r\n"  # the same connection, the rest still allowed
    a.acl_setuser("bob", commands=["+set"])
    eventually(lambda: bob.call("SET", "k", "w") == b"+OK\r\n")
    bob.close()


def test_deluser_on_one_router_disconnects_the_users_clients_on_the_other(cluster, a) -> None:
    a.acl_setuser("carol", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])
    eventually(lambda: can_auth(cluster.b, "carol", "pw"))
    carol = RawClient(cluster.b)
    assert carol.call("AUTH", "carol", "pw") == b"+OK\r\n"
    assert a.acl_deluser("carol") == 1

    def gone() -> bool:
        try:
            return carol.call("PING") == b""
        except OSError:
            return True

    eventually(gone)
    carol.close()
    assert not can_auth(cluster.b, "carol", "pw")


def test_requirepass_set_on_one_router_is_required_by_the_other(cluster, a) -> None:
    open_b = redis.Redis(port=cluster.b)  # connected before: stays authenticated, as in Redis
    assert open_b.ping()
    assert a.config_set("requirepass", "s3cret")
    try:
        def refused() -> bool:
            client = RawClient(cluster.b)
            try:
                return client.call("GET", "x").startswith(b"-NOAUTH")
            finally:
                client.close()

        eventually(refused)
        assert can_auth(cluster.b, "default", "s3cret")
        assert open_b.ping()
    finally:
        a.config_set("requirepass", "")
    eventually(lambda: redis.Redis(port=cluster.b).ping())
    open_b.close()


def test_concurrent_changes_on_both_routers_all_survive(cluster, a, b) -> None:
    per_thread, threads_per_router = 40, 4
    errors: list[BaseException] = []

    def create(port: int, prefix: str) -> None:
        client = redis.Redis(port=port, socket_timeout=30)
        try:
            for i in range(per_thread):
                client.acl_setuser(f"{prefix}-{i}", enabled=True, passwords=[f"+{prefix}{i}"],
                                   keys=[f"{prefix}:*"], commands=["+get"])
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=create, args=(port, f"c{side}{t}"))
               for side, port in enumerate((cluster.a, cluster.b))
               for t in range(threads_per_router)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    expected = {f"c{side}{t}-{i}" for side in range(2) for t in range(threads_per_router)
                for i in range(per_thread)}
    assert expected <= set(a.acl_users())
    eventually(lambda: a.acl_list() == b.acl_list())
    assert expected <= set(b.acl_users())
    assert can_auth(cluster.a, "c13-7", "c137") and can_auth(cluster.b, "c02-39", "c0239")
    # The same user changed from both sides at once: both rule sets land, one after the other.
    both = [threading.Thread(target=lambda c=c, r=r: c.acl_setuser("shared", keys=[r]))
            for c, r in ((a, "from-a"), (b, "from-b"))]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join(30)
    eventually(lambda: a.acl_getuser("shared") == b.acl_getuser("shared"))
    keys = a.acl_getuser("shared")["keys"]
    assert set(keys.split() if isinstance(keys, str) else keys) == {"~from-a", "~from-b"}
    for name in expected | {"shared"}:
        a.acl_deluser(name)
    eventually(lambda: not any(n.startswith("c0") for n in b.acl_users()))


def test_acl_load_reaches_the_other_router(cluster, tmp_path) -> None:
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("user default on nopass ~* &* +@all\n"
                       "user loaded on >lpw ~* &* +@all\n")
    c = cluster.start_router("--aclfile", str(aclfile))
    client_c = redis.Redis(port=c)
    b = redis.Redis(port=cluster.b)
    b.acl_setuser("victim", enabled=True, passwords=["+vpw"], keys=["*"], commands=["+@all"])
    eventually(lambda: can_auth(c, "victim", "vpw"))
    victim = RawClient(cluster.b)
    assert victim.call("AUTH", "victim", "vpw") == b"+OK\r\n"
    assert client_c.acl_load()
    eventually(lambda: can_auth(cluster.b, "loaded", "lpw"))
    assert "victim" not in b.acl_users()

    def gone() -> bool:
        try:
            return victim.call("PING") == b""
        except OSError:
            return True

    eventually(gone)  # ACL LOAD disconnects the replaced users' clients, everywhere
    victim.close()
    client_c.acl_deluser("loaded")
    client_c.close()
    b.close()


# Startup and a restarted worker 0 -----------------------------------------------------------
def test_a_router_started_later_takes_the_shared_users_and_warns(cluster, a) -> None:
    a.acl_setuser("dave", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])
    late = cluster.start_router("--requirepass", "other")
    assert can_auth(late, "dave", "pw")
    client = redis.Redis(port=late)
    assert client.ping()  # the shared default user (no password) won over --requirepass
    assert client.acl_list() == a.acl_list()
    client.close()
    assert "already holds the server's ACL users" in cluster.log_of(late)
    a.acl_deluser("dave")


def test_a_restarted_worker_0_gets_the_users_back(cluster, a, b) -> None:
    a.acl_setuser("erin", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])
    eventually(lambda: can_auth(cluster.b, "erin", "pw"))
    hub = cluster.workers[0]
    stop(hub)
    cluster.workers[0] = cluster.start_worker(0)

    def hub_back() -> bool:
        return a.set("probe", "1") and b.get("probe") is not None

    eventually(hub_back, 20)
    # A router started now gets the users from the restarted worker 0.
    late = cluster.start_router()
    assert can_auth(late, "erin", "pw")
    # And changes go on from there, on every router.
    assert b.acl_setuser("frank", enabled=True, passwords=["+pw"], keys=["*"],
                         commands=["+@all"])
    eventually(lambda: can_auth(cluster.a, "frank", "pw"))
    eventually(lambda: can_auth(late, "frank", "pw"))  # pushed to each router in turn
    a.acl_deluser("erin", "frank")


# Attackers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["__acl_set", "0", "0", "user default on nopass ~* &* +@all"],
    ["__acl_sync", "999", "0", "user default on nopass ~* &* +@all"],
    ["__acl_get"],
])
def test_clients_cannot_run_the_internal_acl_commands(cluster, command) -> None:
    raw = RawClient(cluster.a)
    assert raw.call(*command).startswith(b"-ERR unknown command")
    script = "return redis.call(" + ",".join(f"'{arg}'" for arg in command) + ")"
    assert raw.call("EVAL", script, "0").startswith(b"-ERR")
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call(*command).startswith(b"-ERR unknown command")
    assert raw.call("EXEC").startswith(b"-EXECABORT")
    raw.close()


def test_publish_cannot_change_permissions(cluster, a, b) -> None:
    a.acl_setuser("gina", enabled=True, passwords=["+pw"], keys=["g:*"], commands=["+get"])
    eventually(lambda: can_auth(cluster.b, "gina", "pw"))
    before = b.acl_list()
    listener = RawClient(cluster.b)
    listener.call("SUBSCRIBE", "acl")
    for channel in ("acl", "__acl", "__acl_changed", "__keyspace@0__:acl"):
        a.publish(channel, "999999")
        a.publish(channel, "user default on nopass ~* &* +@all")
        a.publish(channel, "user gina on nopass ~* &* +@all")
    assert listener.read_reply().startswith(b"*3\r\n$7\r\nmessage\r\n$3\r\nacl\r\n")
    time.sleep(0.3)
    assert b.acl_list() == before == a.acl_list()
    gina = redis.Redis(port=cluster.b, username="gina", password="pw")
    with pytest.raises(redis.exceptions.NoPermissionError):
        gina.set("g:1", "x")
    gina.close()
    listener.close()
    a.acl_deluser("gina")


# The hub's rules, without processes ---------------------------------------------------------
def test_the_hub_compare_and_set_and_offers() -> None:
    from shardis.worker.aclhub import ACL_CHANGED, AclHub

    hub, pushes = AclHub(), {}
    assert hub.reply() is None
    assert hub.sync(b"A", -1, 0, b"user default a\n", pushes) == [-1, 0, b"user default a\n"]
    assert hub.sync(b"B", -1, 0, b"user default b\n", pushes) == [-1, 0, b"user default a\n"]
    assert pushes == {}  # the first offer wins a tie; nobody else was watching
    assert hub.compare_and_set(b"A", -1, 0, b"x\n", pushes) == [1, 0]
    assert pushes == {b"B": [(ACL_CHANGED, ACL_CHANGED, None, b"0")]}  # not the sender
    # B built its change on the old version: refused, with the state to redo it on.
    assert hub.compare_and_set(b"B", -1, 0, b"y\n", pushes) == [0, 0, 0, b"x\n"]
    assert hub.compare_and_set(b"B", 0, 0, b"xy\n", pushes) == [1, 1]
    # A restarted (empty) hub takes the newest offer.
    hub, pushes = AclHub(), {}
    hub.sync(b"A", 3, 0, b"old\n", pushes)
    assert hub.sync(b"B", 5, 1, b"new\n", pushes) == [5, 1, b"new\n"]
    assert pushes == {b"A": [(ACL_CHANGED, ACL_CHANGED, None, b"5")]}
    assert hub.sync(b"C", 4, 0, b"older\n", pushes) == [5, 1, b"new\n"]
