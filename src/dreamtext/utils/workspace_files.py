"""The names of a workspace's files (utils/workspace.py documents the layout), importable without torch."""

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoints/last.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoints/previous.pt"
PROGRESS_FILE = "progress.json"
METRICS_FILE = "metrics.json"
LOCK_FILE = ".lock"
