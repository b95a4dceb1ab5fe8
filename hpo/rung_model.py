"""TPE fitted where the evidence is: on the highest rung that enough trials reached (BOHB).

Under early stopping, few trials run to the end. Optuna's TPE ranks COMPLETE trials first and
PRUNED ones after them by how far they got, so until many trials have finished, its "good"
group is whatever few trials finished (however they scored) and its model rests on a handful
of points. BOHB (Falkner et al. 2018) instead fits its model on the highest budget that has
enough observations (number of parameters + 1) and ranks every trial that reached that
budget by its score there: dozens of comparable scores instead of a few full ones, until
enough trials have finished to stand on their own.

`RungTPESampler` is Optuna's TPE shown such a view of the study. The rungs are read from the
study itself (the steps where the scheduler stopped or paused trials), so the searcher needs
nothing from the scheduler; with no trial stopped early, or once enough trials finished, the
view is the study as it is, and a COMPLETE trial still counts its best evaluation.

It is the spec's `rung_model: true`, off by default: on the synthetic multi-fidelity benchmark
it cut the regret by a quarter where early evaluations rank like the last and changed little
where they mislead, but on the real quickstart task (3 seeds) it did worse than Optuna's order
(benchmarks/BENCHMARKS.md, "Eleventh session").
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState, create_trial

from hpo.numbers import finite_number


class RungTPESampler(optuna.samplers.TPESampler):
    """TPE over the highest rung with at least `min_points` scores (None: BOHB's number of
    parameters + 1)."""

    def __init__(self, *, min_points: int | None = None, **tpe_options: Any) -> None:
        super().__init__(**tpe_options)
        self._min_points = min_points
        self._views: tuple[int, Study, FrozenTrial] | None = None  # for the trial being sampled

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return super().infer_relative_search_space(*self._view(study, trial))

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return super().sample_relative(*self._view(study, trial), search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        view, placeholder = self._view(study, trial)
        return super().sample_independent(view, placeholder, param_name, param_distribution)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_views"] = None  # a cache: saved with the searcher, it would only add weight
        return state

    def _view(self, study: Study, trial: FrozenTrial) -> tuple[Study, FrozenTrial]:
        """The study as TPE should see it while it samples `trial` (built once per trial)."""
        if self._views is None or self._views[0] != trial._trial_id:
            view = rung_view(study, trial, self._min_points)
            self._views = (trial._trial_id, *view)
        return self._views[1], self._views[2]


def rung_view(
    study: Study, trial: FrozenTrial, min_points: int | None = None
) -> tuple[Study, FrozenTrial]:
    """(study, trial) as TPE sees them: the study itself, or a copy ranked at the model's rung.
    Several objectives report no intermediate values: the study itself."""
    if len(study.directions) > 1:
        return study, trial
    trials = study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    others = [t for t in trials if t.number != trial.number]
    rung = model_rung(others, min_points)
    if rung is None:
        return study, trial
    view = optuna.create_study(directions=study.directions)
    view.add_trials([_as_seen_at(t, rung) for t in others])
    # The trial being sampled, so that TPE can note what it sampled for it (a system attr).
    view.add_trial(create_trial(state=TrialState.RUNNING))
    return view, view.get_trials(deepcopy=False)[-1]


def model_rung(trials: list[FrozenTrial], min_points: int | None = None) -> int | None:
    """The highest rung below the end that at least `min_points` trials reached (None: the
    number of parameters + 1); None when the study is the model (no trial stopped early, or
    that many trials finished)."""
    need = min_points or len({name for t in trials for name in t.distributions}) + 1
    if sum(t.state == TrialState.COMPLETE for t in trials) >= need:
        return None
    rungs = {max(t.intermediate_values) for t in trials if _stopped_early(t)}
    for rung in sorted(rungs, reverse=True):
        if sum(finite_number(t.intermediate_values.get(rung)) for t in trials) >= need:
            return rung
    return None


def _as_seen_at(trial: FrozenTrial, rung: int) -> FrozenTrial:
    """A trial that reached `rung` is scored there; one stopped before stays PRUNED (TPE ranks
    it below); a running trial stays running (TPE's constant liar); a finished trial with no
    score at the rung (a warm-start point) keeps its own value."""
    value = trial.intermediate_values.get(rung)
    params, dists = trial.params, trial.distributions
    if trial.state == TrialState.RUNNING and not finite_number(value):
        return create_trial(state=TrialState.RUNNING, params=params, distributions=dists)
    if finite_number(value):
        return create_trial(value=value, params=params, distributions=dists)
    if trial.state == TrialState.COMPLETE:
        return create_trial(values=trial.values, params=params, distributions=dists)
    return create_trial(
        state=TrialState.PRUNED,
        params=params,
        distributions=dists,
        intermediate_values=trial.intermediate_values,
    )


def _stopped_early(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.PRUNED and bool(trial.intermediate_values)
