"""Configuration directives: flags of ``shardis up`` reach CONFIG GET; CONFIG SET checks and
errors as Redis 7.0 (byte for byte); unit tests of the value parsers."""

from __future__ import annotations

import pytest
import redis

from shardis import config
from tests.differential import check, parametrize, script
from tests.servers import start_shardis


def test_memory_units():
    assert config.parse_memory("1k") == 1000
    assert config.parse_memory("1KB") == 1024
    assert config.parse_memory("2mb") == 2 * 1024 * 1024
    assert config.parse_memory("3g") == 3 * 1000**3
    for bad in ("", "k", "1x", "1.5mb", "--1"):
        with pytest.raises(config.ConfigError):
            config.parse_memory(bad)


def test_output_limits_round_trip():
    limits = config.parse_output_limits("pubsub 1mb 2mb 60")
    assert limits["pubsub"] == (1024 * 1024, 2 * 1024 * 1024, 60)
    assert limits["normal"] == (0, 0, 0)
    assert config.format_output_limits(limits) == (
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 2097152 60")
    for bad in ("pubsub 1 2", "nobody 1 2 3", "pubsub x 2 3"):
        with pytest.raises(config.ConfigError):
            config.parse_output_limits(bad)


def test_flags_reach_config_get():
    server = start_shardis(1, "--maxclients", "77", "--timeout", "9", "--lua-time-limit", "250",
                           "--client-output-buffer-limit", "pubsub 1mb 2mb 60")
    try:
        client = redis.Redis(port=server.port, protocol=2)
        assert client.config_get("maxclients") == {"maxclients": "77"}
        assert client.config_get("timeout") == {"timeout": "9"}
        assert client.config_get("busy-reply-threshold") == {"busy-reply-threshold": "250"}
        assert client.config_get("lua-time-limit") == {"lua-time-limit": "250"}
        assert client.config_get("client-output-buffer-limit")["client-output-buffer-limit"] \
            .endswith("pubsub 1048576 2097152 60")
    finally:
        server.stop()


def test_a_bad_flag_value_is_a_usage_error(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "shardis", "up", "--maxclients", "lots",
                           "--dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--maxclients lots: argument couldn't be parsed into an integer" in proc.stderr


CONFIG = [
    script(
        "config_set_checks",
        ["CONFIG", "SET", "maxclients", "abc"],
        ["CONFIG", "SET", "timeout", "-1"],
        ["CONFIG", "SET", "daemonize-nope", "yes"],
        ["CONFIG", "SET", "protected-mode", "maybe"],
        ["CONFIG", "SET", "proto-max-bulk-len", "1"],
        ["CONFIG", "SET", "client-query-buffer-limit", "1k"],
        ["CONFIG", "SET", "busy-reply-threshold", "x"],
        ["CONFIG", "SET", "timeout", "10", "timeout", "20"],
        ["CONFIG", "SET", "maxclients", "10", "timeout", "x"],
        ["CONFIG", "SET", "timeout"],
        ["CONFIG", "GET", "maxclients"],
        ["CONFIG", "GET", "timeout"],
        ["CONFIG", "SET", "timeout", "30"],
        ["CONFIG", "GET", "timeout"],
        ["CONFIG", "SET", "lua-time-limit", "4000"],
        ["CONFIG", "GET", "busy-reply-threshold"],
        ["CONFIG", "GET", "lua-time-limit"],
        ["CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 2mb 60"],
        ["CONFIG", "GET", "client-output-buffer-limit"],
        ["CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 2mb"],
        ["CONFIG", "SET", "client-output-buffer-limit",
         "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"],
        ["CONFIG", "SET", "timeout", "0", "busy-reply-threshold", "5000"],
        ["CONFIG", "GET", "proto-max-bulk-len"],
        ["CONFIG", "GET", "client-query-buffer-limit"],
        ["CONFIG", "GET", "protected-mode"],
        ["CONFIG", "GET", "requirepass"],
    ),
]


@parametrize(CONFIG)
def test_config_matches_redis(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
