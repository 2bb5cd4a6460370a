"""SORT's pure parts (option parsing, pattern lookups, strtod weights, LIMIT clamping, Redis's
partial quicksort, key finding) and what the differential corpus cannot show: keyspace events,
WATCH, and the gate that makes a cross-worker SORT one step."""

from __future__ import annotations

import random
import re
import signal
import socket
import threading
import time

import pytest
import redis

from shardis.commands import load_families
from shardis.commands.sort import (
    BY_DENIED,
    GET_DENIED,
    LIST,
    SCORE_NOT_DOUBLE,
    SET,
    ZSET,
    Source,
    _limits,
    fixed_slot_key,
    lookup_in,
    lookup_requests,
    parse_sort,
    pattern_request,
    pqsort,
    project,
    sort_score,
    sort_store_key,
    sort_window,
)
from shardis.errors import ReplyError
from shardis.slots import SlotMap
from tests.resp_client import RawClient
from tests.servers import start_shardis
from tests.test_atomicity import keys_on_distinct_workers

load_families()


def args(*words: str) -> list[bytes]:
    return [w.encode("latin-1") for w in words]


# Parsing -------------------------------------------------------------------------------------
def test_parse_options_last_one_wins_and_dontsort_sticks():
    opts = parse_sort(args("SORT", "k", "desc", "ALPHA", "asc", "LIMIT", "1", "2", "BY", "nosort",
                           "BY", "w_*", "GET", "#", "GET", "o_*", "STORE", "a", "STORE", "b"),
                      readonly=False)
    assert (opts.desc, opts.alpha, opts.limit_start, opts.limit_count) == (False, True, 1, 2)
    assert opts.by == b"w_*" and opts.dontsort  # the earlier constant BY still holds
    assert opts.gets == [b"#", b"o_*"] and opts.store == b"b"
    assert opts.lookup_patterns() == [b"o_*"]


@pytest.mark.parametrize("words, readonly, error", [
    (("NOPE",), False, "ERR syntax error"),
    (("LIMIT", "1"), False, "ERR syntax error"),
    (("LIMIT", "a", "1"), False, "ERR value is not an integer or out of range"),
    (("LIMIT", "1", "-0x1"), False, "ERR value is not an integer or out of range"),
    (("STORE",), False, "ERR syntax error"),
    (("STORE", "d"), True, "ERR syntax error"),
    (("BY",), False, "ERR syntax error"),
    (("GET",), False, "ERR syntax error"),
    (("NOPE", "LIMIT", "a", "b"), False, "ERR syntax error"),
    (("LIMIT", "a", "b", "NOPE"), False, "ERR value is not an integer or out of range"),
])
def test_parse_errors_in_redis_order(words, readonly, error):
    with pytest.raises(ReplyError) as caught:
        parse_sort(args("SORT", "k", *words), readonly)
    assert caught.value.message == error


def test_patterns_need_full_key_access():
    restricted = {"readonly": False, "full_key_access": False}
    assert parse_sort(args("SORT", "k", "BY", "nosort", "ALPHA"), **restricted).dontsort
    for words, error in [(("BY", "w_*"), BY_DENIED), (("GET", "#"), GET_DENIED),
                         (("GET", "x", "BY", "w_*"), GET_DENIED),
                         (("BY", "w_*", "NOPE"), BY_DENIED), (("NOPE", "GET", "#"), "ERR syntax error")]:
        with pytest.raises(ReplyError) as caught:
            parse_sort(args("SORT", "k", *words), **restricted)
        assert caught.value.message == error


@pytest.mark.parametrize("command, keys", [
    (("SORT", "k"), [1]),
    (("SORT", "k", "STORE", "d"), [1, 3]),
    (("SORT", "k", "STORE", "d", "LIMIT", "0", "1", "STORE", "e"), [1, 8]),
    (("SORT", "k", "GET", "store", "BY", "store", "STORE", "x"), [1, 7]),
    (("SORT", "k", "STORE"), [1]),
    (("SORT", "k", "LIMIT", "store", "x", "store", "y"), [1, 6]),
])
def test_sort_store_key_like_sortgetkeys(command, keys):
    assert list(sort_store_key(args(*command))) == keys


