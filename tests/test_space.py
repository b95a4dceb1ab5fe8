"""W&B parameter forms compiled to Optuna: semantics (and traps) kept, conditions respected."""

from __future__ import annotations

import math

import optuna
import pytest

from hpo.space import base_name, compile_space
from hpo.spec import ParamSpec


def space_of(**entries):
    problems: list[str] = []
    space = compile_space({k: ParamSpec(**v) for k, v in entries.items()}, problems)
    assert problems == []
    return space


def draw(space, n=200, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.sample(trial))
        study.tell(trial, 0.0)
    return out


def test_int_uniform_includes_max():
    values = {c["n"] for c in draw(space_of(n={"min": 1, "max": 3}))}
    assert values == {1, 2, 3}


def test_log_uniform_takes_exponents_and_values_form_takes_values():
    exps = [c["x"] for c in draw(space_of(x={"distribution": "log_uniform", "min": -2, "max": 0}))]
    assert all(math.exp(-2) - 1e-12 <= v <= 1 + 1e-12 for v in exps)
    vals = [
        c["x"]
        for c in draw(space_of(x={"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-3}))
    ]
    assert all(1e-5 <= v <= 1e-3 for v in vals)
    # Log-uniform: about half the draws fall below the geometric mean 1e-4.
    assert 0.35 < sum(v < 1e-4 for v in vals) / len(vals) < 0.65


def test_q_log_uniform_values_with_integer_q_gives_ints():
    values = [
        c["b"]
        for c in draw(
            space_of(b={"distribution": "q_log_uniform_values", "min": 8, "max": 64, "q": 8})
        )
    ]
    assert all(isinstance(v, int) and v % 8 == 0 and 8 <= v <= 64 for v in values)


def test_normal_keeps_its_shape():
    values = [
        c["x"] for c in draw(space_of(x={"distribution": "normal", "mu": 5, "sigma": 2}), n=400)
    ]
    mean = sum(values) / len(values)
    assert abs(mean - 5) < 0.4


def test_constant_and_categorical_with_lists():
    space = space_of(c={"value": 7}, t={"values": [["query", "value"], "all-linear"]})
    seen = draw(space, n=30)
    assert all(c["c"] == 7 for c in seen)
    assert {str(c["t"]) for c in seen} == {"['query', 'value']", "all-linear"}


def test_conditional_parameter_never_sampled_when_inactive():
    space = space_of(
        strategy={"values": ["full", "lora"]},
        **{
            "lora.r": {"values": [4, 8], "when": {"strategy": "lora"}},
            "lora.lora_alpha": {"min": 8, "max": 32, "when": "strategy == lora"},
        },
    )
    configs = draw(space, n=100)
    for c in configs:
        lora_keys = {k for k in c if k.startswith("lora.")}
        assert (c["strategy"] == "lora") == (lora_keys == {"lora.r", "lora.lora_alpha"})
    assert any(c["strategy"] == "full" for c in configs)


def test_variants_give_each_strategy_its_own_range_of_one_parameter():
    space = space_of(
        strategy={"values": ["full", "freeze", "lora"]},
        **{
            "lr@full": {"min": 1e-5, "max": 5e-5, "when": {"strategy": "full"}},
            "lr@lora": {"min": 1e-4, "max": 1e-3, "when": "strategy in [lora]"},
            "lr@freeze": {"min": 2e-5, "max": 1e-4, "when": {"strategy": ["freeze"]}},
        },
    )
    configs = draw(space, n=60)
    for c in configs:
        (variant,) = [k for k in c if base_name(k) == "lr"]  # exactly one per trial
        assert variant == f"lr@{c['strategy']}"
    lora = [c["lr@lora"] for c in configs if c["strategy"] == "lora"]
    assert lora and all(1e-4 <= v <= 1e-3 for v in lora)


def test_variants_that_could_meet_in_one_trial_are_a_problem():
    problems: list[str] = []
    compile_space(
        {
            "strategy": ParamSpec(values=["full", "lora"]),
            "batch": ParamSpec(values=[8, 16]),
            "lr": ParamSpec(min=1e-5, max=1e-3),  # no condition: meets both below
            "lr@lora": ParamSpec(min=1e-4, max=1e-3, when={"strategy": "lora"}),
            "lr@small": ParamSpec(min=1e-4, max=1e-3, when={"batch": 8}),  # another parameter
            "wd@a": ParamSpec(values=[0.0], when={"strategy": ["full", "lora"]}),
            "wd@b": ParamSpec(values=[0.1], when={"strategy": "lora"}),  # overlapping values
            "wd@c": ParamSpec(values=[0.2], when="strategy != lora"),  # a negation
        },
        problems,
    )
    assert base_name("lr@lora") == "lr" and base_name("lr") == "lr"
    text = "\n".join(problems)
    for a, b in [("lr", "lr@lora"), ("lr", "lr@small"), ("lr@lora", "lr@small")]:
        assert f"parameters.{a}, parameters.{b}: both may set `lr` in one trial" in text
    assert "parameters.wd@a, parameters.wd@b" in text
    assert "parameters.wd@a, parameters.wd@c" in text  # strategy full meets both
    assert len(problems) == 5  # wd@b (lora) and wd@c (not lora) never meet


def test_grid_respects_conditions_and_counts_each_point_once():
    space = space_of(
        strategy={"values": ["full", "lora"]},
        lr={"values": [1, 2]},
        **{"lora.r": {"values": [4, 8], "when": {"strategy": "lora"}}},
    )
    grid = space.grid()
    assert len(grid) == 2 + 4  # full x lr, lora x lr x r
    assert all("lora.r" not in p for p in grid if p["strategy"] == "full")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"min": 3, "max": 1}, "min 3 > max 1"),
        ({"values": []}, "at least one value"),
        ({"distribution": "q_uniform", "min": 0, "max": 1, "q": -1}, "q: must be > 0"),
        ({"distribution": "normal", "sigma": 0}, "sigma: must be > 0"),
        ({"distribution": "uniform", "min": 0}, "max: required"),
        ({"distribution": "log_uniform_values", "min": -1, "max": 1}, "needs min > 0"),
        ({"values": [1], "when": "strategy ~ lora"}, "cannot read"),
    ],
)
def test_bad_entries(entry, message):
    problems: list[str] = []
    compile_space({"x": ParamSpec(**entry)}, problems)
    assert any(message in p for p in problems), problems


