"""The built-in models' health: loaded once through here, disabled when loading fails, probed for /healthz.

A model that fails to load (missing pack, corrupt weights) is remembered as failed, so every later request
gets the same clear message at once instead of retrying a slow or broken load, and the other models keep
working. `check_health()` runs a tiny inference on each loaded model (never loads one) and caches the
answer for a few seconds, so frequent probes cannot load the machine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pipelines.weights import ModelSourceError

logger = logging.getLogger(__name__)

GAN_FACES = "GAN faces (DCGAN)"
VAE_FACES = "VAE faces"
VAE_DIGITS = "VAE digits"
TEXT_LM = "SmolLM2-135M (text generation)"
TEXT_TO_IMAGE = "Text-to-image (shapes world)"
NGRAM = "n-gram"
HEALTH_CACHE_SECONDS = 5.0


class ModelUnavailable(ModelSourceError):
    """A built-in model failed to load and stays switched off until the app restarts (message for users)."""


def _load_gan():
    from pipelines.gan import face_pipeline

    return face_pipeline()


def _probe_gan(pipeline) -> None:
    device, dtype = pipeline.device_choice.device, pipeline.device_choice.dtype
    with torch.inference_mode():
        faces = pipeline.generator(torch.zeros(1, 100, 1, 1, device=device, dtype=dtype))  # one face
    _expect(faces, (1, 3, 64, 64))


def _load_vae(source: str) -> Callable[[], Any]:
    def load():
        from pipelines.vae import load_vae

        return load_vae(source)

    return load


def _probe_vae(pipeline) -> None:
    choice = pipeline.device_choice
    with torch.inference_mode():  # decode one code: the origin of the latent space
        image = pipeline.model.decode(torch.zeros(1, pipeline.latent_dim, device=choice.device, dtype=choice.dtype))
    _expect(image, (1, image.shape[1], pipeline.image_size, pipeline.image_size))


def _load_text_lm():
    from pipelines.text_generation import BUILTIN_MODEL, load_text_generator

    return load_text_generator(BUILTIN_MODEL)


def _probe_text_lm(generator) -> None:
    tokenizer = generator.tokenizer
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    # A plain forward pass, not `generate`: it needs no lock, so a user's long generation cannot block it.
    with torch.inference_mode():
        logits = generator.model(input_ids=torch.tensor([[token or 0]], device=generator.device)).logits
    _expect(logits, (1, 1, logits.shape[-1]))


def _load_text_to_image():
    from pipelines.text_to_image import LOCAL_MODEL, load_text_to_image

    return load_text_to_image(LOCAL_MODEL)


def _probe_text_to_image(pipeline) -> None:
    from pipelines.text_to_image import with_scheduler

    runner = with_scheduler(pipeline, "DDIM")  # a private scheduler: users' runs share the networks only
    generator = torch.Generator().manual_seed(0)
    output = runner("a red circle", num_inference_steps=1, guidance_scale=0.0, generator=generator, output_type="pt")
    _expect(output.images, (1, 3, output.images.shape[-2], output.images.shape[-1]))


def _probe_ngram(_: None = None) -> None:
    from pipelines.ngram import NgramModel

    words = NgramModel.fit("the cat sat on the mat . the dog sat on the rug .", 2).generate("the", 3, seed=0).words
    if not words:
        raise RuntimeError("the n-gram model generated no words")


def _expect(tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise RuntimeError(f"output shape {tuple(tensor.shape)}, expected {shape}")
    if not torch.isfinite(tensor).all():
        raise RuntimeError("output holds NaN or infinite values")


@dataclass
class TrackedModel:
    """A built-in model: how to load it, how to probe it, and what happened so far."""

    name: str
    load: Callable[[], Any]
    probe: Callable[[Any], None]
    needs_loading: bool = True  # the n-gram model has no weights: always probed
    model: Any = None
    failure: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _builtin_models() -> dict[str, TrackedModel]:
    models = [
        TrackedModel(GAN_FACES, _load_gan, _probe_gan),
        TrackedModel(VAE_FACES, _load_vae("faces"), _probe_vae),
        TrackedModel(VAE_DIGITS, _load_vae("digits"), _probe_vae),
        TrackedModel(TEXT_LM, _load_text_lm, _probe_text_lm),
        TrackedModel(TEXT_TO_IMAGE, _load_text_to_image, _probe_text_to_image),
        TrackedModel(NGRAM, lambda: None, _probe_ngram, needs_loading=False),
    ]
    return {model.name: model for model in models}


MODELS: dict[str, TrackedModel] = _builtin_models()


def load_model(name: str) -> Any:
    """The built-in model `name`, loaded once; a failed load switches it off with a message naming it."""
    tracked = MODELS[name]
    if tracked.failure:
        raise ModelUnavailable(tracked.failure)
    if tracked.model is not None:
        return tracked.model
    with tracked.lock:  # the first users of a model wait for one load, not one each
        if tracked.failure:
            raise ModelUnavailable(tracked.failure)
        if tracked.model is None:
            try:
                tracked.model = tracked.load()
            except torch.cuda.OutOfMemoryError:
                raise  # memory may be free on the next try: not a broken model
            except Exception as error:
                logger.exception("%s failed to load", name)  # the details stay in the server log
                tracked.failure = (
                    f"{name} is switched off: its weights could not be loaded ({type(error).__name__}: "
                    f"missing, incomplete or corrupt files). The other models still work; the host can "
                    f"restore the weights (see the README) and restart the app."
                )
                raise ModelUnavailable(tracked.failure) from error
    return tracked.model


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError other backends (MPS) raise when memory runs out."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


def free_accelerator_memory() -> None:
    """Give cached GPU memory back after an out-of-memory error, so the next request can run."""
    torch.cuda.empty_cache()  # a no-op where CUDA was never initialised
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()


@dataclass(frozen=True)
class ModelHealth:
    name: str
    state: str  # "ok", "not loaded", "failed to load" or "failing"
    detail: str = ""
    milliseconds: float | None = None


@dataclass(frozen=True)
class HealthReport:
    models: tuple[ModelHealth, ...]
    checked_at: float  # time.time() of the check

    @property
    def healthy(self) -> bool:
        return all(model.state in ("ok", "not loaded") for model in self.models)

    def as_json(self) -> dict:
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "failing": [m.name for m in self.models if m.state not in ("ok", "not loaded")],
            "models": {
                m.name: {"state": m.state, "detail": m.detail, "milliseconds": m.milliseconds} for m in self.models
            },
            "checked_at": self.checked_at,
            "cached_for_seconds": HEALTH_CACHE_SECONDS,
        }


def _probe(tracked: TrackedModel) -> ModelHealth:
    if tracked.failure:
        return ModelHealth(tracked.name, "failed to load", tracked.failure)
    if tracked.needs_loading and tracked.model is None:
        return ModelHealth(tracked.name, "not loaded", "loads on first use of its tab")
    started = time.perf_counter()
    try:
        tracked.probe(tracked.model)
    except Exception as error:
        logger.exception("health probe of %s failed", tracked.name)
        return ModelHealth(tracked.name, "failing", f"a tiny inference failed: {type(error).__name__}")
    return ModelHealth(tracked.name, "ok", "a tiny inference ran", round((time.perf_counter() - started) * 1000, 1))


_report_lock = threading.Lock()
_last_report: HealthReport | None = None


def check_health(max_age: float = HEALTH_CACHE_SECONDS) -> HealthReport:
    """Probe every loaded model, or reuse a report younger than `max_age` seconds.

    One check runs at a time; probes arriving meanwhile wait for it and share its report.
    """
    global _last_report
    with _report_lock:
        if _last_report is None or time.time() - _last_report.checked_at > max_age:
            _last_report = HealthReport(tuple(_probe(m) for m in MODELS.values()), time.time())
        return _last_report
