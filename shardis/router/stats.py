"""Seeing inside the router: per-command statistics, the slow log and the latency monitor.

Every command is timed end to end at the router, from the read that parsed it to the flush
that writes its reply (the hop to the worker and back included): that is what a client of
shardis waits for, as ``call()``'s duration is what a client of Redis waits for.  The cost on
the fast path is two slots on each :class:`~shardis.router.client.Reply` (the command and its
arguments; its start is the client's last read time, already taken) and one clock read per
flush; everything is aggregated in :meth:`Observer.replied` when replies leave.

Kept here, as Redis keeps them:

* INFO commandstats (``calls``, ``usec``, ``rejected_calls``, ``failed_calls`` per command
  and subcommand), errorstats (error replies by their first word) and latencystats
  (percentiles of an HDR-like histogram with 2 significant digits, as Redis's
  ``hdr_histogram``): :func:`commandstats_lines` and friends, printed by
  ``shardis.router.info``.
* SLOWLOG (``slowlog-log-slower-than`` usec, ``slowlog-max-len`` entries; arguments trimmed
  to 32, each to 128 bytes, as ``slowlogCreateEntry``).
* LATENCY (``latency-monitor-threshold`` ms): the events ``command`` and ``fast-command``,
  as Redis records them, and shardis's ``worker-batch``: a worker's answer to one message
  of commands took that long (timed only while the monitor is on).

CONFIG RESETSTAT calls :func:`reset`.  Blocking commands (BLPOP...) count their calls but
not their time: Redis leaves the time a client waits for data out of a command's duration.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from shardis.commands import COMMANDS, Command, all_commands, find, help_reply
from shardis.config import DIRECTIVES, LLONG_MAX, ConfigError, Directive
from shardis.errors import ReplyError
from shardis.resp import OK, Verbatim
from shardis.router.config import RESETSTAT_HOOKS
from shardis.router.registry import router_command

# Directives --------------------------------------------------------------------------------
#: Histograms hold 1 ns .. 1 s, as Redis's LATENCY_HISTOGRAM_MIN/MAX_VALUE.
HISTOGRAM_MAX_NS = 1_000_000_000
#: Values keep 2 significant digits: 256 sub-buckets per power of two, as hdr_histogram.
SUB_BUCKET_BITS = 8


def parse_percentiles(text: str) -> tuple[float, ...]:
    """latency-tracking-info-percentiles: doubles in [0, 100], Redis's errors otherwise."""
    values = []
    for word in text.split():
        try:
            value = float(word)
        except ValueError:
            raise ConfigError("Invalid latency-tracking-info-percentiles parameters") from None
        if not 0.0 <= value <= 100.0:
            raise ConfigError("latency-tracking-info-percentiles parameters should sit "
                              "between [0.0,100.0]")
        values.append(value)
    return tuple(values)


def format_percentile(value: float) -> str:
    """Redis's ``%f`` then trimDoubleString: 50, 99, 99.9."""
    text = f"{value:f}".rstrip("0")
    return text.rstrip(".")


def _format_percentiles(values: tuple[float, ...]) -> str:
    return " ".join(format_percentile(value) for value in values)


#: Redis 7.0's directives for what this module keeps; registered unless config.py has them.
OWN_DIRECTIVES = (
    Directive("slowlog-log-slower-than", 10000, "int", -1, LLONG_MAX,
              help="log commands slower than this many microseconds (-1: never)"),
    Directive("slowlog-max-len", 128, "int", 0, LLONG_MAX,
              help="most entries the slow log keeps"),
    Directive("latency-monitor-threshold", 0, "int", 0, LLONG_MAX,
              help="record latency events of at least this many ms (0: off)"),
    Directive("latency-tracking", True, "bool",
              help="per-command latency histograms for INFO latencystats"),
    Directive("latency-tracking-info-percentiles", (50.0, 99.0, 99.9), "custom",
              codec=(parse_percentiles, _format_percentiles),
              help="percentiles INFO latencystats prints"),
)
for _directive in OWN_DIRECTIVES:
    DIRECTIVES.setdefault(_directive.name, _directive)


