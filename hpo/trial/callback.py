"""The TrainerCallback that turns each evaluation into one report (with its checkpoint)."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from typing import Any

from transformers import TrainerCallback

from hpo.trial.reporter import FINAL, OUTCOME, TRAIN_SECONDS, TRIAL_STATE_FILE, Reporter

# What a resumed trial (after a crash or a pause) must not forget. Kept in a file of its own:
# HF's `ExportableState` restores a callback by rebuilding it from JSON constructor arguments,
# and this one holds the trial's reporter.
CARRIED_OVER = ("best", "best_value", "evals_without_gain", "train_seconds", "evaluations")


class ReportCallback(TrainerCallback):
    """Reports every evaluation through the `Reporter`; stops on divergence or lost patience."""

    def __init__(
        self,
        reporter: Reporter,
        metric: str,
        goal: str,
        extra: dict[str, Any] | None = None,
        patience: int | None = None,
        threshold: float = 0.0,
        perplexity: bool = False,
        resume_every_s: float = 0.0,
        pause_points: frozenset[int] = frozenset(),
    ) -> None:
        self.reporter = reporter
        self.metric = metric
        self.sign = 1.0 if goal == "maximize" else -1.0
        self.extra = dict(extra or {})
        self.patience = patience
        self.threshold = threshold
        self.perplexity = perplexity
        self.best: float | None = None  # for patience (moves only by more than threshold)
        self.best_value: float | None = None  # the best evaluation so far (ties included)
        self.evals_without_gain = 0
        self.pending: dict[str, Any] | None = None
        self.last_eval_step = -1
        self.train_seconds = 0.0
        self._step_started = 0.0
        self.diverged = False
        # A resumable checkpoint at least this often; 0: at every evaluation (HyperBand may
        # pause a trial at any evaluation and resumes it from there) ...
        self.resume_every_s = resume_every_s
        self._resumable_at = time.monotonic()
        # ... and at these evaluations (1 = the first), where promotion-type ASHA may pause it.
        self.pause_points = pause_points
        self.evaluations = 0  # reported so far, the scheduler's clock (training_iteration)
        self._losses: list[float] = []  # the training loss logged since the last evaluation

    # -- timing: training compute, as opposed to evaluation and overhead -------------------
    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.train_seconds += time.perf_counter() - self._step_started
        # With step-based evaluation the last step may fall between evaluations: evaluate it too,
        # so every full trial ends on an evaluation of its final weights.
        if (
            state.global_step >= state.max_steps
            and str(args.eval_strategy).endswith("steps")
            and self.last_eval_step != state.global_step
        ):
            control.should_evaluate = True

    # -- divergence -------------------------------------------------------------------------
    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and math.isfinite(loss):
            self._losses.append(float(loss))
        if loss is None or math.isfinite(loss) or self.diverged:
            return
        self.diverged = True
        control.should_training_stop = True
        control.should_evaluate = False
        control.should_save = False
        worst = -math.inf if self.sign > 0 else math.inf
        self.reporter.report(
            {
                self.metric: worst,
                "train_loss": float(loss),
                "global_step": state.global_step,
                FINAL: 1,
                OUTCOME: "diverged",
                TRAIN_SECONDS: self.train_seconds,
                **self.extra,
            }
        )

    # -- evaluation -> report ---------------------------------------------------------------
    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
    ) -> None:
        if state.global_step == self.last_eval_step or self.diverged:
            return
        self.last_eval_step = state.global_step
        self.evaluations += 1
        report: dict[str, Any] = {
            k: float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)
        }
        if self.perplexity and "eval_loss" in report:
            report["eval_perplexity"] = math.exp(min(report["eval_loss"], 700.0))
        report.update(self.extra)
        report.update(global_step=state.global_step, epoch=float(state.epoch or 0.0))
        if self._losses:  # W&B and evaluations.csv show the training curve beside eval's
            report["train_loss"] = sum(self._losses) / len(self._losses)
            self._losses = []
        report[TRAIN_SECONDS] = self.train_seconds
        lost_patience = self._update_patience(report.get(self.metric))
        best_so_far = self._best_so_far(report.get(self.metric))
        final = lost_patience or state.global_step >= state.max_steps
        report[FINAL] = int(final)
        if final:
            report[OUTCOME] = "patience" if lost_patience else "completed"
        if lost_patience:
            control.should_training_stop = True
        # A checkpoint is written only where one can matter: for export, an evaluation that is
        # the trial's best so far and could be among the search's kept best; for resuming, the
        # latest non-final one once `resume_every_s` has passed since the last resumable one, or
        # where the scheduler may pause the trial.
        exportable = best_so_far and self._could_be_kept(report.get(self.metric))
        pausable = self.evaluations in self.pause_points
        resumable = not final and (exportable or pausable or self._resume_due())
        if not (exportable or resumable):
            self.reporter.report(report)
            return
        if final:
            args.save_only_model = True  # nothing resumes from it: the weights are enough
        else:
            self._resumable_at = time.monotonic()
        self.pending = report
        control.should_save = True  # the report goes out in on_save, with the checkpoint

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.pending is None:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        report, self.pending = self.pending, None
        saved = os.path.isdir(folder)
        if saved:
            with open(os.path.join(folder, TRIAL_STATE_FILE), "w") as f:
                json.dump({key: getattr(self, key) for key in CARRIED_OVER}, f)
        self.reporter.report(report, folder if saved else None)
        # The tuner has copied the checkpoint to the run's storage; the trial's copy can go.
        shutil.rmtree(folder, ignore_errors=True)

    def restore(self, checkpoint_dir: str) -> None:
        """Go on from a checkpoint's bookkeeping: patience, best so far, training seconds."""
        path = os.path.join(checkpoint_dir, TRIAL_STATE_FILE)
        if not os.path.isfile(path):
            return  # written by an older hpo: start the counters afresh
        with open(path) as f:
            state = json.load(f)
        for key in CARRIED_OVER:
            if key in state:
                setattr(self, key, state[key])

    def _could_be_kept(self, value: Any) -> bool:
        """Whether the search's checkpoint budget would keep a checkpoint of this value."""
        bar = self.reporter.checkpoint_bar()
        if bar is None or value is None:
            return True
        return self.sign * float(value) >= bar  # a tie is kept: the budget prefers the later

    def _resume_due(self) -> bool:
        return time.monotonic() - self._resumable_at >= self.resume_every_s

    def _best_so_far(self, value: Any) -> bool:
        """Whether this evaluation ties or beats the trial's earlier ones (unknown: yes)."""
        if value is None:
            return True
        if not math.isfinite(value):
            return False
        best = self.best_value
        if best is None or self.sign * (value - best) >= 0:
            self.best_value = value
            return True
        return False

    def _update_patience(self, value: Any) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None or self.sign * (value - self.best) > self.threshold:
            self.best = value
            self.evals_without_gain = 0
            return False
        self.evals_without_gain += 1
        return self.patience is not None and self.evals_without_gain >= self.patience
