"""Faults every handler can meet, turned into clear messages: a model switched off, out of memory, a time limit.

`guard_events(app)` wraps every event handler of the built app once, so each tab gets the same treatment
without repeating it in every handler. The wrapper also tells the text decoder that a request is computing
(it then decodes on one core) and hands the request thread's CPU workers back when it ends
(pipelines/core/cpu_threads.py); handlers marked `decoder_bound` only wait for the decoder and do not count.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator

import gradio as gr

from pipelines.core import cpu_threads
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


def decoder_bound(handler: Callable) -> Callable:
    """Marks a handler whose work is the text decoder's (it streams tokens): it does not count as other work."""
    handler.waits_on_decoder = True
    return handler


def guarded(handler: Callable) -> Callable:
    """`handler` (plain function or generator) with model, memory and time-limit faults as gr.Error."""
    computing = cpu_threads.heavy_work
    if getattr(handler, "waits_on_decoder", False):
        computing = _hands_workers_back
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)  # keeps the signature Gradio reads (gr.Progress, gr.SelectData, ...)
        def guarded_generator(*args, **kwargs):
            steps = handler(*args, **kwargs)
            try:
                while True:
                    with _faults_as_messages(), computing():  # counted while it computes, not while suspended
                        item = next(steps, _FINISHED)
                    if item is _FINISHED:
                        return
                    yield item
            finally:
                steps.close()  # a Stop or a closed page closes us: the handler's own clean-up runs

        guarded_generator.is_guarded = True
        return guarded_generator

    @functools.wraps(handler)
    def guarded_function(*args, **kwargs):
        with _faults_as_messages(), computing():
            return handler(*args, **kwargs)

    guarded_function.is_guarded = True
    return guarded_function


_FINISHED = object()  # what next() gives back once a handler's generator has ended


@contextlib.contextmanager
def _faults_as_messages() -> Iterator[None]:
    try:
        yield
    except gr.Error:
        raise
    except Exception as error:
        user_error = _as_user_error(error)
        if user_error is None:
            raise
        raise user_error from None


@contextlib.contextmanager
def _hands_workers_back() -> Iterator[None]:
    try:
        yield
    finally:
        cpu_threads.release_workers()


def guard_events(app: gr.Blocks) -> None:
    """Wrap every Python event handler of `app` with `guarded` (async handlers and JS-only events are left)."""
    for block_function in app.fns.values():
        handler = block_function.fn
        if handler is None or getattr(handler, "is_guarded", False):
            continue
        if inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler):
            continue
        block_function.fn = guarded(handler)
