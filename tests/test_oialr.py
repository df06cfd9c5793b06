"""Adaptive-rank (OIALR) layers: the switch, truncation, the optimiser following S's shape,
checkpoints and resume across rank changes, counting, a short occupancy run, bad settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from neuralfields.config import defaults, load_run_config, overlay, to_mapping
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.counting import parameter_report
from neuralfields.layers.oialr import (
    DEFAULT_INTERVAL, DEFAULT_WARMUP_STEPS, OIALRLinear, OIALRSettingError, oialr_layers, oialr_schedule,
)
from neuralfields.layers.spec import LayerSpec
from neuralfields.meshing.shapes import Sphere
from neuralfields.runs import open_run
from neuralfields.storage import latest_checkpoint, load_checkpoint, save_checkpoint, save_config
from neuralfields.training.loop import build_task, step_hooks
from neuralfields.training.occupancy import OccupancyConfig, train_occupancy


def train_steps(layer: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: range, seed: int = 0,
                hook: bool = True) -> torch.Tensor:
    """Regress random targets; the last loss is kept alive (its graph too) across the hook, as a
    task holding on to its outputs would."""
    loss = None
    for step in steps:
        generator = torch.Generator().manual_seed(seed + step)
        x = torch.randn(32, layer.in_features, generator=generator)
        y = torch.randn(32, layer.out_features, generator=generator)
        loss = ((layer(x) - y) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for call in step_hooks(layer) if hook else ():
            call(step, optimizer)
    return loss


def set_spectrum(layer: OIALRLinear, singular_values: list[float], seed: int = 0) -> torch.Tensor:
    """Give a switched layer an S with known singular values in random bases; returns the weight."""
    k = layer.rank
    assert len(singular_values) == k
    generator = torch.Generator().manual_seed(seed)
    left, _ = torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=torch.float64))
    with torch.no_grad():
        layer.S.copy_((left @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ right.T).float())
    return layer.weight_matrix().detach().clone()


def test_spec_builds_oialr_layers_and_keeps_dense_where_factorising_does_not_pay():
    spec = LayerSpec.parse("oialr:2")
    assert str(spec.resolved()) == "oialr:2@0.1" and spec.label == "oialr-k2"
    layer = LayerSpec.parse("oialr:2@0.25").build(32, 24)
    assert isinstance(layer, OIALRLinear) and (layer.beta, layer.min_rank, layer.rank) == (0.25, 2, 24)
    assert type(LayerSpec.parse("oialr:1").build(256, 1)).__name__ == "Linear"
    sine = LayerSpec.parse("oialrsine:1").build(32, 24)
    assert sine.omega == 100.0 and sine.beta == 0.1


def test_switch_keeps_the_weight_and_makes_orthonormal_bases():
    torch.manual_seed(0)
    layer = OIALRLinear(40, 24, beta=0.1, warmup_steps=3, interval=5)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    train_steps(layer, optimizer, range(1, 3))
    assert not layer.switched and layer.S.shape == (24, 40)
    train_steps(layer, optimizer, range(3, 4), hook=False)
    weight = layer.weight_matrix().detach().clone()
    assert layer.after_optimizer_step(3, optimizer)
    assert layer.switched and layer.rank == 24 and layer.S.shape == (24, 24)
    torch.testing.assert_close(layer.weight_matrix(), weight, rtol=0, atol=1e-6)
    eye = torch.eye(24)
    torch.testing.assert_close(layer.U.T @ layer.U, eye, rtol=0, atol=1e-5)
    torch.testing.assert_close(layer.V.T @ layer.V, eye, rtol=0, atol=1e-5)
    s = torch.diagonal(layer.S)
    assert torch.equal(layer.S, torch.diag(s)) and bool((s[:-1] >= s[1:]).all())
    assert not layer.U.requires_grad and not layer.V.requires_grad and layer.S.requires_grad
    assert layer.rank_history() == [(0, 24), (3, 24)]


def test_truncation_drops_exactly_the_directions_below_beta():
    layer = OIALRLinear(16, 12, beta=0.2, min_rank=1, warmup_steps=0, interval=10)
    # cut-off 0.2 * 10 = 2: 2.001 stays, 1.999 goes (float32 S: a margin of 1e-3)
    values = [10.0, 6.0, 3.0, 2.001, 1.999, 1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.01]
    weight = set_spectrum(layer, values).double()
    assert layer.after_optimizer_step(10) and layer.rank == 4
    torch.testing.assert_close(torch.diagonal(layer.S), torch.tensor(values[:4]), rtol=1e-5, atol=0)
    # what is kept is the best rank-4 approximation of the weight it replaced (Eckart-Young)
    u, s, vh = torch.linalg.svd(weight)
    best = u[:, :4] @ torch.diag(s[:4]) @ vh[:4]
    torch.testing.assert_close(layer.weight_matrix().double(), best, rtol=0, atol=1e-4)  # float32, s up to 10
    assert not layer.after_optimizer_step(15) and layer.rank == 4  # between updates: nothing
    assert layer.rank_history() == [(0, 12), (0, 12), (10, 4)]


def test_rank_never_goes_below_the_minimum():
    torch.manual_seed(0)
    layer = LayerSpec.parse("oialr:3@0.9").build(20, 20)
    assert layer.min_rank == 3
    with oialr_schedule(warmup_steps=2, interval=2):
        layer = LayerSpec.parse("oialr:3@0.9").build(20, 20)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    ranks = []
    for step in range(1, 21):
        train_steps(layer, optimizer, range(step, step + 1))
        ranks.append(layer.rank)
    assert min(ranks) == 3 and ranks[-1] == 3 and ranks[0] == 20
    assert ranks == sorted(ranks, reverse=True)  # never grows


def test_adam_state_follows_the_shape_of_s():
    torch.manual_seed(0)
    layer = OIALRLinear(16, 12, beta=0.2, warmup_steps=0, interval=4)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
    position = [id(p) for p in optimizer.param_groups[0]["params"]].index(id(layer.S))
    train_steps(layer, optimizer, range(1, 4))
    set_spectrum(layer, [10.0, 6.0, 3.0, 2.5, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01])
    train_steps(layer, optimizer, range(4, 5), hook=False)
    old = layer.S
    state = optimizer.state[old]
    m, v, adam_step = state["exp_avg"].clone(), state["exp_avg_sq"].clone(), state["step"].clone()
    a, s, bh = torch.linalg.svd(old.detach().double())
    assert layer.after_optimizer_step(4, optimizer)
    r = layer.rank
    assert r == int((s >= 0.2 * s[0]).sum()) and r < 12
    new_state = optimizer.state[layer.S]
    assert old not in optimizer.state and optimizer.param_groups[0]["params"][position] is layer.S
    assert new_state["exp_avg"].shape == new_state["exp_avg_sq"].shape == layer.S.shape == (r, r)
    expected_m = (a.T @ m.double() @ bh.T)[:r, :r]  # exact: dL/dS' = A^T dL/dS B
    torch.testing.assert_close(new_state["exp_avg"].double(), expected_m, rtol=1e-4, atol=1e-7)
    expected_v = ((a * a).T @ v.double() @ (bh.T * bh.T))[:r, :r]
    torch.testing.assert_close(new_state["exp_avg_sq"].double(), expected_v, rtol=1e-4, atol=1e-12)
    assert bool((new_state["exp_avg_sq"] >= 0).all()) and new_state["step"] == adam_step
    before = layer.S.detach().clone()
    train_steps(layer, optimizer, range(5, 6))  # Adam steps the new S (live graph from step 4 kept)
    assert not torch.equal(layer.S.detach(), before)


def test_unknown_optimizer_state_is_refused_not_left_stale():
    layer = OIALRLinear(8, 8, beta=0.5, warmup_steps=0, interval=1)
    optimizer = torch.optim.Adagrad(layer.parameters())
    train_steps(layer, optimizer, range(1, 2), hook=False)
    with pytest.raises(NeuralFieldsError, match="optimiser state 'sum'"):
        layer.after_optimizer_step(1, optimizer)


def test_factored_and_sine_forwards_match_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(5, 64)
    layer = OIALRLinear(64, 48, beta=0.5, warmup_steps=0, interval=1)
    set_spectrum(layer, [2.0 ** -i for i in range(48)])
    layer.after_optimizer_step(1)
    assert layer._factored_is_cheaper()
    torch.testing.assert_close(layer(x), x @ (layer.U @ layer.S @ layer.V.T).T + layer.bias, rtol=1e-5, atol=1e-6)
    sine = LayerSpec.parse("oialrsine:1@0.5").build(64, 48)
    expected = x @ (torch.sin(100.0 * sine.S) / math.sqrt(64)).T + sine.bias
    torch.testing.assert_close(sine(x), expected, rtol=1e-5, atol=1e-6)
    sine.reorthogonalise(truncate=False)
    torch.testing.assert_close(sine(x), expected, rtol=1e-4, atol=1e-4)  # phase kept through the switch
    torch.testing.assert_close(
        sine(x), x @ (torch.sin(100.0 * sine.U @ sine.S @ sine.V.T) / math.sqrt(64)).T + sine.bias)


def test_parameter_report_counts_current_trainable_and_stored_and_the_rank_history():
    layer = OIALRLinear(32, 24, beta=0.2, warmup_steps=0, interval=1)
    report = parameter_report(layer)
    assert report["parameters"] == 24 * 24 + 24 * 24 + 32 * 24 + 24  # U, S, V at full rank 24, bias
    set_spectrum(layer, [1.0] * 5 + [0.01] * 19)
    layer.after_optimizer_step(1)
    report = parameter_report(torch.nn.Sequential(layer))
    assert report["parameters"] == 5 * (32 + 24) + 5 * 5 + 24  # stored: U, V, S at rank 5 + bias
    assert report["trainable_parameters"] == 5 * 5 + 24  # S and bias
    assert report["dense_parameters"] == 32 * 24 + 24
    (row,) = report["layers"]
    assert row["rank"] == 5 and row["trainable_parameters"] == 49 and row["rank_history"] == [(0, 24), (0, 24), (1, 5)]
    dense_phase = parameter_report(OIALRLinear(32, 24))
    assert dense_phase["parameters"] == dense_phase["trainable_parameters"] == 32 * 24 + 24


def test_checkpoint_after_rank_change_loads_into_a_fresh_model_and_resumes_identically(tmp_path):
    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(OIALRLinear(24, 16, beta=0.3, min_rank=2, warmup_steps=3, interval=3))
        model.in_features, model.out_features = 24, 16
        return model, torch.optim.Adam(model.parameters(), lr=1e-2)

    model, optimizer = make()
    train_steps(model, optimizer, range(1, 10))
    layer = model[0]
    assert layer.switched and layer.rank < 16
    save_checkpoint(tmp_path, 9, model, optimizer, {})

    fresh, fresh_optimizer = make()
    assert not fresh[0].switched and fresh[0].rank == 16
    step, _ = load_checkpoint(latest_checkpoint(tmp_path), fresh, fresh_optimizer)
    assert step == 9 and fresh[0].rank == layer.rank and fresh[0].rank_history() == layer.rank_history()
    assert (fresh[0].warmup_steps, fresh[0].interval) == (3, 3)
    assert fresh_optimizer.state[fresh[0].S]["exp_avg"].shape == fresh[0].S.shape
    x = torch.randn(4, 24)
    torch.testing.assert_close(fresh(x), model(x))
    # continuing both across another rank update gives the same model
    train_steps(model, optimizer, range(10, 16))
    train_steps(fresh, fresh_optimizer, range(10, 16))
    assert fresh[0].rank_history() == layer.rank_history()
    for (name, param), (_, other) in zip(model.named_parameters(), fresh.named_parameters()):
        torch.testing.assert_close(param, other, rtol=1e-5, atol=1e-6, msg=name)


def test_a_warm_up_checkpoint_loads_into_a_switched_layer():
    source = OIALRLinear(12, 10, warmup_steps=5)
    target = OIALRLinear(12, 10, warmup_steps=0)
    target.load_state_dict(source.state_dict())
    assert not target.switched and target.warmup_steps == 5
    torch.testing.assert_close(target.weight_matrix(), source.weight_matrix())


def occupancy_config(mesh: Path, cache: Path, **values) -> OccupancyConfig:
    return overlay(defaults(OccupancyConfig), {
        "mesh": str(mesh), "spec": "oialr:1@0.1", "width": 64, "num_uniform": 20_000, "num_surface": 20_000,
        "steps": 160, "batch_size": 1024, "lr": 3e-3, "checkpoint_every": 100, "eval_uniform_points": 20_000,
        "eval_grid_resolution": 32, "eval_surface_samples": 5_000, "device": "cpu", "cache_dir": str(cache),
        **values}, "test")


def test_short_occupancy_run_shrinks_the_rank_and_resumes_across_a_rank_change(tmp_path):
    mesh = tmp_path / "ball.ply"
    Sphere(2.0, (5.0, 0.0, 1.0)).mesh(4).export(mesh)
    run_dir = tmp_path / "run"
    config = occupancy_config(mesh, tmp_path / "cache", steps=100, oialr_warmup_steps=40, oialr_interval=30)
    _, metrics = train_occupancy(config, run_dir=run_dir, progress=False)
    assert metrics["steps"] == 100 and metrics["iou_uniform"] >= 0.8
    layers = oialr_layers(open_run(run_dir).load_model("cpu"))
    assert len(layers) == 2 and all(layer.rank_history()[1] == (40, 64) for layer in layers.values())
    ranks_at_100 = {name: layer.rank for name, layer in layers.items()}
    assert all(rank < 64 for rank in ranks_at_100.values()), ranks_at_100
    model = open_run(run_dir).load_model("cpu")
    assert metrics["parameters"] == parameter_report(model)["parameters"]  # stored at the final ranks

    # the checkpoint carries the schedule (the config's too); 130 and 160 update
    _, resumed = train_occupancy({"steps": 160}, resume=run_dir, progress=False)
    assert resumed["steps"] == 160
    for name, layer in oialr_layers(open_run(run_dir).load_model("cpu")).items():
        history = layer.rank_history()
        assert (layer.warmup_steps, layer.interval) == (40, 30)
        assert history[:2] == [(0, 64), (40, 64)] and layer.rank <= ranks_at_100[name]
        assert all(step in (0, 40, 70, 100, 130, 160) for step, _ in history)


@pytest.mark.parametrize("make, message", [
    (lambda: OIALRLinear(64, 64, beta=0.0), r"must lie in \(0, 1\)"),
    (lambda: OIALRLinear(64, 64, warmup_steps=-1), "warm-up must be an integer number of steps >= 0, got -1"),
    (lambda: OIALRLinear(64, 64, interval=0), "interval must be an integer number of steps >= 1, got 0"),
    (lambda: oialr_schedule(warmup_steps=-5).__enter__(), "warm-up .* got -5"),
    (lambda: OIALRLinear(8, 4, min_rank=5), r"minimum rank must be an integer in 1..4"),
])
def test_bad_hyper_parameters_give_one_clear_line(make, message):
    with pytest.raises(OIALRSettingError, match=message) as raised:
        make()
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, NeuralFieldsError) and isinstance(raised.value, ValueError)


def test_the_run_config_sets_the_schedule_of_the_layers_a_trainer_builds():
    config = overlay(defaults(OccupancyConfig), {"oialr_warmup_steps": 7, "oialr_interval": 3}, "test")
    with oialr_schedule(warmup_steps=50):  # the run's own settings win over a block around the trainer
        layer = build_task(config, lambda: OIALRLinear(8, 8))
    assert (layer.warmup_steps, layer.interval) == (7, 3)
    assert (OIALRLinear(8, 8).warmup_steps, OIALRLinear(8, 8).interval) == (DEFAULT_WARMUP_STEPS, DEFAULT_INTERVAL)


def test_a_negative_warm_up_on_the_command_line_is_one_line(tmp_path, run_script):
    result = run_script("train_occupancy.py", "--spec", "oialr:1@0.5", "--set", "oialr_warmup_steps=-1",
                        "--output-root", str(tmp_path / "out"))
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert result.stderr.strip() == "error: command line: oialr_warmup_steps must be >= 0, got -1"


def test_run_folders_saved_before_the_schedule_keys_load_with_the_defaults(tmp_path):
    config = overlay(defaults(OccupancyConfig), {"oialr_warmup_steps": 7}, "test")
    values = {key: value for key, value in to_mapping(config).items() if not key.startswith("oialr_")}
    save_config(tmp_path, values)
    loaded = load_run_config(OccupancyConfig, tmp_path)
    assert (loaded.oialr_warmup_steps, loaded.oialr_interval) == (DEFAULT_WARMUP_STEPS, DEFAULT_INTERVAL)


def test_spec_refuses_a_negative_beta_when_parsed():
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        LayerSpec.parse("oialr:1@-0.1")


def test_nerf_trains_with_oialr_layers_under_autocast_and_resumes(tiny_scene, tmp_path):
    from test_nerf_training import tiny_config as nerf_config
    from neuralfields.training.nerf import train_nerf

    config = nerf_config(tiny_scene, tmp_path, spec="oialr:1@0.3", steps=10, mixed_precision=True,
                         oialr_warmup_steps=4, oialr_interval=3)
    run_dir, metrics = train_nerf(config, progress=False)
    layers = oialr_layers(open_run(run_dir).load_model("cpu"))
    assert layers and all(layer.switched for layer in layers.values())
    assert any(layer.rank < min(layer.in_features, layer.out_features) for layer in layers.values())
    assert metrics["parameters"] == parameter_report(open_run(run_dir).load_model("cpu"))["parameters"]
    _, resumed = train_nerf({"steps": 13}, resume=run_dir, progress=False)
    assert resumed["steps"] == 13
    for layer in oialr_layers(open_run(run_dir).load_model("cpu")).values():
        assert layer.rank_history()[1][0] == 4 and all(step in (0, 4, 7, 10, 13) for step, _ in layer.rank_history())
