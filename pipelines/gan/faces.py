"""Pretrained DCGAN face generator: sampling, truncation, interpolation and latent arithmetic.

The weights come from the `gan-face-generate` offline pack: a DCGAN trained on DigiFace-1M, a synthetic
face dataset. Only the generator was published, so there is no discriminator to show.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from pipelines.core.batching import RequestBatcher
from pipelines.core.device import DeviceChoice, select_device
from pipelines.core.health import expect_output
from pipelines.core.imaging import tensor_to_pil
from pipelines.core.limits import SEED, checked_number
from pipelines.core.weights import GAN_FACES_PACK, ModelSourceError, pack_file
from pipelines.gan.options import FACES, FRAMES, MAX_DATASET_FACES, STRENGTH, TRUNCATION

LATENT_DIM = 100
IMAGE_SIZE = 64


class DCGANGenerator(nn.Module):
    """The classic DCGAN generator: z (100x1x1) -> 64x64 RGB through five transposed convolutions.

    Parameter names (`main.0.weight`, ...) match the pack's checkpoint.
    """

    def __init__(self, latent_dim: int = LATENT_DIM, features: int = 64, channels: int = 3):
        super().__init__()

        def up(inputs: int, outputs: int, stride: int, padding: int) -> list[nn.Module]:
            return [
                nn.ConvTranspose2d(inputs, outputs, 4, stride, padding, bias=False),
                nn.BatchNorm2d(outputs),
                nn.ReLU(True),
            ]

        self.main = nn.Sequential(
            *up(latent_dim, features * 8, 1, 0),  # -> 512 x 4 x 4
            *up(features * 8, features * 4, 2, 1),  # -> 256 x 8 x 8
            *up(features * 4, features * 2, 2, 1),  # -> 128 x 16 x 16
            *up(features * 2, features, 2, 1),  # -> 64 x 32 x 32
            nn.ConvTranspose2d(features, channels, 4, 2, 1, bias=False),  # -> 3 x 64 x 64
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


def load_face_generator(device: torch.device, dtype: torch.dtype) -> DCGANGenerator:
    """The pack's generator on a device, in a dtype."""
    weights_path = pack_file(GAN_FACES_PACK, "weights.tar")
    try:
        checkpoint = torch.load(weights_path, weights_only=True, map_location="cpu")
        state = checkpoint["netG_state_dict"]
    except Exception as error:
        raise ModelSourceError(f"The DCGAN weights at {weights_path} could not be read: {error}") from error
    generator = DCGANGenerator()
    generator.load_state_dict(state)
    # channels_last: faster transposed convolutions on CPU, for one face and for batches, with the same pixels.
    return generator.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval()


def truncated_latents(seed: int, count: int, truncation: float) -> torch.Tensor:
    """(count, 100, 1, 1) latents from a normal truncated to [-truncation, truncation].

    Rows are drawn one after another from one seeded generator, so face i of a seed is the same
    whatever the count: "seed 42" shows the same first face to everyone.
    """
    seed = SEED.check(seed, "seed")
    count = checked_number(count, "count", 1, MAX_DATASET_FACES)
    truncation = TRUNCATION.check(truncation, "truncation")
    generator = torch.Generator().manual_seed(seed)
    rows = [
        nn.init.trunc_normal_(torch.empty(LATENT_DIM), a=-truncation, b=truncation, generator=generator)
        for _ in range(count)
    ]
    return torch.stack(rows).view(count, LATENT_DIM, 1, 1)


