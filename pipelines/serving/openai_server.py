"""OpenAI-compatible completions (`/v1/chat/completions`, `/v1/completions`) over the app's `TextGenerator`.

Built only on the generator's public interface, `stream(prompt, settings, stop_event)` and `explain(generation)`,
so whatever decoder sits behind it (one generation at a time today, continuous batching later) serves these
routes too. Text streams as the generator writes it. Log-probabilities come from `explain` (the model's own
next-token distribution, before temperature and the other controls reshape it), so they arrive in the last
chunk of a stream, with the finish reason; a client that concatenates the chunks' `logprobs.content` (as
OpenAI's and vLLM's clients do) gets one entry per token. `return_token_ids` (vLLM's name) adds the ids.

Nothing here imports torch or a web framework: `parse_request` checks a request body against the text
family's limits, the generators turn a `TextGenerator` run into response objects.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipelines.core.limits import SEED, Range
from pipelines.text.options import MAX_NEW_TOKENS, REPETITION_PENALTY, TEMPERATURE, TOP_K, TOP_P

KINDS = ("chat", "completion")
TOP_LOGPROBS = Range(0, 20, 0)  # alternatives per token a chat request may ask for
COMPLETION_LOGPROBS = Range(0, 5, 0)  # the same for /v1/completions (OpenAI's limit)
LOGPROB_FLOOR = -9999.0  # what vLLM reports for a probability of zero
ROLES = ("system", "user", "assistant")


class RequestError(ValueError):
    """A request the server refuses (HTTP 400): the message names the field and its limit."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value"):
        super().__init__(message)
        self.param = param
        self.code = code

    def as_json(self) -> dict:
        return {
            "error": {"message": str(self), "type": "invalid_request_error", "param": self.param, "code": self.code}
        }


@dataclass(frozen=True)
class TextRequest:
    """A checked request: what to run and what to send back."""

    kind: str  # "chat" or "completion"
    model: str
    messages: tuple[tuple[str, str], ...] = ()  # (role, content) for chat
    prompt: str = ""  # for completion
    settings: dict[str, Any] = field(default_factory=dict)  # SamplingSettings fields, checked
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None  # alternatives per token; None: no log-probabilities
    return_token_ids: bool = False
    continue_final_message: bool = False  # vLLM's: the last (assistant) message is the answer so far, continued
    precision: str | None = None  # the app's own: the weights' number format, where the generator offers several

    @property
    def single_user_message(self) -> tuple[str, str] | None:
        """(prompt, answer so far) of a chat that is one user message (the app's Chat mode), perhaps followed by
        the assistant's answer so far to continue; else None."""
        if self.kind != "chat" or not self.messages:
            return None
        messages = list(self.messages)
        prefix = messages.pop()[1] if self.continue_final_message and messages[-1][0] == "assistant" else ""
        if len(messages) == 1 and messages[0][0] == "user":
            return messages[0][1], prefix
        return None


def _checked(body: dict, name: str, limits: Range, default):
    value = body.get(name)
    if value is None:
        return default
    try:
        return limits.check(value, name)
    except ValueError as error:
        raise RequestError(str(error), name) from None


def _messages(body: dict) -> tuple[tuple[str, str], ...]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list of {role, content} objects.", "messages")
    parsed = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # OpenAI's content parts: text parts only
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise RequestError("Only text content parts are supported.", f"messages[{index}].content")
            content = "".join(str(p.get("text", "")) for p in content)
        if role not in ROLES or not isinstance(content, str):
            raise RequestError(
                f"messages[{index}] needs a role ({', '.join(ROLES)}) and text content.", f"messages[{index}]"
            )
        parsed.append((role, content))
    return tuple(parsed)


def _precision(body: dict) -> str | None:
    precision = body.get("precision")
    if precision is not None and not isinstance(precision, str):
        raise RequestError("precision must be a string naming a number format, e.g. float32.", "precision")
    return precision or None


