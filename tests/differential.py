"""Differential harness: run the same script against real Redis and shardis, compare the bytes.

A *script* is a named list of steps.  Each step is sent to both servers over two
:class:`~tests.resp_client.RawClient` connections and the replies are compared, step by step;
the first difference fails the test with the command, both replies and the commands before it.

Steps
-----
* a plain list/tuple of arguments, e.g. ``["SET", "k", "v"]``: a command whose reply must be
  byte-identical (``exact``);
* :func:`cmd` / :func:`sorted_` / :func:`type_only` / :func:`skip_reply` / :func:`normalized`:
  a command with another comparison mode (see :data:`MODES`);
* :func:`raw`: bytes written as they are (inline commands, pipelines, malformed RESP), then
  ``replies`` replies read, optionally checking that both servers close the connection;
* :func:`scan_all`: a full SCAN cursor loop on both servers, comparing the *set* of keys;
* :func:`sleep`: wait (for expiry tests).

Comparison modes
----------------
``exact``       the raw reply bytes are identical (the default).
``sorted``      the reply is an aggregate whose order is unspecified (KEYS): same type byte and
                length, and the same elements once sorted (elements compared as raw bytes).
                Non-aggregate replies (errors) must be identical.
``type_only``   same RESP "shape": type bytes, aggregate lengths and null-ness, recursively
                (TIME, RANDOMKEY, CLIENT ID, OBJECT IDLETIME, MEMORY USAGE).  Error replies must
                still be identical.
``skip_reply``  a reply must arrive from both; its content is ignored.
callable        ``fn(raw: bytes) -> object``: the two normalized values must be equal (see
                :func:`hello_without_id` and :func:`command_info_fields`).

Every script runs on fresh connections after FLUSHALL on both servers, in RESP2 and again in
RESP3 (``HELLO 3`` first) unless its ``protocols`` say otherwise.  After a step that closes the
connection (QUIT, malformed input) the harness reconnects (and says ``HELLO 3`` again for RESP3)
so a script can go on.  The target also gets one extra throwaway connection per script, so
connection ids never match by chance.

Adding a case
-------------
Append a step to a script, or a ``script("name", *steps)`` to the ``SCRIPTS`` list of one of
``tests/test_diff_{strings,keys,server}.py``; each script becomes two tests (``name-resp2``,
``name-resp3``).  Options of :func:`script`:

* ``protocols=(2,)``: run in one protocol only;
* steps from :func:`non_string` (a list key, for WRONGTYPE cases) make the script require RPUSH:
  skipped, not failed, against a target without lists (shardis has strings only);
* ``divergence="why"``: a known, accepted difference; a mismatch is an xfail.  Keep such
  scripts to the diverging command alone.

To see what Redis answers to scripts: ``python -m tests.differential tests.test_diff_keys
copy randomkey --resp 3`` (starts a redis-server; ``--port N`` uses a running server).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import pytest

from tests.resp_client import (
    ConnectionClosed,
    RawClient,
    decode,
    encode_command,
    reply_end,
    to_bytes,
)

Arg = bytes | str | int | float
Normalizer = Callable[[bytes], object]

MODES = ("exact", "sorted", "type_only", "skip_reply")

#: How many preceding steps a mismatch report shows.
CONTEXT_STEPS = 20
#: Replies longer than this are shortened in reports.
SHOW_BYTES = 300


# -- steps -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cmd:
    """One command; ``closes`` means both servers must close the connection after replying."""

    args: tuple[bytes, ...]
    mode: str | Normalizer = "exact"
    closes: bool = False
    #: a command the target must have for this step to make sense (see :func:`non_string`).
    needs: str | None = None

    def describe(self) -> str:
        return show_args(self.args)


@dataclass(frozen=True)
class Raw:
    """Bytes sent as they are; ``replies`` replies are read and each compared with ``mode``."""

    data: bytes
    replies: int = 1
    closes: bool = False
    mode: str | Normalizer = "exact"

    def describe(self) -> str:
        return f"<raw {self.data[:200]!r}>"


@dataclass(frozen=True)
class ScanAll:
    """A full SCAN iteration (cursor 0 until 0) on both servers; the key sets must be equal."""

    match: bytes | None = None
    count: int | None = None
    type: bytes | None = None

    def describe(self) -> str:
        parts = ["<scan-all"]
        if self.match is not None:
            parts.append(f"MATCH {self.match!r}")
        if self.count is not None:
            parts.append(f"COUNT {self.count}")
        if self.type is not None:
            parts.append(f"TYPE {self.type!r}")
        return " ".join(parts) + ">"


@dataclass(frozen=True)
class Sleep:
    seconds: float

    def describe(self) -> str:
        return f"<sleep {self.seconds}s>"


Step = Cmd | Raw | ScanAll | Sleep


@dataclass(frozen=True)
class Script:
    name: str
    steps: tuple[Step, ...]
    protocols: tuple[int, ...] = (2, 3)
    doc: str = ""
    #: commands the target must know, else the test is skipped (e.g. RPUSH for WRONGTYPE cases).
    requires: tuple[str, ...] = ()
    #: why the target is allowed to answer differently: a mismatch is then an xfail, not a
    #: failure.  Keep such scripts minimal, since a mismatch hides everything after it.
    divergence: str = ""


def script(
    name: str,
    *steps: Step | Sequence[Arg],
    protocols: Iterable[int] = (2, 3),
    doc: str = "",
    requires: Iterable[str] = (),
    divergence: str = "",
) -> Script:
    """Build a :class:`Script`; plain argument lists become exact :class:`Cmd` steps.

    ``requires`` also collects the ``needs`` of the steps (see :func:`non_string`).
    """
    built = tuple(_step(s) for s in steps)
    needed = list(requires)
    for step in built:
        if isinstance(step, Cmd) and step.needs and step.needs not in needed:
            needed.append(step.needs)
    return Script(name, built, tuple(protocols), doc, tuple(needed), divergence)


def _step(step: Step | Sequence[Arg]) -> Step:
    if isinstance(step, (Cmd, Raw, ScanAll, Sleep)):
        return step
    if isinstance(step, (list, tuple)):
        return cmd(*step)
    raise TypeError(f"not a script step: {step!r}")


def cmd(*args: Arg, mode: str | Normalizer = "exact", closes: bool = False) -> Cmd:
    if isinstance(mode, str) and mode not in MODES:
        raise ValueError(f"unknown comparison mode {mode!r}")
    if not args:
        raise ValueError("a command needs at least its name")
    return Cmd(tuple(to_bytes(a) for a in args), mode, closes)


def sorted_(*args: Arg) -> Cmd:
    return cmd(*args, mode="sorted")


def type_only(*args: Arg) -> Cmd:
    return cmd(*args, mode="type_only")


def skip_reply(*args: Arg) -> Cmd:
    return cmd(*args, mode="skip_reply")


def normalized(fn: Normalizer, *args: Arg) -> Cmd:
    return cmd(*args, mode=fn)


def raw(
    data: bytes, replies: int = 1, closes: bool = False, mode: str | Normalizer = "exact"
) -> Raw:
    return Raw(data, replies, closes, mode)


def scan_all(
    match: Arg | None = None, count: int | None = None, type: Arg | None = None
) -> ScanAll:
    return ScanAll(
        None if match is None else to_bytes(match),
        count,
        None if type is None else to_bytes(type),
    )


def sleep(seconds: float) -> Sleep:
    return Sleep(seconds)


# -- reply structure helpers -------------------------------------------------------------------
_AGGREGATES = b"*~>%|"


def children(reply: bytes) -> tuple[bytes, list[bytes]] | None:
    """For an aggregate reply: (header line, raw elements; a map's keys and values alternate).

    None for a non-aggregate or a null aggregate (``*-1``).
    """
    if not reply or reply[0:1] not in (b"*", b"~", b">", b"%"):
        return None
    eol = reply.index(b"\r\n")
    header = reply[: eol + 2]
    count = int(reply[1:eol])
    if count < 0:
        return None
    if reply[0:1] == b"%":
        count *= 2
    items = []
    pos = eol + 2
    for _ in range(count):
        end = reply_end(reply, pos)
        items.append(reply[pos:end])
        pos = end
    return header, items


def shape(reply: bytes) -> object:
    """The RESP shape used by ``type_only``: type bytes, lengths of aggregates, null-ness.

    Errors keep their full text: a command that fails must fail the same way.
    """
    kind = reply[0:1]
    if kind in (b"-", b"!"):
        return ("error", reply)
    if kind == b"|":  # attribute: shape of the attribute and of the value it precedes
        end = reply_end(reply, 0)
        return ("attr", reply[:end])
    parts = children(reply)
    if parts is not None:
        header, items = parts
        return (kind, len(items), tuple(shape(item) for item in items))
    if kind in (b"$", b"*", b"="):
        return (kind, "null" if reply.startswith(kind + b"-1") else "value")
    return (kind,)


def sorted_elements(reply: bytes) -> object:
    parts = children(reply)
    if parts is None:
        return ("not-aggregate", reply)
    header, items = parts
    if header.startswith(b"%"):
        pairs = sorted(zip(items[::2], items[1::2]))
        return (header, pairs)
    return (header, sorted(items))


_HELLO_ID = re.compile(rb"(\$2\r\nid\r\n):-?\d+\r\n")


def hello_without_id(reply: bytes) -> bytes:
    """A HELLO reply with the value of ``id`` (the connection id) replaced by ``:<id>``.

    Everything else (server, version, proto, mode, role, modules, and the RESP types) must be
    byte-identical.
    """
    result, count = _HELLO_ID.subn(rb"\1:<id>\r\n", reply)
    if not reply.startswith((b"-", b"!")) and count != 1:
        return b"<no single id field in HELLO reply> " + reply
    return result


def command_info_fields(reply: bytes) -> object:
    """COMMAND INFO reduced to what clients rely on, per command entry.

    Keeps name, arity, first key, last key and step as raw bytes (so their RESP types count),
    and flags and ACL categories as (container type byte, sorted raw elements).  Tips, key specs
    and subcommands are left out.  A null entry (unknown command) stays as its raw bytes.
    """
    parts = children(reply)
    if parts is None:
        return ("not-aggregate", reply)
    header, entries = parts
    out: list[object] = [header]
    for entry in entries:
        fields = children(entry)
        if fields is None:
            out.append(("entry", entry))
            continue
        _, items = fields
        if len(items) < 7:
            out.append(("short-entry", entry))
            continue
        name, arity, flags, first, last, step, acl = items[:7]
        out.append(
            (name, arity, _unordered(flags), first, last, step, _unordered(acl))
        )
    return out


def _unordered(reply: bytes) -> object:
    parts = children(reply)
    if parts is None:
        return ("not-aggregate", reply)
    header, items = parts
    return (header[0:1], len(items), sorted(items))


def compare(mode: str | Normalizer, a: bytes, b: bytes) -> tuple[bool, object, object]:
    """(equal?, what was compared for ``a``, for ``b``)."""
    if mode == "exact":
        return a == b, a, b
    if mode == "skip_reply":
        return True, a, b
    if mode == "sorted":
        na, nb = sorted_elements(a), sorted_elements(b)
    elif mode == "type_only":
        na, nb = shape(a), shape(b)
    elif callable(mode):
        na, nb = mode(a), mode(b)
    else:
        raise ValueError(f"unknown comparison mode {mode!r}")
    return na == nb, na, nb


# -- SCAN --------------------------------------------------------------------------------------
def scan_keys(
    client: RawClient,
    match: bytes | None = None,
    count: int | None = None,
    type: bytes | None = None,
    max_calls: int = 100_000,
) -> tuple[set[bytes], int]:
    """Every key a full SCAN iteration returns, and the number of SCAN calls it took.

    Raises AssertionError on a malformed SCAN reply or a cursor loop that does not end.
    """
    options: list[bytes] = []
    if match is not None:
        options += [b"MATCH", match]
    if count is not None:
        options += [b"COUNT", str(count).encode()]
    if type is not None:
        options += [b"TYPE", type]
    keys: set[bytes] = set()
    cursor = b"0"
    for calls in range(1, max_calls + 1):
        reply = client.call(b"SCAN", cursor, *options)
        value = decode(reply)
        if not (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], bytes)
            and isinstance(value[1], list)
        ):
            raise AssertionError(f"SCAN {cursor!r} {options!r}: malformed reply {reply[:300]!r}")
        cursor = value[0]
        keys.update(value[1])
        if cursor == b"0":
            return keys, calls
    raise AssertionError(f"SCAN did not return cursor 0 after {max_calls} calls")


# -- running -----------------------------------------------------------------------------------
class DifferentialMismatch(AssertionError):
    """The two servers answered a step differently."""


@dataclass
class _Side:
    name: str
    port: int
    protocol: int
    timeout: float = 5.0
    client: RawClient | None = None

    def connect(self) -> RawClient:
        self.close()
        self.client = RawClient(self.port, timeout=self.timeout)
        if self.protocol == 3:
            self.client.hello3()
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


@dataclass
class _Log:
    entries: list[tuple[str, object]] = field(default_factory=list)

    def add(self, step: Step, reply: object) -> None:
        self.entries.append((step.describe(), reply))


def flushall(port: int) -> None:
    with RawClient(port) as client:
        reply = client.call("FLUSHALL")
        if reply != b"+OK\r\n":
            raise RuntimeError(f"FLUSHALL on port {port} failed: {reply!r}")


def run_script(
    script: Script,
    oracle_port: int,
    target_port: int,
    protocol: int,
    target_name: str = "shardis",
    target_setup: Sequence[Sequence[Arg]] = (),
    timeout: float = 5.0,
) -> None:
    """Run ``script`` on both servers in ``protocol``; raise :class:`DifferentialMismatch`.

    ``target_setup``: commands sent to the target only, after the flush (harness self-tests
    use it to plant a difference).  ``timeout``: seconds to wait for each reply.
    """
    flushall(oracle_port)
    flushall(target_port)
    # One more connection on the target only, so that connection ids never line up by chance
    # (a step comparing an id exactly fails every time, not now and then).
    RawClient(target_port).close()
    if target_setup:
        with RawClient(target_port) as client:
            for args in target_setup:
                client.call(*args)
    sides = [
        _Side("redis", oracle_port, protocol, timeout),
        _Side(target_name, target_port, protocol, timeout),
    ]
    log = _Log()
    try:
        for side in sides:
            side.connect()
        for index, step in enumerate(script.steps):
            _run_step(script, protocol, index, step, sides, log)
    finally:
        for side in sides:
            side.close()


def _run_step(
    script: Script, protocol: int, index: int, step: Step, sides: list[_Side], log: _Log
) -> None:
    def fail(problem: str, a: object = None, b: object = None, compared: tuple = ()) -> None:
        raise DifferentialMismatch(
            _report(script, protocol, index, step, problem, sides, a, b, compared, log)
        )

    if isinstance(step, Sleep):
        time.sleep(step.seconds)
        log.add(step, None)
        return

    if isinstance(step, ScanAll):
        results = []
        for side in sides:
            try:
                results.append(scan_keys(side.client, step.match, step.count, step.type))
            except (AssertionError, OSError, ConnectionError) as exc:
                fail(f"SCAN loop failed on {side.name}: {exc}")
        (keys_a, _), (keys_b, _) = results
        if keys_a != keys_b:
            fail(
                "SCAN key sets differ",
                sorted(keys_a),
                sorted(keys_b),
                (sorted(keys_a - keys_b), sorted(keys_b - keys_a)),
            )
        log.add(step, f"{len(keys_a)} keys")
        return

    if isinstance(step, Cmd):
        data = encode_command(*step.args)
        count, closes, mode = 1, step.closes, step.mode
    else:
        data, count, closes, mode = step.data, step.replies, step.closes, step.mode

    replies: list[list[bytes | str]] = []
    for side in sides:
        side.client.send_raw(data)
    for side in sides:
        got: list[bytes | str] = []
        for _ in range(count):
            try:
                got.append(side.client.read_reply())
            except (TimeoutError, ConnectionClosed, OSError) as exc:
                got.append(f"<{type(exc).__name__}: {exc}>")
                break
        replies.append(got)

    got_a, got_b = replies
    if any(isinstance(reply, str) for reply in got_a):
        # Redis itself did not answer as the script expects: the script is wrong.
        fail(f"script error: redis did not send the {count} expected replies", got_a, got_b)
    for n in range(max(len(got_a), len(got_b))):
        a = got_a[n] if n < len(got_a) else "<no reply>"
        b = got_b[n] if n < len(got_b) else "<no reply>"
        if isinstance(a, str) or isinstance(b, str):
            if a != b:
                fail(f"reply {n + 1} of {count} missing or incomplete", a, b)
            continue
        equal, na, nb = compare(mode, a, b)
        if not equal:
            what = f"reply {n + 1} of {count} differs" if count > 1 else "reply differs"
            fail(f"{what} (mode {_mode_name(mode)})", a, b, (na, nb) if mode != "exact" else ())

    if closes:
        closed = [side.client.is_closed(timeout=min(2.0, side.timeout)) for side in sides]
        if closed != [True, True]:
            fail(
                "connection should be closed by the server after this step",
                f"closed={closed[0]}",
                f"closed={closed[1]}",
            )
        for side in sides:
            side.connect()
    log.add(step, got_a if count > 1 else got_a[0] if got_a else None)


def _mode_name(mode: str | Normalizer) -> str:
    return mode if isinstance(mode, str) else getattr(mode, "__name__", repr(mode))


def _short(value: object) -> str:
    if isinstance(value, (bytes, bytearray)) and len(value) > SHOW_BYTES:
        return f"{bytes(value[:SHOW_BYTES])!r}... ({len(value)} bytes)"
    text = repr(value)
    if len(text) > SHOW_BYTES * 2:
        return text[: SHOW_BYTES * 2] + f"... ({len(text)} chars)"
    return text


def _report(
    script: Script,
    protocol: int,
    index: int,
    step: Step,
    problem: str,
    sides: list[_Side],
    a: object,
    b: object,
    compared: tuple,
    log: _Log,
) -> str:
    lines = [
        f"differential mismatch in script {script.name!r} (RESP{protocol}), "
        f"step {index + 1} of {len(script.steps)}: {problem}",
        f"  command: {step.describe()}",
        f"  {sides[0].name:>8}: {_short(a)}",
        f"  {sides[1].name:>8}: {_short(b)}",
    ]
    if compared:
        lines.append(f"  compared {sides[0].name}: {_short(compared[0])}")
        lines.append(f"  compared {sides[1].name}: {_short(compared[1])}")
    previous = log.entries[-CONTEXT_STEPS:]
    if previous:
        first = len(log.entries) - len(previous) + 1
        lines.append("  preceding steps (with redis's replies):")
        for number, (text, reply) in enumerate(previous, start=first):
            lines.append(f"    {number:3}. {text}  ->  {_short(reply)}")
    else:
        lines.append("  (first step of the script)")
    if script.doc:
        lines.append(f"  script notes: {script.doc}")
    return "\n".join(lines)


def show_args(args: Sequence[bytes]) -> str:
    shown = []
    for arg in args:
        if len(arg) > 60:
            shown.append(f"{arg[:40]!r}...({len(arg)} bytes)")
        elif re.fullmatch(rb"[!-~]+", arg) and b"'" not in arg and b'"' not in arg:
            shown.append(arg.decode())
        else:
            shown.append(repr(arg))
    return " ".join(shown)


# -- corpus helpers ----------------------------------------------------------------------------
def non_string(key: Arg) -> Cmd:
    """A command that makes ``key`` hold a non-string value, for WRONGTYPE cases.

    A script using it requires RPUSH: against a server without lists (shardis has strings
    only, so WRONGTYPE cannot happen there) the script is skipped, not failed.
    """
    return Cmd((b"RPUSH", to_bytes(key), b"element"), needs="RPUSH")


# -- transcripts -------------------------------------------------------------------------------
def transcript(script: Script, port: int, protocol: int) -> list[tuple[str, object]]:
    """Run ``script`` on one server (after FLUSHALL) and return (step, reply) pairs.

    For reading what Redis answers; ``python -m tests.differential`` prints one.
    """
    flushall(port)
    side = _Side("server", port, protocol)
    out: list[tuple[str, object]] = []
    try:
        side.connect()
        for step in script.steps:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                out.append((step.describe(), None))
                continue
            if isinstance(step, ScanAll):
                keys, calls = scan_keys(side.client, step.match, step.count, step.type)
                out.append((step.describe(), f"{len(keys)} keys in {calls} calls"))
                continue
            if isinstance(step, Cmd):
                data, count, closes = encode_command(*step.args), 1, step.closes
            else:
                data, count, closes = step.data, step.replies, step.closes
            side.client.send_raw(data)
            got: list[object] = []
            for _ in range(count):
                try:
                    got.append(side.client.read_reply())
                except (TimeoutError, ConnectionClosed, OSError) as exc:
                    got.append(f"<{type(exc).__name__}>")
                    break
            if closes:
                got.append("<closed>" if side.client.is_closed(2.0) else "<still open>")
                side.connect()
            out.append((step.describe(), got[0] if len(got) == 1 else got))
    finally:
        side.close()
    return out


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        description="Print what a server answers to corpus scripts, e.g. "
        "python -m tests.differential tests.test_diff_strings getrange --resp 3"
    )
    parser.add_argument("module", help="corpus module with SCRIPTS, e.g. tests.test_diff_keys")
    parser.add_argument("names", nargs="*", help="script names (default: all)")
    parser.add_argument("--port", type=int, help="server port (default: start a redis-server)")
    parser.add_argument("--resp", type=int, default=2, choices=(2, 3))
    args = parser.parse_args(argv)
    scripts = importlib.import_module(args.module).SCRIPTS
    chosen = [s for s in scripts if not args.names or s.name in args.names]
    server = None
    port = args.port
    if port is None:
        from tests.servers import start_redis

        server = start_redis()
        port = server.port
    try:
        for item in chosen:
            print(f"== {item.name} (RESP{args.resp})")
            for text, reply in transcript(item, port, args.resp):
                print(f"  {text}  ->  {_short(reply)}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    # Run the imported module's copy, whose classes are the ones the corpus modules use.
    from tests.differential import _main as main

    main()


# -- pytest glue -------------------------------------------------------------------------------
def parametrize(scripts: Sequence[Script]) -> pytest.MarkDecorator:
    """``@parametrize(SCRIPTS)`` on ``test_x(oracle, shardis, script, protocol)``.

    One test per script and protocol, with ids like ``set_options-resp3``.
    """
    names = [s.name for s in scripts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate script names: {duplicates}")
    params = [
        pytest.param(s, p, id=f"{s.name}-resp{p}") for s in scripts for p in s.protocols
    ]
    return pytest.mark.parametrize(("script", "protocol"), params)


_SUPPORTED: dict[tuple[int, str], bool] = {}


def target_supports(port: int, command: str) -> bool:
    """Whether the server on ``port`` knows ``command`` (asked without arguments: no effect)."""
    key = (port, command.lower())
    if key not in _SUPPORTED:
        with RawClient(port) as client:
            reply = client.call(command)
        _SUPPORTED[key] = not reply.startswith(b"-ERR unknown command")
    return _SUPPORTED[key]


def check(oracle, target, script: Script, protocol: int) -> None:
    """Run ``script`` on the ``oracle`` and ``target`` fixtures (tests/servers.Server)."""
    __tracebackhide__ = True
    missing = [name for name in script.requires if not target_supports(target.port, name)]
    if missing:
        pytest.skip(f"{target.name} has no {', '.join(missing)} (needed by this script)")
    name = target.name if target.name != oracle.name else f"{target.name}-2"
    failure = None
    try:
        run_script(script, oracle.port, target.port, protocol, target_name=name)
    except DifferentialMismatch as exc:
        failure = str(exc)
    if failure is not None and script.divergence:
        pytest.xfail(f"known divergence: {script.divergence}")
    if failure is not None:
        pytest.fail(failure, pytrace=False)