# Patterns ------------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern, request_", [
    ("w_*", (b"w_e", b"")),
    ("w_*->f", (b"w_e", b"f")),
    ("w_*->f->g", (b"w_e", b"f->g")),
    ("w_*->", (b"w_e->", b"")),  # an empty field: a key name
    ("w_->f*", (b"w_->fe", b"")),  # the arrow must follow the *
    ("**", (b"e*", b"")),
    ("#", None),
    ("nostar", None),
    ("w\x00*", None),  # C string functions stop at the NUL
    ("w_*->\x00f", (b"w_e->\x00f", b"")),
    ("w_*->f\x00g", (b"w_e", b"f\x00g")),
])
def test_pattern_request_like_lookupkeybypattern(pattern, request_):
    assert pattern_request(pattern.encode("latin-1"), b"e") == request_


def test_lookup_and_requests():
    values = {(b"w_a", b""): b"1", (b"h_a", b"f"): b"x"}
    lookup = lookup_in(lambda request: values.get(request))
    assert lookup(b"#", b"a") == b"a" and lookup(b"#\x00junk", b"a") == b"a"
    assert lookup(b"w_*", b"a") == b"1" and lookup(b"h_*->f", b"a") == b"x"
    assert lookup(b"w_*", b"b") is None and lookup(b"const", b"a") is None
    assert lookup_requests([b"#", b"w_*", b"h_*->f", b"const"], [b"a", b"b", b"a"]) == [
        (b"w_a", b""), (b"h_a", b"f"), (b"w_b", b""), (b"h_b", b"f")]


@pytest.mark.parametrize("pattern, slot_key", [
    ("{u}w_*", b"{u}"), ("x{u}y*->f", b"x{u}"), ("{}w_*", None), ("{u*}", None),
    ("w_*{u}", None), ("{u", None), ("nostar{u}", None),
])
def test_fixed_slot_key(pattern, slot_key):
    assert fixed_slot_key(pattern.encode()) == slot_key


def test_fixed_slot_key_is_the_slot_of_every_named_key():
    slots = SlotMap(16)
    for pattern in (b"{user}w_*", b"a{b}c*->f", b"{x}{y}*"):
        request_keys = {pattern_request(pattern, e)[0] for e in (b"1", b"}", b"{z}", b"abc")}
        assert {slots.worker_of(k) for k in request_keys} == {
            slots.worker_of(fixed_slot_key(pattern))}


# Weights ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, score", [
    ("1", 1.0), (" 1", 1.0), ("\t\n-2.5", -2.5), ("", 0.0), ("1e3", 1000.0), ("0x10", 16.0),
    ("0X1p-2", 0.25), ("+.5", 0.5), ("5.", 5.0), ("inf", float("inf")),
    ("-Infinity", float("-inf")), ("7\x00junk", 7.0), ("\x00", 0.0), ("-0", -0.0),
    ("2.2250738585072014e-308", 2.2250738585072014e-308), ("0x1p-1074", 5e-324),
    ("1 ", None), ("   ", None), ("-", None), ("0x", None), ("nan", None), ("-nan", None),
    ("1e400", None), ("-1e400", None), ("1e-310", None), ("1e-400", None), ("abc", None),
    ("1_0", None), ("0x1p99999", None), ("infinit", None),
])
def test_sort_score_like_strtod(text, score):
    assert sort_score(text.encode("latin-1")) == score


@pytest.mark.parametrize("start, count, length, window", [
    (0, -1, 5, (0, 4)), (0, 0, 5, (0, -1)), (-3, 2, 5, (0, 1)), (3, 100, 5, (3, 4)),
    (5, 1, 5, (4, 3)), (2**63 - 1, 2**63 - 1, 5, (4, 3)), (-2**63, -2**63, 5, (0, 4)),
    (0, -1, 0, (-1, -2)), (1, 2**63 - 1, 5, (1, 4)),
])
def test_limits_like_redis(start, count, length, window):
    opts = parse_sort(args("SORT", "k", "LIMIT", str(start), str(count)), readonly=False)
    assert _limits(opts, length) == window


# Sorting ---------------------------------------------------------------------------------------
def window(kind: bytes, elements: list[str], *words: str, values: dict | None = None,
           in_script: bool = False) -> list[bytes]:
    opts = parse_sort(args("SORT", "k", *words), readonly=False)
    table = {(k.encode(), b""): v.encode() for k, v in (values or {}).items()}
    source = Source(kind, [e.encode("latin-1") for e in elements])
    return sort_window(source, opts, lookup_in(table.get), in_script)


