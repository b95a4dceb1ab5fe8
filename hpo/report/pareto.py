"""A several-metric search: every trial on its first two objectives, the Pareto front drawn
through the trials no other beats on every objective (pareto.csv), the exported one marked."""

from __future__ import annotations

from typing import Any

import pandas as pd

from hpo.report.rundata import RunData


def objective_points(run: RunData) -> pd.DataFrame:
    """Each scored trial's objectives at its best evaluation of the first (the checkpoint it
    would export, as pareto.csv judges it), and whether it is on the front."""
    names = [m.name for m in run.spec.metrics]
    at_best = run.scored_trials()[["trial_id", "best_evaluation"]].dropna()
    at_best["best_evaluation"] = at_best["best_evaluation"].astype(int)
    evaluations = run.evaluations.dropna(subset=names)
    points = at_best.merge(
        evaluations[["trial_id", "training_iteration", *names]],
        left_on=["trial_id", "best_evaluation"],
        right_on=["trial_id", "training_iteration"],
    )
    front = set(run.pareto["trial_id"]) if run.pareto is not None else set()
    points["on_front"] = points["trial_id"].isin(front)
    return points[["trial_id", *names, "on_front"]]


def draw_front(ax: Any, run: RunData) -> None:
    from hpo.report.plots import BEST_COLOUR

    x, y = (m.name for m in run.spec.metrics[:2])
    points = objective_points(run)
    others = points[~points["on_front"]]
    front = points[points["on_front"]].sort_values(x)
    ax.scatter(others[x], others[y], s=36, color="#999999", label="dominated trials", zorder=2)
    ax.plot(front[x], front[y], "o-", color="#D55E00", ms=7, lw=1.8, label="Pareto front", zorder=3)
    exported = points[points["trial_id"] == (run.best or {}).get("trial_id")]
    ax.scatter(
        exported[x],
        exported[y],
        s=190,
        facecolors="none",
        edgecolors=BEST_COLOUR,
        lw=2.4,
        label=f"exported (best {x})",
        zorder=4,
    )
    goals = {m.name: m.goal or "maximize" for m in run.spec.metrics}
    ax.set_xlabel(f"{x} ({goals[x]})")
    ax.set_ylabel(f"{y} ({goals[y]})")
    ax.set_title("Objectives: one point per trial at its exported evaluation")
    ax.legend(loc="best")


def front_table(run: RunData) -> tuple[list[str], list[list[str]]] | None:
    """pareto.csv as a table: each front trial's objectives and hyperparameters."""
    from hpo.report.tables import fmt

    if run.pareto is None or run.pareto.empty:
        return None
    names = [m.name for m in run.spec.metrics]
    params = [p for p in run.params if p in run.pareto.columns]
    header = ["trial", *names, *params]
    rows = [
        [str(r["trial_id"]), *(fmt(r[n]) for n in names), *(fmt(r[p]) for p in params)]
        for r in run.pareto.sort_values(names[0], ascending=not run.maximize).to_dict("records")
    ]
    return header, rows
