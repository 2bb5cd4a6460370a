"""The server's one ACL state, kept on the hub worker (worker 0) for every router.

The state is the ``ACL LIST`` text of the whole server, a version (bumped by every change) and
a count of ACL LOADs (a router that sees it grow replaces all its users, as ACL LOAD does).
Routers never edit the text here: they send the complete new text, compare-and-set on the
version they built it from (``__acl_set``), and retry on a newer state when they lost a race.
See ``shardis.router.aclsync`` for the whole design.

Routers that synced (``__acl_sync``) are *watchers*: after a change the hub pushes them a
notification (a push entry of kind ``acl``, which no PUBLISH can produce); they fetch the state
(``__acl_get``).  A restarted hub is empty until the routers offer their state again.
"""

from __future__ import annotations

#: the kind of the push entry that tells a router the ACL state changed.
ACL_CHANGED = b"acl"
#: watchers kept (a router's identity changes when its link reconnects: old ones go stale).
MAX_WATCHERS = 1024


class AclHub:
    def __init__(self) -> None:
        #: (version, loads, text), or None until a router offers its state.
        self.state: tuple[int, int, bytes] | None = None
        self.watchers: dict[bytes, None] = {}

    def reply(self) -> list[object] | None:
        if self.state is None:
            return None
        version, loads, text = self.state
        return [version, loads, text]

    def sync(self, peer: bytes, version: int, loads: int, text: bytes,
             pushes: dict[bytes, list[tuple]]) -> list[object]:
        """A router (at startup, or once this worker is back) offers its state: taken when
        there is none yet or when it is newer (a restarted hub learns the newest of the
        routers' states).  The answer is the state the router must use."""
        self.watchers.pop(peer, None)
        self.watchers[peer] = None
        while len(self.watchers) > MAX_WATCHERS:
            del self.watchers[next(iter(self.watchers))]
        if self.state is None or version > self.state[0]:
            self.state = (version, loads, text)
            self.notify(peer, pushes)
        return self.reply()  # type: ignore[return-value]

    def compare_and_set(self, peer: bytes, expected: int, loads: int, text: bytes,
                        pushes: dict[bytes, list[tuple]]) -> list[object]:
        """``[1, version]`` when the state was still ``expected`` (or none: a restarted hub),
        else ``[0, version, loads, text]``: the newer state to redo the change on."""
        if self.state is not None and self.state[0] != expected:
            return [0, *self.reply()]  # type: ignore[misc]
        self.state = (expected + 1, loads, text)
        self.notify(peer, pushes)
        return [1, expected + 1]

    def notify(self, sender: bytes, pushes: dict[bytes, list[tuple]]) -> None:
        version = b"%d" % self.state[0]  # type: ignore[index]
        for peer in self.watchers:
            if peer != sender:
                pushes.setdefault(peer, []).append((ACL_CHANGED, ACL_CHANGED, None, version))
