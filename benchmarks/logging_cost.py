"""Logging cost: the same search (benchmarks/overhead.py) with W&B offline, then disabled.

Each run is its own process (its own Ray and W&B service); the runs alternate off/on `--repeats`
times so drifting machine load falls on both sides. Reported: the wall of Tuner.fit() per mode
(median) and the ratio on / off (target: at most 1.10).

    .venv/bin/python benchmarks/logging_cost.py --trials 6 --steps 60 \\
        --json benchmarks/results/logging_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine, write_json

HERE = os.path.dirname(os.path.abspath(__file__))


def one_run(mode: str, args: argparse.Namespace, index: int) -> dict:
    out = tempfile.mktemp(suffix=".json")
    if args.keep:
        out = os.path.join(args.keep, f"logging_cost-wandb_{mode}-{index}.json")
    cmd = [
        sys.executable,
        os.path.join(HERE, "overhead.py"),
        "--trials",
        str(args.trials),
        "--steps",
        str(args.steps),
        "--layers",
        str(args.layers),
        "--scheduler",
        args.scheduler,
        "--wandb",
        mode,
        "--json",
        out,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        result = json.load(f)
    if not args.keep:
        os.unlink(out)
    keep = ("wall_fit_s", "utilization", "overhead_per_trial_slot_s", "compute_s")
    return {k: result[k] for k in keep}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--scheduler", default="none", choices=["none", "asha"])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--keep", help="a folder for each run's full overhead.py result")
    p.add_argument("--json", help="write the result here too")
    args = p.parse_args()
    info = machine()
    runs: dict[str, list[dict]] = {"disabled": [], "offline": []}
    for i in range(args.repeats):
        for mode in ("disabled", "offline"):
            runs[mode].append(one_run(mode, args, i))
    off = statistics.median(r["wall_fit_s"] for r in runs["disabled"])
    on = statistics.median(r["wall_fit_s"] for r in runs["offline"])
    # Wall also moves with how long the trials happened to train (machine load); the overhead
    # per trial, which excludes training, is the steadier figure.
    ov_off = statistics.median(r["overhead_per_trial_slot_s"] for r in runs["disabled"])
    ov_on = statistics.median(r["overhead_per_trial_slot_s"] for r in runs["offline"])
    write_json(
        args.json,
        {
            "benchmark": "logging_cost",
            "machine": info,
            "settings": vars(args),
            "wall_fit_s_wandb_disabled": off,
            "wall_fit_s_wandb_offline": on,
            "ratio_on_off": round(on / off, 3),
            "overhead_per_trial_s_wandb_disabled": ov_off,
            "overhead_per_trial_s_wandb_offline": ov_on,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
