"""Turns plain YAML data into the spec dataclasses, collecting every type and key problem.

A small, strict reader instead of a validation framework: its messages name the YAML key
(`parameters.learning_rate.min: expected a number, got 'abc'`) and unknown keys get a did-you-mean.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from typing import Any, Union

import yaml

from hpo.errors import did_you_mean

_MISSING = object()


class _SpecLoader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where `2e-5` (no dot) is a string; a spec means the number,
    also inside lists (`values: [2e-5, 3e-5]`) where no field type says so. And a key given
    twice is an error, where PyYAML keeps the last silently (a stale `run_cap` below an
    edited one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: SafeConstructor says so itself
            if seen is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"`{key}` is given twice (first at line {seen.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """YAML text as plain data, numbers in scientific notation read as floats."""
    return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass


def type_name(tp: Any) -> str:
    """A type as a message says it: `an integer`, `a list of a number`, `one of no, steps`."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        named = [type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        if "a number" in named and "an integer" in named:
            named.remove("an integer")  # an integer is a number
        return " or ".join(dict.fromkeys(named))
    if origin is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):  # TrainingArguments' choices
        return "one of " + ", ".join(str(m.value) for m in tp)
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


def _show(value: Any) -> str:
    if value is None:  # `key:` with no value in YAML, `--set key=`, `--storage ''`
        return "nothing (an empty value)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    """Value checked against type `tp`; on a mismatch a problem is added and None returned."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, path, problems)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path, problems)  # type: ignore[arg-type]
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{path}: expected {type_name(tp)}, got {_show(value)}")
            return None
        (item_tp,) = typing.get_args(tp)
        return list(
            _convert_items(item_tp, dict(enumerate(value)), path, "[{}]", problems).values()
        )
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {_show(value)}")
            return None
        args = typing.get_args(tp)
        item_tp = args[1] if args else Any
        named = {str(k): v for k, v in value.items()}
        return _convert_items(item_tp, named, path, ".{}", problems)
    return _convert_scalar(tp, value, path, problems)


def _convert_items(
    item_tp: Any, items: dict[Any, Any], path: str, where: str, problems: list[str]
) -> dict[Any, Any]:
    """Each item checked against `item_tp`, so that later checks meet no hole (a parameter
    that is None). An item that is not what it should be is a problem; it then stays, read in
    part or empty (a parameter, a metric, a point), so that checks naming it do not call it
    unknown and a list keeps its indices; a scalar is left out."""
    out = {}
    for key, value in items.items():
        before = len(problems)
        converted = convert(item_tp, value, path + where.format(key), problems)
        if _read(converted, before, problems):
            out[key] = converted
        elif (empty := _empty(item_tp)) is not None:
            out[key] = empty
    return out


def _read(converted: Any, problems_before: int, problems: list[str]) -> bool:
    """Was a value read, wholly (no new problem) or in part (a section or a container with
    some wrong keys or items)? A value that was not keeps its default, or stays out."""
    return len(problems) == problems_before or converted is not None


def _empty(tp: Any) -> Any:
    """An empty value of a section or container type (None for a scalar type)."""
    if dataclasses.is_dataclass(tp):
        return tp()  # type: ignore[operator]
    origin = typing.get_origin(tp)
    if origin is dict or tp is dict:
        return {}
    return [] if origin is list else None


def _convert_union(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    options = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None and len(options) < len(typing.get_args(tp)):
        return None
    for option in options:
        trial: list[str] = []
        converted = convert(option, value, path, trial)
        if not trial:
            return converted
    if len(options) == 1:
        return convert(options[0], value, path, problems)
    # A list form and a mapping form (metric: {...} or [{...}]): report against the form given.
    shaped = [o for o in options if isinstance(value, list) == (typing.get_origin(o) is list)]
    if len(shaped) == 1:
        return convert(shaped[0], value, path, problems)
    problems.append(f"{path}: expected {type_name(tp)}, got {_show(value)}")
    return None


def _convert_scalar(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads `1e-5` as a string; accept the numbers people write.
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    problems.append(f"{path}: expected {type_name(tp)}, got {_show(value)}")
    return None


def _mapping_hint(cls: type, raw: Any) -> str:
    """What the user likely meant by a scalar where a section goes (`metric: eval_loss`,
    `early_terminate: none`): the section's key that names it, or its `type: none`."""
    names = [f.name for f in dataclasses.fields(cls) if f.name in _NAMING_KEYS]
    if not names:
        return ""
    if names[0] == "type" and (raw is None or raw is False or raw in ("none", "off", "no")):
        return " (for none: `{type: none}`)"
    if isinstance(raw, str | int | float) and not isinstance(raw, bool):
        return f" (did you mean `{{{names[0]}: {raw}}}`?)"
    return ""


# The key that names what a section is, which a user may write as the section itself.
_NAMING_KEYS = ("type", "name", "name_or_path")


def build(cls: type, raw: Any, path: str, problems: list[str]) -> Any:
    """An instance of dataclass `cls` from mapping `raw`; unknown keys are problems."""
    if not isinstance(raw, dict):
        hint = _mapping_hint(cls, raw) if path else ""  # a whole file that is one value
        problems.append(f"{path or 'spec'}: expected a mapping, got {_show(raw)}{hint}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{path}." if path else ""
    for key in raw:
        if key not in fields:
            problems.append(f"{prefix}{key}: unknown key{did_you_mean(str(key), fields)}")
    kwargs = {}
    for name in fields:
        value = raw.get(name, _MISSING)
        if value is _MISSING:
            continue
        before = len(problems)
        converted = convert(hints[name], value, f"{prefix}{name}", problems)
        if _read(converted, before, problems):
            kwargs[name] = converted
    return cls(**kwargs)


def to_plain(obj: Any) -> Any:
    """Dataclasses to plain dicts without the unset (None) and empty fields: the spec as YAML."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = to_plain(getattr(obj, f.name))
            if value is None or value == {} or value == []:
                continue
            out[f.name] = value
        return out
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def field_help(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(key, help) for every field, nested sections flattened: the spec's reference."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        rows.append((key, f.metadata.get("help", "")))
        section = _section_type(hints[f.name])
        if section is not None and section.__name__ != "ParamSpec":
            rows += field_help(section, f"{key}.")
    return rows


def _section_type(tp: Any) -> type | None:
    """The dataclass a key holds, directly or as one of its forms (`metric`: one or a list)."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _section_type(arg)
        if found is not None:
            return found
    return None
