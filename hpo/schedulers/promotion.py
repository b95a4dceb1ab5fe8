"""Promotion-type ASHA: pause a trial at a rung, resume it from its checkpoint when promoted.

Stop-type ASHA (Ray's) decides once, when a trial reaches a rung: the trial goes on if it beats
the top-1/eta cutoff of what the rung has seen so far, else it is stopped for good. So the first
trials at a rung always go on, and a trial stopped early can never come back when later trials
turn out worse. Promotion-type ASHA (Li et al. 2020, Syne Tune's `type="promotion"`) pauses
every trial at a rung instead; a trial is promoted to the next rung once it is among the top
floor(n/eta) of the n trials that reached that rung. A promoted trial resumes from the
checkpoint it reported at the rung (`tune.get_checkpoint()` in the trial), so no evaluation is
computed twice.

Ray's `ConcurrencyLimiter` counts a paused trial as running; as Ray's BOHB does, this scheduler
tells the searcher when a trial is paused or resumed (`on_pause` / `on_unpause`), and hpo's
searcher counts only running trials against `max_concurrent`. When no trial can run any more
and the searcher has no more to give, the trials still paused are stopped (they were not good
enough to promote) and reach the searcher as pruned; but if no trial was trained to the end (a
search with fewer trials than eta), the best paused one goes on first, so that the model the
search exports is a fully trained one.

Every paused trial keeps a resumable checkpoint (weights and optimizer state) on disk. With
`max_paused`, at most that many trials wait at once: when one more would pause, the paused trial
furthest below its rung's top floor(n/eta) is stopped instead, and the search's checkpoint budget
deletes its checkpoint. A low cap can cost search quality (a trial paused early with a middling
score may be promoted late, once worse ones arrive): the spec's default, 32, cost nothing
measurable in benchmarks/BENCHMARKS.md; 16 and fewer began to.

hpo uses this scheduler for `asha` with one bracket unless the spec says `promotion: false`.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from hpo.schedulers._guard import RungGuard
from hpo.schedulers.asha import milestones

logger = logging.getLogger(__name__)


class PromotionASHA(FIFOScheduler):
    """Asynchronous successive halving that pauses and promotes instead of stopping."""

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
        time_attr: str = "training_iteration",
        max_concurrent: int | None = None,
        guard: bool = True,
        guard_min_pairs: int = 5,
        guard_threshold: float = 0.3,
        max_paused: int | None = None,
    ) -> None:
        super().__init__()
        self._metric = metric
        self._mode = mode
        self._sign = 1.0 if mode == "max" else -1.0
        self._time_attr = time_attr
        self._max_t = max_t
        self._eta = reduction_factor
        self._rungs = milestones(grace_period, max_t, reduction_factor)
        self.guard = RungGuard(
            [*self._rungs, float(max_t)], guard, guard_min_pairs, guard_threshold
        )
        self.max_concurrent = max_concurrent
        self.max_paused = max_paused
        self._promoted: dict[float, set[str]] = {r: set() for r in self._rungs}
        self._paused: dict[str, float] = {}  # trial id -> the rung it waits at
        self._running: set[str] = set()  # added or resumed, and not paused or finished
        self._to_resume: list[str] = []  # promoted, waiting for `choose_trial_to_run`
        self.num_paused = 0
        self.num_promoted_from_pause = 0
        self.num_dropped = 0  # paused trials stopped to keep at most `max_paused`

    @property
    def notes(self) -> list[str]:
        return self.guard.notes

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # fixed at construction

    # -- Tune events ---------------------------------------------------------------------------
    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        # `hpo resume` adds every trial of the saved search again. Tune files each under the
        # status it has once this returns.
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            return  # a finished trial takes no slot (else no paused trial is promoted again)
        if trial.trial_id in self._paused:
            # Tune requeues every unfinished trial as PENDING and would start it at once; one
            # paused here before the interruption waits for its promotion again.
            trial.set_status(Trial.PAUSED)
            return
        self._running.add(trial.trial_id)  # new, resumed, or retried after a failure

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        t, value = result.get(self._time_attr), result.get(self._metric)
        if not isinstance(t, int | float) or not isinstance(value, int | float):
            return TrialScheduler.CONTINUE
        self._running.add(trial.trial_id)
        if trial.trial_id in self._to_resume:
            self._to_resume.remove(trial.trial_id)
        rung = self.guard.observe(trial.trial_id, t, self._sign * value)
        if t >= self._max_t:
            return TrialScheduler.STOP
        if rung is None or rung not in self._promoted:
            return TrialScheduler.CONTINUE
        if not self.guard.trusted(rung) or self._promotable(trial.trial_id, rung):
            self._promoted[rung].add(trial.trial_id)
            self._promote_waiting(tune_controller)  # the new score may lift a paused trial
            return TrialScheduler.CONTINUE
        self._running.discard(trial.trial_id)
        if not self._make_room(tune_controller, trial.trial_id, rung):
            self.num_dropped += 1
            self._promote_waiting(tune_controller)  # its score may lift a paused trial
            return TrialScheduler.STOP  # the least promising of all: not worth its checkpoint
        self._paused[trial.trial_id] = rung
        self.num_paused += 1
        _searcher_call(tune_controller, "on_pause", trial.trial_id, result)
        self._promote_waiting(tune_controller)
        return TrialScheduler.PAUSE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        t, value = result.get(self._time_attr), result.get(self._metric)
        if isinstance(t, int | float) and isinstance(value, int | float):
            self.guard.observe(trial.trial_id, t, self._sign * value)
        self._forget(trial.trial_id)
        self._promote_waiting(tune_controller)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._forget(trial.trial_id)
        self._promote_waiting(tune_controller)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._forget(trial.trial_id)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = tune_controller.get_trials()
        self._resume_strays(trials)
        by_id = {t.trial_id: t for t in trials}
        for trial_id in self._to_resume:
            trial = by_id.get(trial_id)
            if trial is not None and trial.status in (Trial.PAUSED, Trial.PENDING):
                return trial
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        if self._paused and self._nothing_else_to_run(tune_controller, trials):
            finisher = self._finish_best(tune_controller, trials)
            if finisher is not None:
                return finisher
            self._stop_leftovers(tune_controller, trials)
        return None

    def _resume_strays(self, trials: list[Trial]) -> None:
        """A trial Tune holds paused that this scheduler neither keeps paused nor is about to
        resume would wait for ever, and the search with it: Tune ends only when no trial is
        paused. Seen after `hpo resume` of a killed driver (Tune's saved state and this
        scheduler's are written at different moments). Such a trial is resumed: at worst it
        trains further than ASHA would have let it."""
        for trial in trials:
            tid = trial.trial_id
            tracked = tid in self._paused or tid in self._to_resume
            if trial.status == Trial.PAUSED and not tracked:
                logger.warning("trial %s was paused unknown to the scheduler: resuming it", tid)
                self._running.add(tid)
                self._to_resume.append(tid)

    # -- promotion -----------------------------------------------------------------------------
    def _promotable(self, trial_id: str, rung: float) -> bool:
        """Is the trial among the top floor(n/eta) of the n trials that reached `rung`?"""
        scores = self.guard.scores[rung]
        top = int(len(scores) / self._eta)
        if top == 0 or trial_id not in scores:
            return False
        # In the top when all its ties fit there too; a tie straddling the top (many trials at
        # the majority-class accuracy) only if nothing at the rung scored better, as
        # GuardedASHA treats it.
        mine = scores[trial_id]
        better = sum(1 for s in scores.values() if s > mine)
        tied = sum(1 for s in scores.values() if s == mine)
        return better == 0 or better + tied <= top

    def _shortfall(self, trial_id: str, rung: float) -> int:
        """How many places the trial is below the top floor(n/eta) of its rung (<= 0: in it)."""
        scores = self.guard.scores[rung]
        better = sum(1 for s in scores.values() if s > scores[trial_id])
        return better - int(len(scores) / self._eta) + 1

    def _make_room(self, tune_controller: Any, trial_id: str, rung: float) -> bool:
        """Keep at most `max_paused` paused trials: stop the one furthest from promotion (the
        worse score breaks ties). False when that is `trial_id` itself, about to pause at `rung`."""
        if self.max_paused is None or len(self._paused) < self.max_paused:
            return True
        waiting = {**self._paused, trial_id: rung}
        weakest = max(
            waiting,
            key=lambda t: (
                self._shortfall(t, waiting[t]),
                -self.guard.scores[waiting[t]][t],
            ),
        )
        if weakest == trial_id:
            return False
        del self._paused[weakest]
        self.num_dropped += 1
        for trial in tune_controller.get_trials():
            if trial.trial_id == weakest:
                _stop_paused(tune_controller, trial)  # Tune tells the searcher: pruned
        return True

    def _free_slots(self, tune_controller: Any) -> float:
        limit = self.max_concurrent
        if limit is None:  # Tune's ConcurrencyLimiter knows `max_concurrent_trials`
            searcher = getattr(getattr(tune_controller, "search_alg", None), "searcher", None)
            limit = getattr(searcher, "max_concurrent", None)
        if not limit:
            return float("inf")
        return limit - len(self._running)

    def _promote_waiting(self, tune_controller: Any) -> None:
        """Resume promotable paused trials into free slots, highest rung first."""
        while self._free_slots(tune_controller) > 0:
            candidates = [
                (rung, trial_id)
                for trial_id, rung in self._paused.items()
                if not self.guard.trusted(rung) or self._promotable(trial_id, rung)
            ]
            if not candidates:
                return
            rung, trial_id = max(candidates, key=self._standing)
            self._promote(tune_controller, rung, trial_id)

    def _standing(self, waiting: tuple[float, str]) -> tuple[float, float]:
        """How a paused (rung, trial) ranks for promotion: highest rung first, then score."""
        rung, trial_id = waiting
        return rung, self.guard.scores[rung][trial_id]

    def _promote(self, tune_controller: Any, rung: float, trial_id: str) -> None:
        """A paused trial goes on: `choose_trial_to_run` hands it to Tune to resume."""
        del self._paused[trial_id]
        self._promoted[rung].add(trial_id)
        self._running.add(trial_id)
        self._to_resume.append(trial_id)
        self.num_promoted_from_pause += 1
        _searcher_call(tune_controller, "on_unpause", trial_id)

    def _finish_best(self, tune_controller: Any, trials: list[Trial]) -> Trial | None:
        """When the search ends with no trial trained to the end (fewer trials than a rung
        needs to promote one: `run_cap` below eta), the best paused trial of the highest rung
        goes on, rung by rung, so that the exported model is a fully trained one."""
        if self.guard.scores[self.guard.rungs[-1]]:
            return None  # some trial was trained to the end
        rung, trial_id = max(((rung, t) for t, rung in self._paused.items()), key=self._standing)
        trial = next((t for t in trials if t.trial_id == trial_id), None)
        if trial is None:
            return None
        self._promote(tune_controller, rung, trial_id)
        logger.info("no trial was trained to the end: %s goes on from rung %s", trial_id, rung)
        return trial

    def _nothing_else_to_run(self, tune_controller: Any, trials: list[Trial]) -> bool:
        if any(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials):
            return False
        search_alg = getattr(tune_controller, "search_alg", None)
        return search_alg is None or bool(search_alg.is_finished())

    def _stop_leftovers(self, tune_controller: Any, trials: list[Trial]) -> None:
        for trial in trials:
            if trial.trial_id in self._paused and trial.status == Trial.PAUSED:
                _stop_paused(tune_controller, trial)

    def _forget(self, trial_id: str) -> None:
        self._running.discard(trial_id)
        self._paused.pop(trial_id, None)
        if trial_id in self._to_resume:
            self._to_resume.remove(trial_id)

    def debug_string(self) -> str:
        return (
            f"PromotionASHA: rungs {self._rungs}, paused {len(self._paused)}, "
            f"resumed {self.num_promoted_from_pause}, dropped {self.num_dropped}; "
            + "; ".join(self.guard.summary())
        )


def _stop_paused(tune_controller: Any, trial: Trial) -> None:
    """Stop a paused trial, and have Tune save it as stopped.

    Tune rewrites a trial in its saved experiment state only when the trial is marked for it,
    and stopping a trial without an actor (a paused one) does not mark it (Ray 2.60): the saved
    state would keep it PAUSED for ever, and `hpo resume` of the finished search would train it
    again. Marked through the controller behind the scheduler's restricted view."""
    tune_controller.stop_trial(trial)
    controller = getattr(tune_controller, "_tune_controller", tune_controller)
    mark = getattr(controller, "_mark_trial_to_checkpoint", None)
    if mark is not None:
        mark(trial)


def _searcher_call(tune_controller: Any, method: str, trial_id: str, *args: Any) -> None:
    """Tell the searcher a trial was paused or resumed, as Ray's HyperBandForBOHB does."""
    search_alg = getattr(tune_controller, "search_alg", None)
    searcher: Any = getattr(search_alg, "searcher", None)
    while hasattr(searcher, "searcher"):  # Ray's ConcurrencyLimiter forwards no result
        searcher = searcher.searcher
    hook = getattr(searcher, method, None)
    if hook is not None:
        hook(trial_id, *args)
