"""A VAE with a 2-D latent space, trained live on the handwritten digits so the latent map fills in as it learns.

The model is the repo's ConvVAE at 16x16 with two latent dimensions. Each step estimates the loss
reconstruction + beta * KL on a batch with one reparameterised sample z = mu + sigma * eps; beta = 1 is the
negative ELBO, beta = 0 a plain autoencoder, beta > 1 a beta-VAE. `train_vae_live` is a generator of snapshots;
everything random comes from one `torch.Generator`, so the same settings give the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.core.building import MODEL_BUILDING
from pipelines.core.limits import SEED
from pipelines.core.training_runs import seeded_init, watch
from pipelines.vae.data import digits_dataset
from pipelines.vae.model import ConvVAE, ConvVAEConfig, kl_divergence, reparameterise
from pipelines.vae.options import LIVE_BETA, LIVE_LEARNING_RATE, LIVE_MAX_SECONDS, LIVE_STEPS

IMAGE_SIZE = 16
MODEL_CONFIG = ConvVAEConfig(image_size=IMAGE_SIZE, channels=1, latent_dim=2, features=(16, 32))
PRIOR_SAMPLES = 32  # decoded from the same z at every snapshot, so they visibly improve
SHOWN_DIGITS = 8  # held-out digits shown with their reconstructions
LOG_EVERY = 10


@dataclass(frozen=True)
class VAESettings:
    beta: float = LIVE_BETA.default
    steps: int = int(LIVE_STEPS.default)
    seed: int = 0
    learning_rate: float = LIVE_LEARNING_RATE.default
    batch_size: int = 64
    snapshot_every: int = 50

    def check(self) -> VAESettings:
        LIVE_BETA.check(self.beta, "beta")
        LIVE_STEPS.check(self.steps, "steps")
        SEED.check(self.seed, "seed")
        LIVE_LEARNING_RATE.check(self.learning_rate, "learning_rate")
        for name, low, high in [("batch_size", 8, 1024), ("snapshot_every", 1, 100_000)]:
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= high):
                raise ValueError(f"{name} must be a whole number from {low} to {high} (got {value!r}).")
        return self


@dataclass
class VAERecord:
    """One logged step: the batch's mean loss and its two terms (nats per image)."""

    step: int
    loss: float
    reconstruction: float
    kl: float


@dataclass
class VAESnapshot:
    step: int
    settings: VAESettings
    history: list[VAERecord]
    latent_means: np.ndarray  # (held-out digits, 2): where the encoder puts each one
    labels: np.ndarray  # their digit classes
    prior_samples: np.ndarray  # (PRIOR_SAMPLES, 16, 16) in [0, 1], decoded from fixed z ~ N(0, I)
    originals: np.ndarray  # (SHOWN_DIGITS, 16, 16)
    reconstructions: np.ndarray  # (SHOWN_DIGITS, 16, 16): decoded latent means
    held_out_reconstruction: float  # mean over held-out digits, decoding the latent means
    held_out_kl: float
    seconds: float
    done: bool = False
    stopped_early: str = ""

    def as_json(self) -> dict:
        return {
            "beta": self.settings.beta,
            "steps": self.settings.steps,
            "steps_done": self.step,
            "seed": self.settings.seed,
            "seconds": round(self.seconds, 2),
            "stopped_early": self.stopped_early,
            "history": [asdict(record) for record in self.history],
            "held_out": {"reconstruction": self.held_out_reconstruction, "kl": self.held_out_kl},
            "latent_means": np.round(self.latent_means.astype(np.float64), 4).tolist(),
            "labels": self.labels.tolist(),
        }


class LiveVAERun:
    """The model, optimiser, data and history of one run."""

    def __init__(self, settings: VAESettings):
        self.settings = settings.check()
        self.random = torch.Generator().manual_seed(int(settings.seed))
        with MODEL_BUILDING:  # not while a model loads in another thread (its loader patches torch.nn.init)
            self.model = seeded_init(ConvVAE(MODEL_CONFIG), self.random)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.learning_rate)
        self.train_images = digits_dataset("train", IMAGE_SIZE).images
        held_out = digits_dataset("held_out", IMAGE_SIZE)
        self.held_out_images, self.held_out_labels = held_out.images, np.array(held_out.labels)
        self.prior_z = torch.randn(PRIOR_SAMPLES, MODEL_CONFIG.latent_dim, generator=self.random)
        self.step = 0
        self.history: list[VAERecord] = []

    def train_step(self) -> None:
        self.model.train()
        rows = torch.randint(len(self.train_images), (self.settings.batch_size,), generator=self.random)
        images = self.train_images[rows]
        mu, logvar = self.model.encode(images)
        z = reparameterise(mu, logvar, self.random)
        logits = self.model.decode_logits(z)
        reconstruction = F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(1).mean()
        kl = kl_divergence(mu, logvar).mean()
        loss = reconstruction + self.settings.beta * kl
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        if self.step % LOG_EVERY == 0 or self.step == self.settings.steps:
            self.history.append(VAERecord(self.step, loss.item(), reconstruction.item(), kl.item()))

    def snapshot(self, seconds: float, done: bool = False, stopped_early: str = "") -> VAESnapshot:
        self.model.eval()  # batch norm from its running averages: the picture does not depend on a batch
        with torch.no_grad():
            mu, logvar = self.model.encode(self.held_out_images)
            logits = self.model.decode_logits(mu)
            reconstruction = F.binary_cross_entropy_with_logits(logits, self.held_out_images, reduction="none")
            decoded = torch.sigmoid(logits[:SHOWN_DIGITS, 0])
            prior = self.model.decode(self.prior_z)[:, 0]
        return VAESnapshot(
            step=self.step,
            settings=self.settings,
            history=list(self.history),
            latent_means=mu.numpy(),
            labels=self.held_out_labels,
            prior_samples=prior.numpy(),
            originals=self.held_out_images[:SHOWN_DIGITS, 0].numpy(),
            reconstructions=decoded.numpy(),
            held_out_reconstruction=float(reconstruction.flatten(1).sum(1).mean()),
            held_out_kl=float(kl_divergence(mu, logvar).mean()),
            seconds=seconds,
            done=done,
            stopped_early=stopped_early,
        )


def train_vae_live(
    settings: VAESettings, max_seconds: float = LIVE_MAX_SECONDS, clock: Callable[[], float] = time.monotonic
) -> Iterator[VAESnapshot]:
    """Train, yielding a snapshot at step 0, every `snapshot_every` steps and at the end (done=True).

    The run ends early, saying so in its last snapshot, after `max_seconds`; closing the iterator stops it.
    """
    settings = settings.check()
    return watch(lambda: LiveVAERun(settings), settings.steps, settings.snapshot_every, max_seconds, clock)
