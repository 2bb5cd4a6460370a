"""A Prometheus endpoint: ``GET /metrics`` on ``metrics-port`` (0, the default: off).

Served by the router's own event loop (no thread): each scrape asks every worker for its
counters (``__info``, as INFO does), then renders, with prometheus_client, what the router
already keeps.  Nothing is counted for Prometheus on the command path: calls and latencies
are INFO commandstats' (``shardis.router.stats``), read at scrape time, so a scrape costs
the server one INFO and an unscraped endpoint costs nothing.

The port comes from the ``metrics-port`` directive, or the ``SHARDIS_METRICS_PORT``
environment variable when the directive is 0 (for a server started without the flag).

Metrics (all prefixed ``shardis_``): ``commands_total`` and ``command_errors_total``
(label ``cmd``, the lowercase command name, ``client|list`` for a subcommand),
``command_duration_seconds`` (a histogram per command, end to end at the router),
``connected_clients``, ``keys`` / ``expires`` / ``memory_rss_bytes`` / ``used_memory_bytes`` /
``maxmemory_bytes`` /
``expired_keys_total`` / ``evicted_keys_total`` (label ``worker``), ``worker_up``,
``worker_reconnects_total``, ``worker_rtt_seconds``, ``rdb_changes_since_last_save`` / ``rdb_last_save_timestamp``
/ ``rdb_last_bgsave_ok`` (label ``worker``), ``aof_enabled``, and ``batch_commands``
(a histogram of how many commands each message to a worker carried).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shardis.config import DIRECTIVES, Directive

log = logging.getLogger("shardis.metrics")

ENV_PORT = "SHARDIS_METRICS_PORT"
DIRECTIVES.setdefault("metrics-port", Directive(
    "metrics-port", 0, "int", 0, 65535, mutable=False,
    help="port of the Prometheus endpoint /metrics (0: none)"))

#: Upper bounds of the command latency buckets, in seconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0)
#: How long a scrape waits for the workers' counters.
WORKER_TIMEOUT = 5.0


def metrics_port(config: dict[str, Any]) -> int:
    """The directive, else the environment variable, else 0 (no endpoint)."""
    port = int(config.get("metrics-port", 0) or 0)
    if not port:
        try:
            port = int(os.environ.get(ENV_PORT, "0"))
        except ValueError:
            log.warning("%s is not a port number: no metrics endpoint", ENV_PORT)
            port = 0
    return port


def latency_buckets(histogram: dict[int, int]) -> list[tuple[str, int]]:
    """Cumulative counts at :data:`LATENCY_BUCKETS` from an ns-keyed histogram (a bucket's
    values all count where its lowest value falls)."""
    out = []
    keys = sorted(histogram)
    index, seen = 0, 0
    for bound in LATENCY_BUCKETS:
        limit = bound * 1e9
        while index < len(keys) and keys[index] <= limit:
            seen += histogram[keys[index]]
            index += 1
        out.append((repr(bound), seen))
    out.append(("+Inf", sum(histogram.values())))
    return out


def batch_buckets(sizes: list[int]) -> list[tuple[str, int]]:
    """``sizes[b]``: batches of 2**(b-1) .. 2**b - 1 commands (the last: all larger ones)
    -> cumulative Prometheus buckets with upper bounds 1, 3, 7, 15... (inclusive)."""
    out, seen = [], 0
    for bits, count in enumerate(sizes[:-1]):
        seen += count
        if bits:
            out.append((str((1 << bits) - 1), seen))
    out.append(("+Inf", seen + sizes[-1]))
    return out


class ShardisCollector:
    """Renders the router's state and the last scrape's worker counters."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.shards: list[Any] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.command_metrics()
        yield from self.worker_metrics()
        router = self.router
        clients = GaugeMetricFamily("shardis_connected_clients", "Clients connected")
        clients.add_metric([], len(router.clients))
        yield clients
        sizes = router.observer.batch_sizes
        batches = HistogramMetricFamily(
            "shardis_batch_commands", "Commands per message the router sent to a worker")
        batches.add_metric([], batch_buckets(sizes), sum_value=router.observer.batched)
        yield batches

    def command_metrics(self) -> Iterator[Metric]:
        from shardis.router.stats import _ordered, with_script_calls

        calls = CounterMetricFamily("shardis_commands", "Commands run, by command", labels=["cmd"])
        failed = CounterMetricFamily("shardis_command_errors",
                                     "Commands that failed or were refused", labels=["cmd"])
        latency = HistogramMetricFamily(
            "shardis_command_duration_seconds",
            "Command latency at the router, from read to reply", labels=["cmd"])
        for spec, stat in _ordered(with_script_calls(self.router.observer, self.shards)):
            name = spec.fullname
            calls.add_metric([name], stat.calls)
            failed.add_metric([name], stat.failed + stat.rejected)
            if stat.histogram:
                latency.add_metric([name], latency_buckets(stat.histogram),
                                   sum_value=stat.usec / 1_000_000)
        yield from (calls, failed, latency)

    def worker_metrics(self) -> Iterator[Metric]:
        router = self.router
        families = {
            name: GaugeMetricFamily(f"shardis_{name}", text, labels=["worker"])
            for name, text in (
                ("keys", "Keys held by the worker, in every database"),
                ("expires", "Keys with a TTL held by the worker, in every database"),
                ("memory_rss_bytes", "Resident memory of the worker process"),
                ("used_memory_bytes", "Memory the worker's keys, values and tables take"),
                ("maxmemory_bytes", "The worker's share of maxmemory (0: no limit)"),
                ("rdb_changes_since_last_save", "Writes since the worker's last snapshot"),
                ("rdb_last_save_timestamp", "When the worker's last snapshot was written"),
                ("rdb_last_bgsave_ok", "1 when the worker's last background save succeeded"),
                ("worker_up", "1 when the router is connected to the worker"),
                ("worker_rtt_seconds", "Round-trip time of the router's last PING to the worker"),
            )
        }
        counters = {
            name: CounterMetricFamily(f"shardis_{name}", text, labels=["worker"])
            for name, text in (
                ("expired_keys", "Keys the worker expired"),
                ("evicted_keys", "Keys the worker evicted under maxmemory"),
                ("worker_reconnects", "Times the link came back after its first connection "
                                      "(a restart, or a network cut)"),
            )
        }
        fields = {"memory_rss_bytes": b"used_memory_rss",
                  "rdb_changes_since_last_save": b"rdb_changes_since_last_save",
                  "rdb_last_save_timestamp": b"rdb_last_save_time",
                  "rdb_last_bgsave_ok": b"rdb_last_bgsave_ok"}
        connects = router.observer.worker_connects
        for index, link in enumerate(router.links):
            label = [str(index)]
            shard = self.shards[index] if index < len(self.shards) else None
            up = link.down_error is None and link.refused is None and not link.verifying
            families["worker_up"].add_metric(label, int(up and isinstance(shard, dict)))
            counters["worker_reconnects"].add_metric(label, max(connects.get(index, 0) - 1, 0))
            if link.rtt_ms is not None:
                families["worker_rtt_seconds"].add_metric(label, link.rtt_ms / 1000)
            if not isinstance(shard, dict):
                continue
            databases = shard.get(b"databases", [])  # (number, keys, expires, avg_ttl)
            families["keys"].add_metric(label, sum(entry[1] for entry in databases))
            families["expires"].add_metric(label, sum(entry[2] for entry in databases))
            for name, field in fields.items():
                if field in shard:
                    families[name].add_metric(label, shard[field])
            counters["expired_keys"].add_metric(label, shard.get(b"expired_keys", 0))
            memory = shard.get(b"memory", {})
            counters["evicted_keys"].add_metric(label, memory.get(b"evicted_keys", 0))
            families["used_memory_bytes"].add_metric(
                label, memory.get(b"dataset", 0) + memory.get(b"overhead", 0))
            families["maxmemory_bytes"].add_metric(label, memory.get(b"limit", 0))
        aof = GaugeMetricFamily("shardis_aof_enabled", "1 when appendonly is on")
        aof.add_metric([], int(bool(router.config.get("appendonly"))))
        yield from families.values()
        yield from counters.values()
        yield aof


