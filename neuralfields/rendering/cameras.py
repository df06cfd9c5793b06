"""Pinhole cameras and ray generation.

Convention (OpenGL / Blender, as in the NeRF synthetic dataset): a camera-to-world matrix maps
camera coordinates to world coordinates; in camera coordinates the camera looks down -Z with +Y
up and +X right. Pixel (x, y) has its centre at (x + 0.5, y + 0.5); image row y grows downwards.
Ray directions are unit length, so a ray parameter t is a world distance (what nerfacc expects).
The world is Z-up, like the Blender scenes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _camera_directions(pixel_x: torch.Tensor, pixel_y: torch.Tensor, height: int, width: int,
                       focal: float) -> torch.Tensor:
    """Directions in camera coordinates (not normalised) through the centres of the given pixels."""
    return torch.stack(
        [
            (pixel_x + 0.5 - 0.5 * width) / focal,
            -(pixel_y + 0.5 - 0.5 * height) / focal,
            -torch.ones_like(pixel_x),
        ],
        dim=-1,
    )


def _rotate_to_world(camera_dirs: torch.Tensor, camtoworld: torch.Tensor) -> torch.Tensor:
    """Rotate camera-space directions (..., 3) by the 3x3 block of camtoworld (..., 3|4, 4) and normalise."""
    rotation = camtoworld[..., :3, :3]
    world = (rotation * camera_dirs[..., None, :]).sum(dim=-1)
    return torch.nn.functional.normalize(world, dim=-1)


def image_rays(camtoworld: torch.Tensor, height: int, width: int, focal: float,
               ndc: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through every pixel centre of one view: (origins (H,W,3), unit directions (H,W,3)),
    or with ndc=True (forward-facing scenes) the same rays in normalised device coordinates."""
    camtoworld = torch.as_tensor(camtoworld, dtype=torch.float32)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=camtoworld.device),
        torch.arange(width, dtype=torch.float32, device=camtoworld.device),
        indexing="ij",
    )
    camera_dirs = _camera_directions(xs, ys, height, width, focal)
    directions = _rotate_to_world(camera_dirs, camtoworld)
    origins = camtoworld[:3, 3].expand(height, width, 3)
    if ndc:
        return ndc_rays(origins, directions, focal, width, height)
    return origins, directions


def pixel_rays(camtoworlds: torch.Tensor, pixel_x: torch.Tensor, pixel_y: torch.Tensor,
               view_index: torch.Tensor, focal: float, height: int,
               width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through chosen pixels of chosen views (a training batch): (origins (M,3), directions (M,3)).

    pixel_x, pixel_y, view_index are integer tensors of shape (M,). height and width place the
    principal point at the image centre.
    """
    camtoworlds = torch.as_tensor(camtoworlds, dtype=torch.float32)
    poses = camtoworlds[view_index]
    camera_dirs = _camera_directions(pixel_x.to(torch.float32), pixel_y.to(torch.float32),
                                     height, width, focal)
    directions = _rotate_to_world(camera_dirs, poses)
    return poses[:, :3, 3].clone(), directions


def look_at(eye: torch.Tensor, target: torch.Tensor,
            up: Sequence[float] = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """Camera-to-world matrices (N,4,4) for cameras at eye (N,3) looking at target (3,), world up +Z."""
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.as_tensor(target, dtype=torch.float32)
    up_vec = torch.as_tensor(up, dtype=torch.float32).expand_as(eye)
    back = torch.nn.functional.normalize(eye - target, dim=-1)  # camera +Z points away from the target
    right = torch.nn.functional.normalize(torch.cross(up_vec, back, dim=-1), dim=-1)
    cam_up = torch.cross(back, right, dim=-1)
    poses = torch.eye(4).repeat(eye.shape[0], 1, 1)
    poses[:, :3, 0] = right
    poses[:, :3, 1] = cam_up
    poses[:, :3, 2] = back
    poses[:, :3, 3] = eye
    return poses


def orbit_camtoworlds(num_views: int, radius: float, elevation_deg: float,
                      target: Sequence[float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """Cameras evenly spaced on a circle around target (world up +Z), all looking at it: (N,4,4).

    elevation_deg is the angle above the XY plane; must be below 90 (the view would be degenerate).
    """
    if not -90.0 < elevation_deg < 90.0:
        raise ValueError(f"elevation must be strictly between -90 and 90 degrees, got {elevation_deg}")
    azimuth = torch.arange(num_views, dtype=torch.float32) * (2.0 * math.pi / num_views)
    elevation = math.radians(elevation_deg)
    target_t = torch.as_tensor(target, dtype=torch.float32)
    eye = torch.stack(
        [
            radius * math.cos(elevation) * torch.cos(azimuth),
            radius * math.cos(elevation) * torch.sin(azimuth),
            torch.full_like(azimuth, radius * math.sin(elevation)),
        ],
        dim=-1,
    ) + target_t
    return look_at(eye, target_t)


def forward_facing_circle(num_views: int, radius: float, focus_depth: float) -> torch.Tensor:
    """Cameras (N,4,4) on a circle of `radius` in the z = 0 plane of a recentred forward-facing
    scene (cameras looking down -Z, world up +Y), all looking at the point (0, 0, -focus_depth)."""
    angle = torch.arange(num_views, dtype=torch.float32) * (2.0 * math.pi / num_views)
    eye = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), torch.zeros_like(angle)], dim=-1)
    return look_at(eye, torch.tensor([0.0, 0.0, -focus_depth]), up=(0.0, 1.0, 0.0))


def ndc_rays(origins: torch.Tensor, directions: torch.Tensor, focal: float, width: int, height: int,
             near: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Map world rays of a forward-facing camera (looking down -Z) into normalised device coordinates.

    Origins are first moved onto the plane z = -near. In NDC the ray o' + t d' covers the world ray
    from that plane (t = 0) to infinite depth (t = 1); d' is not unit length.
    """
    t = -(near + origins[..., 2]) / directions[..., 2]
    origins = origins + t[..., None] * directions
    ox, oy, oz = origins.unbind(-1)
    dx, dy, dz = directions.unbind(-1)
    sx, sy = 2.0 * focal / width, 2.0 * focal / height
    ndc_origins = torch.stack([-sx * ox / oz, -sy * oy / oz, 1.0 + 2.0 * near / oz], dim=-1)
    ndc_directions = torch.stack(
        [-sx * (dx / dz - ox / oz), -sy * (dy / dz - oy / oz), -2.0 * near / oz], dim=-1
    )
    return ndc_origins, ndc_directions
