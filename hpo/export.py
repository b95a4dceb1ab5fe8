"""Best checkpoint -> a Hugging Face model folder that `from_pretrained` loads.

A checkpoint holds what resuming needs (optimizer, scheduler, RNG state); the export keeps the
model, its tokenizer and config (with the label names), and adds the best hyperparameters. A LoRA
winner is exported merged (loads like any model) with its adapter beside it in `adapter/`.
The folder is assembled aside and moved into place, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import yaml

from hpo.errors import SpecError
from hpo.spec import JobSpec
from hpo.trial.reporter import TRIAL_STATE_FILE

TRAINING_STATE = (
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "trainer_state.json",
    "training_args.bin",
    TRIAL_STATE_FILE,
)
HYPERPARAMETERS_FILE = "hpo_best.yaml"


def read_best(run_dir: str) -> dict[str, Any]:
    from hpo.runinfo import DAMAGED_RECORD, not_a_run_dir, read_record

    path = os.path.join(run_dir, "best.yaml")
    if not os.path.isdir(run_dir):
        raise SpecError([not_a_run_dir(run_dir)])
    if not os.path.isfile(path):
        raise SpecError([f"{run_dir}: no best.yaml (did the search finish any evaluation?)"])
    best = read_record(path)
    if best is None:  # an empty file
        raise SpecError([f"{path}: {DAMAGED_RECORD}"])
    return best


def _copy_model_files(checkpoint: str, dest: str) -> None:
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(checkpoint):
        if name in TRAINING_STATE or name.startswith("rng_state"):
            continue
        src = os.path.join(checkpoint, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name))
        else:
            shutil.copy2(src, os.path.join(dest, name))


def _merge_lora(
    adapter_dir: str, dest: str, spec: JobSpec, labels: list[str] | None, hyperparameters: Any
) -> None:
    """The adapter merged into the base model the trial trained it on: built as the trial
    built it (the spec's `model.config` and the sampled `model.*` fields, a GGUF file, the
    labels), not from the adapter's base name alone, which would give the base's own shape."""
    from peft import PeftModel

    from hpo.trial.model import load_model
    from hpo.trial.run import Hyperparameters

    sampled = Hyperparameters.split(dict(hyperparameters or {})).model
    base = load_model(spec, labels, sampled)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.save_pretrained(dest)


def export_checkpoint(
    checkpoint: str, out_dir: str, best: dict[str, Any], spec: JobSpec, labels: list[str] | None
) -> str:
    """Write the model folder for `checkpoint` to `out_dir` (replacing it); returns out_dir."""
    if not checkpoint:
        raise SpecError(["best.yaml names no checkpoint for the best evaluation; cannot export"])
    if not os.path.isdir(checkpoint):
        raise SpecError([f"best checkpoint `{checkpoint}` is missing; cannot export"])
    out_dir = os.path.abspath(out_dir)
    card = {k: v for k, v in best.items() if k != "checkpoint"}
    if labels:
        card["labels"] = list(labels)
    with _staging(out_dir) as staging:
        if os.path.isfile(os.path.join(checkpoint, "adapter_config.json")):
            adapter = os.path.join(staging, "adapter")
            _copy_model_files(checkpoint, adapter)
            _write_yaml(os.path.join(adapter, HYPERPARAMETERS_FILE), card)
            _merge_lora(adapter, staging, spec, labels, best.get("hyperparameters"))
            _copy_tokenizer(adapter, staging)
        else:
            _copy_model_files(checkpoint, staging)
        _write_yaml(os.path.join(staging, HYPERPARAMETERS_FILE), card)
        _usual_modes(staging)
        _replace_dir(staging, out_dir)
    return out_dir


def _umask() -> int:
    """This process's umask, read without setting it (os.umask sets it, for every thread)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022  # not Linux: the usual one


def _usual_modes(folder: str) -> None:
    """Every file the mode the user's umask gives a new file: transformers writes its weights
    readable by their owner only (0600), and a model folder is for sharing."""
    umask = _umask()
    for dirpath, _, names in os.walk(folder):
        for name in names:
            os.chmod(os.path.join(dirpath, name), 0o666 & ~umask)


@contextlib.contextmanager
def _staging(out_dir: str) -> Iterator[str]:
    """A folder beside `out_dir` to build an export in; gone afterwards, whatever happened, so
    a failed export leaves nothing half-written (`_replace_dir` moves the result in)."""
    staging = f"{out_dir}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        os.makedirs(staging)
    except OSError as err:
        raise SpecError([f"{out_dir}: cannot be written ({err.strerror})"]) from None
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_tokenizer(src: str, dest: str) -> None:
    for name in os.listdir(src):
        if "token" in name or name in (
            "vocab.txt",
            "merges.txt",
            "vocab.json",
            "chat_template.jinja",
        ):
            shutil.copy2(os.path.join(src, name), os.path.join(dest, name))


