"""A restarted trial keeps every evaluation it logged before the restart.

When a trial starts again from a checkpoint (a crashed worker retried, a paused trial promoted),
Ray's JSON logger first copies its result.json back from the run's storage over the driver's own
copy (its CSV logger does the same with progress.csv when it reopens the file). Ray syncs the
driver's copies to storage only every few seconds, so the evaluations logged since the last sync
were lost: gone from the trial's history, evaluations.csv, trials.csv and the report (seen under
load as a retried trial whose rows start at evaluation 3). Pushing the driver's copies to
storage just before Ray reads them back fixes it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ray.air.constants import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE
from ray.tune import Callback

RESULT_LOGS = (EXPR_RESULT_FILE, EXPR_PROGRESS_FILE)


class KeepResultLogs(Callback):
    """Before a trial restarts from a checkpoint, store the driver's copies of its result logs.

    Must come before Ray's loggers in the callbacks (Ray appends its own after the user's)."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.checkpoint is None:  # starting from scratch: Ray restores no logs either
            return
        for name in RESULT_LOGS:
            push_result_log(trial, name)


def push_result_log(trial: Any, name: str) -> None:
    """Copy the driver's `name` of `trial` to the trial's folder in storage, if it has one."""
    import pyarrow.fs

    local = os.path.join(trial.local_path, name)
    fs = trial.storage.storage_filesystem
    remote = f"{trial.storage.trial_fs_path}/{name}"
    if not os.path.isfile(local) or _same_file(fs, local, remote):
        return
    try:
        pyarrow.fs.copy_files(
            local,
            remote,
            source_filesystem=pyarrow.fs.LocalFileSystem(),
            destination_filesystem=fs,
        )
    except Exception as err:  # the trial goes on; at worst its early rows are lost, as before
        print(f"hpo: could not store {name} of trial {trial.trial_id}: {err}", file=sys.stderr)


def _same_file(fs: Any, local: str, remote: str) -> bool:
    import pyarrow.fs

    if not isinstance(fs, pyarrow.fs.LocalFileSystem):
        return False
    return os.path.exists(remote) and os.path.samefile(local, remote)
