"""Mesh, texture, file-format and video export, checked against analytic fields."""

from __future__ import annotations

import math
import sys

import imageio
import numpy as np
import pygltflib
import pytest
import torch
import trimesh
from PIL import Image

from dreamtext.errors import DreamtextError
from dreamtext.export.formats import save_mesh, srgb_to_linear
from dreamtext.export.mesh import MeshExportConfig, extract_mesh
from dreamtext.export.field_query import MIN_SHOWN_OPACITY
from dreamtext.export.outputs import ExportConfig, display_render_fn, export_all
from dreamtext.export.texture import TextureBakeConfig, bake_albedo, parametrize, rasterize_uv, texture_mesh
from dreamtext.export.video import save_named_views, save_turntable
from dreamtext.scene.cameras import NAMED_VIEWS, Cameras, orbit_cameras
from dreamtext.scene.protocols import Field, FieldOutputs
from dreamtext.scene.renderer import RendererConfig, VolumeRenderer
from dreamtext.utils.workspace import Workspace

THRESHOLD = MeshExportConfig().density_threshold


def analytic_albedo(points: np.ndarray | torch.Tensor):
    """A colour gradient across the scene, never saturating inside [-1, 1]^3."""
    offset, scale = 0.5, np.array([0.4, -0.3, 0.35], dtype=np.float32)
    if isinstance(points, torch.Tensor):
        return offset + points * torch.as_tensor(scale, dtype=points.dtype)
    return offset + np.asarray(points, dtype=np.float32) * scale


class SpheresField:
    """Union of soft spheres: density `peak` inside, falling through a sigmoid of the SDF."""

    def __init__(self, spheres: list[tuple[tuple[float, float, float], float]], softness: float = 0.01, peak: float = 50.0, bound: float = 1.0):
        self.centers = torch.tensor([c for c, _ in spheres], dtype=torch.float32)
        self.radii = torch.tensor([r for _, r in spheres], dtype=torch.float32)
        self.softness, self.peak, self.bound = softness, peak, bound

    def iso_radius(self, radius: float, threshold: float = THRESHOLD) -> float:
        """Where the density crosses `threshold`: peak * sigmoid(-(d - r) / s) = threshold."""
        return radius + self.softness * math.log(self.peak / threshold - 1.0)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        sdf = ((points[..., None, :] - self.centers).norm(dim=-1) - self.radii).amin(dim=-1)
        return self.peak * torch.sigmoid(-sdf / self.softness)

    def __call__(self, points: torch.Tensor, with_normals: bool = False) -> FieldOutputs:
        return FieldOutputs(density=self.density(points), albedo=analytic_albedo(points).clamp(0, 1))


class ConstantField:
    bound = 1.0

    def __init__(self, value: float):
        self.value = value

    def density(self, points):
        return torch.full(points.shape[:-1], self.value)

    def __call__(self, points, with_normals=False):
        return FieldOutputs(density=self.density(points), albedo=torch.full(points.shape, 0.5))


RADIUS = 0.5


@pytest.fixture(scope="module")
def sphere_field() -> SpheresField:
    return SpheresField([((0.0, 0.0, 0.0), RADIUS)])


@pytest.fixture(scope="module")
def sphere_mesh(sphere_field) -> trimesh.Trimesh:
    return extract_mesh(sphere_field, MeshExportConfig(resolution=64))


@pytest.fixture(scope="module")
def textured_mesh(sphere_field) -> trimesh.Trimesh:
    coarse = extract_mesh(sphere_field, MeshExportConfig(resolution=32))
    return texture_mesh(coarse, sphere_field, TextureBakeConfig(size=256))


