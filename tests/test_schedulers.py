"""The schedulers: the registry, the rung guard, and promotion-type ASHA, driven through the
calls Ray Tune makes (lightweight trials, a controller stub; test_mf_feedback runs them in Ray)."""

from __future__ import annotations

import io
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from ray.tune.schedulers import (
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    TrialScheduler,
)

from hpo.schedulers import (
    GuardedASHA,
    PromotionASHA,
    RungGuard,
    make_scheduler,
    milestones,
    ranks,
    scheduler_caveats,
    spearman,
)
from hpo.spec import (
    DEFAULT_MAX_PAUSED,
    DataSpec,
    EarlyTerminateSpec,
    JobSpec,
    MetricSpec,
    ModelSpec,
)
from hpo.state import SchedulerState

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP


@dataclass(eq=False)
class FakeTrial:
    trial_id: str
    status: str = "RUNNING"

    def set_status(self, status: str) -> None:
        self.status = status


@dataclass
class FakeSearcher:
    paused: list[str] = field(default_factory=list)
    pause_results: list[Any] = field(default_factory=list)
    unpaused: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)

    def on_pause(self, trial_id: str, result: dict | None = None) -> None:
        self.paused.append(trial_id)
        self.pause_results.append(result)

    def on_unpause(self, trial_id: str) -> None:
        self.unpaused.append(trial_id)

    def on_trial_complete(self, trial_id: str, result: Any = None, error: bool = False) -> None:
        self.completed.append(trial_id)


class FakeSearchAlg:
    def __init__(self) -> None:
        self.searcher = FakeSearcher()
        self.finished = False

    def is_finished(self) -> bool:
        return self.finished


class FakeController:
    """What Tune lets a scheduler see: trials, the search algorithm, stop_trial."""

    def __init__(self, scheduler: Any) -> None:
        self.trials: list[FakeTrial] = []
        self.search_alg = FakeSearchAlg()
        self.scheduler = scheduler

    def get_trials(self) -> list[FakeTrial]:
        return self.trials

    def add(self, scheduler: Any, trial_id: str) -> FakeTrial:
        trial = FakeTrial(trial_id)
        self.trials.append(trial)
        scheduler.on_trial_add(self, trial)
        return trial

    def add_pending(self, scheduler: Any, trial_id: str) -> FakeTrial:
        """As Tune re-adds an unfinished trial on resume: PENDING, and the scheduler may
        change that in `on_trial_add`."""
        trial = FakeTrial(trial_id, status="PENDING")
        self.trials.append(trial)
        scheduler.on_trial_add(self, trial)
        return trial

    def add_finished(self, scheduler: Any, trial_id: str) -> FakeTrial:
        """As Tune re-adds a finished trial on resume: TERMINATED."""
        trial = FakeTrial(trial_id, status="TERMINATED")
        self.trials.append(trial)
        scheduler.on_trial_add(self, trial)
        return trial

    def stop_trial(self, trial: FakeTrial) -> None:
        self.scheduler.on_trial_remove(self, trial)
        self.search_alg.searcher.on_trial_complete(trial.trial_id)
        trial.status = "TERMINATED"


def report(scheduler: Any, ctrl: FakeController, trial: FakeTrial, t: int, value: float) -> str:
    action = scheduler.on_trial_result(ctrl, trial, {"training_iteration": t, "acc": value})
    if action == PAUSE:
        trial.status = "PAUSED"
    elif action == STOP:
        scheduler.on_trial_complete(ctrl, trial, {"training_iteration": t, "acc": value})
        trial.status = "TERMINATED"
    return action


# -- rank correlation -----------------------------------------------------------------------------
def test_ranks_share_ties():
    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = (0, 2, -1, -1): 1 - 6 * 6 / (4 * 15) = 0.4
    assert spearman([1, 2, 3, 4], [1, 4, 2, 3]) == pytest.approx(0.4)
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # no ranking to compare
    assert spearman([1], [1]) is None


def test_milestones_are_the_rungs_below_a_full_trial():
    assert milestones(1, 27, 3) == [1, 3, 9]
    assert milestones(2, 8, 2) == [2, 4]


