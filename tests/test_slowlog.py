"""SLOWLOG, LATENCY and INFO commandstats/latencystats: the pure helpers, then a server.

Commands are timed end to end at the router, the worker's time included: DEBUG SLEEP stops
the workers, so a command sent meanwhile is slow, whichever worker holds its key.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque

import pytest
import redis

from shardis.config import ConfigError
from shardis.router.debug import _c_atoi, _c_double, quicklist_fields
from shardis.router.stats import (
    LatencySeries,
    Observer,
    cumulative_usec,
    format_percentile,
    highest_equivalent,
    histogram_key,
    latency_graph_text,
    parse_percentiles,
    redacted_args,
    slowlog_args,
    value_at_percentile,
)
from tests.servers import start_shardis


# Pure helpers --------------------------------------------------------------------------------
def test_slowlog_args_trims_as_redis():
    args = [b"RPUSH", b"k", *[b"%d" % i for i in range(40)]]
    trimmed = slowlog_args(args)
    assert len(trimmed) == 32
    assert trimmed[:31] == args[:31]
    assert trimmed[31] == b"... (11 more arguments)"
    assert slowlog_args([b"SET", b"x" * 129]) == [b"SET", b"x" * 128 + b"... (1 more bytes)"]
    assert slowlog_args([b"SET", b"x" * 128]) == [b"SET", b"x" * 128]
    exact = [b"A"] * 32
    assert slowlog_args(exact) == exact


def test_credentials_are_redacted():
    assert redacted_args([b"AUTH", b"pw"]) == [b"AUTH", b"(redacted)"]
    assert redacted_args([b"auth", b"u", b"pw"]) == [b"auth", b"(redacted)", b"(redacted)"]
    assert redacted_args([b"HELLO", b"3", b"SETNAME", b"auth", b"AUTH", b"u", b"p"]) == \
        [b"HELLO", b"3", b"SETNAME", b"auth", b"AUTH", b"(redacted)", b"(redacted)"]
    assert redacted_args([b"HELLO", b"3", b"AUTH", b"u"]) == [b"HELLO", b"3", b"AUTH", b"u"]
    assert redacted_args([b"GET", b"auth"]) == [b"GET", b"auth"]


def test_histogram_keeps_two_significant_digits_as_hdr():
    assert histogram_key(0) == 1
    assert histogram_key(200) == 200
    assert histogram_key(1001) == 1000
    assert highest_equivalent(histogram_key(1001)) == 1003  # Redis's p50=1.003
    assert highest_equivalent(histogram_key(3000)) == 3007
    assert histogram_key(5 * 10**9) == histogram_key(10**9)
    for value in (300, 12_345, 987_654, 123_456_789):
        low = histogram_key(value)
        assert low <= value <= highest_equivalent(low)
        assert (highest_equivalent(low) - low) / value < 0.01


def test_percentiles_and_cumulative_buckets():
    histogram: dict[int, int] = {}
    for value in [1000] * 98 + [50_000, 2_000_000]:
        key = histogram_key(value)
        histogram[key] = histogram.get(key, 0) + 1
    assert value_at_percentile(histogram, 50) == 1003
    assert value_at_percentile(histogram, 99) == highest_equivalent(histogram_key(50_000))
    assert value_at_percentile(histogram, 100) == highest_equivalent(histogram_key(2_000_000))
    buckets = cumulative_usec(histogram)
    assert buckets[0] == (1, 98)
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)
    assert buckets[-1][1] == 100


def test_percentile_directive():
    assert parse_percentiles("50 99 99.9") == (50.0, 99.0, 99.9)
    assert parse_percentiles("") == ()
    with pytest.raises(ConfigError, match="Invalid"):
        parse_percentiles("abc")
    with pytest.raises(ConfigError, match="between"):
        parse_percentiles("100.5")
    assert [format_percentile(v) for v in (50.0, 99.9, 100.0, 0.5)] == \
        ["50", "99.9", "100", "0.5"]


def test_latency_series_keeps_one_sample_per_second():
    series = LatencySeries()
    series.add(100, 5)
    series.add(100, 3)
    series.add(100, 9)
    series.add(101, 2)
    assert [list(s) for s in series.samples] == [[100, 9], [101, 2]]
    assert series.max == 9
    for second in range(200, 400):
        series.add(second, 1)
    assert len(series.samples) == 160


def test_latency_graph_draws_as_redis():
    series = LatencySeries()
    series.add(1000, 10)
    series.add(1001, 40)
    text = latency_graph_text("command", series, 1030)
    lines = text.split("\n")
    assert lines[0] == "command - high 40 ms, low 10 ms (all time high 40 ms)"
    assert lines[1] == "-" * 80
    assert lines[2:6] == [" #", " |", " |", "_|"]
    assert lines[6:10] == ["  ", "32", "09", "ss"]  # "30s" and "29s" ago, downwards


class _Router:
    def __init__(self, **config):
        self.config = {"slowlog-log-slower-than": 0, "slowlog-max-len": 2,
                       "latency-monitor-threshold": 0, **config}


class _Client:
    addr = "127.0.0.1:5000"
    name = b"me"


class _Reply:
    def __init__(self, cmd, argv, started, data=b"+OK\r\n"):
        self.cmd, self.argv, self.started, self.data = cmd, argv, started, data
        self.client = _Client()


def test_observer_counts_logs_and_trims():
    from shardis.commands import COMMANDS, load_families

    load_families()
    get, lpush = COMMANDS[b"get"], COMMANDS[b"lpush"]
    observer = Observer(_Router())
    start = time.monotonic() - 0.002
    observer.replied([
        _Reply(get, [b"GET", b"a"], start),
        _Reply(lpush, [b"LPUSH", b"a", b"x"], start, b"-WRONGTYPE Operation\r\n"),
        _Reply(None, None, start, b"-ERR unknown command\r\n"),
        _Reply(get, [b"GET", b"b"], None),  # a blocking command: not timed
    ])
    assert (observer.commands[get].calls, observer.commands[get].failed) == (2, 0)
    assert observer.commands[get].usec >= 2000
    assert (observer.commands[lpush].calls, observer.commands[lpush].failed) == (1, 1)
    assert observer.errors == {"WRONGTYPE": 1, "ERR": 1}
    assert len(observer.slowlog) == 2  # slowlog-max-len
    assert observer.slowlog[0][3] == [b"LPUSH", b"a", b"x"]
    assert observer.slowlog[0][4:] == [b"127.0.0.1:5000", b"me"]
    assert observer.slowlog[0][0] == 1
    observer.rejected(get)
    assert observer.commands[get].rejected == 1
    observer.reset()
    assert not observer.commands and not observer.errors
    assert len(observer.slowlog) == 2  # RESETSTAT leaves the slow log


def test_a_pipelined_run_shares_its_time_among_its_calls():
    """1,000 SETs read together and answered 20 ms later took 20 us each, not 20 ms: a
    ``redis-cli --pipe`` load does not fill the slow log (Redis times each execution)."""
    from shardis.commands import COMMANDS, load_families

    load_families()
    set_spec = COMMANDS[b"set"]
    observer = Observer(_Router(**{"slowlog-log-slower-than": 1000, "slowlog-max-len": 128}))
    start = time.monotonic() - 0.020
    observer.replied([_Reply(set_spec, [b"SET", b"k%d" % i, b"v"], start) for i in range(1000)])
    stat = observer.commands[set_spec]
    assert stat.calls == 1000 and 20_000 <= stat.usec < 1_000_000
    assert not observer.slowlog
    observer.replied([_Reply(set_spec, [b"SET", b"alone", b"v"], start)])
    assert len(observer.slowlog) == 1  # one call that took 20 ms is slow


def test_observer_latency_events_follow_the_threshold():
    from shardis.commands import COMMANDS, load_families

    load_families()
    observer = Observer(_Router(**{"latency-monitor-threshold": 1,
                                   "slowlog-log-slower-than": -1}))
    start = time.monotonic() - 0.005
    observer.replied([_Reply(COMMANDS[b"get"], [b"GET", b"a"], start),
                      _Reply(COMMANDS[b"keys"], [b"KEYS", b"*"], start),
                      _Reply(COMMANDS[b"get"], [b"GET", b"a"], time.monotonic())])
    assert set(observer.events) == {"fast-command", "command"}
    assert observer.events["fast-command"].samples[-1][1] >= 5
    assert not observer.slowlog


# A server with DEBUG ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    server = start_shardis(3, "--enable-debug-command", "yes")
    yield server
    server.stop()


@pytest.fixture
def client(server):
    client = redis.Redis(port=server.port)
    client.flushall()
    client.slowlog_reset()
    client.latency_reset()
    yield client
    client.config_set("slowlog-log-slower-than", 10000)
    client.config_set("slowlog-max-len", 128)
    client.config_set("latency-monitor-threshold", 0)
    client.close()


def _while_sleeping(port: int, seconds: float, action) -> None:
    """Run ``action`` while another connection's DEBUG SLEEP holds every worker."""
    sleeper = threading.Thread(
        target=lambda: redis.Redis(port=port).execute_command("DEBUG", "SLEEP", seconds))
    sleeper.start()
    time.sleep(0.05)
    try:
        action()
    finally:
        sleeper.join()


