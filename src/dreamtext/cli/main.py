"""The `dreamtext` command: one subcommand per job, each a typed dataclass whose flags tyro generates.

This module only dispatches: `dreamtext --help` and `--version` answer without importing torch, and a
command line imports the one module that holds its command (`COMMANDS` names it), the way git runs
`git-<command>`. Errors caused by the user's input print one line and exit with status 2; nothing is
overwritten.
"""

from __future__ import annotations

import difflib
import importlib
import os
import shutil
import sys
import textwrap
from typing import NamedTuple

from ..errors import EXIT_BAD_INPUT, DreamtextError, RunInterrupted
from .defaults import choose_parts


class CommandEntry(NamedTuple):
    module: str  # under dreamtext.cli
    name: str  # the command's dataclass
    summary: str  # the first line of its docstring (a test keeps them equal), shown by `dreamtext --help`


# In the order `dreamtext --help` lists them, grouped by what a user is doing.
COMMAND_GROUPS: dict[str, dict[str, CommandEntry]] = {
    "Make a 3D object": {
        "text": CommandEntry("scene_commands", "TextCommand",
                             "Create a 3D object from a text prompt by score distillation on Stable Diffusion."),
        "image": CommandEntry("image_commands", "ImageCommand",
                              "Turn one image into a 3D object with DreamText: describe, train the descriptor, reconstruct."),
        "diverse": CommandEntry("image_commands", "DiverseCommand",
                                "Diversity augmentation (thesis 5.3): K images of a prompt from the prior, one DreamText object each."),
        "fit": CommandEntry("scene_commands", "FitCommand",
                            "Fit a radiance field to posed images (transforms.json + images), then export a mesh and videos."),
    },
    "The steps of `image`": {
        "describe": CommandEntry("image_commands", "DescribeCommand",
                                 "Choose the sentence that describes an image (DreamText's first step)."),
        "descriptor": CommandEntry("image_commands", "DescriptorCommand",
                                   "Train the learned sentence of a described image (thesis 5.2.2): one new token per descriptor word."),
        "reconstruct": CommandEntry("image_commands", "ReconstructCommand",
                                    "Reconstruct the object of a workspace in 3D from its learned sentence (thesis 5.2.3)."),
    },
    "Use a trained workspace": {
        "render": CommandEntry("workspace_commands", "RenderCommand", "Render a trained workspace again: turntable video and named views."),
        "export": CommandEntry("workspace_commands", "ExportCommand", "Export the mesh of a trained workspace."),
        "view": CommandEntry("workspace_commands", "ViewCommand",
                             "Open a workspace in the browser: its trained field (shading modes, light direction) or mesh, live while it trains."),
        "gallery": CommandEntry("workspace_commands", "GalleryCommand",
                                "Write a static web page comparing runs: prompt or input, turntables, named views, metrics and each mesh in 3D."),
    },
    "Many runs": {
        "batch": CommandEntry("batch_commands", "BatchCommand",
                              "Run a list of jobs (prompts, or JSON Lines of text, image and diverse jobs), one workspace each."),
        "bench": CommandEntry("batch_commands", "BenchCommand", "Run a benchmark and print its figures (JSON with --json)."),
    },
    "The 2D prior": {
        "sample": CommandEntry("prior_commands", "SampleCommand",
                               "Draw images from the 2D prior for a prompt (DDIM with classifier-free guidance), plus a contact sheet."),
        "train-prior": CommandEntry("prior_commands", "TrainPriorCommand",
                                    "Train the built-in prior on world renders, one stage at a time (clip, vae, unet, assemble) or all."),
        "eval-prior": CommandEntry("prior_commands", "EvalPriorCommand",
                                   "Measure a trained small prior: sample images for held-out captions and classify them with the small CLIP."),
    },
}
COMMANDS: dict[str, CommandEntry] = {name: entry for group in COMMAND_GROUPS.values() for name, entry in group.items()}

# Third-party messages no dreamtext user can act on ("pip install accelerate", torchvision fallbacks, weight
# loading bars); set before those libraries are imported, and only where the user has not set them.
QUIET_LIBRARIES = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def load_command(name: str) -> type:
    """The dataclass of command `name` (importing its module, and with it the methods it runs)."""
    entry = COMMANDS[name]
    return getattr(importlib.import_module(f"{__package__}.{entry.module}"), entry.name)


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as package_version

    try:
        return package_version("dreamtext")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def overview() -> str:
    """`dreamtext --help`: every command with its summary, by group."""
    width = min(shutil.get_terminal_size().columns, 100)
    indent = 2 + max(len(name) for name in COMMANDS) + 2
    lines = ["usage: dreamtext [-h] [--version] COMMAND [OPTIONS]", "",
             "Turn a sentence or a photo into a 3D object by distilling a 2D diffusion model into a radiance field."]
    for group, commands in COMMAND_GROUPS.items():
        lines += ["", f"{group}:"]
        for name, entry in commands.items():
            lines += textwrap.wrap(entry.summary, width=width, initial_indent=f"  {name:<{indent - 2}}",
                                   subsequent_indent=" " * indent)
    lines += ["", "`dreamtext COMMAND --help` lists a command's options and their defaults."]
    return "\n".join(lines)


def unknown_command(name: str) -> str:
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return f"unknown command {name!r}; {hint}`dreamtext --help` lists the commands"


def parse_command(args: list[str]):
    """The command a command line asks for (its first word names it). A command with `defaults(args)` (its
    config's defaults depend on a preset, a method or a saved run) is parsed over those defaults."""
    import tyro  # already imported with the command's module; named here so that `--help` stays torch- and tyro-free

    name, rest = args[0], args[1:]
    command = load_command(name)
    default = choose_parts(command.defaults(rest), rest) if hasattr(command, "defaults") else None
    # A part (a field's encoding) is chosen by its `kind` flag (`choose_parts`), not by a tyro subcommand: its
    # settings stay flags like every other (`--field.encoding.features 8`), in any order.
    return tyro.cli(command, args=rest, prog=f"dreamtext {name}", default=default, config=(tyro.conf.AvoidSubcommands,))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in (["--version"], ["-V"]):
        print(f"dreamtext {version()}")
        return 0
    if not args or args[0] in ("-h", "--help"):
        print(overview(), file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_BAD_INPUT
    if args[0] not in COMMANDS:
        print(f"dreamtext: error: {unknown_command(args[0])}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for name, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(name, value)
    try:
        command = parse_command(args)
    except DreamtextError as error:  # a preset or saved config that cannot be built
        print(f"dreamtext: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        code = command.run()
    except RunInterrupted as error:
        print(f"dreamtext: {error}", file=sys.stderr)
        return error.exit_code
    except DreamtextError as error:
        print(f"dreamtext: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("dreamtext: interrupted; the last checkpoint is kept, continue with --resume", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
