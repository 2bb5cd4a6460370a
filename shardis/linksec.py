"""Security of router <-> worker links: CURVE keys, who may connect, and when a link is trusted.

A worker on tcp:// serves whoever connects: any peer could read and change every key.  With
CURVE (ZeroMQ's encryption and authentication), the worker holds a key pair and a list of the
router public keys it admits; each router holds its own pair and each worker's public key.
The worker checks client keys in a ZAP handler (:class:`KeyAuthenticator`): an unlisted key
never completes the handshake, so the worker never sees its messages.

Keys are files of 40 characters of Z85 text (``shardis keygen NAME`` writes ``NAME.pub`` and
``NAME.key``).  Every problem with them is a :class:`ConfigError` with a sentence for the user.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
import threading
from dataclasses import dataclass

import zmq
from zmq.utils import z85

from shardis.logs import RateLimitedLog

log = logging.getLogger("shardis.linksec")

KEY_LENGTH = 40
#: ZeroMQ's well-known address of the ZAP handler of a context.
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"shardis"


class ConfigError(Exception):
    """A security setting that cannot be used: the message says what and how to fix it."""


@dataclass(frozen=True)
class KeyPair:
    public: bytes
    secret: bytes


# Key files ------------------------------------------------------------------------------------
def keygen(name: str) -> tuple[str, str]:
    """Write ``NAME.pub`` and ``NAME.key`` (mode 0600 from its creation); their paths.

    Existing files are never overwritten: replacing a key in use would lock a router out.
    """
    public, secret = zmq.curve_keypair()
    public_path, secret_path = f"{name}.pub", f"{name}.key"
    for path in (public_path, secret_path):
        if os.path.exists(path):
            raise ConfigError(f"{path} already exists; remove it first to make a new key")
    _write_new(secret_path, secret, 0o600)
    _write_new(public_path, public, 0o644)
    return public_path, secret_path


def _write_new(path: str, key: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(key + b"\n")


def parse_key(text: bytes, where: str) -> bytes:
    """A Z85 key (40 characters) from ``text``; ConfigError naming ``where`` otherwise."""
    key = text.strip()
    if len(key) != KEY_LENGTH:
        raise ConfigError(f"{where}: a CURVE key is {KEY_LENGTH} Z85 characters, "
                          f"found {len(key)}")
    try:
        z85.decode(key)
    except (KeyError, ValueError):
        raise ConfigError(f"{where}: not a Z85-encoded key") from None
    return key


def read_key_file(path: str, secret: bool = False) -> bytes:
    """The key in ``path``; a secret key readable by others is used, with a warning."""
    try:
        with open(path, "rb") as source:
            info = os.fstat(source.fileno())
            text = source.read(4096)
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    if secret and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key file %s is accessible to other users (mode %o): "
                    "chmod 600 it", path, stat.S_IMODE(info.st_mode))
    return parse_key(text, path)


def read_key_pair(public_path: str | None, secret_path: str | None) -> KeyPair | None:
    """The pair of both options, None if neither is given; ConfigError if only one is."""
    if public_path is None and secret_path is None:
        return None
    if public_path is None or secret_path is None:
        raise ConfigError("give both --curve-public-key-file and --curve-secret-key-file")
    pair = KeyPair(read_key_file(public_path), read_key_file(secret_path, secret=True))
    if zmq.curve_public(pair.secret) != pair.public:
        raise ConfigError(f"{public_path} is not the public key of {secret_path}")
    return pair


def read_server_key(spec: str) -> bytes:
    """A worker's public key: a key file, or the 40-character key itself."""
    if os.path.exists(spec) or len(spec.strip()) != KEY_LENGTH:
        return read_key_file(spec)
    return parse_key(spec.encode(), "--curve-server-key")


def read_authorized_keys(path: str) -> frozenset[bytes]:
    """The router keys a worker admits, as 32-byte binary keys (what ZAP requests carry).

    One Z85 key per line; blank lines and ``#`` comments (whole lines, or after the key and a
    space) are ignored.  An empty list is an
    error: a worker that admits nobody is a mistake, not a configuration.
    """
    try:
        with open(path, "rb") as source:
            lines = source.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read authorized keys file {path}: {exc.strerror}") from None
    keys = set()
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith(b"#") and not _is_key(words[0]):
            continue  # '#' is also a Z85 character: a key may start with it
        where = f"{path} line {number}"
        keys.add(z85.decode(parse_key(words[0], where)))
        if len(words) > 1 and not words[1].startswith(b"#"):
            raise ConfigError(f"{where}: one key per line (comments start with '# ')")
    if not keys:
        raise ConfigError(f"{path} lists no key: no router could connect")
    return frozenset(keys)


