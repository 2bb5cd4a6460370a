"""The configuration directives shardis knows: one table, and ONE parser for the config file,
the command line and CONFIG SET.

Every directive is named as in ``redis.conf``.  ``shardis up [FILE] [--directive value ...]``
reads them as redis-server does: the file's lines, then the flags turned into lines of their
own (``--save 900 1`` -> ``save "900" "1"``) appended after it, so a flag overrides the file;
each line is split with ``sdssplitargs``'s rules (quotes, ``\\xHH`` escapes, ``#`` comments),
``include`` pulls in other files, and a bad line stops the process with Redis's "FATAL CONFIG
FILE ERROR" block naming the line (:class:`ConfigFileError`).  CONFIG SET parses values with
the same :meth:`Directive.parse`, so its reasons are the same texts
(``argument couldn't be parsed into an integer``, ``argument must be between 0 and 2147483647
inclusive``); CONFIG REWRITE writes the file back keeping its comments and order as Redis's
``rewriteConfig`` (:func:`rewrite_file`).

Values are kept parsed in the router's ``config`` dict under the directive's name; CONFIG GET
prints them back as Redis does (``yes``/``no``, plain integers).  Modules that own a directive
may add it with :func:`register` instead of editing the table here.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shardis.cpus import usable_cpus

LLONG_MAX = (1 << 63) - 1
ULLONG_MAX = (1 << 64) - 1
INT_MAX = (1 << 31) - 1
UINT_MAX = (1 << 32) - 1

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3,
          "gb": 1024**3}


class ConfigError(ValueError):
    """A value a directive refuses; the text is Redis's reason (after the ``-``)."""


def parse_memory(text: str) -> int:
    """Redis's ``memtoull``: leading digits (none is 0) then nothing or a unit, b, k, kb, m,
    mb, g or gb in any case; no sign, no spaces.  It reads a C string: a NUL ends it."""
    text = _c_string(text)
    digits = re.match(r"[0-9]*", text).group()  # type: ignore[union-attr]
    unit = text[len(digits):].lower()
    if unit not in _UNITS:
        raise ConfigError("argument couldn't be parsed into an integer")
    # strtoull saturates, the unit's multiplication wraps: C's unsigned long long
    return min(int(digits or "0"), ULLONG_MAX) * _UNITS[unit] % (ULLONG_MAX + 1)


def _strtoll(text: str) -> int:
    """``strtoll`` with nothing left over: spaces and a sign allowed before the digits."""
    if not re.fullmatch(r"\s*[+-]?[0-9]+", text):
        raise ConfigError("argument couldn't be parsed into an integer")
    return int(text)


def _c_string(text: str) -> str:
    """What C code that reads the value as a NUL-terminated string sees of it (memtoull,
    yesnotoi, strcasecmp against an enum's names)."""
    return text.split("\0", 1)[0]


def _parse_yes_no(text: str) -> bool:
    lowered = _c_string(text).lower()
    if lowered not in ("yes", "no"):
        raise ConfigError("argument must be 'yes' or 'no'")
    return lowered == "yes"


_STRING2LL = re.compile(r"0|-?[1-9][0-9]*")


def parse_integer(text: str) -> int:
    """Redis's ``string2ll``: no spaces, no sign but ``-``, no leading zeros, a long long."""
    if not _STRING2LL.fullmatch(text) or not -LLONG_MAX - 1 <= int(text) <= LLONG_MAX:
        raise ConfigError("argument couldn't be parsed into an integer")
    return int(text)


