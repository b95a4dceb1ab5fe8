"""A run directory whose records were edited or damaged: report, compare and export refuse it
with one message naming the file (exit 2), not a traceback, and write nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

from hpo.cli import main
from hpo.export import checkpoint_in

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ROOT / "search_spaces" / "quickstart.yaml", run / "spec.yaml")
    return run


def test_trials_csv_without_its_columns(tmp_path, capsys):
    run = _run(tmp_path)
    (run / "trials.csv").write_text("trial_id,status\nt1,TERMINATED\n")
    for argv in (["report", str(run), "--out", str(tmp_path / "r")], ["compare", str(run)]):
        assert main([*argv]) == 2
        err = capsys.readouterr().err
        assert f"{run}/trials.csv: lacks the column(s) outcome, wall_seconds, " in err, err
        assert "best_eval_accuracy" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_best_yaml_that_is_not_hpos(tmp_path, capsys):
    run = _run(tmp_path)
    out = tmp_path / "model"
    for text, said in (
        ("- a list\n", "best.yaml: not the mapping hpo writes"),
        ("{bad: [yaml\n", "best.yaml: not the mapping hpo writes"),
        ("metric: eval_accuracy\ncheckpoint: null\n", "names no checkpoint for the best"),
    ):
        (run / "best.yaml").write_text(text)
        assert main(["export", str(run), "--out", str(out)]) == 2
        assert said in capsys.readouterr().err
    assert not out.exists()
    assert main(["export", str(tmp_path / "absent"), "--out", str(out)]) == 2
    assert "absent: no such run directory" in capsys.readouterr().err


def test_compare_names_every_bad_directory_at_once(tmp_path, capsys):
    damaged = _run(tmp_path)
    (damaged / "trials.csv").write_text("trial_id\nt1\n")
    absent = tmp_path / "absent"
    out = tmp_path / "cmp"
    assert main(["compare", str(damaged), str(absent), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("hpo: ") == 1 and "2 problems" in err, err
    assert f"{damaged}/trials.csv: lacks the column(s)" in err
    assert f"{absent}: no such run directory" in err
    assert not out.exists()


def test_export_replaces_a_model_folder_and_nothing_else(tmp_path, capsys):
    """--out names the run itself, the storage above it, a folder of other files, a file, or
    a place under a file: refused by name (exit 2), and every file there is left as it was."""
    run = _run(tmp_path)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me too")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for out, said in (
        (run, "holds the run directory"),
        (tmp_path, "holds the run directory"),
        (notes, "a folder with other files in it"),
        (a_file, "is a file"),
        (a_file / "model", "cannot be written"),
    ):
        assert main(["export", str(run), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--out {out}: {said}" in err and "Traceback" not in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert (notes / "todo.txt").read_text() == "keep me"
    # An earlier export is what --out may replace: past this check, to the run's own records.
    earlier = tmp_path / "model"
    earlier.mkdir()
    (earlier / "hpo_best.yaml").write_text("metric: eval_accuracy\n")
    assert main(["export", str(run), "--out", str(earlier)]) == 2
    assert "no best.yaml" in capsys.readouterr().err


def test_a_file_where_a_run_directory_goes_and_a_folder_where_a_spec_goes(tmp_path, capsys):
    spec = ROOT / "search_spaces" / "quickstart.yaml"
    for argv in (
        ["resume", str(spec)],
        ["export", str(spec), "--out", str(tmp_path / "m")],
        ["report", str(spec), "--out", str(tmp_path / "r")],
    ):
        assert main(argv) == 2
        assert "a file, not a run directory" in capsys.readouterr().err, argv
    assert main(["validate", str(ROOT / "search_spaces")]) == 2
    assert "a folder; give a spec file (YAML) in it" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_moved_runs_checkpoints_are_found_where_the_run_is_now(tmp_path):
    """best.yaml names where the search wrote them; a search's and a confirmation's trials
    nest differently."""
    old, now = "/elsewhere/runs/q", tmp_path / "fetched"
    search = now / "train_trial_ab_3_2026-12-08" / "checkpoint_000002"
    confirmed = now / "confirm" / "train_trial_cd_1_2026-12-08" / "checkpoint_000001"
    for folder in (search, confirmed):
        folder.mkdir(parents=True)
    for found in (search, confirmed):
        recorded = f"{old}/{found.relative_to(now)}"
        assert checkpoint_in(str(now), recorded) == str(found)
    # Not in the copy: the recorded path stays, for the message to name it.
    gone = f"{old}/train_trial_ef_4_2026-12-08/checkpoint_000003"
    assert checkpoint_in(str(now), gone) == gone
    inside = str(search)
    assert checkpoint_in(str(now), inside) == inside
