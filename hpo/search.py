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

import pickle
import warnings
from typing import Any

import optuna
from ray.tune.search import Searcher

from hpo.hedge import RESUMES, MisledHedge
from hpo.numbers import finite_number
from hpo.rung_model import RungTPESampler
from hpo.space import Space
from hpo.spec import JobSpec
from hpo.trial.reporter import FINAL, OUTCOME

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(
    method: str,
    seed: int,
    run_cap: int,
    n_objectives: int,
    rung_model: bool = False,
    hedge: bool = True,
) -> Any:
    """name -> a seeded Optuna sampler. `rung_model`: TPE models the highest rung that enough
    trials reached (hpo.rung_model) instead of the study in Optuna's own order; `hedge`: TPE
    gives way to random draws while early evaluations mislead it (hpo.hedge)."""
    samplers = optuna.samplers
    if method == "tpe":
        # TPE needs a few random trials first; with small budgets, 10 would be all of them.
        startup = max(3, min(10, run_cap // 4))
        tpe = RungTPESampler if rung_model else samplers.TPESampler
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            model = tpe(
                seed=seed,
                n_startup_trials=startup,
                multivariate=True,
                group=True,  # conditional parameters are modelled per sub-space
                constant_liar=True,  # running trials count, so parallel workers spread out
            )
        # Several objectives report no learning curves: nothing for the hedge to read.
        return MisledHedge(model, seed=seed) if hedge and n_objectives == 1 else model
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
        self._curves: dict[str, dict[int, float]] = {}  # trial id -> step -> primary value
        self._last_step: dict[str, int] = {}
        # Paused by a promotion-type scheduler: told PRUNED at their first pause (so the
        # sampler learns from them while they wait), recorded again when they end if resumed.
        self._parked: dict[str, optuna.trial.FrozenTrial] = {}
        self._paused: set[str] = set()
        self._max_concurrent = 0  # 0: no limit of its own (Ray's ConcurrencyLimiter counts)
        self.warm_started: Any = None  # hpo.warmstart.Seeded: what `warm_start` added

    @property
    def study(self) -> optuna.Study:
        return self._study

    def notes(self) -> list[str]:
        """What the searcher changed as the search went (the hedge's verdicts), for people."""
        hedge = self._study.sampler
        return list(hedge.notes) if isinstance(hedge, MisledHedge) else []

    def summary(self) -> list[str]:
        """Those notes, or how the hedge judges the search at its end when it never acted."""
        hedge = self._study.sampler
        return hedge.summary(self._study) if isinstance(hedge, MisledHedge) else []

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        return True  # metric, mode and space were fixed at construction

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Take over Ray's ConcurrencyLimiter: count running trials, not paused ones."""
        self._max_concurrent = max_concurrent
        return True

    def on_pause(self, trial_id: str, result: dict[str, Any] | None = None) -> None:
        """A promotion-type scheduler paused this trial: its slot is free, and Optuna is told
        it was pruned at this step (a trial it may later resume is recorded again at its end).

        `result` is the evaluation it paused at. Tune hands a result to the searcher only after
        the scheduler has decided, i.e. after this call, and a trial told pruned takes no more
        values: without it Optuna would hold the trial with no intermediate value at all."""
        if result is not None:
            self.on_trial_result(trial_id, result)  # Tune's own call then finds it recorded
        trial = self._live.pop(trial_id, None)
        if trial is not None:
            self._parked[trial_id] = self._study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        if trial_id in self._parked:
            self._paused.add(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        self._paused.discard(trial_id)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        running = len(self._live) + len(self._parked) - len(self._paused)
        if self._max_concurrent and running >= self._max_concurrent:
            return None
        trial = self._study.ask()
        config = self._space.sample(trial)
        self._live[trial_id] = trial
        self._evaluations[trial_id] = []
        self._curves[trial_id] = {}
        self._last_step[trial_id] = 0
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        evaluations = self._evaluations.get(trial_id)
        if evaluations is None:
            return
        step = int(result.get("training_iteration", len(evaluations) + 1))
        if step <= self._last_step.get(trial_id, 0):
            return  # already recorded (Tune repeats the last result when a trial ends)
        self._last_step[trial_id] = step
        evaluations.append(_objective_values(result, self._objectives))
        value = result.get(self._objectives[0][0])
        if len(self._objectives) == 1 and finite_number(value):
            self._curves[trial_id][step] = float(value)
            trial = self._live.get(trial_id)
            if trial is not None:
                trial.report(float(value), step=step)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if result is not None and not error:
            # Tune skips `on_trial_result` for the result that made the scheduler stop a
            # trial, and passes it here: it is an evaluation like the others.
            self.on_trial_result(trial_id, result)
        self._last_step.pop(trial_id, None)
        trial = self._live.pop(trial_id, None)
        parked = self._parked.pop(trial_id, None)
        evaluations = self._evaluations.pop(trial_id, [])
        curve = self._curves.pop(trial_id, {})
        self._paused.discard(trial_id)
        state, values = self._verdict(result, error, evaluations)
        if trial is not None:
            self._study.tell(trial, values, state=state)
        elif parked is not None and max(curve, default=0) > (parked.last_step or 0):
            # Resumed after its pause and went further: record where it ended.
            self._study.add_trial(
                optuna.trial.create_trial(
                    params=parked.params,
                    distributions=parked.distributions,
                    values=values,
                    state=state,
                    intermediate_values=curve,
                    system_attrs={RESUMES: parked.number},  # the hedge counts the trial once
                )
            )

    def _verdict(
        self, result: dict[str, Any] | None, error: bool, evaluations: list[dict[str, Any]]
    ) -> tuple[optuna.trial.TrialState, list[float] | None]:
        State = optuna.trial.TrialState
        if result is None and evaluations and not error:
            return State.PRUNED, None  # a paused trial the scheduler stopped for good
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
        usable = [
            e for e in evaluations if all(finite_number(e.get(n)) for n, _ in self._objectives)
        ]
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
            "curves": self._curves,
            "last_step": self._last_step,
            "parked": self._parked,
            "paused": self._paused,
            "max_concurrent": self._max_concurrent,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._study = state["study"]
        self._live = state["live"]
        self._evaluations = state["evaluations"]
        self._space = state["space"]
        self._objectives = state["objectives"]
        self._curves = state.get("curves", {})
        self._last_step = state.get("last_step", {})
        self._parked = state.get("parked", {})
        self._paused = state.get("paused", set())
        self._max_concurrent = state.get("max_concurrent", 0)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


def _objective_values(result: dict[str, Any], objectives: list[tuple[str, str]]) -> dict[str, Any]:
    return {name: result.get(name) for name, _ in objectives}


def make_searcher(spec: JobSpec, space: Space) -> OptunaSearcher:
    """The spec's searcher: seeded sampler, known-good points first, a grid enqueued whole."""
    objectives = [(m.name, m.goal or "maximize") for m in spec.metrics]
    sampler = make_sampler(
        spec.method, spec.seed, spec.run_cap or 10, len(objectives), spec.rung_model, spec.hedge
    )
    points = list(spec.points_to_evaluate)
    if spec.method == "grid":
        points += space.grid()
    searcher = OptunaSearcher(space, objectives, sampler, points)
    if spec.warm_start:
        from hpo.warmstart import seed_study

        searcher.warm_started = seed_study(searcher.study, space, spec, spec.warm_start)
    return searcher
