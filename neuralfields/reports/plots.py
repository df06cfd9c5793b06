"""The figures of a sweep report (matplotlib Figure objects, no pyplot state), each saved as PNG
and SVG under plots/: quality vs parameters and vs bytes (log x; one line per kind with its
Pareto frontier, dotted curves at fixed width; adaptive-rank lines at the size they store at the
end), test renders (NeRF) or mesh thumbnails (occupancy) per configuration, the singular-value
spectrum of one trained hidden layer per kind, and for adaptive-rank (OIALR) lines the rank of
each layer over the training steps (`rank_figure`, also drawn by benchmarks/bench_oialr.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter
from torch import nn

from neuralfields.data.scenes import load_views, resolve_scene_dir
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.counting import is_factorised
from neuralfields.layers.diagnostics import numerical_rank, singular_values
from neuralfields.layers.linear import weight_matrix
from neuralfields.layers.spec import KINDS
from neuralfields.meshing.labels import MeshOccupancy
from neuralfields.meshing.marching import OCCUPANCY_LOGIT_LEVEL, evaluate_grid, grid_points, mesh_from_volume
from neuralfields.meshing.mesh_io import PADDED_BOUNDS
from neuralfields.reports.evaluate import QUALITY, QUALITY_LABELS, format_quality, quality_axis
from neuralfields.reports.quantize import PRECISIONS
from neuralfields.reports.results import describe_config, frontier, group_points, mean_quality, rank_histories
from neuralfields.reports.sweep import RUNS_DIR
from neuralfields.runs import open_run
from neuralfields.training.occupancy import prepare_mesh

PLOTS_DIR = "plots"
COLORS = {"dense": "black", "dense-equal": "tab:gray", "lowrank": "tab:blue", "lowrank-matched": "tab:cyan",
          "sine": "tab:red"}
PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}
THUMBNAIL_GRID = 32
"""Grid of the occupancy thumbnails' marching cubes (the ground truth's too): small meshes draw fast."""
SPECTRUM_RTOL = 1e-3
"""Singular values above SPECTRUM_RTOL * s_max count towards the numerical rank shown."""


OTHER_COLORS = ("tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive")
"""Lines without a colour of their own (e.g. OIALR's), in colours no named line uses."""


def color(line: str, index: int) -> str:
    return COLORS.get(line, OTHER_COLORS[index % len(OTHER_COLORS)])


def draw_all(sweep_dir: Path, task: str, groups: list[dict], lines: dict,
             displayed: list[str]) -> list[tuple[str, str]]:
    """Draw every figure into sweep_dir/plots; returns (title, relative PNG path) per figure."""
    shown = [line for line in displayed if any(mean_quality(g) is not None for g in groups if g["line"] == line)]
    if not shown:
        return []
    figures = [
        ("quality vs parameters", "quality_vs_parameters", quality_figure(task, groups, lines, shown, "parameters")),
        ("quality vs bytes", "quality_vs_bytes", quality_figure(task, groups, lines, shown, "bytes")),
        ("test renders" if task == "nerf" else "mesh thumbnails", "renders" if task == "nerf" else "meshes",
         gallery_figure(sweep_dir, task, groups, lines, shown)),
        ("singular values of a trained hidden layer", "spectra", spectra_figure(sweep_dir, groups, lines, shown)),
    ]
    adaptive = [g for g in groups if g["line"] in shown and g["runs"] and KINDS[lines[g["line"]]["kind"]].adaptive]
    if adaptive:
        figures.append(("rank per layer over training (OIALR)", "oialr_ranks",
                        sweep_rank_figure(sweep_dir, task, adaptive, lines)))
    out = sweep_dir / PLOTS_DIR
    out.mkdir(exist_ok=True)
    for _, name, figure in figures:
        for suffix in ("png", "svg"):
            figure.savefig(out / f"{name}.{suffix}", dpi=110, bbox_inches="tight")
    return [(title, f"{PLOTS_DIR}/{name}.png") for title, name, _ in figures]


def quality_figure(task: str, groups: list[dict], lines: dict, shown: list[str], axis: str) -> Figure:
    """Quality against parameters (fp32) or against stored bytes (each precision a marker)."""
    figure = Figure(figsize=(7.5, 4.8))
    ax = figure.add_subplot()
    for index, line in enumerate(shown):
        ours = [g for g in groups if g["line"] == line]
        tint = color(line, index)
        if axis == "parameters":
            points = group_points(ours)
            for width in sorted({g["sweep_width"] for _, _, g in points}):
                at = sorted((p for p in points if p[2]["sweep_width"] == width), key=lambda p: p[0])
                if len(at) > 1 and line != "dense":
                    ax.plot([p[0] for p in at], [p[1] for p in at], ":", color=tint, linewidth=0.8)
            spread = [p[2]["quality"]["fp32"]["std"] for p in points]
            marker = "*" if line == "dense" else "D" if KINDS[lines[line]["kind"]].adaptive else "o"
            ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=spread, color=tint, capsize=2,
                        fmt=marker, markersize=9 if line == "dense" else 5, label=lines[line]["title"])
        else:
            points = []
            for precision in PRECISIONS:
                ours_at = group_points([g for g in ours if g["bytes"][precision]], lambda g: g["bytes"][precision],
                                       precision)
                points += ours_at
                ax.plot([p[0] for p in ours_at], [p[1] for p in ours_at], PRECISION_MARKERS[precision], color=tint,
                        markersize=5, fillstyle="none" if precision != "fp32" else "full")
            ax.plot([], [], "-", color=tint, label=lines[line]["title"])
        edge = frontier(points)
        ax.plot([p[0] for p in edge], [p[1] for p in edge], "-", color=tint, linewidth=1.8, alpha=0.8)
    if axis == "bytes":
        for precision, marker in PRECISION_MARKERS.items():
            ax.plot([], [], marker, color="gray", fillstyle="none" if precision != "fp32" else "full", label=precision)
    ax.set_xscale("log")
    # ticks at 1, 2 and 5 per decade, labelled 2k, 50k, 1M: matplotlib's own minor labels overlap
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: compact_number(value)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters (log scale)" if axis == "parameters" else "stored bytes (log scale)")
    ax.set_ylabel(quality_axis(task))
    title = (f"{QUALITY_LABELS[QUALITY[task]]} vs {axis}: points per configuration, solid: Pareto frontier"
             + (", dotted: fixed width" if axis == "parameters" else ""))
    if any(KINDS[lines[line]["kind"]].adaptive for line in shown):
        title += "\nadaptive-rank lines at their size after training" + (" (diamonds)" if axis == "parameters" else "")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def compact_number(value: float) -> str:
    """2000 -> 2k, 1500000 -> 1.5M: short axis labels."""
    for suffix, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _first_run(sweep_dir: Path, group: dict):
    return open_run(sweep_dir / RUNS_DIR / group["runs"][0])


