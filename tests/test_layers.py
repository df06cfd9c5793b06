"""The layer core: numerics against the formula, gradients, spec parsing, counting, rank, W cache."""

import math

import pytest
import torch
from torch import nn

from neuralfields.layers.counting import count_parameters, parameter_report
from neuralfields.layers.diagnostics import numerical_rank
from neuralfields.layers.linear import LowRankLinear, SineLowRankLinear, weight_matrix
from neuralfields.layers.spec import KINDS, LayerSpec


def explicit_weight(layer):
    if isinstance(layer, SineLowRankLinear):
        return torch.sin(layer.omega * (layer.U @ layer.V.T)) / math.sqrt(layer.in_features)
    return layer.U @ layer.V.T


@pytest.mark.parametrize("layer_cls", [LowRankLinear, SineLowRankLinear])
def test_forward_matches_formula_with_batch_dims(layer_cls):
    torch.manual_seed(0)
    extra = {"omega": 30.0} if layer_cls is SineLowRankLinear else {}
    layer = layer_cls(16, 8, 2, **extra)
    x = torch.randn(2, 3, 5, 16)
    expected = x @ explicit_weight(layer).T + layer.bias
    out = layer(x)
    assert out.shape == (2, 3, 5, 8)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_sine_weight_keeps_full_precision_under_autocast():
    """Autocast must not round the phase omega * U V^T to bf16: at omega 100 that would move
    the sine by ~0.1 rad per entry."""
    torch.manual_seed(0)
    layer = SineLowRankLinear(256, 256, 1, omega=100.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weight = layer.weight_matrix()
        out = layer(torch.randn(8, 256))
    assert weight.dtype == torch.float32 and out.dtype == torch.bfloat16
    torch.testing.assert_close(weight, explicit_weight(layer), rtol=0, atol=1e-6)


@pytest.mark.parametrize("spec", ["dense", "lowrank:2", "sine:2@20"])
def test_gradcheck_float64(spec):
    torch.manual_seed(0)
    layer = LayerSpec.parse(spec).build(7, 6).double()
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    params = tuple(layer.parameters())
    assert torch.autograd.gradcheck(lambda *p: torch.func.functional_call(layer, dict(zip(dict(layer.named_parameters()), p)), (x,)), params)


def test_initialisation_follows_reference():
    torch.manual_seed(0)
    layer = SineLowRankLinear(256, 128, 4, omega=100.0)
    assert layer.U.abs().max() <= 1 / math.sqrt(4) and layer.V.abs().max() <= 1 / math.sqrt(4)
    assert layer.bias.abs().max() <= 1 / math.sqrt(256)
    assert layer.scale == pytest.approx(16.0)


@pytest.mark.parametrize(
    "text, expected",
    [("dense", LayerSpec("dense")), ("lowrank:4", LayerSpec("lowrank", 4)), ("sine:1", LayerSpec("sine", 1)),
     ("sine:1@800", LayerSpec("sine", 1, 800.0)), (" SINE:2@1e2 ", LayerSpec("sine", 2, 100.0))],
)
def test_spec_parsing(text, expected):
    spec = LayerSpec.parse(text)
    assert spec == expected
    assert LayerSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text, message",
    [("conv:3", "unknown layer kind 'conv'"), ("sine", "missing ':K' rank"), ("lowrank:0", "rank K >= 1, got 0"),
     ("lowrank:x", "rank 'x' is not an integer"), ("sine:1@0", "omega must be a finite number > 0"),
     ("sine:1@-3", "omega must be a finite number > 0"), ("sine:1@fast", "omega 'fast' is not a number"),
     ("lowrank:2@5", "'@' (omega or beta) does not apply to 'lowrank' layers"),
     ("oialr:1@1.5", "beta must lie in (0, 1), got 1.5"), ("dense:4", "dense takes no rank or omega"),
     ("sine:1@nan", "omega must be a finite number > 0"), ("", "malformed layer spec")],
)
def test_spec_errors_say_what_is_wrong_and_what_is_accepted(text, message):
    with pytest.raises(ValueError) as info:
        LayerSpec.parse(text)
    assert message in str(info.value)
    assert "expected 'dense', 'lowrank:K', 'sine:K', 'sine:K@OMEGA'" in str(info.value)
    # every registered kind's syntax is listed (the registry grows: adaptive rank, adapters)
    assert all(form in str(info.value) for kind in KINDS.values() for form in kind.syntax)


def test_build_uses_dense_where_factorising_does_not_pay():
    spec = LayerSpec.parse("sine:4@50")
    assert isinstance(spec.build(256, 256), SineLowRankLinear)
    assert type(spec.build(256, 1)) is nn.Linear          # 4 * 257 > 256 weights
    assert isinstance(LayerSpec.parse("lowrank:1").build(256, 3), LowRankLinear)
    with pytest.raises(ValueError, match="rank 300 is larger than the layer width 256 allows"):
        LayerSpec.parse("sine:300").check_rank(256)
    with pytest.raises(ValueError, match="rank 5 is larger than a 4->8 layer allows"):
        LowRankLinear(4, 8, 5)


