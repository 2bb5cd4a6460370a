"""TLS on tls-port: certificates made here (a CA, a server certificate for 127.0.0.1 and
localhost, client certificates), redis-cli and redis-py as clients, tls-auth-clients yes / no /
optional, plain RESP sent to the TLS port, port 0 (TLS only), and startup errors."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.servers import Server, free_port, start_shardis

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


# Certificates ----------------------------------------------------------------------------------
def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(directory: Path, stem: str, key: ec.EllipticCurvePrivateKey,
           cert: x509.Certificate) -> None:
    (directory / f"{stem}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(common: str, issuer: tuple | None, *, ca: bool = False,
           server: bool = False) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate signed by ``issuer`` (key, cert), or self-signed when None."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    signer_key, signer_cert = issuer if issuer else (key, None)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common))
               .issuer_name(signer_cert.subject if signer_cert else _name(common))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return key, builder.sign(signer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca, server, client (signed by ca) and rogue (signed by another CA), as .crt/.key."""
    directory = tmp_path_factory.mktemp("tls")
    ca = _issue("shardis test CA", None, ca=True)
    other_ca = _issue("another CA", None, ca=True)
    _write(directory, "ca", *ca)
    _write(directory, "server", *_issue("localhost", ca, server=True))
    _write(directory, "client", *_issue("client", ca))
    _write(directory, "rogue", *_issue("rogue", other_ca))
    return directory


def _tls_args(certs: Path, tls_port: int, auth: str = "yes", *extra: str) -> list[str]:
    return ["--tls-port", str(tls_port), "--tls-cert-file", str(certs / "server.crt"),
            "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file",
            str(certs / "ca.crt"), "--tls-auth-clients", auth, *extra]


def _client_context(certs: Path, cert: str | None = "client") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if cert:
        context.load_cert_chain(str(certs / f"{cert}.crt"), str(certs / f"{cert}.key"))
    return context


