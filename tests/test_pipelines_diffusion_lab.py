"""The Diffusion lab's pipelines on tiny random models (the shapes-world layout and a Hub-style Stable Diffusion),
and, marked slow, on the trained shapes-world weights."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.core.imaging import pixel_difference
from pipelines.diffusion import lab
from pipelines.diffusion import text_to_image as t2i
from pipelines.diffusion.lab_inputs import cell_mask, drawn_scene, fit_image, fit_mask, mask_overlay
from pipelines.diffusion.shapes_world import Scene, ShapeObject, render_scene
from tests.test_pipelines_text_to_image import TINY, tiny_stable_diffusion
from training.adherence import analyse_image

SCENE = render_scene(Scene((ShapeObject("red", "circle", "large", "left"),), "white", ((0, 0),)))
FAST = dict(steps=3, guidance_scale=3.0)


@pytest.fixture(scope="module")
def tiny():
    return t2i.new_pipeline(TINY, seed=0)


@pytest.fixture(scope="module")
def tiny_hub(tmp_path_factory):
    return t2i.load_text_to_image(str(tiny_stable_diffusion(tmp_path_factory.mktemp("sd"))))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


# ------------------------------------------------------------------------------------------ inputs


def test_pictures_are_centre_cropped_and_a_scene_enlarged_by_whole_pixels_comes_back_exactly():
    enlarged = SCENE.resize((256, 256), Image.Resampling.NEAREST)
    assert np.array_equal(pixels(fit_image(enlarged, 64)), pixels(SCENE))
    wide = Image.new("RGB", (300, 100), "blue")
    wide.paste(Image.new("RGB", (100, 100), "red"), (100, 0))  # the centre square is red
    fitted = fit_image(wide, 64)
    assert fitted.size == (64, 64) and np.all(pixels(fitted) == (255, 0, 0))


def test_grid_cell_masks_cover_the_cells_on_the_square_the_model_sees():
    mask = np.asarray(cell_mask(["right"])) > 0
    assert mask[32, 48] and not mask[32, 16] and mask[:, 32:].sum() == mask.sum()
    wide = np.asarray(cell_mask(["left"], (300, 100))) > 0
    assert wide.shape == (100, 300) and not wide[:, :100].any() and wide[50, 110]
    assert np.array_equal(
        np.asarray(fit_mask(cell_mask(["left"], (300, 100)), (300, 100), 64)) > 0, np.asarray(cell_mask(["left"])) > 0
    )
    with pytest.raises(ValueError, match="Unknown grid cells"):
        cell_mask(["middle"])


@pytest.mark.parametrize(
    "mask, message",
    [
        (Image.new("L", (32, 32), 255), "The mask is 32×32 pixels but the image is 64×64"),
        (Image.new("L", (64, 64), 0), "The mask is empty"),
        (Image.new("L", (64, 64), 255), "covers the whole image"),
    ],
)
def test_masks_that_do_not_fit_the_image_or_leave_nothing_to_do_are_refused(mask, message):
    with pytest.raises(ValueError, match=message):
        fit_mask(mask, (64, 64), 64)


def test_drawn_scenes_follow_their_seed_and_the_mask_overlay_tints_only_the_mask():
    first, caption = drawn_scene(5)
    again, same_caption = drawn_scene(5)
    assert np.array_equal(pixels(first), pixels(again)) and caption == same_caption and first.size == (64, 64)
    shown = pixels(mask_overlay(SCENE, cell_mask(["right"])))
    assert np.array_equal(shown[:, :16], pixels(SCENE)[:, :16]) and not np.array_equal(
        shown[:, 48:], pixels(SCENE)[:, 48:]
    )


# ------------------------------------------------------------------------------------------ 1. forward process


def test_the_forward_process_at_t_0_is_the_input_and_at_t_999_nearly_pure_noise(tiny):
    clean = lab.forward_process(tiny, SCENE, 0, seed=1)
    assert np.array_equal(pixels(clean.noisy), pixels(SCENE)) and clean.alpha_bar == 1.0 and clean.signal_kept == 1.0
    scheduler = lab.forward_scheduler(tiny)
    x0 = t2i.images_to_patches(t2i.image_tensor(SCENE, 1, "cpu", torch.float32))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(lab.add_noise(scheduler, x0, noise, 999), noise, atol=1e-3)
    noisiest = lab.forward_process(tiny, SCENE, 999, seed=1)
    assert noisiest.signal_kept < 1e-3 and noisiest.noise_level > 0.999
    assert pixel_difference(noisiest.noisy, SCENE) > 40  # noise drowns the picture


def test_the_forward_process_follows_the_training_schedule_and_the_seed(tiny):
    scheduler = lab.forward_scheduler(tiny)
    result = lab.forward_process(tiny, SCENE, 500, seed=3)
    assert result.alpha_bar == pytest.approx(float(scheduler.alphas_cumprod[500]))
    assert result.signal_kept**2 + result.noise_level**2 == pytest.approx(1.0)
    assert np.array_equal(pixels(result.noisy), pixels(lab.forward_process(tiny, SCENE, 500, seed=3).noisy))
    assert pixel_difference(result.noisy, lab.forward_process(tiny, SCENE, 500, seed=4).noisy) > 5
    assert [t for t, _ in result.strip] == list(lab.FORWARD_STRIP_TIMESTEPS)
    changes = [pixel_difference(image, SCENE) for _, image in result.strip]
    assert changes[0] == 0 and changes == sorted(changes)  # more noise at every later step shown
    cosine, linear = result.alpha_bars, lab.linear_alpha_bars()
    assert np.all(np.diff(cosine) <= 0) and np.all(np.diff(linear) <= 0)
    assert cosine[300] > linear[300]  # the cosine schedule keeps more of the picture in the middle steps


def test_the_one_step_estimates_come_with_and_without_the_prompt_and_the_plot_is_drawn(tiny):
    without = lab.forward_process(tiny, SCENE, 700, "", seed=1)
    both = lab.forward_process(tiny, SCENE, 700, "a blue square", seed=1)
    assert [label for label, _ in without.estimates] == ["no prompt"]
    assert [label for label, _ in both.estimates] == ["no prompt", "with prompt"]
    assert np.array_equal(pixels(both.estimates[0][1]), pixels(without.estimates[0][1]))
    assert pixel_difference(both.estimates[0][1], both.estimates[1][1]) > 0  # the prompt changes the guess
    plot = lab.schedule_plot(both)
    assert plot.width > 400 and plot.height > 200


@pytest.mark.parametrize("timestep", [-1, 1000, 2.5])
def test_the_forward_process_refuses_timesteps_outside_0_to_999(tiny, timestep):
    with pytest.raises(ValueError, match="Timestep must be a whole number from 0 to 999"):
        lab.forward_process(tiny, SCENE, timestep)


# ------------------------------------------------------------------------------------------ 2. image-to-image


def test_image_to_image_runs_the_last_strength_of_the_steps_and_follows_the_seed(tiny):
    edit = lab.image_to_image(tiny, SCENE, "a blue circle", strength=0.5, seed=2, steps=6, guidance_scale=3.0)
    again = lab.image_to_image(tiny, SCENE, "a blue circle", strength=0.5, seed=2, steps=6, guidance_scale=3.0)
    other = lab.image_to_image(tiny, SCENE, "a blue circle", strength=0.5, seed=3, steps=6, guidance_scale=3.0)
    assert edit.steps_run == 3 and edit.generation.steps_shown == [1, 2, 3]
    assert np.array_equal(pixels(edit.image), pixels(again.image)) and pixel_difference(edit.image, other.image) > 0
    unchanged = lab.image_to_image(tiny, SCENE, "a blue circle", strength=0.0, seed=2, steps=6)
    assert unchanged.steps_run == 0 and np.array_equal(pixels(unchanged.image), pixels(SCENE))


@pytest.mark.parametrize("scheduler", ["DDIM", "DPM-Solver++", "Euler"])
def test_image_to_image_works_with_every_scheduler(tiny, scheduler):
    edit = lab.image_to_image(tiny, SCENE, "a green square", 0.5, seed=1, steps=4, scheduler_name=scheduler)
    again = lab.image_to_image(tiny, SCENE, "a green square", 0.5, seed=1, steps=4, scheduler_name=scheduler)
    assert edit.steps_run == 2 and edit.image.size == (64, 64)
    assert np.array_equal(pixels(edit.image), pixels(again.image))


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_image_to_image_refuses_a_strength_outside_0_to_1(tiny, strength):
    with pytest.raises(ValueError, match="Strength must be a number from 0.0 to 1.0"):
        lab.image_to_image(tiny, SCENE, "a red circle", strength)


# ------------------------------------------------------------------------------------------ 3. inpainting


def test_inpainting_keeps_every_pixel_outside_the_mask_and_changes_the_inside(tiny):
    mask = cell_mask(["right"])
    edit = lab.inpaint(tiny, SCENE, mask, "a green triangle on the right", seed=1, **FAST)
    repaint = np.asarray(mask) > 0
    assert np.array_equal(pixels(edit.image)[~repaint], pixels(SCENE)[~repaint])
    assert np.abs(pixels(edit.image)[repaint] - pixels(SCENE)[repaint]).mean() > 1
    again = lab.inpaint(tiny, SCENE, mask, "a green triangle on the right", seed=1, **FAST)
    assert np.array_equal(pixels(edit.image), pixels(again.image))
    # The strip shows the model's guess with the known part in place.
    assert len(edit.generation.strip) == 3 and edit.mask is not None


def test_inpainting_a_larger_picture_fits_picture_and_mask_alike(tiny):
    big = SCENE.resize((256, 256), Image.Resampling.NEAREST)
    edit = lab.inpaint(tiny, big, cell_mask(["top"], (256, 256)), "a red square at the top", seed=1, **FAST)
    repaint = np.asarray(cell_mask(["top"])) > 0
    assert np.array_equal(pixels(edit.image)[~repaint], pixels(SCENE)[~repaint])
    with pytest.raises(ValueError, match="The mask is 64×64 pixels but the image is 256×256"):
        lab.inpaint(tiny, big, cell_mask(["top"]), "a red square", seed=1, **FAST)


def test_the_pipeline_inpaints_a_batch_with_one_picture_and_mask_per_prompt(tiny):
    masks = [cell_mask(["left"]), cell_mask(["right"])]
    images = tiny(
        ["a blue square", "a green circle"],
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
        image=[SCENE, SCENE],
        mask_image=masks,
    ).images
    for image, mask in zip(images, masks):
        keep = np.asarray(mask) == 0
        assert np.array_equal(pixels(image)[keep], pixels(SCENE)[keep])


# ------------------------------------------------------------------------------------------ 4. cross-attention


def test_cross_attention_gives_one_map_per_word_per_level(tiny):
    maps = lab.cross_attention(tiny, "a bluish circle, on the left", seed=1, **FAST)
    assert maps.words == ["a", "bluish", "circle", "on", "the", "left"]  # word pieces joined, the comma left out
    assert sorted(maps.levels) == [4, 8]  # the tiny UNet attends at 8x8 and 4x4 positions
    assert maps.maps.shape == (6, 8, 8) and maps.levels[4].shape == (6, 4, 4)
    # Each position's attention over the prompt's tokens sums to 1; the words get part of it.
    assert np.all(maps.maps >= 0) and np.all(maps.maps.sum(0) <= 1 + 1e-5) and maps.maps.sum() > 0
    as_json = maps.as_json()
    assert as_json["words"] == maps.words and np.array(as_json["maps"]).shape == (6, 8, 8)
    assert set(as_json["levels"]) == {"8x8", "4x4"} and maps.level("4x4").shape == (6, 4, 4)
    with pytest.raises(ValueError, match="No cross-attention at 2x2"):
        maps.level("2x2")


def test_recording_attention_changes_nothing_the_model_draws_and_follows_the_seed(tiny):
    before = t2i.generate(tiny, "a red circle on the left", seed=5, **FAST).images[0]
    maps = lab.cross_attention(tiny, "a red circle on the left", seed=5, **FAST)
    after = t2i.generate(tiny, "a red circle on the left", seed=5, **FAST).images[0]
    assert np.array_equal(pixels(maps.image), pixels(before)) and np.array_equal(pixels(after), pixels(before))
    again = lab.cross_attention(tiny, "a red circle on the left", seed=5, **FAST)
    assert np.array_equal(maps.maps, again.maps)


def test_a_recording_sees_only_its_own_request(tiny):
    """Another request running on the shared UNet at the same time is not recorded (nor changed)."""
    lab.install_recorders(tiny.unet)
    outside: list = []
    stop = threading.Event()

    def other_request():
        while not stop.is_set():
            outside.append(t2i.generate(tiny, "a blue square", steps=1, guidance_scale=0.0, seed=1).images[0])

    thread = threading.Thread(target=other_request)
    thread.start()
    try:
        with lab.recording_cross_attention(tiny.unet, guided=False) as recording:
            t2i.generate(tiny, "a red circle", steps=2, guidance_scale=0.0, seed=1)
    finally:
        stop.set()
        thread.join()
    assert set(recording.counts.values()) == {2}  # two steps, one pass each: nothing of the other thread
    assert len({pixels(image).tobytes() for image in outside}) == 1


def test_map_centres_and_overlays():
    left = np.zeros((8, 8))
    left[:, :2] = 1.0
    x, y = lab.map_centre(left)
    assert x < 0.2 and y == pytest.approx(0.5)
    assert lab.map_centre(np.ones((8, 8))) == (0.5, 0.5)
    overlay = lab.heatmap_overlay(SCENE, left, size=96)
    assert overlay.size == (96, 96) and overlay.mode == "RGB"


def test_a_prompt_without_words_is_refused(tiny):
    with pytest.raises(ValueError, match="no words"):
        lab.cross_attention(tiny, " , . ", **FAST)


# ------------------------------------------------------------------------------------------ the Hub path


def test_the_hub_path_runs_every_part_on_a_tiny_stable_diffusion(tiny_hub):
    size = lab.native_size(tiny_hub)
    assert size == 32
    forward = lab.forward_process(tiny_hub, SCENE, 400, "a red circle", seed=1)
    assert forward.noisy.size == (32, 32) and len(forward.estimates) == 2 and forward.schedule == "scaled_linear"
    edit = lab.image_to_image(tiny_hub, SCENE, "a blue circle", 0.5, seed=1, steps=4, scheduler_name="DDIM")
    again = lab.image_to_image(tiny_hub, SCENE, "a blue circle", 0.5, seed=1, steps=4, scheduler_name="DDIM")
    assert type(edit.generation).__name__ == "Generation" and edit.image.size == (32, 32) and edit.steps_run == 2
    assert np.array_equal(pixels(edit.image), pixels(again.image))
    painted = lab.inpaint(tiny_hub, SCENE, cell_mask(["right"]), "a green square", seed=1, steps=3)
    assert painted.image.size == (32, 32)
    maps = lab.cross_attention(tiny_hub, "red circle", seed=1, steps=2)
    assert maps.words == ["red", "circle"] and maps.maps.shape[0] == 2 and maps.image.size == (32, 32)


# ------------------------------------------------------------------------------------------ the trained model


@pytest.fixture(scope="module")
def trained():
    return t2i.load_builtin_text_to_image()


@pytest.mark.slow
def test_with_the_trained_model_a_red_circle_turns_blue_at_low_strength_and_the_change_grows(trained):
    prompt = "a large blue square on the right on a white background"
    low = lab.image_to_image(trained, SCENE, prompt, strength=0.2, seed=3)
    found = analyse_image(low.image)
    assert (found.colour, found.shape, found.place) == ("blue", "circle", "left")  # same layout, new colour
    changes = [lab.image_to_image(trained, SCENE, prompt, strength=s, seed=3).change for s in (0.1, 0.4, 1.0)]
    assert changes == sorted(changes) and changes[-1] > changes[0] + 10
    high = analyse_image(lab.image_to_image(trained, SCENE, prompt, strength=1.0, seed=3).image)
    assert (high.colour, high.shape, high.place) == ("blue", "square", "right")  # something new


@pytest.mark.slow
def test_with_the_trained_model_inpainting_draws_the_asked_shape_in_the_mask(trained):
    edit = lab.inpaint(trained, SCENE, cell_mask(["right"]), "a small green triangle on the right", seed=1)
    inside = pixels(edit.image).astype(np.uint8).copy()
    inside[:, :32] = (245, 245, 245)  # leave the kept circle out of the reading
    found = analyse_image(Image.fromarray(inside))
    assert (found.colour, found.shape, found.place) == ("green", "triangle", "right")


@pytest.mark.slow
def test_with_the_trained_model_the_shape_and_colour_words_look_at_the_object(trained):
    maps = lab.cross_attention(trained, "a large red circle on the left on a white background", seed=1)
    for word in ("red", "circle"):
        x, _ = lab.map_centre(maps.maps[maps.words.index(word)])
        assert x < 0.5, word
