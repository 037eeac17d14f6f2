"""Text → Image: load, seconds per image at the tab's default settings, schedulers, and the measured adherence."""

from __future__ import annotations

import json
import time

from benchmarks.timing import format_seconds, median_seconds
from pipelines.core.device import select_device
from pipelines.core.weights import repo_weights
from pipelines.diffusion.options import DEFAULT_SCHEDULER, GUIDANCE, STEPS
from pipelines.diffusion.text_to_image import SCHEDULERS, WEIGHTS_NAME, generate, load_builtin_text_to_image
from training.select_sampling import chosen_trial

PROMPT = "a large red circle in the center on a black background"


def adherence_rows() -> list[str]:
    """The adherence figures the training script measured and stored beside the weights."""
    record = json.loads((repo_weights(WEIGHTS_NAME) / "training.json").read_text())
    adherence = record["adherence"]
    if adherence is None:
        return ["Adherence: not measured for these weights (a checkpoint written during training)."]
    settings = adherence["settings"]
    rows = [
        f"Prompt adherence, from the model card (`weights/{WEIGHTS_NAME}/README.md`): {settings['prompts']} "
        f"one-object prompts, {settings['steps']} steps of {settings['scheduler']}, guidance "
        f"{settings['guidance_scale']}, measured by `python -m training.train_text_to_image` after "
        f"{record['training']['steps']} training steps. Figures in %; targets colour ≥ 95, shape ≥ 85, "
        "place ≥ 85.",
        "",
        "| prompts | count | colour | shape | place | all three |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, name in (
        ("overall", "all"),
        ("seen_pairs", "seen colour+shape pairs"),
        ("held_out_pairs", "held-out pairs"),
        ("unseen_wordings", "unseen wordings"),
    ):
        f = adherence[key]
        rows.append(f"| {name} | {f['prompts']} | {f['colour']} | {f['shape']} | {f['place']} | {f['all_three']} |")
    return rows + validation_rows()


def validation_rows() -> list[str]:
    """What the default settings gave on the validation prompts they were chosen on (training.select_sampling)."""
    path = repo_weights(WEIGHTS_NAME) / "sampling.json"
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    checked = chosen_trial(record)
    overall, seen, held = (checked["adherence"][k] for k in ("overall", "seen_pairs", "held_out_pairs"))
    return [
        "",
        f"The default scheduler and guidance were chosen on {record['validation']['prompts']} validation prompts "
        f"(prompt seed {record['validation']['seed']}; `weights/{WEIGHTS_NAME}/sampling.json`), where these "
        "weights give "
        f"colour {overall['colour']}, shape {overall['shape']}, place {overall['place']}, all three "
        f"{overall['all_three']}; held-out pairs minus seen: colour {held['colour'] - seen['colour']:+.1f}, "
        f"shape {held['shape'] - seen['shape']:+.1f}.",
    ]


def run() -> str:
    started = time.perf_counter()
    pipeline = load_builtin_text_to_image()
    generate(pipeline, PROMPT, steps=1)  # the first call also loads the text encoder
    load_seconds = time.perf_counter() - started

    def one_image(scheduler: str = DEFAULT_SCHEDULER, count: int = 1):
        return lambda: generate(
            pipeline,
            PROMPT,
            steps=STEPS.default,
            guidance_scale=GUIDANCE.default,
            seed=1,
            scheduler_name=scheduler,
            count=count,
        )

    default = median_seconds(one_image(), repeats=5)
    four = median_seconds(one_image(count=4), repeats=3)
    by_scheduler = {name: median_seconds(one_image(name), repeats=3) for name in SCHEDULERS}
    rows = [
        "## Text → Image (shapes-world diffusion model, 64×64)",
        "",
        f"Device: {select_device().label}. Default settings: {STEPS.default} steps of {DEFAULT_SCHEDULER}, "
        f"guidance {GUIDANCE.default} (two UNet passes a step), prompt “{PROMPT}”.",
        "",
        "| what | median |",
        "| --- | --- |",
        "| load the pipeline and the MiniLM text encoder, first image of 1 step (once) | "
        f"{format_seconds(load_seconds)} |",
        f"| 1 image at the default settings (median of 5) | {format_seconds(default)} |",
        f"| 4 images in one call (median of 3) | {format_seconds(four)} ({format_seconds(four / 4)} an image) |",
    ]
    for name, seconds in by_scheduler.items():
        rows.append(f"| 1 image, {STEPS.default} steps of {name} (median of 3) | {format_seconds(seconds)} |")
    return "\n".join(rows + [""] + adherence_rows())
