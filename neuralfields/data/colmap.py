"""Reader (and writer, for tests) of a COLMAP sparse model: cameras, images and points3D, as binary
(.bin) or text (.txt) files, in the layout COLMAP documents
(https://colmap.github.io/format.html). A small reader of that format rather than pycolmap: the
format is short and stable, and the library stays free of a large compiled dependency.

Where the model lives: `<scene>/sparse/0/`, `<scene>/sparse/`, `<scene>/colmap/sparse/0/`
(nerfstudio's layout) or the scene folder itself; the photos in `<scene>/images/` under the names
images.* gives them. Poses are world-to-camera (a unit quaternion qw qx qy qz and a translation)
in OpenCV's camera axes (x right, y down, z forward); they become OpenGL camera-to-worlds.
Depth bounds per photo come from the 3D points it observes, as LLFF's imgs2poses computes them
(the 0.1 and 99.9 percentiles of their depths), so forward-facing COLMAP captures can use NDC.
Camera models: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV (the perspective ones
COLMAP and nerfstudio use for phone photos); others are refused in one line.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from neuralfields.data.captures import Capture
from neuralfields.errors import NeuralFieldsError
from neuralfields.media import save_png

MODEL_DIRS = ("sparse/0", "sparse", "colmap/sparse/0", ".")
# name, COLMAP model id, parameter count
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
}
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
MODEL_IDS = {name: model_id for model_id, (name, _) in CAMERA_MODELS.items()}
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def colmap_model_dir(scene_dir: str | Path) -> Path | None:
    """The folder of the scene's sparse model (cameras + images, .bin or .txt), or None."""
    scene_dir = Path(scene_dir)
    for relative in MODEL_DIRS:
        folder = scene_dir / relative
        for suffix in (".bin", ".txt"):
            if (folder / f"cameras{suffix}").is_file() and (folder / f"images{suffix}").is_file():
                return folder
    return None


def _intrinsics(model: str, params: list[float], where: str) -> tuple[list[float], list[float]]:
    """(fx, fy, cx, cy), (k1, k2, k3, k4, p1, p2) of a supported camera model."""
    if model not in SUPPORTED_MODELS:
        raise NeuralFieldsError(f"{where}: unknown camera model {model}; supported: {', '.join(SUPPORTED_MODELS)}")
    expected = CAMERA_MODELS[MODEL_IDS[model]][1]
    if len(params) != expected:
        raise NeuralFieldsError(f"{where}: a {model} camera has {expected} parameters, got {len(params)}")
    if model == "SIMPLE_PINHOLE":
        f, cx, cy = params
        return [f, f, cx, cy], [0.0] * 6
    if model == "PINHOLE":
        return list(params), [0.0] * 6
    if model == "SIMPLE_RADIAL":
        f, cx, cy, k = params
        return [f, f, cx, cy], [k, 0.0, 0.0, 0.0, 0.0, 0.0]
    if model == "RADIAL":
        f, cx, cy, k1, k2 = params
        return [f, f, cx, cy], [k1, k2, 0.0, 0.0, 0.0, 0.0]
    fx, fy, cx, cy, k1, k2, p1, p2 = params  # OPENCV
    return [fx, fy, cx, cy], [k1, k2, 0.0, 0.0, p1, p2]


def _data_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise NeuralFieldsError(f"cannot read {path}: {exc}") from None


def _read_cameras_text(path: Path) -> dict[int, tuple]:
    cameras = {}
    for number, line in enumerate(_data_lines(path), 1):
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{path} line {number}"
        try:
            camera_id, model, width, height = int(fields[0]), fields[1], int(fields[2]), int(fields[3])
            params = [float(value) for value in fields[4:]]
        except (IndexError, ValueError):
            raise NeuralFieldsError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]") from None
        cameras[camera_id] = (*_intrinsics(model, params, where), (width, height))
    return cameras


