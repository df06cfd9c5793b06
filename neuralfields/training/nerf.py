"""NeRF training as library code: configs, the trainer, evaluation, run folders, loading a run.

A config is a flat dict (DEFAULTS overlaid by a preset YAML from configs/nerf/ and command-line
overrides); the resolved config is saved with every run, so `load_run` rebuilds the same model.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from neuralfields.data.blender import ViewSet, resolve_scene_dir
from neuralfields.data.scenes import is_llff_scene, load_views
from neuralfields.device import autocast_dtype, resolve_device
from neuralfields.errors import NeuralFieldsError
from neuralfields.fields.radiance import RadianceField
from neuralfields.layers.counting import parameter_report
from neuralfields.layers.spec import LayerSpec
from neuralfields.media import save_png, write_video
from neuralfields.metrics import psnr, psnr_from_mse, ssim
from neuralfields.rendering.cameras import forward_facing_circle, image_rays, orbit_camtoworlds
from neuralfields.rendering.estimator import SamplingPath, create_sampling_path
from neuralfields.rendering.render import RenderSettings, render_image, render_rays
from neuralfields.training import runs

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "nerf"
NERF_DEFAULT_OMEGA = 100.0
"""Omega of sine layers when none is given (tuned on lego at 100x100 on CPU, see benchmarks)."""
FORWARD_FACING_FOCUS_DEPTH = 5.0
"""Where the video of a forward-facing scene looks: ~4x the nearest depth, which the LLFF loader
scales to 1 / 0.75 (the reference's spiral path focuses at a similar depth)."""

DEFAULTS: dict = {
    # data
    "scene": "lego", "data_dir": None, "downscale": 1, "background": "white",
    # model: the reference NeRF, every linear layer from `spec`
    "spec": f"sine:1@{NERF_DEFAULT_OMEGA:g}", "num_layers": 8, "width": 256, "skip_layer": 5, "color_width": 128,
    "xyz_freqs": 10, "dir_freqs": 4,
    # sampling: "grid" (occupancy grid) or "naive" (uniform samples, a baseline)
    "sampler": "grid", "aabb": [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], "grid_resolution": 128,
    "grid_update_every": 16, "grid_warmup_steps": 256, "occ_thre": 0.01, "naive_samples": 64,
    "render_step_size": 5e-3, "early_stop_eps": 1e-4, "alpha_thre": 0.0,
    # optimisation
    "steps": 20000, "time_budget_s": None, "lr": 5e-4, "lr_final": 5e-5, "target_samples": 262144,
    "adam_beta2": 0.999, "init_rays": 1024, "max_rays": 8192, "mixed_precision": True, "seed": 0, "device": "auto",
    "cpu_threads": None,  # torch CPU threads; 1 avoids OpenMP stalls on a busy shared machine
    # outputs
    "output_root": "outputs", "val_every": 2000, "ckpt_every": 2000, "test_views": None,
    "eval_chunk": 8192, "video_frames": 60, "video_fps": 20, "video_downscale": 1,
}


def load_preset(name_or_path: str) -> dict:
    """DEFAULTS overlaid by a preset (`cpu`, `gpu`, `demo` from configs/nerf/, or a YAML path)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    return merge_config(DEFAULTS, runs.read_yaml_mapping(path), source=str(path))


def auto_preset(scene: str, data_dir: str | Path | None = None, device: str = "auto") -> str:
    """The preset `--preset auto` means: demo for the demo scene, llff for a forward-facing LLFF
    folder, else gpu on CUDA and cpu otherwise."""
    if scene == "demo":
        return "demo"
    if is_llff_scene(resolve_scene_dir(scene, data_dir)):
        return "llff"
    return "gpu" if resolve_device(device).type == "cuda" else "cpu"


def merge_config(base: dict, overrides: dict, source: str = "overrides") -> dict:
    """A copy of base with overrides applied; unknown keys are refused, naming the source and key."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise NeuralFieldsError(f"{source}: unknown config key {unknown[0]!r}")
    return {**base, **{key: _as_default_type(key, value, source) for key, value in overrides.items()}}


def _as_default_type(key: str, value, source: str):
    """A value of the type DEFAULTS holds for key. Numeric strings become numbers: YAML reads
    `lr: 5e-4` (no dot) as a string. Keys whose default is None are taken as given."""
    default = DEFAULTS[key]
    if default is None or isinstance(default, (str, list)):
        return value
    expected = type(default).__name__
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise NeuralFieldsError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise NeuralFieldsError(f"{source}: {key} must be a number ({expected}), got {value!r}")
    if isinstance(default, int):
        if number != int(number):
            raise NeuralFieldsError(f"{source}: {key} must be a whole number, got {value!r}")
        return int(number)
    return float(number)


def load_run_config(run_dir: str | Path) -> dict:
    """A run's saved config over DEFAULTS, so that runs saved before a config key existed still
    resume and load (they get the key's default)."""
    return merge_config(DEFAULTS, runs.load_config(run_dir), source=str(Path(run_dir) / "config.yaml"))


def build_field(config: dict) -> RadianceField:
    """The radiance field a config describes (raises NeuralFieldsError for an impossible spec)."""
    try:
        spec = LayerSpec.parse(config["spec"])
        return RadianceField(
            spec, num_layers=config["num_layers"], width=config["width"], skip_layer=config["skip_layer"],
            color_width=config["color_width"], xyz_freqs=config["xyz_freqs"], dir_freqs=config["dir_freqs"],
        )
    except ValueError as exc:
        raise NeuralFieldsError(str(exc)) from None


def build_sampling_path(config: dict, device: torch.device) -> SamplingPath:
    return create_sampling_path(device, config["sampler"], config["aabb"], config["grid_resolution"],
                                config["naive_samples"])


def render_settings(config: dict, views: ViewSet) -> RenderSettings:
    background = (1.0, 1.0, 1.0) if config["background"] == "white" else (0.0, 0.0, 0.0)
    return RenderSettings(views.near, views.far, config["render_step_size"], config["early_stop_eps"],
                          config["alpha_thre"], background, ndc=views.ndc)


class FieldWithSampler(nn.Module):
    """What a checkpoint holds: the field and the sampler state (the occupancy grid)."""

    def __init__(self, field: RadianceField, estimator: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.estimator = estimator


class NerfTrainer:
    """One NeRF optimisation: field, sampler, optimiser and the training rays, step by step.

    The ray batch is resized after every step so that it holds about `target_samples` samples
    (as in nerfacc's examples); the learning rate decays exponentially from lr to lr_final over
    the run's progress (steps, or the time budget when one is set).
    """

    def __init__(self, config: dict, train_views: ViewSet, device: torch.device) -> None:
        self.config = config
        self.device = device
        if config["cpu_threads"]:
            torch.set_num_threads(int(config["cpu_threads"]))
        torch.manual_seed(config["seed"])
        self.field = build_field(config).to(device)
        self.path = build_sampling_path(config, device)
        self.bundle = FieldWithSampler(self.field, self.path.estimator)
        self.settings = render_settings(config, train_views)
        self.optimizer = torch.optim.Adam(self.field.parameters(), lr=config["lr"], eps=1e-15,
                                          betas=(0.9, config["adam_beta2"]))
        self.amp_dtype = autocast_dtype(device) if config["mixed_precision"] else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.train_seconds = 0.0
        self.num_rays = int(config["init_rays"])
        origins, directions = zip(*(
            image_rays(c2w, train_views.height, train_views.width, train_views.focal, ndc=train_views.ndc)
            for c2w in train_views.camtoworlds
        ))
        self.rays_o = torch.stack(origins).reshape(-1, 3).to(device)
        self.rays_d = torch.stack(directions).reshape(-1, 3).to(device)
        self.colors = train_views.images.reshape(-1, 3).to(device)

    @property
    def precision(self) -> str:
        """How training steps compute, for logs and metrics: "float32" or e.g. "bfloat16 mixed"."""
        return f"{str(self.amp_dtype).removeprefix('torch.')} mixed" if self.amp_dtype else "float32"

    def progress(self) -> float:
        """Fraction of the run done, by steps or by training time, whichever is further."""
        done = self.step / max(1, self.config["steps"])
        if self.config["time_budget_s"]:
            done = max(done, self.train_seconds / self.config["time_budget_s"])
        return min(1.0, done)

    def finished(self) -> bool:
        return self.progress() >= 1.0

    def _update_grid(self) -> None:
        step_size = self.settings.render_step_size

        def occ_eval_fn(points: torch.Tensor) -> torch.Tensor:
            return self.field.query_density(points)[:, None] * step_size

        self.path.estimator.update_every_n_steps(
            self.step, occ_eval_fn, occ_thre=self.config["occ_thre"],
            warmup_steps=self.config["grid_warmup_steps"], n=self.config["grid_update_every"],
        )

    def train_step(self, run_dir: Path | None = None) -> dict:
        """One optimisation step; returns loss, psnr, rays and samples of the step."""
        started = time.perf_counter()
        config = self.config
        lr = config["lr"] * (config["lr_final"] / config["lr"]) ** self.progress()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.field.train()
        self.path.estimator.train()
        self._update_grid()
        picked = torch.randint(self.rays_o.shape[0], (self.num_rays,), device=self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = render_rays(self.field, self.path, self.rays_o[picked], self.rays_d[picked],
                              self.settings, stratified=True)
        loss = F.mse_loss(out["rgb"].float(), self.colors[picked])
        runs.check_finite(loss.detach(), self.step, run_dir)
        self.optimizer.zero_grad(set_to_none=True)
        if out["num_samples"] > 0:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        num_samples = max(out["num_samples"], 1)
        used_rays = self.num_rays
        self.num_rays = int(min(config["max_rays"], max(64, self.num_rays * config["target_samples"] / num_samples)))
        self.step += 1
        self.train_seconds += time.perf_counter() - started
        return {"loss": loss.item(), "psnr": psnr_from_mse(loss.item()), "rays": used_rays,
                "samples": out["num_samples"], "seconds": time.perf_counter() - started}

    def render_view(self, camtoworld: torch.Tensor, height: int, width: int, focal: float) -> dict:
        self.field.eval()
        self.path.estimator.eval()
        return render_image(self.field, self.path, camtoworld, height, width, focal, self.settings,
                            chunk=self.config["eval_chunk"])

    def evaluate(self, views: ViewSet, indices: list[int] | None = None, out_dir: Path | None = None,
                 progress: bool = True) -> dict:
        """PSNR and SSIM per view and their means; saves PNG renders into out_dir when given."""
        indices = list(range(len(views))) if indices is None else indices
        per_view = []
        for index in tqdm(indices, desc="evaluating", unit="view", leave=False, disable=not progress):
            image = self.render_view(views.camtoworlds[index], views.height, views.width, views.focal)["rgb"]
            target = views.images[index]
            name = Path(views.names[index]).name
            per_view.append({"view": name, "psnr": psnr(image, target).item(), "ssim": ssim(image, target).item()})
            if out_dir is not None:
                save_png(out_dir / f"{name}.png", image)
        return {
            "psnr": sum(v["psnr"] for v in per_view) / len(per_view),
            "ssim": sum(v["ssim"] for v in per_view) / len(per_view),
            "per_view": per_view,
        }

    def checkpoint(self, run_dir: Path) -> Path:
        extra = {"num_rays": self.num_rays, "train_seconds": self.train_seconds}
        return runs.save_checkpoint(run_dir, self.step, self.bundle, self.optimizer, extra)

    def restore(self, ckpt_dir: Path) -> None:
        self.step, extra = runs.load_checkpoint(ckpt_dir, self.bundle, self.optimizer)
        self.num_rays = int(extra.get("num_rays", self.num_rays))
        self.train_seconds = float(extra.get("train_seconds", 0.0))


def evenly_spaced(count: int, limit: int | None) -> list[int]:
    """At most `limit` indices spread evenly over range(count) (all of them when limit is None)."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(1, limit - 1)) for i in range(limit)})


def video_path(views: ViewSet, num_frames: int) -> torch.Tensor:
    """Cameras for the run's video. Object scenes: an orbit at the cameras' median distance and
    elevation around the origin. Forward-facing (NDC) scenes: a circle as wide as most camera
    offsets (90th percentile), looking at a point FORWARD_FACING_FOCUS_DEPTH ahead."""
    positions = views.camtoworlds[:, :3, 3]
    if views.ndc:
        radius = positions[:, :2].norm(dim=-1).quantile(0.9).item()
        return forward_facing_circle(num_frames, radius, FORWARD_FACING_FOCUS_DEPTH)
    radius = positions.norm(dim=-1).median().item()
    elevation = torch.rad2deg(torch.asin(positions[:, 2] / positions.norm(dim=-1))).median().item()
    return orbit_camtoworlds(num_frames, radius, min(max(elevation, -80.0), 80.0))


def train_nerf(config: dict, resume: str | Path | None = None) -> Path:
    """Train a NeRF run and write its folder; returns the run folder.

    With `resume`, `config` holds only overrides (e.g. steps, time_budget_s, device) for the run's
    saved config, and training continues from its latest checkpoint (the step count continues).
    The folder gets config.yaml, checkpoints (every ckpt_every steps, at the end and on Ctrl-C),
    val/ renders, test/ renders, metrics.json and an orbit video.
    """
    if resume is not None:
        run_dir = Path(resume)
        config = merge_config(load_run_config(run_dir), config, source="--resume overrides")
        ckpt = runs.latest_checkpoint(run_dir)
        if ckpt is None:
            raise NeuralFieldsError(f"cannot resume {run_dir}: it holds no checkpoint")
    device = resolve_device(config["device"])
    scene_dir = resolve_scene_dir(config["scene"], config["data_dir"])
    build_field(config)  # refuse an impossible layer spec before any data is loaded
    if resume is None:
        spec = LayerSpec.parse(config["spec"])
        run_dir = runs.create_run_dir(config["output_root"], Path(str(config["scene"])).name, spec.label)
    train_views = load_views(scene_dir, "train", config["downscale"], config["background"])
    val_views = load_views(scene_dir, "val", config["downscale"], config["background"])
    trainer = NerfTrainer(config, train_views, device)
    if resume is not None:
        trainer.restore(ckpt)
    runs.save_config(run_dir, config)
    report = parameter_report(trainer.field)
    rays = "NDC rays (forward-facing)" if trainer.settings.ndc else "world rays"
    print(f"device: {device}; precision: {trainer.precision}; sampling: {trainer.path.name}; {rays}")
    print(f"model: {config['spec']}, {report['parameters']:,} parameters "
          f"({report['percent_of_dense']:.2f}% of dense {report['dense_parameters']:,})")
    print(f"run folder: {run_dir}" + (f" (resuming at step {trainer.step})" if resume else ""))

    # The bar counts percent of the run (steps or time budget, whichever ends it) so its ETA is right.
    bar = tqdm(total=100.0, initial=round(100 * trainer.progress(), 1), desc="training", dynamic_ncols=True,
               mininterval=1.0, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
    try:
        while not trainer.finished():
            stats = trainer.train_step(run_dir)
            # refresh=False: the bar redraws at most once a second (mininterval), not on every step
            bar.set_postfix(step=trainer.step, loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.2f}",
                            rays_per_s=f"{stats['rays'] / stats['seconds']:.0f}", refresh=False)
            bar.update(round(100 * trainer.progress(), 1) - bar.n)
            if trainer.step % config["val_every"] == 0:
                image = trainer.render_view(val_views.camtoworlds[0], val_views.height, val_views.width,
                                            val_views.focal)["rgb"]
                save_png(run_dir / "val" / f"step_{trainer.step:07d}.png", image)
                tqdm.write(f"step {trainer.step}: val PSNR {psnr(image, val_views.images[0]).item():.2f} dB")
            if trainer.step % config["ckpt_every"] == 0:
                trainer.checkpoint(run_dir)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: checkpoint saved in {trainer.checkpoint(run_dir)}")
        raise
    bar.close()
    trainer.checkpoint(run_dir)
    finish_run(trainer, run_dir, scene_dir, device)
    return run_dir


def finish_run(trainer: NerfTrainer, run_dir: Path, scene_dir: Path, device: torch.device) -> dict:
    """Evaluate on the test split, render the orbit video and write metrics.json."""
    config = trainer.config
    test_views = load_views(scene_dir, "test", config["downscale"], config["background"])
    indices = evenly_spaced(len(test_views), config["test_views"])
    result = trainer.evaluate(test_views, indices, run_dir / "test")
    frames, shrink = [], int(config["video_downscale"])
    for c2w in tqdm(video_path(test_views, config["video_frames"]), desc="orbit video", unit="frame", leave=False):
        rgb = trainer.render_view(c2w, test_views.height // shrink, test_views.width // shrink,
                                  test_views.focal / shrink)["rgb"]
        frames.append((rgb.numpy() * 255).round().astype("uint8"))
    video = write_video(run_dir / "orbit.mp4", frames, config["video_fps"])
    report = parameter_report(trainer.field)
    metrics = {
        "scene": config["scene"], "spec": config["spec"], "steps": trainer.step,
        "train_seconds": round(trainer.train_seconds, 1), "device": str(device), "precision": trainer.precision,
        "sampling": trainer.path.name, "resolution": [test_views.height, test_views.width],
        "test_psnr": result["psnr"], "test_ssim": result["ssim"], "test_views": result["per_view"],
        "parameters": report["parameters"], "dense_parameters": report["dense_parameters"],
        "percent_of_dense": report["percent_of_dense"], "bytes_fp32": report["bytes_fp32"],
        "bytes_fp16": report["bytes_fp16"], "video": video.name,
    }
    runs.write_json(run_dir / "metrics.json", metrics)
    print(f"test PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f} on {len(indices)} views "
          f"-> {run_dir / 'metrics.json'}; video {video}")
    return metrics


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[RadianceField, SamplingPath, dict]:
    """The trained field and its sampler (occupancy grid included) from a run's latest checkpoint."""
    config = load_run_config(run_dir)
    ckpt = runs.latest_checkpoint(run_dir)
    if ckpt is None:
        raise NeuralFieldsError(f"{run_dir} holds no checkpoint")
    device = torch.device(device)
    field = build_field(config).to(device)
    path = build_sampling_path(config, device)
    runs.load_checkpoint(ckpt, FieldWithSampler(field, path.estimator))
    field.eval()
    path.estimator.eval()
    return field, path, config


def load_field(run_dir: str | Path) -> tuple[RadianceField, dict]:
    """The trained RadianceField on the CPU (eval mode) and the run's config."""
    field, _, config = load_run(run_dir, "cpu")
    return field, config
