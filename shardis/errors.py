"""Every error reply shardis sends, with Redis 7's exact text and prefix.

Command code raises :class:`ReplyError` (the ``...OrReply`` pattern of Redis: reply with an error
and return early); the worker or the router turns it into a RESP error.  Keeping the texts here
means a differential test failure on an error string is fixed in one place.
"""

from __future__ import annotations


class ReplyError(Exception):
    """An error reply.  ``message`` carries the prefix (``ERR``, ``WRONGTYPE``...) and no CRLF."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Generic -------------------------------------------------------------------------------------
SYNTAX = "ERR syntax error"
#: maxmemory reached with nothing to evict, for a command that may grow memory.
OOM = "OOM command not allowed when used memory > 'maxmemory'."
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NO_SUCH_KEY = "ERR no such key"
#: Redis Cluster's answer for a slot no node serves: here, a worker that turned out to be
#: another shard than its place in the router's --connect list.
CLUSTERDOWN_UNSERVED = "CLUSTERDOWN Hash slot not served"
LOADING = "LOADING Redis is loading the dataset in memory"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
OUT_OF_RANGE = "ERR value is out of range"
NOT_POSITIVE = "ERR value is out of range, must be positive"
INDEX_OUT_OF_RANGE = "ERR index out of range"
SAME_OBJECT = "ERR source and destination objects are the same"
OVERFLOW = "ERR increment or decrement would overflow"
NAN_OR_INF = "ERR increment would produce NaN or Infinity"
STRING_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
OFFSET_OUT_OF_RANGE = "ERR offset is out of range"
DB_OUT_OF_RANGE = "ERR DB index is out of range"
EXECABORT = "EXECABORT Transaction discarded because of previous errors."
EXECABORT_BECAUSE = "EXECABORT Transaction discarded because of: "
NOAUTH = "NOAUTH Authentication required."
BUSYKEY = "BUSYKEY Target key name already exists."
NOPROTO = "NOPROTO unsupported protocol version"
INVALID_EXPIRE = "ERR invalid expire time in '{}' command"
CROSS_DB_COPY = "ERR Copying to another database is not allowed in cluster mode"

# Limits --------------------------------------------------------------------------------------
MAX_CLIENTS = "ERR max number of clients reached"

# Protocol ------------------------------------------------------------------------------------
PROTO_UNBALANCED_QUOTES = "ERR Protocol error: unbalanced quotes in request"
PROTO_TOO_BIG_INLINE = "ERR Protocol error: too big inline request"
PROTO_INVALID_MULTIBULK = "ERR Protocol error: invalid multibulk length"
PROTO_INVALID_BULK = "ERR Protocol error: invalid bulk length"
PROTO_EXPECTED_DOLLAR = "ERR Protocol error: expected '$', got '{}'"

# Hashes and sets -----------------------------------------------------------------------------
HASH_NOT_INTEGER = "ERR hash value is not an integer"
NUMKEYS_NOT_POSITIVE = "ERR numkeys should be greater than 0"
NUMKEYS_TOO_BIG = "ERR Number of keys can't be greater than number of args"
LIMIT_NEGATIVE = "ERR LIMIT can't be negative"


def out_of_range(low: int, high: int) -> str:
    """Redis 7.0's ``getRangeLongFromObjectOrReply`` text (its grammar slip included)."""
    return f"ERR value is out of range, value must between {low} and {high}"


# OBJECT --------------------------------------------------------------------------------------
LRU_NOT_SELECTED = (
    "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when "
    "switching between policies at runtime LRU and LFU data will take some time to adjust."
)
LFU_NOT_SELECTED = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
    "that when switching between policies at runtime LRU and LFU data will take some time to "
    "adjust."
)


def raise_if_error(value: object) -> object:
    """A decoded worker reply, raised if it is an error (router-side coordination)."""
    if type(value) is ReplyError:
        raise value
    return value


def unknown_command(name: bytes, args: list[bytes]) -> str:
    """Redis's text for an unknown command: name and the first arguments, quoted, CR/LF blanked."""
    shown = ""
    for arg in args:
        if len(shown) >= 128:
            break
        shown += "'" + arg_text(arg)[: 128 - len(shown)] + "' "
    message = f"ERR unknown command '{arg_text(name)[:128]}', with args beginning with: {shown}"
    return _blank_newlines(message)


def unknown_subcommand(container: bytes, sub: bytes) -> str:
    """Redis's text for ``CLIENT FOO``: points the user at the container's HELP."""
    message = (
        f"ERR unknown subcommand '{arg_text(sub)[:128]}'. Try {arg_text(container).upper()} HELP."
    )
    return _blank_newlines(message)