def bilinear_footprint(uv: np.ndarray, h: int, w: int):
    """The 2x2 texels a GPU's bilinear sample at UVs (v up) reads, texel centres at half-integers,
    and the fractional weights: (rows y0, y1, columns x0, x1, fy, fx)."""
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1.0 - uv[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    return y0, y1, x0, x1, (y - y0)[:, None], (x - x0)[:, None]


def sample_bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    y0, y1, x0, x1, fy, fx = bilinear_footprint(uv, *image.shape[:2])
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def bilinear_taps(uv: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns [N, 4] of the texels a bilinear sample at `uv` reads."""
    y0, y1, x0, x1, _, _ = bilinear_footprint(uv, size, size)
    return np.stack([y0, y0, y1, y1], 1), np.stack([x0, x1, x0, x1], 1)


def random_surface_points(mesh: trimesh.Trimesh, uvs: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random points inside random triangles: (3D positions, UVs), interpolated the same way."""
    rng = np.random.default_rng(seed)
    faces = mesh.faces[rng.integers(0, len(mesh.faces), n)]
    weights = rng.dirichlet(np.ones(3), n)
    points = (weights[:, :, None] * mesh.vertices[faces]).sum(1)
    return points, (weights[:, :, None] * uvs[faces]).sum(1)


# ---------------------------------------------------------------------------------------------
# Marching cubes
# ---------------------------------------------------------------------------------------------


def test_field_doubles_satisfy_the_protocol(sphere_field):
    assert isinstance(sphere_field, Field) and isinstance(ConstantField(0.0), Field)


def test_sphere_mesh_is_closed_outward_and_has_the_analytic_volume(sphere_field, sphere_mesh):
    r_iso = sphere_field.iso_radius(RADIUS)
    expected = 4.0 / 3.0 * math.pi * r_iso**3
    assert sphere_mesh.is_watertight and sphere_mesh.is_winding_consistent
    assert sphere_mesh.volume > 0
    assert abs(sphere_mesh.volume - expected) / expected < 0.03
    # Outward faces: every face normal points away from the centre, not only on average.
    outward = (sphere_mesh.face_normals * sphere_mesh.triangles_center).sum(axis=1)
    assert (outward > 0).all()
    assert np.abs(np.linalg.norm(sphere_mesh.vertices, axis=1) - r_iso).max() < 0.01


def test_vertex_colours_are_the_colour_the_renders_show_there(sphere_mesh):
    colors = sphere_mesh.visual.vertex_colors
    assert colors.dtype == np.uint8 and colors.shape == (len(sphere_mesh.vertices), 4)
    assert (colors[:, 3] == 255).all()
    # The volume renderer's own albedo composite of a ray looking at each vertex along its inward normal
    normals = torch.as_tensor(sphere_mesh.vertex_normals.copy(), dtype=torch.float32)
    vertices = torch.as_tensor(sphere_mesh.vertices, dtype=torch.float32)
    renderer = VolumeRenderer(RendererConfig(num_samples=1024, use_occupancy_grid=False, stratified=False))
    out = renderer.render_rays(SpheresField([((0.0, 0.0, 0.0), RADIUS)]), vertices + 0.5 * normals, -normals,
                               background=torch.zeros(3))
    rendered = (out.rgb / out.opacity).numpy()
    error = np.abs(colors[:, :3] / 255.0 - rendered)
    assert error.mean() < 0.01 and error.max() < 0.03
    # Near the vertex's own albedo where the albedo varies slowly (this field's is linear in position)
    assert np.abs(colors[:, :3] / 255.0 - analytic_albedo(sphere_mesh.vertices)).mean() < 0.02


def test_vertex_colours_show_the_surface_a_soft_outer_skin_hides():
    """Issue 40: a learned surface is soft; the mesh is drawn where the density crosses its threshold, on the
    outer skin, whose albedo the renders barely show. A ball red inside a thin blue skin looks red, and so
    must its mesh."""

    class SkinnedBall(SpheresField):
        def __call__(self, points, with_normals=False):
            red, blue = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9])
            skin = (points.norm(dim=-1, keepdim=True) > 0.41).float()
            return FieldOutputs(density=self.density(points), albedo=skin * blue + (1 - skin) * red)

    field = SkinnedBall([((0.0, 0.0, 0.0), 0.4)], softness=0.02, peak=40.0)
    mesh = extract_mesh(field, MeshExportConfig(resolution=48))
    assert np.linalg.norm(mesh.vertices, axis=1).min() > 0.41  # every vertex lies in the blue skin
    camera = orbit_cameras(1, 33, 33, radius=1.5, polar_deg=90.0).cameras
    view = VolumeRenderer(RendererConfig(num_samples=512, use_occupancy_grid=False)).render(field, camera, background=torch.zeros(3))
    centre = (view.rgb[0, 16, 16] / view.opacity[0, 16, 16]).numpy()  # what the render shows: mostly red
    assert centre[0] > 0.5 > centre[2]
    mean = mesh.visual.vertex_colors[:, :3].mean(axis=0) / 255.0
    assert np.abs(mean - centre).max() < 0.05, (mean, centre)


