"""The AOF module against the real thing: redis-check-aof, redis-server loading our folder, and
our reader loading the folder a real redis-server wrote."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
import tracemalloc

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shardis.persist import aof
from shardis.persist.aof import (
    AofCorruptError,
    AofDir,
    AofError,
    AofTruncatedError,
    AofWriter,
    Manifest,
    ManifestError,
    aof_commands,
    encode_command,
)
from tests.servers import start_redis

CHECK_AOF = shutil.which("redis-check-aof")
needs_redis = pytest.mark.skipif(CHECK_AOF is None or shutil.which("redis-server") is None,
                                 reason="redis-server / redis-check-aof not installed")


def now_ms() -> int:
    return int(time.time() * 1000)


def write_folder(root: str, base: list[list[bytes]], incr: list[list[bytes]],
                 policy: str = "always") -> AofDir:
    """A folder with a RESP base file and one incr file holding ``incr``."""
    folder = AofDir(root)
    manifest, writer = folder.open_for_append(policy)
    folder.write_base(manifest, base)
    folder.write_manifest(manifest)
    writer.append(incr)
    writer.flush()
    writer.close()
    return folder


def check_aof(folder: AofDir) -> subprocess.CompletedProcess:
    return subprocess.run([CHECK_AOF, folder.manifest_path], capture_output=True, text=True,
                          timeout=10)


def incr_path(folder: AofDir) -> str:
    manifest = folder.load_manifest()
    assert manifest is not None
    return folder.file_path(manifest.incrs[-1].name)


# --- manifest ---------------------------------------------------------------------------------

def test_manifest_parses_redis_syntax_and_round_trips() -> None:
    text = (b"file appendonly.aof.2.base.rdb seq 2 type b\n"
            b"# a comment\n"
            b"file appendonly.aof.1.base.aof seq 1 type h\n"
            b"file appendonly.aof.3.incr.aof seq 3 type i\n"
            b"TYPE i SEQ 5 FILE \"with space\\x01.aof\" future key\n")
    manifest = Manifest.parse(text)
    assert manifest.base is not None and manifest.base.name == "appendonly.aof.2.base.rdb"
    assert [i.name for i in manifest.loaded_files()] == [
        "appendonly.aof.2.base.rdb", "appendonly.aof.3.incr.aof", "with space\x01.aof"]
    assert manifest.incr_seq == 5
    dumped = manifest.dumps()
    assert b'file "with space\\x01.aof" seq 5 type i\n' in dumped
    assert Manifest.parse(dumped) == manifest
    assert manifest.new_incr("appendonly.aof").name == "appendonly.aof.6.incr.aof"


@pytest.mark.parametrize("text, message", [
    (b"", "empty"),
    (b"file a seq 1 type b\nfile b seq 2 type b\n", "duplicate base"),
    (b"file a seq 2 type i\nfile b seq 2 type i\n", "non-monotonic"),
    (b"file dir/a seq 1 type i\n", "can't be a path"),
    (b"file a seq 1 type i", "too long line"),
    (b"file a seq 1 type x\n", "Unknown AOF file type"),
    (b"file a seq 1 type\n", "Invalid"),
    (b"file a seq 0 type i\n", "Invalid"),
    (b"\n", "Invalid"),
    (b'file "a seq 1 type i\n', "Invalid"),
    (b"file " + b"a" * 1100 + b" seq 1 type i\n", "too long line"),
])
def test_manifest_rejects_what_redis_rejects(text: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Manifest.parse(text)


def test_manifest_write_is_atomic_replace(tmp_path) -> None:
    folder = AofDir(str(tmp_path))
    manifest, writer = folder.open_for_append()
    writer.close()
    assert sorted(os.listdir(folder.path)) == ["appendonly.aof.1.incr.aof",
                                               "appendonly.aof.manifest"]
    new = folder.start_new_incr(manifest)
    new.close()
    assert folder.load_manifest() == manifest
    assert [i.name for i in manifest.incrs] == ["appendonly.aof.1.incr.aof",
                                                "appendonly.aof.2.incr.aof"]
    manifest.incrs_to_history()
    assert [i.type for i in manifest.history] == ["h"]


# --- translation --------------------------------------------------------------------------------

def test_relative_expiry_becomes_absolute() -> None:
    t = 1_700_000_000_000
    assert aof_commands([b"EXPIRE", b"k", b"10", b"GT"], t) == [
        [b"PEXPIREAT", b"k", b"%d" % (t + 10_000), b"GT"]]
    assert aof_commands([b"pexpire", b"k", b"-5"], t) == [[b"DEL", b"k"]]
    assert aof_commands([b"EXPIREAT", b"k", b"1"], t) == [[b"DEL", b"k"]]
    assert aof_commands([b"SET", b"k", b"v", b"NX", b"EX", b"2", b"GET"], t) == [
        [b"SET", b"k", b"v", b"PXAT", b"%d" % (t + 2000)]]
    assert aof_commands([b"SET", b"k", b"v", b"get", b"XX"], t) == [[b"SET", b"k", b"v", b"XX"]]
    assert aof_commands([b"SETEX", b"k", b"3", b"v"], t) == [
        [b"SET", b"k", b"v", b"PXAT", b"%d" % (t + 3000)]]
    assert aof_commands([b"GETEX", b"k", b"PX", b"5"], t) == [
        [b"PEXPIREAT", b"k", b"%d" % (t + 5)]]
    assert aof_commands([b"GETEX", b"k", b"PERSIST"], t) == [[b"PERSIST", b"k"]]
    assert aof_commands([b"GETEX", b"k"], t) == []
    assert aof_commands([b"GETDEL", b"k"], t) == [[b"DEL", b"k"]]
    assert aof_commands([b"RPUSH", b"l", b"a"], t) == [[b"RPUSH", b"l", b"a"]]


# --- writer and fsync policies -----------------------------------------------------------------

@pytest.fixture
def fsyncs(monkeypatch) -> list[int]:
    """Count fsync calls; the real fsync still runs so the files are real."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)
    monkeypatch.setattr(aof.os, "fsync", counting)
    return calls