@dataclass(frozen=True)
class Directive:
    """One directive: how to parse it, how to print it, its bounds, whether it may change."""

    name: str
    default: Any
    kind: str = "string"  # string | bool | int | memory | enum | custom
    low: int = 0
    high: int = LLONG_MAX
    choices: tuple[str, ...] = ()
    mutable: bool = True
    #: Redis's PROTECTED_CONFIG: CONFIG SET refuses it unless ``enable-protected-configs``
    #: allows it (``yes``, or ``local`` for a client on a loopback address or unix socket).
    protected: bool = False
    alias: str | None = None
    #: for ``custom`` directives: (text -> value, value -> text).
    codec: tuple[Callable[[str], Any], Callable[[Any], str]] | None = None
    help: str = ""
    #: Redis's MULTI_ARG_CONFIG: a file line may give several arguments (``save 900 1 300
    #: 10``), joined by spaces into the one text :meth:`parse` reads.
    multi: bool = False
    #: the ``custom`` parser also takes the current value (a value that changes only in part:
    #: client-output-buffer-limit's classes not named keep theirs).
    partial: bool = False
    #: CONFIG REWRITE's lines for a value: ``fn(directive, value) -> [(line, force), ...]``
    #: (default: :meth:`rewrite_lines`'s rules per kind).
    rewrite: Callable[[Directive, Any], list[tuple[str, bool]]] | None = None
    #: how a worker process applies the value by itself (at start and on CONFIG SET, which
    #: then reaches every worker): ``loglevel``, and directives modules register.
    worker_apply: Callable[[Any], None] | None = None

    def parse(self, text: str, current: Any = None) -> Any:
        """``text`` (a config line's arguments, a flag's or CONFIG SET's value) as a value;
        ConfigError with Redis's reason.  ``current``: the value it replaces."""
        if self.kind == "bool":
            return _parse_yes_no(text)
        if self.kind in ("int", "memory"):
            return self._parse_number(text)
        if self.kind == "enum":
            return self._parse_enum(text)
        if self.kind == "custom" and self.codec is not None:
            if self.partial:
                return self.codec[0](text, current)  # type: ignore[call-arg]
            return self.codec[0](text)
        return text

    def _parse_number(self, text: str) -> int:
        """``numericParseString`` then the bounds check, with Redis's texts."""
        if self.kind == "memory":
            try:
                value = parse_memory(text)
            except ConfigError:
                raise ConfigError("argument must be a memory value") from None
        else:
            value = parse_integer(text)
        if not self.low <= value <= self.high:
            raise ConfigError(f"argument must be between {self.low} and {self.high} inclusive")
        return value

    def _parse_enum(self, text: str) -> str:
        lowered = _c_string(text).lower()
        if lowered not in self.choices:
            raise ConfigError("argument(s) must be one of the following: "
                              + ", ".join(self.choices))
        return lowered

    def format(self, value: Any) -> str:
        if self.kind == "bool":
            return "yes" if value else "no"
        if self.kind == "custom" and self.codec is not None:
            return self.codec[1](value)
        return str(value)

    def parse_words(self, words: list[str], current: Any = None) -> Any:
        """A config-file line's arguments (after the name), checked as
        ``loadServerConfigFromString``: one argument, or any number for a multi-argument
        directive (one argument with spaces is split again: ``--save "900 1"``)."""
        if not self.multi:
            if len(words) != 1:
                raise ConfigError("wrong number of arguments")
            return self.parse(words[0], current)
        if len(words) == 1 and words[0]:
            words = split_args(words[0])
        return self.parse(" ".join(words), current)

    def rewrite_lines(self, value: Any) -> list[tuple[str, bool]]:
        """CONFIG REWRITE's line(s) for ``value``, each with whether it must be written even
        where the file did not mention the directive (Redis: when it is not the default)."""
        if self.rewrite is not None:
            return self.rewrite(self, value)
        force = value != self.default
        if self.kind == "memory":
            return [(f"{self.name} {format_memory(value)}", force)]
        if self.kind in ("bool", "int", "enum"):
            return [(f"{self.name} {self.format(value)}", force)]
        return [(f"{self.name} {quote(self.format(value))}", force)]


# client-output-buffer-limit: "<class> <hard> <soft> <soft seconds>" triples ---------------------
OUTPUT_CLASSES = ("normal", "slave", "pubsub")


def parse_output_limits(text: str, current: dict[str, tuple[int, int, int]] | None = None
                        ) -> dict[str, tuple[int, int, int]]:
    """Redis's client-output-buffer-limit: classes not named keep their ``current`` limits
    (default: Redis's defaults)."""
    words = text.split(" ")  # as CONFIG SET splits a multi-argument value: "a  b" has 3
    if not words or len(words) % 4:
        raise ConfigError("Wrong number of arguments in buffer limit configuration.")
    limits = dict(current or DEFAULT_OUTPUT_LIMITS)
    for index in range(0, len(words), 4):
        name = words[index].lower()
        if name == "replica":
            name = "slave"
        if name not in OUTPUT_CLASSES:
            raise ConfigError("Invalid client class specified in buffer limit configuration.")
        try:
            hard, soft = parse_memory(words[index + 1]), parse_memory(words[index + 2])
            seconds = _strtoll(words[index + 3])
        except ConfigError:
            raise ConfigError("Error in hard, soft or soft_seconds setting in buffer limit "
                              "configuration.") from None
        if hard < 0 or soft < 0 or seconds < 0:
            raise ConfigError("Error in hard, soft or soft_seconds setting in buffer limit "
                              "configuration.")
        limits[name] = (hard, soft, seconds)
    return limits


def format_output_limits(limits: dict[str, tuple[int, int, int]]) -> str:
    return " ".join(f"{name} {' '.join(map(str, limits[name]))}" for name in OUTPUT_CLASSES)


# save: "<seconds> <changes>" pairs ------------------------------------------------------------
#: The most databases a command's code can name (``shardis.protocol.MAX_DATABASES``).
MAX_DATABASES = 1 << 14


