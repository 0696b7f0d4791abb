"""gpupool in the user's server: the pool API client, local metrics, the jupyter-server
extension (``gpupool.lab``) and the lab-side ``gpupool`` subcommands. The JupyterLab
extension (TypeScript, ``labextension/src``) talks to the server extension only: the
browser never holds a hub token."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "gpupool.lab"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "@gpupool/lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .serverext import load

    load(serverapp)
