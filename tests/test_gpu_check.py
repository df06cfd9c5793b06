"""benchmarks/gpu/check.py without a GPU: its arguments, the skip path, the JSON it writes, failure
isolation between parts, and its bench and train parts end to end on CPU stand-ins (the fused
function replaced by the torch path, a tiny scene and model), so that a GPU session only has to
run it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from neuralfields.config import overlay
from neuralfields.training.nerf import load_preset

CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu" / "check.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("gpu_check", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments(check):
    args = check.parse_args([])
    assert args.parts == ("setup", "tests", "bench", "train") and args.specs == ("sine:1", "dense")
    assert args.train_seconds == 180.0 and args.bench_dtype == "float16" and args.out_dir.parts[-2:] == ("results", "gpu")
    assert check.parse_args(["--parts", "train,tests"]).parts == ("tests", "train")  # always in check order
    for bad in (["--parts", "tests,lint"], ["--parts", ","], ["--train-seconds", "0"], ["--specs", "sine:0"],
                ["--bench-dtype", "float64"], ["--test-views", "-1"]):
        with pytest.raises(SystemExit) as exited:
            check.parse_args(bad)
        assert exited.value.code == 2, bad


def test_without_cuda_every_part_is_skipped_with_the_reason(check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check.main(["--out-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    path = Path(printed[-1].removeprefix("wrote "))
    assert path.parent == tmp_path and path.name.startswith("check_") and path.suffix == ".json"
    record = json.loads(path.read_text())
    assert list(record["parts"]) == ["setup", "tests", "bench", "train"]
    for part in record["parts"].values():
        assert part["status"] == "skipped" and part["reason"].startswith("no CUDA GPU: torch.cuda.is_available()")
    versions = record["versions"]
    assert versions["gpu"] is None and versions["torch"] == torch.__version__
    assert {"driver", "cuda", "triton", "nerfacc", "tinycudann", "python", "git_commit"} <= set(versions)
    assert [target["met"] for target in record["targets"]] == [None, None, None]
    assert record["summary"] == printed[:-1] and len(record["summary"]) == 4 + 3
    assert "machine" in record and record["args"]["out_dir"] == str(tmp_path)
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def tiny_preset(name, load_preset=load_preset):
    return overlay(load_preset("demo"), {
        "num_layers": 2, "width": 16, "skip_layer": 0, "color_width": 8, "xyz_freqs": 2, "dir_freqs": 1,
        "grid_resolution": 8, "target_samples": 512, "init_rays": 64, "max_rays": 128, "mixed_precision": False,
        "eval_chunk": 4096, "render_step_size": 0.05,
    }, "test")


def test_parts_run_on_cpu_stand_ins_and_a_failing_part_is_recorded(check, tiny_scene, tmp_path, monkeypatch, capsys):
    """setup fails (recorded with its traceback), tests fails with its partial result, bench and
    train run for real on the CPU (fused function -> torch path, tiny shapes, the tiny demo scene
    and model); the JSON is rewritten after every part; exit code 1."""
    from neuralfields.layers import fused

    def torch_path(x, U, V, bias, omega, scale):
        return F.linear(x, torch.sin(omega * (U @ V.T)) / scale, bias)

    monkeypatch.setattr(check, "DEVICE", "cpu")
    monkeypatch.setattr(check, "no_cuda_reason", lambda: None)
    monkeypatch.setattr(check, "BENCH_SHAPES", [(16, 24, 64)])
    monkeypatch.setattr(check, "BENCH_RANKS", (1, 2))
    monkeypatch.setattr(check, "WARMUP_STEPS", 1)
    monkeypatch.setattr(fused, "fused_available", lambda tensor, weight=None: True)
    monkeypatch.setattr(fused, "sine_lowrank_linear", torch_path)
    monkeypatch.setattr("neuralfields.training.nerf.load_preset", tiny_preset)

    def setup(args, out_dir, stamp):
        raise RuntimeError("no GPU here")

    def tests(args, out_dir, stamp):
        raise check.PartFailed("pytest -m cuda exited 1", {"counts": {"passed": 3, "failed": 1}, "failures": ["t"]})

    monkeypatch.setitem(check.PART_FUNCTIONS, "setup", setup)
    monkeypatch.setitem(check.PART_FUNCTIONS, "tests", tests)
    writes = []
    write_record = check.write_record
    monkeypatch.setattr(check, "write_record", lambda path, record: writes.append(
        {name: part["status"] for name, part in record["parts"].items()}) or write_record(path, record))

    code = check.main(["--out-dir", str(tmp_path), "--scene", str(tiny_scene),
                       "--specs", "sine:1,dense", "--train-seconds", "1", "--curve-every", "0.5",
                       "--curve-pixels", "64", "--test-views", "1", "--bench-repeats", "2", "--bench-dtype", "float32"])
    assert code == 1
    partial = "running (partial result)"
    assert writes == [  # after each part, after each bench shape and each training run, at the end
        {"setup": "failed"}, {"setup": "failed", "tests": "failed"},
        {"setup": "failed", "tests": "failed", "bench": partial},
        {"setup": "failed", "tests": "failed", "bench": "ok"},
        {"setup": "failed", "tests": "failed", "bench": "ok", "train": partial},
        {"setup": "failed", "tests": "failed", "bench": "ok", "train": partial},
        {"setup": "failed", "tests": "failed", "bench": "ok", "train": "ok"},
        {"setup": "failed", "tests": "failed", "bench": "ok", "train": "ok"},
    ]
    path = Path(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("wrote "))
    record = json.loads(path.read_text())
    parts = record["parts"]
    assert parts["setup"]["status"] == "failed" and "no GPU here" in parts["setup"]["error"]
    assert "RuntimeError" in parts["setup"]["traceback"]
    assert parts["tests"]["status"] == "failed" and parts["tests"]["result"]["counts"]["failed"] == 1
    assert parts["bench"]["status"] == "ok" and parts["train"]["status"] == "ok", (parts["bench"], parts["train"])

    bench = parts["bench"]["result"]["results"][0]
    assert (bench["in"], bench["out"], bench["batch"], bench["dtype"]) == (16, 24, 64, "float32")
    assert set(bench["ranks"]) == {"1", "2"}
    for entry in bench["ranks"].values():
        assert entry["fused_vs_torch_max_relative_difference"] < 1e-5
        assert entry["fused"]["forward_s"] > 0 and entry["w_and_grad_bytes_fp32"] == 8 * 16 * 24
    runs = parts["train"]["result"]["runs"]
    assert set(runs) == {"sine:1", "dense"}
    for spec, run in runs.items():
        assert run["steps"] >= 1 and run["curve"] and 0 < run["test_psnr"] < 60
        assert (tmp_path / run["render"]).is_file() and run["render"].startswith(path.stem)
    assert runs["dense"]["layer_path"] == "layers: torch (no sine layers)"
    summary = record["summary"]
    assert any(line.startswith("bench 64x16->24 float32 sine:2: fwd fused") for line in summary)
    assert any(line.startswith("train dense: test PSNR") for line in summary)
    assert record["targets"][2]["met"] is None  # a 1 s run says nothing about 3 minutes


def synthetic_record(ratio, saved, psnr, budget=180.0):
    entry = {"fused": {}, "torch": {}, "fused_forward_over_dense": ratio, "peak_saved_bytes": saved,
             "w_and_grad_bytes_fp32": 8 * 4096 * 4096}
    return {"parts": {
        "bench": {"status": "ok", "result": {"results": [
            {"in": 4096, "out": 4096, "batch": 8192, "ranks": {"8": {**entry, "fused_forward_over_dense": 0.5}}},
            {"in": 4096, "out": 4096, "batch": 65536, "ranks": {"1": {"error": "x"}, "8": entry}},
        ]}},
        "train": {"status": "ok", "result": {"runs": {"dense": {"test_psnr": psnr, "train_budget_s": budget}}}},
    }}


@pytest.mark.parametrize("ratio, saved, psnr, budget, met", [
    (1.05, 200 * 2**20, 28.4, 180.0, [True, True, True]),
    (1.30, 100 * 2**20, 27.0, 180.0, [False, False, False]),
    (1.05, None, 29.0, 120.0, [True, None, None]),
])
def test_targets_are_judged_from_measurements_only(check, ratio, saved, psnr, budget, met):
    found = check.targets(synthetic_record(ratio, saved, psnr, budget))
    assert [target["met"] for target in found] == met
    assert found[0]["measured"] == ratio  # the batch-65536 entry, not the 8192 one
    assert check.targets({"parts": {}})[0] == {**found[0], "measured": None, "met": None}


def test_find_data_dir(check, tmp_path, monkeypatch):
    assert check.find_data_dir(tmp_path / "given", "lego") == tmp_path / "given"
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "lego").mkdir(parents=True)
    monkeypatch.setattr(check, "DATA_CANDIDATES", (first, second))
    assert check.find_data_dir(None, "lego") == second
    with pytest.raises(FileNotFoundError, match="tried .*a/chair, .*b/chair"):
        check.find_data_dir(None, "chair")


def test_makefile_target_runs_the_check():
    makefile = (CHECK.parents[2] / "Makefile").read_text()
    assert "gpu-check: setup\n\t$(PYTHON) benchmarks/gpu/check.py" in makefile
