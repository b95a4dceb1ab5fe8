"""Load, clean, split and tokenize the data once per search, before Ray starts.

Trials receive the tokenized splits through Ray's object store, so no trial re-reads or
re-tokenizes anything. Problems with the data (a missing column, one label class, an empty file)
are SpecErrors that name the file and the key.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hpo.errors import SpecError
from hpo.paths import job_copy
from hpo.spec import DataSpec, JobSpec

_READERS = {
    ".csv": lambda p: pd.read_csv(p),
    ".tsv": lambda p: pd.read_csv(p, sep="\t"),
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".json": lambda p: _read_json(p),
    ".parquet": lambda p: pd.read_parquet(p),
    ".txt": lambda p: _read_text(p),
}
_COMPRESSION = (".bz2", ".gz", ".xz", ".zst")
# How hpo turns data files into examples, recorded in data.yaml: a run's fingerprint compares
# only with one made the same way. 2: a causal LM's texts keep their line breaks and order.
PREPARATION = 2
_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")  # a causal LM's texts keep their lines (_normalize_lines)


@dataclass
class PreparedData:
    """Tokenized splits plus what the report and the model card say about them."""

    train: Any
    validation: Any
    test: Any | None
    label_names: list[str] | None
    tokenizer: Any
    fingerprint: str
    stats: dict[str, int] = field(default_factory=dict)
    split_fingerprints: dict[str, str] = field(default_factory=dict)  # each split's own
    unit: str = "examples"  # what a split's count counts: a causal LM's are token blocks


def _read_json(path: str) -> pd.DataFrame:
    try:
        return pd.read_json(path, lines=True)
    except ValueError:
        return pd.read_json(path)


def _read_text(path: str) -> pd.DataFrame:
    import bz2
    import gzip
    import lzma

    opener = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(
        os.path.splitext(path)[1], open
    )
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:  # type: ignore[operator]
        # Paragraphs (blank-line separated) keep a text file's lines together.
        paragraphs = [p for p in re.split(r"\n\s*\n", f.read())]
    return pd.DataFrame({"text": paragraphs})


def read_table(path: str, key: str) -> pd.DataFrame:
    """A local data file as a DataFrame; unreadable files are SpecErrors naming them."""
    stem = path
    for ext in _COMPRESSION:
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    ext = os.path.splitext(stem)[1].lower()
    reader = _READERS.get(ext)
    if reader is None:
        kinds = ", ".join(_READERS)
        raise SpecError([f"{key}: cannot read `{path}`: unknown file type `{ext}` ({kinds})"])
    try:
        return reader(path)
    except Exception as err:  # pandas raises many types; the user needs the file and the reason
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SpecError([f"{key}: cannot read `{path}`: {reason}"]) from None


def load_frames(data: DataSpec) -> dict[str, pd.DataFrame]:
    """The splits the spec names, as DataFrames (train always; validation/test when given)."""
    if data.dataset is not None:
        return _load_hub(data)
    files = data.train if isinstance(data.train, list) else [data.train]
    frames = {"train": pd.concat([read_table(job_copy(f), "data.train") for f in files if f])}
    for split in ("validation", "test"):
        path = getattr(data, split)
        if path:
            frames[split] = read_table(job_copy(path), f"data.{split}")
    return frames


def _load_hub(data: DataSpec) -> dict[str, pd.DataFrame]:
    import datasets

    try:
        ds = datasets.load_dataset(data.dataset, data.config)
    except Exception as err:
        raise SpecError([f"data.dataset: cannot load `{data.dataset}`: {err}"]) from None
    names = {"train": data.train or "train", "validation": data.validation, "test": data.test}
    frames = {}
    for split, name in names.items():
        if name is None and split == "validation":
            name = next((n for n in ("validation", "dev", "valid") if n in ds), None)
        if name is None:
            continue
        if name not in ds:
            raise SpecError([f"data.{split}: split `{name}` not in {data.dataset}: {list(ds)}"])
        frames[split] = ds[name].to_pandas()
    return frames


def clean(
    frame: pd.DataFrame, data: DataSpec, key: str, stats: dict[str, int], keep_lines: bool = False
) -> pd.DataFrame:
    """Normalize whitespace (`keep_lines`: only trailing spaces and blank-line runs, as verse,
    code and dialogue need their lines and indentation), drop empty and duplicate texts;
    count what each step removed."""
    cols = [data.text_column] + ([data.text_pair_column] if data.text_pair_column else [])
    before = len(frame)
    frame = frame.copy()
    normalize = _normalize_lines if keep_lines else _normalize
    for col in cols:
        frame[col] = frame[col].astype("string").fillna("").map(normalize)
    frame = frame[(frame[cols] != "").all(axis=1)]
    stats[f"{key}_empty_removed"] = before - len(frame)
    n = len(frame)
    frame = frame.drop_duplicates(subset=cols)
    stats[f"{key}_duplicates_removed"] = n - len(frame)
    stats[f"{key}_rows"] = len(frame)
    return frame.reset_index(drop=True)


def _normalize(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _normalize_lines(text: str) -> str:
    """Trailing spaces and runs of blank lines go; indentation (code, verse) stays."""
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", lines).strip("\n").rstrip()


def check_columns(frames: dict[str, pd.DataFrame], spec: JobSpec) -> None:
    data = spec.data
    needed = [("text_column", data.text_column)]
    if data.text_pair_column:
        needed.append(("text_pair_column", data.text_pair_column))
    if spec.task == "sequence-classification" or data.labels:
        needed.append(("label_column", data.label_column))
    problems = []
    for split, frame in frames.items():
        source = _source(data, split)
        if len(frame) == 0:
            problems.append(f"data.{split}: `{source}` has no rows")
            continue
        for key, col in needed:
            if col not in frame.columns:
                cols = ", ".join(map(str, frame.columns))
                problems.append(f"data.{key}: `{col}` is not a column of `{source}` ({cols})")
    if problems:
        raise SpecError(problems)


def _source(data: DataSpec, split: str) -> str:
    if data.dataset:
        return f"{data.dataset}[{split}]"
    value = getattr(data, split)
    return ", ".join(value) if isinstance(value, list) else str(value)


def split_frames(
    frames: dict[str, pd.DataFrame], data: DataSpec, seed: int, keep_order: bool = False
) -> dict[str, pd.DataFrame]:
    """Carve validation (and test) from train with a seed when they are not given; the
    `max_*_samples` caps take a random sample. `keep_order`: each carved split keeps the
    file's order (a causal LM's blocks are cut from its texts as they follow each other, not
    from paragraphs in random order)."""
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(frames["train"]))
    picked: dict[str, np.ndarray] = {}
    for split, fraction in (("test", data.test_fraction), ("validation", data.validation_fraction)):
        if split in frames or fraction <= 0:
            continue
        n = max(1, round(len(rows) * fraction))
        if n >= len(rows):
            raise SpecError([f"data.{split}_fraction: leaves no training rows"])
        picked[split], rows = rows[:n], rows[n:]
    picked["train"] = rows
    caps = {"train": data.max_train_samples, "validation": data.max_eval_samples}
    out = dict(frames)
    for split, chosen in picked.items():
        chosen = chosen[: caps.get(split) or None]
        chosen = np.sort(chosen) if keep_order else chosen
        out[split] = frames["train"].iloc[chosen].reset_index(drop=True)
    if data.max_eval_samples and "validation" not in picked and "validation" in out:
        out["validation"] = out["validation"].iloc[: data.max_eval_samples]
    return out


def keep_labels(
    frames: dict[str, pd.DataFrame], data: DataSpec, stats: dict[str, int]
) -> dict[str, pd.DataFrame]:
    """Only the rows whose label `data.labels` lists (e.g. drop an `other` class)."""
    if not data.labels:
        return frames
    out = {}
    for split, frame in frames.items():
        keep = frame[data.label_column].astype(str).isin(data.labels)
        stats[f"{split}_other_labels_removed"] = int((~keep).sum())
        out[split] = frame[keep].reset_index(drop=True)
    return out


def label_names(frames: dict[str, pd.DataFrame], data: DataSpec) -> list[str]:
    """Label names: `data.labels` or the sorted labels of train; other splits add none."""
    col = data.label_column
    train = frames["train"]
    if data.labels:
        missing = set(data.labels) - set(train[col].astype(str))
        if missing:
            raise SpecError(
                [f"data.labels: {sorted(missing)} not found in `{_source(data, 'train')}`"]
            )
    if train[col].isna().any():
        raise SpecError(
            [f"data.label_column: `{col}` has empty labels in `{_source(data, 'train')}`"]
        )
    values = sorted(train[col].unique().tolist(), key=lambda v: (str(type(v)), v))
    if len(values) < 2:
        raise SpecError(
            [
                f"data.label_column: `{col}` has a single class {values!r} in "
                f"`{_source(data, 'train')}`; classification needs at least two"
            ]
        )
    names = list(data.labels) if data.labels else [str(v) for v in values]
    for split, frame in frames.items():
        unseen = set(frame[col].dropna().astype(str).unique().tolist()) - set(names)
        if unseen:
            raise SpecError([f"data.{split}: labels not seen in training: {sorted(unseen)}"])
    return names


def fingerprint(frames: dict[str, pd.DataFrame]) -> str:
    """A short hash of the cleaned splits: the model card says which data made the model."""
    h = hashlib.sha256()
    for split in sorted(frames):
        h.update(split.encode())
        h.update(pd.util.hash_pandas_object(frames[split], index=False).values.tobytes())
    return h.hexdigest()[:16]


@dataclass
class CheckedFrames:
    """The splits, cleaned and carved, with their label names: the data before tokenizing."""

    frames: dict[str, pd.DataFrame]
    labels: list[str] | None
    stats: dict[str, int]


def check_frames(spec: JobSpec) -> CheckedFrames:
    """Read, check and clean the data: every problem with it short of tokenizing (a missing
    column, one label class, nothing left after cleaning) is a SpecError here."""
    data = spec.data
    frames = load_frames(data)
    check_columns(frames, spec)
    stats: dict[str, int] = {}
    lm = spec.task == "causal-lm"
    frames = {k: clean(f, data, k, stats, keep_lines=lm) for k, f in frames.items()}
    frames = keep_labels(frames, data, stats)  # causal-lm too: an LM of some classes' texts
    for split, frame in frames.items():
        if len(frame) == 0:
            raise SpecError([f"data.{split}: no rows left after dropping empty texts"])
    frames = split_frames(frames, data, spec.seed, keep_order=lm)
    labels = label_names(frames, data) if spec.task == "sequence-classification" else None
    return CheckedFrames(frames, labels, stats)


def prepare(spec: JobSpec) -> PreparedData:
    """Everything trials need from the data, computed once."""
    from hpo.trial.tokenize import load_tokenizer, tokenize_splits

    checked = check_frames(spec)
    frames, labels, stats = checked.frames, checked.labels, checked.stats
    tokenizer = load_tokenizer(spec.model)
    tokenized = tokenize_splits(frames, spec, tokenizer, labels)
    for split in ("train", "validation", "test"):
        if split in tokenized:
            stats[f"{split}_examples"] = len(tokenized[split])
    return PreparedData(
        train=tokenized["train"],
        validation=tokenized["validation"],
        test=tokenized.get("test"),
        label_names=labels,
        tokenizer=tokenizer,
        fingerprint=fingerprint(frames),
        stats=stats,
        split_fingerprints={split: fingerprint({split: f}) for split, f in frames.items()},
        unit=data_unit(spec),
    )


def data_unit(spec: JobSpec) -> str:
    """What a split's count counts: a causal LM's are blocks of tokens, not texts."""
    return f"blocks of {spec.data.max_length} tokens" if spec.task == "causal-lm" else "examples"


def data_line(stats: dict[str, int], unit: str = "examples") -> str:
    """`data: 360 train, 40 validation examples; removed 3 empty texts and 2 duplicate texts
    from train`, from the stats keys `<split>_examples` and `<split>_<what>_removed` (a
    causal LM's `unit`: blocks of N tokens, which the row caps do not cap)."""
    sizes = ", ".join(
        f"{n} {k.removesuffix('_examples')}" for k, n in stats.items() if k.endswith("_examples")
    )
    removed: dict[str, list[str]] = {}
    for key, n in stats.items():
        if key.endswith("_removed") and n:
            split, what = key.removesuffix("_removed").split("_", 1)
            one, many = _REMOVED_AS.get(what, (what, what))
            removed.setdefault(split, []).append(f"{n} {one if n == 1 else many}")
    said = "; ".join(f"{_listed(items)} from {split}" for split, items in removed.items())
    return f"data: {sizes} {unit}; removed {said or 'nothing'}"


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


_REMOVED_AS = {  # what the cleaning step removed: (one, several)
    "empty": ("empty text", "empty texts"),
    "duplicates": ("duplicate text", "duplicate texts"),
    "other_labels": ("row with another label", "rows with other labels"),
}
