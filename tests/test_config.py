"""Spec loading and validation: every problem at once, each naming its key."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from conftest import write_spec

from hpo.cli import main
from hpo.config import load_spec
from hpo.errors import SpecError


def base(tiny_bert: str, csv_path: str, storage: Path, extra: str = "") -> str:
    return f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {csv_path}}}
storage: {storage}
{extra}
"""


def test_minimal_spec_gets_task_defaults(tmp_path, tiny_bert, sentiment_csv):
    spec = load_spec(write_spec(tmp_path / "s.yaml", base(tiny_bert, sentiment_csv, tmp_path)))
    assert spec.task == "sequence-classification"
    assert spec.primary.name == "eval_accuracy" and spec.primary.goal == "maximize"
    assert spec.method == "tpe" and spec.early_terminate.type == "asha"
    assert spec.run_cap == 10
    # Promotion-type ASHA, written down: the spec as run says so, and a resume keeps it.
    assert spec.early_terminate.promotion is True and spec.early_terminate.max_paused == 32
    brackets = "early_terminate: {type: asha, s: 2}"  # promotion has one bracket: stop-type
    spec = load_spec(
        write_spec(tmp_path / "b.yaml", base(tiny_bert, sentiment_csv, tmp_path, brackets))
    )
    assert spec.early_terminate.promotion is False and spec.early_terminate.max_paused is None


def test_every_problem_is_reported_at_once(tmp_path, tiny_bert, sentiment_csv):
    text = base(
        tiny_bert,
        sentiment_csv,
        tmp_path,
        """
method: bayesian
parameters:
  learning_rate: {min: 0.1, max: 0.01}
  learning_rat: {values: [1]}
  weight_decay: {distribution: log_uniform_values, min: 0, max: 0.1}
  warmup_steps: {distribution: gaussian, min: 0, max: 1}
run_cap: 0
trainig: {num_train_epochs: 1}
""",
    )
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(tmp_path / "s.yaml", text))
    problems = "\n".join(err.value.problems)
    assert "trainig: unknown key (did you mean `training`?)" in problems
    assert "parameters.learning_rate: min 0.1 > max 0.01" in problems
    assert "parameters.learning_rat: not a TrainingArguments field" in problems
    assert "did you mean `learning_rate`?" in problems
    assert "parameters.weight_decay.min: log_uniform_values needs min > 0" in problems
    assert "parameters.warmup_steps.distribution: unknown `gaussian`" in problems
    assert "run_cap: must be at least 1" in problems
    assert "method: unknown `bayesian`" in problems
    assert len(err.value.problems) == 7


def test_variants_of_a_parameter_are_checked_by_their_base_name(tmp_path, tiny_bert, sentiment_csv):
    from hpo.schedulers import evaluations_per_trial

    variants = """
parameters:
  strategy: {values: [full, lora]}
  learning_rate@full: {distribution: log_uniform_values, min: 1.0e-5, max: 5.0e-5,
                       when: {strategy: full}}
  learning_rate@lora: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-3,
                       when: {strategy: lora}}
  num_train_epochs@full: {values: [2, 3], when: {strategy: full}}
  num_train_epochs@lora: {values: [4, 6], when: {strategy: lora}}
"""
    spec = load_spec(
        write_spec(tmp_path / "ok.yaml", base(tiny_bert, sentiment_csv, tmp_path, variants))
    )
    assert evaluations_per_trial(spec, 100) == 6, "the longest trial of any variant sets max_t"
    bad = variants.replace("learning_rate@lora", "lerning_rate@lora")
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(tmp_path / "bad.yaml", base(tiny_bert, sentiment_csv, tmp_path, bad)))
    (problem,) = err.value.problems
    assert problem.startswith("parameters.lerning_rate@lora: not a TrainingArguments field")
    assert "did you mean `learning_rate`?" in problem


def test_wandb_sweep_file_ports_unchanged(tmp_path, tiny_bert, sentiment_csv):
    sweep = base(
        tiny_bert,
        sentiment_csv,
        tmp_path,
        """
program: train.py
method: bayes
project: my-project
metric: {name: eval/accuracy, goal: maximize}
parameters:
  learning_rate: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}
  num_train_epochs: {distribution: int_uniform, min: 1, max: 3}
early_terminate: {type: hyperband, min_iter: 1, eta: 3}
run_cap: 4
""",
    ).replace("eval/accuracy", "accuracy")
    spec = load_spec(write_spec(tmp_path / "sweep.yaml", sweep))
    assert spec.method == "tpe"  # W&B's bayes
    assert spec.primary.name == "eval_accuracy"
    assert spec.tracking.wandb.project == "my-project"
    assert spec.early_terminate.type == "hyperband"


