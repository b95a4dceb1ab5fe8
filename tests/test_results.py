"""The run directory's record when a trial's history has a lost timeline in it."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from hpo.results import collect, failed_on, latest_timeline, pick_best


def row(iteration: int, step: int, score: float) -> dict:
    return {"training_iteration": iteration, "global_step": step, "eval_accuracy": score}


def test_rows_of_a_lost_checkpoint_give_way_to_the_retrained_ones():
    # Killed after step 90's result was logged but before its checkpoint was saved: the retry
    # resumes from step 45 and evaluates step 90 again.
    history = [row(1, 45, 0.6), row(2, 90, 0.9), row(2, 90, 0.7), row(3, 135, 0.8)]
    kept = latest_timeline(history)
    assert [r["global_step"] for r in kept] == [45, 90, 135]
    assert [r["eval_accuracy"] for r in kept] == [0.6, 0.7, 0.8]


def test_a_history_that_never_goes_back_is_kept_whole():
    history = [row(1, 45, 0.6), row(2, 90, 0.9), {"training_iteration": 3}, row(4, 135, 0.8)]
    assert latest_timeline(history) == history


def spec_of(*metrics: str) -> SimpleNamespace:
    """What pick_best reads of a spec: its objectives, the first the primary."""
    goals = [
        SimpleNamespace(name=m, goal="maximize" if "acc" in m else "minimize") for m in metrics
    ]
    return SimpleNamespace(primary=goals[0], metrics=goals)


def test_a_tie_on_the_first_objective_goes_to_the_better_on_the_next(tmp_path):
    """Else a tie (every tiny trial at the majority-class accuracy) could export a trial the
    Pareto front leaves out: as accurate, and ten times the trainable parameters."""
    big = {**row(1, 45, 0.43), "trainable_params": 22_000_000, "timestamp": 2}
    small = {**row(1, 45, 0.43), "trainable_params": 1_900_000, "timestamp": 1}
    first, first_checkpoint = _trial(tmp_path, "big", [big])
    second, second_checkpoint = _trial(tmp_path, "small", [small])
    first_checkpoint.mkdir()
    second_checkpoint.mkdir()
    best = pick_best(collect([first, second]), spec_of("eval_accuracy", "trainable_params"))  # type: ignore[arg-type]
    assert best is not None and best.trial_id == "small"
    assert best.metrics["trainable_params"] == 1_900_000  # every objective in best.yaml
    one = pick_best(collect([first, second]), spec_of("eval_accuracy"))  # type: ignore[arg-type]
    assert one is not None and one.trial_id == "big"  # one objective: the later, as before


def _trial(tmp_path, trial_id, history):
    """A finished trial as Ray's ResultGrid gives it, listing one checkpoint (not yet on disk)."""
    listed = tmp_path / trial_id / "checkpoint_000000"
    listed.parent.mkdir()
    result = SimpleNamespace(
        metrics={"trial_id": trial_id},
        metrics_dataframe=pd.DataFrame(history),
        best_checkpoints=[(SimpleNamespace(path=str(listed)), {"training_iteration": 1})],
        error=None,
        config={"learning_rate": 1e-4},
        path=str(tmp_path / trial_id),
    )
    return result, listed


def test_a_tie_between_trials_goes_to_the_checkpoint_the_budget_kept(tmp_path):
    spec = spec_of("eval_accuracy")
    first, first_checkpoint = _trial(tmp_path, "a", [{**row(1, 45, 0.8), "timestamp": 2}])
    second, second_checkpoint = _trial(tmp_path, "b", [{**row(1, 45, 0.8), "timestamp": 1}])
    second_checkpoint.mkdir()  # the budget deleted a's equal checkpoint
    best = pick_best(collect([first, second]), spec)  # type: ignore[arg-type]
    assert best is not None and best.trial_id == "b" and best.checkpoint == str(second_checkpoint)
    first_checkpoint.mkdir()  # both on disk: the later one, as the budget would keep
    best = pick_best(collect([first, second]), spec)  # type: ignore[arg-type]
    assert best is not None and best.trial_id == "a" and best.checkpoint == str(first_checkpoint)


def test_the_best_is_never_an_evaluation_whose_checkpoint_was_lost(tmp_path):
    kept = tmp_path / "checkpoint_000001"
    kept.mkdir()
    history = [row(1, 45, 0.6), row(2, 90, 0.9), row(2, 90, 0.7)]
    result = SimpleNamespace(
        metrics={"trial_id": "t1"},
        metrics_dataframe=pd.DataFrame(history),
        best_checkpoints=[(SimpleNamespace(path=str(kept)), {"training_iteration": 2})],
        error=None,
        config={"learning_rate": 1e-4},
        path=str(tmp_path),
    )
    records = collect([result])
    assert [h["eval_accuracy"] for h in records[0].history] == [0.6, 0.7]
    spec = spec_of("eval_accuracy")
    best = pick_best(records, spec)  # type: ignore[arg-type]
    assert best is not None
    assert best.value == 0.7 and best.checkpoint == str(kept)


