"""What one configuration that cannot work costs a search: the quickstart (all-MiniLM-L6-v2 on
Rotten Tomatoes snippets) with an optimizer whose package (torchdistx) the workers lack, which
the trial's Trainer refuses after it loaded the model and data. (BENCHMARKS.md's first figures
used a dropout of 1.5, which `hpo validate` now refuses before Ray starts.)

Each search is a real `hpo run` in its own process (Ray Tune, `retries: 2`). Reported: the whole
run's wall time, the seconds from the trial's first failure to its last (its restarts), how
many failures Ray recorded, and how many lines of output the terminal got (stderr).
`--hpo-path` runs another checkout's hpo with this venv (the comparison before/after a change).

    .venv/bin/python benchmarks/failing_trial.py --repeats 2 --out failing_trial.json
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import hpo_run_command

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "search_spaces" / "quickstart.yaml"
SETS = [
    "run_cap=1",
    "retries=2",
    "parameters.optim.value=adamw_anyprecision",
    "data.max_train_samples=300",
    "tracking.wandb.mode=disabled",
]
_FAILURE = re.compile(r"Failure # \d+ \(occurred at ([0-9-]+_[0-9-]+)\)")


def run_once(storage: str, hpo_path: str | None) -> dict:
    command, env = hpo_run_command(str(SPEC), "bad", storage, SETS, hpo_path)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=storage)
    wall = time.perf_counter() - started
    times = failure_times(storage)
    return {
        "exit_code": done.returncode,
        "wall_s": round(wall, 1),
        "failures": len(times),
        "restarts_s": round(times[-1] - times[0], 1) if times else None,
        "stderr_lines": len(done.stderr.splitlines()),
    }


def failure_times(storage: str) -> list[float]:
    """When Ray recorded each failure of the search's one trial (its error.txt)."""
    files = glob.glob(os.path.join(storage, "bad", "*", "error.txt"))
    if not files:
        return []
    stamps = _FAILURE.findall(Path(files[0]).read_text())
    return [datetime.datetime.strptime(s, "%Y-%m-%d_%H-%M-%S").timestamp() for s in stamps]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hpo-path", default=None, help="another checkout to run instead")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="hpo-bench-fail-") as storage:
            rows.append(run_once(storage, args.hpo_path))
            print(json.dumps(rows[-1]), flush=True)
    summary = {
        "hpo": args.hpo_path or str(ROOT),
        "runs": rows,
        "wall_s_median": statistics.median(r["wall_s"] for r in rows),
    }
    print(json.dumps(summary))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
