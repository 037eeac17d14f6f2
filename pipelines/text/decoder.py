"""Continuous batching: every request that arrives while others are generating joins one shared decode loop.

One thread runs the model. Each turn it reads one chunk of a waiting request's prompt (prefill) and then
advances every admitted request by one token in a single forward pass (a decode step). A request enters
the batch at its own step and leaves at its own step: at its end token, its token limit, its time limit, or
as soon as its stop event is set (the Stop button, a closed page). Each request keeps its own sampling
settings and its own `torch.Generator`, and the runner gives each row the numbers it would get alone, so
a request's text is the same whoever else is in the batch.

Runners: `llama_runner.LlamaRunner` batches Llama-family models in one forward pass; `TransformersRunner`
serves any other causal LM through its transformers forward, one request per call, in the same loop.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from pipelines.core import cpu_threads
from pipelines.text import llama_runner

logger = logging.getLogger(__name__)

IDLE_SECONDS = 30.0  # the loop's thread ends after this long without requests (a new request restarts it)
# Prompt tokens read in one turn when several prompts wait: 8 chat prompts of a room fit (about 40 tokens each),
# and the requests already decoding wait about 0.1 s for it on 2 cores.
PROMPT_TOKENS_PER_TURN = 512
TOP_RECORDED = 5  # alternatives recorded per generated token, for the look-inside view


@dataclass(frozen=True)
class Sampling:
    """How one request picks its tokens (temperature 0 = greedy); see generation.SamplingSettings."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0


@dataclass
class StepRecord:
    """The model's own next-token distribution when a token was picked (before the sampling controls)."""

    probability: float  # of the token picked
    top_ids: list[int]
    top_probabilities: list[float]


@dataclass
class DecodeRequest:
    """A prompt to continue; its results arrive in `new_ids` and, one by one, through `tokens()`."""

    prompt_ids: list[int]
    max_new_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    stop_event: threading.Event = field(default_factory=threading.Event)
    time_limit: float = 30.0  # seconds from admission to the batch (waiting for a place does not count)
    new_ids: list[int] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    finish_reason: str | None = None  # "end", "length", "stopped", "time limit"
    error: BaseException | None = None
    admitted_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None

    def __post_init__(self):
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._sequence = None
        self._processors = None
        self._generator: torch.Generator | None = None
        self._history: torch.Tensor | None = None  # (1, prompt + max_new_tokens) ids, for the repetition penalty

    def tokens(self) -> Iterator[int]:
        """Each new token id as soon as it is picked; ends when the request is finished (raises its error)."""
        while True:
            item = self._events.get()
            if item is None:
                if self.error is not None:
                    raise self.error
                return
            yield item

    @property
    def done(self) -> bool:
        return self.finished_at is not None


class TransformersRunner:
    """Any causal LM through its own forward pass and cache, one request per call (no shared batch)."""

    def __init__(self, model: torch.nn.Module, max_batch: int):
        self.model = model
        self.max_batch = max_batch
        self.device = model.device
        self.slots: list = []
        self.bytes_per_token = 0  # memory is not reserved up front

    def reserve(self, length: int) -> None:
        pass

    def release_memory(self) -> None:
        self.slots = []

    def new_sequence(self) -> dict:
        from transformers import DynamicCache

        return {"cache": DynamicCache(), "length": 0}

    @torch.inference_mode()
    def prefill(self, sequence: dict, ids: list[int], all_logits: bool = False) -> torch.Tensor:
        input_ids = torch.tensor([ids], device=self.device)
        return self._forward(sequence, input_ids, all_logits)

    def _forward(self, sequence: dict, input_ids: torch.Tensor, all_logits: bool = False) -> torch.Tensor:
        length = sequence["length"] + input_ids.shape[1]
        output = self.model(
            input_ids=input_ids,
            attention_mask=torch.ones((1, length), dtype=torch.long, device=self.device),
            past_key_values=sequence["cache"],
            use_cache=True,
        )
        sequence["length"] = length
        logits = output.logits[0].float()
        return logits if all_logits else logits[-1]

    def activate(self, sequence: dict) -> None:
        self.slots.append(sequence)

    def release(self, sequence: dict) -> None:
        if sequence in self.slots:
            self.slots.remove(sequence)
        sequence["cache"] = None

    @property
    def active(self) -> list:
        return list(self.slots)

    @torch.inference_mode()
    def decode(self, tokens: list[int]) -> torch.Tensor:
        rows = [
            self._forward(sequence, torch.tensor([[token]], device=self.device))
            for sequence, token in zip(self.slots, tokens)
        ]
        return torch.stack(rows)


