"""maxmemory, eviction and memory accounting (INFO memory, MEMORY STATS/DOCTOR/USAGE).

Out-of-memory replies are compared byte for byte with real Redis 7.0 under ``maxmemory 1``
(both servers are over it whatever they hold, so the replies are deterministic); eviction is
checked by its shape per policy on a shardis of its own (which keys go, and that memory stays
under the limit); the accounting by a unit test of its invariant (the running count equals a
count from scratch after any sequence of writes)."""

from __future__ import annotations

import random
import socket
import time
import urllib.request

import pytest
import redis

from shardis.worker.shard import Shard
from tests.differential import check, script, sorted_
from tests.servers import free_port, start_redis, start_shardis
from tests.test_persistence_aof import tag_on

LIBRARY = (
    "#!lua name=memlib\n"
    "redis.register_function('w', function(k) return redis.call('set', k[1], 'v') end)\n"
    "redis.register_function{function_name='ro', callback=function(k) "
    "return redis.call('get', k[1]) end, flags={'no-writes'}}\n"
    "redis.register_function{function_name='oomok', callback=function(k) "
    "return redis.call('set', k[1], 'v') end, flags={'allow-oom'}}\n"
)

OOM = script(
    "oom",
    ["FUNCTION", "LOAD", "REPLACE", LIBRARY],
    ["SET", "before", "v"],
    ["RPUSH", "list", "a", "b"],
    # keys on three workers (3 workers: set1 and copy on 2, list1 and h1 on 0, dest, z1, h2
    # on 1): commands spanning workers are refused before any step, as Redis refuses them
    ["SADD", "set1", "a"], ["SADD", "h2", "b"], ["RPUSH", "list1", "x"],
    ["ZADD", "z1", "1", "m"], ["SET", "h1", "\x0f"],
    ["CONFIG", "SET", "maxmemory", "1"],
    ["SUNIONSTORE", "dest", "set1", "h2"],
    ["SINTERCARD", "2", "set1", "h2"],
    ["SMOVE", "set1", "h2", "a"],
    ["LMOVE", "list1", "dest", "LEFT", "RIGHT"],
    ["ZUNIONSTORE", "dest", "2", "z1", "set1"],
    ["COPY", "h1", "copy"],
    ["BITOP", "NOT", "dest", "h1"],
    ["RENAME", "h1", "copy"],
    ["MSET", "h1", "1", "dest", "2"],
    ["SORT", "list1", "ALPHA", "STORE", "dest"],
    sorted_("CONFIG", "GET", "maxmemory*"),
    ["SET", "k", "v"],
    ["GET", "before"],
    ["INCR", "n"],
    ["LPUSH", "list", "c"],
    ["LPOP", "list"],
    ["APPEND", "before", "x"],
    ["EXPIRE", "before", "100"],
    ["PERSIST", "before"],
    ["DEL", "before"],
    ["EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "k"],
    ["EVAL", "return redis.call('get', KEYS[1])", "1", "k"],
    ["EVAL", "redis.call('del', KEYS[1]); return redis.call('set', KEYS[1], 'y')", "1", "k"],
    ["GET", "k"],
    ["EVAL", "#!lua\nreturn redis.call('get', KEYS[1])", "1", "k"],
    ["EVAL", "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])", "1", "k"],
    ["EVAL", "#!lua flags=allow-oom\nreturn redis.call('set', KEYS[1], 'z')", "1", "k"],
    ["EVAL", "#!lua flags=allow-oom\nreturn redis.call('get', KEYS[1])", "1", "k"],
    ["FCALL", "w", "1", "k2"],
    ["FCALL", "ro", "1", "k"],
    ["FCALL", "oomok", "1", "k3"],
    ["FCALL_RO", "ro", "1", "k"],
    ["FUNCTION", "LOAD", "REPLACE", LIBRARY],
    ["CONFIG", "SET", "maxmemory", "0"],
    ["SET", "k", "v"],
    ["CONFIG", "SET", "maxmemory", "-1"],
    ["CONFIG", "SET", "maxmemory-samples", "0"],
    ["CONFIG", "SET", "maxmemory-samples", "65"],
    ["CONFIG", "SET", "maxmemory-eviction-tenacity", "101"],
    ["CONFIG", "SET", "maxmemory-samples", "10", "maxmemory-eviction-tenacity", "20"],
    sorted_("CONFIG", "GET", "maxmemory-*"),
    ["FUNCTION", "FLUSH"],
)


USAGE_ERRORS = script(
    "memory-usage-errors",
    ["SET", "k", "v"],
    ["MEMORY", "USAGE", "k", "SAMPLES"],
    ["MEMORY", "USAGE", "k", "SAMPLES", "x"],
    ["MEMORY", "USAGE", "k", "SAMPLES", "-1"],
    ["MEMORY", "USAGE", "k", "SAMPLE", "5"],
    ["MEMORY", "USAGE", "missing"],
    ["MEMORY", "USAGE", "missing", "SAMPLES", "0"],
    ["MEMORY", "USAGE"],
    ["MEMORY", "STATS", "extra"],
    ["MEMORY", "DOCTOR", "extra"],
    ["MEMORY", "NOPE"],
)


@pytest.fixture(scope="module")
def pair():
    servers = start_redis(), start_shardis(3)
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.parametrize("protocol", [2, 3])
def test_out_of_memory_replies_as_redis(pair, protocol):
    for server in pair:
        redis.Redis(port=server.port).flushall()
    check(pair[0], pair[1], OOM, protocol)


def _raw(sock, *args: bytes) -> bytes:
    sock.sendall(b"*%d\r\n" % len(args)
                 + b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args))
    data = b""
    while not data.endswith(b"\r\n"):
        data += sock.recv(65536)
    return data


