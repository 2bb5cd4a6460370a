"""Connection commands, answered by the router alone: PING, ECHO, QUIT, SELECT, HELLO, RESET,
AUTH and the CLIENT family."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shardis import REDIS_VERSION, errors
from shardis.commands import help_reply
from shardis.commands.strings import parse_int
from shardis.errors import ReplyError
from shardis.resp import OK, PONG, Status, Verbatim
from shardis.router.client import CURRENT_DB
from shardis.router.clients import client_type, type_of
from shardis.router.registry import router_command
from shardis.router.security import authenticate


@router_command("ping")
def ping(router: Any, client: Any, args: list[bytes]) -> object:
    if len(args) > 2:
        raise ReplyError(errors.wrong_arity("ping"))
    if client.subscribed and client.proto == 2:  # Redis's subscribed-mode PING
        return [b"pong", args[1] if len(args) == 2 else b""]
    return args[1] if len(args) == 2 else PONG


@router_command("echo")
def echo(router: Any, client: Any, args: list[bytes]) -> object:
    return args[1]


@router_command("quit")
def quit_(router: Any, client: Any, args: list[bytes]) -> object:
    client.closing = True
    return OK


@router_command("select")
def select(router: Any, client: Any, args: list[bytes]) -> object:
    """The client's later commands run in that database.  Inside EXEC (an operation's task)
    the transaction's later commands too."""
    index = parse_int(args[1], errors.NOT_INTEGER)
    if not 0 <= index < router.config.get("databases", 16):
        raise ReplyError(errors.DB_OUT_OF_RANGE)
    client.db = index
    if asyncio.current_task() is not None:
        CURRENT_DB.set(index)
    return OK


@router_command("reset")
def reset(router: Any, client: Any, args: list[bytes]) -> object:
    from shardis.router.tracking import disable
    from shardis.router.transactions import end_transaction

    end_transaction(router, client)
    router.pubsub.client_gone(client)
    disable(router, client)
    client.db = 0
    if client.reply_filtered:
        client.set_reply_mode(b"reset")  # CLIENT REPLY OFF ends, as in Redis
    client.proto = 2
    client.name = None
    return Status(b"RESET")


@router_command("hello")
def hello(router: Any, client: Any, args: list[bytes]) -> object:
    version = 0
    if len(args) >= 2:
        version = parse_int(args[1], "ERR Protocol version is not an integer or out of range")
        if version < 2 or version > 3:
            raise ReplyError(errors.NOPROTO)
    j = 2
    while j < len(args):
        more = len(args) - 1 - j
        opt = args[j].upper()
        if opt == b"AUTH" and more >= 2:
            if not authenticate(router, client, args[j + 1], args[j + 2], args[0]):
                raise ReplyError(errors.WRONGPASS)
            j += 2
        elif opt == b"SETNAME" and more:
            # Redis names the client as soon as it parses the option, even if a later one fails.
            check_client_name(args[j + 1])
            client.name = args[j + 1] or None
            j += 1
        else:
            raise ReplyError(
                f"ERR Syntax error in HELLO option '{args[j].decode(errors='replace')}'"
            )
        j += 1
    if not client.authenticated:
        raise ReplyError(errors.NOAUTH_HELLO)
    if version:
        client.proto = version
    return {
        b"server": b"redis",
        b"version": REDIS_VERSION.encode(),
        b"proto": client.proto,
        b"id": client.id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }


BAD_NAME = "ERR Client names cannot contain spaces, newlines or special characters."


def check_client_name(name: bytes) -> None:
    if any(c < 0x21 or c > 0x7E for c in name):
        raise ReplyError(BAD_NAME)


@router_command("client|setname")
def client_setname(router: Any, client: Any, args: list[bytes]) -> object:
    check_client_name(args[2])
    client.name = args[2] or None
    return OK


@router_command("client|getname")
def client_getname(router: Any, client: Any, args: list[bytes]) -> object:
    return client.name


@router_command("client|id")
def client_id(router: Any, client: Any, args: list[bytes]) -> object:
    return client.id


