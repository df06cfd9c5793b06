"""What the viewer renders: a slot per run holding its current model, its readout, and how
render jobs reach the model.

A slot's model changes when a newer checkpoint is loaded or, during training, it *is* the live
model. Render jobs go through the slot's runner: `DirectRunner` runs them in the render thread,
one at a time across all clients (on 2 cores two frames at once only slow each other down);
the live viewer's runner runs them in the training thread between optimisation steps
(neuralfields.viewer.live), so a frame never sees a half-written step.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import GeneratorType
from typing import Any, Callable

from neuralfields.errors import NeuralFieldsError
from neuralfields.rendering.render import RenderSettings
from neuralfields.viewer.frames import RenderCancelled, finish

POLL_S = 0.05


class DirectRunner:
    """Runs a render job in the calling thread under a lock (shared by every slot by default)."""

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self.lock = lock if lock is not None else RENDER_LOCK

    def run(self, job: Callable[[], Any], cancelled: Callable[[], bool] | None = None,
            interactive: bool = True) -> Any:
        """job() (a generator job is run to its end: see frames.iter_render_nerf)."""
        while not self.lock.acquire(timeout=POLL_S):
            if cancelled is not None and cancelled():
                raise RenderCancelled()
        try:
            result = job()
            return finish(result) if isinstance(result, GeneratorType) else result
        finally:
            self.lock.release()


RENDER_LOCK = threading.Lock()
"""One frame at a time in this process (all clients, all runs) outside training."""


@dataclass
class NerfModel:
    """What renders a NeRF view: field, sampling path, the run's render settings and chunk."""

    field: Any
    path: Any
    settings: RenderSettings
    chunk: int = 4096


@dataclass
class OccupancyModel:
    """An occupancy network (points in the padded unit cube -> inside logit)."""

    field: Any


