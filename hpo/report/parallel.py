"""Parallel coordinates: each hyperparameter on its own vertical axis, scaled to [0, 1].

Numeric axes keep their scale (log for log-sampled parameters); categorical axes space their
choices evenly. The metric is the last axis and colours every line, the best trial drawn on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hpo.report.rundata import RunData


@dataclass
class Axis:
    name: str
    positions: list[float]  # per trial, in [0, 1]; NaN where the parameter was inactive
    ticks: list[tuple[float, str]]


def _numeric_axis(name: str, values: pd.Series, log: bool) -> Axis:
    x = values.astype(float)
    log = log and bool((x.dropna() > 0).all())
    t = np.log10(x) if log else x
    low, high = float(np.nanmin(t)), float(np.nanmax(t))
    span = (high - low) or 1.0
    positions = ((t - low) / span).tolist()
    ticks = []
    for q in (0.0, 0.5, 1.0):
        raw = low + q * span
        ticks.append((q, f"{(10**raw if log else raw):.3g}"))
    return Axis(name, positions, ticks)


def _categorical_axis(name: str, values: pd.Series) -> Axis:
    choices = sorted({str(v) for v in values.dropna()}, key=_natural)
    step = 1.0 / max(1, len(choices) - 1)
    where = {c: (i * step if len(choices) > 1 else 0.5) for i, c in enumerate(choices)}
    positions = [
        where[str(v)] + _jitter(i) if not _missing(v) else math.nan for i, v in enumerate(values)
    ]
    return Axis(name, positions, [(where[c], c) for c in choices])


def _jitter(i: int) -> float:
    """A small, fixed offset per trial, so lines through the same choice stay apart."""
    return ((i * 0.618034) % 1.0 - 0.5) * 0.06


def _natural(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def build_axes(run: RunData, frame: pd.DataFrame) -> list[Axis]:
    axes = []
    for name in run.params:
        entry = run.spec.parameters[name]
        column = frame[name]
        numeric = pd.to_numeric(column, errors="coerce")
        is_range = entry.values is None and numeric.notna().sum() == column.notna().sum()
        if is_range and numeric.nunique() > 1:
            axes.append(_numeric_axis(name, numeric, "log" in (entry.distribution or "")))
        else:
            axes.append(_categorical_axis(name, column))
    axes.append(_numeric_axis(run.metric, frame[run.best_column].astype(float), log=False))
    return axes


def draw_parallel(fig: Any, ax: Any, run: RunData, frame: pd.DataFrame) -> None:
    import matplotlib
    from matplotlib import cm, colors

    axes = build_axes(run, frame)
    values = frame[run.best_column].astype(float).to_numpy()
    norm = colors.Normalize(values.min(), values.max())
    cmap = matplotlib.colormaps["viridis" if run.maximize else "viridis_r"]
    xs = np.arange(len(axes))
    order = np.argsort(values if run.maximize else -values)  # best drawn last, on top
    for rank, i in enumerate(order):
        ys = [a.positions[i] for a in axes]
        is_best = rank == len(order) - 1
        ax.plot(
            xs,
            ys,
            color=cmap(norm(values[i])),
            lw=3.2 if is_best else 1.6,
            alpha=1.0 if is_best else 0.75,
            zorder=3 if is_best else 2,
        )
    for x, a in zip(xs, axes, strict=True):
        ax.axvline(x, color="#333333", lw=1)
        for y, text in a.ticks:
            ax.text(
                x + 0.04,
                y,
                text,
                fontsize=8,
                va="center",
                color="#222222",
                zorder=5,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
            )
    ax.set_xticks(xs, [a.name for a in axes], rotation=12)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"best {run.metric}")
    ax.set_title(f"Hyperparameters against {run.metric} (one line per trial; thick: the best)")
