"""A captioned world of flat shapes: procedural, seeded, unlimited training data for the text-to-image model.

Each image is one or two coloured shapes (circle, square, triangle) on a plain background. Captions use
many phrasings so a model learns the words, not one template. Some colour+shape pairs are held out: they
are never drawn in training mode, so the adherence evaluator can test whether the model composes them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # shapes are drawn 4x larger then shrunk, which gives smooth edges

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (245, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
HALF_EXTENT = {"small": 8, "large": 14}  # pixels from the centre to the shape's edge, at 64x64

# Places are the cells of a 3x3 grid; (column, row) with 0 = left/top.
PLACES: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "center": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}
CELL_CENTRES = (16, 32, 48)  # pixel centre of each column / row
# Pixels a shape may move from its cell's centre: zero, because a diffusion model this small learns
# roughly the average image of a caption, and the average of a small triangle moved by up to 2 px is round
# enough to read as a circle (the model card's "Choices measured").
JITTER = 0

# Never drawn in training mode: the evaluator checks the model can still compose them.
HELD_OUT_PAIRS = frozenset({("red", "triangle"), ("green", "square"), ("blue", "circle"), ("white", "triangle")})

# How a place is said: several wordings each, some kept for evaluation only.
# Synonyms (upper/lower, centre/middle, "to the left") are part of the training vocabulary, as in real
# captions; the evaluation-only wordings below are still whole phrases and templates never used in training.
PLACE_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner", "at the top left", "in the upper left corner"),
    "top": ("at the top", "near the top", "in the upper part"),
    "top right": ("in the top right corner", "at the top right", "in the upper right corner"),
    "left": ("on the left", "at the left side", "to the left"),
    "center": ("in the center", "in the middle", "in the centre"),
    "right": ("on the right", "at the right side", "to the right"),
    "bottom left": ("in the bottom left corner", "at the bottom left", "in the lower left corner"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part"),
    "bottom right": ("in the bottom right corner", "at the bottom right", "in the lower right corner"),
}
EVAL_ONLY_PLACE_PHRASES: dict[str, str] = {
    "top left": "up in the upper left",
    "top": "up high in the upper middle",
    "top right": "up in the upper right",
    "left": "over to the left",
    "center": "right in the centre",
    "right": "over to the right",
    "bottom left": "down in the lower left",
    "bottom": "down low in the lower middle",
    "bottom right": "down in the lower right",
}

# One-object caption templates. {obj} = "small red circle" style phrase, {place} a place phrase
# ("on the left"), {where} a bare place ("top right"), {bg} a background colour.
TRAIN_TEMPLATES = (
    "a {obj} {place} on a {bg} background",
    "a {obj} {place}",
    "{obj}, {where}, {bg} background",
    "there is a {obj} {place}",
    "a {bg} background with a {obj} {place}",
    "{obj} {place}",
    "an image of a {obj} {place}, {bg} background",
    "{where}: a {obj}",
)
EVAL_ONLY_TEMPLATES = (
    "a picture showing one {obj} {place}, the background is {bg}",
    "please draw a {obj} {place} against {bg}",
    "i would like a {obj} {place}",
)
PAIR_TEMPLATES = (
    "a {obj1} {place1} and a {obj2} {place2}",
    "a {obj1} {place1} and a {obj2} {place2} on a {bg} background",
    "two shapes: a {obj1} {place1}, a {obj2} {place2}",
)
# Pairs of places far enough apart that two small shapes never touch.
DISTANT_PLACE_PAIRS = tuple(
    (a, b)
    for a in PLACES
    for b in PLACES
    if a < b and max(abs(PLACES[a][0] - PLACES[b][0]), abs(PLACES[a][1] - PLACES[b][1])) == 2
)


@dataclass(frozen=True)
class ShapeObject:
    colour: str
    shape: str
    size: str
    place: str


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]
    background: str
    offsets: tuple[tuple[int, int], ...]  # pixel jitter per object


def is_held_out(colour: str, shape: str) -> bool:
    return (colour, shape) in HELD_OUT_PAIRS


def _random_object(rng: random.Random, place: str, size: str, held_out: bool | None) -> ShapeObject:
    """held_out=False: never a held-out pair (training); True: only held-out pairs; None: any pair."""
    while True:
        colour, shape = rng.choice(COLOURS), rng.choice(SHAPES)
        if held_out is None or is_held_out(colour, shape) == held_out:
            return ShapeObject(colour, shape, size, place)


def _background_for(rng: random.Random, objects: tuple[ShapeObject, ...]) -> str:
    used = {o.colour for o in objects}
    return rng.choice([c for c in COLOURS if c not in used])


def random_scene(rng: random.Random, training: bool = True, two_object_share: float = 0.25) -> Scene:
    """A random scene; in training mode no object is a held-out colour+shape pair."""
    held_out = False if training else None
    if rng.random() < two_object_share:
        place_a, place_b = rng.choice(DISTANT_PLACE_PAIRS)
        objects = (
            _random_object(rng, place_a, "small", held_out),
            _random_object(rng, place_b, "small", held_out),
        )
        if objects[0].colour == objects[1].colour:
            objects = (objects[0], _random_object(rng, place_b, "small", held_out))
    else:
        objects = (_random_object(rng, rng.choice(tuple(PLACES)), rng.choice(SIZES), held_out),)
    offsets = tuple((rng.randint(-JITTER, JITTER), rng.randint(-JITTER, JITTER)) for _ in objects)
    return Scene(objects, _background_for(rng, objects), offsets)


def _shape_outline(shape: str, cx: float, cy: float, half: float) -> list[tuple[float, float]]:
    if shape == "triangle":  # pointing up, base at the bottom
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    return [(cx - half, cy - half), (cx + half, cy + half)]


def render_scene(scene: Scene) -> Image.Image:
    """The scene as a 64x64 RGB image."""
    big = IMAGE_SIZE * SUPERSAMPLE
    image = Image.new("RGB", (big, big), PALETTE[scene.background])
    draw = ImageDraw.Draw(image)
    for obj, (dx, dy) in zip(scene.objects, scene.offsets):
        column, row = PLACES[obj.place]
        cx = (CELL_CENTRES[column] + dx) * SUPERSAMPLE
        cy = (CELL_CENTRES[row] + dy) * SUPERSAMPLE
        half = HALF_EXTENT[obj.size] * SUPERSAMPLE
        outline = _shape_outline(obj.shape, cx, cy, half)
        fill = PALETTE[obj.colour]
        if obj.shape == "circle":
            draw.ellipse(outline, fill=fill)
        elif obj.shape == "square":
            draw.rectangle(outline, fill=fill)
        else:
            draw.polygon(outline, fill=fill)
    return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def _object_phrase(rng: random.Random, obj: ShapeObject, colourless_share: float = 0.0) -> str:
    # The size word is sometimes left out, as people often do; in training, if asked, the colour word too, so that
    # the shape word alone must carry the shape. No draw when the share is 0: older runs' streams stay the same.
    colour = "" if colourless_share and rng.random() < colourless_share else f"{obj.colour} "
    return f"{colour}{obj.shape}" if rng.random() < 0.3 else f"{obj.size} {colour}{obj.shape}"


def _place_phrase(rng: random.Random, place: str, unseen_phrasing: bool) -> str:
    if unseen_phrasing:
        return EVAL_ONLY_PLACE_PHRASES[place]
    return rng.choice(PLACE_PHRASES[place])


def caption_scene(
    scene: Scene, rng: random.Random, unseen_phrasing: bool = False, colourless_share: float = 0.0
) -> str:
    """A natural-language caption that is true of the scene (training wordings unless unseen_phrasing); an
    object's colour word is left out with probability colourless_share."""
    return re.sub(r"\ba (?=[aeiou])", "an ", _caption(scene, rng, unseen_phrasing, colourless_share))


