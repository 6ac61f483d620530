"""Plans and the real validators (haproxy -c, nginx -t, systemd-analyze verify)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from portway.deploy.plan import DeploymentPlan, plan_from_mapping
from tests.support.servers import missing_capability


def plan(**changes: Any) -> DeploymentPlan:
    data: dict[str, Any] = {
        "environment": "prod",
        "public_names": ["api.example.com", "www.api.example.com"],
        "workers": ["10.0.1.11:8080", "10.0.1.12:8080"],
        "manager": "10.0.2.10:8080",
        "trusted_proxies": ["10.0.1.5/32"],
    }
    data.update(changes)
    return plan_from_mapping(data)


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        missing_capability(f"{name} is not installed")
    return path


def check(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)
