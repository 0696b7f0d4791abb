"""API of the resource specs: the specs a caller may use (observers: every one), each
with how many more fit on the pool right now. A spec the caller may not use answers 404,
the same as one that does not exist."""

from __future__ import annotations

from typing import Any

from gpupool.catalog.models import Catalog, Spec

from .openapi_parts import AUTH_ERRORS, ERR, json_answer, path_param, ref
from .patterns import ID_RE
from .web import ApiError, BaseHandler


def spec_json(spec: Spec, catalog: Catalog, fits: int) -> dict[str, Any]:
    return {
        "slug": spec.slug,
        "display_name": spec.display_name,
        "description": spec.description,
        "gpus": spec.gpus,
        "gpu_models": list(spec.gpu_models),
        "gpu_memory_mib": spec.gpu_memory_mib,
        "gpu_sm_percent": spec.gpu_sm_percent,
        "slice": spec.slice,
        "cpu_millicores": spec.cpu_millicores,
        "memory_mib": spec.memory_mib,
        "cpu_guarantee_millicores": spec.cpu_reserved,
        "memory_guarantee_mib": spec.memory_reserved,
        "disk_mib": spec.disk_mib,
        "price_per_hour": spec.price_per_hour,
        "groups": list(spec.groups),
        "images": [i.name for i in catalog.images_for(spec)],
        "kubernetes": spec.kubernetes_resources(),
        "fits_now": fits,
    }


class SpecsHandler(BaseHandler):
    async def get(self) -> None:
        specs = self.specs_for(self.caller)
        fits = await self.ctx.run(lambda: [self.ctx.ledger.fits_now(s) for s in specs])
        self.send(
            {"specs": [spec_json(s, self.ctx.catalog, f) for s, f in zip(specs, fits, strict=True)]}
        )


class SpecHandler(BaseHandler):
    async def get(self, slug: str) -> None:
        spec = next((s for s in self.specs_for(self.caller) if s.slug == slug), None)
        if spec is None:
            raise ApiError(404, f"no spec {slug!r}")
        fits = await self.ctx.run(self.ctx.ledger.fits_now, spec)
        self.send(spec_json(spec, self.ctx.catalog, fits))


default_handlers: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/specs", SpecsHandler),
    (rf"/api/specs/({ID_RE})", SpecHandler),
]

OPENAPI_PATHS: dict[str, Any] = {
    "/specs": {
        "get": {
            "summary": "Specs you may use, each with how many more fit right now",
            "responses": {
                "200": json_answer(
                    {
                        "type": "object",
                        "properties": {"specs": {"type": "array", "items": ref("Spec")}},
                    },
                    "specs",
                ),
                **AUTH_ERRORS,
            },
        }
    },
    "/specs/{slug}": {
        "get": {
            "summary": "One spec",
            "parameters": [path_param("slug")],
            "responses": {
                "200": json_answer(ref("Spec"), "the spec"),
                "404": json_answer(ERR, "no such spec for you"),
                **AUTH_ERRORS,
            },
        }
    },
}
