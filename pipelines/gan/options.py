"""What a user may ask of the DCGAN face pipeline: its limits and defaults, read by the tab and the pipeline."""

from __future__ import annotations

from pipelines.core.limits import Range

FACES = Range(1, 64, 16)  # faces in one sample
FRAMES = Range(2, 64, 12)  # frames of an interpolation
TRUNCATION = Range(0.1, 3.0, 1.5, step=0.05, whole=False)  # in standard deviations; 3.0 is almost a plain normal
STRENGTH = Range(-4.0, 4.0, 2.0, step=0.1, whole=False)  # multiples of a feature vector added to a face
MAX_DATASET_FACES = 1_000_000  # latents drawn at once, e.g. for the face VAE's training set
