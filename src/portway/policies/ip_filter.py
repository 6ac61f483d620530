"""IP allow and deny lists (IPv4/IPv6 addresses and CIDRs).

The client address is the socket peer, unless the peer is a trusted proxy: then
X-Forwarded-For is read from the right, skipping trusted proxies, and the first address that is
not one is the client. Entries a client wrote to the left of that are never believed."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from portway.policies.base import Build, Deny, ErrorSpec, Policy, PolicyConfig
from portway.policies.contract import PolicyContext, Reply

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_FORWARDED_ENTRIES = 64
MAX_VERDICTS = 4096


def parse_networks(values: Sequence[str]) -> list[IpNetwork]:
    out: list[IpNetwork] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=True))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
    return out


def parse_address(value: str) -> IpAddress | None:
    """The address in ``value`` (``None`` when it is none). Addresses are immutable and clients
    come back, so the answers for the last 4,096 short values are kept: parsing one costs more
    than an IP filter's whole check. (Longer values, never more than padding around an address,
    are parsed each time: a client cannot fill the cache with big strings.)"""
    if len(value) > _CACHED_LENGTH:
        return _parse_address(value)
    return _parse_cached(value)


_CACHED_LENGTH = 64


def _parse_address(value: str) -> IpAddress | None:
    text = value.strip(" \t")  # optional whitespace only: CR/LF make the entry invalid
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]  # "[2001:db8::1]:443"
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # "192.0.2.1:5000"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_parse_cached = functools.lru_cache(maxsize=4096)(_parse_address)
_address_text = functools.lru_cache(maxsize=4096)(str)


def within(address: IpAddress, networks: Sequence[IpNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_address(
    peer: str, forwarded: Sequence[str], trusted: Sequence[IpNetwork]
) -> IpAddress | None:
    """The client address; ``None`` when it cannot be determined (a malformed forwarded entry
    from a trusted proxy)."""
    address = parse_address(peer)
    if address is None or not trusted or not within(address, trusted):
        return address
    entries = [e for value in forwarded for e in value.split(",") if e.strip(" \t")]
    for entry in reversed(entries[-MAX_FORWARDED_ENTRIES:]):
        hop = parse_address(entry)
        if hop is None:
            return None
        address = hop
        if not within(hop, trusted):
            return hop
    return address


class IpFilterConfig(PolicyConfig):
    allow: Annotated[
        list[str], Field(max_length=10000, description="addresses/CIDRs allowed (empty: all)")
    ] = Field(default_factory=list)
    deny: Annotated[
        list[str], Field(max_length=10000, description="addresses/CIDRs refused (wins over allow)")
    ] = Field(default_factory=list)
    trusted_proxies: Annotated[
        list[str],
        Field(max_length=1000, description="proxies whose X-Forwarded-For is believed"),
    ] = Field(default_factory=list)

    @field_validator("allow", "deny", "trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _rules(self) -> IpFilterConfig:
        if not self.allow and not self.deny:
            raise ValueError("set allow or deny (or both)")
        return self


class IpFilterPolicy(Policy[IpFilterConfig]):
    type_name = "ip_filter"
    summary = "Allow or deny clients by IP address or CIDR (X-Forwarded-For from trusted proxies)."
    config_model = IpFilterConfig
    errors = {"ip_denied": ErrorSpec(403, "your address is not allowed")}
    __slots__ = ("_allow", "_deny", "_trusted", "_verdicts")

    def __init__(self, config: IpFilterConfig, build: Build) -> None:
        super().__init__(config, build)
        self._allow = parse_networks(config.allow)
        self._deny = parse_networks(config.deny)
        self._trusted = parse_networks(config.trusted_proxies)
        self._verdicts: dict[str, tuple[str | None, bool]] = {}
        """Without trusted proxies the verdict depends on the worker's client address alone:
        kept per address (the last ``MAX_VERDICTS``), as ``_verdict`` gives it."""

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        if self._trusted:
            forwarded = ctx.request.headers.get_all("x-forwarded-for")
            text, allowed = self._verdict(ctx.client_ip, forwarded)
        else:
            found = self._verdicts.get(ctx.client_ip)
            if found is None:
                if len(self._verdicts) >= MAX_VERDICTS:
                    self._verdicts.clear()
                found = self._verdicts[ctx.client_ip] = self._verdict(ctx.client_ip, ())
            text, allowed = found
        if text is not None:
            ctx.variables["client.address"] = text
        if not allowed:
            raise Deny("ip_denied")
        return None

    def _verdict(self, peer: str, forwarded: Sequence[str]) -> tuple[str | None, bool]:
        """The client's address as text (``None``: undeterminable) and whether it may pass."""
        address = client_address(peer, forwarded, self._trusted)
        if address is None:
            return None, False
        if within(address, self._deny):
            return _address_text(address), False
        return _address_text(address), not self._allow or within(address, self._allow)
