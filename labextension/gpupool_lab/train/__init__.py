"""Trainings on the user side: datasets as arrays (data), the runner that trains inside a
trainer container (runner, the ``gpupool-train`` command) and ``gpupool train`` (cli). What a
training is (request, job document, states) is the shared ``gpupool.job``; its names are
also here."""

from gpupool.job import HYPERPARAMETERS, JOB_FORMAT, TrainingError, check_graph, hyperparameters

__all__ = ["HYPERPARAMETERS", "JOB_FORMAT", "TrainingError", "check_graph", "hyperparameters"]
