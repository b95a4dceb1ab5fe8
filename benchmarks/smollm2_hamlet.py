"""SmolLM2-135M + Hamlet, LoRA: does the search lower validation perplexity below the base model?

    python benchmarks/smollm2_hamlet.py [--storage DIR]

Runs search_spaces/smollm2/hamlet_lora.yaml through `hpo run`, then scores the untouched base
model on the same validation blocks, and prints both perplexities.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "search_spaces" / "smollm2" / "hamlet_lora.yaml"


def base_perplexity(spec, data) -> float:
    import math

    import torch
    import transformers

    from hpo.trial.model import load_model

    model = load_model(spec, None, {})
    with torch.no_grad():
        losses = []
        for i in range(0, len(data.validation), 8):
            batch = transformers.default_data_collator(
                [data.validation[j] for j in range(i, min(i + 8, len(data.validation)))]
            )
            out = model(**batch)
            losses.append((out.loss.item(), len(batch["input_ids"])))
    mean = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
    return math.exp(mean)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--storage", default=str(ROOT / "runs"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hpo.cli import main as hpo
    from hpo.config import load_spec
    from hpo.data import prepare

    name = f"smollm2-hamlet-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.time()
    code = hpo(["run", str(SPEC), "--name", name, "--storage", args.storage, "--quiet"])
    if code:
        return code
    wall = time.time() - started
    spec = load_spec(SPEC, [f"storage={args.storage}"])
    data = prepare(spec)
    import yaml

    best = yaml.safe_load(Path(args.storage, name, "best.yaml").read_text())
    base = base_perplexity(spec, data)
    print(f"validation blocks: {len(data.validation)} x {spec.data.max_length} tokens")
    print(f"base model perplexity:      {base:.2f}")
    print(
        f"best LoRA trial perplexity: {best['value']:.2f} (trial {best['trial_id']}, "
        f"{best['hyperparameters']})"
    )
    print(f"search wall time: {wall:.0f} s; run directory: {Path(args.storage, name)}")
    return 0 if best["value"] < base else 1


if __name__ == "__main__":
    sys.exit(main())