# -- the guard ------------------------------------------------------------------------------------
def test_guard_distrusts_a_rung_whose_ranking_reverses_and_says_so():
    guard = RungGuard([1, 3, 9], min_pairs=4, threshold=0.3)
    for i in range(4):
        guard.observe(f"t{i}", 1, float(i))  # rung 1 ranks t3 best ...
    for i in range(3):
        guard.observe(f"t{i}", 3, float(-i))  # ... rung 3 ranks it worst
    assert guard.trusted(1) and not guard.notes  # three pairs: too few to judge
    guard.observe("t3", 3, -3.0)
    assert not guard.trusted(1)
    assert guard.grace_period() == 3
    assert len(guard.notes) == 1 and "evaluation 1" in guard.notes[0]
    assert "-1.00" in guard.notes[0] and "grace period now 3" in guard.notes[0]


def test_guard_keeps_a_rung_that_predicts_the_next():
    guard = RungGuard([1, 3, 9], min_pairs=4, threshold=0.3)
    for i in range(6):
        guard.observe(f"t{i}", 1, float(i))
        guard.observe(f"t{i}", 3, float(i) + 0.5)
    assert guard.trusted(1) and guard.grace_period() == 1 and not guard.notes
    assert guard.summary() == [
        "evaluations 1->3: rank correlation +1.00 over 6 trials (stopping there)"
    ]


def test_guard_off_never_distrusts():
    guard = RungGuard([1, 3], enabled=False, min_pairs=3)
    for i in range(5):
        guard.observe(f"t{i}", 1, float(i))
        guard.observe(f"t{i}", 3, float(-i))
    assert guard.trusted(1) and not guard.notes


# -- stop-type ASHA with the guard --------------------------------------------------------------
def asha(guard: bool) -> GuardedASHA:
    return GuardedASHA(
        max_t=9,
        grace_period=1,
        reduction_factor=3,
        metric="acc",
        mode="max",
        guard=guard,
        guard_min_pairs=4,
    )


def misleading_history(scheduler: GuardedASHA, ctrl: FakeController) -> None:
    """Trials that rank in reverse between evaluations 1 and 3 (each passes rung 1's cutoff,
    being better there than all before it)."""
    for i in range(5):
        trial = ctrl.add(scheduler, f"t{i}")
        for t, value in ((1, 0.1 * (i + 1)), (2, 0.5), (3, 1.0 - 0.1 * i)):
            action = report(scheduler, ctrl, trial, t, value)
        if action != STOP:
            scheduler.on_trial_complete(ctrl, trial, {"training_iteration": 3, "acc": value})


@pytest.mark.parametrize("guard", [True, False])
def test_guarded_asha_stops_nothing_at_a_misleading_rung(guard):
    scheduler = asha(guard)
    ctrl = FakeController(scheduler)
    misleading_history(scheduler, ctrl)
    weak = ctrl.add(scheduler, "weak")
    action = report(scheduler, ctrl, weak, 1, 0.01)  # worst ever at rung 1
    if guard:
        assert action == CONTINUE and scheduler.vetoed == 1
        assert scheduler.notes and "rank correlation -1.00" in scheduler.notes[0]
        assert "evaluations 1->3: rank correlation -1.00" in scheduler.debug_string()
    else:
        assert action == STOP and not scheduler.notes


def five_trials_ranked_alike_at_every_rung(scheduler, ctrl):
    for i in range(5):
        trial = ctrl.add(scheduler, f"t{i}")
        for t in (1, 2, 3):
            report(scheduler, ctrl, trial, t, 0.1 * (i + 1) + 0.01 * t)


def test_guarded_asha_still_stops_when_early_ranks_hold():
    scheduler = asha(guard=True)
    ctrl = FakeController(scheduler)
    five_trials_ranked_alike_at_every_rung(scheduler, ctrl)
    weak = ctrl.add(scheduler, "weak")
    assert report(scheduler, ctrl, weak, 1, 0.01) == STOP
    assert not scheduler.notes


