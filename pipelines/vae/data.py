"""The VAEs' data: real handwritten digits and DCGAN faces, and fitting any image to what a model expects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from pipelines.gan.faces import truncated_latents

HELD_OUT_DIGITS = 300
DIGITS_SPLIT_SEED = 0
# Faces are drawn from the DCGAN: training and held-out sets use different seeds, so they never overlap.
FACES_TRAIN_SEED = 1000
FACES_HELD_OUT_SEED = 2000
FACES_TRUNCATION = 1.5


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
    from pipelines.core import registry

    seed = FACES_TRAIN_SEED if split == "train" else FACES_HELD_OUT_SEED
    latents = truncated_latents(seed, count, FACES_TRUNCATION)
    batches = []
    for start in range(0, count, batch_size):
        faces = registry.load("gan-faces").generate(latents[start : start + batch_size])
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
