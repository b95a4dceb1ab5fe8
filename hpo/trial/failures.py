"""Which trial errors a restart cannot fix, and the error a trial raises instead of meeting one
again.

`retries` restarts a trial whose worker died (a lost node, a killed process, a GPU out of
memory beside other trials): the same configuration may well succeed on the next try. An error
the trial's own code raised for its configuration (an optimizer whose package the worker
lacks, a shape that does not fit) is met again by every restart, each one loading the model
first. Such a failure is recorded in Ray's key-value store, which every node of the cluster
reads, with the node it happened on; a restart on that node finds it and fails at once with
the first failure's traceback. A restart on another node runs: what a node lacks (bf16, a
kernel's package) raises these errors too.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

# What Python and the libraries raise for a configuration or a program that cannot work.
# RuntimeError (CUDA out of memory, NCCL, a device lost) and OSError (storage) are left to
# the retries: they depend on the moment and the machine.
DETERMINISTIC: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    NameError,
    ImportError,
    NotImplementedError,
    AssertionError,
    ArithmeticError,
)
NOT_RUN_AGAIN = "not run again on this node: a restart would meet the same error. First failure:"


class RepeatedFailure(Exception):
    """A restarted trial that had failed for good: its message ends with the first failure's
    traceback, so its last line is that failure's error, as trials.csv shows it."""


def fails_for_good(error: BaseException) -> bool:
    return isinstance(error, DETERMINISTIC)


def describe(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).rstrip()


def record(node: str, first_failure: str, earlier: str | None) -> str:
    """The failure record: the nodes it happened on, and the first failure's traceback."""
    document = _read(earlier) or {"nodes": [], "traceback": first_failure}
    document["nodes"] = sorted({*document["nodes"], node})
    return json.dumps(document)


def failure_on(node: str, recorded: str | None) -> str | None:
    """The recorded traceback when the failure happened on `node` (None otherwise, or for a
    record that does not read)."""
    document = _read(recorded)
    return document["traceback"] if document and node in document["nodes"] else None


def recorded_traceback(recorded: str | None) -> str | None:
    """The recorded failure's traceback, whatever its node; None without a record."""
    document = _read(recorded)
    return document["traceback"] if document else None


def _read(recorded: str | None) -> dict[str, Any] | None:
    try:
        document = json.loads(recorded or "")
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    nodes, text = document.get("nodes"), document.get("traceback")
    if not isinstance(nodes, list) or not isinstance(text, str):
        return None
    return {"nodes": nodes, "traceback": text}


def repeated(first_failure: str) -> RepeatedFailure:
    return RepeatedFailure(f"{NOT_RUN_AGAIN}\n{first_failure}")


def failure_key(search_key: str, trial_id: str) -> str:
    """Where a trial's failure for good is kept: under its search's key (`bar_key`), so that
    the driver clears a search's failures at its end and no other search reads them."""
    return f"{failures_of(search_key)}{trial_id}"


def failures_of(search_key: str) -> str:
    return f"{search_key}/failed/"
