"""Models served elsewhere: proxies with the in-process pipelines' interfaces that call them over HTTP.

In client mode (`GENAI_PLAYGROUND_SERVE_URL` names a Ray Serve application built by `deploy/serve_app.py`)
`registry.load(id)` returns one of these proxies, so the tabs run unchanged while the models run in the
cluster. The text family can also use any OpenAI-compatible server (vLLM, Ray Serve LLM, the app's own
deployment). Nothing here imports ray: a Gradio replica needs only HTTP.
"""
