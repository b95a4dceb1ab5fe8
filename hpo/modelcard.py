"""best_model/README.md: a model card that says what the model is and how it was found.

Everything comes from the run directory (spec.yaml, trials.csv, best.yaml, confirm.yaml), so
`hpo export` can rewrite the card long after the search. The data's fingerprint is recorded in
best.yaml when the model is first documented, while the data is at hand.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from hpo.confirm import spread
from hpo.export import update_card
from hpo.paths import looks_like_path
from hpo.report.rundata import RunData, load_run
from hpo.report.tables import best_run, compute_spent
from hpo.tasks import is_cost

CARD_FILE = "README.md"
AUTO_CLASSES = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "causal-lm": "AutoModelForCausalLM",
}
BASE_PLACEHOLDER = "path/to/the/base/model"
PIPELINES = {"sequence-classification": "text-classification", "causal-lm": "text-generation"}


def document_model(run_dir: str, model_dir: str, data: Any) -> str:
    """Record the data's fingerprint in best.yaml, then write the model card; returns its path."""
    from hpo.results import write_text_atomic

    path = os.path.join(run_dir, "best.yaml")
    with open(path) as f:
        best = yaml.safe_load(f) or {}
    best["data"] = {"fingerprint": data.fingerprint, **dict(data.stats)}
    write_text_atomic(path, yaml.safe_dump(best, sort_keys=False))
    update_card(model_dir, best)  # as `hpo export` would write it now
    return write_model_card(run_dir, model_dir)


def write_model_card(run_dir: str, model_dir: str) -> str:
    from hpo.results import write_text_atomic

    path = os.path.join(model_dir, CARD_FILE)
    write_text_atomic(path, render_card(load_run(run_dir)))
    return path


def _front_matter(run: RunData) -> str:
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": PIPELINES.get(run.spec.task, run.spec.task),
        "tags": ["hpo", "hyperparameter-search", "ray-tune", "optuna"],
    }
    base = run.spec.model.name_or_path
    if not looks_like_path(base) and not os.path.exists(base):
        meta["base_model"] = base  # a Hub id: the Hub links the card to it
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n"


def _metric_line(run: RunData, best: dict[str, Any]) -> str:
    line = f"**{best['metric']} = {best['value']:.4g}** on the validation split"
    confirmed = best.get("confirmed")
    if confirmed and confirmed.get("mean") is not None:
        line += f"; retrained on fresh seeds, this configuration scored **{spread(confirmed)}**"
        if confirmed.get("std") is not None:
            line += f" (min {confirmed['min']:.4g}, max {confirmed['max']:.4g})"
    else:
        line += " (one training run: its seed spread was not measured; see `hpo confirm`)"
    return line


def _sources(spec: Any) -> str:
    data = spec.data
    if data.dataset:
        return f"`{data.dataset}`" + (f" ({data.config})" if data.config else "")
    files = data.train if isinstance(data.train, list) else [data.train]
    return ", ".join(f"`{f}`" for f in files)


def _data_lines(spec: Any, stats: dict[str, Any]) -> list[str]:
    """What the model was trained and scored on, in words: the split sizes it saw (after the
    carve and the caps, not the rows read), what cleaning removed, and the caps."""
    from hpo.data import data_line, data_unit

    counts = {k: v for k, v in stats.items() if k.endswith(("_examples", "_removed"))}
    if not any(k.endswith("_examples") for k in counts):
        return []  # an older run's record
    lines = [f"- {data_line(counts, data_unit(spec)).removeprefix('data: ')}"]
    caps = {"max_train_samples": "training", "max_eval_samples": "validation"}
    for key, split in caps.items():
        if getattr(spec.data, key, None):
            lines.append(f"- {split} capped at {getattr(spec.data, key)} texts (`data.{key}`)")
    return lines


def _software_line(run_dir: str) -> list[str]:
    """The versions the search started with (environment.yaml; none for older runs)."""
    from hpo.environment import read

    versions = (read(run_dir) or {}).get("versions") or {}
    shown = [f"{k} {v}" for k, v in versions.items() if k != "platform" and v != "absent"]
    return [f"- Software: {', '.join(shown)}"] if shown else []


