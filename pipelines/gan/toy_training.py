"""A GAN small enough to watch learn: an MLP generator and discriminator on 2-D toy data, trained live.

The data: eight tight Gaussians on a ring, a spiral, and seed 003's 2x2 "left diagonal" images (four pixels,
drawn on the plane of their two diagonals). The loop alternates discriminator and generator steps like the
seed's, with three losses: the original minimax loss, the non-saturating loss and a Wasserstein loss with a
gradient penalty. `train_toy_gan` is a generator of snapshots, so a caller can draw the run as it goes and
stop it at any yield. Everything random comes from one `torch.Generator`: the same settings give the same run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.core.building import MODEL_BUILDING
from pipelines.core.limits import SEED
from pipelines.core.training_runs import seeded_init, watch
from pipelines.gan.options import (
    TOY_DATASETS,
    TOY_DISCRIMINATOR_STEPS,
    TOY_LEARNING_RATE,
    TOY_LOSSES,
    TOY_MAX_SECONDS,
    TOY_SAMPLES,
    TOY_STEPS,
)

RING_MODES = 8
RING_RADIUS = 2.0
RING_STD = 0.02
MODE_RADIUS = 0.5  # a sample within this distance of a ring centre is "near" that mode
MODE_SHARE = 0.02  # a mode is covered when at least this share of samples is near it
DIAGONAL_INK, BLANK_INK, PIXEL_NOISE = 0.85, 0.15, 0.05
PLANE_LIMIT = 2.6  # the 2-D datasets and the decision surface live in [-2.6, 2.6]^2
SURFACE_POINTS = 81  # per side of the grid the discriminator is evaluated on
LOG_EVERY = 10  # steps between history records
GRADIENT_PENALTY = 10.0  # lambda of WGAN-GP


def data_dimension(dataset: str) -> int:
    return 4 if dataset == "diagonals" else 2


def ring_centres() -> torch.Tensor:
    """(8, 2): the centres of the ring's Gaussians, evenly spaced on a circle of radius 2."""
    angles = torch.arange(RING_MODES, dtype=torch.float32) * (2 * math.pi / RING_MODES)
    return RING_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)