def test_exec_refused_as_a_whole_when_memory_ran_out_after_queueing(pair):
    """MULTI; SET (queued while under the limit); memory runs out; EXEC: Redis's EXECABORT
    naming the OOM, and nothing of the transaction ran (keys on several workers)."""
    replies = []
    for server in pair:
        admin = redis.Redis(port=server.port)
        admin.flushall()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            steps = [_raw(sock, b"MULTI"), _raw(sock, b"SET", b"a", b"1"),
                     _raw(sock, b"SET", b"b", b"2"), _raw(sock, b"GET", b"c")]
            admin.config_set("maxmemory", 1)
            try:
                steps += [_raw(sock, b"EXEC"), _raw(sock, b"EXEC")]
            finally:
                admin.config_set("maxmemory", 0)
            steps += [_raw(sock, b"MULTI"), _raw(sock, b"SET", b"a", b"1"), _raw(sock, b"EXEC")]
        steps.append(admin.exists("b"))
        replies.append(steps)
    assert replies[1] == replies[0]
    assert replies[0][4].startswith(b"-EXECABORT Transaction discarded because of: OOM")


def test_memory_usage_errors_as_redis(pair):
    check(pair[0], pair[1], USAGE_ERRORS, 2)


def test_memory_usage_samples_all_elements_with_zero():
    """SAMPLES n extrapolates from n elements (5 by default), SAMPLES 0 counts them all."""
    shard = Shard(0)
    shard.execute(2, [b"RPUSH", b"l", *[b"x" * i for i in range(200)]])
    shard.execute(2, [b"HSET", b"h", *[part for i in range(200)
                                       for part in (b"f%d" % i, b"v" * i)]])
    for key in (b"l", b"h"):
        default = int(shard.execute(2, [b"MEMORY", b"USAGE", key])[1:-2])
        every = int(shard.execute(2, [b"MEMORY", b"USAGE", key, b"SAMPLES", b"0"])[1:-2])
        more = int(shard.execute(2, [b"MEMORY", b"USAGE", key, b"SAMPLES", b"100"])[1:-2])
        assert default < more < every  # the first elements are the small ones
        assert every > 200 * 100  # 200 elements of 100 bytes on average, at least


# Eviction by policy ----------------------------------------------------------------------------
LIMIT = 3 * 1024 * 1024
VALUE = b"x" * 100


