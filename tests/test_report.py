"""`hpo report` and `hpo compare` on a real tiny search (Ray Tune, Optuna TPE, ASHA, Trainer,
W&B offline): every figure is a real, non-blank PNG, report.html shows them in headless
Chromium, and W&B's offline files carry the fields its comparison panels need."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from conftest import write_spec
from PIL import Image
from wandb_offline import read_runs, records

from hpo.cli import main
from hpo.compare import rows as compare_rows
from hpo.data import prepare
from hpo.report import build_report, load_run
from hpo.report.importance import importance
from hpo.report.outcomes import outcome_label, rung_index
from hpo.runinfo import read_run_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIGURES = (
    "best_vs_time.png",
    "best_vs_trials.png",
    "learning_curves.png",
    "parallel_coordinates.png",
    "importance.png",
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="module")
def search(tmp_path_factory, tiny_bert, sentiment_csv, local_ray):
    """A finished tiny search, run once for the module, then reported on."""
    root = tmp_path_factory.mktemp("report")
    spec = write_spec(
        root / "tiny.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, max_length: 32, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
parameters:
  learning_rate: {{distribution: log_uniform_values, min: 1.0e-4, max: 5.0e-3}}
  per_device_train_batch_size: {{values: [16, 32]}}
  weight_decay: {{values: [0.0, 0.01]}}
training: {{num_train_epochs: 3}}
early_terminate: {{type: asha, min_iter: 1, eta: 2}}
run_cap: 6
max_concurrent: 2
seed: 5
tracking: {{wandb: {{project: hpo-tests, mode: offline}}}}
""",
    )
    code = main(["run", spec, "--name", "tiny", "--storage", str(root / "runs"), "--quiet"])
    assert code == 0
    run_dir = str(root / "runs" / "tiny")
    assert main(["report", run_dir]) == 0
    return run_dir


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_yaml(path: str) -> dict:
    return yaml.safe_load(read_text(path))


def report_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "report")


def assert_real_image(path: str, min_size: tuple[int, int] = (400, 200)) -> np.ndarray:
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[1] >= min_size[0] and pixels.shape[0] >= min_size[1], pixels.shape
    # Non-blank: a drawn figure has many colours and ink on a good share of rows.
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"{path}: only {len(colours)} colours"
    inked_rows = (pixels.min(axis=(1, 2)) < 200).mean()
    assert inked_rows > 0.3, f"{path}: mostly blank ({inked_rows:.0%} of rows have ink)"
    return pixels


def test_every_figure_is_a_real_png_that_the_page_references(search):
    page = read_text(os.path.join(report_dir(search), "report.html"))
    for name in FIGURES:
        assert_real_image(os.path.join(report_dir(search), name))
        assert f'src="{name}"' in page, name
    assert "http://" not in page and "https://" not in page  # opens offline
    best = read_yaml(os.path.join(search, "best.yaml"))
    assert best["trial_id"] in page  # the top-trials table


