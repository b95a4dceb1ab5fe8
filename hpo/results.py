"""Ray's ResultGrid -> trials.csv, evaluations.csv, best.yaml (the run directory's record).

The best is the best *evaluation* over all trials and all their evaluations, not each trial's
last one, and it is always one that has a checkpoint (an evaluation that is its trial's best so
far and could be among the search's kept best reports one, and the budget keeps the best).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

import yaml

from hpo.numbers import finite_number
from hpo.spec import JobSpec
from hpo.tasks import is_cost
from hpo.trial.reporter import FINAL, NODE, OUTCOME, TRAIN_SECONDS

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its remote tracebacks
OUTCOMES = (
    "completed",
    "reached_target",  # reached `metric.target`, which ended the search there
    "stopped_early",
    "patience",
    "diverged",
    "errored",
    "unfinished",
)


def outcome_of(last: dict[str, Any] | None, errored: bool) -> str:
    """What became of a trial, from its last report."""
    if errored:
        return "errored"
    if not last:
        return "unfinished"
    if last.get(OUTCOME) in ("diverged", "patience"):
        return str(last[OUTCOME])
    return "completed" if last.get(FINAL) else "stopped_early"


@dataclass
class TrialRecord:
    trial_id: str
    config: dict[str, Any]
    history: list[dict[str, Any]]  # one row per evaluation (Ray's progress rows)
    error: str | None
    path: str | None
    checkpoints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    traceback: str | None = None  # the whole remote traceback of an errored trial
    ended: bool = True  # False: cut off by an interruption (hpo.endings), not stopped
    reached_target: bool = False  # an evaluation reached `metric.target`
    failed_after: float | None = None  # seconds an errored trial ran, as the driver timed it

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    @property
    def outcome(self) -> str:
        if self.error is None and not self.history:
            return "unfinished"
        if self.reached_target:
            return "reached_target"
        outcome = outcome_of(self.last, self.error is not None)
        return "unfinished" if outcome == "stopped_early" and not self.ended else outcome

    def best(self, metric: str, goal: str) -> dict[str, Any] | None:
        rows = [r for r in self.history if finite_number(r.get(metric))]
        if not rows:
            return None
        sign = 1.0 if goal == "maximize" else -1.0
        # Ties go to the later evaluation, as in Ray's checkpoint ranking (it keeps that one).
        return max(rows, key=lambda r: (sign * float(r[metric]), r.get("training_iteration", 0)))


def collect(grid: Any) -> list[TrialRecord]:
    """One record per trial of a finished (or interrupted) Tune experiment."""
    records = []
    for result in grid:
        frame = result.metrics_dataframe
        history = frame.to_dict("records") if frame is not None and len(frame) else []
        history = latest_timeline(history)
        trial_id = (result.metrics or {}).get("trial_id") or os.path.basename(result.path or "?")
        checkpoints = [(c.path, dict(m)) for c, m in (result.best_checkpoints or [])]
        error = tb = None
        if result.error is not None:
            error = error_line(result.error)
            tb = _ANSI.sub("", "".join(traceback.format_exception(result.error)))
        records.append(
            TrialRecord(
                str(trial_id),
                dict(result.config or {}),
                history,
                error,
                result.path,
                checkpoints,
                tb,
            )
        )
    return sorted(records, key=_creation_order)


_TRIAL_DIR = re.compile(r"_([0-9a-f]+)_(\d+)(_|$)")  # train_trial_<id>_<n>_<config>_<date>


def _creation_order(record: TrialRecord) -> tuple[int, str]:
    """Trials in the order the search created them (Ray numbers their folders), so that the
    first row, and "the first error", is the first to happen; by id where a folder has no
    number."""
    found = _TRIAL_DIR.search(os.path.basename(record.path or ""))
    return (int(found.group(2)) if found else sys.maxsize, record.trial_id)


def latest_timeline(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trial's evaluations as its surviving checkpoints tell them.

    Tune logs a result before it asks the trial for that result's checkpoint; a worker killed
    in between loses the checkpoint, and the retried trial resumes from an earlier one and
    evaluates the same steps again. Those rows replace the lost ones (whose weights are gone).
    """
    kept: list[dict[str, Any]] = []
    for row in history:
        step = row.get("global_step")
        if finite_number(step):
            kept = [
                r
                for r in kept
                if not (finite_number(r.get("global_step")) and r["global_step"] >= step)
            ]
        kept.append(row)
    return kept