@pytest.fixture(scope="module")
def evicting():
    server = start_shardis(2, "--maxmemory-samples", "10", "--metrics-port",
                           str(METRICS_PORT))
    yield redis.Redis(port=server.port)
    server.stop()


METRICS_PORT = free_port()


def _fresh(client: redis.Redis, policy: str) -> None:
    client.config_set("maxmemory", 0)
    client.flushall()
    client.config_set("maxmemory-policy", policy)
    client.config_resetstat()


def _fill(client: redis.Redis, prefix: str, count: int, ex: int | None = None) -> list[bool]:
    """SET ``prefix:i`` for i < count; which of them were accepted (not OOM)."""
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"{prefix}:{i}", VALUE, ex=ex)
    return [reply is True for reply in pipe.execute(raise_on_error=False)]


def _alive(client: redis.Redis, prefix: str, count: int) -> int:
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.exists(f"{prefix}:{i}")
    return sum(pipe.execute())


def _memory(client: redis.Redis) -> dict:
    return client.info("memory")


def _held_under_limit(client: redis.Redis) -> None:
    info = _memory(client)
    assert info["maxmemory"] == LIMIT
    # the last write accepted may take a worker a little past its share, as in Redis
    assert info["used_memory"] <= LIMIT * 1.01
    assert info["used_memory"] > LIMIT * 0.8  # full, not emptied


def test_allkeys_lru_keeps_recently_read_keys(evicting):
    _fresh(evicting, "allkeys-lru")
    _fill(evicting, "cold", 6000)
    time.sleep(1.1)  # the LRU clock has a one-second resolution, as Redis's
    pipe = evicting.pipeline(transaction=False)
    for i in range(500):
        pipe.get(f"cold:{i}")  # cold:0..499 become the hot ones
    pipe.execute()
    evicting.config_set("maxmemory", LIMIT)
    assert all(_fill(evicting, "new", 8000))  # nothing refused: keys were evicted instead
    _held_under_limit(evicting)
    evicted = evicting.info("stats")["evicted_keys"]
    assert evicted > 1000
    hot = _alive(evicting, "cold", 500)
    cold = _alive(evicting, "cold", 6000) - hot
    assert hot >= 490, hot
    assert cold / 5500 < 0.8 * hot / 500
    assert _alive(evicting, "new", 8000) >= 7900  # just written: not picked


def test_allkeys_lfu_keeps_frequently_read_keys(evicting):
    _fresh(evicting, "allkeys-lfu")
    evicting.config_set("lfu-log-factor", 0)  # every access counts: a clear difference
    try:
        _fill(evicting, "key", 6000)
        pipe = evicting.pipeline(transaction=False)
        for _ in range(20):
            for i in range(500):
                pipe.get(f"key:{i}")
        pipe.execute()
        evicting.config_set("maxmemory", LIMIT)
        assert all(_fill(evicting, "more", 8000))
        _held_under_limit(evicting)
        hot = _alive(evicting, "key", 500)
        assert hot >= 490, hot
    finally:
        evicting.config_set("lfu-log-factor", 10)


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-lfu", "volatile-random",
                                    "volatile-ttl"])
def test_volatile_policies_evict_only_keys_with_a_ttl(evicting, policy):
    _fresh(evicting, policy)
    _fill(evicting, "kept", 3000)
    _fill(evicting, "ttl", 3000, ex=100_000)
    evicting.config_set("maxmemory", LIMIT)
    accepted = _fill(evicting, "new", 12000)
    assert _alive(evicting, "kept", 3000) == 3000  # no TTL: never evicted
    assert _alive(evicting, "ttl", 3000) < 3000
    # once no key with a TTL is left, writes are refused as under noeviction
    assert not all(accepted)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        evicting.set("one-more", VALUE * 100)
    assert _memory(evicting)["used_memory"] <= LIMIT * 1.01