def test_always_fsyncs_once_per_batch(tmp_path, fsyncs) -> None:
    writer = AofWriter(str(tmp_path / "a.aof"), "always")
    for batch in range(3):
        writer.append([[b"SET", b"k%d" % i, b"v"] for i in range(10)])
        assert fsyncs == [writer.fd] * batch  # append alone does no IO
        writer.flush()
        assert fsyncs == [writer.fd] * (batch + 1)
    writer.flush()  # an empty batch costs nothing
    assert len(fsyncs) == 3
    with open(tmp_path / "a.aof", "rb") as fh:
        commands = list(aof.read_aof_file(fh.name, "a.aof"))
    assert len(commands) == 31 and commands[0] == [b"SELECT", b"0"]


def test_everysec_and_no(tmp_path, fsyncs) -> None:
    every = AofWriter(str(tmp_path / "e.aof"), "everysec")
    never = AofWriter(str(tmp_path / "n.aof"), "no")
    for t in (10.0, 10.4, 10.9, 11.2, 11.3):
        for writer in (every, never):
            writer.append([[b"INCR", b"c"]])
            writer.flush(t)
            writer.maybe_fsync(t)
            writer.wait_fsync()
    assert fsyncs == [every.fd, every.fd]  # at 10.0 and at 11.2
    assert every.maybe_fsync(20.0)  # the write at 11.3 is still unsynced
    every.wait_fsync()
    assert not every.maybe_fsync(30.0)  # nothing written since the last fsync
    assert len(fsyncs) == 3
    assert os.path.getsize(tmp_path / "n.aof") == os.path.getsize(tmp_path / "e.aof") > 0


