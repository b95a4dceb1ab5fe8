"""A trial without Ray: the Trainer reports each evaluation through one call, with its
checkpoint; divergence and lost patience stop it."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
from conftest import write_spec

from hpo import trial
from hpo.config import load_spec
from hpo.data import prepare
from hpo.spec import CheckpointsSpec
from hpo.trial.callback import ReportCallback
from hpo.trial.reporter import FINAL, OUTCOME, TRAIN_SECONDS, TRIAL_STATE_FILE, LocalReporter
from hpo.trial.run import (
    Hyperparameters,
    pause_points,
    resume_interval,
    train_trial,
    training_arguments,
)


class CheckingReporter(LocalReporter):
    """Notes whether each reported checkpoint folder holds a loadable Trainer checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.complete: list[bool] = []
        self.weights: list[bool] = []

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        names = set(os.listdir(checkpoint_dir)) if checkpoint_dir else set()
        self.complete.append({"model.safetensors", "trainer_state.json", "optimizer.pt"} <= names)
        self.weights.append("model.safetensors" in names)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_bert, sentiment_csv):
    path = write_spec(
        tmp_path_factory.mktemp("trial") / "s.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {sentiment_csv}, max_length: 48, labels: [fresh, rotten]}}
metric: {{name: eval_loss}}
training: {{num_train_epochs: 3, per_device_train_batch_size: 16}}
""",
    )
    spec = load_spec(path, [f"storage={tmp_path_factory.mktemp('runs')}"])
    return spec, prepare(spec)


def test_each_evaluation_is_one_report_with_its_checkpoint(prepared):
    spec, data = prepared
    spec = replace(spec, checkpoints=CheckpointsSpec(resume_interval_s=0))
    reporter = CheckingReporter()
    train_trial({"learning_rate": 1e-3}, spec=spec, data=data, reporter=reporter)
    # Non-final evaluations carry a resumable checkpoint; the final one only the weights
    # (nothing resumes after it).
    assert len(reporter.reports) == 3 and reporter.complete[:2] == [True, True]
    # ...and only when it is the trial's best so far (else the best one is what exports).
    losses = [r["eval_loss"] for r in reporter.reports]
    assert reporter.weights[-1] == (losses[-1] <= min(losses[:2]))
    steps = [r["global_step"] for r in reporter.reports]
    assert steps == sorted(steps) and steps[-1] == 3 * math.ceil(len(data.train) / 16)
    assert [r[FINAL] for r in reporter.reports] == [0, 0, 1]
    assert reporter.reports[-1][OUTCOME] == "completed"
    assert all(r["trainable_params"] > 0 for r in reporter.reports)


def test_resume_from_a_checkpoint_continues_the_global_step(prepared, tmp_path):
    import shutil

    spec, data = prepared
    saved = tmp_path / "saved"

    class KeepFirst(CheckingReporter):
        def report(self, metrics, checkpoint_dir=None):
            super().report(metrics, checkpoint_dir)
            if len(self.reports) == 1:
                shutil.copytree(checkpoint_dir, saved)
                raise KeyboardInterrupt  # the worker dies right after its first report

    with pytest.raises(KeyboardInterrupt):
        train_trial({"learning_rate": 1e-3}, spec=spec, data=data, reporter=KeepFirst())
    resumed = LocalReporter(resume_from=str(saved))
    train_trial({"learning_rate": 1e-3}, spec=spec, data=data, reporter=resumed)
    assert len(resumed.reports) == 2, "the evaluation before the crash is not redone"
    per_epoch = math.ceil(len(data.train) / 16)
    assert [r["global_step"] for r in resumed.reports] == [2 * per_epoch, 3 * per_epoch]
    # The trial's training time goes on from what the checkpoint recorded, not from zero.
    before = json.loads((saved / TRIAL_STATE_FILE).read_text())["train_seconds"]
    assert before > 0
    assert resumed.reports[0][TRAIN_SECONDS] > before


def test_patience_carries_over_a_resume(tmp_path):
    import shutil

    class Keeping(LocalReporter):  # as the tuner keeps each reported checkpoint
        def report(self, metrics, checkpoint_dir=None):
            super().report(metrics, checkpoint_dir)
            shutil.copytree(checkpoint_dir, tmp_path / "kept" / os.path.basename(checkpoint_dir))

    first = ReportCallback(Keeping(), "eval_loss", "minimize", patience=2)
    _evaluate(first, 1.0, 10, output_dir=tmp_path)
    assert not _evaluate(first, 1.0, 20, output_dir=tmp_path).should_training_stop  # 1 of 2
    resumed = ReportCallback(LocalReporter(), "eval_loss", "minimize", patience=2)
    resumed.restore(str(tmp_path / "kept" / "checkpoint-20"))
    assert resumed.best == 1.0 and resumed.evals_without_gain == 1
    assert resumed.evaluations == 2, "counts on from there: its pause points stay in step"
    assert _evaluate(resumed, 1.0, 30).should_training_stop, "the second evaluation without gain"


def _evaluate(callback, value, step, max_steps=100, output_dir=None):
    """One evaluation; with `output_dir`, the Trainer's checkpoint folder for it exists."""
    state = SimpleNamespace(global_step=step, max_steps=max_steps, epoch=1.0)
    control = SimpleNamespace(should_training_stop=False, should_save=False, should_evaluate=False)
    args = SimpleNamespace(eval_strategy="epoch", output_dir=str(output_dir or "/nonexistent"))
    callback.on_evaluate(args, state, control, metrics={"eval_loss": value})
    if output_dir is not None and control.should_save:
        os.makedirs(os.path.join(output_dir, f"checkpoint-{step}"))
    callback.on_save(args, state, control)
    return control


def _saves(callback, value, step, tmp_path, max_steps=100):
    """Evaluate; returns None (no checkpoint), "full" or "weights" (save_only_model)."""
    state = SimpleNamespace(global_step=step, max_steps=max_steps, epoch=1.0)
    control = SimpleNamespace(should_training_stop=False, should_save=False, should_evaluate=False)
    args = SimpleNamespace(eval_strategy="epoch", output_dir=str(tmp_path), save_only_model=False)
    callback.on_evaluate(args, state, control, metrics={"eval_loss": value})
    if not control.should_save:
        return None
    os.makedirs(os.path.join(tmp_path, f"checkpoint-{step}"))
    callback.on_save(args, state, control)
    return "weights" if args.save_only_model else "full"


def test_only_evaluations_the_search_could_keep_write_a_checkpoint(tmp_path):
    # eval_loss is minimized, so the budget's scores are -loss: its worst kept one is 0.5.
    reporter = LocalReporter(bar=-0.5)
    callback = ReportCallback(reporter, "eval_loss", "minimize", resume_every_s=math.inf)
    saved = [_saves(callback, loss, step, tmp_path) for step, loss in [(10, 0.9), (20, 0.5)]]
    saved += [_saves(callback, loss, step, tmp_path) for step, loss in [(30, 0.45), (40, 0.47)]]
    # 0.9 is below the bar; 0.5 ties it (a tie is kept); 0.47 is not the trial's best so far.
    assert saved == [None, "full", "full", None]
    assert _saves(callback, 0.4, 100, tmp_path) == "weights", "final: nothing resumes after it"
    assert len(reporter.reports) == 5, "every evaluation is reported, with or without one"
    assert [c is not None for c in reporter.checkpoints] == [False, True, True, False, True]
    reporter.bar = -0.3  # the search moved on: even the trial's best is not good enough now
    again = ReportCallback(reporter, "eval_loss", "minimize", resume_every_s=math.inf)
    assert _saves(again, 0.35, 100, tmp_path) is None


def test_a_resumable_checkpoint_at_least_every_resume_interval(tmp_path, monkeypatch):
    clock = [0.0]
    fake = SimpleNamespace(monotonic=lambda: clock[0], perf_counter=time.perf_counter)
    monkeypatch.setattr(trial.callback, "time", fake)
    reporter = LocalReporter(bar=math.inf)  # no evaluation is good enough to export
    callback = ReportCallback(reporter, "eval_loss", "minimize", resume_every_s=60)
    saved = []
    for step, now in [(10, 30.0), (20, 61.0), (30, 90.0), (40, 125.0)]:
        clock[0] = now
        saved.append(_saves(callback, 1.0 - step / 100, step, tmp_path))
    assert saved == [None, "full", None, "full"], "60 s after the last resumable one, or more"
    clock[0] = 500.0
    assert _saves(callback, 0.1, 100, tmp_path) is None, "the final evaluation never resumes"
    every = ReportCallback(LocalReporter(bar=math.inf), "eval_loss", "minimize")
    assert [_saves(every, 1.0, s, tmp_path / "every") for s in (10, 20)] == ["full", "full"]


def test_schedulers_that_pause_trials_resume_where_they_may_pause(prepared):
    spec, _ = prepared
    stop_type = replace(spec.early_terminate, type="asha", promotion=False)
    assert resume_interval(spec) == 300
    assert pause_points(replace(spec, early_terminate=stop_type), 1000) == frozenset()
    hyperband = replace(spec.early_terminate, type="hyperband")
    assert resume_interval(replace(spec, early_terminate=hyperband)) == 0  # any evaluation
    promotion = replace(spec.early_terminate, type="asha", max_iter=27, eta=3)  # the default
    with_promotion = replace(spec, early_terminate=promotion)
    assert resume_interval(with_promotion) == 300
    assert pause_points(with_promotion, 1000) == {1, 3, 9}  # its rungs below a full trial
    odd = replace(promotion, eta=2.5, min_iter=2, max_iter=20)  # rungs 2, 5, 12.5
    assert pause_points(replace(spec, early_terminate=odd), 1000) == {2, 5, 13}


def test_a_resumable_checkpoint_at_each_pause_point_and_none_between(tmp_path):
    reporter = LocalReporter(bar=math.inf)  # no evaluation is good enough to export
    points = frozenset({1, 3})
    callback = ReportCallback(
        reporter, "eval_loss", "minimize", resume_every_s=math.inf, pause_points=points
    )
    saved = [_saves(callback, 1.0, step, tmp_path) for step in (10, 20, 30, 40)]
    assert saved == ["full", None, "full", None]


def test_a_variant_sets_its_base_parameter(prepared, tmp_path):
    spec, _ = prepared
    hp = Hyperparameters.split(
        {"strategy": "lora", "learning_rate@lora": 3e-4, "lora.r@lora": 4, "model.x@a": 1}
    )
    assert hp.training == {"learning_rate": 3e-4}
    assert hp.recipe == {"strategy": "lora", "lora.r": 4} and hp.model == {"x": 1}
    args = training_arguments(spec, hp.training, 0, str(tmp_path))
    assert args.learning_rate == 3e-4


def test_patience_stops_after_evaluations_without_gain():
    reporter = LocalReporter()
    callback = ReportCallback(reporter, "eval_loss", "minimize", patience=2, threshold=0.01)
    assert not _evaluate(callback, 1.0, 10).should_training_stop
    assert not _evaluate(callback, 0.995, 20).should_training_stop  # below the threshold
    control = _evaluate(callback, 0.999, 30)
    assert control.should_training_stop
    assert reporter.reports[-1][FINAL] == 1 and reporter.reports[-1][OUTCOME] == "patience"


def test_non_finite_loss_stops_at_once_as_diverged():
    reporter = LocalReporter()
    callback = ReportCallback(reporter, "eval_accuracy", "maximize")
    control = SimpleNamespace(should_training_stop=False, should_save=True, should_evaluate=True)
    state = SimpleNamespace(global_step=5)
    callback.on_log(None, state, control, logs={"loss": float("nan")})
    assert control.should_training_stop and not control.should_evaluate
    (report,) = reporter.reports
    assert report[OUTCOME] == "diverged" and report["eval_accuracy"] == -math.inf


def _storage(tmp_path, filesystem):
    checked = []
    return SimpleNamespace(
        storage_filesystem=filesystem,
        checkpoint_fs_path=str(tmp_path / "run" / "trial" / "checkpoint_000000"),
        _check_validation_file=lambda: checked.append(True),
        checked=checked,
    )


def test_local_checkpoints_are_linked_into_the_run_not_copied(tmp_path):
    import pyarrow.fs
    from ray import tune

    from hpo.trial.persist import _link

    source = tmp_path / "checkpoint-30"
    (source / "nested").mkdir(parents=True)
    (source / "model.safetensors").write_bytes(b"w" * 1000)
    (source / "nested" / "optimizer.pt").write_bytes(b"o" * 1000)
    storage = _storage(tmp_path, pyarrow.fs.LocalFileSystem())
    persisted = _link(storage, tune.Checkpoint.from_directory(str(source)))

    assert persisted.path == storage.checkpoint_fs_path and storage.checked
    for name in ("model.safetensors", "nested/optimizer.pt"):
        # The same file (one inode), so the trial deleting its folder frees nothing twice.
        assert os.path.samefile(source / name, os.path.join(persisted.path, name))
    # Never over an existing folder, and never into a bucket: those fall back to Ray's copy.
    assert _link(storage, tune.Checkpoint.from_directory(str(source))) is None
    bucket = _storage(tmp_path, pyarrow.fs.SubTreeFileSystem("/", pyarrow.fs.LocalFileSystem()))
    assert _link(bucket, tune.Checkpoint.from_directory(str(source))) is None


def test_a_failed_link_leaves_nothing_and_falls_back(tmp_path):
    import pyarrow.fs
    from ray import tune

    from hpo.trial.persist import _link

    source = tmp_path / "checkpoint-30"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"w")
    storage = _storage(tmp_path, pyarrow.fs.LocalFileSystem())

    def unshared():
        raise RuntimeError("storage path not shared with this node")

    storage._check_validation_file = unshared
    assert _link(storage, tune.Checkpoint.from_directory(str(source))) is None
    assert not os.path.exists(storage.checkpoint_fs_path)


