"""MIGRATE: the table entry (the router does the work: ``shardis.router.migrate``)."""

from __future__ import annotations

from shardis.commands import Fanout, command


def migrate_keys(args: list[bytes]) -> range:
    """The key argument, or with KEYS every argument after it (Redis's two key specs)."""
    for position in range(6, len(args)):
        option = args[position].lower()
        if option == b"keys":
            return range(position + 1, len(args))
        if option == b"auth2":
            return range(0)  # (options are checked by the command itself)
    return range(3, 4) if len(args) > 3 and args[3] else range(0)


command("migrate", -6, "write movablekeys", keys=(3, 3, 1), fanout=Fanout.COORDINATED,
        acl="keyspace write slow dangerous", group="generic",
        tips="nondeterministic_output", key_finder=migrate_keys)(None)
