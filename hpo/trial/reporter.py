"""The one channel between a trial and the tuner: report an evaluation, find the last checkpoint.

Trial code receives a `Reporter`; only `TuneReporter` knows about Ray Tune, so a trial can run
on a laptop (or in a unit test) with `LocalReporter`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from hpo import cluster_kv

# Keys hpo adds to reports; the driver reads them back from Ray's results.
FINAL = "hpo_final"  # 1 on a trial's last evaluation: it ended by itself, not by the scheduler
OUTCOME = "hpo_outcome"  # completed | patience (stopped itself: no gain) | diverged
TRAIN_SECONDS = "hpo_train_seconds"  # time spent in training steps so far
NODE = "hpo_node"  # the Ray node the trial ran on
GPUS = "hpo_visible_gpus"  # CUDA_VISIBLE_DEVICES as the trial saw it (Ray sets it per trial)
# In each checkpoint next to the Trainer's files: what the trial's own bookkeeping needs to go on
# after a resume (patience, best so far, training seconds); not part of an exported model.
TRIAL_STATE_FILE = "hpo_trial_state.json"


class Reporter(Protocol):
    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        """Hand over one evaluation's metrics and, when given, that step's checkpoint folder."""

    def restored_checkpoint(self) -> AbstractContextManager[str | None]:
        """While open: a local folder with the checkpoint to resume from (after a crash or a
        pause), or None for a fresh start. Read-only."""

    def checkpoint_bar(self) -> float | None:
        """The score (higher is better) a checkpoint must reach to be kept by the search, or
        None while any may be kept (`hpo.checkpoint_bar`)."""

    def record_failure(self, first_failure: str) -> None:
        """Keep the traceback of an error a restart of this trial (on this node) would meet
        again."""

    def earlier_failure(self) -> str | None:
        """The traceback `record_failure` kept for this trial, if it failed so before here."""


class TuneReporter:
    """Reports to Ray Tune, which decides (through the scheduler) whether the trial goes on."""

    def __init__(self, bar_key: str | None = None) -> None:
        self.bar_key = bar_key

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        # Nodes on one host share an IP; the node id tells them apart in trials.csv.
        metrics = {
            **metrics,
            NODE: _node_id(),
            GPUS: os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        }
        tune.report(metrics, checkpoint=checkpoint)

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[str | None]:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        # Read in place when the run's storage is local disk (no copy); a bucket's checkpoint
        # is downloaded to a temporary folder that goes when the context closes.
        with checkpoint.as_directory() as folder:
            yield folder

    def checkpoint_bar(self) -> float | None:
        from hpo import checkpoint_bar

        return checkpoint_bar.read(self.bar_key) if self.bar_key else None

    def record_failure(self, first_failure: str) -> None:
        from hpo.trial.failures import record

        if key := self._failure_key():  # a restart on another node may have failed as well
            cluster_kv.put(key, record(_node_id(), first_failure, cluster_kv.get(key)))

    def earlier_failure(self) -> str | None:
        from hpo.trial.failures import failure_on

        key = self._failure_key()
        return failure_on(_node_id(), cluster_kv.get(key)) if key else None

    def _failure_key(self) -> str | None:
        from ray import tune

        from hpo.trial.failures import failure_key

        trial_id = tune.get_context().get_trial_id()
        return failure_key(self.bar_key, trial_id) if self.bar_key and trial_id else None


def _node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


class LocalReporter:
    """Keeps the reports in memory: for running a trial without Ray."""

    def __init__(self, resume_from: str | None = None, bar: float | None = None) -> None:
        self.reports: list[dict[str, Any]] = []
        self.checkpoints: list[str | None] = []
        self._resume_from = resume_from
        self.bar = bar  # what a search's checkpoint budget would publish
        self.failure: str | None = None

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        self.reports.append(dict(metrics))
        self.checkpoints.append(checkpoint_dir)

    def restored_checkpoint(self) -> AbstractContextManager[str | None]:
        return contextlib.nullcontext(self._resume_from)

    def checkpoint_bar(self) -> float | None:
        return self.bar

    def record_failure(self, first_failure: str) -> None:
        self.failure = first_failure

    def earlier_failure(self) -> str | None:
        return self.failure
