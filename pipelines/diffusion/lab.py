"""The Diffusion lab: the forward process, image-to-image, inpainting and cross-attention maps.

Each part works on any text-to-image diffusers pipeline the app loads: the shapes-world model trained here
(`ShapesDiffusionPipeline`, pixel space cut into patches) or an allow-listed Hub pipeline such as sd-turbo
(a `StableDiffusionPipeline`, in its VAE's latent space). Image-to-image and inpainting run through
`text_to_image.generate`, so they share its seeds, time limit and look-inside strip; the Hub path uses
diffusers' own image-to-image and inpainting pipelines (`AutoPipelineFor*.from_pipe`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import io
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from pipelines.core.imaging import pixel_difference, tensor_to_pil
from pipelines.core.limits import SEED
from pipelines.diffusion.lab_inputs import fit_image, fit_mask
from pipelines.diffusion.options import (
    DEFAULT_SCHEDULER,
    GUIDANCE,
    IMAGE_TO_IMAGE_GUIDANCE,
    MAX_PROMPT_CHARS,
    STEPS,
    STRENGTH,
    TIMESTEP,
)
from pipelines.diffusion.text_to_image import (
    MAX_TOKENS,
    Generation,
    ShapesDiffusionPipeline,
    conditioning,
    denoising_steps,
    encode_text,
    generate,
    image_tensor,
    images_to_patches,
    load_text_encoder,
    patches_to_images,
    predicted_clean_sample,
    unet_input,
)

FORWARD_STRIP_TIMESTEPS = (0, 100, 250, 400, 550, 700, 850, 999)
LINEAR_BETAS = (1e-4, 0.02)  # seed 002's linear schedule, beta from 1e-4 to 0.02


# ---------------------------------------------------------------------------------------------------------
# Inputs: pictures and masks at the size the model draws (the helpers themselves: lab_inputs.py)


def native_size(pipeline: DiffusionPipeline) -> int:
    """The side of the images the pipeline draws: 64 for the shapes-world model, 512 for sd-turbo."""
    if isinstance(pipeline, ShapesDiffusionPipeline):
        patch = round((pipeline.unet.config.out_channels / 3) ** 0.5)
        return pipeline.unet.config.sample_size * patch
    return pipeline.unet.config.sample_size * pipeline.vae_scale_factor


# ---------------------------------------------------------------------------------------------------------
# 1. The forward process


@dataclass
class ForwardProcess:
    noisy: Image.Image  # x_t as the model sees it (for a latent model: the noisy latents through its VAE)
    timestep: int
    alpha_bar: float  # ᾱ_t: x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε
    estimates: list[tuple[str, Image.Image]]  # the model's one-step guesses of x_0 from x_t
    strip: list[tuple[int, Image.Image]]  # x_t at several t, from the same noise
    schedule: str  # the model's beta schedule, e.g. "squaredcos_cap_v2"
    alpha_bars: np.ndarray = field(repr=False)  # ᾱ_t for t = 0..999 (1 at t = 0, the clean image)

    @property
    def signal_kept(self) -> float:
        """√ᾱ_t: how much of the clean image's amplitude is left in x_t."""
        return float(np.sqrt(self.alpha_bar))

    @property
    def noise_level(self) -> float:
        """√(1 − ᾱ_t): the standard deviation of the noise in x_t."""
        return float(np.sqrt(1 - self.alpha_bar))


def forward_scheduler(pipeline: DiffusionPipeline) -> DDPMScheduler:
    """The noising process the model was trained with: its betas, as a (fresh, private) DDPM scheduler."""
    return DDPMScheduler.from_config(pipeline.scheduler.config)


def alpha_bars(scheduler: DDPMScheduler) -> np.ndarray:
    """ᾱ_t for the lab's t = 0..T-1: t = 0 is the clean image (ᾱ = 1); t ≥ 1 is training's noise level t."""
    values = scheduler.alphas_cumprod.double().numpy().copy()
    values[0] = 1.0
    return values


def linear_alpha_bars(steps: int = 1000) -> np.ndarray:
    """ᾱ_t for seed 002's linear beta schedule over the same number of steps (t = 0 clean, as above)."""
    values = np.cumprod(1 - np.linspace(*LINEAR_BETAS, steps))
    values[0] = 1.0
    return values


