"""Logs: one line per event, as logfmt text (``key=value``, easy to grep) or as JSON objects
(``log-format json``, for log shippers), on standard error or appended to ``logfile``.

Levels are Redis's ``loglevel`` names (debug, verbose, notice, warning; CONFIG SET-able, the
router forwards a change to every worker), mapped onto Python's (verbose sits between DEBUG and
INFO; notice is INFO).  The older ``--log-level`` names (debug, info, warning, error) are
accepted too.  A log file is reopened on SIGHUP, for logrotate: the signal only raises a flag,
the next line written reopens the file (no file work inside a signal handler).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")

#: Redis's ``loglevel`` names and ``--log-level``'s, as Python levels.
LEVELS = {"debug": logging.DEBUG, "verbose": VERBOSE, "notice": logging.INFO,
          "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def python_level(name: str) -> int:
    return LEVELS.get(name.lower(), logging.INFO)


def _stamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class LogfmtFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace('"', "'")
        line = (
            f'ts={_stamp(record)} level={record.levelname.lower()} '
            f'role={self.role} pid={os.getpid()} msg="{message}"'
        )
        if record.exc_info:
            line += ' exc="' + self.formatException(record.exc_info).replace("\n", "\\n") + '"'
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, role, pid, msg (and exc with a traceback)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": _stamp(record), "level": record.levelname.lower(), "role": self.role,
                 "pid": os.getpid(), "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ReopeningFileHandler(logging.StreamHandler):
    """Appends to a file; after SIGHUP (:func:`request_reopen`) the next record reopens it, so
    logrotate can move the file away and shardis goes on in a new one."""

    reopen_requested = False

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(open(path, "a", encoding="utf-8"))  # noqa: SIM115 (kept open)

    def emit(self, record: logging.LogRecord) -> None:
        if ReopeningFileHandler.reopen_requested:
            ReopeningFileHandler.reopen_requested = False
            self.reopen()
        super().emit(record)

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            old.close()
        finally:
            self.release()


def request_reopen(*_: object) -> None:
    """The SIGHUP handler: the log file is reopened before the next line is written."""
    ReopeningFileHandler.reopen_requested = True


def setup_logging(role: str, level: str = "notice", logfile: str = "",
                  log_format: str = "text") -> None:
    """Send this process's logs to ``logfile`` (empty: standard error) in ``log_format``."""
    handler: logging.Handler
    # As Redis, SIGHUP never stops a process (it only reopens the log file).
    signal.signal(signal.SIGHUP, request_reopen)
    if logfile:
        handler = ReopeningFileHandler(logfile)
    else:
        handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(role) if log_format == "json" else LogfmtFormatter(role)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(python_level(level))


def set_level(level: str) -> None:
    """CONFIG SET loglevel: applies at once to every logger of this process."""
    logging.getLogger().setLevel(python_level(level))


class RateLimitedLog:
    """Logs at most ``burst`` lines per ``interval`` seconds and counts the rest.

    For events a remote peer can cause at will (malformed messages): a flood of them must not
    turn into a flood of log lines, yet none goes unnoticed: the next line that gets through
    says how many were suppressed.
    """

    __slots__ = ("logger", "burst", "interval", "window_start", "logged", "suppressed")

    def __init__(self, logger: logging.Logger, burst: int = 10, interval: float = 10.0) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.window_start = -interval
        self.logged = 0
        self.suppressed = 0

    def error(self, message: str, *args: object) -> bool:
        """Log ``message % args`` at error level unless over the limit; True if logged."""
        now = time.monotonic()
        if now - self.window_start >= self.interval:
            self.window_start, self.logged = now, 0
        if self.logged >= self.burst:
            self.suppressed += 1
            return False
        self.logged += 1
        suppressed, self.suppressed = self.suppressed, 0
        self.logger.error(message + " suppressed=%d", *args, suppressed)
        return True
