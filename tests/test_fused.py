"""The fused sine low-rank kernels (layers/fused.py) against the reference, on the CPU through
Triton's interpreter and, where there is one, on a CUDA GPU.

Interpreter: Triton reads TRITON_INTERPRET=1 when the kernels are decorated, i.e. when fused.py is
first imported, and this pytest process may have imported it already (the trainers do) and must
keep compiled kernels for the CUDA tests. So every interpreter case runs in ONE subprocess
(`python tests/test_fused.py`, TRITON_INTERPRET=1, one torch thread) that prints its measurements
as JSON; the tests below judge them case by case.

The reference is float64 from the same inputs: x and grad_y rounded to the case's dtype, and the
phase omega * U V^T in fp32 as the kernel forms it (rank terms summed in order, then times omega;
the layer's torch path forms it in fp32 too). Everything after the phase is exact, so an error is
the kernel's own: fp32 accumulation, sine of the reduced phase, W rounded to the input dtype for
the matmul, and y / grad_x rounded to it at the end. Errors are max |fused - reference| divided
by max |reference|, per output.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="Triton is not installed (pip install -e '.[dev]')")

TOLERANCES = {
    # x / grad_y dtype: y and grad_x carry W rounded to this dtype and their own final rounding
    # (fp16: 2^-11 relative, bf16: 2^-8); grad_U, grad_V and grad_bias accumulate exact products
    # of the rounded inputs in fp32, so they keep fp32 accuracy in every dtype.
    "float32": {"y": 1e-5, "grad_x": 1e-5, "grad_U": 1e-5, "grad_V": 1e-5, "grad_bias": 1e-5},
    "float16": {"y": 2e-3, "grad_x": 2e-3, "grad_U": 1e-5, "grad_V": 1e-5, "grad_bias": 1e-5},
    "bfloat16": {"y": 2e-2, "grad_x": 2e-2, "grad_U": 1e-5, "grad_V": 1e-5, "grad_bias": 1e-5},
}
GPU_TOLERANCES = {  # on the GPU the phase's rank sum may be fused into FMAs (an ulp of phase apart)
    # and sine is the hardware's sin.approx on [-pi, pi] (abs. error ~5e-7)
    dtype: {key: max(value, 1e-4) for key, value in tols.items()} for dtype, tols in TOLERANCES.items()
}

CASES = [
    # id, batch, in, out, rank, omega, dtype, bias,
    # matmul tiles (BLOCK_M, BLOCK_P, BLOCK_Q, warps, stages) or None: the interpreter default,
    # weight-grad tiles (BLOCK_N, BLOCK_K, BLOCK_M, warps, stages) or None, batch slices or None: the heuristic
    ("b1-3x3-k1", 1, 3, 3, 1, 100.0, "float32", True, None, None, None),
    ("ragged-5x7-k4-nobias", 37, 5, 7, 4, 30.0, "float32", False, (16, 16, 16, 1, 1), (16, 16, 16, 1, 1), 2),
    ("nerf-63x256-k4", 1000, 63, 256, 4, 100.0, "float32", True, (128, 128, 64, 1, 1), (128, 64, 128, 1, 1), 2),
    ("256x256-k16", 200, 256, 256, 16, 100.0, "float32", True, (128, 128, 64, 1, 1), (128, 128, 64, 1, 1), None),
    ("head-256x3-k1-omega800", 129, 256, 3, 1, 800.0, "float32", True, (64, 16, 64, 1, 1), (16, 64, 64, 1, 1), 3),
    ("slices-32x40-k4", 1000, 32, 40, 4, 100.0, "float32", True, None, (32, 32, 64, 1, 1), 5),
    ("fp16-100x130-k16", 300, 100, 130, 16, 50.0, "float16", True, (128, 64, 64, 1, 1), (64, 64, 128, 1, 1), None),
    ("fp16-256x256-k1", 64, 256, 256, 1, 100.0, "float16", False, (64, 128, 64, 1, 1), (128, 128, 64, 1, 1), None),
    ("bf16-48x96-k4", 257, 48, 96, 4, 100.0, "bfloat16", True, (128, 64, 32, 1, 1), (64, 32, 128, 1, 1), 2),
    ("bf16-200x40-k16", 500, 200, 40, 16, 100.0, "bfloat16", True, (128, 64, 64, 1, 1), (64, 128, 128, 1, 1), None),
]
OUTPUTS = ("y", "grad_x", "grad_U", "grad_V", "grad_bias")


# ---------------------------------------------------------------------------------------------
# The measurements (run here by the subprocess, imported from here by nothing else)


def make_inputs(batch, n_in, n_out, rank, omega, dtype, bias, seed=0):
    """The layer's own initialisation for U, V and the bias; x and grad_y ~ N(0, 1) in `dtype`."""
    from neuralfields.layers.linear import SineLowRankLinear

    torch.manual_seed(seed)
    layer = SineLowRankLinear(n_in, n_out, rank, omega=omega, bias=bias)
    x = torch.randn(batch, n_in).to(dtype)
    grad_y = torch.randn(batch, n_out).to(dtype)
    return layer, x, grad_y