def sample_real(dataset: str, count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 2) points, or (count, 4) pixel rows (top-left, top-right, bottom-left, bottom-right) for diagonals."""
    if dataset == "ring":
        modes = torch.randint(RING_MODES, (count,), generator=generator)
        return ring_centres()[modes] + RING_STD * torch.randn(count, 2, generator=generator)
    if dataset == "spiral":
        # Two turns from near the centre outwards, with a little noise across the arm.
        t = torch.rand(count, generator=generator)
        angle, radius = 4 * math.pi * t, 0.3 + 1.9 * t
        points = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)
        return points + 0.04 * torch.randn(count, 2, generator=generator)
    if dataset == "diagonals":
        # Ink on the "\" diagonal (top-left and bottom-right), almost none on the other two pixels.
        clean = torch.tensor([DIAGONAL_INK, BLANK_INK, BLANK_INK, DIAGONAL_INK])
        return (clean + PIXEL_NOISE * torch.randn(count, 4, generator=generator)).clamp(0, 1)
    raise ValueError(f"dataset must be one of {', '.join(TOY_DATASETS)} (got {dataset!r}).")


def to_plane(samples: torch.Tensor) -> torch.Tensor:
    """Points to draw: 2-D data as it is; a 2x2 image as (ink on the "\" diagonal, ink on the "/" diagonal)."""
    if samples.shape[1] == 2:
        return samples
    return torch.stack([(samples[:, 0] + samples[:, 3]) / 2, (samples[:, 1] + samples[:, 2]) / 2], dim=1)


def from_plane(points: torch.Tensor, dimension: int) -> torch.Tensor:
    """Inputs for the discriminator at plane points: images whose two diagonals have those inks."""
    if dimension == 2:
        return points
    main, anti = points[:, 0], points[:, 1]
    return torch.stack([main, anti, anti, main], dim=1)


def plane_extent(dataset: str) -> tuple[float, float]:
    return (-0.1, 1.1) if dataset == "diagonals" else (-PLANE_LIMIT, PLANE_LIMIT)


def mlp(inputs: int, hidden: int, outputs: int, layers: int = 3) -> nn.Sequential:
    """`layers` hidden layers of LeakyReLU units."""
    widths = [inputs] + [hidden] * layers
    modules: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        modules += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
    return nn.Sequential(*modules, nn.Linear(widths[-1], outputs))


class ToyGenerator(nn.Module):
    """z (latent_dim) -> a point (2) or four pixels in [0, 1] (diagonals)."""

    def __init__(self, latent_dim: int, hidden: int, dimension: int, pixels: bool):
        super().__init__()
        self.net = mlp(latent_dim, hidden, dimension)
        self.pixels = pixels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        return torch.sigmoid(out) if self.pixels else out


@dataclass(frozen=True)
class GANSettings:
    """One run's choices; `check()` refuses anything outside the limits in pipelines/gan/options.py."""

    dataset: str = "ring"
    loss: str = "non-saturating"
    steps: int = int(TOY_STEPS.default)
    seed: int = 0
    generator_lr: float = TOY_LEARNING_RATE.default
    discriminator_lr: float = TOY_LEARNING_RATE.default
    discriminator_steps: int = 0  # discriminator (critic) updates per generator update; 0 = the loss's usual
    batch_size: int = 256
    hidden: int = 128
    latent_dim: int = 8
    snapshot_every: int = 50  # steps between snapshots (the live plots)

    def check(self) -> GANSettings:
        if self.dataset not in TOY_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(TOY_DATASETS)} (got {self.dataset!r}).")
        if self.loss not in TOY_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(TOY_LOSSES)} (got {self.loss!r}).")
        TOY_STEPS.check(self.steps, "steps")
        SEED.check(self.seed, "seed")
        TOY_LEARNING_RATE.check(self.generator_lr, "generator_lr")
        TOY_LEARNING_RATE.check(self.discriminator_lr, "discriminator_lr")
        TOY_DISCRIMINATOR_STEPS.check(self.discriminator_steps, "discriminator_steps")
        for name, low, high in [
            ("batch_size", 8, 4096),
            ("hidden", 4, 1024),
            ("latent_dim", 1, 256),
            ("snapshot_every", 1, 100_000),
        ]:
            if not (isinstance(getattr(self, name), int) and low <= getattr(self, name) <= high):
                raise ValueError(f"{name} must be a whole number from {low} to {high} (got {getattr(self, name)!r}).")
        return self

    @property
    def critic_steps(self) -> int:
        """Discriminator updates per generator update: a Wasserstein critic must be near its optimum, so 5."""
        if self.discriminator_steps:
            return self.discriminator_steps
        return 5 if self.loss == "wasserstein" else 1


@dataclass
class GANRecord:
    """One logged step. For the two classic losses d_real and d_fake are D's mean probability of "real";
    for the Wasserstein loss they are the critic's mean score (any real number)."""

    step: int
    d_loss: float
    g_loss: float
    d_real: float
    d_fake: float


@dataclass
class DecisionSurface:
    """The discriminator over a grid of the plane: values[i, j] at (xs[j], ys[i])."""

    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray
    probability: bool  # True: D(x) in [0, 1]; False: a Wasserstein critic's unbounded score


@dataclass
class ModeCoverage:
    modes_covered: int
    near_share: float  # share of samples within MODE_RADIUS of some centre
    per_mode: list[float]  # share of samples near each centre

    def meets_target(self) -> bool:
        """The issue's target for the ring: at least 6 of the 8 modes, at least half the samples near one."""
        return self.modes_covered >= 6 and self.near_share >= 0.5


