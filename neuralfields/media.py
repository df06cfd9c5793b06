"""Writing results people can open: PNG images and orbit videos (MP4, or GIF without ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from neuralfields.errors import NeuralFieldsError


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (H, W[, C]) -> uint8 array."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: str | Path, image: torch.Tensor | np.ndarray) -> Path:
    """Save an image in [0, 1] (or uint8) as PNG, creating the folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, to_uint8(image))
    except OSError as exc:
        raise NeuralFieldsError(f"cannot write image {path}: {exc.strerror or exc}") from None
    return path


def _ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except (ImportError, RuntimeError):
        return False


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 20) -> Path:
    """Write frames (uint8 (H, W, 3)) as MP4 (H.264) when ffmpeg is available, else as a GIF next
    to it (same name, .gif); returns the path actually written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stack = np.stack([to_uint8(frame) for frame in frames])
    if _ffmpeg_available():
        # H.264 wants even sides; pad by one pixel row/column of edge colour where needed.
        pad_h, pad_w = stack.shape[1] % 2, stack.shape[2] % 2
        stack = np.pad(stack, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        iio.imwrite(path.with_suffix(".mp4"), stack, fps=fps, codec="libx264", macro_block_size=1,
                    plugin="FFMPEG")
        return path.with_suffix(".mp4")
    gif = path.with_suffix(".gif")
    iio.imwrite(gif, stack, duration=1000.0 / fps, loop=0)
    return gif
