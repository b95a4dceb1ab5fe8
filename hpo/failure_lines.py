"""One line per trial failure, where Ray would print a whole traceback at each (`hpo` sets
TUNE_PRINT_ALL_TRIAL_ERRORS=0): which trial, its error, and whether it is restarted. The whole
traceback goes to errors/<trial_id>.txt at the end of the search."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from ray.exceptions import RayActorError
from ray.tune import Callback

from hpo import cluster_kv
from hpo.results import error_line, last_line
from hpo.trial.failures import RepeatedFailure, failure_key, failures_of, recorded_traceback


class FailureLines(Callback):
    def __init__(self, retries: int, bar_key: str) -> None:
        self.retries = retries
        self.bar_key = bar_key  # the search's key: its trials' failures are kept under it
        self.final: set[str] = set()  # trials whose failure was said to be final

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(trial, restarted=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(trial, restarted=False)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # An interrupted search keeps them: a trial waiting for its restart must still find
        # its record after `hpo resume`.
        if all(t.status in ("TERMINATED", "ERROR") for t in trials):
            cluster_kv.delete(failures_of(self.bar_key), by_prefix=True)

    def use_bar_key(self, key: str) -> None:
        """The key the resumed trials use (`hpo resume` of a moved run directory)."""
        self.bar_key = key

    def _say(self, trial: Any, restarted: bool) -> None:
        line, met_the_record = last_error(trial)
        if met_the_record and trial.trial_id in self.final:
            return  # a restart that ended at once: said when the trial first failed
        said = f"trial {trial.trial_id} failed: {line}"
        # The trial's own record (written before it raised) says whether this error is one a
        # restart would meet again; another error (on another node) is retried as any.
        recorded = recorded_traceback(cluster_kv.get(failure_key(self.bar_key, trial.trial_id)))
        if recorded is not None and last_line(recorded) == line:
            self.final.add(trial.trial_id)
            said += "; not run again on its node: it would fail the same way"
        elif restarted:
            failures = trial.run_metadata.num_failures
            said += f"; restarting it from its latest checkpoint ({failures} of {self.retries})"
        print(f"hpo: {said}", file=sys.stderr, flush=True)


def last_error(trial: Any) -> tuple[str, bool]:
    """The trial's latest error as one line, and whether it was a restart meeting its failure
    record (`RepeatedFailure`). Read from the pickled error Ray keeps beside the trial, or
    from its text file where that cannot load or is older (Ray pickles only the errors of
    tasks and actors)."""
    pickled, text = trial.pickled_error_file, trial.error_file
    if _older(pickled, text):
        return _error_file_line(text), False
    try:
        import cloudpickle

        with open(pickled, "rb") as f:
            error = cloudpickle.load(f)
    except Exception:
        return _error_file_line(text), False
    if isinstance(error, RayActorError) and not error.actor_init_failed:
        return _actor_lost(error), False
    return error_line(error), isinstance(getattr(error, "cause", None), RepeatedFailure)


def _older(pickled: str, text: str) -> bool:
    """Ray writes both in one call, the text a moment after: a pickle older by more is an
    earlier failure's."""
    try:
        return os.path.getmtime(text) > os.path.getmtime(pickled) + 1.0
    except (OSError, TypeError):
        return False


def _actor_lost(error: RayActorError) -> str:
    """In a few words: Ray's message adds a dozen lines on what may have caused it."""
    if error.preempted:
        return "its node was preempted"
    exit_type = re.search(r"Worker exit type: (\w+)", str(error))
    if exit_type:
        return f"its worker process died ({exit_type.group(1)})"
    return error_line(error)


def _error_file_line(path: str | None) -> str:
    if not path or not os.path.isfile(path):
        return "(no error recorded)"
    with open(path, errors="replace") as f:
        return last_line(f.read()) or "(no error recorded)"
