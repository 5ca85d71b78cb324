"""Text to 3D by score distillation (thesis 6.1, Stable DreamFusion / FitFusion).

Each step draws a camera from the thesis's distribution, renders the field with the scheduled shading
(light near the camera, background network behind), scores the render with the frozen Stable
Diffusion prior (SDS) under the view-dependent prompt, and adds the optional regularisers. Everything
random draws from one seeded generator stored in the checkpoint, so an interrupted run resumed with
`resume=True` ends where an uninterrupted one would. Presets live in `presets.py`.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ...errors import DreamtextError
from ...export.outputs import ExportConfig, export_all
from ...prior import (
    ConstantValue, CosineValue, ExponentialValue, PromptConfig, PromptEmbeddings,
    ScalarSchedule, SDSConfig, ScoreDistillation, load_prior,
)
from ...prior.loading import locate_model
from ...scene.background import Background, BackgroundConfig
from ...scene.cameras import CameraSamplerConfig, orbit_cameras, sample_training_cameras
from ...scene.field import FieldConfig, RadianceField
from ...scene.occupancy import OccupancyGridConfig
from ...scene.renderer import RendererConfig, VolumeRenderer
from ...scene.shading import ShadingScheduleConfig, light_directions_near_camera
from ...utils.device import PRECISION_DTYPES, Device, Precision, precision_dtype, precision_name, resolve_device
from ...utils.ema import update_ema
from ...utils.images import save_image
from ...utils.progress import stage, timed
from ...utils.workspace import Workspace
from ...utils.adan import Adan
from ..lifecycle import check_schedule, check_seed, start_run, train_loop, train_run
from .regularizers import RegularizerWeights, regularization
from ..sample import contact_sheet
from .start import (DrawingSource, ShapeInitConfig, SoftVisualHull, draw_views, fit_field, hull_hold_loss, hull_of_drawings, hull_targets,
                         hull_volume_fraction, mean_object_colour, redraw_hull)

ITERS_PER_EPOCH = 100  # thesis 6.1: an epoch is 100 iterations


@dataclass(frozen=True)
class OptimizerConfig:
    """kind, lr, weight_decay, betas, eps: stable-dreamfusion (March 2023) trains with Adan, lr 5e-3
    (hash grid at 10x through `FieldConfig.grid_lr_multiplier`), weight decay 2e-5, eps 1e-8, Adan's
    betas. With "adam" the betas (0.9, 0.99) and eps 1e-15 are Instant-NGP's, as threestudio uses them
    (threestudio's lr is 1e-2 with Adam: pass it with --lr)."""

    kind: Literal["adam", "adan"] = "adan"
    lr: float = 5e-3
    weight_decay: float = 2e-5
    lr_schedule: Literal["constant", "exponential", "cosine"] = "constant"
    """How every group's rate moves over the run, as a factor of its starting rate: constant
    (stable-dreamfusion with Adan), or falling to `lr_end_factor` geometrically or along half a cosine."""
    lr_end_factor: float = 1.0

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "exponential", "cosine"):
            raise DreamtextError(f"optimizer.lr_schedule must be constant, exponential or cosine, got {self.lr_schedule!r}")
        if not self.lr_end_factor > 0:
            raise DreamtextError(f"optimizer.lr_end_factor must be positive (a fraction of the starting rate), got {self.lr_end_factor}")

    def lr_factor(self) -> ScalarSchedule:
        end = self.lr_end_factor
        return {"constant": ConstantValue(1.0), "exponential": ExponentialValue(1.0, end), "cosine": CosineValue(1.0, end)}[self.lr_schedule]


