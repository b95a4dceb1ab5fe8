"""`hpo confirm`: retrain the top configurations with fresh seeds and keep the most robust.

A search ranks each configuration on one training run, i.e. one draw of the seed, and the seed
alone can move a fine-tuned BERT by several points (Dodge et al., 2020): the single best trial is
partly the luckiest. Confirmation retrains the top-k configurations with the same fresh seeds,
in parallel on the same cluster, and ranks them by their mean (runs that fail count against
them). It is an ordinary Tune experiment built by `hpo.tuner`: the searcher is handed every
(configuration, seed) pair as a known point and the scheduler is off, so every run trains to the
end. The winner's best run becomes best.yaml and best_model/.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
from dataclasses import dataclass
from typing import Any

import yaml

from hpo.driver_lock import driving, refuse_if_driven
from hpo.errors import SpecError
from hpo.numbers import finite_number
from hpo.report.rundata import CONFIRM_FILE, RunData, load_run
from hpo.space import Param, compile_space
from hpo.spec import CheckpointsSpec, EarlyTerminateSpec, JobSpec, ParamSpec
from hpo.storage import RECORD_FILES, RunLocation

CONFIRM_DIR = "confirm"
# No pruning while the runs train: the winner is known only at the end. Then every checkpoint
# but the adopted one goes (confirm_runner.prune_checkpoints).
EVERY_CHECKPOINT = 10**9
SEED = "seed"


@dataclass
class Candidate:
    """A configuration from the search, with the rank and value its one run earned there."""

    search_rank: int
    trial_id: str
    config: dict[str, Any]
    search_value: float

    @property
    def key(self) -> str:
        return config_key(self.config)


def config_key(config: dict[str, Any]) -> str:
    """Identity of a configuration, its seed aside."""
    return json.dumps({k: v for k, v in config.items() if k != SEED}, sort_keys=True, default=str)


def _same(value: Any, text: Any) -> bool:
    try:
        return float(value) == float(text)
    except (TypeError, ValueError):
        return str(value) == str(text) or json.dumps(value) == str(text)


def typed_value(param: Param, cell: Any) -> Any:
    """A trials.csv cell back to the value the trial ran with (CSV keeps only text)."""
    if param.values:
        for choice in param.values:
            if _same(choice, cell):
                return choice
        raise SpecError([f"trials.csv: {param.name}={cell!r} is not one of {list(param.values)}"])
    return int(float(cell)) if param.is_int else float(cell)


def top_configurations(run: RunData, k: int) -> list[Candidate]:
    """The k best distinct configurations of the search, best first."""
    problems: list[str] = []
    space = compile_space(run.spec.parameters, problems)
    if problems:
        raise SpecError(problems, source=os.path.join(run.run_dir, "spec.yaml"))
    seen: set[str] = set()
    candidates: list[Candidate] = []
    ranked = run.scored_trials()  # the search's ranking, its exported trial first of ties
    for rank, row in enumerate(ranked.to_dict("records"), start=1):
        config = {
            p.name: typed_value(p, row[p.name])
            for p in space.params
            if p.name in row and not _blank(row[p.name])
        }
        candidate = Candidate(rank, str(row["trial_id"]), config, float(row[run.best_column]))
        if candidate.key not in seen:
            seen.add(candidate.key)
            candidates.append(candidate)
        if len(candidates) == k:
            break
    return candidates


def _blank(cell: Any) -> bool:
    return cell is None or cell == "" or (isinstance(cell, float) and math.isnan(cell))


def fresh_seeds(spec: JobSpec, candidates: list[Candidate], n: int) -> list[int]:
    """n seeds none of the candidates was trained with (the search's own seed by default)."""
    used = {spec.seed} | {int(c.config[SEED]) for c in candidates if SEED in c.config}
    seeds: list[int] = []
    seed = spec.seed + 1
    while len(seeds) < n:
        if seed not in used:
            seeds.append(seed)
        seed += 1
    return seeds


def confirm_spec(spec: JobSpec, candidates: list[Candidate], seeds: list[int]) -> JobSpec:
    """The search's spec, turned into: run exactly these (configuration, seed) pairs to the end."""
    points = [{**c.config, SEED: s} for c in candidates for s in seeds]
    return dataclasses.replace(
        spec,
        method="random",  # nothing is left to sample: every run is an enqueued point
        parameters={**spec.parameters, SEED: ParamSpec(values=list(seeds))},
        points_to_evaluate=points,
        run_cap=len(points),
        early_terminate=EarlyTerminateSpec(type="none"),
        checkpoints=CheckpointsSpec(keep=EVERY_CHECKPOINT),
    )


def spread(entry: dict[str, Any]) -> str:
    """A configuration's mean and spread in words: `0.812 ± 0.012 over 3 seeds`."""
    scored = len(entry["seeds"]) - int(entry.get("failures") or 0)
    if entry.get("mean") is None:
        return "no seed scored"
    if entry.get("std") is None or scored < 2:  # (an older confirm.yaml said 0)
        return f"{entry['mean']:.4g} on one seed (no spread measured)"
    return f"{entry['mean']:.4g} ± {entry['std']:.2g} over {scored} seeds"


def rank_configurations(entries: list[dict[str, Any]], maximize: bool) -> list[dict[str, Any]]:
    """Rank by mean over seeds; a configuration with failed runs ranks below those without.

    Each entry has `seeds`: [{"seed", "value" (None when the run failed), ...}]. Adds mean,
    std (None from fewer than two scores: one run has no spread to show, and 0 would claim
    one), min, max, failures, rank and `chosen` (the first).
    """
    sign = 1.0 if maximize else -1.0
    for entry in entries:
        values = [s["value"] for s in entry["seeds"] if finite_number(s["value"])]
        entry["failures"] = len(entry["seeds"]) - len(values)
        # 12 significant digits: fmean's last bit is noise (0.5900000000000001 in a record).
        entry["mean"] = float(f"{statistics.fmean(values):.12g}") if values else None
        entry["std"] = statistics.stdev(values) if len(values) > 1 else None
        entry["min"] = min(values) if values else None
        entry["max"] = max(values) if values else None

    def order(entry: dict[str, Any]) -> tuple[int, float, float]:
        mean, std = entry["mean"], entry["std"]
        return (
            entry["failures"],
            -sign * mean if mean is not None else math.inf,
            std if std is not None else 0.0,
        )

    ranked = sorted(entries, key=order)
    for rank, entry in enumerate(ranked, start=1):
        entry["rank"] = rank
        entry["chosen"] = rank == 1 and entry["mean"] is not None
    return ranked


def check_counts(top_k: int, seeds: int) -> None:
    if top_k < 1 or seeds < 1:
        raise SpecError([f"--top-k and --seeds must be at least 1 (got {top_k} and {seeds})"])


def confirm_run(
    run_dir: str, top_k: int, seeds: int, address: str | None = None, show_table: bool = True
) -> str:
    """`hpo confirm`: returns the path of confirm.yaml (the ranking with every seed's value)."""
    from hpo.confirm_runner import retrain

    check_counts(top_k, seeds)
    location = RunLocation.at(run_dir)
    refuse_if_driven(location.lockable)
    if location.remote:  # hpo's files into the local mirror; the model comes with the winner
        location.download(location.local, RECORD_FILES, fresh=True)
    run = load_run(location.local)
    if os.path.exists(os.path.join(location.local, CONFIRM_FILE)):
        raise SpecError([f"{run_dir}: already confirmed ({CONFIRM_FILE} exists)"])
    candidates = top_configurations(run, top_k)
    if not candidates:
        raise SpecError([f"{run_dir}: no trial has a value of {run.metric} to confirm"])
    seed_list = fresh_seeds(run.spec, candidates, seeds)
    spec = confirm_spec(run.spec, candidates, seed_list)
    with driving(location.lockable, "hpo confirm"):  # from its first write to its end
        return retrain(run, spec, candidates, location, address, show_table)


def confirm_seconds(ranked: list[dict[str, Any]]) -> float:
    """Compute the confirmation spent: the sum of its runs' wall times."""
    return round(sum(s.get("seconds", 0.0) for e in ranked for s in e["seeds"]), 3)


def confirmation_document(
    run: RunData, ranked: list[dict[str, Any]], seeds: list[int]
) -> dict[str, Any]:
    return {
        "metric": run.metric,
        "goal": "maximize" if run.maximize else "minimize",
        "seeds": list(seeds),
        "trial_seconds": confirm_seconds(ranked),
        "ranking": ranked,
    }


def write_confirmation(run_dir: str, document: dict[str, Any]) -> str:
    from hpo.results import write_text_atomic

    path = os.path.join(run_dir, CONFIRM_FILE)
    write_text_atomic(path, yaml.safe_dump(document, sort_keys=False))
    return path
