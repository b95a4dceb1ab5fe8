"""Keeps what the driver holds per finished trial small, for searches of thousands of trials.

Tune keeps, for every trial and for the whole search, running statistics of every numeric key
the trial ever reported (min, max, mean, last-5 and last-10 means, and the two deques behind the
last two): measured, 21 of the 38 KiB by which the driver's Python heap grew per trial
(benchmarks/BENCHMARKS.md, scale). Of all that, only ResultGrid's `get_best_result` reads
anything, and only for the metric it ranks by; hpo reads its results from the result files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ray.tune import Callback


class ForgetFinishedTrialStats(Callback):
    """When a trial finishes, drop Tune's running statistics of every key but `keep`."""

    def __init__(self, keep: Iterable[str]) -> None:
        self.keep = frozenset(keep) | {"training_iteration"}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Errored trials may be retried and go on updating theirs: only finished ones come here.
        metadata = trial.run_metadata
        # Reassigned rather than emptied in place: the assignment also drops Tune's cached JSON
        # of the trial, so the experiment's saved state shrinks with it.
        metadata.metric_analysis = self._kept(metadata.metric_analysis)
        metadata.metric_n_steps = self._kept(metadata.metric_n_steps)

    def _kept(self, stats: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in stats.items() if key in self.keep}
