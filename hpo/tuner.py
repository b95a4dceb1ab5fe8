"""spec -> Ray Tune Tuner -> run directory. `run_search` and `resume_search` live here.

The data is prepared, and every resource checked, before a run directory is made, so bad input
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo import environment
from hpo.checkpoints import strip_resume_state
from hpo.cluster import check_cluster_fits, check_storage_shared, say_concurrency, trial_slots
from hpo.config import dump_spec, run_name_problem
from hpo.data import PREPARATION, PreparedData, data_line, prepare
from hpo.driver_lock import driving, refuse_if_driven
from hpo.endings import TrialEndings, trial_endings
from hpo.errors import SpecError, of_spec
from hpo.jobs import with_data_origins
from hpo.loopback import cluster_on_loopback, loopback_only
from hpo.numbers import finite_number
from hpo.paths import is_remote_uri
from hpo.relocate import follow_moved_run, relocate_callbacks
from hpo.results import Best, collect, write_results
from hpo.runinfo import DATA_REPORT, SPEC_FILE, recorded_fingerprint, recorded_preparation
from hpo.spec import JobSpec
from hpo.storage import RunLocation


@dataclass
class SearchOutcome:
    run_dir: str
    best: Best | None
    counts: dict[str, int]
    interrupted: bool = False
    target_reached: bool = False  # a trial reached `metric.target`, which ended the search
    first_error: str = ""  # the first errored trial's `trial_id: error`, when any erred
    best_outcome: str = ""  # what became of the trial the best evaluation is from


def search_name(spec: JobSpec, spec_path: str | None, name: str | None) -> str:
    if name is not None and (problem := run_name_problem(name, "--name")):
        raise SpecError([problem])
    if name or spec.name:
        return str(name or spec.name)
    stem = Path(spec_path).stem if spec_path else "search"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def init_ray(spec: JobSpec, address: str | None) -> None:
    """Connect to a cluster, or start an embedded local Ray bound to 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return
    common: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": "ERROR",
        "configure_logging": True,
    }
    with _ctrl_c_after_it_starts():
        if address:
            on_loopback = cluster_on_loopback(address)
            with loopback_only() if on_loopback else contextlib.nullcontext():
                ray.init(address=address, **common)
        else:
            # "local": a new embedded Ray even where RAY_ADDRESS is set (to a dashboard, for
            # `hpo submit`) or another Ray runs on this machine, which address=None would join.
            with loopback_only():
                ray.init(
                    address="local",
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    **common,
                )


@contextlib.contextmanager
def _ctrl_c_after_it_starts() -> Iterator[None]:
    """A Ctrl-C while Ray starts takes effect once it has: then Ray is stopped and the Ctrl-C
    goes on. Cut off in the middle of `ray.init`, Ray left processes behind and the driver
    crashed as it exited (SIGSEGV)."""
    import ray

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []

    def later(signum: int, frame: Any) -> None:
        if pressed:  # pressed again: now, whatever Ray leaves behind
            raise KeyboardInterrupt
        print("\nstopping as soon as Ray has started (Ctrl-C again: now)...", file=sys.stderr)
        pressed.append(signum)

    before = signal.signal(signal.SIGINT, later)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
    if pressed:
        ray.shutdown()
        raise KeyboardInterrupt


