"""Differential corpus: AUTH, HELLO AUTH, requirepass, the ACL family and NOPERM errors, byte
for byte against redis-server 7.0 in RESP2 and RESP3.

ACL state is server-wide, so this module has its own pair of servers, and every test starts
from the default state (no users but an open default user, no requirepass, empty ACL LOG).
Scripts that need an unauthenticated connection run in RESP2 only (the harness's RESP3
reconnect says HELLO 3, which needs authentication).  ACL LOG is compared by shape (ages and
client details differ); ACL GENPASS likewise.
"""

from __future__ import annotations

import pytest

from tests.differential import check, cmd, parametrize, raw, script, type_only
from tests.resp_client import RawClient
from tests.servers import start_redis, start_shardis

PW = "pw"


def reset_state(port: int) -> None:
    with RawClient(port) as client:
        client.call("AUTH", PW)
        client.call("CONFIG", "SET", "requirepass", "")
        client.call("ACL", "SETUSER", "default", "reset", "on", "nopass", "~*", "&*", "+@all")
        for name in client.call("ACL", "USERS").split(b"\r\n")[2::2]:
            if name and name != b"default":
                client.call("ACL", "DELUSER", name)
        client.call("ACL", "LOG", "RESET")


@pytest.fixture(scope="module")
def acl_oracle():
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def acl_target():
    server = start_shardis(2)
    yield server
    server.stop()


