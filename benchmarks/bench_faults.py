"""Health probes, the image time budget, and text-to-image run one or two at a time (the concurrency limit)."""

from __future__ import annotations

import statistics
import threading
import time

from benchmarks.timing import format_seconds, median_seconds
from pipelines.core import health, registry

T2I_STEPS = 20
T2I_REQUESTS = 4
BUDGET_SECONDS = 1.0


def _text_to_image_seconds(concurrent: int) -> float:
    """Wall time for T2I_REQUESTS one-image requests of T2I_STEPS steps, `concurrent` at a time."""
    from pipelines.diffusion.text_to_image import generate

    pipeline = registry.load("shapes-world")
    pending = list(range(T2I_REQUESTS))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                seed = pending.pop()
            generate(pipeline, "a red circle on the left", steps=T2I_STEPS, seed=seed, count=1)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _budget_overshoot() -> float:
    """Seconds past a BUDGET_SECONDS budget until a 100-step, 4-image generation has stopped."""
    from pipelines.diffusion.text_to_image import generate

    pipeline = registry.load("shapes-world")
    started = time.perf_counter()
    try:
        generate(pipeline, "a blue square", steps=100, count=4, max_seconds=BUDGET_SECONDS)
    except TimeoutError:
        return time.perf_counter() - started - BUDGET_SECONDS
    raise RuntimeError("the generation finished inside the budget: raise the steps")


def run() -> str:
    for spec in registry.MODELS.builtin_specs():  # every built-in model loaded, so every probe runs
        registry.load(spec.id)
    full_check = median_seconds(lambda: health.check_health(max_age=0), repeats=5)
    cached = median_seconds(lambda: health.check_health(max_age=60), repeats=50)
    probes = {}
    for _ in range(5):
        for model in health.check_health(max_age=0).models:
            probes.setdefault(model.name, []).append(model.milliseconds or 0.0)

    one_at_a_time = statistics.median(_text_to_image_seconds(1) for _ in range(3))
    two_at_a_time = statistics.median(_text_to_image_seconds(2) for _ in range(3))
    overshoot = statistics.median(_budget_overshoot() for _ in range(3))

    rows = [
        "| `/healthz` work with every model loaded: all probes, uncached (median of 5) | "
        f"{format_seconds(full_check)} |",
        f"| `/healthz` answer from its 5 s cache (median of 50) | {cached * 1e6:.0f} µs |",
        *[f"| probe: {name} (median of 5) | {statistics.median(times):.1f} ms |" for name, times in probes.items()],
        f"| text-to-image: {T2I_REQUESTS} requests of {T2I_STEPS} steps, one at a time (median of 3) "
        f"| {format_seconds(one_at_a_time)} ({T2I_REQUESTS / one_at_a_time:.2f} images/s) |",
        f"| the same, two at a time (median of 3) | {format_seconds(two_at_a_time)} "
        f"({T2I_REQUESTS / two_at_a_time:.2f} images/s) |",
        f"| time budget {BUDGET_SECONDS:g} s on a 100-step, 4-image generation: stopped this long after the budget "
        f"(median of 3) | {format_seconds(max(overshoot, 0.0))} |",
    ]
    return "\n".join(
        [
            "## Health, time budget and concurrency",
            "",
            "In-process, no server: `pipelines.core.health.check_health` (what `/healthz` runs), the text-to-image "
            "time budget (`generate(max_seconds=...)`) and text-to-image throughput with one or two requests "
            "running at once (the app's concurrency limit for that model).",
            "",
            "| what | figure |",
            "| --- | --- |",
            *rows,
        ]
    )
