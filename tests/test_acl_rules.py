"""The ACL user model and rule language (shardis.router.acl), without a server.

The texts checked here were read from redis-server 7.0.15 (ACL LIST / GETUSER); the
differential corpus tests/test_diff_acl.py compares them live.
"""

from __future__ import annotations

import pytest

from shardis.commands import load_families, lookup
from shardis.router import acl

load_families()


def user(*rules: bytes) -> acl.User:
    store = acl.AclStore()
    return store.setuser(b"u", list(rules))[0]


def check(u: acl.User, *args: bytes) -> int:
    return u.check(lookup(list(args)), list(args))[0]


def test_default_user_is_open_and_unrestricted():
    default = acl.default_user()
    assert default.describe() == b"on nopass ~* &* +@all"
    assert default.unrestricted


def test_new_user_is_off_with_nothing():
    u = user()
    assert u.describe() == b"off resetchannels -@all"
    assert not u.unrestricted
    assert check(u, b"get", b"k") == acl.DENIED_CMD


def test_describe_matches_redis():
    u = user(b"on", b">pw", b"~foo*", b"%R~bar*", b"+@read", b"-@dangerous", b"+select|0",
             b"&ch")
    # Redis 7.0.15: "... resetchannels &ch -@all +@read -sort_ro -keys +select|0"; the single
    # commands come in its command table's hash order, which a random seed decides.
    head, _, rules = u.describe().partition(b" resetchannels &ch -@all +@read ")
    assert head.endswith(b" ~foo* %R~bar*")
    assert sorted(rules.split()) == [b"+select|0", b"-keys", b"-sort_ro"]
    assert user(b"+@all", b"-@dangerous", b"-get").getuser()[b"commands"] == (
        b"+@all -@dangerous -get")
    assert user(b"-@all", b"+@string", b"+client", b"-client|id").getuser()[b"commands"] == (
        b"-@all +@string +client -client|id")


def test_describe_round_trips():
    u = user(b"on", b"nopass", b"+@all", b"-@slow", b"+client|id", b"%W~w*", b"&a*")
    again = acl.user_from_line(b"user u " + u.describe())
    assert again.describe() == u.describe()
    assert again.allowed == u.allowed


@pytest.mark.parametrize(("rule", "reason"), [
    (b"foo", acl.E_SYNTAX),
    (b"+nosuch", acl.E_UNKNOWN),
    (b"+@nosuch", acl.E_UNKNOWN),
    (b"<nope", acl.E_NO_SUCH_PASSWORD),
    (b"#abc", acl.E_BAD_HASH),
    (b"+client|id|x", acl.E_FIRSTARG_OF_SUB),
    (b"+get|", acl.E_SYNTAX),
    (b"%X~a", acl.E_SYNTAX),
    (b"(~a)", acl.E_SELECTORS),
])
def test_rule_errors(rule, reason):
    with pytest.raises(acl.AclRuleError) as info:
        acl.User(b"u").apply(rule)
    assert str(info.value) == reason


def test_patterns_after_star_are_refused():
    with pytest.raises(acl.AclRuleError, match="allkeys"):
        user(b"~*", b"~a")
    with pytest.raises(acl.AclRuleError, match="allchannels"):
        user(b"&*", b"&a")


def test_setuser_is_all_or_nothing():
    store = acl.AclStore()
    store.setuser(b"u", [b"on", b"+get"])
    with pytest.raises(acl.AclRuleError, match="Error in ACL SETUSER modifier 'bad'"):
        store.setuser(b"u", [b"+set", b"bad"])
    assert store.users[b"u"].allowed == {"get"}


def test_keys_read_and_write():
    u = user(b"+@all", b"%R~r*", b"%W~w*", b"~rw*")
    assert check(u, b"get", b"r1") == acl.OK
    assert check(u, b"set", b"r1", b"v") == acl.DENIED_KEY
    assert check(u, b"get", b"w1") == acl.DENIED_KEY
    assert check(u, b"set", b"rw1", b"v") == acl.OK
    assert u.check(lookup([b"mget", b"rw", b"x"]), [b"mget", b"rw", b"x"]) == (acl.DENIED_KEY, 2)


def test_channels():
    u = user(b"+@all", b"~*", b"&news.*")
    assert check(u, b"publish", b"news.1", b"m") == acl.OK
    assert check(u, b"publish", b"other", b"m") == acl.DENIED_CHANNEL
    assert check(u, b"psubscribe", b"news.*") == acl.OK
    assert check(u, b"psubscribe", b"news.1*") == acl.DENIED_CHANNEL


def test_container_takes_subcommands_and_first_args():
    u = user(b"+client", b"-client|list")
    assert check(u, b"client", b"id") == acl.OK
    assert check(u, b"client", b"list") == acl.DENIED_CMD
    first = user(b"+select|0")
    assert check(first, b"select", b"0") == acl.OK
    assert check(first, b"select", b"1") == acl.DENIED_CMD


def test_no_auth_commands_always_pass():
    assert check(user(), b"auth", b"a", b"b") == acl.OK


def test_authenticate_and_requirepass():
    store = acl.AclStore()
    assert store.default_open
    store.set_requirepass("s3cret")
    assert not store.default_open
    assert store.authenticate(b"default", b"s3cret") is store.default
    assert store.authenticate(b"default", b"bad") is None
    store.setuser(b"off", [b">pw"])
    assert store.authenticate(b"off", b"pw") is None  # disabled users cannot log in
    store.set_requirepass("")
    assert store.default_open


def test_acl_file_parse_errors_and_round_trip():
    store = acl.AclStore()
    store.setuser(b"bob", [b"on", b">pw", b"~k*", b"+get"])
    users = acl.AclStore().parse_file(store.file_text(), "f.acl")
    assert users[b"bob"].describe() == store.users[b"bob"].describe()
    with pytest.raises(acl.AclRuleError) as info:
        store.parse_file(b"user a on +nosuch\nfoo\nuser a\n", "f.acl")
    assert str(info.value) == (
        "f.acl:1: Error in applying operation '+nosuch': Unknown command or category name in "
        "ACL. f.acl:2 should start with user keyword followed by the username. WARNING: "
        "Duplicate user 'a' found on line 3. WARNING: ACL errors detected, no change to the "
        "previously active ACL rules was performed")


def test_log_groups_same_events():
    store = acl.AclStore()
    for _ in range(3):
        store.add_log(acl.LogEntry("command", "toplevel", b"get", b"u", "id=1"))
    store.add_log(acl.LogEntry("key", "toplevel", b"k", b"u", "id=1"))
    assert [(e.reason, e.count) for e in store.log] == [("key", 1), ("command", 3)]


def test_genpass_length():
    assert len(acl.genpass(256)) == 64
    assert len(acl.genpass(5)) == 2
