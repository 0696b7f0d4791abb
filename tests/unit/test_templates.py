"""The pages and the spawn form are Jinja2 templates: every value is escaped, and a
deployer's templates/ in the catalog folder overrides any of them (and may extend the
built-in one under the name builtin/...). Rendered here without a hub; the pages
through the real hub and Chromium are in tests/integration/test_pages.py."""

from __future__ import annotations

import dataclasses
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from gpupool.catalog import load_catalog
from gpupool.form import allowed_specs, render_form
from gpupool.templating import BUILTIN, environment, render, search_path

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"
EVIL = """<script>alert("x")</script>' onmouseover="alert(1)"""
PAGE = dict(
    title="t", me=EVIL, hub="/hub/", base="/services/gpupool/", hub_admin=True, observe=True
)


class Tags(HTMLParser):
    """Every element and attribute the HTML has: a value that broke out would add one."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = Tags()
    p.feed(html)
    return p.tags


def views() -> dict[str, dict[str, Any]]:
    """Each page's values, with the hostile text wherever a user or the catalog names
    something."""
    notice = {"message": EVIL, "kind": "over-slice"}
    card = {"title": EVIL, "value": EVIL, "limit": EVIL, "left": EVIL, "share": "50", "full": True}
    gpu = {
        "index": 0,
        "title": EVIL,
        "segments": [{"owner": EVIL, "tip": EVIL, "width": "50.0", "color": "#0969da"}],
        "spark": {"points": "0,1 100,2", "n": 2},
        "live": EVIL,
    }
    node = {
        "name": "node-a",
        "state": "up",
        "drained": False,
        "health": EVIL,
        "labels": [(EVIL, EVIL)],
        "gpu_source": "agent",
        "simulated": True,
        "slice_problem": EVIL,
        "reserved_pct": "50",
        "opened": True,
        "filter": EVIL,
        "gpus": [gpu],
    }
    reservation = {
        "id": "r-1",
        "owner": EVIL,
        "spec": EVIL,
        "kind": "notebook",
        "server_name": EVIL,
        "node": "node-a",
        "gpus": EVIL,
        "notice": notice,
        "age": "1 min",
        "age_s": "60",
        "cost": 1.5,
        # where an SSH client came from is the server's report: the user's to make up
        "ssh": {"n": 1, "text": EVIL, "active": EVIL, "tip": EVIL},
    }
    alert = {"node": EVIL, "kind": EVIL, "message": EVIL, "severity": "critical"}
    return {
        "gpupool/usage.html": dict(
            PAGE,
            active="usage",
            month="2026-12",
            notices=[notice],
            quota_source=EVIL,
            cards=[card, {**card, "limit": None}],
            by_spec=[{"spec": EVIL, "hours": 1.0, "gpu_hours": 0.5, "cost": 2.0}],
            total={"hours": 1.0, "gpu_hours": 0.5, "cost": 2.0},
            held=[{"spec": EVIL, "kind": "notebook", "node": EVIL, "gpus": EVIL, "age": "1"}],
        ),
        "gpupool/dashboard.html": dict(
            PAGE,
            active="admin",
            admin=True,
            xsrf="",
            group="node",
            summary=[(EVIL, EVIL)],
            alerts=[alert],
            nodes=[node],
            reservations=[reservation],
            users=[{"name": EVIL, "n": 1, "gpus": 1, "mib": 1024, "memory": EVIL, "cost": 1.5}],
        ),
        "gpupool/error.html": dict(PAGE, active="", status=403, message=EVIL),
        "gpupool/index.html": {"base": "/services/gpupool/"},
    }


@pytest.mark.parametrize("name", sorted(views()))
def test_every_value_is_escaped(name: str) -> None:
    html = render(None, name, **views()[name])
    found = tags(html)
    # the hostile text never opens an element or an attribute of its own
    assert "<script>alert" not in html and 'onmouseover="alert' not in html
    assert not any("onmouseover" in a for _, a in found)
    if name != "gpupool/index.html":
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39; onmouseover=&#34;" in html


def test_the_pages_have_the_hubs_frame() -> None:
    html = render(None, "gpupool/usage.html", **views()["gpupool/usage.html"])
    links = {a.get("href") for t, a in tags(html) if t == "a"}
    assert {"/hub/home", "/hub/token", "/hub/admin", "/hub/logout"} <= links
    assert {"/services/gpupool/usage", "/services/gpupool/admin"} <= links
    sheets = [a.get("href") for t, a in tags(html) if t == "link" and a.get("rel") == "stylesheet"]
    assert sheets == ["/hub/static/css/style.min.css"]  # the hub's theme, light and dark
    assert "/hub/static/js/darkmode.js" in {a.get("src") for t, a in tags(html) if t == "script"}
    # not a hub admin, not an observer: no Admin and no Pool link
    plain = render(
        None,
        "gpupool/usage.html",
        **{**views()["gpupool/usage.html"], "hub_admin": False, "observe": False},
    )
    links = {a.get("href") for t, a in tags(plain) if t == "a"}
    assert "/hub/admin" not in links and "/services/gpupool/admin" not in links
    assert "/hub/home" in links and "/hub/logout" in links


def test_a_missing_value_is_an_error_not_a_blank() -> None:
    with pytest.raises(UndefinedError):
        render(None, "gpupool/error.html", **{**PAGE, "active": "", "status": 500})


@pytest.fixture
def overridden(tmp_path: Path) -> Path:
    """A catalog folder with templates/ that replaces the base page's navigation and
    extends the built-in usage page and spawn form."""
    shutil.copytree(FIXTURE, tmp_path / "catalog")
    t = tmp_path / "catalog" / "templates" / "gpupool"
    t.mkdir(parents=True)
    (t / "page.html").write_text(
        '{% extends "builtin/gpupool/page.html" %}\n'
        "{% block nav_bar_left_items %}{{ super() }}"
        '<li class="nav-item"><a class="nav-link" href="/wiki">Lab wiki</a></li>'
        "{% endblock %}\n"
    )
    (t / "usage.html").write_text(
        '{% extends "builtin/gpupool/usage.html" %}\n'
        '{% block main %}<p id="site-note">Questions: {{ me }}</p>{{ super() }}{% endblock %}\n'
    )
    (t / "spawn_form.html").write_text(
        '<p id="site-form">Our cards</p>{% include "builtin/gpupool/spawn_form.html" %}\n'
    )
    return tmp_path / "catalog"


@pytest.mark.parametrize(
    "name", ["gpupool/usage.html", "gpupool/dashboard.html", "gpupool/error.html"]
)
def test_a_deployers_folder_overrides_and_extends_the_built_in_ones(
    overridden: Path, name: str
) -> None:
    assert search_path(overridden) == [overridden / "templates", BUILTIN]
    html = render(str(overridden), name, **views()[name])
    assert '<a class="nav-link" href="/wiki">Lab wiki</a>' in html  # the base page's override
    assert '<a class="nav-link" href="/hub/home">Home</a>' in html  # with the hub's items kept
    if name == "gpupool/usage.html":
        assert '<p id="site-note">Questions: &lt;script&gt;' in html  # escaped there too
        assert 'id="by-spec"' in html  # the built-in page's content
    # without the folder: the built-in pages only
    assert "Lab wiki" not in render(None, name, **views()[name])


def test_the_spawn_form_is_overridden_and_escapes_catalog_text(overridden: Path) -> None:
    catalog = load_catalog(overridden)
    specs = allowed_specs(catalog, [])
    evil = dataclasses.replace(specs[0], display_name=EVIL, description=EVIL)
    html = render_form(catalog, [evil, *specs[1:]], {s.slug: 1 for s in specs})
    assert '<p id="site-form">Our cards</p>' in html and 'name="spec"' in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert not any("onmouseover" in a for _, a in tags(html))
    builtin = render_form(load_catalog(FIXTURE), specs, {})
    assert "site-form" not in builtin


def test_templates_are_found_by_their_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert environment(None).get_template("gpupool/page.html").filename.startswith(str(BUILTIN))


def test_a_node_of_simulated_gpus_says_so_on_the_dashboard() -> None:
    view = views()["gpupool/dashboard.html"]
    assert ">simulated</span>" in render(None, "gpupool/dashboard.html", **view)
    real = dict(view, nodes=[{**view["nodes"][0], "simulated": False}])
    assert ">simulated</span>" not in render(None, "gpupool/dashboard.html", **real)
