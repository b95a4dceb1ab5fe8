"""The report's figures over spaces with conditional parameters, variants and several
objectives, on hand-made run data (the figures' end-to-end tests are in test_report.py)."""

from __future__ import annotations

import math
import os

import pandas as pd

from hpo.report import plots
from hpo.report.parallel import UNUSED, build_axes, draw_parallel
from hpo.report.pareto import objective_points
from hpo.report.rundata import RunData
from hpo.spec import DataSpec, JobSpec, MetricSpec, ModelSpec, ParamSpec


def strategy_run() -> RunData:
    spec = JobSpec(
        model=ModelSpec(name_or_path="m"),
        data=DataSpec(train="d.csv"),
        metric=MetricSpec(name="eval_accuracy", goal="maximize"),
        parameters={
            "strategy": ParamSpec(values=["full", "freeze", "lora"]),
            "learning_rate@full": ParamSpec(
                distribution="log_uniform_values", min=1e-5, max=1e-4, when={"strategy": "full"}
            ),
            "learning_rate@lora": ParamSpec(
                distribution="log_uniform_values", min=1e-4, max=1e-2, when={"strategy": "lora"}
            ),
            "freeze.layers": ParamSpec(min=1, max=9, when={"strategy": "freeze"}),
            "learning_rate@freeze": ParamSpec(value=1e-4, when={"strategy": "freeze"}),
        },
    )
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d"],
            "strategy": ["full", "lora", "freeze", "freeze"],
            "learning_rate@full": [2e-5, None, None, None],
            "learning_rate@lora": [None, 1e-3, None, None],
            "learning_rate@freeze": [None, None, 1e-4, 1e-4],
            "freeze.layers": [None, None, 8.0, 2.0],  # blanks make pandas read floats
            "best_eval_accuracy": [0.8, 0.85, 0.7, 0.75],
        }
    )
    return RunData("run", spec, trials, pd.DataFrame(), None, None)


def test_every_trial_is_one_unbroken_line_on_one_axis_per_parameter():
    run = strategy_run()
    axes = {a.name: a for a in build_axes(run, run.trials)}
    # Variants share their parameter's axis; a constant variant is no axis of its own.
    assert list(axes) == ["strategy", "learning_rate", "freeze.layers", "eval_accuracy"]
    assert all(math.isfinite(y) for a in axes.values() for y in a.positions)
    lr = axes["learning_rate"].positions
    assert lr[0] < lr[2] == lr[3] < lr[1]  # freeze trials at their constant 1e-4
    layers = axes["freeze.layers"]
    assert layers.positions[:2] == [UNUSED, UNUSED] and layers.positions[2] > layers.positions[3]
    assert {text for _, text in layers.ticks} == {"2", "5", "8", "unused"}  # not 8.0
    run.trials["freeze.layers"] = [None, None, 1.0, 2.0]
    layers = {a.name: a for a in build_axes(run, run.trials)}["freeze.layers"]
    assert {text for _, text in layers.ticks} == {"1", "2", "unused"}  # a count: no 1.5


def test_a_one_value_axis_has_one_mark():
    run = strategy_run()
    run.trials["best_eval_accuracy"] = 0.8
    metric = build_axes(run, run.trials)[-1]
    assert metric.ticks == [(0.5, "0.8")] and set(metric.positions) == {0.5}


def two_objective_run(evaluations: pd.DataFrame, pareto: pd.DataFrame | None) -> RunData:
    spec = JobSpec(
        model=ModelSpec(name_or_path="m"),
        data=DataSpec(train="d.csv"),
        metric=[
            MetricSpec(name="eval_accuracy", goal="maximize"),
            MetricSpec(name="trainable_params", goal="minimize"),
        ],
        parameters={"learning_rate": ParamSpec(min=1e-5, max=1e-3)},
    )
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "outcome": ["completed"] * 3,
            "learning_rate": [1e-4, 2e-4, 3e-4],
            "best_eval_accuracy": [0.8, 0.7, 0.6],
            "best_evaluation": [2.0, 1.0, 1.0],
        }
    )
    return RunData("run", spec, trials, evaluations, {"trial_id": "a"}, None, pareto)


