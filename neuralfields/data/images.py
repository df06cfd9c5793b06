"""Image file helpers shared by the dataset loaders: read, area-downscale, composite."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from neuralfields.errors import NeuralFieldsError

BACKGROUNDS = {"white": 1.0, "black": 0.0}


def read_image(path: str | Path) -> np.ndarray:
    """Read an 8- or 16-bit PNG/JPEG as float32 in [0, 1] with shape (H, W, C), C in {3, 4}.

    Grey images are expanded to RGB. Raises NeuralFieldsError naming the file if it is missing
    or cannot be decoded (imageio's message for that, "`pillow` can not handle the given uri", names
    neither the file nor what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise NeuralFieldsError(f"image file not found: {path}")
    try:
        pixels = iio.imread(path, plugin="pillow")
    except Exception:  # imageio raises many types for corrupt or unknown files
        raise NeuralFieldsError(f"{path} is not a readable image (PNG/JPEG)") from None
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4):
        raise NeuralFieldsError(f"{path} is not a readable image (PNG/JPEG): pixel array of shape {pixels.shape}")
    if pixels.shape[-1] in (1, 2):  # grey or grey+alpha
        grey = np.repeat(pixels[..., :1], 3, axis=-1)
        pixels = np.concatenate([grey, pixels[..., 1:]], axis=-1)
    scale = float(np.iinfo(pixels.dtype).max) if np.issubdtype(pixels.dtype, np.integer) else 1.0
    return pixels.astype(np.float32) / scale


def area_downscale(pixels: np.ndarray, factor: int, name: str = "image") -> np.ndarray:
    """Downscale (H, W, ...) by an integer factor, averaging each factor x factor block (AREA).

    The factor must divide both sides; otherwise NeuralFieldsError names the image and its size.
    """
    if factor < 1:
        raise NeuralFieldsError(f"downscale must be a positive integer, got {factor}")
    if factor == 1:
        return pixels
    height, width = pixels.shape[:2]
    if height % factor or width % factor:
        raise NeuralFieldsError(
            f"downscale {factor} does not divide the size {width}x{height} of {name}; "
            f"choose a divisor of both sides"
        )
    blocks = pixels.reshape(height // factor, factor, width // factor, factor, *pixels.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(pixels.dtype)


def composite(rgba: np.ndarray, background: str) -> tuple[np.ndarray, np.ndarray]:
    """Composite straight-alpha RGBA (..., 4) over a plain background: (rgb (..., 3), alpha (...)).

    RGB inputs get alpha 1. background is "white" or "black".
    """
    if background not in BACKGROUNDS:
        raise NeuralFieldsError(f"background must be one of {sorted(BACKGROUNDS)}, got {background!r}")
    if rgba.shape[-1] == 3:
        return rgba, np.ones(rgba.shape[:-1], dtype=rgba.dtype)
    alpha = rgba[..., 3]
    rgb = rgba[..., :3] * alpha[..., None] + BACKGROUNDS[background] * (1.0 - alpha[..., None])
    return rgb.astype(np.float32), alpha
