"""Weights & Biases: one run per trial, grouped by search. The only module that imports wandb.

The runs are written from the driver (a Ray Tune callback), not from the trials, so logging stays
off the trials' critical path and a trial resumed after a crash keeps its run: run ids are derived
from the search and the trial id, and `resume="allow"` continues them. No API key is ever written:
wandb reads it from the environment.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from hpo.numbers import finite_number
from hpo.report.outcomes import stopped_rung
from hpo.results import outcome_of
from hpo.spec import JobSpec, WandbSpec
from hpo.trial.reporter import FINAL, NODE, OUTCOME

_NOT_LOGGED = {FINAL, OUTCOME, NODE, "done", "trial_id", "date", "hostname", "node_ip", "pid"}
# Ray Tune's bookkeeping, beside each result: noise in W&B's charts (the step is the evaluation).
_NOT_LOGGED |= {
    "training_iteration",
    "iterations_since_restore",
    "time_this_iter_s",
    "time_since_restore",
    "timestamp",
}


def wandb_mode(settings: WandbSpec) -> str:
    """The spec's mode; else WANDB_MODE; else online with an API key, offline without."""
    if settings.mode:
        return settings.mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def run_id(search_id: str, trial_id: str) -> str:
    return f"{search_id}-{trial_id}"


class WandbTrialRuns(Callback):
    """Ray Tune callback: opens a W&B run when a trial starts, logs each evaluation, and
    writes the outcome (completed, stopped early at evaluation k, diverged, errored) at the end."""

    def __init__(self, spec: JobSpec, search_name: str, search_id: str, run_dir: str) -> None:
        self._settings = spec.tracking.wandb
        self._mode = wandb_mode(self._settings)
        self._group = search_name
        self._search_id = search_id
        self._dir = run_dir
        self._metric = spec.primary.name
        self._goal = spec.primary.goal
        self._spec = spec
        self._runs: dict[str, Any] = {}
        self._unrecorded: set[str] = set()  # trials whose run could not be opened
        # Per unfinished trial: (evaluation, metric) so far, for the best in its run's summary.
        self._evaluations: dict[str, list[tuple[int, float]]] = {}

    @property
    def enabled(self) -> bool:
        return self._mode != "disabled"

    def relocate(self, run_dir: str) -> None:
        """Write W&B's files under `run_dir` from now on. `hpo resume` calls it: the callback
        comes back pickled with the path of the machine that started the search, which on
        another machine (a bucket run's mirror under another home) may not exist. Its mode is
        the resume's environment's: a search that went offline when W&B failed tries online
        again (a key fixed since)."""
        self._dir = run_dir
        self._mode = wandb_mode(self._settings)
        self._unrecorded = set()  # (set here too: a callback pickled by an older hpo lacks it)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if not self.enabled or trial.trial_id in self._runs:
            return
        import wandb

        try:
            self._runs[trial.trial_id] = self._open(wandb, trial)
        except Exception as err:  # a tracker problem must never take the search down
            # (set here too: a callback pickled by an older hpo lacks it)
            unrecorded = self.__dict__.setdefault("_unrecorded", set())
            if trial.trial_id not in unrecorded:  # a paused trial starts again: said once
                unrecorded.add(trial.trial_id)
                print(
                    f"hpo: W&B run of trial {trial.trial_id} not recorded: {one_line(err)}",
                    file=sys.stderr,
                )

    on_trial_restore = on_trial_start

    def _open(self, wandb: Any, trial: Any) -> Any:
        """The trial's run; where W&B online fails (no network, a bad key), this and every
        later run is recorded offline, said once: each online try can wait out W&B's timeout,
        and an offline run is uploaded later with `wandb sync`."""
        try:
            return self._init_retrying(wandb, trial)
        except Exception as err:
            # "ID is in use": a retried trial's earlier run still closing, not W&B unreachable.
            if self._mode != "online" or "in use" in str(err):
                raise
            self._mode = "offline"
            print(
                f"hpo: W&B online failed ({one_line(err)}); the trials' runs are recorded "
                f"offline in {os.path.join(self._dir, 'wandb')} from now on (`wandb sync` "
                "uploads them)",
                file=sys.stderr,
            )
            if not self._runs:  # frees the failed run's id; there is no open run to lose
                wandb.teardown()
            return self._init_retrying(wandb, trial)

    def _init_retrying(self, wandb: Any, trial: Any) -> Any:
        for _ in range(2):
            try:
                return self._init(wandb, trial)
            except Exception as err:
                # A run just finished (a retried trial) can still be closing: "ID is in use".
                if "in use" not in str(err):
                    raise
                time.sleep(1.0)
        return self._init(wandb, trial)

    def _init(self, wandb: Any, trial: Any) -> Any:
        return wandb.init(
            project=self._settings.project,
            entity=self._settings.entity,
            group=self._group,
            job_type="trial",
            name=trial.trial_id,
            id=run_id(self._search_id, trial.trial_id),
            resume="allow",
            config=self._config(trial),
            tags=list(self._settings.tags),
            dir=self._dir,
            mode=self._mode,
            reinit="create_new",
            # Not every installed package per trial: W&B lists them at each init (~0.1 s of
            # the driver's loop); the run directory's environment.yaml records them once.
            settings=wandb.Settings(
                console="off",
                silent=True,
                x_disable_stats=True,
                save_code=False,
                x_save_requirements=False,
            ),
        )

    def _config(self, trial: Any) -> dict[str, Any]:
        """The trial's sampled values, and what every trial of the search shares (the model,
        the task, the fixed training values), so runs of different searches compare in W&B."""
        shared = {
            "model": self._spec.model.name_or_path,
            "task": self._spec.task,
            "training": dict(self._spec.training),
        }
        return {**shared, **trial.config}

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        run = self._runs.get(trial.trial_id)
        if run is None:
            return
        metrics = {
            k: v
            for k, v in result.items()
            if k not in _NOT_LOGGED and isinstance(v, int | float) and not isinstance(v, bool)
        }
        evaluation = int(result.get("training_iteration", 0))
        self._summarize_best(run, trial.trial_id, evaluation, result.get(self._metric))
        run.log(metrics, step=evaluation)

    def _summarize_best(self, run: Any, trial_id: str, evaluation: int, value: Any) -> None:
        """The trial's best evaluation so far, in its run's summary. A trial retried after it
        lost a checkpoint evaluates the same steps again: those replace the lost ones, as they
        do in evaluations.csv, so the summary never names an evaluation whose weights are gone."""
        if not finite_number(value):
            return
        earlier = [(e, v) for e, v in self._evaluations.get(trial_id, []) if e < evaluation]
        self._evaluations[trial_id] = kept = [*earlier, (evaluation, float(value))]
        sign = 1.0 if self._goal == "maximize" else -1.0
        best_evaluation, best = max(kept, key=lambda ev: (sign * ev[1], ev[0]))
        run.summary[f"best_{self._metric}"] = best
        run.summary["best_evaluation"] = best_evaluation

    def get_state(self) -> dict[str, Any]:
        # Saved with the experiment, so a resumed search's summaries still count the
        # evaluations from before the interruption.
        return {"evaluations": self._evaluations}

    def set_state(self, state: dict[str, Any]) -> None:
        self._evaluations = dict(state.get("evaluations", {}))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, errored=True)

    def _finish(self, trial: Any, errored: bool) -> None:
        self._evaluations.pop(trial.trial_id, None)
        run = self._runs.pop(trial.trial_id, None)
        if run is None:
            return
        last = trial.last_result or {}
        run.summary["outcome"] = outcome_of(last, errored)
        run.summary["evaluations"] = int(last.get("training_iteration", 0) or 0)
        if run.summary["outcome"] == "stopped_early":
            run.summary["stopped_at_evaluation"] = run.summary["evaluations"]
            rung = stopped_rung(self._spec, run.summary["evaluations"])
            if rung is not None:
                run.summary["stopped_at_rung"] = rung
        run.finish(exit_code=1 if errored else 0)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for run in self._runs.values():
            run.finish()
        self._runs.clear()


