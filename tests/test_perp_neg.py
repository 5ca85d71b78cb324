"""Perp-Neg guidance: the perpendicular projection and the azimuth weights against hand-computed values, ordinary
CFG when there are no negatives, and one UNet call per step."""

from __future__ import annotations

import math

import torch

from dreamtext.prior.loading import Prior
from dreamtext.prior.perp_neg import (BACK, FRONT, SIDE, perp_neg_direction, perp_neg_plan,
                                      perpendicular_component)
from dreamtext.prior.prompts import PromptConfig, PromptEmbeddings
from dreamtext.prior.sds import SDSConfig, ScoreDistillation, guided_noise
from dreamtext.scene.cameras import VIEW_LABELS
from tiny_sd import RecordingUnet, build_tiny_sd_pipeline


def test_perpendicular_component_by_hand():
    x = torch.tensor([[[[1.0, 1.0]]], [[[2.0, 0.0]]]])
    y = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]])
    torch.testing.assert_close(perpendicular_component(x, y), torch.tensor([[[[0.0, 1.0]]], [[[1.0, -1.0]]]]))
    assert torch.equal(perpendicular_component(x, torch.zeros_like(y)), x)  # nothing to project on


def test_weights_and_mixes_follow_the_azimuth_as_the_paper_interpolates():
    side, overhead = VIEW_LABELS.index("side"), VIEW_LABELS.index("overhead")
    azimuth = torch.tensor([0.0, 45.0, 90.0, 135.0, 180.0, 315.0, 10.0])
    labels = torch.tensor([FRONT, FRONT, side, side, BACK, side, overhead])
    plan = perp_neg_plan(azimuth, labels)
    e = math.exp(-0.5)
    expected = torch.tensor([
        [-(4 * e - 2.426), -(4 - 2.426)],  # front: r = 1; "front" weighs f_fs(1) ~ 0, "side" f_sf(0)
        [-(4 * math.exp(-0.25) - 2.426), -(4 * math.exp(-0.25) - 2.426)],  # r = 0.5 both
        [-(e - 0.606), -(e + 0.967)],  # the side, on the side-back arc: r = 1
        [-(math.exp(-0.25) - 0.606), -(math.exp(-0.25) + 0.967)],  # r = 0.5
        [-(1 - 0.606), -(1 + 0.967)],  # back: r = 0
        [-(4 * math.exp(-0.25) - 2.426), -(4 * math.exp(-0.25) - 2.426)],  # 315 = -45: as 45
        [0.0, 0.0],  # overhead: its own prompt, no negatives
    ])
    torch.testing.assert_close(plan.weights, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(plan.mix[:5], torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0],
                                                           [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]))
    assert plan.negative_ids[:5].tolist() == [[FRONT, SIDE]] * 2 + [[SIDE, FRONT]] * 3
    assert plan.own.tolist() == [False] * 6 + [True]


def test_no_negatives_is_ordinary_cfg_exactly():
    generator = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    negatives = torch.randn(2, 2, 4, 8, 8, generator=generator)
    direction = perp_neg_direction(cond, uncond, negatives, torch.zeros(2, 2))
    assert torch.equal(direction, cond - uncond)
    for formula in ("standard", "sdf_2023"):
        assert torch.equal(guided_noise(cond, uncond, 7.5, formula, direction), guided_noise(cond, uncond, 7.5, formula))
    # And a negative along the positive direction changes nothing: only its perpendicular part pushes.
    along = (cond - uncond)[:, None] * 3.0 + uncond[:, None]
    torch.testing.assert_close(perp_neg_direction(cond, uncond, along.expand(-1, 2, -1, -1, -1), torch.full((2, 2), -1.5)),
                               cond - uncond, atol=1e-5, rtol=1e-5)


def test_perp_neg_sds_is_one_unet_call_on_four_rows_a_render_and_cfg_without_weights():
    pipeline = build_tiny_sd_pipeline(seed=0)
    counting = RecordingUnet(pipeline.unet)
    pipeline.unet = counting
    prior = Prior.from_pipeline(pipeline)
    embeddings = PromptEmbeddings(prior, PromptConfig(prompt="a red mug"))
    sds = ScoreDistillation(prior, SDSConfig())
    azimuth, labels = torch.tensor([30.0, 200.0]), torch.tensor([FRONT, BACK])
    cond, negatives, weights = embeddings.perp_neg(azimuth, labels)
    assert cond.shape == (2, 77, 32) and negatives.shape == (2, 2, 77, 32) and weights.shape == (2, 2)
    mixed = (2 / 3) * embeddings.conditional(torch.tensor([FRONT])) + (1 / 3) * embeddings.conditional(torch.tensor([SIDE]))
    torch.testing.assert_close(cond[:1], mixed, atol=1e-6, rtol=1e-6)  # 30 degrees: r = 2/3 of the way to the front
    images = torch.rand(2, 3, 16, 16)
    uncond = embeddings.unconditional(2)

    def loss(**extra):
        images_grad = images.clone().requires_grad_(True)
        value, _ = sds.loss(images_grad, cond, uncond, 0.5, torch.Generator().manual_seed(0), **extra)
        value.backward()
        return value, images_grad.grad

    plain_loss, plain_grad = loss()
    assert counting.rows == [4]  # CFG: one call, 2 rows a render
    counting.rows.clear()
    zero_loss, zero_grad = loss(negatives=negatives, negative_weights=torch.zeros(2, 2))
    assert counting.rows == [8]  # Perp-Neg: one call, 4 rows a render
    torch.testing.assert_close(zero_loss, plain_loss, rtol=1e-5, atol=0)  # the same numbers, batched otherwise
    # float rounding of a batch twice as large (oneDNN picks its convolution blocking by batch): measured up to
    # 1e-5 of a gradient whose largest entry is about 1e-2 on some CPUs
    torch.testing.assert_close(zero_grad, plain_grad, rtol=1e-4, atol=1e-3 * float(plain_grad.abs().max()))
    pushed_loss, _ = loss(negatives=negatives, negative_weights=weights)
    assert not torch.isclose(pushed_loss, plain_loss)


def test_a_text_to_3d_run_with_perp_neg_trains(tmp_path):
    from test_text_to_3d import small_config

    from dreamtext.methods.text_to_3d import TextTo3DTrainer
    from dreamtext.utils.workspace import Workspace

    folder = tmp_path / "tiny"
    build_tiny_sd_pipeline(seed=0).save_pretrained(folder)
    trainer = TextTo3DTrainer(small_config(str(folder), iters=2, **{"sds.guidance_form": "perp_neg"}), Workspace(tmp_path / "ws"))
    losses = [trainer.train_step() for _ in range(2)]
    assert all(math.isfinite(value) and value > 0 for value in losses)
