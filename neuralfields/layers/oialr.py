"""Adaptive-rank linear layers: Orthogonality-Informed Adaptive Low-Rank training (OIALR).

Coquelin et al., "Harnessing Orthogonality to Train Low-Rank Neural Networks" (ECAI 2024,
arXiv 2401.08505): train the weight at full rank for `warmup_steps` optimiser steps; then write it
as W = U S V^T from its SVD, freeze the orthonormal bases U and V and train only the small square
S; every `interval` steps take the SVD of S, rotate U and V by its singular vectors (S becomes
diagonal again) and drop the directions whose singular values fall below `beta` times the largest,
never going below `min_rank`. The rank shrinks to what the task needs.

    spec `oialr:K@BETA`      OIALRLinear(min_rank=K, beta=BETA)   (BETA default 0.1)
    spec `oialrsine:K@BETA`  the sine variant: W = sin(omega * U S V^T) / sqrt(in), omega = 100

Design (why it looks like this):

- One trained parameter `S` all along. During the warm-up S *is* the dense weight (out x in; U
  and V are absent, i.e. the identity); the switch is the first re-orthogonalisation
  (S = A diag(s) B^T, U = A, V = B, S = diag(s)) and keeps U S V^T equal to the weight it
  replaced. Each re-orthogonalisation makes a new S and puts it where the old one was in the
  optimiser (same group, same position) with its state carried over, so the optimiser needs no
  rebuilding and its saved state maps onto S by position on resume. (New parameter objects, not
  in-place shape changes: autograd caches a leaf's shape, and a graph still alive from the last
  step would break.) Loading a checkpoint instead resizes S in place, so that the optimiser the
  task built before loading still holds the model's S.
- The schedule runs on the optimiser's step count: the training loop calls
  `after_optimizer_step(step, optimizer)` on every module that has the method after each step
  (`training/loop.py`; a generic hook, not OIALR-specific). That is simpler and more honest than
  counting forward passes: validation renders, evaluation chunks and gradient-free forwards do not
  advance the schedule, the step count is the loop's own (restored on resume), and the optimiser
  whose state must follow S's shape is at hand.
- When S is rotated (S' = A^T S B, then truncated to its leading r x r block), its optimiser
  state follows: first moments and momentum buffers, which are linear in the gradient
  (dL/dS' = A^T dL/dS B), are rotated exactly; second moments (exp_avg_sq, max_exp_avg_sq) are
  carried as (A*A)^T v (B*B), the second moment of the rotated gradient when its entries are
  uncorrelated (non-negative, same total). Both are then sliced to r x r. Adam's step count is
  kept. An optimiser state this layer does not know raises an error instead of being left stale.
- Checkpoints hold the current shapes (S, and U, V once switched) plus two small integer buffers:
  `schedule` (warm-up steps, interval: runs resume with the schedule they started with) and
  `rank_log` (rows of (step, rank) at construction, at the switch and at every rank change).
  `_load_from_state_dict` reshapes the layer to the checkpoint's shapes before copying, so a
  model built fresh (at full rank, in warm-up) loads a checkpoint saved after rank changes.

Counting: `parameters` of a model count what is stored (U, S, V and bias); U and V are frozen
parameters (requires_grad False), so "trainable" counts S and the bias only. At full rank right
after the switch the stored size exceeds dense (r(in + out) + r^2 > in * out); it is the final,
truncated size that is compared with fixed-rank layers.

Limits: one process (under DistributedDataParallel the switch raises a clear error: DDP hooks the
parameters it was built with); optimiser state is carried for Adam/AdamW (exp_avg, exp_avg_sq,
max_exp_avg_sq) and SGD momentum, anything else raises rather than being left stale; the paper
code's cap of at most 50 % of the rank dropped per update is not applied (exactly the directions
below beta go).

Warm-up and interval are not part of the layer spec: they are run settings, the config keys
`oialr_warmup_steps` and `oialr_interval` (`--set oialr_warmup_steps=100`; defaults
`DEFAULT_WARMUP_STEPS`, `DEFAULT_INTERVAL`). The trainers build their model inside
`oialr_schedule(...)` with the run's values (`training.loop.build_task`); code that builds layers
itself uses the same block or passes them to `OIALRLinear`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from neuralfields.errors import NeuralFieldsError

DEFAULT_BETA = 0.1
"""The paper's code default cut-off (`sigma_cutoff_fraction`)."""
DEFAULT_WARMUP_STEPS = 200
"""Full-rank steps before the switch to U S V^T (the paper's `delay`; its code uses 1000 on runs of
many epochs, our neural-field runs are ~1-4k steps)."""
DEFAULT_INTERVAL = 100
"""Steps between two rank updates (the paper's `stability_frequency`, 100 in its code)."""
SINE_OMEGA = 100.0
"""Omega of the `oialrsine` kind (the sine layers' default)."""