def test_object_touching_the_bound_still_gives_a_closed_outward_mesh():
    field = SpheresField([((0.0, 0.0, 0.8), 0.5)])
    mesh = extract_mesh(field, MeshExportConfig(resolution=40))
    assert mesh.is_watertight and mesh.volume > 0
    # Closed by a cap less than one grid step beyond the bound.
    spacing = 2.0 / (40 - 1)
    assert 1.0 < mesh.vertices[:, 2].max() < 1.0 + spacing


def test_small_components_and_largest_component():
    field = SpheresField([((-0.4, 0.0, 0.0), 0.4), ((0.6, 0.0, 0.0), 0.2), ((0.0, 0.75, 0.0), 0.04)])
    everything = extract_mesh(field, MeshExportConfig(resolution=64, min_component_fraction=0.0))
    assert len(everything.split(only_watertight=False)) == 3
    no_speck = extract_mesh(field, MeshExportConfig(resolution=64, min_component_fraction=0.05))
    assert len(no_speck.split(only_watertight=False)) == 2  # the speck has ~2% of the largest's faces
    largest = extract_mesh(field, MeshExportConfig(resolution=64, keep_largest_component=True))
    assert len(largest.split(only_watertight=False)) == 1
    assert largest.vertices[:, 0].max() < 0.1  # the big sphere on the left


class ShellField(SpheresField):
    """A hollow ball: density `peak` between radii `inner` and `outer`, a sealed void inside."""

    def __init__(self, inner: float, outer: float):
        super().__init__([((0.0, 0.0, 0.0), outer)])
        self.inner, self.outer = inner, outer

    def density(self, points: torch.Tensor) -> torch.Tensor:
        radius = points.norm(dim=-1)
        sdf = torch.maximum(radius - self.outer, self.inner - radius)
        return self.peak * torch.sigmoid(-sdf / self.softness)


def test_sealed_cavities_are_filled_and_kept_when_asked():
    field = ShellField(0.25, 0.5)
    outer, inner = field.iso_radius(0.5), 0.25 - (field.iso_radius(0.5) - 0.5)
    solid = extract_mesh(field, MeshExportConfig(resolution=64))
    assert len(solid.split(only_watertight=False)) == 1 and solid.is_watertight
    ball = 4.0 / 3.0 * math.pi * outer**3
    assert abs(solid.volume - ball) / ball < 0.03
    hollow = extract_mesh(field, MeshExportConfig(resolution=64, fill_cavities=False))
    assert len(hollow.split(only_watertight=False)) == 2  # the outer wall and the void's, facing inwards
    shell = ball - 4.0 / 3.0 * math.pi * inner**3
    assert abs(hollow.volume - shell) / shell < 0.05
    two = SpheresField([((-0.4, 0.0, 0.0), 0.3), ((0.4, 0.0, 0.0), 0.3)])  # separate solids stay
    assert len(extract_mesh(two, MeshExportConfig(resolution=48)).split(only_watertight=False)) == 2


