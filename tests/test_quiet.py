"""What hpo's commands keep off the terminal: the trial table and hpo's lines are the display."""

from __future__ import annotations

import os
import subprocess
import sys

# transformers draws its GGUF conversion with tqdm itself, at every load of a .gguf model (the
# trials, the export): stands for it here.
BAR = """
from hpo.cli import _quiet_environment
_quiet_environment()
from tqdm.auto import tqdm
for _ in tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
    pass
"""


def test_library_progress_bars_are_not_drawn():
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    done = subprocess.run(
        [sys.executable, "-c", BAR], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "de-quantizing" not in done.stderr + done.stdout, done.stderr
