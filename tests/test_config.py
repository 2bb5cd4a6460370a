"""Configuration directives: flags of ``shardis up`` reach CONFIG GET; CONFIG SET checks and
errors as Redis 7.0 (byte for byte); unit tests of the value parsers."""

from __future__ import annotations

import time

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
    assert config.parse_memory("01MB") == 1024 * 1024
    assert config.parse_memory("") == config.parse_memory("k") == 0  # as memtoull
    for bad in ("1x", "1.5mb", "--1", "-1", " 1mb", "1 mb"):
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


def test_a_bad_flag_value_stops_as_redis_server_does(tmp_path):
    """The same flags given to redis-server and to shardis: the same report, status 1."""
    import shutil
    import subprocess
    import sys

    flags = ["--maxclients", "lots", "--dir", str(tmp_path)]
    ours = subprocess.run([sys.executable, "-m", "shardis", "up", *flags],
                          capture_output=True, text=True, timeout=30)
    theirs = subprocess.run([shutil.which("redis-server"), *flags], capture_output=True,
                            text=True, timeout=30)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == theirs.stderr
    assert "at line 2\n>>> 'maxclients \"lots\"'\nargument couldn't be parsed" in ours.stderr


# The one parser: sdssplitargs lines, flags turned into lines, the loader's rules -----------
def test_split_and_quote_are_redis_s():
    assert config.split_args('save "900 1" \'a b\' x\\y "\\x41\\n"') == [
        "save", "900 1", "a b", "x\\y", "A\n"]
    with pytest.raises(config.ConfigError, match="Unbalanced quotes"):
        config.split_args('requirepass "abc')
    assert config.quote('a "b"\n\x01') == '"a \\"b\\"\\n\\x01"'
    assert config.split_args(config.quote('a "b"\n\x01')) == ['a "b"\n\x01']


def test_flags_become_config_lines_as_redis_server_main():
    assert config.flags_to_lines(["--port", "7000", "--save", "900", "1"]) == \
        'port "7000" \nsave "900" "1" '
    # A bare --save (last, or followed by another flag) is save "": no snapshot rules.
    assert config.flags_to_lines(["--save", "--port", "1"]) == 'save ""\nport "1" '
    assert config.flags_to_lines(["--port", "1", "--save"]) == 'port "1" \nsave ""'
    # A flag without its value takes the next argument, even one starting with --.
    assert config.flags_to_lines(["--requirepass", "--x--"]) == 'requirepass "--x--" '


def load(text: str) -> dict:
    values = config.defaults()
    config.load_text(text, values)
    return values


def test_file_lines_comments_quotes_and_multi_argument_directives():
    values = load("# a comment\n\n   maxclients 77  \r\nrequirepass 'p w'\n"
                  "client-output-buffer-limit pubsub 1mb 2mb 60\nTIMEOUT 5\n")
    assert (values["maxclients"], values["requirepass"], values["timeout"]) == (77, "p w", 5)
    assert values["client-output-buffer-limit"]["pubsub"] == (1024 * 1024, 2 * 1024 * 1024, 60)
    # An alias sets the directive; a multi-argument value in one quoted argument is split.
    assert load('lua-time-limit 300\nsave "60 5 30 10"\n')["busy-reply-threshold"] == 300
    assert load('save "60 5 30 10"\n')["save"] == [(60, 5), (30, 10)]
    # Each client-output-buffer-limit line changes the classes it names.
    limits = load("client-output-buffer-limit normal 1 2 3\n"
                  "client-output-buffer-limit pubsub 4 5 6\n")["client-output-buffer-limit"]
    assert (limits["normal"], limits["pubsub"]) == ((1, 2, 3), (4, 5, 6))


def test_the_example_config_file_loads_with_the_defaults():
    """deploy/shardis.conf shows the defaults: loading it changes nothing but dir's spelling."""
    import os

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    values, seen = config.load(os.path.join(here, "deploy", "shardis.conf"), [])
    assert len(seen) > 25
    defaults = config.defaults()
    assert {name: value for name, value in values.items() if value != defaults[name]} == {
        "dir": "./"}


