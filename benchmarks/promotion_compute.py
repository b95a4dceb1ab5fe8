"""Compute per trial, promotion-type against stop-type ASHA, over hundreds of seeded searches.

Issue 8 asks the promotion variant to spend less compute per trial than plain (stop-type)
TPE+ASHA at equal budget. Real fine-tuning (`mf_finetune.py`) affords 3 seeds of 12-24 trials,
where the two differ by an evaluation or two either way. This asks the question of hpo's real
schedulers (`GuardedASHA` with the guard off, `PromotionASHA`) with the quickstart's shape - 3
evaluations per trial, rungs after the first two, eta 2, 2 trials at a time, a fixed number of
trials - on a model of a search cheap enough for 400 seeds:
- each new trial has a latent quality q ~ N(0, 1), plus `trend` x (its index / trials): a
  searcher that learns proposes better trials later (trend 0: random search);
- each evaluation scores q + N(0, noise): the evaluations of a trial are noisy readings of its
  quality, so rankings at a rung are right on average and wrong at the margin;
- an evaluation takes 1 to 1.3 time units, so trials reach rungs in an order of their own.
Both schedulers see the same trials, scores and durations seed by seed, so only their decisions
differ; a third, not hpo's, lets at most floor(n/eta) trials past a rung (`CappedPromotion`).
Reported per scheduler: evaluations per trial, the evaluations it saves per search against
stop-type, trials past the first rung against floor(n/eta), and the latent quality of the
trial hpo would export (the best final evaluation) - the search's outcome, not only its cost.

    .venv/bin/python benchmarks/promotion_compute.py --trials 12 24 100 --seeds 400 \
        --out benchmarks/results/promotion_compute.json
"""

from __future__ import annotations

import argparse
import heapq
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mf_synthetic import SimController, SimTrial

from hpo.schedulers import GuardedASHA, PromotionASHA
from hpo.spec import DEFAULT_MAX_PAUSED

EVALUATIONS = 3  # the quickstart's: eval_steps 0.34
ETA = 2
WORKERS = 2
METRIC = "eval_accuracy"


class CappedPromotion(PromotionASHA):
    """Not hpo's: promotion that lets at most floor(n/eta) of the n trials a rung has seen go
    on, as synchronous successive halving does. hpo's rule (Li et al.'s, Syne Tune's) promotes
    any trial in the top floor(n/eta) now, so trials that fall out of the top later still went
    on: this asks what that costs and what it buys."""

    def _promotable(self, trial_id: str, rung: float) -> bool:
        seen = len(self.guard.scores[rung])
        room = len(self._promoted[rung]) < int(seen / self._eta)
        return room and super()._promotable(trial_id, rung)


KINDS = ("stop-type", "promotion", "promotion, capped at floor(n/eta)")


def scheduler(kind: str) -> Any:
    common = dict(
        metric=METRIC,
        mode="max",
        max_t=EVALUATIONS,
        grace_period=1,
        reduction_factor=ETA,
        time_attr="training_iteration",
        guard=False,  # the target compares the schedulers, not the guard
    )
    if kind == "stop-type":
        return GuardedASHA(**common)
    promotion = CappedPromotion if "capped" in kind else PromotionASHA
    return promotion(**common, max_concurrent=WORKERS, max_paused=DEFAULT_MAX_PAUSED)


class LatentSearcher:
    """Proposes `len(qualities)` configurations in order, each a latent quality."""

    def __init__(self, qualities: np.ndarray) -> None:
        self.qualities = qualities
        self.proposed = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.proposed >= len(self.qualities):
            return None
        self.proposed += 1
        return {"index": self.proposed - 1, "q": float(self.qualities[self.proposed - 1])}

    # What PromotionASHA and SimController tell a searcher; nothing to learn here.
    def on_pause(self, *args: Any) -> None: ...
    def on_unpause(self, *args: Any) -> None: ...
    def on_trial_complete(self, *args: Any, **kwargs: Any) -> None: ...


@dataclass
class Search:
    evaluations: int
    past_first_rung: int  # trials that went on to a second evaluation
    exported_quality: float  # q of the trial with the best final evaluation (hpo exports it)


