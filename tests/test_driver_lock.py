"""One driver per run directory (hpo.driver_lock): a second resume or confirm is refused while
another process works on the run, and nothing is left to clear when that process dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import main
from hpo.driver_lock import LOCK_FILE, driving, refuse_if_driven
from hpo.errors import SpecError

# A driver stand-in: holds the run directory as `hpo resume` until its stdin closes.
HOLDER = """
import sys
from hpo.driver_lock import driving
with driving(sys.argv[1], "hpo resume"):
    print("held", flush=True)
    sys.stdin.read()
"""


def _hold(run_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def _files(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.iterdir()}


def test_a_second_driver_is_refused_naming_the_first(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "trials.csv").write_text("trial_id\n")
    holder = _hold(run_dir)
    try:
        before = _files(run_dir)
        for command in ("resume", "confirm"):
            assert main([command, str(run_dir)]) == 2
            err = capsys.readouterr().err
            assert f"`hpo resume` (pid {holder.pid} on {socket.gethostname()}" in err, err
            assert f"`kill {holder.pid}`" in err and "Traceback" not in err
        assert _files(run_dir) == before, "a refused driver writes nothing"
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    assert (run_dir / LOCK_FILE).read_text() == "", "emptied when its holder lets go"
    with driving(str(run_dir), "hpo confirm"):  # free again
        assert json.loads((run_dir / LOCK_FILE).read_text())["command"] == "hpo confirm"


def test_a_killed_driver_leaves_no_lock_behind(tmp_path):
    holder = _hold(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid  # still named
    with driving(str(tmp_path), "hpo resume"):  # ... yet the kernel dropped its lock
        pass


def test_a_cluster_job_holding_the_run_is_named_with_how_to_stop_it(tmp_path):
    # What Ray's job supervisor hands a job's driver (ray.dashboard.modules.job).
    job = {"metadata": {"job_submission_id": "raysubmit_abc123"}}
    holder = _hold(tmp_path, {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(job)})
    try:
        with pytest.raises(SpecError) as refused, driving(str(tmp_path), "hpo resume"):
            pass
        assert "`hpo jobs stop raysubmit_abc123` (it is cluster job raysubmit_abc123)" in str(
            refused.value
        )
    finally:
        holder.communicate("")


def test_no_lock_where_none_can_be_taken(tmp_path):
    with driving(None, "hpo resume"):  # a bucket run
        pass
    refuse_if_driven(str(tmp_path))  # a folder no driver held: nothing to say, nothing made
    assert list(tmp_path.iterdir()) == []
    missing = tmp_path / "absent"
    with driving(str(missing), "hpo resume"):  # the command says what is wrong with it
        pass
    assert not missing.exists(), "the lock never creates a run directory"


def test_an_export_of_a_run_still_driven_says_it_is_the_best_so_far(tmp_path, capsys):
    from hpo.export import _say_if_still_running

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _say_if_still_running(str(run_dir))
    assert capsys.readouterr().err == ""  # no lock: nothing to say
    holder = _hold(run_dir)
    try:
        _say_if_still_running(str(run_dir))
        err = capsys.readouterr().err
        assert f"`hpo resume` (pid {holder.pid}) is still working on this run" in err, err
        assert "best so far" in err
    finally:
        holder.communicate("")
    _say_if_still_running(str(run_dir))
    assert capsys.readouterr().err == ""  # its driver ended
