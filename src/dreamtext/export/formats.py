"""Writing meshes as GLB, OBJ (+MTL+PNG) or PLY, atomically, in forms Blender and glTF viewers read.

Our world is y-up with the object's front facing +z, which is glTF's convention and what Blender's
OBJ importer expects by default (forward -Z, up Y), so no file gets a rotation.

- GLB (the default): one self-contained file. Vertex colours go in COLOR_0 as linear float RGB (glTF
  2.0 defines vertex colours as linear, unlike textures, which are sRGB; our albedo is sRGB, so it is
  converted) under a white, rough, non-metallic material: glTF multiplies COLOR_0 into the base colour,
  and Blender wires the colour attribute into the material only when the primitive has one. A textured
  mesh embeds its PNG (sRGB, as glTF's baseColorTexture is) as the material's baseColorTexture.
- OBJ: `name.obj`; a textured mesh also writes `name.mtl` and `name_albedo.png` beside it (spaces in
  `name` become underscores in those two), referenced by relative paths with a white Kd (the MTL multiplies Kd into map_Kd). Vertex colours use the
  `v x y z r g b` extension that Blender (3.5+), MeshLab and trimesh read.
- PLY: binary, with uchar red/green/blue/alpha per vertex (sRGB bytes, as PLY readers show them); a
  textured mesh is sampled to vertex colours. PLY has no axis convention and Blender reads it as Z-up,
  so it is written Z-up (x, -z, y): the object stands in Blender as the GLB and OBJ do.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import trimesh

from ..errors import DreamtextError
from ..utils.io import atomic_write_bytes

MeshFormat = Literal["glb", "obj", "ply"]
MESH_FORMATS: tuple[str, ...] = get_args(MeshFormat)

# glTF's default material would be metallic 1: a vertex-coloured object then renders dark in most viewers.
_VERTEX_COLOR_MATERIAL = {
    "name": "vertex_color",
    "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 1.0},
}


def _is_textured(mesh: trimesh.Trimesh) -> bool:
    visual = mesh.visual
    if not isinstance(visual, trimesh.visual.TextureVisuals) or visual.uv is None:
        return False
    material = visual.material
    return getattr(material, "baseColorTexture", None) is not None or getattr(material, "image", None) is not None


def _texture_image(mesh: trimesh.Trimesh):
    material = mesh.visual.material
    image = getattr(material, "baseColorTexture", None)
    return image if image is not None else material.image


def _vertex_colors(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """uint8 RGBA per vertex, sampled from the texture if the mesh has one; None if it has no colour."""
    if _is_textured(mesh):
        return np.asarray(mesh.visual.to_color().vertex_colors, dtype=np.uint8)
    if mesh.visual.kind == "vertex":
        return np.asarray(mesh.visual.vertex_colors, dtype=np.uint8)
    return None


def _add_material_to_untextured(tree: dict) -> None:
    """trimesh's tree post-processor: give material-less primitives our vertex-colour material."""
    primitives = [p for mesh in tree.get("meshes", []) for p in mesh["primitives"] if "material" not in p]
    if not primitives:
        return
    materials = tree.setdefault("materials", [])
    materials.append(dict(_VERTEX_COLOR_MATERIAL))
    for primitive in primitives:
        primitive["material"] = len(materials) - 1


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """The sRGB transfer function's inverse (IEC 61966-2-1), values in [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def glb_bytes(mesh: trimesh.Trimesh) -> bytes:
    if _is_textured(mesh) or mesh.visual.kind != "vertex":
        return mesh.export(file_type="glb", include_normals=True, tree_postprocessor=_add_material_to_untextured)
    return _vertex_coloured_glb(mesh)


def _vertex_coloured_glb(mesh: trimesh.Trimesh) -> bytes:
    """One primitive: POSITION, NORMAL, COLOR_0 (linear float RGB) and uint32 indices in one buffer."""
    import pygltflib

    positions = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    normals = np.ascontiguousarray(mesh.vertex_normals, dtype=np.float32)
    colors = np.ascontiguousarray(srgb_to_linear(_vertex_colors(mesh)[:, :3] / 255.0), dtype=np.float32)
    indices = np.ascontiguousarray(mesh.faces, dtype=np.uint32).reshape(-1)
    blobs = [positions.tobytes(), normals.tobytes(), colors.tobytes(), indices.tobytes()]  # each a multiple of 4 bytes
    offsets = np.cumsum([0] + [len(blob) for blob in blobs])
    views = [pygltflib.BufferView(buffer=0, byteOffset=int(offsets[i]), byteLength=len(blobs[i]),
                                  target=pygltflib.ELEMENT_ARRAY_BUFFER if i == 3 else pygltflib.ARRAY_BUFFER)
             for i in range(4)]
    count = len(positions)
    accessors = [
        pygltflib.Accessor(bufferView=0, componentType=pygltflib.FLOAT, count=count, type=pygltflib.VEC3,
                           min=positions.min(0).tolist(), max=positions.max(0).tolist()),
        pygltflib.Accessor(bufferView=1, componentType=pygltflib.FLOAT, count=count, type=pygltflib.VEC3),
        pygltflib.Accessor(bufferView=2, componentType=pygltflib.FLOAT, count=count, type=pygltflib.VEC3),
        pygltflib.Accessor(bufferView=3, componentType=pygltflib.UNSIGNED_INT, count=len(indices), type=pygltflib.SCALAR),
    ]
    material = _VERTEX_COLOR_MATERIAL["pbrMetallicRoughness"]
    gltf = pygltflib.GLTF2(
        asset=pygltflib.Asset(generator="dreamtext", version="2.0"),
        scene=0, scenes=[pygltflib.Scene(nodes=[0])], nodes=[pygltflib.Node(mesh=0)],
        meshes=[pygltflib.Mesh(primitives=[pygltflib.Primitive(
            attributes=pygltflib.Attributes(POSITION=0, NORMAL=1, COLOR_0=2), indices=3, material=0)])],
        materials=[pygltflib.Material(name=_VERTEX_COLOR_MATERIAL["name"], pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(
            baseColorFactor=material["baseColorFactor"], metallicFactor=material["metallicFactor"],
            roughnessFactor=material["roughnessFactor"]))],
        accessors=accessors, bufferViews=views, buffers=[pygltflib.Buffer(byteLength=int(offsets[-1]))],
    )
    gltf.set_binary_blob(b"".join(blobs))
    return b"".join(gltf.save_to_bytes())


# Our y-up world in PLY's (and Blender's) Z-up: x stays, y becomes z, z becomes -y (the front faces -Y).
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def ply_bytes(mesh: trimesh.Trimesh) -> bytes:
    colors = _vertex_colors(mesh)
    vertices = np.asarray(mesh.vertices, dtype=np.float64) @ Y_UP_TO_Z_UP.T
    plain = trimesh.Trimesh(vertices=vertices, faces=mesh.faces, vertex_colors=colors, process=False)
    return trimesh.exchange.ply.export_ply(plain, encoding="binary", vertex_normal=True)


def _rows(array: np.ndarray, prefix: str, fmt: str) -> str:
    if len(array) == 0:
        return ""
    buffer = io.StringIO()
    np.savetxt(buffer, array, fmt=fmt, header="", comments="", delimiter=" ")
    return "".join(f"{prefix} {line}\n" for line in buffer.getvalue().splitlines())


def obj_text(mesh: trimesh.Trimesh, mtl_name: str | None = None) -> str:
    """OBJ text: positions (with colours when untextured), UVs when textured, normals, 1-based faces."""
    textured = mtl_name is not None
    positions = np.asarray(mesh.vertices, dtype=np.float64)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
    colors = None if textured else _vertex_colors(mesh)
    columns = positions if colors is None else np.concatenate([positions, colors[:, :3] / 255.0], axis=1)
    faces = np.asarray(mesh.faces, dtype=np.int64) + 1
    corner = np.repeat(faces[:, :, None], 3 if textured else 2, axis=2)  # [F, 3, 2|3] same index per attribute
    header = ["# dreamtext mesh: y-up, front +z"]
    if textured:
        header += [f"mtllib {mtl_name}", "usemtl albedo"]
    parts = ["\n".join(header) + "\n", _rows(columns, "v", "%.6f")]
    if textured:
        parts.append(_rows(np.asarray(mesh.visual.uv, dtype=np.float64), "vt", "%.6f"))
    parts.append(_rows(normals, "vn", "%.6f"))
    corner_fmt = "%d/%d/%d" if textured else "%d//%d"
    parts.append(_rows(corner.reshape(len(faces), -1), "f", " ".join([corner_fmt] * 3)))
    return "".join(parts)


def mtl_text(texture_name: str) -> str:
    # Kd 1 because viewers multiply Kd into map_Kd; no specular: the albedo is all we know.
    return (
        "# dreamtext material\n"
        "newmtl albedo\n"
        "Ka 0.000000 0.000000 0.000000\n"
        "Kd 1.000000 1.000000 1.000000\n"
        "Ks 0.000000 0.000000 0.000000\n"
        "Ns 0.000000\n"
        "d 1.000000\n"
        "illum 1\n"
        f"map_Kd {texture_name}\n"
    )


def _write_obj(mesh: trimesh.Trimesh, path: Path) -> list[Path]:
    """Write the OBJ and its companions in a hidden temporary folder beside `path`, then move them in.

    Companions move first and the OBJ last, so an OBJ on disk never points at missing files.
    """
    if not _is_textured(mesh):
        atomic_write_bytes(path, obj_text(mesh).encode())
        return [path]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Companion names without spaces: MTL statements split on whitespace in several importers.
    stem = re.sub(r"\s+", "_", path.stem)
    mtl_path, texture_path = path.with_name(f"{stem}.mtl"), path.with_name(f"{stem}_albedo.png")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _texture_image(mesh).convert("RGB").save(staging / texture_path.name, format="PNG")
        (staging / mtl_path.name).write_text(mtl_text(texture_path.name))
        (staging / path.name).write_text(obj_text(mesh, mtl_name=mtl_path.name))
        for target in (texture_path, mtl_path, path):
            os.replace(staging / target.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [path, mtl_path, texture_path]


def mesh_format(format: str | None, path: str | Path | None) -> str:
    """`format`, else `path`'s suffix when that names a mesh format, else GLB."""
    if format is not None:
        return format
    suffix = Path(path).suffix.lower().lstrip(".") if path is not None else ""
    return suffix if suffix in MESH_FORMATS else "glb"


def save_mesh(mesh: trimesh.Trimesh, path: str | Path, format: MeshFormat | None = None) -> list[Path]:
    """Write `mesh` to `path` and return every file written (the OBJ's companions included).

    `format` defaults to the path's suffix when that names a format, else GLB; the path's suffix is
    then set to the format's.
    """
    path = Path(path)
    format = mesh_format(format, path)
    if format not in MESH_FORMATS:
        raise DreamtextError(f"unknown mesh format {format!r}; choose one of {', '.join(MESH_FORMATS)}")
    if len(mesh.faces) == 0:
        raise DreamtextError(f"refusing to write an empty mesh to {path}; lower --density-threshold or check the field")
    path = path.with_suffix(f".{format}")
    if format == "glb":
        return [atomic_write_bytes(path, glb_bytes(mesh))]
    if format == "ply":
        return [atomic_write_bytes(path, ply_bytes(mesh))]
    return _write_obj(mesh, path)
