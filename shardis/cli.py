"""The ``shardis`` command: ``up`` (router + workers on one machine), ``router``, ``worker``,
``keygen`` (CURVE keys for links to workers on other hosts)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from shardis import REDIS_VERSION, __version__, config
from shardis.linksec import ConfigError
from shardis.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shardis",
        description="A Redis-compatible, multi-process, shared-nothing key-value server.",
    )
    parser.add_argument("--version", action="version",
                        version=f"shardis {__version__} (redis {REDIS_VERSION} compatible)")
    parser.add_argument(*LOG_LEVEL_FLAG, default="info", **LOG_LEVEL_OPTIONS)
    shared = _shared_options()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser("up", parents=[shared],
                        help="run a router and N workers on this machine")
    up.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="number of worker processes (default: number of cores)")
    _add_listen_options(up)

    router = sub.add_parser("router", parents=[shared], help="run only the router")
    router.add_argument("--connect", required=True,
                        help="comma-separated worker addresses, e.g. "
                             "tcp://10.0.0.2:7000,tcp://10.0.0.3:7000 (order = shard order)")
    router.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    _add_listen_options(router)
    _add_key_pair_options(router, "the router's")
    router.add_argument("--curve-server-key", metavar="W0.pub,W1.pub,...",
                        help="each worker's CURVE public key (a file, or the 40-character key), "
                             "in --connect order: encrypts and authenticates the links")

    worker = sub.add_parser("worker", parents=[shared], help="run only one worker")
    worker.add_argument("--listen", required=True,
                        help="address to bind, e.g. tcp://0.0.0.0:7000 or ipc:///tmp/w0.sock")
    worker.add_argument("--index", type=int, default=0, help="this worker's shard number")
    worker.add_argument("--dir", default=".", help="data directory (files in DIR/worker-INDEX/)")
    for name in config.PERSISTENCE_FLAGS:
        directive = config.DIRECTIVES[name]
        worker.add_argument(f"--{name}", default=directive.format(directive.default),
                            metavar="VALUE", help=directive.help)
    worker.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    _add_key_pair_options(worker, "the worker's")
    worker.add_argument("--curve-authorized-keys", metavar="FILE",
                        help="router public keys admitted (one per line, # comments); with the "
                             "two key files, makes the worker a CURVE server")
    worker.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback tcp:// --listen without CURVE (anyone who "
                             "reaches the port can read and change every key)")

    keygen = sub.add_parser("keygen", parents=[shared], help="write a CURVE key pair: NAME.pub and NAME.key")
    keygen.add_argument("name", help="path prefix of the two files")
    _add_data_tools(sub, shared)
    return parser


def _add_data_tools(sub: Any, shared: argparse.ArgumentParser) -> None:
    """export-rdb, import-rdb, reshard: offline tools over a stopped server's data dir
    (``shardis.persist.tools``)."""
    source = {"choices": ["auto", "aof", "rdb"], "default": "auto",
              "help": "what to read from each worker: auto (its AOF when it has one, else its "
                      "dump.rdb, as the worker loads), aof or rdb"}
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--progress-every", type=int, default=100_000, metavar="N",
                         help="log progress every N keys (default 100000)")
    options.add_argument("--dbfilename", default="dump.rdb", metavar="NAME",
                         help="each worker's snapshot file name, as the server's (dump.rdb)")
    options.add_argument("--appenddirname", default="appendonlydir", metavar="NAME",
                         help="each worker's AOF folder name, as the server's (appendonlydir)")
    shared = argparse.ArgumentParser(add_help=False, parents=[shared, options])
    export = sub.add_parser("export-rdb", parents=[shared],
                            help="merge a stopped server's shards into one Redis RDB file")
    export.add_argument("--dir", required=True, help="the server's data directory")
    export.add_argument("out", metavar="OUT.rdb", help="the RDB file to write")
    export.add_argument("--source", **source)
    export.add_argument("--force", action="store_true", help="replace OUT.rdb if it exists")
    export.add_argument("--workers", type=int, metavar="N",
                        help="the data's worker count (default: DIR/shardis.manifest, else the "
                             "worker-<index> folders; workers run by hand write no manifest)")
    imp = sub.add_parser("import-rdb", parents=[shared],
                         help="split a Redis RDB file into a new data dir for N workers")
    imp.add_argument("input", metavar="IN.rdb", help="a Redis RDB file (database 0)")
    imp.add_argument("--dir", required=True, help="the data directory to create (new or empty)")
    imp.add_argument("--workers", type=int, required=True, help="the server's worker count")
    imp.add_argument("--skip-other-dbs", action="store_true",
                     help="skip keys of databases other than 0 (default: refuse the file)")
    imp.add_argument("--appendonly", choices=["yes", "no"], default="no",
                     help="also write each worker's AOF folder, for a server run with "
                          "--appendonly yes (default: no, dump.rdb only)")
    resh = sub.add_parser("reshard", parents=[shared],
                          help="rewrite a stopped server's data dir for another worker count")
    resh.add_argument("--dir", required=True, help="the server's data directory")
    resh.add_argument("--workers", type=int, required=True, help="the new worker count")
    resh.add_argument("--source", **source)
    resh.add_argument("--from-workers", type=int, metavar="N",
                      help="the data's current worker count, when no manifest records it")
    resh.add_argument("--appendonly", choices=["auto", "yes", "no"], default="auto",
                      help="write AOF folders too: auto (if the data had any), yes or no")


LOG_LEVEL_FLAG = ("--log-level",)
LOG_LEVEL_OPTIONS: dict[str, Any] = {
    "choices": ["debug", "info", "warning", "error"],
    "help": "what the logs say (default: info)",
}


def _shared_options() -> argparse.ArgumentParser:
    """The options every subcommand takes, given after the subcommand too (``shardis up
    --log-level debug``).  Their default is SUPPRESS: a subcommand without the flag keeps the
    value given before it (``shardis --log-level debug up``) instead of resetting it."""
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(*LOG_LEVEL_FLAG, default=argparse.SUPPRESS, **LOG_LEVEL_OPTIONS)
    return shared


def _add_key_pair_options(parser: argparse.ArgumentParser, whose: str) -> None:
    parser.add_argument("--curve-secret-key-file", metavar="FILE",
                        help=f"{whose} CURVE secret key (shardis keygen NAME writes NAME.key)")
    parser.add_argument("--curve-public-key-file", metavar="FILE",
                        help=f"{whose} CURVE public key (NAME.pub)")


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
    args = parse(parser, sys.argv[1:] if argv is None else argv)
    if args.command == "up":
        from shardis.supervisor import Supervisor

        setup_logging("supervisor", args.log_level)
        if args.workers < 1:
            parser.error("--workers must be at least 1")
        return Supervisor(args.workers, args.bind, args.port, args.dir, args.log_level,
                          router_config(args, parser)).run()
    if args.command == "keygen":
        return _keygen(args.name)
    if args.command in ("export-rdb", "import-rdb", "reshard"):
        return _data_tool(args)
    try:
        if args.command == "router":
            return _router(args, parser)
        if args.command == "worker":
            return _worker(args)
    except ConfigError as exc:
        print(f"shardis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse the command line; without a subcommand, ``up`` is meant (``shardis`` alone, or
    ``shardis --log-level debug``, runs a server)."""
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*argv, "up"])
    return args


