"""The searcher: which configuration to try next (Optuna), as a Ray Tune `Searcher`.

hpo drives Optuna through ask/tell itself rather than through Ray's `OptunaSearch`, because the
scheduler's decisions must reach the sampler honestly:
- a trial the scheduler stopped early is told to Optuna as PRUNED, with every evaluation as an
  intermediate value, not as a COMPLETE trial whose low-fidelity score misleads TPE;
- a trial that ran to its end is COMPLETE with its best evaluation (the one hpo would export);
- a diverged or crashed trial is FAIL.
The space is sampled define-by-run, so conditional parameters keep their structure.
"""

from __future__ import annotations

import math
import pickle
import warnings
from typing import Any

import optuna
from ray.tune.search import Searcher

from hpo.space import Space
from hpo.spec import JobSpec
from hpo.trial.reporter import FINAL, OUTCOME

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(method: str, seed: int, run_cap: int, n_objectives: int) -> Any:
    """name -> a seeded Optuna sampler."""
    samplers = optuna.samplers
    if method == "tpe":
        # TPE needs a few random trials first; with small budgets, 10 would be all of them.
        startup = max(3, min(10, run_cap // 4))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return samplers.TPESampler(
                seed=seed,
                n_startup_trials=startup,
                multivariate=True,
                group=True,  # conditional parameters are modelled per sub-space
                constant_liar=True,  # running trials count, so parallel workers spread out
            )
    if method in ("random", "grid"):
        return samplers.RandomSampler(seed=seed)
    if method == "cmaes":
        if n_objectives > 1:
            raise ValueError("cmaes supports one objective; use tpe for several")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ValueError(f"unknown method {method!r}; choose tpe, random, grid or cmaes")


class OptunaSearcher(Searcher):
    """Ray Tune Searcher over an Optuna study, fed the scheduler's decisions truthfully."""

    def __init__(
        self,
        space: Space,
        objectives: list[tuple[str, str]],
        sampler: Any,
        points: list[dict[str, Any]] | None = None,
    ) -> None:
        name, goal = objectives[0]
        super().__init__(metric=name, mode="max" if goal == "maximize" else "min")
        self._space = space
        self._objectives = objectives
        self._study = optuna.create_study(
            sampler=sampler,
            directions=[goal for _, goal in objectives],  # type: ignore[misc]
        )
        for point in points or []:
            self._study.enqueue_trial(space.internal(point), skip_if_exists=True)
        self._live: dict[str, optuna.trial.Trial] = {}
        self._evaluations: dict[str, list[dict[str, Any]]] = {}

    @property
    def study(self) -> optuna.Study:
        return self._study

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        return True  # metric, mode and space were fixed at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        trial = self._study.ask()
        config = self._space.sample(trial)
        self._live[trial_id] = trial
        self._evaluations[trial_id] = []
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self._live.get(trial_id)
        if trial is None:
            return
        self._evaluations[trial_id].append(_objective_values(result, self._objectives))
        value = result.get(self._objectives[0][0])
        if len(self._objectives) == 1 and isinstance(value, int | float) and _finite(value):
            step = int(result.get("training_iteration", len(self._evaluations[trial_id])))
            trial.report(float(value), step=step)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        trial = self._live.pop(trial_id, None)
        evaluations = self._evaluations.pop(trial_id, [])
        if trial is None:
            return
        state, values = self._verdict(result, error, evaluations)
        self._study.tell(trial, values, state=state)

    def _verdict(
        self, result: dict[str, Any] | None, error: bool, evaluations: list[dict[str, Any]]
    ) -> tuple[optuna.trial.TrialState, list[float] | None]:
        State = optuna.trial.TrialState
        if error or result is None or result.get(OUTCOME) == "diverged":
            return State.FAIL, None
        if not result.get(FINAL):
            return State.PRUNED, None
        best = self._best_evaluation(evaluations or [_objective_values(result, self._objectives)])
        if best is None:
            return State.FAIL, None
        return State.COMPLETE, [best[name] for name, _ in self._objectives]

    def _best_evaluation(self, evaluations: list[dict[str, Any]]) -> dict[str, Any] | None:
        name, goal = self._objectives[0]
        usable = [e for e in evaluations if all(_finite(e.get(n)) for n, _ in self._objectives)]
        if not usable:
            return None
        sign = 1.0 if goal == "maximize" else -1.0
        return max(usable, key=lambda e: sign * float(e[name]))

    # -- persistence: Tune saves this with the experiment, and `hpo resume` restores it -------
    def get_state(self) -> dict[str, Any]:
        return {
            "study": self._study,
            "live": self._live,
            "evaluations": self._evaluations,
            "space": self._space,
            "objectives": self._objectives,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._study = state["study"]
        self._live = state["live"]
        self._evaluations = state["evaluations"]
        self._space = state["space"]
        self._objectives = state["objectives"]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _objective_values(result: dict[str, Any], objectives: list[tuple[str, str]]) -> dict[str, Any]:
    return {name: result.get(name) for name, _ in objectives}


def make_searcher(spec: JobSpec, space: Space) -> OptunaSearcher:
    """The spec's searcher: seeded sampler, known-good points first, a grid enqueued whole."""
    objectives = [(m.name, m.goal or "maximize") for m in spec.metrics]
    sampler = make_sampler(spec.method, spec.seed, spec.run_cap or 10, len(objectives))
    points = list(spec.points_to_evaluate)
    if spec.method == "grid":
        points += space.grid()
    return OptunaSearcher(space, objectives, sampler, points)
