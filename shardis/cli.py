"""The ``shardis`` command: ``up`` (router + workers on one machine), ``router``, ``worker``,
``keygen`` (CURVE keys for links to workers on other hosts)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from shardis import REDIS_VERSION, __version__, config
from shardis.linksec import ConfigError
from shardis.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shardis", epilog="shardis [up] [CONFIG_FILE] [--DIRECTIVE VALUE ...] runs a "
                               "server (see shardis up --help)",
        description="A Redis-compatible, multi-process, shared-nothing key-value server.",
    )
    parser.add_argument("--version", action="version",
                        version=f"shardis {__version__} (redis {REDIS_VERSION} compatible)")
    parser.add_argument(*LOG_LEVEL_FLAG, default=None, **LOG_LEVEL_OPTIONS)
    shared = _shared_options()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser._subcommands = sub.choices  # type: ignore[attr-defined]

    up = sub.add_parser("up", parents=[shared], epilog=DIRECTIVES_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        usage="shardis up [CONFIG_FILE] [--DIRECTIVE VALUE ...]",
                        help="run a router and N workers (the workers directive) here")
    _add_directive_help(up)

    router = sub.add_parser("router", parents=[shared], epilog=DIRECTIVES_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            usage="shardis router [CONFIG_FILE] --connect ADDRESSES "
                                  "[--DIRECTIVE VALUE ...]",
                            help="run only the router")
    router.add_argument("--connect", required=True,
                        help="comma-separated worker addresses, e.g. "
                             "tcp://10.0.0.2:7000,tcp://10.0.0.3:7000 (order = shard order)")
    router.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    _add_key_pair_options(router, "the router's")
    router.add_argument("--curve-server-key", metavar="W0.pub,W1.pub,...",
                        help="each worker's CURVE public key (a file, or the 40-character key), "
                             "in --connect order: encrypts and authenticates the links")
    _add_directive_help(router)

    worker = sub.add_parser("worker", parents=[shared], epilog=DIRECTIVES_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            usage="shardis worker [CONFIG_FILE] --listen ADDRESS "
                                  "[--DIRECTIVE VALUE ...]",
                            help="run only one worker (it uses dir, the persistence "
                                 "directives and the log ones)")
    worker.add_argument("--listen", required=True,
                        help="address to bind, e.g. tcp://0.0.0.0:7000 or ipc:///tmp/w0.sock")
    worker.add_argument("--index", type=int, default=0, help="this worker's shard number")
    worker.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    _add_key_pair_options(worker, "the worker's")
    worker.add_argument("--curve-authorized-keys", metavar="FILE",
                        help="router public keys admitted (one per line, # comments); with the "
                             "two key files, makes the worker a CURVE server")
    worker.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback tcp:// --listen without CURVE (anyone who "
                             "reaches the port can read and change every key)")
    _add_directive_help(worker)

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
    "help": "what the logs say (default: info; the loglevel directive says it in Redis's "
            "words: debug, verbose, notice, warning)",
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


DIRECTIVES_EPILOG = """\
Configuration: an optional config file in redis.conf syntax (see deploy/shardis.conf), then any
directive as a flag: --port 7000 --save 900 1 --enable-debug-command yes.  Flags override the
file; a bad line or value stops with Redis's "FATAL CONFIG FILE ERROR" naming it."""


def _add_directive_help(parser: argparse.ArgumentParser) -> None:
    """List every directive in --help.  The flags themselves never reach argparse: they are
    taken out first (:func:`split_directives`) and read by ``shardis.config.load``."""
    group = parser.add_argument_group("directives (redis.conf names, also CONFIG GET/SET)")
    for name, directive in config.DIRECTIVES.items():
        if directive.help == argparse.SUPPRESS:
            continue
        default = directive.format(directive.default)
        group.add_argument(f"--{name}", metavar="VALUE", dest=f"directive_{name}",
                           help=f"{directive.help} (default: {default or chr(39) * 2})"
                           .replace("%", "%%"))


#: Subcommands that read a config file and directive flags.
CONFIGURED = ("up", "router", "worker")