def update_card(model_dir: str, best: dict[str, Any]) -> None:
    """The model folder's hpo_best.yaml again, from best.yaml as the search last wrote it (its
    held-out scores and data fingerprint come after the export), keeping the label names."""
    path = os.path.join(model_dir, HYPERPARAMETERS_FILE)
    with open(path) as f:
        card = yaml.safe_load(f) or {}
    labels = card.get("labels")
    card = {k: v for k, v in best.items() if k != "checkpoint"}
    if labels:
        card["labels"] = labels
    _write_yaml(path, card)


def _write_yaml(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)


def _replace_dir(staging: str, out_dir: str) -> None:
    old = f"{out_dir}.old-{os.getpid()}"
    if os.path.exists(out_dir):
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def check_out_dir(out_dir: str, run_dir: str) -> None:
    """`--out` replaces a model folder, never anything else: not a folder holding other
    files (a run directory, the storage of many), not a file, not a place that cannot be
    written. Said before anything is read or written."""
    from hpo.paths import is_remote_uri

    out = os.path.realpath(out_dir)
    local = not is_remote_uri(run_dir)
    if local and (out == os.path.realpath(run_dir) or _inside(run_dir, out)):
        raise SpecError([f"--out {out_dir}: holds the run directory {run_dir}; pick another"])
    if os.path.isfile(out):
        raise SpecError([f"--out {out_dir}: is a file; give a folder to write the model to"])
    exported_before = os.path.isfile(os.path.join(out, HYPERPARAMETERS_FILE))
    if os.path.isdir(out) and os.listdir(out) and not exported_before:
        raise SpecError(
            [
                f"--out {out_dir}: a folder with other files in it (not a model hpo exported, "
                "which it would replace); give a new or empty folder"
            ]
        )
    parent = os.path.dirname(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise SpecError([f"--out {out_dir}: cannot be written ({parent} is not a writable folder)"])


def export_run(run_dir: str, out_dir: str) -> str:
    """`hpo export`: the best checkpoint of a finished search as a model folder."""
    from hpo.paths import is_remote_uri
    from hpo.runinfo import read_run_spec

    check_out_dir(out_dir, run_dir)
    if is_remote_uri(run_dir):
        return _export_from_bucket(run_dir, out_dir)

    best = read_best(run_dir)
    spec = read_run_spec(run_dir)
    _say_if_still_running(run_dir)
    labels = best.get("labels") or None
    checkpoint = checkpoint_in(run_dir, best.get("checkpoint") or "")
    out = export_checkpoint(checkpoint, out_dir, best, spec, labels)
    from hpo.modelcard import write_model_card

    write_model_card(run_dir, out)
    return out


def _say_if_still_running(run_dir: str) -> None:
    """A search still running (a resume, a confirmation) may yet find a better model."""
    from hpo.driver_lock import driven_by

    holder = driven_by(run_dir)
    if holder is not None:
        print(
            f"hpo export: `{holder.get('command', 'hpo')}` (pid {holder.get('pid')}) is still "
            "working on this run: this is its best so far; export again when it ends",
            file=sys.stderr,
        )


def checkpoint_in(run_dir: str, recorded: str) -> str:
    """best.yaml's checkpoint, in `run_dir` as it is now: best.yaml names it by the path the
    search wrote it at, which a fetched, moved or renamed run directory no longer holds (or
    holds as the original's, which this copy must not export in its stead)."""
    if not recorded or _inside(recorded, run_dir):
        return recorded
    parts = os.path.normpath(recorded).split(os.sep)
    # A search's trial keeps its checkpoints at <run>/<trial>/, a confirmation's at
    # <run>/confirm/<trial>/; trial folder names are unique (id, number, date).
    for depth in (2, 3):
        candidate = os.path.join(run_dir, *parts[-depth:])
        if len(parts) > depth and os.path.isdir(candidate):
            return candidate
    return recorded


def _inside(path: str, folder: str) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)


def _export_from_bucket(uri: str, out_dir: str) -> str:
    """A bucket run's model folder, as its search exported it (`best_model/`), into `out_dir`.
    The checkpoints' paths in its best.yaml are the searching machine's; the export is not."""
    from hpo.storage import RunLocation

    out_dir = os.path.abspath(out_dir)
    with _staging(out_dir) as staging:
        RunLocation.at(uri).download(staging, ("spec.yaml", "best_model"))
        model = os.path.join(staging, "best_model")
        if not os.path.isdir(model):
            raise SpecError(
                [f"{uri}: no best_model yet (the search has not finished; `hpo resume` does)"]
            )
        _replace_dir(model, out_dir)
    return out_dir
