"""The score a new checkpoint must reach to be kept: told by the driver, read by the trials.

The checkpoint budget keeps the `keep` best checkpoints of the whole search. Once it holds that
many, an evaluation scoring below the worst of them can never be exported, and the budget would
delete its checkpoint at once (unless it is what a running trial resumes from). Writing such a
checkpoint costs a trial its serialization and a few hundred MB of disk writes per evaluation
for nothing: ASHA's weak trials are most trials. So the budget publishes that worst kept score
(its "bar") in Ray's key-value store, and a trial checks it before it saves.

The bar only rises, so a trial that reads a stale one writes more, never less, than needed. Any
failure to publish or read counts as "no bar": the trial saves as if every checkpoint mattered.
"""

from __future__ import annotations

import hashlib
import math
import os

from hpo import cluster_kv
from hpo.paths import is_remote_uri


def bar_key(experiment_path: str) -> str:
    """The key of one search's bar: its experiment path (the same on `hpo resume`; a local
    one with its links resolved, since `run` and `resume` may spell it differently)."""
    if not is_remote_uri(experiment_path):
        experiment_path = os.path.realpath(experiment_path)
    return "checkpoint-bar/" + hashlib.sha256(experiment_path.encode()).hexdigest()[:24]


def publish(key: str, score: float | None) -> None:
    """Set (or with None clear) the bar; scores are oriented so that higher is better."""
    if score is None or not math.isfinite(score):
        cluster_kv.delete(key)
    else:
        cluster_kv.put(key, repr(score))


def read(key: str) -> float | None:
    """The bar of the search, or None while every checkpoint may be kept (or on any failure)."""
    value = cluster_kv.get(key)
    try:
        return float(value) if value else None
    except ValueError:
        return None
