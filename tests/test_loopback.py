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