def reference(x, grad_y, U, V, bias, omega, scale):
    """float64 outputs and gradients, from the fp32 phase formed as the kernel forms it."""
    acc = torch.zeros(U.shape[0], V.shape[0])
    for r in range(U.shape[1]):
        acc = acc + U[:, r, None] * V[None, :, r]
    phase = (acc * omega).double()
    x, grad_y = x.double(), grad_y.double()
    weight = torch.sin(phase) / scale
    d = (grad_y.T @ x) * torch.cos(phase) * (omega / scale)
    return {
        "y": x @ weight.T + (bias.double() if bias is not None else 0.0),
        "grad_x": grad_y @ weight,
        "grad_U": d @ V.double(),
        "grad_V": d.T @ U.double(),
        "grad_bias": grad_y.sum(0) if bias is not None else None,
    }


def relative_errors(got: dict, want: dict) -> dict:
    return {key: ((got[key].double() - want[key]).abs().max() / want[key].abs().max().clamp_min(1e-30)).item()
            for key in OUTPUTS if want[key] is not None}


def run_kernels(fused, x, grad_y, layer, matmul_config=None, weight_grad_config=None, splits=None):
    U, V, bias = layer.U.detach(), layer.V.detach(), layer.bias.detach() if layer.bias is not None else None
    omega, scale = layer.omega, layer.scale
    y = fused.sine_matmul(x, V, U, bias, omega, 1.0 / scale, config=matmul_config)
    grad_x = fused.sine_matmul(grad_y, U, V, None, omega, 1.0 / scale, config=matmul_config)
    grad_u, grad_v, grad_b = fused.sine_weight_grad(grad_y, x, U, V, bias is not None, omega, omega / scale,
                                                    config=weight_grad_config, splits=splits)
    return {"y": y, "grad_x": grad_x, "grad_U": grad_u, "grad_V": grad_v, "grad_bias": grad_b}


def measure_cases() -> dict:
    from neuralfields.layers import fused

    results = {}
    for case_id, batch, n_in, n_out, rank, omega, dtype, bias, mm, wg, splits in CASES:
        layer, x, grad_y = make_inputs(batch, n_in, n_out, rank, omega, getattr(torch, dtype), bias)
        started = time.perf_counter()
        got = run_kernels(fused, x, grad_y, layer, mm, wg, splits)
        seconds = time.perf_counter() - started
        want = reference(x, grad_y, layer.U.detach(), layer.V.detach(),
                         layer.bias.detach() if bias else None, omega, layer.scale)
        results[case_id] = {"errors": relative_errors(got, want), "seconds": round(seconds, 2),
                            "dtypes": {key: str(value.dtype) for key, value in got.items() if value is not None}}
    return results


