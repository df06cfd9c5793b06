"""Fused Triton kernels for the sine low-rank layer: W = sin(omega U V^T) / g is built tile by tile
inside the matmuls, in registers, and never written to memory.

    forward   y   = x @ W^T + b                 _sine_matmul_kernel   (A = V, B = U)
    backward  g_x = g_y @ W                     _sine_matmul_kernel   (A = U, B = V)
              D   = (g_y^T x) * omega cos(omega U V^T) / g
              g_U = D @ V,  g_V = D^T @ U,  g_b = sum over rows of g_y
                                                _sine_weight_grad_kernel

`_sine_matmul_kernel` computes out[m, p] = s * sum_q inp[m, q] sin(omega A[q] . B[p]) (+ bias[p]):
each program owns a BLOCK_M x BLOCK_P output tile and walks q in BLOCK_Q steps; per step it loads
the inp tile, builds the BLOCK_Q x BLOCK_P sine tile from BLOCK_Q + BLOCK_P rows of A and B (rank
FMAs, a range reduction and a sine per element, in fp32) and feeds it to `tl.dot` in inp's dtype
with an fp32 accumulator. The scale s = 1/g is applied once to the accumulator.

`_sine_weight_grad_kernel` owns a BLOCK_N x BLOCK_K tile of G = g_y^T x and a slice of the batch
rows (split-M: grid axis 1; D is linear in G, so slices reduce independently). It accumulates its
G slice with `tl.dot`, multiplies it by cos of the phase tile (built like the sine tile) and
reduces the result against V and U rank column by rank column (fp32 FMAs and tile sums); the
partial g_U, g_V (and g_b, from the k = 0 column of tiles) are added with fp32 atomics, so the
summation order across tiles is not fixed (as with cuBLAS split-K, bit-exact repeats are not
promised). Neither G, D, W nor dL/dW is ever materialised.

The phase omega U V^T is always fp32 (rounding it to fp16/bf16 would scramble the sine at omega
~100) and is reduced into [-pi, pi] with a two-constant Cody-Waite step; there the GPU's
sin.approx / cos.approx (absolute error ~5e-7) replace libdevice's slower sinf / cosf. Under the
interpreter numpy's sin / cos run instead, and bf16 tiles are widened to fp32 before `tl.dot`
(Triton 3.9's interpreter multiplies bf16 tiles as raw bits; GPUs use bf16 tensor cores).

Cost: every W tile is rebuilt once per BLOCK_M batch rows, (rank + ~8) fp32 operations per weight
against BLOCK_M multiply-adds on the tensor cores, so the sine work grows with the rank and matters
most for fp16/bf16 inputs (fast tensor cores). Autotuning includes 256-row tiles for that reason.

Shapes that do not divide the tiles are handled by masks (out-of-range rows and columns load as
zero and are not stored); every shape >= 1 is accepted. Tile sizes are autotuned per layer shape,
rank, dtype and batch-size bucket (small config lists, pruned to the layer's size).

**Memory saved per layer** (fused against the torch path): the torch path keeps the fp32 phase
omega U V^T and W (fp32, or its fp16/bf16 copy under autocast; kept when the layer's input needs a
gradient, as in every layer but a network's first) from the forward to the backward, 6-8 bytes per
weight, and its backward peaks at about 16 bytes per weight (the phase, dL/dW / g, cos(phase) and
dL/dphase, all fp32). The fused path keeps only x, U, V and the bias (x is kept by both) and makes
no tensor of out x in elements, so per layer it saves 6-8 bytes x out x in between forward and
backward and about 16 bytes x out x in at the backward's peak: ~1 MiB for a 256x256 layer, 16 MiB
at 1024x1024, 256 MiB at 4096x4096. For NeRF's 256-wide layers this is small next to the
activations (a 262,144-sample batch holds 128 MiB per fp16 activation); it matters for wide layers.

Dispatch (`SineLowRankLinear.forward`): the fused path runs on CUDA when Triton imports, the
environment does not say NEURALFIELDS_FUSED=0, the parameters are fp32 and autograd is recording
(training steps). Without autograd (rendering, evaluation) the layer keeps its cached W and one
cuBLAS matmul: W is built once per parameter update there, so the per-tile sine would be repeated
work. Under TRITON_INTERPRET=1 (set before this module is imported: Triton reads it when the
kernels are decorated) the same kernels run on CPU tensors through Triton's interpreter, and the
layer dispatches CPU tensors to them too (the tests use this; it is slow, for correctness only).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os

import torch
from torch import nn

try:  # Triton is optional (the `dev` extra); a broken install counts as missing
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice
except Exception as exc:  # noqa: BLE001 - ImportError, or any error a broken install raises
    triton = None
    tl = None
    TRITON_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    TRITON_ERROR = None

ENV_SWITCH = "NEURALFIELDS_FUSED"
"""Environment variable: 0 / false / no / off turns the fused path off (read on every call)."""

INTERPRETING = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")
"""Whether Triton's interpreter ran this module's kernels' decorators (CPU tensors, no GPU)."""

COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def fused_enabled() -> bool:
    """False when the environment says NEURALFIELDS_FUSED=0 (or false/no/off)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a linear layer computes in for input x: the autocast dtype of x's device type when
    autocast is on there, else x's own dtype."""
    device_type = x.device.type
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError, RuntimeError):  # torch < 2.4 or a device type autocast does not know
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
    return x.dtype


def fused_available(tensor: torch.Tensor, weight: torch.Tensor | None = None) -> bool:
    """Whether the fused kernels can run on `tensor`: Triton imports, the switch is on, and the
    tensor is on CUDA (or on the CPU under TRITON_INTERPRET=1). With `weight` (U or V), also
    that the parameters are fp32 and the layer computes in fp32, fp16 or bf16."""
    if triton is None or not fused_enabled():
        return False
    if not (tensor.is_cuda or (INTERPRETING and tensor.device.type == "cpu")):
        return False
    if weight is not None:
        return weight.dtype == torch.float32 and compute_dtype(tensor) in COMPUTE_DTYPES
    return True


def layer_path_description(model: nn.Module, device: torch.device | str) -> str:
    """One line for the trainers' start-up output: which path the model's sine layers take on
    `device` (and whether the optional tiny-cuda-nn is installed)."""
    from neuralfields.layers.linear import SineLowRankLinear

    device = torch.device(device)
    sine = sum(isinstance(module, SineLowRankLinear) for module in model.modules())
    if not sine:
        text = "layers: torch (no sine layers)"
    else:
        probe = torch.empty(0, device=device) if device.type in ("cuda", "cpu") else None
        if probe is not None and fused_available(probe):
            where = "Triton interpreter, CPU" if device.type == "cpu" else "CUDA"
            text = (f"sine layers: fused Triton kernels in training steps ({where}; {ENV_SWITCH}=0 turns "
                    f"them off), cached W + one matmul without autograd")
        else:
            reason = ("Triton unavailable: " + TRITON_ERROR if triton is None else
                      f"{ENV_SWITCH}=0" if not fused_enabled() else "fused kernels need CUDA")
            text = f"sine layers: torch path, W materialised per step ({reason})"
    if device.type == "cuda" and importlib.util.find_spec("tinycudann") is not None:
        text += "; tiny-cuda-nn is installed (optional, unused by these layers)"
    return text


def sine_lowrank_linear(x: torch.Tensor, U: torch.Tensor, V: torch.Tensor, bias: torch.Tensor | None,
                        omega: float, scale: float) -> torch.Tensor:
    """y = x @ W^T + bias, W = sin(omega U V^T) / scale, through the fused kernels (any leading
    dimensions; computes in x's autocast dtype when autocast is on, like F.linear)."""
    _require_triton()
    dtype = compute_dtype(x)
    if dtype not in COMPUTE_DTYPES:
        raise TypeError(f"the fused sine layer computes in float32, float16 or bfloat16, not {dtype}")
    leading = x.shape[:-1]
    x2d = x.reshape(-1, x.shape[-1]).to(dtype)
    y = SineLowRankFunction.apply(x2d, U, V, bias, float(omega), float(scale))
    return y.reshape(*leading, U.shape[0])