def parse_request(kind: str, body: Any, models: list[str]) -> TextRequest:
    """A RequestError (HTTP 400) naming the first field outside its limits, else the checked request."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    model = body.get("model")
    if model not in models:
        raise RequestError(
            f"The model {model!r} does not exist here; this server serves: {', '.join(models)}.",
            "model",
            "model_not_found",
        )
    if body.get("n", 1) != 1:
        raise RequestError("n must be 1: one answer per request.", "n")
    if body.get("stop") not in (None, "", []):
        raise RequestError("Stop sequences are not supported by this server.", "stop")
    if kind == "chat":
        messages, prompt = _messages(body), ""
        if body.get("logprobs"):
            logprobs = _checked(body, "top_logprobs", TOP_LOGPROBS, 0)
        elif body.get("top_logprobs"):
            raise RequestError("top_logprobs needs logprobs set to true.", "top_logprobs")
        else:
            logprobs = None
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    else:
        messages, prompt = (), body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("prompt must be one string.", "prompt")
        logprobs = _checked(body, "logprobs", COMPLETION_LOGPROBS, None)
        max_tokens = body.get("max_tokens")
    settings = dict(
        max_new_tokens=_checked({"max_tokens": max_tokens}, "max_tokens", MAX_NEW_TOKENS, MAX_NEW_TOKENS.default),
        temperature=_checked(body, "temperature", TEMPERATURE, 1.0),  # OpenAI's default
        top_p=_checked(body, "top_p", TOP_P, 1.0),
        top_k=_checked(body, "top_k", TOP_K, 0),  # vLLM's extension; 0: off
        repetition_penalty=_checked(body, "repetition_penalty", REPETITION_PENALTY, 1.0),  # vLLM's extension
        seed=_checked(body, "seed", SEED, 0),
    )
    stream_options = body.get("stream_options") or {}
    return TextRequest(
        kind=kind,
        model=model,
        messages=messages,
        prompt=prompt,
        settings=settings,
        stream=bool(body.get("stream", False)),
        include_usage=bool(stream_options.get("include_usage", False)) if isinstance(stream_options, dict) else False,
        logprobs=logprobs,
        return_token_ids=bool(body.get("return_token_ids", False)),
        continue_final_message=kind == "chat" and bool(body.get("continue_final_message", False)),
        precision=_precision(body),
    )


# ---------------------------------------------------------------------------------------------
# Running a request


def prompt_and_mode(generator, request: TextRequest) -> tuple[str, bool, str]:
    """(prompt, chat, prefix) for `generator.stream`: the app's Chat mode for one user message (continuing the
    answer so far, if given), the model's chat template rendered as text for longer conversations, the raw prompt
    for completions."""
    if request.kind == "completion":
        return request.prompt, False, ""
    single = request.single_user_message
    if single is not None:
        return single[0], True, single[1]
    messages = [{"role": role, "content": content} for role, content in request.messages]
    rendered = generator.tokenizer.apply_chat_template(
        messages,
        add_generation_prompt=not request.continue_final_message,
        continue_final_message=request.continue_final_message,
        tokenize=False,
    )
    return rendered, False, ""


def _stop_ids(generator) -> set[int]:
    """Token ids that end an answer (the tokenizer's and the generation config's end-of-sequence ids)."""
    ids = {getattr(generator.tokenizer, "eos_token_id", None)}
    configured = getattr(getattr(getattr(generator, "model", None), "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


def _logprob(probability: float) -> float:
    return math.log(probability) if probability > 0 else LOGPROB_FLOOR


def _chat_logprobs(choices, alternatives: int) -> dict:
    def entry(text: str, probability: float) -> dict:
        return {"token": text, "logprob": _logprob(probability), "bytes": list(text.encode("utf-8"))}

    return {
        "content": [
            {**entry(c.text, c.probability), "top_logprobs": [entry(t, p) for t, p in c.alternatives[:alternatives]]}
            for c in choices
        ]
    }


def _completion_logprobs(choices, alternatives: int, start_offset: int) -> dict:
    offsets, position = [], start_offset
    for choice in choices:
        offsets.append(position)
        position += len(choice.text)
    return {
        "tokens": [c.text for c in choices],
        "token_logprobs": [_logprob(c.probability) for c in choices],
        "top_logprobs": [{t: _logprob(p) for t, p in c.alternatives[:alternatives]} for c in choices],
        "text_offset": offsets,
    }


@dataclass
class Run:
    """One request's progress: the deltas streamed, then the finished generation."""

    id: str
    created: int
    generation: Any = None  # pipelines.text.generation.Generation once finished


