"""Plot normalised singular-value spectra of sin(omega U V^T) next to U V^T and a dense matrix.

    python scripts/spectrum.py --size 256 --rank 1 --out outputs/spectrum.png
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neuralfields.cli import run_cli  # noqa: E402
from neuralfields.errors import NeuralFieldsError  # noqa: E402
from neuralfields.layers.diagnostics import normalised_spectra  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="matrix size (square)")
    parser.add_argument("--rank", type=int, default=1, help="rank k of U and V")
    parser.add_argument("--omegas", type=float, nargs="+", default=[1, 30, 100, 300, 800])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/spectrum.png"))
    args = parser.parse_args()
    if not 1 <= args.rank <= args.size:
        parser.error(f"--rank must lie in 1..{args.size}")

    spectra = normalised_spectra(args.size, args.rank, args.omegas, args.seed)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, values in spectra.items():
        style = "--" if label.startswith(("U V", "dense")) else "-"
        axis.semilogy(range(1, len(values) + 1), values.clamp_min(1e-16).numpy(), style, label=label)
    axis.set_xlabel("singular value index")
    axis.set_ylabel("singular value / largest")
    axis.set_ylim(1e-8, 1.5)
    axis.set_title(f"Spectra of {args.size}x{args.size} weights, rank-{args.rank} factors")
    axis.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=120)
    except OSError as exc:
        raise NeuralFieldsError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
