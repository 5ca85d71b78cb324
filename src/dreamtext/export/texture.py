"""UV texture for an exported mesh: an xatlas parametrisation and the field's albedo baked into it.

UVs follow trimesh's (and OBJ's) convention: u to the right, v upwards, so image row r holds
v = 1 - (r + 0.5) / size. trimesh flips v itself when it writes glTF.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
import xatlas
from PIL import Image
from torch import Tensor

from ..scene.protocols import Field
from .field_query import surface_albedo


@dataclass(frozen=True)
class TextureBakeConfig:
    """How the albedo texture is laid out and baked.

    size: texture side in texels. stable-dreamfusion bakes 2048; ours: 1024 bakes in seconds on CPU
        and matches the detail a 128^3 mesh of a 64-256 px field carries.
    chart_padding_px: empty texels xatlas leaves around each chart (ours: room for the dilation, so
        two charts never bleed into each other under bilinear or first-mip sampling).
    dilation_px: rings of texels grown around each chart from its border colours (ours: covers the
        bilinear footprint of UVs on chart borders and the first two mip levels).
    texel_budget: candidate texels tested per rasterisation batch (ours: ~2^22 keeps it under ~200 MB).
    chunk_size: points per albedo query (ours: as the mesh export).
    """

    size: int = 1024
    chart_padding_px: int = 4
    dilation_px: int = 4
    texel_budget: int = 2**22
    chunk_size: int = 2**18


@dataclass
class BakedTexture:
    """A baked albedo image and which texels hold colour."""

    image: np.ndarray  # [size, size, 3] float32 in [0, 1]; texels outside `filled` are 0
    covered: np.ndarray  # [size, size] bool: texel centre inside a triangle (exact albedo)
    filled: np.ndarray  # [size, size] bool: covered or reached by the dilation


@dataclass
class UVRaster:
    """Texels whose centres fall inside a triangle of a UV layout."""

    texel: Tensor  # [M] long, row * size + column
    face: Tensor  # [M] long, the triangle holding the texel centre
    barycentric: Tensor  # [M, 3] float64, weights of the triangle's three corners


def parametrize(vertices: np.ndarray, faces: np.ndarray, config: TextureBakeConfig = TextureBakeConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas charts packed into a `config.size` atlas: (vertex map into `vertices`, new faces, uvs)."""
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = config.size
    pack.padding = config.chart_padding_px
    pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    vertex_map, new_faces, uvs = atlas[0]
    return vertex_map.astype(np.int64), new_faces.astype(np.int64), uvs.astype(np.float32)


def uv_to_pixels(uvs: np.ndarray | Tensor, size: int) -> Tensor:
    """UVs (v up) to continuous pixel coordinates (x right, y down); texel (r, c) has centre (c + .5, r + .5)."""
    uvs = torch.as_tensor(uvs, dtype=torch.float64)
    return torch.stack([uvs[:, 0] * size, (1.0 - uvs[:, 1]) * size], dim=-1)


def _next_power_of_two(values: Tensor) -> Tensor:
    return torch.pow(2, torch.ceil(torch.log2(values.double().clamp_min(1)))).long()


