"""Text → Image tab: a diffusion model trained here on a world of shapes, or an allow-listed Hub pipeline."""

from __future__ import annotations

import os
import time

import gradio as gr

from demos import common, validation
from demos.outputs import output_folder
from pipelines.core import registry
from pipelines.core.imaging import upscale
from pipelines.diffusion.options import (
    BUILTIN_MODEL,
    DEFAULT_SCHEDULER,
    GUIDANCE,
    IMAGES,
    MAX_PROMPT_CHARS,
    SCHEDULER_NAMES,
    STEPS,
)

TAB_TITLE = "Text → Image"
TAB_ID = "text-to-image"
# Two generations at a time: on an idle 2-core CPU two at once serve more images a second than one at a time
# (BENCHMARKS.md, "Health, time budget and concurrency"); more would only queue inside torch.
CONCURRENCY = common.concurrency("text-to-image", 2)

DISPLAY_SIZE = 256  # the local model draws 64x64; shown 4x larger
STRIP_SIZE = 112
# A generation still running after this many seconds stops with a message, so one user cannot hold
# the model for minutes. Hosts may change it.
IMAGE_SECONDS = float(os.environ.get("GENAI_PLAYGROUND_IMAGE_SECONDS", "60"))

EXAMPLES = [
    ["a large red circle in the center on a black background", 42],
    ["blue square, top right, white background", 7],
    ["there is a small green triangle on the left", 3],
    ["a large yellow square at the bottom on a purple background", 11],
    ["a red triangle in the middle on a white background", 5],  # a pair held out in training
    ["a small orange circle at the top left and a small blue triangle at the bottom right", 8],
]

HOW_IT_WORKS = """
- **Forward noising.** Training takes a clean image and adds Gaussian noise at a random step *t* of 1,000
  (a cosine β schedule; ᾱ_t, the share of the image left, falls from 1 to 0).
- **Learned reverse denoising.** A UNet sees the noisy image, the step *t* and the prompt, and predicts
  what was there before the noise: Stable Diffusion predicts the added noise, this small model predicts the
  clean image (the two are equivalent: either gives the other; here the clean image trained much faster).
  The loss is a mean squared error in which each shape's box counts 4× the background (what the prompt
  asks for is small). Sampling starts from pure noise and denoises a little at a time;
  a *scheduler* decides how each step is taken (DDPM: a random step that adds fresh noise each time;
  DDIM, DPM-Solver++ and Euler: deterministic steps, so the seed only sets the starting noise).
- **The prompt.** A real pretrained text encoder (all-MiniLM-L6-v2) turns the prompt into one vector per
  token, which the UNet reads through *cross-attention*, and one vector for the whole sentence, which is
  added to the step's embedding so every layer knows what was asked.
- **Guidance.** Each step runs the UNet twice, with the prompt and with an empty (or negative) prompt, and
  pushes the result away from the empty one: prediction = uncond + *scale* × (cond − uncond). Higher scale:
  closer to the prompt, less variety. 0 or 1 switches guidance off. An empty prompt gives an
  *unconditional* sample. The push can overshoot the range of real pixels, so this model's guess of the
  clean image is clipped back into it at every step (*static thresholding*).
- **Look inside.** The strip shows, at a few steps, the model's current guess of the finished image
  (for a noise-predicting model, x₀ = (x_t − √(1−ᾱ_t)·noise) / √ᾱ_t): noise becomes a picture.
- **This model.** A 6.7 M-parameter UNet trained in an hour on this project's CPU, on an unlimited world of
  coloured circles, squares and triangles with varied captions. Some colour+shape pairs (e.g. *red
  triangle*) were never shown in training: try them to see whether it composes words it learned apart.
  It works on 64×64 pixels cut into 4×4 patches (no latent autoencoder), and is told where each patch is so
  that "on the left" can mean something. Hub pipelines such as sd-turbo work in the latent space of a VAE
  instead (the strip then shows the current latents decoded).
"""