def test_a_tie_at_the_cutoff_goes_on_only_when_nothing_scored_better():
    # Classification: most early trials sit at the majority-class accuracy (0.51). Ray's ASHA
    # goes on with a score equal to the cutoff, and the cutoff is that value once two thirds of
    # a rung hold it: every such trial would go on.
    scheduler = asha(guard=False)
    ctrl = FakeController(scheduler)
    for name in ("d1", "d2", "d3"):
        assert report(scheduler, ctrl, ctrl.add(scheduler, name), 1, 0.51) == CONTINUE  # no better
    assert report(scheduler, ctrl, ctrl.add(scheduler, "good"), 1, 0.75) == CONTINUE
    dead = ctrl.add(scheduler, "d4")
    ray_asha = asha(guard=False)
    ray_ctrl = FakeController(ray_asha)
    for name, value in (("d1", 0.51), ("d2", 0.51), ("d3", 0.51), ("good", 0.75)):
        AsyncHyperBandScheduler.on_trial_result(
            ray_asha,
            ray_ctrl,
            ray_ctrl.add(ray_asha, name),
            {"training_iteration": 1, "acc": value},
        )
    ray_decision = AsyncHyperBandScheduler.on_trial_result(
        ray_asha, ray_ctrl, ray_ctrl.add(ray_asha, "d4"), {"training_iteration": 1, "acc": 0.51}
    )
    assert ray_decision == CONTINUE, "Ray's own ASHA lets the tie go on"
    assert report(scheduler, ctrl, dead, 1, 0.51) == STOP
    assert scheduler.tie_stops == 1
    from hpo.schedulers.notes import scheduler_lines

    assert any("1 trials tied at a rung's cutoff" in line for line in scheduler_lines(scheduler))


def test_promotion_does_not_promote_a_tie_below_a_better_trial():
    scheduler = promotion(max_concurrent=None)
    ctrl = FakeController(scheduler)
    good = ctrl.add(scheduler, "good")
    assert report(scheduler, ctrl, good, 1, 0.75) == PAUSE  # alone at the rung
    dead = [ctrl.add(scheduler, f"d{i}") for i in range(5)]
    for trial in dead:
        report(scheduler, ctrl, trial, 1, 0.51)
    # Six at rung 1, top two: `good`, then a tie of five for the second place.
    assert ctrl.search_alg.searcher.unpaused == ["good"]
    assert all(t.status == "PAUSED" for t in dead)
    tied = promotion(max_concurrent=None)
    tied_ctrl = FakeController(tied)
    # Nothing better: the tie is all the rung knows, and all of it goes on (as in Ray's ASHA).
    actions = [report(tied, tied_ctrl, tied_ctrl.add(tied, f"t{i}"), 1, 0.51) for i in range(3)]
    assert actions == [PAUSE, PAUSE, CONTINUE]
    assert tied_ctrl.search_alg.searcher.unpaused == ["t0", "t1"]


# -- promotion-type ASHA ------------------------------------------------------------------------
def promotion(
    max_concurrent: int | None = 1, guard: bool = False, max_paused: int | None = None
) -> PromotionASHA:
    return PromotionASHA(
        metric="acc",
        mode="max",
        max_t=9,
        grace_period=1,
        reduction_factor=3,
        max_concurrent=max_concurrent,
        guard=guard,
        max_paused=max_paused,
    )


def test_promotion_pauses_the_first_trial_unlike_rays_asha():
    scheduler = promotion()
    ctrl = FakeController(scheduler)
    first = ctrl.add(scheduler, "a")
    assert report(scheduler, ctrl, first, 1, 0.9) == PAUSE
    assert ctrl.search_alg.searcher.paused == ["a"]
    # with the result it paused at: Tune gives the searcher that result only after this call
    assert ctrl.search_alg.searcher.pause_results == [{"training_iteration": 1, "acc": 0.9}]
    ray_asha = asha(guard=False)
    ray_ctrl = FakeController(ray_asha)
    assert report(ray_asha, ray_ctrl, ray_ctrl.add(ray_asha, "a"), 1, 0.9) == CONTINUE


def test_a_trial_tune_keeps_paused_unknown_to_the_scheduler_is_resumed():
    """Else the search never ends: Tune waits for a paused trial that nothing will promote
    (seen after `hpo resume` of a killed driver, whose two saved states disagreed)."""
    scheduler = promotion(max_concurrent=2)
    ctrl = FakeController(scheduler)
    known = ctrl.add(scheduler, "known")
    assert report(scheduler, ctrl, known, 1, 0.5) == PAUSE
    known.status = "PAUSED"
    stray = ctrl.add(scheduler, "stray")
    stray.status = "PAUSED"  # as Tune restored it; the scheduler believes it runs
    assert scheduler.choose_trial_to_run(ctrl) is stray
    stray.status = "RUNNING"
    assert scheduler.choose_trial_to_run(ctrl) is None  # the known one still waits its turn


