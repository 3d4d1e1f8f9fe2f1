"""Where the running service listens: Ray started by ``init_ray`` for a loopback host keeps
every port of its own (GCS, raylet, object manager, agents, metrics exporter) on loopback."""

from __future__ import annotations

import ipaddress

import psutil


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def test_nothing_of_the_service_listens_beyond_loopback(service):
    me = psutil.Process()
    names = {p.pid: p.name() for p in [me, *me.children(recursive=True)]}
    listening = [(names[c.pid], c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in names]
    assert service["port"] in {port for _, _, port in listening}  # the HTTP proxy is among them
    assert len({name for name, _, _ in listening}) > 2  # and so are Ray's own processes
    outside = [entry for entry in listening if not _is_loopback(entry[1])]
    assert not outside, f"listening beyond loopback: {outside}"
