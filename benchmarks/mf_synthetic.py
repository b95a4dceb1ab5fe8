"""Synthetic multi-fidelity benchmark: hpo's searcher and schedulers on MF-Hartmann-6.

Each trial is a point x in [0, 1]^6 "trained" for up to 27 epochs; its evaluation at epoch e is a
multi-fidelity Hartmann-6 (Kandasamy et al. 2017; as in mf-prior-bench): the weights of the four
Hartmann terms are biased away from their true values by `bias * gap(e)`, plus Gaussian noise of
sd `noise * gap(e)`, where gap(e) = 1 - log(e)/log(27) falls by a third at each of ASHA's rungs
(epochs 1, 3, 9, 27). At epoch 27 the value is the true Hartmann-6 (minimum
-3.32237). Two settings:
- mild: a small bias and noise; early epochs rank configurations nearly as the last one does;
- misleading: the bias moves weight from the two deep basins (the optimum's, near P[2], and
  P[3]'s) to the two shallow ones, so early epochs rank configurations wrongly.
And mf-prior-bench's own form of the function (its `MFHartmann6`: every weight lowered by
`bias * gap(e)`, noise |N(0, 1)| * `noise * gap(e)`), a second family:
- mfpb-default: its default bias 0.5 and noise 0.1 (mild);
- mfpb-bad: its "bad" setting, bias 3.5 and noise 4 (the early weights turn negative: early
  epochs favour the worst regions).

The trials are instant: a discrete-event simulator with 4 workers (`--workers N`; one epoch =
one time unit) drives the *real* objects a search uses - hpo's `OptunaSearcher` and schedulers,
Ray's `OptunaSearch`, `ASHAScheduler` and `FIFOScheduler` - through the calls Ray Tune makes
(suggest / on_trial_add / on_trial_result / on_trial_complete / choose_trial_to_run, and PAUSE
and resume for the promotion variant). The budget is 30 full trainings (810 epochs).

Reported per setting and method, over 10 seeds: the final regret (true value of the best fully
trained configuration minus the optimum), the share of seeds that reach random search's final
best (random+FIFO, mean over seeds) within the budget, and the speedup: 810 epochs divided by
the median epochs needed to reach it (a seed that never reaches it counts as never).

    .venv/bin/python benchmarks/mf_synthetic.py --seeds 10 --max-paused 16 \
        --out benchmarks/results/mf_synthetic-default-promotion-4workers.json
    .venv/bin/python benchmarks/mf_synthetic.py --seeds 10 --workers 2 --max-paused 16 \
        --out benchmarks/results/mf_synthetic-default-promotion-2workers.json
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpo.schedulers import GuardedASHA, PromotionASHA
from hpo.search import OptunaSearcher, make_sampler
from hpo.space import compile_space
from hpo.spec import DEFAULT_MAX_PAUSED, ParamSpec
from hpo.trial.reporter import FINAL

optuna.logging.set_verbosity(optuna.logging.ERROR)

METRIC = "loss"
MAX_T = 27
BUDGET_FULL = 30
WORKERS = 4  # trials at a time; --workers 2 is this machine's (and FACTS.md's) slot count
DIM = 6
OPTIMUM = -3.32237

A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
ALPHA = np.array([1.0, 1.2, 3.0, 3.2])

# (bias direction on the four weights, bias size, noise sd at epoch 0); a direction of None is
# mf-prior-bench's form: every weight lowered by the bias, the noise folded to be positive.
SETTINGS: dict[str, tuple[np.ndarray | None, float, float]] = {
    "mild": (np.array([0.5, 0.5, -0.5, -0.5]), 0.4, 0.1),
    "misleading": (np.array([1.0, 1.0, -1.0, -1.0]), 2.5, 0.4),
    "mfpb-default": (None, 0.5, 0.1),
    "mfpb-bad": (None, 3.5, 4.0),
}


def hartmann(x: np.ndarray, alpha: np.ndarray) -> float:
    return float(-(alpha * np.exp(-(A * (x - P) ** 2).sum(axis=1))).sum())


class MFHartmann:
    """The value of configuration x after `epoch` epochs (lower is better)."""

    def __init__(self, setting: str, seed: int) -> None:
        self.direction, self.bias, self.noise = SETTINGS[setting]
        self.rng = np.random.default_rng(seed + 7919)

    def __call__(self, x: np.ndarray, epoch: int) -> float:
        gap = 1.0 - math.log(epoch) / math.log(MAX_T)  # 1 after one epoch, 0 after all
        noise = float(self.rng.normal())
        if self.direction is None:
            return hartmann(x, ALPHA - self.bias * gap) + self.noise * gap * abs(noise)
        alpha = ALPHA + self.bias * gap * self.direction
        return hartmann(x, alpha) + self.noise * gap * noise

    @staticmethod
    def true(x: np.ndarray) -> float:
        return hartmann(x, ALPHA)


# -- the simulated backend ------------------------------------------------------------------------
@dataclass(eq=False)
class SimTrial:
    """What schedulers read from a Ray Tune trial: its id, status and config."""

    trial_id: str
    config: dict[str, Any]
    status: str = "PENDING"
    epoch: int = 0
    last_result: dict[str, Any] = field(default_factory=dict)


class SimSearchAlg:
    """Stands for Tune's SearchGenerator: `searcher` (for pause hooks) and `is_finished`."""

    def __init__(self, searcher: Any) -> None:
        self.searcher = searcher
        self.finished = False

    def is_finished(self) -> bool:
        return self.finished


