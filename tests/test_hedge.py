"""The searcher's hedge (hpo.hedge): TPE gives way to random draws while the trials that
went on past their first evaluation got worse, says so, and judges again as trials come."""

from __future__ import annotations

import os
import pickle
import signal
from pathlib import Path

import optuna
import pytest
from conftest import ROOT

from hpo.hedge import MisledHedge, misled_verdict
from hpo.search import OptunaSearcher, make_sampler
from hpo.space import compile_space
from hpo.spec import ParamSpec
from hpo.trial.reporter import FINAL

State = optuna.trial.TrialState
X = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}


def add_finished(study: optuna.Study, *curves: list[float]) -> None:
    for curve in curves:
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.5},
                distributions=X,
                value=curve[-1],
                intermediate_values=dict(enumerate(curve, start=1)),
            )
        )


def add_stopped(study: optuna.Study, *firsts: float) -> None:
    for first in firsts:
        study.add_trial(
            optuna.trial.create_trial(
                state=State.PRUNED,
                params={"x": 0.5},
                distributions=X,
                intermediate_values={1: first},
            )
        )


FALLING = (
    [0.80, 0.60, 0.50],
    [0.82, 0.70, 0.55],
    [0.79, 0.65, 0.45],
    [0.81, 0.50],  # paused or running at its second rung: it counts too
    [0.80, 0.62, 0.40],
)
RISING = tuple([v - 0.2, v - 0.1, v] for v in (0.80, 0.85, 0.79, 0.90, 0.82))


# -- the verdict --------------------------------------------------------------------------------
def test_trials_that_fall_after_their_first_evaluation_mislead_the_model():
    study = optuna.create_study(direction="maximize")
    add_finished(study, *FALLING)
    add_stopped(study, 0.78, 0.80, 0.81, 0.77)  # configurations score alike at first
    verdict = misled_verdict(study, min_trials=5, ratio=0.5)
    assert verdict.misled
    assert "the 5 trials that went on past it got worse by 0.31 (median)" in verdict.reason


def test_rising_curves_keep_the_model():
    study = optuna.create_study(direction="maximize")
    add_finished(study, *RISING)
    add_stopped(study, 0.5, 0.6)
    verdict = misled_verdict(study, min_trials=5, ratio=0.5)
    assert not verdict.misled and "improved by 0.2" in verdict.reason


def test_a_fall_within_how_far_apart_first_evaluations_lie_is_noise():
    study = optuna.create_study(direction="maximize")
    add_finished(study, *([v, v - 0.05] for v in (0.8, 0.7, 0.6, 0.5, 0.4)))  # fell by 0.05
    add_stopped(study, 0.2, 0.4, 0.6, 0.8)  # first evaluations 0.2 to 0.8 apart
    assert not misled_verdict(study, min_trials=5, ratio=0.5).misled


def test_a_loss_that_grows_is_a_fall():
    study = optuna.create_study(direction="minimize")
    add_finished(study, *([v, v + 0.2, v + 0.4] for v in (0.5, 0.45, 0.5, 0.4, 0.55)))
    assert misled_verdict(study, min_trials=5, ratio=0.5).misled


def test_too_few_finished_trials_or_several_objectives_are_not_judged():
    study = optuna.create_study(direction="maximize")
    add_finished(study, *FALLING[:4])
    add_stopped(study, 0.8, 0.8, 0.8)  # one evaluation: they tell nothing of the fall
    assert misled_verdict(study, min_trials=5, ratio=0.5) == (False, "")
    several = optuna.create_study(directions=["maximize", "minimize"])
    assert misled_verdict(several, min_trials=5, ratio=0.5) == (False, "")


