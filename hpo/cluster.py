"""What a search needs from a multi-node Ray cluster: storage that every node reaches."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hpo.errors import SpecError
from hpo.paths import is_remote_uri

PROBE_TIMEOUT_S = 120


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
