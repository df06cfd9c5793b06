"""The training scripts' viewer flags: --viewer, --port, --host (cheap to import: viser and the
viewer load only when --viewer is given)."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from typing import Iterator


def add_viewer_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("live viewer")
    group.add_argument("--viewer", action="store_true",
                       help="serve a viser viewer of the model while it trains (prints the URL)")
    group.add_argument("--port", type=int, default=8080, help="viewer port (default 8080; the next free one if taken)")
    group.add_argument("--host", default="127.0.0.1",
                       help="viewer address (default 127.0.0.1; 0.0.0.0 for every interface)")


@contextmanager
def live_viewer(args: argparse.Namespace) -> Iterator[tuple]:
    """The callbacks to train with: none without --viewer; with it, a LiveViewer that serves during
    training and, when run from a terminal, afterwards until Ctrl-C (the final weights)."""
    if not getattr(args, "viewer", False):
        yield ()
        return
    from neuralfields.viewer.live import LiveViewer

    viewer = LiveViewer(host=args.host, port=args.port)
    try:
        yield (viewer,)
        viewer.training_done()
        if sys.stdin is not None and sys.stdin.isatty():
            print(f"training finished; the viewer stays at {viewer.url} until Ctrl-C", flush=True)
            try:
                while True:
                    time.sleep(1.0)
            except KeyboardInterrupt:
                pass
    finally:
        viewer.close()
