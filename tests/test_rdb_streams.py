"""Streams in the RDB codec (``shardis.persist.rdb``) and through DUMP/RESTORE and SAVE.

The oracle is a real redis-server 7.0.15: files it writes must load into our reader byte for
byte (our DUMP of what we read is Redis's DUMP of the key), files we write must pass
``redis-check-rdb`` and load into Redis with the same XINFO/XPENDING/XRANGE answers, and a
real shardis must load Redis's files, keep changing the streams as Redis does and save them
back.  Hostile payloads end in ``ERR Bad data format`` / :class:`RdbError`, nothing else.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import time

import pytest
import redis

from shardis.commands.streams import StreamConsumer, StreamGroup, StreamValue
from shardis.persist import dump, packs, rdb
from shardis.persist.rdb import RdbError, RdbReader, encode_length, read_rdb, write_rdb
from tests.servers import Server, free_port, start_redis, wait_for_port

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server (the oracle) is not installed")
RNG = random.Random(1919)


# Building streams ---------------------------------------------------------------------------
def _stream(n: int = 250, seed: int = 7) -> StreamValue:
    """A stream with several nodes, tombstones (XDEL and exact trimming), mixed fields,
    integer-looking values and a consumer group with a PEL and consumers."""
    rng = random.Random(seed)
    value = StreamValue()
    for i in range(1, n + 1):
        if i % 11 == 0:
            fields = [b"other", b"%d" % rng.randrange(-70000, 70000)]
        else:
            fields = [b"f", b"%d" % i, b"text", b"x" * rng.randrange(0, 90)]
        value.append((1_000 + i // 4, (i % 4) * 3), fields)
    for entry_id in rng.sample(value.ids, n // 10):
        value.delete(entry_id)
    value.trim(n - n // 5, None, approx=False, limit=0)
    group = StreamGroup(value.ids[20], 21)
    for entry_id in value.ids[5:12]:
        group.pel[entry_id] = [1_700_000_000_000 + entry_id[0], 1 + entry_id[1], b"alice"]
    group.consumers[b"alice"] = StreamConsumer(1_700_000_000_123, sorted(group.pel))
    group.consumers[b"bob"] = StreamConsumer(1_700_000_000_456)
    value.groups[b"g1"] = group
    value.groups[b"12"] = StreamGroup((0, 0), -1)
    return value


def _plain(value: StreamValue) -> object:
    """Everything a stream holds, except a node's byte size (shardis estimates it while
    appending; a loaded node has its listpack's true size) and the order of its tombstones and groups."""
    from shardis.worker.types import value_type

    ids, entries, nodes, *rest, groups = value_type(value).dump(value)  # type: ignore[misc]
    nodes = [(master, fields, live, slots, last, sorted(dead))
             for master, fields, live, slots, _, last, dead in nodes]
    groups = sorted((name, last, read, sorted(pel), sorted(consumers))
                    for name, last, read, pel, consumers in groups)
    return ids, entries, nodes, *rest, groups


# (1) the codec alone ------------------------------------------------------------------------
def test_round_trip_keeps_everything():
    value = _stream()
    payload = dump.dump_payload(value)
    back = dump.load_payload(payload)
    assert _plain(back) == _plain(value)
    assert dump.dump_payload(back) == payload


def test_round_trip_through_a_file_with_an_empty_stream_and_expiry():
    empty = StreamValue()
    empty.append((5, 5), [b"f", b"v"])
    empty.delete((5, 5))
    empty.groups[b"g"] = StreamGroup((5, 5), 1)
    entries = [(b"s", _stream(), None), (b"e", empty, 4_102_444_800_000)]
    fh = io.BytesIO()
    write_rdb(fh, entries)
    reader = RdbReader(io.BytesIO(fh.getvalue()))
    got = list(reader)
    assert reader.empty_skipped == 0
    assert [(k, _plain(v), e) for k, v, e in got] == [(k, _plain(v), e) for k, v, e in entries]


def test_nodes_are_cut_as_redis_cuts_them():
    value = StreamValue()
    for i in range(1, 301):
        value.append((i, 0), [b"f", b"v"])
    assert [n.live for n in value.nodes] == [100, 100, 100]
    big = StreamValue()
    for i in range(1, 6):
        big.append((i, 0), [b"f", b"y" * 1500])
    assert [n.live for n in big.nodes] == [2, 2, 1]
    for stream in (value, big):
        back = dump.load_payload(dump.dump_payload(stream))
        assert [(n.master, n.live, n.slots) for n in back.nodes] == \
            [(n.master, n.live, n.slots) for n in stream.nodes]