def test_decimation_meets_the_face_budget_and_stays_closed(sphere_field, sphere_mesh):
    mesh = extract_mesh(sphere_field, MeshExportConfig(resolution=64, decimate_target=2000))
    assert len(mesh.faces) <= 2000 < len(sphere_mesh.faces)
    assert mesh.is_watertight and mesh.volume > 0
    # A coarse grid under-resolves the sharp density step; linear interpolation then inflates it a little.
    assert mesh.volume == pytest.approx(sphere_mesh.volume, rel=0.08)


def test_chunking_does_not_change_the_mesh(sphere_field):
    small = extract_mesh(sphere_field, MeshExportConfig(resolution=24, chunk_size=1000))
    large = extract_mesh(sphere_field, MeshExportConfig(resolution=24, chunk_size=10**6))
    np.testing.assert_allclose(small.vertices, large.vertices, atol=1e-6)
    np.testing.assert_array_equal(small.faces, large.faces)


class ModuleSphereField(torch.nn.Module):
    """A sphere field as an nn.Module holding only a buffer: its device decides where queries run."""

    bound = 1.0

    def __init__(self):
        super().__init__()
        self.register_buffer("radius", torch.tensor(RADIUS))

    def density(self, points):
        return 50.0 * torch.sigmoid(-(points.norm(dim=-1) - self.radius) / 0.01)

    def forward(self, points, with_normals=False):
        return FieldOutputs(density=self.density(points), albedo=analytic_albedo(points).clamp(0, 1))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_module_fields_are_queried_on_their_device(sphere_field, device):
    mesh = extract_mesh(ModuleSphereField().to(device), MeshExportConfig(resolution=24))
    reference = extract_mesh(sphere_field, MeshExportConfig(resolution=24))
    np.testing.assert_allclose(mesh.vertices, reference.vertices, atol=1e-5)
    np.testing.assert_allclose(mesh.visual.vertex_colors, reference.visual.vertex_colors, atol=1)


def test_empty_or_saturated_fields_raise_a_helpful_error():
    # Issue 40: the advice names flags that exist (`export --density-threshold`, a run's --export.mesh.density-threshold)
    with pytest.raises(DreamtextError, match=r"export again below .*export WORKSPACE --density-threshold X; a new run: "
                                             r"--export.mesh.density-threshold X"):
        extract_mesh(ConstantField(0.0), MeshExportConfig(resolution=16))
    with pytest.raises(DreamtextError, match="export again above it .*--density-threshold X"):
        extract_mesh(ConstantField(100.0), MeshExportConfig(resolution=16))
    with pytest.raises(DreamtextError):
        MeshExportConfig(density_threshold=0.0)


# ---------------------------------------------------------------------------------------------
# UV texture
# ---------------------------------------------------------------------------------------------


def test_rasterizer_covers_a_square_exactly_once():
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    raster = rasterize_uv(uvs, faces, 16, texel_budget=64)  # a tiny budget forces several batches
    # Every texel once; centres exactly on the shared diagonal belong to both triangles.
    assert len(torch.unique(raster.texel)) == 16 * 16 and len(raster.texel) == 16 * 16 + 16
    assert torch.allclose(raster.barycentric.sum(dim=1), torch.ones(len(raster.texel), dtype=torch.float64))
    # The barycentrics interpolate each texel centre's own UV (row 0 is the top: v near 1).
    interpolated = (raster.barycentric[:, :, None] * torch.as_tensor(uvs, dtype=torch.float64)[torch.as_tensor(faces)[raster.face]]).sum(1)
    rows, cols = raster.texel // 16, raster.texel % 16
    torch.testing.assert_close(interpolated[:, 0], (cols + 0.5) / 16, check_dtype=False)
    torch.testing.assert_close(interpolated[:, 1], 1 - (rows + 0.5) / 16, check_dtype=False)