def test_volatile_ttl_evicts_the_nearest_deadlines_first(evicting):
    _fresh(evicting, "volatile-ttl")
    _fill(evicting, "soon", 4000, ex=1000)
    _fill(evicting, "late", 4000, ex=1_000_000)
    evicting.config_set("maxmemory", LIMIT)
    _fill(evicting, "plain", 4000)
    soon, late = _alive(evicting, "soon", 4000), _alive(evicting, "late", 4000)
    assert late > 3800 and soon < 3000, (soon, late)
    _held_under_limit(evicting)


def test_allkeys_random_holds_memory_under_the_limit(evicting):
    _fresh(evicting, "allkeys-random")
    evicting.config_set("maxmemory", LIMIT)
    assert all(_fill(evicting, "key", 16000))
    _held_under_limit(evicting)
    alive = _alive(evicting, "key", 16000)
    assert 8000 < alive < 16000
    assert evicting.info("stats")["evicted_keys"] == 16000 - alive
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics") as response:
        text = response.read().decode()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line.startswith("shardis_")}
    evicted = [samples[f'shardis_evicted_keys_total{{worker="{w}"}}'] for w in (0, 1)]
    assert sum(evicted) == 16000 - alive and min(evicted) > 0  # both workers evicted
    for worker in (0, 1):
        assert samples[f'shardis_maxmemory_bytes{{worker="{worker}"}}'] == LIMIT // 2
        assert samples[f'shardis_used_memory_bytes{{worker="{worker}"}}'] <= LIMIT // 2 * 1.01


def test_noeviction_refuses_writes_and_keeps_every_key(evicting):
    _fresh(evicting, "noeviction")
    evicting.config_set("maxmemory", LIMIT)
    accepted = _fill(evicting, "key", 16000)
    assert not all(accepted)
    assert _alive(evicting, "key", 16000) == sum(accepted)
    assert evicting.info("stats")["evicted_keys"] == 0
    assert evicting.get("key:0") == VALUE  # reads go on
    evicting.delete("key:0", "key:1")  # and deletes
    _held_under_limit(evicting)


def test_a_write_across_workers_is_refused_whole_when_one_is_out_of_memory(evicting):
    """MSET over two workers, one of them full under noeviction: nothing is written (each
    worker deciding alone would have written the other's half)."""
    _fresh(evicting, "noeviction")
    evicting.config_set("maxmemory", LIMIT)
    full, fine = tag_on(0), tag_on(1)
    pipe = evicting.pipeline(transaction=False)
    for i in range(16000):
        pipe.set(f"{{{full}}}{i}", VALUE)
    assert not all(reply is True for reply in pipe.execute(raise_on_error=False))
    assert evicting.set(f"{{{fine}}}alone", 1)  # the other worker has room
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        evicting.mset({f"{{{full}}}m": 1, f"{{{fine}}}m": 1})
    assert evicting.get(f"{{{fine}}}m") is None
    assert evicting.delete(f"{{{full}}}0", f"{{{fine}}}alone") == 2  # DEL still goes


def test_lowering_maxmemory_evicts_at_once_and_events_say_evicted(evicting):
    _fresh(evicting, "allkeys-lru")
    evicting.config_set("notify-keyspace-events", "Ee")
    pubsub = evicting.pubsub()
    pubsub.subscribe("__keyevent@0__:evicted")
    try:
        _fill(evicting, "key", 12000)
        evicting.config_set("maxmemory", LIMIT)  # over it: evictions start without a write
        deadline = time.monotonic() + 10
        while _memory(evicting)["used_memory"] > LIMIT and time.monotonic() < deadline:
            time.sleep(0.05)
        _held_under_limit(evicting)
        evicted = evicting.info("stats")["evicted_keys"]
        seen = set()
        while len(seen) < evicted:
            message = pubsub.get_message(timeout=5)
            if message is None:
                break
            if message["type"] == "message":
                seen.add(message["data"])
        assert len(seen) == evicted > 0
        assert not any(evicting.exists(key) for key in list(seen)[:50])
    finally:
        pubsub.close()
        evicting.config_set("notify-keyspace-events", "")