def _tls_ping(port: int, context: ssl.SSLContext) -> bytes:
    """PING over TLS; b"" when the server refuses the handshake or closes."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64)
    except OSError:  # refused, reset, or the handshake failed (ssl.SSLError)
        return b""


def _start(certs: Path, auth: str = "yes", port: int | None = None, *extra: str) -> Server:
    tls_port = free_port()

    def wait(_port: int, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"shardis exited early with code {proc.returncode}")
            if _tls_ping(tls_port, _client_context(certs)) == b"+PONG\r\n":
                return
            time.sleep(0.1)
        raise RuntimeError("the TLS port did not answer PING")

    server = start_shardis(1, *_tls_args(certs, tls_port, auth, *extra), port=port, wait=wait)
    server.extra["tls_port"] = tls_port
    return server


@pytest.fixture(scope="module")
def tls_server(certs: Path) -> Iterator[Server]:
    server = _start(certs, "yes")
    yield server
    server.stop()


def _redis_tls(server: Server, certs: Path, cert: str | None = "client", **kwargs) -> redis.Redis:
    options = {"ssl_certfile": str(certs / f"{cert}.crt"),
               "ssl_keyfile": str(certs / f"{cert}.key")} if cert else {}
    return redis.Redis(port=server.extra["tls_port"], ssl=True,
                       ssl_ca_certs=str(certs / "ca.crt"), socket_timeout=10, **options,
                       **kwargs)


# Tests -----------------------------------------------------------------------------------------
def test_redis_cli_over_tls(tls_server, certs):
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    if b"--tls" not in subprocess.run([cli, "--help"], capture_output=True).stderr + \
            subprocess.run([cli, "--help"], capture_output=True).stdout:
        pytest.skip("this redis-cli was built without TLS support (no --tls)")
    result = subprocess.run(
        [cli, "--tls", "--cacert", str(certs / "ca.crt"), "--cert", str(certs / "client.crt"),
         "--key", str(certs / "client.key"), "-p", str(tls_server.extra["tls_port"]), "ping"],
        capture_output=True, timeout=20)
    assert result.stdout == b"PONG\n", result.stderr


def test_redis_py_commands_pipeline_and_pubsub_over_tls(tls_server, certs):
    client = _redis_tls(tls_server, certs)
    assert client.set("tls:key", "value") and client.get("tls:key") == b"value"
    pipe = client.pipeline(transaction=False)
    for index in range(500):
        pipe.set(f"tls:{index}", index)
        pipe.get(f"tls:{index}")
    replies = pipe.execute()
    assert replies[1::2] == [str(i).encode() for i in range(500)]
    big = os.urandom(3 * 1024 * 1024)  # many TLS records each way
    assert client.set("tls:big", big) and client.get("tls:big") == big
    pubsub = _redis_tls(tls_server, certs).pubsub()
    pubsub.subscribe("tls:news")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    assert client.publish("tls:news", "hello") == 1
    message = pubsub.get_message(timeout=5)
    assert message["data"] == b"hello"
    pubsub.close()
    client.close()


def test_plain_tcp_still_works_beside_tls(tls_server, certs):
    plain = redis.Redis(port=tls_server.port, socket_timeout=5)
    _redis_tls(tls_server, certs).set("tls:shared", "1")
    assert plain.get("tls:shared") == b"1"


def test_auth_clients_yes_refuses_a_client_without_certificate(tls_server, certs):
    port = tls_server.extra["tls_port"]
    assert _tls_ping(port, _client_context(certs, cert=None)) == b""
    assert _tls_ping(port, _client_context(certs, cert="rogue")) == b""
    assert _tls_ping(port, _client_context(certs)) == b"+PONG\r\n"


@pytest.mark.parametrize("auth", ["no", "optional"])
def test_auth_clients_no_and_optional_accept_a_client_without_certificate(certs, auth):
    server = _start(certs, auth)
    try:
        port = server.extra["tls_port"]
        assert _tls_ping(port, _client_context(certs, cert=None)) == b"+PONG\r\n"
        # optional verifies a certificate that is given: one from another CA is refused.
        rogue = _tls_ping(port, _client_context(certs, cert="rogue"))
        assert rogue == (b"" if auth == "optional" else b"+PONG\r\n")
        client = _redis_tls(server, certs, cert=None)
        assert client.set("k", "v") and client.get("k") == b"v"
        client.close()
    finally:
        server.stop()


def test_plain_resp_to_the_tls_port_harms_nothing(tls_server, certs):
    port = tls_server.extra["tls_port"]
    for request in (b"PING\r\n", b"*1\r\n$4\r\nPING\r\n", b"\x16\x03\x01\x00\x05hello" * 100):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request)
            sock.settimeout(5)
            try:
                assert not sock.recv(100).startswith(b"+PONG")
            except (ConnectionResetError, TimeoutError):
                pass
    assert _tls_ping(port, _client_context(certs)) == b"+PONG\r\n"
    assert redis.Redis(port=tls_server.port).ping()
    assert "Traceback" not in _log(tls_server)


def _log(server: Server) -> str:
    return (Path(server.workdir) / "shardis.log").read_text(errors="replace")


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports ``pid`` listens on (its sockets matched with /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_port_zero_listens_on_tls_only(certs):
    server = _start(certs, "yes", 0)
    try:
        assert _listening_ports(server.proc.pid) == {server.extra["tls_port"]}
        client = _redis_tls(server, certs)
        assert client.config_get("port") == {"port": "0"}
        client.close()
    finally:
        server.stop()


def _startup_failure(*args: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "shardis", "up", "--workers", "1", "--port", str(free_port()),
         *args], capture_output=True, timeout=60, text=True)
    return result.returncode, result.stdout + result.stderr


def test_bad_certificate_or_key_is_a_clear_startup_error(certs, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    cases = [
        ("--tls-cert-file", str(tmp_path / "missing.crt")),
        ("--tls-cert-file", str(bad)),
        ("--tls-key-file", str(certs / "client.key")),  # not the certificate's key
        ("--tls-protocols", "TLSv1.2 SSLv3"),
        ("--tls-ciphers", "NO-SUCH-CIPHER"),
    ]
    for flag, value in cases:
        args = _tls_args(certs, free_port())
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
        code, output = _startup_failure(*args)
        assert code != 0, (flag, output)
        assert "Failed to configure TLS" in output, (flag, output)
        assert "Traceback" not in output, (flag, output)


def test_tls_needs_a_ca_when_client_certificates_are_asked(certs):
    code, output = _startup_failure("--tls-port", str(free_port()), "--tls-cert-file",
                                    str(certs / "server.crt"), "--tls-key-file",
                                    str(certs / "server.key"))
    assert code != 0 and "tls-ca-cert-file" in output and "Traceback" not in output


def test_tls_protocols_bound_the_versions(certs):
    server = _start(certs, "yes", None, "--tls-protocols", "TLSv1.3")
    try:
        context = _client_context(certs)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        assert _tls_ping(server.extra["tls_port"], context) == b""
        assert _tls_ping(server.extra["tls_port"], _client_context(certs)) == b"+PONG\r\n"
    finally:
        server.stop()


def test_config_set_tls_files(tls_server, certs, tmp_path):
    client = _redis_tls(tls_server, certs)
    with pytest.raises(redis.ResponseError, match="Unable to update TLS configuration"):
        client.config_set("tls-cert-file", str(tmp_path / "missing.crt"))
    assert client.config_set("tls-auth-clients", "optional")
    assert _tls_ping(tls_server.extra["tls_port"], _client_context(certs, None)) == b"+PONG\r\n"
    assert client.config_set("tls-auth-clients", "yes")
    assert _tls_ping(tls_server.extra["tls_port"], _client_context(certs, None)) == b""
    client.close()