def test_baked_texture_reproduces_the_albedo(textured_mesh):
    image = np.asarray(textured_mesh.visual.material.baseColorTexture, dtype=np.float32) / 255.0
    uvs = np.asarray(textured_mesh.visual.uv)
    # At the vertices (chart borders, where seams would show) and at random interior points.
    at_vertices = sample_bilinear(image, uvs)
    assert np.abs(at_vertices - analytic_albedo(textured_mesh.vertices)).mean() < 0.02
    points, point_uvs = random_surface_points(textured_mesh, uvs, 4000)
    assert np.abs(sample_bilinear(image, point_uvs) - analytic_albedo(points)).mean() < 0.01


def test_no_background_texel_within_reach_of_a_sample(sphere_field):
    mesh = extract_mesh(sphere_field, MeshExportConfig(resolution=32))
    config = TextureBakeConfig(size=256)
    vertex_map, faces, uvs = parametrize(mesh.vertices, mesh.faces, config)
    vertices = mesh.vertices[vertex_map]
    baked = bake_albedo(sphere_field, vertices, faces, uvs, config)
    # Every texel a bilinear sample on the surface reads has been given a colour...
    uv_mesh = trimesh.Trimesh(vertices, faces, process=False)
    _, sample_uvs = random_surface_points(uv_mesh, uvs, 4000, seed=1)
    for sample in (sample_uvs, uvs):
        rows, cols = bilinear_taps(sample, config.size)
        assert baked.filled[rows, cols].all()
    # ...and texels inside the charts hold the exact albedo (up to the chart being a flat triangle).
    assert baked.covered.mean() > 0.3 and (baked.filled & ~baked.covered).any()
    covered_colors = baked.image[baked.covered]
    assert covered_colors.min() > 0.05  # no black (background) texel inside a chart
    assert np.abs(baked.image[~baked.filled]).max() == 0.0


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _accessor_counts(gltf: pygltflib.GLTF2) -> dict[str, int]:
    primitive = gltf.meshes[0].primitives[0]
    counts = {name: gltf.accessors[index].count for name, index in vars(primitive.attributes).items() if isinstance(index, int)}
    counts["indices"] = gltf.accessors[primitive.indices].count
    return counts


def _read_accessor(gltf: pygltflib.GLTF2, index: int, dtype, width: int) -> np.ndarray:
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    count = accessor.count * width
    return np.frombuffer(gltf.binary_blob(), dtype=dtype, count=count, offset=start).reshape(-1, width)


def test_glb_with_vertex_colours_reloads_in_trimesh_and_pygltflib(sphere_mesh, tmp_path):
    [path] = save_mesh(sphere_mesh, tmp_path / "sphere")
    assert path == tmp_path / "sphere.glb"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sphere.glb"]  # no temporary left behind

    reloaded = trimesh.load(path, force="mesh", process=False)
    assert len(reloaded.vertices) == len(sphere_mesh.vertices) and len(reloaded.faces) == len(sphere_mesh.faces)
    assert reloaded.volume > 0 and reloaded.is_watertight
    # y-up, front +z: written as is, no axis swap.
    np.testing.assert_allclose(reloaded.vertices, sphere_mesh.vertices, atol=1e-6)

    gltf = pygltflib.GLTF2().load(str(path))
    counts = _accessor_counts(gltf)
    n = len(sphere_mesh.vertices)
    assert counts["COLOR_0"] == counts["POSITION"] == counts["NORMAL"] == n
    assert counts["indices"] == 3 * len(sphere_mesh.faces)
    color_accessor = gltf.accessors[gltf.meshes[0].primitives[0].attributes.COLOR_0]
    assert color_accessor.componentType == pygltflib.FLOAT and color_accessor.type == "VEC3"
    # The colours themselves, decoded from the binary buffer (trimesh keeps COLOR_0 of a primitive that has
    # a material only as a vertex attribute, so it cannot check them): glTF's vertex colours are linear,
    # the sRGB-to-linear conversion of the mesh's sRGB bytes, which come back within rounding.
    attributes = gltf.meshes[0].primitives[0].attributes
    positions = _read_accessor(gltf, attributes.POSITION, np.float32, 3)
    colors = _read_accessor(gltf, attributes.COLOR_0, np.float32, 3)
    srgb = sphere_mesh.visual.vertex_colors[:, :3] / 255.0
    np.testing.assert_allclose(colors, srgb_to_linear(srgb), atol=1e-6)
    back = np.where(colors <= 0.0031308, 12.92 * colors, 1.055 * colors ** (1 / 2.4) - 0.055)
    assert np.abs(back * 255 - sphere_mesh.visual.vertex_colors[:, :3]).max() < 0.01
    assert np.abs(srgb - analytic_albedo(positions)).mean() < 0.02
    material = gltf.materials[gltf.meshes[0].primitives[0].material]
    assert material.pbrMetallicRoughness.metallicFactor == 0.0
    assert material.pbrMetallicRoughness.baseColorFactor == [1.0, 1.0, 1.0, 1.0]


