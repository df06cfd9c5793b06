"""The viewer apps on a viser server: NeRF (one run, or several side by side) and occupancy.

Every browser tab is its own session: its own camera, GUI, render thread and frames. What the
tabs share is the runs' slots (neuralfields.viewer.models): the weights shown and the readout.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralfields.errors import NeuralFieldsError
from neuralfields.viewer.cameras import ViewCamera, image_size, viser_pose_from_camtoworld
from neuralfields.viewer.frames import (
    MODES, compose_panels, frame_image, iter_render_nerf, panel_widths, z_depth,
)
from neuralfields.viewer.models import ModelSlot
from neuralfields.viewer.progressive import PREVIEW_LONG_SIDE, FrameInfo, ProgressiveRenderer

DEFAULT_LONG_SIDE = 128
"""Still frames' long side on a CPU (previews: progressive.PREVIEW_LONG_SIDE)."""
GPU_LONG_SIDE = 512
GPU_PREVIEW_LONG_SIDE = 128
THUMBNAIL_LONG_SIDE = 64
JPEG_QUALITY = 90


def _markdown_escape(text: str) -> str:
    return text.replace("*", "\\*").replace("_", "\\_")


class Viewer:
    """Sessions for the clients of one viser server; subclasses say what a session is."""

    def __init__(self, server, slots: list[ModelSlot], host: str = "127.0.0.1") -> None:
        self.server = server
        self.slots = list(slots)
        self.host = host
        self.sessions: dict[int, Any] = {}
        self._gone: set[int] = set()
        self._lock = threading.Lock()
        self.closed = False
        self.errors: list[str] = []
        server.on_client_connect(self._connect)
        server.on_client_disconnect(self._disconnect)

    # sessions ---------------------------------------------------------------------------------
    def make_session(self, client):
        raise NotImplementedError

    def _connect(self, client) -> None:
        if self.closed:
            return
        try:
            session = self.make_session(client)
        except Exception as exc:  # noqa: BLE001 - say it in the tab and on the console
            self.report(f"could not set up the view: {exc}", exc)
            return
        with self._lock:
            gone = client.client_id in self._gone or self.closed
            if not gone:
                self.sessions[client.client_id] = session
        if gone:  # the tab closed while its session was being built
            session.close()

    def _disconnect(self, client) -> None:
        with self._lock:
            self._gone.add(client.client_id)
            session = self.sessions.pop(client.client_id, None)
        if session is not None:
            session.close()

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self.sessions)

    def report(self, message: str, exc: BaseException | None = None) -> None:
        """An error the viewer survived: on stderr (with its traceback once) and in every tab."""
        first = message not in self.errors
        self.errors.append(message)
        if first:
            print(f"viewer: {message}", file=sys.stderr)
            if exc is not None:
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        with self._lock:
            sessions = list(self.sessions.values())
        for session in sessions:
            session.show_status(message)

    def close(self) -> None:
        """Stop every session's thread, the slots' pollers and the server."""
        self.closed = True
        with self._lock:
            sessions = list(self.sessions.values())
            self.sessions.clear()
        for session in sessions:
            session.close()
        for slot in self.slots:
            closer = getattr(slot, "close", None)
            if closer is not None:
                closer()
        self.server.stop()


class Session:
    """One browser tab: GUI, a readout kept in step with the slots, a status line."""

    def __init__(self, viewer: Viewer, client) -> None:
        self.viewer = viewer
        self.client = client
        self.closed = False
        self._unsubscribe = []
        self.readout = client.gui.add_markdown("", order=0)
        self.status = client.gui.add_markdown("", order=1)
        self.frame_text = ""

    def listen(self) -> None:
        for slot in self.viewer.slots:
            self._unsubscribe.append(slot.subscribe(self._slot_changed))
        self.update_readout()

    def _slot_changed(self, what: str, slot: ModelSlot) -> None:
        self.update_readout()

    def update_readout(self) -> None:
        if self.closed:
            return
        lines = []
        for index, slot in enumerate(self.viewer.slots):
            prefix = f"**{chr(ord('A') + index)}** " if len(self.viewer.slots) > 1 else ""
            lines.append(prefix + _markdown_escape(slot.describe()))
            if slot.status:
                lines.append(f"_{_markdown_escape(slot.status)}_")
        if self.frame_text:
            lines.append(self.frame_text)
        self.readout.content = "  \n".join(lines)

    def show_status(self, message: str) -> None:
        if not self.closed:
            self.status.content = f"**{_markdown_escape(message)}**" if message else ""

    def notify(self, title: str, body: str) -> None:
        try:
            self.client.add_notification(title, body, auto_close_seconds=8.0)
        except Exception:  # noqa: BLE001 - the tab may be gone
            pass

    def close(self) -> None:
        self.closed = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()