def make_runner(model: torch.nn.Module, max_batch: int, rows: int | None = None):
    """The fastest runner that supports the model (`rows`: see precision.matmul_rows)."""
    if llama_runner.supports(model):
        return llama_runner.LlamaRunner(model, max_batch, rows)
    return TransformersRunner(model, max_batch)


class BatchedDecoder:
    """Serves `submit()`ted requests from one thread, in a shared batch of at most `max_batch` requests."""

    def __init__(
        self,
        runner,
        end_ids: set[int],
        kv_budget_bytes: int,
        threads: int | None = None,
    ):
        self.runner = runner
        self.end_ids = set(end_ids)
        self.kv_budget_bytes = kv_budget_bytes
        # CPU threads for the model's operations (None: all of torch's while nothing else computes, one while
        # something does; see pipelines/core/cpu_threads.py). torch's threads wait for each other at every
        # operation: for a small model on cores that other work holds, that costs more than it gives. Read at
        # every turn, so it can change while the loop runs.
        self.threads = threads
        self._reads_together = hasattr(runner, "prefill_together")  # several prompts in one forward pass
        self.default_threads = torch.get_num_threads()  # the process's count, read in the thread that made us
        self._reset()
        self.steps = 0  # decode steps run so far
        self.largest_batch = 0  # most requests decoded in one step (tests, benchmarks)
        # A forked process (a ZeroGPU worker) inherits this object but not its thread: it starts afresh.
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (decoder := reference()) is not None and decoder._reset())

    def _reset(self) -> None:
        self._condition = threading.Condition()
        self._waiting: list[DecodeRequest] = []
        self._prefilling: list[DecodeRequest] = []
        self._decoding: list[DecodeRequest] = []  # in the runner's slot order
        self._thread: threading.Thread | None = None
        self._applied_threads: int | None = None  # the loop thread's OpenMP setting
        self.runner.release_memory()

    # ------------------------------------------------------------------ the callers' side

    def submit(self, request: DecodeRequest) -> DecodeRequest:
        """Queue a request; read its tokens with `request.tokens()`."""
        if not request.prompt_ids:
            raise ValueError("a request needs at least one prompt token")
        if request.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        with self._condition:
            self._waiting.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="text-decoder", daemon=True)
                self._thread.start()
            self._condition.notify()
        return request

    @property
    def busy(self) -> int:
        """Requests admitted or waiting."""
        with self._condition:
            return len(self._waiting) + len(self._prefilling) + len(self._decoding)

    def _threads_now(self) -> int:
        return self.threads or (1 if cpu_threads.other_work() else self.default_threads)

    def _use_threads(self, count: int) -> None:
        if count == self._applied_threads:
            return
        if self._applied_threads is not None and count < self._applied_threads:
            cpu_threads.release_workers()  # idle workers of ours would make the other work's workers sleep
        cpu_threads.set_threads_here(count)
        self._applied_threads = count

    # ------------------------------------------------------------------ the loop

    def _serve(self) -> None:
        self._applied_threads = None
        while True:
            with self._condition:
                if not (self._waiting or self._prefilling or self._decoding):
                    self.runner.release_memory()
                    cpu_threads.release_workers()  # while idle, leave the cores' spinning to others
                    self._condition.wait(IDLE_SECONDS)
                    if not self._waiting:
                        self._thread = None
                        return
                self._admit()
            try:
                self._turn()
            except Exception as error:  # a model fault fails the requests in flight, not the loop
                logger.exception("decode step failed")
                self._fail_all(error)

    def _admit(self) -> None:
        """Take waiting requests while the batch has room (requests whose user gave up leave at once)."""
        for request in list(self._waiting):
            if request.stop_event.is_set():
                self._waiting.remove(request)
                self._finish(request, "stopped")
                continue
            admitted = self._prefilling + self._decoding
            if len(admitted) >= self.runner.max_batch:
                break
            longest = max([self._reserved(r) for r in admitted] + [self._reserved(request)])
            needed = self.runner.max_batch * llama_runner.round_up(longest) * self.runner.bytes_per_token
            if admitted and needed > self.kv_budget_bytes:
                break  # first come, first served: later requests wait behind this one
            self._waiting.remove(request)
            request.admitted_at = time.perf_counter()
            request._sequence = self.runner.new_sequence()
            request._processors, request._generator = _sampling_parts(request.sampling)
            history = torch.zeros((1, self._reserved(request)), dtype=torch.long)
            history[0, : len(request.prompt_ids)] = torch.tensor(request.prompt_ids)
            request._history = history
            self._prefilling.append(request)

    @staticmethod
    def _reserved(request: DecodeRequest) -> int:
        return len(request.prompt_ids) + request.max_new_tokens

    def _turn(self) -> None:
        self._drop_finished()
        if self._prefilling:
            # Always the same thread count: a float32 prompt's numbers depend on it (decode steps' do not).
            self._use_threads(self.threads or self.default_threads)
            chunks = self._next_chunks()
            if len(chunks) > 1:
                logits = self.runner.prefill_together([(request._sequence, chunk) for request, chunk in chunks])
            else:
                logits = [self.runner.prefill(chunks[0][0]._sequence, chunks[0][1])]
            for (request, _), last in zip(chunks, logits):
                if _sequence_length(request._sequence) == len(request.prompt_ids):
                    self._prefilling.remove(request)
                    self.runner.reserve(max(self._reserved(r) for r in [*self._decoding, request]))
                    self.runner.activate(request._sequence)
                    self._decoding = self.runner_order([*self._decoding, request])
                    self._emit_all([request], last[None])
            self._drop_finished()
        if self._decoding:
            tokens = [request.new_ids[-1] for request in self._decoding]
            self._use_threads(self._threads_now())
            logits = self.runner.decode(tokens)
            self.steps += 1
            self.largest_batch = max(self.largest_batch, len(tokens))
            self._emit_all(list(self._decoding), logits)
            self._drop_finished()

    def _next_chunks(self) -> list[tuple[DecodeRequest, list[int]]]:
        """The next prompt chunk of the first request being read and, where the runner can read several at once,
        of those after it, up to PROMPT_TOKENS_PER_TURN in all (a turn never stalls the decoding ones for long).
        A request's chunks are the same whoever shares the turn."""
        chunks, total = [], 0
        for request in self._prefilling:
            read = _sequence_length(request._sequence)
            chunk = request.prompt_ids[read : read + llama_runner.PREFILL_CHUNK]
            if chunks and (total + len(chunk) > PROMPT_TOKENS_PER_TURN or not self._reads_together):
                break
            chunks.append((request, chunk))
            total += len(chunk)
        return chunks

    def runner_order(self, requests: list[DecodeRequest]) -> list[DecodeRequest]:
        by_sequence = {id(request._sequence): request for request in requests}
        return [by_sequence[id(sequence)] for sequence in self.runner.active]

    def _emit_all(self, requests: list[DecodeRequest], logits: torch.Tensor) -> None:
        """Pick each request's next token from its row of logits (B, vocabulary) and hand it to its reader."""
        logits = logits.float().cpu()  # sampling runs on the CPU, with each request's own CPU generator
        model_probabilities = torch.softmax(logits, dim=-1)
        top_probabilities, top_ids = model_probabilities.topk(min(TOP_RECORDED, logits.shape[-1]), dim=-1)
        most_likely = logits.argmax(dim=-1).tolist()  # plain greedy requests' picks, in one call for the batch
        tokens = [
            most_likely[row] if request._processors.plain_greedy else self._pick(request, logits[row])
            for row, request in enumerate(requests)
        ]
        picked = model_probabilities[torch.arange(len(requests)), torch.tensor(tokens)].tolist()
        for request, token, probability, ids, probabilities in zip(
            requests, tokens, picked, top_ids.tolist(), top_probabilities.tolist()
        ):
            request.records.append(StepRecord(probability, ids, probabilities))
            self._emit(request, token)

    @staticmethod
    def _pick(request: DecodeRequest, logits: torch.Tensor) -> int:
        history = request._history[:, : len(request.prompt_ids) + len(request.new_ids)]
        if request.sampling.temperature <= 0:
            return int(request._processors.adjust(history, logits[None])[0].argmax())
        ids, probabilities = request._processors.distribution(history, logits[None])
        return int(ids[torch.multinomial(probabilities, 1, generator=request._generator)[0]])

    def _emit(self, request: DecodeRequest, token: int) -> None:
        position = len(request.prompt_ids) + len(request.new_ids)
        request._history[0, position] = token
        request.new_ids.append(token)
        now = time.perf_counter()
        if request.first_token_at is None:
            request.first_token_at = now
        request._events.put(token)
        if token in self.end_ids:
            request.finish_reason = "end"
        elif len(request.new_ids) >= request.max_new_tokens:
            request.finish_reason = "length"

    def _drop_finished(self) -> None:
        """Retire requests that ended, were stopped or ran out of time."""
        now = time.perf_counter()
        for group in (self._prefilling, self._decoding):
            for request in list(group):
                reason = request.finish_reason
                if reason is None and request.stop_event.is_set():
                    reason = "stopped"
                elif reason is None and now - request.admitted_at > request.time_limit:
                    reason = "time limit"
                if reason is not None:
                    group.remove(request)
                    self.runner.release(request._sequence)
                    self._finish(request, reason)
        self._decoding = self.runner_order(self._decoding)

    def _finish(self, request: DecodeRequest, reason: str) -> None:
        request.finish_reason = reason
        request.finished_at = time.perf_counter()
        request._sequence = request._processors = request._history = None
        request._events.put(None)

    def _fail_all(self, error: BaseException) -> None:
        for request in [*self._prefilling, *self._decoding]:
            request.error = error
            self._finish(request, "error")
        self._prefilling, self._decoding = [], []
        self.runner.release_memory()


