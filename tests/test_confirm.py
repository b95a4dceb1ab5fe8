"""`hpo confirm`: the top configurations retrained with fresh seeds through real Ray Tune and
the Trainer, ranked by their mean; best.yaml, best_model/ and its card follow the winner."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_spec

from hpo.cli import main
from hpo.confirm import (
    Candidate,
    confirm_spec,
    fresh_seeds,
    rank_configurations,
    top_configurations,
    typed_value,
)
from hpo.errors import SpecError
from hpo.report import load_run
from hpo.space import compile_space
from hpo.spec import DataSpec, JobSpec, ModelSpec, ParamSpec


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_yaml(path: str) -> dict:
    return yaml.safe_load(read_text(path))


def entry(trial_id: str, search_value: float, values: list[float | None]) -> dict:
    seeds = [
        {"seed": i + 1, "value": v, "trial_id": f"{trial_id}-{i}"} for i, v in enumerate(values)
    ]
    return {"trial_id": trial_id, "search_value": search_value, "seeds": seeds}


def test_the_single_best_trial_loses_to_the_best_mean():
    # `lucky` topped the search and has the best single seed run, but `steady` is better on
    # average: confirmation must choose `steady`.
    ranked = rank_configurations(
        [entry("lucky", 0.91, [0.93, 0.70, 0.72]), entry("steady", 0.86, [0.85, 0.84, 0.86])],
        maximize=True,
    )
    assert [e["trial_id"] for e in ranked] == ["steady", "lucky"]
    assert ranked[0]["chosen"] and not ranked[1]["chosen"]
    assert ranked[0]["mean"] == pytest.approx(0.85)
    assert ranked[0]["std"] == pytest.approx(statistics.stdev([0.85, 0.84, 0.86]))
    assert ranked[1]["max"] == 0.93  # its best seed beats every run of the winner


def test_losses_rank_low_first_and_failed_runs_rank_last():
    ranked = rank_configurations(
        [
            entry("a", 0.30, [0.40, 0.42]),
            entry("diverges", 0.20, [0.10, None]),  # best mean of what finished, one failure
            entry("b", 0.35, [0.33, 0.35]),
        ],
        maximize=False,
    )
    assert [e["trial_id"] for e in ranked] == ["b", "a", "diverges"]
    assert ranked[2]["failures"] == 1


def test_one_scored_seed_has_no_spread_rather_than_a_spread_of_0():
    from hpo.confirm import spread

    ranked = rank_configurations(
        [entry("two", 0.8, [0.81, 0.83]), entry("one", 0.9, [0.84, None]), entry("x", 0.7, [None])],
        maximize=True,
    )
    by_id = {e["trial_id"]: e for e in ranked}
    assert by_id["one"]["std"] is None and by_id["two"]["std"] is not None
    assert spread(by_id["two"]) == "0.82 ± 0.014 over 2 seeds"
    assert spread(by_id["one"]) == "0.84 on one seed (no spread measured)"
    assert spread(by_id["x"]) == "no seed scored"
    from hpo.modelcard import _metric_line

    best = {"metric": "eval_accuracy", "value": 0.9, "confirmed": by_id["one"]}
    line = _metric_line(None, best)  # type: ignore[arg-type]
    assert "**0.84 on one seed (no spread measured)**" in line and "± 0" not in line


def spec_with(parameters: dict[str, ParamSpec], seed: int = 0) -> JobSpec:
    return JobSpec(
        model=ModelSpec("m"), data=DataSpec(train="t.csv"), parameters=parameters, seed=seed
    )


def test_trials_csv_cells_come_back_typed_and_seeds_are_fresh():
    space = compile_space(
        {
            "learning_rate": ParamSpec(min=1e-5, max=1e-3, distribution="log_uniform_values"),
            "per_device_train_batch_size": ParamSpec(values=[16, 32]),
            "warmup_steps": ParamSpec(values=[0.0, 0.1]),
            "epochs": ParamSpec(min=1, max=4),
        },
        [],
    )
    p = space.by_name
    assert typed_value(p["per_device_train_batch_size"], 32.0) == 32
    assert isinstance(typed_value(p["per_device_train_batch_size"], "16"), int)
    assert typed_value(p["warmup_steps"], 0.1) == 0.1
    assert typed_value(p["epochs"], "3.0") == 3 and isinstance(typed_value(p["epochs"], 3.0), int)
    with pytest.raises(SpecError, match="per_device_train_batch_size"):
        typed_value(p["per_device_train_batch_size"], 64)

    spec = spec_with({"learning_rate": ParamSpec(min=1e-5, max=1e-3)}, seed=3)
    candidates = [Candidate(1, "a", {"learning_rate": 1e-4, "seed": 5}, 0.9)]
    assert fresh_seeds(spec, candidates, 3) == [4, 6, 7]
    confirm = confirm_spec(spec, candidates, [4, 6])
    assert confirm.method == "random" and confirm.early_terminate.type == "none"
    assert confirm.run_cap == 2 and confirm.parameters["seed"].values == [4, 6]
    assert confirm.points_to_evaluate == [
        {"learning_rate": 1e-4, "seed": 4},
        {"learning_rate": 1e-4, "seed": 6},
    ]


def interrupted_confirm(run_dir: str) -> None:
    """Ctrl-C (a real SIGINT, to Tune's own handler) once the first retrained run reports:
    exit 130, nothing ranked, chosen or written over, and a second try is not refused."""
    import signal

    from ray.tune import Callback

    import hpo.tuner

    class CtrlC(Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            os.kill(os.getpid(), signal.SIGINT)

    before = {name: Path(run_dir, name).read_bytes() for name in ("best.yaml", "trials.csv")}
    model = Path(run_dir, "best_model", "model.safetensors").read_bytes()
    make_callbacks = hpo.tuner.make_callbacks
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hpo.tuner, "make_callbacks", lambda *a: [*make_callbacks(*a), CtrlC()])
        with contextlib.redirect_stderr(io.StringIO()) as err:
            code = main(["confirm", run_dir, "--top-k", "2", "--seeds", "2", "--quiet"])
    assert code == 130, err.getvalue()
    assert "interrupted: nothing confirmed" in err.getvalue() and "Traceback" not in err.getvalue()
    assert not os.path.exists(os.path.join(run_dir, "confirm.yaml"))
    assert not os.path.exists(os.path.join(run_dir, "confirm"))  # no half-trained runs kept
    assert {name: Path(run_dir, name).read_bytes() for name in before} == before
    assert Path(run_dir, "best_model", "model.safetensors").read_bytes() == model


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory, tiny_bert, sentiment_csv, local_ray):
    """A tiny search (no early stopping, so every trial is comparable), then `hpo confirm`."""
    root = tmp_path_factory.mktemp("confirm")
    spec = write_spec(
        root / "tiny.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, max_length: 32, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
parameters:
  learning_rate: {{values: [3.0e-4, 1.0e-3, 3.0e-3]}}
  per_device_train_batch_size: {{values: [16, 32]}}
training: {{num_train_epochs: 2}}
early_terminate: {{type: none}}
method: random
run_cap: 3
max_concurrent: 2
seed: 1
tracking: {{wandb: {{project: hpo-tests, mode: offline}}}}
""",
    )
    assert main(["run", spec, "--name", "tiny", "--storage", str(root / "runs"), "--quiet"]) == 0
    run_dir = str(root / "runs" / "tiny")
    search_best = read_yaml(os.path.join(run_dir, "best.yaml"))
    interrupted_confirm(run_dir)  # and nothing it left stands in the way of the real one
    # As if the data files had been refreshed since the search: confirm goes on, and says so.
    data_yaml = Path(run_dir, "data.yaml")
    recorded = data_yaml.read_text()
    data_yaml.write_text(recorded.replace(read_yaml(data_yaml)["fingerprint"], "0123456789abcdef"))
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["confirm", run_dir, "--top-k", "2", "--seeds", "2", "--quiet"])
    data_yaml.write_text(recorded)
    assert code == 0, err.getvalue()
    assert "data.yaml: 0123456789abcdef); the candidates were picked on the old" in err.getvalue()
    return run_dir, search_best


