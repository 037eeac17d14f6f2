"""Text Generation tab: a real LM streams its answer and shows why it chose each token; an n-gram model beside it."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math

import gradio as gr
import numpy as np

from demos import common, faults, training, validation
from pipelines.core import registry, warmup
from pipelines.core.device import select_device
from pipelines.core.weights import ModelSourceError
from pipelines.text import inspection
from pipelines.text.generation import SamplingSettings, TextGenerator, TokenChoice
from pipelines.text.ngram import END_OF_TEXT, MAX_ORDER, NgramModel, join_words, split_words
from pipelines.text.options import (
    ATTENTION_HEAD,
    ATTENTION_LAYER,
    BUILTIN_MODEL,
    MAX_BATCH,
    MAX_CORPUS_BYTES,
    MAX_INSPECTED_CHARACTERS,
    MAX_NEW_TOKENS,
    MAX_PERPLEXITY_CHARACTERS,
    MODES,
    NGRAM_ORDER,
    NGRAM_WORDS,
    PRECISION_NOTES,
    PRECISIONS,
    REPETITION_PENALTY,
    TEMPERATURE,
    TOP_K,
    TOP_P,
)
from pipelines.text.sample_texts import SAMPLE_TEXTS

TAB_TITLE = "Text Generation"
TAB_ID = "text-generation"
# Requests that run at once on the model, across every event that uses it: generations share the model's
# decode batch (pipelines/text/decoder.py), so as many may run as the batch holds; others wait in the queue.
DEVICE_TYPE = select_device().device.type
CONCURRENCY = common.concurrency("text-lm", MAX_BATCH.get(DEVICE_TYPE, MAX_BATCH["cuda"]))
PRECISION_CHOICES = PRECISIONS.get(DEVICE_TYPE, PRECISIONS["cuda"])  # the default first

CANDIDATE_ROWS = 12
OWN_TEXT = "(your own text)"

# Probability bands for colouring tokens; readable from the back of a room.
BANDS = (
    (0.9, "very likely (≥ 90%)", "#2e7d32"),
    (0.5, "likely (50–90%)", "#9ccc65"),
    (0.1, "unsure (10–50%)", "#ffb300"),
    (0.0, "surprising (< 10%)", "#e53935"),
)
# Surprisal bands (bits, -log2 p) for the Perplexity view, in the same colours: 2 bits is p = 25%, 10 bits p = 0.1%.
SURPRISAL_BANDS = (
    (0.0, "expected (< 2 bits)", "#2e7d32"),
    (2.0, "plausible (2–5 bits)", "#9ccc65"),
    (5.0, "surprising (5–10 bits)", "#ffb300"),
    (10.0, "very surprising (≥ 10 bits)", "#e53935"),
)
BRANCH_COLOURS = {"original token": "#90caf9", "branch token": "#ffb300", "new continuation": "#c8e6c9"}
MAX_PREFIX_CHARACTERS = MAX_INSPECTED_CHARACTERS

PERPLEXITY_EXAMPLES = [
    "The boats wait in the harbour for the tide to come in.",
    "tide harbour the come boats to for in wait the in The.",  # the same words, shuffled
    "The boats wiat in the harbour for the tide to come in.",  # one typo
]

HOW_IT_WORKS = """
### The transformer
- **One token at a time.** The model reads the prompt, scores every one of its 49,152 tokens as the
  possible next one, picks one, appends it and repeats. That is all "writing" is for a language model.
- **Attention instead of counting.** An n-gram model only sees the last n−1 words and can only repeat
  continuations it has counted. A transformer weighs *every* earlier token (softmax of query·key scores
  weighting the values) and learned its scores from billions of words, so it generalises to new text.
- **Sampling controls.** *Temperature* divides the scores before the softmax: 0 always takes the top
  token (greedy), higher values flatten the distribution. *Top-k* keeps only the k best tokens, *top-p*
  the smallest set whose probabilities add up to p. *Repetition penalty* lowers tokens already used.
  The same seed and settings always give the same text.
- **Look inside** shows the probability the model itself gave each token (before temperature and the
  other controls reshaped it): red tokens were surprising picks, green ones near-certain.
- **This model.** SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), 135 M parameters, 30 layers, a
  context of 8,192 tokens, shipped here as a 4-bit GGUF file and run with transformers.
- **Precision.** Writing one token reads every weight once, so on a CPU the speed is set by bytes per weight:
  *int4* keeps the file's own 4-bit numbers (fastest), *int8* 8 bits, *float32* the de-quantized floats
  (the reference). The probabilities move a little between them; the text may too, where two tokens were close.
- **A room at once.** Requests that arrive while others are writing join one shared batch: each step computes
  the next token of every request in one pass over the weights, each with its own settings and seed.

