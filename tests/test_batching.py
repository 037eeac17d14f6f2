"""BatchingRunner: concurrent requests share forward passes and each gets exactly its own rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from pipelines.core.batching import BatchingRunner


class SlowDouble:
    """A stand-in model: doubles its input and records each batch size; slow enough to queue behind."""

    def __init__(self):
        self.batch_sizes: list[int] = []
        self.release = threading.Event()

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(inputs))
        self.release.wait(timeout=5)
        return inputs * 2


def test_a_lone_request_runs_at_once_and_gets_its_rows():
    model = SlowDouble()
    model.release.set()
    runner = BatchingRunner(model)
    assert torch.equal(runner(torch.tensor([[1.0], [2.0]])), torch.tensor([[2.0], [4.0]]))
    assert model.batch_sizes == [2] and runner.passes == 1


def test_requests_waiting_behind_a_pass_run_together_and_get_their_own_rows():
    model = SlowDouble()
    runner = BatchingRunner(model)
    with ThreadPoolExecutor(max_workers=9) as pool:
        blocker = pool.submit(runner, torch.zeros(1, 1))
        while not model.batch_sizes:  # the first pass is running and holds the turn
            threading.Event().wait(0.01)
        futures = [pool.submit(runner, torch.full((i + 1, 1), float(i))) for i in range(8)]
        threading.Event().wait(0.3)  # let all eight queue up
        model.release.set()
        results = [f.result(timeout=10) for f in futures]
        blocker.result(timeout=10)
    for i, result in enumerate(results):
        assert torch.equal(result, torch.full((i + 1, 1), 2.0 * i))
    assert model.batch_sizes == [1, sum(range(1, 9))]  # eight requests, one shared pass


def test_batches_respect_the_row_limit():
    model = SlowDouble()
    runner = BatchingRunner(model, max_rows=4)
    with ThreadPoolExecutor(max_workers=7) as pool:
        blocker = pool.submit(runner, torch.zeros(1, 1))
        while not model.batch_sizes:
            threading.Event().wait(0.01)
        futures = [pool.submit(runner, torch.ones(2, 1)) for _ in range(6)]
        threading.Event().wait(0.3)
        model.release.set()
        assert all(torch.equal(f.result(timeout=10), torch.full((2, 1), 2.0)) for f in futures)
        blocker.result(timeout=10)
    assert max(model.batch_sizes) <= 4 and sum(model.batch_sizes) == 13


def test_a_failing_pass_reaches_its_callers_and_the_runner_keeps_working():
    calls = []

    def flaky(inputs):
        calls.append(len(inputs))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return inputs + 1

    runner = BatchingRunner(flaky)
    with pytest.raises(RuntimeError, match="out of memory"):
        runner(torch.zeros(1))
    assert torch.equal(runner(torch.zeros(2)), torch.ones(2))