def rasterize_uv(uvs: np.ndarray, faces: np.ndarray, size: int, texel_budget: int = 2**22) -> UVRaster:
    """Every texel centre inside a UV triangle, with its barycentric coordinates.

    Each triangle tests the texels of its bounding box. Triangles are grouped by the power-of-two
    size of their box so one batch is a dense [triangles, box_h, box_w] tensor with little waste,
    and batches hold at most `texel_budget` candidates.
    """
    corners = uv_to_pixels(uvs, size)[torch.as_tensor(faces)]  # [F, 3, 2]
    lo = torch.ceil(corners.amin(dim=1) - 0.5).long().clamp(0, size - 1)  # first texel whose centre may be inside
    hi = torch.floor(corners.amax(dim=1) - 0.5).long().clamp(0, size - 1)
    extent = hi - lo + 1  # [F, 2] as (columns, rows)
    edge_a, edge_b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    twice_area = edge_a[:, 0] * edge_b[:, 1] - edge_a[:, 1] * edge_b[:, 0]
    # Triangles covering no texel centre, or flat in UV space, are left to the dilation.
    usable = (extent > 0).all(dim=1) & (twice_area.abs() > 1e-12)
    box = _next_power_of_two(extent)
    box_key = box[:, 0] * (2 * size) + box[:, 1]

    texels, face_ids, weights = [], [], []
    for key in torch.unique(box_key[usable]).tolist():
        box_w, box_h = key // (2 * size), key % (2 * size)
        group = torch.nonzero(usable & (box_key == key)).squeeze(1)
        for ids in torch.split(group, max(1, texel_budget // (box_w * box_h))):
            col = lo[ids, 0, None] + torch.arange(box_w)  # [B, box_w]
            row = lo[ids, 1, None] + torch.arange(box_h)  # [B, box_h]
            # Texel centres relative to the first corner, one axis at a time: the barycentric
            # weights are differences of a per-column and a per-row term, so only the last
            # operations broadcast to [B, box_h, box_w].
            px = col + 0.5 - corners[ids, 0, 0, None]
            py = row + 0.5 - corners[ids, 0, 1, None]
            a, b, area = edge_a[ids], edge_b[ids], twice_area[ids]
            w1 = (px * (b[:, 1] / area)[:, None])[:, None, :] - (py * (b[:, 0] / area)[:, None])[:, :, None]
            w2 = (py * (a[:, 0] / area)[:, None])[:, :, None] - (px * (a[:, 1] / area)[:, None])[:, None, :]
            in_box = (col <= hi[ids, 0, None])[:, None, :] & (row <= hi[ids, 1, None])[:, :, None]
            eps = 1e-9
            inside = in_box & (w1 >= -eps) & (w2 >= -eps) & (w1 + w2 <= 1.0 + eps)
            which, r, c = torch.nonzero(inside, as_tuple=True)
            hit_w1, hit_w2 = w1[which, r, c], w2[which, r, c]
            texels.append(row[which, r] * size + col[which, c])
            face_ids.append(ids[which])
            weights.append(torch.stack([1.0 - hit_w1 - hit_w2, hit_w1, hit_w2], dim=-1))
    if not texels:
        return UVRaster(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, 3, dtype=torch.float64))
    return UVRaster(torch.cat(texels), torch.cat(face_ids), torch.cat(weights))


def dilate(image: Tensor, filled: Tensor, rings: int) -> tuple[Tensor, Tensor]:
    """Grow the filled region of an image [H, W, C] by `rings` texels.

    Each new texel takes the mean of its filled 8-neighbours, so chart borders extend outwards with
    their own colours instead of the background's.
    """
    color = (image * filled[..., None]).permute(2, 0, 1)[None]  # [1, C, H, W]
    weight = filled[None, None].to(image.dtype)
    for _ in range(rings):
        # Means over 3x3 windows; their ratio is the mean colour of the filled neighbours.
        color_mean = F.avg_pool2d(color, 3, stride=1, padding=1)
        weight_mean = F.avg_pool2d(weight, 3, stride=1, padding=1)
        grow = (weight_mean > 0) & (weight == 0)
        color = torch.where(grow, color_mean / weight_mean.clamp_min(1e-12), color)
        weight = torch.where(grow, torch.ones_like(weight), weight)
    return color[0].permute(1, 2, 0), weight[0, 0] > 0


def bake_albedo(field: Field, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, config: TextureBakeConfig = TextureBakeConfig()) -> BakedTexture:
    """The field's colour as its renders show it (`field_query.surface_albedo`) at the surface point under every
    texel of a UV layout, charts dilated."""
    size = config.size
    raster = rasterize_uv(uvs, faces, size, config.texel_budget)
    corners = torch.as_tensor(faces)[raster.face]  # [M, 3]
    vertex_normals = torch.as_tensor(trimesh.Trimesh(vertices=vertices, faces=faces, process=False).vertex_normals.copy())
    surface_points = (raster.barycentric[..., None] * torch.as_tensor(vertices, dtype=torch.float64)[corners]).sum(dim=1)
    surface_normals = (raster.barycentric[..., None] * vertex_normals[corners]).sum(dim=1)
    albedo = torch.from_numpy(surface_albedo(field, surface_points.float(), surface_normals.float(), config.chunk_size))

    image = torch.zeros(size * size, 3)
    covered = torch.zeros(size * size, dtype=torch.bool)
    image[raster.texel] = albedo
    covered[raster.texel] = True
    image, covered = image.reshape(size, size, 3), covered.reshape(size, size)
    dilated, filled = dilate(image, covered, config.dilation_px)
    return BakedTexture(image=dilated.numpy(), covered=covered.numpy(), filled=filled.numpy())


def texture_mesh(mesh: trimesh.Trimesh, field: Field, config: TextureBakeConfig = TextureBakeConfig()) -> trimesh.Trimesh:
    """A copy of `mesh` with UVs and a baked albedo texture (PBR baseColorTexture) instead of vertex colours.

    Vertices are split along chart seams, so the result has more vertices than `mesh`.
    """
    vertex_map, faces, uvs = parametrize(mesh.vertices, mesh.faces, config)
    vertices = np.asarray(mesh.vertices)[vertex_map]
    baked = bake_albedo(field, vertices, faces, uvs, config)
    image = baked.image.copy()
    # Texels no chart reaches are never sampled at full resolution; the mean colour keeps coarse
    # mip levels from greying or blackening the object.
    if baked.filled.any():
        image[~baked.filled] = image[baked.filled].mean(axis=0)
    texture = Image.fromarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8))
    material = trimesh.visual.material.PBRMaterial(
        name="albedo", baseColorTexture=texture, baseColorFactor=[255, 255, 255, 255],
        metallicFactor=0.0, roughnessFactor=1.0,
    )
    visual = trimesh.visual.TextureVisuals(uv=uvs, material=material)
    return trimesh.Trimesh(vertices=vertices, faces=faces, visual=visual, process=False)
