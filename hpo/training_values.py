"""The values a search gives TrainingArguments, checked before Ray starts.

`TrainingArguments` is first built inside a trial, on a worker: a bad value there (`eval_strategy:
epochh`, `learning_rate: fast`, `num_train_epochs: -3`) would fail every trial after the cluster
was set up. Each value the spec can hand it (a `training:` value; a parameter's `value`, each of
its `values`, its `min` and `max`) is checked against the field's type and, for the counts and
rates that must be positive, its sign; then TrainingArguments is built once per value, which
checks its choices (strategies, schedulers, optimizers) with transformers' own messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import re
import tempfile
import types
import typing
from collections.abc import Iterator
from typing import Any

from hpo.schema import type_name
from hpo.space import Space, base_name
from hpo.spec import JobSpec
from hpo.tasks import MANAGED_TRAINING_ARGS, RECIPE_PARAMS

# Fields that a run with 0 or less would fail on (or loop on), and those that cannot be negative.
POSITIVE = {
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "eval_steps",
    "logging_steps",
}
NON_NEGATIVE = {"weight_decay", "warmup_steps", "max_grad_norm", "label_smoothing_factor"}


def check_training_values(spec: JobSpec, problems: list[str], space: Space | None = None) -> None:
    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    checked: list[tuple[str, str, Any]] = []
    said = {problem.split(": ", 1)[0] for problem in problems}  # (by the space's checks)
    for key, name, value in _given_values(spec, space):
        if name not in hints or name in MANAGED_TRAINING_ARGS or key in said:
            continue  # those have their own messages; model.* and recipe keys are not ours
        problem = _value_problem(name, value, hints[name])
        if problem:
            problems.append(f"{key}: {problem}")
        else:
            checked.append((key, name, value))
    _build_each(spec, checked, problems)


def _given_values(spec: JobSpec, space: Space | None) -> Iterator[tuple[str, str, Any]]:
    """(key to name in a message, TrainingArguments field, a value the search may give it).
    A range's ends as drawn: W&B's `log_uniform` takes exponents, -11.5 meaning e^-11.5."""
    for name, value in spec.training.items():
        yield f"training.{name}", name, value
    for qualified, entry in spec.parameters.items():
        key, name = f"parameters.{qualified}", base_name(qualified)
        if name in RECIPE_PARAMS:
            continue  # hpo's, not TrainingArguments' (`seed` is both: the trial sets it)
        if entry.value is not None:
            yield f"{key}.value", name, entry.value
        for value in entry.values or []:
            yield f"{key}.values", name, value
        compiled = space.by_name.get(qualified) if space is not None else None
        ends = compiled.extremes() if compiled is not None else []
        for i, bound in enumerate(("min", "max")):
            if getattr(entry, bound) is not None and not entry.values:
                drawn = ends[i] if len(ends) == 2 else getattr(entry, bound)
                yield f"{key}.{bound}", name, drawn


def _value_problem(name: str, value: Any, hint: Any) -> str | None:
    if not _accepts(hint, value):
        return f"{value!r} is not a valid {name} (TrainingArguments wants {type_name(hint)})"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if name in POSITIVE and value <= 0:
        return f"must be above 0, got {value}"
    if name in NON_NEGATIVE and value < 0:
        return f"must be 0 or more, got {value}"
    return None


def _accepts(hint: Any, value: Any) -> bool:
    """Whether `value` fits the field's annotation; True where hpo cannot tell."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return isinstance(value, str)  # an enum's choices: TrainingArguments checks them
    return True  # lists, mappings, Any: transformers' to judge


def _build_each(spec: JobSpec, checked: list[tuple[str, str, Any]], problems: list[str]) -> None:
    """TrainingArguments as a trial builds it: with each `training:` value alone, with all of
    them, then with each parameter value on top. Its own checks, named by the failing key."""
    fixed = {k: (n, v) for k, n, v in checked if k.startswith("training.")}
    sampled = [(k, n, v) for k, n, v in checked if not k.startswith("training.")]
    # Building TrainingArguments imports transformers' integrations, which print a line to
    # stdout under WANDB_MODE=offline; hpo's stdout carries only its result (a run directory).
    quiet = contextlib.redirect_stdout(io.StringIO())
    with tempfile.TemporaryDirectory(prefix="hpo-check-") as out, quiet:

        def builds(training: dict[str, Any], values: dict[str, Any], key: str) -> bool:
            return _builds(dataclasses.replace(spec, training=training), values, out, key, problems)

        alone = [builds({n: v}, {}, key) for key, (n, v) in fixed.items()]
        together = dict(fixed.values())
        if not all(alone) or not builds(together, {}, "training"):
            return  # each parameter value would repeat the message
        for key, name, value in sampled:
            builds(together, {name: value}, key)


def _builds(spec: JobSpec, sampled: dict[str, Any], out: str, key: str, problems: list) -> bool:
    from hpo.trial.run import training_arguments

    try:
        training_arguments(spec, sampled, seed=0, output_dir=out)
    except Exception as err:
        problems.append(f"{key}: {_reason(err)}")
        return False
    return True


# transformers' words for a package a value needs: "The 'deepspeed>=0.9.3' distribution was
# not found and is required by this application", under importlib's own prefix.
_MISSING_PACKAGE = re.compile(r"'([^']+)' distribution was not found")


def _reason(err: Exception) -> str:
    missing = _MISSING_PACKAGE.search(str(err))
    if missing:
        requirement = missing.group(1)
        return f"needs the package `{requirement}`, not installed (pip install '{requirement}')"
    return str(err).strip().splitlines()[0]
