"""GEO commands (Redis's geo.c, geohash.c, geohash_helper.c) over sorted sets.

A geo index is a plain sorted set (:class:`~shardis.commands.zsets.ZSetValue`): each member's
score is its 52-bit interleaved geohash (26 bits of longitude, 26 of latitude, latitude in
Redis's -85.05112878..85.05112878 Mercator range), so ZRANGE, ZSCORE... see exactly what Redis
shows.  GEOADD is ZADD with scores computed from the coordinates (its zset code is reused).

Searches (GEORADIUS*, GEOSEARCH*) are Redis's algorithm step by step, because the replies
depend on it: the geohash step is estimated from the radius, the centre box and its eight
neighbours are read in Redis's order (centre, N, S, E, W, NE, NW, SE, SW, skipping a box equal
to the previous one), each box as a score range of the zset, each point filtered by its exact
distance.  The points are then ordered as Redis orders them: glibc's ``qsort`` (a stable merge
sort: :func:`glibc_msort`) when the whole result is returned, Redis's partial quicksort
``pqsort`` (:func:`pqsort`, not stable) when COUNT cuts it; both are ported so that ties come
out in Redis's order.  All the floating point is done in the same order of operations as the C
code, with the same libm, so distances and coordinates are bit-identical.

Replies: distances with 4 decimals (Redis's ``fixedpoint_d2string``), coordinates as
``addReplyHumanLongDouble`` (``%.17Lf`` without trailing zeros: a bulk string in RESP2, a
double in RESP3; :class:`~shardis.resp.HumanDouble`).

GEORADIUS ... STORE and GEOSEARCHSTORE whose destination is on another worker are run by the
router (``shardis.router.geo``): ``__geosearch`` computes on the source's worker what would be
stored, ``__georadiusstore``/``__geosearchstore`` write it (named so that the keyspace event is
Redis's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from shardis import errors
from shardis.commands import Fanout, command
from shardis.commands.hashes import value_of_type
from shardis.commands.strings import parse_int
from shardis.commands.zsets import ZSetValue, parse_score, store_zset, zadd_generic
from shardis.errors import ReplyError
from shardis.resp import NULL_ARRAY, HumanDouble, format_double
from shardis.worker.keyspace import Keyspace

# geohash.h / geohash_helper.c constants ------------------------------------------------------
GEO_STEP_MAX = 26
GEO_LAT_MIN, GEO_LAT_MAX = -85.05112878, 85.05112878
GEO_LONG_MIN, GEO_LONG_MAX = -180.0, 180.0
EARTH_RADIUS_IN_METERS = 6372797.560856
MERCATOR_MAX = 20037726.37
D_R = math.pi / 180.0
U64 = (1 << 64) - 1
GEO_ALPHABET = b"0123456789bcdefghjkmnpqrstuvwxyz"

WGS84 = ((GEO_LONG_MIN, GEO_LONG_MAX), (GEO_LAT_MIN, GEO_LAT_MAX))
STANDARD = ((-180.0, 180.0), (-90.0, 90.0))  # GEOHASH's re-encoding ranges

# Errors (geo.c) ------------------------------------------------------------------------------
UNSUPPORTED_UNIT = "ERR unsupported unit provided. please use M, KM, FT, MI"
NEED_RADIUS = "ERR need numeric radius"
NEED_WIDTH = "ERR need numeric width"
NEED_HEIGHT = "ERR need numeric height"
NEGATIVE_RADIUS = "ERR radius cannot be negative"
NEGATIVE_BOX = "ERR height or width cannot be negative"
BAD_MEMBER = "ERR could not decode requested zset member"
COUNT_NOT_POSITIVE = "ERR COUNT must be > 0"
ANY_NEEDS_COUNT = "ERR the ANY argument requires COUNT argument"

UNITS = {b"m": 1.0, b"km": 1000.0, b"ft": 0.3048, b"mi": 1609.34}


def keyword(raw: bytes) -> bytes:
    """An argument as geo.c's ``strcasecmp`` sees it: lower case, up to its first NUL."""
    return raw.split(b"\0", 1)[0].lower()


# C arithmetic where Python differs: libm returns NaN where Python raises -----------------------
def _libm(fn: Callable[[float], float]) -> Callable[[float], float]:
    def call(x: float) -> float:
        try:
            return fn(x)
        except ValueError:  # C's domain error: NaN
            return math.nan

    return call


c_sin, c_cos, c_asin, c_sqrt = _libm(math.sin), _libm(math.cos), _libm(math.asin), \
    _libm(math.sqrt)