def test_a_trial_cut_off_by_an_interruption_is_unfinished_not_stopped_early():
    from hpo.endings import TrialEndings, trial_endings
    from hpo.results import FINAL, TrialRecord

    endings = TrialEndings()
    for trial_id in ("stopped", "done", "failed"):  # what Tune announces as it happens
        endings.on_trial_complete(0, [], SimpleNamespace(trial_id=trial_id))
    restored = TrialEndings()  # `hpo resume`: the set comes back with the search's state
    restored.set_state(endings.get_state())
    ended = trial_endings([object(), restored]).ended  # type: ignore[union-attr]
    assert ended == {"stopped", "done", "failed"}

    def record(trial_id: str, final: int, error: str | None = None) -> TrialRecord:
        history = [{"training_iteration": 1, FINAL: final}]
        r = TrialRecord(trial_id, {}, history, error, None)
        r.ended = trial_id in ended
        return r

    assert record("stopped", 0).outcome == "stopped_early"
    assert record("cut_off", 0).outcome == "unfinished"
    assert record("done", 1).outcome == "completed"
    assert record("failed", 0, error="boom").outcome == "errored"
    assert trial_endings([object()]) is None  # a search from before: outcomes as they were


def test_a_failed_trial_counts_the_time_it_ran_after_its_last_evaluation(monkeypatch):
    """Ray's results time a trial as of its last evaluation: one that fails an hour later
    (or before its first) would count no compute. The driver times it, across a resume."""
    from hpo import endings as endings_module
    from hpo.results import TrialRecord, trial_rows

    clock = iter([100.0, 160.0, 200.0, 500.0, 501.0])
    monkeypatch.setattr(endings_module.time, "monotonic", lambda: next(clock))
    endings = endings_module.TrialEndings()

    def trial(trial_id: str, reported: float | None) -> SimpleNamespace:
        last = {} if reported is None else {"time_total_s": reported}
        return SimpleNamespace(trial_id=trial_id, run_metadata=SimpleNamespace(last_result=last))

    late = trial("late", 55.0)
    endings.on_trial_start(0, [], late)  # 100
    endings.on_trial_result(0, [], late, {})  # 160: its evaluation, 55 s into training
    endings.on_trial_error(0, [], late)  # 200: 40 s after it
    early = trial("early", None)
    endings.on_trial_start(0, [], early)  # 500: it loads its model...
    endings.on_trial_error(0, [], early)  # 501: ...and fails before any evaluation
    restored = endings_module.TrialEndings()
    restored.set_state(endings.get_state())
    assert restored.failed_after == {"late": 95.0, "early": 1.0}

    records = [
        TrialRecord("late", {}, [{"training_iteration": 1, "time_total_s": 55.0}], "boom", None),
        TrialRecord("early", {}, [], "boom", None),
        TrialRecord("fine", {}, [{"training_iteration": 1, "time_total_s": 30.0}], None, None),
    ]
    for r in records:
        r.failed_after = restored.failed_after.get(r.trial_id)
    spec = SimpleNamespace(**vars(spec_of("eval_accuracy")), parameters={})
    rows = trial_rows(records, spec)  # type: ignore[arg-type]
    assert [r["wall_seconds"] for r in rows] == [95.0, 1.0, 30.0]


def test_a_search_that_reached_its_target_ended_it_was_not_interrupted():
    """W&B's `metric.target`: once a trial reaches it Tune cuts the others off, with no
    event per trial; that is the search's end (exported), not a Ctrl-C."""
    from hpo.results import TrialRecord
    from hpo.spec import DataSpec, JobSpec, MetricSpec, ModelSpec
    from hpo.tuner import target_reached

    spec = JobSpec(
        model=ModelSpec(name_or_path="m"),
        data=DataSpec(train="d.csv"),
        metric=MetricSpec(name="eval_accuracy", goal="maximize", target=0.8),
    )
    below = TrialRecord("a", {}, [{"eval_accuracy": 0.7}], None, None)
    above = TrialRecord("b", {}, [{"eval_accuracy": 0.6}, {"eval_accuracy": 0.85}], None, None)
    assert not target_reached(spec, [below])
    assert target_reached(spec, [below, above])
    spec.metric = MetricSpec(name="eval_loss", goal="minimize", target=0.3)
    assert target_reached(spec, [TrialRecord("c", {}, [{"eval_loss": 0.2}], None, None)])
    spec.metric = MetricSpec(name="eval_accuracy", goal="maximize")
    assert not target_reached(spec, [above])  # no target: never


