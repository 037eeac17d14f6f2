"""Diffusion lab: seconds per request of each part at the tab's defaults, and the measured inpainting and
cross-attention figures (weights/text-to-image/lab.json, written by `python -m training.evaluate_lab`)."""

from __future__ import annotations

import json

from benchmarks.timing import format_seconds, median_seconds
from pipelines.core.device import select_device
from pipelines.core.weights import repo_weights
from pipelines.diffusion import lab
from pipelines.diffusion.lab_inputs import cell_mask
from pipelines.diffusion.options import GUIDANCE, IMAGE_TO_IMAGE_GUIDANCE, STEPS, STRENGTH, TIMESTEP
from pipelines.diffusion.shapes_world import Scene, ShapeObject, render_scene
from pipelines.diffusion.text_to_image import WEIGHTS_NAME, generate, load_builtin_text_to_image

SCENE = render_scene(Scene((ShapeObject("red", "circle", "large", "left"),), "white", ((0, 0),)))
PROMPT = "a large red circle on the left on a white background"
NEW_PROMPT = "a large blue square on the right on a white background"


def measured_rows() -> list[str]:
    """The figures training.evaluate_lab stored beside the weights."""
    path = repo_weights(WEIGHTS_NAME) / "lab.json"
    if not path.exists():
        return ["Inpainting and cross-attention: not measured yet (`python -m training.evaluate_lab`)."]
    record = json.loads(path.read_text())
    inpainting, targets = record["inpainting"]["overall"], record["targets"]
    rows = [
        f"Inpainting on {inpainting['scenes']} held-out scenes (a grid cell masked, a new shape asked for there; "
        f"{record['settings']['steps']} DDPM steps, guidance {record['settings']['guidance']}; measured "
        f"{record['date']} by `python -m training.evaluate_lab`, also in the model card): colour "
        f"{inpainting['colour']} % (target ≥ {targets['colour']:g}), shape {inpainting['shape']} % (target ≥ "
        f"{targets['shape']:g}), place {inpainting['place']} %; mean pixel change outside the mask (2 px margin "
        f"aside) {inpainting['mean_outside_change']} of 255, at most {inpainting['max_outside_change']} "
        f"(target ≤ {targets['max_outside_change']:g}).",
    ]
    study = record.get("resampling_study")
    if study:
        f = study["overall"]
        rows.append(
            f"With RePaint's resampling ({study['resample']} passes a step): colour {f['colour']}, shape "
            f"{f['shape']}, place {f['place']}: not used."
        )
    attention = record["cross_attention"]
    shape_sides = [
        m for m in attention["measures"] if m["word"] == "shape" and m["level"] == "all"
    ]  # left/right and top/bottom
    rows.append(
        f"Cross-attention on {attention['prompts']} held-out prompts: the shape word's map centre (all levels) "
        "lies on the object's side "
        + " and ".join(f"{m['on_the_objects_side']} % of {m['prompts']} ({m['axis']})" for m in shape_sides)
        + " (chance 50 %)."
    )
    return rows


def run() -> str:
    pipeline = load_builtin_text_to_image()
    generate(pipeline, PROMPT, steps=1)  # loads the text encoder
    mask = cell_mask(["right"])
    timings = {
        f"forward process at t = {TIMESTEP.default}, with a prompt (x_t, 2 one-step estimates, strip, plot)": lambda: (
            lab.schedule_plot(lab.forward_process(pipeline, SCENE, TIMESTEP.default, PROMPT, seed=1))
        ),
        f"image-to-image at strength {STRENGTH.default} ({int(STEPS.default * STRENGTH.default)} of "
        f"{STEPS.default} steps, guidance {IMAGE_TO_IMAGE_GUIDANCE})": lambda: lab.image_to_image(
            pipeline, SCENE, NEW_PROMPT, STRENGTH.default, seed=1
        ),
        f"image-to-image at strength 1 ({STEPS.default} steps)": lambda: lab.image_to_image(
            pipeline, SCENE, NEW_PROMPT, 1.0, seed=1
        ),
        f"inpainting ({STEPS.default} steps, guidance {GUIDANCE.default})": lambda: lab.inpaint(
            pipeline, SCENE, mask, "a small green triangle on the right", seed=1
        ),
        f"cross-attention maps ({STEPS.default} steps, guidance {GUIDANCE.default})": lambda: lab.cross_attention(
            pipeline, PROMPT, seed=1
        ),
        "the same generation without recording (Text → Image)": lambda: generate(pipeline, PROMPT, seed=1),
    }
    rows = [
        "## Diffusion lab (shapes-world model, 64×64)",
        "",
        f"Device: {select_device().label}. Each part at the tab's defaults, the model loaded (median of 5 after one "
        "untimed run).",
        "",
        "| what | median |",
        "| --- | --- |",
    ]
    for name, function in timings.items():
        rows.append(f"| {name} | {format_seconds(median_seconds(function, repeats=5))} |")
    return "\n".join(rows + [""] + measured_rows())