def test_paused_trial_is_promoted_once_it_ranks_in_the_top_third():
    scheduler = promotion(max_concurrent=1)
    ctrl = FakeController(scheduler)
    a = ctrl.add(scheduler, "a")
    assert report(scheduler, ctrl, a, 1, 0.9) == PAUSE
    b = ctrl.add(scheduler, "b")
    assert report(scheduler, ctrl, b, 1, 0.2) == PAUSE  # 2 at rung 1: top floor(2/3) = none
    assert scheduler.choose_trial_to_run(ctrl) is None
    c = ctrl.add(scheduler, "c")
    # Third arrival: the top one of three (a) is promoted into the slot c frees.
    assert report(scheduler, ctrl, c, 1, 0.1) == PAUSE
    assert ctrl.search_alg.searcher.unpaused == ["a"]
    assert scheduler.choose_trial_to_run(ctrl) is a
    assert scheduler.choose_trial_to_run(ctrl) is a  # idempotent until it runs
    a.status = "RUNNING"
    assert report(scheduler, ctrl, a, 2, 0.92) == CONTINUE
    assert scheduler.choose_trial_to_run(ctrl) is None
    assert scheduler.num_promoted_from_pause == 1


def test_a_trial_in_the_top_third_on_arrival_goes_on_without_pausing():
    scheduler = promotion(max_concurrent=1)
    ctrl = FakeController(scheduler)
    for name, value in (("a", 0.1), ("b", 0.2)):
        report(scheduler, ctrl, ctrl.add(scheduler, name), 1, value)
    best = ctrl.add(scheduler, "best")
    assert report(scheduler, ctrl, best, 1, 0.9) == CONTINUE


def test_promotions_wait_for_a_free_slot():
    scheduler = promotion(max_concurrent=1)
    ctrl = FakeController(scheduler)
    a = ctrl.add(scheduler, "a")
    report(scheduler, ctrl, a, 1, 0.9)
    b = ctrl.add(scheduler, "b")
    report(scheduler, ctrl, b, 1, 0.2)
    busy = ctrl.add(scheduler, "busy")  # running, not yet at a rung
    c = ctrl.add(scheduler, "c")
    report(scheduler, ctrl, c, 1, 0.1)  # makes a promotable, but busy holds the only slot
    assert scheduler.choose_trial_to_run(ctrl) is None
    report(scheduler, ctrl, busy, 1, 0.05)  # busy pauses: its slot goes to a
    assert scheduler.choose_trial_to_run(ctrl) is a


def test_paused_trials_wait_again_after_a_resume():
    scheduler = promotion(max_concurrent=2)
    ctrl = FakeController(scheduler)
    a = ctrl.add(scheduler, "a")
    ctrl.add(scheduler, "b")
    assert report(scheduler, ctrl, a, 1, 0.9) == PAUSE  # b is still running at the interrupt
    # `hpo resume`: a fresh scheduler gets the saved state, then Tune re-adds every unfinished
    # trial as PENDING.
    saved = pickle.loads(pickle.dumps(SchedulerState(scheduler).get_state()))
    resumed = promotion(max_concurrent=2)
    SchedulerState(resumed).set_state(saved)
    ctrl = FakeController(resumed)
    a2, b2 = ctrl.add_pending(resumed, "a"), ctrl.add_pending(resumed, "b")
    assert a2.status == "PAUSED", "the paused trial is not restarted by the resume"
    assert b2.status == "PENDING"
    assert resumed.choose_trial_to_run(ctrl) is b2
    b2.status = "RUNNING"
    assert report(resumed, ctrl, b2, 1, 0.2) == PAUSE
    c = ctrl.add(resumed, "c")
    assert report(resumed, ctrl, c, 1, 0.1) == PAUSE  # the third arrival promotes a
    assert resumed.choose_trial_to_run(ctrl) is a2
    assert ctrl.search_alg.searcher.unpaused == ["a"]


