"""Look at run folders in the browser (viser): fly around a NeRF, or the mesh of an occupancy run.

    python scripts/view.py outputs/lego/sine-k1/<ts>                     # one NeRF run
    python scripts/view.py RUN_A RUN_B RUN_C                             # compare: same camera, one panel per run
    python scripts/view.py outputs/occupancy/armadillo/sine-k1/<ts>      # occupancy: the extracted mesh
    python scripts/view.py RUN --port 8090 --host 0.0.0.0                # another port; all interfaces

Open the printed URL. The first camera is the run's first test view. Frames are small while the
camera moves and sharpen to the chosen resolution once it stops. A run that is still training is
re-read whenever it writes a newer checkpoint. Live viewing during training: train_nerf.py --viewer.
"""

import argparse
import time

from neuralfields.cli import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folder(s); several: compare mode")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; the next free one if taken)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    parser.add_argument("--resolution", type=int, help="long side of still frames in pixels (default 128 on a CPU, "
                                                       "512 on a GPU; also a slider in the page)")
    parser.add_argument("--preview", type=int,
                        help="long side of frames while moving (default 32 on a CPU, 128 on a GPU)")
    parser.add_argument("--mesh-resolution", type=int, default=64, help="occupancy: marching-cubes grid (default 64)")
    return parser.parse_args()


def main() -> None:
    from neuralfields.viewer import open_viewer

    args = parse_args()
    viewer = open_viewer(args.runs, host=args.host, port=args.port, device=args.device, long_side=args.resolution,
                         preview_long_side=args.preview, mesh_resolution=args.mesh_resolution)
    print("Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(1.0)
    finally:
        viewer.close()


if __name__ == "__main__":
    run_cli(main)
