"""A trial no node can hold is refused before the search starts, unless an autoscaler can add one.

Runs against the session's real local Ray (2 CPUs, no GPU). The autoscaler's node types are
written where Ray itself records them (its GCS key-value store, as a ClusterConfig message),
and read back through Ray, as on a cluster whose autoscaler reports its config.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from hpo.cluster import autoscaler_node_types, check_cluster_fits, say_concurrency, trial_slots
from hpo.errors import SpecError
from hpo.spec import ResourcesSpec


def spec(cpu: float = 1, gpu: float = 0, autoscale: bool = False, run_cap: int = 10) -> object:
    resources = ResourcesSpec(cpu=cpu, gpu=gpu, autoscale=autoscale)
    return SimpleNamespace(resources=resources, run_cap=run_cap, max_concurrent=None)


@pytest.fixture
def record_node_types(local_ray) -> Iterator:
    """Write the autoscaler's node groups into Ray's record; removed after the test."""
    import ray._raylet as raylet
    from ray.core.generated import autoscaler_pb2
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_put

    key = raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY
    namespace = raylet.GCS_AUTOSCALER_STATE_NAMESPACE

    def record(*groups: tuple[str, dict[str, int], int]) -> None:
        config = autoscaler_pb2.ClusterConfig()
        for name, resources, max_count in groups:
            group = config.node_group_configs.add(name=name, max_count=max_count)
            group.resources.update(resources)
        _internal_kv_put(key, config.SerializeToString(), namespace=namespace)

    yield record
    _internal_kv_del(key, namespace=namespace)


def test_an_alive_node_that_holds_the_trial_settles_it(local_ray, capsys):
    check_cluster_fits(spec(cpu=2))
    assert capsys.readouterr().err == ""


def test_a_trial_no_node_holds_is_refused_naming_the_key(local_ray):
    with pytest.raises(SpecError) as caught:
        check_cluster_fits(spec(gpu=1))
    (problem,) = caught.value.problems
    assert problem.startswith("resources: a trial asks for cpu=1, gpu=1")
    assert "largest node has cpu=2, gpu=0" in problem
    assert "resources.autoscale: true" in problem  # what to do on an autoscaling cluster
    with pytest.raises(SpecError, match="cpu=3"):
        check_cluster_fits(spec(cpu=3))


def test_the_users_word_that_the_cluster_autoscales_lets_the_trial_wait(local_ray, capsys):
    assert autoscaler_node_types() == {}  # Ray has no record here: the flag decides
    check_cluster_fits(spec(gpu=1, autoscale=True))
    assert "trials wait until the autoscaler adds one" in capsys.readouterr().err


def test_a_node_type_the_autoscaler_can_add_lets_the_trial_wait(record_node_types, capsys):
    record_node_types(("cpu-head", {"CPU": 2}, 1), ("gpu-workers", {"CPU": 8, "GPU": 1}, 4))
    assert autoscaler_node_types()["gpu-workers"].resources == {"CPU": 8.0, "GPU": 1.0}
    check_cluster_fits(spec(cpu=4, gpu=0.5))  # no flag needed: Ray knows the node types
    err = capsys.readouterr().err
    assert "autoscaler to add a node of type gpu-workers" in err


def test_the_autoscalers_node_types_refuse_a_trial_none_of_them_holds(record_node_types):
    # The flag does not override what Ray knows: no node type has 2 GPUs, and a group the
    # autoscaler may not grow (max 0) does not count.
    record_node_types(("gpu-workers", {"CPU": 8, "GPU": 1}, -1), ("big", {"CPU": 8, "GPU": 4}, 0))
    assert set(autoscaler_node_types()) == {"gpu-workers"}
    assert autoscaler_node_types()["gpu-workers"].max_count is None  # -1: no limit
    with pytest.raises(SpecError) as caught:
        check_cluster_fits(spec(gpu=2, autoscale=True))
    (problem,) = caught.value.problems
    assert "largest node type the autoscaler can add has cpu=8, gpu=1" in problem


def test_trials_at_once_count_the_nodes_the_autoscaler_can_add(record_node_types, capsys):
    assert trial_slots(spec(cpu=1)) == 2  # no record: the alive node's 2 CPUs
    say_concurrency(spec(cpu=1))
    assert "up to 2 trials at a time (what the nodes alive now hold;" in capsys.readouterr().err
    say_concurrency(spec(cpu=1), local=True)
    assert "(what this machine holds; max_concurrent sets it)" in capsys.readouterr().err
    assert say_concurrency(spec(cpu=1, run_cap=1), local=True) == 1  # one trial to start
    assert "up to 1 trial at a time (run_cap)" in capsys.readouterr().err
    # 4 GPU workers of 8 CPUs and 1 GPU, two trials each (cpu 4, gpu 0.5): 8 at once, which
    # is what makes the autoscaler add them; the alive node holds none of these trials.
    record_node_types(("cpu-head", {"CPU": 2}, 1), ("gpu-workers", {"CPU": 8, "GPU": 1}, 4))
    assert trial_slots(spec(cpu=4, gpu=0.5)) == 8
    assert say_concurrency(spec(cpu=4, gpu=0.5)) == 8  # the figure the tuner is given
    assert "up to 8 trials at a time (what the nodes the autoscaler" in capsys.readouterr().err
    assert trial_slots(spec(cpu=1)) == 2 + 4 * 8  # every type at its most, the alive head too
    record_node_types(("gpu-workers", {"CPU": 8, "GPU": 1}, -1))  # no limit: the whole search
    assert trial_slots(spec(cpu=4, gpu=0.5, run_cap=30)) == 30