def gallery_figure(sweep_dir: Path, task: str, groups: list[dict], lines: dict, shown: list[str]) -> Figure:
    """The ground truth, then a row per line with a column per configuration (by size; first seed):
    NeRF the run's first scored test view, occupancy the surface at THUMBNAIL_GRID^3. With one
    configuration per line (e.g. `make demo`), one row: ground truth | each line."""
    rows = {line: sorted((g for g in groups if g["line"] == line and g["runs"]), key=lambda g: g["parameters"])
            for line in shown}
    if max(len(row) for row in rows.values()) == 1:
        return _gallery_row(sweep_dir, task, rows, lines)
    columns = 1 + max(len(row) for row in rows.values())
    figure = Figure(figsize=(1.7 * columns, 1.9 * (1 + len(rows))))
    grid = (1 + len(rows), columns)
    truth = _truth(_first_run(sweep_dir, next(iter(rows.values()))[0]))
    titled = [("ground truth", [None])] + [(lines[line]["title"], row) for line, row in rows.items()]
    for row_index, (title, row) in enumerate(titled):
        label = figure.add_subplot(*grid, row_index * columns + 1)
        label.set_axis_off()
        label.text(0.0, 0.5, title, transform=label.transAxes, fontsize=8, va="center")
        for column, group in enumerate(row, start=2):
            caption = "" if group is None else f"{describe_config(group)}\n{format_quality(task, mean_quality(group))}"
            _gallery_panel(figure, grid, row_index * columns + column, sweep_dir, task, truth, group, caption)
    return figure


