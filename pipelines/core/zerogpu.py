"""Hugging Face ZeroGPU: where the `spaces` package is importable, the app's GPU work runs inside `spaces.GPU`.

On a ZeroGPU Space a GPU is attached to the process only while a function decorated with
`spaces.GPU(duration=...)` runs; models are placed on CUDA as anywhere else (`select_device` picks it). After the
app is built, `wrap_gpu_events(app)` decorates each event handler that runs a model once, in one place (as
demos/faults.py guards every handler): by the tab kit's convention those are the events in a model's concurrency
group; `preload_models()` loads the models at start-up, as ZeroGPU requires. Where `spaces` is not importable
nothing changes. This module reads the built app's event list but
imports no Gradio.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

# How long one call may hold the GPU, per concurrency group (the tabs' model groups), in seconds: each tab's own
# time limit plus loading. ZeroGPU queues shorter requests first, so these stay as short as the work allows.
GPU_SECONDS = {
    "text-to-image": 90,  # demos/text_to_image.py stops a generation after 60 s
    "text-lm": 90,  # pipelines/text/options.py: at most 60 s a generation on CUDA
    "gan-faces": 30,
    "vae": 45,  # the first use of a VAE also encodes its examples for the latent map
}
DEFAULT_GPU_SECONDS = 60  # a model group this table does not name yet (a new tab)


def spaces_gpu() -> Callable | None:
    """`spaces.GPU` where the package is importable (a ZeroGPU Space), else None."""
    try:
        import spaces
    except ImportError:
        return None
    return getattr(spaces, "GPU", None)


def on_gpu(handler: Callable, duration: int, gpu: Callable) -> Callable:
    """`handler` run inside `gpu(duration=duration)`, still a generator where it was one, with its signature
    (Gradio reads it for gr.Progress and gr.SelectData) and its marks (`is_guarded`)."""
    decorated = gpu(duration=duration)(handler)
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def gpu_generator(*args, **kwargs):
            yield from decorated(*args, **kwargs)

        wrapper = gpu_generator
    else:

        @functools.wraps(handler)
        def gpu_function(*args, **kwargs):
            return decorated(*args, **kwargs)

        wrapper = gpu_function
    wrapper.gpu_seconds = duration
    return wrapper


def preload_models() -> list[str]:
    """Load every built-in model now, in the main process, where `spaces` is importable; the ids loaded.

    A `spaces.GPU` call runs in a worker that ZeroGPU forks from the main process and discards afterwards, so a
    model loaded inside one would be loaded again on every call: ZeroGPU's rule is to load at start-up, placed on
    CUDA, and let it attach the GPU per call. A model that fails to load is switched off with its message, as in
    any mode.
    """
    if spaces_gpu() is None:
        return []
    from pipelines.core import registry
    from pipelines.core.weights import ModelSourceError

    loaded = []
    for spec in registry.MODELS.builtin_specs():
        if spec.needs_loading and not spec.remote:
            try:
                registry.load(spec.id)
                loaded.append(spec.id)
            except ModelSourceError:
                pass  # switched off: its tab says so
    return loaded


def _innermost(handler: Callable) -> Callable:
    while hasattr(handler, "__wrapped__"):
        handler = handler.__wrapped__
    return handler


def runs_a_model(block_function) -> bool:
    """Whether an event runs a model: queued, in a concurrency group the tab named (Gradio's default group is
    the id of the handler itself)."""
    handler = block_function.fn
    if handler is None or not getattr(block_function, "queue", True):
        return False
    return block_function.concurrency_id != str(id(_innermost(handler)))


def wrap_gpu_events(app, gpu: Callable | None = None) -> dict[str, int]:
    """Decorate every model-running event handler of a built Gradio app with `spaces.GPU` (or `gpu`, in tests).

    Returns {handler name: GPU seconds} of what was wrapped: nothing where `spaces` is not importable.
    """
    gpu = gpu or spaces_gpu()
    if gpu is None:
        return {}
    wrapped = {}
    for block_function in app.fns.values():
        handler = block_function.fn
        if not runs_a_model(block_function) or getattr(handler, "gpu_seconds", None):
            continue
        if inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler):
            continue  # none here; spaces.GPU runs plain functions and generators
        duration = GPU_SECONDS.get(block_function.concurrency_id, DEFAULT_GPU_SECONDS)
        block_function.fn = on_gpu(handler, duration, gpu)
        wrapped[getattr(handler, "__name__", repr(handler))] = duration
    return wrapped
