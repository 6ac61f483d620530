"""Every example in docs/policies.md validates, and every policy type is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from portway.config.models import PolicySpec
from portway.policies.registry import POLICY_TYPES, validate_policy_spec

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


def examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return [yaml.safe_load(block) for block in blocks]


def test_every_example_validates() -> None:
    seen: set[str] = set()
    for i, example in enumerate(examples()):
        for phase, entries in example.items():
            for j, entry in enumerate(entries):
                validate_policy_spec(PolicySpec.model_validate(entry), f"doc[{i}].{phase}[{j}]")
                seen.add(entry["type"])
    assert seen == set(POLICY_TYPES)


def test_every_type_has_a_section() -> None:
    headings = [line for line in DOC.read_text().splitlines() if line.startswith("### ")]
    documented = {name for line in headings for name in re.findall(r"`([a-z0-9_]+)`", line)}
    assert set(POLICY_TYPES) <= documented
