"""MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user pw] [KEYS k...]
(Redis's ``migrateCommand``): the keys go to another server, Redis or shardis, by DUMP and
RESTORE.

The router gates the workers of the keys for the whole command (nothing changes them between
their DUMP and their removal), reads each key's payload and TTL, connects to the target
(``timeout`` ms, 1000 if not positive), sends AUTH, SELECT and one RESTORE per key in one
write, and reads the replies; each key the target acknowledged is then deleted here unless
COPY.  Replies and errors are Redis's: OK, NOKEY when no key exists, ``Target instance
replied with error: ...``, ``IOERR error or timeout connecting to the client`` / ``reading to
target instance``.  Unlike Redis, the connection is not cached between calls.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shardis import errors
from shardis.commands.migrate import migrate_keys
from shardis.commands.strings import parse_int
from shardis.errors import ReplyError, raise_if_error
from shardis.resp import OK, Status, encode
from shardis.router.registry import Plan, coordinated

IOERR_CONNECT = "IOERR error or timeout connecting to the client"
IOERR_READ = "IOERR error or timeout reading to target instance"
IOERR_WRITE = "IOERR error or timeout writing to target instance"
KEYS_NEED_EMPTY_KEY = ("ERR When using MIGRATE KEYS option, the key argument must be set to "
                       "the empty string")


class Options:
    __slots__ = ("copy", "replace", "username", "password", "keys", "timeout", "db")


def parse(args: list[bytes]) -> Options:
    """The options, checked in Redis's order."""
    options = Options()
    options.copy = options.replace = False
    options.username = options.password = None
    options.keys = [args[3]]
    j = 6
    while j < len(args):
        option = args[j].lower()
        more = len(args) - 1 - j
        if option == b"copy":
            options.copy = True
        elif option == b"replace":
            options.replace = True
        elif option == b"auth":
            if not more:
                raise ReplyError(errors.SYNTAX)
            j += 1
            options.password = args[j]
        elif option == b"auth2":
            if more < 2:
                raise ReplyError(errors.SYNTAX)
            options.username, options.password = args[j + 1], args[j + 2]
            j += 2
        elif option == b"keys":
            if args[3]:
                raise ReplyError(KEYS_NEED_EMPTY_KEY)
            options.keys = args[j + 1:]
            break
        else:
            raise ReplyError(errors.SYNTAX)
        j += 1
    options.timeout = parse_int(args[5], errors.NOT_INTEGER)
    options.db = parse_int(args[4], errors.NOT_INTEGER)
    if options.timeout <= 0:
        options.timeout = 1000
    return options


def migrate_plan(router: Any, args: list[bytes]) -> Plan:
    parse(args)
    keys = [args[i] for i in migrate_keys(args)]
    workers = frozenset(router.worker_of(key) for key in keys)
    return Plan(workers=workers, exclusive=True)


@coordinated("migrate", migrate_plan)
async def migrate(router: Any, client: Any, args: list[bytes]) -> object:
    options = parse(args)
    found = await _dump_keys(router, options.keys)
    if not found:
        return Status(b"NOKEY")
    seconds = options.timeout / 1000
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(args[1].decode("latin-1"), int(args[2])), seconds)
    except ConnectionRefusedError:
        # Redis connects without blocking: a refused connection shows up at the first write
        raise ReplyError(IOERR_WRITE) from None
    except (OSError, ValueError, asyncio.TimeoutError):
        raise ReplyError(IOERR_CONNECT) from None
    try:
        return await _transfer(router, options, found, reader, writer, seconds)
    finally:
        writer.close()


async def _dump_keys(router: Any, keys: list[bytes]) -> list[tuple[bytes, int, bytes]]:
    """(key, ttl in ms or 0, DUMP payload) of the keys that exist (one round trip)."""
    requests = [(key, router.call(router.worker_of(key), [b"PTTL", key]),
                 router.call(router.worker_of(key), [b"DUMP", key])) for key in keys]
    found = []
    for key, ttl, payload in requests:
        ttl_ms, data = raise_if_error(await ttl), raise_if_error(await payload)
        if data is not None and ttl_ms != -2:
            found.append((key, max(ttl_ms, 1) if ttl_ms > 0 else 0, data))
    return found


async def _transfer(router: Any, options: Options, found: list[tuple[bytes, int, bytes]],
                    reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    seconds: float) -> object:
    commands: list[list[bytes]] = []
    if options.password is not None:
        commands.append([b"AUTH", *([options.username] if options.username else []),
                         options.password])
    commands.append([b"SELECT", b"%d" % options.db])
    for key, ttl, payload in found:
        commands.append([b"RESTORE", key, b"%d" % ttl, payload,
                         *([b"REPLACE"] if options.replace else [])])
    try:
        writer.write(b"".join(encode(command, 2) for command in commands))
        await asyncio.wait_for(writer.drain(), seconds)
    except (OSError, asyncio.TimeoutError):
        raise ReplyError(IOERR_WRITE) from None
    lines = []
    try:
        for _ in commands:
            line = await asyncio.wait_for(reader.readline(), seconds)
            if not line:
                break
            lines.append(line.rstrip(b"\r\n")[:1024])  # Redis reads a reply line into 1 KB
    except (OSError, ValueError, asyncio.TimeoutError):
        pass  # closed, a line past the reader's limit, or too slow: what was read counts
    setup = len(commands) - len(found)
    error = next((line for line in lines[:setup] if line.startswith(b"-")), None)
    acknowledged = []
    for (key, _, _), line in zip(found, lines[setup:]):
        if line.startswith(b"-"):
            error = error or line
        else:
            acknowledged.append(key)
    if error is not None:
        acknowledged = [] if lines[:setup] and error in lines[:setup] else acknowledged
    if not options.copy and acknowledged:
        await _delete(router, acknowledged)
    if error is not None:
        raise ReplyError("ERR Target instance replied with error: "
                         + error[1:].decode("utf-8", "replace"))
    if len(lines) < len(commands):
        raise ReplyError(IOERR_READ)
    return OK


async def _delete(router: Any, keys: list[bytes]) -> None:
    by_worker: dict[int, list[bytes]] = {}
    for key in keys:
        by_worker.setdefault(router.worker_of(key), []).append(key)
    for worker, worker_keys in by_worker.items():
        raise_if_error(await router.call(worker, [b"DEL", *worker_keys]))