def add_noise(scheduler: DDPMScheduler, clean: torch.Tensor, noise: torch.Tensor, timestep: int) -> torch.Tensor:
    """x_t exactly as training made it (`scheduler.add_noise`); t = 0 gives the clean sample back."""
    if timestep == 0:
        return clean
    return scheduler.add_noise(clean, noise, torch.tensor([timestep]))


@torch.no_grad()
def forward_process(
    pipeline: DiffusionPipeline, image: Image.Image, timestep: int = TIMESTEP.default, prompt: str = "", seed: int = 0
) -> ForwardProcess:
    """Noise `image` to step t, and ask the model for the clean image back in one step, without and with `prompt`."""
    timestep = TIMESTEP.check(timestep, "Timestep")
    seed = SEED.check(seed, "Seed")
    _check_prompt(prompt)
    scheduler = forward_scheduler(pipeline)
    space = _ModelSpace(pipeline)
    clean = space.encode(fit_image(image, native_size(pipeline)))
    noise = randn_tensor(clean.shape, generator=torch.Generator().manual_seed(seed), dtype=clean.dtype)
    noise = noise.to(clean.device)
    noisy = add_noise(scheduler, clean, noise, timestep)

    prompts = [""] + ([prompt] if prompt.strip() else [])
    estimates = space.clean_estimates(scheduler, noisy, timestep, prompts)
    labels = ["no prompt"] + (["with prompt"] if prompt.strip() else [])
    strip = [(t, space.decode(add_noise(scheduler, clean, noise, t))) for t in FORWARD_STRIP_TIMESTEPS]
    curve = alpha_bars(scheduler)
    return ForwardProcess(
        noisy=space.decode(noisy),
        timestep=timestep,
        alpha_bar=float(curve[timestep]),
        estimates=list(zip(labels, estimates)),
        strip=strip,
        schedule=scheduler.config.beta_schedule,
        alpha_bars=curve,
    )


class _ModelSpace:
    """Where a pipeline's UNet works: pixels cut into patches (the shapes world) or a VAE's latents (Hub)."""

    def __init__(self, pipeline: DiffusionPipeline):
        self.pipeline = pipeline
        self.unet = pipeline.unet
        self.local = isinstance(pipeline, ShapesDiffusionPipeline)

    def encode(self, image: Image.Image) -> torch.Tensor:
        pixels = image_tensor(image, 1, self.unet.device, self.unet.dtype)
        if self.local:
            return images_to_patches(pixels)
        vae = self.pipeline.vae
        return vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor

    def decode(self, sample: torch.Tensor) -> Image.Image:
        if self.local:
            return tensor_to_pil(patches_to_images(sample))[0]
        vae = self.pipeline.vae
        return tensor_to_pil(vae.decode(sample / vae.config.scaling_factor).sample)[0]

    def clean_estimates(
        self, scheduler: DDPMScheduler, noisy: torch.Tensor, timestep: int, prompts: list[str]
    ) -> list[Image.Image]:
        """One UNet pass per prompt on x_t: the model's guess of x_0 (its output, or x_t minus the predicted noise)."""
        batch = noisy.expand(len(prompts), *noisy.shape[1:])
        t = torch.tensor(timestep, device=noisy.device)
        if self.local:
            encoded = encode_text(prompts, self.unet.device, self.unet.dtype)
            text = conditioning(self.unet, encoded.standardized(self.pipeline.config.pooled_text_statistics))
            prediction = self.unet(unet_input(self.unet, batch), t, **text).sample
        else:
            embeddings = self.pipeline.encode_prompt(prompts, self.unet.device, 1, False)[0]
            prediction = self.unet(batch, t, encoder_hidden_states=embeddings).sample
        estimate = predicted_clean_sample(scheduler, batch, prediction, t)
        if self.local:
            estimate = estimate.clamp(-1, 1)
        return [self.decode(sample[None]) for sample in estimate]