def _is_key(word: bytes) -> bool:
    try:
        return len(word) == KEY_LENGTH and len(z85.decode(word)) == 32
    except (KeyError, ValueError):
        return False


# Addresses ------------------------------------------------------------------------------------
def is_loopback(address: str) -> bool:
    """Whether a tcp:// address binds only the loopback interface (other transports: True)."""
    if not address.startswith("tcp://"):
        return True
    host = address[len("tcp://"):].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name, a host name: may be reachable from outside
        return False


# Worker side ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerCurve:
    """A worker's CURVE settings: its key pair and the router keys it admits."""

    keys: KeyPair
    authorized: frozenset[bytes]


def worker_curve(public_path: str | None, secret_path: str | None,
                 authorized_path: str | None) -> WorkerCurve | None:
    """The worker's settings from its three options (all or none)."""
    given = [public_path, secret_path, authorized_path]
    if not any(given):
        return None
    if not all(given):
        raise ConfigError("CURVE needs all of --curve-secret-key-file, --curve-public-key-file "
                          "and --curve-authorized-keys")
    keys = read_key_pair(public_path, secret_path)
    assert keys is not None
    return WorkerCurve(keys, read_authorized_keys(authorized_path))  # type: ignore[arg-type]


def make_curve_server(sock: zmq.Socket, curve: WorkerCurve) -> None:
    """Make ``sock`` a CURVE server whose handshakes go to the ZAP handler (before bind)."""
    sock.curve_server = True
    sock.curve_secretkey = curve.keys.secret
    sock.curve_publickey = curve.keys.public
    sock.zap_domain = ZAP_DOMAIN


class KeyAuthenticator(threading.Thread):
    """A ZAP handler admitting CURVE clients whose key is listed (RFC 27), in a thread.

    pyzmq's ThreadAuthenticator wants a directory of certificate files; a worker has a set of
    keys, so this is the small handler that checks a key against it.  It binds in the worker's
    context before the worker's socket binds: libzmq admits everyone while no handler is bound.
    """

    def __init__(self, context: zmq.Context, authorized: frozenset[bytes]) -> None:
        super().__init__(name="zap", daemon=True)
        self.authorized = authorized
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        self.running = True
        self.denied = RateLimitedLog(log)

    def run(self) -> None:
        while self.running:
            if self.socket.poll(200):
                self.socket.send_multipart(self.answer(self.socket.recv_multipart()))
        self.socket.close(linger=0)

    def answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to one request: 200 for a listed CURVE key, 400 for anything else."""
        if len(request) < 6 or request[0] != b"1.0":
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"bad request",
                    b"", b""]
        request_id, address, mechanism = request[1], request[3], request[5]
        key = request[6] if mechanism == b"CURVE" and len(request) > 6 else None
        if key is not None and key in self.authorized:
            return [b"1.0", request_id, b"200", b"OK", z85.encode(key), b""]
        shown = z85.encode(key).decode() if key is not None and len(key) == 32 else "-"
        self.denied.error("refused a link handshake mechanism=%s address=%s key=%s",
                          mechanism.decode(errors="replace"), address.decode(errors="replace"),
                          shown)
        return [b"1.0", request_id, b"400", b"key not authorized", b"", b""]

    def stop(self) -> None:
        self.running = False


# Router side ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RouterCurve:
    """A router's CURVE settings: its key pair and each worker's public key, in link order."""

    keys: KeyPair
    server_keys: tuple[bytes, ...]


def router_curve(public_path: str | None, secret_path: str | None, server_keys: str | None,
                 workers: int) -> RouterCurve | None:
    keys = read_key_pair(public_path, secret_path)
    if keys is None and server_keys is None:
        return None
    if keys is None or server_keys is None:
        raise ConfigError("CURVE needs --curve-secret-key-file, --curve-public-key-file and "
                          "--curve-server-key together")
    specs = [spec.strip() for spec in server_keys.split(",") if spec.strip()]
    if len(specs) != workers:
        raise ConfigError(f"--curve-server-key lists {len(specs)} keys for {workers} workers in "
                          "--connect (one per worker, in the same order)")
    return RouterCurve(keys, tuple(read_server_key(spec) for spec in specs))


def make_curve_client(sock: zmq.Socket, keys: KeyPair, server_key: bytes) -> None:
    """Make ``sock`` a CURVE client of the worker whose public key is ``server_key``."""
    sock.curve_serverkey = server_key
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret
