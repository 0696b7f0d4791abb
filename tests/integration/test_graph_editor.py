"""The network-graph editor in a real JupyterLab (tests/support/lab.py: jupyter lab from
the test environment, the built @gpupool/lab, the gpupool.lab server extension), driven in
Chromium:

- a new graph from the launcher; a small CNN built by dragging layers from the palette
  and connecting ports with the mouse; shapes on the edges; a Linear put straight after
  a convolution is flagged with the reason, and fixing it (a Flatten between) clears it;
  a parameter edited in the form; undo; the file saved and reopened, equal to what Python
  infers from it;
- a malformed file (bad JSON, unknown layer) opens with its problems listed, not blank;
  a file the user cannot write opens read-only;
- in a notebook: GraphEditor's graph reaches Python after an edit on the canvas, and
  to_module() runs a forward pass with torch; DatasetPicker previews a home dataset and
  its value reaches Python; GpuMonitor draws this server's CPU.

Screenshots in .state/screenshots/graph-*.png.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpupool.graph import FORMAT, load, template
from tests.support.lab import BROWSER_ARGS, Lab

SHOTS = Path(__file__).resolve().parents[2] / ".state" / "screenshots"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab.in_temp() as lb:
        yield lb


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg = browser.new_page(viewport={"width": 1500, "height": 950})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
    PAGE_ERRORS[id(pg)] = errors
    try:
        yield pg
    finally:
        pg.close()
    assert not errors, errors


PAGE_ERRORS: dict[int, list[str]] = {}


def notebook7_own(error: str) -> bool:
    """An error Notebook 7.6 raises on its own: thrown in its core bundle, with no frame of
    ours (@gpupool/lab's bundle, or a widget's module, which anywidget loads as blob:).
    Seen: settings "reading 'schema'" (also with @gpupool/lab disabled) and
    "Command 'filebrowser:open-path' not registered" on its /edit page."""
    return "static/notebook/notebook_core" in error and not re.search(r"gpupool|blob:", error)


def node(page: Any, nid: str) -> Any:
    return page.locator(f".gp-graph .gp-node[data-id='{nid}']")


def drop_layer(page: Any, layer: str, x: float, y: float) -> None:
    """Drag a layer from the palette onto the canvas, at (x, y) in the canvas' box."""
    page.locator(f".gp-graph-palette-item[data-layer='{layer}']").drag_to(
        page.locator("[data-testid=graph-canvas]"), target_position={"x": x, "y": y}
    )


def wire(page: Any, src: str, dst: str, port: int = 0) -> None:
    """Drag from src's output dot to dst's input dot `port`, with the mouse."""
    out = node(page, src).locator(".gp-port-out").bounding_box()
    inp = node(page, dst).locator(f".gp-port-in[data-port='{port}']").bounding_box()
    page.mouse.move(out["x"] + out["width"] / 2, out["y"] + out["height"] / 2)
    page.mouse.down()
    page.mouse.move(inp["x"] + 2, inp["y"] + 2, steps=8)
    page.mouse.move(inp["x"] + inp["width"] / 2, inp["y"] + inp["height"] / 2, steps=2)
    page.mouse.up()


def edge_label(page: Any, src: str, dst: str) -> str:
    return page.locator(f".gp-edge-label[data-edge='{src}->{dst}']").text_content()


def set_param(page: Any, nid: str, key: str, value: str) -> None:
    node(page, nid).locator(".gp-node-title").click()
    field = page.locator(f"[data-testid=graph-inspector] [data-param='{key}']")
    field.fill(value)
    field.press("Enter")
    field.evaluate("e => e.dispatchEvent(new Event('change'))")


def summary(page: Any) -> str:
    return page.locator("[data-testid=graph-summary]").inner_text()