def test_link_patch_is_installed_once():
    from ray.train._internal.storage import StorageContext

    from hpo.trial.persist import link_checkpoints_into_local_storage

    link_checkpoints_into_local_storage()
    installed = StorageContext.persist_current_checkpoint
    link_checkpoints_into_local_storage()
    assert StorageContext.persist_current_checkpoint is installed
    assert getattr(installed, "_hpo_links_local_checkpoints", False)


def test_worker_process_freezes_its_imports_and_skips_checkpoint_checksums():
    import subprocess
    import sys

    # In a process of its own: the freeze and the torch option hold for the whole process.
    code = """
import gc, time, torch
from hpo.trial.run import prepare_worker_process
prepare_worker_process()
assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()
assert not torch.serialization.get_crc32_options()
started = time.perf_counter()
gc.collect()
print(time.perf_counter() - started)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) < 0.1, "a collection no longer scans the imports"


def test_memory_is_pinned_only_for_an_accelerator(prepared, tmp_path):
    """Without one, torch warns at every evaluation that pinning is ignored."""
    import torch

    spec, _ = prepared
    args = training_arguments(spec, {}, 0, str(tmp_path))
    assert args.dataloader_pin_memory == torch.accelerator.is_available()
    spec = replace(spec, training={**spec.training, "dataloader_pin_memory": True})
    assert training_arguments(spec, {}, 0, str(tmp_path)).dataloader_pin_memory is True


def test_an_error_a_restart_would_repeat_is_recorded_and_a_restart_meets_it_at_once(
    prepared, monkeypatch
):
    from hpo.trial import run as trial_run
    from hpo.trial.failures import NOT_RUN_AGAIN, RepeatedFailure

    spec, data = prepared
    reporter = LocalReporter()
    with pytest.raises(ValueError, match="dropout probability") as first:
        train_trial({"model.hidden_dropout_prob": 1.5}, spec=spec, data=data, reporter=reporter)
    assert reporter.failure and reporter.failure.endswith(str(first.value))
    assert "Traceback" in reporter.failure and "load_model" in reporter.failure

    # The restart fails before it builds anything, with the first failure's traceback.
    monkeypatch.setattr(trial_run, "build_trainer", lambda *a: pytest.fail("rebuilt"))
    with pytest.raises(RepeatedFailure) as again:
        train_trial({"model.hidden_dropout_prob": 1.5}, spec=spec, data=data, reporter=reporter)
    message = str(again.value)
    assert message.startswith(NOT_RUN_AGAIN) and message.endswith(str(first.value))
    assert message.splitlines()[-1].startswith("ValueError: dropout probability")


def test_an_error_of_the_moment_is_left_to_the_retries(prepared, monkeypatch):
    from hpo.trial import run as trial_run

    spec, data = prepared

    def out_of_memory(*args):
        raise RuntimeError("CUDA out of memory")  # depends on the trials beside it

    monkeypatch.setattr(trial_run, "build_trainer", out_of_memory)
    reporter = LocalReporter()
    with pytest.raises(RuntimeError):
        train_trial({"learning_rate": 1e-3}, spec=spec, data=data, reporter=reporter)
    assert reporter.failure is None and reporter.earlier_failure() is None


def test_a_killed_workers_output_folder_is_removed_by_the_next_trial(tmp_path, monkeypatch):
    """A worker killed mid-trial never reaches its cleanup; its folder may hold a model."""
    import subprocess
    import sys
    import tempfile

    from hpo.trial import run

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    host = run._host()
    dead = tmp_path / f"hpo-trial-{host}-{int(ended.stdout)}-abc123"
    alive = tmp_path / f"hpo-trial-{host}-{os.getpid()}-def456"
    elsewhere = tmp_path / f"hpo-trial-otherhost-{int(ended.stdout)}-abc123"  # its pids: not ours
    other = tmp_path / "hpo-trial-xyz"  # not one hpo names by host and pid
    for folder in (dead, alive, elsewhere, other):
        (folder / "checkpoint-5").mkdir(parents=True)
    run.remove_abandoned_output_dirs()
    assert not dead.exists() and alive.exists() and elsewhere.exists() and other.exists()