def test_textured_glb_embeds_its_texture(textured_mesh, tmp_path):
    [path] = save_mesh(textured_mesh, tmp_path / "textured.glb")
    gltf = pygltflib.GLTF2().load(str(path))
    counts = _accessor_counts(gltf)
    assert counts["TEXCOORD_0"] == counts["POSITION"] == len(textured_mesh.vertices)
    material = gltf.materials[gltf.meshes[0].primitives[0].material]
    assert material.pbrMetallicRoughness.baseColorTexture is not None
    assert len(gltf.images) == 1 and gltf.images[0].bufferView is not None  # embedded, not a path

    reloaded = trimesh.load(path, force="mesh", process=False)
    colors = reloaded.visual.to_color().vertex_colors[:, :3] / 255.0
    assert np.abs(colors - analytic_albedo(reloaded.vertices)).mean() < 0.02


def test_textured_obj_writes_mtl_and_png_that_reload(textured_mesh, tmp_path):
    written = save_mesh(textured_mesh, tmp_path / "model.obj")
    assert [p.name for p in written] == ["model.obj", "model.mtl", "model_albedo.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mtl", "model.obj", "model_albedo.png"]
    mtl = (tmp_path / "model.mtl").read_text()
    assert "map_Kd model_albedo.png" in mtl and "Kd 1.000000 1.000000 1.000000" in mtl
    assert Image.open(tmp_path / "model_albedo.png").size == (256, 256)

    reloaded = trimesh.load(tmp_path / "model.obj", force="mesh", process=False)
    assert len(reloaded.vertices) == len(textured_mesh.vertices)
    assert isinstance(reloaded.visual, trimesh.visual.TextureVisuals) and reloaded.visual.material.image is not None
    np.testing.assert_allclose(reloaded.visual.uv, textured_mesh.visual.uv, atol=1e-5)
    colors = reloaded.visual.to_color().vertex_colors[:, :3] / 255.0
    assert np.abs(colors - analytic_albedo(reloaded.vertices)).mean() < 0.02
    assert reloaded.volume > 0


@pytest.mark.parametrize("format", ["obj", "ply"])
def test_vertex_coloured_obj_and_ply_reload_with_their_colours(sphere_mesh, tmp_path, format):
    [path] = save_mesh(sphere_mesh, tmp_path / "sphere", format=format)
    assert path.suffix == f".{format}"
    reloaded = trimesh.load(path, force="mesh", process=False)
    assert len(reloaded.vertices) == len(sphere_mesh.vertices) and len(reloaded.faces) == len(sphere_mesh.faces)
    assert reloaded.visual.kind == "vertex"
    np.testing.assert_allclose(reloaded.visual.vertex_colors[:, :3], sphere_mesh.visual.vertex_colors[:, :3], atol=1)
    assert reloaded.volume == pytest.approx(sphere_mesh.volume, rel=1e-4)
    # OBJ stays y-up (Blender's importer turns it); PLY is written Z-up, which is how Blender reads it
    expected = sphere_mesh.vertices if format == "obj" else sphere_mesh.vertices[:, [0, 2, 1]] * [1, -1, 1]
    np.testing.assert_allclose(reloaded.vertices, expected, atol=1e-5)


