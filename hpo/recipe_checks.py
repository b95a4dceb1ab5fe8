"""The fine-tuning recipe's parameters, checked before Ray starts.

Each recipe parameter acts under one strategy (`lora.r` only in LoRA trials): one that no
trial's strategy uses would be sampled and recorded with no effect, so TPE would learn from a
dimension that does nothing. Its values must be ones that strategy accepts (a rank of 0, a
dropout of 1.5, a target module the model lacks or LoRA cannot adapt), else every trial of the
search fails. A parameter the search never samples (its `when` names a strategy that `--set`
left out) is not checked: it cannot act.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hpo.errors import did_you_mean
from hpo.model_config import Module, block_count, model_modules, read_model_config
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
    "lora.lora_dropout": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "freeze.layers": (lambda v: v >= 0, "a number of blocks (0 or more)"),
    "early_stopping.patience": (lambda v: v >= 1, "at least 1 evaluation"),
    "early_stopping.threshold": (lambda v: v >= 0, "a change of 0 or more"),
    "seed": (lambda v: v >= 0, "a seed (0 or more)"),
}
# Counts: a trial would truncate 2.7 blocks to 2, so a continuous range only hides duplicates.
_WHOLE = {"lora.r", "freeze.layers", "early_stopping.patience", "seed"}


def check_recipe(spec: JobSpec, space: Space, problems: list[str]) -> None:
    named = search_strategies(space)
    known = all(s in STRATEGIES for s in named)  # else the strategy's own problem says so
    strategies = named or ["full"]
    acting = []  # sampled in some trial whose strategy uses it, with acceptable values
    for p in space.params:
        name, active_with = base_name(p.name), strategies_of(p, strategies)
        if not active_with:
            continue  # never sampled
        if known and name in USED_BY and USED_BY[name] not in active_with:
            problems.append(_unused(p, USED_BY[name], named, active_with))
        elif name in _ACCEPTS and (problem := _value_problem(p, name)):
            problems.append(problem)
        else:
            acting.append(p)
    config = read_model_config(spec.model)
    if config is not None and known:
        _check_against_model(spec, acting, strategies, config, problems)


def search_strategies(space: Space) -> list[str]:
    """The strategies this search's trials can take; none when it sets no strategy."""
    values = [
        v for p in space.params if base_name(p.name) == "strategy" for v in p.grid_values() or []
    ]
    return [v for i, v in enumerate(values) if v not in values[:i]]


def strategies_of(p: Param, strategies: list[str]) -> list[str]:
    """The strategies of the trials in which `p` can be active (its `when` on strategy)."""
    for c in p.conditions:
        if base_name(c.param) == "strategy":
            strategies = [s for s in strategies if (s in c.values) != c.negate]
    return strategies


def _unused(p: Param, strategy: str, named: list[str], active_with: list[str]) -> str:
    if any(base_name(c.param) == "strategy" for c in p.conditions):
        where = f"its `when` makes it active only with {', '.join(active_with)}"
    elif not named:
        where = "this search sets no strategy (full fine-tuning)"
    else:
        where = f"this search's strategies are {', '.join(named)}"
    return (
        f"parameters.{p.name}: only used with strategy {strategy}; {where}. Add {strategy} to "
        f"the strategies and `when: {{strategy: {strategy}}}` to it, or remove it"
    )


def _value_problem(p: Param, name: str) -> str | None:
    accepts, rule = _ACCEPTS[name]
    if name in _WHOLE and not _whole(p):
        return (
            f"parameters.{p.name}: {name} is a whole number; give `values`, or integer "
            "`min` and `max`"
        )
    for value in p.extremes():
        if isinstance(value, bool) or not finite_number(value):
            return f"parameters.{p.name}: `{value}` is not a number ({name}: {rule})"
        if not accepts(value):
            return f"parameters.{p.name}: {value:g} is not {rule}"
    return None


def _whole(p: Param) -> bool:
    if p.kind in ("constant", "categorical"):
        return all(finite_number(v) and float(v).is_integer() for v in p.values)
    return p.is_int


