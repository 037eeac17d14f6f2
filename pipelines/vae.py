"""Variational autoencoders: a small convolutional VAE trained here, and diffusers' AutoencoderKL.

The encoder maps an image to the mean and log-variance of a Gaussian over latent codes; training samples
z = mu + sigma * eps (the reparameterisation trick) and maximises the ELBO = reconstruction - beta * KL.
Here we walk between the latent means of two images, map the latent space in 2-D, add attribute
vectors and decode samples from the prior N(0, I).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageOps
from torch import nn

from pipelines.batching import BatchingRunner
from pipelines.device import DeviceChoice, select_device
from pipelines.gan import slerp, truncated_latents
from pipelines.limits import checked_number
from pipelines.weights import ModelSourceError, repo_weights, resolve_model_folder

TRAINED_MODELS = {"faces": "vae-faces", "digits": "vae-digits"}
MAX_FRAMES = 64
MAX_SAMPLES = 64
MAX_MAP_COORDINATE = 1000.0  # latent-map points accepted by decode_map_point, in PCA units
HELD_OUT_DIGITS = 300
DIGITS_SPLIT_SEED = 0
# Faces are drawn from the DCGAN: training and held-out sets use different seeds, so they never overlap.
FACES_TRAIN_SEED = 1000
FACES_HELD_OUT_SEED = 2000
FACES_TRUNCATION = 1.5


# ----------------------------------------------------------------------------- the model


@dataclass
class ConvVAEConfig:
    image_size: int = 64
    channels: int = 3
    latent_dim: int = 32
    features: tuple[int, ...] = (32, 64, 128, 192)  # one stride-2 convolution per entry

    @property
    def bottleneck_size(self) -> int:
        return self.image_size // 2 ** len(self.features)


class ConvVAE(nn.Module):
    """Encoder: image -> (mu, logvar); decoder: z -> pixel logits (sigmoid gives [0, 1])."""

    def __init__(self, config: ConvVAEConfig):
        super().__init__()
        self.config = config
        widths = [config.channels, *config.features]
        encoder: list[nn.Module] = []
        for inputs, outputs in zip(widths[:-1], widths[1:]):
            encoder += [nn.Conv2d(inputs, outputs, 4, 2, 1), nn.BatchNorm2d(outputs), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        flat = config.features[-1] * config.bottleneck_size**2
        self.to_mu = nn.Linear(flat, config.latent_dim)
        self.to_logvar = nn.Linear(flat, config.latent_dim)

        self.from_latent = nn.Linear(config.latent_dim, flat)
        decoder: list[nn.Module] = []
        reversed_widths = widths[::-1]  # e.g. 192, 128, 64, 32, 3
        for inputs, outputs in zip(reversed_widths[:-2], reversed_widths[1:-1]):
            decoder += [nn.ConvTranspose2d(inputs, outputs, 4, 2, 1), nn.BatchNorm2d(outputs), nn.ReLU()]
        decoder.append(nn.ConvTranspose2d(reversed_widths[-2], config.channels, 4, 2, 1))
        self.decoder = nn.Sequential(*decoder)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) in [0, 1] -> mu, logvar, each (B, latent_dim)."""
        hidden = self.encoder(images * 2 - 1)
        return self.to_mu(hidden), self.to_logvar(hidden).clamp(-30, 20)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, H, W) logits."""
        side = self.config.bottleneck_size
        hidden = F.relu(self.from_latent(z)).view(len(z), self.config.features[-1], side, side)
        return self.decoder(hidden)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(images)
        z = reparameterise(mu, logvar)
        return self.decode_logits(z), mu, logvar


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps: the randomness sits in eps, so gradients flow into mu and sigma."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per example, summed over latent dimensions: (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)


@dataclass
class ELBOTerms:
    loss: torch.Tensor  # mean over the batch of reconstruction + beta * KL (the negative ELBO when beta=1)
    reconstruction: torch.Tensor  # mean per-image binary cross-entropy, summed over pixels
    kl: torch.Tensor  # mean per-image KL


def elbo_loss(model: ConvVAE, images: torch.Tensor, beta: float = 1.0) -> ELBOTerms:
    """One stochastic estimate of the negative ELBO for a batch of images in [0, 1]."""
    logits, mu, logvar = model(images)
    reconstruction = F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(1)
    kl = kl_divergence(mu, logvar)
    return ELBOTerms((reconstruction + beta * kl).mean(), reconstruction.mean(), kl.mean())


# ----------------------------------------------------------------------------- datasets


@dataclass
class ImageDataset:
    images: torch.Tensor  # (N, C, H, W) in [0, 1]
    labels: list[int] | None = None  # digit classes; faces have none


def digits_to_tensor(size: int = 32) -> tuple[torch.Tensor, np.ndarray]:
    """All 1,797 sklearn digits (8x8, 0..16) upscaled bilinearly to size x size in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    large = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return large.clamp(0, 1), digits.target


def digits_dataset(split: str, size: int = 32) -> ImageDataset:
    """'train' or 'held_out': a fixed shuffle keeps the last HELD_OUT_DIGITS digits for evaluation."""
    images, labels = digits_to_tensor(size)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    chosen = order[:-HELD_OUT_DIGITS] if split == "train" else order[-HELD_OUT_DIGITS:]
    return ImageDataset(images[chosen], [int(labels[i]) for i in chosen])


