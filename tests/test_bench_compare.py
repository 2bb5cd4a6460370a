"""Unit tests of bench/compare.py's pure parts: the data sets it sends (the ``redis-cli
--pipe`` stream, the collection commands), the parsing of redis-cli's output, the load checks,
the targets' met/missed logic, the summary and its markdown table.  No server and no
benchmark runs here: these are the parts whose mistakes would silently skew a report."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import compare
from bench.compare import (
    COLLECTION_SETS,
    COLLECTIONS_BY_NAME,
    BenchRun,
    CollectionLoadResult,
    PipeLoadResult,
    ServerResult,
    SummaryLine,
    Target,
)


def decode_commands(data: bytes) -> list[list[str]]:
    """Every RESP command of ``data``, with the bench's own reply reader (arrays of bulks)."""
    stream = io.BytesIO(data)
    commands = []
    while stream.tell() < len(data):
        commands.append(compare.read_reply(stream))  # type: ignore[arg-type]
    return commands


# --- the strings data set and redis-cli --pipe ------------------------------------------------


def test_pipe_protocol_is_every_set_once_in_order() -> None:
    chunks = list(compare.pipe_protocol(25, batch=10))
    assert len(chunks) == 3  # 10 + 10 + 5
    commands = decode_commands(b"".join(chunks))
    assert len(commands) == 25
    assert commands[0] == ["SET", "key:000000000000", "x" * 16]
    assert commands[-1] == ["SET", "key:000000000024", "x" * 16]
    assert [cmd[1] for cmd in commands] == [f"key:{i:012d}" for i in range(25)]


def test_pipe_protocol_value_size() -> None:
    (command,) = decode_commands(b"".join(compare.pipe_protocol(1, value_size=3)))
    assert command == ["SET", "key:000000000000", "xxx"]


def test_write_pipe_file_writes_the_protocol(tmp_path: Path) -> None:
    path = tmp_path / "strings.resp"
    size = compare.write_pipe_file(path, 1234)
    expected = b"".join(compare.pipe_protocol(1234))
    assert size == len(expected)
    assert path.read_bytes() == expected


@pytest.mark.parametrize(("output", "expected"), [
    ("All data transferred. Waiting for the last reply...\nLast reply received from server.\n"
     "errors: 0, replies: 1000000", (0, 1000000)),
    ("errors: 3, replies: 10\n", (3, 10)),
    ("All data transferred. Waiting for the last reply...\nNo replies for 30 seconds: exiting.",
     None),
    ("Could not connect to Redis at 127.0.0.1:1: Connection refused", None),
    ("", None),
])
def test_parse_pipe_output(output: str, expected: tuple[int, int] | None) -> None:
    assert compare.parse_pipe_output(output) == expected


