"""Trainings with real parts: two Docker engines started by the tests (pool nodes), the
trainer image (the single-user image plus the CPU PyTorch wheel), a real JupyterHub with
configurable-http-proxy and the pool service dispatching. No GPU in CI: the nodes declare
A100s and run no GPU runtime, so PyTorch trains on the CPU inside sliced containers.

- an MLP on scikit-learn's digits, submitted through the Python client (what the widget
  and the CLI call), trains in a trainer container to a test accuracy above 0.9 and leaves
  its model and checkpoints in the user's home volume; its GPUs are freed;
- two processes data-parallel (torchrun, gloo) in one container for a 2-GPU spec;
- cancel while running frees the GPUs; the maximum run time stops a training;
- the engine of the training's node loses power mid-training: the training resumes on the
  other node from its last checkpoint without repeating finished epochs, and the lost
  attempt's reservation is freed when the node answers again.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpupool.graph.templates import mlp
from gpupool.lab.client import PoolApi
from gpupool.lab.widgets import TrainingLauncher
from gpupool.localnode import export_digits
from tests.support.catalogs import write_engine_catalog
from tests.support.docker import Engine, ensure_docker_installed, start_engines
from tests.support.docker import stop_engines as stop_all
from tests.support.hub import Hub
from tests.support.images import ensure_image
from tests.support.reservations import reservation_state

pytestmark = [pytest.mark.docker, pytest.mark.hub]
pytest.importorskip("torch", reason="the digits export and the trainer image need it here")
TRAINER = "gpupool/trainer:latest"
SPECS = [
    {
        "slug": "a100-40g",
        "display_name": "A100 half",
        "gpus": 1,
        "gpu_model": "A100",
        "gpu_memory": "40GiB",
        "gpu_sm_percent": 50,
        "cpu": 1,
        "memory": "2GiB",
    },
    {
        "slug": "a100-2x",
        "display_name": "2 x A100",
        "gpus": 2,
        "gpu_model": "A100",
        "cpu": 2,
        "memory": "3GiB",
    },
]
POOL = {
    "health": {"probe_interval": 1, "down_after": 2, "reconcile_interval": 5},
    "trainings": {"poll_interval": 0.5, "requeue_after": 3, "per_user_running": 3},
}


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    ensure_docker_installed()
    engs = start_engines(["train-a", "train-b"])
    try:
        ensure_image(engs.values(), TRAINER, image="trainer")
        yield engs
    finally:
        stop_all(engs)


@pytest.fixture(scope="module")
def hub(engines: dict[str, Engine], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    d = write_engine_catalog(tmp_path_factory.mktemp("catalog"), engines, specs=SPECS)
    digits = export_digits(tmp_path_factory.mktemp("datasets") / "digits")
    for p in [digits.parent, digits, *digits.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # the container's user reads it
    (d / "datasets.yaml").write_text(
        yaml.safe_dump({"datasets": [{"name": "digits", "path": str(digits), "format": "numpy"}]})
    )
    (d / "images.yaml").write_text(
        yaml.safe_dump({"images": [{"name": "trainer", "reference": TRAINER, "training": True}]})
    )
    (d / "pool.yaml").write_text(yaml.safe_dump(POOL))
    h = Hub(d).start()
    try:
        yield h
    finally:
        h.cleanup()


@pytest.fixture(scope="module")
def client(hub: Hub) -> PoolApi:
    return PoolApi(hub.pool, hub.user_token("tess"), timeout=30)


def request(**hyper: Any) -> dict[str, Any]:
    return {
        "name": "digits-mlp",
        "graph": mlp(inputs=64, hidden=64, classes=10).to_json(),
        "dataset": "digits",
        "spec": "a100-40g",
        "hyperparameters": {"epochs": 3, "learning_rate": 0.01, **hyper},
    }


def wait(client: PoolApi, tid: str, done: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    t: dict[str, Any] = {}
    while time.monotonic() < deadline:
        t = client.training(tid)
        if done(t):
            return t
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s; last: {t}\n{client.training_logs(tid)}")


def home_files(engine: Engine, owner: str, folder: str) -> dict[str, int]:
    """Files under ``folder`` of the owner's home volume on a node: name -> size."""
    c = engine.client()
    box = c.containers.create(
        TRAINER, command=["true"], volumes={f"gpupool-home-{owner}": {"bind": "/home/jovyan"}}
    )
    try:
        stream, _ = box.get_archive(f"/home/jovyan/{folder}")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            return {m.name.split("/", 1)[-1]: m.size for m in tar if m.isfile()}
    finally:
        box.remove(force=True)