# ---------------------------------------------------------------------------------------------
# NeRF


@dataclass
class NerfScene:
    """The posed images a NeRF run trained on, as far as the viewer needs them: the test split
    (its first view is a tab's first camera; its near/far/ndc feed the render settings) and, on
    demand, the training cameras with thumbnails."""

    scene_dir: Path
    config: Any
    views: Any  # the test split's ViewSet
    _train: list | None = field(default=None, repr=False)
    _train_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(cls, config) -> NerfScene:
        from neuralfields.data.scenes import resolve_scene_dir

        scene_dir = resolve_scene_dir(config.scene, config.data_dir)
        return cls(Path(scene_dir), config, load_split(scene_dir, "test", config))

    @property
    def first_view(self) -> ViewCamera:
        views = self.views
        return ViewCamera.from_view(views.camtoworlds[0], views.focal, views.height, views.width)

    @property
    def ndc(self) -> bool:
        return bool(self.views.ndc)

    @property
    def up(self) -> str:
        """World up: +Z for Blender scenes, +Y for recentred forward-facing (LLFF) scenes."""
        return "+y" if self.ndc else "+z"

    def look_at(self, camera: ViewCamera) -> np.ndarray:
        """A point ahead of the camera to orbit around: the point of the optical axis nearest
        the origin (object scenes), or 5 units ahead (forward-facing scenes)."""
        position, forward = camera.camtoworld[:3, 3], -camera.camtoworld[:3, 2]
        distance = 5.0 if self.ndc else float(-(position @ forward))
        return position + forward * (distance if distance > 0.1 else 1.0)

    def train_cameras(self) -> list[tuple[np.ndarray, float, float, np.ndarray]]:
        """(camtoworld, vertical fov, aspect, uint8 thumbnail) of every training view (cached)."""
        from neuralfields.viewer.frames import to_uint8

        with self._train_lock:
            if self._train is None:
                views = load_split(self.scene_dir, "train", self.config)
                step = max(1, math.ceil(max(views.height, views.width) / THUMBNAIL_LONG_SIDE))
                self._train = [
                    (views.camtoworlds[i].numpy().astype(np.float64),
                     2.0 * math.atan(0.5 * views.height / views.focal), views.width / views.height,
                     to_uint8(views.images[i, ::step, ::step].numpy()))
                    for i in range(len(views))
                ]
            return self._train

    def radius(self) -> float:
        return float(np.linalg.norm(self.first_view.camtoworld[:3, 3])) or 1.0


def load_split(scene_dir: Path, split: str, config):
    """A split of the run's scene, loaded as its trainer loaded it (downscale, background and,
    for photo captures, the scene kind the run recorded)."""
    from neuralfields.data.scenes import load_views

    kind = getattr(config, "scene_kind", None)
    return load_views(scene_dir, split, config.downscale, config.background, *((kind,) if kind is not None else ()))


def set_initial_camera(server, scene: NerfScene) -> None:
    """New tabs start at the run's first test view (position, orbit point, world up, fov)."""
    camera = scene.first_view
    server.scene.set_up_direction(scene.up)
    server.initial_camera.fov = camera.fov_y
    server.initial_camera.position = camera.camtoworld[:3, 3]
    server.initial_camera.look_at = scene.look_at(camera)
    server.initial_camera.up = (0.0, 1.0, 0.0) if scene.ndc else (0.0, 0.0, 1.0)


class NerfViewer(Viewer):
    """Renders one NeRF run (or several side by side, compare mode) from each tab's camera."""

    def __init__(self, server, slots: list[ModelSlot], scene: NerfScene, save_dir: Path | None = None,
                 long_side: int = DEFAULT_LONG_SIDE, preview_long_side: int = PREVIEW_LONG_SIDE,
                 live=None, host: str = "127.0.0.1") -> None:
        self.scene = scene
        self.save_dir = save_dir
        self.long_side = long_side
        self.preview_long_side = preview_long_side
        self.live = live
        set_initial_camera(server, scene)
        super().__init__(server, slots, host)

    @property
    def compare(self) -> bool:
        return len(self.slots) > 1

    def make_session(self, client) -> NerfSession:
        return NerfSession(self, client)


