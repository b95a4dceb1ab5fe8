"""Keep a Ray that hpo starts on this machine on 127.0.0.1.

Ray 2.60 swaps the address 127.0.0.1 for the machine's routable one wherever it meets it (a
node's address in `ray.init` and `ray start`, the GCS address a process connects to:
`ray._private.services.resolve_ip_for_localhost`), and a node whose address is not loopback
has its GCS, raylet and workers listen on every interface: the embedded Ray of `hpo run` was
reachable from the network. Ray keeps 127.0.0.1 where it believes it runs a single-machine
Ray, as on macOS and Windows (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`). So, while a local Ray
starts, this process believes so, and so does every process it starts (the GCS, the raylet
and, through it, every worker and agent inherit the variable). A Ray that hpo connects to
(`--address`) is the user's to configure and is not touched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While it is held, a Ray started here stays on 127.0.0.1, and so do its processes."""
    from ray._private import ray_constants

    before_env, before_flag = os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV] = "0"  # for the processes it starts
    ray_constants.ENABLE_RAY_CLUSTER = False  # for this one, which read the variable at import
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = before_env


def cluster_on_loopback(address: str) -> bool:
    """Does `address` (HOST:PORT) name a cluster that listens on 127.0.0.1 only, as one that
    cluster/local_cluster.py starts? Ray would connect to it through the machine's routable
    address instead, where nothing answers. (A cluster listening on every interface answers
    there too, and connecting through it, as Ray does, is right.)"""
    from ray._common.network_utils import is_localhost
    from ray._private import services

    from hpo.cluster import host_and_port, unanswered

    where = host_and_port(address)
    if where is None or not is_localhost(where[0]):
        return False
    routable = services.node_ip_address_from_perspective()
    return is_localhost(routable) or unanswered(routable, where[1], 2.0) is not None
