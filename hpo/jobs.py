"""Searches on a Ray cluster through Ray Jobs: submit, list, status, logs, stop, fetch.

The job's entrypoint is `hpo run` itself, so a submitted search takes the same code path as a
local one. The job carries, in its working_dir, the spec (overrides applied) and the local
data files it names; secrets reach it as one environment variable sealed with the cluster's
Ray token (hpo.sealed_env), never in a file, the spec or the command line.

Ray deletes a job's working_dir after the job, so the run directory's spec.yaml names the data
files where they are on the submitting machine (HPO_DATA_ORIGIN tells the job), not the copies
the job read: `hpo resume` and `hpo confirm` of the run, run there, find them. Run on the
cluster instead (`--submit`), they ship those files again, and the job reads its copies
(HPO_DATA_SHIPPED, hpo.paths.job_copy) while the run's records keep naming the originals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from hpo.config import apply_override, load_spec, read_yaml
from hpo.errors import SpecError, of_spec
from hpo.paths import DATA_SHIPPED_ENV, PACKAGE_SCHEME, is_remote_uri
from hpo.spec import JobSpec

# Passed through to the job when set in the submitter's environment; secrets sealed with the
# cluster's Ray token (hpo.sealed_env), so neither hpo nor Ray writes them down in the clear.
SECRET_ENV = (
    "WANDB_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
PLAIN_ENV = (
    "WANDB_MODE",
    "WANDB_BASE_URL",
    "WANDB_ENTITY",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
)
META_NAME, META_RUN_DIR, META_COMMAND = "hpo_name", "hpo_run_dir", "hpo_command"
DATA_ORIGIN_ENV = "HPO_DATA_ORIGIN"  # shipped data file (relative to the job) -> its origin
SPEC_NAME = "spec.yaml"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass
class Submission:
    job_id: str
    name: str
    run_dir: str


def auth_headers() -> dict[str, str]:
    """Ray 2.60 token authentication, the token taken from the user's environment as Ray does.

    Sent even when RAY_AUTH_MODE is unset; a cluster without token auth ignores it.
    """
    from hpo.sealed_env import ray_token

    token = ray_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def cluster_address(address: str | None) -> str:
    address = address or os.environ.get("RAY_ADDRESS", "")
    if not address.startswith(("http://", "https://")):
        shown = f" (got `{address}`)" if address else ""
        raise SpecError(
            [
                "--address: give the Ray dashboard address, e.g. http://HEAD:8265, or set "
                f"RAY_ADDRESS to it{shown}"
            ]
        )
    return address.rstrip("/")


# Ray's job client takes these over the address it is given; hpo's --address beats them.
_ADDRESS_ENV = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")


def client(address: str | None) -> Any:
    from ray.job_submission import JobSubmissionClient

    url = cluster_address(address)
    source = "--address" if address else "RAY_ADDRESS"
    with _without_env(_ADDRESS_ENV):
        return _call(source, lambda: JobSubmissionClient(url, headers=auth_headers()))


@contextlib.contextmanager
def _without_env(names: tuple[str, ...]) -> Iterator[None]:
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _call(what: str, fn: Any, *args: Any) -> Any:
    """A job-server request; its refusal (no such job, bad token) becomes one clear message."""
    from ray.exceptions import AuthenticationError

    try:
        return fn(*args)
    except AuthenticationError:
        raise SpecError(
            [
                "--address: the cluster refused the token; set RAY_AUTH_TOKEN (or "
                "RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token) to the cluster's token"
            ]
        ) from None
    except (ConnectionError, RuntimeError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "404" in text or "does not exist" in text:
            text = "no such job on this cluster"
        raise SpecError([f"{what}: {text}"]) from None


def submit(
    spec_path: str,
    address: str | None,
    overrides: list[str],
    *,
    name: str | None = None,
    storage: str | None = None,
    pip: list[str] | None = None,
    env: list[str] | None = None,
) -> Submission:
    """Check the spec here, then run `hpo run` on the cluster as a Ray Job; returns its id."""
    from hpo.tuner import search_name

    flags = ("storage",) if storage is not None else ()  # '' too: refused, not ignored
    overrides = list(overrides) + ([f"storage={storage}"] if flags else [])
    # bad input stops here: nothing is submitted
    spec = load_spec(spec_path, overrides, read_data=True, flags=flags)
    _check_local_data(spec, spec_path)
    name = search_name(spec, spec_path, name)
    run_dir = f"{spec.storage.rstrip('/')}/{name}"
    if not is_remote_uri(run_dir) and os.path.exists(run_dir):
        raise SpecError([f"--name: run directory {run_dir} exists; pick another name"])
    env_vars = _passed_env(env or [])
    jobs = client(address)
    with tempfile.TemporaryDirectory(prefix="hpo-job-") as folder:
        origins = _package(spec_path, overrides, spec, folder)
        if origins:
            env_vars[DATA_ORIGIN_ENV] = json.dumps(origins)
        command = ["run", SPEC_NAME, "--name", name, "--storage", spec.storage, "--quiet"]
        job_id = _launch(jobs, command, folder, env_vars, pip, name, run_dir)
    return Submission(job_id, name, run_dir)


def _check_local_data(spec: JobSpec, spec_path: str) -> None:
    """Data files on this machine are read and checked here, as `hpo run` would before Ray
    starts, so that a missing column or a single label class is said now, not by a job that
    fails on the cluster. (A Hub dataset is loaded by the job; this machine may not reach it.)"""
    from hpo.data import check_frames

    if spec.data.dataset is not None:
        return
    with of_spec(spec_path):
        check_frames(spec)


def submit_for_run(
    command: str,
    run_dir: str,
    address: str | None,
    args: list[str],
    *,
    pip: list[str] | None = None,
    env: list[str] | None = None,
) -> Submission:
    """`hpo resume` or `hpo confirm` of an existing run (`command`, with its `args`) on the
    cluster as a Ray Job. The run directory must be one the cluster reaches (a bucket, or a
    folder its nodes mount); the data files its spec names here travel with the job."""
    from hpo.runinfo import read_run_spec
    from hpo.storage import RunLocation

    location = RunLocation.at(run_dir)
    location.fetch_own_files()  # a bucket run's spec into the local mirror
    spec = read_run_spec(location.local)  # not a run directory: said here, nothing submitted
    env_vars = _passed_env(env or [])
    jobs = client(address)
    _refuse_if_busy(jobs, location.path)
    with tempfile.TemporaryDirectory(prefix="hpo-job-") as folder:
        shipped = {
            origin: copy for files in _ship_data(spec, folder).values() for origin, copy in files
        }
        if shipped:
            env_vars[DATA_SHIPPED_ENV] = json.dumps(shipped)
        line = [command, location.path, *args]
        job_id = _launch(jobs, line, folder, env_vars, pip, location.name, location.path)
    return Submission(job_id, location.name, location.path)


def _refuse_if_busy(jobs: Any, run_dir: str) -> None:
    """Two drivers writing one run directory would corrupt it: a job of the cluster that still
    works on this run (its search, resume or confirmation) must end first."""
    for job in _call("jobs list", jobs.list_jobs):
        status = str(getattr(job.status, "value", job.status))
        if (job.metadata or {}).get(META_RUN_DIR) == run_dir and status not in TERMINAL:
            job_id = job.submission_id or job.job_id
            raise SpecError(
                [
                    f"RUN_DIR: job {job_id} is {status} on this run; wait for it, or "
                    f"`hpo jobs stop {job_id}` first"
                ]
            )


def _launch(
    jobs: Any,
    command: list[str],
    folder: str,
    env_vars: dict[str, str],
    pip: list[str] | None,
    name: str,
    run_dir: str,
) -> str:
    """Start `hpo COMMAND ...` on the cluster (Ray's own address) with `folder` as the job's
    working_dir; returns the job's id."""
    entrypoint = shlex.join(["python", "-m", "hpo.cli", *command, "--address", "auto"])
    runtime_env: dict[str, Any] = {"working_dir": folder, "env_vars": env_vars}
    if pip:
        runtime_env["pip"] = list(pip)
    meta = {META_NAME: name, META_RUN_DIR: run_dir, META_COMMAND: command[0]}
    job_id = _call(
        "submit",
        lambda: jobs.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata=meta),
    )
    return str(job_id)


