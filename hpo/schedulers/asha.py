"""ASHA (Ray's, stop-type) with the rung guard: no stopping at a rung that misleads."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from hpo.schedulers._guard import RungGuard


def milestones(grace_period: int, max_t: int, eta: float) -> list[float]:
    """The rungs of one ASHA bracket below a full trial: grace_period * eta**k < max_t."""
    rungs: list[float] = []
    rung = float(grace_period)
    while rung < max_t:
        rungs.append(rung)
        rung *= eta
    return rungs


class GuardedASHA(AsyncHyperBandScheduler):
    """Ray's ASHA whose stop decisions are vetoed at rungs the guard finds misleading.

    Ray's brackets still record every score at every rung (so their cutoffs are unchanged); a
    STOP at a rung the guard does not trust becomes CONTINUE, as if the grace period were
    longer.
    """

    tie_stops = 0  # a scheduler pickled by an older hpo (then `hpo resume`) has none

    def __init__(
        self,
        *,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
        guard: bool = True,
        guard_min_pairs: int = 5,
        guard_threshold: float = 0.3,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            max_t=max_t, grace_period=grace_period, reduction_factor=reduction_factor, **kwargs
        )
        rungs = [*milestones(grace_period, max_t, reduction_factor), float(max_t)]
        self.guard = RungGuard(rungs, guard, guard_min_pairs, guard_threshold)
        self.vetoed = 0  # stops the guard turned into continues
        self.tie_stops = 0  # trials tied at the cutoff, stopped (Ray would go on)

    @property
    def notes(self) -> list[str]:
        return self.guard.notes

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        rung = self._observe(trial, result)
        early = result.get(self._time_attr, 0) < self._max_t
        if not early or rung is None:
            return action
        if action == TrialScheduler.CONTINUE and self._tied_below_better(trial.trial_id, rung):
            self._num_stopped += 1
            self.tie_stops += 1
            return TrialScheduler.STOP
        if action != TrialScheduler.STOP or self.guard.trusted(rung):
            return action
        self._num_stopped -= 1
        self.vetoed += 1
        return TrialScheduler.CONTINUE

    def _tied_below_better(self, trial_id: str, rung: float) -> bool:
        """Ray goes on with a trial whose score equals the rung's cutoff. In classification many
        trials sit exactly at the majority-class accuracy early on; once they are two thirds of
        a rung, the cutoff is that value and every one of them goes on. Such a tie beats the
        cutoff only when no trial at the rung scored better."""
        if not self.guard.trusted(rung):
            return False  # a rung the guard distrusts stops nobody
        scores = dict(self.guard.scores[rung])
        mine = scores.pop(trial_id)
        if not scores or not any(s > mine for s in scores.values()):
            return False
        cutoff = np.nanpercentile(list(scores.values()), (1 - 1 / self._reduction_factor) * 100)
        return bool(mine <= cutoff)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._observe(trial, result)
        super().on_trial_complete(tune_controller, trial, result)

    def _observe(self, trial: Any, result: dict) -> float | None:
        t, value = result.get(self._time_attr), result.get(self._metric)
        if not isinstance(t, int | float) or not isinstance(value, int | float):
            return None
        return self.guard.observe(trial.trial_id, t, float(self._metric_op or 1.0) * value)

    def debug_string(self) -> str:
        lines = [super().debug_string(), *self.guard.summary()]
        return "\n".join(lines)
