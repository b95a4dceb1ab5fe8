"""Which trials ended, as Tune announced it: so that a trial cut off by Ctrl-C is recorded as
unfinished, not as stopped early.

A trial that finishes, that the scheduler stops, or that fails reaches the callbacks'
`on_trial_complete` / `on_trial_error`. One still running when the search is interrupted does
not: Tune marks it terminated as it cleans up, and its last evaluation is not a final one,
which is also what a trial stopped early looks like. The set rides with the search's saved
state, so `hpo resume` keeps it.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback


class TrialEndings(Callback):
    def __init__(self) -> None:
        self.ended: set[str] = set()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.add(trial.trial_id)

    on_trial_error = on_trial_complete

    def get_state(self) -> dict[str, Any]:
        return {"ended": sorted(self.ended)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.ended = set(state.get("ended", []))


def ended_trials(callbacks: list[Any]) -> set[str] | None:
    """The trials that ended, from a search's callbacks; None for a search started before hpo
    kept the set (its trials' outcomes are read from their last evaluation alone)."""
    for callback in callbacks:
        if isinstance(callback, TrialEndings):
            return callback.ended
    return None
