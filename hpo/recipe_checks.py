"""The fine-tuning recipe's parameters, checked before Ray starts.

Each recipe parameter acts under one strategy (`lora.r` only in LoRA trials): one that no
trial's strategy uses would be sampled and recorded with no effect, so TPE would learn from a
dimension that does nothing. Its values must be ones that strategy accepts (a rank of 0, a
dropout of 1.5, a target module the model lacks), else every trial of the search fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hpo.errors import did_you_mean
from hpo.model_config import block_count, module_names, read_model_config
from hpo.numbers import finite_number
from hpo.space import Param, Space, base_name
from hpo.spec import JobSpec
from hpo.tasks import STRATEGIES

USED_BY = {
    "freeze.layers": "freeze",
    "lora.r": "lora",
    "lora.lora_alpha": "lora",
    "lora.lora_dropout": "lora",
    "lora.target_modules": "lora",
}

# What each numeric recipe parameter accepts, and how to say it.
_ACCEPTS: dict[str, tuple[Callable[[float], bool], str]] = {
    "lora.r": (lambda v: v >= 1, "a rank of at least 1"),
    "lora.lora_alpha": (lambda v: v > 0, "a scale above 0"),
    "lora.lora_dropout": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "freeze.layers": (lambda v: v >= 0, "a number of blocks (0 or more)"),
    "early_stopping.patience": (lambda v: v >= 1, "at least 1 evaluation"),
    "early_stopping.threshold": (lambda v: v >= 0, "a change of 0 or more"),
    "seed": (lambda v: v >= 0 and float(v).is_integer(), "a whole number (0 or more)"),
}


def check_recipe(spec: JobSpec, space: Space, problems: list[str]) -> None:
    strategies = search_strategies(space)
    known = all(s in STRATEGIES for s in strategies)  # else the strategy's own problem says so
    for p in space.params:
        name = base_name(p.name)
        # Active with no strategy of this search (`--set` narrowed them, or a typo the space
        # names), it is never sampled: harmless. Active only without its own, it does nothing.
        active_with = strategies_of(p, strategies)
        if known and name in USED_BY and active_with and USED_BY[name] not in active_with:
            problems.append(_unused(p, USED_BY[name], active_with))
            continue
        if name in _ACCEPTS:
            _check_values(p, name, problems)
    config = read_model_config(spec.model)
    if config is not None and known:
        _check_against_model(spec, space, strategies, config, problems)


def search_strategies(space: Space) -> list[str]:
    """The strategies this search's trials can take (full when it names none)."""
    values = [
        v for p in space.params if base_name(p.name) == "strategy" for v in p.grid_values() or []
    ]
    return [v for i, v in enumerate(values) if v not in values[:i]] or ["full"]


def strategies_of(p: Param, strategies: list[str]) -> list[str]:
    """The strategies of the trials in which `p` can be active (its `when` on strategy)."""
    for c in p.conditions:
        if base_name(c.param) == "strategy":
            strategies = [s for s in strategies if (s in c.values) != c.negate]
    return strategies


def _unused(p: Param, strategy: str, active_with: list[str]) -> str:
    if p.conditions:
        where = f"its `when` makes it active only with {', '.join(active_with)}"
    elif active_with == ["full"]:
        where = "this search sets no strategy (full fine-tuning)"
    else:
        where = f"this search's strategies are {', '.join(active_with)}"
    return f"parameters.{p.name}: only used with strategy {strategy}; {where}"


def _domain(p: Param) -> list[Any]:
    """The values that decide whether `p` is acceptable: its choices, or its range's ends
    (every rule here is an interval). A normal distribution is unbounded: not checked."""
    if p.kind in ("constant", "categorical"):
        return list(p.values)
    if "normal" in p.kind:
        return []
    return [p.low, p.high]


def _check_values(p: Param, name: str, problems: list[str]) -> None:
    accepts, rule = _ACCEPTS[name]
    for value in _domain(p):
        if isinstance(value, bool) or not finite_number(value):
            problems.append(f"parameters.{p.name}: `{value}` is not a number ({name}: {rule})")
            return
        if not accepts(value):
            problems.append(f"parameters.{p.name}: {value:g} is not {rule}")
            return


def _check_against_model(
    spec: JobSpec, space: Space, strategies: list[str], config: dict[str, Any], problems: list[str]
) -> None:
    config = {**config, **spec.model.config}
    blocks = block_count(config)
    for p in space.params:
        sampled = strategies_of(p, strategies)
        if base_name(p.name) == "freeze.layers" and blocks is not None and sampled:
            _check_freeze_layers(p, blocks, problems)
    # Tied, the causal LM's head is the input embeddings: freezing the base freezes it too.
    tied = config.get("tie_word_embeddings", True)  # transformers' default
    if spec.task == "causal-lm" and "head" in strategies and tied:
        problems.append(
            "parameters.strategy: `head` trains nothing on this model: its output head shares "
            "its weights with the input embeddings (tie_word_embeddings); use freeze or lora"
        )
    if "lora" in strategies and "model_type" in config:
        _check_lora_targets(spec, space, config, problems)


def _check_freeze_layers(p: Param, blocks: int, problems: list[str]) -> None:
    """Freezing more blocks than the model has freezes them all, as its count does: a search
    would spend trials on copies of one configuration."""
    highest = max((v for v in _domain(p) if finite_number(v)), default=None)
    if highest is not None and highest > blocks:
        problems.append(
            f"parameters.{p.name}: {highest:g} is above the model's {blocks} transformer "
            f"blocks (freezing more than {blocks} is freezing {blocks})"
        )


def _check_lora_targets(
    spec: JobSpec, space: Space, config: dict[str, Any], problems: list[str]
) -> None:
    targets = [p for p in space.params if base_name(p.name) == "lora.target_modules"]
    if not targets:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        if config["model_type"] in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
            return  # PEFT knows which modules to adapt in this architecture
    try:
        names, linear = module_names(config, spec.task)
    except Exception:  # an architecture this transformers cannot build
        return  # the trial reports it, in transformers' words
    if not targets:
        problems.append(
            f"parameters.lora.target_modules: required for a `{config['model_type']}` model "
            f"(PEFT has no default for it); its linear layers: {', '.join(linear)}"
        )
    for p in targets:
        for value in p.values:
            for missing in _unmatched(value, names):
                problems.append(f"parameters.{p.name}: {_no_module(missing, value, linear)}")


def _no_module(missing: str, value: Any, linear: list[str]) -> str:
    if isinstance(value, str) and missing in linear:
        # PEFT reads a lone string as a pattern over whole names (`bert.encoder...query`).
        return f"`{missing}` alone is a pattern over whole module names; list it: [{missing}]"
    layers = ", ".join(linear)
    hint = did_you_mean(missing, linear)
    return f"`{missing}` names no module of the model{hint}; its linear layers: {layers}"


def _unmatched(target: Any, names: list[str]) -> list[str]:
    """The entries of a `target_modules` value that select no module, as PEFT matches them: a
    string is a regular expression over whole names ('all-linear' means every linear layer),
    a list names modules by their last name parts."""
    if target == "all-linear":
        return []
    if isinstance(target, str):
        try:
            found = any(re.fullmatch(target, n) for n in names)
        except re.error:
            found = False
        return [] if found else [target]
    entries = target if isinstance(target, list) else [target]
    return [str(t) for t in entries if not any(n == t or n.endswith(f".{t}") for n in names)]