class SimController:
    """The part of Tune's controller a scheduler sees (`get_trials`, `search_alg`, `stop_trial`)."""

    def __init__(self, searcher: Any, scheduler: Any) -> None:
        self.trials: list[SimTrial] = []
        self.search_alg = SimSearchAlg(searcher)
        self.scheduler = scheduler

    def get_trials(self) -> list[SimTrial]:
        return self.trials

    def get_live_trials(self) -> list[SimTrial]:
        return [t for t in self.trials if t.status != "TERMINATED"]

    def stop_trial(self, trial: SimTrial) -> None:
        if trial.status in ("PAUSED", "PENDING"):
            self.scheduler.on_trial_remove(self, trial)
            self.search_alg.searcher.on_trial_complete(trial.trial_id)
        trial.status = "TERMINATED"


@dataclass
class RunLog:
    """Incumbent (best fully trained, true value) after each epoch spent."""

    curve: list[tuple[int, float]] = field(default_factory=list)
    trials: int = 0
    paused: int = 0
    resumed: int = 0
    notes: list[str] = field(default_factory=list)

    def best_at(self, spent: int) -> float:
        best = math.inf
        for at, value in self.curve:
            if at > spent:
                break
            best = value
        return best

    def epochs_to_reach(self, target: float, budget: int) -> float:
        """Epochs spent when the incumbent first reached `target`; inf if not within the
        budget (trials running when the budget ran out finish past it, and do not count,
        as they do not count for the regret)."""
        for at, value in self.curve:
            if at > budget:
                break
            if value <= target + 1e-12:
                return at
        return math.inf


def simulate(
    searcher: Any, scheduler: Any, setting: str, seed: int, workers: int = WORKERS
) -> RunLog:
    """Run one search to the budget, epoch by epoch, `workers` trials at a time."""
    fn = MFHartmann(setting, seed)
    ctrl = SimController(searcher, scheduler)
    budget = BUDGET_FULL * MAX_T
    spent, clock, seq = 0, 0.0, 0
    events: list[tuple[float, int, SimTrial]] = []
    log = RunLog()
    best = math.inf

    def start(trial: SimTrial) -> None:
        nonlocal seq
        if trial.status == "PAUSED":
            log.resumed += 1
        trial.status = "RUNNING"
        seq += 1
        heapq.heappush(events, (clock + 1.0, seq, trial))

    def fill() -> None:
        while len(events) < workers and spent + len(events) < budget:
            trial = scheduler.choose_trial_to_run(ctrl)
            if trial is None:
                trial = new_trial()
                if trial is None:
                    return
            start(trial)

    def new_trial() -> SimTrial | None:
        trial_id = f"t{log.trials:04d}"
        config = searcher.suggest(trial_id)
        if config is None:
            return None
        log.trials += 1
        trial = SimTrial(trial_id, config)
        ctrl.trials.append(trial)
        scheduler.on_trial_add(ctrl, trial)
        return trial

    def complete(trial: SimTrial, result: dict[str, Any]) -> None:
        scheduler.on_trial_complete(ctrl, trial, result)
        searcher.on_trial_complete(trial.trial_id, result)
        trial.status = "TERMINATED"

    fill()
    while events:
        clock, _, trial = heapq.heappop(events)
        trial.epoch += 1
        spent += 1
        x = np.array([trial.config[f"x{i}"] for i in range(1, DIM + 1)])
        value = fn(x, trial.epoch)
        result = {
            METRIC: value,
            "training_iteration": trial.epoch,
            FINAL: int(trial.epoch >= MAX_T),
        }
        trial.last_result = result
        action = scheduler.on_trial_result(ctrl, trial, result)
        if action != "STOP":  # as Tune: the stopping result goes to on_trial_complete only
            searcher.on_trial_result(trial.trial_id, result)
        if trial.epoch >= MAX_T:
            if value < best:
                best = value
                log.curve.append((spent, MFHartmann.true(x)))
            complete(trial, result)
        elif action == "STOP":
            complete(trial, result)
        elif action == "PAUSE":
            trial.status = "PAUSED"
            log.paused += 1
        else:
            seq += 1
            heapq.heappush(events, (clock + 1.0, seq, trial))
        if spent + len(events) >= budget:
            ctrl.search_alg.finished = True
        fill()
    log.notes = list(getattr(scheduler, "notes", []))
    return log


