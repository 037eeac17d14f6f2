"""CPU threads: other work is counted while it computes (so the text decoder steps aside to one core), and a
thread that finished hands its idle OpenMP workers back (so the decoder's workers keep spinning between steps)."""

from __future__ import annotations

import os
import threading

import gradio as gr
import pytest
import torch

from demos import faults
from pipelines.core import cpu_threads

needs_gnu_openmp = pytest.mark.skipif(
    cpu_threads.openmp() is None
    or not hasattr(cpu_threads.openmp(), "omp_pause_resource_all")
    or hasattr(cpu_threads.openmp(), "__kmpc_fork_call")
    or not os.path.isdir("/proc/self/task")
    or (os.cpu_count() or 1) < 2,
    reason="needs GNU OpenMP, Linux and two cores",
)


def test_heavy_work_is_counted_while_it_runs_nested_and_after_a_failure():
    before = cpu_threads.other_work()
    with cpu_threads.heavy_work():
        assert cpu_threads.other_work() == before + 1
        with cpu_threads.heavy_work():
            assert cpu_threads.other_work() == before + 2
    assert cpu_threads.other_work() == before
    with pytest.raises(RuntimeError), cpu_threads.heavy_work():
        raise RuntimeError("a failing request")
    assert cpu_threads.other_work() == before


@needs_gnu_openmp
def test_a_thread_hands_its_idle_openmp_workers_back():
    counts = {}

    def work() -> None:
        cpu_threads.set_threads_here(2)
        counts["before"] = len(os.listdir("/proc/self/task"))
        matrix = torch.randn(512, 512)
        for _ in range(3):
            matrix @ matrix  # a parallel operation: this thread gets an OpenMP worker, kept alive after it
        counts["working"] = len(os.listdir("/proc/self/task"))
        counts["released"] = cpu_threads.release_workers()
        counts["after"] = len(os.listdir("/proc/self/task"))
        matrix @ matrix  # still works: a new worker starts
        cpu_threads.release_workers()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert counts["released"] is True
    assert counts["working"] > counts["before"]
    assert counts["after"] == counts["before"]


def test_a_guarded_handler_counts_as_other_work_and_a_decoder_bound_one_does_not():
    seen = {}

    def compute():
        seen["compute"] = cpu_threads.other_work()

    @faults.decoder_bound
    def stream_text():
        seen["stream"] = cpu_threads.other_work()

    before = cpu_threads.other_work()
    faults.guarded(compute)()
    faults.guarded(stream_text)()
    assert seen == {"compute": before + 1, "stream": before}
    assert cpu_threads.other_work() == before


def test_a_guarded_generator_counts_only_while_it_computes_and_closing_it_reaches_the_handler():
    seen, closed = [], []

    def train():
        try:
            for step in range(3):
                seen.append(cpu_threads.other_work())
                yield step
        finally:
            closed.append(True)

    before = cpu_threads.other_work()
    stream = faults.guarded(train)()
    assert next(stream) == 0
    assert cpu_threads.other_work() == before  # suspended between updates: not computing
    assert next(stream) == 1
    stream.close()  # a Stop button, a closed page
    assert closed == [True]
    assert seen == [before + 1, before + 1]
    assert cpu_threads.other_work() == before


def test_a_guarded_generator_still_turns_faults_into_messages():
    def fails():
        yield 1
        raise TimeoutError("Stopped after the 30 s time limit.")

    stream = faults.guarded(fails)()
    assert next(stream) == 1
    with pytest.raises(gr.Error, match="30 s time limit"):
        next(stream)
    assert list(faults.guarded(lambda: (yield from range(3)))()) == [0, 1, 2]
