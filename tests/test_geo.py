"""GEO: the pure geohash/sort code (unit tests), then shardis end to end: keyspace events, the
cross-worker STORE path, hostile input.  Byte-exactness against Redis is tests/test_diff_geo.py.
"""

from __future__ import annotations

import math
import random
import threading
import time

import pytest
import redis

from shardis.commands import load_families
from shardis.commands.geo import (
    CIRCULAR,
    RECTANGLE,
    GeoPoint,
    HashBits,
    Shape,
    align52,
    c_to_uint64,
    compare_asc,
    compare_desc,
    deinterleave64,
    distance,
    encode,
    estimate_steps,
    format_distance,
    geohash_string,
    georadius_keys,
    georadius_store_key,
    glibc_msort,
    human_double,
    interleave64,
    lonlat_to_score,
    neighbors,
    order_points,
    pqsort,
    score_to_lonlat,
    search_boxes,
    within_shape,
)
from shardis.resp import HumanDouble
from shardis.resp import encode as resp_encode
from tests.resp_client import RawClient
from tests.servers import start_shardis
from tests.test_atomicity import keys_on_distinct_workers

load_families()

PALERMO = 3479099956230698  # GEOADD's score for 13.361389 38.115556 in Redis 7.0


# Bits ----------------------------------------------------------------------------------------
def test_interleave_round_trips_and_puts_x_on_even_bits():
    rnd = random.Random(1)
    for _ in range(500):
        x, y = rnd.getrandbits(32), rnd.getrandbits(32)
        assert deinterleave64(interleave64(x, y)) == x | (y << 32)
    assert interleave64(1, 0) == 1 and interleave64(0, 1) == 2
    assert interleave64(0xFFFFFFFF, 0) == 0x5555555555555555


def test_encode_matches_redis_scores_and_decodes_to_the_cell_centre():
    assert lonlat_to_score(13.361389, 38.115556) == PALERMO
    lon, lat = score_to_lonlat(PALERMO)
    assert (lon, lat) == (13.361389338970184, 38.1155563954963)
    assert encode(0, 90, 26) is None  # beyond Redis's Mercator latitude
    assert encode(181, 0, 26) is None
    assert encode(0, 0, 0) is None and encode(0, 0, 33) is None


def test_scores_outside_the_52_bits_decode_like_the_c_casts():
    assert c_to_uint64(-1.0) == 2**64 - 1
    assert c_to_uint64(math.inf) == 0
    assert c_to_uint64(2.0**63) == 2**63
    assert c_to_uint64(1.5) == 1
    # every score decodes, clamped to the WGS84 limits
    assert score_to_lonlat(-1.0) == (180.0, 85.05112878)
    assert score_to_lonlat(2.0**53)[0] == 180.0


def test_neighbours_are_one_cell_away_and_wrap_at_the_edges():
    centre = encode(13.36, 38.11, 10)
    assert centre is not None
    around = neighbors(centre)
    assert neighbors(around["east"])["west"] == centre
    assert neighbors(around["north"])["south"] == centre
    assert neighbors(around["north_east"])["south_west"] == centre
    assert len(set(around.values())) == 8
    corner = HashBits(0, 1)  # south-west quadrant at step 1: west wraps to the east one
    assert neighbors(corner)["west"] == neighbors(corner)["east"]


def test_align52_and_step_estimates():
    assert align52(HashBits(1, 1)) == 1 << 50
    assert align52(HashBits(3, 26)) == 3
    assert estimate_steps(0, 0) == 26
    assert estimate_steps(1, 0) == 24
    assert estimate_steps(5_000_000, 0) == 2
    assert estimate_steps(20_000_000, 0) == 1
    assert estimate_steps(1000, 0) > estimate_steps(1000, 70) > estimate_steps(1000, 85)


def test_distance_is_redis_haversine():
    assert format_distance(distance(13.361389338970184, 38.1155563954963,
                                    15.087267458438873, 37.50266842333162)) == b"166274.1516"
    assert distance(10, 10, 10, 20) == distance(10, 20, 10, 10) > 0  # same meridian shortcut
    assert distance(0, 0, 0, 0) == 0


def test_search_boxes_cover_the_shape():
    shape = Shape(kind=CIRCULAR, lon=13.36, lat=38.11, conversion=1000.0, radius=200.0)
    boxes = search_boxes(shape)
    assert len(boxes) == 9 and not boxes[0].is_zero
    assert len({box.step for box in boxes if not box.is_zero}) == 1
    box = Shape(kind=RECTANGLE, lon=0, lat=0, conversion=1.0, width=1000.0, height=10.0)
    assert within_shape(box, lonlat_to_score(0.004, 0)) is not None
    assert within_shape(box, lonlat_to_score(0, 0.004)) is None


