"""Client-side caching (CLIENT TRACKING): the worker-side internal commands that fill a
worker's tracking table (``shardis.worker.tracking``, which explains the design); CLIENT
TRACKING and CACHING themselves are the router's (``shardis.router.tracking``)."""

from __future__ import annotations

from shardis.commands import Fanout, command
from shardis.resp import OK
from shardis.worker.tracking import Tracking


def _tracking(db: object) -> Tracking:
    return db.shard.tracking  # type: ignore[attr-defined,no-any-return]


def _peer(db: object) -> bytes:
    return db.shard.pubsub.peer  # type: ignore[attr-defined,no-any-return]


@command("__track", -3, "internal", fanout=Fanout.SINGLE)
def internal_track_command(db: object, args: list[bytes]) -> object:
    """``__track <client id> <key>...``: the client read these keys (default mode)."""
    _tracking(db).remember(_peer(db), int(args[1]), args[2:])
    return OK


@command("__track_prefix", -3, "internal", fanout=Fanout.SINGLE)
def internal_track_prefix_command(db: object, args: list[bytes]) -> object:
    """``__track_prefix <client id> on <prefix>...`` / ``... off``: BCAST registrations."""
    tracking = _tracking(db)
    if args[2] == b"on":
        tracking.follow(_peer(db), int(args[1]), args[3:])
    else:
        tracking.unfollow(_peer(db), int(args[1]))
    return OK


@command("__track_caller", 2, "internal", fanout=Fanout.SINGLE)
def internal_track_caller_command(db: object, args: list[bytes]) -> object:
    """``__track_caller <client id>`` (0: none): whose writes the next commands are."""
    _tracking(db).writer = b"%d" % int(args[1])
    return OK