def test_textured_ply_falls_back_to_vertex_colours(textured_mesh, tmp_path):
    [path] = save_mesh(textured_mesh, tmp_path / "textured.ply")
    reloaded = trimesh.load(path, force="mesh", process=False)
    assert reloaded.visual.kind == "vertex"
    y_up = reloaded.vertices[:, [0, 2, 1]] * [1, 1, -1]  # PLY is written Z-up
    assert np.abs(reloaded.visual.vertex_colors[:, :3] / 255.0 - analytic_albedo(y_up)).mean() < 0.02


def test_obj_companion_names_have_no_spaces(textured_mesh, tmp_path):
    written = save_mesh(textured_mesh, tmp_path / "my model.obj")
    assert [p.name for p in written] == ["my model.obj", "my_model.mtl", "my_model_albedo.png"]
    assert "mtllib my_model.mtl" in written[0].read_text()
    reloaded = trimesh.load(written[0], force="mesh", process=False)
    assert reloaded.visual.material.image.size == (256, 256)


def test_bad_format_or_empty_mesh_is_refused(sphere_mesh, tmp_path):
    with pytest.raises(DreamtextError, match="unknown mesh format"):
        save_mesh(sphere_mesh, tmp_path / "x", format="fbx")  # type: ignore[arg-type]
    with pytest.raises(DreamtextError, match="empty mesh"):
        save_mesh(trimesh.Trimesh(), tmp_path / "x.glb")
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Videos and stills
# ---------------------------------------------------------------------------------------------


class ToyRenderer:
    """Flat colour from the camera position; depth grows left to right; opaque disc in the middle."""

    def __init__(self):
        self.batch_sizes: list[int] = []

    @staticmethod
    def color_of(origins: torch.Tensor) -> torch.Tensor:
        return torch.stack([(origins[:, 0] + 1.3) / 2.6, (origins[:, 2] + 1.3) / 2.6, torch.full_like(origins[:, 0], 0.25)], -1)

    def __call__(self, cameras: Cameras) -> dict[str, torch.Tensor]:
        n, h, w = len(cameras), cameras.height, cameras.width
        self.batch_sizes.append(n)
        rgb = self.color_of(cameras.origins)[:, None, None, :].expand(n, h, w, 3)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        opacity = ((xs**2 + ys**2) < 0.8).float()[None, :, :, None].expand(n, h, w, 1)
        depth = (2.0 + xs)[None, :, :, None].expand(n, h, w, 1)
        return {"rgb": rgb, "normal": torch.full((n, h, w, 3), 0.5), "depth": depth, "opacity": opacity}


