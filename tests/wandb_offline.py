"""Reads W&B offline run files (`run-*.wandb`): a LevelDB-style log of protobuf Records.

wandb no longer ships a reader in Python; the format is small: a 7-byte header (":W&B", magic,
version), then 32 KiB blocks of chunks (crc32 4, length 2, type 1, payload) that join into records.
"""

from __future__ import annotations

import glob
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", f"{path} is not a W&B log"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        payload = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = payload if kind in (FULL, FIRST) else pending + payload
        if kind in (FULL, LAST):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            out.append(rec)
            pending = b""
    return out


@dataclass
class OfflineRun:
    run_id: str
    group: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


def _value(item: Any) -> Any:
    return json.loads(item.value_json)


def read_run(path: str) -> OfflineRun:
    run: OfflineRun | None = None
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run = run or OfflineRun(r.run_id, r.run_group, r.display_name)
            for item in r.config.update:
                value = _value(item)
                run.config[item.key] = value.get("value") if isinstance(value, dict) else value
        elif kind == "config" and run is not None:
            for item in rec.config.update:
                value = _value(item)
                run.config[item.key] = value.get("value") if isinstance(value, dict) else value
        elif kind == "history" and run is not None:
            run.history.append(
                {i.key or "/".join(i.nested_key): _value(i) for i in rec.history.item}
            )
        elif kind == "summary" and run is not None:
            for item in rec.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = _value(item)
        elif kind == "exit" and run is not None:
            run.exit_code = rec.exit.exit_code
    assert run is not None, f"{path} holds no run record"
    return run


def read_runs(folder: str) -> list[OfflineRun]:
    """Every offline run under `folder` (a run directory or its wandb/ folder); a file whose
    run never opened (wandb.init refused it) holds no run record and is skipped."""
    paths = glob.glob(os.path.join(folder, "**", "offline-run-*", "run-*.wandb"), recursive=True)
    return [read_run(p) for p in sorted(paths) if _has_run_record(p)]


def _has_run_record(path: str) -> bool:
    return any(rec.WhichOneof("record_type") == "run" for rec in records(path))