def _table(rows: dict[str, Any]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in rows.items()]
    return lines


def render_card(run: RunData) -> str:
    best = run.best or {}
    spec = run.spec
    data = best.get("data") or {}
    counts = run.trials["outcome"].value_counts().to_dict()
    auto = AUTO_CLASSES.get(spec.task, "AutoModel")
    lines = [
        _front_matter(run),
        f"# `{run.name}`: a fine-tuned {spec.task} model",
        "",
        f"Found by the hyperparameter search `{run.name}` (hpo: Ray Tune, Optuna, ASHA).",
        "",
        "## Model",
        f"- Task: {spec.task}",
        f"- Base model: `{spec.model.name_or_path}`"
        + (f", its GGUF file `{spec.model.gguf_file}`" if spec.model.gguf_file else ""),
    ]
    if best.get("labels"):
        lines.append(f"- Labels: {', '.join(map(str, best['labels']))}")
    lines += [
        "",
        "## Data",
        f"- Training data: {_sources(spec)}",
        f"- Fingerprint of the cleaned splits: `{data.get('fingerprint', 'not recorded')}`",
        *_data_lines(spec, data),
    ]
    lines += ["", "## Result", _metric_line(run, best)]
    if best.get("test_metrics"):
        scores = {k: v for k, v in best["test_metrics"].items() if not is_cost(k)}  # older runs
        lines += ["", "Held-out test split:", *_table(scores)]
    lines += ["", "## Hyperparameters", *_table(best.get("hyperparameters") or {})]
    lines += [
        "",
        "## How it was found",
        f"- Method: {spec.method} (Optuna), early stopping: {spec.early_terminate.type}",
        f"- Trials: {len(run.trials)} ("
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + ")",
        f"- Compute spent: {compute_spent(run)}; the search took "
        f"{run.wall_seconds():.0f} s of wall time",
        f"- Exported: {best_run(best)}",
        *_software_line(run.run_dir),
        "",
        "## Use",
        "```python",
        f"from transformers import {auto}, AutoTokenizer",
        f'model = {auto}.from_pretrained("path/to/this/folder")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        "```",
    ]
    if (best.get("hyperparameters") or {}).get("strategy") == "lora":
        lines += _adapter_use(run, auto)
    return "\n".join([*lines, ""])


def _adapter_use(run: RunData, auto: str) -> list[str]:
    """The LoRA winner is exported merged, and as its adapter alone (`adapter/`), which loads
    onto the base as the search loaded it: a GGUF base by its file, a head by its labels."""
    model = run.spec.model
    extra = f', gguf_file="{model.gguf_file}"' if model.gguf_file else ""
    labels = (run.best or {}).get("labels")
    if labels:  # the head's size and names, as the search loaded the base
        extra += f", id2label={dict(enumerate(labels))!r}"
        label2id = {name: i for i, name in enumerate(labels)}
        extra += f", label2id={label2id!r}"
    # The config fields the trial set: the spec's, and the sampled `model.*` ones.
    from hpo.trial.run import Hyperparameters

    sampled = Hyperparameters.split(dict((run.best or {}).get("hyperparameters") or {})).model
    extra += "".join(f", {k}={v!r}" for k, v in {**model.config, **sampled}.items())
    base = model.name_or_path
    local = looks_like_path(base) or os.path.exists(base)  # this machine's path: not the reader's
    shown = BASE_PLACEHOLDER if local else base
    return [
        "",
        "The LoRA adapter alone (its own weights only) is in `adapter/`; it loads onto the "
        "base model" + (f" (the search's: `{base}`):" if local else ":"),
        "```python",
        "from peft import PeftModel",
        f"from transformers import {auto}",
        f'base = {auto}.from_pretrained("{shown}"{extra})',
        'model = PeftModel.from_pretrained(base, "path/to/this/folder/adapter")',
        "```",
    ]
