"""The report of a sweep folder, read from its run folders: results.csv and results.json (one row
per run), plots/ and report.md (a table per configuration, mean and spread over seeds, the plots,
the machine, the commands and a generated summary). Works on a partial or merged sweep: runs not
yet trained are listed as pending, failed runs with their error line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from neuralfields.layers.spec import KINDS
from neuralfields.reports import plots
from neuralfields.reports.evaluate import (
    QUALITY, QUALITY_COLUMNS, QUALITY_LABELS, TOLERANCE, format_difference, format_quality, quality_axis,
)
from neuralfields.reports.quantize import PRECISIONS
from neuralfields.reports.results import (
    aggregate, choose_inits, collect_rows, describe_config, format_ranks, frontier, group_points, mean_quality,
)
from neuralfields.reports.sweep import (
    EQUAL_LINE, LR_FILE, METHOD_LINE, PROBE_DIR, line_title, probe_group, read_json, read_sweep,
)
from neuralfields.storage import write_json

ROW_COLUMNS = ["task", "target", "name", "line", "kind", "init", "spec", "rank", "final_ranks", "width",
               "sweep_width", "seed", "status", "error", "lr", "parameters", "percent_of_dense", "bytes_fp32",
               "bytes_fp16", "bytes_int8", "train_seconds", "steps", "device"]


def summary(task: str, groups: list[dict], lines: dict, displayed: list[str], inits: dict,
            reference: int) -> list[str]:
    """Generated sentences: the chosen inits, who wins at each budget (the fixed-rank sizes), the
    method against each fixed-size line at equal (width, rank) and against each adaptive-rank line
    at equal stored size, and which precision keeps the quality."""
    title = {line: about["title"] for line, about in lines.items()}
    by_line = {line: [g for g in groups if g["line"] == line] for line in displayed}
    adaptive = {line for line in displayed if KINDS[lines[line]["kind"]].adaptive}
    sentences = [_init_sentence(task, kind, choice, lines) for kind, choice in inits.items()]
    budgets = sorted({g["parameters"] for g in groups
                      if KINDS[lines[g["line"]]["kind"]].fixed_rank and mean_quality(g) is not None})
    sentences += [_budget_sentence(task, budget, by_line, title, reference) for budget in budgets]
    if by_line.get("dense") and group_points(by_line["dense"]):
        size, value, group = max(group_points(by_line["dense"]), key=lambda point: point[1])
        sentences.append(f"The ceiling, {title['dense']}: {format_quality(task, value)} at {size:,} parameters "
                         f"({describe_config(group)}).")
    if METHOD_LINE in displayed:
        sentences += [_method_sentence(task, by_line[METHOD_LINE], by_line[line], title[METHOD_LINE], title[line])
                      for line in displayed if line not in (METHOD_LINE, "dense") and line not in adaptive]
        sentences += [_equal_size_sentence(task, by_line[line], by_line[METHOD_LINE], title[line], title[METHOD_LINE])
                      for line in displayed if line in adaptive]
    sentences += [_precision_sentence(task, title[line], by_line[line]) for line in displayed]
    return [sentence for sentence in sentences if sentence]


def _init_sentence(task: str, kind: str, choice: dict, lines: dict) -> str:
    means = ", ".join(f"{lines[line]['init']} {format_quality(task, mean)}" for line, mean in choice["means"].items())
    count = choice["configurations"]
    return (f"{line_title(kind, None)}: the {lines[choice['line']]['init']} initialisation is plotted (mean "
            f"{QUALITY_LABELS[QUALITY[task]]} over the {count} configuration{'s' * (count != 1)} run with every "
            f"initialisation: {means}).")


def _budget_sentence(task: str, budget: int, by_line: dict[str, list[dict]], title: dict, reference: int) -> str:
    """Each line's best configuration with at most `budget` parameters (its frontier there), best first."""
    best = []
    for line, groups in by_line.items():
        fitting = [point for point in frontier(group_points(groups)) if point[0] <= budget]
        if fitting:
            best.append((fitting[-1][1], line, fitting[-1][2]))
    best.sort(key=lambda item: item[0], reverse=True)
    ranking = " > ".join(f"{title[line]} {format_quality(task, value)} ({describe_config(group)})"
                         for value, line, group in best)
    return (f"At most {budget:,} parameters ({100 * budget / reference:.2g} % of dense): **{title[best[0][1]]}** "
            f"wins; {ranking}.")


