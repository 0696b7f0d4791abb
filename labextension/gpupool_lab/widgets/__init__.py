"""Notebook widgets: ``GraphEditor``, ``DatasetPicker``, ``GpuMonitor``, ``TrainingLauncher``.

Custom widgets on anywidget, their JavaScript bundled into this package
(``static/*.js``, built by labextension/build.sh): nothing is fetched from a CDN at run
time, and they work in JupyterLab and Notebook 7 alike.

    from gpupool.lab.widgets import GraphEditor
    editor = GraphEditor(template="lenet")
    editor                      # edit on the canvas
    editor.graph.infer().params
    model = editor.to_module()  # a torch.nn.Module
"""

from .datasets import DatasetPicker
from .graph_editor import GraphEditor
from .monitor import GpuMonitor
from .trainer import TrainingLauncher

__all__ = ["DatasetPicker", "GpuMonitor", "GraphEditor", "TrainingLauncher"]
