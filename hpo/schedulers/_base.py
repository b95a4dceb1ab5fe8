"""The scheduler registry: `early_terminate` -> a Ray Tune scheduler, and ASHA's clock.

Its clock is `training_iteration`, which advances by one per report, i.e. per evaluation.
"""

from __future__ import annotations

import math
from typing import Any

from hpo.space import base_name
from hpo.spec import JobSpec, ParamSpec


def _bound(spec: JobSpec, name: str, default: float, *, largest: bool) -> float:
    """The largest (or smallest) value a training argument can take in this search."""
    entries = [e for key, e in spec.parameters.items() if base_name(key) == name]
    if not entries:
        return float(spec.training.get(name, default))
    pick = max if largest else min
    return pick(_entry_bound(e, default, largest=largest) for e in entries)


def _entry_bound(entry: ParamSpec, default: float, *, largest: bool) -> float:
    if entry.values:
        return float(max(entry.values) if largest else min(entry.values))
    limit = entry.max if largest else entry.min
    if limit is not None:
        return float(limit)
    return float(entry.value if entry.value is not None else default)


def _largest(spec: JobSpec, name: str, default: float) -> float:
    return _bound(spec, name, default, largest=True)


def _smallest(spec: JobSpec, name: str, default: float) -> float:
    return _bound(spec, name, default, largest=False)


def evaluations_per_trial(spec: JobSpec, n_train: int) -> int:
    """How many evaluations the longest trial of this search makes (ASHA's max_t)."""
    if spec.early_terminate.max_iter is not None:
        return spec.early_terminate.max_iter
    epochs = _largest(spec, "num_train_epochs", 3.0)
    from hpo.trial.run import TRAINING_DEFAULTS  # what trials use when the spec is silent

    training = {**TRAINING_DEFAULTS, **spec.training}
    strategy = str(training["eval_strategy"])
    max_steps = _largest(spec, "max_steps", -1)
    if strategy == "epoch" and max_steps <= 0:
        return max(1, math.ceil(epochs))
    batch = _smallest(spec, "per_device_train_batch_size", 8) * _smallest(
        spec, "gradient_accumulation_steps", 1
    )
    total = max_steps if max_steps > 0 else math.ceil(epochs * math.ceil(n_train / batch))
    every = float(training.get("eval_steps", training["logging_steps"]))
    if every < 1:  # a ratio of the total steps
        every = max(1.0, every * total)
    return max(1, math.ceil(total / every))


SCHEDULERS = ("asha", "hyperband", "none")


def scheduler_caveats(
    spec: JobSpec, concurrency: int | None = None, evaluations: int | None = None
) -> list[str]:
    """What the chosen scheduler will not do that the spec may expect, said at the start
    (`hpo validate` says those it can tell without the cluster and the data: `concurrency`,
    `evaluations` a trial makes). A W&B sweep's `hyperband` (ASHA-like there, with
    `min_iter` and `s`) ports unchanged, so its keys are accepted; Ray's synchronous
    HyperBand sets its brackets itself."""
    et = spec.early_terminate
    said = []
    if et.type == "asha" and evaluations is not None and et.min_iter >= evaluations:
        said.append(
            f"early_terminate.min_iter: {et.min_iter}, and a trial makes {evaluations} "
            "evaluation(s): ASHA's first rung is at its last, so no trial is stopped early"
        )
    if et.type != "hyperband":
        return said
    unused = [k for k, v in (("min_iter", et.min_iter != 1), ("s", et.s is not None)) if v]
    if unused:
        keys = " and ".join(f"early_terminate.{k}" for k in unused)
        said.append(f"{keys}: not used by hyperband, which sets its brackets itself (asha uses it)")
    if concurrency == 1:  # its brackets judge the trials that reach a milestone together
        said.append(
            "early_terminate.type: hyperband stops no trial when one runs at a time; asha "
            "(the default) judges each trial against the earlier ones"
        )
    return said


def make_scheduler(spec: JobSpec, max_t: int) -> Any:
    """`early_terminate` -> a Ray Tune scheduler (registry with lazy imports).

    `asha` is the promotion-type ASHA that pauses and resumes trials (the default with one
    bracket), or Ray's stop-type ASHA (`promotion: false`, or several brackets); both with hpo's
    rung guard (`guard: false` turns it off).
    """
    from ray.tune import schedulers

    et = spec.early_terminate
    metric = spec.primary
    mode = "max" if metric.goal == "maximize" else "min"
    guard: dict[str, Any] = {
        "guard": et.guard,
        "guard_min_pairs": et.guard_min_pairs,
        "guard_threshold": et.guard_threshold,
    }
    grace = min(et.min_iter, max_t)
    if et.promotes:
        from hpo.schedulers.promotion import PromotionASHA

        return PromotionASHA(
            metric=metric.name,
            mode=mode,
            max_t=max_t,
            grace_period=grace,
            reduction_factor=et.eta,
            max_concurrent=spec.max_concurrent,
            max_paused=et.paused_cap,
            **guard,
        )
    common: dict[str, Any] = {
        "time_attr": "training_iteration",
        "metric": metric.name,
        "mode": mode,
    }
    if et.type == "asha":
        from hpo.schedulers.asha import GuardedASHA

        return GuardedASHA(
            max_t=max_t,
            grace_period=grace,
            reduction_factor=et.eta,
            brackets=et.s or 1,
            **guard,
            **common,
        )
    if et.type == "hyperband":
        return schedulers.HyperBandScheduler(max_t=max_t, reduction_factor=et.eta, **common)
    if et.type == "none":
        return schedulers.FIFOScheduler()
    raise ValueError(f"unknown early_terminate.type {et.type!r}; choose {', '.join(SCHEDULERS)}")
