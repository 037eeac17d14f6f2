"""Faults every handler can meet, turned into clear messages: a model switched off, out of memory, a time limit.

`guard_events(app)` wraps every event handler of the built app once, so each tab gets the same treatment
without repeating it in every handler.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import gradio as gr

from pipelines.core.device import free_accelerator_memory, is_out_of_memory
from pipelines.core.weights import ModelSourceError

OUT_OF_MEMORY_MESSAGE = (
    "The model ran out of memory on this machine. Lower the size or the number of images, faces, frames "
    "or tokens (the batch) and try again."
)


def _as_user_error(error: Exception) -> gr.Error | None:
    """The gr.Error a user should see for `error`, or None when it is a bug (Gradio then says "Error")."""
    if isinstance(error, ModelSourceError):  # includes a model switched off after a failed load
        return gr.Error(str(error))
    if is_out_of_memory(error):
        free_accelerator_memory()  # so the next request finds the memory this one held
        return gr.Error(OUT_OF_MEMORY_MESSAGE)
    if isinstance(error, TimeoutError):  # pipelines word their time-limit errors for users
        return gr.Error(str(error))
    return None


def guarded(handler: Callable) -> Callable:
    """`handler` (plain function or generator) with model, memory and time-limit faults as gr.Error."""
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)  # keeps the signature Gradio reads (gr.Progress, gr.SelectData, ...)
        def guarded_generator(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:
                user_error = _as_user_error(error)
                if user_error is None:
                    raise
                raise user_error from None

        guarded_generator.is_guarded = True
        return guarded_generator

    @functools.wraps(handler)
    def guarded_function(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:
            user_error = _as_user_error(error)
            if user_error is None:
                raise
            raise user_error from None

    guarded_function.is_guarded = True
    return guarded_function


def guard_events(app: gr.Blocks) -> None:
    """Wrap every Python event handler of `app` with `guarded` (async handlers and JS-only events are left)."""
    for block_function in app.fns.values():
        handler = block_function.fn
        if handler is None or getattr(handler, "is_guarded", False):
            continue
        if inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler):
            continue
        block_function.fn = guarded(handler)
