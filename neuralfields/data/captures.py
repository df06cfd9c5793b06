"""Photo captures, whatever format their poses come in: what kind of scene they show and how it is
normalised before training.

A format reader (LLFF poses_bounds.npy in llff.py, nerfstudio's transforms.json in nerfstudio.py,
a COLMAP sparse model in colmap.py) returns a `Capture`: the photo files, camera-to-world matrices
in the OpenGL convention in the capture's own world frame, per-photo intrinsics (fx, fy, cx, cy;
OpenCV's distortion coefficients) and, where the format knows them, near/far depth bounds.
`capture_views` turns it into a `ViewSet`:

- **Which kind of scene.** The view directions' spread is the largest angle between a camera's
  viewing direction and the cameras' mean viewing direction. Up to FORWARD_SPREAD_DEG (30) the
  capture is *forward-facing* (all cameras look the same way, as in the original LLFF scenes);
  beyond, it is *circling* (cameras around an object, the usual phone capture). `scene_kind`
  ("auto", "forward", "circling") overrides the measurement.
- **Forward-facing**: as LLFF (and the original NeRF code) does: the world is scaled so that the
  nearest depth bound is 1 / 0.75, recentred on the average camera, and rays go through normalised
  device coordinates (near 0, far 1). This needs depth bounds (LLFF, COLMAP points).
- **Circling** ("spherify", as NeRF codebases call it): the origin moves to the point nearest all
  optical axes (least squares), the world turns so that +Z is the cameras' mean up direction, and
  it is scaled so that the cameras' root-mean-square distance from the origin is 1. Rays are
  ordinary world rays; near/far come from the depth bounds where known.
- **Splits**: photos sorted by name; every 8th (0, 8, 16, ...) is held out as the test (and val)
  split, the rest train, as is usual for such scenes in the literature.
- **Images**: area-downscaled by the factor (a centred crop first drops the rows and columns the
  factor does not divide); photos whose camera is not a centred pinhole with square pixels --
  off-centre principal point, fx != fy, lens distortion, intrinsics differing between photos -- are
  resampled (bilinear) onto one centred pinhole camera, so the trainer needs a single focal length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neuralfields.data.images import read_image
from neuralfields.data.views import ViewSet
from neuralfields.errors import NeuralFieldsError
from neuralfields.progress import progress_bar

SCENE_KINDS = ("auto", "forward", "circling")
FORWARD_SPREAD_DEG = 30.0
HOLDOUT_EVERY = 8
CAPTURE_SPLITS = ("train", "val", "test", "all")
NDC_BOUND_MARGIN = 0.75
NEAR_MARGIN = 0.9
"""Circling scenes with depth bounds: the near plane is 0.9 x the nearest bound."""
DEFAULT_CIRCLING_NEAR = 0.05
DEFAULT_CIRCLING_FAR = 10.0
"""Circling scenes without depth bounds (nerfstudio): near/far in units of the camera radius; the
occupancy grid's largest box, not the far plane, is what ends rays in practice."""
RESAMPLE_TOLERANCE_PX = 0.1
"""A camera counts as a centred square-pixel pinhole (no resampling) when its principal point is
within this many pixels of the image centre and fx, fy differ by less than this many pixels (both at
the loaded resolution), and it has no distortion."""


