"""Score a saved model folder on a prepared split, the way trials were scored."""

from __future__ import annotations

import math
import tempfile
from typing import Any

from hpo.spec import JobSpec


def evaluate_folder(
    model_dir: str, spec: JobSpec, dataset: Any, tokenizer: Any
) -> dict[str, float]:
    """Metrics (eval_*) of the model in `model_dir` on `dataset`."""
    import transformers

    from hpo.trial.metrics import classification_metrics
    from hpo.trial.model import model_class
    from hpo.trial.run import pin_memory

    is_lm = spec.task == "causal-lm"
    model = model_class(spec.task).from_pretrained(model_dir)
    with tempfile.TemporaryDirectory(prefix="hpo-eval-") as out:
        args = transformers.TrainingArguments(
            output_dir=out,
            report_to="none",
            per_device_eval_batch_size=64,
            disable_tqdm=True,
            dataloader_pin_memory=pin_memory(),
        )
        collator = (
            transformers.default_data_collator
            if is_lm
            else transformers.DataCollatorWithPadding(tokenizer)
        )
        trainer = transformers.Trainer(
            model=model,
            args=args,
            eval_dataset=dataset,
            data_collator=collator,
            compute_metrics=None if is_lm else classification_metrics,
        )
        trainer.remove_callback(transformers.PrinterCallback)
        metrics = trainer.evaluate()
    if is_lm:
        metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 700.0))
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