def _method_sentence(task: str, method: list[dict], other: list[dict], method_title: str, other_title: str) -> str:
    """How often the method is above another line at the same (width, rank), and by how much."""
    ours = {(g["sweep_width"], g["rank"]): mean_quality(g) for g in method}
    pairs = []
    for group in other:
        mine, theirs = ours.get((group["sweep_width"], group["rank"])), mean_quality(group)
        if mine is not None and theirs is not None:
            pairs.append(mine - theirs)
    if not pairs:
        return ""
    pairs.sort()
    spread = format_difference(task, pairs[0]) + (f" to {format_difference(task, pairs[-1])}" if len(pairs) > 1 else "")
    return (f"{method_title} is above {other_title} at {sum(gap > 0 for gap in pairs)} of {len(pairs)} "
            f"(width, rank) configurations (difference {spread}).")


def _equal_size_sentence(task: str, adaptive: list[dict], method: list[dict], title: str, method_title: str) -> str:
    """Each configuration of an adaptive-rank line (at the size it stores at the end) against the
    method's best configuration that stores at most as many parameters (so as many bytes, at any
    one precision)."""
    edge = frontier(group_points(method))
    parts, above, compared = [], 0, 0
    for size, value, group in sorted(group_points(adaptive), key=lambda point: point[0]):
        ours = f"{describe_config(group)}: {format_quality(task, value)} at {size:,} parameters"
        fitting = [point for point in edge if point[0] <= size]
        if not fitting:
            parts.append(f"{ours}, smaller than every {method_title} configuration")
            continue
        their_size, their_value, their_group = fitting[-1]
        compared += 1
        above += value > their_value
        parts.append(f"{ours} vs {format_quality(task, their_value)} ({describe_config(their_group)}, "
                     f"{their_size:,}), {format_difference(task, value - their_value)}")
    if not parts:
        return ""
    return (f"{title} against {method_title} at equal stored size (the best {method_title} configuration storing "
            f"at most as many parameters): above at {above} of {compared}; " + "; ".join(parts) + ".")


def _precision_sentence(task: str, title: str, groups: list[dict]) -> str:
    """Worst loss after fp16 and int8 storage, and the cheapest precision within TOLERANCE."""
    drops = {}
    for precision in ("fp16", "int8"):
        pairs = [(mean_quality(g), mean_quality(g, precision)) for g in groups]
        pairs = [(full, cheap) for full, cheap in pairs if full is not None and cheap is not None]
        if pairs:
            drops[precision] = max(full - cheap for full, cheap in pairs)
    if not drops:
        return ""
    tolerance = format_difference(task, TOLERANCE[task]).lstrip("+")
    keeping = next((p for p in ("int8", "fp16") if p in drops and drops[p] <= TOLERANCE[task]), None)
    losses = " and ".join(f"{format_difference(task, -drop)} at {precision}" for precision, drop in drops.items())
    verdict = (f"{keeping} keeps it within {tolerance} everywhere" if keeping
               else f"only fp32 keeps it within {tolerance}")
    return f"{title}: storage changes {QUALITY_LABELS[QUALITY[task]]} by at worst {losses}; {verdict}."


