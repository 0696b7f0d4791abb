"""The entry points of the pool service: its root page (linked from the hub's Services
menu), the API's index of resources, and the API's OpenAPI document."""

from __future__ import annotations

from gpupool.templating import render

from .openapi import openapi_document
from .web import BaseHandler


class RootHandler(BaseHandler):
    def get(self) -> None:
        self.send(
            {
                "service": "gpupool",
                "openapi": "openapi.json",
                "links": [
                    "specs",
                    "datasets",
                    "trainings",
                    "reservations",
                    "nodes",
                    "health",
                    "alerts",
                    "metrics",
                ],
            }
        )


class IndexHandler(BaseHandler):
    """The service root, linked from the hub's Services menu."""

    auth_required = False

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        base = self.settings.get("prefix", "/")
        self.finish(render(self.ctx.catalog.directory, "gpupool/index.html", base=base))


class OpenApiHandler(BaseHandler):
    auth_required = False

    def get(self) -> None:
        self.send(openapi_document(self.settings.get("prefix", "/")))


default_handlers: list[tuple[str, type[BaseHandler]]] = [
    (r"/?", IndexHandler),
    (r"/api/?", RootHandler),
    (r"/api/openapi\.json", OpenApiHandler),
]
