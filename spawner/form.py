"""The spawn page's spec cards and the validation of what a user chose (form or REST).

Pure code: the catalog, the user's groups and the pool's live availability go in,
HTML or a validated (spec, image) comes out. Default-deny: anything not offered to this
user is refused with a message that lists what is allowed.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any

from .catalog.models import Catalog, Image, Spec
from .catalog.units import format_mib

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
    facts.append(f"{spec.cpu_millicores / 1000:g} CPU")
    facts.append(f"{format_mib(spec.memory_mib)} RAM")
    if spec.disk_mib:
        facts.append(
            f"{format_mib(spec.disk_mib)} disk" + ("" if disk_enforced else " (not enforced here)")
        )
    return facts


CSS = """
<style>
.gpupool-specs{display:grid;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));gap:.75rem;margin:.5rem 0 1rem}
.gpupool-card{display:block;border:1px solid var(--bs-border-color,#ccc);border-radius:.5rem;padding:.75rem;cursor:pointer;margin:0}
.gpupool-card:has(input:checked){border-color:var(--bs-primary,#0d6efd);box-shadow:0 0 0 2px var(--bs-primary,#0d6efd)}
.gpupool-card.full{opacity:.5;cursor:not-allowed}
.gpupool-card .title{font-weight:600}
.gpupool-card .desc{font-size:.85em;color:var(--bs-secondary-color,#666);margin:.25rem 0}
.gpupool-card ul{padding-left:1.1rem;margin:.25rem 0;font-size:.9em}
.gpupool-card .foot{display:flex;justify-content:space-between;font-size:.85em;margin-top:.35rem}
.gpupool-card .sim{font-size:.75em;color:#a15c00}
</style>
"""

JS = """
<script>
(function(){
  var form = document.currentScript.closest('form') || document;
  function sync(){
    var chosen = form.querySelector('input[name=spec]:checked');
    if(!chosen) return;
    var ok = JSON.parse(chosen.getAttribute('data-images'));
    var sel = form.querySelector('select[name=image]');
    var first = null;
    Array.prototype.forEach.call(sel.options, function(o){
      var show = ok.indexOf(o.value) >= 0; o.hidden = !show; o.disabled = !show;
      if(show && first === null) first = o;
    });
    if(sel.selectedOptions.length === 0 || sel.selectedOptions[0].disabled){ if(first) first.selected = true; }
  }
  form.querySelectorAll('input[name=spec]').forEach(function(r){ r.addEventListener('change', sync); });
  sync();
})();
</script>
"""


def render_form(
    catalog: Catalog,
    specs: list[Spec],
    fits: dict[str, int],
    simulated: set[str] = frozenset(),  # type: ignore[assignment]
) -> str:
    """Spec cards with live availability and an image choice filtered by the spec."""
    e = html.escape
    first_free = next((s.slug for s in specs if fits.get(s.slug, 0) > 0), None)
    cards = []
    for s in specs:
        n = fits.get(s.slug, 0)
        images = [i.name for i in catalog.images_for(s)]
        facts = "".join(f"<li>{e(f)}</li>" for f in spec_facts(s, catalog.disk_enforced(s)))
        avail = f"{n} more fit now" if n > 0 else "none free now"
        sim = (
            '<div class="sim">simulated GPUs (demo node without GPU runtime)</div>'
            if s.slug in simulated
            else ""
        )
        cards.append(
            f'<label class="gpupool-card{" full" if n <= 0 else ""}" data-spec="{e(s.slug)}">'
            f'<input type="radio" name="spec" value="{e(s.slug)}" data-images="{e(json.dumps(images))}"'
            f"{' checked' if s.slug == first_free else ''}{' disabled' if n <= 0 else ''}> "
            f'<span class="title">{e(s.display_name)}</span>'
            f'<div class="desc">{e(s.description)}</div><ul>{facts}</ul>{sim}'
            f'<div class="foot"><span class="price">{s.price_per_hour:.2f} / h</span>'
            f'<span class="avail">{e(avail)}</span></div></label>'
        )
    options = "".join(
        f'<option value="{e(i.name)}">{e(i.name)}{" — " + e(i.description) if i.description else ""}</option>'
        for i in catalog.images
    )
    none_free = (
        ""
        if first_free
        else '<div class="alert alert-warning">No spec has free capacity right now. '
        "Starting anyway will tell you why each node is full.</div>"
    )
    return (
        CSS
        + none_free
        + f'<div class="gpupool-specs">{"".join(cards)}</div>'
        + f'<label for="gpupool-image">Image</label><select id="gpupool-image" name="image" class="form-select">{options}</select>'
        + JS
    )
