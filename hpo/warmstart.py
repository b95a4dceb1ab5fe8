"""`warm_start: RUN_DIR`: a previous search's trials seed the sampler of a new one.

Each earlier trial whose values fit the new space is added to the Optuna study as what it was:
a finished trial COMPLETE with its best value, a trial the scheduler stopped PRUNED with its
evaluations as intermediate values. The new search therefore starts where the old one learned,
e.g. after the data was refreshed; the old trials are not rerun.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
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


def check_warm_start(run_dir: str, metrics: list[str]) -> list[str]:
    """Problems with a warm-start run directory (named by its key): it must be a finished
    run that recorded every metric this search optimizes."""
    trials = os.path.join(run_dir, "trials.csv")
    if not os.path.isfile(trials):
        return [f"warm_start: `{run_dir}` is not a finished run directory (no trials.csv)"]
    header = _header(os.path.join(run_dir, "evaluations.csv"))
    recorded = set(header)
    if len(metrics) == 1:  # a finished trial's best value of the first metric is in trials.csv
        recorded |= {c.removeprefix("best_") for c in _header(trials) if c.startswith("best_")}
    missing = [m for m in metrics if m not in recorded]
    if not missing:
        return []
    where = "its evaluations.csv has no such column" if header else "it has no evaluations recorded"
    return [
        f"warm_start: `{run_dir}` did not record {', '.join(missing)} ({where}): its trials "
        "cannot tell the sampler how they fared on this search's metrics; warm-start from a "
        "run that optimized or recorded them"
    ]


def _header(path: str) -> list[str]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


@dataclass
class Seeded:
    """What a warm start took from the earlier run."""

    trials: list[optuna.trial.FrozenTrial]
    earlier: int  # trials in the earlier run
    # Parameters that search did not sample, taken at the one value its trials ran with.
    fixed: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # trial -> why

    def summary(self) -> str:
        line = f"warm_start: {len(self.trials)} of {self.earlier} earlier trials seed the sampler"
        if self.left_out:
            why = "; ".join(f"{t} {reason}" for t, reason in list(self.left_out.items())[:3])
            more = len(self.left_out) - 3
            line += f" (left out: {why}{f'; {more} more' if more > 0 else ''})"
        if self.fixed:
            taken = ", ".join(f"{name}={_shown(v)}" for name, v in self.fixed.items())
            line += f"; {taken}: the one value that search's trials ran with"
        return line


def _shown(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def earlier_trials(space: Space, spec: JobSpec, run_dir: str) -> Seeded:
    """The previous search's usable trials as Optuna trials of the new space."""
    objectives = [(m.name, m.goal or "maximize") for m in spec.metrics]
    rows = _read_csv(os.path.join(run_dir, "trials.csv"))
    scores: dict[str, dict[int, dict[str, float]]] = {}  # trial -> evaluation -> metric
    evaluations = os.path.join(run_dir, "evaluations.csv")
    for e in _read_csv(evaluations) if os.path.isfile(evaluations) else []:
        values = {name: _cell(e.get(name, "")) for name, _ in objectives}
        if all(finite_number(v) for v in values.values()):
            step = int(float(e["training_iteration"]))
            scores.setdefault(e["trial_id"], {})[step] = {k: float(v) for k, v in values.items()}
    seeded = Seeded([], len(rows))
    ran_with, fixed = _ran_with(run_dir), set[str]()
    for row in rows:
        scored = scores.get(row["trial_id"], {})
        trial = _as_trial(row, space, objectives, scored, ran_with, fixed)
        if isinstance(trial, str):
            seeded.left_out[row["trial_id"]] = trial
        else:
            seeded.trials.append(trial)
    seeded.fixed = {
        name: ran_with.get(name, ran_with.get(base_name(name))) for name in sorted(fixed)
    }
    return seeded


