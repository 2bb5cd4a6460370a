"""Structured logs: one ``key=value`` line per event (logfmt), easy to grep and to parse."""

from __future__ import annotations

import logging
import os
import sys
import time


class LogfmtFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        message = record.getMessage().replace('"', "'")
        line = (
            f'ts={stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} '
            f'role={self.role} pid={os.getpid()} msg="{message}"'
        )
        if record.exc_info:
            line += ' exc="' + self.formatException(record.exc_info).replace("\n", "\\n") + '"'
        return line


def setup_logging(role: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(role))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


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