def test_everysec_fsyncs_in_the_background_and_reports_its_error(tmp_path, monkeypatch) -> None:
    import threading

    started, release, threads = threading.Event(), threading.Event(), []

    def slow_fsync(fd: int) -> None:
        threads.append(threading.current_thread().name)
        started.set()
        release.wait(5)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(aof.os, "fsync", slow_fsync)
    writer = AofWriter(str(tmp_path / "e.aof"), "everysec")
    writer.append([[b"INCR", b"c"]])
    writer.flush(1.0)
    assert writer.maybe_fsync(1.0)  # returns at once: the fsync blocks in its thread
    assert started.wait(5) and threads == ["aof-fsync"]
    writer.append([[b"INCR", b"c"]])
    writer.flush(2.5)  # writes go on meanwhile
    assert not writer.maybe_fsync(2.5)  # one fsync at a time
    release.set()
    writer.wait_fsync()
    with pytest.raises(OSError, match="Input/output error"):
        writer.maybe_fsync(3.0)  # the worker stops on it, as on a failed write
    monkeypatch.undo()
    writer.sync_error = None
    writer.close()


def test_failed_write_is_cut_back(tmp_path, monkeypatch) -> None:
    writer = AofWriter(str(tmp_path / "a.aof"), "no")
    writer.append([[b"SET", b"a", b"1"]])
    writer.flush()
    size = os.path.getsize(tmp_path / "a.aof")
    real_write = os.write

    def half_then_fail(fd: int, data) -> int:
        monkeypatch.setattr(aof.os, "write", _enospc)
        return real_write(fd, bytes(data[: len(data) // 2]))
    monkeypatch.setattr(aof.os, "write", half_then_fail)
    writer.append([[b"SET", b"b", b"2" * 100]])
    with pytest.raises(OSError):
        writer.flush()
    assert os.path.getsize(tmp_path / "a.aof") == size


def _enospc(fd: int, data) -> int:
    raise OSError(28, "No space left on device")


# --- reader ----------------------------------------------------------------------------------

SAMPLE = [[b"SET", b"k%d" % i, b"value %d\r\n" % i] for i in range(20)]


def test_reader_yields_base_then_incr_in_order(tmp_path) -> None:
    folder = write_folder(str(tmp_path), [[b"SET", b"base", b"1"]], SAMPLE)
    got = list(folder.read())
    assert got == [[b"SET", b"base", b"1"], [b"SELECT", b"0"], *SAMPLE]


def test_truncated_tail_is_cut_and_the_rest_loads(tmp_path, caplog) -> None:
    folder = write_folder(str(tmp_path), [], SAMPLE)
    path = incr_path(folder)
    full = os.path.getsize(path)
    last = len(encode_command(SAMPLE[-1]))
    for cut in (1, 5, last - 1):
        with open(path, "r+b") as fh:
            fh.truncate(full - cut)
        with caplog.at_level(logging.WARNING, logger="shardis.persist.aof"):
            assert list(folder.read()) == [[b"SELECT", b"0"], *SAMPLE[:-1]]
        assert "short read" in caplog.text
        assert os.path.getsize(path) == full - last
        if CHECK_AOF:
            assert check_aof(folder).returncode == 0
        with open(path, "ab") as fh:  # put the last command back for the next cut
            fh.write(encode_command(SAMPLE[-1]))


def test_truncation_in_a_non_last_file_is_fatal(tmp_path) -> None:
    folder = write_folder(str(tmp_path), SAMPLE, SAMPLE)
    base = folder.file_path(folder.load_manifest().base.name)
    with open(base, "r+b") as fh:
        fh.truncate(os.path.getsize(base) - 3)
    with pytest.raises(AofTruncatedError, match="appendonly.aof.1.base.aof"):
        list(folder.read())
    with pytest.raises(AofTruncatedError):
        list(folder.read(truncate_tail=False))


def test_open_multi_at_eof_is_reverted(tmp_path) -> None:
    folder = write_folder(str(tmp_path), [], [[b"SET", b"a", b"1"], [b"MULTI"],
                                              [b"SET", b"b", b"2"], [b"EXEC"], [b"MULTI"],
                                              [b"SET", b"c", b"3"]])
    assert [c[0] for c in folder.read()] == [b"SELECT", b"SET", b"MULTI", b"SET", b"EXEC"]
    assert list(folder.read())[-1] == [b"EXEC"]  # the cut is on disk now


@pytest.mark.parametrize("needle, replacement, reason", [
    (b"$2\r\nk3\r\n", b"#2\r\nk3\r\n", "expected '\\$' header"),
    (b"*3\r\n$3\r\nSET\r\n$2\r\nk5", b"*3\r\n$x\r\nSET\r\n$2\r\nk5", "expected '\\$' header"),
    (b"$9\r\nvalue 7\r\n", b"$8\r\nvalue 7\r\n", "expected CRLF"),
    (b"*3\r\n$3\r\nSET\r\n$2\r\nk9", b"*0\r\n$3\r\nSET\r\n$2\r\nk9", "empty command"),
])
def test_middle_corruption_names_file_and_offset(tmp_path, needle, replacement, reason) -> None:
    folder = write_folder(str(tmp_path), [], SAMPLE)
    path = incr_path(folder)
    data = open(path, "rb").read()
    at = data.index(needle)
    open(path, "wb").write(data.replace(needle, replacement, 1))
    with pytest.raises(AofCorruptError, match=reason) as info:
        list(folder.read())
    assert info.value.file == "appendonly.aof.1.incr.aof"
    assert at <= info.value.offset <= at + len(needle)
    assert os.path.getsize(path) == len(data)  # corruption is never "fixed" by cutting


def test_huge_declared_length_does_not_allocate(tmp_path) -> None:
    folder = write_folder(str(tmp_path), [], SAMPLE[:2])
    with open(incr_path(folder), "ab") as fh:
        fh.write(b"*2\r\n$3\r\nGET\r\n$999999999999999999\r\nabc")
    tracemalloc.start()
    try:
        assert list(folder.read()) == [[b"SELECT", b"0"], *SAMPLE[:2]]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_raise_only_aof_errors(tmp_path, data) -> None:
    body = b"".join(encode_command(c) for c in SAMPLE[:4])
    pos = data.draw(st.integers(0, len(body)))
    junk = data.draw(st.binary(max_size=12))
    cut = data.draw(st.integers(pos, len(body)))
    path = tmp_path / "f.aof"
    path.write_bytes(body[:pos] + junk + body[cut:])
    try:
        commands = list(aof.read_aof_file(str(path), "f.aof", truncate_tail=True))
    except AofError:
        return
    assert all(isinstance(c, list) and c for c in commands)


# --- against the real Redis ---------------------------------------------------------------------

@needs_redis
def test_redis_check_aof_accepts_our_folder(tmp_path) -> None:
    folder = write_folder(str(tmp_path), SAMPLE[:5], SAMPLE)
    result = check_aof(folder)
    assert result.returncode == 0, result.stdout
    assert "is valid" in result.stdout
    with open(incr_path(folder), "ab") as fh:  # the check is not vacuous
        fh.write(b"*2\r\n$3\r\nGET\r\n$1")
    assert check_aof(folder).returncode != 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"file ", b"seq ", b"type ", b"a", b"1", b"i", b"b", b"\"",
                                 b"'", b"\\x4", b" ", b"\n", b"#", b"\xff", b"\r", b"\t"])))