class MetricsServer:
    """The HTTP listener: ``GET /metrics`` (and ``/``), everything else 404."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.collector = ShardisCollector(router)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)  # type: ignore[arg-type]
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, host, port, reuse_address=True)
        log.info("metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def scrape(self) -> bytes:
        """The workers' counters now (a worker that does not answer is reported down)."""
        router = self.router
        calls = [router.call(index, [b"__info"]) for index in range(len(router.links))]
        done, _ = await asyncio.wait(calls, timeout=WORKER_TIMEOUT)
        self.collector.shards = [call.result() if call in done else None for call in calls]
        return generate_latest(self.registry)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, _, rest = request.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method not in (b"GET", b"HEAD") or path not in (b"/metrics", b"/"):
                writer.write(_response(b"404 Not Found", b"text/plain", b"not found\n"))
            else:
                body = await self.scrape()
                writer.write(_response(b"200 OK", CONTENT_TYPE_LATEST.encode(),
                                       b"" if method == b"HEAD" else body, len(body)))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError):
            pass
        finally:
            writer.close()


def _response(status: bytes, content_type: bytes, body: bytes, length: int = -1) -> bytes:
    size = len(body) if length < 0 else length
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type +
            b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size + body)


def start(router: Any) -> MetricsServer | None:
    """Listen on the metrics port, if one is set (on the router's bind address)."""
    port = metrics_port(router.config)
    if not port:
        return None
    server = MetricsServer(router)
    host = str(router.config.get("bind", "127.0.0.1")).split()[0]

    async def listen() -> None:
        try:
            await server.start(host, port)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d: %s", host, port, exc)

    router.loop.create_task(listen())
    return server