def test_build_a_cnn_by_dragging_fix_an_error_save_and_reopen(lab: Lab, page: Any) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    page.goto(lab.lab_url())
    page.locator(".jp-LauncherCard[title*='network graph']").first.click()
    expect(page.locator(".gp-graph .gp-node")).to_have_count(2, timeout=30_000)
    name = page.locator(".jp-mod-current .lm-TabBar-tabLabel").inner_text()
    assert re.fullmatch(r"untitled\d*\.gpgraph\.json", name), name

    # the input is 1x28x28; drop a Conv2d, a ReLU and a Linear and wire them in a chain
    drop_layer(page, "Conv2d", 300, 300)
    drop_layer(page, "ReLU", 500, 300)
    drop_layer(page, "Linear", 700, 300)
    expect(page.locator(".gp-graph .gp-node")).to_have_count(5)
    page.locator(".gp-fit").click()
    wire(page, "input", "conv2d1")
    wire(page, "conv2d1", "relu1")
    wire(page, "relu1", "linear1")
    wire(page, "linear1", "output")
    assert edge_label(page, "input", "conv2d1") == "(1, 28, 28)"
    assert edge_label(page, "conv2d1", "relu1") == "(16, 28, 28)"

    # a Linear straight after a convolution: flagged, with the reason and the fix
    expect(node(page, "linear1")).to_have_class(re.compile("gp-error"))
    node(page, "linear1").locator(".gp-node-title").click()
    reason = page.locator("[data-testid=node-error]").inner_text()
    assert "Linear expects (features) or (sequence, features), got (16, 28, 28)" in reason
    assert "Flatten" in reason
    assert "error" in summary(page)
    page.screenshot(path=str(SHOTS / "graph-error-flagged.png"))

    # fix it: a Flatten between the ReLU and the Linear (wiring replaces the old input)
    drop_layer(page, "Flatten", 600, 450)
    wire(page, "relu1", "flatten1")
    wire(page, "flatten1", "linear1")
    expect(node(page, "linear1")).not_to_have_class(re.compile("gp-error"))
    assert edge_label(page, "flatten1", "linear1") == "(12544,)"
    set_param(page, "linear1", "out_features", "10")
    # Conv2d(1, 16, 3, padding=1): 160; Linear(12544, 10): 125,450
    expect(page.locator("[data-testid=graph-summary]")).to_contain_text("125,610 parameters")
    assert "no errors" in summary(page)

    # undo the parameter change, redo it
    page.locator(".gp-undo").click()
    expect(page.locator("[data-testid=graph-summary]")).to_contain_text("803,040 parameters")
    page.locator(".gp-redo").click()
    expect(page.locator("[data-testid=graph-summary]")).to_contain_text("125,610 parameters")
    page.locator(".gp-layout").click()
    page.screenshot(path=str(SHOTS / "graph-cnn-built.png"))

    # save; the file is a graph Python loads, with the same count
    page.locator(".gp-graph").click(position={"x": 5, "y": 5})
    expect(page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")).to_have_count(1)
    page.keyboard.press("Control+s")
    dialog = page.locator(".jp-Dialog")
    with contextlib.suppress(PlaywrightTimeout):  # JupyterLab offers to rename untitled files
        dialog.wait_for(timeout=3000)
        dialog.locator(".jp-mod-accept").click()
    expect(page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")).to_have_count(0)
    path = lab.root / name
    saved = load(json.loads(path.read_text()))
    inf = saved.infer()
    assert inf.ok and inf.params == 125_610
    assert [e.to_json() for e in saved.inputs_of("linear1")] == [
        {"from": "flatten1", "to": "linear1"}
    ]

    # reopen: close the tab, open the file again from the file browser
    page.keyboard.press("Alt+w")
    expect(page.locator(".gp-graph")).to_have_count(0)
    page.locator(f".jp-DirListing-item[title*='{name}']").dblclick()
    expect(page.locator(".gp-graph .gp-node")).to_have_count(6, timeout=20_000)
    expect(page.locator("[data-testid=graph-summary]")).to_contain_text("125,610 parameters")
    page.screenshot(path=str(SHOTS / "graph-reopened.png"))


def test_malformed_files_show_their_problems_and_unwritable_ones_open_read_only(
    lab: Lab, page: Any
) -> None:
    from playwright.sync_api import expect

    lab.put("bad-json.gpgraph.json", '{"format": "gpupool.graph/1", "nodes": [')
    lab.put(
        "bad-layer.gpgraph.json",
        json.dumps({"format": FORMAT, "nodes": [{"id": "a", "type": "Nope"}], "edges": []}),
    )
    lab.put("locked.gpgraph.json", json.dumps(template("lenet").to_json()), read_only=True)

    page.goto(lab.lab_url("tree/bad-json.gpgraph.json"))
    problems = page.locator("[data-testid=graph-problems]")
    expect(problems).to_contain_text("not valid JSON", timeout=30_000)
    expect(problems).to_contain_text("bad-json.gpgraph.json is not a graph")

    page.goto(lab.lab_url("tree/bad-layer.gpgraph.json"))
    expect(problems).to_contain_text("nodes[0] (a).type: unknown layer 'Nope'", timeout=30_000)
    page.screenshot(path=str(SHOTS / "graph-malformed.png"))

    page.goto(lab.lab_url("tree/locked.gpgraph.json"))
    expect(page.locator(".gp-graph-banner")).to_contain_text("Read-only", timeout=30_000)
    expect(page.locator(".gp-graph.gp-readonly")).to_have_count(1)
    for control in (".gp-graph-template", ".gp-layout", ".gp-undo"):
        expect(page.locator(control)).to_be_disabled()
    before = (lab.root / "locked.gpgraph.json").read_text()
    # the palette is off; a drop that arrives anyway (a file dragged in) adds nothing
    page.locator(".gp-graph-palette-item[data-layer='ReLU']").click(force=True)
    page.locator("[data-testid=graph-canvas]").evaluate(
        """c => { const dt = new DataTransfer(); dt.setData('application/x-gpupool-layer', 'ReLU');
                  c.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true,
                                                        clientX: 400, clientY: 300})); }"""
    )
    expect(page.locator(".gp-graph .gp-node")).to_have_count(len(template("lenet").nodes))
    node(page, "fc1").locator(".gp-node-title").click()
    assert page.locator("[data-testid=graph-inspector] [data-param='out_features']").is_disabled()
    page.screenshot(path=str(SHOTS / "graph-read-only.png"))
    assert (lab.root / "locked.gpgraph.json").read_text() == before


def notebook(*cells: str) -> str:
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "metadata": {},
                    "source": c,
                    "outputs": [],
                    "execution_count": None,
                }
                for c in cells
            ],
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def npy_u8(shape: tuple[int, ...]) -> bytes:
    header = repr({"descr": "|u1", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    n = 1
    for d in shape:
        n *= d
    return (
        b"\x93NUMPY\x01\x00"
        + len(header).to_bytes(2, "little")
        + header
        + bytes(i * 7 % 256 for i in range(n))
    )


def run_cell(page: Any, index: int) -> None:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Shift+Enter")


def test_widgets_in_a_notebook_reach_python(lab: Lab, page: Any) -> None:
    from playwright.sync_api import expect

    lab.put("digits/images.npy", npy_u8((24, 8, 8)))
    lab.put(
        "widgets.ipynb",
        notebook(
            "from gpupool.lab.widgets import GraphEditor, DatasetPicker, GpuMonitor\n"
            "ed = GraphEditor(template='mlp', height=380)\ned",
            "import torch\nm = ed.to_module().eval()\ny = m(torch.randn(3, 784))\n"
            "print('forward', tuple(y.shape), ed.graph.infer().params)",
            "picker = DatasetPicker()\npicker",
            "print('picked', picker.value['name'], picker.value['source'])",
            "GpuMonitor()",
        ),
    )
    page.goto(lab.lab_url("tree/widgets.ipynb"))
    expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(5, timeout=30_000)
    # the kernel is up before the first cell runs (it starts slowly on a busy machine)
    expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=120_000)
    run_cell(page, 0)
    editor = page.locator(".jp-OutputArea .gp-graph")
    expect(editor.locator(".gp-node")).to_have_count(6, timeout=60_000)
    run_cell(page, 1)
    out = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea-output")
    expect(out).to_contain_text("forward (3, 10) 203530", timeout=60_000)

    # an edit on the canvas reaches Python: fc2 gives 5 outputs, the module follows
    set_param(page, "fc2", "out_features", "5")
    expect(editor.locator("[data-testid=graph-summary]")).to_contain_text("202,245 parameters")
    # keys on the canvas are the editor's, not the notebook's command-mode shortcuts
    node(page, "drop").locator(".gp-node-title").click()
    page.keyboard.press("Delete")
    expect(editor.locator(".gp-node")).to_have_count(5)
    page.keyboard.press("Control+z")
    expect(editor.locator(".gp-node")).to_have_count(6)
    expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(5)
    run_cell(page, 1)
    expect(out).to_contain_text("forward (3, 5) 202245", timeout=60_000)
    page.screenshot(path=str(SHOTS / "graph-notebook-widget.png"))

    # the picker: the home's array, previewed as images; the choice reaches Python
    run_cell(page, 2)
    item = page.locator(".gp-picker-item[data-key='home:digits/images.npy']")
    item.click(timeout=60_000)
    expect(page.locator("[data-testid=preview-images] img")).to_have_count(16, timeout=30_000)
    expect(page.locator(".gp-picker-detail")).to_contain_text("shape (24, 8, 8)")
    run_cell(page, 3)
    picked = page.locator(".jp-Notebook .jp-Cell").nth(3).locator(".jp-OutputArea-output")
    expect(picked).to_contain_text("picked digits/images.npy home", timeout=60_000)
    page.locator(".gp-picker").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "graph-dataset-picker.png"))

    # the monitor: this server's CPU, from the server extension's socket
    run_cell(page, 4)
    cpu = page.locator(".gp-monitor .gp-mon-cpu polyline")
    expect(cpu).to_have_attribute("points", re.compile(r"\d+(\.\d+)?,\d"), timeout=30_000)
    page.locator(".gp-monitor").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "graph-gpu-monitor.png"))


