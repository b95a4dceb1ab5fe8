"""The search space: W&B parameter entries compiled into define-by-run Optuna sampling.

Each entry becomes a `Param` that draws its value from an Optuna trial, so Optuna sees the
space's real structure, including conditional parameters (`when:`): a parameter whose condition
fails is never suggested, and so never appears in that trial's config. W&B's semantics are kept,
traps included: `int_uniform` includes max, `log_uniform` takes exponents (e^min..e^max) while
`log_uniform_values` takes the values, and the normal families keep their shape (Optuna samples
their quantile).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from hpo.errors import did_you_mean
from hpo.schema import load_yaml
from hpo.spec import ParamSpec
from hpo.tasks import STRATEGIES

DISTRIBUTIONS = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
    "q_log_uniform",
    "q_log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
)
_NEEDS_RANGE = {d for d in DISTRIBUTIONS if "uniform" in d}
_NORMALS = {"normal", "q_normal", "log_normal", "q_log_normal"}
_EXPONENT_FORMS = {"log_uniform", "q_log_uniform", "inv_log_uniform"}
# Exponents closer than this draw values within 1% of each other: the values were meant.
_NARROWEST_EXPONENTS = 0.01
_QUANTILE_EPS = 1e-6
VARIANT = "@"


def base_name(key: str) -> str:
    """`learning_rate@lora` -> `learning_rate`. A variant is a parameter's own range under its
    own condition (LoRA wants learning rates 10x those of full fine-tuning); Optuna and the
    results see each variant as a parameter of its own, the trial sets the base name."""
    return key.split(VARIANT, 1)[0]


@dataclass(frozen=True)
class Condition:
    """`param op values`: the parameter this one depends on, and the values that activate it."""

    param: str
    negate: bool
    values: tuple[Any, ...]

    def holds(self, config: dict[str, Any]) -> bool:
        if self.param not in config:
            return False
        return (config[self.param] in self.values) != self.negate

    def __str__(self) -> str:
        op = "not in" if self.negate else "in"
        return f"{self.param} {op} {list(self.values)}"


@dataclass(frozen=True)
class Param:
    """One compiled search-space entry."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    q: float | None = None
    mu: float = 0.0
    sigma: float = 1.0
    values: tuple[Any, ...] = ()
    conditions: tuple[Condition, ...] = field(default=())

    @property
    def is_int(self) -> bool:
        if self.kind == "int_uniform":
            return True
        return self.q is not None and float(self.q).is_integer() and self.kind.startswith("q_")

    def active(self, config: dict[str, Any]) -> bool:
        return all(c.holds(config) for c in self.conditions)

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter's value from an Optuna trial (define-by-run)."""
        if self.kind == "constant":
            return self.values[0]
        if self.kind == "categorical":
            return self._decode(trial.suggest_categorical(self.name, self._choices()))
        if self.kind == "int_uniform":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.q or 1)
            )
        if self.kind in ("uniform", "q_uniform"):
            raw = trial.suggest_float(self.name, self.low, self.high)
            return self._quantize(raw)
        if self.kind in _NORMALS:
            u = trial.suggest_float(self.name, _QUANTILE_EPS, 1 - _QUANTILE_EPS)
            return self._from_quantile(u)
        # The log families: low/high already hold the values (exponents were converted).
        return self._quantize(trial.suggest_float(self.name, self.low, self.high, log=True))

    def to_internal(self, value: Any) -> Any:
        """The value Optuna records for `value` (to enqueue known points)."""
        if self.kind == "categorical":
            return self._choices()[self.values.index(value)]
        if self.kind in _NORMALS:
            x = math.log(value) if self.kind.endswith("log_normal") else value
            u = NormalDist(self.mu, self.sigma).cdf(x)
            return min(max(u, _QUANTILE_EPS), 1 - _QUANTILE_EPS)
        return value

    def contains(self, value: Any) -> bool:
        """Whether a given point's value lies in this parameter's domain."""
        if self.kind in ("constant", "categorical"):
            return value in self.values
        if self.kind in _NORMALS:
            return isinstance(value, int | float) and (
                value > 0 or not self.kind.endswith("log_normal")
            )
        return isinstance(value, int | float) and self.low <= value <= self.high

    def distribution(self) -> Any:
        """The Optuna distribution this parameter samples from (None for a constant)."""
        from optuna import distributions as d

        if self.kind == "constant":
            return None
        if self.kind == "categorical":
            return d.CategoricalDistribution(self._choices())
        if self.kind == "int_uniform":
            return d.IntDistribution(int(self.low), int(self.high), step=int(self.q or 1))
        if self.kind in _NORMALS:
            return d.FloatDistribution(_QUANTILE_EPS, 1 - _QUANTILE_EPS)
        return d.FloatDistribution(
            self.low, self.high, log=self.kind not in ("uniform", "q_uniform")
        )

    def grid_values(self) -> list[Any] | None:
        """The finite set a grid search walks, or None when the domain is continuous."""
        if self.kind in ("constant", "categorical"):
            return list(self.values)
        if self.kind == "int_uniform":
            return list(range(int(self.low), int(self.high) + 1, int(self.q or 1)))
        if self.kind == "q_uniform" and self.q:
            steps = math.floor((self.high - self.low) / self.q + 1e-9)
            return [self._quantize(self.low + i * self.q) for i in range(steps + 1)]
        return None

    def extremes(self) -> list[Any]:
        """The values that bound what this parameter draws: its choices, or its range's ends
        as sampled (quantized: `q_uniform` 1..16 by 4 draws 0). Unbounded (normal): none."""
        if self.kind in ("constant", "categorical"):
            return list(self.values)
        if self.kind in _NORMALS:
            return []
        return [self._quantize(self.low), self._quantize(self.high)]

    def _choices(self) -> list[Any]:
        # Optuna's categorical choices must be None/bool/int/float/str; lists become JSON text.
        return [v if _is_primitive(v) else json.dumps(v) for v in self.values]

    def _decode(self, choice: Any) -> Any:
        return self.values[self._choices().index(choice)]

    def _quantize(self, x: float) -> Any:
        if self.q is None:
            return x
        y = round(x / self.q) * self.q
        return round(y) if self.is_int else y

    def _from_quantile(self, u: float) -> Any:
        x = NormalDist(self.mu, self.sigma).inv_cdf(u)
        if self.kind.endswith("log_normal"):
            x = math.exp(x)
        return self._quantize(x) if self.kind.startswith("q_") else x


