"""The built-in prior (issue 4): a small CLIP and a small Stable Diffusion-format model trained on renders
of the procedural world, saved with `save_pretrained` so they load like real checkpoints."""
