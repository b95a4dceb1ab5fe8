"""The job spec: one dataclass per YAML section.

The names follow W&B sweeps wherever W&B has a word (`method`, `metric`, `parameters`,
`early_terminate`, `run_cap`), so a sweep's YAML ports unchanged; the rest (model, data, task,
training, resources, tracking, storage) says what W&B cannot. Each field's `help` is its one-line
documentation: `hpo validate --explain` and the README's table come from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def doc(text: str, default: Any = None, factory: Any = None) -> Any:
    """A dataclass field whose metadata carries its one-line help."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class MetricSpec:
    name: str = doc("metric to optimize, as the trial reports it (`eval_accuracy`, `eval_loss`)")
    goal: str | None = doc("`maximize` or `minimize`; inferred from the name when omitted")
    target: float | None = doc("W&B's stop target: the search ends once a trial reaches it")


# Paused trials keep a full checkpoint each; 32 cost nothing measurable in the synthetic
# benchmark (where up to 73 waited at once without a cap), 16 and fewer began to.
DEFAULT_MAX_PAUSED = 32


@dataclass
class EarlyTerminateSpec:
    type: str = doc("`asha` (default), `hyperband`, or `none` (no early stopping)", "asha")
    min_iter: int = doc(
        "evaluations every trial gets before asha can stop it (grace period; hyperband sets "
        "its own)",
        1,
    )
    max_iter: int | None = doc(
        "evaluations of a full trial; derived from the training when omitted"
    )
    eta: float = doc("reduction factor: 1/eta of the trials at a rung go on to the next", 3)
    s: int | None = doc("W&B's bracket count; number of ASHA brackets (default 1)")
    promotion: bool | None = doc(
        "asha pauses weak trials and resumes them from their checkpoint when promoted, instead "
        "of stopping them (default: on with one bracket; `false` for Ray's stop-type ASHA)"
    )
    max_paused: int | None = doc(
        "promotion: at most this many paused trials (each keeps a checkpoint); beyond it, the "
        f"one furthest from promotion is stopped (default {DEFAULT_MAX_PAUSED})"
    )
    guard: bool = doc(
        "no stopping at a rung whose ranking poorly predicts the next rung's (rank correlation)",
        True,
    )
    guard_min_pairs: int = doc("trials that reached both rungs before the guard judges", 5)
    guard_threshold: float = doc("rank correlation below which a rung stops no trial", 0.3)

    @property
    def promotes(self) -> bool:
        """Whether ASHA pauses and promotes trials rather than stops them. The default with one
        bracket: it reached random search's best sooner than stop-type ASHA on real fine-tuning
        and in most synthetic settings, and ended level or better in most
        (benchmarks/BENCHMARKS.md)."""
        if self.type != "asha":
            return False
        return self.promotion if self.promotion is not None else (self.s or 1) == 1

    @property
    def paused_cap(self) -> int:
        """The most trials that may wait paused at once, each with its checkpoint."""
        return self.max_paused if self.max_paused is not None else DEFAULT_MAX_PAUSED

    @property
    def pauses_trials(self) -> bool:
        """Whether the scheduler pauses trials and resumes them later from their checkpoint."""
        return self.type == "hyperband" or self.promotes


@dataclass
class ParamSpec:
    """One entry of `parameters`, in W&B's forms."""

    value: Any = doc("a constant")
    values: list[Any] | None = doc("a list to choose from (categorical)")
    probabilities: list[float] | None = doc(
        "W&B's weights of `values` (accepted; TPE ignores them)"
    )
    min: int | float | None = doc("lower bound")
    max: int | float | None = doc("upper bound")
    distribution: str | None = doc("W&B distribution name; inferred from the other keys")
    q: float | None = doc("quantization step of the q_* distributions (default 1)")
    mu: float | None = doc("mean of the normal distributions (default 0)")
    sigma: float | None = doc("standard deviation of the normal distributions (default 1)")
    when: Any = doc('sample only when this holds: `{strategy: lora}` or `"strategy == lora"`')


@dataclass
class ModelSpec:
    name_or_path: str = doc("a Hugging Face Hub id, a local folder, or `package:NAME/sub/folder`")
    config: dict[str, Any] = doc(
        "fixed model config overrides (e.g. num_hidden_layers)", factory=dict
    )
    revision: str | None = doc("Hub revision (branch, tag or commit)")
    gguf_file: str | None = doc("a GGUF file inside the folder to load (llama.cpp checkpoints)")


@dataclass
class DataSpec:
    dataset: str | None = doc("a Hugging Face Hub dataset id (instead of local files)")
    config: str | None = doc("the Hub dataset's configuration name")
    train: str | list[str] | None = doc(
        "local file(s): csv, tsv, jsonl, json, parquet, txt (or split)"
    )
    validation: str | None = doc("a local file or a split name; carved from train when omitted")
    test: str | None = doc("a held-out file or split, scored once on the exported best model")
    text_column: str = doc("the text column", "text")
    text_pair_column: str | None = doc("a second text column (sentence pairs)")
    label_column: str = doc("the label column (strings or integers)", "label")
    labels: list[str] | None = doc(
        "keep only rows with these labels (classification: ids in this order)"
    )
    validation_fraction: float = doc("share of train carved as validation when none is given", 0.1)
    test_fraction: float = doc("share of train carved as test when none is given", 0.0)
    max_length: int = doc("tokens per example (classification) or per block (causal-lm)", 128)
    max_train_samples: int | None = doc(
        "cap on training rows after cleaning (a fixed, seeded subset; a causal LM's texts, "
        "before they are cut into blocks)"
    )
    max_eval_samples: int | None = doc("cap on validation rows after cleaning (as above)")


