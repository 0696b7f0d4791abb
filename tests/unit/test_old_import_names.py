"""Names that moved in issue 21 still import, as the very same modules: notebooks in users'
homes say ``from gpupool.lab.graph.templates import mlp`` (the lab wrote that line into
every training notebook it made), and an agent may be configured with
``--nvml-module gpupool.agent.simulated``."""

from __future__ import annotations

import importlib

import pytest

import gpupool.graph
import gpupool.job
import gpupool.nvml.simulated
from gpupool.agent.app import AgentApp


@pytest.mark.parametrize("sub", ["compile", "layers", "model", "schema", "templates"])
def test_the_lab_graph_modules_are_the_graph_modules(sub):
    old = importlib.import_module(f"gpupool.lab.graph.{sub}")
    assert old is importlib.import_module(f"gpupool.graph.{sub}")


def test_a_notebook_written_before_still_runs():
    namespace: dict = {}
    exec("from gpupool.lab.graph.templates import mlp\ng = mlp()", namespace)
    from gpupool.graph.model import Graph

    assert isinstance(namespace["g"], Graph)  # one class, not a copy of it
    import gpupool.lab.graph

    assert gpupool.lab.graph is gpupool.graph
    assert gpupool.lab.graph.load is gpupool.graph.load


def test_the_lab_training_job_is_the_job_module():
    from gpupool.lab.train.job import TrainingError, hyperparameters

    assert hyperparameters is gpupool.job.hyperparameters
    assert TrainingError is gpupool.job.TrainingError


def test_the_agent_simulated_module_is_the_nvml_one():
    import gpupool.agent.simulated

    assert gpupool.agent.simulated is gpupool.nvml.simulated
    app = AgentApp(nvml_module="gpupool.agent.simulated")
    assert app.load_nvml() is gpupool.nvml.simulated
