"""``shardis up``: N worker processes and the router on one machine, watched, stopped cleanly.

Workers listen on ipc:// sockets in a private run directory.  The router runs in this process,
on its event loop, beside a task that watches the workers: one interpreter fewer than a router
process of its own (~16 MB of resident memory, and one process fewer competing for the cores).
A worker that dies unexpectedly is restarted: with ``appendonly yes`` it reloads its AOF
(``DIR/worker-<index>/appendonlydir``), otherwise its last snapshot (``dump.rdb``) if it has
one, else it starts empty; the router restores what it
keeps on workers.  SIGTERM or Ctrl-C stops the router, then every
worker (each saves its ``dump.rdb`` first when save rules are set, as Redis does on SIGTERM),
waits for them, and removes the run directory: no orphan processes or ipc files.  CONFIG SET
of a directive the workers keep (``save``, ``appendonly``...) reaches the workers running, and
a worker restarted later is started with the current value.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

log = logging.getLogger("shardis.supervisor")

#: The longest wait before restarting a worker that keeps exiting, in seconds.
MAX_BACKOFF = 60.0
#: How long a stopping worker may take (its final save) before it is killed, in seconds.
STOP_TIMEOUT = 300.0


class Supervisor:
    def __init__(self, workers: int, host: str | list[str], port: int, data_dir: str,
                 log_level: str | None = None, config: dict[str, Any] | None = None) -> None:
        self.worker_count = workers
        self.host = host
        self.port = port
        self.data_dir = os.path.abspath(data_dir)
        #: ``--log-level`` as given to ``shardis up`` (None: the loglevel directive says).
        self.log_level = log_level
        #: every directive's value (``shardis.config``); bind, port and dir come from above.
        self.config = dict(config or {})
        self.run_dir = tempfile.mkdtemp(prefix="shardis-run-")
        self.addresses = [f"ipc://{self.run_dir}/worker-{i}.sock" for i in range(workers)]
        self.children: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, list[float]] = {}
        self.stopping = False

    def command_for(self, name: str) -> list[str]:
        """``shardis worker`` with the directives workers keep as flags (the current values:
        CONFIG SET may have changed them since the start), as a worker started by hand
        takes them."""
        from shardis.config import worker_flags

        index = int(name.split("-")[1])
        level = ["--log-level", self.log_level] if self.log_level else []
        return [sys.executable, "-m", "shardis", *level, "worker", "--listen",
                self.addresses[index], "--index", str(index), "--dir", self.data_dir,
                *worker_flags(self.config), "--supervised"]

    def config_changed(self, name: str, value: Any) -> None:
        """CONFIG SET changed a directive workers keep: a worker restarted later gets it."""
        self.config[name] = value
        if name == "loglevel":
            self.log_level = None  # --log-level no longer says: loglevel does

    def start(self, name: str) -> None:
        self.children[name] = subprocess.Popen(self.command_for(name))
        log.info("started %s (pid %d)", name, self.children[name].pid)

    def hosts(self) -> list[str]:
        return [self.host] if isinstance(self.host, str) else list(self.host)

    def port_free(self, port: int) -> bool:
        """Whether every address to listen on has ``port`` free."""
        for host in self.hosts():
            try:
                infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
            except OSError:
                return False
            family, kind, proto, _, where = infos[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(where)
                except OSError:
                    return False
        return True

    def startup_problem(self) -> str | None:
        """Why the router could not start, found before any worker starts: a port in use
        (0 means no listener: nothing to check), a TLS setup that cannot work, persisted data
        of another worker count (``shardis.persist.layout``)."""
        tls_port = self.config.get("tls-port", 0)
        if not self.port and not tls_port:
            return "Configured to not listen anywhere, exiting."
        for port in (self.port, tls_port):
            if port and not self.port_free(port):
                return (f"cannot listen on {' '.join(self.hosts())}:{port}: the address is "
                        "already in use")
        if tls_port:
            from shardis.router.tls import TLSConfigError, build_context

            try:
                build_context(self.config)
            except TLSConfigError as exc:
                return f"Failed to configure TLS: {exc}"
        if self.writes_data():
            from shardis.persist.layout import LayoutError, check_and_record

            try:
                check_and_record(self.data_dir, self.worker_count)
            except (LayoutError, OSError) as exc:
                return f"cannot use the data dir: {exc}"
        return None

    def writes_data(self) -> bool:
        """Whether the workers will load or write files in the data dir (an AOF, snapshots
        by rule, or a snapshot already there): then its worker count must be ours."""
        from shardis.config import DIRECTIVES

        if self.config.get("appendonly") or self.config.get("save", DIRECTIVES["save"].default):
            return True
        name = self.config.get("dbfilename", "dump.rdb")
        return any(os.path.exists(os.path.join(self.data_dir, f"worker-{i}", name))
                   for i in range(self.worker_count))

    def run(self) -> int:
        problem = self.startup_problem()
        if problem is not None:
            log.error("%s", problem)
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return 1
        os.makedirs(self.data_dir, exist_ok=True)
        # Until the router's loop takes the signals over, a stop request is just noted.
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        try:
            for index in range(self.worker_count):
                self.start(f"worker-{index}")
            import uvloop

            return uvloop.run(self._serve())
        finally:
            self._stop_all()

    def _request_stop(self, *_: object) -> None:
        self.stopping = True

    async def _serve(self) -> int:
        """The router until it stops (a signal), while a task restarts workers that die."""
        from shardis.router.app import serve

        stop = asyncio.Event()

        def stop_requested() -> None:
            self.stopping = True
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested)
        if self.stopping:
            return 0
        from shardis.config import SUPERVISED

        config: dict[str, Any] = {**self.config, "port": self.port,
                                  "dir": self.data_dir, SUPERVISED: True}
        from shardis.router.server import WORKER_CONFIG_LISTENERS

        WORKER_CONFIG_LISTENERS.append(self.config_changed)
        ready = asyncio.Event()
        router = asyncio.create_task(
            serve(self.addresses, self.host, self.port, config, ready, stop))
        watcher = asyncio.create_task(self._watch_forever())
        announced = asyncio.create_task(self._announce(ready))
        await asyncio.wait((router, watcher), return_when=asyncio.FIRST_COMPLETED)
        announced.cancel()
        watcher.cancel()
        try:
            router.result()
        except (OSError, SystemExit) as exc:
            log.error("the router could not start: %s", exc)
            return 1
        return 0

    async def _announce(self, ready: asyncio.Event) -> None:
        await ready.wait()
        log.info("%s", self.banner())

    def banner(self) -> str:
        """The startup line: what runs, where, and which processes (for ps, kill, logs)."""
        from shardis import REDIS_VERSION, __version__
        from shardis.config import CONFIG_FILE

        pids = ", ".join(str(proc.pid) for proc in self.children.values())
        tls_port = self.config.get("tls-port", 0)
        return (f"shardis {__version__} (Redis {REDIS_VERSION} compatible) ready on "
                f"{' '.join(self.hosts())} (port {self.port}, tls-port {tls_port}) "
                f"with {self.worker_count} workers (pids {pids}), router pid {os.getpid()}, "
                f"data dir {self.data_dir}, config file "
                f"{self.config.get(CONFIG_FILE) or '(none)'}")

    async def _watch_forever(self) -> None:
        """Restart workers that died, each on its own backoff: a worker that keeps crashing
        (a corrupt file, a bad disk) is retried ever more slowly, up to once a minute, and
        never takes the healthy ones down with it (the router fails its commands meanwhile)."""
        due: dict[str, float] = {}
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for name, proc in list(self.children.items()):
                code = proc.poll()
                if code is None or self.stopping:
                    continue
                if name not in due:
                    recent = [t for t in self.restarts.get(name, []) if now - t < 300]
                    self.restarts[name] = recent + [now]
                    delay = 0.0 if not recent else min(0.1 * 2 ** len(recent), MAX_BACKOFF)
                    due[name] = now + delay
                    log.error("%s (pid %d) exited with code %s; restarting%s", name, proc.pid,
                              code, f" in {delay:.1f}s ({len(recent) + 1} exits in 5 minutes)"
                              if delay else "")
                if now >= due[name]:
                    del due[name]
                    self.start(name)

    def _stop_all(self) -> None:
        self.stopping = True
        # The router has stopped already (it ran in this process): no client sees a
        # half-stopped cluster answering.
        order = list(self.children)
        for name in order:
            proc = self.children[name]
            if proc.poll() is None:
                proc.terminate()
        for name in order:
            proc = self.children[name]
            try:
                # A worker with save rules writes its dump.rdb before it exits (as Redis on
                # SIGTERM): give a large dataset the time it takes.
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
                proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        log.info("shardis stopped")
