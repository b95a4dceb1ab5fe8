"""A finished run directory read back for reporting: spec, trials, evaluations, best, seeds.

Only the files the search wrote are read (spec.yaml, trials.csv, evaluations.csv, best.yaml,
confirm.yaml, pareto.csv, scheduler_notes.txt, data.yaml), never Ray's experiment state, so a
run directory copied elsewhere still reports.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hpo import environment
from hpo.errors import SpecError
from hpo.runinfo import read_record, read_run_spec, recorded_fingerprint
from hpo.spec import JobSpec

CONFIRM_FILE = "confirm.yaml"


@dataclass
class RunData:
    run_dir: str
    spec: JobSpec
    trials: pd.DataFrame  # one row per trial, plus `start_s` and `order` (by start time)
    evaluations: pd.DataFrame  # one row per evaluation, plus `wall_s` since the search began
    best: dict[str, Any] | None
    confirm: dict[str, Any] | None
    pareto: pd.DataFrame | None = None  # pareto.csv: the front of a several-metric search
    notes: list[str] = field(default_factory=list)  # the scheduler's and searcher's verdicts
    data_fingerprint: str | None = None  # data.yaml's: which examples the search trained on
    validation_fingerprint: str | None = None  # ... and which it was scored on

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.run_dir))

    @property
    def metric(self) -> str:
        return self.spec.primary.name

    @property
    def maximize(self) -> bool:
        return (self.spec.primary.goal or "maximize") == "maximize"

    @property
    def best_column(self) -> str:
        return f"best_{self.metric}"

    @property
    def params(self) -> list[str]:
        """The searched hyperparameters (constants left out: they tell nothing apart)."""
        return [
            n
            for n, p in self.spec.parameters.items()
            if p.value is None and n in self.trials.columns
        ]

    def scored_trials(self) -> pd.DataFrame:
        """Trials with a finite best metric, best first; of trials tied, the one the search
        exported (best.yaml's pick already weighed the later objectives, and a checkpoint on
        disk before them), then the better on the later objectives, each at the trial's best
        evaluation. After `hpo confirm` the search's own pick (best.yaml's `search_best`):
        confirm's picks must not depend on its own result, nor leave out the search's best."""
        frame = self.trials[self.trials[self.best_column].map(_finite)]
        best = self.best or {}
        best_id = (best.get("search_best") or best).get("trial_id")
        later = self._later_objectives(frame)
        order = frame.assign(_exported=frame["trial_id"].astype(str) == str(best_id), **later)
        keys = [self.best_column, "_exported", *later]
        ascending = [not self.maximize, False]
        ascending += [m.goal == "minimize" for m in self.spec.metrics[1 : 1 + len(later)]]
        order = order.sort_values(keys, ascending=ascending, kind="stable")
        return order.drop(columns=["_exported", *later])

    def _later_objectives(self, frame: pd.DataFrame) -> dict[str, pd.Series]:
        """Each trial's value of every objective after the first, at its best evaluation of
        the first (evaluations.csv), as sort columns (`_objective_<k>`)."""
        columns: dict[str, pd.Series] = {}
        evaluations = self.evaluations
        if len(self.spec.metrics) < 2 or evaluations.empty or "best_evaluation" not in frame:
            return columns
        at_best = evaluations.set_index(["trial_id", "training_iteration"]).sort_index()
        keys = list(zip(frame["trial_id"].astype(str), frame["best_evaluation"], strict=True))
        for k, metric in enumerate(self.spec.metrics[1:], start=1):
            if metric.name not in at_best:
                break  # the later ones would sort on a gap: stop at the first unrecorded
            values = at_best[metric.name]
            columns[f"_objective_{k}"] = pd.Series(
                [_lookup(values, key) for key in keys], index=frame.index, dtype=float
            )
        return columns

    def wall_seconds(self) -> float:
        """From the first trial's start to the last evaluation; with no evaluation (every
        trial failed before its first), the search's own span in environment.yaml."""
        if self.evaluations.empty:
            span = environment.span_seconds(self.run_dir)
            return span if span is not None else float(self.trials["wall_seconds"].max() or 0)
        return float(self.evaluations["wall_s"].max())

    def trial_seconds(self) -> float:
        """Compute spent: the sum of every trial's wall time (one trial = its resources)."""
        return float(pd.to_numeric(self.trials["wall_seconds"], errors="coerce").fillna(0).sum())


