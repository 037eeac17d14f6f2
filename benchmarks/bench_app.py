"""Cold start: from `python app.py` to the first page served."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.timing import format_seconds
from tests.conftest import free_port, wait_for_http

REPO_ROOT = Path(__file__).resolve().parent.parent


def cold_start_seconds() -> float:
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", process)
        return time.perf_counter() - start
    finally:
        process.terminate()
        process.wait(timeout=30)


def run() -> str:
    runs = [cold_start_seconds() for _ in range(3)]
    return "\n".join(
        [
            "## App start",
            "",
            "| what | median of 3 | runs |",
            "| --- | --- | --- |",
            f"| `python app.py` to the first page served (models load later, on first use) "
            f"| {format_seconds(statistics.median(runs))} | {', '.join(format_seconds(r) for r in runs)} |",
        ]
    )
