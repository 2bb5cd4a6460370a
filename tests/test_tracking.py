"""Client-side caching (CLIENT TRACKING): the same scenario, over several connections, against
real Redis 7.0 and shardis; every connection's bytes must be identical, invalidation pushes
and pub/sub redirections included.  Keys are spread over the 3 workers (a BCAST change of
keys on two workers is two messages in shardis, one in Redis: those keys share a tag)."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from shardis.slots import SlotMap

Step = tuple[str, tuple]


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(0.05)

    def send(self, *args: str | bytes) -> None:
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        self.sock.sendall(b"*%d\r\n" % len(parts)
                          + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts))

    def read(self, settle: float = 0.15) -> bytes:
        """Everything that arrives within ``settle`` seconds of quiet."""
        data = b""
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
            deadline = time.monotonic() + settle
        return data

    def close(self) -> None:
        self.sock.close()


def client_id(conn: Conn) -> str:
    conn.send("CLIENT", "ID")
    return conn.read().split(b"\r\n")[0][1:].decode()


def scenario(port: int) -> list[tuple[str, bytes]]:
    """What each connection receives, step by step (ids normalised)."""
    out: list[tuple[str, bytes]] = []
    a, b, c, d = (Conn(port) for _ in range(4))
    conns = {"a": a, "b": b, "c": c, "d": d}

    def step(name: str, *args: str) -> None:
        conns[name].send(*args)
        for label, conn in conns.items():
            data = conn.read(0.05 if label != name else 0.1)
            if data:
                out.append((f"{' '.join(args)} -> {label}", data))

    step("b", "FLUSHALL")
    step("a", "HELLO", "3")
    out.clear()  # HELLO's reply holds the connection id
    step("a", "CLIENT", "TRACKING", "on")
    step("a", "GET", "k1")
    step("a", "MGET", "k2", "k3", "k4", "k5")
    step("b", "SET", "k1", "x")
    step("b", "SET", "k1", "y")  # forgotten once invalidated: no second message
    step("b", "MSET", "k2", "1", "k3", "2", "k9", "3")
    step("b", "DEL", "k5")  # no such key: nothing changed, nothing sent
    step("a", "SET", "k4", "own")
    step("a", "GET", "k4")
    step("a", "EXPIRE", "k4", "1")
    step("a", "GET", "k4")
    time.sleep(1.3)  # expiry invalidates too
    step("a", "PING")
    step("a", "GET", "k6")
    step("b", "FLUSHALL")
    step("a", "CLIENT", "TRACKINGINFO")
    step("a", "CLIENT", "TRACKING", "off")
    step("a", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "user:", "PREFIX", "obj:")
    step("b", "SET", "user:1", "x")
    step("b", "MSET", "obj:{t}1", "x", "obj:{t}2", "y", "other", "z")
    step("a", "CLIENT", "TRACKINGINFO")
    step("a", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "us")
    step("a", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x", "PREFIX", "xy")
    step("a", "CLIENT", "TRACKING", "on")
    step("a", "CLIENT", "TRACKING", "on", "BCAST", "NOLOOP")
    step("a", "SET", "user:2", "mine")
    step("b", "SET", "user:2", "theirs")
    step("a", "CLIENT", "TRACKING", "off")
    # RESP2: only through REDIRECT to a subscribed client
    redirect = client_id(d)
    step("d", "SUBSCRIBE", "__redis__:invalidate")
    step("c", "CLIENT", "TRACKING", "on", "REDIRECT", redirect, "NOLOOP")
    step("c", "GET", "r1")
    step("c", "SET", "r1", "own")
    step("c", "GET", "r1")
    step("b", "SET", "r1", "other")
    step("b", "FLUSHALL")
    step("c", "CLIENT", "TRACKING", "on", "OPTIN")
    step("c", "CLIENT", "TRACKING", "off")
    step("c", "CLIENT", "CACHING", "yes")
    step("c", "CLIENT", "TRACKING", "on", "OPTIN", "REDIRECT", redirect)
    step("c", "GET", "o1")
    step("c", "CLIENT", "CACHING", "yes")
    step("c", "GET", "o2")
    step("c", "GET", "o3")
    step("b", "MSET", "o1", "1", "o2", "2", "o3", "3")
    step("c", "CLIENT", "CACHING", "no")
    step("c", "CLIENT", "CACHING", "maybe")
    step("c", "CLIENT", "TRACKINGINFO")
    step("c", "CLIENT", "TRACKING", "off")
    step("c", "CLIENT", "TRACKING", "on", "OPTOUT", "REDIRECT", redirect)
    step("c", "CLIENT", "CACHING", "no")
    step("c", "GET", "p1")
    step("c", "GET", "p2")
    step("b", "MSET", "p1", "1", "p2", "2")
    step("c", "CLIENT", "TRACKINGINFO")
    d.close()
    conns.pop("d")
    time.sleep(0.1)
    step("c", "GET", "z1")
    step("b", "SET", "z1", "v")
    step("c", "CLIENT", "TRACKINGINFO")
    step("c", "CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT")
    step("c", "CLIENT", "TRACKING", "on", "OPTOUT")
    step("c", "CLIENT", "TRACKING", "on", "PREFIX", "x")
    step("c", "CLIENT", "TRACKING", "on", "BCAST", "OPTIN")
    other = client_id(b)
    step("c", "CLIENT", "TRACKING", "on", "REDIRECT", other, "REDIRECT", other)
    step("c", "CLIENT", "TRACKING", "on", "REDIRECT", "999999")
    step("c", "CLIENT", "TRACKING", "on", "REDIRECT", "x")
    step("c", "CLIENT", "TRACKING", "maybe")
    step("c", "CLIENT", "TRACKING", "on", "bogus")
    step("c", "CLIENT", "TRACKING")
    step("c", "CLIENT", "CACHING")
    step("c", "CLIENT", "GETREDIR")
    step("c", "RESET")
    step("c", "CLIENT", "TRACKINGINFO")
    step("c", "CLIENT", "GETREDIR")
    for conn in conns.values():
        conn.close()
    ident = redirect.encode()
    def hide(label: str) -> str:
        words = label.split(" ")
        return " ".join("<id>" if i and words[i - 1] == "REDIRECT" and word in (redirect, other)
                        else word for i, word in enumerate(words))

    return [(hide(label), data.replace(b":%b\r\n" % ident, b":<id>\r\n"))
            for label, data in out]


def test_tracking_as_redis(shardis, oracle):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # the two servers at once: the scenario mostly waits
        theirs_run, ours_run = pool.submit(scenario, oracle.port), pool.submit(scenario,
                                                                              shardis.port)
        theirs, ours = theirs_run.result(), ours_run.result()
    for (label, expected), (our_label, got) in zip(theirs, ours):
        assert (our_label, got) == (label, expected)
    assert len(ours) == len(theirs)


def test_tracking_keys_on_every_worker_and_info(shardis):
    slots = SlotMap(3)
    keys: dict[int, str] = {}
    for i in range(200):
        keys.setdefault(slots.worker_of(f"w{i}".encode()), f"w{i}")
    reader = Conn(shardis.port)
    writer = redis.Redis(port=shardis.port)
    reader.send("HELLO", "3")
    reader.send("CLIENT", "TRACKING", "on")
    reader.read()
    assert redis.Redis(port=shardis.port).info("clients")["tracking_clients"] >= 1
    reader.send("MGET", *keys.values())
    reader.read()
    for key in keys.values():
        writer.set(key, "v")
        assert reader.read() == b">2\r\n$10\r\ninvalidate\r\n*1\r\n$%d\r\n%b\r\n" % (
            len(key), key.encode())
    # a script's writes invalidate too, on whatever worker they land
    reader.send("MGET", *keys.values())
    reader.read()
    writer.eval("for _, k in ipairs(KEYS) do redis.call('set', k, 'x') end", len(keys),
                *keys.values())
    got = reader.read()
    assert sorted(got.split(b">2\r\n")[1:]) == sorted(
        b"$10\r\ninvalidate\r\n*1\r\n$%d\r\n%b\r\n" % (len(k), k.encode())
        for k in keys.values())
    reader.close()


@pytest.mark.parametrize("args", [
    [b"__track", b"1", b"k"], [b"__track_prefix", b"1", b"on", b""],
    [b"__track_caller", b"1"],
])
def test_internal_tracking_commands_are_not_for_clients(shardis, args):
    with pytest.raises(redis.ResponseError, match="unknown command"):
        redis.Redis(port=shardis.port).execute_command(*args)
