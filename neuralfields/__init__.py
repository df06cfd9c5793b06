"""neuralfields: parameter-efficient 3D neural fields on sine-activated low-rank layers."""

__version__ = "0.1.0"