def c_div(a: float, b: float) -> float:
    """IEEE division (Python raises on a zero divisor)."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def c_to_int64(x: float) -> int:
    """x86-64 ``cvttsd2si``: truncation; NaN or out of range gives INT64_MIN."""
    if math.isnan(x) or not -(2.0 ** 63) <= x < 2.0 ** 63:
        return -(1 << 63)
    return int(x)


def c_to_uint64(x: float) -> int:
    """A double cast to ``uint64_t`` as gcc compiles it on x86-64 (what ``decodeGeohash``
    does to any score, even a negative or infinite one a ZADD put there)."""
    if not x >= 2.0 ** 63:  # NaN takes this branch too
        return c_to_int64(x) & U64
    return (c_to_int64(x - 2.0 ** 63) ^ (1 << 63)) & U64


def deg_rad(angle: float) -> float:
    return angle * D_R


def rad_deg(angle: float) -> float:
    return angle / D_R


# Bit interleaving (geohash.c) ---------------------------------------------------------------
_B = (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x00FF00FF00FF00FF,
      0x0000FFFF0000FFFF, 0x00000000FFFFFFFF)


def interleave64(xlo: int, ylo: int) -> int:
    """x's bits at even positions, y's at odd ones (x, y: 32-bit)."""
    x, y = xlo & 0xFFFFFFFF, ylo & 0xFFFFFFFF
    for shift, mask in zip((16, 8, 4, 2, 1), _B[4::-1]):
        x = (x | (x << shift)) & mask
        y = (y | (y << shift)) & mask
    return x | (y << 1)


def deinterleave64(interleaved: int) -> int:
    """Inverse of :func:`interleave64`: x in the low 32 bits, y in the high ones (unrolled:
    every point a search looks at is decoded)."""
    x = interleaved & 0x5555555555555555
    x = (x | (x >> 1)) & 0x3333333333333333
    x = (x | (x >> 2)) & 0x0F0F0F0F0F0F0F0F
    x = (x | (x >> 4)) & 0x00FF00FF00FF00FF
    x = (x | (x >> 8)) & 0x0000FFFF0000FFFF
    x = (x | (x >> 16)) & 0x00000000FFFFFFFF
    y = (interleaved >> 1) & 0x5555555555555555
    y = (y | (y >> 1)) & 0x3333333333333333
    y = (y | (y >> 2)) & 0x0F0F0F0F0F0F0F0F
    y = (y | (y >> 4)) & 0x00FF00FF00FF00FF
    y = (y | (y >> 8)) & 0x0000FFFF0000FFFF
    y = (y | (y >> 16)) & 0x00000000FFFFFFFF
    return x | (y << 32)


@dataclass(frozen=True)
class HashBits:
    """A geohash of ``2 * step`` bits; ``(0, 0)`` is Redis's zeroed (skipped) box."""

    bits: int
    step: int

    @property
    def is_zero(self) -> bool:
        return not self.bits and not self.step


ZERO = HashBits(0, 0)


@dataclass(frozen=True)
class Area:
    """The box a geohash stands for."""

    lon_min: float
    lon_max: float
    lat_min: float
    lat_max: float


Ranges = tuple[tuple[float, float], tuple[float, float]]


def encode(lon: float, lat: float, step: int, ranges: Ranges = WGS84) -> HashBits | None:
    """``geohashEncode``: None outside the WGS84 limits (Redis's error return)."""
    (lon_min, lon_max), (lat_min, lat_max) = ranges
    if not 0 < step <= 32:
        return None
    if lon > GEO_LONG_MAX or lon < GEO_LONG_MIN or lat > GEO_LAT_MAX or lat < GEO_LAT_MIN:
        return None
    if lat < lat_min or lat > lat_max or lon < lon_min or lon > lon_max:
        return None
    lat_offset = (lat - lat_min) / (lat_max - lat_min) * float(1 << step)
    lon_offset = (lon - lon_min) / (lon_max - lon_min) * float(1 << step)
    return HashBits(interleave64(int(lat_offset), int(lon_offset)), step)


def decode(hash_: HashBits, ranges: Ranges = WGS84) -> Area | None:
    """``geohashDecode``: the box of ``hash_``; None for a zeroed hash."""
    if hash_.is_zero:
        return None
    (lon_min, lon_max), (lat_min, lat_max) = ranges
    separated = deinterleave64(hash_.bits)
    lat_scale, lon_scale = lat_max - lat_min, lon_max - lon_min
    ilat, ilon = separated & 0xFFFFFFFF, separated >> 32
    cells = float(1 << hash_.step)
    return Area(
        lon_min=lon_min + (ilon * 1.0 / cells) * lon_scale,
        lon_max=lon_min + (((ilon + 1) & 0xFFFFFFFF) * 1.0 / cells) * lon_scale,
        lat_min=lat_min + (ilat * 1.0 / cells) * lat_scale,
        lat_max=lat_min + (((ilat + 1) & 0xFFFFFFFF) * 1.0 / cells) * lat_scale,
    )


def area_center(area: Area) -> tuple[float, float]:
    """``geohashDecodeAreaToLongLat``: the box's centre, clamped to the WGS84 limits."""
    lon = min(max((area.lon_min + area.lon_max) / 2, GEO_LONG_MIN), GEO_LONG_MAX)
    lat = min(max((area.lat_min + area.lat_max) / 2, GEO_LAT_MIN), GEO_LAT_MAX)
    return lon, lat


_CELLS_26 = float(1 << GEO_STEP_MAX)
_TWO_63 = 2.0 ** 63
_LAT_SCALE, _LON_SCALE = GEO_LAT_MAX - GEO_LAT_MIN, GEO_LONG_MAX - GEO_LONG_MIN


