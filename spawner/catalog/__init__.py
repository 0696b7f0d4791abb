"""The catalogs in ``hub_config/``: specs, images, nodes, datasets and pool settings."""

from .folder import CatalogError, config_dir, starter_dir
from .load import load_catalog
from .models import Agent, Catalog, Dataset, Gpu, Image, Node, PoolSettings, Spec
from .units import format_mib, parse_size_mib

__all__ = [
    "Agent",
    "Catalog",
    "CatalogError",
    "Dataset",
    "Gpu",
    "Image",
    "Node",
    "PoolSettings",
    "Spec",
    "config_dir",
    "format_mib",
    "load_catalog",
    "parse_size_mib",
    "starter_dir",
]