# Formatting ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value, text", [
    (0.0, b"0.0000"), (-0.0, b"0.0000"), (1.0, b"1.0000"), (0.00005, b"0.0000"),
    (0.00015, b"0.0001"), (0.00025, b"0.0002"), (0.00035, b"0.0004"), (0.7750, b"0.7750"), (166274.15156960033, b"166274.1516"),
    (-2.5, b"-2.5000"), (math.nan, b"-922337203685477.5808"),
])
def test_format_distance_is_fixedpoint_d2string(value, text):
    assert format_distance(value) == text


@pytest.mark.parametrize("value, text", [
    (13.361389338970184, b"13.36138933897018433"), (180.0, b"180"), (-0.0, b"0"),
    (0.5, b"0.5"), (math.inf, b"inf"), (-math.inf, b"-inf"), (-1e-20, b"0"),
])
def test_human_double_is_addreplyhumanlongdouble(value, text):
    assert human_double(value) == text


def test_human_double_replies_are_bulk_in_resp2_and_double_in_resp3():
    reply = [HumanDouble(b"1.5")]
    assert resp_encode(reply, 2) == b"*1\r\n$3\r\n1.5\r\n"
    assert resp_encode(reply, 3) == b"*1\r\n,1.5\r\n"


def test_geohash_string_uses_the_standard_latitude_range():
    assert geohash_string(PALERMO) == b"sqc8b49rny0"
    assert geohash_string(0.0) == b"00bh0hbj200"


# Orderings -----------------------------------------------------------------------------------
def _points(dists: list[float]) -> list[GeoPoint]:
    return [GeoPoint(b"m%d" % i, 0.0, 0.0, 0.0, d) for i, d in enumerate(dists)]


def test_glibc_msort_is_stable_and_survives_nan():
    points = _points([3, 1, 2, 1, 3, 0, 2])
    ordered = glibc_msort(points, compare_asc)
    assert [p.member for p in ordered] == [b"m5", b"m1", b"m3", b"m2", b"m6", b"m0", b"m4"]
    assert [p.dist for p in glibc_msort(points, compare_desc)] == [3, 3, 2, 2, 1, 1, 0]
    with_nan = _points([2, math.nan, 1, math.nan, 0])
    assert len(glibc_msort(with_nan, compare_asc)) == 5


@pytest.mark.parametrize("seed", range(30))
def test_pqsort_sorts_the_requested_ranks(seed):
    rnd = random.Random(seed)
    n = rnd.randrange(1, 200)
    points = _points([rnd.choice([rnd.random(), 1.0, 2.0]) for _ in range(n)])
    keep = rnd.randrange(1, n + 1)
    everything = sorted(p.dist for p in points)
    work = list(points)
    pqsort(work, compare_asc, 0, keep - 1)
    assert sorted(p.member for p in work) == sorted(p.member for p in points)
    assert [p.dist for p in work[:keep]] == everything[:keep]


def test_order_points_modes():
    points = _points([5, 1, 3, 1])
    assert [p.member for p in order_points(list(points), 0, 2)] == [b"m0", b"m1"]
    assert [p.member for p in order_points(list(points), 1, 4)] == [b"m1", b"m3", b"m2", b"m0"]
    assert [p.member for p in order_points(list(points), 2, 4)] == [b"m0", b"m2", b"m1", b"m3"]
    assert [p.dist for p in order_points(list(points), 1, 2)] == [1, 1]


def test_georadius_keys_as_redis_finds_them():
    def keys(*args: str) -> tuple[list[int], int | None]:
        raw = [a.encode() for a in args]
        return georadius_keys(raw), georadius_store_key(raw)

    assert keys("GEORADIUS", "k", "1", "2", "3", "km") == ([1], None)
    assert keys("GEORADIUS", "k", "1", "2", "3", "km", "STORE", "d") == ([1, 7], 7)
    # key specs: first STORE, first STOREDIST; written: the last one
    assert keys("GEORADIUS", "k", "1", "2", "3", "km", "storedist", "d", "STORE", "e") == \
        ([1, 9, 7], 9)
    assert keys("GEORADIUS", "k", "1", "2", "3", "km", "STORE", "d", "STORE", "e") == \
        ([1, 7, 9], 9)
    assert keys("GEORADIUS", "k", "1", "2", "3", "km", "STORE") == ([1], None)
    assert keys("GEORADIUSBYMEMBER", "k", "m", "3", "km", "STOREDIST", "d") == ([1, 6], 6)


# End to end ----------------------------------------------------------------------------------
def _keyevents(port: int, commands: list[list[str]]) -> list[tuple[bytes, bytes]]:
    """(event, key) pairs the commands produce, per key in order (keyevent channel)."""
    control = RawClient(port)
    control.call("FLUSHALL")
    control.call("CONFIG", "SET", "notify-keyspace-events", "KEA")
    subscriber = RawClient(port)
    subscriber.call("PSUBSCRIBE", "__keyevent@0__:*")
    try:
        for args in commands:
            control.call(*args)
        time.sleep(0.3)
        events = []
        try:
            while True:
                parts = subscriber.read_reply(timeout=0.3).split(b"\r\n")
                events.append((parts[6].split(b":", 1)[1], parts[8]))
        except TimeoutError:
            pass
        return events
    finally:
        control.call("CONFIG", "SET", "notify-keyspace-events", "")
        control.close()
        subscriber.close()