def pipe_result(**changes: object) -> PipeLoadResult:
    fields: dict[str, object] = {"keys": 10, "seconds": 1.0, "exit_code": 0, "errors": 0,
                                 "replies": 10, "dbsize": 10, "output": ""}
    return PipeLoadResult(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("changes", [
    {"exit_code": 1}, {"exit_code": None}, {"errors": 1}, {"errors": None}, {"replies": 9},
    {"dbsize": 9},
])
def test_pipe_load_is_verified_only_when_everything_adds_up(changes: dict) -> None:
    assert pipe_result().verified
    assert not pipe_result(**changes).verified


# --- the collection data sets -----------------------------------------------------------------


def test_issue_data_sets_are_the_defaults_with_their_targets() -> None:
    assert compare.DEFAULT_COLLECTIONS == ("hash", "set", "intset", "zset", "list")
    for name in compare.DEFAULT_COLLECTIONS:
        spec = COLLECTIONS_BY_NAME[name]
        assert spec.elements == 10 and spec.target == 2.5 and spec.keys_for(100_000) == 100_000
    for name in ("hash100", "zset100"):
        spec = COLLECTIONS_BY_NAME[name]
        assert spec.elements == 100 and spec.target is None
        assert spec.keys_for(100_000) == 10_000  # as many elements in all


@pytest.mark.parametrize("spec", COLLECTION_SETS, ids=lambda spec: spec.name)
def test_each_command_adds_distinct_elements(spec: compare.CollectionSet) -> None:
    rng = random.Random(1)
    for index in (0, 1, 99_999):
        (command,) = decode_commands(spec.encode(index, rng))
        assert command[0] == spec.command.decode()
        assert command[1] == f"{spec.prefix.decode()}:{index:08d}"
        args = command[2:]
        if spec.command in (b"HSET", b"ZADD"):  # pairs: field value / score member
            assert len(args) == 2 * spec.elements
            elements = args[0::2] if spec.command == b"HSET" else args[1::2]
        else:
            assert len(args) == spec.elements
            elements = args
        assert len(set(elements)) == spec.elements


def test_element_shapes() -> None:
    rng = random.Random(1)
    (hset,) = decode_commands(COLLECTIONS_BY_NAME["hash"].encode(3, rng))
    assert hset[2:6] == ["f0", "v0000030", "f1", "v0000031"]
    (sadd,) = decode_commands(COLLECTIONS_BY_NAME["set"].encode(3, rng))
    assert all(len(m) == 8 and not m.isdigit() for m in sadd[2:])
    (iset,) = decode_commands(COLLECTIONS_BY_NAME["intset"].encode(99_999, rng))
    # 32-bit integers, all of them: Redis's intset uses one width for the whole set
    assert all(32_767 < int(m) < 2**31 for m in iset[2:])
    (zadd,) = decode_commands(COLLECTIONS_BY_NAME["zset"].encode(3, rng))
    scores = [float(score) for score in zadd[2::2]]
    assert all(0 <= score < 1000 for score in scores)
    assert all(len(m) == 8 for m in zadd[3::2])
    (rpush,) = decode_commands(COLLECTIONS_BY_NAME["list"].encode(3, rng))
    assert rpush[2:] == sadd[2:]
    (hset100,) = decode_commands(COLLECTIONS_BY_NAME["hash100"].encode(0, rng))
    assert hset100[2] == "f:00" and hset100[-2] == "f:99"


def test_collection_batches_are_deterministic_and_complete() -> None:
    spec = COLLECTIONS_BY_NAME["zset"]
    first = list(compare.collection_batches(spec, 2_500))
    assert first == list(compare.collection_batches(spec, 2_500))  # same scores every server
    assert [count for _, count in first] == [1_000, 1_000, 500]
    commands = decode_commands(b"".join(payload for payload, _ in first))
    assert [cmd[1] for cmd in commands] == [f"zset:{i:08d}" for i in range(2_500)]
    big = list(compare.collection_batches(COLLECTIONS_BY_NAME["hash100"], 250))
    assert [count for _, count in big] == [100, 100, 50]


def load_result(**changes: object) -> CollectionLoadResult:
    fields: dict[str, object] = {
        "keys": 5, "elements_per_key": 10, "errors": 0, "first_error": None, "seconds": 0.1,
        "dbsize": 5, "length_total": 50, "length_min": 10, "length_max": 10,
        "encoding": "listpack"}
    return CollectionLoadResult(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("changes", [
    {"errors": 1}, {"dbsize": 4}, {"length_total": 49}, {"length_min": 9, "length_max": 11},
])
def test_collection_load_is_verified_only_when_everything_adds_up(changes: dict) -> None:
    assert load_result().verified
    assert not load_result(**changes).verified


def test_collection_load_after_others_counts_only_its_own_keys() -> None:
    """--quick loads every data set into one server: DBSIZE includes the earlier ones."""
    assert load_result(keys_before=7, dbsize=12).verified
    assert not load_result(keys_before=7, dbsize=5).verified


def test_store_collections() -> None:
    result = ServerResult("shardis/2", 2)
    compare._store_collections(result, {"load": 1}, ["hash"])
    compare._store_collections(result, {"set": {"load": 2}, "list": {"load": 3}},
                               ["set", "list"])
    assert result.collections == {"hash": {"load": 1}, "set": {"load": 2}, "list": {"load": 3}}
    compare._store_collections(result, {"error": "boom"}, ["set", "zset"])
    assert result.collections["set"] == result.collections["zset"] == {"error": "boom"}


# --- targets and the summary ------------------------------------------------------------------


@pytest.mark.parametrize(("target", "ratio", "met"), [
    (Target(">=", 0.4), 0.4, True), (Target(">=", 0.4), 0.39, False),
    (Target(">=", 0.55), 0.7, True), (Target("<=", 4.0), 4.0, True),
    (Target("<=", 4.0), 4.01, False), (Target("<=", 2.5), 0.5, True),
])
def test_target_met(target: Target, ratio: float, met: bool) -> None:
    assert target.met(ratio) is met
    assert compare._target_status(ratio, target).startswith("ok" if met else "MISS")


def test_issue_targets() -> None:
    assert {config: (metric, str(target))
            for config, (metric, target) in compare.THROUGHPUT_TARGETS.items()} == {
        "-c 50 -P 16": ("rps", ">= 0.4x"), "-c 50 -P 1": ("rps", ">= 0.55x"),
        "-c 1 -P 1": ("p50_latency_ms", "<= 4x")}
    assert str(compare.STRINGS_MEMORY_TARGET) == "<= 2x"
    assert str(compare.PIPE_TIME_TARGET) == "<= 3x"


def test_summary_line_status() -> None:
    assert SummaryLine("w", "1", "2", 0.5, Target(">=", 0.4)).status == "met"
    assert SummaryLine("w", "1", "2", 0.3, Target(">=", 0.4)).status == "missed"
    assert SummaryLine("w", "1", "2", 0.3).status == "-"
    assert SummaryLine("w", "-", "2", None, Target(">=", 0.4)).status == "-"


def test_markdown_summary() -> None:
    lines = [SummaryLine("SET `-c 50 -P 16`, ops/s", "100", "200", 0.5, Target(">=", 0.4)),
             SummaryLine("a | b", "", "", 3.0, Target("<=", 2.0)),
             SummaryLine("idle", "80.0", "10.0", 8.0)]
    assert compare.markdown_summary("shardis/3", lines).splitlines() == [
        "| workload | shardis/3 / redis | target | met? |",
        "|---|---|---|---|",
        "| SET `-c 50 -P 16`, ops/s | 0.50x (100 / 200) | >= 0.4x | met |",
        "| a \\| b | 3.00x | <= 2x | missed |",
        "| idle | 8.00x (80.0 / 10.0) | - | - |",
    ]


def test_summary_server_prefers_the_target_worker_count() -> None:
    results = [ServerResult("redis", None), ServerResult("shardis/1", 1),
               ServerResult("shardis/3", 3), ServerResult("shardis/4", 4)]
    assert compare.summary_server(results) is results[2]
    assert compare.summary_server(results[:2] + results[3:]) is results[3]
    assert compare.summary_server(results[:1]) is None


def bench_result(label: str, workers: int | None, rps: float, p50: float) -> ServerResult:
    """A server whose every test ran at ``rps`` ops/s, ``p50`` ms, in every configuration."""
    result = ServerResult(label, workers, supported={cmd: True
                                                     for cmd in compare.TEST_COMMAND.values()})
    for config in compare.CONFIGS:
        for test, csv_label in compare.ALL_TESTS.items():
            run = BenchRun(config.name, config.clients, config.pipeline, 100, [test], [])
            run.results = {csv_label: {"rps": rps, "p50_latency_ms": p50,
                                       "p99_latency_ms": p50 * 2}}
            result.runs.append(run)
    return result


def test_throughput_summary_ratios_and_statuses() -> None:
    redis = bench_result("redis", None, 1000.0, 0.1)
    shardis = bench_result("shardis/3", 3, 500.0, 0.5)
    # one test much slower: it is the worst, and not every test meets the target
    get_run = next(run for run in shardis.runs if run.config == "-c 50 -P 16"
                   and run.tests == ["get"])
    get_run.results["GET"]["rps"] = 100.0
    lines = compare.throughput_summary(redis, shardis)
    by_name = {line.workload: line for line in lines}
    tests = len(compare.ALL_TESTS)
    assert by_name["SET `-c 50 -P 16`, ops/s"].ratio == 0.5
    assert by_name["SET `-c 50 -P 16`, ops/s"].status == "met"
    assert by_name["GET `-c 50 -P 16`, ops/s"].status == "missed"
    aggregate = next(line for line in lines if line.workload.startswith(f"all {tests} tests "
                                                                         "`-c 50 -P 16`"))
    assert f"{tests - 1} of {tests} meet the target; worst GET 0.10x" in aggregate.workload
    assert aggregate.ratio == pytest.approx((0.5 ** (tests - 1) * 0.1) ** (1 / tests))
    p1 = by_name["SET `-c 50 -P 1`, ops/s"]
    assert (p1.ratio, p1.status) == (0.5, "missed")  # >= 0.55
    latency = by_name["SET `-c 1 -P 1`, p50 ms"]
    assert latency.ratio == pytest.approx(5.0) and latency.status == "missed"  # <= 4
    assert (latency.shardis, latency.redis) == ("0.500", "0.100")


def tree(rss_mib: float, unique_mib: float | None, roles: tuple[str, ...]) -> dict:
    mib = 1 << 20
    share = int(rss_mib * mib) // len(roles)
    return {"rss_bytes": int(rss_mib * mib), "pss_bytes": 0,
            "unique_bytes": None if unique_mib is None else int(unique_mib * mib),
            "processes": [{"pid": i, "role": role, "rss_bytes": share,
                           "own_bytes": share // 2} for i, role in enumerate(roles)]}


def memory_result(label: str, workers: int | None, idle: float, loaded: float,
                  seconds: float, per_element: float) -> ServerResult:
    roles = ("redis-server",) if workers is None else ("router", "worker 0", "worker 1")
    keys = 1000
    per_key = (loaded - idle) * (1 << 20) / keys
    result = ServerResult(label, workers)
    result.strings = {
        "idle": tree(idle, idle, roles), "loaded": tree(loaded, loaded, roles),
        "settled": tree(loaded, loaded, roles), "settle_s": 1.0,
        "load": {"keys": keys, "seconds": seconds, "exit_code": 0, "errors": 0,
                 "replies": keys, "dbsize": keys, "output": "", "verified": True},
        "bytes_per_key": {"rss": per_key, "unique": per_key}}
    result.collections["hash"] = {
        "idle": tree(idle, idle, roles), "loaded": tree(idle + 1, idle + 1, roles),
        "load": {"keys": 100, "elements_per_key": 10, "errors": 0, "first_error": None,
                 "seconds": 0.1, "dbsize": 100, "length_total": 1000, "length_min": 10,
                 "length_max": 10, "encoding": "listpack", "verified": True},
        "bytes_per_element": {"rss": per_element, "unique": per_element}}
    result.collections["set"] = {"error": "shardis/3 did not answer PING"}
    return result


def test_memory_summary_and_tables() -> None:
    redis = memory_result("redis", None, 10.0, 100.0, 1.0, 20.0)
    shardis = memory_result("shardis/3", 3, 80.0, 200.0, 2.5, 60.0)
    lines = compare.memory_summary(redis, shardis, 1000, ["hash", "set"])
    by_start = {line.workload.split(":")[0].split(",")[0]: line for line in lines}
    resident = next(line for line in lines if "total resident" in line.workload)
    assert (resident.ratio, resident.status) == (2.0, "met")
    pipe = next(line for line in lines if "redis-cli --pipe" in line.workload)
    assert (pipe.ratio, pipe.status, pipe.shardis, pipe.redis) == (2.5, "met", "2.50", "1.00")
    hashes = by_start["hashes"]
    assert (hashes.ratio, hashes.status) == (3.0, "missed")
    assert "(listpack / listpack)" in hashes.workload
    assert "sets" not in by_start  # failed on shardis: no line rather than a made-up one
    idle = next(line for line in lines if line.workload.startswith("idle server, distinct"))
    assert idle.ratio == 8.0 and idle.status == "-"

    text = compare.render([redis, shardis], 1000, 1.0, ["hash", "set"])
    assert "worker 1" in text and "shared" in text
    assert "mem ok (<=2) time ok (<=3)" in text
    assert "MISS (<=2.5)" in text
    assert "| workload | shardis/3 / redis | target | met? |" in text
    assert "err" in text  # the set data set that failed


def test_render_skips_what_did_not_run() -> None:
    results = [bench_result("redis", None, 1000.0, 0.1), bench_result("shardis/2", 2, 600, 0.2)]
    text = compare.render(results, None)
    assert "idle memory" not in text and "collections:" not in text
    assert "shardis/2 (the targets are stated at 3 workers)" in text
    memory_only = compare.render([memory_result("redis", None, 10, 20, 1, 2),
                                  memory_result("shardis/3", 3, 80, 200, 2, 6)], 1000, 1.0, [])
    assert "ops/s" not in memory_only.split("summary:")[0]


def test_own_pages() -> None:
    assert compare.own_pages({1: {1, 2, 3}, 2: {3, 4}, 3: {4, 5}}) == {1: 2, 2: 0, 3: 1}
    assert compare.own_pages({1: {1, 2}}) == {1: 2}


def test_process_role_and_sample_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                              "--index", "7"])
    try:
        deadline = time.monotonic() + 10
        while b"--index" not in Path(f"/proc/{child.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the child never exec'd"
            time.sleep(0.01)
        assert compare.process_role(child.pid, os.getpid()) == "worker 7"
        sample = compare.sample_tree(os.getpid())
        assert sample.rss_bytes > 0
        assert any(proc.role == "worker 7" for proc in sample.processes)
        assert sample.processes[0].pid == os.getpid()  # the main process first
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("argv", [["--memory-only", "--skip-memory"],
                                  ["--collections", "hash,nope"], ["--collection-keys", "0"],
                                  ["--settle", "-1"]])
def test_parse_args_rejects(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        compare.parse_args(argv)
    capsys.readouterr()


def test_parse_args_defaults() -> None:
    quick = compare.parse_args(["--quick", "--memory-only", "--collections", ""])
    assert (quick.memory_keys, quick.collection_keys, quick.settle, quick.collections) == (
        compare.QUICK_MEMORY_KEYS, compare.QUICK_COLLECTION_KEYS, compare.QUICK_SETTLE_S, [])
    full = compare.parse_args([])
    assert (full.memory_keys, full.collection_keys, full.collections) == (
        1_000_000, 100_000, list(compare.DEFAULT_COLLECTIONS))


@pytest.mark.parametrize("argv", [["--skip-memory", "--workers", "2"],
                                  ["--memory-only", "--workers", "3"]])
def test_build_report_is_json_with_the_summary(argv: list[str]) -> None:
    """The JSON is written whatever ran: no memory section with --skip-memory, no
    throughput with --memory-only; the summary lines are those the table shows."""
    args = compare.parse_args(argv)
    if args.memory_only:
        results = [memory_result("redis", None, 10, 100, 1, 20),
                   memory_result("shardis/3", 3, 80, 200, 2.5, 60)]
    else:
        results = [bench_result("redis", None, 1000.0, 0.1),
                   bench_result("shardis/2", 2, 500.0, 0.2)]
    started = compare.datetime.now(compare.timezone.utc)
    report = json.loads(json.dumps(compare.build_report(args, results, started,
                                                        (0.0, 0.0, 0.0), True)))
    assert report["schema"] == 6
    summary = report["summary"]
    assert summary["server"] == results[1].label
    workloads = [line["workload"] for line in summary["lines"]]
    if args.memory_only:
        assert report["parameters"]["base_requests"] is None
        assert not any("ops/s" in workload for workload in workloads)
        assert report["parameters"]["collections"]["hash"]["target"] == 2.5
        resident = next(line for line in summary["lines"] if "total resident" in line["workload"])
        assert resident["status"] == "met" and resident["target"] == {"comparison": "<=",
                                                                      "goal": 2.0}
    else:
        assert report["parameters"]["memory_keys"] is None
        assert not any("bytes" in workload for workload in workloads)
        assert {line["status"] for line in summary["lines"]} == {"met", "missed"}


def test_summary_flags_a_load_that_did_not_check_out() -> None:
    redis = memory_result("redis", None, 10.0, 100.0, 1.0, 20.0)
    shardis = memory_result("shardis/3", 3, 80.0, 200.0, 2.5, 60.0)
    shardis.collections["hash"]["load"]["verified"] = False
    lines = compare.memory_summary(redis, shardis, 1000, ["hash"])
    flagged = [line.workload for line in lines if "load check FAILED" in line.workload]
    assert flagged == ["hashes, 10 fields: bytes per element (listpack / listpack) "
                       "(load check FAILED)"]


def test_geomean_of_ratios() -> None:
    assert compare._geomean([0.5, 2.0]) == pytest.approx(1.0)
    assert compare._geomean([0.5, 0.0]) == 0.0