def test_turntable_mp4_and_gif_have_every_frame(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="mp4 needs imageio-ffmpeg; export_all falls back to a gif without it")
    renderer = ToyRenderer()
    size, n_frames = 33, 12  # odd on purpose: yuv420p needs even sides
    mp4, gif = save_turntable(renderer, tmp_path / "turntable", n_frames=n_frames, size=size, fps=12, chunk_frames=5)
    assert (mp4.name, gif.name) == ("turntable.mp4", "turntable.gif")
    assert renderer.batch_sizes == [5, 5, 2]

    video = imageio.v2.get_reader(mp4, format="FFMPEG")
    assert video.count_frames() == n_frames
    first = video.get_data(0).astype(np.float32) / 255.0
    video.close()
    assert first.shape == (34, 3 * size + 1, 3)
    # rgb panel: the first camera is in front (azimuth 0, polar 70: x = 0, z = 1.3 sin 70), its colour (H.264 in yuv420p is lossy: a few levels of error).
    front = ToyRenderer.color_of(torch.tensor([[0.0, 0.0, 1.3 * math.sin(math.radians(70))]]))[0].numpy()
    assert np.abs(first[8:24, 8:24].mean(axis=(0, 1)) - front).max() < 0.03
    # depth panel: near (left) bright, far (right) dark, background black.
    depth_panel = first[:size, 2 * size : 3 * size].mean(axis=-1)
    row = depth_panel[size // 2]
    assert row[6] > row[size // 2] > row[size - 7] and depth_panel[1, 1] < 0.05

    frames = imageio.v3.imread(gif, index=None)
    assert frames.shape == (n_frames, 34, 3 * size + 1, 3)
    assert np.abs(frames[0, 8:24, 8:24].mean(axis=(0, 1)) / 255.0 - front).max() < 0.03


class ShadedSphereField(SpheresField):
    """The sphere with its radial normals, as the export's display render asks for normals."""

    def __call__(self, points: torch.Tensor, with_normals: bool = False) -> FieldOutputs:
        outputs = super().__call__(points)
        if with_normals:
            outputs.normals = torch.nn.functional.normalize(points, dim=-1)
        return outputs


class NormalsCountingField(ShadedSphereField):
    """Counts the points its normals are asked for."""

    normal_points = 0

    def __call__(self, points: torch.Tensor, with_normals: bool = False) -> FieldOutputs:
        self.normal_points += points.shape[0] if with_normals else 0
        return super().__call__(points, with_normals)


def test_display_render_queries_normals_only_where_the_object_shows_and_the_picture_is_unchanged():
    field = NormalsCountingField([((0.0, 0.0, 0.0), 0.25)])  # small: most of each frame is background
    renderer = VolumeRenderer(RendererConfig(num_samples=32, use_occupancy_grid=False))
    cameras = orbit_cameras(2, 24, 24).cameras
    out = display_render_fn(field, renderer, torch.ones(3))(cameras)

    # Reference: the normal at every pixel's surface point, background ones included.
    rays = cameras.generate_rays()
    surface = rays.origins + rays.directions * out["depth"]
    every_normal = torch.nn.functional.normalize(surface, dim=-1)
    reference = ((every_normal + 1) / 2) * out["opacity"] + (1 - out["opacity"])
    assert (out["normal"] - reference.clamp(0, 1)).abs().max() < 1 / 510  # under half a uint8 step

    shown = int((out["opacity"] > MIN_SHOWN_OPACITY).sum())
    assert field.normal_points == shown
    assert 0.1 * out["opacity"].numel() < shown < 0.6 * out["opacity"].numel()  # the sphere and its background both show


def test_export_without_ffmpeg_writes_a_gif_turntable_and_one_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # `import imageio_ffmpeg` now raises ImportError
    config = ExportConfig(mesh=MeshExportConfig(resolution=24), video_frames=3, video_size=16, views=("front",), views_size=16)
    renderer = VolumeRenderer(RendererConfig(num_samples=16, use_occupancy_grid=False))
    stats = export_all(ShadedSphereField([((0.0, 0.0, 0.0), RADIUS)]), renderer, Workspace(tmp_path), config, torch.ones(3))
    assert stats["files"] == ["mesh.glb", "turntable.gif", "views/front.png"]
    assert not (tmp_path / "turntable.mp4").exists()
    frames = imageio.v3.imread(tmp_path / "turntable.gif", index=None)
    assert frames.shape == (3, 16, 3 * 16, 3)
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "imageio-ffmpeg is not installed" in warnings[0] and "gif" in warnings[0]


def test_named_views_are_written_as_pngs(tmp_path):
    renderer = ToyRenderer()
    written = save_named_views(renderer, tmp_path / "views", size=16, kinds=("rgb", "depth"))
    assert [p.stem for p in written] == list(NAMED_VIEWS)
    images = {p.stem: np.asarray(Image.open(p)) for p in written}
    assert all(image.shape == (16, 32, 3) for image in images.values())
    # Front looks from +z, right from +x: the toy colours them differently.
    assert images["front"][8, 4, 1] > images["back"][8, 4, 1]
    assert images["right"][8, 4, 0] > images["left"][8, 4, 0]
    with pytest.raises(DreamtextError, match="unknown view"):
        save_named_views(renderer, tmp_path / "bad", names=["sideways"])