class SineLowRankFunction(torch.autograd.Function):
    """Autograd around the fused kernels: inputs x (M, in) in the compute dtype, U (out, k),
    V (in, k) and bias (out,) in fp32; y in x's dtype; gradients of U, V, bias in fp32."""

    @staticmethod
    def forward(ctx, x, U, V, bias, omega, scale):
        x, U, V = x.contiguous(), U.detach().contiguous(), V.detach().contiguous()
        bias = bias.detach().contiguous() if bias is not None else None
        with _on_device(x):
            y = sine_matmul(x, V, U, bias, omega, 1.0 / scale)
        ctx.save_for_backward(x, U, V)
        ctx.has_bias = bias is not None
        ctx.omega, ctx.scale = omega, scale
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, U, V = ctx.saved_tensors
        grad_y = grad_y.contiguous().to(x.dtype)
        need_x, need_u, need_v, need_b = ctx.needs_input_grad[:4]
        grad_x = grad_u = grad_v = grad_b = None
        with _on_device(x):
            if need_x:
                grad_x = sine_matmul(grad_y, U, V, None, ctx.omega, 1.0 / ctx.scale)
            if need_u or need_v or (need_b and ctx.has_bias):
                grad_u, grad_v, grad_b = sine_weight_grad(grad_y, x, U, V, ctx.has_bias and need_b, ctx.omega,
                                                          ctx.omega / ctx.scale)
        return grad_x, grad_u if need_u else None, grad_v if need_v else None, grad_b, None, None