def make_trainable(spec: JobSpec, data: PreparedData, experiment_path: str) -> Any:
    """The trial function with the prepared data (in Ray's object store), its resources, and
    where to read the search's checkpoint bar."""
    from ray import tune

    from hpo.checkpoint_bar import bar_key
    from hpo.trial.run import train_trial

    key = bar_key(experiment_path)
    return tune.with_resources(
        tune.with_parameters(train_trial, spec=spec, data=data, bar_key=key),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


def build_tuner(
    spec: JobSpec,
    data: PreparedData,
    name: str,
    run_dir: str,
    callbacks: list[Any],
    local_dir: str | None = None,
    concurrency: int | None = None,
) -> Any:
    """The search as a Tuner. `run_dir` is where Ray writes (a bucket URI or a folder),
    `local_dir` where hpo writes its own files (a bucket run's local mirror; run_dir if None),
    `concurrency` how many trials run at once (None: the spec's, else what the cluster holds)."""
    from ray import tune

    from hpo.checkpoint_bar import bar_key
    from hpo.checkpoints import CheckpointBudget
    from hpo.driver_memory import ForgetFinishedTrialStats
    from hpo.failure_lines import FailureLines
    from hpo.result_logs import KeepResultLogs
    from hpo.schedulers import evaluations_per_trial, make_scheduler
    from hpo.schedulers.notes import SearchNotes
    from hpo.search import make_searcher
    from hpo.space import compile_space
    from hpo.state import SchedulerState

    problems: list[str] = []
    space = compile_space(spec.parameters, problems)
    scheduler = make_scheduler(spec, evaluations_per_trial(spec, len(data.train)))
    metric = spec.primary
    budget = CheckpointBudget(
        metric.name, metric.goal or "maximize", spec.checkpoints.keep, bar_key(run_dir)
    )
    callbacks = [
        SchedulerState(scheduler),
        budget,
        KeepResultLogs(),  # before Ray's loggers, which Ray appends to these
        *callbacks,
        _no_tensorboard(),
    ]
    callbacks.append(ForgetFinishedTrialStats(m.name for m in spec.metrics))
    callbacks.append(FailureLines(spec.retries, bar_key(run_dir)))
    searcher = make_searcher(spec, space)
    # The guard's and the hedge's notes: to the live table, and to a file at the end.
    callbacks.append(SearchNotes(scheduler, local_dir or run_dir, callbacks, searcher))
    stopper = _target_stopper(spec)
    if searcher.warm_started is not None:
        print(searcher.warm_started.summary(), file=sys.stderr)
    return tune.Tuner(
        make_trainable(spec, data, run_dir),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=spec.run_cap or 10,
            max_concurrent_trials=concurrency or spec.max_concurrent or trial_slots(spec),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=spec.storage if is_remote_uri(spec.storage) else os.path.dirname(run_dir),
            checkpoint_config=tune.CheckpointConfig(
                # Ray deletes nothing itself: CheckpointBudget owns deletion over the whole
                # search (two deleters would race over the same folders).
                num_to_keep=None,
                checkpoint_score_attribute=metric.name,
                checkpoint_score_order="max" if metric.goal == "maximize" else "min",
            ),
            failure_config=tune.FailureConfig(max_failures=spec.retries),
            callbacks=callbacks + ([stopper] if stopper else []),
            verbose=0,
            stop=stopper,
        ),
    )


def _no_tensorboard() -> Any:
    """A stand-in for the TensorBoard logger Ray adds unless one is given. hpo reads Ray's CSV
    and JSON results and tracks in W&B; the event files cost the driver a flush per result
    (a fifth of its loop's time with many short trials) and nothing reads them."""
    from ray.tune.logger import TBXLoggerCallback

    class NoTensorBoard(TBXLoggerCallback):
        def __init__(self) -> None:
            pass  # no tensorboardX import, no writers

        def log_trial_start(self, trial: Any) -> None:
            pass

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            pass

        def log_trial_end(self, trial: Any, failed: bool = False) -> None:
            pass

    return NoTensorBoard()


def _target_stopper(spec: JobSpec) -> Any:
    """W&B's `metric.target`: the search ends once a trial reaches it (a stopper that is
    also one of the callbacks)."""
    if spec.primary.target is None:
        return None
    from ray.tune import Callback
    from ray.tune.stopper import Stopper

    class TargetReached(Stopper, Callback):
        """The trial that reaches the target stops there (before the scheduler could pause
        it: a paused trial's checkpoint is kept for its resumption, not as one to export);
        the others stop once it has. Stopping all at once would lose its checkpoint: Tune
        drops a save still in flight when a stopper ends the experiment."""

        def __init__(self) -> None:
            self.reaching: set[str] = set()
            self.reached = False

        def __call__(self, trial_id: str, result: dict) -> bool:
            if reaches_target(spec, result):
                self.reaching.add(trial_id)
                return True
            return False

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.reached = self.reached or trial.trial_id in self.reaching

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.on_trial_complete(iteration, trials, trial)

        def stop_all(self) -> bool:
            return self.reached

    return TargetReached()


def make_callbacks(spec: JobSpec, name: str, run_dir: str, show_table: bool) -> list[Any]:
    from hpo.progress import TrialTable
    from hpo.tracking import WandbTrialRuns

    search_id = hashlib.sha1(run_dir.encode()).hexdigest()[:8]
    callbacks: list[Any] = [WandbTrialRuns(spec, name, search_id, run_dir), TrialEndings()]
    if show_table:
        callbacks.append(TrialTable(spec))
    return callbacks


