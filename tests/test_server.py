"""Server-level behaviour: COMMAND from the table (checked against real Redis), INFO, and the
standard tools (redis-cli, redis-benchmark) working against shardis."""

import shutil
import subprocess

import pytest
import redis

from shardis.commands import all_commands, load_families
from tests.resp_client import RawClient, decode

load_families()

#: Commands shardis has that Redis 7.0 does not (CLIENT SETINFO arrived in Redis 7.2).
NOT_IN_REDIS_70 = {"client|setinfo"}


def call(port: int, *args: str) -> object:
    """One command over a raw RESP2 connection, decoded without any client-side reshaping."""
    client = RawClient(port)
    try:
        return decode(client.call(*args))
    finally:
        client.close()


def _entries(info: list) -> dict[str, list]:
    """name -> [arity, flags, first, last, step, acl] for each command and subcommand."""
    out: dict[str, list] = {}
    for entry in info:
        if entry is None:
            continue
        for item in [entry, *entry[9]]:
            out[item[0].decode()] = [item[1], sorted(item[2]), item[3], item[4], item[5],
                                     sorted(item[6])]
    return out


def test_command_info_matches_redis_for_every_command(shardis, oracle):
    names = [spec.name for spec in all_commands() if "internal" not in spec.flags]
    ours = _entries(call(shardis.port, "COMMAND", "INFO", *names))
    theirs = _entries(call(oracle.port, "COMMAND", "INFO", *names))
    assert set(ours) - NOT_IN_REDIS_70 <= set(theirs)
    mismatches = {
        name: (ours[name], theirs[name])
        for name in ours
        if name not in NOT_IN_REDIS_70 and ours[name] != theirs[name]
    }
    assert not mismatches


def test_command_count_and_list_agree(shardis):
    listed = call(shardis.port, "COMMAND", "LIST")
    commands = [name for name in listed if b"|" not in name]  # LIST adds the subcommands
    assert call(shardis.port, "COMMAND", "COUNT") == len(commands)
    assert b"get" in listed and b"__dump" not in listed
    assert len(call(shardis.port, "COMMAND")) == len(commands)


def test_command_getkeys(shardis):
    assert call(shardis.port, "COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2") == [b"a", b"b"]


def test_info_has_the_fields_clients_rely_on(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.mset({"i:1": 1, "i:2": 2, "i:3": 3})
    client.set("i:4", 4, ex=100)
    info = client.info("everything")
    for field in ("redis_version", "shardis_version", "process_id", "tcp_port",
                  "uptime_in_seconds", "connected_clients", "blocked_clients",
                  "total_commands_processed", "total_error_replies", "used_memory"):
        assert field in info, field
    assert info["redis_version"] == "7.0.15"
    assert info["tcp_port"] == shardis_clean.port
    assert info["db0"]["keys"] == 4 and info["db0"]["expires"] == 1
    before = client.info("stats")
    try:
        client.incr("i:missing:type", "x")
    except redis.ResponseError:
        pass
    after = client.info("stats")
    assert after["total_error_replies"] == before["total_error_replies"] + 1
    assert after["total_commands_processed"] > before["total_commands_processed"]


def test_info_sections_can_be_selected(shardis):
    text = call(shardis.port, "INFO", "server")
    assert text.startswith(b"# Server\r\n") and b"# Clients" not in text


needs_tools = pytest.mark.skipif(shutil.which("redis-benchmark") is None,
                                 reason="redis-tools is not installed")


@needs_tools
def test_redis_benchmark_runs_without_errors(shardis_clean):
    result = subprocess.run(
        ["redis-benchmark", "-p", str(shardis_clean.port), "-t", "set,get,incr,mset",
         "-P", "16", "-n", "20000", "-r", "1000", "-q", "--csv"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith('"')]
    tests = {line.split(",")[0].strip('"') for line in lines[1:]}
    assert {"SET", "GET", "INCR", "MSET (10 keys)"} <= tests
    assert "error" not in (result.stdout + result.stderr).lower()


@needs_tools
def test_redis_cli_scan_bigkeys_and_memkeys(shardis_clean):
    client = redis.Redis(port=shardis_clean.port)
    client.mset({f"cli:{i}": "x" * i for i in range(1, 30)})
    port = str(shardis_clean.port)
    scanned = subprocess.run(["redis-cli", "-p", port, "--scan", "--pattern", "cli:*"],
                             capture_output=True, text=True, timeout=30).stdout.split()
    assert sorted(scanned) == sorted(f"cli:{i}" for i in range(1, 30))
    big = subprocess.run(["redis-cli", "-p", port, "--bigkeys"], capture_output=True,
                         text=True, timeout=30).stdout
    assert "Biggest string found '\"cli:29\"' has 29 bytes" in big
    mem = subprocess.run(["redis-cli", "-p", port, "--memkeys"], capture_output=True,
                         text=True, timeout=30).stdout
    assert "29 strings with" in mem
    echo = subprocess.run(["redis-cli", "-p", port, "ECHO", "hi"], capture_output=True,
                          text=True, timeout=30).stdout
    assert echo.strip() == "hi"


def test_command_getkeys_for_movable_keys(shardis, oracle):
    for command in (["LMPOP", "2", "a", "b", "LEFT"], ["SINTERCARD", "2", "x", "y", "LIMIT", "1"],
                    ["BLMPOP", "0", "2", "a", "b", "RIGHT"]):
        ours = call(shardis.port, "COMMAND", "GETKEYS", *command)
        assert ours == call(oracle.port, "COMMAND", "GETKEYS", *command)
