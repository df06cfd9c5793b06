"""Forward+backward time of dense, low-rank and sine low-rank layers against nn.Linear.

Each configuration times every layer kind interleaved (round-robin repeats, median), so the
reported ratios compare runs taken under the same machine conditions.

    python benchmarks/bench_layer.py --out benchmarks/results/layer_cpu.json
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from neuralfields.layers.spec import LayerSpec  # noqa: E402

CONFIGS = [  # (batch, in, out, ranks)
    (65536, 256, 256, (1, 4, 16)),
    (4096, 1024, 1024, (1, 4, 16)),
]
OMEGA = 100.0


def time_forward_backward(layer: torch.nn.Module, x: torch.Tensor) -> float:
    """Seconds for one forward+backward pass. On CUDA it waits for the queued kernels before each
    clock read: kernels run asynchronously, so the clock alone would time only their launches."""
    wait_for_device = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    wait_for_device()
    start = time.perf_counter()
    layer(x).sum().backward()
    wait_for_device()
    return time.perf_counter() - start


def bench_config(batch: int, n_in: int, n_out: int, ranks, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    specs = ["dense"] + [f"{kind}:{k}@{OMEGA:g}" if kind == "sine" else f"{kind}:{k}" for k in ranks for kind in ("lowrank", "sine")]
    layers = {spec: LayerSpec.parse(spec).build(n_in, n_out).to(device) for spec in specs}
    x = torch.randn(batch, n_in, device=device, requires_grad=True)
    times = {spec: [] for spec in specs}
    for _ in range(2):  # warm-up
        for layer in layers.values():
            time_forward_backward(layer, x)
    for _ in range(repeats):
        for spec, layer in layers.items():
            times[spec].append(time_forward_backward(layer, x))
    dense = statistics.median(times["dense"])
    return {
        "shape": f"{batch}x{n_in}->{n_out}",
        "results": [
            {"spec": spec, "median_s": statistics.median(t), "ratio_to_dense": statistics.median(t) / dense}
            for spec, t in times.items()
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/layer_cpu.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    machine = machine_info()
    results = []
    for batch, n_in, n_out, ranks in CONFIGS:
        result = bench_config(batch, n_in, n_out, ranks, args.repeats, device)
        results.append(result)
        for row in result["results"]:
            print(f"{result['shape']:>18}  {row['spec']:<16} {1e3 * row['median_s']:8.1f} ms  x{row['ratio_to_dense']:.3f} dense")
    record = {"benchmark": "layer forward+backward", "omega": OMEGA, "repeats": args.repeats,
              "machine": machine, "loadavg_end": list(os.getloadavg()), "configs": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
