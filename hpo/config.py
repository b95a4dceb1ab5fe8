"""YAML + `--set` overrides -> a checked, resolved JobSpec. Every problem is reported at once."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from hpo.errors import SpecError, did_you_mean
from hpo.model_checks import check_max_length, check_model_values
from hpo.model_config import read_model_config
from hpo.paths import (
    REMOTE_SCHEMES,
    carries_credentials,
    is_remote_uri,
    looks_like_path,
    resolve_path,
)
from hpo.recipe_checks import check_recipe
from hpo.schema import build, load_yaml, to_plain
from hpo.space import Condition, Space, base_name, compile_space, ever_sampled
from hpo.spec import DataSpec, EarlyTerminateSpec, JobSpec, MetricSpec, ModelSpec, ParamSpec
from hpo.tasks import MANAGED_TRAINING_ARGS, RECIPE_PARAMS, STRATEGIES, TASKS, default_goal
from hpo.training_values import check_training_values

METHODS = ("tpe", "random", "grid", "cmaes")
METHOD_ALIASES = {"bayes": "tpe"}
SCHEDULERS = ("asha", "hyperband", "none")
WANDB_MODES = ("online", "offline", "disabled")
_HUB_ID = re.compile(r"^[\w.\-]+(/[\w.\-]+)?$")
_PARAM_KEYS = {f.name for f in dataclasses.fields(ParamSpec)}
# TrainingArguments fields hpo refuses in a spec, with what to do instead.
REFUSED_TRAINING_ARGS = {
    "warmup_ratio": "removed in transformers 5; use warmup_steps below 1",
    # spec.yaml, W&B's config and the job sent to a cluster carry the spec; a key must not.
    "hub_token": "a secret, which the saved spec would keep; set HF_TOKEN in the environment",
}


def load_spec(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    read_data: bool = False,
    flags: tuple[str, ...] = (),
    check_data: bool = False,
) -> JobSpec:
    """Read, override, check and resolve a spec file; raises SpecError listing every problem
    (`read_data`: with the local data files' own, when the spec has others; `check_data`: even
    when it has none, for `hpo validate`, whose "valid" means the data reads too; `flags`: the
    keys whose override came from a flag of their own, `--storage`, which a problem names)."""
    raw = read_yaml(path)
    problems: list[str] = []
    for item in overrides or []:
        apply_override(raw, item, problems)
    spec = parse_spec(raw, problems)
    if spec is not None:
        # A key that could not be read keeps its default, so the cross-field checks still run
        # (every problem in one round); what they say about such a key, or about one inside or
        # around it, would repeat it.
        checks: list[str] = []
        narrowed = any(
            _within(item.partition("=")[0], "parameters.strategy") for item in overrides or []
        )
        check_spec(spec, checks, strategies_narrowed=narrowed)
        problems += [p for p in checks if not _repeats(p, problems)]
        if (problems and read_data) or check_data:
            problems += _data_problems(spec, problems)
    if problems:
        raise SpecError(_from_overrides(problems, overrides or [], flags), source=str(path))
    assert spec is not None
    spec.parameters = ever_sampled(spec.parameters)
    return spec


# The keys that say how the data files are read: while one is wrong, so would their reading be.
_DATA_KEYS = ("data", "task", "seed")


def _data_problems(spec: JobSpec, problems: list[str]) -> list[str]:
    """What is wrong with the local data files themselves (a missing column, one label class),
    so that it comes in the same message as the spec's problems. Read only here, where the
    command stops: a valid spec's data is read once, by the command."""
    keys = [_key(p) for p in problems]
    if spec.data.dataset is not None or any(_within(k, d) for k in keys for d in _DATA_KEYS):
        return []
    from hpo.data import check_frames

    try:
        check_frames(spec)
    except SpecError as err:
        return err.problems
    return []


@contextlib.contextmanager
def naming_overrides(overrides: list[str], flags: tuple[str, ...] = ()) -> Iterator[None]:
    """Problems found after the spec loaded (its data files, which `hpo run` reads once, in
    `prepare`) name a key that a `--set` gave as such, as load_spec's own problems do."""
    try:
        yield
    except SpecError as err:
        named = _from_overrides(err.problems, overrides, flags)
        raise SpecError(named, source=err.source) from None