def test_save_lines_add_up_in_a_file_and_an_empty_one_resets():
    assert load("save 900 1\nsave 300 10\n")["save"] == [(900, 1), (300, 10)]
    assert load('save 900 1\nsave ""\n')["save"] == []
    assert load('save ""\nsave 60 1\n')["save"] == [(60, 1)]
    assert load("port 1\n")["save"] == config.DEFAULT_SAVE
    # Numbers as strtoll reads them; CONFIG SET's value splits on single spaces.
    assert config.parse_save("60 +5 30 05") == [(60, 5), (30, 5)]
    for bad in ("60  5", " 60 5", "60 5 ", "0 1", "60 -1", "60"):
        with pytest.raises(config.ConfigError, match="Invalid save parameters"):
            config.parse_save(bad)


@pytest.mark.parametrize("text, number, reason", [
    ("port 1\nnosuch 1\n", 2, "Bad directive or wrong number of arguments"),
    ("maxclients 1 2\n", 1, "wrong number of arguments"),
    ("\n\nmaxclients 0\n", 3, "argument must be between 1 and 4294967295 inclusive"),
    ("timeout 007\n", 1, "argument couldn't be parsed into an integer"),
    ("timeout +7\n", 1, "argument couldn't be parsed into an integer"),
    ('requirepass "abc\n', 1, "Unbalanced quotes in configuration line"),
    ("protected-mode maybe\n", 1, "argument must be 'yes' or 'no'"),
    ("loglevel loud\n", 1,
     "argument(s) must be one of the following: debug, verbose, notice, warning"),
    ("save 900\n", 1, "Invalid save parameters"),
    ("include\n", 1, "Bad directive or wrong number of arguments"),
])
def test_bad_lines_name_their_line(text, number, reason):
    with pytest.raises(config.ConfigFileError) as caught:
        load(text)
    assert (caught.value.line_number, caught.value.reason) == (number, reason)
    report = caught.value.report()
    assert report.startswith("\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n"
                             f"Reading the configuration file, at line {number}\n>>> '")
    assert report.endswith(f"'\n{reason}\n")


def test_include_and_deprecated_directives(tmp_path):
    (tmp_path / "a.conf").write_text("maxclients 12\n")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("timeout 3\n")
    values = load(f"include {tmp_path / 'a.conf'}\ninclude {tmp_path / 'conf.d' / '*.conf'}\n"
                  f"include {tmp_path / 'none' / '*.conf'}\nlist-max-ziplist-entries 5\n")
    assert (values["maxclients"], values["timeout"]) == (12, 3)
    with pytest.raises(config.ConfigFileError, match="can't open config file"):
        load(f"include {tmp_path / 'missing.conf'}\n")
    (tmp_path / "loop.conf").write_text(f"include {tmp_path / 'loop.conf'}\n")
    with pytest.raises(config.ConfigFileError, match="nested include"):
        load(f"include {tmp_path / 'loop.conf'}\n")


def test_flags_override_the_file_and_errors_count_lines_through_both(tmp_path):
    path = tmp_path / "s.conf"
    path.write_text("maxclients 10\ntimeout 4\n")
    values, seen = config.load(str(path), ["--maxclients", "20"])
    assert (values["maxclients"], values["timeout"]) == (20, 4)
    assert seen == {"maxclients", "timeout"}
    with pytest.raises(config.ConfigFileError) as caught:
        config.load(str(path), ["--timeout", "x"])
    # The file's two lines, the newline put between, then the flag's line.
    assert (caught.value.line_number, caught.value.line) == (4, 'timeout "x"')


def test_a_logfile_that_cannot_be_opened_is_fatal(tmp_path):
    with pytest.raises(config.ConfigFileError) as caught:
        config.load(None, ["--logfile", str(tmp_path / "no" / "such.log")])
    assert caught.value.line_number is None
    assert caught.value.report().endswith(
        "***\nCan't open the log file: No such file or directory\n")