def _check_against_model(
    spec: JobSpec,
    acting: list[Param],
    strategies: list[str],
    config: dict[str, Any],
    problems: list[str],
) -> None:
    config = {**config, **spec.model.config}
    blocks = block_count(config)
    # Tied, the causal LM's head is the input embeddings: freezing the base freezes it too.
    tied = config.get("tie_word_embeddings", True)  # transformers' default
    for p in acting:
        if base_name(p.name) == "freeze.layers" and blocks is not None:
            _check_freeze_layers(p, blocks, spec.task == "causal-lm" and tied, problems)
    if spec.task == "causal-lm" and "head" in strategies and tied:
        problems.append(
            "parameters.strategy: `head` trains nothing on this model: its output head shares "
            "its weights with the input embeddings (tie_word_embeddings); use freeze or lora"
        )
    if "lora" in strategies and "model_type" in config:
        targets = [p for p in acting if base_name(p.name) == "lora.target_modules"]
        _check_lora_targets(spec, targets, config, problems)


def _check_freeze_layers(p: Param, blocks: int, tied_head: bool, problems: list[str]) -> None:
    """Freezing more blocks than the model has freezes them all, as its count does: a search
    would spend trials on copies of one configuration. A causal LM whose head is its input
    embeddings (frozen with them) would train only its last norm with every block frozen."""
    highest = max((v for v in p.extremes() if finite_number(v)), default=None)
    if highest is not None and highest > blocks:
        problems.append(
            f"parameters.{p.name}: {highest:g} is above the model's {blocks} transformer "
            f"blocks (freezing more than {blocks} is freezing {blocks})"
        )
    elif highest is not None and highest == blocks and tied_head:
        problems.append(
            f"parameters.{p.name}: {blocks} freezes every block of the model, and its output "
            "head shares its weights with the frozen input embeddings (tie_word_embeddings): "
            f"only a norm would train; freeze at most {blocks - 1}"
        )


def _check_lora_targets(
    spec: JobSpec, targets: list[Param], config: dict[str, Any], problems: list[str]
) -> None:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    values = [v for p in targets for v in p.values]
    default = not targets or None in values  # a trial left to PEFT's choice of modules
    if default and config["model_type"] in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        default = False  # PEFT knows which modules to adapt in this architecture
    if not default and all(v is None for v in values):
        return
    try:
        modules = model_modules(config, spec.task)
    except Exception:  # an architecture this transformers cannot build: the trial will say
        return
    linear = sorted({m.name.rsplit(".", 1)[-1] for m in modules if m.kind == "Linear"})
    if default:
        problems.append(
            f"parameters.lora.target_modules: required for a `{config['model_type']}` model "
            f"(PEFT has no default for it); its linear layers: {', '.join(linear)}"
        )
    for p in targets:
        for value in p.values:
            for problem in _target_problems(value, modules, linear):
                problems.append(f"parameters.{p.name}: {problem}")


def _target_problems(target: Any, modules: list[Module], linear: list[str]) -> list[str]:
    """What PEFT would refuse in a `target_modules` value, matched as PEFT matches it: a
    string is a regular expression over whole names ('all-linear': every linear layer), a
    list names modules by their last name parts. Every module matched must be one LoRA can
    adapt (a linear layer, an embedding, a convolution), and each entry must match one."""
    if target is None or target == "all-linear":
        return []
    if isinstance(target, str):
        if target in linear and not _matches(target, modules):
            # PEFT reads a lone string as a pattern over whole names (`bert.encoder...query`).
            return [f"`{target}` alone is a pattern over whole module names; list it: [{target}]"]
        entries = [(target, _matches(target, modules))]
    else:
        names = target if isinstance(target, list) else [target]
        entries = [(str(t), [m for m in modules if _ends_with(m.name, str(t))]) for t in names]
    problems = []
    layers = ", ".join(linear)
    for entry, matched in entries:
        refused = [m for m in matched if not m.adaptable]
        if not matched:
            hint = did_you_mean(entry, linear)
            problems.append(
                f"`{entry}` names no module of the model{hint}; its linear layers: {layers}"
            )
        elif refused:
            problems.append(
                f"`{entry}` names a {refused[0].kind} ({refused[0].name}), which LoRA cannot "
                f"adapt; name linear layers: {layers}"
            )
    return problems


def _matches(pattern: str, modules: list[Module]) -> list[Module]:
    try:
        return [m for m in modules if re.fullmatch(pattern, m.name)]
    except re.error:
        return []


def _ends_with(name: str, part: str) -> bool:
    return name == part or name.endswith(f".{part}")
