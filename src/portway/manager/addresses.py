"""Which IP addresses are internal, for the manager's outbound connections to user-given URLs.

An address is *private* (never fetched from unless the operator allows it) when it, or an IPv4
address embedded in it, is not globally routable: unspecified (``0.0.0.0``, ``::``), loopback,
link-local (cloud metadata ``169.254.169.254`` among them), private (RFC 1918, unique-local
``fc00::/7`` with AWS's ``fd00:ec2::254``), site-local ``fec0::/10``, multicast, reserved, shared
(100.64/10), documentation. Embedded IPv4 addresses are those of IPv4-mapped (``::ffff:a.b.c.d``),
IPv4-compatible (``::a.b.c.d``), NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``) and Teredo
(``2001::/32``, server and client) addresses: each is checked too, and Teredo and 6to4 addresses
are private whatever they embed (they tunnel to somewhere the manager cannot vouch for).

``resolve`` is the one name resolution of a fetch: the caller checks its answers and connects to the
checked address itself (never resolving the name again), so a DNS answer that changes between the
check and the connection (rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are not IPv4 addresses
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def is_private(address: str | IPAddress, allowed: Sequence[IPNetwork] = ()) -> bool:
    """True when the manager must not connect to ``address`` on a user's behalf (see above);
    ``allowed`` are networks the operator opened (an address in one of them is not private)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
    if any(ip in network for network in allowed):
        return False
    if ip in METADATA:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _SITE_LOCAL or ip in _SIX_TO_FOUR or ip in _TEREDO:
            return True
        if any(is_private(v4) for v4 in embedded_ipv4(ip)):
            return True
        if ip in _IPV4_COMPATIBLE:  # ::, ::1 and ::a.b.c.d are never public
            return True
    return (
        not ip.is_global
        or ip.is_unspecified
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_private
        or ip.is_reserved
    )


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (one resolution; an IP literal resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _literal(host: str) -> list[IPAddress]:
    if host.lower().rstrip(".") in _LOCAL_NAMES:
        return [ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")]
    try:
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        return []


@dataclass(frozen=True, slots=True)
class BackendPolicy:
    """The operator's rule for APIs' backend addresses: ``deny`` networks (link-local and metadata
    by default) and the manager's own listen address are refused unless ``allow`` opens them.
    Only addresses written as IP literals (and ``localhost``) are checked: a host name is
    resolved by the workers when they connect, where the manager cannot see its answer."""

    deny: Sequence[IPNetwork] = ()
    allow: Sequence[IPNetwork] = ()
    own: Sequence[tuple[str, int]] = ()

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be a backend address, or None."""
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None  # the model refuses it
        for ip in _literal(parts.hostname or ""):
            if any(ip in network for network in self.allow):
                continue
            if any(ip in network for network in self.deny):
                return f"{ip} is in a network backends may not use (setting backend_allow_cidrs)"
            for host, own_port in self.own:
                if port == own_port and ip in _own_addresses(host):
                    return "is the manager's own address (setting backend_allow_cidrs)"
        return None


def _own_addresses(host: str) -> set[IPAddress]:
    found = set(_literal(host))
    if any(ip.is_unspecified for ip in found) or not found:
        found |= {ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "0.0.0.0", "::")}
    return found