def test_numeric_ties_by_bytes_and_alpha_collation():
    assert window(LIST, ["1.0", "1", "01", "-0", "0"]) == [b"-0", b"0", b"01", b"1", b"1.0"]
    assert window(LIST, ["1.0", "1", "01"], "DESC") == [b"1.0", b"1", b"01"]
    # strcoll stops at NUL: ties keep the list's order; STORE compares every byte
    assert window(LIST, ["a\x00c", "a\x00b", "a"], "ALPHA") == [b"a\x00c", b"a\x00b", b"a"]
    assert window(LIST, ["a\x00c", "a\x00b", "a"], "ALPHA", "STORE", "d") == [
        b"a", b"a\x00b", b"a\x00c"]
    with pytest.raises(ReplyError, match=re.escape(SCORE_NOT_DOUBLE)):
        window(LIST, ["1", "x"], "LIMIT", "0", "0")


def test_by_weights_missing_first_and_nosort_orders():
    values = {"w_a": "2", "w_b": "1", "w_c": "x"}
    assert window(LIST, ["a", "b", "d"], "BY", "w_*", values=values) == [b"d", b"b", b"a"]
    assert window(LIST, ["c", "a", "d"], "BY", "w_*", "ALPHA", values=values) == [
        b"d", b"a", b"c"]
    with pytest.raises(ReplyError):
        window(LIST, ["a", "c"], "BY", "w_*", values=values)
    assert window(ZSET, ["z", "y", "x"], "BY", "nosort", "DESC", "LIMIT", "1", "5") == [
        b"y", b"z"]
    assert window(SET, ["5", "1", "3"], "BY", "nosort", "DESC") == [b"5", b"1", b"3"]
    assert window(SET, ["5", "10", "3"], "BY", "nosort", "STORE", "d") == [b"10", b"3", b"5"]
    assert window(SET, ["5", "10", "3"], "BY", "nosort", in_script=True) == [
        b"10", b"3", b"5"]


def test_project_gets():
    lookup = lookup_in({(b"o_a", b""): b"A"}.get)
    assert project([b"a", b"b"], [], lookup) == [b"a", b"b"]
    assert project([b"a", b"b"], [b"o_*", b"#"], lookup) == [b"A", b"a", None, b"b"]


def test_pqsort_matches_redis_on_ties():
    """SORT l BY x_* ALPHA LIMIT 0 5 over 1..60 (every weight missing) on Redis 7.0.15."""
    items = [((0, b""), str(n).encode()) for n in range(1, 61)]
    pqsort(items, False, 0, 4)
    assert [e for _, e in items[:5]] == [b"60", b"2", b"3", b"4", b"5"]


@pytest.mark.parametrize("seed", range(40))
def test_pqsort_sorts_the_window(seed):
    rng = random.Random(seed)
    keys = [rng.randrange(12) for _ in range(rng.randrange(1, 120))]
    left = rng.randrange(len(keys))
    right = rng.randrange(left, len(keys))
    desc = rng.random() < 0.5
    items = [(key, b"%d" % i) for i, key in enumerate(keys)]
    pqsort(items, desc, left, right)
    assert sorted(items) == sorted((key, b"%d" % i) for i, key in enumerate(keys))
    expected = sorted(keys, reverse=desc)[left : right + 1]
    assert [key for key, _ in items[left : right + 1]] == expected


# End to end ------------------------------------------------------------------------------------
_MESSAGE = re.compile(rb"\*4\r\n\$8\r\npmessage\r\n\$\d+\r\n[^\r]*\r\n\$\d+\r\n([^\r]*)\r\n"
                      rb"\$\d+\r\n([^\r]*)\r\n")
