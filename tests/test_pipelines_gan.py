"""The DCGAN face pipeline on the real pretrained weights from the gan-face-generate pack."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.core.device import DeviceChoice
from pipelines.core.imaging import pixel_difference
from pipelines.core.weights import GAN_FACES_PACK, installed_pack_folder
from pipelines.gan.faces import (
    LATENT_DIM,
    DCGANGenerator,
    FacePipeline,
    load_face_generator,
    slerp,
    truncated_latents,
)

CPU = DeviceChoice(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def faces() -> FacePipeline:
    return FacePipeline(CPU)


def as_array(image) -> np.ndarray:
    return np.asarray(image)


def test_loading_from_the_installed_pack_matches_every_parameter():
    assert installed_pack_folder(GAN_FACES_PACK) is not None, "make setup installs the pack"
    generator = load_face_generator(torch.device("cpu"), torch.float32)
    checkpoint = torch.load(
        installed_pack_folder(GAN_FACES_PACK) / "weights.tar", weights_only=True, map_location="cpu"
    )["netG_state_dict"]
    loaded = generator.state_dict()
    assert loaded.keys() == checkpoint.keys()
    for name, tensor in checkpoint.items():
        assert torch.equal(loaded[name], tensor), name
    assert sum(p.numel() for p in generator.parameters()) == pytest.approx(3.58e6, rel=0.01)
    assert not generator.training


def test_generator_maps_latents_to_64px_rgb_in_tanh_range():
    generator = DCGANGenerator().eval()
    with torch.no_grad():
        images = generator(torch.randn(3, LATENT_DIM, 1, 1))
    assert images.shape == (3, 3, 64, 64)
    assert images.min() >= -1 and images.max() <= 1


def test_sample_returns_count_rgb_64px_images_that_are_not_blank(faces):
    images = faces.sample(seed=42, count=5, truncation=1.5)
    assert len(images) == 5
    for image in images:
        assert image.size == (64, 64) and image.mode == "RGB"
        pixels = as_array(image)
        assert pixels.dtype == np.uint8
        assert pixels.std() > 10  # a face has structure; a failed load gives flat grey


def test_same_seed_same_faces_and_different_seeds_differ(faces):
    first = faces.sample(seed=123, count=4, truncation=1.0)
    again = faces.sample(seed=123, count=4, truncation=1.0)
    other = faces.sample(seed=124, count=4, truncation=1.0)
    assert all(np.array_equal(as_array(a), as_array(b)) for a, b in zip(first, again))
    assert all(pixel_difference(a, b) > 5 for a, b in zip(first, other))


def test_face_i_of_a_seed_does_not_depend_on_the_count(faces):
    one = faces.sample(seed=9, count=1)[0]
    many = faces.sample(seed=9, count=16)
    assert np.array_equal(as_array(one), as_array(many[0]))


@pytest.mark.parametrize("truncation", [0.1, 0.5, 1.0, 2.0])
def test_truncation_bounds_every_latent_value(truncation):
    latents = truncated_latents(seed=5, count=32, truncation=truncation)
    assert latents.shape == (32, LATENT_DIM, 1, 1)
    assert latents.abs().max() <= truncation


def test_lower_truncation_lowers_the_latent_norm():
    norms = [truncated_latents(3, 64, t).flatten(1).norm(dim=1).mean() for t in (0.5, 1.0, 2.0, 3.0)]
    assert norms == sorted(norms)
    assert norms[-1] == pytest.approx(LATENT_DIM**0.5, rel=0.1)  # near a plain normal at 3 sigma


def test_interpolation_endpoints_are_the_two_seeds_faces(faces):
    frames = faces.interpolate(seed_a=11, seed_b=22, frames=6, truncation=1.5)
    assert len(frames) == 6
    face_a = faces.sample(11, 1, 1.5)[0]
    face_b = faces.sample(22, 1, 1.5)[0]
    assert pixel_difference(frames[0], face_a) < 1.0
    assert pixel_difference(frames[-1], face_b) < 1.0
    assert pixel_difference(frames[2], face_a) > 1.0  # the middle is neither end


def test_slerp_keeps_the_norm_of_equal_norm_latents_and_hits_the_ends():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(LATENT_DIM, generator=generator)
    b = torch.randn(LATENT_DIM, generator=generator)
    b = b / b.norm() * a.norm()
    path = slerp(a, b, torch.linspace(0, 1, 9))
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    assert torch.allclose(path.norm(dim=1), a.norm().expand(9), rtol=1e-4)
    straight = (a + b) / 2
    assert path[4].norm() > straight.norm()  # the straight line sags through the middle


def test_slerp_of_identical_latents_is_constant():
    a = torch.randn(LATENT_DIM)
    assert torch.allclose(slerp(a, a, torch.linspace(0, 1, 4)), a.expand(4, -1), atol=1e-5)


def test_attribute_edit_at_strength_zero_is_the_target_and_moves_with_strength(faces):
    grid = faces.sample(seed=7, count=16, truncation=1.5)
    edited = faces.attribute_edit(7, [0, 1], [2, 3], target_index=5, strengths=[0.0, 1.0, 3.0])
    assert pixel_difference(edited[0], grid[5]) < 1.0
    assert 0 < pixel_difference(edited[1], grid[5]) < pixel_difference(edited[2], grid[5])


def test_attribute_direction_is_the_difference_of_group_means(faces):
    latents = truncated_latents(7, 16, 1.5)
    direction = latents[[0, 1]].mean(0) - latents[[2]].mean(0)
    expected = faces.generate((latents[4] + 2.0 * direction).unsqueeze(0))[0]
    edited = faces.attribute_edit(7, [0, 1], [2], target_index=4, strengths=[2.0])[0]
    assert pixel_difference(expected, edited) < 0.5


def test_concurrent_requests_are_batched_and_each_gets_its_own_faces(faces):
    from concurrent.futures import ThreadPoolExecutor

    expected = {seed: faces.sample(seed, 2, 1.5) for seed in range(12)}
    passes_before = faces.batcher.passes
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = dict(zip(range(12), pool.map(lambda s: faces.sample(s, 2, 1.5), range(12))))
    for seed, images in results.items():
        assert all(np.array_equal(as_array(a), as_array(b)) for a, b in zip(images, expected[seed]))
    assert faces.batcher.passes - passes_before <= 12