def _is_primitive(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str)


class Space:
    """Compiled parameters, ordered so that every condition's parameter is drawn first."""

    def __init__(self, params: list[Param]) -> None:
        self.params = params
        self.by_name = {p.name: p for p in params}

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def tunable(self) -> list[Param]:
        return [p for p in self.params if p.kind != "constant"]

    def sample(self, trial: Any) -> dict[str, Any]:
        """One configuration drawn from an Optuna trial; inactive parameters are left out."""
        config: dict[str, Any] = {}
        for p in self.params:
            if p.active(config):
                config[p.name] = p.suggest(trial)
        return config

    def grid(self) -> list[dict[str, Any]]:
        """Every point of a finite space, conditions respected, each point once."""
        points: list[dict[str, Any]] = [{}]
        for p in self.params:
            values = p.grid_values() or []
            grown = []
            for point in points:
                if p.active(point):
                    grown += [{**point, p.name: v} for v in values]
                else:
                    grown.append(point)
            points = grown
        unique = {json.dumps(pt, sort_keys=True, default=str): pt for pt in points}
        return list(unique.values())

    def internal(self, point: dict[str, Any]) -> dict[str, Any]:
        """A point in Optuna's own values (for `enqueue_trial`); constants are not Optuna's."""
        return {
            k: self.by_name[k].to_internal(v)
            for k, v in point.items()
            if k in self.by_name and self.by_name[k].kind != "constant"
        }


# ---------------------------------------------------------------------------------------------
# Compiling and checking W&B entries


def infer_distribution(spec: ParamSpec) -> str | None:
    """As W&B infers it: `value` constant, `values` categorical, int bounds int_uniform."""
    if spec.distribution:
        return spec.distribution
    if spec.value is not None:
        return "constant"
    if spec.values is not None:
        return "categorical"
    if spec.min is not None or spec.max is not None:
        both_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (spec.min, spec.max))
        return "int_uniform" if both_int else "uniform"
    return None


def compile_space(
    parameters: dict[str, ParamSpec], problems: list[str], strategies_narrowed: bool = False
) -> Space:
    """Check every entry (adding to `problems`) and return the ordered space.
    `strategies_narrowed`: a `--set` changed the strategy's values, so a `when` on a strategy
    it left out is no mistake (that parameter is then never sampled)."""
    params = []
    for name, spec in parameters.items():
        param = _compile_param(name, spec, f"parameters.{name}", problems)
        if param is not None:
            params.append(param)
    names = [p.name for p in params]
    by_name = {p.name: p for p in params}
    for p in params:
        for c in p.conditions:
            if c.param not in parameters:
                problems.append(
                    f"parameters.{p.name}.when: unknown parameter `{c.param}`"
                    + did_you_mean(c.param, names)
                )
            elif c.param in by_name:
                _check_condition_values(p, c, by_name[c.param], problems, strategies_narrowed)
    _check_variants(params, problems)
    return Space(_order(params, problems))