def _gallery_row(sweep_dir: Path, task: str, rows: dict[str, list[dict]], lines: dict) -> Figure:
    """The gallery of a sweep with one configuration per line: one row, the ground truth and then
    each line, each panel titled with its line, configuration and quality."""
    shown = [(line, row[0]) for line, row in rows.items() if row]
    figure = Figure(figsize=(1.9 * (1 + len(shown)), 2.3))
    grid = (1, 1 + len(shown))
    truth = _truth(_first_run(sweep_dir, shown[0][1]))
    _gallery_panel(figure, grid, 1, sweep_dir, task, truth, None, "ground truth")
    for column, (line, group) in enumerate(shown, start=2):
        caption = f"{lines[line]['title']}\n{describe_config(group)}, {format_quality(task, mean_quality(group))}"
        _gallery_panel(figure, grid, column, sweep_dir, task, truth, group, caption)
    return figure


def _gallery_panel(figure: Figure, grid: tuple[int, int], index: int, sweep_dir: Path, task: str, truth,
                   group: dict | None, caption: str) -> None:
    """One gallery panel: the ground truth (group None) or the group's first run, captioned."""
    ax = figure.add_subplot(*grid, index, projection="3d" if task == "occupancy" else None)
    ax.set_axis_off()
    if group is None:
        _draw_truth(ax, task, truth)
    else:
        (_draw_render if task == "nerf" else _draw_mesh)(ax, _first_run(sweep_dir, group), truth)
    if caption:
        ax.set_title(caption, fontsize=7)


def _truth(run):
    """NeRF: the scene's test views; occupancy: the mesh's surface at the thumbnail grid."""
    config = run.config
    if run.task == "nerf":
        return load_views(resolve_scene_dir(config.scene, config.data_dir), "test", config.downscale,
                          config.background), run.metrics()["test_views"][0]["view"]
    unit_mesh = prepare_mesh(config)[0]
    labels = MeshOccupancy(unit_mesh)(grid_points(PADDED_BOUNDS, THUMBNAIL_GRID).reshape(-1, 3))
    return mesh_from_volume(labels.reshape((THUMBNAIL_GRID,) * 3).astype(np.float32), PADDED_BOUNDS, 0.5)


def _draw_truth(ax, task: str, truth) -> None:
    if task == "nerf":
        views, name = truth
        index = [Path(view).name for view in views.names].index(name)
        ax.imshow(views.images[index].numpy())
    else:
        _trisurf(ax, truth)


def _draw_render(ax, run, truth) -> None:
    _, name = truth
    ax.imshow(iio.imread(run.path / "test" / f"{name}.png"))


def _draw_mesh(ax, run, truth) -> None:
    volume = evaluate_grid(run.load_model("cpu"), PADDED_BOUNDS, THUMBNAIL_GRID, progress=False)
    try:
        _trisurf(ax, mesh_from_volume(volume, PADDED_BOUNDS, OCCUPANCY_LOGIT_LEVEL))
    except NeuralFieldsError:
        ax.text2D(0.3, 0.5, "no surface", transform=ax.transAxes, fontsize=7)