def _sequence_length(sequence) -> int:
    return sequence["length"] if isinstance(sequence, dict) else sequence.length


class SamplingProcessors:
    """transformers' own logits processors for one request's settings, in `generate`'s order: repetition penalty,
    temperature, top-k, top-p.

    With top-k on, only the k most likely tokens (and any tied with the k-th) can be drawn, so top-p and the draw
    run on those few instead of the whole vocabulary: top-p sorts what it is given, and on 49,152 tokens that sort
    and the draw took 4 ms a token, more than a decode step of 8 requests spends on anything but its matrix
    products. The tokens kept and their probabilities are the same (to float rounding) either way (tested).
    """

    def __init__(self, sampling: Sampling):
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.sampling = sampling
        self.before_top_k = LogitsProcessorList()
        if sampling.repetition_penalty != 1.0:
            self.before_top_k.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
        if sampling.temperature > 0 and sampling.temperature != 1.0:
            self.before_top_k.append(TemperatureLogitsWarper(sampling.temperature))
        self.top_k = TopKLogitsWarper(sampling.top_k) if sampling.temperature > 0 and sampling.top_k > 0 else None
        self.top_p = TopPLogitsWarper(sampling.top_p) if sampling.temperature > 0 and sampling.top_p < 1.0 else None
        self.plain_greedy = sampling.temperature <= 0 and not self.before_top_k  # the most likely token, as is

    def adjust(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The scores (1, vocabulary) after every processor, as `generate` would pass them to its sampler."""
        scores = self.before_top_k(history, scores)
        for warper in (self.top_k, self.top_p):
            if warper is not None:
                scores = warper(history, scores)
        return scores

    def distribution(self, history: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens that can be drawn (n,) and their probabilities (n,)."""
        if self.top_k is None:
            probabilities = torch.softmax(self.adjust(history, scores)[0], dim=-1)
            return torch.arange(probabilities.shape[0]), probabilities
        scores = self.before_top_k(history, scores)
        candidates, ids = scores.topk(min(self.sampling.top_k, scores.shape[-1]))
        kept = int((scores >= candidates[0, -1]).sum())
        if kept > candidates.shape[-1]:  # tokens tied with the k-th stay, as TopK keeps them
            candidates, ids = scores.topk(kept)
        if self.top_p is not None:
            candidates = self.top_p(history, candidates)
        return ids[0], torch.softmax(candidates[0], dim=-1)


def _sampling_parts(sampling: Sampling) -> tuple[SamplingProcessors, torch.Generator | None]:
    """The request's processors and, when it samples, its own seeded generator."""
    generator = torch.Generator(device="cpu").manual_seed(sampling.seed) if sampling.temperature > 0 else None
    return SamplingProcessors(sampling), generator


class IncrementalText:
    """The text of a growing list of token ids, handed out in pieces that never split a character.

    A token may hold part of a character's UTF-8 bytes; decoding a short window of recent tokens and holding
    back a piece that ends in the replacement character keeps every piece whole without decoding all tokens
    each time.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._window_start = 0  # decoding starts here, a few tokens back, so word boundaries come out right
        self._shown = 0  # tokens already handed out as text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token: int) -> str:
        """The new text this token completes ("" while a character is still incomplete)."""
        self.ids.append(token)
        return self._piece(final=False)

    def rest(self) -> str:
        """Text held back at the end (an incomplete character, shown as the replacement character)."""
        return self._piece(final=True)

    def _piece(self, final: bool) -> str:
        before = self._decode(self.ids[self._window_start : self._shown])
        after = self._decode(self.ids[self._window_start :])
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        self._window_start, self._shown = self._shown, len(self.ids)
        return after[len(before) :]
