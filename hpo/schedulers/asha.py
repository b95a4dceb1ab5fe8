"""ASHA (Ray's, stop-type) with the rung guard: no stopping at a rung that misleads."""

from __future__ import annotations

from typing import Any

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

    @property
    def notes(self) -> list[str]:
        return self.guard.notes

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        rung = self._observe(trial, result)
        early = result.get(self._time_attr, 0) < self._max_t
        if action != TrialScheduler.STOP or not early or rung is None or self.guard.trusted(rung):
            return action
        self._num_stopped -= 1
        self.vetoed += 1
        return TrialScheduler.CONTINUE

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
