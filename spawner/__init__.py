"""gpupool: a Jupyter-native GPU platform."""

__version__ = "0.1.0"
