"""One set of ACL users for the whole server: every router's changes reach every router.

Where the users live
    Worker 0 (the hub, which already routes classic pub/sub for every router) keeps the
    server's ACL state (``shardis.worker.aclhub``): the ``ACL LIST`` text of every user, a
    version bumped by each change, and a count of ``ACL LOAD`` runs.  Each router keeps a live
    copy (``router.acl``) that its clients are checked against, and the lines and version of the
    state that copy matches (:class:`AclSync`).

Changing users (ACL SETUSER, DELUSER, LOAD; CONFIG SET requirepass)
    Optimistic concurrency: the router applies the change to a copy of its lines (the rules are
    checked there: a bad rule is refused before anything is sent), then sends the whole new
    text with ``__acl_set <version it was built from>``.  The hub takes it only if its version
    is still that one.  Otherwise the hub answers its newer state: the router installs it (as it
    would a remote change) and applies the same change again on top of it, then retries.  Two
    routers changing users at once therefore both land, in some order, and neither change is
    lost.  On one router, changes are also serialized by a lock (no retries among its own
    clients).  The client's reply comes once the hub has taken the change, and the change is
    installed on this router before that reply: the next command of any client of this router
    sees it.

Hearing about changes
    A router offers its state at startup (``__acl_sync``), which also makes it a *watcher* of
    the hub.  After each change the hub pushes every other watcher a notification: a push entry
    of kind ``acl`` on the link, which no client command can produce (PUBLISH makes ``message``
    entries whatever the channel).  The router then fetches the state (``__acl_get``; fetches
    coalesce) and installs it if it is newer than its own.

Installing a state
    Exactly what the local commands do: users whose line changed get the new rules in place
    (their connected clients use them for their next command; clients subscribed to channels
    the user lost are disconnected, as ACL SETUSER does), new users are added, clients of users
    that are gone are disconnected, and every client's fast-path flag is recomputed.  When the
    LOAD count grew, every user is replaced and the clients of all users but ``default`` are
    disconnected, as ACL LOAD does.

Startup, and a restarted worker 0
    A router builds its users from ``requirepass`` and ``aclfile`` as before, then offers them.
    The hub keeps the first state it is offered: once a shared state exists it wins, and a
    router started with other users logs a warning and uses the shared ones.  A restarted
    worker 0 is empty: each router offers its state again when the hub reconnects (as
    subscriptions are replayed), the newest version wins, and routers that had fallen behind
    install it.  While worker 0 is unreachable, ACL changes wait for it (like every command for
    worker 0); authentication and checks go on with each router's copy.

Per router, as before: ``ACL LOG`` (the refusals seen by this router's clients), ``ACL SAVE``
(writes this router's own ``aclfile``), ``ACL LOAD`` reads this router's ``aclfile`` (the result
goes to every router), and the ``requirepass`` value ``CONFIG GET`` shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from shardis.errors import ReplyError, raise_if_error
from shardis.router import acl, security

log = logging.getLogger("shardis.router")

HUB = 0
#: how long a starting router waits for worker 0's ACL state before serving anyway.
STARTUP_SECONDS = 20.0
#: retries of one change that keeps losing races (each lost race means another change landed).
MAX_ATTEMPTS = 100

#: edit(store, lines) -> reply: applies one change to ``lines`` (name -> ACL LIST line), using
#: ``store`` (the router's live users, equal to the lines) for what it needs; raises ReplyError.
Edit = Callable[[acl.AclStore, dict[bytes, bytes]], Any]


def lines_of(text: bytes) -> dict[bytes, bytes]:
    lines = {}
    for line in text.split(b"\n"):
        words = line.split(b" ", 2)
        if len(words) >= 2 and words[0] == b"user":
            lines[words[1]] = line
    return lines


def text_of(lines: dict[bytes, bytes]) -> bytes:
    return b"".join(lines[name] + b"\n" for name in sorted(lines))


def user_line(user: acl.User) -> bytes:
    return b"user " + user.name + b" " + user.describe()


def user_of(line: bytes) -> acl.User:
    """The user of an ACL LIST line; a rule this router refuses (another version's command
    table) is logged and skipped."""
    words = line.split(b" ")
    user = acl.new_user(words[1])
    for rule in words[2:]:
        try:
            user.apply(rule)
        except acl.AclRuleError as exc:
            log.warning("ACL state from worker 0: user %r: rule %r ignored: %s", words[1], rule,
                        exc)
    return user


class AclSync:
    def __init__(self, router: Any) -> None:
        self.router = router
        #: the hub version that ``router.acl`` matches; -1 before the first sync.
        self.version = -1
        self.loads = 0
        #: name -> ACL LIST line of ``router.acl``'s users.
        self.lines = {user.name: user_line(user) for user in router.acl.users.values()}
        self.lock = asyncio.Lock()
        self.fetching = False
        self.fetch_again = False

    # Startup and reconnection ----------------------------------------------------------------
    async def start(self) -> None:
        """Offer this router's users to worker 0 and take the shared ones, before serving."""
        try:
            await asyncio.wait_for(self.offer(), STARTUP_SECONDS)
        except asyncio.TimeoutError:
            log.warning("worker 0 did not answer: serving with this router's own ACL users "
                        "until it does")

    def worker_back(self) -> None:
        """Worker 0 (re)connected: offer our state again (a restarted one is empty)."""
        self.router.loop.create_task(self.offer())

    async def offer(self) -> None:
        own = text_of(self.lines)
        reply = await self.router.call(
            HUB, [b"__acl_sync", b"%d" % self.version, b"%d" % self.loads, own])
        if type(reply) is ReplyError:
            log.warning("cannot sync ACL users with worker 0: %s", reply)
            return
        version, loads, text = reply  # type: ignore[misc]
        if self.version == -1 and text != own:
            log.warning("worker 0 already holds the server's ACL users (set by another "
                        "router): they replace the ones of this router's requirepass/aclfile")
        if version > self.version or (version == self.version
                                      and (loads, text) != (self.loads, own)):
            self.install(version, loads, text)

    # Notifications -----------------------------------------------------------------------------
    def notified(self) -> None:
        """The hub says the state changed: fetch it (one fetch at a time; a notification that
        comes during a fetch makes one more)."""
        if self.fetching:
            self.fetch_again = True
            return
        self.fetching = True
        self.router.loop.create_task(self.fetch())

    async def fetch(self) -> None:
        try:
            while True:
                self.fetch_again = False
                reply = await self.router.call(HUB, [b"__acl_get"])
                if type(reply) is ReplyError:
                    log.warning("cannot fetch ACL users from worker 0: %s", reply)
                elif reply is not None:
                    version, loads, text = reply  # type: ignore[misc]
                    if version > self.version:
                        self.install(version, loads, text)
                if not self.fetch_again:
                    return
        except Exception:
            log.exception("ACL state fetch failed")
        finally:
            self.fetching = False

    # Changes -----------------------------------------------------------------------------------
    async def change(self, current: Any, edit: Edit, replaces: bool = False) -> Any:
        """Apply ``edit`` for the whole server (see the module docstring); its reply."""
        async with self.lock:
            for _ in range(MAX_ATTEMPTS):
                lines = dict(self.lines)
                result = edit(self.router.acl, lines)
                loads = self.loads + 1 if replaces else self.loads
                text = text_of(lines)
                reply = raise_if_error(await self.router.call(
                    HUB, [b"__acl_set", b"%d" % self.version, b"%d" % loads, text]))
                if reply[0] == 1:  # type: ignore[index]
                    self.install(reply[1], loads, text, current)  # type: ignore[index]
                    return result
                _, version, new_loads, new_text = reply  # type: ignore[misc]
                if version > self.version:
                    self.install(version, new_loads, new_text)
        raise ReplyError("ERR ACL change not stored: too many concurrent changes, try again")

    def install(self, version: int, loads: int, text: bytes, current: Any = None) -> None:
        """Make this router's users those of ``text``, as the local commands would."""
        lines = lines_of(text)
        if b"default" not in lines:  # never from a router; an open default user, as ACL LOAD
            lines[b"default"] = user_line(acl.default_user())
        if loads != self.loads:
            users = {name: user_of(line) for name, line in lines.items()}
            security.replace_all(self.router, users, current)
        else:
            changed = {name: user_of(line) for name, line in lines.items()
                       if self.lines.get(name) != line}
            removed = [name for name in self.lines if name not in lines]
            security.apply_changes(self.router, changed, removed, current)
        self.lines, self.version, self.loads = lines, version, loads
