"""What each task reports, and the recipe parameters a search may set besides TrainingArguments.

Kept free of heavy imports: validation reads it before torch or Ray are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

# Reported by every task: the size of the trainable part (a cost to minimize in
# multi-objective searches) and the evaluation's own speed.
COMMON_METRICS = ("eval_loss", "trainable_params", "eval_runtime", "eval_samples_per_second")


@dataclass(frozen=True)
class TaskInfo:
    name: str
    metrics: tuple[str, ...]
    default_metric: str

    @property
    def all_metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.metrics + COMMON_METRICS))


TASKS = {
    "sequence-classification": TaskInfo(
        "sequence-classification",
        ("eval_accuracy", "eval_f1", "eval_precision", "eval_recall"),
        "eval_accuracy",
    ),
    "causal-lm": TaskInfo("causal-lm", ("eval_perplexity",), "eval_loss"),
}


def is_cost(metric: str) -> bool:
    """Timing and speed entries of an evaluation: not scores of the model."""
    return any(w in metric for w in ("runtime", "per_second", "preparation_time"))


_MINIMIZED = ("loss", "perplexity", "runtime", "params", "latency", "error")


def default_goal(metric: str) -> str:
    """Losses, perplexity, costs and times go down; everything else goes up."""
    return "minimize" if any(word in metric for word in _MINIMIZED) else "maximize"


# Fine-tuning recipe: searchable like any hyperparameter (`strategy: {values: [full, lora]}`).
STRATEGIES = ("full", "freeze", "head", "lora")
RECIPE_PARAMS = {
    "strategy": "how to fine-tune: full, freeze (embeddings + lowest N blocks), head, lora",
    "freeze.layers": "with strategy freeze: number of lowest transformer blocks frozen",
    "lora.r": "with strategy lora: the adapters' rank (default 8)",
    "lora.lora_alpha": "with strategy lora: scaling numerator (default 16)",
    "lora.lora_dropout": "with strategy lora: dropout on the adapter branch (default 0)",
    "lora.target_modules": "with strategy lora: a list of module names, or 'all-linear' "
    "(default: PEFT's for the architecture)",
    "early_stopping.patience": "stop a trial after this many evaluations without improvement",
    "early_stopping.threshold": "smallest change that counts as an improvement",
    "seed": "the trial's training seed (default: the search's seed)",
}

# TrainingArguments fields hpo sets itself: a spec may not, since the search relies on them.
MANAGED_TRAINING_ARGS = {
    "output_dir": "each trial writes to its own folder",
    "report_to": "hpo reports every evaluation to Ray Tune and W&B itself",
    "save_strategy": "hpo checkpoints at each evaluation",
    "save_steps": "hpo checkpoints at each evaluation",
    "save_total_limit": "use checkpoints.keep",
    "load_best_model_at_end": "hpo exports the best checkpoint over the whole search",
    "push_to_hub": "export with `hpo export`",
    "run_name": "each trial is named after its Ray trial id",
    "disable_tqdm": "the live trial table replaces progress bars",
    "seed": "set the spec's `seed`, or search `seed` as a parameter",
    "data_seed": "it follows the trial's seed",
}