def write_report(sweep_dir: str | Path, progress: bool = True) -> list[str]:
    """Write results.csv, results.json, plots/ and report.md into the sweep folder; returns one line
    per failed run (the report marks them and is written all the same)."""
    sweep_dir = Path(sweep_dir)
    sweep = read_sweep(sweep_dir)
    task, quality, lines = sweep["task"], sweep["quality_metric"], sweep["lines"]
    rows = collect_rows(sweep_dir, sweep, progress)
    groups = aggregate(rows, quality)
    inits = choose_inits(groups, lines)
    hidden = {line for kind, choice in inits.items() for line, about in lines.items()
              if about["kind"] == kind and about["init"] is not None and line != choice["line"]}
    displayed = [line for line in lines if line not in hidden]
    probe_path = sweep_dir / PROBE_DIR / LR_FILE
    learning_rates = read_json(probe_path) if probe_path.is_file() else None
    sentences = summary(task, groups, lines, displayed, inits, sweep["reference_dense_parameters"])
    _write_csv(sweep_dir / "results.csv", rows, task, quality)
    write_json(sweep_dir / "results.json", {
        "sweep": {key: sweep[key] for key in ("task", "target", "settings", "commands", "quality_metric",
                                              "reference_dense_parameters", "lines", "probe")},
        "learning_rates": learning_rates, "inits": inits, "displayed": displayed, "summary": sentences,
        "groups": groups, "runs": rows,
    })
    figures = plots.draw_all(sweep_dir, task, groups, lines, displayed)
    (sweep_dir / "report.md").write_text(_markdown(sweep_dir, sweep, rows, groups, displayed, sentences,
                                                   learning_rates, figures))
    return [f"{row['name']}: {row['error']}" for row in rows if row["status"] == "failed"]