SRC, DST, OTHER = keys_on_distinct_workers(3)
EVENT_COMMANDS = [
    ["RPUSH", SRC, "2", "1"], ["SET", "w_1", "5"], ["SET", DST, "x"],
    ["SORT", SRC, "STORE", DST], ["SORT", SRC, "BY", "w_*", "STORE", OTHER],
    ["SORT", SRC, "LIMIT", "0", "0", "STORE", DST], ["SORT", SRC, "LIMIT", "0", "0", "STORE", DST],
    ["SORT", "{t}nosuch", "STORE", "{t}d"], ["RPUSH", "{t}l", "b", "a"],
    ["SORT", "{t}l", "ALPHA", "STORE", "{t}d"], ["SORT", "{t}l", "LIMIT", "0", "0", "STORE", "{t}d"],
]


def _events(port: int) -> list[tuple[bytes, bytes]]:
    control = RawClient(port)
    control.call("FLUSHALL")
    control.call("CONFIG", "SET", "notify-keyspace-events", "KEA")
    subscriber = socket.create_connection(("127.0.0.1", port))
    subscriber.sendall(b"PSUBSCRIBE __key*@0__:*\r\n")
    subscriber.recv(100)
    for command in EVENT_COMMANDS:
        control.call(*command)
    subscriber.settimeout(0.5)
    data = b""
    try:
        while True:
            chunk = subscriber.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    control.call("CONFIG", "SET", "notify-keyspace-events", "")
    control.close()
    subscriber.close()
    return _MESSAGE.findall(data)


def test_keyspace_events_match_redis(oracle_clean, shardis_clean):
    expected = _events(oracle_clean.port)
    assert (b"__keyevent@0__:sortstore", DST.encode()) in expected
    assert sorted(_events(shardis_clean.port)) == sorted(expected)


def test_cross_worker_store_invalidates_watch(r):
    r.rpush(SRC, "2", "1")
    r.set("w_1", "9")
    watcher = r.pipeline()
    watcher.watch(DST)
    redis.Redis(port=r.connection_pool.connection_kwargs["port"]).sort(
        SRC, by="w_*", store=DST)
    watcher.multi()
    watcher.get(DST)
    with pytest.raises(redis.WatchError):
        watcher.execute()
    assert r.lrange(DST, 0, -1) == [b"2", b"1"]


def test_cross_worker_sort_is_one_step(r):
    """While a writer flips the sign of every weight (MSET over all workers), a SORT BY the
    weights that GETs them sees one moment: the weights it sorted by are those it returns."""
    elements = [str(n) for n in range(40)]
    r.rpush("src", *elements)
    r.mset({f"w_{e}": e for e in elements})
    port = r.connection_pool.connection_kwargs["port"]
    stop = threading.Event()

    def writer() -> None:
        client = redis.Redis(port=port)
        sign = 1
        while not stop.is_set():
            sign = -sign
            client.mset({f"w_{e}": sign * int(e) for e in elements})

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            got = r.sort("src", by="w_*", get=["#", "w_*"])
            numbers = [int(got[i]) for i in range(0, len(got), 2)]
            weights = [int(w) for w in got[1::2]]
            # sorted by the weights that GET then reads: the same MSET's, never the next one's
            positive = weights[-1] > 0
            assert all((w > 0) == positive for w in weights if w)
            assert numbers == sorted(numbers, reverse=not positive)
    finally:
        stop.set()
        thread.join()


def test_script_reads_pattern_keys_of_other_workers(r):
    r.rpush(SRC, "a", "b", "c")
    r.mset({"v_a": "3", "v_b": "1", "v_c": "2", "g_a": "A", "g_c": "C"})
    r.hset("h_b", "f", "HB")
    body = "return redis.call('sort', KEYS[1], 'by', 'v_*', 'get', 'g_*', 'get', 'h_*->f')"
    assert r.eval(body, 1, SRC) == [None, b"HB", b"C", None, b"A", None]
    store = "return redis.call('sort', KEYS[1], 'by', 'v_*', 'store', KEYS[2])"
    assert r.eval(store, 2, SRC, "{" + SRC + "}d") == 3
    assert r.lrange("{" + SRC + "}d", 0, -1) == [b"b", b"c", b"a"]


