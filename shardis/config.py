"""The configuration directives shardis knows: one table, read by the command line, by
CONFIG GET and by CONFIG SET.

Every directive is named as in ``redis.conf`` and is also a flag of ``shardis up`` and
``shardis router`` (``--requirepass s3cret``, ``--maxclients 100``), as redis-server takes
them.  Values are kept parsed in the router's ``config`` dict under the directive's name; CONFIG
GET prints them back as Redis does (``yes``/``no``, plain integers).

Errors follow Redis 7.0's CONFIG SET texts (``argument couldn't be parsed into an integer``,
``argument must be between 0 and 2147483647 inclusive``, ``can't set immutable config``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LLONG_MAX = (1 << 63) - 1
INT_MAX = (1 << 31) - 1

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3,
          "gb": 1024**3}


class ConfigError(ValueError):
    """A value a directive refuses; the text is Redis's reason (after the ``-``)."""


def parse_memory(text: str) -> int:
    """Redis's memtoull: an integer with an optional k/kb/m/mb/g/gb unit (any case)."""
    lowered = text.strip().lower()
    digits = lowered.rstrip("kmgb")
    unit = lowered[len(digits):]
    if unit not in _UNITS or not _is_integer(digits):
        raise ConfigError("argument couldn't be parsed into an integer")
    return int(digits) * _UNITS[unit]


def _is_integer(text: str) -> bool:
    return text.removeprefix("-").isdigit()


def parse_integer(text: str) -> int:
    stripped = text.strip()
    if not _is_integer(stripped):
        raise ConfigError("argument couldn't be parsed into an integer")
    return int(stripped)


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

    def parse(self, text: str) -> Any:
        if self.kind == "bool":
            lowered = text.lower()
            if lowered not in ("yes", "no"):
                raise ConfigError("argument must be 'yes' or 'no'")
            return lowered == "yes"
        if self.kind in ("int", "memory"):
            if self.kind == "memory":
                try:
                    value = parse_memory(text)
                except ConfigError:
                    raise ConfigError("argument must be a memory value") from None
            else:
                value = parse_integer(text)
            if not self.low <= value <= self.high:
                raise ConfigError(
                    f"argument must be between {self.low} and {self.high} inclusive")
            return value
        if self.kind == "enum":
            lowered = text.lower()
            if lowered not in self.choices:
                raise ConfigError("argument(s) must be one of the following: "
                                  + ", ".join(self.choices))
            return lowered
        if self.kind == "custom" and self.codec is not None:
            return self.codec[0](text)
        return text

    def format(self, value: Any) -> str:
        if self.kind == "bool":
            return "yes" if value else "no"
        if self.kind == "custom" and self.codec is not None:
            return self.codec[1](value)
        return str(value)


# client-output-buffer-limit: "<class> <hard> <soft> <soft seconds>" triples ---------------------
OUTPUT_CLASSES = ("normal", "slave", "pubsub")


def parse_output_limits(text: str) -> dict[str, tuple[int, int, int]]:
    """Redis's client-output-buffer-limit: classes not named keep their defaults."""
    words = text.split()
    if not words or len(words) % 4:
        raise ConfigError("Wrong number of arguments in buffer limit configuration.")
    limits = dict(DEFAULT_OUTPUT_LIMITS)
    for index in range(0, len(words), 4):
        name = words[index].lower()
        if name == "replica":
            name = "slave"
        if name not in OUTPUT_CLASSES:
            raise ConfigError("Invalid client class specified in buffer limit configuration.")
        try:
            hard, soft = parse_memory(words[index + 1]), parse_memory(words[index + 2])
            seconds = parse_integer(words[index + 3])
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
def parse_save(text: str) -> list[tuple[int, int]]:
    """Redis's ``save``: pairs of seconds and changes; ``""`` (no pairs) disables the rules."""
    words = text.split()
    if len(words) % 2:
        raise ConfigError("Invalid save parameters")
    rules = []
    for index in range(0, len(words), 2):
        seconds, changes = words[index], words[index + 1]
        if not (_is_integer(seconds) and _is_integer(changes)):
            raise ConfigError("Invalid save parameters")
        if int(seconds) < 1 or int(changes) < 0:
            raise ConfigError("Invalid save parameters")
        rules.append((int(seconds), int(changes)))
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

