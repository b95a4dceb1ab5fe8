"""The top trials and the search's headline numbers, shared by the HTML page and the terminal."""

from __future__ import annotations

import math
from typing import Any

from hpo.confirm import spread
from hpo.report.outcomes import outcome_label
from hpo.report.rundata import RunData

TOP_N = 10


def fmt(value: Any) -> str:
    """Numbers to 4 significant digits; empty cells stay empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def top_trials(run: RunData, n: int = TOP_N) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the best `n` trials, best first."""
    header = [
        "rank",
        "trial",
        "outcome",
        *run.params,
        run.best_column,
        "at eval",
        "evals",
        "wall s",
    ]
    rows = []
    for rank, r in enumerate(run.scored_trials().head(n).to_dict("records"), start=1):
        rows.append(
            [
                str(rank),
                str(r["trial_id"]),
                outcome_label(run.spec, r),
                *(fmt(r[p]) for p in run.params),
                fmt(float(r[run.best_column])),
                fmt(r.get("best_evaluation")),
                fmt(r.get("evaluations")),
                fmt(float(r.get("wall_seconds") or 0.0)),
            ]
        )
    return header, rows


def failures(run: RunData) -> tuple[list[str], list[list[str]]] | None:
    """The errored trials grouped by their error (the traceback's last line), most common
    first, with where the full tracebacks are; None when no trial errored."""
    erred = run.trials[run.trials["outcome"] == "errored"]
    if erred.empty:
        return None
    groups: dict[str, list[str]] = {}
    for r in erred.to_dict("records"):
        where = fmt(r.get("traceback")) or str(r["trial_id"])
        groups.setdefault(fmt(r.get("error")) or "(no message)", []).append(where)
    rows = [
        [str(len(found)), error, ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")]
        for error, found in sorted(groups.items(), key=lambda g: -len(g[1]))
    ]
    return ["trials", "error", "tracebacks"], rows


def best_run(best: dict[str, Any]) -> str:
    """Which run the best is: a search trial, or (after `hpo confirm`) a confirmation run."""
    where = f"evaluation {best.get('evaluation')}"
    if best.get("confirmed"):
        seed = (best.get("hyperparameters") or {}).get("seed")
        return f"hpo confirm run {best.get('trial_id')}, seed {seed}, {where}"
    return f"trial {best.get('trial_id')}, {where}"


def compute_spent(run: RunData) -> str:
    """Trial-seconds of the search, and of its confirmation when there was one."""
    spec = run.spec
    text = (
        f"{run.trial_seconds():.0f} trial-seconds "
        f"({spec.resources.cpu:g} CPU, {spec.resources.gpu:g} GPU per trial)"
    )
    confirming = (run.confirm or {}).get("trial_seconds")
    if confirming:
        text += f", plus {float(confirming):.0f} trial-seconds for hpo confirm"
    return text


def headline(run: RunData) -> dict[str, str]:
    """What a reader wants first: the best, how it was found, what it cost."""
    counts = run.trials["outcome"].value_counts().to_dict()
    facts = {
        "search": run.name,
        "model": run.spec.model.name_or_path,
        "task": run.spec.task,
        "metric": ", ".join(f"{m.name} ({m.goal or 'maximize'})" for m in run.spec.metrics),
        "method": f"{run.spec.method}, early stopping: {run.spec.early_terminate.type}",
        "trials": ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        "wall time": f"{run.wall_seconds():.0f} s",
        "compute": compute_spent(run),
    }
    if run.pareto is not None:
        facts["pareto front"] = (
            f"{len(run.pareto)} trials (pareto.csv); the exported model is the best on "
            f"{run.metric}, ties going to the later objectives"
        )
    if run.best:
        facts["best"] = f"{run.best['value']:.4g} ({best_run(run.best)})"
    confirm = run.confirm or {}
    chosen = next((c for c in confirm.get("ranking", []) if c.get("chosen")), None)
    if chosen:
        facts["confirmed"] = f"trial {chosen['trial_id']}'s configuration: {spread(chosen)}"
    return facts


def confirm_table(run: RunData) -> tuple[list[str], list[list[str]]] | None:
    """`hpo confirm`'s ranking: mean and spread over fresh seeds, with the search's value."""
    ranking = (run.confirm or {}).get("ranking") or []
    if not ranking:
        return None
    seeds = (run.confirm or {}).get("seeds") or []
    header = ["rank", "trial", "search rank", "search value", "mean", "std", "min", "max"]
    header += [f"seed {s}" for s in seeds]
    rows = []
    for e in ranking:
        values = {s["seed"]: s["value"] for s in e["seeds"]}
        rows.append(
            [
                str(e["rank"]) + (" (chosen)" if e.get("chosen") else ""),
                str(e["trial_id"]),
                str(e["search_rank"]),
                fmt(e["search_value"]),
                *(fmt(e[k]) for k in ("mean", "std", "min", "max")),
                *(fmt(values.get(s)) if values.get(s) is not None else "failed" for s in seeds),
            ]
        )
    return header, rows
