"""Measure the Diffusion lab on the shapes-world model: inpainting on held-out scenes, cross-attention on
held-out prompts. Writes weights/text-to-image/lab.json and the "Diffusion lab" section of the model card.

    python -m training.evaluate_lab                     # about 10 minutes on 2 idle CPU cores
    python -m training.evaluate_lab --resample-study 2  # also RePaint with resampling jumps, for comparison

Inpainting: each scene (never drawn in training: a fresh seed, any colour+shape pair) keeps one shape and has a
grid cell masked, empty or holding a shape to replace; the prompt asks for a new shape in that cell. The
adherence reader (training/adherence.py) scores the colour, shape and place of what was drawn inside the
mask, and the mean pixel change outside it (2 px from its edge left aside) must stay at most 2/255.
Cross-attention: for held-out prompts (training/adherence.py's test prompts) with the object drawn on one side,
how often the centre of the shape word's map (and the colour word's) lies on that side.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from scipy import ndimage

from pipelines.core.weights import repo_weights
from pipelines.diffusion.lab import cross_attention, map_centre
from pipelines.diffusion.lab_inputs import cell_mask
from pipelines.diffusion.options import DEFAULT_SCHEDULER, GUIDANCE, STEPS
from pipelines.diffusion.shapes_world import (
    COLOURS,
    DISTANT_PLACE_PAIRS,
    PALETTE,
    PLACES,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
    caption_scene,
    is_held_out,
    render_scene,
)
from pipelines.diffusion.text_to_image import (
    WEIGHTS_NAME,
    ShapesDiffusionPipeline,
    conditioning,
    encode_text,
    images_to_patches,
    unet_input,
    with_scheduler,
)
from training.adherence import adherence_prompts, analyse_image

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--scenes", type=int, default=200, help="held-out scenes for inpainting")
parser.add_argument("--scene-seed", type=int, default=2027, help="seed of the scenes (training draws its own)")
parser.add_argument("--prompts", type=int, default=200, help="held-out prompts for the cross-attention maps")
parser.add_argument("--prompt-seed", type=int, default=1234, help="seed of training/adherence.py's test prompts")
parser.add_argument("--steps", type=int, default=STEPS.default)
parser.add_argument("--guidance", type=float, default=GUIDANCE.default)
parser.add_argument("--batch-size", type=int, default=25)
parser.add_argument("--resample-study", type=int, default=0, help="also measure RePaint with this many resamplings")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--out", default=None, help="weights folder (default: weights/text-to-image)")
parser.add_argument(
    "--card-only", action="store_true", help="rewrite the card's section from lab.json, measure nothing"
)

MARGIN = 2  # pixels beside the mask's edge left out of the "unchanged outside" measure
TARGETS = {"colour": 90.0, "shape": 80.0, "max_outside_change": 2.0}
CARD_START, CARD_END = "<!-- diffusion-lab -->", "<!-- end diffusion-lab -->"


@dataclass(frozen=True)
class InpaintingCase:
    image: Image.Image  # the scene, 64x64
    mask: Image.Image  # white over the cell to repaint
    prompt: str
    target: ShapeObject  # what the prompt asks for in the masked cell
    background: str
    replaces: bool  # the masked cell held a shape (replaced) or was empty (added to)


def inpainting_cases(count: int, seed: int) -> list[InpaintingCase]:
    """Scenes with a kept shape and a distant masked cell; half the prompts in wordings never used in training."""
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        kept_place, masked_place = rng.choice(DISTANT_PLACE_PAIRS)
        if rng.random() < 0.5:
            kept_place, masked_place = masked_place, kept_place
        objects = [ShapeObject(rng.choice(COLOURS), rng.choice(SHAPES), rng.choice(SIZES), kept_place)]
        replaces = rng.random() < 0.5
        if replaces:
            objects.append(ShapeObject(rng.choice(COLOURS), rng.choice(SHAPES), rng.choice(SIZES), masked_place))
        target = ShapeObject(rng.choice(COLOURS), rng.choice(SHAPES), rng.choice(SIZES), masked_place)
        used = {o.colour for o in objects} | {target.colour}
        background = rng.choice([c for c in COLOURS if c not in used])
        scene = Scene(tuple(objects), background, tuple((0, 0) for _ in objects))
        wanted = Scene((target,), background, ((0, 0),))
        prompt = caption_scene(wanted, rng, unseen_phrasing=index % 2 == 1)
        cases.append(
            InpaintingCase(render_scene(scene), cell_mask([masked_place]), prompt, target, background, replaces)
        )
    return cases


def score_inpainting(case: InpaintingCase, result: Image.Image) -> dict:
    """Colour, shape and place of what was drawn under the mask; mean change outside it (in 0..255)."""
    repaint = np.asarray(case.mask) > 127
    inside = np.asarray(result.convert("RGB")).copy()
    inside[~repaint] = PALETTE[case.background]  # the rest of the picture is left out of the reading
    found = analyse_image(Image.fromarray(inside))
    outside = ~ndimage.binary_dilation(repaint, iterations=MARGIN)
    change = np.abs(np.asarray(result, dtype=np.float64) - np.asarray(case.image, dtype=np.float64))[outside]
    return {
        "colour": found.colour == case.target.colour,
        "shape": found.shape == case.target.shape,
        "place": found.place == case.target.place,
        "outside_change": float(change.mean()),
    }


def resampling_callback(pipeline, cases, text, generator, extra: int, guidance_scale: float):
    """A step callback that adds RePaint's resampling: after each step, go back to the step before (the forward
    transition) and denoise again, `extra` more times. A study only: the lab does not use it (see the card)."""
    scheduler, unet = pipeline.scheduler, pipeline.unet
    known = images_to_patches(torch.stack([_pixels(c.image) for c in cases]))
    mask = images_to_patches(torch.stack([_pixels(c.mask.convert("RGB")) for c in cases]) > 0).float()
    timesteps = scheduler.timesteps

    def callback(pipe, index, timestep, tensors):
        latents = tensors["latents"]
        if index + 1 == len(timesteps):
            return {}
        noisier, cleaner = scheduler.alphas_cumprod[timestep], scheduler.alphas_cumprod[timesteps[index + 1]]
        for _ in range(extra):
            kept = noisier / cleaner  # back from the step reached to this one: the forward process between them
            noise = randn_tensor(latents.shape, generator=generator)
            noisy = kept.sqrt() * latents + (1 - kept).sqrt() * noise
            prediction = unet(unet_input(unet, torch.cat([noisy] * 2)), timestep, **text).sample
            unconditional, conditional = prediction.chunk(2)
            prediction = (unconditional + guidance_scale * (conditional - unconditional)).clamp(-1, 1)
            latents = scheduler.step(prediction, timestep, noisy, generator=generator).prev_sample
            reached = scheduler.add_noise(known, randn_tensor(latents.shape, generator=generator), timesteps[index + 1])
            latents = mask * latents + (1 - mask) * reached
        return {"latents": latents}

    return callback


def _pixels(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)


def measure_inpainting(pipeline, cases: list[InpaintingCase], args, resample: int = 1) -> dict:
    """Inpaint every case in batches (the pipeline the lab runs, DDPM) and summarise the scores."""
    runner = with_scheduler(pipeline, DEFAULT_SCHEDULER)
    scores = []
    for start in range(0, len(cases), args.batch_size):
        batch = cases[start : start + args.batch_size]
        generator = torch.Generator().manual_seed(args.scene_seed + start)
        extra = {}
        if resample > 1:
            runner.scheduler.set_timesteps(args.steps)
            encoded = encode_text([""] * len(batch) + [c.prompt for c in batch], runner.unet.device, runner.unet.dtype)
            text = conditioning(runner.unet, encoded.standardized(runner.config.pooled_text_statistics))
            callback = resampling_callback(runner, batch, text, generator, resample - 1, args.guidance)
            extra = {"callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": ["latents"]}
        images = runner(
            prompt=[c.prompt for c in batch],
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=generator,
            image=[c.image for c in batch],
            mask_image=[c.mask for c in batch],
            **extra,
        ).images
        scores += [score_inpainting(case, image) for case, image in zip(batch, images)]
        print(f"  inpainting (resample {resample}): {len(scores)}/{len(cases)}", flush=True)

    def summary(selected: list[int]) -> dict:
        chosen = [scores[i] for i in selected]
        if not chosen:
            return {"scenes": 0}
        return {
            "scenes": len(chosen),
            **{key: round(100 * sum(s[key] for s in chosen) / len(chosen), 1) for key in ("colour", "shape", "place")},
            "mean_outside_change": round(float(np.mean([s["outside_change"] for s in chosen])), 3),
            "max_outside_change": round(float(np.max([s["outside_change"] for s in chosen])), 3),
        }

    everything = list(range(len(cases)))
    return {
        "resample": resample,
        "overall": summary(everything),
        "replacing_a_shape": summary([i for i in everything if cases[i].replaces]),
        "adding_a_shape": summary([i for i in everything if not cases[i].replaces]),
        "held_out_pairs": summary(
            [i for i in everything if is_held_out(cases[i].target.colour, cases[i].target.shape)]
        ),
        "unseen_wordings": summary(everything[1::2]),
    }


def _word_index(words: list[str], wanted: set[str]) -> int | None:
    return next((i for i, word in enumerate(words) if word.lower() in wanted), None)


def measure_cross_attention(pipeline, args) -> dict:
    """How often a word's map centre lies on the side of the image where the object was drawn."""
    cases = adherence_prompts(args.prompts, args.prompt_seed)
    levels = ["all", "8x8", "4x4", "2x2"]
    hits = {(word, axis, level): [] for word in ("shape", "colour") for axis in ("x", "y") for level in levels}
    drawn_as_asked = 0
    for index, case in enumerate(cases):
        maps = cross_attention(pipeline, case.prompt, seed=index, steps=args.steps, guidance_scale=args.guidance)
        found = analyse_image(maps.image)
        if found.place is None:
            continue
        drawn_as_asked += found.place == case.target.place
        column, row = PLACES[found.place]
        word_at = {
            "shape": _word_index(maps.words, {case.target.shape}),
            "colour": _word_index(maps.words, {case.target.colour}),
        }
        for word, position in word_at.items():
            if position is None:
                continue
            for level in levels:
                x, y = map_centre(maps.level(level)[position])
                if column != 1:
                    hits[(word, "x", level)].append((x < 0.5) == (column == 0))
                if row != 1:
                    hits[(word, "y", level)].append((y < 0.5) == (row == 0))
        if (index + 1) % 25 == 0:
            print(f"  cross-attention: {index + 1}/{len(cases)}", flush=True)
    result = {
        "prompts": len(cases),
        "objects_in_the_asked_place": drawn_as_asked,
        "measures": [
            {
                "word": word,
                "axis": "left/right" if axis == "x" else "top/bottom",
                "level": level,
                "prompts": len(found),
                "on_the_objects_side": round(100 * sum(found) / len(found), 1) if found else None,
            }
            for (word, axis, level), found in hits.items()
        ],
    }
    return result