def measure_layer() -> dict:
    """SineLowRankLinear on CPU tensors under the interpreter: which path each mode takes, fused
    against the torch path (NEURALFIELDS_FUSED=0), under bf16 autocast, and the bytes autograd keeps."""
    from neuralfields.layers import fused
    from neuralfields.layers.linear import SineLowRankLinear

    calls = []
    original = fused.sine_matmul

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    fused.sine_matmul = counting
    torch.manual_seed(0)
    layer = SineLowRankLinear(40, 24, 4, omega=100.0)
    x = torch.randn(3, 5, 40, requires_grad=True)

    def forward_backward(env: str, autocast: bool = False):
        os.environ[fused.ENV_SWITCH] = env
        for tensor in (x, *layer.parameters()):
            tensor.grad = None
        before = len(calls)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = layer(x)
        y.float().square().sum().backward()
        grads = [t.grad.clone() for t in (x, layer.U, layer.V, layer.bias)]
        return y, grads, len(calls) - before

    out = {}
    y_fused, g_fused, n_fused = forward_backward("1")
    y_torch, g_torch, n_torch = forward_backward("0")
    out["fused_calls_with_grad"], out["torch_path_calls"] = n_fused, n_torch
    out["shape"] = list(y_fused.shape)
    scale = lambda t: t.abs().max().item()  # noqa: E731
    out["fused_vs_torch"] = [(a - b).abs().max().item() / scale(b) for a, b in zip([y_fused, *g_fused], [y_torch, *g_torch])]
    y16, g16, n16 = forward_backward("1", autocast=True)
    y16_torch, g16_torch, _ = forward_backward("0", autocast=True)
    out["autocast_calls"], out["autocast_dtype"], out["autocast_torch_dtype"] = n16, str(y16.dtype), str(y16_torch.dtype)
    out["autocast_vs_torch"] = [(a.float() - b.float()).abs().max().item() / scale(b.float())
                                for a, b in zip([y16, *g16], [y16_torch, *g16_torch])]
    os.environ[fused.ENV_SWITCH] = "1"
    before = len(calls)
    with torch.no_grad():
        layer(x)
    out["calls_without_grad"] = len(calls) - before
    out["saved"] = {env: saved_tensor_sizes(SineLowRankLinear(256, 256, 1, omega=100.0), env) for env in ("1", "0")}
    fused.sine_matmul = original
    return out


def saved_tensor_sizes(layer, env: str) -> list[int]:
    """Element counts of the tensors autograd keeps for one forward of `layer` on a 64-row batch
    that needs a gradient (as the input of every layer but a network's first does)."""
    from neuralfields.layers import fused

    os.environ[fused.ENV_SWITCH] = env
    sizes = []

    def pack(tensor):
        sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        layer(torch.randn(64, 256, requires_grad=True))
    os.environ[fused.ENV_SWITCH] = "1"
    return sizes


