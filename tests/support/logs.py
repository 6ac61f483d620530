"""Log capture helpers: restore the logging set-up a test changed, read JSON log lines."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import pytest

from portway.config import log_format


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    env = {k: os.environ.get(k) for k in (log_format.LEVEL_ENV, log_format.FORMAT_ENV)}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def lines_of(text: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