def _read_images_text(path: Path) -> list[tuple]:
    """(name, qvec, tvec, camera_id, observed point ids) per image."""
    lines = _data_lines(path)
    images, number = [], 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{path} line {number}"
        try:
            qvec = np.array([float(v) for v in fields[1:5]])
            tvec = np.array([float(v) for v in fields[5:8]])
            camera_id, name = int(fields[8]), fields[9]
        except (IndexError, ValueError):
            raise NeuralFieldsError(f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME") from None
        points = lines[number].split() if number < len(lines) else []  # POINTS2D[] as (X, Y, POINT3D_ID)
        number += 1
        point_ids = np.array([int(float(v)) for v in points[2::3]], dtype=np.int64)
        images.append((name, qvec, tvec, camera_id, point_ids[point_ids >= 0]))
    return images


def _read_points_text(path: Path) -> dict[int, np.ndarray]:
    points = {}
    for number, line in enumerate(_data_lines(path), 1):
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        try:
            points[int(fields[0])] = np.array([float(v) for v in fields[1:4]])
        except (IndexError, ValueError):
            raise NeuralFieldsError(f"{path} line {number}: expected POINT3D_ID X Y Z R G B ERROR TRACK[]") from None
    return points


class _Binary:
    """Little-endian reads from a COLMAP .bin file, with one-line errors when it ends early."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as exc:
            raise NeuralFieldsError(f"cannot read {path}: {exc}") from None
        self.offset = 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise NeuralFieldsError(f"{self.path} ends early (truncated or not a COLMAP binary model)")
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def skip(self, size: int) -> None:
        if self.offset + size > len(self.data):
            raise NeuralFieldsError(f"{self.path} ends early (truncated or not a COLMAP binary model)")
        self.offset += size

    def name(self) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise NeuralFieldsError(f"{self.path} ends early (truncated or not a COLMAP binary model)")
        text = self.data[self.offset:end].decode("utf-8", errors="replace")
        self.offset = end + 1
        return text


def _read_cameras_binary(path: Path) -> dict[int, tuple]:
    reader, cameras = _Binary(path), {}
    (count,) = reader.read("Q")
    for _ in range(count):
        camera_id, model_id, width, height = reader.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise NeuralFieldsError(f"{path}: camera {camera_id}: unknown camera model id {model_id}; supported: "
                                    f"{', '.join(SUPPORTED_MODELS)}")
        name, num_params = CAMERA_MODELS[model_id]
        params = list(reader.read("d" * num_params))
        cameras[camera_id] = (*_intrinsics(name, params, f"{path}: camera {camera_id}"), (width, height))
    return cameras


def _read_images_binary(path: Path) -> list[tuple]:
    reader, images = _Binary(path), []
    (count,) = reader.read("Q")
    for _ in range(count):
        values = reader.read("idddddddi")
        name = reader.name()
        (num_points,) = reader.read("Q")
        observations = reader.read("ddq" * num_points)
        point_ids = np.array(observations[2::3], dtype=np.int64)
        images.append((name, np.array(values[1:5]), np.array(values[5:8]), values[8], point_ids[point_ids >= 0]))
    return images


def _read_points_binary(path: Path) -> dict[int, np.ndarray]:
    reader, points = _Binary(path), {}
    (count,) = reader.read("Q")
    for _ in range(count):
        values = reader.read("QdddBBBd")
        (track_length,) = reader.read("Q")
        reader.skip(8 * track_length)
        points[values[0]] = np.array(values[1:4])
    return points


def qvec_to_rotation(qvec: np.ndarray) -> np.ndarray:
    """The rotation matrix of a unit quaternion (w, x, y, z), COLMAP's convention."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * x * z + 2 * w * y],
        [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
        [2 * x * z - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y],
    ])


def rotation_to_qvec(rotation: np.ndarray) -> np.ndarray:
    """A unit quaternion (w, x, y, z) with w >= 0 of a rotation matrix."""
    r = np.asarray(rotation, dtype=np.float64)
    w = np.sqrt(max(0.0, 1.0 + np.trace(r))) / 2.0
    if w > 1e-3:
        q = np.array([w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)])
    else:  # a half turn: pick the largest diagonal term
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = np.sqrt(max(0.0, 1.0 + r[i, i] - r[j, j] - r[k, k])) * 2.0
        q = np.zeros(4)
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i], q[1 + j], q[1 + k] = s / 4.0, (r[j, i] + r[i, j]) / s, (r[k, i] + r[i, k]) / s
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def _depth_bounds(camtoworld_cv: np.ndarray, points: np.ndarray) -> tuple[float, float] | None:
    depths = (points - camtoworld_cv[:3, 3]) @ camtoworld_cv[:3, 2]
    depths = depths[depths > 0]
    if depths.size == 0:
        return None
    return float(np.percentile(depths, 0.1)), float(np.percentile(depths, 99.9))