def test_slowlog_get_with_redis_py_times_the_worker_hop(server, client):
    client.config_set("slowlog-log-slower-than", 250_000)  # 0.25 s
    keys = ["x", "y", "z"]  # on workers 0, 1 and 2
    _while_sleeping(server.port, 0.6, lambda: [client.set(key, "v") for key in keys])
    client.get("x")  # fast: not logged
    entries = client.slowlog_get()
    commands = [entry["command"] for entry in entries]
    assert b"SET x v" in commands
    assert all(b"GET" not in command for command in commands)
    slow = next(entry for entry in entries if entry["command"] == b"SET x v")
    assert slow["duration"] >= 250_000
    assert slow["client_address"].startswith(b"127.0.0.1:")
    assert abs(slow["start_time"] - time.time()) < 10
    assert [entry["id"] for entry in entries] == sorted((e["id"] for e in entries),
                                                        reverse=True)
    assert client.slowlog_len() == len(entries)
    assert client.slowlog_reset() and client.slowlog_len() == 0


def test_slowlog_names_the_client_and_trims(client):
    client.client_setname("reporter")
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 2)
    client.set("k1", "v")
    client.set("k2", "v")
    client.set("k3", "x" * 300)
    client.config_set("slowlog-log-slower-than", -1)
    entries = client.slowlog_get(-1)
    assert len(entries) == 2
    assert [entry["client_name"] for entry in entries] == [b"reporter", b"reporter"]
    assert entries[0]["command"] == b"SET k3 " + b"x" * 128 + b"... (172 more bytes)"
    assert entries[1]["command"] == b"SET k2 v"


