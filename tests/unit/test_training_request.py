"""Training requests checked against the catalog (pure): what is accepted, and for each
bad input a refusal that names the field and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from gpupool.catalog import load_catalog
from gpupool.graph.templates import mlp
from gpupool.job import TrainingError, hyperparameters
from gpupool.pool.trainings.request import QuotaRefusal, check_quota, check_request

IMAGES = {
    "images": [
        {"name": "lab", "reference": "gpupool/singleuser:latest"},
        {"name": "trainer", "reference": "gpupool/trainer:latest", "training": True},
        {
            "name": "trainer-cpu",
            "reference": "gpupool/trainer:latest",
            "training": True,
            "gpu": False,
            "slicing": False,
        },
    ]
}
GRAPH = mlp(inputs=64, hidden=32, classes=10).to_json()
NONE: frozenset[str] = frozenset()


@pytest.fixture
def catalog(catalog_dir: Path):  # type: ignore[no-untyped-def]
    (catalog_dir / "images.yaml").write_text(yaml.safe_dump(IMAGES))
    return load_catalog(catalog_dir)


def req(**kw):  # type: ignore[no-untyped-def]
    base = {"graph": GRAPH, "dataset": "digits", "spec": "a100-40g"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def refused(catalog, data, groups=NONE, admin=False) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(TrainingError) as e:
        check_request(data, catalog, groups=groups, is_admin=admin)
    return str(e.value)


def test_a_graph_training_with_defaults(catalog) -> None:  # type: ignore[no-untyped-def]
    sub = check_request(req(), catalog, groups=NONE, is_admin=False)
    assert (sub.kind, sub.spec.slug, sub.image, sub.dataset) == (
        "graph",
        "a100-40g",
        "trainer",
        "digits",
    )
    assert sub.name == "mlp" and sub.priority == 0 and sub.processes == 1
    assert sub.max_run_seconds == catalog.pool.trainings.default_run_time
    assert sub.body["hyperparameters"] == hyperparameters({})
    assert sub.body["graph"] == GRAPH
    # a CPU spec may use either training image; the first is the default
    cpu = check_request(req(spec="cpu-1"), catalog, groups=NONE, is_admin=False)
    assert cpu.image == "trainer" and cpu.processes == 1
    cpu = check_request(
        req(spec="cpu-1", image="trainer-cpu"), catalog, groups=NONE, is_admin=False
    )
    assert cpu.image == "trainer-cpu"


def test_a_two_gpu_spec_runs_two_processes(catalog) -> None:  # type: ignore[no-untyped-def]
    sub = check_request(
        req(spec="a100-2x"), catalog, groups=frozenset({"gpu-power-users"}), is_admin=False
    )
    assert sub.processes == 2


def test_a_command_training(catalog) -> None:  # type: ignore[no-untyped-def]
    sub = check_request(
        {"command": ["python", "train.py", "--fast"], "spec": "cpu-1", "name": "my run"},
        catalog,
        groups=NONE,
        is_admin=False,
    )
    assert sub.kind == "command" and sub.dataset is None and sub.name == "my run"
    assert sub.body["command"] == ["python", "train.py", "--fast"]


def test_malformed_graph_names_the_layer(catalog) -> None:  # type: ignore[no-untyped-def]
    bad = copy.deepcopy(GRAPH)
    next(n for n in bad["nodes"] if n["id"] == "fc2")["params"]["out_features"] = 0
    msg = refused(catalog, req(graph=bad))
    assert msg.startswith("graph: ") and "fc2" in msg and "out_features" in msg
    msg = refused(catalog, req(graph={"format": "gpupool.graph/1", "nodes": "x"}))
    assert "nodes: must be a list" in msg
    two_inputs = copy.deepcopy(GRAPH)
    two_inputs["nodes"].append({"id": "in2", "type": "Input", "params": {"shape": [3]}})
    two_inputs["nodes"].append({"id": "out2", "type": "Output", "params": {}})
    two_inputs["edges"].append({"from": "in2", "to": "out2"})
    assert "exactly one Input and one Output" in refused(catalog, req(graph=two_inputs))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            {"spec": "h100-80g"},
            "spec 'h100-80g' is not a spec you may use; allowed: cpu-1, a100-40g, a100-1x",
        ),
        ({"spec": None}, "spec is required; allowed:"),
        ({"spec": "a100-2x"}, "'a100-2x' is not a spec you may use"),  # group-restricted
        (
            {"dataset": "imagenet"},
            "dataset 'imagenet' is not in the catalog; allowed: digits, shared-scratch",
        ),
        ({"dataset": None}, "dataset is required to train a graph"),
        ({"dataset": "shared-scratch"}, "is other; a graph trains on numpy, csv, image-folder"),
        ({"image": "lab"}, "image 'lab' cannot run trainings on a100-40g; allowed: trainer"),
        ({"image": "trainer-cpu"}, "cannot run trainings on a100-40g; allowed: trainer"),
        (
            {"hyperparameters": {"epochs": 0}},
            "hyperparameters.epochs: must be an integer from 1 to 10000, got 0",
        ),
        (
            {"hyperparameters": {"learning_rate": "fast"}},
            "hyperparameters.learning_rate: must be a number",
        ),
        (
            {"hyperparameters": {"optimizer": "lion"}},
            "'lion' is not allowed; allowed: adam, adamw, sgd",
        ),
        (
            {"hyperparameters": {"lr": 0.1}},
            "hyperparameters: unknown lr; allowed: epochs, batch_size",
        ),
        ({"hyperparameters": [1]}, "hyperparameters: must be an object"),
        ({"priority": 5}, "priority: an integer from -10 to 0, got 5"),
        ({"priority": True}, "priority: an integer from -10 to 0"),
        ({"max_run_time": 10}, "max_run_time: seconds from 60 to 604800, got 10"),
        ({"name": "../../etc"}, "name: letters, digits"),
        ({"command": ["x"]}, "send either graph (a network to train) or command"),
        ({"mounts": ["/"]}, "unknown field(s) mounts; allowed: command, dataset, graph"),
        ({"env": {"LD_PRELOAD": "x"}}, "unknown field(s) env"),
    ],
)
def test_bad_input_is_refused_with_what_is_allowed(catalog, change, words) -> None:  # type: ignore[no-untyped-def]
    assert words in refused(catalog, req(**change))


def test_bad_commands(catalog) -> None:  # type: ignore[no-untyped-def]
    for cmd in ([], "python x.py", [""], ["a\0b"], ["x"] * 65):
        msg = refused(catalog, {"command": cmd, "spec": "cpu-1"})
        assert msg.startswith("command: ")


def test_admins_may_raise_priority(catalog) -> None:  # type: ignore[no-untyped-def]
    sub = check_request(req(priority=7), catalog, groups=NONE, is_admin=True)
    assert sub.priority == 7
    assert "from -10 to 10, got 11" in refused(catalog, req(priority=11), admin=True)


def test_a_spec_the_quota_can_never_allow_is_refused_at_once(catalog) -> None:  # type: ignore[no-untyped-def]
    spec = catalog.spec("a100-2x")
    with pytest.raises(QuotaRefusal) as e:
        check_quota(catalog, "ann", frozenset({"gpu-limited"}), spec)
    assert "over the quota of group gpu-limited: at most 1 GPU(s) at a time" in str(e.value)
    check_quota(catalog, "ann", frozenset(), spec)  # no quota: fine


def test_a_graphs_meta_is_capped(catalog) -> None:  # type: ignore[no-untyped-def]
    """The editor's free-form meta is stored with the training: 64 KiB of it at most."""
    ok = check_request(
        req(graph={**GRAPH, "meta": {"notes": "x" * 60_000}}), catalog, groups=NONE, is_admin=False
    )
    assert ok.body["graph"]["meta"]["notes"] == "x" * 60_000
    why = refused(catalog, req(graph={**GRAPH, "meta": {"notes": "x" * 70_000}}))
    assert why.startswith("graph.meta: the editor's view and notes take at most 65536 bytes")


def test_pool_admins_by_name_use_group_restricted_specs(catalog_dir: Path) -> None:
    """The one rule (Catalog.usable_specs): the form, the API and trainings agree."""
    (catalog_dir / "images.yaml").write_text(yaml.safe_dump(IMAGES))
    pool = yaml.safe_load((catalog_dir / "pool.yaml").read_text()) or {}
    pool["admins"] = {"users": ["root-of-pool"]}
    (catalog_dir / "pool.yaml").write_text(yaml.safe_dump(pool))
    cat = load_catalog(catalog_dir)
    restricted = next(s for s in cat.specs if s.groups)
    data = req(spec=restricted.slug, graph=None, dataset=None, command=["true"])
    assert f"{restricted.slug!r} is not a spec you may use" in refused(cat, data)
    sub = check_request(data, cat, groups=NONE, is_admin=False, user="root-of-pool")
    assert sub.spec.slug == restricted.slug
