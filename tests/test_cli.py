"""The command line is generated from the configs: every setting of a command's config has exactly one flag,
named by its dotted config name, and the defaults shown are the preset's (or the saved run's)."""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
import typing

import pytest
import tyro

from dreamtext.batch import BatchConfig
from dreamtext.cli.batch_commands import BatchCommand
from dreamtext.cli.defaults import choose_parts, first_positional
from dreamtext.cli.image_commands import DescribeCommand, DescriptorCommand, ImageCommand, ReconstructCommand
from dreamtext.cli.main import COMMANDS, load_command, main, parse_command
from dreamtext.cli.prior_commands import EvalPriorCommand, SampleCommand
from dreamtext.cli.scene_commands import FitCommand, TextCommand
from dreamtext.cli.workspace_commands import ViewCommand
from dreamtext.methods.describe import DescribeConfig
from dreamtext.methods.image_to_3d.descriptor import DescriptorConfig
from dreamtext.methods.image_to_3d.pipeline import ImageTo3DConfig
from dreamtext.utils.config import parse_settings
from dreamtext.methods.image_to_3d.reconstruct import ReconstructConfig
from dreamtext.methods.presets import BUILTIN
from dreamtext.methods.fit import FitConfig
from dreamtext.methods.sample import SampleConfig
from dreamtext.methods.text_to_3d import TextTo3DConfig
from dreamtext.prior.small.evaluate import PriorEvalConfig
from dreamtext.utils.config import config_to_dict, kinds
from dreamtext.utils.io import atomic_write_json
from dreamtext.viewer.server import ViewerConfig


def leaf_settings(config_type, prefix: str = "") -> list[str]:
    """Dotted flag names of every setting of a (nested) dataclass config that is not suppressed on the command line
    (a part named "" adds nothing to its settings' names)."""
    names = []
    hints = typing.get_type_hints(config_type, include_extras=True)
    for field in dataclasses.fields(config_type):
        hint, part_prefix = hints[field.name], f"{prefix}{field.name}."
        if typing.get_origin(hint) is typing.Annotated:
            marks = typing.get_args(hint)[1:]
            if any(marker is tyro.conf.Suppress for marker in marks):
                continue
            if any(getattr(marker, "name", None) == "" for marker in marks):
                part_prefix = prefix
            hint = typing.get_args(hint)[0]
        if kinds(hint):  # a part chosen by its kind: the default's settings (the first kind's)
            hint = next(iter(kinds(hint).values()))
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if len(options) == 1 and dataclasses.is_dataclass(options[0]):  # an optional part its command fills
            hint = options[0]
        if dataclasses.is_dataclass(hint):
            names += leaf_settings(hint, part_prefix)
        else:
            names.append(prefix + field.name)
    return names


def option_strings(command, args: list[str], capsys) -> list[str]:
    """The flags `--help` lists, each where it is defined (the start of its line)."""
    with pytest.raises(SystemExit):
        tyro.cli(command, args=[*args, "--help"], default=choose_parts(command.defaults(args), args) if hasattr(command, "defaults") else None,
                 config=(tyro.conf.AvoidSubcommands,))
    text = capsys.readouterr().out
    options = []
    for line in text.splitlines():
        definition = re.match(r"^[^-\w]*(-.*?)(?:  |$)", line)  # "-n INT, --n INT", up to its description
        if definition:
            options += re.findall(r"(?:^|, )(--[a-z][\w.-]*)", definition.group(1))
    return options


def test_a_part_is_chosen_by_its_kind_and_its_settings_are_flags(tmp_path, capsys):
    from dreamtext.scene.hash_encoding import HashGridConfig
    from dreamtext.scene.triplane import TriplaneConfig

    command = parse_command(["text", "a mug", "--field.encoding.features", "4", "--field.encoding.kind", "triplane"])
    assert command.config.field.encoding == TriplaneConfig(features=4)
    assert parse_command(["text", "a mug"]).config.field.encoding == HashGridConfig(log2_hashmap_size=16, max_resolution=128)
    options = option_strings(TextCommand, ["--field.encoding.kind", "triplane"], capsys)
    assert {"--field.encoding.features", "--field.encoding.aggregate"} <= set(options)
    assert "--field.encoding.log2-hashmap-size" not in options
    # A saved run's part is the default of --resume; another kind given now replaces it
    workspace = tmp_path / "w"
    workspace.mkdir()
    atomic_write_json(workspace / "config.json", {"method": "text", "config": config_to_dict(command.config)})
    resumed = parse_command(["text", "a mug", "--workspace", str(workspace), "--resume"])
    assert resumed.config.field.encoding == TriplaneConfig(features=4)
    assert main(["text", "a mug", "--field.encoding.kind", "voxels", "--iters", "1"]) == 2


