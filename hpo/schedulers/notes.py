"""What the scheduler says about the search (the rung guard's verdicts), for people to read.

`SchedulerNotes` is a Ray Tune callback: it hands the scheduler's notes to the live table (its
caption) and writes them, with the rank correlation between each pair of rungs, to
`scheduler_notes.txt` in the run directory when the search ends.
"""

from __future__ import annotations

import os
from typing import Any

from ray.tune import Callback

NOTES_FILE = "scheduler_notes.txt"


def scheduler_lines(scheduler: Any) -> list[str]:
    """The scheduler's notes, then one line per pair of rungs (empty for FIFO / HyperBand)."""
    guard = getattr(scheduler, "guard", None)
    if guard is None:
        return []
    lines = list(guard.notes)
    lines += guard.summary()
    if guard.enabled and not guard.notes:
        judged = any(guard.correlation(r)[1] >= guard.min_pairs for r in guard.rungs[:-1])
        lines.append(
            f"guard: every rung ranked trials like the next (threshold {guard.threshold:g})"
            if judged
            else f"guard: too few trials reached two rungs to judge them "
            f"(needs {guard.min_pairs}); stopping as plain ASHA"
        )
    if getattr(scheduler, "tie_stops", 0):
        lines.append(
            f"asha: {scheduler.tie_stops} trials tied at a rung's cutoff, with better trials "
            "there, were stopped (Ray's ASHA lets such ties go on)"
        )
    if hasattr(scheduler, "num_promoted_from_pause"):
        lines.append(
            f"promotion: {scheduler.num_paused} pauses, "
            f"{scheduler.num_promoted_from_pause} paused trials resumed from their checkpoint"
            + (
                f", {scheduler.num_dropped} stopped to keep at most {scheduler.max_paused} paused"
                if getattr(scheduler, "num_dropped", 0)
                else ""
            )
        )
    return lines


class SchedulerNotes(Callback):
    """Shares the scheduler's notes with callbacks that show `notes`; writes them at the end."""

    def __init__(self, scheduler: Any, run_dir: str, callbacks: list[Any]) -> None:
        self.scheduler = scheduler
        self.run_dir = run_dir
        self.share(callbacks)

    def share(self, callbacks: list[Any]) -> None:
        notes = getattr(self.scheduler, "notes", None)
        if isinstance(notes, list):
            for callback in callbacks:
                if isinstance(getattr(callback, "notes", None), list):
                    callback.notes = notes  # the same list: the table sees new notes live

    def relocate(self, run_dir: str) -> None:
        """Write the notes under `run_dir` (`hpo resume`: see hpo.relocate)."""
        self.run_dir = run_dir

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        lines = scheduler_lines(self.scheduler)
        if lines and os.path.isdir(self.run_dir):
            with open(os.path.join(self.run_dir, NOTES_FILE), "w") as f:
                f.write("\n".join(lines) + "\n")