def score_to_lonlat(score: float) -> tuple[float, float]:
    """``decodeGeohash``: the position a zset score stands for (any score decodes).

    :func:`decode` and :func:`area_center` for step 26, inlined: searches call it per point.
    """
    bits = int(score) if 0.0 <= score < _TWO_63 else c_to_uint64(score)
    separated = deinterleave64(bits)
    ilat, ilon = separated & 0xFFFFFFFF, separated >> 32
    lat_low = GEO_LAT_MIN + (ilat * 1.0 / _CELLS_26) * _LAT_SCALE
    lat_high = GEO_LAT_MIN + (((ilat + 1) & 0xFFFFFFFF) * 1.0 / _CELLS_26) * _LAT_SCALE
    lon_low = GEO_LONG_MIN + (ilon * 1.0 / _CELLS_26) * _LON_SCALE
    lon_high = GEO_LONG_MIN + (((ilon + 1) & 0xFFFFFFFF) * 1.0 / _CELLS_26) * _LON_SCALE
    lon, lat = (lon_low + lon_high) / 2, (lat_low + lat_high) / 2
    if not GEO_LONG_MIN <= lon <= GEO_LONG_MAX:
        lon = GEO_LONG_MAX if lon > GEO_LONG_MAX else GEO_LONG_MIN
    if not GEO_LAT_MIN <= lat <= GEO_LAT_MAX:
        lat = GEO_LAT_MAX if lat > GEO_LAT_MAX else GEO_LAT_MIN
    return lon, lat


def align52(hash_: HashBits) -> int:
    """``geohashAlign52Bits``: the hash as a 52-bit score prefix."""
    return (hash_.bits << (52 - hash_.step * 2)) & U64


def lonlat_to_score(lon: float, lat: float) -> int:
    """GEOADD's score for valid coordinates."""
    hash_ = encode(lon, lat, GEO_STEP_MAX)
    assert hash_ is not None
    return align52(hash_)


def _move(hash_: HashBits, d: int, odd: bool) -> HashBits:
    """``geohash_move_x`` (longitude: odd bits) / ``geohash_move_y`` (latitude: even bits)."""
    if d == 0:
        return hash_
    moving_mask, fixed_mask = (0xAAAAAAAAAAAAAAAA, 0x5555555555555555)[::1 if odd else -1]
    moving, fixed = hash_.bits & moving_mask, hash_.bits & fixed_mask
    zz = fixed_mask >> (64 - hash_.step * 2)
    if d > 0:
        moving = (moving + (zz + 1)) & U64
    else:
        moving = ((moving | zz) - (zz + 1)) & U64
    moving &= moving_mask >> (64 - hash_.step * 2)
    return HashBits(moving | fixed, hash_.step)


def neighbors(hash_: HashBits) -> dict[str, HashBits]:
    """``geohashNeighbors``: the eight boxes around ``hash_``, by compass direction."""
    moves = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0),
             "north_east": (1, 1), "north_west": (-1, 1), "south_east": (1, -1),
             "south_west": (-1, -1)}
    return {name: _move(_move(hash_, dx, True), dy, False) for name, (dx, dy) in moves.items()}


# Distances and search areas (geohash_helper.c) ----------------------------------------------
def lat_distance(lat1: float, lat2: float) -> float:
    """``geohashGetLatDistance``."""
    return EARTH_RADIUS_IN_METERS * math.fabs(deg_rad(lat2) - deg_rad(lat1))


