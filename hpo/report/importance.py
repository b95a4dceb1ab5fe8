"""Hyperparameter importance with Optuna's evaluators (fANOVA and PED-ANOVA).

Under ASHA most trials stop early, so their best values come from different budgets; ranking
parameters on those would mostly measure who was allowed to train longer. The importance is
computed instead at one evaluation that most trials reached, so every trial is compared at the
same budget.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from hpo.report.rundata import RunData

optuna.logging.set_verbosity(optuna.logging.WARNING)

EVALUATORS = {
    "fANOVA": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
    "PED-ANOVA": lambda: optuna.importance.PedAnovaImportanceEvaluator(),
}
MIN_TRIALS = 3
SHARE_AT_BUDGET = 2 / 3  # the deepest evaluation at least this share of trials reached


@dataclass
class Importance:
    evaluation: int | None  # the budget the trials were compared at
    trials: int
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # evaluator -> param -> s
    reason: str = ""  # why there are no scores


def common_budget(evaluations: pd.DataFrame) -> int | None:
    reached = evaluations.groupby("trial_id")["training_iteration"].max()
    if reached.empty:
        return None
    need = math.ceil(SHARE_AT_BUDGET * len(reached))
    candidates = [e for e in sorted(set(reached)) if (reached >= e).sum() >= need]
    return int(max(candidates)) if candidates else int(reached.min())


def _distribution(values: list[Any], log: bool) -> Any:
    D = optuna.distributions
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric and len(set(values)) > 2:
        low, high = float(min(values)), float(max(values))
        return D.FloatDistribution(low, high, log=log and low > 0)
    return D.CategoricalDistribution(sorted({str(v) for v in values}))


def _internal(value: Any, distribution: Any) -> Any:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return str(value)
    return float(value)


def _study(run: RunData, values: pd.Series) -> tuple[optuna.Study, list[str]]:
    trials = run.trials.set_index("trial_id").loc[values.index]
    distributions: dict[str, Any] = {}
    for name in run.params:
        column = trials[name].dropna().tolist()
        if len(set(map(str, column))) > 1:
            entry = run.spec.parameters[name]
            distributions[name] = _distribution(column, "log" in (entry.distribution or ""))
    study = optuna.create_study(direction="maximize" if run.maximize else "minimize")
    for trial_id, value in values.items():
        row = trials.loc[trial_id]
        params = {
            n: (
                row[n]
                if not isinstance(d, optuna.distributions.CategoricalDistribution)
                else str(row[n])
            )
            for n, d in distributions.items()
            if not pd.isna(row[n])
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={n: distributions[n] for n in params},
                value=float(value),
            )
        )
    return study, list(distributions)


def importance(run: RunData) -> Importance:
    """Each searched parameter's share of the metric's variation, per evaluator."""
    frame = run.evaluations
    budget = common_budget(frame) if len(frame) else None
    if budget is None:
        return Importance(None, 0, reason="no evaluations")
    at_budget = frame[frame["training_iteration"] == budget].dropna(subset=[run.metric])
    values = at_budget.groupby("trial_id")[run.metric].last()
    values = values[values.map(math.isfinite)]
    result = Importance(budget, len(values))
    if len(values) < MIN_TRIALS:
        result.reason = f"needs {MIN_TRIALS} trials with a value at evaluation {budget}"
        return result
    if values.nunique() == 1:  # fANOVA fails on zero variance; there is nothing to explain
        result.reason = f"every trial scored the same at evaluation {budget}"
        return result
    study, names = _study(run, values)
    if not names:
        result.reason = "every trial used the same values"
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, make in EVALUATORS.items():
            try:
                scores = optuna.importance.get_param_importances(study, evaluator=make())
            except (RuntimeError, ValueError) as err:  # an evaluator's own limit: the others go on
                result.reason = f"{label}: {err}"
                continue
            result.scores[label] = {k: float(v) for k, v in scores.items()}
    return result
