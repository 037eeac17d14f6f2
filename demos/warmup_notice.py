"""A short notice at the top of the page while the models warm up in the background (pipelines/core/warmup.py).

It polls the warm-up's state every couple of seconds, outside the queue (a cheap read), says which models are
ready, and hides itself and stops polling once every model is warm.
"""

from __future__ import annotations

import gradio as gr

from pipelines.core import registry, warmup

POLL_SECONDS = 2.0


def notice() -> tuple[dict, gr.Timer]:
    """The notice's text and visibility, and whether to keep polling."""
    snapshot = warmup.snapshot()
    if snapshot["state"] != "running":
        return gr.update(value="", visible=False), gr.Timer(active=False)
    models = snapshot["models"]
    # A model a visitor already used is ready even if the warm-up has not reached it.
    ready = sum(entry["state"] in ("warm", "failed") or registry.is_loaded(i) for i, entry in models.items())
    warming = [entry["name"] for entry in models.values() if entry["state"] == "warming"]
    now = f" Now loading: {warming[0]}." if warming else ""
    text = (
        f"**Warming up the models in the background: {ready} of {len(models)} ready.**{now} "
        "Everything works already; a tab whose model is still loading starts as soon as it is ready."
    )
    return gr.update(value=text, visible=True), gr.Timer(active=True)


def build() -> None:
    """The notice and its timer; call once, near the top of the page."""
    text = gr.Markdown(visible=False, elem_id="warmup-notice")
    timer = gr.Timer(POLL_SECONDS)
    timer.tick(notice, None, [text, timer], api_visibility="private", queue=False, show_progress="hidden")
