"""The one command table: every command's name, arity, flags, keys and fan-out policy.

Each family module (``strings``, ``keys``, ``server``...) registers its commands here with
:func:`command`, decorating the worker-side operation when there is one.  The router reads the
table to check arity and to route (by key positions and :class:`Fanout`); the worker reads it to
execute; ``COMMAND`` answers from it.  The metadata follows Redis 7's COMMAND INFO: arity is
negative for "at least", key positions are (first, last, step) with a negative last counting
from the end.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shardis import errors
from shardis.errors import ReplyError


class Fanout(enum.Enum):
    """How the router spreads one command over the workers (Redis's request/response policy)."""

    #: Answered by the router alone (PING, HELLO, CLIENT...).
    ROUTER = "router"
    #: All keys live on one worker, or the command has one key: forward it whole.
    SINGLE = "single"
    #: Keys are grouped by worker; the replies are arrays merged back in key order (MGET).
    SPLIT_CONCAT = "split-concat"
    #: Keys are grouped by worker; the integer replies are summed (DEL, EXISTS).
    SPLIT_SUM = "split-sum"
    #: Keys are grouped by worker; every part must answer OK (MSET).
    SPLIT_ALL_OK = "split-all-ok"
    #: Sent to every worker; the integer replies are summed (DBSIZE).
    ALL_SUM = "all-sum"
    #: Sent to every worker; the array replies are concatenated (KEYS).
    ALL_CONCAT = "all-concat"
    #: Sent to every worker; every part must answer OK (FLUSHALL).
    ALL_OK = "all-ok"
    #: A router-side function coordinates the workers (MSETNX, RENAME, SCAN, INFO...).
    COORDINATED = "coordinated"
    #: May wait for data (BLPOP...): see ``shardis.router.blocking``.
    BLOCKING = "blocking"


#: Worker-side operation: pure function of the shard's keyspace and the arguments.
Op = Callable[[Any, list], Any]


@dataclass(eq=False)
class Command:
    """One entry of the table; a container command (CLIENT, OBJECT) has ``subcommands``."""

    name: str
    arity: int
    flags: tuple[str, ...]
    first_key: int = 0
    last_key: int = 0
    step: int = 0
    fanout: Fanout = Fanout.SINGLE
    acl: tuple[str, ...] = ()
    group: str = "generic"
    op: Op | None = None
    subcommands: dict[bytes, Command] = field(default_factory=dict)
    parent: Command | None = None
    #: Redis's command tips, e.g. ``request_policy:multi_shard``, for COMMAND INFO.
    tips: tuple[str, ...] = ()
    #: for blocking commands, the index of the timeout argument (negative: from the end).
    timeout_arg: int = 0
    #: for commands whose keys move (``movablekeys``: LMPOP, SINTERCARD...): finds them.
    key_finder: Callable[[list[bytes]], range] | None = None

    #: The key position when this is a plain single-key command (the router's fast path), else 0.
    single_key: int = 0
    #: A plain command the router answers itself (PING, ECHO...): its fast path skips ``lookup``.
    router_plain: bool = False

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        plain = not self.subcommands and "internal" not in self.flags and self.parent is None
        single = plain and self.fanout is Fanout.SINGLE and self.first_key > 0
        self.single_key = self.first_key if single else 0
        self.router_plain = plain and self.fanout is Fanout.ROUTER

    @property
    def fullname(self) -> str:
        """``get``, or ``client|setname`` for a subcommand: the name Redis's errors use."""
        return f"{self.parent.name}|{self.name}" if self.parent else self.name

    @property
    def has_keys(self) -> bool:
        return self.first_key > 0

    @property
    def is_write(self) -> bool:
        return "write" in self.flags

    def arity_ok(self, argc: int) -> bool:
        arity = self.arity
        return argc == arity if arity > 0 else argc >= -arity

    def key_indexes(self, args: list[bytes]) -> range:
        """Indexes of the key arguments of the command ``args``."""
        if self.key_finder is not None:
            return self.key_finder(args)
        if not self.first_key:
            return range(0)
        argc = len(args)
        last = self.last_key if self.last_key >= 0 else argc + self.last_key
        return range(self.first_key, last + 1, self.step)


def keys_after_numkeys(position: int) -> Callable[[list[bytes]], range]:
    """A key finder for ``... numkeys key [key ...]`` with numkeys at ``position``."""

    def find(args: list[bytes]) -> range:
        try:
            count = int(args[position])
        except (IndexError, ValueError):
            return range(0)
        first = position + 1
        return range(first, min(first + max(count, 0), len(args)))

    return find


#: name (lower- and upper-case bytes) -> Command; see :func:`lookup`.
COMMANDS: dict[bytes, Command] = {}


def command(
    name: str,
    arity: int,
    flags: str = "",
    keys: tuple[int, int, int] = (0, 0, 0),
    fanout: Fanout = Fanout.SINGLE,
    acl: str = "",
    group: str = "generic",
    parent: str | None = None,
    tips: str = "",
    timeout_arg: int = 0,
    key_finder: Callable[[list[bytes]], range] | None = None,
) -> Callable[[Op | None], Op | None]:
    """Register a command; use as a decorator on its worker op, or call with ``(None)``.

    ``acl`` lists ACL categories without the ``@`` (``"read string fast"``).
    """

    def register(op: Op | None) -> Op | None:
        spec = Command(
            name=name,
            arity=arity,
            flags=tuple(flags.split()),
            first_key=keys[0],
            last_key=keys[1],
            step=keys[2],
            fanout=fanout,
            acl=tuple("@" + cat for cat in acl.split()),
            group=group,
            op=op,
            tips=tuple(tips.split()),
            timeout_arg=timeout_arg,
            key_finder=key_finder,
        )
        if parent is None:
            _add(COMMANDS, name, spec)
        else:
            container = COMMANDS[parent.encode()]
            spec.parent = container
            spec.refresh()
            _add(container.subcommands, name, spec)
            container.refresh()
        return op

    return register


def container(
    name: str,
    arity: int = -2,
    flags: str = "",
    acl: str = "slow",
    group: str = "generic",
    tips: str = "",
) -> None:
    """Register a container command (CLIENT, OBJECT...) whose subcommands follow."""
    command(name, arity, flags, acl=acl, group=group, fanout=Fanout.ROUTER, tips=tips)(None)


def _add(table: dict[bytes, Command], name: str, spec: Command) -> None:
    table[name.encode()] = spec
    table[name.upper().encode()] = spec


def lookup(args: list[bytes], allow_internal: bool = False) -> Command:
    """Resolve a request to its (sub)command, checking arity; raise Redis's error otherwise.

    Internal commands (``__dump``...) are only for router -> worker traffic: a client naming
    one gets the unknown-command error.
    """
    name = args[0]
    spec = COMMANDS.get(name) or COMMANDS.get(name.lower())
    if spec is None or ("internal" in spec.flags and not allow_internal):
        raise ReplyError(errors.unknown_command(name, args[1:]))
    if spec.subcommands and len(args) >= 2:
        sub = spec.subcommands.get(args[1]) or spec.subcommands.get(args[1].lower())
        if sub is None:
            raise ReplyError(errors.unknown_subcommand(name, args[1]))
        spec = sub
    if not spec.arity_ok(len(args)):
        raise ReplyError(errors.wrong_arity(spec.fullname))
    return spec


def find(fullname: bytes) -> Command | None:
    """A public command by name (``get``, ``client|setname``), any case; None if unknown."""
    name, _, sub = fullname.lower().partition(b"|")
    spec = COMMANDS.get(name)
    if spec is not None and sub:
        spec = spec.subcommands.get(sub)
    if spec is None or "internal" in spec.flags:
        return None
    return spec


def help_reply(lines: list[str]) -> list:
    """A container's HELP reply: its lines, then Redis's closing HELP entry, as status replies."""
    from shardis.resp import Status

    return [Status(line.encode()) for line in [*lines, "HELP", "    Prints this help."]]


def all_commands() -> list[Command]:
    """Each top-level command once, in registration order."""
    seen: dict[int, Command] = {}
    for spec in COMMANDS.values():
        seen.setdefault(id(spec), spec)
    return list(seen.values())


def load_families() -> None:
    """Import every family module so that all commands are registered."""
    from shardis.commands import (  # noqa: F401
        bitmaps,
        blocking,
        config,
        dump,
        expiry,
        functions,
        geo,
        hashes,
        hyperloglog,
        keys,
        lists,
        memory,
        migrate,
        pubsub,
        scripting,
        server,
        sets,
        sort,
        standalone,
        streams,
        strings,
        tracking,
        transactions,
        zsets,
    )

