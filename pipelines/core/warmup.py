"""Warm every built-in model in the background once the page is served, so the first visitor does not wait.

The first use of a model loads it (for the text model, the first ever use also converts its GGUF file) and runs
its first tiny inference, which sets up its kernels. `start()` does that for every built-in model, one after
another, in a background thread started after the server answers; /healthz and a notice on the page show its
progress (`snapshot()`). A request that arrives meanwhile waits for its own model: the registry loads each model
once, so it either joins the load in progress or loads its model itself, after at most one other model's build
(models are built one at a time, pipelines/core/building.py; downloads and the GGUF conversion do not wait).

The thread runs at a low CPU priority: on a small machine the first visitors' requests come first, and the
warm-up takes what they leave. GENAI_PLAYGROUND_WARMUP=0 turns it off (models then load on first use, as before).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from pipelines.core import cpu_threads, registry

logger = logging.getLogger(__name__)

NICENESS = 10  # the warm-up thread's priority (Linux niceness; the threads torch starts from it inherit it)


@dataclass
class ModelWarmup:
    id: str
    name: str
    state: str = "waiting"  # "waiting", "warming", "warm" or "failed"
    seconds: float | None = None  # how long it took (warm or failed)
    detail: str = ""


class Warmup:
    """Loads and probes a registry's built-in models, one by one, in a background thread."""

    def __init__(self, models: registry.ModelRegistry):
        self.models = models
        self._lock = threading.Lock()
        self._entries: list[ModelWarmup] = []
        self._started_at: float | None = None  # time.time()
        self._finished_at: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Begin warming (once per process); False when it already began or is turned off."""
        if os.environ.get("GENAI_PLAYGROUND_WARMUP", "1").strip().lower() in ("0", "off", "false", "no"):
            return False
        with self._lock:
            if self._thread is not None:
                return False
            specs = [s for s in self.models.builtin_specs() if s.needs_loading and not s.remote]
            self._entries = [ModelWarmup(spec.id, spec.name) for spec in specs]
            self._started_at = time.time()
            self._thread = threading.Thread(target=self._run, name="model-warmup", daemon=True)
            self._thread.start()
        return True

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        except (AttributeError, OSError):  # not on this platform: warm at normal priority
            pass
        with cpu_threads.heavy_work():  # the text decoder keeps to one core meanwhile
            self._warm_all()
        self._finished_at = time.time()

    def _warm_all(self) -> None:
        for entry in self._entries:
            entry.state = "warming"
            started = time.perf_counter()
            try:
                spec = self.models.spec(entry.id)
                model = self.models.load(entry.id)
                if spec.probe is not None:
                    spec.probe(model)  # the first inference sets up the kernels the first request would wait for
                entry.state = "warm"
            except Exception as error:  # a broken model is switched off by the registry; the rest still warm
                logger.warning("warm-up of %s failed: %s", entry.id, error)
                entry.state, entry.detail = "failed", f"{type(error).__name__}: {error}"
            entry.seconds = round(time.perf_counter() - started, 2)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until warming ends (tests, benchmarks); False on timeout or when it never started."""
        thread = self._thread
        if thread is None:
            return False
        thread.join(timeout)
        return not thread.is_alive()

    def state_of(self, model_id: str) -> str | None:
        """The model's warm-up state, or None when warm-up does not cover it (or has not started)."""
        return next((entry.state for entry in self._entries if entry.id == model_id), None)

    def snapshot(self) -> dict:
        """For /healthz and the page: overall state, seconds since start, each model's state."""
        if self._started_at is None:
            state, seconds = "off", None
        elif self._finished_at is None:
            state, seconds = "running", time.time() - self._started_at
        else:
            state, seconds = "done", self._finished_at - self._started_at
        return {
            "state": state,
            "seconds": None if seconds is None else round(seconds, 2),
            "models": {
                e.id: {"name": e.name, "state": e.state, "seconds": e.seconds, "detail": e.detail}
                for e in self._entries
            },
        }


WARMUP = Warmup(registry.MODELS)


def start() -> bool:
    return WARMUP.start()


def snapshot() -> dict:
    return WARMUP.snapshot()