@router_command("client|setinfo")
def client_setinfo(router: Any, client: Any, args: list[bytes]) -> object:
    """Redis 7.2's CLIENT SETINFO, which redis-py's handshake sends."""
    attribute = args[2].upper()
    value = args[3]
    if attribute not in (b"LIB-NAME", b"LIB-VER"):
        raise ReplyError(
            f"ERR Unrecognized option '{args[2].decode(errors='replace')}'"
        )
    if any(c < 0x21 or c > 0x7E for c in value):
        raise ReplyError(
            f"ERR {attribute.decode().lower()} cannot contain spaces, newlines or special "
            "characters."
        )
    if attribute == b"LIB-NAME":
        client.lib_name = value
    else:
        client.lib_ver = value
    return OK


def client_flags(client: Any, blocked: set[int]) -> str:
    """Redis's flag letters, in its order: P pub/sub, x MULTI, b blocked, c closing after the
    reply, e no-evict; N for none."""
    flags = "".join(letter for letter, on in (
        ("P", client.subscribed),
        ("x", client.multi is not None),
        ("b", client.id in blocked),
        ("c", client.closing),
        ("e", client.no_evict),
        ("t", client.tracking is not None),
        ("R", client.tracking is not None and client.tracking.broken),
        ("B", client.tracking is not None and client.tracking.bcast),
    ) if on)
    return flags or "N"


def last_command(client: Any) -> str:
    """``cmd=``: the last command's full name in lower case; ``NULL`` before any, as Redis."""
    name = client.last_command.decode(errors="replace")
    return name if name == "NULL" else name.lower()


def client_info_line(client: Any, now: float, blocked: set[int] | None = None) -> str:
    """One line of CLIENT LIST / CLIENT INFO: Redis 7.0's fields in its order (the buffer and
    memory fields, which have no counterpart here, are 0).  ``blocked``: the ids of blocked
    clients, computed once for a whole CLIENT LIST."""
    if blocked is None:
        blocked = client.router.blocking.blocked_ids()
    name = (client.name or b"").decode(errors="replace")
    subs = client.subscriptions
    multi = -1 if client.multi is None else len(client.multi)
    return (
        f"id={client.id} addr={client.addr} laddr={client.laddr} fd={client.fd} name={name} "
        f"age={int(now - client.created)} idle={int(now - client.last_active)} "
        f"flags={client_flags(client, blocked)} db={client.db} sub={len(subs[b'c'])} psub={len(subs[b'p'])} "
        f"ssub={len(subs[b's'])} multi={multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 "
        f"rbs=0 rbp=0 obl=0 oll={len(client.replies)} omem=0 tot-mem=0 events=r "
        f"cmd={last_command(client)} "
        f"user={client.user.name.decode(errors='replace')} "
        f"redir={client.tracking.redirect if client.tracking is not None else -1} "
        f"resp={client.proto}"
        + (f" lib-name={client.lib_name.decode()}" if client.lib_name else "")
        + (f" lib-ver={client.lib_ver.decode()}" if client.lib_ver else "")
    )


@router_command("client|info")
def client_info(router: Any, client: Any, args: list[bytes]) -> object:
    return Verbatim((client_info_line(client, time.monotonic()) + "\n").encode())


@router_command("client|list")
def client_list(router: Any, client: Any, args: list[bytes]) -> object:
    if len(args) != 2:
        if len(args) == 4 and args[2].upper() == b"TYPE":
            kind = client_type(args[3])
            clients = [c for c in router.clients.values() if type_of(c) == kind]
        elif len(args) > 3 and args[2].upper() == b"ID":
            ids = [parse_int(raw, "ERR Invalid client ID") for raw in args[3:]]
            clients = [router.clients[i] for i in ids if i in router.clients]
        else:
            raise ReplyError(errors.SYNTAX)
    else:
        clients = list(router.clients.values())
    now = time.monotonic()
    blocked = router.blocking.blocked_ids()
    lines = (client_info_line(c, now, blocked) + "\n" for c in clients)
    return Verbatim("".join(lines).encode())


#: Redis 7.0's CLIENT HELP, plus Redis 7.2's SETINFO, which redis-py sends.
CLIENT_HELP = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
]


@router_command("client|help")
def client_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(CLIENT_HELP)
