"""An experiment-wide checkpoint budget (Ray keeps checkpoints per trial, not per search).

Kept on disk at any time: the `keep` best checkpoints of the whole search, plus the latest
checkpoint of every trial that is still running or paused (it resumes from there after a crash).
Everything else is deleted as soon as it falls out of that set, so a long search does not fill
the disk with the checkpoints of trials that ASHA stopped long ago. Once it holds `keep`, the worst
of the best is published as the bar a new checkpoint must reach (`hpo.checkpoint_bar`), so that
trials do not write checkpoints that would be deleted at once.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from hpo import checkpoint_bar
from hpo.numbers import finite_number


@dataclass
class _Saved:
    trial_id: str
    path: str
    score: float  # higher is better (minimized metrics are negated)
    order: int


class CheckpointBudget(Callback):
    """Ray Tune callback that enforces `checkpoints.keep` over the whole search."""

    bar_key: str | None = None  # a budget pickled by an older hpo (then `hpo resume`) has none

    def __init__(self, metric: str, goal: str, keep: int, bar_key: str | None = None) -> None:
        self.metric = metric
        self.sign = 1.0 if goal == "maximize" else -1.0
        self.keep = keep
        self.bar_key = bar_key
        self.saved: list[_Saved] = []
        self.finished: set[str] = set()
        self._count = 0

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        value = (trial.last_result or {}).get(self.metric)
        score = -math.inf
        if finite_number(value):
            score = self.sign * float(value)
        self._count += 1
        self.saved.append(_Saved(trial.trial_id, checkpoint.path, score, self._count))
        self._prune(checkpoint.filesystem)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finished(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finished(trial)

    def _finished(self, trial: Any) -> None:
        self.finished.add(trial.trial_id)
        checkpoint = trial.checkpoint
        self._prune(checkpoint.filesystem if checkpoint is not None else None)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._publish(None)  # a long-lived cluster need not remember this search

    def bar(self) -> float | None:
        """The score a new checkpoint must reach to be among the best `keep` (None: any)."""
        if len(self.saved) < self.keep:
            return None
        return self._best()[-1].score

    def _best(self) -> list[_Saved]:
        return sorted(self.saved, key=lambda s: (s.score, s.order), reverse=True)[: self.keep]

    def _publish(self, score: float | None) -> None:
        if self.bar_key is not None:
            checkpoint_bar.publish(self.bar_key, score)

    def kept(self) -> set[str]:
        """Paths the budget keeps: the best `keep`, and each unfinished trial's latest."""
        best = self._best()
        latest: dict[str, _Saved] = {}
        for s in self.saved:
            if s.trial_id not in self.finished:
                latest[s.trial_id] = s
        return {s.path for s in best} | {s.path for s in latest.values()}

    def _prune(self, filesystem: Any) -> None:
        if filesystem is None:
            return
        keep = self.kept()
        doomed = [s for s in self.saved if s.path not in keep]
        self.saved = [s for s in self.saved if s.path in keep]
        for s in doomed:
            with contextlib.suppress(OSError):  # already gone: nothing to free
                filesystem.delete_dir(s.path)
        self._publish(self.bar())

    # Tune checkpoints callback state with the experiment, so `hpo resume` keeps the budget.
    def get_state(self) -> dict[str, Any]:
        return {"saved": self.saved, "finished": self.finished, "count": self._count}

    def set_state(self, state: dict[str, Any]) -> None:
        self.saved = state["saved"]
        self.finished = state["finished"]
        self._count = state["count"]
        self._publish(self.bar())  # the cluster may be a new one

    def use_bar_key(self, key: str) -> None:
        """Publish the bar under `key` from now on (`hpo resume` of a moved run directory)."""
        self.bar_key = key
        self._publish(self.bar())