def _trisurf(ax, mesh) -> None:
    vertices = np.asarray(mesh.vertices)
    surface = ax.plot_trisurf(vertices[:, 0], vertices[:, 2], vertices[:, 1], triangles=np.asarray(mesh.faces),
                              color="lightsteelblue", linewidth=0, antialiased=False, shade=True)
    surface.set_rasterized(True)  # thousands of triangles: a bitmap in the SVG, not one path each
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=15, azim=-60)


def hidden_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The first square linear layer (in == out) of a model: a hidden layer of the trunk."""
    for name, module in model.named_modules():
        if (is_factorised(module) or isinstance(module, nn.Linear)) and module.in_features == module.out_features:
            return name, module
    raise NeuralFieldsError("the model has no square linear layer to take a spectrum of")


def spectra_figure(sweep_dir: Path, groups: list[dict], lines: dict, shown: list[str]) -> Figure:
    """s_i / s_max of one trained hidden layer per line, from its lowest-rank, widest configuration."""
    figure = Figure(figsize=(6.5, 4.2))
    ax = figure.add_subplot()
    for index, line in enumerate(shown):
        candidates = [g for g in groups if g["line"] == line and g["runs"]]
        group = min(candidates, key=lambda g: (g["rank"] or 0, -g["sweep_width"]))
        name, layer = hidden_layer(_first_run(sweep_dir, group).load_model("cpu"))
        with torch.no_grad():
            weight = weight_matrix(layer)
        values = singular_values(weight)
        rank = numerical_rank(weight, rtol=SPECTRUM_RTOL)
        ax.semilogy(np.arange(1, len(values) + 1), (values / values[0]).numpy(), color=color(line, index),
                    label=f"{lines[line]['title']} ({describe_config(group)}, {name}): rank {rank} of {len(values)}")
    ax.axhline(SPECTRUM_RTOL, color="gray", linestyle=":", linewidth=0.8)
    ax.set_xlabel("singular value index")
    ax.set_ylabel("singular value / largest")
    ax.set_title(f"trained hidden layer; numerical rank: values above {SPECTRUM_RTOL:g} of the largest", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return figure


@dataclass(frozen=True)
class RankPanel:
    """One run in the rank figure: its title, each adaptive layer's (step, rank) rows, the run's
    last step, and its full-rank warm-up (drawn dotted; None: not drawn)."""

    title: str
    histories: dict[str, list[tuple[int, int]]]
    steps: int
    warmup_steps: int | None = None


def rank_figure(panels: list[RankPanel], title: str) -> Figure:
    """The rank of each adaptive layer over the training steps, one panel per run (the OIALR
    paper's figure type); ranks on a log2 axis."""
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, panel in zip(axes.flat, panels):
        for layer, history in panel.histories.items():
            steps = [step for step, _ in history] + [panel.steps]
            ranks = [rank for _, rank in history] + [history[-1][1]]
            axis.step(steps, ranks, where="post", label=layer)
        if panel.warmup_steps is not None:
            axis.axvline(panel.warmup_steps, color="grey", linestyle=":", linewidth=1)
        axis.set_title(panel.title, fontsize=9)
        axis.set_xlabel("training step")
        axis.set_yscale("log", base=2)
        axis.yaxis.set_major_formatter(ScalarFormatter())
        axis.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("rank")
    axes.flat[len(panels) - 1].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def sweep_rank_figure(sweep_dir: Path, task: str, groups: list[dict], lines: dict) -> Figure:
    """rank_figure of a sweep's adaptive-rank configurations (first seed of each)."""
    panels = []
    for group in groups:
        run = _first_run(sweep_dir, group)
        metrics = run.metrics()
        panels.append(RankPanel(
            f"{lines[group['line']]['title']}, {describe_config(group)}\n"
            f"{QUALITY_LABELS[QUALITY[task]]} {format_quality(task, metrics[QUALITY[task]])}, "
            f"{metrics['parameters']:,} parameters stored",
            rank_histories(run), metrics["steps"], run.config.oialr_warmup_steps))
    return rank_figure(panels, "rank per adaptive layer over training (first seed; dotted: end of the full-rank "
                               "warm-up)")
