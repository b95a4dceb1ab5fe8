#!/usr/bin/env python
"""Start and stop a local multi-node Ray cluster on 127.0.0.1 for development and tests.

    python cluster/local_cluster.py start --dir /tmp/hpo-cluster --workers 1
    export RAY_ADDRESS=http://127.0.0.1:<dashboard port it prints>
    python cluster/local_cluster.py stop --dir /tmp/hpo-cluster

Every node is a separate `ray start` on loopback with its own resources (the head has
`{"hpo_head": 1}`, worker i `{"hpo_worker_<i>": 1}`) and its own Ray temp dir, as on separate
machines: nodes sharing one temp dir unpack a job's working_dir over each other. All of a
cluster's state lives under --dir (the nodes' temp dirs and cluster.json); `stop` ends exactly
the processes whose command line names that folder, and their children. It never runs
`ray stop`, which would end every Ray process of the user on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys

INFO = "cluster.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# `ray start` on 127.0.0.1 only. Ray 2.60 swaps 127.0.0.1 for the machine's routable address
# (services.resolve_ip_for_localhost: a node's address, the GCS address a process connects
# to), and a node whose address is not loopback has its GCS, raylet and workers listen on
# every interface. Ray keeps 127.0.0.1 where it believes it runs on one machine
# (SINGLE_MACHINE_ENV=0, as on macOS), which the node's processes inherit; `ray start` itself
# would then refuse a worker node, so it is told the address as given instead.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
RAY_START = [
    sys.executable,
    "-c",
    "import sys; from ray._private import ray_constants, services; "
    "ray_constants.ENABLE_RAY_CLUSTER = True; "
    "services.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()",
    "start",
]


def start(folder: str, workers: int, cpus: int, gpus: int, object_store_mb: int) -> dict:
    folder = os.path.abspath(folder)
    if os.path.exists(os.path.join(folder, INFO)):
        sys.exit(f"{folder} already holds a cluster; stop it first")
    os.makedirs(folder, exist_ok=True)
    port, dashboard = free_port(), free_port()
    common = [
        "--node-ip-address=127.0.0.1",  # kept as given: see RAY_START
        f"--num-cpus={cpus}",
        f"--object-store-memory={object_store_mb * 1024 * 1024}",
        "--disable-usage-stats",
    ]
    head = [
        *RAY_START,
        "--head",
        f"--port={port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        '--resources={"hpo_head": 1}',
        "--num-gpus=0",  # as in the cloud configs, the head (the search's driver) has no GPU
        f"--temp-dir={os.path.join(folder, 'head')}",
        *common,
    ]
    info = {
        "dir": folder,
        "gcs_address": f"127.0.0.1:{port}",
        "dashboard": f"http://127.0.0.1:{dashboard}",
        "nodes": 1 + workers,
    }
    with open(os.path.join(folder, INFO), "w") as f:  # written first: `stop` finds the dir
        json.dump(info, f, indent=1)
    _run(head)
    for i in range(workers):
        _run(
            [
                *RAY_START,
                f"--address=127.0.0.1:{port}",
                f"--dashboard-agent-listen-port={free_port()}",
                f'--resources={{"hpo_worker_{i}": 1}}',
                f"--num-gpus={gpus}",
                f"--temp-dir={os.path.join(folder, f'worker{i}')}",
                *common,
            ]
        )
    return info


def _run(cmd: list[str]) -> None:
    # Job entrypoints run `python` from the nodes' PATH: make it this interpreter.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env[SINGLE_MACHINE_ENV] = "0"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"timed out: {' '.join(cmd)}") from None
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")


def own_processes(folder: str) -> list:
    """Processes whose command line names this cluster's folder, with all their children."""
    import psutil

    folder = os.path.abspath(folder)
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(folder in a for a in proc.info["cmdline"] or []):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(found.values())


def stop(folder: str, keep: bool = False) -> int:
    import psutil

    procs = own_processes(folder)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    if not keep:
        shutil.rmtree(os.path.abspath(folder), ignore_errors=True)
    return len(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("start", help="start a head and worker nodes on 127.0.0.1")
    up.add_argument("--dir", required=True, help="folder for this cluster's state (new)")
    up.add_argument("--workers", type=int, default=1, help="worker nodes besides the head")
    up.add_argument("--cpus", type=int, default=1, help="CPUs each node offers")
    up.add_argument(
        "--gpus",
        type=int,
        default=0,
        help="GPUs each worker node offers (the head none); on a machine without GPUs, Ray "
        "schedules by them all the same",
    )
    up.add_argument("--object-store-mb", type=int, default=200)
    down = sub.add_parser("stop", help="end this cluster's processes and remove its folder")
    down.add_argument("--dir", required=True)
    down.add_argument("--keep", action="store_true", help="keep the folder (its logs)")
    args = parser.parse_args()
    if args.command == "start":
        info = start(args.dir, args.workers, args.cpus, args.gpus, args.object_store_mb)
        print(json.dumps(info, indent=1))
        print(f"export RAY_ADDRESS={info['dashboard']}", file=sys.stderr)
    else:
        print(f"stopped {stop(args.dir, args.keep)} processes", file=sys.stderr)


if __name__ == "__main__":
    main()