@dataclass
class GANSnapshot:
    step: int
    settings: GANSettings
    history: list[GANRecord]
    real: np.ndarray  # (N, 2 or 4) real data shown beside the fakes
    fake: np.ndarray  # (TOY_SAMPLES, 2 or 4) the generator's samples from a fixed set of z
    surface: DecisionSurface
    seconds: float
    done: bool = False
    stopped_early: str = ""  # why the run ended before its steps ("time limit"), empty otherwise
    coverage: ModeCoverage | None = field(default=None)  # the ring only

    @property
    def real_points(self) -> np.ndarray:
        """The real data on the plane (see `to_plane`)."""
        return to_plane(torch.from_numpy(self.real)).numpy()

    @property
    def fake_points(self) -> np.ndarray:
        return to_plane(torch.from_numpy(self.fake)).numpy()

    def as_json(self) -> dict:
        """What API callers get: the settings, the history, and the generator's samples as [x, y]."""
        result = {
            "dataset": self.settings.dataset,
            "loss": self.settings.loss,
            "steps": self.settings.steps,
            "steps_done": self.step,
            "seed": self.settings.seed,
            "seconds": round(self.seconds, 2),
            "stopped_early": self.stopped_early,
            "samples": np.round(self.fake_points.astype(np.float64), 4).tolist(),
            "history": [asdict(record) for record in self.history],
        }
        if self.settings.dataset == "diagonals":
            result["images"] = np.round(self.fake.astype(np.float64), 4).tolist()  # the four pixels behind each [x, y]
        if self.coverage is not None:
            result["coverage"] = asdict(self.coverage)
        return result


def ring_coverage(samples: np.ndarray | torch.Tensor) -> ModeCoverage:
    """How many of the ring's modes the samples reach, and what share of them lies near any mode."""
    points = torch.as_tensor(samples, dtype=torch.float32)
    distances = torch.cdist(points, ring_centres())  # (N, 8)
    near = distances < MODE_RADIUS
    per_mode = near.float().mean(0)
    return ModeCoverage(
        modes_covered=int((per_mode >= MODE_SHARE).sum()),
        near_share=float(near.any(1).float().mean()),
        per_mode=[round(float(share), 4) for share in per_mode],
    )