def test_exact_parameter_counts():
    assert count_parameters(LayerSpec.parse("sine:1").build(256, 256)) == 512 + 256
    assert count_parameters(LayerSpec.parse("lowrank:4").build(256, 128)) == 4 * 384 + 128
    model = nn.Sequential(LayerSpec.parse("sine:1").build(256, 256), nn.ReLU(), nn.Linear(256, 1))
    report = parameter_report(model)
    assert report["parameters"] == 768 + 257
    assert report["dense_parameters"] == 65536 + 256 + 257
    assert report["percent_of_dense"] == pytest.approx(100 * 1025 / 66049)
    assert report["bytes_fp32"] == 4 * 1025 and report["bytes_fp16"] == 2 * 1025
    assert [row["type"] for row in report["layers"]] == ["SineLowRankLinear", "Linear"]


def test_sine_lifts_the_rank_far_above_k():
    torch.manual_seed(0)
    lowrank = LowRankLinear(128, 128, 1).double()
    sine = SineLowRankLinear(128, 128, 1, omega=800.0).double()
    sine.load_state_dict(lowrank.state_dict())
    assert numerical_rank(weight_matrix(lowrank)) == 1
    assert numerical_rank(LowRankLinear(128, 128, 3).double().weight_matrix()) == 3
    assert numerical_rank(weight_matrix(sine), rtol=1e-3) >= 100
    small_omega = SineLowRankLinear(128, 128, 1, omega=1.0).double()
    small_omega.load_state_dict(lowrank.state_dict())
    assert numerical_rank(weight_matrix(small_omega), rtol=1e-3) <= 3   # sin(x) ~ x: stays low rank


def test_weight_cache_is_reused_and_never_stale(monkeypatch):
    torch.manual_seed(0)
    layer = SineLowRankLinear(32, 32, 1, omega=50.0)
    x = torch.randn(10, 32)
    builds = []
    original = SineLowRankLinear.weight_matrix
    monkeypatch.setattr(SineLowRankLinear, "weight_matrix", lambda self: builds.append(1) or original(self))
    with torch.no_grad():
        first = layer(x)
        layer(x)
    assert len(builds) == 1

    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).square().sum().backward()           # grad mode: always rebuilt, gradients flow
    assert layer.U.grad is not None and layer.U.grad.abs().sum() > 0
    optimizer.step()
    with torch.inference_mode():
        after_step = layer(x)
    assert not torch.allclose(after_step, first)
    torch.testing.assert_close(after_step, x @ explicit_weight(layer).detach().T + layer.bias.detach())

    other = SineLowRankLinear(32, 32, 1, omega=50.0)
    layer.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(layer(x), other(x))


def test_matched_lowrank_init_has_the_per_entry_variance_of_nn_linear():
    """U V^T with the matched init has nn.Linear's weight variance 1 / (3 in); the reference init
    gives 1 / (9 K), ~28x more at in=256, K=1 (why plain rank-1 networks can fail to train)."""
    torch.manual_seed(0)
    in_features, out_features = 256, 512
    dense = torch.stack([nn.Linear(in_features, out_features).weight for _ in range(4)]).var().item()
    assert dense == pytest.approx(1 / (3 * in_features), rel=0.02)
    for rank in (1, 4, 16):
        matched = torch.cat([LayerSpec.parse(f"lowrank:{rank},init=matched").build(in_features, out_features)
                             .weight_matrix().detach().flatten() for _ in range(8)])
        assert matched.mean().abs() < 1e-3 and matched.var().item() == pytest.approx(dense, rel=0.05)
        reference = LowRankLinear(in_features, out_features, rank).weight_matrix().detach()
        assert reference.var().item() == pytest.approx(1 / (9 * rank), rel=0.15)


def test_init_option_round_trips_through_spec_and_config_yaml(tmp_path):
    from neuralfields.config import defaults, load_run_config, overlay, to_mapping
    from neuralfields.storage import save_config
    from neuralfields.training.occupancy import OccupancyConfig

    spec = LayerSpec.parse("lowrank:4,init=matched")
    assert spec == LayerSpec("lowrank", 4, init="matched") and str(spec) == "lowrank:4,init=matched"
    assert spec.label == "lowrank-k4-matched" and LayerSpec.parse(str(spec)) == spec
    assert LayerSpec.parse("lowrank:4,init=reference") == LayerSpec.parse("lowrank:4")   # the default is implicit
    assert LowRankLinear(8, 8, 2).init == "reference" and spec.build(64, 64).init == "matched"
    config = overlay(defaults(OccupancyConfig), {"spec": "lowrank:4,init=matched"}, "test")
    save_config(tmp_path, to_mapping(config))
    assert "spec: lowrank:4,init=matched" in (tmp_path / "config.yaml").read_text()
    assert load_run_config(OccupancyConfig, tmp_path).spec == spec
    for text, message in [("sine:1,init=matched", "unknown initialisation 'matched' for sine layers"),
                          ("lowrank:1,init=glorot", "offered: one of reference, matched"),
                          ("lowrank:1,seed=3", "malformed layer spec")]:
        with pytest.raises(ValueError, match=message):
            LayerSpec.parse(text)