def test_the_front_is_found_without_pareto_csv_and_a_run_without_scores_draws_none():
    evaluations = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b", "c"],
            "training_iteration": [1, 2, 1, 1],
            "eval_accuracy": [0.5, 0.8, 0.7, 0.6],
            "trainable_params": [900, 900, 100, 500],
        }
    )
    points = objective_points(two_objective_run(evaluations, pareto=None))
    # a at its best evaluation (2); c is beaten by b on both objectives
    assert dict(zip(points["trial_id"], points["on_front"], strict=True)) == {
        "a": True,
        "b": True,
        "c": False,
    }
    empty = pd.DataFrame(columns=["trial_id", "training_iteration", "eval_accuracy"])
    assert objective_points(two_objective_run(empty, pareto=None)).empty  # all errored


def test_importance_of_trials_that_all_scored_the_same_is_a_reason_not_a_crash():
    """Tiny searches often tie (every trial predicts the majority class): fANOVA then raises
    "zero total variance"; the report must still be written."""
    from hpo.report.importance import importance

    run = strategy_run()
    run.trials["best_eval_accuracy"] = 0.4333
    run.evaluations = pd.DataFrame(
        {
            "trial_id": list(run.trials["trial_id"]) * 2,
            "training_iteration": [1] * 4 + [2] * 4,
            "eval_accuracy": [0.4333] * 8,
        }
    )
    result = importance(run)
    assert result.scores == {} and "scored the same" in result.reason


def test_the_scheduler_and_searcher_notes_are_in_the_page_and_the_summary(tmp_path):
    """The guard's and the hedge's verdicts (scheduler_notes.txt) say how the search adapted."""
    import io

    from hpo.report.page import render
    from hpo.report.rundata import read_notes
    from hpo.report.terminal import print_summary
    from hpo.schedulers.notes import NOTES_FILE

    lines = [
        "guard: evaluations 1->3 rank trials unlike each other (rank correlation -0.40 over 6 "
        "trials): not stopping at 1",
        "searcher: ... got worse by 0.3 (median) ...: early evaluations mislead TPE, new trials "
        "are drawn at random [<b>]",
    ]
    (tmp_path / NOTES_FILE).write_text("\n".join(lines) + "\n\n")
    run = strategy_run()
    run.trials = run.trials.assign(
        outcome="completed", wall_seconds=10.0, evaluations=3, order=range(1, 5), start_s=0.0
    )
    run.notes = read_notes(str(tmp_path))
    assert run.notes == lines
    page = render(run, [])
    assert "<h2>How the search adapted</h2>" in page
    assert "not stopping at 1</li>" in page and "[&lt;b&gt;]</li>" in page  # escaped
    out = io.StringIO()
    print_summary(run, file=out)
    text = out.getvalue()
    assert "how the search adapted" in text and "[<b>]" in text  # not read as rich markup
    assert read_notes(str(tmp_path / "elsewhere")) == []  # a run without notes: no section


def test_the_importance_legend_covers_no_bar(tmp_path, monkeypatch):
    """One parameter explaining everything draws a full-width bar where a legend inside the
    axes would sit."""
    from matplotlib.patches import Rectangle

    from hpo.report import plots
    from hpo.report.importance import Importance

    run = strategy_run()
    run.spec.parameters = {"learning_rate@full": run.spec.parameters["learning_rate@full"]}
    scores = {"fANOVA": {"learning_rate": 1.0}, "PED-ANOVA": {"learning_rate": 0.97}}
    overlaps = []

    def check(fig, out_dir, name):
        fig.tight_layout()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent(renderer)
        bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0]
        assert len(bars) == 2
        overlaps.extend(b.get_window_extent(renderer).overlaps(legend) for b in bars)
        # ... and the legend is on the figure, not cut off at its edge.
        assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1
        return name

    monkeypatch.setattr(plots, "_save", check)
    plots.importance_bars(run, Importance(1, 4, scores), str(tmp_path))
    assert overlaps == [False, False]


