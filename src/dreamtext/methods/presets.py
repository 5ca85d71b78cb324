"""Text-to-3D presets as data: dotted config keys and their values, each with its source.

`preset_config(name, prompt, overrides)` starts from `TextTo3DConfig()`, applies the preset, then the
user's overrides (CLI flags) on top. Sources: ../shared/REFERENCE.md section 1 (the thesis) and
section 2 (stable-dreamfusion, March 2023, the code the thesis forked).
"""

from __future__ import annotations

from typing import Any

from ..errors import DreamtextError
from ..prior import PromptConfig
from ..prior.loading import is_builtin_model
from ..utils.config import set_dotted
from .text_to_3d import ITERS_PER_EPOCH, TextTo3DConfig

# Stable DreamFusion as the thesis started from it.
DREAMFUSION: dict[str, Any] = {
    "render_size": 64,  # thesis table, Stable DreamFusion column: 64 x 64 renders
    "sds.guidance": 100.0,  # thesis table / stable-dreamfusion: CFG scale 100 ...
    "sds.cfg_formula": "sdf_2023",  # ... in stable-dreamfusion's cond + s (cond - uncond) form (REFERENCE 2)
    "sds.guidance_schedule": "constant",  # thesis 6.1.9: schedules explored, none beat a constant scale
    "sds.t_min": 0.02,  # thesis 6.1.3 / stable-dreamfusion: t = randint(20, 980) of 1000
    "sds.t_max": 0.98,
    "sds.t_schedule": "uniform",
    "sds.weighting": "1-alphabar",  # thesis 6.1.3: w(t) = 1 - alphabar_t
    "iters": 100 * ITERS_PER_EPOCH,  # thesis table: 100 epochs of 100 iterations
    "batch_size": 1,  # stable-dreamfusion: one camera per step
    "cameras.radius_range": (1.0, 1.5),  # thesis 6.1.5
    "cameras.polar_range_deg": (0.0, 120.0),  # thesis 6.1.5
    "cameras.uniform_cube_rate": 0.5,  # thesis 6.1.5: half of the cameras from the upper half cube
    "optimizer.kind": "adan",  # stable-dreamfusion (REFERENCE 2): Adan ...
    "optimizer.lr": 5e-3,  # ... lr 5e-3, hash grid x10 ...
    "optimizer.weight_decay": 2e-5,  # ... weight decay 2e-5
    "field.grid_lr_multiplier": 10.0,  # stable-dreamfusion / thesis: hash grid at 10x the learning rate
    "regularizers.entropy": 1e-4,  # stable-dreamfusion's lambda_entropy (REFERENCE 2)
    "regularizers.orientation": 1e-2,  # stable-dreamfusion's lambda_orient (REFERENCE 2)
    "shading.albedo_only_epochs": 10,  # thesis 6.1.4
}

# FitFusion: the thesis's tuned Stable DreamFusion; everything else as above.
FITFUSION: dict[str, Any] = {
    **DREAMFUSION,
    "render_size": 256,  # thesis table, FitFusion column (512 expected to be better)
    "sds.guidance": 1000.0,  # thesis table (800 for complex objects, 1200 for simple ones)
    "iters": 200 * ITERS_PER_EPOCH,  # thesis table: 200 epochs (20k iterations)
}

