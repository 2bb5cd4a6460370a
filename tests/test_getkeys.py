"""Unit tests of ``shardis.commands.getkeys`` (Redis's getKeysFromCommandWithSpecs over its key
specs) and of the generated ``shardis.commands.keyspecs`` table; the end-to-end comparison with
real Redis is tests/test_diff_command_keyspecs.py."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from shardis.commands import all_commands, getkeys, keyspecs, load_families
from shardis.commands.getkeys import (
    ACCESS,
    DELETE,
    INSERT,
    OW,
    RO,
    RW,
    UPDATE,
    VARIABLE_FLAGS,
    KeyRef,
    KeySpec,
    atoi,
    flag_bits,
    flag_names,
    get_keys,
    has_keys,
    keys_using_specs,
    string2ll,
)
from shardis.router.acl import READ, WRITE, key_permission

load_families()
ROOT = Path(__file__).resolve().parent.parent


def line(*words: str | bytes) -> list[bytes]:
    return [w.encode() if isinstance(w, str) else w for w in words]


def positions(name: str, *words: str | bytes) -> list[int]:
    return [key.pos for key in get_keys(name, line(name, *words))]


def test_flags_are_named_in_redis_order():
    assert flag_names(flag_bits("update RW variable_flags access")) == [
        "RW", "access", "update", "variable_flags"]
    assert flag_names(0) == []
    assert flag_bits("RO access") == RO | ACCESS


def test_atoi_is_c_atoi():
    assert atoi(b"12abc") == 12
    assert atoi(b" \t-3") == -3
    assert atoi(b"+7") == 7
    assert atoi(b"x1") == 0
    assert atoi(b"") == 0
    assert atoi(b"4294967297") == 1  # strtol's long, cast to int
    assert atoi(b"99999999999999999999") == -1  # saturated at LONG_MAX, then cast


def test_string2ll_is_strict():
    assert string2ll(b"0") == 0
    assert string2ll(b"-12") == -12
    for text in (b"01", b"+1", b" 1", b"-0", b"1 ", b"", b"9223372036854775808"):
        assert string2ll(text) is None, text


def test_keyword_search_never_looks_at_its_end_index():
    """Redis's loop stops before ``argc - 1`` (forwards) or 1 (backwards)."""
    streams = (KeySpec(RO | ACCESS, ("keyword", "STREAMS", 1), ("range", -1, 1, 2)),)
    assert keys_using_specs(streams, line("xread", "STREAMS", "a", "0")) == [KeyRef(2, RO | ACCESS)]
    assert keys_using_specs(streams, line("xread", "x", "STREAMS")) == []
    backwards = (KeySpec(RW, ("keyword", "KEYS", -2), ("range", -1, 1, 0)),)
    assert keys_using_specs(backwards, line("m", "KEYS", "a", "b")) == []
    assert keys_using_specs(backwards, line("m", "x", "KEYS", "a")) == [KeyRef(3, RW)]


def test_keynum_spec_wraps_numkeys_to_an_int_and_rejects_bad_counts():
    spec = (KeySpec(RW, ("index", 2), ("keynum", 0, 1, 1)),)
    assert keys_using_specs(spec, line("eval", "s", "4294967297", "a")) == [KeyRef(3, RW)]
    assert keys_using_specs(spec, line("eval", "s", "0")) is None  # last < first
    assert keys_using_specs(spec, line("eval", "s", "2", "a")) is None  # past the end
    assert keys_using_specs(spec, line("eval", "s", "1x", "a")) is None


def test_incomplete_spec_falls_back_to_the_getkeys_function():
    assert positions("migrate", "h", "1", "", "0", "10", "KEYS", "a", "b") == [7, 8]
    assert positions("migrate", "h", "1", "k", "0", "10", "KEYS", "a") == []
    assert positions("migrate", "h", "1", "k", "0", "10") == [3]


def test_keynum_fallback_uses_atoi_and_gives_no_flags():
    assert get_keys("zunionstore", line("zunionstore", "d", "2abc", "a", "b")) == [
        KeyRef(3, 0), KeyRef(4, 0), KeyRef(1, 0)]
    assert get_keys("zunionstore", line("zunionstore", "d", "2", "a", "b"))[0] == KeyRef(
        1, flag_bits("OW update"))


