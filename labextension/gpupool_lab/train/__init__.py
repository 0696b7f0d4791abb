"""Trainings: the request and job documents (job), datasets as arrays (data) and the
runner that trains inside a trainer container (runner, the ``gpupool-train`` command)."""

from gpupool.job import HYPERPARAMETERS, JOB_FORMAT, TrainingError, check_graph, hyperparameters

__all__ = ["HYPERPARAMETERS", "JOB_FORMAT", "TrainingError", "check_graph", "hyperparameters"]
