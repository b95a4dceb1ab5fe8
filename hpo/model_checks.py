"""The model's config with the search's values (`model.config`, `model.<field>` parameters),
built before Ray starts; and `data.max_length` against the positions the model has.

Their names are checked against the config; their values only the model's own layers judge
(a dropout of 1.5, `hidden_act: relu6x`, 5 heads for a hidden size of 384). A value they refuse
would fail every trial that draws it, each after loading the weights. The task's model is built
from the config on the meta device (structure only: no weights, no memory), with the fixed
values, then with each sampled field at the ends of its range. A model that cannot be built
on the meta device even as it is (remote code, an exotic architecture) is left to the trials.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

from hpo.errors import did_you_mean
from hpo.model_config import model_modules, read_model_config
from hpo.space import Space, base_name
from hpo.spec import JobSpec


def check_model_values(spec: JobSpec, space: Space, problems: list[str]) -> None:
    fixed = dict(spec.model.config)
    sampled = [p for p in space.params if base_name(p.name).startswith("model.")]
    if not fixed and not sampled:
        return
    config = read_model_config(spec.model)
    fields = [*fixed, *(_field(p.name) for p in sampled)]
    if config is None or "model_type" not in config or any(f not in config for f in fields):
        return  # a Hub id, or an unknown field: the field check names it
    if _build_error(config, spec.task) is not None:
        return  # not buildable here as it is: the trial will say what it lacks
    with_fixed = {**config, **fixed}
    if fixed and (together := _build_error(with_fixed, spec.task)) is not None:
        _name_fixed_culprits(spec, config, fixed, together, problems)
        return  # each sampled value would repeat the message
    for p in sampled:
        field = _field(p.name)
        for value in p.extremes():
            if (error := _build_error({**with_fixed, field: value}, spec.task)) is not None:
                problems.append(f"parameters.{p.name}: {_refused(field, value, error)}")
                break


# Where configs keep how many positions the model embeds (BERT/Llama, GPT-2, older GPTs).
POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")
# RoBERTa's family numbers positions from padding_idx + 1: two of its 514 are never a token's.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl"}
_RELATIVE_POSITIONS = {"t5", "mt5", "umt5", "longt5", "bloom", "mpt", "deberta", "deberta-v2"}


def check_max_length(spec: JobSpec, problems: list[str]) -> None:
    """A block or example longer than the model's position table fails every trial at its
    first step, with torch's `IndexError: index out of range in self`."""
    config = read_model_config(spec.model)
    if config is None:
        return
    config = {**config, **spec.model.config}
    key = next((k for k in POSITION_KEYS if isinstance(config.get(k), int)), None)
    if key is None or not _learned_positions(config):
        return
    positions = config[key]
    if config.get("model_type") in _OFFSET_POSITIONS:
        pad = config.get("pad_token_id")
        positions -= (pad if isinstance(pad, int) else 1) + 1
    if spec.data.max_length > positions:
        problems.append(
            f"data.max_length: {spec.data.max_length} tokens, more than the model's "
            f"{positions} positions ({key}); use at most {positions}"
        )


def _learned_positions(config: dict[str, Any]) -> bool:
    """Whether the model looks positions up in a table of `max_position_embeddings` rows.
    Rotary (Llama, Mistral, Qwen, GPT-NeoX), ALiBi and relative ones (T5) have none: their
    figure is the context they were trained on, and a longer block still runs."""
    if any(k.startswith("rope") or "rotary" in k or k == "alibi" for k in config):
        return False
    if config.get("model_type") in _RELATIVE_POSITIONS:
        return False
    return config.get("position_embedding_type", "absolute") == "absolute"


def _name_fixed_culprits(
    spec: JobSpec, config: dict[str, Any], fixed: dict[str, Any], together: str, problems: list[str]
) -> None:
    """The fixed values the model refuses alone; where none does, the combination (which
    fails with `together`)."""
    alone = {k: _build_error({**config, k: v}, spec.task) for k, v in fixed.items()}
    culprits = {k: e for k, e in alone.items() if e is not None}
    for key, error in culprits.items():
        problems.append(f"model.config.{key}: {_refused(key, fixed[key], error)}")
    if not culprits:
        problems.append(f"model.config: the model cannot be built with these values ({together})")


def _field(parameter: str) -> str:
    return base_name(parameter).removeprefix("model.")


def _refused(field: str, value: Any, error: str) -> str:
    hint = ""
    if isinstance(value, str) and "act" in field:
        from transformers.activations import ACT2FN

        hint = did_you_mean(value, list(ACT2FN))
    return f"`{value}`{hint}: the model cannot be built with it ({error})"


def _build_error(config: dict[str, Any], task: str) -> str | None:
    """Why the task's model cannot be built from `config`, in one line; None if it can."""
    try:
        with _quiet():
            model_modules(config, task)
    except Exception as err:
        text = " ".join(str(err).split()) or "no message"
        return f"{type(err).__name__}: {text[:200]}"
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers warns of some refused values as well as raising (a pad token outside the
    vocabulary): the problem list is where they are said."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR + 10)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
