"""Adapters: the plain-PyTorch add_adapters path and sine-LoRA / sine-DoRA as a peft LoRA variant."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from neuralfields.adapters import (
    AdaptedLinear, adapter_layers, add_adapters, merge_adapters, merge_and_unload, unmerge_adapters,
)
from neuralfields.layers.counting import parameter_report


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(32, 48), nn.ReLU())
        self.norm = nn.LayerNorm(48)
        self.head = nn.Linear(48, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.encoder(x)))


def model_and_input() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return TwoLayers(), torch.randn(16, 32)


@torch.no_grad()
def perturb_adapters(model: nn.Module) -> None:
    """Adapters away from their zero start (B = 0), as after some training."""
    for layer in adapter_layers(model).values():
        layer.delta.U.normal_(0.0, 0.05)


@pytest.mark.parametrize("spec", ["sine:4", "sine:2@400", "lowrank:4"])
def test_adapters_at_init_leave_the_model_unchanged(spec):
    model, x = model_and_input()
    before = model(x)
    add_adapters(model, spec, targets=["encoder.0", "head"])
    assert set(adapter_layers(model)) == {"encoder.0", "head"}
    assert torch.equal(model(x), before)


def test_only_adapter_parameters_train():
    model, x = model_and_input()
    add_adapters(model, "sine:4", targets=["0", "head"])  # "0" matches "encoder.0" by its last part
    model(x).square().mean().backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert trainable == with_grad == {"encoder.0.delta.U", "encoder.0.delta.V", "head.delta.U", "head.delta.V"}
    report = parameter_report(model)
    assert report["trainable_parameters"] == 4 * (32 + 48) + 4 * (48 + 8)
    assert report["frozen_parameters"] == 32 * 48 + 48 + 2 * 48 + 48 * 8 + 8
    assert report["trainable_parameters"] + report["frozen_parameters"] == report["parameters"]


@pytest.mark.parametrize("spec", ["sine:3@200", "lowrank:3"])
def test_merge_agrees_with_unmerged_and_unmerge_restores_the_base(spec):
    model, x = model_and_input()
    base_weights = {name: layer.weight.clone() for name, layer in model.named_modules() if isinstance(layer, nn.Linear)}
    add_adapters(model, spec)  # every nn.Linear
    perturb_adapters(model)
    unmerged = model(x)
    assert not torch.allclose(unmerged, TwoLayers.forward(model_and_input()[0], x))  # the adapters act
    merge_adapters(model)
    merge_adapters(model)  # idempotent
    assert all(layer.merged for layer in adapter_layers(model).values())
    torch.testing.assert_close(model(x), unmerged, atol=1e-5, rtol=1e-5)
    unmerge_adapters(model)
    for name, layer in adapter_layers(model).items():
        torch.testing.assert_close(layer.base.weight, base_weights[name], atol=1e-6, rtol=0)
    torch.testing.assert_close(model(x), unmerged, atol=1e-6, rtol=1e-6)
    merge_and_unload(model)
    assert not adapter_layers(model) and isinstance(model.head, nn.Linear)
    torch.testing.assert_close(model(x), unmerged, atol=1e-5, rtol=1e-5)


def test_sine_delta_rank_exceeds_k_for_a_large_omega():
    torch.manual_seed(0)
    sine = AdaptedLinear(nn.Linear(64, 64), "sine:2@1000")
    plain = AdaptedLinear(nn.Linear(64, 64), "lowrank:2")
    with torch.no_grad():
        for layer in (sine, plain):
            layer.delta.U.normal_(0.0, 0.1)
    assert torch.linalg.matrix_rank(plain.delta_weight()).item() == 2
    assert torch.linalg.matrix_rank(sine.delta_weight()).item() > 30
    # the delta is the layer core's own sine weight, scaled by alpha / k
    expected = torch.sin(1000 * sine.delta.U @ sine.delta.V.T) / 8.0
    torch.testing.assert_close(sine.delta_weight(), expected * sine.scaling)


@pytest.mark.parametrize(("spec", "targets", "message"), [
    ("sine:4", ["decoder"], "unknown target module 'decoder'"),
    ("sine:4", ["norm"], "matches 'norm', a LayerNorm, not an nn.Linear"),
    ("sine:40", ["encoder.0"], "adapter rank 40 is larger than layer 'encoder.0' (32->48) allows (at most 32)"),
    ("sine:4@0", ["head"], "omega must be a finite number > 0"),
    ("sine:4@-5", ["head"], "omega must be a finite number > 0"),
    ("dense", ["head"], "adapters need a factorised layer kind"),
])
def test_bad_adapter_input_is_one_clear_line(spec, targets, message):
    model, x = model_and_input()
    before = model(x)
    with pytest.raises(ValueError) as error:
        add_adapters(model, spec, targets)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not adapter_layers(model) and torch.equal(model(x), before)  # nothing changed


def test_adapting_twice_and_multihead_attention_are_refused():
    model, _ = model_and_input()
    add_adapters(model, "lowrank:2", ["head"])
    with pytest.raises(ValueError, match="'head' already has an adapter"):
        add_adapters(model, "lowrank:2", ["head"])
    attention = nn.Module()
    attention.attn = nn.MultiheadAttention(16, 2)
    with pytest.raises(ValueError, match="nn.MultiheadAttention uses its weights"):
        add_adapters(attention, "sine:2", ["attn.out_proj"])
    attention.proj = nn.Linear(16, 16)
    assert set(adapter_layers(add_adapters(attention, "sine:2"))) == {"proj"}  # every nn.Linear it can wrap


# ---------------------------------------------------------------- peft ----------------------------------------------

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
transformers = pytest.importorskip("transformers")


def tiny_bert() -> nn.Module:
    """A randomly initialised 2-layer, 32-wide BERT classifier (no download)."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=16, num_labels=3)
    return transformers.BertForSequenceClassification(config).eval()