def log_search_summary(
    spec: JobSpec,
    group: str,
    run_dir: str,
    summary: dict[str, Any],
    files: list[str],
    identity: str | None = None,
) -> str | None:
    """One run of job type `search-summary` in the search's W&B group: the best configuration
    as its config, the search's headline numbers as its summary, and the report, best.yaml and
    the CSVs as an artifact. Returns the run id (None when W&B is disabled)."""
    settings = spec.tracking.wandb
    mode = wandb_mode(settings)
    if mode == "disabled":
        return None
    import wandb

    # `identity`: a bucket run's URI, when `run_dir` is only where W&B writes its files.
    run_key = identity or os.path.abspath(run_dir)
    run = _open_summary_run(
        lambda mode: _summary_run(wandb, settings, group, run_dir, run_key, summary, mode),
        run_dir,
        mode,
    )
    if run is None:
        return None
    for key, value in summary.items():
        if key != "best_hyperparameters":
            run.summary[key] = value
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", group)
    artifact = wandb.Artifact(f"{safe}-report", type="hpo-report", metadata=summary)
    for path in files:
        artifact.add_file(path)
    run.log_artifact(artifact)
    run.finish()
    return str(run.id)


def _open_summary_run(init: Callable[[str], Any], run_dir: str, mode: str) -> Any:
    """The summary run (`init(mode)`); offline where online fails, None (said) where that
    fails too: the report is written by then, and its W&B copy must not take it down."""
    import wandb

    try:
        return init(mode)
    except Exception as err:
        if mode != "online":
            print(f"hpo: W&B summary run not recorded: {one_line(err)}", file=sys.stderr)
            return None
        print(
            f"hpo: W&B online failed ({one_line(err)}); the summary run is recorded offline in "
            f"{os.path.join(run_dir, 'wandb')} (`wandb sync` uploads it)",
            file=sys.stderr,
        )
        wandb.teardown()  # frees the failed run's id
        return _open_summary_run(init, run_dir, "offline")


def _summary_run(
    wandb: Any,
    settings: WandbSpec,
    group: str,
    run_dir: str,
    run_key: str,
    summary: dict[str, Any],
    mode: str,
) -> Any:
    return wandb.init(
        project=settings.project,
        entity=settings.entity,
        group=group,
        job_type="search-summary",
        name=f"{group}-summary",
        # One summary run per run directory: a later `hpo report` updates it, never adds one.
        id="summary-" + hashlib.sha1(run_key.encode()).hexdigest()[:12],
        resume="allow",
        config=dict(summary.get("best_hyperparameters") or {}),
        tags=list(settings.tags),
        dir=run_dir,
        mode=mode,
        reinit="create_new",
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False),
    )


def one_line(err: BaseException) -> str:
    """W&B's error on one line (its network errors run over several), cut to a readable length."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."