def test_tombstones_are_written_flagged_and_read_back():
    value = StreamValue()
    for i in range(1, 6):
        value.append((i, 0), [b"f", b"%d" % i])
    value.delete((2, 0))
    value.trim(None, (4, 0), approx=False, limit=0)  # marks 1-0 and 3-0 deleted
    back = dump.load_payload(dump.dump_payload(value))
    assert back.ids == [(4, 0), (5, 0)]
    assert sorted(back.nodes[0].dead) == [((1, 0), [b"f", b"1"]), ((2, 0), [b"f", b"2"]),
                                          ((3, 0), [b"f", b"3"])]
    assert back.nodes[0].slots == 5 and back.nodes[0].live == 2


def test_node_with_only_tombstones_left_by_minid_is_kept():
    """An exact MINID trim can leave a node whose live entries are all gone but whose last
    entry, deleted earlier, is above the MINID: Redis keeps that node, and so do we."""
    value = StreamValue()
    for i in range(1, 4):
        value.append((i, 0), [b"f", b"v"])
    value.delete((3, 0))
    value.trim(None, (3, 0), approx=False, limit=0)
    assert len(value) == 0 and len(value.nodes) == 1
    back = dump.load_payload(dump.dump_payload(value))
    assert _plain(back) == _plain(value)


def _v15(value: StreamValue) -> bytes:
    """A STREAM_LISTPACKS (5.0-6.2) value: no first/max-deleted IDs nor entries_added, no
    entries_read in its groups; nodes as in STREAM_LISTPACKS_2."""
    w = rdb.RdbWriter(io.BytesIO())
    groups, value.groups = value.groups, {}
    first = value.ids[0] if value.ids else (0, 0)
    tail19 = b"".join(encode_length(n) for n in (len(value), *value.last_id, *first,
                                                  *value.max_deleted, value.added, 0))
    body = w._stream(value)
    value.groups = groups
    assert body.endswith(tail19)
    out = [body[:-len(tail19)], encode_length(len(value)), encode_length(value.last_id[0]),
           encode_length(value.last_id[1]), encode_length(len(groups))]
    for name, group in groups.items():
        head = b"".join(encode_length(n) for n in (*group.last_id, group.entries_read))
        out.append(w.string(name) + head[:-1] + w._group(group)[len(head):])
    return bytes([rdb.TYPE_STREAM_LISTPACKS]) + b"".join(out)


def test_reads_redis_6_streams_and_estimates_entries_read():
    value = StreamValue()
    for i in range(1, 11):
        value.append((i, 1), [b"f", b"v"])
    value.groups[b"at-last"] = StreamGroup((10, 1), 0)
    value.groups[b"at-start"] = StreamGroup((0, 0), 0)
    value.groups[b"at-first"] = StreamGroup((1, 1), 0)
    value.groups[b"beyond"] = StreamGroup((99, 0), 0)
    back = dump.load_payload(_seal(_v15(value), version=9))
    assert back.added == 10 and back.max_deleted == (0, 0)
    assert {n: g.entries_read for n, g in back.groups.items()} == \
        {b"at-last": 10, b"at-start": 0, b"at-first": 1, b"beyond": -1}
    assert back.ids == value.ids


def test_redis_7_2_streams_are_refused():
    with pytest.raises(RdbError, match=r"STREAM_LISTPACKS_3"):
        list(RdbReader(io.BytesIO(_file(bytes([21]) + b"\x01k\x00"))))


# (2) hostile input --------------------------------------------------------------------------
def _seal(body: bytes, version: int = 10) -> bytes:
    data = body + struct.pack("<H", version)
    return data + struct.pack("<Q", rdb.crc64(data))


def _file(body: bytes) -> bytes:
    data = b"REDIS0010" + body + bytes([rdb.OP_EOF])
    return data + struct.pack("<Q", rdb.crc64(data))


def _bad(body: bytes) -> None:
    with pytest.raises(dump.DumpError) as info:
        dump.load_payload(_seal(body))
    assert info.value.message == dump.BAD_FORMAT
    with pytest.raises(RdbError, match=r"at file offset \d+"):
        list(RdbReader(io.BytesIO(_file(body[:1] + b"\x01k" + body[1:]))))