def _caption(scene: Scene, rng: random.Random, unseen_phrasing: bool, colourless_share: float) -> str:
    if len(scene.objects) == 2:
        first, second = scene.objects
        template = rng.choice(PAIR_TEMPLATES)
        return template.format(
            obj1=_object_phrase(rng, first, colourless_share),
            place1=_place_phrase(rng, first.place, False),
            obj2=_object_phrase(rng, second, colourless_share),
            place2=_place_phrase(rng, second.place, False),
            bg=scene.background,
        )
    (obj,) = scene.objects
    template = rng.choice(EVAL_ONLY_TEMPLATES if unseen_phrasing else TRAIN_TEMPLATES)
    return template.format(
        obj=_object_phrase(rng, obj, colourless_share),
        place=_place_phrase(rng, obj.place, unseen_phrasing),
        where=obj.place,
        bg=scene.background,
    )


_OBJECT_WORDS = re.compile(rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")


def shape_shuffled_caption(caption: str, rng: random.Random) -> str:
    """The caption with each object's shape word redrawn among the shapes trained with its colour.

    Used only as context for the colour words' token embeddings: MiniLM's vector for "blue" in "blue square"
    also says "square", and a model can learn to read the shape from it. From a redrawn context that vector no
    longer predicts the drawn shape. Held-out pairs are never formed, not even in text."""

    def redraw(match: re.Match) -> str:
        colour = match.group(1)
        return f"{colour} {rng.choice([s for s in SHAPES if not is_held_out(colour, s)])}"

    return _OBJECT_WORDS.sub(redraw, caption)


def training_scenes(
    rng: random.Random, batch_size: int, two_object_share: float = 0.25, colourless_share: float = 0.0
) -> tuple[np.ndarray, list[str], list[Scene]]:
    """(batch_size, 64, 64, 3) uint8 images, their captions and scenes; never a held-out pair."""
    scenes = [random_scene(rng, training=True, two_object_share=two_object_share) for _ in range(batch_size)]
    images = np.stack([np.asarray(render_scene(s)) for s in scenes])
    return images, [caption_scene(s, rng, colourless_share=colourless_share) for s in scenes], scenes


def training_batch(
    rng: random.Random, batch_size: int, two_object_share: float = 0.25, colourless_share: float = 0.0
) -> tuple[np.ndarray, list[str]]:
    """(batch_size, 64, 64, 3) uint8 images and their captions; never a held-out pair."""
    return training_scenes(rng, batch_size, two_object_share, colourless_share)[:2]


def object_boxes(scene: Scene) -> np.ndarray:
    """(64, 64) bool: the square box each object is drawn in (a circle's or triangle's corners included)."""
    inside = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for obj, (dx, dy) in zip(scene.objects, scene.offsets):
        column, row = PLACES[obj.place]
        cx, cy, half = CELL_CENTRES[column] + dx, CELL_CENTRES[row] + dy, HALF_EXTENT[obj.size]
        # PIL fills the outline's end row and column too: a quarter of pixel cx + half at this supersampling
        inside[max(0, cy - half) : cy + half + 1, max(0, cx - half) : cx + half + 1] = True
    return inside
