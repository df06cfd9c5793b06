"""Training steps/s with the live viewer (results: benchmarks/results/viewer/live_*.log): no tab vs a tab whose camera is still vs moving.

One training run on the demo scene (benchmarks/presets/viewer_live.yaml: the set-up of the committed logs, 1 torch thread), phases of PHASE_S seconds
alternating: no tab | tab, still camera | no tab | tab, moving camera (an orbit, 10 updates/s) ...
The LiveViewer callback is attached throughout (with no tab it only checks the client count).
"""
import math, sys, threading, time, json
from pathlib import Path
import numpy as np
from neuralfields.config import overlay
from neuralfields.training.loop import Callback
from neuralfields.training.nerf import load_preset, train_nerf
from neuralfields.rendering.cameras import orbit_camtoworlds
from neuralfields.viewer import LiveViewer
from neuralfields.viewer.cameras import fov_from_focal
from neuralfields.viewer.server import free_port
from neuralfields.viewer.tab import TabClient

PHASE_S = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
CYCLES = int(sys.argv[2]) if len(sys.argv) > 2 else 2
PHASES = (sys.argv[3].split(",") if len(sys.argv) > 3 else ["none", "still", "none", "moving"]) * CYCLES

class Steps(Callback):
    def __init__(self): self.log = []
    def on_step(self, loop, stats): self.log.append((time.perf_counter(), loop.step, loop.train_seconds, live.runner.render_seconds))

steps = Steps()
live = LiveViewer(port=free_port(), quiet=True)  # CPU defaults: 128 px frames, 32 px previews
PRESET = str(Path(__file__).parent / "presets" / "viewer_live.yaml")
config = overlay(load_preset(PRESET), {"threads": 1, "time_budget_s": None, "steps": 100000, "val_every": 10**6,
                 "checkpoint_every": 10**6, "video_frames": 0, "test_views": 1, "output_root": "outputs/bench/viewer"}, "measure")
stop = threading.Event()

def train():
    try:
        train_nerf(config, callbacks=(live, steps, Stopper()), progress=False)
    except KeyboardInterrupt:
        pass

class Stopper(Callback):
    def on_step(self, loop, stats):
        if stop.is_set():
            raise KeyboardInterrupt

trainer = threading.Thread(target=train, daemon=True)
trainer.start()
while not steps.log or steps.log[-1][1] < 300:  # past start-up
    time.sleep(0.5)
poses = orbit_camtoworlds(360, 4.0, 30.0).numpy()
fov = fov_from_focal(0.5 * 100 / math.tan(0.5 * 0.6911112070083618), 100)
results = []
for phase in PHASES:
    tab = None
    if phase != "none":
        tab = TabClient(live.server.get_port())
        tab.send_camera(poses[0], fov, 300, 300)
        if phase == "still":  # steady state: the first preview and full frame are done before measuring
            while len(tab.backgrounds()) < 2:
                time.sleep(0.2)
    start = time.perf_counter()
    index = 0
    while time.perf_counter() - start < PHASE_S:
        if phase == "moving":
            index += 1
            tab.send_camera(poses[index % 360], fov, 300, 300)
        time.sleep(0.1)
    end = time.perf_counter()
    frames = len(tab.backgrounds()) - (2 if phase == "still" else 0) if tab else 0
    if tab:
        tab.close()
    inside = [row for row in steps.log if start <= row[0] <= end]
    (t0, s0, c0, r0), (t1, s1, c1, r1) = inside[0], inside[-1]
    rate = (s1 - s0) / (t1 - t0)
    results.append({"phase": phase, "steps_per_s": round(rate, 3), "frames_shown": frames,
                    "render_share": round((r1 - r0) / (t1 - t0), 3), "step_compute_s": round((c1 - c0) / (s1 - s0), 4),
                    "load": round(__import__("os").getloadavg()[0], 2)})
    print(results[-1], flush=True)
    time.sleep(1.0)
stop.set()
trainer.join(120)
live.close()
by = {p: [r["steps_per_s"] for r in results if r["phase"] == p] for p in ("none", "still", "moving") if any(r["phase"] == p for r in results)}
print(json.dumps({p: (round(float(np.mean(v)), 3), v) for p, v in by.items()}))
for p in [p for p in ("still", "moving") if p in by]:
    print(f"{p}: {100 * (1 - np.mean(by[p]) / np.mean(by['none'])):.1f}% slower than no tab")