def test_report_renders_in_headless_chromium(search, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (.ci/run does)")
    shot = tmp_path / "report.png"
    page = "file://" + os.path.abspath(os.path.join(report_dir(search), "report.html"))
    done = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            page,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pixels = assert_real_image(str(shot), (1280, 2000))
    # The plots' blue (#0072B2) appears only inside the PNGs: the page loaded its images.
    blue = np.abs(pixels.astype(int) - (0, 114, 178)).sum(axis=2) < 40
    assert blue.sum() > 200, "no figure was drawn in the screenshot"


def test_terminal_summary_lists_the_best_trial(search, capsys):
    build_report(search)  # idempotent: rewrites the same files
    assert main(["report", search, "--out", os.path.join(search, "report2")]) == 0
    out = capsys.readouterr().out
    best = read_yaml(os.path.join(search, "best.yaml"))
    assert "top trials" in out and best["trial_id"] in out
    assert out.strip().splitlines()[-1].endswith("report2/report.html")


def test_outcomes_name_asha_rungs(search):
    assert [rung_index(e, 1, 2) for e in (1, 2, 3, 4)] == [0, 1, 1, 2]
    assert rung_index(3, 1, 3) == 1 and rung_index(9, 1, 3) == 2
    run = load_run(search)
    labels = {outcome_label(run.spec, r) for r in run.trials.to_dict("records")}
    assert "completed" in labels
    assert any(label.startswith("stopped at rung") for label in labels), labels


def test_importance_uses_optunas_evaluators_at_one_budget(search):
    run = load_run(search)
    result = importance(run)
    # The deepest evaluation that at least 4 of the 6 trials reached; all compared there.
    reached = run.evaluations.groupby("trial_id")["training_iteration"].max()
    assert (reached >= result.evaluation).sum() == result.trials >= 4
    assert result.evaluation == max(e for e in range(1, 4) if (reached >= e).sum() >= 4)
    assert set(result.scores) == {"fANOVA", "PED-ANOVA"}
    for scores in result.scores.values():
        assert set(scores) <= {"learning_rate", "per_device_train_batch_size", "weight_decay"}
        assert "learning_rate" in scores
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-6)


def test_wandb_offline_files_hold_the_summary_fields(search):
    rows = {r["trial_id"]: r for r in load_run(search).trials.to_dict("records")}
    runs = read_runs(search)
    trial_runs = [r for r in runs if r.name in rows]
    assert len(trial_runs) == len(rows)
    for run in trial_runs:
        row = rows[run.name]
        assert run.config["learning_rate"] == pytest.approx(float(row["learning_rate"]))
        assert run.summary["outcome"] == row["outcome"]
        assert run.summary["best_eval_loss"] == pytest.approx(float(row["best_eval_loss"]))
        if row["outcome"] == "stopped_early":
            assert run.summary["stopped_at_evaluation"] == int(row["evaluations"])
            assert run.summary["stopped_at_rung"] == rung_index(int(row["evaluations"]), 1, 2)
    summary = [r for r in runs if r.name == "tiny-summary"]
    assert len(summary) >= 1 and summary[-1].group == "tiny"
    best = read_yaml(os.path.join(search, "best.yaml"))
    assert summary[-1].summary["best_eval_loss"] == pytest.approx(best["value"])
    assert summary[-1].summary["trials"] == 6
    assert summary[-1].config["learning_rate"] == pytest.approx(
        best["hyperparameters"]["learning_rate"]
    )


def test_the_report_is_attached_to_the_group_as_an_artifact(search):
    import glob

    files = glob.glob(os.path.join(search, "wandb", "offline-run-*", "run-*.wandb"))
    artifacts = [
        rec.artifact
        for path in files
        for rec in records(path)
        if rec.WhichOneof("record_type") == "artifact"
    ]
    assert artifacts and artifacts[0].name == "tiny-report"
    paths = {entry.path for entry in artifacts[0].manifest.contents}
    assert {"report.html", "best.yaml", *FIGURES} <= paths


def test_model_card_says_how_the_model_was_found(search, tmp_path):
    card = read_text(os.path.join(search, "best_model", "README.md"))
    best = read_yaml(os.path.join(search, "best.yaml"))
    fingerprint = prepare(read_run_spec(search)).fingerprint
    assert best["data"]["fingerprint"] == fingerprint and fingerprint in card
    assert "sequence-classification" in card and "tpe" in card and "asha" in card
    assert "Trials: 6" in card and "trial-seconds" in card
    # The splits as trained and scored (after the carve), in words, not the rows read.
    data = best["data"]
    trained = f"- {data['train_examples']} train, {data['validation_examples']} validation examples"
    assert trained in card, card
    assert "train rows" not in card and "_removed" not in card
    software = next(line for line in card.splitlines() if line.startswith("- Software: "))
    for name in ("hpo", "transformers", "ray"):
        assert f"{name} {importlib.metadata.version(name)}" in software, name
    for name in best["hyperparameters"]:
        assert f"`{name}`" in card
    assert f"{best['value']:.4g}" in card
    # `hpo export` to another folder writes the same card (the fingerprint is in best.yaml).
    assert main(["export", search, "--out", str(tmp_path / "exported")]) == 0
    assert read_text(str(tmp_path / "exported" / "README.md")) == card


