"""`hpo compare RUN_A RUN_B ...`: searches side by side, their best-so-far curves on one plot."""

from __future__ import annotations

import os
import sys
from typing import Any, Literal

from hpo.errors import SpecError
from hpo.paths import output_folder
from hpo.report.rundata import RunData, load_run

COMPARE_PNG = "compare.png"
COMPARE_HTML = "compare.html"


def _load_all(run_dirs: list[str]) -> list[RunData]:
    """Every run directory read; the problems of all the unreadable ones reported together."""
    runs, problems = [], []
    for run_dir in run_dirs:
        try:
            runs.append(load_run(run_dir))
        except SpecError as err:
            problems += [err.render()]
    if problems:
        raise SpecError(problems)
    return runs


def _check_same_metric(runs: list[RunData]) -> None:
    metrics = {(r.metric, r.maximize) for r in runs}
    if len(metrics) > 1:
        listed = ", ".join(f"{r.name}: {r.metric}" for r in runs)
        raise SpecError([f"the runs optimize different metrics ({listed}); compare like with like"])


def data_warning(runs: list[RunData]) -> str | None:
    """Searches over different data (another file, cleaning or sample cap) score on different
    validation sets: their numbers side by side would mislead, so say so (not refused: that
    may be the comparison wanted)."""
    recorded = [(r.run_dir, r.data_fingerprint) for r in runs if r.data_fingerprint]
    if len({fp for _, fp in recorded}) < 2:
        return None
    listed = ", ".join(f"{run_dir}: {fp}" for run_dir, fp in recorded)
    validation = [r.validation_fingerprint for r in runs]
    if None not in validation and len(set(validation)) == 1:
        return (
            f"these searches trained on different data (fingerprints {listed}); their scores "
            "are on the same validation set"
        )
    return (
        f"these searches trained and scored on different data (fingerprints {listed}): "
        "their scores are not on the same validation set"
    )


def rows(runs: list[RunData]) -> list[dict[str, Any]]:
    """One row per search: the search's best metric, trials, wall time and compute used (and
    `hpo confirm`'s outcome and cost, where one ran)."""
    out = []
    for run in runs:
        counts = run.trials["outcome"].value_counts().to_dict()
        scored = run.scored_trials()
        out.append(
            {
                "search": run.name,
                "method": f"{run.spec.method} + {run.spec.early_terminate.type}",
                f"best {run.metric}": (
                    float(scored[run.best_column].iloc[0]) if len(scored) else None
                ),
                **_front_size(run, runs),
                "trials": len(run.trials),
                "completed": int(counts.get("completed", 0)),
                "stopped early": int(counts.get("stopped_early", 0)),
                "failed": int(counts.get("errored", 0) + counts.get("diverged", 0)),
                "wall s": round(run.wall_seconds(), 1),
                "compute (trial-s)": round(run.trial_seconds(), 1),
                "CPU-s": round(run.trial_seconds() * run.spec.resources.cpu, 1),
                **_confirmed(run, runs),
            }
        )
    return out


def _confirmed(run: RunData, runs: list[RunData]) -> dict[str, Any]:
    """When any search was confirmed: the chosen configuration's mean over fresh seeds (what
    its best.yaml and report now give) and what confirming cost, beside the search's own."""
    if not any(r.confirm for r in runs):
        return {}
    ranking = (run.confirm or {}).get("ranking") or []
    chosen = next((c for c in ranking if c.get("chosen")), None)
    return {
        f"confirmed {run.metric} (mean)": chosen.get("mean") if chosen else None,
        "confirm (trial-s)": (run.confirm or {}).get("trial_seconds"),
    }


def _front_size(run: RunData, runs: list[RunData]) -> dict[str, Any]:
    """A column for the Pareto front's size when any search has several metrics."""
    if all(r.pareto is None for r in runs):
        return {}
    return {"pareto front": len(run.pareto) if run.pareto is not None else None}


def plot_best_so_far(runs: list[RunData], out_dir: str) -> str:
    """Every search's best so far against wall-clock time, on one axis."""
    import matplotlib.pyplot as plt

    from hpo.report.plots import STYLE, _running_best, _save, metric_axis

    palette = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.4))
        shown: list[float] = []  # every search's best so far, for the metric's axis
        for i, run in enumerate(runs):
            frame = run.evaluations.dropna(subset=[run.metric])
            if frame.empty:
                continue
            best = _running_best(frame[run.metric], run.maximize)
            shown += best.tolist()
            ax.step(
                frame["wall_s"],
                best,
                where="post",
                lw=2.2,
                color=palette[i % len(palette)],
                label=f"{run.name} (best {best.iloc[-1]:.4g})",
            )
        ax.set_xlabel("wall-clock time since the search started (seconds)")
        metric_axis(ax, shown, runs[0].metric, runs[0].maximize, " so far")
        ax.set_title("Searches compared: best so far against time")
        ax.legend(loc="best")
        return _save(fig, out_dir, COMPARE_PNG)


def _html(table: list[dict[str, Any]], warning: str | None) -> str:
    from hpo.report.page import CSS, _esc
    from hpo.report.tables import fmt

    head = "".join(f"<th>{_esc(k)}</th>" for k in table[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(fmt(v))}</td>" for v in row.values()) + "</tr>"
        for row in table
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>hpo compare</title>'
        f"<style>{CSS}</style></head><body><h1>Searches compared</h1>"
        + (f"<p><strong>Note:</strong> {_esc(warning)}</p>" if warning else "")
        + f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        f'</div><figure><img src="{COMPARE_PNG}" alt="best so far"></figure></body></html>'
    )


def _print(table: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from hpo.report.tables import fmt
    from hpo.report.terminal import table_console

    out = Table(title="searches compared", title_justify="left")
    for column in table[0]:
        justify: Literal["left", "right"] = "left" if column in ("search", "method") else "right"
        out.add_column(column, justify=justify, overflow="fold")
    for row in table:
        out.add_row(*(fmt(v) for v in row.values()))
    table_console(sys.stderr).print(out)


def compare_runs(run_dirs: list[str], out_dir: str) -> str:
    """Table in the terminal, compare.png and compare.html in `out_dir`; returns the page."""
    from hpo.results import write_text_atomic

    runs = _load_all(run_dirs)  # every problem before anything is written
    _check_same_metric(runs)
    table = rows(runs)
    output_folder(out_dir)
    plot_best_so_far(runs, out_dir)
    page = os.path.join(out_dir, COMPARE_HTML)
    warning = data_warning(runs)
    write_text_atomic(page, _html(table, warning))
    _print(table)
    if warning:
        print(f"hpo: note: {warning}", file=sys.stderr)
    return page