@dataclass
class TextTo3DConfig:
    prompt: PromptConfig = dataclasses.field(default_factory=lambda: PromptConfig(prompt=""))
    model: str | None = None
    """Stable Diffusion: a diffusers folder, a .safetensors file, a cached hub id or "builtin"; None: the default
    (stabilityai/stable-diffusion-2-1-base, thesis 6.1.3) from the local cache, else the built-in prior."""
    model_config: str | None = None
    """For a single .safetensors file: the diffusers folder (or cached hub id) its component configs come from."""
    precision: Precision = "auto"
    """The prior's dtype: auto = fp16 on CUDA (the thesis ran fp16), fp32 on CPU."""
    prior_camera: bool = True
    """Tell the prior each render's camera when its folder has a camera-aware UNet (`camera_unet/`, trained with
    `train-prior unet --camera`; the built-in prior ships none); False: the text-only UNet, which hears the view
    only through the prompt's view suffix."""
    camera_classifier: str | None = None
    """A camera classifier folder (`train-prior camera`) for camera guidance (its scales: sds.camera_guidance,
    init.camera_guidance); None: the model folder's own `camera_classifier/`, if it has one."""
    sds: SDSConfig = dataclasses.field(default_factory=SDSConfig)
    render_size: int = 64  # thesis table (Stable DreamFusion: 64 px; FitFusion 256)
    iters: int = 100 * ITERS_PER_EPOCH  # thesis: 100 epochs of 100 iterations (Stable DreamFusion)
    batch_size: int = 1  # stable-dreamfusion and threestudio: one camera per step
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    regularizers: RegularizerWeights = dataclasses.field(default_factory=RegularizerWeights)
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)  # thesis 6.1.3 architecture
    init: ShapeInitConfig = dataclasses.field(default_factory=ShapeInitConfig)  # the blob (thesis 6.1.6) or the prior's hull
    background: BackgroundConfig = dataclasses.field(default_factory=BackgroundConfig)  # thesis 6.1.3 MLP
    renderer: RendererConfig = dataclasses.field(default_factory=RendererConfig)
    occupancy: OccupancyGridConfig = dataclasses.field(default_factory=OccupancyGridConfig)
    cameras: CameraSamplerConfig = dataclasses.field(default_factory=CameraSamplerConfig)  # thesis 6.1.5
    shading: ShadingScheduleConfig = dataclasses.field(default_factory=ShadingScheduleConfig)  # thesis 6.1.4
    light_std: float = 1.0  # thesis 6.1.4: light = ray origin + Gaussian noise (see light_directions_near_camera)
    validation_views: int = 4  # ours: four orbit views, front / side / back / side
    validation_size: int = 128  # ours
    eval_every: int = 1000  # ours: every 10 epochs
    checkpoint_every: int = 500  # ours: at most 5 epochs lost to an interruption ...
    checkpoint_minutes: float = 2.0  # ... and at most 2 minutes of wall time (a slow GPU or CPU run)
    ema_decay: float = 0.0
    """ours: 0 (off). Above 0, an exponential moving average of the field's weights (diffusers' EMAModel
    warm-up) is kept next to the trained ones; validation renders, exports and `load_trained` use it.
    SDS gradients are noisy step to step, and the average keeps what persists."""
    max_nonfinite_steps: int = 20
    """ours: after this many consecutive non-finite steps the run stops with advice (single ones are skipped)."""
    seed: int = 0
    device: Device = "auto"
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)


@dataclass
class TextTo3DResult:
    workspace: Path
    metrics: dict


_FALLBACK = {torch.float16: torch.bfloat16, torch.bfloat16: torch.float32}


