"""Faults injected for real: diverging and erroring trials, killed trial workers, a killed or
interrupted driver, and the experiment-wide checkpoint budget."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import pickle
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import as_if_from_a_terminal, hpo_command, read_csv, read_yaml, write_spec
from wandb_offline import read_runs

from hpo.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def tiny_spec(tiny_bert, data, extra=""):
    """A small search; `extra` (YAML) adds sections or replaces whole ones (a spec may not
    give a key twice)."""
    spec = yaml.safe_load(f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {data}, max_length: 48, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
parameters:
  learning_rate: {{distribution: log_uniform_values, min: 1.0e-4, max: 3.0e-3}}
  per_device_train_batch_size: {{values: [8, 16]}}
early_terminate: {{type: asha, min_iter: 1, eta: 2}}
max_concurrent: 2
seed: 1
tracking: {{wandb: {{project: hpo-tests, mode: offline}}}}
""")
    spec.update(yaml.safe_load(extra) or {})
    return yaml.safe_dump(spec, sort_keys=False)


def checkpoint_dirs(run_dir):
    return glob.glob(os.path.join(run_dir, "*", "checkpoint_*"))


OPTIM = "optim"
# An optimizer whose package no node here has: TrainingArguments takes the name, the trial's
# Trainer refuses it (ValueError) - a configuration that fails only where a trial runs.
MISSING = "adamw_anyprecision"
ITS_ERROR = "ValueError: Please install https://github.com/pytorch/torchdistx"
QUIET = "--quiet"


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, tiny_bert, sentiment_csv, local_ray):
    """A grid with diverging points (learning rate 1e30: NaN loss), erroring points (an
    optimizer whose package the worker lacks: only the trial meets it; a batch size of 0 or a
    dropout of 1.5 is refused before Ray now) and 2 healthy ones, under a budget of 1
    checkpoint; a thread counts the checkpoint folders on disk while it runs."""
    root = tmp_path_factory.mktemp("faults")
    spec = write_spec(
        root / "faulty.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, max_length: 48, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
method: grid
parameters:
  learning_rate: {{values: [1.0e+30, 2.0e-3]}}
  optim: {{values: [{MISSING}, adamw_torch, sgd]}}
training: {{num_train_epochs: 4}}
early_terminate: {{type: none}}
max_concurrent: 2
retries: 1
checkpoints: {{keep: 1}}
tracking: {{wandb: {{project: hpo-tests, mode: offline}}}}
""",
    )
    run_dir = str(root / "runs" / "faulty")
    counts: list[int] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            counts.append(len(checkpoint_dirs(run_dir)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            code = main(["run", spec, "--name", "faulty", "--storage", str(root / "runs"), QUIET])
    finally:
        done.set()
        sampler.join()
    assert code == 0
    return run_dir, counts, said.getvalue()


def test_diverging_trial_is_marked_and_not_retried(faulty_run):
    run_dir, *_ = faulty_run
    rows = read_csv(os.path.join(run_dir, "trials.csv"))
    diverged = [r for r in rows if r["learning_rate"] == "1e+30" and r[OPTIM] != MISSING]
    assert len(diverged) == 2
    runs = {r.name: r for r in read_runs(run_dir)}
    for row in diverged:
        assert row["outcome"] == "diverged"
        assert row["status"] == "TERMINATED" and row["error"] == ""  # not an error: no retry
        assert row["evaluations"] == "1"
        assert runs[row["trial_id"]].summary["outcome"] == "diverged"


def test_erroring_trial_is_recorded_and_the_search_goes_on(faulty_run):
    run_dir, *_ = faulty_run
    rows = read_csv(os.path.join(run_dir, "trials.csv"))
    errored = [r for r in rows if r["status"] == "ERROR"]
    assert [r[OPTIM] for r in errored] == [MISSING, MISSING]
    for row in errored:
        assert row["outcome"] == "errored" and row["error"] == ITS_ERROR
        text = Path(run_dir, row["traceback"]).read_text()
        assert 'File "' in text and ITS_ERROR in text
        assert row["node"] == "127.0.0.1"  # from the traceback: it reported no evaluation
    assert len(rows) == 6
    assert [r["outcome"] for r in rows].count("completed") == 2


def test_a_trial_error_is_one_line_and_not_retried_when_a_restart_would_repeat_it(faulty_run):
    run_dir, _, said = faulty_run
    errored = [r for r in read_csv(os.path.join(run_dir, "trials.csv")) if r["status"] == "ERROR"]
    for row in errored:
        line = (
            f"hpo: trial {row['trial_id']} failed: {ITS_ERROR}; not run again on its node: it "
            "would fail the same way"
        )
        assert said.count(line) == 1, said
        # Ray still restarts it (`retries: 1`): the restart meets the record before it builds
        # the model again, and fails with the first failure's traceback.
        ray_errors = Path(glob.glob(os.path.join(run_dir, f"*{row['trial_id']}*", "error.txt"))[0])
        failures = ray_errors.read_text().split("Failure # ")[1:]
        assert len(failures) == 2 and "RepeatedFailure" not in failures[0]
        assert "RepeatedFailure: not run again on this node" in failures[1]
        assert "create_optimizer" in failures[1]  # the first failure's traceback, carried
    assert "Traceback" not in said and "failed" in said  # Ray's tracebacks: in errors/ only


def test_checkpoint_budget_holds_over_the_whole_search(faulty_run):
    run_dir, counts, _ = faulty_run
    assert max(counts) > 0, "the sampler saw the search write checkpoints"
    # The best over the search + each of the 2 running trials' latest (+ one being written each).
    assert max(counts) <= 1 + 2 * 2, counts
    assert len(checkpoint_dirs(run_dir)) == 1  # once finished: the best, nothing else
    assert os.path.isdir(os.path.join(run_dir, "best_model"))


def _trial_pids(run_dir):
    """(trial dir, pid, evaluations) of each trial that has reported."""
    out = []
    for result_file in glob.glob(os.path.join(run_dir, "*", "result.json")):
        lines = Path(result_file).read_text().splitlines()
        if lines:
            last = json.loads(lines[-1])
            out.append((os.path.dirname(result_file), last["pid"], last["training_iteration"]))
    return out


def test_killed_trial_workers_resume_from_their_checkpoints(
    tmp_path, tiny_bert, sentiment_csv, local_ray, capsys
):
    spec = write_spec(
        tmp_path / "crash.yaml",
        tiny_spec(
            tiny_bert,
            sentiment_csv,
            """
training: {num_train_epochs: 12}
early_terminate: {type: none}
run_cap: 2
retries: 3
checkpoints: {resume_interval_s: 0}  # resume where killed: a resumable checkpoint every time
""",
        ),
    )
    run_dir = str(tmp_path / "runs" / "crash")
    session_dir = local_ray._private.worker._global_node.get_session_dir_path()
    killed: list[tuple[str, int]] = []

    def killer():
        deadline = time.time() + 120
        while len(killed) < 2 and time.time() < deadline:
            for trial_dir, pid, evals in _trial_pids(_driver_staging(session_dir, "crash")):
                if (
                    evals >= 2 + 2 * sum(t == trial_dir for t, _ in killed)
                    and (trial_dir, pid) not in killed
                ):
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed.append((trial_dir, pid))
                    except ProcessLookupError:
                        pass
                    break
            time.sleep(0.1)

    thread = threading.Thread(target=killer)
    thread.start()
    code = main(["run", spec, "--name", "crash", "--storage", str(tmp_path / "runs"), "--quiet"])
    thread.join()
    assert code == 0
    assert len(killed) == 2, "two trial workers were killed mid-training"
    said = capsys.readouterr().err
    # A lost worker is what the retries are for: each kill is said, with the restart it gets.
    assert said.count("failed: its worker process died") == 2, said
    assert said.count("; restarting it from its latest checkpoint (") == 2, said
    assert "not run again" not in said
    rows = read_csv(os.path.join(run_dir, "trials.csv"))
    assert len(rows) == 2 and all(r["outcome"] == "completed" for r in rows)
    evaluations = read_csv(os.path.join(run_dir, "evaluations.csv"))
    for trial_dir, _ in killed:
        trial_id = next(r["trial_id"] for r in rows if r["trial_id"] in trial_dir)
        steps = [int(float(e["global_step"])) for e in evaluations if e["trial_id"] == trial_id]
        # Resumed from the latest checkpoint: the global step never goes back, no evaluation
        # is trained twice, and the trial ends where a crash-free one ends.
        assert steps == sorted(steps) and len(set(steps)) == len(steps), steps
        assert steps[-1] == 12 * steps[0]
        # A report in flight at a kill may have its checkpoint registered but not its row.
        kills = sum(t == trial_dir for t, _ in killed)
        assert len(steps) >= 12 - kills


def _hpo(*args, env_extra=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen(
        hpo_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=as_if_from_a_terminal,
    )


def _driver_staging(ray_root, name):
    """Where Tune's driver writes the trials' results first (the run directory gets a copy only
    when Tune next syncs its experiment state, seconds later): inside the Ray session's dir."""
    pattern = os.path.join(ray_root, "**", "artifacts", "*", name, "driver_artifacts")
    found = sorted(glob.glob(pattern, recursive=True))
    return found[-1] if found else ray_root


def _wait_for_evaluations(where, n, proc, timeout=180):
    """Wait until `where()` (a directory of trial folders) shows `n` evaluations in all."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sum(evals for _, _, evals in _trial_pids(where())) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the search made no progress")


@pytest.mark.parametrize("stop", ["sigint", "sigkill", "sigint-stop-type", "sigint-moved"])
def test_interrupted_or_killed_driver_resumes(stop, tmp_path, tiny_bert, sentiment_csv):
    stop_type = "early_terminate: {type: asha, min_iter: 1, eta: 2, promotion: false}"
    spec = write_spec(
        tmp_path / "long.yaml",
        tiny_spec(
            tiny_bert,
            sentiment_csv,
            f"""
training: {{num_train_epochs: 4}}
run_cap: 6
checkpoints: {{resume_interval_s: 0}}
{stop_type if stop == "sigint-stop-type" else ""}
""",
        ),
    )
    storage = tmp_path / "runs"
    run_dir = str(storage / "long")
    # Its own Ray temp dir (short: Ray's socket paths must fit in 107 bytes).
    ray_tmp = tempfile.mkdtemp(prefix="hpo-r", dir="/tmp")
    env = {"RAY_TMPDIR": ray_tmp}
    try:
        _crash_and_resume(stop, spec, storage, run_dir, env)
    finally:
        _stop_ray_in(ray_tmp)


def _stop_ray_in(ray_tmp):
    """Stop what the test's subprocesses left of their Ray (by pid, found by temp dir)."""
    import shutil

    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(ray_tmp in part for part in proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _find(obj, kind, seen=None):
    """The first object of type `kind` inside a pickled state (dicts, lists, attributes)."""
    seen = seen if seen is not None else set()
    if isinstance(obj, kind):
        return obj
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    children = []
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, list | tuple | set):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    for child in children:
        found = _find(child, kind, seen)
        if found is not None:
            return found
    return None


def _latest_pickle(run_dir, prefix, pick=max):
    # One file per session, named by the session's start time: the resumed session sorts last.
    path = pick(glob.glob(os.path.join(run_dir, f"{prefix}-*.pkl")))
    with open(path, "rb") as f:
        return pickle.load(f)


def _oldest_pickle(run_dir, prefix):
    return _latest_pickle(run_dir, prefix, pick=min)


def _refused_on_other_data(run_dir, env):
    """A resume whose data files changed since the start stops before Ray, writing nothing."""
    data_yaml = Path(run_dir, "data.yaml")
    original = data_yaml.read_text()
    record = read_yaml(data_yaml)
    # As if the spec's files had been edited: the recorded fingerprint no longer matches.
    data_yaml.write_text(original.replace(record["fingerprint"], "0123456789abcdef"))
    before = {p: p.stat().st_mtime_ns for p in Path(run_dir).rglob("*") if p.is_file()}
    refused = _hpo("resume", run_dir, env_extra=env)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 2, err
    assert f"fingerprint {record['fingerprint']}, data.yaml: 0123456789abcdef" in err
    assert "Traceback" not in err
    after = {p: p.stat().st_mtime_ns for p in Path(run_dir).rglob("*") if p.is_file()}
    assert after == before, "nothing written"
    data_yaml.write_text(original)


def _refused_while_driven(run_dir, driver, env):
    """A resume of a run that a driver still works on is refused, naming the driver: two would
    overwrite each other's records."""
    refused = _hpo("resume", run_dir, env_extra=env)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 2, err
    assert f"`hpo run` (pid {driver.pid} on" in err and "Traceback" not in err, err
    assert driver.poll() is None, "the search went on"


def _crash_and_resume(stop, spec, storage, run_dir, env):
    proc = _hpo("run", spec, "--name", "long", "--storage", str(storage), "--quiet", env_extra=env)
    _wait_for_evaluations(lambda: _driver_staging(env["RAY_TMPDIR"], "long"), 4, proc)
    if stop == "sigint":
        _refused_while_driven(run_dir, proc, env)
    proc.send_signal(signal.SIGKILL if stop == "sigkill" else signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    at_interrupt: dict[str, str] = {}
    if stop != "sigkill":
        assert proc.returncode == 130, err
        assert f"hpo resume {run_dir}" in err
        # Trials cut off by Ctrl-C are unfinished, not stopped early (Tune marks them
        # terminated as it cleans up): a trial running at the signal, at least.
        at_interrupt = {
            r["trial_id"]: r["outcome"] for r in read_csv(os.path.join(run_dir, "trials.csv"))
        }
        assert "unfinished" in at_interrupt.values(), at_interrupt
        assert "Trials did not complete" not in err  # Tune's error line: hpo says it itself
    before = {r["trial_id"]: r for r in _progress(run_dir)}
    if stop == "sigint-moved":  # resumed from where the user moved it (another disk, say)
        moved = f"{run_dir}-moved"
        os.rename(run_dir, moved)
        run_dir = moved

    if stop == "sigint":
        _refused_on_other_data(run_dir, env)
    quiet = ["--quiet"] if stop == "sigint-moved" else []
    resumed = _hpo("resume", run_dir, *quiet, env_extra=env)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    # It says which search it resumes and how far it had got.
    ended = sum(outcome != "unfinished" for outcome in at_interrupt.values())
    so_far = f": {ended} of 6 trials had ended" if at_interrupt else ""
    assert f"hpo resume: {run_dir}{so_far}\n" in err, err
    # The table as the resume asks, whatever the run started with (--quiet here).
    assert ("| search best " in err) != bool(quiet), err
    record = read_yaml(os.path.join(run_dir, "environment.yaml"))
    assert [r["versions"] for r in record["resumes"]] == [record["versions"]]
    assert "other versions" not in err
    rows = read_csv(os.path.join(run_dir, "trials.csv"))
    assert len(rows) == 6, "exactly run_cap trials"
    for row in rows:  # what was stopped early then stayed stopped: the scheduler stopped it
        if at_interrupt.get(row["trial_id"]) == "stopped_early":
            assert row["outcome"] == "stopped_early", (row, at_interrupt)
    configs = {(r["learning_rate"], r["per_device_train_batch_size"]) for r in rows}
    assert len(configs) == 6, "no configuration sampled twice"
    for trial_id, evals in before.items():
        if evals["finished"]:
            row = next(r for r in rows if r["trial_id"] == trial_id)
            assert int(row["evaluations"]) == evals["evaluations"], "finished: not rerun"
    runs = read_runs(run_dir)
    lost = {r.name for r in runs} - {r["trial_id"] for r in rows}
    if stop == "sigkill":
        # Tune saves its experiment state every few seconds: a trial started after the last save
        # is unknown to the resumed search (which samples another in its place), and its W&B
        # run, opened at its start, stays as the record of the work lost in the crash.
        assert not lost & set(before), "a trial in the saved state went missing"
        runs = [r for r in runs if r.name not in lost]
    else:
        assert not lost, lost
    assert {r.name for r in runs} == {r["trial_id"] for r in rows}
    for name in {r.name for r in runs}:
        assert len({r.run_id for r in runs if r.name == name}) == 1, "W&B run id kept"
    assert os.path.isdir(os.path.join(run_dir, "best_model"))
    # The resumed searcher is the seeded TPE that saw every trial (not a fresh random search).
    study = _find(_latest_pickle(run_dir, "searcher-state"), optuna.Study)
    assert isinstance(study.sampler.model, optuna.samplers.TPESampler)  # under hpo.hedge
    assert all(t.state.is_finished() for t in study.trials)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 6
    if stop in ("sigint", "sigint-moved"):  # promotion-type ASHA, the default
        # Trials were waiting paused at the interruption, for the resumed search to take over.
        interrupted = _oldest_pickle(run_dir, "callback-states")[0]["scheduler"]  # hpo.state
        assert interrupted["_paused"], interrupted
    if stop == "sigint-stop-type":  # (a paused trial is told pruned, then again if promoted)
        assert len(study.trials) == 6
    # ASHA's rungs still hold the results recorded before the crash.
    scheduler_state = repr(_latest_pickle(run_dir, "callback-states"))
    assert all(trial_id in scheduler_state for trial_id in before)
    # Paused, interrupted or promoted: every trial went on from its checkpoint, never
    # training an evaluation twice.
    evaluations = read_csv(os.path.join(run_dir, "evaluations.csv"))
    for row in rows:
        steps = [
            int(float(e["global_step"])) for e in evaluations if e["trial_id"] == row["trial_id"]
        ]
        assert steps == sorted(set(steps)), (row["trial_id"], steps)


def _progress(run_dir):
    """Per trial: evaluations reported and whether it had finished (last report final)."""
    out = []
    for trial_dir in glob.glob(os.path.join(run_dir, "train_trial_*")):
        lines = (
            Path(trial_dir, "result.json").read_text().splitlines()
            if os.path.exists(os.path.join(trial_dir, "result.json"))
            else []
        )
        if not lines:
            continue
        last = json.loads(lines[-1])
        out.append(
            {
                "trial_id": last["trial_id"],
                "evaluations": last["training_iteration"],
                "finished": bool(last.get("hpo_final")),
            }
        )
    return out


def test_a_search_whose_every_trial_fails_exits_3_and_the_report_says_why(
    tmp_path, tiny_bert, sentiment_csv, local_ray, capsys
):
    """No trial produced a model: a script must see the search fail, and the report must
    show why (the error, grouped, and where its tracebacks are)."""
    extra = f"""
parameters: {{{OPTIM}: {{value: {MISSING}}}}}
run_cap: 2
tracking: {{wandb: {{mode: disabled}}}}
"""
    spec = write_spec(tmp_path / "broken.yaml", tiny_spec(tiny_bert, sentiment_csv, extra))
    # In its own process, as a user runs it: what reaches the terminal is all there is.
    run = _hpo("run", spec, "--name", "broken", "--storage", str(tmp_path), "--quiet")
    _, err = run.communicate(timeout=300)
    assert run.returncode == 3, err  # not 1: that is a crash of hpo itself
    assert "trials: 2 errored" in err
    assert "every trial failed; the first to start: " in err and ITS_ERROR in err
    # One line per failed trial, and no traceback: Ray's are silenced, errors/ has them.
    assert err.count(f"failed: {ITS_ERROR}") == 2, err
    assert "Traceback" not in err and "RepeatedFailure" not in err, err
    # "The first" is the first to run: Ray numbers the trials' folders in creation order.
    first = err.split("the first to start: ", 1)[1].split(":", 1)[0]
    assert glob.glob(str(tmp_path / "broken" / f"*_{first}_1_*")), (first, err)
    assert read_csv(str(tmp_path / "broken" / "trials.csv"))[0]["trial_id"] == first
    # A resume of it says the same, from trials.csv: the search has finished.
    assert main(["resume", str(tmp_path / "broken"), "--quiet"]) == 3
    resumed = capsys.readouterr().err
    assert "every trial failed; the first to start: " in resumed and ITS_ERROR in resumed
    assert main(["report", str(tmp_path / "broken")]) == 0
    printed = capsys.readouterr().out
    assert f"2 │ {ITS_ERROR}" in printed, printed  # the terminal's table
    page = Path(printed.strip().splitlines()[-1]).read_text()
    failed = page.split("<h2>Failed trials</h2>", 1)[1]
    assert ITS_ERROR.removeprefix("ValueError: ") in failed
    assert "errors/" in failed
    # No evaluation to time: the search's own span is its wall time, not 0 s.
    from hpo.report.rundata import load_run

    assert load_run(str(tmp_path / "broken")).wall_seconds() >= 1
    # Each failed trial loaded its model and data before it failed: compute that was spent.
    rows = read_csv(str(tmp_path / "broken" / "trials.csv"))
    assert all(float(r["wall_seconds"]) > 0 for r in rows), rows
    assert load_run(str(tmp_path / "broken")).trial_seconds() > 0
