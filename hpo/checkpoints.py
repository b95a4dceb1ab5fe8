"""An experiment-wide checkpoint budget (Ray keeps checkpoints per trial, not per search).

Kept on disk at any time: the `keep` best checkpoints of the whole search, plus the latest
checkpoint of every trial that is still running or paused (it resumes from there after a crash).
Everything else is deleted as soon as it falls out of that set, so a long search does not fill
the disk with the checkpoints of trials that ASHA stopped long ago. Once it holds `keep`, the worst
of the best is published as the bar a new checkpoint must reach (`hpo.checkpoint_bar`), so that
trials do not write checkpoints that would be deleted at once.

One exception: a checkpoint a recently saved experiment state names as a trial's latest
waits. Tune saves that state from time to time (every 10 s or more), first to the driver's
staging folder, then copies it to the run directory on a background thread, which skips a
save while the previous copy runs. A driver killed in between is resumed from the state the
run directory holds, and each unfinished trial restarts from the checkpoint that names, so
it must still be there: the last `NAMED_BY_SAVES` saves' checkpoints, and any save's of the
last `NAMED_FOR_S` seconds, stay.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from hpo import checkpoint_bar
from hpo.numbers import finite_number

NAMED_BY_SAVES = 2
NAMED_FOR_S = 120.0


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
        self.deferred: list[_Saved] = []  # out of the budget, but named by a recent save
        self._named: list[tuple[float, set[str]]] = []  # (when, the latest paths) per save
        self._fs: Any = None  # the checkpoints' filesystem, for the deletions get_state makes
        self._run_dir: str | None = None  # a local run's directory, where it is now

    def __getstate__(self) -> dict[str, Any]:
        # The filesystem and the clock's readings are this process's.
        return {k: v for k, v in self.__dict__.items() if k not in ("_fs", "_named")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A budget pickled by an older hpo lacks the newer fields.
        defaults: dict[str, Any] = {"deferred": [], "_run_dir": None}
        self.__dict__.update({**defaults, **state, "_fs": None, "_named": []})

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        value = (trial.last_result or {}).get(self.metric)
        score = -math.inf
        if finite_number(value):
            score = self.sign * float(value)
        self._count += 1
        self.saved.append(_Saved(trial.trial_id, checkpoint.path, score, self._count))
        self._fs = checkpoint.filesystem
        self._prune(checkpoint.filesystem)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finished(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finished(trial)

    def _finished(self, trial: Any) -> None:
        self.finished.add(trial.trial_id)
        checkpoint = trial.checkpoint
        if checkpoint is not None:
            self._fs = checkpoint.filesystem
        self._prune(self._fs)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if all(t.trial_id in self.finished for t in trials):
            # Every trial ended (an interrupted one reaches no on_trial_complete): nothing
            # will resume, so what only a resume could look for goes now.
            self._named = []
            self._prune(self._fs)
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
        return {s.path for s in self._best()} | self._latest()

    def _latest(self) -> set[str]:
        latest: dict[str, _Saved] = {}
        for s in self.saved:
            if s.trial_id not in self.finished:
                latest[s.trial_id] = s
        return {s.path for s in latest.values()}

    def _prune(self, filesystem: Any) -> None:
        if filesystem is None:
            return
        keep = self.kept()
        self.deferred += [s for s in self.saved if s.path not in keep]
        self.saved = [s for s in self.saved if s.path in keep]
        self._delete_unreferenced(filesystem)
        self._publish(self.bar())

    @property
    def referenced(self) -> set[str]:
        """The checkpoints a state in the run directory may name: recent saves' latest."""
        return set().union(*(paths for _, paths in self._recent_saves()))

    def _recent_saves(self) -> list[tuple[float, set[str]]]:
        now = time.monotonic()
        last = len(self._named) - NAMED_BY_SAVES
        return [
            (when, paths)
            for i, (when, paths) in enumerate(self._named)
            if i >= last or now - when < NAMED_FOR_S
        ]

    def _delete_unreferenced(self, filesystem: Any) -> None:
        named = self.referenced
        waiting = []
        for s in self.deferred:
            if s.path in named:
                waiting.append(s)  # a restore from a saved state would look for it
                continue
            with contextlib.suppress(OSError):  # already gone: nothing to free
                filesystem.delete_dir(s.path)
        self.deferred = waiting

    # Tune saves the callbacks' state with the experiment's, so `hpo resume` keeps the
    # budget; the trials' latest checkpoints now are those this save names.
    def get_state(self) -> dict[str, Any]:
        self._named = [*self._recent_saves(), (time.monotonic(), self._latest())]
        self._prune(self._fs)
        return {
            "saved": self.saved,
            "finished": self.finished,
            "count": self._count,
            "deferred": self.deferred,
            "referenced": self.referenced,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.saved = state["saved"]
        self.finished = state["finished"]
        self._count = state["count"]
        self.deferred = list(state.get("deferred", []))
        # The state this resume starts from: what it names stays until saves name others.
        named = set(state.get("referenced", self._latest()))
        self._named = [(time.monotonic(), named)]
        if self._run_dir is not None:  # Tune restores the state after hpo relocated
            self.follow_local_run(self._run_dir)
        self._publish(self.bar())  # the cluster may be a new one

    def follow_local_run(self, run_dir: str) -> None:
        """A local run, moved, renamed or copied since its state was saved: its checkpoints
        are under `run_dir` now. (Else a moved run's budget would fail to delete at the old
        paths, and a copy's would delete the original's checkpoints.) `hpo resume` calls it
        before Tune restores the budget's state, which then follows it too."""
        import pyarrow.fs

        self._run_dir = run_dir
        self._fs = self._fs or pyarrow.fs.LocalFileSystem()
        for s in [*self.saved, *self.deferred]:
            s.path = _under(s.path, run_dir)
        self._named = [(when, {_under(p, run_dir) for p in paths}) for when, paths in self._named]

    def use_bar_key(self, key: str) -> None:
        """Publish the bar under `key` from now on (`hpo resume` of a moved run directory)."""
        self.bar_key = key
        self._publish(self.bar())


def _under(path: str, run_dir: str) -> str:
    """A local checkpoint path (`<run>/<trial>/checkpoint_N`) in the run directory `run_dir`."""
    trial, checkpoint = os.path.split(os.path.dirname(path))[1], os.path.basename(path)
    return os.path.join(run_dir, trial, checkpoint)


# What a checkpoint holds only to resume training from it (the optimizer's moments are twice
# the model's size under Adam); the weights, config and trainer state stay.
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")


def strip_resume_state(run_dir: str) -> int:
    """Drop what only a resume reads from a finished local search's kept checkpoints: no
    trial of it runs or waits paused any more. Returns the bytes freed."""
    import glob

    freed = 0
    for pattern in RESUME_ONLY:
        for path in glob.glob(os.path.join(run_dir, "*", "checkpoint_*", pattern)):
            with contextlib.suppress(OSError):
                size = os.path.getsize(path)
                os.remove(path)
                freed += size
    return freed
