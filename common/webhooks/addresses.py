"""Where webhooks may be sent: public addresses only, unless the operator allows a network.

An endpoint's URL is chosen by whoever registers it; without this guard, naming a loopback,
private or link-local address (``http://169.254.169.254/...``, ``http://127.0.0.1:3306``,
a router's admin page) would make the service POST inside its own network and log the
answer's start where the admin API shows it (server-side request forgery). The address is
checked when an endpoint is registered or changed, and again at every connection (a name
may resolve elsewhere by then), where only a checked address is connected to.
``SHOP_WEBHOOK_ALLOWED_NETWORKS`` names the networks allowed even so (e.g. a receiver on the
same private network, or 127.0.0.0/8 for a local test receiver).
"""

import ipaddress
import socket
from collections.abc import Sequence

import httpx

from common.kept_connections import default_port

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks; ValueError naming a bad one."""
    networks = []
    for part in text.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"{part.strip()!r} is not an IP network ({exc})") from exc
    return tuple(networks)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64): it is where a
    packet to it ends up, so that is the one to judge."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a webhook may not be sent to ``address``; None when it may."""
    if any(address.version == n.version and address in n for n in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return refusal(inner, allowed)
    if address.is_loopback:
        kind = "a loopback"
    elif address.is_link_local:
        kind = "a link-local"
    elif address.is_multicast:
        kind = "a multicast"
    elif address.is_unspecified:
        kind = "an unspecified"
    elif not address.is_global:
        kind = "a private or reserved"
    else:
        return None
    return f"{address} is {kind} address"


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to (a literal address: itself); OSError if none."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # (the scope of a link-local IPv6 address, "fe80::1%eth0", is not part of the address)
    return list(dict.fromkeys(ipaddress.ip_address(str(f[4][0]).split("%")[0]) for f in found))


def check_url(url: str, allowed: Sequence[IPNetwork]) -> str | None:
    """Why ``url`` may not be registered; None when it may. A name that does not resolve now
    is accepted (it may by the time of the first delivery, which checks again)."""
    parsed = httpx.URL(url)
    try:
        addresses = resolve(parsed.host, parsed.port or default_port(parsed.scheme))
    except (OSError, UnicodeError):
        return None
    reasons = [r for r in (refusal(a, allowed) for a in addresses) if r]
    if not reasons:
        return None
    named = "" if reasons[0].startswith(parsed.host) else f"{parsed.host} resolves to "
    return (
        f"{named}{reasons[0]}: webhooks are sent to public addresses only (an operator may "
        "allow a network with SHOP_WEBHOOK_ALLOWED_NETWORKS)"
    )


class AddressRefused(OSError):
    """The address a webhook would connect to is not one it may reach."""


def connect(
    address: tuple[str, int],
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
    *,
    allowed: Sequence[IPNetwork] = (),
) -> socket.socket:
    """A TCP connection to ``address`` (host, port) on an address ``refusal`` lets through:
    the name is resolved here and the checked address is the one connected to, so a name
    that resolves elsewhere between a check and the connection (DNS rebinding) gets
    nowhere. In the shape of ``socket.create_connection`` (``KeptConnection`` calls it)."""
    host, port = address
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"{host} does not resolve: {exc}") from exc
    permitted = [a for a in addresses if refusal(a, allowed) is None]
    if not permitted:
        reason = refusal(addresses[0], allowed)
        raise AddressRefused(f"{reason} (SHOP_WEBHOOK_ALLOWED_NETWORKS)")
    error: OSError | None = None
    for checked in permitted:  # the next address if one fails, as a browser would
        try:
            return socket.create_connection((str(checked), port), timeout, source_address)
        except OSError as exc:
            error = exc
    assert error is not None
    raise error
