"""What the browser viewer shows: one camera pose and a display mode in, one image out.

No web code lives here, so the pictures are tested without a browser. The field is rendered once
over black, which gives colour premultiplied by opacity, opacity and depth; the shading modes then
light each pixel at its expected surface point (o + depth d) with one normals query per pixel that
shows the object, as `export.outputs.display_render_fn` does for videos. For a hard surface that is
the picture the renderer's per-sample shading gives, at a fraction of the cost, so the viewer stays
interactive on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence, get_args

import numpy as np
import torch
from torch import Tensor

from ..export.field_query import field_device, visible_surface_normals
from ..export.video import depth_to_display
from ..scene.cameras import Cameras, look_at, spherical_to_cartesian
from ..scene.shading import DEFAULT_AMBIENT, shade
from ..utils.images import to_uint8

if TYPE_CHECKING:
    from ..methods.trained import TrainedScene

ViewMode = Literal["albedo", "lambertian", "textureless", "normals", "depth"]
VIEW_MODES: tuple[ViewMode, ...] = get_args(ViewMode)

# ours: below this opacity a pixel shows the background; dividing by it recovers the albedo elsewhere.
_MIN_OPACITY = 1e-4
NORMALS_CHUNK = 2**16  # points per normals query, as display_render_fn


@dataclass(frozen=True)
class ViewPose:
    """One pinhole camera: OpenGL camera-to-world [4, 4] (x right, y up, looking along -z)."""

    c2w: Tensor
    fovy_deg: float
    width: int
    height: int

    @classmethod
    def looking_at_origin(cls, eye: Sequence[float], fovy_deg: float, width: int, height: int) -> "ViewPose":
        return cls(look_at(torch.tensor([eye], dtype=torch.float32))[0], fovy_deg, width, height)

    def cameras(self, device: torch.device | str = "cpu") -> Cameras:
        c2w = self.c2w.to(device=device, dtype=torch.float32)[None]
        return Cameras.from_fovy(c2w, float(self.fovy_deg), self.width, self.height)

    @property
    def origin(self) -> Tensor:
        return self.c2w[:3, 3]


def quaternion_to_matrix(wxyz: Sequence[float]) -> Tensor:
    """Rotation matrix [3, 3] of a (w, x, y, z) quaternion (normalised first)."""
    w, x, y, z = (torch.as_tensor(wxyz, dtype=torch.float64) / torch.linalg.vector_norm(torch.as_tensor(wxyz, dtype=torch.float64))).tolist()
    return torch.tensor([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ], dtype=torch.float32)


# An OpenCV camera (x right, y down, looking along +z) turned into an OpenGL one flips y and z.
_OPENCV_TO_OPENGL = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


def pose_from_viser(wxyz: Sequence[float], position: Sequence[float], fov_rad: float, aspect: float, height: int) -> ViewPose:
    """The pose of a viser browser camera: its `wxyz` and `position` are an OpenCV camera-to-world
    rotation and centre, `fov` the vertical field of view in radians, `aspect` width / height."""
    c2w = torch.eye(4)
    c2w[:3, :3] = quaternion_to_matrix(wxyz) @ _OPENCV_TO_OPENGL
    c2w[:3, 3] = torch.as_tensor(position, dtype=torch.float32)
    width = max(1, int(round(height * aspect)))
    return ViewPose(c2w, float(np.degrees(fov_rad)), width, height)


def light_direction(azimuth_deg: float, elevation_deg: float) -> Tensor:
    """Unit vector towards a light at this azimuth (from +z towards +x) and elevation above the horizon."""
    return spherical_to_cartesian(torch.tensor(1.0), torch.tensor(90.0 - elevation_deg), torch.tensor(azimuth_deg))


@dataclass
class ViewImage:
    image: np.ndarray  # uint8 [H, W, 3], what the viewer shows
    opacity: Tensor  # [H, W, 1]
    depth: Tensor  # [H, W, 1] distance along each (unit) ray to the visible surface; 0 where nothing was hit
    normals: Tensor | None  # [H, W, 3] outward normals at the visible surface (shaded modes only)


def _background_pixels(scene: "TrainedScene", directions: Tensor, background: Sequence[float] | Tensor | None) -> Tensor:
    """Background colour [H, W, 3]: the given colour, or the run's own (a colour or the trained network)."""
    chosen = scene.background if background is None else torch.as_tensor(background, dtype=torch.float32)
    if callable(chosen):
        return chosen(directions.reshape(-1, 3)).reshape(directions.shape).clamp(0, 1)
    return chosen.to(device=directions.device, dtype=directions.dtype).expand(directions.shape)


@torch.no_grad()
def render_view(
    scene: "TrainedScene",
    pose: ViewPose,
    mode: ViewMode = "albedo",
    light_dir: Sequence[float] | Tensor | None = None,
    background: Sequence[float] | Tensor | None = None,
    ambient: float = DEFAULT_AMBIENT,
) -> ViewImage:
    """Render `scene` from `pose` as the viewer shows it.

    albedo: the field's colour. lambertian / textureless: lit by the unit direction `light_dir`
    (towards the light; default: towards the camera, as the renderer's default light), on the
    albedo or on white. normals: (n + 1) / 2. depth: grey, near bright and far dark over black.
    background: an RGB colour in [0, 1]; None keeps the run's (its colour or trained network).
    """
    if mode not in VIEW_MODES:
        raise ValueError(f"unknown view mode {mode!r}; known: {list(VIEW_MODES)}")
    device = field_device(scene.field)
    cameras = pose.cameras(device)
    out = scene.renderer.render(scene.field, cameras, background=torch.zeros(3, device=device))
    premultiplied, opacity, depth = out.rgb[0], out.opacity[0], out.depth[0]
    if mode == "depth":
        image = depth_to_display(depth[None, ..., 0].float().cpu().numpy(), opacity[None, ..., 0].float().cpu().numpy())[0]
        return ViewImage(image=image, opacity=opacity, depth=depth, normals=None)

    rays = cameras.generate_rays()
    origins, directions = rays.origins[0], rays.directions[0]
    normals = None
    colour = premultiplied
    if mode != "albedo":
        surface = (origins + directions * depth).reshape(-1, 3)
        normals = visible_surface_normals(scene.field, surface, opacity, NORMALS_CHUNK).reshape(directions.shape)
        albedo = (premultiplied / opacity.clamp_min(_MIN_OPACITY)).clamp(0, 1)
        towards_light = pose.origin if light_dir is None else torch.as_tensor(light_dir, dtype=torch.float32)
        towards_light = towards_light.to(device) / torch.linalg.vector_norm(towards_light).clamp_min(1e-12)
        shading_mode = "normal" if mode == "normals" else mode
        colour = shade(albedo, normals, towards_light.expand_as(normals), shading_mode, ambient) * opacity
    pixels = colour + (1 - opacity) * _background_pixels(scene, directions, background)
    return ViewImage(image=to_uint8(pixels.clamp(0, 1)), opacity=opacity, depth=depth, normals=normals)
