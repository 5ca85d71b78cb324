"""Descriptor training (thesis 5.2.2): learn the sentence's descriptor words as new tokens.

Each step augments the input image (thesis 6.1.9), encodes it with the prior's VAE, noises the latents
at a uniformly drawn t, and asks the frozen UNet for the noise twice: conditioned on the full
sentence with the learned tokens (with gradient) and on the fixed base sentence "An image of a <noun>"
(without). The loss is the thesis's eq. 5.4,

    L = || eps(x_t, t, tau_theta(full)) - eps ||^2 + || eps(x_t, t, tau_theta(full)) - eps(x_t, t, tau(base)) ||^2,

and Adam (lr 3e-4, PyTorch's defaults otherwise; thesis 6.1.10) updates only the learned rows. The
baselines change what is trained (`trainable`): the noun alone (RealFusion's textual inversion) or the
whole conditioning embedding of the sentence (the thesis's first approach, 6.3.1).

The run lives in DIR/descriptor (config.json, checkpoints/last.pt, metrics.json); the learned
embeddings go to DIR/embeddings (see `learned.py`). Everything random comes from one generator saved
in the checkpoint, so a resumed run continues bit-identically.

A sentence without descriptor words ("An image of a house": no word in front of the noun raised the
CLIP score) leaves DreamText nothing to learn: its learned sentence is the sentence itself. Then no
optimisation runs; the stage writes its usual files with zero tokens, so reconstruction goes on.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import DreamtextError
from ...prior import Prior, load_prior
from ...prior.camera import camera_labels
from ...prior.latents import images_to_latents
from ...prior.loading import is_builtin_model
from ...utils.device import PRECISION_DTYPES, Device, Precision, resolve_device
from ...utils.progress import Progress
from ...utils.workspace import Workspace
from ...utils.workspace_files import DESCRIPTOR_DIR, EMBEDDINGS_DIR
from ..lifecycle import check_schedule, check_seed, start_run, train_loop, train_run
from .augment import AugmentConfig, augment
from .inputs import workspace_input
from .learned import LearnedSentence
from .sentence import DescribedImage, SentenceTemplate, Trainable, read_described_image, training_template
from .tokens import TokenSplice, add_tokens, set_token_rows, unique_tokens, word_embedding

METHOD = "descriptor"
THESIS_DESCRIPTOR_ITERS = 10_000  # thesis 6.3.3: about 10k iterations
# ours: the built-in prior's descriptor length: as many steps as its text-to-3D preset takes, a few minutes on
# 2 CPU cores (its fixed-noise check gains within 300 of them: docs/experiments.md, image to 3D).
BUILTIN_DESCRIPTOR_ITERS = 1200
FIXED_NOISE_DRAWS = 64  # ours: the fixed-noise check's timesteps (`fixed_noise_losses`), evenly over the range
FIXED_NOISE_SEED = 0


@dataclass(frozen=True)
class DescriptorConfig:
    """Descriptor training settings; defaults are the thesis's DreamText (seed 5.2.2, 6.1.9-6.1.10, 6.3.3)."""

    trainable: Trainable = "descriptors"
    """descriptors: DreamText (thesis 5.2.2); noun: RealFusion-style textual inversion (thesis 6.3.1);
    sentence: the whole conditioning embedding (thesis 6.3.1, "embedding training"); none: nothing (the plain
    sentence, a baseline)."""
    base_loss_weight: float = 1.0  # thesis eq. 5.4: L_real + L_base, equal weights (RealFusion mode: 0)
    iters: int | None = None
    """None: thesis 6.3.3's about 10k on Stable Diffusion; BUILTIN_DESCRIPTOR_ITERS on the built-in prior."""
    lr: float = 3e-4  # thesis 6.1.10: Adam, lr 3e-4, PyTorch's default betas and eps, no weight decay
    batch_size: int = 1  # ours: the thesis does not say; one augmented copy per step
    t_min: float = 0.0  # thesis eq. 5.2: t ~ U(0, 1) over the prior's training timesteps
    t_max: float = 1.0
    sample_posterior: bool = True  # diffusers' textual-inversion script: a sample of the VAE posterior
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)  # thesis 6.1.9
    model: str | None = None
    """Stable Diffusion: a diffusers folder, a .safetensors file or a cached hub id (as `dreamtext text`)."""
    precision: Precision = "auto"
    """auto: bf16 on CUDA (ours: gradients flow through the UNet, bf16 needs no loss scaling), fp32 on CPU."""
    channels_last: bool = True  # ours, CUDA only: REFERENCE.md 4 measured the UNet faster so
    compile: Literal["off", "default", "reduce-overhead"] = "reduce-overhead"
    """CUDA only: torch.compile the UNet and the VAE encoder; reduce-overhead adds CUDA graphs. Ours: at batch 1
    the networks are bound by kernel launches; on an H100 a step took 50 ms instead of 86 ms eager, after about
    2 minutes of compilation. Falls back to eager if compilation fails."""
    seed: int = 0
    device: Device = "auto"
    checkpoint_every: int = 500  # ours: at most a few minutes lost to an interruption ...
    checkpoint_minutes: float = 2.0  # ... and at most 2 minutes of wall time
    max_nonfinite_steps: int = 20  # ours: consecutive non-finite steps before giving up with advice


