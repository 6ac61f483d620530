"""Reading ``portway.yaml``: the file, then ``PORTWAY_…`` variables, then flags; paths settled.

Overrides name a key path: ``manager.port=9000`` on the command line (``--set``), or
``PORTWAY_MANAGER__PORT=9000`` in the environment (``__`` separates keys; names are lower-cased).
Values are YAML (``9000`` is a number, ``null`` clears, ``[a, b]`` is a list).

Relative paths in the file (and in ``PORTWAY_…`` variables) are relative to the file's directory,
never to the working directory. Every data path defaults to the data directory: ``data_dir`` from
the file, else ``$PORTWAY_HOME``, else the file's directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from portway.config.platform import PlatformConfig
from portway.errors import ConfigError

ENV_PREFIX = "PORTWAY_"
HOME_VARIABLE = "PORTWAY_HOME"
Override = tuple[str, Any]


class PlatformConfigError(ConfigError):
    """An unusable platform file; ``problems`` are ``key.path: message`` lines."""

    def __init__(self, problems: Sequence[str], source: str = "") -> None:
        self.problems = list(problems)
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.problems))


def key_path(loc: Iterable[int | str]) -> str:
    """``("workers", "prod", "limits", "max_headers")`` -> ``workers.prod.limits.max_headers``;
    list positions as ``hosts[0].address``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_of(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        path = key_path(err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (not allowed here)"
        elif "[key]" in err["loc"]:
            message = f"not a valid name: {message}"
        lines.append(f"{path}: {message}" if path else message)
    return lines


def parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def parse_assignment(text: str) -> Override:
    """``manager.port=9000`` -> ``("manager.port", 9000)``."""
    path, equals, value = text.partition("=")
    if not equals or not path.strip():
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE")
    return path.strip(), parse_value(value)


def env_overrides(env: Mapping[str, str]) -> list[Override]:
    """``PORTWAY_MANAGER__PORT=9000`` -> ``("manager.port", 9000)``, for top-level keys only
    (so ``PORTWAY_HOME`` and other variables are not configuration keys)."""
    top = set(PlatformConfig.model_fields)
    found = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if keys[0] in top and all(keys):
            found.append((".".join(keys), parse_value(env[name])))
    return found


def apply_override(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = data
    for index, key in enumerate(keys[:-1]):
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            if child is not None:
                where = ".".join(keys[: index + 1])
                raise ConfigError(f"{path}: {where} is not a mapping", field=path)
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def platform_from_mapping(
    data: Any,
    base_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[Override] = (),
    default_data_dir: Path | None = None,
    source: str = "",
) -> PlatformConfig:
    """Validate ``data`` with ``env`` and then ``overrides`` applied on top; settle paths."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problem = f"the file must be a mapping, not {type(data).__name__}"
        raise PlatformConfigError([problem], source)
    env = os.environ if env is None else env
    merged: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data))  # a deep copy
    for path, value in [*env_overrides(env), *overrides]:
        apply_override(merged, path, value)
    try:
        config = PlatformConfig.model_validate_json(json.dumps(merged, default=str))
    except ValidationError as exc:
        raise PlatformConfigError(problems_of(exc), source) from exc
    home = env.get(HOME_VARIABLE)
    fallback = Path(home).resolve() if home else (default_data_dir or base_dir)
    try:
        settle_paths(config, base_dir.resolve(), fallback)
    except ValidationError as exc:
        raise PlatformConfigError(problems_of(exc), source) from exc
    return config


def load_platform(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[Override] = (),
) -> PlatformConfig:
    """``portway.yaml`` at ``path`` with ``PORTWAY_…`` variables and ``overrides`` applied."""
    return platform_from_mapping(
        read_yaml(path), path.resolve().parent, env=env, overrides=overrides, source=str(path)
    )


def _absolute(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path


def _sqlite_absolute(url: str, base: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix) :].startswith("/"):
        return f"{prefix}{base / url[len(prefix) :]}"
    return url


def settle_paths(config: PlatformConfig, base: Path, fallback_data_dir: Path) -> None:
    """Fill every unset data path from the data directory; make relative paths absolute."""
    data = _absolute(config.data_dir, base) if config.data_dir else fallback_data_dir
    config.data_dir = data
    manager = config.manager
    given = manager.model_fields_set
    manager.data_dir = _absolute(manager.data_dir, base) if "data_dir" in given else data
    mdata = manager.data_dir
    defaults = {
        "store": f"sqlite:///{mdata}/manager.db",
        "logs": f"sqlite:///{mdata}/traffic.db",
        "secret_file": mdata / "cluster.secret",
        "bootstrap_file": mdata / "bootstrap-admin.json",
    }
    for name, value in defaults.items():
        if name not in given:
            setattr(manager, name, value)
    manager.store = _sqlite_absolute(manager.store, base)
    manager.logs = _sqlite_absolute(manager.logs, base)
    manager.secret_file = _absolute(manager.secret_file, base)
    if manager.bootstrap_file is not None:
        manager.bootstrap_file = _absolute(manager.bootstrap_file, base)
    for environment, worker in config.workers.items():
        worker.logs = _sqlite_absolute(worker.logs or manager.logs, base)
        worker.secret_file = _absolute(worker.secret_file or manager.secret_file, base)
        worker.state_dir = _absolute(worker.state_dir or data / f"worker-{environment}", base)
        if worker.tls is not None:
            tls = worker.tls
            tls.cert_file = str(_absolute(Path(tls.cert_file), base))
            if tls.key_file:
                tls.key_file = str(_absolute(Path(tls.key_file), base))
            if tls.client_ca_file:
                tls.client_ca_file = str(_absolute(Path(tls.client_ca_file), base))
    for certificate in config.load_balancer.certificates:
        certificate.cert_file = _absolute(certificate.cert_file, base)
        if certificate.key_file is not None:
            certificate.key_file = _absolute(certificate.key_file, base)


def platform_json_schema() -> dict[str, Any]:
    schema = PlatformConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "portway.yaml"
    return schema


def summary(config: PlatformConfig) -> str:
    """One line: what the file describes."""
    workers = ", ".join(
        f"{env} :{w.https_port or w.port}" for env, w in sorted(config.workers.items())
    )
    return (
        f"{config.layout}: manager {config.manager.host}:{config.manager.port} "
        f"(store {config.manager.store.split(':', 1)[0]}), "
        f"workers [{workers or 'none'}], load balancer {config.load_balancer.kind}, "
        f"{len(config.hosts)} host(s)"
    )