def test_mlp_on_digits_from_the_widget_trains_in_a_trainer_container(
    hub: Hub, engines: dict[str, Engine], client: PoolApi
) -> None:
    """Submitted with the TrainingLauncher widget's Python API (what its Submit button
    calls); the widget's own traits receive the metrics."""
    launcher = TrainingLauncher(
        graph=mlp(inputs=64, hidden=64, classes=10),
        dataset="digits",
        spec="a100-40g",
        epochs=3,
        learning_rate=0.01,
        api=client,
        poll_seconds=0.5,
    )
    assert {s["slug"] for s in launcher.specs} == {"a100-40g", "a100-2x"}
    assert [d["name"] for d in launcher.datasets] == ["digits"]
    tid = launcher.submit(follow=False)
    assert launcher.state == "queued" and launcher.training_id == tid
    t = launcher.wait(timeout=240)
    assert t["state"] == "succeeded", t
    assert [e["epoch"] for e in launcher.epochs] == [1, 2, 3]
    assert launcher.epochs[-1]["test_accuracy"] > 0.9
    assert len(launcher.steps) >= 60 and launcher.steps[-1][1] < launcher.steps[0][1]
    assert launcher.result is not None and "model.load_state_dict" in launcher.result["snippet"]
    assert "epoch 3/3" in launcher.log_tail
    t = client.training(tid)
    assert t["result"]["test_accuracy"] > 0.9
    assert t["message"].startswith("finished: test accuracy")
    epochs = client.training_metrics(t["id"], kinds="epoch")["records"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    steps = client.training_metrics(t["id"], kinds="step")["records"]
    assert len(steps) >= 3 * 20 and all(s["samples_per_s"] > 0 for s in steps)
    log = client.training_logs(t["id"])
    assert "epoch 3/3: train loss" in log and "GPUPOOL-METRIC" not in log
    files = home_files(engines[t["node"]], "tess", f"trainings/{t['id']}")
    for name in (
        "model.pt",
        "model.py",
        "load_model.py",
        "metrics.jsonl",
        "job.json",
        "checkpoints/epoch-0003.pt",
    ):
        assert name in files, sorted(files)
    # its GPUs are free again, its container is gone
    # released: gone by id (404), still listed with state=all
    listed = client.request("GET", "reservations", query={"state": "all"})["reservations"]
    res = next(x for x in listed if x["id"] == t["reservation"])
    assert res["state"] == "released" and res["kind"] == "training"
    assert (
        not engines[t["node"]]
        .client()
        .containers.list(all=True, filters={"label": f"io.gpupool.training={t['id']}"})
    )


def test_two_processes_data_parallel_in_one_container(client: PoolApi) -> None:
    req = request(epochs=2)
    req["spec"] = "a100-2x"
    t = client.submit_training(req)
    t = wait(client, t["id"], lambda x: x["state"] in ("succeeded", "failed"), 240, "finished")
    assert t["state"] == "succeeded", client.training_logs(t["id"])
    start = client.training_metrics(t["id"], kinds="start")["records"][0]
    assert start["processes"] == 2 and start["device"] == "cpu"
    assert t["result"]["test_accuracy"] > 0.85


def test_cancel_while_running_and_the_run_time_limit(client: PoolApi) -> None:
    limited = client.submit_training({**request(epochs=10_000), "max_run_time": 60})
    t = client.submit_training(request(epochs=10_000))
    wait(client, t["id"], lambda x: x["checkpoint_epoch"], 120, "a first checkpoint")
    done = client.cancel_training(t["id"])
    assert done["cancel_requested"] is True
    t = wait(client, t["id"], lambda x: x["state"] == "cancelled", 30, "cancelled")
    assert t["message"] == "cancelled by tess"
    assert reservation_state(client, t["reservation"]) == "released"
    lim = wait(
        client,
        limited["id"],
        lambda x: x["state"] != "running" and x["state"] != "queued" and x["state"] != "starting",
        150,
        "stopped by its run-time limit",
    )
    assert lim["state"] == "cancelled"
    assert lim["message"] == "stopped: it ran past its maximum run time of 1 min"


def test_a_command_training_runs_in_the_users_home(
    engines: dict[str, Engine], client: PoolApi
) -> None:
    """A command instead of a graph: it runs in the home folder, may report metrics with
    GPUPOOL-METRIC lines, and its exit status decides."""
    report = (
        'print("GPUPOOL-METRIC " + json.dumps({"kind": "epoch", "epoch": 1, "test_accuracy": 0.5}))'
    )
    ok = client.submit_training(
        {
            "spec": "a100-40g",
            "command": [
                "python",
                "-c",
                f"import json, os; {report}; "
                "open(os.environ['GPUPOOL_TRAINING_OUTPUT'] + '/out.txt', 'w').write(os.getcwd())",
            ],
        }
    )
    bad = client.submit_training(
        {"spec": "a100-40g", "command": ["python", "-c", "raise SystemExit(3)"]}
    )
    ok = wait(client, ok["id"], lambda x: x["state"] in ("succeeded", "failed"), 120, "finished")
    assert ok["state"] == "succeeded", client.training_logs(ok["id"])
    assert ok["kind"] == "command" and ok["name"] == "python"
    epochs = client.training_metrics(ok["id"], kinds="epoch")["records"]
    assert epochs[0]["test_accuracy"] == 0.5
    files = home_files(engines[ok["node"]], "tess", f"trainings/{ok['id']}")
    assert "out.txt" in files and files["out.txt"] == len("/home/jovyan")
    # the command's own failure: failed at once, not retried
    bad = wait(client, bad["id"], lambda x: x["state"] in ("succeeded", "failed"), 120, "ended")
    assert (bad["state"], bad["attempt"], bad["exit_code"]) == ("failed", 1, 3)
    assert bad["message"] == "python exited with status 3"


def test_a_hub_restart_mid_training_loses_nothing(hub: Hub, client: PoolApi) -> None:
    """The hub (and with it the pool service) stops while a training runs and starts
    again: the training goes on in its container and the pool picks it up where its
    database says, every epoch recorded once."""
    t = client.submit_training(request(epochs=12, batch_size=8, learning_rate=0.005))
    wait(client, t["id"], lambda x: (x["checkpoint_epoch"] or 0) >= 1, 180, "a first checkpoint")
    hub.stop()
    time.sleep(3)
    hub.start()
    t = wait(client, t["id"], lambda x: x["state"] in ("succeeded", "failed"), 300, "finished")
    assert t["state"] == "succeeded" and t["attempt"] == 1, client.training_logs(t["id"])
    epochs = [e["epoch"] for e in client.training_metrics(t["id"], kinds="epoch")["records"]]
    assert epochs == list(range(1, 13))


def test_engine_lost_mid_training_resumes_on_the_other_node(
    hub: Hub, engines: dict[str, Engine], client: PoolApi
) -> None:
    t = client.submit_training(request(epochs=25, batch_size=8, learning_rate=0.005))
    t = wait(client, t["id"], lambda x: (x["checkpoint_epoch"] or 0) >= 2, 180, "2 checkpoints")
    first_node = t["node"]
    other = next(n for n in engines if n != first_node)
    engines[first_node].power_off()
    try:
        t = wait(
            client,
            t["id"],
            lambda x: x["node"] == other and x["attempt"] == 2,
            90,
            "resumed on the other node",
        )
        t = wait(client, t["id"], lambda x: x["state"] in ("succeeded", "failed"), 300, "finished")
        assert t["state"] == "succeeded", client.training_logs(t["id"])
        resume = client.training_metrics(t["id"], kinds="resume")["records"]
        assert len(resume) == 1 and resume[0]["epoch"] >= 2 and resume[0]["attempt"] == 2
        epochs = [e["epoch"] for e in client.training_metrics(t["id"], kinds="epoch")["records"]]
        assert epochs == list(range(1, 26))  # each epoch once: none repeated, none missing
        attempts = client.training(t["id"])["attempts"]
        assert [a["node"] for a in attempts] == [first_node, other]
        assert attempts[0]["state"] == "superseded" and "down" in attempts[0]["reason"]
    finally:
        engines[first_node].restart()
    lost = attempts[0]["reservation"]

    def freed() -> bool:
        return reservation_state(client, lost) == "released"

    deadline = time.monotonic() + 60
    while not freed():
        assert time.monotonic() < deadline, "the lost attempt's reservation was not freed"
        time.sleep(1)


def test_browser_launch_from_the_widget_watch_the_curve_grow_and_cancel(
    hub: Hub, client: PoolApi
) -> None:
    """Chromium in a real JupyterLab whose kernels reach this hub's pool: the launcher's
    'Training' item opens a notebook with the widget; Submit; the loss curve grows;
    Cancel frees the GPUs. Screenshots in .state/screenshots/training-*.png."""
    import re

    from playwright.sync_api import expect, sync_playwright

    from tests.support.lab import BROWSER_ARGS, Lab

    shots = Path(__file__).resolve().parents[2] / ".state" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    env = {"GPUPOOL_API_URL": hub.pool, "GPUPOOL_API_TOKEN": client.token}
    with Lab.in_temp(env=env) as lab, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # JupyterLab's file browser shows "Directory not found" when one refresh of its
        # listing gets a 404 under load; that dialog is about the browser, not the widget,
        # and would swallow the clicks below: it is noted and closed whenever it shows.
        stray = page.locator(".jp-Dialog:has-text('Directory not found')")
        dialogs: list[str] = []

        def close_stray_dialog() -> None:
            dialogs.append(stray.inner_text())
            stray.locator(".jp-Dialog-button").last.click()

        page.add_locator_handler(stray, close_stray_dialog)
        try:
            page.goto(lab.lab_url())
            item = page.locator(".jp-LauncherCard[title^='Train a network on the pool']")
            item.click(timeout=90_000)
            widget = page.locator(".jp-OutputArea .gp-train")
            expect(widget).to_be_visible(timeout=120_000)  # the notebook ran its cell
            expect(widget.locator(".gp-train-spec option")).to_have_count(2, timeout=30_000)
            widget.locator(".gp-train-spec").select_option("a100-40g")
            epochs = widget.locator(".gp-train-epochs")
            epochs.fill("200")
            epochs.dispatch_event("change")
            widget.locator(".gp-train-batch-size").fill("16")
            widget.locator(".gp-train-batch-size").dispatch_event("change")
            page.screenshot(path=str(shots / "training-form.png"))
            widget.locator(".gp-train-submit").click()
            badge = widget.locator(".gp-train-badge")
            expect(badge).to_have_text(re.compile("queued|starting|running"), timeout=30_000)
            expect(badge).to_have_text("running", timeout=120_000)
            curve = widget.locator(".gp-train-loss polyline")
            expect(curve).to_have_attribute("points", re.compile(r"\d,\d"), timeout=120_000)
            expect(widget.locator(".gp-train-acc .gp-train-value")).to_contain_text(
                "epoch", timeout=120_000
            )
            first = len(curve.get_attribute("points").split())
            deadline = time.monotonic() + 60
            while len(curve.get_attribute("points").split()) <= first:
                assert time.monotonic() < deadline, "the loss curve did not grow"
                time.sleep(1)
            # the log shows its tail: the newest epoch line of 200, whichever it is by now
            expect(widget.locator(".gp-train-log")).to_contain_text(re.compile(r"epoch \d+/200"))
            page.screenshot(path=str(shots / "training-running.png"))
            tid = widget.locator("h4 span").first.inner_text().split("·")[-1].strip()
            widget.locator(".gp-train-cancel").click()
            expect(badge).to_have_text("cancelled", timeout=60_000)
            expect(widget.locator(".gp-train-msg")).to_have_text("cancelled by tess")
            page.screenshot(path=str(shots / "training-cancelled.png"))
            t = client.training(tid)
            assert t["state"] == "cancelled"
            assert reservation_state(client, t["reservation"]) == "released"
        finally:
            browser.close()
        if dialogs:
            print("closed JupyterLab's stray dialog:", dialogs)
        assert not errors, errors