def _write_csv(path: Path, rows: list[dict], task: str, quality: str) -> None:
    columns = ROW_COLUMNS + list(QUALITY_COLUMNS[task]) + [f"{quality}_fp16", f"{quality}_int8", "run"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _cell(task: str, spread: dict | None) -> str:
    if spread is None:
        return ""
    text = format_quality(task, spread["mean"]).removesuffix(" dB")
    return text + (f" ± {format_quality(task, spread['std']).removesuffix(' dB')} (n={spread['n']})"
                   if spread["n"] > 1 else "")


def _status(group: dict) -> str:
    statuses = group["statuses"]
    if all(status == "finished" for status in statuses) and not group["errors"]:
        return "finished"
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    return counts + "".join(f"<br>{error}" for error in group["errors"])


def _rank_cell(group: dict, adaptive: bool) -> str:
    """Fixed-rank: K; dense-equal: (K) of the network it matches; adaptive: the final ranks."""
    if adaptive:
        return format_ranks(group["final_ranks"]) if group["final_ranks"] else "adaptive"
    if group["rank"] is None:
        return ""
    return f"({group['rank']})" if group["line"] == EQUAL_LINE else str(group["rank"])


def _markdown(sweep_dir: Path, sweep: dict, rows: list[dict], groups: list[dict], displayed: list[str],
              sentences: list[str], learning_rates: dict | None, figures: list[tuple[str, str]]) -> str:
    task, lines = sweep["task"], sweep["lines"]
    label = quality_axis(task)
    finished = sum(row["status"] == "finished" for row in rows)
    out = [f"# Rate-distortion: {task} on {sweep['target']}", "",
           f"{finished} of {len(rows)} runs finished. Re-draw with "
           f"`python scripts/rate_distortion.py report {sweep_dir}`.", "",
           "## Commands", "", *[f"    {command}" for command in sweep["commands"]], "",
           "## Summary (generated)", "", *[f"- {sentence}" for sentence in sentences], "",
           "## Results", "",
           f"One row per configuration (mean ± standard deviation over seeds where several ran). Sizes: "
           f"parameters, % of the dense reference network ({sweep['reference_dense_parameters']:,} parameters), "
           f"kB stored at each precision; {label} after storage at each precision.", "",
           f"| line | width | rank | parameters | % of dense | kB fp32 | kB fp16 | kB int8 | {label} fp32 | fp16 | "
           f"int8 | steps | train s | lr | status |",
           "|" + "---|" * 15]
    for group in groups:
        kilobytes = [f"{group['bytes'][p] / 1000:.1f}" if group["bytes"][p] else "" for p in PRECISIONS]
        steps = f"{group['steps']['mean']:.0f}" if group["steps"] else ""
        seconds = f"{group['train_seconds']['mean']:.0f}" if group["train_seconds"] else ""
        rank = _rank_cell(group, KINDS[lines[group["line"]]["kind"]].adaptive)
        out.append(f"| {lines[group['line']]['title']} | {group['width']} | {rank} | {group['parameters']:,} | "
                   f"{group['percent_of_dense']:.2f} | {' | '.join(kilobytes)} | "
                   f"{' | '.join(_cell(task, group['quality'][p]) for p in PRECISIONS)} | {steps} | {seconds} | "
                   f"{group['lr'] if group['lr'] is not None else ''} | {_status(group)} |")
    out += ["", "Dense (equal size): the widest dense network of the same architecture with at most the "
            "parameters of the rank-K network of that width (its rank in brackets).", ""]
    if any(KINDS[lines[line]["kind"]].adaptive for line in displayed):
        out += ["Adaptive rank (OIALR): each configuration starts at full rank and ends at the rank its layers "
                "kept (rank column: the final rank of each adaptive layer, first seed; minimum 1); its parameters "
                "and bytes are what the trained model stores.", ""]
    out += ["## Plots", ""] + [f"![{title}]({path})\n" for title, path in figures]
    out += ["## Learning rates", ""]
    if learning_rates is None:
        out += ["No probe ran: every line used the preset's learning rate.", ""]
    else:
        probe = sweep["probe"]
        budget = " or ".join(f"{value:g} {unit}" for value, unit in ((probe["time_budget_s"], "s"),
                                                                     (probe["steps"], "steps")) if value)
        metric = next(iter(learning_rates.values()))["metric"]
        out += [f"Each line's first configuration at each width trained for {budget} at each learning rate; "
                f"the best {QUALITY_LABELS.get(metric, metric)} chose the rate of the line's runs at that width.", "",
                "| line | probed at | chosen | scores |", "|---|---|---|---|"]
        for entry in learning_rates.values():
            scores = ", ".join(f"{lr}: {format_quality(task, score)}" for lr, score in entry["scores"].items())
            out.append(f"| {lines[entry['line']]['title']} | {entry['configuration']} | {entry['lr']:g} | {scores} |")
        groups_run = {probe_group(c["line"], c["sweep_width"]) for c in sweep["configurations"]}
        unprobed = sorted(groups_run - set(learning_rates))
        if unprobed:
            out += ["", f"Not probed: {', '.join(unprobed)} (an earlier version of the sweep probed each line at "
                    "one width only); the table's lr column gives the rate their runs used."]
        out.append("")
    out += ["## Quantisation", "",
            "fp16: every stored tensor rounded to half precision. int8: symmetric, one float32 scale per group "
            "(dense weights: per output row; low-rank factors U and V: per rank component, i.e. per column; "
            "biases: per vector); bytes include the scales. The model is re-evaluated with the rounded "
            "tensors (see neuralfields/reports/quantize.py).", "",
            "## Machines and versions", ""]
    machines = {json.dumps(row["machine"]["versions"] | {key: row["machine"][key] for key in
                                                          ("processor", "cpu_count", "cuda_device", "platform")},
                           sort_keys=True) for row in rows if row.get("machine")}
    devices = sorted({row["device"] for row in rows if row.get("device")})
    out += [f"- {', '.join(f'{k}: {v}' for k, v in json.loads(machine).items())}" for machine in sorted(machines)]
    out += [f"- training devices: {', '.join(devices)}", ""]
    return "\n".join(out)
