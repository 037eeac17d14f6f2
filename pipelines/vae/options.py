"""What a user may ask of the VAE pipelines: their limits and defaults, read by the tab and the pipelines."""

from __future__ import annotations

from pipelines.core.limits import Range

DEFAULT_MODEL = "vae-faces"  # a registry id
FRAMES = Range(2, 64, 10)  # frames of an interpolation
SAMPLES = Range(1, 64, 16)  # samples from the prior
STRENGTH = Range(-4.0, 4.0, 2.0, step=0.1, whole=False)  # multiples of an attribute vector
MAP_COORDINATE = Range(-1000.0, 1000.0, 0.0, step=0.01, whole=False)  # latent-map points, in PCA units
INTERPOLATION_METHODS = ("slerp", "lerp")

# The small VAE that trains live on the digits (pipelines/vae/live_training.py).
LIVE_BETA = Range(0.0, 8.0, 1.0, step=0.1, whole=False)  # weight of the KL term: 1 is the ELBO, 0 an autoencoder
LIVE_STEPS = Range(20, 4000, 1000, step=20)
LIVE_LEARNING_RATE = Range(0.0001, 0.01, 0.002, step=0.0001, whole=False)
LIVE_MAX_SECONDS = 90.0  # a run stops here whatever its steps
