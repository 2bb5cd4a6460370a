"""ACL users as in Redis 7.0: the user model, the rule language of ACL SETUSER and ACL files,
the permission check, and the text forms (ACL LIST, GETUSER).

Pure: no sockets, no router.  The router keeps one :class:`AclStore`; a worker rebuilds a
:class:`User` from its ACL LIST line to check the commands a script calls.

What a user may run is a set of command full names (``get``, ``client|kill``), as Redis keeps a
bitmap of command ids; ``+@all`` also sets the "future commands" bit that decides whether the
description starts from ``+@all`` or ``-@all``.  Selectors (``(...)`` rules) are not supported:
they are refused with a clear error.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from typing import Any

from shardis.commands import getkeys
from shardis.glob import glob_match

#: Redis's categories, in its order (ACL CAT, the describe algorithm, COMMAND INFO).
CATEGORIES = (
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
    "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous",
    "connection", "transaction", "scripting",
)
READ, WRITE = 1, 2
#: check results, ordered as Redis's ACL_DENIED_* (a higher one wins when picking the error).
OK, DENIED_CMD, DENIED_KEY, DENIED_AUTH, DENIED_CHANNEL = 0, 1, 2, 3, 4
LOG_MAX = 128
_SPACES = b" \t\n\r\x00"


class AclRuleError(ValueError):
    """A rule ACL SETUSER refuses; the text is Redis's reason (ACLSetUserStringError)."""


E_UNKNOWN = "Unknown command or category name in ACL"
E_SYNTAX = "Syntax error"
E_KEYS_AFTER_ALL = (
    "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not "
    "have any effect. Try 'resetkeys' to start with an empty list of patterns")
E_CHANNELS_AFTER_ALL = (
    "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does "
    "not have any effect. Try 'resetchannels' to start with an empty list of channels")
E_NO_SUCH_PASSWORD = "The password you are trying to remove from the user does not exist"
E_BAD_HASH = ("The password hash must be exactly 64 characters and contain only lowercase "
              "hexadecimal characters")
E_FIRSTARG_OF_SUB = "Allowing first-arg of a subcommand is not supported"
E_SELECTORS = "Selectors are not supported by shardis"


def hash_password(password: bytes) -> str:
    return hashlib.sha256(password).hexdigest()


def has_spaces(text: bytes) -> bool:
    return any(c in _SPACES for c in text)


# The command universe ----------------------------------------------------------------------
class Universe:
    """Every public command and subcommand, with its categories, built once from the table.

    A container (CLIENT, ACL...) is in the categories of its table entry (Redis gives it @slow
    too): allowing or denying it takes its subcommands along, as in Redis.
    """

    def __init__(self) -> None:
        from shardis.commands import all_commands

        self.tops: list[Any] = [c for c in all_commands() if "internal" not in c.flags]
        self.specs: list[Any] = []
        for spec in self.tops:
            self.specs.append(spec)
            self.specs.extend(_unique(spec.subcommands.values()))
        #: Redis's commands shardis lacks (``shardis.router.aclredis``), by full name.
        self.redis_only = _redis_only(self.specs)
        self.specs += self.redis_only.values()
        self.tops += [s for s in self.redis_only.values() if s.parent is None]
        self.members: dict[str, list[Any]] = {
            cat: [s for s in self.specs if "@" + cat in s.acl] for cat in CATEGORIES
        }
        self.categories: dict[str, frozenset[str]] = {
            cat: frozenset(s.fullname for s in specs) for cat, specs in self.members.items()
        }
        self.everything = frozenset(s.fullname for s in self.specs)
        children: dict[str, set[str]] = {}
        for s in self.specs:
            parent, _, sub = s.fullname.partition("|")
            if sub:
                children.setdefault(parent, set()).add(s.fullname)
        self.children: dict[str, frozenset[str]] = {
            name: frozenset(subs) for name, subs in children.items()
        }

    def find(self, name: bytes) -> Any:
        """ACLLookupCommand: ``get`` or ``client|kill``, any case; None if unknown."""
        from shardis.commands import find

        if not name:
            return None
        return find(name) or self.redis_only.get(name.lower().decode("latin-1"))


