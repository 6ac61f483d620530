"""The lab directory: ``lab.json`` records every namespace, link and process *before* it is made,
so ``portway lab down`` removes them all, also after a crash."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class LabDir:
    path: Path

    @property
    def ident(self) -> str:
        """``pwl`` and 5 hex digits of the directory's path: namespace and link prefix."""
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()
        return f"pwl{digest[:5]}"

    @property
    def state_file(self) -> Path:
        return self.path / "lab.json"

    @property
    def config_file(self) -> Path:
        return self.path / "portway.yaml"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def ca_dir(self) -> Path:
        return self.path / "ca"

    def load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def save(self, state: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name("lab.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(state, out, indent=2, sort_keys=True)
        os.replace(tmp, self.state_file)

    def update(self, **changes: Any) -> dict[str, Any]:
        state = self.load()
        state.update(changes)
        self.save(state)
        return state

    def record(self, kind: str, name: str) -> None:
        """Remember a namespace or root link about to be made."""
        state = self.load()
        key = {"netns": "namespaces", "link": "links"}[kind]
        names = state.setdefault(key, [])
        if name not in names:
            names.append(name)
        self.save(state)
