"""Pinhole cameras, the thesis's training camera distribution, orbits and view labels.

Conventions (shared by the whole package, and the same as Instant-NGP/nerfstudio and glTF):
- world space is y-up; an object's canonical front faces +z;
- `c2w` is camera-to-world in the OpenGL convention: camera x right, y up, looking along -z;
- spherical positions use the polar angle from +y (0 = overhead, 90 = horizon, 180 = below) and the
  azimuth around +y measured from +z towards +x, so azimuth 0 is in front of the object:
  p = r (sin(polar) sin(azimuth), cos(polar), sin(polar) cos(azimuth)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, Sequence

import torch
from torch import Tensor

from .rays import RayBundle


# ---------------------------------------------------------------------------------------------
# A batch of cameras
# ---------------------------------------------------------------------------------------------


@dataclass
class Cameras:
    """N pinhole cameras sharing one image size. Intrinsics are in pixels, one value per camera."""

    c2w: Tensor  # [N, 4, 4]
    fx: Tensor  # [N]
    fy: Tensor  # [N]
    cx: Tensor  # [N]
    cy: Tensor  # [N]
    width: int
    height: int

    @classmethod
    def from_fovy(cls, c2w: Tensor, fovy_deg: Tensor | float, width: int, height: int) -> "Cameras":
        """Cameras with a vertical field of view, square pixels and the principal point at the centre."""
        n = c2w.shape[0]
        fovy = torch.as_tensor(fovy_deg, dtype=c2w.dtype, device=c2w.device).expand(n)
        focal = 0.5 * height / torch.tan(torch.deg2rad(fovy) / 2)
        return cls(
            c2w=c2w,
            fx=focal.clone(),
            fy=focal.clone(),
            cx=torch.full((n,), width / 2, dtype=c2w.dtype, device=c2w.device),
            cy=torch.full((n,), height / 2, dtype=c2w.dtype, device=c2w.device),
            width=width,
            height=height,
        )

    @classmethod
    def cat(cls, cameras: Sequence["Cameras"]) -> "Cameras":
        """One batch of several batches of cameras of the same image size."""
        sizes = {(c.width, c.height) for c in cameras}
        if len(sizes) != 1:
            raise ValueError(f"cameras of different image sizes cannot share a batch: {sorted(sizes)}")
        return cls(*(torch.cat([getattr(c, key) for c in cameras]) for key in ("c2w", "fx", "fy", "cx", "cy")),
                   width=cameras[0].width, height=cameras[0].height)

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index) -> "Cameras":
        def pick(t: Tensor) -> Tensor:
            out = t[index]
            return out.unsqueeze(0) if out.dim() == t.dim() - 1 else out

        return replace(self, c2w=pick(self.c2w), fx=pick(self.fx), fy=pick(self.fy), cx=pick(self.cx), cy=pick(self.cy))

    def to(self, device: torch.device | str) -> "Cameras":
        return replace(
            self, c2w=self.c2w.to(device), fx=self.fx.to(device), fy=self.fy.to(device),
            cx=self.cx.to(device), cy=self.cy.to(device),
        )

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras rendering at another resolution (intrinsics scaled)."""
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy, width=width, height=height)

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def origins(self) -> Tensor:
        """Camera centres in world space, [N, 3]."""
        return self.c2w[:, :3, 3]

    @property
    def fovy_deg(self) -> Tensor:
        return torch.rad2deg(2 * torch.atan(0.5 * self.height / self.fy))

    def frame_area_at(self, point: Tensor | None = None) -> Tensor:
        """[N] the area (world units squared) the image covers on the plane through `point` (the origin by
        default) facing each camera: (width / fx) (height / fy) depth^2, depth along the optical axis."""
        point = self.c2w.new_zeros(3) if point is None else point
        forward = -self.c2w[:, :3, 2]  # OpenGL convention: the camera looks down its -z axis
        depth = ((point - self.origins) * forward).sum(dim=-1)
        return (self.width / self.fx) * (self.height / self.fy) * depth.square()

    def generate_rays(self, pixel_jitter: bool = False, generator: torch.Generator | None = None) -> RayBundle:
        """One ray per pixel: origins and unit directions, both [N, H, W, 3].

        Rays go through pixel centres, or a uniformly jittered point inside each pixel.
        """
        n, h, w = len(self), self.height, self.width
        dtype, device = self.c2w.dtype, self.c2w.device
        v, u = torch.meshgrid(
            torch.arange(h, dtype=dtype, device=device), torch.arange(w, dtype=dtype, device=device), indexing="ij"
        )
        u = u.expand(n, h, w)
        v = v.expand(n, h, w)
        if pixel_jitter:
            u = u + torch.rand(n, h, w, generator=generator, dtype=dtype, device=device)
            v = v + torch.rand(n, h, w, generator=generator, dtype=dtype, device=device)
        else:
            u, v = u + 0.5, v + 0.5
        # Camera-space directions: image rows grow downwards while camera y points up.
        x = (u - self.cx.view(n, 1, 1)) / self.fx.view(n, 1, 1)
        y = -(v - self.cy.view(n, 1, 1)) / self.fy.view(n, 1, 1)
        dirs_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)
        rotation = self.c2w[:, None, None, :3, :3]
        dirs = (rotation @ dirs_cam.unsqueeze(-1)).squeeze(-1)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origins = self.origins[:, None, None, :].expand(n, h, w, 3)
        return RayBundle(origins=origins, directions=dirs)


