"""Rendering one viewer frame: a field seen from a ViewCamera through the same chunked renderer
evaluation uses, turned into an image for a render mode; and panels composed side by side.

Still frames use the run's evaluation settings (the same pixels as evaluation). Previews, the
frames shown while the camera moves, trade accuracy for speed: a marching step PREVIEW_STEP_FACTOR
times longer (half the samples) and mixed precision where the device has it (bfloat16 on CPUs
with native bf16 matmuls, float16 on CUDA). benchmarks/bench_viewer.py measures both kinds.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Generator

import numpy as np
import torch

from neuralfields.device import autocast_dtype
from neuralfields.rendering.cameras import image_rays
from neuralfields.rendering.render import RenderSettings, render_image, render_rays_chunked
from neuralfields.viewer.cameras import ViewCamera

MODES = ("RGB", "depth", "opacity")
FAR_DEPTH = 100.0
"""Depth given to the browser for empty pixels, so scene objects in front of nothing show."""
PREVIEW_STEP_FACTOR = 2.0
"""Previews march this many times the run's step (see the module's docstring)."""


class RenderCancelled(Exception):
    """A newer camera arrived while a frame rendered; the frame is dropped."""


@dataclass
class Frame:
    """A rendered view: rgb (H,W,3), depth (H,W) along the ray, opacity (H,W), float32 numpy."""

    rgb: np.ndarray
    depth: np.ndarray
    opacity: np.ndarray
    focal: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[:2]


def render_nerf(field, path, settings: RenderSettings, camera: ViewCamera, height: int, width: int,
                chunk: int = 4096, cancelled: Callable[[], bool] | None = None, preview: bool = False) -> Frame:
    """The field seen by `camera` at height x width. Without `cancelled` this is render_image
    itself; with it, the same rays go through render_rays_chunked one chunk at a time (the same
    chunks render_image uses, so the same numbers) and RenderCancelled is raised between chunks
    once `cancelled()` says so. `preview`: the faster, coarser settings of frames while the camera
    moves (see the module's docstring). Field and sampler are put in eval mode and restored
    afterwards."""
    return finish(iter_render_nerf(field, path, settings, camera, height, width, chunk, cancelled, preview))


def finish(steps: Generator):
    """Run a generator job (see iter_render_nerf) to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def preview_settings(settings: RenderSettings) -> RenderSettings:
    """The render settings of a preview: the run's, marching PREVIEW_STEP_FACTOR times the step."""
    return replace(settings, render_step_size=settings.render_step_size * PREVIEW_STEP_FACTOR)


def iter_render_nerf(field, path, settings: RenderSettings, camera: ViewCamera, height: int, width: int,
                     chunk: int = 4096, cancelled: Callable[[], bool] | None = None,
                     preview: bool = False) -> Generator[None, None, Frame]:
    """render_nerf as a generator that yields after every chunk of rays (the live viewer renders
    a frame a few chunks at a time between training steps) and returns the Frame."""
    focal = camera.focal(height)
    c2w = camera.camtoworld_tensor()
    device = next(field.parameters()).device
    if preview:
        settings = preview_settings(settings)
    if cancelled is None:
        with _frame_mode(field, path, device, preview):
            out = render_image(field, path, c2w, height, width, focal, settings, chunk=chunk)
        return Frame(out["rgb"].numpy(), out["depth"].numpy(), out["opacity"].numpy(), focal)
    origins, directions = image_rays(c2w.to(device), height, width, focal, ndc=settings.ndc)
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    parts = []
    for start in range(0, origins.shape[0], chunk):
        if cancelled():
            raise RenderCancelled()
        with _frame_mode(field, path, device, preview):  # left before every yield
            parts.append(render_rays_chunked(field, path, origins[start:start + chunk],
                                             directions[start:start + chunk], settings, chunk))
        if start + chunk < origins.shape[0]:
            yield
    out = {key: torch.cat([part[key] for part in parts]) for key in ("rgb", "depth", "opacity")}
    return Frame(out["rgb"].reshape(height, width, 3).numpy(), out["depth"].reshape(height, width).numpy(),
                 out["opacity"].reshape(height, width).numpy(), focal)


@contextmanager
def _frame_mode(field, path, device: torch.device, preview: bool):
    """No autograd, field and sampler in eval mode (restored on exit) and, for a preview, the
    device's mixed precision."""
    dtype = autocast_dtype(device) if preview else None
    with torch.no_grad(), _eval_mode(field, path), torch.autocast(device.type, dtype=dtype,
                                                                   enabled=dtype is not None):
        yield


@contextmanager
def _eval_mode(field, path):
    modes = (field.training, path.estimator.training)
    field.eval()
    path.estimator.eval()
    try:
        yield
    finally:
        field.train(modes[0])
        path.estimator.train(modes[1])


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colorize_depth(depth: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """Depth as a turbo-coloured uint8 image, scaled between the 1st and 99th percentile of the
    covered pixels (opacity > 0.5); empty pixels are black."""
    from matplotlib import colormaps

    covered = opacity > 0.5
    values = depth[covered] if covered.any() else depth.reshape(-1)
    lo, hi = (np.percentile(values, [1, 99]) if values.size else (0.0, 1.0))
    scaled = np.clip((depth - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = colormaps["turbo"](scaled)[..., :3]
    rgb[~covered] = 0.0
    return to_uint8(rgb)


def frame_image(frame: Frame, mode: str) -> np.ndarray:
    """The uint8 (H,W,3) picture of a frame in a render mode (RGB, depth, opacity)."""
    if mode == "RGB":
        return to_uint8(frame.rgb)
    if mode == "depth":
        return colorize_depth(frame.depth, frame.opacity)
    if mode == "opacity":
        return np.repeat(to_uint8(frame.opacity)[..., None], 3, axis=-1)
    raise ValueError(f"unknown render mode {mode!r} (known: {', '.join(MODES)})")


def z_depth(frame: Frame) -> np.ndarray:
    """Depth along the camera's viewing axis (what the browser composites scene objects with);
    empty pixels (opacity < 0.5) are far away."""
    height, width = frame.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    x = (xs + 0.5 - 0.5 * width) / frame.focal
    y = (ys + 0.5 - 0.5 * height) / frame.focal
    cosine = 1.0 / np.sqrt(x * x + y * y + 1.0)
    depth = frame.depth * cosine
    return np.where(frame.opacity > 0.5, depth, FAR_DEPTH).astype(np.float32)


def compose_panels(images: list[np.ndarray], labels: list[str], separator: int = 2) -> np.ndarray:
    """Images of equal height side by side, each with its label in a dark box at its top left,
    separated by thin white lines: one uint8 (H, sum(W) + gaps, 3) picture."""
    from PIL import Image, ImageDraw, ImageFont

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} panels but {len(labels)} labels")
    height = images[0].shape[0]
    try:
        font = ImageFont.load_default(size=max(9, min(16, height // 18)))
    except (TypeError, OSError):  # Pillow < 10.1 or without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    panels = []
    for index, (image, label) in enumerate(zip(images, labels)):
        if image.shape[0] != height:
            raise ValueError("panels must have the same height")
        picture = Image.fromarray(image)
        draw = ImageDraw.Draw(picture)
        text = "\n".join(_wrap(draw, label, font, image.shape[1] - 10))
        box = draw.multiline_textbbox((4, 3), text, font=font)
        draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        draw.multiline_text((4, 3), text, fill=(255, 255, 255), font=font)
        panels.append(np.asarray(picture))
        if index + 1 < len(images) and separator:
            panels.append(np.full((height, separator, 3), 255, np.uint8))
    return np.concatenate(panels, axis=1)


def panel_widths(total_width: int, count: int, separator: int = 2) -> list[int]:
    """Widths of `count` panels that, with separators, fill `total_width` pixels."""
    usable = max(count, total_width - separator * (count - 1))
    base, extra = divmod(usable, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def _wrap(draw, label: str, font, width: int) -> list[str]:
    """The label's " · "-separated parts packed into lines at most `width` pixels wide."""
    lines: list[str] = []
    for part in label.split(" · "):
        candidate = f"{lines[-1]} · {part}" if lines else part
        if lines and draw.textlength(candidate, font=font) <= width:
            lines[-1] = candidate
        else:
            lines.append(part)
    return lines
