"""CURVE on worker links: keys, who gets a handshake, refusals; and `shardis up`'s private ipc.

Real worker and router processes over real tcp:// sockets on free loopback ports.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import zmq
from zmq.utils import z85

from shardis import protocol
from tests.servers import free_port, start_shardis, wait_for_port


def shardis(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardis", *args], capture_output=True,
                          text=True, timeout=30, cwd=cwd)


def keygen(directory: Path, name: str) -> tuple[Path, Path]:
    assert shardis("keygen", str(directory / name)).returncode == 0
    return directory / f"{name}.pub", directory / f"{name}.key"


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "shardis", *args], stderr=out)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def worker_args(address: str, index: int, keys: tuple[Path, Path], authorized: Path) -> list[str]:
    return ["worker", "--listen", address, "--index", str(index),
            "--curve-public-key-file", str(keys[0]), "--curve-secret-key-file", str(keys[1]),
            "--curve-authorized-keys", str(authorized)]


def test_keygen_writes_a_pair_with_a_private_secret_file(tmp_path) -> None:
    public, secret = keygen(tmp_path, "w0")
    public_text, secret_text = public.read_bytes().strip(), secret.read_bytes().strip()
    assert len(public_text) == len(secret_text) == 40
    assert zmq.curve_public(secret_text) == public_text
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) & 0o077 in (0o044, 0o004, 0o040, 0)
    again = shardis("keygen", str(tmp_path / "w0"))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert secret.read_bytes().strip() == secret_text  # never overwritten


@pytest.fixture
def curve_cluster(tmp_path) -> Iterator[dict]:
    """Two CURVE workers admitting one router key, and that router; all on loopback tcp://."""
    workers = [keygen(tmp_path, f"w{i}") for i in range(2)]
    router_keys = keygen(tmp_path, "router")
    authorized = tmp_path / "routers"
    authorized.write_text(f"# routers\n\n{router_keys[0].read_text().strip()}  # the one\n")
    addresses = [f"tcp://127.0.0.1:{free_port()}" for _ in workers]
    procs = [spawn(worker_args(address, i, workers[i], authorized), tmp_path / f"w{i}.log")
             for i, address in enumerate(addresses)]
    port = free_port()
    server_keys = f"{workers[0][0]},{workers[1][0].read_text().strip()}"  # a file, a key text
    procs.append(spawn(["router", "--connect", ",".join(addresses), "--port", str(port),
                        "--curve-public-key-file", str(router_keys[0]),
                        "--curve-secret-key-file", str(router_keys[1]),
                        "--curve-server-key", server_keys], tmp_path / "router.log"))
    try:
        wait_for_port(port, procs[-1])
        yield {"port": port, "addresses": addresses, "workers": workers, "procs": procs,
               "dir": tmp_path}
    finally:
        for proc in procs:
            stop(proc)


def _serves(port: int) -> None:
    client = redis.Redis(port=port, socket_timeout=10)
    for i in range(20):
        assert client.set(f"key{i}", f"value{i}")
    assert [client.get(f"key{i}") for i in range(20)] == [b"value%d" % i for i in range(20)]
    client.close()


def test_router_and_workers_over_curve(curve_cluster) -> None:
    _serves(curve_cluster["port"])
    log = (curve_cluster["dir"] / "w0.log").read_text()
    assert "marshal link encoding" in log  # an authenticated link is trusted


def _probe(address: str, sock_setup) -> bytes | None:
    """What a DEALER set up by ``sock_setup`` gets back for a real batch within 2 s."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock_setup(sock)
    sock.connect(address)
    try:
        for codec in (protocol.MARSHAL, protocol.STRICT):
            sock.send(codec.encode_batch(1, [(2, [b"GET", b"key1"])]), zmq.NOBLOCK)
        return sock.recv() if sock.poll(2000) else None
    except zmq.Again:  # no handshake: nothing can even be queued
        return None
    finally:
        sock.close()
        context.term()


def test_an_unknown_key_gets_no_handshake(curve_cluster) -> None:
    address, worker_public = curve_cluster["addresses"][0], curve_cluster["workers"][0][0]
    stranger_public, stranger_secret = zmq.curve_keypair()

    def with_unknown_key(sock: zmq.Socket) -> None:
        sock.curve_serverkey = worker_public.read_bytes().strip()
        sock.curve_publickey = stranger_public
        sock.curve_secretkey = stranger_secret

    assert _probe(address, with_unknown_key) is None
    log = (curve_cluster["dir"] / "w0.log").read_text()
    assert f"key={stranger_public.decode()}" in log and "refused a link handshake" in log
    _serves(curve_cluster["port"])  # the real router still gets through


def test_a_plain_peer_gets_nothing(curve_cluster) -> None:
    assert _probe(curve_cluster["addresses"][0], lambda sock: None) is None
    _serves(curve_cluster["port"])


def test_a_listed_key_gets_through(curve_cluster, tmp_path) -> None:
    """The probe itself can succeed: with the router's own key it gets an answer."""
    directory = curve_cluster["dir"]
    router_public = (directory / "router.pub").read_bytes().strip()
    router_secret = (directory / "router.key").read_bytes().strip()

    def with_router_key(sock: zmq.Socket) -> None:
        sock.curve_serverkey = curve_cluster["workers"][0][0].read_bytes().strip()
        sock.curve_publickey = router_public
        sock.curve_secretkey = router_secret

    assert _probe(curve_cluster["addresses"][0], with_router_key) is not None