def text_to_image(
    prompt,
    negative_prompt="",
    steps=STEPS.default,
    guidance_scale=GUIDANCE.default,
    seed=42,
    scheduler=DEFAULT_SCHEDULER,
    count=IMAGES.default,
    model=BUILTIN_MODEL,
    progress=gr.Progress(),
):
    """Generate 1 to 4 images for a prompt; returns the images, the look-inside strip, PNGs and a note."""
    prompt = validation.text(prompt, "Prompt").strip()
    negative_prompt = validation.text(negative_prompt, "Negative prompt").strip()
    for text, name in ((prompt, "Prompt"), (negative_prompt, "Negative prompt")):
        if len(text) > MAX_PROMPT_CHARS:
            raise gr.Error(f"{name} is limited to {MAX_PROMPT_CHARS:,} characters (got {len(text):,}).")
    steps = validation.in_range(steps, STEPS, "Steps")
    guidance_scale = validation.in_range(guidance_scale, GUIDANCE, "Guidance scale")
    seed = validation.seed(seed)
    count = validation.in_range(count, IMAGES, "Number of images")
    if scheduler not in SCHEDULER_NAMES:
        raise gr.Error(f"Unknown scheduler {scheduler!r}: choose one of {', '.join(SCHEDULER_NAMES)}.")
    model = registry.MODELS.canonical_id(model)
    if model not in [model_id for _, model_id in registry.choices("diffusion")]:
        names = ", ".join(model_id for _, model_id in registry.choices("diffusion"))
        raise gr.Error(f"Unknown model {model!r}: choose one of {names}.")

    progress(0, desc="Loading the model")
    pipeline = registry.load(model)
    # Imported on first use: diffusers takes seconds to import, and the page should not wait for it.
    from pipelines.diffusion.text_to_image import generate, png_with_parameters

    started = time.perf_counter()
    result = generate(
        pipeline,
        prompt,
        negative_prompt,
        steps,
        guidance_scale,
        seed,
        scheduler,
        count,
        on_step=lambda done, total: progress((done, total), desc="Denoising", unit="steps"),
        max_seconds=IMAGE_SECONDS,
    )
    seconds = time.perf_counter() - started

    folder = output_folder("text-to-image-")
    downloads = []
    for index, image in enumerate(result.images, start=1):
        parameters = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "steps": steps,
            "guidance_scale": guidance_scale,
            "seed": seed,
            "scheduler": scheduler,
            "model": model,
            "image": index,
            "images": count,
        }
        path = folder / f"text-to-image-seed{seed}-{index}.png"
        downloads.append(str(png_with_parameters(image, path, parameters)))

    gallery = [(upscale(image, DISPLAY_SIZE), f"#{i + 1}") for i, image in enumerate(result.images)]
    strip = [
        (upscale(image, STRIP_SIZE), f"step {step}/{steps}") for step, image in zip(result.steps_shown, result.strip)
    ]
    notes = [f"{count} image(s) in {seconds:.1f} s: {steps} steps of {scheduler}, guidance {guidance_scale:g}."]
    if not prompt:
        notes.append("**Empty prompt:** this is an *unconditional* sample: the model draws whatever it likes.")
    if guidance_scale <= 1:
        notes.append("Guidance ≤ 1 is off: each step uses the prompt alone, so images follow it more loosely.")
    if result.withheld:
        numbers = ", ".join(f"#{i}" for i in result.withheld)
        several = len(result.withheld) > 1
        notes.append(
            f"**{'Images' if several else 'Image'} {numbers} withheld:** the model's safety checker flagged "
            f"{'them' if several else 'it'} as possibly unsafe and showed black instead. Try another prompt or seed."
        )
    notes.append(f"Strip: the {result.strip_label} of image #1 at the steps shown.")
    return gallery, strip, downloads, "\n\n".join(notes)


def build() -> None:
    gr.Markdown(
        "Type a prompt and watch **diffusion** turn noise into a picture. The built-in model was trained here, "
        "in an hour on a CPU, on a world of coloured shapes: ask for colours (red, orange, yellow, green, blue, "
        "purple, white, black), shapes (circle, square, triangle), sizes (small, large), places (left, top "
        "right, center, ...) and a background colour."
    )
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            prompt = gr.Textbox(
                label="Prompt",
                value="a large red circle in the center on a black background",
                lines=2,
                max_lines=6,
                elem_id="t2i-prompt",
            )
            negative_prompt = gr.Textbox(label="Negative prompt (what to steer away from)", value="", lines=1)
            with gr.Row():
                steps = common.slider(STEPS, "Steps")
                guidance_scale = common.slider(GUIDANCE, "Guidance scale")
            seed = common.seed_row(42)
            with gr.Row():
                scheduler = gr.Dropdown(list(SCHEDULER_NAMES), value=DEFAULT_SCHEDULER, label="Scheduler")
                count = common.slider(IMAGES, "Number of images")
            model = common.model_menu("diffusion", BUILTIN_MODEL, "Model (Hub models need internet and a GPU)")
            run_button = gr.Button("Generate", variant="primary")
            note = gr.Markdown(elem_id="t2i-note")
        with gr.Column(scale=3):
            gallery = gr.Gallery(
                label="Generated images",
                columns=2,
                height="auto",
                object_fit="contain",
                format="png",
                elem_id="t2i-gallery",
            )
            strip = gr.Gallery(
                label="Look inside: the model's guess of the finished image as noise is removed",
                columns=6,
                height=170,
                object_fit="contain",
                format="png",
                elem_id="t2i-strip",
            )
            downloads = gr.File(label="Download PNG (generation parameters in the PNG metadata)", file_count="multiple")
    gr.Examples(EXAMPLES, inputs=[prompt, seed], label="Example prompts (the red triangle was never shown in training)")

    run_button.click(
        text_to_image,
        [prompt, negative_prompt, steps, guidance_scale, seed, scheduler, count, model],
        [gallery, strip, downloads, note],
        api_name="text_to_image",
        **CONCURRENCY,
    )
