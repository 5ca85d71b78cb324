"""Text to 3D by score distillation (thesis 6.1): a field trained from random cameras against the 2D prior.

Modules, one job each:
    trainer       the run's config, the trainer (render, SDS, regularisers, checkpoints) and `text_to_3d`
    start         where a field starts: the density blob, or the visual hull of the prior's own drawings
    regularizers  the optional losses on a render (opacity, entropy, orientation)
"""

from .trainer import (ITERS_PER_EPOCH, OptimizerConfig, TextTo3DConfig, TextTo3DResult, TextTo3DTrainer, check_text_config,
                      load_run_prior, text_to_3d)

__all__ = ["ITERS_PER_EPOCH", "OptimizerConfig", "TextTo3DConfig", "TextTo3DResult", "TextTo3DTrainer", "check_text_config",
           "load_run_prior", "text_to_3d"]
