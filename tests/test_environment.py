"""environment.yaml: the versions a search started with, and what `hpo resume` ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import yaml

from hpo import environment


def _read(run_dir) -> dict:
    with open(os.path.join(run_dir, environment.ENV_FILE)) as f:
        return yaml.safe_load(f)


def test_a_new_search_records_its_versions(tmp_path):
    environment.record_start(str(tmp_path))
    versions = _read(tmp_path)["versions"]
    assert versions["python"] == platform.python_version()
    for name in ("hpo", "ray", "transformers", "optuna"):
        assert versions[name] == importlib.metadata.version(name), name
    assert list(versions)[2:] == list(environment.PACKAGES), "every package, in a fixed order"


def test_a_resume_on_other_versions_says_which_changed_and_is_appended(tmp_path, capsys):
    environment.record_start(str(tmp_path))
    document = _read(tmp_path)
    started = dict(document["versions"])
    document["versions"]["transformers"] = "4.0.0"
    document["versions"]["platform"] = "another machine"  # not a version: never reported
    (tmp_path / environment.ENV_FILE).write_text(yaml.safe_dump(document))

    changed = environment.record_resume(str(tmp_path))
    assert changed == [f"transformers 4.0.0 -> {started['transformers']}"]
    environment.warn_if_changed(changed)
    assert "transformers 4.0.0 -> " in capsys.readouterr().err

    after = _read(tmp_path)
    assert after["versions"]["transformers"] == "4.0.0", "what the search started with stays"
    assert [r["versions"] for r in after["resumes"]] == [environment.current()]
    assert environment.record_resume(str(tmp_path)) == changed
    assert len(_read(tmp_path)["resumes"]) == 2


def test_a_resume_on_the_same_versions_is_silent(tmp_path, capsys):
    environment.record_start(str(tmp_path))
    environment.warn_if_changed(environment.record_resume(str(tmp_path)))
    assert capsys.readouterr().err == ""


def test_a_run_made_before_the_record_resumes_without_one(tmp_path):
    assert environment.record_resume(str(tmp_path)) == []
    assert not (tmp_path / environment.ENV_FILE).exists(), "nothing invented after the fact"


def test_an_unreadable_record_is_left_as_it_is(tmp_path):
    path = tmp_path / environment.ENV_FILE
    path.write_text("versions: [unclosed\n")
    assert environment.record_resume(str(tmp_path)) == []
    assert path.read_text() == "versions: [unclosed\n", "nothing rewritten over it"
    assert environment.read(str(tmp_path)) is None


def test_a_finished_search_is_recorded_and_read_back(tmp_path):
    environment.record_start(str(tmp_path))
    assert environment.finished_at(str(tmp_path)) is None
    environment.record_finish(str(tmp_path))
    stamp = environment.finished_at(str(tmp_path))
    assert stamp is not None and stamp.endswith(" UTC")
    assert environment.read(str(tmp_path))["versions"]  # the versions are kept
    (tmp_path / "environment.yaml").write_text("finished: [unclosed")
    assert environment.finished_at(str(tmp_path)) is None  # unreadable: resume as before


def test_a_searchs_span_is_read_from_its_start_and_finish(tmp_path):
    path = tmp_path / environment.ENV_FILE
    environment.record_start(str(tmp_path))
    assert environment.span_seconds(str(tmp_path)) is None  # not finished
    path.write_text("started: 2026-12-07 21:43:27 UTC\nfinished: 2026-12-07 21:45:49 UTC\n")
    assert environment.span_seconds(str(tmp_path)) == 142.0
    path.write_text("started: yesterday\nfinished: 2026-12-07 21:45:49 UTC\n")
    assert environment.span_seconds(str(tmp_path)) is None  # edited by hand: no span