def test_keyspace_events_match_redis_on_one_and_several_workers(oracle_clean, shardis_clean):
    src, far, farther = keys_on_distinct_workers(3)
    commands = [
        ["GEOADD", src, "13.36", "38.11", "P", "15.08", "37.50", "C"],
        ["GEORADIUS", src, "15", "37", "200", "km", "STORE", f"{{{src}}}d"],
        ["GEORADIUS", src, "15", "37", "1", "m", "STORE", f"{{{src}}}d"],
        ["GEOSEARCHSTORE", far, src, "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"],
        ["GEOSEARCHSTORE", far, src + "x", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"],
        ["GEORADIUSBYMEMBER", src, "P", "200", "km", "STOREDIST", farther],
        ["GEORADIUSBYMEMBER", src, "P", "1", "m", "STOREDIST", farther],
        ["GEORADIUS", src, "15", "37", "200", "km"],
    ]

    def by_key(events: list) -> dict:
        out: dict = {}
        for event, key in events:
            out.setdefault(key, []).append(event)
        return out

    theirs = by_key(_keyevents(oracle_clean.port, commands))
    ours = by_key(_keyevents(shardis_clean.port, commands))
    assert ours == theirs
    assert theirs[far.encode()] == [b"geosearchstore", b"del"]


def test_cross_worker_store_is_never_seen_half_done(r):
    """GEOSEARCHSTOREs into a destination on another worker, alternating 3 and 1 results,
    while another connection reads the destination: it only ever sees a whole result."""
    src, dst = keys_on_distinct_workers(2)
    r.geoadd(src, [13.36, 38.11, "P", 15.08, 37.50, "C", 12.49, 41.90, "R"])
    wide = ["GEOSEARCHSTORE", dst, src, "FROMLONLAT", "15", "37", "BYRADIUS", "800", "km"]
    narrow = [*wide[:-2], "100", "km", "STOREDIST"]
    r.execute_command(*wide)
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        reader = redis.Redis(port=r.connection_pool.connection_kwargs["port"])
        while not done.is_set():
            seen.add(reader.zcard(dst))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        stored = [r.execute_command(*(wide if i % 2 else narrow)) for i in range(200)]
    finally:
        done.set()
        thread.join()
    assert stored == [1, 3] * 100
    assert seen <= {1, 3} and seen


def test_hostile_input_gets_errors_and_no_process_dies(shardis_clean):
    client = RawClient(shardis_clean.port)
    try:
        client.call("GEOADD", "g", "1", "1", "a")
        hostile = [
            ["GEOSEARCH", "g", "FROMLONLAT", "1e308", "1", "BYRADIUS", "1", "km"],
            ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYRADIUS", "1e308", "ft"],
            ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYBOX", "1e-308", "1e308", "mi"],
            ["GEORADIUS", "g", "1", "1", "1", "km", "COUNT", "9223372036854775807"],
            ["GEORADIUS", "g", b"\xff\x00", "1", "1", "km"],
            ["GEOHASH", "g", *(["a"] * 1000)],
            ["__geosearch", "GEOSEARCH", "g"],
            ["__georadiusstore", "g", "m"],
        ]
        for args in hostile:
            assert client.call(*args)[:1] in (b"*", b"-")
        assert client.call("PING") == b"+PONG\r\n"
        assert client.call("GEOPOS", "g", "a").startswith(b"*1\r\n*2\r\n")
    finally:
        client.close()


def test_stored_results_survive_a_restart_through_the_aof(tmp_path):
    """The cross-worker writes are logged as the internal store commands; replayed, they
    rebuild the same zsets (no RDB here: ``save ""``)."""
    src, far = keys_on_distinct_workers(2)
    args = ("--appendonly", "yes", "--save", "", "--dir", str(tmp_path))
    server = start_shardis(3, *args)
    try:
        client = redis.Redis(port=server.port)
        client.geoadd(src, [13.36, 38.11, "P", 15.08, 37.50, "C"])
        client.execute_command("GEORADIUS", src, 15, 37, 200, "km", "STOREDIST", far)
        client.execute_command("GEOSEARCHSTORE", f"{{{src}}}d", src, "FROMLONLAT", 15, 37,
                               "BYRADIUS", 200, "km")
        before = [client.zrange(key, 0, -1, withscores=True) for key in (far, f"{{{src}}}d")]
        client.close()
    finally:
        server.stop()
    server = start_shardis(3, *args)
    try:
        client = redis.Redis(port=server.port)
        after = [client.zrange(key, 0, -1, withscores=True) for key in (far, f"{{{src}}}d")]
        client.close()
    finally:
        server.stop()
    assert after == before and len(before[0]) == 2
