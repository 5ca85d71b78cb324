"""The positional arguments of the commands, named as their usage lines show them (`dreamtext text PROMPT`;
tyro's default would show the type, STR)."""

from __future__ import annotations

from typing import Annotated

import tyro

Prompt = Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="PROMPT")]
ImageFile = Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="IMAGE")]
WorkspaceDir = Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="WORKSPACE")]
WorkspaceDirs = Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="WORKSPACES")]
JobsFile = Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="JOBS")]
DataDir = Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="[DATA]")]
