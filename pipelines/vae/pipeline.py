"""VAE pipelines: walk between the latent means of two images, map the latent space in 2-D, add attribute
vectors and decode samples from the prior N(0, I); for the VAEs trained here and diffusers' AutoencoderKL.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipelines.core.batching import BatchingRunner
from pipelines.core.device import DeviceChoice, select_device
from pipelines.core.health import expect_output
from pipelines.core.limits import SEED
from pipelines.core.weights import ModelSourceError, repo_weights, resolve_model_folder
from pipelines.gan.faces import slerp
from pipelines.vae.data import (
    ImageDataset,
    centre_square,
    digits_dataset,
    faces_dataset,
    fit_digit,
    pil_to_tensor,
    tensor_to_images,
    undo_pixel_upscale,
)
from pipelines.vae.model import ConvVAE, ConvVAEConfig
from pipelines.vae.options import FRAMES, INTERPOLATION_METHODS, MAP_COORDINATE, SAMPLES, STRENGTH

# ----------------------------------------------------------------------------- pipelines


@dataclass
class Interpolation:
    frames: list[Image.Image]
    inputs: list[Image.Image]  # the two images as the model sees them (cropped, resized)
    reconstructions: list[Image.Image]  # decoded latent means of the two inputs
    latents: torch.Tensor  # (frames, *latent_shape): the path


class VAEPipeline:
    """What every VAE here offers: encode to latent means, decode, interpolate. Subclasses load models."""

    name: str
    image_size: int
    device_choice: DeviceChoice

    def __init__(self) -> None:
        # Concurrent users share forward passes: requests that arrive together run as one batch.
        self._encoder = BatchingRunner(self._run_encoder, max_rows=4 * FRAMES.high)
        self._decoder = BatchingRunner(self._run_decoder, max_rows=4 * FRAMES.high)

    def prepare(self, image: Image.Image) -> Image.Image:
        """Fit an arbitrary image to what the model expects (size, colour)."""
        raise NotImplementedError

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def _run_encoder(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._encode(pixels.to(self.device_choice.device, self.device_choice.dtype)).float().cpu()

    @torch.inference_mode()
    def _run_decoder(self, latents: torch.Tensor) -> torch.Tensor:
        return self._decode(latents.to(self.device_choice.device, self.device_choice.dtype)).float().cpu()

    def encode_means(self, images: list[Image.Image]) -> torch.Tensor:
        """Images (fitted with `prepare`) -> their latent means, (N, *latent_shape), float32 on CPU."""
        return self._encoder(torch.stack([pil_to_tensor(self.prepare(image)) for image in images]))

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        """(N, *latent_shape) -> N images, in one forward pass (shared with other callers' requests)."""
        return tensor_to_images(self._decoder(latents.float()))

    def reconstruct(self, images: list[Image.Image]) -> list[Image.Image]:
        return self.decode(self.encode_means(images))

    def interpolate(
        self, image_a: Image.Image, image_b: Image.Image, frames: int = FRAMES.default, method: str = "slerp"
    ) -> Interpolation:
        """Decode `frames` points on the path between the latent means of two images (ends included)."""
        frames = FRAMES.check(frames, "frames")
        z_a, z_b = self.encode_means([image_a, image_b])
        path = interpolate_latents(z_a, z_b, frames, method)
        decoded = self.decode(path)
        return Interpolation(
            frames=decoded,
            inputs=[self.prepare(image_a), self.prepare(image_b)],
            reconstructions=[decoded[0], decoded[-1]],
            latents=path,
        )


def interpolate_latents(z_a: torch.Tensor, z_b: torch.Tensor, frames: int, method: str) -> torch.Tensor:
    """(frames, *z_a.shape): a straight line ('lerp') or a great-circle arc ('slerp') from z_a to z_b."""
    t = torch.linspace(0, 1, frames)
    if method == "slerp":
        return slerp(z_a, z_b, t)
    if method == "lerp":
        t = t.view(-1, *[1] * z_a.dim())
        return (1 - t) * z_a + t * z_b
    raise ValueError(f"method must be one of {', '.join(INTERPOLATION_METHODS)}, got {method!r}")


class TrainedVAEPipeline(VAEPipeline):
    """A ConvVAE trained by this project (`training/train_vae.py`), with its dataset for galleries and maps."""

    def __init__(self, folder: Path, device_choice: DeviceChoice):
        super().__init__()
        from safetensors.torch import load_file

        settings = json.loads((folder / "config.json").read_text())
        self.settings = settings
        self.config = ConvVAEConfig(**{**settings["model"], "features": tuple(settings["model"]["features"])})
        self.name = settings["data"]
        self.image_size = self.config.image_size
        self.device_choice = device_choice
        model = ConvVAE(self.config)
        try:
            model.load_state_dict(load_file(folder / "model.safetensors"))
        except Exception as error:
            raise ModelSourceError(f"The VAE weights in {folder} could not be read: {error}") from error
        self.model = model.to(device_choice.device, device_choice.dtype).eval()

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def prepare(self, image: Image.Image) -> Image.Image:
        original = undo_pixel_upscale(image, self.image_size)
        if self.config.channels == 1:
            if original is not None and np.asarray(original.convert("L")).mean() < 128:
                return original.convert("L")  # already a light-on-dark digit of the model's size
            return fit_digit(image, self.image_size)
        if original is not None:  # one of the model's own images, enlarged for the screen: use it as is
            return original.convert("RGB")
        return centre_square(image, self.image_size)

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode(pixels)[0]

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latents)

    @functools.cached_property
    def examples(self) -> ImageDataset:
        """Held-out images (never seen in training) for galleries, the latent map and attribute vectors."""
        if self.name == "digits":
            return digits_dataset("held_out", self.image_size)
        return faces_dataset("held_out", 300)

    def example_images(self) -> list[Image.Image]:
        return tensor_to_images(self.examples.images)

    def sample_prior(self, seed: int, count: int = SAMPLES.default) -> list[Image.Image]:
        """Decode z ~ N(0, I): the same seed gives the same images."""
        count = SAMPLES.check(count, "count")
        generator = torch.Generator().manual_seed(SEED.check(seed, "seed"))
        return self.decode(torch.randn(count, self.latent_dim, generator=generator))

    def attribute_edit(
        self,
        with_feature: list[Image.Image],
        without_feature: list[Image.Image],
        target: Image.Image,
        strengths: list[float],
    ) -> list[Image.Image]:
        """Add strength * (mean mu of images with a feature - mean mu of images without) to the target."""
        strengths = [STRENGTH.check(s, "strength") for s in strengths]
        direction = attribute_vector(self.encode_means(with_feature), self.encode_means(without_feature))
        z_target = self.encode_means([target])[0]
        return self.decode(torch.stack([z_target + s * direction for s in strengths]))

    @functools.cached_property
    def latent_map(self) -> LatentMap:
        """PCA of the held-out latent means, cached per model."""
        from sklearn.decomposition import PCA

        means = self.encode_means(self.example_images()).numpy()
        pca = PCA(n_components=2, random_state=0).fit(means)
        return LatentMap(pca, pca.transform(means), self.examples.labels)

    def decode_map_point(self, x: float, y: float) -> Image.Image:
        """Decode the latent at PCA coordinates (x, y) (on the plane through the mean of the data)."""
        # Far beyond the data the decoder only saturates; NaN or infinity would decode to garbage.
        x = MAP_COORDINATE.check(x, "x")
        y = MAP_COORDINATE.check(y, "y")
        latent = self.latent_map.pca.inverse_transform(np.array([[x, y]], dtype=np.float64))
        return self.decode(torch.tensor(latent, dtype=torch.float32))[0]


