"""`hpo confirm`'s Ray part: run the (configuration, seed) pairs, rank, adopt the winner."""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import sys
from typing import Any, Literal

import yaml

from hpo.checkpoints import strip_resume_state
from hpo.confirm import (
    CONFIRM_DIR,
    SEED,
    Candidate,
    config_key,
    confirm_seconds,
    confirmation_document,
    rank_configurations,
    write_confirmation,
)
from hpo.report.rundata import RunData
from hpo.results import TrialRecord, wall_seconds
from hpo.spec import JobSpec
from hpo.storage import RunLocation


def retrain(
    run: RunData,
    spec: JobSpec,
    candidates: list[Candidate],
    location: RunLocation,
    address: str | None,
    show_table: bool,
) -> str:
    """Train every pair to the end, write confirm.yaml, and make the winner the run's best.

    `run` is read from `location.local`; for a bucket run (its local mirror), Tune writes the
    retrained runs to the bucket beside the search's, and hpo's files go back up at the end."""
    from hpo.cluster import check_cluster_fits, check_storage_shared
    from hpo.data import prepare
    from hpo.endings import trial_endings
    from hpo.results import collect
    from hpo.tuner import build_tuner, data_change, fit, init_ray, make_callbacks

    if location.remote:
        spec = dataclasses.replace(spec, storage=location.path)  # Tune: <run URI>/confirm
    data = prepare(spec)
    changed = data_change(run.run_dir, data)
    if changed:  # unlike a resume, one the user may mean (refreshed data): said, not refused
        print(
            f"hpo: {changed}; the candidates were picked on the old data, the retrained runs "
            "are scored on the data as it is now",
            file=sys.stderr,
        )
    init_ray(spec, address)
    check_cluster_fits(spec)
    check_storage_shared(location.path)  # the retrained runs write their checkpoints under it
    out = os.path.join(run.run_dir, CONFIRM_DIR)
    os.makedirs(out, exist_ok=True)
    callbacks = make_callbacks(spec, f"{run.name}-confirm", out, show_table)
    experiment = RunLocation(location.path, CONFIRM_DIR).path if location.remote else out
    grid = fit(build_tuner(spec, data, CONFIRM_DIR, experiment, callbacks, local_dir=out))
    endings = trial_endings(callbacks)
    if endings is not None and len(endings.ended) < (spec.run_cap or 0):
        # Ctrl-C: Tune stopped the pairs cleanly. A ranking of the pairs that ran would name
        # a winner the others never had the chance to beat, and block a second try. Their
        # checkpoints go too (a second try starts afresh); a bucket's stay, as after a crash.
        if not location.remote:
            shutil.rmtree(out, ignore_errors=True)
        raise KeyboardInterrupt("hpo confirm was interrupted")
    location.pull()  # a bucket run's checkpoints, the winner's among them, into the mirror
    records = collect(grid)
    for r in records:
        r.checkpoints = [(location.localize(p), m) for p, m in r.checkpoints]
        r.failed_after = endings.failed_after.get(r.trial_id) if endings else None
    ranked = rank_configurations(_entries(run, candidates, records), run.maximize)
    seeds = list(spec.parameters[SEED].values or [])
    path = write_confirmation(run.run_dir, confirmation_document(run, ranked, seeds))
    kept = None
    if ranked[0]["chosen"]:
        winner = [r for r in records if config_key(r.config) == config_key(ranked[0]["config"])]
        kept = adopt(run, spec, data, winner, ranked)
    prune_checkpoints(out, kept)  # a bucket run's local mirror
    strip_resume_state(out)
    location.prune_checkpoints(CONFIRM_DIR, kept)  # and the bucket's
    location.push()
    print_ranking(run, ranked)
    if location.remote:  # the bucket's copy, in the form the run's URI has
        return RunLocation(location.path, os.path.basename(path)).path
    return path


