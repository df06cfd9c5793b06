"""The viser viewer, driven over its websocket like a browser tab (no browser needed): camera
conventions, frame sizes, progressive and stale-dropping rendering, compare mode, the live
training callback, occupancy meshes, ports and bad input. Servers bind 127.0.0.1 only and every
wait is bounded."""

from __future__ import annotations

import math
import socket
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from neuralfields.config import defaults, overlay
from neuralfields.data.scenes import load_views
from neuralfields.device import autocast_dtype
from neuralfields.errors import NeuralFieldsError
from neuralfields.meshing.marching import extract_mesh
from neuralfields.meshing.mesh_io import PADDED_BOUNDS
from neuralfields.rendering.render import render_image
from neuralfields.runs import open_run
from neuralfields.training.loop import Callback
from neuralfields.training.nerf import NerfConfig, render_settings, train_nerf
from neuralfields.training.occupancy import train_occupancy
from neuralfields.viewer import LiveViewer, open_viewer
from neuralfields.viewer.cameras import (
    ViewCamera, camtoworld_from_viser, fov_from_focal, image_size, viser_pose_from_camtoworld,
)
from neuralfields.viewer.frames import (
    PREVIEW_STEP_FACTOR, RenderCancelled, compose_panels, panel_widths, render_nerf,
)
from neuralfields.viewer.models import wait_until
from neuralfields.viewer.progressive import ProgressiveRenderer
from neuralfields.viewer.server import free_port, pick_port
from neuralfields.viewer.tab import TabClient

TIMEOUT = 30.0
TINY_NERF = {
    "spec": "sine:1@30", "num_layers": 3, "width": 32, "skip_layer": 2, "color_width": 16, "xyz_freqs": 4,
    "dir_freqs": 2, "grid_resolution": 16, "grid_warmup_steps": 32, "render_step_size": 0.05,
    "target_samples": 4096, "init_rays": 256, "max_rays": 1024, "lr": 5e-3, "lr_final_ratio": 0.2,
    "adam_beta2": 0.99, "mixed_precision": False, "device": "cpu", "val_every": 10**6, "checkpoint_every": 10,
    "test_views": 1, "eval_chunk": 256, "video_frames": 0, "threads": 1,
}


def nerf_config(scene, tmp_path, **values) -> NerfConfig:
    return overlay(defaults(NerfConfig), {**TINY_NERF, "scene": str(scene), "output_root": str(tmp_path / "out"),
                                          **values}, "test")


@pytest.fixture(scope="module")
def nerf_runs(tiny_scene, tmp_path_factory):
    """Two tiny NeRF runs of the tiny scene (dense and sine rank 1), 20 steps each."""
    root = tmp_path_factory.mktemp("viewer_runs")
    runs = []
    for spec, seed in (("sine:1@30", 0), ("dense", 1)):
        run_dir, _ = train_nerf(nerf_config(tiny_scene, root, steps=20, spec=spec, seed=seed),
                                run_dir=root / spec.replace(":", "-").replace("@", "-"), progress=False)
        runs.append(run_dir)
    return runs


def test_viser_camera_convention_is_opencv_and_round_trips():
    """viser's identity rotation looks along +Z with image rows along +Y (OpenCV); our OpenGL
    camera for it must look along -Z_camera = +Z_world with +Y_camera = -Y_world."""
    c2w = camtoworld_from_viser((1.0, 0.0, 0.0, 0.0), (1.0, 2.0, 3.0))
    assert np.allclose(-c2w[:3, 2], [0, 0, 1]) and np.allclose(c2w[:3, 1], [0, -1, 0])
    assert np.allclose(c2w[:3, 0], [1, 0, 0]) and np.allclose(c2w[:3, 3], [1, 2, 3])
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.normal(size=4)
        pose = camtoworld_from_viser(q / np.linalg.norm(q), rng.normal(size=3))
        assert np.allclose(camtoworld_from_viser(*viser_pose_from_camtoworld(pose)), pose, atol=1e-12)
    assert image_size(64, 4 / 3) == (48, 64) and image_size(64, 0.5) == (64, 32)
    camera = ViewCamera.from_view(torch.eye(4), focal=30.0, height=24, width=24)
    assert camera.focal(24) == pytest.approx(30.0) and camera.focal(48) == pytest.approx(60.0)


