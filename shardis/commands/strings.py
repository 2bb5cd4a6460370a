"""String commands: worker-side operations over one shard's keyspace.

Modelled on Redis's t_string.c: ``set_generic`` serves SET, SETNX, SETEX and PSETEX; helpers
named ``..._or_error`` raise the reply error and so return early.  Cross-shard MSET/MGET are
split by the router (see the table's fan-out policy); MSETNX and LCS over two workers are
coordinated by ``shardis.router.strings``.
"""

from __future__ import annotations

import re

from shardis import errors
from shardis.commands import Fanout, command
from shardis.errors import ReplyError
from shardis.floats import incr_by_float
from shardis.lcs import LCS_LEN_AND_IDX, LCS_NOT_STRINGS, LCS_TOO_MUCH_MEMORY, lcs, table_too_big
from shardis.resp import OK
from shardis.worker.keyspace import EMBSTR_INT, Keyspace
from shardis.worker.types import ValueType, register_type

#: Redis's proto-max-bulk-len default: the largest string a command may create.
MAX_STRING = 512 * 1024 * 1024
LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)

_INT_RE = re.compile(rb"(?:0|-?[1-9][0-9]{0,19})\Z")


def parse_int(raw: bytes | bytearray, message: str = errors.NOT_INTEGER) -> int:
    """Redis's strict ``string2ll``: no spaces, no ``+``, no leading zeros, 64-bit range."""
    if _INT_RE.match(raw):
        value = int(raw)
        if LLONG_MIN <= value <= LLONG_MAX:
            return value
    raise ReplyError(message)


def is_int_encodable(value: bytes) -> bool:
    """Would Redis store this string with the ``int`` encoding?"""
    if len(value) <= 20 and _INT_RE.match(value):
        return LLONG_MIN <= int(value) <= LLONG_MAX
    return False


_STRING = ValueType(
    name=b"string",
    encoding=lambda value: b"raw",  # bytes are resolved with their key's hints in keys.py
    dump=bytes,
    load=lambda plain: plain,
)
register_type(bytes, _STRING)
register_type(bytearray, _STRING)


def check_length_or_error(size: int, extra: int) -> None:
    if size + extra > MAX_STRING:
        raise ReplyError(errors.STRING_TOO_LONG)


# SET and friends -----------------------------------------------------------------------------
_NX, _XX, _GET, _KEEPTTL, _PERSIST = 1, 2, 4, 8, 16
_EX, _PX, _EXAT, _PXAT = 32, 64, 128, 256
_ANY_EXPIRE = _EX | _PX | _EXAT | _PXAT
_EXPIRE_FLAGS = {b"EX": _EX, b"PX": _PX, b"EXAT": _EXAT, b"PXAT": _PXAT}


def parse_set_options(
    args: list[bytes], first: int, for_set: bool
) -> tuple[int, int, bytes | None]:
    """Parse SET/GETEX options like Redis: returns (flags, expire flag, expire argument).

    Conflicting options are a syntax error at the point where they conflict, as in Redis.
    """
    flags = 0
    expire_flag = 0
    expire_arg: bytes | None = None
    j = first
    argc = len(args)
    while j < argc:
        opt = args[j]
        if b"\0" in opt:
            opt = opt.split(b"\0", 1)[0]  # Redis compares options as C strings
        opt = opt.upper()
        has_next = j + 1 < argc
        if opt == b"NX" and for_set and not flags & _XX:
            flags |= _NX
        elif opt == b"XX" and for_set and not flags & _NX:
            flags |= _XX
        elif opt == b"GET" and for_set:
            flags |= _GET
        elif opt == b"KEEPTTL" and for_set and not flags & (_PERSIST | _ANY_EXPIRE):
            flags |= _KEEPTTL
        elif opt == b"PERSIST" and not for_set and not flags & (_ANY_EXPIRE | _KEEPTTL):
            flags |= _PERSIST
        elif (
            opt in _EXPIRE_FLAGS
            and has_next
            and not flags & (_KEEPTTL | _PERSIST | (_ANY_EXPIRE & ~_EXPIRE_FLAGS[opt]))
        ):
            expire_flag = _EXPIRE_FLAGS[opt]
            flags |= expire_flag
            expire_arg = args[j + 1]
            j += 1
        else:
            raise ReplyError(errors.SYNTAX)
        j += 1
    return flags, expire_flag, expire_arg