def test_compare_puts_searches_side_by_side(search, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(search, other, ignore=shutil.ignore_patterns("train_trial_*", "wandb"))
    out = tmp_path / "cmp"
    assert main(["compare", search, str(other), "--out", str(out)]) == 0
    assert_real_image(str(out / "compare.png"))
    page = (out / "compare.html").read_text()
    assert 'src="compare.png"' in page and "tiny" in page and "other" in page
    err = capsys.readouterr().err
    assert "searches compared" in err and "different data" not in err
    assert "confirmed" not in err  # no column for a confirmation that no search had

    # After `hpo confirm`, its mean and cost stand beside the search's own best and compute.
    confirmed = {"trial_seconds": 97.5, "ranking": [{"chosen": False, "mean": 0.9}]}
    confirmed["ranking"].append({"chosen": True, "mean": 0.4125})
    (other / "confirm.yaml").write_text(yaml.safe_dump(confirmed))
    table = compare_rows([load_run(search), load_run(str(other))])
    assert [r["confirmed eval_loss (mean)"] for r in table] == [None, 0.4125]
    assert [r["confirm (trial-s)"] for r in table] == [None, 97.5]
    assert table[0]["best eval_loss"] == table[1]["best eval_loss"]  # the search's, as before
    (other / "confirm.yaml").unlink()

    # Another sample cap on the training split: said, and that the scores are comparable.
    data_yaml = other / "data.yaml"
    record = yaml.safe_load(data_yaml.read_text())
    assert set(record["split_fingerprints"]) == {"train", "validation"}
    record["fingerprint"] = record["split_fingerprints"]["train"] = "0ther"
    data_yaml.write_text(yaml.safe_dump(record))
    assert main(["compare", search, str(other), "--out", str(tmp_path / "cmp0")]) == 0
    err = capsys.readouterr().err
    assert "trained on different data" in err and "are on the same validation set" in err, err

    # Another data file means another validation set: said, not refused.
    record["split_fingerprints"]["validation"] = "0ther"
    data_yaml.write_text(yaml.safe_dump(record))
    assert main(["compare", search, str(other), "--out", str(tmp_path / "cmp1")]) == 0
    assert "trained and scored on different data" in capsys.readouterr().err
    assert "different data" in (tmp_path / "cmp1" / "compare.html").read_text()

    # Best-so-far curves of different metrics cannot share an axis: refused, nothing written.
    for record in ("spec.yaml", "trials.csv"):  # a search of accuracy, consistent in itself
        path = other / record
        path.write_text(path.read_text().replace("eval_loss", "eval_accuracy"))
    assert main(["compare", search, str(other), "--out", str(tmp_path / "cmp2")]) == 2
    assert "different metrics" in capsys.readouterr().err
    assert not (tmp_path / "cmp2").exists()


def test_bad_run_directory_exits_2_and_writes_nothing(tmp_path, capsys):
    for command in (["report", str(tmp_path)], ["compare", str(tmp_path), str(tmp_path)]):
        assert main([*command, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "not a run directory" in err and "Traceback" not in err
        assert os.listdir(tmp_path) == []


def test_an_out_that_cannot_be_a_folder_is_one_message(search, tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("mine\n")
    for argv in (
        ["report", search, "--out", str(a_file)],
        ["compare", search, "--out", str(a_file)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"hpo: --out {a_file}: is a file; give a folder to write into\n", err
    assert a_file.read_text() == "mine\n"  # left as it was
    assert main(["report", search, "--out", "/proc/hpo-cannot-be-here"]) == 2
    err = capsys.readouterr().err
    assert "--out /proc/hpo-cannot-be-here: cannot create the folder (" in err
    assert "Traceback" not in err
