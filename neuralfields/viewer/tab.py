"""A scripted browser tab: viser's websocket protocol without a browser, for tests and benchmarks.

    tab = TabClient(viewer.server.get_port())
    tab.send_camera(camtoworld, fov_y, 300, 400)       # as a browser reports its camera
    frames = tab.wait_backgrounds(2)                   # the background images it was sent
    tab.close()
"""

from __future__ import annotations

import io
import threading

import numpy as np

from neuralfields.viewer.models import wait_until

TIMEOUT_S = 30.0


class TabClient:
    """A browser tab as far as the server can tell: viser's websocket protocol (msgpack in,
    zstd-compressed msgpack windows out), a camera it reports, and the messages it got."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        import viser
        from websockets.sync.client import connect

        self.ws = connect(f"ws://{host}:{port}", subprotocols=[f"viser-v{viser.__version__}"],
                          max_size=50 * 1024 * 1024, open_timeout=10)
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._receive, daemon=True, name="tab-client")
        self._thread.start()

    def _receive(self) -> None:
        import msgspec
        import zstandard

        decompressor = zstandard.ZstdDecompressor()
        try:
            for raw in self.ws:
                size = int.from_bytes(raw[0:8], "little")
                compressed = int.from_bytes(raw[8:16], "little")
                inner = decompressor.decompress(raw[16:16 + compressed], max_output_size=size)
                window = msgspec.msgpack.decode(inner)
                with self._lock:
                    self.messages.extend(window["messages"])
        except Exception:  # noqa: BLE001 - closed
            return

    def send_camera(self, camtoworld, fov_y: float, height: int, width: int) -> None:
        """Report the pose of an OpenGL camera-to-world matrix as a browser would: viser's
        camera is OpenCV (x right, y down, z forward), written out here independently of the
        viewer's own conversion (neuralfields.viewer.cameras), so tests can check that one."""
        import msgspec
        import viser
        from viser import _messages

        camtoworld = np.asarray(camtoworld, dtype=np.float64)
        right, up, forward = camtoworld[:3, 0], camtoworld[:3, 1], -camtoworld[:3, 2]
        wxyz = viser.transforms.SO3.from_matrix(np.stack([right, -up, forward], axis=1)).wxyz
        position = camtoworld[:3, 3]
        message = _messages.ViewerCameraMessage(
            wxyz=tuple(float(v) for v in wxyz), position=tuple(float(v) for v in position), fov=float(fov_y),
            near=0.01, far=1000.0, image_height=height, image_width=width,
            look_at=tuple(float(v) for v in position + forward), up_direction=(0.0, 0.0, 1.0))
        self.ws.send(msgspec.msgpack.encode(message.as_serializable_dict()))

    def of_type(self, name: str) -> list[dict]:
        with self._lock:
            return [m for m in self.messages if m.get("type") == name]

    def background_count(self) -> int:
        """How many background images (frames) arrived, without decoding them."""
        return sum(1 for m in self.of_type("BackgroundImageMessage") if m.get("rgb_data"))

    def backgrounds(self) -> list[np.ndarray]:
        """Every background image received so far, decoded (uint8 (H,W,3))."""
        from PIL import Image

        return [np.asarray(Image.open(io.BytesIO(m["rgb_data"])).convert("RGB"))
                for m in self.of_type("BackgroundImageMessage") if m.get("rgb_data")]

    def wait_backgrounds(self, count: int, timeout: float = TIMEOUT_S) -> list[np.ndarray]:
        """The background images once at least `count` arrived; TimeoutError after `timeout` s."""
        if not wait_until(lambda: self.background_count() >= count, timeout):
            raise TimeoutError(f"no {count} frames within {timeout} s")
        return self.backgrounds()

    def close(self) -> None:
        self.ws.close()
        self._thread.join(5.0)
