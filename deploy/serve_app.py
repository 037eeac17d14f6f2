"""The Ray Serve application: one deployment per model family behind one HTTP gateway.

Each family deployment loads its in-process pipeline once per replica (through the registry, as the app does)
and runs the same code the app runs in one process, so a served answer is the in-process answer. GAN sampling
and VAE decoding batch concurrent requests with `@serve.batch` (switchable in the config's `user_config`, to
measure it against the pipelines' own batching). Replicas, resources, autoscaling and batching live in
deploy/serve_config.yaml; the gateway's routes (what pipelines/serving calls):

    GET  /healthz                          every deployment's state (serve.status())
    POST /gan/sample  /gan/generate        faces for (seed, count, truncation) / for latents (safetensors)
    GET  /vae/describe?model=              what the client-side proxy needs (the trained VAE's settings)
    POST /vae/encode?model= /vae/decode?model=   the VAE's network passes (safetensors in and out)
    POST /text-to-image/generate           NDJSON: {"step", "total"} events, then {"result": ...}
    GET  /v1/models, POST /v1/chat/completions, /v1/completions   OpenAI-compatible text, streaming with SSE
    GET  /<family>/healthz?model=          a tiny inference on one replica of that family

A request whose replica dies is tried again on another (or its replacement) a bounded number of times, every
call has a deadline, and a full queue answers 503 at once: nothing hangs.

Run it with `make serve` (Serve alone, from the config), `make run-cluster` (Serve and the app in client mode),
or on Kubernetes with deploy/rayservice.yaml.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' parameter types (Request, str) at runtime,
# and Serve's ingress rebuilds the methods where string annotations no longer resolve.
import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from pipelines.core.weights import ModelSourceError
from pipelines.gan.options import FACES, TRUNCATION
from pipelines.serving import openai_server, wire
from pipelines.serving.options import SERVE_URL_VARIABLE

logger = logging.getLogger("ray.serve")

MAX_ROWS = 4 * FACES.high  # latents or images in one request or one batch (as the pipelines' own batchers)
MAX_ENCODE_ROWS = 1024  # images encoded at once: a latent map encodes every example (300) in one call
CALL_SECONDS = 170.0  # a family call's deadline: under the client's READ_SECONDS, so the gateway answers first
LOST_REPLICA_TRIES = 3  # tries of a call whose replica died (Serve routes the next try to a live replica)
LOST_REPLICA_PAUSE_SECONDS = 1.0
TORCH_THREADS_VARIABLE = "GENAI_PLAYGROUND_TORCH_THREADS"


def _in_process_registry():
    """The registry, running models in this replica (never the client mode of a process that deployed it).

    Ray gives a replica as many torch threads as whole CPUs it reserved (one for a fraction); TORCH_THREADS_VARIABLE
    sets another count. Outputs match the in-process app's bit for bit only with the same count as its process:
    DDPM's steps, for one, sum in a different order with more threads (deploy/cluster.py sets it when local).
    """
    os.environ.pop(SERVE_URL_VARIABLE, None)
    if os.environ.get(TORCH_THREADS_VARIABLE):
        torch.set_num_threads(int(os.environ[TORCH_THREADS_VARIABLE]))
    from pipelines.core import registry

    return registry


def _model_of(registry, model_id: str, family: str) -> str:
    """The registry id of a model of `family`; a ValueError (400) for anything else."""
    spec = registry.spec(model_id)
    if spec.family != family:
        raise ValueError(f"{model_id!r} is not a {family} model.")
    return spec.id


def _tensor(body: bytes, name: str, dims: int, max_rows: int = MAX_ROWS) -> torch.Tensor:
    """A float tensor from a request body, refused (ValueError) unless its shape and values are sane."""
    tensors, _ = wire.unpack(body)
    if name not in tensors:
        raise ValueError(f"the body has no tensor named {name!r}")
    tensor = tensors[name]
    if tensor.dim() != dims or not 1 <= len(tensor) <= max_rows or tensor.dtype != torch.float32:
        raise ValueError(f"{name} must be float32 with {dims} dimensions and 1 to {max_rows} rows")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return tensor


def _probe_milliseconds(probe: Callable[[], None]) -> dict:
    started = time.perf_counter()
    probe()
    return {"state": "ok", "milliseconds": round((time.perf_counter() - started) * 1000, 1)}


class Stopped(Exception):
    """The caller went away: a run stops at its next step."""


def error_event(error: BaseException) -> dict:
    """An error inside a stream, as pipelines/serving/transport.py reads it."""
    if isinstance(error, Stopped):
        return {"kind": "stopped", "message": "the caller went away"}
    if isinstance(error, ValueError):
        return {"kind": "invalid", "message": str(error)}
    if isinstance(error, TimeoutError):
        return {"kind": "timeout", "message": str(error)}
    if isinstance(error, ModelSourceError):
        return {"kind": "unavailable", "message": str(error)}
    logger.exception("a streamed request failed", exc_info=error)
    return {"kind": "failed", "message": f"{type(error).__name__} on the server (details in its log)"}


async def events_from_thread(work: Callable[[Callable[[dict], None], threading.Event], None]) -> AsyncIterator[dict]:
    """Run `work(emit, stop)` in a thread and yield what it emits; an exception becomes an error event.

    When the caller goes away (a closed page, a Stop button), `stop` is set and the work ends at its next step.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    done = object()
    stop = threading.Event()

    def emit(event: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def run() -> None:
        try:
            work(emit, stop)
        except Exception as error:
            emit({"error": error_event(error)})
        finally:
            emit(done)

    loop.run_in_executor(None, run)
    try:
        while (event := await queue.get()) is not done:
            yield event
    finally:
        stop.set()


# ---------------------------------------------------------------------------------------------
# One deployment per family


def _face_rows(requests: list) -> int:
    return sum(len(r) if isinstance(r, torch.Tensor) else r[1] for r in requests)


@serve.deployment(name="GAN", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class GANDeployment:
    """The DCGAN: faces for seeds or for latents; concurrent requests share forward passes."""

    def __init__(self) -> None:
        self.pipeline = _in_process_registry().load("gan-faces")
        self.serve_batching = True

    def reconfigure(self, config: dict) -> None:
        """`user_config`: serve_batching (False: the pipeline's own thread batching), max_batch_size (faces),
        batch_wait_timeout_s (0: a lone request runs at once, batches form while a pass runs)."""
        self.serve_batching = bool(config.get("serve_batching", True))
        self.faces.set_max_batch_size(min(MAX_ROWS, int(config.get("max_batch_size", MAX_ROWS))))
        self.faces.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.0)))

    async def sample(self, seed: int, count: int, truncation: float) -> bytes:
        from pipelines.core.limits import SEED

        request = (SEED.check(seed, "seed"), FACES.check(count, "count"), TRUNCATION.check(truncation, "truncation"))
        return wire.pack_images(await self._faces(request))

    async def generate(self, body: bytes) -> bytes:
        latents = _tensor(body, "latents", 4)
        if tuple(latents.shape[1:]) != (100, 1, 1):
            raise ValueError("latents must have the shape (N, 100, 1, 1)")
        return wire.pack_images(await self._faces(latents))

    async def _faces(self, request):
        if self.serve_batching:
            return await self.faces(request)
        return await asyncio.to_thread(self.pipeline.batcher, request)

    @serve.batch(max_batch_size=MAX_ROWS, batch_wait_timeout_s=0.0, batch_size_fn=_face_rows)
    async def faces(self, requests: list) -> list:
        # The pass runs in a thread, so the replica keeps taking requests, which form the next batch.
        return await asyncio.to_thread(self._faces_for, requests)

    def _faces_for(self, requests: list) -> list:
        from pipelines.gan.faces import truncated_latents

        latents = [r if isinstance(r, torch.Tensor) else truncated_latents(*r) for r in requests]
        images = self.pipeline.generate(torch.cat(latents))
        starts = [0, *torch.tensor([len(z) for z in latents]).cumsum(0).tolist()]
        return [images[a:b] for a, b in zip(starts, starts[1:])]

    def probe(self) -> dict:
        from pipelines.gan.faces import health_probe

        return _probe_milliseconds(lambda: health_probe(self.pipeline))

    def check_health(self) -> None:
        self.probe()  # Serve replaces a replica whose check fails