def _passed_env(extra: list[str]) -> dict[str, str]:
    """Plain settings as they are; secrets sealed with the Ray token (see hpo.sealed_env)."""
    from hpo.sealed_env import SEALED, ray_token, seal

    for name in extra:
        if "=" in name:
            raise SpecError(
                [
                    f"--env {name.split('=')[0]}=...: give only the name; the value is read from "
                    "your environment so it never appears on a command line"
                ]
            )
        if name not in os.environ:
            raise SpecError([f"--env {name}: not set in your environment"])
    plain = {n: os.environ[n] for n in PLAIN_ENV if n in os.environ}
    hidden = {n: os.environ[n] for n in dict.fromkeys([*SECRET_ENV, *extra]) if n in os.environ}
    if not hidden:
        return plain
    token = ray_token()
    if token is None:
        print(
            "hpo: no Ray auth token here, so " + ", ".join(hidden) + " travel in the job's "
            "runtime_env as they are, which Ray keeps in its job table and logs",
            file=sys.stderr,
        )
        return {**plain, **hidden}
    return {**plain, SEALED: seal(hidden, token)}


def _package(spec_path: str, overrides: list[str], spec: Any, folder: str) -> dict[str, str]:
    """spec.yaml with overrides applied, and the local files it names, paths made relative;
    returns each shipped file's path in the job -> the file here."""
    raw = read_yaml(spec_path)
    problems: list[str] = []
    for item in overrides:
        apply_override(raw, item, problems)
    data = raw.setdefault("data", {})
    origins: dict[str, str] = {}
    for split, files in _ship_data(spec, folder).items():
        copies = [copy for _, copy in files]
        data[split] = copies if isinstance(data.get(split), list) else copies[0]
        origins.update((copy, origin) for origin, copy in files)
    # The model is not shipped: trials on other nodes load it by path, and a working_dir lands
    # at a different path on each node. Hub ids and `package:` folders resolve on the cluster.
    model = raw.get("model")
    given = str(model.get("name_or_path", "")) if isinstance(model, dict) else ""
    local = spec.model.name_or_path
    if isinstance(model, dict) and not given.startswith(PACKAGE_SCHEME) and os.path.isdir(local):
        model["name_or_path"] = local
        print(
            f"hpo: model folder {local} is read by path: every node needs it there "
            "(a shared mount), or use a Hub id",
            file=sys.stderr,
        )
    Path(folder, SPEC_NAME).write_text(yaml.safe_dump(raw, sort_keys=False))
    return origins