def _lookup(values: pd.Series, key: tuple[str, Any]) -> float:
    """The value at (trial, evaluation): the later row where a retry evaluated it again; NaN
    (sorted last) where it is missing or not finite, as best.yaml's pick ranks it."""
    try:
        found = values.loc[(key[0], int(key[1]))]
        value = float(found.iloc[-1] if isinstance(found, pd.Series) else found)
    except (KeyError, TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _read_csv(path: str) -> pd.DataFrame:
    if os.path.getsize(path) == 0:
        return pd.DataFrame()
    # Keep trial ids as text: "09787878" is an id, not the number 9787878.
    return pd.read_csv(path, dtype={"trial_id": str}, keep_default_na=False, na_values=[""])


def load_run(run_dir: str) -> RunData:
    """Read a run directory; a folder that is not a finished run is a SpecError."""
    spec = read_run_spec(run_dir)
    trials_path = os.path.join(run_dir, "trials.csv")
    if not os.path.isfile(trials_path):
        raise SpecError([f"{run_dir}: no trials.csv (has the search finished?)"])
    trials = _read_csv(trials_path)
    if trials.empty:
        raise SpecError([f"{run_dir}: trials.csv lists no trial"])
    best_column = f"best_{spec.primary.name}"
    missing = [c for c in ("trial_id", "outcome", "wall_seconds", best_column) if c not in trials]
    if missing:
        columns = ", ".join(missing)
        raise SpecError([f"{trials_path}: lacks the column(s) {columns} (edited or damaged?)"])
    evaluations_path = os.path.join(run_dir, "evaluations.csv")
    evaluations = _read_csv(evaluations_path) if os.path.isfile(evaluations_path) else None
    evaluations = _with_wall_clock(evaluations, spec.primary.name)
    trials = _with_start_order(trials, evaluations)
    return RunData(
        run_dir=run_dir,
        spec=spec,
        trials=trials,
        evaluations=evaluations,
        best=read_record(os.path.join(run_dir, "best.yaml")),
        confirm=read_record(os.path.join(run_dir, CONFIRM_FILE)),
        pareto=_front(run_dir, spec),
        notes=read_notes(run_dir),
        data_fingerprint=recorded_fingerprint(run_dir),
        validation_fingerprint=recorded_fingerprint(run_dir, "validation"),
    )


def read_notes(run_dir: str) -> list[str]:
    """scheduler_notes.txt's lines: how the guard and the hedge changed the search."""
    from hpo.schedulers.notes import NOTES_FILE

    path = os.path.join(run_dir, NOTES_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip() for line in f if line.strip()]


def _front(run_dir: str, spec: JobSpec) -> pd.DataFrame | None:
    path = os.path.join(run_dir, "pareto.csv")
    if len(spec.metrics) < 2 or not os.path.isfile(path):
        return None
    return _read_csv(path)


def _with_wall_clock(evaluations: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    columns = ["trial_id", "training_iteration", "time_total_s", "timestamp", metric]
    if evaluations is None or evaluations.empty or metric not in evaluations:
        return pd.DataFrame(columns=[*columns, "wall_s", "start_s"])
    frame = evaluations.copy()
    for column in ("training_iteration", "time_total_s", "timestamp", metric):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    # Ray stamps each report; a trial started `time_total_s` before its report.
    frame["start_s"] = frame["timestamp"] - frame["time_total_s"]
    origin = frame.groupby("trial_id")["start_s"].min().min()
    frame["wall_s"] = frame["timestamp"] - origin
    frame["start_s"] = frame.groupby("trial_id")["start_s"].transform("min") - origin
    return frame.sort_values(["wall_s", "trial_id"]).reset_index(drop=True)


def _with_start_order(trials: pd.DataFrame, evaluations: pd.DataFrame) -> pd.DataFrame:
    """Number the trials in the order they started (trial ids are hashes, not counters)."""
    starts = evaluations.groupby("trial_id")["start_s"].min() if len(evaluations) else {}
    frame = trials.copy()
    frame["start_s"] = frame["trial_id"].map(lambda t: starts.get(t, math.inf))
    frame = frame.sort_values(["start_s", "trial_id"], kind="stable").reset_index(drop=True)
    frame["order"] = range(1, len(frame) + 1)
    return frame
