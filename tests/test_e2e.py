"""A whole search through real Ray Tune, Optuna (TPE), ASHA, the HF Trainer and W&B (offline),
on a tiny BERT with a real tokenizer and real Rotten Tomatoes snippets (seconds per trial)."""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import pytest
import ray
import yaml
from conftest import read_csv, read_yaml, write_spec
from wandb_offline import read_runs

from hpo.cli import main
from hpo.data import prepare
from hpo.evaluate import evaluate_folder
from hpo.runinfo import read_run_spec
from hpo.trial.reporter import TRIAL_STATE_FILE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "hpo-test-secret-7f3a9c"  # stands for a W&B API key in the environment


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_bert, sentiment_csv, local_ray):
    root = tmp_path_factory.mktemp("e2e")
    spec = write_spec(
        root / "tiny.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, max_length: 48, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
parameters:
  learning_rate: {{distribution: log_uniform_values, min: 1.0e-4, max: 3.0e-3}}
  per_device_train_batch_size: {{values: [16, 32]}}
  model.hidden_dropout_prob: {{values: [0.0, 0.1]}}
training: {{num_train_epochs: 4}}
early_terminate: {{type: asha, min_iter: 1, eta: 2}}
# The tiny model barely learns: the lowest learning rates rank best at every evaluation. Run
# them first, so that ASHA has good rungs to compare the sampled trials with (were TPE's own
# trials each better than the last, ASHA would rightly stop none).
points_to_evaluate:
  - {{learning_rate: 1.0e-4, per_device_train_batch_size: 32}}
  - {{learning_rate: 1.1e-4, per_device_train_batch_size: 16}}
run_cap: 6
max_concurrent: 2
seed: 3
tracking: {{wandb: {{project: hpo-tests, mode: offline}}}}
""",
    )
    os.environ["WANDB_API_KEY"] = SECRET
    try:
        code = main(["run", spec, "--name", "tiny", "--storage", str(root / "runs"), "--quiet"])
    finally:
        del os.environ["WANDB_API_KEY"]
    assert code == 0
    return str(root / "runs" / "tiny")


def test_run_directory_contract(finished_run):
    for name in ("spec.yaml", "environment.yaml", "trials.csv", "best.yaml", "best_model"):
        assert os.path.exists(os.path.join(finished_run, name)), name
    record = read_yaml(os.path.join(finished_run, "environment.yaml"))
    assert record["versions"]["ray"] == ray.__version__ and record["versions"]["hpo"]
    assert record["finished"].endswith(" UTC")  # what `hpo resume` reads (below)
    spec = read_yaml(os.path.join(finished_run, "spec.yaml"))
    assert spec["run_cap"] == 6 and spec["metric"]["goal"] == "minimize"

    rows = read_csv(os.path.join(finished_run, "trials.csv"))
    assert len(rows) == 6
    for column in (
        "trial_id",
        "status",
        "learning_rate",
        "per_device_train_batch_size",
        "model.hidden_dropout_prob",
        "best_eval_loss",
        "last_eval_loss",
        "evaluations",
        "stopped_early",
        "wall_seconds",
        "error",
    ):
        assert column in rows[0], column
    assert all(r["status"] == "TERMINATED" and r["error"] == "" for r in rows)
    # the embedded Ray's one node, by its loopback address and the head of its id
    assert {r["node"].split(" ")[0] for r in rows} == {"127.0.0.1"}, rows
    assert len({r["node"] for r in rows}) == 1 and len(rows[0]["node"]) == len("127.0.0.1 ") + 8
    # ASHA stopped some trials before their 4th evaluation.
    stopped = [r for r in rows if r["stopped_early"] == "True"]
    assert stopped and all(int(r["evaluations"]) < 4 for r in stopped)
    assert any(int(r["evaluations"]) == 4 for r in rows)


def test_finished_trials_keep_tune_statistics_only_for_the_metric(finished_run):
    # Tune's running statistics of every other reported key are dropped as trials finish.
    (path,) = glob.glob(os.path.join(finished_run, "experiment_state-*.json"))
    with open(path) as f:
        trial_data = json.load(f)["trial_data"]
    kept = [set(json.loads(metadata)["metric_analysis"]) for _, metadata in trial_data]
    assert len(kept) == 6
    # Saved as stopped, trials paused at the end too (Tune does not rewrite those by itself).
    assert [json.loads(state)["status"] for state, _ in trial_data] == ["TERMINATED"] * 6
    assert all(keys == {"eval_loss", "training_iteration"} for keys in kept), kept


def test_a_finished_searchs_checkpoints_keep_nothing_only_a_resume_reads(finished_run):
    kept = glob.glob(os.path.join(finished_run, "*", "checkpoint_*"))
    assert kept and all(glob.glob(os.path.join(c, "model.safetensors")) for c in kept)
    assert not glob.glob(os.path.join(finished_run, "*", "checkpoint_*", "optimizer.pt"))


def test_best_is_the_best_evaluation_of_all_trials(finished_run):
    best = read_yaml(os.path.join(finished_run, "best.yaml"))
    rows = read_csv(os.path.join(finished_run, "evaluations.csv"))
    lowest = min(float(r["eval_loss"]) for r in rows)
    assert all(float(r["train_loss"]) > 0 for r in rows)  # its learning curve, per evaluation
    assert best["metric"] == "eval_loss"
    assert best["value"] == pytest.approx(lowest)
    assert set(best["hyperparameters"]) == {
        "learning_rate",
        "per_device_train_batch_size",
        "model.hidden_dropout_prob",
    }
    # ... and as the trial ran with them: TrainingArguments' values, the model's config.
    sampled = best["hyperparameters"]
    assert best["training_arguments"]["learning_rate"] == sampled["learning_rate"]
    assert best["model_config"] == {"hidden_dropout_prob": sampled["model.hidden_dropout_prob"]}


def test_best_model_loads_and_reproduces_its_metric(finished_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = os.path.join(finished_run, "best_model")
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    AutoTokenizer.from_pretrained(folder)
    assert model.config.id2label == {0: "fresh", 1: "rotten"}
    best = read_yaml(os.path.join(finished_run, "best.yaml"))
    assert (
        read_yaml(os.path.join(folder, "hpo_best.yaml"))["hyperparameters"]
        == best["hyperparameters"]
    )
    spec = read_run_spec(finished_run)
    data = prepare(spec)
    metrics = evaluate_folder(folder, spec, data.validation, data.tokenizer)
    assert metrics["eval_loss"] == pytest.approx(best["value"], abs=1e-3)


def test_wandb_has_one_offline_run_per_trial(finished_run):
    runs = read_runs(finished_run)
    trials = {r["trial_id"]: r for r in read_csv(os.path.join(finished_run, "trials.csv"))}
    assert sorted(r.name for r in runs) == sorted(trials)
    for run in runs:
        trial = trials[run.name]
        assert run.group == "tiny"
        assert run.config["learning_rate"] == pytest.approx(float(trial["learning_rate"]))
        assert len(run.history) == int(trial["evaluations"])
        assert all("eval_loss" in h for h in run.history)
        # The training curve beside eval's; Ray's bookkeeping is not a chart of its own.
        assert all("train_loss" in h for h in run.history), run.history
        assert not any("time_this_iter_s" in h or "timestamp" in h for h in run.history)
        # What every trial shares, so runs of different searches compare in W&B.
        assert run.config["task"] == "sequence-classification" and "training" in run.config
        expected = "stopped_early" if trial["stopped_early"] == "True" else "completed"
        assert run.summary["outcome"] == expected
        assert run.summary["best_eval_loss"] == pytest.approx(float(trial["best_eval_loss"]))
    # The installed packages are recorded once, in environment.yaml, not once per trial.
    assert not glob.glob(os.path.join(finished_run, "wandb", "*", "files", "requirements.txt"))


def test_export_command_rewrites_the_model_folder(finished_run, tmp_path):
    out = tmp_path / "exported"
    assert main(["export", finished_run, "--out", str(out)]) == 0
    names = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "tokenizer.json", "hpo_best.yaml"} <= names
    assert not names & {"optimizer.pt", "scheduler.pt", "trainer_state.json", TRIAL_STATE_FILE}
    # The search's own export says what `hpo export` says: the data, the held-out scores.
    exported = yaml.safe_load((out / "hpo_best.yaml").read_text())
    with open(os.path.join(finished_run, "best_model", "hpo_best.yaml")) as f:
        assert yaml.safe_load(f) == exported
    assert "fingerprint" in exported["data"]
    # Readable as any new file is here (transformers writes its weights for their owner only).
    umask = os.umask(0)
    os.umask(umask)
    for folder in (str(out), os.path.join(finished_run, "best_model")):
        mode = os.stat(os.path.join(folder, "model.safetensors")).st_mode & 0o777
        assert mode == 0o666 & ~umask, oct(mode)


def test_export_of_a_moved_run_reads_the_checkpoint_where_the_run_is_now(finished_run, tmp_path):
    """A fetched or renamed copy exports its own checkpoint, not the original's (best.yaml
    names the path the search wrote), and still exports once the original is gone."""
    moved = tmp_path / "fetched"
    shutil.copytree(finished_run, moved)
    with open(moved / "best.yaml") as f:
        recorded = Path(yaml.safe_load(f)["checkpoint"])
    assert str(recorded).startswith(finished_run)
    config = moved / recorded.relative_to(finished_run) / "config.json"
    marked = {**json.loads(config.read_text()), "hpo_test_marker": "the copy's"}
    config.write_text(json.dumps(marked))
    assert main(["export", str(moved), "--out", str(tmp_path / "model")]) == 0
    exported = json.loads((tmp_path / "model" / "config.json").read_text())
    assert exported["hpo_test_marker"] == "the copy's"


def test_resuming_a_finished_search_changes_nothing(finished_run, capsys):
    """No Ray, no data, no export: a best model that `hpo confirm` chose would survive it."""

    def snapshot() -> dict[str, tuple[int, bytes]]:
        files = {}
        for dirpath, _, names in os.walk(finished_run):
            for name in names:
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    files[path] = (os.stat(path).st_mtime_ns, f.read())
        return files

    before = snapshot()
    best = read_yaml(os.path.join(finished_run, "best.yaml"))
    assert main(["resume", finished_run]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == finished_run
    assert f"{finished_run} finished at " in err and "nothing to resume" in err
    assert f"best: eval_loss = {best['value']:.6g} (trial {best['trial_id']}," in err
    outcomes = [row["outcome"] for row in read_csv(os.path.join(finished_run, "trials.csv"))]
    assert f"{outcomes.count('completed')} completed" in err
    assert snapshot() == before


def test_no_secret_reaches_the_run_directory(finished_run):
    for dirpath, _, files in os.walk(finished_run):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert SECRET.encode() not in f.read(), os.path.join(dirpath, name)


def test_a_search_ends_where_a_trial_reaches_the_target(
    tmp_path, tiny_bert, sentiment_csv, local_ray, capfd
):
    """W&B's `metric.target`: the first evaluation within it ends the search, which is finished
    (not interrupted: nothing to resume) and exports that trial's model."""
    spec = write_spec(
        tmp_path / "target.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, max_length: 32, max_train_samples: 64}}
metric: {{name: eval_loss, target: 50.0}}   # any finite loss is below it
parameters:
  learning_rate: {{distribution: log_uniform_values, min: 1.0e-4, max: 3.0e-3}}
training: {{num_train_epochs: 3}}
run_cap: 6
max_concurrent: 1
tracking: {{wandb: {{mode: disabled}}}}
""",
    )
    code = main(["run", spec, "--name", "t", "--storage", str(tmp_path / "runs"), "--quiet"])
    err = capfd.readouterr().err
    assert code == 0, err
    assert "metric.target reached: the search ended there" in err
    assert "interrupted" not in err
    run = tmp_path / "runs" / "t"
    rows = read_csv(str(run / "trials.csv"))
    assert len(rows) < 6, rows  # the search stopped well short of run_cap
    assert rows[0]["evaluations"] == "1", rows  # at the evaluation that reached it
    assert rows[0]["outcome"] == "reached_target" and rows[0]["stopped_early"] == "False"
    assert "finished" in read_yaml(str(run / "environment.yaml"))
    assert (run / "best_model" / "config.json").is_file()
