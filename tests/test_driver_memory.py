"""What the driver keeps per finished trial: Tune's statistics only for the ranked metrics."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.trainable.metadata import _TrainingRunMetadata

from hpo.driver_memory import ForgetFinishedTrialStats


def test_a_finished_trial_keeps_statistics_only_for_the_ranked_metrics():
    metadata = _TrainingRunMetadata()
    for step in (1, 2, 3):
        for key in ("eval_loss", "eval_runtime", "epoch", "training_iteration"):
            metadata.update_metric(key, float(step), step=step)
    saved_before = metadata.get_json_state()

    ForgetFinishedTrialStats(["eval_loss"]).on_trial_complete(
        0, [], SimpleNamespace(run_metadata=metadata)
    )

    assert set(metadata.metric_analysis) == {"eval_loss", "training_iteration"}
    assert set(metadata.metric_n_steps) == {"eval_loss", "training_iteration"}
    assert metadata.metric_analysis["eval_loss"]["last"] == 3.0
    assert metadata.metric_analysis["eval_loss"]["last-5-avg"] == 2.0
    # What Tune saves of the trial shrinks too (its cached JSON was dropped).
    assert len(metadata.get_json_state()) < len(saved_before)
    assert "eval_runtime" not in metadata.get_json_state()