def _ran_with(run_dir: str) -> dict[str, Any]:
    """What every trial of the earlier search ran with where it sampled nothing: its
    `training` values and `model.config` fields, and full fine-tuning where it had no
    `strategy` (hpo's default). A strategy search warm-started from a plain one so keeps
    the earlier learning rates as its full fine-tuning's."""
    from hpo.runinfo import read_run_spec

    try:
        earlier = read_run_spec(run_dir)
    except SpecError:  # no spec.yaml, or a damaged one: what hpo defaults to, no more
        return {"strategy": "full"}
    config = {f"model.{k}": v for k, v in earlier.model.config.items()}
    return {"strategy": "full", **earlier.training, **config}


def _as_trial(
    row: dict[str, str],
    space: Space,
    objectives: list[tuple[str, str]],
    scores: dict[int, dict[str, float]],
    ran_with: dict[str, Any],
    fixed: set[str],
) -> optuna.trial.FrozenTrial | str:
    """The earlier trial as an Optuna trial of this space, or why it cannot be one."""
    state = _USABLE.get(row.get("outcome", ""))
    if state is None:
        return row.get("outcome") or "unfinished"
    values = _final_values(row, objectives, scores) if state == "COMPLETE" else None
    if state == "COMPLETE" and values is None:
        return "has no score"
    params, dists = {}, {}
    config: dict[str, Any] = {}  # the trial's values so far, for the next ones' conditions
    filled = set()
    for p in space.tunable:
        value = _value_of(p, row, config)
        if value is None and _never_sampled(p, row) and p.active(config):
            value = ran_with.get(p.name, ran_with.get(base_name(p.name)))
            filled.add(p.name)
        if value is None:
            continue  # inactive in that trial
        if not p.contains(value):
            return f"ran {p.name}={_shown(value)}, outside this space"
        params[p.name] = p.to_internal(value)
        dists[p.name] = p.distribution()
        config[p.name] = value
    fixed.update(filled & set(params))  # named only where a seeded trial took it
    primary = objectives[0][0]
    # Optuna keeps intermediate values for one objective only (pruning is single-objective).
    curve = {step: s[primary] for step, s in scores.items()} if len(objectives) == 1 else {}
    return optuna.trial.create_trial(
        params=params,
        distributions=dists,
        values=values,
        intermediate_values=curve,
        state=getattr(optuna.trial.TrialState, state),
        user_attrs={"warm_start_trial": row["trial_id"]},
    )


def _final_values(
    row: dict[str, str], objectives: list[tuple[str, str]], scores: dict[int, dict[str, float]]
) -> list[float] | None:
    """A finished trial's objectives at its best evaluation of the first, as the search that
    ran it told its own sampler; trials.csv's best value where no evaluation is recorded."""
    primary, goal = objectives[0]
    if scores:
        sign = 1.0 if goal == "maximize" else -1.0
        best = max(scores.values(), key=lambda s: sign * s[primary])
        return [best[name] for name, _ in objectives]
    value = _cell(row.get(f"best_{primary}", ""))
    return [float(value)] if len(objectives) == 1 and finite_number(value) else None


def _value_of(p: Param, row: dict[str, str], config: dict[str, Any]) -> Any:
    """`p`'s value in an earlier trial: under its own name or, where the earlier search named
    the parameter otherwise (`learning_rate` there, `learning_rate@lora` here, or the reverse),
    under another name of the same parameter, if `p` is active in that trial."""
    value = _cell(row.get(p.name, ""))
    if value is not None or not p.active(config):
        return value
    others = (k for k in row if k != p.name and base_name(k) == base_name(p.name))
    return next((v for v in map(_cell, (row[k] for k in others)) if v is not None), None)


def _never_sampled(p: Param, row: dict[str, str]) -> bool:
    """The earlier search had no column for `p` under any of its names."""
    return not any(base_name(k) == base_name(p.name) for k in row)


def seed_study(study: optuna.Study, space: Space, spec: JobSpec, run_dir: str) -> Seeded:
    """Add the earlier trials to `study`; returns what was added, of how many."""
    problems = check_warm_start(run_dir, [m.name for m in spec.metrics])
    if problems:
        raise SpecError(problems)
    seeded = earlier_trials(space, spec, run_dir)
    study.add_trials(seeded.trials)
    return seeded
