"""The driver's line per trial failure (Ray's tracebacks are silenced): which trial, its error,
whether it is restarted; the trial's failure record, kept per node; and the search's records
cleared at its end."""

from __future__ import annotations

import os
import time
import traceback

import cloudpickle
import pytest
from ray.exceptions import ActorDiedError, RayTaskError

from hpo import cluster_kv
from hpo.failure_lines import FailureLines
from hpo.trial.failures import failure_key, failure_on, record, repeated


class FakeTrial:
    """What FailureLines reads of a Ray trial: its id, status, failure count and error files."""

    def __init__(self, tmp_path, error: BaseException, failures: int) -> None:
        self.trial_id = "abc123"
        self.status = "PENDING"
        self.run_metadata = type("Meta", (), {"num_failures": failures})()
        self.pickled_error_file = str(tmp_path / "error.pkl")
        self.error_file = str(tmp_path / "error.txt")
        with open(self.pickled_error_file, "wb") as f:
            cloudpickle.dump(error, f)


@pytest.fixture
def kv(monkeypatch):
    """Ray's key-value store, as a dict."""
    store: dict[str, str] = {}
    monkeypatch.setattr(cluster_kv, "get", store.get)
    monkeypatch.setattr(cluster_kv, "put", store.__setitem__)
    return store


def as_ray_raises(error: BaseException) -> RayTaskError:
    """The error as the driver gets it: Ray's wrapper, with the trial's traceback as text."""
    try:
        raise error
    except type(error) as caught:
        return RayTaskError("train", traceback.format_exc(), caught)


def say(tmp_path, capsys, callback, error, failures, restarted):
    trial = FakeTrial(tmp_path, error, failures)
    hook = callback.on_trial_recover if restarted else callback.on_trial_error
    hook(0, [], trial)
    return capsys.readouterr().err


def test_an_error_of_the_moment_is_restarted_and_each_restart_said(tmp_path, capsys, kv):
    lines = FailureLines(retries=2, bar_key="k")
    oom = as_ray_raises(RuntimeError("CUDA out of memory"))
    assert say(tmp_path, capsys, lines, oom, 1, restarted=True) == (
        "hpo: trial abc123 failed: RuntimeError: CUDA out of memory; "
        "restarting it from its latest checkpoint (1 of 2)\n"
    )
    assert say(tmp_path, capsys, lines, oom, 3, restarted=False) == (
        "hpo: trial abc123 failed: RuntimeError: CUDA out of memory\n"
    )


def test_an_error_the_trial_recorded_is_said_once(tmp_path, capsys, kv):
    lines = FailureLines(retries=2, bar_key="k")
    first = "Traceback (most recent call last):\n  ...\nValueError: dropout 1.5"
    kv[failure_key("k", "abc123")] = record("node-a", first, None)  # as the trial wrote it
    said = say(tmp_path, capsys, lines, as_ray_raises(ValueError("dropout 1.5")), 1, True)
    assert said == (
        "hpo: trial abc123 failed: ValueError: dropout 1.5; not run again on its node: it "
        "would fail the same way\n"
    )
    # Ray still restarts it: the restart meets the record at once, and says nothing new.
    assert say(tmp_path, capsys, lines, as_ray_raises(repeated(first)), 2, True) == ""
    assert say(tmp_path, capsys, lines, as_ray_raises(repeated(first)), 3, False) == ""


def test_the_driver_goes_by_the_trials_record_not_the_errors_type(tmp_path, capsys, kv):
    """A ValueError raised before the trial's code ran (Ray unpickling its arguments) was not
    recorded: its restarts really run, and are said."""
    lines = FailureLines(retries=2, bar_key="k")
    said = say(tmp_path, capsys, lines, as_ray_raises(ValueError("unpickling")), 1, True)
    assert said.endswith("; restarting it from its latest checkpoint (1 of 2)\n")


def test_a_restart_meeting_a_record_reads_as_the_first_error(tmp_path, capsys, kv):
    lines = FailureLines(retries=1, bar_key="k")  # e.g. a driver resumed after the first
    first = "Traceback (most recent call last):\n  ...\nKeyError: 'q_proj'"
    kv[failure_key("k", "abc123")] = record("node-a", first, None)
    said = say(tmp_path, capsys, lines, as_ray_raises(repeated(first)), 1, restarted=True)
    assert said.startswith("hpo: trial abc123 failed: KeyError: 'q_proj'; not run again on")


