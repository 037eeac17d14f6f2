"""Small models trained live: a run advances in stretches between snapshots, on one CPU thread, within a time limit.

A run object has a `step` counter, a `train_step()` and a `snapshot(seconds, done, stopped_early)`; `watch` turns
it into an iterator of snapshots that a tab draws as they come and can close at any yield (Stop, a closed page).

One thread, because torch's intra-op threads cost more than they give on tiny tensors: each operation waits at a
barrier for the other thread, and when other work holds the cores that wait dominates (BENCHMARKS.md, training
section). `torch.set_num_threads` is process-wide and also sets the count of threads started later, so it would
slow the other tabs' big models too; the OpenMP runtime's own setting applies to the calling thread only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

import torch
from torch import nn

from pipelines.core import cpu_threads

Snapshot = TypeVar("Snapshot")


class TrainingRun(Protocol[Snapshot]):
    step: int

    def train_step(self) -> None: ...

    def snapshot(self, seconds: float, done: bool = False, stopped_early: str = "") -> Snapshot: ...


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Within the block, torch runs on one core in this thread; the thread's own setting comes back after.

    Never hold it across a `yield` to a caller: the caller may resume the work on another thread.
    """
    openmp = cpu_threads.openmp()
    if openmp is None:
        yield
        return
    torch.get_num_threads()  # torch sets each thread's count on first use; let it, so it cannot undo ours
    previous = openmp.omp_get_max_threads()
    openmp.omp_set_num_threads(1)
    try:
        yield
    finally:
        openmp.omp_set_num_threads(previous)


def watch(
    make_run: Callable[[], TrainingRun[Snapshot]],
    steps: int,
    snapshot_every: int,
    max_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Snapshot]:
    """Snapshots of a run: at step 0, every `snapshot_every` steps, and a last one with done=True.

    The run ends early, its last snapshot saying why, once `max_seconds` have passed (the time the caller
    spends between snapshots counts too).
    """
    started = clock()
    with one_cpu_thread():
        run = make_run()
        first = run.snapshot(0.0)
    yield first
    while True:
        target = min(run.step + snapshot_every, steps)
        with one_cpu_thread():
            while run.step < target and clock() - started < max_seconds:
                run.train_step()
            seconds = clock() - started
            if run.step == steps:
                snapshot = run.snapshot(seconds, done=True)
            elif run.step < target:
                snapshot = run.snapshot(seconds, done=True, stopped_early=f"the time limit of {max_seconds:.0f} s")
            else:
                snapshot = run.snapshot(seconds)
        yield snapshot
        if snapshot.done:
            return


def seeded_init(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """PyTorch's default initialisation of every layer, drawn from `generator` instead of the global RNG, so two
    runs started at once (other users, other tabs) cannot change each other's starting weights."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                bound = 1 / math.sqrt(layer.weight[0].numel())  # the fan-in torch uses for these layers
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        elif isinstance(layer, nn.Embedding):
            nn.init.normal_(layer.weight, generator=generator)
        elif isinstance(layer, nn.RNNBase):
            bound = 1 / math.sqrt(layer.hidden_size)
            for weight in layer.parameters():
                nn.init.uniform_(weight, -bound, bound, generator=generator)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            layer.reset_parameters()  # ones and zeros: nothing random
        elif any(True for _ in layer.parameters(recurse=False)):
            raise TypeError(f"seeded_init does not know how {type(layer).__name__} is initialised")
    return module


def stretch(steps: int, snapshots: int) -> int:
    """Steps between snapshots so that a run of `steps` shows about `snapshots` of them (a round number)."""
    every = max(1, -(-int(steps) // int(snapshots)))
    return every if every <= 10 else -(-every // 10) * 10
