"""A tiny random Stable Diffusion pipeline for offline tests (builds in a fraction of a second).

Same architecture family as Stable Diffusion 1.x/2.x (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, a scaled-linear DDIM scheduler and the CLIP tokenizer), at toy widths: the UNet works
on 8x8 latents and the VAE halves the resolution once, so the prior's input images are 16x16.
"""

from __future__ import annotations

import torch

TEXT_HIDDEN = 32


def build_tiny_sd_pipeline(seed: int = 0, tokenizer_cache: str | None = None, scheduler: str = "ddim"):
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from dreamtext.prior.tokenizer import build_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        sample_size=16,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=TEXT_HIDDEN,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    scheduler_cls = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}[scheduler]
    noise_scheduler = scheduler_cls(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_clip_tokenizer(tokenizer_cache),
        scheduler=noise_scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def to_original_sd_layout(pipeline) -> dict[str, torch.Tensor]:
    """The pipeline's weights in the original (CompVis/LDM) single-file layout of Stable Diffusion 1.x.

    Lets the tests exercise `from_single_file` offline: the inverse of the renaming diffusers applies
    when it reads such a file. Covers the blocks the tiny pipeline uses.
    """
    import re

    state: dict[str, torch.Tensor] = {}
    unet = pipeline.unet
    per_level = unet.config.layers_per_block
    resnet_names = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                    "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}

    def resnet_rest(rest: str) -> str:
        head, _, tail = rest.partition(".")
        return f"{resnet_names[head]}.{tail}"

    has_attention = {i: hasattr(block, "attentions") for i, block in enumerate(unet.up_blocks)}
    for key, value in unet.state_dict().items():
        fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
                 "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
        name, _, tail = key.rpartition(".")
        if name in fixed:
            new = f"{fixed[name]}.{tail}"
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + level * (per_level + 1) + j
            new = f"input_blocks.{index}.0.{resnet_rest(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{1 + int(m[1]) * (per_level + 1) + per_level}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"middle_block.{2 * int(m[1])}.{resnet_rest(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = level * (per_level + 1) + j
            new = f"output_blocks.{index}.0.{resnet_rest(rest)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            level = int(m[1])
            slot = 2 if has_attention[level] else 1
            new = f"output_blocks.{level * (per_level + 1) + per_level}.{slot}.conv.{m[2]}"
        else:
            raise KeyError(f"no original-layout name for UNet key {key}")
        state[f"model.diffusion_model.{new}"] = value

    vae = pipeline.vae
    levels = len(vae.config.block_out_channels)
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for key, value in vae.state_dict().items():
        new = key
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.", new)
        new = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        new = new.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", key):
            new = f"{m[1]}.mid.attn_1.{attention[m[2]]}.{m[3]}"
            if m[2] != "group_norm" and m[3] == "weight":
                value = value[:, :, None, None]  # the original stores 1x1 convolutions
        state[f"first_stage_model.{new}"] = value

    for key, value in pipeline.text_encoder.state_dict().items():
        # transformers >= 5.6 flattened CLIPTextModel; the original layout keeps the `text_model.` level.
        inner = key if key.startswith("text_model.") else f"text_model.{key}"
        state[f"cond_stage_model.transformer.{inner}"] = value
    return state


class RecordingUnet(torch.nn.Module):
    """Wraps a UNet and records every call: its batch rows (`rows`) and its keyword arguments (`calls`)."""

    def __init__(self, unet):
        super().__init__()
        self.unet, self.rows, self.calls = unet, [], []

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self):
        return self.unet.dtype

    def forward(self, sample, *args, **kwargs):
        self.rows.append(sample.shape[0])
        self.calls.append(kwargs)
        return self.unet(sample, *args, **kwargs)
