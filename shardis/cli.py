"""The ``shardis`` command: ``up`` (router + workers on one machine), ``router``, ``worker``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from shardis import REDIS_VERSION, __version__, config
from shardis.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shardis",
        description="A Redis-compatible, multi-process, shared-nothing key-value server.",
    )
    parser.add_argument("--version", action="version",
                        version=f"shardis {__version__} (redis {REDIS_VERSION} compatible)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser("up", help="run a router and N workers on this machine")
    up.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="number of worker processes (default: number of cores)")
    _add_listen_options(up)

    router = sub.add_parser("router", help="run only the router")
    router.add_argument("--connect", required=True,
                        help="comma-separated worker addresses, e.g. "
                             "tcp://10.0.0.2:7000,tcp://10.0.0.3:7000 (order = shard order)")
    router.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    _add_listen_options(router)

    worker = sub.add_parser("worker", help="run only one worker")
    worker.add_argument("--listen", required=True,
                        help="address to bind, e.g. tcp://0.0.0.0:7000 or ipc:///tmp/w0.sock")
    worker.add_argument("--index", type=int, default=0, help="this worker's shard number")
    worker.add_argument("--dir", default=".", help="data directory")
    worker.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    return parser


def _add_listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=6379, help="TCP port (default 6379)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--dir", default=".", help="data directory (default: current)")
    config.add_flags(parser, skip=("port", "bind", "dir"))


def router_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Every directive's value for the router: defaults, then the flags given."""
    values = config.from_args(args, parser)
    values.update(bind=args.bind, port=args.port, dir=os.path.abspath(args.dir))
    return values


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["up", *(argv or [])])
    if args.command == "up":
        from shardis.supervisor import Supervisor

        setup_logging("supervisor", args.log_level)
        if args.workers < 1:
            parser.error("--workers must be at least 1")
        return Supervisor(args.workers, args.bind, args.port, args.dir, args.log_level,
                          router_config(args, parser)).run()
    if args.command == "router":
        from shardis.router.app import run_router

        setup_logging("router", args.log_level)
        if args.supervised:
            from shardis.worker.server import _die_with_parent

            _die_with_parent()
        addresses = [a.strip() for a in args.connect.split(",") if a.strip()]
        run_router(addresses, args.bind, args.port, router_config(args, parser))
        return 0
    if args.command == "worker":
        from shardis.worker.server import run_worker

        setup_logging(f"worker-{args.index}", args.log_level)
        run_worker(args.listen, args.index, supervised=args.supervised)
        return 0
    parser.error(f"unknown command {args.command}")
    return 2