def with_prior_defaults(config: DescriptorConfig) -> DescriptorConfig:
    """`config` with the settings left to the prior (None) filled in: the thesis's for Stable Diffusion, ours for the
    built-in prior."""
    if config.iters is not None:
        return config
    return dataclasses.replace(config, iters=BUILTIN_DESCRIPTOR_ITERS if is_builtin_model(config.model) else THESIS_DESCRIPTOR_ITERS)


def check_config(config: DescriptorConfig) -> None:
    config = with_prior_defaults(config)
    check_schedule(config.iters, config.checkpoint_every, config.checkpoint_minutes)
    check_seed(config.seed)
    if config.batch_size < 1 or not config.lr > 0 or not 0.0 <= config.t_min <= config.t_max <= 1.0:
        raise DreamtextError("descriptor training needs --batch-size >= 1, a positive --lr and 0 <= t_min <= t_max <= 1; got "
                             f"{config.batch_size}, {config.lr}, {config.t_min}, {config.t_max}")
    if config.max_nonfinite_steps < 1:
        raise DreamtextError(f"max_nonfinite_steps must be at least 1, got {config.max_nonfinite_steps}")


def nothing_to_learn(template: SentenceTemplate, trainable: Trainable) -> bool:
    """True for a token mode whose sentence has no slot (DreamText on a sentence without descriptor words) and for
    the plain sentence (`none`); the whole-sentence mode always trains its embedding."""
    return trainable != "sentence" and not template.words


def prior_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return PRECISION_DTYPES[precision]


@torch.no_grad()
def encode_prompts(prior: Prior, prompts: list[str]) -> Tensor:
    """Conditioning embeddings [N, 77, D] (last hidden states, as Stable Diffusion uses them)."""
    return _encode(prior, prompts)


def _encode(prior: Prior, prompts: list[str]) -> Tensor:
    tokenizer = prior.tokenizer
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(prior.device)
    return prior.text_encoder(ids)[0]


def predict_noise(prior: Prior, noisy: Tensor, timesteps: Tensor, cond: Tensor, alphas_cumprod: Tensor, unet=None) -> Tensor:
    """The UNet's noise estimate in float32, differentiable in `cond`; v-prediction models are converted.

    unet: the prior's UNet or a compiled wrapper of it (default: `prior.unet`).
    A camera-aware prior is given the unknown camera: a photo's camera is not known.
    """
    labels = camera_labels(prior.unet, None, noisy.shape[0], noisy.device, prior.dtype)
    unet = prior.unet if unet is None else unet
    output = unet(noisy.to(prior.dtype), timesteps, encoder_hidden_states=cond.to(prior.dtype), **labels).sample.float()
    if prior.scheduler.config.get("prediction_type", "epsilon") == "v_prediction":
        a = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        output = a.sqrt() * output + (1 - a).sqrt() * noisy.float()
    return output