def check_local_resources(spec: JobSpec) -> None:
    """Before starting a local Ray: a trial bigger than this machine would wait forever."""
    cpus = os.cpu_count() or 1
    problems = []
    if spec.resources.cpu > cpus:
        problems.append(
            f"resources.cpu: a trial asks for {spec.resources.cpu:g} CPUs, this machine has {cpus}"
        )
    if spec.resources.gpu:
        import torch

        gpus = torch.cuda.device_count()
        if spec.resources.gpu > gpus:
            problems.append(
                f"resources.gpu: a trial asks for {spec.resources.gpu:g} GPUs, "
                f"this machine has {gpus}"
            )
    if problems:
        raise SpecError(problems)


def write_data_report(run_dir: str, data: PreparedData) -> None:
    """data.yaml: what cleaning removed and what each split holds; one line to the terminal."""
    import yaml

    document = {
        "preparation": PREPARATION,
        "fingerprint": data.fingerprint,
        "split_fingerprints": data.split_fingerprints,  # which split differs, for hpo compare
        "labels": data.label_names,
        **data.stats,
    }
    Path(run_dir, DATA_REPORT).write_text(yaml.safe_dump(document, sort_keys=False))
    print(data_line(data.stats, data.unit), file=sys.stderr)


def check_same_data(run_dir: str, data: PreparedData) -> None:
    """Refuse to resume on other data than the search started on: its finished trials' scores
    would be compared with scores on different examples."""
    changed = data_change(run_dir, data)
    if changed:
        remedy = "restore them, or start a new search"
        if recorded_preparation(run_dir) != PREPARATION:
            remedy = "resume it with the hpo it started with (environment.yaml), or start anew"
        raise SpecError([f"data: {changed}; {remedy}"], source=os.path.join(run_dir, SPEC_FILE))


def data_change(run_dir: str, data: PreparedData) -> str | None:
    """What differs between the data now and the data the search started on (data.yaml's
    fingerprint); None when nothing does or there is no record."""
    recorded = recorded_fingerprint(run_dir)
    if not recorded or recorded == data.fingerprint:
        return None
    if recorded_preparation(run_dir) != PREPARATION:
        return (
            "the search's examples were made by an earlier hpo, which prepared texts "
            "otherwise (a causal LM's now keep their line breaks and the file's order), so "
            "this one makes other examples of the same files"
        )
    return (
        "the spec's data files (or dataset) now hold other examples than when the search "
        f"started (fingerprint {data.fingerprint}, data.yaml: {recorded})"
    )


