"""The browser's camera in the dataset's convention.

viser reports a client's camera as `wxyz` (the rotation R in P_world = R p_camera + t) and
`position` (t) in the OpenCV convention (+Z forward, -Y up, +X right), with a vertical field of
view and the canvas aspect (width / height). Our cameras (neuralfields.rendering.cameras) follow
OpenGL / Blender: the camera looks down -Z with +Y up. The two frames differ by a flip of the Y
and Z axes, so camtoworld[:3, :3] = R_opencv @ diag(1, -1, -1), and the pinhole focal at an
image height H is 0.5 * H / tan(fov / 2) (square pixels, principal point at the centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from viser import transforms as tf

OPENCV_FROM_OPENGL = np.diag([1.0, -1.0, -1.0])
"""Right-multiplying a camera rotation by this flips it between OpenCV and OpenGL axes."""


def camtoworld_from_viser(wxyz, position) -> np.ndarray:
    """A viser camera pose (OpenCV) as a 4x4 OpenGL camera-to-world matrix (float64)."""
    pose = np.eye(4)
    pose[:3, :3] = tf.SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix() @ OPENCV_FROM_OPENGL
    pose[:3, 3] = np.asarray(position, dtype=np.float64)
    return pose


def viser_pose_from_camtoworld(camtoworld) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz, position) of a 4x4 OpenGL camera-to-world matrix in viser's OpenCV convention
    (also what scene.add_camera_frustum expects)."""
    camtoworld = np.asarray(camtoworld, dtype=np.float64)
    rotation = camtoworld[:3, :3] @ OPENCV_FROM_OPENGL
    return tf.SO3.from_matrix(rotation).wxyz, camtoworld[:3, 3].copy()


def focal_from_fov(fov_y: float, height: int) -> float:
    """Focal length in pixels of an image `height` pixels high seen with vertical fov `fov_y` (radians)."""
    return 0.5 * height / math.tan(0.5 * fov_y)


def fov_from_focal(focal: float, height: int) -> float:
    """Vertical field of view (radians) of a pinhole of `focal` pixels and `height` rows."""
    return 2.0 * math.atan(0.5 * height / focal)


def image_size(long_side: int, aspect: float) -> tuple[int, int]:
    """(height, width) whose longer side is `long_side` pixels and whose width / height is `aspect`."""
    long_side = max(1, int(long_side))
    aspect = aspect if math.isfinite(aspect) and aspect > 0 else 1.0
    if aspect >= 1.0:
        return max(1, round(long_side / aspect)), long_side
    return long_side, max(1, round(long_side * aspect))


@dataclass(frozen=True)
class ViewCamera:
    """One camera to render: OpenGL camera-to-world (4x4), vertical fov (radians), aspect (w / h)."""

    camtoworld: np.ndarray
    fov_y: float
    aspect: float

    @classmethod
    def from_viser(cls, wxyz, position, fov_y: float, aspect: float) -> ViewCamera:
        return cls(camtoworld_from_viser(wxyz, position), float(fov_y), float(aspect))

    @classmethod
    def from_handle(cls, camera) -> ViewCamera:
        """From a viser CameraHandle (a client's camera)."""
        return cls.from_viser(camera.wxyz, camera.position, camera.fov, camera.aspect)

    @classmethod
    def from_view(cls, camtoworld, focal: float, height: int, width: int) -> ViewCamera:
        """The camera of a dataset view (camtoworld, focal in pixels at height x width)."""
        camtoworld = camtoworld.numpy() if isinstance(camtoworld, torch.Tensor) else np.asarray(camtoworld)
        return cls(camtoworld.astype(np.float64), fov_from_focal(focal, height), width / height)

    def focal(self, height: int) -> float:
        return focal_from_fov(self.fov_y, height)

    def camtoworld_tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.camtoworld).float()

    def with_aspect(self, aspect: float) -> ViewCamera:
        return ViewCamera(self.camtoworld, self.fov_y, aspect)
