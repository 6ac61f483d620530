"""How the CLI prints: aligned tables for people, JSON or YAML for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

import yaml
from pydantic import BaseModel


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Columns padded to their widest cell; ``-`` for empty cells."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    out.write(line + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    if not rows:
        out.write("(none)\n")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def plain(value: Any) -> Any:
    """An answer (a model, or a list of models) as the JSON the manager sent."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def as_json(value: Any, out: TextIO) -> None:
    json.dump(plain(value), out, indent=2, sort_keys=False)
    out.write("\n")


def as_yaml(value: Any, out: TextIO) -> None:
    yaml.safe_dump(plain(value), out, sort_keys=False, allow_unicode=True, default_flow_style=False)


def short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
