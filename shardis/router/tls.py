"""TLS for the router's second listener (``tls-port``), with Python's ``ssl``.

The TLS listener serves the same :class:`ClientConnection` as the plain one: asyncio hands it
decrypted bytes, so plain-TCP clients pay nothing for TLS.  The directives and their startup
errors follow Redis 7.0's ``tls.c``:

* ``tls-cert-file`` / ``tls-key-file``: the server's certificate and key (PEM);
* ``tls-ca-cert-file``: CAs that client certificates must chain to;
* ``tls-auth-clients``: ``yes`` (a client certificate is required), ``optional`` (verified if
  given), ``no`` (not requested);
* ``tls-protocols``: e.g. ``"TLSv1.2 TLSv1.3"`` (the default), the lowest and highest named
  bound the versions offered;
* ``tls-ciphers``: an OpenSSL cipher list (TLSv1.2 and below).

CONFIG SET of a ``tls-*`` file or option builds a new context (refused with the reason if it
cannot be built); the next handshakes use it (the SNI callback, which OpenSSL calls for every
ClientHello, switches them to it).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from shardis.router.server import on_config_set

log = logging.getLogger("shardis.router")

PROTOCOLS = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
DEFAULT_PROTOCOLS = "TLSv1.2 TLSv1.3"
VERIFY = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "no": ssl.CERT_NONE}


class TLSConfigError(Exception):
    """TLS cannot be configured as asked; the text says why, as Redis's log would."""


def build_context(config: dict[str, Any]) -> ssl.SSLContext:
    """The server context for ``config``'s tls-* directives, or :class:`TLSConfigError`."""
    cert, key, ca = config["tls-cert-file"], config["tls-key-file"], config["tls-ca-cert-file"]
    if not cert:
        raise TLSConfigError("No tls-cert-file configured!")
    if not key:
        raise TLSConfigError("No tls-key-file configured!")
    auth = config["tls-auth-clients"]
    if auth != "no" and not ca:
        raise TLSConfigError("Either tls-ca-cert-file or tls-ca-cert-dir must be specified "
                             "when tls-cluster, tls-replication or tls-auth-clients are "
                             "enabled!")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    low, high = parse_protocols(config["tls-protocols"])
    context.minimum_version, context.maximum_version = low, high
    for path, what in ((cert, "certificate"), (key, "private key")):
        _load(lambda p: open(p, "rb").close(), f"Failed to load {what}: {path}", path)
    _load(context.load_cert_chain, f"Failed to load certificate: {cert} (key {key})", cert, key)
    if ca:
        _load(context.load_verify_locations, "Failed to configure CA certificate(s) file: "
              f"{ca}", ca)
    context.verify_mode = VERIFY[auth]
    if config["tls-ciphers"]:
        _load(context.set_ciphers, f"Failed to configure ciphers: {config['tls-ciphers']}",
              config["tls-ciphers"])
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def _load(method: Any, what: str, *args: str) -> None:
    try:
        method(*args)
    except (OSError, ssl.SSLError) as exc:
        reason = (exc.strerror or getattr(exc, "reason", None)
                  or (exc.args[-1] if exc.args else str(exc)))
        raise TLSConfigError(f"{what}: {reason}") from None


def parse_protocols(text: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """``"TLSv1.2 TLSv1.3"`` -> (lowest, highest) named, as Redis's parseProtocolsConfig."""
    names = (text or DEFAULT_PROTOCOLS).lower().split()
    versions = [PROTOCOLS.get(name) for name in names]
    if not versions or None in versions:
        raise TLSConfigError("Invalid tls-protocols specified. Use a combination of 'TLSv1', "
                             "'TLSv1.1', 'TLSv1.2' and 'TLSv1.3'.")
    return min(versions), max(versions)  # type: ignore[type-var]


class TLSListener:
    """The context the TLS listener uses, swappable at run time (CONFIG SET)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.current = build_context(config)
        #: the tls-* values ``current`` was built from: CONFIG SET falls back to them.
        self.values = {name: config[name] for name in DIRECTIVES}
        #: the context given to the server: it only hands each handshake to ``current``.
        self.front = build_context(config)
        self.front.sni_callback = self._pick_context

    def _pick_context(self, ssl_object: Any, server_name: str | None,
                      context: ssl.SSLContext) -> None:
        if self.current is not self.front:
            ssl_object.context = self.current

    def reload(self, config: dict[str, Any]) -> None:
        """A new context for the next handshakes.  What OpenSSL settles before the SNI
        callback (versions, ciphers, verify mode) is copied onto the front context."""
        context = build_context(config)
        front = self.front
        front.minimum_version = context.minimum_version
        front.maximum_version = context.maximum_version
        front.verify_mode = context.verify_mode
        if config["tls-ciphers"]:
            front.set_ciphers(config["tls-ciphers"])
        self.current = context
        self.values = {name: config[name] for name in DIRECTIVES}


DIRECTIVES = ("tls-cert-file", "tls-key-file", "tls-ca-cert-file", "tls-auth-clients",
              "tls-protocols", "tls-ciphers")


def _reloader(name: str) -> Any:
    """The CONFIG SET hook of one tls-* directive: a context that cannot be built leaves the
    old one, and the old values, in place (Redis's error text; the reason goes to the log)."""

    def reload(router: Any, value: Any) -> None:
        from shardis.errors import ReplyError

        listener = router.tls
        if listener is None:
            return  # no TLS listener: the value is only kept, as in Redis without tls-port
        try:
            listener.reload(router.config)
        except TLSConfigError as exc:
            log.warning("Failed to update TLS configuration: %s", exc)
            router.config.update(listener.values)
            raise ReplyError(f"ERR CONFIG SET failed (possibly related to argument '{name}') - "
                             "Unable to update TLS configuration. Check server logs.") from None

    return reload


for _name in DIRECTIVES:
    on_config_set(_name)(_reloader(_name))