def distance(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """``geohashGetDistance``: haversine on Redis's sphere, in meters (Python's math first;
    C's NaN results where it raises)."""
    try:
        return _haversine(lon1, lat1, lon2, lat2, math.sin, math.cos, math.asin, math.sqrt)
    except ValueError:
        return _haversine(lon1, lat1, lon2, lat2, c_sin, c_cos, c_asin, c_sqrt)


def _haversine(lon1: float, lat1: float, lon2: float, lat2: float, sin: Callable,
               cos: Callable, asin: Callable, sqrt: Callable) -> float:
    lon1r, lon2r = lon1 * D_R, lon2 * D_R
    v = sin((lon2r - lon1r) / 2)
    if v == 0.0:
        return lat_distance(lat1, lat2)
    lat1r, lat2r = lat1 * D_R, lat2 * D_R
    u = sin((lat2r - lat1r) / 2)
    a = u * u + cos(lat1r) * cos(lat2r) * v * v
    return 2.0 * EARTH_RADIUS_IN_METERS * asin(sqrt(a))


CIRCULAR, RECTANGLE = 1, 2


@dataclass
class Shape:
    """Redis's ``GeoShape``: a circle (radius) or a box (width, height), in ``unit``s of
    ``conversion`` meters, around (lon, lat)."""

    kind: int = 0
    lon: float = 0.0
    lat: float = 0.0
    conversion: float = 0.0
    radius: float = 0.0
    width: float = 0.0
    height: float = 0.0


def estimate_steps(range_meters: float, lat: float) -> int:
    """``geohashEstimateStepsByRadius``."""
    if range_meters == 0:
        return 26
    step = 1
    while range_meters < MERCATOR_MAX:
        range_meters *= 2
        step += 1
    step -= 2
    if lat > 66 or lat < -66:
        step -= 1
        if lat > 80 or lat < -80:
            step -= 1
    return min(max(step, 1), 26)


def bounding_box(shape: Shape) -> tuple[float, float, float, float]:
    """``geohashBoundingBox``: (min lon, min lat, max lon, max lat)."""
    circular = shape.kind == CIRCULAR
    height = shape.conversion * (shape.radius if circular else shape.height / 2)
    width = shape.conversion * (shape.radius if circular else shape.width / 2)
    lat_delta = rad_deg(height / EARTH_RADIUS_IN_METERS)
    top = rad_deg(c_div(width / EARTH_RADIUS_IN_METERS, c_cos(deg_rad(shape.lat + lat_delta))))
    bottom = rad_deg(c_div(width / EARTH_RADIUS_IN_METERS,
                           c_cos(deg_rad(shape.lat - lat_delta))))
    delta = bottom if shape.lat < 0 else top
    return shape.lon - delta, shape.lat - lat_delta, shape.lon + delta, shape.lat + lat_delta


def search_boxes(shape: Shape) -> list[HashBits]:
    """``geohashCalculateAreasByShapeWGS84``: the centre box and its neighbours in Redis's
    search order (centre, N, S, E, W, NE, NW, SE, SW); useless ones zeroed."""
    min_lon, min_lat, max_lon, max_lat = bounding_box(shape)
    if shape.kind == CIRCULAR:
        radius_meters = shape.radius
    else:
        half_w, half_h = shape.width / 2, shape.height / 2
        radius_meters = c_sqrt(half_w * half_w + half_h * half_h)
    radius_meters *= shape.conversion
    steps = estimate_steps(radius_meters, shape.lat)
    hash_, around, area = _boxes_at(shape, steps)
    sides = [decode(around[name]) for name in ("north", "south", "east", "west")]
    north, south, east, west = sides
    assert north and south and east and west
    if (north.lat_max < max_lat or south.lat_min > min_lat or east.lon_max < max_lon
            or west.lon_min > min_lon) and steps > 1:
        steps -= 1
        hash_, around, area = _boxes_at(shape, steps)
    if steps >= 2:
        drop = set()
        if area.lat_min < min_lat:
            drop |= {"south", "south_west", "south_east"}
        if area.lat_max > max_lat:
            drop |= {"north", "north_east", "north_west"}
        if area.lon_min < min_lon:
            drop |= {"west", "south_west", "north_west"}
        if area.lon_max > max_lon:
            drop |= {"east", "south_east", "north_east"}
        around = {name: ZERO if name in drop else box for name, box in around.items()}
    order = ("north", "south", "east", "west", "north_east", "north_west", "south_east",
             "south_west")
    return [hash_, *(around[name] for name in order)]


def _boxes_at(shape: Shape, steps: int) -> tuple[HashBits, dict[str, HashBits], Area]:
    hash_ = encode(shape.lon, shape.lat, steps)
    assert hash_ is not None  # the centre was checked (or decoded) within the limits
    area = decode(hash_)
    assert area is not None
    return hash_, neighbors(hash_), area


def in_rectangle(width_m: float, height_m: float, x1: float, y1: float, x2: float, y2: float
                 ) -> float | None:
    """``geohashGetDistanceIfInRectangle``: the distance to the centre, None if outside."""
    if lat_distance(y2, y1) > height_m / 2:
        return None
    if distance(x2, y2, x1, y2) > width_m / 2:
        return None
    return distance(x1, y1, x2, y2)


def within_shape(shape: Shape, score: float) -> tuple[float, float, float] | None:
    """``geoWithinShape``: (lon, lat, distance) of the point if it is in the shape."""
    lon, lat = score_to_lonlat(score)
    if shape.kind == CIRCULAR:
        dist = distance(shape.lon, shape.lat, lon, lat)
        if dist > shape.radius * shape.conversion:
            return None
        return lon, lat, dist
    dist_or_none = in_rectangle(shape.width * shape.conversion, shape.height * shape.conversion,
                                shape.lon, shape.lat, lon, lat)
    return None if dist_or_none is None else (lon, lat, dist_or_none)


# Searching a zset ----------------------------------------------------------------------------
@dataclass(slots=True)
class GeoPoint:
    """Redis's ``geoPoint``: a search hit."""

    member: bytes
    score: float
    lon: float
    lat: float
    dist: float


def points_in_box(value: ZSetValue, box: HashBits, shape: Shape, found: list[GeoPoint],
                  limit: int) -> None:
    """``membersOfGeoHashBox``: the members scored in the box's range (min <= s < max) that
    are in the shape, appended to ``found`` until ``limit`` (0: none) is reached."""
    low = float(align52(box))
    high = float(align52(HashBits(box.bits + 1, box.step)))
    for score, member in value.order.irange((low,), (high,), inclusive=(True, False)):
        hit = within_shape(shape, score)
        if hit is not None:
            found.append(GeoPoint(member, score, *hit))
        if found and limit and len(found) >= limit:
            break


def points_in_boxes(value: ZSetValue, boxes: list[HashBits], shape: Shape, limit: int
                    ) -> list[GeoPoint]:
    """``membersOfAllNeighbors``: zeroed boxes skipped, and a box equal to the last one read
    (Redis's ``last_processed``, which starts at 0 and so never compares with the centre)."""
    found: list[GeoPoint] = []
    last = 0
    for i, box in enumerate(boxes):
        if box.is_zero:
            continue
        if last and box == boxes[last]:
            continue
        if found and limit and len(found) >= limit:
            break
        points_in_box(value, box, shape, found, limit)
        last = i
    return found


# Redis's orderings ---------------------------------------------------------------------------
Compare = Callable[[GeoPoint, GeoPoint], int]


def compare_asc(a: GeoPoint, b: GeoPoint) -> int:
    """``sort_gp_asc`` (NaN distances compare as "less", as in the C code)."""
    if a.dist > b.dist:
        return 1
    if a.dist == b.dist:
        return 0
    return -1


def compare_desc(a: GeoPoint, b: GeoPoint) -> int:
    return -compare_asc(a, b)


def glibc_msort(items: list, cmp: Compare) -> list:
    """glibc's ``qsort`` (``msort_with_tmp``): a top-down stable merge sort, first half
    ``n // 2``; ported for the exact order of incomparable (NaN) elements."""
    n = len(items)
    if n <= 1:
        return list(items)
    left, right = glibc_msort(items[: n // 2], cmp), glibc_msort(items[n // 2:], cmp)
    merged, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            j += 1
    return merged + left[i:] + right[j:]


def _med3(a: list, i: int, j: int, k: int, cmp: Compare) -> int:
    if cmp(a[i], a[j]) < 0:
        return j if cmp(a[j], a[k]) < 0 else (k if cmp(a[i], a[k]) < 0 else i)
    return j if cmp(a[j], a[k]) > 0 else (i if cmp(a[i], a[k]) < 0 else k)


def _vecswap(a: list, i: int, j: int, n: int) -> None:
    for offset in range(n):
        a[i + offset], a[j + offset] = a[j + offset], a[i + offset]


def pqsort(a: list, cmp: Compare, lrange: int, rrange: int) -> None:
    """Redis's ``pqsort`` (Bentley-McIlroy quicksort that only recurses into partitions
    meeting ranks ``lrange..rrange``), in place, index for index."""
    _pqsort(a, 0, len(a), cmp, lrange, rrange)


def _pqsort(a: list, base: int, n: int, cmp: Compare, lrange: int, rrange: int) -> None:
    while True:
        if n < 7:
            for pm in range(base + 1, base + n):
                pl = pm
                while pl > base and cmp(a[pl - 1], a[pl]) > 0:
                    a[pl], a[pl - 1] = a[pl - 1], a[pl]
                    pl -= 1
            return
        pm = base + n // 2
        if n > 7:
            pl, pn = base, base + n - 1
            if n > 40:
                d = n // 8
                pl = _med3(a, pl, pl + d, pl + 2 * d, cmp)
                pm = _med3(a, pm - d, pm, pm + d, cmp)
                pn = _med3(a, pn - 2 * d, pn - d, pn, cmp)
            pm = _med3(a, pl, pm, pn, cmp)
        a[base], a[pm] = a[pm], a[base]
        pa = pb = base + 1
        pc = pd = base + n - 1
        while True:
            while pb <= pc and (result := cmp(a[pb], a[base])) <= 0:
                if result == 0:
                    a[pa], a[pb] = a[pb], a[pa]
                    pa += 1
                pb += 1
            while pb <= pc and (result := cmp(a[pc], a[base])) >= 0:
                if result == 0:
                    a[pc], a[pd] = a[pd], a[pc]
                    pd -= 1
                pc -= 1
            if pb > pc:
                break
            a[pb], a[pc] = a[pc], a[pb]
            pb += 1
            pc -= 1
        pn = base + n
        r = min(pa - base, pb - pa)
        _vecswap(a, base, pb - r, r)
        r = min(pd - pc, pn - pd - 1)
        _vecswap(a, pb, pn - r, r)
        r = pb - pa
        if r > 1 and not _outside(base, base + r - 1, lrange, rrange):
            _pqsort(a, base, r, cmp, lrange, rrange)
        r = pd - pc
        if r <= 1:
            return
        base, n = pn - r, r
        if _outside(base, base + r - 1, lrange, rrange):
            return


def _outside(first: int, last: int, lrange: int, rrange: int) -> bool:
    return (lrange < first and rrange < first) or (lrange > last and rrange > last)


def order_points(points: list[GeoPoint], sort: int, keep: int) -> list[GeoPoint]:
    """The first ``keep`` points in Redis's order: unsorted, ``qsort``ed, or ``pqsort``ed when
    COUNT cuts the result."""
    if sort == SORT_NONE:
        return points[:keep]
    cmp = compare_asc if sort == SORT_ASC else compare_desc
    if keep == len(points):
        if any(math.isnan(p.dist) for p in points):
            return glibc_msort(points, cmp)
        return sorted(points, key=lambda p: p.dist, reverse=sort == SORT_DESC)  # stable too
    pqsort(points, cmp, 0, keep - 1)
    return points[:keep]


# Reply formatting ----------------------------------------------------------------------------
def format_distance(value: float) -> bytes:
    """``fixedpoint_d2string(.., 4)``: ``llrint(value * 10000)`` written with 4 decimals."""
    if value == 0:
        return b"0.0000"
    scaled = value * 10000.0
    fixed = c_to_int64(scaled) if math.isnan(scaled) or math.isinf(scaled) else round(scaled)
    if not -(1 << 63) <= fixed < (1 << 63):
        fixed = -(1 << 63)  # llrint overflow on x86-64
    sign = b"-" if fixed < 0 else b""
    whole, frac = divmod(abs(fixed), 10000)
    return b"%s%d.%04d" % (sign, whole, frac)


def human_double(value: float) -> HumanDouble:
    """``addReplyHumanLongDouble``: ``%.17Lf`` with the trailing zeros (and dot) removed."""
    if math.isinf(value):
        return HumanDouble(b"inf" if value > 0 else b"-inf")
    text = b"%.17f" % value
    if b"." in text:
        text = text.rstrip(b"0").rstrip(b".")
    return HumanDouble(b"0" if text == b"-0" else text)


def geohash_string(score: float) -> bytes | None:
    """GEOHASH's 11 characters: the decoded position re-encoded with the standard -90..90
    latitude range; the 11th character is always '0' (Redis has 52 bits)."""
    lon, lat = score_to_lonlat(score)
    hash_ = encode(lon, lat, 26, STANDARD)
    if hash_ is None:
        return None
    chars = [GEO_ALPHABET[(hash_.bits >> (52 - (i + 1) * 5)) & 0x1F] for i in range(10)]
    return bytes(chars) + b"0"


# Argument parsing (geo.c's *OrReply helpers) --------------------------------------------------
def lonlat_or_reply(raw_lon: bytes, raw_lat: bytes) -> tuple[float, float]:
    """``extractLongLatOrReply``: both numbers first, then the range."""
    lon, lat = parse_score(raw_lon), parse_score(raw_lat)
    if lon < GEO_LONG_MIN or lon > GEO_LONG_MAX or lat < GEO_LAT_MIN or lat > GEO_LAT_MAX:
        raise ReplyError(f"ERR invalid longitude,latitude pair {lon:f},{lat:f}")
    return lon, lat


def unit_or_reply(raw: bytes) -> float:
    """``extractUnitOrReply``: meters per unit."""
    factor = UNITS.get(keyword(raw))
    if factor is None:
        raise ReplyError(UNSUPPORTED_UNIT)
    return factor


def radius_or_reply(raw: bytes, unit: bytes) -> tuple[float, float]:
    """``extractDistanceOrReply``: (radius, conversion)."""
    radius = parse_score(raw, NEED_RADIUS)
    if radius < 0:
        raise ReplyError(NEGATIVE_RADIUS)
    return radius, unit_or_reply(unit)


def box_or_reply(raw_w: bytes, raw_h: bytes, unit: bytes) -> tuple[float, float, float]:
    """``extractBoxOrReply``: (width, height, conversion)."""
    width = parse_score(raw_w, NEED_WIDTH)
    height = parse_score(raw_h, NEED_HEIGHT)
    if height < 0 or width < 0:
        raise ReplyError(NEGATIVE_BOX)
    return width, height, unit_or_reply(unit)


def member_lonlat_or_reply(value: ZSetValue, member: bytes) -> tuple[float, float]:
    score = value.get(member)
    if score is None:
        raise ReplyError(BAD_MEMBER)
    return score_to_lonlat(score)


# GEOADD / GEOPOS / GEOHASH / GEODIST ---------------------------------------------------------
@command("geoadd", -5, "write denyoom", keys=(1, 1, 1), acl="write geo slow", group="geo")
def geoadd_command(db: Keyspace, args: list[bytes]) -> object:
    """ZADD with the coordinates turned into scores (Redis rewrites the command the same way;
    its keyspace event is ``zadd``)."""
    first = 2
    options: list[bytes] = []
    while first < len(args) and keyword(args[first]) in (b"nx", b"xx", b"ch"):
        options.append(keyword(args[first]))
        first += 1
    if (len(args) - first) % 3 or (b"nx" in options and b"xx" in options):
        raise ReplyError(errors.SYNTAX)
    zadd_args = [b"zadd", args[1], *options]
    for i in range(first, len(args), 3):
        lon, lat = lonlat_or_reply(args[i], args[i + 1])
        zadd_args += [b"%d" % lonlat_to_score(lon, lat), args[i + 2]]
    return zadd_generic(db, zadd_args, incr=False)


@command("geopos", -2, "readonly", keys=(1, 1, 1), acl="read geo slow", group="geo")
def geopos_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], ZSetValue)
    out: list[object] = []
    for member in args[2:]:
        score = None if value is None else value.get(member)
        if score is None:
            out.append(NULL_ARRAY)
        else:
            out.append([human_double(coord) for coord in score_to_lonlat(score)])
    return out


@command("geohash", -2, "readonly", keys=(1, 1, 1), acl="read geo slow", group="geo")
def geohash_command(db: Keyspace, args: list[bytes]) -> object:
    value = value_of_type(db, args[1], ZSetValue)
    out: list[bytes | None] = []
    for member in args[2:]:
        score = None if value is None else value.get(member)
        out.append(None if score is None else geohash_string(score))
    return out


@command("geodist", -4, "readonly", keys=(1, 1, 1), acl="read geo slow", group="geo")
def geodist_command(db: Keyspace, args: list[bytes]) -> object:
    to_meter = 1.0
    if len(args) == 5:
        to_meter = unit_or_reply(args[4])
    elif len(args) > 5:
        raise ReplyError(errors.SYNTAX)
    value = value_of_type(db, args[1], ZSetValue)
    if value is None:
        return None
    first, second = value.get(args[2]), value.get(args[3])
    if first is None or second is None:
        return None
    (lon1, lat1), (lon2, lat2) = score_to_lonlat(first), score_to_lonlat(second)
    return format_distance(distance(lon1, lat1, lon2, lat2) / to_meter)


# GEORADIUS* / GEOSEARCH* ---------------------------------------------------------------------
SORT_NONE, SORT_ASC, SORT_DESC = 0, 1, 2
RADIUS_COORDS, RADIUS_MEMBER, RADIUS_NOSTORE, GEOSEARCH, GEOSEARCHSTORE = 1, 2, 4, 8, 16

#: command name -> (index of the source key, georadiusGeneric flags)
SEARCH_COMMANDS = {
    b"georadius": (1, RADIUS_COORDS),
    b"georadiusbymember": (1, RADIUS_MEMBER),
    b"georadius_ro": (1, RADIUS_COORDS | RADIUS_NOSTORE),
    b"georadiusbymember_ro": (1, RADIUS_MEMBER | RADIUS_NOSTORE),
    b"geosearch": (1, GEOSEARCH),
    b"geosearchstore": (2, GEOSEARCH | GEOSEARCHSTORE),
}


@dataclass
class Search:
    """A parsed ``georadiusGeneric`` request."""

    shape: Shape = field(default_factory=Shape)
    store_key: bytes | None = None
    store_dist: bool = False
    withdist: bool = False
    withhash: bool = False
    withcoord: bool = False
    sort: int = SORT_NONE
    any: bool = False
    count: int = 0


@dataclass
class _Seen:
    """Which of GEOSEARCH's exclusive options were given."""

    frommember: bool = False
    fromloc: bool = False
    byradius: bool = False
    bybox: bool = False


def parse_search(value: ZSetValue | None, args: list[bytes], flags: int) -> Search:
    """Everything ``georadiusGeneric`` checks before searching, in its order (the source's
    type was checked by the caller, first)."""
    search = Search()
    shape = search.shape
    if flags & RADIUS_COORDS:
        base = 6
        shape.kind = CIRCULAR
        shape.lon, shape.lat = lonlat_or_reply(args[2], args[3])
        shape.radius, shape.conversion = radius_or_reply(args[4], args[5])
    elif flags & RADIUS_MEMBER:
        base = 5
        if value is not None:  # without a source, Redis parses the options only
            shape.kind = CIRCULAR
            shape.lon, shape.lat = member_lonlat_or_reply(value, args[2])
            shape.radius, shape.conversion = radius_or_reply(args[3], args[4])
    else:
        base = 2
        if flags & GEOSEARCHSTORE:
            base, search.store_key = 3, args[1]
    seen = _Seen()
    i = base
    while i < len(args):
        i = _parse_option(value, args, i, flags, search, seen)
    _check_combination(args, flags, search, seen)
    return search


def _parse_option(value: ZSetValue | None, args: list[bytes], i: int, flags: int,
                  search: Search, seen: _Seen) -> int:
    """One option of ``georadiusGeneric``'s loop at ``args[i]``; the index of the next."""
    option, left = keyword(args[i]), len(args) - i - 1
    geosearch, shape = bool(flags & GEOSEARCH), search.shape
    can_store = not flags & RADIUS_NOSTORE and not geosearch
    if option in (b"withdist", b"withhash", b"withcoord", b"any"):
        setattr(search, option.decode(), True)
    elif option in (b"asc", b"desc"):
        search.sort = SORT_ASC if option == b"asc" else SORT_DESC
    elif option == b"count" and left >= 1:
        search.count = parse_int(args[i + 1])
        if search.count <= 0:
            raise ReplyError(COUNT_NOT_POSITIVE)
        return i + 2
    elif option in (b"store", b"storedist") and left >= 1 and can_store:
        search.store_key, search.store_dist = args[i + 1], option == b"storedist"
        return i + 2
    elif option == b"storedist" and geosearch and flags & GEOSEARCHSTORE:
        search.store_dist = True
    elif option == b"frommember" and left >= 1 and geosearch and not seen.fromloc:
        if value is not None:
            shape.lon, shape.lat = member_lonlat_or_reply(value, args[i + 1])
        seen.frommember = True
        return i + 2
    elif option == b"fromlonlat" and left >= 2 and geosearch and not seen.frommember:
        shape.lon, shape.lat = lonlat_or_reply(args[i + 1], args[i + 2])
        seen.fromloc = True
        return i + 3
    elif option == b"byradius" and left >= 2 and geosearch and not seen.bybox:
        shape.radius, shape.conversion = radius_or_reply(args[i + 1], args[i + 2])
        shape.kind, seen.byradius = CIRCULAR, True
        return i + 3
    elif option == b"bybox" and left >= 3 and geosearch and not seen.byradius:
        shape.width, shape.height, shape.conversion = box_or_reply(*args[i + 1: i + 4])
        shape.kind, seen.bybox = RECTANGLE, True
        return i + 4
    else:
        raise ReplyError(errors.SYNTAX)
    return i + 1


def _check_combination(args: list[bytes], flags: int, search: Search, seen: _Seen) -> None:
    """The option-combination errors, in Redis's order; they name the command as typed."""
    if search.store_key is not None and (search.withdist or search.withhash or search.withcoord):
        what = "GEOSEARCHSTORE" if flags & GEOSEARCHSTORE else "STORE option in GEORADIUS"
        raise ReplyError(f"ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD "
                         "options")
    name = args[0].decode("utf-8", "surrogateescape")
    if flags & GEOSEARCH and not (seen.frommember or seen.fromloc):
        raise ReplyError(f"ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for "
                         f"{name}")
    if flags & GEOSEARCH and not (seen.byradius or seen.bybox):
        raise ReplyError(f"ERR exactly one of BYRADIUS and BYBOX can be specified for {name}")
    if search.any and not search.count:
        raise ReplyError(ANY_NEEDS_COUNT)


def run_search(value: ZSetValue, search: Search) -> list[GeoPoint]:
    """The points to reply or store, in Redis's order, distances still in meters."""
    sort = search.sort
    if search.count and sort == SORT_NONE and not search.any:
        sort = SORT_ASC  # COUNT means the nearest ones
    boxes = search_boxes(search.shape)
    points = points_in_boxes(value, boxes, search.shape, search.count if search.any else 0)
    keep = len(points) if not search.count else min(len(points), search.count)
    return order_points(points, sort, keep)


def search_reply(points: list[GeoPoint], search: Search) -> list:
    """The items of a search reply: members, or [member, dist?, hash?, [lon, lat]?]."""
    conversion = search.shape.conversion
    if not (search.withdist or search.withhash or search.withcoord):
        return [point.member for point in points]
    out = []
    for point in points:
        item: list[object] = [point.member]
        if search.withdist:
            item.append(format_distance(point.dist / conversion))
        if search.withhash:
            item.append(c_to_int64(point.score))
        if search.withcoord:
            item.append([human_double(point.lon), human_double(point.lat)])
        out.append(item)
    return out


def store_items(points: list[GeoPoint], search: Search) -> list[tuple[bytes, float]]:
    """(member, score) to store: the geohash, or the distance in the unit (STOREDIST)."""
    conversion = search.shape.conversion
    return [(p.member, p.dist / conversion if search.store_dist else p.score) for p in points]


def search_generic(db: Keyspace, args: list[bytes]) -> tuple[Search, list[GeoPoint] | None]:
    """Parse and run a search command: (request, points or None when the source is missing)."""
    entry = SEARCH_COMMANDS.get(args[0].lower())
    if entry is None or len(args) <= entry[0]:  # only ``__geosearch`` can name another
        raise ReplyError(errors.SYNTAX)
    source_index, flags = entry
    value = value_of_type(db, args[source_index], ZSetValue)
    search = parse_search(value, args, flags)
    if value is None:
        return search, None
    return search, run_search(value, search)


def georadius_generic(db: Keyspace, args: list[bytes]) -> object:
    """Every search command on one worker (source and destination here)."""
    search, points = search_generic(db, args)
    if search.store_key is None:
        return [] if points is None else search_reply(points, search)
    return store_zset(db, search.store_key, store_items(points or [], search))


def georadius_store_key(args: list[bytes]) -> int | None:
    """``georadiusGetKeys``: the index of the key GEORADIUS* ... STORE|STOREDIST writes (the
    last one given), None without one; scanned from index 5 as Redis does."""
    stored = None
    i = 5
    while i < len(args):
        if keyword(args[i]) in (b"store", b"storedist") and i + 1 < len(args):
            stored = i + 1
            i += 1
        i += 1
    return stored


def georadius_keys(args: list[bytes]) -> list[int]:
    """Key positions as Redis 7.0's key specs give them (COMMAND GETKEYS, ACL): the source,
    then the key after the first STORE, then after the first STOREDIST (searched from the
    first option on); plus the key actually written when the specs miss it (``STORE a STORE
    b`` writes b), since routing must see it."""
    start = 6 if args[0].lower() == b"georadius" else 5
    keys = [1]
    for name in (b"store", b"storedist"):
        found = next((i + 1 for i in range(start, len(args) - 1)
                      if keyword(args[i]) == name), None)
        if found is not None:
            keys.append(found)
    stored = georadius_store_key(args)
    if stored is not None and stored not in keys:
        keys.append(stored)
    return keys


for _name, _arity in (("georadius", -6), ("georadiusbymember", -5)):
    command(_name, _arity, "write denyoom movablekeys", keys=(1, 1, 1),
            fanout=Fanout.COORDINATED, acl="write geo slow", group="geo",
            key_finder=georadius_keys)(georadius_generic)
for _name, _arity in (("georadius_ro", -6), ("georadiusbymember_ro", -5), ("geosearch", -7)):
    command(_name, _arity, "readonly", keys=(1, 1, 1), acl="read geo slow",
            group="geo")(georadius_generic)
command("geosearchstore", -8, "write denyoom", keys=(1, 2, 1), fanout=Fanout.COORDINATED,
        acl="write geo slow", group="geo")(georadius_generic)


# Internal commands for the router's cross-worker STORE ----------------------------------------
def _geosearch_source(args: list[bytes]) -> list[int]:
    """The source key of the search command that ``__geosearch`` carries."""
    entry = SEARCH_COMMANDS.get(args[1].lower())
    return [] if entry is None or len(args) <= entry[0] + 1 else [entry[0] + 1]


@command("__geosearch", -3, "readonly internal", keys=(2, 2, 1), key_finder=_geosearch_source)
def internal_geosearch_command(db: Keyspace, args: list[bytes]) -> object:
    """``__geosearch <GEORADIUS ... STORE | GEOSEARCHSTORE command>``: what the command would
    store at its destination, ``[member, score, ...]``, computed where the source lives."""
    search, points = search_generic(db, args[1:])
    return [item for member, score in store_items(points or [], search)
            for item in (member, format_double(score))]


def _internal_store(name: str) -> None:
    @command(name, -2, "write internal", keys=(1, 1, 1), group="geo")
    def run(db: Keyspace, args: list[bytes]) -> object:
        """``<name> key [member score ...]``: replace ``key`` by this zset (delete it if
        empty); the cardinality.  Its keyspace event is the command's (``notify``)."""
        flat = args[2:]
        if len(flat) % 2:
            raise ReplyError(errors.SYNTAX)
        items = [(flat[i], parse_score(flat[i + 1])) for i in range(0, len(flat), 2)]
        return store_zset(db, args[1], items)


_internal_store("__georadiusstore")
_internal_store("__geosearchstore")
