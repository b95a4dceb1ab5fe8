"""The searcher tells Optuna the truth: scheduler-stopped trials are PRUNED with their
intermediate values, finished ones COMPLETE with their best evaluation, failures FAIL."""

from __future__ import annotations

import optuna
import pytest

from hpo.search import OptunaSearcher, make_sampler
from hpo.space import compile_space
from hpo.spec import ParamSpec
from hpo.trial.reporter import FINAL, OUTCOME

State = optuna.trial.TrialState


def searcher(points=None, objectives=(("eval_accuracy", "maximize"),)):
    problems: list[str] = []
    space = compile_space(
        {
            "learning_rate": ParamSpec(min=1e-5, max=1e-3, distribution="log_uniform_values"),
            "per_device_train_batch_size": ParamSpec(values=[16, 32]),
        },
        problems,
    )
    assert not problems
    return OptunaSearcher(
        space, list(objectives), make_sampler("tpe", 0, 20, len(objectives)), points
    )


def run(s, trial_id, values, final, **extra):
    config = s.suggest(trial_id)
    for i, v in enumerate(values, start=1):
        s.on_trial_result(trial_id, {"eval_accuracy": v, "training_iteration": i})
    last = {
        "eval_accuracy": values[-1],
        "training_iteration": len(values),
        FINAL: int(final),
        **extra,
    }
    s.on_trial_complete(trial_id, last)
    return config


def test_stopped_trial_is_pruned_with_intermediate_values():
    s = searcher()
    run(s, "t1", [0.6, 0.65], final=False)
    (trial,) = s.study.trials
    assert trial.state == State.PRUNED
    assert trial.intermediate_values == {1: 0.6, 2: 0.65}


def test_finished_trial_completes_with_its_best_evaluation():
    s = searcher()
    run(s, "t1", [0.6, 0.8, 0.7], final=True)
    (trial,) = s.study.trials
    assert trial.state == State.COMPLETE
    assert trial.value == pytest.approx(0.8)


def test_diverged_and_errored_trials_fail():
    s = searcher()
    run(s, "t1", [0.6], final=True, **{OUTCOME: "diverged"})
    s.suggest("t2")
    s.on_trial_complete("t2", None, error=True)
    assert [t.state for t in s.study.trials] == [State.FAIL, State.FAIL]


def test_points_to_evaluate_come_first():
    points = [
        {"learning_rate": 2e-5, "per_device_train_batch_size": 16},
        {"learning_rate": 5e-5, "per_device_train_batch_size": 32},
    ]
    s = searcher(points)
    first, second = s.suggest("a"), s.suggest("b")
    assert first == pytest.approx(points[0]) and second == pytest.approx(points[1])


def test_state_round_trip_keeps_the_study(tmp_path):
    s = searcher()
    for i in range(4):
        run(s, f"t{i}", [0.5 + i / 10], final=True)
    s.save(str(tmp_path / "state.pkl"))
    restored = searcher()
    restored.restore(str(tmp_path / "state.pkl"))
    assert len(restored.study.trials) == 4
    assert restored.study.best_value == pytest.approx(0.8)
    # The seeded sampler goes on where it was, not from scratch: same next suggestion.
    assert restored.suggest("next") == s.suggest("next")


def test_multi_objective_completes_with_all_values():
    s = searcher(objectives=(("eval_accuracy", "maximize"), ("trainable_params", "minimize")))
    s.suggest("t1")
    s.on_trial_result(
        "t1", {"eval_accuracy": 0.7, "trainable_params": 100.0, "training_iteration": 1}
    )
    s.on_trial_complete("t1", {"eval_accuracy": 0.7, "trainable_params": 100.0, FINAL: 1})
    (trial,) = s.study.trials
    assert trial.values == [0.7, 100.0]
