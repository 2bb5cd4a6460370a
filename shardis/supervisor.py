"""``shardis up``: start N workers and a router on one machine, watch them, stop them cleanly.

Workers listen on ipc:// sockets in a private run directory; the router connects to them.  A
process that dies unexpectedly is restarted (a restarted worker starts empty until persistence
lands).  SIGTERM or Ctrl-C stops every child, waits for it, and removes the run directory, so
no orphan processes or ipc files are left behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

log = logging.getLogger("shardis.supervisor")


class Supervisor:
    def __init__(self, workers: int, host: str, port: int, data_dir: str,
                 log_level: str = "info") -> None:
        self.worker_count = workers
        self.host = host
        self.port = port
        self.data_dir = os.path.abspath(data_dir)
        self.log_level = log_level
        self.run_dir = tempfile.mkdtemp(prefix="shardis-run-")
        self.addresses = [f"ipc://{self.run_dir}/worker-{i}.sock" for i in range(workers)]
        self.children: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, list[float]] = {}
        self.stopping = False

    def command_for(self, name: str) -> list[str]:
        base = [sys.executable, "-m", "shardis", "--log-level", self.log_level]
        if name == "router":
            return base + ["router", "--bind", self.host, "--port", str(self.port),
                           "--dir", self.data_dir, "--supervised",
                           "--connect", ",".join(self.addresses)]
        index = int(name.split("-")[1])
        return base + ["worker", "--listen", self.addresses[index], "--index", str(index),
                       "--dir", self.data_dir, "--supervised"]

    def start(self, name: str) -> None:
        self.children[name] = subprocess.Popen(self.command_for(name))
        log.info("started %s (pid %d)", name, self.children[name].pid)

    def port_free(self) -> bool:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError:
                return False
        return True

    def run(self) -> int:
        if not self.port_free():
            log.error("cannot listen on %s:%d: the address is already in use", self.host, self.port)
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return 1
        os.makedirs(self.data_dir, exist_ok=True)
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        try:
            for index in range(self.worker_count):
                self.start(f"worker-{index}")
            self.start("router")
            if not self._wait_ready():
                if self.stopping:
                    return 0  # asked to stop before we saw it ready: not a failure
                log.error("shardis did not become ready; stopping")
                return 1
            log.info("shardis ready on %s:%d with %d workers (data dir %s)",
                     self.host, self.port, self.worker_count, self.data_dir)
            while not self.stopping:
                if not self._watch():
                    return 1
                time.sleep(0.2)
            return 0
        finally:
            self._stop_all()

    def _request_stop(self, *_: object) -> None:
        self.stopping = True

    def _wait_ready(self, timeout: float = 30.0) -> bool:
        """Ready when the router answers PING (it only listens once its links are set up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.05)
            if not self._watch():
                return False
        return False

    def _watch(self) -> bool:
        """Restart children that died; False when one keeps dying (then we give up)."""
        for name, proc in list(self.children.items()):
            code = proc.poll()
            if code is None or self.stopping:
                continue
            now = time.monotonic()
            recent = [t for t in self.restarts.get(name, []) if now - t < 30] + [now]
            self.restarts[name] = recent
            if len(recent) > 5:
                log.error("%s keeps exiting (code %s, %d times in 30s); giving up",
                          name, code, len(recent))
                return False
            log.error("%s (pid %d) exited with code %s; restarting", name, proc.pid, code)
            time.sleep(0.1 * 2 ** len(recent))
            self.start(name)
        return True

    def _stop_all(self) -> None:
        self.stopping = True
        # Router first, so that no client sees a half-stopped cluster answering.
        order = sorted(self.children, key=lambda name: name != "router")
        for name in order:
            proc = self.children[name]
            if proc.poll() is None:
                proc.terminate()
        for name in order:
            proc = self.children[name]
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
                proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        log.info("shardis stopped")