def subcommand_syntax(args: list[bytes]) -> str:
    """Redis's ``addReplySubcommandSyntaxError``: a subcommand whose table arity passed but
    whose handler wants another count (``PUBSUB CHANNELS a b``)."""
    message = (
        f"ERR unknown subcommand or wrong number of arguments for '{arg_text(args[1])[:128]}'. "
        f"Try {arg_text(args[0]).upper()} HELP."
    )
    return _blank_newlines(message)


def wrong_arity(fullname: str) -> str:
    """``fullname`` is ``get`` or ``client|setname``, as Redis names subcommands."""
    return f"ERR wrong number of arguments for '{fullname}' command"


def arg_text(raw: bytes) -> str:
    """User bytes for an error message; C's ``%s`` stops at a NUL byte, and so do we."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _blank_newlines(message: str) -> str:
    return message.replace("\r", " ").replace("\n", " ")


# Bitmaps -------------------------------------------------------------------------------------
BIT_OFFSET = "ERR bit offset is not an integer or out of range"
BIT_VALUE = "ERR bit is not an integer or out of range"
BIT_ARGUMENT = "ERR The bit argument must be 1 or 0."
BITOP_NOT_ONE_KEY = "ERR BITOP NOT must be called with a single source key."
BITFIELD_TYPE = (
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but "
    "i64 is."
)
BITFIELD_OVERFLOW = "ERR Invalid OVERFLOW type specified"
BITFIELD_RO_GET_ONLY = "ERR BITFIELD_RO only supports the GET subcommand"


# Authentication and ACL (Redis 7.0's acl.c, server.c, multi.c, script.c) -----------------------
NOAUTH_HELLO = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"  # noqa: E501
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
AUTH_NO_PASSWORD = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
NOPERM_COMMAND = "NOPERM this user has no permissions to run the '{}' command"
NOPERM_KEY = "NOPERM this user has no permissions to access one of the keys used as arguments"
NOPERM_CHANNEL = (
    "NOPERM this user has no permissions to access one of the channels used as arguments"
)
NOPERM_EXEC = (
    "NOPERM ACLs rules changed between the moment the transaction was accumulated and the "
    "EXEC call. This command is no longer allowed for the following reason: {}"
)
NOPERM_EXEC_REASONS = (
    "no permission to execute the command or subcommand",
    "no permission to touch the specified keys",
    "no permission to access one of the channels used as arguments",
)
#: scriptVerifyACL: "The user executing the script " + getAclErrorMessage().
SCRIPT_ACL_REASONS = (
    "can't run this command or subcommand",
    "can't access at least one of the keys mentioned in the command arguments",
    "can't publish to the channel mentioned in the command",
)
PROTO_UNAUTH_MULTIBULK = "ERR Protocol error: unauthenticated multibulk length"
PROTO_UNAUTH_BULK = "ERR Protocol error: unauthenticated bulk length"
ACL_NO_FILE = (
    "ERR This Redis instance is not configured to use an ACL file. You may want to specify "
    "users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a "
    "Redis configuration file set) in order to store users in the Redis configuration."
)
ACL_SAVE_FAILED = (
    "ERR There was an error trying to save the ACLs. Please check the server logs for more "
    "information"
)
ACL_DELETE_DEFAULT = "ERR The 'default' user cannot be removed"
ACL_BAD_USERNAME = "ERR Usernames can't contain spaces or null characters"
ACL_GENPASS_RANGE = (
    "ERR ACL GENPASS argument must be the number of bits for the output password, a positive "
    "number up to 4096"
)
DENIED_PROTECTED = (
    "DENIED Redis is running in protected mode because protected mode is enabled and no "
    "password is set for the default user. In this mode connections are only accepted from "
    "the loopback interface. If you want to connect from external computers to Redis you may "
    "adopt one of the following solutions: 1) Just disable protected mode sending the command "
    "'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the "
    "same host the server is running, however MAKE SURE Redis is not publicly accessible from "
    "internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively "
    "you can just disable the protected mode by editing the Redis configuration file, and "
    "setting the protected mode option to 'no', and then restarting the server. 3) If you "
    "started the server manually just for testing, restart it with the '--protected-mode no' "
    "option. 4) Setup a an authentication password for the default user. NOTE: You only need "
    "to do one of the above things in order for the server to start accepting connections from "
    "the outside."
)