SCRIPTS = [
    script(
        "redis_acl_check_cmd",
        ["ACL", "SETUSER", "lim", "on", ">p", "+eval", "+get", "~k*"],
        ["AUTH", "lim", "p"],
        ["EVAL", "return redis.acl_check_cmd('get', 'k1')", "0"],
        ["EVAL", "return redis.acl_check_cmd('get', 'other')", "0"],
        ["EVAL", "return redis.acl_check_cmd('set', 'k1', 'v')", "0"],
        ["EVAL", "return redis.acl_check_cmd('nosuch')", "0"],
        ["EVAL", "return redis.acl_check_cmd()", "0"],
        ["AUTH", "default", "x"],
        ["EVAL", "return redis.acl_check_cmd('set', 'k1', 'v')", "0"],
        ["ACL", "DELUSER", "lim"],
        protocols=(2,),
    ),
    script(
        "setuser_getuser_list",
        ["ACL", "SETUSER", "alice"],
        ["ACL", "LIST"],
        ["ACL", "GETUSER", "alice"],
        ["ACL", "SETUSER", "bob", "on", ">pw", "~foo*", "%R~bar*", "%W~w*", "+get", "+@string",
         "-@dangerous", "+select|0", "&ch", "&ch2"],
        ["ACL", "GETUSER", "bob"],
        ["ACL", "SETUSER", "bob", "<pw", "#" + "a" * 64, "nopass", "resetkeys", "%RW~k"],
        ["ACL", "GETUSER", "bob"],
        ["ACL", "SETUSER", "c", "+@all", "-@dangerous", "-get", "allkeys", "allchannels"],
        ["ACL", "GETUSER", "c"],
        ["ACL", "SETUSER", "d", "allcommands", "-@slow", "skip-sanitize-payload"],
        ["ACL", "GETUSER", "d"],
        ["ACL", "SETUSER", "d", "reset"],
        ["ACL", "GETUSER", "d"],
        ["ACL", "SETUSER", "e", "-@all", "+@string", "+client", "-client|id"],
        ["ACL", "GETUSER", "e"],
        ["ACL", "SETUSER", "e", "nocommands", "+@hash", "+@keyspace", "resetchannels"],
        ["ACL", "GETUSER", "e"],
        ["ACL", "USERS"],
        ["ACL", "LIST"],
        ["ACL", "GETUSER", "nobody"],
        ["ACL", "DELUSER", "alice", "bob", "nobody"],
        ["ACL", "DELUSER", "c", "d", "e"],
        ["ACL", "USERS"],
    ),
    script(
        "setuser_errors",
        ["ACL", "SETUSER", "x", "foo"],
        ["ACL", "SETUSER", "x", "+nosuch"],
        ["ACL", "SETUSER", "x", "+@nosuch"],
        ["ACL", "SETUSER", "x", "-nosuch"],
        ["ACL", "SETUSER", "x", "~*", "~a"],
        ["ACL", "SETUSER", "x", "&*", "&a"],
        ["ACL", "SETUSER", "x", "<nop"],
        ["ACL", "SETUSER", "x", "!" + "b" * 64],
        ["ACL", "SETUSER", "x", "#abc"],
        ["ACL", "SETUSER", "x", "#" + "A" * 64],
        ["ACL", "SETUSER", "x", "+client|id|x"],
        ["ACL", "SETUSER", "x", "+get|"],
        ["ACL", "SETUSER", "x", "+client|nosuch"],
        ["ACL", "SETUSER", "x", "(~a"],
        ["ACL", "SETUSER", "x", "%X~a"],
        ["ACL", "SETUSER", "x", "%R"],
        ["ACL", "SETUSER", "a b"],
        ["ACL", "SETUSER", "x", "on", "bad"],
        ["ACL", "USERS"],
        ["ACL", "SETUSER"],
        ["ACL", "DELUSER", "default"],
        ["ACL", "DELUSER", "x", "default"],
        ["ACL", "GETUSER"],
        ["ACL", "GETUSER", "a", "b"],
        ["ACL", "LIST", "x"],
        ["ACL"],
        ["ACL", "foo"],
        ["ACL", "CAT", "nosuch"],
        ["ACL", "CAT", "a", "b"],
        ["ACL", "GENPASS", "0"],
        ["ACL", "GENPASS", "4097"],
        ["ACL", "GENPASS", "x"],
        ["ACL", "GENPASS", "1", "2"],
        type_only("ACL", "GENPASS"),
        type_only("ACL", "GENPASS", "5"),
        ["ACL", "LOG", "x"],
        ["ACL", "LOG", "1", "2"],
        ["ACL", "SAVE"],
        ["ACL", "LOAD"],
        ["ACL", "WHOAMI"],
        ["ACL", "WHOAMI", "x"],
        ["ACL", "HELP"],
        ["ACL", "CAT"],
    ),
    script(
        "dryrun",
        ["ACL", "SETUSER", "bob", "on", "~foo*", "%R~r*", "+get", "+set", "+publish", "&ch*"],
        ["ACL", "DRYRUN", "bob", "get", "foo1"],
        ["ACL", "DRYRUN", "bob", "set", "foo1", "v"],
        ["ACL", "DRYRUN", "bob", "get", "zzz"],
        ["ACL", "DRYRUN", "bob", "get", "r1"],
        ["ACL", "DRYRUN", "bob", "set", "r1", "v"],
        ["ACL", "DRYRUN", "bob", "del", "foo1"],
        ["ACL", "DRYRUN", "bob", "client", "id"],
        ["ACL", "DRYRUN", "nobody", "get", "a"],
        ["ACL", "DRYRUN", "bob", "nosuch"],
        ["ACL", "DRYRUN", "bob", "get"],
        ["ACL", "DRYRUN", "bob", "publish", "ch1", "m"],
        ["ACL", "DRYRUN", "bob", "publish", "zz", "m"],
        ["ACL", "DRYRUN", "bob"],
        ["ACL", "DELUSER", "bob"],
    ),
    script(
        "auth_without_password",
        ["AUTH", "x"],
        ["AUTH", "default", "anything"],
        ["AUTH", "nobody", "x"],
        ["AUTH", "a", "b", "c"],
        ["AUTH"],
        cmd("HELLO", "2", "AUTH", "nobody", "x"),
        ["HELLO", "2", "AUTH", "default"],
        ["ACL", "WHOAMI"],
        ["ACL", "SETUSER", "u", "on", ">p", "+acl|whoami", "+ping"],
        ["AUTH", "u", "wrong"],
        ["AUTH", "u", "p"],
        ["ACL", "WHOAMI"],
        ["PING"],
        ["GET", "k"],
        ["AUTH", "default", "x"],
        ["ACL", "WHOAMI"],
        type_only("ACL", "LOG"),
        ["ACL", "LOG", "RESET"],
        ["ACL", "LOG"],
        ["ACL", "DELUSER", "u"],
    ),
    script(
        "requirepass_and_noauth",
        ["CONFIG", "SET", "requirepass", PW],
        ["CONFIG", "GET", "requirepass"],
        ["ACL", "LIST"],
        ["PING"],
        cmd("QUIT", closes=True),
        ["GET", "k"],
        ["SET", "k", "v"],
        ["KEYS", "*"],
        ["MULTI"],
        ["PING"],
        ["ACL", "WHOAMI"],
        ["NOSUCH"],
        ["GET"],
        ["HELLO", "3"],
        ["HELLO", "2", "SETNAME", "x"],
        ["AUTH", "wrong"],
        ["AUTH", "default", "wrong"],
        ["RESET"],
        ["AUTH", PW],
        ["GET", "k"],
        ["ACL", "WHOAMI"],
        cmd("QUIT", closes=True),
        cmd("HELLO", "2", "AUTH", "default", PW, mode="type_only"),
        ["GET", "k"],
        cmd("QUIT", closes=True),
        raw(b"*11\r\n", closes=True),
        raw(b"*2\r\n$3\r\nGET\r\n$16385\r\n", closes=True),
        raw(b"*2\r\n$4\r\nAUTH\r\n$16384\r\n" + b"x" * 16384 + b"\r\n"),
        raw(b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000\r\n"
            + b"v" * 20000 + b"\r\n", replies=2),
        ["STRLEN", "k"],
        ["CONFIG", "SET", "requirepass", ""],
        ["ACL", "LIST"],
        ["AUTH", "x"],
        protocols=(2,),
    ),
    script(
        "noperm",
        ["SET", "a1", "1"],
        ["SET", "b1", "2"],
        ["ACL", "SETUSER", "u", "on", ">p", "~a*", "+get", "+set", "+mget", "+multi", "+exec",
         "+publish", "+subscribe", "+psubscribe", "+auth", "+client|id", "&c*"],
        ["AUTH", "u", "p"],
        ["GET", "a1"],
        ["GET", "b1"],
        ["MGET", "a1", "b1"],
        ["DEL", "a1"],
        ["CLIENT", "GETNAME"],
        ["PUBLISH", "c1", "m"],
        ["PUBLISH", "d", "m"],
        ["MULTI"],
        ["SET", "a1", "v"],
        ["SET", "b1", "v"],
        ["DEL", "a1"],
        ["EXEC"],
        ["GET", "a1"],
        ["MULTI"],
        ["GET", "a1"],
        ["EXEC"],
        type_only("ACL", "LOG"),
        ["AUTH", "default", "x"],
        type_only("ACL", "LOG"),
        ["ACL", "DELUSER", "u"],
    ),
    script(
        "noperm_scripts",
        ["ACL", "SETUSER", "u", "on", ">p", "~*", "+@all", "-set"],
        ["AUTH", "u", "p"],
        ["EVAL", "return redis.call('get', KEYS[1])", "1", "k"],
        ["EVAL", "return redis.pcall('set', KEYS[1], 'v')", "1", "k"],
        ["AUTH", "default", "x"],
        ["EVAL", "return redis.pcall('set', KEYS[1], 'v')", "1", "k"],
        ["ACL", "DELUSER", "u"],
    ),
]


@parametrize(SCRIPTS)
def test_acl(acl_oracle, acl_target, script, protocol):
    reset_state(acl_oracle.port)
    reset_state(acl_target.port)
    check(acl_oracle, acl_target, script, protocol)
