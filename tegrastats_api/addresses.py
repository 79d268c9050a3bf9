"""Where a user can reach the server: the URLs the start-up line prints.

What it does: :func:`open_urls` turns ``--host`` and the bound port into the URLs a user
can open: loopback first, then, when the server listens on every address (``0.0.0.0``,
or ``::`` for IPv4 and IPv6), every address of this machine's interfaces, found with
the standard library alone (:func:`interface_addresses`).

What it does not: bind, resolve names or send anything: a host given by name or address
is printed as given.
"""
from __future__ import annotations

import array
import ipaddress
import socket
import struct
import sys
from typing import List

IF_INET6 = "/proc/net/if_inet6"
SIOCGIFCONF = 0x8912  # Linux: every IPv4 address of every interface, aliases too
_IFREQ_SIZE = 40 if struct.calcsize("P") == 8 else 32  # struct ifreq: name[16] + a union
_MAX_ADDRESSES = 512


def _linux_ipv4() -> List[str]:
    import fcntl

    buffer = array.array("B", bytes(_IFREQ_SIZE * _MAX_ADDRESSES))
    pointer, _ = buffer.buffer_info()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        answer = fcntl.ioctl(sock.fileno(), SIOCGIFCONF, struct.pack("iP", len(buffer), pointer))
    length = struct.unpack("iP", answer)[0]
    data = buffer.tobytes()[:length]
    # each struct ifreq: the name (16 bytes), then a sockaddr_in: family, port, address
    return [socket.inet_ntoa(data[i + 20:i + 24]) for i in range(0, length, _IFREQ_SIZE)]


def _linux_ipv6() -> List[str]:
    """Global IPv6 addresses from /proc/net/if_inet6 (scope 00; not link-local ones, which
    need a zone that browsers do not take)."""
    found = []
    with open(IF_INET6, encoding="ascii") as rows:
        for row in rows:
            fields = row.split()
            if len(fields) >= 4 and fields[3] == "00":
                found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return found


def _resolved(family: int) -> List[str]:
    """The addresses this machine's name resolves to: the fallback off Linux."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]


def interface_addresses(family: int) -> List[str]:
    """Every address of ``family`` (AF_INET or AF_INET6) this machine has, loopback and
    link-local ones left out, in interface order, without duplicates."""
    try:
        if not sys.platform.startswith("linux"):
            raise OSError("not Linux")
        found = _linux_ipv4() if family == socket.AF_INET else _linux_ipv6()
    except (OSError, ImportError, ValueError):
        found = _resolved(family)
    out: List[str] = []
    for text in found:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not (address.is_loopback or address.is_link_local or address.is_unspecified) and text not in out:
            out.append(text)
    return out


def _url(host: str, port: int, scheme: str) -> str:
    return "%s://%s:%d" % (scheme, "[%s]" % host if ":" in host else host, port)


def open_urls(host: str, port: int, scheme: str = "http") -> List[str]:
    """The URLs to print for a server listening on ``host``:``port``.

    A wildcard (``0.0.0.0``; ``::``, which also serves IPv4) gives loopback first, then
    every interface address of the families it serves; any other host is given as it is.
    """
    try:
        wildcard = ipaddress.ip_address(host.strip())
    except ValueError:
        return [_url(host, port, scheme)]
    if wildcard == ipaddress.IPv4Address("0.0.0.0"):
        hosts = ["127.0.0.1"] + interface_addresses(socket.AF_INET)
    elif wildcard == ipaddress.IPv6Address("::"):
        hosts = ["::1", "127.0.0.1"] + interface_addresses(socket.AF_INET) + interface_addresses(socket.AF_INET6)
    else:
        hosts = [host]
    return [_url(h, port, scheme) for h in hosts]
