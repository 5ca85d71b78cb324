"""The `dreamtext` command: one subcommand per job, each generated from a typed dataclass.

Errors caused by the user's input print one line and exit with status 2; nothing is overwritten.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..errors import EXIT_BAD_INPUT, DreamtextError
from ..methods.fit import FitConfig
from ..methods.lifecycle import RunInterrupted
from ..methods.presets import PRESETS
from ..methods.text_to_3d import TextTo3DConfig
from .defaults import flag_value, saved_config
from .image_commands import IMAGE_COMMANDS
from ..utils.device import Device


@dataclass
class FitCommand:
    """Fit a radiance field to posed images (transforms.json + images), then export a mesh and videos.

    With no folder, the built-in analytic scene (a red mug) is rendered into the workspace and fitted.
    """

    data: tyro.conf.Positional[str | None] = None
    """Folder holding transforms.json (Instant-NGP / nerfstudio convention) and the images."""
    workspace: str = "out/fit"
    """Folder that receives config, checkpoints, validation renders, mesh and videos."""
    resume: bool = False
    """Continue the run saved in the workspace."""
    quiet: bool = False
    config: Annotated[FitConfig, tyro.conf.arg(name="")] = field(default_factory=FitConfig)

    @classmethod
    def defaults(cls, args: list[str]) -> "FitCommand":
        """FitConfig's defaults, or with --resume the saved run's (an option left out keeps the run's value)."""
        config = saved_config(flag_value(args, "--workspace") or cls.workspace, FitConfig()) if "--resume" in args else None
        return cls(config=config or FitConfig())

    def run(self) -> None:
        from ..methods.fit import fit

        config = replace(self.config, data=self.data)
        result = fit(config, self.workspace, resume=self.resume, progress=not self.quiet)
        print(f"held-out PSNR {result.heldout_psnr:.2f} dB; outputs in {result.workspace}")


@dataclass
class TextCommand:
    """Create a 3D object from a text prompt by score distillation on Stable Diffusion.

    Writes config, checkpoints, validation renders, a turntable video, named views and a GLB mesh. Every
    setting of the run is an option (`--sds.guidance`, `--renderer.max-samples-per-chunk`, ...); their defaults
    are the chosen preset's, or with --resume the saved run's.
    """

    prompt: tyro.conf.Positional[str]
    workspace: str = "out/text"
    preset: PresetName | None = None
    """builtin: the built-in prior on a CPU (32 px, a small field, 1200 iterations, the prior's hull as the start);
    dreamfusion: Stable DreamFusion as the thesis started from it (64 px, guidance 100, 10k iterations);
    fitfusion: the thesis's tuned settings (256 px, guidance 1000, 20k iterations). None: builtin for the
    built-in prior, else dreamfusion."""
    resume: bool = False
    """Continue the run saved in the workspace (the same schedule and random stream; options given now on top)."""
    quiet: bool = False
    config: Annotated[TextTo3DConfig, tyro.conf.arg(name="")] = field(default_factory=TextTo3DConfig)

    @classmethod
    def defaults(cls, args: list[str]) -> "TextCommand":
        """The defaults this command line starts from: the preset's config (the preset named, else the one its
        --model implies), or with --resume the saved run's."""
        from ..methods.presets import default_preset, preset_config

        preset = flag_value(args, "--preset")
        config = preset_config(preset or default_preset(flag_value(args, "--model")), "")
        workspace = flag_value(args, "--workspace") or cls.workspace
        if "--resume" in args:
            config = saved_config(workspace, config) or config
        return cls(prompt=tyro.MISSING, config=config)

    def run(self) -> None:
        from ..methods.text_to_3d import text_to_3d

        config = replace(self.config, prompt=replace(self.config.prompt, prompt=self.prompt))
        result = text_to_3d(config, self.workspace, resume=self.resume, progress=not self.quiet)
        print(f"{result.metrics['iters']} iterations; outputs in {result.workspace}")


@dataclass
class RenderCommand:
    """Render a trained workspace again: turntable video and named views."""

    workspace: tyro.conf.Positional[str]
    frames: int = 60
    size: int = 256

    def run(self) -> None:
        from ..methods.trained import load_trained
        from ..export.outputs import render_outputs

        trained = load_trained(self.workspace)
        files = render_outputs(trained, Path(self.workspace), frames=self.frames, size=self.size, progress=True)
        print("wrote " + ", ".join(str(f) for f in files))


@dataclass
class ExportCommand:
    """Export the mesh of a trained workspace."""

    workspace: tyro.conf.Positional[str]
    format: Literal["glb", "obj", "ply"] = "glb"
    resolution: int | None = None
    """Marching-cubes grid resolution (default: the run's export config)."""
    texture: bool = False
    """Bake a UV texture (xatlas) instead of vertex colours (without it: as the run's export config says)."""
    out: str | None = None
    """Output path (default: WORKSPACE/mesh.FORMAT)."""

    def run(self) -> None:
        from ..methods.trained import load_trained
        from ..export.outputs import export_mesh

        trained = load_trained(self.workspace)
        files = export_mesh(trained, self.out or str(Path(self.workspace) / f"mesh.{self.format}"), self.format,
                            resolution=self.resolution, texture=True if self.texture else None, progress=True)
        print("wrote " + ", ".join(str(f) for f in files))


@dataclass
class BenchCommand:
    """Run a benchmark and print its figures (JSON with --json)."""

    suite: tyro.conf.Positional[Literal["engine", "sds", "descriptor", "step", "world"]]
    json: bool = False
    quick: bool = False
    """A small, fast version of the suite (for tests and smoke checks)."""
    device: Device = "auto"
    split: Literal["train", "dev"] | None = None
    """world: the split the objects come from (default dev, held out from the prior's training)."""
    cases: int | None = None
    """world: how many objects (one per noun; default 8, 1 with --quick)."""
    nouns: tuple[str, ...] | None = None
    """world: only the cases of these nouns among them ("asymmetric": the nouns with a front and a back)."""
    workspace: str | None = None
    """world: keep the runs in this folder (one subfolder per case; an interrupted benchmark resumes)."""
    kinds: str | None = None
    """world: comma-separated case kinds (default text): text, dreamtext, realfusion, dreamtext_ref
    (image-to-3D from a true render), diversity (diverse vs text-to-3D over K seeds)."""
    seeds: int | None = None
    """world: runs per case, with seeds 0, 1, ... (default 1); the means are over every run."""
    start: Literal["blob", "prior_hull", "truth", "truth_hull"] | None = None
    """world: what text-to-3D starts from (default: the preset's; builtin's is prior_hull, held near it).
    blob: the density blob. prior_hull: the visual hull of the prior's own drawings (as `text --init
    prior_hull`). Diagnostics: truth, the field first fitted to the true object; truth_hull, the prior
    hull carved from exact renders of the true object at the hull's assumed cameras. `start_iou` beside
    the final IoU says how near the start was and whether the distillation keeps it."""

    engine: Literal["local", "ray"] | None = None
    """world: where the cases run, as `dreamtext batch` runs jobs (default: one after another in this process)."""
    workers: int | None = None
    """world: cases at once (local processes or Ray tasks)."""
    address: str | None = None
    """world, Ray: the cluster to join (default: start a local one)."""
    set: tuple[str, ...] = ()
    """world: KEY=VALUE text-to-3D settings on top of the preset, by config name (e.g. sds.guidance_form=perp_neg;
    values read as JSON, else as text)."""

    def run(self) -> None:
        from ..bench import run_benchmark

        engine = None
        if self.engine is not None or self.workers is not None or self.address is not None:
            from ..batch import BatchConfig

            engine = BatchConfig(engine=self.engine or "local", workers=self.workers, address=self.address, gallery=False)
        run_benchmark(self.suite, as_json=self.json, quick=self.quick, device=self.device, split=self.split,
                      cases=self.cases, workspace=self.workspace, kinds=self.kinds, seeds=self.seeds, start=self.start,
                      engine=engine, overrides=parse_settings(self.set) if self.set else None, nouns=self.nouns)


@dataclass
class TrainPriorCommand:
    """Train the built-in prior on world renders, one stage at a time (clip, vae, unet, assemble) or all.

    Stages write DIR/clip, DIR/vae, DIR/unet and, with assemble, the Stable Diffusion folder DIR/pipeline.
    """

    stage: tyro.conf.Positional[Literal["clip", "vae", "unet", "assemble", "all"]]
    out: str = "out/prior"
    """Folder that receives every stage's output."""
    device: Device = "auto"
    steps: int | None = None
    """Training steps (default: the stage's schedule for the device)."""
    seed: int = 0
    batch_size: int | None = None
    """Minibatch size of the stage(s) (default: the stage's schedule for the device)."""
    pool_size: int | None = None
    """World renders shared by the stages (default: 256 on CPU, 32768 on CUDA)."""
    workers: int | None = None
    """CPU processes that render the pool (default: every core)."""
    max_minutes: float | None = None
    """Safety stop per stage: save what is trained after this long."""
    init_clip: str | None = None
    """Continue this CLIP instead of training a new one (builtin: the shipped one; or a DIR/clip): only its
    image side trains, against its frozen text tower, so a diffusion model trained on that tower stays valid."""
    init_unet: str | None = None
    """Continue this pipeline's UNet (builtin: the shipped one; or a DIR/pipeline) on its own frozen VAE and text
    encoder, with a warm-up and a cosine decay; writes DIR/unet and the assembled DIR/pipeline."""
    camera: bool = False
    """With --init-unet: the UNet gains the camera input (diffusers class_labels, see dreamtext.prior.camera) and
    trains on each render's true camera. Its state is kept in DIR/unet-state.pt; running again continues it."""
    attention_head_dim: tuple[int, ...] | None = None
    """With --init-unet: another head layout for the continued UNet (heads per level, e.g. 2 4 4)."""
    quiet: bool = False

    def run(self) -> None:
        from ..prior.small.train import train_prior

        if self.init_clip is not None and self.stage not in ("clip", "all"):
            raise DreamtextError(f"--init-clip continues a CLIP; it applies to the clip stage, not {self.stage!r}")
        results = train_prior(self.stage, self.out, device=self.device, steps=self.steps, seed=self.seed,
                              batch_size=self.batch_size, progress=not self.quiet, pool_size=self.pool_size,
                              workers=self.workers, max_minutes=self.max_minutes, init_clip=self.init_clip,
                              init_unet=self.init_unet, camera=self.camera,
                              attention_head_dim=self.attention_head_dim)
        for name, result in results.items():
            print(f"{name}: wrote {result.get('out_dir', self.out)}")


@dataclass
class EvalPriorCommand:
    """Measure a trained small prior: sample images for held-out captions and classify them with the small CLIP."""

    pipeline: str = "builtin"
    """The Stable Diffusion folder (`train-prior assemble` writes DIR/pipeline); builtin: the shipped prior."""
    clip: str = "builtin"
    """The small CLIP that classifies the samples (`train-prior clip` writes DIR/clip); builtin: the shipped one."""
    count: int = 256
    """Held-out objects whose plain captions are drawn and classified (noun and colour top-1)."""
    pose_count: int = 64
    """Held-out objects drawn at known cameras and matched against true renders for their pose (0: skip)."""
    steps: int = 30
    guidance: float = 7.5
    seed: int = 0
    device: Device = "auto"
    json: bool = False

    def run(self) -> None:
        import json as json_module

        from ..prior.builtin import BUILTIN_CLIP_DIR, require_builtin_prior
        from ..prior.loading import BUILTIN_MODEL, resolve_model
        from ..prior.small.evaluate import PriorEvalConfig, evaluate_prior
        from ..utils.device import resolve_device

        pipeline = Path(resolve_model(self.pipeline))  # "builtin": the shipped pipeline, checked to be installed
        if self.clip == BUILTIN_MODEL:
            require_builtin_prior()
        clip = BUILTIN_CLIP_DIR if self.clip == BUILTIN_MODEL else Path(self.clip)
        for name, folder in (("--pipeline", pipeline), ("--clip", clip)):
            if not (folder / ("model_index.json" if name == "--pipeline" else "config.json")).is_file():
                raise DreamtextError(f"{name} {str(folder)!r} holds no trained model; run `dreamtext train-prior all` first")
        config = PriorEvalConfig(count=self.count, steps=self.steps, guidance=self.guidance, seed=self.seed,
                                 pose_count=self.pose_count)
        result = evaluate_prior(pipeline, clip, config, resolve_device(self.device))
        if self.json:
            print(json_module.dumps(result, indent=2))
        else:
            print(f"noun top-1 {result['noun_top1']:.1%}, colour top-1 {result['colour_top1']:.1%} on {result['count']} "
                  f"samples (CLIP on true renders: {result['clip_on_renders']['noun_top1']:.1%} / "
                  f"{result['clip_on_renders']['colour_top1']:.1%})")
            if "pose_top1" in result:
                print(f"pose within {PriorEvalConfig.pose_tolerance_deg:.0f} degrees: {result['pose_top1']:.1%} of "
                      f"{result['pose_count']} drawings, {result['pose_top1_asymmetric']:.1%} of the "
                      f"{result['pose_asymmetric_count']} asymmetric objects")


@dataclass
class ViewCommand:
    """Open a workspace in the browser: its trained field (shading modes, light direction) or mesh, live while it trains."""

    workspace: tyro.conf.Positional[str]
    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every network interface)."""
    port: int = 8080
    """Port to listen on (the next free one is taken when it is busy; 0: any free port)."""
    device: Device = "auto"
    resolution: int | None = None
    """Height in pixels of a still frame (default: 512 on CUDA, 128 on CPU)."""

    def run(self) -> None:
        from ..viewer.server import ViewerConfig, serve

        serve(self.workspace, ViewerConfig(host=self.host, port=self.port, device=self.device, render_height=self.resolution))


@dataclass
class GalleryCommand:
    """Write a static web page comparing runs: prompt or input, turntables, named views, metrics and each mesh in 3D."""

    workspaces: tyro.conf.Positional[tuple[str, ...]]
    out: str = "site"
    """Folder that receives index.html, the runs' files and the page's scripts (no CDN, works offline)."""
    title: str = "dreamtext results"

    def run(self) -> None:
        from ..gallery import build_gallery

        index = build_gallery(self.workspaces, self.out, title=self.title)
        print(f"wrote {index}; view it with: python3 -m http.server -d {self.out}")


@dataclass
class DescribeCommand:
    """Choose the sentence that describes an image (DreamText's first step): CLIP picks the noun, then words
    are put in front of it while the image-text similarity rises.

    Writes WORKSPACE/input.png (square, on white), input_mask.png (when the image has transparency) and
    describe.json (the sentence, its words and every step's score), which `dreamtext descriptor` reads.
    """

    image: tyro.conf.Positional[str]
    workspace: str = "out/image"
    noun: str | None = None
    """Fix the noun instead of letting CLIP choose it (thesis: --noun watch)."""
    quantifier: str | None = None
    """The word before the noun ("a", "an", "two"; default: the article that fits the noun)."""
    clip: str | None = None
    """CLIP model: a folder, a cached hub id (e.g. openai/clip-vit-large-patch14), small:PATH, open_clip:MODEL[:PRETRAINED]
    (default: the built-in small CLIP)."""
    vocabulary: str | None = None
    """Word lists: general, world, or a folder with nouns.txt and adjectives.txt (default: the CLIP's own)."""
    size: int = 512
    """Side of the prepared square image in pixels."""
    device: Device = "auto"

    def run(self) -> None:
        from ..data.input_image import InputImageConfig
        from ..methods.describe import DescribeConfig, SentenceConfig, describe_image

        config = DescribeConfig(clip=self.clip, vocabulary=self.vocabulary, device=self.device,
                                sentence=SentenceConfig(noun=self.noun, quantifier=self.quantifier),
                                image=InputImageConfig(size=self.size))
        selection = describe_image(self.image, self.workspace, config)
        print(f'"{selection.sentence}" (CLIP similarity {selection.score:.4f}); wrote {Path(self.workspace) / "describe.json"}')


@dataclass
class SampleCommand:
    """Draw images from the 2D prior for a prompt (DDIM with classifier-free guidance), plus a contact sheet.

    Writes WORKSPACE/samples/sample_000.png ..., contact_sheet.png and samples.json (prompt, settings, seed of each image).
    """

    prompt: tyro.conf.Positional[str]
    workspace: str = "out/sample"
    n: Annotated[int, tyro.conf.arg(aliases=("-n",))] = 4
    """Number of images; image i uses seed + i."""
    model: str | None = None
    """Stable Diffusion 1.x/2.x: a diffusers folder, a .safetensors file or a cached hub id."""
    steps: int = 50
    """DDIM steps."""
    guidance: float = 7.5
    """Classifier-free guidance scale (uncond + s (cond - uncond))."""
    seed: int = 0
    negative_prompt: str = ""
    batch_size: int = 4
    device: Device = "auto"
    elevation: float | None = None
    """Camera-aware priors (the built-in one): draw from this many degrees above the horizon (default: no camera)."""
    azimuth: float | None = None
    """Camera-aware priors: draw from this many degrees around the object, from its front towards its right."""
    quiet: bool = False

    def run(self) -> None:
        from ..methods.sample import SampleConfig, sample_to_workspace

        config = SampleConfig(prompt=self.prompt, n=self.n, model=self.model, steps=self.steps, guidance=self.guidance,
                              negative_prompt=self.negative_prompt, seed=self.seed, batch_size=self.batch_size,
                              device=self.device, elevation=self.elevation, azimuth=self.azimuth)
        files = sample_to_workspace(config, self.workspace, progress=not self.quiet)
        print("wrote " + ", ".join(str(f) for f in files))


def parse_settings(pairs: tuple[str, ...]) -> dict:
    """KEY=VALUE pairs as dotted settings; a VALUE is JSON where it parses (numbers, true, lists), else text."""
    import json

    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DreamtextError(f"--set {pair!r}: write KEY=VALUE, e.g. sds.guidance_form=perp_neg")
        try:
            settings[key.strip().lstrip("-").replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip().lstrip("-").replace("-", "_")] = value
    return settings


@dataclass
class BatchCommand:
    """Run a list of jobs: a text file of prompts (one per line) or JSON Lines (kind text / image / diverse,
    prompt or image, preset, overrides by config name, seeds). One workspace per job under --workspace;
    finished jobs are skipped and interrupted ones resume when run again; DIR/summary.json and a gallery of
    every finished job at the end."""

    jobs: tyro.conf.Positional[str]
    workspace: str = "out/batch"
    engine: Literal["local", "ray"] = "local"
    """local: this machine (--workers processes); ray: one Ray task per job (pip install "dreamtext[ray]")."""
    workers: int | None = None
    """Jobs at once: local processes (default 1), or at most this many Ray tasks (default: as the cluster allows)."""
    address: str | None = None
    """Ray: the cluster to join ("auto" or host:port; default: start a local one)."""
    gpus_per_job: float | None = None
    """Ray: GPUs a job asks for (default: 1 when the cluster has GPUs, else 0)."""
    cpus_per_job: float | None = None
    """Ray: CPUs a job asks for (default 1)."""
    seeds: tuple[int, ...] | None = None
    """Run every job without its own "seeds" once per seed."""
    shard: str | None = None
    """INDEX/COUNT: only this share of the jobs (Slurm arrays: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)."""
    gallery: bool = True
    """Write DIR/gallery with every finished job."""
    quiet: bool = False

    def run(self) -> None:
        from ..batch import BatchConfig, run_batch
        from ..batch.jobs import parse_shard

        config = BatchConfig(engine=self.engine, workers=self.workers, address=self.address, gpus_per_job=self.gpus_per_job,
                             cpus_per_job=self.cpus_per_job, seeds=self.seeds, gallery=self.gallery,
                             shard=None if self.shard is None else parse_shard(self.shard))
        summary = run_batch(self.jobs, self.workspace, config, progress=not self.quiet)
        counts = summary["counts"]
        print(f"{counts['done']} done ({summary['skipped']} already finished), {counts['failed']} failed; "
              f"summary in {Path(self.workspace) / 'summary.json'}")
        return EXIT_JOBS_FAILED if counts["failed"] else 0


COMMANDS = {"fit": FitCommand, "text": TextCommand, "render": RenderCommand, "export": ExportCommand, "bench": BenchCommand,
            "describe": DescribeCommand, "sample": SampleCommand,
            "train-prior": TrainPriorCommand, "eval-prior": EvalPriorCommand,
            "view": ViewCommand, "gallery": GalleryCommand, "batch": BatchCommand, **IMAGE_COMMANDS}


# Third-party messages no dreamtext user can act on ("pip install accelerate", torchvision fallbacks, weight
# loading bars); set before those libraries are imported, and only where the user has not set them.
PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]  # the preset table's own names
EXIT_JOBS_FAILED = 1  # dreamtext batch: some jobs failed (each one's error is in summary.json)
QUIET_LIBRARIES = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as package_version

    try:
        return package_version("dreamtext")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def parse_command(args: list[str]):
    """The command a command line asks for. A command with `defaults(args)` (its config's defaults depend on a
    preset or a saved run) is parsed on its own with those defaults; the rest through one subcommand parser."""
    name = args[0] if args else None
    command = COMMANDS.get(name)
    if command is not None and hasattr(command, "defaults"):
        rest = args[1:]
        return tyro.cli(command, args=rest, prog=f"dreamtext {name}", default=command.defaults(rest))
    return tyro.extras.subcommand_cli_from_dict(COMMANDS, prog="dreamtext", args=args)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in (["--version"], ["-V"]):
        print(f"dreamtext {version()}")
        return 0
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