class NerfSession(Session):
    """One tab of the NeRF viewer: its camera rendered progressively as the scene background."""

    def __init__(self, viewer: NerfViewer, client) -> None:
        super().__init__(viewer, client)
        gui = client.gui
        self.mode = "RGB"
        self.resolution = gui.add_slider("resolution (px)", min=16, max=max(1024, viewer.long_side), step=8,
                                         initial_value=max(16, viewer.long_side), order=2,
                                         hint="long side of the frame once the camera is still")
        self.mode_control = gui.add_dropdown("render mode", MODES, initial_value="RGB", order=3)
        self.frustums_control = gui.add_checkbox("training cameras", False, order=4, visible=not viewer.compare,
                                                 hint="the training views' frustums with their images")
        self.save_button = gui.add_button("save PNG", order=5, hint="render this view at the chosen resolution "
                                                                     "into the run folder's viewer/")
        self.reset_button = gui.add_button("go to test view 0", order=6)
        self.pause_button = None
        if viewer.live is not None:
            self.pause_button = gui.add_button("pause training", order=7)
            self.pause_button.on_click(lambda _: self._toggle_pause())
        self.reload_button = None
        if any(hasattr(slot, "reload") for slot in viewer.slots):
            self.reload_button = gui.add_button("reload checkpoint", order=8,
                                                hint="load the run's newest checkpoint (also checked every few "
                                                     "seconds while it trains)")
            self.reload_button.on_click(lambda _: self._reload())
        self._frustums: list = []
        self._frustum_thread: threading.Thread | None = None
        self.last_image: np.ndarray | None = None
        self.renderer = ProgressiveRenderer(self.render, self.show, long_side=int(self.resolution.value),
                                            preview_long_side=viewer.preview_long_side,
                                            on_error=self._render_failed, name=f"viewer-render-{client.client_id}")
        self.resolution.on_update(lambda _: setattr(self.renderer, "long_side", int(self.resolution.value)))
        self.mode_control.on_update(lambda _: self._set_mode(self.mode_control.value))
        self.frustums_control.on_update(lambda _: self._toggle_frustums(self.frustums_control.value))
        self.save_button.on_click(lambda _: self._save_png())
        self.reset_button.on_click(lambda _: self._reset_camera())

        async def camera_moved(camera) -> None:  # on the event loop, in arrival order; just a note
            self.renderer.set_camera(ViewCamera.from_handle(camera))

        client.camera.on_update(camera_moved)
        self.listen()
        try:  # the first camera arrived before this session existed
            self.renderer.set_camera(ViewCamera.from_handle(client.camera))
        except AssertionError:  # no camera message yet (viser asserts on an unset camera)
            pass

    # rendering ----------------------------------------------------------------------------------
    def _slot_changed(self, what: str, slot: ModelSlot) -> None:
        if what == "model":
            self.renderer.invalidate(cancel=False)
        self.update_readout()

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        self.renderer.invalidate()

    def render(self, camera: ViewCamera, long_side: int, cancelled=None, interactive: bool = True,
               preview: bool = False):
        """The picture for a camera: (uint8 image, depth for compositing or None), or None while
        no run has weights yet. `preview`: a frame while the camera moves (frames.preview_settings)."""
        height, width = image_size(long_side, camera.aspect)
        mode = self.mode
        slots = self.viewer.slots
        if len(slots) == 1:
            frame = slots[0].run(lambda m: iter_render_nerf(m.field, m.path, m.settings, camera, height, width,
                                                            m.chunk, cancelled, preview), cancelled, interactive)
            if frame is None:
                return None
            depth = z_depth(frame) if mode == "RGB" and not self.viewer.scene.ndc else None
            return frame_image(frame, mode), depth
        images, labels = [], []
        for index, (slot, panel_width) in enumerate(zip(slots, panel_widths(width, len(slots)))):
            panel = camera.with_aspect(panel_width / height)
            frame = slot.run(lambda m: iter_render_nerf(m.field, m.path, m.settings, panel, height, panel_width,
                                                        m.chunk, cancelled, preview), cancelled, interactive)
            image = frame_image(frame, mode) if frame is not None else np.full((height, panel_width, 3), 40, np.uint8)
            images.append(image)
            labels.append(f"{chr(ord('A') + index)}: {slot.describe()}" if frame is not None
                          else f"{chr(ord('A') + index)}: {slot.status or 'no weights yet'}")
        return compose_panels(images, labels), None

    def show(self, result, info: FrameInfo) -> None:
        image, depth = result
        if self.closed:
            return
        self.client.scene.set_background_image(image, format="jpeg", jpeg_quality=JPEG_QUALITY, depth=depth)
        if not info.preview:
            self.last_image = image
        kind = "preview" if info.preview else "frame"
        self.frame_text = (f"{kind} {image.shape[1]}×{image.shape[0]} px: {1000 * info.seconds:.0f} ms"
                           + (f" ({1 / info.seconds:.1f} frames/s)" if info.seconds > 0 else ""))
        self.update_readout()
        self.show_status("")

    def _render_failed(self, exc: BaseException) -> None:
        self.viewer.report(f"render failed: {type(exc).__name__}: {exc}", exc)

    # controls -----------------------------------------------------------------------------------
    def _toggle_pause(self) -> None:
        live = self.viewer.live
        live.paused = not live.paused

    def _reload(self) -> None:
        changed = [slot.reload() for slot in self.viewer.slots if hasattr(slot, "reload")]
        if not any(changed):
            self.notify("reload", "no newer checkpoint")

    def _reset_camera(self) -> None:
        camera = self.viewer.scene.first_view
        with self.client.atomic():
            self.client.camera.fov = camera.fov_y
            self.client.camera.position = camera.camtoworld[:3, 3]
            self.client.camera.look_at = self.viewer.scene.look_at(camera)

    def save_png(self) -> Path | None:
        """Render the current view at the chosen resolution and save it as a PNG in the (first)
        run folder's viewer/ folder; returns the path (None when nothing can be rendered)."""
        from neuralfields.media import save_png

        camera = self.renderer.camera
        folder = self.viewer.save_dir
        if camera is None or folder is None:
            return None
        result = self.render(camera, self.renderer.long_side)
        if result is None:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{'compare' if self.viewer.compare else 'view'}-{stamp}-{self.mode.lower()}.png"
        return save_png(Path(folder) / "viewer" / name, result[0])

    def _save_png(self) -> None:
        try:
            path = self.save_png()
        except Exception as exc:  # noqa: BLE001
            self.viewer.report(f"saving the PNG failed: {exc}", exc)
            return
        self.notify("saved", str(path) if path else "nothing to save yet")

    def _toggle_frustums(self, visible: bool) -> None:
        if self._frustums:
            for handle in self._frustums:
                handle.visible = visible
            return
        if visible and self._frustum_thread is None:
            self.show_status("loading the training cameras ...")
            self._frustum_thread = threading.Thread(target=self._add_frustums, daemon=True,
                                                    name=f"viewer-frustums-{self.client.client_id}")
            self._frustum_thread.start()

    def _add_frustums(self) -> None:
        try:
            cameras = self.viewer.scene.train_cameras()
            scale = 0.05 * self.viewer.scene.radius()
            for index, (c2w, fov, aspect, thumbnail) in enumerate(cameras):
                if self.closed:
                    return
                wxyz, position = viser_pose_from_camtoworld(c2w)
                self._frustums.append(self.client.scene.add_camera_frustum(
                    f"/train_cameras/{index:04d}", fov=fov, aspect=aspect, scale=scale, image=thumbnail,
                    format="jpeg", wxyz=wxyz, position=position, color=(230, 120, 30),
                    visible=bool(self.frustums_control.value)))
            self.show_status("")
        except Exception as exc:  # noqa: BLE001
            self.viewer.report(f"could not show the training cameras: {exc}", exc)

    def close(self) -> None:
        super().close()
        self.renderer.close()