@example([b'"', b"\\x4", b'"', b"\n"])  # a lone \x in quotes: once a ValueError
def test_any_manifest_bytes_raise_only_manifest_errors(pieces: list[bytes]) -> None:
    try:
        manifest = Manifest.parse(b"".join(pieces))
    except ManifestError:
        return
    if manifest.base or manifest.history or manifest.incrs:  # an empty dump is "empty manifest"
        assert Manifest.parse(manifest.dumps()) == manifest


@needs_redis
def test_rewrite_then_redis_and_our_reader_load_it(tmp_path) -> None:
    folder = AofDir(str(tmp_path))
    manifest, writer = folder.open_for_append("always")
    writer.append([[b"SET", b"old", b"1"], [b"SET", b"k", b"before"]])
    writer.flush()
    writer = folder.rewrite(manifest, writer, [[b"SET", b"k", b"snapshot"]])
    writer.append([[b"RPUSH", b"after", b"x"]])
    writer.close()
    assert sorted(os.listdir(folder.path)) == ["appendonly.aof.1.base.aof",
                                               "appendonly.aof.2.incr.aof",
                                               "appendonly.aof.manifest"]
    assert list(folder.read()) == [[b"SET", b"k", b"snapshot"], [b"SELECT", b"0"],
                                   [b"RPUSH", b"after", b"x"]]
    assert check_aof(folder).returncode == 0
    server = start_redis("--appendonly", "yes", "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port)
        assert sorted(client.keys()) == [b"after", b"k"] and client.get("k") == b"snapshot"
    finally:
        server.stop()


@needs_redis
def test_redis_server_loads_our_folder(tmp_path) -> None:
    t = now_ms()
    base = [[b"SET", b"plain", b"base"], [b"RPUSH", b"list", b"a", b"b"]]
    sent = [[b"SET", b"ex", b"1", b"EX", b"100"], [b"SETEX", b"setex", b"200", b"2"],
            [b"HSET", b"h", b"f", b"v"], [b"EXPIRE", b"h", b"300"], [b"SET", b"gone", b"x"],
            [b"GETDEL", b"gone"], [b"MULTI"], [b"INCRBY", b"n", b"7"], [b"EXEC"],
            [b"SET", b"bin\x00", b"\r\n\xff"]]
    incr = [cmd for args in sent for cmd in aof_commands(args, t)]
    write_folder(str(tmp_path), base, incr)
    server = start_redis("--appendonly", "yes", "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port)
        assert sorted(client.keys()) == [b"bin\x00", b"ex", b"h", b"list", b"n", b"plain",
                                         b"setex"]
        assert client.get(b"bin\x00") == b"\r\n\xff"
        assert client.lrange("list", 0, -1) == [b"a", b"b"]
        assert client.get("n") == b"7" and client.hgetall("h") == {b"f": b"v"}
        assert client.ttl("plain") == -1
        for key, ttl in ((b"ex", 100), (b"setex", 200), (b"h", 300)):
            assert t + ttl * 1000 == client.pexpiretime(key)
    finally:
        server.stop()


@needs_redis
def test_reader_reads_what_redis_wrote(tmp_path) -> None:
    server = start_redis("--appendonly", "yes", "--aof-use-rdb-preamble", "no",
                         "--dir", str(tmp_path))
    sent = [[b"SET", b"a", b"1", b"EX", b"100"], [b"SETEX", b"b", b"50", b"2"],
            [b"RPUSH", b"l", b"x", b"y"], [b"PEXPIRE", b"l", b"90000"],
            [b"SET", b"c", b"3", b"GET"], [b"GETEX", b"c", b"EX", b"70"],
            [b"GETDEL", b"a"], [b"EXPIRE", b"b", b"-1"], [b"SET", b"bin", b"\r\n\x00"]]
    try:
        client = redis.Redis(port=server.port)
        before = now_ms()
        for args in sent:
            client.execute_command(*args)
        after = now_ms()
    finally:
        server.stop()
    got = [c for c in AofDir(str(tmp_path)).read() if c[0] != b"SELECT"]
    expected = [cmd for args in sent for cmd in aof_commands(args, before)]
    assert len(got) == len(expected)
    for mine, theirs in zip(expected, got):
        assert [a.upper() for a in mine[:1]] == [theirs[0].upper()]
        assert mine[1:] == theirs[1:] or _same_but_time(mine, theirs, after - before)


def _same_but_time(mine: list[bytes], theirs: list[bytes], slack: int) -> bool:
    """Equal except one absolute deadline, which may differ by the time the commands took."""
    diffs = [(a, b) for a, b in zip(mine, theirs) if a != b]
    return (len(mine) == len(theirs) and len(diffs) == 1
            and 0 <= int(diffs[0][1]) - int(diffs[0][0]) <= slack)


# --- batch annotations (a worker's resume point) -------------------------------------------

def _annotated_folder(root: str) -> tuple[AofDir, str]:
    """Three batches of router ``r1`` (5, 6 with a MULTI group, 7 of two commands), each
    announced by its annotation, after a checkpoint of router ``r0``."""
    folder = AofDir(root)
    manifest, writer = folder.open_for_append("always")
    writer.write_annotations([aof.batch_annotation(b"r0", 41, 0)])
    for seq, commands in ((5, [[b"SET", b"a", b"1"]]),
                          (6, [[b"MULTI"], [b"SET", b"b", b"2"], [b"EXEC"]]),
                          (7, [[b"SET", b"c", b"3"], [b"SET", b"d", b"4"]])):
        writer.append(commands)
        assert writer.flush(origin=(b"r1", seq))
    writer.close()
    return folder, incr_path(folder)


def test_batch_annotations_are_read_and_a_torn_batch_is_cut_whole(tmp_path, caplog) -> None:
    folder, path = _annotated_folder(str(tmp_path))
    got = list(folder.read(annotations=True))
    notes = [aof.parse_batch_annotation(c[1]) for c in got if c[0] == aof.ANNOTATION]
    size = lambda *cmds: sum(len(encode_command(c)) for c in cmds)  # noqa: E731
    assert notes == [(b"r0", 41, 0),
                     (b"r1", 5, size([b"SELECT", b"0"], [b"SET", b"a", b"1"])),
                     (b"r1", 6, size([b"MULTI"], [b"SET", b"b", b"2"], [b"EXEC"])),
                     (b"r1", 7, size([b"SET", b"c", b"3"], [b"SET", b"d", b"4"]))]
    assert [c for c in folder.read()][-2:] == [[b"SET", b"c", b"3"], [b"SET", b"d", b"4"]]
    full = os.path.getsize(path)
    last_batch = len(aof.batch_annotation(b"r1", 7, notes[3][2])) + notes[3][2]
    with open(path, "r+b") as fh:  # torn inside batch 7, after its first command
        fh.truncate(full - 10)
    with caplog.at_level(logging.WARNING, logger="shardis.persist.aof"):
        got = list(folder.read(annotations=True))
    # Redis would keep SET c (a complete command); a batch is kept whole or not at all.
    assert [c for c in got if c[0] != aof.ANNOTATION][-1] == [b"EXEC"]
    assert aof.parse_batch_annotation(got[-4][1]) == notes[2]
    assert os.path.getsize(path) == full - last_batch
    assert "short read" in caplog.text


def test_annotation_parsing_is_strict() -> None:
    assert aof.parse_batch_annotation(b"SHD:7231:12:0") == (b"r1", 12, 0)
    for text in (b"TS:1700000000", b"SHD:723:1:0", b"SHD:zz:1:0", b"SHD:72:1", b"SHD:72:-1:0",
                 b"SHD:72:1:0 trailing", b"SHD:" + b"7" * 66 + b":1:0"):
        assert aof.parse_batch_annotation(text) is None, text


@needs_redis
def test_redis_loads_and_checks_an_annotated_folder(tmp_path) -> None:
    folder, _ = _annotated_folder(str(tmp_path))
    result = check_aof(folder)
    assert result.returncode == 0 and "is valid" in result.stdout, result.stdout
    server = start_redis("--appendonly", "yes", "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port)
        assert client.mget("a", "b", "c", "d") == [b"1", b"2", b"3", b"4"]
    finally:
        server.stop()


@needs_redis
def test_rdb_preamble_base_then_resp_tail_and_incr_load_here_and_in_redis(tmp_path) -> None:
    """A base that starts with an RDB preamble (a rewrite's ``.base.rdb``, or an old
    single-file AOF's preamble followed by commands): the RDB part goes to the loader, the
    rest is read as commands, then the incr files."""
    from shardis.persist.rdb import RdbReader, RdbWriter

    folder = AofDir(str(tmp_path))
    os.makedirs(folder.path)
    base = folder.file_path("appendonly.aof.1.base.rdb")
    with open(base, "wb") as fh:
        writer = RdbWriter(fh)
        writer.begin(2, 1)
        writer.key(b"k", b"from-rdb")
        writer.key(b"ttl", b"x", now_ms() + 100_000)
        writer.end()
        fh.write(encode_command([b"SET", b"tail", b"1"]))
    manifest = Manifest()
    manifest.new_base("appendonly.aof", "rdb")
    writer_file = folder.start_new_incr(manifest)
    writer_file.append([[b"SET", b"k", b"from-incr"]])
    writer_file.close()
    # Without a loader (the data tools replay commands): the keys as RESTORE commands.
    restored = list(folder.read())
    assert [args[:2] for args in restored[:2]] == [[b"RESTORE", b"k"], [b"RESTORE", b"ttl"]]
    assert restored[0][2] == b"0" and restored[1][4] == b"ABSTTL"
    assert restored[2:] == [[b"SET", b"tail", b"1"], [b"SELECT", b"0"],
                            [b"SET", b"k", b"from-incr"]]
    loaded = []

    def loader(fh, name: str) -> None:
        assert name == "appendonly.aof.1.base.rdb"
        loaded.extend((key, value) for key, value, _ in RdbReader(fh))

    assert list(folder.read(rdb=loader)) == [[b"SET", b"tail", b"1"], [b"SELECT", b"0"],
                                             [b"SET", b"k", b"from-incr"]]
    assert loaded == [(b"k", b"from-rdb"), (b"ttl", b"x")]
    assert check_aof(folder).returncode == 0
    server = start_redis("--appendonly", "yes", "--dir", str(tmp_path))
    try:
        client = redis.Redis(port=server.port)
        assert sorted(client.keys()) == [b"k", b"tail", b"ttl"]
        assert client.get("k") == b"from-incr"
    finally:
        server.stop()


def test_a_worker_start_removes_history_and_temporary_files(tmp_path) -> None:
    """What a crash in the middle of a rewrite can leave: history files still in the manifest,
    a temporary base, a temporary incr file of an AOF being switched on."""
    from shardis.worker.aoflog import AofLog

    folder = AofDir(str(tmp_path))
    manifest, writer = folder.open_for_append("always")
    writer.append([[b"SET", b"a", b"1"]])
    writer.close()
    manifest.new_base("appendonly.aof")  # a base named but demoted below
    with open(folder.file_path("appendonly.aof.1.base.aof"), "wb") as fh:
        fh.write(encode_command([b"SET", b"b", b"2"]))
    manifest.history.append(aof.AofInfo("appendonly.aof.1.base.aof", 1, aof.HIST))
    manifest.base = None
    folder.write_manifest(manifest)
    for name in ("temp-rewriteaof-bg-123.aof", "temp-appendonly.aof.incr"):
        with open(folder.file_path(name), "wb") as fh:
            fh.write(b"junk")
    log = AofLog(str(tmp_path), policy="always")
    log.open_for_append()
    log.close()
    assert sorted(os.listdir(folder.path)) == ["appendonly.aof.1.incr.aof",
                                               "appendonly.aof.manifest"]
    assert folder.load_manifest().dumps() == b"file appendonly.aof.1.incr.aof seq 1 type i\n"
    assert list(folder.read()) == [[b"SELECT", b"0"], [b"SET", b"a", b"1"]]
