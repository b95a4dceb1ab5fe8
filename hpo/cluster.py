"""What a search needs from a multi-node Ray cluster: a node that can hold a trial (now, or
once the autoscaler adds it), and storage that every node reaches."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.errors import SpecError
from hpo.paths import is_remote_uri
from hpo.spec import JobSpec

PROBE_TIMEOUT_S = 120
CONNECT_TIMEOUT_S = 5.0


def host_and_port(address: str) -> tuple[str, int] | None:
    """HOST:PORT or ray://HOST:PORT as (host, port); None for `auto` and other forms."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    return (host.strip("[]"), int(port)) if sep and port.isdigit() else None


def unanswered(host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why nothing takes a TCP connection at host:port, or None when something does."""
    import socket

    try:
        with socket.create_connection((host, port), timeout_s):
            return None
    except OSError as err:
        return err.strerror or type(err).__name__


def check_ray_address(address: str) -> None:
    """A cluster address (HOST:PORT, ray://HOST:PORT) where nothing answers: said now, in one
    line. Ray itself retries for minutes, printing a warning every few seconds."""
    where = host_and_port(address)
    reason = unanswered(*where) if where else None  # `auto`: Ray explains itself
    if reason is not None:
        raise SpecError(
            [f"--address {address}: no Ray cluster answers there ({reason}); is its head up?"]
        )


def check_cluster_fits(spec: JobSpec) -> None:
    """A trial no node can ever hold would stay pending forever: refuse it now, naming the key.

    An alive node that holds it settles it. Otherwise the nodes an autoscaler can add count too:
    the node types Ray records from the autoscaler's config when it has them, or, where it has
    none, the user's word (`resources.autoscale`) that the cluster grows on demand.
    """
    import ray

    need = _need(spec)
    alive = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(_holds(res, need) for res in alive):
        return
    asks = f"a trial asks for cpu={spec.resources.cpu:g}, gpu={spec.resources.gpu:g}"
    node_types = autoscaler_node_types()
    if node_types:
        fitting = sorted(name for name, g in node_types.items() if _holds(g.resources, need))
        if fitting:
            _note(
                f"no alive node holds a trial yet ({asks}); trials wait for the autoscaler "
                f"to add a node of type {', '.join(fitting)}"
            )
            return
        biggest = _largest([g.resources for g in node_types.values()])
        raise SpecError(
            [
                f"resources: {asks} but the largest node type the autoscaler can add has "
                f"{_describe(biggest)} (and no alive node holds it)"
            ]
        )
    if spec.resources.autoscale:
        _note(
            f"no alive node holds a trial yet ({asks}); trials wait until the autoscaler "
            "adds one (resources.autoscale: true)"
        )
        return
    raise SpecError(
        [
            f"resources: {asks} but the largest node has {_describe(_largest(alive))}; on a "
            "cluster whose autoscaler adds such nodes, set `resources.autoscale: true`"
        ]
    )


@dataclass
class NodeGroup:
    """A node type the autoscaler may add: its resources and how many (None: no limit)."""

    resources: dict[str, float]
    max_count: int | None


def autoscaler_node_types() -> dict[str, NodeGroup]:
    """Node type -> what the autoscaler may add of it, as Ray records its config (Ray Train and
    Ray Data read the same record); empty when Ray has none."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # a private API: without it, hpo falls back to `resources.autoscale`
        return {}
    if config is None:
        return {}
    return {
        group.name or f"group {i}": NodeGroup(
            {k: float(v) for k, v in group.resources.items()},
            None if group.max_count < 0 else group.max_count,
        )
        for i, group in enumerate(config.node_group_configs)
        if group.max_count != 0
    }


def trial_slots(spec: JobSpec) -> int:
    """Trials that fit at once on the cluster's CPUs (and GPUs, when trials use them): on the
    nodes alive now, or on all the autoscaler may add where Ray records its node types (a
    search limited to the nodes alive at its start would never make the autoscaler add more)."""
    return _slots_and_source(spec)[0]


def say_concurrency(spec: JobSpec, local: bool = False) -> int:
    """How many trials run at once, and why: on an autoscaling cluster, a figure held to the
    nodes alive at the start is the first thing to see. Returns that number, for the tuner (a
    second count could differ if a node joined in between)."""
    if spec.max_concurrent:
        n, source = spec.max_concurrent, "max_concurrent"
    else:
        n, source = _slots_and_source(spec)
        if local:
            source = "what this machine holds"
        source += "; max_concurrent sets it"
    if spec.run_cap and spec.run_cap < n:  # no more at once than the search will start
        n, source = spec.run_cap, "run_cap"
    _note(f"up to {n} trial{'s' if n != 1 else ''} at a time ({source})")
    return n


def _slots_and_source(spec: JobSpec) -> tuple[int, str]:
    import ray

    slots = _slots(ray.cluster_resources(), spec)
    groups = autoscaler_node_types().values()
    if any(g.max_count is None and _holds(g.resources, _need(spec)) for g in groups):
        # No limit: as many as the search will start.
        return max(slots, spec.run_cap or 10), "the autoscaler can add nodes without limit"
    reachable = sum(_slots(g.resources, spec) * (g.max_count or 0) for g in groups)
    if reachable > slots:
        return reachable, "what the nodes the autoscaler can add hold"
    return max(1, slots), "what the nodes alive now hold"


def _slots(resources: dict[str, float], spec: JobSpec) -> int:
    slots = int(resources.get("CPU", 0) // spec.resources.cpu)
    if spec.resources.gpu:
        slots = min(slots, int(resources.get("GPU", 0) // spec.resources.gpu))
    return slots


def _need(spec: JobSpec) -> dict[str, float]:
    return {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}


def _holds(resources: dict[str, float], need: dict[str, float]) -> bool:
    return all(resources.get(k, 0) >= v for k, v in need.items() if v)


def _largest(nodes: list[dict[str, float]]) -> dict[str, float]:
    return max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})


def _describe(resources: dict[str, float]) -> str:
    return f"cpu={resources.get('CPU', 0):g}, gpu={resources.get('GPU', 0):g}"


def _note(message: str) -> None:
    print(f"hpo: {message}", file=sys.stderr, flush=True)


def check_storage_shared(storage: str) -> None:
    """Refuse node-local storage on a multi-node cluster (needs a connected Ray).

    Trials write checkpoints from whichever node runs them and the driver reads every one back,
    so each node must see the same folder. Rather than guess from host names, hpo asks: it
    leaves a marker file in the storage folder and has a task on every alive node look for it.
    Nodes on one host (the loopback test cluster) pass; so does a shared mount (NFS, EFS).
    """
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1 or is_remote_uri(storage):
        return
    blind = nodes_missing(storage, nodes)
    if blind:
        where = ", ".join(f"{n.get('NodeManagerAddress', '?')} ({n['NodeID'][:8]})" for n in blind)
        raise SpecError(
            [
                f"storage: `{storage}` is node-local: {len(blind)} of {len(nodes)} nodes "
                f"cannot see it ({where}). Trials write checkpoints on the node that runs them "
                "and the driver reads them all back, so a multi-node search needs storage "
                "every node reaches at the same path: a shared mount (NFS, EFS, Filestore) or "
                "an s3:// or gs:// URI"
            ]
        )


def nodes_missing(storage: str, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes that cannot see a marker file left in `storage` (or its nearest parent)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    existing = Path(storage)
    while not existing.exists():
        existing = existing.parent

    @ray.remote(num_cpus=0, max_retries=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    with tempfile.NamedTemporaryFile(dir=existing, prefix=".hpo-storage-probe-") as marker:
        refs = [
            sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(marker.name)
            for n in nodes
        ]
        seen = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    return [n for n, ok in zip(nodes, seen, strict=True) if not ok]