LINEAR_STATE = ("exp_avg", "momentum_buffer")
"""Optimiser state linear in the gradient: rotated exactly with S."""
SQUARED_STATE = ("exp_avg_sq", "max_exp_avg_sq")
"""Optimiser state of squared gradients: rotated with the squared rotations."""


class OIALRSettingError(NeuralFieldsError, ValueError):
    """A bad OIALR hyper-parameter (one line; a ValueError like the other layers' errors)."""


_SCHEDULE: contextvars.ContextVar[dict] = contextvars.ContextVar("oialr_schedule", default={})


@contextlib.contextmanager
def oialr_schedule(warmup_steps: int | None = None, interval: int | None = None) -> Iterator[None]:
    """Warm-up steps and update interval for every OIALR layer built inside the block:
    `with oialr_schedule(warmup_steps=300): model = build_model(config)`. Trainers open this block
    themselves with the run config's `oialr_warmup_steps` / `oialr_interval`, which therefore win
    over a block around a trainer call."""
    values = {key: value for key, value in (("warmup_steps", warmup_steps), ("interval", interval))
              if value is not None}
    _check_schedule(values.get("warmup_steps", DEFAULT_WARMUP_STEPS), values.get("interval", DEFAULT_INTERVAL))
    token = _SCHEDULE.set({**_SCHEDULE.get(), **values})
    try:
        yield
    finally:
        _SCHEDULE.reset(token)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_schedule(warmup_steps, interval) -> None:
    if not _is_int(warmup_steps) or warmup_steps < 0:
        raise OIALRSettingError(f"OIALR warm-up must be an integer number of steps >= 0, got {warmup_steps!r}")
    if not _is_int(interval) or interval < 1:
        raise OIALRSettingError(f"OIALR update interval must be an integer number of steps >= 1, got {interval!r}")


