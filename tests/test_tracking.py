"""What a trial's W&B run summary says, with W&B's run object replaced by a recorder."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

from hpo.spec import DataSpec, JobSpec, MetricSpec, ModelSpec, TrackingSpec, WandbSpec
from hpo.tracking import WandbTrialRuns


class RecordedRun:
    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}
        self.steps: list[int] = []

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.steps.append(step)


def callback() -> WandbTrialRuns:
    spec = JobSpec(
        model=ModelSpec(name_or_path="m"),
        data=DataSpec(train="d.csv"),
        metric=MetricSpec(name="eval_loss", goal="minimize"),
        tracking=TrackingSpec(wandb=WandbSpec(mode="offline")),
    )
    return WandbTrialRuns(spec, "search", "abc", "/nonexistent")


def report(cb: WandbTrialRuns, evaluation: int, loss: float) -> None:
    trial = SimpleNamespace(trial_id="t1")
    result = {"training_iteration": evaluation, "eval_loss": loss}
    cb.on_trial_result(iteration=0, trials=[], trial=trial, result=result)


def test_the_summary_never_names_an_evaluation_whose_checkpoint_was_lost():
    cb = callback()
    run = cb._runs["t1"] = RecordedRun()
    report(cb, 1, 0.6)
    report(cb, 2, 0.3)  # its checkpoint is lost when the worker dies; the retry resumes at 1
    assert run.summary == {"best_eval_loss": 0.3, "best_evaluation": 2}
    report(cb, 2, 0.5)
    report(cb, 3, 0.55)
    assert run.summary == {"best_eval_loss": 0.5, "best_evaluation": 2}


def test_a_resumed_search_keeps_the_evaluations_from_before():
    cb = callback()
    cb._runs["t1"] = RecordedRun()
    report(cb, 1, 0.2)
    resumed = callback()
    resumed.set_state(pickle.loads(pickle.dumps(cb.get_state())))  # as Tune saves it
    run = resumed._runs["t1"] = RecordedRun()
    report(resumed, 2, 0.4)
    assert run.summary == {"best_eval_loss": 0.2, "best_evaluation": 1}
