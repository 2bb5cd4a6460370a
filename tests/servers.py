"""Start real servers for tests: redis-server (the oracle) and shardis (router + workers).

Both run as child processes on free loopback ports and are stopped by PID when the fixture
ends.  Nothing here mocks a server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not answer PING within {timeout}s")


@dataclass
class Server:
    """A running server: where it listens and how to stop it."""

    name: str
    port: int
    proc: subprocess.Popen
    workdir: str
    extra: dict = field(default_factory=dict)

    host: str = "127.0.0.1"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(*extra_args: str, rdb: str | None = None) -> Server:
    """Real redis-server, no persistence, on a free port (16 databases, as shardis); with
    ``rdb``, that file is its ``dump.rdb``, loaded at start."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="oracle-")
    if rdb is not None:
        shutil.copy(rdb, os.path.join(workdir, "dump.rdb"))
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--daemonize", "no", *extra_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc)
    return Server("redis", port, proc, workdir)


def start_shardis(workers: int = 3, *extra_args: str, preexec_fn: Callable | None = None,
                  port: int | None = None,
                  wait: Callable[[int, subprocess.Popen], None] | None = None) -> Server:
    """``shardis up`` with ``workers`` workers on a free port, logs in the work dir.

    ``port`` overrides the plain port (0: none); ``wait(port, proc)`` then says when the server
    is up (by default: PING answered on the plain port)."""
    port = free_port() if port is None else port
    workdir = tempfile.mkdtemp(prefix="shardis-")
    log = open(os.path.join(workdir, "shardis.log"), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shardis", "up", "--workers", str(workers), "--port", str(port),
         "--dir", workdir, *extra_args],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    log.close()
    try:
        (wait or wait_for_port)(port, proc)
    except RuntimeError:
        proc.kill()
        with open(os.path.join(workdir, "shardis.log"), "rb") as fh:
            sys.stderr.write(fh.read().decode(errors="replace")[-4000:])
        raise
    return Server("shardis", port, proc, workdir, {"workers": workers})
