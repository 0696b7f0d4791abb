"""What a user may choose at spawn (form or REST user_options): default-deny, with
messages that list what is allowed; and the spec cards the spawn page shows."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from gpupool.catalog import load_catalog
from gpupool.form import OptionsError, allowed_specs, from_form, render_form, validate_options

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog():  # type: ignore[no-untyped-def]
    return load_catalog(REPO / "hub_config")


def test_group_restricted_spec_only_for_its_group(catalog) -> None:  # type: ignore[no-untyped-def]
    plain = [s.slug for s in allowed_specs(catalog, [])]
    assert "a100-2x" not in plain and "a100-20g" in plain
    assert "a100-2x" in [s.slug for s in allowed_specs(catalog, ["gpu-power-users"])]
    assert "a100-2x" in [s.slug for s in allowed_specs(catalog, [], is_admin=True)]
    with pytest.raises(
        OptionsError, match="spec 'a100-2x' is not available to you; allowed: cpu-small, a100-10g"
    ):
        validate_options({"spec": "a100-2x"}, catalog, [])
    spec, image = validate_options({"spec": "a100-2x"}, catalog, ["gpu-power-users"])
    assert spec.slug == "a100-2x" and image.name == "lab"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"spec": "a100-20g", "env": {"LD_PRELOAD": "/x.so"}},
            "unknown option(s) env; allowed: spec, image",
        ),
        ({"spec": "a100-20g", "mounts": ["/:/host"]}, "unknown option(s) mounts"),
        ({"spec": "a100-20g", "privileged": True}, "unknown option(s) privileged"),
        (
            {"spec": "a100-20g", "image": "evil/image:latest"},
            "image 'evil/image:latest' is not allowed with spec a100-20g; allowed: lab",
        ),
        (
            {"spec": "a100-20g", "image": "lab-cpu"},
            "image 'lab-cpu' is not allowed with spec a100-20g",
        ),
        (
            {"spec": "nope"},
            "spec 'nope' is not available to you; allowed: cpu-small, a100-10g, a100-20g, a100-1x",
        ),
        ({}, "choose a spec; allowed:"),
    ],
)
def test_refused_options_say_what_is_allowed(catalog, options, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OptionsError) as e:
        validate_options(options, catalog, [])
    assert message in str(e.value)


def test_images_follow_the_spec(catalog) -> None:  # type: ignore[no-untyped-def]
    assert (
        validate_options({"spec": "cpu-small", "image": "lab-cpu"}, catalog, [])[1].name
        == "lab-cpu"
    )
    assert (
        validate_options({"spec": "a100-20g"}, catalog, [])[1].name == "lab"
    )  # default: first allowed


def test_form_fields_become_user_options() -> None:
    assert from_form({"spec": ["a100-20g"], "image": ["lab"], "LD_PRELOAD": ["/x.so"]}) == {
        "spec": "a100-20g",
        "image": "lab",
    }
    assert from_form({"spec": [""]}) == {}


class Cards(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.radios: list[dict[str, str | None]] = []
        self.labels: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = dict(attrs)
        if tag == "input" and a.get("name") == "spec":
            self.radios.append(a)
        if tag == "label" and "gpupool-card" in (a.get("class") or ""):
            self.labels.append(a.get("class") or "")


def test_cards_show_availability_and_grey_out_full_specs(catalog) -> None:  # type: ignore[no-untyped-def]
    specs = allowed_specs(catalog, [])
    html = render_form(
        catalog, specs, {"cpu-small": 0, "a100-10g": 3, "a100-20g": 1, "a100-1x": 0}, {"a100-20g"}
    )
    p = Cards()
    p.feed(html)
    by = {r["value"]: r for r in p.radios}
    assert list(by) == ["cpu-small", "a100-10g", "a100-20g", "a100-1x"]
    assert "disabled" in by["cpu-small"] and "disabled" in by["a100-1x"]
    assert "checked" in by["a100-10g"] and "disabled" not in by["a100-10g"]
    assert sum("full" in c for c in p.labels) == 2
    assert "3 more fit now" in html and "none free now" in html
    assert "20 GiB GPU memory" in html and "30 % of the SMs" in html and "0.90 / h" in html
    assert "simulated GPUs" in html
    full = render_form(catalog, specs, {})
    assert "No spec has free capacity right now" in full


def test_cards_escape_catalog_text(catalog) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    spec = dataclasses.replace(catalog.specs[0], display_name="<script>alert(1)</script>")
    html = render_form(catalog, [spec], {spec.slug: 1})
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_a_card_says_when_its_disk_is_not_enforced(catalog) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from gpupool.form import spec_facts

    spec = dataclasses.replace(catalog.specs[0], disk_mib=20 * 1024)
    assert not catalog.disk_enforced(spec)
    assert "20 GiB disk (not enforced here)" in spec_facts(spec, catalog.disk_enforced(spec))
    enforced = dataclasses.replace(
        catalog, nodes=tuple(dataclasses.replace(n, disk_quota=True) for n in catalog.nodes)
    )
    assert enforced.disk_enforced(spec)
    assert "20 GiB disk" in spec_facts(spec, True) and "not enforced" not in " ".join(
        spec_facts(spec, True)
    )


def test_a_card_shows_the_limit_and_the_guarantee(catalog) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from gpupool.form import spec_facts

    nb = next(s for s in catalog.specs if s.slug == "a100-20g")
    facts = spec_facts(nb)
    assert "up to 2 CPU (0.5 guaranteed)" in facts and "up to 8 GiB RAM (2 GiB guaranteed)" in facts
    hard = dataclasses.replace(nb, cpu_guarantee_millicores=None, memory_guarantee_mib=None)
    assert "2 CPU" in spec_facts(hard) and "8 GiB RAM" in spec_facts(hard)
