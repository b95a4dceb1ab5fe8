"""One trial, top to bottom: sampled config -> model and TrainingArguments -> Trainer -> reports.

This is the function Ray Tune runs on a worker. It imports nothing from the searcher, scheduler
or tuner; it talks to them only through its `Reporter`.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from hpo.data import PreparedData
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
        for name, value in config.items():
            if name.startswith("model."):
                model[name[len("model.") :]] = value
            elif name in RECIPE_PARAMS:
                recipe[name] = value
            else:
                training[name] = value
        return cls(training, model, recipe)


def training_arguments(spec: JobSpec, sampled: dict[str, Any], seed: int, output_dir: str) -> Any:
    from transformers import TrainingArguments

    kwargs = {**TRAINING_DEFAULTS, **spec.training, **sampled, **TRAINING_MANAGED}
    if str(kwargs.get("eval_strategy")) == "steps" and "eval_steps" not in kwargs:
        kwargs["eval_steps"] = kwargs["logging_steps"]
    return TrainingArguments(output_dir=output_dir, seed=seed, data_seed=seed, **kwargs)


def build_trainer(
    config: dict[str, Any], spec: JobSpec, data: PreparedData, reporter: Any, output_dir: str
) -> Any:
    import transformers

    from hpo.trial.callback import ReportCallback
    from hpo.trial.metrics import classification_metrics
    from hpo.trial.model import apply_strategy, load_model, trainable_parameters

    hp = Hyperparameters.split(config)
    seed = int(hp.recipe.get("seed", spec.seed))
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
        extra={"trainable_params": float(trainable_parameters(model))},
        patience=int(patience) if patience else None,
        threshold=float(hp.recipe.get("early_stopping.threshold", 0.0)),
        perplexity=is_lm,
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


def train_trial(
    config: dict[str, Any], *, spec: JobSpec, data: PreparedData, reporter: Any = None
) -> None:
    """Ray Tune's function trainable: trains one configuration, reporting every evaluation."""
    import torch

    from hpo.trial.persist import link_checkpoints_into_local_storage
    from hpo.trial.reporter import TuneReporter

    if reporter is None:
        link_checkpoints_into_local_storage()
        reporter = TuneReporter()
    torch.set_num_threads(max(1, int(spec.resources.cpu)))
    output_dir = tempfile.mkdtemp(prefix="hpo-trial-")
    try:
        trainer = build_trainer(config, spec, data, reporter, output_dir)
        with reporter.restored_checkpoint() as resume_from:
            if resume_from:
                _report_callback(trainer).restore(resume_from)
            trainer.train(resume_from_checkpoint=resume_from)
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)


def _report_callback(trainer: Any) -> Any:
    from hpo.trial.callback import ReportCallback

    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, ReportCallback))
