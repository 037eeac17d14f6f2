"""The Text → Image endpoint through gradio_client against a real `python app.py` process (committed weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipelines.core.imaging import pixel_difference
from pipelines.diffusion.options import DEFAULT_SCHEDULER

FAST = dict(negative_prompt="", steps=4, guidance_scale=4.0)


def gallery_images(gallery) -> list[Image.Image]:
    return [Image.open(item["image"]).convert("RGB") for item in gallery]


def test_text_to_image_returns_images_a_strip_and_pngs_with_their_parameters(client):
    gallery, strip, downloads, note = client.predict(
        prompt="a large red circle in the center on a black background",
        seed=42,
        count=2,
        **FAST,
        api_name="/text_to_image",
    )
    images = gallery_images(gallery)
    assert len(images) == 2 and all(i.width == i.height >= 64 for i in images)
    assert [item["caption"] for item in strip][-1] == "step 4/4" and len(strip) == 4
    assert len(downloads) == 2
    saved = Image.open(downloads[0])
    assert saved.size == (64, 64)
    parameters = json.loads(saved.text["parameters"])
    assert parameters["prompt"].startswith("a large red circle") and parameters["seed"] == 42
    assert parameters["steps"] == 4 and parameters["scheduler"] == DEFAULT_SCHEDULER  # the tab's default when not sent
    assert "2 image(s)" in note


def test_same_prompt_seed_and_settings_give_the_same_image(client):
    def image(seed):
        gallery, *_ = client.predict(
            prompt="blue square, top right, white background", seed=seed, **FAST, api_name="/text_to_image"
        )
        return gallery_images(gallery)[0]

    first, again, other = image(7), image(7), image(8)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert pixel_difference(first, other) > 1


def test_an_empty_prompt_is_an_unconditional_sample_and_says_so(client):
    gallery, _, _, note = client.predict(prompt="", seed=1, scheduler="DDIM", **FAST, api_name="/text_to_image")
    assert len(gallery) == 1 and "unconditional" in note


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(prompt="x" * 1001), "limited to 1,000 characters"),
        # Sliders: Gradio itself refuses values outside their range, naming the limit.
        (dict(steps=0), "Steps must be from 1 to 100|less than minimum value 1"),
        (dict(steps=101), "Steps must be from 1 to 100|greater than maximum value 100"),
        (dict(guidance_scale=20.5), "Guidance scale must be from 0.0 to 20.0|greater than maximum value 20"),
        # Dropdowns: Gradio refuses values outside their choices, listing them.
        (
            dict(scheduler="PNDM"),
            r"Unknown scheduler|not in the list of choices: \['DDPM', 'DDIM', 'DPM-Solver\+\+', 'Euler'\]",
        ),
        (dict(model="someone/big-model"), "Unknown model|not in the list of choices"),
        (dict(count=5), "Number of images must be from 1 to 4|greater than maximum value 4"),
    ],
)
def test_bad_input_is_refused_with_the_limit_named_and_the_app_keeps_serving(client, changes, message):
    arguments = dict(prompt="a red circle", seed=1, **FAST) | changes
    with pytest.raises(Exception, match=message):
        client.predict(**arguments, api_name="/text_to_image")
    gallery, *_ = client.predict(prompt="a red circle", seed=1, **FAST, api_name="/text_to_image")
    assert len(gallery) == 1
