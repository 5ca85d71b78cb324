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

# The built-in prior on a laptop CPU (issue 4's target: a recognisable object in <= 10 minutes on 2
# cores): Stable DreamFusion's recipe at the small prior's native 64 px, with a CPU-sized field.
BUILTIN: dict[str, Any] = {
    **DREAMFUSION,
    "model": "builtin",  # the small Stable Diffusion shipped in the package
    "render_size": 32,  # ours: 32 px renders upsampled to the prior's 64 px (as Stable DreamFusion's 64 px
    # renders feed SD's 512 px): 4x fewer rays than 64 px, the difference between ~8 and ~25 minutes on 2 cores
    "iters": 12 * ITERS_PER_EPOCH,  # ours: 1200 iterations
    "shading.albedo_only_epochs": 3,  # ours: the thesis's first tenth of training albedo-only (10 of 100 epochs)
    "field.hidden_dim": 64,  # ours, as `dreamtext fit`'s CPU field: 64 wide ...
    "field.num_blocks": 2,  # ... 2 blocks ...
    "field.encoding.log2_hashmap_size": 16,  # ... a 2^16 table ...
    # ... up to 128^3: a finest cell a third of a 32 px training pixel's footprint (about 0.05 of the cube)
    # instead of a sixth; detail finer than a pixel is never supervised and only adds noise to the surface.
    # bench world, 8 dev cases, one seed, with the falling rate below:
    # mean IoU 0.41 -> 0.44 against 256^3 (torus 0.73 -> 0.80, sphere 0.54 -> 0.62, lamp 0.03 -> 0.19),
    # Chamfer 0.057 -> 0.047; the small CLIP's noun R-precision 0.66 -> 0.55.
    "field.encoding.max_resolution": 128,
    # ours: finite-difference normals over about one 32 px training pixel (0.03 at the usual camera
    # distance; four finest cells of the 256^3 grid it was measured with, two at 128^3) instead of
    # stable-dreamfusion's 0.01, sized for 2048^3 grids: detail finer than a pixel is never supervised,
    # and 0.01 lit its noise as speckles. bench world,
    # 8 dev cases, one seed, against 0.01 (IoU 0.369): mean IoU 0.365 and 0.377 in two runs (one and two
    # threads; the spread of a case between them is up to 0.07), the same within that spread, but the
    # small CLIP reads the shaded views better in both: noun R-precision 0.45 -> 0.55 / 0.52, colour
    # 0.78 -> 0.91 / 0.88, caption 0.41 -> 0.53 / 0.41.
    "field.normal_eps": 0.03,
    "renderer.num_samples": 48,  # ours: 48 samples per ray, 3/4 of the cost of 64, enough at 32 px
    # ours: the backdrops the prior was trained on (world/renders.py: plain, each channel in [0.75, 1]),
    # a new one every step, instead of the thesis's background network. The network could take the
    # object's colour (a black torus came out white on a black backdrop); a random one cannot. Measured
    # on "a red mug" (dreamtext bench world's metrics, one seed): IoU 0.156 -> 0.247, Chamfer 0.060 -> 0.038.
    "background.kind": "random",
    "background.random_range": (0.75, 1.0),
    # ours: a mean-opacity penalty, weighted on the SDS loss's scale (a sum over the prior's latents: about
    # 6 per render pixel at the start, against 1/1024 per pixel for the mean opacity of a 32 px render).
    # Without it a large or dark object ("a large black torus", "a large striped black table") swells
    # from the initial blob into a mass that fills the lower half of the scene cube, whatever the learning
    # rate, camera distance, guidance (30 too) or a smaller scene cube (0.7); 50 changed nothing, 3000
    # carves the mass into the object but also shrinks every object (a sphere's radius by about a fifth).
    # Falling to 0 early, it carves while the shape forms and then lets the object regrow. bench world,
    # 8 dev cases, one seed: mean IoU 0.29 without it, 0.30 at a constant 3000, 0.36 falling from 3000 to 0
    # over the whole run, 0.37 reaching 0 at a third of it (torus 0.56 -> 0.71, sphere 0.61 -> 0.73).
    "regularizers.opacity": 3000.0,
    "regularizers.opacity_end": 0.0,
    "regularizers.opacity_end_progress": 1 / 3,
    # ours: the rate falls tenfold over the run, geometrically (every group, the hash grid's 10x too).
    # Started from the true object (the field fitted to its SDF), SDS at a constant 5e-3 walks away from
    # it (a teapot's IoU 0.83 -> 0.34 in 600 steps, a pyramid's 0.85 -> 0.55) and at 1e-3 keeps it (0.83,
    # 0.73): the shape forms at the high rate and then needs a low one to settle. bench world, 8 dev
    # cases, one seed: mean IoU 0.36 -> 0.41 (pyramid 0.22 -> 0.37, teapot 0.09 -> 0.24, table 0.11 ->
    # 0.25, sphere 0.70 -> 0.54), Chamfer 0.084 -> 0.057; falling to 0.03 instead: 0.40.
    "optimizer.lr_schedule": "exponential",
    "optimizer.lr_end_factor": 0.1,
    "eval_every": 4 * ITERS_PER_EPOCH,  # ours: three validation renders in a run
    # ours: start from the visual hull of the prior's own drawings of the object and hold the run near it
    # (methods/shape_init.py). bench world, 8 dev cases, seeds 0 and 1: mean IoU 0.44 / 0.434 -> 0.444 /
    # 0.477, Chamfer 0.047 / 0.060 -> 0.048 / 0.047 (sphere 0.61 / 0.68 -> 0.93 / 0.91, teapot 0.20 / 0.19 ->
    # 0.28 / 0.50, table 0.23 / 0.17 -> 0.33 / 0.34; the pyramid, lamp and car, whose hulls are poor, lose:
    # 0.37 / 0.24 -> 0.17 / 0.155, 0.19 / 0.32 -> 0.06 / 0.22, 0.50 / 0.40 -> 0.375 / 0.28). The hull start
    # alone (no hold) gave 0.414 at seed 0.
    "init.kind": "prior_hull",
    "init.hold_weight": 2000.0,
    # ours: close each 64 px drawing's silhouette by 9 px, so the light stripes and checks that read as
    # backdrop do not cut the hull (the pyramid's hull recall 0.46 -> 0.96); the distillation carves the
    # fuller hull well. Seed 0: mean IoU 0.444 -> 0.498 (pyramid 0.17 -> 0.37, teapot 0.28 -> 0.52, the rest
    # within 0.03), Chamfer 0.048 -> 0.045; seed 1, three cases: pyramid 0.155 -> 0.35, teapot 0.50 -> 0.74,
    # torus 0.81 -> 0.78.
    "init.mask_closing": 9,
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
