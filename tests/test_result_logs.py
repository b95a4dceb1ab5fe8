"""A trial restarted from a checkpoint keeps the evaluations it logged before the restart, with
Ray's own JSON and CSV loggers doing what they do at a restart (copy the logs back from storage)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from types import SimpleNamespace

import pyarrow.fs
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from hpo.result_logs import KeepResultLogs


class StandInTrial:
    """What Ray's loggers and hpo's callback read of a Tune trial."""

    def __init__(self, staging: str, storage: str) -> None:
        self.trial_id = "t1"
        self.config = {"learning_rate": 1e-3}
        self.local_path = staging  # the driver's copies
        self.storage = SimpleNamespace(
            storage_filesystem=pyarrow.fs.LocalFileSystem(), trial_fs_path=storage
        )
        self.checkpoint: object | None = None
        self.init_local_path()  # Tune makes it before the loggers see the trial

    def init_local_path(self) -> None:
        os.makedirs(self.local_path, exist_ok=True)


def _result(evaluation: int) -> dict:
    return {"training_iteration": evaluation, "global_step": 10 * evaluation, "eval_loss": 1.0}


def _sync(trial: StandInTrial) -> None:
    """Ray's periodic sync of the driver's copies to storage."""
    shutil.copytree(trial.local_path, trial.storage.trial_fs_path, dirs_exist_ok=True)


def _logged(folder: str) -> tuple[list[int], list[int]]:
    with open(os.path.join(folder, "result.json")) as f:
        from_json = [json.loads(line)["training_iteration"] for line in f]
    with open(os.path.join(folder, "progress.csv")) as f:
        from_csv = [int(row["training_iteration"]) for row in csv.DictReader(f)]
    return from_json, from_csv


def _restart_after_unsynced_evaluation(tmp_path, callbacks: list) -> StandInTrial:
    """Evaluation 1 synced to storage, evaluation 2 not yet; the worker dies; the trial restarts
    from evaluation 2's checkpoint and logs evaluation 3."""
    trial = StandInTrial(str(tmp_path / "staging"), str(tmp_path / "storage"))
    loggers = [JsonLoggerCallback(), CSVLoggerCallback()]
    for logger in loggers:
        logger.on_trial_start(0, [], trial)
        logger.on_trial_result(0, [], trial, _result(1))
    _sync(trial)
    for logger in loggers:
        logger.on_trial_result(0, [], trial, _result(2))
    trial.checkpoint = object()  # evaluation 2's
    for callback in [*callbacks, *loggers]:  # Ray appends its loggers after hpo's callbacks
        callback.on_trial_start(0, [], trial)
    for logger in loggers:
        logger.on_trial_result(0, [], trial, _result(3))
        logger.log_trial_end(trial)
    return trial


def test_a_restarted_trial_keeps_the_evaluations_logged_since_the_last_sync(tmp_path):
    trial = _restart_after_unsynced_evaluation(tmp_path, [KeepResultLogs()])
    assert _logged(trial.local_path) == ([1, 2, 3], [1, 2, 3])


def test_without_it_ray_loses_them(tmp_path):
    """The loss the callback prevents, in result.json, what Ray's results are read from (its
    CSV logger keeps its file open over a retry). If a Ray upgrade fixes it, the callback can go."""
    trial = _restart_after_unsynced_evaluation(tmp_path, [])
    assert _logged(trial.local_path)[0] == [1, 3]


def test_a_trial_starting_from_scratch_or_storage_that_is_the_driver_copy_is_left_alone(
    tmp_path,
):
    folder = tmp_path / "trial"
    folder.mkdir()
    (folder / "result.json").write_text('{"training_iteration": 1}\n')
    trial = StandInTrial(str(folder), str(folder))
    KeepResultLogs().on_trial_start(0, [], trial)  # no checkpoint: nothing to protect
    trial.checkpoint = object()
    KeepResultLogs().on_trial_start(0, [], trial)  # the same file: never copied onto itself
    assert (folder / "result.json").read_text() == '{"training_iteration": 1}\n'
