"""What travels between the app and the deployments: tensors and images as safetensors bytes, never pickles.

A body is one safetensors file: named tensors, plus string metadata. Images travel as their exact uint8
pixels, so a served image is the same image, bit for bit, as the one the in-process pipeline returns.
"""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

CONTENT_TYPE = "application/vnd.safetensors"


def pack(tensors: dict[str, torch.Tensor], **metadata: object) -> bytes:
    """Tensors and JSON-able metadata (each value stored as JSON text) as one safetensors body."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    return save_tensors(tensors, metadata={key: json.dumps(value) for key, value in metadata.items()})


def unpack(body: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    """The inverse of `pack`: (tensors, metadata)."""
    if len(body) < 8:
        raise ValueError("not a safetensors body: shorter than its header")
    (header_length,) = struct.unpack("<Q", body[:8])
    header = json.loads(body[8 : 8 + header_length])
    metadata = {key: json.loads(value) for key, value in header.get("__metadata__", {}).items()}
    return load_tensors(body), metadata


def images_to_tensor(images: list[Image.Image]) -> tuple[torch.Tensor, str]:
    """Equal-sized images of one mode -> ((N, H, W, C) uint8 pixels, mode)."""
    modes = {image.mode for image in images}
    if not modes <= {"L", "RGB", "RGBA"}:
        raise ValueError(f"images of mode {modes} do not travel as plain pixels")
    if len(modes) != 1 or len({image.size for image in images}) != 1:
        raise ValueError("images travel together only when they share one size and one mode")
    arrays = [np.asarray(image) for image in images]
    pixels = np.stack([a if a.ndim == 3 else a[:, :, None] for a in arrays])
    return torch.from_numpy(pixels), modes.pop()


def tensor_to_images(pixels: torch.Tensor, mode: str) -> list[Image.Image]:
    """The inverse of `images_to_tensor`."""
    images = [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a) for a in pixels.numpy()]
    if any(image.mode != mode for image in images):  # uint8 arrays of 1, 3 or 4 channels: L, RGB, RGBA
        raise ValueError(f"pixels of mode {mode!r} cannot travel as plain uint8 arrays")
    return images


def pack_images(images: list[Image.Image], **metadata: object) -> bytes:
    if not images:
        return pack({}, mode="", count=0, **metadata)
    pixels, mode = images_to_tensor(images)
    return pack({"pixels": pixels}, mode=mode, count=len(images), **metadata)


def unpack_images(body: bytes) -> tuple[list[Image.Image], dict]:
    tensors, metadata = unpack(body)
    images = tensor_to_images(tensors["pixels"], metadata["mode"]) if metadata.get("count") else []
    return images, metadata


def to_text(body: bytes) -> str:
    """Binary bodies inside JSON events (a streamed generation's last event)."""
    return base64.b64encode(body).decode("ascii")


def from_text(text: str) -> bytes:
    return base64.b64decode(text)