def split_directives(argv: list[str], own: frozenset[str] = frozenset()
                     ) -> tuple[list[str], str | None, list[str]]:
    """Take the config file (the first argument after the subcommand, when it does not start
    with ``-``) and the directive flags (``--name`` and the arguments up to the next ``--``)
    out of ``argv``: (what argparse reads, the file, the directive flags).  A ``--name`` that
    is neither a directive nor one of the subcommand's ``own`` options is taken as a
    directive too: the config loader refuses it as Redis does ("Bad directive")."""
    rest: list[str] = []
    path: str | None = None
    flags: list[str] = []
    index = _subcommand_index(argv)
    if index is None:
        return argv, None, []
    rest, tail = argv[:index + 1], argv[index + 1:]
    if tail and not tail[0].startswith("-"):
        path, tail = tail[0], tail[1:]
    position = 0
    while position < len(tail):
        token = tail[position]
        position += 1
        name = token.partition("=")[0]
        if not token.startswith("--") or name in own or name in LOG_LEVEL_FLAG:
            rest.append(token)
            continue
        flags.append(token)
        taken = 0
        while position < len(tail) and (not tail[position].startswith("--") or (
                taken == 0 and token.lower() != "--save")):
            flags.append(tail[position])
            position, taken = position + 1, taken + 1
    return rest, path, flags


def _subcommand_index(argv: list[str]) -> int | None:
    """Where ``up``, ``router`` or ``worker`` is in ``argv`` (None: another subcommand)."""
    for index, token in enumerate(argv):
        if token in CONFIGURED:
            return index
        if not token.startswith("-") and (index == 0 or argv[index - 1] not in LOG_LEVEL_FLAG):
            return None
    return None


def load_config(path: str | None, flags: list[str]) -> tuple[dict[str, Any], set[str]]:
    """The directives' values from the file and the flags, or Redis's fatal report on
    standard error and exit status 1."""
    try:
        return config.load(path, flags)
    except config.ConfigFileError as exc:
        sys.stderr.write(exc.report())
        raise SystemExit(1) from None


def process_config(args: argparse.Namespace) -> dict[str, Any]:
    """This process's directives: the file and flags (``args.config_file``,
    ``args.directive_flags``), ``--log-level`` (the older spelling) over ``loglevel``, the
    data dir made absolute, and where the file is (for CONFIG REWRITE)."""
    values, _ = load_config(args.config_file, args.directive_flags)
    if args.log_level_given:
        values["loglevel"] = LEGACY_LEVELS[args.log_level]
    values["dir"] = os.path.abspath(values["dir"])
    values[config.CONFIG_FILE] = os.path.abspath(args.config_file) if args.config_file else None
    return values


#: ``--log-level`` names as ``loglevel`` values.
LEGACY_LEVELS = {"debug": "debug", "info": "notice", "warning": "warning", "error": "warning"}


def _setup_logging(role: str, args: argparse.Namespace, values: dict[str, Any]) -> None:
    level = args.log_level if args.log_level_given else values["loglevel"]
    setup_logging(role, level, values["logfile"], values["log-format"])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, sys.argv[1:] if argv is None else argv)
    if args.command == "up":
        return _up(args)
    if args.command == "keygen":
        return _keygen(args.name)
    if args.command in ("export-rdb", "import-rdb", "reshard"):
        return _data_tool(args)
    try:
        if args.command == "router":
            return _router(args)
        if args.command == "worker":
            return _worker(args)
    except ConfigError as exc:
        print(f"shardis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse the command line; without a subcommand, ``up`` is meant (``shardis`` alone,
    ``shardis --log-level debug`` or ``shardis shardis.conf`` runs a server).  The config
    file and directive flags are set aside first (:func:`split_directives`)."""
    if not any(token in parser._subcommands for token in argv):  # type: ignore[attr-defined]
        argv = _insert_up(argv)
    rest, path, flags = split_directives(argv, _own_options(parser, argv))
    args = parser.parse_args(rest)
    args.config_file, args.directive_flags = path, flags
    args.log_level_given = args.log_level is not None
    if args.log_level is None:
        args.log_level = "info"
    return args


def _own_options(parser: argparse.ArgumentParser, argv: list[str]) -> frozenset[str]:
    """The options argparse reads for the subcommand in ``argv`` (not the directives)."""
    index = _subcommand_index(argv)
    if index is None:
        return frozenset()
    sub = parser._subcommands[argv[index]]  # type: ignore[attr-defined]
    return frozenset(option for option, action in sub._option_string_actions.items()
                     if not action.dest.startswith("directive_"))


def listen_host(values: dict[str, Any]) -> str | list[str]:
    """What the router listens on for ``bind``: one host, or several (asyncio binds each)."""
    hosts = config.listen_hosts(values["bind"])
    if not hosts:
        logging.getLogger("shardis").error("no address to listen on (bind %r)", values["bind"])
        raise SystemExit(1)
    return hosts[0] if len(hosts) == 1 else hosts


def _insert_up(argv: list[str]) -> list[str]:
    """``up`` after the leading ``--log-level X`` (and ``--help``/``--version``) options, so
    that a config file or directive flags that follow are ``up``'s."""
    index = 0
    while index < len(argv):
        if argv[index] in LOG_LEVEL_FLAG:
            index += 2
        elif argv[index].startswith("--log-level=") or argv[index] in (
                "-h", "--help", "--version"):
            index += 1
        else:
            break
    return [*argv[:index], "up", *argv[index:]]