def test_stored_lists_survive_an_aof_restart(tmp_path):
    """What SORT ... STORE wrote comes back from the AOF: forwarded whole (logged as sent),
    across workers (``__sortstore``), and from a global script that read other workers'
    keys (the list is logged, not the SORT, which would read only local keys on replay),
    into its own worker or another."""
    data = str(tmp_path / "data")
    slots = SlotMap(2)
    src, far = keys_on_distinct_workers(2, workers=2)
    tag = "{" + src + "}"
    assert slots.worker_of(f"{tag}x".encode()) == slots.worker_of(src.encode())
    expected = {}
    server = start_shardis(2, "--appendonly", "yes", "--appendfsync", "always", "--dir", data)
    try:
        client = redis.Redis(port=server.port)
        client.rpush(src, "b", "a", "c")
        client.mset({"w_a": "3", "w_b": "1", "w_c": "2", f"{tag}w_a": "1", f"{tag}w_b": "2"})
        assert client.sort(src, by=f"{tag}w_*", store=f"{tag}same") == 3
        assert client.sort(src, by="w_*", get=["#", "w_*"], store=far) == 6
        body = "return redis.call('sort', KEYS[1], 'by', 'w_*', 'get', 'w_*', 'store', KEYS[2])"
        assert client.eval(body, 2, src, f"{tag}script") == 3
        far_tag = "{" + far + "}"
        assert client.eval(body, 2, src, f"{far_tag}script") == 3  # DEL + RPUSH over there
        for key in (f"{tag}same", far, f"{tag}script", f"{far_tag}script"):
            expected[key] = client.lrange(key, 0, -1)
        assert expected[f"{tag}script"] == [b"1", b"2", b"3"]
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=20)
    finally:
        server.stop()
    again = start_shardis(2, "--appendonly", "yes", "--dir", data)
    try:
        client = redis.Redis(port=again.port)
        assert {key: client.lrange(key, 0, -1) for key in expected} == expected
    finally:
        again.stop()


@pytest.mark.parametrize("dst", [DST, "{" + SRC + "}dst"])
def test_store_wakes_a_blocked_pop(r, dst):
    """The list SORT ... STORE creates serves a client blocked on it, as Redis's dbAdd
    signals the key ready: across workers (``__sortstore``) and on the source's worker."""
    r.rpush(SRC, "3", "1", "2")
    r.set("w_1", "1")
    port = r.connection_pool.connection_kwargs["port"]
    popped: list = []
    waiter = threading.Thread(
        target=lambda: popped.append(redis.Redis(port=port).blpop([dst], timeout=5)))
    waiter.start()
    deadline = time.monotonic() + 5
    while r.info("clients")["blocked_clients"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert r.sort(SRC, store=dst) == 3
    waiter.join()
    assert popped == [(dst.encode(), b"1")]
    assert r.lrange(dst, 0, -1) == [b"2", b"3"]


class _FakeRouter:
    """What sort_plan reads of the router: the key -> worker map and the worker count."""

    def __init__(self, workers: int = 3) -> None:
        self.slots = SlotMap(workers)
        self.links = [None] * workers
        self.current_client = None

    def worker_of(self, key: bytes) -> int:
        return self.slots.worker_of(key)


def test_plan_forwards_whole_only_when_every_key_is_on_the_source_worker():
    from shardis.router.sort import sort_plan

    router = _FakeRouter()
    a, b, _ = keys_on_distinct_workers(3)
    wa, wb = router.worker_of(a.encode()), router.worker_of(b.encode())
    same, elsewhere = "{" + a + "}", "{" + b + "}"

    def plan(*words: str):
        return sort_plan(router, args("SORT", *words))

    for words in [(a,), (a, "BY", "nosort", "GET", "#"), (a, "STORE", f"{same}d"),
                  (a, "BY", f"{same}w_*", "GET", f"{same}o_*->f", "STORE", f"{same}d"),
                  (a, "BY", "nosort", "BY", "w_*"), (a, "GET", "const")]:
        assert plan(*words).forward_to == wa, words
    gated = plan(a, "STORE", b)
    assert gated.forward_to is None and gated.exclusive and gated.workers == {wa, wb}
    pinned = plan(a, "BY", f"{elsewhere}w_*")
    assert pinned.forward_to is None and pinned.workers == {wa, wb}
    for words in [(a, "BY", "w_*"), (a, "GET", "o_*"), (a, "BY", f"{same}w_*", "GET", "o_*")]:
        everywhere = plan(*words)
        assert everywhere.forward_to is None and everywhere.exclusive
        assert everywhere.workers == {0, 1, 2}
    with pytest.raises(ReplyError, match="syntax error"):
        plan(a, "NOPE")
