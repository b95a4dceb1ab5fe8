"""Searches on a real multi-node Ray cluster on loopback, through `hpo submit` and `hpo jobs`.

The cluster is cluster/local_cluster.py's: a head with its job server and one worker node, each a
separate `ray start` on 127.0.0.1 with 1 CPU (the worker also declares 1 GPU, so GPU packing is
scheduled for real), token authentication on, under a temp folder of this module's own. It is
stopped by that folder (never `ray stop`), and the test checks that none of its processes is
left. The test process itself never calls ray.init.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, listening_addresses, off_loopback, write_spec

from hpo.cli import main
from hpo.errors import SpecError

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "hpo-cluster-secret-5d81e2"  # stands for a W&B API key in the submitter's environment
SCRIPT = ROOT / "cluster" / "local_cluster.py"


def _script() -> object:
    spec = importlib.util.spec_from_file_location("local_cluster", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cluster():
    """A head (job server) and a worker node on 127.0.0.1, 1 CPU each, token auth on."""
    folder = tempfile.mkdtemp(prefix="hpo-rc-", dir="/tmp")  # short: Ray's socket paths
    token = secrets.token_hex(16)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    script = _script()
    try:
        out = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "start",
                "--dir",
                folder,
                "--workers",
                "1",
                "--gpus",
                "1",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert out.returncode == 0, out.stderr
        info = json.loads(out.stdout)
        yield {**info, "token": token, "folder": folder}
    finally:
        subprocess.run(
            [sys.executable, str(SCRIPT), "stop", "--dir", folder], timeout=60, check=False
        )
        left = script.own_processes(folder)  # type: ignore[attr-defined]
        assert not left, f"left running: {[p.pid for p in left]}"
        assert not os.path.exists(folder)


@pytest.fixture
def hpo(cluster, monkeypatch, capsys):
    """Run the `hpo` CLI as a user whose environment holds the cluster's token and a secret."""
    monkeypatch.setenv("RAY_AUTH_TOKEN", cluster["token"])  # no RAY_AUTH_MODE: hpo sends it
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("RAY_ADDRESS", cluster["dashboard"])

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def tiny_spec(folder: Path, model: str, data: str, **extra: str) -> str:
    text = f"""
model: {{name_or_path: {model}}}
data: {{train: {data}, max_length: 32, labels: [fresh, rotten], max_train_samples: 200}}
metric: {{name: eval_loss}}
parameters:
  learning_rate: {{distribution: log_uniform_values, min: 1.0e-4, max: 3.0e-3}}
training: {{num_train_epochs: {extra.get("epochs", 2)}}}
early_terminate: {{type: none}}
run_cap: {extra.get("run_cap", 4)}
max_concurrent: 2
tracking: {{wandb: {{project: hpo-tests, mode: offline}}}}
resources: {{cpu: {extra.get("cpu", 1)}, gpu: {extra.get("gpu", 0)}}}
"""
    folder.mkdir(parents=True, exist_ok=True)
    return write_spec(folder / "tiny.yaml", text)