def test_a_parameter_only_one_evaluator_scored_still_gets_its_bar(tmp_path, monkeypatch):
    """fANOVA scores only the parameters every trial sampled: in a strategy search it leaves
    out each strategy's learning rate, which PED-ANOVA may find to matter most."""
    from hpo.report import plots
    from hpo.report.importance import Importance

    run = strategy_run()
    scores = {
        "fANOVA": {"strategy": 1.0},
        "PED-ANOVA": {"learning_rate@full": 0.98, "strategy": 0.02},
    }
    drawn = {}

    def keep(fig, out_dir, name):
        ax = fig.axes[0]
        drawn["ticks"] = [t.get_text() for t in ax.get_yticklabels()]
        drawn["xlabel"] = ax.get_xlabel()
        return name

    monkeypatch.setattr(plots, "_save", keep)
    plots.importance_bars(run, Importance(1, 4, scores), str(tmp_path))
    assert drawn["ticks"] == ["strategy", "learning_rate@full"]  # bottom up: the top matters most
    assert "fANOVA could not score learning_rate@full (not in every trial)" in drawn["xlabel"]
    assert "PED-ANOVA could not" not in drawn["xlabel"]


def test_of_trials_tied_at_the_top_the_exported_one_ranks_first():
    """The top-trials table must not put another trial above the model the search exported
    (best.yaml's tie-break: a checkpoint on disk, the later objectives)."""
    run = strategy_run()
    run.trials["best_eval_accuracy"] = [0.8, 0.85, 0.85, 0.7]
    for exported in ("b", "c"):
        run.best = {"trial_id": exported}
        ranked = list(run.scored_trials()["trial_id"])
        assert ranked[0] == exported and set(ranked[:2]) == {"b", "c"} and ranked[2:] == ["a", "d"]
    run.best = None  # no model exported: the ties as they come
    assert list(run.scored_trials()["trial_id"]) == ["b", "c", "a", "d"]
    # After `hpo confirm` best.yaml names a confirmation run: the search's own pick ranks,
    # so confirm's picks neither depend on its result nor leave out the search's best.
    run.best = {"trial_id": "e0c1", "search_best": {"trial_id": "c"}}
    assert list(run.scored_trials()["trial_id"]) == ["c", "b", "a", "d"]


def test_the_parallel_plots_thick_line_is_the_exported_trial_of_those_tied():
    import matplotlib.pyplot as plt

    run = strategy_run()
    tied_two = [0.8, 0.85, 0.85, 0.7]  # b (lora) and c (freeze) tie
    for scores, exported in ((tied_two, "b"), (tied_two, "c"), ([0.5] * 4, "c")):
        run.trials["best_eval_accuracy"] = scores
        run.best = {"trial_id": exported}
        frame = run.scored_trials()
        fig, ax = plt.subplots()
        draw_parallel(fig, ax, run, frame)
        thick = [line for line in ax.lines if line.get_linewidth() > 3]
        row = list(frame["trial_id"]).index(exported)
        expected = [a.positions[row] for a in build_axes(run, frame)]
        assert len(thick) == 1 and list(thick[0].get_ydata()) == expected, exported
        plt.close(fig)


def test_of_trials_tied_on_the_first_objective_the_better_on_the_next_ranks_first():
    """As the report's header says ("ties going to the later objectives"): a dominated trial
    must not rank above the front's, and `hpo confirm` picks so too. A later objective that
    is not finite ranks last, as in best.yaml's pick."""
    evaluations = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b", "c"],
            "training_iteration": [1, 2, 1, 1],
            "eval_accuracy": [0.5, 0.7, 0.7, 0.6],
            "trainable_params": [100, 900, 300, 50],  # a's best evaluation (2) has 900
        }
    )
    run = two_objective_run(evaluations, pareto=None)
    run.trials["best_eval_accuracy"] = [0.7, 0.7, 0.7]
    run.best = None  # no model exported: by the objectives alone
    assert list(run.scored_trials()["trial_id"]) == ["c", "b", "a"]
    # best.yaml's trial first (its pick weighed the objectives, and a checkpoint on disk
    # before them), the rest by the later objectives.
    run.best = {"trial_id": "a"}
    assert list(run.scored_trials()["trial_id"]) == ["a", "c", "b"]
    run.best = None
    run.evaluations = evaluations.assign(trainable_params=[100, 900, 300, -math.inf])
    assert list(run.scored_trials()["trial_id"]) == ["b", "a", "c"]
    run.best = {"trial_id": "a"}
    run.evaluations = evaluations.drop(columns="trainable_params")  # not recorded: as before
    assert list(run.scored_trials()["trial_id"]) == ["a", "b", "c"]


