"""How Portway writes its own log: the level and format an operator chooses, and the correlation
id of the request being served in every line.

``configure`` is called once per process (``portway …`` and each spawned worker process): it puts
one handler on the root logger, writing to stderr either text lines
(``2026-12-02 01:02:03,456 INFO portway.worker [CID] message``) or JSON objects, one per line
(``{"time", "level", "logger", "message", "correlation_id", "trace_id"?, "exception"?}``;
``trace_id`` when the request is traced). It also exports the
choice as ``PORTWAY_LOG_LEVEL`` / ``PORTWAY_LOG_FORMAT``, which is how spawned processes inherit it
(they call ``configure()`` with no arguments). A request handler sets ``CORRELATION_ID`` when it
knows the request's id; every line logged while the request is served carries it (``-`` outside
a request).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

CORRELATION_ID: ContextVar[str | None] = ContextVar("portway_correlation_id", default=None)
TRACE_ID: ContextVar[str | None] = ContextVar("portway_trace_id", default=None)
"""Set by the worker's tracing (``portway.worker.tracing``) for a traced request."""
LEVEL_ENV = "PORTWAY_LOG_LEVEL"
FORMAT_ENV = "PORTWAY_LOG_FORMAT"
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")
LogFormat = Literal["text", "json"]
_TEXT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s%(trace_suffix)s] %(message)s"


class _WithCorrelation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = CORRELATION_ID.get() or "-"
        trace = TRACE_ID.get()
        record.trace_id = trace
        record.trace_suffix = f" trace={trace}" if trace else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", "-"),
        }
        trace = getattr(record, "trace_id", None)
        if trace:
            line["trace_id"] = trace
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Apply (and export for child processes) the log level and format; without arguments, those
    exported by the parent process, else ``info`` and ``text``."""
    level = (level or os.environ.get(LEVEL_ENV) or "info").lower()
    fmt = (fmt or os.environ.get(FORMAT_ENV) or "text").lower()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    os.environ[LEVEL_ENV] = level
    os.environ[FORMAT_ENV] = fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_WithCorrelation())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
