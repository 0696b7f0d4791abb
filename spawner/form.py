"""The spawn page's spec cards and the validation of what a user chose (form or REST).

Pure code: the catalog, the user's groups and the pool's live availability go in,
the form's HTML (a Jinja2 template, gpupool/spawn_form.html) or a validated
(spec, image) comes out. Default-deny: anything not offered to this
user is refused with a message that lists what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .catalog.models import Catalog, Image, Spec
from .catalog.units import format_mib
from .templating import render

OPTION_KEYS = ("spec", "image")


class OptionsError(ValueError):
    """What the user chose is not allowed; the message says what is."""


def allowed_specs(catalog: Catalog, groups: Iterable[str], is_admin: bool = False) -> list[Spec]:
    return list(catalog.usable_specs("", groups, hub_admin=is_admin))


def validate_options(
    options: dict[str, Any] | None, catalog: Catalog, groups: Iterable[str], is_admin: bool = False
) -> tuple[Spec, Image]:
    """(spec, image) from user_options, or OptionsError naming what is allowed."""
    options = options or {}
    if not isinstance(options, dict):
        raise OptionsError("user_options must be an object with 'spec' and optionally 'image'")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise OptionsError(
            f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(OPTION_KEYS)}"
        )
    specs = allowed_specs(catalog, groups, is_admin)
    if not specs:
        raise OptionsError("no spec is open to you; ask a pool admin")
    slug = options.get("spec", specs[0].slug if len(specs) == 1 else None)
    spec = next((s for s in specs if s.slug == slug), None)
    if spec is None:
        what = "choose a spec" if slug is None else f"spec {slug!r} is not available to you"
        raise OptionsError(f"{what}; allowed: {', '.join(s.slug for s in specs)}")
    images = catalog.images_for(spec)
    if not images:
        raise OptionsError(f"spec {spec.slug} has no image in the catalog")
    name = options.get("image") or images[0].name
    image = next((i for i in images if i.name == name), None)
    if image is None:
        raise OptionsError(
            f"image {name!r} is not allowed with spec {spec.slug}; allowed: {', '.join(i.name for i in images)}"
        )
    return spec, image


def from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
    """Form fields to user_options: only the keys we know, one value each."""
    return {k: formdata[k][0] for k in OPTION_KEYS if formdata.get(k) and formdata[k][0]}


def spec_facts(spec: Spec, disk_enforced: bool = True) -> list[str]:
    facts = []
    if spec.gpus:
        model = "/".join(spec.gpu_models) if spec.gpu_models else "GPU"
        facts.append(f"{spec.gpus} × {model}" + ("" if spec.slice else " (whole)"))
        if spec.gpu_memory_mib:
            facts.append(f"{format_mib(spec.gpu_memory_mib)} GPU memory")
        if spec.gpu_sm_percent:
            facts.append(f"{spec.gpu_sm_percent} % of the SMs")
    else:
        facts.append("no GPU")
    cpu = f"{spec.cpu_millicores / 1000:g} CPU"
    if spec.cpu_reserved < spec.cpu_millicores:
        cpu = f"up to {cpu} ({spec.cpu_reserved / 1000:g} guaranteed)"
    facts.append(cpu)
    ram = f"{format_mib(spec.memory_mib)} RAM"
    if spec.memory_reserved < spec.memory_mib:
        ram = f"up to {ram} ({format_mib(spec.memory_reserved)} guaranteed)"
    facts.append(ram)
    if spec.disk_mib:
        facts.append(
            f"{format_mib(spec.disk_mib)} disk" + ("" if disk_enforced else " (not enforced here)")
        )
    return facts


def render_form(
    catalog: Catalog,
    specs: list[Spec],
    fits: dict[str, int],
    simulated: set[str] = frozenset(),  # type: ignore[assignment]
) -> str:
    """Spec cards with live availability and an image choice filtered by the spec
    (template gpupool/spawn_form.html, overridable from the catalog folder)."""
    first_free = next((s.slug for s in specs if fits.get(s.slug, 0) > 0), None)
    cards = [
        {
            "slug": s.slug,
            "display_name": s.display_name,
            "description": s.description,
            "facts": spec_facts(s, catalog.disk_enforced(s)),
            "price": f"{s.price_per_hour:.2f}",
            "fits": fits.get(s.slug, 0),
            "avail": f"{n} more fit now" if (n := fits.get(s.slug, 0)) > 0 else "none free now",
            "images": [i.name for i in catalog.images_for(s)],
            "checked": s.slug == first_free,
            "simulated": s.slug in simulated,
        }
        for s in specs
    ]
    images = [{"name": i.name, "description": i.description} for i in catalog.images]
    return render(
        catalog.directory,
        "gpupool/spawn_form.html",
        cards=cards,
        images=images,
        none_free=first_free is None,
    )