def test_after_a_resume_finished_trials_hold_no_slot():
    scheduler = promotion(max_concurrent=2)
    ctrl = FakeController(scheduler)
    a = ctrl.add(scheduler, "a")
    assert report(scheduler, ctrl, a, 1, 0.9) == PAUSE
    c = ctrl.add(scheduler, "c")
    assert report(scheduler, ctrl, c, 1, 0.3) == PAUSE
    for name in ("done1", "done2"):
        scheduler.on_trial_complete(ctrl, ctrl.add(scheduler, name), {})
    saved = pickle.loads(pickle.dumps(SchedulerState(scheduler).get_state()))

    resumed = promotion(max_concurrent=2)
    SchedulerState(resumed).set_state(saved)
    ctrl = FakeController(resumed)
    for name in ("done1", "done2"):  # Tune re-adds the finished trials too
        assert ctrl.add_finished(resumed, name).status == "TERMINATED"
    a2, c2 = ctrl.add_pending(resumed, "a"), ctrl.add_pending(resumed, "c")
    assert a2.status == c2.status == "PAUSED"
    b = ctrl.add(resumed, "b")
    # Three at rung 1: a is the top third. Both slots are free (before the fix, the two
    # finished trials held them, and no paused trial was ever promoted after a resume).
    assert report(resumed, ctrl, b, 1, 0.2) == PAUSE
    assert resumed.choose_trial_to_run(ctrl) is a2


def test_a_trial_retried_after_a_failure_runs_again():
    scheduler = promotion(max_concurrent=1)
    ctrl = FakeController(scheduler)
    a = ctrl.add(scheduler, "a")
    assert report(scheduler, ctrl, a, 1, 0.9) == PAUSE
    b = ctrl.add(scheduler, "b")
    scheduler.on_trial_error(ctrl, b)  # Tune's retry: on_trial_error, then re-added PENDING
    b.status = "PENDING"
    scheduler.on_trial_add(ctrl, b)
    assert b.status == "PENDING" and scheduler.choose_trial_to_run(ctrl) is b


def test_a_search_too_small_to_promote_trains_its_best_to_the_end_and_stops_the_rest():
    """Two trials at a rung promote none (top floor(2/3)): when nothing else can run, the
    better paused trial goes on, rung by rung, so the model the search exports is fully
    trained; once one is, the trials still paused are stopped."""
    scheduler = promotion(max_concurrent=2)
    ctrl = FakeController(scheduler)
    a, b = ctrl.add(scheduler, "a"), ctrl.add(scheduler, "b")
    report(scheduler, ctrl, a, 1, 0.5)
    assert scheduler.choose_trial_to_run(ctrl) is None  # b still runs
    report(scheduler, ctrl, b, 1, 0.4)
    assert scheduler.choose_trial_to_run(ctrl) is None  # the searcher may still suggest
    assert all(t.status == "PAUSED" for t in (a, b))
    ctrl.search_alg.finished = True
    assert scheduler.choose_trial_to_run(ctrl) is a
    assert ctrl.search_alg.searcher.unpaused == ["a"]
    a.status = "RUNNING"
    assert [report(scheduler, ctrl, a, t, 0.6) for t in (2, 3)] == [CONTINUE, PAUSE]
    assert scheduler.choose_trial_to_run(ctrl) is a  # alone at rung 3: on again
    a.status = "RUNNING"
    actions = [report(scheduler, ctrl, a, t, 0.7) for t in range(4, 10)]
    assert actions == [CONTINUE] * 5 + [STOP]
    assert scheduler.choose_trial_to_run(ctrl) is None
    assert a.status == b.status == "TERMINATED"
    assert ctrl.search_alg.searcher.completed == ["b"]  # stopped, reaching the searcher


def test_max_paused_stops_the_paused_trial_furthest_from_promotion():
    scheduler = promotion(max_concurrent=1, max_paused=1)
    ctrl = FakeController(scheduler)
    weak = ctrl.add(scheduler, "weak")
    assert report(scheduler, ctrl, weak, 1, 0.5) == PAUSE
    strong = ctrl.add(scheduler, "strong")
    # Two at rung 1, none promotable yet; only one may wait: the worse one is stopped for good
    # (Tune then tells the searcher, which records it as pruned) and the better one pauses.
    assert report(scheduler, ctrl, strong, 1, 0.9) == PAUSE
    assert weak.status == "TERMINATED" and ctrl.search_alg.searcher.completed == ["weak"]
    assert scheduler.num_dropped == 1 and scheduler.num_paused == 2
    from hpo.schedulers.notes import scheduler_lines

    assert "1 stopped to keep at most 1 paused" in scheduler_lines(scheduler)[-1]


