"""The report's figures, drawn with matplotlib's Agg backend (no display needed).

Each function draws one figure from a `RunData` and saves it as a PNG in `out_dir`; the HTML page
and the W&B artifact reference these files.
"""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from hpo.report.importance import Importance
from hpo.report.outcomes import label_order, outcome_colour, outcome_label
from hpo.report.rundata import RunData

# Any: matplotlib types rc_context with every rc key as a Literal.
STYLE: Any = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
BEST_COLOUR = "#0072B2"
LOG_SPAN = 30  # the values' max / min above which the metric's axis is logarithmic


def _save(fig: Any, out_dir: str, name: str) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name), facecolor="white")
    plt.close(fig)
    return name


def _running_best(values: pd.Series, maximize: bool) -> pd.Series:
    return values.cummax() if maximize else values.cummin()


def _labels(run: RunData) -> dict[str, str]:
    return {r["trial_id"]: outcome_label(run.spec, r) for r in run.trials.to_dict("records")}


def metric_axis(ax: Any, values: Any, metric: str, maximize: bool, what: str = "") -> None:
    """The metric's axis says which way is better, and turns logarithmic where the values
    span more than 30x: a perplexity of thousands from a poor trial would otherwise flatten
    the good trials' curves into one line at the bottom."""
    ax.set_ylabel(f"{metric}{what} ({'higher' if maximize else 'lower'} is better)")
    if spans_decades(values):
        ax.set_yscale("log")


def spans_decades(values: Any) -> bool:
    """Positive values more than LOG_SPAN apart: an axis for them is logarithmic."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return bool(len(finite) and finite.min() > 0 and finite.max() / finite.min() > LOG_SPAN)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#555555")
    ax.set_axis_off()


def best_vs_time(run: RunData, out_dir: str) -> str:
    """Best metric so far against the search's wall-clock time."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.2))
        frame = run.evaluations.dropna(subset=[run.metric])
        if frame.empty:
            _empty(ax, "no evaluation finished")
            return _save(fig, out_dir, "best_vs_time.png")
        minutes = frame["wall_s"].max() > 180
        scale, unit = (60.0, "minutes") if minutes else (1.0, "seconds")
        t = frame["wall_s"] / scale
        ax.scatter(t, frame[run.metric], s=14, color="#999999", alpha=0.6, label="an evaluation")
        best = _running_best(frame[run.metric], run.maximize)
        ax.step(t, best, where="post", color=BEST_COLOUR, lw=2.2, label="best so far")
        _mark_best(ax, t, best, frame, run)
        ax.set_xlabel(f"wall-clock time since the search started ({unit})")
        metric_axis(ax, frame[run.metric], run.metric, run.maximize)
        ax.set_title(f"Best {run.metric} so far, against time")
        ax.legend(loc="best")
        return _save(fig, out_dir, "best_vs_time.png")


def _mark_best(ax: Any, t: pd.Series, best: pd.Series, frame: pd.DataFrame, run: RunData) -> None:
    index = int(np.argmax(best.values == best.values[-1]))
    x, y = float(t.iloc[index]), float(best.iloc[index])
    ax.scatter([x], [y], s=120, marker="*", color="#D55E00", zorder=5)
    trial = frame["trial_id"].iloc[index]
    ax.annotate(f"{y:.4g}  (trial {trial})", (x, y), textcoords="offset points", xytext=(6, 6))


def best_vs_trials(run: RunData, out_dir: str) -> str:
    """Each trial's best (coloured by outcome) and the best so far, trials in start order."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.2))
        frame = run.trials[run.trials[run.best_column].map(_is_number)]
        if frame.empty:
            _empty(ax, "no trial finished an evaluation")
            return _save(fig, out_dir, "best_vs_trials.png")
        values = frame[run.best_column].astype(float)
        labels = [outcome_label(run.spec, r) for r in frame.to_dict("records")]
        for label in sorted(set(labels), key=label_order):
            mask = [lab == label for lab in labels]
            ax.scatter(
                frame["order"][mask],
                values[mask],
                s=36,
                color=outcome_colour(label),
                label=label,
                zorder=3,
            )
        best = _running_best(values, run.maximize)
        ax.step(frame["order"], best, where="post", color=BEST_COLOUR, lw=2.2, label="best so far")
        ax.set_xlabel("trial (in the order they started)")
        metric_axis(ax, values, run.metric, run.maximize, ", each trial's best")
        ax.set_title(f"Best {run.metric} so far, against trials")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, loc="best")
        return _save(fig, out_dir, "best_vs_trials.png")


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def learning_curves(run: RunData, out_dir: str) -> str:
    """Every trial's metric at each evaluation, coloured by what became of the trial."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.6))
        frame = run.evaluations.dropna(subset=[run.metric])
        if frame.empty:
            _empty(ax, "no evaluation finished")
            return _save(fig, out_dir, "learning_curves.png")
        labels = _labels(run)
        seen: set[str] = set()
        for trial_id, curve in frame.groupby("trial_id"):
            label = labels.get(str(trial_id), "unfinished")
            colour = outcome_colour(label)
            x, y = curve["training_iteration"], curve[run.metric]
            ax.plot(x, y, color=colour, lw=1.6, alpha=0.85, marker="o", ms=3.5)
            end = "x" if label.startswith("stopped") else "o"
            ax.scatter(x.iloc[-1:], y.iloc[-1:], marker=end, s=40, color=colour, zorder=4)
            seen.add(label)
        _rung_lines(ax, run)
        _outcome_legend(ax, seen, labels)
        clock = {"asha": " (ASHA's clock)", "hyperband": " (HyperBand's clock)"}
        ax.set_xlabel("evaluation" + clock.get(run.spec.early_terminate.type, ""))
        metric_axis(ax, frame[run.metric], run.metric, run.maximize)
        ax.set_title("Learning curves, coloured by outcome")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        return _save(fig, out_dir, "learning_curves.png")