@dataclass
class ResourcesSpec:
    cpu: float = doc("CPUs per trial; torch uses this many threads", 1)
    gpu: float = doc("GPUs per trial; fractions pack several trials on one GPU", 0)
    autoscale: bool = doc(
        "on a cluster: its autoscaler adds the nodes trials need, so a trial no alive node "
        "holds waits for one instead of being refused (not needed where Ray knows the "
        "autoscaler's node types)",
        False,
    )


@dataclass
class WandbSpec:
    project: str = doc("W&B project", "hpo")
    entity: str | None = doc("W&B entity (team or user)")
    mode: str | None = doc("`online`, `offline` or `disabled`; offline when no API key is set")
    tags: list[str] = doc("tags added to every trial's run", factory=list)


@dataclass
class TrackingSpec:
    wandb: WandbSpec = doc(
        "Weights & Biases: one run per trial, grouped by search", factory=WandbSpec
    )


@dataclass
class CheckpointsSpec:
    keep: int = doc("best checkpoints kept over the whole search (plus running trials' latest)", 3)
    resume_interval_s: float = doc(
        "most training a crashed or interrupted trial redoes: it writes a resumable checkpoint "
        "at least this often (0: at every evaluation); in between, only evaluations that could "
        "be among the `keep` best get one",
        300,
    )


@dataclass
class JobSpec:
    """A whole search: what to tune, on which data, how, and with what budget."""

    model: ModelSpec = doc("the pretrained model to fine-tune")
    data: DataSpec = doc("where the labelled data comes from and how it is prepared")
    task: str = doc("`sequence-classification` or `causal-lm`", "sequence-classification")
    name: str | None = doc("the search's name; defaults to the spec's file name and a timestamp")
    method: str = doc("`tpe` (default), `random`, `grid`, `cmaes`; W&B's `bayes` means tpe", "tpe")
    metric: MetricSpec | list[MetricSpec] | None = doc("objective(s); defaults to the task's own")
    parameters: dict[str, ParamSpec] = doc("the search space, in W&B's forms", factory=dict)
    early_terminate: EarlyTerminateSpec = doc(
        "when to stop weak trials", factory=EarlyTerminateSpec
    )
    run_cap: int | None = doc("number of trials (default 10; a grid runs all its points)")
    training: dict[str, Any] = doc("fixed TrainingArguments fields for every trial", factory=dict)
    resources: ResourcesSpec = doc("resources of one trial", factory=ResourcesSpec)
    max_concurrent: int | None = doc(
        "trials at once; default: as many as the cluster holds, counting the nodes its "
        "autoscaler can add where Ray records them (required with resources.autoscale)"
    )
    seed: int = doc("seeds the sampler, the data split and every trial's training", 0)
    retries: int = doc(
        "times a crashed trial is restarted from its latest checkpoint (a worker lost, an error of"
        " the moment; after an error its configuration would meet again, a restart on the same"
        " node ends at once)",
        2,
    )
    tracking: TrackingSpec = doc("experiment tracking", factory=TrackingSpec)
    checkpoints: CheckpointsSpec = doc("checkpoint budget", factory=CheckpointsSpec)
    storage: str = doc("folder (or s3://, gs:// URI) that holds run directories", "runs")
    rung_model: bool = doc(
        "tpe only: until parameters + 1 trials finished, TPE ranks trials at the highest rung "
        "that many reached (BOHB's rule); better where early evaluations rank like the last, "
        "worse where they mislead (benchmarks/BENCHMARKS.md)",
        False,
    )
    hedge: bool = doc(
        "tpe with one metric: while the trials that went on past their first evaluation got "
        "worse after it (early evaluations mislead the model), new trials are drawn at random",
        True,
    )
    points_to_evaluate: list[dict[str, Any]] = doc("known-good points run first", factory=list)
    warm_start: str | None = doc("a previous run directory whose trials seed the sampler")
    # Accepted so that a W&B sweep file ports unchanged; hpo does not need them.
    description: str | None = doc("free text, kept in spec.yaml")
    program: str | None = doc("W&B's training script; ignored (hpo builds the trial itself)")
    command: list[str] | None = doc("W&B's command line; ignored")
    project: str | None = doc("W&B's project key; same as tracking.wandb.project")
    entity: str | None = doc("W&B's entity key; same as tracking.wandb.entity")

    @property
    def metrics(self) -> list[MetricSpec]:
        """The objectives, first one first (ASHA and the exported best follow it)."""
        if self.metric is None:
            return []
        return self.metric if isinstance(self.metric, list) else [self.metric]

    @property
    def primary(self) -> MetricSpec:
        return self.metrics[0]
