"""The Diffusion lab's inputs: pictures and masks fitted to the model, grid-cell masks, drawn scenes.

Kept apart from `pipelines.diffusion.lab` (which imports diffusers) so the tab can draw its starting picture
and mask without importing the model libraries at start-up.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageOps

from pipelines.core.limits import SEED
from pipelines.diffusion.shapes_world import (
    CELL_CENTRES,
    IMAGE_SIZE,
    PLACES,
    caption_scene,
    random_scene,
    render_scene,
)

CELL_HALF = 16  # a grid cell's mask reaches 16 px from the cell's centre: a large shape (14 px) and a margin


def fit_image(image: Image.Image, size: int) -> Image.Image:
    """The image as the model sees it: RGB, centre-cropped to a square, resized to size × size."""
    image = image.convert("RGB")
    shrinking = min(image.size) >= size  # an area average keeps a scene enlarged by whole pixels exact
    method = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
    return ImageOps.fit(image, (size, size), method=method)


def fit_mask(mask: Image.Image, image_size: tuple[int, int], size: int) -> Image.Image:
    """A mask (white = repaint) cut and resized like its image, as black and white; ValueError when it does
    not match the image, is empty, or covers everything (nothing left to keep)."""
    if mask.size != tuple(image_size):
        raise ValueError(
            f"The mask is {mask.width}×{mask.height} pixels but the image is {image_size[0]}×{image_size[1]}: "
            "paint the mask on the image itself, or send one of the same size."
        )
    grey = ImageOps.fit(mask.convert("L"), (size, size), method=Image.Resampling.BOX)
    repaint = np.asarray(grey) >= 128
    if not repaint.any():
        raise ValueError("The mask is empty: paint (white) over the part of the image to repaint.")
    if repaint.all():
        raise ValueError(
            "The mask covers the whole image, so nothing of it is kept: leave part of it unpainted "
            "(or draw a new picture in Text → Image)."
        )
    return Image.fromarray((repaint * 255).astype(np.uint8), mode="L")


def cell_mask(places: list[str], image_size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> Image.Image:
    """A mask (white = repaint) over grid cells of the shapes world ("top left", "center", ...), for a picture of
    `image_size`: drawn on the centred square the model sees of it (`fit_image`)."""
    unknown = sorted(set(places) - set(PLACES))
    if unknown:
        raise ValueError(f"Unknown grid cells {unknown}: choose from {', '.join(PLACES)}.")
    repaint = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for place in places:
        column, row = PLACES[place]
        x, y = CELL_CENTRES[column], CELL_CENTRES[row]
        repaint[max(0, y - CELL_HALF) : y + CELL_HALF, max(0, x - CELL_HALF) : x + CELL_HALF] = True
    width, height = image_size
    side = min(width, height)
    square = Image.fromarray((repaint * 255).astype(np.uint8), mode="L").resize((side, side), Image.Resampling.NEAREST)
    mask = Image.new("L", (width, height), 0)
    mask.paste(square, ((width - side) // 2, (height - side) // 2))
    return mask


def drawn_scene(seed: int) -> tuple[Image.Image, str]:
    """A random shapes-world scene (any colour+shape pair, held-out ones too) and a caption true of it."""
    rng = random.Random(SEED.check(seed, "Scene seed"))
    scene = random_scene(rng, training=False)
    return render_scene(scene), caption_scene(scene, rng)


def mask_overlay(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The image with the part to repaint tinted magenta, to show what the mask covers."""
    tint = Image.new("RGB", image.size, (255, 0, 255))
    shade = mask.convert("L").resize(image.size, Image.Resampling.NEAREST).point(lambda v: v * 6 // 10)
    return Image.composite(tint, image.convert("RGB"), shade)
