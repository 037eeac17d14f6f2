"""DCGAN faces: model load in a fresh process, then 1 and 64 faces per call on this device."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.timing import format_seconds, median_seconds
from pipelines.core import registry
from pipelines.core.device import select_device
from pipelines.gan.faces import truncated_latents

LOAD_SCRIPT = """
import json, time
start = time.perf_counter()
import torch
from pipelines.core.device import select_device
from pipelines.gan.faces import load_face_generator
imported = time.perf_counter()
choice = select_device()
load_face_generator(choice.device, choice.dtype)
print(json.dumps({"import": imported - start, "load": time.perf_counter() - imported}))
"""


def fresh_process_load() -> dict[str, float]:
    output = subprocess.run([sys.executable, "-c", LOAD_SCRIPT], capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def forward_flops(generator: torch.nn.Module, latents: torch.Tensor) -> int:
    """Floating-point operations of one forward pass (its transposed convolutions), by torch's flop counter."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        generator(latents)
    return counter.get_total_flops()


def matmul_flops_per_second(size: int = 2048) -> float:
    """This CPU's float32 speed on the work it does best, one large matrix product: a practical ceiling."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats=7, warmup=2)


def concurrent_single_faces(faces, pool: ThreadPoolExecutor, requests: int = 32) -> tuple[float, float, float]:
    """Seconds for `requests` one-face requests: one after another, then all at once (batched).

    The pool's threads are started before timing, as a server's worker threads are.
    """
    start = time.perf_counter()
    for seed in range(requests):
        faces.sample(seed=seed, count=1)
    serial = time.perf_counter() - start
    passes = faces.batcher.passes
    start = time.perf_counter()
    list(pool.map(lambda s: faces.sample(seed=s, count=1), range(requests)))
    concurrent = time.perf_counter() - start
    return serial, concurrent, (faces.batcher.passes - passes)


def run() -> str:
    loads = sorted((fresh_process_load() for _ in range(3)), key=lambda r: r["load"])
    load = loads[1]  # the median run by load time
    faces = registry.load("gan-faces")
    one = median_seconds(lambda: faces.sample(seed=1, count=1), repeats=20, warmup=3)
    sixty_four = median_seconds(lambda: faces.sample(seed=1, count=64), repeats=7, warmup=1)
    # The generator alone: how much a batch can save at best, before any per-request work.
    latents_1, latents_32 = truncated_latents(1, 1, 1.5), truncated_latents(1, 32, 1.5)
    with torch.inference_mode():
        forward_one = median_seconds(lambda: faces.generator(latents_1), repeats=20, warmup=3)
        forward_32 = median_seconds(lambda: faces.generator(latents_32), repeats=7, warmup=1)
    flops_32 = forward_flops(faces.generator, latents_32)
    peak = matmul_flops_per_second()
    fastest_32 = flops_32 / peak  # 32 faces at the matmul speed: no batch can be faster
    with ThreadPoolExecutor(max_workers=32) as pool:
        # Untimed rounds first: oneDNN builds its kernels once per batch size (the first pass of a new
        # size is slower), and a long-running server has met the common sizes.
        runs = [concurrent_single_faces(faces, pool) for _ in range(8)][3:]
    serial = sorted(r[0] for r in runs)[2]
    together = sorted(r[1] for r in runs)[2]
    passes = sorted(r[2] for r in runs)[2]
    device = select_device().label
    return "\n".join(
        [
            "## GAN Faces (DCGAN, 64×64)",
            "",
            f"Device: {device}. Times include sampling z and converting to PIL images.",
            "",
            "| what | median |",
            "| --- | --- |",
            f"| load the generator from the pack, fresh process (median of 3; importing torch "
            f"before it: {format_seconds(load['import'])}) | {format_seconds(load['load'])} |",
            f"| 1 face (median of 20) | {format_seconds(one)} |",
            f"| 64 faces in one call (median of 7) | {format_seconds(sixty_four)} "
            f"({format_seconds(sixty_four / 64)} a face) |",
            f"| generator forward pass alone: 1 latent (median of 20) | {format_seconds(forward_one)} |",
            f"| generator forward pass alone: 32 latents (median of 7) | {format_seconds(forward_32)} "
            f"({format_seconds(forward_32 / 32)} a face: batching can save at most "
            f"{forward_one / (forward_32 / 32):.1f}× of the compute) |",
            f"| the same 32 latents at this CPU's float32 matrix-product speed ({peak / 1e9:.0f} GFLOP/s on a "
            f"2048² matmul, median of 7; the pass itself reaches {flops_32 / forward_32 / 1e9:.0f} GFLOP/s): "
            f"{flops_32 / 1e9:.1f} GFLOP | {format_seconds(fastest_32)} at best "
            f"({format_seconds(fastest_32 / 32)} a face: at this speed a batch of 32 would be at most "
            f"{forward_one / (fastest_32 / 32):.1f}× faster than one latent alone) |",
            f"| 32 one-face requests, one after another (median of 5) | {format_seconds(serial)} |",
            f"| 32 one-face requests from 32 threads at once, batched by `RequestBatcher` "
            f"(median of 5 after 3 untimed rounds; {passes:.0f} forward passes) | {format_seconds(together)} "
            f"({serial / together:.1f}× faster) |",
        ]
    )
