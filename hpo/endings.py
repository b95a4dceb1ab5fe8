"""Which trials ended, as Tune announced it: so that a trial cut off by Ctrl-C is recorded as
unfinished, not as stopped early.

A trial that finishes, that the scheduler stops, or that fails reaches the callbacks'
`on_trial_complete` / `on_trial_error`. One still running when the search is interrupted does
not: Tune marks it terminated as it cleans up, and its last evaluation is not a final one,
which is also what a trial stopped early looks like. The set rides with the search's saved
state, so `hpo resume` keeps it.

It also times the trials that fail: Ray's results carry a trial's time only as of its last
evaluation, so one that failed before its first (or an hour after its last) would count no
compute, and a search whose trials all failed would report none spent.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback


class TrialEndings(Callback):
    def __init__(self) -> None:
        self.ended: set[str] = set()
        self.failed_after: dict[str, float] = {}  # errored trial -> seconds it ran
        self._since: dict[str, float] = {}  # its attempt's start or latest evaluation

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_since"}  # this process's clock

    def __setstate__(self, state: dict[str, Any]) -> None:
        # One pickled by an older hpo (with the search, then `hpo resume`) lacks the timings.
        self.__dict__.update({"failed_after": {}, **state, "_since": {}})

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._since[trial.trial_id] = time.monotonic()

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self._since[trial.trial_id] = time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.add(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.add(trial.trial_id)
        since = self._since.pop(trial.trial_id, None)
        reported = trial.run_metadata.last_result.get("time_total_s") or 0.0
        lost = time.monotonic() - since if since is not None else 0.0
        self.failed_after[trial.trial_id] = round(float(reported) + lost, 3)

    def get_state(self) -> dict[str, Any]:
        return {"ended": sorted(self.ended), "failed_after": self.failed_after}

    def set_state(self, state: dict[str, Any]) -> None:
        self.ended = set(state.get("ended", []))
        self.failed_after = dict(state.get("failed_after", {}))


def trial_endings(callbacks: list[Any]) -> TrialEndings | None:
    """A search's TrialEndings; None for a search started before hpo kept one (its trials'
    outcomes are read from their last evaluation alone)."""
    for callback in callbacks:
        if isinstance(callback, TrialEndings):
            return callback
    return None
