"""GenAI Playground: one Gradio app, one tab per generative model. Also the Hugging Face Spaces entry point."""

from __future__ import annotations

import os

import gradio as gr

from demos import gan_faces, text_generation, text_to_image, vae_interpolation

# Tab order follows the product card; each module builds its own tab.
TAB_MODULES = [text_to_image, gan_faces, vae_interpolation, text_generation]

INTRO = """
# GenAI Playground
Point, click and **see** how generative models work. Every tab runs a real model with real weights
and lets you look inside it while it works. **Text → Image**: a diffusion model trained here turns a prompt
about coloured shapes into a picture, step by step from pure noise. **GAN Faces**: a generator turns random noise into faces;
walk between two faces and add "feature vectors" to a face. **VAE Interpolation**: an encoder squeezes an
image into a few numbers and a decoder draws it back; morph one face or digit into another, map the space
and decode any point. **Text Generation**: a real language model writes token by token and shows how
sure it was of each word, beside an n-gram model counted from any text you paste. Same seed and settings give the same result
on every machine, so a whole room can follow along.
"""


def build_app() -> gr.Blocks:
    with gr.Blocks(title="GenAI Playground", analytics_enabled=False) as app:
        gr.Markdown(INTRO)
        with gr.Tabs():
            for module in TAB_MODULES:
                with gr.Tab(module.TAB_TITLE, id=module.TAB_ID):
                    module.build()
    app.queue(default_concurrency_limit=2, max_size=64)
    return app


demo = build_app()

if __name__ == "__main__":
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
