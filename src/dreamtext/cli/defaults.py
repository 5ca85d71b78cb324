"""What a command line's defaults depend on, read before it is parsed: a flag's value, a saved run's config.

Commands whose config defaults depend on a preset, a method or a saved run (`text`, `fit`, `descriptor`,
`reconstruct`, `image`, `diverse`) build their defaults from these, then tyro parses the command line
over them, so every setting has one spelling: its dotted config name.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DreamtextError
from ..utils.config import config_flags, config_from_dict, kinds, set_dotted
from ..utils.workspace_files import CONFIG_FILE


def flag_value(args: list[str], flag: str) -> str | None:
    """The value given to `flag` on a command line (`--flag VALUE` or `--flag=VALUE`; the last one wins)."""
    value = None
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def saved_config(workspace: str, like):
    """The config a workspace's run saved, as `like`'s type; None when there is none (or another kind)."""
    path = Path(workspace) / CONFIG_FILE
    try:
        return config_from_dict(type(like), json.loads(path.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def choose_parts(command, args: list[str]):
    """`command` (a dataclass instance of defaults) with each part the command line names in place: a
    `--field.encoding.kind triplane` puts the tri-plane encoding with its defaults where the default part
    stood, so that its own settings (`--field.encoding.features`) are the ones tyro then parses."""
    for flag, path, kind in list(config_flags(type(command))):
        chosen = flag_value(args, f"--{flag}.kind")
        if kinds(kind) and chosen is not None:
            if chosen not in kinds(kind):
                raise DreamtextError(f"--{flag}.kind must be one of {', '.join(kinds(kind))}, got {chosen!r}")
            command = set_dotted(command, f"{path}.kind", chosen)
    return command


def _switches(cls) -> set[str]:
    """The flags of dataclass `cls` that take no value: its booleans (`--x` and `--no-x`, nested ones dotted)."""
    switches = set()
    for flag, _, kind in config_flags(cls):
        if kind is bool:
            head, _, last = flag.rpartition(".")
            switches |= {f"--{flag}", f"--{head}.no-{last}" if head else f"--no-{last}", f"--no-{flag}"}
    return switches


def first_positional(cls, args: list[str]) -> str | None:
    """The command line's first positional argument (the WORKSPACE of `dreamtext descriptor W --iters 5`),
    wherever it stands among the flags of command dataclass `cls`."""
    switches = _switches(cls)
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-"):
            return arg
        if "=" not in arg and arg.replace("_", "-") not in switches:
            index += 1  # the flag's value
        index += 1
    return None
