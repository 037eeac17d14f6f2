"""Evaluation: what the FID Inception costs an image, the metrics' own cost, and what a live study costs."""

from __future__ import annotations

import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.timing import format_seconds, median_seconds
from pipelines.core import registry
from pipelines.core.device import select_device
from pipelines.evaluation import inception
from pipelines.evaluation.image_metrics import compare_features
from pipelines.evaluation.options import LIVE_STUDY_IMAGES
from pipelines.evaluation.text_metrics import score_lines

BATCH = inception.BATCH_SIZE


def _once(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def run() -> str:
    from tools.convert_fid_inception import convert

    load_before = os.getloadavg()[0]  # other processes on the cores stretch every figure below
    with tempfile.TemporaryDirectory() as folder:
        conversion = _once(partial(convert, Path(folder) / "fid-inception"))  # the pack's wheel is cached already
        loading = median_seconds(partial(inception.load_fid_inception, Path(folder) / "fid-inception"), repeats=3)
    features = registry.load("fid-inception")
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (BATCH, 3, 299, 299), generator=generator, dtype=torch.uint8)
    one = median_seconds(partial(features.features_of_pixels, batch[:1]), repeats=5, warmup=1)
    many = median_seconds(partial(features.features_of_pixels, batch), repeats=3, warmup=1)
    images = [Image.fromarray(pixels.permute(1, 2, 0).numpy()) for pixels in batch]
    features.features(images)  # now cached
    cached = median_seconds(partial(features.features, images), repeats=5)

    rng = np.random.default_rng(0)
    metric_rows = []
    for size in (200, 500):
        a, b = rng.normal(size=(size, 2048)), rng.normal(size=(size, 2048))
        seconds = median_seconds(partial(compare_features, a, b), repeats=3)
        metric_rows.append(
            f"| FID + precision + recall of two sets of {size} features (median of 3) | {format_seconds(seconds)} |"
        )
    lines = [f"the sea is never still and sentence number {i} is here" for i in range(1000)]
    text = median_seconds(partial(score_lines, lines, list(reversed(lines))), repeats=3)

    from pipelines.evaluation.studies import gan_truncation_study

    images_a_set = LIVE_STUDY_IMAGES.default
    study = gan_truncation_study(images=images_a_set, seed=12345)  # seeds no earlier run cached
    sets = len(study.points) + 2
    rows = [
        f"| conversion: the wheel's TorchScript to safetensors, with the equal-features check (once) "
        f"| {format_seconds(conversion)} |",
        f"| loading the converted network (median of 3) | {format_seconds(loading)} |",
        f"| Inception features, 1 image (median of 5) | {format_seconds(one)} |",
        f"| Inception features, a batch of {BATCH} (median of 3) | {format_seconds(many)} "
        f"({format_seconds(many / BATCH)} an image) |",
        f"| the same {BATCH} images again, from the feature cache (median of 5) | {format_seconds(cached)} |",
        *metric_rows,
        f"| BLEU + ROUGE-1/2/L of 1,000 line pairs (median of 3) | {format_seconds(text)} |",
        f"| a live GAN truncation study, {images_a_set} images a set, {sets} sets, nothing cached (once) "
        f"| {format_seconds(study.seconds)} |",
    ]
    return "\n".join(
        [
            "## Evaluation (FID Inception, metrics, studies)",
            "",
            f"Device: {select_device().label}. The FID Inception reads 299×299 images whatever their size, so an image "
            "costs the same from a 64×64 face or a photo; a study's time is mostly that, plus generating the images "
            "(text-to-image studies: the denoising steps, see the Text → Image section). Load average when the "
            f"section started: {load_before:.1f}, at its end: {os.getloadavg()[0]:.1f} (2 cores).",
            "",
            "| what | figure |",
            "| --- | --- |",
            *rows,
        ]
    )
