"""`hpo resume` of a search whose run directory is not where it started.

Ray follows a moved experiment for most of its state: `Tuner.restore` takes the new path, and
the restored trials' storage follows it. Two parts of the saved state still name the old place:
- hpo's callbacks, pickled with the first machine's paths (a bucket run resumed on another
  machine writes W&B's files under that machine's mirror) and the checkpoint bar's key;
- the experiment Tune's search generator creates new trials from (Ray 2.60): after the resume,
  every new trial would be set up under the old run directory and fail ("Unable to set up
  cluster storage"), so a moved or renamed local run could not finish.
"""

from __future__ import annotations

import glob
import os
from typing import Any

SEARCH_GENERATOR_STATE = "search_gen_state-*.json"  # Tune's name; a cloudpickle despite it


def follow_moved_run(run_dir: str) -> bool:
    """Point the saved search generator of a local run at `run_dir`, if the run was moved or
    renamed since it was saved; returns whether it had to."""
    import ray.cloudpickle as cloudpickle

    saved = sorted(glob.glob(os.path.join(run_dir, SEARCH_GENERATOR_STATE)))
    if not saved:
        return False
    newest = saved[-1]  # the one Tune restores (it picks the greatest name)
    with open(newest, "rb") as f:
        state = cloudpickle.load(f)
    storage: Any = getattr(state.get("experiment"), "storage", None)
    saved_at = getattr(storage, "experiment_fs_path", None)
    parent, name = os.path.split(os.path.realpath(run_dir))
    if saved_at is None or os.path.realpath(str(saved_at)) == os.path.join(parent, name):
        return False
    # The experiment's spec holds this same object, so new trials get the new place.
    storage.storage_fs_path, storage.experiment_dir_name = parent, name
    tmp = f"{newest}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        cloudpickle.dump(state, f)
    os.replace(tmp, newest)
    return True


def relocate_callbacks(tuner: Any, run_dir: str, experiment_path: str) -> list[Any]:
    """Point the restored callbacks at this machine's run directory, and those keyed by the
    search (the checkpoint budget's bar, the failure lines) at the key the resumed trials use:
    the experiment path's, which changes when a local run directory was moved. Reached through
    Tune's private run config; if Ray moves it, the callbacks keep their old paths, as before.
    Returns the restored callbacks: Tune's own list, which the resumed search runs."""
    from hpo.checkpoint_bar import bar_key

    internal = getattr(tuner, "_local_tuner", None)
    run_config = internal.get_run_config() if internal is not None else None
    callbacks = getattr(run_config, "callbacks", None)
    if callbacks is None:
        return []
    from hpo.paths import is_remote_uri

    for callback in callbacks:
        if hasattr(callback, "relocate"):
            callback.relocate(run_dir)
        if hasattr(callback, "follow_local_run") and not is_remote_uri(experiment_path):
            callback.follow_local_run(run_dir)  # the checkpoint budget's paths
        if hasattr(callback, "use_bar_key"):  # the checkpoint budget, the failure lines
            callback.use_bar_key(bar_key(experiment_path))
    return callbacks