TOKENS = torch.randint(0, 64, (3, 10), generator=torch.Generator().manual_seed(1))


def outputs(model: nn.Module) -> torch.Tensor:
    """The last hidden states (values of order 1; the fresh classifier's logits are ~0.01)."""
    with torch.no_grad():
        return model(TOKENS, output_hidden_states=True).hidden_states[-1]


def sine_peft_model(use_dora: bool = False, **config) -> nn.Module:
    from neuralfields.adapters import SineLoraConfig

    settings = {"r": 4, "lora_alpha": 4, "target_modules": ["query", "value", "intermediate.dense"], "sine_omega": 200.0,
                **config}
    return peft.get_peft_model(tiny_bert(), SineLoraConfig(use_dora=use_dora, **settings))


@torch.no_grad()
def train_a_little(model: nn.Module) -> None:
    """Move B (and DoRA's magnitude) away from their initial values, as training would."""
    generator = torch.Generator().manual_seed(2)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
        elif "lora_magnitude_vector" in name:
            parameter.mul_(1.0 + 0.1 * torch.rand(parameter.shape, generator=generator))


def sine_layers(model: nn.Module) -> list[nn.Module]:
    from neuralfields.adapters import SineLoraLinear

    return [module for module in model.modules() if isinstance(module, SineLoraLinear)]


@pytest.mark.parametrize("use_dora", [False, True], ids=["sine-lora", "sine-dora"])
def test_peft_sine_variant_mechanics(use_dora):
    from neuralfields.adapters import SineDoraLinearVariant, SineLoraLinearVariant

    reference = outputs(tiny_bert())
    model = sine_peft_model(use_dora)
    layers = sine_layers(model)
    assert len(layers) == 2 * 3  # query, value and the MLP's first layer in each of the 2 blocks
    variant = SineDoraLinearVariant if use_dora else SineLoraLinearVariant
    assert all(type(layer.lora_variant["default"]) is variant for layer in layers)
    torch.testing.assert_close(outputs(model), reference, atol=1e-6, rtol=1e-6)  # unchanged at init

    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    model.train()
    model(TOKENS).logits.square().mean().backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if p.requires_grad and "lora_A" in name)

    train_a_little(model)
    model.eval()
    unmerged = outputs(model)
    assert (unmerged - reference).abs().max() > 1e-2  # the adapters act
    delta = layers[0].get_delta_weight("default")
    assert torch.linalg.matrix_rank(delta).item() > 4  # the sine lifts the delta's rank above r
    base = layers[0].get_base_layer().weight.detach().clone()
    model.merge_adapter()
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=1e-5)  # merged == unmerged
    model.unmerge_adapter()
    torch.testing.assert_close(layers[0].get_base_layer().weight, base, atol=1e-6, rtol=0)
    merged = model.merge_and_unload()
    assert not sine_layers(merged)
    torch.testing.assert_close(outputs(merged), unmerged, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_dora", [False, True], ids=["sine-lora", "sine-dora"])
def test_peft_save_and_load_restores_the_sine_variant(tmp_path, use_dora):
    from neuralfields.adapters import load_sine_lora

    model = sine_peft_model(use_dora)
    train_a_little(model)
    expected = outputs(model)
    model.save_pretrained(tmp_path)
    loaded = load_sine_lora(tiny_bert(), tmp_path)
    assert len(sine_layers(loaded)) == 6
    torch.testing.assert_close(outputs(loaded), expected, atol=0, rtol=0)
    with warnings.catch_warnings():  # the pitfall load_sine_lora exists for: vanilla LoRA, other outputs
        warnings.simplefilter("ignore")
        plain = peft.PeftModel.from_pretrained(tiny_bert(), tmp_path)
    assert not sine_layers(plain) and (outputs(plain) - expected).abs().max() > 1e-2


def test_peft_bad_input_is_one_clear_line(tmp_path):
    from neuralfields.adapters import SineLoraConfig, load_sine_lora

    for omega in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sine_omega must be a finite number > 0"):
            SineLoraConfig(r=2, target_modules=["query"], sine_omega=omega)
    with pytest.raises(ValueError, match=r"sine-LoRA rank 40 is larger than layer .*query.* \(32->32\) allows"):
        sine_peft_model(r=40, target_modules=["query"])
    with pytest.raises(ValueError, match="not found in the base model"):
        sine_peft_model(target_modules=["no_such_layer"])
    plain = peft.get_peft_model(tiny_bert(), peft.LoraConfig(r=2, target_modules=["query"]))
    plain.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a plain LoRA adapter"):
        load_sine_lora(tiny_bert(), tmp_path)