def _discriminator_loss(
    loss: str, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The discriminator's loss and its mean outputs on real and fake (probabilities, or critic scores)."""
    real_out, fake_out = discriminator(real), discriminator(fake)
    if loss == "wasserstein":
        # Penalise the critic's gradient norm away from 1 on points between real and fake (WGAN-GP).
        mix = torch.rand(len(real), 1, generator=generator)
        between = (mix * real + (1 - mix) * fake).requires_grad_(True)
        (gradients,) = torch.autograd.grad(discriminator(between).sum(), between, create_graph=True)
        penalty = ((gradients.norm(dim=1) - 1) ** 2).mean()
        d_loss = fake_out.mean() - real_out.mean() + GRADIENT_PENALTY * penalty
        return d_loss, real_out.mean(), fake_out.mean()
    # -log D(real) - log(1 - D(fake)), written on logits: log D = -softplus(-logit), log(1 - D) = -softplus(logit).
    d_loss = F.softplus(-real_out).mean() + F.softplus(fake_out).mean()
    return d_loss, torch.sigmoid(real_out).mean(), torch.sigmoid(fake_out).mean()


def _generator_loss(loss: str, fake_out: torch.Tensor) -> torch.Tensor:
    if loss == "minimax":
        return -F.softplus(fake_out).mean()  # minimise log(1 - D(G(z))): flat where D is sure it is fake
    if loss == "non-saturating":
        return F.softplus(-fake_out).mean()  # minimise -log D(G(z)): steep where D is sure it is fake
    return -fake_out.mean()  # Wasserstein: raise the critic's score of the fakes


def _surface(discriminator: nn.Module, dataset: str, probability: bool) -> DecisionSurface:
    low, high = plane_extent(dataset)
    axis = torch.linspace(low, high, SURFACE_POINTS)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
    with torch.no_grad():
        out = discriminator(from_plane(points, data_dimension(dataset))).reshape(SURFACE_POINTS, SURFACE_POINTS)
    values = torch.sigmoid(out) if probability else out
    return DecisionSurface(axis.numpy(), axis.numpy(), values.numpy(), probability)


class ToyGANRun:
    """The networks, optimisers and history of one run; `advance` trains up to a given step."""

    def __init__(self, settings: GANSettings):
        self.settings = settings = settings.check()
        self.random = torch.Generator().manual_seed(int(settings.seed))
        dimension = data_dimension(settings.dataset)
        pixels = settings.dataset == "diagonals"
        with MODEL_BUILDING:  # not while a model loads in another thread (its loader patches torch.nn.init)
            self.g_net = seeded_init(ToyGenerator(settings.latent_dim, settings.hidden, dimension, pixels), self.random)
            self.d_net = seeded_init(mlp(dimension, settings.hidden, 1), self.random)
        betas = (0.5, 0.9) if settings.loss == "wasserstein" else (0.5, 0.999)
        self.g_optimizer = torch.optim.Adam(self.g_net.parameters(), lr=settings.generator_lr, betas=betas)
        self.d_optimizer = torch.optim.Adam(self.d_net.parameters(), lr=settings.discriminator_lr, betas=betas)
        # The same z and real points at every snapshot, so the picture changes only because the networks do.
        self.fixed_z = torch.randn(TOY_SAMPLES, settings.latent_dim, generator=self.random)
        self.shown_real = sample_real(settings.dataset, TOY_SAMPLES, self.random).numpy()
        self.step = 0
        self.history: list[GANRecord] = []

    def train_step(self) -> None:
        """The seed's loop: discriminator step(s) on a real and a fake batch, then one generator step."""
        settings, random = self.settings, self.random
        for _ in range(settings.critic_steps):
            real = sample_real(settings.dataset, settings.batch_size, random)
            z = torch.randn(settings.batch_size, settings.latent_dim, generator=random)
            fake = self.g_net(z).detach()  # the discriminator's step must not move the generator
            d_loss, d_real, d_fake = _discriminator_loss(settings.loss, self.d_net, real, fake, random)
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optimizer.step()
        z = torch.randn(settings.batch_size, settings.latent_dim, generator=random)
        g_loss = _generator_loss(settings.loss, self.d_net(self.g_net(z)))
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()  # also fills the discriminator's gradients, which its next zero_grad clears
        self.g_optimizer.step()
        self.step += 1
        if self.step % LOG_EVERY == 0 or self.step == settings.steps:
            values = (d_loss.item(), g_loss.item(), d_real.item(), d_fake.item())
            self.history.append(GANRecord(self.step, *values))

    def snapshot(self, seconds: float, done: bool = False, stopped_early: str = "") -> GANSnapshot:
        with torch.no_grad():
            fake = self.g_net(self.fixed_z).numpy()
            surface = _surface(self.d_net, self.settings.dataset, self.settings.loss != "wasserstein")
        coverage = ring_coverage(fake) if self.settings.dataset == "ring" else None
        history = list(self.history)
        return GANSnapshot(
            self.step, self.settings, history, self.shown_real, fake, surface, seconds, done, stopped_early, coverage
        )


def train_toy_gan(
    settings: GANSettings, max_seconds: float = TOY_MAX_SECONDS, clock: Callable[[], float] = time.monotonic
) -> Iterator[GANSnapshot]:
    """Train, yielding a snapshot at step 0, every `snapshot_every` steps and at the end (done=True).

    The run ends early, saying so in its last snapshot, after `max_seconds`; closing the iterator stops it.
    """
    settings = settings.check()
    return watch(lambda: ToyGANRun(settings), settings.steps, settings.snapshot_every, max_seconds, clock)


def final_snapshot(settings: GANSettings, max_seconds: float = TOY_MAX_SECONDS) -> GANSnapshot:
    """Run to the end without watching: the last snapshot."""
    *_, last = train_toy_gan(settings, max_seconds)
    return last


# The defaults' loss with a generator that learns 10x faster than its discriminator: each generator step moves
# all of z to the spot the discriminator currently rates most real, and the discriminator is too slow to spread
# the points out again, so they pile onto one mode and hop between modes (mode collapse).
MODE_COLLAPSE = GANSettings(generator_lr=0.002, discriminator_lr=0.0002)