def test_confirm_retrains_top_configurations_with_fresh_seeds(confirmed):
    run_dir, search_best = confirmed
    document = read_yaml(os.path.join(run_dir, "confirm.yaml"))
    assert document["metric"] == "eval_loss" and len(document["seeds"]) == 2
    assert 1 not in document["seeds"]  # the search trained with seed 1: these are fresh
    ranking = document["ranking"]
    assert len(ranking) == 2
    top = top_configurations(load_run(run_dir), 2)  # the same picks after best.yaml changed
    assert {e["trial_id"] for e in ranking} == {c.trial_id for c in top}
    # The model the search exported is the first candidate, ties or not.
    assert [e["trial_id"] for e in ranking if e["search_rank"] == 1] == [search_best["trial_id"]]
    for e in ranking:
        assert [s["seed"] for s in e["seeds"]] == document["seeds"]
        values = [s["value"] for s in e["seeds"]]
        assert all(isinstance(v, float) for v in values)
        assert e["mean"] == pytest.approx(statistics.fmean(values))
        assert e["std"] == pytest.approx(statistics.stdev(values))
    # Chosen by the lowest mean loss over the fresh seeds, whatever the search said.
    assert ranking[0]["chosen"] and ranking[0]["mean"] <= ranking[1]["mean"]