def test_viewer_camera_at_a_test_pose_renders_what_evaluation_renders(nerf_runs, tiny_scene):
    """A tab whose camera is test view 0 (sent as viser sends it) gets evaluation's image."""
    run = open_run(nerf_runs[0])
    model = run.load_model("cpu")
    test = load_views(tiny_scene, "test")
    train = load_views(tiny_scene, "train")
    expected = render_image(model.field, model.path, test.camtoworlds[0], test.height, test.width, test.focal,
                            render_settings(run.config, train), chunk=run.config.eval_chunk)["rgb"].numpy()
    saved = np.asarray(Image.open(sorted((nerf_runs[0] / "test").glob("*.png"))[0]).convert("RGB"))
    assert np.abs(saved.astype(int) - np.round(expected * 255)).max() <= 1  # evaluation's own PNG

    viewer = open_viewer([nerf_runs[0]], port=free_port(), long_side=test.width, preview_long_side=test.width,
                         quiet=True)
    tab = None
    try:
        tab = TabClient(viewer.server.get_port())
        fov = fov_from_focal(test.focal, test.height)
        tab.send_camera(test.camtoworlds[0].numpy(), fov, 300, 300)
        assert wait_until(lambda: viewer.client_count == 1, TIMEOUT)
        session = next(iter(viewer.sessions.values()))
        camera = ViewCamera.from_handle(session.client.camera)  # what the server understood
        image, depth = session.render(camera, test.width)
        assert image.shape == (test.height, test.width, 3) and depth.shape == (test.height, test.width)
        assert np.abs(image.astype(np.float64) / 255 - expected).max() <= 0.5 / 255 + 1e-6
        # a wider canvas keeps the vertical fov: the middle of a 2:1 frame is the same image
        wide, _ = session.render(camera.with_aspect(2.0), 2 * test.width)
        assert wide.shape == (test.height, 2 * test.width, 3)
        middle = wide[:, test.width // 2: test.width // 2 + test.width]
        assert np.abs(middle.astype(np.float64) / 255 - expected).max() <= 0.5 / 255 + 1e-6
        # and through the wire (JPEG): the same picture up to compression
        shown = tab.wait_backgrounds(1)[-1]
        assert shown.shape == (test.height, test.width, 3)
        assert np.abs(shown.astype(float) - expected * 255).mean() < 6.0
        # the first camera of a tab is test view 0: the initial camera messages say so
        initial = {m["type"]: m for m in tab.messages if m.get("initial")}
        assert np.allclose(initial["SetCameraPositionMessage"]["position"], test.camtoworlds[0][:3, 3], atol=1e-5)
        look = np.asarray(initial["SetCameraLookAtMessage"]["look_at"]) - test.camtoworlds[0][:3, 3].numpy()
        assert np.allclose(look / np.linalg.norm(look), -test.camtoworlds[0][:3, 2].numpy(), atol=1e-5)
        assert initial["SetCameraFovMessage"]["fov"] == pytest.approx(fov)
    finally:
        if tab:
            tab.close()
        viewer.close()


def test_previews_march_a_longer_step_in_mixed_precision_and_still_frames_do_not(nerf_runs, tiny_scene,
                                                                                    monkeypatch):
    run = open_run(nerf_runs[0])
    model = run.load_model("cpu")
    settings = render_settings(run.config, load_views(tiny_scene, "train"))
    test = load_views(tiny_scene, "test")
    camera = ViewCamera.from_view(test.camtoworlds[0], test.focal, test.height, test.width)
    seen = []
    sampling = model.path.estimator.sampling

    def recording(*args, **kwargs):
        autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        seen.append((kwargs["render_step_size"], autocast))
        return sampling(*args, **kwargs)

    monkeypatch.setattr(model.path.estimator, "sampling", recording)
    frames = {}
    for preview in (False, True):
        seen.clear()
        frames[preview] = render_nerf(model.field, model.path, settings, camera, test.height, test.width,
                                      run.config.eval_chunk, cancelled=lambda: False, preview=preview).rgb
        step = settings.render_step_size * (PREVIEW_STEP_FACTOR if preview else 1.0)
        assert set(seen) == {(step, autocast_dtype(torch.device("cpu")) if preview else None)}
    assert not torch.is_autocast_enabled("cpu")  # left on exit
    assert 0.0 < np.abs(frames[True] - frames[False]).mean() < 0.05  # coarser, still the same picture


def test_frames_have_the_requested_size_small_first_and_tabs_are_independent(nerf_runs, tiny_scene):
    test = load_views(tiny_scene, "test")
    fov = fov_from_focal(test.focal, test.height)
    viewer = open_viewer([nerf_runs[0]], port=free_port(), long_side=48, preview_long_side=16, quiet=True)
    tabs = []
    try:
        tabs = [TabClient(viewer.server.get_port()), TabClient(viewer.server.get_port())]
        tabs[0].send_camera(test.camtoworlds[0].numpy(), fov, 300, 400)  # 4:3
        tabs[1].send_camera(test.camtoworlds[1].numpy(), fov, 400, 200)  # 1:2
        first = tabs[0].wait_backgrounds(2)
        assert [f.shape[:2] for f in first[:2]] == [(12, 16), (36, 48)]  # preview, then the chosen size
        second = tabs[1].wait_backgrounds(2)
        assert second[-1].shape[:2] == (48, 24)
        assert wait_until(lambda: viewer.client_count == 2, TIMEOUT)
        # the resolution slider of one tab changes only that tab's frames
        session = next(s for s in viewer.sessions.values() if s.renderer.camera.aspect > 1)
        session.resolution.value = 32
        assert wait_until(lambda: any(b.shape[:2] == (24, 32) for b in tabs[0].backgrounds()), TIMEOUT)
        assert all(b.shape[:2] != (24, 32) for b in tabs[1].backgrounds())
        # render modes: depth and opacity differ from RGB
        images = {}
        for mode in ("RGB", "depth", "opacity"):
            session.mode = mode
            images[mode] = session.render(session.renderer.camera, 32)[0]
        assert not np.array_equal(images["RGB"], images["depth"]) and not np.array_equal(images["RGB"],
                                                                                          images["opacity"])
        # save PNG: into the run folder's viewer/
        session.mode = "RGB"
        path = session.save_png()
        assert path.parent == nerf_runs[0] / "viewer" and Image.open(path).size == (32, 24)
        readout = session.readout.content
        assert "sine:1@30" in readout and "% of dense" in readout and "step 20" in readout and "dB" in readout
        assert "ms" in readout
    finally:
        for tab in tabs:
            tab.close()
        viewer.close()


def test_stale_cameras_are_dropped_and_a_frame_in_progress_is_abandoned():
    shown, started = [], []

    def render(camera, long_side, cancelled, interactive, preview):  # 60 ms frames that ignore `cancelled`
        started.append((camera.fov_y, long_side, preview))
        time.sleep(0.06)
        return camera.fov_y

    renderer = ProgressiveRenderer(render, lambda result, info: shown.append((result, info.preview)),
                                   long_side=64, preview_long_side=16, settle_s=0.05)
    try:
        for index in range(20):  # a drag: 20 updates in ~40 ms
            renderer.set_camera(ViewCamera(np.eye(4), 0.1 + index, 1.0))
            time.sleep(0.002)
        assert wait_until(lambda: shown and shown[-1] == (19.1, False), TIMEOUT)
        time.sleep(0.2)
        # the first camera, then only the newest: its preview and its full frame; nothing queued
        assert started == [(0.1, 16, True), (19.1, 16, True), (19.1, 64, False)], started
    finally:
        assert renderer.close(5.0)

    gate = threading.Event()

    def cancellable(camera, long_side, cancelled, interactive, preview):
        while not gate.is_set():
            if cancelled():
                raise RenderCancelled()
            time.sleep(0.005)
        return camera.fov_y

    shown.clear()
    renderer = ProgressiveRenderer(cancellable, lambda result, info: shown.append(result), long_side=64,
                                   preview_long_side=64, settle_s=0.05)  # no previews: every frame full size
    try:
        renderer.set_camera(ViewCamera(np.eye(4), 1.0, 1.0))
        time.sleep(0.1)  # frame 1 in progress ...
        renderer.set_camera(ViewCamera(np.eye(4), 2.0, 1.0))  # ... abandoned for this one
        assert wait_until(lambda: renderer.stats.cancelled >= 1, TIMEOUT)
        gate.set()
        assert wait_until(lambda: len(shown) >= 1, TIMEOUT) and set(shown) == {2.0}
    finally:
        assert renderer.close(5.0)


def test_live_frames_are_served_a_chunk_at_a_time_within_the_budget():
    from neuralfields.viewer.live import TrainingThreadRunner

    runner = TrainingThreadRunner(max_fraction=1e-9, interactive_fraction=1e-9, burst_s=0.001)
    chunks = []

    def job():
        for index in range(5):
            time.sleep(0.01)
            chunks.append(index)
            if index < 4:
                yield
        return "frame"

    result = {}
    waiter = threading.Thread(target=lambda: result.update(frame=runner.run(job, interactive=False)))
    waiter.start()
    assert wait_until(lambda: runner.pending == 1, TIMEOUT)
    assert runner.serve() == 1 and chunks == [0]  # one chunk spends the budget ...
    assert runner.serve() == 0 and chunks == [0]  # ... and nothing more runs until it refills
    assert waiter.is_alive()
    assert runner.serve(throttle=False) == 4 and chunks == [0, 1, 2, 3, 4]  # paused training: no limit
    waiter.join(5.0)
    assert result == {"frame": "frame"} and runner.jobs_run == 1 and runner.pending == 0

    cancel = threading.Event()  # a tab that goes away while its frame is half done
    waiter = threading.Thread(target=lambda: result.update(error=pytest.raises(RenderCancelled, runner.run, job,
                                                                                cancel.is_set)))
    waiter.start()
    assert wait_until(lambda: runner.pending == 1, TIMEOUT)
    runner._credit = 0.001
    assert runner.serve() == 1
    cancel.set()
    waiter.join(5.0)
    assert not waiter.is_alive() and runner.pending == 0


def test_compare_mode_composes_one_labelled_panel_per_run(nerf_runs, tiny_scene, tmp_path):
    panels = compose_panels([np.zeros((20, 30, 3), np.uint8)] * 3, ["A: x · y", "B", "C"])
    assert panels.shape == (20, 3 * 30 + 2 * 2, 3) and (panels[:, 30] == 255).all() and (panels[:, 62] == 255).all()
    assert sum(panel_widths(100, 3)) + 4 == 100

    viewer = open_viewer([nerf_runs[0], nerf_runs[1], nerf_runs[0]], port=free_port(), long_side=64,
                         preview_long_side=16, quiet=True)
    tab = None
    try:
        tab = TabClient(viewer.server.get_port())
        test = load_views(tiny_scene, "test")
        tab.send_camera(test.camtoworlds[0].numpy(), fov_from_focal(test.focal, test.height), 300, 400)
        frames = tab.wait_backgrounds(2)
        assert frames[-1].shape[:2] == (48, 64)
        assert wait_until(lambda: viewer.client_count == 1, TIMEOUT)
        session = next(iter(viewer.sessions.values()))
        image, _ = session.render(session.renderer.camera, 64)
        widths = panel_widths(64, 3)
        a, b, c = (image[:, sum(widths[:i]) + 2 * i: sum(widths[:i + 1]) + 2 * i] for i in range(3))
        assert (image[:, widths[0]] == 255).all()  # separator
        body = slice(20, None)  # below the labels
        assert np.array_equal(a[body], c[body]) and not np.array_equal(a[body], b[body])  # same run, other run
        assert "**A**" in session.readout.content and "dense" in session.readout.content
    finally:
        if tab:
            tab.close()
        viewer.close()

    other_scene = tmp_path / "other"
    (other_scene).mkdir()
    for name in ("transforms_train.json", "transforms_val.json", "transforms_test.json"):
        (other_scene / name).write_text((tiny_scene / name).read_text())
    config_text = (nerf_runs[1] / "config.yaml").read_text().replace(str(tiny_scene), str(other_scene))
    moved = tmp_path / "moved_run"
    moved.mkdir()
    (moved / "config.yaml").write_text(config_text)
    with pytest.raises(NeuralFieldsError, match="one scene"):
        open_viewer([nerf_runs[0], moved], port=free_port(), quiet=True)


class Probe(Callback):
    """Pauses the live viewer once a tab has a frame, then checks what it shows."""

    def __init__(self, live: LiveViewer, tab_ready) -> None:
        self.live, self.tab_ready = live, tab_ready
        self.paused_at = None

    def on_step(self, loop, stats) -> None:
        if self.paused_at is None and loop.step >= 8 and self.tab_ready():
            self.paused_at = loop.step
            self.live.paused = True  # the live callback ran before us: it pauses at the next step


def test_live_viewer_renders_the_current_weights_and_never_stops_training(tiny_scene, tmp_path):
    live = LiveViewer(port=free_port(), long_side=24, refresh_s=0.0, quiet=True)
    tab = TabClient(live.server.get_port())
    test = load_views(tiny_scene, "test")
    fov = fov_from_focal(test.focal, test.height)
    tab.send_camera(test.camtoworlds[0].numpy(), fov, 300, 300)
    probe = Probe(live, lambda: len(tab.backgrounds()) >= 1)
    result = {}

    def train():
        result["run"] = train_nerf(nerf_config(tiny_scene, tmp_path, steps=150, checkpoint_every=1000),
                                   run_dir=tmp_path / "live", callbacks=(live, probe), progress=False)

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    try:
        assert wait_until(lambda: live.paused and live.slot.status.startswith("training paused"), 120.0), \
            "training was never paused"
        task_step = live.slot.info["step"]
        model = live.slot.model
        expected = render_nerf(model.field, model.path, model.settings,
                               ViewCamera.from_view(test.camtoworlds[0], test.focal, 24, 24), 24, 24, model.chunk).rgb
        expected = (np.clip(expected, 0, 1) * 255 + 0.5).astype(np.uint8)
        session = next(iter(live.viewer.sessions.values()))
        assert wait_until(lambda: session.last_image is not None and np.array_equal(session.last_image, expected),
                          TIMEOUT), "the paused frame is not the paused weights' image"
        assert live.slot.info["step"] == task_step  # still paused: no step ran meanwhile
        assert "resume" in session.pause_button.label
        live.paused = False
        trainer.join(300.0)
        assert not trainer.is_alive() and result["run"][1]["steps"] == 150
        assert live.runner.jobs_run >= 2 and not live.failures
        # after training the final weights render in the viewer's own thread
        assert session.render(session.renderer.camera, 24) is not None
    finally:
        live.paused = False
        tab.close()
        live.close()
        trainer.join(60.0)


def test_viewer_errors_never_stop_training_and_no_tab_means_no_frames(tiny_scene, tmp_path, monkeypatch):
    live = LiveViewer(port=free_port(), long_side=16, refresh_s=0.0, quiet=True)
    try:  # no tab connected: nothing renders
        train_nerf(nerf_config(tiny_scene, tmp_path, steps=15), run_dir=tmp_path / "quiet", callbacks=(live,),
                   progress=False)
        assert live.runner.jobs_run == 0
    finally:
        live.close()

    live = LiveViewer(port=free_port(), long_side=16, refresh_s=0.0, quiet=True)
    tab = TabClient(live.server.get_port())
    test = load_views(tiny_scene, "test")
    tab.send_camera(test.camtoworlds[0].numpy(), fov_from_focal(test.focal, test.height), 300, 300)

    def broken(*args, **kwargs):
        raise RuntimeError("broken renderer")

    monkeypatch.setattr("neuralfields.viewer.app.iter_render_nerf", broken)
    original = live.slot.update_info
    monkeypatch.setattr(live.slot, "update_info", broken)
    try:
        _, metrics = train_nerf(nerf_config(tiny_scene, tmp_path, steps=60), run_dir=tmp_path / "broken",
                                callbacks=(live,), progress=False)
        assert metrics["steps"] == 60
        assert any("broken renderer" in failure for failure in live.failures)  # the on_step error
        live.slot.update_info = original
        assert wait_until(lambda: live.viewer is not None and any("render failed" in e for e in live.viewer.errors),
                          TIMEOUT)
    finally:
        tab.close()
        live.close()


def test_a_tab_closed_mid_render_ends_its_thread(nerf_runs, tiny_scene, monkeypatch):
    import neuralfields.viewer.app as app

    real = app.iter_render_nerf

    def slow(*args, **kwargs):
        cancelled = args[7]
        for _ in range(400):
            if cancelled():
                raise RenderCancelled()
            time.sleep(0.01)
        return real(*args, **kwargs)

    monkeypatch.setattr(app, "iter_render_nerf", slow)
    viewer = open_viewer([nerf_runs[0]], port=free_port(), long_side=24, preview_long_side=24, quiet=True)
    try:
        tab = TabClient(viewer.server.get_port())
        test = load_views(tiny_scene, "test")
        tab.send_camera(test.camtoworlds[0].numpy(), fov_from_focal(test.focal, test.height), 300, 300)
        assert wait_until(lambda: viewer.client_count == 1, TIMEOUT)
        session = next(iter(viewer.sessions.values()))
        time.sleep(0.3)  # inside the slow frame
        tab.close()
        assert wait_until(lambda: viewer.client_count == 0 and not session.renderer.alive, TIMEOUT)
        monkeypatch.setattr(app, "iter_render_nerf", real)
        again = TabClient(viewer.server.get_port())  # the server still serves
        again.send_camera(test.camtoworlds[0].numpy(), fov_from_focal(test.focal, test.height), 300, 300)
        again.wait_backgrounds(1)
        again.close()
    finally:
        viewer.close()


def test_occupancy_run_shows_its_mesh(tiny_occupancy_config, tmp_path):
    config = tiny_occupancy_config(width=32, num_uniform=5000, num_surface=5000, steps=60, batch_size=512,
                                   checkpoint_every=30, eval_uniform_points=2000, eval_grid_resolution=16,
                                   eval_surface_samples=1000)
    run_dir, _ = train_occupancy(config, run_dir=tmp_path / "occ", progress=False)
    viewer = open_viewer([run_dir], port=free_port(), mesh_resolution=32, quiet=True)
    tab = None
    try:
        tab = TabClient(viewer.server.get_port())
        tab.send_camera(np.eye(4), math.radians(50), 300, 300)
        assert wait_until(lambda: tab.of_type("MeshMessage"), TIMEOUT), "no mesh arrived"
        session = next(iter(viewer.sessions.values()))
        assert wait_until(lambda: 0 in session._meshes, TIMEOUT)
        assert "IoU" in session.readout.content and "mesh 32³" in session.readout.content
        model = open_run(run_dir).load_model("cpu")  # the same surface as export's marching cubes
        exported = extract_mesh(model, PADDED_BOUNDS, 32, level=0.0, progress=False)
        shown = viewer.mesh(viewer.slots[0], 32, 0.5)[0]
        assert np.allclose(np.sort(shown.vertices, axis=0), np.sort(exported.vertices, axis=0), atol=1e-6)
        session.truth_control.value = True
        assert wait_until(lambda: session._truth_handle is not None, TIMEOUT)
    finally:
        if tab:
            tab.close()
        viewer.close()


def test_ports_and_bad_input(nerf_runs, tmp_path, capsys, run_script):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chosen = pick_port("127.0.0.1", port)
        assert chosen > port
        assert f"port {port} is in use; using port {chosen} instead" in capsys.readouterr().err
        viewer = open_viewer([nerf_runs[0]], port=port, quiet=True)
        try:
            assert viewer.server.get_port() != port
        finally:
            viewer.close()
    with pytest.raises(NeuralFieldsError, match="cannot listen"):
        pick_port("203.0.113.7", 8080)  # not an address of this machine

    result = run_script("view.py", str(tmp_path), "--port", str(free_port()))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1

    empty = tmp_path / "empty_run"  # a run whose trainer has not written a checkpoint yet
    empty.mkdir()
    (empty / "config.yaml").write_text((nerf_runs[0] / "config.yaml").read_text())
    viewer = open_viewer([empty], port=free_port(), quiet=True, poll_s=0.1)
    try:
        assert "no checkpoint yet" in viewer.slots[0].status
        (empty / "checkpoints").symlink_to(nerf_runs[0] / "checkpoints")
        assert wait_until(lambda: viewer.slots[0].model is not None, TIMEOUT)  # picked up by the poller
    finally:
        viewer.close()


def test_training_scripts_take_viewer_flags(tiny_scene, tmp_path, run_script):
    import yaml

    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({**TINY_NERF, "scene": str(tiny_scene), "steps": 6, "time_budget_s": None}))
    port = free_port()
    result = run_script("train_nerf.py", "--preset", str(preset), "--output-root", str(tmp_path / "out"),
                        "--viewer", "--port", str(port))
    assert result.returncode == 0, result.stderr
    assert f"viewer: http://127.0.0.1:{port} (live while training)" in result.stdout
    with socket.socket() as probe:  # the server is gone once the script ended
        probe.bind(("127.0.0.1", port))
