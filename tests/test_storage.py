"""A search whose storage is an S3 bucket: Ray Tune writes trials and checkpoints there, hpo
uploads its results and best model beside them. The bucket is a moto S3 server on 127.0.0.1,
started and stopped by this test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import write_spec

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


def test_search_with_bucket_storage(s3_server, tmp_path, tiny_bert, sentiment_csv):
    import pyarrow.fs

    fs, query, env = s3_server
    spec = write_spec(
        tmp_path / "s3.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, max_length: 48, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
parameters:
  learning_rate: {{values: [1.0e-3, 3.0e-3]}}
training: {{num_train_epochs: 2, per_device_train_batch_size: 16}}
early_terminate: {{type: none}}
run_cap: 2
tracking: {{wandb: {{mode: disabled}}}}
""",
    )
    ray_tmp = tempfile.mkdtemp(prefix="hpo-s3", dir="/tmp")
    storage = f"s3://hpo-bucket/runs?{query}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo.cli",
            "run",
            spec,
            "--name",
            "bucket",
            "--storage",
            storage,
            "--quiet",
        ],
        env={**os.environ, **env, "RAY_TMPDIR": ray_tmp, "HOME": str(tmp_path)},
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
    ):
        assert own in names, own
    assert any("/checkpoint_" in n for n in names), "Ray wrote the checkpoints to the bucket"
    with fs.open_input_stream("hpo-bucket/runs/bucket/trials.csv") as f:
        assert f.read().decode().count("\n") == 3  # header + 2 trials
