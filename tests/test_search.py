"""The searcher tells Optuna the truth: scheduler-stopped trials are PRUNED with their
intermediate values, finished ones COMPLETE with their best evaluation, failures FAIL."""

from __future__ import annotations

import optuna
import pytest
from conftest import ROOT

from hpo.search import OptunaSearcher, make_sampler
from hpo.space import compile_space
from hpo.spec import ParamSpec
from hpo.trial.reporter import FINAL, OUTCOME

State = optuna.trial.TrialState


def searcher(points=None, objectives=(("eval_accuracy", "maximize"),), rung_model=False):
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
        space,
        list(objectives),
        make_sampler("tpe", 0, 20, len(objectives), rung_model),
        points,
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


# -- the rung model (hpo.rung_model): TPE ranks trials at the highest rung enough reached ------
def _trial(x, curve, state=State.PRUNED, value=None):
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    return optuna.trial.create_trial(
        params={"x": x},
        distributions=dist,
        state=state,
        value=value,
        intermediate_values=curve,
    )


def _study(trials):
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    return study


def test_rung_model_ranks_every_trial_at_the_highest_rung_enough_reached():
    from hpo.rung_model import rung_view

    # Six trials stopped at rung 1, four paused at rung 3, one finished (poorly, at 0.5) after
    # scoring 0.55 at rung 3: rung 3 has five scores, enough to model (one parameter + 1 = 2);
    # the end has one.
    trials = [_trial(i / 10, {1: 0.1 * i}) for i in range(6)]
    trials += [_trial(0.6 + i / 20, {1: 0.7, 3: 0.6 + i / 20}) for i in range(4)]
    trials.append(_trial(0.9, {1: 0.6, 3: 0.55, 9: 0.5}, State.COMPLETE, 0.5))
    study = _study(trials)
    asked = study.ask()
    view, placeholder = rung_view(study, study.trials[-1])
    assert placeholder.state == State.RUNNING and placeholder.params == {}
    seen = {t.params["x"]: t for t in view.trials if t.params}
    assert asked.number not in {t.number for t in view.trials if t.params}
    # Every trial that reached rung 3 is scored there, the finished one too (0.55, not 0.5) ...
    for x in (0.6, 0.65, 0.7, 0.75):
        assert seen[x].state == State.COMPLETE and seen[x].value == pytest.approx(x)
    assert seen[0.9].state == State.COMPLETE and seen[0.9].value == pytest.approx(0.55)
    # ... and those stopped before it stay PRUNED with their curves (TPE ranks them below).
    assert seen[0.5].state == State.PRUNED and seen[0.5].intermediate_values == {1: 0.5}


def test_rung_model_is_the_study_itself_when_enough_trials_finished_or_none_stopped():
    from hpo.rung_model import rung_view

    # Two finished trials are enough (one parameter + 1); five stopped ones do not matter then.
    finished = [_trial(i / 10, {1: 0.5, 9: 0.6}, State.COMPLETE, 0.6 + i / 100) for i in range(2)]
    stopped = [_trial(0.5 + i / 10, {1: 0.1}) for i in range(5)]
    for trials in (finished + stopped, [_trial(0.1, {1: 0.2}, State.COMPLETE, 0.2)] * 5):
        study = _study(trials)
        study.ask()
        trial = study.trials[-1]
        assert rung_view(study, trial) == (study, trial)


def test_tpe_searcher_models_the_rung_and_saves_without_its_view():
    import pickle

    from hpo.rung_model import RungTPESampler

    s = searcher(rung_model=True)
    model = s.study.sampler.model  # under the hedge (hpo.hedge)
    assert isinstance(model, RungTPESampler)
    for i in range(12):  # stopped after one evaluation: the model's rung is the first
        run(s, f"t{i}", [0.5 + i / 100], final=False)
    assert s.suggest("t12") is not None  # TPE sampled through the view (no error, a config)
    assert model._views is not None
    restored = pickle.loads(pickle.dumps(s.get_state()))
    assert restored["study"].sampler.model._views is None


def test_spec_turns_the_rung_model_on():
    from hpo.config import load_spec
    from hpo.rung_model import RungTPESampler
    from hpo.search import make_searcher

    spec_path = ROOT / "search_spaces" / "quickstart.yaml"
    for setting, kind in (("false", optuna.samplers.TPESampler), ("true", RungTPESampler)):
        spec = load_spec(spec_path, [f"rung_model={setting}"])
        sampler = make_searcher(spec, compile_space(spec.parameters, [])).study.sampler
        assert type(sampler.model) is kind
