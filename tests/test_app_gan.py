"""The GAN Faces endpoints through gradio_client against a real `python app.py` process."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demos import gan_faces
from pipelines.core.imaging import pixel_difference
from pipelines.gan.options import TRUNCATION


def gallery_images(gallery) -> list[Image.Image]:
    return [Image.open(item["image"]).convert("RGB") for item in gallery]


def test_sample_faces_returns_count_images_and_a_downloadable_grid(client):
    gallery, grid_path = client.predict(seed=42, count=4, truncation=1.5, api_name="/sample_faces")
    images = gallery_images(gallery)
    assert len(images) == 4
    assert all(image.width == image.height >= 128 for image in images)  # upscaled for display
    assert [item["caption"] for item in gallery] == ["#1", "#2", "#3", "#4"]
    grid = Image.open(grid_path)
    assert grid.width >= 4 * 128


def test_sample_faces_is_deterministic_per_seed_through_the_api(client):
    first, _ = client.predict(seed=5, count=2, truncation=1.0, api_name="/sample_faces")
    again, _ = client.predict(seed=5, count=2, truncation=1.0, api_name="/sample_faces")
    other, _ = client.predict(seed=6, count=2, truncation=1.0, api_name="/sample_faces")
    a, b, c = gallery_images(first), gallery_images(again), gallery_images(other)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert all(pixel_difference(x, z) > 5 for x, z in zip(a, c))


def test_interpolate_faces_returns_frames_and_an_animated_gif(client):
    frames, animation, gif_path = client.predict(seed_a=1, seed_b=2, frames=5, api_name="/interpolate_faces")
    assert len(frames) == 5
    gif = Image.open(gif_path)
    assert gif.format == "GIF" and gif.n_frames >= 5 and gif.info.get("loop") == 0
    first_frame = gallery_images(frames)[0]
    face_a = gallery_images(client.predict(seed=1, count=1, truncation=1.5, api_name="/sample_faces")[0])[0]
    assert pixel_difference(first_frame, face_a) < 1.0


def test_face_arithmetic_shows_the_target_at_increasing_strengths(client):
    edited = client.predict(
        seed=7,
        truncation=1.5,
        group_a=["1", "2"],
        group_b=["3", "4"],
        target="5",
        strength=2.0,
        api_name="/face_arithmetic",
    )
    assert [item["caption"] for item in edited] == [
        "strength +0.00",
        "strength +0.50",
        "strength +1.00",
        "strength +1.50",
        "strength +2.00",
    ]


def test_face_arithmetic_works_from_the_tabs_own_picks(client):
    # No arguments: gradio_client sends the tab's defaults, which must be a working example (the smile vector).
    edited = client.predict(api_name="/face_arithmetic")
    assert len(edited) == 5 and edited[0]["caption"] == "strength +0.00"
    start, end = gallery_images(edited)[0], gallery_images(edited)[-1]
    assert pixel_difference(start, end) > 5.0  # the vector visibly changes the face


def test_a_new_grid_clears_the_picks_made_on_another():
    example = [gan_faces.SMILE_EXAMPLE["seed"], TRUNCATION.default]
    grid, picks_a, picks_b, shown = gan_faces.show_grid(8, 1.5, example)
    assert len(grid) == gan_faces.GRID_SIZE and picks_a == picks_b == [] and shown == [8, 1.5]
    _, picks_a, picks_b, shown = gan_faces.show_grid(8, 1.5, shown)  # the same grid again: picks kept
    assert picks_a == picks_b == gr.skip() and shown == [8, 1.5]
    _, picks_a, picks_b, shown = gan_faces.show_grid(*example, shown)  # back to the example's grid
    assert (picks_a, picks_b) == (gan_faces.SMILE_EXAMPLE["group_a"], gan_faces.SMILE_EXAMPLE["group_b"])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(count=0), "Number of faces must be from 1 to 64"),
        (dict(count=10_000), "Number of faces must be from 1 to 64"),
        (dict(seed="forty-two"), "Seed must be a whole number from 0 to 4294967295"),
        (dict(seed=1.5), "Seed must be a whole number"),
        (dict(seed=-3), "Seed must be from 0 to 4294967295"),
        (dict(truncation=0.0), "Truncation .* must be from 0.1 to 3.0"),
        (dict(truncation=50), "Truncation .* must be from 0.1 to 3.0"),
    ],
)
def test_sample_faces_refuses_bad_input_with_the_limit(client, arguments, message):
    call = dict(seed=1, count=2, truncation=1.5) | arguments
    with pytest.raises(Exception, match=message):
        client.predict(**call, api_name="/sample_faces")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(frames=1), "Frames must be from 2 to 64"),
        (dict(frames=1000), "Frames must be from 2 to 64"),
        (dict(seed_b="x"), "Seed B must be a whole number"),
    ],
)
def test_interpolate_faces_refuses_bad_input_with_the_limit(client, arguments, message):
    call = dict(seed_a=1, seed_b=2, frames=4) | arguments
    with pytest.raises(Exception, match=message):
        client.predict(**call, api_name="/interpolate_faces")


def test_face_arithmetic_refuses_empty_or_identical_groups(client):
    with pytest.raises(Exception, match="at least one face WITH the feature"):
        client.predict(
            seed=7, truncation=1.5, group_a=[], group_b=["1"], target="2", strength=1.0, api_name="/face_arithmetic"
        )
    with pytest.raises(Exception, match="same faces"):
        client.predict(
            seed=7, truncation=1.5, group_a=["1"], group_b=["1"], target="2", strength=1.0, api_name="/face_arithmetic"
        )


def test_the_server_keeps_serving_after_refusals(client):
    with pytest.raises(Exception, match="Seed must be a whole number"):
        client.predict(seed="bad", count=2, truncation=1.5, api_name="/sample_faces")
    gallery, _ = client.predict(seed=3, count=1, truncation=1.5, api_name="/sample_faces")
    assert len(gallery) == 1