# Histograms --------------------------------------------------------------------------------
def histogram_key(ns: int) -> int:
    """The lowest value of the bucket ``ns`` falls in (hdr_histogram's lowest equivalent)."""
    if ns < 1:
        ns = 1
    elif ns > HISTOGRAM_MAX_NS:
        ns = HISTOGRAM_MAX_NS
    shift = ns.bit_length() - SUB_BUCKET_BITS
    return ns if shift <= 0 else (ns >> shift) << shift


def highest_equivalent(key: int) -> int:
    """The highest value of the bucket starting at ``key``: what hdr reports for it."""
    shift = key.bit_length() - SUB_BUCKET_BITS
    return key if shift <= 0 else key + (1 << shift) - 1


def value_at_percentile(histogram: dict[int, int], percentile: float) -> int:
    """hdr_value_at_percentile: the bucket where the cumulative count first reaches the
    percentile's share (at least one value), as its highest equivalent value."""
    total = sum(histogram.values())
    wanted = max(int(percentile / 100.0 * total + 0.5), 1)
    seen = 0
    key = 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen >= wanted:
            break
    return highest_equivalent(key)


def cumulative_usec(histogram: dict[int, int]) -> list[tuple[int, int]]:
    """LATENCY HISTOGRAM's buckets: powers of two microseconds (1024 ns first, each twice the
    last, as ``hdr_iter_log_init(1024, 2)``), with the cumulative count, empty ones skipped."""
    out: list[tuple[int, int]] = []
    keys = sorted(histogram)
    limit, seen, index, previous = 1024, 0, 0, 0
    while index < len(keys):
        while index < len(keys) and highest_equivalent(keys[index]) < limit:
            seen += histogram[keys[index]]
            index += 1
        if seen > previous:
            out.append((highest_equivalent(histogram_key(limit - 1)) // 1000, seen))
            previous = seen
        limit *= 2
    return out


class CommandStat:
    """INFO commandstats' counters of one command, and its latency histogram (ns buckets)."""

    __slots__ = ("calls", "usec", "rejected", "failed", "histogram")

    def __init__(self) -> None:
        self.calls = 0
        self.usec = 0
        self.rejected = 0
        self.failed = 0
        self.histogram: dict[int, int] = {}


# The slow log and the latency monitor ------------------------------------------------------
SLOWLOG_ENTRY_MAX_ARGC = 32
SLOWLOG_ENTRY_MAX_STRING = 128
LATENCY_TS_LEN = 160
#: Batch sizes are counted by bit length up to this (65535 commands), larger ones together.
BATCH_SIZE_BITS = 16
#: Arguments Redis hides from the slow log and MONITOR (``redactClientCommandArgument``).
REDACTED = b"(redacted)"


def redacted_args(args: list[bytes]) -> list[bytes]:
    """AUTH's arguments, and HELLO's AUTH pair, as Redis shows them: ``(redacted)``."""
    name = args[0].lower()
    if name == b"auth":
        return [args[0], *[REDACTED] * (len(args) - 1)]
    if name == b"hello":
        shown = list(args)
        index = 2
        while index < len(shown):
            option = shown[index].lower()
            if option == b"auth" and len(shown) - index - 1 >= 2:
                shown[index + 1] = shown[index + 2] = REDACTED
                index += 3
            elif option == b"setname" and len(shown) - index - 1 >= 1:
                index += 2
            else:
                index += 1
        return shown
    return args


def slowlog_args(args: list[bytes]) -> list[bytes]:
    """At most 32 arguments (the last says how many more there were), each at most 128 bytes
    (``... (N more bytes)``), as ``slowlogCreateEntry``."""
    argc = len(args)
    kept = min(argc, SLOWLOG_ENTRY_MAX_ARGC)
    out = []
    for index in range(kept):
        if kept != argc and index == kept - 1:
            out.append(b"... (%d more arguments)" % (argc - kept + 1))
            continue
        arg = args[index]
        if len(arg) > SLOWLOG_ENTRY_MAX_STRING:
            arg = arg[:SLOWLOG_ENTRY_MAX_STRING] + \
                b"... (%d more bytes)" % (len(arg) - SLOWLOG_ENTRY_MAX_STRING)
        out.append(arg)
    return out


class LatencySeries:
    """One latency event's samples: at most one per second (the highest), 160 kept."""

    __slots__ = ("samples", "max")

    def __init__(self) -> None:
        self.samples: deque[list[int]] = deque(maxlen=LATENCY_TS_LEN)
        self.max = 0

    def add(self, now: int, latency: int) -> None:
        self.max = max(self.max, latency)
        if self.samples and self.samples[-1][0] == now:
            last = self.samples[-1]
            last[1] = max(last[1], latency)
            return
        self.samples.append([now, latency])


class Observer:
    """What the router has seen: the statistics, the slow log, the latency events, and the
    MONITOR clients (``shardis.router.monitor``).  One per router (``router.observer``)."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.commands: dict[Command, CommandStat] = {}
        self.errors: dict[str, int] = {}
        self.slowlog: deque[list] = deque()
        self.slowlog_id = 0
        self.events: dict[str, LatencySeries] = {}
        #: clients in MONITOR mode: each gets every command as a status line.
        self.monitors: set[Any] = set()
        self.exec_spec = COMMANDS.get(b"exec")
        #: messages sent to workers by size (index: the size's bit length), and the
        #: commands they carried: the metrics' batch histogram.
        self.batch_sizes = [0] * (BATCH_SIZE_BITS + 2)
        self.batched = 0
        #: worker -> how many times its link connected (restarts: one less).
        self.worker_connects: dict[int, int] = {}
        #: worker -> {batch number: when it was sent}, while the latency monitor is on.
        self.batch_times: dict[int, dict[int, float]] = {}
        #: worker -> (when, its command count) at the last INFO shards: its ops/s.
        self.shard_samples: dict[int, tuple[float, int]] = {}
        self.configure()
        from shardis import metrics

        #: the Prometheus endpoint (``shardis.metrics``), when metrics-port is set.
        self.metrics = metrics.start(router)

    def batch_sent(self, size: int) -> None:
        """A message of ``size`` commands left for a worker."""
        self.batch_sizes[min(size.bit_length(), BATCH_SIZE_BITS + 1)] += 1
        self.batched += size

    def batch_flushed(self, worker: int, seq: int) -> None:
        """Batch ``seq`` left for ``worker`` (only while the latency monitor is on)."""
        self.batch_times.setdefault(worker, {})[seq] = time.monotonic()

    def batch_answered(self, worker: int, seq: int) -> None:
        """``worker`` answered batch ``seq``: its round trip is a ``worker-batch`` sample
        (batches are answered in order: earlier ones still here were lost)."""
        times = self.batch_times.get(worker)
        if not times:
            return
        for lost in [number for number in times if number < seq]:
            del times[lost]
        started = times.pop(seq, None)
        if started is not None:
            self.latency_sample("worker-batch", int((time.monotonic() - started) * 1000))

    def worker_connected(self, worker: int) -> None:
        self.worker_connects[worker] = self.worker_connects.get(worker, 0) + 1

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()

    def configure(self) -> None:
        """Cache the directives read for every reply (refreshed by CONFIG SET)."""
        config = self.router.config
        self.slower_than = config.get("slowlog-log-slower-than", 10000)
        self.slowlog_max = config.get("slowlog-max-len", 128)
        self.latency_threshold = config.get("latency-monitor-threshold", 0)
        if not self.latency_threshold:
            self.batch_times.clear()
        self.tracking = config.get("latency-tracking", True)
        # A shorter slowlog-max-len trims the log at its next entry, as in Redis.

    def stat(self, spec: Command) -> CommandStat:
        stat = self.commands.get(spec)
        if stat is None:
            stat = self.commands[spec] = CommandStat()
        return stat

    def rejected(self, spec: Command | None) -> None:
        """A command refused before it ran (wrong arity, no permission): its rejected_calls."""
        if spec is not None:
            self.stat(spec).rejected += 1

    def replied(self, replies: list[Any]) -> None:
        """Replies leaving for a client: count, time and log their commands.

        Consecutive replies of one command read together (a pipeline of GETs) are accounted
        as one run, so that the cost per reply stays a few attribute reads: each call took
        the run's time divided by its calls.  (Redis times each command's execution alone;
        the whole run's time for each call would make every command of a long pipeline
        "slow", filling the slow log with the SETs of a ``redis-cli --pipe`` load.)  Errors
        are counted one by one (errorstats, failed_calls)."""
        now = time.monotonic()
        run_spec: Command | None = None
        run_started: float | None = None
        first = 0
        for index, reply in enumerate(replies):
            data = reply.data
            spec = reply.cmd
            if data[:1] == b"-":  # (a one-byte slice is a cached object: no allocation)
                self.count_error(data)
                if spec is not None:
                    self.stat(spec).failed += 1
            if spec is run_spec and reply.started == run_started:
                continue
            if run_spec is not None:
                self.account(replies, first, index, run_spec, run_started, now)
            run_spec, run_started, first = spec, reply.started, index
        if run_spec is not None:
            self.account(replies, first, len(replies), run_spec, run_started, now)

    def account(self, replies: list[Any], first: int, end: int, spec: Command,
                started: float | None, now: float) -> None:
        """``replies[first:end]``: calls of ``spec`` read at ``started`` (None: a blocking
        command, whose wait is not its cost), replied ``now``."""
        stat = self.commands.get(spec)
        if stat is None:
            stat = self.commands[spec] = CommandStat()
        count = end - first
        stat.calls += count
        if spec is self.exec_spec or self.monitors:
            monitor = self.router.monitor
            for reply in replies[first:end]:
                if spec is self.exec_spec:
                    monitor.exec_replied(reply, now)  # its commands, before it
                if self.monitors:
                    monitor.feed(reply)
        if started is None:
            return
        usec = self.time(stat, (now - started) / count, count)
        if 0 <= self.slower_than <= usec:
            for reply in replies[first:end]:
                self.log_slow(reply, spec, usec)
        if self.latency_threshold and usec >= self.latency_threshold * 1000:
            self.latency_sample("fast-command" if "fast" in spec.flags else "command",
                                usec // 1000)

    def time(self, stat: CommandStat, elapsed: float, count: int) -> int:
        """``count`` calls of ``elapsed`` seconds each: their microseconds and histogram."""
        ns = int(elapsed * 1_000_000_000)
        usec = ns // 1000
        stat.usec += usec * count
        if self.tracking:  # histogram_key, inline: this runs for every command
            if ns > HISTOGRAM_MAX_NS:
                ns = HISTOGRAM_MAX_NS
            shift = ns.bit_length() - SUB_BUCKET_BITS
            key = (ns >> shift) << shift if shift > 0 else ns or 1
            histogram = stat.histogram
            histogram[key] = histogram.get(key, 0) + count
        return usec

    def count_error(self, data: bytes) -> None:
        """errorstats: the error's first word (``ERR``, ``WRONGTYPE``), looked for in its
        first 32 bytes as ``afterErrorReply``; ``ERR`` when there is none."""
        head = data[1:33]
        space = head.find(b" ")
        prefix = head[:space].decode(errors="replace") if space > 0 else "ERR"
        self.errors[prefix] = self.errors.get(prefix, 0) + 1

    def log_slow(self, reply: Any, spec: Command, usec: int) -> None:
        if spec is self.exec_spec or reply.argv is None:  # Redis's CMD_SKIP_SLOWLOG
            return
        self.log_entry(reply.client, reply.argv, usec)

    def log_entry(self, client: Any, args: list[bytes], usec: int) -> None:
        """A slow log entry for ``client``'s command ``args`` that took ``usec``.  Under load
        every command may be slow end to end: the common command (few, short arguments,
        nothing to redact) is kept as its own list, the others trimmed and redacted."""
        if (len(args) > SLOWLOG_ENTRY_MAX_ARGC or len(args[0]) in (4, 5)
                or any(len(arg) > SLOWLOG_ENTRY_MAX_STRING for arg in args)):
            args = slowlog_args(redacted_args(args))  # (AUTH and HELLO are 4 and 5 long)
        self.slowlog.appendleft([
            self.slowlog_id, int(time.time()), usec, args, client.addr.encode(),
            client.name or b"",
        ])
        self.slowlog_id += 1
        while len(self.slowlog) > self.slowlog_max:
            self.slowlog.pop()

    def latency_sample(self, event: str, ms: int) -> None:
        """latencyAddSampleIfNeeded: recorded when the monitor is on and ``ms`` reaches it."""
        if not self.latency_threshold or ms < self.latency_threshold:
            return
        series = self.events.get(event)
        if series is None:
            series = self.events[event] = LatencySeries()
        series.add(int(time.time()), ms)

    def reset(self) -> None:
        """CONFIG RESETSTAT: commandstats, errorstats and latencystats start again."""
        self.commands.clear()
        self.errors.clear()


def _reconfigure(router: Any, value: Any) -> None:
    observer_of(router).configure()


def _register_config_hooks() -> None:
    """CONFIG SET of these directives takes effect at once (``Observer.configure``)."""
    from shardis.router.server import on_config_set

    for directive in OWN_DIRECTIVES:
        on_config_set(directive.name)(_reconfigure)


_register_config_hooks()


def observer_of(router: Any) -> Observer:
    return router.observer  # type: ignore[no-any-return]


def reset(router: Any) -> None:
    """What CONFIG RESETSTAT clears here: commandstats, errorstats, latencystats (the
    workers' share, the counts of the commands scripts called, goes with ``__resetstat``)."""
    observer_of(router).reset()


RESETSTAT_HOOKS.append(reset)


# INFO sections -----------------------------------------------------------------------------
def _ordered(observer: Observer) -> list[tuple[Command, CommandStat]]:
    """Commands in the table's order, each followed by its subcommands."""
    out = []
    for spec in all_commands():
        stat = observer.commands.get(spec)
        if stat is not None:
            out.append((spec, stat))
        seen: set[int] = set()
        for sub in spec.subcommands.values():
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            stat = observer.commands.get(sub)
            if stat is not None:
                out.append((sub, stat))
    return out


def commandstats(router: Any, shards: list | tuple = ()) -> list[tuple[str, str]]:
    """INFO commandstats: ``cmdstat_get:calls=..,usec=..,usec_per_call=..,...``, with the
    commands scripts called on the workers (``shards``: their ``__info``)."""
    fields = []
    for spec, stat in _ordered(with_script_calls(observer_of(router), shards)):
        if not (stat.calls or stat.failed or stat.rejected):
            continue
        per_call = stat.usec / stat.calls if stat.calls else 0
        fields.append((f"cmdstat_{spec.fullname}",
                       f"calls={stat.calls},usec={stat.usec},usec_per_call={per_call:.2f},"
                       f"rejected_calls={stat.rejected},failed_calls={stat.failed}"))
    return fields


def with_script_calls(observer: Observer, shards: Any) -> Observer:
    """``observer`` or, when scripts called commands on the workers, a copy of its counters
    with those calls added (the histograms are the router's only)."""
    calls = [shard[b"script_calls"] for shard in shards
             if isinstance(shard, dict) and shard.get(b"script_calls")]
    if not calls:
        return observer
    merged = _Counters(observer)
    for table in calls:
        for name, (count, usec, failed) in table.items():
            spec = find(name)
            if spec is None:
                continue
            stat = merged.commands.get(spec)
            if stat is None or stat is observer.commands.get(spec):
                stat = merged.commands[spec] = _copy(stat)
            stat.calls += count
            stat.usec += usec
            stat.failed += failed
    return merged  # type: ignore[return-value]


class _Counters:
    """The ``commands`` table of an observer, to add to without touching it."""

    def __init__(self, observer: Observer) -> None:
        self.commands = dict(observer.commands)


def _copy(stat: CommandStat | None) -> CommandStat:
    copy = CommandStat()
    if stat is not None:
        copy.calls, copy.usec = stat.calls, stat.usec
        copy.rejected, copy.failed = stat.rejected, stat.failed
        copy.histogram = stat.histogram
    return copy


def errorstats(router: Any) -> list[tuple[str, str]]:
    """INFO errorstats: ``errorstat_ERR:count=..``, prefixes in byte order (Redis's rax)."""
    counts = observer_of(router).errors
    return [(f"errorstat_{_safe(prefix)}", f"count={counts[prefix]}")
            for prefix in sorted(counts, key=lambda p: p.encode())]


def latencystats(router: Any) -> list[tuple[str, str]]:
    """INFO latencystats: ``latency_percentiles_usec_get:p50=1.003,p99=..,p99.9=..``."""
    if not router.config.get("latency-tracking", True):
        return []
    percentiles = router.config.get("latency-tracking-info-percentiles", (50.0, 99.0, 99.9))
    fields = []
    for spec, stat in _ordered(observer_of(router)):
        if not stat.histogram:
            continue
        values = ",".join(
            f"p{format_percentile(p)}={value_at_percentile(stat.histogram, p) / 1000:.3f}"
            for p in percentiles)
        fields.append((f"latency_percentiles_usec_{spec.fullname}", values))
    return fields


def _safe(text: str) -> str:
    """getSafeInfoString: ``#:\\r\\n`` would break INFO's lines."""
    for char in "#:\r\n":
        text = text.replace(char, "_")
    return text


# SLOWLOG -----------------------------------------------------------------------------------
SLOWLOG_HELP = [
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
]


def count_or_reply(arg: bytes) -> int:
    """SLOWLOG GET's count: an integer >= -1 (-1: all), Redis's errors otherwise."""
    message = "ERR count should be greater than or equal to -1"
    try:
        count = int(arg)
    except ValueError:
        raise ReplyError(message) from None
    if not -1 <= count <= LLONG_MAX or not arg.strip(b"-").isdigit():
        raise ReplyError(message)
    return count


@router_command("slowlog|get")
def slowlog_get(router: Any, client: Any, args: list[bytes]) -> object:
    if len(args) > 3:
        raise ReplyError(_subcommand_syntax(args, "SLOWLOG"))
    log = observer_of(router).slowlog
    count = count_or_reply(args[2]) if len(args) == 3 else 10
    if count == -1:
        count = len(log)
    return [list(entry) for entry in list(log)[:count]]


@router_command("slowlog|len")
def slowlog_len(router: Any, client: Any, args: list[bytes]) -> object:
    return len(observer_of(router).slowlog)


@router_command("slowlog|reset")
def slowlog_reset(router: Any, client: Any, args: list[bytes]) -> object:
    observer_of(router).slowlog.clear()
    return OK


@router_command("slowlog|help")
def slowlog_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(SLOWLOG_HELP)


def _subcommand_syntax(args: list[bytes], container: str) -> str:
    """addReplySubcommandSyntaxError's text."""
    return (f"ERR unknown subcommand or wrong number of arguments for "
            f"'{args[1].decode(errors='replace')}'. Try {container} HELP.")


# LATENCY -----------------------------------------------------------------------------------
LATENCY_HELP = [
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the "
    "specified command names.",
    "    If no commands are specified then all histograms are replied.",
]


@router_command("latency|latest")
def latency_latest(router: Any, client: Any, args: list[bytes]) -> object:
    return [[event.encode(), series.samples[-1][0], series.samples[-1][1], series.max]
            for event, series in observer_of(router).events.items()]


@router_command("latency|history")
def latency_history(router: Any, client: Any, args: list[bytes]) -> object:
    series = observer_of(router).events.get(args[2].decode(errors="replace"))
    return [] if series is None else [list(sample) for sample in series.samples]


@router_command("latency|reset")
def latency_reset(router: Any, client: Any, args: list[bytes]) -> object:
    events = observer_of(router).events
    if len(args) == 2:
        count = len(events)
        events.clear()
        return count
    resets = 0
    for name in args[2:]:
        wanted = name.decode(errors="replace").lower()
        for event in [e for e in events if e.lower() == wanted]:
            del events[event]
            resets += 1
    return resets


@router_command("latency|graph")
def latency_graph(router: Any, client: Any, args: list[bytes]) -> object:
    event = args[2].decode(errors="replace")
    series = observer_of(router).events.get(event)
    if series is None:
        raise ReplyError(f"ERR No samples available for event '{event}'")
    return Verbatim(latency_graph_text(event, series, int(time.time())).encode())


@router_command("latency|doctor")
def latency_doctor(router: Any, client: Any, args: list[bytes]) -> object:
    return Verbatim(doctor_report(observer_of(router), int(time.time())).encode())


@router_command("latency|histogram")
def latency_histogram(router: Any, client: Any, args: list[bytes]) -> object:
    """Per command: ``calls`` and ``histogram_usec`` (cumulative counts by power of two)."""
    observer = observer_of(router)
    if len(args) == 2:
        chosen = _ordered(observer)
    else:
        chosen = []
        for name in args[2:]:
            spec = find(name)
            if spec is None:
                continue
            for candidate in [spec, *dict.fromkeys(spec.subcommands.values())]:
                stat = observer.commands.get(candidate)
                if stat is not None:
                    chosen.append((candidate, stat))
    reply = {}
    for spec, stat in chosen:
        if stat.histogram:
            reply[spec.fullname.encode()] = {
                b"calls": sum(stat.histogram.values()),
                b"histogram_usec": dict(cumulative_usec(stat.histogram)),
            }
    return reply


@router_command("latency|help")
def latency_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(LATENCY_HELP)


LATENCY_GRAPH_COLS = 80
_CHARSET_FILL = "_o#"


def _ago(elapsed: int) -> str:
    if elapsed < 60:
        return f"{elapsed}s"
    if elapsed < 3600:
        return f"{elapsed // 60}m"
    if elapsed < 86400:
        return f"{elapsed // 3600}h"
    return f"{elapsed // 86400}d"


def latency_graph_text(event: str, series: LatencySeries, now: int) -> str:
    """latencyCommandGenSparkeline: a title, a rule and a 4-row filled sparkline with
    "how long ago" labels written downwards, as Redis draws it."""
    samples = [(latency, _ago(now - at)) for at, latency in series.samples]
    values = [value for value, _ in samples]
    low, high = (min(values), max(values)) if values else (0, 0)
    text = (f"{event} - high {high} ms, low {low} ms (all time high {series.max} ms)\n"
            + "-" * LATENCY_GRAPH_COLS + "\n")
    for start in range(0, len(samples), LATENCY_GRAPH_COLS):
        if start:
            text += "\n"
        text += _sparkline(samples[start:start + LATENCY_GRAPH_COLS], low, high)
    return text


def _sparkline(samples: list[tuple[int, str]], low: int, high: int, rows: int = 4) -> str:
    """sparklineRenderRange with SPARKLINE_FILL, one label margin row."""
    relmax = (high - low) or 1
    steps = len(_CHARSET_FILL) * rows
    lines = []
    for row in range(rows):
        chars = []
        for value, _ in samples:
            step = min(max(int((value - low) * steps / relmax), 0), steps - 1)
            index = step - (rows - row - 1) * len(_CHARSET_FILL)
            if 0 <= index < len(_CHARSET_FILL):
                chars.append(_CHARSET_FILL[index])
            elif index >= len(_CHARSET_FILL):
                chars.append("|")
            else:
                chars.append(" ")
        lines.append("".join(chars))
    lines.append(" " * len(samples))  # the labels' top margin
    longest = max((len(label) for _, label in samples), default=0)
    for position in range(longest):
        lines.append("".join(label[position] if position < len(label) else " "
                             for _, label in samples))
    return "".join(line + "\n" for line in lines)


_DOCTOR_DISABLED = (
    "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. "
    "You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable "
    "it. If we weren't in a deep space mission I'd suggest to take a look at "
    "https://redis.io/topics/latency-monitor.\n")
_DOCTOR_NOTHING = (
    "Dave, no latency spike was observed during the lifetime of this Redis instance, not in "
    "the slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and "
    "think things over.\n")
_ADVICE = {
    "slowlog_enabled": "- There are latency issues with potentially slow commands you are "
                       "using. Try to enable the Slow Log Redis feature using the command "
                       "'CONFIG SET slowlog-log-slower-than {usec}'. If the Slow log is "
                       "disabled Redis is not able to log slow commands execution for you.\n",
    "slowlog_tuning": "- Your current Slow Log configuration only logs events that are slower "
                      "than your configured latency monitor threshold. Please use 'CONFIG SET "
                      "slowlog-log-slower-than {usec}'.\n",
    "slowlog_inspect": "- Check your Slow Log to understand what are the commands you are "
                       "running which are too slow to execute. Please check "
                       "https://redis.io/commands/slowlog for more information.\n",
    "scheduler": "- The system is slow to execute Redis code paths not containing system "
                 "calls. This usually means the system does not provide Redis CPU time to run "
                 "for long periods. You should try to:\n"
                 "  1) Lower the system load.\n"
                 "  2) Use a computer / VM just for Redis if you are running other software "
                 "in the same system.\n"
                 "  3) Check if you have a \"noisy neighbour\" problem.\n"
                 "  4) Check with 'redis-cli --intrinsic-latency 100' what is the intrinsic "
                 "latency in your system.\n"
                 "  5) Check if the problem is allocator-related by recompiling Redis with "
                 "MALLOC=libc, if you are using Jemalloc. However this may create "
                 "fragmentation problems.\n",
    "worker_batch": "- A worker was slow to answer a batch of commands (shardis's "
                    "worker-batch event): check that worker's slow commands (SLOWLOG, INFO "
                    "commandstats), its CPU (INFO shards' pid) and its disk when it writes an "
                    "AOF with appendfsync always.\n",
    "large_objects": "- Deleting, expiring or evicting (because of maxmemory policy) large "
                     "objects is a blocking operation. If you have very large objects that "
                     "are often deleted, expired, or evicted, try to fragment those objects "
                     "into multiple smaller objects.\n",
}


def doctor_report(observer: Observer, now: int) -> str:
    """createLatencyReport, for the events shardis records."""
    if not observer.events and not observer.latency_threshold:
        return _DOCTOR_DISABLED
    if not observer.events:
        return _DOCTOR_NOTHING
    report = ("Dave, I have observed latency spikes in this Redis instance. You don't mind "
              "talking about it, do you Dave?\n\n")
    advice: list[str] = []
    for number, (event, series) in enumerate(observer.events.items(), 1):
        values = [latency for _, latency in series.samples]
        avg = sum(values) // len(values)
        mad = sum(abs(avg - value) for value in values) // len(values)
        period = max(now - min(at for at, _ in series.samples), 1)
        report += (f"{number}. {event}: {len(values)} latency spikes (average {avg}ms, mean "
                   f"deviation {mad}ms, period {period / len(values):.2f} sec). Worst all "
                   f"time event {series.max}ms.\n")
        advice += _advice_for(observer, event)
    if not advice:
        return report + ("\nWhile there are latency events logged, I'm not able to suggest "
                         "any easy fix. Please use the Redis community to get some help, "
                         "providing this report in your help request.\n")
    usec = observer.latency_threshold * 1000
    report += "\nI have a few advices for you:\n\n"
    for name in _ADVICE:
        if name in advice:
            report += _ADVICE[name].format(usec=usec)
    return report


def _advice_for(observer: Observer, event: str) -> list[str]:
    if event == "command":
        first = ["slowlog_enabled"] if observer.slower_than < 0 else (
            ["slowlog_tuning"] if observer.slower_than // 1000 > observer.latency_threshold
            else [])
        return [*first, "slowlog_inspect", "large_objects"]
    if event == "fast-command":
        return ["scheduler"]
    if event == "worker-batch":
        return ["worker_batch"]
    return []


def lookup_spec(args: list[bytes]) -> Command | None:
    """The (sub)command ``args`` names, arity unchecked: whose rejected_calls a wrong arity
    counts (Redis finds the command, then refuses it)."""
    spec = COMMANDS.get(args[0]) or COMMANDS.get(args[0].lower())
    if spec is None or "internal" in spec.flags:
        return None
    if spec.subcommands:
        if len(args) < 2:
            return spec
        return spec.subcommands.get(args[1]) or spec.subcommands.get(args[1].lower())
    return spec
