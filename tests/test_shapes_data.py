"""The shapes world: captions say what is drawn, held-out pairs never reach training, the analyser reads images."""

from __future__ import annotations

import random

import numpy as np

from pipelines.adherence import adherence_prompts, analyse_image
from pipelines.shapes_world import (
    CELL_CENTRES, COLOURS, EVAL_ONLY_PLACE_PHRASES, EVAL_ONLY_TEMPLATES, IMAGE_SIZE, PALETTE, PLACE_PHRASES,
    PLACES, SHAPES, Scene, ShapeObject, caption_scene, is_held_out, random_scene, render_scene, training_batch,
)  # fmt: skip


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
                obj.colour, obj.shape, obj.place, scene.background,
            )  # fmt: skip


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
