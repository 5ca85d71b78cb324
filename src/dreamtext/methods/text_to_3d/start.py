"""Where a text-to-3D field starts: the density blob, or a visual hull of the prior's own drawings (ours).

With the small built-in prior, SDS from the blob settles thin and many-part objects (a teapot, a table,
a lamp) into blobs, while started from the true object it keeps them (`bench world --start truth`): the
way from the blob is what fails, not the distillation's resting point. So the run can start where the
prior itself points. The prior draws the object under each view prompt ("..., front view", "..., side
view", ...), each drawing's plain backdrop is told apart from the object, and a point of the scene cube
is kept where every view's mean silhouette covers it at least `threshold` of the time: a soft visual
hull. A drawing's camera is unknown within the training distribution, so each view is placed at the
centre of its label's range and several drawings are averaged into its silhouette. The field is fitted
to the hull by 3D supervision (`fit_field`, as the benchmark's truth start fits it to the object) and
SDS proceeds as usual. Optionally the prior redraws the hull's own silhouettes from cameras we choose,
which carve it further (`RedrawConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import DreamtextError
from ...metrics import occupancy_grid
from ...prior.sampling import best_at_cameras, ddim_redraw, ddim_sample, initial_noise
from ...scene.cameras import VIEW_LABELS, CameraSamplerConfig, Cameras, orbit_cameras, view_label_ids
from ...scene.rays import ray_aabb_intersect
from ...scene.renderer import stratified_t_values
from ...utils.images import close_masks, foreground_masks
from ...utils.progress import Progress

# (density target [P], inside [P] bool, albedo target [P, 3], albedo weight [P]) at points [P, 3]
Targets = Callable[[Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]


@dataclass(frozen=True)
class FieldFitConfig:
    """Fitting a field's density and albedo to 3D targets at random points of its cube.

    steps, points, lr: Adam (ours: 600 x 8192 fits a world object to IoU about 0.7-0.85 at the builtin
    preset's field size in about 20 s on 2 CPU cores). inside_density: the target inside, well above the
    mesh and IoU threshold (10), opaque at any sample spacing."""

    steps: int = 600
    points: int = 8192
    lr: float = 1e-2
    inside_density: float = 40.0


def fit_field(field: torch.nn.Module, targets: Targets, bound: float, config: FieldFitConfig = FieldFitConfig(),
              seed: int = 0, progress: bool = False) -> None:
    """Fit `field` (density and albedo) to `targets` in place, with its own optimiser."""
    device = next(field.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = torch.optim.Adam(field.parameters(), lr=config.lr)
    with Progress(total=config.steps, description="start shape", log_every=100, enabled=progress) as bar:
        for step in range(1, config.steps + 1):
            _fit_step(field, targets, bound, config, generator, optimizer, device)
            bar.update(step)


def _fit_step(field, targets: Targets, bound: float, config: FieldFitConfig, generator, optimizer, device) -> None:
    points = (torch.rand(config.points, 3, generator=generator, device=device) * 2 - 1) * bound
    density, inside, albedo, albedo_weight = targets(points)
    outputs = field(points)
    # Inside and outside weigh the same: a thin object fills a few percent of the cube, and a plain
    # mean would first fit the empty space by emptying everything.
    error = (outputs.density - density).abs() / config.inside_density
    density_error = error[inside].mean().nan_to_num() + error[~inside].mean().nan_to_num()
    albedo_error = ((outputs.albedo - albedo) ** 2 * albedo_weight.unsqueeze(-1)).sum(-1).mean()
    optimizer.zero_grad(set_to_none=True)
    (density_error + albedo_error).backward()
    optimizer.step()


@dataclass(frozen=True)
class RedrawConfig:
    """Ours: the hull redrawn from known cameras. A drawing's camera is unknown within its view label's
    range, so the first hull is a blur of misplaced silhouettes; the hull's own silhouettes, seen from
    cameras we choose, sketch where the object is, and the prior redraws each sketch (SDEdit) into the
    object at that place and pose. The redrawn silhouettes, at cameras now known, carve the hull further.

    strength: the fraction of the first drawings' DDIM schedule (`steps`) the sketches are noised to before
        the prior redraws them at the drawings' guidance (0: no redrawing; 1: from pure noise, which keeps
        nothing of the sketch).
    azimuths, polars_deg: the cameras, every 360 / azimuths degrees at each polar angle (at the hull's
        assumed distance and field of view); the overhead ring (polar 15) carves holes seen from above.
    drawings: redraws of each sketch from different noise; rounds: how often the hull is redrawn.
    backdrop_range: each sketch's plain backdrop, each channel uniform in it (the built-in prior's training
        backdrops, world/renders.py); the sketch's object is flat, in the drawings' mean colour.
    """

    strength: float = 0.0
    azimuths: int = 8
    polars_deg: tuple[float, ...] = (75.0, 15.0)
    drawings: int = 4
    rounds: int = 1
    backdrop_range: tuple[float, float] = (0.75, 1.0)

    def __post_init__(self):
        if not 0.0 <= self.strength <= 1.0:
            raise DreamtextError(f"init.redraw.strength is a fraction of the noise schedule in [0, 1]; got {self.strength}")
        if self.azimuths < 1 or self.drawings < 1 or self.rounds < 1 or not self.polars_deg:
            raise DreamtextError("init.redraw needs at least one azimuth, polar angle, drawing and round")
        if self.drawings > 100 or self.rounds > 99 or self.azimuths * len(self.polars_deg) > 98:
            raise DreamtextError("init.redraw above 100 drawings, 99 rounds or 98 cameras would reuse another drawing's "
                                 "noise; redraw fewer")


@dataclass(frozen=True)
class ShapeInitConfig:
    """kind: "blob" (the field's own density blob; thesis 6.1.6) or "prior_hull" (ours, above).

    views: (view label, polar, azimuth) of each drawn view, in degrees: the centres of the thesis's label
        ranges (front: azimuth [0, 60), side: [60, 180), back: [180, 240), overhead: polar below 30), at
        the polar angle of a typical camera a little above the horizon.
    drawings_per_view, steps, guidance: DDIM draws of each view prompt (ours: 8 each at 20 steps and the
        usual sampling guidance 7.5: 32 drawings, about 15 s of the small prior on 2 CPU cores).
    radius, fovy_deg: the camera the drawings are assumed to be seen from; None: the middle of the run's
        camera ranges (the prior's training renders share them).
    backdrop_tolerance: a pixel is the object's where a channel differs from the backdrop (the median of the
        image's border) by more than this (the backdrops are plain).
    mask_closing: ours: the side in pixels (odd) of a morphological closing of each drawing's mask, which fills
        the light stripes and checks of a patterned object that read as backdrop and would cut the hull; 0:
        none.
    threshold: a point is inside where the mean silhouette of every view covers it at least this often.
    softness: the density target is fit.inside_density * sigmoid((coverage - threshold) / softness), a
        smooth surface rather than a step the field cannot fit.
    hold_weight: prior_hull only, ours: the weight (on the SDS loss's scale) of a loss that holds the
        whole run near the hull, in the form of Latent-NeRF's sketch-shape loss: the binary cross-entropy
        between random points' opacity over `hold_spacing` and the hull's inside, relaxed near the hull's
        surface by 1 - exp(-(coverage - threshold)^2 / (2 hold_margin^2)). 0: the hull is only the start.
    hold_inside_weight: ours: the weight of the cross-entropy's inside term against its outside term's 1.
        A visual hull bounds its object (what lies outside a silhouette is empty) but does not say the
        object fills it, so below 1 the hold keeps the outside empty more firmly than it keeps the inside
        filled, and leaves the distillation more room to carve a hull that is a superset of the object.
        Measured with the builtin preset (bench world, seed 0): 0.25 gave mean IoU 0.449 against 1's 0.498,
        the teapot carved hollow again (0.52 -> 0.19); the inside term keeps patterned objects whole.
    hold_points, hold_spacing, hold_margin: ours: 4096 uniform points of the scene cube a step; about one
        sample spacing of the builtin preset's renders (48 samples across the cube); the relaxation's
        width in coverage (a point covered by 30% or 70% of the drawings weighs 0.4).
    redraw: prior_hull only: the hull redrawn by the prior from known cameras (`RedrawConfig`).
    camera_guidance: ours: the scale of the prior's camera classifier's guidance (`prior.camera_classifier`)
        towards the camera each drawing is placed at (0: none; a prior without a classifier has none).
    camera_candidates: ours: each drawing the best of this many (different noise) for its view's camera, as the
        prior's camera classifier judges them (1: the one drawing; a prior without a classifier draws one).
    """

    kind: Literal["blob", "prior_hull"] = "blob"
    views: tuple[tuple[str, float, float], ...] = (
        ("front", 75.0, 30.0), ("side", 75.0, 120.0), ("back", 75.0, 210.0), ("overhead", 15.0, 30.0))
    drawings_per_view: int = 8
    steps: int = 20
    guidance: float = 7.5
    radius: float | None = None
    fovy_deg: float | None = None
    backdrop_tolerance: float = 0.08
    mask_closing: int = 0
    threshold: float = 0.5
    softness: float = 0.1
    fit: FieldFitConfig = field(default_factory=FieldFitConfig)
    hold_weight: float = 0.0
    hold_inside_weight: float = 1.0
    hold_points: int = 4096
    hold_spacing: float = 0.04
    hold_margin: float = 0.2
    redraw: RedrawConfig = field(default_factory=RedrawConfig)
    camera_guidance: float = 0.0
    camera_candidates: int = 1

    def __post_init__(self):
        if self.camera_candidates < 1:
            raise DreamtextError(f"init.camera_candidates must be at least 1 (drawings to choose each one from), got {self.camera_candidates}")
        if self.kind not in ("blob", "prior_hull"):
            raise DreamtextError(f"init.kind must be blob or prior_hull, got {self.kind!r}")
        unknown = [view[0] for view in self.views if view[0] not in VIEW_LABELS]
        if unknown:
            raise DreamtextError(f"init.views names unknown view labels {unknown}; known: {', '.join(VIEW_LABELS)}")
        if self.kind == "prior_hull" and (not self.views or self.drawings_per_view < 1):
            raise DreamtextError("init.kind prior_hull needs at least one view and one drawing per view")
        if self.mask_closing < 0 or (self.mask_closing and self.mask_closing % 2 == 0):
            raise DreamtextError(f"init.mask_closing is an odd number of pixels or 0 (none); got {self.mask_closing}")
        if not 0.0 < self.threshold < 1.0:
            raise DreamtextError(f"init.threshold is a fraction of the drawings, in (0, 1); got {self.threshold}")
        if self.hold_weight < 0 or self.hold_points < 1 or self.hold_spacing <= 0 or self.hold_margin <= 0:
            raise DreamtextError("init.hold_weight must be >= 0, and init.hold_points, hold_spacing and hold_margin positive")
        if not 0.0 <= self.hold_inside_weight <= 1.0:
            raise DreamtextError(f"init.hold_inside_weight is a weight in [0, 1] (1: inside and outside alike); got {self.hold_inside_weight}")

    @property
    def holds(self) -> bool:
        return self.kind == "prior_hull" and self.hold_weight > 0


def drawing_masks(images: Tensor, config: ShapeInitConfig) -> Tensor:
    """[B, 1, H, W] the silhouettes of drawings [B, 3, H, W]: told apart from their backdrop, then closed."""
    return close_masks(foreground_masks(images, config.backdrop_tolerance), config.mask_closing)


def project(cameras: Cameras, points: Tensor) -> Tensor:
    """[N, P, 2] the points' [P, 3] positions in each camera's image, in grid_sample's [-1, 1] units."""
    w2c = torch.linalg.inv(cameras.c2w)
    local = torch.einsum("nij,pj->npi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    depth = (-local[..., 2]).clamp_min(1e-6)  # OpenGL: the camera looks down its -z axis
    u = cameras.fx[:, None] * local[..., 0] / depth + cameras.cx[:, None]
    v = -cameras.fy[:, None] * local[..., 1] / depth + cameras.cy[:, None]  # image rows grow downwards
    return torch.stack([2 * u / cameras.width - 1, 2 * v / cameras.height - 1], dim=-1)


class SoftVisualHull:
    """The fraction of a view's silhouettes covering a point, the least over views: 1 where every drawing
    of every view covers it, 0 where one view never does. Points outside a frame count as uncovered."""

    def __init__(self, masks: list[Tensor], cameras: list[Cameras]):
        self.masks = masks  # per view [drawings, 1, H, W]
        self.cameras = cameras  # per view, one camera

    def state_dict(self) -> dict:
        """Tensors, numbers and lists only (a checkpoint loads with weights_only)."""
        return {"masks": [masks.cpu() for masks in self.masks],
                "cameras": [{"c2w": c.c2w.cpu(), "fx": c.fx.cpu(), "fy": c.fy.cpu(), "cx": c.cx.cpu(), "cy": c.cy.cpu(),
                             "width": c.width, "height": c.height} for c in self.cameras]}

    @classmethod
    def from_state_dict(cls, state: dict) -> "SoftVisualHull":
        return cls(list(state["masks"]), [Cameras(**camera) for camera in state["cameras"]])

    def to(self, device: torch.device | str) -> "SoftVisualHull":
        """The hull on `device`: queried there every step of a held run, its masks are moved once."""
        return SoftVisualHull([masks.to(device) for masks in self.masks], [camera.to(device) for camera in self.cameras])

    def coverage(self, points: Tensor) -> Tensor:
        per_view = []
        for masks, camera in zip(self.masks, self.cameras):
            grid = project(camera.to(points.device), points).to(masks.dtype)  # [1, P, 2]
            grid = grid.unsqueeze(1).expand(masks.shape[0], -1, -1, -1)  # [drawings, 1, P, 2]
            sampled = F.grid_sample(masks.to(points.device), grid, align_corners=False)  # zeros outside the frame
            per_view.append(sampled.flatten(1).mean(0))
        return torch.stack(per_view).amin(0).to(points.dtype)


class DrawingSource(Protocol):
    """Where a hull start's drawings come from: one [N, 3, H, W] batch per `config.views` entry, seen from
    `view_cameras(config, cameras, H)`. `draw_views` (the prior) is the source of every run."""

    def __call__(self, prior, embeddings, config: "ShapeInitConfig", seed: int, cameras: CameraSamplerConfig,
                 progress: bool) -> list[Tensor]: ...


# Each run seed owns a block of noise seeds, so that runs of different seeds share no drawing. (Before, drawing
# i of view v came from seed + 1000 v + i: seed 1's drawings were seed 0's shifted by one, 7 of 8 alike.) Seed 0
# keeps its noise. A block holds any view (1000 v), candidate (100 k), drawing and redraw round (100000 r) offset.
NOISE_SEEDS_PER_RUN = 10_000_000


def noise_seed(seed: int, offset: int) -> int:
    """The seed of the start's noise `offset` (< NOISE_SEEDS_PER_RUN) within run seed `seed`'s block."""
    return NOISE_SEEDS_PER_RUN * seed + offset


@torch.no_grad()
def draw_views(prior, embeddings, config: ShapeInitConfig, seed: int,
               cameras: CameraSamplerConfig = CameraSamplerConfig(), progress: bool = False) -> list[Tensor]:
    """Each view's drawings [drawings_per_view, 3, H, W]; drawing i of view v starts from the noise of
    `noise_seed(seed, 1000 v + i)` (its other candidates from + 100 k). embeddings: `PromptEmbeddings` (or
    anything with `conditional` / `unconditional`). A camera-aware prior draws each view from the very camera
    the hull places it at (`view_cameras`); a text-only one hears the view's label, and with a camera
    classifier is steered towards that camera (`camera_guidance`) and its drawings chosen for it
    (`camera_candidates`)."""
    if config.drawings_per_view > 100 or config.camera_candidates > 10:
        raise DreamtextError("init.drawings_per_view above 100 or init.camera_candidates above 10 would reuse another "
                             "drawing's noise; draw fewer")
    size = prior.image_size
    candidates = config.camera_candidates if prior.camera_classifier is not None else 1
    drawings = []
    with Progress(total=len(config.views) * config.steps, description="drawings", log_every=config.steps,
                  enabled=progress) as bar:
        for index, ((label, _, _), camera) in enumerate(zip(config.views, view_cameras(config, cameras, size))):
            view_id = torch.tensor([VIEW_LABELS.index(label)])
            noise = initial_noise(prior, [noise_seed(seed, 1000 * index + 100 * k + i)
                                          for i in range(config.drawings_per_view) for k in range(candidates)])
            done = index * config.steps
            drawn = ddim_sample(prior, embeddings.conditional(view_id), embeddings.unconditional(1), noise, config.steps,
                                config.guidance, on_step=lambda k, done=done: bar.update(done + k),
                                cameras=camera.to(prior.device), camera_guidance=config.camera_guidance)
            if candidates > 1:
                drawn = best_at_cameras(prior, drawn, camera.to(prior.device)[torch.zeros(config.drawings_per_view, dtype=torch.long)],
                                        candidates)
            drawings.append(drawn.cpu())
    return drawings


def assumed_camera(config: ShapeInitConfig, cameras: CameraSamplerConfig) -> tuple[float, float]:
    """(radius, vertical field of view in degrees) the drawings are assumed to be seen from."""
    radius = config.radius if config.radius is not None else sum(cameras.radius_range) / 2
    fovy = config.fovy_deg if config.fovy_deg is not None else sum(cameras.fovy_range_deg) / 2
    return radius, fovy


def view_cameras(config: ShapeInitConfig, cameras: CameraSamplerConfig, size: int) -> list[Cameras]:
    """The camera of each of `config.views` (one each), at the assumed distance and field of view."""
    radius, fovy = assumed_camera(config, cameras)
    return [orbit_cameras(1, size, size, radius=radius, polar_deg=polar, fovy_deg=fovy, start_azimuth_deg=azimuth).cameras
            for _, polar, azimuth in config.views]


def hull_of_drawings(drawings: list[Tensor], config: ShapeInitConfig, cameras: CameraSamplerConfig) -> SoftVisualHull:
    masks = [drawing_masks(images, config) for images in drawings]
    return SoftVisualHull(masks, view_cameras(config, cameras, drawings[0].shape[-1]))


def mean_object_colour(drawings: list[Tensor], hull: SoftVisualHull) -> Tensor:
    """[3] the drawings' mean colour over their objects' pixels (the hull's masks; shaded, so a little
    darker than the albedo)."""
    images = torch.cat(drawings)
    masks = torch.cat(hull.masks).to(images.device)
    if masks.sum() == 0:
        return torch.full((3,), 0.5)
    return (images * masks).sum((0, 2, 3)) / masks.sum()


def hull_silhouettes(hull: SoftVisualHull, cameras: Cameras, threshold: float, bound: float, samples: int = 64) -> Tensor:
    """[N, 1, H, W] 1 where a pixel's ray meets the hull (coverage above `threshold`) at one of `samples`
    points at the centres of equal bins of the ray's way through the scene cube [-bound, bound]^3 (the
    renderer's own sampling, unperturbed)."""
    rays = cameras.generate_rays()
    near, far, hit = ray_aabb_intersect(rays, bound)  # [N, H, W]
    silhouettes = []
    for origins, directions, start, end, hits in zip(rays.origins, rays.directions, near, far, hit):  # a camera at a time
        depths = stratified_t_values(start.reshape(-1), end.reshape(-1), samples, perturb=False)  # [H * W, samples]
        points = origins.reshape(-1, 1, 3) + directions.reshape(-1, 1, 3) * depths[..., None]  # [H * W, samples, 3]
        inside = hull.coverage(points.reshape(-1, 3)) > threshold
        silhouettes.append((inside.view(hits.shape + (samples,)).any(-1) & hits).to(origins.dtype))  # only the cube's hull
    return torch.stack(silhouettes).unsqueeze(1)


@torch.no_grad()
def redraw_hull(prior, embeddings, hull: SoftVisualHull, colour: Tensor, config: ShapeInitConfig,
                cameras: CameraSamplerConfig, bound: float, seed: int) -> tuple[SoftVisualHull, list[Tensor]]:
    """The hull carved further by the prior's redraws of its own silhouettes at known cameras
    (`RedrawConfig`), and the redraws [rounds x cameras x [drawings, 3, H, W]] in the order the hull's views
    were added (after the first drawings' views, whose masks come first in the hull). Redraw i of camera c
    in round r starts from the noise of `noise_seed(seed, 1000 (c + 1) + 100000 r + i)` (the first drawings use
    1000 v + i)."""
    redraw = config.redraw
    size = hull.masks[0].shape[-1]
    radius, fovy = assumed_camera(config, cameras)
    angles = torch.tensor([(polar, k * 360.0 / redraw.azimuths) for polar in redraw.polars_deg for k in range(redraw.azimuths)])
    views = [orbit_cameras(1, size, size, radius=radius, polar_deg=float(polar), fovy_deg=fovy,
                           start_azimuth_deg=float(azimuth)).cameras.to(prior.device) for polar, azimuth in angles]
    labels = view_label_ids(angles[:, 0], angles[:, 1])
    low, high = redraw.backdrop_range
    colour = colour.cpu().view(1, 3, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    hull = hull.to(prior.device)
    redrawn = []
    for round_index in range(redraw.rounds):
        masks = []
        for index, (camera, label) in enumerate(zip(views, labels)):
            sketch = hull_silhouettes(hull, camera, config.threshold, bound).cpu()  # [1, 1, H, W]
            backdrops = low + (high - low) * torch.rand(redraw.drawings, 3, 1, 1, generator=generator)
            sketches = sketch * colour + (1 - sketch) * backdrops
            noise = initial_noise(prior, [noise_seed(seed, 1000 * (index + 1) + 100000 * round_index + i)
                                          for i in range(redraw.drawings)])
            images = ddim_redraw(prior, sketches, embeddings.conditional(label.view(1).repeat(redraw.drawings)),
                                 embeddings.unconditional(1), noise, redraw.strength, config.steps, config.guidance,
                                 cameras=camera, camera_guidance=config.camera_guidance).cpu()
            masks.append(drawing_masks(images, config))
            redrawn.append(images)
        # The redrawn views join the hull's: they only carve. Alone, each redraw's softer outline (about a pixel
        # wider than its sketch) grew a well-drawn hull (a sphere's hull IoU 0.68 -> 0.61).
        hull = SoftVisualHull(hull.masks + [m.to(prior.device) for m in masks], hull.cameras + views)
    return hull.to("cpu"), redrawn


def hull_targets(hull: SoftVisualHull, colour: Tensor, config: ShapeInitConfig) -> Targets:
    def targets(points: Tensor):
        coverage = hull.coverage(points)
        margin = (coverage - config.threshold) / config.softness
        density = config.fit.inside_density * torch.sigmoid(margin)
        albedo = colour.to(points).expand(points.shape[0], 3)
        return density, coverage > config.threshold, albedo, (margin > -2).to(points.dtype)
    return targets


def hull_volume_fraction(hull: SoftVisualHull, threshold: float, bound: float, resolution: int = 48) -> float:
    """The fraction of the scene cube inside the hull, on a grid (a quick check that the hull is an object)."""
    return float(occupancy_grid(lambda points: hull.coverage(points) > threshold, bound, resolution).float().mean())


def hull_hold_loss(field, hull: SoftVisualHull, config: ShapeInitConfig, generator: torch.Generator) -> Tensor:
    """The weighted loss holding `field` near `hull` (`ShapeInitConfig.hold_weight`, above) at fresh random
    points of its cube."""
    device = next(field.parameters()).device
    points = (torch.rand(config.hold_points, 3, generator=generator, device=generator.device).to(device) * 2 - 1) * field.bound
    with torch.no_grad():
        coverage = hull.coverage(points)
    inside = (coverage > config.threshold).to(points.dtype)
    weight = -torch.expm1(-0.5 * ((coverage - config.threshold) / config.hold_margin) ** 2)
    opacity = (-torch.expm1(-field.density(points) * config.hold_spacing)).clamp(1e-4, 1 - 1e-4)
    cross_entropy = -(config.hold_inside_weight * inside * opacity.log() + (1 - inside) * (-opacity).log1p())
    return config.hold_weight * (cross_entropy * weight).mean()