def parse_databases(text: str) -> int:
    """``databases``: Redis's range (1 to INT_MAX), within what shardis can address."""
    value = parse_integer(text)
    if not 1 <= value <= INT_MAX:
        raise ConfigError(f"argument must be between 1 and {INT_MAX} inclusive")
    if value > MAX_DATABASES:
        raise ConfigError(f"shardis supports up to {MAX_DATABASES} databases")
    return value


def parse_save(text: str) -> list[tuple[int, int]]:
    """Redis's ``save``: pairs of seconds and changes (``strtoll`` numbers), split on single
    spaces as CONFIG SET splits them; ``""`` (no pairs) disables the rules."""
    words = text.split(" ") if text else []
    if len(words) % 2:
        raise ConfigError("Invalid save parameters")
    rules = []
    for index in range(0, len(words), 2):
        try:
            seconds, changes = _strtoll(words[index]), _strtoll(words[index + 1])
        except ConfigError:
            raise ConfigError("Invalid save parameters") from None
        if seconds < 1 or changes < 0:
            raise ConfigError("Invalid save parameters")
        rules.append((seconds, changes))
    return rules


def parse_dbfilename(text: str) -> str:
    """Redis's ``isValidDBfilename``: a file name, not a path."""
    if "/" in text or "\\" in text:
        raise ConfigError("dbfilename can't be a path, just a filename")
    return text


def format_save(rules: list[tuple[int, int]]) -> str:
    return " ".join(f"{seconds} {changes}" for seconds, changes in rules)


DEFAULT_SAVE = [(3600, 1), (300, 100), (60, 10000)]

DEFAULT_OUTPUT_LIMITS = {
    "normal": (0, 0, 0),
    "slave": (268435456, 67108864, 60),
    "pubsub": (33554432, 8388608, 60),
}


# Quoting and splitting as Redis (sdscatrepr, sdssplitargs) ---------------------------------
def split_args(line: str) -> list[str]:
    """``sdssplitargs`` (``shardis.resp.split_inline``): raises ConfigError on unbalanced
    quotes, with the text Redis's config loader prints."""
    from shardis.resp import ProtocolError, split_inline

    try:
        words = split_inline(line.encode("utf-8", "surrogateescape"))
    except ProtocolError:
        raise ConfigError("Unbalanced quotes in configuration line") from None
    return [word.decode("utf-8", "surrogateescape") for word in words]


_REPR_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\a": "\\a",
                 "\b": "\\b"}


def quote(text: str) -> str:
    """``sdscatrepr``: always double-quoted, non-printable bytes as ``\\xHH``; what Redis
    writes for string values (and for flags turned into config lines)."""
    out = ['"']
    for byte in text.encode("utf-8", "surrogateescape"):
        char = chr(byte)
        if char in _REPR_ESCAPES:
            out.append(_REPR_ESCAPES[char])
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out) + '"'


def format_memory(value: int) -> str:
    """``rewriteConfigFormatMemory``: the largest of gb, mb, kb that divides the value."""
    for unit, size in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
        if value and value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