def schedule_plot(result: ForwardProcess) -> Image.Image:
    """ᾱ_t of the model's schedule against seed 002's linear one, with the chosen t marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display: draw into memory
    import matplotlib.pyplot as plt

    steps = np.arange(len(result.alpha_bars))
    names = {"squaredcos_cap_v2": "cosine", "scaled_linear": "scaled linear", "linear": "linear"}
    figure, axes = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    axes.plot(
        steps,
        result.alpha_bars,
        color="#d62728",
        lw=2.5,
        label=f"this model ({names.get(result.schedule, result.schedule)})",
    )
    axes.plot(
        steps, linear_alpha_bars(len(steps)), color="#1f77b4", lw=2, ls="--", label="linear β 1e-4 → 0.02 (seed 002)"
    )
    axes.axvline(result.timestep, color="0.4", lw=1)
    axes.plot([result.timestep], [result.alpha_bar], "o", color="#d62728", ms=8)
    axes.annotate(
        f"t = {result.timestep}: ᾱ = {result.alpha_bar:.3f}, √ᾱ = {result.signal_kept:.3f}",
        (result.timestep, result.alpha_bar),
        xytext=(0.5, 1.04),
        textcoords="axes fraction",
        ha="center",
        fontsize=11,
    )
    axes.set_xlabel("timestep t", fontsize=11)
    axes.set_ylabel("ᾱ_t (share of the image left)", fontsize=11)
    axes.set_xlim(0, len(steps) - 1)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


# ---------------------------------------------------------------------------------------------------------
# 2. Image-to-image and 3. inpainting


@dataclass
class Edit:
    input: Image.Image  # the picture as the model saw it (fitted to its size)
    generation: Generation  # .images[0] is the edited picture; .strip the model's guesses on the way
    steps_run: int  # denoising steps actually taken (image-to-image redoes only the last `strength` of them)
    mask: Image.Image | None = None  # inpainting: white where the picture was repainted

    @property
    def image(self) -> Image.Image:
        return self.generation.images[0]

    @property
    def change(self) -> float:
        """Mean absolute pixel change from the input, in 0..255."""
        return pixel_difference(self.input, self.image)


def image_to_image(
    pipeline: DiffusionPipeline,
    image: Image.Image,
    prompt: str,
    strength: float = STRENGTH.default,
    seed: int = 0,
    steps: int = STEPS.default,
    guidance_scale: float = IMAGE_TO_IMAGE_GUIDANCE,
    scheduler_name: str = DEFAULT_SCHEDULER,
    on_step: Callable[[int, int], None] | None = None,
    max_seconds: float | None = None,
) -> Edit:
    """Noise `image` to `strength` of the schedule (0: unchanged, 1: pure noise) and denoise it towards `prompt`."""
    fitted = fit_image(image, native_size(pipeline))
    generation = generate(
        pipeline,
        prompt,
        steps=steps,
        guidance_scale=guidance_scale,
        seed=seed,
        scheduler_name=scheduler_name,
        on_step=on_step,
        max_seconds=max_seconds,
        image=fitted,
        strength=strength,
    )
    return Edit(fitted, generation, denoising_steps(steps, strength))


def inpaint(
    pipeline: DiffusionPipeline,
    image: Image.Image,
    mask: Image.Image,
    prompt: str,
    seed: int = 0,
    steps: int = STEPS.default,
    guidance_scale: float = GUIDANCE.default,
    on_step: Callable[[int, int], None] | None = None,
    max_seconds: float | None = None,
) -> Edit:
    """Repaint the white part of `mask` to follow `prompt`, keeping the rest (RePaint on the shapes-world model:
    the known part, noised to each step, is put back after every step; diffusers' inpainting pipeline on Hub models)."""
    size = native_size(pipeline)
    fitted, fitted_mask = fit_image(image, size), fit_mask(mask, image.size, size)
    generation = generate(
        pipeline,
        prompt,
        steps=steps,
        guidance_scale=guidance_scale,
        seed=seed,
        scheduler_name=DEFAULT_SCHEDULER,  # RePaint's re-noising is the DDPM forward step
        on_step=on_step,
        max_seconds=max_seconds,
        image=fitted,
        mask=fitted_mask,
        strength=1.0,
    )
    return Edit(fitted, generation, steps, fitted_mask)


# ---------------------------------------------------------------------------------------------------------
# 4. Cross-attention maps

_RECORDING: contextvars.ContextVar[_Recording | None] = contextvars.ContextVar("cross_attention", default=None)
_INSTALL_LOCK = threading.Lock()


class _Recording:
    """Attention probabilities of one generation, summed over steps per layer: {layer: (HW, tokens)}."""

    def __init__(self, conditional_half: bool):
        self.conditional_half = conditional_half  # guided runs batch [unconditional, conditional]
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, layer: str, probabilities: torch.Tensor) -> None:
        """(B, HW, tokens), already averaged over heads; keeps the first image's conditional pass."""
        if self.conditional_half:
            probabilities = probabilities.chunk(2)[1]
        first = probabilities[0].float().cpu()
        self.sums[layer] = self.sums.get(layer, 0) + first
        self.counts[layer] = self.counts.get(layer, 0) + 1


