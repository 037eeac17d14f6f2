"""Where the served models are and how long to wait for them: set by the host through environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

# Families with a deployment in deploy/serve_app.py: in client mode their models run there, the others here.
SERVED_FAMILIES = ("gan", "vae", "diffusion", "text")
# The Ray Serve application (deploy/serve_app.py) the app's tabs call; unset: every model runs in this process.
SERVE_URL_VARIABLE = "GENAI_PLAYGROUND_SERVE_URL"
# An OpenAI-compatible server (vLLM, Ray Serve LLM, ...) whose models the text tab offers beside its own.
OPENAI_URL_VARIABLE = "GENAI_PLAYGROUND_OPENAI_URL"  # e.g. http://gpu-host:8000/v1
OPENAI_MODELS_VARIABLE = "GENAI_PLAYGROUND_OPENAI_MODELS"  # comma-separated model names the server serves
OPENAI_KEY_VARIABLE = "GENAI_PLAYGROUND_OPENAI_API_KEY"  # sent as a bearer token where the server wants one

CONNECT_SECONDS = 5.0  # a server that does not accept a connection by then is down
READ_SECONDS = 180.0  # the longest wait for a response (or the next streamed event) once sent
RETRIES = 2  # further tries of a request whose connection failed or whose replica was lost
RETRY_PAUSE_SECONDS = 1.0  # doubled after each try, so a replacement replica has time to start
TOP_LOGPROBS = 5  # alternatives asked for per token: what the tab's "Look inside" table shows


def serve_url() -> str | None:
    """The Serve application's base URL in client mode, else None (read at each call: tests and start-up set it)."""
    url = os.environ.get(SERVE_URL_VARIABLE, "").strip()
    return url.rstrip("/") or None


@dataclass(frozen=True)
class OpenAIServer:
    url: str  # the API base, ending in /v1
    models: tuple[str, ...]
    api_key: str | None = None


def openai_server() -> OpenAIServer | None:
    """The host's OpenAI-compatible text server, when both its URL and its model names are set."""
    url = os.environ.get(OPENAI_URL_VARIABLE, "").strip().rstrip("/")
    models = tuple(m.strip() for m in os.environ.get(OPENAI_MODELS_VARIABLE, "").split(",") if m.strip())
    if not url or not models:
        return None
    return OpenAIServer(url, models, os.environ.get(OPENAI_KEY_VARIABLE) or None)
