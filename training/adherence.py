"""Prompt adherence: does a generated shapes-world image show the colour, shape and place the prompt asked for?

The check is plain image analysis that knows the palette: the background is the most common palette colour
on the border; the object is the largest connected region far from it; its colour is its most common
palette colour, its place the cell of a 3x3 grid that holds its centre. Its shape is the ideal circle, square
or triangle (drawn as the shapes world draws them, fitted in size and position) that overlaps best with the
object's pixels that are nearer its own colour than the background's. Overlap is an area measure, so a
ragged 1-2 px fringe of other colours, which generated images often have, barely moves it, where a
bounding-box fill ratio (the reader before 2026-12-01) is stretched by single fringe pixels.
tests/test_shapes_data.py checks the reader on drawn scenes with such a fringe.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from pipelines.diffusion.shapes_world import (
    CELL_CENTRES,
    COLOURS,
    HELD_OUT_PAIRS,
    PALETTE,
    PLACES,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
    caption_scene,
    is_held_out,
)

PALETTE_ARRAY = np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)  # (8, 3)
OBJECT_DISTANCE = 80.0  # RGB distance from the background above which a pixel belongs to an object
MIN_OBJECT_PIXELS = 12
# Shape templates: area / half_extent² as drawn; a triangle's centroid lies a third of its half extent below
# its centre (apex up). Each template is fitted over these sizes and shifts around the object's centroid.
TEMPLATE_AREA = {"circle": math.pi, "square": 4.0, "triangle": 2.0}
TEMPLATE_CENTROID_BELOW = {"circle": 0.0, "square": 0.0, "triangle": 1 / 3}
TEMPLATE_SCALES = (0.85, 0.9, 0.95, 1.0, 1.05)
TEMPLATE_SHIFTS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # pixels, in x and in y
TEMPLATE_FITS = tuple(itertools.product(TEMPLATE_SCALES, TEMPLATE_SHIFTS, TEMPLATE_SHIFTS))
TEMPLATE_SUBSAMPLES = 4  # per pixel and axis, as the shapes world supersamples its drawing
MIN_SHAPE_OVERLAP = 0.6  # best intersection-over-union below this: a blob, no shape is read
PLACE_BY_CELL = {cell: name for name, cell in PLACES.items()}


@dataclass(frozen=True)
class Analysis:
    background: str
    colour: str | None  # None: no object found
    shape: str | None
    place: str | None


def _nearest_palette(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (...) index of the nearest palette colour."""
    distances = ((pixels[..., None, :] - PALETTE_ARRAY) ** 2).sum(-1)
    return distances.argmin(-1)


def _cell(coordinate: float) -> int:
    low, middle, high = CELL_CENTRES
    return 0 if coordinate < (low + middle) / 2 else 2 if coordinate > (middle + high) / 2 else 1


def _shape_mask(pixels: np.ndarray, object_mask: np.ndarray, colour: int, background: int) -> np.ndarray | None:
    """The object's pixels nearer its own colour than the background's: fringes of a third colour drop out."""
    nearer = ((pixels - PALETTE_ARRAY[colour]) ** 2).sum(-1) < ((pixels - PALETTE_ARRAY[background]) ** 2).sum(-1)
    regions, count = ndimage.label(nearer)
    if count == 0:
        return None
    overlap = ndimage.sum(object_mask, regions, index=range(1, count + 1))
    return regions == int(np.argmax(overlap)) + 1


def shape_overlaps(mask: np.ndarray) -> dict[str, float]:
    """Best intersection-over-union of the mask with a fitted circle, square and triangle."""
    rows, columns = np.nonzero(mask)
    area, centre_x, centre_y = mask.sum(), columns.mean() + 0.5, rows.mean() + 0.5
    # The window holds the mask and every fitted template; the farthest-reaching is a triangle (the largest
    # half extent for an area), whose apex lies 4/3 of its half extent from its centroid.
    half_most = math.sqrt(area / TEMPLATE_AREA["triangle"]) * max(TEMPLATE_SCALES)
    reach = math.ceil(4 / 3 * half_most + max(TEMPLATE_SHIFTS)) + 1
    top, left = max(min(rows.min(), int(centre_y) - reach), 0), max(min(columns.min(), int(centre_x) - reach), 0)
    bottom = min(max(rows.max() + 1, int(centre_y) + reach + 1), mask.shape[0])
    right = min(max(columns.max() + 1, int(centre_x) + reach + 1), mask.shape[1])
    window = mask[top:bottom, left:right]
    offsets = (np.arange(TEMPLATE_SUBSAMPLES) + 0.5) / TEMPLATE_SUBSAMPLES
    ys = ((top + np.arange(window.shape[0]))[:, None] + offsets).reshape(1, -1, 1)
    xs = ((left + np.arange(window.shape[1]))[:, None] + offsets).reshape(1, 1, -1)
    scales, shifts_x, shifts_y = (np.array(v, dtype=np.float32).reshape(-1, 1, 1) for v in zip(*TEMPLATE_FITS))
    overlaps = {}
    for shape, area_factor in TEMPLATE_AREA.items():
        half = math.sqrt(area / area_factor) * scales
        x = xs - (centre_x + shifts_x)
        y = ys - (centre_y + shifts_y - TEMPLATE_CENTROID_BELOW[shape] * half)
        if shape == "circle":
            inside = x**2 + y**2 <= half**2
        elif shape == "square":
            inside = (np.abs(x) <= half) & (np.abs(y) <= half)
        else:  # apex up at y = -half, base at y = +half
            depth = (y + half) / (2 * half)
            inside = (depth >= 0) & (depth <= 1) & (np.abs(x) <= half * depth)
        coverage = inside.reshape(len(TEMPLATE_FITS), window.shape[0], TEMPLATE_SUBSAMPLES, window.shape[1], -1)
        template = coverage.mean((2, 4)) > 0.5
        intersection = (template & window).sum((1, 2))
        union = (template | window).sum((1, 2))
        overlaps[shape] = float((intersection / union).max())
    return overlaps


