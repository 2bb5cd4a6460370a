"""Differential corpus: GEO commands, byte for byte against real Redis 7.0.

Coordinates are real places plus the awkward ones (the poles of Redis's Mercator range, both
sides of the antimeridian, the equator, null island, out-of-range scores put there by ZADD).
Search replies are compared exactly, including the order of equal distances: Redis sorts
with glibc's stable qsort, or its own pqsort when COUNT cuts the result, and shardis ports
both, so ties come out in the same order (``geo_ties``).  Without ASC/DESC/COUNT the order is
the order of the geohash boxes, also Redis's.

The STORE forms run with the destination on the source's worker (``{g}`` hash tags: forwarded
whole) and on another worker (``A``, ``B``, ``C``: the router computes on the source's worker
and writes on the destination's, under a gate).  See tests/differential.py for the harness.
"""

from __future__ import annotations

import random

from tests.differential import check, parametrize, script
from tests.test_atomicity import keys_on_distinct_workers

#: Three keys on three different shardis workers.
A, B, C = keys_on_distinct_workers(3)

PLACES = [
    ("13.361389", "38.115556", "Palermo"), ("15.087269", "37.502669", "Catania"),
    ("12.496365", "41.902782", "Rome"), ("9.189982", "45.464204", "Milan"),
    ("2.352222", "48.856613", "Paris"), ("-0.127758", "51.507351", "London"),
    ("139.691706", "35.689487", "Tokyo"), ("-73.935242", "40.730610", "NYC"),
    ("151.2093", "-33.8688", "Sydney"), ("-43.172897", "-22.906847", "Rio"),
    ("179.9", "0", "antimeridian-east"), ("-179.9", "0.1", "antimeridian-west"),
    ("180", "-16.5", "Fiji-ish"), ("-180", "-16.5", "Fiji-west"),
    ("0", "85.05112878", "north-edge"), ("0", "-85.05112878", "south-edge"),
    ("0", "0", "null-island"), ("-78.4678", "-0.1807", "Quito"), ("0", "51.4769", "Greenwich"),
]


def geoadd(key: str, places: list[tuple[str, str, str]] = PLACES) -> list[str]:
    return ["GEOADD", key, *(part for place in places for part in place)]


def random_places(count: int, seed: int, cluster: bool = False) -> list[tuple[str, str, str]]:
    """Reproducible points: spread over the world, or clustered with many exact duplicates
    (equal distances, to exercise the sort's tie order)."""
    rnd = random.Random(seed)
    places = []
    for i in range(count):
        if cluster and i % 3:
            lon, lat = 10.0 + (i % 7) * 0.01, 45.0 + (i % 5) * 0.01
        elif cluster:
            lon, lat = rnd.uniform(9.5, 10.5), rnd.uniform(44.5, 45.5)
        else:
            lon, lat = rnd.uniform(-180, 180), rnd.uniform(-85, 85)
        places.append((f"{lon:.6f}", f"{lat:.6f}", f"m{i}"))
    return places


def random_searches(key: str, seed: int, count: int, center: tuple[float, float] | None
                    ) -> list[list[str]]:
    """Searches of every kind with random radii, units and options."""
    rnd = random.Random(seed)
    steps = []
    for _ in range(count):
        if center is None:
            lon, lat = rnd.uniform(-180, 180), rnd.uniform(-85, 85)
        else:
            lon, lat = center[0] + rnd.uniform(-1, 1), center[1] + rnd.uniform(-1, 1)
        unit = rnd.choice(["m", "km", "ft", "mi", "KM"])
        radius = rnd.choice(["1", "100", "5000", "50000", "500000", "5000000", "12345.678"])
        opts = [flag for flag, p in (("WITHDIST", .5), ("WITHCOORD", .3), ("WITHHASH", .3))
                if rnd.random() < p]
        if rnd.random() < 0.6:
            opts.append(rnd.choice(["ASC", "DESC"]))
        if rnd.random() < 0.6:
            opts += ["COUNT", str(rnd.choice([1, 2, 3, 5, 10, 20, 50, 1000]))]
            if rnd.random() < 0.3:
                opts.append("ANY")
        where = [f"{lon:.5f}", f"{lat:.5f}"]
        member = f"m{rnd.randrange(40)}"
        kind = rnd.randrange(4)
        if kind == 0:
            steps.append(["GEORADIUS", key, *where, radius, unit, *opts])
        elif kind == 1:
            steps.append(["GEORADIUSBYMEMBER", key, member, radius, unit, *opts])
        elif kind == 2:
            height = rnd.choice(["1", "300", "40000", radius])
            steps.append(["GEOSEARCH", key, "FROMLONLAT", *where, "BYBOX", radius, height, unit,
                          *opts])
        else:
            steps.append(["GEOSEARCH", key, "FROMMEMBER", member, "BYRADIUS", radius, unit,
                          *opts])
    return steps


