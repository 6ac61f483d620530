"""The manager's services, built once at start-up and shared by the routes."""

from __future__ import annotations

from dataclasses import dataclass

from portway.manager.access import Access
from portway.manager.alerts.service import Alerts
from portway.manager.analytics import Analytics
from portway.manager.auth import LoginGuard
from portway.manager.catalog import Catalog
from portway.manager.consumers import Consumers
from portway.manager.deployments import Deployer
from portway.manager.registry import WorkerRegistry
from portway.manager.settings import ManagerSettings
from portway.manager.signing_keys import SigningKeys
from portway.manager.worker_client import WorkerClient
from portway.stores.config_store import ConfigStore


@dataclass(slots=True)
class Services:
    settings: ManagerSettings
    store: ConfigStore
    secret: bytes
    catalog: Catalog
    registry: WorkerRegistry
    deployer: Deployer
    client: WorkerClient
    consumers: Consumers
    login_guard: LoginGuard
    analytics: Analytics
    access: Access
    alerts: Alerts
    signing_keys: SigningKeys
