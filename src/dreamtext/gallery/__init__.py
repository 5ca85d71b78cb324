"""A static web page comparing finished runs (`dreamtext gallery`)."""

from .runs import RunSummary, summarize_run
from .site import build_gallery

__all__ = ["RunSummary", "build_gallery", "summarize_run"]
