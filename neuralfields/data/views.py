"""ViewSet, the posed images every loader returns; its own module so the loaders and scenes.py share it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ViewSet:
    """Posed images of one split, on the CPU as float32 torch tensors.

    images (N,H,W,3) in [0,1], already composited on the background; alphas (N,H,W) coverage;
    camtoworlds (N,4,4) OpenGL convention; focal in pixels at this (downscaled) resolution;
    near/far ray bounds in world units; names are the frame file paths as written in the json.
    ndc is True for forward-facing captures: rays go through
    neuralfields.rendering.cameras.ndc_rays (image_rays(..., ndc=True)) first, and near/far (0/1)
    are then NDC ray parameters. kind says what the scene is: "object" (Blender scenes: an object
    in a known box), "forward" (a forward-facing photo capture, NDC) or "circling" (photos taken
    around an object, recentred and scaled so the cameras lie on about the unit sphere; unbounded
    behind); spread_deg is a capture's measured spread of view directions (None for Blender).
    """

    images: torch.Tensor
    alphas: torch.Tensor
    camtoworlds: torch.Tensor
    focal: float
    height: int
    width: int
    near: float
    far: float
    names: list[str]
    ndc: bool = False
    kind: str = "object"
    spread_deg: float | None = None

    def __len__(self) -> int:
        return self.images.shape[0]
