"""DreamText: image to 3D through a learned sentence (thesis chapter 5.2-5.3).

Modules, one job each:
    augment      the thesis's image augmentations, batched and seeded (6.1.9)
    sentence     describe.json's sentence as training templates and prompts
    tokens       learned token rows of a text encoder and their textual-inversion files
    learned      the trained sentence a workspace keeps (DIR/embeddings)
    inputs       the prepared input image and mask read back from a workspace
    descriptor   descriptor training (5.2.2) and its baselines
    reconstruct  3D reconstruction from the learned sentence (5.2.3), reference-view losses
    pipeline     the one command: describe -> descriptor -> reconstruct, resumable by stage
    diverse      diversity augmentation (5.3): prior samples, one reconstruction each, a contact sheet
"""
