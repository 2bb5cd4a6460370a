#!/usr/bin/env python3
"""Health probe for shardis containers, installed in the image as ``shardis-ping``.

The image has no redis-cli, so this speaks just enough RESP itself (standard library only):

    shardis-ping                  PING the router on 127.0.0.1:$SHARDIS_PORT (default 6379);
                                  healthy on +PONG.  The router answers PING by itself.
    shardis-ping --deep           send DBSIZE instead: it fans out to every worker, so it only
                                  succeeds when the router *and all its workers* answer.
    shardis-ping --tcp --port 7000
                                  only check that the port accepts a TCP connection (workers
                                  speak ZeroMQ, not RESP).

Exit status 0 when healthy, 1 otherwise (with the reason on stderr), as Docker's HEALTHCHECK
and Kubernetes' exec probes expect.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shardis-ping", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SHARDIS_PORT", "6379")),
                        help="default: $SHARDIS_PORT or 6379")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--deep", action="store_true",
                      help="send DBSIZE (touches every worker) instead of PING")
    mode.add_argument("--tcp", action="store_true", help="only open a TCP connection")
    return parser


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data


def probe(host: str, port: int, timeout: float, deep: bool = False, tcp: bool = False) -> str:
    """Return an empty string when healthy, else what went wrong."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if tcp:
                return ""
            command = b"DBSIZE" if deep else b"PING"
            sock.sendall(b"*1\r\n$%d\r\n%s\r\n" % (len(command), command))
            reply = read_line(sock)
    except OSError as exc:
        return f"{host}:{port}: {exc}"
    expected = reply[:1] == b":" if deep else reply.startswith(b"+PONG")
    return "" if expected else f"{host}:{port}: unexpected reply {reply[:80]!r}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = probe(args.host, args.port, args.timeout, deep=args.deep, tcp=args.tcp)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
