"""What a trial's W&B run summary says, with W&B's run object replaced by a recorder."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

import pytest

from hpo.spec import DataSpec, JobSpec, MetricSpec, ModelSpec, TrackingSpec, WandbSpec
from hpo.tracking import WandbTrialRuns, log_search_summary


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


def test_where_w_and_b_online_fails_the_runs_are_recorded_offline_said_once(
    tmp_path, monkeypatch, capsys
):
    """A bad key (or no network): real W&B refuses the online run; the search records every
    trial offline from then on and says so once, not once per trial and start."""
    monkeypatch.setenv("WANDB_API_KEY", "too-short")  # refused at once, no network needed
    monkeypatch.delenv("WANDB_MODE")
    spec = JobSpec(
        model=ModelSpec(name_or_path="m"),
        data=DataSpec(train="d.csv"),
        metric=MetricSpec(name="eval_loss", goal="minimize"),
        tracking=TrackingSpec(wandb=WandbSpec(project="p", mode="online")),
    )
    cb = WandbTrialRuns(spec, "search", "abc", str(tmp_path))
    trials = [SimpleNamespace(trial_id=t, config={"lr": 0.1}, last_result={}) for t in "ab"]
    for trial in [*trials, trials[0]]:  # the last: a paused trial starting again
        cb.on_trial_start(iteration=0, trials=trials, trial=trial)
    for trial in trials:
        result = {"training_iteration": 1, "eval_loss": 0.5}
        cb.on_trial_result(iteration=0, trials=trials, trial=trial, result=result)
        cb.on_trial_complete(iteration=0, trials=trials, trial=trial)
    err = capsys.readouterr().err
    assert err.count("hpo: W&B online failed (") == 1, err
    assert "40+ characters" in err and "not recorded" not in err and "too-short" not in err
    runs = {p.name.split("-", 3)[-1] for p in (tmp_path / "wandb").glob("offline-run-*")}
    assert runs == {"abc-a", "abc-b"}, runs


def test_the_reports_summary_run_goes_offline_where_online_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "too-short")
    spec = JobSpec(
        model=ModelSpec(name_or_path="m"),
        data=DataSpec(train="d.csv"),
        tracking=TrackingSpec(wandb=WandbSpec(project="p", mode="online")),
    )
    page = tmp_path / "report.html"
    page.write_text("<html></html>")
    summary = {"best_hyperparameters": {"lr": 0.1}, "trials": 2}
    run_id = log_search_summary(spec, "search", str(tmp_path), summary, [str(page)])
    assert run_id is not None and run_id.startswith("summary-")
    assert "recorded offline" in capsys.readouterr().err
    assert list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))


def test_a_resume_tries_w_and_b_online_again(tmp_path, monkeypatch):
    """The search went offline when W&B failed; the resume's environment decides again."""
    cb = callback()
    cb._mode = "offline"  # as after a failure, pickled so with the search
    cb._settings = WandbSpec(project="p")  # no mode in the spec: the environment's
    del cb._unrecorded  # pickled by an hpo before it kept this
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    resumed = pickle.loads(pickle.dumps(cb))
    resumed.relocate(str(tmp_path))
    assert resumed._mode == "online" and resumed._unrecorded == set()


def test_a_run_id_still_in_use_is_not_taken_for_w_and_b_unreachable(monkeypatch):
    """A retried trial's earlier run still closing: that trial's run fails (and is said not
    recorded), and the search stays online: no teardown of the other trials' runs."""
    calls: list[str] = []

    class InUse:  # stands for wandb
        @staticmethod
        def init(**kwargs: Any) -> Any:
            calls.append(kwargs["mode"])
            raise RuntimeError(f"run ID {kwargs['id']} is in use")

        @staticmethod
        def teardown() -> None:
            calls.append("teardown")

        Settings = staticmethod(lambda **kwargs: kwargs)

    monkeypatch.setattr("hpo.tracking.time.sleep", lambda s: None)
    cb = callback()
    cb._mode = "online"
    with pytest.raises(RuntimeError, match="in use"):
        cb._open(InUse, SimpleNamespace(trial_id="t1", config={}))
    assert calls == ["online"] * 3 and cb._mode == "online"