def test_latency_monitor_records_slow_commands(server, client):
    client.config_set("latency-monitor-threshold", 50)
    _while_sleeping(server.port, 0.2, lambda: client.get("b"))
    latest = client.execute_command("LATENCY", "LATEST")
    events = {entry[0]: entry for entry in latest}
    assert b"fast-command" in events or "fast-command" in events
    event = events.get(b"fast-command") or events["fast-command"]
    assert event[2] >= 50 and event[3] >= event[2]
    history = client.execute_command("LATENCY", "HISTORY", "fast-command")
    assert history and history[-1][1] >= 50
    graph = client.execute_command("LATENCY", "GRAPH", "fast-command")
    assert "fast-command - high" in (graph.decode() if isinstance(graph, bytes) else graph)
    doctor = client.execute_command("LATENCY", "DOCTOR")
    text = doctor.decode() if isinstance(doctor, bytes) else doctor
    # DEBUG SLEEP's own "command" event may come first or second.
    assert re.search(r"^[12]\. fast-command: 1 latency spikes", text, re.M), text
    assert client.execute_command("LATENCY", "RESET", "FAST-COMMAND") == 1
    # DEBUG SLEEP itself was a slow (not fast) command, and its workers' batches were slow.
    events = {entry[0]: entry for entry in client.execute_command("LATENCY", "LATEST")}
    assert set(events) == {b"command", b"worker-batch"}
    assert events[b"worker-batch"][3] >= 150
    doctor = client.execute_command("LATENCY", "DOCTOR")
    doctor = doctor.decode() if isinstance(doctor, bytes) else str(doctor)
    assert "worker-batch: " in doctor and "A worker was slow" in doctor
    assert client.execute_command("LATENCY", "RESET") == 2
    assert client.execute_command("LATENCY", "LATEST") == []