# ---------------------------------------------------------------------------------------------
# Poses
# ---------------------------------------------------------------------------------------------


def spherical_to_cartesian(radius: Tensor, polar_deg: Tensor, azimuth_deg: Tensor) -> Tensor:
    polar, azimuth = torch.deg2rad(polar_deg), torch.deg2rad(azimuth_deg)
    return torch.stack(
        [
            radius * torch.sin(polar) * torch.sin(azimuth),
            radius * torch.cos(polar),
            radius * torch.sin(polar) * torch.cos(azimuth),
        ],
        dim=-1,
    )


def cartesian_to_spherical(points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of `spherical_to_cartesian`: (radius, polar in [0, 180], azimuth in [0, 360))."""
    radius = points.norm(dim=-1)
    polar = torch.rad2deg(torch.acos((points[..., 1] / radius.clamp_min(1e-12)).clamp(-1, 1)))
    azimuth = torch.rad2deg(torch.atan2(points[..., 0], points[..., 2])) % 360.0
    return radius, polar, azimuth


def look_at(eye: Tensor, target: Tensor | None = None, up: Sequence[float] = (0.0, 1.0, 0.0)) -> Tensor:
    """Camera-to-world matrices [N, 4, 4] for cameras at `eye` [N, 3] looking at `target` (origin by default).

    A camera looking straight along `up` has no defined roll; it then takes -z as its up vector, so
    an overhead view shows the object's front at the bottom of the image.
    """
    eye = eye.reshape(-1, 3)
    target = torch.zeros_like(eye) if target is None else target.expand_as(eye)
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True)
    up_t = torch.tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    right = torch.linalg.cross(forward, up_t, dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    fallback_up = torch.tensor((0.0, 0.0, -1.0), dtype=eye.dtype, device=eye.device).expand_as(eye)
    right = torch.where(degenerate, torch.linalg.cross(forward, fallback_up, dim=-1), right)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.eye(4, dtype=eye.dtype, device=eye.device).repeat(eye.shape[0], 1, 1)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = true_up
    c2w[:, :3, 2] = -forward
    c2w[:, :3, 3] = eye
    return c2w


# ---------------------------------------------------------------------------------------------
# View labels for view-dependent prompts
# ---------------------------------------------------------------------------------------------

ViewLabel = Literal["front", "side", "back", "overhead", "bottom"]
VIEW_LABELS: tuple[ViewLabel, ...] = ("front", "side", "back", "overhead", "bottom")


@dataclass(frozen=True)
class ViewLabelConfig:
    """Angle thresholds of the view labels. Defaults are the thesis's (section 6.1.7).

    Front covers azimuths [front_start, front_start + front_span), back the same range turned by 180
    degrees, side the rest; overhead (polar < overhead_deg) and bottom (polar >= bottom_deg) override.
    stable-dreamfusion's later versions centre the front range instead: front_start = -front_span / 2.
    """

    overhead_deg: float = 30.0
    bottom_deg: float = 150.0
    front_start_deg: float = 0.0
    front_span_deg: float = 60.0


def view_label_ids(polar_deg: Tensor, azimuth_deg: Tensor, config: ViewLabelConfig = ViewLabelConfig()) -> Tensor:
    """Index into `VIEW_LABELS` for each camera, as a long tensor."""
    relative = (azimuth_deg - config.front_start_deg) % 360.0
    ids = torch.full_like(polar_deg, VIEW_LABELS.index("side"), dtype=torch.long)
    ids[relative < config.front_span_deg] = VIEW_LABELS.index("front")
    back = (relative >= 180.0) & (relative < 180.0 + config.front_span_deg)
    ids[back] = VIEW_LABELS.index("back")
    ids[polar_deg < config.overhead_deg] = VIEW_LABELS.index("overhead")
    ids[polar_deg >= config.bottom_deg] = VIEW_LABELS.index("bottom")
    return ids


def view_labels(polar_deg: Tensor, azimuth_deg: Tensor, config: ViewLabelConfig = ViewLabelConfig()) -> list[ViewLabel]:
    return [VIEW_LABELS[i] for i in view_label_ids(polar_deg, azimuth_deg, config).tolist()]


# Thesis 6.1.7 / stable-dreamfusion: a view-dependent prompt ends with ", <label> view".
VIEW_SUFFIXES: dict[str, str] = {label: f", {label} view" for label in VIEW_LABELS}


def view_prompt(prompt: str, label: str) -> str:
    return prompt + VIEW_SUFFIXES[label]


# ---------------------------------------------------------------------------------------------
# Camera distributions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraSamplerConfig:
    """Random training cameras looking at the origin. Defaults follow the thesis (section 6.1.5).

    radius_range: thesis 6.1.5 ([1.0, 1.5]).
    fovy_range_deg: stable-dreamfusion's value in the era the thesis forked it ([40, 70]; the thesis
        does not restate it).
    uniform_cube_rate: thesis 6.1.5, half of the samples draw x, z in [-1, 1] and y in [0, 1] and
        normalise the vector; the other half draw angles.
    polar_range_deg: thesis 6.1.5 ([0, 120]: 90 degrees above the horizon to 30 below).
    azimuth_range_deg: thesis 6.1.5 ([0, 360)).
    jitter_std: optional Gaussian jitter of the camera centre and target (0 disables it).
    """

    radius_range: tuple[float, float] = (1.0, 1.5)
    fovy_range_deg: tuple[float, float] = (40.0, 70.0)
    uniform_cube_rate: float = 0.5
    polar_range_deg: tuple[float, float] = (0.0, 120.0)
    azimuth_range_deg: tuple[float, float] = (0.0, 360.0)
    jitter_std: float = 0.0


@dataclass
class CameraSample:
    """Sampled cameras with the spherical coordinates they were drawn at."""

    cameras: Cameras
    radius: Tensor  # [N]
    polar_deg: Tensor  # [N]
    azimuth_deg: Tensor  # [N]

    def view_label_ids(self, config: ViewLabelConfig = ViewLabelConfig()) -> Tensor:
        return view_label_ids(self.polar_deg, self.azimuth_deg, config)


def _uniform(n: int, low: float, high: float, generator, device) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def sample_training_cameras(
    n: int,
    width: int,
    height: int,
    config: CameraSamplerConfig = CameraSamplerConfig(),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> CameraSample:
    """Draw `n` cameras from the thesis's training distribution."""
    radius = _uniform(n, *config.radius_range, generator, device)

    # Half of the samples: a direction from the upper half of the cube [-1, 1]^3, normalised.
    cube = torch.rand(n, 3, generator=generator, device=device) * 2 - 1
    cube[:, 1] = (cube[:, 1] + 1) / 2
    cube = cube / cube.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    _, polar_cube, azimuth_cube = cartesian_to_spherical(cube)

    # The other half: polar and azimuth angles drawn uniformly.
    polar_angle = _uniform(n, *config.polar_range_deg, generator, device)
    azimuth_angle = _uniform(n, *config.azimuth_range_deg, generator, device) % 360.0

    use_cube = torch.rand(n, generator=generator, device=device) < config.uniform_cube_rate
    polar = torch.where(use_cube, polar_cube, polar_angle)
    azimuth = torch.where(use_cube, azimuth_cube, azimuth_angle)

    eye = spherical_to_cartesian(radius, polar, azimuth)
    target = torch.zeros_like(eye)
    if config.jitter_std > 0:
        eye = eye + config.jitter_std * torch.randn(eye.shape, generator=generator, device=device)
        target = target + config.jitter_std * torch.randn(eye.shape, generator=generator, device=device)
    fovy = _uniform(n, *config.fovy_range_deg, generator, device)
    cameras = Cameras.from_fovy(look_at(eye, target), fovy, width, height)
    return CameraSample(cameras=cameras, radius=radius, polar_deg=polar, azimuth_deg=azimuth)