class _RedisOnly:
    """A Redis command shardis lacks, as ACL rules see it (see ``shardis.router.aclredis``):
    rules name it, grant and deny it as Redis does, and ACL LIST describes it; nothing runs."""

    __slots__ = ("fullname", "acl", "subcommands", "parent")

    def __init__(self, fullname: str, categories: str) -> None:
        self.fullname = fullname
        self.acl = tuple("@" + cat for cat in categories.split())
        self.subcommands: dict[bytes, _RedisOnly] = {}
        self.parent: Any = None


def _redis_only(specs: list[Any]) -> dict[str, _RedisOnly]:
    from shardis.router.aclredis import REDIS_ONLY

    have = {spec.fullname: spec for spec in specs}
    out = {name: _RedisOnly(name, cats) for name, cats in REDIS_ONLY.items()
           if name not in have}
    for name, spec in out.items():
        top, _, sub = name.partition("|")
        if sub:
            spec.parent = have.get(top) or out.get(top)
            if top in out:
                out[top].subcommands[sub.encode()] = spec
    return out


def _unique(specs: Iterable[Any]) -> list[Any]:
    seen: dict[int, Any] = {}
    for spec in specs:
        seen.setdefault(id(spec), spec)
    return list(seen.values())


_UNIVERSE: Universe | None = None


def universe() -> Universe:
    global _UNIVERSE
    if _UNIVERSE is None:
        _UNIVERSE = Universe()
    return _UNIVERSE


# Users -------------------------------------------------------------------------------------
class KeyPattern:
    __slots__ = ("pattern", "flags")

    def __init__(self, pattern: bytes, flags: int) -> None:
        self.pattern = pattern
        self.flags = flags

    def text(self) -> bytes:
        if self.flags == READ | WRITE:
            return b"~" + self.pattern
        return (b"%R~" if self.flags == READ else b"%W~") + self.pattern


