"""A sweep's results as data: one row per planned run read from its folder, groups per
configuration over seeds (mean and spread), Pareto frontiers, and the choice between a kind's
initialisations. report.py and plots.py draw on these.

Sizes are what a finished run stores (its metrics.json `parameters`, the bytes of its final
model): for fixed-rank and dense lines that is the planned count, for adaptive-rank lines (OIALR)
the size at the rank each layer ended with. Unfinished runs show the planned count."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.counting import parameter_report
from neuralfields.layers.spec import KINDS
from neuralfields.progress import progress_bar
from neuralfields.reports.evaluate import QUALITY_COLUMNS
from neuralfields.reports.quantize import PRECISIONS
from neuralfields.reports.sweep import (
    EQUAL_LINE, FAILED_FILE, RD_FILE, RUNS_DIR, read_json, run_status, write_quantized_results,
)
from neuralfields.runs import Run, open_run
from neuralfields.storage import CONFIG_FILE


def collect_rows(sweep_dir: Path, sweep: dict, progress: bool = True) -> list[dict]:
    """One row per planned configuration, from its run folder; finished runs without an up-to-date
    rd.json get their quantised evaluation now."""
    task, quality = sweep["task"], sweep["quality_metric"]
    rows = []
    for planned in progress_bar(sweep["configurations"], desc="reading runs", unit="run", leave=False,
                                disable=not progress):
        run_dir = sweep_dir / RUNS_DIR / planned["name"]
        line = sweep["lines"][planned["line"]]
        reference = sweep["reference_dense_parameters"]
        row = {"task": task, "target": sweep["target"], "name": planned["name"], "line": planned["line"],
               "kind": line["kind"], "init": line["init"], "spec": planned["spec"], "rank": planned["rank"],
               "final_ranks": None, "width": planned["width"], "sweep_width": planned["sweep_width"],
               "seed": planned["seed"], "status": run_status(run_dir), "error": None, "lr": None,
               **stored_size(planned["parameters"], reference), "bytes_int8": None,
               "run": str(Path(RUNS_DIR) / planned["name"])}
        if (run_dir / CONFIG_FILE).is_file():
            row["lr"] = open_run(run_dir).config.lr
        if row["status"] == "failed":
            row["error"] = (run_dir / FAILED_FILE).read_text().splitlines()[0]
        if row["status"] == "finished":
            row.update(_finished_values(run_dir, task, quality, reference, KINDS[line["kind"]].adaptive))
        rows.append(row)
    return rows


def stored_size(parameters: int, reference: int) -> dict:
    """A row's size columns: parameters, % of the dense reference network, fp32 and fp16 bytes."""
    return {"parameters": parameters, "percent_of_dense": 100.0 * parameters / reference,
            "bytes_fp32": 4 * parameters, "bytes_fp16": 2 * parameters}


def rank_histories(run: Run) -> dict[str, list[tuple[int, int]]]:
    """{layer name: its (step, rank) rows} for each adaptive-rank layer of the run's trained model."""
    layers = parameter_report(run.load_model("cpu"))["layers"]
    return {row["name"]: row["rank_history"] for row in layers if "rank_history" in row}


def _finished_values(run_dir: Path, task: str, quality: str, reference: int, adaptive: bool) -> dict:
    run = open_run(run_dir)
    metrics = run.metrics()
    values = {"train_seconds": metrics["train_seconds"], "steps": metrics["steps"], "device": metrics["device"],
              **stored_size(metrics["parameters"], reference),
              **{column: metrics.get(column) for column in QUALITY_COLUMNS[task]}}
    if adaptive:
        values["final_ranks"] = [history[-1][1] for history in rank_histories(run).values()]
    try:
        write_quantized_results(run_dir)
    except NeuralFieldsError as exc:
        return {**values, "error": f"quantised evaluation failed: {exc}"}
    quantized = read_json(run_dir / RD_FILE)
    values.update({"bytes_int8": quantized["int8"]["bytes"], "machine": quantized["machine"]})
    values.update({f"{quality}_{precision}": quantized[precision]["value"] for precision in ("fp16", "int8")})
    return values


