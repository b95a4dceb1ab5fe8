"""Tokenizer loading and the tokenization of each task's splits."""

from __future__ import annotations

from typing import Any

from hpo.spec import JobSpec, ModelSpec


def load_tokenizer(model: ModelSpec) -> Any:
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"revision": model.revision} if model.revision else {}
    if model.gguf_file:
        kwargs["gguf_file"] = model.gguf_file
    tokenizer = AutoTokenizer.from_pretrained(model.name_or_path, **kwargs)
    if tokenizer.pad_token is None:
        # Decoder tokenizers often have no pad token; padding reuses end-of-text (masked anyway).
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def tokenize_splits(
    frames: dict[str, Any], spec: JobSpec, tokenizer: Any, labels: list[str] | None
) -> dict[str, Any]:
    """Each split as an in-memory `datasets.Dataset` (pickles whole into Ray's object store)."""
    if spec.task == "causal-lm":
        return {k: _lm_blocks(f, spec, tokenizer, k) for k, f in frames.items()}
    return {k: _classification(f, spec, tokenizer, labels or []) for k, f in frames.items()}


def _classification(frame: Any, spec: JobSpec, tokenizer: Any, labels: list[str]) -> Any:
    from datasets import Dataset

    data = spec.data
    texts = frame[data.text_column].tolist()
    pairs = frame[data.text_pair_column].tolist() if data.text_pair_column else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=data.max_length)
    index = {name: i for i, name in enumerate(labels)}
    label_ids = [index[str(v)] for v in frame[data.label_column].tolist()]
    columns = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if "token_type_ids" in enc:
        columns["token_type_ids"] = enc["token_type_ids"]
    columns["labels"] = label_ids
    return Dataset.from_dict(columns)


def _lm_blocks(frame: Any, spec: JobSpec, tokenizer: Any, split: str) -> Any:
    """Concatenate the texts (end-of-text between them) and cut fixed-length blocks."""
    from datasets import Dataset

    from hpo.errors import SpecError

    size = spec.data.max_length
    sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    for row in tokenizer(frame[spec.data.text_column].tolist())["input_ids"]:
        ids += row + sep
    n_blocks = len(ids) // size
    if n_blocks == 0:
        raise SpecError(
            [f"data.{split}: {len(ids)} tokens make no block of data.max_length={size}"]
        )
    blocks = [ids[i * size : (i + 1) * size] for i in range(n_blocks)]
    return Dataset.from_dict(
        {"input_ids": blocks, "attention_mask": [[1] * size] * n_blocks, "labels": blocks}
    )