def search(kind: str, trials: int, seed: int, trend: float, noise: float) -> Search:
    """One search of `trials` trials to its end under `kind`, `WORKERS` at a time."""
    # Common random numbers: both schedulers see the same trials, scores and durations, so
    # only their decisions differ.
    rng = np.random.default_rng(seed)
    qualities = rng.normal(size=trials) + trend * np.arange(1, trials + 1) / trials
    scores = qualities[:, None] + noise * rng.normal(size=(trials, EVALUATIONS))
    durations = 1.0 + 0.3 * rng.random(size=(trials, EVALUATIONS))
    searcher = LatentSearcher(qualities)
    sched = scheduler(kind)
    ctrl = SimController(searcher, sched)
    running: list[tuple[float, int, SimTrial]] = []
    clock, seq, evaluations, best = 0.0, 0, 0, (-np.inf, float("nan"))

    def start(trial: SimTrial) -> None:
        nonlocal seq
        trial.status = "RUNNING"
        seq += 1
        duration = durations[trial.config["index"], trial.epoch]
        heapq.heappush(running, (clock + duration, seq, trial))

    def next_trial() -> SimTrial | None:
        trial = sched.choose_trial_to_run(ctrl)
        if trial is not None:
            return trial
        config = searcher.suggest(f"t{len(ctrl.trials)}")
        if config is None:  # as Tune: the searcher is done, the paused trials are decided
            ctrl.search_alg.finished = True
            return sched.choose_trial_to_run(ctrl)
        trial = SimTrial(f"t{len(ctrl.trials)}", config)
        ctrl.trials.append(trial)
        sched.on_trial_add(ctrl, trial)
        return trial

    def fill() -> None:
        while len(running) < WORKERS and (trial := next_trial()) is not None:
            start(trial)

    fill()
    while running:
        clock, _, trial = heapq.heappop(running)
        trial.epoch += 1
        evaluations += 1
        score = float(scores[trial.config["index"], trial.epoch - 1])
        result = {METRIC: score, "training_iteration": trial.epoch}
        action = sched.on_trial_result(ctrl, trial, result)
        if trial.epoch >= EVALUATIONS and score > best[0]:
            best = (score, trial.config["q"])
        if trial.epoch >= EVALUATIONS or action == "STOP":
            sched.on_trial_complete(ctrl, trial, result)
            trial.status = "TERMINATED"
        elif action == "PAUSE":
            trial.status = "PAUSED"
        else:
            start(trial)
        fill()
    past_first = sum(t.epoch >= 2 for t in ctrl.trials)
    return Search(evaluations, past_first, best[1])


def compare(trials: int, trend: float, noise: float, seeds: int) -> list[dict[str, Any]]:
    """Every scheduler over the same seeds; savings are paired with stop-type's, seed by seed."""
    runs = {
        kind: [search(kind, trials, seed, trend, noise) for seed in range(seeds)] for kind in KINDS
    }
    rows = []
    for kind, results in runs.items():
        saved = [
            s.evaluations - r.evaluations for s, r in zip(runs["stop-type"], results, strict=True)
        ]
        rows.append(
            {
                "trials": trials,
                "trend": trend,
                "noise": noise,
                "seeds": seeds,
                "scheduler": kind,
                "evaluations_per_trial": statistics.mean(r.evaluations for r in results) / trials,
                "saved_per_search": statistics.mean(saved),
                "saved_sd": statistics.stdev(saved),
                "cheaper_share": sum(x > 0 for x in saved) / seeds,
                "past_first_rung": statistics.mean(r.past_first_rung for r in results),
                "exported_quality": statistics.mean(r.exported_quality for r in results),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| trials | trend | scheduler | evaluations per trial | saved per search against "
        "stop-type (sd) | cheaper than stop-type | past the first rung (floor(n/eta)) "
        "| exported quality |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['trials']} | {r['trend']:g} | {r['scheduler']} | "
            f"{r['evaluations_per_trial']:.3f} | {r['saved_per_search']:+.2f} "
            f"({r['saved_sd']:.2f}) | {r['cheaper_share']:.0%} | {r['past_first_rung']:.1f} "
            f"({r['trials'] // ETA}) | {r['exported_quality']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[12, 24, 100])
    parser.add_argument("--trends", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--noise", type=float, default=0.5, help="sd of an evaluation around q")
    parser.add_argument("--seeds", type=int, default=400)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = [
        row
        for trials in args.trials
        for trend in args.trends
        for row in compare(trials, trend, args.noise, args.seeds)
    ]
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