def error_line(error: BaseException) -> str:
    # Ray wraps the trial's exception; its last line is the user's error message.
    return last_line(str(error)) or type(error).__name__


def last_line(text: str) -> str | None:
    """A traceback's last line, its error, as trials.csv and the terminal show it (None for
    no text)."""
    lines = _ANSI.sub("", text).strip().splitlines()
    return lines[-1][:500] if lines else None


def trial_rows(records: list[TrialRecord], spec: JobSpec) -> list[dict[str, Any]]:
    """trials.csv rows: every sampled hyperparameter (empty when inactive) and the outcome."""
    metric, goal = spec.primary.name, spec.primary.goal or "maximize"
    params = list(spec.parameters)
    rows = []
    for r in records:
        best = r.best(metric, goal) or {}
        last = r.last
        row: dict[str, Any] = {
            "trial_id": r.trial_id,
            "status": "ERROR" if r.error else ("TERMINATED" if r.history else "PENDING"),
            "outcome": r.outcome,
        }
        row.update({p: r.config.get(p, "") for p in params})
        row[f"best_{metric}"] = best.get(metric, "")
        row[f"last_{metric}"] = last.get(metric, "")
        row["best_evaluation"] = best.get("training_iteration", "")
        row["evaluations"] = last.get("training_iteration", 0) or 0
        row["stopped_early"] = r.outcome == "stopped_early"
        row["wall_seconds"] = wall_seconds(r)
        row["train_seconds"] = round(float(last.get(TRAIN_SECONDS, 0.0) or 0.0), 3)
        row["node"] = node_label(last) or failed_on(r.traceback)
        row["error"] = r.error or ""
        row["traceback"] = f"errors/{r.trial_id}.txt" if r.traceback else ""
        rows.append(row)
    return rows


def wall_seconds(record: TrialRecord) -> float:
    """The trial's time as of its last evaluation; a failed one's up to its failure."""
    reported = round(float(record.last.get("time_total_s", 0.0) or 0.0), 3)
    return max(reported, record.failed_after or 0.0) if record.error else reported


def node_label(result: dict[str, Any]) -> str:
    """The node a trial ran on as `IP id8`: the address says which machine; the head of Ray's
    56-character node id (as `ray list nodes` prints it) tells apart nodes on one machine."""
    node_id = str(result.get(NODE) or "")
    ip = str(result.get("node_ip") or "")
    return " ".join(part for part in (ip, node_id[:8]) if part)


# Ray's remote traceback heads each failure with the worker's `ray::...(pid=N, ip=IP, ...)`.
_WORKER_IP = re.compile(r"\(pid=\d+, ip=([^,\s)]+)")


def failed_on(traceback_text: str | None) -> str:
    """The address of the node where a trial that reported nothing failed (its last failure),
    from its traceback: on a cluster, which machine lacks what the trial needs."""
    found = _WORKER_IP.findall(traceback_text or "")
    return found[-1] if found else ""


@dataclass
class Best:
    trial_id: str
    metric: str
    goal: str
    value: float
    evaluation: int
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    checkpoint: str | None