@pytest.mark.parametrize("command, config_type", [
    (TextCommand, TextTo3DConfig), (FitCommand, FitConfig), (DescriptorCommand, DescriptorConfig),
    (ReconstructCommand, ReconstructConfig), (ImageCommand, ImageTo3DConfig), (DescribeCommand, DescribeConfig),
    (ViewCommand, ViewerConfig), (SampleCommand, SampleConfig), (EvalPriorCommand, PriorEvalConfig),
    (BatchCommand, BatchConfig)])
def test_every_setting_has_exactly_one_flag(command, config_type, capsys):
    options = option_strings(command, [], capsys)
    assert len(options) == len(set(options)), "a flag appears twice"
    # a stage command spells its settings as `image` does (issue 40: one spelling for a setting across commands)
    prefix = {DescriptorCommand: "descriptor.", ReconstructCommand: "reconstruct.", DescribeCommand: "describe."}.get(command, "")
    for name in leaf_settings(config_type, prefix):
        flag = "--" + name.replace("_", "-")
        matches = [option for option in options if option == flag]
        assert len(matches) == 1, f"{name}: {matches}"


def test_text_defaults_are_the_presets_and_help_says_each_default_once(capsys):
    assert TextCommand.defaults(["--preset", "fitfusion"]).config.render_size == 256
    assert TextCommand.defaults([]).config.render_size == 32  # the built-in prior: the builtin preset
    with pytest.raises(SystemExit):
        tyro.cli(TextCommand, args=["--preset", "fitfusion", "--help"], default=TextCommand.defaults(["--preset", "fitfusion"]))
    help_text = capsys.readouterr().out
    assert "(default: 256)" in help_text and "(default: 1000.0)" in help_text
    for line in help_text.splitlines():
        assert line.count("(default:") <= 1, line


def test_every_command_parses_its_help_and_says_each_default_once(capsys, monkeypatch):
    """Every command's --help parses; no option's text gives its default twice (its docstring's "(None: ...)"
    and tyro's "(default: ...)"), however the terminal wraps it; the overview lists each command by its
    docstring's first line."""
    monkeypatch.setenv("COLUMNS", "80")  # one column, so an option's text is contiguous
    for name in COMMANDS:
        with pytest.raises(SystemExit) as done:
            parse_command([name, "--help"])
        assert done.value.code == 0, name
        text = re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", capsys.readouterr().out))
        doubled = [option[:120] for option in re.split(r" (?=--[a-z])", text) if option.count("(default:") > 1]
        assert doubled == [], name
        assert inspect.getdoc(load_command(name)).splitlines()[0] == COMMANDS[name].summary, name
    assert main(["--help"]) == 0
    overview = capsys.readouterr().out
    assert all(f"  {name} " in overview for name in COMMANDS)