def test_the_seed_spread_draws_a_configuration_whose_every_run_failed(tmp_path):
    run = strategy_run()
    ran = {"seeds": [{"seed": 4, "value": 0.8}], "mean": 0.8, "std": 0.0, "chosen": True}
    failed = {"seeds": [], "failures": 2, "mean": None, "std": 0.0}
    run.confirm = {
        "ranking": [
            {**entry, "rank": k, "search_rank": k, "trial_id": "ab"[k - 1]}
            for k, entry in enumerate((ran, failed), start=1)
        ]
    }
    path = plots.seed_spread(run, str(tmp_path))
    assert path is not None and os.path.getsize(tmp_path / path) > 5_000


def test_a_metric_axis_says_which_way_is_better_and_turns_log_over_a_wide_span():
    """Perplexities of 1,009 and 49,000 on a linear axis draw the good trials as one line."""
    import matplotlib.pyplot as plt

    from hpo.report.plots import metric_axis

    fig, (wide, narrow, negative) = plt.subplots(1, 3)
    metric_axis(wide, [1009.0, 1088.0, float("nan"), 49_000.0], "perplexity", maximize=False)
    metric_axis(narrow, [0.5, 0.81], "eval_accuracy", maximize=True)
    metric_axis(negative, [-3.0, 0.01, 5.0], "score", maximize=True)
    assert wide.get_yscale() == "log" and wide.get_ylabel() == "perplexity (lower is better)"
    assert narrow.get_yscale() == "linear"
    assert narrow.get_ylabel() == "eval_accuracy (higher is better)"
    assert negative.get_yscale() == "linear"  # no log of values at or below 0
    plt.close(fig)


def test_the_terminal_tables_cut_no_number_or_name(monkeypatch):
    """A pipe or log gets lines long enough for the whole table; a narrow terminal breaks
    a cell over lines rather than cut `2.175e+04` to `2.175e+…`."""
    import io

    from hpo.report.terminal import _table, table_console

    header = ["trial", "outcome", "best_perplexity", "learning_rate@full", "learning_rate@lora"]
    header += [f"lora.lora_{name}" for name in ("alpha", "dropout", "r", "target_modules")]
    rows = [["a1b2c3d4", "completed", "2.175e+04", "2e-05", "", "16", "0.05", "8", "q_proj"]] * 3

    def printed() -> str:
        out = io.StringIO()
        table_console(out).print(_table("top trials", header, rows, ("trial", "outcome"), True))
        return out.getvalue()

    monkeypatch.delenv("COLUMNS", raising=False)
    piped = printed()
    assert "…" not in piped and all(name in piped for name in [*header, "2.175e+04"]), piped
    monkeypatch.setenv("COLUMNS", "60")
    narrow = printed()
    assert "…" not in narrow and max(map(len, narrow.splitlines())) <= 60, narrow


def test_the_pareto_front_is_a_staircase_on_log_axes_where_the_values_span_decades(monkeypatch):
    """Trainable parameters from 770 (head) to 22 million (full): on a linear axis the
    small ones sit on one dot; between two front trials the front is a step, not a slope."""
    import matplotlib.pyplot as plt

    from hpo.report import pareto
    from hpo.spec import MetricSpec

    run = strategy_run()
    run.spec.metric = [
        MetricSpec(name="eval_accuracy", goal="maximize"),
        MetricSpec(name="trainable_params", goal="minimize"),
    ]
    points = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "eval_accuracy": [0.52, 0.66, 0.71],
            "trainable_params": [770.0, 74_498.0, 22_700_000.0],
            "on_front": [True, True, True],
        }
    )
    monkeypatch.setattr(pareto, "objective_points", lambda run: points)
    fig, ax = plt.subplots()
    pareto.draw_front(ax, run)
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    (step,) = [line for line in ax.get_lines() if line.get_drawstyle() == "steps-pre"]
    assert list(step.get_xdata()) == [0.52, 0.66, 0.71]
    plt.close(fig)