class RecordingCrossAttention:
    """An attention processor that runs the layer's own processor unchanged and, while a recording is active
    in the calling context (one request), also keeps softmax(QKᵀ/√d) averaged over heads. Other requests
    sharing the UNet pass straight through, so the model's outputs never change."""

    def __init__(self, layer: str, processor):
        self.layer = layer
        self.processor = processor

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        recording = _RECORDING.get()
        if recording is not None and encoder_hidden_states is not None:
            recording.add(
                self.layer, _attention_probabilities(attn, hidden_states, encoder_hidden_states, attention_mask)
            )
        return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)


def _attention_probabilities(attn, hidden_states, encoder_hidden_states, attention_mask) -> torch.Tensor:
    """(B, HW, tokens): each position's attention over the prompt's tokens, averaged over the heads."""
    if hidden_states.dim() == 4:  # (B, C, H, W) -> (B, HW, C)
        hidden_states = hidden_states.flatten(2).transpose(1, 2)
    if attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    batch, positions, _ = hidden_states.shape
    query = attn.head_to_batch_dim(attn.to_q(hidden_states))
    key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
    mask = attn.prepare_attention_mask(attention_mask, key.shape[1], batch)
    probabilities = attn.get_attention_scores(query, key, mask)  # (B·heads, HW, tokens)
    return probabilities.view(batch, attn.heads, positions, -1).mean(1)


def install_recorders(unet) -> None:
    """Wrap every cross-attention layer (attn2) of the UNet in a RecordingCrossAttention, once."""
    with _INSTALL_LOCK:
        processors = unet.attn_processors
        if any(isinstance(p, RecordingCrossAttention) for p in processors.values()):
            return
        unet.set_attn_processor(
            {
                name: RecordingCrossAttention(name, p) if name.endswith("attn2.processor") else p
                for name, p in processors.items()
            }
        )


@contextlib.contextmanager
def recording_cross_attention(unet, guided: bool) -> Iterator[_Recording]:
    """Record the cross-attention of the generations run inside the block, in this context only."""
    install_recorders(unet)
    recording = _Recording(conditional_half=guided)
    token = _RECORDING.set(recording)
    try:
        yield recording
    finally:
        _RECORDING.reset(token)


def word_tokens(tokenizer, prompt: str) -> list[tuple[str, list[int]]]:
    """The prompt's words and the positions of their tokens in the encoded prompt (word pieces joined)."""
    if tokenizer.is_fast:  # MiniLM (BERT word pieces): the tokenizer says which word each token belongs to
        encoding = tokenizer(prompt, truncation=True, max_length=MAX_TOKENS, return_offsets_mapping=True)
        words: dict[int, list[int]] = {}
        for position, word in enumerate(encoding.word_ids()):
            if word is not None:
                words.setdefault(word, []).append(position)
        spans = encoding["offset_mapping"]
        found = [(prompt[spans[p[0]][0] : spans[p[-1]][1]], p) for p in words.values()]
    else:  # CLIP's byte-pair pieces: a word ends with the piece that carries "</w>"
        ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
        found, pieces, positions = [], [], []
        for position, piece in enumerate(tokenizer.convert_ids_to_tokens(ids)):
            if piece in tokenizer.all_special_tokens:
                continue
            pieces.append(piece)
            positions.append(position)
            if piece.endswith("</w>"):
                found.append(("".join(pieces).replace("</w>", ""), positions))
                pieces, positions = [], []
    return [(word, positions) for word, positions in found if any(c.isalnum() for c in word)]


