"""Multi-fidelity feedback, end to end: what Optuna learns from stopped and paused trials, and
paused trials resuming where they stopped - through real Ray Tune, and through a real search."""

from __future__ import annotations

import csv
import json
import os
import pickle
import tempfile
from pathlib import Path

import optuna
import pytest
from conftest import write_spec

from hpo.cli import main
from hpo.schedulers import GuardedASHA, PromotionASHA
from hpo.search import OptunaSearcher, make_sampler
from hpo.space import compile_space
from hpo.spec import ParamSpec
from hpo.trial.reporter import FINAL

State = optuna.trial.TrialState
MAX_T = 4


def searcher(max_concurrent: int = 0, points: list[float] | None = None) -> OptunaSearcher:
    problems: list[str] = []
    space = compile_space({"x": ParamSpec(min=0.0, max=1.0)}, problems)
    assert not problems
    known = [{"x": x} for x in points or []]
    s = OptunaSearcher(space, [("score", "maximize")], make_sampler("random", 0, 20, 1), known)
    if max_concurrent:
        s.set_max_concurrency(max_concurrent)
    return s


def result(value: float, iteration: int, final: bool = False) -> dict:
    return {"score": value, "training_iteration": iteration, FINAL: int(final)}


# -- the searcher alone -------------------------------------------------------------------------
def test_state_round_trip_keeps_live_trials_intermediate_values():
    s = searcher()
    s.suggest("live")
    s.on_trial_result("live", result(0.3, 1))
    s.on_trial_result("live", result(0.4, 2))
    restored = searcher()
    restored.set_state(pickle.loads(pickle.dumps(s.get_state())))
    restored.on_trial_result("live", result(0.5, 3))
    restored.on_trial_complete("live", result(0.5, 3))  # stopped by the scheduler after resume
    (trial,) = restored.study.trials
    assert trial.state == State.PRUNED
    assert trial.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5}


def test_paused_trial_is_pruned_at_once_and_recorded_again_when_it_completes():
    s = searcher()
    config = s.suggest("t")
    # Tune's order: the scheduler decides PAUSE (and calls on_pause with the result) before
    # Tune hands the same result to the searcher.
    s.on_pause("t", result(0.6, 1))
    s.on_trial_result("t", result(0.6, 1))
    (first,) = s.study.trials
    assert first.state == State.PRUNED and first.intermediate_values == {1: 0.6}
    s.on_unpause("t")
    for i, v in enumerate([0.7, 0.9, 0.8], start=2):
        s.on_trial_result("t", result(v, i, final=i == 4))
    s.on_trial_complete("t", result(0.8, 4, final=True))
    complete = [t for t in s.study.trials if t.state == State.COMPLETE]
    assert len(complete) == 1
    assert complete[0].value == pytest.approx(0.9)  # its best evaluation
    assert complete[0].params == config
    assert complete[0].intermediate_values == {1: 0.6, 2: 0.7, 3: 0.9, 4: 0.8}


def test_paused_trial_stopped_for_good_stays_a_single_pruned_trial():
    s = searcher()
    s.suggest("t")
    s.on_pause("t", result(0.6, 1))
    s.on_trial_result("t", result(0.6, 1))
    s.on_trial_complete("t")  # Tune's stop_trial on a PAUSED trial passes no result
    (trial,) = s.study.trials
    assert trial.state == State.PRUNED and trial.intermediate_values == {1: 0.6}


def test_paused_trials_free_their_concurrency_slot():
    s = searcher(max_concurrent=2)
    assert s.suggest("a") is not None and s.suggest("b") is not None
    assert s.suggest("c") is None  # two running
    s.on_pause("a", result(0.1, 1))
    assert s.suggest("c") is not None  # a is paused: its slot is free
    s.on_unpause("a")
    assert s.suggest("d") is None  # a resumed: three running would be too many


# -- through real Ray Tune (instant function trials) ------------------------------------------
def make_instant_trial():
    """A function trainable defined here, so Ray ships it by value (tests/ is not a package)."""

    def instant_trial(config: dict) -> None:
        """Reports `x + iteration/100` for iterations 1..MAX_T; resumes from its checkpoint."""
        from ray import tune

        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                state = Path(folder, "state.json")
                start = json.loads(state.read_text())["iteration"]
        for it in range(start + 1, MAX_T + 1):
            with tempfile.TemporaryDirectory() as folder:
                with open(os.path.join(folder, "state.json"), "w") as f:
                    json.dump({"iteration": it}, f)
                metrics = {"score": config["x"] + it / 100, "resumed_from": start}
                tune.report(
                    {**metrics, FINAL: int(it == MAX_T)},
                    checkpoint=tune.Checkpoint.from_directory(folder),
                )

    return instant_trial


def tune_run(s: OptunaSearcher, scheduler, samples: int, storage) -> list:
    from ray import tune

    tuner = tune.Tuner(
        make_instant_trial(),
        tune_config=tune.TuneConfig(
            search_alg=s,
            scheduler=scheduler,
            num_samples=samples,
            max_concurrent_trials=1,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(storage), verbose=0),
    )
    grid = tuner.fit()
    return [grid[i] for i in range(len(grid))]


@pytest.mark.e2e
def test_asha_stopped_trials_reach_optuna_as_pruned_with_their_values(local_ray, tmp_path):
    s = searcher(points=[0.5, 0.9, 0.1, 0.3])
    asha = GuardedASHA(
        max_t=MAX_T,
        grace_period=1,
        reduction_factor=2,
        metric="score",
        mode="max",
        time_attr="training_iteration",
        guard=False,
    )
    tune_run(s, asha, 4, tmp_path)
    by_x = {round(t.params["x"], 3): t for t in s.study.trials}
    # The first two are always promoted by Ray's ASHA; 0.1 is below the median at rung 1.
    assert by_x[0.9].state == State.COMPLETE
    assert by_x[0.9].value == pytest.approx(0.9 + MAX_T / 100)
    stopped = by_x[0.1]
    assert stopped.state == State.PRUNED
    assert stopped.intermediate_values == {1: pytest.approx(0.11)}