def test_max_paused_stops_the_arriving_trial_when_it_is_the_weakest():
    scheduler = promotion(max_concurrent=1, max_paused=2)
    ctrl = FakeController(scheduler)
    a, b = ctrl.add(scheduler, "a"), ctrl.add(scheduler, "b")
    assert report(scheduler, ctrl, a, 1, 0.5) == PAUSE
    assert report(scheduler, ctrl, b, 1, 0.4) == PAUSE
    last = ctrl.add(scheduler, "last")
    assert report(scheduler, ctrl, last, 1, 0.1) == STOP  # worst of three, and no room to wait
    assert ctrl.search_alg.searcher.unpaused == ["a"]  # its score still lifts a into the top
    assert scheduler.choose_trial_to_run(ctrl) is a
    assert b.status == "PAUSED" and scheduler.num_dropped == 1


def test_promotion_with_the_guard_promotes_past_a_misleading_rung():
    scheduler = PromotionASHA(
        metric="acc",
        mode="max",
        max_t=9,
        grace_period=1,
        reduction_factor=3,
        max_concurrent=None,
        guard_min_pairs=3,
    )
    scheduler.guard.untrusted.add(1.0)  # as if rung 1 had been found misleading
    ctrl = FakeController(scheduler)
    trial = ctrl.add(scheduler, "a")
    assert report(scheduler, ctrl, trial, 1, 0.1) == CONTINUE


def test_trial_reaching_max_t_stops():
    scheduler = promotion(max_concurrent=None)
    scheduler.guard.untrusted.update({1.0, 3.0})
    ctrl = FakeController(scheduler)
    trial = ctrl.add(scheduler, "a")
    actions = [report(scheduler, ctrl, trial, t, 0.5) for t in range(1, 10)]
    assert actions == [CONTINUE] * 8 + [STOP]


# -- the registry -------------------------------------------------------------------------------
def job(**early_terminate: Any) -> JobSpec:
    return JobSpec(
        model=ModelSpec(name_or_path="m"),
        data=DataSpec(train="d.csv"),
        metric=MetricSpec(name="eval_accuracy", goal="maximize"),
        early_terminate=EarlyTerminateSpec(**early_terminate),
        max_concurrent=3,
    )


def test_registry_builds_each_scheduler():
    default = make_scheduler(job(), 9)  # promotion-type, with the guard and a cap on pauses
    assert isinstance(default, PromotionASHA) and default.guard.enabled
    assert default.guard.rungs == [1, 3, 9] and default.max_concurrent == 3
    assert default.max_paused == DEFAULT_MAX_PAUSED
    stop_type = make_scheduler(job(promotion=False), 9)
    assert isinstance(stop_type, GuardedASHA) and stop_type.guard.rungs == [1, 3, 9]
    brackets = make_scheduler(job(s=2), 9)  # promotion supports one bracket: stop-type
    assert isinstance(brackets, GuardedASHA)
    off = make_scheduler(job(guard=False, guard_threshold=0.5, guard_min_pairs=7), 9)
    assert not off.guard.enabled and off.guard.min_pairs == 7 and off.guard.threshold == 0.5
    promo = make_scheduler(job(promotion=True, eta=2, min_iter=2, max_paused=4), 8)
    assert isinstance(promo, PromotionASHA) and promo.max_concurrent == 3
    assert promo.max_paused == 4
    assert promo.guard.rungs == [2, 4, 8]
    assert isinstance(make_scheduler(job(type="hyperband"), 9), HyperBandScheduler)
    assert type(make_scheduler(job(type="none"), 9)) is FIFOScheduler
    with pytest.raises(ValueError, match="choose asha, hyperband, none"):
        make_scheduler(job(type="median"), 9)


def test_spec_checks_the_new_keys():
    from hpo.config import _check_budget
    from hpo.space import Space

    problems: list[str] = []
    spec = job(
        type="hyperband", promotion=True, guard_min_pairs=1, guard_threshold=2.0, max_paused=0
    )
    _check_budget(spec, Space([]), problems)
    _check_budget(job(max_paused=3, promotion=False), Space([]), problems)
    _check_budget(job(max_paused=3, s=2), Space([]), problems)
    _check_budget(job(max_paused=3), Space([]), problems)  # the default: fine
    _check_budget(job(promotion=True, s=2), Space([]), problems)
    text = "\n".join(problems)
    assert "early_terminate.max_paused: must be at least 1, got 0" in text
    assert text.count("early_terminate.max_paused: only with promotion") == 3
    assert "early_terminate.promotion: supports one bracket" in text
    assert "early_terminate.promotion: needs type asha" in text
    assert "early_terminate.guard_min_pairs: must be at least 3" in text
    assert "early_terminate.guard_threshold" in text


