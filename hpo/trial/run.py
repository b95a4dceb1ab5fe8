"""One trial, top to bottom: sampled config -> model and TrainingArguments -> Trainer -> reports.

This is the function Ray Tune runs on a worker. It imports nothing from the searcher, scheduler
or tuner; it talks to them only through its `Reporter`.
"""

from __future__ import annotations

import functools
import glob
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from hpo.data import PreparedData
from hpo.space import base_name
from hpo.spec import JobSpec
from hpo.tasks import RECIPE_PARAMS

# TrainingArguments hpo chooses unless the spec says otherwise.
TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "logging_strategy": "steps",
    "logging_steps": 5,
    "per_device_eval_batch_size": 64,
    "dataloader_num_workers": 0,
}
# ... and those it always sets: the search depends on them.
TRAINING_MANAGED: dict[str, Any] = {
    "report_to": "none",
    "save_strategy": "no",  # hpo's callback asks for a checkpoint at each evaluation
    "disable_tqdm": True,
    "logging_nan_inf_filter": False,  # a NaN loss must be seen to stop a diverging trial
}


@dataclass
class Hyperparameters:
    """A sampled config, split by where each value goes."""

    training: dict[str, Any]
    model: dict[str, Any]
    recipe: dict[str, Any]

    @classmethod
    def split(cls, config: dict[str, Any]) -> Hyperparameters:
        training, model, recipe = {}, {}, {}
        for key, value in config.items():
            name = base_name(key)  # a variant (`learning_rate@lora`) sets its base name
            if name.startswith("model."):
                model[name[len("model.") :]] = value
            elif name in RECIPE_PARAMS:
                recipe[name] = value
            else:
                training[name] = value
        return cls(training, model, recipe)


def training_values(spec: JobSpec, sampled: dict[str, Any]) -> dict[str, Any]:
    """The TrainingArguments a configuration sets: hpo's defaults, the spec's fixed values and
    the sampled ones on top (not what hpo manages for the search, TRAINING_MANAGED)."""
    values = {**TRAINING_DEFAULTS, **spec.training, **sampled}
    if str(values.get("eval_strategy")) == "steps" and "eval_steps" not in values:
        values["eval_steps"] = values["logging_steps"]
    return values


def trial_seed(spec: JobSpec, recipe: dict[str, Any]) -> int:
    """A trial's seed: the sampled one, else the spec's."""
    return int(recipe.get("seed", spec.seed))


def training_arguments(spec: JobSpec, sampled: dict[str, Any], seed: int, output_dir: str) -> Any:
    from transformers import TrainingArguments

    kwargs = {
        "dataloader_pin_memory": pin_memory(),
        **training_values(spec, sampled),
        **TRAINING_MANAGED,
    }
    return TrainingArguments(output_dir=output_dir, seed=seed, data_seed=seed, **kwargs)


def pin_memory() -> bool:
    """Pinned host memory speeds copies to an accelerator only; without one, torch warns at
    every data loader (each evaluation) that it is ignored."""
    import torch

    return bool(torch.accelerator.is_available())


def build_trainer(
    config: dict[str, Any], spec: JobSpec, data: PreparedData, reporter: Any, output_dir: str
) -> Any:
    import transformers

    from hpo.trial.callback import ReportCallback
    from hpo.trial.metrics import classification_metrics
    from hpo.trial.model import apply_strategy, load_model, trainable_parameters

    hp = Hyperparameters.split(config)
    seed = trial_seed(spec, hp.recipe)
    transformers.set_seed(seed)  # before the model: a new head's initial weights follow the seed
    model = load_model(spec, data.label_names, hp.model)
    model = apply_strategy(model, spec.task, hp.recipe)
    args = training_arguments(spec, hp.training, seed, output_dir)
    is_lm = spec.task == "causal-lm"
    patience = hp.recipe.get("early_stopping.patience")
    callback = ReportCallback(
        reporter,
        metric=spec.primary.name,
        goal=spec.primary.goal or "maximize",
        extra={"trainable_params": trainable_parameters(model)},  # a count: 770, not 770.0
        patience=int(patience) if patience else None,
        threshold=float(hp.recipe.get("early_stopping.threshold", 0.0)),
        perplexity=is_lm,
        resume_every_s=resume_interval(spec),
        pause_points=pause_points(spec, len(data.train)),
    )
    collator = (
        transformers.default_data_collator
        if is_lm
        else transformers.DataCollatorWithPadding(data.tokenizer)
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=collator,
        processing_class=data.tokenizer,
        compute_metrics=None if is_lm else classification_metrics,
        callbacks=[callback],
    )
    trainer.remove_callback(transformers.PrinterCallback)  # the driver's table shows progress
    return trainer


