"""The browser viewer of a workspace (`dreamtext view`): the trained field or its mesh, live while it trains."""

from .render import VIEW_MODES, ViewImage, ViewMode, ViewPose, light_direction, pose_from_viser, render_view

__all__ = ["VIEW_MODES", "ViewImage", "ViewMode", "ViewPose", "light_direction", "pose_from_viser", "render_view"]