class User:
    """One user: flags, password hashes, and its one (root) selector."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.enabled = False
        self.nopass = False
        #: b"skip-sanitize-payload", b"sanitize-payload", or None (neither flag: a new user).
        self.sanitize: bytes | None = None
        self.passwords: list[str] = []
        self.allowed: set[str] = set()
        #: the reserved "future commands" bit (set by +@all, cleared by -@all).
        self.future = False
        #: SELECTOR_FLAG_ALLCOMMANDS: cleared by any command removal.
        self.allcommands = False
        self.firstargs: dict[str, list[bytes]] = {}
        self.allkeys = False
        self.patterns: list[KeyPattern] = []
        self.allchannels = False
        self.channels: list[bytes] = []

    def copy(self, name: bytes | None = None) -> User:
        other = User(self.name if name is None else name)
        other.assign(self)
        return other

    def assign(self, source: User) -> None:
        """Take ``source``'s rules, keep the name (ACLCopyUser): clients keep this object."""
        for attr in ("enabled", "nopass", "sanitize", "future", "allcommands", "allkeys",
                     "allchannels"):
            setattr(self, attr, getattr(source, attr))
        self.passwords = list(source.passwords)
        self.allowed = set(source.allowed)
        self.firstargs = {k: list(v) for k, v in source.firstargs.items()}
        self.patterns = [KeyPattern(p.pattern, p.flags) for p in source.patterns]
        self.channels = list(source.channels)

    @property
    def unrestricted(self) -> bool:
        """Any command on any key and channel: the router's fast path needs no check."""
        return self.allcommands and self.allkeys and self.allchannels

    # Rules ---------------------------------------------------------------------------------
    def apply(self, op: bytes) -> None:
        """One rule (ACLSetUser); raises :class:`AclRuleError` with Redis's reason."""
        if not op:
            return
        lowered = op.lower()
        simple = _USER_FLAGS.get(lowered)
        if simple is not None:
            simple(self)
        elif op[:1] in (b">", b"#"):
            digest = hash_password(op[1:]) if op[:1] == b">" else _checked_hash(op[1:])
            if digest not in self.passwords:
                self.passwords.append(digest)
            self.nopass = False
        elif op[:1] in (b"<", b"!"):
            digest = hash_password(op[1:]) if op[:1] == b"<" else _checked_hash(op[1:])
            if digest not in self.passwords:
                raise AclRuleError(E_NO_SUCH_PASSWORD)
            self.passwords.remove(digest)
        elif op[:1] == b"(" and op[-1:] == b")" or lowered == b"clearselectors":
            if lowered != b"clearselectors":
                raise AclRuleError(E_SELECTORS)
        elif lowered == b"reset":
            for rule in (b"resetpass", b"resetkeys", b"resetchannels", b"off",
                         b"sanitize-payload", b"-@all"):
                self.apply(rule)
        else:
            self.apply_selector(op, lowered)

    def apply_selector(self, op: bytes, lowered: bytes) -> None:
        """Key, channel and command rules (ACLSetSelector)."""
        if lowered in (b"allkeys", b"~*"):
            self.allkeys, self.patterns = True, []
        elif lowered == b"resetkeys":
            self.allkeys, self.patterns = False, []
        elif lowered in (b"allchannels", b"&*"):
            self.allchannels, self.channels = True, []
        elif lowered == b"resetchannels":
            self.allchannels, self.channels = False, []
        elif lowered in (b"allcommands", b"+@all"):
            self.allowed = set(universe().everything)
            self.future = self.allcommands = True
            self.firstargs = {}
        elif lowered in (b"nocommands", b"-@all"):
            self.allowed = set()
            self.future = self.allcommands = False
            self.firstargs = {}
        elif op[:1] in (b"~", b"%"):
            self.add_key_pattern(op)
        elif op[:1] == b"&":
            if self.allchannels:
                raise AclRuleError(E_CHANNELS_AFTER_ALL)
            if has_spaces(op[1:]):
                raise AclRuleError(E_SYNTAX)
            if op[1:] not in self.channels:
                self.channels.append(op[1:])
        elif op[:2] in (b"+@", b"-@"):
            members = universe().members.get(op[2:].decode("latin-1").lower())
            if members is None:
                raise AclRuleError(E_UNKNOWN)
            for spec in members:
                self.change_command(spec, op[:1] == b"+")
        elif op[:1] == b"+":
            self.allow_command(op[1:])
        elif op[:1] == b"-":
            spec = universe().find(op[1:])
            if spec is None:
                raise AclRuleError(E_UNKNOWN)
            self.change_command(spec, False)
        else:
            raise AclRuleError(E_SYNTAX)

    def add_key_pattern(self, op: bytes) -> None:
        if self.allkeys:
            raise AclRuleError(E_KEYS_AFTER_ALL)
        flags, offset = READ | WRITE, 1
        if op[:1] == b"%":
            flags = 0
            while offset < len(op):
                char = op[offset:offset + 1].upper()
                offset += 1
                if char == b"R" and not flags & READ:
                    flags |= READ
                elif char == b"W" and not flags & WRITE:
                    flags |= WRITE
                elif char == b"~":
                    break
                else:
                    raise AclRuleError(E_SYNTAX)
        pattern = op[offset:]
        if has_spaces(pattern):
            raise AclRuleError(E_SYNTAX)
        for existing in self.patterns:
            if existing.pattern == pattern:
                existing.flags |= flags
                break
        else:
            self.patterns.append(KeyPattern(pattern, flags))
        self.allkeys = False

    def allow_command(self, name: bytes) -> None:
        if b"|" not in name:
            spec = universe().find(name)
            if spec is None:
                raise AclRuleError(E_UNKNOWN)
            self.change_command(spec, True)
            return
        base, _, sub = name.rpartition(b"|")
        spec = universe().find(base)
        if spec is None:
            raise AclRuleError(E_UNKNOWN)
        if spec.parent is not None:
            raise AclRuleError(E_FIRSTARG_OF_SUB)
        if not sub:
            raise AclRuleError(E_SYNTAX)
        if spec.subcommands:
            full = universe().find(name)
            if full is None:
                raise AclRuleError(E_UNKNOWN)
            self.change_command(full, True)
            return
        allowed = self.firstargs.setdefault(spec.fullname, [])
        if sub.lower() not in allowed:
            allowed.append(sub.lower())

    def change_command(self, spec: Any, allow: bool) -> None:
        """ACLChangeSelectorPerm: a container takes its subcommands along."""
        self.set_command(spec.fullname, allow)
        self.firstargs.pop(spec.fullname, None)
        for sub in universe().children.get(spec.fullname, ()):
            self.set_command(sub, allow)

    def set_command(self, name: str, allow: bool) -> None:
        if allow:
            self.allowed.add(name)
        else:
            self.allowed.discard(name)
            self.allcommands = False

    # Descriptions --------------------------------------------------------------------------
    def flag_names(self) -> list[bytes]:
        names = [b"on" if self.enabled else b"off"]
        if self.nopass:
            names.append(b"nopass")
        if self.sanitize is not None:
            names.append(self.sanitize)
        return names

    def describe_keys(self) -> bytes:
        if self.allkeys:
            return b"~*"
        return b" ".join(p.text() for p in self.patterns)

    def describe_channels(self) -> bytes:
        if self.allchannels:
            return b"&*"
        return b" ".join(b"&" + c for c in self.channels)

    def describe(self) -> bytes:
        """ACLDescribeUser: the rules after ``user <name>`` in ACL LIST and ACL files."""
        parts = self.flag_names() + [b"#" + p.encode() for p in self.passwords]
        if self.allkeys:
            parts.append(b"~*")
        else:
            parts.extend(p.text() for p in self.patterns)
        if self.allchannels:
            parts.append(b"&*")
        else:
            parts.append(b"resetchannels")
            parts.extend(b"&" + c for c in self.channels)
        parts.append(describe_commands(self))
        return b" ".join(parts)

    def getuser(self) -> dict[bytes, Any]:
        """ACL GETUSER's map (flags is a set reply in RESP3)."""
        from shardis.resp import SetReply

        return {
            b"flags": SetReply(self.flag_names()),
            b"passwords": [p.encode() for p in self.passwords],
            b"commands": describe_commands(self),
            b"keys": self.describe_keys(),
            b"channels": self.describe_channels(),
            b"selectors": [],
        }

    # Checks --------------------------------------------------------------------------------
    def check(self, spec: Any, args: list[bytes]) -> tuple[int, int]:
        """(OK or DENIED_*, position of the refused argument): ACLSelectorCheckCmd."""
        if not self.allcommands and "no_auth" not in spec.flags:
            name = spec.fullname
            if name not in self.allowed and not self._first_arg_allowed(name, spec, args):
                return DENIED_CMD, 0
        if not self.allkeys and getkeys.has_keys(spec.fullname):
            # Redis's keys and key-spec flags for this line: ACCESS needs read permission,
            # INSERT, DELETE and UPDATE write permission (ACLSelectorCheckKey)
            for key in getkeys.get_keys(spec.fullname, args):
                if not self.key_allowed(args[key.pos], key_permission(key.flags)):
                    return DENIED_KEY, key.pos
        if not self.allchannels:
            for position, is_pattern in channel_positions(spec, args):
                if not self.channel_allowed(args[position], is_pattern):
                    return DENIED_CHANNEL, position
        return OK, 0

    def _first_arg_allowed(self, name: str, spec: Any, args: list[bytes]) -> bool:
        allowed = self.firstargs.get(name)
        index = 2 if spec.parent is not None else 1
        return bool(allowed) and len(args) > index and args[index].lower() in allowed

    def key_allowed(self, key: bytes, need: int) -> bool:
        if self.allkeys:
            return True
        return any(p.flags & need == need and glob_match(p.pattern, key)
                   for p in self.patterns)

    def channel_allowed(self, channel: bytes, is_pattern: bool) -> bool:
        if self.allchannels:
            return True
        if is_pattern:
            return channel in self.channels
        return any(glob_match(pattern, channel) for pattern in self.channels)


