"""A corpus of malformed specs and data files (tests/bad_inputs/): each one gets one clear
message naming its key or file, exit code 2, no traceback, no Ray started, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

import hpo.jobs
import hpo.tuner
from hpo.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = sorted(CORPUS.glob("*.yaml"))


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


def _instantiate(case: Path, tmp_path: Path, tiny_bert: str) -> tuple[Path, str]:
    """The case with {model} and {data} filled in; returns it and the expected message."""
    data = str(CORPUS / "data")
    text = case.read_text().replace("{model}", tiny_bert).replace("{data}", data)
    first, _, body = text.partition("\n")
    assert first.startswith("# expect: "), f"{case.name} must open with '# expect: ...'"
    spec = tmp_path / case.name
    spec.write_text(body)
    return spec, first[len("# expect: ") :]


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_input_is_refused_cleanly(case, tmp_path, tiny_bert, capsys, monkeypatch):
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for bad input")

    monkeypatch.setattr(hpo.tuner, "init_ray", no_ray)
    spec, expected = _instantiate(case, tmp_path, tiny_bert)
    storage = tmp_path / "runs"
    args = ["run", str(spec), "--quiet"]
    if "storage:" not in spec.read_text():  # a case about storage keeps its own
        args += ["--storage", str(storage)]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err, err
    assert "Traceback" not in err
    assert "hpo-test-secret" not in err, "a credential in the input is never echoed"
    assert err.startswith("hpo: ") and err.count("hpo: ") == 1, "one message"
    assert not storage.exists(), "nothing may be written for bad input"


# What the cluster holds is for the cluster to say: a submitted search is checked there.
CLUSTER_DECIDES = {"resources_gpu_missing", "resources_no_node_has"}


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.stem not in CLUSTER_DECIDES],
    ids=[c.stem for c in CASES if c.stem not in CLUSTER_DECIDES],
)
def test_bad_input_is_refused_before_submitting(case, tmp_path, tiny_bert, capsys, monkeypatch):
    """`hpo submit` says the same, here, and contacts no cluster: a spec or a data file that
    `hpo run` refuses is not shipped to fail in a job (a missing column, one label class)."""

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was contacted for bad input")

    monkeypatch.setattr(hpo.jobs, "client", no_cluster)
    spec, expected = _instantiate(case, tmp_path, tiny_bert)
    args = ["submit", str(spec), "--address", "http://127.0.0.1:9"]
    if "storage:" not in spec.read_text():
        args += ["--storage", str(tmp_path / "runs")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_run_name_is_one_folder_in_storage(command, tmp_path, tiny_bert, capsys, monkeypatch):
    """`--name ../x` would put hpo's records in one place and Ray's saved state in another."""
    monkeypatch.setattr(hpo.tuner, "init_ray", lambda *a, **k: pytest.fail("Ray started"))
    monkeypatch.setattr(hpo.jobs, "client", lambda *a, **k: pytest.fail("cluster contacted"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {{name_or_path: {tiny_bert}}}\ndata: {{train: {CORPUS / 'data' / 'good.csv'}}}\n"
    )
    storage = tmp_path / "runs" / "inner"
    for name in ("../../escaped", "a/b", ".."):
        argv = [command, str(spec), "--name", name, "--storage", str(storage)]
        assert main([*argv, "--quiet"] if command == "run" else argv) == 2
        assert f"--name: `{name}` is not a folder name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


@pytest.mark.parametrize("command", ["run", "submit", "validate"])
def test_the_data_files_problems_come_with_the_specs(
    command, tmp_path, tiny_bert, capsys, monkeypatch
):
    """A spec with problems of its own and a data file without the label column: one message
    names both, so the user does not fix the spec to be told about the data next."""
    monkeypatch.setattr(hpo.tuner, "init_ray", lambda *a, **k: pytest.fail("Ray started"))
    monkeypatch.setattr(hpo.jobs, "client", lambda *a, **k: pytest.fail("cluster contacted"))
    good = CORPUS / "data" / "good.csv"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {{name_or_path: {tiny_bert}}}\n"
        f"data: {{train: {good}, label_column: sentiment}}\n"
        "parameters: {learning_rate: {min: 1.0e-3, max: 1.0e-5}}\n"
    )
    argv = [command, str(spec)] + (["--data"] if command == "validate" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err, err
    assert "parameters.learning_rate: min" in err, err
    assert f"data.label_column: `sentiment` is not a column of `{good}`" in err, err


def test_the_data_files_are_not_read_while_a_data_key_is_wrong(
    tmp_path, tiny_bert, capsys, monkeypatch
):
    """How the files are read is itself wrong (here the task): reading them would mislead."""
    monkeypatch.setattr(hpo.tuner, "init_ray", lambda *a, **k: pytest.fail("Ray started"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {{name_or_path: {tiny_bert}}}\n"
        f"data: {{train: {CORPUS / 'data' / 'good.csv'}, label_column: sentiment}}\n"
        "task: [causal-lm]\n"  # unreadable: the default task would want a label column
    )
    assert main(["run", str(spec), "--quiet", "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "task: " in err and "sentiment" not in err, err
