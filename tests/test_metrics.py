"""The Prometheus endpoint: bucket conversions, then an HTTP scrape of a running server."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from shardis.metrics import ENV_PORT, batch_buckets, latency_buckets, metrics_port
from shardis.router.stats import histogram_key
from tests.servers import start_shardis


def test_latency_buckets_are_cumulative_seconds():
    histogram: dict[int, int] = {}
    for ns in (50_000, 200_000, 3_000_000, 2_000_000_000):
        key = histogram_key(ns)
        histogram[key] = histogram.get(key, 0) + 1
    buckets = dict(latency_buckets(histogram))
    assert buckets["0.0001"] == 1
    assert buckets["0.00025"] == 2
    assert buckets["0.0025"] == 2
    assert buckets["0.005"] == 3
    assert buckets["1.0"] == 4  # histograms hold 1 s at most, as Redis's
    assert buckets["+Inf"] == 4


def test_batch_buckets():
    sizes = [0] * 18
    sizes[1] = 5  # batches of 1 command
    sizes[3] = 2  # 4..7 commands
    sizes[17] = 1  # 65536 and more
    buckets = dict(batch_buckets(sizes))
    assert buckets["1"] == 5 and buckets["3"] == 5 and buckets["7"] == 7
    assert buckets["65535"] == 7 and buckets["+Inf"] == 8


def test_port_from_directive_or_environment(monkeypatch):
    monkeypatch.delenv(ENV_PORT, raising=False)
    assert metrics_port({}) == 0
    assert metrics_port({"metrics-port": 9121}) == 9121
    monkeypatch.setenv(ENV_PORT, "9200")
    assert metrics_port({"metrics-port": 0}) == 9200
    assert metrics_port({"metrics-port": 9121}) == 9121
    monkeypatch.setenv(ENV_PORT, "nope")
    assert metrics_port({}) == 0


def two_free_ports() -> tuple[int, int]:
    """Two distinct free ports (both held while the second is picked)."""
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        return first.getsockname()[1], second.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port, server_port = two_free_ports()
    previous = os.environ.get(ENV_PORT)
    os.environ[ENV_PORT] = str(port)
    try:
        server = start_shardis(3, port=server_port)
    finally:
        if previous is None:
            del os.environ[ENV_PORT]
        else:
            os.environ[ENV_PORT] = previous
    server.extra["metrics"] = port
    yield server
    server.stop()


def scrape(server) -> dict:
    """name -> [(labels, value)] from GET /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.extra['metrics']}/metrics",
                                timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    matches = [v for found, v in samples.get(name, []) if labels.items() <= found.items()]
    assert len(matches) == 1, (name, labels, samples.get(name))
    return matches[0]


def test_scrape_reports_commands_workers_and_clients(server):
    client = redis.Redis(port=server.port)
    client.flushall()
    client.config_resetstat()
    for key in ("x", "y", "z"):  # on workers 0, 1 and 2
        client.set(key, "v")
    client.set("{x}ttl", "v", ex=100)
    client.select(5)  # keys count in every database
    client.set("z", "in 5")
    client.select(0)
    client.get("x")
    client.get("nosuch")
    with pytest.raises(redis.ResponseError):
        client.lpush("x", "x")
    samples = scrape(server)
    assert value(samples, "shardis_commands_total", cmd="set") == 5
    assert value(samples, "shardis_commands_total", cmd="get") == 2
    assert value(samples, "shardis_command_errors_total", cmd="lpush") == 1
    assert value(samples, "shardis_command_duration_seconds_count", cmd="set") == 5
    assert value(samples, "shardis_command_duration_seconds_bucket", cmd="set", le="+Inf") == 5
    assert value(samples, "shardis_command_duration_seconds_sum", cmd="set") > 0
    keys = [value(samples, "shardis_keys", worker=str(w)) for w in range(3)]
    assert keys == [2, 1, 2]
    assert sum(value(samples, "shardis_expires", worker=str(w)) for w in range(3)) == 1
    assert all(value(samples, "shardis_worker_up", worker=str(w)) == 1 for w in range(3))
    assert all(value(samples, "shardis_worker_reconnects_total", worker=str(w)) == 0
               for w in range(3))
    assert all(value(samples, "shardis_memory_rss_bytes", worker=str(w)) > 0 for w in range(3))
    assert value(samples, "shardis_connected_clients") >= 1
    assert value(samples, "shardis_batch_commands_count") > 0
    assert value(samples, "shardis_aof_enabled") == 0
    client.close()


def test_expired_keys_are_counted_per_worker(server):
    client = redis.Redis(port=server.port)
    client.flushall()
    before = sum(value(scrape(server), "shardis_expired_keys_total", worker=str(w))
                 for w in range(3))
    client.set("gone", "v", px=1)
    time.sleep(0.05)
    assert client.get("gone") is None
    after = sum(value(scrape(server), "shardis_expired_keys_total", worker=str(w))
                for w in range(3))
    assert after == before + 1
    client.close()


def test_other_paths_are_not_found(server):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{server.extra['metrics']}/nope", timeout=10)
    assert info.value.code == 404


def shards_info(client: redis.Redis) -> dict:
    """INFO shards as {worker: {field: value as text}} (redis-py parses the lines)."""
    return {int(name.removeprefix("shard")): {key: str(value) for key, value in fields.items()}
            for name, fields in client.info("shards").items()}


def test_info_shards_lists_every_worker(server):
    client = redis.Redis(port=server.port)
    client.flushall()
    client.set("x", 1)
    client.set("y", 2, ex=100)
    shards = shards_info(client)
    assert sorted(shards) == [0, 1, 2]
    assert [shards[w]["slots"] for w in range(3)] == ["0-5461", "5462-10922", "10923-16383"]
    assert [int(shards[w]["keys"]) for w in range(3)] == [1, 1, 0]
    assert [int(shards[w]["expires"]) for w in range(3)] == [0, 1, 0]
    assert all(shards[w]["state"] == "up" and int(shards[w]["pid"]) > 0 for w in range(3))
    assert "shard0" not in client.info() and "shard0" not in client.info("everything")
    client.close()


def test_a_restarted_worker_counts_as_a_restart(server):
    """``shardis up`` restarts a worker that dies: INFO shards and the metrics say so."""
    client = redis.Redis(port=server.port)
    before = shards_info(client)
    pid = int(before[1]["pid"])
    os.kill(pid, 9)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        shards = shards_info(client)
        if shards[1].get("state") == "up" and int(shards[1].get("pid", pid)) != pid:
            break
    else:
        pytest.fail(f"worker 1 did not come back: {shards}")
    assert shards[1]["reconnects"] == "1" and shards[0]["reconnects"] == "0"
    samples = scrape(server)
    assert value(samples, "shardis_worker_reconnects_total", worker="1") == 1
    assert value(samples, "shardis_worker_up", worker="1") == 1
    client.close()
