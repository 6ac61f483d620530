"""The inventory: where an installation's components run (YAML).

    zones:                      # networks of each zone (needed by zone firewalls)
      dmz: [198.18.1.0/24]
      lan: [198.18.2.0/24]
      vpn: [198.18.4.0/24]
    hosts:
      - name: lb-1
        address: 198.18.1.10
        components: [load_balancer]
        tls_server_name: api.example.com     # optional: SNI and name checked on 443
      - name: data-1
        address: 198.18.2.20
        components: [mongodb, elasticsearch, cache]

Firewall generators read it for addresses; ``portway audit`` reads it for what to scan.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from portway.config.base import FrozenModel
from portway.config.platform_file import read_yaml
from portway.errors import ConfigError
from portway.matrix.model import Zone
from portway.matrix.settings import config_error_from
from portway.matrix.standard import COMPONENTS

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ZoneName = Literal["internet", "dmz", "lan", "vpn", "kubernetes"]

_COMPONENT_ZONES = {c.id: c.zone for c in COMPONENTS}
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class InventoryHost(FrozenModel):
    name: str
    address: IPAddress
    components: tuple[str, ...] = Field(min_length=1)
    tls_server_name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _HOST_NAME.match(value):
            raise ValueError(f"{value!r} is not a host name (lowercase letters, digits and '-')")
        return value

    @field_validator("components")
    @classmethod
    def _components(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for component in value:
            if component not in _COMPONENT_ZONES:
                known = ", ".join(_COMPONENT_ZONES)
                raise ValueError(f"unknown component {component!r}; known: {known}")
        if len(set(value)) != len(value):
            raise ValueError("a component is listed twice")
        return value

    @property
    def zones(self) -> set[Zone]:
        return {_COMPONENT_ZONES[c] for c in self.components}


class Inventory(FrozenModel):
    zones: dict[ZoneName, tuple[IPNetwork, ...]] = {}
    hosts: tuple[InventoryHost, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Inventory:
        names: set[str] = set()
        for index, host in enumerate(self.hosts):
            if host.name in names:
                raise ValueError(f"hosts[{index}].name: {host.name!r} is used twice")
            names.add(host.name)
            if len(host.zones) == 1:
                (zone,) = host.zones
                networks = self.zones.get(zone.value)
                if networks and not any(host.address in n for n in networks):
                    shown = ", ".join(map(str, networks))
                    raise ValueError(
                        f"hosts[{index}].address: {host.address} is not inside the "
                        f"{zone.value} networks ({shown})"
                    )
        return self

    def networks(self, zone: Zone) -> tuple[IPNetwork, ...]:
        return self.zones.get(zone.value, ())

    def hosts_running(self, component: str) -> tuple[InventoryHost, ...]:
        return tuple(h for h in self.hosts if component in h.components)

    def addresses_of(self, component: str) -> tuple[IPAddress, ...]:
        return tuple(dict.fromkeys(h.address for h in self.hosts_running(component)))

    def host(self, name: str) -> InventoryHost | None:
        for host in self.hosts:
            if host.name == name:
                return host
        return None


def inventory_from_mapping(data: Any) -> Inventory:
    if not isinstance(data, dict):
        raise ConfigError("the inventory must be a mapping with 'zones' and 'hosts'")
    try:
        return Inventory.model_validate_json(json.dumps(data, default=str))
    except ValidationError as exc:
        raise config_error_from(exc) from exc


def load_inventory(path: Path) -> Inventory:
    data = read_yaml(path)
    try:
        return inventory_from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