def orbit_cameras(
    n: int,
    width: int,
    height: int,
    radius: float = 1.3,
    polar_deg: float = 70.0,
    fovy_deg: float = 50.0,
    start_azimuth_deg: float = 0.0,
    device: torch.device | str = "cpu",
) -> CameraSample:
    """`n` cameras evenly spaced on a circle around the object: a turntable, starting at the front."""
    azimuth = (start_azimuth_deg + torch.arange(n, dtype=torch.float32, device=device) * 360.0 / n) % 360.0
    polar = torch.full((n,), polar_deg, device=device)
    radius_t = torch.full((n,), radius, device=device)
    eye = spherical_to_cartesian(radius_t, polar, azimuth)
    cameras = Cameras.from_fovy(look_at(eye), fovy_deg, width, height)
    return CameraSample(cameras=cameras, radius=radius_t, polar_deg=polar, azimuth_deg=azimuth)


# Named evaluation views: (polar, azimuth) in degrees. "left"/"right" are the viewer's, standing in front.
NAMED_VIEWS: dict[str, tuple[float, float]] = {
    "front": (90.0, 0.0),
    "right": (90.0, 90.0),
    "back": (90.0, 180.0),
    "left": (90.0, 270.0),
    "top": (0.0, 0.0),
    "bottom": (180.0, 0.0),
    "front_elevated": (60.0, 30.0),
}


def named_view_cameras(
    names: Sequence[str], width: int, height: int, radius: float = 1.3, fovy_deg: float = 50.0,
    device: torch.device | str = "cpu",
) -> CameraSample:
    unknown = [name for name in names if name not in NAMED_VIEWS]
    if unknown:
        raise ValueError(f"unknown view names {unknown}; known: {sorted(NAMED_VIEWS)}")
    polar = torch.tensor([NAMED_VIEWS[name][0] for name in names], device=device)
    azimuth = torch.tensor([NAMED_VIEWS[name][1] for name in names], device=device)
    radius_t = torch.full((len(names),), radius, device=device)
    eye = spherical_to_cartesian(radius_t, polar, azimuth)
    cameras = Cameras.from_fovy(look_at(eye), fovy_deg, width, height)
    return CameraSample(cameras=cameras, radius=radius_t, polar_deg=polar, azimuth_deg=azimuth)


def fovy_to_focal(fovy_deg: float, height: int) -> float:
    return 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