@dataclass
class Capture:
    """Posed photos as a format reader finds them, before any normalisation.

    files: the N photos, sorted by name. camtoworlds (N,4,4): OpenGL convention (camera looks down
    -Z, +Y up), in the capture's own world. intrinsics (N,4): fx, fy, cx, cy in pixels of an image of
    sizes[i] = (width, height), with the centre of the top-left pixel at (0.5, 0.5) (COLMAP's and
    nerfstudio's convention). distortion (N,6): OpenCV's k1, k2, k3, k4 (radial, r^2 .. r^8), p1, p2
    (tangential); zeros for none. bounds (N,2): near/far scene depths per photo, or None.
    downscaled: {factor: N files} of pre-downscaled copies (LLFF's images_<factor>/, named as they
    please); without an entry, `<dir>/images_<factor>/<name>` beside `<dir>/images/<name>` is used
    when it exists (nerfstudio's copies).
    """

    source: str
    files: list[Path]
    camtoworlds: np.ndarray
    intrinsics: np.ndarray
    sizes: np.ndarray
    distortion: np.ndarray
    bounds: np.ndarray | None = None
    downscaled: dict[int, list[Path]] | None = None

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class SceneLayout:
    """How a capture is normalised: its kind (measured, or as set), the kind measured and the spread
    it was measured from, the camera-to-worlds in the training world, and the ray bounds (NDC 0/1
    when forward)."""

    kind: str
    detected: str
    spread_deg: float
    camtoworlds: np.ndarray
    near: float
    far: float

    @property
    def ndc(self) -> bool:
        return self.kind == "forward"

    def describe(self) -> str:
        how = (f"view directions up to {self.spread_deg:.0f} deg from their mean "
               f"({'<=' if self.spread_deg <= FORWARD_SPREAD_DEG else '>'} {FORWARD_SPREAD_DEG:.0f} deg)")
        if self.kind != self.detected:
            how += f", but the scene kind is set to {self.kind}"
        if self.ndc:
            return f"{how}: forward-facing capture -> recentred on the mean camera, NDC rays"
        return (f"{how}: circling capture -> recentred on the point nearest all optical axes, cameras "
                f"scaled to the unit sphere, world rays (no NDC), near {self.near:.3g}")


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def view_directions(camtoworlds: np.ndarray) -> np.ndarray:
    """Unit viewing directions (N,3) of OpenGL camera-to-worlds (the cameras' -Z axes)."""
    directions = -np.asarray(camtoworlds, dtype=np.float64)[:, :3, 2]
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def view_spread_deg(camtoworlds: np.ndarray) -> float:
    """The largest angle (degrees) between a camera's viewing direction and the mean viewing
    direction; 180 when the directions cancel out (cameras all around)."""
    directions = view_directions(camtoworlds)
    mean = directions.mean(axis=0)
    if np.linalg.norm(mean) < 1e-6:
        return 180.0
    cosines = np.clip(directions @ _normalise(mean), -1.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())


def detect_scene_kind(camtoworlds: np.ndarray, threshold_deg: float = FORWARD_SPREAD_DEG) -> tuple[str, float]:
    """("forward" or "circling", spread in degrees) of a set of cameras."""
    spread = view_spread_deg(camtoworlds)
    return ("forward" if spread <= threshold_deg else "circling"), spread


def average_pose(poses: np.ndarray) -> np.ndarray:
    """The mean camera (4,4) of camera-to-worlds (N,3|4,4): mean centre, mean back axis, mean up axis."""
    centre = poses[:, :3, 3].mean(axis=0)
    back = _normalise(poses[:, :3, 2].sum(axis=0))
    right = _normalise(np.cross(poses[:, :3, 1].sum(axis=0), back))
    up = np.cross(back, right)
    pose = np.eye(4)
    pose[:3, :4] = np.stack([right, up, back, centre], axis=1)
    return pose


def nearest_point_to_axes(camtoworlds: np.ndarray) -> np.ndarray:
    """The point (3,) nearest all optical axes in the least-squares sense."""
    origins = np.asarray(camtoworlds, dtype=np.float64)[:, :3, 3]
    directions = view_directions(camtoworlds)
    projectors = np.eye(3)[None] - directions[:, :, None] * directions[:, None, :]  # onto each axis' normal plane
    lhs = projectors.sum(axis=0)
    rhs = (projectors @ origins[:, :, None]).sum(axis=0)[:, 0]
    if np.linalg.cond(lhs) > 1e8:  # (nearly) parallel axes: no such point
        raise NeuralFieldsError("the cameras' optical axes are (nearly) parallel, so a circling capture has no "
                                "centre; this looks like a forward-facing capture (scene kind forward)")
    return np.linalg.solve(lhs, rhs)