def test_set_overrides_reach_dotted_parameter_names(tmp_path, tiny_bert, sentiment_csv):
    text = base(
        tiny_bert,
        sentiment_csv,
        tmp_path,
        """
parameters:
  model.hidden_dropout_prob: {min: 0.0, max: 0.2}
""",
    )
    path = write_spec(tmp_path / "s.yaml", text)
    spec = load_spec(
        path,
        [
            "parameters.model.hidden_dropout_prob.max=0.3",
            "run_cap=3",
            "training.num_train_epochs=2",
        ],
    )
    assert spec.parameters["model.hidden_dropout_prob"].max == 0.3
    assert spec.run_cap == 3 and spec.training == {"num_train_epochs": 2}
    # A dotted parameter the spec does not have yet is added whole, as is one of its keys.
    spec = load_spec(
        path,
        [
            "parameters.model.attention_probs_dropout_prob={min: 0.0, max: 0.1}",
            "parameters.model.initializer_range.values=[0.01, 0.02]",
        ],
    )
    assert spec.parameters["model.attention_probs_dropout_prob"].max == 0.1
    assert spec.parameters["model.initializer_range"].values == [0.01, 0.02]
    # A mistake in a --set is said to be one: the file may not have the key at all.
    with pytest.raises(SpecError) as err:
        load_spec(path, ["run_capp=3", "training.learning_rate=fast"])
    assert err.value.problems[0].startswith("--set run_capp: unknown key"), err.value.problems
    assert err.value.problems[1].startswith("--set training.learning_rate: 'fast'")


def test_scientific_notation_is_a_number_everywhere(tmp_path, tiny_bert, sentiment_csv):
    # YAML 1.1 reads `2e-5` as a string; in a list no field type would turn it back, and the
    # trial would get learning_rate='2e-05'.
    text = base(
        tiny_bert,
        sentiment_csv,
        tmp_path,
        """
method: grid
parameters:
  learning_rate: {values: [2e-5, 3e-5, 5E-5]}
  weight_decay: {values: [0, 1e-2]}
points_to_evaluate: [{learning_rate: 3e-5, weight_decay: 1e-2}]
training: {adam_epsilon: 1e-8}
""",
    )
    spec = load_spec(write_spec(tmp_path / "s.yaml", text), ["training.max_grad_norm=5e-1"])
    assert spec.parameters["learning_rate"].values == [2e-5, 3e-5, 5e-5]
    assert spec.points_to_evaluate == [{"learning_rate": 3e-5, "weight_decay": 1e-2}]
    assert spec.training == {"adam_epsilon": 1e-8, "max_grad_norm": 0.5}
    assert spec.run_cap == 6


def test_model_config_fields_are_checked_against_the_model(tmp_path, tiny_bert, sentiment_csv):
    text = base(
        tiny_bert,
        sentiment_csv,
        tmp_path,
        """
parameters:
  model.hidden_dropout_probability: {min: 0.0, max: 0.2}
""",
    )
    with pytest.raises(SpecError, match="did you mean `hidden_dropout_prob`"):
        load_spec(write_spec(tmp_path / "s.yaml", text))


def test_managed_training_arguments_are_refused(tmp_path, tiny_bert, sentiment_csv):
    text = base(tiny_bert, sentiment_csv, tmp_path, "training: {output_dir: /tmp/x}")
    with pytest.raises(SpecError, match=r"training.output_dir: set by hpo"):
        load_spec(write_spec(tmp_path / "s.yaml", text))


def test_missing_model_folder_and_data_file(tmp_path, sentiment_csv):
    text = "model: {name_or_path: ./no/such/model}\ndata: {train: ./nope.csv}\n"
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(tmp_path / "s.yaml", text))
    problems = "\n".join(err.value.problems)
    assert "model.name_or_path: no such model folder `./no/such/model`" in problems
    assert "data.train: no such file `./nope.csv`" in problems