def test_variable_flags_commands_always_use_their_function():
    assert getkeys.key_specs("set")[0].flags & VARIABLE_FLAGS
    assert get_keys("set", line("set", "k", "v")) == [KeyRef(1, OW | UPDATE)]
    assert get_keys("set", line("set", "k", "v", "gEt")) == [KeyRef(1, RW | ACCESS | UPDATE)]
    assert get_keys("set", line("set", "k", "v", b"get\0x")) == [KeyRef(1, RW | ACCESS | UPDATE)]
    assert get_keys("set", line("set", "k", "get")) == [KeyRef(1, OW | UPDATE)]  # the value
    assert get_keys("bitfield", line("bitfield", "k", "GET", "u8", "0")) == [KeyRef(1, RO | ACCESS)]
    assert get_keys("bitfield", line("bitfield", "k", "GET", "u8"))[0].flags == RW | ACCESS | UPDATE


def test_sort_finds_the_last_store_past_option_arguments():
    assert positions("sort", "k", "STORE", "a", "STORE", "b") == [1, 5]
    assert positions("sort", "k", "BY", "store", "GET", "store", "LIMIT", "store", "1") == [1]
    assert positions("sort", "k", "STORE") == [1]
    assert positions("sort_ro", "k", "STORE", "d") == [1]


def test_xread_and_georadius_functions():
    assert getkeys.xread_keys(line("xread", "COUNT", "1", "STREAMS", "a", "b", "0", "0")) == [
        KeyRef(4, 0), KeyRef(5, 0)]
    assert getkeys.xread_keys(line("xread", "STREAMS", "a", "0", "0")) == []
    assert getkeys.xread_keys(line("xread", "bogus", "STREAMS", "a", "0")) == []
    assert getkeys.georadius_keys(line("georadius", "k", "1", "2", "3", "m", "STORE", "a",
                                       "STOREDIST", "b")) == [KeyRef(1, 0), KeyRef(9, 0)]


def test_has_keys():
    assert has_keys("get") and has_keys("sort") and has_keys("object|encoding")
    assert not has_keys("ping") and not has_keys("spublish") and not has_keys("client|setinfo")


def test_acl_permission_from_key_flags():
    assert key_permission(RO | ACCESS) == READ
    assert key_permission(OW | UPDATE) == WRITE
    assert key_permission(RW | ACCESS | DELETE) == READ | WRITE
    assert key_permission(RW | INSERT) == WRITE
    assert key_permission(RO) == 0


def test_every_getkeys_function_is_implemented_and_every_command_with_keys_has_specs():
    assert set(keyspecs.GETKEYS_FUNCTIONS.values()) <= set(getkeys.FUNCTIONS)
    for spec in all_commands():
        for item in [spec, *spec.subcommands.values()]:
            if item.first_key and "internal" not in item.flags:
                assert item.fullname in keyspecs.KEY_SPECS, item.fullname


MIRROR = "/work/.mirror/redis+redis/repo"


def _mirror_has_tag() -> bool:
    try:
        return subprocess.run(["git", "-C", MIRROR, "rev-parse", "-q", "--verify",
                               "7.0.15^{commit}"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _mirror_has_tag(), reason="no Redis mirror to regenerate from")
def test_generated_module_is_up_to_date():
    path = ROOT / "tools" / "gen_keyspecs.py"
    module_spec = importlib.util.spec_from_file_location("gen_keyspecs", path)
    gen = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(gen)
    specs, functions = gen.collect(MIRROR, "7.0.15")
    expected = gen.render(specs, functions, "7.0.15")
    assert (ROOT / "shardis" / "commands" / "keyspecs.py").read_text() == expected


def test_odd_lines_never_raise_nor_point_past_the_end():
    """Whatever the arguments of a line that passed its arity check (as ACL checks see it)."""
    odd = [b"", b"\x00", b"STORE", b"KEYS", b"STREAMS", b"GET", b"-1", b"99999999999999999999"]
    for spec in all_commands():
        for item in [spec, *spec.subcommands.values()]:
            name = item.fullname
            for count in range(1, 10):
                args = [*name.encode().split(b"|"), *(odd[(count + i) % len(odd)]
                                                      for i in range(count))]
                if not item.arity_ok(len(args)):
                    continue
                for key in get_keys(name, args):
                    assert 0 < key.pos < len(args), (name, args, key)