def files_holding(folder: str, text: str) -> list[str]:
    needle = text.encode()
    return [str(p) for p in Path(folder).rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_every_node_listens_on_loopback_only(cluster):
    """Its GCS, raylets, job server and agents: none is reachable from the network."""
    listening = listening_addresses(_script().own_processes(cluster["folder"]))  # type: ignore[attr-defined]
    assert sum("raylet" in entry for entry in listening) >= 2, listening  # both nodes looked at
    assert not off_loopback(listening), listening


def test_submitted_search_runs_on_both_nodes(cluster, hpo, tiny_bert, sentiment_csv):
    folder = Path(cluster["folder"])
    # The data file travels with the job: the job reads its own copy in its working_dir.
    spec = tiny_spec(folder / "specs", tiny_bert, sentiment_csv)
    storage = str(folder / "runs")
    code, job_id, err = hpo("submit", spec, "--name", "tiny", "--storage", storage)
    assert code == 0, err
    job_id = job_id.strip()
    assert job_id.startswith("raysubmit_")

    code, logs, _ = hpo("jobs", "logs", job_id, "--follow")
    assert code == 0, logs
    code, status, _ = hpo("jobs", "status", job_id)
    assert "status: SUCCEEDED" in status
    run_dir = os.path.join(storage, "tiny")
    assert f"run_dir: {run_dir}" in status

    for name in ("spec.yaml", "trials.csv", "evaluations.csv", "best.yaml", "wandb"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert os.path.isfile(os.path.join(run_dir, "best_model", "config.json"))
    with open(os.path.join(run_dir, "trials.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["outcome"] == "completed" for r in rows)
    assert len({r["node"] for r in rows if r["node"]}) == 2, [r["node"] for r in rows]

    # The job read its own copy of the data, which Ray deletes with the job's working_dir; the
    # run directory names the file here, so `hpo resume` and `hpo confirm` here find it.
    recorded = yaml.safe_load(Path(run_dir, "spec.yaml").read_text())["data"]
    assert recorded["train"] == [os.path.abspath(sentiment_csv)]

    code, listing, _ = hpo("jobs", "list")
    assert job_id in listing and "tiny" in listing
    out = str(folder / "fetched")
    code, printed, _ = hpo("jobs", "fetch", job_id, "--out", out)
    assert code == 0 and printed.strip() == out
    assert sorted(os.listdir(out)) == sorted(os.listdir(run_dir))

    code, plain_logs, _ = hpo("jobs", "logs", job_id)
    # The secret travelled sealed: it is in no output, and in no file of the run directory or
    # of Ray's own (job table dumps, runtime-env agent logs, worker logs) on either node.
    for text in (logs, plain_logs, status, listing):
        assert SECRET not in text
    assert files_holding(cluster["folder"], SECRET) == []
    # It did travel, sealed (Ray's job table holds the sealed form), and every hpo process
    # on the cluster (driver, trial workers) opened it.
    from hpo.jobs import client

    env_vars = client(None).get_job_info(job_id).runtime_env["env_vars"]
    assert "HPO_SEALED_ENV" in env_vars and "WANDB_API_KEY" not in env_vars
    assert files_holding(cluster["folder"], "cannot open the job's secrets") == []


def test_job_records_the_data_files_where_they_were_submitted_from(
    tmp_path, monkeypatch, tiny_bert, sentiment_csv
):
    from hpo.config import load_spec
    from hpo.jobs import DATA_ORIGIN_ENV, _package, with_data_origins

    spec_path = tiny_spec(tmp_path / "specs", tiny_bert, sentiment_csv)
    job = tmp_path / "job"  # the job's working_dir, as `hpo submit` packs it
    job.mkdir()
    origins = _package(str(spec_path), [], load_spec(spec_path), str(job))
    shipped = f"data/train-0-{os.path.basename(sentiment_csv)}"
    assert origins == {shipped: os.path.abspath(sentiment_csv)}

    monkeypatch.chdir(job)  # where the job's `hpo run` starts
    in_job = load_spec(job / "spec.yaml")
    assert in_job.data.train == [str(job / shipped)]  # the job reads its own copy
    monkeypatch.setenv(DATA_ORIGIN_ENV, json.dumps(origins))
    recorded = with_data_origins(in_job)
    assert recorded.data.train == [os.path.abspath(sentiment_csv)]
    assert in_job.data.train == [str(job / shipped)], "the search's own spec is untouched"
    monkeypatch.delenv(DATA_ORIGIN_ENV)
    assert with_data_origins(in_job) is in_job  # `hpo run` outside a job


class FakeJobs:
    """Stands for Ray's JobSubmissionClient: keeps what a submission sent, working_dir too."""

    def __init__(self, keep: Path) -> None:
        self.keep, self.sent = keep, []

    def submit_job(self, entrypoint: str, runtime_env: dict, metadata: dict) -> str:
        shutil.copytree(runtime_env["working_dir"], self.keep)  # Ray uploads it; hpo deletes it
        self.sent.append({"entrypoint": entrypoint, "env": runtime_env["env_vars"], **metadata})
        return "raysubmit_fake"

    def list_jobs(self) -> list:
        return []


def test_resume_job_carries_the_runs_data(tmp_path, monkeypatch, tiny_bert, sentiment_csv):
    from hpo import jobs
    from hpo.config import dump_spec, load_spec
    from hpo.data import load_frames
    from hpo.paths import DATA_SHIPPED_ENV

    data = tmp_path / "here" / "reviews.csv"  # the data on the machine the search came from
    data.parent.mkdir()
    shutil.copy(sentiment_csv, data)
    spec = load_spec(tiny_spec(tmp_path / "specs", tiny_bert, str(data)))
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text(dump_spec(spec))
    fake = FakeJobs(tmp_path / "job")
    monkeypatch.setattr(jobs, "client", lambda address: fake)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)

    submission = jobs.submit_for_run("resume", str(run_dir), None, [])
    (sent,) = fake.sent
    assert submission.job_id == "raysubmit_fake" and submission.run_dir == str(run_dir)
    assert sent["entrypoint"] == f"python -m hpo.cli resume {run_dir} --address auto"
    assert (sent["hpo_command"], sent["hpo_name"]) == ("resume", "tiny")
    copy = "data/train-0-reviews.csv"
    assert json.loads(sent["env"][DATA_SHIPPED_ENV]) == {str(data): copy}
    assert (fake.keep / copy).read_bytes() == data.read_bytes()

    # In the job: the run's spec names the file here, which the cluster may not have; the
    # job reads its copy, and the run's records go on naming the original.
    data.unlink()
    monkeypatch.chdir(fake.keep)
    monkeypatch.setenv(DATA_SHIPPED_ENV, sent["env"][DATA_SHIPPED_ENV])
    assert len(load_frames(spec.data)["train"]) == 400
    assert yaml.safe_load((run_dir / "spec.yaml").read_text())["data"]["train"] == [str(data)]

    # A run whose data is not here any more, or no run at all: one message, nothing sent.
    with pytest.raises(SpecError, match=f"data.train: {data} is not on this machine"):
        jobs.submit_for_run("confirm", str(run_dir), None, ["--top-k", "1"])
    with pytest.raises(SpecError, match="no such run directory"):
        jobs.submit_for_run("resume", str(tmp_path / "runs" / "nothing"), None, [])
    assert len(fake.sent) == 1


def test_job_options_of_resume_and_confirm_exit_2(tmp_path, capsys):
    """--pip/--env without --submit, a bad count, a dashboard's address for a driver here:
    refused before anything is read or sent."""
    for argv, said in (
        (["resume", str(tmp_path), "--pip", "peft"], "--pip: only with --submit"),
        (["confirm", str(tmp_path), "--env", "HOME"], "--env: only with --submit"),
        (["confirm", str(tmp_path), "--submit", "--top-k", "0"], "--top-k and --seeds must be"),
        (["run", str(tmp_path / "spec.yaml"), "--address", "http://h:8265"], "--address http"),
        (["resume", str(tmp_path), "--address", "http://h:8265"], "a dashboard address is for"),
        (["confirm", str(tmp_path), "--address", "https://h:8265"], "a dashboard address is for"),
        # nothing listens there: said at once, where Ray would retry for minutes
        (["run", str(tmp_path / "spec.yaml"), "--address", "127.0.0.1:9"], "no Ray cluster"),
        (["resume", str(tmp_path), "--address", "ray://127.0.0.1:9"], "no Ray cluster answers"),
    ):
        assert main(argv) == 2
        assert said in capsys.readouterr().err


def test_secrets_are_sealed_with_the_ray_token(monkeypatch):
    from hpo import sealed_env

    monkeypatch.setenv("RAY_AUTH_TOKEN", "cluster-token")
    sealed = sealed_env.seal({"WANDB_API_KEY": SECRET}, "cluster-token")
    assert SECRET not in sealed
    monkeypatch.setenv(sealed_env.SEALED, sealed)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    sealed_env.unseal_into_environ()
    assert os.environ["WANDB_API_KEY"] == SECRET and sealed_env.SEALED not in os.environ
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        sealed_env.unseal(sealed, "another-token")


def test_stop_ends_a_running_search(cluster, hpo, tiny_bert, sentiment_csv):
    folder = Path(cluster["folder"])
    spec = tiny_spec(folder / "specs-long", tiny_bert, sentiment_csv, epochs="200", run_cap="8")
    storage = str(folder / "runs")
    code, job_id, err = hpo("submit", spec, "--name", "long", "--storage", storage)
    assert code == 0, err
    job_id = job_id.strip()
    run_dir = Path(storage, "long")
    deadline = time.monotonic() + 180
    while not list(run_dir.glob("train_trial_*")) and time.monotonic() < deadline:
        time.sleep(1)
    assert list(run_dir.glob("train_trial_*")), "no trial started"

    code, printed, _ = hpo("jobs", "stop", job_id)
    assert code == 0 and printed.strip() == "STOPPED"
    # The driver and every trial are gone; only the nodes' own processes are left.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = [
            " ".join(p.cmdline())
            for p in _script().own_processes(cluster["folder"])  # type: ignore[attr-defined]
            if _alive_cmd(p, ("ray::ImplicitFunc", "hpo.cli run"))
        ]
        if not busy:
            break
        time.sleep(1)
    assert not busy, busy


def test_stopped_search_resumes_and_confirms_as_jobs(cluster, hpo, tiny_bert, sentiment_csv):
    folder = Path(cluster["folder"])
    data = folder / "mine" / "reviews.csv"  # the user's data file, on the submitting machine
    data.parent.mkdir()
    shutil.copy(sentiment_csv, data)
    spec = tiny_spec(folder / "specs-again", tiny_bert, str(data), epochs="4")
    storage = str(folder / "runs")
    code, job_id, err = hpo("submit", spec, "--name", "again", "--storage", storage)
    assert code == 0, err
    run_dir = Path(storage, "again")
    deadline = time.monotonic() + 180
    while not list(run_dir.glob("train_trial_*/checkpoint_*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    # While the search's job runs, no second driver may start on its run directory.
    code, _, err = hpo("resume", str(run_dir), "--submit")
    assert code == 2 and f"job {job_id.strip()} is RUNNING on this run" in err, err
    # Nor a driver here, on the folder that this machine and the cluster share.
    code, _, err = hpo("resume", str(run_dir))
    assert code == 2 and f"`hpo jobs stop {job_id.strip()}` (it is cluster job" in err, err
    code, printed, _ = hpo("jobs", "stop", job_id.strip())
    assert code == 0 and printed.strip() == "STOPPED"
    assert not (run_dir / "best.yaml").exists(), "the search ended before it was stopped"

    def run_as_job(*command: str) -> str:
        code, job, err = hpo(*command, str(run_dir), "--submit")
        assert code == 0, err
        # The job carries its own copy of the data: the file here may go (and comes back).
        data.rename(data.with_suffix(".away"))
        try:
            code, logs, _ = hpo("jobs", "logs", job.strip(), "--follow")
        finally:
            data.with_suffix(".away").rename(data)
        assert code == 0, logs
        return job.strip()

    resumed = run_as_job("resume")
    with open(run_dir / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["outcome"] == "completed" for r in rows), rows
    assert (run_dir / "best_model" / "config.json").is_file()
    assert yaml.safe_load((run_dir / "spec.yaml").read_text())["data"]["train"] == [str(data)]

    confirmed = run_as_job("confirm", "--top-k", "1", "--seeds", "1")
    ranking = yaml.safe_load((run_dir / "confirm.yaml").read_text())
    assert len(ranking["ranking"]) == 1 and len(ranking["ranking"][0]["seeds"]) == 1
    code, listing, _ = hpo("jobs", "list")
    for job, command in ((resumed, "resume"), (confirmed, "confirm")):
        (line,) = [row for row in listing.splitlines() if row.startswith(job)]
        assert line.split()[1:4] == ["SUCCEEDED", command, "again"], line


def _alive_cmd(proc: object, marks: tuple[str, ...]) -> bool:
    try:
        line = " ".join(proc.cmdline())  # type: ignore[attr-defined]
    except Exception:
        return False
    return any(m in line for m in marks)


def test_trial_bigger_than_any_node_fails_fast(cluster, hpo, tiny_bert, sentiment_csv):
    folder = Path(cluster["folder"])
    spec = tiny_spec(folder / "specs-gpu", tiny_bert, sentiment_csv, gpu="2")
    code, job_id, err = hpo("submit", spec, "--name", "gpu", "--storage", str(folder / "runs"))
    assert code == 0, err
    code, logs, _ = hpo("jobs", "logs", job_id.strip(), "--follow")
    assert code == 1
    refusal = r"resources: a trial asks for .*gpu=2\S* but the largest node has .*gpu=1"
    assert re.search(refusal, logs), logs
    assert not os.path.exists(folder / "runs" / "gpu")


def test_fractional_gpus_pack_trials_on_one_gpu(cluster, hpo, tiny_bert, sentiment_csv):
    """gpu: 0.5 puts two trials at once on the worker's one (declared) GPU; the head has none."""
    folder = Path(cluster["folder"])
    spec = tiny_spec(
        folder / "specs-half", tiny_bert, sentiment_csv, cpu="0.5", gpu="0.5", run_cap="2"
    )
    code, job_id, err = hpo("submit", spec, "--name", "half", "--storage", str(folder / "runs"))
    assert code == 0, err
    code, logs, _ = hpo("jobs", "logs", job_id.strip(), "--follow")
    assert code == 0, logs
    run_dir = folder / "runs" / "half"
    with open(run_dir / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and len({r["node"] for r in rows}) == 1  # only the GPU node
    spans = []
    for trial in run_dir.glob("train_trial_*"):
        reports = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        spans.append(
            (reports[0]["timestamp"] - reports[0]["time_total_s"], reports[-1]["timestamp"])
        )
    overlapping = [
        (a, b) for i, a in enumerate(spans) for b in spans[i + 1 :] if a[0] < b[1] and b[0] < a[1]
    ]
    assert overlapping, spans  # two trials shared the one GPU at the same time
    # Each trial saw exactly the GPU Ray gave it (the worker's only one), nothing else.
    seen = {
        json.loads(line)["hpo_visible_gpus"]
        for trial in run_dir.glob("train_trial_*")
        for line in (trial / "result.json").read_text().splitlines()
    }
    assert seen == {"0"}, seen


def test_bad_job_requests_exit_2(cluster, hpo, monkeypatch):
    code, _, err = hpo("jobs", "status", "raysubmit_nosuchjob")
    assert code == 2 and "raysubmit_nosuchjob: no such job" in err
    monkeypatch.delenv("RAY_ADDRESS")
    code, _, err = hpo("jobs", "list")
    assert code == 2 and "--address" in err
    code, _, err = hpo("jobs", "list", "--address", cluster["dashboard"])
    assert code == 0
    # The flag beats the environment (Ray's client would take RAY_ADDRESS over it), both ways.
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")
    assert hpo("jobs", "list", "--address", cluster["dashboard"])[0] == 0
    assert os.environ["RAY_ADDRESS"] == "http://127.0.0.1:9"
    monkeypatch.setenv("RAY_ADDRESS", cluster["dashboard"])
    code, _, err = hpo("jobs", "list", "--address", "http://127.0.0.1:9")
    assert code == 2 and "--address: " in err and "127.0.0.1:9" in err, err
    monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong")
    code, _, err = hpo("jobs", "list", "--address", cluster["dashboard"])
    assert code == 2 and "refused the token" in err


def test_multi_node_search_refuses_node_local_storage(monkeypatch):
    import ray

    from hpo import cluster as hpo_cluster
    from hpo.errors import SpecError

    nodes = [
        {"Alive": True, "NodeID": "a" * 56, "NodeManagerAddress": "10.0.0.1"},
        {"Alive": True, "NodeID": "b" * 56, "NodeManagerAddress": "10.0.0.2"},
    ]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(hpo_cluster, "nodes_missing", lambda storage, nodes: nodes[1:])
    with pytest.raises(SpecError, match=r"storage: `/data/runs` is node-local: 1 of 2 nodes"):
        hpo_cluster.check_storage_shared("/data/runs")
    hpo_cluster.check_storage_shared("s3://bucket/runs")  # every node reaches a URI


CLUSTER_DIR = ROOT / "cluster"


def test_cluster_configs_parse():
    files = sorted(CLUSTER_DIR.glob("*.yaml"))
    assert files
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), path


def test_launcher_config_fields():
    import jsonschema
    import ray.autoscaler

    config = yaml.safe_load((CLUSTER_DIR / "ray-cluster.aws.yaml").read_text())
    schema_file = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_file.read_text()))  # Ray's own schema
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type"):
        assert key in config, key
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu_types = [t for t in types.values() if t.get("resources", {}).get("GPU")]
    assert gpu_types and all(t["max_workers"] >= t.get("min_workers", 0) for t in gpu_types)
    setup = "\n".join(config.get("setup_commands", []))
    assert "pip install" in setup and "hpo" in setup


def test_kuberay_manifest_fields():
    docs = list(yaml.safe_load_all((CLUSTER_DIR / "kuberay-raycluster.yaml").read_text()))
    clusters = [d for d in docs if d.get("kind") == "RayCluster"]
    assert len(clusters) == 1
    rc = clusters[0]
    assert rc["apiVersion"] == "ray.io/v1"
    assert rc["metadata"]["name"]
    head = rc["spec"]["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head["template"]["spec"]["containers"]
    workers = rc["spec"]["workerGroupSpecs"]
    assert workers
    for group in workers:
        for key in ("groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams"):
            assert key in group, key
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        containers = group["template"]["spec"]["containers"]
        assert containers and all(c.get("image") for c in containers)
    for value in rc["spec"]["headGroupSpec"]["rayStartParams"].values():
        assert isinstance(value, str), "rayStartParams values are strings in the CRD"