def _on_device(x: torch.Tensor):
    """Launch on x's GPU (Triton launches on the current device)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------
# Launchers


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _batch_bucket(m: int) -> int:
    """Autotuning key for the batch size: NeRF's sample count changes every step, so tuning keys on
    three size classes, not on the exact count (which would retune every step)."""
    return 0 if m <= 2048 else 1 if m <= 32768 else 2


def _dot_options(dtype: torch.dtype) -> dict:
    """Constexprs of the kernels' tl.dot. DOT_PRECISION: for fp32 inputs full fp32 products unless
    torch allows TF32 matmuls (torch's own rule); unused for fp16/bf16. UPCAST: Triton 3.9's
    interpreter multiplies bf16 tiles as their raw bits, so under the interpreter bf16 tiles are
    widened to fp32 first (exact: the products of bf16 values are the same; GPUs use bf16 dots)."""
    precision = "ieee" if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32 else "tf32"
    return {"DOT_PRECISION": precision, "UPCAST": INTERPRETING and dtype == torch.bfloat16, "FAST": not INTERPRETING,
            "enable_fp_fusion": True}  # FMAs in the phase sums (and no Triton 3.9 warning about the default)


def _multiprocessors(device: torch.device) -> int:
    if device.type != "cuda":
        return 4
    return _cuda_multiprocessors(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _cuda_multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _require_triton() -> None:
    if triton is None:
        raise RuntimeError(f"the fused sine layer needs Triton ({TRITON_ERROR})")


def _split_m(m: int, tiles: int, block_m: int, rank: int, multiprocessors: int) -> int:
    """How many slices of the batch rows the weight-gradient kernel reduces in parallel: enough
    programs for ~4 per multiprocessor, but each slice at least max(8 tiles, 64 x rank) rows so the
    per-slice epilogue (cos tile, 2 x rank reductions, atomics) stays small next to its matmul."""
    min_rows = max(8 * block_m, 64 * rank)
    most = max(1, m // min_rows)
    wanted = max(1, _cdiv(4 * multiprocessors, tiles))
    return int(min(most, wanted, 65535))


MATMUL_CONFIGS = [  # BLOCK_M, BLOCK_P, BLOCK_Q, num_warps, num_stages; none spills registers on sm_90 (fp16)
    (128, 128, 32, 8, 3),
    (128, 128, 16, 8, 3),
    (256, 64, 16, 8, 3),
    (256, 128, 16, 8, 3),
    (128, 64, 16, 4, 3),
    (64, 64, 32, 4, 3),
    (128, 32, 32, 4, 3),  # narrow layers (out <= 32)
]
WEIGHT_GRAD_CONFIGS = [  # BLOCK_N, BLOCK_K, BLOCK_M, num_warps, num_stages; 128x128 tiles spill: left out
    (64, 64, 64, 4, 3),
    (128, 64, 64, 8, 3),
    (64, 128, 64, 8, 3),
    (256, 64, 32, 8, 3),
    (32, 64, 128, 4, 3),
    (32, 32, 128, 4, 3),  # narrow layers
]
INTERPRET_MATMUL_CONFIG = (32, 32, 32, 1, 1)
INTERPRET_WEIGHT_GRAD_CONFIG = (32, 32, 64, 1, 1)
"""Interpreter defaults (the tests pass others to exercise ragged tiles)."""


def _fits(block: int, size: int) -> bool:
    """A tile no more than one power of two above the dimension (32 at least)."""
    return block <= max(32, triton.next_power_of_2(size))


def _prune_matmul(configs, named_args, **kwargs):
    kept = [c for c in configs if _fits(c.kwargs["BLOCK_P"], named_args["P"]) and _fits(c.kwargs["BLOCK_Q"], named_args["Q"])
            and _fits(c.kwargs["BLOCK_M"] // 2, named_args["M"])]
    return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_P"] * c.kwargs["BLOCK_Q"])]


def _prune_weight_grad(configs, named_args, **kwargs):
    kept = [c for c in configs if _fits(c.kwargs["BLOCK_N"], named_args["N"]) and _fits(c.kwargs["BLOCK_K"], named_args["K"])]
    return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_N"] * c.kwargs["BLOCK_K"])]


def sine_matmul(inp: torch.Tensor, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None, omega: float,
                out_scale: float, config: tuple | None = None) -> torch.Tensor:
    """out (M, P) = out_scale * inp @ sin(omega a b^T) (+ bias) in inp's dtype; inp (M, Q) contiguous
    in fp32/fp16/bf16, a (Q, k) and b (P, k) contiguous fp32. `config`: a fixed
    (BLOCK_M, BLOCK_P, BLOCK_Q, num_warps, num_stages) instead of the autotuned choice."""
    _require_triton()
    m, q = inp.shape
    p, rank = b.shape
    out = torch.empty((m, p), device=inp.device, dtype=inp.dtype)
    if m == 0:
        return out
    args = (inp, a, b, bias if bias is not None else out, out, m, q, p, rank, _batch_bucket(m),
            float(omega), float(out_scale))
    consts = {"HAS_BIAS": bias is not None, **_dot_options(inp.dtype)}
    if config is None and INTERPRETING:
        config = INTERPRET_MATMUL_CONFIG
    if config is None:
        _sine_matmul_tuned[lambda meta: (_cdiv(m, meta["BLOCK_M"]) * _cdiv(p, meta["BLOCK_P"]),)](*args, **consts)
    else:
        block_m, block_p, block_q, warps, stages = config
        _sine_matmul_kernel[(_cdiv(m, block_m) * _cdiv(p, block_p),)](
            *args, **consts, BLOCK_M=block_m, BLOCK_P=block_p, BLOCK_Q=block_q, num_warps=warps, num_stages=stages)
    return out


def sine_weight_grad(grad_y: torch.Tensor, x: torch.Tensor, U: torch.Tensor, V: torch.Tensor, with_bias: bool,
                     omega: float, grad_scale: float, config: tuple | None = None,
                     splits: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(dL/dU, dL/dV, dL/dbias or None) in fp32 from grad_y (M, N) and x (M, K), both contiguous in
    the same dtype; grad_scale = omega / g. `config`: a fixed (BLOCK_N, BLOCK_K, BLOCK_M, num_warps,
    num_stages); `splits`: a fixed number of batch slices (grid axis 1)."""
    _require_triton()
    m, n = grad_y.shape
    k = x.shape[1]
    rank = U.shape[1]
    grad_u = torch.zeros_like(U, dtype=torch.float32)
    grad_v = torch.zeros_like(V, dtype=torch.float32)
    grad_b = torch.zeros(n, device=U.device, dtype=torch.float32) if with_bias else None
    if m == 0:
        return grad_u, grad_v, grad_b
    args = (grad_y, x, U, V, grad_u, grad_v, grad_b if with_bias else grad_u, m, n, k, rank, _batch_bucket(m),
            float(omega), float(grad_scale))
    consts = {"HAS_BIAS": with_bias, **_dot_options(x.dtype)}
    multiprocessors = _multiprocessors(x.device)

    def grid(meta):
        tiles = _cdiv(n, meta["BLOCK_N"]) * _cdiv(k, meta["BLOCK_K"])
        return tiles, splits or _split_m(m, tiles, meta["BLOCK_M"], rank, multiprocessors)

    if config is None and INTERPRETING:
        config = INTERPRET_WEIGHT_GRAD_CONFIG
    if config is None:
        _sine_weight_grad_tuned[grid](*args, **consts)
    else:
        block_n, block_k, block_m, warps, stages = config
        meta = {"BLOCK_N": block_n, "BLOCK_K": block_k, "BLOCK_M": block_m}
        _sine_weight_grad_kernel[grid(meta)](*args, **consts, **meta, num_warps=warps, num_stages=stages)
    return grad_u, grad_v, grad_b


# ----------------------------------------------------------------------------------------------
# Kernels

if triton is not None:

    @triton.jit
    def _phase_tile(a_ptr, b_ptr, offs_a, offs_b, mask_a, mask_b, R, omega,
                    BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr):
        """omega * A[offs_a] . B[offs_b] as a (BLOCK_A, BLOCK_B) fp32 tile, reduced into [-pi, pi]
        (masked rows give phase 0). A and B are (rows, R) row-major fp32."""
        acc = tl.zeros((BLOCK_A, BLOCK_B), dtype=tl.float32)
        for r in range(R):
            a = tl.load(a_ptr + offs_a * R + r, mask=mask_a, other=0.0)
            b = tl.load(b_ptr + offs_b * R + r, mask=mask_b, other=0.0)
            acc += a[:, None] * b[None, :]
        phase = acc * omega
        # Cody-Waite: 2 pi = 6.28125 (8 significant bits: turns * 6.28125 is exact below 2^16 turns)
        # + 1.9353071795864769e-3
        turns = tl.floor(phase * 0.15915494309189535 + 0.5)
        return (phase - turns * 6.28125) - turns * 1.9353071795864769e-3

    @triton.jit
    def _sin(x, FAST: tl.constexpr):
        """sin on [-pi, pi]: the GPU's sin.approx (abs. error ~5e-7 there) or, under the
        interpreter (which has no libdevice), numpy's."""
        if FAST:
            y = libdevice.fast_sinf(x)
        else:
            y = tl.sin(x)
        return y

    @triton.jit
    def _cos(x, FAST: tl.constexpr):
        if FAST:
            y = libdevice.fast_cosf(x)
        else:
            y = tl.cos(x)
        return y

    @triton.jit
    def _dot(a, b, acc, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr):
        """acc + a @ b (fp32 accumulator); UPCAST widens the tiles to fp32 first (interpreter, bf16)."""
        if UPCAST:
            acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
        return acc

    @triton.jit(do_not_specialize=["M", "M_BUCKET", "R"])
    def _sine_matmul_kernel(inp_ptr, a_ptr, b_ptr, bias_ptr, out_ptr, M, Q, P, R, M_BUCKET, omega, out_scale,
                            HAS_BIAS: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, FAST: tl.constexpr,
                            BLOCK_M: tl.constexpr,
                            BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr):
        """out[m, p] = out_scale * sum_q inp[m, q] sin(omega A[q] . B[p]) (+ bias[p]). Program ids
        run along P first, so the programs sharing an inp row block run together (L2 reuse)."""
        pid = tl.program_id(0)
        num_p = tl.cdiv(P, BLOCK_P)
        pid_m = pid // num_p
        pid_p = pid % num_p
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        mask_m = offs_m < M
        mask_p = offs_p < P
        rows = inp_ptr + offs_m.to(tl.int64)[:, None] * Q
        acc = tl.zeros((BLOCK_M, BLOCK_P), dtype=tl.float32)
        for q0 in range(0, Q, BLOCK_Q):
            offs_q = q0 + tl.arange(0, BLOCK_Q)
            mask_q = offs_q < Q
            x = tl.load(rows + offs_q[None, :], mask=mask_m[:, None] & mask_q[None, :], other=0.0)
            w = _sin(_phase_tile(a_ptr, b_ptr, offs_q, offs_p, mask_q, mask_p, R, omega, BLOCK_Q, BLOCK_P), FAST)
            acc = _dot(x, w.to(x.dtype), acc, DOT_PRECISION, UPCAST)
        acc = acc * out_scale
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_p, mask=mask_p, other=0.0)[None, :]
        out = out_ptr + offs_m.to(tl.int64)[:, None] * P + offs_p[None, :]
        tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_p[None, :])

    @triton.jit(do_not_specialize=["M", "M_BUCKET", "R"])
    def _sine_weight_grad_kernel(gy_ptr, x_ptr, u_ptr, v_ptr, du_ptr, dv_ptr, db_ptr, M, N, K, R, M_BUCKET, omega,
                                 grad_scale, HAS_BIAS: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, FAST: tl.constexpr,
                                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
        """Adds this program's share of dL/dU, dL/dV (and dL/db) into du, dv, db (fp32, zeroed):
        the (BLOCK_N, BLOCK_K) tile of G = gy^T x over batch slice program_id(1), times
        grad_scale cos(phase), reduced against V and U."""
        pid = tl.program_id(0)
        num_k = tl.cdiv(K, BLOCK_K)
        pid_n = pid // num_k
        pid_k = pid % num_k
        blocks_per_split = tl.cdiv(tl.cdiv(M, BLOCK_M), tl.num_programs(1))
        m_start = tl.program_id(1) * blocks_per_split * BLOCK_M
        m_end = tl.minimum(M, m_start + blocks_per_split * BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
        mask_n = offs_n < N
        mask_k = offs_k < K
        g = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        db = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for m0 in range(m_start, m_end, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < m_end
            rows = offs_m.to(tl.int64)
            gy_t = tl.load(gy_ptr + rows[None, :] * N + offs_n[:, None], mask=mask_n[:, None] & mask_m[None, :],
                           other=0.0)
            x = tl.load(x_ptr + rows[:, None] * K + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :],
                        other=0.0)
            g = _dot(gy_t, x, g, DOT_PRECISION, UPCAST)
            if HAS_BIAS:
                db += tl.sum(gy_t.to(tl.float32), axis=1)
        d = g * _cos(_phase_tile(u_ptr, v_ptr, offs_n, offs_k, mask_n, mask_k, R, omega, BLOCK_N, BLOCK_K), FAST)
        for r in range(R):
            u = tl.load(u_ptr + offs_n * R + r, mask=mask_n, other=0.0)
            v = tl.load(v_ptr + offs_k * R + r, mask=mask_k, other=0.0)
            tl.atomic_add(du_ptr + offs_n * R + r, tl.sum(d * v[None, :], axis=1) * grad_scale, mask=mask_n,
                          sem="relaxed")
            tl.atomic_add(dv_ptr + offs_k * R + r, tl.sum(d * u[:, None], axis=0) * grad_scale, mask=mask_k,
                          sem="relaxed")
        if HAS_BIAS:
            if pid_k == 0:
                tl.atomic_add(db_ptr + offs_n, db, mask=mask_n, sem="relaxed")

    def _quick_bench(kernel_call, quantiles):
        """Autotuning timer: 25 ms of repeats per config instead of Triton's default 100 ms (NeRF
        tunes a few layer shapes x batch buckets at start-up; the picks are cached on disk)."""
        return triton.testing.do_bench(kernel_call, warmup=5, rep=25, quantiles=quantiles)

    # Keys: the layer's shape, rank and batch bucket (Triton adds the tensors' dtypes). Tuning results
    # are cached on disk (cache_results) next to Triton's compiled kernels.
    _sine_matmul_tuned = triton.autotune(
        configs=[triton.Config({"BLOCK_M": bm, "BLOCK_P": bp, "BLOCK_Q": bq}, num_warps=w, num_stages=s)
                 for bm, bp, bq, w, s in MATMUL_CONFIGS],
        key=["P", "Q", "R", "M_BUCKET"], prune_configs_by={"early_config_prune": _prune_matmul},
        do_bench=_quick_bench, cache_results=True,
    )(_sine_matmul_kernel)
    _sine_weight_grad_tuned = triton.autotune(
        configs=[triton.Config({"BLOCK_N": bn, "BLOCK_K": bk, "BLOCK_M": bm}, num_warps=w, num_stages=s)
                 for bn, bk, bm, w, s in WEIGHT_GRAD_CONFIGS],
        key=["N", "K", "R", "M_BUCKET"], prune_configs_by={"early_config_prune": _prune_weight_grad},
        reset_to_zero=["du_ptr", "dv_ptr", "db_ptr"], do_bench=_quick_bench, cache_results=True,
    )(_sine_weight_grad_kernel)


def tuned_configs() -> dict:
    """The tile configs the autotuner picked so far, per kernel and key (for benchmark records)."""
    if triton is None or INTERPRETING:
        return {}
    return {name: {str(key): str(config) for key, config in kernel.cache.items()}
            for name, kernel in (("sine_matmul", _sine_matmul_tuned), ("sine_weight_grad", _sine_weight_grad_tuned))}


__all__ = ["ENV_SWITCH", "SineLowRankFunction", "compute_dtype", "fused_available", "fused_enabled",
           "layer_path_description", "sine_lowrank_linear", "sine_matmul", "sine_weight_grad", "tuned_configs"]