def _spread(values: list[float]) -> dict | None:
    """Mean, sample standard deviation (0 for one value) and count; None when there is no value."""
    values = [value for value in values if value is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def aggregate(rows: list[dict], quality: str) -> list[dict]:
    """One group per configuration (line, sweep width, rank) over its seeds: sizes (mean over the
    finished runs), the quality at each precision (mean, spread, count), steps and seconds, the
    statuses of its runs, and for adaptive lines the final rank of each layer (first seed)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["line"], row["sweep_width"], row["rank"]), []).append(row)
    result = []
    for (line, sweep_width, rank), members in groups.items():
        done = [row for row in members if row["status"] == "finished"]
        first = members[0]
        sized = done or members  # what finished runs store (adaptive lines: it differs by seed), else the plan
        result.append({
            "line": line, "sweep_width": sweep_width, "rank": rank, "width": first["width"],
            "final_ranks": done[0].get("final_ranks") if done else None,
            "parameters": _mean_size(sized, "parameters"),
            "percent_of_dense": statistics.fmean(row["percent_of_dense"] for row in sized),
            "bytes": {"fp32": _mean_size(sized, "bytes_fp32"), "fp16": _mean_size(sized, "bytes_fp16"),
                      "int8": _mean_size(done, "bytes_int8")},
            "quality": {precision: _spread([row.get(_quality_key(quality, precision)) for row in done])
                        for precision in PRECISIONS},
            "steps": _spread([row["steps"] for row in done]),
            "train_seconds": _spread([row["train_seconds"] for row in done]),
            "lr": first["lr"], "runs": [row["name"] for row in done],
            "statuses": [row["status"] for row in members],
            "errors": [f"{row['name']}: {row['error']}" for row in members if row["error"]],
        })
    return result


def _mean_size(rows: list[dict], key: str) -> int | None:
    """The rows' mean of a size column, rounded (None when no row has one)."""
    values = [row[key] for row in rows if row.get(key) is not None]
    return round(statistics.fmean(values)) if values else None


def _quality_key(quality: str, precision: str) -> str:
    return quality if precision == "fp32" else f"{quality}_{precision}"


def mean_quality(group: dict, precision: str = "fp32") -> float | None:
    spread = group["quality"][precision]
    return spread["mean"] if spread else None


def choose_inits(groups: list[dict], lines: dict) -> dict:
    """For each kind run with several initialisations, the line with the better mean quality over
    the (width, rank) configurations every one of them finished: {kind: {"line", "means"}}."""
    chosen = {}
    for kind in {about["kind"] for about in lines.values()}:
        variants = [line for line, about in lines.items() if about["kind"] == kind and about["init"] is not None]
        if len(variants) < 2:
            continue
        finished = {line: {(g["sweep_width"], g["rank"]): mean_quality(g) for g in groups
                           if g["line"] == line and mean_quality(g) is not None} for line in variants}
        common = set.intersection(*(set(values) for values in finished.values()))
        means = {line: statistics.fmean(finished[line][key] for key in common) if common else None
                 for line in variants}
        scored = {line: mean for line, mean in means.items() if mean is not None}
        chosen[kind] = {"line": max(scored, key=scored.get) if scored else variants[0], "means": means,
                        "configurations": len(common)}
    return chosen


def frontier(points: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """The Pareto frontier of (size, quality, item) points: those above every smaller one."""
    best, kept = None, []
    for point in sorted(points, key=lambda point: point[0]):
        if best is None or point[1] > best:
            best = point[1]
            kept.append(point)
    return kept


def group_points(groups: list[dict], size: Callable[[dict], float] = lambda g: g["parameters"],
                 precision: str = "fp32") -> list[tuple[float, float, dict]]:
    """(size, mean quality, group) of the groups with a finished run."""
    return [(size(g), mean_quality(g, precision), g) for g in groups if mean_quality(g, precision) is not None]


def describe_config(group: dict) -> str:
    """A configuration in a few characters: `w64 k4`, `w22` for dense networks, `w64 ranks 12/9`
    for adaptive-rank ones (each layer's final rank)."""
    text = f"w{group['width']}" + (f" k{group['rank']}" if group["line"] != EQUAL_LINE and group["rank"] else "")
    return text + (f" ranks {format_ranks(group['final_ranks'])}" if group.get("final_ranks") else "")


def format_ranks(ranks: list[int]) -> str:
    return "/".join(str(rank) for rank in ranks)