# ---------------------------------------------------------------------------------------------
# occupancy


class LatestWorker:
    """One thread that runs the newest submitted task (older ones waiting are dropped)."""

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._task = None
        self._closed = False
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, task) -> None:
        with self._cond:
            self._task = task
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._task is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                task, self._task = self._task, None
                self.busy = True
            try:
                task()
            finally:
                self.busy = False

    def close(self, timeout: float = 10.0) -> bool:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def iter_extract_unit_mesh(field, resolution: int, probability: float = 0.5, chunk: int = 32768):
    """Marching cubes of an occupancy field over the padded unit cube at `resolution`^3, at the
    occupancy probability `probability` (0.5: logit 0), as a generator job that yields after every
    chunk of grid points (the live viewer meshes between training steps); returns the mesh, or
    None when the field has no surface there. The same grid and marching cubes as export."""
    from neuralfields.meshing.marching import evaluate_points, grid_points, mesh_from_volume
    from neuralfields.meshing.mesh_io import PADDED_BOUNDS

    level = math.log(probability / (1.0 - probability))
    device = next(field.parameters()).device
    points = grid_points(PADDED_BOUNDS, resolution).reshape(-1, 3)
    values = []
    for start in range(0, len(points), chunk):
        was_training = field.training
        field.eval()
        try:
            values.append(evaluate_points(field, points[start:start + chunk], chunk_size=chunk, device=device))
        finally:
            field.train(was_training)
        if start + chunk < len(points):
            yield
    try:
        return mesh_from_volume(np.concatenate(values).reshape((resolution,) * 3), PADDED_BOUNDS, level)
    except NeuralFieldsError:
        return None


