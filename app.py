"""GenAI Playground: one Gradio app, one tab per generative model. Also the Hugging Face Spaces entry point."""

from __future__ import annotations

import os

import gradio as gr
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

import demos.diffusion_lab as diffusion_lab
import demos.image_cache as image_cache
import demos.training as training
import demos.warmup_notice as warmup_notice
from demos import common, evaluation, faults, gan_faces, text_generation, text_to_image, vae_interpolation, validation
from pipelines.core import cpu_threads, warmup, zerogpu
from pipelines.core.health import check_health
from pipelines.serving.health import backend_report

# Requests waiting beyond this many are refused at once, and the page says "This application is currently
# busy. Please try again." (API clients get HTTP 503 / gradio_client's QueueError).
QUEUE_SIZE = int(os.environ.get("GENAI_PLAYGROUND_QUEUE_SIZE", "64"))

# Gallery layout. Gradio gives a height="auto" gallery a 450 px minimum, leaving a row of results in a mostly
# empty box: let it fit its images (it still scrolls past 55% of the screen's height). Gradio's columns are at
# least 100 px wide, so 8 faces overflowed and were cut off on a 1024-px projector or a phone: let them shrink,
# and on a phone wrap into rows of thumbnails at least 88 px wide instead.
APP_CSS = """
.gallery-container .grid-wrap.fixed-height { min-height: 0; }
.gallery-container .grid-wrap .grid-container {
  grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)); grid-auto-rows: auto;
}
@media (max-width: 640px) {
  .gallery-container .grid-wrap .grid-container { grid-template-columns: repeat(auto-fit, minmax(88px, 1fr)); }
}
"""

# Tab order follows the product card; each module builds its own tab (the interface: demos/common.py).
TAB_MODULES = [text_to_image, diffusion_lab, gan_faces, vae_interpolation, text_generation, training, evaluation]

INTRO = """
# GenAI Playground
Point, click and **see** how generative models work. Each tab runs a real model with real weights and
lets you look inside it while it works: watch **diffusion** turn noise into a picture (and take it apart in the
lab), sample and blend **GAN** faces, walk a **VAE**'s latent space, see what a **language model** was sure of
and where it looked, **train** small models live, and **measure** them all. The same seed and settings give
the same result on every machine, so a whole room can follow along.
"""


def build_app() -> gr.Blocks:
    image_cache.install()  # a picture returned twice is not rewritten while a browser downloads it
    # delete_cache: every hour, drop Gradio's cached output files older than an hour.
    with gr.Blocks(title="GenAI Playground", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(INTRO)
        warmup_notice.build()  # "warming up the models" while pipelines/core/warmup.py loads them
        with gr.Tabs():
            for module in TAB_MODULES:
                with gr.Tab(module.TAB_TITLE, id=module.TAB_ID):
                    module.build()
                    common.how_it_works(module.HOW_IT_WORKS)
    app.queue(default_concurrency_limit=2, max_size=QUEUE_SIZE)
    faults.guard_events(app)  # a switched-off model, out of memory, a time limit: clear messages in every tab
    zerogpu.wrap_gpu_events(app)  # on a ZeroGPU Space (`spaces` importable) model events run inside spaces.GPU
    return app


def healthz() -> JSONResponse:
    """200 when every loaded model runs a tiny inference; 503 naming any that failed (answer cached 5 s).
    It names the backend: in-process, or the Ray Serve application with each deployment's state."""
    with cpu_threads.heavy_work():  # its tiny inferences compute like any request
        report = check_health()
    backend, backend_healthy = backend_report()
    healthy = report.healthy and backend_healthy
    body = report.as_json() | backend | {"status": "ok" if healthy else "unhealthy"}
    return JSONResponse(body, status_code=200 if healthy else 503)


demo = build_app()

if __name__ == "__main__":
    if os.environ.get("GENAI_PLAYGROUND_BACKEND", "").strip().lower() == "ray":  # make run-cluster
        from deploy import cluster  # Ray is imported only here: `make run` stays as light as ever

        print(f"The models are served by Ray Serve at {cluster.start()}; the tabs call them there.", flush=True)
    zerogpu.preload_models()  # on ZeroGPU only: models load at start-up, outside the GPU calls
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=f"{validation.MAX_UPLOAD_MB}mb",
        css=APP_CSS,
        app_kwargs={"routes": [APIRoute("/healthz", healthz, methods=["GET", "HEAD"])]},
        prevent_thread_lock=True,
    )
    cpu_threads.release_workers()  # this thread only waits from here: its idle CPU workers would slow the others
    warmup.start()  # the page is up: now load every model in the background (state in /healthz)
    demo.block_thread()