def run_deltas(generator, request: TextRequest, run: Run, stop_event: threading.Event) -> Iterator[str]:
    """The text as `generator.stream` writes it, as deltas; `run.generation` holds the result at the end."""
    from pipelines.text.generation import SamplingSettings

    prompt, chat, prefix = prompt_and_mode(generator, request)
    settings = SamplingSettings(**request.settings, chat=chat)
    written = prefix  # the generator's text starts with the answer so far; the response holds what follows
    # Only the options asked for are passed, so any generator with the base interface serves plain requests.
    options = {"prefix": prefix} if prefix else {}
    if request.precision:
        options["precision"] = request.precision
    for generation in generator.stream(prompt, settings, stop_event, **options):
        delta = generation.text[len(written) :]
        written = generation.text
        run.generation = generation
        if delta:
            yield delta


def _finish(generator, request: TextRequest, generation) -> tuple[str, dict | None, dict]:
    """(finish_reason, logprobs, extra choice fields) for a finished generation."""
    new_ids = list(generation.new_ids)
    finish = "stop" if new_ids and new_ids[-1] in _stop_ids(generator) else "length"
    logprobs = None
    if request.logprobs is not None and new_ids:
        choices = generator.explain(generation, alternatives=max(1, request.logprobs))
        if request.kind == "chat":
            logprobs = _chat_logprobs(choices, request.logprobs)
        else:
            logprobs = _completion_logprobs(choices, request.logprobs, len(request.prompt))
    extra = {"token_ids": new_ids} if request.return_token_ids else {}
    return finish, logprobs, extra


def _usage(generation) -> dict:
    prompt, completion = len(generation.prompt_ids), len(generation.new_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def new_run(request: TextRequest) -> Run:
    prefix = "chatcmpl" if request.kind == "chat" else "cmpl"
    return Run(f"{prefix}-{uuid.uuid4().hex}", int(time.time()))


def stream_chunks(generator, request: TextRequest, stop_event: threading.Event | None = None) -> Iterator[dict]:
    """The chunks of a streamed answer (each one `data:` event of the SSE stream, before `data: [DONE]`)."""
    stop_event = stop_event or threading.Event()
    run = new_run(request)
    chat = request.kind == "chat"
    head = {
        "id": run.id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": run.created,
        "model": request.model,
    }

    def chunk(payload: dict, finish: str | None = None, logprobs: dict | None = None, **extra) -> dict:
        if chat:
            choice = {"index": 0, "delta": payload, "logprobs": logprobs, "finish_reason": finish, **extra}
        else:
            choice = {"index": 0, "text": payload.get("content", ""), "logprobs": logprobs, "finish_reason": finish}
            choice.update(extra)
        return {**head, "choices": [choice]}

    if chat:
        yield chunk({"role": "assistant", "content": ""})
    for delta in run_deltas(generator, request, run, stop_event):
        yield chunk({"content": delta})
    finish, logprobs, extra = _finish(generator, request, run.generation)
    final = chunk({}, finish, logprobs, **extra)
    if request.return_token_ids:
        final["prompt_token_ids"] = list(run.generation.prompt_ids)
    yield final
    if request.include_usage:
        yield {**head, "choices": [], "usage": _usage(run.generation)}


def complete(generator, request: TextRequest) -> dict:
    """The whole answer as one response object (a request without `stream`)."""
    run = new_run(request)
    text = "".join(run_deltas(generator, request, run, threading.Event()))
    finish, logprobs, extra = _finish(generator, request, run.generation)
    if request.kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": logprobs}
        obj = "text_completion"
    response = {
        "id": run.id,
        "object": obj,
        "created": run.created,
        "model": request.model,
        "choices": [{**choice, "finish_reason": finish, **extra}],
        "usage": _usage(run.generation),
    }
    if request.return_token_ids:
        response["prompt_token_ids"] = list(run.generation.prompt_ids)
    return response


def model_list(models: list[str]) -> dict:
    """The body of GET /v1/models."""
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 0, "owned_by": "genai-playground"} for m in models],
    }
