"""A search whose storage is an S3 bucket: Ray Tune writes trials and checkpoints there, hpo
uploads its results and best model beside them. The bucket is a moto S3 server on 127.0.0.1,
started and stopped by this test."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import as_if_from_a_terminal, hpo_command, write_spec
from wandb_offline import read_runs

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_server():
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    try:
        import pyarrow.fs

        deadline = time.time() + 30
        while True:
            try:
                fs = pyarrow.fs.S3FileSystem(
                    endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True
                )
                fs.create_dir("hpo-bucket")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        yield fs, f"endpoint_override=127.0.0.1:{port}&scheme=http", env
    finally:
        server.kill()
        server.wait()
        for key in env:
            os.environ.pop(key, None)


def bucket_spec(
    tmp_path, model, data, learning_rates, epochs, extra="", wandb="disabled", scheduler="none"
):
    """A grid over `learning_rates` (one trial each), no early stopping and W&B off unless
    asked: what the bucket tests run."""
    return write_spec(
        tmp_path / "s3.yaml",
        f"""
model: {{name_or_path: {model}}}
data: {{train: {data}, max_length: 48, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
parameters:
  learning_rate: {{values: {list(learning_rates)}}}
training: {{num_train_epochs: {epochs}, per_device_train_batch_size: 16}}
early_terminate: {{type: {scheduler}, min_iter: 1, eta: 2}}
run_cap: {len(learning_rates)}
checkpoints: {{resume_interval_s: 0}}
tracking: {{wandb: {{project: hpo-tests, mode: {wandb}}}}}
{extra}
""",
    )


def test_search_with_bucket_storage(s3_server, tmp_path, tiny_bert, sentiment_csv):
    import pyarrow.fs

    fs, query, env = s3_server
    spec = bucket_spec(
        tmp_path, tiny_bert, sentiment_csv, [1.0e-3, 3.0e-3], epochs=2, scheduler="asha"
    )
    ray_tmp = tempfile.mkdtemp(prefix="hpo-s3", dir="/tmp")
    storage = f"s3://hpo-bucket/runs?{query}"
    # RAY_ADDRESS names a cluster's dashboard, as for `hpo submit`: a plain `hpo run` still
    # starts its own embedded Ray (ray.init would refuse an http address).
    dashboard = {"RAY_ADDRESS": "http://127.0.0.1:9"}
    result = subprocess.run(
        hpo_command("run", spec, "--name", "bucket", "--storage", storage, "--quiet"),
        env={**os.environ, **env, **dashboard, "RAY_TMPDIR": ray_tmp, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"s3://hpo-bucket/runs/bucket?{query}"
    listing = fs.get_file_info(pyarrow.fs.FileSelector("hpo-bucket/runs/bucket", recursive=True))
    names = {info.path.removeprefix("hpo-bucket/runs/bucket/") for info in listing}
    for own in (
        "spec.yaml",
        "trials.csv",
        "best.yaml",
        "best_model/config.json",
        "best_model/model.safetensors",
        "scheduler_notes.txt",  # the rung guard's verdict, written to the mirror and uploaded
    ):
        assert own in names, own
    assert any("/checkpoint_" in n for n in names), "Ray wrote the checkpoints to the bucket"
    with fs.open_input_stream("hpo-bucket/runs/bucket/trials.csv") as f:
        assert f.read().decode().count("\n") == 3  # header + 2 trials
    _read_back_from_the_bucket(result.stdout.strip(), tmp_path / "here")

    # Confirmed by its URI on the machine that searched: the retrained runs go to the bucket
    # beside the search's, and confirm.yaml, best.yaml and best_model/ go back up. The local
    # mirror is refreshed from the bucket, but W&B's offline runs there (in no bucket, maybe not
    # yet synced) are kept.
    uri = result.stdout.strip()
    mirror = tmp_path / ".cache" / "hpo" / "runs" / "bucket"
    unsynced = mirror / "wandb" / "offline-run-20261128_000000-abc" / "run-abc.wandb"
    unsynced.parent.mkdir(parents=True)
    unsynced.write_bytes(b"not yet synced")
    (mirror / "stale.txt").write_text("from an earlier run of this name")
    confirmed = subprocess.run(
        hpo_command("confirm", uri, "--top-k", "2", "--seeds", "1", "--quiet"),
        env={
            **os.environ,
            **env,
            "RAY_TMPDIR": ray_tmp,
            "HOME": str(tmp_path),
            "WANDB_MODE": "offline",  # transformers' notice then, which stdout must not carry
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert confirmed.returncode == 0, confirmed.stderr
    assert unsynced.read_bytes() == b"not yet synced" and not (mirror / "stale.txt").exists()
    assert confirmed.stdout.strip() == f"s3://hpo-bucket/runs/bucket/confirm.yaml?{query}"
    names = _bucket_names(fs, "hpo-bucket/runs/bucket")
    assert "confirm.yaml" in names
    # Of the retrained runs' checkpoints only the adopted one stays, in the bucket too.
    checkpoints = {
        re.match(r"confirm/[^/]+/checkpoint_[^/]+", n).group(0)  # type: ignore[union-attr]
        for n in names
        if re.match(r"confirm/[^/]+/checkpoint_", n)
    }
    assert len(checkpoints) == 1, names
    with fs.open_input_stream("hpo-bucket/runs/bucket/confirm.yaml") as f:
        ranking = yaml.safe_load(f.read().decode())["ranking"]
    assert len(ranking) == 2 and all(len(entry["seeds"]) == 1 for entry in ranking)
    with fs.open_input_stream("hpo-bucket/runs/bucket/best.yaml") as f:
        best = yaml.safe_load(f.read().decode())
    assert best["confirmed"]["search_trial"] == ranking[0]["trial_id"]
    assert best["checkpoint"].endswith(checkpoints.pop())  # the one best.yaml names
    with fs.open_input_stream("hpo-bucket/runs/bucket/best_model/hpo_best.yaml") as f:
        exported = yaml.safe_load(f.read().decode())
    assert exported["hyperparameters"] == best["hyperparameters"]  # the winner's model went up


def _read_back_from_the_bucket(uri, here):
    """export, report and compare take the URI `hpo run` printed, from another machine: none
    of them reads the searching machine's mirror (this process's HOME is not the search's)."""
    from transformers import AutoModelForSequenceClassification

    from hpo.cli import main

    assert main(["export", uri, "--out", str(here / "model")]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(here / "model")
    assert model.config.num_labels == 2 and (here / "model" / "README.md").is_file()
    assert main(["report", uri, "--out", str(here / "report")]) == 0
    assert (here / "report" / "report.html").is_file()
    assert main(["compare", uri, "--out", str(here / "compare")]) == 0
    assert "bucket" in (here / "compare" / "compare.html").read_text(), "named after the run"


def _bucket_names(fs, prefix):
    import pyarrow.fs

    listing = fs.get_file_info(
        pyarrow.fs.FileSelector(prefix, recursive=True, allow_not_found=True)
    )
    return {info.path.removeprefix(prefix + "/") for info in listing}


def test_interrupted_bucket_search_resumes_from_its_uri(
    s3_server, tmp_path, tiny_bert, sentiment_csv
):
    fs, query, env = s3_server
    spec = bucket_spec(
        tmp_path,
        tiny_bert,
        sentiment_csv,
        [1.0e-3, 2.0e-3, 3.0e-3],
        epochs=6,
        extra="max_concurrent: 1",
        wandb="offline",
    )
    run_env = {
        **os.environ,
        **env,
        "RAY_TMPDIR": tempfile.mkdtemp(prefix="hpo-s3r", dir="/tmp"),
        "HOME": str(tmp_path),
    }
    uri = f"s3://hpo-bucket/runs/paused?{query}"
    storage = f"s3://hpo-bucket/runs?{query}"
    run = subprocess.Popen(
        hpo_command("run", spec, "--name", "paused", "--storage", storage, "--quiet"),
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_if_from_a_terminal,
    )
    deadline = time.time() + 300
    while not any("/checkpoint_" in n for n in _bucket_names(fs, "hpo-bucket/runs/paused")):
        assert run.poll() is None and time.time() < deadline, run.communicate()
        time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=180)
    assert run.returncode == 130, err
    # The hint is a command a shell runs as it is: the URI's `&` and `?` quoted.
    assert f"hpo resume '{uri}'" in err
    assert "best_model/config.json" not in _bucket_names(fs, "hpo-bucket/runs/paused")

    # Resumed from another machine: another home, so another local mirror. The callbacks Tune
    # unpickles name the first machine's; W&B must write under this one's.
    first_mirror = tmp_path / ".cache" / "hpo" / "runs" / "paused"
    started_before = {r.name for r in read_runs(str(first_mirror))}

    def resume_on_another_machine(home: Path, timeout: int) -> subprocess.CompletedProcess:
        home.mkdir()
        # W&B offline from the environment: transformers then prints a notice, never on stdout
        env = {**run_env, "HOME": str(home), "WANDB_MODE": "offline"}
        command = hpo_command("resume", uri)
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)

    elsewhere = tmp_path / "elsewhere"
    resumed = resume_on_another_machine(elsewhere, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == uri
    names = _bucket_names(fs, "hpo-bucket/runs/paused")
    assert {"trials.csv", "best.yaml", "best_model/config.json"} <= names
    # The versions the search started with came down with its spec; the resume's went back up.
    with fs.open_input_stream("hpo-bucket/runs/paused/environment.yaml") as f:
        record = yaml.safe_load(f.read().decode())
    assert record["versions"]["ray"] and len(record["resumes"]) == 1
    with fs.open_input_stream("hpo-bucket/runs/paused/trials.csv") as f:
        rows = list(csv.DictReader(io.StringIO(f.read().decode())))
    assert len(rows) == 3 and all(r["outcome"] == "completed" for r in rows), rows
    resumed_runs = {r.name for r in read_runs(str(elsewhere / ".cache" / "hpo" / "runs"))}
    unfinished = {r["trial_id"] for r in rows} - started_before
    assert resumed_runs >= unfinished and resumed_runs, (resumed_runs, started_before)
    assert {r.name for r in read_runs(str(first_mirror))} == started_before

    # Finished now: resumed once more, from a third machine, it does nothing and says so.
    model = "hpo-bucket/runs/paused/best_model/model.safetensors"
    exported = fs.get_file_info(model).mtime
    again = resume_on_another_machine(tmp_path / "third", timeout=300)
    assert again.returncode == 0, again.stderr
    assert "nothing to resume" in again.stderr and "trials: 3 completed" in again.stderr
    assert "best: eval_loss = " in again.stderr
    assert fs.get_file_info(model).mtime == exported


def test_commands_name_a_bucket_uri_that_holds_no_run(s3_server, capsys, tmp_path):
    from hpo.cli import main

    _, query, _ = s3_server
    uri = f"s3://hpo-bucket/runs/never?{query}"
    for command in (["resume", uri], ["report", uri], ["export", uri, "--out", str(tmp_path)]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert f"{uri}: no such run directory" in err and "Traceback" not in err, command
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_a_uri_with_credentials_is_refused_without_echoing_them(capsys, tmp_path):
    from hpo.cli import main

    query = "s3://bucket/runs/x?access_key=AKIDEXAMPLE&secret_key=hpo-test-secret&scheme=http"
    user_part = "s3://AKIDEXAMPLE:hpo-test-secret@bucket/runs/x"
    azure = "abfs://container/runs/x?sv=2024&sig=hpo-test-secret"
    for uri in (query, user_part, azure):
        for command in (
            ["report", uri],
            ["export", uri, "--out", str(tmp_path / "m")],
            ["resume", uri],
        ):
            assert main(command) == 2, command
            err = capsys.readouterr().err
            assert "carries bucket credentials" in err, command
            assert "hpo-test-secret" not in err and "AKIDEXAMPLE" not in err, command


def test_a_run_location_is_read_back_from_what_hpo_prints(tmp_path):
    from hpo.storage import RunLocation

    remote = RunLocation.at("s3://bucket/runs/search1?endpoint_override=h:9000&scheme=http")
    assert remote.remote and remote.path.endswith(
        "runs/search1?endpoint_override=h:9000&scheme=http"
    )
    assert remote.local.endswith(os.path.join("hpo", "runs", "search1"))
    local = RunLocation.at(str(tmp_path / "runs" / "search1") + "/")
    assert not local.remote and local.path == local.local == str(tmp_path / "runs" / "search1")


def test_a_second_ctrl_c_still_prints_a_resume_command_a_shell_can_run(monkeypatch, capsys):
    import hpo.tuner
    from hpo.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hpo.tuner, "resume_search", interrupted)
    uri = "s3://bucket/runs/x?endpoint_override=h:9000&scheme=http"
    assert main(["resume", uri]) == 130
    assert f"hpo resume '{uri}'" in capsys.readouterr().err