def _node(master: tuple[int, int], blob: bytes) -> bytes:
    return encode_length(16) + struct.pack(">QQ", *master) + encode_length(len(blob)) + blob


def _tail(length: int, last: tuple[int, int], groups: bytes = b"\x00") -> bytes:
    ids = [*last, 0, 0, 0, 0]
    return b"".join(encode_length(n) for n in (length, *ids, length)) + groups


ONE = packs.build_stream_node((1, 0), [b"f"], [((1, 0), [b"f", b"v"], False)])


def _stream_body(nodes: bytes, count: int, length: int, last: tuple[int, int],
                 groups: bytes = b"\x00") -> bytes:
    return bytes([19]) + encode_length(count) + nodes + _tail(length, last, groups)


def test_a_valid_hand_made_stream_loads():
    value = dump.load_payload(_seal(_stream_body(_node((1, 0), ONE), 1, 1, (1, 0))))
    assert value.ids == [(1, 0)] and value.entries[(1, 0)] == [b"f", b"v"]


def _lp(items: list) -> bytes:
    return packs.listpack_from_entries(
        [packs.lp_encode_int(i) if isinstance(i, int) else packs.lp_encode_entry(i)
         for i in items])


@pytest.mark.parametrize("blob, why", [
    (_lp([]), "empty listpack"),
    (_lp([1, 0, 1, b"f", 0]), "count says one entry, none there"),
    (_lp([1, 0, 1, b"f", 0, 2, 0, 0, b"v", 5]), "wrong lp-count"),
    (_lp([1, 0, 1, b"f", 0, 2, 0, 0, b"v", 4, b"junk"]), "elements after the last entry"),
    (_lp([1, 1, 1, b"f", 0, 2, 0, 0, b"v", 4]), "deleted count without a deleted entry"),
    (_lp([2, 0, 1, b"f", 0, 2, 0, 0, b"v", 4, 2, 0, 0, b"v", 4]), "the same ID twice"),
    (_lp([1, 0, 1, b"f", 0, 2, -1, 0, b"v", 4]), "an ID below the master ID"),
    (_lp([1, 0, 1, b"f", 1, 2, 0, 0, b"v", 4]), "no zero master terminator"),
    (_lp([1, 0, 1, b"f", 0, 8, 0, 0, b"v", 4]), "unknown flags"),
    (_lp([1, 0, 1, b"f", 0, b"two", 0, 0, b"v", 4]), "flags not an integer"),
    (_lp([1, 0, -1, 0]), "negative field count"),
    (_lp([1, 0, 1, b"f", 0, 0, 0, 0, 99999999, b"f", 5]), "huge field count"),
    (ONE[:-1], "listpack without its end"),
    (ONE[:6] + b"\x00" + ONE[7:], "broken back-length"),
])
def test_bad_listpacks(blob, why):
    _bad(_stream_body(_node((1, 0), blob), 1, 1, (1, 0)))


def test_bad_stream_structures():
    two = packs.build_stream_node((2, 0), [b"f"], [((2, 0), [b"f", b"v"], False)])
    wide = packs.build_stream_node((1, 0), [b"f"], [((1, 0), [b"f", b"v"], False),
                                                    ((3, 0), [b"f", b"v"], False)])
    inside = packs.build_stream_node((2, 0), [b"f"], [((4, 0), [b"f", b"v"], False)])
    cases = {
        "key not 16 bytes": bytes([19, 1, 15]) + b"k" * 15 + encode_length(len(ONE)) + ONE,
        "length wrong": _stream_body(_node((1, 0), ONE), 1, 2, (1, 0)),
        "last ID below the entries": _stream_body(_node((1, 0), ONE), 1, 1, (0, 9)),
        "nodes out of order": _stream_body(_node((2, 0), two) + _node((1, 0), ONE), 2, 2,
                                           (2, 0)),
        "same node twice": _stream_body(_node((1, 0), ONE) * 2, 2, 2, (1, 0)),
        "a node's master inside the previous node": _stream_body(
            _node((1, 0), wide) + _node((2, 0), inside), 2, 3, (4, 0)),
        "huge node count": bytes([19]) + b"\x81" + b"\xff" * 8,
        "huge listpack length": bytes([19, 1, 16]) + b"\x00" * 16 + b"\x80\xff\xff\xff\xff",
        "cut in the tail": _stream_body(_node((1, 0), ONE), 1, 1, (1, 0))[:-3],
    }
    for why, body in cases.items():
        try:
            _bad(body)
        except AssertionError as exc:  # pragma: no cover - names the case that failed
            raise AssertionError(why) from exc