def pick_best(records: list[TrialRecord], spec: JobSpec) -> Best | None:
    """The best evaluation of the whole search, with the checkpoint saved at that evaluation."""
    metric, goal = spec.primary.name, spec.primary.goal or "maximize"
    sign = 1.0 if goal == "maximize" else -1.0
    candidates = [(r, r.best(metric, goal)) for r in records]
    scored = [(r, b) for r, b in candidates if b is not None]
    if not scored:
        return None

    later = [(m.name, 1.0 if m.goal == "maximize" else -1.0) for m in spec.metrics[1:]]

    def rank(candidate: tuple[TrialRecord, dict[str, Any]]) -> tuple[Any, ...]:
        # A tie between trials goes to the one with a checkpoint on disk (the budget keeps
        # only the later of equal scores, and Ray still lists the deleted one), then to the
        # better on the later objectives (else a tie could export a dominated trial).
        record, row = candidate
        saved = _checkpoint_at(record, int(row.get("training_iteration", 0))) is not None
        others = [s * float(row[n]) if finite_number(row.get(n)) else -math.inf for n, s in later]
        return sign * float(row[metric]), saved, *others, float(row.get("timestamp") or 0.0)

    record, row = max(scored, key=rank)
    objectives = {m.name for m in spec.metrics}  # trainable_params is no eval_ metric
    evaluation = int(row.get("training_iteration", 0))
    return Best(
        trial_id=record.trial_id,
        metric=metric,
        goal=goal,
        value=float(row[metric]),
        evaluation=evaluation,
        hyperparameters=dict(record.config),
        metrics={
            k: float(v)
            for k, v in row.items()
            if (k.startswith("eval_") or k in objectives) and finite_number(v)
        },
        checkpoint=_checkpoint_at(record, evaluation),
    )


def _checkpoint_at(record: TrialRecord, evaluation: int) -> str | None:
    for path, metrics in record.checkpoints:
        # The checkpoint budget deletes all but the best; Ray still lists the deleted ones.
        exists = not os.path.isabs(path) or os.path.isdir(path)  # remote paths: trust Ray
        if int(metrics.get("training_iteration", -1)) == evaluation and exists:
            return path
    return None


def best_document(best: Best, spec: JobSpec, labels: list[str] | None = None) -> dict[str, Any]:
    document = {
        "metric": best.metric,
        "goal": best.goal,
        "value": best.value,
        "trial_id": best.trial_id,
        "evaluation": best.evaluation,
        "hyperparameters": best.hyperparameters,
        "metrics": best.metrics,
        "checkpoint": best.checkpoint,
        "task": spec.task,
        "model": spec.model.name_or_path,
    }
    if labels:
        document["labels"] = list(labels)
    if spec.model.gguf_file:
        document["gguf_file"] = spec.model.gguf_file
    document.update(as_run(best.hyperparameters, spec))
    return document


def as_run(hyperparameters: dict[str, Any], spec: JobSpec) -> dict[str, Any]:
    """What the trial ran with, by where each value went and under its own name (a variant's
    `learning_rate@lora` is TrainingArguments' `learning_rate`): hpo's defaults, the spec's
    fixed values and the sampled ones on top, and the seed, to train the configuration again
    outside hpo. (Not what hpo manages for the search: report_to, save_strategy...)"""
    from hpo.trial.run import Hyperparameters, training_values, trial_seed

    split = Hyperparameters.split(hyperparameters)
    seed = trial_seed(spec, split.recipe)
    training = training_values(spec, split.training)
    ran: dict[str, Any] = {"training_arguments": {**training, "seed": seed, "data_seed": seed}}
    if spec.model.config or split.model:
        ran["model_config"] = {**spec.model.config, **split.model}
    if split.recipe:
        ran["recipe"] = split.recipe
    return ran


def read_outcome(run_dir: str) -> tuple[Best | None, dict[str, int]]:
    """A finished run's best evaluation and trial outcomes, from best.yaml and trials.csv."""
    counts: dict[str, int] = {}
    path = os.path.join(run_dir, "trials.csv")
    if os.path.isfile(path):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    path = os.path.join(run_dir, "best.yaml")
    if not os.path.isfile(path):
        return None, counts
    with open(path) as f:
        try:
            document = yaml.safe_load(f)
        except yaml.YAMLError:
            return None, counts  # edited by hand: the summary line is all it would give
    if not isinstance(document, dict) or not isinstance(document.get("value"), int | float):
        return None, counts
    fields: dict[str, Any] = {name: document.get(name) for name in Best.__dataclass_fields__}
    return Best(**fields), counts


def read_first_error(run_dir: str) -> str:
    """`trial_id: error` of the first errored trial in trials.csv, which lists trials in the
    order they were created ('' when none erred)."""
    path = os.path.join(run_dir, "trials.csv")
    if not os.path.isfile(path):
        return ""
    with open(path, newline="") as f:
        erred = next((r for r in csv.DictReader(f) if r.get("error")), None)
    return f"{erred['trial_id']}: {erred['error']}" if erred else ""