def run_search(
    spec: JobSpec,
    *,
    spec_path: str | None = None,
    name: str | None = None,
    address: str | None = None,
    show_table: bool = True,
) -> SearchOutcome:
    """Run a whole search; returns the run directory and the best evaluation."""
    name = search_name(spec, spec_path, name)
    location = RunLocation(spec.storage, name)
    if location.exists():
        raise SpecError(
            [
                f"--name: run directory {location.path} exists; pick another name, or "
                f"`hpo resume {location.path}`"
            ]
        )
    with of_spec(spec_path) if spec_path else contextlib.nullcontext():
        data = prepare(spec)
    if address is None:
        check_local_resources(spec)
    init_ray(spec, address)
    check_cluster_fits(spec)
    check_storage_shared(spec.storage)
    concurrency = say_concurrency(spec, local=address is None)
    from hpo.schedulers import evaluations_per_trial, scheduler_caveats

    evaluations = evaluations_per_trial(spec, len(data.train))
    for caveat in scheduler_caveats(spec, concurrency, evaluations):
        print(f"hpo: {caveat}", file=sys.stderr)
    run_dir = location.local
    if location.remote:  # the local mirror of a bucket run is a cache: start it clean
        shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)  # not in the guard: a run of the same name that won the race is kept
    with _kept_only_if_resumable(location), driving(location.lockable, "hpo run"):
        Path(run_dir, SPEC_FILE).write_text(dump_spec(with_data_origins(spec)))
        environment.record_start(run_dir)
        write_data_report(run_dir, data)
        location.push()
        callbacks = make_callbacks(spec, name, run_dir, show_table)
        tuner = build_tuner(spec, data, name, location.path, callbacks, run_dir, concurrency)
        grid = fit(tuner)
        location.pull()
        return finish(spec, data, grid, run_dir, location, trial_endings(callbacks))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the run directory to resume (None: the search had not started)."""

    def __init__(self, run_dir: str | None) -> None:
        super().__init__()
        self.run_dir = run_dir


@contextlib.contextmanager
def _kept_only_if_resumable(location: RunLocation) -> Iterator[None]:
    """A Ctrl-C or an error before Tune saved any state leaves no run directory (one that
    `hpo resume` could not take, and whose name a new run could not have); after, a Ctrl-C
    names the one to resume. (Once the search runs, Tune takes the first Ctrl-C and stops
    gracefully.)"""
    from ray import tune

    try:
        yield
    except BaseException as err:
        resumable = tune.Tuner.can_restore(location.path)
        if not resumable:
            location.remove()
        if isinstance(err, KeyboardInterrupt):
            raise Interrupted(location.path if resumable else None) from None
        raise


def resume_search(
    run_dir: str, *, address: str | None = None, show_table: bool = True
) -> SearchOutcome:
    """Finish an interrupted or crashed search: finished trials stay finished, unfinished ones
    continue from their latest checkpoint, and the searcher, the scheduler's rungs, the
    checkpoint budget and the W&B runs pick up where they were."""
    from ray import tune

    from hpo.runinfo import read_run_spec

    location = RunLocation.at(run_dir)
    refuse_if_driven(location.lockable)
    location.fetch_own_files()  # a bucket run's spec into a clean local mirror
    spec = read_run_spec(location.local)
    finished = environment.finished_at(location.local)
    if finished is not None:
        return _already_finished(location, finished)
    if not tune.Tuner.can_restore(location.path):
        raise SpecError([f"{location.path}: no saved search state to resume from"])
    _say_resuming(location, spec)
    data = prepare(spec)
    check_same_data(location.local, data)
    with driving(location.lockable, "hpo resume"):  # from its first write to its end
        init_ray(spec, address)
        environment.warn_if_changed(environment.record_resume(location.local))
        location.push()  # a bucket run's record now, before the pull below brings the old back
        if not location.remote:
            follow_moved_run(location.local)
        tuner = tune.Tuner.restore(
            location.path,
            trainable=make_trainable(spec, data, location.path),
            resume_unfinished=True,
        )
        callbacks = relocate_callbacks(tuner, location.local, location.path)
        _table_as_asked(callbacks, spec, show_table)
        _with_failure_lines(callbacks, spec, location.path)
        grid = fit(tuner)
        location.pull()  # pull and the push in finish touch only a bucket run
        return finish(spec, data, grid, location.local, location, trial_endings(callbacks))


def _table_as_asked(callbacks: list[Any], spec: JobSpec, show_table: bool) -> None:
    """The live table as this resume asks (`--quiet` or not), whatever the search started
    with: the restored callbacks (Tune's own list, changed in place) keep or lose theirs."""
    from hpo.progress import TrialTable
    from hpo.schedulers.notes import SearchNotes

    shown = [c for c in callbacks if isinstance(c, TrialTable)]
    if show_table and not shown:
        table = TrialTable(spec)  # a search started with --quiet: its trials as they come
        for notes in (c for c in callbacks if isinstance(c, SearchNotes)):
            notes.share([table])
        callbacks.append(table)
    for table in [] if show_table else shown:
        callbacks.remove(table)


def _with_failure_lines(callbacks: list[Any], spec: JobSpec, experiment_path: str) -> None:
    """A search started by an hpo before `FailureLines` says its failures too (the CLI
    silences Ray's tracebacks)."""
    from hpo.checkpoint_bar import bar_key
    from hpo.failure_lines import FailureLines

    if callbacks and not any(isinstance(c, FailureLines) for c in callbacks):
        callbacks.append(FailureLines(spec.retries, bar_key(experiment_path)))


def _say_resuming(location: RunLocation, spec: JobSpec) -> None:
    """Which search this is, and how far it got as trials.csv last recorded it (a driver
    killed outright recorded nothing since its last interruption)."""
    from hpo.results import read_outcome

    _, counts = read_outcome(location.local)
    ended = sum(n for outcome, n in counts.items() if outcome != "unfinished")
    so_far = f": {ended} of {spec.run_cap} trials had ended" if counts else ""
    print(f"hpo resume: {location.path}{so_far}", file=sys.stderr)


def _already_finished(location: RunLocation, finished: str) -> SearchOutcome:
    """A finished search resumes to nothing: no Ray, no data, and its best model (which `hpo
    confirm` may have replaced) stays as it is."""
    from hpo.results import read_first_error, read_outcome

    print(
        f"hpo resume: {location.path} finished at {finished}; nothing to resume",
        file=sys.stderr,
    )
    if location.remote:
        location.download(location.local, ("trials.csv", "best.yaml"))
    best, counts = read_outcome(location.local)
    return SearchOutcome(location.path, best, counts, first_error=read_first_error(location.local))


def _not_incomplete_trials(record: logging.LogRecord) -> bool:
    """Tune logs "Trials did not complete: [...]" as an error after a Ctrl-C; hpo says what
    happened and how to resume, and trials.csv lists those trials as unfinished."""
    return not str(record.msg).startswith("Trials did not complete")


def fit(tuner: Any) -> Any:
    """`Tuner.fit`, handing Ctrl-C back afterwards: Tune takes SIGINT for its graceful stop and
    keeps it, so a Ctrl-C during the export that follows would otherwise be swallowed."""
    handler = signal.getsignal(signal.SIGINT)
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(_not_incomplete_trials)
    try:
        return tuner.fit()
    finally:
        tune_log.removeFilter(_not_incomplete_trials)
        if threading.current_thread() is threading.main_thread() and handler is not None:
            signal.signal(signal.SIGINT, handler)


def reaches_target(spec: JobSpec, result: dict[str, Any]) -> bool:
    """Does one evaluation reach `metric.target` (W&B's stop target)?"""
    metric = spec.primary
    value = result.get(metric.name)
    if metric.target is None or not finite_number(value):
        return False
    sign = 1.0 if metric.goal == "maximize" else -1.0
    return sign * (value - metric.target) >= 0


def target_reached(spec: JobSpec, records: list[Any]) -> bool:
    """Did a trial reach `metric.target`, so the search ended there (not interrupted)?"""
    return any(reaches_target(spec, row) for r in records for row in r.history)


def _interrupted(grid: Any, run_cap: int, records: list[Any]) -> bool:
    """Whether Tune stopped before every trial finished (Ctrl-C): fewer trials than run_cap
    ended, or a trial never reported (Tune may mark the trials it cut off as terminated)."""
    if len(records) < run_cap or any(r.outcome == "unfinished" for r in records):
        return True
    analysis = getattr(grid, "_experiment_analysis", None)
    trials = getattr(analysis, "trials", None) or []
    done = sum(1 for t in trials if t.status in ("TERMINATED", "ERROR"))
    return bool(trials) and done < run_cap


def finish(
    spec: JobSpec,
    data: PreparedData,
    grid: Any,
    run_dir: str,
    location: RunLocation | None = None,
    endings: TrialEndings | None = None,
) -> SearchOutcome:
    """Results, the best model and its held-out score, from a finished Tune experiment
    (`endings`: the trials Tune said ended, the others cut off, and how long the failed ones
    ran, when it is known)."""
    from hpo.export import export_checkpoint
    from hpo.results import best_document

    records = collect(grid)
    for r in records:
        r.reached_target = target_reached(spec, [r])
    reached = any(r.reached_target for r in records)  # then Tune cut the others off: stopped
    if endings is not None:
        for r in records:
            r.ended = reached or r.trial_id in endings.ended
            r.failed_after = endings.failed_after.get(r.trial_id)
    if location is not None:
        for r in records:
            r.checkpoints = [(location.localize(p), m) for p, m in r.checkpoints]
    best = write_results(records, spec, run_dir, data.label_names)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    shown = location.path if location is not None else run_dir
    if not reached and _interrupted(grid, spec.run_cap or 0, records):
        if location is not None:
            location.push()
        return SearchOutcome(shown, best, counts, interrupted=True)
    if best is not None and best.checkpoint:
        document = best_document(best, spec, data.label_names)
        out = export_checkpoint(
            best.checkpoint,
            os.path.join(run_dir, "best_model"),
            document,
            spec,
            data.label_names,
        )
        if data.test is not None:
            from hpo.evaluate import evaluate_folder
            from hpo.results import record_test_metrics

            test = evaluate_folder(out, spec, data.test, data.tokenizer)
            record_test_metrics(run_dir, test)
        from hpo.modelcard import document_model  # best_model/README.md, the model card

        document_model(run_dir, out, data)
    if location is None or not location.remote:
        strip_resume_state(run_dir)
    environment.record_finish(run_dir)
    if location is not None:
        location.push()
    erred = next((r for r in records if r.error), None)
    first_error = f"{erred.trial_id}: {erred.error}" if erred else ""
    best_outcome = next((r.outcome for r in records if best and r.trial_id == best.trial_id), "")
    return SearchOutcome(
        shown,
        best,
        counts,
        target_reached=reached,
        first_error=first_error,
        best_outcome=best_outcome,
    )
