"""warm_start: an earlier search's trials.csv and evaluations.csv as trials of a new space."""

from __future__ import annotations

import csv

import optuna
import pytest

from hpo.space import compile_space
from hpo.spec import DataSpec, JobSpec, MetricSpec, ModelSpec, ParamSpec
from hpo.warmstart import check_warm_start, earlier_trials

State = optuna.trial.TrialState


def spec() -> JobSpec:
    return JobSpec(
        model=ModelSpec(name_or_path="m"),
        data=DataSpec(train="d.csv"),
        metric=MetricSpec(name="eval_accuracy", goal="maximize"),
    )


def write_run(folder, rows: list[dict[str, str]]) -> str:
    names = sorted({k for r in rows for k in r})
    with open(folder / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    with open(folder / "evaluations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["trial_id", "training_iteration", "eval_accuracy"])
        writer.writeheader()
        writer.writerow({"trial_id": "t1", "training_iteration": "1", "eval_accuracy": "0.6"})
    return str(folder)


def space(**entries):
    problems: list[str] = []
    compiled = compile_space({k: ParamSpec(**v) for k, v in entries.items()}, problems)
    assert not problems
    return compiled


def row(trial_id: str, outcome: str, best: str, **params: str) -> dict[str, str]:
    """One trials.csv row: the trial's outcome, its best evaluation and its parameters."""
    return {"trial_id": trial_id, "outcome": outcome, "best_eval_accuracy": best, **params}


VARIANTS = {
    "strategy": {"values": ["full", "lora"]},
    "learning_rate@full": {"min": 1e-5, "max": 1e-4, "when": {"strategy": "full"}},
    "learning_rate@lora": {"min": 1e-4, "max": 1e-2, "when": {"strategy": "lora"}},
}


def test_trials_keep_their_state_value_and_evaluations(tmp_path):
    run = write_run(
        tmp_path,
        [
            row("t1", "stopped_early", "0.6", strategy="lora", **{"learning_rate@lora": "0.001"}),
            row("t2", "completed", "0.8", strategy="full", **{"learning_rate@full": "3e-05"}),
            row("t3", "errored", "", strategy="full", **{"learning_rate@full": "3e-05"}),
        ],
    )
    pruned, done = earlier_trials(space(**VARIANTS), spec(), run).trials
    assert pruned.state == State.PRUNED and pruned.intermediate_values == {1: 0.6}
    assert pruned.params == {"strategy": "lora", "learning_rate@lora": 0.001}
    assert done.state == State.COMPLETE and done.value == pytest.approx(0.8)


def test_an_earlier_search_without_variants_seeds_one_with_them(tmp_path):
    run = write_run(
        tmp_path,
        [
            row("t1", "completed", "0.7", strategy="lora", learning_rate="0.001"),
            row("t2", "completed", "0.8", strategy="full", learning_rate="3e-05"),
            # outside full's new range
            row("t3", "completed", "0.5", strategy="full", learning_rate="0.001"),
        ],
    )
    lora, full = earlier_trials(space(**VARIANTS), spec(), run).trials
    assert lora.params == {"strategy": "lora", "learning_rate@lora": 0.001}
    assert full.params == {"strategy": "full", "learning_rate@full": 3e-05}
    # ... and the reverse: variants then, one learning rate now.
    shared = space(strategy=VARIANTS["strategy"], learning_rate={"min": 1e-5, "max": 1e-2})
    run2 = tmp_path / "with-variants"
    run2.mkdir()
    write_run(
        run2,
        [row("t1", "completed", "0.7", strategy="lora", **{"learning_rate@lora": "0.002"})],
    )
    (trial,) = earlier_trials(shared, spec(), str(run2)).trials
    assert trial.params == {"strategy": "lora", "learning_rate": 0.002}


def test_several_objectives_are_seeded_at_the_best_evaluation_of_the_first(tmp_path):
    """Each objective as the search that ran the trial told its sampler: at the evaluation
    best on the first objective. Stopped trials carry no curve (Optuna prunes one objective)."""
    with open(tmp_path / "trials.csv", "w") as f:
        f.write("trial_id,outcome,learning_rate\nt1,completed,0.001\nt2,stopped_early,0.002\n")
    with open(tmp_path / "evaluations.csv", "w") as f:
        f.write(
            "trial_id,training_iteration,eval_accuracy,trainable_params\n"
            "t1,1,0.7,500\nt1,2,0.9,500\nt1,3,0.8,500\nt2,1,0.6,900\n"
        )
    two = spec()
    two.metric = [
        MetricSpec(name="eval_accuracy", goal="maximize"),
        MetricSpec(name="trainable_params", goal="minimize"),
    ]
    seeded = earlier_trials(space(learning_rate={"min": 1e-4, "max": 1e-2}), two, str(tmp_path))
    done, pruned = seeded.trials
    assert done.state == State.COMPLETE and done.values == [0.9, 500.0]
    assert pruned.state == State.PRUNED and pruned.intermediate_values == {}
    assert seeded.earlier == 2
    assert check_warm_start(str(tmp_path), ["eval_accuracy", "trainable_params"]) == []


def test_an_earlier_run_without_this_searchs_metric_is_refused(tmp_path):
    write_run(tmp_path, [row("t1", "completed", "0.8", learning_rate="0.001")])
    (problem,) = check_warm_start(str(tmp_path), ["eval_f1"])
    assert problem.startswith(f"warm_start: `{tmp_path}` did not record eval_f1")


def test_an_earlier_run_without_evaluations_seeds_from_its_trials_table(tmp_path):
    """A run whose evaluations.csv is missing or empty still has each trial's best value of
    its first metric in trials.csv: enough for a one-metric search, not for two."""
    write_run(tmp_path, [row("t1", "completed", "0.8", learning_rate="0.001")])
    (tmp_path / "evaluations.csv").write_text("")
    assert check_warm_start(str(tmp_path), ["eval_accuracy"]) == []
    (trial,) = earlier_trials(
        space(learning_rate={"min": 1e-4, "max": 1e-2}), spec(), str(tmp_path)
    ).trials
    assert trial.value == pytest.approx(0.8)
    (problem,) = check_warm_start(str(tmp_path), ["eval_accuracy", "trainable_params"])
    assert "did not record eval_accuracy, trainable_params (it has no evaluations" in problem


def test_a_plain_search_seeds_a_strategy_search_as_full_fine_tuning(tmp_path):
    """The earlier search sampled no strategy (hpo's default: full) and fixed weight decay in
    `training`: its trials are the new space's full fine-tuning at that weight decay, said."""
    run = write_run(
        tmp_path,
        [
            row("t1", "completed", "0.8", learning_rate="3e-05"),
            row("t2", "completed", "0.7", learning_rate="0.001"),  # outside full's new range
        ],
    )
    earlier = "model: {name_or_path: m}\ndata: {train: d.csv}\ntraining: {weight_decay: 0.01}\n"
    (tmp_path / "spec.yaml").write_text(earlier)
    new = space(**VARIANTS, weight_decay={"values": [0.0, 0.01]})
    seeded = earlier_trials(new, spec(), run)
    (trial,) = seeded.trials
    assert trial.params == {"strategy": "full", "learning_rate@full": 3e-05, "weight_decay": 0.01}
    assert seeded.fixed == {"strategy": "full", "weight_decay": 0.01}
    assert seeded.summary() == (
        "warm_start: 1 of 2 earlier trials seed the sampler (left out: t2 ran "
        "learning_rate@full=0.001, outside this space); strategy=full, weight_decay=0.01: "
        "the one value that search's trials ran with"
    )
    (tmp_path / "spec.yaml").write_text("training: [damaged\n")  # a broken record: defaults
    assert earlier_trials(new, spec(), run).fixed == {"strategy": "full"}
    # A parameter the earlier search had, empty in a trial, stays inactive there: not filled.
    lora_only = space(**VARIANTS, **{"lora.r": {"values": [4, 8], "when": {"strategy": "lora"}}})
    write_run(tmp_path, [row("t1", "completed", "0.8", strategy="lora", **{"lora.r": ""})])
    (trial,) = earlier_trials(lora_only, spec(), run).trials
    assert trial.params == {"strategy": "lora"}


def test_the_summary_says_why_each_earlier_trial_was_left_out(tmp_path):
    run = write_run(
        tmp_path,
        [
            row("t1", "completed", "0.8", learning_rate="0.001"),
            row("t2", "errored", "", learning_rate="0.002"),
            row("t3", "unfinished", "", learning_rate="0.003"),
            row("t4", "completed", "", learning_rate="0.004"),  # no score anywhere
        ],
    )
    seeded = earlier_trials(space(learning_rate={"min": 1e-4, "max": 1e-2}), spec(), run)
    assert [t.user_attrs["warm_start_trial"] for t in seeded.trials] == ["t1"]
    assert seeded.left_out == {"t2": "errored", "t3": "unfinished", "t4": "has no score"}
    assert seeded.summary() == (
        "warm_start: 1 of 4 earlier trials seed the sampler (left out: t2 errored; t3 "
        "unfinished; t4 has no score)"
    )
