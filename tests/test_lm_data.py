"""A causal LM learns from its texts as they are written: their line breaks kept, and its
training split in the file's order (the validation split is still a random carve)."""

from __future__ import annotations

from conftest import write_spec

from hpo.config import load_spec
from hpo.data import check_frames


def numbered_text(path, paragraphs: int) -> list[str]:
    texts = [f"Verse {i} opens here,   \n  and verse {i} ends here." for i in range(paragraphs)]
    path.write_text("\n\n".join(texts) + "\n")
    return texts


def lm_spec(tmp_path, model: str, train, extra: str = "") -> str:
    return write_spec(
        tmp_path / "lm.yaml",
        f"""
model: {{name_or_path: {model}}}
task: causal-lm
data: {{train: {train}, max_length: 16, validation_fraction: 0.25{extra}}}
""",
    )


def test_a_text_files_paragraphs_keep_their_lines_and_order(tmp_path, tiny_gpt2):
    numbered_text(tmp_path / "poem.txt", 40)
    spec = load_spec(lm_spec(tmp_path, tiny_gpt2, tmp_path / "poem.txt"), [f"storage={tmp_path}"])
    frames = check_frames(spec).frames
    train, validation = list(frames["train"]["text"]), list(frames["validation"]["text"])
    assert len(validation) == 10 and len(train) == 30
    assert "Verse 7 opens here,\n  and verse 7 ends here." in train + validation  # indented
    numbers = [int(t.split()[1].rstrip(",")) for t in train]
    assert numbers == sorted(numbers), numbers  # the file's order
    held_out = [int(t.split()[1].rstrip(",")) for t in validation]
    assert held_out != list(range(min(held_out), min(held_out) + 10))  # a random carve
    assert all(t.count("\n") == 1 and " \n" not in t for t in train)  # no trailing spaces


def test_the_training_cap_samples_rows_then_keeps_their_order(tmp_path, tiny_gpt2):
    numbered_text(tmp_path / "poem.txt", 40)
    path = lm_spec(tmp_path, tiny_gpt2, tmp_path / "poem.txt", ", max_train_samples: 12")
    frames = check_frames(load_spec(path, [f"storage={tmp_path}"])).frames
    numbers = [int(t.split()[1].rstrip(",")) for t in frames["train"]["text"]]
    assert len(numbers) == 12 and numbers == sorted(numbers)
    assert numbers[-1] - numbers[0] > 12  # sampled over the file, not its first 12 rows


def test_a_classifiers_texts_are_one_line_and_its_split_shuffled(tmp_path, tiny_bert):
    rows = [f'"review {i}\nsecond line",{"fresh" if i % 2 else "rotten"}' for i in range(40)]
    (tmp_path / "reviews.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    path = write_spec(
        tmp_path / "c.yaml",
        f"""
model: {{name_or_path: {tiny_bert}}}
data: {{train: {tmp_path / "reviews.csv"}, max_length: 16}}
""",
    )
    frames = check_frames(load_spec(path, [f"storage={tmp_path}"])).frames
    texts = list(frames["train"]["text"])
    assert all("\n" not in t for t in texts) and "review 0 second line" in texts + list(
        frames["validation"]["text"]
    )
    numbers = [int(t.split()[1]) for t in texts]
    assert numbers != sorted(numbers)  # shuffled: a capped sample is not the file's head


def test_a_run_prepared_by_an_earlier_hpo_is_told_apart_from_changed_files(tmp_path):
    """Its causal-LM examples were made otherwise (line breaks dropped, paragraphs shuffled):
    the fingerprint differs though the files did not change, and the message says so."""
    from types import SimpleNamespace

    import pytest

    from hpo.errors import SpecError
    from hpo.tuner import check_same_data, data_change

    now = SimpleNamespace(fingerprint="new0123456789abc")
    (tmp_path / "data.yaml").write_text("fingerprint: old0123456789abc\n")
    assert "made by an earlier hpo" in (data_change(str(tmp_path), now) or "")
    with pytest.raises(SpecError, match="resume it with the hpo it started with"):
        check_same_data(str(tmp_path), now)  # type: ignore[arg-type]
    (tmp_path / "data.yaml").write_text("preparation: 2\nfingerprint: old0123456789abc\n")
    assert "now hold other examples" in (data_change(str(tmp_path), now) or "")
    (tmp_path / "data.yaml").write_text("fingerprint: new0123456789abc\n")
    assert data_change(str(tmp_path), now) is None  # the same examples, however recorded
