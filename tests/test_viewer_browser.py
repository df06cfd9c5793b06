"""The viewer in a real browser: headless Chromium (Debian's, driven by playwright; `make test-setup`
installs both) opens the viewer of a tiny trained run, and the page must show the server's
render and a new one after a mouse drag on the canvas. Skipped only when no Chromium is found."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from neuralfields.training.nerf import train_nerf
from neuralfields.viewer import open_viewer
from neuralfields.viewer.models import wait_until
from neuralfields.viewer.server import free_port
from test_viewer import nerf_config

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = {"width": 960, "height": 640}
SCENE_REGION = (slice(200, 570), slice(70, 620))
"""Rows and columns of the page that only the scene covers (not viser's panel on the right, its
software-WebGL notice at the top left or the axes at the bottom left)."""
TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def chromium() -> str:
    """The path of a Chromium on PATH; skips the module's tests when there is none."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.skip(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH); `make test-setup` installs "
                "Debian's chromium")


@pytest.fixture(scope="module")
def trained_run(tiny_scene, tmp_path_factory):
    """A tiny NeRF of the tiny scene, trained long enough (200 steps, ~4 s) to show its object."""
    root = tmp_path_factory.mktemp("browser_run")
    run_dir, _ = train_nerf(nerf_config(tiny_scene, root, steps=200, checkpoint_every=200), run_dir=root / "run",
                            progress=False)
    return run_dir


def screenshot(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(np.float64)


def as_page(image: np.ndarray) -> np.ndarray:
    """A frame stretched over the page, as viser draws the scene background."""
    size = (VIEWPORT["width"], VIEWPORT["height"])
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)).astype(np.float64)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference (0-255) of two page images inside the scene region."""
    return float(np.abs(a[SCENE_REGION] - b[SCENE_REGION]).mean())


def wait_for_frame_on_page(page, session) -> tuple[np.ndarray, np.ndarray]:
    """(screenshot, frame) once the page shows the session's latest full-size frame."""
    shown = {}

    def on_page() -> bool:
        frame = session.last_image
        if frame is None:
            return False
        shown["page"], shown["frame"] = screenshot(page), frame
        return difference(shown["page"], as_page(frame)) < 8.0

    assert wait_until(on_page, TIMEOUT_S, interval=0.2), (
        "the page never showed the server's frame" if shown else "the server rendered no frame")
    return shown["page"], shown["frame"]


def test_a_browser_shows_the_render_and_a_drag_renders_a_new_view(chromium, trained_run):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `make setup` installs it (the dev extra)")

    viewer = open_viewer([trained_run], port=free_port(), long_side=64, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"],
                                                 timeout=TIMEOUT_S * 1000)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(viewer.url, timeout=TIMEOUT_S * 1000)
                assert wait_until(lambda: viewer.client_count == 1, TIMEOUT_S), "the page never connected"
                session = next(iter(viewer.sessions.values()))
                before, before_frame = wait_for_frame_on_page(page, session)
                assert before[SCENE_REGION].std() > 10.0, "the rendered region is blank"
                camera = session.renderer.camera

                middle_x, middle_y = VIEWPORT["width"] / 2, VIEWPORT["height"] / 2
                page.mouse.move(middle_x, middle_y)
                page.mouse.down()
                page.mouse.move(middle_x + 300, middle_y + 40, steps=15)
                page.mouse.up()
                assert wait_until(lambda: not np.array_equal(session.renderer.camera.camtoworld, camera.camtoworld),
                                  TIMEOUT_S), "the drag did not move the viewer's camera"
                assert wait_until(lambda: session.last_image is not before_frame, TIMEOUT_S)
                after, after_frame = wait_for_frame_on_page(page, session)
            finally:
                browser.close()
    finally:
        viewer.close()
    assert difference(after, before) > 5.0, "the page did not change when the camera moved"
    assert difference(after, as_page(after_frame)) < difference(after, as_page(before_frame))
    assert after[SCENE_REGION].std() > 10.0