def analyse_image(image: Image.Image) -> Analysis:
    """Background colour and the colour, shape and place of the largest object in a 64x64 image."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    labels = _nearest_palette(pixels)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    background = Counter(border.tolist()).most_common(1)[0][0]
    far = np.sqrt(((pixels - PALETTE_ARRAY[background]) ** 2).sum(-1)) > OBJECT_DISTANCE
    regions, count = ndimage.label(far)
    if count == 0:
        return Analysis(COLOURS[background], None, None, None)
    sizes = ndimage.sum(far, regions, index=range(1, count + 1))
    mask = regions == (int(np.argmax(sizes)) + 1)
    if mask.sum() < MIN_OBJECT_PIXELS:
        return Analysis(COLOURS[background], None, None, None)
    # The colour from the object's inside: edge pixels blend with the background.
    inside = ndimage.binary_erosion(mask)
    votes = labels[inside if inside.sum() >= 4 else mask]
    colour = Counter(votes.tolist()).most_common(1)[0][0]
    shape_mask = _shape_mask(pixels, mask, colour, background)
    overlaps = shape_overlaps(shape_mask) if shape_mask is not None else {}
    shape = max(overlaps, key=overlaps.get) if overlaps else None
    if shape is not None and overlaps[shape] < MIN_SHAPE_OVERLAP:
        shape = None
    rows, columns = np.nonzero(mask)
    # +0.5: the centre of a pixel, so a shape drawn around 32.0 sits in the middle cell.
    place = PLACE_BY_CELL[(_cell(columns.mean() + 0.5), _cell(rows.mean() + 0.5))]
    return Analysis(COLOURS[background], COLOURS[colour], shape, place)


@dataclass(frozen=True)
class PromptCase:
    prompt: str
    target: ShapeObject
    held_out: bool  # a colour+shape pair never drawn in training
    unseen_phrasing: bool  # a wording never used in training


def adherence_prompts(count: int = 200, seed: int = 1234, held_out_share: float = 0.35) -> list[PromptCase]:
    """One-object prompts: a share of held-out colour+shape pairs; every other prompt in an unseen wording."""
    rng = random.Random(seed)
    held_pairs = sorted(HELD_OUT_PAIRS)
    seen_pairs = [(c, s) for c in COLOURS for s in SHAPES if not is_held_out(c, s)]
    cases = []
    for index in range(count):
        held_out = rng.random() < held_out_share
        colour, shape = rng.choice(held_pairs if held_out else seen_pairs)
        target = ShapeObject(colour, shape, rng.choice(SIZES), rng.choice(tuple(PLACES)))
        background = rng.choice([c for c in COLOURS if c != colour])
        scene = Scene((target,), background, ((0, 0),))
        unseen = index % 2 == 1
        cases.append(PromptCase(caption_scene(scene, rng, unseen_phrasing=unseen), target, held_out, unseen))
    return cases


def _rate(hits: list[bool]) -> float | None:
    return round(100.0 * sum(hits) / len(hits), 1) if hits else None


def evaluate_adherence(
    pipeline,
    count: int = 200,
    seed: int = 1234,
    steps: int = 20,
    guidance_scale: float = 4.0,
    batch_size: int = 25,
) -> dict:
    """Generate one image per prompt and score colour, shape and place; overall, seen vs held-out, by wording."""
    cases = adherence_prompts(count, seed)
    results = []
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        generator = torch.Generator(device="cpu").manual_seed(seed + start)
        images = pipeline(
            prompt=[c.prompt for c in batch],
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generator,
        ).images
        for case, image in zip(batch, images):
            found = analyse_image(image)
            results.append(
                (
                    case,
                    found.colour == case.target.colour,
                    found.shape == case.target.shape,
                    found.place == case.target.place,
                )
            )

    def summary(selected) -> dict:
        return {
            "prompts": len(selected),
            "colour": _rate([r[1] for r in selected]),
            "shape": _rate([r[2] for r in selected]),
            "place": _rate([r[3] for r in selected]),
            "all_three": _rate([r[1] and r[2] and r[3] for r in selected]),
        }

    return {
        "settings": {
            "prompts": count,
            "seed": seed,
            "steps": steps,
            "guidance_scale": guidance_scale,
            "scheduler": type(pipeline.scheduler).__name__,
        },
        "overall": summary(results),
        "seen_pairs": summary([r for r in results if not r[0].held_out]),
        "held_out_pairs": summary([r for r in results if r[0].held_out]),
        "training_wordings": summary([r for r in results if not r[0].unseen_phrasing]),
        "unseen_wordings": summary([r for r in results if r[0].unseen_phrasing]),
        "examples": [(r[0].prompt, r[1], r[2], r[3]) for r in results[:8]],
    }