def test_hub_ids_are_accepted_without_network(tmp_path, sentiment_csv):
    text = f"model: {{name_or_path: bert-base-uncased}}\ndata: {{train: {sentiment_csv}}}\n"
    spec = load_spec(write_spec(tmp_path / "s.yaml", text), [f"storage={tmp_path}"])
    assert spec.model.name_or_path == "bert-base-uncased"


def test_validate_cli_prints_resolved_spec(tmp_path, tiny_bert, sentiment_csv, capsys):
    path = write_spec(tmp_path / "s.yaml", base(tiny_bert, sentiment_csv, tmp_path))
    assert main(["validate", path, "--set", "run_cap=5"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["run_cap"] == 5
    assert resolved["metric"] == {"name": "eval_accuracy", "goal": "maximize"}
    # The data files are checked as `hpo run` would, without --data: "valid" means runnable.
    assert main(["validate", path, "--set", "data.label_column=labl"]) == 2
    err = capsys.readouterr().err
    assert "--set data.label_column: `labl` is not a column of" in err and "Traceback" not in err


def test_run_names_the_set_key_behind_a_data_file_problem(
    tmp_path, tiny_bert, sentiment_csv, capsys, monkeypatch
):
    """`hpo run` reads the files once, after the spec loaded; its message is validate's."""
    import hpo.tuner

    monkeypatch.setattr(hpo.tuner, "init_ray", lambda *a, **k: pytest.fail("Ray started"))
    path = write_spec(tmp_path / "s.yaml", base(tiny_bert, sentiment_csv, tmp_path))
    assert main(["run", path, "--set", "data.label_column=labl"]) == 2
    err = capsys.readouterr().err
    assert f"invalid spec in {path}: --set data.label_column: `labl` is not a column of" in err
    assert "Traceback" not in err and [p.name for p in tmp_path.iterdir()] == ["s.yaml"]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_spec_exits_2_with_one_message_and_writes_nothing(tmp_path, command, capsys):
    path = write_spec(tmp_path / "s.yaml", "model: {name_or_path: 3}\ndata: [1]\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert (
        main(
            [command, path, "--storage", str(tmp_path / "runs")]
            if command == "run"
            else [command, path]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "data: expected a mapping" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_yaml_syntax_error_names_line(tmp_path, capsys):
    path = write_spec(tmp_path / "s.yaml", "model:\n  name_or_path: [unclosed\n")
    assert main(["validate", path]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err


def test_every_spec_key_is_documented(capsys):
    from hpo.schema import field_help
    from hpo.spec import JobSpec, ParamSpec

    rows = field_help(JobSpec) + field_help(ParamSpec)
    assert all(text for _, text in rows), [k for k, t in rows if not t]
    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    assert "early_terminate.eta" in out and "parameters.<name>.when" in out
    assert "metric.goal" in out, "a key whose value may be a list of sections is listed too"
    from hpo.tasks import RECIPE_PARAMS

    # What a parameter's name may be: every recipe parameter, and the variant syntax.
    assert all(f"parameters.{name} " in out for name in RECIPE_PARAMS)
    assert "parameters.<name>@<variant>" in out


def test_training_values_are_checked_before_ray_all_at_once(tmp_path, tiny_bert, sentiment_csv):
    """What TrainingArguments would refuse on a worker, refused here, each value by its key."""
    extra = """
training: {learning_rate: fast, eval_strategy: epoch}
parameters:
  lr_scheduler_type: {values: [cosine, cosinee]}
  weight_decay: {min: -0.1, max: 0.1}
  warmup_steps: {values: [0.0, 0.1]}
"""
    path = write_spec(tmp_path / "s.yaml", base(tiny_bert, sentiment_csv, tmp_path, extra))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    wrong_type, negative, not_a_choice = err.value.problems
    assert wrong_type == (
        "training.learning_rate: 'fast' is not a valid learning_rate (TrainingArguments "
        "wants a number)"
    )
    assert negative == "parameters.weight_decay.min: must be 0 or more, got -0.1"
    assert not_a_choice.startswith(
        "parameters.lr_scheduler_type.values: cosinee is not a valid SchedulerType"
    ), not_a_choice


def test_a_value_that_needs_a_missing_package_says_which(tmp_path, tiny_bert, sentiment_csv):
    # deepspeed is not among hpo's requirements: absent where the tests run.
    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    config = tmp_path / "ds.json"
    config.write_text("{}")
    extra = f"training: {{deepspeed: {config}}}"
    path = write_spec(tmp_path / "s.yaml", base(tiny_bert, sentiment_csv, tmp_path, extra))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    (problem,) = err.value.problems
    assert problem.startswith("training.deepspeed: needs the package `deepspeed"), problem
    assert "No package metadata" not in problem


def test_a_wrong_type_does_not_hide_the_other_problems(tmp_path, tiny_bert, sentiment_csv):
    """One round: keys of the wrong type and the cross-field problems elsewhere, together,
    and nothing said twice about a key (a model path that is not a string is not also
    'required')."""
    text = f"""
model: {{name_or_path: [{tiny_bert}]}}
run_cap: ten
early_terminate: {{type: asha, eta: 1}}
parameters:
  learning_rate: {{min: 0.1, max: 0.01}}
  weight_decay: {{values: [0.0, {{a: 1}}]}}
  warmup_steps: {{min: few, max: 10}}
points_to_evaluate: [{{warmup_steps: 2}}]
storage: {tmp_path}
"""
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(tmp_path / "s.yaml", text))
    keys = sorted(p.split(":", 1)[0] for p in err.value.problems)
    assert keys == [
        "data",
        "early_terminate.eta",
        "model.name_or_path",
        "parameters.learning_rate",
        "parameters.warmup_steps.min",
        "parameters.weight_decay.values",
        "run_cap",
    ], err.value.problems
    assert "data: required section is missing" in err.value.problems
    assert "parameters.warmup_steps.min: expected a number, got 'few'" in err.value.problems


def _keys(node: object, path: tuple = ()) -> list[tuple]:
    """Every key and list item below `node`, sections included, as paths."""
    if isinstance(node, dict):
        children = [((*path, k), v) for k, v in node.items()]
    elif isinstance(node, list):
        children = [((*path, i), v) for i, v in enumerate(node)]
    else:
        return []
    return [p for child, v in children for p in (child, *_keys(v, child))]


def _replaced(node, path: tuple, value):
    copy = yaml.safe_load(yaml.safe_dump(node))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return copy


BUNDLED = sorted((Path(__file__).resolve().parents[1] / "search_spaces").rglob("*.yaml"))
WRONG = ([[1]], {"x": {}}, "zz", -3, None)


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_any_wrong_value_in_a_bundled_spec_is_a_clean_problem(path, tmp_path):
    """Every key of a real spec, a section or a value, made wrong in a few ways: validation
    says what is wrong (a SpecError listing each problem once), and never trips over a hole
    that the reading left (a parameter of the wrong type, dropped from its section)."""
    raw = yaml.safe_load(path.read_text())
    for n, key in enumerate(_keys(raw)):
        for value in WRONG[n % 2 :: 2]:
            bad = tmp_path / f"{n}.yaml"
            bad.write_text(yaml.safe_dump(_replaced(raw, key, value)))
            try:
                load_spec(bad, [f"storage={tmp_path / 'runs'}"])
            except SpecError as err:
                assert len(set(err.problems)) == len(err.problems), err


def test_every_command_says_what_it_does():
    """`hpo COMMAND --help` opens with the line `hpo --help` lists the command by."""
    import argparse

    from hpo.cli import build_parser

    def commands(parser: argparse.ArgumentParser, prefix: str) -> list:
        found = []
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            listed = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", listed[name], sub.description))
                found += commands(sub, f"{prefix} {name}")
        return found

    found = commands(build_parser(), "hpo")
    assert {"hpo run", "hpo jobs logs", "hpo confirm", "hpo keys"} <= {c for c, _, _ in found}
    assert all(listed and listed == description for _, listed, description in found), found


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"hpo {version('hpo')}"


@pytest.mark.parametrize(
    "argv, usage",
    [
        (["run", "spec.yaml", "--bogus"], "usage: hpo run "),
        (["jobs", "logs", "ID", "--bogus"], "usage: hpo jobs logs "),
        (["export", "runs/x", "--out", "m", "--bogus"], "usage: hpo export "),
    ],
)
def test_an_unknown_option_is_answered_with_its_commands_usage(capsys, argv, usage):
    """argparse would print hpo's top-level usage, which lists commands, not the options."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert "unrecognized arguments: --bogus" in err


def test_the_readme_command_table_shows_every_option():
    from hpo.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    parser = build_parser()
    (commands,) = parser._subparsers._group_actions
    for name, sub in commands.choices.items():
        rows = " ".join(line for line in readme.splitlines() if line.startswith(f"| `hpo {name}"))
        assert rows, f"README's command table has no row for hpo {name}"
        parsers = [
            sub,
            *(sub._subparsers._group_actions[0].choices.values() if sub._subparsers else []),
        ]
        options = {
            o for p in parsers for a in p._actions for o in a.option_strings if o.startswith("--")
        }
        missing = sorted(o for o in options - {"--help"} if o not in rows)
        assert not missing, f"hpo {name}: {missing} not in README's command table"


def test_a_reader_that_goes_away_ends_hpo_quietly():
    """`hpo keys | head`: the closed pipe is no traceback; the shell's SIGPIPE exit code."""
    import subprocess
    import sys

    keys = subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", "keys"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    keys.stdout.close()  # before hpo writes a line
    err = keys.stderr.read().decode()
    assert keys.wait(timeout=60) == 141 and err == "", err


def test_a_problem_names_the_flag_or_the_set_that_gave_the_key(tmp_path, capsys):
    quickstart = str(Path(__file__).parents[1] / "search_spaces" / "quickstart.yaml")
    said = "storage: `s4://` is not a storage hpo writes to"
    for argv, named in (
        (["--set", "storage=s4://x/y"], f"--set {said}"),
        (["--storage", "s4://x/y"], f"--{said}"),
    ):
        assert main(["run", quickstart, *argv]) == 2
        err = capsys.readouterr().err
        assert named in err and "Traceback" not in err, err


@pytest.mark.parametrize("command", ["run", "submit"])
def test_an_empty_storage_flag_is_refused_not_ignored(
    command, tmp_path, tiny_bert, sentiment_csv, capsys
):
    path = write_spec(tmp_path / "s.yaml", base(tiny_bert, sentiment_csv, tmp_path / "runs"))
    argv = [command, path, "--storage", ""]
    assert main(argv + (["--address", "http://127.0.0.1:9"] if command == "submit" else [])) == 2
    err = capsys.readouterr().err
    assert "--storage: expected a string, got nothing (an empty value)" in err, err
    assert not (tmp_path / "runs").exists()


def test_a_fixed_training_value_a_variant_leaves_to_other_trials_is_kept(
    tmp_path, tiny_bert, sentiment_csv
):
    """`training.learning_rate` for the trials whose strategy has no variant of its own."""
    extra = """
training: {learning_rate: 3.0e-5}
parameters:
  strategy: {values: [full, lora]}
  learning_rate@lora: {values: [1.0e-4, 3.0e-4], when: {strategy: lora}}
"""
    spec = load_spec(
        write_spec(tmp_path / "s.yaml", base(tiny_bert, sentiment_csv, tmp_path, extra))
    )
    assert spec.training["learning_rate"] == 3.0e-5


def test_log_uniform_exponents_of_a_training_value_are_checked_as_the_values_they_draw(
    tmp_path, tiny_bert, sentiment_csv
):
    """W&B's `log_uniform` takes exponents: -11.5..-8.1 is a learning rate of 1e-5..3e-4,
    which must be above 0; its exponents need not be."""
    extra = """
parameters:
  learning_rate: {distribution: log_uniform, min: -11.5, max: -8.1}
  warmup_steps: {distribution: log_uniform, min: -4.6, max: -2.3}
"""
    spec = load_spec(
        write_spec(tmp_path / "s.yaml", base(tiny_bert, sentiment_csv, tmp_path, extra))
    )
    assert spec.parameters["learning_rate"].min == -11.5


def test_a_range_the_space_refuses_is_not_also_refused_as_a_training_value(
    tmp_path, tiny_bert, sentiment_csv
):
    extra = "parameters: {learning_rate: {distribution: log_uniform_values, min: 0, max: 0.001}}"
    path = write_spec(tmp_path / "s.yaml", base(tiny_bert, sentiment_csv, tmp_path, extra))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    (problem,) = err.value.problems
    assert problem.startswith("parameters.learning_rate.min: log_uniform_values needs min > 0")