if __name__ == "__main__":  # the interpreter subprocess
    torch.set_num_threads(1)
    from neuralfields.layers import fused as _fused

    assert _fused.INTERPRETING, "run with TRITON_INTERPRET=1"
    started = time.perf_counter()
    record = {"cases": measure_cases(), "layer": measure_layer()}
    record["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(record))
    sys.exit(0)


# ---------------------------------------------------------------------------------------------
# Interpreter tests (CPU)


@pytest.fixture(scope="module")
def interpreted():
    if not HAS_TRITON:
        pytest.skip("Triton is not installed (pip install -e '.[dev]')")
    env = {key: value for key, value in os.environ.items() if key != "NEURALFIELDS_FUSED"}
    env.update(TRITON_INTERPRET="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(Path(__file__).resolve())], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"interpreter subprocess failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_triton
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_interpreted_kernels_match_reference(interpreted, case):
    """Forward and the gradients of x, U, V and the bias for ragged shapes, ranks 1, 4, 16, batch
    1..1000, in/out 3..256, fp32 / fp16 / bf16 inputs, several tilings and batch slicings."""
    case_id, dtype = case[0], case[6]
    result = interpreted["cases"][case_id]
    assert set(result["errors"]) == set(OUTPUTS) - ({"grad_bias"} if not case[7] else set())
    too_large = {key: value for key, value in result["errors"].items() if value > TOLERANCES[dtype][key]}
    assert not too_large, f"{case_id}: relative errors above {TOLERANCES[dtype]}: {too_large}"
    assert result["dtypes"]["y"] == result["dtypes"]["grad_x"] == f"torch.{dtype}"
    assert result["dtypes"]["grad_U"] == result["dtypes"]["grad_V"] == "torch.float32"


@needs_triton
def test_interpreted_layer_dispatches_and_matches_torch_path(interpreted):
    """With autograd the layer takes the fused path (two sine matmuls: forward and grad_x), with
    NEURALFIELDS_FUSED=0 or without autograd the torch path; both agree, also under bf16 autocast
    (where both return bf16)."""
    layer = interpreted["layer"]
    assert layer["fused_calls_with_grad"] == 2 and layer["torch_path_calls"] == 0
    assert layer["calls_without_grad"] == 0
    assert layer["shape"] == [3, 5, 24]
    assert max(layer["fused_vs_torch"]) < 1e-5, layer["fused_vs_torch"]
    assert layer["autocast_calls"] == 2
    assert layer["autocast_dtype"] == layer["autocast_torch_dtype"] == "torch.bfloat16"
    # bf16: y and grad_x differ by bf16 roundings of W and y (the torch path rounds W / g, the
    # kernel sin before the 1/g); U, V, bias gradients by the torch path's bf16 dL/dW
    assert max(layer["autocast_vs_torch"]) < 3e-2, layer["autocast_vs_torch"]


@needs_triton
def test_fused_forward_keeps_no_weight_sized_tensor(interpreted):
    """The memory claim: for a 256x256 layer the torch path keeps two tensors of out x in elements
    for the backward (the phase and W), the fused path none (it keeps x, U and V)."""
    saved = interpreted["layer"]["saved"]
    weight_sized = 256 * 256
    assert weight_sized not in saved["1"] and max(saved["1"]) == 64 * 256, saved["1"]
    assert saved["0"].count(weight_sized) == 2, saved["0"]


@needs_triton
def test_interpreter_run_stays_short(interpreted):
    """The interpreter cases are sized for CI (seconds, one thread)."""
    assert interpreted["seconds"] < 60, interpreted["seconds"]


# ---------------------------------------------------------------------------------------------
# CPU tests without the interpreter


def test_switch_and_dispatch_rules_on_cpu(monkeypatch):
    from neuralfields.layers import fused
    from neuralfields.layers.linear import SineLowRankLinear

    cpu = torch.zeros(2, 3)
    if not fused.INTERPRETING:
        assert not fused.fused_available(cpu)
    monkeypatch.setenv(fused.ENV_SWITCH, "0")
    assert not fused.fused_enabled() and not fused.fused_available(cpu)
    for value, enabled in (("off", False), ("false", False), ("1", True), ("", True)):
        monkeypatch.setenv(fused.ENV_SWITCH, value)
        assert fused.fused_enabled() is enabled
    monkeypatch.delenv(fused.ENV_SWITCH)
    assert fused.fused_enabled()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fused.compute_dtype(cpu) == torch.bfloat16
    assert fused.compute_dtype(cpu.double()) == torch.float64
    model = torch.nn.Sequential(SineLowRankLinear(8, 8, 1, omega=10.0))
    if not fused.INTERPRETING:
        assert fused.layer_path_description(model, "cpu").startswith("sine layers: torch path")
    assert fused.layer_path_description(torch.nn.Linear(2, 2), "cpu") == "layers: torch (no sine layers)"
    monkeypatch.setenv(fused.ENV_SWITCH, "0")
    assert "NEURALFIELDS_FUSED=0" in fused.layer_path_description(model, "cpu")


@needs_triton
def test_tile_configs_and_batch_slicing():
    """Autotune lists: power-of-two tiles >= 16 (tl.dot's minimum); pruning keeps at least one
    config for the smallest layers; the batch is sliced only when the tile grid is small."""
    from neuralfields.layers import fused

    for configs in (fused.MATMUL_CONFIGS, fused.WEIGHT_GRAD_CONFIGS):
        for *blocks, warps, stages in configs:
            assert all(b >= 16 and b & (b - 1) == 0 for b in blocks) and warps in (4, 8) and stages >= 2
    if fused.INTERPRETING:
        return
    matmul = fused._sine_matmul_tuned.configs
    assert len(fused._prune_matmul(matmul, {"M": 1, "P": 3, "Q": 3})) >= 1
    assert all(c.kwargs["BLOCK_P"] <= 32 for c in fused._prune_matmul(matmul, {"M": 65536, "P": 3, "Q": 256}))
    assert len(fused._prune_matmul(matmul, {"M": 65536, "P": 4096, "Q": 4096})) == len(matmul)
    assert len(fused._prune_weight_grad(fused._sine_weight_grad_tuned.configs, {"N": 3, "K": 63})) >= 1
    assert fused._split_m(65536, 16, 64, 1, 132) == 33          # 256x256 layer: 16 tiles -> 33 slices
    assert fused._split_m(65536, 4096, 64, 8, 132) == 1         # 4096x4096: enough tiles already
    assert fused._split_m(100, 4, 64, 1, 132) == 1              # too few rows to slice
    assert fused._split_m(65536, 1, 64, 32, 132) == 32          # slices of >= 64 x rank rows
    assert [fused._batch_bucket(m) for m in (1, 2048, 2049, 32768, 262144)] == [0, 0, 1, 1, 2]


@needs_triton
def test_kernels_compile_for_hopper_and_ampere():
    """No GPU needed: Triton compiles both kernels to PTX and cubin for sm_90 and sm_80 with its
    bundled ptxas (the interpreter does not check what the compiler accepts). fp16 inputs use the
    tensor cores and the sine/cosine are the hardware approximations."""
    from neuralfields.layers import fused

    if fused.INTERPRETING:
        pytest.skip("this process runs Triton's interpreter (TRITON_INTERPRET=1): nothing to compile")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    common = {"M": "i32", "R": "i32", "M_BUCKET": "i32", "omega": "fp32", "HAS_BIAS": "constexpr",
              "DOT_PRECISION": "constexpr", "UPCAST": "constexpr", "FAST": "constexpr"}
    flags = {"HAS_BIAS": True, "DOT_PRECISION": "tf32", "UPCAST": False, "FAST": True}
    kernels = [
        (fused._sine_matmul_kernel,
         {"inp_ptr": "*fp16", "a_ptr": "*fp32", "b_ptr": "*fp32", "bias_ptr": "*fp32", "out_ptr": "*fp16",
          "Q": "i32", "P": "i32", "out_scale": "fp32", "BLOCK_M": "constexpr", "BLOCK_P": "constexpr",
          "BLOCK_Q": "constexpr"},
         {"BLOCK_M": 128, "BLOCK_P": 64, "BLOCK_Q": 16}, "sin.approx"),
        (fused._sine_weight_grad_kernel,
         {"gy_ptr": "*fp16", "x_ptr": "*fp16", "u_ptr": "*fp32", "v_ptr": "*fp32", "du_ptr": "*fp32",
          "dv_ptr": "*fp32", "db_ptr": "*fp32", "N": "i32", "K": "i32", "grad_scale": "fp32",
          "BLOCK_N": "constexpr", "BLOCK_K": "constexpr", "BLOCK_M": "constexpr"},
         {"BLOCK_N": 64, "BLOCK_K": 64, "BLOCK_M": 64}, "cos.approx"),
    ]
    for kernel, signature, blocks, sine in kernels:
        names = kernel.arg_names
        signature = {name: {**common, **signature}[name] for name in names}
        for arch, matmul in ((90, "wgmma"), (80, "mma.sync")):
            compiled = triton.compile(ASTSource(kernel, signature, {**flags, **blocks}),
                                      target=GPUTarget("cuda", arch, 32), options={"num_warps": 4, "num_stages": 3,
                                                                         "enable_fp_fusion": True})
            ptx = compiled.asm["ptx"]
            assert matmul in ptx and sine in ptx and compiled.asm["cubin"], (kernel.__name__, arch)


# ---------------------------------------------------------------------------------------------
# CUDA tests (benchmarks/gpu/check.py runs these: pytest -m cuda)


GPU_CASES = [  # batch, in, out, rank, omega, dtype, bias
    (1, 3, 3, 1, 100.0, "float32", True),
    (37, 5, 7, 4, 30.0, "float32", False),
    (1000, 63, 256, 4, 100.0, "float32", True),
    (4099, 256, 256, 16, 100.0, "float16", True),
    (129, 256, 3, 1, 800.0, "float16", True),
    (70000, 256, 256, 1, 100.0, "float16", True),
    (300, 100, 130, 16, 50.0, "bfloat16", True),
    (8192, 1024, 1024, 8, 100.0, "bfloat16", False),
]


GPU_TILES = ((64, 64, 32, 4, 3), (64, 64, 64, 4, 3))
"""Fixed tiles (one compile per dtype, not the autotuner's whole list; the layer tests below run
the autotuned path)."""


@pytest.mark.parametrize("case", GPU_CASES, ids=["x".join(map(str, c[:4])) + f"-{c[5]}" for c in GPU_CASES])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_kernels_match_reference(case):
    """The compiled kernels against the float64 reference (GPU tolerances)."""
    from neuralfields.layers import fused

    batch, n_in, n_out, rank, omega, dtype, bias = case
    layer, x, grad_y = make_inputs(batch, n_in, n_out, rank, omega, getattr(torch, dtype), bias)
    want = reference(x, grad_y, layer.U.detach(), layer.V.detach(), layer.bias.detach() if bias else None,
                     omega, layer.scale)
    layer = layer.cuda()
    got = run_kernels(fused, x.cuda(), grad_y.cuda(), layer, *GPU_TILES)
    errors = relative_errors({key: value.cpu() if value is not None else None for key, value in got.items()}, want)
    too_large = {key: value for key, value in errors.items() if value > GPU_TOLERANCES[dtype][key]}
    assert not too_large, f"relative errors above {GPU_TOLERANCES[dtype]}: {too_large}"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_layer_dispatch_and_switch(monkeypatch):
    """On CUDA with autograd the layer runs the fused kernels; NEURALFIELDS_FUSED=0 and no-grad
    evaluation take the torch path; all three agree (fp32 and fp16 autocast)."""
    from neuralfields.layers import fused
    from neuralfields.layers.linear import SineLowRankLinear

    calls = []
    original = fused.sine_matmul
    monkeypatch.setattr(fused, "sine_matmul", lambda *a, **k: calls.append(1) or original(*a, **k))
    torch.manual_seed(0)
    layer = SineLowRankLinear(256, 192, 4, omega=100.0).cuda()
    x = torch.randn(4, 1000, 256, device="cuda", requires_grad=True)
    results = {}
    for name, env, autocast in (("fused", "1", False), ("torch", "0", False), ("fused16", "1", True),
                                ("torch16", "0", True)):
        monkeypatch.setenv(fused.ENV_SWITCH, env)
        for tensor in (x, *layer.parameters()):
            tensor.grad = None
        before = len(calls)
        with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            y = layer(x)
        y.float().square().mean().backward()
        results[name] = (y.detach().float(), [t.grad.clone() for t in (x, layer.U, layer.V, layer.bias)])
        assert len(calls) - before == (2 if env == "1" else 0), name
        assert y.dtype == (torch.float16 if autocast else torch.float32)
    monkeypatch.setenv(fused.ENV_SWITCH, "1")
    with torch.no_grad():
        before = len(calls)
        cached = layer(x)
        assert len(calls) == before
    for a, b, tol in (("fused", "torch", 1e-4), ("fused16", "torch16", 2e-2)):
        for got, want in zip([results[a][0], *results[a][1]], [results[b][0], *results[b][1]]):
            assert (got - want).abs().max() <= tol * want.abs().max(), (a, b)
    assert (cached - results["torch"][0]).abs().max() <= 1e-4 * cached.abs().max()
    assert "fused Triton kernels" in fused.layer_path_description(torch.nn.Sequential(layer), "cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fused_backward_peak_memory_is_lower_by_w_and_its_gradient(monkeypatch):
    """fp32 forward+backward of a 2048x2048 layer: the fused path's peak allocation is below the
    torch path's by at least W and dL/dW in fp32 (8 bytes x out x in = 32 MiB)."""
    from neuralfields.layers import fused
    from neuralfields.layers.linear import SineLowRankLinear

    torch.manual_seed(0)
    layer = SineLowRankLinear(2048, 2048, 8, omega=100.0).cuda()
    x = torch.randn(4096, 2048, device="cuda", requires_grad=True)
    peaks = {}
    for env in ("1", "0", "1"):  # the first fused run also autotunes; the second one is measured
        monkeypatch.setenv(fused.ENV_SWITCH, env)
        for tensor in (x, *layer.parameters()):
            tensor.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        layer(x).sum().backward()
        torch.cuda.synchronize()
        peaks[env] = torch.cuda.max_memory_allocated() - base
    assert peaks["0"] - peaks["1"] >= 8 * 2048 * 2048, peaks