# What used_memory counts -------------------------------------------------------------------------
def test_used_memory_counts_the_data_not_the_interpreters(evicting):
    _fresh(evicting, "noeviction")
    empty = _memory(evicting)
    assert empty["used_memory"] < 64 * 1024
    assert empty["used_memory_rss"] > 10 * 1024 * 1024  # the processes themselves
    _fill(evicting, "key", 10000)
    full = _memory(evicting)
    per_key = (full["used_memory"] - empty["used_memory"]) / 10000
    assert 100 + 66 < per_key < 500, per_key  # the bytes, their headers, the tables
    stats = evicting.memory_stats()
    assert stats["keys.count"] == 10000
    assert abs(stats["total.allocated"] - full["used_memory"]) < 4096
    assert stats["dataset.bytes"] + stats["overhead.total"] == stats["total.allocated"]
    usage = evicting.memory_usage("key:1")
    assert 100 < usage < 400
    evicting.flushall()
    assert _memory(evicting)["used_memory"] < 64 * 1024  # given back, unlike the RSS
    assert _memory(evicting)["used_memory_peak"] >= full["used_memory"]


def test_memory_doctor_and_stats_shapes(evicting):
    _fresh(evicting, "noeviction")
    assert evicting.execute_command("MEMORY", "DOCTOR").startswith(b"Hi Sam, this instance is")
    _fill(evicting, "key", 30000)
    assert evicting.execute_command("MEMORY", "DOCTOR") == (
        b"Hi Sam, I can't find any memory issue in your instance. I can only account for what "
        b"occurs on this base.\n")
    stats = evicting.memory_stats()
    assert list(stats)[:10] == [
        "peak.allocated", "total.allocated", "startup.allocated", "replication.backlog",
        "clients.slaves", "clients.normal", "cluster.links", "aof.buffer", "lua.caches",
        "functions.caches"]
    assert stats["db.0"]["overhead.hashtable.main"] > 0


# The accounting's invariant ---------------------------------------------------------------------
def _random_command(rng: random.Random) -> list[bytes]:
    key = b"k%d" % rng.randrange(20)
    value = b"v" * rng.randrange(0, 300)
    member = b"m%d" % rng.randrange(30)
    return rng.choice([
        [b"SET", key, value], [b"APPEND", key, value], [b"SETRANGE", key, b"5", value],
        [b"DEL", key], [b"INCR", key], [b"RPUSH", key, value, member], [b"LPOP", key],
        [b"HSET", key, member, value], [b"HDEL", key, member], [b"SADD", key, member],
        [b"SREM", key, member], [b"ZADD", key, b"1", member], [b"ZREM", key, member],
        [b"XADD", key, b"*", member, value], [b"PFADD", key, member], [b"SETBIT", key, b"99",
                                                                           b"1"],
        [b"EXPIRE", key, b"100"], [b"RENAME", key, b"k%d" % rng.randrange(20)],
        [b"COPY", key, b"k%d" % rng.randrange(20), b"REPLACE"], [b"MOVE", key, b"1"],
        [b"SELECT", b"%d" % rng.randrange(2)], [b"SWAPDB", b"0", b"1"], [b"FLUSHDB"],
        [b"GETDEL", key], [b"LMOVE", key, b"k%d" % rng.randrange(20), b"LEFT", b"RIGHT"],
        [b"SUNIONSTORE", key, key, b"k%d" % rng.randrange(20)],
    ])


def test_running_count_equals_a_count_from_scratch():
    shard = Shard(0)
    rng = random.Random(7)
    for step in range(6000):
        shard.execute(2, _random_command(rng))
        if step % 500 == 0 or step == 5999:
            for db in shard.keyspaces():
                counted = db.memory()[0]
                db.recount()
                assert counted == db.used, (step, db.index)
    assert any(db.used for db in shard.keyspaces())


def test_deleted_collections_leave_nothing_in_the_accounting():
    """A collection written then deleted, many times over, leaves no key behind in the
    tables that count memory (``resized`` kept every one until someone looked)."""
    shard = Shard(0)
    for i in range(2000):
        shard.execute_batch([(2, [b"RPUSH", b"l%d" % i, b"x"]), (2, [b"DEL", b"l%d" % i])])
    db = shard.db
    assert not db.resized and not db.sizes and not db.data
