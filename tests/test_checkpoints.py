"""The checkpoint budget's bar: the worst score it keeps, published for the trials to read."""

from __future__ import annotations

from types import SimpleNamespace

from hpo import checkpoint_bar
from hpo.checkpoints import CheckpointBudget, _Saved
from hpo.trial.reporter import TuneReporter


class Folders:
    """The budget's view of a filesystem: it only deletes."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete_dir(self, path: str) -> None:
        self.deleted.append(path)


def test_budget_publishes_the_worst_score_it_keeps(monkeypatch):
    published: list[tuple[str, float | None]] = []
    monkeypatch.setattr(checkpoint_bar, "publish", lambda *key_score: published.append(key_score))
    budget = CheckpointBudget("eval_loss", "minimize", keep=2, bar_key="key")
    folders = Folders()

    def save(trial_id: str, loss: float, path: str) -> float | None:
        trial = SimpleNamespace(trial_id=trial_id, last_result={"eval_loss": loss})
        budget.on_checkpoint(0, [], trial, SimpleNamespace(path=path, filesystem=folders))
        return published[-1][1]

    assert save("a", 1.0, "a1") is None, "fewer than `keep`: any checkpoint may be kept"
    assert save("b", 0.5, "b1") == -1.0  # scores are oriented: higher is better
    # a2 and b1 are the best two; a1 is neither among them nor a's latest, so it goes.
    assert save("a", 0.4, "a2") == -0.5
    assert folders.deleted == ["a1"] and {key for key, _ in published} == {"key"}
    budget.on_experiment_end([])
    assert published[-1] == ("key", None), "a finished search leaves no bar behind"


def test_one_run_directory_has_one_bar_however_its_path_is_spelled(tmp_path):
    run = tmp_path / "runs" / "search"
    run.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "runs")
    key = checkpoint_bar.bar_key(str(run))
    assert checkpoint_bar.bar_key(str(tmp_path / "link" / "search")) == key
    assert checkpoint_bar.bar_key(str(run) + "/") == key
    assert checkpoint_bar.bar_key(str(tmp_path / "runs" / "other")) != key


def test_a_budget_pickled_before_the_bar_resumes(monkeypatch):
    published: list[tuple[str, float | None]] = []
    monkeypatch.setattr(checkpoint_bar, "publish", lambda *key_score: published.append(key_score))
    old = CheckpointBudget("eval_loss", "minimize", keep=1)
    del old.__dict__["bar_key"]  # as unpickled from an experiment an older hpo saved
    old.set_state({"saved": [], "finished": set(), "count": 0})
    assert published == [], "no key: nothing to publish, and no error"


def test_a_resumed_budget_publishes_its_bar_under_the_moved_run_directory(monkeypatch, tmp_path):
    from hpo.relocate import relocate_callbacks

    published: list[tuple[str, float | None]] = []
    monkeypatch.setattr(checkpoint_bar, "publish", lambda *key_score: published.append(key_score))
    old_key = checkpoint_bar.bar_key(str(tmp_path / "first" / "search"))
    budget = CheckpointBudget("eval_loss", "minimize", keep=1, bar_key=old_key)
    saved = [_Saved("a", "a1", -0.5, 1)]
    budget.set_state({"saved": saved, "finished": set(), "count": 1})
    assert published[-1] == (old_key, -0.5), "restored: the bar is published at once"

    moved = str(tmp_path / "moved" / "search")
    config = SimpleNamespace(callbacks=[budget])
    tuner = SimpleNamespace(_local_tuner=SimpleNamespace(get_run_config=lambda: config))
    relocate_callbacks(tuner, moved, moved)
    assert published[-1] == (checkpoint_bar.bar_key(moved), -0.5)
    assert budget.bar_key == checkpoint_bar.bar_key(moved) != old_key


def test_trials_read_the_bar_the_driver_publishes(local_ray):
    key = checkpoint_bar.bar_key("/runs/published")
    assert key != checkpoint_bar.bar_key("/runs/other"), "one bar per search"
    reporter = TuneReporter(key)
    assert reporter.checkpoint_bar() is None
    checkpoint_bar.publish(key, -0.25)
    assert reporter.checkpoint_bar() == -0.25
    checkpoint_bar.publish(key, float("-inf"))  # the worst kept score is not a number
    assert reporter.checkpoint_bar() is None
    assert TuneReporter().checkpoint_bar() is None, "no key: no bar"


def test_a_checkpoint_a_recent_save_names_waits(monkeypatch):
    """A driver killed between Tune's saves is resumed from the state the run directory
    holds, which may be a save or two behind (Tune copies it there in the background, and
    skips a copy while one runs): each unfinished trial restarts from the checkpoint it names."""
    from hpo import checkpoints

    monkeypatch.setattr(checkpoint_bar, "publish", lambda *key_score: None)
    clock = [0.0]
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: clock[0])
    budget = CheckpointBudget("eval_loss", "minimize", keep=1, bar_key="key")
    folders = Folders()

    def save(trial_id: str, loss: float, path: str) -> None:
        trial = SimpleNamespace(trial_id=trial_id, last_result={"eval_loss": loss})
        budget.on_checkpoint(0, [], trial, SimpleNamespace(path=path, filesystem=folders))

    def tune_saves(after_s: float) -> dict:
        clock[0] += after_s
        return budget.get_state()

    save("a", 0.2, "a1")  # the best
    save("b", 0.9, "b1")  # b's latest
    state = tune_saves(10)  # names a1 and b1
    save("b", 0.8, "b2")  # b1 falls out of the budget, but a restore would look for it
    assert folders.deleted == []
    restored = CheckpointBudget("eval_loss", "minimize", keep=1, bar_key="key")
    restored.set_state(state)  # (what `hpo resume` after a kill -9 would start from)
    assert "b1" in restored.referenced
    tune_saves(10)  # names b2; the run directory may still hold the save before
    tune_saves(10)  # two saves since: yet within NAMED_FOR_S of the one that named b1
    assert folders.deleted == []
    tune_saves(checkpoints.NAMED_FOR_S)
    assert folders.deleted == ["b1"]
    budget.on_trial_complete(0, [], SimpleNamespace(trial_id="b", checkpoint=None))
    save("a", 0.1, "a2")  # b2 and a1 were named by the last saves: they wait
    assert folders.deleted == ["b1"]
    tune_saves(1)  # Tune's last save, at the end of the search
    assert folders.deleted == ["b1"]
    budget.on_experiment_end([SimpleNamespace(trial_id=t) for t in "ab"])  # a was cut off
    assert folders.deleted == ["b1"], "an interrupted search keeps what a resume reads"
    budget.on_trial_complete(0, [], SimpleNamespace(trial_id="a", checkpoint=None))
    budget.on_experiment_end([SimpleNamespace(trial_id=t) for t in "ab"])  # every trial ended
    assert sorted(folders.deleted) == ["a1", "b1", "b2"]


def test_a_moved_or_copied_run_prunes_its_own_checkpoints_only(monkeypatch, tmp_path):
    """The budget's paths are absolute: after `mv` they would name nothing (a leak), and in a
    copy they would name the original's checkpoints (deleted from under it). In Ray's order:
    `hpo resume` relocates the budget the search started with, then Tune restores its state."""
    import pickle

    from hpo import checkpoints

    monkeypatch.setattr(checkpoint_bar, "publish", lambda *key_score: None)
    monkeypatch.setattr(checkpoints, "NAMED_FOR_S", 0.0)
    original, copy = tmp_path / "runs" / "s", tmp_path / "runs" / "s-copy"
    started = pickle.dumps(CheckpointBudget("eval_loss", "minimize", keep=1, bar_key="key"))
    budget = pickle.loads(started)
    folders = Folders()

    def save(trial_id: str, loss: float, path) -> None:
        trial = SimpleNamespace(trial_id=trial_id, last_result={"eval_loss": loss})
        budget.on_checkpoint(0, [], trial, SimpleNamespace(path=str(path), filesystem=folders))

    save("a", 0.2, original / "train_trial_a_00000" / "checkpoint_000000")
    save("b", 0.9, original / "train_trial_b_00001" / "checkpoint_000000")
    budget.on_trial_complete(0, [], SimpleNamespace(trial_id="a", checkpoint=None))
    state = pickle.loads(pickle.dumps(budget.get_state()))
    budget = pickle.loads(started)  # `hpo resume` of the copy
    budget.follow_local_run(str(copy))
    budget.set_state(state)
    save("b", 0.8, copy / "train_trial_b_00001" / "checkpoint_000001")
    budget.get_state()
    budget.get_state()
    assert folders.deleted == [str(copy / "train_trial_b_00001" / "checkpoint_000000")]
    paths = [s.path for s in [*budget.saved, *budget.deferred]]
    assert paths and all(p.startswith(f"{copy}/") for p in paths), paths


def test_a_budget_pickled_by_an_older_hpo_defers_nothing_it_cannot_know(monkeypatch):
    import pickle

    monkeypatch.setattr(checkpoint_bar, "publish", lambda *key_score: None)
    old = CheckpointBudget("eval_loss", "minimize", keep=1)
    for name in ("deferred", "_named", "_fs", "_run_dir"):
        del old.__dict__[name]
    restored = pickle.loads(pickle.dumps(old))
    restored.set_state({"saved": [_Saved("a", "a1", 1.0, 1)], "finished": set(), "count": 1})
    assert restored.referenced == {"a1"} and restored.deferred == []  # a1: a's latest
    assert restored.get_state()["referenced"] == {"a1"}


def test_a_finished_search_keeps_its_checkpoints_weights_not_what_only_a_resume_reads(tmp_path):
    from hpo.checkpoints import strip_resume_state

    checkpoint = tmp_path / "train_trial_a_00000" / "checkpoint_000001"
    checkpoint.mkdir(parents=True)
    resume_only = ["optimizer.pt", "scheduler.pt", "rng_state.pth", "rng_state_1.pth"]
    kept = ["model.safetensors", "config.json", "trainer_state.json", "hpo_trial_state.json"]
    for name in resume_only + kept:
        (checkpoint / name).write_bytes(b"x" * 10)
    best_model = tmp_path / "best_model"  # the export: not a checkpoint, left as it is
    best_model.mkdir()
    (best_model / "optimizer.pt").write_bytes(b"not hpo's to judge")
    assert strip_resume_state(str(tmp_path)) == 40
    assert sorted(p.name for p in checkpoint.iterdir()) == sorted(kept)
    assert (best_model / "optimizer.pt").exists()