def record_test_metrics(run_dir: str, metrics: dict[str, float]) -> None:
    """Add the exported model's held-out (test split) scores to best.yaml."""
    path = os.path.join(run_dir, "best.yaml")
    with open(path) as f:
        document = yaml.safe_load(f)
    # Scores only, under the names the search's metrics have (its speed is no score).
    document["test_metrics"] = {
        k: v for k, v in metrics.items() if k.startswith("eval_") and not is_cost(k)
    }
    write_text_atomic(path, yaml.safe_dump(document, sort_keys=False))


def write_text_atomic(path: str, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def csv_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def evaluation_rows(records: list[TrialRecord], spec: JobSpec) -> list[dict[str, Any]]:
    """evaluations.csv: every evaluation of every trial (learning curves for the report)."""
    keep = (
        "training_iteration",
        "time_total_s",
        "global_step",
        "epoch",
        TRAIN_SECONDS,
        *(m.name for m in spec.metrics),
    )
    # Beside the learning curve; a gap where a trial logged no training loss before an
    # evaluation (Ray's table has NaN there, which reads like a divergence).
    losses = [n for n in ("train_loss", "eval_loss") if n not in [m.name for m in spec.metrics]]
    rows = []
    for r in records:
        for h in r.history:
            rows.append(
                {
                    "trial_id": r.trial_id,
                    **{k: h.get(k, "") for k in keep},
                    **{k: h[k] if finite_number(h.get(k)) else "" for k in losses},
                    "timestamp": h.get("timestamp", ""),
                }
            )
    return rows


def pareto_rows(records: list[TrialRecord], spec: JobSpec) -> list[dict[str, Any]]:
    """Trials no other trial beats on every objective (each judged at its best evaluation of
    the first objective, the checkpoint it would export)."""
    objectives = [(m.name, 1.0 if m.goal == "maximize" else -1.0) for m in spec.metrics]
    points = []
    for r in records:
        best = r.best(spec.primary.name, spec.primary.goal or "maximize")
        if best and all(finite_number(best.get(name)) for name, _ in objectives):
            points.append((r, best, [sign * float(best[name]) for name, sign in objectives]))

    scores = [score for _, _, score in points]
    rows = []
    for r, best, score in points:
        if not dominated(score, scores):
            row = {"trial_id": r.trial_id, **{p: r.config.get(p, "") for p in spec.parameters}}
            row.update({name: best[name] for name, _ in objectives})
            row["evaluation"] = best.get("training_iteration", "")
            rows.append(row)
    return rows


def dominated(score: list[float], scores: list[list[float]]) -> bool:
    """Does another of `scores` (each objective signed so that higher is better) beat `score`:
    as good on every objective, and not the same point?"""
    return any(
        all(o >= s for o, s in zip(other, score, strict=True)) and other != score
        for other in scores
    )


def write_tracebacks(records: list[TrialRecord], run_dir: str) -> None:
    """errors/<trial_id>.txt: the full traceback of each errored trial (trials.csv has its
    last line)."""
    for r in records:
        if r.traceback:
            os.makedirs(os.path.join(run_dir, "errors"), exist_ok=True)
            write_text_atomic(os.path.join(run_dir, "errors", f"{r.trial_id}.txt"), r.traceback)


def write_results(
    records: list[TrialRecord], spec: JobSpec, run_dir: str, labels: list[str] | None = None
) -> Best | None:
    """trials.csv, evaluations.csv and best.yaml in the run directory; returns the best."""
    write_tracebacks(records, run_dir)
    write_text_atomic(os.path.join(run_dir, "trials.csv"), csv_text(trial_rows(records, spec)))
    write_text_atomic(
        os.path.join(run_dir, "evaluations.csv"), csv_text(evaluation_rows(records, spec))
    )
    if len(spec.metrics) > 1:
        write_text_atomic(os.path.join(run_dir, "pareto.csv"), csv_text(pareto_rows(records, spec)))
    best = pick_best(records, spec)
    if best is not None:
        write_text_atomic(
            os.path.join(run_dir, "best.yaml"),
            yaml.safe_dump(best_document(best, spec, labels), sort_keys=False),
        )
    return best