def spherify(camtoworlds: np.ndarray) -> tuple[np.ndarray, float]:
    """Circling cameras (N,4,4) in a world with the origin at the point nearest all optical axes,
    +Z along the cameras' mean up direction, +X towards the first camera (seen from above) and
    cameras at root-mean-square distance 1 from the origin. Returns (camtoworlds, scale) where
    scale multiplies the capture's lengths (depth bounds)."""
    poses = np.asarray(camtoworlds, dtype=np.float64)
    centre = nearest_point_to_axes(poses)
    up = poses[:, :3, 1].sum(axis=0)
    if np.linalg.norm(up) < 1e-6 * len(poses):
        up = (poses[:, :3, 3] - centre).sum(axis=0)  # cameras' up vectors cancel: their mean offset
    z = _normalise(up)
    towards_first = poses[0, :3, 3] - centre
    x = towards_first - z * (towards_first @ z)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, [1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.cross(z, [0.0, 1.0, 0.0])
    x = _normalise(x)
    rotation = np.stack([x, np.cross(z, x), z])  # rows: the new axes in capture coordinates
    offsets = poses[:, :3, 3] - centre
    scale = 1.0 / math.sqrt(float((offsets**2).sum(axis=1).mean()))
    result = np.tile(np.eye(4), (len(poses), 1, 1))
    result[:, :3, :3] = rotation[None] @ poses[:, :3, :3]
    result[:, :3, 3] = scale * offsets @ rotation.T
    return result, scale


def forward_facing(camtoworlds: np.ndarray, bounds: np.ndarray, margin: float = NDC_BOUND_MARGIN) -> np.ndarray:
    """LLFF's normalisation of forward-facing cameras (N,4,4): the world scaled so the nearest bound
    is 1 / margin, then recentred on the average camera."""
    poses = np.array(camtoworlds, dtype=np.float64)
    poses[:, :3, 3] *= 1.0 / (bounds.min() * margin)
    return np.linalg.inv(average_pose(poses)) @ poses


def scene_layout(capture: Capture, scene_kind: str = "auto") -> SceneLayout:
    """The kind of scene (measured, or `scene_kind` when it is not "auto") and the normalised cameras."""
    if scene_kind not in SCENE_KINDS:
        raise NeuralFieldsError(f"scene kind must be one of {', '.join(SCENE_KINDS)}, got {scene_kind!r}")
    detected, spread = detect_scene_kind(capture.camtoworlds)
    kind = detected if scene_kind == "auto" else scene_kind
    if kind == "forward":
        if capture.bounds is None:
            raise NeuralFieldsError(
                f"{capture.source}: a forward-facing capture needs depth bounds for its NDC rays, and this "
                f"format has none; use an LLFF poses_bounds.npy or a COLMAP model with points3D, or set the "
                f"scene kind to circling")
        return SceneLayout(kind, detected, spread, forward_facing(capture.camtoworlds, capture.bounds), 0.0, 1.0)
    camtoworlds, scale = spherify(capture.camtoworlds)
    if capture.bounds is not None:
        near, far = NEAR_MARGIN * float(capture.bounds[:, 0].min()) * scale, float(capture.bounds[:, 1].max()) * scale
    else:
        near, far = DEFAULT_CIRCLING_NEAR, DEFAULT_CIRCLING_FAR
    return SceneLayout(kind, detected, spread, camtoworlds, near, max(far, 2.0 * near))


def split_indices(count: int, split: str, holdout_every: int = HOLDOUT_EVERY) -> np.ndarray:
    """Photo indices of a split: every holdout_every-th photo (from the first) is test and val."""
    if split not in CAPTURE_SPLITS:
        raise NeuralFieldsError(f"split must be one of {', '.join(CAPTURE_SPLITS)}, got {split!r}")
    indices = np.arange(count)
    held_out = indices[::holdout_every]
    return {"all": indices, "test": held_out, "val": held_out, "train": np.setdiff1d(indices, held_out)}[split]


def crop_downscale(pixels: np.ndarray, factor: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Average factor x factor blocks of (H, W, C) pixels after a centred crop to multiples of the
    factor; returns the image and the (left, top) crop in pixels of the input."""
    height, width = pixels.shape[:2]
    if factor == 1:
        return pixels, (0, 0)
    if height < factor or width < factor:
        raise NeuralFieldsError(f"downscale {factor} is larger than the {width}x{height} photos")
    crop_h, crop_w = height % factor, width % factor
    top, left = crop_h // 2, crop_w // 2
    pixels = pixels[top:top + height - crop_h, left:left + width - crop_w]
    h, w = pixels.shape[:2]
    blocks = pixels.reshape(h // factor, factor, w // factor, factor, *pixels.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(pixels.dtype), (left, top)


def distort(x: np.ndarray, y: np.ndarray, coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's lens model on normalised image coordinates (x right, y down): radial k1..k4 on
    r^2..r^8 and tangential p1, p2."""
    k1, k2, k3, k4, p1, p2 = coefficients
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
    return (x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x),
            y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y)


def resample_to_pinhole(pixels: np.ndarray, intrinsics: np.ndarray, distortion: np.ndarray, height: int,
                        width: int, focal: float) -> np.ndarray:
    """The photo (H0, W0, 3) with camera (fx, fy, cx, cy) + distortion as seen by a centred pinhole
    camera of the given size and focal length (bilinear; pixels outside the photo repeat its edge)."""
    fx, fy, cx, cy = intrinsics
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    x = (xs + 0.5 - 0.5 * width) / focal
    y = (ys + 0.5 - 0.5 * height) / focal
    xd, yd = distort(x, y, distortion)
    u, v = fx * xd + cx, fy * yd + cy  # continuous coordinates in the photo, (0, 0) its top-left corner
    source_h, source_w = pixels.shape[:2]
    grid = torch.from_numpy(np.stack([2.0 * u / source_w - 1.0, 2.0 * v / source_h - 1.0], axis=-1)).float()
    image = torch.from_numpy(np.ascontiguousarray(pixels)).float().permute(2, 0, 1)[None]
    sampled = torch.nn.functional.grid_sample(image, grid[None], mode="bilinear", padding_mode="border",
                                              align_corners=False)
    return sampled[0].permute(1, 2, 0).numpy()


def _photo_path(capture: Capture, index: int, factor: int) -> tuple[Path, bool]:
    """The file to read for photo `index` at 1/factor: a pre-downscaled copy where there is one
    (see Capture.downscaled), else the photo; (path, whether it is a downscaled copy)."""
    path = capture.files[index]
    if factor > 1 and capture.downscaled and factor in capture.downscaled:
        return capture.downscaled[factor][index], True
    if factor > 1 and path.parent.name == "images":
        smaller = path.parent.parent / f"images_{factor}" / path.name
        if smaller.is_file():
            return smaller, True
    return path, False


def capture_views(capture: Capture, split: str, factor: int = 1, scene_kind: str = "auto",
                  holdout_every: int = HOLDOUT_EVERY, layout: SceneLayout | None = None) -> ViewSet:
    """One split of a capture as a ViewSet at 1/factor resolution (see the module docstring)."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise NeuralFieldsError(f"downscale factor must be a positive integer, got {factor!r}")
    layout = layout or scene_layout(capture, scene_kind)
    chosen = split_indices(len(capture), split, holdout_every)
    photos, cameras, names = [], [], []
    for index in progress_bar(chosen, desc=f"loading {capture.files[0].parent.parent.name}/{split}", unit="img",
                              disable=len(chosen) < 20, leave=False):
        path, is_copy = _photo_path(capture, index, factor)
        pixels = read_image(path)[..., :3]
        names.append(path.name)
        width0, height0 = capture.sizes[index]
        if not is_copy and (pixels.shape[1], pixels.shape[0]) != (int(width0), int(height0)):
            raise NeuralFieldsError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} but {capture.source} says "
                                    f"{int(width0)}x{int(height0)}")
        fx, fy, cx, cy = capture.intrinsics[index]
        sx, sy = pixels.shape[1] / width0, pixels.shape[0] / height0  # a pre-downscaled copy
        pixels, (left, top) = crop_downscale(pixels, 1 if is_copy else factor)
        shrink = 1 if is_copy else factor
        cameras.append(np.array([fx * sx / shrink, fy * sy / shrink, (cx * sx - left) / shrink,
                                 (cy * sy - top) / shrink]))
        photos.append(pixels)
    height, width = photos[0].shape[:2]
    for index, pixels in zip(chosen, photos):
        if pixels.shape[:2] != (height, width):
            raise NeuralFieldsError(f"photo {capture.files[index]} is {pixels.shape[1]}x{pixels.shape[0]} at this "
                                    f"downscale but earlier photos are {width}x{height}")
    focal = target_focal(capture, (height, width), cameras)
    images = []
    for index, pixels, camera in zip(chosen, photos, cameras):
        fx, fy, cx, cy = camera
        centred = (abs(cx - 0.5 * width) <= RESAMPLE_TOLERANCE_PX and abs(cy - 0.5 * height) <= RESAMPLE_TOLERANCE_PX
                   and abs(fx - focal) <= RESAMPLE_TOLERANCE_PX and abs(fy - focal) <= RESAMPLE_TOLERANCE_PX)
        if not centred or np.any(capture.distortion[index] != 0):
            pixels = resample_to_pinhole(pixels, camera, capture.distortion[index], height, width, focal)
        images.append(pixels)
    return ViewSet(
        images=torch.from_numpy(np.stack(images)).float(),
        alphas=torch.ones(len(images), height, width),
        camtoworlds=torch.from_numpy(layout.camtoworlds[chosen]).float(),
        focal=float(focal), height=height, width=width, near=layout.near, far=layout.far,
        names=names, ndc=layout.ndc,
        kind=layout.kind, spread_deg=layout.spread_deg,
    )


def target_focal(capture: Capture, size: tuple[int, int], cameras: list[np.ndarray]) -> float:
    """The one focal length (pixels at the loaded size) of every split: the mean of (fx + fy) / 2
    over all photos, scaled to the loaded size (the first loaded photo's camera when all photos
    share one)."""
    intrinsics = capture.intrinsics
    if np.allclose(intrinsics, intrinsics[0]) and np.allclose(capture.sizes, capture.sizes[0]):
        fx, fy = cameras[0][:2]
        return float(0.5 * (fx + fy))
    height, width = size
    scale_x = width / capture.sizes[:, 0].astype(np.float64)
    scale_y = height / capture.sizes[:, 1].astype(np.float64)
    return float(np.mean(0.5 * (intrinsics[:, 0] * scale_x + intrinsics[:, 1] * scale_y)))