def test_info_commandstats_and_latencystats(client):
    client.config_resetstat()
    client.set("a", "1")
    client.mget("a", "b", "c")
    with pytest.raises(redis.ResponseError):
        client.execute_command("GET")
    with pytest.raises(redis.ResponseError):
        client.lpush("a", "x")
    info = client.info("commandstats")
    assert info["cmdstat_set"]["calls"] == 1
    assert info["cmdstat_mget"]["calls"] == 1
    assert info["cmdstat_get"]["rejected_calls"] == 1
    assert info["cmdstat_lpush"]["failed_calls"] == 1
    assert info["cmdstat_set"]["usec"] > 0
    latency = client.info("latencystats")
    assert set(latency["latency_percentiles_usec_mget"]) == {"p50", "p99", "p99.9"}
    client.config_set("latency-tracking-info-percentiles", "10 100")
    latency = client.info("latencystats")
    assert set(latency["latency_percentiles_usec_mget"]) == {"p10", "p100"}
    client.config_set("latency-tracking-info-percentiles", "50 99 99.9")
    errors = client.info("errorstats")
    assert errors["errorstat_WRONGTYPE"]["count"] == 1
    everything = client.info("everything")
    assert "cmdstat_set" in everything and "latency_percentiles_usec_set" in everything
    assert "cmdstat_set" not in client.info()
    histogram = client.execute_command("LATENCY", "HISTOGRAM", "set")
    assert histogram[b"set"][b"calls"] == 1 if b"set" in histogram else \
        histogram["set"]["calls"] == 1


def test_latency_tracking_off_keeps_counting_without_histograms(client):
    client.config_set("latency-tracking", "no")
    try:
        client.config_resetstat()
        client.set("a", "1")
        assert client.info("commandstats")["cmdstat_set"]["calls"] == 1
        assert client.info("latencystats") == {}
    finally:
        client.config_set("latency-tracking", "yes")


def test_config_resetstat_clears_command_and_error_stats(client):
    client.set("a", "1")
    with pytest.raises(redis.ResponseError):
        client.lpush("a", "x")
    client.config_resetstat()
    assert "cmdstat_set" not in client.info("commandstats")
    assert client.info("errorstats") == {}


# DEBUG's argument parsing, as C's (shardis.router.debug) -------------------------------------
def test_debug_arguments_parse_as_c():
    assert _c_double(b"0.25") == 0.25 and _c_double(b"x") == 0.0 and _c_double(b"1.5s") == 1.5
    assert _c_double(b"-3") == 0.0  # a negative sleep is no sleep
    assert _c_atoi(b"0") == 0 and _c_atoi(b"7x") == 7 and _c_atoi(b"x") == 0
    assert _c_atoi(b" -1") == -1
    fields = quicklist_fields(deque([b"a", b"b", b"c"]))
    assert fields == (b" ql_nodes:1 ql_avg_node:3.00 ql_listpack_max:-2 ql_compressed:0 "
                      b"ql_uncompressed_size:16")
    big = quicklist_fields(deque([b"y" * 200] * 100))
    assert b"ql_nodes:3 " in big  # 8 KB nodes, as RPUSH fills them