def key_permission(flags: int) -> int:
    """The permissions (READ, WRITE) a key with these key-spec flags needs."""
    need = READ if flags & getkeys.ACCESS else 0
    if flags & (getkeys.INSERT | getkeys.DELETE | getkeys.UPDATE):
        need |= WRITE
    return need


def _checked_hash(text: bytes) -> str:
    if len(text) != 64 or any(c not in b"0123456789abcdef" for c in text):
        raise AclRuleError(E_BAD_HASH)
    return text.decode()


def _set(**values: Any) -> Any:
    def apply(user: User) -> None:
        for name, value in values.items():
            setattr(user, name, value)
    return apply


def _nopass(user: User) -> None:
    user.nopass, user.passwords = True, []


def _resetpass(user: User) -> None:
    user.nopass, user.passwords = False, []


_USER_FLAGS = {
    b"on": _set(enabled=True),
    b"off": _set(enabled=False),
    b"skip-sanitize-payload": _set(sanitize=b"skip-sanitize-payload"),
    b"sanitize-payload": _set(sanitize=b"sanitize-payload"),
    b"nopass": _nopass,
    b"resetpass": _resetpass,
}

_SUBSCRIBE = {"subscribe": False, "ssubscribe": False, "psubscribe": True}
_PUBLISH = ("publish", "spublish")


