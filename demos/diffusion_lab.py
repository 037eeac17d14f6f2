"""Diffusion lab tab: the forward process, image-to-image, inpainting and cross-attention maps on one model."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from demos import common, validation
from demos.text_to_image import IMAGE_SECONDS
from demos.vae_interpolation import open_upload
from pipelines.core import registry
from pipelines.core.imaging import upscale
from pipelines.diffusion.lab_inputs import cell_mask, drawn_scene, fit_image, fit_mask, mask_overlay
from pipelines.diffusion.options import (
    BUILTIN_MODEL,
    DEFAULT_SCHEDULER,
    GUIDANCE,
    IMAGE_TO_IMAGE_GUIDANCE,
    MAX_PROMPT_CHARS,
    SCHEDULER_NAMES,
    STEPS,
    STRENGTH,
    TIMESTEP,
)
from pipelines.diffusion.shapes_world import PLACES, Scene, ShapeObject, render_scene
from pipelines.vae.data import pixel_upscale

TAB_TITLE = "Diffusion lab"
TAB_ID = "diffusion-lab"
# The lab runs the same UNet as the Text → Image tab, so it shares that tab's two slots: a room using both
# tabs still runs at most two denoising jobs at once on the model (more would only queue inside torch).
CONCURRENCY = common.concurrency("text-to-image", 2)

RESULT_SIZE = 256  # the local model draws 64x64; results are shown 4x larger
STRIP_SIZE = 112
HEATMAP_SIZE = 160
SCENE_SCALE = 4  # a drawn scene is enlarged by whole pixels, so the model gets the exact scene back
T2I_GALLERY = "t2i-gallery"  # the Text → Image tab's result gallery (elem_id), a source of input pictures
LEVELS = ("all", "8x8", "4x4", "2x2")  # cross-attention grids of the shapes-world UNet (its finest has none)
# The lab opens on a large red circle on the left, on white: image-to-image turns it blue, inpainting adds to it.
STARTING_SCENE = Scene((ShapeObject("red", "circle", "large", "left"),), "white", ((0, 0),))
STARTING_CELLS = ["right"]

HOW_IT_WORKS = """
- **Forward process.** Training takes a clean image x₀ and a step t, draws Gaussian noise ε and mixes them:
  **x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε**. ᾱ_t ("alpha-bar") is the product of (1 − β) over the first t steps
  of the β schedule: the share of the image left. This model uses a *cosine* schedule, which keeps more of
  the image in the middle steps than the *linear* one (β from 0.0001 to 0.02, seed 002) and reaches pure
  noise only at the very end. t = 0 is the clean image; t = 999 is almost pure noise. The network learns to
  undo one such mix: from x_t and t it predicts x₀ (this model) or ε (Stable Diffusion). Its **one-step
  estimate** shows what it can recover at once: at small t nearly everything, at large t only what the
  prompt says (without a prompt, a vague average picture).
- **Image-to-image** (SDEdit). Instead of starting from pure noise, noise the input to part of the way:
  **strength** 0.5 of 20 steps means x_t at t ≈ 500, then the last 10 denoising steps towards the new
  prompt. Low strength keeps the layout and changes what the noise has washed out first (here colour);
  strength 1 starts from noise and draws something new.
- **Inpainting** (RePaint). Denoise from pure noise as usual, but after every step put the known part back:
  the input noised to the step the loop has reached (the forward process again), so the model sees a
  consistent x_t everywhere and fills the white part of the mask to match both the prompt and the rest of
  the picture. At the last step the known part is the input itself, so outside the mask nothing changes.
  (Resampling jumps, going back and forth a step to let the two parts agree, were not worth twice the time
  here: see docs/diffusion-lab.md.)
- **Cross-attention maps.** The UNet reads the prompt through cross-attention: every position of its grid
  asks every token "how much do you matter here?" (softmax of query·key / √d). Averaged over the heads and
  the denoising steps of one generation, a word's map shows where in the picture the model looked at that
  word. This UNet attends at three grids (8×8, 4×4, 2×2 positions over the 64-pixel image); "all" averages
  them on the finest. Bright = most attention; each map is scaled to its own maximum.
