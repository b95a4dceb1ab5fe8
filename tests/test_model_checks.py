"""Values the model's own layers refuse (`model.config`, `model.<field>` parameters) are
refused before Ray starts, each named by its key, rather than by every trial in turn."""

from __future__ import annotations

import pytest
from conftest import write_spec

from hpo.config import load_spec
from hpo.errors import SpecError


def spec_text(tiny_bert: str, csv: str, model_config: str, parameters: str) -> str:
    return f"""
model: {{name_or_path: {tiny_bert}, config: {model_config}}}
data: {{train: {csv}}}
parameters:
  learning_rate: {{values: [1.0e-4]}}
{parameters}
"""


def problems_of(tmp_path, text: str) -> list[str]:
    with pytest.raises(SpecError) as refused:
        load_spec(write_spec(tmp_path / "s.yaml", text))
    return refused.value.problems


def test_each_refused_value_is_named_at_once(tmp_path, tiny_bert, sentiment_csv):
    text = spec_text(
        tiny_bert,
        sentiment_csv,
        "{hidden_act: gelu_neww, num_attention_heads: 3, hidden_dropout_prob: 0.1}",
        "  model.attention_probs_dropout_prob: {values: [0.1, 1.5]}",
    )
    problems = problems_of(tmp_path, text)
    assert len(problems) == 2, problems  # the sampled one waits for the fixed ones' fix
    assert problems[0].startswith("model.config.hidden_act: `gelu_neww` (did you mean")
    assert problems[1].startswith("model.config.num_attention_heads: `3`: the model cannot")
    assert "hidden size (32) is not a multiple of the number of attention heads (3)" in problems[1]


def test_a_sampled_value_is_judged_at_the_ends_of_its_range(tmp_path, tiny_bert, sentiment_csv):
    sampled = """  model.hidden_dropout_prob: {min: 0.0, max: 1.2}
  model.num_attention_heads: {values: [1, 2, 4]}
  model.attention_probs_dropout_prob: {min: 0.0, max: 0.3}"""
    problems = problems_of(tmp_path, spec_text(tiny_bert, sentiment_csv, "{}", sampled))
    assert problems == [
        "parameters.model.hidden_dropout_prob: `1.2`: the model cannot be built with it "
        "(ValueError: dropout probability has to be between 0 and 1, but got 1.2)"
    ]


def test_values_refused_only_together_are_named_together(tmp_path, tiny_bert, sentiment_csv):
    # 30 is split by the model's 2 heads, and 32 by 4 heads; 30 by 4 is not.
    text = spec_text(tiny_bert, sentiment_csv, "{hidden_size: 30, num_attention_heads: 4}", "")
    (problem,) = problems_of(tmp_path, text)
    assert problem.startswith("model.config: the model cannot be built with these values")


def test_values_the_model_takes_pass(tmp_path, tiny_bert, sentiment_csv):
    text = spec_text(
        tiny_bert,
        sentiment_csv,
        "{hidden_act: relu, num_attention_heads: 4}",
        "  model.hidden_dropout_prob: {min: 0.0, max: 0.5}",
    )
    spec = load_spec(write_spec(tmp_path / "s.yaml", text))
    assert spec.model.config == {"hidden_act": "relu", "num_attention_heads": 4}


def test_max_length_is_held_to_the_positions_the_model_has(tmp_path, tiny_gpt2):
    text = f"""
model: {{name_or_path: {tiny_gpt2}, config: {{n_positions: 64}}}}
task: causal-lm
data: {{train: {tmp_path / "t.txt"}, max_length: 96}}
"""
    (tmp_path / "t.txt").write_text("one paragraph\n\nanother one\n")
    (problem,) = problems_of(tmp_path, text)
    assert problem == (
        "data.max_length: 96 tokens, more than the model's 64 positions (n_positions); "
        "use at most 64"
    )
    fits = text.replace("max_length: 96", "max_length: 64")
    assert load_spec(write_spec(tmp_path / "fits.yaml", fits)).data.max_length == 64


def test_rotary_and_relative_positions_are_no_limit(monkeypatch):
    """A Llama's max_position_embeddings is the context it was trained on, not a table: a
    longer block runs. GPT-2's n_positions is a table."""
    from types import SimpleNamespace

    from hpo import model_checks

    def problems(config: dict) -> list[str]:
        monkeypatch.setattr(model_checks, "read_model_config", lambda model: config)
        spec = SimpleNamespace(
            model=SimpleNamespace(config={}), data=SimpleNamespace(max_length=96)
        )
        found: list[str] = []
        model_checks.check_max_length(spec, found)  # type: ignore[arg-type]
        return found

    assert problems({"model_type": "llama", "max_position_embeddings": 64, "rope_theta": 1e4}) == []
    assert (
        problems({"model_type": "gpt_neox", "max_position_embeddings": 64, "rotary_pct": 0.25})
        == []
    )
    assert problems({"model_type": "t5", "n_positions": 64}) == []
    assert problems({"model_type": "gpt2", "n_positions": 64})
    # RoBERTa numbers positions from its pad id + 1: 97 rows hold 96 tokens with pad id 0.
    roberta = {"model_type": "roberta", "max_position_embeddings": 97}
    assert problems({**roberta, "pad_token_id": 0}) == []
    assert problems({**roberta, "pad_token_id": 1})  # 95 tokens
