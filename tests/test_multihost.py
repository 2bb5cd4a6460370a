"""shardis across a real network stack: the router, each worker and the client on hosts of
their own (network namespaces joined by a bridge, ``tests/netns.py``), links with CURVE keys,
workers with ``--appendonly yes``.

Checked here (issue 18, "Tested across a real network stack"):

- every command family works through the router, byte for byte as Redis 7.0.15 answers (the
  differential harness, RESP2 and RESP3, with a real redis-server on the client host), with
  keys on one worker and spread over all three;
- a process on another host without the workers' trust (a plain ZeroMQ peer, a peer with
  keys of its own) gets nothing from a worker, and changes nothing;
- cutting one worker's link (its switch port down) gives fast ``CLUSTERDOWN`` errors naming
  that worker for its keys only, while the other workers keep serving reads and writes;
  INFO shards says the link is down;
- plugging it back recovers by itself: its commands work again within seconds, nothing
  acknowledged is lost (a command in flight at the cut gets its real reply), INFO shards
  says up, with the link's round-trip time and reconnect count;
- a one-way cut (the worker receives, nothing it sends leaves: nftables in its namespace):
  a write that ran but whose reply was lost gets its real reply once the link is back, and
  ran once.

One topology for the module (starting hosts and processes is most of its time).  The outage
is observed once (:func:`outage`: cut, probe, restore, probe), and each expectation is its
own test over what was recorded, so a failure says which one broke.  Needs root (CI runs as
root); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shardis.slots import SlotMap
from tests import differential, netns
from tests.differential import (
    check,
    parametrize,
    scan_all,
    script,
    sleep,
    sorted_,
    type_only,
)
from tests.resp_client import RawClient, RespError, decode

WORKERS = 3
#: the worker whose link the outage cuts.
CUT = 1
#: the oracle's port on the client host (its own loopback).
ORACLE_PORT = 6380
#: a command for the cut worker answers within this many seconds...
FAST = 1.5
#: ... and the router notices the cut within this many seconds of it (~1 s of heartbeats).
DETECT_WITHIN = 2.5
#: after the link is back, the worker serves again within this many seconds.
RECOVER_WITHIN = 6.0
#: the cut lasts at least this long (seconds).
CUT_FOR = 2.5
#: how long a peer without the keys waits for any answer.
STRANGER_WAIT = 3.0

_SLOTS = SlotMap(WORKERS)


def key_on(worker: int, name: str) -> str:
    """A key named after ``name`` that lives on ``worker`` (its slot's owner)."""
    for n in range(10_000):
        key = f"{name}:{n}"
        if _SLOTS.worker_of(key.encode()) == worker:
            return key
    raise AssertionError("no key found")


#: one key per worker, for the multi-key commands: A on worker 0, B on 1, C on 2.
A, B, C = (key_on(k, "k") for k in range(WORKERS))
#: a key of the worker the outage cuts and one of another worker.
SPAN = (key_on(0, "span"), key_on(CUT, "span"))
#: keys sharing a hash tag: on one worker (forwarded whole).
T1, T2, T3 = "{t}one", "{t}two", "{t}three"


def test_the_keys_really_spread() -> None:
    assert [_SLOTS.worker_of(k.encode()) for k in (A, B, C)] == [0, 1, 2]
    assert len({_SLOTS.worker_of(k.encode()) for k in (T1, T2, T3)}) == 1


# The hosts ---------------------------------------------------------------------------------
@dataclass
class Hosts:
    topology: netns.Topology
    cluster: netns.Cluster
    oracle: bool = False

    @property
    def client_netns(self) -> str:
        return self.topology.hosts["client"].netns


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    netns.sweep_stale()
    topology = netns.Topology()
    try:
        cluster = netns.start_cluster(topology, WORKERS, worker_args=("--appendonly", "yes"))
        yield Hosts(topology, cluster, _start_oracle(topology))
    finally:
        topology.close()


def _start_oracle(topology: netns.Topology) -> bool:
    """Real Redis on the client host's loopback, for the differential smoke set (False:
    redis-server is not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        return False
    data = topology.workdir / "oracle"
    data.mkdir()
    proc = topology.spawn("client", [binary, "--port", str(ORACLE_PORT), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no", "--dir", str(data)],
                          "oracle.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with netns.entered(topology.hosts["client"].netns):
                RawClient(ORACLE_PORT, timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start on the client host\n"
                       f"{topology.log('oracle.log')}")


FUNCTIONS = ("#!lua name=mh\n"
             "redis.register_function('mh_copy', function(keys, args) "
             "return redis.call('set', keys[2], redis.call('get', keys[1]) or 'none') end)\n"
             "redis.register_function{function_name='mh_get', flags={'no-writes'}, "
             "callback=function(keys, args) return redis.call('get', keys[1]) end}")

# Every family through the router -----------------------------------------------------------
SMOKE = [
    script("strings",
           ["SET", A, "hello"], ["APPEND", A, " world"], ["GET", A], ["STRLEN", A],
           ["GETRANGE", A, "0", "4"], ["SETRANGE", A, "6", "there"], ["GET", A],
           ["INCR", B], ["INCRBY", B, "41"], ["INCRBYFLOAT", C, "1.5"], ["INCR", A],
           ["SET", T1, "x", "EX", "100"], ["TTL", T1], ["GETDEL", T1], ["GET", T1]),
    script("lists",
           ["RPUSH", A, "a", "b", "c"], ["LPUSH", A, "z"], ["LRANGE", A, "0", "-1"],
           ["LMOVE", A, B, "LEFT", "RIGHT"], ["LMOVE", A, C, "RIGHT", "LEFT"],
           ["LRANGE", B, "0", "-1"], ["LRANGE", C, "0", "-1"], ["BLPOP", B, "1"],
           ["LPOS", A, "b"], ["LLEN", A], ["GET", A], ["RPOPLPUSH", A, T1], ["LINDEX", T1, "0"]),
    script("hashes",
           ["HSET", A, "f1", "v1", "f2", "v2"], ["HINCRBY", A, "n", "5"], ["HGETALL", A],
           ["HMGET", A, "f1", "nope", "n"], ["HDEL", A, "f2"], ["HLEN", A],
           ["HSETNX", B, "f", "1"], ["HINCRBYFLOAT", B, "f", "0.25"], ["HGET", B, "f"],
           ["HEXISTS", C, "f"], ["HINCRBY", A, "f1", "1"]),
    script("sets",
           ["SADD", A, "1", "2", "3"], ["SADD", B, "3", "4"], ["SADD", C, "3", "5"],
           ["SUNION", A, B, C], ["SINTER", A, B, C], ["SDIFF", A, B],
           ["SUNIONSTORE", T1, A, B, C], ["SMEMBERS", T1], ["SMOVE", A, B, "1"],
           ["SMEMBERS", B], ["SISMEMBER", A, "1"], ["SCARD", A], ["SINTERCARD", "2", A, C]),
    script("zsets",
           ["ZADD", A, "1", "a", "2", "b", "3", "c"], ["ZADD", B, "5", "b", "7", "d"],
           ["ZINCRBY", A, "2.5", "a"], ["ZRANGE", A, "0", "-1", "WITHSCORES"],
           ["ZUNIONSTORE", C, "2", A, B, "WEIGHTS", "1", "2"],
           ["ZRANGE", C, "0", "-1", "WITHSCORES"], ["ZINTER", "2", A, B, "WITHSCORES"],
           ["ZRANGESTORE", T1, C, "1", "2"], ["ZRANGE", T1, "0", "-1"], ["ZSCORE", C, "d"],
           ["ZRANK", C, "c"], ["ZPOPMIN", A], ["ZCARD", A], ["ZADD", A, "x", "y"]),
    script("streams",
           ["XADD", A, "1-1", "f", "v"], ["XADD", A, "2-1", "f", "w"], ["XLEN", A],
           ["XRANGE", A, "-", "+"], ["XGROUP", "CREATE", A, "g", "0"],
           ["XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "STREAMS", A, ">"],
           ["XPENDING", A, "g"], ["XACK", A, "g", "1-1"], ["XADD", B, "5-0", "a", "b"],
           ["XREAD", "STREAMS", A, B, "0", "0"], ["XADD", A, "1-0", "f", "v"], ["XTRIM", A,
                                                                               "MAXLEN", "1"]),
    script("hyperloglog",
           ["PFADD", A, "a", "b", "c"], ["PFADD", B, "c", "d"], ["PFADD", C, "e"],
           ["PFCOUNT", A], ["PFCOUNT", A, B, C], ["PFMERGE", T1, A, B, C], ["PFCOUNT", T1],
           ["SET", T2, "no"], ["PFCOUNT", T2]),
    script("geo",
           ["GEOADD", A, "13.361389", "38.115556", "Palermo", "15.087269", "37.502669",
            "Catania"], ["GEODIST", A, "Palermo", "Catania", "km"], ["GEOPOS", A, "Palermo"],
           ["GEOHASH", A, "Catania"],
           ["GEOSEARCH", A, "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC",
            "WITHDIST"],
           ["GEOSEARCHSTORE", B, A, "FROMMEMBER", "Palermo", "BYRADIUS", "300", "km", "ASC"],
           ["ZRANGE", B, "0", "-1"], ["GEOADD", A, "200", "100", "bad"]),
    script("bitmaps",
           ["SETBIT", A, "7", "1"], ["SETBIT", B, "7", "1"], ["SETBIT", B, "1", "1"],
           ["GETBIT", A, "7"], ["BITCOUNT", B], ["BITOP", "AND", C, A, B], ["GET", C],
           ["BITOP", "OR", T1, A, B, C], ["BITPOS", T1, "1"],
           ["BITFIELD", A, "INCRBY", "u8", "0", "3", "GET", "u8", "0"],
           ["SETBIT", A, "-1", "1"]),
    script("keys_across_workers",
           ["MSET", A, "1", B, "2", C, "3"], ["MGET", A, B, C, "nope"],
           ["EXISTS", A, B, C], ["TYPE", B], ["RENAME", A, B], ["MGET", A, B],
           ["RENAMENX", B, C], ["COPY", C, A], ["MGET", A, B, C], ["DBSIZE"],
           sorted_("KEYS", "*"), scan_all(), ["MSETNX", A, "x", T1, "y"],
           ["DEL", A, B, C, T1], ["DBSIZE"], ["RENAME", A, B]),
    script("expiry",
           ["SET", A, "1", "EX", "100"], ["PEXPIRE", B, "500"], ["SET", B, "2"],
           ["PEXPIRE", B, "100000"], ["EXPIRE", C, "10"], ["TTL", A], type_only("PTTL", B), ["TTL", C],
           ["PERSIST", A], ["TTL", A], type_only("EXPIRETIME", B), ["EXPIRE", A, "abc"],
           ["SET", C, "3", "PX", "1"], sleep(0.05), ["GET", C], ["EXISTS", A, B, C]),
    script("sort",
           ["RPUSH", A, "3", "1", "2"], ["MSET", "w_1", "30", "w_2", "10", "w_3", "20"],
           ["MSET", "o_1", "one", "o_2", "two", "o_3", "three"], ["HSET", "h_2", "f", "hf"],
           ["SORT", A], ["SORT", A, "BY", "w_*", "GET", "#", "GET", "o_*", "GET", "h_*->f"],
           ["SORT", A, "DESC", "LIMIT", "0", "2", "STORE", B], ["LRANGE", B, "0", "-1"],
           ["SORT_RO", A, "ALPHA"], ["SORT", A, "BY", "nosort", "GET", "o_*"]),
    script("functions",
           ["FUNCTION", "LOAD", "REPLACE", FUNCTIONS],
           ["FCALL", "mh_copy", "2", A, B], ["SET", A, "x"], ["FCALL", "mh_copy", "2", A, B],
           ["MGET", A, B], ["FCALL_RO", "mh_get", "1", B], ["FCALL_RO", "mh_copy", "2", A, C],
           ["FUNCTION", "DELETE", "mh"], ["FCALL", "mh_get", "1", A]),
    script("databases",
           ["SELECT", "2"], ["SET", A, "two"], ["MOVE", A, "0"], ["GET", A], ["SELECT", "0"],
           ["GET", A], ["MOVE", A, "0"], ["SELECT", "16"]),
    script("transaction",
           ["SET", A, "1"], ["WATCH", A, C], ["MULTI"], ["INCR", A], ["RPUSH", B, "x"],
           ["SET", C, "3"], ["GET", A], ["EXEC"], ["MULTI"], ["INCR", A], ["LPUSH", C, "y"],
           ["EXEC"], ["MULTI"], ["SET", A], ["EXEC"], ["MGET", A, C]),
    script("scripting",
           ["EVAL", "redis.call('set', KEYS[1], ARGV[1]); redis.call('rpush', KEYS[2], "
                    "ARGV[1]); return {redis.call('get', KEYS[1]), "
                    "redis.call('lrange', KEYS[2], 0, -1), redis.call('incr', KEYS[3])}",
            "3", A, B, C, "v"],
           ["EVAL", "return redis.call('mget', KEYS[1], KEYS[2])", "2", T1, T2],
           ["SCRIPT", "LOAD", "return redis.call('exists', KEYS[1], KEYS[2])"],
           ["EVALSHA", "91e7c8a32d12549229b6e1a2824fdcfbd25e8c98", "2", A, T1],
           ["EVALSHA", "6f1ade6d1e1d7f2a6fd6bd8b1b1d6d8a4c2d5cba", "0"],
           ["EVAL", "return redis.pcall('incr', KEYS[1])", "1", B],
           type_only("EVAL", "return redis.call('time')", "0")),
]


@parametrize(SMOKE)
def test_every_family_through_the_router(hosts: Hosts, monkeypatch: pytest.MonkeyPatch,
                                          script, protocol: int) -> None:
    """The harness's clients connect from the client host: the oracle on its loopback, the
    router over the bridge (the harness dials 127.0.0.1: its client class is swapped for one
    that dials the router's address for the router's port)."""
    if not hosts.oracle:
        pytest.skip("redis-server is not installed (the oracle of the smoke set)")
    router = hosts.cluster.router_address

    def dial(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> RawClient:
        return RawClient(port, router if port == netns.ROUTER_PORT else host, timeout)

    monkeypatch.setattr(differential, "RawClient", dial)
    with netns.entered(hosts.client_netns):
        check(SimpleNamespace(name="redis", port=ORACLE_PORT),
              SimpleNamespace(name="shardis", port=netns.ROUTER_PORT), script, protocol)


def test_pubsub_across_hosts(hosts: Hosts) -> None:
    """Subscribers and publishers on the client host; channels hashed to every worker."""
    publisher = hosts.cluster.client()
    pubsub = hosts.cluster.client().pubsub()
    channels = [key_on(k, "chan") for k in range(WORKERS)]
    try:
        pubsub.subscribe(*channels)
        pubsub.psubscribe("news.*")
        confirmed = [pubsub.get_message(timeout=5) for _ in range(WORKERS + 1)]
        assert [m and m["type"] for m in confirmed] == ["subscribe"] * WORKERS + ["psubscribe"]
        assert [publisher.publish(c, f"m{n}") for n, c in enumerate(channels)] == [1, 1, 1]
        assert publisher.publish("news.today", "extra") == 1
        assert publisher.pubsub_numsub(*channels) == [(c.encode(), 1) for c in channels]
        received = []
        deadline = time.monotonic() + 5
        while len(received) < 4 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                received.append((message["type"], message["channel"], message["data"]))
        assert received == [
            *[("message", c.encode(), f"m{n}".encode()) for n, c in enumerate(channels)],
            ("pmessage", b"news.today", b"extra")]
    finally:
        pubsub.close()
        publisher.close()


def test_blocking_pop_across_hosts(hosts: Hosts) -> None:
    """A BLPOP over keys of two workers, blocked, is served by a push from another client."""
    waiter, pusher = hosts.cluster.client(), hosts.cluster.client()
    keys = [key_on(2, "queue"), key_on(0, "queue")]
    popped: list[Any] = []
    thread = threading.Thread(target=lambda: popped.append(waiter.blpop(keys, timeout=8)))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while pusher.info("clients")["blocked_clients"] != 1:
            assert time.monotonic() < deadline, "BLPOP never blocked"
            time.sleep(0.02)
        assert pusher.rpush(keys[1], "job") == 1
    finally:
        thread.join(timeout=10)
        waiter.close()
        pusher.close()
    assert [list(item) for item in popped] == [[keys[1].encode(), b"job"]]


# A peer without the keys -------------------------------------------------------------------
PROBE = r"""
import json, sys, zmq
from shardis import protocol
address, server_key, router_public, router_secret, wait = sys.argv[1:6]
context = zmq.Context()
peers = {}
for name in ("plain", "own_keys", "router_keys"):
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if name != "plain":
        public, secret = ((router_public.encode(), router_secret.encode())
                          if name == "router_keys" else zmq.curve_keypair())
        sock.curve_serverkey = server_key.encode()
        sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.connect(address)
    peers[name] = sock
for name, sock in peers.items():
    # the stranger asks for changes; the control (the router's keys) only reads
    commands = ([(2, [b"GET", b"probe"])] if name == "router_keys" else
                [(2, [b"SET", sys.argv[6].encode(), b"evil"]), (2, [b"FLUSHALL"])])
    for codec in (protocol.MARSHAL, protocol.STRICT):
        try:
            sock.send(codec.encode_batch(1, commands), zmq.NOBLOCK)
        except zmq.Again:
            pass  # no handshake: not even queued
poller = zmq.Poller()
for sock in peers.values():
    poller.register(sock, zmq.POLLIN)
answered = {name: False for name in peers}
import time
deadline = time.monotonic() + float(wait)
while time.monotonic() < deadline:
    for sock, _ in poller.poll(100):
        answered[next(n for n, s in peers.items() if s is sock)] = True
        sock.recv()
print(json.dumps(answered))
"""


def test_a_peer_without_the_keys_gets_nothing(hosts: Hosts) -> None:
    """From a host of its own: a plain ZeroMQ DEALER and one with keys the worker does not
    list get no answer within a few seconds, and the worker's keys are unchanged; the same
    probe with the router's keys (the control) is answered, so silence means refusal."""
    topology, cluster = hosts.topology, hosts.cluster
    if "stranger" not in topology.hosts:
        topology.add_host("stranger", 99)
    client = cluster.client()
    victim = key_on(CUT, "victim")
    client.mset({victim: "safe", key_on(CUT, "other"): "kept"})
    size = client.dbsize()
    keys = cluster.keys
    result = topology.run("stranger", [
        sys.executable, "-c", PROBE, cluster.worker_addresses[CUT],
        (keys / f"w{CUT}.pub").read_text().strip(), (keys / "router.pub").read_text().strip(),
        (keys / "router.key").read_text().strip(), str(STRANGER_WAIT), victim])
    assert result.returncode == 0, result.stderr
    answered = json.loads(result.stdout)
    assert answered == {"plain": False, "own_keys": False, "router_keys": True}, answered
    assert client.get(victim) == b"safe"
    assert client.dbsize() == size
    client.close()
    refusals = [line for line in topology.log(f"w{CUT}.log").splitlines()
                if "refused a link handshake" in line]
    stranger = topology.hosts["stranger"].address
    assert any(f"address={stranger} " in line for line in refusals), refusals


# A cut link --------------------------------------------------------------------------------
@dataclass
class Probe:
    """One command during the outage: when it was sent (seconds after the cut), how long it
    took, and its reply (an exception's text for an error or a timeout)."""

    sent: float
    took: float
    reply: Any
    error: str | None


@dataclass
class Outage:
    """What the client saw around a cut of worker :data:`CUT`'s link."""

    written: dict[str, str] = field(default_factory=dict)
    first_down: Probe | None = None
    down_probes: list[Probe] = field(default_factory=list)
    #: (probe, its expected reply) on the other workers during the cut.
    others: list[tuple[Probe, Any]] = field(default_factory=list)
    #: commands over keys of the cut worker and another.
    spanning: list[Probe] = field(default_factory=list)
    info_down: str = ""
    restored_after: float | None = None
    back: Probe | None = None
    inflight: Probe | None = None
    after: dict[str, bytes | None] = field(default_factory=dict)
    info_up: str = ""


def _probe(hosts: Hosts, start: float, timeout: float, *command: str) -> Probe:
    """``command`` on a raw connection of its own, from the client host (a timed-out
    command stays with the router: the next probe must not queue behind it).  The reply is
    decoded; an error reply is kept as its exact text (``CLUSTERDOWN ...``), a timeout or a
    closed connection as ``no answer: ...``."""
    sent = time.monotonic()
    try:
        with netns.entered(hosts.client_netns):
            raw = RawClient(netns.ROUTER_PORT, hosts.cluster.router_address, timeout=timeout)
        with raw:
            value = decode(raw.call(*command))
        reply, error = (None, str(value)) if isinstance(value, RespError) else (value, None)
    except OSError as exc:
        reply, error = None, f"no answer: {exc}"
    return Probe(sent - start, time.monotonic() - sent, reply, error)


def _info_shards(hosts: Hosts) -> str:
    """INFO shards' text, or the error (or silence) that came instead."""
    probe = _probe(hosts, time.monotonic(), FAST * 2, "INFO", "shards")
    return probe.reply.decode() if isinstance(probe.reply, bytes) else f"({probe.error})"


def _is_clusterdown(probe: Probe) -> bool:
    return probe.error is not None and probe.error.startswith("CLUSTERDOWN ")


@pytest.fixture(scope="module")
def outage(hosts: Hosts) -> Outage:
    """Write keys on every worker, cut worker CUT's link, watch, restore it, watch again.
    Observations only: the tests below judge them."""
    seen = Outage()
    client = hosts.cluster.client()
    seen.written = {key_on(k, f"before{n}"): f"v{k}-{n}" for k in range(WORKERS)
                    for n in range(10)}
    assert client.mset(seen.written)  # acknowledged: must survive the cut
    assert client.mset({key: "old" for key in SPAN})
    seen.written.update({key: "old" for key in SPAN})
    for k in range(WORKERS):  # one at a time too (forwarded whole, not gated)
        assert client.set(key_on(k, "single"), f"one{k}")
        seen.written[key_on(k, "single")] = f"one{k}"
    client.close()
    hosts.topology.cut(f"w{CUT}")
    start = time.monotonic()
    try:
        inflight = _in_flight_write(hosts, start)
        _watch_the_cut(hosts, seen, start)
        time.sleep(max(0.0, start + CUT_FOR - time.monotonic()))
    finally:
        hosts.topology.restore(f"w{CUT}")
        seen.restored_after = time.monotonic() - start
    _watch_the_return(hosts, seen, time.monotonic())
    inflight.join(timeout=30)
    seen.inflight = inflight.probe
    check_client = hosts.cluster.client()
    keys = list(seen.written)
    seen.after = dict(zip(keys, check_client.mget(keys), strict=True))
    check_client.close()
    seen.info_up = _info_shards(hosts)
    return seen


class _InFlight(threading.Thread):
    """A command sent in the background (a write for a cut worker, sent before the router
    can know: in flight at the cut), with a long timeout; its :class:`Probe` when done."""

    def __init__(self, hosts: Hosts, start: float, *command: str) -> None:
        super().__init__(daemon=True)
        self.hosts, self.start_time, self.command = hosts, start, command
        self.probe: Probe | None = None

    def run(self) -> None:
        self.probe = _probe(self.hosts, self.start_time, 30, *self.command)


def _in_flight_write(hosts: Hosts, start: float) -> _InFlight:
    thread = _InFlight(hosts, start, "SET", key_on(CUT, "inflight"), "held")
    thread.start()
    return thread


def _watch_the_cut(hosts: Hosts, seen: Outage, start: float) -> None:
    """Probe the cut worker until it answers CLUSTERDOWN (or long past when it should),
    then its other commands; the other workers' reads and writes, and INFO shards (still
    within the cut, detected or not)."""
    while time.monotonic() - start < DETECT_WITHIN + FAST:
        probe = _probe(hosts, start, 0.25, "GET", key_on(CUT, "before0"))
        seen.down_probes.append(probe)
        if _is_clusterdown(probe):
            seen.first_down = probe
            break
    if seen.first_down is not None:  # then every command for it fails as fast
        for command in (("SET", key_on(CUT, "during"), "x"), ("INCR", key_on(CUT, "counter")),
                        ("LPUSH", key_on(CUT, "list"), "x")):
            seen.down_probes.append(_probe(hosts, start, FAST * 2, *command))
        for command in (("MGET", SPAN[0], SPAN[1]), ("MSET", SPAN[0], "new", SPAN[1], "new"),
                        ("DEL", *SPAN)):
            seen.spanning.append(_probe(hosts, start, FAST * 2, *command))
    _watch_the_others(hosts, seen, start)
    seen.info_down = _info_shards(hosts)


def _watch_the_others(hosts: Hosts, seen: Outage, start: float) -> None:
    """Reads and writes of the other workers' keys, one worker at a time and across them."""
    others = [k for k in range(WORKERS) if k != CUT]
    for k in others:
        seen.others.append((_probe(hosts, start, FAST * 2, "GET", key_on(k, "before3")),
                            f"v{k}-3".encode()))
        seen.others.append((_probe(hosts, start, FAST * 2, "SET", key_on(k, "during"), f"d{k}"),
                            "OK"))
        seen.written[key_on(k, "during")] = f"d{k}"
    pair = [key_on(k, "pair") for k in others]
    seen.others.append((_probe(hosts, start, FAST * 2, "MSET", *(
        part for key in pair for part in (key, f"p-{key}"))), "OK"))
    seen.others.append((_probe(hosts, start, FAST * 2, "MGET", *pair),
                        [f"p-{key}".encode() for key in pair]))
    seen.written.update({key: f"p-{key}" for key in pair})


def _watch_the_return(hosts: Hosts, seen: Outage, start: float) -> None:
    """Probe the worker until it serves again (or long past when it should)."""
    while time.monotonic() - start < RECOVER_WITHIN * 2:
        probe = _probe(hosts, start, 1.0, "GET", key_on(CUT, "before0"))
        if probe.error is None:
            seen.back = probe
            return
        time.sleep(0.1)


def _shard_line(info: str, index: int) -> str:
    match = re.search(rf"^shard{index}:(.*)$", info, re.M)
    return match.group(1).strip() if match else ""


def test_a_cut_link_gives_fast_errors_naming_the_worker(hosts: Hosts, outage: Outage) -> None:
    first = outage.first_down
    assert first is not None, (
        f"no CLUSTERDOWN for worker {CUT} within {DETECT_WITHIN + FAST}s of the cut: "
        f"{outage.down_probes}\n{hosts.cluster.logs()}")
    assert first.sent + first.took <= DETECT_WITHIN, outage.down_probes
    address = hosts.cluster.worker_addresses[CUT]
    later = outage.down_probes[outage.down_probes.index(first):]
    assert len(later) == 4
    for probe in later:
        assert _is_clusterdown(probe), probe
        assert re.search(rf"\bworker {CUT}\b", probe.error), probe.error
        assert address in probe.error, probe.error
        assert probe.took <= FAST, probe


def test_other_workers_keep_serving_during_the_cut(outage: Outage) -> None:
    """Reads and writes, on one of the other workers and across them, answered at once."""
    assert len(outage.others) == 2 * (WORKERS - 1) + 2
    for probe, expected in outage.others:
        assert probe.error is None and probe.reply == expected, (probe, expected)
        assert probe.took <= FAST, probe


def test_a_command_spanning_the_cut_worker_fails_whole(hosts: Hosts, outage: Outage) -> None:
    """MGET, MSET, DEL over a key of the cut worker and one of another: a fast CLUSTERDOWN,
    and nothing half done (the other key keeps its value: checked with every acknowledged
    key after the restore, in test_nothing_acknowledged_is_lost)."""
    assert outage.first_down is not None, "the cut was never detected (see above)"
    assert len(outage.spanning) == 3
    for probe in outage.spanning:
        assert _is_clusterdown(probe), probe
        assert re.search(rf"\bworker {CUT}\b", probe.error), probe.error
        assert probe.took <= FAST, probe


def test_info_shards_shows_the_link_down_during_the_cut(outage: Outage) -> None:
    """INFO shards answers during the cut: the cut worker's line says down, the others up."""
    assert "state=down" in _shard_line(outage.info_down, CUT), outage.info_down
    for k in range(WORKERS):
        if k != CUT:
            assert "state=up" in _shard_line(outage.info_down, k), outage.info_down


def test_info_shards_shows_the_link_up_after_with_rtt_and_reconnects(outage: Outage) -> None:
    for k in range(WORKERS):
        line = _shard_line(outage.info_up, k)
        assert "state=up" in line, outage.info_up
        assert re.search(r"(^|,)rtt_ms=\d+(\.\d+)?(,|$)", line), line
        assert re.search(r"(^|,)reconnects=\d+(,|$)", line), line
    reconnects = re.search(r"reconnects=(\d+)", _shard_line(outage.info_up, CUT))
    assert reconnects and int(reconnects.group(1)) >= 1, outage.info_up


def test_restoring_the_link_recovers_by_itself(hosts: Hosts, outage: Outage) -> None:
    assert outage.back is not None, (
        f"worker {CUT} did not serve again within {RECOVER_WITHIN * 2}s of the restore\n"
        f"{hosts.cluster.logs()}")
    assert outage.back.sent + outage.back.took <= RECOVER_WITHIN, outage.back
    assert outage.back.reply == outage.written[key_on(CUT, "before0")].encode()


def test_nothing_acknowledged_is_lost(outage: Outage) -> None:
    lost = {key: value for key, value in outage.written.items()
            if outage.after.get(key) != value.encode()}
    assert not lost, f"lost or changed after the cut: {lost}"
    assert len([k for k in outage.written if _SLOTS.worker_of(k.encode()) == CUT]) >= 11


def test_a_command_in_flight_at_the_cut_gets_its_real_reply(hosts: Hosts,
                                                            outage: Outage) -> None:
    """Sent right after the cut, before the router could know: held, and resent when the
    worker is back.  (Its packets may also reach the worker first on the old connection,
    which the router's kernel still retransmits once the link is up: the worker then runs
    it from there, and the router must recover its reply, as in the one-way cut below.)"""
    inflight = outage.inflight
    assert inflight is not None and inflight.sent < 0.5, inflight
    assert inflight.error is None and inflight.reply == "OK", inflight
    client = hosts.cluster.client()
    assert client.get(key_on(CUT, "inflight")) == b"held"
    client.close()


# A one-way cut: the worker runs a write, its reply never arrives --------------------------
def test_a_write_that_ran_but_whose_reply_was_lost_gets_its_real_reply(
        hosts: Hosts) -> None:
    """Worker CUT still receives but nothing it sends leaves (nftables drops its packets
    from the worker port): an INCR reaches it and runs (its AOF holds it), the reply and
    the heartbeats' answers are lost, the router declares the link down.  Once packets flow
    again, the client gets the INCR's real reply (1: it ran once), not an error, and the
    counter was incremented once, not twice."""
    reason = netns.nft_unavailable()
    if reason is not None:
        pytest.skip(reason)
    topology, cluster = hosts.topology, hosts.cluster
    counter = key_on(CUT, "oneway")
    topology.drop_sent(f"w{CUT}", netns.WORKER_PORT)
    start = time.monotonic()
    write = _InFlight(hosts, start, "INCR", counter)
    try:
        write.start()
        assert _wait_for_aof(topology, CUT, counter.encode()), "the INCR never reached the worker"
        detected = None
        while detected is None and time.monotonic() - start < DETECT_WITHIN + FAST:
            probe = _probe(hosts, start, 0.25, "GET", key_on(CUT, "before0"))
            detected = probe if _is_clusterdown(probe) else None
        assert detected is not None, f"the one-way cut was not detected\n{cluster.logs()}"
    finally:
        topology.stop_dropping(f"w{CUT}")
        write.join(timeout=30)
    assert write.probe is not None
    after = _probe(hosts, start, 5, "GET", counter)
    assert after.reply == b"1", (after, write.probe)  # ran once
    assert (write.probe.reply, write.probe.error) == (1, None), write.probe


def _wait_for_aof(topology: netns.Topology, worker: int, needle: bytes,
                  within: float = 5.0) -> bool:
    """Whether a file under the worker's data dir (its AOF) comes to hold ``needle``."""
    folder = topology.workdir / f"w{worker}-data"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for path in folder.rglob("*.aof"):
            if needle in path.read_bytes():
                return True
        time.sleep(0.05)
    return False


def _gone(pid: int, within: float = 5.0) -> bool:
    """Whether process ``pid`` exits (or is only a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z":
                return True
        except (FileNotFoundError, IndexError):
            return True
        time.sleep(0.05)
    return False


def _netns_of(maker: int) -> list[str]:
    return sorted(entry.name for entry in netns.NETNS_DIR.glob(f"{netns.PREFIX}-{maker}-*"))


def test_close_removes_namespaces_and_processes() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    topology = netns.Topology()
    try:
        topology.add_host("a", 50)
        sleeper = topology.spawn("a", ["sleep", "600"], "sleep.log")
        names = [topology.switch, topology.hosts["a"].netns]
        assert set(names) <= set(_netns_of(os.getpid()))
        deadline = time.monotonic() + 5  # ip netns exec: in the namespace once it ran
        while netns.ip("netns", "pids", names[1]).stdout.split() != [str(sleeper.pid)]:
            assert time.monotonic() < deadline, "the process is not in its host's namespace"
            time.sleep(0.05)
    finally:
        topology.close()
    assert sleeper.poll() is not None
    assert not set(names) & set(_netns_of(os.getpid()))
    assert not topology.workdir.exists()


CRASH = r"""
import os, signal
from tests import netns
topology = netns.Topology()
topology.add_host("a", 50)
print(topology.spawn("a", ["sleep", "600"], "sleep.log").pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_leaves_nothing_the_next_one_does_not_sweep() -> None:
    """A run killed outright (no finally, no atexit): its processes die with it, and the
    next run's sweep removes its namespaces and work dir."""
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    crashed = subprocess.Popen([sys.executable, "-c", CRASH], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parent.parent)
    out, err = crashed.communicate(timeout=60)
    maker = crashed.pid
    try:
        assert crashed.returncode == -9, err
        assert _gone(int(out.split()[0])), "the killed run's process outlived it"
        names = _netns_of(maker)
        assert len(names) == 2, names
        assert set(names) <= set(netns.sweep_stale())
        assert not _netns_of(maker)
        assert not list(Path(tempfile.gettempdir()).glob(f"{netns.PREFIX}-{maker}-*"))
    finally:
        for name in _netns_of(maker):
            netns.ip("netns", "del", name, check=False)