def resume_interval(spec: JobSpec) -> float:
    """Seconds between resumable checkpoints: HyperBand may pause a trial at any evaluation and
    resumes it from there, so with it every evaluation must be resumable."""
    return 0.0 if spec.early_terminate.type == "hyperband" else spec.checkpoints.resume_interval_s


def pause_points(spec: JobSpec, n_train: int) -> frozenset[int]:
    """The evaluations where promotion-type ASHA may pause a trial: its rungs below a full trial.
    Only there must a checkpoint be resumable, not at every evaluation (a full checkpoint with
    the optimizer state is ~3x the weights)."""
    et = spec.early_terminate
    if not et.promotes:
        return frozenset()
    from hpo.schedulers import evaluations_per_trial, milestones

    max_t = evaluations_per_trial(spec, n_train)
    rungs = milestones(min(et.min_iter, max_t), max_t, et.eta)
    return frozenset(math.ceil(r) for r in rungs)  # the first evaluation at or past each


@functools.cache
def prepare_worker_process() -> None:
    """Once per worker process, before its first trial: cut what every trial pays outside compute.

    - The imports (torch, transformers: ~500k objects) are frozen out of the cyclic garbage
      collector. Accelerate runs gc.collect() at the start of every training and Python runs full
      collections during it; each scanned all of them (0.27 s per collection on 2 cores), though
      they live as long as the process. After the freeze a collection takes ~3 ms. Only what
      exists before the first trial is frozen; trials' own objects are collected as before.
    - Checkpoints are written without zip CRC-32s: torch.save writes Adam's state 2-4x faster
      (0.05 s instead of 0.09-0.23 s per 200 MB), torch.load reads it the same, and a checkpoint
      lives for the search only (the safetensors weights carry no checksum either).
    """
    import gc

    import torch
    import transformers

    import hpo.trial.callback
    import hpo.trial.metrics
    import hpo.trial.model  # noqa: F401  (loaded before the freeze)

    # transformers imports lazily: load what every trial uses before freezing.
    _ = transformers.Trainer, transformers.TrainingArguments, transformers.DataCollatorWithPadding
    torch.serialization.set_crc32_options(False)
    gc.collect()
    gc.freeze()


def train_trial(
    config: dict[str, Any],
    *,
    spec: JobSpec,
    data: PreparedData,
    reporter: Any = None,
    bar_key: str | None = None,
) -> None:
    """Ray Tune's function trainable: trains one configuration, reporting every evaluation;
    `bar_key` names the search's checkpoint bar (`hpo.checkpoint_bar`). An error a restart
    would meet again is recorded, and a restart meets the record instead (`hpo.trial.failures`)."""
    from hpo.trial.failures import describe, fails_for_good, repeated

    on_ray = reporter is None
    if reporter is None:
        from hpo.trial.reporter import TuneReporter

        reporter = TuneReporter(bar_key)
    if first_failure := reporter.earlier_failure():
        raise repeated(first_failure)  # before the imports and the model load it would repeat
    try:
        _train(config, spec, data, reporter, on_ray)
    except Exception as error:
        if fails_for_good(error):
            reporter.record_failure(describe(error))
        raise


def _train(
    config: dict[str, Any], spec: JobSpec, data: PreparedData, reporter: Any, on_ray: bool
) -> None:
    import torch

    from hpo.trial.persist import link_checkpoints_into_local_storage

    if on_ray:
        prepare_worker_process()
        link_checkpoints_into_local_storage()
    torch.set_num_threads(max(1, int(spec.resources.cpu)))
    remove_abandoned_output_dirs()
    output_dir = tempfile.mkdtemp(prefix=f"{OUTPUT_PREFIX}{_host()}-{os.getpid()}-")
    try:
        trainer = build_trainer(config, spec, data, reporter, output_dir)
        with reporter.restored_checkpoint() as resume_from:
            if resume_from:
                _report_callback(trainer).restore(resume_from)
            trainer.train(resume_from_checkpoint=resume_from)
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)


OUTPUT_PREFIX = "hpo-trial-"  # + the host and pid of the worker that writes it


def remove_abandoned_output_dirs() -> None:
    """Delete the output folders of this host's trial workers that no longer run: a worker
    killed (a driver's kill -9, a lost actor) never reaches its own cleanup, and a folder can
    hold a checkpoint on its way to storage, a whole model. (A temp folder other hosts share
    holds theirs too, whose pids mean nothing here.)"""
    mine = f"{OUTPUT_PREFIX}{_host()}-"
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"{mine}*-*")):
        pid = os.path.basename(folder)[len(mine) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _host() -> str:
    import socket

    return socket.gethostname().replace("-", "_")  # "-" separates the name's parts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _report_callback(trainer: Any) -> Any:
    from hpo.trial.callback import ReportCallback

    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, ReportCallback))