def attribute_vector(with_means: torch.Tensor, without_means: torch.Tensor) -> torch.Tensor:
    """The difference of the two groups' average latent means: the direction that adds the feature."""
    if len(with_means) == 0 or len(without_means) == 0:
        raise ValueError("pick at least one example with the feature and one without")
    return with_means.mean(0) - without_means.mean(0)


class HubVAEPipeline(VAEPipeline):
    """diffusers' AutoencoderKL (e.g. stabilityai/sd-vae-ft-mse): 4 x H/8 x W/8 latents of real photos."""

    def __init__(self, folder: Path, device_choice: DeviceChoice, name: str):
        super().__init__()
        from diffusers import AutoencoderKL

        try:
            model = AutoencoderKL.from_pretrained(folder, torch_dtype=device_choice.dtype)
        except Exception as error:
            raise ModelSourceError(f"{name} is not a loadable AutoencoderKL: {error}") from error
        self.model = model.to(device_choice.device).eval()
        self.name = name
        self.image_size = min(int(model.config.sample_size or 256), 256)  # 256 px keeps CPUs responsive
        self.device_choice = device_choice

    def prepare(self, image: Image.Image) -> Image.Image:
        return centre_square(image, self.image_size)

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode(pixels * 2 - 1).latent_dist.mean

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        return (self.model.decode(latents).sample + 1) / 2


