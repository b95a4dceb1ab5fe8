"""A several-metric search: every trial on its first two objectives, the Pareto front (the
trials no other beats on every objective, as pareto.csv lists them) drawn through them, the
exported one marked."""

from __future__ import annotations

from typing import Any

import pandas as pd

from hpo.report.rundata import RunData
from hpo.results import dominated


def objective_points(run: RunData) -> pd.DataFrame:
    """Each scored trial's objectives at its best evaluation of the first (the checkpoint it
    would export, as pareto.csv judges it), and whether it is on the front. Trials without
    every objective there are left out, as pareto.csv leaves them out."""
    names = [m.name for m in run.spec.metrics]
    columns = ["trial_id", *names, "on_front"]
    if any(n not in run.evaluations.columns for n in names):
        return pd.DataFrame(columns=columns)  # nothing recorded (every trial errored)
    at_best = run.scored_trials()[["trial_id", "best_evaluation"]].dropna()
    at_best["best_evaluation"] = at_best["best_evaluation"].astype(int)
    points = at_best.merge(
        run.evaluations.dropna(subset=names)[["trial_id", "training_iteration", *names]],
        left_on=["trial_id", "best_evaluation"],
        right_on=["trial_id", "training_iteration"],
    )
    signs = [1.0 if m.goal == "maximize" else -1.0 for m in run.spec.metrics]
    scores = [
        [sign * float(v) for sign, v in zip(signs, row, strict=True)]
        for row in points[names].to_numpy()
    ]
    points["on_front"] = [not dominated(s, scores) for s in scores]  # pareto.csv's own rule
    return points[columns]


def draw_front(ax: Any, run: RunData) -> None:
    from hpo.report.plots import BEST_COLOUR, _empty, spans_decades

    metrics = run.spec.metrics
    x, y = metrics[0].name, metrics[1].name
    points = objective_points(run)
    if points.empty:
        _empty(ax, "no trial has a score on every objective")
        return
    front = points[points["on_front"]].sort_values(x)
    others = points[~points["on_front"]]
    exported = points[points["trial_id"] == (run.best or {}).get("trial_id")]
    if not others.empty:
        ax.scatter(others[x], others[y], s=36, color="#999999", label="dominated", zorder=2)
    ax.plot(front[x], front[y], "o", color="#D55E00", ms=7, label="Pareto front")
    if len(metrics) == 2:  # on more, its trials need not be one front in these two
        # The staircase that bounds what the front dominates: between two of its trials,
        # the level of the one further along the first objective (if it is maximized).
        where = "pre" if metrics[0].goal == "maximize" else "post"
        ax.step(front[x], front[y], where=where, color="#D55E00", lw=1.8)
    for axis, name in (("x", x), ("y", y)):  # trainable parameters: 770 to 22 million
        if spans_decades(points[name]):
            getattr(ax, f"set_{axis}scale")("log")
    if not exported.empty:
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
    ax.set_xlabel(f"{x} ({metrics[0].goal})")
    ax.set_ylabel(f"{y} ({metrics[1].goal})")
    title = "One point per trial, at its exported evaluation"
    if len(metrics) > 2:
        title += f"; the front is over all {len(metrics)} objectives"
    ax.set_title(title)
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
