"""Ctrl-C before a search runs: it takes effect once Ray has started (cut off inside
`ray.init`, Ray left processes behind and the driver crashed on exit), and it leaves no run
directory that `hpo resume` could not take."""

from __future__ import annotations

import os
import signal

import pytest

import hpo.tuner
from hpo.cli import main
from hpo.storage import RunLocation
from hpo.tuner import Interrupted


def test_ctrl_c_while_ray_starts_waits_for_it_then_stops_it(monkeypatch, capsys):
    import ray

    stopped = []
    monkeypatch.setattr(ray, "shutdown", lambda: stopped.append(True))
    reached_the_end = False
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), hpo.tuner._ctrl_c_after_it_starts():
        os.kill(os.getpid(), signal.SIGINT)  # as if pressed while ray.init runs
        reached_the_end = True
    assert reached_the_end and stopped == [True]
    assert "stopping as soon as Ray has started" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # restored, whatever it was


def test_ctrl_c_before_tune_saved_anything_leaves_no_run_directory(tmp_path):
    location = RunLocation(str(tmp_path), "search")
    os.makedirs(location.local)
    with pytest.raises(Interrupted) as err, hpo.tuner._kept_only_if_resumable(location):
        (tmp_path / "search" / "spec.yaml").write_text("model: {}\n")
        raise KeyboardInterrupt
    assert err.value.run_dir is None
    assert not (tmp_path / "search").exists()
    # An error there (a cluster that cannot hold a trial, say) leaves nothing either.
    os.makedirs(location.local)
    with pytest.raises(ValueError), hpo.tuner._kept_only_if_resumable(location):
        (tmp_path / "search" / "spec.yaml").write_text("model: {}\n")
        raise ValueError("refused")
    assert not (tmp_path / "search").exists()


def test_the_cli_says_there_is_nothing_to_resume(monkeypatch, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("model: {}\n")

    def interrupted(*args, **kwargs):
        raise Interrupted(None)

    monkeypatch.setattr("hpo.config.load_spec", lambda *a, **k: None)
    monkeypatch.setattr("hpo.tuner.run_search", interrupted)
    assert main(["run", str(spec)]) == 130
    assert "interrupted before the search started: nothing to resume" in capsys.readouterr().err


def test_ctrl_c_once_tune_saved_its_state_names_the_run_to_resume(tmp_path, monkeypatch):
    """As during the export after the trials (Tune hands Ctrl-C back when it returns)."""
    from ray import tune

    monkeypatch.setattr(tune.Tuner, "can_restore", staticmethod(lambda path: True))
    location = RunLocation(str(tmp_path), "search")
    os.makedirs(location.local)
    with pytest.raises(Interrupted) as err, hpo.tuner._kept_only_if_resumable(location):
        raise KeyboardInterrupt
    assert err.value.run_dir == location.path and os.path.isdir(location.local)
