"""`hpo report`: a run directory -> report/ (report.html and its PNGs) and a terminal summary."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hpo.paths import output_folder
from hpo.report.rundata import RunData, load_run

__all__ = ["Report", "RunData", "build_report", "load_run"]

REPORT_DIR = "report"
REPORT_FILE = "report.html"


@dataclass
class Report:
    html: str  # path of report.html
    figures: list[str]  # paths of the PNGs it shows
    run: RunData


def build_report(run_dir: str, out_dir: str | None = None) -> Report:
    """Draw every figure and write report.html into `out_dir` (default RUN_DIR/report)."""
    from hpo.report import plots
    from hpo.report.importance import importance
    from hpo.report.page import render
    from hpo.results import write_text_atomic

    run = load_run(run_dir)  # a SpecError before anything is written
    out_dir = output_folder(out_dir or os.path.join(run_dir, REPORT_DIR))
    figures = [
        ("Progress", plots.best_vs_time(run, out_dir), "Best so far against wall-clock time"),
        ("Progress", plots.best_vs_trials(run, out_dir), "Best so far against trials"),
        ("Trials", plots.learning_curves(run, out_dir), "Every trial's learning curve"),
        ("Hyperparameters", plots.parallel_coordinates(run, out_dir), "Parallel coordinates"),
        (
            "Hyperparameters",
            plots.importance_bars(run, importance(run), out_dir),
            "Hyperparameter importance (Optuna's fANOVA and PED-ANOVA evaluators), with every "
            "trial compared at one evaluation most trials reached: early stops do not pose as "
            "importance",
        ),
    ]
    front = plots.pareto_front(run, out_dir)
    if front:
        caption = (
            "Every trial on the first two objectives; the front: trials no other beats on "
            "every objective (pareto.csv)"
        )
        figures.append(("Objectives", front, caption))
    spread = plots.seed_spread(run, out_dir)
    if spread:
        caption = "hpo confirm: the top configurations retrained with fresh seeds"
        figures.append(("Seeds", spread, caption))
    page = os.path.join(out_dir, REPORT_FILE)
    write_text_atomic(page, render(run, figures))
    return Report(page, [os.path.join(out_dir, name) for _, name, _ in figures], run)


def search_summary(run: RunData) -> dict:
    """The headline numbers W&B's summary run carries (and `hpo compare` prints)."""
    counts = run.trials["outcome"].value_counts().to_dict()
    summary: dict = {
        "metric": run.metric,
        "goal": "maximize" if run.maximize else "minimize",
        "method": run.spec.method,
        "early_terminate": run.spec.early_terminate.type,
        "trials": len(run.trials),
        **{f"trials_{k}": int(v) for k, v in counts.items()},
        "wall_seconds": round(run.wall_seconds(), 3),
        "trial_seconds": round(run.trial_seconds(), 3),
    }
    if run.best:
        summary[f"best_{run.metric}"] = float(run.best["value"])
        summary["best_trial"] = str(run.best["trial_id"])
        summary["best_hyperparameters"] = dict(run.best.get("hyperparameters") or {})
    chosen = [c for c in (run.confirm or {}).get("ranking", []) if c.get("chosen")]
    if chosen:
        summary[f"confirmed_mean_{run.metric}"] = float(chosen[0]["mean"])
        if chosen[0]["std"] is not None:
            summary[f"confirmed_std_{run.metric}"] = float(chosen[0]["std"])
    return summary


def report_run(
    run_dir: str, out_dir: str | None = None, file: object = None, identity: str | None = None
) -> Report:
    """`hpo report`: the page and its figures, a terminal summary, and a W&B summary run
    (with the report attached) in the search's group. `identity`: the bucket URI that
    `run_dir` (a temporary copy) was read from; the W&B run keys on it and lives by the page."""
    from hpo.paths import is_remote_uri
    from hpo.report.terminal import print_summary
    from hpo.tracking import log_search_summary

    report = build_report(run_dir, out_dir)
    print_summary(report.run, file=file)
    attached = [report.html, *report.figures]
    for name in ("best.yaml", "trials.csv", "evaluations.csv", "confirm.yaml"):
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            attached.append(path)
    remote = identity is not None and is_remote_uri(identity)
    log_search_summary(
        report.run.spec,
        report.run.name,
        os.path.dirname(report.html) if remote else run_dir,
        search_summary(report.run),
        attached,
        identity=identity if remote else None,
    )
    return report