def _group(name: bytes, pel: list[tuple[int, int]], consumers: list[tuple[bytes, list]],
           count: int | None = None) -> bytes:
    out = [encode_length(len(name)) + name, b"\x01\x00", b"\x01"]
    out.append(encode_length(len(pel) if count is None else count))
    for entry_id in pel:
        out.append(struct.pack(">QQ", *entry_id) + struct.pack("<q", 123) + b"\x01")
    out.append(encode_length(len(consumers)))
    for cname, ids in consumers:
        out.append(encode_length(len(cname)) + cname + struct.pack("<q", 456))
        out.append(encode_length(len(ids)) + b"".join(struct.pack(">QQ", *i) for i in ids))
    return b"".join(out)


def test_group_structures():
    def body(*groups: bytes) -> bytes:
        return _stream_body(_node((1, 0), ONE), 1, 1, (1, 0),
                            encode_length(len(groups)) + b"".join(groups))

    good = dump.load_payload(_seal(body(_group(b"g", [(1, 0)], [(b"c", [(1, 0)]),
                                                              (b"idle", [])]))))
    group = good.groups[b"g"]
    assert group.pel == {(1, 0): [123, 1, b"c"]} and set(group.consumers) == {b"c", b"idle"}
    cases = {
        "consumer entry not in the group PEL": body(_group(b"g", [], [(b"c", [(1, 0)])])),
        "PEL entry without a consumer": body(_group(b"g", [(1, 0)], [(b"c", [])])),
        "PEL entry of two consumers": body(_group(b"g", [(1, 0)], [(b"c", [(1, 0)]),
                                                                   (b"d", [(1, 0)])])),
        "PEL entry twice in a consumer": body(_group(b"g", [(1, 0)], [(b"c", [(1, 0)] * 2)])),
        "global PEL entry twice": body(_group(b"g", [(1, 0), (1, 0)], [(b"c", [(1, 0)])])),
        "duplicate consumer": body(_group(b"g", [], [(b"c", []), (b"c", [])])),
        "duplicate group": body(_group(b"g", [], []), _group(b"g", [], [])),
        "huge PEL count": body(_group(b"g", [], [], count=1 << 40)),
        "cut inside a PEL entry": body(_group(b"g", [(1, 0)], [(b"c", [(1, 0)])]))[:-20],
    }
    for why, payload in cases.items():
        try:
            _bad(payload)
        except AssertionError as exc:  # pragma: no cover
            raise AssertionError(why) from exc


def test_every_truncation_and_mutation_is_bad_data_format():
    payloads = [dump.dump_payload(_stream(60, seed)) for seed in range(3)]
    for cut in range(0, len(payloads[0]) - 10, 3):
        with pytest.raises(dump.DumpError) as info:
            dump.load_payload(_seal(payloads[0][:cut]))
        assert info.value.message == dump.BAD_FORMAT
    for _ in range(3000):
        body = bytearray(RNG.choice(payloads)[:-10])
        for _ in range(RNG.randrange(1, 3)):
            at = RNG.randrange(len(body))
            if RNG.randrange(2):
                body[at] ^= 1 << RNG.randrange(8)
            else:
                body[at] = RNG.choice((0, 0x7F, 0x80, 0xC0, 0xF0, 0xFE, 0xFF))
        try:
            value = dump.load_payload(_seal(bytes(body)))
        except dump.DumpError as exc:
            assert exc.message == dump.BAD_FORMAT
        else:
            assert isinstance(value, StreamValue)
            dump.dump_payload(value)  # whatever loads can be written again


