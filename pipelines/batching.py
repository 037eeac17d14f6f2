"""Serve concurrent callers with shared forward passes: requests that arrive together run as one batch."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable

import torch


class BatchingRunner:
    """Wraps `run(inputs) -> outputs` (both batched along dim 0) for many threads at once.

    One forward pass runs at a time. Callers that arrive while it runs wait; the first of them to
    get the turn takes every waiting request (up to `max_rows` rows) and runs them in one pass.
    No timer: a lone request runs at once, and batches form only when there is a queue.
    """

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], max_rows: int = 256):
        self._run = run
        self.max_rows = max_rows
        self._turn = threading.Lock()  # held during a forward pass
        self._pending_lock = threading.Lock()
        self._pending: list[tuple[torch.Tensor, Future]] = []
        self.passes = 0  # forward passes run so far (for tests and benchmarks)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        request: Future = Future()
        with self._pending_lock:
            self._pending.append((inputs, request))
        while not request.done():
            with self._turn:
                if not request.done():
                    self._run_pending()
        return request.result()

    def _run_pending(self) -> None:
        with self._pending_lock:
            taken, rows = [], 0
            while self._pending and (not taken or rows + len(self._pending[0][0]) <= self.max_rows):
                item = self._pending.pop(0)
                taken.append(item)
                rows += len(item[0])
        try:
            outputs = self._run(torch.cat([inputs for inputs, _ in taken]))
        except BaseException as error:  # every caller in the batch hears of the failure
            for _, request in taken:
                request.set_exception(error)
            return
        self.passes += 1
        start = 0
        for inputs, request in taken:
            request.set_result(outputs[start : start + len(inputs)])
            start += len(inputs)