# -- methods --------------------------------------------------------------------------------------
def hpo_searcher(
    method: str,
    seed: int,
    sampler: Any = None,
    workers: int = WORKERS,
    rung_model: bool = False,
    hedge: bool = True,
) -> OptunaSearcher:
    """hpo's searcher over the 6 inputs, with hpo's sampler for `method` unless one is given
    (`rung_model`, `hedge`: the spec's keys of those names)."""
    problems: list[str] = []
    space = compile_space(
        {f"x{i}": ParamSpec(min=0.0, max=1.0) for i in range(1, DIM + 1)}, problems
    )
    assert not problems, problems
    # run_cap 120: the ~120 trials such a budget starts under ASHA (10 random start-up trials).
    sampler = sampler or make_sampler(method, seed, 120, 1, rung_model, hedge)
    searcher = OptunaSearcher(space, [(METRIC, "minimize")], sampler)
    searcher.set_max_concurrency(workers)  # as Ray's ConcurrencyLimiter does
    return searcher


def ray_optuna_search(seed: int) -> Any:
    """Ray's own OptunaSearch with the same TPE settings: tells stopped trials COMPLETE."""
    from ray.tune.search.optuna import OptunaSearch

    space = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(1, DIM + 1)}
    return OptunaSearch(
        space=space,
        metric=METRIC,
        mode="min",
        sampler=make_sampler("tpe", seed, 120, 1, hedge=False),  # Optuna's TPE itself
    )


def asha(guard: bool) -> GuardedASHA:
    return GuardedASHA(
        max_t=MAX_T,
        grace_period=1,
        reduction_factor=3,
        time_attr="training_iteration",
        metric=METRIC,
        mode="min",
        guard=guard,
    )


def ray_asha() -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        metric=METRIC,
        mode="min",
        max_t=MAX_T,
        grace_period=1,
        reduction_factor=3,
    )


def fifo() -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def promotion(guard: bool, workers: int, max_paused: int | None = None) -> PromotionASHA:
    return PromotionASHA(
        metric=METRIC,
        mode="min",
        max_t=MAX_T,
        grace_period=1,
        reduction_factor=3,
        max_concurrent=workers,
        guard=guard,
        max_paused=max_paused,
    )


def with_promotion(
    method: str,
    guard: bool,
    cap: int | None = DEFAULT_MAX_PAUSED,
    rung_model: bool = False,
    hedge: bool = True,
) -> Any:
    """(seed, workers) -> hpo's searcher for `method` and promotion-type ASHA."""
    return lambda s, w: (
        hpo_searcher(method, s, workers=w, rung_model=rung_model, hedge=hedge),
        promotion(guard, w, cap),
    )


