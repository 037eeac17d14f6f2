"""Cold start (from `python app.py` to the first page served), and what a client that leaves mid-stream costs the
next one."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.timing import format_seconds
from tools.app_process import free_port, launched_app, wait_for_http

REPO_ROOT = Path(__file__).resolve().parent.parent


def cold_start_seconds() -> float:
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", process)
        return time.perf_counter() - start
    finally:
        process.terminate()
        process.wait(timeout=30)


def short_text_seconds(client) -> float:
    start = time.perf_counter()
    client.predict(prompt="Hi", max_new_tokens=4, temperature=0, api_name="/generate_text")
    return time.perf_counter() - start


def after_a_client_leaves(repeats: int = 3) -> tuple[list[float], list[float]]:
    """Seconds for a 4-token /generate_text request alone, and right after another client cancelled its
    1,024-token stream (after its first few tokens): the model is shared, so the second waits unless the
    abandoned generation stops."""
    from gradio_client import Client

    with launched_app([sys.executable, "app.py"], REPO_ROOT / "artifacts" / "bench_app.log") as url:
        client = Client(url, verbose=False)
        short_text_seconds(client)  # loads the model
        alone = [short_text_seconds(client) for _ in range(repeats)]
        after = []
        for _ in range(repeats):
            leaving = Client(url, verbose=False)
            job = leaving.submit(
                prompt="Write a very long story about the sea.",
                max_new_tokens=1024,
                temperature=0,
                api_name="/generate_text",
            )
            while len(job.outputs()) < 3 and not job.done():
                time.sleep(0.05)
            job.cancel()
            after.append(short_text_seconds(client))
        return alone, after


def run() -> str:
    runs = [cold_start_seconds() for _ in range(3)]
    alone, after = after_a_client_leaves()
    return "\n".join(
        [
            "## App start, and a client that leaves mid-stream",
            "",
            "| what | median of 3 | runs |",
            "| --- | --- | --- |",
            f"| `python app.py` to the first page served (models load later, on first use) "
            f"| {format_seconds(statistics.median(runs))} | {', '.join(format_seconds(r) for r in runs)} |",
            f"| a 4-token `/generate_text` request, alone | {format_seconds(statistics.median(alone))} "
            f"| {', '.join(format_seconds(r) for r in alone)} |",
            f"| the same, sent just after another client cancelled its 1,024-token stream a few tokens in "
            f"(unstopped, that stream would hold the model for its 30 s budget) | "
            f"{format_seconds(statistics.median(after))} | {', '.join(format_seconds(r) for r in after)} |",
        ]
    )