def _ship_data(spec: Any, folder: str) -> dict[str, list[tuple[str, str]]]:
    """Copy the local data files the spec names into the job's folder; returns, per split,
    (the file here, its copy's path in the job, relative to the job's working_dir)."""
    shipped: dict[str, list[tuple[str, str]]] = {}
    if spec.data.dataset is not None:
        return shipped
    for split in ("train", "validation", "test"):
        value = getattr(spec.data, split)
        files = (value if isinstance(value, list) else [value]) if value else []
        for i, path in enumerate(files):
            if not os.path.isfile(path):
                raise SpecError([f"data.{split}: {path} is not on this machine to send"])
            copy = os.path.join("data", f"{split}-{i}-{os.path.basename(path)}")
            os.makedirs(os.path.join(folder, "data"), exist_ok=True)
            shutil.copy2(path, os.path.join(folder, copy))
            shipped.setdefault(split, []).append((path, copy))
    return shipped


def with_data_origins(spec: Any) -> Any:
    """In a submitted job, the spec as the run directory records it: data files named where
    they are on the submitting machine. Elsewhere the spec unchanged."""
    origins = json.loads(os.environ.get(DATA_ORIGIN_ENV) or "{}")
    if not origins or spec.data.dataset is not None:
        return spec

    def origin(path: str | None) -> str | None:
        # The job runs in its working_dir: a shipped file's path relative to it is its key.
        return origins.get(os.path.relpath(path), path) if path else path

    train = spec.data.train
    data = dataclasses.replace(
        spec.data,
        train=[origin(p) for p in (train if isinstance(train, list) else [train])],
        validation=origin(spec.data.validation),
        test=origin(spec.data.test),
    )
    return dataclasses.replace(spec, data=data)