def deadline_or_error(db: Keyspace, expire_flag: int, raw: bytes, command_name: str) -> int:
    """Turn an EX/PX/EXAT/PXAT argument into an absolute Unix deadline in ms (Redis's checks)."""
    amount = parse_int(raw)
    in_seconds = expire_flag & (_EX | _EXAT)
    if amount <= 0 or (in_seconds and amount > LLONG_MAX // 1000):
        raise ReplyError(errors.INVALID_EXPIRE.format(command_name))
    if in_seconds:
        amount *= 1000
    if expire_flag & (_EX | _PX):
        amount += db.now_ms
    if amount > LLONG_MAX:
        raise ReplyError(errors.INVALID_EXPIRE.format(command_name))
    return amount


def set_generic(
    db: Keyspace,
    key: bytes,
    value: bytes,
    flags: int = 0,
    deadline: int | None = None,
    ok_reply: object = OK,
    abort_reply: object = None,
) -> object:
    """The heart of SET, SETNX, SETEX, PSETEX; ``deadline`` is absolute Unix ms."""
    old = db.get_string(key) if flags & _GET else None
    found = old is not None if flags & _GET else db.get(key) is not None
    if (flags & _NX and found) or (flags & _XX and not found):
        return old if flags & _GET else abort_reply
    db.set(key, value, keep_ttl=bool(flags & _KEEPTTL))
    if deadline is not None:
        db.set_deadline(key, deadline)
    return old if flags & _GET else ok_reply


@command("set", -3, "write denyoom", keys=(1, 1, 1), acl="write string slow", group="string")
def set_command(db: Keyspace, args: list[bytes]) -> object:
    if len(args) == 3:
        db.set(args[1], args[2])
        return OK
    flags, expire_flag, expire_arg = parse_set_options(args, 3, for_set=True)
    deadline = None
    if expire_arg is not None:
        deadline = deadline_or_error(db, expire_flag, expire_arg, "set")
    return set_generic(db, args[1], args[2], flags, deadline)


@command("setnx", 3, "write denyoom fast", keys=(1, 1, 1), acl="write string fast",
         group="string")
def setnx_command(db: Keyspace, args: list[bytes]) -> object:
    return set_generic(db, args[1], args[2], _NX, ok_reply=1, abort_reply=0)


@command("setex", 4, "write denyoom", keys=(1, 1, 1), acl="write string slow", group="string")
def setex_command(db: Keyspace, args: list[bytes]) -> object:
    deadline = deadline_or_error(db, _EX, args[2], "setex")
    return set_generic(db, args[1], args[3], 0, deadline)


@command("psetex", 4, "write denyoom", keys=(1, 1, 1), acl="write string slow", group="string")
def psetex_command(db: Keyspace, args: list[bytes]) -> object:
    deadline = deadline_or_error(db, _PX, args[2], "psetex")
    return set_generic(db, args[1], args[3], 0, deadline)


@command("get", 2, "readonly fast", keys=(1, 1, 1), acl="read string fast", group="string")
def get_command(db: Keyspace, args: list[bytes]) -> object:
    value = db.get(args[1])
    if value is None or type(value) is bytes or type(value) is bytearray:
        return value
    raise ReplyError(errors.WRONGTYPE)


@command("getex", -2, "write fast", keys=(1, 1, 1), acl="write string fast", group="string")
def getex_command(db: Keyspace, args: list[bytes]) -> object:
    flags, expire_flag, expire_arg = parse_set_options(args, 2, for_set=False)
    key = args[1]
    value = db.get_string(key)
    if value is None:
        return None
    if expire_arg is not None:
        deadline = deadline_or_error(db, expire_flag, expire_arg, "getex")
        if expire_flag & (_EXAT | _PXAT) and deadline <= db.now_ms:
            db.delete(key)
        else:
            db.set_deadline(key, deadline)
    elif flags & _PERSIST:
        db.persist(key)
    return value


@command("getdel", 2, "write fast", keys=(1, 1, 1), acl="write string fast", group="string")
def getdel_command(db: Keyspace, args: list[bytes]) -> object:
    value = db.get_string(args[1])
    if value is not None:
        db.delete(args[1])
    return value


@command("getset", 3, "write denyoom fast", keys=(1, 1, 1), acl="write string fast",
         group="string")
def getset_command(db: Keyspace, args: list[bytes]) -> object:
    old = db.get_string(args[1])
    db.set(args[1], args[2])
    return old


@command("strlen", 2, "readonly fast", keys=(1, 1, 1), acl="read string fast", group="string")
def strlen_command(db: Keyspace, args: list[bytes]) -> object:
    value = db.get_string(args[1])
    return 0 if value is None else len(value)


@command("append", 3, "write denyoom fast", keys=(1, 1, 1), acl="write string fast",
         group="string")
def append_command(db: Keyspace, args: list[bytes]) -> object:
    key, tail = args[1], args[2]
    value = db.get_string(key)
    if value is None:
        db.set(key, tail, keep_ttl=True)
        return len(tail)
    check_length_or_error(len(value), len(tail))
    if type(value) is bytes:
        # A bytearray grows in place (amortised O(1) appends) and is Redis's "raw" encoding.
        value = bytearray(value)
        db.set(key, value, keep_ttl=True)
    value += tail
    db.changed(key)
    return len(value)


@command("getrange", 4, "readonly", keys=(1, 1, 1), acl="read string slow", group="string")
def getrange_command(db: Keyspace, args: list[bytes]) -> object:
    start = parse_int(args[2])
    end = parse_int(args[3])
    value = db.get_string(args[1])
    if value is None:
        return b""
    return bytes(string_range(value, start, end))


@command("substr", 4, "readonly", keys=(1, 1, 1), acl="read string slow", group="string")
def substr_command(db: Keyspace, args: list[bytes]) -> object:
    return getrange_command(db, args)


def string_range(value: bytes | bytearray, start: int, end: int) -> bytes | bytearray:
    """GETRANGE's index arithmetic, negative indexes included."""
    length = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start = max(length + start, 0)
    if end < 0:
        end = max(length + end, 0)
    end = min(end, length - 1)
    if start > end or length == 0:
        return b""
    return value[start : end + 1]


@command("setrange", 4, "write denyoom", keys=(1, 1, 1), acl="write string slow",
         group="string")
def setrange_command(db: Keyspace, args: list[bytes]) -> object:
    key, patch = args[1], args[3]
    offset = parse_int(args[2])
    if offset < 0:
        raise ReplyError(errors.OFFSET_OUT_OF_RANGE)
    value = db.get_string(key)
    if value is None:
        if not patch:
            return 0
        check_length_or_error(offset, len(patch))
        value = bytearray(offset)
        db.set(key, value)
    else:
        if not patch:
            return len(value)
        check_length_or_error(offset, len(patch))
        if type(value) is bytes:
            value = bytearray(value)
            db.set(key, value, keep_ttl=True)
    end = offset + len(patch)
    if end > len(value):
        value.extend(bytes(end - len(value)))  # type: ignore[union-attr]
    value[offset:end] = patch  # type: ignore[index]
    db.changed(key)
    return len(value)


# Counters ------------------------------------------------------------------------------------
def incr_generic(db: Keyspace, key: bytes, increment: int) -> int:
    value = db.get_string(key)
    current = 0 if value is None else parse_int(value)
    result = current + increment
    if result > LLONG_MAX or result < LLONG_MIN:
        raise ReplyError(errors.OVERFLOW)
    db.set(key, b"%d" % result, keep_ttl=True)
    return result


@command("incr", 2, "write denyoom fast", keys=(1, 1, 1), acl="write string fast",
         group="string")
def incr_command(db: Keyspace, args: list[bytes]) -> object:
    return incr_generic(db, args[1], 1)


@command("decr", 2, "write denyoom fast", keys=(1, 1, 1), acl="write string fast",
         group="string")
def decr_command(db: Keyspace, args: list[bytes]) -> object:
    return incr_generic(db, args[1], -1)


@command("incrby", 3, "write denyoom fast", keys=(1, 1, 1), acl="write string fast",
         group="string")
def incrby_command(db: Keyspace, args: list[bytes]) -> object:
    return incr_generic(db, args[1], parse_int(args[2]))


@command("decrby", 3, "write denyoom fast", keys=(1, 1, 1), acl="write string fast",
         group="string")
def decrby_command(db: Keyspace, args: list[bytes]) -> object:
    decrement = parse_int(args[2])
    if decrement == LLONG_MIN:
        raise ReplyError("ERR decrement would overflow")
    return incr_generic(db, args[1], -decrement)


@command("incrbyfloat", 3, "write denyoom fast", keys=(1, 1, 1), acl="write string fast",
         group="string")
def incrbyfloat_command(db: Keyspace, args: list[bytes]) -> object:
    key = args[1]
    result = incr_by_float(db.get_string(key), args[2])
    db.set(key, result, keep_ttl=True)
    db.string_hints[key] = EMBSTR_INT  # Redis stores the text as embstr, even "3"
    return result


# Multi-key -----------------------------------------------------------------------------------
@command("mget", -2, "readonly fast", keys=(1, -1, 1), fanout=Fanout.SPLIT_CONCAT,
         acl="read string fast", group="string", tips="request_policy:multi_shard")
def mget_command(db: Keyspace, args: list[bytes]) -> object:
    replies = []
    for key in args[1:]:
        value = db.get(key)
        replies.append(value if type(value) is bytes or type(value) is bytearray else None)
    return replies


def mset_generic(db: Keyspace, args: list[bytes], nx: bool) -> object:
    """MSET and MSETNX (all keys on this shard): with ``nx``, nothing is set if any key exists."""
    if len(args) % 2 == 0:
        raise ReplyError(errors.wrong_arity(args[0].decode(errors="replace").lower()))
    if nx:
        for j in range(1, len(args), 2):
            if db.get(args[j]) is not None:
                return 0
    for j in range(1, len(args), 2):
        db.set(args[j], args[j + 1])
    return 1 if nx else OK


@command("mset", -3, "write denyoom", keys=(1, -1, 2), fanout=Fanout.SPLIT_ALL_OK,
         acl="write string slow", group="string",
         tips="request_policy:multi_shard response_policy:all_succeeded")
def mset_command(db: Keyspace, args: list[bytes]) -> object:
    return mset_generic(db, args, nx=False)


@command("msetnx", -3, "write denyoom", keys=(1, -1, 2), fanout=Fanout.COORDINATED,
         acl="write string slow", group="string",
         tips="request_policy:multi_shard response_policy:agg_min")
def msetnx_command(db: Keyspace, args: list[bytes]) -> object:
    return mset_generic(db, args, nx=True)


# LCS -----------------------------------------------------------------------------------------

@command("lcs", -3, "readonly", keys=(1, 2, 1), fanout=Fanout.COORDINATED,
         acl="read string slow", group="string")
def lcs_command(db: Keyspace, args: list[bytes]) -> object:
    a = db.get(args[1])
    b = db.get(args[2])
    return lcs_reply(a, b, args)


def lcs_reply(a: object, b: object, args: list[bytes]) -> object:
    """LCS's reply for the two values (None for a missing key), shared by worker and router."""
    for value in (a, b):
        if value is not None and type(value) is not bytes and type(value) is not bytearray:
            raise ReplyError(LCS_NOT_STRINGS)
    want_len = want_idx = with_match_len = False
    min_match_len = 0
    j = 3
    while j < len(args):
        opt = args[j].upper()
        if opt == b"IDX":
            want_idx = True
        elif opt == b"LEN":
            want_len = True
        elif opt == b"WITHMATCHLEN":
            with_match_len = True
        elif opt == b"MINMATCHLEN" and j + 1 < len(args):
            min_match_len = max(parse_int(args[j + 1]), 0)
            j += 1
        else:
            raise ReplyError(errors.SYNTAX)
        j += 1
    if want_len and want_idx:
        raise ReplyError(LCS_LEN_AND_IDX)
    a, b = bytes(a or b""), bytes(b or b"")  # type: ignore[arg-type]
    if table_too_big(len(a), len(b)):
        raise ReplyError(LCS_TOO_MUCH_MEMORY)
    string, length, matches = lcs(a, b, want_idx, min_match_len)
    if want_idx:
        entries = []
        for a_range, b_range, match_len in matches:
            entry = [list(a_range), list(b_range)]
            if with_match_len:
                entry.append(match_len)
            entries.append(entry)
        return {b"matches": entries, b"len": length}
    if want_len:
        return length
    return string


