"""Parallel coordinates: each hyperparameter on its own vertical axis, scaled to [0, 1].

Numeric axes keep their scale (log for log-sampled parameters); categorical axes space their
choices evenly. The metric is the last axis and colours every line, the best trial drawn on top.
Variants of a parameter (`learning_rate@lora`) share its axis; a trial in which a parameter
was inactive (a conditional one, `freeze.layers` in a LoRA trial) passes through the axis's
"unused" mark below it, so that every trial stays one unbroken line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hpo.report.rundata import RunData
from hpo.space import base_name

UNUSED = -0.14  # where a line crosses an axis whose parameter its trial did not use


@dataclass
class Axis:
    name: str
    positions: list[float]  # per trial, in [0, 1]; UNUSED where the parameter was inactive
    ticks: list[tuple[float, str]]


def _numeric_axis(name: str, values: pd.Series, log: bool) -> Axis:
    x = values.astype(float)
    log = log and bool((x.dropna() > 0).all())
    t = np.log10(x) if log else x
    low, high = float(np.nanmin(t)), float(np.nanmax(t))
    span = high - low
    if span == 0:  # one value: one mark, mid-axis
        return Axis(
            name, [0.5 if math.isfinite(v) else UNUSED for v in t], [(0.5, _label(x.max()))]
        )
    positions = ((t - low) / span).fillna(UNUSED).tolist()
    ticks = [(q, 10 ** (low + q * span) if log else low + q * span) for q in (0, 0.5, 1)]
    whole = bool((x.dropna() % 1 == 0).all())  # a count (freeze.layers): no tick at 1.5
    shown = [(q, _label(v)) for q, v in ticks if not whole or log or float(v).is_integer()]
    return Axis(name, positions, shown + _unused_tick(x))


def _categorical_axis(name: str, values: pd.Series) -> Axis:
    labels = [None if _missing(v) else _label(v) for v in values]
    choices = sorted({v for v in labels if v is not None}, key=_natural)
    step = 1.0 / max(1, len(choices) - 1)
    where = {c: (i * step if len(choices) > 1 else 0.5) for i, c in enumerate(choices)}
    positions = [UNUSED if v is None else where[v] + _jitter(i) for i, v in enumerate(labels)]
    return Axis(name, positions, [(where[c], c) for c in choices] + _unused_tick(values))


def _unused_tick(values: pd.Series) -> list[tuple[float, str]]:
    return [(UNUSED, "unused")] if values.isna().any() else []


def _label(value: Any) -> str:
    """8 for an integer read back as 8.0 (a column with blanks is read as floats)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{value:.3g}"
    return str(value)


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
    searched = {base_name(p) for p in run.params}
    # A constant variant (learning_rate@freeze: 1e-4) is still its trials' value on the axis.
    shown = [p for p in run.spec.parameters if base_name(p) in searched and p in frame.columns]
    for name, variants in _by_base_name(shown).items():
        entries = [run.spec.parameters[v] for v in variants]
        column = frame[variants].bfill(axis=1).iloc[:, 0]  # the variant each trial used
        numeric = pd.to_numeric(column, errors="coerce")
        # A scale when every value is a number and some variant samples a range; a parameter
        # chosen from a few values (batch size 16 or 32) spaces its choices evenly.
        ranged = any(e.values is None and e.value is None for e in entries)
        is_range = ranged and numeric.notna().sum() == column.notna().sum()
        if is_range and numeric.nunique() > 1:
            log = any("log" in (e.distribution or "") for e in entries)
            axes.append(_numeric_axis(name, numeric, log))
        else:
            axes.append(_categorical_axis(name, column))
    axes.append(_numeric_axis(run.metric, frame[run.best_column].astype(float), log=False))
    return axes


def _by_base_name(params: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in params:
        groups.setdefault(base_name(name), []).append(name)
    return groups


def draw_parallel(fig: Any, ax: Any, run: RunData, frame: pd.DataFrame) -> None:
    """`frame`: the scored trials, best first (run.scored_trials())."""
    import matplotlib
    from matplotlib import cm, colors

    axes = build_axes(run, frame)
    values = frame[run.best_column].astype(float).to_numpy()
    norm = colors.Normalize(values.min(), values.max())
    cmap = matplotlib.colormaps["viridis" if run.maximize else "viridis_r"]
    xs = np.arange(len(axes))
    # `frame` is run.scored_trials(): best first, and of tied trials the exported one. Drawn
    # in reverse, so the best is drawn last, on top, and the thick line is best.yaml's trial.
    for i in reversed(range(len(values))):
        ys = [a.positions[i] for a in axes]
        is_best = i == 0
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
    # Slanted and ending at their axis: long names side by side would run into each other.
    ax.set_xticks(xs, [a.name for a in axes], rotation=20, ha="right", rotation_mode="anchor")
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.6)
    unused = any(y == UNUSED for a in axes for y in a.positions)
    ax.set_ylim(UNUSED - 0.06 if unused else -0.05, 1.05)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"best {run.metric}")
    ax.set_title(f"Hyperparameters against {run.metric} (one line per trial; thick: the best)")
