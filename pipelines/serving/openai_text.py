"""A text model on an OpenAI-compatible server, with the `TextGenerator` interface the text tab uses.

`stream` yields the growing answer as the server streams it (Server-Sent Events); `explain` gives each token's
probability and its top alternatives from the log-probabilities the server returned, so "Look inside" works
wherever the server returns them (vLLM, Ray Serve LLM, the app's own deployment). Chat mode sends the prompt
as one user message to /chat/completions; completion mode sends it as is to /completions.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from pipelines.serving.options import TOP_LOGPROBS
from pipelines.serving.transport import ServeClient, ServingError
from pipelines.text.generation import Generation, SamplingSettings, TokenChoice

UNKNOWN_ID = -1  # a token whose id the server did not report (only OpenAI-compatible servers without token ids)


@dataclass
class RemoteGeneration(Generation):
    """A generation on a server: the tokens' probabilities came with it, so explaining needs no model here."""

    token_choices: list[TokenChoice] = field(default_factory=list)
    finish_reason: str | None = None


def _choice_from_chat_entry(entry: dict) -> TokenChoice:
    return TokenChoice(
        text=entry["token"],
        probability=math.exp(entry["logprob"]),
        alternatives=[(t["token"], math.exp(t["logprob"])) for t in entry.get("top_logprobs") or []],
    )


def _choices_from_completion(logprobs: dict) -> list[TokenChoice]:
    choices = []
    for index, (token, logprob) in enumerate(zip(logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [])):
        top = (logprobs.get("top_logprobs") or [])[index] if index < len(logprobs.get("top_logprobs") or []) else {}
        ranked = sorted((top or {}).items(), key=lambda item: -item[1])
        choices.append(TokenChoice(token, math.exp(logprob), [(t, math.exp(p)) for t, p in ranked]))
    return choices


class OpenAITextGenerator:
    """One model of an OpenAI-compatible server (`base_url` ends in /v1)."""

    def __init__(self, base_url: str, model: str, name: str | None = None, api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.served_model = model
        self.name = name or model
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = ServeClient(self.base_url, f"The text server for {self.name}", headers)

    @property
    def tokenizer(self):
        raise ServingError(self._needs_weights("its tokenizer"))

    @property
    def model(self):
        raise ServingError(self._needs_weights("its weights"))

    def _needs_weights(self, what: str) -> str:
        return (
            f"{self.name} runs on a model server, and this view needs {what} in the app's own process (attention, "
            f"perplexity and branching do). Run the app with its models in-process (`make run`) for it."
        )

    def _body(self, prompt: str, settings: SamplingSettings, prefix: str = "") -> tuple[str, dict]:
        body = {
            "model": self.served_model,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "seed": settings.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
            "return_token_ids": True,  # vLLM's extension, also served by the app's deployment
        }
        if settings.top_k:  # vLLM's extension; left out when off, so plain OpenAI servers accept the request
            body["top_k"] = settings.top_k
        if settings.repetition_penalty != 1.0:
            body["repetition_penalty"] = settings.repetition_penalty
        if settings.chat:
            messages = [{"role": "user", "content": prompt}]
            if prefix:  # vLLM's way to continue the answer so far (served by the app's deployment too)
                messages.append({"role": "assistant", "content": prefix})
                body.update(continue_final_message=True, add_generation_prompt=False)
            body.update(messages=messages, logprobs=True, top_logprobs=TOP_LOGPROBS)
            return "/chat/completions", body
        body.update(prompt=prompt + prefix, logprobs=TOP_LOGPROBS)  # the server tokenizes the two together
        return "/completions", body

    def stream(
        self,
        prompt: str,
        settings: SamplingSettings,
        stop_event: threading.Event | None = None,
        prefix: str = "",
        precision: str | None = None,
    ) -> Iterator[Generation]:
        """Yield the same generation each time new text arrives; the last yield is complete. With a `prefix`
        (the answer so far) the model continues after it, and the text starts with it.

        Setting `stop_event` or closing this iterator closes the connection, which ends the generation there.
        """
        settings.validate()
        if not prompt.strip():
            raise ValueError("The prompt is empty.")
        path, body = self._body(prompt, settings, prefix)
        if precision:  # the number format of the server's weights, where it offers several (the app's deployment)
            body["precision"] = precision
        result = RemoteGeneration(self.name, [], text=prefix)
        token_ids: list[int] = []
        started = time.perf_counter()
        lines = self.client.stream_lines(path, body)
        try:
            for line in lines:
                if stop_event is not None and stop_event.is_set():
                    break
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    error = chunk["error"]
                    raise ServingError(f"The text server failed: {error.get('message', error)}")
                token_ids += self._read_chunk(chunk, result, settings.chat)
                if result.first_token_seconds is None and len(result.text) > len(prefix):
                    result.first_token_seconds = time.perf_counter() - started
                yield result
        finally:
            lines.close()  # ends the server's generation when the user stopped early
        choices = result.token_choices
        result.new_ids = token_ids if len(token_ids) == len(choices) else [UNKNOWN_ID] * len(choices)
        result.seconds = time.perf_counter() - started
        if result.finish_reason == "length" and len(choices) < settings.max_new_tokens:
            result.notes.append("The server stopped the answer early (its context or time limit).")
        yield result

    @staticmethod
    def _read_chunk(chunk: dict, result: RemoteGeneration, chat: bool) -> list[int]:
        """Add a chunk's text, log-probabilities and finish reason to `result`; its token ids."""
        if chunk.get("prompt_token_ids"):
            result.prompt_ids = list(chunk["prompt_token_ids"])
        ids: list[int] = []
        for choice in chunk.get("choices") or []:
            if chat:
                result.text += (choice.get("delta") or {}).get("content") or ""
                entries = (choice.get("logprobs") or {}).get("content") or []
                result.token_choices += [_choice_from_chat_entry(e) for e in entries]
            else:
                result.text += choice.get("text") or ""
                result.token_choices += _choices_from_completion(choice.get("logprobs") or {})
            ids += list(choice.get("token_ids") or [])
            result.finish_reason = choice.get("finish_reason") or result.finish_reason
        return ids

    def generate(
        self, prompt: str, settings: SamplingSettings, prefix: str = "", precision: str | None = None
    ) -> Generation:
        """The whole generation at once (the last item of `stream`)."""
        *_, last = self.stream(prompt, settings, prefix=prefix, precision=precision)
        return last

    def explain(self, generation: Generation, alternatives: int = TOP_LOGPROBS) -> list[TokenChoice]:
        """Each token's probability and its top alternatives, as the server reported them."""
        choices = getattr(generation, "token_choices", [])
        return [TokenChoice(c.text, c.probability, c.alternatives[:alternatives]) for c in choices]

    def probe(self) -> None:
        """For /healthz: the server lists this model."""
        listed = [entry.get("id") for entry in self.client.get_json("/models").get("data", [])]
        if self.served_model not in listed:
            raise ServingError(f"the server no longer lists {self.served_model}")


OPENAI_PREFIX = "openai:"  # registry ids of the host's OpenAI-compatible server's models: "openai:<model>"


def load_openai_text_generator(model_id: str) -> OpenAITextGenerator:
    """A model of the host's OpenAI-compatible server (pipelines.serving.options), by its registry id."""
    from pipelines.serving.options import openai_server

    server = openai_server()
    model = model_id.removeprefix(OPENAI_PREFIX)
    if server is None or model not in server.models:
        raise ServingError(f"{model_id} is not offered: the host's OpenAI-compatible server does not list it.")
    return OpenAITextGenerator(server.url, model, api_key=server.api_key)