def _keygen(name: str) -> int:
    from shardis.linksec import keygen

    try:
        public, secret = keygen(name)
    except ConfigError as exc:
        print(f"shardis keygen: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {public} (share it) and {secret} (keep it: mode 0600)")
    return 0


def _data_tool(args: argparse.Namespace) -> int:
    """Run one data tool; a user error is one line on stderr and exit code 1."""
    from shardis.persist import tools

    setup_logging(args.command, args.log_level)
    tools.PROGRESS_EVERY = max(args.progress_every, 1)
    files = tools.Files(args.dbfilename, args.appenddirname)
    try:
        if args.command == "export-rdb":
            summary = tools.export_rdb(args.dir, args.out, args.source, args.force,
                                       args.workers, files)
        elif args.command == "import-rdb":
            summary = tools.import_rdb(args.input, args.dir, args.workers, args.skip_other_dbs,
                                       args.appendonly == "yes", files)
        else:
            appendonly = {"auto": None, "yes": True, "no": False}[args.appendonly]
            summary = tools.reshard(args.dir, args.workers, args.source, appendonly,
                                    args.from_workers, files)
    except tools.ToolError as exc:
        print(f"shardis {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"shardis {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the tools remove what they had not finished writing
        print(f"shardis {args.command}: interrupted", file=sys.stderr)
        return 130
    print(summary.line(args.command))
    return 0


def _router(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from shardis.linksec import router_curve
    from shardis.router.app import run_router

    setup_logging("router", args.log_level)
    addresses = [a.strip() for a in args.connect.split(",") if a.strip()]
    curve = router_curve(args.curve_public_key_file, args.curve_secret_key_file,
                         args.curve_server_key, len(addresses))
    if args.supervised:
        from shardis.worker.server import _die_with_parent

        _die_with_parent()
    run_router(addresses, args.bind, args.port, router_config(args, parser), curve)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from shardis.linksec import is_loopback, worker_curve
    from shardis.worker.server import run_worker

    setup_logging(f"worker-{args.index}", args.log_level)
    curve = worker_curve(args.curve_public_key_file, args.curve_secret_key_file,
                         args.curve_authorized_keys)
    if curve is None and not args.insecure and not is_loopback(args.listen):
        raise ConfigError(
            f"refusing to listen on {args.listen} without CURVE: anyone who can reach it could "
            "read and change every key.  Give --curve-secret-key-file, --curve-public-key-file "
            "and --curve-authorized-keys (see shardis keygen), listen on 127.0.0.1, or add "
            "--insecure if only trusted hosts can reach this network")
    persistence = {}
    for name in config.PERSISTENCE_FLAGS:
        try:
            persistence[name] = config.DIRECTIVES[name].parse(getattr(args, name))
        except config.ConfigError as exc:
            raise ConfigError(f"--{name} {getattr(args, name)}: {exc}") from None
    from shardis.persist.layout import LayoutError, lock_for_worker

    try:
        lock_for_worker(args.dir)  # the offline tools refuse a dir a worker holds
    except LayoutError as exc:
        print(f"shardis worker: error: {exc}", file=sys.stderr)
        return 1
    return run_worker(args.listen, args.index, supervised=args.supervised, curve=curve,
                      data_dir=args.dir, **persistence)
