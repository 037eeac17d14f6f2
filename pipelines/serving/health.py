"""The backend part of /healthz: in-process, or the Serve application with each deployment's state."""

from __future__ import annotations

import threading
import time

import httpx

from pipelines.serving.options import CONNECT_SECONDS, serve_url

BACKEND_CACHE_SECONDS = 5.0  # as the models' health report: frequent probes cost the cluster one status a while

_lock = threading.Lock()
_cached: tuple[float, str, dict, bool] | None = None


def backend_report(max_age: float = BACKEND_CACHE_SECONDS) -> tuple[dict, bool]:
    """({"backend": ..., and in client mode "serve_url" and "deployments"}, healthy)."""
    global _cached
    url = serve_url()
    if url is None:
        return {"backend": "in-process"}, True
    with _lock:
        if _cached is None or _cached[1] != url or time.time() - _cached[0] > max_age:
            report, healthy = _ask(url)
            _cached = (time.time(), url, report, healthy)
        return _cached[2], _cached[3]


def _ask(url: str) -> tuple[dict, bool]:
    report: dict = {"backend": "ray-serve", "serve_url": url}
    try:
        response = httpx.get(f"{url}/healthz", timeout=httpx.Timeout(10.0, connect=CONNECT_SECONDS))
        body = response.json()
    except (httpx.HTTPError, ValueError) as error:
        report.update(serve_status="unreachable", detail=f"{type(error).__name__}: {error}", deployments={})
        return report, False
    report.update(
        serve_status=body.get("status", "unknown"),
        application=body.get("application"),
        failing_deployments=body.get("failing", []),
        deployments=body.get("deployments", {}),
    )
    return report, response.status_code == 200
