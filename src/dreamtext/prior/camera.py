"""The camera as a prior's input: one encoding, and the UNet input that reads it.

A camera-aware prior is a plain diffusers `UNet2DConditionModel` whose config has
`class_embed_type="projection"` and `projection_class_embeddings_input_dim=CAMERA_ENCODING_DIM`: the
camera encoding goes in as `class_labels`, through the UNet's class-embedding MLP, and is added to
the timestep embedding (Zero123 and MVDream condition on the camera the same way, through an MLP
added to the timestep embedding). A folder saved so still loads with `from_pretrained`.

The encoding of a camera looking at the origin (the convention of `scene.cameras`: polar angle from +y,
azimuth from the object's front +z towards +x), 8 numbers:

    cos(polar), sin(polar)                          elevation (polar in [0, 180] is one-to-one on these)
    sin(az), cos(az), sin(2 az), cos(2 az)          azimuth from the front, with no jump at 0 / 360
    (radius - 1.25) / 0.25                          distance, -1..1 over the training cameras' [1.0, 1.5]
    (fovy - 55) / 15                                vertical field of view, -1..1 over [40, 70] degrees

ours: the second azimuth harmonic doubles the angular detail the MLP's first (linear) layer can
separate; radius and field of view matter because they set the object's size in the image.

The all-zero vector is the *unknown camera* (`null_camera_encoding`): no real camera encodes to it
(cos^2 + sin^2 = 1), and training drops the camera to it (camera dropout) so the same UNet also serves
callers that have no camera, such as a single photo's descriptor training.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..scene.cameras import Cameras, cartesian_to_spherical

CAMERA_ENCODING_DIM = 8
# A Stable Diffusion folder may carry a camera-aware UNet in this sub-folder beside its text-only `unet`
# (outside model_index.json: diffusers' own pipeline cannot give a UNet its class_labels); dreamtext
# loads it in the text-only one's place (`prior.loading.load_prior`).
CAMERA_UNET_FOLDER = "camera_unet"
# The training cameras' ranges (`CameraSamplerConfig`, thesis 6.1.5): their centre and half-width.
RADIUS_CENTRE, RADIUS_HALF_WIDTH = 1.25, 0.25
FOVY_CENTRE_DEG, FOVY_HALF_WIDTH_DEG = 55.0, 15.0


def camera_encoding(polar_deg: Tensor, azimuth_deg: Tensor, radius: Tensor, fovy_deg: Tensor) -> Tensor:
    """[N, CAMERA_ENCODING_DIM] float32 encodings of cameras given by their spherical position and fov."""
    polar = torch.deg2rad(torch.as_tensor(polar_deg, dtype=torch.float32))
    azimuth = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32))
    radius = torch.as_tensor(radius, dtype=torch.float32)
    fovy = torch.as_tensor(fovy_deg, dtype=torch.float32)
    polar, azimuth, radius, fovy = torch.broadcast_tensors(polar, azimuth, radius, fovy)
    return torch.stack([
        torch.cos(polar), torch.sin(polar),
        torch.sin(azimuth), torch.cos(azimuth), torch.sin(2 * azimuth), torch.cos(2 * azimuth),
        (radius - RADIUS_CENTRE) / RADIUS_HALF_WIDTH,
        (fovy - FOVY_CENTRE_DEG) / FOVY_HALF_WIDTH_DEG,
    ], dim=-1).reshape(-1, CAMERA_ENCODING_DIM)


def encode_cameras(cameras: Cameras) -> Tensor:
    """The encoding of `Cameras` (assumed to look at the origin, as every camera of the package does)."""
    radius, polar, azimuth = cartesian_to_spherical(cameras.origins.float())
    return camera_encoding(polar, azimuth, radius, cameras.fovy_deg.float()).to(cameras.device)


def null_camera_encoding(count: int, device: torch.device | str = "cpu") -> Tensor:
    """The unknown camera, [count, CAMERA_ENCODING_DIM] zeros."""
    return torch.zeros(count, CAMERA_ENCODING_DIM, device=device)


def drop_cameras(encodings: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    """Replace each row with the unknown camera with `probability` (camera dropout)."""
    dropped = torch.rand(encodings.shape[0], generator=generator) < probability
    return torch.where(dropped.to(encodings.device)[:, None], torch.zeros_like(encodings), encodings)


def takes_camera(unet) -> bool:
    """Whether a diffusers UNet reads this package's camera encoding as its `class_labels`."""
    config = unet.config
    return (config.get("class_embed_type") == "projection"
            and config.get("projection_class_embeddings_input_dim") == CAMERA_ENCODING_DIM)


def plain_config(model) -> dict:
    """A diffusers model's config without its bookkeeping keys: `_use_default_values` would make
    `from_config` reset every key it lists (e.g. `class_embed_type`) to its default."""
    return {key: value for key, value in model.config.items() if not key.startswith("_")}


def with_camera_input(unet, attention_head_dim=None):
    """A copy of a text-only `UNet2DConditionModel` that also takes the camera, computing exactly what
    `unet` computes for any camera: the new class-embedding MLP's last layer starts at zero (as
    ControlNet's zero convolutions), so only training moves the output away from the original's.

    attention_head_dim: optionally another head layout (diffusers' name: the number of heads per level);
        the weights are the same shapes, but the outputs then differ from the original's.
    """
    from diffusers import UNet2DConditionModel

    if takes_camera(unet):
        raise ValueError("this UNet already takes the camera")
    if unet.config.get("class_embed_type") is not None or unet.config.get("num_class_embeds") is not None:
        raise ValueError("this UNet already has a class input; the camera would replace it")
    config = dict(plain_config(unet), class_embed_type="projection", projection_class_embeddings_input_dim=CAMERA_ENCODING_DIM)
    if attention_head_dim is not None:
        config["attention_head_dim"] = attention_head_dim
    camera_unet = UNet2DConditionModel.from_config(config)
    missing, unexpected = camera_unet.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any(not key.startswith("class_embedding.") for key in missing):
        raise ValueError(f"the UNet's weights do not match its config (missing {missing}, unexpected {unexpected})")
    torch.nn.init.zeros_(camera_unet.class_embedding.linear_2.weight)
    torch.nn.init.zeros_(camera_unet.class_embedding.linear_2.bias)
    return camera_unet.to(device=unet.device, dtype=unet.dtype)


def camera_labels(unet, cameras: Cameras | None, count: int, device, dtype, copies: int = 1) -> dict:
    """The keyword arguments that give `unet` the cameras of a batch of `count` images: {} for a text-only
    UNet (Stable Diffusion checkpoints run exactly as before), `class_labels` for a camera-aware one
    (the unknown camera when `cameras` is None). `copies`: the batch is repeated so many times in the
    UNet call (2 for the conditional and unconditional halves of classifier-free guidance)."""
    if not takes_camera(unet):
        return {}
    labels = null_camera_encoding(count, device) if cameras is None else encode_cameras(cameras).to(device)
    if labels.shape[0] != count:
        raise ValueError(f"{labels.shape[0]} cameras for a batch of {count}")
    return {"class_labels": labels.to(dtype).repeat(copies, 1)}
