"""One render thread per browser client: the newest camera wins, small frames while it moves,
the chosen resolution once it has been still for a moment.

Cameras arrive far faster than frames render (one mouse drag sends ~20 updates), so nothing is
queued: the thread always takes the newest camera. A full-size frame in progress is abandoned
(between ray chunks) as soon as a newer camera or new settings arrive; a preview is finished
first (so that a long drag on a slow CPU still shows frames) and then the newest camera is next.
Nothing here knows about viser; `render(camera, long_side, cancelled, interactive, preview)` and
`show(result, info)` are the client's (`interactive`: the frame answers a camera or settings
change, not only new weights; `preview`: a small frame while the camera moves, which the client
may render with faster, coarser settings).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from neuralfields.viewer.cameras import ViewCamera
from neuralfields.viewer.frames import RenderCancelled

PREVIEW_LONG_SIDE = 32
SETTLE_S = 0.2


@dataclass
class FrameInfo:
    """What one shown frame was: its long side, whether it is a preview, and its render time."""

    long_side: int
    preview: bool
    seconds: float
    camera: ViewCamera


@dataclass
class RenderStats:
    shown: int = 0
    previews: int = 0
    cancelled: int = 0
    failed: int = 0
    history: list = field(default_factory=list)  # FrameInfo of shown frames (last 100)


class ProgressiveRenderer:
    """Renders the newest camera of one client in its own thread (see the module's docstring)."""

    def __init__(self, render: Callable[[ViewCamera, int, Callable[[], bool], bool, bool], Any],
                 show: Callable[[Any, FrameInfo], None], long_side: int = 256,
                 preview_long_side: int = PREVIEW_LONG_SIDE, settle_s: float = SETTLE_S,
                 on_error: Callable[[BaseException], None] | None = None, name: str = "viewer-render") -> None:
        self._render, self._show, self._on_error = render, show, on_error
        self.preview_long_side = preview_long_side
        self.settle_s = settle_s
        self.stats = RenderStats()
        self._cond = threading.Condition()
        self._long_side = long_side
        self._camera: ViewCamera | None = None
        self._camera_version = 0
        self._camera_time = 0.0
        self._generation = 0  # settings changes: a frame in progress is dropped
        self._refresh = 0  # new weights: the current camera renders again
        self._done: tuple | None = None  # (camera version, (generation, refresh), preview)
        self._full_seconds: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ---- called from viser's threads -------------------------------------------------------
    def set_camera(self, camera: ViewCamera) -> None:
        with self._cond:
            self._camera = camera
            self._camera_version += 1
            self._camera_time = time.monotonic()
            self._cond.notify_all()

    def invalidate(self, cancel: bool = True) -> None:
        """Settings (cancel=True: a frame in progress is dropped) or weights (cancel=False: it is
        still shown) changed: render the current camera again at full resolution."""
        with self._cond:
            if cancel:
                self._generation += 1
            else:
                self._refresh += 1
            self._cond.notify_all()

    @property
    def long_side(self) -> int:
        return self._long_side

    @long_side.setter
    def long_side(self, value: int) -> None:
        with self._cond:
            self._long_side = int(value)
            self._full_seconds = None
            self._generation += 1
            self._cond.notify_all()

    @property
    def camera(self) -> ViewCamera | None:
        return self._camera

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the thread (a frame in progress is abandoned at its next chunk); True once it ended."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- the render thread -----------------------------------------------------------------
    def _next_job(self) -> tuple[ViewCamera, int, tuple[int, int], int, bool, bool] | None:
        """Wait for something to render: (camera, version, generation, long side, preview,
        interactive), or None once closed."""
        with self._cond:
            while not self._closed:
                if self._camera is not None:
                    version, generation = self._camera_version, (self._generation, self._refresh)
                    long_side = self._long_side
                    if self._done is None or self._done[:2] != (version, generation):
                        moved = self._done is None or self._done[0] != version
                        quick = self._full_seconds is not None and self._full_seconds < self.settle_s / 2
                        preview = moved and not quick and self.preview_long_side < long_side
                        interactive = moved or self._done[1][0] != generation[0]
                        return (self._camera, version, generation, self.preview_long_side if preview else long_side,
                                preview, interactive)
                    if self._done[2]:  # a preview is showing: refine once the camera has been still
                        still = time.monotonic() - self._camera_time
                        if still >= self.settle_s:
                            return self._camera, version, generation, long_side, False, True
                        self._cond.wait(self.settle_s - still)
                        continue
                self._cond.wait()
            return None

    def _cancelled(self, version: int, generation: tuple[int, int], preview: bool) -> Callable[[], bool]:
        """When a frame is abandoned: on close, on new settings and, for a full-size frame, when
        the camera moves. A preview is finished even when the camera moved meanwhile (then the
        newest camera is next), so a slow renderer still shows something during a long drag."""
        if preview:
            return lambda: self._closed or self._generation != generation[0]
        return lambda: self._closed or self._camera_version != version or self._generation != generation[0]

    def _loop(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            camera, version, generation, long_side, preview, interactive = job
            started = time.perf_counter()
            try:
                result = self._render(camera, long_side, self._cancelled(version, generation, preview), interactive,
                                      preview)
            except RenderCancelled:
                self.stats.cancelled += 1
                continue
            except Exception as exc:  # noqa: BLE001 - a failed frame must not end the thread
                self.stats.failed += 1
                with self._cond:
                    self._done = (version, generation, False)  # do not retry the same view in a loop
                self._report(exc)
                continue
            seconds = time.perf_counter() - started
            if self._closed:
                return
            if result is None:  # nothing to show yet (e.g. no weights): wait for the next change
                with self._cond:
                    self._done = (version, generation, False)
                continue
            info = FrameInfo(long_side, preview, seconds, camera)
            try:
                self._show(result, info)
            except Exception as exc:  # noqa: BLE001 - e.g. the client went away meanwhile
                self._report(exc)
            self.stats.shown += 1
            self.stats.previews += preview
            self.stats.history = [*self.stats.history[-99:], info]
            with self._cond:
                self._done = (version, generation, preview)
                if not preview:
                    self._full_seconds = seconds

    def _report(self, exc: BaseException) -> None:
        if self._on_error is not None:
            try:
                self._on_error(exc)
                return
            except Exception:  # noqa: BLE001
                pass
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