def store_cases(src: str, dst: str, other: str) -> list:
    """GEORADIUS* STORE/STOREDIST and GEOSEARCHSTORE from ``src`` into ``dst`` and ``other``."""
    return [
        geoadd(src),
        ["GEORADIUS", src, "15", "37", "500", "km", "STORE", dst],
        ["ZRANGE", dst, "0", "-1", "WITHSCORES"],
        ["GEORADIUS", src, "15", "37", "500", "km", "STOREDIST", dst, "DESC"],
        ["ZRANGE", dst, "0", "-1", "WITHSCORES"],
        ["GEORADIUS", src, "15", "37", "5000", "mi", "STORE", dst, "COUNT", "3"],
        ["ZRANGE", dst, "0", "-1", "WITHSCORES"],
        ["OBJECT", "ENCODING", dst],
        ["GEORADIUSBYMEMBER", src, "Paris", "1000", "km", "STOREDIST", dst, "COUNT", "2", "DESC"],
        ["ZRANGE", dst, "0", "-1", "WITHSCORES"],
        ["GEORADIUS", src, "15", "37", "500", "km", "STORE", dst, "STOREDIST", other],
        ["EXISTS", dst, other],
        ["ZRANGE", other, "0", "-1", "WITHSCORES"],
        ["GEOSEARCHSTORE", dst, src, "FROMLONLAT", "0", "0", "BYBOX", "10000", "8000", "km"],
        ["ZRANGE", dst, "0", "-1", "WITHSCORES"],
        ["GEOSEARCHSTORE", dst, src, "FROMMEMBER", "Rome", "BYRADIUS", "2000", "km", "STOREDIST",
         "COUNT", "4", "ANY"],
        ["ZRANGE", dst, "0", "-1", "WITHSCORES"],
        ["GEOSEARCHSTORE", dst, src, "FROMMEMBER", "Rome", "BYRADIUS", "20000", "km", "ASC",
         "COUNT", "5", "STOREDIST"],
        ["ZRANGE", dst, "0", "-1", "WITHSCORES"],
        # the destination loses its TTL and any other type
        ["EXPIRE", dst, "100"],
        ["GEOSEARCHSTORE", dst, src, "FROMMEMBER", "Rome", "BYRADIUS", "10", "km"],
        ["TTL", dst],
        ["SET", other, "string"],
        ["GEORADIUS", src, "15", "37", "500", "km", "STORE", other],
        ["TYPE", other],
        # an empty result (or a missing source) deletes the destination
        ["GEORADIUS", src, "15", "37", "1", "m", "STORE", dst],
        ["EXISTS", dst],
        ["GEORADIUS", src, "15", "37", "500", "km", "STORE", dst],
        ["GEOSEARCHSTORE", dst, src + "-missing", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "m"],
        ["EXISTS", dst],
        ["GEORADIUSBYMEMBER", src + "-missing", "x", "x", "km", "STORE", other],
        ["EXISTS", other],
        # errors come from the source's checks, in Redis's order; nothing is written
        ["SET", other, "keep"],
        ["GEORADIUS", src, "15", "37", "x", "km", "STORE", other],
        ["GEORADIUS", src, "15", "37", "1", "km", "STORE", other, "WITHDIST"],
        ["GEORADIUS", src, "15", "37", "1", "km", "STORE", other, "COUNT", "0"],
        ["GEOSEARCHSTORE", other, src, "FROMMEMBER", "nobody", "BYRADIUS", "1", "km"],
        ["GEOSEARCHSTORE", other, src, "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km",
         "WITHHASH"],
        ["GEOSEARCHSTORE", other, src, "BYRADIUS", "1", "km"],
        ["GEOSEARCHSTORE", other, src, "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km", "ANY"],
        ["GET", other],
        ["SET", src + "-str", "x"],
        ["GEOSEARCHSTORE", other, src + "-str", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km"],
        ["GEORADIUS", src + "-str", "1", "1", "1", "km", "STORE", other],
        ["GET", other],
    ]


SCRIPTS = [
    script(
        "geo_add_pos_hash_dist",
        geoadd("g"),
        ["ZRANGE", "g", "0", "-1", "WITHSCORES"],
        ["GEOPOS", "g", *(name for _, _, name in PLACES), "nobody"],
        ["GEOHASH", "g", *(name for _, _, name in PLACES), "nobody"],
        ["GEODIST", "g", "Palermo", "Catania"],
        ["GEODIST", "g", "Palermo", "Sydney", "km"],
        ["GEODIST", "g", "Palermo", "Sydney", "KM"],
        ["GEODIST", "g", "London", "NYC", "mi"],
        ["GEODIST", "g", "north-edge", "south-edge", "ft"],
        ["GEODIST", "g", "antimeridian-east", "antimeridian-west"],
        ["GEODIST", "g", "Fiji-ish", "Fiji-west", "m"],
        ["GEODIST", "g", "Palermo", "Palermo"],
        ["GEODIST", "g", "Palermo", "nobody"],
        ["GEODIST", "nokey", "a", "b"],
        ["GEOPOS", "nokey", "a", "b"],
        ["GEOHASH", "nokey", "a"],
        ["GEOPOS", "g"],
        ["GEOHASH", "g"],
        ["OBJECT", "ENCODING", "g"],
        ["TYPE", "g"],
    ),
    script(
        "geo_add_options",
        ["GEOADD", "g", "13.361389", "38.115556", "Palermo"],
        ["GEOADD", "g", "CH", "13.361389", "38.115556", "Palermo", "1", "1", "new"],
        ["GEOADD", "g", "CH", "13.4", "38.115556", "Palermo"],
        ["GEOADD", "g", "XX", "1", "1", "nobody"],
        ["GEOADD", "g", "NX", "CH", "0", "0", "Palermo", "2", "2", "n2"],
        ["GEOADD", "g", "xx", "ch", "0", "0", "Palermo"],
        ["GEOADD", "g", "ch", "nx", "ch", "5", "5", "n3"],
        ["ZRANGE", "g", "0", "-1", "WITHSCORES"],
        ["GEOADD", "fresh", "XX", "1", "1", "a"],
        ["EXISTS", "fresh"],
        ["GEOADD", "g", "180", "85.05112878", "corner", "-180", "-85.05112878", "corner2"],
        ["ZMSCORE", "g", "corner", "corner2"],
        ["GEOPOS", "g", "corner", "corner2"],
        ["GEOHASH", "g", "corner", "corner2"],
        ["GEOADD", "g", "1", "1", "m", "1", "1", "m"],
        ["ZCARD", "g"],
    ),
    script(
        "geo_add_errors",
        ["SET", "str", "x"],
        ["GEOADD", "str", "1", "2", "m"],
        ["GEOADD", "str", "1", "200", "m"],
        ["GEOADD", "g", "NX", "XX", "1", "2", "m"],
        ["GEOADD", "g", "NX", "1", "2"],
        ["GEOADD", "g", "CH", "CH", "CH"],
        ["GEOADD", "g", "GT", "1", "2", "m"],
        ["GEOADD", "g", "INCR", "1", "2"],
        ["GEOADD", "g", "x", "2", "m"],
        ["GEOADD", "g", "1", "nan", "m"],
        ["GEOADD", "g", "1", "", "m"],
        ["GEOADD", "g", "1", "2", "m", "1", "99", "n"],
        ["GEOADD", "g", "-180.0000001", "0", "m"],
        ["GEOADD", "g", "180", "85.05112879", "m"],
        ["GEOADD", "g", "-inf", "0", "m"],
        ["GEOADD", "g", "1e300", "0", "m"],
        ["GEOADD", "g", "0", "-90", "m"],
        ["EXISTS", "g"],
        ["GEOADD", "g", "1", "2"],
        ["GEOADD"],
        ["GEODIST", "g", "a"],
        ["GEODIST", "g", "a", "b", "c"],
        ["GEODIST", "g", "a", "b", "km", "extra"],
        ["GEODIST", "str", "a", "b"],
        ["GEODIST", "str", "a", "b", "parsec"],
        ["GEOPOS", "str", "a"],
        ["GEOHASH", "str", "a"],
        ["GEOPOS"],
        ["GEOHASH"],
    ),
    script(
        "geo_scores_from_zadd",
        ["ZADD", "g", "-1", "neg", "inf", "pinf", "9007199254740992", "big",
         "4503599627370496", "p52", "1e20", "huge", "-1e20", "nhuge", "0", "zero", "-inf",
         "ninf", "1.5", "frac"],
        ["GEOPOS", "g", "neg", "pinf", "big", "p52", "huge", "nhuge", "zero", "ninf", "frac"],
        ["GEOHASH", "g", "neg", "pinf", "big", "p52", "huge", "nhuge", "zero", "ninf", "frac"],
        ["GEODIST", "g", "neg", "pinf"],
        ["GEODIST", "g", "huge", "nhuge", "km"],
        ["GEORADIUSBYMEMBER", "g", "huge", "100", "km", "WITHDIST", "WITHHASH"],
        ["GEORADIUSBYMEMBER", "g", "zero", "100", "km", "WITHDIST", "WITHHASH", "WITHCOORD"],
        ["GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "30000", "km", "WITHHASH",
         "ASC"],
    ),
    script(
        "geo_search_options",
        geoadd("g"),
        ["GEORADIUS", "g", "15", "37", "200", "km"],
        ["GEORADIUS", "g", "15", "37", "200", "km", "WITHDIST", "WITHCOORD", "WITHHASH", "ASC"],
        ["GEORADIUS", "g", "15", "37", "200", "km", "WITHHASH", "WITHCOORD", "DESC"],
        ["GEORADIUS", "g", "15", "37", "200", "km", "WITHCOORD"],
        ["GEORADIUS", "g", "15", "37", "200", "km", "WITHHASH"],
        ["GEORADIUS", "g", "15", "37", "20000", "km", "WITHDIST"],
        ["GEORADIUS", "g", "15", "37", "20000", "km", "WITHDIST", "DESC"],
        ["GEORADIUS", "g", "15", "37", "20000", "km", "COUNT", "3"],
        ["GEORADIUS", "g", "15", "37", "20000", "km", "COUNT", "3", "DESC", "WITHDIST"],
        ["GEORADIUS", "g", "15", "37", "20000", "km", "COUNT", "3", "ANY"],
        ["GEORADIUS", "g", "15", "37", "20000", "km", "COUNT", "3", "ANY", "ASC"],
        ["GEORADIUS", "g", "15", "37", "20000", "km", "COUNT", "100", "DESC"],
        ["GEORADIUS", "g", "15", "37", "20000", "km", "COUNT", "1", "COUNT", "2"],
        ["GEORADIUS", "g", "15", "37", "20000", "km", "ASC", "DESC", "count", "4"],
        ["GEORADIUS", "g", "15", "37", "12450", "mi", "WITHDIST"],
        ["GEORADIUS", "g", "15", "37", "1000000", "ft", "WITHDIST", "ASC"],
        ["GEORADIUS", "g", "15", "37", "166274", "m", "WITHDIST", "ASC"],
        ["GEORADIUS_RO", "g", "15", "37", "200", "km", "WITHDIST"],
        ["GEORADIUSBYMEMBER", "g", "Palermo", "1000", "km", "WITHDIST", "WITHCOORD"],
        ["GEORADIUSBYMEMBER", "g", "Palermo", "0", "km", "WITHDIST"],
        ["GEORADIUSBYMEMBER_RO", "g", "Paris", "500", "mi", "WITHDIST", "ASC"],
        ["GEOSEARCH", "g", "FROMMEMBER", "Rome", "BYBOX", "2000", "2000", "km", "WITHDIST",
         "ASC"],
        ["GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYBOX", "40000", "20000", "km",
         "WITHDIST", "ASC", "WITHHASH"],
        ["GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "40000", "km", "WITHDIST",
         "WITHHASH"],
        ["GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "inf", "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYBOX", "inf", "inf", "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYBOX", "1e308", "1", "km"],
        ["GEOSEARCH", "g", "BYBOX", "3000", "1000", "km", "FROMMEMBER", "Paris", "DESC",
         "WITHCOORD", "COUNT", "2"],
        ["GEOSEARCH", "g", "FROMLONLAT", "-0.1", "51.5", "BYBOX", "0", "0", "m"],
        ["GEOSEARCH", "nokey", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"],
        ["GEORADIUS", "nokey", "0", "0", "1", "km"],
        ["GEORADIUSBYMEMBER", "nokey", "x", "1", "km"],
    ),
    script(
        "geo_edges_poles_antimeridian",
        geoadd("g"),
        ["GEORADIUS", "g", "180", "0", "500", "km", "WITHDIST"],
        ["GEORADIUS", "g", "-180", "0", "50", "mi", "WITHDIST"],
        ["GEORADIUS", "g", "-180", "-16.5", "1", "km", "WITHDIST", "WITHCOORD"],
        ["GEORADIUS", "g", "0", "85", "5000", "km", "WITHDIST"],
        ["GEORADIUS", "g", "0", "-85", "500", "km", "WITHDIST"],
        ["GEORADIUS", "g", "0", "85.05112878", "100", "km", "WITHDIST"],
        ["GEORADIUS", "g", "0", "0", "1", "m", "WITHDIST"],
        ["GEORADIUS", "g", "0", "0", "0", "m", "WITHDIST"],
        ["GEORADIUS", "g", "-78.5", "0", "100", "km", "WITHDIST", "WITHHASH"],
        ["GEOSEARCH", "g", "FROMLONLAT", "179.99", "0", "BYBOX", "100", "100", "km", "WITHDIST"],
        ["GEOSEARCH", "g", "FROMLONLAT", "0", "84", "BYBOX", "20000", "300", "km", "WITHDIST"],
        ["GEOSEARCH", "g", "FROMMEMBER", "south-edge", "BYBOX", "40000", "100", "km"],
        ["GEOADD", "anti", "0", "0", "a", "180", "0", "b", "-180", "0", "c", "0.0000001", "0",
         "d", "45", "45", "e", "-135", "-45", "f"],
        ["GEODIST", "anti", "a", "b"],
        ["GEODIST", "anti", "b", "c"],
        ["GEODIST", "anti", "a", "d"],
        ["GEODIST", "anti", "e", "f"],
        ["GEORADIUS", "anti", "90", "0", "20000", "km", "WITHDIST", "ASC"],
        ["GEORADIUS", "anti", "0", "0", "20037.5", "km", "WITHDIST", "DESC", "COUNT", "2"],
        ["GEORADIUS", "anti", "45", "45", "30000", "km", "WITHDIST", "ASC"],
    ),
    script(
        "geo_search_errors",
        ["GEOADD", "g", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"],
        ["SET", "str", "x"],
        ["GEORADIUS", "str", "x", "1", "1", "km"],
        ["GEORADIUS", "g", "x", "1", "1", "km"],
        ["GEORADIUS", "g", "1", "x", "1", "km"],
        ["GEORADIUS", "g", "200", "x", "1", "km"],
        ["GEORADIUS", "g", "200", "1", "x", "km"],
        ["GEORADIUS", "g", "1", "1", "-1", "km"],
        ["GEORADIUS", "g", "1", "1", "1", "kmh"],
        ["GEORADIUS", "nokey", "x", "1", "1", "km"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "COUNT"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "COUNT", "x"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "COUNT", "-1"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "COUNT", "99999999999999999999"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "STORE"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "bogus"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "ANY"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "FROMMEMBER", "x"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "ANY", "COUNT", "1", "STORE", "d", "WITHHASH"],
        ["GEORADIUS", "g", "1", "1", "1", "km", "STOREDIST", "d", "WITHCOORD"],
        ["GEORADIUS_RO", "g", "1", "1", "1", "km", "STOREDIST", "d"],
        ["GEORADIUSBYMEMBER_RO", "g", "Palermo", "1", "km", "STORE", "d"],
        ["GEORADIUSBYMEMBER", "g", "nobody", "1", "km"],
        ["GEORADIUSBYMEMBER", "g", "nobody", "x", "km"],
        ["GEORADIUSBYMEMBER", "nokey", "x", "x", "km", "bogus"],
        ["GEORADIUSBYMEMBER", "nokey", "x", "1", "km", "ANY"],
        ["GEORADIUSBYMEMBER", "g", "Palermo", "-1", "km"],
        ["GEORADIUSBYMEMBER", "g", "Palermo", "1", "parsec"],
        ["GEORADIUSBYMEMBER", "str", "Palermo", "1", "km"],
        ["GEOSEARCH", "g", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km", "BYBOX", "1", "1",
         "km"],
        ["GEOSEARCH", "g", "BYRADIUS", "1", "km", "FROMMEMBER", "Palermo", "FROMLONLAT", "1",
         "1"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "FROMMEMBER", "Palermo", "BYRADIUS", "1",
         "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "FROMLONLAT", "2", "2", "BYRADIUS", "1",
         "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km", "BYRADIUS", "2", "m"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km", "STORE", "x"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km", "STOREDIST"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "WITHDIST", "ASC"],
        ["geosearch", "g", "FROMLONLAT", "1", "1", "WITHDIST", "ASC"],
        ["GeoSearch", "g", "WITHDIST", "ASC", "COUNT", "1"],
        ["GEOSEARCH", "nokey", "FROMMEMBER", "x", "BYRADIUS", "1", "km"],
        ["GEOSEARCH", "nokey", "FROMMEMBER", "x", "WITHDIST"],
        ["GEOSEARCH", "nokey", "BYRADIUS", "1", "km", "WITHDIST"],
        ["GEOSEARCH", "g", "FROMMEMBER", "nobody", "BYRADIUS", "1", "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "500", "1", "BYRADIUS", "1", "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYBOX", "-1", "1", "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYBOX", "x", "1", "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYBOX", "1", "x", "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYBOX", "1", "-1", "m"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYBOX", "1", "1", "cm"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYBOX", "1", "1"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYRADIUS", "1"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "BYRADIUS", "1", "km"],
        ["GEOSEARCH", "str", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km"],
        ["GEOSEARCH", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ANY", "COUNT",
         "1", "WITHCOORD", "WITHHASH", "WITHDIST"],
        ["GEOSEARCHSTORE", "d", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km",
         "WITHCOORD"],
        ["GEOSEARCHSTORE", "d", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "STORE",
         "x"],
        ["GEOSEARCHSTORE", "d", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km",
         "COUNT", "0"],
        ["GEOSEARCHSTORE", "{str}d", "str", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"],
        ["GEORADIUS", "g"],
        ["GEORADIUS", "g", "1", "1", "1"],
        ["GEORADIUSBYMEMBER", "g", "a", "b"],
        ["GEOSEARCH", "g", "FROMLONLAT", "1", "1"],
        ["GEOSEARCHSTORE", "a", "b", "c", "d", "e", "f"],
        ["EXISTS", "d", "{str}d", "x"],
    ),
    script(
        "geo_store_same_worker",
        *store_cases("{g}src", "{g}dst", "{g}other"),
    ),
    script(
        "geo_store_across_workers",
        *store_cases(A, B, C),
    ),
    script(
        "geo_store_from_empty_source_across_workers",
        ["ZADD", B, "1", "x"],
        ["GEOSEARCHSTORE", B, A, "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km"],
        ["EXISTS", B],
        ["ZADD", C, "1", "x"],
        ["GEORADIUS", A, "1", "1", "1", "km", "STOREDIST", C],
        ["EXISTS", C],
        ["GEORADIUS", A, "1", "1", "1", "km", "STORE", C, "STORE", B],
    ),
    script(
        "geo_big_skiplist_random",
        geoadd("w", random_places(300, seed=7)),
        ["OBJECT", "ENCODING", "w"],
        ["GEOSEARCHSTORE", "{w}all", "w", "FROMLONLAT", "0", "0", "BYRADIUS", "30000", "km"],
        ["OBJECT", "ENCODING", "{w}all"],
        ["GEOSEARCHSTORE", B, "w", "FROMLONLAT", "0", "0", "BYRADIUS", "30000", "km",
         "STOREDIST", "COUNT", "200", "DESC"],
        ["OBJECT", "ENCODING", B],
        ["ZRANGE", B, "0", "-1", "WITHSCORES"],
        ["GEORADIUS", "w", "0", "0", "30000", "km", "STORE", C, "COUNT", "100"],
        ["OBJECT", "ENCODING", C],
        ["ZRANGE", C, "0", "-1", "WITHSCORES"],
        *random_searches("w", seed=11, count=50, center=None),
    ),
    script(
        "geo_ties",
        # many members at exactly the same places: equal distances, ordered as Redis's sorts
        geoadd("t", random_places(240, seed=3, cluster=True)),
        geoadd("{t}small", random_places(60, seed=5, cluster=True)),
        *random_searches("t", seed=13, count=40, center=(10.03, 45.02)),
        *random_searches("{t}small", seed=17, count=30, center=(10.03, 45.02)),
        ["GEOSEARCHSTORE", "{t}s", "t", "FROMLONLAT", "10.03", "45.02", "BYRADIUS", "5", "km",
         "COUNT", "25", "STOREDIST"],
        ["ZRANGE", "{t}s", "0", "-1", "WITHSCORES"],
    ),
    script(
        "geo_number_parsing",
        ["GEOADD", "k", "0x10", "0x1p3", "hex", "-0", "-0", "zero", "1e1", ".5", "exp"],
        ["GEOADD", "k", "1e-400", "0", "m"],
        ["GEOADD", "k", " 1", "0", "m"],
        ["GEOADD", "k", "1 ", "0", "m"],
        ["GEOADD", "k", "1e400", "0", "m"],
        ["GEOADD", "k", "+1", "-1", "plus"],
        ["GEOPOS", "k", "hex", "zero", "exp", "plus"],
        ["GEORADIUS", "k", "0", "0", "1e400", "m"],
        ["GEORADIUS", "k", "0", "0", "0x10", "km", "WITHDIST"],
        ["GEORADIUS", "k", "0", "0", "-0", "km", "WITHDIST"],
        ["GEORADIUS", "k", "0", "0", "1e-320", "km", "WITHDIST"],
        ["GEOSEARCH", "k", "FROMLONLAT", "0", "0", "BYBOX", "-0", "1e-320", "km", "WITHDIST"],
        ["GEORADIUS", "k", "0", "0", "5000", "km", "COUNT", "+1"],
        ["GEORADIUS", "k", "0", "0", "5000", "km", "COUNT", "01"],
        ["GEORADIUS", "k", "0", "0", "5000", "km", "COUNT", " 1"],
        ["GEORADIUS", "k", "0", "0", "5000", "km", "COUNT", "9223372036854775807", "ANY"],
    ),
    script(
        "geo_keywords_end_at_nul",
        # geo.c compares keywords with strcasecmp: an argument ends at its first NUL byte
        ["GEOADD", "k", b"nx\x00z", "1", "1", "m"],
        ["GEOADD", "k", b"XX\x00", b"CH\x00y", "1", "2", "m"],
        ["GEORADIUS", "k", "1", "1", "1", b"km\x00x"],
        ["GEORADIUS", "k", "1", "1", "1", "km", b"withdist\x00"],
        ["GEOSEARCH", "k", b"frommember\x00", "m", "byradius", "1", "km"],
        ["GEODIST", "k", "m", "m", b"Km\x00"],
        ["GEORADIUS", "k", "1", "1", "1", "km", b"STORE\x00a", "d"],
        ["EXISTS", "d"],
        ["COMMAND", "GETKEYS", "GEORADIUS", "k", "1", "1", "1", "km", b"STORE\x00a", "d"],
        ["GEORADIUS", "k", "1", "1", "1", "km", b"\x00"],
    ),
    script(
        "geo_command_getkeys",
        ["COMMAND", "GETKEYS", "GEORADIUS", "k", "1", "2", "3", "m"],
        ["COMMAND", "GETKEYS", "GEORADIUS", "k", "1", "2", "3", "m", "STORE", "d"],
        ["COMMAND", "GETKEYS", "GEORADIUS", "k", "1", "2", "3", "m", "STOREDIST", "d", "store",
         "e"],
        ["COMMAND", "GETKEYS", "GEORADIUSBYMEMBER", "k", "x", "3", "m", "COUNT", "1", "STORE",
         "d"],
        ["COMMAND", "GETKEYS", "GEORADIUS_RO", "k", "1", "2", "3", "m"],
        ["COMMAND", "GETKEYS", "GEOSEARCH", "k", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "m"],
        ["COMMAND", "GETKEYS", "GEOSEARCHSTORE", "d", "k", "FROMLONLAT", "1", "1", "BYRADIUS",
         "1", "m"],
        ["COMMAND", "GETKEYS", "GEOADD", "k", "1", "1", "m"],
        ["COMMAND", "GETKEYS", "GEOPOS", "k", "m"],
        ["COMMAND", "GETKEYS", "GEODIST", "k", "m", "n"],
        ["COMMAND", "GETKEYS", "GEOHASH", "k", "m"],
    ),
    script(
        "geo_in_scripts_and_transactions",
        geoadd("g"),
        ["EVAL", "return redis.call('GEOPOS', KEYS[1], 'Palermo', 'nobody')", "1", "g"],
        ["EVAL", "redis.setresp(3); return redis.call('GEOPOS', KEYS[1], 'Palermo')", "1", "g"],
        ["EVAL", "return redis.call('GEORADIUS', KEYS[1], 15, 37, 200, 'km', 'WITHDIST', "
                 "'WITHCOORD', 'WITHHASH')", "1", "g"],
        ["EVAL", "return redis.call('GEODIST', KEYS[1], 'Palermo', 'Rome', 'km')", "1", "g"],
        # GEORADIUS is a write command even without STORE; the _RO forms and GEOSEARCH are not
        ["EVAL_RO", "return redis.call('GEORADIUS', KEYS[1], 15, 37, 200, 'km')", "1", "g"],
        ["EVAL_RO", "return redis.call('GEORADIUS_RO', KEYS[1], 15, 37, 200, 'km')", "1", "g"],
        ["EVAL_RO", "return redis.call('GEOSEARCH', KEYS[1], 'FROMMEMBER', 'Rome', 'BYRADIUS', "
                    "500, 'km', 'WITHCOORD')", "1", "g"],
        ["MULTI"],
        ["GEOADD", "g", "1", "1", "new"],
        ["GEOPOS", "g", "new"],
        ["GEORADIUS", "g", "1", "1", "10", "km", "STORE", "{g}x"],
        ["GEOSEARCHSTORE", "{g}y", "g", "FROMMEMBER", "new", "BYRADIUS", "10", "km"],
        ["EXEC"],
        ["ZRANGE", "{g}y", "0", "-1", "WITHSCORES"],
        ["GEOADD", A, "1", "1", "a", "1.001", "1", "b"],
        ["MULTI"],
        ["GEORADIUS", A, "1", "1", "10", "km", "STOREDIST", B],
        ["GEOSEARCHSTORE", C, A, "FROMMEMBER", "a", "BYRADIUS", "10", "km", "COUNT", "1"],
        ["GEOSEARCHSTORE", C, A, "FROMMEMBER", "nobody", "BYRADIUS", "10", "km"],
        ["ZCARD", B],
        ["EXEC"],
        ["ZRANGE", B, "0", "-1", "WITHSCORES"],
        ["ZRANGE", C, "0", "-1", "WITHSCORES"],
    ),
]


@parametrize(SCRIPTS)
def test_geo(oracle, shardis, script, protocol):
    check(oracle, shardis, script, protocol)