def test_notebook_7_runs_the_widget_and_opens_graph_files(lab: Lab, page: Any) -> None:
    """The same extension and widgets in Notebook 7 (its own shell, no launcher)."""
    from playwright.sync_api import expect

    lab.put(
        "nb7.ipynb",
        notebook(
            "from gpupool.lab.widgets import GraphEditor\ned = GraphEditor(template='lenet', height=380)\ned",
            "print('params', ed.graph.infer().params)",
        ),
    )
    lab.put("nb7.gpgraph.json", json.dumps(template("resnet").to_json()))
    page.goto(f"{lab.url}/notebooks/nb7.ipynb?token={lab.token}")
    expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(2, timeout=60_000)
    expect(
        page.locator(".jp-NotebookKernelStatus-fade, .jp-Notebook-ExecutionIndicator").first
    ).to_be_attached(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status') === 'idle'"
        ' || !!document.querySelector(\'[title*="Kernel Idle"], [data-status="idle"]\')',
        timeout=120_000,
    )
    run_cell(page, 0)
    editor = page.locator(".jp-OutputArea .gp-graph")
    expect(editor.locator(".gp-node")).to_have_count(len(template("lenet").nodes), timeout=60_000)
    set_param(page, "fc3", "out_features", "4")
    expect(editor.locator("[data-testid=graph-summary]")).to_contain_text("61,196 parameters")
    run_cell(page, 1)
    out = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea-output")
    expect(out).to_contain_text("params 61196", timeout=60_000)
    page.screenshot(path=str(SHOTS / "graph-notebook7-widget.png"))

    page.goto(f"{lab.url}/edit/nb7.gpgraph.json?token={lab.token}")
    expect(page.locator(".gp-graph .gp-node")).to_have_count(
        len(template("resnet").nodes), timeout=60_000
    )
    expect(page.locator("[data-testid=graph-summary]")).to_contain_text("38,378 parameters")
    page.screenshot(path=str(SHOTS / "graph-notebook7-file.png"))
    errors = PAGE_ERRORS[id(page)]
    errors[:] = [e for e in errors if not notebook7_own(e)]
