"""Authentication and ACL users on a real shardis: attackers first, then users and rules.

Each module-level server here is started with the options the tests need (requirepass, an ACL
file) and stopped by PID; redis-py and raw sockets talk to it over TCP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
import redis

from shardis.slots import SlotMap
from tests.resp_client import RawClient
from tests.servers import start_shardis

PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def locked():
    """Two workers, requirepass set by flag."""
    server = start_shardis(2, "--requirepass", PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def admin(locked):
    client = redis.Redis(port=locked.port, password=PASSWORD)
    yield client
    for name in client.acl_users():
        if name != "default":
            client.acl_deluser(name)
    client.flushall()
    client.close()


def keys_on_two_workers() -> tuple[bytes, bytes]:
    slots = SlotMap(2)
    first = b"k0"
    for n in range(1, 100):
        other = b"k%d" % n
        if slots.worker_of(other) != slots.worker_of(first):
            return first, other
    raise AssertionError("no keys on two workers")


# Attackers ----------------------------------------------------------------------------------
def test_unauthenticated_client_gets_noauth_for_everything_but_no_auth_commands(locked):
    with RawClient(locked.port) as raw:
        for command in (["GET", "k"], ["SET", "k", "v"], ["KEYS", "*"], ["SCAN", "0"],
                        ["DBSIZE"], ["CONFIG", "GET", "requirepass"], ["ACL", "LIST"],
                        ["EVAL", "return 1", "0"], ["SUBSCRIBE", "c"], ["MULTI"],
                        ["CLIENT", "LIST"], ["INFO"], ["PING"], ["ECHO", "x"]):
            assert raw.call(*command) == b"-NOAUTH Authentication required.\r\n", command
        # Redis's order: unknown commands and arity errors come before NOAUTH.
        assert raw.call("NOSUCH").startswith(b"-ERR unknown command")
        assert raw.call("GET").startswith(b"-ERR wrong number of arguments")
        assert raw.call("HELLO", "3").startswith(b"-NOAUTH HELLO must be called")
        assert raw.call("AUTH", "wrong") == (
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        assert raw.call("RESET") == b"+RESET\r\n"
        assert raw.call("GET", "k").startswith(b"-NOAUTH")
        # A refused EXEC is Redis's execCommandAbort, in MULTI or not (checked on 7.0.15).
        assert raw.call("EXEC") == (
            b"-EXECABORT Transaction discarded because of: NOAUTH Authentication required.\r\n")


def test_unauthenticated_client_cannot_learn_keys(locked, admin):
    admin.set("secret-key", "v")
    with RawClient(locked.port) as raw:
        for command in (["KEYS", "*"], ["RANDOMKEY"], ["EXISTS", "secret-key"], ["TYPE", "x"],
                        ["MGET", "secret-key"], ["OBJECT", "ENCODING", "secret-key"]):
            reply = raw.call(*command)
            assert reply.startswith(b"-NOAUTH"), (command, reply)
            assert b"secret" not in reply


def test_huge_unauthenticated_requests_are_refused_and_closed(locked):
    with RawClient(locked.port) as raw:
        raw.send_raw(b"*11\r\n")
        assert raw.read_reply() == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
        assert raw.is_closed()
    with RawClient(locked.port) as raw:
        raw.send_raw(b"*2\r\n$3\r\nGET\r\n$16385\r\n")
        assert raw.read_reply() == b"-ERR Protocol error: unauthenticated bulk length\r\n"
        assert raw.is_closed()
    with RawClient(locked.port) as raw:  # 16384 bytes is still allowed
        assert raw.call("AUTH", "x" * 16384).startswith(b"-WRONGPASS")


def test_auth_then_big_request_in_the_same_read(locked):
    with RawClient(locked.port) as raw:
        big = b"v" * 100_000
        raw.send_raw(b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n"
                     + b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n%b\r\n" % (len(big), big))
        assert raw.read_reply() == b"+OK\r\n"
        assert raw.read_reply() == b"+OK\r\n"
        assert raw.call("STRLEN", "big") == b":100000\r\n"


def test_redis_cli_with_and_without_password(locked):
    base = ["redis-cli", "-p", str(locked.port)]
    out = subprocess.run([*base, "GET", "k"], capture_output=True, text=True, timeout=10)
    assert "NOAUTH" in out.stdout + out.stderr
    out = subprocess.run([*base, "--no-auth-warning", "-a", PASSWORD, "PING"],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "PONG"


# requirepass -------------------------------------------------------------------------------
def test_requirepass_flag_and_config_set(locked, admin):
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=locked.port, password="wrong").ping()
    assert redis.Redis(port=locked.port, username="default", password=PASSWORD).ping()
    admin.config_set("requirepass", "other")
    try:
        assert admin.ping()  # connected clients stay authenticated, as in Redis
        assert redis.Redis(port=locked.port, password="other").ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=locked.port, password=PASSWORD).ping()
    finally:
        admin.config_set("requirepass", PASSWORD)


# Users -------------------------------------------------------------------------------------
def restricted(locked, admin, *rules: str) -> redis.Redis:
    admin.execute_command("ACL", "SETUSER", "alice", "reset", "on", ">pw", *rules)
    return redis.Redis(port=locked.port, username="alice", password="pw", protocol=2)


def test_restricted_user_blocked_on_keys_across_workers(locked, admin):
    allowed, forbidden = keys_on_two_workers()
    admin.mset({allowed: "a", forbidden: "b"})
    alice = restricted(locked, admin, "+@all", "-flushall", f"~{allowed.decode()}")
    assert alice.get(allowed) == b"a"
    with pytest.raises(redis.exceptions.NoPermissionError, match="one of the keys"):
        alice.mget(allowed, forbidden)
    with pytest.raises(redis.exceptions.NoPermissionError, match="one of the keys"):
        alice.delete(allowed, forbidden)
    assert admin.exists(allowed, forbidden) == 2
    with pytest.raises(redis.exceptions.NoPermissionError, match="'flushall' command"):
        alice.flushall()
    log = admin.acl_log()
    assert log[0]["reason"] in ("command", "key") and log[0]["username"] == "alice"


def test_restricted_user_inside_multi(locked, admin):
    alice = restricted(locked, admin, "+@all", "~a*")
    with RawClient(locked.port) as raw:
        assert raw.call("AUTH", "alice", "pw") == b"+OK\r\n"
        assert raw.call("MULTI") == b"+OK\r\n"
        assert raw.call("SET", "a1", "v") == b"+QUEUED\r\n"
        assert raw.call("SET", "b1", "v").startswith(b"-NOPERM")
        assert raw.call("EXEC").startswith(b"-EXECABORT")
        # Rules changed between queueing and EXEC: checked again at EXEC.
        assert raw.call("MULTI") == b"+OK\r\n"
        assert raw.call("SET", "a2", "v") == b"+QUEUED\r\n"
        admin.execute_command("ACL", "SETUSER", "alice", "resetkeys", "~z*")
        reply = raw.call("EXEC")
        assert b"NOPERM ACLs rules changed between the moment" in reply
    assert alice.connection_pool is not None
    assert admin.exists("a1", "a2", "b1") == 0


def test_restricted_user_inside_a_script(locked, admin):
    alice = restricted(locked, admin, "+@all", "-set", "~*")
    assert alice.eval("return redis.call('get', KEYS[1])", 1, "k") is None
    with pytest.raises(redis.ResponseError, match="The user executing the script can't run "
                                                  "this command or subcommand"):
        alice.eval("return redis.call('set', KEYS[1], 'v')", 1, "k")
    caught = alice.eval("return redis.pcall('set', 'k', 'v')['err']", 0)
    assert b"The user executing the script can't run" in caught
    assert admin.eval("return redis.call('set', KEYS[1], 'v')", 1, "k") == b"OK"


def test_pubsub_channels(locked, admin):
    alice = restricted(locked, admin, "+@all", "~*", "&news.*")
    assert alice.publish("news.1", "m") == 0
    with pytest.raises(redis.exceptions.NoPermissionError, match="one of the channels"):
        alice.publish("other", "m")
    with RawClient(locked.port) as raw:
        raw.call("AUTH", "alice", "pw")
        assert raw.call("SUBSCRIBE", "other").startswith(b"-NOPERM")
        assert raw.call("PSUBSCRIBE", "news.*").startswith(b"*3")
        # Losing the channel disconnects the subscriber, as in Redis.
        admin.execute_command("ACL", "SETUSER", "alice", "resetchannels")
        assert raw.is_closed(timeout=2)


def test_deluser_disconnects_its_clients(locked, admin):
    restricted(locked, admin, "+@all", "~*")
    with RawClient(locked.port) as raw:
        assert raw.call("AUTH", "alice", "pw") == b"+OK\r\n"
        assert b"user=alice" in raw.call("CLIENT", "INFO")
        assert admin.acl_deluser("alice") == 1
        assert raw.is_closed(timeout=2)


def test_user_switched_off_keeps_its_connections(locked, admin):
    restricted(locked, admin, "+@all", "~*")
    with RawClient(locked.port) as raw:
        raw.call("AUTH", "alice", "pw")
        admin.execute_command("ACL", "SETUSER", "alice", "off")
        assert raw.call("PING") == b"+PONG\r\n"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=locked.port, username="alice", password="pw").ping()


# ACL file ----------------------------------------------------------------------------------
def test_aclfile_load_and_save_round_trip(tmp_path):
    path = tmp_path / "users.acl"
    path.write_text("user default on nopass ~* &* +@all\nuser bob on >pw ~b* +get +set\n")
    server = start_shardis(1, "--aclfile", str(path))
    try:
        admin = redis.Redis(port=server.port)
        bob = redis.Redis(port=server.port, username="bob", password="pw")
        assert bob.set("b1", "v") and bob.get("b1") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError):
            bob.get("a1")
        admin.acl_setuser("carol", enabled=True, passwords=["+pw2"], keys=["c*"],
                          commands=["+get"])
        assert admin.acl_save()
        saved = path.read_text()
        assert "user carol on #" in saved and saved.startswith("user bob ")
        assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]
        path.write_text(saved + "user bad +nosuch\n")
        with pytest.raises(redis.ResponseError, match="Error in applying operation"):
            admin.acl_load()
        path.write_text(saved.replace("user carol", "user dave"))
        with RawClient(server.port) as raw:
            assert raw.call("AUTH", "bob", "pw") == b"+OK\r\n"
            assert admin.acl_load()
            assert raw.is_closed(timeout=2)  # ACL LOAD replaced bob: his clients go
        assert sorted(admin.acl_users()) == ["bob", "dave", "default"]
        assert bob.get("b1") == b"v"
    finally:
        server.stop()


def test_bad_aclfile_stops_startup(tmp_path):
    path = tmp_path / "users.acl"
    path.write_text("user x +nosuch\n")
    with pytest.raises(RuntimeError):
        start_shardis(1, "--aclfile", str(path))


def test_aclfile_wins_over_requirepass(tmp_path):
    path = tmp_path / "users.acl"
    path.write_text("user bob on >pw +@all ~*\n")
    server = start_shardis(1, "--aclfile", str(path), "--requirepass", "ignored")
    try:
        # No default line in the file: the default user is created open, as in Redis.
        assert redis.Redis(port=server.port).ping()
    finally:
        server.stop()


# protected-mode ----------------------------------------------------------------------------
def non_loopback_address() -> str | None:
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        address = line.split()[3].split("/")[0]
        if not address.startswith("127."):
            return address
    return None


def test_protected_mode_refuses_non_loopback_clients():
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    server = start_shardis(1, "--bind", "0.0.0.0")
    try:
        # Connect from that address too (the source is the peer address the router sees).
        with socket.create_connection((address, server.port), timeout=5,
                                      source_address=(address, 0)) as sock:
            data = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"-DENIED Redis is running in protected mode because")
        assert data.endswith(b"from the outside.\r\n")
        assert redis.Redis(port=server.port).ping()  # loopback is fine
    finally:
        server.stop()
