"""The RESP codec, without sockets: request parsing and reply encoding in RESP2 and RESP3."""

import pytest

from shardis.errors import ReplyError
from shardis.resp import (
    NULL_ARRAY,
    OK,
    Push,
    RequestParser,
    SetReply,
    Status,
    Verbatim,
    encode,
    split_inline,
)


def test_multibulk_requests_across_reads():
    parser = RequestParser()
    assert parser.feed(b"*2\r\n$3\r\nGET\r\n$1") == []
    assert parser.feed(b"\r\na\r\n*1\r\n$4\r\nPING\r\n") == [[b"GET", b"a"], [b"PING"]]


def test_binary_arguments_survive():
    parser = RequestParser()
    assert parser.feed(b"*2\r\n$3\r\nGET\r\n$4\r\na\r\n\x00\r\n") == [[b"GET", b"a\r\n\x00"]]


def test_inline_requests():
    parser = RequestParser()
    assert parser.feed(b"PING\r\nSET a \"b c\"\r\n") == [[b"PING"], [b"SET", b"a", b"b c"]]
    assert parser.feed(b"ECHO 'x y'\n") == [[b"ECHO", b"x y"]]
    assert parser.feed(b"\r\n") == []  # empty lines are ignored, like Redis


def test_inline_then_multibulk_in_one_read():
    parser = RequestParser()
    assert parser.feed(b"PING\r\n*1\r\n$4\r\nPING\r\n") == [[b"PING"], [b"PING"]]


def test_inline_split_across_reads():
    parser = RequestParser()
    assert parser.feed(b"ECH") == []
    assert parser.feed(b"O hi\r\n") == [[b"ECHO", b"hi"]]


def test_inline_quoting_rules():
    assert split_inline(b'SET k "a\\nb\\x41"') == [b"SET", b"k", b"a\nbA"]
    assert split_inline(b"SET k 'it\\'s'") == [b"SET", b"k", b"it's"]
    assert split_inline(b'SET k ""') == [b"SET", b"k", b""]


def test_unbalanced_quotes_is_a_protocol_error():
    parser = RequestParser()
    assert parser.feed(b'SET a "b\r\n') == []
    assert parser.error == "ERR Protocol error: unbalanced quotes in request"


def test_malformed_multibulk_keeps_what_came_before():
    parser = RequestParser()
    assert parser.feed(b"*1\r\n$4\r\nPING\r\n*1\r\n$abc\r\n") == [[b"PING"]]
    assert parser.error is not None and parser.error.startswith("ERR Protocol error")


def test_huge_multibulk_count_does_not_allocate():
    parser = RequestParser()
    assert parser.feed(b"*2147483647\r\n") == []
    assert parser.error is None or parser.error.startswith("ERR Protocol error")


def test_non_bulk_elements_are_rejected():
    parser = RequestParser()
    parser.feed(b"*2\r\n$3\r\nfoo\r\n:1\r\n")
    assert parser.error is not None


@pytest.mark.parametrize(
    ("value", "resp2", "resp3"),
    [
        (b"abc", b"$3\r\nabc\r\n", b"$3\r\nabc\r\n"),
        (OK, b"+OK\r\n", b"+OK\r\n"),
        (42, b":42\r\n", b":42\r\n"),
        (-7, b":-7\r\n", b":-7\r\n"),
        (None, b"$-1\r\n", b"_\r\n"),
        (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (float("inf"), b"$3\r\ninf\r\n", b",inf\r\n"),
        ([b"a", 1, None], b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n", b"*3\r\n$1\r\na\r\n:1\r\n_\r\n"),
        ({b"k": 1}, b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
        (SetReply([Status(b"x")]), b"*1\r\n+x\r\n", b"~1\r\n+x\r\n"),
        (Push([b"m"]), b"*1\r\n$1\r\nm\r\n", b">1\r\n$1\r\nm\r\n"),
        (Verbatim(b"hi"), b"$2\r\nhi\r\n", b"=6\r\ntxt:hi\r\n"),
        (ReplyError("ERR boom"), b"-ERR boom\r\n", b"-ERR boom\r\n"),
        ([[b"nested"], []], b"*2\r\n*1\r\n$6\r\nnested\r\n*0\r\n", b"*2\r\n*1\r\n$6\r\nnested\r\n*0\r\n"),
    ],
)
def test_encode_each_type_in_both_protocols(value, resp2, resp3):
    assert encode(value, 2) == resp2
    assert encode(value, 3) == resp3


def test_doubles_use_redis_formatting():
    assert encode(0.1, 3) == b",0.10000000000000001\r\n"
    assert encode(3.0, 3) == b",3\r\n"
    assert encode(float("-inf"), 2) == b"$4\r\n-inf\r\n"


def test_a_request_split_right_after_an_element():
    # hiredis has consumed every byte of the first read into a half-built array: the second
    # read must continue it, not be taken for an inline request.
    parser = RequestParser()
    assert parser.feed(b"*2\r\n$3\r\nGET\r\n") == []
    assert parser.feed(b"$1\r\na\r\n") == [[b"GET", b"a"]]
    assert parser.feed(b"*1\r\n$4\r\nPING\r\n") == [[b"PING"]]


def test_byte_by_byte_feeding():
    parser = RequestParser()
    request = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv\n\r\nPING\r\n*1\r\n$4\r\nPING\r\n"
    commands = []
    for i in range(len(request)):
        commands += parser.feed(request[i : i + 1])
    assert commands == [[b"SET", b"k", b"v\n"], [b"PING"], [b"PING"]]
    assert parser.error is None
