"""Serve concurrent callers with shared forward passes: requests that arrive together run as one batch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

import torch

Request = TypeVar("Request")
Result = TypeVar("Result")


class RequestBatcher(Generic[Request, Result]):
    """Wraps `run(requests) -> results` (one result per request, in order) for many threads at once.

    One pass runs at a time. Callers that arrive while it runs wait; the first of them to get the turn
    takes every waiting request (up to `max_rows` rows, as counted by `rows`) and runs them in one pass.
    No timer: a lone request runs at once, and batches form only when there is a queue. All the work of
    a pass happens in one thread, so waiting callers do not fight over the interpreter lock.
    """

    def __init__(
        self,
        run: Callable[[list[Request]], list[Result]],
        rows: Callable[[Request], int],
        max_rows: int = 256,
    ):
        self._run = run
        self._rows = rows
        self.max_rows = max_rows
        self._turn = threading.Lock()  # held during a pass
        self._pending_lock = threading.Lock()
        self._pending: list[tuple[Request, Future]] = []
        self.passes = 0  # passes run so far (for tests and benchmarks)

    def __call__(self, request: Request) -> Result:
        waiting: Future = Future()
        with self._pending_lock:
            self._pending.append((request, waiting))
        while not waiting.done():
            with self._turn:
                if not waiting.done():
                    self._run_pending()
        return waiting.result()

    def _run_pending(self) -> None:
        with self._pending_lock:
            taken, rows = [], 0
            while self._pending and (not taken or rows + self._rows(self._pending[0][0]) <= self.max_rows):
                item = self._pending.pop(0)
                taken.append(item)
                rows += self._rows(item[0])
        try:
            results = self._run([request for request, _ in taken])
        except BaseException as error:  # every caller in the batch hears of the failure
            for _, waiting in taken:
                waiting.set_exception(error)
            return
        self.passes += 1
        for (_, waiting), result in zip(taken, results):
            waiting.set_result(result)


class BatchingRunner(RequestBatcher[torch.Tensor, torch.Tensor]):
    """Wraps `run(inputs) -> outputs` (both batched along dim 0): each caller's rows are stacked with
    the others' into one forward pass, and each gets exactly its own output rows back."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], max_rows: int = 256):
        def stacked(requests: list[torch.Tensor]) -> list[torch.Tensor]:
            outputs = run(torch.cat(requests))
            return list(torch.split(outputs, [len(r) for r in requests]))

        super().__init__(stacked, rows=len, max_rows=max_rows)
