"""The Diffusion lab's four endpoints through gradio_client against a real `python app.py` (committed weights)."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from pipelines.core.imaging import pixel_difference
from pipelines.diffusion.lab_inputs import cell_mask
from pipelines.diffusion.shapes_world import Scene, ShapeObject, render_scene

SCENE = render_scene(Scene((ShapeObject("red", "circle", "large", "left"),), "white", ((0, 0),)))
QUICK = dict(steps=6)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("lab")
    paths = {
        "scene": folder / "scene.png",
        "big_scene": folder / "big-scene.png",
        "mask": folder / "mask.png",
        "small_mask": folder / "small-mask.png",
        "empty_mask": folder / "empty-mask.png",
        "full_mask": folder / "full-mask.png",
        "corrupt": folder / "corrupt.png",
    }
    SCENE.save(paths["scene"])
    SCENE.resize((256, 256), Image.Resampling.NEAREST).save(paths["big_scene"])
    cell_mask(["right"]).save(paths["mask"])
    cell_mask(["right"]).resize((32, 32)).save(paths["small_mask"])
    Image.new("L", (64, 64), 0).save(paths["empty_mask"])
    Image.new("L", (64, 64), 255).save(paths["full_mask"])
    paths["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n this is not really a picture")
    return {name: handle_file(str(path)) for name, path in paths.items()}


def model_pixels(path: str) -> np.ndarray:
    """An endpoint's main picture shrunk back to the model's 64x64 (it is enlarged by repeating pixels)."""
    image = Image.open(path).convert("RGB")
    return np.asarray(image.resize((64, 64), Image.Resampling.BOX), dtype=np.int16)


def test_forward_noise_at_t_0_returns_the_input_and_at_t_999_noise(client, files):
    noisy, estimates, strip, plot, numbers, note = client.predict(
        image=files["scene"], timestep=0, api_name="/forward_noise"
    )
    assert np.array_equal(model_pixels(noisy), np.asarray(SCENE, dtype=np.int16))
    assert numbers["alpha_bar"] == 1.0 and numbers["signal_kept"] == 1.0 and "clean picture" in note
    assert len(strip) == 8 and strip[0]["caption"] == "t = 0" and strip[-1]["caption"] == "t = 999"
    assert len(estimates) == 2 and Image.open(plot).width > 400  # the default prompt gives both estimates

    noisy, _, _, _, numbers, _ = client.predict(image=files["scene"], timestep=999, seed=3, api_name="/forward_noise")
    assert numbers["signal_kept"] < 1e-3 and numbers["schedule"] == "squaredcos_cap_v2"
    assert np.abs(model_pixels(noisy) - np.asarray(SCENE, dtype=np.int16)).mean() > 40


def test_forward_noise_follows_the_seed(client, files):
    def noisy(seed):
        return model_pixels(client.predict(image=files["scene"], timestep=400, seed=seed, api_name="/forward_noise")[0])

    first, again, other = noisy(7), noisy(7), noisy(8)
    assert np.array_equal(first, again) and np.abs(first - other).mean() > 5


def test_image_to_image_keeps_the_layout_at_low_strength_and_changes_more_at_high(client, files):
    def edit(strength):
        result, strip, note = client.predict(
            image=files["big_scene"], strength=strength, seed=3, api_name="/image_to_image"
        )
        return result, strip, note

    unchanged, _, note = edit(0.0)
    assert np.array_equal(model_pixels(unchanged), np.asarray(SCENE, dtype=np.int16)) and "unchanged" in note
    low, strip, note = edit(0.2)
    assert strip[0]["caption"] == "input" and len(strip) == 1 + 4 and "last 4 of 20" in note
    low_pixels = model_pixels(low)
    assert low_pixels[32, 16, 2] > 150 and low_pixels[32, 16, 0] < 100  # the circle on the left turned blue
    changes = [
        pixel_difference(SCENE, Image.open(edit(s)[0]).resize((64, 64), Image.Resampling.BOX)) for s in (0.1, 1.0)
    ]
    assert changes[1] > changes[0] + 10


def test_inpainting_repaints_under_the_mask_and_keeps_the_rest(client, files):
    result, strip, note = client.predict(image=files["scene"], mask=files["mask"], seed=1, **QUICK, api_name="/inpaint")
    keep = np.asarray(cell_mask(["right"])) == 0
    pixels = model_pixels(result)
    assert np.array_equal(pixels[keep], np.asarray(SCENE, dtype=np.int16)[keep])
    assert np.abs(pixels[~keep] - np.asarray(SCENE, dtype=np.int16)[~keep]).mean() > 10  # a new shape was drawn
    assert strip[0]["caption"] == "input and mask" and "Repainted 25%" in note
    again, *_ = client.predict(image=files["scene"], mask=files["mask"], seed=1, **QUICK, api_name="/inpaint")
    assert np.array_equal(model_pixels(again), pixels)


@pytest.mark.parametrize(
    "mask, message",
    [
        ("small_mask", "The mask is 32×32 pixels but the image is 64×64"),
        ("empty_mask", "The mask is empty"),
        ("full_mask", "covers the whole image"),
        ("corrupt", "The mask is corrupt or truncated|The mask is not an image"),
        (None, "The mask is missing"),
    ],
)
def test_inpainting_refuses_bad_masks_clearly(client, files, mask, message):
    with pytest.raises(Exception, match=message):
        client.predict(image=files["scene"], mask=files.get(mask), **QUICK, api_name="/inpaint")


def test_cross_attention_returns_the_picture_one_heat_map_per_word_and_the_maps(client):
    image, heatmaps, maps, note = client.predict(
        prompt="a large red circle on the left", seed=1, **QUICK, api_name="/cross_attention"
    )
    assert maps["words"] == ["a", "large", "red", "circle", "on", "the", "left"]
    assert np.array(maps["maps"]).shape == (7, 8, 8) and maps["grid"] == [8, 8]
    assert [item["caption"] for item in heatmaps] == maps["words"]
    assert Image.open(image).size == (256, 256) and "7 words" in note


@pytest.mark.parametrize(
    "api_name, arguments, message",
    [
        ("/forward_noise", dict(timestep=1000), "Timestep must be from 0 to 999"),
        ("/forward_noise", dict(timestep=2.5), "Timestep must be a whole number from 0 to 999"),
        ("/forward_noise", dict(image="corrupt"), "The input picture is corrupt or truncated|is not an image"),
        ("/image_to_image", dict(strength=1.5), "Strength must be from 0.0 to 1.0"),
        ("/image_to_image", dict(strength=-0.1), "Strength must be from 0.0 to 1.0"),
        ("/image_to_image", dict(scheduler="PNDM"), "Unknown scheduler"),
        ("/image_to_image", dict(prompt="x" * 1001), "limited to 1,000 characters"),
        ("/image_to_image", dict(model="someone/big-model"), "Unknown model"),
        ("/cross_attention", dict(prompt=""), "Type a prompt"),
        ("/cross_attention", dict(steps=0), "Steps must be from 1 to 100"),
    ],
)
def test_bad_input_is_refused_with_the_limit_named_and_the_app_keeps_serving(
    client, files, api_name, arguments, message
):
    if "image" in arguments:
        arguments = arguments | {"image": files[arguments["image"]]}
    elif api_name != "/cross_attention":
        arguments = arguments | {"image": files["scene"]}
    with pytest.raises(Exception, match=message):
        client.predict(**arguments, api_name=api_name)
    noisy, *_ = client.predict(image=files["scene"], timestep=0, api_name="/forward_noise")
    assert np.array_equal(model_pixels(noisy), np.asarray(SCENE, dtype=np.int16))


def test_a_picture_or_mask_that_names_a_server_file_is_refused(app_url, tmp_path):
    """The lab's endpoints open their files themselves (preprocess=False): only uploads may be read."""
    from tests.test_security import call_endpoint, upload

    def file_data(path: str) -> dict:
        return {"path": path, "meta": {"_type": "gradio.FileData"}}

    scene, mask = tmp_path / "private.png", tmp_path / "mask.png"
    SCENE.save(scene)
    cell_mask(["right"]).save(mask)
    event, data = call_endpoint(app_url, "forward_noise", [file_data(str(scene)), 0, "", 1, "shapes-world"])
    assert event == "error", data[:300]
    uploaded = file_data(upload(app_url, "scene.png", scene.read_bytes())[0])
    settings = ["a red square", 1, 2, 5.0, "shapes-world"]
    event, data = call_endpoint(app_url, "inpaint", [uploaded, file_data(str(mask)), *settings])
    assert event == "error", data[:300]
    uploaded_mask = file_data(upload(app_url, "mask.png", mask.read_bytes())[0])
    event, data = call_endpoint(app_url, "inpaint", [uploaded, uploaded_mask, *settings])
    assert event == "complete", data[:300]  # the refusal was about the paths