def ever_sampled(parameters: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
    """The parameters some trial can sample. What a `--set` narrowing the strategies left out
    (a `when` on a strategy no longer searched, and what depends on such a parameter) would
    otherwise stay in spec.yaml, trials.csv and the report, as if it were searched."""
    space = compile_space(parameters, [], strategies_narrowed=True)
    kept: set[str] = set()
    for p in space.params:  # parents come first
        if all(_may_hold(c, space, kept) for c in p.conditions):
            kept.add(p.name)
    return {name: spec for name, spec in parameters.items() if name in kept}


def _may_hold(c: Condition, space: Space, kept: set[str]) -> bool:
    if c.param not in kept:
        return False
    parent = space.by_name[c.param]
    if parent.kind not in ("constant", "categorical", "int_uniform"):
        return True  # a continuous or quantized range: its ends may round past the grid
    return any((v in c.values) != c.negate for v in parent.grid_values() or [])


def _check_condition_values(
    p: Param, c: Condition, parent: Param, problems: list[str], strategies_narrowed: bool
) -> None:
    """A value the parent never takes (`strategy: lorra`): the parameter would silently never
    be sampled, or always be."""
    choices = parent.grid_values()
    if choices is None:
        return  # a continuous parent: any value is possible, if unlikely
    on_strategy = base_name(parent.name) == "strategy"
    if on_strategy and not all(c in STRATEGIES for c in choices):
        return  # a misspelt strategy has its own problem; a hint here would point at it
    for value in c.values:
        if on_strategy and strategies_narrowed and value in STRATEGIES:
            continue
        if value not in choices:
            shown = ", ".join(map(str, choices))
            problems.append(
                f"parameters.{p.name}.when: `{c.param}` never takes `{value}` (its values: "
                f"{shown}){did_you_mean(str(value), [str(v) for v in choices])}"
            )


def _check_variants(params: list[Param], problems: list[str]) -> None:
    """Variants of one parameter must never be active in the same trial."""
    groups: dict[str, list[Param]] = {}
    for p in params:
        groups.setdefault(base_name(p.name), []).append(p)
    for base, group in groups.items():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if not _exclusive(a, b):
                    problems.append(
                        f"parameters.{a.name}, parameters.{b.name}: both may set `{base}` in one "
                        "trial; give each a `when` on the same parameter with different values"
                    )


def _exclusive(a: Param, b: Param) -> bool:
    """Whether two parameters' conditions can never hold together (a common parameter must
    take values that the two conditions keep apart)."""
    return any(_apart(ca, cb) for ca in a.conditions for cb in b.conditions)


def _apart(ca: Condition, cb: Condition) -> bool:
    if ca.param != cb.param or (ca.negate and cb.negate):
        return False
    if ca.negate:
        ca, cb = cb, ca
    if cb.negate:  # `p in V` against `p not in W`: apart when W excludes all of V
        return all(v in cb.values for v in ca.values)
    return not any(v in cb.values for v in ca.values)


def _compile_param(name: str, spec: ParamSpec, key: str, problems: list[str]) -> Param | None:
    kind = infer_distribution(spec)
    if kind is None:
        problems.append(f"{key}: give `value`, `values`, or `min` and `max`")
        return None
    forms = [f for f, given in _forms(spec).items() if given]
    if len(forms) > 1:  # else one form would silently win over the other
        problems.append(f"{key}: give one of {' or '.join(forms)}, not both")
        return None
    if kind not in DISTRIBUTIONS:
        problems.append(f"{key}.distribution: unknown `{kind}`{did_you_mean(kind, DISTRIBUTIONS)}")
        return None
    before = len(problems)
    conditions = _parse_when(spec.when, f"{key}.when", problems)
    if kind == "constant":
        return Param(name, kind, values=(spec.value,), conditions=conditions)
    if kind == "categorical":
        if not spec.values:
            problems.append(f"{key}.values: must list at least one value")
            return None
        if spec.probabilities is not None and len(spec.probabilities) != len(spec.values):
            problems.append(f"{key}.probabilities: needs one weight per value")
        return Param(name, kind, values=tuple(spec.values), conditions=conditions)
    param = _compile_numeric(name, kind, spec, key, conditions, problems)
    return param if len(problems) == before else None


def _forms(spec: ParamSpec) -> dict[str, bool]:
    return {
        "`value`": spec.value is not None,
        "`values`": spec.values is not None,
        "`min`/`max`": spec.min is not None or spec.max is not None,
    }


def _compile_numeric(
    name: str,
    kind: str,
    spec: ParamSpec,
    key: str,
    conditions: tuple[Condition, ...],
    problems: list[str],
) -> Param | None:
    if spec.q is not None and spec.q <= 0:
        problems.append(f"{key}.q: must be > 0, got {spec.q}")
    if kind in _NORMALS:
        sigma = 1.0 if spec.sigma is None else spec.sigma
        if sigma <= 0:
            problems.append(f"{key}.sigma: must be > 0, got {sigma}")
        mu = 0.0 if spec.mu is None else spec.mu
        return Param(
            name,
            kind,
            q=spec.q or (1 if kind.startswith("q_") else None),
            mu=mu,
            sigma=sigma,
            conditions=conditions,
        )
    if spec.min is None or spec.max is None:
        missing = "min" if spec.min is None else "max"
        problems.append(f"{key}.{missing}: required by distribution `{kind}`")
        return None
    low, high = float(spec.min), float(spec.max)
    if low > high:
        problems.append(f"{key}: min {spec.min} > max {spec.max}")
        return None
    if kind == "int_uniform" and not (float(low).is_integer() and float(high).is_integer()):
        problems.append(f"{key}: int_uniform needs integer min and max, got {spec.min}, {spec.max}")
    if kind in _EXPONENT_FORMS:
        if 0 < low < high < 1 and high - low < _NARROWEST_EXPONENTS:
            problems.append(
                f"{key}: {kind} takes exponents (W&B's form): min {spec.min} and max "
                f"{spec.max} draw e^{spec.min}..e^{spec.max}, all within 1% of 1; for those "
                f"values use {kind}_values"
            )
        low, high = (
            (math.exp(-high), math.exp(-low))
            if kind.startswith("inv")
            else (math.exp(low), math.exp(high))
        )
    elif "log" in kind and low <= 0:
        problems.append(
            f"{key}.min: {kind} needs min > 0, got {spec.min}"
            " (W&B's `log_uniform` takes exponents; `log_uniform_values` takes values)"
        )
    q = spec.q if spec.q is not None else (1.0 if kind.startswith("q_") else None)
    param = Param(name, kind, low=low, high=high, q=q, conditions=conditions)
    ends = param.extremes()
    if q is not None and low < high and len(ends) == 2 and ends[0] == ends[1]:
        problems.append(
            f"{key}: q {q:g} rounds every draw of {spec.min}..{spec.max} to {ends[0]}; "
            "give a smaller `q` (W&B's default is 1)"
        )
    return param


_WHEN = re.compile(r"^\s*([\w.\-]+(?:@[\w.\-]+)?)\s*(==|!=|=|not in|in)\s*(.+?)\s*$")


def _parse_when(when: Any, key: str, problems: list[str]) -> tuple[Condition, ...]:
    if when is None:
        return ()
    if isinstance(when, dict):
        return tuple(
            Condition(str(k), False, tuple(v) if isinstance(v, list) else (v,))
            for k, v in when.items()
        )
    if isinstance(when, str):
        conditions = []
        for part in when.split(" and "):
            match = _WHEN.match(part)
            if not match:
                problems.append(
                    f"{key}: cannot read `{part}`; write `name == value` or "
                    "`name in [a, b]`, or a mapping {name: value}"
                )
                continue
            param, op, raw = match.groups()
            value = load_yaml(raw)
            values = tuple(value) if isinstance(value, list) else (value,)
            conditions.append(Condition(param, op in ("!=", "not in"), values))
        return tuple(conditions)
    problems.append(f"{key}: expected a mapping or a string, got {when!r}")
    return ()


def _order(params: list[Param], problems: list[str]) -> list[Param]:
    """Parameters sorted so that conditions refer only to earlier ones; cycles are problems."""
    by_name = {p.name: p for p in params}
    ordered: list[Param] = []
    placed: set[str] = set()
    pending = list(params)
    while pending:
        ready = [
            p
            for p in pending
            if all(c.param in placed or c.param not in by_name for c in p.conditions)
        ]
        if not ready:
            cycle = ", ".join(sorted(p.name for p in pending))
            problems.append(f"parameters: conditions form a cycle among {cycle}")
            return ordered + pending
        for p in ready:
            ordered.append(p)
            placed.add(p.name)
        pending = [p for p in pending if p.name not in placed]
    return ordered
