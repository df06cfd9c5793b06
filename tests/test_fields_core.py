"""Positional encoding and the spec-driven MLP."""

import pytest
import torch
from torch import nn

from neuralfields.fields.encoding import PositionalEncoding
from neuralfields.fields.mlp import MLP, GaussianActivation, make_activation
from neuralfields.layers.linear import SineLowRankLinear


def test_positional_encoding_values():
    encoding = PositionalEncoding(3, 10)
    assert encoding.out_dim == 63
    x = torch.tensor([[0.5, -1.0, 2.0]])
    out = encoding(x)
    assert out.shape == (1, 63)
    torch.testing.assert_close(out[0, :3], x[0])
    torch.testing.assert_close(out[0, 3 + 3 * 4 + 1], torch.sin(torch.tensor(16 * -1.0)))  # sin(2^4 * x_1)
    torch.testing.assert_close(out[0, 33 + 3 * 9 + 2], torch.cos(torch.tensor(512 * 2.0)))  # cos(2^9 * x_2)


def test_mlp_layers_follow_the_spec_and_skip_widths():
    mlp = MLP(63, 256, 8, None, "sine:1@100", skips=(5,))
    assert all(isinstance(layer, SineLowRankLinear) for layer in mlp.hidden)
    assert [layer.in_features for layer in mlp.hidden] == [63, 256, 256, 256, 256, 256 + 63, 256, 256]
    assert mlp(torch.randn(4, 63)).shape == (4, 256)


def test_mlp_input_and_output_overrides():
    mlp = MLP(3, 64, 2, 1, "sine:1", activation="gaussian:0.1", input_spec="dense", output_spec="dense")
    assert type(mlp.hidden[0]) is nn.Linear and isinstance(mlp.hidden[1], SineLowRankLinear)
    assert type(mlp.output) is nn.Linear
    assert mlp(torch.randn(5, 3)).shape == (5, 1)


def test_mlp_rejects_rank_above_width_and_bad_skips():
    with pytest.raises(ValueError, match="rank 100 is larger than the layer width 64"):
        MLP(3, 64, 2, 1, "lowrank:100")
    with pytest.raises(ValueError, match="skip indices"):
        MLP(3, 64, 2, 1, "dense", skips=(0,))


def test_activations():
    x = torch.tensor([0.0, 0.1, -0.2])
    torch.testing.assert_close(GaussianActivation(0.1)(x), torch.exp(-x**2 / 0.02))
    assert isinstance(make_activation("gaussian"), GaussianActivation)
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        make_activation("tanh")