"""


# ---------------------------------------------------------------------------------------------------------
# Inputs


def _model(model):
    """The chosen diffusion model, loaded once by the registry."""
    model_id = registry.MODELS.canonical_id(model)
    allowed = [value for _, value in registry.choices("diffusion")]
    if model_id not in allowed:
        raise gr.Error(f"Unknown model {model!r}: choose one of {', '.join(allowed)}.")
    return registry.load(model_id)


def _prompt(value, name: str = "Prompt") -> str:
    prompt = validation.text(value, name).strip()
    if len(prompt) > MAX_PROMPT_CHARS:
        raise gr.Error(f"{name} is limited to {MAX_PROMPT_CHARS:,} characters (got {len(prompt):,}).")
    return prompt


def _loaded(model):
    """The chosen model and the lab's code. The lab is imported on first use (diffusers takes seconds to import
    and the page should not wait for it) and only after the model is loaded: the warm-up thread loads models
    too, and two threads importing diffusers at once can find it half-imported ("cannot import name")."""
    pipeline = _model(model)
    if getattr(pipeline, "runs_remotely", False):  # cluster mode: the model lives in another process
        raise gr.Error("The Diffusion lab looks inside the model, so it needs it in this process: run the app alone.")
    from pipelines.diffusion import lab

    return pipeline, lab


def _progress(progress):
    return lambda done, total: progress((done, total), desc="Denoising", unit="steps")


def _display(image: Image.Image, size: int) -> Image.Image:
    """A gallery picture, enlarged smoothly."""
    return upscale(image, size)


def _result(image: Image.Image) -> Image.Image:
    """An endpoint's main picture, enlarged by repeating pixels: exact, so a script (or "Use the result as the
    input picture") gets the model's own pixels back by shrinking it with a box filter."""
    return pixel_upscale(image, max(1, RESULT_SIZE // image.width))


def starting_picture() -> Image.Image:
    """The picture the lab opens with, enlarged by whole pixels."""
    return pixel_upscale(render_scene(STARTING_SCENE), SCENE_SCALE)


def draw_scene(scene_seed):
    """A random shapes-world scene as the input picture, and its caption as a starting prompt."""
    scene_seed = validation.seed(scene_seed, "Scene seed")
    picture, caption = drawn_scene(scene_seed)
    return pixel_upscale(picture, SCENE_SCALE), caption


def use_text_to_image_result(gallery):
    """The first picture of the Text → Image tab's last generation."""
    if not gallery:
        raise gr.Error("The Text → Image tab has no picture yet: generate one there first.")
    first = gallery[0]
    image = first[0] if isinstance(first, (list, tuple)) else first
    path = image.get("path") if isinstance(image, dict) else image
    return open_upload(path, "The Text → Image picture")


def _pictures(label: str, columns: int, elem_id: str) -> gr.Gallery:
    """A row of small pictures (PNG, whole, as many columns as given)."""
    return gr.Gallery(label=label, columns=columns, height="auto", format="png", object_fit="contain", elem_id=elem_id)


def _component(elem_id: str):
    """A component already built in this app (another tab's), by its elem_id; None where it is absent."""
    root = gr.context.Context.root_block
    blocks = root.blocks.values() if root is not None else []
    return next((block for block in blocks if getattr(block, "elem_id", None) == elem_id), None)


# ---------------------------------------------------------------------------------------------------------
# 1. Forward process


def _share(value: float) -> str:
    """0.702, or 4.9e-05 where three decimals would say 0."""
    return f"{value:.3f}" if value == 0 or value >= 0.001 else f"{value:.1e}"


def forward_noise(image, timestep=TIMESTEP.default, prompt="", seed=42, model=BUILTIN_MODEL):
    """x_t for the input at step t, the one-step estimates of x₀, a strip of x_t for several t, the schedule."""
    timestep = validation.in_range(timestep, TIMESTEP, "Timestep")
    prompt = _prompt(prompt)
    seed = validation.seed(seed)
    picture = open_upload(image, "The input picture")
    pipeline, lab = _loaded(model)
    result = lab.forward_process(pipeline, picture, timestep, prompt, seed)
    estimates = [(_display(image, 192), label) for label, image in result.estimates]
    strip = [(_display(image, STRIP_SIZE), f"t = {t}") for t, image in result.strip]
    numbers = {
        "timestep": timestep,
        "alpha_bar": round(result.alpha_bar, 6),
        "signal_kept": round(result.signal_kept, 6),
        "noise_level": round(result.noise_level, 6),
        "schedule": result.schedule,
    }
    note = (
        f"**t = {timestep}:** x_t = **{_share(result.signal_kept)}** · x₀ + **{_share(result.noise_level)}** · ε "
        f"(ᾱ_t = {_share(result.alpha_bar)}). "
        + ("The clean picture itself." if timestep == 0 else "Same seed, same noise ε.")
    )
    return _result(result.noisy), estimates, strip, lab.schedule_plot(result), numbers, note


# ---------------------------------------------------------------------------------------------------------
# 2. Image-to-image


def _check_steps(steps, guidance_scale, seed):
    return (
        validation.in_range(steps, STEPS, "Steps"),
        validation.in_range(guidance_scale, GUIDANCE, "Guidance scale"),
        validation.seed(seed),
    )


def _scheduler(scheduler) -> str:
    if scheduler not in SCHEDULER_NAMES:
        raise gr.Error(f"Unknown scheduler {scheduler!r}: choose one of {', '.join(SCHEDULER_NAMES)}.")
    return scheduler


def _strip(edit, total_steps: int):
    return [
        (_display(image, STRIP_SIZE), f"step {step}/{total_steps}")
        for step, image in zip(edit.generation.steps_shown, edit.generation.strip)
    ]


def image_to_image(
    image,
    prompt="a large blue square on the right on a white background",
    strength=STRENGTH.default,
    seed=42,
    steps=STEPS.default,
    guidance_scale=IMAGE_TO_IMAGE_GUIDANCE,
    scheduler=DEFAULT_SCHEDULER,
    model=BUILTIN_MODEL,
    progress=gr.Progress(),
):
    """Noise the input to `strength` of the schedule and denoise it towards the prompt."""
    prompt = _prompt(prompt)
    strength = validation.in_range(strength, STRENGTH, "Strength")
    steps, guidance_scale, seed = _check_steps(steps, guidance_scale, seed)
    scheduler = _scheduler(scheduler)
    picture = open_upload(image, "The input picture")
    pipeline, lab = _loaded(model)
    edit = lab.image_to_image(
        pipeline,
        picture,
        prompt,
        strength,
        seed,
        steps,
        guidance_scale,
        scheduler,
        on_step=_progress(progress),
        max_seconds=IMAGE_SECONDS,
    )
    if edit.steps_run == 0:
        note = f"Strength {strength:g} of {steps} steps is less than one step: the picture is unchanged."
    else:
        note = (
            f"Strength {strength:g}: the input noised to the start of the last {edit.steps_run} of {steps} "
            f"{scheduler} steps, then denoised towards the prompt. Mean change from the input: "
            f"**{edit.change:.1f}** of 255."
        )
    return _result(edit.image), [(_display(edit.input, STRIP_SIZE), "input")] + _strip(edit, edit.steps_run), note


def strength_ladder(image, prompt, seed, steps, guidance_scale, scheduler, model, progress=gr.Progress()):
    """The same edit at strengths 0.2, 0.4, ... 1.0: how much of the input survives each."""
    prompt = _prompt(prompt)
    steps, guidance_scale, seed = _check_steps(steps, guidance_scale, seed)
    scheduler = _scheduler(scheduler)
    picture = open_upload(image, "The input picture")
    pipeline, lab = _loaded(model)
    ladder = [round(s, 2) for s in common.strength_ladder(1.0, 6)[1:]]
    rungs = []
    for index, strength in enumerate(ladder):
        progress((index, len(ladder)), desc=f"Strength {strength:g}", unit="edits")
        edit = lab.image_to_image(
            pipeline, picture, prompt, strength, seed, steps, guidance_scale, scheduler, max_seconds=IMAGE_SECONDS
        )
        rungs.append((_display(edit.image, 160), f"strength {strength:g}: change {edit.change:.0f}"))
    return [(_display(fit_image(picture, lab.native_size(pipeline)), 160), "input")] + rungs


# ---------------------------------------------------------------------------------------------------------
# 3. Inpainting


def mask_from_picks(editor, cells, image):
    """The mask for the input picture (white = repaint), from painted strokes and picked grid cells together,
    and the picture with that part tinted."""
    picture = open_upload(image, "The input picture") if image else None
    if picture is None:
        return None, None
    repaint = np.zeros((picture.height, picture.width), dtype=bool)
    layers = (editor or {}).get("layers") or []
    for layer in layers:
        if layer is None:
            continue
        layer = layer if isinstance(layer, Image.Image) else Image.open(layer)
        alpha = layer.convert("RGBA").getchannel("A").resize(picture.size, Image.Resampling.NEAREST)
        repaint |= np.asarray(alpha) > 0
    if cells:
        repaint |= np.asarray(cell_mask(list(cells), picture.size)) > 0
    if not repaint.any():
        return None, None
    mask = Image.fromarray((repaint * 255).astype(np.uint8), mode="L")
    return mask, mask_overlay(picture, mask)


def preview_mask(image, mask):
    """An uploaded mask over the input picture (when the sizes match); from now on the mask is the upload."""
    if not image or not mask:
        return None, "upload"
    picture, mask_picture = open_upload(image, "The input picture"), open_upload(mask, "The mask")
    return (mask_overlay(picture, mask_picture) if picture.size == mask_picture.size else None), "upload"


def current_mask(editor, cells, image, source, mask):
    """The mask an Inpaint click should use: the upload, or the strokes and cells as they are now (their own
    update may still be on its way when the button is pressed)."""
    if source == "upload":
        return gr.update(), gr.update()
    return mask_from_picks(editor, cells, image)


def editor_background(image):
    """A fresh editor on the current input picture (strokes cleared)."""
    if not image:
        return None
    picture = image if isinstance(image, Image.Image) else open_upload(image, "The input picture")
    return {"background": picture, "layers": [], "composite": picture}


def inpaint(
    image,
    mask,
    prompt="a small green triangle on the right on a white background",
    seed=42,
    steps=STEPS.default,
    guidance_scale=GUIDANCE.default,
    model=BUILTIN_MODEL,
    progress=gr.Progress(),
):
    """Repaint the white part of the mask to follow the prompt; keep the rest."""
    prompt = _prompt(prompt)
    steps, guidance_scale, seed = _check_steps(steps, guidance_scale, seed)
    picture = open_upload(image, "The input picture")
    if mask is None:
        raise gr.Error("The mask is missing: paint over the part to repaint, or pick grid cells.")
    mask_picture = open_upload(mask, "The mask")
    pipeline, lab = _loaded(model)
    try:
        fitted_mask = fit_mask(mask_picture, picture.size, lab.native_size(pipeline))
    except ValueError as error:
        raise gr.Error(str(error)) from None
    edit = lab.inpaint(
        pipeline,
        picture,
        mask_picture,
        prompt,
        seed,
        steps,
        guidance_scale,
        on_step=_progress(progress),
        max_seconds=IMAGE_SECONDS,
    )
    share = 100 * np.asarray(fitted_mask).astype(bool).mean()
    note = (
        f"Repainted {share:.0f}% of the picture in {steps} DDPM steps (the mask in magenta). Mean change from the "
        f"input: {edit.change:.1f} of 255, all of it under the mask."
    )
    shown = [(_display(mask_overlay(edit.input, fitted_mask), STRIP_SIZE), "input and mask")]
    return _result(edit.image), shown + _strip(edit, steps), note


# ---------------------------------------------------------------------------------------------------------
# 4. Cross-attention maps


def _heatmaps(maps, level: str):
    from pipelines.diffusion import lab  # imported by the request that made the maps

    if level not in LEVELS:
        raise gr.Error(f"Level must be one of {', '.join(LEVELS)} (got {level!r}).")
    try:
        grids = maps.level(level)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    return [(lab.heatmap_overlay(maps.image, grid, HEATMAP_SIZE), word) for word, grid in zip(maps.words, grids)]


def cross_attention(
    prompt="a large red circle on the left on a white background",
    seed=42,
    steps=STEPS.default,
    guidance_scale=GUIDANCE.default,
    model=BUILTIN_MODEL,
    progress=gr.Progress(),
):
    """Generate a picture and show where each word's cross-attention landed in it."""
    prompt = _prompt(prompt)
    if not prompt:
        raise gr.Error("Type a prompt: the maps show where each of its words was read.")
    steps, guidance_scale, seed = _check_steps(steps, guidance_scale, seed)
    pipeline, lab = _loaded(model)
    try:
        maps = lab.cross_attention(
            pipeline, prompt, seed, steps, guidance_scale, on_step=_progress(progress), max_seconds=IMAGE_SECONDS
        )
    except ValueError as error:
        raise gr.Error(str(error)) from None
    note = (
        f"{len(maps.words)} words; each map averages the attention of {steps} steps, every head and "
        f"every cross-attention layer, on grids of {', '.join(f'{s}×{s}' for s in sorted(maps.levels, reverse=True))} "
        "positions. Pick a level below to see one grid."
    )
    return _result(maps.image), _heatmaps(maps, "all"), maps.as_json(), note, maps


def show_level(maps, level):
    """The last maps at another UNet level."""
    if maps is None:
        raise gr.Error("Show the attention first.")
    return _heatmaps(maps, level)


# ---------------------------------------------------------------------------------------------------------


def build() -> None:
    gr.Markdown(
        "Take **diffusion** apart on the model of the Text → Image tab: watch a picture drown in noise step by "
        "step, redraw a picture from part-way through the noise (**image-to-image**), repaint part of it "
        "(**inpainting**), and see where each word of a prompt lands (**cross-attention**)."
    )
    t2i_gallery = _component(T2I_GALLERY)  # built before this tab (app.TAB_MODULES), absent in a lone lab
    picture = starting_picture()
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            image = gr.Image(
                value=picture,
                label="Input picture (for parts 1-3)",
                type="filepath",
                format="png",
                height=256,
                sources=["upload", "clipboard"],
                elem_id="lab-image",
            )
            gr.Markdown(
                "Uploads are centre-cropped to a square and shrunk to 64×64 pixels, as the model sees them. "
                f"Up to {validation.MAX_UPLOAD_MB} MB and {validation.MAX_UPLOAD_MEGAPIXELS} megapixels."
            )
            with gr.Row():
                scene_seed = gr.Number(value=1, label="Scene seed", step=1, min_width=100, scale=1)
                draw_button = gr.Button("Draw a shapes-world scene", scale=2, min_width=140)
            t2i_button = gr.Button("Use the last Text → Image picture", size="sm", visible=t2i_gallery is not None)
            scene_caption = gr.Textbox(label="The scene's caption", interactive=False, lines=1)
            model = common.model_menu("diffusion", BUILTIN_MODEL, "Model (Hub models need internet and a GPU)")
        with gr.Column(scale=3):
            with gr.Tabs(elem_id="lab-parts"):
                with gr.Tab("Forward process", id="lab-forward"):
                    with gr.Row():
                        with gr.Column(scale=1, min_width=260):
                            timestep = common.slider(TIMESTEP, "Timestep t (0 = clean, 999 = noise)")
                            forward_prompt = gr.Textbox(
                                label="Prompt for the estimate (optional)",
                                value="a large red circle on the left on a white background",
                                lines=1,
                            )
                            forward_seed = common.seed_row(42, label="Noise seed")
                            forward_button = gr.Button("Add noise", variant="primary", elem_id="lab-forward-run")
                            forward_note = gr.Markdown(elem_id="lab-forward-note")
                            with gr.Accordion("The numbers (JSON)", open=False):
                                forward_numbers = gr.JSON(show_label=False)
                        with gr.Column(scale=2, min_width=260):
                            with gr.Row():
                                noisy = gr.Image(label="x_t", format="png", height=256, elem_id="lab-noisy")
                                estimates = _pictures(
                                    "The model's one-step estimate of x₀ from x_t", 2, "lab-estimates"
                                )
                    forward_strip = _pictures("x_t for several t (same noise)", 8, "lab-forward-strip")
                    schedule = gr.Image(
                        label="ᾱ_t: this model's schedule against seed 002's linear one",
                        format="png",
                        elem_id="lab-schedule",
                    )

                with gr.Tab("Image-to-image", id="lab-img2img"):
                    with gr.Row():
                        with gr.Column(scale=1, min_width=260):
                            i2i_prompt = gr.Textbox(
                                label="New prompt",
                                value="a large blue square on the right on a white background",
                                lines=2,
                                elem_id="lab-i2i-prompt",
                            )
                            strength = common.slider(STRENGTH, "Strength (0 = keep, 1 = from noise)")
                            with gr.Row():
                                i2i_steps = common.slider(STEPS, "Steps", elem_id="lab-i2i-steps")
                                i2i_guidance = common.slider(GUIDANCE, "Guidance scale", value=IMAGE_TO_IMAGE_GUIDANCE)
                            i2i_seed = common.seed_row(42)
                            i2i_scheduler = gr.Dropdown(
                                list(SCHEDULER_NAMES), value=DEFAULT_SCHEDULER, label="Scheduler"
                            )
                            with gr.Row():
                                i2i_button = gr.Button("Redraw", variant="primary", elem_id="lab-i2i-run")
                                ladder_button = gr.Button("Strength ladder", elem_id="lab-ladder-run")
                            i2i_note = gr.Markdown(elem_id="lab-i2i-note")
                        with gr.Column(scale=2, min_width=260):
                            i2i_result = gr.Image(label="Result", format="png", height=256, elem_id="lab-i2i-result")
                            i2i_use = gr.Button("Use the result as the input picture", size="sm")
                            i2i_strip = _pictures(
                                "The input, then the model's guess of the finished picture at each step",
                                6,
                                "lab-i2i-strip",
                            )
                    ladder = _pictures("Strength ladder: the same edit from more and more noise", 6, "lab-ladder")

                with gr.Tab("Inpainting", id="lab-inpaint"):
                    with gr.Row():
                        with gr.Column(scale=1, min_width=260):
                            editor = gr.ImageEditor(
                                value=editor_background(picture),
                                label="Paint over the part to repaint",
                                type="pil",
                                sources=(),
                                layers=False,
                                transforms=(),
                                brush=gr.Brush(default_size=24, colors=["#ff00ff"], color_mode="fixed"),
                                eraser=gr.Eraser(default_size=24),
                                height=330,
                                elem_id="lab-editor",
                            )
                            cells = validation.CheckedCheckboxGroup(
                                list(PLACES), value=STARTING_CELLS, label="…or pick grid cells", elem_id="lab-cells"
                            )
                            starting_mask = cell_mask(STARTING_CELLS, picture.size)
                            preview = gr.Image(
                                value=mask_overlay(picture, starting_mask),
                                label="What will be repainted (magenta)",
                                format="png",
                                height=200,
                                interactive=False,
                                elem_id="lab-mask-preview",
                            )
                            with gr.Accordion("The mask image (white = repaint): or upload your own", open=False):
                                mask = gr.Image(
                                    value=starting_mask,
                                    show_label=False,
                                    type="filepath",
                                    format="png",
                                    height=160,
                                    image_mode="L",
                                    sources=["upload", "clipboard"],
                                    elem_id="lab-mask",
                                )
                        with gr.Column(scale=1, min_width=260):
                            inpaint_prompt = gr.Textbox(
                                label="Prompt for the repainted part",
                                value="a small green triangle on the right on a white background",
                                lines=2,
                                elem_id="lab-inpaint-prompt",
                            )
                            with gr.Row():
                                inpaint_steps = common.slider(STEPS, "Steps", elem_id="lab-inpaint-steps")
                                inpaint_guidance = common.slider(GUIDANCE, "Guidance scale")
                            inpaint_seed = common.seed_row(42)
                            inpaint_button = gr.Button("Inpaint", variant="primary", elem_id="lab-inpaint-run")
                            inpaint_note = gr.Markdown(elem_id="lab-inpaint-note")
                            inpaint_result = gr.Image(
                                label="Result", format="png", height=256, elem_id="lab-inpaint-result"
                            )
                            inpaint_use = gr.Button("Use the result as the input picture", size="sm")
                    mask_source = gr.State("picks")  # "picks" (strokes and cells) or "upload"
                    inpaint_strip = _pictures(
                        "The input and its mask, then the model's guess of the finished picture at each step",
                        7,
                        "lab-inpaint-strip",
                    )

                with gr.Tab("Cross-attention", id="lab-attention"):
                    with gr.Row():
                        with gr.Column(scale=1, min_width=260):
                            attention_prompt = gr.Textbox(
                                label="Prompt",
                                value="a large red circle on the left on a white background",
                                lines=2,
                                elem_id="lab-attention-prompt",
                            )
                            with gr.Row():
                                attention_steps = common.slider(STEPS, "Steps", elem_id="lab-attention-steps")
                                attention_guidance = common.slider(GUIDANCE, "Guidance scale")
                            attention_seed = common.seed_row(42)
                            attention_button = gr.Button(
                                "Show the attention", variant="primary", elem_id="lab-attention-run"
                            )
                            attention_note = gr.Markdown(elem_id="lab-attention-note")
                        with gr.Column(scale=1, min_width=200):
                            attention_image = gr.Image(
                                label="Generated picture", format="png", height=256, elem_id="lab-attention-image"
                            )
                    level = gr.Radio(list(LEVELS), value="all", label="UNet level (grid of positions)")
                    heatmaps = _pictures("Where each word was read (bright = most attention)", 6, "lab-heatmaps")
                    with gr.Accordion("The maps as numbers (JSON)", open=False):
                        attention_json = gr.JSON(show_label=False)
                    attention_maps = gr.State(None)

    # Inputs: a drawn scene, the Text → Image tab's picture, an upload; the inpainting editor follows.
    draw_button.click(draw_scene, scene_seed, [image, scene_caption], api_visibility="private")
    if t2i_gallery is not None:
        t2i_button.click(use_text_to_image_result, t2i_gallery, image, api_visibility="private")
    image.change(editor_background, image, editor, api_visibility="private", preprocess=False)
    # A brush stroke is an "input" (checked in the browser: it fires no "change"); a new background is a "change".
    # One at a time, in the order sent: the editor's first "change" can leave just before a cell is ticked, and
    # two runs side by side may finish in either order, leaving the older mask on show (seen once in CI).
    gr.on(
        [editor.change, editor.input, editor.apply, cells.change],
        mask_from_picks,
        [editor, cells, image],
        [mask, preview],
        api_visibility="private",
        trigger_mode="always_last",
        concurrency_limit=1,
        concurrency_id="lab-mask-preview",
    ).then(lambda: "picks", None, mask_source, api_visibility="private")
    mask.upload(preview_mask, [image, mask], [preview, mask_source], api_visibility="private", preprocess=False)

    # Gradio's preprocessing would open uploads itself and fail on a corrupt file with a bare "Error"; with it
    # off the handlers open them (open_upload) and say what was wrong, and check every other value too.
    forward_button.click(
        forward_noise,
        [image, timestep, forward_prompt, forward_seed, model],
        [noisy, estimates, forward_strip, schedule, forward_numbers, forward_note],
        api_name="forward_noise",
        preprocess=False,
        **CONCURRENCY,
    )
    i2i_inputs = [image, i2i_prompt, strength, i2i_seed, i2i_steps, i2i_guidance, i2i_scheduler, model]
    i2i_button.click(
        image_to_image,
        i2i_inputs,
        [i2i_result, i2i_strip, i2i_note],
        api_name="image_to_image",
        preprocess=False,
        **CONCURRENCY,
    )
    ladder_button.click(
        strength_ladder,
        [image, i2i_prompt, i2i_seed, i2i_steps, i2i_guidance, i2i_scheduler, model],
        ladder,
        api_visibility="private",
        preprocess=False,
        **CONCURRENCY,
    )
    inpaint_button.click(
        current_mask, [editor, cells, image, mask_source, mask], [mask, preview], api_visibility="private"
    ).then(
        inpaint,
        [image, mask, inpaint_prompt, inpaint_seed, inpaint_steps, inpaint_guidance, model],
        [inpaint_result, inpaint_strip, inpaint_note],
        api_name="inpaint",
        preprocess=False,
        **CONCURRENCY,
    )
    attention_button.click(
        cross_attention,
        [attention_prompt, attention_seed, attention_steps, attention_guidance, model],
        [attention_image, heatmaps, attention_json, attention_note, attention_maps],
        api_name="cross_attention",
        preprocess=False,
        **CONCURRENCY,
    )
    level.change(show_level, [attention_maps, level], heatmaps, api_visibility="private")
    for use_button, result in ((i2i_use, i2i_result), (inpaint_use, inpaint_result)):
        use_button.click(lambda picture: picture, result, image, api_visibility="private")
