"""The health report behind /healthz: a tiny inference on every loaded built-in model, cached for a few seconds.

It never loads a model (a model not used yet is "not loaded"), and one check runs at a time, so frequent
probes cannot load the machine. Each model's probe lives with its family's pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import torch

from pipelines.core import registry, warmup

logger = logging.getLogger(__name__)

HEALTH_CACHE_SECONDS = 5.0


def expect_output(tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    """For probes: a RuntimeError unless the output has this shape and only finite values."""
    if tuple(tensor.shape) != shape:
        raise RuntimeError(f"output shape {tuple(tensor.shape)}, expected {shape}")
    if not torch.isfinite(tensor).all():
        raise RuntimeError("output holds NaN or infinite values")


@dataclass(frozen=True)
class ModelHealth:
    id: str
    name: str
    state: str  # "ok", "not loaded", "failed to load" or "failing"
    detail: str = ""
    milliseconds: float | None = None


@dataclass(frozen=True)
class HealthReport:
    models: tuple[ModelHealth, ...]
    checked_at: float  # time.time() of the check

    @property
    def healthy(self) -> bool:
        return all(model.state in ("ok", "not loaded") for model in self.models)

    def as_json(self) -> dict:
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "failing": [m.id for m in self.models if m.state not in ("ok", "not loaded")],
            "models": {
                m.id: {"name": m.name, "state": m.state, "detail": m.detail, "milliseconds": m.milliseconds}
                for m in self.models
            },
            "checked_at": self.checked_at,
            "cached_for_seconds": HEALTH_CACHE_SECONDS,
            "warmup": warmup.snapshot(),  # live, not cached: the background loading of every model at start
        }


def probe_model(spec: registry.ModelSpec, models: registry.ModelRegistry) -> ModelHealth:
    """One model's health: its failure, "not loaded", or the outcome of its probe."""
    model, failure = models.state(spec.id)
    if failure:
        return ModelHealth(spec.id, spec.name, "failed to load", failure)
    if spec.needs_loading and model is None:
        warming = warmup.WARMUP.state_of(spec.id) in ("waiting", "warming")
        detail = "warming up in the background" if warming else "loads on first use of its tab"
        return ModelHealth(spec.id, spec.name, "not loaded", detail)
    started = time.perf_counter()
    try:
        spec.probe(model)
    except Exception as error:
        logger.exception("health probe of %s failed", spec.id)
        return ModelHealth(spec.id, spec.name, "failing", f"a tiny inference failed: {type(error).__name__}")
    milliseconds = round((time.perf_counter() - started) * 1000, 1)
    return ModelHealth(spec.id, spec.name, "ok", "a tiny inference ran", milliseconds)


_report_lock = threading.Lock()
_last_report: HealthReport | None = None


def check_health(max_age: float = HEALTH_CACHE_SECONDS) -> HealthReport:
    """Probe every loaded built-in model, or reuse a report younger than `max_age` seconds.

    One check runs at a time; probes arriving meanwhile wait for it and share its report.
    """
    global _last_report
    with _report_lock:
        if _last_report is None or time.time() - _last_report.checked_at > max_age:
            models = registry.MODELS
            report = tuple(probe_model(spec, models) for spec in models.builtin_specs())
            _last_report = HealthReport(report, time.time())
        return _last_report