def channel_positions(spec: Any, args: list[bytes]) -> list[tuple[int, bool]]:
    """The channel arguments ACL checks (publish and subscribe, not unsubscribe)."""
    name = spec.fullname
    if name in _PUBLISH:
        return [(1, False)]
    if name in _SUBSCRIBE:
        return [(i, _SUBSCRIBE[name]) for i in range(1, len(args))]
    return []


def new_user(name: bytes) -> User:
    """ACLCreateUser: off, no keys, resetchannels (7.0's default), -@all."""
    return User(name)


def default_user() -> User:
    user = User(b"default")
    for rule in (b"+@all", b"~*", b"&*", b"on", b"nopass"):
        user.apply(rule)
    return user


# Describing commands: Redis's best-fit of categories, then single commands ------------------
def describe_commands(user: User) -> bytes:
    """ACLDescribeSelectorCommandRules: ``+@all``/``-@all``, the categories that fit best, then
    the single commands left, so that applying the text rebuilds the same set."""
    world = universe()
    additive = not user.future
    rules = [b"-@all" if additive else b"+@all"]
    fake: set[str] = set() if additive else set(world.everything)
    temp = set(user.allowed)
    applied: set[str] = set()
    while True:
        best, mindiff, maxsame = None, None, 0
        for cat in CATEGORIES:
            if cat in applied:
                continue
            members = world.categories[cat]
            on = len(members & temp)
            off = len(members) - on
            diff, same = (off, on) if additive else (on, off)
            if same > diff and (mindiff is None or diff < mindiff
                                or (diff == mindiff and same > maxsame)):
                best, mindiff, maxsame = cat, diff, same
        if best is None:
            break
        _apply_category(world, fake, best, additive)
        _apply_category(world, temp, best, not additive)
        rules.append((b"+@" if additive else b"-@") + best.encode())
        applied.add(best)
    rules.extend(_single_commands(user, fake, world))
    return b" ".join(rules)