# The built-in prior on a laptop CPU (issue 4's target: a recognisable object in <= 10 minutes on 2 cores):
# Stable DreamFusion's recipe with a CPU-sized field. Every "ours" below was measured with `bench world`;
# docs/experiments.md has the figures (one row each, under the setting's name).
BUILTIN: dict[str, Any] = {
    **DREAMFUSION,
    "model": "builtin",  # the small Stable Diffusion shipped in the package
    "render_size": 32,  # ours: 32 px renders upsampled to the prior's 64 px, as Stable DreamFusion's 64 px feed SD's 512
    "iters": 12 * ITERS_PER_EPOCH,  # ours: 1200 iterations
    "shading.albedo_only_epochs": 3,  # ours: the thesis's first tenth of training albedo-only (10 of 100 epochs)
    "field.hidden_dim": 64,  # ours, as `dreamtext fit`'s CPU field: 64 wide ...
    "field.num_blocks": 2,  # ... 2 layers ...
    "field.mlp": "plain",  # ... plain (Instant-NGP's): 6x faster on CPU than residual blocks with LayerNorm ...
    "field.encoding.log2_hashmap_size": 16,  # ... a 2^16 table ...
    "field.encoding.max_resolution": 128,  # ... up to 128^3: a finest cell a third of a 32 px training pixel
    "field.normal_eps": 0.03,  # ours: finite-difference normals over about one 32 px training pixel
    "renderer.shade_at": "surface",  # ours: one normal a ray, at its surface point (deferred shading), 2.3x faster
    "renderer.num_samples": 48,  # ours: 48 samples per ray, 3/4 of the cost of 64, enough at 32 px
    # ours: the prior's training backdrops (world/renders.py), a new one every step, instead of the background
    # network, which could take the object's colour
    "background.kind": "random",
    "background.random_range": (0.75, 1.0),
    # ours: a mean-opacity penalty on the SDS loss's scale, falling to 0 at a third of the run: against a swelling
    # mass that fills the lower half of the scene cube (regularizers.py explains the scale)
    "regularizers.opacity": 3000.0,
    "regularizers.opacity_end": 0.0,
    "regularizers.opacity_end_progress": 1 / 3,
    # ours: every rate falls tenfold over the run, geometrically: the shape forms at the high rate, settles at the low
    "optimizer.lr_schedule": "exponential",
    "optimizer.lr_end_factor": 0.1,
    "eval_every": 4 * ITERS_PER_EPOCH,  # ours: three validation renders in a run
    # ours: start from the visual hull of the prior's own drawings (methods/shape_init.py) and hold the run near it,
    # each drawing's silhouette closed by 9 px so that light stripes and checks do not cut the hull
    "init.kind": "prior_hull",
    "init.hold_weight": 2000.0,
    "init.mask_closing": 9,
    # ours: each drawing steered towards its view's camera by the prior's camera classifier and chosen as the
    # best of 3 for it, so the hull is carved from drawings whose cameras are nearer the assumed ones (3 measured as
    # well as 4 on the 8 dev cases x 2 seeds for a quarter less of the drawings' time; docs/experiments.md)
    "init.camera_guidance": 10.0,
    "init.camera_candidates": 3,
    # ours: 15 DDIM steps a drawing instead of 20: the drawings take a quarter less of the main command's wait and the
    # 8 dev cases x 2 seeds measured as well or better (docs/experiments.md, "init.steps 15")
    "init.steps": 15,
}

PRESETS: dict[str, dict[str, Any]] = {"dreamfusion": DREAMFUSION, "fitfusion": FITFUSION, "builtin": BUILTIN}


def default_preset(model: str | None) -> str:
    """The preset a run gets when none is named: `builtin` for the built-in prior, else `dreamfusion`."""
    return "builtin" if is_builtin_model(model) else "dreamfusion"


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of the (nested, possibly frozen) dataclass `config` with dotted keys set, in order (a part's
    `kind` before its own settings)."""
    for key, value in overrides.items():
        try:
            config = set_dotted(config, key, value)
        except (AttributeError, TypeError) as error:
            raise DreamtextError(f"{error} (in {key!r})") from None
    return config


def preset_config(name: str, prompt: str, overrides: dict[str, Any] | None = None, negative_prompt: str = "") -> TextTo3DConfig:
    """The named preset for `prompt`, with `overrides` (dotted keys; None values are ignored) on top."""
    if name not in PRESETS:
        raise DreamtextError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    config = TextTo3DConfig(prompt=PromptConfig(prompt=prompt, negative_prompt=negative_prompt))
    config = apply_overrides(config, PRESETS[name])
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    return apply_overrides(config, given)