def _up(args: argparse.Namespace) -> int:
    from shardis.supervisor import Supervisor

    values = process_config(args)
    _setup_logging("supervisor", args, values)
    with pidfile(values["pidfile"]):
        return Supervisor(values["workers"], listen_host(values), values["port"], values["dir"],
                          args.log_level if args.log_level_given else None, values).run()


@contextlib.contextmanager
def pidfile(path: str) -> Iterator[None]:
    """``pidfile``: this process's pid in the file while it runs (Redis's createPidFile),
    removed at exit; a file that cannot be written is only logged, as Redis."""
    if not path:
        yield
        return
    try:
        with open(path, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as exc:
        logging.getLogger("shardis").warning("Failed to write PID file: %s", exc.strerror)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


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


def _router(args: argparse.Namespace) -> int:
    from shardis.linksec import router_curve
    from shardis.router.app import run_router

    values = process_config(args)
    _setup_logging("router", args, values)
    addresses = [a.strip() for a in args.connect.split(",") if a.strip()]
    values["workers"] = len(addresses)
    curve = router_curve(args.curve_public_key_file, args.curve_secret_key_file,
                         args.curve_server_key, len(addresses))
    if args.supervised:
        from shardis.worker.server import _die_with_parent

        _die_with_parent()
    with pidfile(values["pidfile"]):
        run_router(addresses, listen_host(values), values["port"], values, curve)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from shardis.linksec import is_loopback, worker_curve
    from shardis.worker.server import run_worker

    values = process_config(args)
    _setup_logging(f"worker-{args.index}", args, values)
    curve = worker_curve(args.curve_public_key_file, args.curve_secret_key_file,
                         args.curve_authorized_keys)
    if curve is None and not args.insecure and not is_loopback(args.listen):
        raise ConfigError(
            f"refusing to listen on {args.listen} without CURVE: anyone who can reach it could "
            "read and change every key.  Give --curve-secret-key-file, --curve-public-key-file "
            "and --curve-authorized-keys (see shardis keygen), listen on 127.0.0.1, or add "
            "--insecure if only trusted hosts can reach this network")
    from shardis.persist.layout import LayoutError, lock_for_worker

    try:
        lock_for_worker(values["dir"])  # the offline tools refuse a dir a worker holds
    except LayoutError as exc:
        print(f"shardis worker: error: {exc}", file=sys.stderr)
        return 1
    for directive in config.DIRECTIVES.values():  # loglevel: set up with the logs above
        if directive.worker_apply is not None and directive.name not in config.LOG_DIRECTIVES:
            directive.worker_apply(values[directive.name])
    kept = {name.replace("-", "_"): values[name] for name in config.WORKER_DIRECTIVES}
    return run_worker(args.listen, args.index, supervised=args.supervised, curve=curve,
                      data_dir=values["dir"], **kept)