def test_best_yaml_and_model_follow_the_most_robust_configuration(confirmed):
    run_dir, search_best = confirmed
    from transformers import AutoModelForSequenceClassification

    chosen = read_yaml(os.path.join(run_dir, "confirm.yaml"))["ranking"][0]
    best = read_yaml(os.path.join(run_dir, "best.yaml"))
    assert {k: v for k, v in best["hyperparameters"].items() if k != "seed"} == chosen["config"]
    winner_values = {s["seed"]: s["value"] for s in chosen["seeds"]}
    # The exported run is the chosen configuration's best seed.
    assert best["value"] == pytest.approx(min(winner_values.values()))
    assert winner_values[best["hyperparameters"]["seed"]] == pytest.approx(best["value"])
    assert best["confirmed"]["mean"] == pytest.approx(chosen["mean"])
    assert best["search_best"]["trial_id"] == search_best["trial_id"]
    assert best["data"]["fingerprint"]
    folder = os.path.join(run_dir, "best_model")
    AutoModelForSequenceClassification.from_pretrained(folder)
    assert (
        read_yaml(os.path.join(folder, "hpo_best.yaml"))["hyperparameters"]
        == best["hyperparameters"]
    )
    card = read_text(os.path.join(folder, "README.md"))
    assert "fresh seeds" in card and f"{chosen['mean']:.4g}" in card
    assert "trial-seconds for hpo confirm" in card  # the compute confirmation spent counts too
    assert best["confirmed"]["trial_seconds"] > 0
    assert best["data"]["fingerprint"] in card
    # Of the retrained runs' checkpoints only the adopted one is left, and it re-exports.
    kept = glob.glob(os.path.join(run_dir, "confirm", "*", "checkpoint_*"))
    assert [os.path.realpath(p) for p in kept] == [os.path.realpath(best["checkpoint"])]
    again = os.path.join(os.path.dirname(run_dir), "re-exported")
    assert main(["export", run_dir, "--out", again]) == 0
    assert read_yaml(os.path.join(again, "hpo_best.yaml"))["value"] == best["value"]


def test_report_shows_the_seed_spread(confirmed):
    run_dir, _ = confirmed
    assert main(["report", run_dir]) == 0
    page = read_text(os.path.join(run_dir, "report", "report.html"))
    assert 'src="seed_spread.png"' in page and "over 2 seeds" in page
    assert os.path.getsize(os.path.join(run_dir, "report", "seed_spread.png")) > 10_000


def test_confirm_refuses_bad_input_and_writes_nothing(confirmed, tmp_path, capsys):
    run_dir, _ = confirmed
    assert main(["confirm", str(tmp_path), "--quiet"]) == 2
    assert "not a run directory" in capsys.readouterr().err and os.listdir(tmp_path) == []
    assert main(["confirm", run_dir, "--seeds", "0", "--quiet"]) == 2
    assert "--seeds" in capsys.readouterr().err
    before = os.path.getmtime(os.path.join(run_dir, "best.yaml"))
    assert main(["confirm", run_dir, "--quiet"]) == 2  # once is the record; no silent redo
    assert "already confirmed" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(run_dir, "best.yaml")) == before


def test_confirm_on_a_cluster_refuses_a_run_directory_some_node_cannot_see(
    confirmed, tmp_path, capsys, monkeypatch
):
    """As `hpo run` does: the retrained runs write checkpoints from whichever node runs them."""
    import ray

    from hpo import cluster as hpo_cluster

    run_dir, _ = confirmed
    copy = tmp_path / "unconfirmed"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("confirm*"))
    nodes = [
        {
            "Alive": True,
            "NodeID": c * 56,
            "NodeManagerAddress": f"10.0.0.{i}",
            "Resources": {"CPU": 2},
        }
        for i, c in enumerate("ab")
    ]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(hpo_cluster, "nodes_missing", lambda storage, nodes: nodes[1:])
    before = sorted(os.listdir(copy))
    assert main(["confirm", str(copy), "--quiet"]) == 2
    assert f"storage: `{copy}` is node-local: 1 of 2 nodes" in capsys.readouterr().err
    assert sorted(os.listdir(copy)) == before  # no confirm/ folder, no confirm.yaml
