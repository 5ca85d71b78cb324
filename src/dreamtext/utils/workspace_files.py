"""The names of a workspace's files (utils/workspace.py documents the layout), importable without torch."""

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoints/last.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoints/previous.pt"
PROGRESS_FILE = "progress.json"
METRICS_FILE = "metrics.json"
LOCK_FILE = ".lock"
# An image-to-3D workspace (methods/image_to_3d): describe's choice, the stage record, and each stage's folder.
DESCRIBE_FILE = "describe.json"
STAGE_FILE = "stage.json"
DESCRIPTOR_DIR = "descriptor"
EMBEDDINGS_DIR = "embeddings"
RECONSTRUCTION_DIR = "reconstruction"
IMAGE_WORKSPACE_MARKERS = (STAGE_FILE, DESCRIBE_FILE)  # either says a folder holds an image-to-3D workspace
DIVERSE_FILE = "diverse.json"  # a diversity augmentation workspace's record (methods/image_to_3d/diverse.py)
