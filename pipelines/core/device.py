"""Where models run: chosen once for the whole process (CUDA half precision, then MPS, then CPU)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype

    @property
    def label(self) -> str:
        return f"{self.device.type} ({str(self.dtype).removeprefix('torch.')})"


@functools.cache
def select_device() -> DeviceChoice:
    """CUDA in float16, then Apple MPS in float16, then CPU in float32.

    GENAI_PLAYGROUND_DEVICE=cpu|cuda|mps forces a choice (tests and benchmarks use it).
    """
    forced = os.environ.get("GENAI_PLAYGROUND_DEVICE", "").strip().lower()
    if forced == "cuda" or (not forced and torch.cuda.is_available()):
        return DeviceChoice(torch.device("cuda"), torch.float16)
    if forced == "mps" or (not forced and torch.backends.mps.is_available()):
        return DeviceChoice(torch.device("mps"), torch.float16)
    return DeviceChoice(torch.device("cpu"), torch.float32)


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError other backends (MPS) raise when memory runs out."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


def free_accelerator_memory() -> None:
    """Give cached GPU memory back after an out-of-memory error, so the next request can run."""
    torch.cuda.empty_cache()  # a no-op where CUDA was never initialised
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()
