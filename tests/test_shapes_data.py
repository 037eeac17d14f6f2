"""The shapes world: captions say what is drawn, held-out pairs never reach training, the analyser reads images."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from pipelines.diffusion.shapes_world import (
    CELL_CENTRES,
    COLOURS,
    EVAL_ONLY_PLACE_PHRASES,
    EVAL_ONLY_TEMPLATES,
    IMAGE_SIZE,
    PALETTE,
    PLACE_PHRASES,
    PLACES,
    SHAPES,
    Scene,
    ShapeObject,
    caption_scene,
    is_held_out,
    object_boxes,
    random_scene,
    render_scene,
    shape_shuffled_caption,
    training_batch,
)
from training.adherence import adherence_prompts, analyse_image, shape_overlaps


@pytest.mark.slow
def test_captions_name_the_colour_shape_and_place_of_every_object_drawn():
    rng = random.Random(0)
    for _ in range(300):
        scene = random_scene(rng)
        caption = caption_scene(scene, rng)
        for obj in scene.objects:
            assert f"{obj.colour} {obj.shape}" in caption
            assert any(p in caption for p in PLACE_PHRASES[obj.place] + (obj.place,))
            assert obj.colour != scene.background
        if len(scene.objects) == 1:  # a lone object is exactly what the analyser reads from the pixels
            found = analyse_image(render_scene(scene))
            (obj,) = scene.objects
            assert (found.colour, found.shape, found.place, found.background) == (
                obj.colour,
                obj.shape,
                obj.place,
                scene.background,
            )


def test_held_out_pairs_are_never_drawn_in_training_mode_but_are_in_evaluation_mode():
    rng = random.Random(1)
    training_pairs = {(o.colour, o.shape) for _ in range(3000) for o in random_scene(rng).objects}
    assert not any(is_held_out(*pair) for pair in training_pairs)
    assert len(training_pairs) == len(COLOURS) * len(SHAPES) - 4
    evaluation_pairs = {(o.colour, o.shape) for _ in range(3000) for o in random_scene(rng, training=False).objects}
    assert any(is_held_out(*pair) for pair in evaluation_pairs)


def test_training_batches_are_seeded_images_with_captions():
    images, captions = training_batch(random.Random(5), 8)
    again, same_captions = training_batch(random.Random(5), 8)
    assert images.shape == (8, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and captions == same_captions
    assert len(set(captions)) == 8


def test_object_boxes_are_the_squares_each_shape_is_drawn_in():
    square = Scene((ShapeObject("red", "square", "large", "center"),), "black", ((0, 0),))
    drawn = (np.asarray(render_scene(square)) != np.asarray(PALETTE["black"])).any(axis=-1)
    assert np.array_equal(object_boxes(square), drawn)  # a square fills its box exactly
    pair = Scene(
        (ShapeObject("blue", "circle", "small", "top left"), ShapeObject("green", "triangle", "small", "bottom right")),
        "white",
        ((0, 0), (0, 0)),
    )
    boxes = object_boxes(pair)
    shapes = (np.asarray(render_scene(pair)) != np.asarray(PALETTE["white"])).any(axis=-1)
    assert not (shapes & ~boxes).any() and boxes.sum() == 2 * 17 * 17 > shapes.sum()


def test_colourless_captions_leave_out_only_the_objects_colour_words():
    images, captions = training_batch(random.Random(4), 32, colourless_share=1.0)
    same_images, with_colours = training_batch(random.Random(4), 32)
    assert np.array_equal(images, same_images)  # the scenes are drawn first; only their wording changes
    rng = random.Random(4)
    scenes = [random_scene(rng, two_object_share=0.25) for _ in range(32)]
    for scene, caption, coloured in zip(scenes, captions, with_colours):
        for obj in scene.objects:
            assert obj.shape in caption and f"{obj.colour} {obj.shape}" in coloured
            assert obj.colour not in caption.replace(f"{scene.background} background", "")
    lone = [random_scene(rng, two_object_share=0.0) for _ in range(400)]
    left_out = sum(s.objects[0].colour not in caption_scene(s, rng, colourless_share=0.5) for s in lone)
    assert 150 < left_out < 250


def test_shape_shuffled_captions_redraw_only_the_shape_words_and_never_form_a_held_out_pair():
    rng = random.Random(6)
    drawn_after: dict[str, set[str]] = {c: set() for c in COLOURS}
    for caption in training_batch(random.Random(3), 400, two_object_share=0.25)[1]:
        shuffled = shape_shuffled_caption(caption, rng)
        words, new_words = caption.split(), shuffled.split()
        assert len(words) == len(new_words)
        for before, (word, new_word) in zip([None] + words, zip(words, new_words)):
            if word.strip(",") in SHAPES and before in COLOURS:
                assert not is_held_out(before, new_word.strip(","))
                drawn_after[before].add(new_word.strip(","))
            else:
                assert word == new_word  # colours, sizes, places and background untouched
    # every shape trained with a colour can be drawn, the caption's own included: the context says nothing
    assert drawn_after == {c: {s for s in SHAPES if not is_held_out(c, s)} for c in COLOURS}
    assert shape_shuffled_caption("a blue square on a red background", random.Random(0)) in {
        "a blue square on a red background",
        "a blue triangle on a red background",
    }


def test_training_captions_never_use_the_evaluation_only_wordings():
    rng = random.Random(2)
    captions = [caption_scene(random_scene(rng), rng) for _ in range(2000)]
    unseen_markers = list(EVAL_ONLY_PLACE_PHRASES.values()) + [t.split("{")[0].strip() for t in EVAL_ONLY_TEMPLATES]
    assert not any(marker in caption for marker in unseen_markers for caption in captions)


def test_adherence_prompts_mix_held_out_pairs_and_unseen_wordings():
    cases = adherence_prompts(200, seed=3)
    assert len(cases) == 200
    held_out = [c for c in cases if c.held_out]
    assert 40 <= len(held_out) <= 100
    assert all(is_held_out(c.target.colour, c.target.shape) for c in held_out)
    assert sum(c.unseen_phrasing for c in cases) == 100
    assert all(f"{c.target.colour} {c.target.shape}" in c.prompt for c in cases)


def test_analyser_finds_no_shape_on_a_plain_background():
    scene = Scene((ShapeObject("red", "circle", "small", "center"),), "blue", ((0, 0),))
    blank = render_scene(Scene((), "blue", ()))
    assert analyse_image(blank).shape is None and analyse_image(blank).background == "blue"
    assert analyse_image(render_scene(scene)).place == "center"
    assert set(PLACES) >= {"left", "right", "top", "bottom", "center"}


def test_every_lone_shape_is_drawn_at_its_cells_centre():
    # Moved shapes would teach the model a blurred average (a small triangle's reads as a circle).
    rng = random.Random(3)
    scenes = [scene for scene in (random_scene(rng) for _ in range(200)) if len(scene.objects) == 1]
    for scene in scenes:
        (obj,) = scene.objects
        pixels = np.asarray(render_scene(scene), dtype=np.float32)
        rows, columns = np.nonzero(np.abs(pixels - PALETTE[obj.colour]).sum(-1) < 30)
        column, row = PLACES[obj.place]
        # half a pixel of slack: PIL's polygon edges round a triangle's slopes slightly unevenly
        assert abs((columns.min() + columns.max() + 1) / 2 - CELL_CENTRES[column]) <= 0.5
        if obj.shape != "triangle":  # a triangle is not symmetric top to bottom
            assert (rows.min() + rows.max() + 1) / 2 == CELL_CENTRES[row]
    assert len(scenes) > 150


def _with_ragged_fringe(image, width: int, rng: random.Random):
    """Half the pixels within `width` of the shape repainted in random palette colours, as generated images show."""
    pixels = np.asarray(image).copy()
    background = np.array(PALETTE[analyse_image(image).background])
    shape = np.abs(pixels.astype(int) - background).sum(-1) > 60
    ring = ndimage.binary_dilation(shape, iterations=width) & ~shape
    colours = list(PALETTE.values())
    for row, column in zip(*np.nonzero(ring)):
        if rng.random() < 0.5:
            pixels[row, column] = colours[rng.randrange(len(colours))]
    return Image.fromarray(pixels)


def _box_size(image) -> tuple[int, int]:
    pixels = np.asarray(image, dtype=int)
    rows, columns = np.nonzero(np.abs(pixels - pixels[0, 0]).sum(-1) > 0)
    return rows.max() - rows.min() + 1, columns.max() - columns.min() + 1


def test_the_shape_reader_is_not_fooled_by_a_ragged_fringe_of_other_colours():
    # A fringe widens the object's bounding box by 2-4 px, which a bounding-box fill ratio takes for a rounder shape.
    rng = random.Random(7)
    for shape in SHAPES:
        for size in ("small", "large"):
            for place in ("top left", "center", "bottom right"):
                colour = rng.choice(COLOURS)
                background = rng.choice([c for c in COLOURS if c != colour])
                drawn = render_scene(Scene((ShapeObject(colour, shape, size, place),), background, ((0, 0),)))
                for width in (1, 2):
                    fringed = _with_ragged_fringe(drawn, width, rng)
                    assert max(_box_size(fringed)) > max(_box_size(drawn))
                    found = analyse_image(fringed)
                    assert (found.colour, found.shape, found.place) == (colour, shape, place), (shape, size, width)


def test_a_form_that_is_none_of_the_three_shapes_reads_as_no_shape():
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), PALETTE["blue"])
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 30, 44, 34], fill=PALETTE["yellow"])  # a plus sign
    draw.rectangle([30, 20, 34, 44], fill=PALETTE["yellow"])
    found = analyse_image(image)
    assert found.colour == "yellow" and found.place == "center" and found.shape is None
    ring = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), PALETTE["black"])
    ImageDraw.Draw(ring).ellipse([18, 18, 46, 46], outline=PALETTE["white"], width=3)
    assert analyse_image(ring).shape is None


def test_each_drawn_shape_overlaps_its_own_template_best():
    for shape in SHAPES:
        for size in ("small", "large"):
            scene = Scene((ShapeObject("red", shape, size, "center"),), "white", ((0, 0),))
            pixels = np.asarray(render_scene(scene), dtype=int)
            mask = np.abs(pixels - PALETTE["red"]).sum(-1) < np.abs(pixels - PALETTE["white"]).sum(-1)
            overlaps = shape_overlaps(mask)
            assert overlaps[shape] > 0.95
            assert all(overlaps[other] < overlaps[shape] - 0.1 for other in SHAPES if other != shape)
