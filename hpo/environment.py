"""environment.yaml: the software a search ran with, in its run directory, and when it finished.

A search's numbers depend on the versions under it (a transformers release that changes a
default, a Ray upgrade that breaks a resume). The run directory records them once, when the
search starts, instead of each trial's W&B run listing every installed package (W&B's default
costs ~0.1 s of the driver's loop per trial). `hpo resume` compares them with what it runs on,
says which changed, and appends what it resumed with.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from typing import Any

import yaml

from hpo.results import write_text_atomic

ENV_FILE = "environment.yaml"
# What a search's results and resumability depend on, in the order a reader looks for them.
PACKAGES = (
    "hpo",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "ray",
    "optuna",
    "wandb",
)


def current() -> dict[str, str]:
    """This process's Python, platform and package versions ("absent" for one not installed)."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def record_start(run_dir: str) -> None:
    """Write environment.yaml for a new search (the driver's environment)."""
    _write(run_dir, {"started": _stamp(), "versions": current()})


def record_resume(run_dir: str) -> list[str]:
    """Append this resume's versions; returns one line per version that changed since the
    search started (nothing when it has no record: a run made before hpo wrote one)."""
    document = read(run_dir)
    if document is None:
        return []
    now = current()
    then = document.get("versions") or {}
    changed = [
        f"{name} {then[name]} -> {now.get(name, 'absent')}"
        for name in then
        if name != "platform" and then[name] != now.get(name, "absent")
    ]
    resumes = list(document.get("resumes") or [])
    resumes.append({"at": _stamp(), "versions": now})
    _write(run_dir, {**document, "resumes": resumes})
    return changed


def record_finish(run_dir: str) -> None:
    """Mark the search finished (results written, best model exported and scored): a later
    `hpo resume` then has nothing to do, and must not redo the export over a confirmed best."""
    document = read(run_dir) or {}
    _write(run_dir, {**document, "finished": _stamp()})


def finished_at(run_dir: str) -> str | None:
    """When the search finished, or None (still running, interrupted, or made before hpo
    recorded it: resuming those is how they finish)."""
    document = read(run_dir) or {}
    stamp = document.get("finished")
    return str(stamp) if stamp else None


def span_seconds(run_dir: str) -> float | None:
    """From the search's start to its finish, or None while either is unrecorded. Counts the
    time between an interruption and its resume too: the report uses it only for a search
    with no evaluation to time."""
    document = read(run_dir) or {}
    try:
        started, finished = (_parse(document[k]) for k in ("started", "finished"))
    except (KeyError, TypeError, ValueError):
        return None
    return (finished - started).total_seconds()


def read(run_dir: str) -> dict[str, Any] | None:
    """The record, or None where there is none to trust (absent, or edited into bad YAML): it
    informs, so it never stops a resume or a model card."""
    path = os.path.join(run_dir, ENV_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            document = yaml.safe_load(f)
    except yaml.YAMLError:
        return None
    return document if isinstance(document, dict) else None


def warn_if_changed(changed: list[str]) -> None:
    if changed:
        print(
            "hpo resume: running on other versions than the search started with ("
            + "; ".join(changed)
            + "); trials resumed now may not behave as the earlier ones did",
            file=sys.stderr,
        )


def _write(run_dir: str, document: dict[str, Any]) -> None:
    write_text_atomic(os.path.join(run_dir, ENV_FILE), yaml.safe_dump(document, sort_keys=False))


_STAMP = "%Y-%m-%d %H:%M:%S UTC"


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime(_STAMP)


def _parse(stamp: Any) -> datetime.datetime:
    return datetime.datetime.strptime(str(stamp), _STAMP)