def _apply_category(world: Universe, bits: set[str], category: str, allow: bool) -> None:
    """``+@category`` or ``-@category`` on a bare set of command names."""
    for spec in world.members[category]:
        group = {spec.fullname} | world.children.get(spec.fullname, frozenset())
        if allow:
            bits |= group
        else:
            bits -= group


def _single_commands(user: User, fake: set[str], world: Universe) -> list[bytes]:
    rules: list[bytes] = []
    for top in world.tops:
        for spec in [top, *_unique(top.subcommands.values())]:
            name = spec.fullname
            userbit, fakebit = name in user.allowed, name in fake
            if userbit != fakebit:
                rules.append((b"+" if userbit else b"-") + name.encode())
                group = {name} | world.children.get(name, frozenset())
                if userbit:
                    fake |= group
                else:
                    fake -= group
            if not userbit:
                rules.extend(b"+" + name.encode() + b"|" + arg
                             for arg in user.firstargs.get(name, ()))
    return rules


# The store ---------------------------------------------------------------------------------
class LogEntry:
    __slots__ = ("count", "reason", "context", "object", "username", "created", "client_info")

    def __init__(self, reason: str, context: str, obj: bytes, username: bytes,
                 client_info: str) -> None:
        self.count = 1
        self.reason = reason
        self.context = context
        self.object = obj
        self.username = username
        self.created = time.time()
        self.client_info = client_info

    def same_event(self, other: LogEntry) -> bool:
        return (self.reason, self.context, self.object, self.username) == (
            other.reason, other.context, other.object, other.username
        ) and other.created - self.created < 60

    def reply(self, now: float) -> dict[bytes, Any]:
        return {
            b"count": self.count,
            b"reason": self.reason.encode(),
            b"context": self.context.encode(),
            b"object": self.object,
            b"username": self.username,
            b"age-seconds": round(now - self.created, 3),
            b"client-info": self.client_info.encode(),
        }


REASONS = {DENIED_CMD: "command", DENIED_KEY: "key", DENIED_CHANNEL: "channel",
           DENIED_AUTH: "auth"}