_D = Directive
DIRECTIVES: dict[str, Directive] = {d.name: d for d in (
    _D("bind", "127.0.0.1", mutable=False, help="address(es) to listen on"),
    _D("port", 6379, "int", 0, 65535, mutable=False, help="TCP port (0: no plain TCP)"),
    _D("dir", ".", mutable=False, protected=True, help="data directory"),
    _D("maxclients", 10000, "int", 1, INT_MAX, help="most clients connected at once"),
    _D("timeout", 0, "int", 0, INT_MAX, help="close clients idle this many seconds (0: never)"),
    _D("proto-max-bulk-len", 512 * 1024 * 1024, "memory", 1024 * 1024, LLONG_MAX,
       help="largest bulk string a client may send"),
    _D("client-query-buffer-limit", 1024 * 1024 * 1024, "memory", 1024 * 1024, LLONG_MAX,
       help="most unparsed input a client may have"),
    _D("client-output-buffer-limit", DEFAULT_OUTPUT_LIMITS, "custom",
       codec=(parse_output_limits, format_output_limits),
       help="'<class> <hard> <soft> <seconds>' for normal and pubsub clients"),
    _D("busy-reply-threshold", 5000, "int", 0, LLONG_MAX, alias="lua-time-limit",
       help="ms a script may run before other commands get BUSY"),
    _D("requirepass", "", help="password of the default user"),
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
    _D("save", DEFAULT_SAVE, "custom", codec=(parse_save, format_save),
       help="snapshot rules: '<seconds> <changes> ...' (BGSAVE after that many seconds if at "
            "least that many changes); '' disables them"),
    _D("worker-restart-timeout", 30, "int", 0, INT_MAX,
       help="seconds commands for a worker that went down wait for it to come back "
            "(with appendonly: then resent, nothing lost) before they fail"),
    _D("worker-restart-buffer", 64 * 1024 * 1024, "memory", 0, LLONG_MAX,
       help="bytes of commands held for a worker that is down; past it they fail"),
    _D("maxmemory-policy", "noeviction", "enum",
       choices=("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
                "allkeys-lru", "allkeys-lfu", "allkeys-random", "noeviction"),
       help="what the workers track per key: LFU counters (OBJECT FREQ) under the *-lfu "
            "policies, access times (OBJECT IDLETIME) otherwise (no eviction: maxmemory 0)"),
    _D("lfu-log-factor", 10, "int", 0, INT_MAX, help="LFU counter's logarithm factor"),
    _D("lfu-decay-time", 1, "int", 0, INT_MAX,
       help="minutes per decrement of an idle key's LFU counter"),
    _D("databases", 16, "int", 1, 16384, mutable=False,
       help="number of databases (SELECT 0 to N-1), on every worker"),
    _D("tls-port", 0, "int", 0, 65535, mutable=False, help="TLS port (0: no TLS)"),
    _D("tls-cert-file", "", help="server certificate (PEM)"),
    _D("tls-key-file", "", help="server private key (PEM)"),
    _D("tls-ca-cert-file", "", help="CA certificates to verify clients (PEM)"),
    _D("tls-auth-clients", "yes", "enum", choices=("yes", "no", "optional"),
       help="require client certificates: yes, no or optional"),
    _D("tls-protocols", "", help="e.g. 'TLSv1.2 TLSv1.3'"),
    _D("tls-ciphers", "", help="OpenSSL cipher list for TLSv1.2 and below"),
)}

#: The directives ``shardis up`` passes on to every worker (``shardis worker --NAME VALUE``).
PERSISTENCE_FLAGS = ("appendonly", "appendfsync", "appenddirname", "dbfilename", "save")
#: Every directive a worker keeps: CONFIG SET forwards a change to every worker
#: (``__config_set``), and a worker ``shardis up`` restarts gets the current values.  Those
#: not in PERSISTENCE_FLAGS reach it in the environment (:data:`WORKER_CONFIG_ENV`).
WORKER_DIRECTIVES = (*PERSISTENCE_FLAGS, "aof-use-rdb-preamble", "auto-aof-rewrite-percentage",
                     "auto-aof-rewrite-min-size", "databases", "maxmemory-policy",
                     "lfu-log-factor", "lfu-decay-time")
WORKER_CONFIG_ENV = "SHARDIS_WORKER_CONFIG"

ALIASES = {d.alias: d.name for d in DIRECTIVES.values() if d.alias}


def defaults() -> dict[str, Any]:
    return {name: d.default for name, d in DIRECTIVES.items()}


def add_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One ``--name`` flag per directive (and alias); values are parsed by :func:`from_args`."""
    for name, directive in DIRECTIVES.items():
        if name in skip:
            continue
        flags = [f"--{name}"] + ([f"--{directive.alias}"] if directive.alias else [])
        parser.add_argument(*flags, dest=f"cfg_{name.replace('-', '_')}", default=None,
                            metavar="VALUE", help=directive.help or argparse.SUPPRESS)


def from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The router's config: defaults, overridden by the flags given; a bad value is a usage
    error with Redis's reason."""
    config = defaults()
    for name, directive in DIRECTIVES.items():
        text = getattr(args, f"cfg_{name.replace('-', '_')}", None)
        if text is None:
            continue
        try:
            config[name] = directive.parse(str(text))
        except ConfigError as exc:
            parser.error(f"--{name} {text}: {exc}")
    return config


def lookup(name: str) -> Directive | None:
    lowered = name.lower()
    return DIRECTIVES.get(ALIASES.get(lowered, lowered))


def render(config: dict[str, Any]) -> dict[str, str]:
    """Every directive (aliases too) as CONFIG GET prints it."""
    out = {}
    for name, directive in DIRECTIVES.items():
        out[name] = directive.format(config.get(name, directive.default))
        if directive.alias:
            out[directive.alias] = out[name]
    return out