def test_a_lost_worker_is_said_in_a_few_words(tmp_path, capsys, kv):
    died = ActorDiedError()
    died.error_msg = (  # as Ray writes it for a worker killed by SIGKILL
        "The actor died unexpectedly before finishing this task.\n\tclass_name: ImplicitFunc\n"
        "\tpid: 123\nThe actor is dead because its worker process has died. Worker exit type: "
        "UNEXPECTED_SYSTEM_EXIT Worker exit detail: Worker unexpectedly exits with a connection "
        "error code 2. End of file. There are some potential root causes. (1) The process is "
        "killed by SIGKILL by OOM killer due to high memory usage. (2) ..."
    )
    assert say(tmp_path, capsys, FailureLines(retries=2, bar_key="k"), died, 1, True) == (
        "hpo: trial abc123 failed: its worker process died (UNEXPECTED_SYSTEM_EXIT); "
        "restarting it from its latest checkpoint (1 of 2)\n"
    )


def test_an_unreadable_or_older_pickle_gives_way_to_the_text_file(tmp_path, capsys, kv):
    trial = FakeTrial(tmp_path, as_ray_raises(ValueError("an earlier failure")), 1)
    with open(trial.error_file, "w") as f:
        f.write("Failure # 1\nTraceback ...\nOSError: disk full\n\n")
    then = time.time() - 60  # Ray pickles only tasks' and actors' errors: this is the last one's
    os.utime(trial.pickled_error_file, (then, then))
    FailureLines(retries=0, bar_key="k").on_trial_error(0, [], trial)
    assert capsys.readouterr().err == "hpo: trial abc123 failed: OSError: disk full\n"
    with open(trial.pickled_error_file, "wb") as f:
        f.write(b"not a pickle")
    FailureLines(retries=0, bar_key="k").on_trial_error(0, [], trial)
    assert capsys.readouterr().err == "hpo: trial abc123 failed: OSError: disk full\n"


def test_a_record_holds_for_the_nodes_the_trial_failed_on():
    """What a node lacks (bf16, a kernel's package) raises these errors too: a restart on
    another node runs."""
    first = "Traceback ...\nValueError: bf16 is not supported on this device"
    once = record("node-a", first, None)
    assert failure_on("node-a", once) == first and failure_on("node-b", once) is None
    twice = record("node-b", "Traceback ...\nValueError: a later text", once)
    assert failure_on("node-b", twice) == first  # the first failure's traceback is kept
    assert failure_on("node-a", "not json") is None and failure_on("node-a", None) is None


@pytest.mark.e2e
def test_the_search_clears_its_failure_records_when_every_trial_ended(local_ray):
    key, other = "checkpoint-bar/test-clears", "checkpoint-bar/another-search"
    cluster_kv.put(failure_key(key, "t1"), "ValueError: x")
    cluster_kv.put(failure_key(other, "t1"), "ValueError: y")
    assert cluster_kv.get(failure_key(key, "t1")) == "ValueError: x"
    waiting = type("Trial", (), {"status": "PENDING"})()  # interrupted before its restart
    ended = type("Trial", (), {"status": "ERROR"})()
    FailureLines(retries=2, bar_key=key).on_experiment_end([ended, waiting])
    assert cluster_kv.get(failure_key(key, "t1")) == "ValueError: x"  # kept for `hpo resume`
    FailureLines(retries=2, bar_key=key).on_experiment_end([ended])
    assert cluster_kv.get(failure_key(key, "t1")) is None
    assert cluster_kv.get(failure_key(other, "t1")) == "ValueError: y"
    cluster_kv.delete(failure_key(other, "t1"))


def test_a_resumed_search_from_an_older_hpo_gets_its_failure_lines(tmp_path):
    """The CLI silences Ray's tracebacks, so a resumed search must say its failures too,
    under the key its resumed trials record them by."""
    from hpo.checkpoint_bar import bar_key
    from hpo.tuner import _with_failure_lines

    spec = type("Spec", (), {"retries": 3})()
    restored: list = [object()]  # an older search's callbacks: no FailureLines among them
    _with_failure_lines(restored, spec, str(tmp_path / "run"))
    added = [c for c in restored if isinstance(c, FailureLines)]
    assert len(added) == 1 and added[0].retries == 3
    assert added[0].bar_key == bar_key(str(tmp_path / "run"))
    _with_failure_lines(restored, spec, str(tmp_path / "run"))
    assert len(restored) == 2  # a search that has them keeps its own


def test_another_error_after_a_failure_for_good_is_said(tmp_path, capsys, kv):
    """A restart on another node runs, and may fail otherwise: that is news."""
    lines = FailureLines(retries=2, bar_key="k")
    kv[failure_key("k", "abc123")] = record("node-a", "Traceback ...\nValueError: x", None)
    assert "not run again" in say(tmp_path, capsys, lines, as_ray_raises(ValueError("x")), 1, True)
    said = say(tmp_path, capsys, lines, as_ray_raises(OSError("disk full")), 2, True)
    assert said.startswith("hpo: trial abc123 failed: OSError: disk full; restarting it")
