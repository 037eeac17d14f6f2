"""The convolutional VAE trained here: encoder, reparameterisation trick, decoder and the ELBO.

The encoder maps an image to the mean and log-variance of a Gaussian over latent codes; training samples
z = mu + sigma * eps (the reparameterisation trick) and maximises the ELBO = reconstruction - beta * KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


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