def test_non_loopback_listen_needs_curve_or_insecure(tmp_path) -> None:
    port = free_port()
    refused = shardis("worker", "--listen", f"tcp://0.0.0.0:{port}")
    assert refused.returncode == 2
    assert "refusing to listen on tcp://0.0.0.0" in refused.stderr
    assert "--insecure" in refused.stderr and "Traceback" not in refused.stderr
    proc = spawn(["worker", "--listen", f"tcp://0.0.0.0:{port}", "--insecure"],
                 tmp_path / "w.log")
    try:
        context = zmq.Context()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send(protocol.encode_batch(3, [(2, [b"SET", b"k", b"v"])]))
        assert sock.poll(10_000)
        assert protocol.decode_replies(sock.recv()) == (3, [b"+OK\r\n"], ())
        sock.close()
        context.term()
    finally:
        stop(proc)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{}", "tcp://localhost:{}",
                                     "tcp://[::1]:{}", "tcp://127.1.2.3:{}"])
def test_loopback_addresses_need_no_curve(address: str) -> None:
    from shardis.linksec import is_loopback

    assert is_loopback(address.format(7000))
    assert not is_loopback("tcp://*:7000") and not is_loopback("tcp://10.0.0.2:7000")
    assert not is_loopback("tcp://eth0:7000") and not is_loopback("tcp://worker-0:7000")


def _bad_key_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    public, secret = keygen(tmp_path, "good")
    other_public, _ = keygen(tmp_path, "other")
    short = tmp_path / "short.key"
    short.write_text("abc\n")
    not_z85 = tmp_path / "bad.key"
    not_z85.write_text('"' * 40 + "\n")
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n\n")
    authorized = tmp_path / "authorized"
    authorized.write_text(public.read_text())
    listen = ["worker", "--listen", f"tcp://127.0.0.1:{free_port()}"]

    def keys(pub: Path, sec: Path, auth: Path) -> list[str]:
        return [*listen, "--curve-public-key-file", str(pub), "--curve-secret-key-file",
                str(sec), "--curve-authorized-keys", str(auth)]

    return [
        (keys(tmp_path / "missing.pub", secret, authorized), "cannot read key file"),
        (keys(public, short, authorized), "40 Z85 characters, found 3"),
        (keys(public, not_z85, authorized), "not a Z85-encoded key"),
        (keys(other_public, secret, authorized), "is not the public key of"),
        (keys(public, secret, empty), "lists no key"),
        ([*listen, "--curve-public-key-file", str(public)], "needs all of"),
        (["router", "--connect", "tcp://127.0.0.1:1", "--curve-public-key-file", str(public),
          "--curve-secret-key-file", str(secret), "--curve-server-key", "nope"],
         "cannot read key file nope"),
        (["router", "--connect", "tcp://127.0.0.1:1,tcp://127.0.0.1:2",
          "--curve-public-key-file", str(public), "--curve-secret-key-file", str(secret),
          "--curve-server-key", str(public)], "1 keys for 2 workers"),
    ]


def test_bad_key_files_give_clear_errors(tmp_path) -> None:
    for args, message in _bad_key_cases(tmp_path):
        result = shardis(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_secret_key_readable_by_others_is_warned_about(tmp_path) -> None:
    public, secret = keygen(tmp_path, "loose")
    os.chmod(secret, 0o644)
    authorized = tmp_path / "authorized"
    authorized.write_text(public.read_text())
    proc = spawn(worker_args(f"tcp://127.0.0.1:{free_port()}", 0, (public, secret), authorized),
                 tmp_path / "w.log")
    try:
        deadline = time.monotonic() + 10
        while "ready on" not in (tmp_path / "w.log").read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        log = (tmp_path / "w.log").read_text()
        assert "accessible to other users (mode 644)" in log
    finally:
        stop(proc)


def test_up_keeps_its_ipc_sockets_private() -> None:
    server = start_shardis(2)
    try:
        run_dir = _run_dir(server.workdir)
        info = os.stat(run_dir)
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
        sockets = [os.path.join(run_dir, name) for name in os.listdir(run_dir)]
        assert len(sockets) == 2
        for path in sockets:  # others cannot reach them: the directory does not let them in
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            assert not os.stat(run_dir).st_mode & (stat.S_IXOTH | stat.S_IXGRP)
    finally:
        server.stop()


def _run_dir(workdir: str) -> str:
    """The ipc run directory, from the worker command lines of ``shardis up``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker" in argv and workdir.encode() in argv:
                address = argv[argv.index(b"--listen") + 1].decode()
                return os.path.dirname(address[len("ipc://"):])
        time.sleep(0.1)
    raise AssertionError("no worker of this shardis up found")


def test_z85_keys_in_authorized_file_are_binary_for_zap(tmp_path) -> None:
    from shardis.linksec import read_authorized_keys

    public, _ = keygen(tmp_path, "k")
    path = tmp_path / "auth"
    path.write_text(f"\n# comment\n{public.read_text().strip()}   # trailing comment\n")
    assert read_authorized_keys(str(path)) == {z85.decode(public.read_bytes().strip())}