def read_colmap_capture(scene_dir: str | Path) -> Capture:
    """The photos and cameras of a scene folder holding a COLMAP sparse model, sorted by name."""
    scene_dir = Path(scene_dir)
    folder = colmap_model_dir(scene_dir)
    if folder is None:
        raise NeuralFieldsError(f"no COLMAP sparse model (cameras + images, .bin or .txt) in {scene_dir}/"
                                f"{{{', '.join(MODEL_DIRS)}}}")
    binary = (folder / "cameras.bin").is_file() and (folder / "images.bin").is_file()
    suffix = ".bin" if binary else ".txt"
    cameras = (_read_cameras_binary if binary else _read_cameras_text)(folder / f"cameras{suffix}")
    images = (_read_images_binary if binary else _read_images_text)(folder / f"images{suffix}")
    points_path = folder / f"points3D{suffix}"
    points = (_read_points_binary if binary else _read_points_text)(points_path) if points_path.is_file() else {}
    if not images:
        raise NeuralFieldsError(f"{folder / ('images' + suffix)} lists no images")
    image_dir = scene_dir / "images"
    all_points = np.stack(list(points.values())) if points else np.zeros((0, 3))
    entries = []
    for name, qvec, tvec, camera_id, point_ids in sorted(images, key=lambda image: image[0]):
        if camera_id not in cameras:
            raise NeuralFieldsError(f"{folder / ('images' + suffix)}: image {name} uses camera {camera_id}, which "
                                    f"cameras{suffix} does not define")
        file = image_dir / name
        if not file.is_file():
            raise NeuralFieldsError(f"{folder / ('images' + suffix)} lists {name}, which is not a file in {image_dir}")
        rotation = qvec_to_rotation(qvec)
        camtoworld_cv = np.eye(4)
        camtoworld_cv[:3, :3] = rotation.T
        camtoworld_cv[:3, 3] = -rotation.T @ tvec
        seen = [points[i] for i in point_ids.tolist() if i in points]
        bounds = _depth_bounds(camtoworld_cv, np.stack(seen) if seen else all_points) if len(all_points) else None
        intrinsics, distortion, size = cameras[camera_id]
        entries.append((file, camtoworld_cv @ OPENCV_TO_OPENGL, intrinsics, size, distortion, bounds))
    files, poses, intrinsics, sizes, distortion, bounds = zip(*entries)
    known = None if any(b is None for b in bounds) else np.array(bounds)
    model = "binary" if binary else "text"
    return Capture(f"COLMAP {model} model {folder}", list(files), np.stack(poses), np.array(intrinsics),
                   np.array(sizes, dtype=np.float64), np.array(distortion), known)


def save_colmap_model(scene_dir: str | Path, camtoworlds: np.ndarray, images: np.ndarray, focal: float,
                      points: np.ndarray | None = None, binary: bool = False, model: str = "PINHOLE") -> Path:
    """Write posed images (camtoworlds (N,4,4) OpenGL, images (N,H,W,3) in [0,1], a centred pinhole
    of `focal` pixels) as a COLMAP capture: images/IMG_0000.png ... and sparse/0/{cameras, images,
    points3D}.{txt|bin}, with one shared camera of the given model (PINHOLE or SIMPLE_PINHOLE) and
    `points` (M,3), seen by every image, as the 3D points."""
    scene_dir = Path(scene_dir)
    (scene_dir / "images").mkdir(parents=True, exist_ok=True)
    folder = scene_dir / "sparse" / "0"
    folder.mkdir(parents=True, exist_ok=True)
    height, width = images.shape[1:3]
    params = {"PINHOLE": [focal, focal, width / 2, height / 2], "SIMPLE_PINHOLE": [focal, width / 2, height / 2]}[model]
    points = np.zeros((0, 3)) if points is None else np.asarray(points, dtype=np.float64)
    rows = []
    for index, (pose, image) in enumerate(zip(camtoworlds, images)):
        name = f"IMG_{index:04d}.png"
        save_png(scene_dir / "images" / name, image)
        camtoworld_cv = np.asarray(pose, dtype=np.float64) @ OPENCV_TO_OPENGL
        rotation = camtoworld_cv[:3, :3].T
        rows.append((index + 1, rotation_to_qvec(rotation), -rotation @ camtoworld_cv[:3, 3], name))
    if binary:
        data = struct.pack("<Q", 1) + struct.pack("<iiQQ", 1, MODEL_IDS[model], width, height)
        (folder / "cameras.bin").write_bytes(data + struct.pack("<" + "d" * len(params), *params))
        data = struct.pack("<Q", len(rows))
        for image_id, qvec, tvec, name in rows:
            data += struct.pack("<idddddddi", image_id, *qvec, *tvec, 1) + name.encode() + b"\0"
            data += struct.pack("<Q", len(points))
            for point_id in range(len(points)):
                data += struct.pack("<ddq", 0.0, 0.0, point_id + 1)
        (folder / "images.bin").write_bytes(data)
        data = struct.pack("<Q", len(points))
        for point_id, xyz in enumerate(points):
            data += struct.pack("<QdddBBBd", point_id + 1, *xyz, 128, 128, 128, 0.5) + struct.pack("<Q", 0)
        (folder / "points3D.bin").write_bytes(data)
        return scene_dir
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"1 {model} {width} {height} " + " ".join(f"{v:.17g}" for v in params)]
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:"]
    observed = " ".join(f"0 0 {point_id + 1}" for point_id in range(len(points)))
    for image_id, qvec, tvec, name in rows:
        lines.append(f"{image_id} " + " ".join(f"{v:.17g}" for v in (*qvec, *tvec)) + f" 1 {name}")
        lines.append(observed)
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# 3D point list with one line of data per point:"]
    lines += [f"{i + 1} " + " ".join(f"{v:.17g}" for v in xyz) + " 128 128 128 0.5" for i, xyz in enumerate(points)]
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")
    return scene_dir