def test_held_out_scores_are_scores_not_timings(tmp_path):
    """best.yaml's test_metrics keep the search's metric names (eval_accuracy is the metric
    `eval_accuracy` on the test split) and leave out how fast the evaluation ran."""
    import yaml

    from hpo.results import record_test_metrics

    (tmp_path / "best.yaml").write_text(yaml.safe_dump({"metric": "eval_accuracy"}))
    record_test_metrics(
        str(tmp_path),
        {
            "eval_accuracy": 0.8,
            "eval_loss": 0.4,
            "eval_runtime": 1.2,
            "eval_samples_per_second": 90.0,
            "eval_model_preparation_time": 0.01,
            "epoch": 1.0,
        },
    )
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["test_metrics"] == {"eval_accuracy": 0.8, "eval_loss": 0.4}


def test_the_closing_summary_says_when_the_models_trial_diverged_after_it(capsys):
    """A trial whose first evaluation was the search's best, then blew up: the model is that
    evaluation's, and the user should not have to find out from trials.csv."""
    from hpo.cli import _print_outcome
    from hpo.results import Best
    from hpo.tuner import SearchOutcome

    best = Best("c113c95d", "eval_accuracy", "maximize", 0.525, 1, {}, {}, "/ckpt")
    for outcome, said in (
        ("diverged", "; the trial diverged after it: the model is from this evaluation"),
        ("completed", ""),
    ):
        code = _print_outcome(SearchOutcome("runs/r", best, {outcome: 1}, best_outcome=outcome))
        assert code == 0
        err = capsys.readouterr().err
        assert f"best: eval_accuracy = 0.525 (trial c113c95d, evaluation 1){said}\n" in err, err


def test_a_trial_that_reported_nothing_is_placed_on_its_last_failures_node():
    two_failures = (
        "ray::ImplicitFunc.train() (pid=16587, ip=10.0.0.4, actor_id=1b68, repr=train_trial)\n"
        "ValueError: x\n"
        "ray::ImplicitFunc.train() (pid=2201, ip=10.0.0.7, actor_id=7e3c, repr=train_trial)\n"
        "ValueError: x\n"
    )
    assert failed_on(two_failures) == "10.0.0.7"
    assert failed_on("ray.exceptions.ActorDiedError: the actor died") == ""
    assert failed_on(None) == ""


def test_the_best_configuration_is_also_given_as_the_trial_ran_it():
    """A variant (`learning_rate@lora`) is TrainingArguments' `learning_rate`; the spec's
    fixed values are part of the recipe, and a sampled one overrides its fixed value."""
    from hpo.results import as_run
    from hpo.spec import DataSpec, JobSpec, ModelSpec
    from hpo.trial.run import TRAINING_DEFAULTS

    spec = JobSpec(
        model=ModelSpec("m", config={"num_hidden_layers": 4}),
        data=DataSpec(train="t.csv"),
        training={"num_train_epochs": 3, "weight_decay": 0.0},
    )
    sampled = {"learning_rate@lora": 1e-3, "weight_decay": 0.01, "strategy": "lora", "lora.r": 8}
    sampled["model.hidden_dropout_prob"] = 0.1
    ran = as_run(sampled, spec)
    assert ran["training_arguments"] == {
        **TRAINING_DEFAULTS,
        "num_train_epochs": 3,
        "weight_decay": 0.01,
        "learning_rate": 1e-3,
        "seed": 0,  # the spec's; the trial passes it as data_seed too
        "data_seed": 0,
    }
    assert ran["model_config"] == {"num_hidden_layers": 4, "hidden_dropout_prob": 0.1}
    assert ran["recipe"] == {"strategy": "lora", "lora.r": 8}


def test_trial_endings_pickled_by_an_older_hpo_resume():
    """`hpo resume` unpickles the callbacks the search started with: one from before the
    timings lacks them, and a timing from the killed process's clock means nothing here."""
    import pickle

    from hpo.endings import TrialEndings

    old = TrialEndings()
    del old.__dict__["_since"], old.__dict__["failed_after"]
    restored = pickle.loads(pickle.dumps(old))
    trial = SimpleNamespace(trial_id="t", run_metadata=SimpleNamespace(last_result={}))
    restored.on_trial_start(0, [], trial)
    restored.on_trial_error(0, [], trial)
    assert set(restored.failed_after) == {"t"} and restored.ended == {"t"}
    timed = TrialEndings()
    timed.on_trial_start(0, [], trial)
    assert pickle.loads(pickle.dumps(timed))._since == {}


def test_an_evaluation_without_a_training_loss_leaves_a_gap_not_nan():
    from hpo.results import TrialRecord, evaluation_rows

    history = [
        {"training_iteration": 1, "eval_accuracy": 0.6, "train_loss": float("nan")},
        {"training_iteration": 2, "eval_accuracy": 0.7, "train_loss": 0.5, "eval_loss": 0.6},
    ]
    rows = evaluation_rows([TrialRecord("t", {}, history, None, None)], spec_of("eval_accuracy"))  # type: ignore[arg-type]
    assert [r["train_loss"] for r in rows] == ["", 0.5]
    assert [r["eval_loss"] for r in rows] == ["", 0.6]
