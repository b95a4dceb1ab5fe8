"""What a finished search leaves on disk: the quickstart (all-MiniLM-L6-v2 on Rotten Tomatoes
snippets), reduced, run to the end as a user runs it (`hpo run` in its own process).

Reported: the run directory's size, its checkpoints (count and bytes), and the bytes of what
only a resume reads (optimizer, scheduler, scaler and RNG states) among them. `--hpo-path`
runs another checkout's hpo with this venv (the comparison before/after a change).

    .venv/bin/python benchmarks/disk_after_search.py --out disk_after_search.json
    .venv/bin/python benchmarks/disk_after_search.py --set tracking.wandb.mode=disabled  # whole
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import hpo_run_command

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "search_spaces" / "quickstart.yaml"
SETS = ["run_cap=4", "data.max_train_samples=400", "tracking.wandb.mode=disabled"]
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")


def size_of(paths: list[str]) -> int:
    total = 0
    for path in paths:
        if os.path.isfile(path):
            total += os.path.getsize(path)
        for folder, _, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


def measure(run_dir: str) -> dict:
    checkpoints = sorted(glob.glob(os.path.join(run_dir, "*", "checkpoint_*")))
    resume_only = [
        p
        for pattern in RESUME_ONLY
        for c in checkpoints
        for p in glob.glob(os.path.join(c, pattern))
    ]
    return {
        "run_dir_bytes": size_of([run_dir]),
        "checkpoints": len(checkpoints),
        "checkpoint_bytes": size_of(checkpoints),
        "resume_only_bytes": size_of(resume_only),
        "best_model_bytes": size_of([os.path.join(run_dir, "best_model")]),
    }


def run_once(storage: str, hpo_path: str | None, sets: list[str]) -> dict:
    command, env = hpo_run_command(str(SPEC), "disk", storage, sets, hpo_path)
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"hpo run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {
        "wall_s": round(time.monotonic() - started, 1),
        **measure(os.path.join(storage, "disk")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hpo-path", help="another checkout's folder holding hpo/")
    parser.add_argument("--out", help="write the result as JSON here")
    parser.add_argument(
        "--set", action="append", help=f"the search's overrides (default: {' '.join(SETS)})"
    )
    args = parser.parse_args()
    sets = args.set or SETS
    with tempfile.TemporaryDirectory(prefix="hpo-disk-") as storage:
        result = run_once(storage, args.hpo_path, sets)
    result.update(
        spec=str(SPEC.relative_to(ROOT)),
        sets=sets,
        hpo_path=args.hpo_path,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