class ModelSlot:
    """One run's model as the viewer sees it. `info` feeds the readout: spec, kind, rank,
    parameters, percent_of_dense, step, psnr (+ psnr_label), and task metrics; `status` says
    what the slot waits for. Listeners hear `("model", slot)` when the weights changed and
    `("info", slot)` when only the readout did."""

    def __init__(self, name: str, runner=None, run_dir: Path | None = None) -> None:
        self.name = name
        self.runner = runner if runner is not None else DirectRunner()
        self.run_dir = run_dir
        self.model: Any = None
        self.version = 0
        self.info: dict = {}
        self.status = "waiting for weights"
        self._listeners: list[Callable[[str, ModelSlot], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Callable[[str, "ModelSlot"], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, what: str) -> None:
        with self._lock:
            listeners = tuple(self._listeners)
        for listener in listeners:
            try:
                listener(what, self)
            except Exception:  # noqa: BLE001 - one bad client must not stop the others
                pass

    def set_model(self, model: Any, **info) -> None:
        self.model = model
        self.version += 1
        self.info.update(info)
        self.status = ""
        self._notify("model")

    def weights_changed(self, **info) -> None:
        """The model's weights changed in place (live training): clients render again."""
        self.version += 1
        self.info.update(info)
        self._notify("model")

    def update_info(self, **info) -> None:
        self.info.update(info)
        self._notify("info")

    def set_status(self, status: str) -> None:
        self.status = status
        self._notify("info")

    def run(self, job: Callable[[Any], Any], cancelled: Callable[[], bool] | None = None,
            interactive: bool = True) -> Any:
        """job(model) through the runner; None while there is no model yet. `interactive`: asked
        for by a camera or settings change (not only new weights), which the live runner serves
        with a larger share of the time."""
        model = self.model
        if model is None:
            return None
        return self.runner.run(lambda: job(model), cancelled, interactive)

    def describe(self) -> str:
        """One line: spec, parameters (% of dense), step and PSNR or IoU."""
        info = self.info
        parts = [str(info.get("spec", self.name))]
        if "parameters" in info:
            parts.append(f"{info['parameters']:,} params ({info['percent_of_dense']:.1f}% of dense)")
        if info.get("step") is not None:
            parts.append(f"step {info['step']:,}")
        if info.get("psnr") is not None:
            parts.append(f"{info.get('psnr_label', 'PSNR')} {info['psnr']:.2f} dB")
        if info.get("iou") is not None:
            parts.append(f"IoU {info['iou']:.3f}")
        return " · ".join(parts)


def model_info(model, config) -> dict:
    """The readout fields every slot has: spec, kind, rank, parameters and % of dense."""
    from neuralfields.layers.counting import parameter_report

    report = parameter_report(model)
    return {"spec": str(config.spec), "kind": config.spec.kind, "rank": config.spec.rank,
            "parameters": report["parameters"], "percent_of_dense": report["percent_of_dense"],
            "dense_parameters": report["dense_parameters"]}


def checkpoint_step(checkpoint: Path) -> int | None:
    try:
        return int(Path(checkpoint).name.split("_", 1)[1])
    except (IndexError, ValueError):
        return None


class RunSlot(ModelSlot):
    """A slot fed by a run folder: the latest checkpoint, reloaded when a newer one appears (a
    poller checks every `poll_s` seconds while the run trains or has no checkpoint yet)."""

    def __init__(self, run, device, make_model: Callable[[Any], Any], poll_s: float = 5.0) -> None:
        super().__init__(run.path.name, run_dir=run.path)
        self.run_ = run
        self.device = device
        self.make_model = make_model
        self.poll_s = poll_s
        self.checkpoint: Path | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._reload_lock = threading.Lock()
        self.info.update({"spec": str(run.config.spec), "kind": run.config.spec.kind, "rank": run.config.spec.rank})
        self.reload()

    def reload(self) -> bool:
        """Load the latest checkpoint if it is newer than the one shown; True when it was."""
        from neuralfields import storage

        with self._reload_lock:
            latest = storage.latest_checkpoint(self.run_.path)
            if latest is None:
                self.set_status(f"{self.run_.path} holds no checkpoint yet; waiting for one")
                return False
            if latest == self.checkpoint and self.model is not None:
                self._update_metrics()
                return False
            try:
                loaded = self.run_.load_model(self.device, checkpoint=latest)
            except NeuralFieldsError as exc:  # e.g. pruned while we read it: try again next time
                self.set_status(str(exc))
                return False
            self.checkpoint = latest
            info = {**model_info(loaded, self.run_.config), "step": checkpoint_step(latest)}
            info.update(self._metric_info())
            self.set_model(self.make_model(loaded), **info)
            return True

    def _metric_info(self) -> dict:
        try:
            metrics = self.run_.metrics()
        except NeuralFieldsError:
            metrics = None
        if not metrics:
            return {}
        info = {}
        if metrics.get("test_psnr") is not None:
            info.update(psnr=metrics["test_psnr"], psnr_label="test PSNR")
        if metrics.get("iou_grid") is not None:
            info.update(iou=metrics["iou_grid"])
        if metrics.get("chamfer_l1") is not None:
            info.update(chamfer_l1=metrics["chamfer_l1"])
        return info

    def _update_metrics(self) -> None:
        info = self._metric_info()
        if any(self.info.get(key) != value for key, value in info.items()):
            self.update_info(**info)

    def watch(self) -> None:
        """Start the poller when the run is still training or has no checkpoint yet."""
        if self._poller is not None or not (self.run_.is_training() or self.model is None):
            return
        self._poller = threading.Thread(target=self._poll, name=f"viewer-reload-{self.name}", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.reload()
            except Exception as exc:  # noqa: BLE001 - keep polling; say what failed
                self.set_status(f"reload failed: {exc}")
            if self.model is not None and not self.run_.is_training():
                self.reload()  # the final checkpoint and metrics
                return

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=2.0)

    @property
    def training(self) -> bool:
        return self.run_.is_training()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
