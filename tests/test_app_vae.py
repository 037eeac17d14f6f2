"""The VAE Interpolation endpoints through gradio_client against a real `python app.py` process."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from demos import vae_interpolation
from pipelines.core import registry
from pipelines.core.imaging import pixel_difference


def gallery_images(gallery) -> list[Image.Image]:
    return [Image.open(item["image"]).convert("RGB") for item in gallery]


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> list[str]:
    """Two held-out digits and one face as PNG files, the way a workshop script would send them."""
    folder = tmp_path_factory.mktemp("vae-inputs")
    digits = registry.load("vae-digits").example_images()
    paths = []
    for index, image in enumerate(digits[:2]):
        path = folder / f"digit-{index}.png"
        image.save(path)
        paths.append(str(path))
    face_path = folder / "face.jpg"
    Image.new("RGB", (120, 90), (180, 140, 120)).save(face_path)
    paths.append(str(face_path))
    return paths


def interpolate(client, image_a, image_b, frames=5, model="digits", method="slerp"):
    return client.predict(
        image_a=handle_file(image_a),
        image_b=handle_file(image_b),
        frames=frames,
        model=model,
        method=method,
        api_name="/vae_interpolate",
    )


def test_vae_interpolate_returns_the_frames(client, digit_files):
    frames = interpolate(client, digit_files[0], digit_files[1], frames=5)
    images = gallery_images(frames)
    assert len(images) == 5
    assert [item["caption"] for item in frames] == ["t=0.00", "t=0.25", "t=0.50", "t=0.75", "t=1.00"]
    assert all(image.size == images[0].size for image in images)
    assert pixel_difference(images[0], images[-1]) > 3  # two different digits at the ends
    again = gallery_images(interpolate(client, digit_files[0], digit_files[1], frames=5))
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(images, again))


def test_vae_interpolate_fits_an_uploaded_photo_to_the_face_model(client, digit_files):
    frames = interpolate(client, digit_files[2], digit_files[0], frames=2, model="faces", method="lerp")
    assert len(frames) == 2


def test_a_corrupt_upload_is_refused_by_name_and_the_app_keeps_serving(client, digit_files, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"this is plain text, not a PNG")
    with pytest.raises(Exception, match="Image A is not an image file"):
        interpolate(client, str(not_an_image), digit_files[1])
    truncated = tmp_path / "truncated.png"
    full = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    full.save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:600])
    with pytest.raises(Exception, match="Image B is corrupt or truncated"):
        interpolate(client, digit_files[0], str(truncated))
    assert len(interpolate(client, digit_files[0], digit_files[1], frames=3)) == 3


def test_an_image_over_20_megapixels_is_refused(client, digit_files, tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("L", (5000, 4200)).save(huge)  # 21 megapixels, a few kilobytes as PNG
    with pytest.raises(Exception, match="at most 20 megapixels"):
        interpolate(client, str(huge), digit_files[1])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(frames=1), "Frames must be from 2 to 64"),
        (dict(frames=65), "Frames must be from 2 to 64"),
        (dict(method="cubic"), "Method must be one of slerp, lerp"),
        (dict(model="imagenet"), "Model must be one of"),
        (dict(model="stabilityai/sd-vae-ft-mse"), "could not be downloaded"),
    ],
)
def test_bad_interpolation_settings_are_refused_with_the_allowed_range(client, digit_files, arguments, message):
    with pytest.raises(Exception, match=message):
        interpolate(client, digit_files[0], digit_files[1], **arguments)


def test_prior_samples_are_seeded(client):
    first = client.predict(model="digits", seed=7, count=3, api_name="/vae_sample_prior")
    again = client.predict(model="digits", seed=7, count=3, api_name="/vae_sample_prior")
    other = client.predict(model="digits", seed=8, count=3, api_name="/vae_sample_prior")
    a, b, c = gallery_images(first), gallery_images(again), gallery_images(other)
    assert len(a) == 3
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert np.mean([pixel_difference(x, z) for x, z in zip(a, c)]) > 3
    with pytest.raises(Exception, match="need a model trained here"):
        client.predict(model="stabilityai/sd-vae-ft-mse", seed=7, count=3, api_name="/vae_sample_prior")


def test_attribute_vector_shows_the_target_at_increasing_strengths(client):
    edited = client.predict(
        model="digits",
        with_feature=["1", "2"],
        without_feature=["3"],
        target="4",
        strength=2.0,
        api_name="/vae_attribute_vector",
    )
    assert [item["caption"] for item in edited][::4] == ["strength +0.00", "strength +2.00"]
    with pytest.raises(Exception, match="at least one example WITH"):
        client.predict(
            model="digits",
            with_feature=[],
            without_feature=["3"],
            target="4",
            strength=2.0,
            api_name="/vae_attribute_vector",
        )


def test_attribute_vector_works_from_the_tabs_own_picks(client):
    # No arguments: gradio_client sends the tab's defaults, the faces model's glasses picks.
    edited = client.predict(api_name="/vae_attribute_vector")
    assert len(edited) == 5
    assert pixel_difference(*(Image.open(edited[i]["image"]).convert("RGB") for i in (0, -1))) > 5


@pytest.mark.parametrize("model", ["faces", "digits"])
def test_each_models_starting_picks_change_the_example_visibly(model):
    picks_with, picks_without, target = vae_interpolation._starting_picks(model)
    edited = vae_interpolation.vae_attribute_vector(model, picks_with, picks_without, target, 2.0)
    assert pixel_difference(edited[0][0], edited[-1][0]) > 5


def test_latent_map_draws_the_map_and_decodes_the_chosen_point(client):
    map_path, decoded_path = client.predict(model="digits", x=0.5, y=-0.5, api_name="/vae_latent_map")
    latent_map, decoded = Image.open(map_path), Image.open(decoded_path)
    assert latent_map.width >= 400 and decoded.width >= 128
    _, elsewhere_path = client.predict(model="digits", x=-2.0, y=2.0, api_name="/vae_latent_map")
    assert pixel_difference(decoded.convert("RGB"), Image.open(elsewhere_path).convert("RGB")) > 2
