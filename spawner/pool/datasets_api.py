"""API of the dataset catalog (hub_config/datasets.yaml): what every server finds mounted
under /datasets/<name>, read-only unless the catalog says otherwise. Any user of the pool
reads it; a name that is not in the catalog answers 404."""

from __future__ import annotations

from typing import Any

from gpupool.catalog.models import Dataset
from gpupool.container import DATASETS_ROOT

from .openapi_parts import AUTH_ERRORS, ERR, json_answer, path_param, ref
from .patterns import ID_RE
from .web import ApiError, BaseHandler


def dataset_json(d: Dataset) -> dict[str, Any]:
    return {
        "name": d.name,
        "description": d.description,
        "format": d.format,
        "read_only": d.read_only,
        "mount": f"{DATASETS_ROOT}/{d.name}",
    }


# BaseHandler.prepare has authenticated the caller (401 without a token, 403 without a
# gpupool scope) before these run
class DatasetsHandler(BaseHandler):
    async def get(self) -> None:
        self.send({"datasets": [dataset_json(d) for d in self.ctx.catalog.datasets]})


class DatasetHandler(BaseHandler):
    async def get(self, name: str) -> None:
        d = next((d for d in self.ctx.catalog.datasets if d.name == name), None)
        if d is None:
            raise ApiError(404, f"no dataset {name!r}")
        self.send(dataset_json(d))


default_handlers: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/datasets", DatasetsHandler),
    (rf"/api/datasets/({ID_RE})", DatasetHandler),
]

OPENAPI_PATHS: dict[str, Any] = {
    "/datasets": {
        "get": {
            "summary": "The dataset catalog: what every server finds under /datasets",
            "responses": {
                "200": json_answer(
                    {
                        "type": "object",
                        "properties": {"datasets": {"type": "array", "items": ref("Dataset")}},
                    },
                    "datasets",
                ),
                **AUTH_ERRORS,
            },
        }
    },
    "/datasets/{name}": {
        "get": {
            "summary": "One dataset",
            "parameters": [path_param("name")],
            "responses": {
                "200": json_answer(ref("Dataset"), "the dataset"),
                "404": json_answer(ERR, "no such dataset"),
                **AUTH_ERRORS,
            },
        }
    },
}