class TextTo3DTrainer:
    """Holds the field, background, renderer, prior and optimiser of one text-to-3D run."""

    def __init__(self, config: TextTo3DConfig, workspace: Workspace, prior=None, embeddings=None,
                 drawings: DrawingSource | None = None):
        """embeddings: conditioning to use instead of encoding `config.prompt` (anything with
        `conditional(view_ids)` and `unconditional(batch)`, as `PromptEmbeddings`).
        drawings: where a hull start's drawings come from, called as `shape_init.draw_views` is (its
        default: the prior draws them); `bench world --start truth_hull` hands in exact renders."""
        check_text_config(config)
        self.config = config
        self.workspace = workspace
        self.drawings = drawings
        self.device = resolve_device(config.device)
        self.prior = prior = prior if prior is not None else load_run_prior(config)
        # Every prompt and view embedding is computed now; the text encoder is not needed after.
        self.embeddings = embeddings if embeddings is not None else PromptEmbeddings(prior, config.prompt, free_encoder=True)
        if config.sds.guidance_form == "perp_neg" and not hasattr(self.embeddings, "perp_neg"):
            raise DreamtextError("Perp-Neg guidance needs view prompts; this run's conditioning is one fixed embedding")
        self.sds = ScoreDistillation(prior, config.sds)
        self.lr_factor = config.optimizer.lr_factor()

        torch.manual_seed(config.seed)  # parameter initialisation
        self.field = RadianceField(config.field).to(self.device)
        self.ema_field = copy.deepcopy(self.field).requires_grad_(False) if config.ema_decay > 0 else None
        self.background = Background(config.background).to(self.device)
        self.renderer = VolumeRenderer(config.renderer, occupancy=config.occupancy, bound=self.field.bound).to(self.device)
        self.optimizer = self._make_optimizer()
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.step = 0
        self.losses: list[float] = []  # every step's loss (nan for skipped steps), kept in the checkpoint
        self.skipped_steps = 0
        self._consecutive_nonfinite = 0
        self.init_record: dict | None = None  # what the shape initialisation did (None: not run; a resumed run skips it)
        self.hull = None  # the prior's visual hull when the run starts from it (and `init.hold_weight` holds it there)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        opt = self.config.optimizer
        groups = self.field.parameter_groups(opt.lr) + self.background.parameter_groups(opt.lr)
        if opt.kind == "adan":
            return Adan(groups, lr=opt.lr, eps=1e-8, weight_decay=opt.weight_decay)
        if opt.kind == "adam":
            return torch.optim.Adam(groups, lr=opt.lr, betas=(0.9, 0.99), eps=1e-15, weight_decay=opt.weight_decay)
        raise DreamtextError(f"unknown optimizer {opt.kind!r}; use adam or adan")

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "field": self.field.state_dict(),
            **({"ema_field": self.ema_field.state_dict()} if self.ema_field is not None else {}),
            "background": self.background.state_dict(),
            "renderer": self.renderer.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "losses": list(self.losses),
            "skipped_steps": self.skipped_steps,
            "prior_dtype": precision_name(self.prior.dtype),
            # the start's stage, so that a resumed run neither redraws it nor loses it from metrics.json
            **({"init_record": dict(self.init_record)} if self.init_record is not None else {}),
            **({"hull": self.hull.state_dict()} if self.hull is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.field.load_state_dict(state["field"])
        if self.ema_field is not None:
            self.ema_field.load_state_dict(state["ema_field"])
        self.background.load_state_dict(state["background"])
        self.renderer.load_state_dict(state["renderer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu() if self.device.type == "cpu" else state["generator"])
        self.losses = [float(v) for v in state["losses"]]
        self.skipped_steps = int(state["skipped_steps"])
        self.init_record = dict(state["init_record"]) if "init_record" in state else self.init_record
        if "hull" in state:
            self.hull = SoftVisualHull.from_state_dict(state["hull"]).to(self.device)
        saved_dtype = PRECISION_DTYPES[state["prior_dtype"]]
        if saved_dtype != self.prior.dtype:  # the run had fallen back to a wider precision
            self._set_prior_dtype(saved_dtype)

    # -- training ------------------------------------------------------------------------------
    @property
    def shown_field(self) -> RadianceField:
        """The weights a run shows and exports: the moving average when there is one."""
        return self.ema_field if self.ema_field is not None else self.field

    @property
    def epoch(self) -> int:
        return self.step // ITERS_PER_EPOCH

    def train_step(self) -> float:
        """One SDS step; returns its loss (nan when the step was skipped as non-finite)."""
        config, generator = self.config, self.generator
        progress = self.step / max(config.iters, 1)
        self._set_field_progress(progress)
        self.renderer.update_occupancy(self.field, self.step, generator=generator)
        mode = config.shading.sample_mode(self.epoch, generator)
        size = config.render_size
        sample = sample_training_cameras(config.batch_size, size, size, config.cameras, generator, self.device)
        lights = light_directions_near_camera(sample.cameras.origins, config.light_std, generator)
        background = self.background
        if config.background.kind == "random":  # one colour for the whole image, however it is chunked
            background = self.background.random_color(generator).to(self.device)
        keep_samples = config.regularizers.needs_samples
        out = self.renderer.render(
            self.field, sample.cameras, background=background, shading=mode, light_dirs=lights,
            generator=generator, perturb=True, requires_grad=True, keep_samples=keep_samples,
        )
        images = out.rgb.permute(0, 3, 1, 2)  # [B, 3, H, W]
        view_ids = sample.view_label_ids()
        uncond = self.embeddings.unconditional(config.batch_size)
        negatives = weights = None
        if config.sds.guidance_form == "perp_neg":
            cond, negatives, weights = self.embeddings.perp_neg(sample.azimuth_deg, view_ids, config.sds.perp_neg)
        else:
            cond = self.embeddings.conditional(view_ids)
        loss, _ = self.sds.loss(images, cond, uncond, progress, generator=generator, cameras=sample.cameras,
                                negatives=negatives, negative_weights=weights)
        if config.regularizers.any_enabled:
            directions = sample.cameras.generate_rays().directions if config.regularizers.orientation > 0 else None
            frame_areas = sample.cameras.frame_area_at() if config.regularizers.opacity_free_area is not None else None
            extra, _ = regularization(out, directions, config.regularizers.at(progress), frame_areas)
            loss = loss + extra
        added = self.extra_loss()
        if added is not None:
            loss = loss + added
        if self.hull is not None and config.init.holds:
            # Points drawn from the step's own seed: a resumed run draws what the uninterrupted one would.
            points_generator = torch.Generator().manual_seed(config.seed * 1_000_003 + self.step)
            loss = loss + hull_hold_loss(self.field, self.hull, config.init, points_generator)

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else loss.new_zeros(())
        value = loss.detach()
        finite = bool(torch.isfinite(value) & torch.isfinite(grad_norm))  # one sync per step
        self.step += 1
        if not finite:
            self._skip_nonfinite(float(value))
            self.losses.append(float("nan"))
            return float("nan")
        self._consecutive_nonfinite = 0
        self._schedule_learning_rates(progress)
        self.optimizer.step()
        if self.ema_field is not None:
            update_ema(self.ema_field, self.field, config.ema_decay, self.step - 1)
        self.losses.append(float(value))
        return float(value)

    def _set_field_progress(self, progress: float) -> None:
        for field in (self.field, self.ema_field):
            if field is not None:
                field.set_progress(progress)

    def _schedule_learning_rates(self, progress: float) -> None:
        """Every group at its starting rate times the schedule's factor (groups a subclass adds too)."""
        if self.config.optimizer.lr_schedule == "constant":
            return
        factor = self.lr_factor(progress)
        for group in self.optimizer.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def extra_loss(self) -> torch.Tensor | None:
        """A loss subclasses add to every step (image-to-3D's reference view); None: nothing."""
        return None

    def _skip_nonfinite(self, value: float) -> None:
        """Drop the step's update; after repeated failures widen the prior's precision, then give up."""
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        self._consecutive_nonfinite += 1
        print(f"dreamtext: warning: non-finite loss or gradient ({value}) at step {self.step}; step skipped", file=sys.stderr)
        limit = self.config.max_nonfinite_steps
        if self._consecutive_nonfinite >= max(limit // 2, 1) and self.prior.dtype in _FALLBACK:
            wider = _FALLBACK[self.prior.dtype]
            if wider == torch.bfloat16 and not torch.cuda.is_bf16_supported():
                wider = torch.float32
            print(f"dreamtext: warning: switching the prior to {precision_name(wider)} after repeated non-finite steps", file=sys.stderr)
            self._set_prior_dtype(wider)
            self._consecutive_nonfinite = 0
            return
        if self._consecutive_nonfinite >= limit:
            raise DreamtextError(
                f"{self._consecutive_nonfinite} consecutive non-finite steps up to step {self.step}: "
                "lower --lr or --guidance, or run the prior in fp32 (--precision fp32)"
            )

    def _set_prior_dtype(self, dtype: torch.dtype) -> None:
        self.prior.unet.to(dtype=dtype)
        self.prior.vae.to(dtype=dtype)
        self.prior.dtype = dtype

    @torch.no_grad()
    def validate(self, save_as: str | None = None) -> torch.Tensor:
        """Fixed orbit views (albedo over the background) side by side, [H, W * views, 3]."""
        config = self.config
        size = config.validation_size
        cameras = orbit_cameras(config.validation_views, size, size, device=self.device, **config.export.cameras()).cameras
        self.background.eval()
        try:
            out = self.renderer.render(self.shown_field, cameras, background=self.background)
        finally:
            self.background.train()
        strip = torch.cat(list(out.rgb.clamp(0, 1)), dim=1)
        if save_as is not None:
            save_image(self.workspace.path(save_as), strip.cpu())
        return strip

    def initialise_shape(self, progress: bool = False) -> dict:
        """Start the field from the prior's visual hull when `config.init` asks for it (`train` calls this
        before a run's first step; a resumed run loads its checkpoint instead). Writes the drawings to
        init/drawings.png; returns (and keeps in `init_record`) what it did, for metrics.json."""
        self.init_record = self._initial_shape(progress)
        return self.init_record

    def _initial_shape(self, progress: bool) -> dict:
        init = self.config.init
        if init.kind == "blob":
            return {"init": "blob"}
        seconds: dict[str, float] = {}
        drawings, redrawn, hull, fraction = self._prior_hull(progress, seconds)
        save_image(self.workspace.path("init/drawings.png"), contact_sheet(torch.cat(drawings), columns=init.drawings_per_view))
        if redrawn is not None:
            save_image(self.workspace.path("init/redrawn.png"), contact_sheet(torch.cat(redrawn), columns=2 * init.redraw.drawings))
        if hull is None:
            print("dreamtext: warning: the prior's drawings gave an empty hull (no object told apart from its backdrop); "
                  "starting from the density blob", file=sys.stderr)
            return {"init": "blob", "hull_fraction": 0.0}
        self.hull = hull
        targets = hull_targets(hull, mean_object_colour(drawings + (redrawn or []), hull), init)  # the images of its masks
        with timed(seconds, "start_fit"):
            fit_field(self.field, targets, self.field.bound, init.fit, seed=self.config.seed, progress=progress)
        if self.ema_field is not None:
            self.ema_field.load_state_dict(self.field.state_dict())
        return {"init": "prior_hull", "hull_fraction": fraction, "start_seconds": seconds}

    def _prior_hull(self, progress: bool = False, seconds: dict[str, float] | None = None):
        """The prior's drawings, their hull's redraws when `init.redraw` asks for them (else None), the visual
        hull of all of them on the run's device (None when empty) and its share of the cube; the same for a
        seed, so a resumed run rebuilds the hull that holds it. `seconds`: each part's wall time is added there."""
        init = self.config.init
        seconds = {} if seconds is None else seconds
        draw = self.drawings or draw_views
        with timed(seconds, "drawings"):
            drawings = draw(self.prior, self.embeddings, init, seed=self.config.seed, cameras=self.config.cameras,
                            progress=progress)
        with timed(seconds, "hull"):
            hull = hull_of_drawings(drawings, init, self.config.cameras)
            fraction = hull_volume_fraction(hull, init.threshold, self.field.bound)
        redrawn = None
        if init.redraw.strength > 0 and fraction > 0.0:
            hull, redrawn = redraw_hull(self.prior, self.embeddings, hull, mean_object_colour(drawings, hull), init,
                                        self.config.cameras, self.field.bound, self.config.seed)
            fraction = hull_volume_fraction(hull, init.threshold, self.field.bound)
        return drawings, redrawn, (hull.to(self.device) if fraction > 0.0 else None), fraction

    def evaluate_at(self, step: int) -> None:
        self.validate(save_as=f"validation/step_{step:06d}.png")

    def train(self, progress: bool = True) -> None:
        """The start (its end is checkpointed: a resumed run does not draw it again), then the SDS steps
        (`lifecycle.train_loop`: progress, validation, checkpoints by steps and time, preemption)."""
        config = self.config
        if self.step == 0 and self.init_record is None:
            self.initialise_shape(progress)
            if self.init_record.get("init") != "blob":
                self.workspace.save_checkpoint(self.state_dict())
        elif config.init.holds and self.hull is None and self.step < config.iters:  # a checkpoint from before hulls were kept
            self.hull = self._prior_hull(progress)[2]
        train_loop(self, self.workspace, config.iters, "text-to-3d", progress, config.checkpoint_every,
                   config.checkpoint_minutes, config.eval_every)
        self._set_field_progress(1.0)  # the finished field is shown and exported with every level


def load_run_prior(config: TextTo3DConfig, progress: bool = False):
    """The prior a text-to-3D config asks for (its model, precision, camera input and classifier), with a line
    saying so while it loads (a Stable Diffusion checkpoint takes a while); a model that cannot be one is refused
    before that line."""
    locate_model(config.model)
    with stage(f"loading the prior ({config.model or 'default'})", progress):
        return load_prior(config.model, device=resolve_device(config.device), dtype=precision_dtype(config.precision),
                          config=config.model_config, camera=config.prior_camera, camera_classifier=config.camera_classifier)


def check_text_config(config: TextTo3DConfig) -> None:
    """One-line errors for settings that cannot run, before anything loads or is written."""
    if not config.prompt.prompt.strip():
        raise DreamtextError("the prompt is empty: describe the object to create, e.g. dreamtext text \"a red mug\"")
    check_schedule(config.iters, config.checkpoint_every, config.checkpoint_minutes, config.eval_every)
    check_seed(config.seed)
    problems = [
        (config.render_size >= 8, f"--render-size must be at least 8 pixels, got {config.render_size}"),
        (config.batch_size >= 1, f"--batch-size must be at least 1, got {config.batch_size}"),
        (config.optimizer.lr > 0, f"--optimizer.lr must be positive, got {config.optimizer.lr}"),
        (config.sds.guidance >= 0, f"--sds.guidance must be >= 0 (0: no guidance), got {config.sds.guidance}"),
        (0 <= config.sds.t_min < config.sds.t_max <= 1, f"--sds.t-min and --sds.t-max must satisfy 0 <= t_min < t_max <= 1, "
                                                      f"got {config.sds.t_min}, {config.sds.t_max}"),
        (config.renderer.max_samples_per_chunk >= 0, "--renderer.max-samples-per-chunk must be >= 0 (0: off), got "
                                                     f"{config.renderer.max_samples_per_chunk}"),
        (config.renderer.num_samples >= 1, f"--renderer.num-samples must be at least 1, got {config.renderer.num_samples}"),
        (config.validation_size >= 8 and config.validation_views >= 1, "--validation-size must be at least 8 and "
                                                                       "--validation-views at least 1"),
        (config.max_nonfinite_steps >= 1, f"--max-nonfinite-steps must be at least 1, got {config.max_nonfinite_steps}"),
        (config.light_std >= 0, f"--light-std must be >= 0, got {config.light_std}"),
        (0.0 <= config.ema_decay < 1.0, f"ema_decay must lie in [0, 1) (0 turns the moving average off), got {config.ema_decay}"),
        (config.sds.guidance_form in ("cfg", "perp_neg"), f"sds.guidance_form must be cfg or perp_neg, got {config.sds.guidance_form!r}"),
        (config.sds.camera_guidance >= 0 and config.init.camera_guidance >= 0,
         "--sds.camera-guidance and --init.camera-guidance must be >= 0 (0: no camera guidance)"),
    ]
    for ok, message in problems:
        if not ok:
            raise DreamtextError(message)


def text_to_3d(
    config: TextTo3DConfig, workspace: str | Path, resume: bool = False, progress: bool = True, prior=None,
    make_trainer=TextTo3DTrainer,
) -> TextTo3DResult:
    """Train a field from `config.prompt` by score distillation; write config, checkpoints, validation
    renders, metrics, a mesh, a turntable and named views into `workspace`.

    prior: an already loaded `Prior` (tests, notebooks); by default `config.model` is loaded.
    make_trainer: `(config, workspace, prior=...) -> TextTo3DTrainer`, for methods that extend the
        trainer (image-to-3D adds learned tokens and reference-view losses).
    """
    check_text_config(config)
    run = start_run(workspace, "text", config, resume)
    ws, config = run.workspace, run.config
    if run.finished is not None:
        # Resuming a finished run: metrics.json is written after every export, so all is on disk
        # (no prior to load, nothing to train).
        return TextTo3DResult(workspace=ws.root, metrics=run.finished)
    if prior is None:  # a bad model fails here, before anything is written
        prior = load_run_prior(config, progress)
    trainer = make_trainer(config, ws, prior=prior)
    metrics = train_run(run, "text", lambda _: (config, trainer),
                        lambda trainer, config, ws, seconds: finish_text_run(trainer, config, ws, seconds, run.resuming, progress),
                        progress)
    return TextTo3DResult(workspace=ws.root, metrics=metrics)


def finish_text_run(trainer: TextTo3DTrainer, config: TextTo3DConfig, ws: Workspace, training_seconds: float,
                    resuming: bool, progress: bool) -> dict:
    """A trained run's validation strip, exports and metrics (with where the wait went: the start's drawings,
    hull and fit, the SDS steps, the exports)."""
    trainer.validate(save_as="validation/final.png")
    finite = [v for v in trainer.losses if v == v]
    metrics = {
        "iters": trainer.step,
        "epochs": trainer.step / ITERS_PER_EPOCH,
        "skipped_steps": trainer.skipped_steps,
        "final_loss": finite[-1] if finite else None,
        "mean_loss_last_100": sum(finite[-100:]) / len(finite[-100:]) if finite else None,
        "prior_dtype": precision_name(trainer.prior.dtype),
        **(trainer.init_record or {}),
    }
    trainer.background.eval()
    exported = export_all(trainer.shown_field, trainer.renderer, ws, config.export, background=trainer.background,
                          progress=progress)
    start_seconds = metrics.pop("start_seconds", {})
    metrics.update(exported)
    started_here = trainer.init_record is not None and not resuming  # the start ran inside the training's time
    training = training_seconds - (sum(start_seconds.values()) if started_here else 0.0)
    metrics["stage_seconds"] = {**start_seconds, "training": training, **exported["stage_seconds"]}
    return metrics