def slerp(z_a: torch.Tensor, z_b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of two latents for each t in [0, 1] -> (len(t), *z_a.shape).

    Gaussian latents live near a sphere of radius sqrt(dim); a straight line between two of them
    cuts through the low-norm middle the generator rarely saw, while the arc stays on the shell.
    """
    a, b = z_a.flatten().double(), z_b.flatten().double()
    cos_angle = torch.dot(a, b) / (a.norm() * b.norm())
    angle = torch.arccos(cos_angle.clamp(-1.0, 1.0))
    t = t.double().view(-1, 1)
    if angle.abs() < 1e-6:  # (almost) the same direction: the arc is a line
        mixed = (1 - t) * a + t * b
    else:
        mixed = (torch.sin((1 - t) * angle) * a + torch.sin(t * angle) * b) / torch.sin(angle)
    return mixed.to(z_a.dtype).view(-1, *z_a.shape)


# What one caller asks of a pass: latents, or (seed, count, truncation) to draw them from.
FaceRequest = torch.Tensor | tuple[int, int, float]


def _face_count(request: FaceRequest) -> int:
    return len(request) if isinstance(request, torch.Tensor) else request[1]


@dataclass
class FacePipeline:
    """Sample faces from the pretrained DCGAN; every method is deterministic for its seeds."""

    device_choice: DeviceChoice

    def __post_init__(self) -> None:
        self.generator = load_face_generator(self.device_choice.device, self.device_choice.dtype)
        # Concurrent users share forward passes: one pass of 32 faces costs less than 32 passes of one.
        # Each request's latents and images are made inside the pass too: many threads drawing their own
        # latents at once were several times slower than one thread drawing them all (lock hand-offs).
        self.batcher = RequestBatcher(self._faces_for, rows=_face_count, max_rows=FACES.high * 4)

    @torch.inference_mode()
    def _forward(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.device_choice.device, self.device_choice.dtype)
        return self.generator(latents.contiguous(memory_format=torch.channels_last))

    def _faces_for(self, requests: list[FaceRequest]) -> list[list[Image.Image]]:
        latents = [r if isinstance(r, torch.Tensor) else truncated_latents(*r) for r in requests]
        images = iter(tensor_to_pil(self._forward(torch.cat(latents))))
        return [list(itertools.islice(images, len(z))) for z in latents]

    def generate(self, latents: torch.Tensor) -> list[Image.Image]:
        """(N, 100, 1, 1) latents -> N 64x64 RGB images (batched with other callers' requests)."""
        return self.batcher(latents)

    def sample(
        self, seed: int, count: int = FACES.default, truncation: float = TRUNCATION.default
    ) -> list[Image.Image]:
        count = FACES.check(count, "count")
        seed = SEED.check(seed, "seed")
        truncation = TRUNCATION.check(truncation, "truncation")
        return self.batcher((seed, count, truncation))

    def interpolate(
        self, seed_a: int, seed_b: int, frames: int = FRAMES.default, truncation: float = TRUNCATION.default
    ) -> list[Image.Image]:
        """Frames along the great-circle arc from seed_a's first face to seed_b's first face."""
        frames = FRAMES.check(frames, "frames")
        z_a = truncated_latents(seed_a, 1, truncation)[0]
        z_b = truncated_latents(seed_b, 1, truncation)[0]
        return self.generate(slerp(z_a, z_b, torch.linspace(0, 1, frames)))

    def attribute_edit(
        self,
        seed: int,
        group_a: list[int],
        group_b: list[int],
        target_index: int,
        strengths: list[float],
        truncation: float = TRUNCATION.default,
        grid_size: int = 16,
    ) -> list[Image.Image]:
        """Add mean(z of group A) - mean(z of group B) to one face of the grid at each strength.

        Groups and target are indices into the grid that `sample(seed, grid_size, truncation)` shows.
        """
        latents = truncated_latents(seed, grid_size, truncation)
        if not group_a or not group_b or not strengths:
            raise ValueError("attribute_edit needs at least one face in each group and at least one strength.")
        group_a = [checked_number(i, "face index", 0, grid_size - 1) for i in group_a]
        group_b = [checked_number(i, "face index", 0, grid_size - 1) for i in group_b]
        target_index = checked_number(target_index, "target face index", 0, grid_size - 1)
        strengths = [STRENGTH.check(s, "strength") for s in strengths]
        direction = latents[group_a].mean(0) - latents[group_b].mean(0)
        target = latents[target_index]
        edited = torch.stack([target + s * direction for s in strengths])
        return self.generate(edited)


def load_face_pipeline() -> FacePipeline:
    """The pipeline on the chosen device; the app loads it once, through `pipelines.core.registry`."""
    return FacePipeline(select_device())


def health_probe(pipeline: FacePipeline) -> None:
    """One face from the zero latent."""
    device, dtype = pipeline.device_choice.device, pipeline.device_choice.dtype
    with torch.inference_mode():
        faces = pipeline.generator(torch.zeros(1, LATENT_DIM, 1, 1, device=device, dtype=dtype))
    expect_output(faces, (1, 3, IMAGE_SIZE, IMAGE_SIZE))