# (3) against real Redis -----------------------------------------------------------------------
#: Streams as an application leaves them: groups, consumers (one without pending entries),
#: XDEL and XTRIM holes, XSETID with ENTRIESADDED/MAXDELETEDID, an emptied stream with a
#: group, nodes cut by size and by count.
BUILD = [
    *[["XADD", "s", f"{i}-{i % 3}", "f", str(i), "text", "x" * (i % 40)] for i in range(1, 260)],
    *[["XADD", "s", f"{i}-0", "other", "-12345"] for i in range(260, 270)],
    ["XDEL", "s", "5-2", "6-0", "150-0", "151-1", "200-2"],
    ["XTRIM", "s", "MINID", "20"],
    ["XGROUP", "CREATE", "s", "g1", "0"],
    ["XGROUP", "CREATE", "s", "g2", "$"],
    ["XGROUP", "CREATE", "s", "123", "100-0"],
    ["XREADGROUP", "GROUP", "g1", "alice", "COUNT", "5", "STREAMS", "s", ">"],
    ["XREADGROUP", "GROUP", "g1", "bob", "COUNT", "3", "STREAMS", "s", ">"],
    ["XREADGROUP", "GROUP", "123", "bob", "COUNT", "2", "STREAMS", "s", ">"],
    ["XGROUP", "CREATECONSUMER", "s", "g1", "carol"],
    ["XGROUP", "CREATECONSUMER", "s", "g1", "dave"],
    ["XACK", "s", "g1", "21-0"],
    ["XCLAIM", "s", "g1", "carol", "0", "22-1"],
    ["XADD", "e", "5-5", "f", "v"],
    ["XDEL", "e", "5-5"],
    ["XGROUP", "CREATE", "e", "gg", "$"],
    ["XSETID", "e", "10-0", "ENTRIESADDED", "55", "MAXDELETEDID", "7-0"],
    *[["XADD", "big", f"{i}-0", "k", "v" * 1500] for i in range(1, 8)],
    *[["XADD", "many", f"{i}-0", "n", str(i)] for i in range(1, 350)],
    ["XTRIM", "many", "MAXLEN", "~", "120"],
    ["XTRIM", "many", "MAXLEN", "200"],
    ["XADD", "many", "MAXLEN", "190", "400-0", "n", "x"],
    ["SET", "plain", "string"],
]


def _run(client: redis.Redis, commands: list[list[str]]) -> None:
    for command in commands:
        client.execute_command(*command)


def _redis_on(folder: str, filename: str = "dump.rdb") -> Server:
    return start_redis("--dir", folder, "--dbfilename", filename)


def _view(client: redis.Redis, key: str) -> dict:
    """What clients see of a stream, without the fields that age with the clock (idle)."""
    view = {"range": client.xrange(key), "full": client.execute_command("XINFO", "STREAM", key,
                                                                       "FULL"),
            "dump": client.dump(key)}
    for group in client.xinfo_groups(key):
        name = group["name"]
        view[f"group {name}"] = group
        view[f"consumers {name}"] = [{k: v for k, v in c.items() if k != "idle"}
                                     for c in client.xinfo_consumers(key, name)]
        view[f"pending {name}"] = client.xpending(key, name)
        view[f"pending+ {name}"] = [
            {k: v for k, v in row.items() if k != "time_since_delivered"}
            for row in client.xpending_range(key, name, "-", "+", 100)]
    return view


def _check_rdb(path: str) -> None:
    result = subprocess.run(["redis-check-rdb", path], capture_output=True, text=True)
    assert result.returncode == 0 and "RDB looks OK" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def redis_file(tmp_path_factory) -> tuple[str, dict]:
    """Redis's own dump.rdb after BUILD, and what its clients saw of each stream."""
    folder = str(tmp_path_factory.mktemp("redis-rdb"))
    server = _redis_on(folder)
    try:
        client = redis.Redis(port=server.port, protocol=2)
        _run(client, BUILD)
        assert client.save()  # into folder: the last --dir wins
        views = {key: _view(client, key) for key in ("s", "e", "big", "many")}
    finally:
        server.stop()
    return os.path.join(folder, "dump.rdb"), views


@needs_redis
def test_redis_files_read_byte_for_byte(redis_file):
    path, views = redis_file
    entries = {key: value for key, value, _ in read_rdb(path)}
    assert set(entries) == {b"s", b"e", b"big", b"many", b"plain"}
    for key, view in views.items():
        assert dump.dump_payload(entries[key.encode()]) == view["dump"], key
    assert len(entries[b"big"].nodes) == 4 and len(entries[b"many"].nodes) == 2
    assert len(entries[b"e"]) == 0 and entries[b"e"].added == 55