class AclStore:
    """Every user, by name, and the ACL log (newest first)."""

    def __init__(self) -> None:
        self.default = default_user()
        self.users: dict[bytes, User] = {b"default": self.default}
        self.log: list[LogEntry] = []
        #: bumped by every change: workers cache the users they rebuilt by it.
        self.version = 0

    @property
    def default_open(self) -> bool:
        """No AUTH needed: the default user is on and nopass (authRequired in Redis)."""
        return self.default.nopass and self.default.enabled

    def authenticate(self, name: bytes, password: bytes) -> User | None:
        user = self.users.get(name)
        if user is None or not user.enabled:
            return None
        if user.nopass:
            return user
        digest = hash_password(password)
        return user if any(secrets.compare_digest(digest, p) for p in user.passwords) else None

    def set_requirepass(self, password: str) -> None:
        """ACLUpdateDefaultUserPassword: requirepass is the default user's one password."""
        self.default.apply(b"resetpass")
        self.default.apply(b">" + password.encode() if password else b"nopass")
        self.version += 1

    def staged_user(self, name: bytes, rules: list[bytes]) -> User:
        """The user ``name`` (a new one if unknown) with ``rules`` applied, all or nothing, as
        a copy: the store does not change."""
        current = self.users.get(name)
        staged = current.copy() if current is not None else new_user(name)
        for rule in rules:
            try:
                staged.apply(rule)
            except AclRuleError as exc:
                text = rule.decode("utf-8", "replace")
                raise AclRuleError(f"Error in ACL SETUSER modifier '{text}': {exc}") from None
        return staged

    def setuser(self, name: bytes, rules: list[bytes]) -> tuple[User, User | None]:
        """Apply ``rules`` all or nothing; (the user, its rules before) — None if new."""
        current = self.users.get(name)
        staged = self.staged_user(name, rules)
        if current is None:
            self.users[name] = staged
            self.version += 1
            return staged, None
        before = current.copy()
        current.assign(staged)
        self.version += 1
        return current, before

    def deluser(self, name: bytes) -> User | None:
        user = self.users.pop(name, None)
        if user is not None:
            self.version += 1
        return user

    def sorted_users(self) -> list[User]:
        return [self.users[name] for name in sorted(self.users)]

    def list_lines(self) -> list[bytes]:
        return [b"user " + u.name + b" " + u.describe() for u in self.sorted_users()]

    # ACL files -----------------------------------------------------------------------------
    def parse_file(self, text: bytes, filename: str) -> dict[bytes, User]:
        """The users of an ACL file, or AclRuleError with Redis's ACLLoadFromFile errors."""
        users: dict[bytes, User] = {}
        problems: list[str] = []
        for number, raw in enumerate(text.split(b"\n"), start=1):
            line = raw.strip(b" \t\r\n")
            if not line:
                continue
            words = [w for w in line.split(b" ") if w]
            if not words:
                continue
            if words[0] != b"user" or len(words) < 2:
                problems.append(f"{filename}:{number} should start with user keyword followed "
                                "by the username. ")
                continue
            name = words[1]
            shown = name.decode("utf-8", "replace")
            if has_spaces(name):
                problems.append(f"'{filename}:{number}: username '{shown}' contains invalid "
                                "characters. ")
                continue
            if name in users:
                problems.append(f"WARNING: Duplicate user '{shown}' found on line {number}. ")
                continue
            user = users[name] = new_user(name)
            problems.extend(_apply_file_rules(user, words[2:], filename, number))
        if problems:
            raise AclRuleError("".join(problems) + "WARNING: ACL errors detected, no change to "
                               "the previously active ACL rules was performed")
        return users

    def replace_users(self, users: dict[bytes, User]) -> list[User]:
        """Install loaded users; the default user object stays (its clients keep it).  Returns
        the users replaced, whose clients must be disconnected (as ACL LOAD does)."""
        new_default = users.pop(b"default", None) or default_user()
        self.default.assign(new_default)
        old = [u for name, u in self.users.items() if name != b"default"]
        self.users = {b"default": self.default, **users}
        self.version += 1
        return old

    def file_text(self) -> bytes:
        return b"".join(line + b"\n" for line in self.list_lines())

    # The log -------------------------------------------------------------------------------
    def add_log(self, entry: LogEntry) -> None:
        for index, current in enumerate(self.log[:10]):
            if current.same_event(entry):
                current.count += 1
                current.created = entry.created
                current.client_info = entry.client_info
                self.log.insert(0, self.log.pop(index))
                return
        self.log.insert(0, entry)
        del self.log[LOG_MAX:]


def _apply_file_rules(user: User, rules: list[bytes], filename: str, number: int) -> list[str]:
    problems: list[str] = []
    syntax_reported = False
    for rule in rules:
        rule = rule.strip(b"\t\r\n")
        try:
            user.apply(rule)
        except AclRuleError as exc:
            if str(exc) == E_UNKNOWN:
                text = rule.decode("utf-8", "replace")
                problems.append(f"{filename}:{number}: Error in applying operation '{text}': "
                                f"{exc}. ")
            elif not syntax_reported:
                problems.append(f"{filename}:{number}: {exc}. ")
                syntax_reported = True
    return problems


def user_from_line(line: bytes) -> User:
    """A user rebuilt from its ACL LIST line (workers check scripts' calls with it)."""
    words = line.split(b" ")
    user = new_user(words[1])
    for rule in words[2:]:
        user.apply(rule)
    return user


def genpass(bits: int) -> bytes:
    return secrets.token_hex((bits + 7) // 8)[: (bits + 3) // 4].encode()