@dataclass
class AttentionMaps:
    image: Image.Image  # the generated image
    words: list[str]
    levels: dict[int, np.ndarray]  # grid side -> (words, side, side), averaged over heads, steps and layers
    generation: Generation = field(repr=False)

    @property
    def finest(self) -> int:
        return max(self.levels)

    @property
    def maps(self) -> np.ndarray:
        """(words, side, side) on the finest grid: every level upsampled to it, then averaged."""
        side = self.finest
        resized = [
            F.interpolate(torch.from_numpy(level)[None], size=(side, side), mode="bilinear", align_corners=False)[0]
            for level in self.levels.values()
        ]
        return torch.stack(resized).mean(0).numpy()

    def level(self, name: str) -> np.ndarray:
        """The maps of one level ("8x8", ...) or of all of them ("all")."""
        if name == "all":
            return self.maps
        side = int(name.split("x")[0])
        if side not in self.levels:
            raise ValueError(f"No cross-attention at {name}: choose all or {', '.join(level_names(self))}.")
        return self.levels[side]

    def as_json(self) -> dict:
        """{"words": [...], "maps": [[[...]]]} (one 2-D array per word, rows top to bottom), and each level's maps."""
        return {
            "words": self.words,
            "maps": np.round(self.maps, 5).tolist(),
            "grid": [self.finest, self.finest],
            "levels": {f"{side}x{side}": np.round(maps, 5).tolist() for side, maps in sorted(self.levels.items())},
        }


def level_names(maps: AttentionMaps) -> list[str]:
    return [f"{side}x{side}" for side in sorted(maps.levels, reverse=True)]


def cross_attention(
    pipeline: DiffusionPipeline,
    prompt: str,
    seed: int = 0,
    steps: int = STEPS.default,
    guidance_scale: float = GUIDANCE.default,
    scheduler_name: str = DEFAULT_SCHEDULER,
    on_step: Callable[[int, int], None] | None = None,
    max_seconds: float | None = None,
) -> AttentionMaps:
    """Generate one image for `prompt` and where each of its words' cross-attention landed, per UNet level."""
    _check_prompt(prompt)
    words = word_tokens(_tokenizer(pipeline), prompt)
    if not words:
        raise ValueError("The prompt has no words to follow: type a prompt such as “a red circle on the left”.")
    with recording_cross_attention(pipeline.unet, guided=guidance_scale > 1.0) as recording:
        generation = generate(
            pipeline,
            prompt,
            steps=steps,
            guidance_scale=guidance_scale,
            seed=seed,
            scheduler_name=scheduler_name,
            on_step=on_step,
            max_seconds=max_seconds,
        )
    by_side: dict[int, list[torch.Tensor]] = {}
    for layer, total in recording.sums.items():
        mean = total / recording.counts[layer]  # (HW, tokens), averaged over steps
        side = round(mean.shape[0] ** 0.5)
        by_side.setdefault(side, []).append(mean)
    levels = {}
    for side, layers in by_side.items():
        mean = torch.stack(layers).mean(0)  # averaged over the level's layers
        per_word = torch.stack([mean[:, positions].sum(-1) for _, positions in words])  # a word's share
        levels[side] = per_word.view(len(words), side, side).numpy()
    return AttentionMaps(generation.images[0], [w for w, _ in words], levels, generation)


def _tokenizer(pipeline: DiffusionPipeline):
    if isinstance(pipeline, ShapesDiffusionPipeline):
        return load_text_encoder(pipeline.unet.device, pipeline.unet.dtype)[0]
    return pipeline.tokenizer


def map_centre(heat: np.ndarray) -> tuple[float, float]:
    """The centre of mass of a map above its floor, as (x, y) fractions of the image (0 = left / top)."""
    weights = heat - heat.min()
    if weights.sum() <= 0:
        return 0.5, 0.5
    rows, columns = np.indices(heat.shape)
    x = ((columns + 0.5) * weights).sum() / weights.sum() / heat.shape[1]
    y = ((rows + 0.5) * weights).sum() / weights.sum() / heat.shape[0]
    return float(x), float(y)


@functools.cache
def _colour_map():
    import matplotlib

    return matplotlib.colormaps["inferno"]


def heatmap_overlay(image: Image.Image, heat: np.ndarray, size: int = 192) -> Image.Image:
    """The map (scaled to its own maximum) over the image, both enlarged to size × size."""
    span = heat.max() - heat.min()
    scaled = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    smooth = Image.fromarray(scaled.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR)
    colours = (_colour_map()(np.clip(np.asarray(smooth), 0, 1))[..., :3] * 255).astype(np.uint8)
    picture = image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return Image.blend(picture, Image.fromarray(colours), 0.5)


def _check_prompt(prompt: str) -> None:
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"Prompts are limited to {MAX_PROMPT_CHARS} characters.")
