"""`warm_start: RUN_DIR`: a previous search's trials seed the sampler of a new one.

Each earlier trial whose values fit the new space is added to the Optuna study as what it was:
a finished trial COMPLETE with its best value, a trial the scheduler stopped PRUNED with its
evaluations as intermediate values. The new search therefore starts where the old one learned,
e.g. after the data was refreshed; the old trials are not rerun.
"""

from __future__ import annotations

import csv
import os
from typing import Any

import optuna

from hpo.errors import SpecError
from hpo.numbers import finite_number
from hpo.schema import load_yaml
from hpo.space import Param, Space, base_name
from hpo.spec import JobSpec

_USABLE = {
    "completed": "COMPLETE",
    "reached_target": "COMPLETE",
    "patience": "COMPLETE",
    "stopped_early": "PRUNED",
}


def _read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cell(text: str) -> Any:
    """A trials.csv cell back to its value ('' means the parameter was inactive). Python
    writes 0.00003 as `3e-05`, which plain YAML 1.1 reads as a string."""
    return None if text == "" else load_yaml(text)


def check_warm_start(run_dir: str) -> list[str]:
    """Problems with a warm-start run directory (named by its key)."""
    if not os.path.isfile(os.path.join(run_dir, "trials.csv")):
        return [f"warm_start: `{run_dir}` is not a finished run directory (no trials.csv)"]
    return []


def earlier_trials(space: Space, spec: JobSpec, run_dir: str) -> list[optuna.trial.FrozenTrial]:
    """The previous search's usable trials as Optuna trials of the new space."""
    metric = spec.primary.name
    rows = _read_csv(os.path.join(run_dir, "trials.csv"))
    curves: dict[str, dict[int, float]] = {}
    evaluations = os.path.join(run_dir, "evaluations.csv")
    if os.path.isfile(evaluations):
        for e in _read_csv(evaluations):
            value = _cell(e.get(metric, ""))
            if finite_number(value):
                step = int(float(e["training_iteration"]))
                curves.setdefault(e["trial_id"], {})[step] = float(value)
    trials = []
    for row in rows:
        trial = _as_trial(row, space, metric, curves.get(row["trial_id"], {}))
        if trial is not None:
            trials.append(trial)
    return trials


def _as_trial(
    row: dict[str, str], space: Space, metric: str, curve: dict[int, float]
) -> optuna.trial.FrozenTrial | None:
    state = _USABLE.get(row.get("outcome", ""))
    best = _cell(row.get(f"best_{metric}", ""))
    if state is None or not finite_number(best):
        return None
    params, dists = {}, {}
    config: dict[str, Any] = {}  # the trial's values so far, for the next ones' conditions
    for p in space.tunable:
        value = _value_of(p, row, config)
        if value is None:
            continue  # inactive in that trial
        if not p.contains(value):
            return None  # the new space no longer holds it
        params[p.name] = p.to_internal(value)
        dists[p.name] = p.distribution()
        config[p.name] = value
    return optuna.trial.create_trial(
        params=params,
        distributions=dists,
        value=float(best) if state == "COMPLETE" else None,
        intermediate_values=curve,
        state=getattr(optuna.trial.TrialState, state),
        user_attrs={"warm_start_trial": row["trial_id"]},
    )


def _value_of(p: Param, row: dict[str, str], config: dict[str, Any]) -> Any:
    """`p`'s value in an earlier trial: under its own name or, where the earlier search named
    the parameter otherwise (`learning_rate` there, `learning_rate@lora` here, or the reverse),
    under another name of the same parameter, if `p` is active in that trial."""
    value = _cell(row.get(p.name, ""))
    if value is not None or not p.active(config):
        return value
    others = (k for k in row if k != p.name and base_name(k) == base_name(p.name))
    return next((v for v in map(_cell, (row[k] for k in others)) if v is not None), None)


def seed_study(study: optuna.Study, space: Space, spec: JobSpec, run_dir: str) -> int:
    """Add the earlier trials to `study`; returns how many were added."""
    problems = check_warm_start(run_dir)
    if problems:
        raise SpecError(problems)
    if len(spec.metrics) > 1:
        return 0  # trials.csv keeps the first objective only: nothing honest to tell
    trials = earlier_trials(space, spec, run_dir)
    study.add_trials(trials)
    return len(trials)
