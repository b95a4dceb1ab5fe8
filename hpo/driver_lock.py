"""One driver per run directory: a second `hpo resume` or `hpo confirm` of a run that another hpo
process works on is refused, before it reads or writes anything.

Two drivers on one run directory would both write Tune's experiment state, the searcher's study
and hpo's records, and whichever finished last would overwrite the other: a resume started in a
second terminal, or on a workstation while a cluster job works on the same shared folder. The
driver holds an exclusive `flock` on a file in the run directory for as long as it works on it.
The kernel drops the lock when the process ends, however it ends (Ctrl-C, `kill -9`, a lost
machine), so there is never a stale lock to clear by hand. The file names its holder for the
refusal, and is emptied when the holder lets go.

A bucket run (s3://, gs://) has no such file: a bucket offers no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from hpo.errors import SpecError

LOCK_FILE = ".hpo-driver.lock"
# Ray's job supervisor hands a job's driver its metadata here (ray._private.runtime_env).
_RAY_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def driven_by(run_dir: str) -> dict[str, Any] | None:
    """Who drives the run now (its lock's holder: command, pid, host), or None; takes and
    drops the lock where no one does."""
    try:
        fd = os.open(os.path.join(run_dir, LOCK_FILE), os.O_RDONLY)
    except OSError:
        return None
    try:
        return None if _lock(fd) else _read_holder(fd)
    finally:
        os.close(fd)


def refuse_if_driven(run_dir: str | None) -> None:
    """SpecError (exit 2) naming the holder when another process drives the run; writes
    nothing. A command calls it first, so that the checks it makes before its first write
    (whose answers a running driver would make wrong: "no saved state yet") are not what the
    user reads; `driving` then takes the lock for the writes."""
    if run_dir is None:
        return
    holder = driven_by(run_dir)
    if holder is not None:
        raise SpecError([refusal(run_dir, holder)])


@contextlib.contextmanager
def driving(run_dir: str | None, command: str) -> Iterator[None]:
    """Hold `run_dir` for `command` ("hpo resume", ...) while the block runs; SpecError (exit
    2) naming the holder when another process holds it. None (a bucket run): no lock."""
    fd = _open(run_dir) if run_dir is not None else None
    if fd is None:
        yield
        return
    locked = _lock(fd)
    try:
        if not locked:
            raise SpecError([refusal(str(run_dir), _read_holder(fd))])
        _write_holder(fd, command)
        yield
    finally:
        if locked:  # a file left naming a process that is gone would only mislead
            os.ftruncate(fd, 0)
        os.close(fd)  # and the kernel drops the lock with it


def _open(run_dir: str) -> int | None:
    """The lock file's descriptor; None where it cannot be (a read-only or absent folder, for
    which the command has its own message)."""
    try:
        return os.open(os.path.join(run_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True  # a file system without locks (some network mounts): as before hpo had one
    return True


def _write_holder(fd: int, command: str) -> None:
    holder = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    job = _ray_job_id()
    if job:
        holder["job"] = job
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _ray_job_id() -> str | None:
    """The submission id when this process is a Ray Job's driver (`hpo submit`, --submit)."""
    try:
        config = json.loads(os.environ.get(_RAY_JOB_CONFIG, "") or "{}")
    except ValueError:
        return None
    job = (config.get("metadata") or {}).get("job_submission_id")
    return str(job) if job else None


def refusal(run_dir: str, holder: dict[str, Any]) -> str:
    """The message: who works on the run, and how to stop it."""
    if not holder:  # locked between its holder's open and write: a moment old
        return f"{run_dir}: another hpo process has just started on this run; wait for it to end"
    who = f"`{holder.get('command', 'hpo')}` (pid {holder.get('pid')} on {holder.get('host')}"
    who += f", since {holder.get('since')})"
    if holder.get("job"):
        stop = f"`hpo jobs stop {holder['job']}` (it is cluster job {holder['job']})"
    else:
        stop = f"Ctrl-C in its terminal, or `kill {holder.get('pid')}` on {holder.get('host')}"
    return (
        f"{run_dir}: {who} is working on this run; two drivers would overwrite each other's "
        f"records. Wait for it to end, or stop it first: {stop}"
    )
