"""What a user may ask of the DCGAN face pipeline: its limits and defaults, read by the tab and the pipeline."""

from __future__ import annotations

from pipelines.core.limits import Range

FACES = Range(1, 64, 16)  # faces in one sample
FRAMES = Range(2, 64, 12)  # frames of an interpolation
TRUNCATION = Range(0.1, 3.0, 1.5, step=0.05, whole=False)  # in standard deviations; 3.0 is almost a plain normal
STRENGTH = Range(-4.0, 4.0, 2.0, step=0.1, whole=False)  # multiples of a feature vector added to a face
MAX_DATASET_FACES = 1_000_000  # latents drawn at once, e.g. for the face VAE's training set

# The toy GAN that trains live (pipelines/gan/toy_training.py).
TOY_DATASETS = ("ring", "spiral", "diagonals")
TOY_LOSSES = ("minimax", "non-saturating", "wasserstein")
TOY_STEPS = Range(10, 5000, 2000, step=10)  # generator steps (each after its discriminator steps)
TOY_LEARNING_RATE = Range(0.00001, 0.01, 0.0005, step=0.00001, whole=False)
TOY_DISCRIMINATOR_STEPS = Range(0, 10, 0)  # per generator step; 0 = the loss's usual (1, or 5 for Wasserstein)
TOY_SAMPLES = 1000  # generator samples returned at the end (the coverage measure reads them)
TOY_MAX_SECONDS = 90.0  # a run stops here whatever its steps, so one user cannot hold a core for long
