"""The import direction of DESIGN.md, enforced on the source (AST), so a violation fails here first.

http -> nothing of Portway; worker never imports manager; policies reach requests through their
facade (never worker/manager); stores, config, cluster and matrix stay below everything that
uses them.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import portway

SRC = Path(portway.__file__).parent

# package -> Portway packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "http": set(),
    "errors": set(),
    "config": {"errors"},
    "cluster": {"config", "errors"},
    "stores": {"config", "errors"},
    "policies": {"config", "errors", "stores", "http"},
    "compile": {"config", "errors", "stores", "policies"},
    "matrix": {"config", "errors"},
    "worker": {"config", "errors", "cluster", "stores", "policies", "compile", "http"},
    "manager": {"config", "errors", "cluster", "stores", "policies", "compile", "matrix"},
    "demo": set(),
    "deploy": {"config", "errors", "matrix"},
    "local": {"cluster", "config", "errors"},
    "client": {"config", "errors"},
}
TOP_LEVEL_MODULES = {"cli", "__main__", "__init__"}


def portway_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import; use absolute portway.* imports")
        for name in names:
            parts = name.split(".")
            if parts[0] == "portway" and len(parts) > 1:
                found.add(parts[1])
    return found


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_import_direction(path: Path) -> None:
    package = package_of(path)
    if package in TOP_LEVEL_MODULES:
        return
    assert package in ALLOWED, f"new top-level package {package!r}: add it to ALLOWED"
    forbidden = portway_imports(path) - ALLOWED[package] - {package}
    assert not forbidden, f"portway.{package} must not import portway.{sorted(forbidden)}"


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from portway.manager.app import create_app\n")
    assert portway_imports(bad) == {"manager"}
    assert portway_imports(bad) - ALLOWED["worker"] == {"manager"}


def test_every_module_imports() -> None:
    for info in pkgutil.walk_packages(portway.__path__, "portway."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