@serve.deployment(name="VAE", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
class VAEDeployment:
    """The VAEs (both trained here, and allow-listed Hub VAEs on first use): their encoder and decoder passes."""

    PRELOADED = ("vae-faces", "vae-digits")

    def __init__(self) -> None:
        self.registry = _in_process_registry()
        for model_id in self.PRELOADED:
            self.registry.load(model_id)
        self.serve_batching = True

    def reconfigure(self, config: dict) -> None:
        """`user_config`: serve_batching (False: the pipeline's own batching), max_batch_size (latents),
        batch_wait_timeout_s."""
        self.serve_batching = bool(config.get("serve_batching", True))
        self.decoded.set_max_batch_size(min(MAX_ROWS, int(config.get("max_batch_size", MAX_ROWS))))
        self.decoded.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.0)))

    def _pipeline(self, model_id: str):
        return self.registry.load(_model_of(self.registry, model_id, "vae"))

    def describe(self, model_id: str) -> dict:
        from pipelines.vae.pipeline import TrainedVAEPipeline

        pipeline = self._pipeline(model_id)
        if isinstance(pipeline, TrainedVAEPipeline):
            return {"kind": "trained", "settings": pipeline.settings}
        return {"kind": "hub", "image_size": pipeline.image_size}

    async def encode(self, model_id: str, body: bytes) -> bytes:
        pipeline = self._pipeline(model_id)
        pixels = _tensor(body, "input", 4, max_rows=MAX_ENCODE_ROWS)
        channels = pipeline.config.channels if hasattr(pipeline, "config") else 3
        if tuple(pixels.shape[1:]) != (channels, pipeline.image_size, pipeline.image_size):
            raise ValueError(
                f"{model_id} encodes images of shape ({channels}, {pipeline.image_size}, {pipeline.image_size})"
            )
        # The pipeline's encoder runner: the pass `encode_means` runs in-process, shared with concurrent callers.
        means = await asyncio.to_thread(pipeline._encoder, pixels)
        return wire.pack({"output": means})

    async def decode(self, model_id: str, body: bytes) -> bytes:
        model_id = _model_of(self.registry, model_id, "vae")
        pipeline = self.registry.load(model_id)
        latents = _tensor(body, "input", 2 if hasattr(pipeline, "latent_dim") else 4)
        if hasattr(pipeline, "latent_dim") and latents.shape[1] != pipeline.latent_dim:
            raise ValueError(f"{model_id} decodes latents of {pipeline.latent_dim} numbers")
        if self.serve_batching:
            pixels = await self.decoded((model_id, latents))
        else:
            pixels = await asyncio.to_thread(pipeline._decoder, latents)  # the pipeline's own batching
        return wire.pack({"output": pixels})

    @serve.batch(max_batch_size=MAX_ROWS, batch_wait_timeout_s=0.0, batch_size_fn=lambda r: sum(len(x[1]) for x in r))
    async def decoded(self, requests: list[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
        return await asyncio.to_thread(self._decode_together, requests)

    def _decode_together(self, requests: list[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
        """One decoder pass per model for all of a batch's requests; each gets its own rows back."""
        results: list[torch.Tensor | None] = [None] * len(requests)
        for model_id in {m for m, _ in requests}:
            indices = [i for i, (m, _) in enumerate(requests) if m == model_id]
            latents = [requests[i][1] for i in indices]
            # `_run_decoder` is the pass the pipeline's own batching runner makes for a batch of latents.
            pixels = self.registry.load(model_id)._run_decoder(torch.cat(latents))
            for index, rows in zip(indices, torch.split(pixels, [len(z) for z in latents])):
                results[index] = rows
        return results

    def probe(self, model_id: str) -> dict:
        from pipelines.vae.pipeline import health_probe

        pipeline = self._pipeline(model_id)
        return _probe_milliseconds(lambda: health_probe(pipeline))

    def check_health(self) -> None:
        self.probe(self.PRELOADED[0])


GENERATE_ARGUMENTS = {
    "prompt",
    "negative_prompt",
    "steps",
    "guidance_scale",
    "seed",
    "scheduler_name",
    "count",
    "max_seconds",
}


@serve.deployment(name="TextToImage", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=2)
class TextToImageDeployment:
    """Text-to-image: runs `pipelines.diffusion.text_to_image.generate` and streams each step for progress."""

    def __init__(self) -> None:
        self.registry = _in_process_registry()
        self.registry.load("shapes-world")

    async def generate(self, arguments: dict) -> AsyncIterator[dict]:
        from pipelines.diffusion.text_to_image import generate

        arguments = dict(arguments) if isinstance(arguments, dict) else {}
        pipeline = self.registry.load(_model_of(self.registry, str(arguments.pop("model", "")), "diffusion"))
        unknown = set(arguments) - GENERATE_ARGUMENTS
        if unknown:
            raise ValueError(f"unknown arguments: {', '.join(sorted(unknown))}")

        def work(emit: Callable[[dict], None], stop: threading.Event) -> None:
            def on_step(done: int, total: int) -> None:
                if stop.is_set():
                    raise Stopped()
                emit({"step": done, "total": total})

            result = generate(pipeline, **arguments, on_step=on_step)
            emit(
                {
                    "result": {
                        "images": wire.to_text(wire.pack_images(result.images)),
                        "strip": wire.to_text(wire.pack_images(result.strip)),
                        "steps_shown": result.steps_shown,
                        "strip_label": result.strip_label,
                        "withheld": result.withheld,
                    }
                }
            )

        async for event in events_from_thread(work):
            yield event

    def probe(self, model_id: str) -> dict:
        from pipelines.diffusion.text_to_image import health_probe

        pipeline = self.registry.load(_model_of(self.registry, model_id, "diffusion"))
        return _probe_milliseconds(lambda: health_probe(pipeline))


@serve.deployment(name="Text", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=8)
class TextDeployment:
    """The text models, as an OpenAI-compatible server over the app's own `TextGenerator`."""

    def __init__(self) -> None:
        self.registry = _in_process_registry()
        from pipelines.text.options import BUILTIN_MODEL

        self.registry.load(BUILTIN_MODEL)

    def models(self) -> list[str]:
        return [model_id for _, model_id in self.registry.choices("text")]

    def _request(self, kind: str, body: Any):
        request = openai_server.parse_request(kind, body, self.models())
        return request, self.registry.load(request.model)

    async def complete(self, kind: str, body: Any) -> dict:
        """The response, or {"error": ..., "status": 400} for a refused request (returned, not raised: an
        exception's own fields do not survive the trip back to the gateway)."""
        try:
            request, generator = self._request(kind, body)
            return await asyncio.to_thread(openai_server.complete, generator, request)
        except openai_server.RequestError as error:
            return error.as_json() | {"status": 400}
        except ValueError as error:  # e.g. an empty prompt
            return openai_server.RequestError(str(error)).as_json() | {"status": 400}

    async def stream(self, kind: str, body: Any) -> AsyncIterator[dict]:
        """Chunks of a streamed answer; the first item is {"error": ..., "status": 400} for a refused request."""
        try:
            request, generator = self._request(kind, body)
        except openai_server.RequestError as error:
            yield error.as_json() | {"status": 400}
            return

        def work(emit: Callable[[dict], None], stop: threading.Event) -> None:
            for chunk in openai_server.stream_chunks(generator, request, stop):
                emit(chunk)

        async for event in events_from_thread(work):
            yield event

    def probe(self, model_id: str) -> dict:
        from pipelines.text.generation import health_probe

        generator = self.registry.load(_model_of(self.registry, model_id, "text"))
        return _probe_milliseconds(lambda: health_probe(generator))


# ---------------------------------------------------------------------------------------------
# The gateway


async def _result(response) -> Any:
    return await response


class DeadlinePassed(Exception):
    """The gateway's own deadline for a call (apart from a TimeoutError the call itself raised)."""


async def _within(awaitable, seconds: float) -> Any:
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        raise DeadlinePassed()
    return task.result()


def _ndjson(event: dict) -> str:
    return json.dumps(event) + "\n"


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event)}\n\n"


async def _with_done(events) -> AsyncIterator[str]:
    async for event in events:
        yield event
    yield "data: [DONE]\n\n"


api = FastAPI(title="GenAI Playground models", docs_url=None, redoc_url=None)


class CallFailed(Exception):
    """A family call that ends in an HTTP error: its status, kind and message."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _error_response(error: CallFailed, openai_style: bool = False) -> JSONResponse:
    if openai_style:
        body = {"error": {"message": error.message, "type": error.kind, "param": None, "code": None}}
    else:
        body = {"detail": error.message, "kind": error.kind}
    return JSONResponse(body, status_code=error.status)


def _failure(error: BaseException, service: str) -> CallFailed:
    """The HTTP answer for an exception a family call raised (the replica's own message, without Ray's traceback)."""
    cause = getattr(error, "cause", None)
    message = str(cause if isinstance(cause, BaseException) else error)
    if isinstance(error, openai_server.RequestError):
        return CallFailed(400, "invalid_request_error", message)
    if isinstance(error, ValueError):
        return CallFailed(400, "invalid", message)
    if isinstance(error, TimeoutError):
        return CallFailed(504, "timeout", message or f"{service} did not answer within {CALL_SECONDS:.0f} s.")
    if isinstance(error, BackPressureError):
        return CallFailed(503, "busy", f"{service}: every replica's queue is full.")
    if isinstance(error, RayActorError | ActorUnavailableError | DeploymentUnavailableError):
        return CallFailed(
            503, "lost_replica", f"{service} lost its replica and none took over in time; try again in a minute."
        )
    if isinstance(error, ModelSourceError):
        return CallFailed(503, "unavailable", message)
    logger.exception("%s failed", service, exc_info=error)
    return CallFailed(500, "failed", f"{type(error).__name__} in {service} (details in the server log)")


def _lost_replica(error: BaseException) -> bool:
    return isinstance(error, RayActorError | ActorUnavailableError | DeploymentUnavailableError)


@serve.deployment(name="Gateway", ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256)
@serve.ingress(api)
class Gateway:
    """Routes HTTP to the family deployments, retries calls whose replica died, and reports health."""

    def __init__(
        self, gan: DeploymentHandle, vae: DeploymentHandle, text_to_image: DeploymentHandle, text: DeploymentHandle
    ):
        self.gan, self.vae, self.text_to_image, self.text = gan, vae, text_to_image, text

    async def _call(self, handle: DeploymentHandle, method: str, *args, service: str) -> Any:
        """A family call with a deadline, tried again (on a live replica) when its replica died."""
        for attempt in range(LOST_REPLICA_TRIES):
            response = getattr(handle, method).remote(*args)
            try:
                return await _within(_result(response), CALL_SECONDS)
            except DeadlinePassed:
                response.cancel()
                raise CallFailed(504, "timeout", f"{service} did not answer within {CALL_SECONDS:.0f} s.") from None
            except Exception as error:
                if _lost_replica(error) and attempt + 1 < LOST_REPLICA_TRIES:
                    logger.warning("%s lost a replica (%s); trying again", service, type(error).__name__)
                    await asyncio.sleep(LOST_REPLICA_PAUSE_SECONDS * (attempt + 1))
                    continue
                raise _failure(error, service) from error
        raise AssertionError("unreachable: the last try returns or raises")

    async def _binary(self, handle, method, *args, service: str) -> Response:
        try:
            body = await self._call(handle, method, *args, service=service)
        except CallFailed as error:
            return _error_response(error)
        return Response(body, media_type=wire.CONTENT_TYPE)

    async def _json(self, handle, method, *args, service: str) -> Response:
        try:
            return JSONResponse(await self._call(handle, method, *args, service=service))
        except CallFailed as error:
            return _error_response(error)

    async def _stream(self, handle, method, *args, service: str, encode: Callable[[dict], str]):
        """The first event decides the status (an error before any output is an HTTP error); then it streams.
        A replica lost before the first event is tried again; one lost mid-stream ends the stream with an error."""
        for attempt in range(LOST_REPLICA_TRIES):
            events = getattr(handle.options(stream=True), method).remote(*args)
            try:
                first = await _within(events.__anext__(), CALL_SECONDS)
                break
            except DeadlinePassed:
                events.cancel()
                raise CallFailed(504, "timeout", f"{service} did not start answering in time.") from None
            except StopAsyncIteration:
                raise CallFailed(500, "failed", f"{service} ended without an answer.") from None
            except Exception as error:
                if _lost_replica(error) and attempt + 1 < LOST_REPLICA_TRIES:
                    await asyncio.sleep(LOST_REPLICA_PAUSE_SECONDS * (attempt + 1))
                    continue
                raise _failure(error, service) from error
        if "error" in first:
            error = first["error"]
            status = first.get("status") or (400 if error.get("kind") in ("invalid", "invalid_request_error") else 500)
            kind = error.get("kind") or error.get("type", "failed")
            raise CallFailed(status, kind, error.get("message", ""))

        async def body():
            try:
                yield encode(first)
                while True:
                    try:
                        event = await _within(events.__anext__(), CALL_SECONDS)
                    except StopAsyncIteration:
                        return
                    yield encode(event)
            except Exception as error:  # a lost replica or a deadline mid-stream: say so, then end
                failure = _failure(TimeoutError() if isinstance(error, DeadlinePassed) else error, service)
                yield encode({"error": {"kind": failure.kind, "message": failure.message}})
            finally:
                events.cancel()  # a closed connection stops the family's work

        return body()

    # ------------------------------------------------------------------ routes

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """Every deployment's state and replicas (from Serve's controller); 503 when one is unhealthy."""
        status = await asyncio.to_thread(serve.status)
        app_name = serve.get_replica_context().app_name
        application = status.applications.get(app_name)
        deployments = {
            name: {
                "status": str(getattr(d.status, "value", d.status)),
                "replicas": {str(getattr(k, "value", k)): n for k, n in d.replica_states.items()},
                "message": d.message,
            }
            for name, d in (application.deployments.items() if application else [])
        }
        failing = [n for n, d in deployments.items() if d["status"] in ("UNHEALTHY", "DEPLOY_FAILED")]
        body = {
            "status": "unhealthy" if failing else "ok",
            "application": app_name,
            "application_status": str(getattr(application.status, "value", "")) if application else "missing",
            "failing": failing,
            "deployments": deployments,
        }
        return JSONResponse(body, status_code=503 if failing else 200)

    @api.get("/gan/healthz")
    async def gan_health(self) -> Response:
        return await self._json(self.gan, "probe", service="The GAN deployment")

    @api.post("/gan/sample")
    async def gan_sample(self, request: Request) -> Response:
        arguments = await request.json()
        if not isinstance(arguments, dict):
            return _error_response(CallFailed(400, "invalid", "the body must be a JSON object"))
        seed, count, truncation = (arguments.get(k) for k in ("seed", "count", "truncation"))
        return await self._binary(self.gan, "sample", seed, count, truncation, service="The GAN deployment")

    @api.post("/gan/generate")
    async def gan_generate(self, request: Request) -> Response:
        return await self._binary(self.gan, "generate", await request.body(), service="The GAN deployment")

    @api.get("/vae/describe")
    async def vae_describe(self, model: str) -> Response:
        return await self._json(self.vae, "describe", model, service="The VAE deployment")

    @api.get("/vae/healthz")
    async def vae_health(self, model: str = "vae-faces") -> Response:
        return await self._json(self.vae, "probe", model, service="The VAE deployment")

    @api.post("/vae/encode")
    async def vae_encode(self, model: str, request: Request) -> Response:
        return await self._binary(self.vae, "encode", model, await request.body(), service="The VAE deployment")

    @api.post("/vae/decode")
    async def vae_decode(self, model: str, request: Request) -> Response:
        return await self._binary(self.vae, "decode", model, await request.body(), service="The VAE deployment")

    @api.get("/text-to-image/healthz")
    async def text_to_image_health(self, model: str = "shapes-world") -> Response:
        return await self._json(self.text_to_image, "probe", model, service="The text-to-image deployment")

    @api.post("/text-to-image/generate")
    async def text_to_image_generate(self, request: Request) -> Response:
        service = "The text-to-image deployment"
        try:
            body = await self._stream(
                self.text_to_image, "generate", await request.json(), service=service, encode=_ndjson
            )
        except CallFailed as error:
            return _error_response(error)
        return StreamingResponse(body, media_type="application/x-ndjson")

    @api.get("/text/healthz")
    async def text_health(self, model: str = "smollm2-135m") -> Response:
        return await self._json(self.text, "probe", model, service="The text deployment")

    @api.get("/v1/models")
    async def list_models(self) -> Response:
        try:
            models = await self._call(self.text, "models", service="The text deployment")
        except CallFailed as error:
            return _error_response(error, openai_style=True)
        return JSONResponse(openai_server.model_list(models))

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self._completion("chat", request)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await self._completion("completion", request)

    async def _completion(self, kind: str, request: Request) -> Response:
        service = "The text deployment"
        try:
            body = await request.json()
        except ValueError:
            return _error_response(CallFailed(400, "invalid_request_error", "The body is not JSON."), True)
        try:
            if isinstance(body, dict) and body.get("stream"):
                events = await self._stream(self.text, "stream", kind, body, service=service, encode=_sse)
                return StreamingResponse(_with_done(events), media_type="text/event-stream")
            response = await self._call(self.text, "complete", kind, body, service=service)
            return JSONResponse(response, status_code=response.pop("status", 200))
        except CallFailed as error:
            return _error_response(error, openai_style=True)


def build_application(options: dict[str, dict] | None = None):
    """The application, each deployment with its settings from the config (by deployment name)."""
    options = options or {}

    def bound(deployment, *args):
        return deployment.options(**options.get(deployment.name, {})).bind(*args)

    return bound(
        Gateway,
        bound(GANDeployment),
        bound(VAEDeployment),
        bound(TextToImageDeployment),
        bound(TextDeployment),
    )


# What deploy/serve_config.yaml's import_path names; the config's settings override the defaults above.
app = build_application()