def list_jobs(address: str | None) -> list[dict[str, str]]:
    jobs = client(address)
    rows = []
    for job in _call("jobs list", jobs.list_jobs):
        meta = job.metadata or {}
        rows.append(
            {
                "id": str(job.submission_id or job.job_id),
                "status": str(job.status.value if hasattr(job.status, "value") else job.status),
                "command": _command(meta),
                "name": meta.get(META_NAME, "-"),
                "started": _when(job.start_time),
                "run_dir": meta.get(META_RUN_DIR, "-"),
            }
        )
    return rows


def _command(meta: dict[str, str]) -> str:
    """What the job runs: run, resume or confirm (jobs of older hpo: run; others: -)."""
    return meta.get(META_COMMAND, "run" if META_NAME in meta else "-")


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def job_status(address: str | None, job_id: str) -> dict[str, str]:
    """What hpo shows about a job: never its runtime_env (that holds the passed secrets)."""
    info = _call(f"job {job_id}", client(address).get_job_info, job_id)
    meta = info.metadata or {}
    status = info.status.value if hasattr(info.status, "value") else info.status
    return {
        "id": job_id,
        "status": str(status),
        "command": _command(meta),
        "name": meta.get(META_NAME, "-"),
        "run_dir": meta.get(META_RUN_DIR, "-"),
        "started": _when(info.start_time),
        "ended": _when(info.end_time),
        "message": (info.message or "").strip(),
    }


def print_logs(address: str | None, job_id: str, follow: bool, out: TextIO | None = None) -> str:
    """Print a job's driver output (all of it, or following it to the end); returns its status."""
    out = out or sys.stdout
    jobs = client(address)
    if not follow:
        out.write(_call(f"job {job_id}", jobs.get_job_logs, job_id))
        return job_status(address, job_id)["status"]
    _call(f"job {job_id}", jobs.get_job_info, job_id)

    async def tail() -> None:
        async for chunk in jobs.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    return wait_terminal(address, job_id, timeout=30)


def wait_terminal(address: str | None, job_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = job_status(address, job_id)["status"]
        if status in TERMINAL or time.monotonic() > deadline:
            return status
        time.sleep(1)


def stop(address: str | None, job_id: str, timeout: float = 60) -> str:
    """Stop a job (its driver, and with it every trial) and wait until Ray says it ended."""
    _call(f"job {job_id}", client(address).stop_job, job_id)
    return wait_terminal(address, job_id, timeout)


def fetch(address: str | None, job_id: str, out: str) -> str:
    """Copy a job's run directory to `out` (from a shared folder, or s3:// / gs:// storage)."""
    info = job_status(address, job_id)
    run_dir = info["run_dir"]
    if run_dir == "-":
        raise SpecError([f"job {job_id}: not an hpo search (no run directory in its metadata)"])
    if os.path.exists(out):
        raise SpecError([f"--out: {out} exists; pick a new folder"])
    if info["status"] not in TERMINAL:
        print(f"hpo: job {job_id} is {info['status']}; copying what it has so far", file=sys.stderr)
    if is_remote_uri(run_dir):
        import pyarrow.fs

        pyarrow.fs.copy_files(run_dir, os.path.abspath(out))
    elif os.path.isdir(run_dir):
        shutil.copytree(run_dir, out)
    else:
        raise SpecError(
            [
                f"job {job_id}: its run directory {run_dir} is not reachable from this machine; "
                "submit with storage this machine shares with the cluster (a shared mount, or "
                "an s3:// / gs:// URI)"
            ]
        )
    return out