# name -> (seed, workers) -> (searcher, scheduler). Every "hpo" row runs hpo's searcher as it
# is now, so since the seventeenth session with its hedge (hpo.hedge); "hedge off" is the
# default without it, and Ray's OptunaSearch row is Optuna's TPE alone.
METHODS: dict[str, Any] = {
    "random+FIFO": lambda s, w: (hpo_searcher("random", s, workers=w), fifo()),
    "random+ASHA": lambda s, w: (hpo_searcher("random", s, workers=w), ray_asha()),
    "raw Ray: OptunaSearch TPE+ASHA": lambda s, w: (ray_optuna_search(s), ray_asha()),
    "hpo TPE+stop-type ASHA (no guard)": lambda s, w: (
        hpo_searcher("tpe", s, workers=w),
        asha(False),
    ),
    # hpo's default until the eighth session (`promotion: false` now)
    "hpo TPE+stop-type ASHA+guard": lambda s, w: (hpo_searcher("tpe", s, workers=w), asha(True)),
    "hpo default: TPE+promotion ASHA+guard": with_promotion("tpe", guard=True),
    # `hedge: false`: TPE throughout, even where finished trials fell after their first
    # evaluation (hpo.hedge); hpo's default until the seventeenth session.
    "hpo default, hedge off": with_promotion("tpe", guard=True, hedge=False),
    # `rung_model: true`: TPE on the highest rung enough trials reached (hpo.rung_model), not
    # on the study in Optuna's own order (finished trials first).
    "hpo default + rung_model": with_promotion("tpe", guard=True, rung_model=True),
    # Which part of the default costs reach when early rungs mislead: the searcher or the
    # scheduler? The same schedulers under random search, and the default without its guard.
    "hpo TPE+promotion ASHA (no guard)": with_promotion("tpe", guard=False),
    "random+promotion ASHA+guard": with_promotion("random", guard=True),
    "random+promotion ASHA (no guard)": with_promotion("random", guard=False),
    "random+stop-type ASHA+guard": lambda s, w: (hpo_searcher("random", s, workers=w), asha(True)),
}


def run_all(seeds: range, settings: list[str], methods: list[str], workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for setting in settings:
        logs: dict[str, list[RunLog]] = {}
        for name in methods:
            started = time.monotonic()
            logs[name] = []
            for seed in seeds:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    searcher, scheduler = METHODS[name](seed, workers)
                    logs[name].append(simulate(searcher, scheduler, setting, seed, workers))
            print(f"{setting:>10} {name:<32} {time.monotonic() - started:6.1f}s", flush=True)
        out[setting] = summarize(logs)
    return out


def summarize(logs: dict[str, list[RunLog]]) -> dict[str, Any]:
    budget = BUDGET_FULL * MAX_T
    target = statistics.mean(log.best_at(budget) for log in logs["random+FIFO"])
    rows = {}
    for name, runs in logs.items():
        regrets = [log.best_at(budget) - OPTIMUM for log in runs]
        reach = [log.epochs_to_reach(target, budget) for log in runs]
        median_reach = statistics.median(reach)
        rows[name] = {
            "regret_mean": statistics.mean(regrets),
            "regret_median": statistics.median(regrets),
            "reach_rate": sum(math.isfinite(r) for r in reach) / len(reach),
            "speedup": budget / median_reach if math.isfinite(median_reach) else 0.0,
            "trials_mean": statistics.mean(log.trials for log in runs),
            "resumed_mean": statistics.mean(log.resumed for log in runs),
            "guard_notes": sum(bool(log.notes) for log in runs),
        }
    return {"target": target, "methods": rows}


def table(results: dict[str, Any]) -> str:
    lines = []
    for setting, res in results.items():
        lines.append(
            f"\n{setting}: target = random+FIFO's final best, mean over seeds = "
            f"{res['target']:.3f} (optimum {OPTIMUM})\n"
        )
        lines.append(
            "| method | regret (mean / median) | seeds reaching target | speedup | trials "
            "| resumed | seeds where the guard acted |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for name, r in res["methods"].items():
            lines.append(
                f"| {name} | {r['regret_mean']:.2f} / {r['regret_median']:.2f} | "
                f"{r['reach_rate']:.0%} | {r['speedup']:.1f}x | {r['trials_mean']:.0f} | "
                f"{r['resumed_mean']:.1f} | {r['guard_notes']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--workers", type=int, default=WORKERS, help="trials at a time")
    parser.add_argument("--out", default=None, help="write the summary as JSON here")
    parser.add_argument(
        "--max-paused",
        type=int,
        nargs="*",
        default=[],
        help="add the promotion method with early_terminate.max_paused set to each of these",
    )
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args(argv)
    for cap in args.max_paused:
        name = f"hpo TPE+promotion ASHA+guard, max_paused {cap}"
        METHODS[name] = with_promotion("tpe", guard=True, cap=cap)
        args.methods.append(name)
    if "random+FIFO" not in args.methods:
        args.methods.insert(0, "random+FIFO")  # the target every method is measured against
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = run_all(seeds, args.settings, args.methods, args.workers)
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps({"workers": args.workers, **results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