def occupancy_slice(field, height: float, resolution: int = 128) -> np.ndarray:
    """The occupancy probability on the plane z = height across the padded cube, coloured
    (uint8 (R, R, 3), rows along -y so that it reads like a map seen from above)."""
    import torch
    from matplotlib import colormaps

    from neuralfields.meshing.mesh_io import PADDED_BOUNDS

    lo, hi = PADDED_BOUNDS[0], PADDED_BOUNDS[1]
    xs = np.linspace(lo[0], hi[0], resolution, dtype=np.float32)
    ys = np.linspace(hi[1], lo[1], resolution, dtype=np.float32)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    points = np.stack([grid_x, grid_y, np.full_like(grid_x, height)], axis=-1).reshape(-1, 3)
    device = next(field.parameters()).device
    was_training = field.training
    field.eval()
    try:
        with torch.no_grad():
            probability = torch.sigmoid(field(torch.from_numpy(points).to(device))).float().cpu().numpy()
    finally:
        field.train(was_training)
    rgb = colormaps["viridis"](probability.reshape(resolution, resolution))[..., :3]
    return (rgb * 255 + 0.5).astype(np.uint8)


class OccupancyViewer(Viewer):
    """The extracted surface of one or more occupancy runs (side by side), the ground-truth mesh
    beside it when the run's mesh can be read, and a slice of the occupancy probability."""

    SPACING = 1.3

    def __init__(self, server, slots: list[ModelSlot], truth=None, mesh_resolution: int = 64, live=None,
                 host: str = "127.0.0.1", save_dir: Path | None = None) -> None:
        self.truth = truth  # a callable returning the unit-cube ground-truth mesh (or None), or None
        self.mesh_resolution = mesh_resolution
        self.live = live
        self.save_dir = save_dir
        self._cache: dict = {}
        self._cache_lock = threading.Lock()
        server.scene.set_up_direction("+z")
        width = self.SPACING * (len(slots) - 1)
        server.initial_camera.position = (width / 2 + 1.1, -1.6, 0.9)
        server.initial_camera.look_at = (width / 2, 0.0, 0.0)
        server.initial_camera.fov = math.radians(50.0)
        super().__init__(server, slots, host)

    def offset(self, index: int) -> tuple[float, float, float]:
        return (self.SPACING * index, 0.0, 0.0)

    def mesh(self, slot: ModelSlot, resolution: int, probability: float, cancelled=None):
        """The slot's surface at a resolution and level (cached per weights version)."""
        key = (id(slot), slot.version, resolution, round(probability, 4))
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        started = time.perf_counter()
        mesh = slot.run(lambda m: iter_extract_unit_mesh(m.field, resolution, probability), cancelled)
        seconds = time.perf_counter() - started
        with self._cache_lock:
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[key] = (mesh, seconds)
        return mesh, seconds

    def make_session(self, client) -> OccupancySession:
        return OccupancySession(self, client)


