"""A viser web viewer for run folders and for training runs.

    python scripts/view.py RUN_DIR [RUN_DIR ...]        # a run, or several side by side
    python scripts/train_nerf.py ... --viewer           # live while training

- `open_viewer(paths, host, port)` (from_runs.py): the viewer of run folders.
- `LiveViewer` (live.py): a training Callback that serves the live field.
- app.py: the NeRF and occupancy views (one session per browser tab); progressive.py: one render
  thread per tab; frames.py: frames through the evaluation renderer; cameras.py: viser's OpenCV
  camera <-> the dataset's OpenGL camera; server.py: ports; cli.py: the scripts' flags;
  tab.py: a scripted browser tab (viser's websocket protocol) for tests and benchmarks.

The library never imports this package; it comes in through callbacks and run folders. Names
are loaded on first use, so `neuralfields.viewer.cli` stays cheap to import without viser.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "open_viewer": "neuralfields.viewer.from_runs",
    "LiveViewer": "neuralfields.viewer.live",
    "ViewCamera": "neuralfields.viewer.cameras",
    "camtoworld_from_viser": "neuralfields.viewer.cameras",
    "viser_pose_from_camtoworld": "neuralfields.viewer.cameras",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'neuralfields.viewer' has no attribute {name!r}")