### Attention: what each token looked at
- In every layer, each token makes a **query** (what am I looking for?), a **key** (what do I offer?) and a
  **value** (what do I pass on?). Its weights over the tokens are softmax(q·kᵀ / √d): a row of the heat-map,
  adding up to 1. Its output is those weights times the values (seed 000 §9's `attention(query, key, value)`).
- **Causal mask**: a token's scores for later tokens are set to −∞ before the softmax, so they get weight 0
  (the grey triangle): while writing, the future does not exist yet.
- **1/√d** (d = 64 numbers per head here): q·k adds up d products, so its spread grows like √d; dividing
  keeps the softmax from locking onto one token. The recompute panel shows how much sharper it would be.
- **Heads**: each layer runs 9 attention heads side by side, each with its own queries: some look at the
  previous token, some at the first token (an "attention sink" where a head parks weight it does not need).
  SmolLM2 uses **grouped-query attention**: the 9 query heads share 3 key/value heads (heads 1–3 read K/V head
  1, and so on), which shrinks the memory each token needs while generating.
- **Rotary positions (RoPE)**: queries and keys are rotated by an angle that grows with their position, so
  q·k depends on how far apart two tokens are. The panel recomputes a head from the layer's real, rotated
  queries and keys and its values, captured while the model ran, and compares with the model's own numbers.

### Branch from any token
Click one of a position's top-5 alternatives: the model continues the answer from there with that token
instead (same settings and seed), beside the original. One different token can change everything after it.

### Perplexity
Surprisal is −log₂ p of each token given the ones before it (1 bit: a coin flip; 10 bits: one in a thousand);
perplexity is 2 to the power of its mean, "how many choices the model was torn between". Shuffled words and
typos are surprising to both models. The n-gram model gives unseen words a small probability by
**interpolated Witten–Bell smoothing**: each context's counts are mixed with the next shorter context's
estimate, the more so the more different words followed it, down to a uniform share for words never seen.
The transformer scores tokens and the n-gram model words, so their perplexities differ in unit: compare bits
per character.

### The n-gram model
Count, in the corpus, which word follows each run of **n − 1** words; to write, look at the last n − 1
words and draw the next one in proportion to those counts. If that context never occurred, **back off**
to the last n − 2 words, and so on down to plain word frequencies. n = 1 ignores context, n = 2 knows
one word back, n = 5 mostly recites the corpus. Watch the model size: almost every long context is new,
so the number of contexts grows with n (in principle like V^(n−1) for a vocabulary of V words).
"""


# ---------------------------------------------------------------------------------------------
# Transformer


def _sampling_settings(max_new_tokens, temperature, top_p, seed, top_k, repetition_penalty, mode) -> SamplingSettings:
    if mode not in MODES:
        raise gr.Error(f"mode must be 'Chat' or 'Completion' (got {mode!r}).")
    return SamplingSettings(
        max_new_tokens=validation.in_range(max_new_tokens, MAX_NEW_TOKENS, "max_new_tokens"),
        temperature=validation.in_range(temperature, TEMPERATURE, "temperature"),
        top_k=validation.in_range(top_k, TOP_K, "top_k"),
        top_p=validation.in_range(top_p, TOP_P, "top_p"),
        repetition_penalty=validation.in_range(repetition_penalty, REPETITION_PENALTY, "repetition_penalty"),
        seed=validation.seed(seed, "seed"),
        chat=mode == "Chat",
    )


def _text_generator(model: str) -> TextGenerator:
    model = registry.MODELS.canonical_id(model)
    allowed = [model_id for _, model_id in registry.choices("text")]
    if model not in allowed:
        raise gr.Error(f"Unknown model {model!r}. The models this app allows are: {', '.join(allowed)}.")
    if not registry.is_loaded(model):
        if warmup.WARMUP.state_of(model) in ("waiting", "warming"):
            gr.Info("The model is still warming up after the app started: your text starts as soon as it is ready.")
        else:
            gr.Info(
                "Loading the model: a few seconds, or longer the very first time (its 4-bit file is converted once)."
                if model == BUILTIN_MODEL
                else f"Loading {model}: it is downloaded from the Hugging Face Hub on first use."
            )
    return registry.load(model)


def _check_precision(precision) -> str:
    if precision not in PRECISION_CHOICES:
        raise gr.Error(f"precision must be one of {', '.join(PRECISION_CHOICES)} here (got {precision!r}).")
    return precision


def _check_prompt(prompt) -> str:
    if not validation.text(prompt, "The prompt").strip():
        raise gr.Error("The prompt is empty: type at least one word.")
    return prompt


def _check_prefix(prefix) -> str:
    prefix = validation.text(prefix, "The prefix")
    if len(prefix) > MAX_PREFIX_CHARACTERS:
        raise gr.Error(f"The prefix is {len(prefix):,} characters, over the limit of {MAX_PREFIX_CHARACTERS:,}.")
    return prefix


@contextlib.contextmanager
def _refusals_as_errors():
    """A pipeline's ValueError (an input it refuses, worded for users) shown as a gr.Error."""
    try:
        yield
    except ValueError as error:
        raise gr.Error(str(error)) from None


@faults.decoder_bound  # streams the decoder's tokens: not work of its own
def generate_text(
    prompt: str,
    max_new_tokens: int = MAX_NEW_TOKENS.default,
    temperature: float = TEMPERATURE.default,
    top_p: float = TOP_P.default,
    seed: int = 42,
    top_k: int = TOP_K.default,
    repetition_penalty: float = REPETITION_PENALTY.default,
    mode: str = "Chat",
    model: str = BUILTIN_MODEL,
    prefix: str = "",
    precision: str = PRECISION_CHOICES[0],
):
    """Stream the model's answer; the last yield is the full text (what API callers receive) and, for the
    look-inside view and branching, the model that wrote it, the generation, the prompt and the settings.

    `prefix` is the answer so far: the model continues after it, and the text returned starts with it.
    `precision` is the weights' number format (int4, int8 or float32 on a CPU).
    """
    prompt = _check_prompt(prompt)
    prefix = _check_prefix(prefix)
    precision = _check_precision(precision)
    settings = _sampling_settings(max_new_tokens, temperature, top_p, seed, top_k, repetition_penalty, mode)
    generator = _text_generator(model)
    generation = None
    with _refusals_as_errors():
        for generation in generator.stream(prompt, settings, prefix=prefix, precision=precision):
            yield generation.text, gr.skip()
    yield generation.text, (registry.MODELS.canonical_id(model), generation, prompt, settings)


def _band(probability: float) -> str:
    return next(label for floor, label, _ in BANDS if probability >= floor)


def _visible(token: str) -> str:
    """A token as a table cell: spaces and line breaks made visible."""
    return token.replace(" ", "␣").replace("\n", "↵")


def _alternatives_table(choices: list[TokenChoice], position) -> list[list]:
    if not choices:
        return []
    index = min(max(int(position or 1), 1), len(choices)) - 1
    chosen = choices[index]
    rows = [
        [rank, _visible(text), f"{probability:.1%}", "◀ chosen" if text == chosen.text else ""]
        for rank, (text, probability) in enumerate(chosen.alternatives, start=1)
    ]
    if all(text != chosen.text for text, _ in chosen.alternatives):
        rows.append(["…", _visible(chosen.text), f"{chosen.probability:.2%}", "◀ chosen"])
    return rows


def look_inside(run: tuple | None):
    """Colour each generated token by its probability and show the alternatives of the most surprising one."""
    if run is None or not run[1].new_ids:
        return "", [], gr.update(maximum=2, value=1, interactive=False), [], []
    model, generation, *_ = run
    choices = _text_generator(model).explain(generation)
    tokens = len(generation.new_ids)
    rate = tokens / generation.seconds if generation.seconds else 0.0
    first = (
        f", first token after {generation.first_token_seconds * 1000:.0f} ms" if generation.first_token_seconds else ""
    )
    weights = f", {generation.precision} weights" if generation.precision else ""
    summary = [
        f"**{generation.model_name}** wrote {tokens} tokens in {generation.seconds:.1f} s "
        f"({rate:.1f} tokens/s{first}{weights})."
    ]
    summary += [f"⚠️ {note}" for note in generation.notes]
    highlighted = [(choice.text, _band(choice.probability)) for choice in choices]
    surprising = 1 + min(range(len(choices)), key=lambda i: choices[i].probability)
    # A slider needs maximum > minimum; a one-token answer keeps 2 and the table clamps to the last token.
    slider = gr.update(maximum=max(2, len(choices)), value=surprising, interactive=len(choices) > 1)
    return "\n\n".join(summary), highlighted, slider, _alternatives_table(choices, surprising), choices


def pick_token(evt: gr.SelectData) -> int:
    return int(evt.index) + 1


# ---------------------------------------------------------------------------------------------
# Branch from any token


def _answer_split(generator: TextGenerator, ids: list[int], position: int) -> tuple[str, str, str]:
    """The answer before token `position` (0-based), that token, and the rest, as text."""

    def decode(part: list[int]) -> str:
        return generator.tokenizer.decode(part, skip_special_tokens=True)

    return decode(ids[:position]), decode(ids[position : position + 1]), decode(ids[position + 1 :])


@faults.decoder_bound  # streams the decoder's tokens: not work of its own
def branch_from_alternative(run: tuple | None, choices: list[TokenChoice], position, evt: gr.SelectData):
    """Continue the answer from the chosen position with the clicked alternative instead (same settings and seed),
    streamed beside the original."""
    if not run or not choices:
        raise gr.Error("Generate an answer first, then click one of the alternatives in the table.")
    model, generation, prompt, settings = run
    index = min(max(int(position or 1), 1), len(choices)) - 1
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else int(evt.index)
    choice = choices[index]
    if row < len(choice.alternative_ids):
        token_id, (token, probability) = choice.alternative_ids[row], choice.alternatives[row]
    else:  # the "…" row: the chosen token itself, outside the top 5
        token_id, token, probability = generation.new_ids[index], choice.text, choice.probability
    generator = _text_generator(model)
    with _refusals_as_errors():
        prefix = inspection.branch_prefix(generator, generation, index, token_id)
    before, original_token, after = _answer_split(generator, generation.new_ids, index)
    original = [(before, None), (original_token, "original token"), (after, None)]
    branch_token = prefix[len(before) :] if prefix.startswith(before) else token
    status = (
        f"Branching at token {index + 1}: “{_visible(token)}” ({probability:.1%}) instead of "
        f"“{_visible(choice.text)}” ({choice.probability:.1%}), with the same settings and seed {settings.seed}."
    )
    yield status, original, [(before, None), (branch_token, "branch token")]
    # The branch writes at most the tokens the original had left, so both answers have the same length limit.
    remaining = dataclasses.replace(settings, max_new_tokens=max(1, settings.max_new_tokens - index - 1))
    branch = None
    with _refusals_as_errors():
        for branch in generator.stream(prompt, remaining, prefix=prefix, precision=generation.precision or None):
            yield (
                gr.skip(),
                gr.skip(),
                [(before, None), (branch_token, "branch token"), (branch.text[len(prefix) :], "new continuation")],
            )
    yield (
        status + f" The branch wrote {len(branch.new_ids)} new tokens in {branch.seconds:.1f} s.",
        gr.skip(),
        gr.skip(),
    )


# ---------------------------------------------------------------------------------------------
# Attention


class ModelRangeSlider(gr.Slider):
    """A slider whose range follows the chosen model: the handler checks the value against that model's own
    layer or head count (naming it), so the API accepts a layer a bigger Hub model has. Refuses non-numbers."""

    is_template = True

    def preprocess(self, payload):
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not math.isfinite(payload):
            raise gr.Error(f"{self.label} must be a whole number (got {payload!r:.60}).")
        return payload


@dataclasses.dataclass(frozen=True)
class AttentionView:
    """What a click on the attention view needs, kept per browser session (no images, no model tensors)."""

    tokens: list[str]
    weights: np.ndarray  # (T, T) of the head (or mean) shown
    heat_map: inspection.PictureLayout
    grid: inspection.PictureLayout
    title: str


def _row_view(view: AttentionView, row: int) -> tuple[list, str]:
    """The text with token `row` marked (purple) and every token coloured by the weight it gave them (red)."""
    weights = view.weights[row, : row + 1]
    strongest = float(weights.max()) or 1.0
    shown = [token.replace("\n", "↵") for token in view.tokens]  # a line break would be an empty box
    text = [(token, float(weights[j] / strongest) if j <= row else 0.0) for j, token in enumerate(shown)]
    text[row] = (shown[row], -1.0)
    top = np.argsort(-weights)[:5]
    looked_at = ", ".join(
        f"“{_visible(view.tokens[j])}”{' (itself)' if j == row else ''} {weights[j]:.0%}" for j in top
    )
    note = (
        f"**Token {row + 1} of {len(view.tokens)}, “{_visible(view.tokens[row])}”** ({view.title}) looked most at: "
        f"{looked_at}. Purple: the token; red: how much it looked at each earlier token (darkest = most). "
        "Later tokens stay white: the causal mask hides them."
    )
    return text, note


def _recompute_panel(capture: inspection.LayerAttention, head: int) -> str:
    recomputed = inspection.recompute_head(capture, head)
    d = capture.queries.shape[-1]
    group = capture.heads // capture.kv_heads
    if head:
        first = (recomputed.kv_head - 1) * group + 1
        which = (
            f"head {head} of layer {capture.layer}: it shares key/value head {recomputed.kv_head} with query heads "
            f"{first}–{first + group - 1} (grouped-query attention: {capture.heads} query heads read "
            f"{capture.kv_heads} key/value heads)"
            if group > 1
            else f"head {head} of layer {capture.layer} (its own key/value head: no grouped-query attention)"
        )
    else:
        which = f"all {capture.heads} heads of layer {capture.layer}, one by one (the map shows their mean)"
    # The layer's output is rounded to the number format it ran in: compare the gap with that format's step.
    relative = recomputed.max_output_difference / (recomputed.largest_output or 1.0)
    verdict = "within" if relative <= recomputed.rounding_step else "more than"
    return f"""**Recomputed by hand: {which}.**
From the layer's own queries and keys (after the rotary position embedding) and values, captured by hooks while
the model ran: `weights = softmax(Q·Kᵀ / √{d} + causal mask)`, `output = weights · V`.
- Largest difference from the model's own weights (transformers' attention code on the same Q, K, V):
  **{recomputed.max_weight_difference:.1e}**
- Largest difference from the output the layer actually computed (its fast kernel never forms the weights):
  **{recomputed.max_output_difference:.1e}**, {relative:.2%} of its largest value: {verdict} the rounding of
  {recomputed.number_format}, the format the layer ran in (a step of {recomputed.rounding_step:.2%} of a number)
- **1/√d** (d = {d}): q·k adds up {d} products, so its spread grows like √{d}; dividing keeps the softmax from
  saturating. Here a token's strongest link gets **{recomputed.top_weight:.0%}** of its attention on average;
  without 1/√{d} it would get **{recomputed.top_weight_unscaled:.0%}**.
- **Causal mask**: scores for later tokens become −∞ before the softmax, so their weight is exactly 0 (the grey
  triangle). Without it, tokens here would give **{recomputed.future_share_unmasked:.0%}** of their attention
  to tokens that come after them, which do not exist yet while the model writes."""


def attention_view(
    prompt: str,
    layer: int = ATTENTION_LAYER.default,
    head: int = ATTENTION_HEAD.default,
    answer: str = "",
    mode: str = "Chat",
    model: str = BUILTIN_MODEL,
):
    """One layer's attention over the prompt and an answer to it, read as the model reads them (chat template
    or plain). Returns the weights as JSON first: {"tokens": [...], "weights": [[...]]}, weights[i][j] = how much
    token i attends to token j; head 0 is the mean of all heads. Then the views."""
    prompt = _check_prompt(prompt)
    answer = validation.text(answer, "The answer")
    if mode not in MODES:
        raise gr.Error(f"mode must be 'Chat' or 'Completion' (got {mode!r}).")
    generator = _text_generator(model)
    with _refusals_as_errors():
        layer, head = inspection.checked_layer_and_head(generator, layer, head)
        ids = inspection.attention_input_ids(generator, prompt, answer, chat=mode == "Chat")
        capture = inspection.capture_attention(generator, ids, layer)
        recompute = _recompute_panel(capture, head)
    layers, _ = inspection.attention_ranges(generator)
    which = f"mean of all {capture.heads} heads" if head == 0 else f"head {head}"
    heat_map, heat_map_layout = inspection.draw_attention_map(
        capture.tokens, capture.head_weights(head), f"Layer {layer}, {which}"
    )
    grid, grid_layout = inspection.draw_head_grid(capture)
    total, shown = len(capture.tokens), heat_map_layout.shown_tokens
    kv = f" (it reads key/value head {capture.kv_head(head)} of {capture.kv_heads})" if head else ""
    read = " (the chat template, with its system prompt, around your prompt, then the answer)" if mode == "Chat" else ""
    note = f"**{capture.model_name}**, layer {layer} of {layers.high}, {which}{kv}. "
    note += f"The model read **{total} tokens**{read}."
    if shown < total:
        note += (
            f" The heat-maps show **the last {shown} of {total} tokens**; their first column adds up the weight they "
            f"gave the {total - shown} earlier ones. The text below covers all {total}: click any token."
        )
    title = f"layer {layer}, {which}"
    view = AttentionView(capture.tokens, capture.head_weights(head).numpy(), heat_map_layout, grid_layout, title)
    text, row_note = _row_view(view, total - 1)
    data = inspection.attention_json(capture, head)
    return data, note, heat_map, grid, text, row_note, recompute, view


def _attention_after_generation(prompt: str, layer, head, answer: str, mode: str, model: str):
    """The attention view refreshed after each generation: a refusal (an answer too long to show) becomes a note
    rather than a pop-up over the answer the user just got; so does a model served elsewhere (cluster mode), whose
    weights this process does not hold."""
    try:
        return attention_view(prompt, layer, head, answer, mode, model)
    except gr.Error as error:
        return None, f"Attention: {error.message}", None, None, [], "", "", None
    except ModelSourceError as error:
        return None, f"Attention: {error}", None, None, [], "", "", None


def pick_attention_token(view: AttentionView | None, evt: gr.SelectData):
    """A click on a token of the text: show what that token looked at."""
    if view is None or not isinstance(evt.index, int) or not 0 <= evt.index < len(view.tokens):
        return gr.skip(), gr.skip()
    return _row_view(view, evt.index)


def pick_attention_row(view: AttentionView | None, evt: gr.SelectData):
    """A click on a row of the heat-map: the same as clicking that token in the text."""
    row = view.heat_map.row_at(*evt.index) if view is not None else None
    return (gr.skip(), gr.skip()) if row is None else _row_view(view, row)


def pick_head(view: AttentionView | None, evt: gr.SelectData):
    """A click on one head of the grid selects it (the view is then redrawn for it)."""
    head = view.grid.head_at(*evt.index) if view is not None else None
    return gr.skip() if head is None else head


def attention_slider_ranges(model: str):
    """The layer and head sliders follow the chosen model's counts once it is loaded."""
    model = registry.MODELS.canonical_id(model)
    if not isinstance(model, str) or not registry.is_loaded(model):
        return gr.skip(), gr.skip()
    layers, heads = inspection.attention_ranges(registry.load(model))
    return gr.update(maximum=layers.high), gr.update(maximum=heads.high)


# ---------------------------------------------------------------------------------------------
# n-gram


def _shown_word(word: str) -> str:
    return "(end of text)" if word == END_OF_TEXT else word


@functools.lru_cache(maxsize=4)  # a 1 MB corpus counted up to 5-grams takes a few hundred MB
def _fitted_up_to_5(corpus: str) -> NgramModel:
    """One count of the corpus serves every n: the 5-gram model holds all shorter models."""
    return NgramModel.fit(corpus, MAX_ORDER)


def _sizes_by_order(corpus: str) -> str:
    rows = ["| n | distinct contexts (n−1 words) | distinct n-grams |", "| --- | --- | --- |"]
    for n in range(NGRAM_ORDER.low, NGRAM_ORDER.high + 1):
        model = _fitted_up_to_5(corpus).with_order(n)
        rows.append(f"| {n} | {model.distinct_contexts:,} | {model.distinct_ngrams:,} |")
    return "\n".join(rows)


def _check_corpus(corpus) -> str:
    if not split_words(validation.text(corpus, "The corpus")):
        raise gr.Error("The corpus is empty: paste some text or pick a sample text.")
    size = len(corpus.encode("utf-8"))
    if size > MAX_CORPUS_BYTES:
        raise gr.Error(f"The corpus is {size / 1e6:.2f} MB, over the 1 MB limit: paste a shorter text.")
    return corpus


def ngram_generate(
    corpus: str, n: int = NGRAM_ORDER.default, prompt: str = "The", max_words: int = NGRAM_WORDS.default, seed: int = 42
):
    """Continue the prompt with an n-gram model counted from the corpus; returns the continuation first."""
    corpus = _check_corpus(corpus)
    n = validation.in_range(n, NGRAM_ORDER, "n")
    prompt = _check_prompt(prompt)
    max_words = validation.in_range(max_words, NGRAM_WORDS, "max_words")
    seed = validation.seed(seed, "seed")
    model = _fitted_up_to_5(corpus).with_order(n)
    generation = model.generate(prompt, max_words, seed)
    history = split_words(prompt) + generation.words
    table, used = model.next_word_probabilities(history)
    context = " ".join(history[len(history) - used :]) if used else "(no context: plain word frequencies)"
    candidates = [[_shown_word(word), f"{p:.1%}"] for word, p in table[:CANDIDATE_ROWS]]
    if len(table) > CANDIDATE_ROWS:
        candidates.append([f"… {len(table) - CANDIDATE_ROWS} more", f"{sum(p for _, p in table[CANDIDATE_ROWS:]):.1%}"])
    notes = [
        f"**Model size** (n = {n}): {model.distinct_contexts:,} distinct contexts, "
        f"{model.distinct_ngrams:,} distinct n-grams, vocabulary of {model.vocabulary_size:,} words.",
        f"**Next word after:** “{context}”",
    ]
    if generation.backoffs:
        notes.append(f"Backed off to a shorter context for {generation.backoffs} of {len(generation.words)} words.")
    if generation.ended:
        notes.append("Stopped early: the model reached the end of the corpus, where nothing follows.")
    notes.append(_sizes_by_order(corpus))
    return generation.text, candidates, "\n\n".join(notes)


@faults.decoder_bound  # streams the decoder's tokens: not work of its own
def compare_models(
    prompt: str,
    corpus: str,
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    top_k: int,
    repetition_penalty: float,
    model: str,
    precision: str = PRECISION_CHOICES[0],
):
    """The same prompt continued by the n-gram model (instantly) and the transformer (streamed, completion mode).

    Both outputs are the prompt followed by the model's continuation, so they read side by side.
    """
    # Checked before int(): "abc", NaN or None would otherwise crash with no message for the user.
    max_new_tokens = validation.in_range(max_new_tokens, MAX_NEW_TOKENS, "max_new_tokens")
    ngram_text, _, _ = ngram_generate(corpus, n, prompt, min(max_new_tokens, NGRAM_WORDS.high), seed)
    ngram_full = join_words(split_words(prompt) + split_words(ngram_text))
    yield ngram_full, prompt
    arguments = (max_new_tokens, temperature, top_p, seed, top_k, repetition_penalty, "Completion", model)
    for text, _ in generate_text(prompt, *arguments, precision=precision):
        yield ngram_full, prompt + text


def use_sample(name: str):
    return SAMPLE_TEXTS.get(name, gr.skip())


# ---------------------------------------------------------------------------------------------
# Perplexity


def _surprisal_band(bits: float) -> str:
    return next(label for floor, label, _ in reversed(SURPRISAL_BANDS) if bits >= floor)


def _coloured(result: inspection.PerplexityResult) -> list[tuple[str, str]]:
    """Each token (or word) with its surprisal band; a token that only completes a character shows no text."""
    return [(token.text, _surprisal_band(token.surprisal_bits)) for token in result.tokens if token.text]


def _most_surprising(result: inspection.PerplexityResult, count: int = 3) -> str:
    ranked = sorted(result.tokens, key=lambda token: -token.surprisal_bits)[:count]
    return ", ".join(f"“{_visible(token.text.strip() or token.text)}” {token.surprisal_bits:.1f}" for token in ranked)


def _as_json(result: inspection.PerplexityResult, text: str) -> dict:
    return {
        "perplexity": result.perplexity,
        f"bits_per_{result.unit}": result.mean_surprisal_bits,
        "bits_per_character": result.total_bits / len(text),
        "tokens": [{"text": token.text, "surprisal_bits": round(token.surprisal_bits, 4)} for token in result.tokens],
    }


def perplexity(
    text: str,
    corpus: str = SAMPLE_TEXTS["The sea"],
    n: int = 3,
    model: str = BUILTIN_MODEL,
):
    """How surprising a text is to the transformer and to an n-gram model counted from the corpus. Returns the JSON
    first: {"transformer": {...}, "ngram": {...}}, each with its perplexity and per-token surprisals in bits."""
    text = validation.text(text, "The text")
    if not text.strip():
        raise gr.Error("The text is empty: paste a sentence or a paragraph.")
    if len(text) > MAX_PERPLEXITY_CHARACTERS:
        raise gr.Error(f"The text is {len(text):,} characters, over the limit of {MAX_PERPLEXITY_CHARACTERS:,}.")
    corpus = _check_corpus(corpus)
    n = validation.in_range(n, NGRAM_ORDER, "n")
    generator = _text_generator(model)
    ngram_model = _fitted_up_to_5(corpus).with_order(n)
    with _refusals_as_errors():
        transformer = inspection.transformer_perplexity(generator, text)
        ngram = inspection.ngram_perplexity(ngram_model, text)
    words = split_words(text)
    unseen = sum(word not in ngram_model.counts[0][()] for word in words)
    data = {
        "transformer": {"model": generator.name, **_as_json(transformer, text)},
        "ngram": {"n": n, "smoothing": "interpolated Witten-Bell", "unseen_words": unseen, **_as_json(ngram, text)},
    }
    summary = (
        f"**Transformer** ({generator.name}, {len(transformer.tokens)} tokens): perplexity "
        f"**{transformer.perplexity:,.1f}** · {transformer.mean_surprisal_bits:.2f} bits a token · "
        f"{data['transformer']['bits_per_character']:.2f} bits a character. "
        f"Most surprising: {_most_surprising(transformer)} bits.\n\n"
        f"**n-gram model** (n = {n}, Witten–Bell smoothing, {len(words)} words, {unseen} never seen in the corpus): "
        f"perplexity **{ngram.perplexity:,.1f}** · {ngram.mean_surprisal_bits:.2f} bits a word · "
        f"{data['ngram']['bits_per_character']:.2f} bits a character. Most surprising: {_most_surprising(ngram)} bits."
        "\n\nPerplexity is per token for the transformer and per word for the n-gram model: to compare the two "
        "models, compare **bits per character**. Try the examples: the same words shuffled, or one typo."
    )
    return data, summary, _coloured(transformer), _coloured(ngram)


# ---------------------------------------------------------------------------------------------
# Layout


def build() -> None:
    gr.Markdown(
        "A language model writes **one token at a time**, each time choosing from a probability distribution "
        "over what comes next. Watch a real transformer do it, see how sure it was of each token and what each "
        "token looked at, branch off at any token, and compare with an n-gram model that only counts words."
    )
    run_state = gr.State(None)
    choices_state = gr.State([])
    attention_state = gr.State(None)

    with gr.Tab("Transformer"):
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(
                    label="Prompt", lines=3, value="Write a short poem about the sea.", elem_id="text-prompt"
                )
                with gr.Row():
                    generate_button = gr.Button("Generate", variant="primary", elem_id="text-generate")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="text-stop")
                with gr.Accordion("Start the answer yourself (prefix)", open=False):
                    prefix = gr.Textbox(
                        label="Answer so far: the model continues after it",
                        value="",
                        lines=2,
                        elem_id="text-prefix",
                    )
                output = gr.Textbox(
                    label="Model output (streamed)", value="", lines=8, interactive=False, elem_id="text-output"
                )
                status = gr.Markdown(elem_id="text-status")
            with gr.Column(scale=1):
                model = common.model_menu("text", BUILTIN_MODEL)
                mode = gr.Radio(
                    list(MODES),
                    value="Chat",
                    label="Mode",
                    elem_id="text-mode",
                    info="Chat wraps the prompt in the model's chat template; Completion continues it as is.",
                )
                max_new_tokens = common.slider(MAX_NEW_TOKENS, "max_new_tokens", elem_id="text-max-new-tokens")
                temperature = common.slider(TEMPERATURE, "temperature (0 = greedy)")
                top_k = common.slider(TOP_K, "top_k (0 = off)")
                top_p = common.slider(TOP_P, "top_p")
                repetition_penalty = common.slider(REPETITION_PENALTY, "repetition_penalty")
                seed = common.seed_row(42, "seed")
                precision = gr.Radio(
                    list(PRECISION_CHOICES),
                    value=PRECISION_CHOICES[0],
                    label="Precision (weights)",
                    elem_id="text-precision",
                    info=f"{PRECISION_CHOICES[0]}: {PRECISION_NOTES.get(PRECISION_CHOICES[0], '')}. "
                    "Fewer bits read per token is faster; the look-inside shows how much the probabilities move.",
                )
        with gr.Accordion("Look inside: how sure was the model of each token?", open=True):
            highlighted = gr.HighlightedText(
                label="Generated tokens coloured by the probability the model gave them (click a token)",
                color_map={label: colour for _, label, colour in BANDS},
                show_legend=True,
                combine_adjacent=False,
                show_inline_category=False,
                elem_id="text-look-inside",
            )
            with gr.Row():
                position = validation.CheckedSlider(
                    1, 2, value=1, step=1, label="Token position", scale=1, interactive=False, elem_id="text-position"
                )
                alternatives = gr.Dataframe(
                    headers=["rank", "token", "probability", ""],
                    label="Top-5 tokens the model considered here: click one to branch from it",
                    interactive=False,
                    scale=2,
                    elem_id="text-alternatives",
                )
            branch_status = gr.Markdown(
                "**Branch from any token:** click a row of the table to continue the answer from this position with "
                "that token instead; the original stays beside it.",
                elem_id="text-branch-status",
            )
            with gr.Row():
                branch_original = gr.HighlightedText(
                    label="Original answer",
                    color_map=BRANCH_COLOURS,
                    combine_adjacent=False,
                    show_inline_category=False,
                    elem_id="text-branch-original",
                )
                branch_output = gr.HighlightedText(
                    label="Branch (streamed)",
                    color_map=BRANCH_COLOURS,
                    combine_adjacent=False,
                    show_inline_category=False,
                    show_legend=True,
                    elem_id="text-branch",
                )
        with gr.Accordion("Look inside: attention, what each token looked at", open=True):
            with gr.Row(equal_height=True):
                layer = ModelRangeSlider(
                    ATTENTION_LAYER.low,
                    ATTENTION_LAYER.high,
                    value=ATTENTION_LAYER.default,
                    step=1,
                    label="layer",
                    scale=2,
                    elem_id="attention-layer",
                )
                head = ModelRangeSlider(
                    ATTENTION_HEAD.low,
                    ATTENTION_HEAD.high,
                    value=ATTENTION_HEAD.default,
                    step=1,
                    label="head (0 = mean of all heads)",
                    scale=2,
                    elem_id="attention-head",
                )
                attention_button = gr.Button("Show attention", scale=1, min_width=120, elem_id="attention-show")
            attention_note = gr.Markdown(
                "Generate an answer (or press **Show attention**) to see the attention over the prompt and answer.",
                elem_id="attention-note",
            )
            with gr.Row():
                attention_map = gr.Image(
                    label="Heat-map: row i is what token i looked at (click a row)",
                    type="pil",
                    interactive=False,
                    scale=3,
                    elem_id="attention-map",
                )
                head_grid = gr.Image(
                    label="Every head of the layer (click one)",
                    type="pil",
                    interactive=False,
                    scale=2,
                    elem_id="attention-heads",
                )
            attention_row_note = gr.Markdown(elem_id="attention-row-note")
            attention_tokens = gr.HighlightedText(
                label="Click a token to see what it looked at",
                combine_adjacent=False,
                show_legend=False,
                elem_id="attention-tokens",
            )
            recompute_panel = gr.Markdown(elem_id="attention-recompute")
            with gr.Accordion("The numbers, as the /attention endpoint returns them (JSON)", open=False):
                attention_data = gr.JSON(elem_id="attention-json")

    with gr.Tab("n-gram model"):
        with gr.Row():
            with gr.Column(scale=2):
                sample = gr.Dropdown(
                    [*SAMPLE_TEXTS, OWN_TEXT], value="The sea", label="Sample text", elem_id="ngram-sample"
                )
                corpus = gr.Textbox(label="Corpus (up to 1 MB)", lines=8, value=SAMPLE_TEXTS["The sea"])
            with gr.Column(scale=1):
                n = common.slider(NGRAM_ORDER, "n (words of context + 1)")
                ngram_prompt = gr.Textbox(label="Prompt", value="The sea")
                max_words = common.slider(NGRAM_WORDS, "max_words")
                ngram_seed = common.seed_row(42, "seed")
                ngram_button = gr.Button("Generate", variant="primary", elem_id="ngram-generate")
        ngram_output = gr.Textbox(label="n-gram continuation", lines=4, interactive=False, elem_id="ngram-output")
        with gr.Row():
            candidates = gr.Dataframe(
                headers=["next word", "probability"], label="Candidates for the next word", interactive=False, scale=1
            )
            ngram_info = gr.Markdown(elem_id="ngram-info")

    with gr.Tab("Perplexity"):
        gr.Markdown(
            "How surprising is a text? Each token is coloured by its **surprisal**, −log₂ of the probability the "
            "model gave it after the text before it; **perplexity** is 2 to the power of the mean. Paste any text, "
            "or try the examples: the same words shuffled, or one typo."
        )
        with gr.Row():
            with gr.Column(scale=2):
                perplexity_text = gr.Textbox(
                    label=f"Text (up to {MAX_PERPLEXITY_CHARACTERS:,} characters)",
                    lines=4,
                    value=PERPLEXITY_EXAMPLES[0],
                    elem_id="perplexity-text",
                )
                gr.Examples([[example] for example in PERPLEXITY_EXAMPLES], inputs=perplexity_text)
            with gr.Column(scale=1):
                perplexity_sample = gr.Dropdown(
                    [*SAMPLE_TEXTS, OWN_TEXT],
                    value="The sea",
                    label="Corpus of the n-gram model",
                    elem_id="perplexity-sample",
                )
                perplexity_n = common.slider(NGRAM_ORDER, "n (words of context + 1)", value=3)
                perplexity_button = gr.Button("Score the text", variant="primary", elem_id="perplexity-score")
        with gr.Accordion("The n-gram model's corpus (edit it or paste your own, up to 1 MB)", open=False):
            perplexity_corpus = gr.Textbox(label="Corpus", lines=6, value=SAMPLE_TEXTS["The sea"])
        perplexity_summary = gr.Markdown(elem_id="perplexity-summary")
        with gr.Row():
            surprisal_colours = {label: colour for _, label, colour in SURPRISAL_BANDS}
            transformer_surprisal = gr.HighlightedText(
                label="Transformer: each token coloured by its surprisal",
                color_map=surprisal_colours,
                show_legend=True,
                combine_adjacent=False,
                show_inline_category=False,
                elem_id="perplexity-transformer",
            )
            ngram_surprisal = gr.HighlightedText(
                label="n-gram model: each word coloured by its surprisal",
                color_map=surprisal_colours,
                show_legend=True,
                combine_adjacent=False,
                show_inline_category=False,
                elem_id="perplexity-ngram",
            )
        with gr.Accordion("The numbers, as the /perplexity endpoint returns them (JSON)", open=False):
            perplexity_data = gr.JSON(elem_id="perplexity-json")

    with gr.Tab("Side by side"):
        gr.Markdown(
            "The same prompt continued three ways: **counting → memory → attention**. The n-gram model (with the "
            "corpus and n of its tab) only stitches together pieces of its corpus; a character-level LSTM, trained "
            "here on the same corpus (as in the Training tab, on the first Compare), carries a memory of what it "
            "read and spells new words one character at a time; the transformer (with the settings of its tab, in "
            "Completion mode) attends to every earlier token and writes new sentences."
        )
        compare_prompt = gr.Textbox(label="Prompt", value="At night the sea")
        with gr.Row():
            compare_button = gr.Button("Compare", variant="primary")
            compare_stop = gr.Button("Stop", variant="stop")
        with gr.Row():
            compare_ngram = gr.Textbox(label="n-gram model", lines=8, interactive=False)
            compare_char = gr.Textbox(label="Character LSTM", lines=8, interactive=False, elem_id="compare-char")
            compare_transformer = gr.Textbox(label="Transformer", lines=8, interactive=False)

    transformer_controls = [max_new_tokens, temperature, top_p, seed, top_k, repetition_penalty, mode, model]
    generation_event = generate_button.click(
        generate_text,
        [prompt, *transformer_controls, prefix, precision],
        [output, run_state],
        api_name="generate_text",
        **CONCURRENCY,
    )
    attention_inputs = [prompt, layer, head, output, mode, model]
    attention_outputs = [
        attention_data,
        attention_note,
        attention_map,
        head_grid,
        attention_tokens,
        attention_row_note,
        recompute_panel,
        attention_state,
    ]
    generation_event.then(
        look_inside,
        run_state,
        [status, highlighted, position, alternatives, choices_state],
        api_visibility="private",
        **CONCURRENCY,
    ).success(
        _attention_after_generation, attention_inputs, attention_outputs, api_visibility="private", **CONCURRENCY
    ).success(attention_slider_ranges, model, [layer, head], api_visibility="private", queue=False)
    # The previous run's look-inside would describe other text: clear it when a new run starts.
    generate_button.click(
        lambda: ("", [], [], [], []),
        None,
        [status, highlighted, alternatives, branch_original, branch_output],
        api_visibility="private",
        queue=False,
    )
    branch_event = alternatives.select(
        branch_from_alternative,
        [run_state, choices_state, position],
        [branch_status, branch_original, branch_output],
        api_visibility="private",
        **CONCURRENCY,
    )
    stop_button.click(
        lambda: "Stopped. Look inside is shown for finished generations only.",
        None,
        status,
        cancels=[generation_event, branch_event],
        api_visibility="private",
        queue=False,
    )
    highlighted.select(pick_token, None, position, api_visibility="private")
    position.change(_alternatives_table, [choices_state, position], alternatives, api_visibility="private")

    attention_button.click(
        attention_view, attention_inputs, attention_outputs, api_name="attention", **CONCURRENCY
    ).success(attention_slider_ranges, model, [layer, head], api_visibility="private", queue=False)
    for slider in (layer, head):
        slider.release(
            _attention_after_generation, attention_inputs, attention_outputs, api_visibility="private", **CONCURRENCY
        )
    head_grid.select(pick_head, attention_state, head, api_visibility="private", queue=False).then(
        _attention_after_generation, attention_inputs, attention_outputs, api_visibility="private", **CONCURRENCY
    )
    attention_tokens.select(
        pick_attention_token, attention_state, [attention_tokens, attention_row_note], api_visibility="private"
    )
    attention_map.select(
        pick_attention_row, attention_state, [attention_tokens, attention_row_note], api_visibility="private"
    )

    sample.change(use_sample, sample, corpus, api_visibility="private")
    ngram_button.click(
        ngram_generate,
        [corpus, n, ngram_prompt, max_words, ngram_seed],
        [ngram_output, candidates, ngram_info],
        api_name="ngram_generate",
    )
    compare_event = compare_button.click(
        compare_models,
        [compare_prompt, corpus, n, *transformer_controls[:-2], model, precision],
        [compare_ngram, compare_transformer],
        api_name="compare_text",
        **CONCURRENCY,
    )
    compare_stop.click(None, cancels=[compare_event], api_visibility="private")
    compare_char_event = compare_button.click(
        training.continue_with_char_model,
        [compare_prompt, corpus, max_new_tokens, temperature, seed],
        compare_char,
        api_name="compare_char_model",
        **training.CHAR_EVENTS,
    )
    compare_stop.click(None, cancels=[compare_char_event], api_visibility="private")

    perplexity_sample.change(use_sample, perplexity_sample, perplexity_corpus, api_visibility="private")
    perplexity_button.click(
        perplexity,
        [perplexity_text, perplexity_corpus, perplexity_n, model],
        [perplexity_data, perplexity_summary, transformer_surprisal, ngram_surprisal],
        api_name="perplexity",
        **CONCURRENCY,
    )