def _from_overrides(problems: list[str], overrides: list[str], flags: tuple[str, ...]) -> list[str]:
    """A problem with a key that a `--set` gave (or inside it, or a parameter it added) says
    so: the file may not have that key. A key in `flags` came from its own flag (`--storage`
    of run and submit)."""
    keys = [item.partition("=")[0] for item in overrides]
    out = []
    for problem in problems:
        key = _key(problem)
        given = any(_within(key, k) or ("." in key and _within(k, key)) for k in keys)
        if key in flags:
            problem = "--" + problem
        elif given and not problem.startswith("--set "):
            problem = f"--set {problem}"
        out.append(problem)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise SpecError([f"{path}: a folder; give a spec file (YAML) in it"])
    if not p.is_file():
        raise SpecError([f"{path}: no such file"])
    try:
        raw = load_yaml(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError([f"{path}: not valid YAML{where}: {reason}"]) from None
    except UnicodeDecodeError:
        raise SpecError([f"{path}: not a text file"]) from None
    if raw is None:
        raise SpecError([f"{path}: the file is empty"])
    if not isinstance(raw, dict):
        raise SpecError([f"{path}: expected a mapping of spec sections at the top"])
    return raw


def apply_override(raw: dict[str, Any], item: str, problems: list[str]) -> None:
    """`key.path=value` (value read as YAML). Dotted parameter names are matched whole."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        problems.append(f"--set {item}: expected key.path=value")
        return
    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        value = text
    node = raw
    rest = key
    while True:
        # The longest existing key that prefixes what is left, so `model.hidden_dropout_prob`
        # under `parameters` is found whole.
        match = next(
            (
                k
                for k in sorted(node, key=len, reverse=True)
                if isinstance(k, str) and (rest == k or rest.startswith(k + "."))
            ),
            None,
        )
        head = match or (_new_parameter(rest) if node is raw.get("parameters") else None)
        head = head or rest.split(".", 1)[0]
        if head == rest:
            node[head] = value
            return
        rest = rest[len(head) + 1 :]
        child = node.get(head)
        if child is None:
            child = node[head] = {}
        if not isinstance(child, dict):
            problems.append(f"--set {key}: `{head}` is not a mapping")
            return
        node = child


def _new_parameter(path: str) -> str:
    """The parameter a `--set parameters.PATH=...` adds: its name is dotted where it is a
    model config field or a recipe's (`model.hidden_dropout_prob`, `lora.r`), so it is all of
    PATH but a trailing form key (`lora.r.values` sets `values` of `lora.r`)."""
    name, _, last = path.rpartition(".")
    return name if name and last in _PARAM_KEYS else path


def _place_training_keys(raw: dict[str, Any], problems: list[str], since: int) -> None:
    """A TrainingArguments field written at the top (`num_train_epochs: 2`, `--set
    learning_rate=...`) belongs in a section: say which."""
    unknown = [i for i in range(since, len(problems)) if ": unknown key" in problems[i]]
    if not unknown:
        return
    fields = training_arg_names()  # (transformers is imported only here)
    for i in unknown:
        key = problems[i].split(": unknown key", 1)[0]
        if key in fields and key in raw:  # said instead of a did-you-mean of the top's keys
            problems[i] = (
                f"{key}: unknown key; a TrainingArguments value goes under `training:` (fixed, "
                f"training.{key}) or `parameters:` (searched, parameters.{key})"
            )


def _without_nested_parameters(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """W&B's nested sweep parameters (`optimizer: {parameters: {...}}`), said once; they are
    then left out, so that the checks of a parameter do not each misread them."""
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict):
        return raw
    nested = {n: e for n, e in parameters.items() if isinstance(e, dict) and "parameters" in e}
    for name, entry in nested.items():
        inner = list(entry["parameters"]) if isinstance(entry["parameters"], dict) else []
        names = (
            ", ".join(map(str, inner))
            if len(inner) == 1
            else "each of " + (", ".join(map(str, inner)) or "them")
        )
        problems.append(
            f"parameters.{name}: W&B's nested parameters are not supported; give {names} "
            "its own entry under `parameters:`"
        )
    kept = {n: e for n, e in parameters.items() if n not in nested}
    return {**raw, "parameters": kept} if nested else raw


def parse_spec(raw: dict[str, Any], problems: list[str]) -> JobSpec | None:
    """The spec's dataclasses; a key that is missing or of the wrong type is a problem and
    keeps its default (an empty section for model and data), so that checks can go on."""
    for required in ("model", "data"):
        if required not in raw:
            problems.append(f"{required}: required section is missing")
    raw = _without_nested_parameters(raw, problems)
    before = len(problems)
    spec = build(JobSpec, raw, "", problems)
    _place_training_keys(raw, problems, before)
    if spec is None:
        return None
    spec.model = spec.model or ModelSpec()
    spec.data = spec.data or DataSpec()
    return spec


def _key(problem: str) -> str:
    return problem.split(": ", 1)[0].removeprefix("--set ")


def _within(key: str, outer: str) -> bool:
    """Is `key` the key `outer` or one inside it (`outer.x`, `outer[0]`)?"""
    return key == outer or key.startswith((outer + ".", outer + "["))


# A key that could not be read stands at its default; what is checked against it would
# mislead (a metric of the default task is not the user's task's).
_CHECKED_AGAINST = {"task": ("metric",), "method": ("rung_model",)}


def _repeats(problem: str, found: list[str]) -> bool:
    """Is `problem` about a key that one of `found` is about, or one inside or around it, or
    one checked against it? (An unknown key inside a section hides nothing of the section.)"""
    key = _key(problem)
    for other in (_key(p) for p in found if ": unknown key" not in p):
        if _within(key, other) or _within(other, key):
            return True
        if key.startswith(_CHECKED_AGAINST.get(other, ())):
            return True
    return False


def run_name_problem(name: str, key: str) -> str | None:
    """A run directory's name is one folder inside storage: `../x` or `a/b` would put the
    run's records in one place and Ray's saved state in another."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        return f"{key}: `{name}` is not a folder name (no /, \\, or ..); the run goes in storage"
    return None


def check_spec(spec: JobSpec, problems: list[str], strategies_narrowed: bool = False) -> None:
    """Cross-field checks and path resolution, in place (`strategies_narrowed`: see
    `compile_space`)."""
    if spec.name is not None and (problem := run_name_problem(spec.name, "name")):
        problems.append(problem)
    spec.method = METHOD_ALIASES.get(spec.method, spec.method)
    _check_choice("method", spec.method, METHODS, problems)
    if spec.rung_model and spec.method != "tpe":
        problems.append(f"rung_model: a TPE option; method is {spec.method}")
    _check_choice("task", spec.task, TASKS, problems)
    _merge_wandb_keys(spec)
    _check_metrics(spec, problems)
    if spec.rung_model and len(spec.metrics) > 1:
        problems.append("rung_model: a one-metric option; trials with several report no rungs")
    if spec.method == "cmaes" and len(spec.metrics) > 1:
        problems.append("method: cmaes optimizes one metric; with several use tpe or random")
    space = compile_space(spec.parameters, problems, strategies_narrowed)
    _check_parameter_names(spec, problems)
    _check_points(spec, space, problems)
    _check_budget(spec, space, problems)
    _check_training(spec, problems)
    check_training_values(spec, problems, space)
    _check_resources(spec, problems)
    _check_model(spec, problems)
    check_recipe(spec, space, problems)
    check_model_values(spec, space, problems)
    check_max_length(spec, problems)
    _check_data(spec, problems)
    _check_storage(spec, problems)
    _check_warm_start(spec, problems)


def _check_choice(key: str, value: str, choices: Any, problems: list[str]) -> None:
    if value not in choices:
        problems.append(
            f"{key}: unknown `{value}`{did_you_mean(value, choices)}; choose one of "
            + ", ".join(choices)
        )


def _merge_wandb_keys(spec: JobSpec) -> None:
    # W&B sweep files carry project/entity at the top level.
    if spec.project:
        spec.tracking.wandb.project = spec.project
    if spec.entity:
        spec.tracking.wandb.entity = spec.entity


def _check_metrics(spec: JobSpec, problems: list[str]) -> None:
    task = TASKS.get(spec.task)
    if task is None:
        return
    if spec.metric is None:
        spec.metric = MetricSpec(name=task.default_metric)
    for i, metric in enumerate(spec.metrics):
        key = "metric" if not isinstance(spec.metric, list) else f"metric[{i}]"
        if not metric.name:
            problems.append(f"{key}.name: required")
            continue
        name = metric.name
        if name not in task.all_metrics and f"eval_{name}" in task.all_metrics:
            metric.name = name = f"eval_{name}"
        if name not in task.all_metrics:
            problems.append(
                f"{key}.name: `{metric.name}` is not reported by task {spec.task}"
                f"{did_you_mean(name, task.all_metrics)}; it reports " + ", ".join(task.all_metrics)
            )
        if metric.goal is None:
            metric.goal = default_goal(name)
        elif metric.goal not in ("maximize", "minimize"):
            problems.append(f"{key}.goal: expected maximize or minimize, got `{metric.goal}`")
    names = [m.name for m in spec.metrics]
    if len(set(names)) != len(names):
        problems.append("metric: the same metric is listed twice")


def training_arg_names() -> set[str]:
    from transformers import TrainingArguments  # heavy: imported only when checking names

    return {f.name for f in dataclasses.fields(TrainingArguments)}


def _check_parameter_names(spec: JobSpec, problems: list[str]) -> None:
    allowed = training_arg_names()
    for qualified, entry in spec.parameters.items():
        key, name = f"parameters.{qualified}", base_name(qualified)
        if name.startswith("model."):
            continue  # checked against the model's config in _check_model
        if name in RECIPE_PARAMS:
            pass  # hpo's own (`seed` is a TrainingArguments field too, which the trial sets)
        elif refused := _refused_training_arg(name):
            problems.append(f"{key}: {refused}")
        elif name not in allowed and name not in RECIPE_PARAMS:
            hint = did_you_mean(name, list(allowed) + list(RECIPE_PARAMS))
            problems.append(
                f"{key}: not a TrainingArguments field, `model.<config field>` or recipe "
                f"parameter{hint}"
            )
        if name == "strategy":
            values = entry.values if entry.values is not None else [entry.value]
            for v in values:
                if v not in STRATEGIES:
                    problems.append(
                        f"{key}: unknown strategy `{v}`{did_you_mean(str(v), STRATEGIES)}; "
                        "choose from " + ", ".join(STRATEGIES)
                    )


def _check_points(spec: JobSpec, space: Space, problems: list[str]) -> None:
    for i, point in enumerate(spec.points_to_evaluate):
        key = f"points_to_evaluate[{i}]"
        if not isinstance(point, dict):
            problems.append(f"{key}: expected a mapping of parameter values")
            continue
        inactive = _ruled_out(space, point)
        for name, value in point.items():
            param = space.by_name.get(name)
            if param is None and name in spec.parameters:
                continue  # declared, but wrong itself: its own problem says so
            if param is None:
                problems.append(f"{key}.{name}: not a parameter{_point_hint(space, point, name)}")
            elif not param.contains(value):
                problems.append(f"{key}.{name}: {value!r} is outside the parameter's range")
            elif name in inactive:
                needs = " and ".join(_as_written(c) for c in param.conditions)
                problems.append(
                    f"{key}.{name}: inactive in this point (its `when`: {needs}), so the value "
                    "would be dropped; remove it from the point, or give the point values "
                    "that activate it"
                )


def _point_hint(space: Space, point: dict[str, Any], name: str) -> str:
    """A variant of `name` the point's own values make active (`learning_rate@freeze` for a
    freeze point), before a did-you-mean by spelling."""
    inactive = _ruled_out(space, point)
    variants = [p for p in space.params if base_name(p.name) == name and p.name not in inactive]
    if len(variants) == 1:
        return f" (this point's is `{variants[0].name}`)"
    return did_you_mean(name, space.names)


def _ruled_out(space: Space, point: dict[str, Any]) -> set[str]:
    """The parameters the point's own values make inactive, through a chain of conditions
    too (`lora.lora_alpha` needs `lora.r`, which needs `strategy: lora`). A condition on a
    parameter the point leaves to the sampler may yet hold."""
    out: set[str] = set()
    known: dict[str, Any] = {}
    for p in space.params:  # in order: a condition's parameter comes first
        parents = [c.param for c in p.conditions]
        if any(q in out for q in parents) or (
            all(q in known for q in parents) and not p.active(known)
        ):
            out.add(p.name)
        elif p.name in point and all(q in known for q in parents):
            known[p.name] = point[p.name]
    return out


def _as_written(c: Condition) -> str:
    """A condition as a spec writes it: `strategy == lora`, `strategy not in [full, head]`."""
    values = [str(v) for v in c.values]
    if len(values) == 1:
        return f"{c.param} {'!=' if c.negate else '=='} {values[0]}"
    return f"{c.param} {'not in' if c.negate else 'in'} [{', '.join(values)}]"


def _write_down_promotion(et: EarlyTerminateSpec) -> None:
    """Resolve promotion's defaults in the spec itself, so the spec as run (`spec.yaml`, `hpo
    validate`) says which ASHA runs, and a resumed search keeps it whatever a later default."""
    if et.type == "asha":
        et.promotion = et.promotes
    if et.promotes:
        et.max_paused = et.paused_cap


def _check_budget(spec: JobSpec, space: Space, problems: list[str]) -> None:
    if spec.method == "grid":
        open_ended = [p.name for p in space.params if p.grid_values() is None]
        if open_ended:
            problems.append(
                "method: grid needs finite parameters (`values`, `int_uniform`, `q_uniform`); "
                "continuous: " + ", ".join(open_ended)
            )
        elif spec.run_cap is None:
            spec.run_cap = len(space.grid())
    if spec.run_cap is None:
        spec.run_cap = 10
    if spec.run_cap < 1:
        problems.append(f"run_cap: must be at least 1, got {spec.run_cap}")
    et = spec.early_terminate
    _check_choice("early_terminate.type", et.type, SCHEDULERS, problems)
    if et.min_iter < 1:
        problems.append(f"early_terminate.min_iter: must be at least 1, got {et.min_iter}")
    if et.eta <= 1:
        problems.append(f"early_terminate.eta: must be > 1, got {et.eta}")
    if et.max_iter is not None and et.max_iter < et.min_iter:
        problems.append(f"early_terminate: min_iter {et.min_iter} > max_iter {et.max_iter}")
    if et.promotion and et.type != "asha":
        problems.append(f"early_terminate.promotion: needs type asha, got {et.type}")
    if et.promotion and (et.s or 1) > 1:
        problems.append("early_terminate.promotion: supports one bracket (s: 1)")
    if et.max_paused is not None and not et.promotes:
        problems.append("early_terminate.max_paused: only with promotion (type asha, one bracket)")
    if et.max_paused is not None and et.max_paused < 1:
        problems.append(f"early_terminate.max_paused: must be at least 1, got {et.max_paused}")
    _write_down_promotion(et)
    if et.guard_min_pairs < 3:
        problems.append(
            f"early_terminate.guard_min_pairs: must be at least 3, got {et.guard_min_pairs}"
        )
    if not -1 <= et.guard_threshold <= 1:
        problems.append(
            f"early_terminate.guard_threshold: a rank correlation in [-1, 1], got "
            f"{et.guard_threshold}"
        )
    if spec.max_concurrent is not None and spec.max_concurrent < 1:
        problems.append(f"max_concurrent: must be at least 1, got {spec.max_concurrent}")
    if spec.retries < 0:
        problems.append(f"retries: must be 0 or more, got {spec.retries}")
    if spec.checkpoints.keep < 1:
        problems.append(f"checkpoints.keep: must be at least 1, got {spec.checkpoints.keep}")
    if spec.checkpoints.resume_interval_s < 0:
        problems.append(
            "checkpoints.resume_interval_s: must be 0 or more seconds, "
            f"got {spec.checkpoints.resume_interval_s}"
        )


def _check_training(spec: JobSpec, problems: list[str]) -> None:
    allowed = training_arg_names()
    for name in spec.training:
        key = f"training.{name}"
        if refused := _refused_training_arg(name):
            problems.append(f"{key}: {refused}")
        elif name not in allowed:
            problems.append(f"{key}: not a TrainingArguments field{did_you_mean(name, allowed)}")
        elif searched := _always_searched(spec, name):
            problems.append(
                f"{key}: also searched (parameters.{searched}), whose sampled value every trial "
                "uses instead; keep one (a variant with a `when` may leave it to the others)"
            )


def _refused_training_arg(name: str) -> str | None:
    """Why a spec may not set TrainingArguments' `name` (fixed or searched), if it may not."""
    if name in MANAGED_TRAINING_ARGS:
        return f"set by hpo ({MANAGED_TRAINING_ARGS[name]})"
    return REFUSED_TRAINING_ARGS.get(name)


def _always_searched(spec: JobSpec, name: str) -> str | None:
    """The parameter that sets TrainingArguments' `name` in every trial (no `when`), if any."""
    return next(
        (p for p, entry in spec.parameters.items() if base_name(p) == name and not entry.when),
        None,
    )


def _check_resources(spec: JobSpec, problems: list[str]) -> None:
    res = spec.resources
    if res.cpu <= 0:
        problems.append(f"resources.cpu: must be > 0, got {res.cpu}")
    if res.gpu < 0:
        problems.append(f"resources.gpu: must be 0 or more, got {res.gpu}")
    if res.gpu > 1 and not float(res.gpu).is_integer():
        problems.append(f"resources.gpu: above 1 must be a whole number, got {res.gpu}")
    if res.autoscale and not spec.max_concurrent:
        problems.append(
            "max_concurrent: set it with resources.autoscale: true; hpo cannot see how far the "
            "autoscaler grows the cluster, and would run only as many trials at once as the "
            "nodes alive at the start hold"
        )
    mode = spec.tracking.wandb.mode
    if mode is not None and mode not in WANDB_MODES:
        problems.append(
            f"tracking.wandb.mode: unknown `{mode}`; choose one of " + ", ".join(WANDB_MODES)
        )


def _check_model(spec: JobSpec, problems: list[str]) -> None:
    model = spec.model
    if not model.name_or_path:
        problems.append("model.name_or_path: required")
        return
    resolved = resolve_path(model.name_or_path, problems, "model.name_or_path")
    if resolved is None:
        return
    gguf = os.path.join(resolved, model.gguf_file) if model.gguf_file else None
    if gguf and os.path.isdir(resolved) and not os.path.isfile(gguf):
        problems.append(f"model.gguf_file: `{model.gguf_file}` is not in {resolved}")
    if os.path.isdir(resolved):
        model.name_or_path = resolved
        config = read_model_config(model)
        if config is not None:
            _check_config_fields(spec, config, problems)
    elif looks_like_path(model.name_or_path) or not _HUB_ID.match(model.name_or_path):
        problems.append(f"model.name_or_path: no such model folder `{model.name_or_path}`")


def _check_config_fields(spec: JobSpec, config: dict[str, Any], problems: list[str]) -> None:
    """`model.config` entries and `model.<field>` parameters must be fields of the model's
    config: transformers would otherwise set an attribute no layer reads."""
    given = [(f"model.config.{k}", k) for k in spec.model.config]
    given += [
        (f"parameters.{n}", base_name(n).removeprefix("model."))
        for n in spec.parameters
        if base_name(n).startswith("model.")
    ]
    for key, attr in given:
        if attr not in config:
            problems.append(
                f"{key}: the model's config has no field `{attr}`{did_you_mean(attr, config)}"
            )


def _check_data(spec: JobSpec, problems: list[str]) -> None:
    data = spec.data
    if (data.dataset is None) == (data.train is None):
        problems.append("data: give either `dataset` (a Hub id) or `train` (local files)")
    if data.dataset is None:
        data.train = _resolve_files(data.train, "data.train", problems)
        for split in ("validation", "test"):
            value = getattr(data, split)
            if value is not None:
                resolved = _resolve_files(value, f"data.{split}", problems)
                setattr(data, split, resolved[0] if resolved else None)
    for name in ("validation_fraction", "test_fraction"):
        value = getattr(data, name)
        if not 0 <= value < 1:
            problems.append(f"data.{name}: must be in [0, 1), got {value}")
    if data.validation is None and data.validation_fraction <= 0:
        problems.append("data.validation_fraction: must be > 0 when no validation split is given")
    if data.max_length < 8:
        problems.append(f"data.max_length: must be at least 8, got {data.max_length}")
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(data, name)
        if value is not None and value < 1:
            problems.append(f"data.{name}: must be at least 1, got {value}")
    if spec.task == "causal-lm":
        _check_causal_lm_data(data, problems)
    elif data.labels and len(set(data.labels)) < 2:  # [] means every label, as unset
        problems.append(
            f"data.labels: classification needs at least two labels, got {list(data.labels)}"
        )


def _check_causal_lm_data(data: DataSpec, problems: list[str]) -> None:
    """A language model trains on `text_column` alone: a classification key it would ignore."""
    if data.text_pair_column is not None:
        problems.append("data.text_pair_column: causal-lm trains on text_column alone")
    if data.label_column != "label" and not data.labels:
        problems.append(
            "data.label_column: causal-lm reads labels only to keep the rows `data.labels` "
            "lists; give labels, or drop label_column"
        )


def _resolve_files(value: Any, key: str, problems: list[str]) -> list[str]:
    files = value if isinstance(value, list) else [value]
    out = []
    for f in files:
        resolved = resolve_path(str(f), problems, key)
        if resolved is None:
            continue
        if not os.path.isfile(resolved):
            problems.append(f"{key}: no such file `{f}`")
            continue
        out.append(resolved)
    return out


def _check_storage(spec: JobSpec, problems: list[str]) -> None:
    if is_remote_uri(spec.storage):
        if carries_credentials(spec.storage):
            problems.append(
                "storage: the URI carries bucket credentials; set them in the environment "
                "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) instead: hpo prints the URI "
                "and saves it in spec.yaml"
            )
        return
    scheme = _uri_scheme(spec.storage)
    if scheme in REMOTE_SCHEMES:  # a slash short
        fixed = scheme + spec.storage.partition(":")[2].lstrip("/")
        problems.append(f"storage: `{spec.storage}` is not a URI (did you mean `{fixed}`?)")
        return
    if scheme is not None:  # else a typo would become a folder named `ftp:` here
        choices = ", ".join(REMOTE_SCHEMES)
        problems.append(
            f"storage: `{scheme}` is not a storage hpo writes to; give a local folder or a "
            f"URI starting with one of {choices}"
        )
        return
    path = Path(spec.storage).expanduser().resolve()
    spec.storage = str(path)
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not _can_create_in(existing):
        problems.append(
            f"storage: `{path}` cannot be written ({existing} is not a writable folder)"
        )


def _uri_scheme(value: str) -> str | None:
    """`ftp://` or `s3:/` (a slash short): what looks like a URI scheme, not a folder. One
    letter before the colon is a Windows drive, never written as a scheme."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):/", value)
    return f"{match.group(1)}://" if match else None


def _can_create_in(folder: Path) -> bool:
    """Try it: permission bits do not tell (root passes os.access; /proc refuses anyway)."""
    import tempfile

    if not folder.is_dir():
        return False
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hpo-probe-", dir=folder))
    except OSError:
        return False
    return True


def _check_warm_start(spec: JobSpec, problems: list[str]) -> None:
    if spec.warm_start is None:
        return
    from hpo.warmstart import check_warm_start

    spec.warm_start = os.path.abspath(os.path.expanduser(spec.warm_start))
    task = TASKS.get(spec.task)
    known = [m.name for m in spec.metrics if task and m.name in task.all_metrics]  # else: told
    problems += check_warm_start(spec.warm_start, known)


def dump_spec(spec: JobSpec) -> str:
    """The resolved spec as YAML (what `hpo validate` prints and spec.yaml holds)."""
    return yaml.safe_dump(to_plain(spec), sort_keys=False, default_flow_style=None, width=100)
