"""prior.latents: the one recipe between [0, 1] images and Stable Diffusion's scaled latents."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from dreamtext.metrics import psnr
from dreamtext.prior.builtin import builtin_prior_available
from dreamtext.prior.latents import images_to_latents, latents_to_images
from dreamtext.prior.loading import Prior, load_prior
from dreamtext.prior.small.render_pool import PoolSpec, render_world_pool
from tiny_sd import build_tiny_sd_pipeline


@pytest.fixture(scope="module")
def tiny_vae():
    return Prior.from_pipeline(build_tiny_sd_pipeline(seed=0)).vae


def test_posterior_draws_repeat_by_seed_and_average_to_the_mean(tiny_vae):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    mean = images_to_latents(tiny_vae, images)

    def draws(seed: int, count: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.stack([images_to_latents(tiny_vae, images, sample=True, generator=generator) for _ in range(count)])

    assert mean.dtype == torch.float32 and mean.shape == (2, 4, 8, 8)
    torch.testing.assert_close(draws(3, 2), draws(3, 2), rtol=0, atol=0)
    many = draws(4, 256)
    spread = many.std(dim=0)
    assert spread.min() > 0  # a draw, not the mean
    # The draws' average is the (scaled) mean up to its standard error, element by element.
    assert ((many.mean(dim=0) - mean).abs() <= 5 * spread / 256**0.5).all()


def test_latents_are_differentiable_in_the_images(tiny_vae):
    """SDS and the descriptor train through this encoding: its gradient agrees with a finite difference."""
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(1, 3, 16, 16, generator=generator, requires_grad=True)
    direction = torch.randn(1, 3, 16, 16, generator=generator)
    weights = torch.randn(1, 4, 8, 8, generator=generator)

    def objective(x: torch.Tensor) -> torch.Tensor:
        return (images_to_latents(tiny_vae, x) * weights).sum()

    objective(images).backward()
    analytic = (images.grad * direction).sum().item()
    step = 1e-2
    with torch.no_grad():
        numeric = (objective(images + step * direction) - objective(images - step * direction)).item() / (2 * step)
    assert analytic != 0.0
    assert abs(analytic - numeric) <= 0.02 * abs(numeric)


@pytest.mark.skipif(not builtin_prior_available(), reason="the built-in prior is not installed")
def test_shipped_vae_round_trips_world_renders_at_unit_latent_scale():
    """The shipped scaling factor makes the latents of world renders about unit variance (the UNet's
    training scale), and decoding the encoding gives the renders back (measured: 23.2 dB, std 1.03)."""
    pool = render_world_pool(PoolSpec(8, seed=5, resolution=64, supersample=1), workers=1, progress=False)
    images = pool.images.float() / 255
    vae = load_prior(None).vae
    with torch.no_grad():
        latents = images_to_latents(vae, images)
        decoded = latents_to_images(vae, latents)
    assert latents.shape == (8, 4, 16, 16)
    assert 0.8 < latents.std().item() < 1.25
    round_trip = psnr(decoded, images)
    assert round_trip > 21.0
    # The factor is undone on the way back: latents decoded unscaled lose far more (measured: 17.3 dB).
    with torch.no_grad():
        assert psnr(latents_to_images(vae, latents / vae.config.scaling_factor), images) < round_trip - 3.0