# -- notes: the live table and the run directory ------------------------------------------------
def test_notes_reach_the_live_table_and_the_run_directory(tmp_path):
    from rich.console import Console

    from hpo.progress import TrialTable
    from hpo.schedulers.notes import NOTES_FILE, SearchNotes

    scheduler = asha(guard=True)
    table = TrialTable(job(), console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    notes = SearchNotes(scheduler, str(tmp_path), [table])
    misleading_history(scheduler, FakeController(scheduler))
    notes.on_step_end(iteration=1, trials=[])  # each turn of Tune's loop
    assert table.notes and table.notes[-1] == scheduler.notes[-1]
    assert table.table().caption == scheduler.notes[-1]
    notes.on_experiment_end(trials=[])
    written = (tmp_path / NOTES_FILE).read_text()
    assert "rank correlation -1.00" in written and "evaluations 1->3" in written


def test_live_table_shows_paused_trials():
    from rich.console import Console

    from hpo.progress import TrialTable

    table = TrialTable(job(), console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    trial = FakeTrial("a")
    trial.config = {}  # type: ignore[attr-defined]
    table.on_trial_start(0, [trial], trial)
    trial.status = "PAUSED"
    table.on_step(1, [trial])
    assert table.rows["a"]["status"] == "PAUSED"
    trial.status = "RUNNING"
    table.on_trial_start(2, [trial], trial)  # resumed (Tune calls on_trial_start/restore)
    assert table.rows["a"]["status"] == "RUNNING"


def test_live_table_keeps_its_trials_across_a_resume_and_fits_a_narrow_terminal():
    import io

    from rich.console import Console

    from hpo.progress import TrialTable

    table = TrialTable(job(), console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    trial = FakeTrial("4f0e9c2a")
    trial.config = {}  # type: ignore[attr-defined]
    table.on_trial_start(0, [trial], trial)
    table.on_trial_result(0, [trial], trial, {"training_iteration": 2, "eval_accuracy": 0.71})
    resumed = TrialTable(job(), console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    resumed.set_state(table.get_state())  # as Tune restores a callback's state
    assert resumed.rows["4f0e9c2a"]["evals"] == 2 and resumed.best == (0.71, "4f0e9c2a")
    resumed.on_experiment_end(trials=[])  # cut off: nothing ended it
    assert resumed.rows["4f0e9c2a"]["status"] == "unfinished"
    out = io.StringIO()
    Console(file=out, width=80).print(resumed.table())
    assert "4f0e9c2a" in out.getvalue() and "unfinished" in out.getvalue()


def test_live_table_cuts_no_value_on_a_narrow_terminal_it_leaves_columns_out():
    """1.30e-04 cut to `1.30…` reads as 1.30e-05 too: a column that does not fit whole is
    left out (each finished trial's line has every value)."""
    import io

    from rich.console import Console

    from hpo.progress import TrialTable
    from hpo.spec import ParamSpec

    spec = job()
    names = ("learning_rate", "per_device_train_batch_size", "weight_decay", "warmup_steps")
    spec.parameters = {n: ParamSpec(min=1e-5, max=1e-4) for n in names}
    for width in (60, 80, 120, 200):
        table = TrialTable(spec, console=Console(file=io.StringIO(), width=width))
        trial = FakeTrial("4f0e9c2a")
        trial.config = dict.fromkeys(names, 1.3e-4)  # type: ignore[attr-defined]
        table.on_trial_start(0, [trial], trial)
        table.on_trial_result(0, [trial], trial, {"training_iteration": 2, "eval_accuracy": 0.7})
        out = io.StringIO()
        Console(file=out, width=width).print(table.table())
        text = out.getvalue()
        assert "…" not in text and "4f0e9c2a" in text and "0.7" in text, (width, text)
        shown = [n for n in names if n in text]
        assert shown == list(names[: len(shown)]) and text.count("1.30e-04") == len(shown)
        assert len(shown) == {60: 0, 80: 1, 120: 3, 200: 4}[width], (width, shown)


def test_live_tables_best_takes_the_later_of_equal_scores_as_best_yaml_does():
    from rich.console import Console

    from hpo.progress import TrialTable

    table = TrialTable(job(), console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    for trial_id, value in (("a", 0.8125), ("b", 0.8125), ("c", 0.7)):
        trial = FakeTrial(trial_id)
        trial.config = {}  # type: ignore[attr-defined]
        table.on_trial_start(0, [trial], trial)
        table.on_trial_result(0, [trial], trial, {"training_iteration": 1, "eval_accuracy": value})
    assert table.best == (0.8125, "b")


def test_live_table_shows_a_parameters_variants_in_one_column():
    from rich.console import Console

    from hpo.progress import TrialTable
    from hpo.spec import ParamSpec

    spec = job()
    spec.parameters = {
        "strategy": ParamSpec(values=["full", "lora"]),
        "learning_rate@full": ParamSpec(min=1e-5, max=5e-5, when={"strategy": "full"}),
        "learning_rate@lora": ParamSpec(min=1e-4, max=1e-3, when={"strategy": "lora"}),
    }
    table = TrialTable(spec, console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    assert table.params == ["strategy", "learning_rate"]
    trial = FakeTrial("a")
    trial.config = {"strategy": "lora", "learning_rate@lora": 3e-4}  # type: ignore[attr-defined]
    table.on_trial_start(0, [trial], trial)
    screen = Console(file=io.StringIO(), width=200)
    screen.print(table.table())
    lines = [
        [w for w in re.split(r"[\s┃│]+", line) if w] for line in screen.file.getvalue().splitlines()
    ]
    header, cells = lines[2], lines[4]
    assert header[2:4] == ["strategy", "learning_rate"]
    assert cells[2:4] == ["lora", "3.00e-04"]
    assert "strategy=lora learning_rate=3.00e-04 |" in table._line("a", table.rows["a"])


def test_notes_say_when_the_guard_had_too_few_trials():
    from hpo.schedulers.notes import scheduler_lines

    scheduler = asha(guard=True)
    ctrl = FakeController(scheduler)
    trial = ctrl.add(scheduler, "a")
    report(scheduler, ctrl, trial, 1, 0.5)
    assert any("too few trials" in line for line in scheduler_lines(scheduler))
    scheduler = asha(guard=True)
    ctrl = FakeController(scheduler)
    five_trials_ranked_alike_at_every_rung(scheduler, ctrl)
    lines = scheduler_lines(scheduler)
    assert any("every rung ranked trials like the next" in line for line in lines)


def test_what_hyperband_will_not_do_is_said_and_a_w_and_b_sweeps_keys_are_accepted():
    def caveats(concurrency: int, **early_terminate: Any) -> list[str]:
        spec = JobSpec(
            model=ModelSpec(name_or_path="m"),
            data=DataSpec(train="d.csv"),
            metric=MetricSpec(name="eval_loss", goal="minimize"),
            early_terminate=EarlyTerminateSpec(**early_terminate),
        )
        return scheduler_caveats(spec, concurrency)

    (unused,) = caveats(2, type="hyperband", min_iter=3, s=2)
    assert unused.startswith("early_terminate.min_iter and early_terminate.s: not used by")
    (alone,) = caveats(1, type="hyperband")
    assert "hyperband stops no trial when one runs at a time" in alone
    assert caveats(2, type="hyperband") == caveats(1, type="asha", min_iter=3, s=2) == []


def test_a_first_rung_at_or_past_a_trials_last_evaluation_is_said():
    """A sweep's `min_iter: 5` where a trial makes 3 evaluations stops nothing."""
    spec = JobSpec(
        model=ModelSpec(name_or_path="m"),
        data=DataSpec(train="d.csv"),
        early_terminate=EarlyTerminateSpec(type="asha", min_iter=5),
    )
    (said,) = scheduler_caveats(spec, evaluations=3)
    assert said.startswith("early_terminate.min_iter: 5, and a trial makes 3 evaluation(s)")
    assert scheduler_caveats(spec, evaluations=6) == []
    assert scheduler_caveats(spec) == []  # not known without the data: not said