# The special directives' CONFIG REWRITE lines, as Redis's rewriteConfig*Option --------------
def _rewrite_save(directive: Directive, rules: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    if not rules:
        return [('save ""', True)]
    return [(f"save {seconds} {changes}", True) for seconds, changes in rules]


def _rewrite_output_limits(directive: Directive,
                           limits: dict[str, tuple[int, int, int]]) -> list[tuple[str, bool]]:
    lines = []
    for name in OUTPUT_CLASSES:
        hard, soft, seconds = limits[name]
        shown = "replica" if name == "slave" else name
        lines.append((f"{directive.name} {shown} {format_memory(hard)} {format_memory(soft)} "
                      f"{seconds}", limits[name] != DEFAULT_OUTPUT_LIMITS[name]))
    return lines


def _rewrite_always(directive: Directive, value: Any) -> list[tuple[str, bool]]:
    """``dir``: always written (Redis writes its working directory)."""
    return [(f"{directive.name} {quote(directive.format(value))}", True)]


def _rewrite_unless_empty(directive: Directive, value: Any) -> list[tuple[str, bool]]:
    """String configs whose empty value is NULL (Redis's EMPTY_STRING_IS_NULL: pidfile,
    requirepass, the TLS files...): not written at all then (a line for it is removed)."""
    if not value:
        return []
    return [(f"{directive.name} {quote(value)}", True)]


BIND_MAX = 16


def parse_bind(text: str) -> str:
    """Redis's ``bind``: up to 16 addresses (``-`` before one: optional, ``*``: every IPv4
    address, ``::*``: every IPv6 one); ``""``: none."""
    words = [word for word in text.split(" ") if word]
    if len(words) > BIND_MAX:
        raise ConfigError("Too many bind addresses specified.")
    return " ".join(words)


def _address_available(address: str) -> bool:
    """Whether this host has ``address`` (a probe socket can bind it on some port)."""
    try:
        infos = socket.getaddrinfo(address, 0, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError:
        return False
    for family, kind, proto, _, where in infos:
        with contextlib.suppress(OSError), socket.socket(family, kind, proto) as probe:
            probe.bind(where)
            return True
    return False


def listen_hosts(bind: str, available: Callable[[str], bool] = _address_available) -> list[str]:
    """The hosts to listen on for ``bind``, as Redis reads it: ``*`` is 0.0.0.0, ``::*`` is
    ::, an optional address (``-::1``) this host lacks is skipped."""
    hosts = []
    for word in bind.split():
        optional = word.startswith("-")
        address = {"*": "0.0.0.0", "::*": "::"}.get(word.lstrip("-"), word.lstrip("-"))
        if optional and not available(address):
            continue
        hosts.append(address)
    return hosts


def _rewrite_bind(directive: Directive, value: str) -> list[tuple[str, bool]]:
    """``rewriteConfigBindOption``: nothing for the default, the addresses unquoted else."""
    if value == directive.default:
        return []
    return [(f"bind {value or chr(34) * 2}", True)]


# notify-keyspace-events: Redis's class characters ------------------------------------------
def parse_notify(text: str) -> int:
    from shardis.notify import parse_flags

    flags = parse_flags(text.encode("latin-1", "replace"))
    if flags is None:
        raise ConfigError("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
    return flags


def format_notify(flags: int) -> str:
    from shardis.notify import format_flags

    return format_flags(flags).decode("latin-1")


def _rewrite_notify(directive: Directive, flags: int) -> list[tuple[str, bool]]:
    return [(f"{directive.name} {quote(format_notify(flags))}", flags != 0)]


def parse_cluster_enabled(text: str) -> bool:
    """shardis is one server, never a Redis Cluster node: ``no`` only."""
    if _parse_yes_no(text):
        raise ConfigError("shardis does not run in Redis Cluster mode")
    return False


LOGLEVELS = ("debug", "verbose", "notice", "warning")


def _set_log_level(level: str) -> None:
    from shardis.logs import set_level

    set_level(level)


def _fixed(name: str, value: int, alias: str | None = None) -> Directive:
    """A parameter shardis honours at one value only (the encoding thresholds its families
    use, Redis's defaults): CONFIG GET shows it, a file may repeat it, nothing changes it."""
    def parse(text: str) -> int:
        number = parse_integer(text)
        if number != value:
            raise ConfigError(f"shardis keeps {name} at {value}")
        return number
    return Directive(name, value, "custom", mutable=False, alias=alias, codec=(parse, str),
                     help=argparse.SUPPRESS,
                     rewrite=lambda d, v: [(f"{d.name} {v}", False)])


_D = Directive
DIRECTIVES: dict[str, Directive] = {d.name: d for d in (
    _D("bind", "127.0.0.1", "custom", mutable=False, multi=True, rewrite=_rewrite_bind,
       codec=(parse_bind, str), help="address(es) to listen on (-ADDRESS: only if this "
                                    "host has it; * every IPv4 one, ::* every IPv6 one)"),
    _D("port", 6379, "int", 0, 65535, mutable=False, help="TCP port (0: no plain TCP)"),
    _D("dir", ".", mutable=False, protected=True, rewrite=_rewrite_always,
       help="data directory (each worker's files in DIR/worker-INDEX/)"),
    _D("workers", usable_cpus(), "int", 1, 1024, mutable=False,
       help="number of worker processes (its default is the number of CPUs this process "
            "may use: affinity mask and cgroup CPU quota)"),
    _D("pidfile", "", mutable=False, rewrite=_rewrite_unless_empty,
       help="file to write the server's pid to (removed at exit)"),
    _D("loglevel", "notice", "enum", choices=LOGLEVELS, worker_apply=_set_log_level,
       help="what the logs say: debug, verbose, notice or warning"),
    _D("logfile", "", mutable=False,
       help="file the logs go to, appended, reopened on SIGHUP (empty: standard error)"),
    _D("log-format", "text", "enum", choices=("text", "json"), mutable=False,
       help="log lines as logfmt text (key=value) or as JSON objects"),
    _D("metrics-port", 0, "int", 0, 65535, mutable=False,
       help="port of the Prometheus /metrics endpoint (0: none)"),
    _D("cluster-enabled", False, "custom", mutable=False, codec=(
        parse_cluster_enabled, lambda value: "yes" if value else "no"),
       help=argparse.SUPPRESS),
    _fixed("hash-max-listpack-entries", 512, "hash-max-ziplist-entries"),
    _fixed("hash-max-listpack-value", 64, "hash-max-ziplist-value"),
    _fixed("zset-max-listpack-entries", 128, "zset-max-ziplist-entries"),
    _fixed("zset-max-listpack-value", 64, "zset-max-ziplist-value"),
    _fixed("set-max-intset-entries", 512),
    _fixed("list-max-listpack-size", -2, "list-max-ziplist-size"),
    _D("maxclients", 10000, "int", 1, UINT_MAX, help="most clients connected at once"),
    _D("timeout", 0, "int", 0, INT_MAX, help="close clients idle this many seconds (0: never)"),
    _D("proto-max-bulk-len", 512 * 1024 * 1024, "memory", 1024 * 1024, LLONG_MAX,
       help="largest bulk string a client may send"),
    _D("client-query-buffer-limit", 1024 * 1024 * 1024, "memory", 1024 * 1024, LLONG_MAX,
       help="most unparsed input a client may have"),
    _D("client-output-buffer-limit", DEFAULT_OUTPUT_LIMITS, "custom", multi=True, partial=True,
       codec=(parse_output_limits, format_output_limits), rewrite=_rewrite_output_limits,
       help="'<class> <hard> <soft> <seconds>' for normal and pubsub clients"),
    _D("busy-reply-threshold", 5000, "int", 0, LLONG_MAX, alias="lua-time-limit",
       help="ms a script may run before other commands get BUSY"),
    _D("notify-keyspace-events", 0, "custom", codec=(parse_notify, format_notify),
       rewrite=_rewrite_notify, help="keyspace notifications: Redis's class characters"),
    _D("requirepass", "", rewrite=_rewrite_unless_empty, help="password of the default user"),
    _D("aclfile", "", mutable=False, help="file of ACL users"),
    _D("protected-mode", True, "bool",
       help="refuse non-loopback clients when no password is set"),
    _D("enable-protected-configs", "no", "enum", choices=("no", "yes", "local"),
       mutable=False, help="whether CONFIG SET may change dbfilename: no, yes, or local "
                           "(clients on loopback or a unix socket)"),
    _D("enable-debug-command", "no", "enum", choices=("no", "yes", "local"), mutable=False,
       help="whether DEBUG (DEBUG RELOAD) may run: no, yes, or local (loopback clients)"),
    _D("appendonly", False, "bool",
       help="log every write to an append-only file per worker, reloaded at restart"),
    _D("appendfsync", "everysec", "enum", choices=("everysec", "always", "no"),
       help="when the AOF is fsynced: always (before each reply), everysec or no (the OS)"),
    _D("appenddirname", "appendonlydir", mutable=False,
       help="folder of each worker's AOF files, in DIR/worker-INDEX/"),
    _D("aof-use-rdb-preamble", True, "bool",
       help="an AOF rewrite writes its base as RDB (yes) or as RESP commands (no)"),
    _D("auto-aof-rewrite-percentage", 100, "int", 0, INT_MAX,
       help="rewrite a worker's AOF when it grew this % over its size after the last "
            "rewrite (0: never)"),
    _D("auto-aof-rewrite-min-size", 64 * 1024 * 1024, "memory", 0, LLONG_MAX,
       help="no automatic AOF rewrite below this size"),
    _D("dbfilename", "dump.rdb", protected=True, codec=(parse_dbfilename, str),
       kind="custom", help="name of each worker's RDB snapshot, in DIR/worker-INDEX/"),
    _D("save", DEFAULT_SAVE, "custom", codec=(parse_save, format_save), multi=True,
       rewrite=_rewrite_save,
       help="snapshot rules: '<seconds> <changes> ...' (BGSAVE after that many seconds if at "
            "least that many changes); '' disables them"),
    _D("worker-restart-timeout", 30, "int", 0, INT_MAX,
       help="seconds commands for a worker that went down wait for it to come back "
            "(with appendonly: then resent, nothing lost) before they fail"),
    _D("worker-restart-buffer", 64 * 1024 * 1024, "memory", 0, LLONG_MAX,
       help="bytes of commands held for a worker that is down; past it they fail"),
    _D("maxmemory", 0, "memory", 0, ULLONG_MAX,
       help="memory limit of the whole server (0: none), divided equally among the workers; "
            "past it, keys are evicted by maxmemory-policy or writes refused with -OOM"),
    _D("maxmemory-policy", "noeviction", "enum",
       choices=("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
                "allkeys-lru", "allkeys-lfu", "allkeys-random", "noeviction"),
       help="which keys go when a worker is over its share of maxmemory (noeviction: none, "
            "writes are refused); *-lfu policies keep LFU counters (OBJECT FREQ)"),
    _D("maxmemory-samples", 5, "int", 1, INT_MAX,
       help="keys sampled per database for each eviction (more: closer to true LRU/LFU)"),
    _D("maxmemory-eviction-tenacity", 10, "int", 0, 100,
       help="how long one round of evictions may take (10: 500 us; 100: no limit)"),
    _D("lfu-log-factor", 10, "int", 0, INT_MAX, help="LFU counter's logarithm factor"),
    _D("lfu-decay-time", 1, "int", 0, INT_MAX,
       help="minutes per decrement of an idle key's LFU counter"),
    _D("databases", 16, "custom", codec=(lambda text: parse_databases(text), str),
       mutable=False, help="number of databases (SELECT 0 to N-1), on every worker"),
    _D("tls-port", 0, "int", 0, 65535, mutable=False, help="TLS port (0: no TLS)"),
    _D("tls-cert-file", "", rewrite=_rewrite_unless_empty, help="server certificate (PEM)"),
    _D("tls-key-file", "", rewrite=_rewrite_unless_empty, help="server private key (PEM)"),
    _D("tls-ca-cert-file", "", rewrite=_rewrite_unless_empty, help="CA certificates to verify clients (PEM)"),
    _D("tls-auth-clients", "yes", "enum", choices=("no", "yes", "optional"),
       help="require client certificates: yes, no or optional"),
    _D("tls-protocols", "", rewrite=_rewrite_unless_empty, help="e.g. 'TLSv1.2 TLSv1.3'"),
    _D("tls-ciphers", "", rewrite=_rewrite_unless_empty, help="OpenSSL cipher list for TLSv1.2 and below"),
)}

#: The directives a worker keeps: ``shardis up`` starts each worker with their values as flags
#: (``shardis worker --save "3600 1" ...``), the same flags a worker started by hand takes;
#: CONFIG SET forwards a change of one to every worker (``__config_set``), and a worker
#: restarted later is started with the current value.
PERSISTENCE_FLAGS = ("appendonly", "appendfsync", "appenddirname", "dbfilename", "save")
WORKER_DIRECTIVES = (*PERSISTENCE_FLAGS, "aof-use-rdb-preamble", "auto-aof-rewrite-percentage",
                     "auto-aof-rewrite-min-size", "databases", "maxmemory-policy",
                     "maxmemory-samples", "maxmemory-eviction-tenacity", "lfu-log-factor",
                     "lfu-decay-time")
#: Directives every process applies to itself (its logs); CONFIG SET of ``loglevel`` reaches
#: the workers too.
LOG_DIRECTIVES = ("loglevel", "logfile", "log-format")


def forwarded() -> list[str]:
    """The directives a CONFIG SET of which every worker applies too (``__config_set``)."""
    return [*WORKER_DIRECTIVES,
            *(name for name, d in DIRECTIVES.items() if d.worker_apply is not None)]

ALIASES = {d.alias: d.name for d in DIRECTIVES.values() if d.alias}


def register(directive: Directive) -> Directive:
    """Add a directive from the module that honours it (file, flags, CONFIG GET/SET/REWRITE
    then know it like any other; with ``worker_apply``, ``shardis up`` gives workers its
    value as a flag, each applies it at start, and CONFIG SET reaches them all)."""
    DIRECTIVES[directive.name] = directive
    if directive.alias:
        ALIASES[directive.alias] = directive.name
    return directive


def defaults() -> dict[str, Any]:
    return {name: d.default for name, d in DIRECTIVES.items()}


def lookup(name: str) -> Directive | None:
    lowered = name.lower()
    return DIRECTIVES.get(ALIASES.get(lowered, lowered))


def names() -> list[str]:
    """Every name CONFIG GET matches patterns against: directives and their aliases."""
    out = []
    for name, directive in DIRECTIVES.items():
        out.append(name)
        if directive.alias:
            out.append(directive.alias)
    return out


def render(config: dict[str, Any]) -> dict[str, str]:
    """Every directive (aliases too) as CONFIG GET prints it."""
    out = {}
    for name, directive in DIRECTIVES.items():
        out[name] = directive.format(config.get(name, directive.default))
        if directive.alias:
            out[directive.alias] = out[name]
    return out


#: The router's config dict keeps the config file's absolute path under this key (None: the
#: server runs without one); CONFIG REWRITE writes it.
CONFIG_FILE = "__config_file__"
#: Set in the router's config dict by ``shardis up``, whose supervisor restarts a worker that
#: dies at once: commands then wait for it (a pause); a router run alone fails them fast.
SUPERVISED = "__supervised__"


# Loading: the config file and the flags --------------------------------------------------------
REDIS_CONFIG_VERSION = "7.0.15"
#: ``loadServerConfigFromString``'s deprecated directives: accepted and ignored.
DEPRECATED = ("list-max-ziplist-entries", "list-max-ziplist-value", "lua-replicate-commands")


class ConfigFileError(Exception):
    """A config line (file or flag) Redis's loader would refuse: :meth:`report` is the block
    redis-server prints before exiting with status 1."""

    def __init__(self, reason: str, line_number: int | None = None, line: str = "",
                 block: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line_number = line_number
        self.line = line
        #: False for a file that cannot be read: Redis logs that one line, no block.
        self.block = block

    def report(self) -> str:
        if not self.block:
            return f"{self.reason}\n"
        text = f"\n*** FATAL CONFIG FILE ERROR (Redis {REDIS_CONFIG_VERSION}) ***\n"
        if self.line_number is not None:
            text += (f"Reading the configuration file, at line {self.line_number}\n"
                     f">>> '{self.line}'\n")
        return text + f"{self.reason}\n"


def flags_to_lines(argv: list[str]) -> str:
    """redis-server's ``main``: ``--name`` starts a config line, each following argument is
    appended quoted (``--save 900 1`` -> ``save "900" "1"``); a bare ``--save`` is ``save
    ""``."""
    lines: list[str] = []
    awaiting_value = False
    for index, arg in enumerate(argv):
        if arg.startswith("--") and not awaiting_value:
            lines.append(arg[2:] + " ")
            awaiting_value = len(arg.split()) == 1
            last = index == len(argv) - 1
            if awaiting_value and arg.lower() == "--save" and (
                    last or argv[index + 1].startswith("--")):
                lines[-1] += '""'
                awaiting_value = False
        elif lines:
            lines[-1] += quote(arg) + " "
            awaiting_value = False
        else:
            raise ConfigFileError(f"Invalid argument '{arg}': options start with --")
    return "\n".join(lines)


def read_file(path: str) -> str:
    """A config file's text, or a ConfigFileError as Redis's fatal "can't open config file"
    (a pattern with ``*?[`` reads every matching file, none being fine, as ``include``)."""
    if any(char in path for char in "*?["):
        return "".join(read_file(match) for match in sorted(glob.glob(path)))
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigFileError(f"Fatal error, can't open config file '{path}': "
                              f"{exc.strerror}", block=False) from None


#: How deep ``include`` may nest (Redis has no limit, and an include loop overflows its stack).
INCLUDE_DEPTH = 32


def load_text(text: str, values: dict[str, Any], seen: set[str] | None = None,
              depth: int = 0) -> set[str]:
    """Apply every line of ``text`` to ``values`` (directive name -> parsed value), as
    ``loadServerConfigFromString``: the first bad line raises ConfigFileError.  Returns the
    directives the text set (``seen``, with those of included files)."""
    seen = set() if seen is None else seen
    if depth > INCLUDE_DEPTH:
        raise ConfigFileError(f"more than {INCLUDE_DEPTH} nested include directives (does a "
                              "file include itself?)", block=False)
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(" \t\r\n")
        if not line or line.startswith("#"):
            continue
        try:
            _load_line(line, values, seen, depth)
        except ConfigFileError as exc:
            raise exc from None  # an included file's: its own line numbers
        except ConfigError as exc:
            raise ConfigFileError(str(exc), number, line) from None
    return seen


def _load_line(line: str, values: dict[str, Any], seen: set[str], depth: int) -> None:
    words = split_args(line)
    if not words:
        return
    name = words[0].lower()
    directive = lookup(name)
    if directive is not None:
        value = directive.parse_words(words[1:], values.get(directive.name))
        if directive.name == "save" and "save" in seen and value:
            value = values["save"] + value  # in a file, save lines add up ('save ""' resets)
        values[directive.name] = value
        seen.add(directive.name)
    elif name in DEPRECATED and len(words) == 2:
        return
    elif name == "include" and len(words) == 2:
        load_text(read_file(words[1]), values, seen, depth + 1)
    else:
        raise ConfigError("Bad directive or wrong number of arguments")


def load(path: str | None, flags: list[str]) -> tuple[dict[str, Any], set[str]]:
    """The config a process starts with: defaults, the file's lines, then the flags' (as
    redis-server's ``loadServerConfig``: the flags' lines follow the file's, after a newline,
    so line numbers in errors count through both).  Returns the values and the directives
    given (file or flags)."""
    values = defaults()
    text = read_file(path) if path else ""
    options = flags_to_lines(flags)
    if options:
        text += "\n" + options
    seen = load_text(text, values)
    logfile = values.get("logfile")
    if logfile:
        try:
            with open(logfile, "a"):
                pass
        except OSError as exc:
            raise ConfigFileError(f"Can't open the log file: {exc.strerror}") from None
    return values, seen


def worker_flags(values: dict[str, Any]) -> list[str]:
    """The flags that give a worker the directives it keeps and its log settings
    (``shardis worker --save "3600 1" --loglevel notice ...``)."""
    flags = []
    for name in dict.fromkeys((*forwarded(), *LOG_DIRECTIVES)):
        directive = DIRECTIVES[name]
        flags += [f"--{name}", directive.format(values.get(name, directive.default))]
    return flags


# CONFIG GET and CONFIG SET ---------------------------------------------------------------------
def has_glob(pattern: str) -> bool:
    return any(char in pattern for char in "[*?")


class SetError(Exception):
    """CONFIG SET's refusal: the whole reply text (``ERR ...``)."""


def _failed(name: str, reason: str) -> SetError:
    return SetError(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")


def check_set(pairs: list[tuple[str, str]], protected_ok: bool,
              current: dict[str, Any] | None = None) -> dict[str, Any]:
    """CONFIG SET's pairs checked as ``configSetCommand`` (nothing is applied unless every
    pair is valid): first the names, in argument order, the first problem winning (unknown,
    protected, immutable, duplicate), then the values.  Returns directive name -> value."""
    found: list[Directive] = []
    entries: set[str] = set()  # Redis keeps an alias as an entry of its own: not a duplicate
    for given, _ in pairs:
        directive = lookup(given)
        if directive is None:
            raise SetError(f"ERR Unknown option or number of arguments for CONFIG SET - "
                           f"'{given}'")
        if directive.protected and not protected_ok:
            raise _failed(given, "can't set protected config")
        if not directive.mutable:
            raise _failed(given, "can't set immutable config")
        entry = given.lower() if given.lower() in ALIASES else directive.name
        if entry in entries:
            raise _failed(given, "duplicate parameter")
        entries.add(entry)
        found.append(directive)
    changes: dict[str, Any] = {}
    for directive, (given, text) in zip(found, pairs):
        try:
            base = changes.get(directive.name, (current or {}).get(directive.name))
            changes[directive.name] = directive.parse(text, base)
        except ConfigError as exc:
            shown = given.lower() if given.lower() in ALIASES else directive.name
            raise _failed(shown, str(exc)) from None
    return changes


# CONFIG REWRITE ------------------------------------------------------------------------------
SIGNATURE = "# Generated by CONFIG REWRITE"


#: Lines ``rewriteConfigReadOldFile`` keeps as they are though no directive has their name.
_FILE_ONLY = ("include", "rename-command", "user", "loadmodule", "sentinel")


def rewrite_text(old: str, values: dict[str, Any]) -> str:
    """``rewriteConfig``: the old file's lines with each directive's current value written
    over its first line (later lines of it blanked), directives the file lacks appended after
    ``# Generated by CONFIG REWRITE`` when not at their default, lines of unknown directives
    commented ``# ??? ``, and runs of empty lines collapsed."""
    lines, where, signed = _read_old(old)
    for name, directive in DIRECTIVES.items():
        for text, force in directive.rewrite_lines(values.get(name, directive.default)):
            spots = where.get(name)
            if spots:
                lines[spots.pop(0)] = text
            elif force:
                if not signed:
                    lines.append(SIGNATURE)
                    signed = True
                lines.append(text)
    for name in DIRECTIVES:  # lines of a directive it rewrote fewer times: blanked
        for spot in where.get(name, []):
            lines[spot] = ""
    return _collapse(lines)


def _read_old(old: str) -> tuple[list[str], dict[str, list[int]], bool]:
    """The old file's lines (trimmed), where each directive is (aliases under the
    directive's name), and whether the signature is there already."""
    lines: list[str] = []
    where: dict[str, list[int]] = {}
    signed = False
    for raw in old.split("\n") if old else []:
        line = raw.strip("\r\n\t ")
        if not line or line.startswith("#"):
            signed = signed or line == SIGNATURE
            lines.append(line)
            continue
        try:
            words = split_args(line)
        except ConfigError:
            words = []
        name = words[0].lower() if words else ""
        directive = lookup(name)
        if directive is None and name not in _FILE_ONLY:
            lines.append("# ??? " + line)
            continue
        where.setdefault(directive.name if directive else name, []).append(len(lines))
        lines.append(line)
    return lines, where, signed


def _collapse(lines: list[str]) -> str:
    out, empty = [], False
    for line in lines:
        if not line and empty:
            continue
        empty = not line
        out.append(line + "\n")
    return "".join(out)


def rewrite_file(path: str, values: dict[str, Any]) -> None:
    """CONFIG REWRITE of ``path``, replaced atomically (a temporary file renamed over it,
    fsynced, mode 0644 less the umask) as ``rewriteConfigOverwriteFile``; OSError on failure."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            old = handle.read()
    except FileNotFoundError:
        old = ""
    content = rewrite_text(old, values)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o644 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