class DescriptorTrainer:
    """Learns the trainable part of one image's sentence on a frozen prior.

    The prior's tokenizer and text encoder gain the learned tokens (their table rows hold the trained
    vectors once `finish()` ran), so a caller may reuse the prior for reconstruction.
    """

    def __init__(
        self, config: DescriptorConfig, workspace: str | Path, prior: Prior | None = None,
        described: DescribedImage | None = None,
    ):
        self.config = config
        self.root = Path(workspace)
        self.workspace = Workspace(self.root / DESCRIPTOR_DIR, create=False, must_exist=False)
        self.device = resolve_device(config.device)
        self.described = described if described is not None else read_described_image(self.root)
        self.template = training_template(self.described, config.trainable)
        if nothing_to_learn(self.template, config.trainable):
            raise DreamtextError(f"the sentence {self.described.sentence!r} has no descriptor words: nothing to train "
                                 "(`dreamtext descriptor` keeps the sentence as it is)")
        check_config(config)
        if prior is None:
            prior = load_prior(config.model, device=self.device, dtype=prior_dtype(config.precision, self.device))
        self.prior = prior
        if prior.text_encoder is None:
            raise DreamtextError("descriptor training needs the prior's text encoder; load the prior afresh")
        if self.device.type == "cuda" and config.channels_last:
            prior.unet.to(memory_format=torch.channels_last)
            prior.vae.to(memory_format=torch.channels_last)
        described = self.described
        self.compiled = self.device.type == "cuda" and config.compile != "off"
        self._use_eager_networks()
        if self.compiled:
            self.unet = torch.compile(prior.unet, mode=config.compile)
            self.encode_image = torch.compile(prior.vae.encode, mode=config.compile)
        self.image = workspace_input(self.root, described.image, None, prior.image_size).image.unsqueeze(0).to(self.device)
        self.alphas_cumprod = prior.scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.base = encode_prompts(prior, [self.described.base_sentence])  # [1, 77, D], fixed (thesis: tau_b)

        self.tokens: list[str] = []
        self.token_ids: list[int] = []
        self.splice: TokenSplice | None = None
        self.prompt_ids: Tensor | None = None
        if config.trainable == "sentence":
            # The thesis's first approach: the text encoder's whole output for the sentence is the parameter.
            self.parameter = nn.Parameter(encode_prompts(prior, [self.described.sentence])[0].float().clone())
        else:
            self.tokens = unique_tokens(self.template.words)
            init = torch.stack([word_embedding(prior.tokenizer, prior.text_encoder, w) for w in self.template.words])
            self.token_ids = add_tokens(prior.tokenizer, prior.text_encoder, self.tokens, init)
            self.parameter = nn.Parameter(init.float().clone())  # [n, D]: only these rows train
            self.splice = TokenSplice(prior.text_encoder, self.token_ids, self.parameter)
            tokenizer = prior.tokenizer
            self.prompt_ids = tokenizer([self.prompt], padding="max_length", max_length=tokenizer.model_max_length,
                                        truncation=True, return_tensors="pt").input_ids.to(self.device)
        # Thesis 6.1.10: Adam with PyTorch's defaults (betas 0.9/0.999, eps 1e-8, no weight decay).
        self.initial = self.parameter.detach().clone()  # the words' own embeddings: the fixed-noise check's baseline
        self.optimizer = torch.optim.Adam([self.parameter], lr=config.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.step = 0
        self.losses: list[tuple[float, float]] = []  # (L_real, L_base) of every step; nan for skipped ones
        self.skipped_steps = 0
        self._consecutive_nonfinite = 0

    def _use_eager_networks(self) -> None:
        self.unet, self.encode_image = self.prior.unet, self.prior.vae.encode

    @property
    def prompt(self) -> str:
        """The full sentence with the learned tokens (the whole-sentence mode keeps the plain sentence)."""
        return self.template.fill(self.tokens)

    # -- one step ------------------------------------------------------------------------------
    def conditioning(self) -> Tensor:
        """tau_theta(full sentence) [1, 77, D], differentiable in the trained parameter."""
        if self.prompt_ids is None:
            return self.parameter.unsqueeze(0)
        return self.prior.text_encoder(self.prompt_ids)[0]

    @torch.no_grad()
    def noised_latents(self) -> tuple[Tensor, Tensor, Tensor]:
        """(x_t, t, eps) for a batch of augmented copies of the image (thesis 5.2.2, figure 5.2 (6))."""
        config, prior, generator = self.config, self.prior, self.generator
        batch = config.batch_size
        images = augment(self.image.expand(batch, -1, -1, -1), config.augment, generator, size=prior.image_size)
        latents = images_to_latents(prior.vae, images, prior.dtype, config.sample_posterior, generator, self.encode_image,
                                    channels_last=self.device.type == "cuda" and config.channels_last)
        last = prior.num_train_timesteps - 1
        low, high = round(config.t_min * last), round(config.t_max * last)
        timesteps = torch.randint(low, high + 1, (batch,), generator=generator, device=self.device)
        noise = torch.randn(latents.shape, generator=generator, device=self.device, dtype=torch.float32)
        return self.noised(latents, timesteps, noise), timesteps, noise

    def noised(self, latents: Tensor, timesteps: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(alphabar_t) x + sqrt(1 - alphabar_t) eps (thesis eq. 5.2)."""
        alphabar = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        return alphabar.sqrt() * latents + (1 - alphabar).sqrt() * noise

    def losses_of(self, noisy: Tensor, timesteps: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """(L_real, L_base) of eqs. 5.2 and 5.3 (mean squared errors), L_real differentiable.

        Both noise estimates come from ONE UNet call on the doubled batch (full and base sentence): at
        batch 1 the UNet is bound by kernel launches, so the second half costs almost nothing. The base
        estimate is a constant target (detached), as in eq. 5.3 only tau_theta is trained.
        """
        batch = noisy.shape[0]
        cond = self.conditioning().expand(batch, -1, -1)
        if self.config.base_loss_weight == 0:
            eps_full = predict_noise(self.prior, noisy, timesteps, cond, self.alphas_cumprod, self.unet)
            loss_real = F.mse_loss(eps_full, noise)
            return loss_real, torch.zeros_like(loss_real)
        both = torch.cat([cond, self.base.expand(batch, -1, -1).to(cond.dtype)])
        eps = predict_noise(self.prior, torch.cat([noisy, noisy]), torch.cat([timesteps, timesteps]), both,
                            self.alphas_cumprod, self.unet)
        eps_full, eps_base = eps[:batch], eps[batch:].detach()
        return F.mse_loss(eps_full, noise), F.mse_loss(eps_full, eps_base)

    def train_step(self) -> tuple[float, float]:
        """One optimisation step; returns (L_real, L_base) (nan when the step was skipped as non-finite)."""
        try:
            loss_real, loss_base = self._forward_backward()
        except Exception as error:  # torch.compile fails at the first forward or backward, with many exception types
            if not self.compiled:
                raise
            print(f"dreamtext: warning: torch.compile failed ({type(error).__name__}); descriptor training continues eagerly",
                  file=sys.stderr)
            self.compiled = False
            self._use_eager_networks()
            return self.train_step()
        values = torch.stack([loss_real, loss_base, self.parameter.grad.norm()])
        real, base, grad_norm = values.tolist()  # one device sync per step
        self.step += 1
        if not all(v == v and abs(v) != float("inf") for v in (real, base, grad_norm)):
            self._skip_nonfinite(real + base)
            self.losses.append((float("nan"), float("nan")))
            return float("nan"), float("nan")
        self._consecutive_nonfinite = 0
        self.optimizer.step()
        self.losses.append((real, base))
        return real, base

    def _forward_backward(self) -> tuple[Tensor, Tensor]:
        """Gradients of eq. 5.4 in the learned parameter; the detached (L_real, L_base)."""
        noisy, timesteps, noise = self.noised_latents()
        loss_real, loss_base = self.losses_of(noisy, timesteps, noise)
        self.optimizer.zero_grad(set_to_none=True)
        (loss_real + self.config.base_loss_weight * loss_base).backward()
        return loss_real.detach(), loss_base.detach()

    def _skip_nonfinite(self, value: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        self._consecutive_nonfinite += 1
        print(f"dreamtext: warning: non-finite descriptor loss ({value}) at step {self.step}; step skipped", file=sys.stderr)
        if self._consecutive_nonfinite >= self.config.max_nonfinite_steps:
            raise DreamtextError(
                f"{self._consecutive_nonfinite} consecutive non-finite descriptor steps up to step {self.step}: "
                "lower --lr or run the prior in fp32 (--precision fp32)"
            )

    @torch.no_grad()
    def fixed_noise_losses(self, parameter: Tensor | None = None, draws: int = FIXED_NOISE_DRAWS) -> dict[str, float]:
        """L_real and L_base (eqs. 5.2, 5.3) on the image as given (no augmentation, the posterior's mean) at
        `draws` timesteps evenly over the training range, each with noise from one fixed seed: the same draws
        for every run and step, so the figure before and after training says what the learned words gained.
        `parameter`: the values to score (default: the current ones; `self.initial`: the words' own)."""
        prior, config = self.prior, self.config
        saved = self.parameter.detach().clone()
        if parameter is not None:
            self.parameter.copy_(parameter)
        try:
            latents = images_to_latents(prior.vae, self.image, prior.dtype, encode=prior.vae.encode)
            last = prior.num_train_timesteps - 1
            timesteps = torch.linspace(config.t_min * last, config.t_max * last, draws, device=self.device).round().long()
            generator = torch.Generator(device=self.device).manual_seed(FIXED_NOISE_SEED)
            noise = torch.randn((draws, *latents.shape[1:]), generator=generator, device=self.device, dtype=torch.float32)
            noisy = self.noised(latents, timesteps, noise)
            cond, base = self.conditioning(), self.base.to(self.parameter.dtype)
            real = base_loss = 0.0
            for chunk in torch.arange(draws, device=self.device).split(8):
                n = len(chunk)
                eps = predict_noise(prior, torch.cat([noisy[chunk]] * 2), torch.cat([timesteps[chunk]] * 2),
                                    torch.cat([cond.expand(n, -1, -1), base.expand(n, -1, -1)]), self.alphas_cumprod)
                real += F.mse_loss(eps[:n], noise[chunk], reduction="sum").item()
                base_loss += F.mse_loss(eps[:n], eps[n:], reduction="sum").item()
        finally:
            self.parameter.copy_(saved)
        return {"real": real / noise.numel(), "base": base_loss / noise.numel()}

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "parameter": self.parameter.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "losses": torch.tensor(self.losses, dtype=torch.float64).reshape(-1, 2),
            "skipped_steps": self.skipped_steps,
            "tokens": list(self.tokens),
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["tokens"]) != self.tokens or state["parameter"].shape != self.parameter.shape:
            raise DreamtextError(f"{self.workspace.checkpoint_path} was trained for another sentence; delete it to start over")
        with torch.no_grad():
            self.parameter.copy_(state["parameter"])
        self.optimizer.load_state_dict(state["optimizer"])
        generator_state = state["generator"]
        self.generator.set_state(generator_state.cpu() if self.device.type == "cpu" else generator_state)
        self.step = int(state["step"])
        self.losses = [tuple(row) for row in state["losses"].tolist()]
        self.skipped_steps = int(state["skipped_steps"])

    def train(self, progress: bool = True) -> None:
        config = self.config
        train_loop(self, self.workspace.create(), config.iters, "descriptor", progress, config.checkpoint_every,
                   config.checkpoint_minutes, scalars=lambda losses: {"real": losses[0], "base": losses[1]})

    # -- results ---------------------------------------------------------------------------------
    def learned(self) -> LearnedSentence:
        vectors = self.parameter.detach().float().cpu()
        trained_sentence = self.config.trainable == "sentence"
        return LearnedSentence(
            trainable=self.config.trainable, template=self.template.template, words=self.template.words,
            tokens=tuple(self.tokens), base_sentence=self.described.base_sentence,
            vectors=None if trained_sentence else vectors, conditioning=vectors if trained_sentence else None,
        )

    def finish(self) -> LearnedSentence:
        """Write the trained rows into the text encoder's table (no splice needed after) and save the embeddings."""
        if self.splice is not None:
            self.splice.remove()
            self.splice = None
            set_token_rows(self.prior.text_encoder, self.token_ids, self.parameter.detach())
        learned = self.learned()
        learned.save(self.root / EMBEDDINGS_DIR)
        return learned


@dataclass
class DescriptorResult:
    workspace: Path
    learned: LearnedSentence
    metrics: dict


def train_descriptor(
    workspace: str | Path, config: DescriptorConfig = DescriptorConfig(), resume: bool = False,
    progress: bool = True, prior: Prior | None = None,
) -> DescriptorResult:
    """Train the sentence of the image `dreamtext describe` chose for workspace DIR (thesis 5.2.2).

    Writes DIR/descriptor/{config.json, checkpoints/last.pt, metrics.json} and DIR/embeddings/; a sentence
    without descriptor words is kept as it is (`keep_plain_sentence`: no training, no checkpoint).
    prior: an already loaded prior (tests, the one-command pipeline); it gains the learned tokens.
    """
    root = Path(workspace)
    config = with_prior_defaults(config)
    check_config(config)
    run = start_run(root / DESCRIPTOR_DIR, METHOD, config, resume)
    config = run.config
    described = read_described_image(root)
    template = training_template(described, config.trainable)
    if nothing_to_learn(template, config.trainable):
        return keep_plain_sentence(root, config, described, template, prior)
    # Loads the prior: a bad model fails before anything is written.
    trainer = DescriptorTrainer(config, root, prior=prior, described=described)

    def finish(trainer: DescriptorTrainer, config: DescriptorConfig, ws: Workspace, training_seconds: float) -> dict:
        fixed_noise = {"words": trainer.fixed_noise_losses(trainer.initial), "learned": trainer.fixed_noise_losses()}
        learned = trainer.finish()  # the embeddings written, the tokens in the prior's text encoder
        finite = [real + config.base_loss_weight * base for real, base in trainer.losses if real == real]
        return {**descriptor_metrics(config, learned, trainer.step, trainer.skipped_steps, finite, trainer.prior.dtype),
                "fixed_noise_loss": fixed_noise, "stage_seconds": {"training": training_seconds}}

    metrics = train_run(run, METHOD, lambda _: (config, trainer), finish, progress)
    return DescriptorResult(workspace=root, learned=trainer.learned(), metrics=metrics)


def keep_plain_sentence(
    root: Path, config: DescriptorConfig, described: DescribedImage, template: SentenceTemplate, prior: Prior | None = None,
) -> DescriptorResult:
    """The descriptor stage for a sentence without descriptor words: nothing to learn, so no prior, no
    optimiser and no checkpoint. It writes what training writes (config.json, progress.json,
    metrics.json with 0 iterations, DIR/embeddings with zero tokens and the plain sentence as the
    template), so reconstruction runs text-to-3D from the sentence as it is; a rerun writes the same."""
    ws = Workspace(root / DESCRIPTOR_DIR)
    if ws.has_checkpoint():
        raise DreamtextError(f"{ws.checkpoint_path} was trained for another sentence; delete it to start over")
    check_config(config)
    if config.trainable != "none":
        print(f"dreamtext: warning: the sentence {described.sentence!r} has no descriptor words; "
              "nothing to train, the reconstruction uses it as it is", file=sys.stderr)
    ws.save_config(config, method=METHOD)
    with Progress(total=0, description="descriptor", enabled=False, status_path=ws.progress_path):
        pass  # the viewer's status file: 0 of 0 steps, finished
    learned = LearnedSentence(trainable=config.trainable, template=template.template, words=(), tokens=(),
                              base_sentence=described.base_sentence)
    learned.save(root / EMBEDDINGS_DIR)
    why = "the plain sentence was asked for" if config.trainable == "none" else "the sentence has no descriptor words"
    metrics = {
        **descriptor_metrics(config, learned, 0, 0, [], None if prior is None else prior.dtype),
        "note": f"{why}: nothing was trained; the reconstruction uses it as it is",
    }
    ws.write_metrics(metrics)
    return DescriptorResult(workspace=root, learned=learned, metrics=metrics)


def descriptor_metrics(
    config: DescriptorConfig, learned: LearnedSentence, iters: int, skipped_steps: int, losses: list[float],
    dtype: torch.dtype | None,
) -> dict:
    """metrics.json of the descriptor stage; losses: the finite total losses in step order."""
    return {
        "iters": iters,
        "skipped_steps": skipped_steps,
        "trainable": config.trainable,
        "prompt": learned.prompt,
        "tokens": list(learned.tokens),
        "mean_loss_first_100": sum(losses[:100]) / len(losses[:100]) if losses else None,
        "mean_loss_last_100": sum(losses[-100:]) / len(losses[-100:]) if losses else None,
        "prior_dtype": None if dtype is None else str(dtype).removeprefix("torch."),
    }