@pytest.mark.e2e
def test_promotion_pauses_then_resumes_from_the_checkpoint(local_ray, tmp_path):
    s = searcher(points=[0.5, 0.9, 0.1, 0.3])
    scheduler = PromotionASHA(
        metric="score", mode="max", max_t=MAX_T, grace_period=1, reduction_factor=2
    )
    results = tune_run(s, scheduler, 4, tmp_path)
    histories = {round(r.config["x"], 3): r.metrics_dataframe.to_dict("records") for r in results}
    # 0.5 waits at rung 1 until 0.3 arrives (top 2 of 4 at rung 1), then resumes at 2.
    assert [h["training_iteration"] for h in histories[0.5]] == [1, 2]
    assert [h["resumed_from"] for h in histories[0.5]] == [0, 1]
    # 0.9 waits at rung 2 and is promoted when 0.5 arrives there: it resumes at 3 and ends.
    assert [h["training_iteration"] for h in histories[0.9]] == [1, 2, 3, 4]
    assert [h["resumed_from"] for h in histories[0.9]] == [0, 0, 2, 2]
    assert scheduler.num_promoted_from_pause == 2
    assert all(r.error is None for r in results)
    states = sorted(t.state.name for t in s.study.trials)
    assert states.count("COMPLETE") == 1 and "FAIL" not in states
    # Every trial Optuna holds carries the evaluations it made before it was paused or ended
    # (a paused trial told pruned before its rung's value arrived would carry none).
    assert all(t.intermediate_values for t in s.study.trials)
    assert s.study.trials[0].intermediate_values == {1: pytest.approx(0.51)}  # 0.5 at its pause


@pytest.mark.e2e
def test_max_paused_stops_a_paused_trial_through_real_tune(local_ray, tmp_path):
    s = searcher(points=[0.5, 0.9, 0.1, 0.3])
    scheduler = PromotionASHA(
        metric="score", mode="max", max_t=MAX_T, grace_period=1, reduction_factor=2, max_paused=1
    )
    results = tune_run(s, scheduler, 4, tmp_path)
    histories = {round(r.config["x"], 3): r.metrics_dataframe.to_dict("records") for r in results}
    # 0.5 waits at rung 1; 0.9 passes it and pauses at rung 2: only one may wait, and 0.5 is
    # the one further from promotion. Tune stops it for good, from inside the scheduler.
    assert [h["training_iteration"] for h in histories[0.5]] == [1]
    assert scheduler.num_dropped >= 1 and all(r.error is None for r in results)
    pruned = [t for t in s.study.trials if round(t.params["x"], 3) == 0.5]
    assert len(pruned) == 1, "told once, with its value; not added again when stopped"
    assert pruned[0].state == State.PRUNED
    assert pruned[0].intermediate_values == {1: pytest.approx(0.51)}


# -- a real search: the HF Trainer resumes a promoted trial from its checkpoint -----------------
@pytest.mark.e2e
@pytest.mark.slow
def test_promoted_trial_continues_its_global_step(tmp_path, tiny_bert, sentiment_csv, local_ray):
    # trainable_params ranks the trials the same at every evaluation: `head` (fewest) first.
    spec = write_spec(
        tmp_path / "promotion.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, max_length: 32, labels: [fresh, rotten]}}
metric: {{name: trainable_params, goal: minimize}}
parameters:
  strategy: {{values: [head, full]}}
points_to_evaluate: [{{strategy: head}}, {{strategy: full}}]
training: {{num_train_epochs: 4, per_device_train_batch_size: 32}}
early_terminate: {{type: asha, promotion: true, min_iter: 1, eta: 2}}
run_cap: 2
max_concurrent: 1
tracking: {{wandb: {{mode: disabled}}}}
""",
    )
    code = main(["run", spec, "--name", "promo", "--storage", str(tmp_path / "runs"), "--quiet"])
    assert code == 0
    run = tmp_path / "runs" / "promo"
    with open(run / "trials.csv") as f:
        trials = {r["strategy"]: r for r in csv.DictReader(f)}
    with open(run / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))

    def steps(strategy: str) -> dict[int, int]:
        trial_id = trials[strategy]["trial_id"]
        return {
            int(r["training_iteration"]): int(float(r["global_step"]))
            for r in rows
            if r["trial_id"] == trial_id
        }

    # `full` ran one epoch and was paused for good; `head` paused at evaluation 1, was promoted
    # once `full` ranked below it, and resumed: its evaluation 2 continues from the checkpoint
    # (two epochs of steps), not from scratch (one epoch). Alone at rung 2 it paused again;
    # as no trial had been trained to the end, the search then trained it to the end (run_cap
    # 2 is below what a rung needs to promote one), again from its checkpoint.
    epoch = steps("full")[1]
    assert epoch > 0 and steps("full") == {1: epoch}
    head = steps("head")
    # Evaluation 1, logged before the pause, is still there (hpo.result_logs: Ray's logger
    # copied the logs back from storage at the resume, which under load lacked that row).
    assert head == {1: epoch, 2: 2 * epoch, 3: 3 * epoch, 4: 4 * epoch}
    assert trials["head"]["outcome"] == "completed"
    notes = (run / "scheduler_notes.txt").read_text()
    assert "2 paused trials resumed from their checkpoint" in notes
