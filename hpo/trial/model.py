"""One trial's model: pretrained weights, sampled config fields, the fine-tuning strategy."""

from __future__ import annotations

from typing import Any

from hpo.spec import JobSpec


def model_class(task: str) -> Any:
    import transformers

    if task == "causal-lm":
        return transformers.AutoModelForCausalLM
    return transformers.AutoModelForSequenceClassification


def load_model(
    spec: JobSpec, label_names: list[str] | None, config_overrides: dict[str, Any]
) -> Any:
    import torch

    kwargs: dict[str, Any] = {**spec.model.config, **config_overrides}
    if label_names is not None:
        kwargs["num_labels"] = len(label_names)
        kwargs["id2label"] = dict(enumerate(label_names))
        kwargs["label2id"] = {name: i for i, name in enumerate(label_names)}
        # A checkpoint fine-tuned on other labels brings a head of another size: start it anew.
        kwargs["ignore_mismatched_sizes"] = True
    if spec.model.revision:
        kwargs["revision"] = spec.model.revision
    if spec.model.gguf_file:
        kwargs["gguf_file"] = spec.model.gguf_file
    model = model_class(spec.task).from_pretrained(
        spec.model.name_or_path, dtype=torch.float32, **kwargs
    )
    if spec.model.gguf_file:
        forget_gguf_quantization(model)
    if model.config.pad_token_id is None and model.config.eos_token_id is not None:
        eos = model.config.eos_token_id
        model.config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    return model


def forget_gguf_quantization(model: Any) -> None:
    """A GGUF checkpoint is dequantized to fp32 on load; without this the Trainer still sees
    a GGUF-quantized model and refuses to train it, and save_pretrained records a quantization
    the saved weights no longer have."""
    model.hf_quantizer = None
    for attr in ("is_quantized", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def apply_strategy(model: Any, task: str, recipe: dict[str, Any]) -> Any:
    """Full, frozen lowest blocks, head only, or LoRA; returns the model to train."""
    strategy = recipe.get("strategy", "full")
    if strategy == "full":
        return model
    if strategy == "lora":
        return _with_lora(model, task, recipe)
    base = model.base_model
    if strategy == "head":
        for p in base.parameters():
            p.requires_grad = False
        if not trainable_parameters(model):  # a head tied to the embeddings froze with them
            raise ValueError(
                "strategy head: this model's head shares its weights with the input "
                "embeddings, so nothing is left to train; use freeze or lora"
            )
        return model
    if strategy == "freeze":
        blocks = transformer_blocks(base)
        n = int(recipe.get("freeze.layers", len(blocks) // 2))
        for module in [_embeddings(base), *blocks[:n]]:
            for p in module.parameters():
                p.requires_grad = False
        return model
    raise ValueError(f"unknown strategy {strategy!r}")


def transformer_blocks(base: Any) -> list[Any]:
    """The stack of transformer blocks: the longest ModuleList inside the base model."""
    import torch

    lists: list[Any] = [m for m in base.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"no transformer blocks found in {type(base).__name__}")
    longest: Any = max(lists, key=len)
    return list(longest)


def _embeddings(base: Any) -> Any:
    import torch

    emb = base.get_input_embeddings()
    named = dict(base.named_children())
    # BERT-style models keep positions and layer norm beside the word embeddings.
    for name in ("embeddings", "wpe"):
        if name in named:
            return torch.nn.ModuleList([named[name], emb])
    return emb


def _with_lora(model: Any, task: str, recipe: dict[str, Any]) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    target = recipe.get("lora.target_modules")
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM if task == "causal-lm" else TaskType.SEQ_CLS,
        r=int(recipe.get("lora.r", 8)),
        # PEFT annotates an int; its scaling (alpha / r) takes any number.
        lora_alpha=_whole_if_whole(float(recipe.get("lora.lora_alpha", 16))),  # type: ignore[arg-type]
        lora_dropout=float(recipe.get("lora.lora_dropout", 0.0)),
        target_modules=target,
    )
    return get_peft_model(model, config)


def _whole_if_whole(x: float) -> float | int:
    """An alpha of 0.5 stays 0.5 (int() made it 0: a LoRA branch scaled to nothing)."""
    return int(x) if x.is_integer() else x


def trainable_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