def _rung_lines(ax: Any, run: RunData) -> None:
    et = run.spec.early_terminate
    if et.type != "asha":
        return
    last = int(run.evaluations["training_iteration"].max())
    k, milestone = 0, float(et.min_iter)
    while milestone < last:
        ax.axvline(milestone, color="#999999", ls="--", lw=0.9)
        ax.text(milestone, 1.0, f" rung {k}", transform=ax.get_xaxis_transform(), va="top")
        k, milestone = k + 1, milestone * et.eta


def _outcome_legend(ax: Any, seen: set[str], labels: dict[str, str]) -> None:
    from matplotlib.lines import Line2D

    counts = pd.Series(list(labels.values())).value_counts()
    handles = [
        Line2D([], [], color=outcome_colour(label), lw=2, label=f"{label} ({counts[label]})")
        for label in sorted(seen, key=label_order)
    ]
    ax.legend(handles=handles, fontsize=8, loc="best")


def parallel_coordinates(run: RunData, out_dir: str) -> str:
    """One axis per hyperparameter and one for the metric; a line per trial, coloured by it."""
    from hpo.report.parallel import draw_parallel

    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(9, 4.8))
        frame = run.scored_trials()
        if frame.empty or not run.params:
            _empty(ax, "no scored trial" if frame.empty else "nothing was searched")
        else:
            draw_parallel(fig, ax, run, frame)
        return _save(fig, out_dir, "parallel_coordinates.png")


def importance_bars(run: RunData, result: Importance, out_dir: str) -> str:
    """Each evaluator's importance per parameter, as grouped horizontal bars."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 0.9 + 0.55 * max(2, len(run.params))))
        if not result.scores:
            _empty(ax, f"importance not computed: {result.reason}")
            return _save(fig, out_dir, "importance.png")
        # Every parameter any evaluator scored: fANOVA scores only those every trial sampled,
        # so in a strategy search its column lacks each strategy's own learning rate.
        names = sorted(  # the most important on top: by its mean over those that scored it
            {n for scores in result.scores.values() for n in scores},
            key=lambda n: float(np.mean([s[n] for s in result.scores.values() if n in s])),
        )
        height = 0.8 / len(result.scores)
        colours = (BEST_COLOUR, "#E69F00", "#009E73")
        for i, (label, scores) in enumerate(result.scores.items()):
            y = np.arange(len(names)) + (i - (len(result.scores) - 1) / 2) * height
            ax.barh(y, [scores.get(n, 0.0) for n in names], height, label=label, color=colours[i])
        ax.set_yticks(np.arange(len(names)), names)
        ax.set_xlabel("share of the metric's variation explained" + _unscored_note(result, names))
        ax.set_title(
            f"Hyperparameter importance\n({run.metric} at evaluation {result.evaluation}, "
            f"{result.trials} of {len(run.trials)} trials)"
        )
        # Beside the axes, not in them: a parameter that explains nearly everything draws a
        # bar across the whole width, where a legend inside would cover it.
        # Listed top to bottom as each parameter's bars are.
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _save(fig, out_dir, "importance.png")


def _unscored_note(result: Importance, names: list[str]) -> str:
    """Which evaluator left which parameters out (a conditional one, which some trials did
    not sample, fANOVA cannot score): a missing bar is not an importance of 0."""
    notes = []
    for label, scores in result.scores.items():
        left_out = [n for n in reversed(names) if n not in scores]
        if left_out:
            notes.append(f"{label} could not score {', '.join(left_out)} (not in every trial)")
    return "".join(f"\n{note}" for note in notes)


def pareto_front(run: RunData, out_dir: str) -> str | None:
    """A several-metric search's trials on its first two objectives, the front through them."""
    from hpo.report.pareto import draw_front

    if len(run.spec.metrics) < 2:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.8))
        draw_front(ax, run)
        return _save(fig, out_dir, "pareto_front.png")


def seed_spread(run: RunData, out_dir: str) -> str | None:
    """`hpo confirm`'s result: each configuration's value per seed, mean and spread."""
    configs = (run.confirm or {}).get("ranking") or []
    if not configs:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.7 * len(configs)))
        for i, c in enumerate(configs):
            y = len(configs) - 1 - i
            values = [s["value"] for s in c["seeds"]]
            ax.scatter(values, [y] * len(values), color="#999999", s=30, zorder=3)
            if c.get("mean") is not None:  # none where every seed's run failed
                ax.errorbar(
                    c["mean"], y, xerr=c["std"], fmt="D", color=BEST_COLOUR, capsize=5, ms=8
                )
            if c.get("search_value") is not None:
                ax.scatter(
                    [c["search_value"]],
                    [y],
                    marker="o",
                    s=70,
                    facecolors="none",
                    edgecolors="#D55E00",
                    zorder=4,
                )
        ax.set_yticks(range(len(configs)), [_config_tick(c) for c in reversed(configs)])
        ax.set_xlabel(
            f"{run.metric}: grey = one seed, blue = mean ± std, orange ring = the search's run"
        )
        ax.set_title(f"Seed spread of the top {len(configs)} configurations")
        return _save(fig, out_dir, "seed_spread.png")


def _config_tick(config: dict[str, Any]) -> str:
    marker = ", chosen" if config.get("chosen") else ""
    search = f"(search #{config['search_rank']}{marker})"
    return f"#{config['rank']} trial {config['trial_id']}\n{search}"