def test_overview_version_and_unknown_commands_answer_without_importing_torch():
    """`dreamtext --help`, `--version` and a mistyped command import neither torch nor any command's module."""
    script = ("import sys; from dreamtext.cli.main import main; codes = [main(['--help']), main(['--version']), "
              "main(['txt'])]; print(codes, 'torch' in sys.modules, 'tyro' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 2] False False"
    assert done.stderr.strip() == "dreamtext: error: unknown command 'txt'; did you mean `text`? `dreamtext --help` lists the commands"


def test_image_commands_take_their_method_defaults_wherever_the_workspace_stands(tmp_path):
    """descriptor / reconstruct / image defaults are the method's (--method, else the workspace's stage file);
    the workspace is found among the flags, whether they take a value or not."""
    assert first_positional(DescriptorCommand, ["--descriptor.iters", "5", "--resume", "--descriptor.sample-posterior", "W",
                                                "--descriptor.lr", "1"]) == "W"
    assert first_positional(DescriptorCommand, ["--descriptor.iters=5", "W"]) == "W"
    assert first_positional(DescriptorCommand, ["--descriptor.iters", "5"]) is None

    command = parse_command(["descriptor", "--descriptor.iters", "5", str(tmp_path), "--method", "realfusion"])
    assert (command.config.iters, command.config.trainable, command.config.base_loss_weight) == (5, "noun", 0.0)
    atomic_write_json(tmp_path / "stage.json", {"method": "realfusion"})
    command = parse_command(["reconstruct", "--reconstruct.render-size", "64", str(tmp_path), "--reconstruct.sds.guidance", "7"])
    assert command.config.text.render_size == 64 and command.config.reference.on  # the workspace's method
    assert command.config.text.sds.guidance == 7.0 and command.config.text.iters == BUILTIN["iters"]  # the builtin preset's, one flag on top
    assert parse_command(["reconstruct", str(tmp_path), "--method", "dreamtext"]).config.reference.on is False

    saved = DescriptorConfig(iters=77, lr=1e-3)
    atomic_write_json(tmp_path / "descriptor" / "config.json", {"method": "descriptor", "config": config_to_dict(saved)})
    resumed = parse_command(["descriptor", str(tmp_path), "--resume", "--descriptor.lr", "2e-3"]).config
    assert (resumed.iters, resumed.lr) == (77, 2e-3)  # the saved run's values, the options given on top

    image = parse_command(["image", "photo.png", "--method", "sentence", "--device", "cpu", "--descriptor.iters", "3",
                           "--reconstruct.render-size", "32", "--describe.sentence.noun", "mug"]).settings.image_config()
    assert (image.method, image.descriptor.trainable, image.descriptor.iters, image.reconstruct.text.render_size) == ("sentence", "sentence", 3, 32)
    assert image.describe.sentence.noun == "mug" and {image.describe.device, image.descriptor.device, image.reconstruct.text.device} == {"cpu"}
    # a Stable Diffusion model given once picks the reconstruction's preset (thesis 8.1) before any of its settings
    thesis = parse_command(["image", "photo.png", "--model", "some/sd-model", "--reconstruct.sds.guidance", "50"]).settings.image_config()
    assert (thesis.reconstruct.text.render_size, thesis.reconstruct.text.iters, thesis.reconstruct.text.sds.guidance) == (256, 10_000, 50.0)
    assert thesis.reconstruct.text.model == thesis.descriptor.model == "some/sd-model"


def test_image_defaults_to_dreamtext_with_the_photos_view_and_diverse_to_the_thesiss_dreamtext():
    image = parse_command(["image", "photo.png"]).settings.image_config()
    assert image.method == "dreamtext+reference" and image.reconstruct.reference.on
    assert image.descriptor.trainable == "descriptors" and image.descriptor.base_loss_weight == 1.0  # DreamText's words
    diverse = parse_command(["diverse", "a red mug"]).settings.image_config()
    assert diverse.method == "dreamtext" and not diverse.reconstruct.reference.on  # a drawing's camera is unknown
    assert parse_command(["image", "photo.png", "--method", "dreamtext"]).settings.image_config().reconstruct.reference.on is False


def test_repeated_set_flags_keep_every_setting():
    """A repeated --set must never drop the earlier ones silently (tyro's default keeps the last)."""
    bench = parse_command(["bench", "world", "--json", "--set", "iters=1", "--set", "init.camera_candidates=4"])
    assert bench.set == ("iters=1", "init.camera_candidates=4")
    world = bench.world_config(parse_settings(bench.set))  # the world suite's config, whole, with the quick-free defaults
    assert world.overrides == {"iters": 1, "init.camera_candidates": 4} and world.kinds == ("text",) and world.cases == 8
    batch = parse_command(["batch", "jobs.txt", "--set", "iters=600", "--set", "seed=2"])
    assert batch.config.set == ("iters=600", "seed=2")
