"""Authentication and ACL on the router: who each client is, what it may run, the ACL family.

Every client has a ``user`` (a :class:`~shardis.router.acl.User` of ``router.acl``) and two
booleans: ``authenticated`` (as Redis's ``c->authenticated``) and ``unrestricted``, true when
the client may run anything without a check (authenticated, or the default user open, and a
user with allcommands, allkeys and allchannels).  The router's dispatch consults
``unrestricted`` once per read: the common case pays nothing; every other client takes
:func:`refuse` for each command, in Redis's order (unknown command and arity errors first, then
NOAUTH, then NOPERM).

Users are changed in place (as Redis copies the new rules into the same user struct), so a
changed user's clients use the new rules at once; :func:`refresh_clients` recomputes their
``unrestricted``.  Deleting a user disconnects its clients, as ACL LOAD does for the users it
replaces.

The users are the whole server's, not this router's: ACL SETUSER, DELUSER, LOAD and CONFIG SET
requirepass store the change on worker 0 and every router installs it
(``shardis.router.aclsync``, through :func:`apply_changes` and :func:`replace_all`).  ACL LOG
stays per router.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from shardis import errors
from shardis.commands import help_reply, lookup
from shardis.commands.strings import parse_int
from shardis.errors import ReplyError
from shardis.resp import OK
from shardis.router import acl
from shardis.router.registry import Plan, coordinated, router_command
from shardis.router.server import on_config_set

log = logging.getLogger("shardis.router")

LOOPBACK = ("127.0.0.1", "::1")


# Setup ---------------------------------------------------------------------------------------
def create_store(config: dict[str, Any]) -> acl.AclStore:
    """The router's users at startup: requirepass, then the ACL file, which wins (as in Redis,
    where an aclfile makes requirepass ignored).  A bad ACL file stops the router."""
    store = acl.AclStore()
    store.set_requirepass(config.get("requirepass", ""))
    filename = config.get("aclfile", "")
    if filename:
        try:
            store.replace_users(read_acl_file(store, filename))
        except acl.AclRuleError as exc:
            log.error("Aborting startup because of ACL errors: %s", exc)
            raise SystemExit(1) from None
    return store


def read_acl_file(store: acl.AclStore, filename: str) -> dict[bytes, acl.User]:
    try:
        with open(filename, "rb") as fh:
            text = fh.read()
    except OSError as exc:
        raise acl.AclRuleError(
            f"Error loading ACLs, opening file '{filename}': {exc.strerror}") from None
    return store.parse_file(text, filename)


def write_acl_file(store: acl.AclStore, filename: str) -> bool:
    """ACL SAVE: a temporary file renamed over the old one, so readers never see half."""
    temporary = f"{filename}.tmp-{os.getpid()}-{int(time.time() * 1000)}"
    try:
        with open(temporary, "wb") as fh:
            fh.write(store.file_text())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, filename)
    except OSError as exc:
        log.warning("ACL SAVE failed: %s", exc)
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False
    return True


@on_config_set("requirepass")
async def _requirepass_changed(router: Any, value: str) -> None:
    def edit(store: acl.AclStore, lines: dict[bytes, bytes]) -> None:
        default = store.default.copy()
        default.apply(b"resetpass")
        default.apply(b">" + value.encode() if value else b"nopass")
        lines[b"default"] = _line(default)

    await router.aclsync.change(None, edit)


def _line(user: acl.User) -> bytes:
    return b"user " + user.name + b" " + user.describe()


def _hub_plan(router: Any, args: list[bytes]) -> Plan:
    return Plan(workers=frozenset((0,)))


# Installing users (local and remote changes alike: shardis.router.aclsync) --------------------
def apply_changes(router: Any, changed: dict[bytes, acl.User], removed: list[bytes],
                  current: Any) -> None:
    """New rules for ``changed`` users (in place: their clients keep the object; new ones are
    added), ``removed`` users deleted (their clients disconnected), as SETUSER and DELUSER do."""
    store = router.acl
    gone = [user for name in removed
            if name != b"default" and (user := store.deluser(name)) is not None]
    disconnect_users(router, current, gone)
    for name, user in changed.items():
        existing = store.users.get(name)
        if existing is None:
            store.users[name] = user
        else:
            before = existing.copy()
            existing.assign(user)
            _kill_pubsub_clients(router, current, existing, before)
        store.version += 1
    refresh_clients(router)


def replace_all(router: Any, users: dict[bytes, acl.User], current: Any) -> None:
    """Every user replaced, as ACL LOAD does: the clients of all but default disconnected."""
    disconnect_users(router, current, router.acl.replace_users(users))
    refresh_clients(router)


# Clients -------------------------------------------------------------------------------------
def client_connected(router: Any, client: Any) -> bool:
    """Give a new client the default user; False when protected mode refuses it."""
    store = router.acl
    client.user = store.default
    client.authenticated = store.default_open
    refresh(router, client)
    if (router.config.get("protected-mode", True) and store.default.nopass
            and client.addr.rpartition(":")[0] not in LOOPBACK):
        return False
    return True


def refresh(router: Any, client: Any) -> None:
    allowed = client.authenticated or router.acl.default_open
    client.unrestricted = allowed and client.user.unrestricted


def refresh_clients(router: Any) -> None:
    for client in router.clients.values():
        refresh(router, client)


def auth_required(router: Any, client: Any) -> bool:
    return not client.authenticated and not router.acl.default_open


def disconnect_users(router: Any, current: Any, users: list[acl.User]) -> None:
    """ACLFreeUserAndKillClients: the clients of deleted users go (the current one after its
    reply), after being put back to the unauthenticated default user."""
    doomed = {id(user) for user in users}
    for client in list(router.clients.values()):
        if id(client.user) not in doomed:
            continue
        client.user = router.acl.default
        client.authenticated = False
        client.unrestricted = False
        if client is current:
            client.closing = True
        elif client.transport is not None:
            client.transport.close()


# The check -----------------------------------------------------------------------------------
def refuse(router: Any, client: Any, args: list[bytes]) -> bool:
    """Answer NOAUTH or NOPERM for a command this client may not run (True), else False.

    Unknown commands and wrong arities are left to the normal path, which answers them first
    as Redis does.  A refused command inside MULTI makes EXEC fail (flagTransaction).
    """
    try:
        spec = lookup(args)
    except ReplyError:
        return False
    if auth_required(router, client):
        if "no_auth" in spec.flags:
            return False
        _deny(router, client, errors.NOAUTH, spec)
        return True
    result, position = client.user.check(spec, args)
    if result == acl.OK:
        return False
    context = "multi" if client.multi is not None else "toplevel"
    log_denial(router, client, result, context, spec, args, position)
    _deny(router, client, denial_text(result, spec), spec)
    return True


def _deny(router: Any, client: Any, message: str, spec: Any) -> None:
    if spec.name == "exec":
        # Redis's execCommandAbort: a refused EXEC discards the transaction (and the
        # watches), in MULTI or not, and says why.
        from shardis.router.transactions import end_transaction

        end_transaction(router, client)
        router.reply_error(client, errors.EXECABORT_BECAUSE + message)
        return
    if client.multi is not None:
        client.multi_dirty = True
    router.reply_error(client, message)


def denial_text(result: int, spec: Any) -> str:
    if result == acl.DENIED_CMD:
        return errors.NOPERM_COMMAND.format(spec.fullname)
    return errors.NOPERM_KEY if result == acl.DENIED_KEY else errors.NOPERM_CHANNEL


def exec_denial(client: Any, args: list[bytes], router: Any) -> str | None:
    """EXEC checks each queued command again (rules may have changed since it was queued)."""
    if client.unrestricted:
        return None
    spec = lookup(args)
    result, position = client.user.check(spec, args)
    if result == acl.OK:
        return None
    log_denial(router, client, result, "multi", spec, args, position)
    reason = errors.NOPERM_EXEC_REASONS[{acl.DENIED_CMD: 0, acl.DENIED_KEY: 1}.get(result, 2)]
    return errors.NOPERM_EXEC.format(reason)


def log_denial(router: Any, client: Any, result: int, context: str, spec: Any,
               args: list[bytes], position: int) -> None:
    from shardis.router.connection import client_info_line

    obj = spec.fullname.encode() if result == acl.DENIED_CMD else args[position]
    info = client_info_line(client, time.monotonic())
    router.acl.add_log(acl.LogEntry(acl.REASONS[result], context, obj, client.user.name, info))


def log_auth_failure(router: Any, client: Any, username: bytes, command: bytes) -> None:
    from shardis.router.connection import client_info_line

    context = "multi" if client.multi is not None else "toplevel"
    info = client_info_line(client, time.monotonic())
    router.acl.add_log(acl.LogEntry("auth", context, command, username, info))


def authenticate(router: Any, client: Any, username: bytes, password: bytes,
                 command: bytes) -> bool:
    """ACLAuthenticateUser: switch the client to the user, or log the failure."""
    user = router.acl.authenticate(username, password)
    if user is None:
        log_auth_failure(router, client, username, command)
        return False
    client.user = user
    client.authenticated = True
    refresh(router, client)
    return True


def script_rules(client: Any) -> bytes | None:
    """What a worker needs to check a script's calls: the user's ACL line; None when the
    client is unrestricted (nothing to check)."""
    if client.unrestricted:
        return None
    return b"user " + client.user.name + b" " + client.user.describe()


# AUTH ----------------------------------------------------------------------------------------
@router_command("auth")
def auth(router: Any, client: Any, args: list[bytes]) -> object:
    if len(args) > 3:
        raise ReplyError(errors.SYNTAX)
    if len(args) == 2:
        if router.acl.default.nopass:
            raise ReplyError(errors.AUTH_NO_PASSWORD)
        username, password = b"default", args[1]
    else:
        username, password = args[1], args[2]
    if not authenticate(router, client, username, password, args[0]):
        raise ReplyError(errors.WRONGPASS)
    return OK


# ACL -----------------------------------------------------------------------------------------
@coordinated("acl|setuser", _hub_plan)
async def acl_setuser(router: Any, client: Any, args: list[bytes]) -> object:
    name = args[2]
    if acl.has_spaces(name):
        raise ReplyError(errors.ACL_BAD_USERNAME)
    rules = _merge_selector_args(args[3:])

    def edit(store: acl.AclStore, lines: dict[bytes, bytes]) -> object:
        try:
            lines[name] = _line(store.staged_user(name, rules))
        except acl.AclRuleError as exc:
            raise ReplyError("ERR " + str(exc)) from None
        return OK

    return await router.aclsync.change(client, edit)


def _merge_selector_args(rules: list[bytes]) -> list[bytes]:
    """Redis joins ``(a`` ``b)`` into one selector rule; an unclosed one is an error."""
    merged: list[bytes] = []
    opened: list[bytes] | None = None
    for rule in rules:
        if opened is None and rule[:1] == b"(" and rule[-1:] != b")":
            opened = [rule]
        elif opened is not None:
            opened.append(rule)
            if rule[-1:] == b")":
                merged.append(b" ".join(opened))
                opened = None
        else:
            merged.append(rule)
    if opened is not None:
        start = opened[0].decode("utf-8", "replace")
        raise ReplyError(f"ERR Unmatched parenthesis in acl selector starting at '{start}'.")
    return merged


def _kill_pubsub_clients(router: Any, current: Any, user: acl.User, before: acl.User) -> None:
    """ACLKillPubsubClientsIfNeeded: clients subscribed to channels the user just lost go."""
    if user.allchannels:
        return
    if not before.allchannels and all(c in user.channels for c in before.channels):
        return
    for client in list(router.clients.values()):
        if client.user is not user or not client.subscribed:
            continue
        subs = client.subscriptions
        lost = any(not user.channel_allowed(p, True) for p in subs[b"p"]) or any(
            not user.channel_allowed(c, False) for kind in (b"c", b"s") for c in subs[kind])
        if lost and client.transport is not None:
            if client is current:
                client.closing = True
            else:
                client.transport.close()


@coordinated("acl|deluser", _hub_plan)
async def acl_deluser(router: Any, client: Any, args: list[bytes]) -> object:
    if b"default" in args[2:]:
        raise ReplyError(errors.ACL_DELETE_DEFAULT)

    def edit(store: acl.AclStore, lines: dict[bytes, bytes]) -> object:
        return sum(lines.pop(name, None) is not None for name in args[2:])

    return await router.aclsync.change(client, edit)


@router_command("acl|getuser")
def acl_getuser(router: Any, client: Any, args: list[bytes]) -> object:
    user = router.acl.users.get(args[2])
    return None if user is None else user.getuser()


@router_command("acl|list")
def acl_list(router: Any, client: Any, args: list[bytes]) -> object:
    return router.acl.list_lines()


@router_command("acl|users")
def acl_users(router: Any, client: Any, args: list[bytes]) -> object:
    return [user.name for user in router.acl.sorted_users()]


@router_command("acl|whoami")
def acl_whoami(router: Any, client: Any, args: list[bytes]) -> object:
    return client.user.name


@router_command("acl|cat")
def acl_cat(router: Any, client: Any, args: list[bytes]) -> object:
    if len(args) == 2:
        return [cat.encode() for cat in acl.CATEGORIES]
    if len(args) > 3:
        raise ReplyError(_subcommand_syntax(args))
    category = args[2].decode("latin-1").lower()
    if category not in acl.CATEGORIES:
        raise ReplyError(f"ERR Unknown category '{args[2][:128].decode('utf-8', 'replace')}'")
    members = acl.universe().categories[category]
    return [s.fullname.encode() for s in acl.universe().specs if s.fullname in members]


def _subcommand_syntax(args: list[bytes]) -> str:
    return (f"ERR unknown subcommand or wrong number of arguments for "
            f"'{args[1].decode('utf-8', 'replace')}'. Try ACL HELP.")


@router_command("acl|genpass")
def acl_genpass(router: Any, client: Any, args: list[bytes]) -> object:
    if len(args) > 3:
        raise ReplyError(_subcommand_syntax(args))
    bits = 256 if len(args) == 2 else parse_int(args[2], errors.NOT_INTEGER)
    if bits <= 0 or bits > 4096:
        raise ReplyError(errors.ACL_GENPASS_RANGE)
    return acl.genpass(bits)


@router_command("acl|log")
def acl_log(router: Any, client: Any, args: list[bytes]) -> object:
    if len(args) > 3:
        raise ReplyError(_subcommand_syntax(args))
    count = 10
    if len(args) == 3:
        if args[2].lower() == b"reset":
            router.acl.log.clear()
            return OK
        count = max(parse_int(args[2], errors.NOT_INTEGER), 0)
    now = time.time()
    return [entry.reply(now) for entry in router.acl.log[:count]]


@router_command("acl|dryrun")
def acl_dryrun(router: Any, client: Any, args: list[bytes]) -> object:
    user = router.acl.users.get(args[2])
    if user is None:
        raise ReplyError(f"ERR User '{args[2].decode('utf-8', 'replace')}' not found")
    target = args[3:]
    spec = acl.universe().find(target[0])
    if spec is not None and spec.subcommands and len(target) >= 2:
        spec = spec.subcommands.get(target[1].lower())
    if spec is None:
        raise ReplyError(f"ERR Command '{target[0].decode('utf-8', 'replace')}' not found")
    if not spec.arity_ok(len(target)):
        raise ReplyError(f"ERR wrong number of arguments for '{spec.fullname}' command")
    result, position = user.check(spec, target)
    if result == acl.DENIED_CMD:
        return f"This user has no permissions to run the '{spec.fullname}' command".encode()
    if result != acl.OK:
        kind = "key" if result == acl.DENIED_KEY else "channel"
        return (b"This user has no permissions to access the '" + target[position]
                + b"' " + kind.encode())
    return OK


@coordinated("acl|load", _hub_plan)
async def acl_load(router: Any, client: Any, args: list[bytes]) -> object:
    """This router's aclfile, for every router (they disconnect the replaced users' clients)."""
    filename = _acl_filename(router)
    try:
        users = read_acl_file(router.acl, filename)
    except acl.AclRuleError as exc:
        raise ReplyError("ERR " + str(exc)) from None
    users.setdefault(b"default", acl.default_user())
    loaded = {name: _line(user) for name, user in users.items()}

    def edit(store: acl.AclStore, lines: dict[bytes, bytes]) -> object:
        lines.clear()
        lines.update(loaded)
        return OK

    return await router.aclsync.change(client, edit, replaces=True)


@router_command("acl|save")
def acl_save(router: Any, client: Any, args: list[bytes]) -> object:
    if not write_acl_file(router.acl, _acl_filename(router)):
        raise ReplyError(errors.ACL_SAVE_FAILED)
    return OK


def _acl_filename(router: Any) -> str:
    filename = router.config.get("aclfile", "")
    if not filename:
        raise ReplyError(errors.ACL_NO_FILE)
    return filename


ACL_HELP = [
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
]


@router_command("acl|help")
def acl_help(router: Any, client: Any, args: list[bytes]) -> object:
    return help_reply(ACL_HELP)
