"""The Ray that `hpo run` starts on this machine listens on 127.0.0.1 only: no server of it
(GCS, raylet, workers, agents) is reachable from the network."""

from __future__ import annotations

import subprocess
import sys

import psutil
from conftest import listening_addresses, off_loopback

# hpo's own init_ray, then one actor (a worker process with its own server), then wait.
DRIVER = """
import sys, ray
from hpo.tuner import init_ray
init_ray(None, None)
@ray.remote(num_cpus=0)
class Probe:
    def ready(self):
        return True
probe = Probe.remote()
ray.get(probe.ready.remote())
print("up", flush=True)
sys.stdin.read()
ray.shutdown()
"""


def test_the_embedded_ray_listens_on_loopback_only(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "up"
        root = psutil.Process(driver.pid)
        listening = listening_addresses([root, *root.children(recursive=True)])
        names = " ".join(listening)
        assert "gcs_server" in names and "raylet" in names, listening  # it did look
        assert not off_loopback(listening), listening
    finally:
        driver.communicate("", timeout=60)  # its own shutdown stops what it started


def test_a_driver_reaches_a_cluster_the_way_it_listens():
    """`--address 127.0.0.1:PORT`: a cluster listening on loopback only (as
    cluster/local_cluster.py starts one) is joined on loopback; one listening on every
    interface is joined as Ray joins it, through the machine's routable address."""
    import socket

    import pytest
    from ray._common.network_utils import is_localhost
    from ray._private.services import node_ip_address_from_perspective

    from hpo.loopback import cluster_on_loopback

    if is_localhost(node_ip_address_from_perspective()):
        pytest.skip("this machine has no routable address to tell the two apart")
    for bind, on_loopback in (("127.0.0.1", True), ("0.0.0.0", False)):
        with socket.socket() as server:
            server.bind((bind, 0))
            server.listen()
            port = server.getsockname()[1]
            assert cluster_on_loopback(f"127.0.0.1:{port}") is on_loopback, bind
    assert not cluster_on_loopback("10.0.0.7:6379") and not cluster_on_loopback("auto")