@needs_redis
def test_our_files_check_and_load_in_redis(redis_file, tmp_path):
    path, views = redis_file
    ours = str(tmp_path / "ours.rdb")
    with open(ours, "wb") as fh:
        write_rdb(fh, read_rdb(path))
    _check_rdb(ours)
    server = _redis_on(str(tmp_path), "ours.rdb")
    try:
        client = redis.Redis(port=server.port, protocol=2)
        for key, view in views.items():
            assert _view(client, key) == view, key
    finally:
        server.stop()


def _shardis_on(folder: str) -> Server:
    """A one-worker shardis on ``folder`` (its worker loads worker-0/dump.rdb)."""
    import sys

    port = free_port()
    log = open(os.path.join(folder, "shardis.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "shardis", "up", "--workers", "1", "--port",
                             str(port), "--dir", folder, "--save", ""], stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    wait_for_port(port, proc)
    return Server("shardis", port, proc, folder)


#: What both servers do to the loaded streams: appends into the loaded last node, trims.
AFTER_LOAD = [
    *[["XADD", "s", f"500-{i}", "f", str(i), "text", "y"] for i in range(60)],
    ["XDEL", "s", "100-1", "500-3"],
    ["XTRIM", "s", "MAXLEN", "~", "150"],
    ["XADD", "big", "9-0", "k", "small"],
    ["XADD", "e", "11-0", "f", "v"],
    ["XTRIM", "many", "MINID", "330"],
]


@needs_redis
def test_shardis_loads_redis_files_and_saves_them_back(redis_file, tmp_path):
    path, views = redis_file
    folder = tmp_path / "data"
    (folder / "worker-0").mkdir(parents=True)
    shutil.copy(path, folder / "worker-0" / "dump.rdb")
    server = _shardis_on(str(folder))
    oracle = _redis_on(os.path.dirname(path))
    try:
        ours = redis.Redis(port=server.port, protocol=2)
        theirs = redis.Redis(port=oracle.port, protocol=2)
        for key, view in views.items():
            assert ours.xrange(key) == view["range"]
            assert ours.xrevrange(key, count=3) == theirs.xrevrange(key, count=3)
            assert ours.xlen(key) == theirs.xlen(key)
            assert ours.dump(key) == view["dump"], key
        assert ours.xread({"s": "250-0", "many": "0"}, count=2) == \
            theirs.xread({"s": "250-0", "many": "0"}, count=2)
        _run(ours, AFTER_LOAD)
        _run(theirs, AFTER_LOAD)
        for key in views:
            assert ours.dump(key) == theirs.dump(key), key
        assert ours.save()
        os.unlink(folder / "worker-0" / "dump.rdb")
        ours.bgsave()  # the forked child writes the same file
        deadline = time.monotonic() + 30
        while ours.info("persistence")["rdb_bgsave_in_progress"] and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert ours.info("persistence")["rdb_last_bgsave_status"] == "ok"
        saved = tmp_path / "saved"
        saved.mkdir()
        shutil.copy(folder / "worker-0" / "dump.rdb", saved / "dump.rdb")
        _check_rdb(str(saved / "dump.rdb"))
        expected = {key: _view(theirs, key) for key in views}
    finally:
        server.stop()
        oracle.stop()
    reloaded = _redis_on(str(saved))
    try:
        client = redis.Redis(port=reloaded.port, protocol=2)
        for key, view in expected.items():
            assert _view(client, key) == view, key
    finally:
        reloaded.stop()


@needs_redis
def test_restore_of_redis_payloads_into_shardis_and_back(redis_file, tmp_path):
    """RESTORE of Redis's stream payloads into a real shardis answers as Redis does, and a
    corrupt stream payload is ``Bad data format`` on both servers."""
    _, views = redis_file
    server = _shardis_on(str(tmp_path))
    try:
        client = redis.Redis(port=server.port, protocol=2)
        for key, view in views.items():
            assert client.restore(f"r:{key}", 0, view["dump"]) == b"OK"
            assert client.xrange(f"r:{key}") == view["range"]
            assert client.dump(f"r:{key}") == view["dump"]
            assert client.type(f"r:{key}") == b"stream"
        bad = bytearray(views["s"]["dump"][:-10])
        bad[40] ^= 0x40
        with pytest.raises(redis.ResponseError, match="^Bad data format$"):
            client.restore("bad", 0, _seal(bytes(bad)))
        assert client.exists("bad") == 0
    finally:
        server.stop()


def test_plain_data_round_trip_keeps_groups_and_tombstones():
    """RENAME and COPY between workers move values as plain data (``ValueType.dump``)."""
    from shardis.worker.types import value_type

    value = _stream()
    kind = value_type(value)
    back = kind.load(kind.dump(value))
    assert dump.dump_payload(back) == dump.dump_payload(value)


@needs_redis
def test_rename_and_copy_across_workers_keep_the_whole_stream(redis_file, r):
    """On a three-worker shardis, a restored stream renamed and copied to keys of other
    workers ({a}: 0, {d}: 1, {c}: 2) DUMPs byte for byte as Redis's payload."""
    _, views = redis_file
    payload = views["s"]["dump"]
    r.restore("{a}s", 0, payload)
    r.copy("{a}s", "{d}s")
    r.rename("{a}s", "{c}s")
    assert r.dump("{d}s") == payload and r.dump("{c}s") == payload


def _random_stream_commands(seed: int) -> list[list[bytes]]:
    """XADD (integer-looking and long values, repeated and changing fields, up to 70 of
    them, MAXLEN ~),
    XDEL and XTRIM (MAXLEN/MINID, = and ~) at random: where Redis cuts nodes, marks entries
    deleted and trims whole nodes must be where shardis does."""
    rng = random.Random(seed)
    ms, out = 1, []
    for _ in range(rng.randrange(50, 400)):
        r = rng.random()
        if r < 0.85:
            ms += rng.choice((0, 1, 1, 5, 1000, 70000, 2**33))
            fields: list[bytes] = []
            for j in range(rng.choice((1, 1, 2, 3, 70))):
                fields.append(rng.choice([b"f", b"g", b"name%d" % j, b"12"]))
                fields.append(rng.choice([b"%d" % rng.randrange(-10**6, 10**6),
                                          b"x" * rng.choice((1, 10, 63, 64, 100, 500, 5000)),
                                          b"%d" % rng.randrange(2**40)]))
            trim = [b"MAXLEN", b"~", b"%d" % rng.randrange(300)] if rng.random() < 0.1 else []
            out.append([b"XADD", b"s", *trim, b"%d-*" % ms, *fields])
        elif r < 0.93:
            out.append([b"XDEL", b"s", b"%d-0" % rng.randrange(1, ms + 1)])
        else:
            kind = rng.choice([b"MAXLEN", b"MINID"])
            out.append([b"XTRIM", b"s", kind, rng.choice([b"~", b"="]),
                        b"%d" % rng.randrange(300 if kind == b"MAXLEN" else ms)])
    return out


@needs_redis
@pytest.mark.parametrize("seed", range(12))
def test_random_stream_histories_dump_as_redis(seed, oracle_clean, shardis_clean):
    ours = redis.Redis(port=shardis_clean.port, protocol=2)
    theirs = redis.Redis(port=oracle_clean.port, protocol=2)
    for command in _random_stream_commands(seed):
        assert ours.execute_command(*command) == theirs.execute_command(*command), command
    assert ours.dump("s") == theirs.dump("s")


@needs_redis
def test_mutated_stream_payloads_answer_as_a_sanitizing_redis(redis_file, shardis_clean):
    """Real stream payloads with a flipped bit and a right checksum, restored into shardis and
    into a Redis that sanitizes payloads deeply (``sanitize-dump-payload yes``): whatever
    Redis refuses, shardis refuses too, with the same error; shardis survives them all."""
    _, views = redis_file
    payloads = [view["dump"] for view in views.values()]
    oracle = start_redis("--sanitize-dump-payload", "yes")
    ours = redis.Redis(port=shardis_clean.port, protocol=2)
    theirs = redis.Redis(port=oracle.port, protocol=2)
    try:
        for _ in range(400):
            body = bytearray(RNG.choice(payloads)[:-10])
            body[RNG.randrange(len(body))] ^= 1 << RNG.randrange(8)
            payload = _seal(bytes(body))
            answers = []
            for client in (ours, theirs):
                try:
                    answers.append(client.restore("fz", 0, payload, replace=True))
                except redis.ResponseError as exc:
                    answers.append(str(exc))
            assert answers[0] in (b"OK", "Bad data format"), answers
            if answers[1] != b"OK":
                assert answers[0] == answers[1], (bytes(body), answers)
        assert ours.ping() and theirs.ping()
    finally:
        oracle.stop()