# CONFIG SET's checks and CONFIG GET's matching, as pure functions -------------------------
def test_config_set_checks_names_first_in_order_then_values():
    def error(*pairs: str) -> str:
        with pytest.raises(config.SetError) as caught:
            config.check_set(list(zip(pairs[::2], pairs[1::2])), protected_ok=False)
        return str(caught.value)

    prefix = "ERR CONFIG SET failed (possibly related to argument "
    assert error("timeout", "x", "logfile", "y") == prefix + "'logfile') - can't set immutable config"
    assert error("logfile", "y", "nosuch", "1") == prefix + "'logfile') - can't set immutable config"
    assert error("nosuch", "1", "logfile", "y") == \
        "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"
    assert error("dir", "/tmp") == prefix + "'dir') - can't set protected config"
    assert error("TIMEOUT", "1", "timeout", "2") == prefix + "'timeout') - duplicate parameter"
    assert error("lua-time-limit", "1", "LUA-time-limit", "2") == \
        prefix + "'LUA-time-limit') - duplicate parameter"
    # An alias and its directive are two entries for Redis: both set, the last one wins.
    assert config.check_set([("lua-time-limit", "1"), ("busy-reply-threshold", "2")],
                            False) == {"busy-reply-threshold": 2}
    assert error("TIMEOUT", "x") == prefix + "'timeout') - argument couldn't be parsed into an integer"
    assert error("LUA-time-limit", "x") == \
        prefix + "'lua-time-limit') - argument couldn't be parsed into an integer"
    assert config.check_set([("timeout", "3"), ("loglevel", "VERBOSE")], False) == {
        "timeout": 3, "loglevel": "verbose"}


def test_config_get_lists_each_name_once_as_given():
    from shardis.router.config import config_get_reply

    table = {"maxclients": "1", "hash-max-listpack-entries": "512",
             "hash-max-ziplist-entries": "512", "timeout": "0"}
    assert config_get_reply(table, [b"MAXCLIENTS", b"maxclients", b"max*"]) == {
        b"MAXCLIENTS": b"1"}
    assert config_get_reply(table, [b"hash-*-entries", b"hash-max-listpack-entries"]) == {
        b"hash-max-listpack-entries": b"512", b"hash-max-ziplist-entries": b"512"}
    assert config_get_reply(table, [b"nosuch", b"t[i]meout"]) == {b"timeout": b"0"}


# CONFIG REWRITE, as rewriteConfig -----------------------------------------------------------
def test_rewrite_keeps_comments_and_order_and_appends_the_rest():
    values = config.defaults()
    values.update(maxclients=40, timeout=7, loglevel="verbose", save=[(60, 5)],
                  dir="/data", **{"busy-reply-threshold": 3000})
    old = ("# my server\n  # indented\nmaxclients 500\n\n\n\nsave 900 1\nsave 300 10\n"
           "lua-time-limit 3000\ntimeout 0\nnosuch thing\nappendonly no\n"
           "hash-max-ziplist-entries 512\ninclude /x.conf\n# end\n")
    assert config.rewrite_text(old, values) == (
        "# my server\n# indented\nmaxclients 40\n\nsave 60 5\n\nbusy-reply-threshold 3000\n"
        "timeout 7\n# ??? nosuch thing\nappendonly no\nhash-max-listpack-entries 512\n"
        "include /x.conf\n# end\n\n# Generated by CONFIG REWRITE\ndir \"/data\"\n"
        "loglevel verbose\n")
    # As Redis, the file's final newline reads as one more (empty) line: a second rewrite
    # ends with an empty line, and from then on rewriting changes nothing.
    once = config.rewrite_text(old, values)
    twice = config.rewrite_text(once, values)
    assert twice == once + "\n" and config.rewrite_text(twice, values) == twice
    # An empty file gets the signature and what differs from the defaults.
    values["save"] = []
    assert config.rewrite_text("", values).startswith('# Generated by CONFIG REWRITE\ndir ')
    assert 'save ""\n' in config.rewrite_text("", values)