def _entries(
    run: RunData, candidates: list[Candidate], records: list[TrialRecord]
) -> list[dict[str, Any]]:
    goal = "maximize" if run.maximize else "minimize"
    entries = []
    for c in candidates:
        runs = [r for r in records if config_key(r.config) == c.key]
        seeds = []
        for r in sorted(runs, key=lambda r: int(r.config.get(SEED, 0))):
            best = r.best(run.metric, goal)
            value = float(best[run.metric]) if best else None
            seconds = wall_seconds(r)
            seed = int(r.config[SEED])
            seeds.append({"seed": seed, "value": value, "trial_id": r.trial_id, "seconds": seconds})
        entries.append(
            {
                "trial_id": c.trial_id,
                "search_rank": c.search_rank,
                "search_value": c.search_value,
                "config": c.config,
                "seeds": seeds,
            }
        )
    return entries


def prune_checkpoints(confirm_dir: str, kept: str | None) -> None:
    """Every retrained run's checkpoints but the adopted one (best.yaml names it, for `hpo
    export`): their scores are in confirm.yaml, and each holds a whole model (with its
    optimizer state, where the run could have resumed), top-k x seeds of them."""
    for path in glob.glob(os.path.join(confirm_dir, "*", "checkpoint_*")):
        if kept is None or os.path.realpath(path) != os.path.realpath(kept):
            shutil.rmtree(path, ignore_errors=True)


def adopt(
    run: RunData,
    spec: JobSpec,
    data: Any,
    records: list[TrialRecord],
    ranked: list[dict[str, Any]],
) -> str | None:
    """best.yaml and best_model/ become the chosen configuration's best seed run; returns its
    checkpoint (None when none was kept)."""
    chosen = ranked[0]
    from hpo.export import export_checkpoint
    from hpo.modelcard import document_model
    from hpo.results import best_document, pick_best, write_text_atomic

    best = pick_best(records, spec)
    if best is None or not best.checkpoint:
        return None
    document = best_document(best, run.spec, data.label_names)
    document["confirmed"] = {
        "search_trial": chosen["trial_id"],
        "seeds": [s["seed"] for s in chosen["seeds"]],
        "values": [s["value"] for s in chosen["seeds"]],
        **{k: chosen[k] for k in ("mean", "std", "min", "max", "failures")},
        "trial_seconds": confirm_seconds(ranked),
    }
    if run.best:
        document["search_best"] = {
            k: run.best.get(k) for k in ("trial_id", "value", "evaluation", "hyperparameters")
        }
    path = os.path.join(run.run_dir, "best.yaml")
    write_text_atomic(path, yaml.safe_dump(document, sort_keys=False))
    out = export_checkpoint(
        best.checkpoint,
        os.path.join(run.run_dir, "best_model"),
        document,
        run.spec,
        data.label_names,
    )
    if data.test is not None:
        from hpo.evaluate import evaluate_folder
        from hpo.results import record_test_metrics

        record_test_metrics(run.run_dir, evaluate_folder(out, run.spec, data.test, data.tokenizer))
    document_model(run.run_dir, out, data)
    return best.checkpoint


def print_ranking(run: RunData, ranked: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from hpo.report.terminal import table_console

    table = Table(title=f"configurations by mean {run.metric} over fresh seeds")
    for column in ("rank", "search rank", "trial", "mean", "std", "min", "max", "per seed"):
        justify: Literal["left", "right"] = "left" if column in ("trial", "per seed") else "right"
        table.add_column(column, justify=justify, overflow="fold")
    for e in ranked:
        per_seed = "  ".join(
            f"{s['seed']}: {s['value']:.4g}" if s["value"] is not None else f"{s['seed']}: failed"
            for s in e["seeds"]
        )
        table.add_row(
            str(e["rank"]),
            str(e["search_rank"]),
            e["trial_id"] + ("  (chosen)" if e["chosen"] else ""),
            *(f"{e[k]:.4g}" if e[k] is not None else "" for k in ("mean", "std", "min", "max")),
            per_seed,
        )
    table_console(sys.stderr).print(table)
