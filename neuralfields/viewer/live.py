"""The live viewer: a training callback that shows the field while it trains.

    viewer = LiveViewer(host="127.0.0.1", port=8080)      # the server starts now; prints its URL
    try:
        train_nerf(config, callbacks=(viewer,))            # or train_occupancy(...)
    finally:
        viewer.training_done()                             # the last weights stay on view
    ...
    viewer.close()

How it shares the machine with training. Frames are rendered *in the training thread, between
optimisation steps*: a tab's render thread hands its frame to `TrainingThreadRunner` and waits,
and `on_step` runs waiting frames after the step. So a frame never sees a half-written optimiser
step, no copy of the weights is needed, and training and rendering never fight over the CPU
cores at the same time (on 2 cores, two torch thread pools at once slow both down many times).
Throttling: nothing renders unless a tab is connected and its camera, its settings or the
weights changed; the weights count as changed at most every `refresh_s` seconds; and rendering
may take at most `max_render_fraction` of the wall-clock time (a token bucket with a small
burst), so training keeps the rest. While training is paused (the GUI's button) frames render
without limit. After the last step (or once `training_done()` is called) the viewer renders
from a copy of the final weights in its own threads, so the final evaluation is not held up.
Any error in the viewer is reported (console and tabs) and training goes on.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
import traceback
from collections import deque
from types import GeneratorType
from typing import Any, Callable, Generator

from neuralfields.training.loop import Callback
from neuralfields.viewer.frames import RenderCancelled
from neuralfields.viewer.models import POLL_S, RENDER_LOCK, DirectRunner, ModelSlot, model_info

MAX_RENDER_FRACTION = 0.1
INTERACTIVE_RENDER_FRACTION = 0.5
BURST_S = 0.5
LIVE_CHUNK = 512
"""Rays per chunk while training: the live viewer gives the CPU back to training between chunks."""
REFRESH_S = 5.0
INFO_EVERY_S = 1.0


class _Job:
    __slots__ = ("fn", "interactive", "steps", "state", "result", "error", "done")

    def __init__(self, fn: Callable[[], Any], interactive: bool) -> None:
        self.fn = fn
        self.interactive = interactive
        self.steps: Generator | None = None  # a generator job between its chunks
        self.state = "queued"  # queued -> running <-> suspended -> done
        self.result = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class TrainingThreadRunner:
    """Render jobs run by the training thread in `serve()` (called from the callback's hooks).

    A generator job (frames.iter_render_nerf) runs a chunk of rays at a time, so a frame can be
    spread over several steps: `serve()` runs chunks while the time budget allows and leaves the
    rest for the next step. The budget: rendering may use `max_fraction` of the wall-clock time
    (`interactive_fraction` while a camera or settings change is being answered), with at most
    `burst_s` seconds saved up. Each chunk sees the weights after a whole optimiser step (a frame
    spread over steps mixes consecutive steps' weights). `detach()` makes jobs run directly."""

    def __init__(self, max_fraction: float = MAX_RENDER_FRACTION,
                 interactive_fraction: float = INTERACTIVE_RENDER_FRACTION, burst_s: float = BURST_S) -> None:
        self.max_fraction = max_fraction
        self.interactive_fraction = interactive_fraction
        self.burst_s = burst_s
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._direct: DirectRunner | None = None
        self._credit = burst_s
        self._last = time.monotonic()
        self.render_seconds = 0.0
        self.jobs_run = 0
        self.chunks_run = 0

    @property
    def attached(self) -> bool:
        return self._direct is None

    def run(self, job: Callable[[], Any], cancelled: Callable[[], bool] | None = None,
            interactive: bool = True) -> Any:
        if self._direct is not None:
            return self._direct.run(job, cancelled, interactive)
        item = _Job(job, interactive)
        with self._cond:
            self._jobs.append(item)
            self._cond.notify_all()
        while not item.done.wait(POLL_S):
            detached = self._direct is not None
            if not detached and not (cancelled is not None and cancelled()):
                continue
            with self._cond:  # give up on a job the training thread is not inside of right now
                dropped = item.state in ("queued", "suspended")
                if dropped:
                    self._jobs.remove(item)
                    item.state = "done"
            if dropped:  # the tab asks again (after detach(): of the final weights' copy)
                if item.steps is not None:
                    item.steps.close()
                raise RenderCancelled()
        if item.error is not None:
            raise item.error
        return item.result

    @property
    def pending(self) -> int:
        return len(self._jobs)

    def serve(self, throttle: bool = True) -> int:
        """Run waiting jobs' chunks in this (the training) thread while the budget allows;
        returns how many chunks ran."""
        now = time.monotonic()
        with self._cond:
            interactive = any(item.interactive for item in self._jobs)
        rate = self.interactive_fraction if interactive else self.max_fraction
        self._credit = min(self.burst_s, self._credit + rate * (now - self._last))
        self._last = now
        ran = 0
        while not throttle or self._credit > 0:
            with self._cond:
                if not self._jobs:
                    break
                item = self._jobs[0]
                item.state = "running"
            started = time.perf_counter()
            finished, result, error = False, None, None
            try:
                if item.steps is None:
                    outcome = item.fn()
                    if isinstance(outcome, GeneratorType):
                        item.steps = outcome
                    else:
                        finished, result = True, outcome
                if item.steps is not None:
                    try:
                        next(item.steps)
                    except StopIteration as done:
                        finished, result = True, done.value
            except Exception as exc:  # noqa: BLE001 - the render thread reports it
                finished, error = True, exc
            except BaseException:  # Ctrl-C in the training thread: drop the frame, stop training
                finished, error = True, RenderCancelled()
                raise
            finally:
                seconds = time.perf_counter() - started
                self._credit -= seconds
                self.render_seconds += seconds
                self.chunks_run += 1
                ran += 1
                with self._cond:
                    if finished:
                        if self._jobs and self._jobs[0] is item:
                            self._jobs.popleft()
                        item.result, item.error, item.state = result, error, "done"
                        self.jobs_run += 1
                        item.done.set()
                    else:
                        item.state = "suspended"
        return ran

    def wait_for_jobs(self, timeout: float) -> None:
        with self._cond:
            if not self._jobs:
                self._cond.wait(timeout)

    def detach(self) -> None:
        """From now on jobs run in the caller's thread (under the viewer's render lock); a frame
        the training thread had begun is dropped and asked for again by its tab."""
        self._direct = DirectRunner(RENDER_LOCK)
        with self._cond:
            self._cond.notify_all()


def _live_model(task) -> Any:
    """What the viewer renders of a running task (the live modules, no copy)."""
    from neuralfields.viewer.models import NerfModel, OccupancyModel

    if type(task.config).task == "nerf":
        return NerfModel(task.field, task.path, task.settings, min(task.config.eval_chunk, LIVE_CHUNK))
    return OccupancyModel(task.model)


def _frozen(model: Any) -> Any:
    """A copy of the live model for the viewer to keep after training (its own modules)."""
    from neuralfields.viewer.models import NerfModel, OccupancyModel

    if isinstance(model, NerfModel):
        field, path = copy.deepcopy((model.field, model.path))
        return NerfModel(field, path, model.settings, model.chunk)
    if isinstance(model, OccupancyModel):
        return OccupancyModel(copy.deepcopy(model.field))
    return model


class LiveViewer(Callback):
    """A viser viewer of the model being trained (see the module's docstring). The server starts
    when this is made; the view (NeRF or occupancy) is set up at the first training step."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, long_side: int | None = None,
                 preview_long_side: int | None = None, max_render_fraction: float = MAX_RENDER_FRACTION,
                 interactive_fraction: float = INTERACTIVE_RENDER_FRACTION, refresh_s: float = REFRESH_S,
                 mesh_resolution: int = 48, server=None, quiet: bool = False) -> None:
        """long_side / preview_long_side: frame sizes (default 128 / 32 px on a CPU, 512 / 128 on a
        GPU); refresh_s: how often new weights count as a change to render; the fractions: the
        share of wall-clock time frames may take (see TrainingThreadRunner)."""
        from neuralfields.viewer.server import start_server, url

        self.host = host
        self.long_side = long_side
        self.preview_long_side = preview_long_side
        self.refresh_s = refresh_s
        self.mesh_resolution = mesh_resolution
        self.runner = TrainingThreadRunner(max_render_fraction, interactive_fraction)
        self.slot = ModelSlot("live", runner=self.runner)
        self.slot.status = "waiting for the first training step"
        self.server = server if server is not None else start_server(host, port, label="neuralfields (training)")
        self.url = url(self.server, host)
        if not quiet:
            print(f"viewer: {self.url} (live while training)", flush=True)
        self.viewer = None
        self.paused = False
        self._placeholder = self.server.gui.add_markdown("**waiting for the first training step ...**")
        self._last_refresh = 0.0
        self._last_info = 0.0
        self._failures: list[str] = []
        self._done = False

    # callback hooks: never let an error of the viewer stop training --------------------------------
    def on_step(self, loop, stats: dict) -> None:
        self._guard(self._on_step, loop, stats)

    def on_eval(self, loop, metrics: dict) -> None:
        self._guard(self._on_eval, loop, metrics)

    def on_checkpoint(self, loop, path) -> None:
        self._guard(lambda: self.runner.serve() if self.runner.attached else None)

    def _guard(self, hook, *args) -> None:
        try:
            hook(*args)
        except Exception as exc:  # noqa: BLE001
            message = f"viewer error (training goes on): {type(exc).__name__}: {exc}"
            if message not in self._failures:
                self._failures.append(message)
                print(message, file=sys.stderr)
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            try:
                self.slot.set_status(message)
            except Exception:  # noqa: BLE001
                pass

    @property
    def failures(self) -> list[str]:
        return list(self._failures)

    # ---------------------------------------------------------------------------------------------
    def _attach(self, loop) -> None:
        from neuralfields.viewer.app import (
            DEFAULT_LONG_SIDE, GPU_LONG_SIDE, GPU_PREVIEW_LONG_SIDE, NerfScene, NerfViewer, OccupancyViewer,
        )
        from neuralfields.viewer.progressive import PREVIEW_LONG_SIDE

        task = loop.task
        config = loop.config
        info = {**model_info(task.model, config), "step": loop.step}
        self.slot.run_dir = loop.run_dir
        self.slot.set_model(_live_model(task), **info)
        if type(config).task == "nerf":
            scene = NerfScene.from_config(config)
            on_gpu = next(task.model.parameters()).device.type == "cuda"
            self.viewer = NerfViewer(self.server, [self.slot], scene, save_dir=loop.run_dir,
                                     long_side=self.long_side or (GPU_LONG_SIDE if on_gpu else DEFAULT_LONG_SIDE),
                                     preview_long_side=self.preview_long_side
                                     or (GPU_PREVIEW_LONG_SIDE if on_gpu else PREVIEW_LONG_SIDE),
                                     live=self, host=self.host)
        else:
            unit_mesh = getattr(task, "unit_mesh", None)
            self.viewer = OccupancyViewer(self.server, [self.slot], truth=(lambda: unit_mesh) if unit_mesh is not None
                                          else None, mesh_resolution=self.mesh_resolution, live=self,
                                          host=self.host, save_dir=loop.run_dir)
        self._placeholder.remove()
        self._last_refresh = time.monotonic()

    def _on_step(self, loop, stats: dict) -> None:
        if self._done:
            return
        if self.viewer is None:
            self._attach(loop)
        now = time.monotonic()
        connected = self.viewer.client_count > 0
        if connected and now - self._last_info >= INFO_EVERY_S:
            self._last_info = now
            info = {"step": loop.step}
            if "psnr" in stats:
                info.update(psnr=float(stats["psnr"]), psnr_label="train PSNR")
            elif "loss" in stats:
                info.update(loss=float(stats["loss"]))
            self.slot.update_info(**info)
        self.runner.serve()  # frames asked for since the last step (they see this step's weights)
        if connected and now - self._last_refresh >= self.refresh_s:
            self._last_refresh = now
            self.slot.weights_changed(step=loop.step)
        if self.paused:
            self._pause(loop)
        if loop.progress() >= 1.0:  # the last step: keep a copy and let evaluation run undisturbed
            self._finish(loop.step)

    def _pause(self, loop) -> None:
        self._set_pause_labels(True)
        self.slot.set_status(f"training paused at step {loop.step:,}")
        self.slot.weights_changed(step=loop.step)  # render the paused weights at once
        while self.paused:
            self.runner.serve(throttle=False)
            self.runner.wait_for_jobs(0.1)
        self.slot.set_status("")
        self._set_pause_labels(False)

    def _set_pause_labels(self, paused: bool) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        with viewer._lock:
            sessions = list(viewer.sessions.values())
        for session in sessions:
            if getattr(session, "pause_button", None) is not None and not session.closed:
                session.pause_button.label = "resume training" if paused else "pause training"

    def _on_eval(self, loop, metrics: dict) -> None:
        info = {}
        for key, label in (("test_psnr", "test PSNR"), ("val_psnr", "val PSNR")):
            if metrics.get(key) is not None:
                info.update(psnr=float(metrics[key]), psnr_label=label)
                break
        if metrics.get("iou_grid") is not None:
            info["iou"] = float(metrics["iou_grid"])
        if info:
            self.slot.update_info(**info)
        if self.runner.attached:
            self.runner.serve()

    def _finish(self, step: int | None = None) -> None:
        if self._done:
            return
        self._done = True
        self.paused = False
        if self.slot.model is not None:
            self.slot.set_model(_frozen(self.slot.model), **({"step": step} if step is not None else {}))
        self.runner.detach()

    def training_done(self) -> None:
        """Training ended (or failed): render from the last weights in the viewer's own threads."""
        self._guard(self._finish)

    def close(self) -> None:
        self._finish()
        if self.viewer is not None:
            self.viewer.close()
        else:
            self.server.stop()
