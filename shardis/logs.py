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
