"""One HTTP client for every served model: timeouts, bounded retries, and errors worded for users.

A request whose connection fails, or whose replica died mid-request (the gateway says so with a 503 of kind
"lost_replica"), is tried again after a growing pause, at most `RETRIES` more times; a busy server (back-pressure)
is not retried, so a full room does not hammer it. Nothing waits longer than `READ_SECONDS` for an answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

from pipelines.core.weights import ModelSourceError
from pipelines.serving.options import CONNECT_SECONDS, READ_SECONDS, RETRIES, RETRY_PAUSE_SECONDS


class ServingError(ModelSourceError):
    """A served model could not answer (down, busy, failed); the message is meant for the user."""


class ServerBusy(ServingError):
    """The server refused the request because its queue is full."""


RETRIED_KINDS = {"lost_replica"}


def error_detail(response: httpx.Response) -> tuple[str, str]:
    """(kind, message) of an error response: the gateway's {"detail", "kind"}, OpenAI's {"error": {...}}, or text."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text.strip()[:300]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("type", "")), str(body["error"].get("message", ""))
    if isinstance(body, dict):
        return str(body.get("kind", "")), str(body.get("detail", body))
    return "", str(body)[:300]


class ServeClient:
    """Requests to one server; `service` names it in messages ("the GAN deployment")."""

    def __init__(self, base_url: str, service: str, headers: dict[str, str] | None = None):
        self.base_url = base_url.rstrip("/")
        self.service = service
        timeout = httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers or {})

    def close(self) -> None:
        self._http.close()

    def _unreachable(self, error: Exception) -> ServingError:
        return ServingError(
            f"{self.service} at {self.base_url} cannot be reached ({type(error).__name__}); it may be starting "
            f"or restarting. Try again in a minute."
        )

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        kind, message = error_detail(response)
        if response.status_code == 400 or response.status_code == 422:
            raise ValueError(message)  # what the in-process pipeline raises for the same arguments
        if response.status_code == 504 or kind == "timeout":
            raise TimeoutError(message or f"{self.service} did not answer in time.")
        if response.status_code in (429, 503) and kind != "lost_replica":
            raise ServerBusy(
                f"{self.service} is busy: every replica's queue is full. Try again in a few seconds. ({message})"
            )
        raise ServingError(f"{self.service} failed ({response.status_code}): {message}")

    def _send(self, method: str, path: str, stream: bool, **kwargs) -> httpx.Response:
        """The response (still open when `stream`), after retrying lost connections and replicas."""
        pause = RETRY_PAUSE_SECONDS
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                request = self._http.build_request(method, path, **kwargs)
                response = self._http.send(request, stream=stream)
            except httpx.TimeoutException as error:
                raise TimeoutError(f"{self.service} did not answer within {READ_SECONDS:.0f} s.") from error
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as error:
                if last:
                    raise self._unreachable(error) from error
            else:
                if response.status_code < 400:
                    return response
                if stream:
                    response.read()
                kind, _ = error_detail(response)
                if kind not in RETRIED_KINDS or last:
                    self._raise_for(response)
            time.sleep(pause)
            pause *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    def get_json(self, path: str) -> dict:
        return self._send("GET", path, stream=False).json()

    def post(self, path: str, *, json_body: dict | None = None, content: bytes | None = None) -> bytes:
        """POST JSON or binary; the response body."""
        if content is not None:
            kwargs = {"content": content, "headers": {"content-type": "application/octet-stream"}}
        else:
            kwargs = {"json": json_body or {}}
        return self._send("POST", path, stream=False, **kwargs).content

    def stream_lines(self, path: str, json_body: dict) -> Iterator[str]:
        """POST and yield the response's non-empty lines as they arrive; closing the iterator closes the request."""
        response = self._send("POST", path, stream=True, json=json_body)
        try:
            for line in response.iter_lines():
                if line.strip():
                    yield line
        except httpx.TimeoutException as error:
            raise TimeoutError(f"{self.service} went silent for {READ_SECONDS:.0f} s mid-answer.") from error
        except (httpx.RemoteProtocolError, httpx.ReadError) as error:
            raise ServingError(f"{self.service} dropped the connection mid-answer; try again.") from error
        finally:
            response.close()

    def stream_events(self, path: str, json_body: dict) -> Iterator[dict]:
        """NDJSON events (one JSON object a line); an {"error": ...} event raises like an error response."""
        for line in self.stream_lines(path, json_body):
            event = json.loads(line)
            if "error" in event:
                raise_event_error(self.service, event["error"])
            yield event


def raise_event_error(service: str, error: dict) -> None:
    """An error reported inside a stream (after its 200 status was sent), raised as its status would be."""
    kind, message = str(error.get("kind", "")), str(error.get("message", ""))
    if kind == "invalid":
        raise ValueError(message)
    if kind == "timeout":
        raise TimeoutError(message)
    if kind == "busy":
        raise ServerBusy(f"{service} is busy: try again in a few seconds. ({message})")
    raise ServingError(f"{service} failed: {message}")