class OccupancySession(Session):
    def __init__(self, viewer: OccupancyViewer, client) -> None:
        super().__init__(viewer, client)
        gui = client.gui
        self.resolution = gui.add_slider("mesh resolution", min=16, max=256, step=16,
                                         initial_value=viewer.mesh_resolution, order=2,
                                         hint="marching-cubes grid points per axis")
        self.level = gui.add_slider("level (occupancy)", min=0.05, max=0.95, step=0.05, initial_value=0.5, order=3)
        self.truth_control = gui.add_checkbox("ground-truth mesh", False, order=4, visible=viewer.truth is not None)
        self.slice_control = gui.add_checkbox("occupancy slice", False, order=5)
        self.slice_height = gui.add_slider("slice height (z)", min=-0.55, max=0.55, step=0.01, initial_value=0.0,
                                           order=6)
        self.pause_button = None
        if viewer.live is not None:
            self.pause_button = gui.add_button("pause training", order=7)
            self.pause_button.on_click(lambda _: setattr(viewer.live, "paused", not viewer.live.paused))
        if any(hasattr(slot, "reload") for slot in viewer.slots):
            button = gui.add_button("reload checkpoint", order=8)
            button.on_click(lambda _: [slot.reload() for slot in viewer.slots if hasattr(slot, "reload")])
        self._meshes: dict[int, Any] = {}
        self._labels: dict[int, Any] = {}
        self._truth_handle = None
        self._slice_handles: dict[int, Any] = {}
        self.worker = LatestWorker(f"viewer-mesh-{client.client_id}")
        for control in (self.resolution, self.level):
            control.on_update(lambda _: self.refresh())
        self.truth_control.on_update(lambda _: self.worker.submit(self._update_truth))
        for control in (self.slice_control, self.slice_height):
            control.on_update(lambda _: self.worker.submit(self._update_slices))
        self.listen()
        self.refresh()

    def _slot_changed(self, what: str, slot: ModelSlot) -> None:
        if what == "model":
            self.refresh()
        self.update_readout()

    def refresh(self) -> None:
        self.worker.submit(self._update_meshes)

    def _update_meshes(self) -> None:
        resolution, probability = int(self.resolution.value), float(self.level.value)
        times = []
        for index, slot in enumerate(self.viewer.slots):
            if self.closed:
                return
            try:
                result = self.viewer.mesh(slot, resolution, probability, cancelled=lambda: self.closed)
            except Exception as exc:  # noqa: BLE001
                self.viewer.report(f"mesh extraction failed: {exc}", exc)
                return
            if result is None or self.closed:
                continue
            mesh, seconds = result
            times.append(seconds)
            if mesh is None:
                self.show_status(f"{slot.describe()}: no surface at level {probability:g}")
                continue
            self._meshes[index] = self.client.scene.add_mesh_simple(
                f"/occupancy/{index}/mesh", np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.uint32),
                color=(90, 170, 230), position=self.viewer.offset(index))
            if len(self.viewer.slots) > 1:
                x, y, z = self.viewer.offset(index)
                self._labels[index] = self.client.scene.add_label(
                    f"/occupancy/{index}/label", f"{chr(ord('A') + index)}: {slot.describe()}",
                    position=(x, y, z + 0.65))
        if times:
            self.frame_text = f"mesh {resolution}³: {1000 * max(times):.0f} ms"
            self.update_readout()
        self._update_slices()

    def _update_truth(self) -> None:
        if not self.truth_control.value:
            if self._truth_handle is not None:
                self._truth_handle.visible = False
            return
        if self._truth_handle is None:
            mesh = self.viewer.truth()
            if mesh is None:
                self.show_status("the run's mesh cannot be read here")
                return
            x = self.viewer.offset(len(self.viewer.slots))[0]
            self._truth_handle = self.client.scene.add_mesh_simple(
                "/occupancy/truth", np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.uint32),
                color=(200, 200, 200), position=(x, 0.0, 0.0))
            self.client.scene.add_label("/occupancy/truth_label", "ground truth", position=(x, 0.0, 0.65))
        self._truth_handle.visible = True

    def _update_slices(self) -> None:
        from neuralfields.meshing.mesh_io import PADDED_BOUNDS

        visible = bool(self.slice_control.value)
        if not visible:
            for handle in self._slice_handles.values():
                handle.visible = False
            return
        size = float(PADDED_BOUNDS[1][0] - PADDED_BOUNDS[0][0])
        height = float(self.slice_height.value)
        for index, slot in enumerate(self.viewer.slots):
            image = slot.run(lambda m: occupancy_slice(m.field, height), lambda: self.closed)
            if image is None or self.closed:
                continue
            x, y, _ = self.viewer.offset(index)
            self._slice_handles[index] = self.client.scene.add_image(
                f"/occupancy/{index}/slice", image, render_width=size, render_height=size, format="png",
                position=(x, y, height))

    def close(self) -> None:
        super().close()
        self.worker.close()
