"""What became of each trial, in words and colours the plots and tables share."""

from __future__ import annotations

import math
from typing import Any

from hpo.spec import JobSpec

# Colour-blind-safe (Okabe-Ito); ASHA's rungs get their own shades of one hue.
COLOURS = {
    "completed": "#009E73",
    "reached_target": "#0072B2",
    "patience": "#56B4E9",
    "diverged": "#D55E00",
    "errored": "#7F7F7F",
    "unfinished": "#BBBBBB",
}
RUNG_COLOURS = ("#F0B400", "#E69F00", "#CC79A7", "#8E5BA6", "#5A3D8A")


def rung_index(evaluations: int, grace: int, eta: float) -> int:
    """ASHA's rung a trial stopped at: rung k is reached after grace * eta^k evaluations."""
    if evaluations < max(grace, 1) or eta <= 1:
        return 0
    return math.floor(math.log(evaluations / max(grace, 1)) / math.log(eta) + 1e-9)


def stopped_rung(spec: JobSpec, evaluations: int) -> int | None:
    """The rung for a trial the scheduler stopped (None when the scheduler has no rungs)."""
    et = spec.early_terminate
    if et.type != "asha":
        return None
    return rung_index(evaluations, et.min_iter, et.eta)


def outcome_label(spec: JobSpec, row: dict[str, Any]) -> str:
    """'completed', 'stopped at rung 1 (eval 3)', 'diverged', 'errored', ..."""
    outcome = str(row.get("outcome", "unfinished"))
    if outcome != "stopped_early":
        return outcome
    evaluations = int(float(row.get("evaluations") or 0))
    rung = stopped_rung(spec, evaluations)
    if rung is None:
        return f"stopped at eval {evaluations}"
    return f"stopped at rung {rung} (eval {evaluations})"


def outcome_colour(label: str) -> str:
    if label.startswith("stopped at rung"):
        rung = int(label.split()[3])
        return RUNG_COLOURS[min(rung, len(RUNG_COLOURS) - 1)]
    if label.startswith("stopped"):
        return RUNG_COLOURS[1]
    return COLOURS.get(label, "#444444")


def label_order(label: str) -> tuple[int, str]:
    """Legend order: completed first, then rungs high to low, then failures."""
    if label in ("completed", "reached_target"):
        return (0, label)
    if label.startswith("stopped"):
        return (1, label)
    return (2, label)