def test_condition_on_unknown_parameter_and_cycles():
    problems: list[str] = []
    compile_space(
        {
            "a": ParamSpec(values=[1], when={"b": 1}),
            "b": ParamSpec(values=[1], when={"a": 1}),
            "c": ParamSpec(values=[1], when={"strategyy": 1}),
        },
        problems,
    )
    assert any("parameters.c.when: unknown parameter `strategyy`" in p for p in problems)
    assert any("cycle among a, b" in p for p in problems)


def test_enqueued_points_come_back_unchanged():
    space = space_of(
        lr={"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-3},
        bs={"values": [16, 32]},
        x={"distribution": "normal"},
    )
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    point = {"lr": 3e-5, "bs": 32, "x": 0.5}
    study.enqueue_trial(space.internal(point))
    sampled = space.sample(study.ask())
    assert sampled["lr"] == pytest.approx(3e-5) and sampled["bs"] == 32
    assert sampled["x"] == pytest.approx(0.5, abs=1e-6)


def test_only_parameters_some_trial_can_sample_are_kept():
    from hpo.space import ever_sampled

    parameters = {
        "strategy": ParamSpec(values=["full", "lora"]),  # `freeze` narrowed away by a --set
        "freeze.layers": ParamSpec(min=1, max=4, when={"strategy": "freeze"}),
        "freeze.embeddings": ParamSpec(values=[True, False], when={"freeze.layers": 2}),
        "lora.r": ParamSpec(values=[8, 16], when={"strategy": "lora"}),
        "lora.alpha": ParamSpec(values=[16, 32], when={"lora.r": 16}),
        "warmup_ratio": ParamSpec(min=0.0, max=0.2),
        "weight_decay": ParamSpec(min=0.0, max=0.1, when={"warmup_ratio": 0.5}),  # continuous
        "steps": ParamSpec(distribution="q_uniform", min=0, max=11, q=4),  # draws 12 too
        "eval_steps": ParamSpec(min=1, max=2, when={"steps": 12}),
    }
    kept = ever_sampled(parameters)
    # What hangs on a left-out parameter goes with it; a continuous parent may take any value.
    assert list(kept) == [
        "strategy",
        "lora.r",
        "lora.alpha",
        "warmup_ratio",
        "weight_decay",
        "steps",
        "eval_steps",
    ]
    assert kept["lora.r"] is parameters["lora.r"]
