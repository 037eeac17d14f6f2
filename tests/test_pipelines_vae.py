"""The VAE pipeline: the model's maths on tiny configs, the committed weights, the AutoencoderKL path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from pipelines.core import registry
from pipelines.core.imaging import pixel_difference
from pipelines.core.weights import REPO_ROOT
from pipelines.vae.data import fit_digit, pixel_upscale, undo_pixel_upscale
from pipelines.vae.model import ConvVAE, ConvVAEConfig, elbo_loss, kl_divergence, reparameterise
from pipelines.vae.pipeline import (
    HubVAEPipeline,
    TrainedVAEPipeline,
    attribute_vector,
    interpolate_latents,
    load_vae,
)

TINY = ConvVAEConfig(image_size=16, channels=1, latent_dim=4, features=(8, 16))


def test_conv_vae_shapes():
    model = ConvVAE(TINY)
    images = torch.rand(5, 1, 16, 16)
    mu, logvar = model.encode(images)
    assert mu.shape == logvar.shape == (5, 4)
    logits, mu, logvar = model(images)
    assert logits.shape == images.shape
    decoded = model.decode(torch.randn(3, 4))
    assert decoded.shape == (3, 1, 16, 16) and 0 <= decoded.min() and decoded.max() <= 1


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=3, max_size=3),
    st.lists(st.floats(-6, 4), min_size=3, max_size=3),
)
def test_kl_is_never_negative_and_zero_only_at_the_prior(mu, logvar):
    kl = kl_divergence(torch.tensor([mu]), torch.tensor([logvar]))
    assert kl.item() >= -1e-6
    assert kl_divergence(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0.0


def test_reparameterisation_lets_gradients_reach_mean_and_variance():
    mu = torch.zeros(4, 3, requires_grad=True)
    logvar = torch.zeros(4, 3, requires_grad=True)
    z = reparameterise(mu, logvar, generator=torch.Generator().manual_seed(0))
    (z**2).sum().backward()
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = ConvVAE(TINY)
    images = (torch.rand(16, 1, 16, 16) > 0.7).float()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        terms = elbo_loss(model, images)
        optimiser.zero_grad()
        terms.loss.backward()
        optimiser.step()
        losses.append(terms.loss.item())
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    assert terms.kl.item() >= 0


def test_slerp_keeps_norms_and_lerp_cuts_the_corner():
    generator = torch.Generator().manual_seed(1)
    z_a, z_b = torch.randn(32, generator=generator), torch.randn(32, generator=generator)
    z_b = z_b / z_b.norm() * z_a.norm()  # same length, different direction
    arc = interpolate_latents(z_a, z_b, 9, "slerp")
    line = interpolate_latents(z_a, z_b, 9, "lerp")
    assert arc.shape == line.shape == (9, 32)
    assert torch.allclose(arc.norm(dim=1), z_a.norm().expand(9), rtol=1e-4)
    assert line[4].norm() < 0.95 * z_a.norm()
    for path in (arc, line):
        assert torch.allclose(path[0], z_a, atol=1e-5) and torch.allclose(path[-1], z_b, atol=1e-5)
    with pytest.raises(ValueError, match="lerp"):
        interpolate_latents(z_a, z_b, 3, "cubic")


def test_attribute_vector_is_the_difference_of_group_means():
    with_means = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    without_means = torch.tensor([[0.0, 1.0]])
    assert torch.equal(attribute_vector(with_means, without_means), torch.tensor([2.0, 2.0]))
    with pytest.raises(ValueError, match="at least one"):
        attribute_vector(with_means, without_means[:0])


def test_a_drawn_digit_is_fitted_like_the_dataset():
    drawing = Image.new("RGBA", (300, 300), (0, 0, 0, 0))  # a sketchpad: transparent paper, black ink
    ImageDraw.Draw(drawing).line([(200, 40), (180, 260)], fill=(0, 0, 0, 255), width=25)
    digit = np.asarray(fit_digit(drawing, 32), dtype=np.float32) / 255
    assert digit.shape == (32, 32)
    assert digit.mean() < 0.3 and digit.max() > 0.5  # light ink on a dark background
    columns = np.nonzero(digit.max(0) > 0.3)[0]
    assert 10 < columns.mean() < 22  # centred, not at the right where it was drawn


@pytest.fixture(scope="module")
def digits() -> TrainedVAEPipeline:
    pipeline = registry.load("vae-digits")
    assert isinstance(pipeline, TrainedVAEPipeline)
    return pipeline


def test_committed_digit_weights_reconstruct_held_out_digits(digits):
    examples = digits.example_images()[:8]
    reconstructions = digits.reconstruct(examples)
    own = [pixel_difference(a, b) for a, b in zip(examples, reconstructions)]
    shifted = [pixel_difference(a, b) for a, b in zip(examples, reconstructions[1:] + reconstructions[:1])]
    assert np.mean(own) < 0.6 * np.mean(shifted)  # each reconstruction resembles its own input most
    assert digits.settings["held_out"]["kl_per_image"] > 0


def test_committed_face_weights_load_and_reconstruct_a_face():
    faces = registry.load("vae-faces")
    assert faces.latent_dim == 32 and faces.image_size == 64
    example = faces.example_images()[0]
    reconstruction = faces.reconstruct([example])[0]
    assert reconstruction.size == (64, 64) and reconstruction.mode == "RGB"
    assert pixel_difference(example, reconstruction) < 40


def test_interpolation_ends_decode_to_the_inputs_reconstructions(digits):
    a, b = digits.example_images()[:2]
    result = digits.interpolate(a, b, frames=6, method="slerp")
    assert len(result.frames) == 6 and result.latents.shape == (6, digits.latent_dim)
    reconstruction_a, reconstruction_b = digits.reconstruct([a, b])
    assert pixel_difference(result.frames[0], reconstruction_a) < 1
    assert pixel_difference(result.frames[-1], reconstruction_b) < 1
    assert pixel_difference(result.frames[2], reconstruction_a) > 1  # the middle really moves
    with pytest.raises(ValueError, match="from 2 to 64"):
        digits.interpolate(a, b, frames=65)


def test_prior_samples_are_deterministic_per_seed(digits):
    first, again, other = digits.sample_prior(3, 4), digits.sample_prior(3, 4), digits.sample_prior(4, 4)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(first, again))
    assert np.mean([pixel_difference(x, z) for x, z in zip(first, other)]) > 3


def test_attribute_edit_at_strength_zero_is_the_target_reconstruction(digits):
    examples = digits.example_images()
    edited = digits.attribute_edit(examples[:3], examples[3:6], examples[6], [0.0, 2.0])
    assert pixel_difference(edited[0], digits.reconstruct([examples[6]])[0]) < 1
    assert pixel_difference(edited[0], edited[1]) > 1


def test_latent_map_projects_and_clicks_back(digits):
    latent_map = digits.latent_map
    assert latent_map.points.shape == (len(digits.examples.images), 2)
    x, y = latent_map.points[0]
    px, py = latent_map.to_pixel(x, y)
    assert np.allclose(latent_map.from_pixel(px, py), (x, y))
    path = latent_map.project(digits.interpolate(*digits.example_images()[:2], frames=4).latents)
    drawing = latent_map.render(path=path, marker=(x, y))
    assert drawing.size == (latent_map.canvas_size, latent_map.canvas_size)
    assert digits.decode_map_point(x, y).size == (32, 32)


def test_hub_path_interpolates_with_a_tiny_autoencoder_kl_from_a_folder(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    tiny = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=32,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    tiny.save_pretrained(tmp_path / "tiny-vae")
    pipeline = load_vae(str(tmp_path / "tiny-vae"))
    assert isinstance(pipeline, HubVAEPipeline) and pipeline.image_size == 32
    photo_a = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    photo_b = Image.new("RGB", (50, 50), (200, 30, 30))
    result = pipeline.interpolate(photo_a, photo_b, frames=3, method="lerp")
    assert [frame.size for frame in result.frames] == [(32, 32)] * 3
    assert result.latents.shape == (3, 4, 16, 16)  # two down blocks: one halving
    assert pixel_difference(result.frames[0], pipeline.reconstruct([photo_a])[0]) < 1


@pytest.mark.slow
def test_training_script_writes_weights_config_and_card(tmp_path):
    out = tmp_path / "vae-digits"
    command = [sys.executable, "-m", "training.train_vae", "--data", "digits", "--epochs", "1", "--out", str(out)]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "epoch 1/1" in finished.stdout
    settings_written = json.loads((out / "config.json").read_text())
    assert settings_written["training"]["epochs"] == 1 and settings_written["held_out"]["kl_per_image"] > 0
    assert "Held-out metrics" in (out / "README.md").read_text()
    pipeline = load_vae(str(out))  # a folder in this project's format loads as a trained VAE
    assert isinstance(pipeline, TrainedVAEPipeline) and pipeline.latent_dim == 12


def test_an_example_enlarged_for_the_screen_reaches_the_model_unchanged(digits):
    example = digits.example_images()[5]
    enlarged = pixel_upscale(example, 6)
    assert enlarged.size == (192, 192)
    assert np.array_equal(np.asarray(digits.prepare(enlarged)), np.asarray(example))
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (192, 192, 3), dtype=np.uint8))
    assert undo_pixel_upscale(photo, 64) is None
