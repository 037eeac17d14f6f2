"""VAEs trained here: encode + decode latency for 1 and 16 images, and interpolation frames per second."""

from __future__ import annotations

from functools import partial

import torch

from benchmarks.timing import format_seconds, median_seconds
from pipelines.core import registry
from pipelines.core.device import select_device

INTERPOLATION_FRAMES = 16


def run() -> str:
    rows = []
    for name in ("vae-faces", "vae-digits"):
        pipeline = registry.load(name)
        examples = pipeline.example_images()
        first, first_16 = examples[:1], examples[:16]
        one = median_seconds(partial(pipeline.reconstruct, first), repeats=20, warmup=3)
        sixteen = median_seconds(partial(pipeline.reconstruct, first_16), repeats=10, warmup=2)
        walk = median_seconds(
            partial(pipeline.interpolate, examples[0], examples[1], INTERPOLATION_FRAMES), repeats=10, warmup=2
        )
        # Small convolutions can suffer from thread hand-offs when other processes share the cores.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        one_thread = median_seconds(partial(pipeline.reconstruct, first), repeats=20, warmup=3)
        torch.set_num_threads(threads)
        size = f"{pipeline.image_size}×{pipeline.image_size}"
        rows += [
            f"| {name} ({size}, {pipeline.latent_dim}-d) | encode + decode 1 image (median of 20) "
            f"| {format_seconds(one)} |",
            f"| {name} | the same with 1 torch thread instead of {threads} (median of 20) "
            f"| {format_seconds(one_thread)} |",
            f"| {name} | encode + decode 16 images in one call (median of 10) | {format_seconds(sixteen)} "
            f"({format_seconds(sixteen / 16)} an image) |",
            f"| {name} | interpolation, {INTERPOLATION_FRAMES} frames: encode 2, decode {INTERPOLATION_FRAMES} "
            f"(median of 10) | {format_seconds(walk)} ({INTERPOLATION_FRAMES / walk:.0f} frames/s) |",
        ]
    return "\n".join(
        [
            "## VAE Interpolation (ConvVAEs trained here)",
            "",
            f"Device: {select_device().label}. Times include fitting PIL inputs to the model and converting "
            "outputs to PIL images; the models are loaded before timing.",
            "",
            "| model | what | median |",
            "| --- | --- | --- |",
            *rows,
        ]
    )
