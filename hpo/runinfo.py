"""Reading a run directory back: its resolved spec and what it holds."""

from __future__ import annotations

import os
from typing import Any

import yaml

from hpo.config import parse_spec, read_yaml
from hpo.errors import SpecError
from hpo.spec import JobSpec

SPEC_FILE = "spec.yaml"
DATA_REPORT = "data.yaml"  # what the data held (its fingerprint), written at the start
DAMAGED_RECORD = "not the mapping hpo writes (edited or damaged?)"


def not_a_run_dir(path: str) -> str:
    """What is at `path`, where a run directory should be."""
    if os.path.isfile(path):
        return f"{path}: a file, not a run directory (give the folder `hpo run` printed)"
    return f"{path}: no such run directory"


def read_run_spec(run_dir: str) -> JobSpec:
    """The spec a search ran with (already resolved and checked when it started)."""
    path = os.path.join(run_dir, SPEC_FILE)
    if not os.path.isdir(run_dir):
        raise SpecError([not_a_run_dir(run_dir)])
    if not os.path.isfile(path):
        raise SpecError([f"{run_dir}: not a run directory (no {SPEC_FILE})"])
    problems: list[str] = []
    spec = parse_spec(read_yaml(path), problems)
    if problems or spec is None:
        raise SpecError(problems or ["unreadable spec"], source=path)
    return spec


def read_record(path: str) -> dict[str, Any] | None:
    """One of hpo's YAML records in a run directory (best.yaml, confirm.yaml): None when it is
    absent or empty, a SpecError naming the file when it is not a mapping."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            document = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError):
        document = ""
    if document is None:
        return None
    if not isinstance(document, dict):
        raise SpecError([f"{path}: {DAMAGED_RECORD}"])
    return document


def _data_record(run_dir: str) -> dict[str, Any]:
    """data.yaml as recorded; empty where there is none to compare with (a run directory
    from before data.yaml, or a damaged one)."""
    try:
        return read_record(os.path.join(run_dir, DATA_REPORT)) or {}
    except SpecError:
        return {}


def recorded_preparation(run_dir: str) -> int:
    """How the search's examples were made (data.yaml's `preparation`; 1 before hpo said)."""
    value = _data_record(run_dir).get("preparation", 1)
    return value if isinstance(value, int) else 1


def recorded_fingerprint(run_dir: str, split: str | None = None) -> str | None:
    """The fingerprint of the data the search started on (data.yaml), or of one of its splits;
    None where there is no record to compare with (a run directory from before data.yaml, or
    before it kept each split's, or a damaged one)."""
    record = _data_record(run_dir)
    if split is not None:
        splits = record.get("split_fingerprints")
        record = splits if isinstance(splits, dict) else {}
    fingerprint = record.get(split or "fingerprint")
    return str(fingerprint) if fingerprint else None
