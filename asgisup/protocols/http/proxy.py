"""Trusting X-Forwarded-For / X-Forwarded-Proto from known proxies (like uvicorn's
``--proxy-headers`` and ``--forwarded-allow-ips``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from asgisup.protocols.http.events import Headers

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The peers whose forwarding headers are believed.

    Entries are IP addresses, networks (``10.0.0.0/8``), ``*`` for everyone, or ``unix:``
    for peers on a Unix socket (which have no address).
    """

    def __init__(self, entries: Iterable[str]) -> None:
        """Raises ValueError for an entry that is not an address, a network, '*' or 'unix:'."""
        self.everyone = False
        self.unix = False
        self._networks: list[Network] = []
        self._known: dict[str, bool] = {}  # host -> trusted, for the hosts seen lately
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.everyone = True
            elif entry == "unix:":
                self.unix = True
            elif entry:
                self._networks.append(ipaddress.ip_network(entry, strict=False))

    def trusts(self, host: str | None) -> bool:
        if self.everyone:
            return True
        if host is None:
            return self.unix
        known = self._known.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self._networks)
            if len(self._known) >= 4096:  # bounded: forged X-Forwarded-For hops are hosts too
                self._known.clear()
            self._known[host] = known
        return known


def forwarded(
    headers: Headers, client: tuple[str, int] | None, scheme: str, trusted: TrustedProxies
) -> tuple[tuple[str, int] | None, str]:
    """The (client, scheme) a request came from, through the trusted proxies; the caller
    has checked that ``client``, the peer, is one of them (once per connection).

    X-Forwarded-For is read right to left: the first address not itself a trusted proxy is
    the client; entries left of it could be forged by that client.
    """
    for name, value in headers:
        if name == b"x-forwarded-proto":
            proto = value.decode("latin-1").split(",")[-1].strip().lower()
            if proto in ("http", "https", "ws", "wss"):
                scheme = "https" if proto in ("https", "wss") else "http"
        elif name == b"x-forwarded-for":
            hops = [hop.strip() for hop in value.decode("latin-1").split(",") if hop.strip()]
            if hops:
                chosen = hops[0]
                for hop in reversed(hops):
                    if not trusted.trusts(hop):
                        chosen = hop
                        break
                client = (chosen, 0)
    return client, scheme
