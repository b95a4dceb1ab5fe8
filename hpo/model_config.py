"""A local model's config and module names, read without its weights, for the checks that
run before Ray starts (a config field a search sets, the blocks `freeze.layers` may freeze,
the modules LoRA may target). A GGUF model has no config.json: its config comes from the
GGUF file's metadata, as transformers reads it (a few seconds)."""

from __future__ import annotations

import functools
import json
import os
from typing import Any, NamedTuple

from hpo.spec import ModelSpec

# Where configs keep the number of transformer blocks (BERT/Llama, GPT-2, T5-style).
BLOCK_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def read_model_config(model: ModelSpec) -> dict[str, Any] | None:
    """The config of a local model folder as a mapping; None for a Hub id or an unreadable
    config (the trial then says what is wrong, in transformers' words)."""
    folder = model.name_or_path
    if not folder or not os.path.isdir(folder):
        return None
    source = os.path.join(folder, model.gguf_file or "config.json")
    if not os.path.isfile(source):
        return None
    config = _read(folder, model.gguf_file, os.path.getmtime(source))
    return dict(config) if config is not None else None  # the cached one stays as read


@functools.lru_cache(maxsize=8)
def _read(folder: str, gguf_file: str | None, _mtime: float) -> dict[str, Any] | None:
    if gguf_file:
        return _gguf_config(folder, gguf_file)
    try:
        with open(os.path.join(folder, "config.json")) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _gguf_config(folder: str, gguf_file: str) -> dict[str, Any] | None:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=gguf_file)
    except Exception:  # a GGUF this transformers cannot read: the trial will say why
        return None
    return dict(config.to_dict())


def block_count(config: dict[str, Any]) -> int | None:
    blocks = next((config[k] for k in BLOCK_COUNT_KEYS if k in config), None)
    return blocks if isinstance(blocks, int) else None


class Module(NamedTuple):
    name: str  # qualified: `bert.encoder.layer.0.attention.self.query`
    kind: str  # its class: Linear, BertAttention, ...
    adaptable: bool  # a layer LoRA can adapt (PEFT refuses the others)


def model_modules(config: dict[str, Any], task: str) -> list[Module]:
    """The modules of the task's model built from `config` on the meta device: structure
    only, no weights, no memory."""
    import torch
    from transformers import AutoConfig
    from transformers.pytorch_utils import Conv1D

    from hpo.trial.model import model_class

    adaptable = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, Conv1D)
    fields = {k: v for k, v in config.items() if k != "model_type"}
    model_config = AutoConfig.for_model(config["model_type"], **fields)
    with torch.device("meta"):
        model = model_class(task).from_config(model_config)
    return [
        Module(name, type(module).__name__, isinstance(module, adaptable))
        for name, module in model.named_modules()
        if name
    ]