# -- the hedge as Optuna's sampler --------------------------------------------------------------
class Counting(optuna.samplers.RandomSampler):
    """A sampler that counts the values it drew (stands for TPE, or for the random draws)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.drawn = 0

    def sample_independent(self, study, trial, param_name, param_distribution):
        self.drawn += 1
        return super().sample_independent(study, trial, param_name, param_distribution)


def hedge_study() -> tuple[optuna.Study, MisledHedge]:
    hedge = MisledHedge(Counting(0), seed=0)
    hedge.random = Counting(1)
    return optuna.create_study(direction="maximize", sampler=hedge), hedge


def draw(study: optuna.Study) -> None:
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, state=State.PRUNED)


def test_draws_from_the_model_until_misled_then_at_random_and_back():
    study, hedge = hedge_study()
    draw(study)
    assert (hedge.model.drawn, hedge.random.drawn) == (1, 0)
    add_finished(study, *FALLING)
    add_stopped(study, 0.8, 0.8, 0.79)
    draw(study)
    assert (hedge.model.drawn, hedge.random.drawn) == (1, 1)
    assert len(hedge.notes) == 1 and "new trials are drawn at random" in hedge.notes[0]
    add_finished(study, *RISING, *RISING)  # later trials rise: the model is trusted again
    draw(study)
    assert (hedge.model.drawn, hedge.random.drawn) == (2, 1)
    assert "new trials from TPE again" in hedge.notes[1]
    assert hedge.summary(study) == hedge.notes


def test_summary_judges_the_whole_study_when_the_hedge_never_acted():
    study, hedge = hedge_study()
    assert hedge.summary(study) == []  # too few trials to judge: nothing to say
    add_finished(study, *RISING)
    (line,) = hedge.summary(study)
    assert line.startswith("searcher: TPE throughout (from their first evaluation to their latest")
    late, hedge = hedge_study()
    add_finished(late, *FALLING)  # after the last trial was drawn
    (line,) = hedge.summary(late)
    assert line.endswith("early evaluations misled TPE, too late to act") and not hedge.notes


def test_the_verdict_and_its_notes_survive_a_resume():
    study, hedge = hedge_study()
    add_finished(study, *FALLING)
    draw(study)
    restored = pickle.loads(pickle.dumps(study))
    assert restored.sampler.verdict.misled and restored.sampler.notes == hedge.notes
    draw(restored)
    assert restored.sampler.random.drawn == 2 and len(restored.sampler.notes) == 1


# -- in hpo's searcher ------------------------------------------------------------------------
def searcher(**sampler_options) -> OptunaSearcher:
    problems: list[str] = []
    space = compile_space({"x": ParamSpec(min=0.0, max=1.0)}, problems)
    sampler = make_sampler("tpe", 0, 20, 1, **sampler_options)
    return OptunaSearcher(space, [("score", "maximize")], sampler)


def finish(s: OptunaSearcher, trial_id: str, curve: list[float]) -> None:
    s.suggest(trial_id)
    for i, value in enumerate(curve, start=1):
        s.on_trial_result(trial_id, {"score": value, "training_iteration": i})
    s.on_trial_complete(trial_id, {"score": curve[-1], "training_iteration": len(curve), FINAL: 1})


def test_the_searcher_reads_its_own_trials_curves_and_says_so():
    s = searcher()
    for i, curve in enumerate(FALLING):
        finish(s, f"t{i}", curve)
    assert s.notes() == []  # judged when the next trial is asked for
    hedge = s.study.sampler
    hedge.random = Counting(1)
    assert s.suggest("next") is not None
    assert hedge.verdict.misled and hedge.random.drawn == 1  # drawn at random
    assert s.notes() and "got worse by 0.31" in s.notes()[0]


def test_random_draws_do_not_repeat_tpes_start_up_trials():
    """TPE's start-up draws are seeded with the spec's seed; the hedge's must be another
    stream, or a hedge that acts early re-runs configurations already tried."""
    hedge = make_sampler("tpe", 7, 20, 1)
    tpe = optuna.create_study(sampler=hedge.model)
    fallback = optuna.create_study(sampler=hedge.random)
    drawn = [[st.ask().suggest_float("x", 0, 1) for _ in range(4)] for st in (tpe, fallback)]
    assert not set(drawn[0]) & set(drawn[1])


def test_a_paused_then_resumed_trial_counts_once():
    """Promotion ASHA: told PRUNED at its pause, recorded again when it ends (hpo.search)."""
    s = searcher()
    for i, curve in enumerate(FALLING):
        s.suggest(f"t{i}")
        s.on_pause(f"t{i}", {"score": curve[0], "training_iteration": 1})
        s.on_unpause(f"t{i}")
        for step, value in enumerate(curve[1:], start=2):
            s.on_trial_result(f"t{i}", {"score": value, "training_iteration": step})
        s.on_trial_complete(
            f"t{i}", {"score": curve[-1], "training_iteration": len(curve), FINAL: 1}
        )
    assert len(s.study.trials) == 10  # each trial twice: at its pause, and at its end
    verdict = misled_verdict(s.study, min_trials=5, ratio=0.5)
    assert "the 5 trials that went on past it got worse by 0.31" in verdict.reason


def test_too_few_trials_left_to_judge_keeps_the_verdict_without_a_note():
    study, hedge = hedge_study()
    add_finished(study, *FALLING[:4])
    running = study.ask()
    running.suggest_float("x", 0.0, 1.0)
    running.report(0.8, step=1)
    running.report(0.4, step=2)  # the fifth trial past its first evaluation
    draw(study)
    assert hedge.verdict.misled and len(hedge.notes) == 1
    study.tell(running, state=State.FAIL)  # it fails: four left, too few to judge
    draw(study)
    draw(study)
    assert hedge.verdict.misled and len(hedge.notes) == 1 and hedge.random.drawn == 3


def test_tied_first_evaluations_are_judged_against_where_trials_ended():
    """Every trial at the majority-class accuracy after one evaluation: a spread of 0, against
    which any fall would count; the spread of the latest evaluations stands in."""
    study = optuna.create_study(direction="maximize")
    add_finished(study, *([0.5, 0.5 - 0.01, end] for end in (0.49, 0.6, 0.7, 0.55, 0.45)))
    add_stopped(study, 0.5, 0.5, 0.5, float("nan"))  # a NaN evaluation counts for nothing
    verdict = misled_verdict(study, min_trials=5, ratio=0.5)
    assert not verdict.misled and "between latest evaluations" in verdict.reason
    everyone_alike = optuna.create_study(direction="maximize")
    add_finished(everyone_alike, *([0.5, 0.4] for _ in range(5)))
    assert not misled_verdict(everyone_alike, min_trials=5, ratio=0.5).misled  # no scale


def test_hedge_off_one_objective_or_several_gives_tpe_itself():
    tpe = optuna.samplers.TPESampler
    assert type(make_sampler("tpe", 0, 20, 1, hedge=False)) is tpe
    assert type(make_sampler("tpe", 0, 20, 2)) is tpe  # several objectives: no curves to read
    assert type(make_sampler("tpe", 0, 20, 1).model) is tpe
    assert type(make_sampler("random", 0, 20, 1)) is optuna.samplers.RandomSampler


def test_spec_turns_the_hedge_off():
    from hpo.config import load_spec
    from hpo.search import make_searcher

    spec_path = ROOT / "search_spaces" / "quickstart.yaml"
    for setting, hedged in (("true", True), ("false", False)):
        spec = load_spec(spec_path, [f"hedge={setting}"])
        sampler = make_searcher(spec, compile_space(spec.parameters, [])).study.sampler
        assert isinstance(sampler, MisledHedge) is hedged


def test_notes_reach_the_live_table_and_the_notes_file(tmp_path):
    from rich.console import Console

    from hpo.progress import TrialTable
    from hpo.schedulers.notes import NOTES_FILE, SearchNotes
    from hpo.spec import JobSpec, MetricSpec

    s = searcher()
    spec = JobSpec(metric=MetricSpec(name="score", goal="maximize"))
    table = TrialTable(spec, console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    notes = SearchNotes(None, str(tmp_path), [table], s)
    for i, curve in enumerate(FALLING):
        finish(s, f"t{i}", curve)
    s.suggest("next")
    notes.on_step_end(iteration=1, trials=[])
    assert table.notes == s.notes() and table.table().caption == s.notes()[-1]
    notes.on_experiment_end(trials=[])
    assert "new trials are drawn at random" in Path(tmp_path, NOTES_FILE).read_text()


def test_notes_come_in_the_order_they_were_made():
    from hpo.schedulers.notes import SearchNotes

    class Source:
        def __init__(self) -> None:
            self.said: list[str] = []

        def notes(self) -> list[str]:
            return self.said

    scheduler, searcher = Source(), Source()
    scheduler.notes = scheduler.said  # type: ignore[assignment]  # a scheduler's is a list
    table = type("Table", (), {"notes": []})()
    notes = SearchNotes(scheduler, "unused", [table], searcher)
    for source, line in ((scheduler, "guard 1"), (searcher, "hedge 1"), (scheduler, "guard 2")):
        source.said.append(line)
        notes.on_step_end(iteration=0, trials=[])
    assert table.notes == ["guard 1", "hedge 1", "guard 2"]  # the caption shows the latest


def test_a_search_saved_with_the_old_notes_callback_resumes(tmp_path):
    """Tune pickles callbacks by class name: `SchedulerNotes` (its name until the seventeenth
    session) must still load, without the attributes it did not have."""
    from hpo.schedulers import notes as notes_module

    old = notes_module.SearchNotes.__new__(notes_module.SearchNotes)
    old.__dict__.update({"scheduler": None, "run_dir": str(tmp_path)})  # all it held then
    saved = pickle.dumps(old, protocol=0).replace(b"SearchNotes", b"SchedulerNotes")
    assert b"SchedulerNotes" in saved
    restored = pickle.loads(saved)
    restored.on_step_end(iteration=1, trials=[])
    restored.on_experiment_end(trials=[])
    assert restored.searcher is None and restored.shown == []


# -- through real Ray Tune ----------------------------------------------------------------------
def make_falling_trial():
    """Scores that fall with training, alike across configurations at first (Ray ships it by
    value: tests/ is not a package)."""

    def falling(config: dict) -> None:
        from ray import tune

        for it in range(1, 4):
            score = 0.8 + config["x"] / 100 - 0.1 * it
            tune.report({"score": score, FINAL: int(it == 3)})

    return falling


@pytest.mark.e2e
def test_real_search_switches_to_random_draws_and_writes_why(local_ray, tmp_path):
    from ray import tune

    from hpo.schedulers.notes import NOTES_FILE, SearchNotes

    s = searcher()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tuner = tune.Tuner(
        make_falling_trial(),
        tune_config=tune.TuneConfig(search_alg=s, num_samples=6, max_concurrent_trials=1),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "ray"),
            verbose=0,
            callbacks=[SearchNotes(None, str(run_dir), [], s)],
        ),
    )
    ctrl_c = signal.getsignal(signal.SIGINT)
    try:
        grid = tuner.fit()
    finally:
        signal.signal(signal.SIGINT, ctrl_c)  # Tune leaves its own handler installed
    assert len(grid) == 6 and not grid.errors
    complete = [t for t in s.study.trials if t.state == State.COMPLETE]
    assert len(complete) == 6
    assert s.study.sampler.verdict.misled
    written = (run_dir / NOTES_FILE).read_text()
    assert "the 5 trials that went on past it got worse by 0.2" in written
    assert "new trials are drawn at random" in written