def faces_dataset(split: str, count: int, batch_size: int = 256) -> ImageDataset:
    """Faces sampled from the pretrained DCGAN with fixed seeds: synthetic data to train another model."""
    from pipelines.gan import face_pipeline

    seed = FACES_TRAIN_SEED if split == "train" else FACES_HELD_OUT_SEED
    latents = truncated_latents(seed, count, FACES_TRUNCATION)
    batches = []
    for start in range(0, count, batch_size):
        faces = face_pipeline().generate(latents[start : start + batch_size])
        batches.append(torch.stack([pil_to_tensor(face) for face in faces]))
    return ImageDataset(torch.cat(batches))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL (RGB or L) -> (C, H, W) float in [0, 1]."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy())


def tensor_to_images(images: torch.Tensor) -> list[Image.Image]:
    """(N, C, H, W) in [0, 1] -> N PIL images (RGB, or L for one channel)."""
    pixels = (images.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    if pixels.shape[1] == 1:
        return [Image.fromarray(p[0], mode="L") for p in pixels]
    return [Image.fromarray(p.transpose(1, 2, 0)) for p in pixels]


def pixel_upscale(image: Image.Image, factor: int) -> Image.Image:
    """Enlarge by repeating pixels, which `undo_pixel_upscale` can reverse exactly."""
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def undo_pixel_upscale(image: Image.Image, size: int) -> Image.Image | None:
    """The size x size original of an image made by `pixel_upscale`, or None if it is not one."""
    if image.width != image.height or image.width % size:
        return None
    factor = image.width // size
    small = image.reduce(factor) if factor > 1 else image.copy()
    if factor > 1 and pixel_upscale(small, factor).tobytes() != image.tobytes():
        return None
    return small


def centre_square(image: Image.Image, size: int) -> Image.Image:
    """Crop the largest centred square and resize it: how uploaded photos are fitted to the model."""
    return ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.LANCZOS)


def fit_digit(image: Image.Image, size: int) -> Image.Image:
    """A drawn or uploaded digit -> white ink on black, cropped to its ink, centred like sklearn's digits."""
    if image.mode in ("RGBA", "LA", "P"):  # a sketchpad's transparent background counts as paper
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, "white")
        image = Image.alpha_composite(paper, rgba)
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if grey.mean() > 0.5:  # dark ink on light paper: flip to the dataset's light-on-dark
        grey = 1.0 - grey
    ink = np.argwhere(grey > 0.2)
    if len(ink):
        (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
        grey = grey[top:bottom, left:right]
    side = int(max(grey.shape) * 1.15) + 1  # sklearn's digits leave a thin border
    canvas = np.zeros((side, side), dtype=np.float32)
    y, x = (side - grey.shape[0]) // 2, (side - grey.shape[1]) // 2
    canvas[y : y + grey.shape[0], x : x + grey.shape[1]] = grey
    # Through 8x8 first, like the dataset, so strokes come out with its thickness and blur.
    eight = Image.fromarray((canvas * 255).astype(np.uint8)).resize((8, 8), Image.Resampling.BOX)
    small = torch.from_numpy(np.asarray(eight, dtype=np.float32) / 255.0)[None, None]
    large = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return tensor_to_images(large.clamp(0, 1))[0]


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
        self._encoder = BatchingRunner(self._run_encoder, max_rows=4 * MAX_FRAMES)
        self._decoder = BatchingRunner(self._run_decoder, max_rows=4 * MAX_FRAMES)

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
        self, image_a: Image.Image, image_b: Image.Image, frames: int = 16, method: str = "slerp"
    ) -> Interpolation:
        """Decode `frames` points on the path between the latent means of two images (ends included)."""
        frames = checked_number(frames, "frames", 2, MAX_FRAMES)
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
    raise ValueError(f"method must be 'lerp' or 'slerp', got {method!r}")


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

    def sample_prior(self, seed: int, count: int = 16) -> list[Image.Image]:
        """Decode z ~ N(0, I): the same seed gives the same images."""
        count = checked_number(count, "count", 1, MAX_SAMPLES)
        generator = torch.Generator().manual_seed(checked_number(seed, "seed", 0, 2**32 - 1))
        return self.decode(torch.randn(count, self.latent_dim, generator=generator))

    def attribute_edit(
        self,
        with_feature: list[Image.Image],
        without_feature: list[Image.Image],
        target: Image.Image,
        strengths: list[float],
    ) -> list[Image.Image]:
        """Add strength * (mean mu of images with a feature - mean mu of images without) to the target."""
        strengths = [checked_number(s, "strength", -10.0, 10.0, whole=False) for s in strengths]
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
        x = checked_number(x, "x", -MAX_MAP_COORDINATE, MAX_MAP_COORDINATE, whole=False)
        y = checked_number(y, "y", -MAX_MAP_COORDINATE, MAX_MAP_COORDINATE, whole=False)
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


@functools.cache
def load_vae(source: str) -> VAEPipeline:
    """'faces' or 'digits' (trained here), a local folder (ours or an AutoencoderKL), or an allow-listed Hub id."""
    device_choice = select_device()
    if source in TRAINED_MODELS:
        return TrainedVAEPipeline(repo_weights(TRAINED_MODELS[source]), device_choice)
    folder = resolve_model_folder(source)  # raises ModelSourceError offline or when not allowed
    if (folder / "vae" / "config.json").exists():  # a whole diffusers pipeline: use its VAE
        folder = folder / "vae"
    config_path = folder / "config.json"
    if not config_path.exists():
        raise ModelSourceError(f"{source} has no config.json: not a VAE folder")
    if json.loads(config_path.read_text()).get("model"):  # a folder written by training/train_vae.py
        return TrainedVAEPipeline(folder, device_choice)
    return HubVAEPipeline(folder, device_choice, source)


# ----------------------------------------------------------------------------- latent map drawing


# Ten colours that stay distinct for the ten digit classes (Tableau palette).
LABEL_COLOURS = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


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
