"""Every bundled spec is a test case: it validates, and its searcher and scheduler build."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.config import load_spec
from hpo.schedulers import make_scheduler
from hpo.search import make_searcher
from hpo.space import compile_space

SPECS = sorted((Path(__file__).resolve().parents[1] / "search_spaces").rglob("*.yaml"))


def test_there_are_bundled_specs():
    assert len(SPECS) >= 1


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bundled_spec_validates_and_builds(path, tmp_path):
    spec = load_spec(path, [f"storage={tmp_path}"])
    header = path.read_text().splitlines()[0]
    assert header.startswith("#"), "each bundled spec opens with a comment header"
    assert "hpo run" in path.read_text(), "the header shows the launch command"
    problems: list[str] = []
    space = compile_space(spec.parameters, problems)
    assert not problems
    searcher = make_searcher(spec, space)
    config = searcher.suggest("t0")
    assert config is not None and set(config) <= set(spec.parameters)
    make_scheduler(spec, max_t=4)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bundled_spec_builds_its_tuner(path, tmp_path, local_ray):
    from ray import tune

    from hpo.data import PreparedData
    from hpo.tuner import build_tuner

    spec = load_spec(path, [f"storage={tmp_path}"])
    # The data is the only neighbour stubbed: Hub datasets cannot load offline.
    data = PreparedData(
        train=list(range(64)),
        validation=[],
        test=None,
        label_names=["a", "b"],
        tokenizer=None,
        fingerprint="stub",
    )
    tuner = build_tuner(spec, data, "built", str(tmp_path / "built"), [], concurrency=3)
    assert isinstance(tuner, tune.Tuner)
    # The figure the search printed at its start, not a second count of the cluster.
    assert tuner._local_tuner._tune_config.max_concurrent_trials == 3