def card_section(record: dict) -> str:
    """The model card's "Diffusion lab" section, between markers so a rerun replaces it."""
    settings, inpainting = record["settings"], record["inpainting"]
    overall = inpainting["overall"]
    rows = [
        CARD_START,
        "## Diffusion lab (measured by `python -m training.evaluate_lab`)",
        f"Measured {record['date']} with {settings['steps']} DDPM steps at guidance {settings['guidance']} "
        f"(the lab's defaults), in {record['minutes']} minutes.",
        "",
        f"**Inpainting** (RePaint: after every step the part outside the mask is replaced by the input noised to "
        f"the step reached; the last step puts the input itself back). {overall['scenes']} held-out scenes "
        f"(seed {settings['scene_seed']}): one shape kept, a grid cell masked (empty, or holding a shape to "
        "replace), a prompt asking for a new shape there (half in wordings never used in training). The adherence "
        "reader scores what was drawn under the mask; outside it (2 px from its edge left aside) the mean pixel "
        f"change must stay at most {TARGETS['max_outside_change']:g}/255. Targets: colour ≥ {TARGETS['colour']:g} %, "
        f"shape ≥ {TARGETS['shape']:g} %.",
        "",
        "| scenes | count | colour | shape | place | mean / largest change outside (of 255) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    names = {
        "overall": "all",
        "replacing_a_shape": "replacing a shape",
        "adding_a_shape": "adding a shape",
        "held_out_pairs": "held-out colour+shape pairs asked for",
        "unseen_wordings": "unseen wordings",
    }
    for key, name in names.items():
        f = inpainting[key]
        if not f["scenes"]:
            continue
        rows.append(
            f"| {name} | {f['scenes']} | {f['colour']} | {f['shape']} | {f['place']} | "
            f"{f['mean_outside_change']} / {f['max_outside_change']} |"
        )
    study = record.get("resampling_study")
    if study:
        f = study["overall"]
        gains = ", ".join(f"{key} {f[key] - overall[key]:+.1f}" for key in ("colour", "shape", "place"))
        # One standard error of a share measured on this many scenes, at the plain method's weakest figure.
        weakest = min(overall[key] for key in ("colour", "shape")) / 100
        error = 100 * (weakest * (1 - weakest) / overall["scenes"]) ** 0.5
        rows += [
            "",
            f"Resampling jumps (RePaint's going back one step and denoising again: {study['resample']} passes a "
            f"step, so {study['resample']}× the UNet's work) on the same scenes: colour {f['colour']}, shape "
            f"{f['shape']}, place {f['place']} ({gains} points), within one standard error of a share measured on "
            f"{overall['scenes']} scenes (about {error:.1f} points): not worth twice the time, so the lab does "
            "not use them.",
        ]
    attention = record["cross_attention"]
    rows += [
        "",
        f"**Cross-attention maps.** {attention['prompts']} held-out prompts (training/adherence.py's test prompts, "
        f"seed {settings['prompt_seed']}), one image each; {attention['objects_in_the_asked_place']} objects were "
        "drawn in the asked place. For each image whose object the reader found on one side, how often the centre "
        "of mass of a word's map (above its minimum) lies on that side (chance: 50 %):",
        "",
        "| word | side | prompts | all levels | 8×8 | 4×4 | 2×2 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    table: dict[tuple[str, str], dict[str, dict]] = {}
    for m in attention["measures"]:
        table.setdefault((m["word"], m["axis"]), {})[m["level"]] = m
    for (word, axis), by_level in table.items():
        shares = " | ".join(str(by_level[level]["on_the_objects_side"]) for level in ("all", "8x8", "4x4", "2x2"))
        rows.append(f"| {word} | {axis} | {by_level['all']['prompts']} | {shares} |")
    rows.append(CARD_END)
    return "\n".join(rows)


def write_card_section(card: Path, section: str) -> None:
    """Replace the card's Diffusion lab section, or append it at the end."""
    text = card.read_text()
    pattern = re.compile(re.escape(CARD_START) + ".*?" + re.escape(CARD_END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    card.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else repo_weights(WEIGHTS_NAME)
    if args.card_only:
        write_card_section(out / "README.md", card_section(json.loads((out / "lab.json").read_text())))
        return
    pipeline = ShapesDiffusionPipeline.from_pretrained(out, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    started = time.perf_counter()
    cases = inpainting_cases(args.scenes, args.scene_seed)
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "settings": {
            "steps": args.steps,
            "guidance": args.guidance,
            "scheduler": DEFAULT_SCHEDULER,
            "scene_seed": args.scene_seed,
            "prompt_seed": args.prompt_seed,
        },
        "targets": TARGETS,
        "inpainting": measure_inpainting(pipeline, cases, args),
    }
    if args.resample_study > 1:
        record["resampling_study"] = measure_inpainting(pipeline, cases, args, resample=args.resample_study)
    record["cross_attention"] = measure_cross_attention(pipeline, args)
    record["minutes"] = round((time.perf_counter() - started) / 60, 1)
    (out / "lab.json").write_text(json.dumps(record, indent=2) + "\n")
    write_card_section(out / "README.md", card_section(record))
    print(card_section(record))


if __name__ == "__main__":
    main()
