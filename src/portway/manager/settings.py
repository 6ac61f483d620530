"""The manager's settings: one model, defined in ``portway.config.manager_settings``."""

from __future__ import annotations

from portway.config.manager_settings import ManagerSettings

__all__ = ["ManagerSettings"]
