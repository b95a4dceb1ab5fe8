"""What the scheduler and the searcher say about the search, for people to read.

The rung guard's verdicts (the scheduler) and the hedge's (the searcher: hpo.hedge) change how
the search proceeds; `SearchNotes` is a Ray Tune callback that shows them in the live table's
caption as they come, and writes them, with the rank correlation between each pair of rungs, to
`scheduler_notes.txt` in the run directory when the search ends (`hpo report` shows that file).
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
            f"promotion: {_count(scheduler.num_paused, 'pause')}, "
            f"{_count(scheduler.num_promoted_from_pause, 'paused trial')} resumed from "
            f"{'its checkpoint' if scheduler.num_promoted_from_pause == 1 else 'their checkpoints'}"
            + (
                f", {scheduler.num_dropped} stopped to keep at most {scheduler.max_paused} paused"
                if getattr(scheduler, "num_dropped", 0)
                else ""
            )
        )
    return lines


class SearchNotes(Callback):
    """Keeps the tables' `notes` up with the scheduler's and the searcher's, in the order they
    came; writes them at the end."""

    def __init__(
        self, scheduler: Any, run_dir: str, callbacks: list[Any], searcher: Any = None
    ) -> None:
        self.scheduler = scheduler
        self.searcher = searcher
        self.run_dir = run_dir
        self.shown: list[Any] = []
        self.merged: list[str] = []
        self.seen = {"scheduler": 0, "searcher": 0}  # how many of each source's are merged
        self.share(callbacks)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A search started before the searcher had notes (as `SchedulerNotes`, below) resumes
        # with the scheduler's notes alone, which its table already shares.
        self.__dict__.update({"searcher": None, "shown": [], "merged": [], "seen": {}, **state})

    def share(self, callbacks: list[Any]) -> None:
        """Show the notes in those of `callbacks` that show notes (the live table)."""
        self.shown += [c for c in callbacks if isinstance(getattr(c, "notes", None), list)]
        self.sync()

    def sync(self) -> None:
        sources = {
            "scheduler": list(getattr(self.scheduler, "notes", None) or []),
            "searcher": self.searcher.notes() if self.searcher is not None else [],
        }
        for name, notes in sources.items():
            self.merged += notes[self.seen.get(name, 0) :]
            self.seen[name] = len(notes)
        for callback in self.shown:
            if callback.notes != self.merged:
                callback.notes = list(self.merged)

    def relocate(self, run_dir: str) -> None:
        """Write the notes under `run_dir` (`hpo resume`: see hpo.relocate)."""
        self.run_dir = run_dir

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.sync()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.sync()
        lines = scheduler_lines(self.scheduler)
        if self.searcher is not None:
            lines += self.searcher.summary()
        if lines and os.path.isdir(self.run_dir):
            with open(os.path.join(self.run_dir, NOTES_FILE), "w") as f:
                f.write("\n".join(lines) + "\n")


SchedulerNotes = SearchNotes  # its name until the seventeenth session, for saved searches


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")
