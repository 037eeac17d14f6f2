"""Prompt adherence: does a generated shapes-world image show the colour, shape and place the prompt asked for?

The check is plain image analysis that knows the palette: the background is the most common palette colour
on the border; the object is the largest connected region far from it; its colour is its most common
palette colour, its shape follows from how much of its bounding box it fills (square ≈ 1, circle ≈ π/4,
triangle ≈ 1/2), its place from which cell of a 3x3 grid holds its centre.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from pipelines.shapes_world import (
    CELL_CENTRES, COLOURS, PALETTE, PLACES, SHAPES, SIZES, HELD_OUT_PAIRS, Scene, ShapeObject, caption_scene,
    is_held_out,
)  # fmt: skip

PALETTE_ARRAY = np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)  # (8, 3)
OBJECT_DISTANCE = 80.0  # RGB distance from the background above which a pixel belongs to an object
MIN_OBJECT_PIXELS = 12
# Fill ratio of the bounding box: triangle ~0.5, circle ~0.785, square ~1.0; cut halfway between.
TRIANGLE_BELOW, SQUARE_ABOVE = 0.64, 0.89
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
    rows, columns = np.nonzero(mask)
    box_area = (rows.max() - rows.min() + 1) * (columns.max() - columns.min() + 1)
    fill = mask.sum() / box_area
    shape = "triangle" if fill < TRIANGLE_BELOW else "square" if fill > SQUARE_ABOVE else "circle"
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
    pipeline, count: int = 200, seed: int = 1234, steps: int = 20, guidance_scale: float = 4.0,
    batch_size: int = 25,
) -> dict:
    """Generate one image per prompt and score colour, shape and place; overall, seen vs held-out, by wording."""
    cases = adherence_prompts(count, seed)
    results = []
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        generator = torch.Generator(device="cpu").manual_seed(seed + start)
        images = pipeline(
            prompt=[c.prompt for c in batch], num_inference_steps=steps, guidance_scale=guidance_scale,
            generator=generator,
        ).images  # fmt: skip
        for case, image in zip(batch, images):
            found = analyse_image(image)
            results.append(
                (case, found.colour == case.target.colour, found.shape == case.target.shape,
                 found.place == case.target.place)
            )  # fmt: skip

    def summary(selected) -> dict:
        return {
            "prompts": len(selected),
            "colour": _rate([r[1] for r in selected]),
            "shape": _rate([r[2] for r in selected]),
            "place": _rate([r[3] for r in selected]),
            "all_three": _rate([r[1] and r[2] and r[3] for r in selected]),
        }

    return {
        "settings": {"prompts": count, "seed": seed, "steps": steps, "guidance_scale": guidance_scale,
                     "scheduler": type(pipeline.scheduler).__name__},
        "overall": summary(results),
        "seen_pairs": summary([r for r in results if not r[0].held_out]),
        "held_out_pairs": summary([r for r in results if r[0].held_out]),
        "training_wordings": summary([r for r in results if not r[0].unseen_phrasing]),
        "unseen_wordings": summary([r for r in results if r[0].unseen_phrasing]),
        "examples": [(r[0].prompt, r[1], r[2], r[3]) for r in results[:8]],
    }  # fmt: skip
