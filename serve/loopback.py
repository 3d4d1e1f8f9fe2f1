"""Keeping a local Ray's own ports on loopback when the service itself listens on loopback.

Ray binds its processes' ports (GCS, raylet, object manager, dashboard agent, metrics exporter,
runtime-env agent) to every interface unless its node address is a loopback one, which it only
accepts with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (on by default on Linux). Ray Serve 2.60
also starts an inter-deployment gRPC server in every replica on ``[::]:0`` whatever the node
address; :func:`keep_replica_servers_on_loopback` (called by every deployment's constructor,
which runs before the replica starts that server) binds it to loopback instead. ``tests/service/test_network.py`` checks that nothing listens elsewhere.
"""

from __future__ import annotations

import os
from typing import Any

from prorank.serve.config import ServeConfig

ALL_INTERFACES = ("0.0.0.0", "::", "")
LOOPBACK_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_ALL_INTERFACES_PORT = "[::]:"


def loopback_node(cfg: ServeConfig) -> bool:
    """Whether a Ray started for ``cfg`` keeps its ports on loopback (a local cluster for a
    service that is not asked to listen on every interface)."""
    return cfg.ray_address is None and cfg.host not in ALL_INTERFACES


def use_loopback_node() -> None:
    """Make the next local ``ray.init`` take 127.0.0.1 as the node address."""
    from ray._private import ray_constants

    os.environ[LOOPBACK_NODE_ENV] = "0"  # for Ray's processes, which read it at start
    ray_constants.ENABLE_RAY_CLUSTER = False  # for this one, which read it at import


def keep_replica_servers_on_loopback() -> None:
    """In a replica on a loopback node, bind Serve's inter-deployment gRPC server to loopback."""
    if os.environ.get(LOOPBACK_NODE_ENV) != "0":
        return
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "_prorank_loopback", False):
        return

    def add_port(server: Any, address: str) -> int:
        if address.startswith(_ALL_INTERFACES_PORT):
            address = "127.0.0.1:" + address[len(_ALL_INTERFACES_PORT):]
        return original(server, address)

    add_port._prorank_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port