class OIALRLinear(nn.Module):
    """y = x @ W^T + b with W = U S V^T (or sin(omega U S V^T) / scale), adaptive rank.

    Before the switch (the first `warmup_steps` optimiser steps) S is the dense (out, in) weight and
    U, V are None; after it U (out, r) and V (in, r) are frozen orthonormal bases and S (r, r) is
    trained. `after_optimizer_step` runs the schedule; `rank` is the current rank (min(in, out)
    before the switch) and `rank_history()` its (step, rank) log.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        beta: float = DEFAULT_BETA,
        min_rank: int = 1,
        bias: bool = True,
        warmup_steps: int | None = None,
        interval: int | None = None,
        omega: float | None = None,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise OIALRSettingError(f"in_features and out_features must be >= 1, got {in_features} and {out_features}")
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not 0.0 < beta < 1.0:
            raise OIALRSettingError(f"OIALR beta (the singular-value cut-off, a fraction of the largest) must lie in "
                                    f"(0, 1), got {beta!r}")
        full = min(in_features, out_features)
        if not _is_int(min_rank) or not 1 <= min_rank <= full:
            raise OIALRSettingError(f"OIALR minimum rank must be an integer in 1..{full} for a "
                                    f"{in_features}->{out_features} layer, got {min_rank!r}")
        schedule = _SCHEDULE.get()
        warmup_steps = schedule.get("warmup_steps", DEFAULT_WARMUP_STEPS) if warmup_steps is None else warmup_steps
        interval = schedule.get("interval", DEFAULT_INTERVAL) if interval is None else interval
        _check_schedule(warmup_steps, interval)
        if omega is not None and (not math.isfinite(omega) or omega <= 0):
            raise OIALRSettingError(f"omega must be a finite number > 0, got {omega!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.beta = float(beta)
        self.min_rank = min_rank
        self.omega = float(omega) if omega is not None else None
        self.scale = float(scale) if scale is not None else math.sqrt(in_features)
        self.S = nn.Parameter(torch.empty(out_features, in_features))
        self.register_parameter("U", None)
        self.register_parameter("V", None)
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.register_buffer("schedule", torch.tensor([warmup_steps, interval], dtype=torch.long))
        self.register_buffer("rank_log", torch.tensor([[0, full]], dtype=torch.long))
        self.reset_parameters()
        if warmup_steps == 0:  # no full-rank phase: start from the SVD of the initial weight
            self.reorthogonalise(step=0, truncate=False)

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation of the dense weight (and bias)."""
        nn.init.kaiming_uniform_(self.S, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    # -- state -------------------------------------------------------------------------------

    @property
    def switched(self) -> bool:
        """True once the layer trains S between frozen bases U and V."""
        return self.U is not None

    @property
    def rank(self) -> int:
        return self.S.shape[0] if self.switched else min(self.in_features, self.out_features)

    @property
    def warmup_steps(self) -> int:
        return int(self.schedule[0])

    @property
    def interval(self) -> int:
        return int(self.schedule[1])

    def rank_history(self) -> list[tuple[int, int]]:
        """(step, rank) at construction, at the switch and at every rank change."""
        return [(int(step), int(rank)) for step, rank in self.rank_log.tolist()]

    def dense_parameter_count(self) -> int:
        """Parameters of an nn.Linear of the same shape."""
        return self.in_features * self.out_features + (self.out_features if self.bias is not None else 0)

    # -- forward -----------------------------------------------------------------------------

    def _pre_activation(self) -> torch.Tensor:
        return self.S if not self.switched else self.U @ self.S @ self.V.T

    def weight_matrix(self) -> torch.Tensor:
        """The (out, in) weight; the sine variant's phase is kept in the parameters' precision
        under autocast, as in SineLowRankLinear."""
        if self.omega is None:
            return self._pre_activation()
        with torch.autocast(self.S.device.type, enabled=False):
            return torch.sin(self.omega * self._pre_activation()) / self.scale

    def _factored_is_cheaper(self) -> bool:
        rank = self.rank
        return rank * (self.in_features + self.out_features + rank) < self.in_features * self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.omega is None and self.switched and self._factored_is_cheaper():
            return F.linear(F.linear(F.linear(x, self.V.T), self.S), self.U, self.bias)
        return F.linear(x, self.weight_matrix(), self.bias)

    # -- the schedule ------------------------------------------------------------------------

    def after_optimizer_step(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Run the schedule after optimiser step number `step` (1-based: steps taken so far):
        switch to U S V^T once `step` reaches the warm-up, then every `interval` steps
        re-orthogonalise and truncate. Returns True when S changed."""
        warmup, interval = self.warmup_steps, self.interval
        if step < warmup:
            return False
        if not self.switched:
            self.reorthogonalise(optimizer, step=step, truncate=False)
            return True
        if step > warmup and (step - warmup) % interval == 0:
            self.reorthogonalise(optimizer, step=step, truncate=True)
            return True
        return False

    def kept_rank(self, singular_values: torch.Tensor) -> int:
        """How many leading directions survive: those with singular value >= beta * the largest,
        at least `min_rank` (singular values in descending order)."""
        above = int((singular_values >= self.beta * singular_values[0]).sum()) if len(singular_values) else 0
        return min(len(singular_values), max(above, self.min_rank))

    @torch.no_grad()
    def reorthogonalise(self, optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                        truncate: bool = True) -> int:
        """S = A diag(s) B^T (SVD, in float64); U <- U A, V <- V B, S <- diag(s), keeping the
        leading `kept_rank(s)` directions when `truncate`. The optimiser's state of S follows.
        The first call (before it U = V = identity) is the switch. Returns the new rank."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            # DistributedDataParallel hooks the parameters it was built with: a new S would train
            # without gradient averaging and the ranks would drift apart silently.
            raise NeuralFieldsError("OIALR layers do not support multi-process (DistributedDataParallel) "
                                    "training; train them in one process")
        dtype = self.S.dtype
        a, s, bh = torch.linalg.svd(self.S.detach().double(), full_matrices=False)
        b = bh.T
        keep = self.kept_rank(s) if truncate else len(s)
        a, s, b = a[:, :keep], s[:keep], b[:, :keep]
        before, was_switched = self.rank, self.switched
        new_u = a if not was_switched else self.U.double() @ a
        new_v = b if not was_switched else self.V.double() @ b
        old = self.S
        # New parameter objects rather than in-place shape changes: autograd caches a leaf's shape
        # (its gradient accumulator), so a graph still alive from the last step would break.
        self.S = nn.Parameter(torch.diag(s).to(dtype), requires_grad=old.requires_grad)
        self.U = nn.Parameter(new_u.to(dtype), requires_grad=False)
        self.V = nn.Parameter(new_v.to(dtype), requires_grad=False)
        if optimizer is not None:
            self._follow_in_optimizer(optimizer, old, a, b)
        if not was_switched or self.rank != before:
            self._log_rank(step)
        return self.rank

    def _log_rank(self, step: int) -> None:
        row = torch.tensor([[step, self.rank]], dtype=torch.long, device=self.rank_log.device)
        self.rank_log = torch.cat([self.rank_log, row])

    def _follow_in_optimizer(self, optimizer: torch.optim.Optimizer, old: nn.Parameter, a: torch.Tensor,
                             b: torch.Tensor) -> None:
        """Put the new S where the optimiser had the old one (same group, same position, so that
        saved optimiser state keeps mapping by position) and carry its state into the new
        coordinates S' = a^T S b (see the module docstring)."""
        for group in optimizer.param_groups:
            group["params"] = [self.S if param is old else param for param in group["params"]]
        state = optimizer.state.pop(old, None)
        if not state:
            return  # S is not optimised by it, or no step was taken yet
        optimizer.state[self.S] = state
        for key, value in list(state.items()):
            if not torch.is_tensor(value) or value.shape != old.shape:
                continue  # scalars such as Adam's step
            if key in LINEAR_STATE:
                carried = a.T @ value.double() @ b
            elif key in SQUARED_STATE:
                carried = (a * a).T @ value.double() @ (b * b)
            else:
                raise NeuralFieldsError(
                    f"OIALR cannot carry the optimiser state {key!r} of {type(optimizer).__name__} through a rank "
                    f"change (known: {', '.join(LINEAR_STATE + SQUARED_STATE)})")
            state[key] = carried.to(value.dtype).contiguous()

    # -- checkpoints -------------------------------------------------------------------------

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Take the checkpoint's shapes (switched or not, any rank) before copying its values."""
        s, u, v = (state_dict.get(prefix + name) for name in ("S", "U", "V"))
        with torch.no_grad():
            if s is not None and (u is None) == (v is None):
                if u is None and self.switched:
                    self.U = None
                    self.V = None
                elif u is not None:
                    for name, saved in (("U", u), ("V", v)):
                        current = getattr(self, name)
                        if current is None:
                            setattr(self, name, nn.Parameter(torch.empty(saved.shape, dtype=self.S.dtype,
                                                                         device=self.S.device), requires_grad=False))
                        elif current.shape != saved.shape:
                            current.data = torch.empty(saved.shape, dtype=current.dtype, device=current.device)
                if self.S.shape != s.shape:
                    self.S.data = torch.empty(s.shape, dtype=self.S.dtype, device=self.S.device)
                    self.S.grad = None
            log = state_dict.get(prefix + "rank_log")
            if log is not None and log.shape != self.rank_log.shape:
                self.rank_log = torch.empty(log.shape, dtype=self.rank_log.dtype, device=self.rank_log.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        text = (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"beta={self.beta:g}, min_rank={self.min_rank}, warmup_steps={self.warmup_steps}, "
                f"interval={self.interval}, bias={self.bias is not None}")
        return text + (f", omega={self.omega:g}" if self.omega is not None else "")


def oialr_layers(model: nn.Module) -> dict[str, OIALRLinear]:
    """The model's OIALR layers by name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, OIALRLinear)}