def test_rewrite_drops_empty_null_strings_and_quotes_the_others():
    values = config.defaults()
    values.update(requirepass="", aclfile="", logfile="/var/log/s.log")
    text = config.rewrite_text('requirepass "old"\naclfile ""\nlogfile ""\n', values)
    assert text.startswith('\naclfile ""\nlogfile "/var/log/s.log"\n')
    values["requirepass"] = 'p "w"'
    assert 'requirepass "p \\"w\\""\n' in config.rewrite_text("", values)


def test_rewrite_formats_memory_and_output_limits_as_redis():
    assert [config.format_memory(n) for n in (0, 1000, 1024, 3 * 1024**2, 2 * 1024**3)] == [
        "0", "1000", "1kb", "3mb", "2gb"]
    values = config.defaults()
    values["client-output-buffer-limit"] = config.parse_output_limits("pubsub 1mb 2mb 60")
    values["proto-max-bulk-len"] = 1024**3
    text = config.rewrite_text("", values)
    assert "client-output-buffer-limit pubsub 1mb 2mb 60\n" in text
    assert "client-output-buffer-limit normal" not in text  # at its default
    assert "proto-max-bulk-len 1gb\n" in text


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


def test_config_resetstat_zeroes_the_router_s_and_every_worker_s_counters(r):
    from tests.test_atomicity import keys_on_distinct_workers

    keys = keys_on_distinct_workers(3)
    for key in keys:  # an error reply and an expired key on every worker
        r.set(key, "text")
        with pytest.raises(redis.ResponseError):
            r.incr(key)
        r.set("{" + key + "}gone", 1, px=1)  # the hash tag keeps it on the key's worker
    time.sleep(0.01)
    assert r.mget(["{" + key + "}gone" for key in keys]) == [None] * 3
    stats = r.info("stats")
    assert stats["total_error_replies"] >= 3 and stats["expired_keys"] >= 3
    assert r.config_resetstat()
    stats = r.info("stats")
    assert (stats["total_error_replies"], stats["expired_keys"]) == (0, 0)
    assert stats["total_commands_processed"] <= 2  # RESETSTAT itself, then INFO


def test_bind_takes_several_addresses_as_redis():
    assert config.parse_bind("127.0.0.1 -::1") == "127.0.0.1 -::1"
    with pytest.raises(config.ConfigError, match="Too many bind addresses specified."):
        config.parse_bind(" ".join(["127.0.0.1"] * 17))
    has = {"127.0.0.1", "0.0.0.0"}.__contains__
    assert config.listen_hosts("127.0.0.1 -::1", has) == ["127.0.0.1"]  # optional: skipped
    assert config.listen_hosts("* -::*", has) == ["0.0.0.0"]
    assert config.listen_hosts("::1 -127.0.0.1", has) == ["::1", "127.0.0.1"]
    assert load("bind 127.0.0.1 -::1\n")["bind"] == "127.0.0.1 -::1"


def test_a_registered_directive_is_known_everywhere(monkeypatch):
    """A module's own directive: the file, flags, CONFIG SET and the workers' flags know it."""
    applied = []
    directive = config.Directive("test-knob", 3, "int", 0, 10, worker_apply=applied.append)
    monkeypatch.setitem(config.DIRECTIVES, "test-knob", directive)
    assert load("test-knob 7\n")["test-knob"] == 7
    assert config.check_set([("test-knob", "9")], False) == {"test-knob": 9}
    assert "test-knob" in config.forwarded()
    flags = config.worker_flags({**config.defaults(), "test-knob": 5})
    assert flags[flags.index("--test-knob") + 1] == "5"
    assert config.render(config.defaults())["test-knob"] == "3"
