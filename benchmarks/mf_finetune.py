"""Real fine-tuning, reduced for 2 CPU cores: plain TPE+ASHA vs the multi-fidelity-aware variants.

The quickstart search (all-MiniLM-L6-v2 on Rotten Tomatoes snippets, search_spaces/quickstart.yaml)
with the same budget (run_cap trials) per method, several seeds; each search is a real `hpo run`
(Ray Tune, Optuna TPE, the HF Trainer) in its own process. Reported per method: the best
validation accuracy, the exported model's held-out test accuracy, and the compute per trial
(evaluations per trial; one evaluation = a third of an epoch of training).

    .venv/bin/python benchmarks/mf_finetune.py --seeds 0 1 2 --out benchmarks/mf_finetune.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hpo.report.rundata import read_notes

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "search_spaces" / "quickstart.yaml"

# Stop-type ASHA was hpo's default until the eighth session; promotion is now.
METHODS = {
    "TPE+ASHA (plain: no guard)": [
        "early_terminate.promotion=false",
        "early_terminate.guard=false",
    ],
    "TPE+promotion ASHA+guard (default)": ["early_terminate.promotion=true"],
    "TPE+promotion ASHA+guard (default) + rung_model": [
        "early_terminate.promotion=true",
        "rung_model=true",
    ],
    "TPE+stop-type ASHA+guard": ["early_terminate.promotion=false"],
    "TPE+promotion ASHA (no guard)": [
        "early_terminate.promotion=true",
        "early_terminate.guard=false",
    ],
    # The default until the seventeenth session: TPE throughout, without hpo.hedge.
    "TPE+promotion ASHA+guard (default), hedge off": [
        "early_terminate.promotion=true",
        "hedge=false",
    ],
}


def run_one(method: str, seed: int, storage: str, extra: list[str]) -> dict:
    name = f"m{list(METHODS).index(method)}-s{seed}"
    sets = [*METHODS[method], f"seed={seed}", "tracking.wandb.mode=disabled", *extra]
    command = [str(Path(sys.executable).parent / "hpo"), "run", str(SPEC), "--quiet"]
    command += ["--name", name, "--storage", storage]
    for item in sets:
        command += ["--set", item]
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - started
    run = Path(storage, name)
    best = yaml.safe_load((run / "best.yaml").read_text())
    with open(run / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    evaluations = [int(float(t["evaluations"] or 0)) for t in trials]
    return {
        "method": method,
        "seed": seed,
        "best_val_accuracy": float(best["value"]),
        "test_accuracy": float((best.get("test_metrics") or {}).get("eval_accuracy", "nan")),
        "trials": len(trials),
        "evaluations": sum(evaluations),
        "evaluations_per_trial": sum(evaluations) / max(1, len(trials)),
        "wall_s": wall,
        "notes": read_notes(str(run)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--set", action="append", default=[], help="extra spec overrides")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpo-mf-finetune-") as storage:
        for seed in args.seeds:
            for method in args.methods:
                row = run_one(method, seed, storage, args.set)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| method | best val acc (mean) | test acc (mean) | evaluations/trial | wall s |")
    print("|---|---|---|---|---|")
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        mean = {
            k: statistics.mean(r[k] for r in mine) for k in mine[0] if k not in ("method", "notes")
        }
        print(
            f"| {method} | {mean['best_val_accuracy']:.3f} | {mean['test_accuracy']:.3f} | "
            f"{mean['evaluations_per_trial']:.2f} | {mean['wall_s']:.0f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