def load_vae(source: str) -> VAEPipeline:
    """A local folder (one written by training/train_vae.py, or an AutoencoderKL) or an allow-listed Hub id."""
    device_choice = select_device()
    folder = resolve_model_folder(source)  # raises ModelSourceError offline or when not allowed
    if (folder / "vae" / "config.json").exists():  # a whole diffusers pipeline: use its VAE
        folder = folder / "vae"
    config_path = folder / "config.json"
    if not config_path.exists():
        raise ModelSourceError(f"{source} has no config.json: not a VAE folder")
    if json.loads(config_path.read_text()).get("model"):  # a folder written by training/train_vae.py
        return TrainedVAEPipeline(folder, device_choice)
    return HubVAEPipeline(folder, device_choice, source)


def load_builtin_vae(weights_name: str) -> TrainedVAEPipeline:
    """A VAE trained here: `vae-faces` or `vae-digits` (folders under weights/)."""
    return TrainedVAEPipeline(repo_weights(weights_name), select_device())


def health_probe(pipeline: TrainedVAEPipeline) -> None:
    """Decode one code: the origin of the latent space."""
    choice = pipeline.device_choice
    with torch.inference_mode():
        image = pipeline.model.decode(torch.zeros(1, pipeline.latent_dim, device=choice.device, dtype=choice.dtype))
    expect_output(image, (1, image.shape[1], pipeline.image_size, pipeline.image_size))


# ----------------------------------------------------------------------------- latent map drawing


# Ten colours that stay distinct for the ten digit classes (Tableau palette).
LABEL_COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


@dataclass
class LatentMap:
    pca: object  # a fitted sklearn PCA with 2 components
    points: np.ndarray  # (N, 2) PCA coordinates of the examples
    labels: list[int] | None
    canvas_size: int = 480
    margin: int = 28
    bounds: tuple[float, float, float, float] = field(init=False)  # x_min, x_max, y_min, y_max

    def __post_init__(self) -> None:
        (x_min, y_min), (x_max, y_max) = self.points.min(0), self.points.max(0)
        pad_x, pad_y = 0.08 * (x_max - x_min + 1e-6), 0.08 * (y_max - y_min + 1e-6)
        self.bounds = (x_min - pad_x, x_max + pad_x, y_min - pad_y, y_max + pad_y)

    def project(self, latents: torch.Tensor) -> np.ndarray:
        """(N, latent_dim) -> (N, 2) PCA coordinates."""
        return self.pca.transform(latents.reshape(len(latents), -1).numpy().astype(np.float64))

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        x_min, x_max, y_min, y_max = self.bounds
        span = self.canvas_size - 2 * self.margin
        return (
            self.margin + (x - x_min) / (x_max - x_min) * span,
            self.margin + (y_max - y) / (y_max - y_min) * span,  # y grows upwards on the map
        )

    def from_pixel(self, px: float, py: float) -> tuple[float, float]:
        """Inverse of `to_pixel`: where a click on the drawn map lands in PCA coordinates."""
        x_min, x_max, y_min, y_max = self.bounds
        span = self.canvas_size - 2 * self.margin
        return (
            x_min + (px - self.margin) / span * (x_max - x_min),
            y_max - (py - self.margin) / span * (y_max - y_min),
        )

    def render(self, path: np.ndarray | None = None, marker: tuple[float, float] | None = None) -> Image.Image:
        """The examples as dots (coloured by label), an optional path A->B and a marked point."""
        canvas = Image.new("RGB", (self.canvas_size, self.canvas_size), "white")
        draw = ImageDraw.Draw(canvas)
        edge = self.canvas_size - self.margin
        draw.rectangle([self.margin, self.margin, edge, edge], outline=(200, 200, 200))
        draw.text((edge - 150, edge + 6), "x: PCA 1, y: PCA 2", fill=(90, 90, 90))
        for index, (x, y) in enumerate(self.points):
            colour = LABEL_COLOURS[self.labels[index] % 10] if self.labels else (70, 110, 200)
            px, py = self.to_pixel(x, y)
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        if self.labels:
            for digit in range(10):
                lx = self.margin + 4 + digit * 24
                draw.rectangle([lx, edge + 8, lx + 8, edge + 16], fill=LABEL_COLOURS[digit])
                draw.text((lx + 11, edge + 6), str(digit), fill=(0, 0, 0))
        if path is not None and len(path) >= 2:
            pixels = [self.to_pixel(x, y) for x, y in path]
            draw.line(pixels, fill=(0, 0, 0), width=3)
            for (px, py), label in ((pixels[0], "A"), (pixels[-1], "B")):
                draw.ellipse([px - 7, py - 7, px + 7, py + 7], fill=(255, 255, 255), outline=(0, 0, 0), width=2)
                draw.text((px - 3, py - 6), label, fill=(0, 0, 0))
        if marker is not None:
            px, py = self.to_pixel(*marker)
            draw.line([px - 9, py, px + 9, py], fill=(220, 0, 0), width=3)
            draw.line([px, py - 9, px, py + 9], fill=(220, 0, 0), width=3)
        return canvas
