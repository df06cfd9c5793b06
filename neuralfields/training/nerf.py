"""The NeRF task: its config, its model (radiance field + occupancy grid), one training step,
validation and the final evaluation (test PSNR/SSIM, renders, orbit video).

The shared loop (training/loop.py) runs it; `train_nerf` is the library entry point the script
calls. Presets in configs/nerf/ overlay `NerfConfig`'s defaults and may extend one another.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from neuralfields.config import RunConfig, load_run_config, setting
from neuralfields.config import load_preset as load_task_preset
from neuralfields.data.captures import SCENE_KINDS, detect_scene_kind, scene_layout
from neuralfields.data.scenes import ViewSet, is_capture_scene, load_views, read_capture, resolve_scene_dir
from neuralfields.device import autocast_dtype, resolve_device
from neuralfields.fields.radiance import RadianceField
from neuralfields.layers.fused import layer_path_description
from neuralfields.media import save_png, write_video
from neuralfields.metrics import psnr, psnr_from_mse, ssim
from neuralfields.progress import progress_bar
from neuralfields.rendering.cameras import forward_facing_circle, image_rays, orbit_camtoworlds
from neuralfields.rendering.contraction import CONTRACTIONS
from neuralfields.rendering.render import RenderSettings, render_image, render_rays
from neuralfields.rendering.sampling import SamplingPath, create_sampling_path
from neuralfields.training.loop import Callback, start_run, train_in_folder

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "nerf"
FORWARD_FACING_FOCUS_DEPTH = 5.0
"""Where the video of a forward-facing scene looks: ~4x the nearest depth, which the LLFF loader
scales to 1 / 0.75 (the reference's spiral path focuses at a similar depth)."""


@dataclass(frozen=True)
class NerfConfig(RunConfig):
    """A NeRF run: the reference NeRF architecture with every linear layer from `spec`."""

    task: ClassVar[str] = "nerf"
    # data
    scene: str = setting("lego", "'demo', a scene name under data_dir, or a scene folder")
    data_dir: str | None = setting(None, "folder holding scene folders (default data/nerf_synthetic)")
    downscale: int = setting(1, "image downscale factor", minimum=1)
    background: str = setting("white", "background colour of Blender scenes", choices=("white", "black"))
    scene_kind: str = setting("auto", "photo captures: auto (from the spread of view directions), forward "
                                      "(NDC rays) or circling (spherified, world rays); a run records the kind used",
                              choices=SCENE_KINDS)
    # model
    num_layers: int = setting(8, "trunk layers", minimum=1)
    width: int = setting(256, "trunk width", minimum=1)
    skip_layer: int = setting(5, "trunk layer that gets the input again (0: none)", minimum=0)
    color_width: int = setting(128, "width of the view-dependent colour branch", minimum=1)
    xyz_freqs: int = setting(10, "positional-encoding frequencies of positions", minimum=0)
    dir_freqs: int = setting(4, "positional-encoding frequencies of view directions", minimum=0)
    # sampling: "grid" (occupancy grid) or "naive" (uniform samples, a baseline)
    sampler: str = setting("grid", "grid (occupancy grid) or naive (uniform samples)", choices=("grid", "naive"))
    aabb: list[float] = setting([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], "scene box xmin ymin zmin xmax ymax zmax", length=6)
    grid_resolution: int = setting(128, "occupancy grid cells per axis", minimum=2)
    grid_levels: int = setting(1, "occupancy grid levels, each over a box twice the last (unbounded scenes)",
                               minimum=1)
    cone_angle: float = setting(0.0, "marching step growth with distance: clamp(t * cone_angle, step) "
                                     "(nerfacc's; 0: a fixed step)", minimum=0)
    contraction: str = setting("none", "where the field sees points: none, or sphere (mip-NeRF 360: space "
                                       "beyond the unit ball squeezed into radius 2)", choices=CONTRACTIONS)
    grid_update_every: int = setting(16, "steps between occupancy grid updates", minimum=1)
    grid_warmup_steps: int = setting(256, "steps during which the grid updates every cell", minimum=0)
    occ_thre: float = setting(0.01, "opacity threshold of an occupied grid cell", minimum=0)
    naive_samples: int = setting(64, "samples per ray of the naive sampler", minimum=1)
    render_step_size: float = setting(5e-3, "marching step along rays", minimum=0, above=True)
    early_stop_eps: float = setting(1e-4, "transmittance below which a ray stops", minimum=0)
    alpha_thre: float = setting(0.0, "opacity below which samples are skipped", minimum=0)
    # optimisation
    target_samples: int = setting(262144, "samples per batch the ray count adapts to", minimum=1)
    adam_beta2: float = setting(0.999, "Adam's beta2", minimum=0, above=True)
    init_rays: int = setting(1024, "rays in the first batch", minimum=1)
    max_rays: int = setting(8192, "most rays in a batch", minimum=1)
    mixed_precision: bool = setting(True, "autocast (fp16 on CUDA, bf16 on CPUs with native bf16)")
    # outputs
    val_every: int = setting(2000, "steps between validation renders", minimum=1)
    test_views: int | None = setting(None, "test views scored, spread evenly (null: all)", minimum=1)
    eval_chunk: int = setting(8192, "rays per chunk when rendering images", minimum=1)
    video_frames: int = setting(60, "frames of the orbit video (0: no video)", minimum=0)
    video_fps: int = setting(20, "orbit video frame rate", minimum=1)
    video_downscale: int = setting(1, "orbit video downscale factor", minimum=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.spec.check_rank(min(self.width, self.color_width))

    @property
    def run_name(self) -> tuple[str, ...]:
        return Path(self.scene).name, self.spec.label

    @staticmethod
    def upgrade(values: dict) -> dict:
        """A config.yaml written before the task contract (no `task` key) in today's names."""
        if "task" in values:
            return values
        values = {"task": "nerf", **values}
        renames = {"ckpt_every": "checkpoint_every", "cpu_threads": "threads"}
        values = {renames.get(key, key): value for key, value in values.items()}
        if "lr_final" in values:
            values["lr_final_ratio"] = float(values.pop("lr_final")) / float(values.get("lr", NerfConfig.lr))
        return values


def load_preset(name_or_path: str) -> NerfConfig:
    """`cpu`, `gpu`, `demo`, `llff` from configs/nerf/, or a YAML path, over NerfConfig's defaults."""
    return load_task_preset(NerfConfig, PRESET_DIR, name_or_path)


def auto_preset(scene: str, data_dir: str | Path | None = None, device: str = "auto",
                scene_kind: str = "auto") -> str:
    """The preset `--preset auto` means: demo for the demo scene; for a photo capture (LLFF,
    nerfstudio, COLMAP) llff when it is forward-facing and circling when it is not (measured from
    its poses unless scene_kind says); else gpu on CUDA and cpu otherwise."""
    if scene == "demo":
        return "demo"
    scene_dir = resolve_scene_dir(scene, data_dir)
    if is_capture_scene(scene_dir):
        kind = scene_kind if scene_kind != "auto" else detect_scene_kind(read_capture(scene_dir).camtoworlds)[0]
        return "llff" if kind == "forward" else "circling"
    return "gpu" if resolve_device(device).type == "cuda" else "cpu"


def build_field(config: NerfConfig) -> RadianceField:
    return RadianceField(config.spec, num_layers=config.num_layers, width=config.width, skip_layer=config.skip_layer,
                         color_width=config.color_width, xyz_freqs=config.xyz_freqs, dir_freqs=config.dir_freqs)


def build_sampling_path(config: NerfConfig, device: torch.device) -> SamplingPath:
    return create_sampling_path(device, config.sampler, config.aabb, config.grid_resolution, config.naive_samples,
                                config.grid_levels)


def render_settings(config: NerfConfig, views: ViewSet) -> RenderSettings:
    background = (1.0, 1.0, 1.0) if config.background == "white" else (0.0, 0.0, 0.0)
    return RenderSettings(views.near, views.far, config.render_step_size, config.early_stop_eps,
                          config.alpha_thre, background, ndc=views.ndc, cone_angle=config.cone_angle,
                          contraction=config.contraction)


class FieldWithSampler(nn.Module):
    """What a NeRF checkpoint holds: the field and the sampler state (the occupancy grid), with
    the sampling path (grid + volume renderer) that renders the field."""

    def __init__(self, field: RadianceField, path: SamplingPath) -> None:
        super().__init__()
        self.field = field
        self.estimator = path.estimator
        self.path = path


def build_model(config: NerfConfig, device: torch.device | str = "cpu") -> FieldWithSampler:
    """The (untrained) model of a NeRF run on `device`; checkpoints load into it."""
    device = torch.device(device)
    return FieldWithSampler(build_field(config), build_sampling_path(config, device)).to(device)


class NerfTask:
    """One NeRF optimisation on a set of training views (the loop's `Task`).

    The ray batch is resized after every step so that it holds about `target_samples` samples
    (as in nerfacc's examples).
    """

    def __init__(self, config: NerfConfig, device: torch.device, train_views: ViewSet,
                 val_views: ViewSet | None = None, scene_dir: Path | None = None) -> None:
        self.config = config
        self.device = device
        self.val_views = val_views
        self.scene_dir = scene_dir
        self.validate_every = config.val_every if val_views is not None else None
        torch.manual_seed(config.seed)
        self.model = build_model(config, device)
        self.field, self.path = self.model.field, self.model.path
        self.settings = render_settings(config, train_views)
        self.optimizer = torch.optim.Adam(self.field.parameters(), lr=config.lr, eps=1e-15,
                                          betas=(0.9, config.adam_beta2))
        self.amp_dtype = autocast_dtype(device) if config.mixed_precision else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.num_rays = config.init_rays
        self.last = {}
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

    def _update_grid(self, step: int) -> None:
        step_size = self.settings.render_step_size

        def occ_eval_fn(points: torch.Tensor) -> torch.Tensor:
            return self.field.query_density(self.settings.field_points(points))[:, None] * step_size

        self.path.estimator.update_every_n_steps(
            step, occ_eval_fn, occ_thre=self.config.occ_thre,
            warmup_steps=self.config.grid_warmup_steps, n=self.config.grid_update_every,
        )

    def train_step(self, step: int, lr: float) -> dict:
        """Optimisation step `step` (0-based); returns loss, psnr, rays and samples of the step."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.field.train()
        self.path.estimator.train()
        self._update_grid(step)
        picked = torch.randint(self.rays_o.shape[0], (self.num_rays,), device=self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = render_rays(self.field, self.path, self.rays_o[picked], self.rays_d[picked],
                              self.settings, stratified=True)
        loss = F.mse_loss(out["rgb"].float(), self.colors[picked])
        self.optimizer.zero_grad(set_to_none=True)
        if out["num_samples"] > 0 and torch.isfinite(loss):
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        used_rays = self.num_rays
        self.num_rays = int(min(self.config.max_rays,
                                max(64, self.num_rays * self.config.target_samples / max(out["num_samples"], 1))))
        self.last = {"loss": loss.item(), "psnr": psnr_from_mse(loss.item()), "rays": used_rays,
                     "samples": out["num_samples"]}
        return self.last

    def summary(self) -> dict:
        return {"loss": f"{self.last['loss']:.4f}", "psnr": f"{self.last['psnr']:.2f}"} if self.last else {}

    def checkpoint_state(self) -> dict:
        return {"num_rays": self.num_rays}

    def restore_state(self, state: dict) -> None:
        self.num_rays = int(state.get("num_rays", self.num_rays))

    def render_view(self, camtoworld: torch.Tensor, height: int, width: int, focal: float) -> dict:
        self.field.eval()
        self.path.estimator.eval()
        return render_image(self.field, self.path, camtoworld, height, width, focal, self.settings,
                            chunk=self.config.eval_chunk)

    def validate(self, step: int, run_dir: Path) -> dict:
        """Render the first validation view into val/ and score it."""
        views = self.val_views
        image = self.render_view(views.camtoworlds[0], views.height, views.width, views.focal)["rgb"]
        save_png(run_dir / "val" / f"step_{step:07d}.png", image)
        return {"val_psnr": psnr(image, views.images[0]).item()}

    def evaluate_views(self, views: ViewSet, indices: list[int] | None = None, out_dir: Path | None = None,
                       progress: bool = True) -> dict:
        """PSNR and SSIM per view and their means; saves PNG renders into out_dir when given."""
        indices = list(range(len(views))) if indices is None else indices
        per_view = []
        for index in progress_bar(indices, desc="evaluating", unit="view", leave=False, disable=not progress):
            image = self.render_view(views.camtoworlds[index], views.height, views.width, views.focal)["rgb"]
            target = views.images[index]
            name = Path(views.names[index]).name
            per_view.append({"view": name, "psnr": psnr(image, target).item(), "ssim": ssim(image, target).item()})
            if out_dir is not None:
                save_png(out_dir / f"{name}.png", image)
        return {"psnr": sum(v["psnr"] for v in per_view) / len(per_view),
                "ssim": sum(v["ssim"] for v in per_view) / len(per_view), "per_view": per_view}

    def evaluate(self, run_dir: Path) -> dict:
        """Score the test split (all views, or `test_views` spread evenly), render the orbit video."""
        config = self.config
        test_views = load_views(self.scene_dir, "test", config.downscale, config.background, config.scene_kind)
        indices = evenly_spaced(len(test_views), config.test_views)
        result = self.evaluate_views(test_views, indices, run_dir / "test")
        video = self._orbit_video(test_views, run_dir) if config.video_frames else None
        print(f"test PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f} on {len(indices)} of "
              f"{len(test_views)} test views" + (f"; video {video}" if video else ""))
        return {
            "scene": config.scene, "test_psnr": result["psnr"], "test_ssim": result["ssim"],
            "test_views_scored": len(indices), "test_views_total": len(test_views), "test_views": result["per_view"],
            "precision": self.precision, "sampling": self.path.name, "resolution": [test_views.height, test_views.width],
            "video": video.name if video else None, "scene_kind": test_views.kind,
            "view_spread_deg": test_views.spread_deg,
        }

    def _orbit_video(self, views: ViewSet, run_dir: Path) -> Path:
        frames, shrink = [], self.config.video_downscale
        for c2w in progress_bar(video_path(views, self.config.video_frames), desc="orbit video", unit="frame",
                                leave=False):
            rgb = self.render_view(c2w, views.height // shrink, views.width // shrink, views.focal / shrink)["rgb"]
            frames.append((rgb.numpy() * 255).round().astype("uint8"))
        return write_video(run_dir / "orbit.mp4", frames, self.config.video_fps)


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


def describe_capture(scene_dir: Path, config: NerfConfig) -> str:
    """Print, once, what a photo capture is and how it is normalised (and a note where the sampling
    settings do not suit it); returns the scene kind used."""
    capture = read_capture(scene_dir)
    layout = scene_layout(capture, config.scene_kind)
    print(f"scene: {scene_dir.name}, {len(capture)} photos ({capture.source}); {layout.describe()}")
    if layout.kind == "circling" and config.grid_levels == 1 and config.contraction == "none":
        print("note: a single-level grid and no contraction model nothing outside the aabb; the circling preset "
              "(--preset circling) covers the background of circling captures")
    if layout.kind == "forward" and config.contraction != "none":
        print("note: contraction is meant for world rays, not a forward-facing capture's NDC rays")
    return layout.kind


def train_nerf(config: NerfConfig | dict, resume: str | Path | None = None, callbacks: tuple[Callback, ...] = (),
               progress: bool = True, run_dir: str | Path | None = None) -> tuple[Path, dict]:
    """Train (or, with `resume`, continue) a NeRF run; returns (run folder, metrics).

    With `resume`, `config` is a dict of overrides (e.g. steps, time_budget_s, device) for the
    run's saved config, and training continues from its latest checkpoint. Inputs (device, scene,
    images) are checked before a new run folder is made, so bad input leaves nothing behind.
    `run_dir` names the new run's folder (default: a timestamped one under output_root/run_name).
    The folder gets config.yaml, checkpoints, val/ and test/ renders, metrics.json and orbit.mp4.
    """
    if resume is not None:
        config = load_run_config(NerfConfig, resume, overrides=config)
    device = resolve_device(config.device)
    scene_dir = resolve_scene_dir(config.scene, config.data_dir)
    if is_capture_scene(scene_dir):
        config = replace(config, scene_kind=describe_capture(scene_dir, config))  # config.yaml records the kind
    train_views = load_views(scene_dir, "train", config.downscale, config.background, config.scene_kind)
    val_views = load_views(scene_dir, "val", config.downscale, config.background, config.scene_kind)
    run_dir = start_run(config, resume, run_dir)

    def make_task() -> NerfTask:
        task = NerfTask(config, device, train_views, val_views, scene_dir)
        rays = "NDC rays (forward-facing)" if task.settings.ndc else "world rays"
        print(f"device: {device}; precision: {task.precision}; sampling: {task.path.name}; {rays}")
        print(layer_path_description(task.field, device))
        return task

    metrics = train_in_folder(run_dir, config, make_task, resume is not None, callbacks, progress)
    return run_dir, metrics

