"""The CPU's OpenMP threads, shared by every Python thread of the app, and who else is computing.

torch runs an operation on several cores through OpenMP. Each Python thread that does so gets its own pool of
OpenMP workers, and the pool lives as long as that thread. GNU OpenMP (the runtime of torch's Linux wheels)
lets idle workers spin, ready for the next operation, only while the process holds no more OpenMP threads than
the machine has cores; past that, workers sleep between operations and each operation pays a wake-up. A decode
step is a few hundred small operations: measured on 2 cores (SmolLM2, int4), one stream took 37 ms a token on
two threads while another thread's idle pool was alive, 21 ms once it was gone, and 28 ms on one thread.

So a thread that has finished its torch work hands its workers back (`release_workers`, done by the app after
every request and by the warm-up), and the text decoder asks `other_work()` before each step: all cores when
nothing else computes, one when something does.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_OMP_PAUSE_SOFT = 1  # OpenMP 5.0's omp_pause_soft: free the threads, keep the settings

_lock = threading.Lock()
_active = 0  # blocks of heavy work running now, in any thread


@functools.cache
def openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime torch loaded (libgomp on Linux, libomp on macOS), or None where there is none."""
    library = ctypes.CDLL(None)
    if hasattr(library, "omp_set_num_threads") and hasattr(library, "omp_get_max_threads"):
        return library
    return None


def set_threads_here(count: int) -> None:
    """torch runs this thread's operations on `count` cores (OpenMP's setting is per thread; torch.set_num_threads
    would change every thread's). A no-op where torch has no OpenMP runtime."""
    library = openmp()
    if library is not None:
        library.omp_set_num_threads(count)


def release_workers() -> bool:
    """End the calling thread's idle OpenMP workers (its next parallel operation starts new ones, in microseconds).

    Only GNU OpenMP frees one thread's pool this way; LLVM's and Intel's runtimes (which also answer to the GNU
    names) would pause the whole process, so they are left alone. True when workers were handed back.
    """
    library = openmp()
    if library is None or not hasattr(library, "omp_pause_resource_all") or hasattr(library, "__kmpc_fork_call"):
        return False
    return library.omp_pause_resource_all(_OMP_PAUSE_SOFT) == 0


@contextmanager
def heavy_work() -> Iterator[None]:
    """Marks a block that computes with torch (a request, a warm-up); on leaving, this thread's workers are freed."""
    global _active
    with _lock:
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
        release_workers()


def other_work() -> int:
    """How many blocks of heavy work are running now (the text decoder's own steps are not counted)."""
    return _active
